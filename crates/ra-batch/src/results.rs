//! Reading a results file back: the one reader of the line format this crate writes
//! (see the crate docs), for resuming, for serving a finished job's answer and for
//! computing figures from a run.
//!
//! Line `n` (counted from 1) must be a whole (newline-ended) JSON object with `index`
//! `n - 1`, a non-empty `input_hash`, and either `scores` and `ranking` (a judgment) or
//! `error: {kind, message}`. A line that is not gives a [`ResultLineError`] naming its
//! line number and what is wrong; the reader then goes on with the next line, so a
//! caller decides whether to stop, cut or put an error in its place. A line longer than
//! the limit is never held in memory.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use ra_batch::results::{ResultLineError, ResultReader};
//! let file = concat!(
//!     r#"{"index":0,"id":"q1","scores":{"a":4.0,"b":2.0},"ranking":["a","b"],"reasoning":"…","input_hash":"9f"}"#, "\n",
//!     r#"{"index":1,"id":null,"error":{"kind":"timeout","message":"slow"},"input_hash":"3c"}"#, "\n",
//!     "not json\n",
//! );
//! let mut results = ResultReader::new(file.as_bytes(), 1 << 20);
//! let first = results.next().await.unwrap().unwrap();
//! assert_eq!(first.outcome.unwrap().ranking, ["a", "b"]);
//! let second = results.next().await.unwrap().unwrap();
//! assert_eq!(second.outcome.unwrap_err().kind, "timeout");
//! let third = results.next().await.unwrap_err();
//! assert!(matches!(third, ResultLineError::Malformed { line: 3, .. }), "{third}");
//! assert!(results.next().await.unwrap().is_none());
//! # });
//! ```

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncBufRead;

use crate::lines::{Body, LineReader, json_error};

/// One result line as read back. Fields the readers have no use for (`consistent`,
/// `attempts`, `latency_ms`, `usage`, `permutations`) are not read.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoredResult {
    /// The input line it answers (0-based), which is also its own line.
    pub index: usize,
    /// The input line's `id` (null when it had none).
    pub id: Value,
    /// The judgment, or the error written in its place.
    pub outcome: Result<StoredJudgment, StoredError>,
    /// The hash of the input line it answers: what a resumed run checks.
    pub input_hash: String,
}

/// A judged line's figures, names as the caller gave them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoredJudgment {
    /// Score by name, in the order written.
    pub scores: IndexMap<String, f64>,
    /// Names, best first.
    pub ranking: Vec<String>,
    /// The judge's reasoning (empty when the line has none).
    pub reasoning: String,
}

/// A failed line's error, as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct StoredError {
    /// The error kind (`bad_input`, `timeout`, …).
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

/// Why a results line could not be read. Every variant but `Io` names the line
/// (counted from 1) and the reader can go on after it.
///
/// ```
/// let e = ra_batch::results::ResultLineError::Unterminated { line: 7 };
/// assert_eq!(e.line(), Some(7));
/// assert_eq!(e.to_string(), "result line 7: cut short (no newline at its end)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultLineError {
    /// The file could not be read; stop reading.
    #[error("cannot read the results")]
    Io(#[source] std::io::Error),
    /// Longer than the limit given to [`ResultReader::new`]; not read.
    #[error("result line {line}: {bytes} bytes, longer than the {max}-byte limit; not read")]
    TooLong {
        /// The line, counted from 1.
        line: usize,
        /// Its length.
        bytes: u64,
        /// The limit.
        max: usize,
    },
    /// The last line, without its newline: a run killed while writing it.
    #[error("result line {line}: cut short (no newline at its end)")]
    Unterminated {
        /// The line, counted from 1.
        line: usize,
    },
    /// Not UTF-8 JSON with the fields of a result line.
    #[error("result line {line}: not a result line: {reason}")]
    Malformed {
        /// The line, counted from 1.
        line: usize,
        /// What is wrong, with its column.
        reason: String,
    },
    /// Neither `scores` and `ranking` nor an `error`.
    #[error("result line {line}: neither a judgment (scores and ranking) nor an error")]
    NoOutcome {
        /// The line, counted from 1.
        line: usize,
    },
    /// An empty `input_hash`.
    #[error("result line {line}: empty input_hash")]
    NoHash {
        /// The line, counted from 1.
        line: usize,
    },
    /// An `index` other than its place in the file.
    #[error("result line {line}: index {index}, expected {}", .line - 1)]
    WrongIndex {
        /// The line, counted from 1.
        line: usize,
        /// The index it holds.
        index: usize,
    },
}

impl ResultLineError {
    /// The line (counted from 1), for all but [`Io`](Self::Io).
    ///
    /// ```
    /// let e = ra_batch::results::ResultLineError::NoOutcome { line: 2 };
    /// assert_eq!(e.line(), Some(2));
    /// ```
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Io(_) => None,
            Self::TooLong { line, .. }
            | Self::Unterminated { line }
            | Self::Malformed { line, .. }
            | Self::NoOutcome { line }
            | Self::NoHash { line }
            | Self::WrongIndex { line, .. } => Some(*line),
        }
    }
}

/// The line as written (see `output::Line`).
#[derive(Deserialize)]
struct Wire {
    index: usize,
    #[serde(default)]
    id: Value,
    #[serde(default)]
    scores: Option<IndexMap<String, f64>>,
    #[serde(default)]
    ranking: Option<Vec<String>>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    error: Option<StoredError>,
    input_hash: String,
}

/// Reads the lines of a results file in order, at most `max_line` bytes of one in
/// memory (see the [module docs](self)).
pub struct ResultReader<R> {
    lines: LineReader<R>,
    max: usize,
}

