//! Result lines and where they go.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use rewardanything_client::{Ensemble, EnsembleError};
use rewardanything_client::{JudgeError, Judged, Usage};
use serde::Serialize;
use serde_json::Value;

use crate::error::BatchError;
use crate::files;
use crate::resume::ResumeState;

/// One output line, serialized, with what the summary needs.
pub(crate) struct ResultLine {
    /// Its input line (0-based).
    pub index: usize,
    /// The JSON object and its newline.
    pub json: String,
    /// `None` when judged; else the error kind.
    pub error_kind: Option<String>,
    pub usage: Option<Usage>,
    /// Whether this run produced it (not a line kept from a previous run).
    pub fresh: bool,
}

#[derive(Serialize)]
struct ErrorField<'a> {
    kind: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct Line<'a> {
    index: usize,
    id: &'a Value,
    scores: Option<&'a IndexMap<String, f64>>,
    ranking: Option<&'a [String]>,
    reasoning: Option<&'a str>,
    consistent: Option<bool>,
    error: Option<ErrorField<'a>>,
    attempts: u32,
    latency_ms: u64,
    usage: Option<Usage>,
    /// Only with several orders per request (absent otherwise: single-judgment lines
    /// are unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    permutations: Option<OrdersField<'a>>,
    input_hash: &'a str,
}

/// What an ensemble line adds: the position-bias figures and each order's judgment.
#[derive(Serialize)]
struct OrdersField<'a> {
    /// Distinct orders judged (at most N! for N responses).
    orders: usize,
    flip_rate: Option<f64>,
    flipped_pairs: u64,
    pairs: u64,
    spread: &'a IndexMap<String, f64>,
    judgments: Vec<OrderField<'a>>,
}

#[derive(Serialize)]
struct OrderField<'a> {
    seed: u64,
    positions: &'a [usize],
    scores: &'a IndexMap<String, f64>,
    ranking: &'a [String],
}

impl Line<'_> {
    fn to_json(&self) -> String {
        // Strings, numbers and JSON values always serialize, and always as UTF-8.
        let mut out = Vec::with_capacity(
            512 + self.reasoning.map_or(0, str::len)
                + self.error.as_ref().map_or(0, |e| e.message.len()),
        );
        // The newline is part of the line, so a line goes out in one write.
        match serde_json::to_writer(&mut out, self) {
            Ok(()) => {
                out.push(b'\n');
                String::from_utf8(out).unwrap_or_default()
            }
            Err(_) => String::new(),
        }
    }

    /// The output line this run wrote: its JSON, and the error kind and usage the
    /// summary counts, taken from the line itself.
    fn written(&self) -> ResultLine {
        ResultLine {
            index: self.index,
            json: self.to_json(),
            error_kind: self.error.as_ref().map(|e| e.kind.to_string()),
            usage: self.usage,
            fresh: true,
        }
    }
}

impl ResultLine {
    pub fn bad_input(index: usize, id: Value, hash: String, message: String) -> Self {
        // Lines count from 1 in messages; `index` stays 0-based.
        let message = format!("line {}: {message}", index + 1);
        Self::failure(index, &id, &hash, "bad_input", &message, 0, 0)
    }

    /// A line with no judgment: every result field null, the error filled in.
    fn failure(
        index: usize,
        id: &Value,
        hash: &str,
        kind: &str,
        message: &str,
        attempts: u32,
        latency_ms: u64,
    ) -> Self {
        Line {
            index,
            id,
            scores: None,
            ranking: None,
            reasoning: None,
            consistent: None,
            error: Some(ErrorField { kind, message }),
            attempts,
            latency_ms,
            usage: None,
            permutations: None,
            input_hash: hash,
        }
        .written()
    }

