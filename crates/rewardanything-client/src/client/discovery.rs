//! Finding out which model an endpoint serves (`GET /models`), and whether it answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Inner;
use crate::balance::EndpointUrl;
use crate::error::ConnectError;
use crate::retry::is_transient_status;
use crate::wire::AttemptError;
use crate::wire::{decode_models, read_capped, server_message};

/// How long a failed discovery answers for later judgments (each waiter of a failed
/// discovery would otherwise start its own retry loop, one after the other).
const DISCOVERY_FAILURE_TTL: Duration = Duration::from_secs(1);

/// Longest wait for one `/models` answer (it is cheap for a server).
const MODELS_TIMEOUT: Duration = Duration::from_secs(30);

impl Inner {
    /// The model to send: the configured one, else the one discovered (once, shared by
    /// concurrent first calls).
    pub(super) async fn model(&self) -> Result<&str, Arc<ConnectError>> {
        if let Some(m) = &self.config.model {
            return Ok(m);
        }
        if let Some(m) = self.discovered_model.get() {
            return Ok(m);
        }
        self.discovered_model
            .get_or_try_init(|| async {
                // Judgments that waited on a discovery that just failed get its error.
                if let Some(recent) = self.recent_discovery_failure() {
                    return Err(recent);
                }
                let found = match self.first_answering_endpoint().await {
                    Ok((url, models)) => single_model(url, models),
                    Err(e) => Err(e),
                };
                found.map_err(|e| {
                    let e = Arc::new(e);
                    if let Ok(mut last) = self.discovery_failure.lock() {
                        *last = Some((Instant::now(), Arc::clone(&e)));
                    }
                    e
                })
            })
            .await
            .map(String::as_str)
    }

    fn recent_discovery_failure(&self) -> Option<Arc<ConnectError>> {
        let last = self.discovery_failure.lock().ok()?;
        let (at, e) = last.as_ref()?;
        (at.elapsed() < DISCOVERY_FAILURE_TTL).then(|| Arc::clone(e))
    }

    pub(super) async fn connect(&self) -> Result<String, ConnectError> {
        let (url, models) = self.first_answering_endpoint().await?;
        match &self.config.model {
            Some(m) if models.contains(m) => Ok(m.clone()),
            Some(m) => Err(ConnectError::ModelNotServed {
                url,
                model: m.clone(),
                served: models,
            }),
            None => {
                let model = single_model(url, models)?;
                Ok(self
                    .discovered_model
                    .get_or_init(|| async { model })
                    .await
                    .clone())
            }
        }
    }

