//! Parsing the model's answer (SPEC section 3), in two layers.
//!
//! * **Reference layer** ([`parse_reference`]): a faithful port of the Python reference's
//!   `parse_rewardanything_output`, quirks included: Python whitespace stripping, the
//!   first-`<think>`/first-`</think>` reasoning, lazy think-block removal, fence markers
//!   deleted everywhere, the `direct` → `repaired` → `brackets` recovery with Python's
//!   JSON dialect ([`crate::pyjson`]), normalisation and one-step unmasking. It returns
//!   raw values of any type, the silent empty results, and — instead of raising — a
//!   [`ReferenceError`] naming the Python exception the reference would raise. Use it
//!   when results must match the Python package exactly.
//! * **Strict layer** ([`parse_output`], [`parse_completion`]): the behaviour this
//!   project requires (SPEC section 6, issue 2). It never returns empty scores silently;
//!   every failure is a typed [`ParseError`]. It accepts all four shapes a server can
//!   produce (see [`Completion`]).
//!
//! # The strict layer in detail
//!
//! 1. **Reasoning**: the completion's separate `reasoning` field when non-empty (vLLM's
//!    `message.reasoning`, llama.cpp's `reasoning_content`); otherwise the reference's
//!    think section; when that is empty and the text has a `</think>` with no `<think>`
//!    before it (a chat template that pre-fills `<think>`), the stripped text before the
//!    first `</think>`.
//! 2. **JSON recovery**: the reference's three stages, with two improvements. Code-fence
//!    markers are removed only outside JSON strings (a key such as ``"model-2```json"``
//!    keeps its backticks, vector `fence-marker-inside-string`); if that finds no object,
//!    the reference's fence removal is used. If still no usable object is found and the
//!    text has a bare `</think>`, the stages are run again on the text after it (vector
//!    `close-think-only-with-braces`, which the reference leaves empty, is recovered;
//!    this is the "better recovery" the SPEC allows). Finally, when no stage found any
//!    JSON value, the text outside think blocks (and before an unclosed `<think>`) is
//!    scanned for balanced `{…}` spans: if exactly one parses as an object with `scores`
//!    and a ranking key, it is used (vector `text-after-with-braces`, where prose after
//!    the answer holds stray braces, is recovered); two such objects are ambiguous and
//!    stay `no_json_object` (vector `multiple-json-objects`).
//! 3. **Validation**, in this order (the first failure wins):
//!    no object recovered → `no_json_object` (also for nesting deeper than
//!    [`crate::pyjson::MAX_DEPTH`]); an integer longer than 4,300 digits →
//!    `non_finite_number`; not an object → `not_an_object` (falsy values such as `[]` or
//!    `null` included); no `scores` or an empty `scores` object → `missing_scores`;
//!    neither `best-to-worst` nor `best-to-worse` → `missing_ranking` (`best-to-worst`
//!    wins when both exist); `scores` not an object, or any score not an int/float (a
//!    bool, string, null… is not a number) → `invalid_scores`; NaN, ±Infinity, overflow
//!    to infinity, underflow to zero/subnormal, or an integer beyond ±2^53 (not exact in
//!    an `f64`; every integer outside `i64` included) →
//!    `non_finite_number`; with a non-empty mapping, two keys unmasking to the same name
//!    → `unmask_collision`; the ranking not an array of strings → `invalid_ranking`.
//! 4. **Kept but flagged** (issue 2 allows either the reference's value or a typed error
//!    where the reference's value fails its checks; this port keeps the value by default,
//!    so every `same` and `different` vector is reproduced exactly): with a non-empty
//!    mapping a masked name without a score, scores outside `1..=5`, a ranking with
//!    unknown, repeated or missing names, and a ranking whose scores increase somewhere
//!    all give `consistent: false`. [`ParseOptions::strict`] turns these into errors:
//!    `incomplete` for an unscored masked name or an unknown name in the ranking,
//!    `invalid_ranking` for repeated or missing names, `invalid_scores` for the range.
//! 5. **Truncation**: when the completion's `finish_reason` is `"length"` and any error
//!    occurred, the error kind becomes `truncated`.
//!
//! An empty mapping means "no unmasking" (SPEC P14); names the mapping does not know
//! are kept as written (SPEC 3.5, vector `unmask-partial`).

use std::borrow::Cow;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::judgment::{Judgment, ParseError, ParseErrorKind, Recovery};
use crate::pyjson::{self, ErrorKind as JsonErrorKind, Int, Object, Value};

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

// ---------------------------------------------------------------------------------
// Python text helpers (SPEC 3.1)
// ---------------------------------------------------------------------------------

