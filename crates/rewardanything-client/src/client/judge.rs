//! One judgment: render once, then attempts until an answer parses or the retry
//! decision says stop. Split by phase: prepare the call, wait for a slot, send, read the
//! body (the slot is released here, before decoding, so the next request can leave),
//! decode and parse, classify a failure.

use std::time::{Duration, Instant};

use indexmap::IndexMap;
use reqwest::header::RETRY_AFTER;
use serde_json::{Map, Value};
use tokio::sync::SemaphorePermit;

use super::config::OWN_FIELDS;
use super::{Inner, Judged, Usage};
use crate::balance::Outcome;
use crate::error::{JudgeError, JudgeErrorKind};
use crate::judgment::{Judgment, ParseError};
use crate::parse::{ParseOptions, parse_completion_with};
use crate::render::{JudgeRequest, Masking, RenderedPrompt, content_hash, render};
use crate::retry::{AttemptState, Backoff, Decision, classify};
use crate::wire::{
    Answer, AttemptError, AttemptSampling, Buffered, chat_body, decode_completion,
    parse_retry_after, read_capped, server_message,
};

/// Temperature of a re-ask of a malformed answer when sampling is greedy.
const REASK_TEMPERATURE: f64 = 0.6;

/// A judgment in progress.
struct Call<'a> {
    inner: &'a Inner,
    request: &'a JudgeRequest,
    model: &'a str,
    rendered: RenderedPrompt,
    /// For an unmasked request, each name to itself: the answer is validated against
    /// the request's names whether or not they were masked.
    identity: Option<IndexMap<String, String>>,
    per_request: Map<String, Value>,
    sampling: AttemptSampling,
    body: bytes::Bytes,
    backoff: Backoff,
    started: Instant,
    deadline_at: Option<Instant>,
    attempts: u32,
    lowered_max_tokens: bool,
    reasked: bool,
}

/// The answer of one attempt, read but not decoded; it holds its share of the client's
/// answer budget until dropped.
struct RawAnswer {
    status: u16,
    retry_after: Option<Duration>,
    body: Buffered,
}

impl Inner {
    pub(super) async fn judge(
        &self,
        request: &JudgeRequest,
        masking: Masking,
    ) -> Result<Judged, JudgeError> {
        self.discovery.ensure_started(&self.balancer).await;
        let model = self
            .model()
            .await
            .map_err(|e| JudgeError::new(JudgeErrorKind::ModelDiscovery(e), 0))?;
        let started = Instant::now();
        let deadline_at = self.config.deadline.and_then(|d| started.checked_add(d));
        // Render only once a slot is free: judgments waiting in line (a caller may queue
        // thousands) hold no prompt and no body.
        let mut first_slot = Some(self.wait_for_slot(deadline_at, 0).await?);
        let mut call = Call::new(self, request, masking, model, started, deadline_at);
        loop {
            let permit = match first_slot.take() {
                Some(permit) => permit,
                None => self.wait_for_slot(call.deadline_at, call.attempts).await?,
            };
            let (timeout, deadline_bound) = call.attempt_timeout()?;
            let Some(lease) = self.balancer.pick() else {
                return Err(JudgeError::new(JudgeErrorKind::NoEndpoint, call.attempts));
            };
            call.attempts += 1;
            let raw = self.send(lease.endpoint(), &call.body, timeout).await;
            // The slot's next request may leave while this answer is decoded and parsed.
            drop(permit);
            let endpoint = std::sync::Arc::clone(lease.endpoint());
            drop(lease);
            let error = match raw {
                Ok(raw) if raw.is_success() => match call.decode_and_parse(raw.body).await {
                    Ok((judgment, usage)) => {
                        self.balancer.record(&endpoint, Outcome::Alive);
                        return Ok(call.judged(judgment, usage, &endpoint.shown));
                    }
                    Err(Undecoded::Parse(e)) => {
                        self.balancer.record(&endpoint, Outcome::Alive);
                        if call.may_reask() {
                            tracing::debug!(kind = e.kind.as_str(), "malformed answer; re-asking");
                            call.reask();
                            continue;
                        }
                        return Err(JudgeError::new(JudgeErrorKind::Parse(e), call.attempts));
                    }
                    Err(Undecoded::Attempt(e)) => e,
                },
                Ok(raw) => raw.into_error(),
                Err(e) => e,
            };
            let state = call.state(timeout, deadline_bound);
            let (outcome, decision) = classify(error, &state);
            if let Some(outcome) = outcome {
                self.balancer.record(&endpoint, outcome);
            }
            match decision {
                Decision::Adjust { max_tokens } => {
                    tracing::debug!(
                        from = call.sampling.max_tokens,
                        to = max_tokens,
                        "context overflow; lowering max_tokens"
                    );
                    call.lowered_max_tokens = true;
                    call.sampling.max_tokens = max_tokens;
                    call.rebuild_body();
                }
                Decision::Fail(kind) => return Err(JudgeError::new(kind, call.attempts)),
                Decision::Deadline => return Err(self.deadline_error(call.attempts)),
                Decision::Retry { error, retry_after } => {
                    call.wait_before_retry(error, retry_after, &endpoint.shown)
                        .await?;
                }
            }
        }
    }

