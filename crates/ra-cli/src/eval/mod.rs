//! `ra eval`: benchmark a judge on RM-Bench or ranked data, with RM-Bench's own scoring
//! and a position-bias measurement (`--permutations K`).
//!
//! Phases: [`data`] reads the items, [`units`] expands them into judged calls (written
//! as `DIR/units.jsonl`, pre-masked), [`judge`] judges them into `DIR/results.jsonl`
//! (one line per unit, resumable), [`aggregate`] computes the figures ([`rmbench`],
//! [`ranked`]), [`summary`] and [`report`] write `DIR/summary.json` and
//! `DIR/report.html` and print the table.

mod aggregate;
mod data;
mod judge;
mod ranked;
mod report;
mod rmbench;
mod summary;
mod units;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::connect::ClientArgs;
use crate::exit;
use aggregate::Compare;
use units::{Items, Mode};

/// The principle used when `--principle` is not given (RM-Bench has none): RM-Bench
/// rewards substance (correctness, safety) over style.
pub const DEFAULT_PRINCIPLE: &str = "Prefer the response that is correct, helpful and safe: judge \
     substance (factual accuracy, sound reasoning, working code, refusing harmful requests) over \
     style, length or formatting.";

/// Most orders per call.
const MAX_PERMUTATIONS: usize = 64;

const UNITS: &str = "units.jsonl";
const RESULTS: &str = "results.jsonl";
const SUMMARY: &str = "summary.json";
const REPORT: &str = "report.html";
/// Every file `ra eval` writes in `--output` (besides `results.jsonl.lock`).
const OUTPUT_FILES: [&str; 4] = [UNITS, RESULTS, SUMMARY, REPORT];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// RM-Bench's JSON array of `{"id", "prompt", "chosen": [3], "rejected": [3], "domain"?}`.
    RmBench,
    /// JSON Lines of {"principle", "prompt", "responses": {name: text}, "ranking" | "scores"}.
    Ranked,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Input format.
    #[arg(long, value_enum)]
    format: Format,
    /// The benchmark file.
    #[arg(long, value_name = "PATH")]
    input: PathBuf,
    /// Output directory: units.jsonl, results.jsonl, summary.json, report.html.
    #[arg(long, value_name = "DIR")]
    output: PathBuf,
    /// RM-Bench: judge the 9 chosen×rejected pairs (pairwise) or the 6 responses at once.
    #[arg(long, value_enum, default_value = "pairwise")]
    mode: Mode,
    /// RM-Bench: decide a comparison by scores (a tie is a loss, RM-Bench's rule) or by
    /// scores with ties broken by the judge's ranking.
    #[arg(long, value_enum, default_value = "scores")]
    compare: Compare,
    /// The principle (RM-Bench; for ranked lines without one). Default: prefer correct,
    /// helpful and safe responses, substance over style.
    #[arg(long)]
    principle: Option<String>,
    /// Judge each call under K distinct seeded orders and report K = 1 and K side by side.
    #[arg(long, default_value_t = 1, value_name = "K",
          value_parser = clap::value_parser!(u16).range(1..=MAX_PERMUTATIONS as i64))]
    permutations: u16,
    /// Keep the judged lines of an existing DIR/results.jsonl and judge only the rest.
    #[arg(long)]
    resume: bool,
    /// No progress bar and no table.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let items = match args.format {
        Format::RmBench => {
            let items = data::load_rm_bench(&args.input)?;
            if let Some(warning) = data::check_rm_bench_domains(&items)? {
                eprintln!("ra eval: warning: {warning}");
            }
            Items::RmBench(items)
        }
        Format::Ranked => Items::Ranked(data::load_ranked(&args.input, args.principle.as_deref())?),
    };
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create --output {}", args.output.display()))?;
    // Refused before judging; each write refuses a link again (see ra_batch::files).
    for name in OUTPUT_FILES {
        let path = args.output.join(name);
        ra_batch::files::refuse_symlink(&path)?;
        ra_batch::files::refuse_symlink(&ra_batch::files::temp_path(&path))?;
    }
    let units_path = args.output.join(UNITS);
    let results_path = args.output.join(RESULTS);
    // One run per output directory (a second one exits 2 naming the holder's PID).
    let _lock = lock(&results_path)?;
    if args.resume && results_path.exists() && !units_path.exists() {
        anyhow::bail!(
            "{} exists without the units.jsonl it answers; refusing to resume (use a new \
             --output or drop --resume)",
            results_path.display()
        );
    }
    let units = write_units(&items, &args, &units_path)?;
    let interrupted = judge_phase(&args, &units_path, units.len(), &results_path).await?;
    if interrupted {
        eprintln!("ra eval: interrupted; run the same command with --resume to finish");
        return Ok(ExitCode::from(exit::CANNOT_PROCEED));
    }
    conclude(&args, &items, &units, &results_path)
}