    pub fn from_result(
        index: usize,
        id: Value,
        hash: String,
        result: Result<Judged, JudgeError>,
        elapsed: Duration,
    ) -> Self {
        match result {
            Ok(judged) => {
                let j = &judged.judgment;
                Line {
                    index,
                    id: &id,
                    scores: Some(&j.scores),
                    ranking: Some(&j.ranking),
                    reasoning: Some(&j.reasoning),
                    consistent: Some(j.consistent),
                    error: None,
                    attempts: judged.attempts,
                    latency_ms: judged.latency.as_millis() as u64,
                    usage: judged.usage,
                    permutations: None,
                    input_hash: &hash,
                }
                .written()
            }
            Err(e) => Self::failure(
                index,
                &id,
                &hash,
                e.kind_str(),
                &e.to_string(),
                e.attempts,
                elapsed.as_millis() as u64,
            ),
        }
    }

    /// An ensemble's line: `scores` are the means, `ranking` by mean (ties by Borda
    /// count), `reasoning` the first order's, `consistent` whether every order's was,
    /// `attempts` and `usage` summed, plus `permutations` (see [`OrdersField`]).
    pub fn from_ensemble(
        index: usize,
        id: Value,
        hash: String,
        result: Result<Ensemble, EnsembleError>,
        elapsed: Duration,
    ) -> Self {
        let e = match result {
            Ok(e) => e,
            Err(err) => {
                let (kind, attempts) = match &err {
                    EnsembleError::Judge { source, .. } => (source.kind_str(), source.attempts),
                    _ => ("bad_input", 0),
                };
                return Self::failure(
                    index,
                    &id,
                    &hash,
                    kind,
                    &err.to_string(),
                    attempts,
                    elapsed.as_millis() as u64,
                );
            }
        };
        let mut usage: Option<Usage> = None;
        for j in &e.judgments {
            if let Some(u) = j.judged.usage {
                let total = usage.get_or_insert_with(Usage::default);
                total.prompt_tokens += u.prompt_tokens;
                total.completion_tokens += u.completion_tokens;
            }
        }
        let orders = OrdersField {
            orders: e.judgments.len(),
            flip_rate: e.flips.rate(),
            flipped_pairs: e.flips.flipped,
            pairs: e.flips.pairs,
            spread: &e.spread,
            judgments: e
                .judgments
                .iter()
                .map(|j| OrderField {
                    seed: j.seed,
                    positions: &j.positions,
                    scores: &j.judged.judgment.scores,
                    ranking: &j.judged.judgment.ranking,
                })
                .collect(),
        };
        Line {
            index,
            id: &id,
            scores: Some(&e.scores),
            ranking: Some(&e.ranking),
            reasoning: e
                .judgments
                .first()
                .map(|j| j.judged.judgment.reasoning.as_str()),
            consistent: Some(e.judgments.iter().all(|j| j.judged.judgment.consistent)),
            error: None,
            attempts: e.judgments.iter().map(|j| j.judged.attempts).sum(),
            latency_ms: elapsed.as_millis() as u64,
            usage,
            permutations: Some(orders),
            input_hash: &hash,
        }
        .written()
    }

    /// A line kept from a previous run (without its newline), written again as it was.
    pub fn verbatim(index: usize, mut json: String) -> Self {
        json.push('\n');
        ResultLine {
            index,
            json,
            error_kind: None,
            usage: None,
            fresh: false,
        }
    }
}

/// Where result lines are written: stdout, the output file (appending after a resumed
/// prefix), or a temporary file that replaces the output at the end (--retry-failed,
/// which rewrites lines in the middle).
pub(crate) struct OutputSink {
    writer: Option<BufWriter<Box<dyn Write + Send>>>,
    /// Resume-append mode: the file is opened, and its partial last line cut, only at the
    /// first write (or at a complete finish), so a run refused for a changed input leaves
    /// the output untouched.
    deferred_append: Option<(PathBuf, u64)>,
    dirty: bool,
    written: usize,
    replacement: Option<(PathBuf, PathBuf, usize)>,
}

/// The output as it is, for writing (appending after a resumed prefix).
fn open_existing(path: &Path) -> Result<File, BatchError> {
    files::open(OpenOptions::new().write(true), path)
        .map_err(BatchError::io("cannot open the output", path))
}

