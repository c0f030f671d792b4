//! `ra score --resume` end to end: SIGKILL at random points (and cuts at random byte
//! offsets) then `--resume` gives the uninterrupted run's file byte for byte (latency and
//! attempt counts aside); `--retry-failed`; a changed input is refused with the output
//! untouched; SIGTERM stops within seconds and leaves a resumable output.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Mock, Rng, complete_lines, jsonl, normalize, ra, request, s, spawn_ra, wait_until};
use ra_mock::{Latency, MockServer};
use serde_json::{Value, json};

/// An input of `n` lines with deterministic faults (the same outcome on every run), a
/// blank and a bad line, CRLF ends and unmasked lines.
fn mixed_input(dir: &Path, n: usize) -> PathBuf {
    let mut rng = Rng(7);
    let mut text = String::new();
    for i in 0..n {
        let extra = match i % 13 {
            4 => " [[fault:400]]",
            9 => " [[fault:malformed]]",
            _ => "",
        };
        let mut req = request(&mut rng, i, extra);
        req["id"] = json!(format!("item-{i}"));
        if i % 6 == 1 {
            req["mask_responses"] = json!(false);
        }
        let line = match i {
            17 => String::new(),
            31 => "{\"id\": \"broken\", \"prompt\": 3".to_string(),
            _ => req.to_string(),
        };
        text.push_str(&line);
        text.push_str(if i % 4 == 0 { "\r\n" } else { "\n" });
    }
    let path = dir.join("in.jsonl");
    std::fs::write(&path, text).expect("write input");
    path
}

fn score_args<'a>(inp: &'a Path, out: &'a Path, url: &'a str) -> Vec<&'a str> {
    vec![
        "score",
        "--input",
        s(inp),
        "--output",
        s(out),
        "--endpoint",
        url,
        "--concurrency",
        "3",
        "--max-retries",
        "0",
    ]
}

/// A complete, uninterrupted run's output.
fn baseline(inp: &Path, dir: &Path, url: &str) -> String {
    let out = dir.join("baseline.jsonl");
    let run = ra(&score_args(inp, &out, url), b"");
    assert_eq!(
        run.code, 1,
        "the mixed input has failing lines: {}",
        run.stderr
    );
    std::fs::read_to_string(&out).expect("baseline output")
}

/// Checks a (possibly interrupted) output: whole JSON lines numbered 0, 1, 2, … plus at
/// most one partial last line. Returns the number of whole lines.
fn check_resumable(path: &Path) -> usize {
    let bytes = std::fs::read(path).unwrap_or_default();
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let text = std::str::from_utf8(&bytes[..whole]).expect("UTF-8 output");
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {i} {line:?}: {e}"));
        assert_eq!(v["index"], json!(i), "lines stay in order");
        n += 1;
    }
    n
}

fn assert_same_run(got: &str, want: &str, what: &str) {
    if normalize(got) != normalize(want) {
        let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
        let first = (0..g.len().max(w.len()))
            .find(|&i| g.get(i).map(|l| normalize(l)) != w.get(i).map(|l| normalize(l)));
        panic!(
            "{what}: output differs from the uninterrupted run ({} vs {} lines); first difference at line {first:?}:\n got  {:?}\n want {:?}",
            g.len(),
            w.len(),
            first.and_then(|i| g.get(i)),
            first.and_then(|i| w.get(i)),
        );
    }
}

fn slow_mock() -> Mock {
    Mock::start(MockServer::builder().latency(Latency::uniform(
        Duration::from_millis(20),
        Duration::from_millis(60),
    )))
}

