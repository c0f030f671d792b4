//! Spreading requests over several endpoints.
//!
//! Each request goes to the healthy endpoint with the fewest requests in flight (ties go
//! round-robin). An endpoint is ejected after `eject_after` consecutive connect errors or
//! 5xx answers and gets one probe request after `cooldown`; a success brings it back. The
//! last healthy endpoint is never ejected. A 429 is back-pressure, not a failure: the
//! endpoint is only avoided for a moment (its `Retry-After`, else a short pause).
//!
//! The set of endpoints can be replaced while requests run (e.g. when `ra-serve`'s
//! endpoints file changes); endpoints that stay keep their counters.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// One OpenAI-compatible endpoint, e.g. `http://127.0.0.1:8000/v1`.
#[derive(Debug)]
pub struct Endpoint {
    /// The base URL, without a trailing slash.
    pub base_url: String,
    /// Parsed once: parsing a URL per attempt costs allocations on the hot path. An
    /// invalid URL (possible through `set_endpoints`) fails each attempt with its reason.
    pub(crate) completions_url: Result<reqwest::Url, String>,
    in_flight: AtomicUsize,
    consecutive_failures: AtomicU32,
    /// Milliseconds since the balancer's epoch before which the endpoint is avoided
    /// (0 = usable).
    avoid_until_ms: AtomicU64,
    ejected: std::sync::atomic::AtomicBool,
    served: AtomicU64,
}

impl Endpoint {
    fn new(base_url: &str) -> Self {
        let base_url = base_url.trim_end_matches('/').to_string();
        Endpoint {
            completions_url: reqwest::Url::parse(&format!("{base_url}/chat/completions"))
                .map_err(|e| format!("invalid endpoint URL {base_url:?}: {e}")),
            base_url,
            in_flight: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            avoid_until_ms: AtomicU64::new(0),
            ejected: std::sync::atomic::AtomicBool::new(false),
            served: AtomicU64::new(0),
        }
    }

    /// Requests now in flight on this endpoint.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Successful answers so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Whether the endpoint is ejected (waiting for its probe).
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }
}

/// Tuning of the [`Balancer`].
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceConfig {
    /// Consecutive connect errors / 5xx before an endpoint is ejected. Default 3.
    pub eject_after: u32,
    /// How long an ejected endpoint rests before a probe. Default 10 s.
    pub cooldown: Duration,
    /// How long a 429 without `Retry-After` makes an endpoint less preferred. Default 1 s.
    pub backpressure_pause: Duration,
    /// Longest pause a 429's `Retry-After` can impose. Default 30 s.
    pub max_backpressure_pause: Duration,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            eject_after: 3,
            cooldown: Duration::from_secs(10),
            backpressure_pause: Duration::from_secs(1),
            max_backpressure_pause: Duration::from_secs(30),
        }
    }
}

/// What one attempt's outcome says about its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered (any 2xx or 4xx other than 429): it is alive.
    Alive,
    /// Connect error, dropped connection, timeout or 5xx.
    Failure,
    /// 429: alive but busy, for this long if the server said.
    Busy(Option<Duration>),
}

/// Chooses endpoints; cheap to share (`Arc`).
///
/// ```
/// use rewardanything_client::balance::{Balancer, BalanceConfig};
/// let b = Balancer::new(&["http://a/v1".into(), "http://b/v1".into()], BalanceConfig::default());
/// let lease = b.pick().unwrap();
/// assert_eq!(lease.endpoint().in_flight(), 1);
/// ```
#[derive(Debug)]
pub struct Balancer {
    endpoints: RwLock<Arc<Vec<Arc<Endpoint>>>>,
    config: BalanceConfig,
    epoch: Instant,
    cursor: AtomicUsize,
}

