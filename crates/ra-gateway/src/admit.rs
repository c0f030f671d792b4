//! Admission by bytes: the judging routes hold at most `max_buffered_bytes` of request
//! bodies (and what is parsed from them) at once, so many concurrent or slowly sent
//! bodies cannot exhaust memory. A request reserves bytes as they arrive, not what it
//! declares: an idle or slow peer holds only what it has actually sent.

use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
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

/// The `Content-Length` a request declares, if any (and readable).
pub fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// One request's share of the budget: it grows while the body is read
/// ([`body::read`](crate::body::read)) and returns to the budget when its last holder
/// (the reader, the handler, a streamed answer) drops it.
#[derive(Clone)]
pub struct Reservation(Arc<Held>);

struct Held {
    budget: Arc<Semaphore>,
    permits: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Reservation {
    fn new(budget: Arc<Semaphore>) -> Self {
        Reservation(Arc::new(Held {
            budget,
            permits: Mutex::new(None),
        }))
    }

    /// Grows the reservation to cover `bytes` in all; 503 `overloaded` when the budget
    /// cannot (never waits: a request that does not fit is refused at once).
    pub fn grow_to(&self, bytes: usize) -> Result<(), ApiError> {
        let want = units(bytes);
        let mut held = self
            .0
            .permits
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let have = held
            .as_ref()
            .map_or(0, |p| u32::try_from(p.num_permits()).unwrap_or(u32::MAX));
        if want <= have {
            return Ok(());
        }
        let more = Arc::clone(&self.0.budget)
            .try_acquire_many_owned(want - have)
            .map_err(|_| ApiError::Overloaded)?;
        match held.as_mut() {
            Some(permit) => permit.merge(more),
            None => *held = Some(more),
        }
        Ok(())
    }
}

/// Gives the request its (empty) reservation, which the body reader grows and which is
/// held until the request is answered (for a streamed answer, until its last byte is
/// sent or the peer goes away; the server's write timeout bounds a peer that stops
/// reading). A declared size over the body limit is answered 413 at once, before any
/// of the body is read.
pub async fn reserve(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let limit = state.config.max_body_bytes;
    if declared_length(req.headers()).is_some_and(|n| n > limit) {
        return ApiError::TooLarge(limit).into_response();
    }
    let reservation = Reservation::new(Arc::clone(&state.budget));
    req.extensions_mut().insert(reservation.clone());
    let response = next.run(req).await;
    if response.body().size_hint().exact().is_some() {
        return response;
    }
    // A streamed answer still holds what was parsed from the request while it is produced.
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &reservation;
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
