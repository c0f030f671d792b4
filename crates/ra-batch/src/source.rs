//! Input lines → jobs: decoding, and the check of kept lines against a resumed output.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use rewardanything_client::EnsembleError;
use rewardanything_client::{Client, JudgeErrorKind, JudgeRequest};
use serde_json::Value;
use tokio::io::AsyncBufRead;

use crate::error::BatchError;
use crate::lines::{Body, LineReader, RawLine};
use crate::output::ResultLine;
use crate::request::RequestInput;
use crate::resume::{StoredLine, StoredReader};

/// The hash stored in the output to detect a changed input on resume (XXH3-64 of the
/// raw line, hex). With several orders per line (`permutations` > 1) the count is
/// appended (`…-k4`): a line judged under other settings counts as changed, so a
/// resumed run never mixes single judgments and ensembles.
pub(crate) fn input_hash(line: &RawLine, permutations: usize) -> String {
    if permutations > 1 {
        format!("{:016x}-k{permutations}", line.hash())
    } else {
        format!("{:016x}", line.hash())
    }
}

/// What to do with one input line.
pub(crate) enum Job {
    /// Already decided (a bad line, or a kept line re-emitted by --retry-failed).
    Ready(ResultLine),
    /// A kept line whose stored result is an error (counted for the exit status).
    KeptFailed,
    /// Send to the model.
    Judge(Box<Pending>),
}

/// A request waiting to be judged, with what its result line needs.
pub(crate) struct Pending {
    index: usize,
    id: Value,
    hash: String,
    request: JudgeRequest,
    /// Orders to judge the request under (1: one judgment with the client's masking).
    permutations: usize,
}

impl Pending {
    /// The judgment's result line; `None` when the client was closed (after a stop
    /// signal) before the judgment got on the wire or while it waited to retry.
    pub async fn judge(self, client: Client) -> Option<ResultLine> {
        let started = Instant::now();
        if self.permutations > 1 {
            let result = client
                .judge_ensemble(&self.request, self.permutations)
                .await;
            if let Err(EnsembleError::Judge { source, .. }) = &result
                && matches!(source.kind, JudgeErrorKind::Cancelled)
            {
                return None;
            }
            return Some(ResultLine::from_ensemble(
                self.index,
                self.id,
                self.hash,
                result,
                started.elapsed(),
            ));
        }
        let result = client.judge_detailed(&self.request).await;
        if let Err(e) = &result
            && matches!(e.kind, JudgeErrorKind::Cancelled)
        {
            return None;
        }
        Some(ResultLine::from_result(
            self.index,
            self.id,
            self.hash,
            result,
            started.elapsed(),
        ))
    }
}

fn decode_job(line: &RawLine, permutations: usize) -> Job {
    let hash = input_hash(line, permutations);
    // The client library's one set of request rules; a broken one is a `bad_input`
    // line naming the field, with the line's id.
    let decoded = crate::lines::decode::<RequestInput>(&line.body).map(|mut input| {
        let id = std::mem::take(&mut input.id);
        let request = input.into_request();
        match request.validate() {
            Ok(()) => Ok((id, request)),
            Err(e) => Err((id, e.to_string())),
        }
    });
    match decoded {
        Ok(Ok((id, request))) => Job::Judge(Box::new(Pending {
            index: line.index,
            id,
            hash,
            request,
            permutations,
        })),
        Ok(Err((id, message))) => Job::Ready(ResultLine::bad_input(line.index, id, hash, message)),
        Err(message) => {
            // Keep the id when the line is JSON but not a valid request.
            let id = match &line.body {
                Body::Bytes(b) => serde_json::from_slice::<Value>(b)
                    .ok()
                    .and_then(|v| v.get("id").cloned()),
                Body::TooLong { .. } => None,
            };
            Job::Ready(ResultLine::bad_input(
                line.index,
                id.unwrap_or(Value::Null),
                hash,
                message,
            ))
        }
    }
}

/// Reads the input and yields one job per line to judge or re-emit. Kept lines (those
/// a resumed output already holds) are checked against the stored hashes and skipped.
pub(crate) struct JobSource<R> {
    pub reader: LineReader<R>,
    pub stored: Option<StoredReader>,
    /// Lines kept from the previous run (indices `0..kept`).
    pub kept: usize,
    pub retry_failed: bool,
    /// Orders per request (see [`crate::Batch::permutations`]).
    pub permutations: usize,
    /// Set when the whole input was read: a signal after that does not make the run
    /// interrupted.
    pub exhausted: Arc<AtomicBool>,
}

impl<R: AsyncBufRead + Unpin> JobSource<R> {
    pub async fn next_job(&mut self) -> Result<Option<Job>, BatchError> {
        loop {
            let Some(line) = self.reader.next_line().await.map_err(BatchError::Input)? else {
                if self
                    .stored
                    .as_ref()
                    .is_some_and(|s| s.next_index() < self.kept)
                {
                    return Err(BatchError::InputShorter { kept: self.kept });
                }
                self.exhausted.store(true, Ordering::Relaxed);
                return Ok(None);
            };
            if line.index >= self.kept {
                return Ok(Some(decode_job(&line, self.permutations)));
            }
            if let Some(job) = self.kept_line(&line).await? {
                return Ok(Some(job));
            }
        }
    }

    /// A line the output already holds: refused if it changed, else skipped, counted, or
    /// under --retry-failed re-emitted (success) or judged again (failure).
    async fn kept_line(&mut self, line: &RawLine) -> Result<Option<Job>, BatchError> {
        // `kept > 0` always comes with a stored reader (see `ResumeState::stored_reader`).
        let Some(stored) = self.stored.as_mut() else {
            return Ok(Some(decode_job(line, self.permutations)));
        };
        let previous: StoredLine = stored.next().await?;
        let hash = input_hash(line, self.permutations);
        if previous.input_hash != hash {
            return Err(BatchError::InputChanged {
                line: line.index + 1,
                hash,
                stored: previous.input_hash,
            });
        }
        Ok(match (self.retry_failed, previous.failed) {
            (false, true) => Some(Job::KeptFailed),
            (false, false) => None,
            (true, false) => Some(Job::Ready(ResultLine::verbatim(line.index, previous.raw))),
            (true, true) => Some(decode_job(line, self.permutations)),
        })
    }
}
