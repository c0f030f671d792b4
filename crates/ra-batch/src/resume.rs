//! Resuming: which lines of an existing output are kept.

use std::path::{Path, PathBuf};

use tokio::io::BufReader;

use crate::error::BatchError;
use crate::results::{ResultLineError, ResultReader};

/// What a previous run left.
pub(crate) struct ResumeState {
    /// Valid lines at the start of the output (indices 0..kept).
    pub kept: usize,
    /// Their length in bytes; anything after is cut.
    pub valid_bytes: u64,
    /// Why the kept lines end before the end of the output (the first line not kept).
    pub cut: Option<ResultLineError>,
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
            cut: None,
        }
    }

    /// Lines already in the output file that this run will not write again.
    pub fn kept_in_place(&self, retry_failed: bool) -> usize {
        if retry_failed { 0 } else { self.kept }
    }

    /// Reads the output: its lines up to the first one the [`ResultReader`] refuses (a
    /// partial last line, garbage, a line over `max_line` bytes, which is never held)
    /// are kept; that line and everything after it is dropped.
    pub async fn scan(path: &Path, max_line: usize) -> Result<Self, BatchError> {
        let file = match tokio::fs::File::open(path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::fresh()),
            Err(e) => return Err(BatchError::io("cannot read the output", path)(e)),
        };
        let mut lines = ResultReader::new(BufReader::with_capacity(1 << 16, file), max_line);
        let mut state = Self::fresh();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    state.kept += 1;
                    state.valid_bytes += line.raw_len;
                }
                Ok(None) => break,
                Err(ResultLineError::Io(e)) => {
                    return Err(BatchError::io("cannot read the output", path)(e));
                }
                Err(cut) => {
                    state.cut = Some(cut);
                    break;
                }
            }
        }
        Ok(state)
    }

    /// A reader of the kept lines, in order (none when nothing is kept).
    pub async fn stored_reader(
        &self,
        path: &Path,
        max_line: usize,
    ) -> Result<Option<StoredReader>, BatchError> {
        if self.kept == 0 {
            return Ok(None);
        }
        let file = tokio::fs::File::open(path)
            .await
            .map_err(BatchError::io("cannot read the output", path))?;
        Ok(Some(StoredReader {
            reader: ResultReader::new(BufReader::with_capacity(1 << 16, file), max_line),
            read: 0,
            path: path.to_path_buf(),
        }))
    }
}

pub(crate) struct StoredReader {
    reader: ResultReader<BufReader<tokio::fs::File>>,
    read: usize,
    path: PathBuf,
}

impl StoredReader {
    pub fn next_index(&self) -> usize {
        self.read
    }

    /// The next kept line, which the scan read already: anything else means another
    /// process changed the output meanwhile.
    pub async fn next(&mut self) -> Result<StoredLine, BatchError> {
        let line = match self.reader.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => {
                return Err(BatchError::OutputChanged(ResultLineError::Unterminated {
                    line: self.read + 1,
                }));
            }
            Err(ResultLineError::Io(e)) => {
                return Err(BatchError::io("cannot read the output again", &self.path)(
                    e,
                ));
            }
            Err(e) => return Err(BatchError::OutputChanged(e)),
        };
        self.read += 1;
        Ok(StoredLine {
            input_hash: line.result.input_hash,
            failed: line.result.outcome.is_err(),
            // The scan read it as UTF-8 JSON.
            raw: String::from_utf8_lossy(&line.bytes).into_owned(),
        })
    }
}
