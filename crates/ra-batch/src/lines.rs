//! Reading JSON Lines: one raw line at a time, CRLF accepted, bounded memory.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use ra_batch::lines::{Body, LineReader};
//! let mut lines = LineReader::new(&b"{\"a\": 1}\r\ntoo long a line\n"[..], 10);
//! let first = lines.next_line().await.unwrap().unwrap();
//! assert!(matches!(first.body, Body::Bytes(ref b) if b == b"{\"a\": 1}"));
//! let second = lines.next_line().await.unwrap().unwrap();
//! assert!(matches!(second.body, Body::TooLong { bytes: 15, .. }));
//! assert!(lines.next_line().await.unwrap().is_none());
//! # });
//! ```

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// The default longest input line kept in memory (`--max-line-bytes`): 16 MiB.
///
/// ```
/// assert_eq!(ra_batch::lines::DEFAULT_MAX_LINE_BYTES, 16 << 20);
/// ```
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;

/// Past this size a line's buffer grows straight to the limit.
const GROW_TO_LIMIT_ABOVE: usize = 1 << 20;

/// One input line: its bytes, or only its size and hash when it was too long to keep.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut lines = ra_batch::lines::LineReader::new(&b"x\ny"[..], 100);
/// let x = lines.next_line().await.unwrap().unwrap();
/// assert_eq!((x.index, x.raw_len, x.terminated), (0, 2, true));
/// let y = lines.next_line().await.unwrap().unwrap();
/// assert_eq!((y.index, y.raw_len, y.terminated), (1, 1, false));
/// # });
/// ```
pub struct RawLine {
    /// 0-based line number.
    pub index: usize,
    /// What the line holds (see [`Body`]).
    pub body: Body,
    /// Bytes read for it, line end included.
    pub raw_len: u64,
    /// Whether a `\n` ended it (else it was the end of the input).
    pub terminated: bool,
}

/// The content of a [`RawLine`].
///
/// ```
/// let body = ra_batch::lines::Body::Bytes(b"{}".to_vec());
/// assert!(matches!(body, ra_batch::lines::Body::Bytes(_)));
/// ```
pub enum Body {
    /// The line without its `\n` or `\r\n`.
    Bytes(Vec<u8>),
    /// A line longer than the limit, read in chunks and discarded.
    TooLong {
        /// Its length without the line end.
        bytes: u64,
        /// XXH3-64 of those bytes, as [`RawLine::hash`] gives for a kept line.
        hash: u64,
    },
}

impl RawLine {
    /// XXH3-64 of the raw line (without its line end), whether kept or not.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let mut a = ra_batch::lines::LineReader::new(&b"same line\r\n"[..], 100);
    /// let mut b = ra_batch::lines::LineReader::new(&b"same line\n"[..], 4);
    /// let (a, b) = (a.next_line().await.unwrap().unwrap(), b.next_line().await.unwrap().unwrap());
    /// assert_eq!(a.hash(), b.hash());
    /// # });
    /// ```
    pub fn hash(&self) -> u64 {
        match &self.body {
            Body::Bytes(b) => xxh3_64(b),
            Body::TooLong { hash, .. } => *hash,
        }
    }
}

/// Reads raw lines (without the `\n` or `\r\n`) from an async reader. A line longer than
/// `max` bytes is never held: it is hashed chunk by chunk and dropped, so memory stays
/// bounded by `max` plus the reader's buffer whatever the input.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut lines = ra_batch::lines::LineReader::new(&b"a\nb\n"[..], 1024);
/// let mut n = 0;
/// while let Some(_line) = lines.next_line().await.unwrap() { n += 1; }
/// assert_eq!(n, 2);
/// # });
/// ```
pub struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    index: usize,
    max: usize,
}

/// A line that outgrew the limit: what is left of it goes to the hash only.
struct Overflow {
    hasher: Xxh3,
    bytes: u64,
    /// A `\r` at the end of the last chunk, hashed only if no `\n` follows it.
    pending_cr: bool,
}

impl Overflow {
    fn start(kept: &[u8]) -> Self {
        let mut o = Overflow {
            hasher: Xxh3::new(),
            bytes: 0,
            pending_cr: false,
        };
        o.feed(kept);
        o
    }

    fn feed(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if std::mem::take(&mut self.pending_cr) {
            self.hasher.update(b"\r");
            self.bytes += 1;
        }
        let (body, cr) = match data.split_last() {
            Some((b'\r', rest)) => (rest, true),
            _ => (data, false),
        };
        self.hasher.update(body);
        self.bytes += body.len() as u64;
        self.pending_cr = cr;
    }

    fn finish(mut self, ended_by_newline: bool) -> Body {
        // A `\r` before the `\n` is the line end; at the end of the input it is data.
        if self.pending_cr && !ended_by_newline {
            self.hasher.update(b"\r");
            self.bytes += 1;
        }
        Body::TooLong {
            bytes: self.bytes,
            hash: self.hasher.digest(),
        }
    }
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// Lines of `reader`, keeping at most `max` bytes of one.
    ///
    /// ```
    /// let lines = ra_batch::lines::LineReader::new(&b""[..], 1 << 20);
    /// ```
    pub fn new(reader: R, max: usize) -> Self {
        LineReader {
            reader,
            buf: Vec::with_capacity(8192),
            index: 0,
            max,
        }
    }

