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
    ContextErrorStyle, Fault, FaultRates, Latency, MockServer, MockServerBuilder, OverCapacity,
    PrefixCache, ReasoningShape,
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
    /// Serve this many independent replicas from this one process (a fleet on loopback),
    /// on --port, --port+1, … (each its own port when --port is 0); one `listening on`
    /// line each. Each replica has its own capacity, counters and prefix cache.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    replicas: u32,
    /// Make the last N replicas slower by --slow-factor (latency and prefill).
    #[arg(long, default_value_t = 0)]
    slow_replicas: u32,
    /// How much slower the --slow-replicas are.
    #[arg(long, default_value_t = 5)]
    slow_factor: u32,
    /// Model vLLM's prefix cache: each uncached prompt token adds this many microseconds
    /// to the latency (0: off). Tokens are the mock's estimate, 4 bytes each.
    #[arg(long, default_value_t = 0)]
    prefill_us_per_token: u64,
    /// Tokens each replica's prefix cache holds (least recently used blocks go first).
    #[arg(long, default_value_t = 1_000_000)]
    prefix_cache_tokens: u64,
    /// On exit, write the counters to this file as JSON: `replicas` (one object each:
    /// url, chat_requests, ok, cached_tokens, prefilled_tokens, max_processing) and
    /// `ok_per_tick`, the fleet's answered requests so far every `tick_ms` (100), and
    /// `sojourn_ms` (count, p50, p99: arrival to answer at the replica, queue included) of
    /// the answers the attempt logs kept (--attempt-log).
    #[arg(long, value_name = "PATH")]
    stats_file: Option<std::path::PathBuf>,
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
    if args.slow_replicas > args.replicas {
        anyhow::bail!(
            "--slow-replicas {} is more than --replicas {}",
            args.slow_replicas,
            args.replicas
        );
    }
    let mut mocks = Vec::with_capacity(args.replicas as usize);
    for i in 0..args.replicas {
        let slow = i >= args.replicas - args.slow_replicas;
        let factor = if slow { args.slow_factor.max(1) } else { 1 };
        let port = if args.port == 0 {
            0
        } else {
            u16::try_from(u32::from(args.port) + i)
                .ok()
                .context("--port + --replicas goes past port 65535")?
        };
        let mock = match builder(&args, latency, factor, port).start().await {
            Err(e @ ra_mock::MockError::Bind { .. }) => {
                anyhow::bail!("{e} (choose another port with --port; --port 0 picks a free one)")
            }
            other => other?,
        };
        mock.set_forced_fault(args.fault);
        mocks.push(mock);
    }
    {
        let mut out = std::io::stdout().lock();
        for mock in &mocks {
            writeln!(out, "listening on {}", mock.base_url())?;
        }
        out.flush()?;
    }
    // With --stats-file, the fleet's answered requests every TICK (cumulative), so a
    // benchmark can measure a steady-state rate without its start and tail. Bounded.
    let mocks = std::sync::Arc::new(mocks);
    let timeline = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let sampler = args.stats_file.is_some().then(|| {
        let (mocks, timeline) = (mocks.clone(), timeline.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                let ok: u64 = mocks.iter().map(|m| m.stats().status(200)).sum();
                let mut t = timeline.lock().unwrap_or_else(|e| e.into_inner());
                if t.len() < MAX_TICKS {
                    t.push(ok);
                }
            }
        })
    });
    wait_for_stop(args.exit_on_stdin_eof).await?;
    if let Some(sampler) = sampler {
        sampler.abort();
        let _ = sampler.await;
        // A last sample, so the timeline ends with every answer.
        let ok: u64 = mocks.iter().map(|m| m.stats().status(200)).sum();
        timeline.lock().unwrap_or_else(|e| e.into_inner()).push(ok);
    }
    let all: Vec<_> = mocks.iter().map(|m| m.stats()).collect();
    let sum = |f: fn(&ra_mock::Stats) -> u64| all.iter().map(f).sum::<u64>();
    let mut by_status = std::collections::BTreeMap::new();
    for s in &all {
        for (code, n) in &s.by_status {
            *by_status.entry(*code).or_insert(0u64) += n;
        }
    }
    eprintln!(
        "ra-mock: {} chat requests, by status {:?}, dropped {}, hung {}, cancelled {}, max in flight {}, max processing {}",
        sum(|s| s.chat_requests),
        by_status,
        sum(|s| s.dropped),
        sum(|s| s.hung),
        sum(|s| s.cancelled),
        all.iter().map(|s| s.max_in_flight).max().unwrap_or(0),
        all.iter().map(|s| s.max_processing).max().unwrap_or(0),
    );
    if let Some(path) = &args.stats_file {
        let rows: Vec<_> = mocks
            .iter()
            .zip(&all)
            .map(|(m, s)| {
                serde_json::json!({
                    "url": m.base_url(),
                    "chat_requests": s.chat_requests,
                    "ok": s.status(200),
                    "cached_tokens": s.cached_tokens,
                    "prefilled_tokens": s.prefilled_tokens,
                    "max_processing": s.max_processing,
                })
            })
            .collect();
        let ok_per_tick = timeline.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // Time at the replica (queue and hold) of the answered requests the attempt logs
        // kept (--attempt-log), in milliseconds.
        let mut sojourn: Vec<f64> = mocks
            .iter()
            .flat_map(|m| m.attempts())
            .filter(|a| a.outcome == ra_mock::Outcome::Status(200))
            .map(|a| (a.finished - a.arrived).as_secs_f64() * 1000.0)
            .collect();
        sojourn.sort_by(f64::total_cmp);
        let quantile = |q: f64| {
            let i = ((sojourn.len() as f64 * q) as usize).min(sojourn.len().saturating_sub(1));
            sojourn.get(i).copied()
        };
        let report = serde_json::json!({
            "replicas": rows,
            "tick_ms": TICK.as_millis() as u64,
            "ok_per_tick": ok_per_tick,
            "sojourn_ms": {"count": sojourn.len(), "p50": quantile(0.5), "p99": quantile(0.99)},
        });
        std::fs::write(path, serde_json::to_vec(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // The sampler is gone, so the handles are ours again.
    if let Ok(mocks) = std::sync::Arc::try_unwrap(mocks) {
        for mock in mocks {
            mock.shutdown().await;
        }
    }
    Ok(())
}

/// How often the fleet's answered requests are sampled for --stats-file.
const TICK: Duration = Duration::from_millis(100);
/// Samples kept at most (about 2.8 hours).
const MAX_TICKS: usize = 100_000;

/// One replica's server; `factor` slows its latency and prefill.
fn builder(args: &Args, latency: Latency, factor: u32, port: u16) -> MockServerBuilder {
    let latency = match latency {
        Latency::Fixed(d) => Latency::Fixed(d * factor),
        Latency::Uniform { min, max } => Latency::uniform(min * factor, max * factor),
        other => other,
    };
    let mut b = MockServer::builder()
        .bind(SocketAddr::new(args.host, port))
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
    if args.prefill_us_per_token > 0 {
        b = b.prefix_cache(PrefixCache::new(
            args.prefix_cache_tokens,
            Duration::from_micros(args.prefill_us_per_token * u64::from(factor)),
        ));
    }
    if args.capacity > 0 {
        b = b.capacity(args.capacity);
    }
    if args.reject_over_capacity {
        b = b.over_capacity(OverCapacity::Reject {
            retry_after: args.reject_retry_after,
        });
    }
    if !args.models.is_empty() {
        b = b.models(args.models.clone());
    }
    if let Some(key) = &args.api_key {
        b = b.api_key(key.clone());
    }
    b
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