/// A line read, with its bytes (without the line end) and its length in the file.
pub(crate) struct ReadLine {
    pub result: StoredResult,
    pub bytes: Vec<u8>,
    pub raw_len: u64,
}

impl<R: AsyncBufRead + Unpin> ResultReader<R> {
    /// The results in `reader`, reading at most `max_line` bytes of a line.
    ///
    /// ```
    /// let results = ra_batch::results::ResultReader::new(&b""[..], 1 << 20);
    /// ```
    pub fn new(reader: R, max_line: usize) -> Self {
        ResultReader {
            lines: LineReader::new(reader, max_line),
            max: max_line,
        }
    }

    /// The next line; `Ok(None)` at the end of the file. After an `Err` other than
    /// [`ResultLineError::Io`] the next call reads the following line.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let mut results = ra_batch::results::ResultReader::new(&b"{\"index\": 0}\n"[..], 1 << 20);
    /// let e = results.next().await.unwrap_err();
    /// assert_eq!(e.line(), Some(1));
    /// # });
    /// ```
    pub async fn next(&mut self) -> Result<Option<StoredResult>, ResultLineError> {
        Ok(self.next_line().await?.map(|l| l.result))
    }

    pub(crate) async fn next_line(&mut self) -> Result<Option<ReadLine>, ResultLineError> {
        let Some(raw) = self.lines.next_line().await.map_err(ResultLineError::Io)? else {
            return Ok(None);
        };
        let line = raw.index + 1;
        let bytes = match raw.body {
            Body::Bytes(b) => b,
            Body::TooLong { bytes, .. } => {
                return Err(ResultLineError::TooLong {
                    line,
                    bytes,
                    max: self.max,
                });
            }
        };
        if !raw.terminated {
            return Err(ResultLineError::Unterminated { line });
        }
        let result = parse(&bytes, line)?;
        Ok(Some(ReadLine {
            result,
            bytes,
            raw_len: raw.raw_len,
        }))
    }
}

/// One line's bytes (line `line`, counted from 1) as a result.
fn parse(bytes: &[u8], line: usize) -> Result<StoredResult, ResultLineError> {
    let wire: Wire = serde_json::from_slice(bytes).map_err(|e| ResultLineError::Malformed {
        line,
        reason: json_error(&e),
    })?;
    if wire.index != line - 1 {
        return Err(ResultLineError::WrongIndex {
            line,
            index: wire.index,
        });
    }
    if wire.input_hash.is_empty() {
        return Err(ResultLineError::NoHash { line });
    }
    let outcome = match (wire.error, wire.scores, wire.ranking) {
        (Some(error), _, _) => Err(error),
        (None, Some(scores), Some(ranking)) => Ok(StoredJudgment {
            scores,
            ranking,
            reasoning: wire.reasoning.unwrap_or_default(),
        }),
        (None, _, _) => return Err(ResultLineError::NoOutcome { line }),
    };
    Ok(StoredResult {
        index: wire.index,
        id: wire.id,
        outcome,
        input_hash: wire.input_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(text: &[u8], max: usize) -> Vec<Result<StoredResult, String>> {
        let mut reader = ResultReader::new(text, max);
        let mut out = Vec::new();
        loop {
            match reader.next().await {
                Ok(Some(r)) => out.push(Ok(r)),
                Ok(None) => return out,
                Err(e) => out.push(Err(e.to_string())),
            }
        }
    }

    #[tokio::test]
    async fn every_wrong_line_is_named_and_the_reader_goes_on() {
        let long = format!(
            r#"{{"index":2,"error":{{"kind":"bad_input","message":"{}"}},"input_hash":"h"}}"#,
            "x".repeat(300)
        );
        let lines = [
            r#"{"index":0,"id":7,"scores":{"b":1.0,"a":5.0},"ranking":["a","b"],"reasoning":"r","input_hash":"h0"}"#,
            r#"{"index":1,"error":{"kind":"timeout","message":"slow"},"input_hash":"h1"}"#,
            &long,
            "\u{ff}",
            r#"{"index":4,"scores":null,"ranking":null,"error":null,"input_hash":"h"}"#,
            r#"{"index":5,"error":{"kind":"k","message":"m"},"input_hash":""}"#,
            r#"{"index":9,"error":{"kind":"k","message":"m"},"input_hash":"h"}"#,
            r#"{"index":7,"scores":{"a":1.0},"ranking":["a"],"input_hash":"h7"}"#,
        ];
        let mut text = lines.join("\n").into_bytes();
        text.extend_from_slice(b"\n{\"index\":8,");
        let got = read_all(&text, 200).await;
        let first = got[0].as_ref().expect("line 1");
        assert_eq!(first.id, serde_json::json!(7));
        let judged = first.outcome.as_ref().expect("judged");
        assert_eq!(judged.scores.keys().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(judged.reasoning, "r");
        assert_eq!(
            got[1].as_ref().expect("line 2").outcome,
            Err(StoredError {
                kind: "timeout".into(),
                message: "slow".into()
            })
        );
        let errors: Vec<&str> = got[2..]
            .iter()
            .map(|r| r.as_ref().err().map_or("ok", String::as_str))
            .collect();
        let too_long = format!(
            "result line 3: {} bytes, longer than the 200-byte limit; not read",
            long.len()
        );
        assert_eq!(
            errors,
            [
                too_long.as_str(),
                "result line 4: not a result line: expected value at column 1",
                "result line 5: neither a judgment (scores and ranking) nor an error",
                "result line 6: empty input_hash",
                "result line 7: index 9, expected 6",
                "ok",
                "result line 9: cut short (no newline at its end)",
            ]
        );
        assert_eq!(
            got[7]
                .as_ref()
                .expect("line 8")
                .outcome
                .as_ref()
                .expect("judged")
                .reasoning,
            ""
        );
    }
}
