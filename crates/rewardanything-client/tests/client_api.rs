//! The client's public API against the in-process mock: order and attribution of
//! results, model discovery, reasoning shapes, API key, reward helpers.

mod client_common;

use std::collections::HashMap;
use std::time::Duration;

use client_common::{NAMES, assert_judgment, builder, expected, numbered};
use futures::StreamExt;
use ra_mock::{DEFAULT_MODEL, Latency, MockServer, Outcome, ReasoningShape};
use rewardanything_client::{Client, ConnectError, JudgeErrorKind, JudgeRequest, RetryPolicy};
use rewardanything_client::{
    Normalization, NormalizeError, OnFailure, RewardError, Rewarder, normalize,
};

fn random_latency() -> Latency {
    Latency::uniform(Duration::ZERO, Duration::from_millis(25))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_many_gives_each_request_exactly_one_correct_outcome() {
    let mock = MockServer::builder()
        .latency(random_latency())
        .seed(11)
        .start()
        .await
        .unwrap();
    let client = builder(&[&mock]).max_in_flight(32).build().unwrap();
    let n = 400;
    let requests: Vec<JudgeRequest> = (0..n).map(|i| numbered(i, "")).collect();
    let results: Vec<_> = client.judge_many(requests.clone()).collect().await;

    assert_eq!(results.len(), n, "one item per request");
    let mut seen = vec![false; n];
    for (index, result) in &results {
        assert!(!seen[*index], "index {index} yielded twice");
        seen[*index] = true;
        let judgment = result.as_ref().expect("every request succeeds");
        assert_judgment(&requests[*index], judgment, &format!("request {index}"));
    }
    let order: Vec<usize> = results.iter().map(|(i, _)| *i).collect();
    assert!(
        order.windows(2).any(|w| w[0] > w[1]),
        "random latencies should reorder completions (else the test proves nothing)"
    );
    let stats = mock.stats();
    assert_eq!(stats.status(200), n as u64, "no request sent twice");
    assert!(
        stats.max_in_flight <= 32,
        "in-flight limit exceeded: {}",
        stats.max_in_flight
    );
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_many_ordered_yields_input_order_with_bounded_window() {
    let mock = MockServer::builder()
        .latency(random_latency())
        .seed(12)
        .start()
        .await
        .unwrap();
    let client = builder(&[&mock]).max_in_flight(64).build().unwrap();
    let n = 300;
    let requests: Vec<JudgeRequest> = (0..n).map(|i| numbered(i, "")).collect();
    let results: Vec<_> = client
        .judge_many_ordered(requests.clone(), Some(16))
        .collect()
        .await;
    assert_eq!(results.len(), n);
    for (i, (request, result)) in requests.iter().zip(&results).enumerate() {
        let judged = result.as_ref().expect("every request succeeds");
        assert_judgment(request, &judged.judgment, &format!("position {i}"));
    }
    let stats = mock.stats();
    assert!(
        stats.max_in_flight <= 16,
        "the window bounds requests in flight: {}",
        stats.max_in_flight
    );
    mock.shutdown().await;
}

/// The one ordered fan-out: input order when the first request finishes last, never
/// more than the client's in-flight limit on the wire, and each failure in its place
/// with its attempts (and every success with its attempts, latency and usage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_fan_out_yields_judged_in_order_bounded_with_attempts() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock])
        .max_in_flight(3)
        .retry(client_common::fast_retry().max_attempts(3))
        .build()
        .unwrap();
    let n = 24;
    // Request 0 answers last (every other answer is immediate); every 5th request is
    // refused three times (503, retried) and fails; request 7 succeeds on its 2nd attempt.
    let extra = |i: usize| match i {
        0 => "[[latency-ms:400]]",
        7 => "[[fail-first:1:503]]",
        i if i % 5 == 0 => "[[fault:503]]",
        _ => "",
    };
    let requests: Vec<JudgeRequest> = (0..n).map(|i| numbered(i, extra(i))).collect();
    let mut stream = Box::pin(client.judge_many_ordered(requests.clone(), Some(12)));
    let mut yielded = Vec::new();
    while let Some(result) = stream.next().await {
        if yielded.is_empty() {
            // Request 0 was still running while others finished: later ones were held.
            assert!(
                mock.stats().status(200) > 1,
                "the first answer should finish last (got {} answers before it)",
                mock.stats().status(200)
            );
        }
        yielded.push(result);
    }
    assert_eq!(yielded.len(), n, "one item per request");
    for (i, (request, result)) in requests.iter().zip(&yielded).enumerate() {
        if i % 5 == 0 && i != 0 {
            let e = result.as_ref().expect_err("503 three times fails");
            assert_eq!(e.status(), Some(503), "item {i}: {e}");
            assert_eq!(
                e.attempts, 3,
                "item {i}: the attempts are kept on the error"
            );
            assert!(e.latency > Duration::ZERO, "item {i}: latency kept");
            continue;
        }
        let judged = result.as_ref().expect("succeeds");
        assert_judgment(request, &judged.judgment, &format!("position {i}"));
        assert_eq!(judged.attempts, if i == 7 { 2 } else { 1 }, "item {i}");
        assert!(judged.usage.is_some(), "item {i}: usage kept");
    }
    assert!(
        yielded[0].as_ref().expect("succeeds").latency >= Duration::from_millis(400),
        "item 0 is the slow one"
    );
    let stats = mock.stats();
    assert!(
        stats.max_in_flight <= 3,
        "the client's in-flight limit bounds the fan-out: {}",
        stats.max_in_flight
    );
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_stream_from_a_lazy_stream_with_mixed_outcomes() {
    let mock = MockServer::builder()
        .latency(random_latency())
        .seed(13)
        .start()
        .await
        .unwrap();
    let client = builder(&[&mock]).max_in_flight(16).build().unwrap();
    let n = 120;
    // Every 4th request fails for good (400), every 4th+1 fails once then succeeds,
    // every 4th+2 is malformed; the rest are plain.
    let extra = |i: usize| match i % 4 {
        0 => "[[fault:400]]",
        1 => "[[fail-first:1:503]]",
        2 => "[[fault:malformed]]",
        _ => "",
    };
    let requests = futures::stream::iter(0..n).map(move |i| numbered(i, extra(i)));
    let results: Vec<_> = client.judge_stream(requests).collect().await;
    assert_eq!(results.len(), n);
    let mut by_index = HashMap::new();
    for (i, r) in results {
        assert!(by_index.insert(i, r).is_none(), "index {i} yielded twice");
    }
    for i in 0..n {
        let result = &by_index[&i];
        match i % 4 {
            0 => {
                let e = result.as_ref().expect_err("400 fails");
                assert_eq!(e.status(), Some(400), "request {i}: {e}");
                assert_eq!(e.attempts, 1);
            }
            2 => {
                let e = result.as_ref().expect_err("malformed fails");
                assert!(
                    matches!(e.kind, JudgeErrorKind::Parse(_)),
                    "request {i}: {e}"
                );
            }
            _ => assert_judgment(
                &numbered(i, extra(i)),
                result.as_ref().expect("succeeds"),
                &format!("request {i}"),
            ),
        }
    }
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_detailed_reports_attempts_usage_and_endpoint() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock]).build().unwrap();
    let request = numbered(7, "[[fail-first:2:502]]");
    let judged = client.judge_detailed(&request).await.unwrap();
    assert_judgment(&request, &judged.judgment, "detailed");
    assert_eq!(judged.attempts, 3);
    assert_eq!(judged.endpoint, mock.base_url());
    let usage = judged.usage.expect("the mock reports usage");
    assert!(
        usage.prompt_tokens > 280,
        "system prompt alone is ~281 tokens"
    );
    assert!(usage.completion_tokens > 0);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_the_single_served_model() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = Client::builder().endpoint(mock.base_url()).build().unwrap();
    assert_eq!(client.model(), None, "nothing is discovered before connect");
    assert_eq!(client.connect().await.unwrap(), DEFAULT_MODEL);
    assert_eq!(client.model(), Some(DEFAULT_MODEL));
    let request = numbered(1, "");
    assert_judgment(
        &request,
        &client.judge(&request).await.unwrap(),
        "discovered",
    );
    let attempts = mock.attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].model.as_deref(), Some(DEFAULT_MODEL));
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_models_need_a_choice() {
    let mock = MockServer::builder()
        .models(["judge-a", "judge-b"])
        .start()
        .await
        .unwrap();
    let err = Client::builder()
        .endpoint(mock.base_url())
        .build()
        .unwrap()
        .connect()
        .await
        .expect_err("two models and no choice");
    match &err {
        ConnectError::AmbiguousModel { models, url } => {
            assert_eq!(models, &["judge-a", "judge-b"]);
            assert!(url.starts_with(&mock.base_url()), "{url}");
        }
        other => panic!("expected AmbiguousModel, got {other:?}"),
    }
    assert!(err.to_string().contains("judge-a, judge-b"), "{err}");

    // An explicit model: no discovery request at all, and it is the one sent.
    mock.reset();
    let client = Client::builder()
        .endpoint(mock.base_url())
        .model("judge-b")
        .build()
        .unwrap();
    assert_eq!(mock.stats().received, 0, "no /v1/models call");
    let request = numbered(2, "");
    assert_judgment(&request, &client.judge(&request).await.unwrap(), "explicit");
    assert_eq!(mock.attempts()[0].model.as_deref(), Some("judge-b"));
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refuses_a_model_the_server_does_not_serve() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = Client::builder()
        .endpoint(mock.base_url())
        .model("no-such-model")
        .build()
        .unwrap();
    let err = client.connect().await.expect_err("not served");
    match &err {
        ConnectError::ModelNotServed { model, served, .. } => {
            assert_eq!(model, "no-such-model");
            assert_eq!(served, &[DEFAULT_MODEL]);
        }
        other => panic!("expected ModelNotServed, got {other:?}"),
    }
    assert_eq!(mock.stats().chat_requests, 0, "no judgment was sent");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_judgments_discover_the_model_once() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = Client::builder().endpoint(mock.base_url()).build().unwrap();
    assert_eq!(mock.stats().received, 0, "building does no network I/O");
    let requests: Vec<_> = (0..8).map(|i| numbered(i, "")).collect();
    let results = futures::future::join_all(requests.iter().map(|r| client.judge(r))).await;
    for (request, result) in requests.iter().zip(&results) {
        assert_judgment(request, result.as_ref().unwrap(), "lazy discovery");
    }
    let stats = mock.stats();
    assert_eq!(stats.chat_requests, 8);
    assert_eq!(
        stats.received - stats.chat_requests,
        1,
        "one /v1/models call"
    );
    assert_eq!(client.model(), Some(DEFAULT_MODEL));
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_is_a_404_not_retried() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = Client::builder()
        .endpoint(mock.base_url())
        .model("no-such-model")
        .retry(client_common::fast_retry())
        .build()
        .unwrap();
    let err = client.judge(&numbered(3, "")).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    assert_eq!(err.attempts, 1);
    assert!(
        err.to_string().contains("does not exist"),
        "server message kept: {err}"
    );
    assert_eq!(mock.stats().chat_requests, 1);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reasoning_shape_parses() {
    let shapes = [
        ReasoningShape::Inline,
        ReasoningShape::Reasoning,
        ReasoningShape::ReasoningContent,
        ReasoningShape::Prefilled,
    ];
    for shape in shapes {
        let mock = MockServer::builder()
            .reasoning_shape(shape)
            .think_bytes(600)
            .start()
            .await
            .unwrap();
        let client = builder(&[&mock]).build().unwrap();
        for i in 0..5 {
            let request = numbered(100 + i, "");
            let judgment = client.judge(&request).await.unwrap();
            assert_judgment(&request, &judgment, shape.as_str());
            assert!(
                judgment
                    .reasoning
                    .starts_with("The principle decides what matters here."),
                "{shape}: reasoning not recovered: {:?}",
                judgment.reasoning
            );
            assert!(judgment.reasoning.len() >= 500, "{shape}: reasoning cut");
            assert!(
                !judgment.reasoning.contains("</think>"),
                "{shape}: tag left in the reasoning"
            );
        }
        mock.shutdown().await;
    }
    // The marker overrides the server's shape per request, too.
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock]).build().unwrap();
    let request = numbered(9, "[[shape:prefilled]]");
    assert_judgment(&request, &client.judge(&request).await.unwrap(), "marker");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_sent_and_a_401_is_not_retried() {
    let mock = MockServer::builder()
        .api_key("sk-test-123")
        .start()
        .await
        .unwrap();
    let with_key = builder(&[&mock]).api_key("sk-test-123").build().unwrap();
    assert!(
        !format!("{with_key:?}").contains("sk-test-123"),
        "the key is never printed"
    );
    let request = numbered(4, "");
    assert_judgment(
        &request,
        &with_key.judge(&request).await.unwrap(),
        "with key",
    );

    let wrong_key = builder(&[&mock]).api_key("sk-wrong").build().unwrap();
    let err = wrong_key.judge(&numbered(5, "")).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert_eq!(err.attempts, 1);
    assert!(
        !err.to_string().contains("sk-wrong"),
        "no key in errors: {err}"
    );
    let log = mock.attempts();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].outcome, Outcome::Status(401));
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_discovery_with_the_key() {
    let mock = MockServer::builder().api_key("sk-k").start().await.unwrap();
    let client = Client::builder()
        .endpoint(mock.base_url())
        .api_key("sk-k")
        .build()
        .unwrap();
    assert_eq!(client.model(), None, "nothing is discovered before connect");
    assert_eq!(client.connect().await.unwrap(), DEFAULT_MODEL);
    assert_eq!(client.model(), Some(DEFAULT_MODEL));
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_discovery_does_not_retry_a_401() {
    let mock = MockServer::builder().api_key("sk-k").start().await.unwrap();
    let err = Client::builder()
        .endpoint(mock.base_url())
        .api_key("sk-wrong")
        .retry(client_common::fast_retry())
        .build()
        .unwrap()
        .connect()
        .await
        .expect_err("wrong key");
    assert!(
        matches!(err, ConnectError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("401") && err.to_string().contains("unauthorized"),
        "{err}"
    );
    assert!(!err.to_string().contains("sk-wrong"), "{err}");
    assert_eq!(mock.stats().status(401), 1, "a 401 is final");
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
            RetryPolicy::default()
                .max_attempts(3)
                .base_delay(Duration::from_millis(10)),
        )
        .build()
        .expect("the second endpoint answers");
    assert_eq!(client.connect().await.unwrap(), ra_mock::DEFAULT_MODEL);
    let request = numbered(7, "");
    let judgment = client
        .judge(&request)
        .await
        .expect("judged on the live endpoint");
    assert_judgment(&request, &judgment, "after failing over at startup");
    mock.shutdown().await;
}

fn group_texts(i: usize) -> Vec<String> {
    // Scores 5, 2, 4, 1 (shifted by i) so normalisations give distinct values.
    (0..4)
        .map(|j| format!("group {i} answer {j} score={}", [5, 2, 4, 1][(i + j) % 4]))
        .collect()
}

fn raw_scores(texts: &[String]) -> Vec<f64> {
    texts
        .iter()
        .map(|t| f64::from(ra_mock::expected_score(t)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_rewards_in_input_order_for_each_normalization() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock]).build().unwrap();
    let texts = group_texts(0);
    let raw = raw_scores(&texts);
    assert_eq!(raw, [5.0, 2.0, 4.0, 1.0]);
    let cases = [
        (Normalization::Raw, vec![5.0, 2.0, 4.0, 1.0]),
        (Normalization::Unit, vec![1.0, 0.25, 0.75, 0.0]),
        // The fixed (s - 3) / 2.
        (Normalization::Centered, vec![1.0, -0.5, 0.5, -1.0]),
        // Unit values minus their mean 0.5.
        (Normalization::Group, vec![0.5, -0.25, 0.25, -0.5]),
    ];
    for (normalization, want) in cases {
        let rewarder = Rewarder::new(client.clone()).normalization(normalization);
        let group = rewarder
            .group_rewards("Prefer the best.", "Say something.", &texts)
            .await;
        assert!(group.is_ok(), "{:?}", group.error);
        let got: Vec<f64> = group.rewards.iter().map(|r| r.unwrap()).collect();
        assert_eq!(got, want, "{normalization:?}");
        assert_eq!(got, normalize(&raw, normalization).unwrap());
    }
    // One response: reward() is its unit score, or its fixed centered score.
    let rewarder = Rewarder::new(client.clone());
    let r = rewarder.reward("p", "q", "lonely answer score=4").await;
    assert_eq!(r, 0.75);
    let centered = Rewarder::new(client.clone()).normalization(Normalization::Centered);
    assert_eq!(
        centered.reward("p", "q", "lonely answer score=1").await,
        -1.0
    );
    // The group was sent as one listwise call each time (4 groups + 2 singles).
    assert_eq!(mock.stats().chat_requests, 6);
    // `group` with no group is refused, never a constant 0, and nothing is sent.
    let group = Rewarder::new(client.clone())
        .normalization(Normalization::Group)
        .on_failure(OnFailure::Fixed(0.0));
    let (value, ok) = group
        .reward_flagged("p", "q", "lonely answer score=5")
        .await;
    assert!(!ok, "a group of one must fail, got reward {value}");
    let single = group.group_rewards("p", "q", &["alone score=5"]).await;
    assert!(
        matches!(
            single.error,
            Some(RewardError::Normalize(NormalizeError::NoGroup {
                responses: 1
            }))
        ),
        "{:?}",
        single.error
    );
    // In a batch only the group of one fails; the others are judged.
    let many = group
        .group_rewards_many(vec![
            (
                "p".to_string(),
                "q".to_string(),
                vec!["alone score=5".to_string()],
            ),
            ("p".to_string(), "q".to_string(), texts.clone()),
        ])
        .await;
    assert!(many[0].error.is_some());
    assert_eq!(many[1].to_f64(), [0.5, -0.25, 0.25, -0.5]);
    assert_eq!(
        mock.stats().chat_requests,
        7,
        "only the real group was sent"
    );
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_rewards_many_keeps_group_order() {
    let mock = MockServer::builder()
        .latency(random_latency())
        .seed(5)
        .start()
        .await
        .unwrap();
    let client = builder(&[&mock]).max_in_flight(8).build().unwrap();
    let rewarder = Rewarder::new(client).normalization(Normalization::Raw);
    let groups: Vec<(String, String, Vec<String>)> = (0..40)
        .map(|i| ("p".to_string(), format!("prompt {i}"), group_texts(i)))
        .collect();
    let out = rewarder.group_rewards_many(groups.clone()).await;
    assert_eq!(out.len(), groups.len());
    for (i, (g, (_, _, texts))) in out.iter().zip(&groups).enumerate() {
        let got: Vec<f64> = g.rewards.iter().map(|r| r.unwrap()).collect();
        assert_eq!(got, raw_scores(texts), "group {i}");
    }
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_rewards_failure_values() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock]).build().unwrap();
    let texts = group_texts(1);
    let prompt = "fails for good [[fault:400]]";

    let nan = Rewarder::new(client.clone()).on_failure(OnFailure::Nan);
    let g = nan.group_rewards("p", prompt, &texts).await;
    assert!(!g.is_ok());
    assert_eq!(
        g.error
            .as_ref()
            .and_then(RewardError::judge)
            .and_then(|e| e.status()),
        Some(400)
    );
    assert_eq!(g.rewards.len(), 4);
    assert!(g.rewards.iter().all(|r| r.is_some_and(f64::is_nan)));
    assert!(nan.reward("p", prompt, "x").await.is_nan());

    let fixed = Rewarder::new(client.clone()).on_failure(OnFailure::Fixed(0.0));
    let g = fixed.group_rewards("p", prompt, &texts).await;
    assert!(g.error.is_some(), "the flag is set with a fixed value");
    assert_eq!(g.rewards, vec![Some(0.0); 4]);

    let none = Rewarder::new(client.clone()).on_failure(OnFailure::None);
    let g = none.group_rewards("p", prompt, &texts).await;
    assert!(g.error.is_some());
    assert_eq!(g.rewards, vec![None; 4]);
    assert!(g.to_f64().iter().all(|r| r.is_nan()));
    mock.shutdown().await;
}

