//! The HTTP side: accept loop, routing, the chat-completions handler.

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use indexmap::IndexMap;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::task::JoinSet;

use crate::body::MockBody;
use crate::config::{ContextErrorStyle, Latency, OverCapacity, ReasoningShape};
use crate::fault::{Fault, FaultRates};
use crate::markers::Markers;
use crate::names::{NameFault, wrong_answer};
use crate::prefix::{BlockCache, PrefixCache};
use crate::render;
use crate::score::{biased_score, expected_score, fnv1a64, splitmix64, unit};
use crate::stats::{Attempt, AttemptLog, Counters, Gauge, Outcome};

/// Header that overrides the reasoning shape for one request.
pub const SHAPE_HEADER: &str = "x-ra-mock-shape";

/// The fixed part of the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub models: Vec<String>,
    pub capacity: Option<usize>,
    pub over_capacity: OverCapacity,
    pub shape: ReasoningShape,
    pub seed: u64,
    pub api_key: Option<String>,
    pub fault_rates: FaultRates,
    pub context_length: u64,
    pub context_error_style: ContextErrorStyle,
    pub health_unavailable_for: Duration,
    pub think_bytes: usize,
    pub attempt_log_capacity: usize,
    pub log_prompts: bool,
    pub max_body_bytes: usize,
    pub latency: Latency,
    pub position_bias: u8,
    pub prefix_cache: Option<PrefixCache>,
}

/// What a test may change while the server runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dynamic {
    pub latency: Latency,
    pub forced_fault: Option<Fault>,
    pub healthy: Option<bool>,
}

pub(crate) struct Shared {
    pub cfg: Config,
    pub dynamic: Mutex<Dynamic>,
    pub started: Instant,
    pub counters: Arc<Counters>,
    pub attempts: AttemptLog,
    pub fail_first: Mutex<HashMap<u64, u32>>,
    slots: Option<Semaphore>,
    blocks: Option<Mutex<BlockCache>>,
    models_body: Bytes,
}

// Separate RNG streams so the latency and fault draws of a request are independent.
const STREAM_LATENCY: u64 = 0x6c61_7465_6e63_7921;
const STREAM_FAULT: u64 = 0x6661_756c_7473_2121;

impl Shared {
    pub fn new(cfg: Config) -> Self {
        let created = unix_now();
        let data: Vec<_> = cfg
            .models
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m, "object": "model", "created": created, "owned_by": "ra-mock",
                    "root": m, "parent": null, "max_model_len": cfg.context_length,
                })
            })
            .collect();
        let models_body =
            Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string());
        Self {
            dynamic: Mutex::new(Dynamic {
                latency: cfg.latency,
                forced_fault: None,
                healthy: None,
            }),
            started: Instant::now(),
            counters: Arc::new(Counters::new()),
            attempts: AttemptLog::new(cfg.attempt_log_capacity),
            fail_first: Mutex::new(HashMap::new()),
            slots: cfg.capacity.map(Semaphore::new),
            blocks: cfg
                .prefix_cache
                .map(|p| Mutex::new(BlockCache::new(p.capacity_tokens))),
            models_body,
            cfg,
        }
    }

    pub fn dynamic(&self) -> Dynamic {
        *self.dynamic.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn draw(&self, stream: u64, seq: u64) -> f64 {
        unit(splitmix64(
            self.cfg.seed ^ stream ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ))
    }

    /// `Some(401 response)` when an API key is configured and the request lacks it.
    fn check_auth<B>(&self, req: &Request<B>) -> Option<Resp> {
        let key = self.cfg.api_key.as_deref()?;
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(g) if g == key => None,
            other => Some(respond(401, render::auth_error_body(other.is_none()), None)),
        }
    }
}

type Resp = Response<MockBody>;

/// Returned by the service to make hyper close the connection without a response.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ra-mock: connection dropped on purpose")
    }
}

impl std::error::Error for DropConnection {}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn respond(code: u16, body: Bytes, retry_after: Option<u64>) -> Resp {
    respond_body(code, MockBody::from(body), retry_after)
}

