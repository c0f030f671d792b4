//! `ra-serve` against the fake engine: readiness, timeouts, restarts,
//! shutdown, orphans, API keys and the endpoints file.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ra_serve::EndpointsFile;

/// `ra-serve` with the fake engine as vLLM on `port`, fast timings, recording into `dir`.
fn vllm_cmd(m: &str, dir: &std::path::Path, port: u16, gpus: &str) -> std::process::Command {
    let mut cmd = ra_serve_cmd(m);
    cmd.arg("--vllm-bin")
        .arg(fake_engine())
        .args(["--gpus", gpus, "--port", &port.to_string()])
        .args([
            "--grace",
            "5",
            "--poll-interval",
            "0.2",
            "--health-interval",
            "0.2",
        ])
        .args(["--restart-backoff", "0.2", "--startup-timeout", "60"])
        .arg("--endpoints-file")
        .arg(dir.join("endpoints.json"))
        .env("FAKE_ENGINE_RECORD", dir.join("record.jsonl"));
    cmd
}

#[test]
fn waits_for_readiness_writes_endpoints_file_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(2);
    let m = marker();
    let mut cmd = vllm_cmd(&m, dir.path(), port, "0,1");
    cmd.env("FAKE_ENGINE_REFUSE_SECS", "0.5")
        .env("FAKE_ENGINE_LOADING_SECS", "1.5")
        .env("FAKE_ENGINE_GRANDCHILD", "group");
    let started = Instant::now();
    let mut rs = RaServe::spawn(cmd, &m);
    let ep_path = dir.path().join("endpoints.json");
    assert!(
        wait_until(SLOW, || ep_path.exists()),
        "no endpoints file; stderr:\n{}",
        rs.stderr()
    );
    // Ready means ready: both engines answer /health with 200 by now, and
    // the file did not appear before the engines finished "loading" (0.5 s
    // refusing + 1.5 s of 503 from their own start, which is after `started`:
    // a lower bound that no slow machine can break).
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "ready too early"
    );
    assert_eq!(http_status(port, "/health", None), Some(200));
    assert_eq!(http_status(port + 1, "/health", None), Some(200));
    let ep = EndpointsFile::read(&ep_path).unwrap();
    assert_eq!(
        ep.endpoints,
        vec![
            format!("http://127.0.0.1:{port}/v1"),
            format!("http://127.0.0.1:{}/v1", port + 1)
        ]
    );
    assert_eq!(ep.model.as_deref(), Some(ra_serve::DEFAULT_MODEL));
    assert_eq!(ep.pid, Some(rs.pid()));
    assert!(rs.wait_for_log("ready: 2 replica(s)", SLOW));
    assert!(rs.stderr().contains("[replica 1] fake engine listening"));

    // Each replica ran exactly the documented command on its own GPU.
    let recs = records(&dir.path().join("record.jsonl"));
    assert_eq!(recs.len(), 2);
    for rec in &recs {
        let argv: Vec<&str> = rec["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let p: u16 = argv[argv.iter().position(|a| *a == "--port").unwrap() + 1]
            .parse()
            .unwrap();
        let i = usize::from(p - port);
        assert_eq!(
            argv[1..],
            [
                "serve",
                ra_serve::DEFAULT_MODEL,
                "--host",
                "127.0.0.1",
                "--port",
                &p.to_string(),
                "--tensor-parallel-size",
                "1",
                "--served-model-name",
                ra_serve::DEFAULT_MODEL,
                "--max-model-len",
                "32768",
                "--gpu-memory-utilization",
                "0.9",
                "--enable-prefix-caching"
            ]
        );
        assert_eq!(rec["env"]["CUDA_VISIBLE_DEVICES"], i.to_string());
        assert!(rec["env"].get("VLLM_API_KEY").is_none());
    }
    assert!(!live_with_marker(&m).is_empty());

    rs.signal(libc::SIGTERM);
    let (code, _) = rs.wait_exit(SLOW);
    assert_eq!(code, Some(0), "stderr:\n{}", rs.stderr());
    // The engines stopped on SIGTERM, within the grace period.
    assert!(!rs.stderr().contains("sending SIGKILL"), "{}", rs.stderr());
    assert!(!ep_path.exists(), "endpoints file not removed");
    // Engines and their grandchildren are gone by the time ra-serve exits.
    assert_nothing_left(&m);
}

