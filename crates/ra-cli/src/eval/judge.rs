//! Judging the units file into `results.jsonl` with `ra-batch` (the engine of `ra
//! score`: one line per unit in unit order, flushed as it goes, resumable after a kill,
//! input lines checked by hash on resume), and reading the results back.

use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use indexmap::IndexMap;
use ra_batch::{Batch, LineDone, Stop};
use serde::Deserialize;
use tokio::sync::watch;

use crate::connect::Connection;

/// A unit's answer as stored: scores and ranking by masked name (`model-k`).
pub type RawAnswer = (IndexMap<String, f64>, Vec<String>);

/// One results line as read back (ra score's line format; other fields ignored).
#[derive(Deserialize)]
struct StoredLine {
    index: usize,
    #[serde(default)]
    scores: Option<IndexMap<String, f64>>,
    #[serde(default)]
    ranking: Option<Vec<String>>,
}

/// How the judging ended.
pub struct Outcome {
    pub interrupted: bool,
}

/// Stop levels from Ctrl-C / SIGTERM: the first drains (in-flight calls finish within
/// `grace`), a second one or the end of the grace stops at once.
fn watch_signals(grace: Duration) -> watch::Receiver<Stop> {
    let (tx, rx) = watch::channel(Stop::Run);
    tokio::spawn(async move {
        let mut signals = crate::signals::StopSignals::new();
        signals.next().await;
        eprintln!("ra eval: stopping: finishing calls in flight (again to stop now)");
        let _ = tx.send(Stop::Drain);
        tokio::select! {
            _ = signals.next() => {}
            _ = tokio::time::sleep(grace) => {}
        }
        let _ = tx.send(Stop::Now);
    });
    rx
}

/// Judges every unit not yet in `results`, writing lines in unit order.
pub async fn judge_units(
    units: &Path,
    total: usize,
    results: &Path,
    resume: bool,
    connection: &Connection,
    quiet: bool,
    max_stored_line_bytes: usize,
) -> anyhow::Result<Outcome> {
    let stop = watch_signals(Duration::from_secs(5));
    {
        // Calls still waiting for a slot must not leave after a stop signal.
        let client = connection.client.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            if stop.wait_for(|&l| l >= Stop::Drain).await.is_ok() {
                client.close();
            }
        });
    }
    let progress = crate::progress::bar(Some(total as u64), quiet);
    let started = std::time::Instant::now();
    let mut batch = Batch::to_file(results)
        .resume(resume)
        .max_stored_line_bytes(max_stored_line_bytes)
        .window(
            connection
                .concurrency
                .saturating_mul(crate::connect::WINDOW_PER_SLOT)
                .max(64),
        )
        .stop(stop);
    if let Some(bar) = progress.clone() {
        batch = batch.on_line(Box::new(move |done: &LineDone<'_>| {
            bar.inc(1);
            bar.set_message(crate::progress::message(done.summary, started.elapsed()));
        }));
    }
    let prepared = batch.prepare().await?;
    if let Some(bar) = &progress {
        bar.set_position(prepared.already_done() as u64);
    }
    let input = tokio::io::BufReader::new(
        tokio::fs::File::open(units)
            .await
            .with_context(|| format!("cannot read {}", units.display()))?,
    );
    let summary = prepared.run(input, connection.client.clone()).await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(Outcome {
        interrupted: summary.interrupted,
    })
}

/// Reads results back: for each unit, its scores and ranking (by `model-k`), or `None`
/// when it failed or is missing.
pub fn read_results(path: &Path, units: usize) -> anyhow::Result<Vec<Option<RawAnswer>>> {
    let mut out = vec![None; units];
    let reader = std::io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    for line in reader.lines() {
        let line = line?;
        let Ok(s) = serde_json::from_str::<StoredLine>(&line) else {
            continue;
        };
        if let (Some(slot), Some(scores), Some(ranking)) =
            (out.get_mut(s.index), s.scores, s.ranking)
        {
            *slot = Some((scores, ranking));
        }
    }
    Ok(out)
}
