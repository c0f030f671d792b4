//! Reading and checking request bodies: typed errors naming the field (FastAPI's
//! `detail` shape), the size and count limits.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use rewardanything_client::JudgeRequest;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::GatewayConfig;
use crate::error::{ApiError, FieldError};

/// Reads the body within `body_timeout` (a peer that declares a body and sends it slowly
/// or never holds no budget for long): 408 when it does not arrive in time, 413 when it
/// is over the limit.
pub async fn read(req: Request, config: &GatewayConfig) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(config.body_timeout, Bytes::from_request(req, &())).await {
        Ok(body) => bytes(body, config.max_body_bytes),
        Err(_) => Err(ApiError::BodyTimeout(config.body_timeout)),
    }
}

/// The body, or 413 when it is over the limit (axum's own rejection is plain text).
fn bytes(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    match body {
        Ok(b) => Ok(b),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge(limit)),
        Err(e) => Err(ApiError::BadBody(e.body_text())),
    }
}

/// One request, checked.
pub fn single(body: &[u8], config: &GatewayConfig) -> Result<JudgeRequest, ApiError> {
    let request: JudgeRequest = decode(body)?;
    check(&request, &[], config)?;
    Ok(request)
}

/// A batch, checked: every item must be valid (like FastAPI, one invalid item refuses
/// the whole batch, naming it).
pub fn batch(body: &[u8], config: &GatewayConfig) -> Result<Vec<JudgeRequest>, ApiError> {
    let requests: Vec<JudgeRequest> = decode(body)?;
    if requests.is_empty() {
        return Err(ApiError::EmptyBatch);
    }
    if requests.len() > config.max_batch {
        return Err(invalid(
            vec![],
            format!(
                "a batch holds at most {} requests, this one has {}",
                config.max_batch,
                requests.len()
            ),
            "too_long",
        ));
    }
    for (i, request) in requests.iter().enumerate() {
        check(request, &[Value::from(i)], config)?;
    }
    Ok(requests)
}

/// Decodes a JSON body; a 422 names the field that is missing or mistyped.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
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
            Err(invalid(loc, msg, kind))
        }
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

fn check(request: &JudgeRequest, at: &[Value], config: &GatewayConfig) -> Result<(), ApiError> {
    let n = request.responses.len();
    let problem = if n == 0 {
        Some("responses must not be empty".to_string())
    } else if n > config.max_responses {
        Some(format!(
            "a request holds at most {} responses, this one has {n}",
            config.max_responses
        ))
    } else {
        None
    };
    match problem {
        Some(msg) => {
            let mut loc = at.to_vec();
            loc.push(Value::from("responses"));
            Err(invalid(loc, msg, "value_error"))
        }
        None => Ok(()),
    }
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
        match batch(body.as_bytes(), &GatewayConfig::default()) {
            Err(ApiError::Invalid(e)) => e[0].loc.clone(),
            other => panic!("expected a validation error, got {other:?}"),
        }
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
