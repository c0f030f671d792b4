//! Spreading requests over several endpoints.
//!
//! Each request goes to the healthy endpoint with the fewest requests in flight (ties go
//! round-robin): an exact scan up to [`SCAN_LIMIT`] endpoints, the least loaded of
//! [`SAMPLES`] random ones beyond (O(1) per pick, so a fleet of thousands costs no more
//! per request than a handful). [`BalancePolicy`] also offers, for comparison,
//! round-robin and random. An endpoint is ejected after `eject_after` consecutive connect errors or
//! 5xx answers and gets one probe request after `cooldown`; a success brings it back. The
//! last healthy endpoint is never ejected. A 429 is back-pressure, not a failure: the
//! endpoint is only avoided for a moment (its `Retry-After`, else a short pause).
//!
//! The set of endpoints can be replaced while requests run (e.g. when `ra-serve`'s
//! endpoints file changes or a `dns+` name resolves to other addresses); endpoints that
//! stay keep their counters, removed ones are drained (no new requests; those in flight
//! finish on their lease).

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
    /// For an address a `dns+` entry resolved to: the address and the HTTP client that
    /// connects there (the URL keeps the name, so Host and TLS SNI name it).
    pub pinned: Option<Pinned>,
}

/// An address a `dns+` entry resolved to, with the HTTP client pinned to it.
#[derive(Debug, Clone)]
pub(crate) struct Pinned {
    /// The address the name resolved to.
    pub addr: std::net::IpAddr,
    /// Connects every request to `addr`, whatever the URL's host.
    pub http: reqwest::Client,
}

/// One member of an endpoint set: a base URL, pinned to one address for a `dns+` entry.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The base URL (for a `dns+` entry, with its name as host).
    pub url: EndpointUrl,
    /// The resolved address and its client, for a `dns+` entry.
    pub pinned: Option<Pinned>,
}

impl Target {
    /// Identity in a set: the URL, and the address for a pinned one.
    pub fn key(&self) -> (&str, Option<std::net::IpAddr>) {
        (self.url.as_str(), self.pinned.as_ref().map(|p| p.addr))
    }
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

    /// The URL's host as a name (`None` for an IP address or no host).
    pub fn domain(&self) -> Option<&str> {
        self.parsed.domain()
    }
}

impl Endpoint {
    fn new(url: &EndpointUrl) -> Self {
        Self::from_target(&Target {
            url: url.clone(),
            pinned: None,
        })
    }

    fn from_target(target: &Target) -> Self {
        let url = &target.url;
        let shown = match &target.pinned {
            Some(p) => format!("{} [{}]", url.shown(), p.addr),
            None => url.shown(),
        };
        Endpoint {
            pinned: target.pinned.clone(),
            url: url.clone(),
            shown,
            base_url: url.base.clone(),
            completions_url: url.completions.clone(),
            in_flight: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            avoid_until_ms: AtomicU64::new(0),
            ejected: std::sync::atomic::AtomicBool::new(false),
            served: AtomicU64::new(0),
        }
    }

    /// Identity in a set (see [`Target::key`]).
    pub(crate) fn key(&self) -> (&str, Option<std::net::IpAddr>) {
        (self.base_url.as_str(), self.pinned.as_ref().map(|p| p.addr))
    }

