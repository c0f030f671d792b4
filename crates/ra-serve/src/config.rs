//! What to serve and how: the options shared by the command line and the library.

use std::path::PathBuf;
use std::time::Duration;

/// Default model: the RewardAnything checkpoint on the Hugging Face hub.
pub const DEFAULT_MODEL: &str = "zhuohaoyu/RewardAnything-8B-v1";

/// Largest context `ra-serve` accepts, in tokens (2^24 = 16,777,216): for
/// `--max-model-len`, and for llama.cpp's whole context (`--max-model-len` ×
/// `--parallel`). Far above any RewardAnything request; anything larger is a
/// typo that would only fail after the model has loaded.
///
/// ```
/// assert_eq!(ra_serve::MAX_CONTEXT_TOKENS, 16_777_216);
/// ```
pub const MAX_CONTEXT_TOKENS: usize = 1 << 24;

/// Most llama.cpp threads per replica `ra-serve` accepts (ggml's own
/// `GGML_MAX_N_THREADS` is 512).
///
/// ```
/// assert_eq!(ra_serve::MAX_THREADS, 512);
/// ```
pub const MAX_THREADS: usize = 512;

/// Which inference engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// `vllm serve` on one or more NVIDIA GPUs.
    Vllm,
    /// `llama-server` from llama.cpp, for CPU hosts and laptops (GGUF models).
    LlamaCpp,
}

impl EngineKind {
    /// The engine's name as written on the command line (`vllm`, `llama-cpp`).
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Vllm => "vllm",
            EngineKind::LlamaCpp => "llama-cpp",
        }
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vllm" => Ok(EngineKind::Vllm),
            "llama-cpp" | "llama.cpp" | "llamacpp" => Ok(EngineKind::LlamaCpp),
            other => Err(format!(
                "unknown engine `{other}` (expected vllm or llama-cpp)"
            )),
        }
    }
}

/// Every duration the supervisor uses; all settable so tests run in seconds.
#[derive(Debug, Clone)]
pub struct Timings {
    /// Bound on the wait for a replica to become ready (default 900 s).
    pub startup_timeout: Duration,
    /// Time between SIGTERM and SIGKILL on shutdown or restart (default 30 s).
    pub grace: Duration,
    /// Readiness polling settles at this interval after a quick start (default 1 s).
    pub poll_interval: Duration,
    /// Interval of `/health` checks once a replica is ready (default 2 s).
    pub health_interval: Duration,
    /// Consecutive failed health checks that count as a dead replica (default 3).
    pub health_failures: u32,
    /// Timeout of a single HTTP probe (default 5 s).
    pub probe_timeout: Duration,
    /// First restart delay; doubles on each restart (default 1 s).
    pub restart_backoff: Duration,
    /// Upper bound of the restart delay (default 60 s).
    pub restart_backoff_max: Duration,
    /// Restarts allowed per replica within `restart_window` (default 5).
    pub max_restarts: u32,
    /// Window over which restarts are counted (default 10 minutes).
    pub restart_window: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            startup_timeout: Duration::from_secs(900),
            grace: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            health_interval: Duration::from_secs(2),
            health_failures: 3,
            probe_timeout: Duration::from_secs(5),
            restart_backoff: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(60),
            max_restarts: 5,
            restart_window: Duration::from_secs(600),
        }
    }
}

