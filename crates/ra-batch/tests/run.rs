//! A batch run through the library's API against the in-process mock: ordered lines,
//! a bad line in place, resume after a cut output (kept lines not judged again), the
//! refusal of a changed input, and a stop.

use std::path::Path;

use ra_batch::{Batch, BatchError, Stop};
use ra_mock::{MockHandle, MockServer, expected_score};
use serde_json::{Value, json};

fn client(mock: &MockHandle) -> rewardanything_client::Client {
    rewardanything_client::Client::builder()
        .endpoint(mock.base_url())
        .model(ra_mock::DEFAULT_MODEL)
        .max_in_flight(8)
        .build()
        .expect("client")
}

/// Line `i`: two responses the mock scores `i % 5 + 1` and 3.
fn request(i: usize) -> Value {
    json!({
        "id": format!("q{i}"),
        "principle": "Prefer the best answer.",
        "prompt": format!("question {i}"),
        "responses": {"zulu": format!("z{i} score={}", i % 5 + 1), "alpha": format!("a{i} score=3")},
    })
}

/// 20 requests with a non-JSON line at index 5.
fn write_input(path: &Path) {
    let mut text = String::new();
    for i in 0..20 {
        if i == 5 {
            text.push_str("not json\n");
        } else {
            text.push_str(&format!("{}\n", request(i)));
        }
    }
    std::fs::write(path, text).expect("write input");
}

async fn input(path: &Path) -> tokio::io::BufReader<tokio::fs::File> {
    tokio::io::BufReader::new(tokio::fs::File::open(path).await.expect("open input"))
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn check(lines: &[Value]) {
    assert_eq!(lines.len(), 20);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["index"], i, "{line}");
        if i == 5 {
            assert_eq!(line["error"]["kind"], "bad_input", "{line}");
            continue;
        }
        assert_eq!(line["id"], format!("q{i}"));
        let z = expected_score(&format!("z{i} score={}", i % 5 + 1));
        assert_eq!(
            line["scores"]["zulu"].as_f64(),
            Some(f64::from(z)),
            "{line}"
        );
        assert!(line["error"].is_null(), "{line}");
    }
}

/// A fresh run of `inp` into `out`, to its end.
async fn run_to_end(out: &Path, inp: &Path, mock: &MockHandle) -> ra_batch::Summary {
    Batch::to_file(out)
        .prepare()
        .await
        .expect("prepare")
        .run(input(inp).await, client(mock))
        .await
        .expect("run")
}

#[tokio::test]
async fn a_run_writes_every_line_in_order_and_a_resume_judges_only_the_rest() {
    let mock = MockServer::builder().start().await.expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let (inp, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    write_input(&inp);
    let mut seen = Vec::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let summary = Batch::to_file(&out)
        .window(4)
        .on_line(move |d: &ra_batch::LineDone<'_>| {
            let _ = tx.send(d.index);
        })
        .prepare()
        .await
        .expect("prepare")
        .run(input(&inp).await, client(&mock))
        .await
        .expect("run");
    seen.extend(rx.try_iter());
    assert_eq!(
        seen,
        (0..20).collect::<Vec<_>>(),
        "the hook sees every line in order"
    );
    assert_eq!((summary.judged, summary.failed_total()), (19, 1));
    assert_eq!(summary.failed.get("bad_input"), Some(&1));
    assert!(!summary.interrupted);
    assert_eq!(mock.stats().chat_requests, 19);
    let first = read_lines(&out);
    check(&first);

    // Cut after 7 whole lines and half of the 8th, as a killed run leaves it.
    let text = std::fs::read_to_string(&out).expect("read");
    let cut: usize = text
        .split_inclusive('\n')
        .take(7)
        .map(str::len)
        .sum::<usize>()
        + 10;
    std::fs::write(&out, &text[..cut]).expect("cut");
    let prepared = Batch::to_file(&out)
        .resume(true)
        .prepare()
        .await
        .expect("prepare");
    assert_eq!(prepared.kept(), 7);
    let summary = prepared
        .run(input(&inp).await, client(&mock))
        .await
        .expect("resumed run");
    assert_eq!((summary.kept, summary.judged), (7, 13));
    assert_eq!(
        mock.stats().chat_requests,
        19 + 13,
        "kept lines are not judged again"
    );
    let resumed = read_lines(&out);
    check(&resumed);
    assert_eq!(
        resumed[..7],
        first[..7],
        "kept lines are kept byte for byte"
    );
}

