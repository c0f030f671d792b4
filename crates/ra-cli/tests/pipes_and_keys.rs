//! `ra score` with a pipe as `--input`, and where the API key comes from.

mod common;

use common::{Mock, Rng, check_judged, jsonl, ra, request};
use ra_mock::MockServer;
use serde_json::Value;

#[test]
fn a_pipe_input_is_read_once_and_scored() {
    let mock = Mock::default_mock();
    let requests: Vec<Value> = (0..5).map(|i| request(&mut Rng(i as u64), i, "")).collect();
    // /dev/stdin is a pipe here: counting its lines for the progress bar would drain it.
    let run = ra(
        &[
            "score",
            "--input",
            "/dev/stdin",
            "--output",
            "-",
            "--endpoint",
            &mock.url(),
        ],
        jsonl(&requests).as_bytes(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = run.json_lines();
    assert_eq!(lines.len(), requests.len(), "{}", run.stderr);
    for (line, req) in lines.iter().zip(&requests) {
        check_judged(line, req);
    }
}

#[test]
fn the_environment_key_wins_over_the_config_key() {
    let mock = Mock::start(MockServer::builder().api_key("env-key"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({"api_key": ["dummy-key-for-local-vllm"], "api_base": [mock.url()]})
            .to_string(),
    )
    .expect("config");
    let requests: Vec<Value> = (0..2).map(|i| request(&mut Rng(i as u64), i, "")).collect();
    let mut cmd = common::ra_command(&[
        "score",
        "--input",
        "-",
        "--output",
        "-",
        "--config",
        config.to_str().expect("utf-8 path"),
    ]);
    cmd.env("RA_API_KEY", "env-key");
    let run = common::ChildGuard::spawn(cmd, Some(jsonl(&requests).into_bytes()))
        .finish(std::time::Duration::from_secs(30));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json_lines().len(), 2);
}

#[test]
fn an_openai_key_in_the_environment_is_never_sent_and_does_not_mask_the_config_key() {
    let mock = Mock::start(MockServer::builder().api_key("config-key"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({"api_key": ["config-key"], "api_base": [mock.url()]}).to_string(),
    )
    .expect("config");
    let requests: Vec<Value> = (0..2).map(|i| request(&mut Rng(i as u64), i, "")).collect();
    let args = ["score", "--input", "-", "--output", "-", "--config"];
    let mut cmd = common::ra_command(&args);
    cmd.arg(config.to_str().expect("utf-8 path"));
    cmd.env("OPENAI_API_KEY", "sk-openai-secret");
    let run = common::ChildGuard::spawn(cmd, Some(jsonl(&requests).into_bytes()))
        .finish(std::time::Duration::from_secs(30));
    assert_eq!(run.code, 0, "the config's key is used: {}", run.stderr);
    assert_eq!(run.json_lines().len(), 2);
    // Without the config, the OpenAI key is not sent either: 401, said as such.
    let mut cmd = common::ra_command(&["score", "--input", "-", "--output", "-", "--endpoint"]);
    cmd.arg(mock.url());
    cmd.env("OPENAI_API_KEY", "config-key");
    let run = common::ChildGuard::spawn(cmd, Some(jsonl(&requests).into_bytes()))
        .finish(std::time::Duration::from_secs(30));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("unauthorized"), "{}", run.stderr);
}
