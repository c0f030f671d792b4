//! `ra`: render, parse, judge and batch-score with RewardAnything.
//!
//! Exit status, the same for every subcommand: 0 every line succeeded; 1 the run
//! finished but some lines have errors; 2 the run could not proceed.

mod config;
mod connect;
mod eval;
mod exit;
mod gateway;
mod input;
mod judge;
mod lines;
mod openrlhf;
mod parse;
mod render;
mod run;
mod score;
mod validate;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rewardanything_client::Masking;

#[derive(Parser)]
#[command(
    name = "ra",
    version,
    about = "RewardAnything: render prompts, parse answers, judge and batch-score"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render JSON Lines requests (stdin) into the exact chat messages (stdout).
    Render {
        /// How masked lines are permuted: reference, `seeded:<u64>` or none. Without it,
        /// each line's `mask_responses` decides and masked lines follow the reference.
        #[arg(long)]
        masking: Option<Masking>,
    },
    /// Parse model outputs (JSON Lines on stdin) into validated judgments (stdout).
    Parse {
        /// Make incomplete scores, scores outside 1..=5 and rankings that are not a
        /// permutation of the names errors (as `ra score` and the client do), instead of
        /// keeping them with `consistent: false`.
        #[arg(long)]
        strict: bool,
    },
    /// Judge one request and print the ranking and the reasoning.
    Judge(judge::JudgeArgs),
    /// Score a JSON Lines batch against one or more endpoints, in order, resumably.
    Score(score::ScoreArgs),
    /// Benchmark a judge on RM-Bench or ranked data, and measure its position bias.
    Eval(eval::EvalArgs),
    /// Serve judgments over HTTP, wire-compatible with the reference `rewardanything serve`.
    ///
    /// When RA_GATEWAY_API_KEY is set, every route but /health needs
    /// `Authorization: Bearer <that key>`.
    Gateway(gateway::GatewayArgs),
}

fn main() -> ExitCode {
    lean_allocator();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::CANNOT_PROCEED
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let quiet = match &cli.command {
        Command::Score(args) => args.quiet,
        Command::Eval(args) => args.quiet,
        _ => false,
    };
    init_logging(quiet);
    // A server answers many connections at once: it gets every core.
    let mut builder = match &cli.command {
        Command::Gateway(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ra: cannot start the async runtime: {e}");
            return ExitCode::from(exit::CANNOT_PROCEED);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Render { masking } => render::run(masking).await,
            Command::Parse { strict } => parse::run(strict).await,
            Command::Judge(args) => judge::run(args).await,
            Command::Score(args) => score::run(args).await,
            Command::Eval(args) => eval::run(args).await,
            Command::Gateway(args) => gateway::run(args).await,
        }
    });
    // In-flight requests of an interrupted run are abandoned, not awaited.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ra: {e:#}");
            ExitCode::from(exit::CANNOT_PROCEED)
        }
    }
}

/// Logs go to stderr: warnings and errors by default (`RA_LOG` to change), errors only
/// with `--quiet`, and colours only when stderr is a terminal (not in files or CI logs).
fn init_logging(quiet: bool) {
    let filter = if quiet {
        tracing_subscriber::EnvFilter::new("error")
    } else {
        tracing_subscriber::EnvFilter::try_from_env("RA_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

// `ra score` allocates and frees many short strings per judgment; mimalloc cuts the
// allocator's share of the client CPU (measured with scripts/bench_score.py).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps transparent huge pages off this process: mimalloc asks for them on its
/// segments, and with THP in `madvise` mode (common) every touched segment then costs 2 MiB
/// of resident memory. `ra gateway` under a 2,560-request batch peaked at 74 MB with them
/// and 45 MB without, for no measurable speed (scripts/bench_gateway.py).
fn lean_allocator() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes nothing but
    // the kernel's page policy for this process. Failure (an old kernel) is harmless.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
