//! The reference's `parse_rewardanything_output`, ported faithfully (SPEC section 3):
//! Python whitespace stripping, the first-`<think>`/first-`</think>` reasoning, lazy
//! think-block removal, fence markers deleted everywhere, the `direct` → `repaired` →
//! `brackets` recovery with Python's JSON dialect ([`super::pyjson`]), normalisation and
//! one-step unmasking. It returns raw values of any type, the silent empty results, and
//! — instead of raising — a [`ReferenceError`] naming the Python exception the reference
//! would raise. Use it when results must match the Python package exactly; the
//! production parser ([`parse_completion`](crate::parse_completion)) builds on these recovery stages and adds
//! validation.

use std::borrow::Cow;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::compat::pyjson::{self, ErrorKind as JsonErrorKind, Object, Value};

pub(crate) const OPEN: &str = "<think>";
pub(crate) const CLOSE: &str = "</think>";

// ---------------------------------------------------------------------------------
// Python text helpers (SPEC 3.1)
// ---------------------------------------------------------------------------------

/// Whether `c` is whitespace for Python's `str.strip()` and regex `\s` (SPEC 3.1).
///
/// Unlike [`char::is_whitespace`], U+001C..U+001F are included.
///
/// ```
/// use rewardanything_client::compat::reference::is_py_space;
/// assert!(is_py_space('\u{1c}') && is_py_space('\u{3000}') && !is_py_space('\u{200b}'));
/// ```
pub fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\u{9}'..='\u{d}'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Python's `str.strip()` with no argument.
///
/// ```
/// assert_eq!(rewardanything_client::compat::reference::py_strip("\u{1c} x \u{feff}"), "x \u{feff}");
/// ```
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

// ---------------------------------------------------------------------------------
// Reference steps (SPEC 3.2–3.4)
// ---------------------------------------------------------------------------------

/// The reference's reasoning (SPEC 3.2): the stripped text between the first `<think>`
/// and the first `</think>` (searched independently), or `""`.
///
/// ```
/// use rewardanything_client::compat::reference::reference_reasoning;
/// assert_eq!(reference_reasoning("<think> a <think>b</think>"), "a <think>b");
/// assert_eq!(reference_reasoning("only</think>"), "");
/// ```
pub fn reference_reasoning(text: &str) -> &str {
    match (text.find(OPEN), text.find(CLOSE)) {
        (Some(a), Some(b)) if b >= a + OPEN.len() => py_strip(&text[a + OPEN.len()..b]),
        _ => "",
    }
}

/// Removes every `<think>…</think>` block, left to right with lazy matching; an
/// unclosed `<think>` and everything after it stay (SPEC 3.3 step 1).
///
/// ```
/// use rewardanything_client::compat::reference::remove_think_blocks;
/// assert_eq!(remove_think_blocks("a<think>x</think>b<think>y"), "ab<think>y");
/// ```
pub fn remove_think_blocks(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut pos = 0;
    while let Some(a) = text[pos..].find(OPEN).map(|i| i + pos) {
        let Some(b) = text[a + OPEN.len()..]
            .find(CLOSE)
            .map(|i| i + a + OPEN.len())
        else {
            break;
        };
        out.push_str(&text[pos..a]);
        pos = b + CLOSE.len();
    }
    if pos == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[pos..]);
    Cow::Owned(out)
}

