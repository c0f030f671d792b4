//! `--balance`: how `ra score` (and every command taking the client flags) spreads
//! requests over several endpoints.

mod common;

use std::time::Duration;

use common::{Mock, jsonl, ra, read_jsonl, s, spawn_ra, wait_until};
use serde_json::json;

fn requests(n: usize, same_prompt: bool) -> String {
    let lines: Vec<_> = (0..n)
        .map(|i| {
            let prompt = if same_prompt {
                "one prompt".to_string()
            } else {
                format!("prompt {i}")
            };
            json!({"id": i, "principle": "Be brief.", "prompt": prompt,
                   "responses": {"a": format!("answer {i} score=4"), "b": "other score=2"}})
        })
        .collect();
    jsonl(&lines)
}

fn score(policy: &str, mocks: &[&Mock], input: &str) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (inp, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&inp, input).expect("write");
    let mut args = vec![
        "score",
        "--input",
        s(&inp),
        "--output",
        s(&out),
        "--concurrency",
        "1",
    ];
    args.extend(["--balance", policy]);
    let urls: Vec<String> = mocks.iter().map(|m| m.url()).collect();
    for u in &urls {
        args.extend(["--endpoint", u.as_str()]);
    }
    let run = ra(&args, b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    read_jsonl(&out)
}

#[test]
fn least_loaded_spreads_and_random_reaches_every_endpoint() {
    let (a, b) = (Mock::default_mock(), Mock::default_mock());
    let out = score("least-loaded", &[&a, &b], &requests(12, true));
    assert_eq!(out.len(), 12);
    assert!(out.iter().all(|o| o["error"].is_null()));
    assert!(a.chat_requests() > 0 && b.chat_requests() > 0, "spread");
    let (c, d) = (Mock::default_mock(), Mock::default_mock());
    score("random", &[&c, &d], &requests(40, false));
    assert_eq!(c.chat_requests() + d.chat_requests(), 40);
    assert!(c.chat_requests() > 0 && d.chat_requests() > 0);
}

#[test]
fn round_robin_alternates() {
    let (a, b) = (Mock::default_mock(), Mock::default_mock());
    score("round-robin", &[&a, &b], &requests(10, false));
    assert_eq!((a.chat_requests(), b.chat_requests()), (5, 5));
}

#[test]
fn an_unknown_policy_is_refused_with_the_choices() {
    let run = ra(&["score", "--balance", "fastest", "--input", "-"], b"");
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("fastest") && run.stderr.contains("round-robin"),
        "{}",
        run.stderr
    );
}

/// `ra score` writes in input order, so lines judged after a slow one wait for it. A
/// replica five times slower than the rest must not stall the run: while line 0 is held
/// for a long time, the lines behind it keep being judged, well past 4 × --concurrency
/// (the window before; at 16 × they are).
#[test]
fn a_slow_line_does_not_hold_the_others_back() {
    let mock = Mock::default_mock();
    let mut lines = vec![
        json!({"principle": "p", "prompt": "slow [[latency-ms:60000]]",
                                "responses": {"a": "x score=3", "b": "y score=2"}}),
    ];
    lines.extend((1..200).map(|i| {
        json!({"principle": "p", "prompt": format!("q{i}"),
                                         "responses": {"a": "x score=3", "b": "y score=2"}})
    }));
    let dir = tempfile::tempdir().expect("tempdir");
    let (inp, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&inp, jsonl(&lines)).expect("write");
    let url = mock.url();
    let _run = spawn_ra(&[
        "score",
        "--input",
        s(&inp),
        "--output",
        s(&out),
        "--concurrency",
        "2",
        "--endpoint",
        &url,
    ]);
    // 2 in flight: 4 × 2 = 8 lines in progress at most before; 16 × 2 = 32 now.
    let judged = || mock.handle().stats().status(200);
    assert!(
        wait_until(Duration::from_secs(30), || judged() >= 25),
        "only {} judged behind the slow line",
        judged()
    );
    assert!(judged() <= 32, "the window is bounded: {}", judged());
}
