//! `ra judge` and `ra score` end to end against the in-process mock: order and
//! completeness under random latency and faults, bad lines, exit codes, `--config` in the
//! reference package's shape, `--endpoints-file` followed mid-run, stdin/stdout and the
//! summary.

mod common;

use std::time::Duration;

use common::{
    Mock, Rng, check_judged, check_shape, dead_url, jsonl, ra, read_jsonl, request, s, spawn_ra,
    wait_until,
};
use ra_mock::{FaultRates, Latency, MockServer};
use serde_json::{Value, json};

// ---------------------------------------------------------------- ra judge

#[test]
fn judge_flags_json_and_response_file() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("long.txt");
    let long_text = "A longer answer read from a file,\nwith two lines. score=2";
    std::fs::write(&file, long_text).expect("write");
    let response_file = format!("from-file={}", s(&file));
    let run = ra(
        &[
            "judge",
            "--endpoint",
            &mock.url(),
            "--principle",
            "Prefer concise answers.",
            "--prompt",
            "What is 2+2?",
            "--response",
            "terse=4. score=5",
            "--response",
            "chatty=Well, let me think = it is 4. score=3",
            "--response-file",
            &response_file,
            "--json",
        ],
        b"",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out: Value = serde_json::from_str(run.stdout_str().trim()).expect("one JSON object");
    // The text after the first `=` is the response, `=` signs included.
    let req = json!({"responses": {
        "terse": "4. score=5",
        "chatty": "Well, let me think = it is 4. score=3",
        "from-file": long_text,
    }});
    let with_error = {
        let mut o = out.clone();
        o["error"] = Value::Null;
        o
    };
    check_judged(&with_error, &req);
    assert_eq!(out["ranking"], json!(["terse", "chatty", "from-file"]));
    assert_eq!(mock.chat_requests(), 1);
}

