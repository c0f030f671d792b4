//! Memory stays bounded whatever an input line or a server does: a line over
//! `--max-line-bytes` becomes a `bad_input` line without being held (checked by the
//! child's peak RSS), `--resume` hashes it like any other line, and a response body over
//! `--max-response-bytes` is a `bad_response` error.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{Mock, complete_lines, ra, ra_command, read_jsonl, s, wait_until};
use serde_json::json;

/// The child's peak resident memory so far (VmHWM, KiB), per process and reset at exec.
/// Reaps `pid` and returns its exit code and its own peak RSS in KiB (`wait4`'s
/// `ru_maxrss`): measured over the whole run, whenever the child ends.
fn wait_with_peak(pid: u32) -> (i32, u64) {
    let mut status = 0;
    // SAFETY: a zeroed `rusage` is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own unreaped child; both pointers are to live locals.
    let reaped = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid as libc::pid_t, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage.ru_maxrss as u64)
}

/// Runs `ra ARGS` to the end; returns its exit code, stderr, and its peak RSS (KiB).
/// `ready` must hold before the end (the phase being measured was reached).
fn run_measured(args: &[&str], dir: &Path, ready: impl Fn() -> bool) -> (i32, String, u64) {
    let err_path = dir.join("stderr.txt");
    let mut cmd = ra_command(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let child = common::ChildGuardRaw(cmd.spawn().expect("spawn ra"));
    let pid = child.0.id();
    assert!(
        wait_until(Duration::from_secs(60), &ready),
        "ra did not get there: {}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    let (code, peak) = wait_with_peak(pid);
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    (code, stderr, peak)
}

const LONG_LINE_MB: usize = 100;

/// A file of three requests whose middle one is a well-formed request of ~100 MB, and
/// whose last one hangs at the mock (so that `ra` is still running, the long line read,
/// when its memory is measured). Returns the long line's XXH3-64 and its length.
fn input_with_a_long_line(path: &Path) -> (u64, usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let small = |id: u32, extra: &str| {
        json!({"id": id, "principle": "p", "prompt": format!("q{extra}"), "responses": {"a": "x score=2", "b": "y score=4"}})
            .to_string()
    };
    writeln!(file, "{}", small(0, "")).expect("write");
    let head =
        br#"{"id": 1, "principle": "p", "prompt": "q", "responses": {"a": "x score=1", "b": ""#;
    let tail = br#""}}"#;
    let chunk = vec![b'z'; 1 << 20];
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for part in std::iter::once(&head[..])
        .chain(std::iter::repeat_n(&chunk[..], LONG_LINE_MB))
        .chain(std::iter::once(&tail[..]))
    {
        file.write_all(part).expect("write");
        hasher.update(part);
    }
    writeln!(file).expect("write");
    writeln!(file, "{}", small(2, " [[fault:hang]]")).expect("write");
    file.flush().expect("flush");
    (
        hasher.digest(),
        head.len() + LONG_LINE_MB * chunk.len() + tail.len(),
    )
}

#[test]
fn a_100_mb_line_is_bad_input_without_being_held_and_resume_hashes_it() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = dir.path().join("in.jsonl");
    let (long_hash, long_len) = input_with_a_long_line(&inp);
    let out = dir.path().join("out.jsonl");
    let args = [
        "score",
        "--input",
        s(&inp),
        "--output",
        s(&out),
        "--endpoint",
        &url,
        "--timeout",
        "2",
        "--max-retries",
        "0",
    ];
    let two_lines = || complete_lines(&out) >= 2;
    let (code, stderr, peak_kib) = run_measured(&args, dir.path(), two_lines);
    assert_eq!(code, 1, "the long and the hanging line failed: {stderr}");
    eprintln!("peak RSS of ra score after a {LONG_LINE_MB} MB line: {peak_kib} KiB");
    assert!(
        peak_kib < 64 * 1024,
        "peak RSS {peak_kib} KiB: the {LONG_LINE_MB} MB line was held in memory"
    );
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 3);
    assert!(lines[0]["error"].is_null(), "{}", lines[0]);
    let bad = &lines[1];
    assert_eq!(bad["index"], 1);
    assert_eq!(bad["error"]["kind"], "bad_input", "{bad}");
    let message = bad["error"]["message"].as_str().expect("message");
    assert!(
        message.starts_with("line 2: ") && message.contains("--max-line-bytes"),
        "{message}"
    );
    let want_hash = format!("{long_hash:016x}");
    assert_eq!(
        bad["input_hash"],
        want_hash.as_str(),
        "hash of the raw line"
    );
    assert_eq!(lines[2]["error"]["kind"], "timeout", "{}", lines[2]);
    assert_eq!(mock.chat_requests(), 2, "the long line is never sent");

    // --resume after a cut behind the long line: its hash matches, only line 3 is redone.
    let text = std::fs::read_to_string(&out).expect("read");
    let kept: usize = text.lines().take(2).map(|l| l.len() + 1).sum();
    std::fs::write(&out, &text[..kept]).expect("cut");
    let mut resume = args.to_vec();
    resume.push("--resume");
    let (code, stderr, _) = run_measured(&resume, dir.path(), || true);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(mock.chat_requests(), 3);
    let again = read_jsonl(&out);
    assert_eq!(again.len(), 3);
    assert_eq!(
        again[1], lines[1],
        "the long line's result is kept as it was"
    );

    // A changed long line (same length) is refused on resume, the output untouched.
    let before = std::fs::read(&out).expect("read");
    let mut bytes = std::fs::read(&inp).expect("read input");
    let first_end = bytes.iter().position(|&b| b == b'\n').expect("newline");
    bytes[first_end + long_len - 4] = b'y';
    std::fs::write(&inp, &bytes).expect("write");
    let (code, stderr, _) = run_measured(&resume, dir.path(), || true);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("input line 2 changed"), "{stderr}");
    assert_eq!(std::fs::read(&out).expect("read"), before);
}

