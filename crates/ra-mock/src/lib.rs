//! `ra-mock`: a mock OpenAI-compatible chat-completions server that answers in
//! RewardAnything's format, for the client's tests (in-process) and benchmarks
//! (the `ra-mock` binary).
//!
//! # Routes
//! * `GET /health`: 200 with an empty body; 503 during
//!   [`MockServerBuilder::health_unavailable_for`] after start, or when
//!   [`MockHandle::set_healthy`]`(false)`. Never needs the API key.
//! * `GET /v1/models`: `{"object":"list","data":[{"id":NAME,"object":"model","created":…,
//!   "owned_by":"ra-mock","root":NAME,"parent":null,"max_model_len":CONTEXT_LENGTH},…]}`.
//! * `GET /stats`: the counters of [`Stats`] as a JSON object, so that a test or a user
//!   of the `ra-mock` binary can count requests while it runs, e.g.
//!   `{"received": 5, "chat_requests": 4, "by_status": {"200": 3, "503": 1}, "dropped": 0,
//!   "hung": 0, "cancelled": 0, "in_flight": 0, …}`; see [`Stats`] for every field.
//!   Never needs the API key, and is not counted itself (polling changes nothing).
//!   [`MockHandle::reset`] zeroes them.
//! * `POST /v1/chat/completions`: reads `model` (optional; an unknown one gets
//!   vLLM's 404 `The model `X` does not exist.`), `messages`, `max_tokens` /
//!   `max_completion_tokens`, `temperature`, `seed`; other fields are ignored,
//!   except `stream: true`, which gets a 400 (streaming is not implemented).
//!   The last `user` message must be RewardAnything's JSON
//!   `{"principle": …, "prompt": …, "responses": {"model-1": text, …}}` (else 400).
//!
//! # The answer
//! Each response gets [`expected_score`] of its text; `best-to-worst` is
//! [`expected_ranking`] (with [`MockServerBuilder::position_bias`], the response
//! presented first scores more, see [`biased_score`]). The completion is
//! `<think>\n{reasoning}\n</think>\n\n{"scores": {"model-1": 4, …}, "best-to-worst": ["model-2", …]}`
//! shaped by the [`ReasoningShape`] (server default, overridden by the
//! `x-ra-mock-shape` header, overridden by a `[[shape:…]]` marker). `usage`
//! counts [`estimate_tokens`] (`ceil(bytes/4)`) of all message contents for
//! `prompt_tokens` and of the output for `completion_tokens`. If the output
//! needs more than `max_tokens` tokens it is cut at `max_tokens * 4` bytes with
//! `finish_reason: "length"`, as a model would be.
//!
//! # Markers (in the user message's `prompt` text)
//! | marker | effect |
//! |---|---|
//! | `[[fault:500]]`, `[[fault:502]]`, `[[fault:503]]`, any `[[fault:CODE]]` (400–599) | answer CODE at once with a vLLM-shaped error body |
//! | `[[fault:429]]`, `[[fault:CODE:retry-after=S]]` | same, with header `Retry-After: S` |
//! | `[[fault:hang]]` | never answer (until the client disconnects or the server is killed) |
//! | `[[fault:drop]]` | close the connection without a response |
//! | `[[fault:malformed]]` | 200, think block then prose, no JSON |
//! | `[[fault:length]]` | 200, `finish_reason: "length"`, output cut inside the think block |
//! | `[[fault:400-context]]`, `[[fault:400-context:prompt-tokens=N]]` | count the prompt as N tokens (default `context_length - 2767` = 30001 for 32768) in the context-length check: `max_tokens` 4096 gets vLLM's 400, a retry with `max_tokens <= context_length - N` is answered |
//! | `[[fault:endless-body]]` | 200, chunked, the start of a chat completion then `x` without end: generated as the client reads (the mock holds one 64 KiB chunk at most), stopped when the client disconnects |
//! | `[[fault:huge-body:N]]` | 200 with `Content-Length: N` and N such bytes (a chat completion cut short), generated as the client reads |
//! | `[[fault:error-200]]` | 200 whose body is an error envelope: `{"error": {"message": "ra-mock: injected error in a 200 answer (error-200)", "type": "InternalServerError", "param": null, "code": 500}}` |
//! | `[[fault:names-extra]]` | 200, the judgment also scores and ranks an *extra* name: `model-{N+7}` when the request is masked (its names are `model-1`..`model-N`), else `zzz` (more `z`s if taken); score 4 |
//! | `[[fault:names-missing]]` | 200, the request's last response is missing from scores and ranking |
//! | `[[fault:names-invented]]` | 200, the judgment scores and ranks only `zzz` (more `z`s if taken; score 4) |
//! | `[[fault:names-extra-ranked]]` | 200, correct scores, but the ranking ends with the extra name |
//! | `[[fail-first:N:SPEC]]` | the first N attempts with this exact user-message content fail with SPEC (any fault spec above without `fault:`, e.g. `503`, `429:retry-after=1`, `drop`, `hang`, `names-extra`), later ones go on normally |
//! | `[[shape:inline]]` / `reasoning` / `reasoning_content` / `prefilled` | reasoning shape for this request |
//! | `[[latency-ms:N]]` | hold this request N ms instead of the configured latency |
//!
//! Precedence: [`MockHandle::set_forced_fault`] > `fail-first` > `fault:` >
//! random [`FaultRates`]. Injected status, drop and hang faults act on arrival,
//! without latency and without taking a capacity slot; the other faults (all
//! 200 answers) go through latency and capacity like normal ones, and a
//! generated body gives its slot back once its headers are sent. The same specs
//! (without `fault:`) parse as a [`Fault`] (`"names-extra".parse()`), which
//! [`MockHandle::set_forced_fault`] and the binary's `--fault SPEC` apply to
//! every chat request. A `[[…]]` group
//! whose keyword is unknown is plain text; a known keyword with a bad argument
//! is a 400 (`ra-mock: invalid marker …`) so a typo in a test shows at once.
//!
//! # Latency, capacity, observability
//! A request that gets an answer is held for the [`Latency`] counted from its
//! arrival (or from the moment a queued request gets a capacity slot), to well
//! under a millisecond: the mock sleeps to just before the deadline and yields until
//! it (tokio's timer alone rounds up to the next millisecond, which made a 200 ms
//! server a ~200.7 ms one in saturation benchmarks). At most `capacity`
//! requests are held at once ([`Stats::max_processing`]). [`MockHandle::stats`]
//! gives counters, [`MockHandle::attempts`] a bounded log with one [`Attempt`]
//! per chat request (arrival and finish `Instant`s, prompt hash, `max_tokens`,
//! `seed`, outcome, and with prompt logging the prompt, other body fields and
//! headers), so a test can check retry timing and what each attempt carried.
//!
//! # Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ra_mock::{MockServer, ReasoningShape};
//! let mock = MockServer::builder()
//!     .reasoning_shape(ReasoningShape::Reasoning)
//!     .start()
//!     .await?;
//! let user = serde_json::json!({
//!     "principle": "be brief",
//!     "prompt": "hi [[fail-first:1:503]]",
//!     "responses": {"model-1": "hello score=4", "model-2": "hey score=5"},
//! })
//! .to_string();
//! let body = serde_json::json!({"messages": [{"role": "user", "content": user}]});
//! let http = reqwest::Client::new();
//! let url = format!("{}/chat/completions", mock.base_url());
//! let first = http.post(&url).json(&body).send().await?;
//! assert_eq!(first.status(), 503);
//! let second: serde_json::Value = http.post(&url).json(&body).send().await?.json().await?;
//! let content = second["choices"][0]["message"]["content"].as_str().unwrap_or_default();
//! assert_eq!(
//!     content,
//!     r#"{"scores": {"model-1": 4, "model-2": 5}, "best-to-worst": ["model-2", "model-1"]}"#
//! );
//! assert_eq!(mock.stats().status(503), 1);
//! mock.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod body;
mod config;
mod fault;
mod markers;
mod names;
mod prefix;
mod render;
mod score;
mod server;
mod stats;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use config::{ContextErrorStyle, Latency, OverCapacity, ParseNameError, ReasoningShape};
pub use fault::{Fault, FaultRates};
pub use names::NameFault;
pub use prefix::{BLOCK_BYTES, PrefixCache};
pub use score::{
    biased_score, estimate_tokens, expected_ranking, expected_score, fnv1a64, prompt_hash,
};
pub use server::{SHAPE_HEADER, STATS_PATH};
pub use stats::{Attempt, Outcome, Stats};

