//! Errors of `ra-serve`.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can stop a deployment from coming up or staying up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// An option is invalid on its own (bad model path, zero sizes, …).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The engine executable could not be found.
    #[error("{name} not found: {hint}")]
    EngineNotFound {
        /// What was looked for.
        name: String,
        /// How to install it or point at it.
        hint: String,
    },
    /// The engine executable exists but cannot be run (a directory, no execute permission).
    #[error("cannot run the engine {}: it {reason}", path.display())]
    EngineUnusable {
        /// The file found.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The GPUs cannot hold the requested layout; nothing was started.
    #[error("impossible GPU layout: {0}")]
    Layout(String),
    /// `nvidia-smi` failed or printed something unexpected.
    #[error("could not list GPUs: {0}")]
    GpuQuery(String),
    /// A port some replica needs is taken.
    #[error("port {port} on {host} is already in use{}", holder.as_ref().map(|h| format!(" by {h}")).unwrap_or_default())]
    PortInUse {
        /// Address checked.
        host: String,
        /// The busy port.
        port: u16,
        /// Who holds it, when that can be seen (`pid 123 (python3)`).
        holder: Option<String>,
    },
    /// Forking or executing the engine failed.
    #[error("could not start the engine: {0}")]
    Spawn(String),
    /// A replica was not ready within the startup timeout; it was killed.
    #[error("replica {replica} was not ready within {} s (last probe: {last_probe}){}", timeout.as_secs_f64(), cause_suffix(cause))]
    StartupTimeout {
        /// Replica index.
        replica: usize,
        /// The timeout that expired.
        timeout: Duration,
        /// What the last readiness probe saw (`connection refused`, `/health answered 503 …`).
        last_probe: String,
        /// Likely cause matched from the log, if any.
        cause: Option<String>,
        /// Last lines of the engine's output.
        tail: Vec<String>,
    },
    /// A replica exited before it was ever ready.
    #[error(
        "replica {replica} exited during startup ({status}){}",
        cause_suffix(cause)
    )]
    StartupFailed {
        /// Replica index.
        replica: usize,
        /// How it exited (`exit status 1`, `signal 9`).
        status: String,
        /// Likely cause matched from the log, if any.
        cause: Option<String>,
        /// Last lines of the engine's output.
        tail: Vec<String>,
    },
    /// Every replica failed more often than `max_restarts` allows.
    #[error("every replica was dropped after too many restarts")]
    AllReplicasDropped,
    /// The endpoints file could not be written.
    #[error("could not write the endpoints file {path}: {message}")]
    EndpointsFile {
        /// The file.
        path: PathBuf,
        /// The I/O error, as text.
        message: String,
    },
    /// The supervisor stopped before the operation could complete.
    #[error("the server was shut down")]
    ShutDown,
}

fn cause_suffix(cause: &Option<String>) -> String {
    cause
        .as_ref()
        .map(|c| format!("; likely cause: {c}"))
        .unwrap_or_default()
}

impl Error {
    /// The engine's last output lines, for errors that carry them.
    pub fn log_tail(&self) -> Option<&[String]> {
        match self {
            Error::StartupTimeout { tail, .. } | Error::StartupFailed { tail, .. } => Some(tail),
            _ => None,
        }
    }
}