#[test]
fn max_line_bytes_is_a_flag() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let line =
        json!({"principle": "p", "prompt": "q", "responses": {"a": "x score=2"}}).to_string();
    let out = dir.path().join("out.jsonl");
    let limit = (line.len() - 1).to_string();
    let args = [
        "score",
        "--input",
        "-",
        "--output",
        s(&out),
        "--endpoint",
        &mock.url(),
        "--max-line-bytes",
    ];
    let mut too_small = args.to_vec();
    too_small.push(&limit);
    let run = ra(&too_small, format!("{line}\n").as_bytes());
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(read_jsonl(&out)[0]["error"]["kind"], "bad_input");
    let exact = line.len().to_string();
    let mut enough = args.to_vec();
    enough.push(&exact);
    let run = ra(&enough, format!("{line}\r\n").as_bytes());
    assert_eq!(
        run.code, 0,
        "a line of exactly the limit (CRLF) is read: {}",
        run.stderr
    );
    let mut zero = args.to_vec();
    zero.push("0");
    assert_eq!(ra(&zero, b"").code, 2);
}

#[test]
fn a_response_over_max_response_bytes_is_bad_response() {
    // The mock's answers carry ~12 kB of thinking: over a 6 kB cap, under the default.
    let mock = Mock::start(ra_mock::MockServer::builder().think_bytes(12_000));
    let dir = tempfile::tempdir().expect("tempdir");
    let line = json!({"principle": "p", "prompt": "q", "responses": {"a": "x score=2", "b": "y"}})
        .to_string();
    let out = dir.path().join("out.jsonl");
    let base = [
        "score",
        "--input",
        "-",
        "--output",
        s(&out),
        "--endpoint",
        &mock.url(),
        "--model",
        ra_mock::DEFAULT_MODEL,
        "--max-retries",
        "0",
    ];
    let mut capped = base.to_vec();
    capped.extend(["--max-response-bytes", "6000"]);
    let run = ra(&capped, format!("{line}\n").as_bytes());
    assert_eq!(run.code, 1, "{}", run.stderr);
    let got = read_jsonl(&out);
    assert_eq!(got[0]["error"]["kind"], "bad_response", "{}", got[0]);
    let run = ra(&base, format!("{line}\n").as_bytes());
    assert_eq!(
        run.code, 0,
        "the default cap (8 MiB) lets it through: {}",
        run.stderr
    );
    assert!(read_jsonl(&out)[0]["error"].is_null());
}

#[test]
fn resume_over_a_huge_garbage_output_line_does_not_hold_it() {
    // An --output whose first "line" is 60 MB of garbage: the resume scan reads it in
    // chunks, keeps nothing, and the run starts afresh.
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    // Written in chunks: a child forked while this process held 60 MB would count them
    // in its peak RSS (ru_maxrss keeps the pre-exec image's), failing the other tests.
    let mut garbage = std::fs::File::create(&out).expect("create");
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..60 {
        garbage.write_all(&chunk).expect("write garbage");
    }
    drop(garbage);
    let inp = dir.path().join("in.jsonl");
    let lines = [
        json!({"principle": "p", "prompt": "q", "responses": {"a": "x score=2"}}),
        json!({"principle": "p", "prompt": "q [[fault:hang]]", "responses": {"a": "y"}}),
    ];
    std::fs::write(&inp, format!("{}\n{}\n", lines[0], lines[1])).expect("write");
    let url = mock.url();
    let args = [
        "score",
        "--input",
        s(&inp),
        "--output",
        s(&out),
        "--endpoint",
        &url,
        "--resume",
        "--timeout",
        "2",
        "--max-retries",
        "0",
    ];
    let (code, stderr, peak_kib) = run_measured(&args, dir.path(), || complete_lines(&out) >= 1);
    assert_eq!(code, 1, "{stderr}");
    eprintln!("peak RSS of ra score --resume over a 60 MB output line: {peak_kib} KiB");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");
    let got = read_jsonl(&out);
    assert_eq!(got.len(), 2);
    assert!(got[0]["error"].is_null(), "{}", got[0]);
}