use server::{Config, Shared};

/// Default model name served by `/v1/models`.
pub const DEFAULT_MODEL: &str = "RewardAnything-8B-v1";

/// Errors starting or restarting the mock.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The address could not be bound.
    #[error("ra-mock: cannot bind {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The configuration is inconsistent.
    #[error("ra-mock: invalid configuration: {0}")]
    Config(String),
}

/// Entry point: [`MockServer::builder`].
#[derive(Debug)]
pub struct MockServer;

impl MockServer {
    /// A builder with the defaults listed on [`MockServerBuilder`].
    pub fn builder() -> MockServerBuilder {
        MockServerBuilder::default()
    }
}

/// Configures a mock server.
///
/// Defaults: bind `127.0.0.1:0`, model `RewardAnything-8B-v1`, no latency,
/// no capacity limit, [`ReasoningShape::Inline`], seed 0, no API key, no random
/// faults, context length 32768 with [`ContextErrorStyle::AtLeast`], healthy at
/// once, no reasoning padding, attempt log of 10,000 entries with prompts,
/// request bodies up to 32 MiB.
#[derive(Debug, Clone)]
pub struct MockServerBuilder {
    addr: SocketAddr,
    cfg: Config,
}

impl Default for MockServerBuilder {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            cfg: Config {
                models: vec![DEFAULT_MODEL.to_owned()],
                capacity: None,
                over_capacity: OverCapacity::Queue,
                shape: ReasoningShape::Inline,
                seed: 0,
                api_key: None,
                fault_rates: FaultRates::default(),
                context_length: 32768,
                context_error_style: ContextErrorStyle::AtLeast,
                health_unavailable_for: Duration::ZERO,
                think_bytes: 0,
                attempt_log_capacity: 10_000,
                log_prompts: true,
                max_body_bytes: 32 << 20,
                latency: Latency::None,
                position_bias: 0,
                prefix_cache: None,
            },
        }
    }
}

