//! `ra-serve`: bring up, watch and stop the RewardAnything model server.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ra_serve::{EngineKind, ServeConfig, ServerBuilder, Timings};
use tokio::signal::unix::{SignalKind, signal};

/// Serve RewardAnything with vLLM (GPUs) or llama.cpp (CPU), supervised:
/// bounded startup, readiness, restarts, clean shutdown, no orphans.
#[derive(Debug, Parser)]
#[command(name = "ra-serve", version, args_override_self = true)]
struct Cli {
    /// Hugging Face id or local path (vLLM), or a local .gguf file (llama.cpp).
    #[arg(long, default_value = ra_serve::DEFAULT_MODEL)]
    model: String,
    /// Inference engine: vllm (GPUs) or llama-cpp (CPU hosts, GGUF).
    #[arg(long, default_value = "vllm")]
    engine: EngineKind,
    /// Address to listen on. Beyond loopback only with an API key or --allow-no-api-key.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Host the endpoints file names, reachable from other nodes [default: --host; for
    /// 0.0.0.0 or ::, this host name's first non-loopback address].
    #[arg(long, value_name = "HOST")]
    advertise_host: Option<String>,
    /// Listen beyond loopback without an API key (a trusted network only).
    #[arg(long)]
    allow_no_api_key: bool,
    /// Port of replica 0; replica i listens on port + i.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// GPUs per pipeline stage (vLLM).
    #[arg(long, default_value_t = 1)]
    tensor_parallel_size: usize,
    /// Pipeline stages (vLLM; across nodes with Ray, see README).
    #[arg(long, default_value_t = 1)]
    pipeline_parallel_size: usize,
    /// Independent servers [default: GPUs ÷ (TP × PP) for vLLM, 1 for llama.cpp].
    #[arg(long)]
    replicas: Option<usize>,
    /// GPU ids, e.g. 0,1,2,3 [default: CUDA_VISIBLE_DEVICES, else every GPU nvidia-smi lists].
    #[arg(long)]
    gpus: Option<String>,
    /// Context length per request (per slot for llama.cpp).
    #[arg(long, default_value_t = 32768)]
    max_model_len: usize,
    /// Fraction of each GPU's memory vLLM may use.
    #[arg(long, default_value_t = 0.9)]
    gpu_memory_utilization: f64,
    /// Model name clients send [default: the model id, or the .gguf file stem].
    #[arg(long)]
    served_model_name: Option<String>,
    /// API key the server demands (prefer the environment variable: ps shows arguments).
    #[arg(long, env = "RA_SERVE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// vLLM reasoning parser.
    #[arg(long, default_value = "none", value_parser = ["qwen3", "none"])]
    reasoning_parser: String,
    /// llama.cpp threads per replica [default: cores ÷ replicas].
    #[arg(long)]
    threads: Option<usize>,
    /// llama.cpp parallel slots per replica (the context is sized per slot × slots).
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Seconds a replica may take to become ready (a first run may download weights).
    #[arg(long, default_value_t = 900.0)]
    startup_timeout: f64,
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(long, default_value_t = 30.0)]
    grace: f64,
    /// Restarts allowed per replica within --restart-window.
    #[arg(long, default_value_t = 5)]
    max_restarts: u32,
    /// Seconds over which restarts are counted.
    #[arg(long, default_value_t = 600.0)]
    restart_window: f64,
    /// First restart delay in seconds (doubles each restart, at most 60 s).
    #[arg(long, default_value_t = 1.0)]
    restart_backoff: f64,
    /// Readiness poll interval in seconds (after quicker first polls).
    #[arg(long, default_value_t = 1.0)]
    poll_interval: f64,
    /// Seconds between health checks of a ready replica.
    #[arg(long, default_value_t = 2.0)]
    health_interval: f64,
    /// Consecutive failed health checks that trigger a restart.
    #[arg(long, default_value_t = 3)]
    health_failures: u32,
    /// Write {"endpoints": [...], "model": ..., "pid": ...} here once ready.
    #[arg(long)]
    endpoints_file: Option<PathBuf>,
    /// vLLM executable.
    #[arg(long, env = "RA_VLLM_BIN")]
    vllm_bin: Option<PathBuf>,
    /// llama-server executable.
    #[arg(long, env = "RA_LLAMA_SERVER_BIN")]
    llama_server_bin: Option<PathBuf>,
    /// Print the commands and environments it would run, then exit.
    #[arg(long)]
    dry_run: bool,
    /// Extra arguments passed to every engine process (after `--`).
    #[arg(last = true)]
    extra: Vec<String>,
}

fn secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .with_context(|| format!("--{name} must be a non-negative number of seconds"))
}