/// Deletes every ```` ``` ```` and every ```` ```json ```` anywhere, inside strings too
/// (SPEC 3.3 step 2, quirk P6).
///
/// ```
/// use rewardanything_client::compat::reference::remove_fences;
/// assert_eq!(remove_fences("```json\n{}\n```"), "\n{}\n");
/// assert_eq!(remove_fences("````JSON"), "`JSON");
/// ```
pub fn remove_fences(text: &str) -> Cow<'_, str> {
    if !text.contains("```") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("```") {
        out.push_str(&rest[..i]);
        rest = &rest[i + 3..];
        if let Some(r) = rest.strip_prefix("json") {
            rest = r;
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Like [`remove_fences`] but leaves markers inside double-quoted JSON strings alone
/// (the strict layer's fence removal).
///
/// ```
/// use rewardanything_client::compat::reference::remove_fences_outside_strings;
/// assert_eq!(remove_fences_outside_strings("```json\n{\"a```json\": 1}\n```"), "\n{\"a```json\": 1}\n");
/// ```
pub fn remove_fences_outside_strings(text: &str) -> Cow<'_, str> {
    if !text.contains("```") {
        return Cow::Borrowed(text);
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if in_str => i += 2,
            b'"' => {
                in_str = !in_str;
                i += 1;
            }
            b'`' if !in_str && b[i..].starts_with(b"```") => {
                out.push_str(&text[copied..i]);
                i += 3;
                if b[i..].starts_with(b"json") {
                    i += 4;
                }
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[copied.min(text.len())..]);
    Cow::Owned(out)
}

/// The reference's JSON text `J` (SPEC 3.3): think blocks removed, fence markers
/// removed everywhere, Python-stripped.
pub fn reference_json_text(text: &str) -> String {
    let t = remove_think_blocks(text);
    let f = remove_fences(&t);
    py_strip(&f).to_string()
}

/// The reference's naive repair (SPEC 3.4 stage 2): `'`→`"`, quote unquoted keys, drop
/// trailing commas before `}` then `]`, and rename `"best-to-worse"`.
///
/// ```
/// use rewardanything_client::compat::reference::repair;
/// assert_eq!(repair("{scores: {'a': 1,}, best-to-worse: []}"), r#"{"scores": {"a": 1},"best-to-worst": []}"#);
/// ```
pub fn repair(j: &str) -> String {
    let s = j.replace('\'', "\"");
    let s = quote_keys(&s);
    let s = drop_trailing_commas(&s, '}');
    let s = drop_trailing_commas(&s, ']');
    s.replace("\"best-to-worse\"", "\"best-to-worst\"")
}

fn skip_py_space(s: &str, mut i: usize) -> usize {
    while let Some(c) = s[i..].chars().next() {
        if !is_py_space(c) {
            break;
        }
        i += c.len_utf8();
    }
    i
}

/// `re.sub(r'([{,])\s*([A-Za-z0-9_-]+)\s*:', r'\1"\2":', s)`.
fn quote_keys(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len() + 16);
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' || b[i] == b',' {
            let k = skip_py_space(s, i + 1);
            let mut r = k;
            while r < b.len() && (b[r].is_ascii_alphanumeric() || b[r] == b'_' || b[r] == b'-') {
                r += 1;
            }
            if r > k {
                let m = skip_py_space(s, r);
                if b.get(m) == Some(&b':') {
                    out.push_str(&s[copied..=i]);
                    out.push('"');
                    out.push_str(&s[k..r]);
                    out.push_str("\":");
                    i = m + 1;
                    copied = i;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.push_str(&s[copied..]);
    out
}

/// `re.sub(r',\s*<close>', '<close>', s)`.
fn drop_trailing_commas(s: &str, close: char) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b',' {
            let m = skip_py_space(s, i + 1);
            if s[m..].starts_with(close) {
                out.push_str(&s[copied..i]);
                i = m;
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&s[copied..]);
    out
}

/// Which recovery stage produced the JSON value (SPEC 3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// `loads(J)` succeeded.
    Direct,
    /// `loads(repair(J))` succeeded.
    Repaired,
    /// `loads(J[first '{' ..= last '}'])` gave an object.
    Brackets,
    /// Nothing was recovered; the value is `{}`.
    None,
}

/// A Python exception the reference would raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PyException {
    /// `TypeError`.
    TypeError,
    /// `AttributeError`.
    AttributeError,
    /// `ValueError` (an integer literal over 4,300 digits).
    ValueError,
    /// `RecursionError` (nesting too deep).
    RecursionError,
    /// `NameError` (only `format_reward`, SPEC 4.1).
    NameError,
}

impl PyException {
    /// The Python class name, e.g. `"TypeError"`.
    pub fn as_str(self) -> &'static str {
        match self {
            PyException::TypeError => "TypeError",
            PyException::AttributeError => "AttributeError",
            PyException::ValueError => "ValueError",
            PyException::RecursionError => "RecursionError",
            PyException::NameError => "NameError",
        }
    }
}

/// The exception the reference would raise, with a Python-like message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", exception.as_str())]
pub struct ReferenceError {
    /// The exception class.
    pub exception: PyException,
    /// A message in the style of Python's (informative only).
    pub message: String,
    /// The stage that produced the value when the exception came from normalisation or
    /// unmasking; `None` when `json.loads` itself raised (the vectors' `"exception"`).
    pub stage: Option<Stage>,
}

pub(crate) fn py_err(exception: PyException, message: impl Into<String>) -> ReferenceError {
    ReferenceError {
        exception,
        message: message.into(),
        stage: None,
    }
}

fn loads_uncaught(text: &str) -> Result<Result<Value, ()>, ReferenceError> {
    match pyjson::loads(text) {
        Ok(v) => Ok(Ok(v)),
        Err(e) => match e.kind {
            JsonErrorKind::Syntax => Ok(Err(())),
            JsonErrorKind::IntTooLong => Err(py_err(PyException::ValueError, e.message)),
            JsonErrorKind::Recursion => Err(py_err(PyException::RecursionError, e.message)),
        },
    }
}

