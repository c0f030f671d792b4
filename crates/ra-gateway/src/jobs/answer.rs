//! A finished job's answer: `results.jsonl` (one `ra_batch` line per request, in order)
//! streamed as the reference's JSON array of `{"thoughts", "results"}`, one line at a
//! time (memory stays one result line, whatever the job's size).

use axum::body::Bytes;
use futures::Stream;
use indexmap::IndexMap;
use ra_batch::lines::{Body, LineReader};
use serde::Deserialize;
use tokio::io::BufReader;

use crate::error::ErrorInfo;
use crate::wire::{self, JudgeResult};

/// The fields of a result line the answer needs (names are the caller's: the client
/// unmasked them before the line was written).
#[derive(Deserialize)]
struct Stored {
    #[serde(default)]
    scores: Option<IndexMap<String, f64>>,
    #[serde(default)]
    ranking: Option<Vec<String>>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    error: Option<StoredError>,
}

#[derive(Deserialize)]
struct StoredError {
    kind: String,
    message: String,
}

/// One item of the answer from one result line; an unreadable line (the file was
/// edited) is a failed item in its place, so the array keeps one item per request.
fn item(body: &Body, index: usize) -> JudgeResult {
    let unreadable = |why: String| {
        JudgeResult::failed(ErrorInfo {
            kind: "internal".into(),
            message: format!("result {index} cannot be read: {why}"),
        })
    };
    let Body::Bytes(bytes) = body else {
        return unreadable("too long".into());
    };
    match serde_json::from_slice::<Stored>(bytes) {
        Ok(Stored { error: Some(e), .. }) => JudgeResult::failed(ErrorInfo {
            kind: e.kind,
            message: e.message,
        }),
        Ok(Stored {
            scores: Some(scores),
            ranking: Some(ranking),
            reasoning,
            ..
        }) => JudgeResult::judged(reasoning.unwrap_or_default(), scores, ranking),
        Ok(_) => unreadable("neither a judgment nor an error".into()),
        Err(e) => unreadable(e.to_string()),
    }
}

/// The JSON array, one result line at a time (a read error ends the body there).
pub fn stream(
    file: tokio::fs::File,
    max_line: usize,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let lines = LineReader::new(BufReader::with_capacity(1 << 16, file), max_line);
    let items = futures::stream::try_unfold((lines, 0usize), |(mut lines, n)| async move {
        let line = lines.next_line().await?;
        Ok(line.map(|line| (vec![item(&line.body, n)], (lines, n + 1))))
    });
    wire::json_array(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn lines_become_the_reference_array_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("results.jsonl");
        let lines = [
            r#"{"index":0,"id":null,"scores":{"zulu":5.0,"alpha":2.5},"ranking":["zulu","alpha"],"reasoning":"r","consistent":true,"error":null}"#,
            r#"{"index":1,"id":null,"scores":null,"ranking":null,"reasoning":null,"consistent":null,"error":{"kind":"timeout","message":"slow"}}"#,
            "not json",
        ];
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        let file = tokio::fs::File::open(&path).await.expect("open");
        let chunks: Vec<Bytes> = stream(file, 1 << 20)
            .map(|c| c.expect("chunk"))
            .collect()
            .await;
        let text: Vec<u8> = chunks.concat();
        let value: serde_json::Value = serde_json::from_slice(&text).expect("one JSON array");
        assert_eq!(
            value[0],
            serde_json::json!({"thoughts": "r", "results": {"scores": {"zulu": 5, "alpha": 2.5}, "best-to-worst": ["zulu", "alpha"]}})
        );
        assert!(
            String::from_utf8_lossy(&text).contains(r#""scores":{"zulu":5,"alpha":2.5}"#),
            "the caller's order: {}",
            String::from_utf8_lossy(&text)
        );
        assert_eq!(
            value[1],
            serde_json::json!({"thoughts": "", "results": {}, "error": {"kind": "timeout", "message": "slow"}})
        );
        assert_eq!(value[2]["error"]["kind"], "internal");
        assert_eq!(value.as_array().map(Vec::len), Some(3));
    }

    #[tokio::test]
    async fn no_lines_is_an_empty_array() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("results.jsonl");
        std::fs::write(&path, "").expect("write");
        let file = tokio::fs::File::open(&path).await.expect("open");
        let chunks: Vec<Bytes> = stream(file, 1024)
            .map(|c| c.expect("chunk"))
            .collect()
            .await;
        assert_eq!(chunks.concat(), b"[]");
    }
}