#[test]
fn resume_after_sigkill_at_random_points_matches_an_uninterrupted_run() {
    let mut rng = Rng::from_env_or_time("resume_after_sigkill");
    let mock = slow_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 70;
    let inp = mixed_input(dir.path(), n);
    let want = baseline(&inp, dir.path(), &url);
    assert_eq!(want.lines().count(), n);

    // Three independent interruptions, the last one killed twice before finishing.
    for round in 0..3 {
        let out = dir.path().join(format!("killed-{round}.jsonl"));
        let kills = if round == 2 { 2 } else { 1 };
        for k in 0..kills {
            let mut args = score_args(&inp, &out, &url);
            if k > 0 {
                args.push("--resume");
            }
            let child = spawn_ra(&args);
            // Kill after a random number of whole lines, or at a random moment.
            if rng.range(0, 2) == 0 {
                let target = rng.range(0, n as u64 - 10) as usize;
                let reached =
                    wait_until(Duration::from_secs(20), || complete_lines(&out) >= target);
                assert!(reached, "the run progresses to line {target}");
            } else {
                std::thread::sleep(Duration::from_millis(rng.range(0, 600)));
            }
            child.signal(libc::SIGKILL);
            let run = child.finish(Duration::from_secs(5));
            // A run with few lines left may finish (exit 1: the input has faulted
            // lines) before the signal lands; both leave a resumable file.
            assert!(
                run.code == -libc::SIGKILL || run.code == 1,
                "killed (code {}): {}",
                run.code,
                run.stderr
            );
            let kept = check_resumable(&out);
            eprintln!("round {round} kill {k}: {kept} whole lines left");
        }
        let mut args = score_args(&inp, &out, &url);
        args.push("--resume");
        let run = ra(&args, b"");
        assert_eq!(
            run.code, 1,
            "same exit status as the uninterrupted run: {}",
            run.stderr
        );
        let got = std::fs::read_to_string(&out).expect("resumed output");
        assert_same_run(&got, &want, &format!("round {round}"));
    }
}

#[test]
fn resume_after_a_cut_at_any_byte_offset_matches() {
    let mut rng = Rng::from_env_or_time("resume_after_a_cut");
    let mock = Mock::default_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 40;
    let inp = mixed_input(dir.path(), n);
    let want = baseline(&inp, dir.path(), &url);
    let bytes = want.as_bytes();
    let line_ends: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    let mut cuts = vec![
        0,
        bytes.len(),
        line_ends[5],
        line_ends[5] - 1,
        line_ends[5] + 1,
    ];
    for _ in 0..5 {
        cuts.push(rng.range(0, bytes.len() as u64) as usize);
    }
    let out = dir.path().join("out.jsonl");
    for cut in cuts {
        std::fs::write(&out, &bytes[..cut]).expect("write cut");
        let whole = line_ends.iter().filter(|&&e| e <= cut).count();
        let before = mock.chat_requests();
        let mut args = score_args(&inp, &out, &url);
        args.push("--resume");
        let run = ra(&args, b"");
        assert_eq!(run.code, 1, "cut {cut}: {}", run.stderr);
        assert_same_run(
            &std::fs::read_to_string(&out).expect("read"),
            &want,
            &format!("cut at byte {cut}"),
        );
        // Only lines after the cut are judged again (blank and bad lines are never sent).
        let redone = (whole..n).filter(|&i| i != 17 && i != 31).count() as u64;
        assert_eq!(
            mock.chat_requests() - before,
            redone,
            "cut {cut}: requests sent"
        );
    }
    // A complete output with trailing garbage: the garbage goes, nothing is sent.
    let mut garbage = want.clone();
    garbage.push_str("{\"index\": 40, \"id\": \"half a li");
    std::fs::write(&out, &garbage).expect("write");
    let before = mock.chat_requests();
    let mut args = score_args(&inp, &out, &url);
    args.push("--resume");
    assert_eq!(ra(&args, b"").code, 1);
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        want,
        "byte-identical"
    );
    assert_eq!(mock.chat_requests(), before);
    // --resume without an output file starts from scratch.
    std::fs::remove_file(&out).expect("rm");
    assert_eq!(ra(&args, b"").code, 1);
    assert_same_run(
        &std::fs::read_to_string(&out).expect("read"),
        &want,
        "no previous output",
    );
}