/// The address space a child may map (RLIMIT_AS): a run that reads an endless input
/// whole dies here instead of taking the machine (before the fix `ra eval --input
/// /dev/zero` reached 3.25 GB in 3 s), and fails the test by its exit.
const CHILD_ADDRESS_SPACE: u64 = 3 << 30;

/// Runs `ra ARGS` to the end with its address space capped, stdin an endless pipe of
/// `a`s (for `/dev/stdin` and stdin requests); returns its exit code, stderr and peak
/// RSS in KiB.
fn run_on_endless_input(args: &[&str], dir: &Path) -> (i32, String, u64) {
    use std::os::unix::process::CommandExt;
    let err_path = dir.join("stderr.txt");
    let mut cmd = ra_command(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: CHILD_ADDRESS_SPACE,
                rlim_max: CHILD_ADDRESS_SPACE,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = common::ChildGuardRaw(cmd.spawn().expect("spawn ra"));
    let mut stdin = child.0.stdin.take().expect("stdin");
    // Ends with EPIPE once the child has exited (and closed its end).
    let feeder = std::thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 20];
        while stdin.write_all(&chunk).is_ok() {}
    });
    let (code, peak) = wait_with_peak(child.0.id());
    feeder.join().expect("feeder");
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    (code, stderr, peak)
}

#[test]
fn inputs_that_never_end_are_read_up_to_their_cap_then_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("eval");
    let dead = common::dead_url();
    let eval = |input: &'static str| {
        vec![
            "eval",
            "--format",
            "ranked",
            "--input",
            input,
            "--output",
            s(&out),
            "--endpoint",
            dead.as_str(),
        ]
    };
    let judge = |file_flag: &'static str, value: &'static str| {
        let mut args = vec!["judge", "--endpoint", dead.as_str(), file_flag, value];
        if file_flag != "--principle-file" {
            args.extend(["--principle", "p"]);
        }
        if file_flag != "--prompt-file" {
            args.extend(["--prompt", "q"]);
        }
        if file_flag != "--response-file" {
            args.extend(["--response", "a=1"]);
        }
        args
    };
    let eval_cap = 256 << 20;
    let line_cap = 16 << 20;
    let cases: Vec<(Vec<&str>, String, u64)> = vec![
        (
            eval("/dev/zero"),
            format!("--input /dev/zero is longer than {eval_cap} bytes"),
            eval_cap,
        ),
        (
            eval("/dev/stdin"),
            format!("--input /dev/stdin is longer than {eval_cap} bytes"),
            eval_cap,
        ),
        (
            judge("--response-file", "a=/dev/zero"),
            format!("--response-file /dev/zero is longer than {line_cap} bytes"),
            line_cap,
        ),
        (
            judge("--principle-file", "/dev/stdin"),
            format!("--principle-file /dev/stdin is longer than {line_cap} bytes"),
            line_cap,
        ),
        (
            judge("--prompt-file", "/dev/zero"),
            format!("--prompt-file /dev/zero is longer than {line_cap} bytes"),
            line_cap,
        ),
        (
            vec!["judge", "--endpoint", dead.as_str()],
            format!("the request on stdin is longer than {line_cap} bytes"),
            line_cap,
        ),
        (
            vec![
                "judge",
                "--config",
                "/dev/zero",
                "--principle",
                "p",
                "--prompt",
                "q",
                "--response",
                "a=1",
            ],
            format!("--config /dev/zero is longer than {} bytes", 4 << 20),
            4 << 20,
        ),
    ];
    for (args, expected, cap) in cases {
        let (code, stderr, peak_kib) = run_on_endless_input(&args, dir.path());
        eprintln!("{args:?}: peak RSS {peak_kib} KiB");
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
        // What was read (cap + 1 bytes, in a buffer reserved once) and the process.
        let bound_kib = cap / 1024 + 64 * 1024;
        assert!(
            peak_kib < bound_kib,
            "{args:?}: peak RSS {peak_kib} KiB over {bound_kib} KiB"
        );
    }
}