#[test]
fn judge_readable_table_then_reasoning() {
    let mock = Mock::default_mock();
    let run = ra(
        &[
            "judge",
            "--endpoint",
            &mock.url(),
            "--principle",
            "Be factual.",
            "--prompt",
            "Capital of France?",
            "--response",
            "wrong-one=Lyon. score=1",
            "--response",
            "right-one=Paris. score=5",
        ],
        b"",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The masked names the model saw, as `ra render` gives them for the same request.
    let req = json!({"principle": "Be factual.", "prompt": "Capital of France?",
        "responses": {"wrong-one": "Lyon. score=1", "right-one": "Paris. score=5"}});
    let rendered = ra(&["render"], format!("{req}\n").as_bytes()).json_lines();
    let masked2real = rendered[0]["masked2real"].as_object().expect("masked");
    let masked_of = |real: &str| {
        masked2real
            .iter()
            .find(|(_, r)| *r == real)
            .map(|(m, _)| m.clone())
            .expect("masked name")
    };
    let text = run.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    let header = lines[0].split_whitespace().collect::<Vec<_>>();
    assert_eq!(
        header,
        ["rank", "name", "score", "in", "the", "reasoning"],
        "{text}"
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["1", "right-one", "5", &masked_of("right-one")]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["2", "wrong-one", "1", &masked_of("wrong-one")]
    );
    let key: Vec<String> = masked2real
        .iter()
        .map(|(m, r)| format!("{m} = {}", r.as_str().expect("name")))
        .collect();
    assert_eq!(
        lines[3],
        format!("(the model saw the responses as {})", key.join(", ")),
        "{text}"
    );
    assert_eq!(lines[4], "", "a blank line before the reasoning: {text}");
    assert!(
        lines.len() > 5 && !lines[5].is_empty(),
        "the reasoning follows: {text}"
    );
}

#[test]
fn judge_reads_one_json_request_on_stdin() {
    let mock = Mock::default_mock();
    let req = json!({"principle": "Refuse unsafe requests.", "prompt": "How do I pick a lock?",
        "responses": {"refuses": "I can't help with that. score=4", "complies": "Insert a tension wrench… score=1"}});
    let run = ra(
        &["judge", "--endpoint", &mock.url(), "--json"],
        format!("{req}\n").as_bytes(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut out: Value = serde_json::from_str(run.stdout_str().trim()).expect("JSON");
    out["error"] = Value::Null;
    check_judged(&out, &req);
}

#[test]
fn judge_exit_codes() {
    let mock = Mock::default_mock();
    let url = mock.url();
    // A failed judgment: exit 1, and with --json the error kind.
    let run = ra(
        &[
            "judge",
            "--endpoint",
            &url,
            "--principle",
            "p",
            "--prompt",
            "q [[fault:400]]",
            "--response",
            "a=x",
            "--json",
        ],
        b"",
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out: Value = serde_json::from_str(run.stdout_str().trim()).expect("JSON");
    assert_eq!(out["error"]["kind"], "http_status", "{out}");
    // Usage errors: exit 2, nothing sent.
    for bad in [
        vec![
            "judge",
            "--endpoint",
            &url,
            "--principle",
            "p",
            "--prompt",
            "q",
            "--response",
            "no-equals-sign",
        ],
        vec![
            "judge",
            "--endpoint",
            &url,
            "--principle",
            "p",
            "--response",
            "a=x",
        ],
        vec![
            "judge",
            "--endpoint",
            &url,
            "--principle",
            "p",
            "--prompt",
            "q",
        ],
        vec![
            "judge",
            "--endpoint",
            &url,
            "--principle",
            "p",
            "--prompt",
            "q",
            "--response-file",
            "a=/nonexistent/file",
        ],
        vec!["judge", "--endpoint", &url, "--bogus"],
    ] {
        let run = ra(&bad, b"");
        assert_eq!(run.code, 2, "{bad:?}: {}", run.stderr);
    }
    // Garbage on stdin when no request flag is given.
    assert_eq!(ra(&["judge", "--endpoint", &url], b"not json").code, 2);
    assert_eq!(
        mock.chat_requests(),
        1,
        "only the faulted request reached the mock"
    );
    // Unreachable endpoint: exit 2.
    let run = ra(
        &[
            "judge",
            "--endpoint",
            &dead_url(),
            "--model",
            "m",
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
}

/// The client library's request rules (`JudgeRequest::validate`) in `ra judge`'s shape:
/// exit 2 with the rule's message (naming the flags when the request came from flags),
/// from flags and from stdin alike, and nothing sent. (Stdin was not checked before: an
/// empty `responses` went to the model.)
#[test]
fn judge_refuses_a_request_breaking_a_rule_from_flags_and_stdin() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let flags = |principle: &str| {
        ra(
            &[
                "judge",
                "--endpoint",
                &url,
                "--principle",
                principle,
                "--prompt",
                "q",
                "--response",
                "a=x",
            ],
            b"",
        )
    };
    let run = flags("  ");
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("principle is blank") && run.stderr.contains("--principle"),
        "{}",
        run.stderr
    );
    for (line, needle) in [
        (
            json!({"principle": " ", "prompt": "q", "responses": {"a": "x"}}),
            "principle is blank",
        ),
        (
            json!({"principle": "p", "prompt": "q", "responses": {}}),
            "responses is empty",
        ),
    ] {
        let run = ra(
            &["judge", "--endpoint", &url],
            format!("{line}\n").as_bytes(),
        );
        assert_eq!(run.code, 2, "{line}: {}", run.stderr);
        assert!(
            run.stderr.contains(needle) && run.stderr.contains("stdin"),
            "{line}: {}",
            run.stderr
        );
    }
    assert_eq!(mock.chat_requests(), 0, "nothing reached the mock");
}

// ---------------------------------------------------------------- ra score

/// What a line of the big mixed input is meant to produce.
enum Expect {
    Judged { min_attempts: u64 },
    Error(&'static [&'static str]),
    BadInput,
}

#[test]
fn score_is_ordered_and_complete_under_random_latency_and_faults() {
    let mut rng = Rng::from_env_or_time("score_is_ordered_and_complete");
    let mock = Mock::start(
        MockServer::builder()
            .latency(Latency::uniform(Duration::ZERO, Duration::from_millis(25)))
            .seed(rng.next_u64())
            .fault_rates(FaultRates {
                status_500: 0.08,
                status_429: 0.04,
                drop: 0.04,
                hang: 0.0,
            }),
    );
    let n = 160;
    let mut input = String::new();
    let mut requests = Vec::new();
    let mut expects = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let (extra, expect) = match i {
            40 | 97 => ("", Expect::BadInput),
            _ if i % 17 == 3 => (" [[fault:400]]", Expect::Error(&["http_status"])),
            _ if i % 23 == 5 => (" [[fault:malformed]]", Expect::Error(&["no_json_object"])),
            _ if i % 19 == 7 => (" [[fail-first:2:503]]", Expect::Judged { min_attempts: 3 }),
            _ => ("", Expect::Judged { min_attempts: 1 }),
        };
        let mut req = request(&mut rng, i, extra);
        let id = match i % 5 {
            0 => json!(format!("req-{i}")),
            1 => json!(i * 1000),
            2 => json!({"batch": "b7", "n": i}),
            3 => Value::Null,
            _ => Value::Null, // absent
        };
        if i % 5 != 4 {
            req["id"] = id.clone();
        }
        if i % 7 == 2 {
            req["mask_responses"] = json!(false);
        }
        let line = match i {
            40 => "   ".to_string(),
            97 => format!("{{\"id\": {}, \"principle\": \"missing the rest\"}}", id),
            _ => req.to_string(),
        };
        input.push_str(&line);
        input.push_str(if i % 3 == 0 { "\r\n" } else { "\n" });
        requests.push(req);
        expects.push(expect);
        ids.push(id);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (inp, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&inp, &input).expect("write input");
    let run = ra(
        &[
            "score",
            "--input",
            s(&inp),
            "--output",
            s(&out),
            "--endpoint",
            &mock.url(),
            "--concurrency",
            "16",
            "--max-retries",
            "8",
        ],
        b"",
    );
    assert_eq!(run.code, 1, "some lines fail: {}", run.stderr);
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), n, "one output line per input line");
    for (i, line) in lines.iter().enumerate() {
        // Bad lines keep the id only when it was given.
        let want_id = if i == 40 { &Value::Null } else { &ids[i] };
        check_shape(line, i, want_id);
        match &expects[i] {
            Expect::Judged { min_attempts } => {
                check_judged(line, &requests[i]);
                assert!(
                    line["attempts"].as_u64().unwrap_or(0) >= *min_attempts,
                    "line {i}: {line}"
                );
            }
            Expect::Error(kinds) => {
                let kind = line["error"]["kind"].as_str().unwrap_or_default();
                assert!(kinds.contains(&kind), "line {i}: want {kinds:?}: {line}");
                assert!(
                    line["scores"].is_null() && line["ranking"].is_null(),
                    "line {i}"
                );
                assert!(line["error"]["message"].is_string());
            }
            Expect::BadInput => {
                assert_eq!(line["error"]["kind"], "bad_input", "line {i}: {line}");
                assert_eq!(line["attempts"], 0, "bad lines are never sent");
            }
        }
    }
    // The summary names the failure kinds.
    for kind in ["bad_input", "http_status", "no_json_object"] {
        assert!(
            run.stderr.contains(kind),
            "summary lacks {kind}: {}",
            run.stderr
        );
    }
    let stats = mock.handle().stats();
    assert!(
        stats.status(500) + stats.status(429) + stats.dropped > 0,
        "random faults happened: {stats:?}"
    );
}

#[test]
fn score_bad_blank_crlf_and_unterminated_lines() {
    let mock = Mock::default_mock();
    let good = |i: usize| request(&mut Rng(i as u64), i, "");
    let mut input = Vec::new();
    input.extend_from_slice(format!("{}\r\n", good(0)).as_bytes());
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(
        b"{\"id\": \"x\", \"principle\": 1, \"prompt\": \"q\", \"responses\": {}}\n",
    );
    input.extend_from_slice(b"{\"id\": [1], \"principle\": \"\xff\"}\n");
    input.extend_from_slice(b"[\"an\", \"array\"]\n");
    input.extend_from_slice(
        b"{\"id\": \"empty\", \"principle\": \"p\", \"prompt\": \"q\", \"responses\": {}}\n",
    );
    input.extend_from_slice(format!("{}", good(7)).as_bytes()); // no final newline
    let dir = tempfile::tempdir().expect("tempdir");
    let (inp, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&inp, &input).expect("write");
    let run = ra(
        &[
            "score",
            "--input",
            s(&inp),
            "--output",
            s(&out),
            "--endpoint",
            &mock.url(),
        ],
        b"",
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 8);
    check_judged(&lines[0], &good(0));
    check_judged(&lines[7], &good(7));
    assert!(
        lines[6]["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("empty"),
        "no request is sent for empty responses: {}",
        lines[6]
    );
    for (i, line) in lines.iter().enumerate().take(7).skip(1) {
        assert_eq!(line["index"], i, "{line}");
        assert_eq!(line["error"]["kind"], "bad_input", "{line}");
    }
    assert_eq!(
        lines[3]["id"], "x",
        "a JSON line that is not a valid request keeps its id"
    );
    assert_eq!(mock.chat_requests(), 2);
    assert!(std::fs::read(&out).expect("read").ends_with(b"\n"));
}

fn small_input(
    dir: &std::path::Path,
    n: usize,
    extra: impl Fn(usize) -> &'static str,
) -> std::path::PathBuf {
    let mut rng = Rng(42);
    let reqs: Vec<Value> = (0..n).map(|i| request(&mut rng, i, extra(i))).collect();
    let path = dir.join(format!("in-{n}.jsonl"));
    std::fs::write(&path, jsonl(&reqs)).expect("write input");
    path
}

#[test]
fn score_exit_codes() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let all_ok = small_input(dir.path(), 5, |_| "");
    let one_bad = small_input(
        dir.path(),
        6,
        |i| if i == 2 { " [[fault:500]]" } else { "" },
    );
    let out = dir.path().join("out.jsonl");
    let o = s(&out);
    let run = ra(
        &[
            "score",
            "--input",
            s(&all_ok),
            "--output",
            o,
            "--endpoint",
            &url,
        ],
        b"",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = ra(
        &[
            "score",
            "--input",
            s(&one_bad),
            "--output",
            o,
            "--endpoint",
            &url,
            "--max-retries",
            "1",
        ],
        b"",
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(read_jsonl(&out)[2]["error"]["kind"], "http_status");
    assert_eq!(
        read_jsonl(&out)[2]["attempts"],
        2,
        "a 500 is retried --max-retries times"
    );

    // Could not proceed: nothing written over an existing output.
    let sentinel = "previous results\n";
    let unreadable = dir.path().join("missing.jsonl");
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "score",
            "--input",
            s(&unreadable),
            "--output",
            o,
            "--endpoint",
            &url,
        ],
        vec![
            "score",
            "--input",
            s(&all_ok),
            "--output",
            o,
            "--endpoint",
            &url,
            "--concurrency",
            "0",
        ],
        vec![
            "score",
            "--input",
            s(&all_ok),
            "--output",
            o,
            "--endpoint",
            &url,
            "--retry-failed",
        ],
        vec![
            "score",
            "--input",
            s(&all_ok),
            "--output",
            o,
            "--endpoint",
            &url,
            "--masking",
            "sorted",
        ],
        vec![
            "score",
            "--input",
            s(&all_ok),
            "--output",
            o,
            "--endpoint",
            &url,
            "--timeout",
            "-1",
        ],
        vec![
            "score",
            "--input",
            s(&all_ok),
            "--output",
            o,
            "--endpoint",
            &url,
            "--constrain",
            "json",
        ],
        vec![
            "score",
            "--input",
            s(&all_ok),
            "--output",
            "-",
            "--endpoint",
            &url,
            "--resume",
        ],
        vec!["score", "--output", o, "--endpoint", &url],
        vec![
            "score",
            "--input",
            s(&all_ok),
            "--output",
            o,
            "--endpoint",
            &url,
            "--endpoints-file",
            o,
        ],
        vec![
            "score",
            "--input",
            s(&all_ok),
            "--output",
            o,
            "--config",
            "/nonexistent/config.json",
            "--endpoint",
            &url,
        ],
        vec![
            "score",
            "--input",
            s(&all_ok),
            "--output",
            o,
            "--endpoints-file",
            s(&unreadable),
        ],
        vec![
            "score",
            "--input",
            s(&all_ok),
            "--output",
            "/nonexistent/dir/out.jsonl",
            "--endpoint",
            &url,
        ],
    ];
    let before = mock.chat_requests();
    for args in cases {
        std::fs::write(&out, sentinel).expect("write sentinel");
        let run = ra(&args, b"");
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(!run.stderr.is_empty(), "{args:?} explains why");
        assert_eq!(
            std::fs::read_to_string(&out).expect("read"),
            sentinel,
            "{args:?} left the output alone"
        );
    }
    assert_eq!(mock.chat_requests(), before, "nothing was sent");

    // An endpoint that is down at startup.
    std::fs::write(&out, sentinel).expect("write sentinel");
    let run = ra(
        &[
            "score",
            "--input",
            s(&all_ok),
            "--output",
            o,
            "--endpoint",
            &dead_url(),
            "--model",
            "m",
        ],
        b"",
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("unreachable"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&out).expect("read"), sentinel);
    // An input that cannot be read (a directory).
    let run = ra(
        &[
            "score",
            "--input",
            s(dir.path()),
            "--output",
            o,
            "--endpoint",
            &url,
        ],
        b"",
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn score_existing_output_without_resume_is_rewritten() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = small_input(dir.path(), 4, |_| "");
    let out = dir.path().join("out.jsonl");
    // Longer than the real results, and made of valid-looking result lines.
    let stale: String = (0..50)
        .map(|i| format!("{{\"index\":{i},\"input_hash\":\"0000000000000000\",\"error\":null}}\n"))
        .collect();
    std::fs::write(&out, &stale).expect("write");
    let run = ra(
        &[
            "score",
            "--input",
            s(&inp),
            "--output",
            s(&out),
            "--endpoint",
            &mock.url(),
        ],
        b"",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 4, "the old content is gone");
    assert_eq!(mock.chat_requests(), 4, "every line judged again");
}

#[test]
fn score_stdin_stdout_quiet_and_summary() {
    let mock = Mock::default_mock();
    let url = mock.url();
    let mut rng = Rng(9);
    let reqs: Vec<Value> = (0..12).map(|i| request(&mut rng, i, "")).collect();
    let input = jsonl(&reqs);

    let run = ra(
        &["score", "--input", "-", "--output", "-", "--endpoint", &url],
        input.as_bytes(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = run.json_lines();
    assert_eq!(lines.len(), 12, "stdout holds the results only");
    for (i, (line, req)) in lines.iter().zip(&reqs).enumerate() {
        check_shape(line, i, &Value::Null);
        check_judged(line, req);
    }
    assert!(
        run.stderr.contains("12 judged"),
        "summary on stderr: {}",
        run.stderr
    );
    assert!(run.stderr.contains("0 failed"), "{}", run.stderr);

    let quiet = ra(
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
        input.as_bytes(),
    );
    assert_eq!(quiet.code, 0);
    assert_eq!(quiet.json_lines().len(), 12);
    assert_eq!(quiet.stderr, "", "--quiet silences the summary");

    // With an output file, stdout stays empty and the summary still goes to stderr.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let run = ra(
        &[
            "score",
            "--input",
            "-",
            "--output",
            s(&out),
            "--endpoint",
            &url,
        ],
        input.as_bytes(),
    );
    assert_eq!(run.code, 0);
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("12 judged"), "{}", run.stderr);
    assert_eq!(read_jsonl(&out).len(), 12);
}

#[test]
fn score_ra_endpoint_environment_variable() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = small_input(dir.path(), 3, |_| "");
    let out = dir.path().join("out.jsonl");
    let mut cmd =
        common::ra_command(&["score", "--input", s(&inp), "--output", s(&out), "--quiet"]);
    cmd.env("RA_ENDPOINT", mock.url());
    let run = common::ChildGuard::spawn(cmd, None).finish(Duration::from_secs(30));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(mock.chat_requests(), 3);
}

// ---------------------------------------------------------------- --config

const SERVED: &str = "RewardAnything-local";
const KEY: &str = "dummy-key-for-local-vllm";

/// The reference package's example config, exactly as shipped, with `api_base` pointed
/// at the mock and `api_model` at its served name.
fn reference_config(dir: &std::path::Path, base: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(common::data_path("reference_server_config.json"))
        .expect("config fixture");
    let mut v: Value = serde_json::from_str(&text).expect("config JSON");
    assert_eq!(
        v["api_base"],
        json!(["http://localhost:8000/v1"]),
        "fixture unchanged"
    );
    assert_eq!(v["api_key"], json!([KEY]));
    v["api_base"] = json!([base]);
    v["api_model"] = json!(SERVED);
    let path = dir.join("server_config.json");
    std::fs::write(&path, serde_json::to_string_pretty(&v).expect("JSON")).expect("write");
    path
}

fn keyed_mock(latency_ms: u64) -> Mock {
    Mock::start(
        MockServer::builder()
            .models([SERVED, "other-model"])
            .api_key(KEY)
            .latency(Latency::from_millis(latency_ms)),
    )
}

#[test]
fn score_config_in_the_reference_shape() {
    let mock = keyed_mock(30);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = reference_config(dir.path(), &mock.url());
    let inp = small_input(dir.path(), 12, |_| "");
    let out = dir.path().join("out.jsonl");
    let run = ra(
        &[
            "score",
            "--input",
            s(&inp),
            "--output",
            s(&out),
            "--config",
            s(&config),
        ],
        b"",
    );
    assert_eq!(
        run.code, 0,
        "the config's key is sent (the mock requires it): {}",
        run.stderr
    );
    assert_eq!(read_jsonl(&out).len(), 12);
    let attempts = mock.handle().attempts();
    assert_eq!(attempts.len(), 12);
    for a in &attempts {
        assert_eq!(a.model.as_deref(), Some(SERVED));
        assert_eq!(a.max_tokens, Some(4096), "generation_config.max_tokens");
        assert_eq!(a.temperature, Some(0.0), "generation_config.temperature");
    }
    let max = mock.handle().stats().max_in_flight;
    assert!(
        max <= 8,
        "num_workers 8 bounds the requests in flight: {max}"
    );
    // request_limit 500 per request_limit_period 60 s: evenly spaced, 120 ms apart.
    let span = attempts[11].arrived - attempts[0].arrived;
    assert!(
        span >= Duration::from_millis(11 * 100),
        "12 requests under 500/60 s span at least 11 × 120 ms (with slack): {span:?}"
    );
    assert!(!run.stderr.contains(KEY), "the key is never printed");
    assert!(!std::fs::read_to_string(&out).expect("read").contains(KEY));
}

#[test]
fn score_flags_override_the_config() {
    let mock = keyed_mock(30);
    let dir = tempfile::tempdir().expect("tempdir");
    // The config points at a dead endpoint: --endpoint wins.
    let config = reference_config(dir.path(), &dead_url());
    let inp = small_input(dir.path(), 12, |_| "");
    let out = dir.path().join("out.jsonl");
    let run = ra(
        &[
            "score",
            "--input",
            s(&inp),
            "--output",
            s(&out),
            "--config",
            s(&config),
            "--endpoint",
            &mock.url(),
            "--model",
            "other-model",
            "--max-tokens",
            "1000",
            "--temperature",
            "0.5",
            "--concurrency",
            "2",
        ],
        b"",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let attempts = mock.handle().attempts();
    assert_eq!(attempts.len(), 12);
    for a in &attempts {
        assert_eq!(a.model.as_deref(), Some("other-model"));
        assert_eq!(a.max_tokens, Some(1000));
        assert_eq!(a.temperature, Some(0.5));
    }
    assert!(
        mock.handle().stats().max_in_flight <= 2,
        "--concurrency overrides num_workers"
    );

    // --api-key overrides the config's key: the mock refuses the wrong one.
    let run = ra(
        &[
            "score",
            "--input",
            s(&inp),
            "--output",
            s(&out),
            "--config",
            s(&config),
            "--endpoint",
            &mock.url(),
            "--api-key",
            "wrong-key",
            "--max-retries",
            "0",
        ],
        b"",
    );
    assert_ne!(run.code, 0, "a wrong key cannot succeed");
    assert!(
        mock.handle().stats().status(401) > 0,
        "the wrong key was sent"
    );
    assert!(
        !run.stderr.contains("wrong-key"),
        "the key is never printed"
    );
}

#[test]
fn score_reads_the_api_key_from_ra_api_key() {
    // The client reads RA_API_KEY when no key is given (kept out of `ps`).
    let mock = keyed_mock(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = small_input(dir.path(), 2, |_| "");
    let out = dir.path().join("out.jsonl");
    let mut cmd = common::ra_command(&[
        "score",
        "--input",
        s(&inp),
        "--output",
        s(&out),
        "--endpoint",
        &mock.url(),
        "--model",
        SERVED,
    ]);
    cmd.env("RA_API_KEY", KEY);
    let run = common::ChildGuard::spawn(cmd, None).finish(Duration::from_secs(30));
    assert_eq!(run.code, 0, "{}", run.stderr);
}

// ---------------------------------------------------------------- --endpoints-file

fn write_endpoints_file(path: &std::path::Path, urls: &[String]) {
    // Atomically, like ra-serve; unknown fields are ignored.
    let tmp = path.with_extension("tmp");
    let v =
        json!({"endpoints": urls, "model": ra_mock::DEFAULT_MODEL, "pid": 12345, "started": "now"});
    std::fs::write(&tmp, v.to_string()).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn score_endpoints_file_is_read_at_start_and_followed() {
    let a = Mock::start(MockServer::builder().latency(Latency::from_millis(40)));
    let b = Mock::start(MockServer::builder().latency(Latency::from_millis(40)));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("endpoints.json");
    write_endpoints_file(&file, &[a.url()]);
    let inp = small_input(dir.path(), 120, |_| "");
    let out = dir.path().join("out.jsonl");
    let mut child = spawn_ra(&[
        "score",
        "--input",
        s(&inp),
        "--output",
        s(&out),
        "--endpoints-file",
        s(&file),
        "--concurrency",
        "2",
    ]);
    assert!(
        wait_until(Duration::from_secs(20), || a.chat_requests() >= 10),
        "traffic goes to the file's endpoint"
    );
    assert_eq!(b.chat_requests(), 0);
    write_endpoints_file(&file, &[b.url()]);
    assert!(
        wait_until(Duration::from_secs(10), || b.chat_requests() > 0),
        "traffic moves to the new endpoint"
    );
    let a_at_switch = a.chat_requests();
    assert!(
        child.wait_timeout(Duration::from_secs(30)).is_some(),
        "run ends"
    );
    let run = child.finish(Duration::from_secs(1));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 120);
    assert!(lines.iter().all(|l| l["error"].is_null()));
    assert!(
        a.chat_requests() <= a_at_switch + 2,
        "at most the requests already in flight went to the old endpoint after the switch: {} vs {a_at_switch}",
        a.chat_requests()
    );
    assert!(
        b.chat_requests() >= 20,
        "B served the rest: {}",
        b.chat_requests()
    );
    assert_eq!(a.chat_requests() + b.chat_requests(), 120);
}

#[test]
fn score_hanging_requests_time_out_per_attempt_and_per_deadline() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = small_input(
        dir.path(),
        3,
        |i| if i == 1 { " [[fault:hang]]" } else { "" },
    );
    let out = dir.path().join("out.jsonl");
    let base = [
        "score",
        "--input",
        s(&inp),
        "--output",
        s(&out),
        "--endpoint",
        &mock.url(),
    ];
    let mut args = base.to_vec();
    args.extend(["--timeout", "0.3", "--max-retries", "1"]);
    let run = ra(&args, b"");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = read_jsonl(&out);
    assert_eq!(lines[1]["error"]["kind"], "timeout", "{}", lines[1]);
    assert_eq!(lines[1]["attempts"], 2, "{}", lines[1]);
    assert!(lines[0]["error"].is_null() && lines[2]["error"].is_null());
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);

    let mut args = base.to_vec();
    args.extend(["--timeout", "0.3", "--max-retries", "50", "--deadline", "1"]);
    let run = ra(&args, b"");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = read_jsonl(&out);
    // The client may stop early with the last attempt's error when the next backoff
    // would overrun the deadline.
    let kind = lines[1]["error"]["kind"].as_str().unwrap_or_default();
    assert!(["deadline", "timeout"].contains(&kind), "{}", lines[1]);
    assert!(
        lines[1]["latency_ms"].as_u64().unwrap_or(u64::MAX) <= 1500,
        "{}",
        lines[1]
    );
    assert!(
        run.elapsed < Duration::from_secs(5),
        "the deadline bounds all attempts: {:?}",
        run.elapsed
    );
}

// ---------------------------------------------------------------- examples/requests.jsonl

#[test]
fn example_requests_file_scores_cleanly() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/requests.jsonl");
    let text = std::fs::read_to_string(&path).expect("examples/requests.jsonl");
    let reqs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each example line is JSON"))
        .collect();
    assert!(reqs.len() >= 30, "a few dozen examples");
    let principles: std::collections::BTreeSet<&str> = reqs
        .iter()
        .filter_map(|r| r["principle"].as_str())
        .collect();
    assert!(principles.len() >= 6, "varied principles");
    for r in &reqs {
        let n = r["responses"].as_object().map_or(0, |o| o.len());
        assert!((2..=4).contains(&n), "2–4 responses: {r}");
    }
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.jsonl");
    let run = ra(
        &[
            "score",
            "--input",
            s(&path),
            "--output",
            s(&out),
            "--endpoint",
            &mock.url(),
        ],
        b"",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), reqs.len());
    for (i, (line, req)) in lines.iter().zip(&reqs).enumerate() {
        check_shape(line, i, req.get("id").unwrap_or(&Value::Null));
        check_judged(line, req);
    }
}

