//! The gateway's live parts, apart from its settings: the client and the job store it
//! serves with ([`Gateway`]), and what starting it sets running ([`GatewayHandle`]): the
//! `/get_reward` groups' timers and the batch jobs. Whatever is started is stopped by
//! the handle that started it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rewardanything_client::Client;
use tokio::sync::watch;

use crate::config::GatewayConfig;
use crate::health::HealthCache;
use crate::jobs::{self, JobStore};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::{admit, openrlhf, routes, server};

/// A gateway to start: its settings and the resources it serves with (the client
/// towards the model server, and optionally a store of batch jobs). Nothing runs until
/// [`serve`](Self::serve) or [`start`](Self::start).
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let client = rewardanything_client::Client::builder().endpoint("http://127.0.0.1:8001/v1").build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
/// let gateway = ra_gateway::Gateway::new(client, ra_gateway::GatewayConfig::default());
/// gateway.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Gateway {
    client: Client,
    config: GatewayConfig,
    jobs: Option<JobStore>,
}

impl Gateway {
    /// A gateway judging with `client` under `config`, without batch jobs.
    ///
    /// ```
    /// let client = rewardanything_client::Client::builder().endpoint("http://127.0.0.1:9/v1").build().unwrap();
    /// let gateway = ra_gateway::Gateway::new(client, ra_gateway::GatewayConfig::default());
    /// ```
    pub fn new(client: Client, config: GatewayConfig) -> Gateway {
        Gateway {
            client,
            config,
            jobs: None,
        }
    }

    /// The store of batch jobs (`POST /api/batch_request` …); without one those routes
    /// answer 501. Starting the gateway resumes the store's unfinished jobs; its
    /// shutdown stops them (they resume on the next start).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = ra_gateway::JobStore::open(dir.path()).unwrap();
    /// let client = rewardanything_client::Client::builder().endpoint("http://127.0.0.1:9/v1").build().unwrap();
    /// let gateway = ra_gateway::Gateway::new(client, Default::default()).jobs(store);
    /// ```
    pub fn jobs(mut self, store: JobStore) -> Gateway {
        self.jobs = Some(store);
        self
    }

    /// Starts the gateway's background work (the store's unfinished jobs resume) and
    /// gives its router, for tests or to nest in another axum app, inside the handle
    /// that stops that work: [`GatewayHandle::shutdown`], or dropping the handle. Needs
    /// a tokio runtime.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let client = rewardanything_client::Client::builder().endpoint("http://127.0.0.1:9/v1").build().unwrap();
    /// let handle = ra_gateway::Gateway::new(client, Default::default()).start();
    /// let app: axum::Router = handle.router();
    /// handle.shutdown().await;
    /// # });
    /// ```
    pub fn start(self) -> GatewayHandle {
        // Nothing cuts the router's requests short: its server is the caller's.
        let (cut_tx, cut_rx) = watch::channel(false);
        self.start_with(None, cut_tx, cut_rx)
    }

    fn start_with(
        self,
        own_addr: Option<SocketAddr>,
        cut_tx: watch::Sender<bool>,
        cut_rx: watch::Receiver<bool>,
    ) -> GatewayHandle {
        let Gateway {
            client,
            config,
            jobs,
        } = self;
        let (stopping_tx, stopping_rx) = watch::channel(false);
        let grace = config.grace;
        let mut registry = Metrics::default();
        if let Some(store) = &jobs {
            registry.register_jobs(&store.counters());
        }
        let metrics = Arc::new(registry);
        if let Some(store) = &jobs {
            store.start(
                client.clone(),
                jobs::Limits {
                    window: config.job_window,
                    max_line_bytes: config.max_body_bytes,
                    max_running: config.max_running_jobs,
                },
                Arc::clone(&metrics),
            );
        }
        let coalescer = openrlhf::coalescer(&client, &config, Arc::clone(&metrics), stopping_rx);
        let state = Arc::new(AppState {
            client: client.clone(),
            budget: admit::budget(&config),
            config,
            jobs: jobs.clone(),
            own_addr,
            metrics,
            coalescer,
            health: HealthCache::default(),
            cut: cut_rx,
        });
        GatewayHandle {
            router: routes::router(state),
            client,
            jobs,
            stopping: stopping_tx,
            grace,
            _cut: cut_tx,
        }
    }

    /// Serves the gateway on `listener` until `shutdown` completes; then stops
    /// accepting, lets requests in flight finish within the configured grace, and
    /// returns. After the grace, requests still running are answered 503
    /// (`shutting_down`), their judgments cancelled and the client closed. Everything
    /// the gateway started (groups, jobs) is stopped before it returns. Accept errors
    /// (e.g. out of file descriptors) are logged and retried, so there is no error to
    /// return.
    ///
    /// ```no_run
    /// # async fn f(client: rewardanything_client::Client) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    /// let gateway = ra_gateway::Gateway::new(client, Default::default());
    /// let server = tokio::spawn(gateway.serve(listener, async { let _ = rx.await; }));
    /// let _ = tx.send(());
    /// # Ok(()) }
    /// ```
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let limits = server::Limits {
            header_timeout: self.config.header_timeout,
            write_timeout: self.config.write_timeout,
            max_connections: self.config.max_connections,
            grace: self.config.grace,
        };
        let grace = self.config.grace;
        let (cut_tx, cut_rx) = watch::channel(false);
        let handle = self.start_with(listener.local_addr().ok(), cut_tx.clone(), cut_rx);
        let (asked_tx, asked_rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = asked_tx.send(());
        };
        // Once shutdown is asked, open groups are sent and jobs stop with the same
        // grace, alongside the HTTP drain.
        let stop_work = async {
            if asked_rx.await.is_ok() {
                handle.stop_work(grace).await;
            }
        };
        tokio::join!(
            server::run(listener, handle.router(), limits, cut_tx, shutdown),
            stop_work
        );
        // Judgments not yet sent (of requests cut short) fail at once.
        handle.client.close();
    }
}

/// A started gateway: its router and the work it started (the `/get_reward` groups'
/// timers, the batch jobs). [`shutdown`](Self::shutdown) stops that work within the
/// configured grace; dropping the handle stops it at once (open groups are sent, jobs
/// stop and resume on the next start). [`Gateway::serve`] does both for its own
/// server, and then closes the client.
#[derive(Debug)]
pub struct GatewayHandle {
    router: axum::Router,
    client: Client,
    jobs: Option<JobStore>,
    stopping: watch::Sender<bool>,
    /// How long jobs get to write what is in flight (the settings' grace).
    grace: Duration,
    /// Kept so that the router's requests are never cut short (a dropped sender cuts
    /// nothing either, but this one is never sent).
    _cut: watch::Sender<bool>,
}

impl GatewayHandle {
    /// The gateway's router (a cheap clone; every clone shares the same state).
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// Stops what the gateway started: open `/get_reward` groups are sent now (their
    /// requests get their answers), batch jobs read no more requests and get the
    /// configured grace to write what is in flight (then they stop; they resume on the
    /// next start). The client stays open: it is the caller's, as is the server that
    /// serves the router.
    pub async fn shutdown(self) {
        self.stop_work(self.grace).await;
    }

    /// Sends the open groups and stops the jobs within `grace`.
    async fn stop_work(&self, grace: Duration) {
        self.stopping.send_replace(true);
        if let Some(store) = &self.jobs {
            store.shutdown(grace).await;
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        self.stopping.send_replace(true);
        if let Some(store) = &self.jobs {
            store.stop_now();
        }
    }
}
