//! `scripts/score-batch.sh` end to end, with a fake `ra-serve` (a shell script that
//! records its arguments, writes the endpoints file pointing at the in-process mock after
//! a moment, and removes it when stopped) and the real `ra`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{ChildGuard, Mock, Rng, jsonl, read_jsonl, request, wait_until};
use ra_mock::{Latency, MockServer};
use serde_json::Value;

const FAKE_SERVE: &str = r#"#!/bin/sh
# Fake ra-serve: args are recorded; `--endpoints-file PATH` must come first.
printf '%s\n' "$@" > "$FAKE_DIR/args"
echo $$ > "$FAKE_DIR/pid"
[ "$1" = "--endpoints-file" ] || exit 9
ep=$2
echo "fake: engine slot log line" >&2
if [ -n "$FAKE_FAIL" ]; then echo "fake: cannot start" >&2; exit 1; fi
trap 'rm -f "$ep"; echo stopped > "$FAKE_DIR/stopped"; exit 0' TERM INT
sleep 0.3
printf '{"endpoints": ["%s"], "model": "RewardAnything-8B-v1", "pid": %d}' "$FAKE_URL" $$ > "$ep.tmp"
mv "$ep.tmp" "$ep"
while :; do sleep 0.05; done
"#;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/score-batch.sh")
}

struct Setup {
    dir: tempfile::TempDir,
    input: PathBuf,
    output: PathBuf,
    reqs: Vec<Value>,
}

fn setup(n: usize) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("fake-ra-serve");
    std::fs::write(&fake, FAKE_SERVE).expect("write fake");
    let status = Command::new("chmod")
        .arg("+x")
        .arg(&fake)
        .status()
        .expect("chmod");
    assert!(status.success());
    let mut rng = Rng(21);
    let reqs: Vec<Value> = (0..n).map(|i| request(&mut rng, i, "")).collect();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, jsonl(&reqs)).expect("write input");
    let output = dir.path().join("out.jsonl");
    Setup {
        dir,
        input,
        output,
        reqs,
    }
}

impl Setup {
    fn command(&self, url: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .arg(&self.input)
            .arg(&self.output)
            .args(extra)
            .env("RA_BIN", common::RA)
            .env("RA_SERVE_BIN", self.dir.path().join("fake-ra-serve"))
            .env("FAKE_DIR", self.dir.path())
            .env("FAKE_URL", url)
            .env("TMPDIR", self.dir.path())
            .env_remove("FAKE_FAIL")
            .env_remove("RA_API_KEY");
        cmd
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    fn server_alive(&self) -> bool {
        let pid = self.file("pid");
        !pid.trim().is_empty() && Path::new(&format!("/proc/{}", pid.trim())).exists()
    }

    /// Temporary directories the script left behind.
    fn leftovers(&self) -> usize {
        std::fs::read_dir(self.dir.path())
            .expect("read dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("score-batch."))
            .count()
    }
}

#[test]
fn script_serves_scores_and_stops_the_server() {
    let mock = Mock::default_mock();
    let s = setup(10);
    let cmd = s.command(
        &mock.url(),
        &[
            "--concurrency",
            "4",
            "--",
            "--port",
            "9000",
            "--gpus",
            "0,1",
        ],
    );
    let run = ChildGuard::spawn(cmd, None).finish(Duration::from_secs(60));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = read_jsonl(&s.output);
    assert_eq!(lines.len(), 10);
    for (line, req) in lines.iter().zip(&s.reqs) {
        common::check_judged(line, req);
    }
    let args: Vec<String> = s.file("args").lines().map(str::to_string).collect();
    assert_eq!(args[0], "--endpoints-file");
    assert_eq!(
        &args[2..],
        ["--port", "9000", "--gpus", "0,1"],
        "arguments after -- go to ra-serve"
    );
    assert_eq!(
        s.file("stopped").trim(),
        "stopped",
        "the server was stopped"
    );
    assert!(
        wait_until(Duration::from_secs(2), || !s.server_alive()),
        "no server left running"
    );
    assert_eq!(s.leftovers(), 0, "temporary files removed");

    // Again: the output is complete, so nothing is sent (the script resumes).
    let before = mock.chat_requests();
    let run = ChildGuard::spawn(s.command(&mock.url(), &[]), None).finish(Duration::from_secs(60));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(mock.chat_requests(), before);
}

#[test]
fn script_fails_cleanly_when_the_server_does_not_start() {
    let mock = Mock::default_mock();
    let s = setup(3);
    let mut cmd = s.command(&mock.url(), &[]);
    cmd.env("FAKE_FAIL", "1");
    let run = ChildGuard::spawn(cmd, None).finish(Duration::from_secs(30));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("before it was ready"), "{}", run.stderr);
    assert!(!s.output.exists(), "nothing scored");
    assert_eq!(mock.chat_requests(), 0);
    assert_eq!(s.leftovers(), 0);

    // Usage errors.
    let mut cmd = Command::new("bash");
    cmd.arg(script()).arg("only-one-argument");
    let run = ChildGuard::spawn(cmd, None).finish(Duration::from_secs(10));
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("Usage"), "{}", run.stderr);
}

#[test]
fn script_sends_server_output_to_ra_serve_log() {
    let mock = Mock::default_mock();
    let s = setup(2);
    let log = s.dir.path().join("serve.log");
    let mut cmd = s.command(&mock.url(), &[]);
    cmd.env("RA_SERVE_LOG", &log);
    let run = ChildGuard::spawn(cmd, None).finish(Duration::from_secs(60));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stderr.contains("engine slot log line"),
        "the terminal stays clean: {}",
        run.stderr
    );
    assert!(
        std::fs::read_to_string(&log)
            .expect("log")
            .contains("engine slot log line")
    );
    assert_eq!(read_jsonl(&s.output).len(), 2);

    // A server that fails to start: its last log lines are shown.
    std::fs::remove_file(&s.output).expect("rm");
    let mut cmd = s.command(&mock.url(), &[]);
    cmd.env("RA_SERVE_LOG", &log).env("FAKE_FAIL", "1");
    let run = ChildGuard::spawn(cmd, None).finish(Duration::from_secs(30));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("fake: cannot start"), "{}", run.stderr);
}

#[test]
fn script_sigterm_stops_scoring_and_server_then_resumes() {
    let mock = Mock::start(MockServer::builder().latency(Latency::from_millis(50)));
    let s = setup(80);
    let child = ChildGuard::spawn(s.command(&mock.url(), &["--concurrency", "2"]), None);
    assert!(
        wait_until(Duration::from_secs(20), || common::complete_lines(
            &s.output
        ) >= 5),
        "scoring started"
    );
    child.signal(libc::SIGTERM);
    let run = child.finish(Duration::from_secs(15));
    assert_eq!(run.code, 143, "{}", run.stderr);
    assert_eq!(
        s.file("stopped").trim(),
        "stopped",
        "the server was stopped"
    );
    assert!(wait_until(Duration::from_secs(2), || !s.server_alive()));
    let partial = common::complete_lines(&s.output);
    assert!(partial >= 5, "{partial}");

    let run = ChildGuard::spawn(s.command(&mock.url(), &["--concurrency", "8"]), None)
        .finish(Duration::from_secs(60));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = read_jsonl(&s.output);
    assert_eq!(lines.len(), 80);
    for (i, (line, req)) in lines.iter().zip(&s.reqs).enumerate() {
        common::check_shape(line, i, &Value::Null);
        common::check_judged(line, req);
    }
}
