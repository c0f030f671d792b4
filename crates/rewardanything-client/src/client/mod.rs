//! The async client: renders a request, sends it to an OpenAI-compatible endpoint (vLLM,
//! llama.cpp, SGLang), retries what is transient and parses the answer.
//!
//! `builder` and `config` hold the settings, `discovery` the model lookup, `judge` one
//! judgment's attempts; the wire format is [`crate::wire`], the retry decision
//! [`crate::retry`].

pub(crate) mod budget;
mod builder;
mod config;
mod discovery;
mod judge;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use serde::Serialize;
use tokio::sync::{OnceCell, Semaphore};
use tracing::Instrument;

pub use crate::wire::Usage;
pub use budget::{DEFAULT_MAX_BUFFERED_RESPONSE_BYTES, ResponseBuffer};
pub use builder::ClientBuilder;
pub use config::{BodyHook, DEFAULT_MAX_RESPONSE_BYTES, Sampling};

use crate::balance::{Balancer, EndpointStats};
use crate::error::{BuildError, ConnectError, JudgeError};
use crate::judgment::Judgment;
use crate::render::{JudgeRequest, Masking};
use builder::DirectLimiter;
use config::ClientConfig;

/// A judgment with what it took to get it.
///
/// ```no_run
/// # async fn f(client: rewardanything_client::Client, request: rewardanything_client::JudgeRequest) {
/// let judged = client.judge_detailed(&request).await.unwrap();
/// println!("{} attempts, {:?}, via {}", judged.attempts, judged.latency, judged.endpoint);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Judged {
    /// The parsed judgment; scores in the caller's response order.
    pub judgment: Judgment,
    /// HTTP attempts made.
    pub attempts: u32,
    /// Wall time from the first attempt to the parsed answer.
    pub latency: Duration,
    /// Token counts of the successful completion, when the server reported them.
    pub usage: Option<Usage>,
    /// The base URL that answered (password and query redacted).
    pub endpoint: String,
}

/// What the client shares between its clones and calls.
struct Inner {
    config: ClientConfig,
    http: reqwest::Client,
    /// Headers sent with each request: empty when they are the own HTTP client's
    /// defaults, else (a caller's client) the API key and custom headers.
    headers: HeaderMap,
    balancer: Arc<Balancer>,
    /// Follows `dns+` names and endpoints files into the balancer's set.
    discovery: Arc<crate::discover::Discovery>,
    discovered_model: OnceCell<String>,
    /// The last failed discovery: judgments within a second of it fail with it at once
    /// rather than each running its own retry loop against a dead server.
    discovery_failure: std::sync::Mutex<Option<(std::time::Instant, Arc<ConnectError>)>>,
    in_flight: Semaphore,
    /// Answer bodies buffered at once, across every request in flight.
    response_budget: budget::ResponseBudget,
    rate_limiter: Option<DirectLimiter>,
}

