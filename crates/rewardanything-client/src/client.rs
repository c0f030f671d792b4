//! The async client: renders a request, sends it to an OpenAI-compatible endpoint (vLLM,
//! llama.cpp, SGLang), retries what is transient and parses the answer.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::balance::{BalanceConfig, Balancer, Outcome};
use crate::error::{BuildError, JudgeError, JudgeErrorKind};
use crate::judgment::Judgment;
use crate::parse::{Completion, ParseOptions, parse_completion_with};
use crate::render::{JudgeRequest, Masking, Message, RenderedPrompt, render};
use crate::retry::{ContextOverflow, RetryPolicy, is_transient_status};

/// Adds body fields computed from one rendered request (e.g. a GBNF `grammar` over its
/// masked names for llama.cpp).
pub type BodyHook =
    Arc<dyn Fn(&JudgeRequest, &RenderedPrompt) -> Map<String, Value> + Send + Sync + 'static>;

/// Body fields the client sets itself (or must not be set: a streamed answer is not
/// read); extra fields with these names are ignored.
const OWN_FIELDS: [&str; 7] = [
    "model",
    "messages",
    "temperature",
    "max_tokens",
    "top_p",
    "seed",
    "stream",
];

/// Default cap on a response body: a judgment with a long think block is tens of KB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 << 20;

/// Temperature of a re-ask of a malformed answer when sampling is greedy.
const REASK_TEMPERATURE: f64 = 0.6;

/// Sampling settings sent with every request.
///
/// ```
/// let s = rewardanything_client::Sampling::default();
/// assert_eq!((s.temperature, s.max_tokens), (0.0, 4096));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Default 0 (greedy), as the reference's example config.
    pub temperature: f64,
    /// Default 4,096: the thinking needs room; a small value truncates it (quirk S3).
    pub max_tokens: u32,
    /// Optional nucleus sampling.
    pub top_p: Option<f64>,
    /// Optional sampling seed.
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            max_tokens: 4096,
            top_p: None,
            seed: None,
        }
    }
}

/// Token counts the server reported for one completion.
///
/// ```
/// let u: rewardanything_client::Usage =
///     serde_json::from_str(r#"{"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}"#).unwrap();
/// assert_eq!(u.completion_tokens, 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u64,
}

/// A judgment with what it took to get it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    /// The parsed judgment; scores in the caller's response order.
    pub judgment: Judgment,
    /// HTTP attempts made.
    pub attempts: u32,
    /// Wall time from the first attempt to the parsed answer.
    pub latency: Duration,
    /// Token counts of the successful completion, when the server reported them.
    pub usage: Option<Usage>,
    /// The base URL that answered.
    pub endpoint: String,
}

