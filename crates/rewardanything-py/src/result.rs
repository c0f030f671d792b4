//! `RewardResult`: the reference client's result attributes plus what it took.

use indexmap::IndexMap;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rewardanything_client::{JudgeError, Judged};

/// One judgment. Python objects are made on attribute access, so a 20,000-item batch
/// costs little until its fields are read.
#[pyclass(frozen, module = "rewardanything_rs", name = "RewardResult")]
pub(crate) struct RewardResult {
    pub(crate) scores: IndexMap<String, f64>,
    ranking: Vec<String>,
    reasoning: String,
    raw_output: Option<String>,
    consistent: bool,
    /// `(kind, message)` of a failed judgment.
    pub(crate) error: Option<(String, String)>,
    /// Caller's name → the name the judge was shown (`model-k` when masked).
    shown_as: IndexMap<String, String>,
    pub(crate) attempts: u32,
    latency_ms: u64,
}

impl RewardResult {
    pub(crate) fn judged(judged: Judged, shown_as: IndexMap<String, String>) -> Self {
        let j = judged.judgment;
        RewardResult {
            scores: j.scores,
            ranking: j.ranking,
            reasoning: j.reasoning,
            raw_output: Some(j.raw_output),
            consistent: j.consistent,
            error: None,
            shown_as,
            attempts: judged.attempts,
            latency_ms: millis(judged.latency),
        }
    }

    /// A failed judgment, with its attempts and the time it took to fail.
    pub(crate) fn failed(error: &JudgeError, shown_as: IndexMap<String, String>) -> Self {
        let mut result = Self::failure(
            error.kind_str(),
            error.to_string(),
            error.attempts,
            error.latency,
        );
        result.shown_as = shown_as;
        result
    }

    /// A failure of `kind` that is not a judgment's (a coalesced group that was cancelled).
    pub(crate) fn failure(
        kind: &str,
        message: String,
        attempts: u32,
        latency: std::time::Duration,
    ) -> Self {
        RewardResult {
            scores: IndexMap::new(),
            ranking: Vec::new(),
            reasoning: String::new(),
            raw_output: None,
            consistent: false,
            error: Some((kind.to_string(), message)),
            shown_as: IndexMap::new(),
            attempts,
            latency_ms: millis(latency),
        }
    }

    /// The exception for a failed result (`judge` and `ajudge` raise it).
    pub(crate) fn into_result(self) -> PyResult<Self> {
        match &self.error {
            None => Ok(self),
            Some((kind, message)) => Python::attach(|py| {
                Err(crate::error::judge_error(py, kind, message, self.attempts))
            }),
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[pymethods]
impl RewardResult {
    /// Response name → score (1–5), in the caller's response order; empty on failure.
    #[getter]
    fn scores<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, score) in &self.scores {
            dict.set_item(name, score)?;
        }
        Ok(dict)
    }

    /// Response names from best to worst; empty on failure.
    #[getter]
    fn ranking(&self) -> Vec<String> {
        self.ranking.clone()
    }

    /// Response name → the name the judge was shown it under (`model-3` when masked,
    /// the name itself when not), in the caller's order: what the reasoning's names
    /// refer to. Known for a failed judgment too (empty only when nothing was sent).
    #[getter]
    fn shown_as<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, shown) in &self.shown_as {
            dict.set_item(name, shown)?;
        }
        Ok(dict)
    }

    /// The judge's reasoning (its think section); empty on failure.
    #[getter]
    fn reasoning(&self) -> &str {
        &self.reasoning
    }

    /// The model's whole output text; `None` on failure.
    #[getter]
    fn raw_output(&self) -> Option<&str> {
        self.raw_output.as_deref()
    }

    /// Whether the ranking agrees with the scores (and every check passed).
    #[getter]
    fn consistent(&self) -> bool {
        self.consistent
    }

    /// `None`, or `{"kind": ..., "message": ...}` for a failed judgment.
    #[getter]
    fn error<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some((kind, message)) = &self.error else {
            return Ok(None);
        };
        let dict = PyDict::new(py);
        dict.set_item("kind", kind)?;
        dict.set_item("message", message)?;
        Ok(Some(dict))
    }

    /// `True` when the judgment succeeded (`error is None`).
    #[getter]
    fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// HTTP attempts made (0 when none could start).
    #[getter]
    fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Wall time of the judgment in milliseconds.
    #[getter]
    fn latency_ms(&self) -> u64 {
        self.latency_ms
    }

    /// All fields as a plain dict (JSON-ready).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("scores", self.scores(py)?)?;
        dict.set_item("ranking", self.ranking())?;
        dict.set_item("reasoning", self.reasoning())?;
        dict.set_item("shown_as", self.shown_as(py)?)?;
        dict.set_item("raw_output", self.raw_output())?;
        dict.set_item("consistent", self.consistent)?;
        dict.set_item("error", self.error(py)?)?;
        dict.set_item("attempts", self.attempts)?;
        dict.set_item("latency_ms", self.latency_ms)?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        match &self.error {
            None => format!(
                "RewardResult(scores={:?}, ranking={:?}, consistent={}, attempts={}, latency_ms={})",
                self.scores,
                self.ranking,
                if self.consistent { "True" } else { "False" },
                self.attempts,
                self.latency_ms
            ),
            Some((kind, message)) => format!(
                "RewardResult(error={{'kind': {kind:?}, 'message': {message:?}}}, attempts={}, latency_ms={})",
                self.attempts, self.latency_ms
            ),
        }
    }
}
