//! The client's shared budget of buffered answer bytes (`max_buffered_response_bytes`):
//! a burst of large answers completes with never more than the budget buffered, an
//! answer larger than the whole budget fails cleanly, and the budget is given back.

mod client_common;

use std::time::Duration;

use client_common::{assert_judgment, attempts_of, builder, numbered};
use ra_mock::{Latency, MockServer};
use rewardanything_client::{JudgeErrorKind, Sampling};

/// Sixteen valid answers of about 300 KiB each arrive together; the budget holds three
/// at a time: every judgment succeeds, and the buffers never exceeded the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_large_answers_completes_within_the_budget() {
    const ANSWER: usize = 300 << 10;
    const BUDGET: usize = 1 << 20;
    let mock = MockServer::builder()
        .think_bytes(ANSWER)
        // Room for the long thinking (the mock cuts an output at 4 bytes per token).
        .context_length(1 << 24)
        .latency(Latency::Fixed(Duration::from_millis(200)))
        .start()
        .await
        .unwrap();
    let client = builder(&[&mock])
        .sampling(Sampling::default().max_tokens(1 << 20))
        .max_buffered_response_bytes(BUDGET)
        .build()
        .unwrap();
    let requests: Vec<_> = (0..16).map(|i| numbered(i, "")).collect();
    let results = futures::future::join_all(requests.iter().map(|r| client.judge(r))).await;
    for (request, result) in requests.iter().zip(results) {
        let judgment = result.expect("judged");
        assert_judgment(request, &judgment, "large answer");
        assert!(judgment.reasoning.len() >= ANSWER, "the answers are large");
    }
    let buffer = client.response_buffer();
    assert!(
        buffer.peak_bytes <= BUDGET as u64,
        "{} bytes buffered at once over a {BUDGET}-byte budget",
        buffer.peak_bytes
    );
    // More than one answer was buffered at a time (the budget is shared, not a lock).
    assert!(buffer.peak_bytes > ANSWER as u64, "{buffer:?}");
    assert_eq!(buffer.held_bytes, 0, "every answer gave its share back");
    mock.shutdown().await;
}

/// An answer larger than the whole budget (declared or not) fails at once as a
/// `bad_response` naming the budget, is not retried, and leaves the budget whole for
/// the next judgments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_larger_than_the_whole_budget_fails_cleanly() {
    const BUDGET: usize = 256 << 10;
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock])
        .attempt_timeout(Duration::from_secs(120))
        .max_buffered_response_bytes(BUDGET)
        .build()
        .unwrap();
    for (i, fault) in ["[[fault:huge-body:1000000]]", "[[fault:endless-body]]"]
        .into_iter()
        .enumerate()
    {
        let request = numbered(i, fault);
        let err = client.judge(&request).await.expect_err("over the budget");
        assert!(
            matches!(err.kind, JudgeErrorKind::BadResponse(_)),
            "{fault}: {err}"
        );
        assert!(
            err.to_string().contains("max_buffered_response_bytes"),
            "{fault}: {err}"
        );
        assert_eq!(
            attempts_of(&mock, &request).len(),
            1,
            "{fault}: not retried"
        );
        assert_eq!(client.response_buffer().held_bytes, 0, "{fault}");
    }
    // The budget is whole again: ordinary answers still go through, many at once.
    let requests: Vec<_> = (10..42).map(|i| numbered(i, "")).collect();
    let results = futures::future::join_all(requests.iter().map(|r| client.judge(r))).await;
    for (request, result) in requests.iter().zip(results) {
        assert_judgment(request, &result.expect("judged"), "after the refusal");
    }
    assert!(client.response_buffer().peak_bytes <= BUDGET as u64);
    mock.shutdown().await;
}

/// Answers that fail after being read (cut-short completions) give their share back too:
/// a burst of them never holds more than the budget and ends with nothing held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_answers_release_their_share() {
    const BUDGET: usize = 1 << 20;
    let mock = MockServer::builder()
        .latency(Latency::Fixed(Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    let client = builder(&[&mock])
        .max_buffered_response_bytes(BUDGET)
        .build()
        .unwrap();
    let requests: Vec<_> = (0..32)
        .map(|i| numbered(i, "[[fault:huge-body:400000]]"))
        .collect();
    let results = futures::future::join_all(requests.iter().map(|r| client.judge(r))).await;
    for result in results {
        let err = result.expect_err("cut short");
        assert_eq!(err.kind_str(), "bad_response", "{err}");
    }
    let buffer = client.response_buffer();
    assert!(buffer.peak_bytes <= BUDGET as u64, "{buffer:?}");
    assert!(buffer.peak_bytes >= 400_000, "{buffer:?}");
    assert_eq!(buffer.held_bytes, 0);
    mock.shutdown().await;
}
