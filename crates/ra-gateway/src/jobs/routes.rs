//! The job routes: `POST /api/batch_request`, `GET /api/batch_request/{id}`,
//! `GET /api/list_tasks`, `POST /api/clear_tasks`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ra_batch::Stop;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{JobStore, Status, is_job_id};
use crate::body::{self, Checked};
use crate::error::{ApiError, FieldError};
use crate::state::AppState;

/// The reference's default wait of `GET /api/batch_request/{id}`.
const DEFAULT_MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest wait honoured: a larger `max_timeout` waits this long.
pub const MAX_TIMEOUT_CAP: Duration = Duration::from_secs(3600);

/// The job store, its directory open (on the first use of a job route).
async fn store(state: &AppState) -> Result<&JobStore, ApiError> {
    let store = state.jobs.as_ref().ok_or(ApiError::JobsDisabled)?;
    store.ready().await?;
    Ok(store)
}

fn stopping(store: &JobStore) -> bool {
    *store.stopping().borrow() != Stop::Run
}

/// Accepts a job: the requests are checked, written to disk (the job exists once they
/// are), and judged in the background.
pub async fn create(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    // The store first: a gateway without jobs (or whose directory cannot be used) reads
    // no body, so the extractor runs here rather than in the signature.
    let store = store(&state).await?;
    let Checked {
        value: body::Job { requests, ignored },
        ..
    } = Checked::from_request(req, &state).await?;
    if stopping(store) {
        return Err(ApiError::ShuttingDown);
    }
    let n = requests.len();
    let start_time = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    let job = store
        .create(requests, start_time, state.config.max_jobs)
        .await?;
    if !ignored.is_empty() {
        tracing::warn!(
            job = %job.id,
            "ignoring the per-job fields {}: a caller does not choose server paths nor the upstream",
            ignored.join(", ")
        );
    }
    Ok(Json(json!({
        "batch_request_id": job.id,
        "requests": n,
        "start_time": job.start_time,
    })))
}

#[derive(Deserialize)]
pub struct WaitQuery {
    max_timeout: Option<String>,
}

/// A query string that does not deserialize (a parameter given twice, …) in FastAPI's
/// shape, as every other 4xx of this gateway (axum's own rejection is plain text).
fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::InvalidQuery(vec![FieldError {
        loc: vec![Value::from("query")],
        msg: rejection.body_text(),
        kind: "value_error",
    }])
}

/// `max_timeout` in seconds: a number ≥ 0 (default 600), capped at [`MAX_TIMEOUT_CAP`].
fn max_timeout(query: &WaitQuery) -> Result<Duration, ApiError> {
    let Some(text) = query.max_timeout.as_deref() else {
        return Ok(DEFAULT_MAX_TIMEOUT);
    };
    match text.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(Duration::from_secs_f64(
            secs.min(MAX_TIMEOUT_CAP.as_secs_f64()),
        )),
        _ => Err(ApiError::InvalidQuery(vec![FieldError {
            loc: vec![Value::from("query"), Value::from("max_timeout")],
            msg: format!("max_timeout must be a number of seconds ≥ 0, not {text:?}"),
            kind: "value_error",
        }])),
    }
}

/// Waits until the job is done or `max_timeout` passes; answers its results in request
/// order (streamed from disk), 404 for an unknown id, 408 when not done in time, 500
/// when the job failed.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let store = store(&state).await?;
    let wait = max_timeout(&query.map_err(query_error)?.0)?;
    // Only a canonical uuid names a job (and a path).
    let job = is_job_id(&id)
        .then(|| store.get(&id))
        .flatten()
        .ok_or(ApiError::JobNotFound)?;
    let mut status = job.status.subscribe();
    let mut stop = store.stopping();
    let done = async {
        match status.wait_for(|s| *s != Status::Running).await {
            Ok(s) => s.clone(),
            // The sender lives in the job, which we hold: not reachable.
            Err(_) => Status::Cleared,
        }
    };
    let finished = tokio::select! {
        done = tokio::time::timeout(wait, done) => done.map_err(|_| ApiError::JobTimeout)?,
        // A waiting request must not hold the shutdown for its grace.
        _ = stop.wait_for(|s| *s != Stop::Run) => {
            let now = job.status.borrow().clone();
            if now == Status::Running {
                return Err(ApiError::ShuttingDown);
            }
            now
        }
    };
    match finished {
        Status::Complete => results(&job.dir, state.config.max_body_bytes).await,
        Status::Failed(e) => Err(ApiError::JobFailed(e)),
        Status::Cleared => Err(ApiError::JobNotFound),
        Status::Running => Err(ApiError::JobTimeout),
    }
}

async fn results(dir: &std::path::Path, max_body_bytes: usize) -> Result<Response, ApiError> {
    let file = tokio::fs::File::open(dir.join(super::disk::RESULTS))
        .await
        .map_err(|e| ApiError::Internal(format!("cannot read the job's results: {e}")))?;
    // A result line holds at most one answer's reasoning, escaped; the request's own
    // size bounds nothing here, so allow generously but not endlessly.
    let max_line = max_body_bytes.max(64 << 20);
    let body = Body::from_stream(super::answer::stream(file, max_line));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `{id: {"start_time", "complete", "has_error", "num_requests", "output_path"}}`.
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let store = store(&state).await?;
    let tasks: serde_json::Map<String, Value> = store
        .list()
        .into_iter()
        .map(|job| {
            let status = job.status.borrow().clone();
            let entry = json!({
                "start_time": job.start_time,
                "complete": status != Status::Running,
                "has_error": matches!(status, Status::Failed(_)),
                "num_requests": job.num_requests,
                "output_path": job.dir.display().to_string(),
            });
            (job.id.clone(), entry)
        })
        .collect();
    Ok(Json(Value::Object(tasks)))
}

/// Cancels every job of this gateway and deletes its directory.
pub async fn clear(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    store(&state)
        .await?
        .clear()
        .await
        .map_err(|e| ApiError::Internal(format!("cannot delete a job directory: {e}")))?;
    Ok(Json(json!({"message": "All tasks cleared"})))
}
