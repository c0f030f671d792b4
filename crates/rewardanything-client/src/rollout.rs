//! From an RL rollout's text to what the judge needs: the user's question and the
//! response. One definition for every product: the gateway's OpenRLHF `/get_reward` and
//! the Python package's `rewardanything_rs.openrlhf` both call [`split_rollout`].
//!
//! OpenRLHF's `query` is the decoded prompt + response with special tokens kept:
//!
//! * The response is the query after its `prompt` prefix; when the query does not
//!   start with the prompt (a left-truncated prompt, a tokenizer round trip that changed
//!   it, no prompt sent), the text after the first assistant header that follows the
//!   last user turn of a known template; failing that, the whole query.
//! * Trailing end-of-turn tokens (`<|im_end|>`, `<|endoftext|>`, `<|eot_id|>`, `</s>`,
//!   …), repeated and with whitespace between, are cut ([`strip_end_of_turn`]).
//! * A reasoning block is cut: a leading `<think>…</think>` (Qwen3), or everything up
//!   to the first `</think>` when the prompt ends with `<think>` (DeepSeek-R1 prefills
//!   it). The judge scores the answer the user would read; a thought that never closed
//!   (the rollout ran out of tokens while thinking) leaves an empty answer, flagged
//!   ([`Rollout::unfinished_think`]).
//! * The question is the content of the last user turn of a ChatML/Qwen, Llama 3,
//!   Gemma or DeepSeek template (system prompts and earlier turns are not shown to the
//!   judge); a prompt with no template markers is the question as it is
//!   ([`user_question`]).
//!
//! A label may carry the principle to judge by ([`label_principle`]).
//!
//! ```
//! use rewardanything_client::rollout::split_rollout;
//! let prompt = "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n";
//! let query = format!("{prompt}<think>\nEasy.\n</think>\n\n4<|im_end|>");
//! let r = split_rollout(&query, Some(prompt));
//! assert_eq!((r.question.as_str(), r.response.as_str()), ("2+2?", "4"));
//! assert!(!r.unfinished_think);
//! ```

use serde_json::Value;

/// Tokens that end a turn or a sequence, cut from the end of a response.
const END_TOKENS: [&str; 8] = [
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "</s>",
    "<end_of_turn>",
    "<eos>",
    "<｜end▁of▁sentence｜>",
];

/// Tokens that may open a plain prompt (no template): cut from the question.
const BEGIN_TOKENS: [&str; 4] = [
    "<|begin_of_text|>",
    "<s>",
    "<bos>",
    "<｜begin▁of▁sentence｜>",
];

/// The markers of one chat template.
struct Template {
    /// Opens a user turn (its header; a newline after it is skipped).
    user: &'static str,
    /// Opens an assistant turn.
    assistant: &'static str,
    /// Ends a turn.
    end: &'static str,
}

/// ChatML (Qwen, Qwen3, many fine-tunes), Llama 3, Gemma, DeepSeek (V3, R1).
const TEMPLATES: [Template; 4] = [
    Template {
        user: "<|im_start|>user",
        assistant: "<|im_start|>assistant",
        end: "<|im_end|>",
    },
    Template {
        user: "<|start_header_id|>user<|end_header_id|>",
        assistant: "<|start_header_id|>assistant<|end_header_id|>",
        end: "<|eot_id|>",
    },
    Template {
        user: "<start_of_turn>user",
        assistant: "<start_of_turn>model",
        end: "<end_of_turn>",
    },
    Template {
        user: "<｜User｜>",
        assistant: "<｜Assistant｜>",
        end: "<｜end▁of▁sentence｜>",
    },
];

/// The question and response recovered from one rollout.
///
/// ```
/// let r = rewardanything_client::rollout::split_rollout("Q: 2+2?\nA: 4</s>", Some("Q: 2+2?\nA:"));
/// assert_eq!(r.question, "Q: 2+2?\nA:");
/// assert_eq!(r.response, "4");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rollout {
    /// The last user turn (or the plain prompt), trimmed.
    pub question: String,
    /// The response, its reasoning block and end tokens cut, trimmed.
    pub response: String,
    /// The response opened a reasoning block that never closed (so it has no answer).
    pub unfinished_think: bool,
}

/// Splits `query` (prompt + response) into question and response, using `prompt`
/// (OpenRLHF's `prompts[i]`) when the query starts with it and the chat template's
/// markers otherwise.
///
/// ```
/// use rewardanything_client::rollout::split_rollout;
/// // No prompt given: the template's last user turn and assistant header decide.
/// let query = "<|im_start|>user\nName a prime.<|im_end|>\n<|im_start|>assistant\n<think>\n2 or 3";
/// let r = split_rollout(query, None);
/// assert_eq!(r.question, "Name a prime.");
/// assert_eq!(r.response, ""); // the thought never closed: no answer ...
/// assert!(r.unfinished_think); // ... and flagged
/// ```
pub fn split_rollout(query: &str, prompt: Option<&str>) -> Rollout {
    let (head, tail) = match prompt.filter(|p| !p.is_empty()) {
        Some(p) if query.starts_with(p) => (p, &query[p.len()..]),
        _ => match assistant_start(query) {
            Some(at) => (&query[..at.0], &query[at.1..]),
            // No way to tell where the response starts: the prompt (if any) is still
            // the best question, and the query is all the response there is.
            None => (prompt.unwrap_or(""), query),
        },
    };
    let prefilled = head.trim_end().ends_with("<think>");
    let (answer, unfinished_think) = strip_think(strip_end_of_turn(tail), prefilled);
    Rollout {
        question: user_question(head),
        response: answer.trim().to_string(),
        unfinished_think,
    }
}

