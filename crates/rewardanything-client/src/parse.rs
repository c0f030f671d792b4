//! Parsing the model's answer into a validated [`Judgment`] (SPEC section 6): it never
//! returns empty scores silently; every failure is a typed [`ParseError`]. It accepts all
//! four shapes a server can produce (see [`Completion`]). The reference's own parser,
//! quirks included, is [`crate::compat::reference::parse_reference`]; this one builds on
//! its recovery stages.
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
//!    [`crate::compat::pyjson::MAX_DEPTH`]); an integer longer than 4,300 digits →
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

use indexmap::IndexMap;

use crate::compat::pyjson::{self, Int, Value};
use crate::compat::reference::{
    CLOSE, OPEN, PyException, Stage, py_strip, recover_json, reference_reasoning, remove_fences,
    remove_fences_outside_strings, remove_think_blocks,
};
use crate::judgment::{Judgment, ParseError, ParseErrorKind, Recovery};

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
/// use rewardanything_client::{parse_completion, Completion};
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
        // Name the caller's response, and the masked name the model saw.
        let real = m.and_then(|m| m.get(missing)).unwrap_or(missing);
        let shown = if real == missing {
            format!("{real:?}")
        } else {
            format!("{real:?} (shown to the model as {missing:?})")
        };
        return Err(err(
            ParseErrorKind::Incomplete,
            format!("{shown} has no score"),
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
/// [`ParseOptions`] (the rules are SPEC section 6: every failure is a typed
/// [`ParseError`], never empty scores).
///
/// ```
/// use indexmap::IndexMap;
/// use rewardanything_client::{parse_completion, Completion};
/// use rewardanything_client::ParseErrorKind;
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
/// use rewardanything_client::{parse_completion_with, Completion, ParseOptions};
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
/// use rewardanything_client::parse_output;
/// use rewardanything_client::ParseErrorKind;
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
}
