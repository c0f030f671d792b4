//! The reference server's answer shapes, byte for byte where the Python client reads them.

use indexmap::IndexMap;
use rewardanything_client::{JudgeError, Judgment};
use serde::{Serialize, Serializer};

use crate::error::ErrorInfo;

/// One result: `{"thoughts", "results": {"scores", "best-to-worst"}}`, or for a failed
/// batch item `{"thoughts": "", "results": {}, "error": {"kind", "message"}}`.
#[derive(Debug, Serialize)]
pub struct JudgeResult {
    thoughts: String,
    results: Results,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorInfo>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Results {
    Judged {
        #[serde(serialize_with = "python_numbers")]
        scores: IndexMap<String, f64>,
        #[serde(rename = "best-to-worst")]
        ranking: Vec<String>,
    },
    Failed {},
}

impl JudgeResult {
    /// A judged item from its parts (a job's stored result line).
    pub fn judged(thoughts: String, scores: IndexMap<String, f64>, ranking: Vec<String>) -> Self {
        JudgeResult {
            thoughts,
            results: Results::Judged { scores, ranking },
            error: None,
        }
    }

    /// A failed item: empty results and the error.
    pub fn failed(error: ErrorInfo) -> Self {
        JudgeResult {
            thoughts: String::new(),
            results: Results::Failed {},
            error: Some(error),
        }
    }
}

impl From<Judgment> for JudgeResult {
    fn from(j: Judgment) -> Self {
        JudgeResult {
            thoughts: j.reasoning,
            results: Results::Judged {
                scores: j.scores,
                ranking: j.ranking,
            },
            error: None,
        }
    }
}

impl From<&JudgeError> for JudgeResult {
    fn from(e: &JudgeError) -> Self {
        JudgeResult {
            thoughts: String::new(),
            results: Results::Failed {},
            error: Some(ErrorInfo::of(e)),
        }
    }
}

/// Whole scores as integers (`5`, as Python's json writes the model's `5`), others as
/// floats.
fn python_numbers<S: Serializer>(scores: &IndexMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(scores.len()))?;
    for (name, &score) in scores {
        if score.fract() == 0.0 && score.abs() < 9_007_199_254_740_992.0 {
            map.serialize_entry(name, &(score as i64))?;
        } else {
            map.serialize_entry(name, &score)?;
        }
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewardanything_client::error::JudgeErrorKind;
    use rewardanything_client::parse::parse_output;

    #[test]
    fn whole_scores_are_integers_others_floats() {
        let j = parse_output(
            r#"{"scores": {"b": 4.5, "a": 5, "c": 1.0}, "best-to-worst": ["a", "b", "c"]}"#,
            None,
        )
        .unwrap();
        let text = serde_json::to_string(&JudgeResult::from(j)).unwrap();
        assert_eq!(
            text,
            r#"{"thoughts":"","results":{"scores":{"b":4.5,"a":5,"c":1},"best-to-worst":["a","b","c"]}}"#
        );
    }

    #[test]
    fn a_failed_item_has_empty_results_and_the_error() {
        let e = JudgeError::new(JudgeErrorKind::NoEndpoint, 0);
        let text = serde_json::to_string(&JudgeResult::from(&e)).unwrap();
        assert_eq!(
            text,
            r#"{"thoughts":"","results":{},"error":{"kind":"no_endpoint","message":"no endpoint configured (after 0 attempts)"}}"#
        );
    }
}
