//! `ra gateway` end to end: the real binary, configured with `-c`, in front of the
//! in-process mock; auth from RA_GATEWAY_API_KEY; SIGTERM stops it with status 0.

mod common;

use std::time::Duration;

use common::{
    ChildGuard, Mock, dead_url, free_port, gateway_command, ra, ra_command, runtime, s,
    spawn_gateway, wait_healthy,
};
use ra_mock::expected_score;
use serde_json::{Value, json};

#[test]
fn the_binary_serves_a_judgment_and_stops_cleanly_on_sigterm() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("server_config.json");
    let reference_config = json!({"api_base": mock.url(), "api_key": "dummy", "num_workers": 8});
    std::fs::write(&config, reference_config.to_string()).expect("write config");
    let key = "gw-k3y-not-for-logs";
    let mut cmd = gateway_command(&[
        "-c",
        config.to_str().expect("utf-8 path"),
        "--grace",
        "2",
        "--base-output-path",
        s(&dir.path().join("outputs")),
    ]);
    cmd.env("RA_GATEWAY_API_KEY", key).env("RA_LOG", "info");
    let (mut child, base) = spawn_gateway(cmd);
    let rt = runtime();
    let http = reqwest::Client::new();
    rt.block_on(async {
        wait_healthy(&http, &base, &mut child).await;
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
    let dead = dead_url();
    let (child, base) = spawn_gateway(gateway_command(&[
        "--endpoint",
        &dead,
        "--model",
        "m",
        "--base-output-path",
        s(jobs.path()),
    ]));
    runtime().block_on(async {
        // Its engine is dead from the start: the very first answer is a 503.
        let answer = reqwest::get(format!("{base}/health"))
            .await
            .expect("the gateway answers");
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

#[test]
fn the_gateway_helper_fails_with_the_stderr_of_a_gateway_that_never_listened() {
    // Refused before it binds: the helper must say so at once, with the reason.
    let spawned = std::panic::catch_unwind(|| {
        spawn_gateway(gateway_command(&[
            "--endpoint",
            &dead_url(),
            "--max-jobs",
            "0",
        ]))
    });
    let message = match spawned {
        Ok((_, url)) => panic!("a gateway refusing its flags listened on {url}"),
        Err(e) => e.downcast::<String>().map(|m| *m).expect("a text panic"),
    };
    assert!(message.contains("exited before it listened"), "{message}");
    assert!(message.contains("--max-jobs"), "{message}");
}

/// Without `--port` the gateway listens on 8200, not on 8000 where the model server it
/// fronts (ra-serve, vLLM) listens. On 127.0.0.78 (all of 127/8 is loopback on Linux)
/// so that a gateway a user runs on 127.0.0.1:8200 does not collide with the test.
#[test]
fn the_default_port_is_8200_apart_from_the_model_servers_8000() {
    let jobs = tempfile::tempdir().expect("tempdir");
    let dead = dead_url();
    let (gw, base) = spawn_gateway(ra_command(&[
        "gateway",
        "--host",
        "127.0.0.78",
        "--endpoint",
        &dead,
        "--model",
        "m",
        "--base-output-path",
        s(jobs.path()),
    ]));
    assert_eq!(base, "http://127.0.0.78:8200");
    drop(gw);
}

/// A busy port: exit 2, the cause, then the flag that changes it.
#[test]
fn a_busy_port_names_the_flag_to_change() {
    let jobs = tempfile::tempdir().expect("tempdir");
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port().to_string();
    let dead = dead_url();
    let run = ra(
        &[
            "gateway",
            "--port",
            &port,
            "--endpoint",
            &dead,
            "--base-output-path",
            s(jobs.path()),
        ],
        b"",
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    let cause = run
        .stderr
        .find(&format!("cannot listen on 127.0.0.1:{port}"))
        .expect(&run.stderr);
    let fix = run
        .stderr
        .find("choose another port with --port")
        .expect(&run.stderr);
    assert!(cause < fix, "{}", run.stderr);
}

/// A gateway pointed at itself would answer /health 503 "HTTP 404" forever: refused at
/// start, naming the loop and the fix.
#[test]
fn an_upstream_that_is_the_gateway_itself_is_refused_at_start() {
    let jobs = tempfile::tempdir().expect("tempdir");
    let port = free_port().to_string();
    let own = format!("http://localhost:{port}/v1");
    let run = ra(
        &[
            "gateway",
            "--port",
            &port,
            "--endpoint",
            &own,
            "--base-output-path",
            s(jobs.path()),
        ],
        b"",
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "the upstream endpoint {own} is this gateway itself"
        )) && run.stderr.contains("point --endpoint at the model server"),
        "{}",
        run.stderr
    );
}

/// The shipped `examples/gateway-config.json` (what the README's `ra gateway -c` uses):
/// it names the demo's server (ra-serve's default port), parses, and the gateway judges
/// with it; `--endpoint` overrides its `api_base` so that the test needs no model.
#[test]
fn the_example_config_starts_a_gateway_that_judges() {
    let config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway-config.json");
    let text = std::fs::read_to_string(&config).expect("examples/gateway-config.json");
    let parsed: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(parsed["api_base"], "http://127.0.0.1:8000/v1");
    let mock = Mock::default_mock();
    let jobs = tempfile::tempdir().expect("tempdir");
    let (mut child, base) = spawn_gateway(gateway_command(&[
        "-c",
        s(&config),
        "--endpoint",
        &mock.url(),
        "--base-output-path",
        s(jobs.path()),
    ]));
    let rt = runtime();
    let http = reqwest::Client::new();
    rt.block_on(async {
        wait_healthy(&http, &base, &mut child).await;
        let r = http
            .post(format!("{base}/api/rewardanything"))
            .json(&json!({"principle": "p", "prompt": "q",
                          "responses": {"a": "x score=4", "b": "y score=2"}}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.expect("JSON");
        assert_eq!(body["results"]["best-to-worst"], json!(["a", "b"]));
    });
    drop(child);
}

#[test]
fn health_answers_promptly_under_a_flood_of_idle_connections() {
    use std::io::Write;
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    // A cap well below the flood (300 sockets stay within any usual fd limit); headers
    // may take the default 30 s, so waiting for idle ones to time out would be slow.
    let (mut child, base) = spawn_gateway(gateway_command(&[
        "--endpoint",
        &mock.url(),
        "--max-connections",
        "64",
        "--base-output-path",
        s(&dir.path().join("outputs")),
    ]));
    let rt = runtime();
    let http = reqwest::Client::new();
    rt.block_on(wait_healthy(&http, &base, &mut child));
    let addr = base.trim_start_matches("http://").to_string();
    let mut flood = Vec::new();
    for i in 0..300 {
        let mut conn = std::net::TcpStream::connect(&addr).expect("connect");
        // Some send nothing, some half a request line.
        if i % 2 == 0 {
            conn.write_all(b"GET /hea").expect("write");
        }
        flood.push(conn);
    }
    rt.block_on(async {
        let started = std::time::Instant::now();
        let r = http
            .get(format!("{base}/health"))
            .timeout(Duration::from_secs(15))
            .send()
            .await
            .expect("/health answers under the flood");
        assert_eq!(r.status(), 200);
        eprintln!(
            "/health under 300 idle connections: {:?}",
            started.elapsed()
        );
        let r = http
            .post(format!("{base}/api/rewardanything"))
            .timeout(Duration::from_secs(15))
            .json(&json!({
                "principle": "p", "prompt": "q",
                "responses": {"a": "x, score=4", "b": "y, score=2"},
            }))
            .send()
            .await
            .expect("a judgment under the flood");
        assert_eq!(r.status(), 200);
    });
    drop(flood);
    child.signal(libc::SIGTERM);
    let run = child.finish(Duration::from_secs(20));
    assert_eq!(run.code, 0, "{}", run.stderr);
}
