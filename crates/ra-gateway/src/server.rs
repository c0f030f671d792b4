//! The accept loop: HTTP/1 connections with a header-read timeout, at most
//! `max_connections` at once, and a shutdown that ends every one of them.
//!
//! Shutdown, by phase: stop accepting and ask each connection to close after its
//! current request; after the grace, cut the requests still running short (they answer
//! 503, see `routes::cut_short`); after a second, abort what is left.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How long the answers of requests cut short after the grace may take to be written.
const CUT_WRITE_LIMIT: Duration = Duration::from_secs(1);

/// What the loop needs besides the router.
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub grace: Duration,
}

/// Serves `app` until `shutdown`; `cut` ends requests still running after the grace.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    cut: watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
) {
    let (close_tx, close_rx) = watch::channel(false);
    let connections = accept_until(listener, app, &limits, close_rx, shutdown).await;
    drain(connections, close_tx, cut, limits.grace).await;
}

/// Accepts connections (each holding one of `max_connections` slots) until `shutdown`.
async fn accept_until(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    close: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
) -> JoinSet<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // A slot first: at the cap, connections wait in the kernel's backlog.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        // Reap finished connections so the set stays the size of the open ones.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, _)) => {
                let service = TowerToHyperService::new(app.clone());
                let (close, timeout) = (close.clone(), limits.header_timeout);
                connections.spawn(async move {
                    let _slot = slot;
                    serve_connection(stream, service, timeout, close).await;
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    connections
}

/// One HTTP/1 connection, until it ends or `close` asks it to finish its request.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    service: TowerToHyperService<Router>,
    header_timeout: Duration,
    mut close: watch::Receiver<bool>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = close.wait_for(|c| *c) => {}
    }
    // Finish the request in progress (if any), then close.
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Asks every connection to close, waits the grace, cuts what still runs short, and
/// aborts what is left a second later.
async fn drain(
    mut connections: JoinSet<()>,
    close: watch::Sender<bool>,
    cut: watch::Sender<bool>,
    grace: Duration,
) {
    let _ = close.send(true);
    let all_closed = async { while connections.join_next().await.is_some() {} };
    tokio::pin!(all_closed);
    if tokio::time::timeout(grace, &mut all_closed).await.is_ok() {
        return;
    }
    tracing::warn!(
        ?grace,
        "requests still in flight after the grace; cutting them short"
    );
    let _ = cut.send(true);
    // What is still open after that is aborted: dropping a JoinSet aborts its tasks.
    let _ = tokio::time::timeout(CUT_WRITE_LIMIT, &mut all_closed).await;
}
