//! Retries, timeouts, deadlines, the context-length retry and the malformed re-ask,
//! counted in the mock's attempt log and in `JudgeError::attempts`.

mod client_common;

use std::time::{Duration, Instant};

use client_common::{assert_judgment, attempts_of, builder, eventually, numbered};
use futures::StreamExt;
use ra_mock::{Attempt, ContextErrorStyle, MockServer, Outcome};
use rewardanything_client::{JudgeErrorKind, RetryPolicy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_until_success() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock]).build().await.unwrap();
    for (i, spec) in ["500", "502", "503", "504", "429", "drop"]
        .iter()
        .enumerate()
    {
        let request = numbered(i, &format!("[[fail-first:2:{spec}]]"));
        let judged = client
            .judge_detailed(&request)
            .await
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_judgment(&request, &judged.judgment, spec);
        assert_eq!(judged.attempts, 3, "{spec}");
        let log = attempts_of(&mock, &request);
        assert_eq!(log.len(), 3, "{spec}: attempts seen by the server");
        assert_eq!(log[2].outcome, Outcome::Status(200), "{spec}");
    }
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_attempt_is_retried() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock])
        .attempt_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let request = numbered(20, "[[fail-first:1:hang]]");
    let started = Instant::now();
    let judged = client.judge_detailed(&request).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_judgment(&request, &judged.judgment, "after hang");
    assert_eq!(judged.attempts, 2);
    assert_eq!(attempts_of(&mock, &request).len(), 2);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_are_not_retried() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock]).build().await.unwrap();
    for (i, code) in [400u16, 401, 404, 422, 403, 413].iter().enumerate() {
        let request = numbered(30 + i, &format!("[[fault:{code}]]"));
        let err = client.judge(&request).await.unwrap_err();
        assert_eq!(err.status(), Some(*code), "{err}");
        assert_eq!(err.attempts, 1, "{code}");
        assert!(
            err.to_string().contains("injected fault"),
            "server message: {err}"
        );
        assert_eq!(attempts_of(&mock, &request).len(), 1, "{code}");
    }
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_the_limit() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock])
        .retry(client_common::fast_retry().max_attempts(4))
        .build()
        .await
        .unwrap();
    for (i, spec) in ["503", "429", "drop", "500"].iter().enumerate() {
        let request = numbered(40 + i, &format!("[[fault:{spec}]]"));
        let err = client.judge(&request).await.unwrap_err();
        assert_eq!(err.attempts, 4, "{spec}: {err}");
        match *spec {
            "drop" => assert!(
                matches!(err.kind, JudgeErrorKind::Transport(_)),
                "{spec}: {err}"
            ),
            code => assert_eq!(err.status(), code.parse().ok(), "{err}"),
        }
        assert_eq!(attempts_of(&mock, &request).len(), 4, "{spec}");
    }
    // Nothing arrives after the error was returned.
    let before = mock.stats().chat_requests;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mock.stats().chat_requests, before);

    // No retries at all with RetryPolicy::none().
    let once = builder(&[&mock])
        .retry(RetryPolicy::none())
        .build()
        .await
        .unwrap();
    let request = numbered(49, "[[fault:503]]");
    assert_eq!(once.judge(&request).await.unwrap_err().attempts, 1);
    assert_eq!(attempts_of(&mock, &request).len(), 1);
    mock.shutdown().await;
}

