//! Errors as HTTP answers: a status and a JSON body naming the kind.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rewardanything_client::{JudgeError, JudgeErrorKind};
use serde::Serialize;

/// One entry of a FastAPI-like validation `detail`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldError {
    /// Where: `["body", 3, "responses"]`.
    pub loc: Vec<serde_json::Value>,
    /// What is wrong.
    pub msg: String,
    /// FastAPI's error type: `missing`, `json_invalid`, `value_error`, …
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// Why a request got no result.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or a wrong bearer key.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The body is over `max_body_bytes`.
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// The body did not arrive within the body timeout.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// The body could not be read.
    #[error("cannot read the request body: {0}")]
    BadBody(String),
    /// An empty batch (the reference answers 400 `No requests provided`).
    #[error("No requests provided")]
    EmptyBatch,
    /// The body is not a valid request.
    #[error("invalid request: {}", .0.first().map(|e| e.msg.as_str()).unwrap_or(""))]
    Invalid(Vec<FieldError>),
    /// No such route (FastAPI's `{"detail": "Not Found"}`).
    #[error("Not Found")]
    NotFound,
    /// The route exists for another method.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    /// The budget of buffered request bytes is spent.
    #[error("the gateway is holding as many request bytes as it may; retry shortly")]
    Overloaded,
    /// The request arrived on a connection just closed to make room for a new one (at
    /// the connection cap); nothing of it was done.
    #[error("the connection was closed to make room for another; retry on a new one")]
    ConnectionClosed,
    /// The shutdown grace ran out before this request finished.
    #[error("the gateway is shutting down and the grace ran out")]
    ShuttingDown,
    /// The judgment failed.
    #[error("{0}")]
    Judge(#[from] JudgeError),
    /// No such batch job (the reference's message).
    #[error("Batch request not found")]
    JobNotFound,
    /// The job did not finish within `max_timeout` (the reference's message).
    #[error("Request timed out")]
    JobTimeout,
    /// The job could not finish (the reference's `Task failed: …`).
    #[error("Task failed: {0}")]
    JobFailed(String),
    /// This gateway has no job store.
    #[error("batch jobs are not enabled on this gateway (ra gateway --base-output-path)")]
    JobsDisabled,
    /// The job directory cannot be used now (another gateway holds it, it is not
    /// writable); the message says why. Tried again on the next job request.
    #[error(
        "batch jobs are unavailable: {0}; give this gateway a directory of its own \
         (ra gateway --base-output-path DIR)"
    )]
    JobsUnavailable(String),
    /// A query parameter is not valid (FastAPI's `detail` list, at `["query", name]`).
    #[error("invalid query: {}", .0.first().map(|e| e.msg.as_str()).unwrap_or(""))]
    InvalidQuery(Vec<FieldError>),
    /// The job store holds as many jobs as it may.
    #[error("the gateway holds {0} jobs, its limit; POST /api/clear_tasks to free it")]
    TooManyJobs(usize),
    /// The gateway failed (disk I/O); the message says what.
    #[error("{0}")]
    Internal(String),
}

/// `{"kind", "message"}` of an error body (and of a failed batch item).
#[derive(Debug, Clone, Serialize)]
pub struct ErrorInfo {
    /// A stable snake_case name (the client's `kind_str`, or the gateway's own).
    pub kind: String,
    /// A human-readable explanation.
    pub message: String,
}

impl ErrorInfo {
    /// The kind and message of a failed judgment.
    pub fn of(e: &JudgeError) -> Self {
        ErrorInfo {
            kind: e.kind_str().to_string(),
            message: e.to_string(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    detail: serde_json::Value,
    error: &'a ErrorInfo,
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::BadBody(_) | ApiError::EmptyBatch => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::ShuttingDown | ApiError::Overloaded | ApiError::ConnectionClosed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Judge(e) => judge_status(e),
            ApiError::JobNotFound => StatusCode::NOT_FOUND,
            ApiError::JobTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::JobFailed(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::JobsDisabled => StatusCode::NOT_IMPLEMENTED,
            ApiError::TooManyJobs(_) | ApiError::JobsUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::InvalidQuery(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// The stable snake_case name of this error, as `error.kind` of the body.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::TooLarge(_) => "body_too_large",
            ApiError::BadBody(_) => "bad_body",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::EmptyBatch => "empty_batch",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Overloaded => "overloaded",
            ApiError::ConnectionClosed => "connection_closed",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Invalid(_) => "invalid_request",
            ApiError::Judge(e) => e.kind_str(),
            ApiError::JobNotFound => "not_found",
            ApiError::JobTimeout => "timed_out",
            ApiError::JobFailed(_) => "job_failed",
            ApiError::JobsDisabled => "jobs_disabled",
            ApiError::TooManyJobs(_) => "too_many_jobs",
            ApiError::JobsUnavailable(_) => "jobs_unavailable",
            ApiError::InvalidQuery(_) => "invalid_request",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// Upstream trouble is the gateway's 502/504; a closed client (shutting down) is 503.
fn judge_status(e: &JudgeError) -> StatusCode {
    match &e.kind {
        JudgeErrorKind::Timeout(_) | JudgeErrorKind::Deadline(_) => StatusCode::GATEWAY_TIMEOUT,
        JudgeErrorKind::Cancelled | JudgeErrorKind::NoEndpoint => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let info = ErrorInfo {
            kind: self.kind().to_string(),
            message: self.to_string(),
        };
        let detail = match &self {
            // FastAPI's shape for validation errors: a list of {loc, msg, type}.
            ApiError::Invalid(errors) | ApiError::InvalidQuery(errors) => {
                serde_json::to_value(errors).unwrap_or_default()
            }
            _ => serde_json::Value::String(info.message.clone()),
        };
        let mut response = (
            self.status(),
            Json(ErrorBody {
                detail,
                error: &info,
            }),
        )
            .into_response();
        if matches!(self, ApiError::Overloaded) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