    /// Waits for the rate limiter and an in-flight slot; both count against the deadline.
    async fn wait_for_slot(
        &self,
        deadline_at: Option<Instant>,
        attempts: u32,
    ) -> Result<SemaphorePermit<'_>, JudgeError> {
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
        match permit {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(JudgeError::new(JudgeErrorKind::Cancelled, attempts)),
            Err(_elapsed) => Err(self.deadline_error(attempts)),
        }
    }

    /// One HTTP attempt, the body read under the same timeout (and size cap).
    async fn send(
        &self,
        endpoint: &crate::balance::Endpoint,
        body: &bytes::Bytes,
        timeout: Duration,
    ) -> Result<RawAnswer, AttemptError> {
        let send = async {
            let response = endpoint
                .http(&self.http)
                .post(endpoint.completions_url.clone())
                .headers(self.headers.clone())
                .body(body.clone())
                .send()
                .await
                .map_err(AttemptError::transport)?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let body = read_capped(
                response,
                self.config.max_response_bytes,
                &self.response_budget,
            )
            .await?;
            Ok(RawAnswer {
                status,
                retry_after,
                body,
            })
        };
        tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| AttemptError::Timeout)?
    }

    fn deadline_error(&self, attempts: u32) -> JudgeError {
        JudgeError::new(
            JudgeErrorKind::Deadline(self.config.deadline.unwrap_or_default()),
            attempts,
        )
    }
}

impl RawAnswer {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn into_error(self) -> AttemptError {
        AttemptError::Http {
            status: self.status,
            message: server_message(&self.body),
            retry_after: self.retry_after,
        }
    }
}

/// Why a 2xx body gave no judgment.
enum Undecoded {
    /// Not a chat completion.
    Attempt(AttemptError),
    /// A completion without a valid judgment.
    Parse(ParseError),
}

/// Decodes a completion and parses its judgment (CPU work, tens of microseconds).
fn decode_and_parse(
    body: &[u8],
    names: Option<&IndexMap<String, String>>,
    options: &ParseOptions,
) -> Result<(Judgment, Option<Usage>), Undecoded> {
    let answer: Answer = decode_completion(body).map_err(Undecoded::Attempt)?;
    let judgment =
        parse_completion_with(&answer.completion(), names, options).map_err(Undecoded::Parse)?;
    Ok((judgment, answer.usage))
}

