//! `ra score`: high-throughput JSON Lines batch scoring, a command line over
//! `ra_batch` (which judges the input into the ordered, resumable output). Here: the
//! flags, the checks before anything is written, the summary and the exit status; the
//! lock, signals and progress bar are [`crate::run`]'s, shared with `ra eval`.
//!
//! The run goes by phases: [`prepare`] (checks, lock, resume scan, connection), the
//! batch run, [`conclude`].

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use ra_batch::{Batch, BatchError, FileLock, Summary};
use tokio::io::AsyncBufRead;

use crate::connect::ClientArgs;
use crate::lines::{DEFAULT_MAX_LINE_BYTES, open_input};
use crate::run::lock::lock_output;
use crate::run::{BatchRun, GraceArgs, MAX_PERMUTATIONS, progress};
use crate::{exit, validate};

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
    #[command(flatten)]
    grace: GraceArgs,
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
          value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_PERMUTATIONS)))]
    permutations: u16,
    #[command(flatten)]
    client: ClientArgs,
}

/// Everything a run needs once it is sure to start.
struct Prepared {
    /// Held until the run ends (dropped last: it is declared first in `run`).
    lock: Option<FileLock>,
    input: Box<dyn AsyncBufRead + Unpin + Send>,
    batch: ra_batch::Prepared,
    run: BatchRun,
}

pub async fn run(args: ScoreArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let Prepared {
        lock: _lock,
        input,
        batch,
        run,
    } = prepare(&args, started).await?;
    let result = run.run(batch, input).await;
    conclude(&args, result, started)
}

/// The batch's settings from the flags (the rest are [`BatchRun::prepare`]'s).
fn batch_settings(args: &ScoreArgs) -> Batch {
    let batch = if args.output == "-" {
        Batch::to_stdout()
    } else {
        Batch::to_file(&args.output)
    };
    batch
        .resume(args.resume)
        .retry_failed(args.retry_failed)
        .max_line_bytes(args.max_line_bytes)
        .permutations(usize::from(args.permutations))
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
        path => Some(lock_output(Path::new(path), Path::new(path), "ra score")?),
    };
    let total = count_lines(&args.input).await;
    let input = open_input(&args.input)
        .await
        .with_context(|| format!("cannot read --input {}", args.input))?;
    let connection = args.client.connect().await?;
    let run = BatchRun::new("ra score", &connection, total, args.quiet, started);
    // The resume scan writes nothing; the output is opened when the run starts.
    let batch = run
        .prepare(
            batch_settings(args),
            args.grace.grace,
            args.client.max_response_bytes,
        )
        .await
        .map_err(with_hint)?;
    Ok(Prepared {
        lock,
        input,
        batch,
        run,
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
