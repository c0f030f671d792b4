//! The reference server's answer shapes, byte for byte where the Python client reads them.

use axum::body::Bytes;
use futures::{Stream, StreamExt};
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
        JudgeResult::judged(j.reasoning, j.scores, j.ranking)
    }
}

impl From<&JudgeError> for JudgeResult {
    fn from(e: &JudgeError) -> Self {
        JudgeResult::failed(ErrorInfo::of(e))
    }
}

/// A JSON array written as its items come: `[`, the items of each chunk separated by
/// commas, `]`. One output chunk per input chunk, so that items ready together go out in
/// one write. An error of the source ends the array there (the caller's body fails: a
/// cut array is never mistaken for a whole one).
pub fn json_array<T: Serialize, E>(
    chunks: impl Stream<Item = Result<Vec<T>, E>>,
) -> impl Stream<Item = Result<Bytes, E>> {
    let mut first = true;
    let items = chunks.map(move |chunk| {
        chunk.map(|chunk| {
            let mut out = Vec::with_capacity(chunk.len() * 2048);
            for item in &chunk {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                // Strings, numbers and maps of them always serialize; should one ever
                // fail, its place holds `null` rather than shifting every later result.
                if let Err(e) = serde_json::to_writer(&mut out, item) {
                    tracing::error!("a result did not serialize: {e}");
                    out.extend_from_slice(b"null");
                }
            }
            Bytes::from(out)
        })
    });
    futures::stream::once(async { Ok(Bytes::from_static(b"[")) })
        .chain(items)
        .chain(futures::stream::once(async {
            Ok(Bytes::from_static(b"]"))
        }))
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
    use rewardanything_client::JudgeErrorKind;
    use rewardanything_client::parse_output;

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

    fn collect(chunks: Vec<Vec<u32>>) -> String {
        let chunks = chunks.into_iter().map(Ok::<_, std::convert::Infallible>);
        let bytes = futures::executor::block_on(
            json_array(futures::stream::iter(chunks)).collect::<Vec<_>>(),
        );
        let bytes: Vec<Bytes> = bytes.into_iter().map(|b| b.unwrap()).collect();
        String::from_utf8(bytes.concat()).unwrap()
    }

    #[test]
    fn a_streamed_array_is_valid_json_whatever_the_chunks() {
        assert_eq!(collect(vec![]), "[]");
        assert_eq!(collect(vec![vec![1]]), "[1]");
        assert_eq!(
            collect(vec![vec![1, 2], vec![3], vec![4, 5]]),
            "[1,2,3,4,5]"
        );
    }

    #[test]
    fn a_failed_item_has_empty_results_and_the_error() {
        let e = JudgeError::new(JudgeErrorKind::NoEndpoint, 0);
        let text = serde_json::to_string(&JudgeResult::from(&e)).unwrap();
        assert_eq!(
            text,
            r#"{"thoughts":"","results":{},"error":{"kind":"no_endpoint","message":"no endpoint configured (nothing was sent: no endpoint to send it to)"}}"#
        );
    }
}