/// Whether `c` is whitespace for Python's `str.strip()` and regex `\s` (SPEC 3.1).
///
/// Unlike [`char::is_whitespace`], U+001C..U+001F are included.
///
/// ```
/// use rewardanything_client::parse::is_py_space;
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
/// assert_eq!(rewardanything_client::parse::py_strip("\u{1c} x \u{feff}"), "x \u{feff}");
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
/// use rewardanything_client::parse::reference_reasoning;
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
/// use rewardanything_client::parse::remove_think_blocks;
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
/// use rewardanything_client::parse::remove_fences;
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
/// use rewardanything_client::parse::remove_fences_outside_strings;
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
/// use rewardanything_client::parse::repair;
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
/// use rewardanything_client::parse::{recover_json, Stage};
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
/// use rewardanything_client::parse::{parse_reference, ReferenceOutcome, Stage, PyException};
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

// ---------------------------------------------------------------------------------
// Strict layer (SPEC 6, issue 2)
// ---------------------------------------------------------------------------------

/// A chat completion's message as a server returns it.
///
/// The four shapes: (1) `content` with an inline `<think>…</think>`; (2) `content` with
/// the JSON only and the reasoning in `reasoning` (vLLM `message.reasoning`, older vLLM
/// and llama.cpp `message.reasoning_content`); (3) `content` with only `</think>` (the
/// chat template pre-filled `<think>`); (4) no reasoning at all.
///
/// ```
/// use rewardanything_client::parse::{parse_completion, Completion};
/// let c = Completion::new(r#"{"scores": {"a": 4}, "best-to-worst": ["a"]}"#)
///     .with_reasoning(Some("thinking…"))
///     .with_finish_reason(Some("stop"));
/// assert_eq!(parse_completion(&c, None).unwrap().reasoning, "thinking…");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Completion<'a> {
    /// `message.content`.
    pub content: &'a str,
    /// `message.reasoning` or `message.reasoning_content`, when the server split it off.
    pub reasoning: Option<&'a str>,
    /// `choices[i].finish_reason` (`"stop"`, `"length"`, …).
    pub finish_reason: Option<&'a str>,
}

impl<'a> Completion<'a> {
    /// A completion with only content.
    pub fn new(content: &'a str) -> Self {
        Completion {
            content,
            reasoning: None,
            finish_reason: None,
        }
    }

    /// Sets the separate reasoning text.
    pub fn with_reasoning(mut self, reasoning: Option<&'a str>) -> Self {
        self.reasoning = reasoning;
        self
    }

    /// Sets the finish reason.
    pub fn with_finish_reason(mut self, finish_reason: Option<&'a str>) -> Self {
        self.finish_reason = finish_reason;
        self
    }
}

/// Which of issue 2's semantic checks are errors rather than flags.
///
/// The default keeps the reference's value wherever it only fails these checks and sets
/// [`Judgment::consistent`] to `false` (so every `same` and `different` vector is
/// reproduced exactly: the SPEC's own suggested value for `fence-marker-inside-string`
/// leaves a response unscored, and its `same` vectors include scores of 0.75 and
/// rankings with unknown or repeated names). [`ParseOptions::strict`] makes each an
/// error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ParseOptions {
    /// With a non-empty mapping, the answer must name exactly the mapping's names: a
    /// name without a score is `incomplete`, a scored name the mapping does not have
    /// (an invented one, a `model-9` for two responses) is `invalid_scores`.
    pub require_complete: bool,
    /// A ranking that is not a permutation of the scored names is an error:
    /// `incomplete` for unknown names, `invalid_ranking` for duplicates or missing names.
    pub require_permutation: bool,
    /// A score outside `1..=5` is `invalid_scores`.
    pub enforce_score_range: bool,
}

impl ParseOptions {
    /// Every check an error.
    pub fn strict() -> Self {
        ParseOptions {
            require_complete: true,
            require_permutation: true,
            enforce_score_range: true,
        }
    }
}

fn err(kind: ParseErrorKind, message: impl Into<String>) -> ParseError {
    ParseError::new(kind, message)
}

