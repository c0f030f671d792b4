//! `RewardAnythingError`: a failed judgment, with the same `kind` strings as `ra score`.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;

pyo3::create_exception!(
    rewardanything_rs,
    RewardAnythingError,
    PyException,
    "A judgment failed. `.kind` is the error kind as `ra score` writes it (`transport`, \
     `timeout`, `http_status`, `no_json_object`, ...), `.message` the explanation and \
     `.attempts` the number of HTTP attempts made."
);

/// The exception for a failed judgment, its attributes set.
pub(crate) fn judge_error(py: Python<'_>, kind: &str, message: &str, attempts: u32) -> PyErr {
    let err = RewardAnythingError::new_err(format!("{kind}: {message}"));
    let value = err.value(py);
    // Setting attributes on a fresh exception instance cannot fail short of memory
    // exhaustion; the error would then still carry its message.
    let _ = value.setattr("kind", kind);
    let _ = value.setattr("message", message);
    let _ = value.setattr("attempts", attempts);
    err
}
