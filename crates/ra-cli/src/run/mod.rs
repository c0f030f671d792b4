//! What `ra score` and `ra eval` share around an `ra_batch` run: the `--grace` flag and
//! the stop signals, the progress bar, the output lock, the batch settings that follow
//! from the client's flags, and following the endpoints file while the run lasts.

pub mod lock;
pub mod progress;
pub mod signals;

use std::time::{Duration, Instant};

use clap::Args;
use ra_batch::{Batch, BatchError, LineDone, Stop, Summary};
use rewardanything_client::Client;
use tokio::io::AsyncBufRead;
use tokio::sync::watch;

use crate::connect::Connection;
use crate::validate;

/// Most orders per line for `--permutations` (`ra score` and `ra eval`): every order is
/// one more judgment of the whole request, so the command line caps the cost far below
/// the client's own bound (`rewardanything_client::MAX_PERMUTATIONS`).
pub const MAX_PERMUTATIONS: u16 = 64;
const _: () = assert!(
    MAX_PERMUTATIONS as usize <= rewardanything_client::MAX_PERMUTATIONS,
    "the command line's cap is within the client's"
);

/// `--grace`, the same flag for every command that runs a batch.
#[derive(Debug, Args)]
pub struct GraceArgs {
    /// Seconds to let in-flight requests finish after Ctrl-C / SIGTERM (a second signal
    /// stops at once); what finished is written and `--resume` completes the rest.
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = validate::seconds_or_zero)]
    pub grace: Duration,
}

/// Lines in progress per request in flight, for the runs that write results in input
/// order (`ra score`, `ra eval`, the gateway's batch jobs): the oldest line may take
/// this many times the mean latency before it holds the others back. A replica 5×
/// slower than the rest, with its own queue, needs more than 4 (measured with
/// `scripts/bench_fleet.py`: 69 % of the fleet's capacity at 4, see the README's
/// "Scaling out").
pub const WINDOW_PER_SLOT: usize = 16;

/// The longest results line a resumed run keeps: one holds at most a response body's
/// worth of reasoning, escaped (twice `--max-response-bytes`), and never less than the
/// longest input line read by default.
pub fn stored_line_bytes(max_response_bytes: usize) -> usize {
    max_response_bytes
        .saturating_mul(2)
        .max(ra_batch::lines::DEFAULT_MAX_LINE_BYTES)
}

/// Stop levels from Ctrl-C / SIGTERM: the first drains (the batch's
/// [`close_on_drain`](Batch::close_on_drain) grace applies), a second one stops at once.
fn watch_signals(command: &'static str) -> watch::Receiver<Stop> {
    let (tx, rx) = watch::channel(Stop::Run);
    tokio::spawn(async move {
        let mut signals = signals::StopSignals::new();
        signals.next().await;
        eprintln!("{command}: stopping: finishing requests in flight (again to stop now)");
        let _ = tx.send(Stop::Drain);
        signals.next().await;
        let _ = tx.send(Stop::Now);
    });
    rx
}

/// A batch run of a command: its client, its progress bar and its clock.
pub struct BatchRun {
    command: &'static str,
    client: Client,
    concurrency: usize,
    progress: Option<indicatif::ProgressBar>,
    started: Instant,
    quiet: bool,
}

impl BatchRun {
    /// `total` lines for the bar (a spinner when unknown); `quiet` shows no bar and no
    /// warnings. `started` is the clock of the rate the bar and the summary show.
    pub fn new(
        command: &'static str,
        connection: &Connection,
        total: Option<u64>,
        quiet: bool,
        started: Instant,
    ) -> Self {
        BatchRun {
            command,
            client: connection.client.clone(),
            concurrency: connection.concurrency,
            progress: progress::bar(total, quiet),
            started,
            quiet,
        }
    }

    /// The settings every command's batch shares: the stored-line bound, a window of
    /// [`WINDOW_PER_SLOT`] times the concurrency (at least 64), a graceful stop on signals (the
    /// client is closed at the first and in-flight judgments get `grace`) and the bar.
    /// Then reads what a resumed output keeps (nothing is written), saying why it keeps
    /// less than the whole output.
    pub async fn prepare(
        &self,
        batch: Batch,
        grace: Duration,
        max_response_bytes: usize,
    ) -> Result<ra_batch::Prepared, BatchError> {
        let batch = batch
            .max_stored_line_bytes(stored_line_bytes(max_response_bytes))
            .window(self.concurrency.saturating_mul(WINDOW_PER_SLOT).max(64))
            .stop(watch_signals(self.command))
            .close_on_drain(grace);
        let batch = match self.progress.clone() {
            Some(bar) => {
                let started = self.started;
                batch.on_line(move |done: &LineDone<'_>| {
                    bar.inc(1);
                    // The summary's own figure: the same count over the same wall time.
                    bar.set_message(progress::message(done.summary, started.elapsed()));
                })
            }
            None => batch,
        };
        let prepared = batch.prepare().await?;
        if let Some(cut) = prepared.cut()
            && !self.quiet
        {
            eprintln!(
                "{}: warning: resuming after {} whole lines: {cut}; it and the lines after it \
                 are judged again",
                self.command,
                prepared.kept()
            );
        }
        if let Some(bar) = &self.progress {
            bar.set_position(prepared.already_done() as u64);
        }
        Ok(prepared)
    }

    /// Runs the batch (the client follows any endpoints file or directory meanwhile) and
    /// clears the bar.
    pub async fn run<R>(self, prepared: ra_batch::Prepared, input: R) -> Result<Summary, BatchError>
    where
        R: AsyncBufRead + Unpin + Send + 'static,
    {
        let result = prepared.run(input, self.client.clone()).await;
        if let Some(bar) = &self.progress {
            bar.finish_and_clear();
        }
        result
    }
}
