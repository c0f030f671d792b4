//! The results-line format has one reader, `ra_batch::results`: `ra score --resume`
//! and `ra gateway`'s job answer read the same lines into the same records, and a
//! malformed line gives the same typed error naming its line in both (resume warns and
//! judges it again; the answer puts an `internal` item in its place). `ra eval`'s
//! reading is pinned by its unit test (its results are only read after its own run).
//! Also `ra eval --grace`: a signal mid-run keeps what finished and the run resumes.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    Mock, complete_lines, gateway_command, ra, runtime, s, spawn_gateway, spawn_ra, wait_healthy,
    wait_until,
};
use serde_json::{Value, json};

fn request(i: usize) -> Value {
    json!({
        "principle": "Prefer the most helpful answer.",
        "prompt": format!("question {i}"),
        "responses": {
            "zulu": format!("answer {i}, score={}", i % 5 + 1),
            "alpha": format!("answer {i} again, score={}", (i / 2) % 5 + 1),
        },
    })
}

/// Scores by name, as numbers (the answer writes `5`, the results line `5.0`).
fn scores(v: &Value) -> Vec<(String, f64)> {
    let map = v.as_object().expect("scores");
    map.iter()
        .map(|(k, n)| (k.clone(), n.as_f64().expect("a number")))
        .collect()
}

fn score(inp: &Path, out: &Path, url: &str, extra: &[&str]) -> common::Run {
    let mut args = vec![
        "score",
        "--input",
        s(inp),
        "--output",
        s(out),
        "--endpoint",
        url,
    ];
    args.extend_from_slice(extra);
    ra(&args, b"")
}

/// Line 4 cut inside its JSON (still newline-ended): not a result line.
const BAD_LINE: usize = 4;
const WANT_ERROR: &str = "result line 4: not a result line: EOF while parsing an object";

