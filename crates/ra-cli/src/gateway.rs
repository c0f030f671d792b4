//! `ra gateway`: the flags, the client and the signals; the HTTP server is `ra-gateway`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ra_gateway::{
    DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_JOBS,
    DEFAULT_MAX_RESPONSES, GatewayConfig, JobStore,
};

use crate::connect::{self, ClientArgs};
use crate::openrlhf::RewardArgs;
use crate::{exit, validate};

/// The bearer key clients must send; an environment variable so that it stays out of `ps`.
const API_KEY_ENV: &str = rewardanything_client::env::GATEWAY_API_KEY;

#[derive(Debug, Args)]
// `-c` as the reference's `rewardanything serve -c config.json` has it.
#[command(mut_arg("config", |a| a.short('c')))]
pub struct GatewayArgs {
    /// Address to listen on (0.0.0.0 exposes the gateway to the network).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (not 8000: that is the model server's, ra-serve's and vLLM's,
    /// which the gateway usually sits in front of on the same machine).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Directory of the batch jobs (/api/batch_request): one subdirectory per job,
    /// resumed after a crash. Created on the first job request, not at start. One gateway
    /// at a time per directory: another gateway (or an unwritable directory) leaves the
    /// job routes answering HTTP 503 until it can be used; every other route serves.
    #[arg(long, value_name = "DIR", default_value = "./outputs")]
    base_output_path: PathBuf,
    /// Most batch jobs kept at once, finished or not; a new one beyond gets HTTP 503
    /// until POST /api/clear_tasks.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_JOBS,
          value_parser = validate::at_least_one::<usize>)]
    max_jobs: usize,
    /// Batch jobs judged at the same time; later ones wait their turn.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = validate::at_least_one::<usize>)]
    max_running_jobs: usize,
    /// Largest request body; a bigger one gets HTTP 413.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES,
          value_parser = validate::at_least_one::<usize>)]
    max_body_bytes: usize,
    /// Request bytes held at once over all judging requests; a request that does not
    /// fit gets HTTP 503 (bounds memory under many large or slow bodies).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BUFFERED_BYTES,
          value_parser = validate::at_least_one::<usize>)]
    max_buffered_bytes: usize,
    /// Most requests in one batch; a longer batch gets HTTP 422.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_BATCH,
          value_parser = validate::at_least_one::<usize>)]
    max_batch: usize,
    /// Most responses in one request; more gets HTTP 422.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_RESPONSES,
          value_parser = validate::at_least_one::<usize>)]
    max_responses: usize,
    /// Seconds a request body may take to arrive; a slower one gets HTTP 408.
    #[arg(long, default_value = "60", value_name = "SECS", value_parser = validate::seconds)]
    body_timeout: Duration,
    /// Seconds a request's headers may take to arrive; then the connection is closed.
    #[arg(long, default_value = "30", value_name = "SECS", value_parser = validate::seconds)]
    header_timeout: Duration,
    /// Seconds writing an answer may make no progress (a client that stops reading
    /// a streamed answer); then the connection is closed and its request's bytes freed.
    #[arg(long, default_value = "60", value_name = "SECS", value_parser = validate::seconds)]
    write_timeout: Duration,
    /// Most connections open at once; at the cap a new connection replaces the oldest
    /// one with no request in progress (idle connections cannot lock clients out).
    #[arg(long, value_name = "N", default_value_t = 4096,
          value_parser = validate::at_least_one::<usize>)]
    max_connections: usize,
    /// Seconds to let requests in flight finish after Ctrl-C / SIGTERM.
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = validate::seconds_or_zero)]
    grace: Duration,
    /// The bearer key every route but /health requires of the gateway's clients (prefer
    /// the RA_GATEWAY_API_KEY environment variable: flags show in `ps`).
    #[arg(long, value_name = "KEY", env = API_KEY_ENV, hide_env_values = true)]
    gateway_api_key: Option<rewardanything_client::env::ApiKey>,
    #[command(flatten)]
    reward: RewardArgs,
    #[command(flatten)]
    client: ClientArgs,
}

/// The gateway's port unless `--port` says otherwise.
const DEFAULT_PORT: u16 = 8200;