/// Builds a [`Client`]; see [`Client::builder`].
#[derive(Clone)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    api_key: Option<String>,
    model: Option<String>,
    max_in_flight: usize,
    attempt_timeout: Duration,
    connect_timeout: Duration,
    deadline: Option<Duration>,
    retry: RetryPolicy,
    sampling: Sampling,
    extra_body: Map<String, Value>,
    body_hook: Option<BodyHook>,
    masking: Masking,
    headers: Vec<(String, String)>,
    rate_limit: Option<(u32, Duration)>,
    reask_malformed: bool,
    balance: BalanceConfig,
    parse_options: ParseOptions,
    max_response_bytes: usize,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The API key and header values are secrets: never printed.
        f.debug_struct("ClientBuilder")
            .field("endpoints", &self.endpoints)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("max_in_flight", &self.max_in_flight)
            .field("masking", &self.masking)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            endpoints: Vec::new(),
            api_key: None,
            model: None,
            max_in_flight: 256,
            attempt_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            deadline: None,
            retry: RetryPolicy::default(),
            sampling: Sampling::default(),
            extra_body: Map::new(),
            body_hook: None,
            masking: Masking::Reference,
            headers: Vec::new(),
            rate_limit: None,
            reask_malformed: false,
            balance: BalanceConfig::default(),
            parse_options: ParseOptions::strict(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl ClientBuilder {
    /// Adds an endpoint base URL such as `http://127.0.0.1:8000/v1`.
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().endpoint("http://127.0.0.1:8000/v1");
    /// ```
    pub fn endpoint(mut self, base_url: impl Into<String>) -> Self {
        self.endpoints.push(base_url.into());
        self
    }

    /// Adds several endpoints.
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().endpoints(["http://a/v1", "http://b/v1"]);
    /// ```
    pub fn endpoints<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints.extend(urls.into_iter().map(Into::into));
        self
    }

    /// The API key, sent as `Authorization: Bearer …`. Without it, `RA_API_KEY`, then
    /// `OPENAI_API_KEY` are read at build time. Never logged.
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().api_key("sk-local");
    /// assert!(!format!("{b:?}").contains("sk-local"));
    /// ```
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The served model name; default: the single model listed by `/v1/models`.
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().model("RewardAnything-8B-v1");
    /// ```
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Largest number of HTTP requests in flight across all calls (default 256).
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().max_in_flight(64);
    /// ```
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Timeout of one attempt (default 600 s: a thinking judgment under load can take
    /// minutes).
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().attempt_timeout(std::time::Duration::from_secs(60));
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Timeout to establish a connection (default 10 s).
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().connect_timeout(std::time::Duration::from_secs(2));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Deadline of a whole judgment over all attempts and waits (default none).
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().deadline(std::time::Duration::from_secs(900));
    /// ```
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The retry policy (default: 5 attempts, 0.5 s doubling to 30 s, full jitter).
    ///
    /// ```
    /// use rewardanything_client::{Client, RetryPolicy};
    /// let b = Client::builder().retry(RetryPolicy::default().max_attempts(3));
    /// ```
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sampling settings.
    ///
    /// ```
    /// use rewardanything_client::{Client, Sampling};
    /// let b = Client::builder().sampling(Sampling { max_tokens: 8192, ..Sampling::default() });
    /// ```
    pub fn sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }

    /// Adds a body field to every request (e.g. `chat_template_kwargs`, vLLM's
    /// `structured_outputs`). Names the client sets itself (`model`, `messages`,
    /// `temperature`, `max_tokens`, `top_p`, `seed`) are ignored here.
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder()
    ///     .extra_body("chat_template_kwargs", serde_json::json!({"enable_thinking": true}));
    /// ```
    pub fn extra_body(mut self, name: impl Into<String>, value: Value) -> Self {
        self.extra_body.insert(name.into(), value);
        self
    }

    /// A hook adding body fields computed from each rendered request.
    ///
    /// ```
    /// use rewardanything_client::Client;
    /// let b = Client::builder().body_hook(|_req, rendered| {
    ///     let mut m = serde_json::Map::new();
    ///     m.insert("n_names".into(), rendered.masked2real.as_ref().map_or(0, |m| m.len()).into());
    ///     m
    /// });
    /// ```
    pub fn body_hook<F>(mut self, hook: F) -> Self
    where
        F: Fn(&JudgeRequest, &RenderedPrompt) -> Map<String, Value> + Send + Sync + 'static,
    {
        self.body_hook = Some(Arc::new(hook));
        self
    }

    /// How masked requests are permuted (default [`Masking::Reference`]).
    ///
    /// ```
    /// use rewardanything_client::{Client, Masking};
    /// let b = Client::builder().masking(Masking::Seeded(7));
    /// ```
    pub fn masking(mut self, masking: Masking) -> Self {
        self.masking = masking;
        self
    }

    /// Adds a header to every request (values are never logged).
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().header("x-team", "rl");
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// At most `requests` attempts per `period` (like the reference's `request_limit` and
    /// `request_limit_period`).
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().rate_limit(100, std::time::Duration::from_secs(60));
    /// ```
    pub fn rate_limit(mut self, requests: u32, period: Duration) -> Self {
        self.rate_limit = Some((requests, period));
        self
    }

    /// Re-asks once, with another seed, when a completion holds no valid judgment.
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().reask_malformed(true);
    /// ```
    pub fn reask_malformed(mut self, yes: bool) -> Self {
        self.reask_malformed = yes;
        self
    }

    /// How strictly answers are validated. Default [`ParseOptions::strict`]: every
    /// response must be scored, scores must lie in 1..=5 and the ranking must be a
    /// permutation of the names, else the judgment is an error (`incomplete`,
    /// `invalid_scores`, `invalid_ranking`) rather than a reward built on a partial
    /// answer. A ranking that merely disagrees with the scores is kept and flagged.
    ///
    /// ```
    /// use rewardanything_client::{Client, parse::ParseOptions};
    /// let b = Client::builder().parse_options(ParseOptions::default()); // lenient
    /// ```
    pub fn parse_options(mut self, options: ParseOptions) -> Self {
        self.parse_options = options;
        self
    }

    /// Largest response body read from a server (default 8 MiB). A larger body (an
    /// endless chunked stream, a huge `Content-Length`) is cut off while it is read and
    /// the attempt fails with a `bad_response` error that is not retried, so memory stays
    /// bounded whatever a server sends.
    ///
    /// ```
    /// let b = rewardanything_client::Client::builder().max_response_bytes(1 << 20);
    /// ```
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Endpoint ejection and back-pressure settings.
    ///
    /// ```
    /// use rewardanything_client::{Client, balance::BalanceConfig};
    /// let b = Client::builder().balance(BalanceConfig { eject_after: 5, ..BalanceConfig::default() });
    /// ```
    pub fn balance(mut self, config: BalanceConfig) -> Self {
        self.balance = config;
        self
    }

    /// Builds the client. Without a model name it asks the first endpoint's `/v1/models`
    /// (retrying transient failures by the retry policy) and uses the single model served.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), rewardanything_client::error::BuildError> {
    /// let client = rewardanything_client::Client::builder()
    ///     .endpoint("http://127.0.0.1:8000/v1")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn build(self) -> Result<Client, BuildError> {
        if self.endpoints.is_empty() {
            return Err(BuildError::NoEndpoint);
        }
        for url in &self.endpoints {
            let parsed = reqwest::Url::parse(url).map_err(|e| BuildError::InvalidEndpoint {
                url: url.clone(),
                reason: e.to_string(),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(BuildError::InvalidEndpoint {
                    url: url.clone(),
                    reason: "scheme must be http or https".into(),
                });
            }
        }
        if self.max_in_flight == 0 {
            return Err(BuildError::Invalid(
                "max_in_flight must be at least 1".into(),
            ));
        }
        let from_env = |name: &str| std::env::var(name).ok().filter(|k| !k.is_empty());
        let api_key = self
            .api_key
            .clone()
            .filter(|k| !k.is_empty())
            .or_else(|| from_env("RA_API_KEY"))
            .or_else(|| from_env("OPENAI_API_KEY"));
        let mut headers = HeaderMap::new();
        // Every request is a JSON body: one default header instead of one per request.
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| BuildError::InvalidHeader("Authorization".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        for (name, value) in &self.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| BuildError::InvalidHeader(name.clone()))?;
            let mut header_value = HeaderValue::from_str(value)
                .map_err(|_| BuildError::InvalidHeader(name.clone()))?;
            header_value.set_sensitive(true);
            headers.insert(header_name, header_value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(self.connect_timeout)
            .pool_max_idle_per_host(self.max_in_flight)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            // An inference endpoint does not redirect; following one would resend the body.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rewardanything-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BuildError::Http(e.to_string()))?;

        let rate_limiter = match self.rate_limit {
            None => None,
            Some((requests, period)) => {
                let burst = NonZeroU32::new(requests)
                    .ok_or_else(|| BuildError::Invalid("rate limit of 0 requests".into()))?;
                // Evenly spaced, no burst: any `requests + 1` consecutive attempts span at
                // least `period`, which is what "N per period" promises a shared server.
                let per_request = period / burst.get();
                let quota = governor::Quota::with_period(per_request)
                    .ok_or_else(|| BuildError::Invalid("rate limit period of 0".into()))?;
                Some(governor::RateLimiter::direct(quota))
            }
        };

        let extra_body = self
            .extra_body
            .into_iter()
            .filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str()))
            .collect();
        let mut inner = Inner {
            http,
            balancer: Balancer::new(&self.endpoints, self.balance),
            model: String::new(),
            in_flight: Semaphore::new(self.max_in_flight),
            max_in_flight: self.max_in_flight,
            attempt_timeout: self.attempt_timeout,
            deadline: self.deadline,
            retry: self.retry,
            sampling: self.sampling,
            extra_body,
            body_hook: self.body_hook,
            masking: self.masking,
            rate_limiter,
            reask_malformed: self.reask_malformed,
            parse_options: self.parse_options,
            max_response_bytes: self.max_response_bytes,
        };
        inner.model = match self.model {
            Some(m) => m,
            None => {
                let (url, models) = inner.first_answering_endpoint().await?;
                match models.as_slice() {
                    [one] => one.clone(),
                    _ => return Err(BuildError::AmbiguousModel { url, models }),
                }
            }
        };
        Ok(Client {
            inner: Arc::new(inner),
        })
    }
}

