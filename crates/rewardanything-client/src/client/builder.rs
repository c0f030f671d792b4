//! [`ClientBuilder`]: fills and checks a `ClientConfig`, then builds a [`Client`]
//! without any network I/O.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use tokio::sync::{OnceCell, Semaphore};

use super::config::{ClientConfig, OWN_FIELDS, Sampling};
use super::{Client, Inner};
use crate::balance::{BalanceConfig, Balancer, EndpointUrl};
use crate::discover::{Discovery, DiscoverySettings, Entry, PinnedHttp, parse_entry};
use crate::error::BuildError;
use crate::parse::ParseOptions;
use crate::render::{JudgeRequest, Masking, RenderedPrompt};
use crate::retry::RetryPolicy;

/// Builds a [`Client`]; see [`Client::builder`].
///
/// ```
/// use rewardanything_client::Client;
/// let client = Client::builder()
///     .endpoint("http://127.0.0.1:8000/v1")
///     .model("RewardAnything-8B-v1")
///     .max_in_flight(64)
///     .build()
///     .unwrap();
/// assert_eq!(client.model(), Some("RewardAnything-8B-v1"));
/// ```
#[derive(Clone, Default)]
pub struct ClientBuilder {
    config: ClientConfig,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The API key, header values and URL credentials are secrets: never printed.
        let shown: Vec<String> = self
            .config
            .endpoints
            .iter()
            .map(|u| EndpointUrl::parse(u).map_or_else(|_| "<invalid URL>".into(), |u| u.shown()))
            .collect();
        f.debug_struct("ClientBuilder")
            .field("endpoints", &shown)
            .field(
                "api_key",
                &self.config.api_key.as_ref().map(|_| "<redacted>"),
            )
            .field("model", &self.config.model)
            .field("max_in_flight", &self.config.max_in_flight)
            .field("masking", &self.config.masking)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A builder from the environment ([`crate::env`]): the endpoints of `RA_ENDPOINT`
    /// (comma-separated), else the default `http://127.0.0.1:8000/v1`, and the model of
    /// `RA_MODEL` if set; `RA_API_KEY` is read at build time as by every builder. To let
    /// a flag override the variable, pass it through
    /// [`env::endpoints_or_default`](crate::env::endpoints_or_default) instead.
    ///
    /// ```
    /// // With RA_ENDPOINT unset (as in the doc tests):
    /// let c = rewardanything_client::ClientBuilder::from_env().unwrap().build().unwrap();
    /// assert_eq!(c.endpoint_urls(), [rewardanything_client::env::DEFAULT_ENDPOINT]);
    /// ```
    pub fn from_env() -> Result<Self, crate::env::EnvError> {
        let mut builder =
            Client::builder().endpoints(crate::env::endpoints_or_default(Vec::new())?);
        if let Some(model) = crate::env::model()? {
            builder = builder.model(model);
        }
        Ok(builder)
    }

    /// Adds an endpoint base URL such as `http://127.0.0.1:8000/v1`.
    ///
    /// ```
    /// let c = rewardanything_client::Client::builder().endpoint("http://127.0.0.1:8000/v1").build().unwrap();
    /// assert_eq!(c.endpoint_urls(), ["http://127.0.0.1:8000/v1"]);
    /// ```
    pub fn endpoint(mut self, base_url: impl Into<String>) -> Self {
        self.config.endpoints.push(base_url.into());
        self
    }

