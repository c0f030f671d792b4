//! `ra score`: high-throughput JSON Lines batch scoring, a command line over
//! `ra_batch` (which judges the input into the ordered, resumable output). Here: the
//! flags, the checks before anything is written, the lock, the connection, signals, the
//! progress bar, the summary and the exit status.
//!
//! The run goes by phases: [`prepare`] (checks, lock, resume scan, connection), the
//! batch run, [`conclude`].

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use ra_batch::{Batch, BatchError, FileLock, LineDone, Stop, Summary};
use tokio::io::AsyncBufRead;
use tokio::sync::watch;

use crate::connect::{ClientArgs, Connection};
use crate::lines::{DEFAULT_MAX_LINE_BYTES, open_input};
use crate::lock::lock_output;
use crate::{exit, progress, validate};

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Input JSON Lines (`-` for stdin): {"id"?, "principle", "prompt", "responses": {…}, "mask_responses"?};
    /// `responses` is {name: text} or a list of texts (named response-1, response-2, …).
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
    /// Judge each line under K distinct seeded orders and write the mean scores (ranking
    /// by mean, ties by Borda count) with the flip rate, spread and each order's
    /// judgment under `permutations`; at most N! orders for N responses. Resume with
    /// the same K.
    #[arg(long, default_value_t = 1, value_name = "K",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    permutations: u16,
    #[command(flatten)]
    client: ClientArgs,
}

/// The first signal drains (stop reading, finish what is in flight), the second one or
/// the end of the grace stops at once.
fn watch_signals(grace: Duration) -> watch::Receiver<Stop> {
    let (tx, rx) = watch::channel(Stop::Run);
    tokio::spawn(async move {
        let mut signals = crate::signals::StopSignals::new();
        signals.next().await;
        eprintln!("ra score: stopping: finishing requests in flight (again to stop now)");
        let _ = tx.send(Stop::Drain);
        tokio::select! {
            _ = signals.next() => {}
            _ = tokio::time::sleep(grace) => {}
        }
        let _ = tx.send(Stop::Now);
    });
    rx
}

/// After a signal, judgments still waiting for a slot of the client must not be sent:
/// closing the client fails them at once with `cancelled`, the batch counts them as not
/// started (writing stops there, the output stays a prefix), and those already on the
/// wire finish within the grace.
fn close_on_drain(client: rewardanything_client::Client, mut stop: watch::Receiver<Stop>) {
    tokio::spawn(async move {
        if stop.wait_for(|&l| l >= Stop::Drain).await.is_ok() {
            client.close();
        }
    });
}

/// Everything a run needs once it is sure to start.
struct Prepared {
    /// Held until the run ends (dropped last: it is declared first in `run`).
    lock: Option<FileLock>,
    input: Box<dyn AsyncBufRead + Unpin + Send>,
    batch: ra_batch::Prepared,
    connection: Connection,
    progress: Option<indicatif::ProgressBar>,
}

pub async fn run(args: ScoreArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let Prepared {
        lock: _lock,
        input,
        batch,
        connection,
        progress,
    } = prepare(&args, started).await?;
    let client = connection.client.clone();
    let result = batch.run(input, client).await;
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    conclude(&args, result, started)
}

/// The batch's settings from the flags: its stop channel follows the signals, its
/// progress hook the bar.
fn batch_settings(
    args: &ScoreArgs,
    concurrency: usize,
    signals: watch::Receiver<Stop>,
    progress: Option<indicatif::ProgressBar>,
    started: Instant,
) -> Batch {
    let batch = if args.output == "-" {
        Batch::to_stdout()
    } else {
        Batch::to_file(&args.output)
    };
    let batch = batch
        .resume(args.resume)
        .retry_failed(args.retry_failed)
        .max_line_bytes(args.max_line_bytes)
        // A result line holds at most a response body's worth of reasoning, escaped.
        .max_stored_line_bytes(
            args.client
                .max_response_bytes
                .saturating_mul(2)
                .max(DEFAULT_MAX_LINE_BYTES),
        )
        .window(concurrency.saturating_mul(4).max(64))
        .permutations(usize::from(args.permutations))
        .stop(signals);
    match progress {
        Some(bar) => batch.on_line(Box::new(move |done: &LineDone<'_>| {
            bar.inc(1);
            // The summary's own figure: the same count over the same wall time.
            bar.set_message(progress::message(done.summary, started.elapsed()));
        })),
        None => batch,
    }
}

/// Checks flags and paths, locks the output, connects and reads what a resumed output
/// keeps, in that order: nothing is written before every check passed.
async fn prepare(args: &ScoreArgs, started: Instant) -> anyhow::Result<Prepared> {
    if args.resume && args.output == "-" {
        anyhow::bail!("--resume needs an output file, not stdout");
    }
    check_paths(&args.input, &args.output)?;
    // Only a regular file (or one yet to be created) is locked: stdout, /dev/stdout or a
    // FIFO cannot be resumed nor shared by position.
    let lock = match args.output.as_str() {
        "-" => None,
        path if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) => None,
        path => Some(lock_output(Path::new(path))?),
    };
    let total = count_lines(&args.input).await;
    let input = open_input(&args.input)
        .await
        .with_context(|| format!("cannot read --input {}", args.input))?;
    let connection = args.client.connect().await?;
    let signals = watch_signals(args.grace);
    close_on_drain(connection.client.clone(), signals.clone());
    let progress = progress::bar(total, args.quiet);
    // The resume scan writes nothing; the output is opened when the run starts.
    let batch = batch_settings(
        args,
        connection.concurrency,
        signals,
        progress.clone(),
        started,
    )
    .prepare()
    .await
    .map_err(with_hint)?;
    if let Some(bar) = &progress {
        bar.set_position(batch.already_done() as u64);
    }
    Ok(Prepared {
        lock,
        input,
        batch,
        connection,
        progress,
    })
}

/// Prints the summary and gives the exit status.
fn conclude(
    args: &ScoreArgs,
    result: Result<Summary, BatchError>,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let summary = result.map_err(with_hint)?;
    if !args.quiet {
        eprintln!("{}", summary_line(&summary, started.elapsed()));
    }
    if summary.interrupted {
        eprintln!("ra score: interrupted; run the same command with --resume to finish");
        return Ok(ExitCode::from(exit::CANNOT_PROCEED));
    }
    Ok(exit::from_failures(summary.failed_total()))
}

/// The batch's error, with what to do about an input that changed under the output.
fn with_hint(e: BatchError) -> anyhow::Error {
    match e {
        BatchError::InputChanged { .. } | BatchError::InputShorter { .. } => {
            anyhow::anyhow!("{e}; use a new --output or drop --resume")
        }
        e => e.into(),
    }
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

fn summary_line(t: &Summary, wall: Duration) -> String {
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
        "ra score{}: {} judged, {} failed{kinds}{kept}; {:.1} s, {} judgments/s, {:.0} tokens/s ({:.0} generated/s)",
        if t.interrupted { " (interrupted)" } else { "" },
        t.judged,
        fresh_failed,
        secs,
        progress::rate_text(progress::per_sec(t, wall)),
        (t.prompt_tokens + t.completion_tokens) as f64 / secs,
        t.completion_tokens as f64 / secs,
    )
}
