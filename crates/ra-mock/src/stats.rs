//! Counters and the attempt log that tests read back.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// A snapshot of the server's counters: [`MockHandle::stats`](crate::MockHandle::stats)
/// in-process, or `GET /stats` ([`STATS_PATH`](crate::STATS_PATH)) over HTTP, which
/// answers these fields as a JSON object (`by_status` keyed by the status as text:
/// `{"200": 3, "503": 1}`). Requests to `/stats` are not counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// HTTP requests received on any route.
    pub received: u64,
    /// `POST /v1/chat/completions` requests received.
    pub chat_requests: u64,
    /// Responses written, by HTTP status (all routes).
    pub by_status: BTreeMap<u16, u64>,
    /// Chat requests whose connection was closed on purpose without a response.
    pub dropped: u64,
    /// Chat requests left hanging on purpose.
    pub hung: u64,
    /// Chat requests abandoned before an outcome (client went away, server killed).
    pub cancelled: u64,
    /// Chat requests answered 429 because the capacity was full ([`OverCapacity::Reject`](crate::OverCapacity::Reject)).
    pub rejected_over_capacity: u64,
    /// Chat requests received and not yet finished (queued, processing or hanging).
    pub in_flight: u64,
    /// Highest `in_flight` seen.
    pub max_in_flight: u64,
    /// Chat requests holding a capacity slot right now (the latency is spent there).
    pub processing: u64,
    /// Highest `processing` seen: never above the configured capacity.
    pub max_processing: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// Generated bodies (`endless-body`, `huge-body:N`) being sent right now; one ends
    /// when it is complete or when its client disconnects.
    pub streaming_bodies: u64,
    /// Bytes of generated bodies handed to the connection so far.
    pub streamed_bytes: u64,
    /// Prompt tokens found in the prefix cache ([`PrefixCache`](crate::PrefixCache); 0 without it).
    pub cached_tokens: u64,
    /// Prompt tokens prefilled because they were not cached (0 without a prefix cache).
    pub prefilled_tokens: u64,
}

impl Stats {
    /// Responses written with this status.
    pub fn status(&self, code: u16) -> u64 {
        self.by_status.get(&code).copied().unwrap_or(0)
    }

    /// Responses written, all statuses together.
    pub fn answered(&self) -> u64 {
        self.by_status.values().sum()
    }
}

/// How a chat request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this HTTP status was produced.
    Status(u16),
    /// The connection was closed without a response (injected).
    Dropped,
    /// The request was left hanging (injected); recorded when the hang starts.
    Hung,
    /// The request was abandoned before an outcome: the client closed the
    /// connection or the server was killed while it queued or slept.
    Cancelled,
}

/// One chat-completion attempt, as the mock saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// Arrival order of chat requests, from 0.
    pub seq: u64,
    /// When the request's headers arrived.
    pub arrived: Instant,
    /// When the outcome was decided (for `Hung`, when the hang started).
    pub finished: Instant,
    /// [`prompt_hash`](crate::prompt_hash) of the user message's `prompt` field
    /// (0 when the body could not be read as a RewardAnything request).
    pub prompt_hash: u64,
    /// [`fnv1a64`](crate::fnv1a64) of the whole user message content: the key
    /// `[[fail-first]]` counts attempts by (0 when there was none).
    pub content_hash: u64,
    /// The `prompt` text, when prompt logging is on (the default in the library).
    pub prompt: Option<String>,
    /// The request's `model`.
    pub model: Option<String>,
    /// The request's `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    /// The request's `seed`.
    pub seed: Option<i64>,
    /// The request's `temperature`.
    pub temperature: Option<f64>,
    /// Every top-level field of the request body except `messages` (e.g.
    /// `chat_template_kwargs`, a hook's `grammar`), when prompt logging is on.
    pub body_fields: Option<serde_json::Map<String, serde_json::Value>>,
    /// The request headers (names lower-case) except `authorization`, when
    /// prompt logging is on.
    pub headers: Option<Vec<(String, String)>>,
    /// Whether the request carried the configured API key (true when none is configured).
    pub authorized: bool,
    /// How it ended.
    pub outcome: Outcome,
}

