//! Running one job: `ra_batch` judges `requests.jsonl` into `results.jsonl`, resuming
//! what a previous run (before a crash or a shutdown) left; then `job.json` says done.

use std::sync::Arc;
use std::time::Duration;

use ra_batch::{Batch, LineDone, Stop};
use rewardanything_client::Client;
use tokio::sync::{Semaphore, watch};

use super::disk::{self, REQUESTS, RESULTS};
use super::{Job, Status};
use crate::metrics::{JobCounters, Metrics};

/// What a job's run needs from its store.
pub struct Context {
    pub client: Client,
    pub window: usize,
    pub max_line_bytes: usize,
    /// Permits of the jobs judged at the same time.
    pub running: Arc<Semaphore>,
    pub stop: watch::Receiver<Stop>,
    pub counters: JobCounters,
    /// Where each judgment of the job is counted, as the other routes' are.
    pub metrics: Arc<Metrics>,
}

/// Runs `job` to its end when its turn comes, or until a stop (then it stays
/// unfinished on disk and resumes on the next start).
pub async fn run(job: Arc<Job>, cx: Context) {
    let mut stop = cx.stop.clone();
    let _turn = tokio::select! {
        permit = Arc::clone(&cx.running).acquire_owned() => match permit {
            Ok(permit) => permit,
            Err(_) => return,
        },
        _ = stop.wait_for(|s| *s != Stop::Run) => return,
    };
    let outcome = judge(&job, &cx).await;
    let counters = cx.counters;
    let (status, error) = match outcome {
        // Stopped: nothing to record, the next start resumes it.
        Ok(true) => return,
        Ok(false) => (Status::Complete, None),
        Err(e) => {
            tracing::error!(job = %job.id, "batch job failed: {e}");
            (Status::Failed(e.clone()), Some(e))
        }
    };
    let state = disk::State {
        start_time: job.start_time.clone(),
        num_requests: job.num_requests,
        complete: true,
        error,
    };
    let dir = job.dir.clone();
    let saved = tokio::task::spawn_blocking(move || disk::write_state(&dir, &state)).await;
    match saved {
        Ok(Ok(())) => {}
        // The results are complete on disk; the next start finds them so and says done.
        Ok(Err(e)) => tracing::error!(job = %job.id, "cannot record the job as done: {e}"),
        Err(e) => tracing::error!(job = %job.id, "cannot record the job as done: {e}"),
    }
    match status {
        Status::Complete => counters.completed.inc(),
        _ => counters.failed.inc(),
    };
    job.status.send_replace(status);
}

/// `Ok(interrupted)`, or why the job cannot finish (a message kept in `job.json`).
async fn judge(job: &Job, cx: &Context) -> Result<bool, String> {
    let requests = tokio::fs::File::open(job.dir.join(REQUESTS))
        .await
        .map_err(|e| format!("cannot read {REQUESTS}: {e}"))?;
    let input = tokio::io::BufReader::with_capacity(1 << 16, requests);
    let metrics = Arc::clone(&cx.metrics);
    let summary = Batch::to_file(job.dir.join(RESULTS))
        .resume(true)
        .max_line_bytes(cx.max_line_bytes)
        // Every line reaches the OS as soon as it is written, and at most `window`
        // judgments are in progress: a crash makes at most `window` be judged again.
        .flush_every(Duration::ZERO)
        .window(cx.window)
        .stop(cx.stop.clone())
        .on_line(move |done: &LineDone<'_>| {
            if done.fresh {
                metrics.batch_line(done.error_kind);
            }
        })
        .prepare()
        .await
        .map_err(|e| error_text(&e))?
        .run(input, cx.client.clone())
        .await
        .map_err(|e| error_text(&e))?;
    Ok(summary.interrupted)
}

/// The error and its causes on one line.
fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