fn buffered(file: Box<dyn Write + Send>) -> BufWriter<Box<dyn Write + Send>> {
    BufWriter::with_capacity(1 << 16, file)
}

impl OutputSink {
    /// `None` is stdout.
    pub fn open(
        path: Option<&Path>,
        resume: &ResumeState,
        retry_failed: bool,
    ) -> Result<Self, BatchError> {
        let mut sink = OutputSink {
            writer: None,
            deferred_append: None,
            dirty: false,
            written: resume.kept_in_place(retry_failed),
            replacement: None,
        };
        let Some(path) = path else {
            sink.writer = Some(buffered(Box::new(std::io::stdout())));
            return Ok(sink);
        };
        // No open below follows a link planted at the output's name (see `files`).
        if resume.kept > 0 && retry_failed {
            let (temp, file) =
                files::create_temp(path).map_err(BatchError::io("cannot create", path))?;
            sink.replacement = Some((temp, path.to_path_buf(), resume.kept));
            sink.writer = Some(buffered(Box::new(file)));
        } else if resume.kept > 0 {
            // Fail early if the file cannot be written, without changing it yet.
            open_existing(path)?;
            sink.deferred_append = Some((path.to_path_buf(), resume.valid_bytes));
        } else {
            let file =
                files::create(path).map_err(BatchError::io("cannot create the output", path))?;
            sink.writer = Some(buffered(Box::new(file)));
        }
        Ok(sink)
    }

    fn writer(&mut self) -> Result<&mut BufWriter<Box<dyn Write + Send>>, BatchError> {
        if let Some((path, valid_bytes)) = self.deferred_append.take() {
            let mut file = open_existing(&path)?;
            // Drop a partial last line (a run killed mid-write), then append.
            file.set_len(valid_bytes)
                .map_err(BatchError::io("cannot truncate the output", &path))?;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))
                .map_err(BatchError::io("cannot seek in the output", &path))?;
            self.writer = Some(buffered(Box::new(file)));
        }
        // Every constructor sets a writer or a deferred append, which sets one above.
        self.writer.as_mut().ok_or_else(|| {
            BatchError::Write(std::io::Error::other("internal: the output has no writer"))
        })
    }

    pub fn write(&mut self, line: &ResultLine) -> Result<(), BatchError> {
        let writer = self.writer()?;
        writer
            .write_all(line.json.as_bytes())
            .map_err(BatchError::Write)?;
        self.dirty = true;
        self.written += 1;
        Ok(())
    }

    pub fn dirty(&self) -> bool {
        self.dirty
    }

    pub fn flush(&mut self) -> Result<(), BatchError> {
        if let Some(writer) = self.writer.as_mut() {
            writer.flush().map_err(BatchError::Write)?;
        }
        self.dirty = false;
        Ok(())
    }

    /// Flushes; a complete run also cuts a resumed output's partial last line. A
    /// replacement file takes the output's place when it is complete or holds at least
    /// as many lines as the output had.
    pub fn finish(mut self, complete: bool) -> Result<(), BatchError> {
        if complete {
            self.writer()?;
        }
        self.flush()?;
        if let Some((temp, target, kept)) = self.replacement.take() {
            if complete || self.written >= kept {
                files::persist(&temp, &target)
                    .map_err(BatchError::io("cannot replace", &target))?;
            } else {
                std::fs::remove_file(&temp).map_err(BatchError::io("cannot remove", &temp))?;
            }
        }
        Ok(())
    }

    /// After a fatal error: keeps what was written, drops a replacement file and leaves
    /// an output not yet written to as it was.
    pub fn abandon(mut self) -> Result<(), BatchError> {
        self.flush()?;
        if let Some((temp, _, _)) = self.replacement.take() {
            std::fs::remove_file(&temp).map_err(BatchError::io("cannot remove", &temp))?;
        }
        Ok(())
    }
}
