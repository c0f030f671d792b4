//! Endpoint discovery through the binary: `--endpoints-dir` (one endpoints file per node,
//! files coming and going during a run), `dns+http://` entries from the flag, the config
//! file and `RA_ENDPOINT` (resolved by the system resolver: `localhost`), and the gateway
//! following a directory.

mod common;

use std::time::Duration;

use common::{
    Mock, Rng, gateway_command, jsonl, read_jsonl, request, runtime, s, spawn_gateway, spawn_ra,
    wait_healthy, wait_until,
};
use ra_mock::{Latency, MockServer};
use serde_json::{Value, json};

fn input(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let mut rng = Rng(7);
    let reqs: Vec<Value> = (0..n).map(|i| request(&mut rng, i, "")).collect();
    let path = dir.join(format!("in-{n}.jsonl"));
    std::fs::write(&path, jsonl(&reqs)).expect("write input");
    path
}

/// Writes a node's endpoints file atomically, as `ra-serve` does.
fn write_node(dir: &std::path::Path, node: &str, url: &str) {
    let file =
        rewardanything_client::EndpointsFile::new(vec![url.to_string()], ra_mock::DEFAULT_MODEL);
    file.write_atomic(&dir.join(format!("{node}.json")))
        .expect("write node file");
}

fn slow_mock() -> Mock {
    Mock::start(MockServer::builder().latency(Latency::from_millis(40)))
}

#[test]
fn score_follows_nodes_joining_and_leaving_an_endpoints_dir() {
    let a = slow_mock();
    let b = slow_mock();
    let work = tempfile::tempdir().expect("tempdir");
    let nodes = tempfile::tempdir().expect("tempdir");
    write_node(nodes.path(), "node-a", &a.url());
    std::fs::write(nodes.path().join("node-x.json"), "{\"endpoints\": [").expect("garbage");
    let inp = input(work.path(), 400);
    let out = work.path().join("out.jsonl");
    let mut child = spawn_ra(&[
        "score",
        "--input",
        s(&inp),
        "--output",
        s(&out),
        "--endpoints-dir",
        s(nodes.path()),
        "--concurrency",
        "2",
    ]);
    assert!(wait_until(Duration::from_secs(20), || a.chat_requests() >= 10));
    assert_eq!(b.chat_requests(), 0);
    write_node(nodes.path(), "node-b", &b.url());
    assert!(
        wait_until(Duration::from_secs(10), || b.chat_requests() > 0),
        "the new node takes traffic"
    );
    std::fs::remove_file(nodes.path().join("node-a.json")).expect("remove");
    // Drained: A gets nothing while B serves 30 more (with both in the set, A would
    // get about half of them).
    let mut since = (a.chat_requests(), b.chat_requests());
    assert!(
        wait_until(Duration::from_secs(20), || {
            let now = (a.chat_requests(), b.chat_requests());
            if now.0 != since.0 {
                since = now;
            }
            now.1 >= since.1 + 30
        }),
        "the node whose file left keeps getting traffic"
    );
    let a_at_switch = a.chat_requests();
    assert!(
        child.wait_timeout(Duration::from_secs(60)).is_some(),
        "run ends"
    );
    let run = child.finish(Duration::from_secs(1));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("node-x.json"),
        "the garbage file is named: {}",
        run.stderr
    );
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 400);
    assert!(lines.iter().all(|l| l["error"].is_null()));
    assert!(
        a.chat_requests() <= a_at_switch + 2,
        "at most requests already leased went to the node that left"
    );
    assert_eq!(
        a.chat_requests() + b.chat_requests(),
        400,
        "each judged once"
    );
}

#[test]
fn dns_entries_from_the_flag_the_config_and_the_environment() {
    let a = Mock::default_mock();
    let b = Mock::default_mock();
    let dns = |m: &Mock| m.url().replace("http://127.0.0.1", "dns+http://localhost");
    let work = tempfile::tempdir().expect("tempdir");
    let inp = input(work.path(), 20);
    let out = work.path().join("out.jsonl");
    let score = |extra: &[&str], env: Option<String>| {
        let mut args = vec!["score", "--input", s(&inp), "--output", s(&out)];
        args.extend_from_slice(extra);
        let mut cmd = common::ra_command(&args);
        cmd.env_remove("RA_ENDPOINT");
        if let Some(e) = env {
            cmd.env("RA_ENDPOINT", e);
        }
        let run = common::ChildGuard::spawn(cmd, None).finish(Duration::from_secs(60));
        assert_eq!(run.code, 0, "{}", run.stderr);
        let lines = read_jsonl(&out);
        assert_eq!(lines.len(), 20);
        assert!(lines.iter().all(|l| l["error"].is_null()), "{lines:?}");
    };
    // Flags: a name and a plain URL, one set.
    score(&["--endpoint", &dns(&a), "--endpoint", &b.url()], None);
    assert!(a.chat_requests() > 0 && b.chat_requests() > 0);
    assert_eq!(a.chat_requests() + b.chat_requests(), 20);
    // The environment: a comma-separated list.
    score(&[], Some(format!("{},{}", b.url(), dns(&a))));
    assert_eq!(a.chat_requests() + b.chat_requests(), 40);
    // The config file's api_base list.
    let config = work.path().join("config.json");
    std::fs::write(&config, json!({"api_base": [dns(&a)]}).to_string()).expect("config");
    let before = a.chat_requests();
    score(&["--config", s(&config)], None);
    assert_eq!(a.chat_requests(), before + 20);
}

#[test]
fn the_gateway_follows_an_endpoints_dir() {
    let a = Mock::default_mock();
    let b = Mock::default_mock();
    let nodes = tempfile::tempdir().expect("tempdir");
    let jobs = tempfile::tempdir().expect("tempdir");
    write_node(nodes.path(), "node-a", &a.url());
    let (mut child, base) = spawn_gateway(gateway_command(&[
        "--endpoints-dir",
        s(nodes.path()),
        "--base-output-path",
        s(jobs.path()),
    ]));
    let rt = runtime();
    let http = reqwest::Client::new();
    let judge = |i: usize| {
        let http = http.clone();
        let url = format!("{base}/api/rewardanything");
        async move {
            let r = http
                .post(url)
                .json(&json!({"principle": "p", "prompt": format!("q{i}"),
                              "responses": {"a": "x score=4", "b": "y score=2"}}))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.expect("JSON");
            assert_eq!(body["results"]["best-to-worst"], json!(["a", "b"]));
        }
    };
    rt.block_on(async {
        wait_healthy(&http, &base, &mut child).await;
        judge(0).await;
        assert_eq!(a.chat_requests(), 1);
        write_node(nodes.path(), "node-b", &b.url());
        std::fs::remove_file(nodes.path().join("node-a.json")).expect("remove");
        let mut i = 1;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while b.chat_requests() == 0 {
            assert!(std::time::Instant::now() < deadline, "B never took traffic");
            judge(i).await;
            i += 1;
        }
        let a_after = a.chat_requests();
        for j in 0..5 {
            judge(i + j).await;
        }
        assert_eq!(
            a.chat_requests(),
            a_after,
            "the node that left gets nothing"
        );
        assert_eq!(a.chat_requests() + b.chat_requests(), (i + 5) as u64);
    });
    drop(child);
}
