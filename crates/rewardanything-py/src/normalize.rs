//! Reward normalization for the Python reward functions: the client library's own
//! [`normalize`], so each name (`raw`, `unit`, `centered`, `group`) is one map in Rust,
//! in `ra gateway --reward` and in Python.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rewardanything_client::{Normalization, UnknownNormalization};

/// `normalize(scores, normalization)`: the 1–5 scores of one group, normalized. A
/// `ValueError` for an unknown name, or for `group` on fewer than two scores (the group
/// mean of one score is itself: the reward would be 0 whatever the score).
#[pyfunction]
pub(crate) fn normalize(scores: Vec<f64>, normalization: &str) -> PyResult<Vec<f64>> {
    let normalization: Normalization = normalization
        .parse()
        .map_err(|e: UnknownNormalization| PyValueError::new_err(e.to_string()))?;
    rewardanything_client::normalize(&scores, normalization)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// The accepted normalization names, in order.
pub(crate) fn names() -> Vec<&'static str> {
    Normalization::NAMES.to_vec()
}