#[test]
fn resume_retry_failed_redoes_only_the_failed_lines() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(3);
    // Lines 2 and 5 fail once (a 400 is not retried), then succeed.
    let reqs: Vec<Value> = (0..8)
        .map(|i| {
            request(
                &mut rng,
                i,
                if i == 2 || i == 5 {
                    " [[fail-first:1:400]]"
                } else {
                    ""
                },
            )
        })
        .collect();
    let inp = dir.path().join("in.jsonl");
    std::fs::write(&inp, jsonl(&reqs)).expect("write");
    let out = dir.path().join("out.jsonl");
    let first = ra(&score_args(&inp, &out, &url), b"");
    assert_eq!(first.code, 1);
    let run1 = std::fs::read_to_string(&out).expect("read");
    let lines1: Vec<&str> = run1.lines().collect();
    let v1: Vec<Value> = lines1
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(v1[2]["error"]["kind"], "http_status");
    assert_eq!(v1[5]["error"]["kind"], "http_status");
    assert_eq!(mock.chat_requests(), 8);

    // --resume alone keeps the failures (and still reports them).
    let mut args = score_args(&inp, &out, &url);
    args.push("--resume");
    assert_eq!(ra(&args, b"").code, 1);
    assert_eq!(std::fs::read_to_string(&out).expect("read"), run1);
    assert_eq!(mock.chat_requests(), 8, "nothing to do");

    // --retry-failed redoes lines 2 and 5 only, in place.
    args.push("--retry-failed");
    let run = ra(&args, b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        mock.chat_requests(),
        10,
        "only the two failed lines were sent again"
    );
    let run2 = std::fs::read_to_string(&out).expect("read");
    let lines2: Vec<&str> = run2.lines().collect();
    assert_eq!(lines2.len(), 8);
    for i in 0..8 {
        let v: Value = serde_json::from_str(lines2[i]).expect("JSON");
        common::check_shape(&v, i, &Value::Null);
        common::check_judged(&v, &reqs[i]);
        if i != 2 && i != 5 {
            assert_eq!(lines2[i], lines1[i], "line {i} kept byte for byte");
        }
    }
    assert!(
        !dir.path().join("out.jsonl.ra-tmp").exists(),
        "no temporary file left"
    );

    // With a partial output: the kept failure is redone and the missing lines judged.
    let mock2 = Mock::default_mock();
    let url2 = mock2.url();
    let cut: usize = run1
        .match_indices('\n')
        .nth(3)
        .map(|(p, _)| p + 1)
        .expect("4 lines");
    std::fs::write(&out, &run1.as_bytes()[..cut + 10]).expect("write partial");
    let mut args = score_args(&inp, &out, &url2);
    args.extend(["--resume", "--retry-failed"]);
    let run = ra(&args, b"");
    // Line 2's fail-first counter is fresh on this mock: it fails once more.
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(mock2.chat_requests(), 1 + 4, "line 2 and lines 4..8");
    let lines3 = common::read_jsonl(&out);
    assert_eq!(lines3.len(), 8);
    assert_eq!(lines3[2]["error"]["kind"], "http_status");
    assert_eq!(lines3[5]["error"]["kind"], "http_status");
}