fn respond_body(code: u16, body: MockBody, retry_after: Option<u64>) -> Resp {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Accepts connections until the task is aborted; aborting it drops the
/// listener and the `JoinSet`, which aborts every connection task.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.counters.connections.fetch_add(1, Relaxed);
                    // Small responses: don't let Nagle hold them back.
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    conns.spawn(async move {
                        let svc = service_fn(move |req| {
                            let shared = shared.clone();
                            async move { route(shared, req).await }
                        });
                        // Connection errors (client resets, our own drops) are expected here.
                        let _ = http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                // Out of file descriptors or similar: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Path of the counters route: `GET` answers [`Stats`](crate::Stats) as JSON.
pub const STATS_PATH: &str = "/stats";

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, DropConnection> {
    let path = req.uri().path();
    if req.method() == Method::GET && path == STATS_PATH {
        // Not counted itself: polling the counters changes none of them.
        return Ok(stats(&shared));
    }
    shared.counters.received.fetch_add(1, Relaxed);
    let resp = match (req.method(), path) {
        (&Method::POST, "/v1/chat/completions") => chat(&shared, req).await?,
        (&Method::GET, "/health") => {
            let healthy = shared
                .dynamic()
                .healthy
                .unwrap_or_else(|| shared.started.elapsed() >= shared.cfg.health_unavailable_for);
            let mut r = Response::new(MockBody::from(Bytes::new()));
            if !healthy {
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            r
        }
        (&Method::GET, "/v1/models") => match shared.check_auth(&req) {
            Some(denied) => denied,
            None => respond(200, shared.models_body.clone(), None),
        },
        (_, "/v1/chat/completions" | "/health" | "/v1/models" | STATS_PATH) => respond(
            405,
            render::error_body(405, "Method Not Allowed", None),
            None,
        ),
        _ => respond(404, render::error_body(404, "Not Found", None), None),
    };
    shared.counters.count_status(resp.status().as_u16());
    Ok(resp)
}

/// The counters as JSON (never needs the key, like `/health`: they hold no secret).
fn stats(shared: &Shared) -> Resp {
    match serde_json::to_vec(&shared.counters.snapshot()) {
        Ok(json) => respond(200, Bytes::from(json), None),
        Err(e) => {
            let msg = format!("ra-mock: could not encode the counters: {e}");
            respond(500, render::error_body(500, &msg, None), None)
        }
    }
}

#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    messages: Vec<ChatMessage<'a>>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    stream: Option<bool>,
}

#[derive(Deserialize)]
struct ChatMessage<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow, default)]
    content: Option<Content<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Parts(#[serde(borrow)] Vec<Part<'a>>),
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

impl Content<'_> {
    fn text(&self) -> Cow<'_, str> {
        match self {
            Content::Text(t) => Cow::Borrowed(t),
            Content::Parts(parts) => Cow::Owned(
                parts
                    .iter()
                    .filter_map(|p| p.text.as_deref())
                    .collect::<String>(),
            ),
        }
    }

    fn len(&self) -> usize {
        match self {
            Content::Text(t) => t.len(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_ref())
                .map(|t| t.len())
                .sum(),
        }
    }
}

/// The RewardAnything user message (spec section 2.3).
#[derive(Deserialize)]
struct Payload {
    #[allow(dead_code)] // Part of the format; the mock's reasoning does not quote it.
    principle: String,
    prompt: String,
    responses: IndexMap<String, String>,
}

/// Records exactly one [`Attempt`] per chat request, and keeps `in_flight` right.
struct ChatGuard<'a> {
    shared: &'a Shared,
    seq: u64,
    info: Attempt,
    done: bool,
    _in_flight: Gauge<'a>,
}

impl<'a> ChatGuard<'a> {
    fn new(shared: &'a Shared) -> Self {
        let c = &shared.counters;
        let seq = c.chat.fetch_add(1, Relaxed);
        let arrived = Instant::now();
        Self {
            _in_flight: Gauge::enter(&c.in_flight, &c.max_in_flight),
            shared,
            seq,
            info: Attempt {
                seq,
                arrived,
                finished: arrived,
                prompt_hash: 0,
                content_hash: 0,
                prompt: None,
                model: None,
                max_tokens: None,
                seed: None,
                temperature: None,
                body_fields: None,
                headers: None,
                authorized: true,
                outcome: Outcome::Cancelled,
            },
            done: false,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        let c = &self.shared.counters;
        match outcome {
            Outcome::Dropped => c.dropped.fetch_add(1, Relaxed),
            Outcome::Hung => c.hung.fetch_add(1, Relaxed),
            Outcome::Cancelled => c.cancelled.fetch_add(1, Relaxed),
            Outcome::Status(_) => 0,
        };
        if self.shared.attempts.enabled() {
            let mut a = self.info.clone();
            a.finished = Instant::now();
            a.outcome = outcome;
            self.shared.attempts.push(a);
        }
    }

    fn reply(&mut self, code: u16, body: Bytes, retry_after: Option<u64>) -> Resp {
        self.finish(Outcome::Status(code));
        respond(code, body, retry_after)
    }

    fn error(&mut self, code: u16, message: &str) -> Resp {
        self.reply(code, render::error_body(code, message, None), None)
    }
}

impl Drop for ChatGuard<'_> {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled);
    }
}

