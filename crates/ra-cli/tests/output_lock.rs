//! One writer per output file: while one `ra score` writes an output, a second one on the
//! same `--output` (fresh, `--resume` or `--retry-failed`) exits 2 naming the first's PID
//! and leaves the file byte for byte as it was.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{
    Mock, Rng, complete_lines, jsonl, ra, ra_command, read_jsonl, request, s, wait_until,
};

#[test]
fn a_second_run_on_the_same_output_is_refused_and_touches_nothing() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let mut rng = Rng(7);
    let requests: Vec<_> = (0..6).map(|i| request(&mut rng, i, "")).collect();
    let (first_half, second_half) = requests.split_at(3);

    // The first run reads stdin, which stays open after three lines: it has written
    // their results and waits for more, holding the output.
    let mut cmd = ra_command(&[
        "score",
        "--input",
        "-",
        "--output",
        s(&out),
        "--endpoint",
        &url,
    ]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut first = common::ChildGuardRaw(cmd.spawn().expect("spawn ra"));
    let first_pid = first.0.id();
    let mut stdin = first.0.stdin.take().expect("stdin");
    stdin
        .write_all(jsonl(first_half).as_bytes())
        .expect("write");
    stdin.flush().expect("flush");
    assert!(
        wait_until(Duration::from_secs(20), || complete_lines(&out) == 3),
        "the first run writes its first results"
    );
    let before = std::fs::read(&out).expect("read");
    let lock_file = dir.path().join("out.jsonl.lock");
    assert_eq!(
        std::fs::read_to_string(&lock_file).expect("lock file"),
        first_pid.to_string(),
        "the lock file holds the writer's PID"
    );

    let inp = dir.path().join("in.jsonl");
    std::fs::write(&inp, jsonl(&requests)).expect("write input");
    let base = [
        "score",
        "--input",
        s(&inp),
        "--output",
        s(&out),
        "--endpoint",
        &url,
    ];
    // Another spelling of the same file shares the lock (an output that is a symbolic
    // link is refused: tests/hostile_files.rs).
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let alias = dir.path().join("sub/../out.jsonl");
    let via_alias = [
        "score",
        "--input",
        s(&inp),
        "--output",
        s(&alias),
        "--endpoint",
        &url,
    ];
    let requests_before = mock.chat_requests();
    for (base, extra) in [
        (&base, &[][..]),
        (&base, &["--resume"]),
        (&base, &["--resume", "--retry-failed"]),
        (&via_alias, &[]),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let run = ra(&args, b"");
        assert_eq!(run.code, 2, "{extra:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("PID {first_pid}")),
            "{extra:?}: the holder is named: {}",
            run.stderr
        );
        assert_eq!(
            std::fs::read(&out).expect("read"),
            before,
            "{extra:?}: output untouched"
        );
        assert!(!dir.path().join("out.jsonl.ra-tmp").exists(), "{extra:?}");
    }
    assert_eq!(mock.chat_requests(), requests_before, "nothing was sent");

    // The first run finishes its input undisturbed, then the lock is gone.
    stdin
        .write_all(jsonl(second_half).as_bytes())
        .expect("write");
    drop(stdin);
    let status = first.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    let got = read_jsonl(&out);
    assert_eq!(got.len(), 6);
    for (i, (line, req)) in got.iter().zip(&requests).enumerate() {
        assert_eq!(line["index"], i);
        common::check_judged(line, req);
    }
    assert!(!lock_file.exists(), "the lock file is removed at the end");
    let run = ra(&[&base[..], &["--resume"]].concat(), b"");
    assert_eq!(run.code, 0, "a later run takes the lock: {}", run.stderr);
}

#[test]
fn a_lock_left_by_a_killed_run_does_not_block_the_next() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    // A stale lock file (its writer was SIGKILLed): nobody holds the lock.
    std::fs::write(dir.path().join("out.jsonl.lock"), "999999").expect("write");
    let mut rng = Rng(3);
    let input = jsonl(&[request(&mut rng, 0, "")]);
    let run = ra(
        &[
            "score",
            "--input",
            "-",
            "--output",
            s(&out),
            "--endpoint",
            &mock.url(),
        ],
        input.as_bytes(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(complete_lines(&out), 1);
}

#[test]
fn a_device_output_needs_no_lock() {
    // /dev/null cannot be shared by position: no lock file is made next to it.
    let mock = Mock::default_mock();
    let mut rng = Rng(5);
    let input = jsonl(&[request(&mut rng, 0, "")]);
    let run = ra(
        &[
            "score",
            "--input",
            "-",
            "--output",
            "/dev/null",
            "--endpoint",
            &mock.url(),
        ],
        input.as_bytes(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!Path::new("/dev/null.lock").exists());
}
