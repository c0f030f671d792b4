//! `ra score`: high-throughput JSON Lines batch scoring.
//!
//! One output line per input line, in input order, written as soon as it is next in
//! order and flushed at least every 100 ms. Every output line carries `input_hash` (the
//! XXH3-64 of the raw input line) so that `--resume` can refuse an input that changed.
//! The run goes by phases: [`prepare`] (checks, lock, resume scan, connection, output),
//! [`judgments`] (input → ordered results), [`write_results`], [`conclude`].

mod jobs;
mod output;
mod resume;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::{FutureExt, Stream, StreamExt};
use rewardanything_client::Client;
use tokio::io::AsyncBufRead;
use tokio::sync::watch;

use crate::connect::{ClientArgs, Connection};
use crate::lines::{DEFAULT_MAX_LINE_BYTES, LineReader, open_input};
use crate::lock::OutputLock;
use crate::{endpoints_file, exit, validate};
use jobs::{Job, JobSource};
use output::{OutputSink, ResultLine};
use resume::ResumeState;

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Input JSON Lines (`-` for stdin): {"id"?, "principle", "prompt", "responses": {…}, "mask_responses"?}.
    #[arg(long, value_name = "PATH")]
    input: String,
    /// Output JSON Lines (`-` for stdout); an existing file is rewritten unless --resume.
    /// One run at a time per file: OUTPUT.lock holds the writer's PID while it runs.
    #[arg(long, value_name = "PATH")]
    output: String,
    /// Keep the valid lines of an existing output and judge only the rest.
    #[arg(long)]
    resume: bool,
    /// With --resume, also redo lines whose result was an error.
    #[arg(long, requires = "resume")]
    retry_failed: bool,
    /// No progress bar, no summary and no warnings (errors are still printed).
    #[arg(long)]
    pub quiet: bool,
    /// Seconds to let in-flight requests finish after Ctrl-C / SIGTERM.
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = validate::seconds_or_zero)]
    grace: Duration,
    /// Longest input line read; a longer one becomes a `bad_input` line without being
    /// held in memory.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE_BYTES,
          value_parser = validate::at_least_one::<usize>)]
    max_line_bytes: usize,
    #[command(flatten)]
    client: ClientArgs,
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

    fn record(&mut self, line: &ResultLine) {
        if !line.fresh {
            return;
        }
        match &line.error_kind {
            None => self.judged += 1,
            Some(kind) => *self.failed.entry(kind.clone()).or_default() += 1,
        }
        if let Some(u) = line.usage {
            self.prompt_tokens += u.prompt_tokens;
            self.completion_tokens += u.completion_tokens;
        }
    }
}

