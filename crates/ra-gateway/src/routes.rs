//! The routes and their handlers.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use rewardanything_client::JudgeRequest;
use serde_json::json;

use crate::body::Checked;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::wire::{self, JudgeResult};
use crate::{admit, auth, jobs, openrlhf};

/// The router of every route over `state` (built, with what it starts, by
/// [`Gateway`](crate::Gateway)).
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    let protected = Router::new()
        .route("/api/rewardanything", post(judge_one))
        .route("/api/rewardanything_batch", post(judge_batch))
        .route("/get_reward", post(openrlhf::get_reward))
        .route("/api/batch_request", post(jobs::routes::create))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            admit::reserve,
        ))
        .route("/api/batch_request/{id}", get(jobs::routes::get))
        .route("/api/list_tasks", get(jobs::routes::list))
        .route("/api/clear_tasks", post(jobs::routes::clear))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_key,
        ));
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            cut_short,
        ))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), count))
        .with_state(state)
}

/// Counts each request by route and status, and the requests in flight. The route is
/// the router's own pattern (`/api/batch_request/{id}`), so labels stay as few as the
/// routes; a request no route matches is `other`.
async fn count(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", MatchedPath::as_str)
        .to_string();
    state.metrics.in_flight(1);
    // Decremented even if the client goes away and this future is dropped.
    let _guard = InFlight(&state.metrics);
    let response = next.run(req).await;
    state.metrics.request(&route, response.status().as_u16());
    response
}

/// Runs the request unless the grace runs out first; then answers 503 (dropping the
/// handler cancels its judgments).
async fn cut_short(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let mut cut = state.cut.clone();
    let cut = async move {
        // A dropped sender can never cut: wait forever.
        if cut.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        response = next.run(req) => response,
        () = cut => ApiError::ShuttingDown.into_response(),
    }
}

struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight(-1);
    }
}

async fn judge_one(
    State(state): State<Arc<AppState>>,
    Checked { value: request, .. }: Checked<JudgeRequest>,
) -> Result<Json<JudgeResult>, ApiError> {
    let result = state.client.judge_detailed(&request).await;
    state.metrics.judgment(&result);
    Ok(Json(JudgeResult::from(result?.judgment)))
}

/// Every item in flight up to the client's limit, results in input order; a failed
/// item is an error object in its place. The answer is streamed as the results come, in
/// order: memory holds the window of finished results, not the whole batch, and the
/// first bytes reach the caller while the last judgments still run. Everything that can
/// refuse the batch (body, fields, limits) is checked before the 200 is sent.
async fn judge_batch(
    State(state): State<Arc<AppState>>,
    Checked {
        value: requests, ..
    }: Checked<Vec<JudgeRequest>>,
) -> Result<Response, ApiError> {
    let window = state.config.batch_window;
    let metrics = Arc::clone(&state.metrics);
    let results = state
        .client
        .judge_many_ordered(requests, Some(window))
        .map(move |result| {
            metrics.judgment(&result);
            match result {
                Ok(judged) => JudgeResult::from(judged.judgment),
                Err(e) => JudgeResult::from(&e),
            }
        });
    let chunks = results
        .ready_chunks(64)
        .map(Ok::<_, std::convert::Infallible>);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(wire::json_array(chunks)),
    )
        .into_response())
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let config = &state.config;
    match state
        .health
        .check(&state.client, config.health_interval, config.health_timeout)
        .await
    {
        Ok(()) => {
            Json(json!({"status": "healthy", "service": "RewardAnything API"})).into_response()
        }
        Err(reason) => {
            // Only once unhealthy: a gateway asking itself gets its own 404, which says
            // nothing of the loop.
            let reason = match state.own_addr {
                Some(own) => crate::health::self_loop(&state.client, own)
                    .await
                    .unwrap_or(reason),
                None => reason,
            };
            (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "service": "RewardAnything API", "reason": reason})),
        )
            .into_response()
        }
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.set_open_groups(state.coalescer.open_groups());
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
