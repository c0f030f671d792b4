//! The OpenAI-compatible wire dialect spoken by vLLM, llama.cpp and SGLang: the request
//! body, reading and decoding a completion, the servers' error messages, context-overflow
//! wording, `Retry-After`, and how an attempt failed. Everything here is about bytes on
//! the wire; what to do about a failure is decided in `retry`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::client::budget::{Reservation, ResponseBudget};
use crate::parse::Completion;
use crate::render::Message;

/// Token counts the server reported for one completion.
///
/// ```
/// let u: rewardanything_client::Usage =
///     serde_json::from_str(r#"{"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}"#).unwrap();
/// assert_eq!(u.completion_tokens, 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u64,
}

/// Why one attempt failed.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// Could not connect, or the connection broke.
    Transport {
        message: String,
        source: Arc<reqwest::Error>,
    },
    /// The attempt outlived its timeout.
    Timeout,
    /// A non-2xx answer.
    Http {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A 2xx answer that is not a usable chat completion (or a body over the cap).
    BadResponse(String),
}

impl AttemptError {
    /// A transport error, its URL removed (a URL may carry credentials).
    pub fn transport(e: reqwest::Error) -> Self {
        let e = e.without_url();
        AttemptError::Transport {
            message: transport_message(&e),
            source: Arc::new(e),
        }
    }
}

/// The sampling fields of one attempt (they change between attempts: a lowered
/// `max_tokens` after a context overflow, another seed for a re-ask).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AttemptSampling {
    pub temperature: f64,
    pub max_tokens: u32,
    pub top_p: Option<f64>,
    pub seed: Option<u64>,
}

/// A `/chat/completions` request body.
pub(crate) fn chat_body(
    model: &str,
    messages: &[Message],
    sampling: &AttemptSampling,
    extra: &Map<String, Value>,
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
        model,
        messages,
        temperature: sampling.temperature,
        max_tokens: sampling.max_tokens,
        top_p: sampling.top_p,
        seed: sampling.seed,
        extra,
        per_request,
    };
    let size = messages.iter().map(|m| m.content.len()).sum::<usize>() + 512;
    let mut out = Vec::with_capacity(size + size / 8);
    // Serializing strings, numbers and `Value`s into a Vec cannot fail (a non-finite
    // temperature is refused by the builder); an empty body would get a 400, reported.
    match serde_json::to_writer(&mut out, &body) {
        Ok(()) => out.into(),
        Err(_) => bytes::Bytes::new(),
    }
}

/// What one successful attempt produced, before parsing.
#[derive(Debug)]
pub(crate) struct Answer {
    pub content: String,
    pub reasoning: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
}

impl Answer {
    pub fn completion(&self) -> Completion<'_> {
        Completion {
            content: &self.content,
            reasoning: self.reasoning.as_deref(),
            finish_reason: self.finish_reason.as_deref(),
        }
    }
}

/// A body read whole, with its share of the client's answer budget (released when this
/// is dropped, so keep it until the body has been decoded).
pub(crate) struct Buffered {
    bytes: Vec<u8>,
    _reservation: Reservation,
}