#[test]
fn resume_refuses_a_changed_input_and_leaves_the_output_alone() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = mixed_input(dir.path(), 20);
    let out = dir.path().join("out.jsonl");
    assert_eq!(ra(&score_args(&inp, &out, &url), b"").code, 1);
    let done = std::fs::read(&out).expect("read");
    let original = std::fs::read_to_string(&inp).expect("read input");
    let lines: Vec<&str> = original.split_inclusive('\n').collect();

    let mut edited_line = lines.clone();
    let changed = lines[3].replace("Question 3?", "Question three?");
    edited_line[3] = &changed;
    let inserted = format!("{}{}", lines[0], original);
    let variants = [
        ("a line edited", edited_line.concat()),
        ("a line inserted at the top", inserted),
        ("lines removed", lines[..10].concat()),
    ];
    for (what, text) in &variants {
        std::fs::write(&inp, text).expect("write changed input");
        for extra in [&["--resume"][..], &["--resume", "--retry-failed"][..]] {
            let before = mock.chat_requests();
            let mut args = score_args(&inp, &out, &url);
            args.extend(extra);
            let run = ra(&args, b"");
            assert_eq!(run.code, 2, "{what} {extra:?}: refused: {}", run.stderr);
            assert!(
                run.stderr.contains("change"),
                "{what}: a clear error: {}",
                run.stderr
            );
            assert!(
                std::fs::read(&out).expect("read") == done,
                "{what} {extra:?}: output untouched"
            );
            if extra.len() == 1 {
                // (--retry-failed may redo kept failures before it meets the change.)
                assert_eq!(mock.chat_requests(), before, "{what}: nothing sent");
            }
            assert!(!dir.path().join("out.jsonl.ra-tmp").exists());
        }
    }
}

#[test]

fn resume_refuses_a_changed_input_under_a_partial_output_without_touching_it() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = mixed_input(dir.path(), 20);
    let out = dir.path().join("out.jsonl");
    assert_eq!(ra(&score_args(&inp, &out, &url), b"").code, 1);
    // As a SIGKILL mid-write leaves it: 10 whole lines and half of the next.
    let full = std::fs::read(&out).expect("read");
    let cut = full
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(9)
        .map(|(i, _)| i + 1)
        .expect("10 lines");
    let partial = full[..cut + 25].to_vec();
    std::fs::write(&out, &partial).expect("write");
    let original = std::fs::read_to_string(&inp).expect("read");
    std::fs::write(&inp, original.replacen("Question 2?", "Question two?", 1)).expect("write");
    let mut args = score_args(&inp, &out, &url);
    args.push("--resume");
    let run = ra(&args, b"");
    assert_eq!(run.code, 2, "{}", run.stderr);
    let now = std::fs::read(&out).expect("read");
    assert!(
        now == partial,
        "output untouched: {} bytes before, {} after",
        partial.len(),
        now.len()
    );
}

#[test]
fn sigterm_stops_within_seconds_and_resume_completes_identically() {
    let mock = slow_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    // More lines than `ra score` queues ahead of the requests in flight.
    let n = 120;
    let inp = mixed_input(dir.path(), n);
    let want = baseline(&inp, dir.path(), &url);
    let out = dir.path().join("out.jsonl");
    let mut child = spawn_ra(&score_args(&inp, &out, &url));
    assert!(wait_until(Duration::from_secs(20), || complete_lines(&out) >= 10));
    let sent = std::time::Instant::now();
    child.signal(libc::SIGTERM);
    let status = child.wait_timeout(Duration::from_secs(4));
    assert!(status.is_some(), "ra exits within a few seconds of SIGTERM");
    eprintln!("stopped {:?} after SIGTERM", sent.elapsed());
    let run = child.finish(Duration::from_secs(1));
    assert_ne!(run.code, 0, "an interrupted run does not report success");
    assert!(
        run.code > 0,
        "it exits on its own, not by the signal: {}",
        run.code
    );
    assert!(
        run.stderr.contains("--resume"),
        "it says how to finish: {}",
        run.stderr
    );
    let bytes = std::fs::read(&out).expect("read");
    assert!(
        bytes.ends_with(b"\n"),
        "a graceful stop leaves whole lines only"
    );
    let kept = check_resumable(&out);
    assert!((10..n).contains(&kept), "{kept} lines kept");

    let mut args = score_args(&inp, &out, &url);
    args.push("--resume");
    let before = mock.chat_requests();
    let run = ra(&args, b"");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_same_run(
        &std::fs::read_to_string(&out).expect("read"),
        &want,
        "after SIGTERM",
    );
    let redone = (kept..n).filter(|&i| i != 17 && i != 31).count() as u64;
    assert_eq!(
        mock.chat_requests() - before,
        redone,
        "kept lines are not sent again"
    );
}

