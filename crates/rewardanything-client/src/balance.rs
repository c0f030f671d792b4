//! Spreading requests over several endpoints.
//!
//! Each request goes to the healthy endpoint with the fewest requests in flight (ties go
//! round-robin): an exact scan up to [`SCAN_LIMIT`] endpoints, the less loaded of two
//! random ones beyond (O(1) per pick, so a fleet of thousands costs no more per request
//! than a handful). [`BalancePolicy`] offers a bounded-load affinity choice and, for
//! comparison, round-robin and random. An endpoint is ejected after `eject_after` consecutive connect errors or
//! 5xx answers and gets one probe request after `cooldown`; a success brings it back. The
//! last healthy endpoint is never ejected. A 429 is back-pressure, not a failure: the
//! endpoint is only avoided for a moment (its `Retry-After`, else a short pause).
//!
//! The set of endpoints can be replaced while requests run (e.g. when `ra-serve`'s
//! endpoints file changes); endpoints that stay keep their counters.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// One OpenAI-compatible endpoint, e.g. `http://127.0.0.1:8000/v1`.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The parsed URLs.
    pub url: EndpointUrl,
    /// The base URL as given, without a trailing slash (may hold credentials: never
    /// logged; `shown` is).
    pub base_url: String,
    /// The base URL for logs, errors and stats: password and query redacted.
    pub shown: String,
    /// Parsed once: parsing a URL per attempt costs allocations on the hot path.
    pub completions_url: reqwest::Url,
    in_flight: AtomicUsize,
    consecutive_failures: AtomicU32,
    /// Milliseconds since the balancer's epoch before which the endpoint is avoided
    /// (0 = usable).
    avoid_until_ms: AtomicU64,
    ejected: std::sync::atomic::AtomicBool,
    served: AtomicU64,
}

/// A validated endpoint base URL (http or https).
#[derive(Debug, Clone)]
pub(crate) struct EndpointUrl {
    base: String,
    parsed: reqwest::Url,
    completions: reqwest::Url,
    models: reqwest::Url,
}

impl EndpointUrl {
    /// Parses and checks a base URL; the error says what is wrong, without echoing a
    /// password.
    pub fn parse(url: &str) -> Result<Self, String> {
        let base = url.trim_end_matches('/').to_string();
        // `127.0.0.1:8000/v1` is "relative" to the URL parser and `localhost:8000/v1`
        // has the "scheme" `localhost`: either way the user left out the scheme.
        if !base.contains("://") {
            let fixed = crate::wire::redact_unparsed(&format!("http://{base}"));
            return Err(format!("no scheme: add http:// in front ({fixed})"));
        }
        let parsed = reqwest::Url::parse(&base).map_err(|e| e.to_string())?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("scheme {:?} is not http or https", parsed.scheme()));
        }
        // `{base}/chat/completions` and `{base}/models`, whatever the base's path.
        let join = |tail: &[&str]| {
            let mut u = parsed.clone();
            u.path_segments_mut()
                .map_err(|_| "the URL cannot be a base".to_string())?
                .pop_if_empty()
                .extend(tail);
            Ok::<_, String>(u)
        };
        Ok(EndpointUrl {
            completions: join(&["chat", "completions"])?,
            models: join(&["models"])?,
            base,
            parsed,
        })
    }

    /// The base URL with its password and query redacted.
    pub fn shown(&self) -> String {
        crate::wire::redact_url(&self.parsed)
    }

    /// `GET {base}/models`.
    pub fn models(&self) -> &reqwest::Url {
        &self.models
    }

    /// The base URL without a last `/v1` segment: where a reward server (ra gateway,
    /// `rewardanything serve`) has its routes when it is given as an endpoint.
    fn root(&self) -> reqwest::Url {
        let mut root = self.parsed.clone();
        if root.path_segments().and_then(|mut s| s.next_back()) == Some("v1")
            && let Ok(mut segments) = root.path_segments_mut()
        {
            segments.pop();
        }
        root
    }

    /// `GET {root}/health`, asked to recognise a reward server.
    pub fn reward_server_health(&self) -> Option<reqwest::Url> {
        let mut health = self.root();
        health
            .path_segments_mut()
            .ok()?
            .pop_if_empty()
            .push("health");
        Some(health)
    }

    /// [`Self::root`] with its password and query redacted.
    pub fn root_shown(&self) -> String {
        crate::wire::redact_url(&self.root())
            .trim_end_matches('/')
            .to_string()
    }

    /// The base URL as given.
    pub fn as_str(&self) -> &str {
        &self.base
    }
}