    /// The HTTP client to send with: the pinned one, else the client's.
    pub(crate) fn http<'a>(&'a self, default: &'a reqwest::Client) -> &'a reqwest::Client {
        self.pinned.as_ref().map_or(default, |p| &p.http)
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
/// ([`BalanceConfig::policy`]). Parses from `least-loaded`, `round-robin` and `random`.
///
/// A prefix-affinity choice (bounded-load consistent hashing on principle and prompt, so
/// that calls sharing a prefix meet vLLM's prefix cache) was measured in the fleet
/// simulation and did not win (README, "Scaling out"); it is not offered.
///
/// ```
/// use rewardanything_client::BalancePolicy;
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
    /// Each endpoint in turn, whatever its load (what OpenRLHF does across several
    /// `--remote_rm_url`s); for comparison: a slow replica holds everyone back.
    RoundRobin,
    /// A uniformly random endpoint (the reference's choice); for comparison.
    Random,
}

/// A balance policy name that is not one of those [`BalancePolicy`] parses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown balance policy {0:?} (expected least-loaded, round-robin or random)")]
pub struct ParsePolicyError(String);

impl FromStr for BalancePolicy {
    type Err = ParsePolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "least-loaded" => Ok(BalancePolicy::LeastLoaded),
            "round-robin" => Ok(BalancePolicy::RoundRobin),
            "random" => Ok(BalancePolicy::Random),
            _ => Err(ParsePolicyError(s.to_string())),
        }
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
    /// let c = BalanceConfig::default().policy(BalancePolicy::RoundRobin);
    /// assert_eq!(c.policy, BalancePolicy::RoundRobin);
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
    /// requests to removed endpoints finish normally (their lease holds the endpoint).
    pub fn set_endpoints(&self, targets: &[Target]) {
        let old = self.endpoints();
        // By key, so a set of thousands is not matched in quadratic time.
        let by_key: std::collections::HashMap<_, _> =
            old.iter().map(|e| (e.key(), Arc::clone(e))).collect();
        let new: Vec<Arc<Endpoint>> = targets
            .iter()
            .map(|t| {
                by_key
                    .get(&t.key())
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Endpoint::from_target(t)))
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
    pub fn pick(&self) -> Option<Lease> {
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
/// takes the least loaded of [`SAMPLES`] random ones, which stays O(1) per pick.
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
/// else the best of [`SAMPLES`] random ones. Ties go round-robin (`tick`) when scanning.
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
    // SAMPLES random endpoints (repeats possible, harmless), the best kept; then, while
    // the best is ejected or paused, a few more draws (bounded: a pick stays O(1) even
    // when most of the fleet is down).
    let mut best: Option<((u8, usize), usize)> = None;
    let mut draw = tick as u64;
    for k in 0..SAMPLES + MORE_DRAWS {
        if k >= SAMPLES && best.is_some_and(|((c, _), _)| c <= 1) {
            break;
        }
        let i = random_index(draw as usize, n);
        draw = draw.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let r = rank(i);
        if best.is_none_or(|(b, _)| r < b) {
            best = Some((r, i));
        }
    }
    best.map(|((c, _), i)| (c, i))
}

/// Endpoints sampled per pick beyond [`SCAN_LIMIT`]: with 2 (the classic "power of two
/// choices") the fleet simulation used 91 % of 256 replicas' capacity at 2 slots each,
/// where an exact scan fills every slot; 8 samples cost a few loads more and come close.
const SAMPLES: usize = 8;

/// Extra random draws when every sample is ejected or paused.
const MORE_DRAWS: usize = 16;

/// A well-mixed index in `0..n` from a counter (splitmix64): no lock, no shared RNG.
fn random_index(tick: usize, n: usize) -> usize {
    let z = mix((tick as u64).wrapping_add(0x9E37_79B9_7F4A_7C15));
    // Multiply-shift maps a u64 onto 0..n without the modulo's bias.
    ((u128::from(z) * n as u128) >> 64) as usize
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An endpoint chosen for one attempt; counted in flight while it lives.
#[derive(Debug)]
pub(crate) struct Lease {
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
        // Beyond SCAN_LIMIT: sampled choices. Holding one lease per endpoint, no
        // endpoint gets far more than its share (one) while others idle.
        let n = 1000;
        let b = with_policy(n, BalancePolicy::LeastLoaded);
        let held: Vec<Lease> = (0..n).map(|_| b.pick().unwrap()).collect();
        let eps = b.endpoints();
        let max = eps.iter().map(|e| e.in_flight()).max().unwrap();
        let idle = eps.iter().filter(|e| e.in_flight() == 0).count();
        assert!(max <= 4, "max in flight {max}");
        assert!(idle < n / 3, "{idle} endpoints idle");
        drop(held);
        assert!(eps.iter().all(|e| e.in_flight() == 0));
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
    fn policies_parse_and_bad_names_say_what_is_expected() {
        assert_eq!(
            "random".parse::<BalancePolicy>().unwrap(),
            BalancePolicy::Random
        );
        assert_eq!(
            "round-robin".parse::<BalancePolicy>().unwrap(),
            BalancePolicy::RoundRobin
        );
        for bad in ["affinity", "fastest", ""] {
            let e = bad.parse::<BalancePolicy>().unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("least-loaded"), "{e}");
        }
    }
}
