//! `ra gateway`'s `/get_reward` (OpenRLHF's remote reward model) end to end: the real
//! binary with `--principle-file --group-window-ms --max-group-size --group-size --reward` in front
//! of the in-process mock; and its flags refused when absurd.

mod common;

use std::time::Duration;

use common::{Mock, dead_url, gateway_command, ra, runtime, s, spawn_gateway, wait_healthy};
use ra_mock::expected_score;
use serde_json::{Value, json};

/// A Qwen (ChatML) prompt as OpenRLHF renders it with `--apply_chat_template`.
fn chatml(question: &str) -> String {
    format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
}

#[test]
fn the_binary_judges_a_group_of_rollouts_in_one_call() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let principle = dir.path().join("principle.txt");
    std::fs::write(&principle, "Prefer correct, concise answers.\n").expect("write");
    let mut cmd = gateway_command(&[
        "--endpoint",
        &mock.url(),
        "--principle-file",
        s(&principle),
        "--group-window-ms",
        "60000",
        "--max-group-size",
        "8",
        // OpenRLHF's n_samples_per_prompt: the complete group goes at once, long before
        // the window (or the calls' 60 s timeout) ends.
        "--group-size",
        "4",
        "--reward",
        "unit",
        "--grace",
        "2",
    ]);
    cmd.env("RA_LOG", "info");
    let (mut child, base) = spawn_gateway(cmd);
    let rt = runtime();
    let http = reqwest::Client::new();
    let prompt = chatml("Name a colour.");
    let responses: Vec<String> = (1..=4).map(|i| format!("Colour {i}. score={i}")).collect();
    rt.block_on(async {
        wait_healthy(&http, &base, &mut child).await;
        // Four OpenRLHF 0.11 calls at once, one rollout each: one complete group of 4.
        let calls = responses.iter().map(|r| {
            let body = json!({
                "query": [format!("{prompt}{r}<|im_end|>")],
                "prompts": [prompt],
                "labels": ["a ground-truth label"],
            });
            let http = http.clone();
            let url = format!("{base}/get_reward");
            async move {
                let r = http
                    .post(url)
                    .json(&body)
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .expect("send");
                assert_eq!(r.status(), 200);
                r.json::<Value>().await.expect("JSON")
            }
        });
        let answers = futures::future::join_all(calls).await;
        for (r, out) in responses.iter().zip(&answers) {
            let score = f64::from(expected_score(r));
            assert_eq!(out["scores"], json!([score]), "{out}");
            assert_eq!(out["rewards"], json!([(score - 1.0) / 4.0]), "{out}");
            assert_eq!(out["extra_logs"]["ra_group_size"], json!([4.0]), "{out}");
            assert_eq!(out["extra_logs"]["ra_failed"], json!([0.0]), "{out}");
        }
    });
    assert_eq!(mock.chat_requests(), 1, "one listwise call for the group");
    child.signal(libc::SIGTERM);
    let run = child.finish(Duration::from_secs(10));
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn absurd_reward_flags_are_refused_with_status_2() {
    let dead = dead_url();
    let empty = tempfile::NamedTempFile::new().expect("tempfile");
    let base = [
        "gateway",
        "--endpoint",
        dead.as_str(),
        "--model",
        "m",
        "--port",
        "9",
    ];
    for (extra, says) in [
        (vec!["--failure-reward", "nan"], "not a number"),
        (vec!["--failure-reward", "inf"], "not a finite number"),
        (vec!["--group-window-ms", "999999"], "out of range"),
        (vec!["--group-window-ms=-5"], "not a whole number"),
        (vec!["--max-group-size", "0"], "at least 1"),
        (vec!["--max-group-size", "65"], "above --max-responses"),
        (vec!["--group-size", "0"], "at least 1"),
        (vec!["--principle", "  "], "--principle is empty"),
        (vec!["--principle-file", s(empty.path())], "is empty"),
        (
            vec!["--principle-file", "/nonexistent/principle.txt"],
            "cannot read --principle-file",
        ),
        (
            vec!["--principle", "p", "--principle-file", "x"],
            "cannot be used with",
        ),
        (vec!["--reward", "zscore"], "invalid value"),
        // `group` means group-mean centering everywhere; /get_reward has no group to
        // centre on, so it says so instead of accepting it (or taking it for `centered`).
        (vec!["--reward", "group"], "--reward group"),
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let run = ra(&args, b"");
        assert_eq!(run.code, 2, "{extra:?}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{extra:?}: {}", run.stderr);
    }
}

#[test]
fn the_config_files_principle_is_the_default() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("server_config.json");
    let with = json!({"api_base": mock.url(), "principle": "Be helpful."});
    std::fs::write(&config, with.to_string()).expect("write config");
    let (child, base) = spawn_gateway(gateway_command(&["-c", s(&config)]));
    let prompt = chatml("Hi?");
    // No principle in the label: only the config's can make this a 200 (else 422).
    let body = json!({"query": [format!("{prompt}Hello. score=5<|im_end|>")], "prompts": [prompt], "labels": [null]});
    let out: Value = runtime().block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{base}/get_reward"))
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        r.json().await.expect("JSON")
    });
    assert_eq!(out["scores"], json!([5.0]), "{out}");
    child.signal(libc::SIGTERM);
    let run = child.finish(Duration::from_secs(10));
    assert_eq!(run.code, 0, "{}", run.stderr);
}
