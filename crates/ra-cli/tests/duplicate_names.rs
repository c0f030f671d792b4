//! A name given twice (JSON allows `{"a": …, "a": …}`, and flags can repeat) is refused,
//! naming it, in every subcommand: merging silently would judge a response the caller
//! did not mean.

mod common;

use common::{Mock, ra, read_jsonl};
use serde_json::{Value, json};

const DUPLICATED: &str = r#"{"id": "dup", "principle": "p", "prompt": "q", "responses": {"a": "x score=1", "b": "y score=2", "a": "z score=5"}}"#;

#[test]
fn score_writes_a_bad_input_line_naming_the_duplicated_response() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let good = json!({"id": "ok", "principle": "p", "prompt": "q", "responses": {"a": "x score=1", "b": "y score=2"}});
    let input = format!("{good}\n{DUPLICATED}\n{good}\n");
    let out = dir.path().join("out.jsonl");
    let out_s = out.to_str().expect("utf-8 path");
    let run = ra(
        &[
            "score",
            "--input",
            "-",
            "--output",
            out_s,
            "--endpoint",
            &mock.url(),
        ],
        input.as_bytes(),
    );
    assert_eq!(run.code, 1, "one line failed: {}", run.stderr);
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 3);
    let bad = &lines[1];
    assert_eq!(bad["index"], 1, "{bad}");
    assert_eq!(bad["id"], "dup", "the id is kept: {bad}");
    assert_eq!(bad["error"]["kind"], "bad_input", "{bad}");
    let message = bad["error"]["message"].as_str().expect("message");
    assert!(message.contains("duplicate name \"a\""), "{message}");
    assert!(
        message.starts_with("line 2: "),
        "1-based in text: {message}"
    );
    assert!(lines[0]["error"].is_null() && lines[2]["error"].is_null());
    assert_eq!(mock.chat_requests(), 2, "the duplicated line is never sent");
}

#[test]
fn judge_refuses_a_duplicated_response_on_stdin_and_in_flags() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let run = ra(&["judge", "--endpoint", &url], DUPLICATED.as_bytes());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("duplicate name \"a\""),
        "{}",
        run.stderr
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.txt");
    std::fs::write(&file, "from a file").expect("write");
    let from_file = format!("a={}", file.display());
    let base = [
        "judge",
        "--endpoint",
        &url,
        "--principle",
        "p",
        "--prompt",
        "q",
    ];
    for extra in [
        vec!["--response", "a=1", "--response", "a=2"],
        vec!["--response", "a=1", "--response-file", &from_file],
        vec!["--response-file", &from_file, "--response-file", &from_file],
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let run = ra(&args, b"");
        assert_eq!(run.code, 2, "{extra:?}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("response name \"a\" is given more than once"),
            "{extra:?}: {}",
            run.stderr
        );
    }
    assert_eq!(mock.chat_requests(), 0, "nothing was judged");
}

#[test]
fn render_answers_a_duplicated_response_with_bad_input_in_place() {
    let good = json!({"principle": "p", "prompt": "q", "responses": {"a": "1", "b": "2"}});
    let run = ra(&["render"], format!("{DUPLICATED}\n{good}\n").as_bytes());
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out = run.json_lines();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["error"]["kind"], "bad_input", "{}", out[0]);
    assert_eq!(out[0]["error"]["line"], 0, "the field stays 0-based");
    let message = out[0]["error"]["message"].as_str().expect("message");
    assert!(message.contains("duplicate name \"a\""), "{message}");
    assert!(message.starts_with("line 1: "), "{message}");
    assert!(out[1]["messages"].is_array(), "{}", out[1]);
}

#[test]
fn parse_refuses_a_duplicated_masked_name() {
    let answer = r#"<think>ok</think>{"scores": {"model-1": 5, "model-2": 1}, "best-to-worst": ["model-1", "model-2"]}"#;
    let dup = format!(
        r#"{{"output_text": {}, "masked2real": {{"model-1": "a", "model-2": "b", "model-1": "c"}}}}"#,
        Value::String(answer.into())
    );
    let ok = json!({"output_text": answer, "masked2real": {"model-1": "a", "model-2": "b"}});
    let run = ra(&["parse", "--strict"], format!("{dup}\n{ok}\n").as_bytes());
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out = run.json_lines();
    assert_eq!(out[0]["error"]["kind"], "bad_input", "{}", out[0]);
    let message = out[0]["error"]["message"].as_str().expect("message");
    assert!(message.contains("duplicate name \"model-1\""), "{message}");
    assert_eq!(
        out[1]["ok"]["scores"],
        json!({"a": 5.0, "b": 1.0}),
        "{}",
        out[1]
    );
}