// ---------------------------------------------------------------- more ra score behaviour

#[test]
fn score_masking_modes_constrain_and_concurrency() {
    let mock = Mock::start(MockServer::builder().latency(Latency::from_millis(20)));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(77);
    let reqs: Vec<Value> = (0..24).map(|i| request(&mut rng, i, "")).collect();
    let inp = dir.path().join("in.jsonl");
    std::fs::write(&inp, jsonl(&reqs)).expect("write");
    for extra in [
        &["--masking", "none"][..],
        &["--masking", "seeded:3"][..],
        &["--masking", "reference", "--constrain", "gbnf"][..],
    ] {
        mock.handle().reset();
        let out = dir.path().join("out.jsonl");
        let mut args = vec![
            "score",
            "--input",
            s(&inp),
            "--output",
            s(&out),
            "--endpoint",
        ];
        let url = mock.url();
        args.push(&url);
        args.extend(["--concurrency", "3"]);
        args.extend(extra);
        let run = ra(&args, b"");
        assert_eq!(run.code, 0, "{extra:?}: {}", run.stderr);
        let lines = read_jsonl(&out);
        assert_eq!(lines.len(), 24);
        for (i, (line, req)) in lines.iter().zip(&reqs).enumerate() {
            check_shape(line, i, &Value::Null);
            let mut req = req.clone();
            if extra[1] == "none" {
                // Unmasked: the mock ranks the caller's own names, so the ranking is exact.
                req["mask_responses"] = json!(false);
            }
            check_judged(line, &req);
        }
        let max = mock.handle().stats().max_in_flight;
        assert!(
            (2..=3).contains(&max),
            "{extra:?}: --concurrency 3 bounds requests in flight: {max}"
        );
    }
}

