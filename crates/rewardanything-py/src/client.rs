//! The Python `Client`: settings checked at construction, then `judge`, `judge_batch`
//! (blocking, GIL released, Ctrl-C aware) and `ajudge`, `ajudge_batch` (asyncio). Every
//! call shares one Rust client, so one connection pool and one in-flight limit.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use indexmap::IndexMap;
use pyo3::IntoPyObjectExt;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use rewardanything_client::EndpointsFile;
use rewardanything_client::env;
use rewardanything_client::render;
use rewardanything_client::{
    Client, JudgeError, JudgeRequest, Judged, Masking, RetryPolicy, Sampling,
};

use crate::convert;
use crate::result::RewardResult;
use crate::wait::block_on;

/// A RewardAnything client on OpenAI-compatible endpoints (vLLM, llama.cpp, SGLang).
// `subclass`: the Python package's `Client` adds `async def` wrappers, so `ajudge` is a
// coroutine function (`asyncio.run(client.ajudge(...))` works).
#[pyclass(frozen, subclass, module = "rewardanything_rs", name = "Client")]
pub(crate) struct PyClient {
    client: Client,
    concurrency: usize,
    /// The process that made the client: its connections belong to that process's
    /// runtime, so a forked child must make its own client.
    pid: u32,
}

/// The settings of `Client(...)` once checked.
struct Settings {
    endpoints: Vec<String>,
    /// Followed: `ra-serve`'s endpoints file, a directory of them (one per node).
    endpoints_file: Option<PathBuf>,
    endpoints_dir: Option<PathBuf>,
    api_key: Option<String>,
    model: Option<String>,
    concurrency: usize,
    timeout: Duration,
    max_retries: u32,
    masking: Masking,
    temperature: f64,
    max_tokens: u32,
}

impl Settings {
    fn build(self) -> PyResult<PyClient> {
        let mut builder = Client::builder().endpoints(self.endpoints);
        if let Some(path) = self.endpoints_file {
            builder = builder.endpoints_file(path);
        }
        if let Some(dir) = self.endpoints_dir {
            builder = builder.endpoints_dir(dir);
        }
        let mut builder = builder
            .max_in_flight(self.concurrency)
            .attempt_timeout(self.timeout)
            .retry(RetryPolicy::default().max_attempts(self.max_retries.saturating_add(1)))
            .masking(self.masking)
            .sampling(
                Sampling::default()
                    .temperature(self.temperature)
                    .max_tokens(self.max_tokens),
            );
        if let Some(key) = self.api_key {
            builder = builder.api_key(key);
        }
        if let Some(model) = self.model {
            builder = builder.model(model);
        }
        let client = builder
            .build()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(PyClient {
            client,
            concurrency: self.concurrency,
            pid: std::process::id(),
        })
    }
}

/// `endpoints`: a URL (or `dns+http://NAME:PORT/v1`), a list of them, or `None` (then
/// none when a directory or file is followed, else `RA_ENDPOINT`, comma-separated, then
/// the default: the client library's [`env::endpoints_or_default`], as in `ra`).
fn endpoints(obj: Option<&Bound<'_, PyAny>>, followed: bool) -> PyResult<Vec<String>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        if followed {
            return Ok(Vec::new());
        }
        return env::endpoints_or_default(Vec::new())
            .map_err(|e| PyValueError::new_err(e.to_string()));
    };
    if obj.is_instance_of::<PyString>() {
        // A comma list, as `RA_ENDPOINT` and `ra --endpoint` take it (one parser).
        let text = convert::string(obj, "endpoints")?;
        return env::parse_endpoint_list("endpoints", &text)
            .map_err(|e| PyValueError::new_err(e.to_string()));
    }
    if !(obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>()) {
        return Err(PyTypeError::new_err(
            "endpoints must be a URL (str), a list of URLs or None",
        ));
    }
    let mut urls = Vec::new();
    for (i, url) in obj.try_iter()?.enumerate() {
        urls.push(convert::string(&url?, &format!("endpoints[{i}]"))?);
    }
    if urls.is_empty() {
        return Err(PyValueError::new_err("endpoints is an empty list"));
    }
    Ok(urls)
}