/// A RewardAnything client; cheap to clone (one connection pool shared by all clones).
///
/// ```no_run
/// use rewardanything_client::{Client, JudgeRequest};
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder().endpoint("http://127.0.0.1:8000/v1").build()?;
/// client.connect().await?; // optional: fail fast if the server is unreachable
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
        let shown: Vec<String> = self.endpoint_stats().into_iter().map(|e| e.url).collect();
        f.debug_struct("Client")
            .field("model", &self.model())
            .field("endpoints", &shown)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A builder with the defaults listed on its methods.
    ///
    /// ```
    /// let client = rewardanything_client::Client::builder().endpoint("http://127.0.0.1:8000/v1").build();
    /// assert!(client.is_ok());
    /// ```
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The model name in use: the configured one, else the discovered one (`None`
    /// before [`connect`](Self::connect) or the first judgment discovered it).
    ///
    /// ```
    /// let c = rewardanything_client::Client::builder().endpoint("http://h/v1").build().unwrap();
    /// assert_eq!(c.model(), None);
    /// ```
    pub fn model(&self) -> Option<&str> {
        self.inner
            .config
            .model
            .as_deref()
            .or_else(|| self.inner.discovered_model.get().map(String::as_str))
    }

    /// The masking the client applies (the builder's [`masking`](ClientBuilder::masking)).
    ///
    /// ```
    /// use rewardanything_client::{Client, Masking};
    /// let c = Client::builder().endpoint("http://h/v1").masking(Masking::Seeded(5)).build().unwrap();
    /// assert_eq!(c.masking(), Masking::Seeded(5));
    /// ```
    pub fn masking(&self) -> Masking {
        self.inner.config.masking
    }

    /// The current endpoint base URLs, as given (they may hold credentials: do not log
    /// them; [`endpoint_stats`](Self::endpoint_stats) has redacted ones).
    ///
    /// ```
    /// let c = rewardanything_client::Client::builder().endpoint("http://h/v1/").build().unwrap();
    /// assert_eq!(c.endpoint_urls(), ["http://h/v1"]);
    /// ```
    pub fn endpoint_urls(&self) -> Vec<String> {
        self.inner
            .balancer
            .endpoints()
            .iter()
            .map(|e| e.base_url.clone())
            .collect()
    }

    /// A snapshot of each endpoint's counters (in flight, served, ejected).
    ///
    /// ```
    /// let c = rewardanything_client::Client::builder().endpoint("http://u:pw@h/v1").build().unwrap();
    /// let stats = c.endpoint_stats();
    /// assert_eq!((stats[0].in_flight, stats[0].served, stats[0].ejected), (0, 0, false));
    /// assert!(!stats[0].url.contains("pw"));
    /// ```
    pub fn endpoint_stats(&self) -> Vec<EndpointStats> {
        self.inner
            .balancer
            .endpoints()
            .iter()
            .map(|e| e.stats())
            .collect()
    }

    /// The answer bytes this client (and its clones) buffer now and buffered at most,
    /// and their budget ([`ClientBuilder::max_buffered_response_bytes`]).
    ///
    /// ```
    /// let c = rewardanything_client::Client::builder()
    ///     .endpoint("http://h/v1")
    ///     .max_buffered_response_bytes(1 << 20)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(c.response_buffer().budget_bytes, 1 << 20);
    /// ```
    pub fn response_buffer(&self) -> ResponseBuffer {
        self.inner.response_budget.snapshot()
    }

    /// Replaces the endpoints while running (e.g. replicas restarted by `ra-serve`).
    /// Every URL is checked first; on error nothing changes. Requests in flight finish
    /// where they are.
    ///
    /// ```
    /// let c = rewardanything_client::Client::builder().endpoint("http://a/v1").build().unwrap();
    /// assert!(c.set_endpoints(&["http://b/v1".into(), "nonsense".into()]).is_err());
    /// assert_eq!(c.endpoint_urls(), ["http://a/v1"]);
    /// c.set_endpoints(&["http://b/v1".into()]).unwrap();
    /// assert_eq!(c.endpoint_urls(), ["http://b/v1"]);
    /// ```
    pub fn set_endpoints(&self, urls: &[String]) -> Result<(), BuildError> {
        if urls.is_empty() {
            return Err(BuildError::NoEndpoint);
        }
        let entries = builder::parse_entries(urls)?;
        self.inner
            .discovery
            .set_entries(entries, &self.inner.balancer);
        Ok(())
    }

    /// Closes the client: judgments waiting for a slot, and any started afterwards, fail
    /// at once with `cancelled`; requests already on the wire finish. For shutdown paths
    /// (clones share the state).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use rewardanything_client::{Client, JudgeRequest};
    /// let c = Client::builder().endpoint("http://127.0.0.1:9/v1").model("m").build().unwrap();
    /// c.close();
    /// let e = c.judge(&JudgeRequest::new("p", "q").response("a", "x")).await.unwrap_err();
    /// assert_eq!(e.kind_str(), "cancelled");
    /// # }
    /// ```
    pub fn close(&self) {
        self.inner.in_flight.close();
    }

    /// Lists the models an endpoint serves (`GET {base}/models`), one attempt.
    ///
    /// ```no_run
    /// # async fn f(client: rewardanything_client::Client) {
    /// let models = client.list_models("http://127.0.0.1:8000/v1").await;
    /// # }
    /// ```
    pub async fn list_models(&self, base_url: &str) -> Result<Vec<String>, ConnectError> {
        let url = builder::parse_endpoints(&[base_url.to_string()])
            .map_err(ConnectError::InvalidEndpoint)?;
        match url.first() {
            Some(u) => self
                .inner
                .list_models_once(&self.inner.http, u)
                .await
                .map_err(|(e, _)| e),
            None => Err(ConnectError::NoEndpoint),
        }
    }

    /// Checks that an endpoint answers and settles the model: the first endpoint that
    /// lists its models (trying each in turn, retrying transient failures) must serve
    /// the configured model, or else serve exactly one, which is then used. Returns the
    /// model. A 401/403 is [`ConnectError::Unauthorized`].
    ///
    /// ```no_run
    /// # async fn f(client: rewardanything_client::Client) -> Result<(), rewardanything_client::ConnectError> {
    /// let model = client.connect().await?;
    /// println!("judging with {model}");
    /// # Ok(()) }
    /// ```
    pub async fn connect(&self) -> Result<String, ConnectError> {
        self.inner.connect().await
    }

    /// Judges one request; scores come back keyed and ordered by the caller's names.
    ///
    /// ```no_run
    /// # async fn f(client: rewardanything_client::Client) {
    /// use rewardanything_client::JudgeRequest;
    /// let r = JudgeRequest::new("Be concise.", "2+2?").response("a", "4").response("b", "Four, since…");
    /// let j = client.judge(&r).await.unwrap();
    /// assert_eq!(j.scores.len(), 2);
    /// # }
    /// ```
    pub async fn judge(&self, request: &JudgeRequest) -> Result<Judgment, JudgeError> {
        self.judge_detailed(request).await.map(|j| j.judgment)
    }

    /// Like [`judge`](Self::judge), with attempts, latency, token usage and endpoint.
    ///
    /// ```no_run
    /// # async fn f(client: rewardanything_client::Client, r: rewardanything_client::JudgeRequest) {
    /// let j = client.judge_detailed(&r).await.unwrap();
    /// println!("{} attempts", j.attempts);
    /// # }
    /// ```
    pub async fn judge_detailed(&self, request: &JudgeRequest) -> Result<Judged, JudgeError> {
        self.judge_masked(request, self.inner.config.masking).await
    }

    /// Like [`judge_detailed`](Self::judge_detailed), with this call's masking instead
    /// of the client's (e.g. one seeded order per call, as
    /// [`judge_ensemble`](Self::judge_ensemble) does).
    ///
    /// ```no_run
    /// # async fn f(client: rewardanything_client::Client, r: rewardanything_client::JudgeRequest) {
    /// use rewardanything_client::Masking;
    /// let j = client.judge_masked(&r, Masking::Seeded(3)).await.unwrap();
    /// # }
    /// ```
    pub async fn judge_masked(
        &self,
        request: &JudgeRequest,
        masking: Masking,
    ) -> Result<Judged, JudgeError> {
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
        let started = std::time::Instant::now();
        let result = self
            .inner
            .judge(request, masking)
            .instrument(span.clone())
            .await
            .map_err(|mut e| {
                e.latency = started.elapsed();
                e
            });
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
    ///
    /// ```no_run
    /// use futures::StreamExt;
    /// # async fn f(client: rewardanything_client::Client, reqs: Vec<rewardanything_client::JudgeRequest>) {
    /// let n = client.judge_stream(futures::stream::iter(reqs)).count().await;
    /// # }
    /// ```
    pub fn judge_stream<S>(
        &self,
        requests: S,
    ) -> impl Stream<Item = (usize, Result<Judgment, JudgeError>)> + Send + 'static
    where
        S: Stream<Item = JudgeRequest> + Send + 'static,
    {
        let client = self.clone();
        let limit = self.inner.config.max_in_flight;
        requests
            .enumerate()
            .map(move |(i, request)| {
                let client = client.clone();
                async move { (i, client.judge(&request).await) }
            })
            .buffer_unordered(limit)
    }

    /// [`judge_many_ordered`](Self::judge_many_ordered) for a `Stream` of requests
    /// (read lazily: at most `window` of them are held at once).
    ///
    /// ```no_run
    /// use futures::StreamExt;
    /// # async fn f(client: rewardanything_client::Client, reqs: Vec<rewardanything_client::JudgeRequest>) {
    /// let in_order: Vec<_> = client.judge_stream_ordered(futures::stream::iter(reqs), None).collect().await;
    /// # }
    /// ```
    pub fn judge_stream_ordered<S>(
        &self,
        requests: S,
        window: Option<usize>,
    ) -> impl Stream<Item = Result<Judged, JudgeError>> + Send + 'static
    where
        S: Stream<Item = JudgeRequest> + Send + 'static,
    {
        let client = self.clone();
        let window = window
            .unwrap_or(self.inner.config.max_in_flight.saturating_mul(2))
            .max(1);
        requests
            .map(move |request| {
                let client = client.clone();
                async move { client.judge_detailed(&request).await }
            })
            .buffered(window)
    }

    /// The ordered fan-out: judges many requests concurrently and yields exactly one
    /// item per request, in input order: the [`Judged`] (judgment, attempts, latency,
    /// usage, endpoint) or the [`JudgeError`] (with its attempts and latency).
    ///
    /// Bounded: at most `window` requests are started and not yet yielded (default
    /// twice the in-flight limit when `None`), and of those at most the client's
    /// in-flight limit are on the wire; so memory holds at most `window` requests and
    /// results. A slow request holds back later results (and the start of new ones)
    /// until it finishes or times out. Dropping the stream cancels outstanding work.
    ///
    /// ```no_run
    /// use futures::StreamExt;
    /// # async fn f(client: rewardanything_client::Client, reqs: Vec<rewardanything_client::JudgeRequest>) {
    /// let mut results = client.judge_many_ordered(reqs, None);
    /// while let Some(result) = results.next().await {
    ///     match result {
    ///         Ok(judged) => println!("{:?} in {} attempts", judged.judgment.ranking, judged.attempts),
    ///         Err(e) => println!("failed after {} attempts: {e}", e.attempts),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn judge_many_ordered<I>(
        &self,
        requests: I,
        window: Option<usize>,
    ) -> impl Stream<Item = Result<Judged, JudgeError>> + Send + 'static
    where
        I: IntoIterator<Item = JudgeRequest>,
        I::IntoIter: Send + 'static,
    {
        self.judge_stream_ordered(futures::stream::iter(requests), window)
    }
}