/// The strict layer's JSON recovery; `salvaged` when beyond the reference's stages.
fn recover_strict(text: &str) -> Result<(Value, Stage, bool), ParseError> {
    let t = remove_think_blocks(text);
    let primary = if t.contains("```") {
        let careful = remove_fences_outside_strings(&t);
        match recover_json(py_strip(&careful)) {
            Ok((v @ Value::Object(_), stage)) if stage != Stage::None => Ok((v, stage)),
            _ => recover_json(py_strip(&remove_fences(&t))),
        }
    } else {
        recover_json(py_strip(&t))
    };
    let usable = matches!(&primary, Ok((Value::Object(o), s)) if *s != Stage::None && o.contains_key("scores"));
    if !usable
        && let Some(rest) = after_bare_close(text)
        && let Ok((v @ Value::Object(_), stage)) = recover_json(py_strip(
            &remove_fences_outside_strings(&remove_think_blocks(rest)),
        ))
        && stage != Stage::None
        && v.as_object().is_some_and(|o| o.contains_key("scores"))
    {
        return Ok((v, stage, true));
    }
    if matches!(&primary, Ok((_, Stage::None))) {
        // Only text outside think blocks: JSON after an unclosed `<think>` may be a draft.
        let outside = t.find(OPEN).map_or(&*t, |i| &t[..i]);
        if let Some(v) = single_answer_object(&remove_fences_outside_strings(outside)) {
            return Ok((v, Stage::Brackets, true));
        }
    }
    match primary {
        Ok((v, stage)) => Ok((v, stage, false)),
        Err(e) => Err(match e.exception {
            PyException::ValueError => err(ParseErrorKind::NonFiniteNumber, e.message),
            _ => err(
                ParseErrorKind::NoJsonObject,
                format!("nesting too deep: {}", e.message),
            ),
        }),
    }
}

/// The one balanced `{…}` span in `text` that parses as an object with `scores` and a
/// ranking key; `None` when there is no such span or more than one (ambiguous).
///
/// Spans are found left to right without overlapping (string-aware brace matching), so
/// this is linear in the length of `text`.
fn single_answer_object(text: &str) -> Option<Value> {
    let b = text.as_bytes();
    let mut found = None;
    let mut i = 0;
    while let Some(start) = b[i..].iter().position(|&c| c == b'{').map(|p| p + i) {
        let (mut depth, mut in_str, mut j, mut end) = (0usize, false, start, None);
        while j < b.len() {
            match b[j] {
                b'\\' if in_str => j += 1,
                b'"' => in_str = !in_str,
                b'{' if !in_str => depth += 1,
                b'}' if !in_str => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(j);
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        let Some(end) = end else { break };
        if let Ok(Value::Object(o)) = pyjson::loads(&text[start..=end])
            && o.contains_key("scores")
            && (o.contains_key("best-to-worst") || o.contains_key("best-to-worse"))
        {
            if found.is_some() {
                return None;
            }
            found = Some(Value::Object(o));
        }
        i = end + 1;
    }
    found
}

/// The text after the first `</think>` when no `<think>` comes before it.
fn after_bare_close(text: &str) -> Option<&str> {
    let b = text.find(CLOSE)?;
    if text[..b].contains(OPEN) {
        return None;
    }
    Some(&text[b + CLOSE.len()..])
}

fn strict_reasoning(c: &Completion<'_>) -> String {
    if let Some(r) = c.reasoning.map(py_strip).filter(|r| !r.is_empty()) {
        return r.to_string();
    }
    let r = reference_reasoning(c.content);
    if !r.is_empty() {
        return r.to_string();
    }
    match c.content.find(CLOSE) {
        Some(b) if !c.content[..b].contains(OPEN) => py_strip(&c.content[..b]).to_string(),
        _ => String::new(),
    }
}

/// An int or float score as `f64`; `None` for NaN, infinities, underflow and integers
/// an `f64` cannot hold exactly (beyond ±2^53, including every big int).
fn score_number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(Int::Small(i)) if i.unsigned_abs() <= 1 << 53 => Some(*i as f64),
        Value::Float(f) if f.value.is_finite() && !f.underflow => Some(f.value),
        _ => None,
    }
}

/// Validated scores, ranking and the consistency flag.
type Validated = (IndexMap<String, f64>, Vec<String>, bool);

