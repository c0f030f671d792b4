//! Proves the mock behaves as documented, using reqwest as the client.

use std::time::{Duration, Instant};

use futures::future::join_all;
use ra_mock::{
    ContextErrorStyle, Fault, FaultRates, Latency, MockHandle, MockServer, Outcome, OverCapacity,
    ReasoningShape, expected_ranking, expected_score, prompt_hash,
};
use serde_json::{Value, json};

const RESPONSES: [(&str, &str); 4] = [
    ("model-1", "The capital of France is Paris."),
    ("model-2", "Paris, obviously. score=5"),
    ("model-3", "I think it is Lyon."),
    (
        "model-4",
        "It's Paris, the largest city in France, score=2 maybe",
    ),
];

fn user_content(prompt: &str, responses: &[(&str, &str)]) -> String {
    let map: serde_json::Map<String, Value> = responses
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect();
    json!({"principle": "Prefer correct, concise answers.", "prompt": prompt, "responses": map})
        .to_string()
}

fn request(prompt: &str, responses: &[(&str, &str)], max_tokens: u64) -> Value {
    json!({
        "model": "RewardAnything-8B-v1",
        "messages": [
            {"role": "system", "content": "You are a judge."},
            {"role": "user", "content": user_content(prompt, responses)},
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 7,
        "chat_template_kwargs": {"enable_thinking": true},
    })
}

fn url(mock: &MockHandle) -> String {
    format!("{}/chat/completions", mock.base_url())
}

async fn post(http: &reqwest::Client, mock: &MockHandle, body: &Value) -> reqwest::Response {
    http.post(url(mock))
        .json(body)
        .send()
        .await
        .expect("request sent")
}

async fn post_json(http: &reqwest::Client, mock: &MockHandle, body: &Value) -> (u16, Value) {
    let resp = post(http, mock, body).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json body"))
}

/// Splits a completion into (reasoning, answer JSON text) according to `shape`,
/// failing if the shape is not exactly the documented one.
fn split(shape: ReasoningShape, body: &Value) -> (String, String) {
    let msg = &body["choices"][0]["message"];
    let content = msg["content"].as_str().expect("content string").to_owned();
    match shape {
        ReasoningShape::Inline | ReasoningShape::Prefilled => {
            assert!(msg.get("reasoning").is_none() && msg.get("reasoning_content").is_none());
            let rest = if shape == ReasoningShape::Inline {
                content.strip_prefix("<think>\n").expect("opening tag")
            } else {
                assert!(!content.contains("<think>"), "{content}");
                &content
            };
            let (r, a) = rest.split_once("\n</think>\n\n").expect("closing tag");
            (r.to_owned(), a.to_owned())
        }
        ReasoningShape::Reasoning | ReasoningShape::ReasoningContent => {
            let (key, other) = if shape == ReasoningShape::Reasoning {
                ("reasoning", "reasoning_content")
            } else {
                ("reasoning_content", "reasoning")
            };
            assert!(msg.get(other).is_none(), "{msg}");
            assert!(!content.contains("think>"), "{content}");
            (msg[key].as_str().expect("reasoning").to_owned(), content)
        }
    }
}

fn check_judgment(answer: &str, responses: &[(&str, &str)]) {
    let v: Value = serde_json::from_str(answer).expect("answer is JSON");
    let scores = v["scores"].as_object().expect("scores");
    let names: Vec<&str> = scores.keys().map(String::as_str).collect();
    let expected_names: Vec<&str> = responses.iter().map(|(k, _)| *k).collect();
    assert_eq!(names, expected_names, "scores keep the request's order");
    for (name, text) in responses {
        assert_eq!(
            scores[*name].as_u64(),
            Some(u64::from(expected_score(text)))
        );
    }
    let ranking: Vec<String> = serde_json::from_value(v["best-to-worst"].clone()).expect("ranking");
    assert_eq!(ranking, expected_ranking(responses.iter().copied()));
}

#[tokio::test]
async fn every_shape_answers_in_format() {
    let http = reqwest::Client::new();
    for shape in [
        ReasoningShape::Inline,
        ReasoningShape::Reasoning,
        ReasoningShape::ReasoningContent,
        ReasoningShape::Prefilled,
    ] {
        let mock = MockServer::builder()
            .reasoning_shape(shape)
            .think_bytes(500)
            .start()
            .await
            .unwrap();
        let (status, body) = post_json(
            &http,
            &mock,
            &request("Capital of France?", &RESPONSES, 4096),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (reasoning, answer) = split(shape, &body);
        assert!(reasoning.len() >= 500, "padded reasoning");
        check_judgment(&answer, &RESPONSES);
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "RewardAnything-8B-v1");
        assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        let u = &body["usage"];
        let (p, c) = (
            u["prompt_tokens"].as_u64().unwrap(),
            u["completion_tokens"].as_u64().unwrap(),
        );
        assert!(p > 0 && c > 0);
        assert_eq!(u["total_tokens"].as_u64(), Some(p + c));
        mock.shutdown().await;
    }
}

#[tokio::test]
async fn shape_overrides_per_request() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder().start().await.unwrap();
    let (_, body) = post_json(
        &http,
        &mock,
        &request("q [[shape:reasoning_content]]", &RESPONSES, 4096),
    )
    .await;
    let (_, answer) = split(ReasoningShape::ReasoningContent, &body);
    check_judgment(&answer, &RESPONSES);
    let resp = http
        .post(url(&mock))
        .header(ra_mock::SHAPE_HEADER, "prefilled")
        .json(&request("q", &RESPONSES, 4096))
        .send()
        .await
        .unwrap();
    let (_, answer) = split(ReasoningShape::Prefilled, &resp.json().await.unwrap());
    check_judgment(&answer, &RESPONSES);
}