#[test]
fn numbered_requests_have_distinct_score_vectors() {
    // The attribution checks above rely on this.
    let mut seen = std::collections::HashSet::new();
    for i in 0..625 {
        let v: Vec<u64> = expected(&numbered(i, ""))
            .iter()
            .map(|(_, s)| *s as u64)
            .collect();
        assert!(seen.insert(v), "request {i} repeats a score vector");
    }
    assert_eq!(NAMES.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_an_endpoint_url_never_shows() {
    let mock = MockServer::builder().start().await.unwrap();
    let with_password = mock.base_url().replace("http://", "http://user:s3cret@");
    let client = Client::builder().endpoint(&with_password).build().unwrap();
    assert!(!format!("{client:?}").contains("s3cret"), "{client:?}");
    assert!(
        client
            .endpoint_stats()
            .iter()
            .all(|e| !e.url.contains("s3cret"))
    );
    let request = numbered(3, "");
    let judged = client.judge_detailed(&request).await.unwrap();
    assert!(!judged.endpoint.contains("s3cret"), "{}", judged.endpoint);
    assert!(judged.endpoint.contains("user:***@"), "{}", judged.endpoint);
    // A dead endpoint with a password: the transport error does not echo the URL.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://user:s3cret@{}/v1", listener.local_addr().unwrap())
    };
    let client = Client::builder()
        .endpoint(dead)
        .model("m")
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let err = client.judge(&request).await.unwrap_err();
    assert_eq!(err.kind_str(), "transport");
    assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
    let err = client.connect().await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
    // A run-time connect failure is a ConnectError, its transport cause kept as source.
    assert!(
        matches!(
            err,
            ConnectError::ModelDiscovery {
                source: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    let cause = std::error::Error::source(&err).expect("the transport error is the source");
    assert!(!cause.to_string().contains("s3cret"), "{cause}");
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lazy_discovery_keeps_its_cause_and_is_not_repeated_per_judgment() {
    let mock = MockServer::builder().api_key("sk-k").start().await.unwrap();
    let client = Client::builder()
        .endpoint(mock.base_url())
        .api_key("sk-wrong")
        .build()
        .unwrap();
    let requests: Vec<_> = (0..16).map(|i| numbered(i, "")).collect();
    let results = futures::future::join_all(requests.iter().map(|r| client.judge(r))).await;
    for result in &results {
        let err = result.as_ref().unwrap_err();
        assert_eq!(err.kind_str(), "model_discovery", "{err}");
        match &err.kind {
            JudgeErrorKind::ModelDiscovery(cause) => assert!(
                matches!(**cause, ConnectError::Unauthorized { status: 401, .. }),
                "{cause:?}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            std::error::Error::source(&err.kind).is_some(),
            "the cause is the source"
        );
    }
    let stats = mock.stats();
    assert_eq!(stats.chat_requests, 0);
    assert!(
        stats.received < 16,
        "{} discovery requests for 16 judgments",
        stats.received
    );
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judgments_waiting_for_a_slot_hold_no_rendered_prompt() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mock = MockServer::builder()
        .latency(Latency::from_millis(30_000))
        .start()
        .await
        .unwrap();
    let rendered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&rendered);
    let client = Client::builder()
        .endpoint(mock.base_url())
        .model(DEFAULT_MODEL)
        .max_in_flight(1)
        .body_hook(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            serde_json::Map::new()
        })
        .build()
        .unwrap();
    let requests: Vec<_> = (0..10).map(|i| numbered(300 + i, "")).collect();
    let mut all = Box::pin(futures::future::join_all(
        requests.iter().map(|r| client.judge(r)),
    ));
    // Every judgment has been started (join_all polls them all at once); one holds the
    // slot and is on the wire, nine wait for it without a prompt or body built.
    let on_the_wire = async {
        while mock.stats().in_flight < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        _ = &mut all => panic!("a 30 s answer cannot have come back"),
        waited = tokio::time::timeout(Duration::from_secs(20), on_the_wire) => {
            waited.expect("the first judgment reached the server");
        }
    }
    // Checked while the judgments are still alive (dropping them cancels the request).
    assert_eq!(mock.stats().in_flight, 1);
    assert_eq!(
        rendered.load(Ordering::SeqCst),
        1,
        "only the judgment with the slot rendered"
    );
    drop(all);
    mock.shutdown().await;
}