/// How long start-up waits for an upstream endpoint before serving anyway.
const STARTUP_CHECK: Duration = Duration::from_secs(2);

pub async fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let api_key = args
        .gateway_api_key
        .as_ref()
        .filter(|k| !k.is_empty())
        .map(|k| k.expose().to_string());
    let connection = args.client.build()?;
    let reward = args
        .reward
        .settings(args.client.config.as_deref(), args.max_responses)?;
    // Jobs need their directory only when used: it is created on the first job request.
    // One left by an earlier run is opened now so that its unfinished jobs resume; if
    // another gateway holds it, this one serves anyway (job routes say 503 until free).
    let jobs = JobStore::lazy(&args.base_output_path);
    if args.base_output_path.is_dir()
        && let Err(e) = jobs.try_open()
    {
        tracing::warn!(
            "batch jobs unavailable for now: {:#}; the job routes answer 503 until it can \
             be used (give this gateway its own --base-output-path)",
            anyhow::Error::from(e)
        );
    }
    // Listen first: a server may start before its engines (/health says 503 meanwhile).
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                "; another process listens there: choose another port with --port"
            } else {
                ""
            };
            anyhow::anyhow!("cannot listen on {}:{}: {e}{hint}", args.host, args.port)
        })?;
    let addr = listener.local_addr().context("no local address")?;
    // Asking itself for a model would get its own 404, which says nothing of the loop.
    if let Some(reason) = ra_gateway::self_loop(&connection.client, addr).await {
        anyhow::bail!("{reason}");
    }
    // A wrong key or model is the user's to fix now; an engine still loading is not, and
    // is not waited for beyond a short check.
    match tokio::time::timeout(STARTUP_CHECK, connection.client.connect()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if connect::is_setting_error(&e) => return Err(connect::startup_error(e)),
        Ok(Err(e)) => {
            tracing::warn!(
                "no upstream endpoint answers yet: {e}; serving anyway (/health says 503)"
            )
        }
        Err(_) => tracing::warn!(
            "no upstream endpoint answered within {STARTUP_CHECK:?}; serving anyway (/health says 503)"
        ),
    }
    let client = connection.client.clone();
    if !addr.ip().is_loopback() && api_key.is_none() {
        tracing::warn!(
            "listening on {addr} without {API_KEY_ENV}: anyone who can reach it can spend \
             the engines' capacity"
        );
    }
    let config = reward.apply(gateway_config(
        &args,
        api_key.clone(),
        connection.concurrency,
    ))?;
    eprintln!(
        "ra gateway: listening on http://{addr} ({})",
        if api_key.is_some() {
            "bearer auth on"
        } else {
            "no auth"
        }
    );
    ra_gateway::Gateway::new(client, config)
        .jobs(jobs)
        .serve(listener, stop_signal())
        .await;
    eprintln!("ra gateway: stopped");
    Ok(ExitCode::from(exit::OK))
}

/// The server's settings from the flags.
fn gateway_config(
    args: &GatewayArgs,
    api_key: Option<String>,
    concurrency: usize,
) -> GatewayConfig {
    GatewayConfig::default()
        .max_body_bytes(args.max_body_bytes)
        .max_buffered_bytes(args.max_buffered_bytes)
        .max_batch(args.max_batch)
        .max_responses(args.max_responses)
        .max_jobs(args.max_jobs)
        .max_running_jobs(args.max_running_jobs)
        .api_key(api_key)
        .grace(args.grace)
        .body_timeout(args.body_timeout)
        .header_timeout(args.header_timeout)
        .write_timeout(args.write_timeout)
        .max_connections(args.max_connections)
        // Enough finished results held back to keep every slot of the client busy.
        .batch_window(concurrency.saturating_mul(2))
        // A job keeps the client's slots busy even behind a slow replica; a crash redoes
        // at most that many.
        .job_window(concurrency.saturating_mul(crate::run::WINDOW_PER_SLOT))
}

/// Completes on the first Ctrl-C or SIGTERM.
async fn stop_signal() {
    crate::run::signals::StopSignals::new().next().await;
    eprintln!("ra gateway: stopping: finishing requests in flight");
}
