//! Issue 17's stumbles, repeated as a new user made them, through the `ra` binary: a
//! reward server's URL given as the model endpoint, a URL without a scheme, `responses`
//! as a list, a server down at start, and a judgment that never got sent.

mod common;

use common::{Mock, dead_url, gateway_command, ra, runtime, s, spawn_gateway};
use serde_json::{Value, json};

/// `ra score` of one line against `endpoint`; returns the run.
fn score(endpoint: &str, dir: &std::path::Path, line: &Value) -> common::Run {
    let input = dir.join("in.jsonl");
    std::fs::write(&input, format!("{line}\n")).expect("write input");
    let output = dir.join("out.jsonl");
    ra(
        &[
            "score",
            "--input",
            s(&input),
            "--output",
            s(&output),
            "--endpoint",
            endpoint,
        ],
        b"",
    )
}

fn request() -> Value {
    json!({"principle": "p", "prompt": "q", "responses": {"a": "x score=4", "b": "y score=2"}})
}

#[test]
fn a_gateway_url_given_as_the_model_endpoint_says_it_is_a_reward_server() {
    let mock = Mock::default_mock();
    let jobs = tempfile::tempdir().expect("tempdir");
    let (child, base) = spawn_gateway(gateway_command(&[
        "--endpoint",
        &mock.url(),
        "--base-output-path",
        s(jobs.path()),
    ]));
    let dir = tempfile::tempdir().expect("tempdir");
    // With and without /v1: both 404 on /models; "try …/v1" would not help either.
    for endpoint in [base.clone(), format!("{base}/v1")] {
        let run = score(&endpoint, dir.path(), &request());
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains("is a RewardAnything reward server")
                && run.stderr.contains("rewardanything.Client")
                && run.stderr.contains("OpenAI-compatible base URL"),
            "{endpoint}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("try "), "{endpoint}: {}", run.stderr);
    }
    drop(child);
    assert_eq!(mock.chat_requests(), 0);
}

#[test]
fn a_plain_404_without_v1_still_suggests_v1() {
    // A server that is not a reward server (the mock's root has no /models): the /v1
    // hint stays.
    let mock = Mock::default_mock();
    let root = mock.url().trim_end_matches("/v1").to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let run = score(&root, dir.path(), &request());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("try "), "{}", run.stderr);
    assert!(!run.stderr.contains("reward server"), "{}", run.stderr);
}

#[test]
fn a_url_without_scheme_says_add_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    for endpoint in ["127.0.0.1:8100/v1", "localhost:8100/v1"] {
        let run = score(endpoint, dir.path(), &request());
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains("add http://"),
            "{endpoint}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("relative URL"),
            "{endpoint}: {}",
            run.stderr
        );
    }
}

#[test]
fn responses_as_a_list_are_named_by_position_as_in_python() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let line = json!({"id": 1, "principle": "p", "prompt": "q",
                      "responses": ["x score=4", "y score=2"]});
    let run = score(&mock.url(), dir.path(), &line);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = common::read_jsonl(&dir.path().join("out.jsonl"));
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0]["scores"],
        json!({"response-1": 4.0, "response-2": 2.0}),
        "{}",
        out[0]
    );

    // A list of [name, text] pairs is not a form: the line says what to write.
    let pairs = json!({"id": 2, "principle": "p", "prompt": "q",
                       "responses": [["a", "x score=4"]]});
    let run = score(&mock.url(), dir.path(), &pairs);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out = common::read_jsonl(&dir.path().join("out.jsonl"));
    let error = &out[0]["error"];
    assert_eq!(error["kind"], "bad_input", "{}", out[0]);
    let message = error["message"].as_str().expect("message");
    assert!(
        message.contains("responses[0]") && message.contains("a list of texts"),
        "{message}"
    );
}

#[test]
fn a_server_down_at_start_is_one_clear_error_without_retry_noise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = score(&dead_url(), dir.path(), &request());
    assert_eq!(run.code, 2, "{}", run.stderr);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "only the error: {}", run.stderr);
    assert!(
        lines[0].contains("not usable at startup")
            && lines[0].contains("unreachable")
            && lines[0].contains("tried 5 times"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
}

#[test]
fn a_judgment_never_sent_says_so_and_why() {
    // A gateway whose upstream is down and whose model is unknown: the judgment cannot
    // start (the model is discovered first).
    let dead = dead_url();
    let jobs = tempfile::tempdir().expect("tempdir");
    let (child, base) = spawn_gateway(gateway_command(&[
        "--endpoint",
        &dead,
        "--max-retries",
        "0",
        "--base-output-path",
        s(jobs.path()),
    ]));
    let body: Value = runtime().block_on(async {
        reqwest::Client::new()
            .post(format!("{base}/api/rewardanything"))
            .json(&request())
            .send()
            .await
            .expect("the gateway answers")
            .json()
            .await
            .expect("JSON")
    });
    let text = body.to_string();
    assert!(
        text.contains("nothing was sent: the model to ask for could not be found out first"),
        "{text}"
    );
    assert!(!text.contains("after 0 attempts"), "{text}");
    drop(child);
}