    /// The models of the first endpoint that answers, trying each in turn (with retries):
    /// one replica down at startup must not stop a run the others can serve. Returns the
    /// endpoint's redacted URL.
    async fn first_answering_endpoint(&self) -> Result<(String, Vec<String>), ConnectError> {
        self.discovery.ensure_started(&self.balancer).await;
        let mut last = ConnectError::NoEndpoint;
        let endpoints = self.balancer.endpoints();
        for (i, endpoint) in endpoints.iter().enumerate() {
            let url = endpoint.url.clone();
            match self
                .list_models_with_retry(endpoint.http(&self.http), &url)
                .await
            {
                Ok(models) => return Ok((url.shown(), models)),
                // The key is wrong for every replica alike: say so at once.
                Err(e @ ConnectError::Unauthorized { .. }) => return Err(e),
                Err(e) => {
                    // Only when another endpoint is tried next: the last one's failure
                    // is the error itself, said once by the caller.
                    if i + 1 < endpoints.len() {
                        tracing::warn!(endpoint = %endpoint.shown, error = %e, "endpoint not answering; trying the next");
                    }
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn list_models_with_retry(
        &self,
        http: &reqwest::Client,
        url: &EndpointUrl,
    ) -> Result<Vec<String>, ConnectError> {
        let mut backoff = self.config.retry.backoff(0);
        let started = Instant::now();
        let mut tries = 0u32;
        loop {
            tries += 1;
            match self.list_models_once(http, url).await {
                Ok(models) => return Ok(models),
                Err((e, false)) => return Err(e),
                Err((e, true)) => match backoff.next_delay(None) {
                    Some(delay) => {
                        // Not a warning: a server down at start would print one per try
                        // before the error, which says how often it was tried.
                        tracing::debug!(error = %e, ?delay, "model discovery failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(with_tries(e, tries, started.elapsed())),
                },
            }
        }
    }

    /// One `GET /models`; the error says whether trying again could help.
    pub(super) async fn list_models_once(
        &self,
        http: &reqwest::Client,
        url: &EndpointUrl,
    ) -> Result<Vec<String>, (ConnectError, bool)> {
        let shown = crate::wire::redact_url(url.models());
        let fail_from = |reason: String, transient: bool, source| {
            let e = ConnectError::ModelDiscovery {
                url: shown.clone(),
                reason,
                source,
            };
            (e, transient)
        };
        let fail = |reason: String, transient: bool| fail_from(reason, transient, None);
        let fetch = async {
            let response = http
                .get(url.models().clone())
                .headers(self.headers.clone())
                .send()
                .await
                .map_err(AttemptError::transport)?;
            let status = response.status().as_u16();
            Ok::<_, AttemptError>((
                status,
                read_capped(
                    response,
                    self.config.max_response_bytes,
                    &self.response_budget,
                )
                .await?,
            ))
        };
        let timeout = self.config.attempt_timeout.min(MODELS_TIMEOUT);
        let (status, body) = match tokio::time::timeout(timeout, fetch).await {
            Err(_elapsed) => return Err(fail(format!("timed out after {timeout:?}"), true)),
            Ok(Err(AttemptError::BadResponse(m))) => return Err(fail(m, false)),
            Ok(Err(AttemptError::Transport { message, source })) => {
                return Err(fail_from(
                    format!("unreachable: {message}"),
                    true,
                    Some(source),
                ));
            }
            Ok(Err(other)) => return Err(fail(format!("{other:?}"), true)),
            Ok(Ok(answer)) => answer,
        };
        match status {
            200..=299 => decode_models(&body).map_err(|reason| fail(reason, false)),
            401 | 403 => Err((
                ConnectError::Unauthorized {
                    url: shown.clone(),
                    status,
                    message: server_message(&body),
                },
                false,
            )),
            404 => {
                // A reward server (ra gateway, `rewardanything serve`) answers 404 here
                // with or without /v1: adding /v1 would not help, saying what it is does.
                let hint = if self.is_reward_server(url).await {
                    reward_server_hint(url)
                } else if !url.as_str().ends_with("/v1") {
                    format!(
                        " (OpenAI-compatible servers serve under /v1: try {}/v1)",
                        url.shown()
                    )
                } else {
                    String::new()
                };
                Err(fail(
                    format!("HTTP 404: {}{hint}", server_message(&body)),
                    false,
                ))
            }
            _ => Err(fail(
                format!("HTTP {status}: {}", server_message(&body)),
                is_transient_status(status),
            )),
        }
    }
}

impl Inner {
    /// Whether `GET {root}/health` answers like a RewardAnything reward server (the
    /// reference `rewardanything serve` and `ra gateway` both say `"service":
    /// "RewardAnything API"`, healthy or not), where `root` is the base without its
    /// `/v1`. Asked only after a 404 from `/models`; any failure means "no".
    async fn is_reward_server(&self, url: &EndpointUrl) -> bool {
        let Some(health) = url.reward_server_health() else {
            return false;
        };
        let probe = async {
            let response = self
                .http
                .get(health)
                .headers(self.headers.clone())
                .send()
                .await
                .ok()?;
            read_capped(response, REWARD_SERVER_PROBE_BYTES, &self.response_budget)
                .await
                .ok()
        };
        let timeout = self.config.attempt_timeout.min(REWARD_SERVER_PROBE_TIMEOUT);
        let Ok(Some(body)) = tokio::time::timeout(timeout, probe).await else {
            return false;
        };
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .is_some_and(|v| v.get("service").and_then(|s| s.as_str()) == Some(REWARD_SERVICE))
    }
}

/// The `service` a RewardAnything reward server names in its `/health` answer.
const REWARD_SERVICE: &str = "RewardAnything API";

/// Longest wait for the reward-server probe (a gateway's /health may ask its upstream).
const REWARD_SERVER_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest `/health` body read by the probe (the real one is under 200 bytes).
const REWARD_SERVER_PROBE_BYTES: usize = 64 * 1024;

/// What to do when the endpoint is a reward server rather than a model server.
fn reward_server_hint(url: &EndpointUrl) -> String {
    format!(
        " ({} is a RewardAnything reward server (ra gateway or `rewardanything serve`), not \
         a model server: its URL is for the reference `rewardanything.Client`; \
         `rewardanything_rs.Client` and `ra` call the model server itself: give them the \
         OpenAI-compatible base URL the reward server calls, e.g. http://127.0.0.1:8000/v1)",
        url.root_shown()
    )
}

/// A discovery error after retries, saying how often and how long it was tried.
fn with_tries(e: ConnectError, tries: u32, spent: Duration) -> ConnectError {
    match e {
        ConnectError::ModelDiscovery {
            url,
            reason,
            source,
        } if tries > 1 => ConnectError::ModelDiscovery {
            url,
            reason: format!(
                "{reason} (tried {tries} times over {:.1} s)",
                spent.as_secs_f64()
            ),
            source,
        },
        e => e,
    }
}

fn single_model(url: String, models: Vec<String>) -> Result<String, ConnectError> {
    match <[String; 1]>::try_from(models) {
        Ok([one]) => Ok(one),
        Err(models) => Err(ConnectError::AmbiguousModel { url, models }),
    }
}