fn validate(
    value: Value,
    masked2real: Option<&IndexMap<String, String>>,
    opts: &ParseOptions,
) -> Result<Validated, ParseError> {
    let Value::Object(mut obj) = value else {
        return Err(err(
            ParseErrorKind::NotAnObject,
            format!("the JSON value is a {}, not an object", value.type_name()),
        ));
    };
    let Some(scores) = obj.swap_remove("scores") else {
        return Err(err(
            ParseErrorKind::MissingScores,
            "the JSON object has no \"scores\"",
        ));
    };
    let Some(ranking) = obj
        .swap_remove("best-to-worst")
        .or_else(|| obj.swap_remove("best-to-worse"))
    else {
        return Err(err(
            ParseErrorKind::MissingRanking,
            "the JSON object has no \"best-to-worst\"",
        ));
    };
    let Value::Object(scores) = scores else {
        return Err(err(
            ParseErrorKind::InvalidScores,
            format!("\"scores\" is a {}, not an object", scores.type_name()),
        ));
    };
    if scores.is_empty() {
        return Err(err(ParseErrorKind::MissingScores, "\"scores\" is empty"));
    }
    if let Some((k, v)) = scores
        .iter()
        .find(|(_, v)| !matches!(v, Value::Int(_) | Value::Float(_)))
    {
        return Err(err(
            ParseErrorKind::InvalidScores,
            format!("the score of {k:?} is a {}, not a number", v.type_name()),
        ));
    }
    let mut numbers = Vec::with_capacity(scores.len());
    for (k, v) in &scores {
        let Some(x) = score_number(v) else {
            return Err(err(
                ParseErrorKind::NonFiniteNumber,
                format!("the score of {k:?} is not a finite number of usable size"),
            ));
        };
        if opts.enforce_score_range && !(1.0..=5.0).contains(&x) {
            return Err(err(
                ParseErrorKind::InvalidScores,
                format!("the score of {k:?} ({x}) is outside 1..=5"),
            ));
        }
        numbers.push(x);
    }
    let m = masked2real.filter(|m| !m.is_empty());
    // A name the request does not have (an invented `zzz`, a `model-9` for two
    // responses) is never a reward to hand out: an error in strict mode, a flag otherwise.
    let unknown_scored = m.and_then(|m| scores.keys().find(|k| !m.contains_key(k.as_str())));
    if let (true, Some(name)) = (opts.require_complete, unknown_scored) {
        return Err(err(
            ParseErrorKind::InvalidScores,
            format!("the scored name {name:?} is not one of the request's responses"),
        ));
    }
    let mut out: IndexMap<String, f64> = IndexMap::with_capacity(scores.len());
    for (k, x) in scores.keys().zip(numbers) {
        let real = m.and_then(|m| m.get(k)).unwrap_or(k);
        if out.insert(real.clone(), x).is_some() {
            return Err(err(
                ParseErrorKind::UnmaskCollision,
                format!("two scored names map to {real:?} after unmasking"),
            ));
        }
    }
    let names = ranking_names(ranking, m)?;
    let missing = m.and_then(|m| m.keys().find(|k| !scores.contains_key(k.as_str())));
    if let (true, Some(missing)) = (opts.require_complete, missing) {
        return Err(err(
            ParseErrorKind::Incomplete,
            format!("{missing:?} has no score"),
        ));
    }
    let unknown = names.iter().find(|n| !out.contains_key(n.as_str()));
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    let duplicate = names.iter().find(|n| !seen.insert(n.as_str()));
    let unranked = out.keys().find(|k| !seen.contains(k.as_str()));
    let permutation = unknown.is_none() && duplicate.is_none() && unranked.is_none();
    if opts.require_permutation && !permutation {
        let (kind, problem) = match (unknown, duplicate, unranked) {
            (Some(n), _, _) => (
                ParseErrorKind::Incomplete,
                format!("ranks {n:?}, which is not a scored response"),
            ),
            (_, Some(n), _) => (ParseErrorKind::InvalidRanking, format!("ranks {n:?} twice")),
            (_, _, n) => (
                ParseErrorKind::InvalidRanking,
                format!("leaves out {:?}", n.map_or("", String::as_str)),
            ),
        };
        return Err(err(
            kind,
            format!("the ranking is not a permutation of the scored names: it {problem}"),
        ));
    }
    let in_range = out.values().all(|x| (1.0..=5.0).contains(x));
    let ordered = names
        .windows(2)
        .all(|w| match (out.get(&w[0]), out.get(&w[1])) {
            (Some(a), Some(b)) => a >= b,
            _ => false,
        });
    let consistent =
        permutation && in_range && ordered && missing.is_none() && unknown_scored.is_none();
    Ok((out, names, consistent))
}

/// The ranking's names, unmasked.
fn ranking_names(
    ranking: Value,
    m: Option<&IndexMap<String, String>>,
) -> Result<Vec<String>, ParseError> {
    let Value::Array(items) = ranking else {
        return Err(err(
            ParseErrorKind::InvalidRanking,
            format!("the ranking is a {}, not an array", ranking.type_name()),
        ));
    };
    let mut names = Vec::with_capacity(items.len());
    for item in items {
        let Value::Str(s) = item else {
            return Err(err(
                ParseErrorKind::InvalidRanking,
                format!("the ranking holds a {}, not only strings", item.type_name()),
            ));
        };
        names.push(match m.and_then(|m| m.get(&s)) {
            Some(real) => real.clone(),
            None => s,
        });
    }
    Ok(names)
}