/// How a chat request ends before its answer: a reply now, or a dropped connection.
enum Early {
    // Boxed: the steps' results stay small on the happy path.
    Reply(Box<Resp>),
    Drop,
}

impl Early {
    fn reply(resp: Resp) -> Self {
        Early::Reply(Box::new(resp))
    }
}

impl ChatGuard<'_> {
    /// Ends the request with an error reply.
    fn refuse(&mut self, code: u16, message: &str) -> Early {
        Early::reply(self.error(code, message))
    }
}

/// `POST /v1/chat/completions`, step by step; each step records what it learns in the
/// request's [`Attempt`] and may end the request early with its reply.
async fn chat(shared: &Arc<Shared>, req: Request<Incoming>) -> Result<Resp, DropConnection> {
    let mut g = ChatGuard::new(shared);
    match answer_chat(shared, &mut g, req).await {
        Ok(resp) => Ok(resp),
        Err(Early::Reply(resp)) => Ok(*resp),
        Err(Early::Drop) => Err(DropConnection),
    }
}

async fn answer_chat(
    shared: &Arc<Shared>,
    g: &mut ChatGuard<'_>,
    req: Request<Incoming>,
) -> Result<Resp, Early> {
    let details = shared.cfg.log_prompts && shared.attempts.enabled();
    let header_shape = check_head(shared, g, &req, details)?;
    let body = read_body(g, req, shared.cfg.max_body_bytes).await?;
    let parsed = parse_request(g, &body, details)?;
    let model = pick_model(shared, g, &parsed)?;
    let (payload, markers) = read_payload(g, &parsed, details)?;
    let dynamic = shared.dynamic();
    let fault = pick_fault(shared, &dynamic, &markers, g.info.content_hash, g.seq);
    let (answer, prompt_tokens) = apply_fault(shared, g, fault, &parsed).await?;
    check_context(shared, g, &parsed, prompt_tokens)?;
    // The slot and the `processing` gauge live until the answer is sent.
    let (_slot, hold_from) = take_slot(shared, g).await?;
    let _processing = Gauge::enter(&shared.counters.processing, &shared.counters.max_processing);
    let delay = markers
        .latency
        .unwrap_or_else(|| dynamic.latency.pick(shared.draw(STREAM_LATENCY, g.seq)))
        + prefill_delay(shared, &parsed);
    // Built before the hold so that the hold is the configured latency, not latency + work.
    let input = AnswerInput {
        seq: g.seq,
        model,
        shape: markers.shape.or(header_shape).unwrap_or(shared.cfg.shape),
        max_tokens: g.info.max_tokens,
        prompt_tokens,
        think_bytes: shared.cfg.think_bytes,
    };
    let prepared = prepare_answer(shared, answer, &input, &payload);
    if !delay.is_zero() {
        hold_until(hold_from + delay).await;
    }
    let body = match prepared {
        Ok(Prepared::Whole(bytes)) => MockBody::from(bytes),
        // Generated (and counted as streaming) from now on, as the client reads.
        Ok(Prepared::Filler(total)) => MockBody::filler(Arc::clone(&shared.counters), total),
        Err(e) => return Err(g.refuse(500, &format!("ra-mock: could not encode the answer: {e}"))),
    };
    g.finish(Outcome::Status(200));
    Ok(respond_body(200, body, None))
}

