//! `Batch::permutations`: each line judged under several seeded orders against a mock
//! with a deliberate position bias; lines without it are unchanged; a resume with another
//! K refuses the kept lines; a failed order makes the line an error.

use std::path::Path;

use ra_batch::{Batch, BatchError};
use ra_mock::{Fault, MockServer};
use serde_json::{Value, json};

fn client(mock: &ra_mock::MockHandle) -> rewardanything_client::Client {
    rewardanything_client::Client::builder()
        .endpoint(mock.base_url())
        .model(ra_mock::DEFAULT_MODEL)
        .retry(rewardanything_client::RetryPolicy::default().max_attempts(1))
        .build()
        .expect("client")
}

async fn input(path: &Path) -> tokio::io::BufReader<tokio::fs::File> {
    tokio::io::BufReader::new(tokio::fs::File::open(path).await.expect("open input"))
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[tokio::test]
async fn an_ensemble_line_has_the_means_and_each_order() {
    let mock = MockServer::builder()
        .position_bias(1)
        .start()
        .await
        .expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let (inp, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    let req = json!({"id": "q", "principle": "p", "prompt": "x",
                     "responses": {"a": "A score=3", "b": "B score=3"}});
    std::fs::write(&inp, format!("{req}\n")).unwrap();

    let summary = Batch::to_file(&out)
        .permutations(4)
        .prepare()
        .await
        .unwrap()
        .run(input(&inp).await, client(&mock))
        .await
        .unwrap();
    assert_eq!(summary.judged, 1);
    let line = &lines(&out)[0];
    assert_eq!(line["scores"], json!({"a": 3.5, "b": 3.5}), "{line}");
    let p = &line["permutations"];
    assert_eq!(p["orders"], 2, "two responses have two orders");
    assert_eq!(p["flip_rate"], 1.0);
    assert_eq!(p["spread"], json!({"a": 1.0, "b": 1.0}));
    let judgments = p["judgments"].as_array().unwrap();
    for j in judgments {
        // the response shown first (position 0) got the +1
        let first = if j["positions"][0] == 0 { "a" } else { "b" };
        assert_eq!(j["scores"][first], 4.0, "{j}");
    }
    assert_eq!(line["attempts"], 2);
    assert!(line["input_hash"].as_str().unwrap().ends_with("-k4"));

    // K = 1: the line has no `permutations` and a plain hash.
    let single = dir.path().join("single.jsonl");
    Batch::to_file(&single)
        .prepare()
        .await
        .unwrap()
        .run(input(&inp).await, client(&mock))
        .await
        .unwrap();
    let line = &lines(&single)[0];
    assert!(line.get("permutations").is_none(), "{line}");
    assert_eq!(line["input_hash"].as_str().unwrap().len(), 16);

    // Resuming that output with K = 2 refuses to mix.
    let err = Batch::to_file(&single)
        .resume(true)
        .permutations(2)
        .prepare()
        .await
        .unwrap()
        .run(input(&inp).await, client(&mock))
        .await
        .unwrap_err();
    assert!(matches!(err, BatchError::InputChanged { .. }), "{err}");
    mock.shutdown().await;
}

#[tokio::test]
async fn a_failed_order_makes_the_line_an_error() {
    let mock = MockServer::builder().start().await.expect("mock");
    mock.set_forced_fault(Some(Fault::Status {
        code: 500,
        retry_after: None,
    }));
    let dir = tempfile::tempdir().expect("tempdir");
    let (inp, out) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    let req = json!({"principle": "p", "prompt": "x", "responses": {"a": "1", "b": "2"}});
    std::fs::write(&inp, format!("{req}\n")).unwrap();
    let summary = Batch::to_file(&out)
        .permutations(2)
        .prepare()
        .await
        .unwrap()
        .run(input(&inp).await, client(&mock))
        .await
        .unwrap();
    assert_eq!(summary.failed_total(), 1);
    let line = &lines(&out)[0];
    assert_eq!(line["error"]["kind"], "http_status", "{line}");
    assert!(
        line["error"]["message"]
            .as_str()
            .unwrap()
            .contains("permutation"),
        "{line}"
    );
    assert!(line["scores"].is_null());
    mock.shutdown().await;
}
