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
//! let gateway = ra_gateway::Gateway::new(client, config);
//! gateway.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
mod admit;
mod auth;
mod body;
mod config;
mod error;
mod gateway;
mod health;
mod jobs;
mod metrics;
mod openrlhf;
mod reward_scale;
mod routes;
mod server;
mod state;
mod wire;

pub use config::{
    DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_GROUP_SIZE,
    DEFAULT_MAX_JOBS, DEFAULT_MAX_OPEN_GROUPS, DEFAULT_MAX_RESPONSES, GatewayConfig,
};
pub use gateway::{Gateway, GatewayHandle};
pub use jobs::{JobStore, JobStoreError};
pub use reward_scale::{NonFiniteReward, RewardScale};
use rewardanything_client::Client;

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
