//! `rewardanything_rs`: the RewardAnything client as a Python extension module.
//!
//! The Rust side is the native module `rewardanything_rs._native`: a `Client` holding a
//! [`rewardanything_client::Client`] (one connection pool and one in-flight limit shared
//! by every call, blocking or `async`), the `RewardResult` it returns and the
//! `RewardAnythingError` it raises, and `split_rollout` (with `user_question`,
//! `strip_end_of_turn`, `label_principle`): the client library's rollout splitting,
//! shared with the gateway. The reward functions for TRL, veRL and OpenRLHF are
//! plain Python modules on top of it (`python/rewardanything_rs/`).
//!
//! Split by concept: `convert` checks and converts Python input (before any call),
//! `result` is `RewardResult`, `error` the exception, `wait` the GIL-free,
//! Ctrl-C-aware blocking wait, `runtime` the per-process (fork-safe) tokio runtime shut
//! down at interpreter exit, `bridge` the asyncio side of `ajudge`, `client` the
//! `Client` class, `group` its `Coalescer` (the library's group coalescing), `rollout`
//! the rollout splitting, `normalize` the reward maps, `env` the environment and the
//! failure-reward rule.
//!
//! Build and install it with `pip install crates/rewardanything-py` (maturin).

mod bridge;
mod client;
mod convert;
mod env;
mod error;
mod group;
mod normalize;
mod result;
mod rollout;
mod runtime;
mod wait;

use pyo3::prelude::*;

/// The `rewardanything_rs._native` module: `Client`, `Coalescer`, `RewardResult`,
/// `RewardAnythingError`, `Rollout`, `split_rollout` (and its `RolloutSplitError`),
/// `user_question`, `strip_end_of_turn`, `label_principle`, `normalize`, `NORMALIZATIONS`,
/// `reward_env`, `lowest_reward`, `default_failure_reward`, `failure_pays`,
/// the asyncio bridge's `_shutdown` (registered with `atexit`) and `__version__`.
///
/// ```no_run
/// use pyo3::prelude::*;
/// // Embedding Python (what the pytest suite does through the installed wheel):
/// pyo3::append_to_inittab!(_native);
/// # use rewardanything_py::_native;
/// Python::attach(|py| {
///     let m = py.import("_native").unwrap();
///     assert!(m.getattr("Client").is_ok());
/// });
/// ```
#[pymodule]
pub fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<client::PyClient>()?;
    m.add_class::<group::PyCoalescer>()?;
    m.add_class::<result::RewardResult>()?;
    m.add_class::<rollout::Rollout>()?;
    m.add_function(wrap_pyfunction!(rollout::split_rollout, m)?)?;
    m.add_function(wrap_pyfunction!(rollout::user_question, m)?)?;
    m.add_function(wrap_pyfunction!(rollout::strip_end_of_turn, m)?)?;
    m.add_function(wrap_pyfunction!(rollout::label_principle, m)?)?;
    m.add_function(wrap_pyfunction!(normalize::normalize, m)?)?;
    m.add_function(wrap_pyfunction!(env::reward_env, m)?)?;
    m.add_function(wrap_pyfunction!(env::lowest_reward, m)?)?;
    m.add_function(wrap_pyfunction!(env::default_failure_reward, m)?)?;
    m.add_function(wrap_pyfunction!(env::failure_pays, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::_shutdown, m)?)?;
    m.add(
        "NORMALIZATIONS",
        pyo3::types::PyTuple::new(m.py(), normalize::names())?,
    )?;
    m.add(
        "RewardAnythingError",
        m.py().get_type::<error::RewardAnythingError>(),
    )?;
    m.add(
        "RolloutSplitError",
        m.py().get_type::<rollout::RolloutSplitError>(),
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
