//! Waiting for the client from a blocking Python call: the GIL is released while the
//! work runs on the tokio runtime, and Python's signal handlers run every 50 ms so
//! Ctrl-C (KeyboardInterrupt) cancels the work and raises promptly.

use std::future::Future;
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// How often a blocked call wakes up to run Python's signal handlers.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Runs `work` on the shared runtime and waits for it without holding the GIL. A
/// pending signal whose handler raises (SIGINT → KeyboardInterrupt) aborts the task,
/// which drops every request still in flight, and the exception propagates.
pub(crate) fn block_on<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, mut rx) = sync_channel(1);
    let task = crate::runtime::spawn(async move {
        // The receiver is gone only when the caller was interrupted: nothing to tell.
        let _ = tx.send(work.await);
    })
    .map_err(|e| PyRuntimeError::new_err(format!("cannot start the tokio runtime: {e}")))?;
    loop {
        // The receiver moves in and out: a `Receiver` is `Send` but not `Sync`.
        let (back, received) = py.detach(move || {
            let received = rx.recv_timeout(SIGNAL_POLL);
            (rx, received)
        });
        rx = back;
        match received {
            Ok(value) => return Ok(value),
            Err(RecvTimeoutError::Timeout) => {
                if let Err(interrupted) = py.check_signals() {
                    task.abort();
                    return Err(interrupted);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err(
                    "rewardanything_rs: the judging task stopped without a result",
                ));
            }
        }
    }
}
