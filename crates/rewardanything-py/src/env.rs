//! The environment, read by the client library's `env` module (its names, parsing and
//! defaults), and the failure-reward rule of its `Normalization`: the Python reward
//! functions ask here instead of reading `os.environ` themselves.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rewardanything_client::env::RewardEnv;
use rewardanything_client::{self as reward, Normalization};

fn normalization(name: &str) -> PyResult<Normalization> {
    name.parse()
        .map_err(|e: reward::UnknownNormalization| PyValueError::new_err(e.to_string()))
}

/// `reward_env()`: the reward functions' settings from `RA_PRINCIPLE`, `RA_MODEL`,
/// `RA_NORMALIZE`, `RA_FAILURE_REWARD`, `RA_COALESCE_MS`, `RA_MAX_GROUP_SIZE` and
/// `RA_GROUP_SIZE`, defaults
/// applied, as a dict (`coalesce_window` in seconds; `failure_warning` the warning to give
/// when the failure reward pays, else `None`). A `ValueError` names a variable that
/// cannot be used.
#[pyfunction]
pub(crate) fn reward_env(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let env = RewardEnv::read().map_err(|e| PyValueError::new_err(e.to_string()))?;
    let out = PyDict::new(py);
    out.set_item("principle", env.principle)?;
    out.set_item("model", env.model)?;
    out.set_item("normalize", env.normalization.name())?;
    out.set_item("failure_reward", env.failure_reward)?;
    out.set_item("failure_warning", env.failure_pays.map(|w| w.to_string()))?;
    out.set_item("coalesce_window", env.coalesce_window.as_secs_f64())?;
    out.set_item("max_group_size", env.max_group_size)?;
    out.set_item("expected_group_size", env.expected_group_size)?;
    Ok(out)
}

/// `lowest_reward(normalization)`: the lowest reward of a judged response.
#[pyfunction]
pub(crate) fn lowest_reward(normalization: &str) -> PyResult<f64> {
    Ok(self::normalization(normalization)?.lowest_reward())
}

/// `default_failure_reward(normalization)`: the failure reward when none is set (never
/// above the lowest judged reward).
#[pyfunction]
pub(crate) fn default_failure_reward(normalization: &str) -> PyResult<f64> {
    Ok(self::normalization(normalization)?.default_failure_reward())
}

/// `failure_pays(failure_reward, normalization, setting)`: the warning to give when the
/// failure reward pays more than the worst judged response, else `None`.
#[pyfunction]
pub(crate) fn failure_pays(
    failure_reward: f64,
    normalization: &str,
    setting: &str,
) -> PyResult<Option<String>> {
    Ok(self::normalization(normalization)?
        .failure_pays(failure_reward, setting)
        .map(|w| w.to_string()))
}
