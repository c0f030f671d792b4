//! Helpers shared by the `client_*` integration tests (each test file includes this
//! module; not every file uses every helper).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use ra_mock::{Attempt, MockHandle, expected_score};
use rewardanything_client::{ClientBuilder, JudgeRequest, Judgment, RetryPolicy};

/// Caller-side response names (masked to `model-N` on the wire, unmasked by the client).
pub const NAMES: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

/// Request number `i`: four responses whose `score=K` markers spell `i` in base 5, so the
/// score vectors of requests 0..625 are all different and any misattribution shows.
/// `extra` is appended to the prompt (mock markers go there).
pub fn numbered(i: usize, extra: &str) -> JudgeRequest {
    let mut request = JudgeRequest::new(
        "Prefer the most helpful answer.",
        format!("question {i} {extra}"),
    );
    let mut k = i;
    for name in NAMES {
        let digit = k % 5 + 1;
        k /= 5;
        request = request.response(name, format!("answer {i} from {name}, score={digit}"));
    }
    request
}

/// The scores the mock gives `request`'s responses, in the caller's order.
pub fn expected(request: &JudgeRequest) -> Vec<(String, f64)> {
    request
        .responses
        .iter()
        .map(|(name, text)| (name.clone(), f64::from(expected_score(text))))
        .collect()
}

/// Panics unless `judgment` is the mock's verdict on `request`: same names, in the
/// caller's order, with the expected scores, and a ranking consistent with them.
pub fn assert_judgment(request: &JudgeRequest, judgment: &Judgment, what: &str) {
    let got: Vec<(String, f64)> = judgment
        .scores
        .iter()
        .map(|(n, s)| (n.clone(), *s))
        .collect();
    assert_eq!(got, expected(request), "{what}: scores");
    let mut ranked = judgment.ranking.clone();
    ranked.sort();
    let mut names: Vec<String> = request.responses.keys().cloned().collect();
    names.sort();
    assert_eq!(
        ranked, names,
        "{what}: ranking is a permutation of the names"
    );
    let along: Vec<f64> = judgment
        .ranking
        .iter()
        .map(|n| judgment.scores[n])
        .collect();
    assert!(
        along.windows(2).all(|w| w[0] >= w[1]),
        "{what}: ranking {:?} vs scores {along:?}",
        judgment.ranking
    );
    assert!(judgment.consistent, "{what}: judgment flagged inconsistent");
}

/// Fast retries for tests: 5 attempts, 5 ms doubling to 50 ms.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(5)
        .base_delay(Duration::from_millis(5))
        .max_delay(Duration::from_millis(50))
}

/// A client builder for `mocks` with an explicit model (no discovery round trip) and
/// fast retries.
pub fn builder(mocks: &[&MockHandle]) -> ClientBuilder {
    rewardanything_client::Client::builder()
        .endpoints(mocks.iter().map(|m| m.base_url()))
        .model(ra_mock::DEFAULT_MODEL)
        .retry(fast_retry())
}

/// The attempts the mock logged for request `request` (by its prompt text).
pub fn attempts_of(mock: &MockHandle, request: &JudgeRequest) -> Vec<Attempt> {
    mock.attempts_for(&request.prompt)
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