impl Endpoint {
    fn new(url: &EndpointUrl) -> Self {
        Endpoint {
            url: url.clone(),
            shown: url.shown(),
            base_url: url.base.clone(),
            completions_url: url.completions.clone(),
            in_flight: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            avoid_until_ms: AtomicU64::new(0),
            ejected: std::sync::atomic::AtomicBool::new(false),
            served: AtomicU64::new(0),
        }
    }

    /// Requests now in flight on this endpoint.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Successful answers so far.
    pub(crate) fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Whether the endpoint is ejected (waiting for its probe).
    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> EndpointStats {
        EndpointStats {
            url: self.shown.clone(),
            in_flight: self.in_flight(),
            served: self.served(),
            ejected: self.is_ejected(),
        }
    }
}

/// A snapshot of one endpoint's counters (read-only; see
/// [`Client::endpoint_stats`](crate::Client::endpoint_stats)).
///
/// ```
/// # async fn f(client: rewardanything_client::Client) {
/// for e in client.endpoint_stats() {
///     println!("{}: {} in flight, {} served, ejected: {}", e.url, e.in_flight, e.served, e.ejected);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// The base URL, password and query redacted.
    pub url: String,
    /// Requests in flight now.
    pub in_flight: usize,
    /// Successful answers so far.
    pub served: u64,
    /// Ejected after repeated failures, waiting for a probe.
    pub ejected: bool,
}

/// Endpoint ejection and back-pressure settings; see
/// [`ClientBuilder::balance`](crate::ClientBuilder::balance).
///
/// ```
/// use rewardanything_client::BalanceConfig;
/// use std::time::Duration;
/// let c = BalanceConfig::default().eject_after(5).cooldown(Duration::from_secs(30));
/// assert_eq!((c.eject_after, c.cooldown), (5, Duration::from_secs(30)));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BalanceConfig {
    /// Consecutive connect errors / 5xx before an endpoint is ejected. Default 3.
    pub eject_after: u32,
    /// How long an ejected endpoint rests before a probe. Default 10 s.
    pub cooldown: Duration,
    /// How long a 429 without `Retry-After` makes an endpoint less preferred. Default 1 s.
    pub backpressure_pause: Duration,
    /// Longest pause a 429's `Retry-After` can impose. Default 30 s.
    pub max_backpressure_pause: Duration,
    /// How an endpoint is chosen. Default [`BalancePolicy::LeastLoaded`].
    pub policy: BalancePolicy,
}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            eject_after: 3,
            cooldown: Duration::from_secs(10),
            backpressure_pause: Duration::from_secs(1),
            max_backpressure_pause: Duration::from_secs(30),
            policy: BalancePolicy::LeastLoaded,
        }
    }
}

/// How the balancer chooses an endpoint for each attempt
/// ([`BalanceConfig::policy`]). Parses from `least-loaded`, `affinity`,
/// `affinity:FACTOR`, `round-robin` and `random`.
///
/// ```
/// use rewardanything_client::BalancePolicy;
/// assert_eq!("affinity:1.5".parse::<BalancePolicy>().unwrap(), BalancePolicy::affinity(1.5));
/// assert_eq!("least-loaded".parse::<BalancePolicy>().unwrap(), BalancePolicy::LeastLoaded);
/// assert!("fastest".parse::<BalancePolicy>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum BalancePolicy {
    /// The healthy endpoint with the fewest requests in flight (the default): a slow
    /// replica holds its requests longer and so gets fewer.
    #[default]
    LeastLoaded,
    /// Bounded-load consistent hashing on the request's principle and prompt: calls
    /// sharing them (RM-Bench's pairs of one item, the permutations of one request, the
    /// chunks of one GRPO group) go to the same replica, whose prefix cache then holds
    /// their common prefix, unless that replica has more than `overload_factor` × the
    /// average in flight; then the least-loaded choice. Off by default: see the README's
    /// "Scaling out" for what it gains and where.
    Affinity {
        /// How much busier than the average (in requests in flight, plus one) the
        /// preferred replica may be before a request goes elsewhere; at least 1.
        overload_factor: f64,
    },
    /// Each endpoint in turn, whatever its load (what OpenRLHF does across several
    /// `--remote_rm_url`s); for comparison: a slow replica holds everyone back.
    RoundRobin,
    /// A uniformly random endpoint (the reference's choice); for comparison.
    Random,
}

