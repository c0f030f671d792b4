//! Bring up, watch and stop a RewardAnything model server: vLLM on GPUs,
//! llama.cpp's `llama-server` on CPU hosts.
//!
//! One call starts every replica, waits until each one answers `/health`
//! and lists the model, restarts replicas that die, and stops everything
//! (grandchildren included) when asked, when the handle is dropped, or when
//! the process itself dies.
//!
//! Starting engines needs Linux (parent-death signals, child subreapers and
//! `/proc` make sure no process outlives its supervisor); elsewhere the crate
//! builds, plans and dry-runs, and [`ServerBuilder::spawn`] fails with a clear
//! error.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ra_serve::Error> {
//! use ra_serve::{EngineKind, Server};
//! let server = Server::builder()
//!     .engine(EngineKind::LlamaCpp)
//!     .model("/models/RewardAnything-8B-v1-Q4_K_M.gguf")
//!     .port(8000)
//!     .spawn()
//!     .await?;
//! let endpoints = server.wait_ready().await?; // ["http://127.0.0.1:8000/v1"]
//! println!("serving {} at {endpoints:?}", server.model());
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod config;
pub mod diagnose;
pub mod engine;
mod error;
pub mod gpus;
pub mod health;
pub mod passthrough;
pub mod plan;
pub mod preflight;
pub mod reaper;
pub mod redact;
pub mod supervisor;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use config::{
    DEFAULT_MODEL, EngineKind, MAX_CONTEXT_TOKENS, MAX_THREADS, ServeConfig, Timings,
};
pub use error::Error;
pub use plan::Plan;
/// The endpoints file type, shared with every reader (defined in the client crate).
pub use rewardanything_client::EndpointsFile;
use supervisor::{Status, Stop};

/// Entry point of the library: `Server::builder()…spawn().await`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with the defaults of the `ra-serve` command.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: ServeConfig::default(),
        }
    }
}

/// Configures and starts a deployment.
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    config: ServeConfig,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty => $($field:ident).+) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$($field).+ = value.into();
            self
        }
    };
    ($(#[$doc:meta])* $name:ident: opt $ty:ty => $($field:ident).+) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$($field).+ = Some(value.into());
            self
        }
    };
}

impl ServerBuilder {
    /// Starts from a complete configuration.
    pub fn from_config(config: ServeConfig) -> Self {
        ServerBuilder { config }
    }

    /// The configuration as it stands.
    pub fn config(&self) -> &ServeConfig {
        &self.config
    }

    setter!(/// Model id or path (a local `.gguf` file for llama.cpp).
        model: impl Into<String> => model);
    setter!(/// Engine to run.
        engine: EngineKind => engine);
    setter!(/// Listening address (default `127.0.0.1`).
        host: impl Into<String> => host);
    setter!(/// Port of replica 0; replica `i` uses `port + i`.
        port: u16 => port);
    setter!(/// vLLM tensor-parallel size.
        tensor_parallel_size: usize => tensor_parallel_size);
    setter!(/// vLLM pipeline-parallel size.
        pipeline_parallel_size: usize => pipeline_parallel_size);
    setter!(/// Number of independent servers.
        replicas: usize => replicas);
    setter!(/// Maximum context length per request.
        max_model_len: usize => max_model_len);
    setter!(/// vLLM GPU memory fraction.
        gpu_memory_utilization: f64 => gpu_memory_utilization);
    setter!(/// Name clients send as `model`.
        served_model_name: opt impl Into<String> => served_model_name);
    setter!(/// API key the engines demand (passed through the environment, never argv).
        api_key: opt impl Into<String> => api_key);
    setter!(/// vLLM reasoning parser (`qwen3`).
        reasoning_parser: opt impl Into<String> => reasoning_parser);
    setter!(/// llama.cpp threads per replica.
        threads: usize => threads);
    setter!(/// llama.cpp parallel slots per replica.
        parallel: usize => parallel);
    setter!(/// Engine executable.
        engine_bin: opt impl Into<PathBuf> => engine_bin);
    setter!(/// `nvidia-smi` executable.
        nvidia_smi_bin: impl Into<PathBuf> => nvidia_smi_bin);
    setter!(/// Endpoints file written when every replica is ready.
        endpoints_file: opt impl Into<PathBuf> => endpoints_file);
    setter!(/// Host the endpoints file names (reachable from other nodes).
        advertise_host: opt impl Into<String> => advertise_host);
    setter!(/// Listen beyond loopback without an API key.
        allow_no_api_key: bool => allow_no_api_key);
    setter!(/// Bound on the wait for readiness.
        startup_timeout: Duration => timings.startup_timeout);
    setter!(/// SIGTERM-to-SIGKILL delay.
        grace: Duration => timings.grace);
    setter!(/// Readiness poll interval once past the quick first polls.
        poll_interval: Duration => timings.poll_interval);
    setter!(/// Health check interval once ready.
        health_interval: Duration => timings.health_interval);
    setter!(/// Consecutive failed health checks before a restart.
        health_failures: u32 => timings.health_failures);
    setter!(/// First restart delay (doubles each time).
        restart_backoff: Duration => timings.restart_backoff);
    setter!(/// Most restarts per replica within the restart window.
        max_restarts: u32 => timings.max_restarts);
    setter!(/// Window over which restarts are counted.
        restart_window: Duration => timings.restart_window);

