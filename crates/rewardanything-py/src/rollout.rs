//! The rollout splitting of [`rewardanything_client::rollout`] for Python: the very code
//! the gateway's OpenRLHF `/get_reward` runs, so `rewardanything_rs.openrlhf` cuts
//! questions, responses and think blocks exactly as the gateway does.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use serde_json::Value;

use crate::convert;

pyo3::create_exception!(
    rewardanything_rs,
    RolloutSplitError,
    PyValueError,
    "A rollout has no boundary between prompt and response that the response could not \
     have written (the query does not hold its prompt; with no prompt, it is not a \
     single-turn chat of a known template), so it must not be judged. `.kind` is \
     `prompt_not_found`, `no_template`, `no_assistant_header` or `not_single_turn`."
);

/// A rollout split into the judge's question and the response (`split_rollout`).
#[pyclass(frozen, get_all, eq, module = "rewardanything_rs", name = "Rollout")]
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rollout {
    /// The last user turn of the prompt (or the plain prompt), trimmed.
    question: String,
    /// The response: reasoning block and end-of-turn tokens cut, trimmed.
    response: String,
    /// The response opened a reasoning block that never closed (so it is empty).
    unfinished_think: bool,
}

#[pymethods]
impl Rollout {
    fn __repr__(&self) -> String {
        format!(
            "Rollout(question={:?}, response={:?}, unfinished_think={})",
            self.question,
            self.response,
            if self.unfinished_think {
                "True"
            } else {
                "False"
            }
        )
    }
}

/// Splits an RL rollout's `query` (prompt + response, special tokens kept) into
/// question and response: the question is `prompt`'s own last user turn and the
/// response the query after the prompt (found even when a tokenizer round trip changed
/// whitespace or begin-of-sequence tokens); with no prompt, the query must be a
/// single-turn chat. Raises `RolloutSplitError` when no trusted boundary exists.
#[pyfunction]
#[pyo3(signature = (query, prompt=None))]
pub(crate) fn split_rollout(
    query: &Bound<'_, PyAny>,
    prompt: Option<&Bound<'_, PyAny>>,
) -> PyResult<Rollout> {
    let py = query.py();
    let query = convert::string(query, "query")?;
    let prompt = match prompt.filter(|p| !p.is_none()) {
        Some(p) => Some(convert::string(p, "prompt")?),
        None => None,
    };
    let r = rewardanything_client::split_rollout(&query, prompt.as_deref()).map_err(|e| {
        let err = RolloutSplitError::new_err(format!("{}: {e}", e.kind()));
        // Setting an attribute on a fresh exception cannot fail short of memory
        // exhaustion; the message still carries the kind.
        let _ = err.value(py).setattr("kind", e.kind());
        err
    })?;
    Ok(Rollout {
        question: r.question,
        response: r.response,
        unfinished_think: r.unfinished_think,
    })
}

/// The user's question inside a templated prompt (its last user turn), else the
/// prompt itself, trimmed.
#[pyfunction]
pub(crate) fn user_question(prompt: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(rewardanything_client::user_question(&convert::string(
        prompt, "prompt",
    )?))
}

/// Removes trailing end-of-turn tokens (repeated, with whitespace between).
#[pyfunction]
pub(crate) fn strip_end_of_turn(text: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(rewardanything_client::strip_end_of_turn(&convert::string(text, "text")?).to_string())
}

/// The `"principle"` of a label that is a dict or the JSON text of one, else `None`;
/// raises `ValueError` when that principle is not a non-empty str.
#[pyfunction]
pub(crate) fn label_principle(label: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    rewardanything_client::label_principle(&label_value(label)?)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// As much of a Python label as `label_principle` reads: a str, or a dict reduced to
/// its `"principle"` (a str, or `null` standing for any other value, which is refused
/// alike); anything else is no principle.
fn label_value(label: &Bound<'_, PyAny>) -> PyResult<Value> {
    if label.is_instance_of::<PyString>() {
        return Ok(Value::String(convert::string(label, "label")?));
    }
    let Ok(dict) = label.cast::<PyDict>() else {
        return Ok(Value::Null);
    };
    let mut object = serde_json::Map::new();
    if let Some(p) = dict.get_item("principle")? {
        let value = if p.is_instance_of::<PyString>() {
            Value::String(convert::string(&p, "label['principle']")?)
        } else {
            Value::Null
        };
        object.insert("principle".into(), value);
    }
    Ok(Value::Object(object))
}
