//! The faults that answer 200 with something a client must not trust: bodies that never
//! end or are huge, an error envelope in a 200, judgments that name the wrong responses.

use std::time::Duration;

use ra_mock::{Fault, MockHandle, MockServer, NameFault, Outcome, expected_ranking};
use serde_json::{Value, json};

const MASKED: [(&str, &str); 4] = [
    ("model-1", "The capital of France is Paris."),
    ("model-2", "Paris, obviously. score=5"),
    ("model-3", "I think it is Lyon. score=1"),
    ("model-4", "Paris, the largest city in France, score=2"),
];

const PLAIN: [(&str, &str); 2] = [("alpha", "fine score=3"), ("bravo", "better score=4")];

/// How a generated body starts (the start of a chat completion).
const FILLER_PREFIX: &str = r#"{"id":"chatcmpl-ra-mock-filler","object":"chat.completion","#;

fn request(prompt: &str, responses: &[(&str, &str)]) -> Value {
    let map: serde_json::Map<String, Value> = responses
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect();
    let user = json!({"principle": "Prefer correct answers.", "prompt": prompt, "responses": map})
        .to_string();
    json!({"messages": [{"role": "user", "content": user}], "max_tokens": 4096})
}

async fn post(mock: &MockHandle, prompt: &str, responses: &[(&str, &str)]) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&request(prompt, responses))
        .send()
        .await
        .expect("request sent")
}

/// The judgment JSON of an inline-shaped completion.
async fn judgment(mock: &MockHandle, prompt: &str, responses: &[(&str, &str)]) -> Value {
    let resp = post(mock, prompt, responses).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json body");
    let content = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    let (_, answer) = content.split_once("\n</think>\n\n").expect("think block");
    serde_json::from_str(answer).expect("answer is JSON")
}

/// The scored names, sorted (key order is not part of a JSON object's meaning).
fn score_names(j: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = j["scores"]
        .as_object()
        .expect("scores object")
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names
}

fn ranking(j: &Value) -> Vec<&str> {
    j["best-to-worst"]
        .as_array()
        .expect("ranking array")
        .iter()
        .map(|v| v.as_str().expect("name"))
        .collect()
}

/// Polls `cond` every 10 ms for up to 10 s.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// `streamed_bytes` once it stops moving (two readings 100 ms apart agree).
async fn settled_streamed_bytes(mock: &MockHandle) -> u64 {
    let mut last = mock.stats().streamed_bytes;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = mock.stats().streamed_bytes;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the mock kept generating: {last} bytes and counting");
}

/// Reads chunks until at least `want` bytes arrived; returns them.
async fn read_at_least(resp: &mut reqwest::Response, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < want {
        let chunk = resp.chunk().await.expect("chunk").expect("body not ended");
        got.extend_from_slice(&chunk);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_is_paced_by_the_client_and_stops_when_it_leaves() {
    let mock = MockServer::builder().start().await.unwrap();
    let mut resp = post(&mock, "q [[fault:endless-body]]", &MASKED).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    assert!(resp.content_length().is_none());
    let read = read_at_least(&mut resp, 4 << 20).await;
    assert!(
        read.starts_with(FILLER_PREFIX.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&read[..100])
    );
    assert!(read[read.len() - 100..].iter().all(|&b| b == b'x'));

    // The client stops reading: socket back-pressure stops the mock, which has not
    // generated (let alone buffered) much more than was read.
    let stalled = settled_streamed_bytes(&mock).await;
    assert!(stalled >= read.len() as u64);
    assert!(
        stalled < read.len() as u64 + (64 << 20),
        "generated {stalled} bytes for {} read",
        read.len()
    );
    assert_eq!(mock.stats().streaming_bodies, 1);

    // The client leaves: the body is dropped and generation stops for good.
    drop(resp);
    assert!(
        eventually(|| mock.stats().streaming_bodies == 0).await,
        "the body outlived its connection"
    );
    let after = settled_streamed_bytes(&mock).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mock.stats().streamed_bytes, after);
    assert_eq!(mock.attempts()[0].outcome, Outcome::Status(200));
    assert_eq!(mock.stats().in_flight, 0);

    // The server is fine for the next request.
    let j = judgment(&mock, "q", &MASKED).await;
    assert_eq!(score_names(&j).len(), 4);
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_body_declares_its_length_and_is_generated_lazily() {
    let mock = MockServer::builder().start().await.unwrap();
    let n: u64 = 100_000_000;
    let mut resp = post(&mock, &format!("q [[fault:huge-body:{n}]]"), &MASKED).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(n));
    let read = read_at_least(&mut resp, 1 << 20).await;
    assert!(read.starts_with(FILLER_PREFIX.as_bytes()));
    drop(resp);
    assert!(eventually(|| mock.stats().streaming_bodies == 0).await);
    let generated = settled_streamed_bytes(&mock).await;
    assert!(
        generated < n / 2,
        "{generated} of {n} bytes generated for a client that read 1 MiB"
    );

    // A small one, read to the end: exactly N bytes, the prefix then `x`.
    let resp = post(&mock, "q [[fault:huge-body:1000]]", &MASKED).await;
    assert_eq!(resp.content_length(), Some(1000));
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), 1000);
    assert!(body.starts_with(FILLER_PREFIX.as_bytes()));
    assert!(body.ends_with(b"xxxxxxxx"));
    // Shorter than the prefix: its first N bytes.
    let body = post(&mock, "q [[fault:huge-body:10]]", &MASKED)
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], &FILLER_PREFIX.as_bytes()[..10]);
    let empty = post(&mock, "q [[fault:huge-body:0]]", &MASKED).await;
    assert_eq!(empty.content_length(), Some(0));
    assert!(empty.bytes().await.unwrap().is_empty());
    assert!(eventually(|| mock.stats().streaming_bodies == 0).await);
    mock.shutdown().await;
}