impl MockServerBuilder {
    /// Address to bind (default `127.0.0.1:0`: a free port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Model names `/v1/models` lists and chat requests may name (replaces the default).
    pub fn models<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cfg.models = names.into_iter().map(Into::into).collect();
        self
    }

    /// Time each answered request is held (see [`Latency`]).
    pub fn latency(mut self, latency: Latency) -> Self {
        self.cfg.latency = latency;
        self
    }

    /// At most `n` requests processed (holding their latency) at once.
    pub fn capacity(mut self, n: usize) -> Self {
        self.cfg.capacity = Some(n);
        self
    }

    /// What to do with requests beyond the capacity (default [`OverCapacity::Queue`]).
    pub fn over_capacity(mut self, mode: OverCapacity) -> Self {
        self.cfg.over_capacity = mode;
        self
    }

    /// Default reasoning shape of completions.
    pub fn reasoning_shape(mut self, shape: ReasoningShape) -> Self {
        self.cfg.shape = shape;
        self
    }

    /// Seed of the RNG behind uniform latencies and random faults. Draws depend
    /// only on the seed and the request's arrival number.
    pub fn seed(mut self, seed: u64) -> Self {
        self.cfg.seed = seed;
        self
    }

    /// Require `Authorization: Bearer KEY` on `/v1/*` (401 otherwise).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.cfg.api_key = Some(key.into());
        self
    }

    /// Random fault mix for chat requests.
    pub fn fault_rates(mut self, rates: FaultRates) -> Self {
        self.cfg.fault_rates = rates;
        self
    }

    /// The model's context length in tokens (default 32768).
    pub fn context_length(mut self, tokens: u64) -> Self {
        self.cfg.context_length = tokens;
        self
    }

    /// Wording of the context-length 400.
    pub fn context_error_style(mut self, style: ContextErrorStyle) -> Self {
        self.cfg.context_error_style = style;
        self
    }

    /// `/health` answers 503 for this long after start (model still loading).
    pub fn health_unavailable_for(mut self, d: Duration) -> Self {
        self.cfg.health_unavailable_for = d;
        self
    }

    /// Pad the reasoning with filler up to at least this many bytes (default 0:
    /// a few short lines), to make answers as big as the real model's.
    pub fn think_bytes(mut self, bytes: usize) -> Self {
        self.cfg.think_bytes = bytes;
        self
    }

    /// Keep the last `n` attempts (0 turns the log and its lock off).
    pub fn attempt_log_capacity(mut self, n: usize) -> Self {
        self.cfg.attempt_log_capacity = n;
        self
    }

    /// Store each attempt's prompt text, other body fields and headers in the
    /// log (default true; costs a second parse of the body).
    pub fn log_prompts(mut self, yes: bool) -> Self {
        self.cfg.log_prompts = yes;
        self
    }

    /// A deliberate position bias: the response presented first (`model-1` when
    /// masked) gets `bias` more than its [`expected_score`], capped at 5 (see
    /// [`biased_score`]); the ranking follows the biased scores. Default 0. For tests
    /// that measure and cancel position bias (`ra eval --permutations`).
    ///
    /// ```
    /// let b = ra_mock::MockServer::builder().position_bias(1);
    /// ```
    pub fn position_bias(mut self, bias: u8) -> Self {
        self.cfg.position_bias = bias;
        self
    }

    /// Model vLLM's prefix cache: a prompt's uncached tokens add
    /// `prefill_per_token` each to its latency (see [`PrefixCache`]; [`Stats::cached_tokens`]
    /// and [`Stats::prefilled_tokens`] count them). Off by default.
    ///
    /// ```
    /// let b = ra_mock::MockServer::builder()
    ///     .prefix_cache(ra_mock::PrefixCache::new(100_000, std::time::Duration::from_micros(20)));
    /// ```
    pub fn prefix_cache(mut self, cache: PrefixCache) -> Self {
        self.cfg.prefix_cache = Some(cache);
        self
    }

    /// Largest request body accepted (413 beyond).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.cfg.max_body_bytes = bytes;
        self
    }

    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(self) -> Result<MockHandle, MockError> {
        let c = &self.cfg;
        if c.models.is_empty() {
            return Err(MockError::Config(
                "at least one model name is needed".into(),
            ));
        }
        if c.capacity == Some(0) {
            return Err(MockError::Config("capacity must be at least 1".into()));
        }
        let r = c.fault_rates;
        let rates = [r.status_500, r.status_429, r.drop, r.hang];
        if rates.iter().any(|p| !(0.0..=1.0).contains(p)) || r.total() > 1.0 + 1e-9 {
            return Err(MockError::Config(
                "fault rates must be in [0, 1] and sum to at most 1".into(),
            ));
        }
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|source| MockError::Bind {
                addr: self.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| MockError::Bind {
            addr: self.addr,
            source,
        })?;
        let shared = Arc::new(Shared::new(self.cfg));
        let task = tokio::spawn(server::accept_loop(listener, shared.clone()));
        Ok(MockHandle {
            shared,
            addr,
            task: Mutex::new(Some(task)),
        })
    }
}

