//! `ra gateway` end to end: the real binary, configured with `-c`, in front of the
//! in-process mock; auth from RA_GATEWAY_API_KEY; SIGTERM stops it with status 0.

mod common;

use std::time::{Duration, Instant};

use common::{ChildGuard, Mock, dead_url, free_port, ra_command, s};
use ra_mock::expected_score;
use serde_json::{Value, json};

#[test]
fn the_binary_serves_a_judgment_and_stops_cleanly_on_sigterm() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("server_config.json");
    let reference_config = json!({"api_base": mock.url(), "api_key": "dummy", "num_workers": 8});
    std::fs::write(&config, reference_config.to_string()).expect("write config");
    let port = free_port().to_string();
    let key = "gw-k3y-not-for-logs";
    let mut cmd = ra_command(&[
        "gateway",
        "-c",
        config.to_str().expect("utf-8 path"),
        "--port",
        &port,
        "--grace",
        "2",
        "--base-output-path",
        s(&dir.path().join("outputs")),
    ]);
    cmd.env("RA_GATEWAY_API_KEY", key).env("RA_LOG", "info");
    let mut child = ChildGuard::spawn(cmd, None);
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let http = reqwest::Client::new();
    rt.block_on(async {
        let started = Instant::now();
        loop {
            let up = http.get(format!("{base}/health")).send().await;
            if up.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the gateway did not become healthy"
            );
            assert!(
                child.child.try_wait().expect("try_wait").is_none(),
                "ra exited"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let request = json!({
            "principle": "Prefer the most helpful answer.",
            "prompt": "What is 2+2?",
            "responses": {"wordy": "Four, score=2", "terse": "4, score=5"},
            "mask_responses": true,
        });
        let url = format!("{base}/api/rewardanything");
        let refused = http.post(&url).json(&request).send().await.expect("send");
        assert_eq!(refused.status(), 401);
        let r = http
            .post(&url)
            .bearer_auth(key)
            .json(&request)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.expect("JSON");
        assert_eq!(
            body["results"]["scores"],
            json!({"wordy": expected_score("Four, score=2"), "terse": expected_score("4, score=5")})
        );
        assert_eq!(body["results"]["best-to-worst"], json!(["terse", "wordy"]));
    });
    child.signal(libc::SIGTERM);
    let run = child.finish(Duration::from_secs(10));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("listening on"), "{}", run.stderr);
    assert!(!run.stderr.contains(key), "the key is never printed");
    assert_eq!(mock.chat_requests(), 1);
}

#[test]
fn the_binary_starts_before_its_engine_and_reports_503_meanwhile() {
    let jobs = tempfile::tempdir().expect("tempdir");
    let port = free_port().to_string();
    let dead = dead_url();
    let mut child = ChildGuard::spawn(
        ra_command(&[
            "gateway",
            "--endpoint",
            &dead,
            "--model",
            "m",
            "--port",
            &port,
            "--base-output-path",
            s(jobs.path()),
        ]),
        None,
    );
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let http = reqwest::Client::new();
    rt.block_on(async {
        let started = Instant::now();
        let answer = loop {
            if let Ok(r) = http.get(format!("{base}/health")).send().await {
                break r;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the gateway did not start"
            );
            assert!(
                child.child.try_wait().expect("try_wait").is_none(),
                "ra exited"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(answer.status(), 503);
        let body: Value = answer.json().await.expect("JSON");
        assert_eq!(body["status"], "unhealthy", "{body}");
        assert!(
            body["reason"]
                .as_str()
                .expect("reason")
                .contains("no upstream endpoint answers")
        );
    });
    child.signal(libc::SIGTERM);
    let run = child.finish(Duration::from_secs(10));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("serving anyway"), "{}", run.stderr);
}

#[test]
fn a_port_in_use_is_a_clear_error_with_status_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let dead = dead_url();
    let jobs = tempfile::tempdir().expect("tempdir");
    let run = ChildGuard::spawn(
        ra_command(&[
            "gateway",
            "--endpoint",
            &dead,
            "--model",
            "m",
            "--port",
            &port,
            "--base-output-path",
            s(jobs.path()),
        ]),
        None,
    )
    .finish(Duration::from_secs(30));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        run.stderr
    );
}
