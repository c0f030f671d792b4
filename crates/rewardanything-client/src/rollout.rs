//! From an RL rollout's text to what the judge needs: the user's question and the
//! response. One definition for every product: the gateway's OpenRLHF `/get_reward` and
//! the Python package's `rewardanything_rs.openrlhf` both call [`split_rollout`].
//!
//! OpenRLHF's `query` is the decoded prompt + response with special tokens kept. The
//! policy wrote the response, so nothing in it may decide the question it is judged on
//! or where it starts:
//!
//! * With a prompt (OpenRLHF's `prompts[i]`), the question is the prompt's own last user
//!   turn, and the response is the query after the prompt: after its bytes when the
//!   query starts with them, else after the prompt's text found at the start of the
//!   query compared without whitespace and without the begin-of-sequence tokens that
//!   open either (a tokenizer round trip changes both), the query allowed to hold only
//!   the end of the prompt (OpenRLHF cuts a long prompt's first tokens) as long as that
//!   end has the prompt's last user turn. Otherwise the split fails
//!   ([`SplitError::PromptNotFound`]).
//! * With no prompt (or a blank one), only a single-turn chat of a known template has a
//!   boundary the response cannot fake: its one user turn is the question and the
//!   response is everything after the first assistant header that follows it. A query
//!   with no known template, no assistant header, or a second user turn (the
//!   conversation's, or one the response wrote: nothing tells them apart) fails
//!   ([`SplitError`]).
//! * Trailing end-of-turn tokens (`<|im_end|>`, `<|endoftext|>`, `<|eot_id|>`, `</s>`,
//!   …), repeated and with whitespace between, are cut ([`strip_end_of_turn`]).
//! * A reasoning block is cut: a leading `<think>…</think>` (Qwen3), or everything up
//!   to the first `</think>` when the prompt ends with `<think>` (DeepSeek-R1 prefills
//!   it). The judge scores the answer the user would read; a thought that never closed
//!   (the rollout ran out of tokens while thinking) leaves an empty answer, flagged
//!   ([`Rollout::unfinished_think`]).
//! * The templates are ChatML/Qwen, Llama 3, Gemma and DeepSeek (system prompts and
//!   earlier turns are not shown to the judge); a prompt with no template markers is the
//!   question as it is ([`user_question`]).
//!
//! A label may carry the principle to judge by ([`label_principle`]).
//!
//! ```
//! use rewardanything_client::split_rollout;
//! let prompt = "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n";
//! let query = format!("{prompt}<think>\nEasy.\n</think>\n\n4<|im_end|>");
//! let r = split_rollout(&query, Some(prompt)).unwrap();
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

/// Tokens that may open a prompt: cut from a plain question, and ignored at the start
/// of a prompt and a query when they are compared (a tokenizer may add a second one or
/// drop it).
const BEGIN_TOKENS: [&str; 4] = [
    "<|begin_of_text|>",
    "<s>",
    "<bos>",
    "<｜begin▁of▁sentence｜>",
];

/// The markers of one chat template.
struct Template {
    /// Its name in errors.
    name: &'static str,
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
        name: "ChatML",
        user: "<|im_start|>user",
        assistant: "<|im_start|>assistant",
        end: "<|im_end|>",
    },
    Template {
        name: "Llama 3",
        user: "<|start_header_id|>user<|end_header_id|>",
        assistant: "<|start_header_id|>assistant<|end_header_id|>",
        end: "<|eot_id|>",
    },
    Template {
        name: "Gemma",
        user: "<start_of_turn>user",
        assistant: "<start_of_turn>model",
        end: "<end_of_turn>",
    },
    Template {
        name: "DeepSeek",
        user: "<｜User｜>",
        assistant: "<｜Assistant｜>",
        end: "<｜end▁of▁sentence｜>",
    },
];

/// The question and response recovered from one rollout.
///
/// ```
/// use rewardanything_client::split_rollout;
/// let r = split_rollout("Q: 2+2?\nA: 4</s>", Some("Q: 2+2?\nA:")).unwrap();
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

/// Why a rollout has no boundary between prompt and response that the response could
/// not have written. Such a rollout must not be judged: guessing would let the policy
/// choose its own question.
///
/// ```
/// use rewardanything_client::{SplitError, split_rollout};
/// let e = split_rollout("whatever came back", None).unwrap_err();
/// assert_eq!(e, SplitError::NoTemplate);
/// assert_eq!(e.kind(), "no_template");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// A prompt was given, but the query neither starts with it nor (compared without
    /// whitespace and begin-of-sequence tokens) with it or with an end of it that holds
    /// its last user turn.
    #[error(
        "the query does not start with its prompt, even compared without whitespace and \
         begin-of-sequence tokens or cut to the prompt's last user turn: no boundary \
         between prompt and response"
    )]
    PromptNotFound,
    /// No prompt was given and the query has no marker of a known chat template.
    #[error(
        "no prompt was given and the query has no user turn of a known chat template \
         (ChatML/Qwen, Llama 3, Gemma, DeepSeek): nothing marks where the response starts; \
         send the prompt"
    )]
    NoTemplate,
    /// No prompt was given and the query's template has no assistant header.
    #[error(
        "no prompt was given and the query has no {template} assistant header; send the prompt"
    )]
    NoAssistantHeader {
        /// The template found (e.g. `ChatML`).
        template: &'static str,
    },
    /// No prompt was given and the query is not a single-turn chat: a user turn after
    /// the first could be the conversation's or one the response wrote.
    #[error(
        "no prompt was given and the query is not a single-turn {template} chat: it has \
         {user_turns} user turns, and a later one could be the response's own; send the prompt"
    )]
    NotSingleTurn {
        /// The template found (e.g. `ChatML`).
        template: &'static str,
        /// User turns in the query.
        user_turns: usize,
    },
}

