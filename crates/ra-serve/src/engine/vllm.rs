//! `vllm serve` command lines.

use std::path::Path;

use super::{EngineCommand, ReplicaLayout};
use crate::config::ServeConfig;

/// Environment variable vLLM reads its API key from.
pub const API_KEY_ENV: &str = "VLLM_API_KEY";

/// `vllm serve MODEL --host … --port … --tensor-parallel-size … [--pipeline-parallel-size …]
/// --served-model-name … --max-model-len … --gpu-memory-utilization … [--reasoning-parser …]
/// --enable-prefix-caching [extra…]` with `CUDA_VISIBLE_DEVICES` set to the replica's GPUs.
pub fn command(cfg: &ServeConfig, program: &Path, replica: &ReplicaLayout) -> EngineCommand {
    let mut args = vec![
        "serve".to_string(),
        cfg.model.clone(),
        "--host".into(),
        cfg.host.clone(),
        "--port".into(),
        replica.port.to_string(),
        "--tensor-parallel-size".into(),
        cfg.tensor_parallel_size.to_string(),
    ];
    if cfg.pipeline_parallel_size > 1 {
        args.push("--pipeline-parallel-size".into());
        args.push(cfg.pipeline_parallel_size.to_string());
    }
    args.extend([
        "--served-model-name".into(),
        cfg.served_name(),
        "--max-model-len".into(),
        cfg.max_model_len.to_string(),
        "--gpu-memory-utilization".into(),
        cfg.gpu_memory_utilization.to_string(),
    ]);
    if let Some(parser) = &cfg.reasoning_parser {
        args.push("--reasoning-parser".into());
        args.push(parser.clone());
    }
    // Every RewardAnything request shares the long system prompt.
    args.push("--enable-prefix-caching".into());
    args.extend(cfg.extra_args.iter().cloned());

    let mut env = Vec::new();
    if !replica.gpus.is_empty() {
        env.push(("CUDA_VISIBLE_DEVICES".to_string(), replica.gpus.join(",")));
        // nvidia-smi numbers GPUs in PCI bus order; CUDA's default order may differ.
        if std::env::var_os("CUDA_DEVICE_ORDER").is_none() {
            env.push(("CUDA_DEVICE_ORDER".to_string(), "PCI_BUS_ID".to_string()));
        }
    }
    EngineCommand::with_key(program, args, env, cfg, API_KEY_ENV)
}