/// With the prefix-cache model on: the prefill time of the prompt tokens this replica
/// has not cached, looked up once the request has its slot, as vLLM's scheduler would.
fn prefill_delay(shared: &Shared, parsed: &ChatRequest<'_>) -> Duration {
    let (Some(blocks), Some(p)) = (&shared.blocks, shared.cfg.prefix_cache) else {
        return Duration::ZERO;
    };
    let parts: Vec<&[u8]> = parsed
        .messages
        .iter()
        .filter_map(|m| m.content.as_ref())
        .filter_map(|c| match c {
            Content::Text(t) => Some(t.as_bytes()),
            // Multi-part contents are rare here; their text counts as uncached.
            Content::Parts(_) => None,
        })
        .collect();
    let lookup = blocks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .admit(&parts);
    let c = &shared.counters;
    c.cached_tokens.fetch_add(lookup.cached_tokens, Relaxed);
    c.prefilled_tokens
        .fetch_add(lookup.prefilled_tokens, Relaxed);
    let factor = u32::try_from(lookup.prefilled_tokens).unwrap_or(u32::MAX);
    p.prefill_per_token.saturating_mul(factor)
}

/// The head of the request: its headers (logged), the key, and the shape header.
fn check_head(
    shared: &Shared,
    g: &mut ChatGuard<'_>,
    req: &Request<Incoming>,
    details: bool,
) -> Result<Option<ReasoningShape>, Early> {
    if details {
        let headers = req
            .headers()
            .iter()
            .filter(|(name, _)| *name != AUTHORIZATION)
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        g.info.headers = Some(headers);
    }
    if let Some(denied) = shared.check_auth(req) {
        g.info.authorized = false;
        g.finish(Outcome::Status(401));
        return Err(Early::reply(denied));
    }
    match req
        .headers()
        .get(SHAPE_HEADER)
        .map(|v| v.to_str().map(str::parse::<ReasoningShape>))
    {
        None => Ok(None),
        Some(Ok(Ok(s))) => Ok(Some(s)),
        Some(_) => Err(g.refuse(400, "ra-mock: bad x-ra-mock-shape header")),
    }
}

/// The whole body, at most `limit` bytes (413 beyond).
async fn read_body(
    g: &mut ChatGuard<'_>,
    req: Request<Incoming>,
    limit: usize,
) -> Result<Bytes, Early> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(g.refuse(413, "ra-mock: request body too large"))
        }
        // The client broke the upload; nothing to answer (the guard records Cancelled).
        Err(_) => Err(Early::Drop),
    }
}

/// The chat request's fields (streaming refused), recorded in the attempt.
fn parse_request<'b>(
    g: &mut ChatGuard<'_>,
    body: &'b Bytes,
    details: bool,
) -> Result<ChatRequest<'b>, Early> {
    let parsed: ChatRequest<'_> = serde_json::from_slice(body)
        .map_err(|e| g.refuse(400, &format!("ra-mock: invalid request body: {e}")))?;
    if parsed.stream == Some(true) {
        // Answering a streaming request with a plain body would hide a client bug.
        return Err(g.refuse(400, "ra-mock: streaming (stream: true) is not supported"));
    }
    if details {
        // A second parse, only when logging details: keeps the hot path free of Value trees.
        if let Ok(mut fields) =
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
        {
            fields.remove("messages");
            g.info.body_fields = Some(fields);
        }
    }
    g.info.model = parsed.model.as_deref().map(str::to_owned);
    g.info.max_tokens = parsed.max_completion_tokens.or(parsed.max_tokens);
    g.info.seed = parsed.seed;
    g.info.temperature = parsed.temperature;
    Ok(parsed)
}

/// The model asked for (vLLM's 404 for an unknown one), or the first served.
fn pick_model<'a>(
    shared: &'a Shared,
    g: &mut ChatGuard<'_>,
    parsed: &'a ChatRequest<'_>,
) -> Result<&'a str, Early> {
    match parsed.model.as_deref() {
        Some(m) if shared.cfg.models.iter().any(|s| s == m) => Ok(m),
        Some(m) => {
            let msg = format!("The model `{m}` does not exist.");
            Err(Early::reply(g.reply(
                404,
                render::error_body(404, &msg, Some("model")),
                None,
            )))
        }
        None => Ok(shared.cfg.models.first().map_or("ra-mock", String::as_str)),
    }
}