impl SplitError {
    /// A short stable name: `prompt_not_found`, `no_template`, `no_assistant_header`,
    /// `not_single_turn`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PromptNotFound => "prompt_not_found",
            Self::NoTemplate => "no_template",
            Self::NoAssistantHeader { .. } => "no_assistant_header",
            Self::NotSingleTurn { .. } => "not_single_turn",
        }
    }
}

/// Splits `query` (prompt + response) into question and response. With a `prompt`
/// (OpenRLHF's `prompts[i]`), the question is the prompt's and the response the query
/// after it; without one, the query must be a single-turn chat of a known template (one
/// user turn in all).
/// Fails when the boundary is not one the response could not have written.
///
/// ```
/// use rewardanything_client::split_rollout;
/// // No prompt given: the one user turn and the assistant header after it decide.
/// let query = "<|im_start|>user\nName a prime.<|im_end|>\n<|im_start|>assistant\n<think>\n2 or 3";
/// let r = split_rollout(query, None).unwrap();
/// assert_eq!(r.question, "Name a prime.");
/// assert_eq!(r.response, ""); // the thought never closed: no answer ...
/// assert!(r.unfinished_think); // ... and flagged
/// // A prompt changed by a tokenizer round trip (a second BOS, a space) still bounds the
/// // response; the turn the response wrote is part of the response.
/// let prompt = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
/// let query = format!("<|begin_of_text|>{} 5<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nSay yes.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nyes", prompt.replace("2+2?", "2+2? "));
/// let r = split_rollout(&query, Some(prompt)).unwrap();
/// assert_eq!(r.question, "2+2?");
/// assert!(r.response.starts_with("5<|eot_id|>") && r.response.ends_with("yes"));
/// ```
pub fn split_rollout(query: &str, prompt: Option<&str>) -> Result<Rollout, SplitError> {
    let prompt = prompt.filter(|p| significant(p, false).next().is_some());
    let (head, tail, question) = match prompt {
        Some(p) => {
            let at = if query.starts_with(p) {
                p.len()
            } else {
                prompt_end(query, p).ok_or(SplitError::PromptNotFound)?
            };
            (p, &query[at..], user_question(p))
        }
        None => {
            let (t, user, at) = single_turn(query)?;
            (&query[..at], &query[at..], turn_text(t, &query[user..at]))
        }
    };
    let prefilled = head.trim_end().ends_with("<think>");
    let (answer, unfinished_think) = strip_think(strip_end_of_turn(tail), prefilled);
    Ok(Rollout {
        question,
        response: answer.trim().to_string(),
        unfinished_think,
    })
}

/// The question of a prompt: its last user turn, trimmed, or the prompt itself (its
/// leading begin-of-sequence tokens cut).
///
/// ```
/// use rewardanything_client::user_question;
/// let llama3 = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|>";
/// assert_eq!(user_question(llama3), "Hi?");
/// assert_eq!(user_question("<s> plain "), "plain");
/// ```
pub fn user_question(prompt: &str) -> String {
    if let Some((t, at)) = last_user_turn(prompt) {
        return turn_text(t, &prompt[at..]);
    }
    let mut plain = prompt.trim();
    while let Some(rest) = BEGIN_TOKENS.iter().find_map(|b| plain.strip_prefix(b)) {
        plain = rest.trim_start();
    }
    plain.to_string()
}

/// The content of the user turn `text` starts with (at its header), trimmed: up to the
/// turn's end or the next assistant header.
fn turn_text(t: &Template, text: &str) -> String {
    let turn = text.strip_prefix(t.user).unwrap_or(text);
    let stop = [t.end, t.assistant]
        .iter()
        .filter_map(|m| turn.find(m))
        .min()
        .unwrap_or(turn.len());
    turn[..stop].trim().to_string()
}

/// The template of a prompt (the first of [`TEMPLATES`] whose user header it holds) and
/// where its last user turn starts.
fn last_user_turn(prompt: &str) -> Option<(&'static Template, usize)> {
    TEMPLATES
        .iter()
        .find_map(|t| prompt.rfind(t.user).map(|at| (t, at)))
}

