//! Several endpoints: least-loaded balancing, fail-over when one dies, ejection and
//! probing, 429 back-pressure; plus the rate limit, cancellation and endpoint updates.

mod client_common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client_common::{assert_judgment, builder, eventually, numbered};
use futures::StreamExt;
use ra_mock::{Fault, Latency, MockHandle, MockServer, Outcome};
use rewardanything_client::BalanceConfig;
use rewardanything_client::{Client, JudgeRequest};

async fn mock_with_latency(ms: u64) -> MockHandle {
    MockServer::builder()
        .latency(Latency::from_millis(ms))
        .start()
        .await
        .unwrap()
}

fn served(mock: &MockHandle) -> u64 {
    mock.stats().status(200)
}

fn is_ejected(client: &Client, mock: &MockHandle) -> bool {
    client
        .endpoint_stats()
        .iter()
        .find(|e| e.url == mock.base_url())
        .is_some_and(|e| e.ejected)
}

async fn judge_all(client: &Client, requests: &[JudgeRequest]) {
    let results: Vec<_> = client.judge_many(requests.to_vec()).collect().await;
    assert_eq!(results.len(), requests.len());
    for (i, result) in results {
        let judgment = result.unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        assert_judgment(&requests[i], &judgment, &format!("request {i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_endpoint_serves_most_requests() {
    // A contrast large enough that CPU contention cannot blur it: with 16 in flight the
    // slow endpoint holds at most about 8 at once for a whole second each.
    let fast = mock_with_latency(5).await;
    let slow = mock_with_latency(1000).await;
    let client = builder(&[&slow, &fast]).max_in_flight(16).build().unwrap();
    let requests: Vec<_> = (0..240).map(|i| numbered(i, "")).collect();
    judge_all(&client, &requests).await;
    let (f, s) = (served(&fast), served(&slow));
    assert_eq!(f + s, 240, "each request answered once");
    assert!(
        f as f64 >= 0.8 * 240.0,
        "fast endpoint served {f}, slow {s}: expected at least 80% on the fast one"
    );
    assert!(s > 0, "the slow endpoint is still used");
    fast.shutdown().await;
    slow.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_endpoint_mid_run_loses_nothing() {
    let a = Arc::new(mock_with_latency(20).await);
    let b = Arc::new(mock_with_latency(20).await);
    let client = builder(&[&a, &b]).max_in_flight(32).build().unwrap();
    let n = 400;
    let requests: Vec<_> = (0..n).map(|i| numbered(i, "")).collect();
    let killer = {
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            // Kill while requests are in flight on b (waiting for it, rather than
            // hoping, keeps a loaded machine from making the kill prove nothing).
            let mut in_flight = 0;
            let started = eventually(Duration::from_secs(20), || {
                in_flight = b.stats().in_flight;
                served(&a) + served(&b) >= 80 && in_flight > 0
            })
            .await;
            b.kill();
            (started, in_flight)
        })
    };
    judge_all(&client, &requests).await;
    let (started, in_flight_at_kill) = killer.await.unwrap();
    assert!(started, "the run never reached the kill point");
    assert!(!b.is_alive());
    assert!(
        in_flight_at_kill > 0,
        "b was idle when killed: proves nothing"
    );
    assert!(served(&a) > served(&b), "a took over");

    // Fail-over never resends a request that already succeeded: a prompt answered 200
    // twice is only possible when b wrote a 200 as it was killed.
    let mut ok_by_prompt: HashMap<u64, Vec<bool>> = HashMap::new();
    for (mock, is_b) in [(&a, false), (&b, true)] {
        for attempt in mock.attempts() {
            if attempt.outcome == Outcome::Status(200) {
                ok_by_prompt
                    .entry(attempt.prompt_hash)
                    .or_default()
                    .push(is_b);
            }
        }
    }
    assert_eq!(ok_by_prompt.len(), n, "every request answered");
    for served_by in ok_by_prompt.values() {
        assert!(
            served_by.len() == 1 || served_by.iter().any(|&is_b| is_b),
            "a request answered twice by the live endpoint"
        );
    }
    assert!(
        ok_by_prompt.values().filter(|v| v.len() > 1).count() as u64 <= in_flight_at_kill,
        "more duplicates than requests in flight at the kill"
    );
}

/// Two endpoints, `b` killed until ejected (sequential requests: ties alternate, so `b`
/// is tried and fails until ejected), then restarted. Returns the client, both mocks
/// and an instant at or after the ejection.
async fn eject_b_then_restart_it(cooldown: Duration) -> (Client, MockHandle, MockHandle, Instant) {
    let a = mock_with_latency(0).await;
    let b = mock_with_latency(0).await;
    let client = builder(&[&a, &b])
        .balance(BalanceConfig::default().eject_after(2).cooldown(cooldown))
        .build()
        .unwrap();
    b.kill_and_wait().await;
    for i in 0..10 {
        let request = numbered(i, "");
        let judgment = client.judge(&request).await.unwrap();
        assert_judgment(&request, &judgment, "while b is down");
    }
    assert!(is_ejected(&client, &b), "b ejected after connect errors");
    let ejected_by = Instant::now();
    b.restart().await.unwrap();
    (client, a, b, ejected_by)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_endpoint_rests_during_its_cooldown() {
    // A cooldown no run of this test reaches: every request below falls inside it,
    // however slow the machine.
    let (client, a, b, _) = eject_b_then_restart_it(Duration::from_secs(3600)).await;
    let a_before = served(&a);
    for i in 10..30 {
        let request = numbered(i, "");
        let judgment = client.judge(&request).await.unwrap();
        assert_judgment(&request, &judgment, "during the cooldown");
    }
    assert_eq!(
        b.stats().chat_requests,
        0,
        "an ejected endpoint gets no traffic during its cooldown"
    );
    assert_eq!(served(&a) - a_before, 20, "a served everything");
    assert!(is_ejected(&client, &b), "still ejected: no probe yet");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_endpoint_is_probed_after_the_cooldown_and_comes_back() {
    let cooldown = Duration::from_millis(300);
    let (client, a, b, ejected_by) = eject_b_then_restart_it(cooldown).await;
    // At least the cooldown since the ejection (a lower bound: safe on a slow machine).
    tokio::time::sleep(cooldown.saturating_sub(ejected_by.elapsed()) + Duration::from_millis(50))
        .await;
    for i in 20..40 {
        client.judge(&numbered(i, "")).await.unwrap();
    }
    assert!(!is_ejected(&client, &b), "the probe brought b back");
    let after = b.stats().status(200);
    assert!(after >= 5, "b serves again after the probe: {after}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_pressure_429_does_not_eject_but_503_does() {
    for (code, should_eject) in [(429u16, false), (503, true)] {
        let a = mock_with_latency(0).await;
        let b = mock_with_latency(0).await;
        b.set_forced_fault(Some(Fault::Status {
            code,
            retry_after: None,
        }));
        let client = builder(&[&a, &b])
            .balance(
                BalanceConfig::default()
                    .eject_after(2)
                    .cooldown(Duration::from_secs(30))
                    .backpressure_pause(Duration::from_millis(20)),
            )
            .build()
            .unwrap();
        for i in 0..30 {
            let request = numbered(i, "");
            assert_judgment(&request, &client.judge(&request).await.unwrap(), "");
            // Let b's back-pressure pause run out now and then so it is tried again.
            if i % 5 == 4 {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        let refused = b.stats().status(code);
        assert!(refused >= 2, "{code}: b was tried only {refused} times");
        assert_eq!(is_ejected(&client, &b), should_eject, "{code}");
        if !should_eject {
            assert!(refused >= 3, "429s keep b in rotation: {refused}");
        }
        a.shutdown().await;
        b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_healthy_endpoint_is_never_ejected() {
    let a = mock_with_latency(0).await;
    a.set_forced_fault(Some(Fault::Status {
        code: 503,
        retry_after: None,
    }));
    let client = builder(&[&a])
        .balance(
            BalanceConfig::default()
                .eject_after(1)
                .cooldown(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    let err = client.judge(&numbered(1, "")).await.unwrap_err();
    assert_eq!(err.attempts, 5);
    assert!(!is_ejected(&client, &a));
    a.set_forced_fault(None);
    let request = numbered(2, "");
    let judged = client.judge_detailed(&request).await.unwrap();
    assert_eq!(judged.attempts, 1, "usable at once");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_spaces_concurrent_requests() {
    let mock = mock_with_latency(0).await;
    // 5 requests per 500 ms: one every 100 ms.
    let client = builder(&[&mock])
        .rate_limit(5, Duration::from_millis(500))
        .build()
        .unwrap();
    let n = 15;
    let requests: Vec<_> = (0..n).map(|i| numbered(i, "")).collect();
    let started = Instant::now();
    judge_all(&client, &requests).await;
    let took = started.elapsed();
    assert_eq!(mock.attempts().len(), n);
    // Whatever burst is allowed, 15 requests at 5 per 500 ms need at least
    // (15 - 5) x 100 ms: a lower bound, safe on a slow machine.
    assert!(took >= Duration::from_millis(1000), "took {took:?}");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_never_exceeds_n_per_period() {
    let mock = mock_with_latency(0).await;
    let period = Duration::from_millis(500);
    let client = builder(&[&mock]).rate_limit(5, period).build().unwrap();
    // Timed on the client, around each call: the k-th attempt left after `calls[k].0`
    // and the (k+5)-th before `calls[k+5].1`, so their spacing (at least `period` when
    // at most 5 leave per period) is a lower bound of `calls[k+5].1 - calls[k].0`,
    // whatever the machine's speed.
    let mut calls = Vec::new();
    for i in 0..15 {
        let before = Instant::now();
        let request = numbered(i, "");
        assert_judgment(&request, &client.judge(&request).await.unwrap(), "");
        calls.push((before, Instant::now()));
    }
    assert_eq!(mock.attempts().len(), 15);
    for (k, w) in calls.windows(6).enumerate() {
        let span = w[5].1 - w[0].0;
        // 1 ms for the limiter's integer nanosecond arithmetic.
        assert!(
            span >= period - Duration::from_millis(1),
            "attempts {k}..={}: 6 within {span:?}",
            k + 5
        );
    }
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_cancels_outstanding_work() {
    let mock = mock_with_latency(0).await;
    let client = builder(&[&mock])
        .max_in_flight(8)
        .attempt_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    for ordered in [false, true] {
        mock.reset();
        let requests: Vec<_> = (0..100).map(|i| numbered(i, "[[fault:hang]]")).collect();
        let mut stream = if ordered {
            client
                .judge_many_ordered(requests, Some(8))
                .map(|_| ())
                .boxed()
        } else {
            client.judge_many(requests).map(|_| ()).boxed()
        };
        let polled = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
        assert!(polled.is_err(), "nothing can finish");
        assert!(
            eventually(Duration::from_secs(3), || mock.stats().in_flight == 8).await,
            "ordered={ordered}: expected 8 in flight, got {}",
            mock.stats().in_flight
        );
        drop(stream);
        assert!(
            eventually(Duration::from_secs(3), || mock.stats().in_flight == 0).await,
            "ordered={ordered}: still {} in flight after the drop",
            mock.stats().in_flight
        );
        let sent = mock.stats().chat_requests;
        assert_eq!(sent, 8, "ordered={ordered}: only the first 8 were sent");
        // No attempt after the drop, checked without a sleep: the client's slots are
        // handed out in order (a fair semaphore), so any request the dropped stream left
        // queued would be sent (and hang) before this one could run.
        let probe = numbered(100, "");
        let judged = tokio::time::timeout(Duration::from_secs(20), client.judge(&probe))
            .await
            .unwrap_or_else(|_| panic!("ordered={ordered}: work left behind holds the slots"));
        assert_judgment(&probe, &judged.unwrap(), "after the drop");
        assert_eq!(
            mock.stats().chat_requests,
            sent + 1,
            "ordered={ordered}: no attempt after the drop but the probe"
        );
    }
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_can_be_replaced_at_runtime() {
    let a = mock_with_latency(0).await;
    let b = mock_with_latency(0).await;
    let client = builder(&[&a]).build().unwrap();
    let batch =
        |from: usize| -> Vec<JudgeRequest> { (from..from + 20).map(|i| numbered(i, "")).collect() };

    judge_all(&client, &batch(0)).await;
    assert_eq!((served(&a), served(&b)), (20, 0));

    client.set_endpoints(&[b.base_url()]).unwrap();
    assert_eq!(client.endpoint_urls(), [b.base_url()]);
    judge_all(&client, &batch(20)).await;
    assert_eq!((served(&a), served(&b)), (20, 20), "all new work goes to b");

    client
        .set_endpoints(&[a.base_url(), format!("{}/", b.base_url())])
        .unwrap();
    assert_eq!(client.endpoint_urls(), [a.base_url(), b.base_url()]);
    judge_all(&client, &batch(40)).await;
    assert!(served(&a) > 20 && served(&b) > 20, "both in use again");
    assert_eq!(served(&a) + served(&b), 60);

    // Removing an endpoint while its requests run: they finish where they are.
    a.set_latency(Latency::from_millis(300));
    let slow = {
        let client = client.clone();
        tokio::spawn(async move {
            let request = numbered(99, "[[latency-ms:300]]");
            let judged = client.judge_detailed(&request).await;
            (request, judged)
        })
    };
    assert!(
        eventually(Duration::from_secs(3), || a.stats().in_flight
            + b.stats().in_flight
            == 1)
        .await
    );
    client.set_endpoints(&[b.base_url()]).unwrap();
    let (request, judged) = slow.await.unwrap();
    let judged = judged.unwrap();
    assert_judgment(&request, &judged.judgment, "in flight across set_endpoints");
    assert_eq!(judged.attempts, 1);
    a.shutdown().await;
    b.shutdown().await;
}
