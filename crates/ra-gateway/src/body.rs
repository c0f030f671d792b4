//! Reading and checking request bodies: typed errors naming the field (FastAPI's
//! `detail` shape), the size and count limits. Handlers take their body through the
//! [`Checked`] extractor, the one place a body is read, decoded and dropped.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use futures::StreamExt;
use rewardanything_client::JudgeRequest;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;

use crate::admit::{self, Reservation};
use crate::config::GatewayConfig;
use crate::error::{ApiError, FieldError};
use crate::state::AppState;

/// What a route's body decodes to, checked (the request rules, the route's limits).
pub trait FromBody: Sized {
    /// Decodes and checks a whole body; a refusal is the route's [`ApiError`].
    fn from_body(body: &[u8], config: &GatewayConfig) -> Result<Self, ApiError>;
}

/// An extractor: the request's body [read](read) under the gateway's caps (reserved
/// against the byte budget as it arrives, the size limit, the body timeout), then
/// decoded and checked into `T`. The raw bytes are dropped before the handler runs
/// (the request's reservation stays held until it is answered, for what was parsed);
/// any refusal is the [`ApiError`] the route answers.
pub struct Checked<T> {
    /// The decoded, checked body.
    pub value: T,
    /// The body's size as it arrived.
    pub wire_bytes: usize,
}

impl<T: FromBody> FromRequest<Arc<AppState>> for Checked<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let bytes = read(req, &state.config).await?;
        let value = T::from_body(&bytes, &state.config)?;
        Ok(Checked {
            value,
            wire_bytes: bytes.len(),
        })
    }
}

/// Reads the body within `body_timeout` (a peer that declares a body and sends it slowly
/// or never holds no budget for long): 408 when it does not arrive in time, 413 when it
/// is over the limit. Each chunk is counted against the request's byte reservation (see
/// [`admit`](crate::admit)) as it arrives: 503 `overloaded` when the budget is spent, so
/// a peer holds only the bytes it has actually sent.
async fn read(req: Request, config: &GatewayConfig) -> Result<Bytes, ApiError> {
    let reservation = req.extensions().get::<Reservation>().cloned();
    let limit = config.max_body_bytes;
    let declared = admit::declared_length(req.headers()).filter(|&n| n <= limit);
    let collect = async move {
        let mut chunks = req.into_body().into_data_stream();
        // The declared size at once (it fits the limit): no reallocation on the way.
        let mut out = Vec::with_capacity(declared.unwrap_or(0));
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadBody(e.to_string()))?;
            let total = out.len().saturating_add(chunk.len());
            if total > limit {
                return Err(ApiError::TooLarge(limit));
            }
            if let Some(reservation) = &reservation {
                reservation.grow_to(total)?;
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    };
    match tokio::time::timeout(config.body_timeout, collect).await {
        Ok(body) => body,
        Err(_) => Err(ApiError::BodyTimeout(config.body_timeout)),
    }
}

/// One request, checked.
impl FromBody for JudgeRequest {
    fn from_body(body: &[u8], config: &GatewayConfig) -> Result<Self, ApiError> {
        let request: JudgeRequest = decode(body)?;
        check(&request, &[], config)?;
        Ok(request)
    }
}

/// A batch, checked: every item must be valid (like FastAPI, one invalid item refuses
/// the whole batch, naming it).
impl FromBody for Vec<JudgeRequest> {
    fn from_body(body: &[u8], config: &GatewayConfig) -> Result<Self, ApiError> {
        let requests: Vec<JudgeRequest> = decode(body)?;
        check_list(&requests, &[], || ApiError::EmptyBatch, config)?;
        Ok(requests)
    }
}

