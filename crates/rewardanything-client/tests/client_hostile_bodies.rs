//! Servers that answer 200 with a body a client must not trust: one that never ends, one
//! far larger than `max_response_bytes`, an error envelope instead of a completion.

mod client_common;

use std::time::{Duration, Instant};

use client_common::{attempts_of, builder, eventually, numbered};
use ra_mock::{MockHandle, MockServer, Outcome};
use rewardanything_client::{DEFAULT_MAX_RESPONSE_BYTES, JudgeError, JudgeErrorKind};

/// What a client that reads past the cap would let the mock generate: the cap plus what
/// loopback socket buffers and hyper hold (a few MiB), with room to spare.
const SLACK: u64 = 64 << 20;

/// Asserts `err` is a one-attempt `bad_response` about the size cap.
fn assert_size_cap_error(err: &JudgeError, what: &str) {
    assert!(
        matches!(err.kind, JudgeErrorKind::BadResponse(_)),
        "{what}: {err}"
    );
    assert_eq!(err.kind_str(), "bad_response", "{what}");
    assert!(
        err.to_string().contains("max_response_bytes"),
        "{what}: {err}"
    );
    assert_eq!(err.attempts, 1, "{what}: a size error is not retried");
}

/// The mock stops generating once the client lets go of the connection.
async fn assert_generation_stopped(mock: &MockHandle, cap: u64) {
    assert!(
        eventually(Duration::from_secs(10), || mock.stats().streaming_bodies
            == 0)
        .await,
        "the client kept the body open"
    );
    let streamed = mock.stats().streamed_bytes;
    assert!(
        streamed < cap + SLACK,
        "{streamed} bytes generated for a {cap}-byte cap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_stops_at_max_response_bytes_and_is_not_retried() {
    let mock = MockServer::builder().start().await.unwrap();
    let cap = 1 << 20;
    let client = builder(&[&mock])
        .max_response_bytes(cap)
        // Long: the size cap, not the timeout, must end the attempt.
        .attempt_timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let request = numbered(1, "[[fault:endless-body]]");
    let started = Instant::now();
    let err = client.judge(&request).await.expect_err("endless body");
    let took = started.elapsed();
    assert_size_cap_error(&err, "endless");
    assert_eq!(attempts_of(&mock, &request).len(), 1);
    // Generous: only catches reading until the 120 s timeout.
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert_generation_stopped(&mock, cap as u64).await;
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_declared_body_is_refused_before_it_is_read() {
    let mock = MockServer::builder().start().await.unwrap();
    // The default cap (8 MiB), then a small explicit one, against 100 MB: the mock
    // generates only what socket buffers take before the client hangs up.
    for cap in [None, Some(1 << 20)] {
        let size = 100_000_000u64;
        mock.reset();
        let mut b = builder(&[&mock]).attempt_timeout(Duration::from_secs(120));
        if let Some(cap) = cap {
            b = b.max_response_bytes(cap);
        }
        let client = b.build().unwrap();
        let request = numbered(2, &format!("[[fault:huge-body:{size}]]"));
        let err = client.judge(&request).await.expect_err("huge body");
        assert_size_cap_error(&err, &format!("{size} bytes"));
        assert_eq!(attempts_of(&mock, &request).len(), 1);
        let cap = cap.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES) as u64;
        assert_generation_stopped(&mock, cap).await;
    }
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_under_the_cap_that_is_no_completion_is_a_bad_response() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock]).build().unwrap();
    let request = numbered(3, "[[fault:huge-body:5000]]");
    let err = client.judge(&request).await.expect_err("cut-short JSON");
    assert_eq!(err.kind_str(), "bad_response", "{err}");
    assert!(!err.to_string().contains("max_response_bytes"), "{err}");
    assert_eq!(err.attempts, 1);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_body_with_status_200_keeps_the_servers_message() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock]).build().unwrap();
    let request = numbered(4, "[[fault:error-200]]");
    let err = client.judge(&request).await.expect_err("error envelope");
    assert!(
        err.to_string()
            .contains("ra-mock: injected error in a 200 answer (error-200)"),
        "{err}"
    );
    let log = attempts_of(&mock, &request);
    assert_eq!(log.len() as u32, err.attempts);
    assert!(log.iter().all(|a| a.outcome == Outcome::Status(200)));
    mock.shutdown().await;
}
