//! Turning a [`ServeConfig`] into concrete replicas and command lines.

use std::path::{Path, PathBuf};

use crate::config::{EngineKind, ServeConfig};
use crate::engine::{self, EngineCommand, ReplicaLayout};
use crate::error::Error;
use crate::gpus::{self, GpuSource};

/// One replica to start.
#[derive(Debug, Clone)]
pub struct PlannedReplica {
    /// Index, port and GPUs.
    pub layout: ReplicaLayout,
    /// What to run.
    pub command: EngineCommand,
    /// `http://host:port` (no `/v1`), the address probes and clients use.
    pub base_url: String,
}

impl PlannedReplica {
    /// The OpenAI-compatible endpoint, `http://host:port/v1`.
    pub fn endpoint(&self) -> String {
        format!("{}/v1", self.base_url)
    }
}

/// The resolved deployment: every replica with its exact command.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The configuration, with defaults filled in (e.g. the replica count).
    pub config: ServeConfig,
    /// Model name clients send.
    pub served_name: String,
    /// Replicas in order.
    pub replicas: Vec<PlannedReplica>,
    /// Where the GPU list came from (vLLM only).
    pub gpu_source: Option<GpuSource>,
    /// Remarks worth logging (missing engine in a dry run, a first download…).
    pub notes: Vec<String>,
}

impl Plan {
    /// Human-readable commands, one per replica, secrets replaced by `***`.
    pub fn describe(&self) -> String {
        let mut out = String::from(
            "# ra-serve dry run: the rest of the environment (HF_TOKEN, …) is inherited\n",
        );
        for note in &self.notes {
            out.push_str(&format!("# note: {note}\n"));
        }
        for r in &self.replicas {
            let gpus = if r.layout.gpus.is_empty() {
                String::new()
            } else {
                format!(" on GPU {}", r.layout.gpus.join(","))
            };
            out.push_str(&format!(
                "# replica {}: {}{gpus}, model `{}`\n{}\n",
                r.layout.index,
                r.endpoint(),
                self.served_name,
                r.command.display_redacted()
            ));
        }
        out
    }
}

/// The URL host for a listening address: wildcards become loopback, IPv6 gets brackets.
fn url_host(host: &str) -> String {
    match host {
        "" | "0.0.0.0" => "127.0.0.1".to_string(),
        "::" | "[::]" => "[::1]".to_string(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_string(),
    }
}

/// Hugging Face cache directory of a hub model id, when it can be computed.
fn hf_cache_dir(model: &str) -> Option<PathBuf> {
    let hub = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
        })?;
    Some(hub.join(format!("models--{}", model.replace('/', "--"))))
}

/// Do the passthrough arguments select vLLM's Ray backend (multi-node)?
fn uses_ray(extra: &[String]) -> bool {
    extra.iter().enumerate().any(|(i, a)| {
        a == "--distributed-executor-backend=ray"
            || (a == "--distributed-executor-backend"
                && extra.get(i + 1).is_some_and(|v| v == "ray"))
    })
}

/// vLLM data-parallel size given in the passthrough arguments (1 if none).
fn data_parallel_size(extra: &[String]) -> usize {
    let mut dp = 1;
    for (i, a) in extra.iter().enumerate() {
        let value = match a.split_once('=') {
            Some(("--data-parallel-size" | "-dp", v)) => Some(v),
            _ if a == "--data-parallel-size" || a == "-dp" => extra.get(i + 1).map(String::as_str),
            _ => None,
        };
        if let Some(n) = value.and_then(|v| v.parse::<usize>().ok()) {
            dp = n.max(1);
        }
    }
    dp
}

