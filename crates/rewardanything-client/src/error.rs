//! What can go wrong while asking for a judgment.

use std::sync::Arc;
use std::time::Duration;

use crate::judgment::ParseError;

/// Why a judgment failed, after `attempts` tries.
///
/// ```
/// use rewardanything_client::{JudgeError, JudgeErrorKind};
/// let e = JudgeError::new(JudgeErrorKind::Timeout(std::time::Duration::from_secs(1)), 3);
/// assert_eq!(e.kind_str(), "timeout");
/// assert_eq!(e.attempts, 3);
/// ```
///
/// When no request could be sent, the message says so and why instead of counting
/// zero attempts:
///
/// ```
/// use rewardanything_client::{JudgeError, JudgeErrorKind};
/// let e = JudgeError::new(JudgeErrorKind::NoEndpoint, 0);
/// assert!(e.to_string().contains("nothing was sent"), "{e}");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} ({})", attempts_text(kind, *attempts))]
#[non_exhaustive]
pub struct JudgeError {
    /// What happened on the last attempt.
    pub kind: JudgeErrorKind,
    /// How many HTTP attempts were made (0 when none could start).
    pub attempts: u32,
    /// Wall time from the call to the failure (set by the client's judging methods;
    /// zero from [`new`](Self::new)).
    pub latency: Duration,
}

impl JudgeError {
    /// An error of this kind after this many attempts.
    ///
    /// ```
    /// use rewardanything_client::{JudgeError, JudgeErrorKind};
    /// let e = JudgeError::new(JudgeErrorKind::Cancelled, 0);
    /// assert!(e.to_string().contains("cancelled"));
    /// ```
    pub fn new(kind: JudgeErrorKind, attempts: u32) -> Self {
        JudgeError {
            kind,
            attempts,
            latency: Duration::ZERO,
        }
    }

    /// A stable snake_case name for the kind, as `ra score` writes it: `transport`,
    /// `timeout`, `deadline`, `http_status`, `context_length`, `bad_response`,
    /// `no_endpoint`, `model_discovery`, `cancelled`, or the parse error's own kind
    /// (`no_json_object`, …).
    ///
    /// ```
    /// use rewardanything_client::{JudgeError, JudgeErrorKind};
    /// let e = JudgeError::new(JudgeErrorKind::Http { status: 401, message: "no key".into() }, 1);
    /// assert_eq!(e.kind_str(), "http_status");
    /// ```
    pub fn kind_str(&self) -> &'static str {
        match &self.kind {
            JudgeErrorKind::Transport { .. } => "transport",
            JudgeErrorKind::Timeout(_) => "timeout",
            JudgeErrorKind::Deadline(_) => "deadline",
            JudgeErrorKind::Http { .. } => "http_status",
            JudgeErrorKind::ContextLength { .. } => "context_length",
            JudgeErrorKind::BadResponse(_) => "bad_response",
            JudgeErrorKind::NoEndpoint => "no_endpoint",
            JudgeErrorKind::ModelDiscovery(_) => "model_discovery",
            JudgeErrorKind::Cancelled => "cancelled",
            JudgeErrorKind::Parse(p) => p.kind.as_str(),
        }
    }

    /// The HTTP status of the last attempt, when the server answered.
    ///
    /// ```
    /// use rewardanything_client::{JudgeError, JudgeErrorKind};
    /// let e = JudgeError::new(JudgeErrorKind::Http { status: 503, message: String::new() }, 5);
    /// assert_eq!(e.status(), Some(503));
    /// ```
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            JudgeErrorKind::Http { status, .. } => Some(*status),
            JudgeErrorKind::ContextLength { .. } => Some(400),
            _ => None,
        }
    }
}

/// How many attempts were made, or, when none was, why nothing was sent.
fn attempts_text(kind: &JudgeErrorKind, attempts: u32) -> String {
    let why = match (attempts, kind) {
        (1, _) => return "after 1 attempt".into(),
        (2.., _) => return format!("after {attempts} attempts"),
        (0, JudgeErrorKind::ModelDiscovery(_)) => {
            "the model to ask for could not be found out first"
        }
        (0, JudgeErrorKind::NoEndpoint) => "no endpoint to send it to",
        (0, JudgeErrorKind::Cancelled) => "the client was closed before it could start",
        (0, JudgeErrorKind::Deadline(_)) => "the deadline passed while it waited for a free slot",
        (0, _) => "it failed before it could be sent",
    };
    format!("nothing was sent: {why}")
}