#[tokio::test]
async fn a_changed_input_is_refused_and_a_stop_leaves_a_resumable_prefix() {
    let mock = MockServer::builder().start().await.expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let (inp, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    write_input(&inp);
    let (tx, rx) = tokio::sync::watch::channel(Stop::Drain);
    let summary = Batch::to_file(&out)
        .stop(rx)
        .prepare()
        .await
        .expect("prepare")
        .run(input(&inp).await, client(&mock))
        .await
        .expect("run");
    drop(tx);
    assert!(summary.interrupted, "stopped before reading the input");
    run_to_end(&out, &inp, &mock).await;
    let before = std::fs::read(&out).expect("read");
    std::fs::write(
        &inp,
        std::fs::read_to_string(&inp)
            .expect("read")
            .replacen("question 1\"", "question one\"", 1),
    )
    .expect("edit input");
    let err = Batch::to_file(&out)
        .resume(true)
        .prepare()
        .await
        .expect("prepare")
        .run(input(&inp).await, client(&mock))
        .await
        .expect_err("a changed input is refused");
    assert!(
        matches!(err, BatchError::InputChanged { line: 2, .. }),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&out).expect("read"),
        before,
        "the output is untouched"
    );
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
async fn wait_until(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cond()
}

#[tokio::test]
async fn close_on_drain_stops_sending_finishes_within_the_grace_and_keeps_a_prefix() {
    let mock = MockServer::builder().start().await.expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let (inp, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    // Line 3 never gets an answer: a drain without a grace would wait for it forever.
    let text: String = (0..40)
        .map(|i| {
            let mut r = request(i);
            if i == 3 {
                r["prompt"] = json!("question 3 [[fault:hang]]");
            }
            format!("{r}\n")
        })
        .collect();
    std::fs::write(&inp, text).expect("write input");
    let client = rewardanything_client::Client::builder()
        .endpoint(mock.base_url())
        .model(ra_mock::DEFAULT_MODEL)
        .max_in_flight(2)
        .build()
        .expect("client");
    let (tx, rx) = tokio::sync::watch::channel(Stop::Run);
    let lines = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&lines);
    let run = tokio::spawn(
        Batch::to_file(&out)
            .flush_every(std::time::Duration::ZERO)
            .stop(rx)
            .close_on_drain(std::time::Duration::from_millis(300))
            .on_line(move |_| {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
            .prepare()
            .await
            .expect("prepare")
            .run(input(&inp).await, client),
    );
    // Lines 0..3 are written and line 3 hangs: the one other slot keeps judging lines
    // that wait behind it.
    assert!(
        wait_until(std::time::Duration::from_secs(20), || mock.stats().hung
            >= 1
            && lines.load(std::sync::atomic::Ordering::SeqCst) >= 3)
        .await
    );
    tx.send(Stop::Drain).expect("send");
    let sent_at_drain = mock.stats().chat_requests;
    let summary = tokio::time::timeout(std::time::Duration::from_secs(20), run)
        .await
        .expect("the grace ends the run although line 3 never answers")
        .expect("task")
        .expect("run");
    assert!(summary.interrupted);
    assert!(
        mock.stats().chat_requests <= sent_at_drain + 2,
        "at most the requests already leaving are sent after the drain"
    );
    let written = read_lines(&out);
    assert_eq!(written.len(), 3, "lines up to the hung one, none after");
    for (i, line) in written.iter().enumerate() {
        assert_eq!(line["index"], i);
    }
    drop(tx);
}

#[tokio::test]
async fn a_resume_names_the_first_line_it_does_not_keep() {
    let mock = MockServer::builder().start().await.expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let (inp, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    write_input(&inp);
    run_to_end(&out, &inp, &mock).await;
    let whole = std::fs::read_to_string(&out).expect("read");
    let prepared = Batch::to_file(&out)
        .resume(true)
        .prepare()
        .await
        .expect("prepare");
    assert_eq!(
        (prepared.kept(), prepared.cut().map(ToString::to_string)),
        (20, None)
    );
    let mut lines: Vec<&str> = whole.lines().collect();
    lines[3] = "{\"index\": 3, \"scores\": ";
    std::fs::write(&out, lines.join("\n") + "\n").expect("write");
    let prepared = Batch::to_file(&out)
        .resume(true)
        .prepare()
        .await
        .expect("prepare");
    assert_eq!(prepared.kept(), 3);
    let cut = prepared.cut().expect("a cut");
    assert!(
        matches!(
            cut,
            ra_batch::results::ResultLineError::Malformed { line: 4, .. }
        ),
        "{cut}"
    );
    assert!(
        cut.to_string()
            .starts_with("result line 4: not a result line: "),
        "{cut}"
    );
}

/// The client library's request rules (`JudgeRequest::validate`) in a run's shape: a
/// line that breaks one is a `bad_input` line in its place, with its id, naming the field
/// and the rule; the lines around it are judged.
#[tokio::test]
async fn a_line_breaking_a_request_rule_is_a_bad_input_line_naming_the_field() {
    let mock = MockServer::builder().start().await.expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let (inp, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    let mut blank = request(1);
    blank["principle"] = json!(" \t");
    let mut empty = request(2);
    empty["responses"] = json!({});
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("r{i}"), json!("text"))).collect();
    let mut too_many = request(3);
    too_many["responses"] = Value::Object(many);
    let text: String = [request(0), blank, empty, too_many, request(4)]
        .iter()
        .map(|v| format!("{v}\n"))
        .collect();
    std::fs::write(&inp, text).expect("write input");
    let summary = Batch::to_file(&out)
        .prepare()
        .await
        .expect("prepare")
        .run(input(&inp).await, client(&mock))
        .await
        .expect("run");
    assert_eq!(summary.failed.get("bad_input"), Some(&3));
    let lines = read_lines(&out);
    assert_eq!(lines.len(), 5);
    for (i, needle) in [
        (1, "principle is blank"),
        (2, "responses is empty"),
        (3, "responses has 65 responses: a request holds at most 64"),
    ] {
        let line = &lines[i];
        assert_eq!(line["id"], format!("q{i}"), "{line}");
        assert_eq!(line["error"]["kind"], "bad_input", "{line}");
        let message = line["error"]["message"].as_str().expect("a message");
        assert!(
            message.contains(needle),
            "line {i}: {message:?} lacks {needle:?}"
        );
    }
    for i in [0, 4] {
        assert!(lines[i]["error"].is_null(), "{}", lines[i]);
    }
    assert_eq!(mock.stats().chat_requests, 2, "bad lines are not sent");
}
