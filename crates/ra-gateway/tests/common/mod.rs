//! Shared harness of the gateway's integration tests: `ra_gateway::Gateway::serve` on
//! 127.0.0.1:0 in front of the in-process mock engine (stopped on drop, even when a test
//! fails), HTTP helpers, the numbered requests and the check of the mock's verdict.

// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use ra_gateway::{GatewayConfig, JobStore};
use ra_mock::{Latency, MockHandle, MockServer, expected_score};
use rewardanything_client::RetryPolicy;
use serde_json::{Value, json};

/// The settings of the gateway's own client towards the mock, which differ by test file.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// The client's `max_in_flight`; `None` keeps the library default.
    pub max_in_flight: Option<usize>,
    /// Attempts per judgment (retries are 5–20 ms apart).
    pub max_attempts: u32,
}

/// A gateway served on 127.0.0.1:0; stopped when dropped (even when a test fails).
pub struct Gateway {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Serves `config` in front of `mock`, with a client built from `options`.
    pub async fn start(
        mock: &MockHandle,
        config: GatewayConfig,
        options: ClientOptions,
    ) -> Gateway {
        Gateway::start_with_jobs(mock, config, None, options).await
    }

    /// Serves `config` with the job store `jobs` in front of `mock`.
    pub async fn start_with_jobs(
        mock: &MockHandle,
        config: GatewayConfig,
        jobs: Option<JobStore>,
        options: ClientOptions,
    ) -> Gateway {
        let mut builder = rewardanything_client::Client::builder()
            .endpoint(mock.base_url())
            .model(ra_mock::DEFAULT_MODEL)
            .retry(
                RetryPolicy::default()
                    .max_attempts(options.max_attempts)
                    .base_delay(Duration::from_millis(5))
                    .max_delay(Duration::from_millis(20)),
            );
        if let Some(n) = options.max_in_flight {
            builder = builder.max_in_flight(n);
        }
        let client = builder.build().expect("client");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut gateway = ra_gateway::Gateway::new(client, config);
        if let Some(store) = jobs {
            gateway = gateway.jobs(store);
        }
        let task = tokio::spawn(gateway.serve(listener, async {
            let _ = rx.await;
        }));
        Gateway {
            url,
            stop: Some(tx),
            task,
        }
    }

    /// The URL of `path` on this gateway.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Asks for shutdown and waits for `serve` to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.expect("serve task");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A mock engine with the library defaults (no latency, no faults).
pub async fn mock() -> MockHandle {
    MockServer::builder().start().await.expect("mock")
}

/// A mock engine that holds every answer for `latency`.
pub async fn slow_mock(latency: Latency) -> MockHandle {
    MockServer::builder()
        .latency(latency)
        .start()
        .await
        .expect("mock")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Sends `req`; (status, JSON answer).
pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON body"))
}

/// GETs `url`; (status, JSON answer).
pub async fn get(url: &str) -> (u16, Value) {
    send(http().get(url)).await
}

/// Posts `body` as JSON to `url`; (status, JSON answer).
pub async fn post(url: &str, body: &Value) -> (u16, Value) {
    send(http().post(url).json(body)).await
}

/// The text of the gateway's `/metrics` (no key).
pub async fn metrics(gw: &Gateway) -> String {
    metrics_at(&gw.url).await
}

/// The text of `/metrics` of the gateway at `url` (no key).
pub async fn metrics_at(url: &str) -> String {
    http()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of the sample line starting with `prefix` (labels included).
pub fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix:?} in\n{text}"))
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `within` (bounded,
/// so that a regression fails instead of hanging the suite).
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !cond().await {
        assert!(started.elapsed() < within, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until a chat request reached the mock.
pub async fn wait_for_engine(mock: &MockHandle) {
    wait_until(
        "never reached the engine",
        Duration::from_secs(20),
        || async { mock.stats().chat_requests != 0 },
    )
    .await;
}

/// Request `i`: four responses whose mock scores spell `i` in base 5, names masked.
pub fn numbered(i: usize, extra: &str) -> Value {
    let names = ["zulu", "alpha", "mike", "bravo"];
    let mut responses = serde_json::Map::new();
    let mut k = i;
    for name in names {
        let digit = k % 5 + 1;
        k /= 5;
        responses.insert(
            name.into(),
            format!("answer {i} from {name}, score={digit}").into(),
        );
    }
    json!({
        "principle": "Prefer the most helpful answer.",
        "prompt": format!("question {i} {extra}"),
        "responses": responses,
        "mask_responses": true,
    })
}

/// Panics unless `result` is the mock's verdict on `request`: the caller's names in
/// the caller's order with the expected scores, and a ranking of those names.
pub fn assert_result(request: &Value, result: &Value, what: &str) {
    let responses = request["responses"].as_object().expect("responses");
    let want: Vec<(String, f64)> = responses
        .iter()
        .map(|(n, t)| (n.clone(), f64::from(expected_score(t.as_str().unwrap()))))
        .collect();
    let scores = result["results"]["scores"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no scores in {result}"));
    let got: Vec<(String, f64)> = scores
        .iter()
        .map(|(n, s)| (n.clone(), s.as_f64().expect("number")))
        .collect();
    assert_eq!(got, want, "{what}: scores");
    let mut ranked: Vec<String> = result["results"]["best-to-worst"]
        .as_array()
        .expect("ranking")
        .iter()
        .map(|v| v.as_str().expect("name").to_string())
        .collect();
    ranked.sort();
    let mut names: Vec<String> = responses.keys().cloned().collect();
    names.sort();
    assert_eq!(ranked, names, "{what}: ranking");
    assert!(result.get("error").is_none(), "{what}: unexpected error");
}
