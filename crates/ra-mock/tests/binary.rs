//! The `ra-mock` binary: announces its URL, serves, stops on SIGTERM and on stdin EOF.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Kills the child if a test fails half-way, so it never outlives the test.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Guard, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ra-mock"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ra-mock");
    let stdout = child.stdout.take().expect("stdout");
    let guard = Guard(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read stdout");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (guard, base)
}

fn wait_exit(g: &mut Guard, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = g.0.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test]
async fn serves_then_exits_on_sigterm() {
    let (mut g, base) = spawn(&[
        "--port",
        "0",
        "--model",
        "m1",
        "--model",
        "m2",
        "--reasoning-shape",
        "reasoning",
        "--think-bytes",
        "100",
    ]);
    assert!(
        base.starts_with("http://127.0.0.1:") && base.ends_with("/v1"),
        "{base}"
    );
    let http = reqwest::Client::new();
    let models: Value = http
        .get(format!("{base}/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][1]["id"], "m2");
    let user =
        json!({"principle": "p", "prompt": "q", "responses": {"model-1": "a score=3"}}).to_string();
    let body = json!({"model": "m1", "messages": [{"role": "user", "content": user}]});
    let ok: Value = http
        .post(format!("{base}/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let msg = &ok["choices"][0]["message"];
    assert_eq!(
        msg["content"],
        r#"{"scores": {"model-1": 3}, "best-to-worst": ["model-1"]}"#
    );
    assert!(msg["reasoning"].as_str().unwrap().len() >= 100);

    let pid = g.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = wait_exit(&mut g, Duration::from_secs(5)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn exits_when_stdin_closes() {
    let (mut g, _) = spawn(&["--port", "0", "--exit-on-stdin-eof"]);
    drop(g.0.stdin.take());
    let status = wait_exit(&mut g, Duration::from_secs(5)).expect("exits on stdin EOF");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn fault_flag_applies_to_every_chat_request() {
    let (_g, base) = spawn(&["--port", "0", "--fault", "error-200"]);
    let user =
        json!({"principle": "p", "prompt": "q", "responses": {"model-1": "a score=3"}}).to_string();
    let body = json!({"messages": [{"role": "user", "content": user}]});
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let resp = http
            .post(format!("{base}/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            v["error"]["message"],
            "ra-mock: injected error in a 200 answer (error-200)"
        );
    }
}

#[test]
fn a_bad_fault_flag_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_ra-mock"))
        .args(["--fault", "huge-body:lots"])
        .stdin(Stdio::null())
        .output()
        .expect("run ra-mock");
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("huge-body:lots") && stderr.contains("huge-body:N"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "never started listening");
}

#[tokio::test]
async fn position_bias_flag_raises_the_first_shown_response() {
    let (_g, base) = spawn(&["--port", "0", "--position-bias", "2"]);
    let user = json!({"principle": "p", "prompt": "q",
                      "responses": {"model-1": "a score=2", "model-2": "b score=3"}})
    .to_string();
    let body = json!({"messages": [{"role": "user", "content": user}], "max_tokens": 4096});
    let answer: Value = reqwest::Client::new()
        .post(format!("{base}/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let content = answer["choices"][0]["message"]["content"].as_str().unwrap();
    let json_part = content.rsplit("</think>").next().unwrap().trim();
    let v: Value = serde_json::from_str(json_part).unwrap();
    assert_eq!(v["scores"], json!({"model-1": 4, "model-2": 3}));
    // Out of range: refused.
    let out = Command::new(env!("CARGO_BIN_EXE_ra-mock"))
        .args(["--position-bias", "9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// The README's examples name `http://127.0.0.1:8100/v1`: that is where `ra-mock` listens
/// without `--port`. On 127.0.0.77 (all of 127/8 is loopback on Linux) so that a mock a
/// user runs on 127.0.0.1:8100 does not collide with the test.
#[test]
fn listens_on_port_8100_by_default_and_a_busy_port_names_the_flag() {
    let (g, base) = spawn(&["--host", "127.0.0.77"]);
    assert_eq!(base, "http://127.0.0.77:8100/v1");
    // A second one on the same address cannot bind: the error says which flag to change.
    let out = Command::new(env!("CARGO_BIN_EXE_ra-mock"))
        .args(["--host", "127.0.0.77"])
        .stdin(Stdio::null())
        .output()
        .expect("run ra-mock");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("cannot bind 127.0.0.77:8100") && err.contains("--port"),
        "{err}"
    );
    drop(g);
}

/// `--replicas`: one process serves a fleet, each replica on its own port with its own
/// capacity, slowness and prefix cache; `--stats-file` reports each one at exit.
#[tokio::test]
async fn one_process_serves_many_replicas_some_slower_with_prefix_caches() {
    let dir = std::env::temp_dir().join(format!("ra-mock-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stats_path = dir.join("stats.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ra-mock"))
        .args(["--port", "0", "--replicas", "3", "--slow-replicas", "1"])
        .args([
            "--slow-factor",
            "5",
            "--latency-ms",
            "40",
            "--capacity",
            "2",
        ])
        .args([
            "--prefill-us-per-token",
            "1",
            "--attempt-log",
            "100",
            "--stats-file",
        ])
        .arg(&stats_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ra-mock");
    let stdout = child.stdout.take().expect("stdout");
    let mut g = Guard(child);
    let mut lines = BufReader::new(stdout).lines();
    let urls: Vec<String> = (0..3)
        .map(|_| {
            let line = lines.next().expect("a line").expect("read");
            line.strip_prefix("listening on ").expect(&line).to_owned()
        })
        .collect();
    let mut ports: Vec<&str> = urls.iter().map(|u| u.rsplit(':').next().unwrap()).collect();
    ports.dedup();
    assert_eq!(ports.len(), 3, "three distinct ports: {urls:?}");

    let http = reqwest::Client::new();
    let ask = |base: &str, responses: Value| {
        let user = json!({"principle": "p".repeat(300), "prompt": "q".repeat(300),
                          "responses": responses})
        .to_string();
        let body = json!({"messages": [{"role": "user", "content": user}], "max_tokens": 4096});
        http.post(format!("{base}/chat/completions"))
            .json(&body)
            .send()
    };
    for (i, base) in urls.iter().enumerate() {
        let started = Instant::now();
        let r = ask(base, json!({"model-1": "a", "model-2": "b"}))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let took = started.elapsed();
        // Lower bounds only: the slow replica holds 5 × 40 ms at least.
        let least = if i == 2 { 200 } else { 40 };
        assert!(
            took >= Duration::from_millis(least),
            "replica {i}: {took:?}"
        );
    }
    // Same principle and prompt again on replica 0: its prefix is cached there only.
    let r = ask(&urls[0], json!({"model-1": "c", "model-2": "d"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let kill = Command::new("kill")
        .args(["-TERM", &g.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(wait_exit(&mut g, Duration::from_secs(10)).is_some_and(|s| s.success()));
    let stats: Value = serde_json::from_slice(&std::fs::read(&stats_path).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let rows = stats["replicas"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    // The timeline is cumulative and ends with every answer counted.
    let ticks: Vec<u64> = serde_json::from_value(stats["ok_per_tick"].clone()).unwrap();
    assert!(ticks.windows(2).all(|w| w[0] <= w[1]), "{ticks:?}");
    assert_eq!(ticks.last().copied(), Some(4), "{ticks:?}");
    // Four answers, the slowest held 200 ms at least.
    assert_eq!(stats["sojourn_ms"]["count"], 4, "{stats}");
    assert!(
        stats["sojourn_ms"]["p99"].as_f64().unwrap() >= 200.0,
        "{stats}"
    );
    assert_eq!(rows[0]["ok"], 2);
    assert_eq!(rows[1]["ok"], 1);
    assert_eq!(rows[0]["url"], urls[0]);
    // Replica 0 prefilled its first prompt whole and then only the differing tail.
    let cached = rows[0]["cached_tokens"].as_u64().unwrap();
    assert!(cached >= 150, "the ~600-byte shared prefix hit: {stats}");
    assert_eq!(rows[1]["cached_tokens"], 0, "{stats}");
    assert!(
        rows[1]["prefilled_tokens"].as_u64().unwrap() > 150,
        "{stats}"
    );
}

#[test]
fn more_slow_replicas_than_replicas_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_ra-mock"))
        .args(["--port", "0", "--replicas", "2", "--slow-replicas", "3"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--slow-replicas 3"));
}
