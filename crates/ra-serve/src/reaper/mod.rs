//! Starting an engine so that nothing it starts can outlive us.
//!
//! Each engine runs below two small processes, forked copies of this one (no
//! exec, so library users get them too):
//!
//! ```text
//! supervisor ── reaper ── guard ── engine (own process group) ── workers…
//! ```
//!
//! - The **reaper** is a child subreaper with a parent-death signal tied to a
//!   thread of the supervisor that lives exactly as long as the reaper, so it
//!   learns of the supervisor's death even by SIGKILL. It forwards SIGTERM,
//!   and on SIGUSR1, on the supervisor's death or when the guard exits it
//!   SIGKILLs everything below it and reaps it all.
//! - The **guard** is the same thing one level down: a child subreaper whose
//!   parent-death signal is the reaper's death. It starts the engine in a new
//!   process group, forwards SIGTERM to that group, and when the engine exits,
//!   when asked, or when the reaper dies (even by SIGKILL) it SIGKILLs the
//!   group and every process re-parented to it (workers that escaped into
//!   their own session), reaps them, and exits with the engine's status.
//!
//! Each covers the other: if the reaper is SIGKILLed the guard cleans up; if
//! the guard is SIGKILLed the engine dies of its own parent-death SIGKILL and
//! its children are re-parented to the reaper, which cleans up. Only both
//! killed at once leaves the engine's children to init.
//!
//! This needs Linux (`prctl` parent-death signals and subreapers,
//! `/proc/thread-self/children`); elsewhere [`EngineProcess::spawn`] fails
//! with a clear error.

#[cfg(target_os = "linux")]
mod linux;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::oneshot;

use crate::engine::EngineCommand;
use crate::error::Error;

/// How an engine ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    /// Exited with this status code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitInfo::Code(c) => write!(f, "exit status {c}"),
            ExitInfo::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// A running engine behind its reaper.
#[derive(Debug)]
pub struct EngineProcess {
    reaper: Pid,
    /// `true` once the reaper is about to be reaped; guards against signalling a reused pid.
    exited: Arc<Mutex<bool>>,
    exit_rx: Option<oneshot::Receiver<ExitInfo>>,
    status: Option<ExitInfo>,
    /// The engine's standard output (read end).
    pub stdout: Option<OwnedFd>,
    /// The engine's standard error (read end).
    pub stderr: Option<OwnedFd>,
}

/// What the platform part hands back once the reaper runs.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
struct Started {
    reaper: Pid,
    exited: Arc<Mutex<bool>>,
    exit_rx: oneshot::Receiver<ExitInfo>,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// Elsewhere than Linux nothing is started.
#[cfg(not(target_os = "linux"))]
fn unsupported(_cmd: &EngineCommand, _cleanup: Option<&Path>) -> Result<Started, Error> {
    Err(Error::Spawn(
        "ra-serve supervises engines only on Linux: leaving no process behind relies on prctl parent-death signals, child subreapers and /proc".into(),
    ))
}

impl EngineProcess {
    /// Starts `cmd` behind a reaper. Returns once the reaper is forked.
    ///
    /// Should this process die, the reaper also removes `cleanup` (the endpoints file).
    pub async fn spawn(
        cmd: &EngineCommand,
        cleanup: Option<&Path>,
    ) -> Result<EngineProcess, Error> {
        #[cfg(target_os = "linux")]
        let started = linux::spawn(cmd, cleanup).await?;
        #[cfg(not(target_os = "linux"))]
        let started = unsupported(cmd, cleanup)?;
        Ok(EngineProcess {
            reaper: started.reaper,
            exited: started.exited,
            exit_rx: Some(started.exit_rx),
            status: None,
            stdout: Some(started.stdout),
            stderr: Some(started.stderr),
        })
    }

    /// Process id of the reaper (the guard's parent, the engine's grandparent).
    pub fn reaper_pid(&self) -> u32 {
        self.reaper.as_raw() as u32
    }

    fn signal(&self, sig: Signal) {
        let exited = match self.exited.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if !*exited {
            let _ = nix::sys::signal::kill(self.reaper, sig);
        }
    }

    /// Asks the engine to stop: SIGTERM to its process group.
    pub fn terminate(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// Kills the engine's group and every descendant at once.
    pub fn kill(&self) {
        self.signal(Signal::SIGUSR1);
    }

    /// Kills the reaper itself; the guard then kills the engine and its descendants.
    pub(crate) fn kill_reaper(&self) {
        self.signal(Signal::SIGKILL);
    }

    /// Waits until the engine and everything it started are gone.
    pub async fn wait(&mut self) -> ExitInfo {
        if let Some(s) = self.status {
            return s;
        }
        // Awaited by reference so that a cancelled wait loses nothing.
        let status = match self.exit_rx.as_mut() {
            Some(rx) => rx.await.unwrap_or(ExitInfo::Signal(libc::SIGKILL)),
            None => ExitInfo::Signal(libc::SIGKILL),
        };
        self.status = Some(status);
        self.exit_rx = None;
        status
    }

    /// The exit status if the engine has already gone, without waiting.
    pub fn try_status(&mut self) -> Option<ExitInfo> {
        if self.status.is_none()
            && let Some(rx) = self.exit_rx.as_mut()
            && let Ok(s) = rx.try_recv()
        {
            self.status = Some(s);
            self.exit_rx = None;
        }
        self.status
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        // Dropped without a clean stop (panic, cancelled task, runtime shutdown).
        self.kill();
    }
}