    /// GPU ids to use (`["0", "1"]`).
    pub fn gpus<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.gpus = Some(ids.into_iter().map(Into::into).collect());
        self
    }

    /// Extra arguments for every engine command line.
    pub fn extra_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.extra_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Sets an environment variable for every engine process (replacing an earlier setting).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.config.env.retain(|(k, _)| *k != key);
        self.config.env.push((key, value.into()));
        self
    }

    /// Resolves the deployment without starting anything (what `--dry-run` prints).
    pub async fn plan(&self) -> Result<Plan, Error> {
        plan::plan(&self.config, false).await
    }

    /// What `--dry-run` checks and prints: [`plan`](Self::plan) (but a missing
    /// engine binary is only noted), then every port and the endpoints file's
    /// directory, as a real start would.
    pub async fn dry_run(&self) -> Result<Plan, Error> {
        let plan = plan::plan(&self.config, true).await?;
        preflight::check_plan(&plan)?;
        Ok(plan)
    }

    /// Checks the layout, every port and the endpoints file's directory, then starts all replicas.
    /// Must be called within a Tokio runtime, which must outlive the handle
    /// for a graceful stop on drop.
    pub async fn spawn(self) -> Result<ServerHandle, Error> {
        if !cfg!(target_os = "linux") {
            return Err(Error::Spawn(
                "ra-serve starts engines only on Linux (use --dry-run to see the commands)".into(),
            ));
        }
        let plan = plan::plan(&self.config, false).await?;
        preflight::check_plan(&plan)?;
        for note in &plan.notes {
            tracing::info!("{note}");
        }
        let plan = Arc::new(plan);
        let (stop_tx, stop_rx) = watch::channel(Stop::No);
        let (status_tx, status_rx) = watch::channel(Status {
            healthy: vec![false; plan.replicas.len()],
            ready_once: false,
            outcome: None,
        });
        tokio::spawn(supervisor::run(Arc::clone(&plan), status_tx, stop_rx));
        Ok(ServerHandle {
            plan,
            stop_tx,
            status_rx,
        })
    }
}

/// A running deployment. Dropping it stops every replica gracefully.
#[derive(Debug)]
pub struct ServerHandle {
    plan: Arc<Plan>,
    stop_tx: watch::Sender<Stop>,
    status_rx: watch::Receiver<Status>,
}

impl ServerHandle {
    /// Endpoints (`http://host:port/v1`) of the replicas that are healthy now.
    pub fn endpoints(&self) -> Vec<String> {
        let status = self.status_rx.borrow();
        self.plan
            .replicas
            .iter()
            .zip(&status.healthy)
            .filter(|(_, h)| **h)
            .map(|(r, _)| r.endpoint())
            .collect()
    }

    /// Every replica's endpoint, healthy or not.
    pub fn all_endpoints(&self) -> Vec<String> {
        self.plan.replicas.iter().map(|r| r.endpoint()).collect()
    }

    /// Name to send as `model` in requests.
    pub fn model(&self) -> &str {
        &self.plan.served_name
    }

    /// The resolved deployment.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Waits until every replica has been ready once; returns the healthy endpoints.
    /// Fails with the startup error (timeout, early exit) if there is one.
    pub async fn wait_ready(&self) -> Result<Vec<String>, Error> {
        let mut rx = self.status_rx.clone();
        let status = rx
            .wait_for(|s| s.ready_once || s.outcome.is_some())
            .await
            .map_err(|_| Error::ShutDown)?
            .clone();
        match status.outcome {
            Some(Err(e)) => Err(e),
            Some(Ok(())) => Err(Error::ShutDown),
            None => Ok(self.endpoints()),
        }
    }

    /// Asks for a stop without waiting: graceful (SIGTERM, grace, SIGKILL) or forced (SIGKILL now).
    pub fn request_shutdown(&self, force: bool) {
        let mode = if force { Stop::Force } else { Stop::Graceful };
        self.stop_tx.send_if_modified(|cur| {
            if mode > *cur {
                *cur = mode;
                true
            } else {
                false
            }
        });
    }

    /// Waits until the supervisor has finished: `Ok` after a requested stop,
    /// the failure otherwise (e.g. every replica dropped).
    pub async fn stopped(&self) -> Result<(), Error> {
        let mut rx = self.status_rx.clone();
        let status = rx
            .wait_for(|s| s.outcome.is_some())
            .await
            .map_err(|_| Error::ShutDown)?
            .clone();
        status.outcome.unwrap_or(Err(Error::ShutDown))
    }

    /// Stops every replica gracefully and waits until all processes are gone.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.request_shutdown(false);
        self.stopped().await
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.request_shutdown(false);
    }
}
