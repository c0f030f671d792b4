//! A judgment names exactly the request's responses (issue 9.1): strict parsing refuses
//! invented, extra and missing names and says which; lenient parsing flags them.

use indexmap::IndexMap;
use rewardanything_client::ParseErrorKind;
use rewardanything_client::{Completion, ParseOptions, parse_completion_with};

fn map(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn strict(
    text: &str,
    m: &IndexMap<String, String>,
) -> Result<Vec<(String, f64)>, (ParseErrorKind, String)> {
    parse_completion_with(&Completion::new(text), Some(m), &ParseOptions::strict())
        .map(|j| j.scores.into_iter().collect())
        .map_err(|e| (e.kind, e.message))
}

#[test]
fn masked_answer_with_an_extra_model_name_is_refused_naming_it() {
    let m = map(&[("model-1", "a"), ("model-2", "b")]);
    let text = r#"{"scores": {"model-1": 4, "model-2": 2, "model-9": 5}, "best-to-worst": ["model-9", "model-1", "model-2"]}"#;
    let (kind, message) = strict(text, &m).unwrap_err();
    assert_eq!(kind, ParseErrorKind::InvalidScores);
    assert!(message.contains("model-9"), "{message}");
    // Lenient parsing keeps the values but never calls them consistent.
    let j =
        parse_completion_with(&Completion::new(text), Some(&m), &ParseOptions::default()).unwrap();
    assert!(!j.consistent);
}

#[test]
fn an_extra_name_only_in_the_ranking_is_refused_naming_it() {
    let m = map(&[("model-1", "a"), ("model-2", "b")]);
    let text = r#"{"scores": {"model-1": 4, "model-2": 2}, "best-to-worst": ["model-1", "model-3", "model-2"]}"#;
    let (kind, message) = strict(text, &m).unwrap_err();
    assert_eq!(kind, ParseErrorKind::Incomplete);
    assert!(message.contains("model-3"), "{message}");
}

#[test]
fn unmasked_identity_mapping_refuses_invented_and_missing_names() {
    let m = map(&[("a", "a"), ("b", "b")]);
    let (kind, message) =
        strict(r#"{"scores": {"zzz": 4}, "best-to-worst": ["zzz"]}"#, &m).unwrap_err();
    assert_eq!(kind, ParseErrorKind::InvalidScores);
    assert!(message.contains("zzz"), "{message}");
    let (kind, message) =
        strict(r#"{"scores": {"a": 4}, "best-to-worst": ["a"]}"#, &m).unwrap_err();
    assert_eq!(kind, ParseErrorKind::Incomplete);
    assert!(message.contains("\"b\""), "{message}");
}

#[test]
fn ranking_problems_name_the_offending_name() {
    let m = map(&[("model-1", "a"), ("model-2", "b")]);
    let (kind, message) = strict(
        r#"{"scores": {"model-1": 4, "model-2": 2}, "best-to-worst": ["model-1", "model-1"]}"#,
        &m,
    )
    .unwrap_err();
    assert_eq!(kind, ParseErrorKind::InvalidRanking);
    assert!(message.contains("\"a\" twice"), "{message}");
    let (kind, message) = strict(
        r#"{"scores": {"model-1": 4, "model-2": 2}, "best-to-worst": ["model-1"]}"#,
        &m,
    )
    .unwrap_err();
    assert_eq!(kind, ParseErrorKind::InvalidRanking);
    assert!(message.contains("leaves out \"b\""), "{message}");
}

#[test]
fn an_exact_answer_is_accepted_and_unmasked() {
    let m = map(&[("model-1", "a"), ("model-2", "b")]);
    let scores = strict(
        r#"{"scores": {"model-1": 4, "model-2": 2}, "best-to-worst": ["model-1", "model-2"]}"#,
        &m,
    )
    .unwrap();
    assert_eq!(scores, vec![("a".to_string(), 4.0), ("b".to_string(), 2.0)]);
}