/// Connects (nothing is judged when no endpoint serves the model) and judges the units
/// into `results`, following the endpoints file meanwhile. Returns whether a signal
/// interrupted it.
async fn judge_phase(
    args: &EvalArgs,
    units: &Path,
    total: usize,
    results: &Path,
) -> anyhow::Result<bool> {
    let connection = args.client.connect().await?;
    let outcome = judge::judge_units(
        units,
        total,
        results,
        args.resume,
        &connection,
        args.quiet,
        // A result line holds at most a response body's worth of reasoning, escaped.
        args.client
            .max_response_bytes
            .saturating_mul(2)
            .max(16 << 20),
    )
    .await;
    Ok(outcome?.interrupted)
}

/// Reads the results back, computes the figures, writes summary.json and report.html,
/// prints the table, and gives the exit status.
fn conclude(
    args: &EvalArgs,
    items: &Items,
    units: &[units::Unit],
    results: &Path,
) -> anyhow::Result<ExitCode> {
    let raw = judge::read_results(results, units.len())?;
    let answers = aggregate::answers(items, units, &raw);
    let figures = aggregate::figures(items, units, &answers, args.compare);
    let info = summary::RunInfo {
        format: match args.format {
            Format::RmBench => "rm-bench",
            Format::Ranked => "ranked",
        },
        mode: matches!(args.format, Format::RmBench).then_some(args.mode),
        compare: args.compare,
        permutations: usize::from(args.permutations),
        orders: units.iter().map(|u| u.perm + 1).max().unwrap_or(0),
        masking: args.client.masking.to_string(),
        principle: match args.format {
            Format::RmBench => Some(
                args.principle
                    .clone()
                    .unwrap_or_else(|| DEFAULT_PRINCIPLE.to_string()),
            ),
            Format::Ranked => args.principle.clone(),
        },
        items: items.len() as u64,
        units: units.len() as u64,
        units_failed: answers.iter().filter(|a| a.is_none()).count() as u64,
    };
    let json = summary::summary_json(&info, &figures);
    write_file(&args.output.join(SUMMARY), &format!("{json:#}\n"))?;
    write_file(&args.output.join(REPORT), &report::html(&info, &figures))?;
    if !args.quiet {
        print!("{}", summary::table(&info, &figures));
    }
    Ok(exit::from_failures(info.units_failed))
}

/// Expands the items and writes the units file (through a temporary file, so a
/// units.jsonl is always whole). On resume an existing units file must be identical:
/// otherwise the stored results belong to other units.
fn write_units(items: &Items, args: &EvalArgs, path: &Path) -> anyhow::Result<Vec<units::Unit>> {
    let k = usize::from(args.permutations);
    let principle = args.principle.as_deref().unwrap_or(DEFAULT_PRINCIPLE);
    let (tmp, file) = ra_batch::files::create_temp(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let units = units::expand(
        items,
        args.mode,
        principle,
        k,
        args.client.masking,
        |_, line| {
            out.write_all(line.as_bytes())?;
            Ok(())
        },
    )?;
    out.flush()?;
    drop(out);
    if args.resume && path.exists() && !same_contents(path, &tmp).unwrap_or(false) {
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!(
            "{} was made from another input or other flags; refusing to resume (use a new \
             --output or drop --resume)",
            path.display()
        );
    }
    ra_batch::files::persist(&tmp, path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(units)
}

/// Whether two files hold the same bytes (read in chunks: units files can be large).
fn same_contents(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    if std::fs::metadata(a)?.len() != std::fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    ra_batch::files::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Takes the run's lock (`results.jsonl.lock`, holding the PID), or fails at once
/// naming the holder.
fn lock(results: &Path) -> anyhow::Result<ra_batch::FileLock> {
    let path = ra_batch::lock::lock_path(results);
    match ra_batch::FileLock::acquire(&path) {
        Ok(lock) => Ok(lock),
        Err(ra_batch::LockError::Held { path, pid }) => {
            let holder = pid.map_or("PID not yet written".to_string(), |p| format!("PID {p}"));
            anyhow::bail!(
                "--output {} is being written by another ra eval ({holder}, lock file {}); \
                 wait for it to finish or choose another --output",
                results.parent().unwrap_or(results).display(),
                path.display()
            )
        }
        Err(e) => Err(e.into()),
    }
}