#[tokio::test]
async fn models_health_and_routes() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder()
        .models(["a", "b"])
        .health_unavailable_for(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let base = mock.base_url();
    let models: Value = http
        .get(format!("{base}/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(models["data"][0]["owned_by"], "ra-mock");
    assert_eq!(models["data"][0]["object"], "model");

    let health = mock.health_url();
    assert_eq!(http.get(&health).send().await.unwrap().status(), 503);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(http.get(&health).send().await.unwrap().status(), 200);
    mock.set_healthy(Some(false));
    assert_eq!(http.get(&health).send().await.unwrap().status(), 503);

    // Unknown model: vLLM's 404; default model when none is named.
    let mut body = request("q", &RESPONSES, 100);
    body["model"] = json!("nope");
    let (status, err) = post_json(&http, &mock, &body).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["message"], "The model `nope` does not exist.");
    body.as_object_mut().unwrap().remove("model");
    body["max_tokens"] = json!(4096);
    let (status, ok) = post_json(&http, &mock, &body).await;
    assert_eq!((status, ok["model"].as_str()), (200, Some("a")));

    body["stream"] = json!(true);
    let (status, err) = post_json(&http, &mock, &body).await;
    assert_eq!(status, 400);
    assert!(err["error"]["message"].as_str().unwrap().contains("stream"));
    body.as_object_mut().unwrap().remove("stream");
    let resp = http
        .post(url(&mock))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    body["messages"][1]["content"] = json!(user_content("[[fault:five-hundred]]", &RESPONSES));
    let (status, err) = post_json(&http, &mock, &body).await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid marker")
    );
    assert_eq!(
        http.get(format!("{base}/nothing"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(http.get(url(&mock)).send().await.unwrap().status(), 405);
}

#[tokio::test]
async fn status_faults_from_markers() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder().start().await.unwrap();
    for code in [500u16, 502, 503, 429] {
        let resp = post(
            &http,
            &mock,
            &request(&format!("x [[fault:{code}]]"), &RESPONSES, 4096),
        )
        .await;
        assert_eq!(resp.status().as_u16(), code);
        assert!(resp.headers().get("retry-after").is_none());
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"].as_u64(), Some(u64::from(code)));
        assert!(err["error"]["message"].is_string() && err["error"]["type"].is_string());
    }
    let resp = post(
        &http,
        &mock,
        &request("x [[fault:429:retry-after=2]]", &RESPONSES, 4096),
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    let s = mock.stats();
    assert_eq!(
        (s.status(500), s.status(502), s.status(503), s.status(429)),
        (1, 1, 1, 2)
    );
    assert_eq!(s.chat_requests, 5);
}

#[tokio::test]
async fn drop_closes_without_response() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder().start().await.unwrap();
    let err = http
        .post(url(&mock))
        .json(&request("x [[fault:drop]]", &RESPONSES, 4096))
        .send()
        .await
        .expect_err("no response");
    assert!(err.status().is_none() && !err.is_timeout(), "{err:?}");
    let s = mock.stats();
    assert_eq!((s.dropped, s.answered()), (1, 0));
    assert_eq!(mock.attempts()[0].outcome, Outcome::Dropped);
    // The server is still fine for the next request.
    let (status, _) = post_json(&http, &mock, &request("x", &RESPONSES, 4096)).await;
    assert_eq!(status, 200);
}

async fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn hang_never_answers_and_is_released_when_the_client_gives_up() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder().start().await.unwrap();
    let started = Instant::now();
    let err = http
        .post(url(&mock))
        .timeout(Duration::from_millis(300))
        .json(&request("x [[fault:hang]]", &RESPONSES, 4096))
        .send()
        .await
        .expect_err("hangs");
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(mock.stats().hung, 1);
    assert!(
        wait_until(|| mock.stats().in_flight == 0).await,
        "handler dropped on disconnect"
    );
    assert_eq!(mock.attempts()[0].outcome, Outcome::Hung);
}

#[tokio::test]
async fn malformed_and_length() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder().start().await.unwrap();
    let (status, body) = post_json(
        &http,
        &mock,
        &request("x [[fault:malformed]]", &RESPONSES, 4096),
    )
    .await;
    assert_eq!(status, 200);
    let (_, answer) = split(ReasoningShape::Inline, &body);
    assert!(
        serde_json::from_str::<Value>(&answer).is_err() && !answer.contains('{'),
        "{answer}"
    );

    let (status, body) = post_json(
        &http,
        &mock,
        &request("x [[fault:length]]", &RESPONSES, 4096),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        content.starts_with("<think>\n") && !content.contains("</think>"),
        "{content}"
    );

    // A small max_tokens truncates like a real model.
    let (status, body) = post_json(&http, &mock, &request("x", &RESPONSES, 8)).await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 8);
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.len() <= 8 * 4 + 8 && !content.contains("</think>"));
}

