//! Turning a [`ServeConfig`] into concrete replicas and command lines.

use std::path::{Path, PathBuf};

use crate::config::{EngineKind, MAX_CONTEXT_TOKENS, MAX_THREADS, ServeConfig};
use crate::engine::{self, EngineCommand, ReplicaLayout};
use crate::error::Error;
use crate::gpus::{self, GpuSource};
use crate::passthrough;

/// One replica to start.
#[derive(Debug, Clone)]
pub struct PlannedReplica {
    /// Index, port and GPUs.
    pub layout: ReplicaLayout,
    /// What to run.
    pub command: EngineCommand,
    /// `http://host:port` (no `/v1`), the address probes and local clients use.
    pub base_url: String,
    /// `http://advertised-host:port/v1`, the endpoint the endpoints file names (other
    /// nodes reach it there).
    pub advertised: String,
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

/// The URL host the endpoints file names: `--advertise-host`, else the listening host,
/// else (a wildcard listening address) this host's detected address.
fn advertised_host(cfg: &ServeConfig) -> String {
    if let Some(h) = &cfg.advertise_host {
        return url_host(h.trim());
    }
    match cfg.host.as_str() {
        "" | "0.0.0.0" | "::" | "[::]" => match detect_address() {
            Some(ip) => url_host(&ip.to_string()),
            None => {
                tracing::warn!(
                    "cannot find a non-loopback address of this host: the endpoints file \
                     names {}; other nodes need --advertise-host",
                    url_host(&cfg.host)
                );
                url_host(&cfg.host)
            }
        },
        h => url_host(h),
    }
}

/// This host's address as other nodes see it: the host name's first non-loopback
/// address (IPv4 first), else the source address of the default route (a UDP socket
/// "connected" to a public address: nothing is sent).
pub fn detect_address() -> Option<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    if let Some(name) = hostname
        && let Ok(addrs) = (name.as_str(), 0).to_socket_addrs()
    {
        let mut ips: Vec<std::net::IpAddr> = addrs
            .map(|a| a.ip())
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
            .collect();
        ips.sort_by_key(|ip| ip.is_ipv6());
        if let Some(ip) = ips.first() {
            return Some(*ip);
        }
    }
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
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

/// Resolves GPUs, replicas, the engine binary and every command line, after
/// checking every option: nothing here starts a process except `nvidia-smi`.
///
/// With `dry_run`, a missing or unusable engine binary is a note rather than an error.
pub async fn plan(cfg: &ServeConfig, dry_run: bool) -> Result<Plan, Error> {
    let mut cfg = cfg.clone();
    let mut notes = Vec::new();
    check_options(&mut cfg)?;
    let (groups, gpu_source) = match cfg.engine {
        EngineKind::Vllm => vllm_groups(&cfg, &mut notes).await?,
        EngineKind::LlamaCpp => (llama_groups(&cfg)?, None),
    };
    cfg.replicas = Some(groups.len());
    check_port_range(cfg.port, groups.len())?;
    passthrough::check(&cfg, groups.len())?;
    let program = engine_program(&cfg, dry_run, &mut notes)?;
    notes.extend(download_note(&cfg));
    let replicas = build_replicas(&cfg, &program, groups);
    Ok(Plan {
        served_name: cfg.served_name(),
        config: cfg,
        replicas,
        gpu_source,
        notes,
    })
}

/// Options that are wrong on their own, whatever the machine.
fn check_options(cfg: &mut ServeConfig) -> Result<(), Error> {
    let bad = |m: String| Err(Error::Config(m));
    if cfg.port == 0 {
        return bad("--port must not be 0".into());
    }
    if !(1..=MAX_CONTEXT_TOKENS).contains(&cfg.max_model_len) {
        return bad(format!(
            "--max-model-len must be between 1 and {MAX_CONTEXT_TOKENS} tokens, got {}",
            cfg.max_model_len
        ));
    }
    if cfg.parallel == 0 {
        return bad("--parallel must be at least 1".into());
    }
    if cfg.replicas == Some(0) {
        return bad("--replicas must be at least 1".into());
    }
    if let Some(n) = cfg.replicas {
        check_port_range(cfg.port, n)?;
    }
    if let Some(name) = &cfg.served_model_name
        && name.trim().is_empty()
    {
        // vLLM would serve a model nobody can name, and clients would send `""`.
        return bad(format!(
            "--served-model-name must name the model, got {name:?} (leave the flag out to \
             serve it under its model id or file stem)"
        ));
    }
    if cfg.api_key.as_deref() == Some("") {
        cfg.api_key = None;
    }
    if cfg
        .endpoints_file
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        return bad("--endpoints-file must not be empty".into());
    }
    if cfg.listens_beyond_loopback() && cfg.api_key.is_none() && !cfg.allow_no_api_key {
        return bad(format!(
            "--host {} listens beyond loopback without an API key: anyone who can reach \
             the port could use the engines; set RA_SERVE_API_KEY (clients send it as \
             RA_API_KEY), or pass --allow-no-api-key on a trusted network",
            cfg.host
        ));
    }
    if cfg
        .advertise_host
        .as_deref()
        .is_some_and(|h| h.trim().is_empty())
    {
        return bad("--advertise-host must not be empty".into());
    }
    match cfg.engine {
        EngineKind::Vllm => check_vllm_options(cfg),
        EngineKind::LlamaCpp => check_llama_options(cfg),
    }
}