/// The question of a prompt: its last user turn, trimmed, or the prompt itself (its
/// leading begin-of-sequence tokens cut).
///
/// ```
/// use rewardanything_client::rollout::user_question;
/// let llama3 = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|>";
/// assert_eq!(user_question(llama3), "Hi?");
/// assert_eq!(user_question("<s> plain "), "plain");
/// ```
pub fn user_question(prompt: &str) -> String {
    for t in &TEMPLATES {
        if let Some(at) = prompt.rfind(t.user) {
            let turn = &prompt[at + t.user.len()..];
            let stop = [t.end, t.assistant]
                .iter()
                .filter_map(|m| turn.find(m))
                .min()
                .unwrap_or(turn.len());
            return turn[..stop].trim().to_string();
        }
    }
    let mut plain = prompt.trim();
    while let Some(rest) = BEGIN_TOKENS.iter().find_map(|b| plain.strip_prefix(b)) {
        plain = rest.trim_start();
    }
    plain.to_string()
}

/// Where the generated response starts in a query with no usable prompt: the end of the
/// first assistant header after the last user turn (the header's line included).
/// Returns (start of the header, start of the response).
fn assistant_start(query: &str) -> Option<(usize, usize)> {
    TEMPLATES.iter().find_map(|t| {
        let user = query.rfind(t.user)?;
        let header = user + query[user..].find(t.assistant)?;
        let mut start = header + t.assistant.len();
        // The header's own line break(s): "\n" (ChatML, Gemma), "\n\n" (Llama 3).
        while query[start..].starts_with('\n') {
            start += 1;
        }
        Some((header, start))
    })
}

/// Cuts end-of-turn tokens (and whitespace) from the end, as many as there are.
///
/// ```
/// use rewardanything_client::rollout::strip_end_of_turn;
/// assert_eq!(strip_end_of_turn("4<|im_end|>\n<|endoftext|><|endoftext|> "), "4");
/// ```
pub fn strip_end_of_turn(text: &str) -> &str {
    let mut text = text.trim_end();
    while let Some(rest) = END_TOKENS.iter().find_map(|t| text.strip_suffix(t)) {
        text = rest.trim_end();
    }
    text
}

/// Cuts a reasoning block; `prefilled`: the prompt already opened it.
fn strip_think(text: &str, prefilled: bool) -> (&str, bool) {
    const CLOSE: &str = "</think>";
    let trimmed = text.trim_start();
    let thought = match trimmed.strip_prefix("<think>") {
        Some(rest) => rest,
        None if prefilled => trimmed,
        None => return (text, false),
    };
    match thought.find(CLOSE) {
        Some(at) => (&thought[at + CLOSE.len()..], false),
        None => ("", true),
    }
}

/// A label's `"principle"` is there but is not a non-empty string.
///
/// ```
/// let label = serde_json::json!({"principle": 5});
/// let e = rewardanything_client::rollout::label_principle(&label).unwrap_err();
/// assert!(e.to_string().contains("non-empty string"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the label's principle must be a non-empty string")]
#[non_exhaustive]
pub struct InvalidPrinciple;

/// The principle a label carries: its `"principle"` when the label is an object (or the
/// JSON text of one) with that key; `None` for any other label (a ground-truth answer,
/// text that is not a JSON object, `null`). A `"principle"` that is not a non-empty
/// string is an error rather than silently ignored.
///
/// ```
/// use rewardanything_client::rollout::label_principle;
/// use serde_json::json;
/// assert_eq!(label_principle(&json!({"principle": "Be brief."})), Ok(Some("Be brief.".into())));
/// assert_eq!(label_principle(&json!(r#"{"principle": "Be kind."}"#)), Ok(Some("Be kind.".into())));
/// assert_eq!(label_principle(&json!("42")), Ok(None));
/// assert!(label_principle(&json!({"principle": "  "})).is_err());
/// ```
pub fn label_principle(label: &Value) -> Result<Option<String>, InvalidPrinciple> {
    let parsed;
    let object = match label {
        Value::Object(o) => Some(o),
        // A label may be the JSON text of an object (datasets often store strings).
        Value::String(s) if s.trim_start().starts_with('{') => {
            parsed = serde_json::from_str::<Value>(s).ok();
            parsed.as_ref().and_then(Value::as_object)
        }
        _ => None,
    };
    match object.and_then(|o| o.get("principle")) {
        Some(Value::String(p)) if !p.trim().is_empty() => Ok(Some(p.clone())),
        Some(_) => Err(InvalidPrinciple),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests;