type DirectLimiter = governor::RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::DefaultClock,
>;

struct Inner {
    http: reqwest::Client,
    balancer: Balancer,
    model: String,
    in_flight: Semaphore,
    max_in_flight: usize,
    attempt_timeout: Duration,
    deadline: Option<Duration>,
    retry: RetryPolicy,
    sampling: Sampling,
    extra_body: Map<String, Value>,
    body_hook: Option<BodyHook>,
    masking: Masking,
    rate_limiter: Option<DirectLimiter>,
    reask_malformed: bool,
    parse_options: ParseOptions,
    max_response_bytes: usize,
}

/// A RewardAnything client; cheap to clone (one connection pool shared by all clones).
///
/// ```no_run
/// use rewardanything_client::{Client, JudgeRequest};
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder().endpoint("http://127.0.0.1:8000/v1").build().await?;
/// let request = JudgeRequest::new("Prefer concise answers.", "What is 2+2?")
///     .response("terse", "4")
///     .response("verbose", "Two plus two is four, because…");
/// let judgment = client.judge(&request).await?;
/// println!("{:?} best: {}", judgment.scores, judgment.ranking[0]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("model", &self.inner.model)
            .field("endpoints", &self.endpoint_urls())
            .finish_non_exhaustive()
    }
}

/// What one attempt produced, before parsing.
struct Answer {
    content: String,
    reasoning: Option<String>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl Answer {
    fn completion(&self) -> Completion<'_> {
        Completion {
            content: &self.content,
            reasoning: self.reasoning.as_deref(),
            finish_reason: self.finish_reason.as_deref(),
        }
    }
}