#[tokio::test]
async fn context_length_400_then_lowered_max_tokens_succeeds() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder().start().await.unwrap();
    let prompt = "long one [[fault:400-context]]";
    let (status, err) = post_json(&http, &mock, &request(prompt, &RESPONSES, 4096)).await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"]["message"],
        "This model's maximum context length is 32768 tokens. However, you requested 4096 output tokens \
         and your prompt contains at least 30001 input tokens, for a total of at least 34097 tokens. \
         Please reduce the length of the input prompt or the number of requested output tokens. \
         (parameter=input_tokens, value=30001)"
    );
    assert_eq!(err["error"]["type"], "BadRequestError");
    assert_eq!(err["error"]["code"], 400);
    let (status, ok) = post_json(&http, &mock, &request(prompt, &RESPONSES, 32768 - 30001)).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["usage"]["prompt_tokens"], 30001);
    let (status, _) = post_json(&http, &mock, &request(prompt, &RESPONSES, 32768 - 30000)).await;
    assert_eq!(status, 400);
    let max_tokens: Vec<_> = mock
        .attempts_for(prompt)
        .iter()
        .map(|a| a.max_tokens)
        .collect();
    assert_eq!(max_tokens, [Some(4096), Some(2767), Some(2768)]);

    // Explicit size, legacy wording, and the real (unmarked) check.
    let legacy = MockServer::builder()
        .context_length(1000)
        .context_error_style(ContextErrorStyle::Legacy)
        .start()
        .await
        .unwrap();
    let (status, err) = post_json(
        &http,
        &legacy,
        &request("p [[fault:400-context:prompt-tokens=900]]", &RESPONSES, 200),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"]["message"],
        "'max_tokens' or 'max_completion_tokens' is too large: 200. This model's maximum context length is \
         1000 tokens and your request has 900 input tokens (200 > 1000 - 900)."
    );
    let big = "y".repeat(8000);
    let (status, _) = post_json(&http, &legacy, &request("p", &[("model-1", &big)], 10)).await;
    assert_eq!(
        status, 400,
        "2000+ prompt tokens exceed a 1000-token context"
    );
}

#[tokio::test]
async fn fail_first_counts_attempts_per_content() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder().start().await.unwrap();
    let a = request("a [[fail-first:2:503]]", &RESPONSES, 4096);
    let b = request("b [[fail-first:1:429:retry-after=1]]", &RESPONSES, 4096);
    let mut seen = vec![];
    for body in [&a, &b, &a, &b, &a, &a] {
        let resp = post(&http, &mock, body).await;
        seen.push(resp.status().as_u16());
    }
    assert_eq!(seen, [503, 429, 503, 200, 200, 200]);
    let outcomes: Vec<Outcome> = mock
        .attempts_for("a [[fail-first:2:503]]")
        .iter()
        .map(|x| x.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Status(503),
            Outcome::Status(503),
            Outcome::Status(200),
            Outcome::Status(200)
        ]
    );
    mock.reset();
    assert_eq!(
        post(&http, &mock, &a).await.status(),
        503,
        "reset forgets the counts"
    );
    assert_eq!(mock.stats().chat_requests, 1);
}

