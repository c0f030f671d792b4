//! Admission by bytes: the judging routes hold at most `max_buffered_bytes` of request
//! bodies (and what is parsed from them) at once, so many concurrent or slowly sent
//! bodies cannot exhaust memory.

use std::sync::Arc;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::GatewayConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// Permits are KiB: a `u32` count of them covers 4 TiB.
const UNIT: usize = 1024;

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

/// The semaphore of a config's budget (never below one whole body).
pub fn budget(config: &GatewayConfig) -> Arc<Semaphore> {
    let bytes = config.max_buffered_bytes.max(config.max_body_bytes);
    let permits = (units(bytes) as usize).min(Semaphore::MAX_PERMITS);
    Arc::new(Semaphore::new(permits))
}

/// Reserves the request's size until it is answered (for a streamed answer, until its
/// last byte is sent or the peer goes away); 503 `overloaded` when it does not fit. A declared size over the body limit is answered 413 at once, before any of the
/// body is read.
pub async fn reserve(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limit = state.config.max_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let bytes = match declared {
        Some(n) if n > limit => return ApiError::TooLarge(limit).into_response(),
        Some(n) => n,
        // Chunked: it may grow up to the limit.
        None => limit,
    };
    let permit = match Arc::clone(&state.budget).try_acquire_many_owned(units(bytes)) {
        Ok(permit) => permit,
        Err(_) => return ApiError::Overloaded.into_response(),
    };
    let response = next.run(req).await;
    if response.body().size_hint().exact().is_some() {
        return response;
    }
    // A streamed answer still holds what was parsed from the request while it is produced.
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &permit;
            chunk
        }))
    })
}

/// Reserves `bytes` more of the budget for what a request expands to once decoded, on
/// top of its body (held until the permit is dropped); 503 `overloaded` when they do
/// not fit now.
pub fn reserve_more(state: &AppState, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
    Arc::clone(&state.budget)
        .try_acquire_many_owned(units(bytes))
        .map_err(|_| ApiError::Overloaded)
}
