//! `ra gateway`'s batch jobs through the real binary: a job survives `kill -9` and a
//! SIGTERM, each restart resumes it where it stopped (lines written are not judged
//! again), the answer comes back complete and in order; a second gateway on the same
//! `--base-output-path` starts and serves, its job routes answering 503 naming the first
//! one's PID and the flag; no directory is needed until a job is posted.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    ChildGuard, Mock, complete_lines, gateway_command, runtime, s, spawn_gateway, wait_healthy,
};
use ra_mock::{Latency, expected_score};
use serde_json::{Value, json};

/// Judgments the gateway keeps on the wire (its `--concurrency`; its job window is 16 ×).
const CONCURRENCY: usize = 8;

/// `ra gateway` in front of `mock`, its jobs in `base`, on a port of its own.
fn gateway(mock: &Mock, base: &Path) -> std::process::Command {
    let concurrency = CONCURRENCY.to_string();
    gateway_command(&[
        "--endpoint",
        &mock.url(),
        "--concurrency",
        &concurrency,
        "--base-output-path",
        s(base),
        "--grace",
        "30",
    ])
}

/// Request `i`: masked names whose mock scores depend on `i`.
fn request(i: usize) -> Value {
    json!({
        "principle": "Prefer the most helpful answer.",
        "prompt": format!("question {i}"),
        "responses": {
            "gpt-4o": format!("answer {i}, score={}", i % 5 + 1),
            "claude": format!("answer {i} again, score={}", (i / 5) % 5 + 1),
        },
    })
}

fn check(i: usize, result: &Value) {
    let want = json!({
        "gpt-4o": expected_score(&format!("answer {i}, score={}", i % 5 + 1)),
        "claude": expected_score(&format!("answer {i} again, score={}", (i / 5) % 5 + 1)),
    });
    assert_eq!(result["results"]["scores"], want, "item {i}: {result}");
    assert!(result.get("error").is_none(), "item {i}: {result}");
}

/// Posts a job to the gateway at `url`; (status, JSON answer).
async fn submit(http: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = http
        .post(format!("{url}/api/batch_request"))
        .json(body)
        .send()
        .await
        .expect("create");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON"))
}