/// Checks a list of requests (a batch, or a job's `requests`): not empty, at most
/// `max_batch` long, every item valid. `at` is where the list stands in the body (so an
/// item's error names `[at…, i, field]`); `empty` is the error for an empty list, which
/// differs by route (a batch's is the reference's 400, a job's a 422 naming `requests`).
fn check_list(
    requests: &[JudgeRequest],
    at: &[Value],
    empty: impl FnOnce() -> ApiError,
    config: &GatewayConfig,
) -> Result<(), ApiError> {
    if requests.is_empty() {
        return Err(empty());
    }
    if requests.len() > config.max_batch {
        return Err(invalid(
            at.to_vec(),
            format!(
                "a batch holds at most {} requests, this one has {}",
                config.max_batch,
                requests.len()
            ),
            "too_long",
        ));
    }
    let mut item = at.to_vec();
    for (i, request) in requests.iter().enumerate() {
        item.push(Value::from(i));
        check(request, &item, config)?;
        item.pop();
    }
    Ok(())
}

/// `POST /api/batch_request`'s body: the requests, and the reference's per-job
/// overrides, accepted for compatibility and ignored (a caller must not choose server
/// paths nor redirect the upstream). Other unknown fields are ignored too, as FastAPI does.
#[derive(serde::Deserialize)]
struct JobBody {
    requests: Vec<JudgeRequest>,
    #[serde(flatten)]
    overrides: Overrides,
}

/// The reference's `BatchRequest` fields besides `requests` (values never read).
#[derive(serde::Deserialize)]
struct Overrides {
    output_path: Option<IgnoredAny>,
    api_model: Option<IgnoredAny>,
    api_key: Option<IgnoredAny>,
    api_base: Option<IgnoredAny>,
    api_proxy: Option<IgnoredAny>,
    api_timeout: Option<IgnoredAny>,
    api_max_retries: Option<IgnoredAny>,
    generation_config: Option<IgnoredAny>,
    num_workers: Option<IgnoredAny>,
    request_limit: Option<IgnoredAny>,
    request_limit_period: Option<IgnoredAny>,
    max_error_count: Option<IgnoredAny>,
    trial_run: Option<IgnoredAny>,
    dump_individual_rsp: Option<IgnoredAny>,
}

impl Overrides {
    /// The names of the fields given (never their values: `api_key` is a secret).
    fn given(&self) -> Vec<&'static str> {
        [
            ("output_path", self.output_path.is_some()),
            ("api_model", self.api_model.is_some()),
            ("api_key", self.api_key.is_some()),
            ("api_base", self.api_base.is_some()),
            ("api_proxy", self.api_proxy.is_some()),
            ("api_timeout", self.api_timeout.is_some()),
            ("api_max_retries", self.api_max_retries.is_some()),
            ("generation_config", self.generation_config.is_some()),
            ("num_workers", self.num_workers.is_some()),
            ("request_limit", self.request_limit.is_some()),
            ("request_limit_period", self.request_limit_period.is_some()),
            ("max_error_count", self.max_error_count.is_some()),
            ("trial_run", self.trial_run.is_some()),
            ("dump_individual_rsp", self.dump_individual_rsp.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }
}

/// `POST /api/batch_request`'s body, checked.
#[derive(Debug)]
pub struct Job {
    /// The requests, checked like a batch's (locations `["body", "requests", i, …]`).
    pub requests: Vec<JudgeRequest>,
    /// The names of the ignored override fields the caller gave.
    pub ignored: Vec<&'static str>,
}

impl FromBody for Job {
    fn from_body(body: &[u8], config: &GatewayConfig) -> Result<Self, ApiError> {
        let JobBody {
            requests,
            overrides,
        } = decode(body)?;
        let at = [Value::from("requests")];
        let empty = || {
            invalid(
                at.to_vec(),
                "requests must not be empty".into(),
                "value_error",
            )
        };
        check_list(&requests, &at, empty, config)?;
        Ok(Job {
            requests,
            ignored: overrides.given(),
        })
    }
}

/// Decodes a JSON body; a 422 names the field that is missing or mistyped. The body must
/// be exactly one JSON value (whitespace may follow): anything after it is refused as
/// FastAPI does (`json_invalid`, "Extra data"), never silently dropped.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = match serde_path_to_error::deserialize::<_, T>(&mut *de) {
        Ok(v) => v,
        Err(e) => {
            let mut loc = path_loc(e.path());
            let inner = e.into_inner();
            let msg = inner.to_string();
            let kind = if msg.starts_with("missing field") {
                // serde names the missing field only in the message; FastAPI puts it in loc.
                if let Some(field) = msg.split('`').nth(1) {
                    loc.push(Value::from(field));
                }
                "missing"
            } else if inner.is_syntax() || inner.is_eof() {
                "json_invalid"
            } else {
                "value_error"
            };
            return Err(invalid(loc, msg, kind));
        }
    };
    match de.end() {
        Ok(()) => Ok(value),
        Err(e) => Err(invalid(
            vec![Value::from("body")],
            format!("Extra data: a body holds one JSON value, more follows it ({e})"),
            "json_invalid",
        )),
    }
}

