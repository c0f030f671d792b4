//! The `ra` subcommands stream: with stdin still open, each result appears on stdout as
//! soon as it is ready (flushed per line, or within 100 ms for `ra score`), so they work
//! in pipelines; and a server that dies mid-batch leaves error lines that
//! `--resume --retry-failed` redoes once it is back.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{Mock, Rng, jsonl, ra, ra_command, read_jsonl, request, wait_until};
use ra_mock::{Latency, MockServer};
use serde_json::Value;

/// Runs `ra ARGS`, writing `lines` one at a time and waiting (at most 5 s) for the
/// matching output line before writing the next, with stdin open throughout.
fn interactive(args: &[&str], lines: &[String]) -> Vec<Value> {
    let mut cmd = ra_command(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let child = cmd.spawn().expect("spawn ra");
    let mut guard = common::ChildGuardRaw(child);
    let mut stdin = guard.0.stdin.take().expect("stdin");
    let stdout = guard.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        stdin.write_all(line.as_bytes()).expect("write");
        stdin.write_all(b"\n").expect("write");
        stdin.flush().expect("flush");
        let out = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("no output for line {i} while stdin is open"));
        got.push(serde_json::from_str(&out).expect("JSON line"));
    }
    drop(stdin);
    let status = guard.0.wait().expect("wait");
    assert!(status.code().is_some(), "exited normally");
    got
}

#[test]
fn render_and_parse_answer_each_line_while_stdin_is_open() {
    let req = r#"{"principle": "p", "prompt": "q", "responses": {"a": "x", "b": "y"}}"#.to_string();
    let outs = interactive(&["render"], &[req.clone(), "oops".into(), req]);
    assert!(outs[0]["messages"].is_array());
    assert_eq!(outs[1]["error"]["line"], 1);
    assert_eq!(outs[2], outs[0]);

    let answer = r#"{"output_text": "{\"scores\": {\"model-1\": 3}, \"best-to-worst\": [\"model-1\"]}", "masked2real": {"model-1": "a"}}"#.to_string();
    let outs = interactive(&["parse"], &[answer.clone(), answer]);
    assert_eq!(outs[1]["ok"]["scores"]["a"], 3.0);
}

#[test]
fn score_streams_results_while_stdin_is_open() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let mut rng = Rng(4);
    let lines: Vec<String> = (0..4)
        .map(|i| request(&mut rng, i, "").to_string())
        .collect();
    let outs = interactive(
        &[
            "score",
            "--input",
            "-",
            "--output",
            "-",
            "--endpoint",
            &url,
            "--quiet",
        ],
        &lines,
    );
    for (i, out) in outs.iter().enumerate() {
        assert_eq!(out["index"], i);
        assert!(out["error"].is_null(), "{out}");
    }
}

#[test]
fn a_server_that_dies_mid_batch_leaves_errors_that_retry_failed_redoes() {
    let mock = Mock::start(MockServer::builder().latency(Latency::from_millis(20)));
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(8);
    let reqs: Vec<Value> = (0..30).map(|i| request(&mut rng, i, "")).collect();
    let inp = dir.path().join("in.jsonl");
    std::fs::write(&inp, jsonl(&reqs)).expect("write");
    let out = dir.path().join("out.jsonl");
    let p = |p: &std::path::Path| p.to_str().expect("UTF-8").to_string();
    let (inp_s, out_s) = (p(&inp), p(&out));
    let base = [
        "score",
        "--input",
        &inp_s,
        "--output",
        &out_s,
        "--endpoint",
        &url,
        "--concurrency",
        "4",
        "--max-retries",
        "1",
    ];
    let child = common::spawn_ra(&base);
    assert!(wait_until(Duration::from_secs(20), || mock.chat_requests() >= 8));
    mock.kill();
    let run = child.finish(Duration::from_secs(60));
    assert_eq!(
        run.code, 1,
        "the run finishes with failed lines: {}",
        run.stderr
    );
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 30, "every line answered, failed or not");
    let failed: Vec<usize> = (0..30).filter(|&i| !lines[i]["error"].is_null()).collect();
    assert!(!failed.is_empty());
    for &i in &failed {
        let kind = lines[i]["error"]["kind"].as_str().unwrap_or_default();
        assert!(
            ["transport", "timeout"].contains(&kind),
            "line {i}: {}",
            lines[i]
        );
    }

    mock.restart();
    let mut args = base.to_vec();
    args.extend(["--resume", "--retry-failed"]);
    let run = ra(&args, b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 30);
    for (i, (line, req)) in lines.iter().zip(&reqs).enumerate() {
        common::check_shape(line, i, &Value::Null);
        common::check_judged(line, req);
    }
}
