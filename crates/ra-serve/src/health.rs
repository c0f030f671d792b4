//! Readiness and health probes.

use std::time::Duration;

use serde_json::Value;

/// Result of one readiness probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// `/health` answered 200 and `/v1/models` lists the served name.
    Ready,
    /// Still loading: connection refused, 503, or the model not listed yet.
    Loading(String),
}

/// Probes one engine's HTTP API. Its `Debug` output hides the API key.
#[derive(Clone)]
pub struct Prober {
    client: reqwest::Client,
    api_key: Option<String>,
    served_name: String,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("served_name", &self.served_name)
            .field(
                "api_key",
                &self.api_key.as_ref().map(|_| crate::redact::REDACTED),
            )
            .finish_non_exhaustive()
    }
}

impl Prober {
    /// A prober for `served_name`; `api_key` is sent as a bearer token.
    pub fn new(served_name: &str, api_key: Option<&str>, timeout: Duration) -> Prober {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // The engines are local: a proxy from the environment must not intercept.
            .no_proxy()
            .build()
            .unwrap_or_default();
        Prober {
            client,
            api_key: api_key.map(String::from),
            served_name: served_name.to_string(),
        }
    }

    fn get(&self, url: String) -> reqwest::RequestBuilder {
        let req = self.client.get(url);
        match &self.api_key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    /// `GET {base}/health` answered 200.
    pub async fn healthy(&self, base: &str) -> bool {
        matches!(self.get(format!("{base}/health")).send().await, Ok(r) if r.status().is_success())
    }

    /// Is the engine at `base` (e.g. `http://127.0.0.1:8000`) ready to serve?
    pub async fn ready(&self, base: &str) -> Readiness {
        match self.get(format!("{base}/health")).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => return Readiness::Loading(format!("/health answered {}", r.status())),
            Err(e) if e.is_connect() => return Readiness::Loading("connection refused".into()),
            Err(e) => return Readiness::Loading(format!("/health: {e}")),
        }
        let resp = match self.get(format!("{base}/v1/models")).send().await {
            Ok(r) => r,
            Err(e) => return Readiness::Loading(format!("/v1/models: {e}")),
        };
        let status = resp.status();
        if !status.is_success() {
            return Readiness::Loading(format!("/v1/models answered {status}"));
        }
        match resp.json::<Value>().await {
            Ok(v) if models_list_contains(&v, &self.served_name) => Readiness::Ready,
            Ok(_) => Readiness::Loading(format!(
                "/v1/models does not list `{}` yet",
                self.served_name
            )),
            Err(e) => Readiness::Loading(format!("/v1/models: {e}")),
        }
    }
}

/// Does a `/v1/models` answer list `name`? Accepts vLLM's
/// `{"data": [{"id": …}]}` and llama.cpp's `{"models": [{"name"|"model": …}]}`.
///
/// ```
/// use serde_json::json;
/// use ra_serve::health::models_list_contains;
/// assert!(models_list_contains(&json!({"data": [{"id": "m"}]}), "m"));
/// assert!(models_list_contains(&json!({"models": [{"name": "m", "model": "m"}]}), "m"));
/// assert!(!models_list_contains(&json!({"data": []}), "m"));
/// ```
pub fn models_list_contains(v: &Value, name: &str) -> bool {
    let listed = |key: &str, fields: &[&str]| {
        v.get(key).and_then(Value::as_array).is_some_and(|items| {
            items.iter().any(|m| {
                fields
                    .iter()
                    .any(|f| m.get(*f).and_then(Value::as_str) == Some(name))
            })
        })
    };
    listed("data", &["id"]) || listed("models", &["name", "model"])
}
