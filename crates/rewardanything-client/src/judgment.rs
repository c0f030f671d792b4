//! The validated result of parsing a RewardAnything answer, and the typed parse errors.
//!
//! See [`crate::parse`] for how a [`Judgment`] is produced and which checks run.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// How much recovery the answer needed before it could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Recovery {
    /// The JSON text parsed as it was (after removing think blocks and code fences).
    Clean,
    /// A repair was needed: the reference's `repaired` or `brackets` stage, or a salvage
    /// this port adds (the JSON after a bare `</think>`).
    Repaired,
}

/// A validated verdict of the reward model.
///
/// ```
/// use rewardanything_client::parse_output;
/// let j = parse_output(
///     "<think>B is shorter.</think>{\"scores\": {\"model-1\": 2, \"model-2\": 5}, \"best-to-worst\": [\"model-2\", \"model-1\"]}",
///     None,
/// ).unwrap();
/// assert_eq!(j.scores["model-2"], 5.0);
/// assert_eq!(j.ranking, ["model-2", "model-1"]);
/// assert_eq!(j.reasoning, "B is shorter.");
/// assert!(j.consistent);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Judgment {
    /// Caller's name → score. Order: the first-insertion order of the unmasked names as
    /// the reference produces it (the order of the model's JSON keys); use
    /// [`Judgment::reorder`] to put it in the caller's response order.
    pub scores: IndexMap<String, f64>,
    /// Names from best to worst, unmasked.
    pub ranking: Vec<String>,
    /// The model's reasoning (the think section), Python-stripped; may be empty.
    pub reasoning: String,
    /// The model's output text, unchanged.
    pub raw_output: String,
    /// `true` when the judgment passes every semantic check of issue 2: the ranking is a
    /// permutation of the scored names, the scores do not increase along it, every score
    /// is within `1..=5`, and (with a mapping) every masked response has a score. A
    /// judgment failing any of these is kept (as the reference keeps it) and flagged
    /// here; `parse::ParseOptions::strict` makes them errors instead.
    pub consistent: bool,
    /// Which recovery was needed.
    pub recovery: Recovery,
}

impl Judgment {
    /// Reorders `scores` so the given names come first, in the given order; names not
    /// listed keep their relative order after them, and unknown names are ignored.
    ///
    /// ```
    /// use rewardanything_client::parse_output;
    /// let mut j = parse_output(r#"{"scores": {"b": 1, "a": 5}, "best-to-worst": ["a", "b"]}"#, None).unwrap();
    /// j.reorder(["a", "b", "zzz"]);
    /// assert_eq!(j.scores.keys().collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn reorder<'a>(&mut self, keys: impl IntoIterator<Item = &'a str>) {
        let mut next = 0;
        for k in keys {
            if let Some(i) = self.scores.get_index_of(k)
                && i >= next
            {
                self.scores.move_index(i, next);
                next += 1;
            }
        }
    }

    /// The score of the best-ranked name, if any.
    pub fn best(&self) -> Option<(&str, f64)> {
        let name = self.ranking.first()?;
        self.scores.get(name).map(|s| (name.as_str(), *s))
    }
}

/// Why an answer could not be turned into a [`Judgment`] (SPEC section 6, issue 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// No JSON object could be recovered (nothing found, several objects, invalid JSON,
    /// nesting too deep).
    NoJsonObject,
    /// The recovered top-level value is not an object.
    NotAnObject,
    /// The object has no `scores`.
    MissingScores,
    /// The object has neither `best-to-worst` nor `best-to-worse`.
    MissingRanking,
    /// `scores` is not an object of numbers (strings, bools, null, arrays… are rejected).
    InvalidScores,
    /// The ranking is not an array of strings.
    InvalidRanking,
    /// A score is NaN or infinite, overflowed or underflowed, or is an integer beyond
    /// ±2^53 (not exact in an `f64`), or an integer literal over 4,300 digits (SPEC
    /// `NonFiniteOrOversizedNumber`).
    NonFiniteNumber,
    /// Two of the model's names map to the same caller name after unmasking.
    UnmaskCollision,
    /// Valid JSON that does not score every masked response (or, in strict mode, ranks
    /// unknown names).
    Incomplete,
    /// The server stopped at its token limit (`finish_reason: "length"`) and nothing
    /// valid was recovered.
    Truncated,
}

impl ParseErrorKind {
    /// The snake_case name used in JSON output, e.g. `"no_json_object"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParseErrorKind::NoJsonObject => "no_json_object",
            ParseErrorKind::NotAnObject => "not_an_object",
            ParseErrorKind::MissingScores => "missing_scores",
            ParseErrorKind::MissingRanking => "missing_ranking",
            ParseErrorKind::InvalidScores => "invalid_scores",
            ParseErrorKind::InvalidRanking => "invalid_ranking",
            ParseErrorKind::NonFiniteNumber => "non_finite_number",
            ParseErrorKind::UnmaskCollision => "unmask_collision",
            ParseErrorKind::Incomplete => "incomplete",
            ParseErrorKind::Truncated => "truncated",
        }
    }
}

impl std::fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed parse failure.
///
/// ```
/// use rewardanything_client::{ParseErrorKind, parse_output};
/// let e = parse_output("no json here", None).unwrap_err();
/// assert_eq!(e.kind, ParseErrorKind::NoJsonObject);
/// assert_eq!(serde_json::to_string(&e.kind).unwrap(), "\"no_json_object\"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
#[non_exhaustive]
pub struct ParseError {
    /// The category.
    pub kind: ParseErrorKind,
    /// A human-readable explanation.
    pub message: String,
}

impl ParseError {
    /// Builds an error.
    pub fn new(kind: ParseErrorKind, message: impl Into<String>) -> Self {
        ParseError {
            kind,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorder_moves_known_names_first() {
        let mut j = Judgment {
            scores: [("c", 1.0), ("a", 2.0), ("b", 3.0)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ranking: vec![],
            reasoning: String::new(),
            raw_output: String::new(),
            consistent: true,
            recovery: Recovery::Clean,
        };
        j.reorder(["b", "x", "a"]);
        assert_eq!(j.scores.keys().collect::<Vec<_>>(), ["b", "a", "c"]);
        j.reorder(["a", "a", "c", "b"]);
        assert_eq!(j.scores.keys().collect::<Vec<_>>(), ["a", "c", "b"]);
        assert_eq!(j.scores["b"], 3.0);
    }

    #[test]
    fn kinds_serialize_snake_case() {
        for k in [
            ParseErrorKind::NonFiniteNumber,
            ParseErrorKind::UnmaskCollision,
            ParseErrorKind::Truncated,
        ] {
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::String(k.as_str().into())
            );
        }
    }
}
