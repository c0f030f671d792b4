//! `ra-mock`: the mock RewardAnything server as a standalone process: a fake judge for
//! trying things without a model, and for benchmarks.
//!
//! Prints `listening on http://HOST:PORT/v1` on stdout once bound, then serves
//! until SIGTERM or SIGINT (or, with `--exit-on-stdin-eof`, until its parent
//! closes stdin), and prints the final counters on stderr.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ra_mock::{
    ContextErrorStyle, Fault, FaultRates, Latency, MockServer, OverCapacity, ReasoningShape,
};

#[derive(Parser, Debug)]
#[command(
    name = "ra-mock",
    version,
    about = "Mock OpenAI-compatible server answering in RewardAnything's format"
)]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to bind (0: any free port; the chosen one is printed). The default is fixed so
    /// that examples can name it, and apart from the model server's 8000 and the
    /// gateway's 8200.
    #[arg(long, default_value_t = 8100)]
    port: u16,
    /// Time each answered request is held, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Spread the latency uniformly over [latency-ms - J, latency-ms + J].
    #[arg(long, default_value_t = 0)]
    latency_jitter_ms: u64,
    /// Requests processed at once (0: unlimited).
    #[arg(long, default_value_t = 0)]
    capacity: usize,
    /// Beyond the capacity, answer 429 instead of queueing.
    #[arg(long)]
    reject_over_capacity: bool,
    /// `Retry-After` seconds sent with capacity 429s.
    #[arg(long)]
    reject_retry_after: Option<u64>,
    /// inline, reasoning, reasoning_content or prefilled.
    #[arg(long, default_value = "inline")]
    reasoning_shape: ReasoningShape,
    /// Served model name (repeat for several).
    #[arg(long = "model")]
    models: Vec<String>,
    /// Require this API key (Bearer).
    #[arg(long, env = "RA_MOCK_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// RNG seed for jitter and random faults.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Probability of a random 500.
    #[arg(long, default_value_t = 0.0)]
    fault_rate_500: f64,
    /// Probability of a random 429.
    #[arg(long, default_value_t = 0.0)]
    fault_rate_429: f64,
    /// Probability of closing the connection without an answer.
    #[arg(long, default_value_t = 0.0)]
    fault_rate_drop: f64,
    /// Probability of never answering.
    #[arg(long, default_value_t = 0.0)]
    fault_rate_hang: f64,
    /// Apply this fault to every chat request, as a `[[fault:SPEC]]` marker would
    /// (e.g. 503, 429:retry-after=2, hang, endless-body, huge-body:100000000, error-200,
    /// names-extra).
    #[arg(long, value_name = "SPEC")]
    fault: Option<Fault>,
    /// Context length in tokens.
    #[arg(long, default_value_t = 32768)]
    context_length: u64,
    /// Context-length error wording: at-least, exact, truncated, legacy.
    #[arg(long, default_value = "at-least")]
    context_error_style: ContextErrorStyle,
    /// Pad the reasoning to at least this many bytes (about 2 KB answers by default).
    #[arg(long, default_value_t = 1800)]
    think_bytes: usize,
    /// /health answers 503 for this many milliseconds after start.
    #[arg(long, default_value_t = 0)]
    health_delay_ms: u64,
    /// Attempts kept in memory (off by default: benchmarks need no log).
    #[arg(long, default_value_t = 0)]
    attempt_log: usize,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Deliberate position bias: add this to the score of the response presented first
    /// (capped at 5).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=4))]
    position_bias: u8,
    /// Exit when stdin reaches end of file, so the mock dies with its parent.
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    rt.build()
        .context("starting the tokio runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let latency = if args.latency_jitter_ms == 0 {
        Latency::from_millis(args.latency_ms)
    } else {
        Latency::uniform(
            Duration::from_millis(args.latency_ms.saturating_sub(args.latency_jitter_ms)),
            Duration::from_millis(args.latency_ms + args.latency_jitter_ms),
        )
    };
    let mut b = MockServer::builder()
        .bind(SocketAddr::new(args.host, args.port))
        .latency(latency)
        .reasoning_shape(args.reasoning_shape)
        .seed(args.seed)
        .fault_rates(FaultRates {
            status_500: args.fault_rate_500,
            status_429: args.fault_rate_429,
            drop: args.fault_rate_drop,
            hang: args.fault_rate_hang,
        })
        .context_length(args.context_length)
        .context_error_style(args.context_error_style)
        .think_bytes(args.think_bytes)
        .health_unavailable_for(Duration::from_millis(args.health_delay_ms))
        .attempt_log_capacity(args.attempt_log)
        .log_prompts(false)
        .position_bias(args.position_bias);
    if args.capacity > 0 {
        b = b.capacity(args.capacity);
    }
    if args.reject_over_capacity {
        b = b.over_capacity(OverCapacity::Reject {
            retry_after: args.reject_retry_after,
        });
    }
    if !args.models.is_empty() {
        b = b.models(args.models);
    }
    if let Some(key) = args.api_key {
        b = b.api_key(key);
    }
    let mock = match b.start().await {
        Err(e @ ra_mock::MockError::Bind { .. }) => {
            anyhow::bail!("{e} (choose another port with --port; --port 0 picks a free one)")
        }
        other => other?,
    };
    mock.set_forced_fault(args.fault);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", mock.base_url())?;
        out.flush()?;
    }
    wait_for_stop(args.exit_on_stdin_eof).await?;
    let s = mock.stats();
    eprintln!(
        "ra-mock: {} chat requests, by status {:?}, dropped {}, hung {}, cancelled {}, max in flight {}, max processing {}",
        s.chat_requests,
        s.by_status,
        s.dropped,
        s.hung,
        s.cancelled,
        s.max_in_flight,
        s.max_processing
    );
    mock.shutdown().await;
    Ok(())
}

async fn wait_for_stop(watch_stdin: bool) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let stdin_eof = async {
        if !watch_stdin {
            return std::future::pending::<()>().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        // Anything but data (EOF or an error) means the parent is gone.
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
        () = stdin_eof => {}
    }
    Ok(())
}
