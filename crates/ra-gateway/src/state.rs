//! What every handler shares: the client, the settings, the metrics and the
//! server-wide limits. Its own module so that the route modules and the middleware
//! depend on it, not on the router that uses them.

use std::sync::Arc;

use rewardanything_client::Client;
use rewardanything_client::group::Coalescer;

use crate::config::GatewayConfig;
use crate::health::HealthCache;
use crate::jobs::JobStore;
use crate::metrics::Metrics;

/// What every handler shares.
pub struct AppState {
    pub client: Client,
    pub config: GatewayConfig,
    /// The store of batch jobs, when the gateway has one.
    pub jobs: Option<JobStore>,
    /// The address the gateway listens on, when it serves: an upstream there is a loop.
    pub own_addr: Option<std::net::SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub health: HealthCache,
    /// Becomes `true` when the shutdown grace ran out: requests still running answer
    /// 503 at once instead of outliving `serve`.
    pub cut: tokio::sync::watch::Receiver<bool>,
    /// The budget of buffered request bytes, in KiB permits.
    pub budget: Arc<tokio::sync::Semaphore>,
    /// The open `/get_reward` groups.
    pub coalescer: Coalescer,
}