/// A running mock. Dropping it stops the server (like [`MockHandle::kill`]).
pub struct MockHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for MockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT/v1`, what a client takes as base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://HOST:PORT/health` (outside `/v1`, as vLLM serves it).
    pub fn health_url(&self) -> String {
        format!("http://{}/health", self.addr)
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// The attempt log (chat requests only), in arrival order.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.shared.attempts.snapshot()
    }

    /// Attempts whose prompt text hashes to [`prompt_hash`]`(prompt)`, in arrival order.
    pub fn attempts_for(&self, prompt: &str) -> Vec<Attempt> {
        let h = prompt_hash(prompt);
        self.attempts()
            .into_iter()
            .filter(|a| a.prompt_hash == h)
            .collect()
    }

    /// Zeroes the counters and the attempt log and forgets `fail-first` counts.
    pub fn reset(&self) {
        self.shared.counters.reset();
        self.shared.attempts.clear();
        self.shared
            .fail_first
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn update(&self, f: impl FnOnce(&mut server::Dynamic)) {
        f(&mut self
            .shared
            .dynamic
            .lock()
            .unwrap_or_else(|e| e.into_inner()));
    }

    /// Changes the latency of requests that arrive from now on.
    pub fn set_latency(&self, latency: Latency) {
        self.update(|d| d.latency = latency);
    }

    /// Applies `fault` to every chat request from now on (`None` to stop), e.g.
    /// `Fault::Status { code: 503, retry_after: None }` for an unhealthy endpoint.
    pub fn set_forced_fault(&self, fault: Option<Fault>) {
        self.update(|d| d.forced_fault = fault);
    }

    /// Forces `/health` to 200 (`Some(true)`) or 503 (`Some(false)`); `None`
    /// returns to the start-up delay rule.
    pub fn set_healthy(&self, healthy: Option<bool>) {
        self.update(|d| d.healthy = healthy);
    }

    /// Whether the server is accepting connections (not killed).
    pub fn is_alive(&self) -> bool {
        self.task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Simulates a killed endpoint: stops accepting (the listener is closed)
    /// and aborts every open connection, so requests in flight fail with a
    /// transport error. Takes effect within a scheduler tick; counters and the
    /// log stay readable. See [`MockHandle::restart`].
    pub fn kill(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }

    /// Kills the server (if alive) and waits until its listener and
    /// connections are gone.
    pub async fn kill_and_wait(&self) {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = task {
            t.abort();
            // A cancelled task reports a JoinError; that is the expected result.
            let _ = t.await;
        }
        // Connection tasks are aborted when the accept loop's JoinSet drops; let them unwind.
        tokio::task::yield_now().await;
    }

    /// Brings a killed server back on the same address, keeping counters,
    /// the log, `fail-first` counts and runtime settings (an endpoint that
    /// comes back after a crash). Kills it first if it is alive.
    pub async fn restart(&self) -> Result<(), MockError> {
        self.kill_and_wait().await;
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|source| MockError::Bind {
                addr: self.addr,
                source,
            })?;
        let task = tokio::spawn(server::accept_loop(listener, self.shared.clone()));
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(())
    }

    /// Stops the server and waits for it to be gone.
    pub async fn shutdown(self) {
        self.kill_and_wait().await;
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        self.kill();
    }
}