    /// The next line; `None` at the end. A last line without a newline still counts.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let mut lines = ra_batch::lines::LineReader::new(&b""[..], 8);
    /// assert!(lines.next_line().await.unwrap().is_none());
    /// # });
    /// ```
    pub async fn next_line(&mut self) -> std::io::Result<Option<RawLine>> {
        self.buf.clear();
        let mut overflow: Option<Overflow> = None;
        let mut seen_any = false;
        let mut raw_len = 0u64;
        let ended_by_newline = loop {
            let chunk = self.reader.fill_buf().await?;
            if chunk.is_empty() {
                if !seen_any {
                    return Ok(None);
                }
                break false;
            }
            seen_any = true;
            let newline = memchr::memchr(b'\n', chunk);
            let data = &chunk[..newline.unwrap_or(chunk.len())];
            match overflow.as_mut() {
                Some(o) => o.feed(data),
                // One byte of slack for the `\r` of a `\r\n` line end.
                None if self.buf.len() + data.len() <= self.max.saturating_add(1) => {
                    let needed = self.buf.len() + data.len();
                    if needed > self.buf.capacity() && needed > GROW_TO_LIMIT_ABOVE {
                        // A long line: one allocation up to the limit (its pages are
                        // only touched as they fill) instead of a doubling series whose
                        // freed blocks the allocator keeps for a while.
                        self.buf
                            .reserve_exact(self.max.saturating_add(1) - self.buf.len());
                    }
                    self.buf.extend_from_slice(data)
                }
                None => {
                    let mut o = Overflow::start(&self.buf);
                    o.feed(data);
                    overflow = Some(o);
                    // Give the memory back: the rest of this line is not kept.
                    self.buf = Vec::with_capacity(8192);
                }
            }
            let consumed = newline.map_or(chunk.len(), |i| i + 1);
            self.reader.consume(consumed);
            raw_len += consumed as u64;
            if newline.is_some() {
                break true;
            }
        };
        let body = match overflow {
            Some(o) => o.finish(ended_by_newline),
            None => {
                if ended_by_newline && self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
                if self.buf.len() > self.max {
                    Overflow::start(&self.buf).finish(ended_by_newline)
                } else {
                    Body::Bytes(std::mem::take(&mut self.buf))
                }
            }
        };
        let index = self.index;
        self.index += 1;
        Ok(Some(RawLine {
            index,
            body,
            raw_len,
            terminated: ended_by_newline,
        }))
    }
}

/// Decodes one input line as `T`, with a message fit for a `bad_input` error.
///
/// ```
/// use ra_batch::lines::{Body, decode};
/// let v: serde_json::Value = decode(&Body::Bytes(b"[1]".to_vec())).unwrap();
/// assert_eq!(v, serde_json::json!([1]));
/// assert_eq!(decode::<serde_json::Value>(&Body::Bytes(b" ".to_vec())).unwrap_err(), "blank line");
/// ```
pub fn decode<T: serde::de::DeserializeOwned>(body: &Body) -> Result<T, String> {
    let line = match body {
        Body::Bytes(b) => b,
        Body::TooLong { bytes, .. } => {
            return Err(format!(
                "{bytes} bytes, longer than the line limit (ra score --max-line-bytes); not read"
            ));
        }
    };
    let text = std::str::from_utf8(line)
        .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
    if text.trim().is_empty() {
        return Err("blank line".to_string());
    }
    serde_json::from_str(text).map_err(|e| format!("invalid request: {}", json_error(&e)))
}

/// serde_json's message with its position as a column: every input is one line, so its
/// "line 1" would contradict the line number of the message.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(message) if e.line() == 1 => format!("{message} at column {}", e.column()),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(input: &[u8], max: usize, chunk: usize) -> Vec<(u64, Option<Vec<u8>>)> {
        let reader = tokio::io::BufReader::with_capacity(chunk, input);
        let mut lines = LineReader::new(reader, max);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().await.expect("read") {
            let hash = line.hash();
            out.push(match line.body {
                Body::Bytes(b) => (hash, Some(b)),
                Body::TooLong { .. } => (hash, None),
            });
        }
        out
    }

    #[tokio::test]
    async fn long_lines_hash_like_kept_ones_whatever_the_chunking() {
        let input: &[u8] = b"short\r\nexactly10!\r\n0123456789abcdef\nlong with cr\r\r\nend\r";
        let kept = read_all(input, 1 << 20, 64).await;
        let want: Vec<&[u8]> = vec![
            b"short",
            b"exactly10!",
            b"0123456789abcdef",
            b"long with cr\r",
            b"end\r",
        ];
        assert_eq!(
            kept.iter()
                .map(|(_, b)| b.as_deref().unwrap())
                .collect::<Vec<_>>(),
            want
        );
        for chunk in 1..8 {
            let cut = read_all(input, 10, chunk).await;
            assert_eq!(cut.len(), want.len(), "chunk {chunk}");
            for (i, ((h, b), w)) in cut.iter().zip(&want).enumerate() {
                assert_eq!(*h, xxh3_64(w), "hash of line {i}, chunk {chunk}");
                assert_eq!(b.is_some(), w.len() <= 10, "line {i} kept, chunk {chunk}");
            }
        }
    }
}
