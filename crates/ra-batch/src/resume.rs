//! Resuming: which lines of an existing output are kept.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::error::BatchError;
use crate::lines::{Body, LineReader};

/// What a previous run left.
pub(crate) struct ResumeState {
    /// Valid lines at the start of the output (indices 0..kept).
    pub kept: usize,
    /// Their length in bytes; anything after is cut.
    pub valid_bytes: u64,
}

#[derive(Deserialize)]
struct Head {
    index: usize,
    input_hash: String,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

/// One kept line, read again while the input is read.
pub(crate) struct StoredLine {
    pub input_hash: String,
    pub failed: bool,
    pub raw: String,
}

impl ResumeState {
    pub fn fresh() -> Self {
        ResumeState {
            kept: 0,
            valid_bytes: 0,
        }
    }

    /// Lines already in the output file that this run will not write again.
    pub fn kept_in_place(&self, retry_failed: bool) -> usize {
        if retry_failed { 0 } else { self.kept }
    }

    /// Reads the output: its newline-ended lines that are result objects numbered 0, 1,
    /// 2, … are kept; the first line that is not (a partial last line, garbage, a line
    /// over `max_line` bytes, which is never held) and everything after it is dropped.
    pub async fn scan(path: &Path, max_line: usize) -> Result<Self, BatchError> {
        let file = match tokio::fs::File::open(path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::fresh()),
            Err(e) => return Err(BatchError::io("cannot read the output", path)(e)),
        };
        let mut lines = LineReader::new(BufReader::with_capacity(1 << 16, file), max_line);
        let mut state = Self::fresh();
        while let Some(line) = lines
            .next_line()
            .await
            .map_err(BatchError::io("cannot read the output", path))?
        {
            let Body::Bytes(bytes) = &line.body else {
                break;
            };
            if !line.terminated {
                break;
            }
            match serde_json::from_slice::<Head>(bytes) {
                Ok(head) if head.index == state.kept && !head.input_hash.is_empty() => {
                    state.kept += 1;
                    state.valid_bytes += line.raw_len;
                }
                _ => break,
            }
        }
        Ok(state)
    }

    /// A reader of the kept lines, in order (none when nothing is kept).
    pub async fn stored_reader(&self, path: &Path) -> Result<Option<StoredReader>, BatchError> {
        if self.kept == 0 {
            return Ok(None);
        }
        let file = tokio::fs::File::open(path)
            .await
            .map_err(BatchError::io("cannot read the output", path))?;
        Ok(Some(StoredReader {
            reader: BufReader::with_capacity(1 << 16, file),
            read: 0,
            path: path.to_path_buf(),
        }))
    }
}

pub(crate) struct StoredReader {
    reader: BufReader<tokio::fs::File>,
    read: usize,
    path: PathBuf,
}

impl StoredReader {
    pub fn next_index(&self) -> usize {
        self.read
    }

    pub async fn next(&mut self) -> Result<StoredLine, BatchError> {
        let mut raw = String::new();
        self.reader
            .read_line(&mut raw)
            .await
            .map_err(BatchError::io("cannot read the output again", &self.path))?;
        if raw.ends_with('\n') {
            raw.pop();
        }
        let head: Head =
            serde_json::from_str(&raw).map_err(|source| BatchError::OutputChanged {
                line: self.read,
                source,
            })?;
        self.read += 1;
        Ok(StoredLine {
            input_hash: head.input_hash,
            failed: head.error.is_some(),
            raw,
        })
    }
}
