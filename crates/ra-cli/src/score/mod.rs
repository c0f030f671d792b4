//! `ra score`: high-throughput JSON Lines batch scoring.
//!
//! One output line per input line, in input order, written as soon as it is next in
//! order and flushed at least every 100 ms. Every output line carries `input_hash` (the
//! XXH3-64 of the raw input line) so that `--resume` can refuse an input that changed.

mod output;
mod resume;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::pin::pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::{FutureExt, StreamExt};
use indexmap::IndexMap;
use rewardanything_client::{Client, JudgeRequest};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

use tokio::sync::{Semaphore, watch};

use crate::connect::ClientArgs;
use crate::endpoints_file;
use crate::exit;
use crate::lines::{LineReader, open_input};
use output::{OutputSink, ResultLine};
use resume::{ResumeState, StoredLine};

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Input JSON Lines (`-` for stdin): {"id"?, "principle", "prompt", "responses": {…}, "mask_responses"?}.
    #[arg(long, value_name = "PATH")]
    input: String,
    /// Output JSON Lines (`-` for stdout); an existing file is rewritten unless --resume.
    #[arg(long, value_name = "PATH")]
    output: String,
    /// Keep the valid lines of an existing output and judge only the rest.
    #[arg(long)]
    resume: bool,
    /// With --resume, also redo lines whose result was an error.
    #[arg(long, requires = "resume")]
    retry_failed: bool,
    /// No progress bar and no summary.
    #[arg(long)]
    quiet: bool,
    /// Seconds to let in-flight requests finish after Ctrl-C / SIGTERM.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    grace: f64,
    #[command(flatten)]
    client: ClientArgs,
}

/// One input line as `ra score` reads it.
#[derive(Deserialize)]
struct ScoreInput {
    #[serde(default)]
    id: Value,
    principle: String,
    prompt: String,
    responses: IndexMap<String, String>,
    #[serde(default)]
    mask_responses: Option<bool>,
}

/// The raw line's hash, stored in the output to detect a changed input on resume.
pub fn input_hash(line: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(line))
}

/// What to do with one input line.
enum Job {
    /// Already decided (a bad line, or a kept line re-emitted by --retry-failed).
    Ready(ResultLine),
    /// A kept line whose stored result is an error (counted for the exit status).
    KeptFailed,
    /// Send to the model.
    Judge(Box<Pending>),
}

/// A request waiting to be judged, with what its result line needs.
struct Pending {
    index: usize,
    id: Value,
    hash: String,
    request: JudgeRequest,
}

fn decode_job(index: usize, line: &[u8]) -> Job {
    let hash = input_hash(line);
    let decoded = crate::lines::decode::<ScoreInput>(line).and_then(|input| {
        if input.responses.is_empty() {
            Err("`responses` is empty: nothing to judge".to_string())
        } else {
            Ok(input)
        }
    });
    match decoded {
        Ok(input) => Job::Judge(Box::new(Pending {
            index,
            id: input.id,
            hash,
            request: JudgeRequest {
                principle: input.principle,
                prompt: input.prompt,
                responses: input.responses,
                mask_responses: input.mask_responses.unwrap_or(true),
            },
        })),
        Err(message) => {
            // Keep the id when the line is JSON but not a valid request.
            let id = serde_json::from_slice::<Value>(line)
                .ok()
                .and_then(|v| v.get("id").cloned())
                .unwrap_or(Value::Null);
            Job::Ready(ResultLine::bad_input(index, id, hash, message))
        }
    }
}

async fn judge_line(client: Client, pending: Pending) -> ResultLine {
    let started = Instant::now();
    let result = client.judge_detailed(&pending.request).await;
    ResultLine::from_result(
        pending.index,
        pending.id,
        pending.hash,
        result,
        started.elapsed(),
    )
}

/// Counts for the summary line.
#[derive(Default)]
struct Tally {
    judged: u64,
    failed: BTreeMap<String, u64>,
    kept: u64,
    kept_failed: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl Tally {
    fn failed_total(&self) -> u64 {
        self.failed.values().sum::<u64>() + self.kept_failed
    }
}

/// Stop levels: 0 running, 1 stop reading input (finish in-flight), 2 stop now.
fn watch_signals(grace: Duration) -> watch::Receiver<u8> {
    let (tx, rx) = watch::channel(0u8);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let next_signal = async |term: &mut Option<tokio::signal::unix::Signal>| {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        };
        next_signal(&mut term).await;
        eprintln!("ra score: stopping: finishing requests in flight (again to stop now)");
        let _ = tx.send(1);
        tokio::select! {
            _ = next_signal(&mut term) => {}
            _ = tokio::time::sleep(grace) => {}
        }
        let _ = tx.send(2);
    });
    rx
}