/// Why one attempt failed.
enum AttemptError {
    Transport(String),
    Timeout,
    Http {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    BadResponse(String),
}

impl Client {
    /// A builder with the defaults listed on its methods.
    ///
    /// ```
    /// let builder = rewardanything_client::Client::builder();
    /// ```
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The served model name in use.
    pub fn model(&self) -> &str {
        &self.inner.model
    }

    /// The current endpoint base URLs.
    pub fn endpoint_urls(&self) -> Vec<String> {
        self.inner
            .balancer
            .endpoints()
            .iter()
            .map(|e| e.base_url.clone())
            .collect()
    }

    /// Replaces the endpoints while running (e.g. replicas restarted by `ra-serve`).
    /// Requests in flight finish where they are.
    pub fn set_endpoints(&self, urls: &[String]) {
        self.inner.balancer.set_endpoints(urls);
    }

    /// The balancer, for its per-endpoint counters.
    pub fn balancer(&self) -> &Balancer {
        &self.inner.balancer
    }

    /// Lists the models an endpoint serves (`GET {base}/models`), one attempt.
    pub async fn list_models(&self, base_url: &str) -> Result<Vec<String>, BuildError> {
        self.inner.list_models(base_url).await
    }

    /// A startup reachability check: the first endpoint that lists its models, trying each
    /// in turn and retrying transient failures (connect errors, timeouts, 429, 5xx) by the
    /// retry policy. Returns that endpoint and its models.
    pub async fn first_answering_endpoint(&self) -> Result<(String, Vec<String>), BuildError> {
        self.inner.first_answering_endpoint().await
    }

    /// Judges one request; scores come back keyed and ordered by the caller's names.
    pub async fn judge(&self, request: &JudgeRequest) -> Result<Judgment, JudgeError> {
        self.judge_detailed(request).await.map(|j| j.judgment)
    }

    /// Like [`judge`](Self::judge), with attempts, latency, token usage and endpoint.
    pub async fn judge_detailed(&self, request: &JudgeRequest) -> Result<Judged, JudgeError> {
        use tracing::field::Empty;
        let span = tracing::debug_span!(
            "judge",
            responses = request.responses.len(),
            endpoint = Empty,
            attempts = Empty,
            latency_ms = Empty,
            prompt_tokens = Empty,
            completion_tokens = Empty,
            error = Empty,
        );
        let result = self.inner.judge(request).instrument(span.clone()).await;
        match &result {
            Ok(j) => {
                span.record("endpoint", j.endpoint.as_str());
                span.record("attempts", j.attempts);
                span.record("latency_ms", j.latency.as_millis() as u64);
                if let Some(u) = j.usage {
                    span.record("prompt_tokens", u.prompt_tokens);
                    span.record("completion_tokens", u.completion_tokens);
                }
            }
            Err(e) => {
                span.record("attempts", e.attempts);
                span.record("error", e.kind_str());
            }
        }
        result
    }