#[test]

fn sigterm_stops_sending_new_requests() {
    let mock = Mock::start(MockServer::builder().latency(Latency::from_millis(100)));
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(5);
    let reqs: Vec<Value> = (0..40).map(|i| request(&mut rng, i, "")).collect();
    let inp = dir.path().join("in.jsonl");
    std::fs::write(&inp, jsonl(&reqs)).expect("write");
    let out = dir.path().join("out.jsonl");
    let mut args = score_args(&inp, &out, &url);
    args[8] = "2"; // --concurrency 2
    let mut child = spawn_ra(&args);
    assert!(wait_until(Duration::from_secs(20), || mock.chat_requests() >= 4));
    child.signal(libc::SIGTERM);
    let at_signal = mock.chat_requests();
    assert!(child.wait_timeout(Duration::from_secs(9)).is_some());
    let run = child.finish(Duration::from_secs(1));
    assert!(run.code > 0);
    let sent_after = mock.chat_requests() - at_signal;
    // Up to --concurrency requests may be on their way at the instant of the signal.
    assert!(
        sent_after <= 2,
        "{sent_after} requests were sent after SIGTERM (stop sending, finish the ones in flight)"
    );
}

/// An input whose line 3 never gets an answer.
fn hanging_input(dir: &Path) -> PathBuf {
    let mut rng = Rng(11);
    let reqs: Vec<Value> = (0..12)
        .map(|i| request(&mut rng, i, if i == 3 { " [[fault:hang]]" } else { "" }))
        .collect();
    let path = dir.join("hang.jsonl");
    std::fs::write(&path, jsonl(&reqs)).expect("write");
    path
}

#[test]
fn sigterm_with_a_hung_request_stops_after_the_grace_and_twice_stops_at_once() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = hanging_input(dir.path());
    let out = dir.path().join("out.jsonl");

    // Default grace: in-flight work gets a few seconds, then the run stops.
    let mut child = spawn_ra(&score_args(&inp, &out, &url));
    assert!(wait_until(Duration::from_secs(20), || mock
        .handle()
        .stats()
        .hung
        >= 1
        && complete_lines(&out) >= 3));
    child.signal(libc::SIGTERM);
    let started = std::time::Instant::now();
    assert!(
        child.wait_timeout(Duration::from_secs(9)).is_some(),
        "stops within the grace and a margin"
    );
    eprintln!("stopped {:?} after SIGTERM", started.elapsed());
    let run = child.finish(Duration::from_secs(1));
    assert!(run.code > 0, "{}", run.code);
    assert_eq!(
        check_resumable(&out),
        3,
        "lines 0..3 written, nothing after the hung line"
    );
    assert!(std::fs::read(&out).expect("read").ends_with(b"\n"));

    // A second SIGTERM stops at once.
    std::fs::remove_file(&out).expect("rm");
    let mut child = spawn_ra(&score_args(&inp, &out, &url));
    assert!(wait_until(Duration::from_secs(20), || mock
        .handle()
        .stats()
        .hung
        >= 2
        && complete_lines(&out) >= 3));
    child.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    let started = std::time::Instant::now();
    child.signal(libc::SIGTERM);
    assert!(
        child.wait_timeout(Duration::from_millis(1500)).is_some(),
        "the second signal stops it now"
    );
    eprintln!("stopped {:?} after the second SIGTERM", started.elapsed());
    let run = child.finish(Duration::from_secs(1));
    assert!(run.code > 0);
    let kept_lines = std::fs::read_to_string(&out).expect("read");
    assert_eq!(check_resumable(&out), 3);

    // Resuming keeps those lines and finishes (the hung line now times out).
    let mut args = score_args(&inp, &out, &url);
    args.extend(["--resume", "--timeout", "0.3"]);
    let run = ra(&args, b"");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let done = std::fs::read_to_string(&out).expect("read");
    assert!(done.starts_with(&kept_lines));
    let lines = common::read_jsonl(&out);
    assert_eq!(lines.len(), 12);
    assert_eq!(lines[3]["error"]["kind"], "timeout");
}