impl std::ops::Deref for Buffered {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads a body chunk by chunk, refusing one longer than `cap` as soon as that is known
/// (from `Content-Length`, or when the running total passes it), so memory stays bounded
/// whatever the server sends. Before the first byte is buffered the body's size is
/// reserved in `budget`, shared by every request in flight (the rule is in
/// [`crate::client::budget`]).
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    budget: &ResponseBudget,
) -> Result<Buffered, AttemptError> {
    let cap = cap as u64;
    let whole = budget.bytes();
    let too_large = |limit: u64| {
        AttemptError::BadResponse(if limit < cap {
            format!(
                "response body larger than the client's whole {limit}-byte answer budget \
                 (max_buffered_response_bytes)"
            )
        } else {
            format!("response body larger than the {cap}-byte limit (max_response_bytes)")
        })
    };
    let limit = cap.min(whole);
    let declared = response.content_length();
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut reservation = budget.reserve(declared.unwrap_or(limit)).await;
    let reserved = reservation.bytes();
    // The reserved size is the most this buffer may hold: a declared size is allocated
    // at once, an undeclared body grows by doubling up to its reservation.
    let start = declared.unwrap_or(8192).min(reserved);
    let mut body = Vec::with_capacity(start as usize);
    reservation.track(body.capacity());
    while let Some(chunk) = response.chunk().await.map_err(AttemptError::transport)? {
        let needed = body.len() as u64 + chunk.len() as u64;
        if needed > reserved {
            // A declared body longer than declared is cut like an undeclared one.
            return Err(too_large(limit));
        }
        if needed > body.capacity() as u64 {
            let grown = needed.max(body.capacity() as u64 * 2).min(reserved);
            body.reserve_exact(grown as usize - body.len());
            reservation.track(body.capacity());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Buffered {
        bytes: body,
        _reservation: reservation,
    })
}

/// Decodes a 2xx chat completion. A 200 whose body is an error object (some proxies and
/// servers answer so) keeps the server's message.
pub(crate) fn decode_completion(bytes: &[u8]) -> Result<Answer, AttemptError> {
    #[derive(Deserialize)]
    struct ChatResponse {
        #[serde(default)]
        choices: Vec<Choice>,
        usage: Option<Usage>,
        #[serde(default)]
        error: Option<Value>,
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
        return Err(AttemptError::BadResponse(match response.error {
            Some(_) => format!(
                "the server answered 200 with an error: {}",
                server_message(bytes)
            ),
            None => "no choices in the completion".into(),
        }));
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

/// The model ids of an OpenAI model list (`GET /models`).
pub(crate) fn decode_models(bytes: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Models {
        data: Vec<ModelEntry>,
    }
    #[derive(Deserialize)]
    struct ModelEntry {
        id: String,
    }
    let models: Models =
        serde_json::from_slice(bytes).map_err(|e| format!("not an OpenAI model list: {e}"))?;
    Ok(models.data.into_iter().map(|m| m.id).collect())
}

/// reqwest's error with its causes (e.g. "connection refused"), without the URL: a URL
/// may carry credentials (`user:pass@`, `?api-key=`), and the endpoint is known anyway.
pub(crate) fn transport_message(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// The server's error message: OpenAI's `{"error": {"message"}}`, vLLM's
/// `{"message"}`, FastAPI's `{"detail"}`, else the start of the body.
pub(crate) fn server_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let found = v
            .pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .or_else(|| v.get("error"));
        match found {
            Some(Value::String(s)) => return truncate(s),
            Some(other) => return truncate(&other.to_string()),
            None => {}
        }
    }
    snippet(body)
}

/// A server's message cut to a size fit for an error line (a hostile server may send
/// megabytes of "message").
fn truncate(message: &str) -> String {
    const LIMIT: usize = 2000;
    match message.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_string(),
    }
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

/// A URL fit for logs and errors: a password (`user:pass@`) and the query (which may
/// hold `?api-key=`) are replaced.
pub(crate) fn redact_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Cannot fail on a URL that already has a password (it has a host).
        let _ = shown.set_password(Some("***"));
    }
    if shown.query().is_some() {
        shown.set_query(Some("***"));
    }
    shown.as_str().trim_end_matches('/').to_string()
}

/// A URL that did not parse, fit for an error message: anything that could be
/// credentials (before an `@` in the authority) or a query is replaced, and it is cut to
/// 100 characters.
pub(crate) fn redact_unparsed(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rfind('@') {
        Some(at) => format!("***@{}", &authority[at + 1..]),
        None => authority.to_string(),
    };
    let path = tail.split(['?', '#']).next().unwrap_or("");
    let query = if tail.contains('?') { "?***" } else { "" };
    let sep = if scheme.is_empty() { "" } else { "://" };
    format!("{scheme}{sep}{host}{path}{query}")
        .chars()
        .take(100)
        .collect()
}

/// Parses a `Retry-After` header: delay-seconds (possibly fractional), or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e6)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// What a context-length 400 says: the model's context size and the prompt's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContextOverflow {
    /// The model's context size in tokens.
    pub context: u64,
    /// The prompt's size in tokens (a lower bound in vLLM's wording).
    pub prompt_tokens: u64,
}