/// The full description of a deployment. Build it with [`crate::Server::builder`].
/// Its `Debug` output shows the API key, credential-like variables and a
/// passthrough `--api-key` as `***`.
#[derive(Clone)]
pub struct ServeConfig {
    /// Hugging Face id or local path (vLLM), or a local `.gguf` file (llama.cpp).
    pub model: String,
    /// Engine to run.
    pub engine: EngineKind,
    /// Address the engines listen on (default `127.0.0.1`).
    pub host: String,
    /// Port of replica 0; replica `i` listens on `port + i` (default 8000).
    pub port: u16,
    /// vLLM `--tensor-parallel-size` (GPUs per pipeline stage).
    pub tensor_parallel_size: usize,
    /// vLLM `--pipeline-parallel-size`.
    pub pipeline_parallel_size: usize,
    /// Independent servers; default: GPUs ÷ (TP × PP) for vLLM, 1 for llama.cpp.
    pub replicas: Option<usize>,
    /// GPU ids to use; default `CUDA_VISIBLE_DEVICES`, else every GPU `nvidia-smi` lists.
    pub gpus: Option<Vec<String>>,
    /// Context length per request (default 32768: four long answers plus thinking overflow 8192).
    pub max_model_len: usize,
    /// Fraction of each GPU's memory vLLM may take (default 0.9).
    pub gpu_memory_utilization: f64,
    /// Model name clients send; default the model id (vLLM) or the file stem (llama.cpp).
    pub served_model_name: Option<String>,
    /// API key the engines demand; passed through the environment only.
    pub api_key: Option<String>,
    /// vLLM `--reasoning-parser` (e.g. `qwen3`); off by default, the client handles both.
    pub reasoning_parser: Option<String>,
    /// llama.cpp threads per replica; default the available cores ÷ replicas.
    pub threads: Option<usize>,
    /// llama.cpp slots (parallel requests) per replica (default 1).
    pub parallel: usize,
    /// Engine executable; default `RA_VLLM_BIN`/`RA_LLAMA_SERVER_BIN`, else the name on `PATH`.
    pub engine_bin: Option<PathBuf>,
    /// `nvidia-smi` executable used to list GPUs (default `nvidia-smi` on `PATH`).
    pub nvidia_smi_bin: PathBuf,
    /// Extra arguments appended to every engine command line.
    pub extra_args: Vec<String>,
    /// Extra environment variables for every engine (on top of the inherited environment).
    pub env: Vec<(String, String)>,
    /// Where to write the endpoints file once every replica is ready.
    pub endpoints_file: Option<PathBuf>,
    /// Host written in the endpoints file, the one other nodes reach this one at
    /// (default: the listening host; for a wildcard one, this host name's first
    /// non-loopback address, else the address of the default route).
    pub advertise_host: Option<String>,
    /// Listen beyond loopback without an API key (refused otherwise: anyone who can
    /// reach the port could spend the GPUs).
    pub allow_no_api_key: bool,
    /// Supervisor timings.
    pub timings: Timings,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            model: DEFAULT_MODEL.to_string(),
            engine: EngineKind::Vllm,
            host: "127.0.0.1".to_string(),
            port: 8000,
            tensor_parallel_size: 1,
            pipeline_parallel_size: 1,
            replicas: None,
            gpus: None,
            max_model_len: 32768,
            gpu_memory_utilization: 0.9,
            served_model_name: None,
            api_key: None,
            reasoning_parser: None,
            threads: None,
            parallel: 1,
            engine_bin: None,
            nvidia_smi_bin: PathBuf::from("nvidia-smi"),
            extra_args: Vec::new(),
            env: Vec::new(),
            endpoints_file: None,
            advertise_host: None,
            allow_no_api_key: false,
            timings: Timings::default(),
        }
    }
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::redact::{REDACTED, looks_secret};
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), if looks_secret(k) { REDACTED } else { v }))
            .collect();
        f.debug_struct("ServeConfig")
            .field("model", &self.model)
            .field("engine", &self.engine)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tensor_parallel_size", &self.tensor_parallel_size)
            .field("pipeline_parallel_size", &self.pipeline_parallel_size)
            .field("replicas", &self.replicas)
            .field("gpus", &self.gpus)
            .field("max_model_len", &self.max_model_len)
            .field("gpu_memory_utilization", &self.gpu_memory_utilization)
            .field("served_model_name", &self.served_model_name)
            .field("api_key", &self.api_key.as_ref().map(|_| REDACTED))
            .field("reasoning_parser", &self.reasoning_parser)
            .field("threads", &self.threads)
            .field("parallel", &self.parallel)
            .field("engine_bin", &self.engine_bin)
            .field("nvidia_smi_bin", &self.nvidia_smi_bin)
            .field("extra_args", &crate::redact::redact_keys(&self.extra_args))
            .field("env", &env)
            .field("endpoints_file", &self.endpoints_file)
            .field("advertise_host", &self.advertise_host)
            .field("allow_no_api_key", &self.allow_no_api_key)
            .field("timings", &self.timings)
            .finish()
    }
}

impl ServeConfig {
    /// Whether the engines listen beyond loopback (a wildcard, a routable address or a
    /// name other than `localhost`).
    ///
    /// ```
    /// let mut c = ra_serve::ServeConfig::default();
    /// assert!(!c.listens_beyond_loopback());
    /// c.host = "0.0.0.0".into();
    /// assert!(c.listens_beyond_loopback());
    /// ```
    pub fn listens_beyond_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => !ip.is_loopback(),
            Err(_) => !host.eq_ignore_ascii_case("localhost"),
        }
    }

    /// The model name clients must send: the explicit served name, else the
    /// model id (vLLM's own default) or the `.gguf` file stem (llama.cpp).
    pub fn served_name(&self) -> String {
        if let Some(name) = &self.served_model_name {
            return name.clone();
        }
        match self.engine {
            EngineKind::Vllm => self.model.clone(),
            EngineKind::LlamaCpp => std::path::Path::new(&self.model)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.model.clone()),
        }
    }
}