#[tokio::test]
async fn error_200_is_an_error_envelope_with_status_200() {
    let mock = MockServer::builder().start().await.unwrap();
    let resp = post(&mock, "q [[fault:error-200]]", &MASKED).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body.get("choices").is_none(), "{body}");
    assert_eq!(
        body["error"]["message"],
        "ra-mock: injected error in a 200 answer (error-200)"
    );
    assert!(body["error"]["type"].is_string());
    assert_eq!(body["error"]["code"], 500);
    assert_eq!(mock.stats().status(200), 1);
    mock.shutdown().await;
}

#[tokio::test]
async fn name_faults_name_the_wrong_responses() {
    let mock = MockServer::builder().start().await.unwrap();
    let real = ["model-1", "model-2", "model-3", "model-4"];
    let truth = judgment(&mock, "q", &MASKED).await;
    assert_eq!(score_names(&truth), real);
    let true_ranking = expected_ranking(MASKED);
    assert_eq!(ranking(&truth), true_ranking);

    // Masked (model-1..4): the extra name is model-11.
    let j = judgment(&mock, "q [[fault:names-extra]]", &MASKED).await;
    let with_extra = ["model-1", "model-11", "model-2", "model-3", "model-4"];
    assert_eq!(score_names(&j), with_extra);
    assert_eq!(j["scores"]["model-11"], 4);
    for (name, _) in MASKED {
        assert_eq!(j["scores"][name], truth["scores"][name], "{name}");
    }
    let mut ranked = ranking(&j);
    ranked.sort_unstable();
    assert_eq!(ranked, with_extra);

    let j = judgment(&mock, "q [[fault:names-missing]]", &MASKED).await;
    assert_eq!(score_names(&j), real[..3]);
    assert!(!ranking(&j).contains(&"model-4"));
    assert_eq!(ranking(&j).len(), 3);

    let j = judgment(&mock, "q [[fault:names-invented]]", &MASKED).await;
    assert_eq!(score_names(&j), ["zzz"]);
    assert_eq!(ranking(&j), ["zzz"]);

    let j = judgment(&mock, "q [[fault:names-extra-ranked]]", &MASKED).await;
    assert_eq!(j["scores"], truth["scores"]);
    let mut want: Vec<&str> = true_ranking.iter().map(String::as_str).collect();
    want.push("model-11");
    assert_eq!(ranking(&j), want);

    // Not masked: the extra name is zzz.
    let j = judgment(&mock, "q [[fault:names-extra]]", &PLAIN).await;
    assert_eq!(score_names(&j), ["alpha", "bravo", "zzz"]);
    let j = judgment(&mock, "q [[fault:names-extra-ranked]]", &PLAIN).await;
    assert_eq!(score_names(&j), ["alpha", "bravo"]);
    assert_eq!(ranking(&j), ["bravo", "alpha", "zzz"]);
    mock.shutdown().await;
}

#[tokio::test]
async fn fail_first_with_a_name_fault_then_the_true_judgment() {
    let mock = MockServer::builder().start().await.unwrap();
    let prompt = "q [[fail-first:1:names-extra]]";
    let first = judgment(&mock, prompt, &MASKED).await;
    assert_eq!(score_names(&first).len(), 5);
    let second = judgment(&mock, prompt, &MASKED).await;
    assert_eq!(
        score_names(&second),
        ["model-1", "model-2", "model-3", "model-4"]
    );
    assert_eq!(ranking(&second), expected_ranking(MASKED));
    mock.shutdown().await;
}

#[tokio::test]
async fn fault_specs_parse_print_and_can_be_forced() {
    for spec in [
        "503",
        "429:retry-after=2",
        "hang",
        "drop",
        "malformed",
        "length",
        "400-context",
        "400-context:prompt-tokens=7",
        "endless-body",
        "huge-body:12345",
        "error-200",
        "names-extra",
        "names-missing",
        "names-invented",
        "names-extra-ranked",
    ] {
        let fault: Fault = spec.parse().unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(fault.to_string(), spec);
    }
    assert_eq!(
        "names-invented".parse::<Fault>(),
        Ok(Fault::WrongNames(NameFault::Invented))
    );
    for bad in ["200", "huge-body", "huge-body:x", "names", "endless"] {
        let e = bad.parse::<Fault>().expect_err(bad);
        assert!(e.to_string().contains("huge-body:N"), "{e}");
    }

    let mock = MockServer::builder().start().await.unwrap();
    mock.set_forced_fault(Some("names-invented".parse().unwrap()));
    let j = judgment(&mock, "q", &PLAIN).await;
    assert_eq!(score_names(&j), ["zzz"]);
    mock.set_forced_fault(None);
    let j = judgment(&mock, "q", &PLAIN).await;
    assert_eq!(score_names(&j), ["alpha", "bravo"]);
    mock.shutdown().await;
}

#[tokio::test]
async fn models_answers_401_without_the_key_when_one_is_set() {
    let mock = MockServer::builder()
        .api_key("sk-test-models")
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/models", mock.base_url());
    let missing = http.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("didn't provide an API key")
    );
    let wrong = http.get(&url).bearer_auth("sk-nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let right = http
        .get(&url)
        .bearer_auth("sk-test-models")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert_eq!((mock.stats().status(401), mock.stats().status(200)), (2, 1));
    mock.shutdown().await;
}
