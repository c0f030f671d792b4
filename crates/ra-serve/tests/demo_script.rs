//! `scripts/demo.sh` as a user re-runs it: nothing left to judge (no server started), a
//! busy port (the cause first, then the fix), and `--keep-server` (the server stays up,
//! its URL and how to stop it printed), with the fake engine standing in for llama.cpp
//! and stubs for `ra`, so that no model is downloaded and no release build is made.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An executable shell script `name` in `dir` with `body`.
fn stub(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `scripts/demo.sh ARGS` with a model and engine of the test's own (nothing installed),
/// `ra` a stub that succeeds, and `ra-serve` this build's.
fn demo(dir: &Path, marker: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let model = dir.join("m.gguf");
    std::fs::write(&model, b"GGUF").unwrap();
    let mut cmd = Command::new(repo().join("scripts/demo.sh"));
    cmd.args(args)
        .env("RA_TEST_MARKER", marker)
        .env("RA_DEMO_GGUF", &model)
        .env("RA_LLAMA_SERVER_BIN", fake_engine())
        .env("RA_BIN", stub(dir, "ra", "exit 0"))
        .env("RA_SERVE_BIN", env!("CARGO_BIN_EXE_ra-serve"))
        .env_remove("RA_DEMO_HOST")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run scripts/demo.sh")
}

fn input(dir: &Path, lines: usize) -> PathBuf {
    let path = dir.join("in.jsonl");
    let line = r#"{"principle": "p", "prompt": "q", "responses": {"a": "x", "b": "y"}}"#;
    std::fs::write(&path, format!("{line}\n").repeat(lines)).unwrap();
    path
}

#[test]
fn a_rerun_with_every_result_present_starts_no_server() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 2);
    let output = dir.path().join("out.jsonl");
    std::fs::write(
        &output,
        "{\"index\": 0, \"id\": \"q1\", \"scores\": {\"a\": 4, \"b\": 2}, \"ranking\": [\"a\", \"b\"], \"error\": null}\n\
         {\"index\": 1, \"id\": \"q2\", \"error\": {\"kind\": \"timeout\", \"message\": \"m\"}}\n",
    )
    .unwrap();
    let started = dir.path().join("ra-serve-ran");
    let m = marker();
    let out = demo(
        dir.path(),
        &m,
        &[input.to_str().unwrap(), output.to_str().unwrap()],
        &[(
            "RA_SERVE_BIN",
            stub(
                dir.path(),
                "ra-serve",
                &format!("touch {}", started.display()),
            )
            .to_str()
            .unwrap(),
        )],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("nothing to judge, no server started"),
        "{stderr}"
    );
    assert!(
        stdout.contains("q1") && stdout.contains("a=4, b=2") && stdout.contains("timeout"),
        "{stdout}"
    );
    assert!(!started.exists(), "ra-serve was run");
    assert_nothing_left(&m);
}

#[test]
fn a_busy_port_given_with_port_is_the_first_thing_said() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 1);
    let output = dir.path().join("out.jsonl");
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let m = marker();
    let out = demo(
        dir.path(),
        &m,
        &[
            "--port",
            &port,
            input.to_str().unwrap(),
            output.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "demo: port {port} on 127.0.0.1 is already in use by pid {}",
            std::process::id()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("choose other ports with --port"),
        "{stderr}"
    );
    assert!(!stderr.contains("resume"), "{stderr}");
    assert!(!output.exists());
    assert_nothing_left(&m);
}

/// Stops what the demo left running when the test ends, even when it fails: every
/// process carrying the test's marker (ra-serve first; it stops its engine).
struct Kept<'a>(&'a str);

impl Drop for Kept<'_> {
    fn drop(&mut self) {
        for pid in live_with_marker(self.0) {
            // SAFETY: kill(2) of a process this test started (it carries the marker).
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        wait_until(SLOW, || live_with_marker(self.0).is_empty());
    }
}

#[test]
fn port_8000_taken_picks_another_and_keep_server_leaves_it_running() {
    // All of 127/8 is loopback on Linux: the test's own 8000, never the user's.
    let host = "127.0.0.83";
    let _held = std::net::TcpListener::bind((host, 8000)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 1);
    let output = dir.path().join("out.jsonl");
    let log = repo().join("target/demo/ra-serve.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, "A STALE LINE OF AN EARLIER RUN\n").unwrap();
    let m = marker();
    let kept = Kept(&m);
    let out = demo(
        dir.path(),
        &m,
        &[
            "--keep-server",
            input.to_str().unwrap(),
            output.to_str().unwrap(),
        ],
        &[("RA_DEMO_HOST", host)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let busy = stderr
        .find(&format!(
            "demo: port 8000 on {host} is already in use by pid {}",
            std::process::id()
        ))
        .expect(&stderr);
    let picked = stderr.find("demo: using port 8001 instead").expect(&stderr);
    assert!(busy < picked, "{stderr}");
    let pid: u32 = stderr
        .split_once("keeps running (ra-serve pid ")
        .and_then(|(_, rest)| rest.split(')').next())
        .and_then(|p| p.parse().ok())
        .expect(&stderr);
    assert!(
        stderr.contains(&format!("(ra-serve pid {pid}) at http://{host}:8001/v1")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("stop it with: kill {pid}")),
        "{stderr}"
    );
    // Still serving after the demo has exited, and its log is this run's only.
    assert!(!gone(pid), "the kept server is gone");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("ready: 1 replica(s)"), "{text}");
    assert!(
        !text.contains("STALE LINE"),
        "an earlier run's log was kept: {text}"
    );
    // The way out it printed works: nothing is left.
    // SAFETY: kill(2) of the pid the demo printed, a process this test started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert!(
        wait_until(SLOW, || live_with_marker(&m).is_empty()),
        "kill {pid} left processes"
    );
    drop(kept);
}
