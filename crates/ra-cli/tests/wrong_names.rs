//! A judgment names exactly the request's responses (issue 9.1), through the `ra` binary:
//! an answer with an extra, missing or invented name is an error line naming it (exit 1),
//! never a scored result; `ra parse --strict` refuses the same answers.

mod common;

use common::{Mock, jsonl, ra, read_jsonl, s};
use serde_json::{Value, json};

#[test]
fn score_writes_an_error_line_for_every_wrongly_named_answer() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = [
        "names-extra",
        "names-missing",
        "names-invented",
        "names-extra-ranked",
    ];
    let mut reqs = Vec::new();
    for fault in faults {
        for mask in [true, false] {
            reqs.push(json!({
                "id": format!("{fault}-{mask}"),
                "principle": "Prefer correct answers.",
                "prompt": format!("Capital of Australia? [[fault:{fault}]] {mask}"),
                "responses": {"a": "Canberra.", "b": "Sydney."},
                "mask_responses": mask,
            }));
        }
    }
    // A clean request between them is judged as usual.
    reqs.push(json!({"id": "clean", "principle": "p", "prompt": "q",
                     "responses": {"a": "x", "b": "y"}}));
    let inp = dir.path().join("in.jsonl");
    let out = dir.path().join("out.jsonl");
    std::fs::write(&inp, jsonl(&reqs)).expect("write");
    let url = mock.url();
    let run = ra(
        &[
            "score",
            "--input",
            s(&inp),
            "--output",
            s(&out),
            "--endpoint",
            &url,
            "--max-retries",
            "1",
        ],
        b"",
    );
    assert_eq!(run.code, 1, "some lines failed: {}", run.stderr);
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), reqs.len());
    for (line, req) in lines.iter().zip(&reqs) {
        let id = req["id"].as_str().unwrap();
        if id == "clean" {
            assert_eq!(line["error"], Value::Null, "{line}");
            continue;
        }
        let kind = line["error"]["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: {line}"));
        assert!(
            ["incomplete", "invalid_scores", "invalid_ranking"].contains(&kind),
            "{id}: {line}"
        );
        assert_eq!(
            line["scores"],
            Value::Null,
            "{id}: no scores from a wrong answer: {line}"
        );
        let message = line["error"]["message"].as_str().unwrap();
        // The offending name: the invented one, or the real name left out.
        let masked = req["mask_responses"] == json!(true);
        let expected: &[&str] = if id.starts_with("names-missing") {
            &["\"a\"", "\"b\""]
        } else if id.starts_with("names-invented") || !masked {
            &["zzz"]
        } else {
            &["model-9"]
        };
        assert!(
            expected.iter().any(|n| message.contains(n)),
            "{id}: the message names {expected:?}: {message}"
        );
    }
}

#[test]
fn parse_strict_refuses_a_name_the_mapping_does_not_have() {
    let answer = r#"{"scores": {"model-1": 4, "model-2": 2, "model-3": 5}, "best-to-worst": ["model-3", "model-1", "model-2"]}"#;
    let line = json!({
        "output_text": answer,
        "masked2real": {"model-1": "a", "model-2": "b"},
    });
    let input = format!("{line}\n");
    let strict = ra(&["parse", "--strict"], input.as_bytes());
    let out: Value = serde_json::from_str(strict.stdout_str().trim()).expect("one JSON line");
    assert_eq!(out["error"]["kind"], "invalid_scores", "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model-3"),
        "{out}"
    );
    // Lenient parsing keeps the reference's values but never calls them consistent.
    let lenient = ra(&["parse"], input.as_bytes());
    let out: Value = serde_json::from_str(lenient.stdout_str().trim()).expect("one JSON line");
    assert_eq!(out["ok"]["consistent"], false, "{out}");
}

#[test]
fn an_endless_or_huge_answer_body_is_one_bad_response_line() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let reqs: Vec<Value> = ["endless-body", "huge-body:104857600"]
        .iter()
        .map(|fault| {
            json!({"id": fault, "principle": "p", "prompt": format!("q [[fault:{fault}]]"),
                   "responses": {"a": "x", "b": "y"}})
        })
        .collect();
    let inp = dir.path().join("in.jsonl");
    let out = dir.path().join("out.jsonl");
    std::fs::write(&inp, jsonl(&reqs)).expect("write");
    let url = mock.url();
    let run = ra(
        &[
            "score",
            "--input",
            s(&inp),
            "--output",
            s(&out),
            "--endpoint",
            &url,
            "--max-response-bytes",
            "1048576",
            "--timeout",
            "60",
        ],
        b"",
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["error"]["kind"], "bad_response", "{line}");
        assert_eq!(line["attempts"], 1, "not retried: {line}");
        let message = line["error"]["message"].as_str().unwrap();
        assert!(message.contains("1048576-byte limit"), "{message}");
    }
}