/// `["body", …]` from serde's path (`[3].responses` → `["body", 3, "responses"]`).
fn path_loc(path: &serde_path_to_error::Path) -> Vec<Value> {
    use serde_path_to_error::Segment;
    let mut loc = vec![Value::from("body")];
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => loc.push(Value::from(*index)),
            Segment::Map { key } => loc.push(Value::from(key.as_str())),
            Segment::Enum { variant } => loc.push(Value::from(variant.as_str())),
            Segment::Unknown => {}
        }
    }
    loc
}

/// The client library's one set of request rules ([`JudgeRequest::validate_with`]), with
/// this gateway's limit on responses; a broken rule is a 422 whose `loc` ends with the
/// field at fault.
fn check(request: &JudgeRequest, at: &[Value], config: &GatewayConfig) -> Result<(), ApiError> {
    request.validate_with(config.max_responses).map_err(|e| {
        let mut loc = at.to_vec();
        loc.push(Value::from(e.field()));
        invalid(loc, e.to_string(), "value_error")
    })
}

fn invalid(mut loc: Vec<Value>, msg: String, kind: &'static str) -> ApiError {
    if loc.first().and_then(Value::as_str) != Some("body") {
        loc.insert(0, Value::from("body"));
    }
    ApiError::Invalid(vec![FieldError { loc, msg, kind }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc_of(body: &str) -> Vec<Value> {
        match Vec::<JudgeRequest>::from_body(body.as_bytes(), &GatewayConfig::default()) {
            Err(ApiError::Invalid(e)) => e[0].loc.clone(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn job_locations_name_the_request_and_field_and_overrides_are_only_named() {
        let config = GatewayConfig::default();
        let body = r#"{"requests": [{"principle":"p","prompt":"q","responses":{"a":"x"}},
            {"principle":"p","prompt":"q","responses":{}}]}"#;
        match Job::from_body(body.as_bytes(), &config) {
            Err(ApiError::Invalid(e)) => assert_eq!(
                e[0].loc,
                [
                    Value::from("body"),
                    Value::from("requests"),
                    Value::from(1),
                    Value::from("responses")
                ]
            ),
            other => panic!("expected a validation error, got {other:?}"),
        }
        let body = r#"{"requests": [{"principle":"p","prompt":"q","responses":{"a":"x"}}],
            "output_path": "/etc", "api_key": "sk-secret", "unknown": [1]}"#;
        let job = Job::from_body(body.as_bytes(), &config).expect("valid");
        assert_eq!(job.requests.len(), 1);
        assert_eq!(job.ignored, ["output_path", "api_key"]);
    }

    #[test]
    fn locations_name_the_item_and_field() {
        let ok = r#"{"principle":"p","prompt":"q","responses":{"a":"x"}}"#;
        assert_eq!(
            loc_of(&format!(
                r#"[{ok}, {{"principle":"p","responses":{{"a":"x"}}}}]"#
            )),
            [Value::from("body"), Value::from(1), Value::from("prompt")]
        );
        assert_eq!(
            loc_of(&format!(
                r#"[{ok}, {{"principle":"p","prompt":5,"responses":{{"a":"x"}}}}]"#
            )),
            [Value::from("body"), Value::from(1), Value::from("prompt")]
        );
        assert_eq!(
            loc_of(r#"[{"principle":"p","prompt":"q","responses":{}}]"#),
            [
                Value::from("body"),
                Value::from(0),
                Value::from("responses")
            ]
        );
    }
}