/// The reference's three recovery stages on `J` (SPEC 3.4). `ValueError` and
/// `RecursionError` from the first stage propagate, as in the reference.
///
/// ```
/// use rewardanything_client::compat::reference::{recover_json, Stage};
/// assert_eq!(recover_json("{'a': 1,}").unwrap().1, Stage::Repaired);
/// assert_eq!(recover_json("x {\"a\": 1} y").unwrap().1, Stage::Brackets);
/// assert_eq!(recover_json("[1]").unwrap().1, Stage::Direct);
/// assert_eq!(recover_json("nothing").unwrap().1, Stage::None);
/// ```
pub fn recover_json(j: &str) -> Result<(Value, Stage), ReferenceError> {
    if let Ok(v) = loads_uncaught(j)? {
        return Ok((v, Stage::Direct));
    }
    if let Ok(v) = pyjson::loads(&repair(j)) {
        return Ok((v, Stage::Repaired));
    }
    if let (Some(f), Some(l)) = (j.find('{'), j.rfind('}'))
        && l > f
        && let Ok(v @ Value::Object(_)) = pyjson::loads(&j[f..=l])
    {
        return Ok((v, Stage::Brackets));
    }
    Ok((Value::Object(Object::new()), Stage::None))
}

/// How the reference's call ended (the vectors' `reference_outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceOutcome {
    /// An object with `scores` and a ranking key.
    Ok,
    /// An object lacking `scores`, or lacking both ranking keys.
    Partial,
    /// Nothing usable: the result is `{}` / `[]` with no error.
    SilentEmpty,
}

/// What the reference's `parse_rewardanything_output` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceParse {
    /// The reasoning (SPEC 3.2).
    pub reasoning: String,
    /// `scores`: any value, normally an object.
    pub scores: Value,
    /// `best-to-worst`: any value, normally an array.
    pub ranking: Value,
    /// The stage that produced the JSON value.
    pub stage: Stage,
    /// Ok / partial / silent empty.
    pub outcome: ReferenceOutcome,
    /// The Python type of the recovered value (`dict`, `list`, …).
    pub value_type: &'static str,
}

/// Python's `key in r` for a recovered JSON value (SPEC 3.5): object keys, array
/// elements, substrings; a TypeError for numbers, bools and null.
pub(crate) fn py_contains(r: &Value, key: &str) -> Result<bool, ReferenceError> {
    match r {
        Value::Object(o) => Ok(o.contains_key(key)),
        Value::Array(a) => Ok(a.iter().any(|v| v.as_str() == Some(key))),
        Value::Str(s) => Ok(s.contains(key)),
        other => Err(py_err(
            PyException::TypeError,
            format!("argument of type '{}' is not iterable", other.type_name()),
        )),
    }
}

fn item_assign_error(r: &Value) -> ReferenceError {
    match r {
        Value::Array(_) => py_err(
            PyException::TypeError,
            "list indices must be integers or slices, not str",
        ),
        other => py_err(
            PyException::TypeError,
            format!(
                "'{}' object does not support item assignment",
                other.type_name()
            ),
        ),
    }
}