#[test]
fn startup_timeout_kills_the_engine_and_reports_the_likely_cause() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1);
    let m = marker();
    let mut cmd = vllm_cmd(&m, dir.path(), port, "0");
    cmd.args(["--startup-timeout", "2"])
        .env("FAKE_ENGINE_LOADING_SECS", "1000")
        .env("FAKE_ENGINE_GRANDCHILD", "session")
        .env(
            "FAKE_ENGINE_SAY",
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        );
    // Measured from before the start: a lower bound no slow machine can break.
    let started = Instant::now();
    let mut rs = RaServe::spawn(cmd, &m);
    let (code, _) = rs.wait_exit(SLOW);
    let err = rs.stderr();
    assert_eq!(code, Some(2), "{err}");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2), "gave up after {took:?}");
    assert!(
        err.contains("replica 0 was not ready within 2 s (last probe: /health answered 503 Service Unavailable)"),
        "{err}"
    );
    assert!(err.contains("likely cause: CUDA out of memory"), "{err}");
    assert!(err.contains("--- last"), "no log tail: {err}");
    assert!(!dir.path().join("endpoints.json").exists());
    assert_nothing_left(&m);
}

#[test]
fn early_exit_during_startup_is_reported_with_the_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1);
    let m = marker();
    let mut cmd = vllm_cmd(&m, dir.path(), port, "0");
    cmd.env("FAKE_ENGINE_LOADING_SECS", "1000")
        .env("FAKE_ENGINE_CRASH_AFTER_SECS", "0.5")
        .env(
            "FAKE_ENGINE_SAY",
            "OSError: nobody/nothing is not a local folder and is not a valid model identifier",
        );
    let mut rs = RaServe::spawn(cmd, &m);
    let (code, _) = rs.wait_exit(SLOW);
    let err = rs.stderr();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("exited during startup (exit status 3)"),
        "{err}"
    );
    assert!(err.contains("the model could not be found"), "{err}");
    // Not restarted: a start-up failure repeats itself.
    assert_eq!(records(&dir.path().join("record.jsonl")).len(), 1);
    assert_nothing_left(&m);
}

#[test]
fn crashed_replica_restarts_with_backoff_and_rejoins_the_endpoints_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1);
    let m = marker();
    let mut cmd = vllm_cmd(&m, dir.path(), port, "0");
    let hits = dir.path().join("hits");
    cmd.env("FAKE_ENGINE_CRASH_AFTER_SECS", "1")
        .env("FAKE_ENGINE_CRASH_STARTS", "2")
        .env("FAKE_ENGINE_STATE", dir.path().join("starts"))
        .env("FAKE_ENGINE_HITS", &hits);
    let mut rs = RaServe::spawn(cmd, &m);
    assert!(
        rs.wait_for_log("restarting in 0.4 s (restart 2", SLOW),
        "{}",
        rs.stderr()
    );
    assert!(rs.stderr().contains("restarting in 0.2 s (restart 1"));
    let rec = dir.path().join("record.jsonl");
    assert!(
        wait_until(SLOW, || records(&rec).len() == 3),
        "{}",
        rs.stderr()
    );
    // The third start stays up and is listed again.
    let ep_path = dir.path().join("endpoints.json");
    assert!(wait_until(SLOW, || {
        EndpointsFile::read(&ep_path).is_ok_and(|e| e.endpoints.len() == 1)
            && http_status(port, "/health", None) == Some(200)
    }));
    // Five more health checks answered (more than --health-failures, 3): a
    // healthy replica is left alone, however long the checks take to come.
    let health_hits = || {
        std::fs::read_to_string(&hits)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with(" /health"))
            .count()
    };
    let seen = health_hits();
    assert!(
        wait_until(SLOW, || health_hits() >= seen + 5),
        "{}",
        rs.stderr()
    );
    assert_eq!(records(&rec).len(), 3, "restarted a healthy replica");
    let pids: Vec<u64> = records(&rec)
        .iter()
        .map(|r| r["pid"].as_u64().unwrap())
        .collect();
    assert!(gone(pids[0] as u32) && gone(pids[1] as u32));
    rs.signal(libc::SIGINT);
    let (code, _) = rs.wait_exit(SLOW);
    assert_eq!(code, Some(0), "{}", rs.stderr());
    assert_nothing_left(&m);
}