/// The last user message as RewardAnything's JSON, and the markers in its prompt; the
/// hashes (and the prompt, when logging details) go into the attempt.
fn read_payload(
    g: &mut ChatGuard<'_>,
    parsed: &ChatRequest<'_>,
    details: bool,
) -> Result<(Payload, Markers), Early> {
    let Some(user) = parsed
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .and_then(|m| m.content.as_ref())
    else {
        return Err(g.refuse(400, "ra-mock: no user message"));
    };
    let user_text = user.text();
    let payload: Payload = serde_json::from_str(&user_text).map_err(|e| {
        let msg = format!("ra-mock: the user message is not RewardAnything's JSON ({e})");
        g.refuse(400, &msg)
    })?;
    g.info.prompt_hash = fnv1a64(payload.prompt.as_bytes());
    g.info.content_hash = fnv1a64(user_text.as_bytes());
    if details {
        g.info.prompt = Some(payload.prompt.clone());
    }
    let markers = Markers::parse(&payload.prompt).map_err(|msg| g.refuse(400, &msg))?;
    Ok((payload, markers))
}

/// Applies `fault`: a status, drop or hang ends the request here; the others choose the
/// answer (or, for `400-context`, the prompt tokens the context check counts).
async fn apply_fault(
    shared: &Shared,
    g: &mut ChatGuard<'_>,
    fault: Option<Fault>,
    parsed: &ChatRequest<'_>,
) -> Result<(Answer, u64), Early> {
    let real_prompt_tokens: u64 = parsed
        .messages
        .iter()
        .filter_map(|m| m.content.as_ref())
        .map(|c| (c.len() as u64).div_ceil(4))
        .sum();
    let answer = match fault {
        None => Answer::Normal,
        Some(Fault::Status { code, retry_after }) => {
            let msg = format!("ra-mock: injected fault {code}");
            let body = render::error_body(code, &msg, None);
            return Err(Early::reply(g.reply(code, body, retry_after)));
        }
        Some(Fault::Drop) => {
            g.finish(Outcome::Dropped);
            return Err(Early::Drop);
        }
        Some(Fault::Hang) => {
            g.finish(Outcome::Hung);
            // Held until the client disconnects or the server is killed, which drops this future.
            let never: Infallible = std::future::pending().await;
            match never {}
        }
        Some(Fault::ContextLength { prompt_tokens: p }) => {
            let pretended = p.unwrap_or_else(|| {
                real_prompt_tokens.max(shared.cfg.context_length.saturating_sub(2767))
            });
            return Ok((Answer::Normal, pretended));
        }
        Some(Fault::Malformed) => Answer::Malformed,
        Some(Fault::Length) => Answer::Length,
        Some(Fault::WrongNames(f)) => Answer::WrongNames(f),
        Some(Fault::Error200) => Answer::Error200,
        Some(Fault::EndlessBody) => Answer::Filler(None),
        Some(Fault::HugeBody { bytes }) => Answer::Filler(Some(bytes)),
    };
    Ok((answer, real_prompt_tokens))
}

/// vLLM's context-length check of `prompt_tokens` plus the request's `max_tokens`.
fn check_context(
    shared: &Shared,
    g: &mut ChatGuard<'_>,
    parsed: &ChatRequest<'_>,
    prompt_tokens: u64,
) -> Result<(), Early> {
    let param = if parsed.max_completion_tokens.is_some() {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    match context_error(&shared.cfg, prompt_tokens, g.info.max_tokens, param) {
        None => Ok(()),
        Some((msg, p)) => Err(Early::reply(g.reply(
            400,
            render::error_body(400, &msg, p),
            None,
        ))),
    }
}

/// A capacity slot (none without a capacity) and when the hold starts: at arrival, or
/// when a queued request gets its slot. Over capacity, `Reject` answers 429.
async fn take_slot<'s>(
    shared: &'s Shared,
    g: &mut ChatGuard<'_>,
) -> Result<(Option<SemaphorePermit<'s>>, Instant), Early> {
    let arrived = g.info.arrived;
    let Some(sem) = &shared.slots else {
        return Ok((None, arrived));
    };
    if let Ok(permit) = sem.try_acquire() {
        return Ok((Some(permit), arrived));
    }
    match shared.cfg.over_capacity {
        // The semaphore is never closed, so this only fails if it were; then no limit.
        OverCapacity::Queue => Ok((sem.acquire().await.ok(), Instant::now())),
        OverCapacity::Reject { retry_after } => {
            shared.counters.rejected.fetch_add(1, Relaxed);
            let body = render::error_body(429, "ra-mock: server at capacity", None);
            Err(Early::reply(g.reply(429, body, retry_after)))
        }
    }
}