async fn wait_level(rx: &mut watch::Receiver<u8>, level: u8) {
    // A closed channel means no more signals can come: wait forever.
    if rx.wait_for(|&l| l >= level).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub async fn run(args: ScoreArgs) -> anyhow::Result<ExitCode> {
    if args.resume && args.output == "-" {
        anyhow::bail!("--resume needs an output file, not stdout");
    }
    let grace =
        Duration::try_from_secs_f64(args.grace).context("--grace must be a number of seconds")?;
    let started = Instant::now();
    check_paths(&args.input, &args.output)?;
    let total = count_lines(&args.input).await;
    let input = open_input(&args.input)
        .await
        .with_context(|| format!("cannot read --input {}", args.input))?;

    let resume = if args.resume {
        ResumeState::scan(&args.output).await?
    } else {
        ResumeState::fresh()
    };
    let connection = args.client.connect().await?;
    let client = connection.client.clone();
    let follower = connection
        .endpoints_file
        .clone()
        .map(|path| endpoints_file::follow(path, client.clone(), Duration::from_secs(1)));

    let mut sink = OutputSink::open(&args.output, &resume, args.retry_failed)?;
    let mut signals = watch_signals(grace);
    // With --retry-failed every kept line is written again, so counting starts at 0.
    let already_done = if args.retry_failed {
        0
    } else {
        resume.kept as u64
    };
    let progress = progress_bar(total, already_done, args.quiet);
    // Set when the whole input was read: a signal after that does not make the run
    // interrupted.
    let input_exhausted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let exhausted = Arc::clone(&input_exhausted);

    let mut tally = Tally {
        kept: resume.kept as u64,
        ..Tally::default()
    };
    let mut stored = resume.stored_reader(&args.output).await?;
    let retry_failed = args.retry_failed;
    let kept = resume.kept;

    // Input lines → jobs. Kept lines are checked against the stored hashes (and skipped,
    // or re-emitted under --retry-failed when they succeeded).
    let reader = LineReader::new(input);
    let jobs = futures::stream::try_unfold(
        (reader, stored.take()),
        move |(mut reader, mut stored)| {
            let exhausted = Arc::clone(&exhausted);
            async move {
                loop {
                    let Some((index, line)) =
                        reader.next_line().await.context("reading --input")?
                    else {
                        if let Some(s) = &stored
                            && s.next_index() < kept
                        {
                            anyhow::bail!(
                                "the input has fewer lines than the {kept} already in the output: \
                             it changed; use a new --output or drop --resume"
                            );
                        }
                        exhausted.store(true, std::sync::atomic::Ordering::Relaxed);
                        return Ok(None);
                    };
                    if index < kept {
                        let previous: StoredLine = match stored.as_mut() {
                            Some(s) => s.next().await?,
                            None => anyhow::bail!("internal: no stored line for index {index}"),
                        };
                        let hash = input_hash(&line);
                        if previous.input_hash != hash {
                            anyhow::bail!(
                                "input line {index} changed since the output was written \
                             (hash {hash} ≠ {}); refusing to mix results: use a new --output or drop --resume",
                                previous.input_hash
                            );
                        }
                        if !retry_failed {
                            if previous.failed {
                                return Ok(Some((Job::KeptFailed, (reader, stored))));
                            }
                            continue;
                        }
                        if !previous.failed {
                            let job = Job::Ready(ResultLine::verbatim(previous.raw));
                            return Ok(Some((job, (reader, stored))));
                        }
                    }
                    return Ok(Some((decode_job(index, &line), (reader, stored))));
                }
            }
        },
    );
    let stop_reading = {
        let mut rx = signals.clone();
        async move { wait_level(&mut rx, 1).await }
    };
    let window = connection.concurrency.saturating_mul(4).max(64);
    // Judgments start only with a permit, so that after a signal the queued ones are not
    // sent: they come back `NotStarted`, and writing stops there (the output stays a
    // prefix), while those already in flight finish within the grace.
    let gate = Arc::new(Semaphore::new(connection.concurrency));
    let stop_starting = signals.clone();
    let results = jobs
        .take_until(stop_reading.boxed())
        .map(|item| {
            let client = client.clone();
            let gate = Arc::clone(&gate);
            let mut stop = stop_starting.clone();
            async move {
                match item? {
                    Job::Ready(line) => Ok(Step::Line(line)),
                    Job::KeptFailed => Ok(Step::KeptFailed),
                    Job::Judge(pending) => {
                        let _permit = tokio::select! {
                            biased;
                            _ = wait_level(&mut stop, 1) => return Ok(Step::NotStarted),
                            permit = gate.acquire_owned() => permit.ok(),
                        };
                        Ok(Step::Line(judge_line(client, *pending).await))
                    }
                }
            }
        })
        .buffered(window);
    let mut results = pin!(results);

    let mut fatal = None;
    let mut interrupted = false;
    let mut last_flush = Instant::now();
    loop {
        let flush_at = last_flush + Duration::from_millis(100);
        let item = tokio::select! {
            biased;
            _ = wait_level(&mut signals, 2) => { interrupted = true; break; }
            item = results.next() => item,
            _ = tokio::time::sleep_until(flush_at.into()), if sink.dirty() => {
                sink.flush()?;
                last_flush = Instant::now();
                continue;
            }
        };
        match item {
            None => break,
            Some(Err(e)) => {
                fatal = Some(e);
                break;
            }
            Some(Ok(Step::KeptFailed)) => tally.kept_failed += 1,
            Some(Ok(Step::NotStarted)) => {
                interrupted = true;
                break;
            }
            Some(Ok(Step::Line(line))) => {
                if line.fresh {
                    match &line.error_kind {
                        None => tally.judged += 1,
                        Some(kind) => *tally.failed.entry(kind.clone()).or_default() += 1,
                    }
                    if let Some(u) = line.usage {
                        tally.prompt_tokens += u.prompt_tokens;
                        tally.completion_tokens += u.completion_tokens;
                    }
                }
                sink.write(&line)?;
                if let Some(bar) = &progress {
                    bar.inc(1);
                    bar.set_message(format!("{} errors", tally.failed_total()));
                }
                if last_flush.elapsed() >= Duration::from_millis(100) {
                    sink.flush()?;
                    last_flush = Instant::now();
                }
            }
        }
    }
    if !input_exhausted.load(std::sync::atomic::Ordering::Relaxed) && fatal.is_none() {
        // The signal stopped the reading of the input before its end.
        interrupted = true;
    }
    if let Some(f) = follower {
        f.abort();
    }
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    if fatal.is_some() {
        sink.abandon()?;
    } else {
        sink.finish(!interrupted)?;
    }
    if let Some(e) = fatal {
        return Err(e);
    }
    if !args.quiet {
        eprintln!("{}", summary(&tally, started.elapsed(), interrupted));
    }
    if interrupted {
        eprintln!("ra score: interrupted; run the same command with --resume to finish");
        return Ok(ExitCode::from(exit::CANNOT_PROCEED));
    }
    Ok(exit::from_failures(tally.failed_total()))
}

/// What the pipeline yields for one input line, in order.
enum Step {
    Line(ResultLine),
    /// A kept line whose stored result is an error.
    KeptFailed,
    /// A judgment not started because the run is stopping.
    NotStarted,
}

/// Refuses inputs that cannot work before anything is written: a directory, or an
/// output that is the input file itself (writing it would destroy the input).
fn check_paths(input: &str, output: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if input == "-" {
        return Ok(());
    }
    let meta = std::fs::metadata(input).with_context(|| format!("cannot read --input {input}"))?;
    if meta.is_dir() {
        anyhow::bail!("--input {input} is a directory");
    }
    if output != "-"
        && let Ok(out) = std::fs::metadata(output)
        && (out.dev(), out.ino()) == (meta.dev(), meta.ino())
    {
        anyhow::bail!("--output {output} is the --input file; choose another output");
    }
    Ok(())
}

/// Lines in a regular input file (for the progress bar); `None` for stdin.
async fn count_lines(path: &str) -> Option<u64> {
    // Only a regular file can be read twice: counting a pipe or FIFO would consume it.
    if path == "-" || !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(path).ok()?;
        let mut buf = vec![0u8; 1 << 16];
        let (mut lines, mut last) = (0u64, b'\n');
        loop {
            let n = file.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            last = buf[n - 1];
        }
        Some(lines + u64::from(last != b'\n'))
    })
    .await
    .ok()
    .flatten()
}

fn progress_bar(total: Option<u64>, done: u64, quiet: bool) -> Option<indicatif::ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {per_sec} ETA {eta} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.set_position(done);
    Some(bar)
}

fn summary(t: &Tally, wall: Duration, interrupted: bool) -> String {
    let secs = wall.as_secs_f64().max(1e-9);
    let fresh_failed: u64 = t.failed.values().sum();
    let kinds = if t.failed.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = t.failed.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        format!(" ({})", list.join(", "))
    };
    let kept = if t.kept > 0 {
        format!(
            ", {} kept from a previous run ({} failed)",
            t.kept, t.kept_failed
        )
    } else {
        String::new()
    };
    format!(
        "ra score{}: {} judged, {} failed{kinds}{kept}; {:.1} s, {:.1} judgments/s, {:.0} tokens/s ({:.0} generated/s)",
        if interrupted { " (interrupted)" } else { "" },
        t.judged,
        fresh_failed,
        secs,
        (t.judged + fresh_failed) as f64 / secs,
        (t.prompt_tokens + t.completion_tokens) as f64 / secs,
        t.completion_tokens as f64 / secs,
    )
}
