//! A judgment names exactly the request's responses (issue 9.1): in strict mode (the
//! default) an answer that scores or ranks a name the request does not have, or leaves
//! one out, is a typed error naming the offending name, and the re-ask applies.

mod client_common;

use client_common::{NAMES, assert_judgment, attempts_of, builder, numbered};
use ra_mock::{MockHandle, MockServer};
use rewardanything_client::{Client, JudgeError, JudgeErrorKind, JudgeRequest};

const NAME_KINDS: [&str; 3] = ["incomplete", "invalid_scores", "invalid_ranking"];

async fn strict_client(mock: &MockHandle) -> Client {
    builder(&[mock]).build().unwrap()
}

/// Judges `request` expecting a one-attempt name error of one of `kinds` naming `name`.
async fn expect_name_error(
    client: &Client,
    mock: &MockHandle,
    request: &JudgeRequest,
    kinds: &[&str],
    name: &str,
) -> JudgeError {
    let err = client
        .judge(request)
        .await
        .expect_err("a judgment with wrong names is an error");
    assert!(matches!(err.kind, JudgeErrorKind::Parse(_)), "{err}");
    assert!(
        kinds.contains(&err.kind_str()),
        "kind {}: {err}",
        err.kind_str()
    );
    assert!(
        err.to_string().contains(name),
        "does not name {name:?}: {err}"
    );
    assert_eq!(err.attempts, 1, "{err}");
    assert_eq!(attempts_of(mock, request).len(), 1);
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_scored_name_is_an_error() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = strict_client(&mock).await;
    // Masked: four responses go out as model-1..model-4; the answer adds model-11.
    let masked = numbered(1, "[[fault:names-extra]]");
    expect_name_error(&client, &mock, &masked, &NAME_KINDS, "model-11").await;
    // Not masked: the answer adds zzz.
    let plain = numbered(2, "[[fault:names-extra]]").mask_responses(false);
    expect_name_error(&client, &mock, &plain, &NAME_KINDS, "zzz").await;
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_scoring_only_an_invented_name_is_an_error() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = strict_client(&mock).await;
    for (i, mask) in [(3, true), (4, false)] {
        let request = numbered(i, "[[fault:names-invented]]").mask_responses(mask);
        expect_name_error(&client, &mock, &request, &NAME_KINDS, "zzz").await;
    }
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_name_is_incomplete() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = strict_client(&mock).await;
    // Not masked, so the dropped response is the request's last: delta.
    let request = numbered(5, "[[fault:names-missing]]").mask_responses(false);
    expect_name_error(&client, &mock, &request, &["incomplete"], NAMES[3]).await;
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_ranked_name_is_an_error() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = strict_client(&mock).await;
    let masked = numbered(6, "[[fault:names-extra-ranked]]");
    expect_name_error(&client, &mock, &masked, &NAME_KINDS, "model-11").await;
    let plain = numbered(7, "[[fault:names-extra-ranked]]").mask_responses(false);
    expect_name_error(&client, &mock, &plain, &NAME_KINDS, "zzz").await;
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrongly_named_answer_is_reasked_and_the_reask_succeeds() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock]).reask_malformed(true).build().unwrap();
    for (i, fault) in [
        "names-extra",
        "names-missing",
        "names-invented",
        "names-extra-ranked",
    ]
    .iter()
    .enumerate()
    {
        for mask in [true, false] {
            let request = numbered(
                10 + 2 * i + usize::from(mask),
                &format!("[[fail-first:1:{fault}]]"),
            )
            .mask_responses(mask);
            let judged = client
                .judge_detailed(&request)
                .await
                .unwrap_or_else(|e| panic!("{fault}, masked {mask}: {e}"));
            assert_judgment(&request, &judged.judgment, fault);
            assert_eq!(judged.attempts, 2, "{fault}, masked {mask}: one re-ask");
            assert_eq!(attempts_of(&mock, &request).len(), 2);
        }
    }
    mock.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lenient_client_never_turns_a_missing_score_into_a_silent_reward() {
    use rewardanything_client::ParseOptions;
    use rewardanything_client::{OnFailure, Rewarder};
    let mock = MockServer::builder().start().await.unwrap();
    let client = builder(&[&mock])
        .parse_options(ParseOptions::default())
        .build()
        .unwrap();
    let rewarder = Rewarder::new(client).on_failure(OnFailure::Fixed(0.0));
    let group = rewarder
        .group_rewards(
            "Be concise.",
            "2+2? [[fault:names-missing]]",
            &["4", "Four.", "IV"],
        )
        .await;
    let error = group
        .error
        .as_ref()
        .expect("a missing score is a failed reward");
    let error = error.judge().expect("a judgment error");
    assert_eq!(error.kind_str(), "incomplete", "{error}");
    assert!(
        group.to_f64().iter().all(|r| *r == 0.0),
        "{:?}",
        group.to_f64()
    );
    mock.shutdown().await;
}
