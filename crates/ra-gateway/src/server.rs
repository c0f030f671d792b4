//! The accept loop: HTTP/1 connections with a header-read timeout, a write timeout, at
//! most `max_connections` at once, and a shutdown that ends every one of them.
//!
//! At the connection cap the loop keeps accepting: a new connection takes the place of
//! the oldest one that has no request in progress (idle, or still sending its headers),
//! which is closed; connections that never carried a request go first, so that a kept-
//! alive client keeps its connection while there are silent ones to close. So connections that send nothing cannot keep a health probe or a
//! client out; only connections whose requests are being served hold their place (and
//! those are bounded by the body, judgment and write timeouts).
//!
//! Shutdown, by phase: stop accepting and ask each connection to close after its
//! current request; after the grace, cut the requests still running short (they answer
//! 503, see `routes::cut_short`); after a second, abort what is left.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::HeaderValue;
use axum::http::header::CONNECTION;
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Sleep;

use crate::error::ApiError;

/// How long the answers of requests cut short after the grace may take to be written.
const CUT_WRITE_LIMIT: Duration = Duration::from_secs(1);

/// At the cap with no idle connection to close, how often to look for one again.
const RECHECK_IDLE: Duration = Duration::from_millis(100);

/// What the loop needs besides the router.
pub struct Limits {
    pub header_timeout: Duration,
    pub write_timeout: Duration,
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

/// One open connection, as the accept loop sees it.
struct Conn {
    /// Requests in progress (from their head until their answer's last byte), or
    /// [`EVICTED`] once chosen to make room (then it takes no request any more).
    busy: AtomicIsize,
    /// Whether a request ever came on it (a kept-alive client's connection, which is
    /// closed to make room only when no never-used one is left).
    used: AtomicBool,
    /// Wakes the connection's task to close it.
    evict: Notify,
}

const EVICTED: isize = -1;

impl Conn {
    /// Counts a request in; false once evicted.
    fn begin(&self) -> bool {
        self.used.store(true, Ordering::SeqCst);
        self.busy
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n >= 0).then_some(n + 1)
            })
            .is_ok()
    }

    /// Closes the connection if it has no request in progress.
    fn evict_if_idle(&self) -> bool {
        let idle = self
            .busy
            .compare_exchange(0, EVICTED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if idle {
            self.evict.notify_one();
        }
        idle
    }
}

/// Ends a request's count when its answer is sent (or dropped).
struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The open connections, oldest first.
#[derive(Default)]
struct Open {
    next: u64,
    by_age: BTreeMap<u64, Arc<Conn>>,
}

type Registry = Arc<Mutex<Open>>;

fn lock(open: &Registry) -> std::sync::MutexGuard<'_, Open> {
    open.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Closes the oldest connection without a request in progress, one that never carried
/// a request first (a flood of silent connections never costs a kept-alive client its
/// connection); false if there is none.
fn evict_oldest_idle(open: &Registry) -> bool {
    let open = lock(open);
    let never_used = |conn: &&Arc<Conn>| !conn.used.load(Ordering::SeqCst);
    open.by_age
        .values()
        .filter(never_used)
        .any(|conn| conn.evict_if_idle())
        || open.by_age.values().any(|conn| conn.evict_if_idle())
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
    let open = Registry::default();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        // Reap finished connections so the set stays the size of the open ones.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // A slot: at the cap, an idle connection makes room; with none idle (every
        // connection is being served), wait for one to finish or go idle.
        let slot = loop {
            if let Ok(slot) = Arc::clone(&slots).try_acquire_owned() {
                break Some(slot);
            }
            let evicted = evict_oldest_idle(&open);
            let wait = if evicted { Duration::MAX } else { RECHECK_IDLE };
            tokio::select! {
                slot = Arc::clone(&slots).acquire_owned() => break slot.ok(),
                () = tokio::time::sleep(wait) => {}
                () = &mut shutdown => break None,
            }
        };
        let Some(slot) = slot else { break };
        let conn = Arc::new(Conn {
            busy: AtomicIsize::new(0),
            used: AtomicBool::new(false),
            evict: Notify::new(),
        });
        let id = {
            let mut open = lock(&open);
            open.next += 1;
            let id = open.next;
            open.by_age.insert(id, Arc::clone(&conn));
            id
        };
        let (app, open, close) = (app.clone(), Arc::clone(&open), close.clone());
        let (header_timeout, write_timeout) = (limits.header_timeout, limits.write_timeout);
        connections.spawn(async move {
            let _slot = slot;
            let io = TimedIo::new(stream, peer, write_timeout);
            serve_connection(io, app, Arc::clone(&conn), header_timeout, close).await;
            lock(&open).by_age.remove(&id);
        });
    }
    connections
}

/// One HTTP/1 connection, until it ends, is evicted, or `close` asks it to finish its
/// request.
async fn serve_connection(
    io: TimedIo,
    app: Router,
    conn: Arc<Conn>,
    header_timeout: Duration,
    mut close: watch::Receiver<bool>,
) {
    let inner = TowerToHyperService::new(app);
    let counted = Arc::clone(&conn);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let started = counted.begin().then(|| Busy(Arc::clone(&counted)));
        let response = inner.call(req);
        async move {
            let Some(busy) = started else {
                // Evicted while its head arrived: the connection is being closed.
                let mut refused = ApiError::ConnectionClosed.into_response();
                refused
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                return Ok::<_, Infallible>(refused.map(|body| Tracked { body, _busy: None }));
            };
            let response = response.await?;
            Ok(response.map(|body| Tracked {
                body,
                _busy: Some(busy),
            }))
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let served = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    tokio::select! {
        _ = served.as_mut() => return,
        // Chosen to make room: it had no request in progress, nothing is lost.
        () = conn.evict.notified() => return,
        _ = close.wait_for(|c| *c) => {}
    }
    // Finish the request in progress (if any), then close.
    served.as_mut().graceful_shutdown();
    let _ = served.await;
}

/// An answer's body that keeps its request counted until it is sent or dropped.
struct Tracked {
    body: Body,
    _busy: Option<Busy>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection whose writes fail once they make no progress for `write_timeout`: a
/// peer that stops reading its answer is cut off, and what its request held (its byte
/// reservation, its judgments) is released when hyper drops the request.
struct TimedIo {
    stream: TcpStream,
    peer: SocketAddr,
    write_timeout: Duration,
    /// Running while a write waits for the peer.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl TimedIo {
    fn new(stream: TcpStream, peer: SocketAddr, write_timeout: Duration) -> Self {
        TimedIo {
            stream,
            peer,
            write_timeout,
            stalled: None,
        }
    }

    /// After a write made progress (or failed): the stall clock stops.
    fn progress<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let timeout = self.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                tracing::warn!(
                    peer = %self.peer,
                    "the peer read nothing of its answer for {timeout:?}; closing the connection"
                );
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the peer read nothing for {timeout:?}"),
                )))
            }
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.progress(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.progress(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_flush(cx);
        this.progress(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.progress(result, cx)
    }
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