/// A 200 answer's body before the hold: rendered in full, or the size of a filler that
/// is generated only as the client reads.
enum Prepared {
    Whole(Bytes),
    Filler(Option<u64>),
}

fn prepare_answer(
    shared: &Shared,
    answer: Answer,
    input: &AnswerInput<'_>,
    payload: &Payload,
) -> Result<Prepared, serde_json::Error> {
    if let Answer::Filler(total) = answer {
        return Ok(Prepared::Filler(total));
    }
    let scored: Vec<(u8, &str)> = payload
        .responses
        .iter()
        .enumerate()
        .map(|(i, (name, text))| {
            let bias = if i == 0 { shared.cfg.position_bias } else { 0 };
            (biased_score(expected_score(text), bias), name.as_str())
        })
        .collect();
    answer.render(input, &scored).map(Prepared::Whole)
}

/// The fault for this request: forced > `fail-first` > `fault:` marker > random rates.
fn pick_fault(
    shared: &Shared,
    dynamic: &Dynamic,
    markers: &Markers,
    content_hash: u64,
    seq: u64,
) -> Option<Fault> {
    dynamic
        .forced_fault
        .or_else(|| {
            let (n, fault) = markers.fail_first?;
            let mut counts = shared.fail_first.lock().unwrap_or_else(|e| e.into_inner());
            let seen = counts.entry(content_hash).or_insert(0);
            *seen += 1;
            (*seen <= n).then_some(fault)
        })
        .or(markers.fault)
        .or_else(|| {
            if shared.cfg.fault_rates.total() > 0.0 {
                shared.cfg.fault_rates.pick(shared.draw(STREAM_FAULT, seq))
            } else {
                None
            }
        })
}

/// Message of the `error-200` fault's body.
const ERROR_200_MESSAGE: &str = "ra-mock: injected error in a 200 answer (error-200)";

/// What a 200 answer carries.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// The mock's judgment.
    Normal,
    /// Prose instead of JSON.
    Malformed,
    /// Cut inside the think block, `finish_reason: "length"`.
    Length,
    /// A judgment with the wrong names.
    WrongNames(NameFault),
    /// An error envelope.
    Error200,
    /// A generated body of this many bytes, or endless.
    Filler(Option<u64>),
}

/// What rendering a completion needs besides the scores.
struct AnswerInput<'a> {
    seq: u64,
    model: &'a str,
    shape: ReasoningShape,
    max_tokens: Option<u64>,
    prompt_tokens: u64,
    think_bytes: usize,
}

impl Answer {
    /// The body of a whole (not generated) answer.
    fn render(
        self,
        a: &AnswerInput<'_>,
        scored: &[(u8, &str)],
    ) -> Result<Bytes, serde_json::Error> {
        let text = match self {
            Answer::Error200 => return Ok(render::error_body(500, ERROR_200_MESSAGE, None)),
            Answer::Malformed => render::MALFORMED_ANSWER.to_owned(),
            Answer::WrongNames(f) => wrong_answer(f, scored),
            Answer::Normal | Answer::Length | Answer::Filler(_) => render::answer_json(scored),
        };
        let reasoning = render::reasoning_text(scored, a.think_bytes);
        let force_length = matches!(self, Answer::Length);
        let completion =
            render::shape_completion(a.shape, &reasoning, &text, a.max_tokens, force_length);
        render::completion_body(
            a.seq,
            unix_now(),
            a.model,
            a.shape,
            &completion,
            a.prompt_tokens,
        )
    }
}