fn py_none(py: Python<'_>) -> Bound<'_, PyAny> {
    py.None().into_bound(py)
}

/// A count in `1..=max`, named in the error.
fn bounded(value: i64, field: &str, min: i64, max: i64) -> PyResult<i64> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(PyValueError::new_err(format!(
            "{field} must be between {min} and {max}, not {value}"
        )))
    }
}

/// The shortest timeout accepted, as by `ra`: a millisecond (shorter ones round to zero
/// on the way to a timer, so every call would fail).
const MIN_SECONDS: f64 = 0.001;

/// The longest timeout accepted, as by `ra`: a week (larger values are surely a mistake,
/// and far larger ones overflow the clock).
const MAX_SECONDS: f64 = 7.0 * 86_400.0;

/// Seconds as a duration: finite, from a millisecond to a week (the rule of `ra`'s
/// `--timeout`).
fn seconds(value: f64, field: &str) -> PyResult<Duration> {
    if value.is_finite() && (MIN_SECONDS..=MAX_SECONDS).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(PyValueError::new_err(format!(
            "{field} must be a number of seconds from {MIN_SECONDS} (a millisecond) to \
             {MAX_SECONDS} (a week), not {value}"
        )))
    }
}

/// Each response's name → the name the judge is shown it under with this masking,
/// taken from the client library's own rendering (the one owner of the shuffle).
pub(crate) fn shown_as(request: &JudgeRequest, masking: Masking) -> IndexMap<String, String> {
    match render(request, masking).masked2real {
        Some(masked2real) => masked2real
            .into_iter()
            .map(|(masked, real)| (real, masked))
            .collect(),
        None => request
            .responses
            .keys()
            .map(|name| (name.clone(), name.clone()))
            .collect(),
    }
}

/// Judges one request; a failure is a result with `error` set, never a panic.
async fn judge_one(client: Client, request: JudgeRequest) -> RewardResult {
    // `judge_detailed` renders with the client's masking: the same mapping.
    let shown = shown_as(&request, client.masking());
    result_of(client.judge_detailed(&request).await, shown)
}

/// A judgment's outcome as Python sees it; a failure keeps its attempts and latency.
fn result_of(result: Result<Judged, JudgeError>, shown: IndexMap<String, String>) -> RewardResult {
    match result {
        Ok(judged) => RewardResult::judged(judged, shown),
        Err(e) => RewardResult::failed(&e, shown),
    }
}

/// Judges every request through the client's ordered fan-out (at most twice the
/// client's in-flight limit started at once, which holds across calls); results in
/// input order, one per request.
async fn judge_all(client: Client, requests: Vec<JudgeRequest>) -> Vec<RewardResult> {
    // The fan-out renders with the client's masking: the same mapping.
    let masking = client.masking();
    let shown: Vec<_> = requests.iter().map(|r| shown_as(r, masking)).collect();
    client
        .judge_many_ordered(requests, None)
        .zip(futures::stream::iter(shown))
        .map(|(result, shown)| result_of(result, shown))
        .collect()
        .await
}

impl PyClient {
    /// The client, if this is the process that made it.
    pub(crate) fn client(&self) -> PyResult<Client> {
        if self.pid != std::process::id() {
            return Err(PyRuntimeError::new_err(
                "this rewardanything_rs.Client was made in another process (before fork()): \
                 make a new Client in this process",
            ));
        }
        Ok(self.client.clone())
    }
}

