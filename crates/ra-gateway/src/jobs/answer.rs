//! A finished job's answer: `results.jsonl` (one `ra_batch` line per request, in order)
//! streamed as the reference's JSON array of `{"thoughts", "results"}`, one line at a
//! time (memory stays one result line, whatever the job's size).

use axum::body::Bytes;
use futures::Stream;
use ra_batch::results::{ResultLineError, ResultReader, StoredResult};
use tokio::io::BufReader;

use crate::error::ErrorInfo;
use crate::wire::{self, JudgeResult};

/// One item of the answer from one result line (names are the caller's: the client
/// unmasked them before the line was written); a line `ra_batch` cannot read (the file
/// was edited) is a failed item in its place naming the line, so the array keeps one
/// item per request.
fn item(line: Result<StoredResult, ResultLineError>) -> JudgeResult {
    match line.map(|l| l.outcome) {
        Ok(Ok(j)) => JudgeResult::judged(j.reasoning, j.scores, j.ranking),
        Ok(Err(e)) => JudgeResult::failed(ErrorInfo {
            kind: e.kind,
            message: e.message,
        }),
        Err(e) => JudgeResult::failed(ErrorInfo {
            kind: "internal".into(),
            message: e.to_string(),
        }),
    }
}

/// The JSON array, one result line at a time (a read error ends the body there).
pub fn stream(
    file: tokio::fs::File,
    max_line: usize,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let lines = ResultReader::new(BufReader::with_capacity(1 << 16, file), max_line);
    let items = futures::stream::try_unfold(lines, |mut lines| async move {
        let line = match lines.next().await {
            Ok(None) => return Ok(None),
            Err(ResultLineError::Io(e)) => return Err(e),
            Ok(Some(line)) => Ok(line),
            Err(e) => Err(e),
        };
        Ok(Some((vec![item(line)], lines)))
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
            r#"{"index":0,"id":null,"scores":{"zulu":5.0,"alpha":2.5},"ranking":["zulu","alpha"],"reasoning":"r","consistent":true,"error":null,"input_hash":"a"}"#,
            r#"{"index":1,"id":null,"scores":null,"ranking":null,"reasoning":null,"consistent":null,"error":{"kind":"timeout","message":"slow"},"input_hash":"b"}"#,
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
        assert_eq!(
            value[2]["error"]["message"],
            "result line 3: not a result line: expected ident at column 2"
        );
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
