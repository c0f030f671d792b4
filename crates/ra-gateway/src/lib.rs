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
//! ra_gateway::serve(listener, client, config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
mod admit;
mod auth;
mod body;
mod config;
mod error;
mod health;
mod metrics;
mod routes;
mod wire;

use std::future::Future;

pub use config::{
    DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_RESPONSES,
    GatewayConfig,
};
use rewardanything_client::Client;

/// How long the answers of requests cut short after the grace may take to be written.
const CUT_WRITE_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The gateway's router, for tests or to nest in another axum app.
///
/// ```
/// let client = rewardanything_client::Client::builder().endpoint("http://127.0.0.1:9/v1").build().unwrap();
/// let app: axum::Router = ra_gateway::router(client, ra_gateway::GatewayConfig::default());
/// ```
pub fn router(client: Client, config: GatewayConfig) -> axum::Router {
    // Nothing can cut these requests short: the sender is dropped at once.
    let (_never, cut) = tokio::sync::watch::channel(false);
    routes::router(client, config, cut)
}

/// Serves the gateway on `listener` until `shutdown` completes; then stops accepting,
/// lets requests in flight finish within the configured grace, and returns. After the
/// grace, requests still running are answered 503 (`shutting_down`), their judgments
/// cancelled and the client closed.
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
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = config.grace;
    let (cut_tx, cut_rx) = tokio::sync::watch::channel(false);
    let app = routes::router(client.clone(), config, cut_rx);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            // A dropped sender also stops: nothing can ask any more.
            let _ = stop_rx.wait_for(|stop| *stop).await;
        })
        .into_future();
    tokio::pin!(server);
    tokio::pin!(shutdown);
    tokio::select! {
        result = &mut server => return result,
        () = &mut shutdown => {}
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                ?grace,
                "requests still in flight after the grace; cutting them short"
            );
            client.close();
            let _ = cut_tx.send(true);
            // The 503s are written at once; a peer that does not read them is not waited for.
            match tokio::time::timeout(CUT_WRITE_LIMIT, &mut server).await {
                Ok(result) => result,
                Err(_) => Ok(()),
            }
        }
    }
}