/// Resolves GPUs, replicas, the engine binary and every command line.
///
/// With `dry_run`, a missing engine binary is a note rather than an error.
pub async fn plan(cfg: &ServeConfig, dry_run: bool) -> Result<Plan, Error> {
    let mut cfg = cfg.clone();
    let mut notes = Vec::new();
    if cfg.port == 0 {
        return Err(Error::Config("--port must not be 0".into()));
    }
    if cfg.max_model_len == 0 || cfg.parallel == 0 {
        return Err(Error::Config(
            "--max-model-len and --parallel must be at least 1".into(),
        ));
    }
    if cfg.api_key.as_deref() == Some("") {
        cfg.api_key = None;
    }
    let mut gpu_source = None;
    let groups: Vec<Vec<String>> = match cfg.engine {
        EngineKind::Vllm => {
            let u = cfg.gpu_memory_utilization;
            if !(u > 0.0 && u <= 1.0) {
                return Err(Error::Config(format!(
                    "--gpu-memory-utilization must be in (0, 1], got {u}"
                )));
            }
            if uses_ray(&cfg.extra_args) {
                // Multi-node: Ray places the TP × PP workers across machines,
                // so the local GPUs say nothing about the layout.
                notes.push("--distributed-executor-backend ray: GPU placement is left to the Ray cluster; one replica per Ray cluster".into());
                let n = cfg.replicas.unwrap_or(1);
                if n != 1 {
                    return Err(Error::Config(
                        "with Ray (multi-node) run one replica per Ray cluster".into(),
                    ));
                }
                vec![Vec::new()]
            } else {
                let info = gpus::query_nvidia_smi(&cfg.nvidia_smi_bin).await;
                let (ids, source) = if let Some(g) = &cfg.gpus {
                    (g.clone(), GpuSource::Flag)
                } else if let Some(v) = std::env::var_os("CUDA_VISIBLE_DEVICES") {
                    (
                        gpus::parse_gpu_list(&v.to_string_lossy()),
                        GpuSource::CudaVisibleDevices,
                    )
                } else {
                    let found = info.clone()?.unwrap_or_default();
                    (
                        found.iter().map(|g| g.index.to_string()).collect(),
                        GpuSource::NvidiaSmi,
                    )
                };
                let info = match info {
                    Ok(i) => i,
                    Err(e) => {
                        notes.push(format!("GPU memory not checked: {e}"));
                        None
                    }
                };
                gpu_source = Some(source);
                // vLLM's own data parallelism (passthrough `-dp N`) multiplies
                // the GPUs one replica needs; fold it into the pipeline stages.
                let dp = data_parallel_size(&cfg.extra_args);
                gpus::plan_gpus(
                    &ids,
                    info.as_deref(),
                    cfg.tensor_parallel_size,
                    cfg.pipeline_parallel_size * dp,
                    cfg.replicas,
                    u,
                )?
            }
        }
        EngineKind::LlamaCpp => {
            if cfg.tensor_parallel_size > 1 || cfg.pipeline_parallel_size > 1 {
                return Err(Error::Config(
                    "--tensor-parallel-size and --pipeline-parallel-size are vLLM options; llama.cpp scales with --replicas, --threads and --parallel".into(),
                ));
            }
            let path = Path::new(&cfg.model);
            let is_gguf = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
            if !is_gguf || !path.is_file() {
                return Err(Error::Config(format!(
                    "--engine llama-cpp needs --model to be a local .gguf file; `{}` {}",
                    cfg.model,
                    if path.is_file() {
                        "is not a .gguf file"
                    } else {
                        "does not exist"
                    }
                )));
            }
            let n = cfg.replicas.unwrap_or(1);
            if n == 0 {
                return Err(Error::Config("--replicas must be at least 1".into()));
            }
            vec![Vec::new(); n]
        }
    };
    cfg.replicas = Some(groups.len());
    if u32::from(cfg.port) + groups.len() as u32 - 1 > u32::from(u16::MAX) {
        return Err(Error::Config(format!(
            "ports {}..{} do not fit below 65536",
            cfg.port,
            u32::from(cfg.port) + groups.len() as u32 - 1
        )));
    }
    let program = match engine::resolve_program(cfg.engine, cfg.engine_bin.as_deref()) {
        Ok(p) => p,
        Err(e) if dry_run => {
            notes.push(e.to_string());
            cfg.engine_bin.clone().unwrap_or_else(|| {
                PathBuf::from(match cfg.engine {
                    EngineKind::Vllm => "vllm",
                    EngineKind::LlamaCpp => "llama-server",
                })
            })
        }
        Err(e) => return Err(e),
    };
    if cfg.engine == EngineKind::Vllm
        && !Path::new(&cfg.model).exists()
        && let Some(dir) = hf_cache_dir(&cfg.model)
        && !dir.exists()
    {
        notes.push(format!(
            "`{}` is not in the Hugging Face cache ({}): the first start downloads its weights (about 16 GB for an 8B model) within --startup-timeout",
            cfg.model,
            dir.display()
        ));
    }
    let host = url_host(&cfg.host);
    let replicas = groups
        .into_iter()
        .enumerate()
        .map(|(index, gpus)| {
            let layout = ReplicaLayout {
                index,
                port: cfg.port + index as u16,
                gpus,
            };
            PlannedReplica {
                command: engine::command(&cfg, &program, &layout),
                base_url: format!("http://{host}:{}", layout.port),
                layout,
            }
        })
        .collect();
    Ok(Plan {
        served_name: cfg.served_name(),
        config: cfg,
        replicas,
        gpu_source,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_parallel_passthrough_is_read() {
        let v =
            |a: &[&str]| data_parallel_size(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(v(&[]), 1);
        assert_eq!(v(&["--data-parallel-size", "4"]), 4);
        assert_eq!(v(&["-dp=2", "--max-num-seqs", "8"]), 2);
        assert_eq!(v(&["--data-parallel-size-local", "3"]), 1);
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(url_host("::"), "[::1]");
        assert_eq!(url_host("::1"), "[::1]");
        assert_eq!(url_host("localhost"), "localhost");
    }
}