#[test]
fn a_replica_out_of_restarts_is_dropped_while_the_others_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(2);
    let m = marker();
    let mut cmd = vllm_cmd(&m, dir.path(), port, "0,1");
    cmd.args(["--max-restarts", "2"])
        .env("FAKE_ENGINE_CRASH_AFTER_SECS", "1")
        .env("FAKE_ENGINE_FAULTY_PORT", (port + 1).to_string());
    let mut rs = RaServe::spawn(cmd, &m);
    assert!(
        rs.wait_for_log(
            "[replica 1] exited unexpectedly (exit status 3); dropped",
            SLOW
        ),
        "{}",
        rs.stderr()
    );
    let ep_path = dir.path().join("endpoints.json");
    // The log line comes from the replica's task; the file is rewritten when the
    // supervisor takes its event: poll rather than race it.
    let only_0 = vec![format!("http://127.0.0.1:{port}/v1")];
    assert!(
        wait_until(SLOW, || EndpointsFile::read(&ep_path)
            .is_ok_and(|ep| ep.endpoints == only_0)),
        "{:?}",
        EndpointsFile::read(&ep_path)
    );
    // Replica 1 ran 1 + 2 times; replica 0 once and still serves.
    let recs = records(&dir.path().join("record.jsonl"));
    assert_eq!(recs.len(), 4, "{}", rs.stderr());
    assert_eq!(http_status(port, "/health", None), Some(200));
    assert!(
        rs.child.try_wait().unwrap().is_none(),
        "ra-serve gave up with a healthy replica"
    );
    rs.signal(libc::SIGTERM);
    let (code, _) = rs.wait_exit(SLOW);
    assert_eq!(code, Some(0), "{}", rs.stderr());
    assert_nothing_left(&m);
}

#[test]
fn failing_health_checks_restart_and_finally_stop_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1);
    let m = marker();
    let mut cmd = vllm_cmd(&m, dir.path(), port, "0");
    cmd.args([
        "--max-restarts",
        "1",
        "--health-failures",
        "2",
        "--grace",
        "1",
    ])
    .env("FAKE_ENGINE_UNHEALTHY_AFTER_SECS", "1");
    let mut rs = RaServe::spawn(cmd, &m);
    let (code, _) = rs.wait_exit(SLOW);
    let err = rs.stderr();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("failed 2 health checks in a row; restarting"),
        "{err}"
    );
    assert!(err.contains("every replica was dropped"), "{err}");
    assert_eq!(records(&dir.path().join("record.jsonl")).len(), 2);
    assert!(!dir.path().join("endpoints.json").exists());
    assert_nothing_left(&m);
}

#[test]
fn an_engine_ignoring_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1);
    let m = marker();
    let mut cmd = vllm_cmd(&m, dir.path(), port, "0");
    cmd.args(["--grace", "1.5"])
        .env("FAKE_ENGINE_IGNORE_SIGTERM", "1")
        .env("FAKE_ENGINE_GRANDCHILD", "session");
    let mut rs = RaServe::spawn(cmd, &m);
    assert!(
        rs.wait_for_log("ready: 1 replica(s)", SLOW),
        "{}",
        rs.stderr()
    );
    // Measured from before the signal: a lower bound no slow machine can break.
    let signalled = Instant::now();
    rs.signal(libc::SIGTERM);
    let (code, _) = rs.wait_exit(SLOW);
    assert_eq!(code, Some(0), "{}", rs.stderr());
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "did not wait the grace period: {took:?}"
    );
    assert!(
        rs.stderr()
            .contains("still running after 1.5 s grace; sending SIGKILL")
    );
    assert_nothing_left(&m);
}

#[test]
fn a_second_signal_kills_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1);
    let m = marker();
    let mut cmd = vllm_cmd(&m, dir.path(), port, "0");
    // A grace period no test run reaches: only the second signal can end it.
    cmd.args(["--grace", "100000"])
        .env("FAKE_ENGINE_IGNORE_SIGTERM", "1");
    let mut rs = RaServe::spawn(cmd, &m);
    assert!(
        rs.wait_for_log("ready: 1 replica(s)", SLOW),
        "{}",
        rs.stderr()
    );
    rs.signal(libc::SIGINT);
    assert!(rs.wait_for_log("shutting down", SLOW));
    assert!(rs.child.try_wait().unwrap().is_none());
    rs.signal(libc::SIGINT);
    // wait_exit fails after 60 s, far below the grace period.
    let (code, _) = rs.wait_exit(SLOW);
    assert_eq!(code, Some(0), "{}", rs.stderr());
    assert!(
        rs.stderr()
            .contains("second signal: killing every engine now"),
        "{}",
        rs.stderr()
    );
    assert_nothing_left(&m);
}

