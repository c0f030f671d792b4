//! Building response bodies.

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;

use crate::config::ReasoningShape;
use crate::score::{estimate_tokens, sort_ranking};

/// `serde_json` string literal for `s` (infallible, unlike `to_string`'s signature).
fn json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::from(s).to_string());
}

/// The model's JSON answer, in Python `json.dumps` spacing:
/// `{"scores": {"model-1": 4, …}, "best-to-worst": ["model-2", …]}`.
pub(crate) fn answer_json(scored: &[(u8, &str)]) -> String {
    answer_json_ranked(scored, &ranking_of(scored))
}

/// The names of `scored` in the mock's ranking order (see [`crate::expected_ranking`]).
pub(crate) fn ranking_of<'a>(scored: &[(u8, &'a str)]) -> Vec<&'a str> {
    let mut ranked = scored.to_vec();
    sort_ranking(&mut ranked);
    ranked.into_iter().map(|(_, name)| name).collect()
}

/// [`answer_json`] with the ranking given (the `names-*` faults make it disagree with the scores).
pub(crate) fn answer_json_ranked(scored: &[(u8, &str)], ranking: &[&str]) -> String {
    let mut out = String::with_capacity(32 + scored.len() * 32);
    out.push_str("{\"scores\": {");
    for (i, (score, name)) in scored.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_str(&mut out, name);
        out.push_str(": ");
        out.push(char::from(b'0' + score));
    }
    out.push_str("}, \"best-to-worst\": [");
    for (i, name) in ranking.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_str(&mut out, name);
    }
    out.push_str("]}");
    out
}

/// Text the malformed fault answers instead of the JSON.
pub(crate) const MALFORMED_ANSWER: &str =
    "All of the responses seem reasonable to me, so I would rather not assign scores.";

const FILLER: &str = "Weighing each response against the principle once more before deciding. ";

/// Short deterministic reasoning, padded with filler up to `min_bytes`.
pub(crate) fn reasoning_text(scored: &[(u8, &str)], min_bytes: usize) -> String {
    let mut out = String::with_capacity(64 + scored.len() * 40 + min_bytes);
    out.push_str("The principle decides what matters here. I will rate each response from 1 to 5.");
    for (score, name) in scored {
        out.push('\n');
        out.push_str(name);
        out.push_str(" deserves ");
        out.push(char::from(b'0' + score));
        out.push('.');
    }
    if out.len() < min_bytes {
        out.push('\n');
        while out.len() < min_bytes {
            out.push_str(FILLER);
        }
    }
    out
}

/// The assistant message once shaped, and how generation stopped.
pub(crate) struct Completion {
    pub content: Option<String>,
    pub reasoning: Option<String>,
    pub finish_reason: &'static str,
    pub completion_tokens: u64,
}