impl ContextOverflow {
    /// Reads vLLM's wordings (current: "…maximum context length is C tokens. However, you
    /// requested M output tokens and your prompt contains at least P input tokens…";
    /// older: "…(P in the messages, M in the completion)…" and "…your request has P input
    /// tokens…") and llama.cpp's ("request (P tokens) exceeds the available context size
    /// (C tokens)…").
    pub fn from_message(message: &str) -> Option<Self> {
        let context = number_after(message, "maximum context length is ")
            .or_else(|| number_after(message, "available context size ("))?;
        let prompt_tokens = number_after(message, "prompt contains at least ")
            .or_else(|| number_after(message, "your request has "))
            .or_else(|| number_after(message, "tokens ("))
            .or_else(|| number_after(message, "request ("))?;
        Some(ContextOverflow {
            context,
            prompt_tokens,
        })
    }

    /// The largest `max_tokens` that fits, if any room is left at all.
    pub fn fitting_max_tokens(&self) -> Option<u32> {
        let room = self.context.checked_sub(self.prompt_tokens)?;
        (room >= 1).then(|| u32::try_from(room).unwrap_or(u32::MAX))
    }

    /// Whether the prompt count is only a floor: vLLM (0.18 and later) stops counting
    /// after `context - requested + 1` prompt tokens and says "at least". Then the room
    /// left is unknown and lowering `max_tokens` would likely fail again.
    pub fn is_lower_bound(&self, message: &str) -> bool {
        message.contains("at least")
            && number_after(message, "you requested ").is_some_and(|requested| {
                self.prompt_tokens.checked_add(requested) == self.context.checked_add(1)
            })
    }

    /// Whether a server message is a context-length complaint at all.
    pub fn is_context_message(message: &str) -> bool {
        message.contains("maximum context length")
            || message.contains("exceeds the available context size")
    }
}

fn number_after(haystack: &str, needle: &str) -> Option<u64> {
    let start = haystack.find(needle)? + needle.len();
    let digits: String = haystack[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-3"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        // A date in the past is "now".
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(90));
        let d = parse_retry_after(&later).unwrap();
        assert!(
            d > Duration::from_secs(80) && d <= Duration::from_secs(90),
            "{d:?}"
        );
    }

    #[test]
    fn context_overflow_wordings() {
        let msg = "This model's maximum context length is 8192 tokens. However, you requested \
                   4096 output tokens and your prompt contains at least 6000 input tokens, for a \
                   total of at least 10096 tokens.";
        let c = ContextOverflow::from_message(msg).unwrap();
        assert_eq!((c.context, c.prompt_tokens), (8192, 6000));
        assert_eq!(c.fitting_max_tokens(), Some(2192));
        assert!(!c.is_lower_bound(msg));
        let floor = "This model's maximum context length is 8192 tokens. However, you requested \
                     4096 output tokens and your prompt contains at least 4097 input tokens";
        assert!(
            ContextOverflow::from_message(floor)
                .unwrap()
                .is_lower_bound(floor)
        );
        let llama = "request (9000 tokens) exceeds the available context size (8192 tokens), try increasing it";
        let c = ContextOverflow::from_message(llama).unwrap();
        assert_eq!((c.context, c.prompt_tokens), (8192, 9000));
        assert_eq!(c.fitting_max_tokens(), None);
        assert!(ContextOverflow::is_context_message(llama));
    }

    #[test]
    fn a_200_error_body_keeps_the_server_message() {
        let e = decode_completion(br#"{"error": {"message": "upstream overloaded", "code": 503}}"#)
            .unwrap_err();
        match e {
            AttemptError::BadResponse(m) => assert!(m.contains("upstream overloaded"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unparsable_urls_are_redacted_too() {
        assert_eq!(
            redact_unparsed("http://u:secret@h:99999/v1"),
            "http://***@h:99999/v1"
        );
        assert_eq!(
            redact_unparsed("http://h:1/v1?key=k3y"),
            "http://h:1/v1?***"
        );
        assert_eq!(redact_unparsed("u:secret@h/v1"), "***@h/v1");
        assert!(!redact_unparsed("ftp://a:b:c@@d/").contains('b'));
    }

    #[test]
    fn urls_are_redacted_for_display() {
        let u = reqwest::Url::parse("http://user:s3cret@h:8000/v1?api-key=k3y").unwrap();
        let shown = redact_url(&u);
        assert!(
            !shown.contains("s3cret") && !shown.contains("k3y"),
            "{shown}"
        );
        assert!(shown.starts_with("http://user:***@h:8000/v1"), "{shown}");
        let plain = reqwest::Url::parse("http://127.0.0.1:8000/v1/").unwrap();
        assert_eq!(redact_url(&plain), "http://127.0.0.1:8000/v1");
    }
}
