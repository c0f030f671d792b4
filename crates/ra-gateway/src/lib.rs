//! `ra-gateway`: an HTTP reward server in front of [`rewardanything_client::Client`],
//! wire-compatible with the reference `rewardanything serve`, so that the Python
//! `rewardanything.Client` works unchanged.
//!
//! Routes:
//! * `POST /api/rewardanything`: one request → `{"thoughts", "results": {"scores",
//!   "best-to-worst"}}`; on failure an error status and `{"detail", "error": {"kind",
//!   "message"}}`.
//! * `POST /api/rewardanything_batch`: an array of requests → their results in input
//!   order; a failed item is `{"thoughts": "", "results": {}, "error": {…}}` in its place.
//! * `POST /get_reward`: OpenRLHF's remote reward model (`--remote_rm_url`), with
//!   optional grouping of rollouts into listwise calls; see [`GatewayConfig::group_window`].
//! * `POST /api/batch_request` `{"requests": [...], …}` → `{"batch_request_id",
//!   "requests", "start_time"}`: a job judged in the background and kept on disk (see
//!   [`JobStore`]); the reference's other fields (`output_path`, `api_*`,
//!   `generation_config`, `num_workers`, …) are accepted and ignored, with a warning: a
//!   caller neither chooses server paths nor redirects the upstream.
//! * `GET /api/batch_request/{id}?max_timeout=S`: waits up to S seconds (default 600,
//!   at most 3,600) for the job, then answers its results in request order with the
//!   caller's names (a failed item in its place, as in the batch route); 404 for an
//!   unknown id, 408 when not done in time, 500 when the job could not finish.
//! * `GET /api/list_tasks`: `{id: {"start_time", "complete", "has_error",
//!   "num_requests", "output_path"}}` (`output_path` is the job's directory).
//! * `POST /api/clear_tasks`: cancels every job of this gateway, deletes their
//!   directories, and answers `{"message": "All tasks cleared"}`.
//! * `GET /health`: 200 while an upstream endpoint answers, else 503 with the reason.
//! * `GET /metrics`: OpenMetrics text.
//!
//! With an API key configured, every route but `/health` needs `Authorization: Bearer
//! <key>`.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let client = rewardanything_client::Client::builder().endpoint("http://127.0.0.1:8001/v1").build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! let config = ra_gateway::GatewayConfig::default();
//! ra_gateway::serve(listener, client, config, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
mod admit;
mod auth;
mod body;
mod config;
mod error;
mod health;
mod jobs;
mod metrics;
mod openrlhf;
mod reward_scale;
mod routes;
mod server;
mod state;
mod wire;

use std::future::Future;

pub use config::{
    DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_GROUP_SIZE,
    DEFAULT_MAX_JOBS, DEFAULT_MAX_OPEN_GROUPS, DEFAULT_MAX_RESPONSES, GatewayConfig,
};
pub use jobs::{JobStore, JobStoreError};
pub use reward_scale::{NonFiniteReward, RewardScale};
use rewardanything_client::Client;

/// The gateway's router, for tests or to nest in another axum app.
///
/// ```
/// let client = rewardanything_client::Client::builder().endpoint("http://127.0.0.1:9/v1").build().unwrap();
/// let app: axum::Router = ra_gateway::router(client, ra_gateway::GatewayConfig::default());
/// ```
pub fn router(client: Client, config: GatewayConfig) -> axum::Router {
    // Nothing can cut these requests short or stop them: the senders are dropped at once.
    let (_never, cut) = tokio::sync::watch::channel(false);
    let (_never, stopping) = tokio::sync::watch::channel(false);
    routes::router(client, config, cut, stopping)
}

/// Why `client`'s upstream cannot work when it is this gateway itself, listening on
/// `own`: `Some(reason naming the endpoint and the fix)` when an endpoint's host and port
/// reach `own` (checked by `/health` too, for endpoints that change while serving).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let own: std::net::SocketAddr = "127.0.0.1:8200".parse().unwrap();
/// let looped = rewardanything_client::Client::builder().endpoint("http://localhost:8200/v1").build().unwrap();
/// assert!(ra_gateway::self_loop(&looped, own).await.unwrap().contains("is this gateway itself"));
/// let model = rewardanything_client::Client::builder().endpoint("http://127.0.0.1:8000/v1").build().unwrap();
/// assert!(ra_gateway::self_loop(&model, own).await.is_none());
/// # });
/// ```
pub async fn self_loop(client: &Client, own: std::net::SocketAddr) -> Option<String> {
    health::self_loop(client, own).await
}

/// Serves the gateway on `listener` until `shutdown` completes; then stops accepting,
/// lets requests in flight finish within the configured grace, and returns. After the
/// grace, requests still running are answered 503 (`shutting_down`), their judgments
/// cancelled and the client closed. Accept errors (e.g. out of file descriptors) are
/// logged and retried, so there is no error to return.
///
/// ```no_run
/// # async fn f(client: rewardanything_client::Client) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
/// let server = tokio::spawn(ra_gateway::serve(listener, client, Default::default(), async { let _ = rx.await; }));
/// let _ = tx.send(());
/// # Ok(()) }
/// ```
pub async fn serve(
    listener: tokio::net::TcpListener,
    client: Client,
    mut config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    config.own_addr = listener.local_addr().ok();
    let limits = server::Limits {
        header_timeout: config.header_timeout,
        write_timeout: config.write_timeout,
        max_connections: config.max_connections,
        grace: config.grace,
    };
    let (cut_tx, cut_rx) = tokio::sync::watch::channel(false);
    // Once shutdown is asked: every open /get_reward group is sent, and jobs stop with
    // the same grace, alongside the HTTP drain.
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let jobs_stopped = config.jobs.clone().map(|store| {
        let grace = config.grace;
        let mut asked = stopping_rx.clone();
        tokio::spawn(async move {
            if asked.wait_for(|s| *s).await.is_ok() {
                store.shutdown(grace).await;
            }
        })
    });
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    let app = routes::router(client.clone(), config, cut_rx, stopping_rx);
    server::run(listener, app, limits, cut_tx, shutdown).await;
    if let Some(stopped) = jobs_stopped {
        let _ = stopped.await;
    }
    // Judgments not yet sent (of requests cut short) fail at once.
    client.close();
}
