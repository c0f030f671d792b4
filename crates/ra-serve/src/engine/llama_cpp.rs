//! `llama-server` (llama.cpp) command lines.

use std::path::Path;

use super::{EngineCommand, ReplicaLayout};
use crate::config::ServeConfig;

/// Environment variable `llama-server` reads its API key from
/// (`--api-key` is declared with `set_env("LLAMA_API_KEY")` in llama.cpp's `common/arg.cpp`).
pub const API_KEY_ENV: &str = "LLAMA_API_KEY";

/// Threads per replica when none are given: the available cores shared out.
pub fn default_threads(replicas: usize) -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (cores / replicas.max(1)).max(1)
}

/// `llama-server -m MODEL.gguf --host H --port P -c CTX×SLOTS -np SLOTS -t THREADS --alias NAME [extra…]`.
///
/// Slots share one context, so it is sized per slot × slots.
pub fn command(cfg: &ServeConfig, program: &Path, replica: &ReplicaLayout) -> EngineCommand {
    let replicas = cfg.replicas.unwrap_or(1);
    let threads = cfg.threads.unwrap_or_else(|| default_threads(replicas));
    let mut args = vec![
        "-m".to_string(),
        cfg.model.clone(),
        "--host".into(),
        cfg.host.clone(),
        "--port".into(),
        replica.port.to_string(),
        "-c".into(),
        (cfg.max_model_len * cfg.parallel).to_string(),
        "-np".into(),
        cfg.parallel.to_string(),
        "-t".into(),
        threads.to_string(),
        "--alias".into(),
        cfg.served_name(),
    ];
    args.extend(cfg.extra_args.iter().cloned());
    EngineCommand::with_key(program, args, Vec::new(), cfg, API_KEY_ENV)
}
