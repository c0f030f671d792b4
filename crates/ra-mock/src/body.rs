//! Response bodies: whole ones, and the lazily generated ones of the `endless-body` and
//! `huge-body:N` faults, made as the client reads so the mock holds at most one chunk.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};

use crate::stats::Counters;

/// How a filler body starts: a chat completion whose content string never closes, so a
/// client that parses as it reads keeps reading.
const PREFIX: &[u8] = br#"{"id":"chatcmpl-ra-mock-filler","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":""#;

const CHUNK: usize = 64 * 1024;
/// The filler, shared by every body: chunks are slices of it, never copies.
static FILL: [u8; CHUNK] = [b'x'; CHUNK];

/// A response body of the mock.
pub(crate) enum MockBody {
    /// Known in full.
    Full(Full<Bytes>),
    /// Generated on demand.
    Filler(Filler),
}

impl From<Bytes> for MockBody {
    fn from(b: Bytes) -> Self {
        Self::Full(Full::new(b))
    }
}

impl MockBody {
    /// `PREFIX` then `x`s: `total` bytes in all, or endless for `None`; counted in
    /// `counters` while it lives.
    pub fn filler(counters: Arc<Counters>, total: Option<u64>) -> Self {
        counters.streaming.fetch_add(1, Relaxed);
        Self::Filler(Filler {
            counters,
            sent: 0,
            total,
        })
    }
}

/// State of a generated body; counted in `Stats::streaming_bodies` until dropped, which
/// happens when it ends or when hyper drops it because the client went away.
pub(crate) struct Filler {
    counters: Arc<Counters>,
    sent: u64,
    total: Option<u64>,
}

impl Filler {
    fn next_chunk(&mut self) -> Option<Bytes> {
        let left = match self.total {
            Some(total) => total - self.sent,
            None => u64::MAX,
        };
        if left == 0 {
            return None;
        }
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK);
        let chunk = match usize::try_from(self.sent) {
            Ok(at) if at < PREFIX.len() => {
                Bytes::from_static(&PREFIX[at..PREFIX.len().min(at + want)])
            }
            _ => Bytes::from_static(&FILL[..want]),
        };
        let n = chunk.len() as u64;
        self.sent += n;
        self.counters.streamed_bytes.fetch_add(n, Relaxed);
        Some(chunk)
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        self.counters.streaming.fetch_sub(1, Relaxed);
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        // Both variants are Unpin.
        match self.get_mut() {
            Self::Full(full) => Pin::new(full).poll_frame(cx),
            // hyper asks for a frame only when it can buffer it: the socket's
            // back-pressure paces the generation.
            Self::Filler(f) => Poll::Ready(f.next_chunk().map(|c| Ok(Frame::data(c)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(full) => full.is_end_stream(),
            Self::Filler(f) => f.total == Some(f.sent),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(full) => full.size_hint(),
            // Exact for `huge-body` (hyper then sends Content-Length); unknown for
            // `endless-body` (hyper then uses chunked encoding).
            Self::Filler(f) => match f.total {
                Some(total) => SizeHint::with_exact(total - f.sent),
                None => SizeHint::default(),
            },
        }
    }
}