    /// Adds several endpoints.
    ///
    /// ```
    /// let c = rewardanything_client::Client::builder().endpoints(["http://a/v1", "http://b/v1"]).build().unwrap();
    /// assert_eq!(c.endpoint_urls().len(), 2);
    /// ```
    pub fn endpoints<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config
            .endpoints
            .extend(urls.into_iter().map(Into::into));
        self
    }

    /// The API key, sent as `Authorization: Bearer …`. Without it, `RA_API_KEY` is read
    /// at build time (and `OPENAI_API_KEY` only after
    /// [`openai_api_key_env`](Self::openai_api_key_env)). Never logged.
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().api_key("sk-local");
    /// assert!(!format!("{b:?}").contains("sk-local"));
    /// ```
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_key = Some(key.into());
        self
    }

    /// Also read `OPENAI_API_KEY` when no key is given and `RA_API_KEY` is unset. Off by
    /// default: it would send an OpenAI key to whatever endpoint is configured.
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().endpoint("http://h/v1").openai_api_key_env(true);
    /// assert!(b.build().is_ok());
    /// ```
    pub fn openai_api_key_env(mut self, yes: bool) -> Self {
        self.config.openai_api_key_env = yes;
        self
    }

    /// The served model name; default: the single model listed by `/v1/models`,
    /// discovered on [`Client::connect`] or the first judgment.
    ///
    /// ```
    /// let c = rewardanything_client::Client::builder().endpoint("http://h/v1").model("m").build().unwrap();
    /// assert_eq!(c.model(), Some("m"));
    /// ```
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.config.model = Some(model.into());
        self
    }

    /// Largest number of HTTP requests in flight across all calls (default 256).
    ///
    /// ```
    /// let e = rewardanything_client::Client::builder().endpoint("http://h/v1").max_in_flight(0).build().unwrap_err();
    /// assert!(e.to_string().contains("max_in_flight"));
    /// ```
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.config.max_in_flight = n;
        self
    }

    /// Timeout of one attempt (default 600 s: a thinking judgment under load can take
    /// minutes); above 0 and at most a year.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = rewardanything_client::Client::builder().endpoint("http://h/v1");
    /// assert!(b.clone().attempt_timeout(Duration::ZERO).build().is_err());
    /// assert!(b.attempt_timeout(Duration::from_secs(60)).build().is_ok());
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.config.attempt_timeout = timeout;
        self
    }

    /// Timeout to establish a connection (default 10 s; not applied to a caller's
    /// [`http_client`](Self::http_client)).
    ///
    /// ```
    /// let c = rewardanything_client::Client::builder().endpoint("http://h/v1")
    ///     .connect_timeout(std::time::Duration::from_secs(2)).build();
    /// assert!(c.is_ok());
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Deadline of a whole judgment over all attempts and waits (default none).
    ///
    /// ```
    /// let c = rewardanything_client::Client::builder().endpoint("http://h/v1")
    ///     .deadline(std::time::Duration::from_secs(900)).build();
    /// assert!(c.is_ok());
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = Some(deadline);
        self
    }

    /// The retry policy (default: 5 attempts, 0.5 s doubling to 30 s, full jitter; a
    /// `Retry-After` above `max_retry_after`, 120 s, fails at once).
    ///
    /// ```
    /// use rewardanything_client::{Client, RetryPolicy};
    /// let c = Client::builder().endpoint("http://h/v1").retry(RetryPolicy::default().max_attempts(3)).build();
    /// assert!(c.is_ok());
    /// ```
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// Sampling settings (checked at build: a finite temperature ≥ 0, `max_tokens` ≥ 1,
    /// `top_p` in `(0, 1]`).
    ///
    /// ```
    /// use rewardanything_client::{Client, Sampling};
    /// let b = Client::builder().endpoint("http://h/v1");
    /// assert!(b.clone().sampling(Sampling::default().max_tokens(8192)).build().is_ok());
    /// let e = b.sampling(Sampling::default().temperature(f64::NAN)).build().unwrap_err();
    /// assert!(e.to_string().contains("temperature"));
    /// ```
    pub fn sampling(mut self, sampling: Sampling) -> Self {
        self.config.sampling = sampling;
        self
    }

    /// Adds a body field to every request (e.g. `chat_template_kwargs`, vLLM's
    /// `structured_outputs`). Names the client sets itself (`model`, `messages`,
    /// `temperature`, `max_tokens`, `top_p`, `seed`, `stream`) are ignored here.
    ///
    /// ```
    /// let c = rewardanything_client::Client::builder().endpoint("http://h/v1")
    ///     .extra_body("chat_template_kwargs", serde_json::json!({"enable_thinking": true}))
    ///     .build();
    /// assert!(c.is_ok());
    /// ```
    pub fn extra_body(mut self, name: impl Into<String>, value: Value) -> Self {
        self.config.extra_body.insert(name.into(), value);
        self
    }

    /// A hook adding body fields computed from each rendered request.
    ///
    /// ```
    /// use rewardanything_client::Client;
    /// let c = Client::builder().endpoint("http://h/v1").body_hook(|_req, rendered| {
    ///     let mut m = serde_json::Map::new();
    ///     m.insert("n_names".into(), rendered.masked2real.as_ref().map_or(0, |m| m.len()).into());
    ///     m
    /// }).build();
    /// assert!(c.is_ok());
    /// ```
    pub fn body_hook<F>(mut self, hook: F) -> Self
    where
        F: Fn(&JudgeRequest, &RenderedPrompt) -> Map<String, Value> + Send + Sync + 'static,
    {
        self.config.body_hook = Some(Arc::new(hook));
        self
    }

    /// How masked requests are permuted (default [`Masking::Reference`]).
    ///
    /// ```
    /// use rewardanything_client::{Client, Masking};
    /// let b = Client::builder().masking(Masking::Seeded(7));
    /// assert!(format!("{b:?}").contains("Seeded(7)"));
    /// ```
    pub fn masking(mut self, masking: Masking) -> Self {
        self.config.masking = masking;
        self
    }

    /// Adds a header to every request (values are never logged; checked at build).
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().endpoint("http://h/v1");
    /// assert!(b.clone().header("x-team", "rl").build().is_ok());
    /// assert!(b.header("bad header", "x").build().is_err());
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.headers.push((name.into(), value.into()));
        self
    }

    /// At most `requests` attempts per `period` (like the reference's `request_limit` and
    /// `request_limit_period`), evenly spaced.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = rewardanything_client::Client::builder().endpoint("http://h/v1");
    /// assert!(b.clone().rate_limit(100, Duration::from_secs(60)).build().is_ok());
    /// assert!(b.rate_limit(0, Duration::from_secs(60)).build().is_err());
    /// ```
    pub fn rate_limit(mut self, requests: u32, period: Duration) -> Self {
        self.config.rate_limit = Some((requests, period));
        self
    }

    /// Re-asks once, with another seed (and temperature 0.6 when greedy), when a
    /// completion holds no valid judgment.
    ///
    /// ```
    /// let c = rewardanything_client::Client::builder().endpoint("http://h/v1").reask_malformed(true).build();
    /// assert!(c.is_ok());
    /// ```
    pub fn reask_malformed(mut self, yes: bool) -> Self {
        self.config.reask_malformed = yes;
        self
    }

    /// How strictly answers are validated. Default [`ParseOptions::strict`]: the answer
    /// must score exactly the request's responses, scores must lie in 1..=5 and the
    /// ranking must be a permutation of the names, else the judgment is an error
    /// (`incomplete`, `invalid_scores`, `invalid_ranking`) rather than a reward built on
    /// a partial or invented answer. A ranking that merely disagrees with the scores is
    /// kept and flagged.
    ///
    /// ```
    /// use rewardanything_client::{Client, ParseOptions};
    /// let c = Client::builder().endpoint("http://h/v1").parse_options(ParseOptions::default()).build(); // lenient
    /// assert!(c.is_ok());
    /// ```
    pub fn parse_options(mut self, options: ParseOptions) -> Self {
        self.config.parse_options = options;
        self
    }

    /// Largest response body read from a server (default 8 MiB). A larger body (an
    /// endless chunked stream, a huge `Content-Length`) is cut off while it is read and
    /// the attempt fails with a `bad_response` error that is not retried, so memory stays
    /// bounded whatever a server sends.
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().endpoint("http://h/v1");
    /// assert!(b.clone().max_response_bytes(1 << 20).build().is_ok());
    /// assert!(b.max_response_bytes(0).build().is_err());
    /// ```
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.config.max_response_bytes = bytes;
        self
    }

    /// Most answer bytes buffered at once across every request in flight (default 64
    /// MiB, [`DEFAULT_MAX_BUFFERED_RESPONSE_BYTES`](crate::DEFAULT_MAX_BUFFERED_RESPONSE_BYTES)). Each answer reserves its size (its
    /// `Content-Length`, else `min(max_response_bytes, this)`) before its first byte is
    /// read and keeps it until it is parsed; an answer that does not fit waits, holding
    /// nothing, first come first served, so waiting cannot deadlock. An answer larger
    /// than the whole budget fails with a `bad_response` error. The client's answer
    /// buffers then stay under this many bytes whatever the servers send and however
    /// many requests are in flight ([`Client::response_buffer`] shows them).
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().endpoint("http://h/v1");
    /// assert!(b.clone().max_buffered_response_bytes(16 << 20).build().is_ok());
    /// assert!(b.max_buffered_response_bytes(0).build().is_err());
    /// ```
    pub fn max_buffered_response_bytes(mut self, bytes: usize) -> Self {
        self.config.max_buffered_response_bytes = bytes;
        self
    }

    /// Endpoint ejection and back-pressure settings.
    ///
    /// ```
    /// use rewardanything_client::{BalanceConfig, Client};
    /// let c = Client::builder().endpoint("http://h/v1").balance(BalanceConfig::default().eject_after(5)).build();
    /// assert!(c.is_ok());
    /// ```
    pub fn balance(mut self, config: BalanceConfig) -> Self {
        self.config.balance = config;
        self
    }

    /// Sends through the caller's `reqwest::Client` (its TLS, proxy and pool settings)
    /// instead of one built here. The API key and headers are then sent per request, and
    /// [`connect_timeout`](Self::connect_timeout) is the caller's business.
    ///
    /// ```
    /// let http = reqwest::Client::new();
    /// let c = rewardanything_client::Client::builder().endpoint("http://h/v1").http_client(http).build();
    /// assert!(c.is_ok());
    /// ```
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.config.http = Some(client);
        self
    }

    /// Also follows an endpoints file (`ra-serve --endpoints-file`): re-read every
    /// [`discovery_interval`](Self::discovery_interval), its endpoints join the set.
    /// A missing, empty or half-written file keeps its last good endpoints.
    ///
    /// ```
    /// let c = rewardanything_client::Client::builder().endpoints_file("/run/ra/endpoints.json").build();
    /// assert!(c.is_ok());
    /// ```
    pub fn endpoints_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.endpoints_file = Some(path.into());
        self
    }

    /// Also follows every endpoints file in a directory (one per node on a shared file
    /// system: `ra-serve --endpoints-file DIR/$(hostname).json`): files appearing and
    /// disappearing add and drain their endpoints. Only `*.json` files not starting with
    /// a dot count, at most 1,024 of at most 64 KiB each; a partial or garbage file is
    /// ignored with a warning naming it.
    ///
    /// ```
    /// let c = rewardanything_client::Client::builder().endpoints_dir("/shared/ra-endpoints").build();
    /// assert!(c.is_ok());
    /// ```
    pub fn endpoints_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.endpoints_dir = Some(dir.into());
        self
    }

    /// How often `dns+` names are re-resolved and endpoints files re-read (default 1 s,
    /// at least 100 ms; a name whose resolver reports a shorter TTL is asked sooner). A
    /// new address or file takes traffic within one period.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = rewardanything_client::Client::builder().endpoint("dns+http://judge:8000/v1");
    /// assert!(b.discovery_interval(Duration::from_secs(5)).build().is_ok());
    /// ```
    pub fn discovery_interval(mut self, every: Duration) -> Self {
        self.config.discovery_interval = every;
        self
    }

    /// The resolver of `dns+` endpoints (default: [`SystemResolver`](crate::SystemResolver),
    /// the system's `getaddrinfo`).
    ///
    /// ```
    /// use rewardanything_client::SystemResolver;
    /// let b = rewardanything_client::Client::builder().endpoint("dns+http://judge:8000/v1");
    /// assert!(b.resolver(std::sync::Arc::new(SystemResolver)).build().is_ok());
    /// ```
    pub fn resolver(mut self, resolver: Arc<dyn crate::discover::Resolve>) -> Self {
        self.config.resolver = Some(resolver);
        self
    }

    /// Checks every setting and builds the client. No network I/O happens here: the
    /// model is discovered by [`Client::connect`] or on the first judgment, `dns+` names
    /// are resolved then too (a followed file or directory is read here once, then
    /// followed from the first call).
    ///
    /// ```
    /// let e = rewardanything_client::Client::builder().endpoint("ftp://h/v1").build().unwrap_err();
    /// assert!(e.to_string().contains("ftp"));
    /// ```
    pub fn build(self) -> Result<Client, BuildError> {
        let mut config = self.config;
        let followed = config.endpoints_file.is_some() || config.endpoints_dir.is_some();
        if config.endpoints.is_empty() && !followed {
            return Err(BuildError::NoEndpoint);
        }
        let entries = parse_entries(&config.endpoints)?;
        config.check().map_err(BuildError::Invalid)?;
        let headers = request_headers(&config)?;
        let own = config.http.is_none();
        let has_dns = entries.iter().any(|e| matches!(e, Entry::Dns(_)));
        if has_dns && !own {
            return Err(BuildError::Invalid(
                "dns+ endpoints need the client's own HTTP client (one per address, so \
                 that Host and TLS name the service): drop http_client()"
                    .into(),
            ));
        }
        let pinned_http: Option<PinnedHttp> = own.then(|| {
            let settings = HttpSettings::of(&config, headers.clone());
            Arc::new(move |host: &str, addr: std::net::SocketAddr| {
                settings.client(Some((host, addr)))
            }) as PinnedHttp
        });
        let (http, per_request_headers) = match config.http.take() {
            Some(http) => (http, headers),
            None => (
                HttpSettings::of(&config, headers)
                    .client(None)
                    .map_err(BuildError::Http)?,
                HeaderMap::new(),
            ),
        };
        let rate_limiter = rate_limiter(config.rate_limit)?;
        config
            .extra_body
            .retain(|k, _| !OWN_FIELDS.contains(&k.as_str()));
        let balancer = Arc::new(Balancer::new(&[], config.balance.clone()));
        balancer.set_endpoints(&Discovery::initial_targets(&entries));
        let discovery = Discovery::new(DiscoverySettings {
            entries,
            file: config.endpoints_file.clone(),
            dir: config.endpoints_dir.clone(),
            resolver: config.resolver.clone(),
            interval: config.discovery_interval,
            pinned_http,
            model: config.model.clone(),
        });
        discovery.seed(&balancer);
        let inner = Inner {
            http,
            headers: per_request_headers,
            balancer,
            discovery: Arc::new(discovery),
            discovered_model: OnceCell::new(),
            discovery_failure: std::sync::Mutex::new(None),
            in_flight: Semaphore::new(config.max_in_flight),
            response_budget: super::budget::ResponseBudget::new(config.max_buffered_response_bytes),
            rate_limiter,
            config,
        };
        Ok(Client {
            inner: Arc::new(inner),
        })
    }
}