fn check_vllm_options(cfg: &ServeConfig) -> Result<(), Error> {
    let u = cfg.gpu_memory_utilization;
    if !(u > 0.0 && u <= 1.0) {
        return Err(Error::Config(format!(
            "--gpu-memory-utilization must be in (0, 1], got {u}"
        )));
    }
    let (tp, pp) = (cfg.tensor_parallel_size, cfg.pipeline_parallel_size);
    if tp == 0 || pp == 0 {
        return Err(Error::Config(
            "--tensor-parallel-size and --pipeline-parallel-size must be at least 1".into(),
        ));
    }
    let dp = passthrough::data_parallel_size(&cfg.extra_args)?;
    if tp.checked_mul(pp).and_then(|n| n.checked_mul(dp)).is_none() {
        return Err(Error::Config(format!(
            "TP {tp} × PP {pp} × DP {dp} GPUs per replica is more than can be counted"
        )));
    }
    Ok(())
}

fn check_llama_options(cfg: &ServeConfig) -> Result<(), Error> {
    if cfg.tensor_parallel_size > 1 || cfg.pipeline_parallel_size > 1 {
        return Err(Error::Config(
            "--tensor-parallel-size and --pipeline-parallel-size are vLLM options; llama.cpp scales with --replicas, --threads and --parallel".into(),
        ));
    }
    match cfg.threads {
        Some(t) if t == 0 || t > MAX_THREADS => {
            return Err(Error::Config(format!(
                "--threads must be between 1 and {MAX_THREADS}, got {t}"
            )));
        }
        _ => {}
    }
    let ctx = cfg.max_model_len.checked_mul(cfg.parallel);
    if ctx.is_none_or(|c| c > MAX_CONTEXT_TOKENS) {
        return Err(Error::Config(format!(
            "--max-model-len {} × --parallel {} is a context of more than {MAX_CONTEXT_TOKENS} tokens for llama-server (-c)",
            cfg.max_model_len, cfg.parallel
        )));
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
    Ok(())
}

/// Replica `i` listens on `port + i`: all of them must be valid ports.
fn check_port_range(port: u16, replicas: usize) -> Result<(), Error> {
    let last = usize::from(port).checked_add(replicas.saturating_sub(1));
    match last {
        Some(l) if l <= usize::from(u16::MAX) => Ok(()),
        _ => Err(Error::Config(format!(
            "{replicas} replica(s) from port {port} need ports up to {}, beyond 65535",
            last.map_or_else(|| "more than can be counted".into(), |l| l.to_string())
        ))),
    }
}

/// vLLM: the GPU groups, one per replica, and where the GPU list came from.
async fn vllm_groups(
    cfg: &ServeConfig,
    notes: &mut Vec<String>,
) -> Result<(Vec<Vec<String>>, Option<GpuSource>), Error> {
    if passthrough::uses_ray(&cfg.extra_args) {
        // Multi-node: Ray places the TP × PP workers across machines,
        // so the local GPUs say nothing about the layout.
        notes.push("--distributed-executor-backend ray: GPU placement is left to the Ray cluster; one replica per Ray cluster".into());
        if cfg.replicas.unwrap_or(1) != 1 {
            return Err(Error::Config(
                "with Ray (multi-node) run one replica per Ray cluster".into(),
            ));
        }
        return Ok((vec![Vec::new()], None));
    }
    let info = gpus::query_nvidia_smi(&cfg.nvidia_smi_bin).await;
    let (ids, source) = gpu_ids(cfg, &info)?;
    let info = match info {
        Ok(i) => i,
        Err(e) => {
            notes.push(format!("GPU memory not checked: {e}"));
            None
        }
    };
    // vLLM's own data parallelism (passthrough `-dp N`) multiplies the GPUs
    // one replica needs; fold it into the pipeline stages (checked above).
    let dp = passthrough::data_parallel_size(&cfg.extra_args)?;
    let groups = gpus::plan_gpus(
        &ids,
        info.as_deref(),
        cfg.tensor_parallel_size,
        cfg.pipeline_parallel_size.saturating_mul(dp),
        cfg.replicas,
        cfg.gpu_memory_utilization,
    )?;
    Ok((groups, Some(source)))
}

/// The GPU ids to use, validated: `--gpus`, else `CUDA_VISIBLE_DEVICES`, else every GPU listed.
fn gpu_ids(
    cfg: &ServeConfig,
    info: &Result<Option<Vec<gpus::GpuInfo>>, Error>,
) -> Result<(Vec<String>, GpuSource), Error> {
    let no_gpus = |what: &str| {
        Err(Error::Layout(format!(
            "{what} hides every GPU; pass --gpus 0,1,…, or use --engine llama-cpp on a CPU host"
        )))
    };
    if let Some(g) = &cfg.gpus {
        if g.is_empty() {
            return no_gpus("an empty --gpus");
        }
        let ids = gpus::validate_gpu_ids(g, &format!("--gpus {}", g.join(",")))?;
        return Ok((ids, GpuSource::Flag));
    }
    if let Some(v) = std::env::var_os("CUDA_VISIBLE_DEVICES") {
        let raw = v.to_string_lossy();
        let ids = gpus::parse_gpu_list(&raw);
        if ids.is_empty() {
            return no_gpus("CUDA_VISIBLE_DEVICES set but empty");
        }
        let ids = gpus::validate_gpu_ids(&ids, &format!("CUDA_VISIBLE_DEVICES={raw}"))?;
        return Ok((ids, GpuSource::CudaVisibleDevices));
    }
    let found = info.clone()?.unwrap_or_default();
    Ok((
        found.iter().map(|g| g.index.to_string()).collect(),
        GpuSource::NvidiaSmi,
    ))
}

/// llama.cpp: one empty GPU group per replica (the count is checked against the ports first).
fn llama_groups(cfg: &ServeConfig) -> Result<Vec<Vec<String>>, Error> {
    let n = cfg.replicas.unwrap_or(1);
    check_port_range(cfg.port, n)?;
    Ok(vec![Vec::new(); n])
}

/// The engine executable; in a dry run a problem with it is only a note.
fn engine_program(
    cfg: &ServeConfig,
    dry_run: bool,
    notes: &mut Vec<String>,
) -> Result<PathBuf, Error> {
    match engine::resolve_program(cfg.engine, cfg.engine_bin.as_deref()) {
        Ok(p) => Ok(p),
        Err(e) if dry_run => {
            notes.push(e.to_string());
            Ok(cfg.engine_bin.clone().unwrap_or_else(|| {
                PathBuf::from(match cfg.engine {
                    EngineKind::Vllm => "vllm",
                    EngineKind::LlamaCpp => "llama-server",
                })
            }))
        }
        Err(e) => Err(e),
    }
}

/// A note when vLLM will download the model on its first start.
fn download_note(cfg: &ServeConfig) -> Option<String> {
    if cfg.engine != EngineKind::Vllm || Path::new(&cfg.model).exists() {
        return None;
    }
    let dir = hf_cache_dir(&cfg.model)?;
    (!dir.exists()).then(|| format!(
        "`{}` is not in the Hugging Face cache ({}): the first start downloads its weights (about 16 GB for an 8B model) within --startup-timeout",
        cfg.model,
        dir.display()
    ))
}

/// One planned replica per GPU group, on consecutive ports (checked to fit).
fn build_replicas(
    cfg: &ServeConfig,
    program: &Path,
    groups: Vec<Vec<String>>,
) -> Vec<PlannedReplica> {
    let host = url_host(&cfg.host);
    let advertised = advertised_host(cfg);
    groups
        .into_iter()
        .zip(cfg.port..=u16::MAX)
        .enumerate()
        .map(|(index, (gpus, port))| {
            let layout = ReplicaLayout { index, port, gpus };
            PlannedReplica {
                command: engine::command(cfg, program, &layout),
                base_url: format!("http://{host}:{port}"),
                advertised: format!("http://{advertised}:{port}/v1"),
                layout,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(url_host("::"), "[::1]");
        assert_eq!(url_host("::1"), "[::1]");
        assert_eq!(url_host("localhost"), "localhost");
    }
}