/// Longest prefix of `s` of at most `bytes` bytes ending on a char boundary.
fn cut(s: &str, bytes: usize) -> &str {
    let mut end = bytes.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Shapes `reasoning` + `answer` into a completion, cutting it like a model that
/// hit `max_tokens` (4 bytes a token) or, with `force_length`, in mid-thought.
pub(crate) fn shape_completion(
    shape: ReasoningShape,
    reasoning: &str,
    answer: &str,
    max_tokens: Option<u64>,
    force_length: bool,
) -> Completion {
    // (reasoning kept, answer kept: None = the think block never closed)
    let (r, a, finish) = if force_length {
        (cut(reasoning, reasoning.len() / 2), None, "length")
    } else {
        // +3 tokens for the tags and blank line around the answer.
        let needed = estimate_tokens(reasoning) + estimate_tokens(answer) + 3;
        match max_tokens {
            Some(m) if needed > m => {
                let budget = usize::try_from(m.saturating_mul(4)).unwrap_or(usize::MAX);
                if budget <= reasoning.len() {
                    (cut(reasoning, budget), None, "length")
                } else {
                    (
                        reasoning,
                        Some(cut(answer, budget - reasoning.len())),
                        "length",
                    )
                }
            }
            _ => (reasoning, Some(answer), "stop"),
        }
    };
    let (content, reasoning_out) = match shape {
        ReasoningShape::Inline | ReasoningShape::Prefilled => {
            let mut c = String::with_capacity(r.len() + a.map_or(0, str::len) + 20);
            if shape == ReasoningShape::Inline {
                c.push_str("<think>\n");
            }
            c.push_str(r);
            if let Some(a) = a {
                c.push_str("\n</think>\n\n");
                c.push_str(a);
            }
            (Some(c), None)
        }
        ReasoningShape::Reasoning | ReasoningShape::ReasoningContent => {
            (a.map(str::to_owned), Some(r.to_owned()))
        }
    };
    let mut completion_tokens = content.as_deref().map_or(0, estimate_tokens)
        + reasoning_out.as_deref().map_or(0, estimate_tokens);
    if let (Some(m), "length") = (max_tokens, finish) {
        completion_tokens = m;
    }
    Completion {
        content,
        reasoning: reasoning_out,
        finish_reason: finish,
        completion_tokens,
    }
}

#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Usage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'a str,
    stop_reason: Option<()>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

/// The `chat.completion` body.
pub(crate) fn completion_body(
    seq: u64,
    created: u64,
    model: &str,
    shape: ReasoningShape,
    c: &Completion,
    prompt_tokens: u64,
) -> Result<Bytes, serde_json::Error> {
    let id = format!("chatcmpl-ra-mock-{seq}");
    let (reasoning, reasoning_content) = match shape {
        ReasoningShape::Reasoning => (c.reasoning.as_deref(), None),
        ReasoningShape::ReasoningContent => (None, c.reasoning.as_deref()),
        ReasoningShape::Inline | ReasoningShape::Prefilled => (None, None),
    };
    let body = Body {
        id: &id,
        object: "chat.completion",
        created,
        model,
        choices: [Choice {
            index: 0,
            message: Message {
                role: "assistant",
                content: c.content.as_deref(),
                reasoning,
                reasoning_content,
            },
            logprobs: None,
            finish_reason: c.finish_reason,
            stop_reason: None,
        }],
        usage: Usage {
            prompt_tokens,
            completion_tokens: c.completion_tokens,
            total_tokens: prompt_tokens + c.completion_tokens,
        },
    };
    let len = c.content.as_deref().map_or(0, str::len) + c.reasoning.as_deref().map_or(0, str::len);
    let mut out = Vec::with_capacity(len + 384);
    serde_json::to_writer(&mut out, &body)?;
    Ok(Bytes::from(out))
}

/// vLLM's error `type` for a status.
fn error_type(code: u16) -> &'static str {
    match code {
        400 => "BadRequestError",
        401 => "AuthenticationError",
        403 => "PermissionDeniedError",
        404 => "NotFoundError",
        405 => "MethodNotAllowed",
        413 => "RequestEntityTooLarge",
        422 => "UnprocessableEntityError",
        429 => "RateLimitError",
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailableError",
        504 => "GatewayTimeout",
        _ if code >= 500 => "InternalServerError",
        _ => "BadRequestError",
    }
}

/// vLLM ≥ 0.10.1's error envelope: `{"error": {"message", "type", "param", "code": status}}`.
pub(crate) fn error_body(code: u16, message: &str, param: Option<&str>) -> Bytes {
    let v = json!({"error": {"message": message, "type": error_type(code), "param": param, "code": code}});
    Bytes::from(v.to_string())
}

/// OpenAI's 401 body (`code: "invalid_api_key"`); never echoes the key.
pub(crate) fn auth_error_body(missing: bool) -> Bytes {
    let message = if missing {
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    } else {
        "Incorrect API key provided."
    };
    let v = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}});
    Bytes::from(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_format() {
        let s = answer_json(&[(3, "model-1"), (5, "model-2"), (3, "model-0")]);
        assert_eq!(
            s,
            r#"{"scores": {"model-1": 3, "model-2": 5, "model-0": 3}, "best-to-worst": ["model-2", "model-0", "model-1"]}"#
        );
    }

    #[test]
    fn shapes() {
        let c = shape_completion(ReasoningShape::Inline, "R", "{}", None, false);
        assert_eq!(c.content.as_deref(), Some("<think>\nR\n</think>\n\n{}"));
        assert_eq!(c.finish_reason, "stop");
        let c = shape_completion(ReasoningShape::Prefilled, "R", "{}", None, false);
        assert_eq!(c.content.as_deref(), Some("R\n</think>\n\n{}"));
        let c = shape_completion(ReasoningShape::Reasoning, "R", "{}", None, false);
        assert_eq!(
            (c.content.as_deref(), c.reasoning.as_deref()),
            (Some("{}"), Some("R"))
        );
    }

    #[test]
    fn truncation_by_max_tokens() {
        let r = "x".repeat(100);
        let c = shape_completion(ReasoningShape::Inline, &r, "{\"a\": 1}", Some(10), false);
        assert_eq!(c.finish_reason, "length");
        assert_eq!(
            c.content.as_deref(),
            Some(&*format!("<think>\n{}", &r[..40]))
        );
        let c = shape_completion(ReasoningShape::Reasoning, &r, "{}", Some(10), false);
        assert_eq!(c.content, None);
        let c = shape_completion(ReasoningShape::Inline, &r, "{}", Some(1000), false);
        assert_eq!(c.finish_reason, "stop");
        let c = shape_completion(ReasoningShape::Inline, "aéé", "{}", None, true);
        assert_eq!(c.content.as_deref(), Some("<think>\na"));
    }
}