#[tokio::test]
async fn capacity_queue_bounds_concurrency() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder()
        .capacity(4)
        .latency(Latency::from_millis(100))
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let bodies: Vec<Value> = (0..20)
        .map(|i| request(&format!("q{i}"), &RESPONSES, 4096))
        .collect();
    let results = join_all(bodies.iter().map(|b| post(&http, &mock, b))).await;
    assert!(results.iter().all(|r| r.status() == 200));
    let s = mock.stats();
    assert_eq!(s.max_processing, 4, "{s:?}");
    assert!(
        s.max_in_flight > 4,
        "requests queued beyond the capacity: {s:?}"
    );
    // 20 requests, 4 at a time, 100 ms each: at least 5 rounds.
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!((s.in_flight, s.processing), (0, 0));
}

#[tokio::test]
async fn capacity_reject_answers_429() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder()
        .capacity(2)
        .over_capacity(OverCapacity::Reject {
            retry_after: Some(1),
        })
        .latency(Latency::from_millis(600))
        .start()
        .await
        .unwrap();
    let bodies: Vec<Value> = (0..6)
        .map(|i| request(&format!("q{i}"), &RESPONSES, 4096))
        .collect();
    let results = join_all(bodies.iter().map(|b| post(&http, &mock, b))).await;
    let ok = results.iter().filter(|r| r.status() == 200).count();
    let limited: Vec<_> = results.iter().filter(|r| r.status() == 429).collect();
    assert_eq!((ok, limited.len()), (2, 4));
    assert!(limited.iter().all(|r| r.headers()["retry-after"] == "1"));
    assert_eq!(mock.stats().rejected_over_capacity, 4);
}

#[tokio::test]
async fn kill_aborts_in_flight_and_refuses_then_restart_serves() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder()
        .latency(Latency::from_millis(2000))
        .start()
        .await
        .unwrap();
    let body = request("slow", &RESPONSES, 4096);
    let in_flight = http.post(url(&mock)).json(&body).send();
    let killer = async {
        assert!(wait_until(|| mock.stats().processing == 1).await);
        mock.kill();
    };
    let started = Instant::now();
    let (res, ()) = tokio::join!(in_flight, killer);
    let err = res.expect_err("connection aborted");
    assert!(
        err.status().is_none() && started.elapsed() < Duration::from_millis(1500),
        "{err:?}"
    );
    assert!(wait_until(|| !mock.is_alive()).await);
    let err = http
        .post(url(&mock))
        .json(&body)
        .send()
        .await
        .expect_err("refused");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    assert_eq!(mock.stats().cancelled, 1);

    mock.set_latency(Latency::None);
    mock.restart().await.unwrap();
    assert!(mock.is_alive());
    let (status, _) = post_json(&http, &mock, &body).await;
    assert_eq!(status, 200);
    assert_eq!(mock.stats().status(200), 1);
}

