//! `ra-serve` on a cluster, through the binary with the fake engine: the endpoints file
//! names the advertised host, listening beyond loopback needs an API key (or an explicit
//! flag, said in the log), and SIGTERM removes the file before the engines stop.

mod common;

use common::*;
use ra_serve::EndpointsFile;

fn cmd(m: &str, dir: &std::path::Path, port: u16) -> std::process::Command {
    let mut cmd = ra_serve_cmd(m);
    cmd.arg("--vllm-bin")
        .arg(fake_engine())
        .args(["--gpus", "0", "--port", &port.to_string()])
        .args(["--poll-interval", "0.2", "--health-interval", "0.2"])
        .args(["--startup-timeout", "60"])
        .arg("--endpoints-file")
        .arg(dir.join("node-1.json"))
        .env_remove("RA_SERVE_API_KEY");
    cmd
}

#[test]
fn sigterm_removes_the_endpoints_file_while_the_engines_still_serve() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1);
    let m = marker();
    let mut c = cmd(&m, dir.path(), port);
    // The engine ignores SIGTERM: it serves until the grace period's SIGKILL.
    c.args(["--grace", "30"])
        .env("FAKE_ENGINE_IGNORE_SIGTERM", "1");
    let mut rs = RaServe::spawn(c, &m);
    let ep = dir.path().join("node-1.json");
    assert!(
        rs.wait_for_log("ready: 1 replica(s)", SLOW),
        "{}",
        rs.stderr()
    );
    assert!(ep.exists());
    rs.signal(libc::SIGTERM);
    assert!(
        wait_until(SLOW, || !ep.exists()),
        "endpoints file kept after SIGTERM: {}",
        rs.stderr()
    );
    // The file went first: the engine still answers, so readers drained a live node.
    assert_eq!(
        http_status(port, "/health", None),
        Some(200),
        "{}",
        rs.stderr()
    );
    assert!(
        rs.stderr().contains("removed the endpoints file"),
        "{}",
        rs.stderr()
    );
    rs.signal(libc::SIGTERM);
    let (code, _) = rs.wait_exit(SLOW);
    assert_eq!(code, Some(0), "{}", rs.stderr());
    assert_nothing_left(&m);
}

#[test]
fn beyond_loopback_needs_a_key_or_an_explicit_flag_and_advertises_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1);
    let m = marker();
    // Refused without a key.
    let mut c = cmd(&m, dir.path(), port);
    c.args(["--host", "0.0.0.0", "--dry-run"]);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("beyond loopback")
            && err.contains("RA_SERVE_API_KEY")
            && err.contains("--allow-no-api-key"),
        "{err}"
    );
    // With the explicit flag: served, said in the log, and the file names the advertised
    // host (0.0.0.0 covers 127.0.0.9, so the advertised URL answers here too).
    let mut c = cmd(&m, dir.path(), port);
    c.args([
        "--host",
        "0.0.0.0",
        "--allow-no-api-key",
        "--advertise-host",
        "127.0.0.9",
    ])
    .args(["--grace", "5"]);
    let mut rs = RaServe::spawn(c, &m);
    assert!(
        rs.wait_for_log("ready: 1 replica(s)", SLOW),
        "{}",
        rs.stderr()
    );
    assert!(
        rs.stderr().contains("WITHOUT an API key"),
        "{}",
        rs.stderr()
    );
    let file = EndpointsFile::read(&dir.path().join("node-1.json")).unwrap();
    assert_eq!(file.endpoints, [format!("http://127.0.0.9:{port}/v1")]);
    rs.signal(libc::SIGTERM);
    let (code, _) = rs.wait_exit(SLOW);
    assert_eq!(code, Some(0), "{}", rs.stderr());
    assert_nothing_left(&m);
    // With a key: no flag needed, and the log says the key is required.
    let mut c = cmd(&m, dir.path(), port);
    c.args([
        "--host",
        "0.0.0.0",
        "--advertise-host",
        "127.0.0.9",
        "--grace",
        "5",
    ])
    .env("RA_SERVE_API_KEY", "k-cluster");
    let mut rs = RaServe::spawn(c, &m);
    assert!(
        rs.wait_for_log("ready: 1 replica(s)", SLOW),
        "{}",
        rs.stderr()
    );
    assert!(
        rs.stderr().contains("require the API key"),
        "{}",
        rs.stderr()
    );
    assert!(
        !rs.stderr().contains("k-cluster"),
        "the key is never logged"
    );
    rs.signal(libc::SIGTERM);
    let (code, _) = rs.wait_exit(SLOW);
    assert_eq!(code, Some(0), "{}", rs.stderr());
    assert_nothing_left(&m);
}