#[test]
fn resume_and_the_job_answer_read_the_same_records_and_name_the_same_bad_line() {
    let n = 6;
    let mock = Mock::default_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = dir.path().join("in.jsonl");
    let requests: Vec<Value> = (0..n).map(request).collect();
    std::fs::write(&inp, common::jsonl(&requests)).expect("write");
    let out = dir.path().join("out.jsonl");
    let run = score(&inp, &out, &url, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let good = std::fs::read_to_string(&out).expect("read");
    let records: Vec<Value> = good
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let mut bad_lines: Vec<String> = good.lines().map(str::to_string).collect();
    let cut = bad_lines[BAD_LINE - 1]
        .find(",\"ranking\"")
        .expect("a ranking");
    bad_lines[BAD_LINE - 1].truncate(cut);
    let bad = bad_lines.join("\n") + "\n";

    // Resume: every line of the good file kept (nothing judged), and the bad one named
    // and judged again with those after it.
    let sent = mock.chat_requests();
    let run = score(&inp, &out, &url, &["--resume"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(mock.chat_requests(), sent, "every line kept");
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    std::fs::write(&out, &bad).expect("write");
    let run = score(&inp, &out, &url, &["--resume"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "ra score: warning: resuming after 3 whole lines: {WANT_ERROR}"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        mock.chat_requests() - sent,
        (n - (BAD_LINE - 1)) as u64,
        "the bad line and those after it are judged again"
    );
    let redone = std::fs::read_to_string(&out).expect("read");
    let kept: String = good
        .lines()
        .take(BAD_LINE - 1)
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(redone.starts_with(&kept), "kept lines stay byte for byte");
    assert_eq!(complete_lines(&out), n);

    // The job answer: the same lines, put in a finished job's place.
    let base = dir.path().join("jobs");
    let (mut gateway, gw) = spawn_gateway(gateway_command(&[
        "--endpoint",
        &url,
        "--base-output-path",
        s(&base),
    ]));
    let http = reqwest::Client::new();
    runtime().block_on(async {
        wait_healthy(&http, &gw, &mut gateway).await;
        let created: Value = http
            .post(format!("{gw}/api/batch_request"))
            .json(&json!({"requests": requests}))
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("JSON");
        let id = created["batch_request_id"]
            .as_str()
            .expect("id")
            .to_string();
        let answer = |body: &str| {
            let (http, gw, id) = (http.clone(), gw.clone(), id.clone());
            let results = base.join(&id).join("results.jsonl");
            let body = body.to_string();
            async move {
                let get = || http.get(format!("{gw}/api/batch_request/{id}?max_timeout=60"));
                assert_eq!(get().send().await.expect("wait").status(), 200);
                std::fs::write(&results, body).expect("write");
                let answer: Value = get().send().await.expect("get").json().await.expect("JSON");
                answer.as_array().expect("array").clone()
            }
        };
        let items = answer(&good).await;
        assert_eq!(items.len(), n);
        for (item, record) in items.iter().zip(&records) {
            assert_eq!(item["thoughts"], record["reasoning"], "{item}");
            assert_eq!(
                scores(&item["results"]["scores"]),
                scores(&record["scores"]),
                "{item}"
            );
            assert_eq!(
                item["results"]["best-to-worst"], record["ranking"],
                "{item}"
            );
            assert!(item.get("error").is_none(), "{item}");
        }
        let items = answer(&bad).await;
        assert_eq!(items.len(), n, "one item per request");
        for (i, item) in items.iter().enumerate() {
            if i == BAD_LINE - 1 {
                assert_eq!(item["error"]["kind"], "internal", "{item}");
                let message = item["error"]["message"].as_str().expect("message");
                assert!(message.starts_with(WANT_ERROR), "{message}");
            } else {
                assert_eq!(
                    scores(&item["results"]["scores"]),
                    scores(&records[i]["scores"]),
                    "{item}"
                );
            }
        }
    });
    gateway.signal(libc::SIGTERM);
    let stopped = gateway.finish(Duration::from_secs(30));
    assert_eq!(stopped.code, 0, "{}", stopped.stderr);
}

#[test]
fn eval_grace_keeps_what_finished_after_a_signal_and_resumes() {
    // Calls slow enough to be in flight when the signal lands; the grace outlasts them.
    let mock =
        Mock::start(ra_mock::MockServer::builder().latency(ra_mock::Latency::from_millis(1500)));
    let dir = tempfile::tempdir().expect("tempdir");
    let items: Vec<Value> = (0..3)
        .map(|i| {
            json!({"principle": "Prefer the most helpful answer.", "prompt": format!("question {i}"),
                   "responses": {"a": "first, score=5", "b": "second, score=3", "c": "third, score=1"},
                   "ranking": ["a", "b", "c"]})
        })
        .collect();
    let input = dir.path().join("ranked.jsonl");
    std::fs::write(&input, common::jsonl(&items)).expect("write");
    let out = dir.path().join("out");
    let url = mock.url();
    let args = [
        "eval",
        "--endpoint",
        &url,
        "--format",
        "ranked",
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--permutations",
        "4",
        "--concurrency",
        "2",
        "--grace",
        "120",
        "--resume",
    ];
    let total = 3 * 4;
    let results = out.join("results.jsonl");
    let child = spawn_ra(&args);
    // Two calls of the third round are on the wire.
    assert!(
        wait_until(Duration::from_secs(60), || mock.chat_requests() >= 5),
        "calls are sent"
    );
    let written_at_signal = complete_lines(&results);
    child.signal(libc::SIGTERM);
    let stopped = child.finish(Duration::from_secs(60));
    assert_eq!(stopped.code, 2, "{}", stopped.stderr);
    assert!(stopped.stderr.contains("--resume"), "{}", stopped.stderr);
    let kept = complete_lines(&results);
    assert!(
        kept > written_at_signal && kept < total,
        "the calls in flight finished within the grace and were written, the rest not \
         sent ({written_at_signal} lines at the signal, {kept} after)"
    );
    assert_eq!(
        mock.chat_requests() as usize,
        kept,
        "every call sent was written, none after the signal"
    );
    assert!(std::fs::read(&results).expect("read").ends_with(b"\n"));

    let sent = mock.chat_requests();
    let run = ra(&args, b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        (mock.chat_requests() - sent) as usize,
        total - kept,
        "the resumed run judges only the rest"
    );
    assert_eq!(complete_lines(&results), total);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).expect("summary"))
            .expect("JSON");
    assert_eq!(summary["units_failed"], 0, "{summary}");
}