#[test]
fn sigkill_during_retry_failed_leaves_the_output_and_a_rerun_finishes() {
    let mock = Mock::start(MockServer::builder().latency(Latency::from_millis(40)));
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(13);
    // Every third line fails once (a 400 is not retried), then succeeds.
    let reqs: Vec<Value> = (0..45)
        .map(|i| {
            request(
                &mut rng,
                i,
                if i % 3 == 0 {
                    " [[fail-first:1:400]]"
                } else {
                    ""
                },
            )
        })
        .collect();
    let inp = dir.path().join("in.jsonl");
    std::fs::write(&inp, jsonl(&reqs)).expect("write");
    let out = dir.path().join("out.jsonl");
    let mut args = score_args(&inp, &out, &url);
    args[8] = "8";
    assert_eq!(ra(&args, b"").code, 1);
    let first = std::fs::read_to_string(&out).expect("read");

    let mut retry = score_args(&inp, &out, &url);
    retry[8] = "1"; // slow enough to be killed half-way
    retry.extend(["--resume", "--retry-failed"]);
    let child = spawn_ra(&retry);
    assert!(wait_until(Duration::from_secs(20), || mock.chat_requests() >= 45 + 4));
    child.signal(libc::SIGKILL);
    let _ = child.finish(Duration::from_secs(5));
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        first,
        "a killed --retry-failed run leaves the previous output as it was"
    );

    retry[8] = "8";
    let run = ra(&retry, b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = common::read_jsonl(&out);
    assert_eq!(lines.len(), 45);
    for (i, (line, req)) in lines.iter().zip(&reqs).enumerate() {
        common::check_shape(line, i, &Value::Null);
        common::check_judged(line, req);
    }
    let first_lines: Vec<&str> = first.lines().collect();
    let now = std::fs::read_to_string(&out).expect("read");
    for (i, line) in now.lines().enumerate() {
        if i % 3 != 0 {
            assert_eq!(line, first_lines[i], "line {i} kept byte for byte");
        }
    }
    assert!(!dir.path().join("out.jsonl.ra-tmp").exists());
}

#[test]
fn sigint_stops_like_sigterm() {
    let mock = slow_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = mixed_input(dir.path(), 120);
    let out = dir.path().join("out.jsonl");
    let child = spawn_ra(&score_args(&inp, &out, &url));
    assert!(wait_until(Duration::from_secs(20), || complete_lines(&out) >= 5));
    child.signal(libc::SIGINT);
    let run = child.finish(Duration::from_secs(5));
    assert!(run.code > 0, "{}", run.code);
    let kept = check_resumable(&out);
    assert!((5..120).contains(&kept), "{kept}");
    assert!(std::fs::read(&out).expect("read").ends_with(b"\n"));
}

#[test]
fn output_same_as_input_is_refused_without_losing_the_input() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = mixed_input(dir.path(), 5);
    let original = std::fs::read(&inp).expect("read");
    for extra in [&[][..], &["--resume"][..]] {
        let mut args = score_args(&inp, &inp, &url);
        args.extend(extra);
        let run = ra(&args, b"");
        assert_eq!(run.code, 2, "{extra:?}: refused: {}", run.stderr);
        assert!(
            std::fs::read(&inp).expect("read") == original,
            "{extra:?}: the input survives"
        );
    }
}
