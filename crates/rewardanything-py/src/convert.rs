//! Checking Python input and turning it into [`JudgeRequest`]s, before any call: a
//! wrong type is a `TypeError`, a wrong value a `ValueError`, each naming the field
//! (`requests[3].responses['b']`).

use indexmap::IndexMap;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString, PyTuple};
use rewardanything_client::JudgeRequest;

/// The Python type name of `obj`, for messages.
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// A `str` (not a subclass-free check: `str` subclasses are accepted, like Python).
pub(crate) fn string(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<String> {
    if !obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{field} must be a str, not {}",
            type_name(obj)
        )));
    }
    obj.extract::<String>()
        .map_err(|e| PyValueError::new_err(format!("{field} is not valid text: {e}")))
}

/// `True` or `False` (an int is refused: `mask_responses=0` is more likely a mistake).
pub(crate) fn boolean(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<bool> {
    match obj.cast::<PyBool>() {
        Ok(b) => Ok(b.is_true()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{field} must be a bool, not {}",
            type_name(obj)
        ))),
    }
}

/// `responses`: a dict of name → text, or a list/tuple of texts (named `response-1`,
/// `response-2`, … in order).
fn responses(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<IndexMap<String, String>> {
    let mut out = IndexMap::new();
    if let Ok(dict) = obj.cast::<PyDict>() {
        for (key, value) in dict.iter() {
            let name = string(&key, &format!("{field} key"))?;
            let text = string(&value, &format!("{field}[{name:?}]"))?;
            // Distinct key objects with equal text (a `str` subclass with its own
            // `__hash__`) would otherwise overwrite one another: a response lost.
            if out.contains_key(&name) {
                return Err(PyValueError::new_err(format!(
                    "{field} has two keys with the text {name:?} (distinct str objects, \
                     e.g. a str subclass with its own __hash__): each response needs its own name"
                )));
            }
            out.insert(name, text);
        }
    } else if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        for (i, value) in obj.try_iter()?.enumerate() {
            let text = string(&value?, &format!("{field}[{i}]"))?;
            out.insert(rewardanything_client::positional_name(i), text);
        }
    } else {
        return Err(PyTypeError::new_err(format!(
            "{field} must be a dict of name -> str (or a list of str), not {}",
            type_name(obj)
        )));
    }
    Ok(out)
}

/// One request from the arguments of `judge`; `prefix` is prepended to field names.
pub(crate) fn request(
    principle: &Bound<'_, PyAny>,
    prompt: &Bound<'_, PyAny>,
    responses_obj: &Bound<'_, PyAny>,
    mask_responses: Option<&Bound<'_, PyAny>>,
    prefix: &str,
) -> PyResult<JudgeRequest> {
    let principle = string(principle, &format!("{prefix}principle"))?;
    let prompt = string(prompt, &format!("{prefix}prompt"))?;
    let mut request = JudgeRequest::new(principle, prompt);
    request.responses = responses(responses_obj, &format!("{prefix}responses"))?;
    if let Some(mask) = mask_responses {
        request.mask_responses = boolean(mask, &format!("{prefix}mask_responses"))?;
    }
    // The client library's one set of request rules; the message names the field
    // (`requests[3].responses is empty: …`).
    request
        .validate()
        .map_err(|e| PyValueError::new_err(format!("{prefix}{e}")))?;
    Ok(request)
}

/// The requests of `judge_batch`: a list (or tuple) of dicts with `principle`, `prompt`,
/// `responses` and optional `mask_responses`; other keys are ignored (e.g. an `id`).
pub(crate) fn batch(requests: &Bound<'_, PyAny>) -> PyResult<Vec<JudgeRequest>> {
    if !(requests.is_instance_of::<PyList>() || requests.is_instance_of::<PyTuple>()) {
        return Err(PyTypeError::new_err(format!(
            "requests must be a list of dicts, not {}",
            type_name(requests)
        )));
    }
    let mut out = Vec::with_capacity(requests.len()?);
    for (i, item) in requests.try_iter()?.enumerate() {
        let item = item?;
        let dict = item.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "requests[{i}] must be a dict, not {}",
                type_name(&item)
            ))
        })?;
        let field = |name: &str| -> PyResult<Bound<'_, PyAny>> {
            dict.get_item(name)?.ok_or_else(|| {
                PyValueError::new_err(format!("requests[{i}] has no {name:?} field"))
            })
        };
        let mask = dict.get_item("mask_responses")?;
        out.push(request(
            &field("principle")?,
            &field("prompt")?,
            &field("responses")?,
            mask.as_ref(),
            &format!("requests[{i}]."),
        )?);
    }
    Ok(out)
}