impl<'a> Call<'a> {
    fn new(
        inner: &'a Inner,
        request: &'a JudgeRequest,
        masking: Masking,
        model: &'a str,
        started: Instant,
        deadline_at: Option<Instant>,
    ) -> Self {
        let config = &inner.config;
        let rendered = render(request, masking);
        let identity = rendered.masked2real.is_none().then(|| {
            request
                .responses
                .keys()
                .map(|k| (k.clone(), k.clone()))
                .collect()
        });
        let per_request = match &config.body_hook {
            Some(hook) => hook(request, &rendered)
                .into_iter()
                .filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str()))
                .collect(),
            None => Map::new(),
        };
        // The salt only matters for a seeded jitter; hashing every request would cost
        // microseconds on the hot path for nothing.
        let salt = match config.retry.jitter_seed {
            Some(_) => content_hash(request),
            None => 0,
        };
        let s = &config.sampling;
        let mut call = Call {
            inner,
            request,
            model,
            rendered,
            identity,
            per_request,
            sampling: AttemptSampling {
                temperature: s.temperature,
                max_tokens: s.max_tokens,
                top_p: s.top_p,
                seed: s.seed,
            },
            body: bytes::Bytes::new(),
            backoff: config.retry.backoff(salt),
            started,
            deadline_at,
            attempts: 0,
            lowered_max_tokens: false,
            reasked: false,
        };
        call.rebuild_body();
        call
    }

    fn rebuild_body(&mut self) {
        self.body = chat_body(
            self.model,
            &self.rendered.messages,
            &self.sampling,
            &self.inner.config.extra_body,
            &self.per_request,
        );
    }

    /// This attempt's timeout, and whether the deadline (not the attempt timeout) set it.
    fn attempt_timeout(&self) -> Result<(Duration, bool), JudgeError> {
        let limit = self.inner.config.attempt_timeout;
        match self.deadline_at {
            None => Ok((limit, false)),
            Some(at) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Ok((left.min(limit), left < limit)),
                _ => Err(self.inner.deadline_error(self.attempts)),
            },
        }
    }

    fn state(&self, timeout: Duration, deadline_bound: bool) -> AttemptState {
        AttemptState {
            max_tokens: self.sampling.max_tokens,
            lowered_max_tokens: self.lowered_max_tokens,
            deadline_bound,
            timeout,
            max_retry_after: self.inner.config.retry.max_retry_after,
        }
    }

    /// Decodes and parses the answer once the slot is free. Yielding first lets the
    /// slot's next request (woken when the slot was released) leave before this CPU
    /// work: when a wave of answers arrives together, the next requests go out first.
    /// (Parsing on the blocking pool instead was measured slower: a thread hand-off
    /// costs more than the parse.)
    async fn decode_and_parse(
        &self,
        body: Buffered,
    ) -> Result<(Judgment, Option<Usage>), Undecoded> {
        tokio::task::yield_now().await;
        let names = self
            .rendered
            .masked2real
            .as_ref()
            .or(self.identity.as_ref());
        decode_and_parse(&body, names, &self.inner.config.parse_options)
    }

    /// The judgment with the scores in the caller's order, and what it took.
    fn judged(&self, mut judgment: Judgment, usage: Option<Usage>, endpoint: &str) -> Judged {
        judgment.reorder(self.request.responses.keys().map(String::as_str));
        Judged {
            judgment,
            attempts: self.attempts,
            latency: self.started.elapsed(),
            usage,
            endpoint: endpoint.to_string(),
        }
    }

    fn may_reask(&self) -> bool {
        self.inner.config.reask_malformed && !self.reasked
    }

    /// Another seed; at temperature 0 a new seed changes nothing, so sample a little for
    /// the re-ask only.
    fn reask(&mut self) {
        self.reasked = true;
        self.sampling.seed = Some(self.sampling.seed.map_or(1, |s| s.wrapping_add(1)));
        self.sampling.temperature = self.sampling.temperature.max(REASK_TEMPERATURE);
        self.rebuild_body();
    }

    /// Sleeps the backoff before the next attempt, or returns the error when no attempt
    /// is left or the wait would outlive the deadline.
    async fn wait_before_retry(
        &mut self,
        error: JudgeErrorKind,
        retry_after: Option<Duration>,
        endpoint: &str,
    ) -> Result<(), JudgeError> {
        let Some(mut delay) = self.backoff.next_delay(retry_after) else {
            return Err(JudgeError::new(error, self.attempts));
        };
        if let Some(at) = self.deadline_at {
            let left = at.saturating_duration_since(Instant::now());
            if delay >= left {
                // Waiting would outlive the deadline: report the real failure.
                return Err(JudgeError::new(error, self.attempts));
            }
            delay = delay.min(left);
        }
        tracing::debug!(endpoint, attempt = self.attempts, error = %error, ?delay, "retrying");
        tokio::time::sleep(delay).await;
        Ok(())
    }
}
