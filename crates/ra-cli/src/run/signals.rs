//! Ctrl-C and SIGTERM, the two ways a user or a supervisor asks `ra` to stop.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Yields once per stop request (Ctrl-C or SIGTERM), as often as they come.
pub struct StopSignals {
    /// `None` when SIGTERM cannot be watched: Ctrl-C still works.
    term: Option<Signal>,
}

impl StopSignals {
    pub fn new() -> Self {
        StopSignals {
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Completes on the next Ctrl-C or SIGTERM.
    pub async fn next(&mut self) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match self.term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}
