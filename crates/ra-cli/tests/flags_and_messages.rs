//! Absurd flag values are refused up front with a precise message (exit 2); start-up
//! failures say what happened (unauthorized, a missing `/v1`, a model the server does not
//! serve) before the output is touched; logs carry no colour codes off a terminal and
//! `--quiet` silences warnings; `ra judge` does not wait silently on a terminal and reads
//! its principle and prompt from files.

mod common;

use std::os::fd::FromRawFd;
use std::process::Stdio;
use std::time::Duration;

use common::{ChildGuard, Mock, dead_url, ra, ra_command, s};
use ra_mock::MockServer;
use serde_json::json;

fn one_request() -> String {
    json!({"principle": "p", "prompt": "q", "responses": {"a": "x score=2", "b": "y score=4"}})
        .to_string()
        + "\n"
}

#[test]
fn absurd_numbers_are_refused_with_the_flag_named() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    std::fs::write(&out, "sentinel\n").expect("write");
    let cases: &[(&str, &str)] = &[
        ("--temperature", "nan"),
        ("--temperature", "-0.5"),
        ("--temperature", "inf"),
        ("--max-tokens", "0"),
        ("--timeout", "0"),
        ("--timeout", "-1"),
        ("--timeout", "nan"),
        ("--timeout", "1e30"),
        ("--deadline", "1e30"),
        ("--deadline", "0"),
        ("--concurrency", "0"),
        ("--grace", "-1"),
        ("--max-response-bytes", "0"),
    ];
    for (flag, value) in cases {
        // `--flag=value`: clap would take a separate `-1` for a flag of its own.
        let arg = format!("{flag}={value}");
        let run = ra(
            &[
                "score",
                "--input",
                "-",
                "--output",
                s(&out),
                "--endpoint",
                &url,
                &arg,
            ],
            one_request().as_bytes(),
        );
        assert_eq!(run.code, 2, "{flag} {value}: {}", run.stderr);
        assert!(
            run.stderr.contains(flag) && run.stderr.contains(value),
            "{flag} {value}: the message names the flag and the value: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    // The same limits hold for the config's fields.
    let config = dir.path().join("config.json");
    for bad in [
        json!({"api_timeout": 1e30}),
        json!({"generation_config": {"temperature": -1.0}}),
        json!({"generation_config": {"max_tokens": 0}}),
    ] {
        std::fs::write(&config, bad.to_string()).expect("write");
        let run = ra(
            &[
                "score",
                "--input",
                "-",
                "--output",
                s(&out),
                "--endpoint",
                &url,
                "--config",
                s(&config),
            ],
            one_request().as_bytes(),
        );
        assert_eq!(run.code, 2, "{bad}: {}", run.stderr);
    }
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "sentinel\n");
    assert_eq!(mock.chat_requests(), 0);
}

