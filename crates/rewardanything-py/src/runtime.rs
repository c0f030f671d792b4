//! The tokio runtime the client runs on: one per process, shut down at interpreter exit.
//!
//! * A runtime made before `fork()` has no worker threads in the child, so work spawned
//!   on it there would never run; the child gets a fresh runtime instead (the old one is
//!   forgotten: dropping it would wait for threads that do not exist).
//! * At exit (`atexit`, registered by the Python package) [`shutdown`] marks the
//!   interpreter as exiting, then stops the runtime with the GIL released: running tasks
//!   are dropped (so in-flight requests are cancelled) and its threads are joined while
//!   Python is still fully alive. A task that would touch Python checks [`exiting`] with
//!   the GIL held first, so nothing attaches to the interpreter once it starts to finalize
//!   (which aborted the process with `PyGILState_Release` or panicked "The Python
//!   interpreter is not initialized").

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::{Builder, Handle, Runtime};

struct PerProcess {
    pid: u32,
    runtime: Runtime,
}

static RUNTIME: Mutex<Option<PerProcess>> = Mutex::new(None);

/// Set (with the GIL held) when the interpreter starts to exit; never cleared.
static EXITING: AtomicBool = AtomicBool::new(false);

/// How long exit waits for the runtime's threads: its tasks are dropped at once, so this
/// only bounds a blocking task caught mid-way (they take microseconds).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Whether the interpreter is exiting: work must not touch Python any more. Read it
/// with the GIL held to be sure [`shutdown`] has not passed in between.
pub(crate) fn exiting() -> bool {
    EXITING.load(Ordering::SeqCst)
}

/// This process's runtime, started on first use; an error once the interpreter exits.
pub(crate) fn handle() -> std::io::Result<Handle> {
    if exiting() {
        return Err(std::io::Error::other(
            "the Python interpreter is exiting: no new judgments",
        ));
    }
    let pid = std::process::id();
    // A panic while the lock was held cannot leave the slot half-written.
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(current) = slot.as_ref().filter(|r| r.pid == pid) {
        return Ok(current.runtime.handle().clone());
    }
    let runtime = Builder::new_multi_thread()
        .enable_all()
        .thread_name("rewardanything-rs")
        .build()?;
    let handle = runtime.handle().clone();
    if let Some(inherited) = slot.replace(PerProcess { pid, runtime }) {
        // The parent's runtime, copied by fork(): its threads do not exist here.
        std::mem::forget(inherited);
    }
    Ok(handle)
}

/// Spawns on this process's runtime.
pub(crate) fn spawn<F>(fut: F) -> std::io::Result<tokio::task::JoinHandle<F::Output>>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(handle()?.spawn(fut))
}

/// `_shutdown()`, run by `atexit`: no new work, every task dropped (requests in flight
/// are cancelled), the runtime's threads joined, all before Python finalizes. Later
/// calls raise `RuntimeError`. Idempotent.
#[pyfunction]
pub(crate) fn _shutdown(py: Python<'_>) {
    // Set with the GIL held: a task that checks it under the GIL afterwards sees it.
    EXITING.store(true, Ordering::SeqCst);
    let taken = RUNTIME.lock().unwrap_or_else(|p| p.into_inner()).take();
    match taken {
        Some(current) if current.pid == std::process::id() => {
            // Released: a blocking task waiting for the GIL can finish (it sees
            // `exiting` and returns) rather than deadlock the shutdown.
            py.detach(move || current.runtime.shutdown_timeout(SHUTDOWN_GRACE));
        }
        Some(inherited) => std::mem::forget(inherited),
        None => {}
    }
}
