//! Retries, timeouts, deadlines, the context-length retry and the malformed re-ask,
//! counted in the mock's attempt log and in `JudgeError::attempts`.

mod client_common;

use std::time::{Duration, Instant};

use client_common::{assert_judgment, attempts_of, builder, eventually, numbered};
use ra_mock::{Attempt, ContextErrorStyle, Latency, MockServer, Outcome};
use rewardanything_client::content_hash;
use rewardanything_client::{JudgeErrorKind, RetryPolicy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_until_success() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock]).build().unwrap();
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
    let client = builder(&[&mock]).build().unwrap();
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
        .unwrap();
    let specs = ["503", "429", "drop", "500"];
    let failing = |i: usize| numbered(40 + i, &format!("[[fault:{}]]", specs[i]));
    for (i, spec) in specs.iter().enumerate() {
        let request = failing(i);
        let err = client.judge(&request).await.unwrap_err();
        assert_eq!(err.attempts, 4, "{spec}: {err}");
        match *spec {
            "drop" => assert!(
                matches!(err.kind, JudgeErrorKind::Transport { .. }),
                "{spec}: {err}"
            ),
            code => assert_eq!(err.status(), code.parse().ok(), "{err}"),
        }
        assert_eq!(attempts_of(&mock, &request).len(), 4, "{spec}");
    }
    // Nothing arrives after the error was returned: the mock finishes what it got, the
    // only later arrival is the request below, and the four above still have exactly 4
    // attempts each at the end of the test.
    assert!(
        client_common::eventually(Duration::from_secs(5), || mock.stats().in_flight == 0).await,
        "still in flight: {}",
        mock.stats().in_flight
    );
    let before = mock.stats().chat_requests;

    // No retries at all with RetryPolicy::none().
    let once = builder(&[&mock])
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let request = numbered(49, "[[fault:503]]");
    assert_eq!(once.judge(&request).await.unwrap_err().attempts, 1);
    assert_eq!(attempts_of(&mock, &request).len(), 1);
    assert_eq!(
        mock.stats().chat_requests,
        before + 1,
        "a late retry arrived"
    );
    for (i, spec) in specs.iter().enumerate() {
        assert_eq!(attempts_of(&mock, &failing(i)).len(), 4, "{spec}");
    }
    mock.shutdown().await;
}

/// Server-side gaps between one attempt's answer and the next attempt's arrival.
fn gaps(log: &[Attempt]) -> Vec<Duration> {
    log.windows(2)
        .map(|w| w[1].arrived.saturating_duration_since(w[0].finished))
        .collect()
}

/// Every wait `policy.backoff(salt)` gives, in order.
fn delays(policy: &RetryPolicy, salt: u64) -> Vec<Duration> {
    let mut backoff = policy.backoff(salt);
    std::iter::from_fn(|| backoff.next_delay(None)).collect()
}

fn jittered_policy(seed: u64) -> RetryPolicy {
    // Caps 30, 60, 120, 120 ms.
    RetryPolicy::default()
        .max_attempts(5)
        .base_delay(Duration::from_millis(30))
        .max_delay(Duration::from_millis(120))
        .jitter_seed(seed)
}