/// Parses every endpoint entry (a URL or a `dns+` name); the first bad one is the error.
pub(crate) fn parse_entries(urls: &[String]) -> Result<Vec<Entry>, BuildError> {
    urls.iter()
        .map(|url| {
            parse_entry(url).map_err(|reason| BuildError::InvalidEndpoint {
                // The URL as given may hold a password.
                url: reqwest::Url::parse(url.trim())
                    .map(|u| crate::wire::redact_url(&u))
                    .unwrap_or_else(|_| crate::wire::redact_unparsed(url)),
                reason,
            })
        })
        .collect()
}

/// Parses plain endpoint URLs (no `dns+`); the first bad one is the error.
pub(crate) fn parse_endpoints(urls: &[String]) -> Result<Vec<EndpointUrl>, BuildError> {
    urls.iter()
        .map(|url| {
            EndpointUrl::parse(url).map_err(|reason| BuildError::InvalidEndpoint {
                url: reqwest::Url::parse(url)
                    .map(|u| crate::wire::redact_url(&u))
                    .unwrap_or_else(|_| crate::wire::redact_unparsed(url)),
                reason,
            })
        })
        .collect()
}

/// `Content-Type`, `Authorization` and the caller's headers, values marked sensitive.
fn request_headers(config: &ClientConfig) -> Result<HeaderMap, BuildError> {
    let api_key = config
        .api_key
        .clone()
        .filter(|k| !k.is_empty())
        .or_else(crate::env::api_key)
        .or_else(|| {
            config
                .openai_api_key_env
                .then(crate::env::openai_api_key)
                .flatten()
        });
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(key) = &api_key {
        let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| BuildError::InvalidHeader("Authorization".into()))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    for (name, value) in &config.headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| BuildError::InvalidHeader(name.clone()))?;
        let mut header_value =
            HeaderValue::from_str(value).map_err(|_| BuildError::InvalidHeader(name.clone()))?;
        header_value.set_sensitive(true);
        headers.insert(header_name, header_value);
    }
    Ok(headers)
}

