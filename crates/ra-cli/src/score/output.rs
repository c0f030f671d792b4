//! Result lines and where they go.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use indexmap::IndexMap;
use rewardanything_client::{JudgeError, Judged, Usage};
use serde::Serialize;
use serde_json::Value;

use super::resume::ResumeState;

/// One output line, serialized, with what the summary needs.
pub struct ResultLine {
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
    input_hash: &'a str,
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
        let json = Line {
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
            input_hash: hash,
        }
        .to_json();
        ResultLine {
            json,
            error_kind: Some(kind.to_string()),
            usage: None,
            fresh: true,
        }
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
                let json = Line {
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
                    input_hash: &hash,
                }
                .to_json();
                ResultLine {
                    json,
                    error_kind: None,
                    usage: judged.usage,
                    fresh: true,
                }
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

    /// A line kept from a previous run (without its newline), written again as it was.
    pub fn verbatim(mut json: String) -> Self {
        json.push('\n');
        ResultLine {
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
pub struct OutputSink {
    writer: Option<BufWriter<Box<dyn Write + Send>>>,
    /// Resume-append mode: the file is opened, and its partial last line cut, only at the
    /// first write (or at a complete finish), so a run refused for a changed input leaves
    /// the output untouched.
    deferred_append: Option<(PathBuf, u64)>,
    dirty: bool,
    written: usize,
    replacement: Option<(PathBuf, PathBuf, usize)>,
}

fn buffered(file: Box<dyn Write + Send>) -> BufWriter<Box<dyn Write + Send>> {
    BufWriter::with_capacity(1 << 16, file)
}

impl OutputSink {
    pub fn open(path: &str, resume: &ResumeState, retry_failed: bool) -> anyhow::Result<Self> {
        let mut sink = OutputSink {
            writer: None,
            deferred_append: None,
            dirty: false,
            written: resume.kept_in_place(retry_failed),
            replacement: None,
        };
        if path == "-" {
            sink.writer = Some(buffered(Box::new(std::io::stdout())));
        } else if resume.kept > 0 && retry_failed {
            let target = PathBuf::from(path);
            let mut temp = target.clone().into_os_string();
            temp.push(".ra-tmp");
            let temp = PathBuf::from(temp);
            let file =
                File::create(&temp).with_context(|| format!("cannot create {}", temp.display()))?;
            sink.replacement = Some((temp, target, resume.kept));
            sink.writer = Some(buffered(Box::new(file)));
        } else if resume.kept > 0 {
            // Fail early if the file cannot be written, without changing it yet.
            OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("cannot open --output {path}"))?;
            sink.deferred_append = Some((PathBuf::from(path), resume.valid_bytes));
        } else {
            let file =
                File::create(path).with_context(|| format!("cannot create --output {path}"))?;
            sink.writer = Some(buffered(Box::new(file)));
        }
        Ok(sink)
    }

    fn writer(&mut self) -> anyhow::Result<&mut BufWriter<Box<dyn Write + Send>>> {
        if let Some((path, valid_bytes)) = self.deferred_append.take() {
            let mut file = OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot open --output {}", path.display()))?;
            // Drop a partial last line (a run killed mid-write), then append.
            file.set_len(valid_bytes)
                .with_context(|| format!("cannot truncate --output {}", path.display()))?;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
            self.writer = Some(buffered(Box::new(file)));
        }
        self.writer
            .as_mut()
            .context("internal: the output sink has no writer")
    }

    pub fn write(&mut self, line: &ResultLine) -> anyhow::Result<()> {
        let writer = self.writer()?;
        writer.write_all(line.json.as_bytes())?;
        self.dirty = true;
        self.written += 1;
        Ok(())
    }

    pub fn dirty(&self) -> bool {
        self.dirty
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(writer) = self.writer.as_mut() {
            writer.flush().context("writing --output")?;
        }
        self.dirty = false;
        Ok(())
    }

    /// Flushes; a complete run also cuts a resumed output's partial last line. A
    /// replacement file takes the output's place when it is complete or holds at least
    /// as many lines as the output had.
    pub fn finish(mut self, complete: bool) -> anyhow::Result<()> {
        if complete {
            self.writer()?;
        }
        self.flush()?;
        if let Some((temp, target, kept)) = self.replacement.take() {
            if complete || self.written >= kept {
                std::fs::rename(&temp, &target)
                    .with_context(|| format!("cannot replace {}", target.display()))?;
            } else {
                std::fs::remove_file(&temp)?;
            }
        }
        Ok(())
    }

    /// After a fatal error: keeps what was written, drops a replacement file and leaves
    /// an output not yet written to as it was.
    pub fn abandon(mut self) -> anyhow::Result<()> {
        self.flush()?;
        if let Some((temp, _, _)) = self.replacement.take() {
            std::fs::remove_file(&temp)?;
        }
        Ok(())
    }
}