    /// Judges many requests concurrently (up to the in-flight limit) and yields
    /// `(index, result)` as each finishes. Exactly one item per request. Memory stays
    /// bounded by the in-flight limit; dropping the stream cancels outstanding work.
    ///
    /// ```no_run
    /// use futures::StreamExt;
    /// # async fn f(client: rewardanything_client::Client, reqs: Vec<rewardanything_client::JudgeRequest>) {
    /// let mut results = client.judge_many(reqs);
    /// while let Some((index, result)) = results.next().await {
    ///     println!("{index}: {:?}", result.map(|j| j.ranking));
    /// }
    /// # }
    /// ```
    pub fn judge_many<I>(
        &self,
        requests: I,
    ) -> impl Stream<Item = (usize, Result<Judgment, JudgeError>)> + Send + 'static
    where
        I: IntoIterator<Item = JudgeRequest>,
        I::IntoIter: Send + 'static,
    {
        self.judge_stream(futures::stream::iter(requests))
    }

    /// [`judge_many`](Self::judge_many) for a `Stream` of requests.
    pub fn judge_stream<S>(
        &self,
        requests: S,
    ) -> impl Stream<Item = (usize, Result<Judgment, JudgeError>)> + Send + 'static
    where
        S: Stream<Item = JudgeRequest> + Send + 'static,
    {
        let client = self.clone();
        let limit = self.inner.max_in_flight;
        requests
            .enumerate()
            .map(move |(i, request)| {
                let client = client.clone();
                async move { (i, client.judge(&request).await) }
            })
            .buffer_unordered(limit)
    }

    /// [`judge_many_ordered`](Self::judge_many_ordered) for a `Stream` of requests.
    pub fn judge_stream_ordered<S>(
        &self,
        requests: S,
        window: Option<usize>,
    ) -> impl Stream<Item = Result<Judgment, JudgeError>> + Send + 'static
    where
        S: Stream<Item = JudgeRequest> + Send + 'static,
    {
        let client = self.clone();
        let window = window.unwrap_or(self.inner.max_in_flight * 2).max(1);
        requests
            .map(move |request| {
                let client = client.clone();
                async move { client.judge(&request).await }
            })
            .buffered(window)
    }

    /// Judges many requests concurrently and yields results in input order. At most
    /// `window` requests are in flight or waiting to be yielded (default: twice the
    /// in-flight limit when `None`), so memory is bounded; a slow request holds back
    /// later results until it finishes or times out.
    ///
    /// ```no_run
    /// use futures::StreamExt;
    /// # async fn f(client: rewardanything_client::Client, reqs: Vec<rewardanything_client::JudgeRequest>) {
    /// let results: Vec<_> = client.judge_many_ordered(reqs, None).collect().await;
    /// # }
    /// ```
    pub fn judge_many_ordered<I>(
        &self,
        requests: I,
        window: Option<usize>,
    ) -> impl Stream<Item = Result<Judgment, JudgeError>> + Send + 'static
    where
        I: IntoIterator<Item = JudgeRequest>,
        I::IntoIter: Send + 'static,
    {
        self.judge_stream_ordered(futures::stream::iter(requests), window)
    }
}

impl Inner {
    async fn list_models(&self, base_url: &str) -> Result<Vec<String>, BuildError> {
        self.list_models_once(base_url).await.map_err(|(e, _)| e)
    }