/// What the client's own HTTP clients are built from (the shared one, and one per
/// address of a `dns+` name).
struct HttpSettings {
    headers: HeaderMap,
    connect_timeout: Duration,
    max_idle: usize,
}

impl HttpSettings {
    fn of(config: &ClientConfig, headers: HeaderMap) -> Self {
        HttpSettings {
            headers,
            connect_timeout: config.connect_timeout,
            max_idle: config.max_in_flight,
        }
    }

    /// A client; `pin` connects every request for that host to that address (the URL
    /// keeps the name: Host header and TLS SNI).
    fn client(
        &self,
        pin: Option<(&str, std::net::SocketAddr)>,
    ) -> Result<reqwest::Client, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            // Sent with every request: one default instead of one copy per request.
            .default_headers(self.headers.clone())
            .connect_timeout(self.connect_timeout)
            .pool_max_idle_per_host(self.max_idle)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            // An inference endpoint does not redirect; following one would resend the body.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rewardanything-rs/", env!("CARGO_PKG_VERSION")));
        if let Some((host, addr)) = pin {
            builder = builder.resolve(host, addr);
        }
        builder.build()
    }
}

pub(crate) type DirectLimiter = governor::RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::DefaultClock,
>;

fn rate_limiter(limit: Option<(u32, Duration)>) -> Result<Option<DirectLimiter>, BuildError> {
    let Some((requests, period)) = limit else {
        return Ok(None);
    };
    let burst = NonZeroU32::new(requests)
        .ok_or_else(|| BuildError::Invalid("rate limit of 0 requests".into()))?;
    // Evenly spaced, no burst: any `requests + 1` consecutive attempts span at least
    // `period`, which is what "N per period" promises a shared server.
    let per_request = period / burst.get();
    let quota = governor::Quota::with_period(per_request)
        .ok_or_else(|| BuildError::Invalid("rate limit period of 0".into()))?;
    Ok(Some(governor::RateLimiter::direct(quota)))
}
