//! `--balance`: how `ra score` (and every command taking the client flags) spreads
//! requests over several endpoints.

mod common;

use common::{Mock, jsonl, ra, read_jsonl, s};
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
fn affinity_keeps_one_prompt_on_one_replica_and_least_loaded_spreads_it() {
    let (a, b) = (Mock::default_mock(), Mock::default_mock());
    let input = requests(12, true);
    let out = score("affinity", &[&a, &b], &input);
    assert_eq!(out.len(), 12);
    assert!(out.iter().all(|o| o["error"].is_null()));
    let counts = [a.chat_requests(), b.chat_requests()];
    assert!(
        counts.contains(&12) && counts.contains(&0),
        "affinity: {counts:?}"
    );

    let (c, d) = (Mock::default_mock(), Mock::default_mock());
    score("least-loaded", &[&c, &d], &input);
    assert!(c.chat_requests() > 0 && d.chat_requests() > 0, "spread");

    // Different prompts spread under affinity too.
    let (e, f) = (Mock::default_mock(), Mock::default_mock());
    score("affinity:2", &[&e, &f], &requests(40, false));
    assert!(e.chat_requests() > 0 && f.chat_requests() > 0);
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
