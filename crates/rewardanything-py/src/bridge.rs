//! `ajudge` on asyncio: the judgment runs on the tokio runtime and its result is handed
//! to the caller's event loop. Written here rather than taken from `pyo3-async-runtimes`
//! so that every place that touches Python from a runtime thread can refuse to:
//!
//! * the result is delivered by a blocking task that first checks, with the GIL held,
//!   that the interpreter is not exiting ([`runtime::exiting`]) and that the loop is
//!   still open: a closed loop has nobody to tell, so nothing is printed;
//! * cancelling the asyncio future (`asyncio.wait_for`, `task.cancel()`) drops the
//!   judgment at once (its HTTP request is cancelled);
//! * a loop closed with judgments pending cancels them: one watcher task checks the
//!   loops with pending judgments every [`LOOP_CHECK`] (one GIL acquisition per tick,
//!   none when nothing is pending), so a pending judgment outlives its loop by at most
//!   that long.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use tokio::sync::{Notify, oneshot};

use crate::runtime;

/// How often the loops with pending judgments are checked for being closed.
pub(crate) const LOOP_CHECK: Duration = Duration::from_millis(200);

/// An event loop with a pending judgment, and how to tell that judgment it closed.
struct Watched {
    event_loop: Py<PyAny>,
    /// Gone once the judgment is over: the entry is dropped at the next check.
    closed: Weak<Notify>,
}

static WATCHED: Mutex<Vec<Watched>> = Mutex::new(Vec::new());

/// The process whose runtime runs the watcher (a forked child starts its own).
static WATCHER_PID: AtomicU32 = AtomicU32::new(0);

/// Called by the asyncio future when it is done (cancelled, or its result set): stops
/// the judgment if it is still running.
#[pyclass(frozen)]
struct CancelOnDone {
    tx: Mutex<Option<oneshot::Sender<()>>>,
}

#[pymethods]
impl CancelOnDone {
    fn __call__(&self, _future: &Bound<'_, PyAny>) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
            // The judgment may be over already: nobody to tell.
            let _ = tx.send(());
        }
    }
}

/// Run on the loop's thread (`call_soon_threadsafe`): sets the future's outcome unless
/// it was cancelled meanwhile.
#[pyfunction]
fn set_future(future: &Bound<'_, PyAny>, ok: bool, value: Bound<'_, PyAny>) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    let method = if ok { "set_result" } else { "set_exception" };
    future.call_method1(method, (value,))?;
    Ok(())
}

fn is_closed(event_loop: &Bound<'_, PyAny>) -> bool {
    // A loop that cannot say counts as closed: nothing can be delivered to it.
    event_loop
        .call_method0("is_closed")
        .and_then(|c| c.is_truthy())
        .unwrap_or(true)
}

/// Hands `work` to the running asyncio loop: returns an asyncio future for
/// `finish(work's output)`, which runs where the result is delivered, with the GIL held
/// (so an exception is made there, never on a runtime worker).
pub(crate) fn awaitable<'py, F, W>(
    py: Python<'py>,
    work: F,
    finish: fn(Python<'_>, W) -> PyResult<Py<PyAny>>,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = W> + Send + 'static,
    W: Send + 'static,
{
    let handle = runtime::handle()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the tokio runtime: {e}")))?;
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    future.call_method1(
        "add_done_callback",
        (CancelOnDone {
            tx: Mutex::new(Some(cancel_tx)),
        },),
    )?;
    let closed = watch(&handle, &event_loop);
    let event_loop = event_loop.unbind();
    let target = future.clone().unbind();
    handle.spawn(async move {
        let outcome = tokio::select! {
            result = work => Some(result),
            // Cancelled (or the future dropped): the judgment is dropped here.
            _ = cancel_rx => None,
            () = closed.notified() => None,
        };
        drop(closed);
        if let Some(result) = outcome {
            // Never take the GIL on a runtime worker: a blocked worker stalls others.
            tokio::task::spawn_blocking(move || deliver(event_loop, target, result, finish));
        }
        // Otherwise the Python handles are dropped without the GIL: pyo3 defers the
        // decrefs, touching nothing.
    });
    Ok(future)
}

/// Sets the future's outcome on its loop, unless the interpreter is exiting or the loop
/// closed (then the outcome is dropped silently: nobody can receive it).
fn deliver<W>(
    event_loop: Py<PyAny>,
    future: Py<PyAny>,
    output: W,
    finish: fn(Python<'_>, W) -> PyResult<Py<PyAny>>,
) {
    if runtime::exiting() {
        return;
    }
    Python::attach(|py| {
        // Again with the GIL held: `_shutdown` sets the flag under the GIL.
        if runtime::exiting() {
            return;
        }
        let event_loop = event_loop.bind(py);
        if is_closed(event_loop) {
            return;
        }
        let (ok, value) = match finish(py, output) {
            Ok(value) => (true, value),
            Err(e) => (false, e.into_value(py).into_any()),
        };
        static SETTER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let setter = match SETTER.get_or_try_init(py, || {
            wrap_pyfunction!(set_future, py).map(|f| f.into_any().unbind())
        }) {
            Ok(setter) => setter.bind(py),
            Err(e) => return e.write_unraisable(py, None),
        };
        if let Err(e) = event_loop.call_method1("call_soon_threadsafe", (setter, future, ok, value))
        {
            // Closed by another thread since the check: nobody to tell.
            if !is_closed(event_loop) {
                e.write_unraisable(py, Some(event_loop));
            }
        }
    });
}

/// Registers `event_loop` as having a pending judgment; the returned `Notify` fires if
/// the loop is found closed. Starts this process's watcher on first use.
fn watch(handle: &tokio::runtime::Handle, event_loop: &Bound<'_, PyAny>) -> Arc<Notify> {
    let closed = Arc::new(Notify::new());
    WATCHED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Watched {
            event_loop: event_loop.clone().unbind(),
            closed: Arc::downgrade(&closed),
        });
    let pid = std::process::id();
    if WATCHER_PID.swap(pid, Ordering::SeqCst) != pid {
        handle.spawn(watcher());
    }
    closed
}

/// Every [`LOOP_CHECK`] while judgments are pending: tells those whose loop closed.
async fn watcher() {
    let mut tick = tokio::time::interval(LOOP_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if runtime::exiting() {
            return;
        }
        let pending = std::mem::take(&mut *WATCHED.lock().unwrap_or_else(|p| p.into_inner()));
        if pending.is_empty() {
            continue;
        }
        let kept = match tokio::task::spawn_blocking(move || check(pending)).await {
            Ok(kept) => kept,
            // Dropped at shutdown: nothing left to watch.
            Err(_) => return,
        };
        WATCHED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(kept);
    }
}

/// Drops the entries of finished judgments, notifies those whose loop closed, keeps
/// the rest. Each loop is asked once.
fn check(pending: Vec<Watched>) -> Vec<Watched> {
    if runtime::exiting() {
        return pending;
    }
    Python::attach(|py| {
        if runtime::exiting() {
            return pending;
        }
        let mut closed_loops: HashMap<*mut pyo3::ffi::PyObject, bool> = HashMap::new();
        let mut kept = Vec::with_capacity(pending.len());
        for entry in pending {
            let Some(closed) = entry.closed.upgrade() else {
                continue;
            };
            let is = *closed_loops
                .entry(entry.event_loop.as_ptr())
                .or_insert_with(|| is_closed(entry.event_loop.bind(py)));
            if is {
                closed.notify_one();
            } else {
                kept.push(entry);
            }
        }
        kept
    })
}