impl BalancePolicy {
    /// The overload factor [`BalancePolicy::Affinity`] uses unless told otherwise.
    pub const DEFAULT_OVERLOAD_FACTOR: f64 = 1.25;

    /// [`BalancePolicy::Affinity`] with this overload factor (at least 1; not a number: the default).
    pub fn affinity(overload_factor: f64) -> Self {
        let overload_factor = if overload_factor.is_nan() {
            Self::DEFAULT_OVERLOAD_FACTOR
        } else {
            overload_factor.max(1.0)
        };
        BalancePolicy::Affinity { overload_factor }
    }
}

/// A balance policy name that is not one of those [`BalancePolicy`] parses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown balance policy {0:?} (expected least-loaded, affinity, affinity:FACTOR with FACTOR ≥ 1, round-robin or random)"
)]
pub struct ParsePolicyError(String);

impl FromStr for BalancePolicy {
    type Err = ParsePolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePolicyError(s.to_string());
        Ok(match s {
            "least-loaded" => BalancePolicy::LeastLoaded,
            "affinity" => BalancePolicy::affinity(Self::DEFAULT_OVERLOAD_FACTOR),
            "round-robin" => BalancePolicy::RoundRobin,
            "random" => BalancePolicy::Random,
            _ => {
                let factor: f64 = s
                    .strip_prefix("affinity:")
                    .and_then(|f| f.parse().ok())
                    .ok_or_else(err)?;
                if !(factor.is_finite() && factor >= 1.0) {
                    return Err(err());
                }
                BalancePolicy::affinity(factor)
            }
        })
    }
}

impl BalanceConfig {
    /// Consecutive connect errors / 5xx before an endpoint is ejected (at least 1).
    ///
    /// ```
    /// assert_eq!(rewardanything_client::BalanceConfig::default().eject_after(0).eject_after, 1);
    /// ```
    pub fn eject_after(mut self, failures: u32) -> Self {
        self.eject_after = failures.max(1);
        self
    }

    /// How long an ejected endpoint rests before a probe.
    ///
    /// ```
    /// let c = rewardanything_client::BalanceConfig::default().cooldown(std::time::Duration::ZERO);
    /// assert!(c.cooldown.is_zero());
    /// ```
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// How long a 429 without `Retry-After` makes an endpoint less preferred.
    ///
    /// ```
    /// let c = rewardanything_client::BalanceConfig::default().backpressure_pause(std::time::Duration::from_millis(10));
    /// assert_eq!(c.backpressure_pause.as_millis(), 10);
    /// ```
    pub fn backpressure_pause(mut self, pause: Duration) -> Self {
        self.backpressure_pause = pause;
        self
    }

    /// Longest pause a 429's `Retry-After` can impose.
    ///
    /// ```
    /// let c = rewardanything_client::BalanceConfig::default().max_backpressure_pause(std::time::Duration::from_secs(1));
    /// assert_eq!(c.max_backpressure_pause.as_secs(), 1);
    /// ```
    pub fn max_backpressure_pause(mut self, pause: Duration) -> Self {
        self.max_backpressure_pause = pause;
        self
    }