/// Server-side gaps between one attempt's answer and the next attempt's arrival.
fn gaps(log: &[Attempt]) -> Vec<Duration> {
    log.windows(2)
        .map(|w| w[1].arrived.saturating_duration_since(w[0].finished))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_delays_grow_up_to_the_cap_with_jitter_and_stop_at_the_limit() {
    let mock = MockServer::builder().start().await.unwrap();
    // Caps 30, 60, 120, 120 ms; full jitter draws each wait uniformly below its cap.
    let client = builder(&[&mock])
        .retry(
            RetryPolicy::default()
                .max_attempts(5)
                .base_delay(Duration::from_millis(30))
                .max_delay(Duration::from_millis(120)),
        )
        .build()
        .await
        .unwrap();
    let n = 24;
    let requests: Vec<_> = (0..n).map(|i| numbered(50 + i, "[[fault:503]]")).collect();
    let results: Vec<_> = client.judge_many(requests.clone()).collect().await;
    for (i, result) in &results {
        let err = result.as_ref().expect_err("always 503");
        assert_eq!(err.attempts, 5, "request {i}");
        assert_eq!(err.status(), Some(503));
    }
    let mut by_retry: Vec<Vec<Duration>> = vec![Vec::new(); 4];
    for request in &requests {
        let log = attempts_of(&mock, request);
        assert_eq!(log.len(), 5, "stops at the limit");
        for (k, gap) in gaps(&log).into_iter().enumerate() {
            by_retry[k].push(gap);
        }
    }
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let mean = |v: &[Duration]| v.iter().map(ms).sum::<f64>() / v.len() as f64;
    let max = |v: &[Duration]| v.iter().map(ms).fold(0.0, f64::max);
    let min = |v: &[Duration]| v.iter().map(ms).fold(f64::INFINITY, f64::min);
    let caps = [30.0, 60.0, 120.0, 120.0];
    // Generous slack for a loaded machine: the HTTP round trip adds to each gap.
    let slack = 60.0;
    for (k, gaps) in by_retry.iter().enumerate() {
        assert!(
            max(gaps) <= caps[k] + slack,
            "retry {k}: a wait of {:.1} ms exceeds its cap {} ms",
            max(gaps),
            caps[k]
        );
        // Jitter: 24 uniform draws are not all alike.
        assert!(
            max(gaps) - min(gaps) > caps[k] / 4.0,
            "retry {k}: no jitter ({:.1}..{:.1} ms)",
            min(gaps),
            max(gaps)
        );
    }
    // Growth: the late caps (120 ms) let waits well above the first cap (30 ms) happen,
    // and the mean wait grows (expected means 15, 30, 60, 60 ms).
    let late: Vec<Duration> = by_retry[2..].concat();
    assert!(
        max(&late) > caps[0] + 10.0,
        "late waits never exceed the first cap"
    );
    assert!(
        mean(&late) > 1.5 * mean(&by_retry[0]),
        "mean waits do not grow: first {:.1} ms, late {:.1} ms",
        mean(&by_retry[0]),
        mean(&late)
    );
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_bounded() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock]).build().await.unwrap();
    let request = numbered(80, "[[fail-first:1:429:retry-after=1]]");
    let judged = client.judge_detailed(&request).await.unwrap();
    assert_eq!(judged.attempts, 2);
    let log = attempts_of(&mock, &request);
    let gap = gaps(&log)[0];
    // fast_retry's own waits are at most 5 ms: this one is the server's second.
    assert!(gap >= Duration::from_secs(1), "waited only {gap:?}");
    assert!(gap < Duration::from_millis(1800), "waited {gap:?}");

    // A Retry-After larger than max_retry_after is cut to it.
    let mut policy = client_common::fast_retry();
    policy.max_retry_after = Duration::from_millis(300);
    let client = builder(&[&mock]).retry(policy).build().await.unwrap();
    let request = numbered(81, "[[fail-first:1:503:retry-after=30]]");
    client.judge(&request).await.unwrap();
    let gap = gaps(&attempts_of(&mock, &request))[0];
    assert!(
        gap >= Duration::from_millis(300) && gap < Duration::from_secs(2),
        "waited {gap:?}"
    );
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_request_times_out_and_the_server_sees_the_disconnect() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock])
        .attempt_timeout(Duration::from_millis(150))
        .retry(client_common::fast_retry().max_attempts(2))
        .build()
        .await
        .unwrap();
    let request = numbered(90, "[[fault:hang]]");
    let started = Instant::now();
    let err = client.judge(&request).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err.kind, JudgeErrorKind::Timeout(d) if d == Duration::from_millis(150)),
        "{err}"
    );
    assert_eq!(err.attempts, 2);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(attempts_of(&mock, &request).len(), 2);
    assert!(
        eventually(Duration::from_secs(3), || mock.stats().in_flight == 0).await,
        "abandoned requests still held by the server: {}",
        mock.stats().in_flight
    );
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_bounds_total_time() {
    let mock = MockServer::builder().start().await.unwrap();
    // A hang with a long attempt timeout: the deadline cuts it.
    let client = builder(&[&mock])
        .attempt_timeout(Duration::from_secs(30))
        .deadline(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let err = client
        .judge(&numbered(91, "[[fault:hang]]"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err.kind, JudgeErrorKind::Deadline(_)), "{err}");
    assert_eq!(err.kind_str(), "deadline");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );

    // Endless 503s with many attempts: the deadline stops the retry loop.
    let client = builder(&[&mock])
        .retry(
            RetryPolicy::default()
                .max_attempts(1000)
                .base_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(40)),
        )
        .deadline(Duration::from_millis(400))
        .build()
        .await
        .unwrap();
    let request = numbered(92, "[[fault:503]]");
    let started = Instant::now();
    let err = client.judge(&request).await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        matches!(err.kind, JudgeErrorKind::Deadline(_)) || err.status() == Some(503),
        "{err}"
    );
    assert!(err.attempts > 2 && err.attempts < 1000, "{err}");
    assert_eq!(attempts_of(&mock, &request).len() as u32, err.attempts);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_length_400_is_retried_once_with_fitting_max_tokens() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock]).build().await.unwrap();
    // The mock counts the prompt as 30001 tokens of a 32768 context.
    let request = numbered(100, "[[fault:400-context]]");
    let judged = client.judge_detailed(&request).await.unwrap();
    assert_judgment(&request, &judged.judgment, "after lowering max_tokens");
    assert_eq!(judged.attempts, 2);
    let seen: Vec<Option<u64>> = attempts_of(&mock, &request)
        .iter()
        .map(|a| a.max_tokens)
        .collect();
    assert_eq!(seen, [Some(4096), Some(32768 - 30001)]);

    // A prompt larger than the context: no max_tokens helps, no retry.
    let request = numbered(101, "[[fault:400-context:prompt-tokens=40000]]");
    let err = client.judge(&request).await.unwrap_err();
    assert!(
        matches!(err.kind, JudgeErrorKind::ContextLength { .. }),
        "{err}"
    );
    assert_eq!(err.kind_str(), "context_length");
    assert_eq!(err.attempts, 1);
    assert!(
        err.to_string().contains("maximum context length is 32768"),
        "{err}"
    );
    assert_eq!(attempts_of(&mock, &request).len(), 1);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_length_floor_is_not_retried() {
    // vLLM's truncated wording only gives a floor of the prompt ("at least" L - M + 1
    // tokens): lowering max_tokens to L - P would overflow again, so no retry.
    let mock = MockServer::builder()
        .context_error_style(ContextErrorStyle::Truncated)
        .start()
        .await
        .unwrap();
    let client = builder(&[&mock]).build().await.unwrap();
    let request = numbered(102, "[[fault:400-context]]");
    let err = client.judge(&request).await.unwrap_err();
    assert!(
        matches!(err.kind, JudgeErrorKind::ContextLength { .. }),
        "{err}"
    );
    assert_eq!(err.attempts, 1, "{err}");
    assert_eq!(attempts_of(&mock, &request).len(), 1);
    mock.shutdown().await;

    // The legacy wording also works.
    let mock = MockServer::builder()
        .context_error_style(ContextErrorStyle::Legacy)
        .start()
        .await
        .unwrap();
    let client = builder(&[&mock]).build().await.unwrap();
    let request = numbered(103, "[[fault:400-context]]");
    client.judge(&request).await.unwrap();
    let seen: Vec<Option<u64>> = attempts_of(&mock, &request)
        .iter()
        .map(|a| a.max_tokens)
        .collect();
    assert_eq!(seen, [Some(4096), Some(2767)]);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_answers_are_reasked_once_with_another_seed_when_asked() {
    let mock = MockServer::builder().start().await.unwrap();
    let plain = builder(&[&mock]).build().await.unwrap();
    let request = numbered(110, "[[fail-first:1:malformed]]");
    let err = plain.judge(&request).await.unwrap_err();
    assert!(matches!(err.kind, JudgeErrorKind::Parse(_)), "{err}");
    assert_eq!(err.attempts, 1, "no re-ask unless opted in");
    assert_eq!(attempts_of(&mock, &request).len(), 1);

    let reask = builder(&[&mock])
        .reask_malformed(true)
        .build()
        .await
        .unwrap();
    let request = numbered(111, "[[fail-first:1:malformed]]");
    let judged = reask.judge_detailed(&request).await.unwrap();
    assert_judgment(&request, &judged.judgment, "re-asked");
    assert_eq!(judged.attempts, 2);
    let seeds: Vec<Option<i64>> = attempts_of(&mock, &request)
        .iter()
        .map(|a| a.seed)
        .collect();
    assert_eq!(seeds.len(), 2);
    assert_ne!(seeds[0], seeds[1], "the re-ask uses another seed");
    assert!(seeds[1].is_some());

    // Always malformed: one re-ask only.
    let request = numbered(112, "[[fault:malformed]]");
    let err = reask.judge(&request).await.unwrap_err();
    assert!(matches!(err.kind, JudgeErrorKind::Parse(_)), "{err}");
    assert_eq!(err.attempts, 2);
    assert_eq!(attempts_of(&mock, &request).len(), 2);
    mock.shutdown().await;
}