/// vLLM's context-length validation (see [`ContextErrorStyle`]); `Some((message, param))` on failure.
fn context_error(
    cfg: &Config,
    p: u64,
    m: Option<u64>,
    param: &'static str,
) -> Option<(String, Option<&'static str>)> {
    let l = cfg.context_length;
    let legacy = cfg.context_error_style == ContextErrorStyle::Legacy;
    if let Some(m) = m
        && m > l
        && !legacy
    {
        let msg = format!(
            "{param}={m} cannot be greater than max_model_len=max_total_tokens={l}. \
             Please request fewer output tokens. (parameter={param}, value={m})"
        );
        return Some((msg, Some(param)));
    }
    let mo = m.unwrap_or(0);
    if p + mo <= l {
        return None;
    }
    let v18 = |p: u64, at_least: &str| {
        format!(
            "This model's maximum context length is {l} tokens. However, you requested {mo} output tokens \
             and your prompt contains {at_least}{p} input tokens, for a total of {at_least}{t} tokens. \
             Please reduce the length of the input prompt or the number of requested output tokens. \
             (parameter=input_tokens, value={p})",
            t = p + mo
        )
    };
    let msg = match cfg.context_error_style {
        ContextErrorStyle::AtLeast => v18(p, "at least "),
        ContextErrorStyle::Exact => v18(p, ""),
        ContextErrorStyle::Truncated => v18(p.min(l.saturating_sub(mo) + 1), "at least "),
        ContextErrorStyle::Legacy => {
            return Some((
                if p >= l || m.is_none() {
                    format!(
                        "This model's maximum context length is {l} tokens. However, your request has {p} input tokens. \
                         Please reduce the length of the input messages."
                    )
                } else {
                    format!(
                        "'max_tokens' or 'max_completion_tokens' is too large: {mo}. This model's maximum context \
                         length is {l} tokens and your request has {p} input tokens ({mo} > {l} - {p})."
                    )
                },
                None,
            ));
        }
    };
    Some((msg, Some("input_tokens")))
}

/// Waits until `until`, to well under a millisecond. Tokio's timer rounds a deadline up
/// to its next millisecond tick (and wakes a little after it), which would hold every
/// request ~0.5–1 ms longer than configured and make a 200 ms server a 200.7 ms one:
/// sleep to just before, then yield until the instant. Requests held together spin
/// together, so this costs about a millisecond of CPU per wave, not per request.
async fn hold_until(until: Instant) {
    const TICK: Duration = Duration::from_millis(1);
    let coarse = until.checked_sub(TICK).unwrap_or(until);
    tokio::time::sleep_until(coarse.into()).await;
    while Instant::now() < until {
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(style: ContextErrorStyle) -> Config {
        Config {
            models: vec!["m".into()],
            capacity: None,
            over_capacity: OverCapacity::Queue,
            shape: ReasoningShape::Inline,
            seed: 0,
            api_key: None,
            fault_rates: FaultRates::default(),
            context_length: 32768,
            context_error_style: style,
            health_unavailable_for: Duration::ZERO,
            think_bytes: 0,
            attempt_log_capacity: 0,
            log_prompts: false,
            max_body_bytes: 1 << 20,
            latency: Latency::None,
            position_bias: 0,
            prefix_cache: None,
        }
    }

    #[test]
    fn context_messages() {
        let c = cfg(ContextErrorStyle::AtLeast);
        assert!(context_error(&c, 30001, Some(2767), "max_tokens").is_none());
        assert!(context_error(&c, 30001, None, "max_tokens").is_none());
        let (msg, param) = context_error(&c, 30001, Some(4096), "max_tokens").unwrap();
        assert_eq!(
            msg,
            "This model's maximum context length is 32768 tokens. However, you requested 4096 output tokens \
             and your prompt contains at least 30001 input tokens, for a total of at least 34097 tokens. \
             Please reduce the length of the input prompt or the number of requested output tokens. \
             (parameter=input_tokens, value=30001)"
        );
        assert_eq!(param, Some("input_tokens"));
        let (msg, _) = context_error(
            &cfg(ContextErrorStyle::Truncated),
            30001,
            Some(4096),
            "max_tokens",
        )
        .unwrap();
        assert!(
            msg.contains("at least 28673 input tokens, for a total of at least 32769 tokens"),
            "{msg}"
        );
        let (msg, _) = context_error(
            &cfg(ContextErrorStyle::Legacy),
            30001,
            Some(4096),
            "max_tokens",
        )
        .unwrap();
        assert!(
            msg.starts_with("'max_tokens' or 'max_completion_tokens' is too large: 4096."),
            "{msg}"
        );
        let (msg, _) = context_error(&c, 10, Some(40000), "max_tokens").unwrap();
        assert!(
            msg.starts_with("max_tokens=40000 cannot be greater than"),
            "{msg}"
        );
    }
}
