//! `Coalescer`: the client library's group coalescing ([`rewardanything_client::group`],
//! the one behind `ra gateway`'s `/get_reward`) for Python callers that judge one
//! response at a time (veRL's reward loop, OpenRLHF's `reward_func`).
//!
//! A response joins its group when `judge`/`ajudge` is called (not when the result is
//! awaited), so the order of calls is the order of names in the group.

use pyo3::IntoPyObjectExt;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use rewardanything_client::Masking;
use rewardanything_client::group::{
    CoalesceError, Coalescer, CoalescerConfig, GroupKey, Ticket, Verdict,
};

use crate::client::{PyClient, shown_as};
use crate::result::RewardResult;
use crate::wait::block_on;

/// Gathers responses that share a (principle, prompt), or an explicit group id, into one
/// listwise call: a group is sent when it holds `expected_group_size` responses (it is
/// complete), `max_group_size` (it is full), or when `window` seconds have passed since
/// its first response (the stragglers' bound). At most `max_open_groups` groups wait;
/// beyond that a response is judged alone at once.
#[pyclass(frozen, module = "rewardanything_rs", name = "Coalescer")]
pub(crate) struct PyCoalescer {
    coalescer: Coalescer,
    masking: Masking,
    /// The process that made it: its client belongs to that process's runtime.
    pid: u32,
}

/// A verdict as the caller sees it: the group's result (as a `RewardResult`) and the
/// response's position in it.
fn outcome(answer: Result<Verdict, CoalesceError>, masking: Masking) -> (RewardResult, usize) {
    match answer {
        Ok(v) => {
            let shown = shown_as(&v.group.request, masking);
            let result = match &v.group.result {
                Ok(judged) => RewardResult::judged(judged.clone(), shown),
                Err(e) => RewardResult::failed(e, shown),
            };
            (result, v.index)
        }
        // The group's task ended without an answer (the runtime shutting down).
        Err(e) => (
            RewardResult::failure("cancelled", e.to_string(), 0, std::time::Duration::ZERO),
            0,
        ),
    }
}

/// A count setting: from 1 to the library's bound, named in the error.
fn count(n: i64, field: &str) -> PyResult<usize> {
    let max = rewardanything_client::group::MAX_COUNT;
    usize::try_from(n)
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| PyValueError::new_err(format!("{field} must be from 1 to {max}, not {n}")))
}

impl PyCoalescer {
    /// Adds a response to its group now, in call order.
    fn submit(
        &self,
        principle: String,
        prompt: String,
        response: String,
        group_id: Option<String>,
    ) -> PyResult<Ticket> {
        if self.pid != std::process::id() {
            return Err(PyRuntimeError::new_err(
                "this rewardanything_rs.Coalescer was made in another process (before fork()): \
                 make a new one in this process",
            ));
        }
        let handle = crate::runtime::handle()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the tokio runtime: {e}")))?;
        let _in_runtime = handle.enter();
        let mut key = GroupKey::new(principle, prompt);
        if let Some(id) = group_id {
            key = key.with_id(id);
        }
        self.coalescer
            .submit(key, response)
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }
}

#[pymethods]
impl PyCoalescer {
    #[new]
    #[pyo3(signature = (client, *, window=0.05, max_group_size=8, max_open_groups=1024,
        expected_group_size=None))]
    fn new(
        client: &PyClient,
        window: f64,
        max_group_size: i64,
        max_open_groups: i64,
        expected_group_size: Option<i64>,
    ) -> PyResult<Self> {
        let max_window = rewardanything_client::group::MAX_WINDOW.as_secs_f64();
        if !(window.is_finite() && (0.0..=max_window).contains(&window)) {
            return Err(PyValueError::new_err(format!(
                "window must be a number of seconds from 0 (no grouping) to {max_window}, \
                 not {window}"
            )));
        }
        let config = CoalescerConfig::default()
            .window(std::time::Duration::from_secs_f64(window))
            .max_group_size(count(max_group_size, "max_group_size")?)
            .max_open_groups(count(max_open_groups, "max_open_groups")?)
            .expected_group_size(
                expected_group_size
                    .map(|n| count(n, "expected_group_size"))
                    .transpose()?,
            );
        config
            .validate()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let client = client.client()?;
        Ok(PyCoalescer {
            masking: client.masking(),
            coalescer: Coalescer::new(client, config),
            pid: std::process::id(),
        })
    }

    /// Judges `response` with the others of its group; returns `(result, index)`: the
    /// group's `RewardResult` (a failed judgment has `error` set, never raises) and the
    /// response's position in it, its name being `response-{index + 1}`. Blocks with
    /// the GIL released.
    #[pyo3(signature = (principle, prompt, response, group_id=None))]
    fn judge(
        &self,
        py: Python<'_>,
        principle: String,
        prompt: String,
        response: String,
        group_id: Option<String>,
    ) -> PyResult<(RewardResult, usize)> {
        let ticket = self.submit(principle, prompt, response, group_id)?;
        let masking = self.masking;
        block_on(py, async move { outcome(ticket.await, masking) })
    }

    /// `await coalescer.ajudge(...)`: like `judge`, on the running asyncio loop. The
    /// response joins its group at the call, before the first `await`.
    #[pyo3(signature = (principle, prompt, response, group_id=None))]
    fn ajudge<'py>(
        &self,
        py: Python<'py>,
        principle: String,
        prompt: String,
        response: String,
        group_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ticket = self.submit(principle, prompt, response, group_id)?;
        let masking = self.masking;
        crate::bridge::awaitable(
            py,
            async move { outcome(ticket.await, masking) },
            |py, out| out.into_py_any(py),
        )
    }

    /// Sends every open group now; later responses are judged alone.
    fn close(&self) -> PyResult<()> {
        let handle = crate::runtime::handle()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the tokio runtime: {e}")))?;
        let _in_runtime = handle.enter();
        self.coalescer.close();
        Ok(())
    }

    /// Groups waiting for more responses.
    #[getter]
    fn open_groups(&self) -> usize {
        self.coalescer.open_groups()
    }

    /// Responses waiting in open groups.
    #[getter]
    fn waiting(&self) -> usize {
        self.coalescer.waiting()
    }

    /// The window in seconds.
    #[getter]
    fn window(&self) -> f64 {
        self.coalescer.config().window.as_secs_f64()
    }

    /// Most responses in one call.
    #[getter]
    fn max_group_size(&self) -> usize {
        self.coalescer.config().max_group_size
    }

    /// Most groups open at once.
    #[getter]
    fn max_open_groups(&self) -> usize {
        self.coalescer.config().max_open_groups
    }

    /// The size of a complete group, or `None`.
    #[getter]
    fn expected_group_size(&self) -> Option<usize> {
        self.coalescer.config().expected_group_size
    }

    fn __repr__(&self) -> String {
        let c = self.coalescer.config();
        format!(
            "Coalescer(window={}, max_group_size={}, max_open_groups={}, expected_group_size={:?})",
            c.window.as_secs_f64(),
            c.max_group_size,
            c.max_open_groups,
            c.expected_group_size
        )
    }
}