/// Parses a completion into a validated [`Judgment`] with the default
/// [`ParseOptions`]; see the [module documentation](self) for every rule.
///
/// ```
/// use indexmap::IndexMap;
/// use rewardanything_client::parse::{parse_completion, Completion};
/// use rewardanything_client::judgment::ParseErrorKind;
/// let m: IndexMap<String, String> = [("model-1", "alice"), ("model-2", "bob")]
///     .into_iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
/// // Shape 3: the template pre-filled <think>.
/// let c = Completion::new("Bob is better.</think>{\"scores\": {\"model-1\": 2, \"model-2\": 4}, \"best-to-worst\": [\"model-2\", \"model-1\"]}");
/// let j = parse_completion(&c, Some(&m)).unwrap();
/// assert_eq!(j.reasoning, "Bob is better.");
/// assert_eq!(j.ranking, ["bob", "alice"]);
/// // Cut off inside the think section.
/// let c = Completion::new("<think>Let me see").with_finish_reason(Some("length"));
/// assert_eq!(parse_completion(&c, Some(&m)).unwrap_err().kind, ParseErrorKind::Truncated);
/// ```
pub fn parse_completion(
    completion: &Completion<'_>,
    masked2real: Option<&IndexMap<String, String>>,
) -> Result<Judgment, ParseError> {
    parse_completion_with(completion, masked2real, &ParseOptions::default())
}

/// [`parse_completion`] with explicit [`ParseOptions`].
///
/// ```
/// use rewardanything_client::parse::{parse_completion_with, Completion, ParseOptions};
/// let text = r#"{"scores": {"a": 0.5, "b": 2}, "best-to-worst": ["b", "a"]}"#;
/// let c = Completion::new(text);
/// assert!(!parse_completion_with(&c, None, &ParseOptions::default()).unwrap().consistent);
/// assert!(parse_completion_with(&c, None, &ParseOptions::strict()).is_err());
/// ```
pub fn parse_completion_with(
    completion: &Completion<'_>,
    masked2real: Option<&IndexMap<String, String>>,
    opts: &ParseOptions,
) -> Result<Judgment, ParseError> {
    let result = recover_strict(completion.content).and_then(|(value, stage, salvaged)| {
        if stage == Stage::None {
            return Err(err(
                ParseErrorKind::NoJsonObject,
                "no JSON object found in the output",
            ));
        }
        let (scores, ranking, consistent) = validate(value, masked2real, opts)?;
        let recovery = if stage == Stage::Direct && !salvaged {
            Recovery::Clean
        } else {
            Recovery::Repaired
        };
        Ok(Judgment {
            scores,
            ranking,
            reasoning: strict_reasoning(completion),
            raw_output: completion.content.to_string(),
            consistent,
            recovery,
        })
    });
    match result {
        Err(e) if completion.finish_reason == Some("length") => Err(err(
            ParseErrorKind::Truncated,
            format!(
                "the output hit the token limit (finish_reason \"length\"): {}",
                e.message
            ),
        )),
        other => other,
    }
}

/// Parses a model output text (shapes 1, 3 and 4 of [`Completion`]) into a validated
/// [`Judgment`]; `masked2real` maps `model-N` back to the caller's names.
///
/// ```
/// use rewardanything_client::parse::parse_output;
/// use rewardanything_client::judgment::ParseErrorKind;
/// let j = parse_output("```json\n{\"scores\": {\"x\": 3}, \"best-to-worst\": [\"x\"]}\n```", None).unwrap();
/// assert_eq!(j.scores["x"], 3.0);
/// assert_eq!(parse_output("{\"scores\": {\"x\": NaN}, \"best-to-worst\": [\"x\"]}", None).unwrap_err().kind,
///            ParseErrorKind::NonFiniteNumber);
/// ```
pub fn parse_output(
    output_text: &str,
    masked2real: Option<&IndexMap<String, String>>,
) -> Result<Judgment, ParseError> {
    parse_completion(&Completion::new(output_text), masked2real)
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
    fn single_answer_object_needs_exactly_one() {
        let a = r#"{"scores": {"a": 1}, "best-to-worst": ["a"]}"#;
        assert!(single_answer_object(&format!("x {{y}} {a} {{z: \"}}\"}}")).is_some());
        assert!(single_answer_object(&format!("{a}\n{a}")).is_none());
        assert!(single_answer_object(&format!("{a} then {{ unclosed")).is_some());
        assert!(single_answer_object(r#"{"scores": {"a": 1}}"#).is_none());
        assert!(
            single_answer_object(r#"{"s": "}{", "scores": {}, "best-to-worse": []}"#).is_some()
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