/// Stop levels: 0 running, 1 stop reading input (finish in-flight), 2 stop now.
fn watch_signals(grace: Duration) -> watch::Receiver<u8> {
    let (tx, rx) = watch::channel(0u8);
    tokio::spawn(async move {
        let mut signals = crate::signals::StopSignals::new();
        signals.next().await;
        eprintln!("ra score: stopping: finishing requests in flight (again to stop now)");
        let _ = tx.send(1);
        tokio::select! {
            _ = signals.next() => {}
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

/// Everything a run needs once it is sure to start.
struct Prepared {
    /// Held until the run ends (dropped last: it is declared first in `run`).
    lock: Option<OutputLock>,
    total: Option<u64>,
    input: Box<dyn AsyncBufRead + Unpin + Send>,
    resume: ResumeState,
    connection: Connection,
    sink: OutputSink,
}

pub async fn run(args: ScoreArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let Prepared {
        lock: _lock,
        total,
        input,
        resume,
        connection,
        mut sink,
    } = prepare(&args).await?;
    let client = connection.client.clone();
    let follower = connection
        .endpoints_file
        .clone()
        .map(|path| endpoints_file::follow(path, client.clone(), Duration::from_secs(1)));
    let mut signals = watch_signals(args.grace);
    // With --retry-failed every kept line is written again, so counting starts at 0.
    let already_done = if args.retry_failed {
        0
    } else {
        resume.kept as u64
    };
    let progress = progress_bar(total, already_done, args.quiet);
    let exhausted = Arc::new(AtomicBool::new(false));
    let source = JobSource {
        reader: LineReader::new(input, args.max_line_bytes),
        stored: resume.stored_reader(&args.output).await?,
        kept: resume.kept,
        retry_failed: args.retry_failed,
        exhausted: Arc::clone(&exhausted),
    };
    let mut tally = Tally {
        kept: resume.kept as u64,
        ..Tally::default()
    };
    let results = judgments(source, client, connection.concurrency, &signals);
    let outcome = write_results(
        results,
        &mut sink,
        &mut tally,
        progress.as_ref(),
        &mut signals,
    )
    .await?;
    if let Some(f) = follower {
        f.abort();
    }
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    // The signal stopped the reading of the input before its end.
    let interrupted =
        outcome.interrupted || (!exhausted.load(Ordering::Relaxed) && outcome.fatal.is_none());
    conclude(&args, sink, outcome.fatal, &tally, started, interrupted)
}

/// Checks flags and paths, locks the output, reads what a resumed output keeps, connects
/// and opens the output, in that order: nothing is written before every check passed.
async fn prepare(args: &ScoreArgs) -> anyhow::Result<Prepared> {
    if args.resume && args.output == "-" {
        anyhow::bail!("--resume needs an output file, not stdout");
    }
    check_paths(&args.input, &args.output)?;
    // Only a regular file (or one yet to be created) is locked: stdout, /dev/stdout or a
    // FIFO cannot be resumed nor shared by position.
    let lock = match args.output.as_str() {
        "-" => None,
        path if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) => None,
        path => Some(OutputLock::acquire(Path::new(path))?),
    };
    let total = count_lines(&args.input).await;
    let input = open_input(&args.input)
        .await
        .with_context(|| format!("cannot read --input {}", args.input))?;
    let resume = if args.resume {
        // A result line holds at most a response body's worth of reasoning, escaped.
        let max_line = args
            .client
            .max_response_bytes
            .saturating_mul(2)
            .max(DEFAULT_MAX_LINE_BYTES);
        ResumeState::scan(&args.output, max_line).await?
    } else {
        ResumeState::fresh()
    };
    let connection = args.client.connect().await?;
    let sink = OutputSink::open(&args.output, &resume, args.retry_failed)?;
    Ok(Prepared {
        lock,
        total,
        input,
        resume,
        connection,
        sink,
    })
}

/// Input → results in input order, at most `concurrency` judgments in flight.
fn judgments<R: AsyncBufRead + Unpin + Send + 'static>(
    source: JobSource<R>,
    client: Client,
    concurrency: usize,
    signals: &watch::Receiver<u8>,
) -> impl Stream<Item = anyhow::Result<Step>> + use<R> {
    let jobs = futures::stream::try_unfold(source, |mut source| async move {
        let next = source.next_job().await?;
        anyhow::Ok(next.map(|job| (job, source)))
    });
    let stop_reading = {
        let mut rx = signals.clone();
        async move { wait_level(&mut rx, 1).await }
    };
    let window = concurrency.saturating_mul(4).max(64);
    // The client's own in-flight limit (`concurrency`) is the only gate: it frees a slot
    // as soon as an answer's body has arrived, so the slot's next request leaves while
    // that answer is parsed. After a signal, judgments still waiting for a slot must not
    // be sent: closing the client fails them at once with `cancelled`, they come back
    // `NotStarted` (writing stops there, the output stays a prefix), and those already on
    // the wire finish within the grace.
    {
        let client = client.clone();
        let mut rx = signals.clone();
        tokio::spawn(async move {
            wait_level(&mut rx, 1).await;
            client.close();
        });
    }
    jobs.take_until(stop_reading.boxed())
        .map(move |item| {
            let client = client.clone();
            async move {
                match item? {
                    Job::Ready(line) => Ok(Step::Line(line)),
                    Job::KeptFailed => Ok(Step::KeptFailed),
                    Job::Judge(pending) => Ok(match pending.judge(client).await {
                        Some(line) => Step::Line(line),
                        None => Step::NotStarted,
                    }),
                }
            }
        })
        .buffered(window)
}

/// How the writing ended.
struct Outcome {
    fatal: Option<anyhow::Error>,
    interrupted: bool,
}

/// Writes results as they come (flushing at least every 100 ms) until the end, a fatal
/// error, or a stop signal.
async fn write_results(
    results: impl Stream<Item = anyhow::Result<Step>>,
    sink: &mut OutputSink,
    tally: &mut Tally,
    progress: Option<&indicatif::ProgressBar>,
    signals: &mut watch::Receiver<u8>,
) -> anyhow::Result<Outcome> {
    let mut results = pin!(results);
    let flush_every = Duration::from_millis(100);
    let mut last_flush = Instant::now();
    loop {
        let item = tokio::select! {
            biased;
            _ = wait_level(signals, 2) => return Ok(Outcome { fatal: None, interrupted: true }),
            item = results.next() => item,
            _ = tokio::time::sleep_until((last_flush + flush_every).into()), if sink.dirty() => {
                sink.flush()?;
                last_flush = Instant::now();
                continue;
            }
        };
        let line = match item {
            None => {
                return Ok(Outcome {
                    fatal: None,
                    interrupted: false,
                });
            }
            Some(Err(e)) => {
                return Ok(Outcome {
                    fatal: Some(e),
                    interrupted: false,
                });
            }
            Some(Ok(Step::NotStarted)) => {
                return Ok(Outcome {
                    fatal: None,
                    interrupted: true,
                });
            }
            Some(Ok(Step::KeptFailed)) => {
                tally.kept_failed += 1;
                continue;
            }
            Some(Ok(Step::Line(line))) => line,
        };
        tally.record(&line);
        sink.write(&line)?;
        if let Some(bar) = progress {
            bar.inc(1);
            bar.set_message(format!("{} errors", tally.failed_total()));
        }
        if last_flush.elapsed() >= flush_every {
            sink.flush()?;
            last_flush = Instant::now();
        }
    }
}

/// Closes the output (keeping what was written), prints the summary, and gives the exit
/// status.
fn conclude(
    args: &ScoreArgs,
    sink: OutputSink,
    fatal: Option<anyhow::Error>,
    tally: &Tally,
    started: Instant,
    interrupted: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(e) = fatal {
        sink.abandon()?;
        return Err(e);
    }
    sink.finish(!interrupted)?;
    if !args.quiet {
        eprintln!("{}", summary(tally, started.elapsed(), interrupted));
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