impl Balancer {
    /// A balancer over these base URLs.
    pub fn new(urls: &[String], config: BalanceConfig) -> Self {
        let endpoints = urls.iter().map(|u| Arc::new(Endpoint::new(u))).collect();
        Balancer {
            endpoints: RwLock::new(Arc::new(endpoints)),
            config,
            epoch: Instant::now(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The current endpoints.
    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        match self.endpoints.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the endpoint set; endpoints present before keep their state. In-flight
    /// requests to removed endpoints finish normally.
    ///
    /// ```
    /// use rewardanything_client::balance::{Balancer, BalanceConfig};
    /// let b = Balancer::new(&["http://a/v1".into()], BalanceConfig::default());
    /// b.set_endpoints(&["http://b/v1".into(), "http://a/v1/".into()]);
    /// assert_eq!(b.endpoints().len(), 2);
    /// ```
    pub fn set_endpoints(&self, urls: &[String]) {
        let old = self.endpoints();
        let new: Vec<Arc<Endpoint>> = urls
            .iter()
            .map(|u| {
                let u = u.trim_end_matches('/');
                old.iter()
                    .find(|e| e.base_url == u)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Endpoint::new(u)))
            })
            .collect();
        match self.endpoints.write() {
            Ok(mut g) => *g = Arc::new(new),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(new),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Picks an endpoint for one attempt and counts it in flight until the lease drops.
    /// `None` only when there are no endpoints at all.
    pub fn pick(&self) -> Option<Lease> {
        let endpoints = self.endpoints();
        if endpoints.is_empty() {
            return None;
        }
        let now = self.now_ms();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let n = endpoints.len();
        // Rank: an ejected endpoint whose cooldown is over gets its probe first (else it
        // would never be tried while another is healthy), then usable endpoints, then
        // anything (every endpoint is down or busy: still try the least bad one rather
        // than fail).
        let mut best: Option<(u8, usize, usize)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let e = &endpoints[i];
            let avoid = e.avoid_until_ms.load(Ordering::Relaxed);
            let class = match (e.is_ejected(), avoid > now) {
                (true, false) => 0,
                (false, false) => 1,
                (false, true) => 2,
                (true, true) => 3,
            };
            let load = e.in_flight();
            if best.is_none_or(|(c, l, _)| (class, load) < (c, l)) {
                best = Some((class, load, i));
            }
        }
        let (class, _, i) = best?;
        let endpoint = Arc::clone(&endpoints[i]);
        if class == 0 && endpoint.is_ejected() {
            // One probe at a time: push the next probe a cooldown away.
            let next = now + self.config.cooldown.as_millis() as u64;
            endpoint.avoid_until_ms.store(next, Ordering::Relaxed);
        }
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Lease { endpoint })
    }

    /// Records an attempt's outcome for its endpoint.
    pub fn record(&self, endpoint: &Endpoint, outcome: Outcome) {
        match outcome {
            Outcome::Alive => {
                endpoint.consecutive_failures.store(0, Ordering::Relaxed);
                endpoint.served.fetch_add(1, Ordering::Relaxed);
                // An answer ends any back-pressure pause or ejection.
                endpoint.avoid_until_ms.store(0, Ordering::Relaxed);
                if endpoint.ejected.swap(false, Ordering::Relaxed) {
                    tracing::info!(endpoint = %endpoint.base_url, "endpoint back in rotation");
                }
            }
            Outcome::Busy(retry_after) => {
                // A server's Retry-After may be huge; never sideline a live endpoint for
                // longer than the configured bound.
                let pause = retry_after
                    .unwrap_or(self.config.backpressure_pause)
                    .min(self.config.max_backpressure_pause);
                let until = self.now_ms() + pause.as_millis() as u64;
                endpoint.avoid_until_ms.fetch_max(until, Ordering::Relaxed);
            }
            Outcome::Failure => {
                let failures = endpoint
                    .consecutive_failures
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                let until = self.now_ms() + self.config.cooldown.as_millis() as u64;
                if endpoint.is_ejected() {
                    // A failed probe: rest again.
                    endpoint.avoid_until_ms.store(until, Ordering::Relaxed);
                } else if failures >= self.config.eject_after && self.healthy_others(endpoint) {
                    endpoint.ejected.store(true, Ordering::Relaxed);
                    endpoint.avoid_until_ms.store(until, Ordering::Relaxed);
                    tracing::warn!(endpoint = %endpoint.base_url, failures, "endpoint ejected");
                }
            }
        }
    }

    fn healthy_others(&self, endpoint: &Endpoint) -> bool {
        self.endpoints()
            .iter()
            .any(|e| !std::ptr::eq(Arc::as_ptr(e), endpoint) && !e.is_ejected())
    }
}

/// An endpoint chosen for one attempt; counted in flight while it lives.
#[derive(Debug)]
pub struct Lease {
    endpoint: Arc<Endpoint>,
}

impl Lease {
    /// The chosen endpoint.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("http://e{i}/v1")).collect()
    }

    #[test]
    fn least_in_flight_wins() {
        let b = Balancer::new(&urls(2), BalanceConfig::default());
        let a = b.pick().unwrap();
        let c = b.pick().unwrap();
        assert_ne!(a.endpoint().base_url, c.endpoint().base_url);
        drop(c);
        let d = b.pick().unwrap();
        assert_ne!(d.endpoint().base_url, a.endpoint().base_url);
    }

    #[test]
    fn ejects_after_failures_but_never_the_last() {
        let b = Balancer::new(&urls(2), BalanceConfig::default());
        let eps = b.endpoints();
        for _ in 0..3 {
            b.record(&eps[0], Outcome::Failure);
        }
        assert!(eps[0].is_ejected());
        for _ in 0..10 {
            assert_eq!(b.pick().unwrap().endpoint().base_url, "http://e1/v1");
        }
        for _ in 0..5 {
            b.record(&eps[1], Outcome::Failure);
        }
        assert!(!eps[1].is_ejected(), "the last healthy endpoint stays");
        b.record(&eps[0], Outcome::Alive);
        assert!(!eps[0].is_ejected(), "a success brings it back");
    }

    #[test]
    fn probe_after_cooldown() {
        let config = BalanceConfig {
            cooldown: Duration::from_millis(30),
            ..BalanceConfig::default()
        };
        let b = Balancer::new(&urls(2), config);
        let eps = b.endpoints();
        for _ in 0..3 {
            b.record(&eps[0], Outcome::Failure);
        }
        assert_eq!(
            b.pick().unwrap().endpoint().base_url,
            "http://e1/v1",
            "resting"
        );
        std::thread::sleep(Duration::from_millis(50));
        let probe = b.pick().unwrap();
        assert_eq!(probe.endpoint().base_url, "http://e0/v1");
        let next = b.pick().unwrap();
        assert_eq!(
            next.endpoint().base_url,
            "http://e1/v1",
            "one probe at a time"
        );
    }

    #[test]
    fn busy_endpoint_is_avoided_not_ejected() {
        let b = Balancer::new(&urls(2), BalanceConfig::default());
        let eps = b.endpoints();
        b.record(&eps[0], Outcome::Busy(Some(Duration::from_secs(5))));
        assert!(!eps[0].is_ejected());
        for _ in 0..4 {
            assert_eq!(b.pick().unwrap().endpoint().base_url, "http://e1/v1");
        }
    }
}