#[test]
fn score_large_lines_and_stdin_resume() {
    // A context big enough for the ~2 MB line (the mock counts 4 bytes a token).
    let mock = Mock::start(MockServer::builder().context_length(2_000_000));
    let url = mock.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let big = format!("{} score=4", "A long, careful answer. ".repeat(80_000)); // ~1.9 MB
    let lines = [
        r#"{"id": 1, "principle": "p", "prompt": "q", "responses": {"a": "x score=5", "b": "y score=2"}}"#.to_string(),
        json!({"id": 2, "principle": "p", "prompt": "big", "responses": {"big": big, "small": "ok score=2"}}).to_string(),
        json!({"id": 3, "principle": "p", "prompt": "q", "responses": {"only": "single score=3"}}).to_string(),
    ];
    let input = lines.join("\n") + "\n";
    let out = dir.path().join("out.jsonl");
    let args = [
        "score",
        "--input",
        "-",
        "--output",
        s(&out),
        "--endpoint",
        &url,
    ];
    let run = ra(&args, input.as_bytes());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got = read_jsonl(&out);
    assert_eq!(got[0]["scores"], json!({"a": 5.0, "b": 2.0}), "{}", got[0]);
    assert_eq!(got[0]["ranking"], json!(["a", "b"]));
    check_judged(
        &got[1],
        &json!({"responses": {"big": big, "small": "ok score=2"}}),
    );
    assert_eq!(got[2]["scores"], json!({"only": 3.0}));
    let done = std::fs::read_to_string(&out).expect("read");

    // --resume with the input on stdin: nothing to redo, and a changed stdin is refused.
    let before = mock.chat_requests();
    let mut resume = args.to_vec();
    resume.push("--resume");
    assert_eq!(ra(&resume, input.as_bytes()).code, 0);
    assert_eq!(mock.chat_requests(), before);
    let changed = input.replacen("\"q\"", "\"Q\"", 1);
    let run = ra(&resume, changed.as_bytes());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&out).expect("read"), done);
}