#[tokio::test]
async fn api_key_required() {
    let http = reqwest::Client::new();
    let key = "sk-secret-123";
    let mock = MockServer::builder().api_key(key).start().await.unwrap();
    let body = request("q", &RESPONSES, 4096);
    let missing = http.post(url(&mock)).json(&body).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let err: Value = missing.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_api_key");
    let wrong = http
        .post(url(&mock))
        .bearer_auth("sk-wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(
        !wrong.text().await.unwrap().contains("sk-"),
        "never echoes keys"
    );
    let models = http
        .get(format!("{}/models", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 401);
    let ok = http
        .post(url(&mock))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let authorized: Vec<bool> = mock.attempts().iter().map(|a| a.authorized).collect();
    assert_eq!(authorized, [false, false, true]);
    assert!(
        mock.attempts()
            .iter()
            .flat_map(|a| a.headers.iter().flatten())
            .all(|(k, v)| k != "authorization" && !v.contains("sk-")),
        "the log never holds the key"
    );
    let health = http
        .get(format!("http://{}/health", mock.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

async fn outcome_sequence(seed: u64, n: usize) -> Vec<String> {
    let http = reqwest::Client::new();
    let mock = MockServer::builder()
        .seed(seed)
        .fault_rates(FaultRates {
            status_500: 0.2,
            status_429: 0.2,
            drop: 0.1,
            hang: 0.0,
        })
        .start()
        .await
        .unwrap();
    let mut out = vec![];
    for i in 0..n {
        let r = http
            .post(url(&mock))
            .json(&request(&format!("r{i}"), &RESPONSES, 4096))
            .send()
            .await;
        out.push(match r {
            Ok(r) => r.status().as_str().to_owned(),
            Err(_) => "err".to_owned(),
        });
    }
    let s = mock.stats();
    assert_eq!(
        s.dropped as usize,
        out.iter().filter(|o| *o == "err").count()
    );
    out
}

#[tokio::test]
async fn random_faults_are_seeded() {
    let a = outcome_sequence(42, 120).await;
    let b = outcome_sequence(42, 120).await;
    let c = outcome_sequence(43, 120).await;
    assert_eq!(a, b, "same seed, same faults");
    assert_ne!(a, c);
    let count = |k: &str| a.iter().filter(|o| *o == k).count();
    // Expected 60/24/24/12 of 120; wide bounds keep this a check of the mix, not of luck.
    assert!((35..=85).contains(&count("200")), "{a:?}");
    assert!(
        (8..=45).contains(&count("500")) && (8..=45).contains(&count("429")),
        "{a:?}"
    );
    assert!((2..=30).contains(&count("err")), "{a:?}");
}

#[tokio::test]
async fn uniform_latency_and_attempt_log() {
    let http = reqwest::Client::new();
    let (lo, hi) = (Duration::from_millis(20), Duration::from_millis(80));
    let mock = MockServer::builder()
        .latency(Latency::uniform(lo, hi))
        .seed(9)
        .start()
        .await
        .unwrap();
    let bodies: Vec<Value> = (0..16)
        .map(|i| request(&format!("u{i}"), &RESPONSES, 1000 + i))
        .collect();
    let results = join_all(bodies.iter().map(|b| post(&http, &mock, b))).await;
    assert!(results.iter().all(|r| r.status() == 200));
    let log = mock.attempts();
    assert_eq!(log.len(), 16);
    let mut held: Vec<Duration> = log.iter().map(|a| a.finished - a.arrived).collect();
    assert!(
        held.iter()
            .all(|d| *d >= lo && *d < hi + Duration::from_millis(50)),
        "{held:?}"
    );
    held.sort();
    assert!(
        held[15] - held[0] > Duration::from_millis(10),
        "latencies vary: {held:?}"
    );
    for a in &log {
        let prompt = a.prompt.as_deref().unwrap();
        assert_eq!(a.prompt_hash, prompt_hash(prompt));
        let i: u64 = prompt.trim_start_matches('u').parse().unwrap();
        assert_eq!(
            a.max_tokens,
            Some(1000 + i),
            "attempt attributed to its own request"
        );
        assert_eq!(
            (a.seed, a.model.as_deref()),
            (Some(7), Some("RewardAnything-8B-v1"))
        );
        let fields = a.body_fields.as_ref().unwrap();
        assert_eq!(
            fields["chat_template_kwargs"],
            json!({"enable_thinking": true})
        );
        assert!(!fields.contains_key("messages"));
        let headers = a.headers.as_ref().unwrap();
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "content-type" && v == "application/json")
        );
        assert!(a.authorized);
    }
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[tokio::test]
async fn forced_fault_and_latency_marker() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder().start().await.unwrap();
    mock.set_forced_fault(Some(Fault::Status {
        code: 503,
        retry_after: Some(3),
    }));
    let resp = post(&http, &mock, &request("q", &RESPONSES, 4096)).await;
    assert_eq!(
        (
            resp.status().as_u16(),
            resp.headers()["retry-after"].to_str().unwrap()
        ),
        (503, "3")
    );
    mock.set_forced_fault(None);
    let started = Instant::now();
    let (status, _) = post_json(
        &http,
        &mock,
        &request("q [[latency-ms:150]]", &RESPONSES, 4096),
    )
    .await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn content_parts_and_max_completion_tokens() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder().start().await.unwrap();
    let body = json!({
        "messages": [{"role": "user", "content": [{"type": "text", "text": user_content("parts", &RESPONSES)}]}],
        "max_completion_tokens": 4000,
    });
    let (status, ok) = post_json(&http, &mock, &body).await;
    assert_eq!(status, 200);
    let (_, answer) = split(ReasoningShape::Inline, &ok);
    check_judgment(&answer, &RESPONSES);
    assert_eq!(mock.attempts()[0].max_tokens, Some(4000));
}

#[tokio::test]
async fn fail_first_with_hang_and_malformed() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder().start().await.unwrap();
    let hang = request("h [[fail-first:1:hang]]", &RESPONSES, 4096);
    let err = http
        .post(url(&mock))
        .timeout(Duration::from_millis(200))
        .json(&hang)
        .send()
        .await
        .expect_err("first attempt hangs");
    assert!(err.is_timeout());
    let (status, body) = post_json(&http, &mock, &hang).await;
    assert_eq!(status, 200);
    check_judgment(&split(ReasoningShape::Inline, &body).1, &RESPONSES);

    let bad = request("m [[fail-first:1:malformed]]", &RESPONSES, 4096);
    let (_, first) = post_json(&http, &mock, &bad).await;
    assert!(!split(ReasoningShape::Inline, &first).1.contains('{'));
    let (_, second) = post_json(&http, &mock, &bad).await;
    check_judgment(&split(ReasoningShape::Inline, &second).1, &RESPONSES);
    let outcomes: Vec<Outcome> = mock.attempts().iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Hung,
            Outcome::Status(200),
            Outcome::Status(200),
            Outcome::Status(200)
        ]
    );
}