    /// How an endpoint is chosen (see [`BalancePolicy`]).
    ///
    /// ```
    /// use rewardanything_client::{BalanceConfig, BalancePolicy};
    /// let c = BalanceConfig::default().policy(BalancePolicy::affinity(1.5));
    /// assert_eq!(c.policy, BalancePolicy::Affinity { overload_factor: 1.5 });
    /// ```
    pub fn policy(mut self, policy: BalancePolicy) -> Self {
        self.policy = policy;
        self
    }
}

/// What one attempt's outcome says about its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The endpoint answered (any 2xx or 4xx other than 429): it is alive.
    Alive,
    /// Connect error, dropped connection, timeout or 5xx.
    Failure,
    /// 429: alive but busy, for this long if the server said.
    Busy(Option<Duration>),
}

/// Chooses endpoints; cheap to share (`Arc`).
#[derive(Debug)]
pub(crate) struct Balancer {
    endpoints: RwLock<Arc<Vec<Arc<Endpoint>>>>,
    config: BalanceConfig,
    epoch: Instant,
    cursor: AtomicUsize,
    /// Requests in flight over all endpoints (the affinity choice's average).
    total_in_flight: Arc<AtomicUsize>,
    /// The affinity ring of the current endpoint set, rebuilt when the set changes.
    ring: RwLock<Option<Arc<Ring>>>,
    /// Unit tests move the balancer's clock forward instead of sleeping.
    #[cfg(test)]
    skew_ms: AtomicU64,
}