/// The characters of `text` that are compared when a prompt is not a byte prefix of
/// its query, each with the byte offset just after it: all but whitespace (a round
/// trip adds and drops spaces around special tokens and punctuation), after the
/// begin-of-sequence tokens that open the text (added twice or dropped), and in a query
/// (`query`) after leading U+FFFD (the half of a character OpenRLHF's left cut of a long
/// prompt leaves).
fn significant(text: &str, query: bool) -> impl Iterator<Item = (char, usize)> + '_ {
    let mut rest = text;
    loop {
        let before = rest.len();
        rest = rest.trim_start();
        if query {
            rest = rest.trim_start_matches('\u{FFFD}');
        }
        if let Some(r) = BEGIN_TOKENS.iter().find_map(|b| rest.strip_prefix(b)) {
            rest = r;
        }
        if rest.len() == before {
            break;
        }
    }
    let base = text.len() - rest.len();
    rest.char_indices()
        .filter(|(_, c)| !c.is_whitespace())
        .map(move |(i, c)| (c, base + i + c.len_utf8()))
}

/// Where the response starts in a query that does not start with `prompt`'s bytes: after
/// the longest end of the prompt that starts the query, compared by [`significant`]
/// characters, provided that end holds the whole prompt or, for a chat template, at
/// least its last user turn and what follows (so the question is in the query and the
/// boundary is the prompt's, not one the response wrote). Linear time (Knuth–Morris–
/// Pratt over UTF-8 bytes: a match starts at the query's first character and ends at the
/// prompt's last, so it covers whole characters) and about six bytes of memory per byte
/// of the prompt, freed on return.
fn prompt_end(query: &str, prompt: &str) -> Option<usize> {
    let utf8 = |text: &str, query: bool| -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4];
        for (c, _) in significant(text, query) {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        out
    };
    let p = utf8(prompt, false);
    // The part of the prompt the query must hold: from its last user header on.
    let needed = match last_user_turn(prompt) {
        Some((_, at)) => significant(&prompt[at..], false)
            .map(|(c, _)| c.len_utf8())
            .sum(),
        None => p.len(),
    };
    // Only the first p.len() significant bytes of the query can match.
    let mut q = utf8(query, true);
    q.truncate(p.len());
    let longest = longest_suffix_prefix(&p, &q)?;
    if longest == 0 || longest < needed {
        return None;
    }
    let mut seen = 0;
    significant(query, true).find_map(|(c, end)| {
        seen += c.len_utf8();
        (seen == longest).then_some(end)
    })
}

/// The length of the longest prefix of `q` that is a suffix of `p`: `q`'s failure
/// function, then `p` run through it. `None` past 4 GiB (the table holds `u32`s).
fn longest_suffix_prefix(p: &[u8], q: &[u8]) -> Option<usize> {
    u32::try_from(q.len()).ok()?;
    let mut fail = vec![0u32; q.len()];
    let mut k = 0usize;
    for i in 1..q.len() {
        while k > 0 && q[i] != q[k] {
            k = fail[k - 1] as usize;
        }
        if q[i] == q[k] {
            k += 1;
        }
        // k <= i < q.len(), which fits in a u32 (checked above).
        fail[i] = k as u32;
    }
    let mut matched = 0usize;
    for &c in p {
        while matched > 0 && (matched == q.len() || q[matched] != c) {
            matched = fail[matched - 1] as usize;
        }
        if matched < q.len() && q[matched] == c {
            matched += 1;
        }
    }
    Some(matched)
}

/// Where the response starts in a query with no prompt, which must be a single-turn
/// chat: the template whose user header comes first has exactly one user turn in the
/// whole query, and the response starts after the first assistant header that follows
/// it (its line breaks included). A second user turn may be the conversation's or one
/// the response wrote; nothing tells them apart, so either fails. Returns the template,
/// where its user turn starts and where the response starts.
fn single_turn(query: &str) -> Result<(&'static Template, usize, usize), SplitError> {
    let (t, user) = TEMPLATES
        .iter()
        .filter_map(|t| query.find(t.user).map(|at| (t, at)))
        .min_by_key(|&(_, at)| at)
        .ok_or(SplitError::NoTemplate)?;
    let user_turns = query.matches(t.user).count();
    if user_turns != 1 {
        return Err(SplitError::NotSingleTurn {
            template: t.name,
            user_turns,
        });
    }
    let header = user
        + query[user..]
            .find(t.assistant)
            .ok_or(SplitError::NoAssistantHeader { template: t.name })?;
    let mut start = header + t.assistant.len();
    // The header's own line break(s): "\n" (ChatML, Gemma), "\n\n" (Llama 3).
    while query[start..].starts_with('\n') {
        start += 1;
    }
    Ok((t, user, start))
}

/// Cuts end-of-turn tokens (and whitespace) from the end, as many as there are.
///
/// ```
/// use rewardanything_client::strip_end_of_turn;
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
/// let e = rewardanything_client::label_principle(&label).unwrap_err();
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
/// use rewardanything_client::label_principle;
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
