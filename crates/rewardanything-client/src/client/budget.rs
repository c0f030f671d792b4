//! The client's budget of buffered answer bytes, shared by every request in flight.
//!
//! Each answer body is held whole until it is decoded, so without a shared bound a
//! client with `max_in_flight` requests could hold `max_in_flight × max_response_bytes`
//! (256 × 8 MiB = 2 GiB) of a hostile or broken server's answers at once.
//!
//! The rule, chosen so that waiting can never deadlock:
//! * An answer reserves its whole size **before** its first body byte is buffered: the
//!   `Content-Length` when the server declares one, else `min(max_response_bytes,
//!   budget)` (the most it may grow to). It never reserves more later, so a request
//!   waiting for the budget holds no part of it, and the semaphore serves waiters first
//!   come, first served: every reservation fits the budget, so each one is granted once
//!   the reservations ahead of it are released.
//! * A declared size above the whole budget fails at once (`bad_response`, not retried);
//!   an undeclared body that outgrows its reservation fails as soon as it does.
//! * The buffer never grows past the reservation, and the reservation is released when
//!   the body has been decoded and parsed (or the attempt failed, timed out or was
//!   cancelled): dropping the guard returns it.
//! * Waiting counts against the attempt's timeout, like the rest of the body read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default budget: 64 MiB, 8 answers at the default 8 MiB cap, and thousands of real
/// ones (a 4,096-token judgment is about 20 KB).
pub const DEFAULT_MAX_BUFFERED_RESPONSE_BYTES: usize = 64 << 20;

/// Permits are KiB: a `u32` count of them covers 4 TiB per reservation.
const UNIT: u64 = 1024;

fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

/// What the budget holds now and held at most, for monitoring and tests.
///
/// ```
/// let c = rewardanything_client::Client::builder().endpoint("http://h/v1").build().unwrap();
/// let b = c.response_buffer();
/// assert_eq!((b.held_bytes, b.peak_bytes, b.budget_bytes), (0, 0, 64 << 20));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseBuffer {
    /// Bytes of answer buffers allocated right now (their capacity, not only their
    /// length).
    pub held_bytes: u64,
    /// The most `held_bytes` has been since the client was built.
    pub peak_bytes: u64,
    /// The budget (`max_buffered_response_bytes`): `held_bytes` never exceeds it.
    pub budget_bytes: u64,
}

/// The shared budget of one client (and its clones).
pub(crate) struct ResponseBudget {
    semaphore: Arc<Semaphore>,
    bytes: u64,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    held: AtomicU64,
    peak: AtomicU64,
}

impl ResponseBudget {
    pub fn new(bytes: usize) -> Self {
        let bytes = bytes as u64;
        let permits = (bytes.div_ceil(UNIT) as usize).min(Semaphore::MAX_PERMITS);
        ResponseBudget {
            semaphore: Arc::new(Semaphore::new(permits)),
            bytes,
            counters: Arc::default(),
        }
    }

    /// The budget in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Waits until `bytes` fit, holding nothing meanwhile. `bytes` must not exceed the
    /// budget (the caller checks, to fail with its own wording).
    pub async fn reserve(&self, bytes: u64) -> Reservation {
        // The semaphore is never closed: an error cannot happen, and would only mean no
        // accounting for this one answer.
        let permit = Arc::clone(&self.semaphore)
            .acquire_many_owned(units(bytes))
            .await
            .ok();
        Reservation {
            _permit: permit,
            bytes,
            counted: 0,
            counters: Arc::clone(&self.counters),
        }
    }

    pub fn snapshot(&self) -> ResponseBuffer {
        ResponseBuffer {
            held_bytes: self.counters.held.load(Ordering::Relaxed),
            peak_bytes: self.counters.peak.load(Ordering::Relaxed),
            budget_bytes: self.bytes,
        }
    }
}

/// One answer's share of the budget; released when dropped.
pub(crate) struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
    /// The bytes reserved: the buffer never grows past them.
    bytes: u64,
    /// The buffer capacity counted in `held` so far.
    counted: u64,
    counters: Arc<Counters>,
}

impl Reservation {
    /// The bytes reserved.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records that the buffer now has `capacity` bytes allocated.
    pub fn track(&mut self, capacity: usize) {
        let capacity = capacity as u64;
        if capacity > self.counted {
            let grown = capacity - self.counted;
            let now = self.counters.held.fetch_add(grown, Ordering::Relaxed) + grown;
            self.counters.peak.fetch_max(now, Ordering::Relaxed);
        } else {
            self.counters
                .held
                .fetch_sub(self.counted - capacity, Ordering::Relaxed);
        }
        self.counted = capacity;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.counters
            .held
            .fetch_sub(self.counted, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_reservation_waits_for_released_bytes_and_counts_its_buffer() {
        let budget = ResponseBudget::new(10 << 10);
        let mut first = budget.reserve(8 << 10).await;
        first.track(8 << 10);
        // 4 KiB more do not fit while the first holds 8 of 10.
        let second = tokio::time::timeout(Duration::from_millis(50), budget.reserve(4 << 10)).await;
        assert!(second.is_err(), "reserved past the budget");
        assert_eq!(budget.snapshot().held_bytes, 8 << 10);
        drop(first);
        assert_eq!(budget.snapshot().held_bytes, 0);
        let mut second = budget.reserve(4 << 10).await;
        second.track(1000);
        second.track(4000);
        assert_eq!(budget.snapshot().held_bytes, 4000);
        assert_eq!(budget.snapshot().peak_bytes, 8 << 10);
        drop(second);
        assert_eq!(budget.snapshot().held_bytes, 0);
    }
}