#[tokio::test]
async fn position_bias_raises_the_first_presented_response_only() {
    let http = reqwest::Client::new();
    let mock = MockServer::builder()
        .position_bias(1)
        .start()
        .await
        .unwrap();
    let responses = [("model-1", "first score=3"), ("model-2", "second score=3")];
    let (status, body) = post_json(&http, &mock, &request("q", &responses, 4096)).await;
    assert_eq!(status, 200, "{body}");
    let (_, answer) = split(ReasoningShape::Inline, &body);
    let v: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["scores"]["model-1"], 4);
    assert_eq!(v["scores"]["model-2"], 3);
    assert_eq!(v["best-to-worst"], json!(["model-1", "model-2"]));
    // capped at 5
    let responses = [("model-1", "top score=5"), ("model-2", "low score=1")];
    let (_, body) = post_json(&http, &mock, &request("q", &responses, 4096)).await;
    let (_, answer) = split(ReasoningShape::Inline, &body);
    let v: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["scores"]["model-1"], 5);
    assert_eq!(v["scores"]["model-2"], 1);
    mock.shutdown().await;
}

/// `GET /stats` counts requests as documented: the same figures as
/// `MockHandle::stats`, and polling it changes none of them.
#[tokio::test]
async fn the_stats_route_counts_requests() {
    let mock = MockServer::builder().api_key("k").start().await.unwrap();
    let http = reqwest::Client::new();
    let url = format!(
        "{}{}",
        mock.health_url().trim_end_matches("/health"),
        ra_mock::STATS_PATH
    );
    let ok = request("count me", &RESPONSES, 512);
    let failed = request("count me [[fault:503]]", &RESPONSES, 512);
    for body in [&ok, &ok, &failed] {
        let r = http
            .post(format!("{}/chat/completions", mock.base_url()))
            .bearer_auth("k")
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(r.status() == 200 || r.status() == 503, "{}", r.status());
    }
    // No key needed, and the route itself is not counted.
    for _ in 0..2 {
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let stats: Value = r.json().await.unwrap();
        assert_eq!(stats["received"], 3, "{stats}");
        assert_eq!(stats["chat_requests"], 3, "{stats}");
        assert_eq!(stats["by_status"], json!({"200": 2, "503": 1}), "{stats}");
        assert_eq!(stats["in_flight"], 0, "{stats}");
    }
    let s = mock.stats();
    assert_eq!((s.received, s.chat_requests, s.status(200)), (3, 3, 2));
    mock.shutdown().await;
}

/// The same route on the `ra-mock` binary, as a user (or a Python test) counts requests.
#[tokio::test]
async fn the_binary_serves_its_counters() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ra-mock"))
        .args(["--port", "0", "--exit-on-stdin-eof"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ra-mock binary");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("ra-mock printed its address in time")
        .unwrap()
        .expect("a line");
    let base = line
        .strip_prefix("listening on ")
        .and_then(|u| u.strip_suffix("/v1"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/v1/chat/completions"))
        .json(&request("from the binary", &RESPONSES, 512))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stats: Value = http
        .get(format!("{base}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["chat_requests"], 1, "{stats}");
    assert_eq!(stats["by_status"], json!({"200": 1}), "{stats}");
    drop(child.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("ra-mock exits when its stdin closes")
        .unwrap();
    assert!(status.success(), "{status}");
}