#[pymethods]
impl PyClient {
    #[new]
    #[pyo3(signature = (endpoints=None, *, api_key=None, model=None, concurrency=256,
        timeout=600.0, max_retries=3, masking="reference", temperature=0.0, max_tokens=4096,
        endpoints_dir=None, endpoints_file=None))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments.
    fn new(
        endpoints: Option<&Bound<'_, PyAny>>,
        api_key: Option<String>,
        model: Option<String>,
        concurrency: i64,
        timeout: f64,
        max_retries: i64,
        masking: &str,
        temperature: f64,
        max_tokens: i64,
        endpoints_dir: Option<PathBuf>,
        endpoints_file: Option<PathBuf>,
    ) -> PyResult<Self> {
        let followed = endpoints_dir.is_some() || endpoints_file.is_some();
        Settings {
            endpoints: self::endpoints(endpoints, followed)?,
            endpoints_file,
            endpoints_dir,
            // None: the client library reads RA_API_KEY when it builds.
            api_key: api_key.filter(|k| !k.is_empty()),
            model: model.filter(|m| !m.is_empty()),
            concurrency: bounded(concurrency, "concurrency", 1, 1 << 20)? as usize,
            timeout: seconds(timeout, "timeout")?,
            max_retries: bounded(max_retries, "max_retries", 0, 100)? as u32,
            masking: masking
                .parse()
                .map_err(|e: rewardanything_client::InvalidMasking| {
                    PyValueError::new_err(e.to_string())
                })?,
            temperature,
            max_tokens: bounded(max_tokens, "max_tokens", 1, i64::from(u32::MAX))? as u32,
        }
        .build()
    }

    /// A client on the endpoints of `ra-serve`'s endpoints file (its model too, unless
    /// `model` is given), following the file while it runs. Other keyword arguments as
    /// for `Client(...)`, which checks them.
    #[classmethod]
    #[pyo3(signature = (path, **options))]
    fn from_endpoints_file<'py>(
        cls: &Bound<'py, PyType>,
        path: PathBuf,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let file = EndpointsFile::read(&path).map_err(|e| PyValueError::new_err(e.to_string()))?;
        if file.endpoints.is_empty() {
            return Err(PyValueError::new_err(format!(
                "endpoints file {} lists no endpoint yet (no healthy replica)",
                path.display()
            )));
        }
        let kwargs = match options {
            Some(options) => options.copy()?,
            None => PyDict::new(cls.py()),
        };
        if kwargs.get_item("model")?.is_none_or(|m| m.is_none()) {
            kwargs.set_item("model", file.model)?;
        }
        kwargs.set_item("endpoints_file", &path)?;
        // Through the class, so a subclass (the package's `Client`) gets its own type.
        cls.call((py_none(cls.py()),), Some(&kwargs))
    }

    /// Judges one request and returns a `RewardResult`; raises `RewardAnythingError`
    /// (with `.kind`) on failure. The GIL is released while waiting.
    #[pyo3(signature = (principle, prompt, responses, mask_responses=None))]
    fn judge(
        &self,
        py: Python<'_>,
        principle: &Bound<'_, PyAny>,
        prompt: &Bound<'_, PyAny>,
        responses: &Bound<'_, PyAny>,
        mask_responses: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<RewardResult> {
        let request = convert::request(principle, prompt, responses, mask_responses, "")?;
        block_on(py, judge_one(self.client()?, request))?.into_result()
    }

    /// Judges a list of requests (dicts with `principle`, `prompt`, `responses`,
    /// optional `mask_responses`), all in flight at once up to `concurrency`; results in
    /// input order. A failed item has `error` set and does not raise. Ctrl-C cancels
    /// what is outstanding and raises `KeyboardInterrupt`.
    fn judge_batch(
        &self,
        py: Python<'_>,
        requests: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<RewardResult>> {
        let requests = convert::batch(requests)?;
        let client = self.client()?;
        block_on(py, judge_all(client, requests))
    }

    /// `await client.ajudge(...)`: like `judge`, on the running asyncio loop.
    #[pyo3(signature = (principle, prompt, responses, mask_responses=None))]
    fn ajudge<'py>(
        &self,
        py: Python<'py>,
        principle: &Bound<'py, PyAny>,
        prompt: &Bound<'py, PyAny>,
        responses: &Bound<'py, PyAny>,
        mask_responses: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = convert::request(principle, prompt, responses, mask_responses, "")?;
        let client = self.client()?;
        // The exception is made on delivery, with the GIL held there: the runtime's
        // workers never take the GIL.
        crate::bridge::awaitable(py, judge_one(client, request), |py, r| {
            r.into_result()?.into_py_any(py)
        })
    }

    /// `await client.ajudge_batch(requests)`: like `judge_batch`, on the running loop.
    fn ajudge_batch<'py>(
        &self,
        py: Python<'py>,
        requests: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let requests = convert::batch(requests)?;
        let client = self.client()?;
        crate::bridge::awaitable(py, judge_all(client, requests), |py, r| r.into_py_any(py))
    }

    /// Checks that an endpoint answers and serves the model; returns the model name.
    /// Optional: the first judgment does the same.
    fn connect(&self, py: Python<'_>) -> PyResult<String> {
        let client = self.client()?;
        block_on(py, async move { client.connect().await })?
            .map_err(|e| crate::error::judge_error(py, "model_discovery", &e.to_string(), 0))
    }

    /// Fails the judgments waiting for a slot, and later ones, with kind `cancelled`.
    fn close(&self) {
        self.client.close();
    }

    /// The model in use (configured or discovered), or `None` before discovery.
    #[getter]
    fn model(&self) -> Option<String> {
        self.client.model().map(str::to_owned)
    }

    /// The endpoints' base URLs, credentials redacted.
    #[getter]
    fn endpoints(&self) -> Vec<String> {
        self.client
            .endpoint_stats()
            .into_iter()
            .map(|s| s.url)
            .collect()
    }

    /// The in-flight limit shared by every call of this client.
    #[getter]
    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn __repr__(&self) -> String {
        format!(
            "Client(endpoints={:?}, model={:?}, concurrency={})",
            self.endpoints(),
            self.model(),
            self.concurrency
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_bounded() {
        assert_eq!(bounded(3, "n", 1, 5).ok(), Some(3));
        assert!(bounded(0, "n", 1, 5).is_err());
        assert!(bounded(6, "n", 1, 5).is_err());
        assert_eq!(seconds(1.5, "t").ok(), Some(Duration::from_millis(1500)));
        assert_eq!(seconds(0.001, "t").ok(), Some(Duration::from_millis(1)));
        for bad in [
            0.0,
            1e-9,
            0.000_999,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            1e30,
            8.0 * 86_400.0,
        ] {
            assert!(seconds(bad, "t").is_err(), "{bad}");
        }
    }

    /// Results come back in input order whatever order the answers arrive in, and a
    /// failed item keeps its place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn judge_all_keeps_input_order_under_random_latency() {
        let mock = ra_mock::MockServer::builder()
            .latency(ra_mock::Latency::uniform(
                Duration::from_millis(0),
                Duration::from_millis(30),
            ))
            .start()
            .await
            .unwrap();
        let client = Client::builder()
            .endpoint(mock.base_url())
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        let requests: Vec<JudgeRequest> = (0..200)
            .map(|i| {
                let prompt = if i == 77 {
                    "[[fault:400]]".to_string()
                } else {
                    format!("q{i}")
                };
                JudgeRequest::new("p", prompt)
                    .response("a", format!("score={}", i % 5 + 1))
                    .response("b", format!("score={}", (i / 5) % 5 + 1))
            })
            .collect();
        let results = judge_all(client, requests).await;
        assert_eq!(results.len(), 200);
        for (i, r) in results.iter().enumerate() {
            if i == 77 {
                assert_eq!(r.error.as_ref().map(|e| e.0.as_str()), Some("http_status"));
                assert!(r.scores.is_empty());
                assert_eq!(r.attempts, 1, "a failure keeps its attempts");
                continue;
            }
            assert!(r.error.is_none(), "{i}: {:?}", r.error);
            assert_eq!(r.scores["a"], (i % 5 + 1) as f64, "item {i}");
            assert_eq!(r.scores["b"], ((i / 5) % 5 + 1) as f64, "item {i}");
        }
        mock.shutdown().await;
    }
}