#[test]
fn sigkill_of_ra_serve_leaves_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(2);
    let m = marker();
    let mut cmd = vllm_cmd(&m, dir.path(), port, "0,1");
    // One grandchild stays in the engine's group, the other escapes into its own session.
    cmd.env("FAKE_ENGINE_IGNORE_SIGTERM", "1")
        .env("FAKE_ENGINE_GRANDCHILD", "session");
    let mut rs = RaServe::spawn(cmd, &m);
    assert!(
        rs.wait_for_log("ready: 2 replica(s)", SLOW),
        "{}",
        rs.stderr()
    );
    let recs = records(&dir.path().join("record.jsonl"));
    let grandchildren: Vec<u32> = recs
        .iter()
        .map(|r| r["grandchild"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(grandchildren.len(), 2);
    assert!(grandchildren.iter().all(|p| !gone(*p)));
    // engines + grandchildren + reapers + ra-serve
    assert!(
        live_with_marker(&m).len() >= 7,
        "{:?}",
        live_with_marker(&m)
    );
    rs.signal(libc::SIGKILL);
    let _ = rs.wait_exit(SLOW);
    let start = Instant::now();
    assert_no_leftovers(&m, SLOW);
    assert!(grandchildren.iter().all(|p| gone(*p)));
    eprintln!("everything gone {:?} after SIGKILL", start.elapsed());
    // The reaper also removes the endpoints file of a dead supervisor.
    assert!(wait_until(SLOW, || !dir
        .path()
        .join("endpoints.json")
        .exists()));
}

#[test]
fn a_busy_port_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(2);
    let _held = std::net::TcpListener::bind(("127.0.0.1", port + 1)).unwrap();
    let m = marker();
    let cmd = vllm_cmd(&m, dir.path(), port, "0,1");
    let mut rs = RaServe::spawn(cmd, &m);
    let (code, _) = rs.wait_exit(SLOW);
    let err = rs.stderr();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "port {} on 127.0.0.1 is already in use by pid {}",
            port + 1,
            std::process::id()
        )),
        "{err}"
    );
    assert!(
        records(&dir.path().join("record.jsonl")).is_empty(),
        "an engine was started"
    );
}

#[test]
fn the_api_key_reaches_the_engine_only_through_its_environment() {
    let key = format!("sk-test-{}", marker());
    for engine in ["vllm", "llama-cpp"] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_ports(1);
        let m = marker();
        let mut cmd = if engine == "vllm" {
            vllm_cmd(&m, dir.path(), port, "0")
        } else {
            let model = dir.path().join("model.gguf");
            std::fs::write(&model, b"GGUF").unwrap();
            let mut c = ra_serve_cmd(&m);
            c.args([
                "--engine",
                "llama-cpp",
                "--port",
                &port.to_string(),
                "--poll-interval",
                "0.2",
            ])
            .arg("--model")
            .arg(&model)
            .arg("--llama-server-bin")
            .arg(fake_engine())
            .env("FAKE_ENGINE_RECORD", dir.path().join("record.jsonl"));
            c
        };
        cmd.env("RA_SERVE_API_KEY", &key)
            .env("FAKE_ENGINE_SAY", "loaded; api key is {key}");
        let mut rs = RaServe::spawn(cmd, &m);
        // The fake demands the key on /v1/models, so readiness proves the probe sends it.
        assert!(
            rs.wait_for_log("ready: 1 replica(s)", SLOW),
            "{}",
            rs.stderr()
        );
        assert_eq!(http_status(port, "/v1/models", None), Some(401));
        assert_eq!(http_status(port, "/v1/models", Some(&key)), Some(200));
        let rec = &records(&dir.path().join("record.jsonl"))[0];
        let env_var = if engine == "vllm" {
            "VLLM_API_KEY"
        } else {
            "LLAMA_API_KEY"
        };
        assert_eq!(rec["env"][env_var], key.as_str());
        assert!(
            !rec["argv"].to_string().contains(&key),
            "key on the command line: {}",
            rec["argv"]
        );
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", rec["pid"])).unwrap();
        assert!(!String::from_utf8_lossy(&cmdline).contains(&key));
        rs.signal(libc::SIGTERM);
        let (code, _) = rs.wait_exit(SLOW);
        assert_eq!(code, Some(0));
        let err = rs.stderr();
        assert!(err.contains("[replica 0] loaded; api key is ***"), "{err}");
        assert!(err.contains(&format!("{env_var}='***'")), "{err}");
        assert!(!err.contains(&key), "key in the logs: {err}");
        assert_nothing_left(&m);
    }
}