#[test]
fn a_wrong_key_at_startup_is_unauthorized_not_unreachable() {
    let mock = Mock::start(MockServer::builder().api_key("right-key"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let url = mock.url();
    for model in [None, Some(ra_mock::DEFAULT_MODEL)] {
        let mut args = vec![
            "score",
            "--input",
            "-",
            "--output",
            s(&out),
            "--endpoint",
            &url,
            "--api-key",
            "wrong-key",
        ];
        if let Some(m) = model {
            args.extend(["--model", m]);
        }
        let run = ra(&args, one_request().as_bytes());
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains("unauthorized"),
            "{model:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("unreachable"), "{}", run.stderr);
        assert!(
            !run.stderr.contains("wrong-key"),
            "the key is never printed"
        );
    }
    assert!(!out.exists(), "nothing written");
}

#[test]
fn an_endpoint_without_v1_gets_a_hint() {
    let mock = Mock::default_mock();
    let bare = mock.url().trim_end_matches("/v1").to_string();
    let run = ra(
        &[
            "judge",
            "--endpoint",
            &bare,
            "--principle",
            "p",
            "--prompt",
            "q",
            "--response",
            "a=x",
        ],
        b"",
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("404") && run.stderr.contains(&format!("{bare}/v1")),
        "the hint names the URL with /v1: {}",
        run.stderr
    );
}

#[test]
fn an_unserved_model_exits_2_before_the_output_is_touched() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    std::fs::write(&out, "earlier results\n").expect("write");
    let run = ra(
        &[
            "score",
            "--input",
            "-",
            "--output",
            s(&out),
            "--endpoint",
            &mock.url(),
            "--model",
            "nosuchmodel",
        ],
        one_request().as_bytes(),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("\"nosuchmodel\" is not served")
            && run.stderr.contains(ra_mock::DEFAULT_MODEL),
        "names the model and what is served: {}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&out).expect("read"),
        "earlier results\n"
    );
    assert_eq!(mock.chat_requests(), 0);
}

#[test]
fn logs_have_no_colour_off_a_terminal_and_quiet_silences_warnings() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    // A config with two keys: `ra` warns that it uses the first.
    let config = dir.path().join("config.json");
    std::fs::write(&config, json!({"api_key": ["k1", "k2"]}).to_string()).expect("write");
    let url = mock.url();
    let args = [
        "score",
        "--input",
        "-",
        "--output",
        s(&out),
        "--endpoint",
        &url,
        "--config",
        s(&config),
    ];
    let run = ra(&args, one_request().as_bytes());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("WARN") && run.stderr.contains("2 API keys"),
        "a warning is logged: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains('\u{1b}'),
        "no ANSI codes: {:?}",
        run.stderr
    );
    let quiet: Vec<&str> = args.iter().copied().chain(["--quiet"]).collect();
    let run = ra(&quiet, one_request().as_bytes());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "", "--quiet: nothing on stderr");
    // Errors still are.
    let run = ra(
        &[
            "score",
            "--input",
            "-",
            "--output",
            s(&out),
            "--endpoint",
            &dead_url(),
            "--quiet",
            "--model",
            "m",
            "--max-retries",
            "0",
        ],
        one_request().as_bytes(),
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("unreachable"), "{}", run.stderr);
}

#[test]
fn judge_on_a_terminal_without_a_request_says_what_it_needs() {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors we then own; the other arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: both descriptors are fresh and owned here alone.
    let (master, slave) = unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    };
    let mut cmd = ra_command(&["judge", "--endpoint", &dead_url()]);
    cmd.stdin(Stdio::from(slave));
    let mut child = ChildGuard::spawn_with_stdin_set(cmd);
    let status = child.wait_timeout(Duration::from_secs(10));
    drop(master);
    let run = child.finish(Duration::from_secs(5));
    assert!(status.is_some(), "ra judge waited on the terminal");
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("no request") && run.stderr.contains("--principle"),
        "{}",
        run.stderr
    );
}

#[test]
fn judge_reads_the_prompt_and_principle_from_files() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let prompt = dir.path().join("prompt.txt");
    let principle = dir.path().join("principle.txt");
    std::fs::write(
        &prompt,
        "Which city is the capital of France?\nAnswer briefly.",
    )
    .expect("w");
    std::fs::write(&principle, "Prefer correct answers.").expect("w");
    let run = ra(
        &[
            "judge",
            "--endpoint",
            &mock.url(),
            "--principle-file",
            s(&principle),
            "--prompt-file",
            s(&prompt),
            "--response",
            "a=Paris. score=5",
            "--response",
            "b=Lyon. score=1",
            "--json",
        ],
        b"",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let attempts = mock.handle().attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        attempts[0].prompt.as_deref(),
        Some("Which city is the capital of France?\nAnswer briefly."),
        "the file's text is the prompt, not its name"
    );
    let out: serde_json::Value = serde_json::from_str(run.stdout_str().trim()).expect("JSON");
    assert_eq!(out["ranking"], json!(["a", "b"]));
    assert!(out["masked2real"].is_object(), "{out}");

    let missing = dir.path().join("missing.txt");
    let run = ra(
        &[
            "judge",
            "--endpoint",
            &mock.url(),
            "--principle-file",
            s(&missing),
            "--prompt",
            "q",
            "--response",
            "a=x",
        ],
        b"",
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--principle-file"), "{}", run.stderr);
    let run = ra(
        &[
            "judge",
            "--endpoint",
            &mock.url(),
            "--principle",
            "p",
            "--principle-file",
            s(&principle),
            "--prompt",
            "q",
            "--response",
            "a=x",
        ],
        b"",
    );
    assert_eq!(
        run.code, 2,
        "both forms at once are refused: {}",
        run.stderr
    );
    assert_eq!(mock.chat_requests(), 1);
}
