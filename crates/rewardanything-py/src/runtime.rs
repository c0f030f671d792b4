//! The tokio runtime the client runs on: one per process. A runtime made before
//! `fork()` has no worker threads in the child, so work spawned on it there would never
//! run; the child gets a fresh runtime instead (the old one is leaked: dropping it would
//! wait for threads that do not exist). Also the `pyo3-async-runtimes` runtime behind
//! `ajudge`, so both paths use the same per-process runtime.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::generic::{ContextExt, Runtime as GenericRuntime};
use tokio::runtime::{Builder, Handle, Runtime};

struct PerProcess {
    pid: u32,
    runtime: &'static Runtime,
}

static RUNTIME: Mutex<Option<PerProcess>> = Mutex::new(None);

/// This process's runtime, started on first use.
pub(crate) fn handle() -> std::io::Result<Handle> {
    let pid = std::process::id();
    // A panic while the lock was held cannot leave the slot half-written.
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(current) = slot.as_ref().filter(|r| r.pid == pid) {
        return Ok(current.runtime.handle().clone());
    }
    let runtime: &'static Runtime = Box::leak(Box::new(
        Builder::new_multi_thread()
            .enable_all()
            .thread_name("rewardanything-rs")
            .build()?,
    ));
    *slot = Some(PerProcess { pid, runtime });
    Ok(runtime.handle().clone())
}

/// Spawns on this process's runtime.
pub(crate) fn spawn<F>(fut: F) -> std::io::Result<tokio::task::JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(handle()?.spawn(fut))
}

/// The runtime `pyo3_async_runtimes::generic::future_into_py` uses for `ajudge`.
pub(crate) struct ForkSafe;

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

/// Callers make sure the runtime exists ([`handle`] succeeded) before handing work to
/// `pyo3-async-runtimes`, so this only fails if the OS refuses threads in between.
fn started() -> Handle {
    match handle() {
        Ok(h) => h,
        Err(e) => panic!("rewardanything_rs: cannot start the tokio runtime: {e}"),
    }
}

impl GenericRuntime for ForkSafe {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        started().spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        started().spawn_blocking(f)
    }
}

impl ContextExt for ForkSafe {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        // A fresh cell: setting it cannot fail.
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}
