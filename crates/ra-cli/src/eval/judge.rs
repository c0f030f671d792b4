//! Judging the units file into `results.jsonl`, one line per unit in unit order, and
//! reading it back.
//!
//! Resuming keeps the whole lines already written (a partial last line is cut) and
//! judges the rest; `mod.rs` has checked that the units file is the same as the one
//! those lines answer.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use indexmap::IndexMap;
use rewardanything_client::JudgeRequest;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::connect::Connection;
use crate::input::RequestInput;

/// A unit's answer as stored: scores and ranking by masked name (`model-k`).
pub type RawAnswer = (IndexMap<String, f64>, Vec<String>);

/// How the judging ended.
pub struct Outcome {
    pub interrupted: bool,
}

/// One results line as read back.
#[derive(Deserialize)]
struct StoredLine {
    index: usize,
    #[serde(default)]
    scores: Option<IndexMap<String, f64>>,
    #[serde(default)]
    ranking: Option<Vec<String>>,
}

/// Whole, valid lines at the start of `results` (its length in bytes and count).
fn kept_prefix(path: &Path) -> anyhow::Result<(u64, usize)> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut reader = std::io::BufReader::new(file);
    let (mut bytes, mut count) = (0u64, 0usize);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        match serde_json::from_slice::<StoredLine>(&line) {
            Ok(s) if s.index == count => {}
            _ => break,
        }
        bytes += n as u64;
        count += 1;
    }
    Ok((bytes, count))
}

/// Judges every unit not yet in `results`, writing lines in unit order.
pub async fn judge_units(
    units: &Path,
    total: usize,
    results: &Path,
    resume: bool,
    connection: &Connection,
    quiet: bool,
) -> anyhow::Result<Outcome> {
    let (keep_bytes, kept) = if resume {
        kept_prefix(results)?
    } else {
        (0, 0)
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(results)
        .with_context(|| format!("cannot write {}", results.display()))?;
    file.set_len(keep_bytes)?;
    let mut out = std::io::BufWriter::new(file);
    use std::io::Seek;
    out.seek(std::io::SeekFrom::End(0))?;

    let progress = progress_bar(total as u64, kept as u64, quiet);
    // Read lazily: only the lines in flight are held.
    let unit_lines = std::io::BufReader::new(
        std::fs::File::open(units).with_context(|| format!("cannot read {}", units.display()))?,
    )
    .lines();
    let requests = unit_lines.skip(kept).map(|l| {
        let l = l.map_err(|e| e.to_string())?;
        serde_json::from_str::<RequestInput>(&l)
            .map(|r| (r.id.clone(), r.into_request()))
            .map_err(|e| e.to_string())
    });
    let client = connection.client.clone();
    let mut stream = futures::stream::iter(requests.enumerate())
        .map(move |(i, parsed)| {
            let client = client.clone();
            async move {
                match parsed {
                    Ok((id, request)) => judged_line(kept + i, id, &client, request).await,
                    Err(e) => {
                        json!({"index": kept + i, "id": null, "scores": null, "ranking": null,
                                     "error": {"kind": "bad_input", "message": e}})
                    }
                }
            }
        })
        .buffered(connection.concurrency.saturating_mul(2).max(1));
    let mut signals = crate::signals::StopSignals::new();
    let mut stop = std::pin::pin!(signals.next());
    let mut last_flush = Instant::now();
    loop {
        let line = tokio::select! {
            _ = &mut stop => {
                out.flush()?;
                return Ok(Outcome { interrupted: true });
            }
            line = stream.next() => line,
        };
        let Some(line) = line else { break };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        if last_flush.elapsed() >= Duration::from_millis(100) {
            out.flush()?;
            last_flush = Instant::now();
        }
        if let Some(bar) = &progress {
            bar.inc(1);
        }
    }
    out.flush()?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(Outcome { interrupted: false })
}

async fn judged_line(
    index: usize,
    id: Value,
    client: &rewardanything_client::Client,
    request: JudgeRequest,
) -> Value {
    match client.judge_detailed(&request).await {
        Ok(j) => json!({
            "index": index, "id": id,
            "scores": j.judgment.scores, "ranking": j.judgment.ranking,
            "error": null,
        }),
        Err(e) => json!({
            "index": index, "id": id, "scores": null, "ranking": null,
            "error": {"kind": e.kind_str(), "message": e.to_string()},
        }),
    }
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

fn progress_bar(total: u64, done: u64, quiet: bool) -> Option<indicatif::ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} judged calls {per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.set_position(done);
    Some(bar)
}
