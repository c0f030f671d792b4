//! `Client::judge_ensemble` against the in-process mock with a deliberate position bias:
//! the flip rate shows the bias and the mean over both orders cancels it.

use ra_mock::{Fault, MockServer};
use rewardanything_client::EnsembleError;
use rewardanything_client::{Client, JudgeRequest, Masking};

async fn client_for(mock: &ra_mock::MockHandle) -> Client {
    Client::builder()
        .endpoint(mock.base_url())
        .masking(Masking::Seeded(0))
        .build()
        .unwrap()
}

#[tokio::test]
async fn ensemble_measures_and_cancels_a_first_position_bias() {
    let mock = MockServer::builder()
        .position_bias(1)
        .start()
        .await
        .unwrap();
    let client = client_for(&mock).await;
    // Equal true quality: any single order prefers whichever is shown first.
    let request = JudgeRequest::new("p", "q")
        .response("a", "alpha score=3")
        .response("b", "beta score=3");
    let single = client.judge(&request).await.unwrap();
    assert_ne!(
        single.scores["a"], single.scores["b"],
        "one order is biased"
    );

    let e = client.judge_ensemble(&request, 4).await.unwrap();
    assert_eq!(e.judgments.len(), 2, "two responses have only two orders");
    let shown_first: Vec<usize> = e.judgments.iter().map(|j| j.positions[0]).collect();
    assert!(
        shown_first.contains(&0) && shown_first.contains(&1),
        "{shown_first:?}"
    );
    for j in &e.judgments {
        // whichever response was shown first got the +1
        let first = if j.positions[0] == 0 { "a" } else { "b" };
        assert_eq!(j.judged.judgment.scores[first], 4.0);
    }
    assert_eq!(e.scores["a"], 3.5);
    assert_eq!(e.scores["b"], 3.5);
    assert_eq!(e.flips.rate(), Some(1.0));
    assert_eq!(e.max_spread(), 1.0);
    assert_eq!(mock.stats().chat_requests, 3, "one call per order");
    mock.shutdown().await;
}

#[tokio::test]
async fn an_unbiased_judge_has_no_flips() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = client_for(&mock).await;
    let request = JudgeRequest::new("p", "q")
        .response("a", "score=2")
        .response("b", "score=5")
        .response("c", "score=4");
    let e = client.judge_ensemble(&request, 3).await.unwrap();
    assert_eq!(e.judgments.len(), 3);
    assert_eq!(e.flips.rate(), Some(0.0));
    assert_eq!(e.ranking, ["b", "c", "a"]);
    assert_eq!(e.max_spread(), 0.0);
    mock.shutdown().await;
}

#[tokio::test]
async fn one_failed_permutation_fails_the_ensemble() {
    let mock = MockServer::builder().start().await.unwrap();
    let client = Client::builder()
        .endpoint(mock.base_url())
        .retry(rewardanything_client::RetryPolicy::default().max_attempts(1))
        .build()
        .unwrap();
    mock.set_forced_fault(Some(Fault::Status {
        code: 500,
        retry_after: None,
    }));
    let request = JudgeRequest::new("p", "q")
        .response("a", "x")
        .response("b", "y");
    let err = client.judge_ensemble(&request, 2).await.unwrap_err();
    assert!(matches!(err, EnsembleError::Judge { .. }), "{err}");
    assert!(matches!(
        client.judge_ensemble(&request, 0).await,
        Err(EnsembleError::NoPermutations)
    ));
    assert!(matches!(
        client.judge_ensemble(&request, 5000).await,
        Err(EnsembleError::TooManyPermutations(5000))
    ));
    mock.shutdown().await;
}
