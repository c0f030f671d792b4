//! Behaviours added after review: the deadline covers the wait for a slot, startup finds
//! the first endpoint that answers, and an answer ends a 429 pause.

mod client_common;

use std::time::{Duration, Instant};

use client_common::{assert_judgment, builder, numbered};
use ra_mock::{Latency, MockServer};
use rewardanything_client::balance::{BalanceConfig, Balancer, Outcome};
use rewardanything_client::{Client, JudgeErrorKind};

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
        .await
        .unwrap();
    let started = Instant::now();
    let requests: Vec<_> = (0..3).map(|i| numbered(i, "")).collect();
    let results = futures::future::join_all(requests.iter().map(|r| client.judge(r))).await;
    let took = started.elapsed();
    for result in results {
        let error = result.expect_err("every judgment outlives its deadline");
        assert!(matches!(error.kind, JudgeErrorKind::Deadline(_)), "{error}");
    }
    // Each judgment's 300 ms started when it was called, not when it got the slot:
    // waiting in line for the single slot would take 3 x 300 ms.
    assert!(took < Duration::from_millis(800), "took {took:?}");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_uses_the_first_endpoint_that_answers() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", listener.local_addr().unwrap())
    };
    let mock = MockServer::builder().start().await.unwrap();
    let client = Client::builder()
        .endpoint(dead)
        .endpoint(mock.base_url())
        .retry(
            rewardanything_client::RetryPolicy::default()
                .max_attempts(3)
                .base_delay(Duration::from_millis(10)),
        )
        .build()
        .await
        .expect("the second endpoint answers");
    assert_eq!(client.model(), ra_mock::DEFAULT_MODEL);
    let request = numbered(7, "");
    let judgment = client
        .judge(&request)
        .await
        .expect("judged on the live endpoint");
    assert_judgment(&request, &judgment, "after failing over at startup");
    mock.shutdown().await;
}

#[test]
fn an_answer_ends_a_429_pause_and_long_pauses_are_capped() {
    let urls = vec!["http://a/v1".to_string(), "http://b/v1".to_string()];
    let balancer = Balancer::new(&urls, BalanceConfig::default());
    let endpoints = balancer.endpoints();
    balancer.record(
        &endpoints[0],
        Outcome::Busy(Some(Duration::from_secs(3600))),
    );
    for _ in 0..3 {
        assert_eq!(balancer.pick().unwrap().endpoint().base_url, "http://b/v1");
    }
    balancer.record(&endpoints[0], Outcome::Alive);
    // Keep b busier: a, no longer paused, is the least loaded.
    let _hold = balancer.pick().unwrap();
    assert_eq!(balancer.pick().unwrap().endpoint().base_url, "http://a/v1");

    let capped = Balancer::new(
        &urls,
        BalanceConfig {
            max_backpressure_pause: Duration::from_millis(50),
            ..BalanceConfig::default()
        },
    );
    let endpoints = capped.endpoints();
    capped.record(
        &endpoints[0],
        Outcome::Busy(Some(Duration::from_secs(3600))),
    );
    std::thread::sleep(Duration::from_millis(80));
    let _hold = capped.pick().unwrap();
    let next = capped.pick().unwrap();
    let picked: Vec<&str> = [_hold.endpoint(), next.endpoint()]
        .iter()
        .map(|e| e.base_url.as_str())
        .collect();
    assert!(
        picked.contains(&"http://a/v1"),
        "a is usable again after the cap: {picked:?}"
    );
}
