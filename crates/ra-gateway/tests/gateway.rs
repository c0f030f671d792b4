//! The gateway's routes against the in-process mock engine, over real HTTP.

mod common;

use std::time::Duration;

use common::{
    ClientOptions, Gateway, assert_result, get, http, metrics, mock, numbered, post, sample,
    slow_mock, wait_for_engine, wait_until,
};
use ra_gateway::GatewayConfig;
use ra_mock::{Latency, MockHandle, MockServer};
use serde_json::{Value, json};

/// This file's gateway client: 32 in flight, 3 attempts.
const CLIENT: ClientOptions = ClientOptions {
    max_in_flight: Some(32),
    max_attempts: 3,
};

async fn start(mock: &MockHandle, config: GatewayConfig) -> Gateway {
    Gateway::start(mock, config, CLIENT).await
}

#[tokio::test]
async fn judge_returns_the_reference_shape_in_the_callers_order() {
    let mock = mock().await;
    let gw = start(&mock, GatewayConfig::default()).await;
    let request = numbered(7, "");
    let r = http()
        .post(gw.at("/api/rewardanything"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    // Key order and whole-number scores as the reference's Python json writes them.
    assert!(text.starts_with("{\"thoughts\":"), "{text}");
    assert!(
        text.contains("\"scores\":{\"zulu\":3,\"alpha\":2,\"mike\":1,\"bravo\":1}"),
        "{text}"
    );
    let result: Value = serde_json::from_str(&text).unwrap();
    assert_result(&request, &result, "single");
    assert!(!result["thoughts"].as_str().unwrap().is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn batch_keeps_input_order_under_random_latency() {
    let mock = MockServer::builder()
        .latency(Latency::uniform(Duration::ZERO, Duration::from_millis(40)))
        .seed(11)
        .start()
        .await
        .unwrap();
    let gw = start(&mock, GatewayConfig::default().batch_window(64)).await;
    let requests: Vec<Value> = (0..300).map(|i| numbered(i, "")).collect();
    let (status, body) = post(
        &gw.at("/api/rewardanything_batch"),
        &Value::from(requests.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body.as_array().expect("array");
    assert_eq!(results.len(), requests.len());
    for (i, (request, result)) in requests.iter().zip(results).enumerate() {
        assert_result(request, result, &format!("item {i}"));
    }
    // Many were in flight at once (else order would be trivially kept).
    assert!(mock.stats().max_processing > 1, "{:?}", mock.stats());
}

#[tokio::test]
async fn failed_batch_items_stay_in_place_and_do_not_fail_the_others() {
    let mock = mock().await;
    let gw = start(&mock, GatewayConfig::default()).await;
    let requests = vec![
        numbered(1, ""),
        numbered(2, "[[fault:500]]"),
        numbered(3, ""),
        numbered(4, "[[fault:malformed]]"),
        numbered(5, ""),
    ];
    let (status, body) = post(
        &gw.at("/api/rewardanything_batch"),
        &Value::from(requests.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body.as_array().unwrap();
    assert_eq!(results.len(), 5);
    for i in [0, 2, 4] {
        assert_result(&requests[i], &results[i], &format!("item {i}"));
    }
    assert_eq!(results[1]["error"]["kind"], "http_status", "{}", results[1]);
    assert_eq!(
        results[3]["error"]["kind"], "no_json_object",
        "{}",
        results[3]
    );
    for i in [1, 3] {
        assert_eq!(results[i]["thoughts"], "");
        assert_eq!(results[i]["results"], json!({}));
        assert!(!results[i]["error"]["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_failed_single_judgment_is_an_error_status_naming_the_kind() {
    let mock = mock().await;
    let gw = start(&mock, GatewayConfig::default()).await;
    let (status, body) = post(&gw.at("/api/rewardanything"), &numbered(1, "[[fault:503]]")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["kind"], "http_status");
    assert!(body["detail"].as_str().unwrap().contains("503"), "{body}");
}

/// Asserts a 422 whose first detail entry is at `loc` and whose message has `needle`.
async fn assert_422(gw: &Gateway, path: &str, body: &Value, loc: Value, needle: &str) {
    let (status, answer) = post(&gw.at(path), body).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["loc"], loc, "{answer}");
    let msg = answer["detail"][0]["msg"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    assert_eq!(answer["error"]["kind"], "invalid_request");
}

#[tokio::test]
async fn invalid_requests_get_422_naming_the_field() {
    let mock = mock().await;
    let config = GatewayConfig::default().max_batch(3).max_responses(4);
    let gw = start(&mock, config).await;
    let one = "/api/rewardanything";
    let many = "/api/rewardanything_batch";
    let missing = json!({"principle": "p", "responses": {"a": "x"}});
    assert_422(
        &gw,
        one,
        &missing,
        json!(["body", "prompt"]),
        "missing field",
    )
    .await;
    let typed = json!({"principle": "p", "prompt": 5, "responses": {"a": "x"}});
    assert_422(&gw, one, &typed, json!(["body", "prompt"]), "invalid type").await;
    let text = json!({"principle": "p", "prompt": "q", "responses": {"a": 1}});
    assert_422(
        &gw,
        one,
        &text,
        json!(["body", "responses", "a"]),
        "invalid type",
    )
    .await;
    let empty = json!({"principle": "p", "prompt": "q", "responses": {}});
    assert_422(&gw, one, &empty, json!(["body", "responses"]), "empty").await;
    let five = numbered(0, "");
    let mut five = five.clone();
    five["responses"]["echo"] = "e".into();
    assert_422(&gw, one, &five, json!(["body", "responses"]), "at most 4").await;
    let batch = json!([numbered(0, ""), {"principle": "p", "prompt": "q"}]);
    assert_422(
        &gw,
        many,
        &batch,
        json!(["body", 1, "responses"]),
        "missing field",
    )
    .await;
    let long = Value::from(vec![numbered(0, ""); 4]);
    assert_422(&gw, many, &long, json!(["body"]), "at most 3").await;
    let not_array = numbered(0, "");
    assert_422(&gw, many, &not_array, json!(["body"]), "invalid type").await;
    // As the reference: an empty batch is a 400 naming the problem.
    let (status, answer) = post(&gw.at(many), &json!([])).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["detail"], "No requests provided");
    assert_eq!(answer["error"]["kind"], "empty_batch");
    // Raw bodies: a name given twice, and text that is not JSON.
    for (raw, needle) in [
        (
            r#"{"principle":"p","prompt":"q","responses":{"a":"1","a":"2"}}"#,
            "duplicate name \"a\"",
        ),
        ("{not json", "key must be a string"),
    ] {
        let r = http()
            .post(gw.at(one))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        let body: Value = r.json().await.unwrap();
        let msg = body["detail"][0]["msg"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?}");
    }
    assert_eq!(
        mock.stats().chat_requests,
        0,
        "nothing invalid reached the engine"
    );
}

/// The client library's request rules (`JudgeRequest::validate`) in the gateway's shape:
/// a blank principle is a 422 whose `loc` ends with `principle` on both judging routes
/// (the job route: `jobs.rs`), and nothing reaches the engine.
#[tokio::test]
async fn a_blank_principle_is_a_422_at_the_principle_on_every_route() {
    let mock = mock().await;
    let gw = start(&mock, GatewayConfig::default()).await;
    let mut blank = numbered(0, "");
    blank["principle"] = " \n\t".into();
    let needle = "principle is blank";
    assert_422(
        &gw,
        "/api/rewardanything",
        &blank,
        json!(["body", "principle"]),
        needle,
    )
    .await;
    let batch = json!([numbered(0, ""), blank]);
    assert_422(
        &gw,
        "/api/rewardanything_batch",
        &batch,
        json!(["body", 1, "principle"]),
        needle,
    )
    .await;
    assert_eq!(mock.stats().chat_requests, 0, "nothing reached the engine");
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_json() {
    let mock = mock().await;
    let gw = start(&mock, GatewayConfig::default().max_body_bytes(4096)).await;
    let mut big = numbered(0, "");
    big["prompt"] = "x".repeat(5000).into();
    for path in ["/api/rewardanything", "/api/rewardanything_batch"] {
        let (status, body) = post(&gw.at(path), &big).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["error"]["kind"], "body_too_large");
        assert!(body["detail"].as_str().unwrap().contains("4096"));
    }
    // Just under the limit still works.
    let (status, _) = post(&gw.at("/api/rewardanything"), &numbered(0, "")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_configured_key_guards_every_route_but_health() {
    let mock = mock().await;
    let gw = start(
        &mock,
        GatewayConfig::default().api_key(Some("s3cret".into())),
    )
    .await;
    let request = numbered(3, "");
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("s3cret"),
        Some("Bearer s3cret2"),
    ] {
        let mut r = http().post(gw.at("/api/rewardanything")).json(&request);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["kind"], "unauthorized");
        assert!(!body.to_string().contains("s3cret"));
    }
    let r = http().get(gw.at("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http()
        .post(gw.at("/api/rewardanything_batch"))
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http()
        .post(gw.at("/api/rewardanything"))
        .bearer_auth("s3cret")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http()
        .get(gw.at("/metrics"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http().get(gw.at("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn health_follows_the_upstream() {
    let mock = mock().await;
    let config = GatewayConfig::default().health_interval(Duration::from_millis(50));
    let gw = start(&mock, config).await;
    let r = http().get(gw.at("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "healthy", "service": "RewardAnything API"})
    );
    mock.kill_and_wait().await;
    // The health task notices on its next round (every 50 ms, on a busy machine later).
    let health = || async { http().get(gw.at("/health")).send().await.unwrap() };
    wait_until(
        "/health never turned 503",
        Duration::from_secs(20),
        || async { health().await.status() == 503 },
    )
    .await;
    let r = health().await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("no upstream endpoint answers"),
        "{body}"
    );
    mock.restart().await.unwrap();
    wait_until(
        "/health never recovered",
        Duration::from_secs(20),
        || async { health().await.status() == 200 },
    )
    .await;
}

#[tokio::test]
async fn metrics_count_requests_judgments_and_tokens() {
    let mock = mock().await;
    let gw = start(&mock, GatewayConfig::default()).await;
    let url = gw.at("/api/rewardanything");
    assert_eq!(post(&url, &numbered(1, "")).await.0, 200);
    assert_eq!(post(&url, &numbered(2, "")).await.0, 200);
    assert_eq!(post(&url, &numbered(3, "[[fault:malformed]]")).await.0, 502);
    assert_eq!(post(&url, &json!({})).await.0, 422);
    let batch = json!([numbered(4, ""), numbered(5, "[[fault:500]]")]);
    assert_eq!(
        post(&gw.at("/api/rewardanything_batch"), &batch).await.0,
        200
    );
    // Labelled by the route that matched (its pattern), else `other`: a path under a
    // route's prefix that no route matches is not that route.
    let id = "0b4c1c5e-7a8f-4a57-9d3c-2f6f1c2d3e4f";
    assert_eq!(
        get(&gw.at(&format!("/api/batch_request/{id}"))).await.0,
        501
    );
    assert_eq!(
        get(&gw.at(&format!("/api/batch_request/{id}/x"))).await.0,
        404
    );
    assert_eq!(get(&gw.at("/nowhere")).await.0, 404);
    assert_eq!(post(&gw.at("/health"), &json!({})).await.0, 405);
    let text = metrics(&gw).await;
    let p = "ra_gateway_";
    let count = |labels: &str| sample(&text, &format!("{p}http_requests_total{{{labels}}}"));
    assert_eq!(count("route=\"/api/rewardanything\",status=\"200\""), 2.0);
    assert_eq!(count("route=\"/api/rewardanything\",status=\"502\""), 1.0);
    assert_eq!(count("route=\"/api/rewardanything\",status=\"422\""), 1.0);
    assert_eq!(
        count("route=\"/api/rewardanything_batch\",status=\"200\""),
        1.0
    );
    assert_eq!(
        count("route=\"/api/batch_request/{id}\",status=\"501\""),
        1.0
    );
    assert_eq!(count("route=\"other\",status=\"404\""), 2.0);
    assert_eq!(count("route=\"/health\",status=\"405\""), 1.0);
    let judged = |labels: &str| sample(&text, &format!("{p}judgments_total{{{labels}}}"));
    assert_eq!(judged("outcome=\"ok\",kind=\"\""), 3.0);
    assert_eq!(judged("outcome=\"error\",kind=\"no_json_object\""), 1.0);
    assert_eq!(judged("outcome=\"error\",kind=\"http_status\""), 1.0);
    assert_eq!(
        sample(&text, &format!("{p}upstream_latency_seconds_count")),
        3.0
    );
    assert!(sample(&text, &format!("{p}prompt_tokens_total")) > 100.0);
    assert!(sample(&text, &format!("{p}completion_tokens_total")) > 10.0);
    // This very request is in flight while the text is encoded.
    assert_eq!(sample(&text, &format!("{p}http_requests_in_flight")), 1.0);
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    // Held 3 s at the engine: surely still in flight when the stop is asked (the grace
    // is 5 s).
    let mock = slow_mock(Latency::from_millis(3000)).await;
    let gw = start(&mock, GatewayConfig::default()).await;
    let url = gw.at("/api/rewardanything");
    let request = numbered(9, "");
    let call = tokio::spawn(async move { post(&url, &request).await });
    // Once it is at the engine, ask the gateway to stop.
    wait_for_engine(&mock).await;
    let url = gw.url.clone();
    gw.stop().await;
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_result(&numbered(9, ""), &body, "in flight at shutdown");
    // And nothing is accepted any more.
    assert!(http().get(format!("{url}/health")).send().await.is_err());
}

#[tokio::test]
async fn shutdown_drops_what_outlives_the_grace() {
    let mock = slow_mock(Latency::from_millis(5_000)).await;
    let config = GatewayConfig::default().grace(Duration::from_millis(200));
    let gw = start(&mock, config).await;
    let url = gw.at("/api/rewardanything");
    let call = tokio::spawn(async move { http().post(&url).json(&numbered(1, "")).send().await });
    wait_for_engine(&mock).await;
    gw.stop().await;
    // Had the gateway waited for the engine, this would be a 200 after 5 s.
    let answer = call.await.unwrap().expect("an answer");
    assert_eq!(answer.status(), 503);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "shutting_down", "{body}");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let mock = mock().await;
    let gw = start(&mock, GatewayConfig::default()).await;
    let r = http().get(gw.at("/api/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["detail"], "Not Found");
    assert_eq!(body["error"]["kind"], "not_found");
    let r = http()
        .get(gw.at("/api/rewardanything"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "method_not_allowed");
}

/// A gateway with an 8 KiB byte budget (and body limit) in front of a mock that holds
/// answers 400 ms, and a request `big` that takes 5 KiB of it.
async fn budget_gateway() -> (MockHandle, Gateway, Value) {
    let mock = slow_mock(Latency::from_millis(400)).await;
    let config = GatewayConfig::default()
        .max_body_bytes(8 * 1024)
        .max_buffered_bytes(8 * 1024);
    let gw = start(&mock, config).await;
    let mut big = numbered(1, "");
    big["principle"] = "p".repeat(5 * 1024).into();
    (mock, gw, big)
}

#[tokio::test]
async fn requests_over_the_byte_budget_get_503_overloaded() {
    let (mock, gw, big) = budget_gateway().await;
    let url = gw.at("/api/rewardanything");
    // The first one is held long at the engine, so the second surely meets it there.
    let mut slow_big = big.clone();
    slow_big["prompt"] = format!("{} [[latency-ms:5000]]", big["prompt"].as_str().unwrap()).into();
    let first = {
        let url = url.clone();
        tokio::spawn(async move { post(&url, &slow_big).await })
    };
    // Once the first is at the engine, it holds 5 of the 8 KiB.
    wait_for_engine(&mock).await;
    let r = http().post(&url).json(&big).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "overloaded");
    // A small request still fits beside it, and the big one once the first is done.
    assert_eq!(post(&url, &numbered(2, "")).await.0, 200);
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(post(&url, &big).await.0, 200);
}

#[tokio::test]
async fn a_streamed_batch_holds_its_budget_until_its_answer_is_sent() {
    let (mock, gw, big) = budget_gateway().await;
    let mut slow = numbered(2, "");
    slow["prompt"] = format!("{} [[latency-ms:3000]]", slow["prompt"].as_str().unwrap()).into();
    // 5 KiB of principle in the batch: it reserves more than half the budget.
    let batch = json!([big.clone(), slow.clone()]);
    let call = {
        let url = gw.at("/api/rewardanything_batch");
        tokio::spawn(async move { post(&url, &batch).await })
    };
    wait_for_engine(&mock).await;
    // The batch's answer is not complete: its reservation still stands.
    let url = gw.at("/api/rewardanything");
    assert_eq!(post(&url, &big).await.0, 503);
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_result(&big, &body[0], "batch item 0");
    assert_result(&slow, &body[1], "batch item 1");
    // Sent in full: released.
    assert_eq!(post(&url, &big).await.0, 200);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_gets_408_and_frees_its_budget() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = mock().await;
    let config = GatewayConfig::default()
        .body_timeout(Duration::from_millis(200))
        .max_body_bytes(4096)
        .max_buffered_bytes(4096);
    let gw = start(&mock, config).await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Declares 4000 bytes (the whole budget), sends 10.
    stream
        .write_all(b"POST /api/rewardanything HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 4000\r\n\r\n{\"princip")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(14).any(|w| w == b"body_timeout\"}") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled body");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"kind\":\"body_timeout\""), "{text}");
    drop(stream);
    // Its reservation is released: a request that needs the budget is served.
    assert_eq!(
        post(&gw.at("/api/rewardanything"), &numbered(1, ""))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn a_peer_trickling_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = mock().await;
    let config = GatewayConfig::default().header_timeout(Duration::from_millis(200));
    let gw = start(&mock, config).await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhos")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // Bounded only so that a regression fails instead of hanging the suite.
    let ended =
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    assert!(ended.is_ok(), "the connection stayed open");
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.contains("200 OK"), "{text}");
    // Others are still served.
    let r = http().get(gw.at("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn at_the_cap_a_new_connection_replaces_an_idle_one_never_a_busy_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = slow_mock(Latency::from_millis(1)).await;
    let config = GatewayConfig::default()
        .max_connections(1)
        .header_timeout(Duration::from_secs(30));
    let gw = start(&mock, config).await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    // A connection with a request being served keeps its place: others wait.
    let busy = {
        let url = gw.at("/api/rewardanything");
        tokio::spawn(async move { post(&url, &numbered(1, "[[latency-ms:1500]]")).await })
    };
    wait_for_engine(&mock).await;
    let waiting = http()
        .get(gw.at("/health"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(waiting.is_err(), "{waiting:?}");
    let (status, answer) = busy.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    // A connection that sends nothing (or half its headers) gives its place up.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let r = http()
        .get(gw.at("/health"))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("served in place of the idle connection");
    assert_eq!(r.status(), 200);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), idle.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection was not closed");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

#[tokio::test]
async fn a_batch_keeps_the_clients_limit_busy_and_no_more() {
    let mock = slow_mock(Latency::from_millis(500)).await;
    // The helper's client allows 32 in flight.
    let gw = start(&mock, GatewayConfig::default().batch_window(64)).await;
    let requests: Vec<Value> = (0..64).map(|i| numbered(i, "")).collect();
    let (status, body) = post(&gw.at("/api/rewardanything_batch"), &Value::from(requests)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 64);
    let stats = mock.stats();
    // Never more than the client's limit; and the batch ran concurrently, not one by one
    // (exactly 32 needs all of them dispatched within one 500 ms hold: not asserted).
    assert!((2..=32).contains(&stats.max_processing), "{stats:?}");
    assert_eq!(stats.chat_requests, 64);
}

#[tokio::test]
async fn a_declared_size_over_the_limit_gets_413_before_any_body_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = mock().await;
    let gw = start(&mock, GatewayConfig::default().max_body_bytes(1024)).await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Headers only: 100 MB announced, not one byte of it sent.
    stream
        .write_all(
            b"POST /api/rewardanything HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
              content-length: 104857600\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut head))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(mock.stats().chat_requests, 0);
}

/// A gateway whose upstream is itself gets its own 404 when it asks for a model; /health
/// says so instead of a bare "HTTP 404" (the endpoints can change while serving, e.g.
/// from ra-serve's endpoints file, so `ra gateway`'s start-up check is not enough).
#[tokio::test]
async fn health_names_an_upstream_that_is_this_gateway_itself() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own = listener.local_addr().unwrap();
    let client = rewardanything_client::Client::builder()
        .endpoint(format!("http://localhost:{}/v1", own.port()))
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let gateway = ra_gateway::Gateway::new(client, GatewayConfig::default());
    let task = tokio::spawn(gateway.serve(listener, async {
        let _ = rx.await;
    }));
    let r = http()
        .get(format!("http://{own}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "the upstream endpoint http://localhost:{}/v1 is this gateway itself",
            own.port()
        )) && reason.contains("point --endpoint at the model server"),
        "{body}"
    );
    let _ = tx.send(());
    task.await.unwrap();
}

/// Posts `raw` bytes as JSON to `path`; (status, JSON answer).
async fn post_raw(gw: &Gateway, path: &str, raw: String) -> (u16, Value) {
    common::send(
        http()
            .post(gw.at(path))
            .header("content-type", "application/json")
            .body(raw),
    )
    .await
}

/// Asserts the 422 of a body with more than one JSON value.
fn assert_extra_data(status: u16, answer: &Value, what: &str) {
    assert_eq!(status, 422, "{what}: {answer}");
    assert_eq!(
        answer["detail"][0]["type"], "json_invalid",
        "{what}: {answer}"
    );
    assert_eq!(
        answer["detail"][0]["loc"],
        json!(["body"]),
        "{what}: {answer}"
    );
    let msg = answer["detail"][0]["msg"].as_str().unwrap_or_default();
    assert!(msg.starts_with("Extra data"), "{what}: {msg:?}");
}

#[tokio::test]
async fn a_body_is_exactly_one_json_value_on_every_judging_route() {
    let mock = mock().await;
    let config = GatewayConfig::default().principle(Some("Prefer correct answers.".into()));
    let gw = start(&mock, config).await;
    let (r1, r2, r3) = (numbered(1, ""), numbered(2, ""), numbered(3, ""));
    let cases = [
        ("/api/rewardanything", format!("{r1}garbage")),
        ("/api/rewardanything", format!("{r1}{r2}")),
        ("/api/rewardanything_batch", format!("[{r1}][{r2},{r3}]")),
        ("/api/rewardanything_batch", format!("[{r1}] x")),
        (
            "/get_reward",
            r#"{"query": ["q a"]}{"query": ["q b", "q c"]}"#.to_string(),
        ),
        ("/get_reward", r#"{"query": ["q a"]}]"#.to_string()),
    ];
    for (path, raw) in cases {
        let (status, answer) = post_raw(&gw, path, raw.clone()).await;
        assert_extra_data(status, &answer, &format!("{path} {raw}"));
    }
    assert_eq!(mock.stats().chat_requests, 0, "nothing was judged");
    // Whitespace after the value is not data.
    let (status, answer) = post_raw(&gw, "/api/rewardanything", format!("{r1} \r\n\t")).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = post_raw(&gw, "/api/rewardanything_batch", format!("[{r2}]\n")).await;
    assert_eq!(status, 200, "{answer}");
    assert_result(&r2, &answer[0], "batch item");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let mock = mock().await;
    let gw = start(&mock, GatewayConfig::default().api_key(Some("k3y".into()))).await;
    for header in ["bearer k3y", "BEARER k3y", "Bearer  k3y"] {
        let (status, answer) = send_with(&gw, header).await;
        assert_eq!(status, 200, "{header}: {answer}");
    }
    let (status, answer) = send_with(&gw, "bearer k3Y").await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["kind"], "unauthorized");
}

async fn send_with(gw: &Gateway, authorization: &str) -> (u16, Value) {
    common::send(
        http()
            .post(gw.at("/api/rewardanything"))
            .header("authorization", authorization)
            .json(&numbered(1, "")),
    )
    .await
}

/// Opens `n` requests to a judging route whose chunked bodies never arrive, and waits
/// until the gateway serves all of them (they are in flight, past admission).
async fn idle_chunked_uploads(gw: &Gateway, n: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut streams = Vec::new();
    for path in ["/api/rewardanything", "/api/rewardanything_batch"]
        .iter()
        .cycle()
        .take(n)
    {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\n\r\n1\r\n[\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        streams.push(stream);
    }
    wait_until(
        "the idle uploads are not all in flight",
        Duration::from_secs(30),
        || async { sample(&metrics(gw).await, "ra_gateway_http_requests_in_flight") > n as f64 },
    )
    .await;
    streams
}

#[tokio::test]
async fn idle_chunked_uploads_do_not_lock_out_the_judging_routes() {
    let mock = mock().await;
    // The defaults: 32 MiB bodies, a 256 MiB budget, 60 s to send a body.
    let gw = start(&mock, GatewayConfig::default()).await;
    let _idle = idle_chunked_uploads(&gw, 12).await;
    // Each holds the one byte it sent, not a whole body: the others are served at once.
    let request = numbered(7, "");
    let (status, answer) = post(&gw.at("/api/rewardanything"), &request).await;
    assert_eq!(status, 200, "{answer}");
    assert_result(&request, &answer, "beside idle uploads");
    let batch = json!([numbered(8, ""), numbered(9, "")]);
    let (status, answer) = post(&gw.at("/api/rewardanything_batch"), &batch).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer.as_array().map(Vec::len), Some(2), "{answer}");
}

#[tokio::test]
async fn a_body_growing_past_the_budget_gets_503_as_it_arrives() {
    use tokio::io::AsyncWriteExt;
    let mock = mock().await;
    let config = GatewayConfig::default()
        .max_body_bytes(8 * 1024)
        .max_buffered_bytes(8 * 1024);
    let gw = start(&mock, config).await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    // 6 KiB sent and held (its body is not finished).
    let mut holder = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let chunk = format!("[{{\"principle\": \"{}", "p".repeat(6 * 1024));
    let head = format!(
        "POST /api/rewardanything HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
        chunk.len()
    );
    holder.write_all(head.as_bytes()).await.unwrap();
    wait_until(
        "the holder is not in flight",
        Duration::from_secs(30),
        || async { sample(&metrics(&gw).await, "ra_gateway_http_requests_in_flight") > 1.0 },
    )
    .await;
    // A small request fits beside it; one of 5 KiB is refused once its bytes are in.
    let small = numbered(1, "");
    assert_eq!(post(&gw.at("/api/rewardanything"), &small).await.0, 200);
    let mut big = numbered(2, "");
    big["principle"] = "p".repeat(5 * 1024).into();
    let (status, answer) = post(&gw.at("/api/rewardanything"), &big).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["kind"], "overloaded", "{answer}");
    // The holder gives up: its bytes return to the budget.
    drop(holder);
    wait_until(
        "the big request never fits",
        Duration::from_secs(30),
        || {
            let (url, big) = (gw.at("/api/rewardanything"), big.clone());
            async move { post(&url, &big).await.0 == 200 }
        },
    )
    .await;
}

#[tokio::test]
async fn a_client_that_never_reads_a_streamed_answer_is_cut_and_its_budget_returns() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Every answer carries 8 KiB of reasoning: 1,500 of them are ~12 MB, more than the
    // socket buffers of both ends hold.
    let mock = MockServer::builder()
        .think_bytes(8 * 1024)
        .latency(Latency::from_millis(100))
        .start()
        .await
        .expect("mock");
    let batch: Vec<Value> = (0..1500).map(|i| numbered(i, "")).collect();
    let body = serde_json::to_vec(&batch).unwrap();
    // The batch leaves 64 KiB of the budget free.
    let budget = body.len() + 64 * 1024;
    let config = GatewayConfig::default()
        .max_body_bytes(budget)
        .max_buffered_bytes(budget)
        .write_timeout(Duration::from_secs(2));
    let gw = start(&mock, config).await;
    // A client that sends the batch and never reads (a small receive buffer).
    let addr = gw.url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    let head = format!(
        "POST /api/rewardanything_batch HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&body).await.unwrap();
    // A request of 96 KiB does not fit beside the batch's reservation...
    let mut big = numbered(1000, "");
    big["principle"] = "p".repeat(96 * 1024).into();
    let url = gw.at("/api/rewardanything");
    wait_until(
        "the batch never held its budget",
        Duration::from_secs(30),
        || {
            let (url, big) = (url.clone(), big.clone());
            async move { post(&url, &big).await.0 == 503 }
        },
    )
    .await;
    // ...until the write timeout cuts the client that does not read.
    wait_until(
        "the stalled client kept its reservation",
        Duration::from_secs(60),
        || {
            let (url, big) = (url.clone(), big.clone());
            async move { post(&url, &big).await.0 == 200 }
        },
    )
    .await;
    // Its answer was cut short: never the end of a whole chunked array.
    let mut answer = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(30), stalled.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the cut connection stayed open");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(
        !text.ends_with("]\r\n0\r\n\r\n"),
        "the whole answer was sent"
    );
}
