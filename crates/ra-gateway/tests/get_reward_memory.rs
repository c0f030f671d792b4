//! `/get_reward`'s memory: what a call expands to once decoded (the rollouts judged at
//! once, each with its copies of the principle) is held to a window and counted against
//! the gateway's byte budget, not only the bytes of its body.

mod common;

use std::time::Duration;

use common::{ClientOptions, Gateway, http, send, slow_mock};
use ra_gateway::GatewayConfig;
use ra_mock::{Latency, MockServer};
use serde_json::{Value, json};

const CLIENT: ClientOptions = ClientOptions {
    max_in_flight: None,
    max_attempts: 1,
};

fn queries(n: usize) -> Value {
    let query: Vec<String> = (0..n)
        .map(|i| {
            format!("<|im_start|>user\nQuestion {i}?<|im_end|>\n<|im_start|>assistant\nAnswer {i}.")
        })
        .collect();
    json!({ "query": query })
}

async fn get_reward(gw: &Gateway, body: &Value) -> (u16, Value) {
    let request = http()
        .post(gw.at("/get_reward"))
        .json(body)
        .timeout(Duration::from_secs(60));
    send(request).await
}

/// A 1 MiB budget and a 100 KB configured principle: one rollout in flight holds about
/// 300 KB, so the call's window is one rollout at a time (before, all 12 went at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_principle_narrows_the_window_of_rollouts_in_flight() {
    let mock = slow_mock(Latency::Fixed(Duration::from_millis(30))).await;
    let config = GatewayConfig::default()
        .principle(Some("Be correct. ".repeat(100_000 / 12)))
        .max_body_bytes(64 << 10)
        .max_buffered_bytes(1 << 20);
    let gw = Gateway::start(&mock, config, CLIENT).await;
    let (status, answer) = get_reward(&gw, &queries(12)).await;
    assert_eq!(status, 200, "{answer}");
    let failed = answer["extra_logs"]["ra_failed"]
        .as_array()
        .expect("ra_failed");
    assert_eq!(failed.len(), 12);
    assert!(failed.iter().all(|f| f.as_f64() == Some(0.0)), "{answer}");
    let stats = mock.stats();
    assert_eq!(stats.chat_requests, 12);
    assert_eq!(stats.max_processing, 1, "rollouts judged at once");
}

/// A call whose body is small but whose judgment would hold more than the whole byte
/// budget (one rollout of a 400 KB principle, about 1.2 MB in flight, against 1 MiB) is
/// refused 422 naming the budget's flag, before anything is sent upstream (waiting
/// would never make it fit). One that fits the budget but not what is free now gets 503
/// `overloaded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_expands_past_the_budget_is_refused() {
    let mock = slow_mock(Latency::None).await;
    let config = GatewayConfig::default()
        .principle(Some("Be correct. ".repeat(400_000 / 12)))
        .max_body_bytes(64 << 10)
        .max_buffered_bytes(1 << 20);
    let gw = Gateway::start(&mock, config, CLIENT).await;
    let (status, answer) = get_reward(&gw, &queries(1)).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["detail"][0]["loc"],
        json!(["body", "query"]),
        "{answer}"
    );
    let msg = answer["detail"][0]["msg"].as_str().expect("msg");
    assert!(msg.contains("--max-buffered-bytes"), "{msg}");
    assert_eq!(mock.stats().chat_requests, 0);

    // 600 KB in flight fits the 1 MiB budget, but not twice: while one such call is
    // judged, the next ones are refused at once.
    let mock = MockServer::builder()
        .latency(Latency::Fixed(Duration::from_secs(2)))
        // The 200 KB principle is about 50,000 tokens.
        .context_length(1 << 20)
        .start()
        .await
        .expect("mock");
    let config = GatewayConfig::default()
        .principle(Some("Be correct. ".repeat(200_000 / 12)))
        .max_body_bytes(64 << 10)
        .max_buffered_bytes(1 << 20);
    let gw = Gateway::start(&mock, config, CLIENT).await;
    let first = tokio::spawn({
        let url = gw.at("/get_reward");
        async move {
            send(
                http()
                    .post(url)
                    .json(&queries(1))
                    .timeout(Duration::from_secs(60)),
            )
            .await
        }
    });
    common::wait_for_engine(&mock).await;
    for _ in 0..3 {
        let (status, answer) = get_reward(&gw, &queries(1)).await;
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["error"]["kind"], "overloaded", "{answer}");
    }
    assert_eq!(mock.stats().chat_requests, 1);
    let (status, answer) = first.await.expect("first call");
    assert_eq!(status, 200, "{answer}");
}