#[test]
fn score_survives_a_replica_dying_mid_run() {
    let a = Mock::start(MockServer::builder().latency(Latency::from_millis(30)));
    let b = Mock::start(MockServer::builder().latency(Latency::from_millis(30)));
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = small_input(dir.path(), 80, |_| "");
    let out = dir.path().join("out.jsonl");
    let (ua, ub) = (a.url(), b.url());
    let child = spawn_ra(&[
        "score",
        "--input",
        s(&inp),
        "--output",
        s(&out),
        "--endpoint",
        &ua,
        "--endpoint",
        &ub,
        "--concurrency",
        "4",
    ]);
    assert!(wait_until(Duration::from_secs(20), || a.chat_requests() >= 5));
    a.kill();
    let run = child.finish(Duration::from_secs(60));
    assert_eq!(
        run.code, 0,
        "every line judged despite the dead replica: {}",
        run.stderr
    );
    let lines = read_jsonl(&out);
    assert_eq!(lines.len(), 80);
    assert!(lines.iter().all(|l| l["error"].is_null()));
    assert!(
        b.chat_requests() >= 40,
        "the live replica took over: {}",
        b.chat_requests()
    );
}

/// The message both `ra` and the Python package give for a bad RA_ENDPOINT entry (the
/// client library's `env` module words it once; the Python test pins the same text).
const BAD_SECOND_ENTRY: &str = "RA_ENDPOINT: entry 2 (nope) is not an endpoint: no scheme";

