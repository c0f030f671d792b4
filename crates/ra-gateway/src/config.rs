//! The gateway's settings, builder style.

use std::fmt;
use std::time::Duration;

use crate::reward_scale::{NonFiniteReward, RewardScale};

/// Default largest request body: 32 MiB (the reference server has no limit).
///
/// ```
/// assert_eq!(ra_gateway::DEFAULT_MAX_BODY_BYTES, 32 << 20);
/// ```
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Default longest batch accepted by `/api/rewardanything_batch`.
///
/// ```
/// assert_eq!(ra_gateway::DEFAULT_MAX_BATCH, 10_000);
/// ```
pub const DEFAULT_MAX_BATCH: usize = 10_000;
/// Default budget of request bytes held at once by the judging routes: 256 MiB.
///
/// ```
/// assert_eq!(ra_gateway::DEFAULT_MAX_BUFFERED_BYTES, 256 << 20);
/// ```
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 * 1024 * 1024;
/// Default most responses in one request: the client library's
/// ([`rewardanything_client::MAX_RESPONSES`]).
///
/// ```
/// assert_eq!(ra_gateway::DEFAULT_MAX_RESPONSES, 64);
/// ```
pub const DEFAULT_MAX_RESPONSES: usize = rewardanything_client::MAX_RESPONSES;
/// Default most rollouts judged in one `/get_reward` group call.
///
/// ```
/// assert_eq!(ra_gateway::DEFAULT_MAX_GROUP_SIZE, 8);
/// ```
pub const DEFAULT_MAX_GROUP_SIZE: usize = 8;
/// Default most `/get_reward` groups open at once.
///
/// ```
/// assert_eq!(ra_gateway::DEFAULT_MAX_OPEN_GROUPS, 1024);
/// ```
pub const DEFAULT_MAX_OPEN_GROUPS: usize = 1024;
/// Default most batch jobs kept on disk at once.
///
/// ```
/// assert_eq!(ra_gateway::DEFAULT_MAX_JOBS, 1_000);
/// ```
pub const DEFAULT_MAX_JOBS: usize = 1_000;

/// The gateway's settings: plain data (limits, timeouts, the key, the reward mapping).
/// What lives while serving (the client, the job store, tasks, connections) belongs to
/// [`Gateway`](crate::Gateway) and to the [`GatewayHandle`](crate::GatewayHandle) it starts.
///
/// ```
/// use std::time::Duration;
/// let config = ra_gateway::GatewayConfig::default()
///     .max_body_bytes(1 << 20)
///     .api_key(Some("secret".into()))
///     .grace(Duration::from_secs(2));
/// assert_eq!(config.get_max_body_bytes(), 1 << 20);
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub(crate) max_body_bytes: usize,
    pub(crate) max_buffered_bytes: usize,
    pub(crate) max_batch: usize,
    pub(crate) max_responses: usize,
    pub(crate) api_key: Option<ApiKey>,
    pub(crate) health_interval: Duration,
    pub(crate) health_timeout: Duration,
    pub(crate) batch_window: usize,
    pub(crate) grace: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) header_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) principle: Option<String>,
    pub(crate) reward_scale: RewardScale,
    pub(crate) failure_reward: f64,
    pub(crate) group_window: Duration,
    pub(crate) max_group_size: usize,
    pub(crate) max_open_groups: usize,
    pub(crate) expected_group_size: Option<usize>,
    pub(crate) job_window: usize,
    pub(crate) max_jobs: usize,
    pub(crate) max_running_jobs: usize,
}

/// The bearer key: a secret, so its `Debug` never shows it (a derived `Debug` of the
/// settings stays safe to log).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ApiKey(String);

impl ApiKey {
    /// The key itself, for the comparison in [`auth`](crate::auth) only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            max_batch: DEFAULT_MAX_BATCH,
            max_responses: DEFAULT_MAX_RESPONSES,
            api_key: None,
            health_interval: Duration::from_secs(1),
            health_timeout: Duration::from_secs(2),
            batch_window: 512,
            grace: Duration::from_secs(5),
            body_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            max_connections: 4096,
            principle: None,
            reward_scale: RewardScale::Raw,
            failure_reward: 0.0,
            group_window: Duration::ZERO,
            max_group_size: DEFAULT_MAX_GROUP_SIZE,
            max_open_groups: DEFAULT_MAX_OPEN_GROUPS,
            expected_group_size: None,
            job_window: 256,
            max_jobs: DEFAULT_MAX_JOBS,
            max_running_jobs: 2,
        }
    }
}