    /// One `GET /models`; the error says whether trying again could help.
    async fn list_models_once(&self, base_url: &str) -> Result<Vec<String>, (BuildError, bool)> {
        let url = format!("{}/models", base_url.trim_end_matches('/'));
        let fail = |reason: String, transient: bool| {
            let e = BuildError::ModelDiscovery {
                url: url.clone(),
                reason,
            };
            (e, transient)
        };
        let fetch = async {
            let response = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| AttemptError::Transport(transport_message(e)))?;
            let status = response.status();
            Ok::<_, AttemptError>((status, read_capped(response, self.max_response_bytes).await?))
        };
        let (status, body) =
            tokio::time::timeout(self.attempt_timeout.min(Duration::from_secs(30)), fetch)
                .await
                .map_err(|_| fail("timed out".into(), true))?
                .map_err(|e| match e {
                    AttemptError::BadResponse(m) => fail(m, false),
                    AttemptError::Transport(m) => fail(m, true),
                    _ => fail("unexpected failure".into(), true),
                })?;
        if !status.is_success() {
            return Err(fail(
                format!("HTTP {}: {}", status.as_u16(), server_message(&body)),
                is_transient_status(status.as_u16()),
            ));
        }
        #[derive(Deserialize)]
        struct Models {
            data: Vec<ModelEntry>,
        }
        #[derive(Deserialize)]
        struct ModelEntry {
            id: String,
        }
        let models: Models = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("not an OpenAI model list: {e}"), false))?;
        Ok(models.data.into_iter().map(|m| m.id).collect())
    }

    /// The models of the first endpoint that answers, trying each in turn (with retries):
    /// one replica down at startup must not stop a run the others can serve.
    async fn first_answering_endpoint(&self) -> Result<(String, Vec<String>), BuildError> {
        let mut last = BuildError::NoEndpoint;
        for endpoint in self.balancer.endpoints().iter() {
            match self.list_models_with_retry(&endpoint.base_url).await {
                Ok(models) => return Ok((endpoint.base_url.clone(), models)),
                Err(e) => {
                    tracing::warn!(endpoint = %endpoint.base_url, error = %e, "endpoint not answering");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn list_models_with_retry(&self, base_url: &str) -> Result<Vec<String>, BuildError> {
        let mut backoff = self.retry.backoff(0);
        loop {
            match self.list_models_once(base_url).await {
                Ok(models) => return Ok(models),
                Err((e, false)) => return Err(e),
                Err((e, true)) => match backoff.next_delay(None) {
                    Some(delay) => {
                        tracing::warn!(error = %e, ?delay, "model discovery failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(e),
                },
            }
        }
    }

    fn body(
        &self,
        messages: &[Message],
        max_tokens: u32,
        seed: Option<u64>,
        temperature: f64,
        per_request: &Map<String, Value>,
    ) -> bytes::Bytes {
        #[derive(Serialize)]
        struct ChatBody<'a> {
            model: &'a str,
            messages: &'a [Message],
            temperature: f64,
            max_tokens: u32,
            #[serde(skip_serializing_if = "Option::is_none")]
            top_p: Option<f64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            seed: Option<u64>,
            #[serde(flatten)]
            extra: &'a Map<String, Value>,
            #[serde(flatten)]
            per_request: &'a Map<String, Value>,
        }
        let body = ChatBody {
            model: &self.model,
            messages,
            temperature,
            max_tokens,
            top_p: self.sampling.top_p,
            seed,
            extra: &self.extra_body,
            per_request,
        };
        // Serializing plain strings, numbers and `Value`s into a Vec cannot fail; an empty
        // body would be answered with a 400 and reported, never lost.
        let size = messages.iter().map(|m| m.content.len()).sum::<usize>() + 512;
        let mut out = Vec::with_capacity(size + size / 8);
        match serde_json::to_writer(&mut out, &body) {
            Ok(()) => out.into(),
            Err(_) => bytes::Bytes::new(),
        }
    }

    async fn judge(&self, request: &JudgeRequest) -> Result<Judged, JudgeError> {
        let started = Instant::now();
        let deadline_at = self.deadline.map(|d| started + d);
        let rendered = render(request, self.masking);
        // Unmasked requests are validated against an identity mapping, so an answer must
        // name exactly the request's responses either way.
        let names: std::borrow::Cow<'_, indexmap::IndexMap<String, String>> =
            match &rendered.masked2real {
                Some(m) => std::borrow::Cow::Borrowed(m),
                None => std::borrow::Cow::Owned(
                    request.responses.keys().map(|k| (k.clone(), k.clone())).collect(),
                ),
            };
        let per_request: Map<String, Value> = match &self.body_hook {
            Some(hook) => hook(request, &rendered)
                .into_iter()
                .filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str()))
                .collect(),
            None => Map::new(),
        };
        let mut max_tokens = self.sampling.max_tokens;
        let mut seed = self.sampling.seed;
        let mut temperature = self.sampling.temperature;
        let mut body = self.body(
            &rendered.messages,
            max_tokens,
            seed,
            temperature,
            &per_request,
        );
        // The salt only matters for a seeded jitter; hashing every request would cost
        // microseconds on the hot path for nothing.
        let salt = match self.retry.jitter_seed {
            Some(_) => crate::render::content_hash(request),
            None => 0,
        };
        let mut backoff = self.retry.backoff(salt);
        let mut attempts = 0u32;
        let mut lowered_max_tokens = false;
        let mut reasked = false;

        loop {
            // Waiting for the rate limiter and for a slot counts against the deadline too.
            let waits = async {
                if let Some(limiter) = &self.rate_limiter {
                    limiter.until_ready().await;
                }
                self.in_flight.acquire().await
            };
            let permit = match deadline_at {
                Some(at) => tokio::time::timeout_at(at.into(), waits).await,
                None => Ok(waits.await),
            };
            let _permit = match permit {
                Ok(Ok(permit)) => permit,
                Ok(Err(_closed)) => {
                    return Err(JudgeError::new(JudgeErrorKind::Cancelled, attempts));
                }
                Err(_elapsed) => return Err(self.deadline_error(attempts)),
            };
            let remaining = match deadline_at {
                Some(at) => match at.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return Err(self.deadline_error(attempts)),
                },
                None => None,
            };
            let timeout = remaining.map_or(self.attempt_timeout, |r| r.min(self.attempt_timeout));
            let deadline_bound = remaining.is_some_and(|r| r < self.attempt_timeout);
            let Some(lease) = self.balancer.pick() else {
                return Err(JudgeError::new(JudgeErrorKind::NoEndpoint, attempts));
            };
            attempts += 1;
            let attempt_started = Instant::now();
            let result = self
                .attempt(&lease.endpoint().completions_url, &body, timeout)
                .await;
            drop(_permit);
            let endpoint = lease.endpoint().clone();
            drop(lease);
            let latency_ms = attempt_started.elapsed().as_millis() as u64;

            let error = match result {
                Ok(answer) => {
                    self.balancer.record(&endpoint, Outcome::Alive);
                    tracing::debug!(
                        endpoint = %endpoint.base_url, attempt = attempts, latency_ms,
                        prompt_tokens = answer.usage.map(|u| u.prompt_tokens),
                        completion_tokens = answer.usage.map(|u| u.completion_tokens),
                        "completion received"
                    );
                    match parse_completion_with(
                        &answer.completion(),
                        Some(names.as_ref()),
                        &self.parse_options,
                    ) {
                        Ok(mut judgment) => {
                            judgment.reorder(request.responses.keys().map(String::as_str));
                            return Ok(Judged {
                                judgment,
                                attempts,
                                latency: started.elapsed(),
                                usage: answer.usage,
                                endpoint: endpoint.base_url.clone(),
                            });
                        }
                        Err(parse_error) => {
                            if self.reask_malformed && !reasked {
                                reasked = true;
                                seed = Some(seed.map_or(1, |s| s.wrapping_add(1)));
                                // At temperature 0 a new seed changes nothing: sample a
                                // little for the re-ask only.
                                temperature = temperature.max(REASK_TEMPERATURE);
                                body = self.body(
                                    &rendered.messages,
                                    max_tokens,
                                    seed,
                                    temperature,
                                    &per_request,
                                );
                                tracing::debug!(
                                    kind = parse_error.kind.as_str(),
                                    "malformed answer; re-asking with another seed"
                                );
                                continue;
                            }
                            return Err(JudgeError::new(
                                JudgeErrorKind::Parse(parse_error),
                                attempts,
                            ));
                        }
                    }
                }
                Err(e) => e,
            };

            // Classify the failure: what it says about the endpoint, and whether to retry.
            let (kind, retry_after) = match error {
                AttemptError::Transport(message) => {
                    self.balancer.record(&endpoint, Outcome::Failure);
                    (JudgeErrorKind::Transport(message), None)
                }
                AttemptError::Timeout => {
                    if deadline_bound {
                        // Cut short by the caller's deadline: says nothing about the endpoint.
                        return Err(self.deadline_error(attempts));
                    }
                    self.balancer.record(&endpoint, Outcome::Failure);
                    (JudgeErrorKind::Timeout(timeout), None)
                }
                AttemptError::BadResponse(message) => {
                    self.balancer.record(&endpoint, Outcome::Alive);
                    return Err(JudgeError::new(
                        JudgeErrorKind::BadResponse(message),
                        attempts,
                    ));
                }
                AttemptError::Http {
                    status,
                    message,
                    retry_after,
                } => {
                    let outcome = match status {
                        429 => Outcome::Busy(retry_after),
                        500..=599 => Outcome::Failure,
                        _ => Outcome::Alive,
                    };
                    self.balancer.record(&endpoint, outcome);
                    if status == 400 && ContextOverflow::is_context_message(&message) {
                        let fit = ContextOverflow::from_message(&message)
                            .filter(|c| !c.is_lower_bound(&message))
                            .and_then(|c| c.fitting_max_tokens())
                            .filter(|&fit| fit < max_tokens);
                        match fit {
                            Some(fit) if !lowered_max_tokens => {
                                tracing::debug!(
                                    from = max_tokens,
                                    to = fit,
                                    "context overflow; lowering max_tokens"
                                );
                                lowered_max_tokens = true;
                                max_tokens = fit;
                                body = self.body(
                                    &rendered.messages,
                                    max_tokens,
                                    seed,
                                    temperature,
                                    &per_request,
                                );
                                continue;
                            }
                            _ => {
                                return Err(JudgeError::new(
                                    JudgeErrorKind::ContextLength { message },
                                    attempts,
                                ));
                            }
                        }
                    }
                    if !is_transient_status(status) {
                        return Err(JudgeError::new(
                            JudgeErrorKind::Http { status, message },
                            attempts,
                        ));
                    }
                    (JudgeErrorKind::Http { status, message }, retry_after)
                }
            };
            let Some(mut delay) = backoff.next_delay(retry_after) else {
                return Err(JudgeError::new(kind, attempts));
            };
            if let Some(at) = deadline_at {
                let left = at.saturating_duration_since(Instant::now());
                if delay >= left {
                    // Waiting would outlive the deadline: report the real failure.
                    return Err(JudgeError::new(kind, attempts));
                }
                delay = delay.min(left);
            }
            tracing::debug!(endpoint = %endpoint.base_url, attempt = attempts, error = %kind, ?delay, "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    fn deadline_error(&self, attempts: u32) -> JudgeError {
        JudgeError::new(
            JudgeErrorKind::Deadline(self.deadline.unwrap_or_default()),
            attempts,
        )
    }

    async fn attempt(
        &self,
        url: &Result<reqwest::Url, String>,
        body: &bytes::Bytes,
        timeout: Duration,
    ) -> Result<Answer, AttemptError> {
        let send = async {
            let url = url.clone().map_err(AttemptError::Transport)?;
            let response = self
                .http
                .post(url)
                .body(body.clone())
                .send()
                .await
                .map_err(|e| AttemptError::Transport(transport_message(e)))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::retry::parse_retry_after);
            let bytes = read_capped(response, self.max_response_bytes).await?;
            Ok::<_, AttemptError>((status, retry_after, bytes))
        };
        let (status, retry_after, bytes) = tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| AttemptError::Timeout)??;
        if !(200..300).contains(&status) {
            return Err(AttemptError::Http {
                status,
                message: server_message(&bytes),
                retry_after,
            });
        }
        decode_completion(&bytes)
    }
}

/// Reads a body chunk by chunk, refusing one longer than `cap` as soon as it is known
/// (from `Content-Length`, or when the running total passes it).
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<bytes::Bytes, AttemptError> {
    let too_large = || {
        AttemptError::BadResponse(format!(
            "response body larger than the {cap}-byte limit (max_response_bytes)"
        ))
    };
    let declared = response.content_length();
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::with_capacity(declared.map_or(8192, |n| n as usize));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| AttemptError::Transport(transport_message(e)))?
    {
        if body.len() + chunk.len() > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn decode_completion(bytes: &[u8]) -> Result<Answer, AttemptError> {
    #[derive(Deserialize)]
    struct ChatResponse {
        #[serde(default)]
        choices: Vec<Choice>,
        usage: Option<Usage>,
    }
    #[derive(Deserialize)]
    struct Choice {
        message: Option<ChoiceMessage>,
        finish_reason: Option<String>,
    }
    #[derive(Deserialize)]
    struct ChoiceMessage {
        content: Option<String>,
        reasoning: Option<String>,
        reasoning_content: Option<String>,
    }
    let response: ChatResponse = serde_json::from_slice(bytes).map_err(|e| {
        AttemptError::BadResponse(format!("not a chat completion ({e}): {}", snippet(bytes)))
    })?;
    let Some(choice) = response.choices.into_iter().next() else {
        return Err(AttemptError::BadResponse(
            "no choices in the completion".into(),
        ));
    };
    let message = choice.message.ok_or_else(|| {
        AttemptError::BadResponse("the completion's first choice has no message".into())
    })?;
    Ok(Answer {
        content: message.content.unwrap_or_default(),
        reasoning: message.reasoning.or(message.reasoning_content),
        finish_reason: choice.finish_reason,
        usage: response.usage,
    })
}

/// reqwest's error with its causes (e.g. "connection refused"), without the URL: a URL
/// may carry credentials (`user:pass@`, `?api-key=`), and the endpoint is known anyway.
fn transport_message(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// The server's error message: OpenAI's `{"error": {"message"}}`, vLLM's
/// `{"message"}`, FastAPI's `{"detail"}`, else the start of the body.
fn server_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let found = v
            .pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .or_else(|| v.get("error"));
        match found {
            Some(Value::String(s)) => return s.clone(),
            Some(other) => return other.to_string(),
            None => {}
        }
    }
    snippet(body)
}

fn snippet(body: &[u8]) -> String {
    const LIMIT: usize = 1000;
    let text = String::from_utf8_lossy(&body[..body.len().min(LIMIT)]);
    if body.len() > LIMIT {
        format!("{text}…")
    } else {
        text.into_owned()
    }
}