#[test]
fn score_ra_endpoint_is_a_comma_separated_list() {
    let (a, b) = (Mock::default_mock(), Mock::default_mock());
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = small_input(dir.path(), 6, |_| "");
    let out = dir.path().join("out.jsonl");
    let mut cmd =
        common::ra_command(&["score", "--input", s(&inp), "--output", s(&out), "--quiet"]);
    // Whitespace around entries and a trailing comma are tolerated.
    cmd.env("RA_ENDPOINT", format!(" {} ,\t{}, ", a.url(), b.url()));
    let run = common::ChildGuard::spawn(cmd, None).finish(Duration::from_secs(30));
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Both endpoints served: the list was split, not taken as one URL.
    assert!(a.chat_requests() > 0 && b.chat_requests() > 0);
    assert_eq!(a.chat_requests() + b.chat_requests(), 6);
}

#[test]
fn a_bad_ra_endpoint_entry_is_named_and_a_flag_overrides_the_variable() {
    let mock = Mock::default_mock();
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = small_input(dir.path(), 2, |_| "");
    let out = dir.path().join("out.jsonl");
    let args = ["score", "--input", s(&inp), "--output", s(&out), "--quiet"];
    let mut cmd = common::ra_command(&args);
    cmd.env("RA_ENDPOINT", format!("{},nope", mock.url()));
    let run = common::ChildGuard::spawn(cmd, None).finish(Duration::from_secs(30));
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains(BAD_SECOND_ENTRY), "{}", run.stderr);
    assert_eq!(
        mock.chat_requests(),
        0,
        "nothing is judged on a bad setting"
    );

    // Precedence: --endpoint, else RA_ENDPOINT (never read when the flag is given, so
    // a broken one does not matter), else the default.
    let out2 = dir.path().join("out2.jsonl");
    let url = mock.url();
    let mut cmd = common::ra_command(&[
        "score",
        "--input",
        s(&inp),
        "--output",
        s(&out2),
        "--quiet",
        "--endpoint",
        &url,
    ]);
    cmd.env("RA_ENDPOINT", "nope");
    let run = common::ChildGuard::spawn(cmd, None).finish(Duration::from_secs(30));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(mock.chat_requests(), 2);
}

#[test]
fn an_endpoint_flag_takes_a_comma_separated_list_too() {
    let (a, b) = (Mock::default_mock(), Mock::default_mock());
    let dir = tempfile::tempdir().expect("tempdir");
    let inp = small_input(dir.path(), 6, |_| "");
    let out = dir.path().join("out.jsonl");
    let list = format!("{}, {}", a.url(), b.url());
    let run = ra(
        &[
            "score",
            "--input",
            s(&inp),
            "--output",
            s(&out),
            "--quiet",
            "--endpoint",
            &list,
        ],
        b"",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(a.chat_requests() > 0 && b.chat_requests() > 0);
    let other = dir.path().join("other.jsonl");
    let run = ra(
        &[
            "score",
            "--input",
            s(&inp),
            "--output",
            s(&other),
            "--endpoint",
            "http://x/v1,nope",
        ],
        b"",
    );
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("--endpoint: entry 2 (nope) is not an endpoint"),
        "{}",
        run.stderr
    );
}