impl GatewayConfig {
    /// Largest request body in bytes (default 32 MiB); a bigger one gets 413.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().max_body_bytes(1024);
    /// assert_eq!(c.get_max_body_bytes(), 1024);
    /// ```
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes.max(1);
        self
    }

    /// The largest request body accepted.
    ///
    /// ```
    /// assert_eq!(ra_gateway::GatewayConfig::default().get_max_body_bytes(), 32 << 20);
    /// ```
    pub fn get_max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Budget of request bytes the judging routes hold at once (default 256 MiB, never
    /// below `max_body_bytes`): each request reserves its body's bytes as they arrive
    /// and holds them until it is answered; a request that does not fit gets 503
    /// `overloaded` with `Retry-After: 1`. Bounds the memory of many concurrent or
    /// slowly sent bodies; an idle peer holds only what it has sent.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().max_buffered_bytes(64 << 20);
    /// ```
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.max_buffered_bytes = bytes.max(1);
        self
    }

    /// Most requests in one batch (default 10,000); a longer batch gets 422.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().max_batch(100);
    /// ```
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// Most responses in one request (default 64); more gets 422.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().max_responses(8);
    /// ```
    pub fn max_responses(mut self, n: usize) -> Self {
        self.max_responses = n.max(1);
        self
    }

    /// The bearer key every route but `/health` requires (`None`: no auth). An empty
    /// key counts as none.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().api_key(Some("k".into()));
    /// ```
    pub fn api_key(mut self, key: Option<String>) -> Self {
        self.api_key = key.filter(|k| !k.is_empty()).map(ApiKey);
        self
    }

    /// How long an upstream health check is reused by `/health` (default 1 s).
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().health_interval(std::time::Duration::from_millis(100));
    /// ```
    pub fn health_interval(mut self, interval: std::time::Duration) -> Self {
        self.health_interval = interval;
        self
    }

    /// How long one upstream health probe may take (default 2 s).
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().health_timeout(std::time::Duration::from_millis(500));
    /// ```
    pub fn health_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.health_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Most finished batch results held back waiting for an earlier one (default 512;
    /// the client's in-flight limit still caps what is on the wire). Bounds memory.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().batch_window(1024);
    /// ```
    pub fn batch_window(mut self, n: usize) -> Self {
        self.batch_window = n.max(1);
        self
    }

    /// After shutdown is asked, how long in-flight requests may take to finish
    /// (default 5 s); then [`Gateway::serve`](crate::Gateway::serve) returns anyway; also
    /// how long [`GatewayHandle::shutdown`](crate::GatewayHandle::shutdown) gives batch jobs.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().grace(std::time::Duration::ZERO);
    /// ```
    pub fn grace(mut self, grace: std::time::Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How long a request body may take to arrive (default 60 s); a slower one gets 408.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().body_timeout(std::time::Duration::from_secs(10));
    /// ```
    pub fn body_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.body_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long a request's headers may take to arrive (default 30 s); then the
    /// connection is closed (a peer trickling headers holds nothing for long).
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().header_timeout(std::time::Duration::from_secs(5));
    /// ```
    pub fn header_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.header_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long writing an answer may make no progress (default 60 s): a peer that
    /// stops reading (a large streamed batch answer it never reads) is disconnected then,
    /// and what its request held (its share of the byte budget) is released. Only
    /// [`Gateway::serve`](crate::Gateway::serve) enforces it.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().write_timeout(std::time::Duration::from_secs(10));
    /// ```
    pub fn write_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.write_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Most judgments of one job in progress at once (default 256): in flight plus
    /// finished ones waiting for an earlier one to be written. The client's in-flight
    /// limit still caps all jobs together; this bounds what a crash makes judge again.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().job_window(64);
    /// ```
    pub fn job_window(mut self, n: usize) -> Self {
        self.job_window = n.max(1);
        self
    }

    /// Most jobs kept at once, finished or not (default 1,000): a new job beyond gets
    /// 503 `too_many_jobs` until `POST /api/clear_tasks` (disk use stays bounded by
    /// about this many request bodies and their results).
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().max_jobs(100);
    /// ```
    pub fn max_jobs(mut self, n: usize) -> Self {
        self.max_jobs = n.max(1);
        self
    }

    /// Most jobs judged at the same time (default 2); later ones wait their turn. One
    /// job already keeps the client's slots busy; the limit bounds the memory of the
    /// judgments held by many jobs.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().max_running_jobs(1);
    /// ```
    pub fn max_running_jobs(mut self, n: usize) -> Self {
        self.max_running_jobs = n.max(1);
        self
    }

    /// Most connections open at once (default 4,096). At the cap a new connection
    /// takes the place of the oldest one with no request in progress (idle, or still
    /// sending its headers), which is closed; when every connection is being served,
    /// new ones wait in the listen backlog.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().max_connections(256);
    /// ```
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// The principle `/get_reward` judges by when a rollout's label gives none (default
    /// none: such a call gets 422 naming the label). An empty one counts as none.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().principle(Some("Prefer correct, concise answers.".into()));
    /// ```
    pub fn principle(mut self, principle: Option<String>) -> Self {
        self.principle = principle.filter(|p| !p.trim().is_empty());
        self
    }

    /// How `/get_reward` maps the judge's 1–5 score to `rewards` (default raw).
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().reward_scale(ra_gateway::RewardScale::Unit);
    /// ```
    pub fn reward_scale(mut self, scale: RewardScale) -> Self {
        self.reward_scale = scale;
        self
    }

    /// The reward (and score) `/get_reward` gives a rollout whose judgment failed
    /// (default 0.0; flagged `ra_failed` in `extra_logs`). Must be finite.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().failure_reward(-1.0)?;
    /// assert!(ra_gateway::GatewayConfig::default().failure_reward(f64::INFINITY).is_err());
    /// # Ok::<(), ra_gateway::NonFiniteReward>(())
    /// ```
    pub fn failure_reward(mut self, reward: f64) -> Result<Self, NonFiniteReward> {
        if !reward.is_finite() {
            return Err(NonFiniteReward(reward));
        }
        self.failure_reward = reward;
        Ok(self)
    }

    /// How long a `/get_reward` group waits, from its first rollout, for more rollouts
    /// of the same (principle, question) before it is judged (default zero: no
    /// grouping, each rollout judged alone).
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().group_window(std::time::Duration::from_millis(100));
    /// ```
    pub fn group_window(mut self, window: Duration) -> Self {
        self.group_window = window;
        self
    }

    /// Most rollouts in one `/get_reward` group (default 8; never above
    /// [`max_responses`](Self::max_responses)); a full group is judged at once.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().max_group_size(16);
    /// ```
    pub fn max_group_size(mut self, n: usize) -> Self {
        self.max_group_size = n.max(1);
        self
    }

    /// Most `/get_reward` groups open at once (default 1,024); a rollout that would
    /// open one more is judged alone. Bounds the rollouts held waiting.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().max_open_groups(64);
    /// ```
    pub fn max_open_groups(mut self, n: usize) -> Self {
        self.max_open_groups = n.max(1);
        self
    }

    /// The size of a complete `/get_reward` group (OpenRLHF's `n_samples_per_prompt`,
    /// veRL's `actor_rollout_ref.rollout.n`; default none): a group is judged as soon as
    /// it holds this many rollouts (capped by [`max_group_size`](Self::max_group_size)),
    /// so the window only bounds the wait for stragglers.
    ///
    /// ```
    /// let c = ra_gateway::GatewayConfig::default().expected_group_size(Some(4));
    /// ```
    pub fn expected_group_size(mut self, n: Option<usize>) -> Self {
        self.expected_group_size = n.map(|n| n.max(1));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings' `Debug` shows every field (a hand-written one had lost
    /// `health_timeout`) and never the key. The destructuring names every field, so a
    /// new field does not compile here until it is checked too.
    #[test]
    fn debug_shows_every_setting_and_never_the_key() {
        let config = GatewayConfig::default()
            .api_key(Some("sk-do-not-log".into()))
            .principle(Some("Prefer correct answers.".into()))
            .health_timeout(Duration::from_millis(1234))
            .failure_reward(-0.5)
            .expect("finite");
        let shown = format!("{config:?}");
        let pretty = format!("{config:#?}");
        assert!(!shown.contains("sk-do-not-log"), "{shown}");
        assert!(!pretty.contains("sk-do-not-log"), "{pretty}");
        assert!(
            shown.contains("api_key: Some(ApiKey(<redacted>))"),
            "{shown}"
        );
        let GatewayConfig {
            max_body_bytes,
            max_buffered_bytes,
            max_batch,
            max_responses,
            api_key: _,
            health_interval,
            health_timeout,
            batch_window,
            grace,
            body_timeout,
            header_timeout,
            write_timeout,
            max_connections,
            principle,
            reward_scale,
            failure_reward,
            group_window,
            max_group_size,
            max_open_groups,
            expected_group_size,
            job_window,
            max_jobs,
            max_running_jobs,
        } = &config;
        macro_rules! shows {
            ($($field:ident),*) => {$(
                let want = format!("{}: {:?}", stringify!($field), $field);
                assert!(shown.contains(&want), "{want:?} missing from {shown}");
            )*};
        }
        shows!(
            max_body_bytes,
            max_buffered_bytes,
            max_batch,
            max_responses,
            health_interval,
            health_timeout,
            batch_window,
            grace,
            body_timeout,
            header_timeout,
            write_timeout,
            max_connections,
            principle,
            reward_scale,
            failure_reward,
            group_window,
            max_group_size,
            max_open_groups,
            expected_group_size,
            job_window,
            max_jobs,
            max_running_jobs
        );
    }
}