impl Cli {
    fn config(self) -> anyhow::Result<ServeConfig> {
        let timings = Timings {
            startup_timeout: secs("startup-timeout", self.startup_timeout)?,
            grace: secs("grace", self.grace)?,
            poll_interval: secs("poll-interval", self.poll_interval)?,
            health_interval: secs("health-interval", self.health_interval)?,
            health_failures: self.health_failures.max(1),
            restart_backoff: secs("restart-backoff", self.restart_backoff)?,
            max_restarts: self.max_restarts,
            restart_window: secs("restart-window", self.restart_window)?,
            ..Timings::default()
        };
        Ok(ServeConfig {
            engine_bin: match self.engine {
                EngineKind::Vllm => self.vllm_bin,
                EngineKind::LlamaCpp => self.llama_server_bin,
            },
            model: self.model,
            engine: self.engine,
            host: self.host,
            port: self.port,
            tensor_parallel_size: self.tensor_parallel_size,
            pipeline_parallel_size: self.pipeline_parallel_size,
            replicas: self.replicas,
            gpus: self.gpus.as_deref().map(ra_serve::gpus::parse_gpu_list),
            max_model_len: self.max_model_len,
            gpu_memory_utilization: self.gpu_memory_utilization,
            served_model_name: self.served_model_name,
            api_key: self.api_key.filter(|k| !k.is_empty()),
            reasoning_parser: Some(self.reasoning_parser).filter(|p| p != "none"),
            threads: self.threads,
            parallel: self.parallel,
            extra_args: self.extra,
            endpoints_file: self.endpoints_file,
            advertise_host: self.advertise_host,
            allow_no_api_key: self.allow_no_api_key,
            timings,
            ..ServeConfig::default()
        })
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let dry_run = cli.dry_run;
    let builder = ServerBuilder::from_config(cli.config()?);
    if dry_run {
        let plan = builder.dry_run().await?;
        print!("{}", plan.describe());
        return Ok(());
    }
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let handle = builder.spawn().await?;
    let mut requested = false;
    let outcome = loop {
        tokio::select! {
            r = handle.stopped() => break r,
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        if requested {
            tracing::warn!("second signal: killing every engine now");
            handle.request_shutdown(true);
        } else {
            requested = true;
            tracing::info!("shutting down (signal again to kill at once)");
            handle.request_shutdown(false);
        }
    };
    match outcome {
        Ok(()) if requested => {
            tracing::info!("stopped");
            Ok(())
        }
        Ok(()) => Err(StoppedUnexpectedly.into()),
        Err(e) => {
            if let Some(tail) = e.log_tail().filter(|t| !t.is_empty()) {
                eprintln!("--- last {} engine log lines ---", tail.len());
                for line in tail {
                    eprintln!("{line}");
                }
                eprintln!("---");
            }
            Err(e.into())
        }
    }
}

/// Exit status, the convention `ra` uses too: 0 a requested stop, 1 the server was up and
/// then failed, 2 it could not proceed (bad flags, a refused configuration, a busy port,
/// no engine, an engine that never became ready). clap exits 2 on bad flags by itself.
const FAILED_WHILE_SERVING: u8 = 1;
const CANNOT_PROCEED: u8 = 2;

/// Which of the two failures `e` is.
fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<ra_serve::Error>() {
        Some(ra_serve::Error::AllReplicasDropped | ra_serve::Error::ShutDown) => {
            FAILED_WHILE_SERVING
        }
        Some(_) => CANNOT_PROCEED,
        None if e.is::<StoppedUnexpectedly>() => FAILED_WHILE_SERVING,
        None => CANNOT_PROCEED,
    }
}

/// The supervisor ended without an error and without being asked to.
#[derive(Debug, thiserror::Error)]
#[error("the supervisor stopped unexpectedly")]
struct StoppedUnexpectedly;

/// What to do about `e`, when the flags can fix it.
fn hint(e: &anyhow::Error, host: &str) -> Option<String> {
    match e.downcast_ref::<ra_serve::Error>()? {
        ra_serve::Error::PortInUse { port, .. } => {
            let free = (port.saturating_add(1)..=port.saturating_add(100))
                .find(|p| ra_serve::preflight::check_port(host, *p).is_ok());
            Some(format!(
                "choose other ports with --port{}; replica i listens on --port + i",
                free.map(|p| format!(", e.g. --port {p} (free now)"))
                    .unwrap_or_default()
            ))
        }
        _ => None,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let host = cli.host.clone();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RA_SERVE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ra-serve: error: cannot start the async runtime: {e}");
            return ExitCode::from(CANNOT_PROCEED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ra-serve: error: {e:#}");
            if let Some(hint) = hint(&e, &host) {
                eprintln!("ra-serve: {hint}");
            }
            ExitCode::from(exit_code(&e))
        }
    }
}
