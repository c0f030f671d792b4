//! Finding out which model an endpoint serves (`GET /models`), and whether it answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Inner;
use crate::balance::EndpointUrl;
use crate::error::BuildError;
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
    pub(super) async fn model(&self) -> Result<&str, Arc<BuildError>> {
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

    fn recent_discovery_failure(&self) -> Option<Arc<BuildError>> {
        let last = self.discovery_failure.lock().ok()?;
        let (at, e) = last.as_ref()?;
        (at.elapsed() < DISCOVERY_FAILURE_TTL).then(|| Arc::clone(e))
    }

    pub(super) async fn connect(&self) -> Result<String, BuildError> {
        let (url, models) = self.first_answering_endpoint().await?;
        match &self.config.model {
            Some(m) if models.contains(m) => Ok(m.clone()),
            Some(m) => Err(BuildError::ModelNotServed {
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
    async fn first_answering_endpoint(&self) -> Result<(String, Vec<String>), BuildError> {
        let mut last = BuildError::NoEndpoint;
        for endpoint in self.balancer.endpoints().iter() {
            let url = endpoint.url.clone();
            match self.list_models_with_retry(&url).await {
                Ok(models) => return Ok((url.shown(), models)),
                // The key is wrong for every replica alike: say so at once.
                Err(e @ BuildError::Unauthorized { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(endpoint = %endpoint.shown, error = %e, "endpoint not answering");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn list_models_with_retry(&self, url: &EndpointUrl) -> Result<Vec<String>, BuildError> {
        let mut backoff = self.config.retry.backoff(0);
        loop {
            match self.list_models_once(url).await {
                Ok(models) => return Ok(models),
                Err((e, false)) => return Err(e),
                Err((e, true)) => match backoff.next_delay(None) {
                    Some(delay) => {
                        tracing::warn!(error = %e, ?delay, "model discovery failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(e),
                },
            }
        }
    }

    /// One `GET /models`; the error says whether trying again could help.
    pub(super) async fn list_models_once(
        &self,
        url: &EndpointUrl,
    ) -> Result<Vec<String>, (BuildError, bool)> {
        let shown = crate::wire::redact_url(url.models());
        let fail = |reason: String, transient: bool| {
            let e = BuildError::ModelDiscovery {
                url: shown.clone(),
                reason,
            };
            (e, transient)
        };
        let fetch = async {
            let response = self
                .http
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
            Ok(Err(AttemptError::Transport { message, .. })) => {
                return Err(fail(format!("unreachable: {message}"), true));
            }
            Ok(Err(other)) => return Err(fail(format!("{other:?}"), true)),
            Ok(Ok(answer)) => answer,
        };
        match status {
            200..=299 => decode_models(&body).map_err(|reason| fail(reason, false)),
            401 | 403 => Err((
                BuildError::Unauthorized {
                    url: shown.clone(),
                    status,
                    message: server_message(&body),
                },
                false,
            )),
            404 if !url.as_str().ends_with("/v1") => Err(fail(
                format!(
                    "HTTP 404: {} (OpenAI-compatible servers serve under /v1: try {}/v1)",
                    server_message(&body),
                    url.shown()
                ),
                false,
            )),
            _ => Err(fail(
                format!("HTTP {status}: {}", server_message(&body)),
                is_transient_status(status),
            )),
        }
    }
}

fn single_model(url: String, models: Vec<String>) -> Result<String, BuildError> {
    match <[String; 1]>::try_from(models) {
        Ok([one]) => Ok(one),
        Err(models) => Err(BuildError::AmbiguousModel { url, models }),
    }
}