/// The kinds of [`JudgeError`].
///
/// ```
/// use rewardanything_client::JudgeErrorKind;
/// let k = JudgeErrorKind::BadResponse("no choices".into());
/// assert_eq!(k.to_string(), "bad response from server: no choices");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JudgeErrorKind {
    /// Could not connect, or the connection broke.
    #[error("transport error: {message}")]
    Transport {
        /// reqwest's error and its causes, without the URL (it may carry credentials).
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Arc<reqwest::Error>>,
    },
    /// One attempt took longer than the per-attempt timeout.
    #[error("attempt timed out after {0:?}")]
    Timeout(Duration),
    /// The overall per-judgment deadline passed.
    #[error("deadline of {0:?} exceeded")]
    Deadline(Duration),
    /// The server answered with a non-success status; `message` is its own text.
    #[error("HTTP {status}: {message}")]
    Http {
        /// The status code.
        status: u16,
        /// The server's error message (vLLM's or OpenAI's `message` field, else the body).
        message: String,
    },
    /// The prompt does not fit the model's context (vLLM's or llama.cpp's 400), and
    /// lowering `max_tokens` could not help or was already tried.
    #[error("context length exceeded: {message}")]
    ContextLength {
        /// The server's message.
        message: String,
    },
    /// A 2xx answer that is not a chat completion (including a 200 whose body is an
    /// error object, and a body over `max_response_bytes`); not retried.
    #[error("bad response from server: {0}")]
    BadResponse(String),
    /// No endpoint is configured.
    #[error("no endpoint configured")]
    NoEndpoint,
    /// No model was configured and none could be discovered from `/v1/models` (the
    /// cause, e.g. [`ConnectError::Unauthorized`], is kept).
    #[error("model discovery failed: {0}")]
    ModelDiscovery(#[source] Arc<ConnectError>),
    /// The client was closed ([`Client::close`](crate::Client::close)) before the
    /// judgment could start.
    #[error("cancelled: the client was closed")]
    Cancelled,
    /// The completion arrived but holds no valid judgment.
    #[error("{0}")]
    Parse(ParseError),
}

/// Why a [`Client`](crate::Client) could not be built: a setting is wrong from the
/// start. Failures met while running (an endpoint that does not answer, refuses the key
/// or serves another model) are [`ConnectError`]s.
///
/// ```
/// use rewardanything_client::BuildError;
/// let e = BuildError::NoEndpoint;
/// assert!(e.to_string().contains("endpoint"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No base URL was given.
    #[error("no endpoint given (e.g. http://127.0.0.1:8000/v1)")]
    NoEndpoint,
    /// A base URL does not parse.
    #[error("invalid endpoint URL {url:?}: {reason}")]
    InvalidEndpoint {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A header name or value is invalid (values are not echoed, they may be secrets).
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
    /// The HTTP client could not be created.
    #[error("cannot create HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    /// An invalid setting (e.g. a zero limit).
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Why an endpoint could not be reached, or could not serve, while running:
/// [`Client::connect`](crate::Client::connect), [`Client::list_models`](crate::Client::list_models)
/// and a judgment's model discovery (kept as the source of
/// [`JudgeErrorKind::ModelDiscovery`]).
///
/// ```
/// use rewardanything_client::ConnectError;
/// let e = ConnectError::AmbiguousModel { url: "http://a/v1".into(), models: vec![] };
/// assert_eq!(e.to_string(), "choose a model: http://a/v1 serves no model");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No endpoint to ask.
    #[error("no endpoint given (e.g. http://127.0.0.1:8000/v1)")]
    NoEndpoint,
    /// The URL given to [`Client::list_models`](crate::Client::list_models) is not an
    /// endpoint.
    #[error(transparent)]
    InvalidEndpoint(BuildError),
    /// The endpoint refused the API key (HTTP 401/403).
    #[error("unauthorized at {url} (HTTP {status}): {message}; check the API key (RA_API_KEY)")]
    Unauthorized {
        /// The URL asked (credentials redacted).
        url: String,
        /// 401 or 403.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The configured model is not among those the endpoint serves.
    #[error("model {model:?} is not served at {url} (it serves: {})", .served.join(", "))]
    ModelNotServed {
        /// The URL asked (credentials redacted).
        url: String,
        /// The configured model.
        model: String,
        /// The served model ids.
        served: Vec<String>,
    },
    /// `/v1/models` could not be read.
    #[error("cannot list models at {url}: {reason}")]
    ModelDiscovery {
        /// The URL asked (credentials redacted).
        url: String,
        /// What went wrong.
        reason: String,
        /// The transport error, when the endpoint could not be reached (its URL removed).
        #[source]
        source: Option<Arc<reqwest::Error>>,
    },
    /// No model was chosen and the endpoint serves several (or none).
    #[error("choose a model: {url} serves {}", if .models.is_empty() { "no model".to_string() } else { .models.join(", ") })]
    AmbiguousModel {
        /// The URL asked.
        url: String,
        /// The served model ids.
        models: Vec<String>,
    },
}