impl Balancer {
    /// A balancer over these base URLs.
    pub fn new(urls: &[EndpointUrl], config: BalanceConfig) -> Self {
        let endpoints = urls.iter().map(|u| Arc::new(Endpoint::new(u))).collect();
        Balancer {
            endpoints: RwLock::new(Arc::new(endpoints)),
            config,
            epoch: Instant::now(),
            cursor: AtomicUsize::new(0),
            total_in_flight: Arc::new(AtomicUsize::new(0)),
            ring: RwLock::new(None),
            #[cfg(test)]
            skew_ms: AtomicU64::new(0),
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
    pub fn set_endpoints(&self, urls: &[EndpointUrl]) {
        let old = self.endpoints();
        let new: Vec<Arc<Endpoint>> = urls
            .iter()
            .map(|u| {
                old.iter()
                    .find(|e| e.base_url == u.as_str())
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
        let now = self.epoch.elapsed().as_millis() as u64;
        #[cfg(test)]
        let now = now + self.skew_ms.load(Ordering::Relaxed);
        now
    }

    #[cfg(test)]
    fn advance(&self, by: Duration) {
        self.skew_ms
            .fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }

    /// Picks an endpoint for one attempt and counts it in flight until the lease drops.
    /// `None` only when there are no endpoints at all.
    #[cfg(test)]
    pub fn pick(&self) -> Option<Lease> {
        self.pick_for(None)
    }

    /// [`Self::pick`] for a request whose affinity key (principle and prompt) is `key`;
    /// only [`BalancePolicy::Affinity`] reads it.
    pub fn pick_for(&self, key: Option<u64>) -> Option<Lease> {
        let endpoints = self.endpoints();
        if endpoints.is_empty() {
            return None;
        }
        let now = self.now_ms();
        let tick = self.cursor.fetch_add(1, Ordering::Relaxed);
        let n = endpoints.len();
        let chosen = match self.config.policy {
            BalancePolicy::RoundRobin => Some(tick % n),
            BalancePolicy::Random => Some(random_index(tick, n)),
            BalancePolicy::Affinity { overload_factor } => key.and_then(|key| {
                let preferred = self.ring(&endpoints).owner(key)?;
                let e = &endpoints[preferred];
                // Bounded load: at most factor × the average (counting this request).
                let total = self.total_in_flight.load(Ordering::Relaxed) + 1;
                let bound = (overload_factor * total as f64 / n as f64).ceil() as usize;
                (e.in_flight() < bound.max(1)).then_some(preferred)
            }),
            BalancePolicy::LeastLoaded => None,
        }
        // A chosen endpoint that is ejected or paused gives way to the least-loaded choice.
        .filter(|&i| class(&endpoints[i], now) == 1);
        let (class, i) = match chosen {
            Some(i) => (1, i),
            None => least_loaded(&endpoints, now, tick)?,
        };
        let endpoint = Arc::clone(&endpoints[i]);
        if class == 0 && endpoint.is_ejected() {
            // One probe at a time: push the next probe a cooldown away.
            let next = now + self.config.cooldown.as_millis() as u64;
            endpoint.avoid_until_ms.store(next, Ordering::Relaxed);
        }
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        self.total_in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            endpoint,
            total: Arc::clone(&self.total_in_flight),
        })
    }

    /// Whether picks read an affinity key (so that callers hash only when it is used).
    pub fn uses_affinity(&self) -> bool {
        matches!(self.config.policy, BalancePolicy::Affinity { .. })
    }

    /// The affinity ring of this endpoint set (built once per set).
    fn ring(&self, endpoints: &Arc<Vec<Arc<Endpoint>>>) -> Arc<Ring> {
        let cached = match self.ring.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(ring) = cached.filter(|r| Arc::ptr_eq(&r.endpoints, endpoints)) {
            return ring;
        }
        let ring = Arc::new(Ring::new(Arc::clone(endpoints)));
        match self.ring.write() {
            Ok(mut g) => *g = Some(Arc::clone(&ring)),
            Err(poisoned) => *poisoned.into_inner() = Some(Arc::clone(&ring)),
        }
        ring
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
                    tracing::info!(endpoint = %endpoint.shown, "endpoint back in rotation");
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
                    tracing::warn!(endpoint = %endpoint.shown, failures, "endpoint ejected");
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

/// Up to this many endpoints the least-loaded choice scans them all (exact); beyond, it
/// takes the less loaded of two random ones, which stays O(1) per pick and is within a
/// request or two of the exact choice (the "power of two choices").
pub(crate) const SCAN_LIMIT: usize = 32;

/// Rank of an endpoint for the least-loaded choice, lower first: an ejected endpoint
/// whose cooldown is over gets its probe first (else it would never be tried while
/// another is healthy), then usable endpoints, then anything (every endpoint is down or
/// busy: still try the least bad one rather than fail).
fn class(e: &Endpoint, now: u64) -> u8 {
    let avoid = e.avoid_until_ms.load(Ordering::Relaxed);
    match (e.is_ejected(), avoid > now) {
        (true, false) => 0,
        (false, false) => 1,
        (false, true) => 2,
        (true, true) => 3,
    }
}

/// The least-loaded endpoint as `(class, index)`: exact up to [`SCAN_LIMIT`] endpoints,
/// else the better of two distinct random ones. Ties go round-robin (`tick`).
fn least_loaded(endpoints: &[Arc<Endpoint>], now: u64, tick: usize) -> Option<(u8, usize)> {
    let n = endpoints.len();
    let rank = |i: usize| (class(&endpoints[i], now), endpoints[i].in_flight());
    if n <= SCAN_LIMIT {
        let mut best: Option<((u8, usize), usize)> = None;
        for k in 0..n {
            let i = (tick + k) % n;
            let r = rank(i);
            if best.is_none_or(|(b, _)| r < b) {
                best = Some((r, i));
            }
        }
        return best.map(|((c, _), i)| (c, i));
    }
    let a = random_index(tick, n);
    // A second index distinct from the first.
    let b = (a + 1 + random_index(tick ^ 0x5bd1_e995, n - 1)) % n;
    let (ra, rb) = (rank(a), rank(b));
    let mut best = if rb < ra { (rb, b) } else { (ra, a) };
    // Both ejected or paused: look a little further before settling for one (bounded,
    // so a pick stays O(1) even when most of the fleet is down).
    let mut draw = tick;
    for _ in 0..MORE_DRAWS {
        if best.0.0 <= 1 {
            break;
        }
        draw = draw.wrapping_add(0x9E37_79B9);
        let c = random_index(draw, n);
        let rc = rank(c);
        if rc < best.0 {
            best = (rc, c);
        }
    }
    Some((best.0.0, best.1))
}

/// Extra random draws when both choices are ejected or paused.
const MORE_DRAWS: usize = 16;

/// A well-mixed index in `0..n` from a counter (splitmix64): no lock, no shared RNG.
fn random_index(tick: usize, n: usize) -> usize {
    let z = mix((tick as u64).wrapping_add(0x9E37_79B9_7F4A_7C15));
    // Multiply-shift maps a u64 onto 0..n without the modulo's bias.
    ((u128::from(z) * n as u128) >> 64) as usize
}

/// A consistent-hash ring over one endpoint set: [`Ring::VNODES`] points per endpoint,
/// keyed by its URL, so that a replica joining or leaving moves only its own share of
/// keys. Lookup is a binary search: O(log n).
#[derive(Debug)]
struct Ring {
    /// The set it was built for (kept to recognise it).
    endpoints: Arc<Vec<Arc<Endpoint>>>,
    points: Vec<(u64, usize)>,
}

impl Ring {
    const VNODES: u64 = 64;

    fn new(endpoints: Arc<Vec<Arc<Endpoint>>>) -> Self {
        let mut points: Vec<(u64, usize)> = endpoints
            .iter()
            .enumerate()
            .flat_map(|(i, e)| {
                let h = fnv1a64(e.base_url.as_bytes());
                (0..Self::VNODES).map(move |v| (mix(h ^ v.wrapping_mul(0x9E37_79B9_7F4A_7C15)), i))
            })
            .collect();
        points.sort_unstable();
        Ring { endpoints, points }
    }

    /// The index of the endpoint owning `key`: the first point at or after it.
    fn owner(&self, key: u64) -> Option<usize> {
        let at = self.points.partition_point(|&(p, _)| p < key);
        self.points
            .get(at)
            .or_else(|| self.points.first())
            .map(|&(_, i)| i)
    }
}

/// FNV-1a (64 bit): fixed across processes and versions, so that every client (several
/// gateways, say) sends a given prompt to the same replica.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64's finaliser: spreads nearby hashes over the ring.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The affinity key of a request: its principle and prompt (what calls sharing a
/// prefix have in common), never its responses.
pub(crate) fn affinity_key(principle: &str, prompt: &str) -> u64 {
    let mut bytes = Vec::with_capacity(principle.len() + prompt.len() + 1);
    bytes.extend_from_slice(principle.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(prompt.as_bytes());
    mix(fnv1a64(&bytes))
}

/// An endpoint chosen for one attempt; counted in flight while it lives.
#[derive(Debug)]
pub(crate) struct Lease {
    endpoint: Arc<Endpoint>,
    total: Arc<AtomicUsize>,
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
        self.total.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(n: usize) -> Vec<EndpointUrl> {
        (0..n)
            .map(|i| EndpointUrl::parse(&format!("http://e{i}/v1")).unwrap())
            .collect()
    }

    #[test]
    fn urls_are_checked_and_joined() {
        let u = EndpointUrl::parse("http://u:pw@h:1/v1/").unwrap();
        assert_eq!(
            u.completions.as_str(),
            "http://u:pw@h:1/v1/chat/completions"
        );
        assert_eq!(u.models.as_str(), "http://u:pw@h:1/v1/models");
        assert!(!u.shown().contains("pw"));
        assert!(
            EndpointUrl::parse("ftp://h/v1")
                .unwrap_err()
                .contains("ftp")
        );
        assert!(EndpointUrl::parse("not a url").is_err());
        // Without a scheme, whether the parser sees a relative URL or the host as a
        // scheme, the fix is named (and a password is not echoed).
        for url in ["127.0.0.1:8100/v1", "localhost:8100/v1", "u:pw@h:1/v1"] {
            let e = EndpointUrl::parse(url).unwrap_err();
            assert!(e.contains("add http://"), "{url}: {e}");
            assert!(
                !e.contains("relative URL") && !e.contains("pw"),
                "{url}: {e}"
            );
        }
        // The reward server's routes are at the base without its /v1.
        let u = EndpointUrl::parse("http://u:pw@h:1/v1").unwrap();
        assert_eq!(
            u.reward_server_health().unwrap().as_str(),
            "http://u:pw@h:1/health"
        );
        assert_eq!(u.root_shown(), "http://u:***@h:1");
        let u = EndpointUrl::parse("http://h:1/proxy").unwrap();
        assert_eq!(
            u.reward_server_health().unwrap().as_str(),
            "http://h:1/proxy/health"
        );
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
        let config = BalanceConfig::default().cooldown(Duration::from_secs(10));
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
        b.advance(Duration::from_secs(11));
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

    #[test]
    fn an_answer_ends_a_429_pause_and_long_pauses_are_capped() {
        let urls: Vec<EndpointUrl> = ["http://a/v1", "http://b/v1"]
            .iter()
            .map(|u| EndpointUrl::parse(u).unwrap())
            .collect();
        let balancer = Balancer::new(&urls, BalanceConfig::default());
        let endpoints = balancer.endpoints();
        balancer.record(
            &endpoints[0],
            Outcome::Busy(Some(Duration::from_secs(3600))),
        );
        for _ in 0..3 {
            assert_eq!(balancer.pick().unwrap().endpoint().base_url, "http://b/v1");
        }
        balancer.record(&endpoints[0], Outcome::Alive);
        // Keep b busier: a, no longer paused, is the least loaded.
        let _hold = balancer.pick().unwrap();
        assert_eq!(balancer.pick().unwrap().endpoint().base_url, "http://a/v1");

        let capped = Balancer::new(
            &urls,
            BalanceConfig::default().max_backpressure_pause(Duration::from_millis(50)),
        );
        let endpoints = capped.endpoints();
        capped.record(
            &endpoints[0],
            Outcome::Busy(Some(Duration::from_secs(3600))),
        );
        capped.advance(Duration::from_millis(80));
        let _hold = capped.pick().unwrap();
        let next = capped.pick().unwrap();
        let picked: Vec<&str> = [_hold.endpoint(), next.endpoint()]
            .iter()
            .map(|e| e.base_url.as_str())
            .collect();
        assert!(
            picked.contains(&"http://a/v1"),
            "a is usable again after the cap: {picked:?}"
        );
    }

    fn with_policy(n: usize, policy: BalancePolicy) -> Balancer {
        Balancer::new(&urls(n), BalanceConfig::default().policy(policy))
    }

    #[test]
    fn a_large_fleet_is_filled_evenly_in_o1_picks() {
        // Beyond SCAN_LIMIT: two random choices. Holding one lease per endpoint, no
        // endpoint gets far more than its share (one) while others idle.
        let n = 1000;
        let b = with_policy(n, BalancePolicy::LeastLoaded);
        let held: Vec<Lease> = (0..n).map(|_| b.pick().unwrap()).collect();
        let eps = b.endpoints();
        let max = eps.iter().map(|e| e.in_flight()).max().unwrap();
        let idle = eps.iter().filter(|e| e.in_flight() == 0).count();
        assert!(max <= 4, "max in flight {max}");
        assert!(idle < n / 3, "{idle} endpoints idle");
        assert_eq!(b.total_in_flight.load(Ordering::Relaxed), n);
        drop(held);
        assert_eq!(b.total_in_flight.load(Ordering::Relaxed), 0);
        // A tenth of the fleet ejected and resting: never picked while others are fine.
        for e in eps.iter().take(n / 10) {
            for _ in 0..3 {
                b.record(e, Outcome::Failure);
            }
        }
        for _ in 0..5 * n {
            assert!(!b.pick().unwrap().endpoint().is_ejected());
        }
        for e in eps.iter().take(n / 10) {
            b.record(e, Outcome::Alive);
        }
        // An ejected endpoint is still found for its probe once rested.
        for _ in 0..3 {
            b.record(&eps[7], Outcome::Failure);
        }
        assert!(eps[7].is_ejected());
        b.advance(Duration::from_secs(11));
        let probed = (0..20 * n).any(|_| b.pick().unwrap().endpoint().base_url == "http://e7/v1");
        assert!(probed);
    }

    #[test]
    fn round_robin_and_random_ignore_load() {
        let b = with_policy(3, BalancePolicy::RoundRobin);
        let held: Vec<Lease> = (0..6).map(|_| b.pick().unwrap()).collect();
        let order: Vec<&str> = held
            .iter()
            .map(|l| l.endpoint().base_url.as_str())
            .collect();
        assert_eq!(order[..3], order[3..]);
        let mut first: Vec<&str> = order[..3].to_vec();
        first.sort_unstable();
        assert_eq!(first, ["http://e0/v1", "http://e1/v1", "http://e2/v1"]);

        let b = with_policy(4, BalancePolicy::Random);
        let _busy: Vec<Lease> = (0..50).map(|_| b.pick().unwrap()).collect();
        let counts: Vec<usize> = b.endpoints().iter().map(|e| e.in_flight()).collect();
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
        assert!(
            counts.iter().any(|&c| c != counts[0]),
            "random, not even: {counts:?}"
        );
    }

    #[test]
    fn affinity_keeps_a_key_on_one_replica_until_it_is_overloaded() {
        let b = with_policy(8, BalancePolicy::affinity(1.5));
        let key = affinity_key("principle", "prompt");
        let first = b.pick_for(Some(key)).unwrap();
        let home = first.endpoint().base_url.clone();
        drop(first);
        for _ in 0..20 {
            assert_eq!(b.pick_for(Some(key)).unwrap().endpoint().base_url, home);
        }
        // Other keys spread over the fleet.
        let homes: std::collections::HashSet<String> = (0..200)
            .map(|i| {
                let k = affinity_key("principle", &format!("prompt {i}"));
                b.pick_for(Some(k)).unwrap().endpoint().base_url.clone()
            })
            .collect();
        assert!(homes.len() >= 6, "{homes:?}");
        // Held requests on the home replica: past 1.5 × the average it overflows.
        let mut held = Vec::new();
        let mut elsewhere = 0;
        for _ in 0..16 {
            let l = b.pick_for(Some(key)).unwrap();
            if l.endpoint().base_url != home {
                elsewhere += 1;
            }
            held.push(l);
        }
        let on_home = held
            .iter()
            .filter(|l| l.endpoint().base_url == home)
            .count();
        assert!(
            elsewhere > 0 && on_home >= 2,
            "{on_home} at home, {elsewhere} elsewhere"
        );
        // Bound: ceil(1.5 × 16 / 8) = 3 in flight at home at most.
        assert!(on_home <= 3, "{on_home}");
    }

    #[test]
    fn affinity_moves_only_the_keys_of_a_replica_that_leaves() {
        let b = with_policy(10, BalancePolicy::affinity(100.0));
        let keys: Vec<u64> = (0..500)
            .map(|i| affinity_key("p", &i.to_string()))
            .collect();
        let home = |b: &Balancer, k: u64| b.pick_for(Some(k)).unwrap().endpoint().base_url.clone();
        let before: Vec<String> = keys.iter().map(|&k| home(&b, k)).collect();
        let mut rest = urls(10);
        rest.remove(3);
        b.set_endpoints(&rest);
        let moved = keys
            .iter()
            .zip(&before)
            .filter(|&(&k, old)| home(&b, k) != *old)
            .count();
        let owned_by_3 = before.iter().filter(|u| *u == "http://e3/v1").count();
        assert_eq!(moved, owned_by_3, "only e3's keys move");
        assert!(owned_by_3 > 0);
    }

    #[test]
    fn policies_parse_and_bad_names_say_what_is_expected() {
        assert_eq!(
            "random".parse::<BalancePolicy>().unwrap(),
            BalancePolicy::Random
        );
        assert_eq!(
            "round-robin".parse::<BalancePolicy>().unwrap(),
            BalancePolicy::RoundRobin
        );
        assert_eq!(
            "affinity".parse::<BalancePolicy>().unwrap(),
            BalancePolicy::affinity(BalancePolicy::DEFAULT_OVERLOAD_FACTOR)
        );
        for bad in ["affinity:0.5", "affinity:nan", "affinity:", "fastest"] {
            let e = bad.parse::<BalancePolicy>().unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("least-loaded"), "{e}");
        }
    }
}