async fn wait_lines(path: &Path, at_least: usize, child: &mut ChildGuard) {
    let started = Instant::now();
    while complete_lines(path) < at_least {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} result lines",
            complete_lines(path)
        );
        child.assert_running();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn a_job_survives_kill_9_and_sigterm_and_completes_without_judging_twice() {
    let n = 300;
    let mock = Mock::start(
        ra_mock::MockServer::builder().latency(Latency::Fixed(Duration::from_millis(50))),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("outputs");
    let rt = runtime();
    let http = reqwest::Client::new();

    // 1. Submit, let some results be written, kill -9.
    let (mut first, url) = spawn_gateway(gateway(&mock, &base));
    let (id, results) = rt.block_on(async {
        wait_healthy(&http, &url, &mut first).await;
        let requests: Vec<Value> = (0..n).map(request).collect();
        let (status, created) = submit(&http, &url, &json!({"requests": requests})).await;
        assert_eq!(status, 200, "{created}");
        assert_eq!(created["requests"], n, "{created}");
        let id = created["batch_request_id"]
            .as_str()
            .expect("id")
            .to_string();
        let results = base.join(&id).join("results.jsonl");
        wait_lines(&results, 30, &mut first).await;
        // Kill between two writes, not just after one: results finished meanwhile must
        // already be on disk.
        tokio::time::sleep(Duration::from_millis(150)).await;
        (id, results)
    });
    first.signal(libc::SIGKILL);
    let killed = first.finish(Duration::from_secs(10));
    assert_eq!(killed.code, -libc::SIGKILL, "{}", killed.stderr);
    let after_kill = complete_lines(&results);
    assert!(after_kill < n, "killed before the end: {after_kill}");

    // 2. Restart: the job resumes; a second gateway on the directory starts, but its job
    // routes say who holds the directory and which flag to change; SIGTERM.
    let (mut second, url) = spawn_gateway(gateway(&mock, &base));
    rt.block_on(async {
        wait_healthy(&http, &url, &mut second).await;
        wait_lines(&results, after_kill + 30, &mut second).await;
    });
    let (mut other, other_url) = spawn_gateway(gateway(&mock, &base));
    rt.block_on(async {
        wait_healthy(&http, &other_url, &mut other).await;
        let (status, answer) = submit(&http, &other_url, &json!({"requests": [request(0)]})).await;
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["error"]["kind"], "jobs_unavailable", "{answer}");
        let msg = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(&format!("PID {}", second.pid()))
                && msg.contains("another ra gateway")
                && msg.contains("--base-output-path"),
            "names the holder and the flag: {msg}"
        );
    });
    other.signal(libc::SIGTERM);
    let other = other.finish(Duration::from_secs(30));
    assert_eq!(other.code, 0, "{}", other.stderr);
    second.signal(libc::SIGTERM);
    let stopped = second.finish(Duration::from_secs(40));
    assert_eq!(stopped.code, 0, "{}", stopped.stderr);
    let after_term = complete_lines(&results);
    assert!(after_term < n, "stopped before the end: {after_term}");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(base.join(&id).join("job.json")).expect("job.json"),
    )
    .expect("JSON state");
    assert_eq!(state["complete"], false, "{state}");

    // 3. Restart again: the job completes; the answer is whole and in order.
    let (mut third, url) = spawn_gateway(gateway(&mock, &base));
    rt.block_on(async {
        wait_healthy(&http, &url, &mut third).await;
        let r = http
            .get(format!("{url}/api/batch_request/{id}?max_timeout=120"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().await.expect("JSON");
        let answer = answer.as_array().expect("array");
        assert_eq!(answer.len(), n);
        for (i, result) in answer.iter().enumerate() {
            check(i, result);
        }
        let tasks: Value = http
            .get(format!("{url}/api/list_tasks"))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("JSON");
        assert_eq!(tasks[&id]["complete"], true, "{tasks}");
    });
    let indices: Vec<u64> = std::fs::read_to_string(&results)
        .expect("results")
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("JSON line")["index"]
                .as_u64()
                .expect("index")
        })
        .collect();
    assert_eq!(
        indices,
        (0..n as u64).collect::<Vec<_>>(),
        "every result once, in order"
    );
    // Only what was in progress at the kill is sent again (the drain after SIGTERM
    // writes what it finishes).
    let sent = mock.chat_requests();
    eprintln!(
        "{after_kill} lines at the kill, {after_term} at the SIGTERM, {sent} requests for {n}"
    );
    // In progress: up to 16 × --concurrency lines (the job window), of which at most
    // --concurrency on the wire; those judged but not yet written are judged again.
    let window = 16 * CONCURRENCY;
    assert!(
        sent <= (n + window) as u64,
        "{sent} requests for {n} lines: more than the {window} in progress at the kill were judged again"
    );
    third.signal(libc::SIGTERM);
    let run = third.finish(Duration::from_secs(30));
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn jobs_default_to_outputs_in_the_working_directory_and_max_jobs_is_a_flag() {
    let mock = Mock::default_mock();
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut cmd = gateway_command(&["--endpoint", &mock.url(), "--max-jobs", "1"]);
    cmd.current_dir(cwd.path());
    let (mut child, url) = spawn_gateway(cmd);
    let rt = runtime();
    let http = reqwest::Client::new();
    rt.block_on(async {
        wait_healthy(&http, &url, &mut child).await;
        let body = json!({"requests": [request(0)]});
        let (status, created) = submit(&http, &url, &body).await;
        assert_eq!(status, 200, "{created}");
        let id = created["batch_request_id"].as_str().expect("id");
        assert!(
            cwd.path()
                .join("outputs")
                .join(id)
                .join("job.json")
                .is_file()
        );
        let (status, answer) = submit(&http, &url, &body).await;
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["error"]["kind"], "too_many_jobs", "{answer}");
    });
    child.signal(libc::SIGTERM);
    let run = child.finish(Duration::from_secs(30));
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn two_gateways_in_one_directory_both_serve_and_jobs_go_to_the_first_that_uses_them() {
    let mock = Mock::default_mock();
    let cwd = tempfile::tempdir().expect("tempdir");
    let start = || {
        let mut cmd = gateway_command(&["--endpoint", &mock.url()]);
        cmd.current_dir(cwd.path());
        spawn_gateway(cmd)
    };
    let (mut first, first_url) = start();
    let (mut second, second_url) = start();
    let outputs = cwd.path().join("outputs");
    assert!(!outputs.exists(), "created before any job");
    let rt = runtime();
    let http = reqwest::Client::new();
    rt.block_on(async {
        wait_healthy(&http, &first_url, &mut first).await;
        wait_healthy(&http, &second_url, &mut second).await;
        let body = json!({"requests": [request(3)]});
        // The second one posts first: it takes ./outputs.
        let (status, created) = submit(&http, &second_url, &body).await;
        assert_eq!(status, 200, "{created}");
        assert!(outputs.is_dir());
        let (status, answer) = submit(&http, &first_url, &body).await;
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["error"]["kind"], "jobs_unavailable", "{answer}");
        let msg = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("--base-output-path"), "{msg}");
        // Both judge.
        for url in [&first_url, &second_url] {
            let r = http
                .post(format!("{url}/api/rewardanything"))
                .json(&request(4))
                .send()
                .await
                .expect("judge");
            assert_eq!(r.status(), 200);
        }
    });
    for child in [first, second] {
        child.signal(libc::SIGTERM);
        let run = child.finish(Duration::from_secs(30));
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
}

#[test]
fn a_gateway_starts_where_its_job_directory_cannot_be_made_and_says_which_flag() {
    let mock = Mock::default_mock();
    let cwd = tempfile::tempdir().expect("tempdir");
    // `./outputs` is a file: no directory can be made there (even as root).
    std::fs::write(cwd.path().join("outputs"), b"not a directory").expect("write");
    let mut cmd = gateway_command(&["--endpoint", &mock.url()]);
    cmd.current_dir(cwd.path());
    let (mut child, url) = spawn_gateway(cmd);
    let rt = runtime();
    let http = reqwest::Client::new();
    rt.block_on(async {
        wait_healthy(&http, &url, &mut child).await;
        let (status, answer) = submit(&http, &url, &json!({"requests": [request(1)]})).await;
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["error"]["kind"], "jobs_unavailable", "{answer}");
        let msg = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("outputs") && msg.contains("--base-output-path"),
            "{msg}"
        );
        let r = http
            .post(format!("{url}/api/rewardanything"))
            .json(&request(2))
            .send()
            .await
            .expect("judge");
        assert_eq!(r.status(), 200);
    });
    child.signal(libc::SIGTERM);
    let run = child.finish(Duration::from_secs(30));
    assert_eq!(run.code, 0, "{}", run.stderr);
}