/// Normalisation and unmasking (SPEC 3.5) of a recovered value.
fn normalize(
    r: Value,
    masked2real: Option<&IndexMap<String, String>>,
) -> Result<(Value, Value, ReferenceOutcome), ReferenceError> {
    let (mut obj, outcome) = if !r.is_truthy() {
        let mut o = Object::new();
        o.insert("scores".into(), Value::Object(Object::new()));
        o.insert("best-to-worst".into(), Value::Array(Vec::new()));
        (o, ReferenceOutcome::SilentEmpty)
    } else if !py_contains(&r, "scores")? {
        let Value::Object(mut o) = r else {
            return Err(item_assign_error(&r));
        };
        o.insert("scores".into(), Value::Object(Object::new()));
        (o, ReferenceOutcome::Partial)
    } else if !py_contains(&r, "best-to-worst")? {
        let Value::Object(mut o) = r else {
            return Err(item_assign_error(&r));
        };
        let outcome = if o.contains_key("best-to-worse") {
            ReferenceOutcome::Ok
        } else {
            ReferenceOutcome::Partial
        };
        let fallback = o
            .get("best-to-worse")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        o.insert("best-to-worst".into(), fallback);
        (o, outcome)
    } else {
        match r {
            Value::Object(o) => (o, ReferenceOutcome::Ok),
            other => {
                return Err(py_err(
                    PyException::AttributeError,
                    format!("'{}' object has no attribute 'get'", other.type_name()),
                ));
            }
        }
    };
    let scores = obj
        .swap_remove("scores")
        .unwrap_or(Value::Object(Object::new()));
    let ranking = obj
        .swap_remove("best-to-worst")
        .unwrap_or(Value::Array(Vec::new()));
    let Some(m) = masked2real.filter(|m| !m.is_empty()) else {
        return Ok((scores, ranking, outcome));
    };
    let Value::Object(scores) = scores else {
        return Err(py_err(
            PyException::AttributeError,
            format!("'{}' object has no attribute 'items'", scores.type_name()),
        ));
    };
    let mut unmasked = Object::with_capacity(scores.len());
    for (k, v) in scores {
        let real = m.get(&k).cloned().unwrap_or(k);
        unmasked.insert(real, v);
    }
    let items: Vec<Value> = match ranking {
        Value::Array(a) => a,
        Value::Str(s) => s.chars().map(|c| Value::Str(c.to_string())).collect(),
        Value::Object(o) => o.into_keys().map(Value::Str).collect(),
        other => {
            return Err(py_err(
                PyException::TypeError,
                format!("'{}' object is not iterable", other.type_name()),
            ));
        }
    };
    let mut ranking = Vec::with_capacity(items.len());
    for item in items {
        ranking.push(match item {
            Value::Str(s) => Value::Str(m.get(&s).cloned().unwrap_or(s)),
            Value::Array(_) | Value::Object(_) => {
                return Err(py_err(
                    PyException::TypeError,
                    format!("unhashable type: '{}'", item.type_name()),
                ));
            }
            other => other,
        });
    }
    Ok((Value::Object(unmasked), Value::Array(ranking), outcome))
}

/// A faithful port of the reference's `parse_rewardanything_output` (SPEC 3.1–3.5).
///
/// Returns the same values the reference returns (any JSON type), including the silent
/// empty result, or the exception the reference would raise. It never panics.
///
/// ```
/// use rewardanything_client::compat::reference::{parse_reference, ReferenceOutcome, Stage, PyException};
/// let r = parse_reference("<think>hm</think>{'scores': {'model-1': 3}, 'best-to-worse': ['model-1']}", None).unwrap();
/// assert_eq!((r.stage, r.outcome, r.reasoning.as_str()), (Stage::Repaired, ReferenceOutcome::Ok, "hm"));
/// assert_eq!(parse_reference("no json", None).unwrap().outcome, ReferenceOutcome::SilentEmpty);
/// assert_eq!(parse_reference("[1, 2]", None).unwrap_err().exception, PyException::TypeError);
/// ```
pub fn parse_reference(
    output_text: &str,
    masked2real: Option<&IndexMap<String, String>>,
) -> Result<ReferenceParse, ReferenceError> {
    let reasoning = reference_reasoning(output_text).to_string();
    let j = reference_json_text(output_text);
    let (value, stage) = recover_json(&j)?;
    let value_type = value.type_name();
    let (scores, ranking, outcome) = normalize(value, masked2real).map_err(|mut e| {
        e.stage = Some(stage);
        e
    })?;
    Ok(ReferenceParse {
        reasoning,
        scores,
        ranking,
        stage,
        outcome,
        value_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_keys_matches_regex_semantics() {
        assert_eq!(quote_keys("{ a :1, b\u{3000}: 2}"), "{\"a\":1,\"b\": 2}");
        assert_eq!(quote_keys("{a b: 1}"), "{a b: 1}");
        assert_eq!(quote_keys("{a:{b:1}}"), "{\"a\":{\"b\":1}}");
        assert_eq!(quote_keys("\"x, clear: y\""), "\"x,\"clear\": y\"");
        assert_eq!(quote_keys("{é: 1}"), "{é: 1}");
    }

    #[test]
    fn trailing_commas_single_pass() {
        assert_eq!(drop_trailing_commas(",,}", '}'), ",}");
        assert_eq!(drop_trailing_commas("[1, \n]", ']'), "[1]");
        assert_eq!(drop_trailing_commas("{a,\u{1c}}", '}'), "{a}");
    }

    #[test]
    fn fences_outside_strings() {
        assert_eq!(
            remove_fences_outside_strings("a```json\"b```\\\"```\"```c"),
            "a\"b```\\\"```\"c"
        );
    }

    #[test]
    fn think_removal_lazy_and_unclosed() {
        assert_eq!(
            remove_think_blocks("<think>a<think>b</think>c</think>d"),
            "c</think>d"
        );
        assert_eq!(remove_think_blocks("</think>x<think>"), "</think>x<think>");
        assert_eq!(remove_think_blocks("<think></think><think>x</think>y"), "y");
    }
}