/// Lock-free counters; `by_status` is indexed by status code.
pub(crate) struct Counters {
    pub received: AtomicU64,
    pub chat: AtomicU64,
    pub by_status: Box<[AtomicU64]>,
    pub dropped: AtomicU64,
    pub hung: AtomicU64,
    pub cancelled: AtomicU64,
    pub rejected: AtomicU64,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    pub processing: AtomicU64,
    pub max_processing: AtomicU64,
    pub connections: AtomicU64,
    pub streaming: AtomicU64,
    pub streamed_bytes: AtomicU64,
    pub cached_tokens: AtomicU64,
    pub prefilled_tokens: AtomicU64,
}

impl Counters {
    pub fn new() -> Self {
        Self {
            received: AtomicU64::new(0),
            chat: AtomicU64::new(0),
            by_status: (0..600).map(|_| AtomicU64::new(0)).collect(),
            dropped: AtomicU64::new(0),
            hung: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            processing: AtomicU64::new(0),
            max_processing: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            streaming: AtomicU64::new(0),
            streamed_bytes: AtomicU64::new(0),
            cached_tokens: AtomicU64::new(0),
            prefilled_tokens: AtomicU64::new(0),
        }
    }

    pub fn count_status(&self, code: u16) {
        if let Some(c) = self.by_status.get(usize::from(code)) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn snapshot(&self) -> Stats {
        let by_status = self
            .by_status
            .iter()
            .enumerate()
            .filter_map(|(code, n)| {
                let n = n.load(Relaxed);
                // The table has 600 entries, so the index fits in u16.
                (n > 0).then_some((code as u16, n))
            })
            .collect();
        Stats {
            received: self.received.load(Relaxed),
            chat_requests: self.chat.load(Relaxed),
            by_status,
            dropped: self.dropped.load(Relaxed),
            hung: self.hung.load(Relaxed),
            cancelled: self.cancelled.load(Relaxed),
            rejected_over_capacity: self.rejected.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            max_in_flight: self.max_in_flight.load(Relaxed),
            processing: self.processing.load(Relaxed),
            max_processing: self.max_processing.load(Relaxed),
            connections: self.connections.load(Relaxed),
            streaming_bodies: self.streaming.load(Relaxed),
            streamed_bytes: self.streamed_bytes.load(Relaxed),
            cached_tokens: self.cached_tokens.load(Relaxed),
            prefilled_tokens: self.prefilled_tokens.load(Relaxed),
        }
    }

    /// Zeroes everything except the live gauges (`in_flight`, `processing`, `streaming`),
    /// whose maxima restart from the current values.
    pub fn reset(&self) {
        for c in [
            &self.received,
            &self.chat,
            &self.dropped,
            &self.hung,
            &self.cancelled,
            &self.rejected,
            &self.connections,
            &self.streamed_bytes,
            &self.cached_tokens,
            &self.prefilled_tokens,
        ] {
            c.store(0, Relaxed);
        }
        for c in self.by_status.iter() {
            c.store(0, Relaxed);
        }
        self.max_in_flight
            .store(self.in_flight.load(Relaxed), Relaxed);
        self.max_processing
            .store(self.processing.load(Relaxed), Relaxed);
    }
}

/// Increments a gauge and its maximum; decrements on drop.
pub(crate) struct Gauge<'a> {
    value: &'a AtomicU64,
}

impl<'a> Gauge<'a> {
    pub fn enter(value: &'a AtomicU64, max: &AtomicU64) -> Self {
        let now = value.fetch_add(1, Relaxed) + 1;
        max.fetch_max(now, Relaxed);
        Self { value }
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.value.fetch_sub(1, Relaxed);
    }
}

/// Bounded FIFO of attempts; the oldest entries go first when full.
pub(crate) struct AttemptLog {
    capacity: usize,
    entries: Mutex<VecDeque<Attempt>>,
}

impl AttemptLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    pub fn push(&self, attempt: Attempt) {
        if self.capacity == 0 {
            return;
        }
        // A panic elsewhere cannot leave a VecDeque half-updated, so a poisoned lock is still usable.
        let mut log = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == self.capacity {
            log.pop_front();
        }
        log.push_back(attempt);
    }

    pub fn snapshot(&self) -> Vec<Attempt> {
        let log = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Attempt> = log.iter().cloned().collect();
        // Entries are pushed when the outcome is known; present them in arrival order.
        v.sort_by_key(|a| a.seq);
        v
    }

    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