#[test]
fn llama_cpp_runs_the_documented_command_and_accepts_its_models_shape() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("RewardAnything-8B-v1-Q4_K_M.gguf");
    std::fs::write(&model, b"GGUF").unwrap();
    let port = free_ports(2);
    let m = marker();
    let mut cmd = ra_serve_cmd(&m);
    cmd.args([
        "--engine",
        "llama-cpp",
        "--port",
        &port.to_string(),
        "--replicas",
        "2",
    ])
    .args([
        "--parallel",
        "2",
        "--max-model-len",
        "4096",
        "--threads",
        "3",
    ])
    .args(["--poll-interval", "0.2", "--startup-timeout", "60"])
    .arg("--model")
    .arg(&model)
    .arg("--endpoints-file")
    .arg(dir.path().join("ep.json"))
    .env("RA_LLAMA_SERVER_BIN", fake_engine())
    .env("FAKE_ENGINE_MODELS_SHAPE", "llama")
    .env("FAKE_ENGINE_RECORD", dir.path().join("record.jsonl"))
    .args(["--", "--no-webui"]);
    let mut rs = RaServe::spawn(cmd, &m);
    assert!(
        rs.wait_for_log("ready: 2 replica(s)", SLOW),
        "{}",
        rs.stderr()
    );
    let ep = EndpointsFile::read(&dir.path().join("ep.json")).unwrap();
    assert_eq!(ep.model.as_deref(), Some("RewardAnything-8B-v1-Q4_K_M"));
    let mut recs = records(&dir.path().join("record.jsonl"));
    recs.sort_by_key(|r| r["argv"].to_string());
    let argv: Vec<String> = recs[0]["argv"].as_array().unwrap()[1..]
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let model_s = model.to_string_lossy().to_string();
    let expect: Vec<String> = [
        "-m",
        &model_s,
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "-c",
        "8192",
        "-np",
        "2",
        "-t",
        "3",
        "--alias",
        "RewardAnything-8B-v1-Q4_K_M",
        "--no-webui",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(argv, expect);
    assert!(recs[0]["env"].get("CUDA_VISIBLE_DEVICES").is_none());
    rs.signal(libc::SIGTERM);
    assert_eq!(rs.wait_exit(SLOW).0, Some(0));
    assert_nothing_left(&m);
}

#[test]
fn sigkill_of_a_reaper_or_guard_takes_the_engine_and_its_children_down() {
    // vLLM's workers are the engine's children and hold the GPU memory:
    // losing the reaper (or the guard between it and the engine) must not
    // leave them running, in the engine's process group or escaped into
    // their own session.
    for (victim, mode) in [
        ("reaper", "group"),
        ("reaper", "session"),
        ("guard", "session"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_ports(1);
        let m = marker();
        let mut cmd = vllm_cmd(&m, dir.path(), port, "0");
        cmd.env("FAKE_ENGINE_GRANDCHILD", mode);
        let mut rs = RaServe::spawn(cmd, &m);
        assert!(
            rs.wait_for_log("ready: 1 replica(s)", SLOW),
            "{}",
            rs.stderr()
        );
        let rec = dir.path().join("record.jsonl");
        let first = records(&rec)[0].clone();
        let engine = first["pid"].as_u64().unwrap() as u32;
        let grandchild = first["grandchild"].as_u64().unwrap() as u32;
        let reaper = child_of_on_path(engine, rs.pid()).expect("engine not below ra-serve");
        let guard = ppid(engine).unwrap();
        assert!(reaper != engine && guard != reaper && guard != engine);
        assert!(!gone(engine) && !gone(grandchild));
        let pid = if victim == "reaper" { reaper } else { guard };
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
        assert!(
            wait_until(SLOW, || gone(engine) && gone(grandchild)),
            "{victim}/{mode}: engine alive: {}, grandchild alive: {}",
            !gone(engine),
            !gone(grandchild)
        );
        // The supervisor sees a dead replica and starts a new one.
        assert!(
            wait_until(SLOW, || records(&rec).len() == 2),
            "{}",
            rs.stderr()
        );
        assert!(
            rs.wait_for_log("exited unexpectedly", SLOW),
            "{}",
            rs.stderr()
        );
        rs.signal(libc::SIGTERM);
        let (code, _) = rs.wait_exit(SLOW);
        assert_eq!(code, Some(0), "{}", rs.stderr());
        assert_no_leftovers(&m, SLOW);
    }
}