#[test]
fn seeded_backoff_draws_below_caps_that_grow_and_stops_at_the_limit() {
    let policy = jittered_policy(42);
    let caps = [30, 60, 120, 120].map(Duration::from_millis);
    // Reproducible: the same seed and salt give the same waits; either changes them.
    assert_eq!(delays(&policy, 7), delays(&policy, 7));
    assert_ne!(delays(&policy, 7), delays(&policy, 8));
    assert_ne!(delays(&policy, 7), delays(&jittered_policy(43), 7));
    // Full jitter over 500 salts: each wait is in [0, its cap], the draws cover that
    // range, and the mean wait grows with the cap.
    let mut by_retry: Vec<Vec<Duration>> = vec![Vec::new(); 4];
    for salt in 0..500 {
        let waits = delays(&policy, salt);
        assert_eq!(waits.len(), 4, "five attempts: four waits");
        for (k, (wait, cap)) in waits.iter().zip(caps).enumerate() {
            assert!(*wait <= cap, "retry {k}: {wait:?} above its cap {cap:?}");
            by_retry[k].push(*wait);
        }
    }
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
    for (k, waits) in by_retry.iter().enumerate() {
        let (lo, hi) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
        assert!(
            *lo < caps[k] / 20 && *hi > caps[k] * 19 / 20,
            "retry {k}: {lo:?}..{hi:?}"
        );
    }
    assert!(
        mean(&by_retry[2]) > mean(&by_retry[0]) * 3,
        "means do not grow"
    );
    assert!(
        mean(&by_retry[1]) > mean(&by_retry[0]) * 3 / 2,
        "means do not grow"
    );

    // Retry-After raises a wait to itself, capped by max_retry_after; the draw still
    // happens, so the waits after it are unchanged.
    let mut capped = policy.clone();
    capped.max_retry_after = Duration::from_millis(300);
    let plain = delays(&capped, 5);
    let mut b = capped.backoff(5);
    let ra = [
        Some(Duration::from_secs(30)),
        None,
        Some(Duration::from_millis(1)),
        None,
    ];
    let got: Vec<Duration> = ra.iter().map(|r| b.next_delay(*r).unwrap()).collect();
    assert_eq!(
        got,
        [
            Duration::from_millis(300),
            plain[1],
            plain[2].max(Duration::from_millis(1)),
            plain[3]
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_waits_its_seeded_backoff_between_attempts() {
    let mock = MockServer::builder().start().await.unwrap();
    let request = numbered(50, "[[fault:503]]");
    // The client salts the seeded draws with the request's content hash. Pick a seed
    // (deterministically) whose waits are small next to their caps, so that waiting
    // the full caps (no jitter) would show in the total time.
    let salt = content_hash(&request);
    // Caps of 4 s and 8 s (two retries): a seed whose two draws add up to under 200 ms
    // makes waiting the caps (no jitter, 12 s) stand out whatever the machine's speed.
    let slow_caps = |seed| {
        RetryPolicy::default()
            .max_attempts(3)
            .base_delay(Duration::from_secs(4))
            .max_delay(Duration::from_secs(8))
            .jitter_seed(seed)
    };
    let seed = (0..100_000)
        .find(|&seed| {
            delays(&slow_caps(seed), salt).iter().sum::<Duration>() < Duration::from_millis(200)
        })
        .expect("a seed with small draws");
    let policy = slow_caps(seed);
    let expected = delays(&policy, salt);
    let client = builder(&[&mock]).retry(policy).build().unwrap();
    let started = Instant::now();
    let err = client.judge(&request).await.expect_err("always 503");
    let took = started.elapsed();
    assert_eq!(err.attempts, 3);
    assert_eq!(err.status(), Some(503));
    let log = attempts_of(&mock, &request);
    assert_eq!(log.len(), 3, "stops at the limit");
    // Each gap between an answer and the next attempt is at least the seeded wait (a
    // lower bound: the round trip only adds to it).
    for (k, (gap, wait)) in gaps(&log).iter().zip(&expected).enumerate() {
        assert!(
            gap >= wait,
            "retry {k}: waited {gap:?}, the policy says {wait:?}"
        );
    }
    // Only catches waiting the caps (at least 12 s) instead of the draws (< 200 ms).
    assert!(
        took < Duration::from_secs(10),
        "took {took:?} for waits of {expected:?}"
    );
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_bounded() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock]).build().unwrap();
    let request = numbered(80, "[[fail-first:1:429:retry-after=1]]");
    let judged = client.judge_detailed(&request).await.unwrap();
    assert_eq!(judged.attempts, 2);
    let log = attempts_of(&mock, &request);
    let gap = gaps(&log)[0];
    // fast_retry's own waits are at most 5 ms: this one is the server's second.
    assert!(gap >= Duration::from_secs(1), "waited only {gap:?}");

    // A Retry-After larger than max_retry_after is not slept through blindly: the
    // judgment fails at once with the server's answer and the reason.
    let mut policy = client_common::fast_retry();
    policy.max_retry_after = Duration::from_millis(300);
    let client = builder(&[&mock]).retry(policy).build().unwrap();
    let request = numbered(81, "[[fail-first:1:503:retry-after=30]]");
    let err = client.judge(&request).await.unwrap_err();
    assert_eq!((err.status(), err.attempts), (Some(503), 1), "{err}");
    assert!(
        err.to_string()
            .contains("Retry-After 30s exceeds the 300ms limit"),
        "{err}"
    );
    assert_eq!(attempts_of(&mock, &request).len(), 1);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_request_times_out_and_the_server_sees_the_disconnect() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock])
        .attempt_timeout(Duration::from_millis(150))
        .retry(client_common::fast_retry().max_attempts(2))
        .build()
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
    // Generous: only catches a hang that the timeout did not cut.
    assert!(took < Duration::from_secs(20), "{took:?}");
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
        .unwrap();
    let started = Instant::now();
    let err = client
        .judge(&numbered(91, "[[fault:hang]]"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err.kind, JudgeErrorKind::Deadline(_)), "{err}");
    assert_eq!(err.kind_str(), "deadline");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // Generous: only catches the 30 s attempt timeout running out instead.
    assert!(took < Duration::from_secs(20), "{took:?}");

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
        .unwrap();
    let request = numbered(92, "[[fault:503]]");
    let started = Instant::now();
    let err = client.judge(&request).await.unwrap_err();
    let took = started.elapsed();
    // Generous: 1000 attempts with their waits would take well over 20 s.
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(
        matches!(err.kind, JudgeErrorKind::Deadline(_)) || err.status() == Some(503),
        "{err}"
    );
    assert!(err.attempts > 2 && err.attempts < 1000, "{err}");
    assert_eq!(attempts_of(&mock, &request).len() as u32, err.attempts);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_covers_waiting_for_a_slot() {
    let mock = MockServer::builder()
        .latency(Latency::from_millis(2_000))
        .start()
        .await
        .unwrap();
    let client = builder(&[&mock])
        .max_in_flight(1)
        .deadline(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let n = 8;
    let requests: Vec<_> = (0..n).map(|i| numbered(200 + i, "")).collect();
    let results = futures::future::join_all(requests.iter().map(|r| client.judge(r))).await;
    let took = started.elapsed();
    for result in results {
        let error = result.expect_err("every judgment outlives its deadline");
        assert!(matches!(error.kind, JudgeErrorKind::Deadline(_)), "{error}");
    }
    // Each judgment's 300 ms started when it was called, not when it got the slot:
    // waiting in line for the single slot would take at least 8 x 300 ms = 2.4 s.
    // About 300 ms are expected; the bound only catches the queueing.
    assert!(took < Duration::from_millis(2000), "took {took:?}");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_length_400_is_retried_once_with_fitting_max_tokens() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock]).build().unwrap();
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
    let client = builder(&[&mock]).build().unwrap();
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
    let client = builder(&[&mock]).build().unwrap();
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
    let plain = builder(&[&mock]).build().unwrap();
    let request = numbered(110, "[[fail-first:1:malformed]]");
    let err = plain.judge(&request).await.unwrap_err();
    assert!(matches!(err.kind, JudgeErrorKind::Parse(_)), "{err}");
    assert_eq!(err.attempts, 1, "no re-ask unless opted in");
    assert_eq!(attempts_of(&mock, &request).len(), 1);

    let reask = builder(&[&mock]).reask_malformed(true).build().unwrap();
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
