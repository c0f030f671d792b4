//! Hostile inputs and property tests for parsing: huge and deeply nested outputs,
//! arbitrary bytes, and a render → answer → parse round trip over random names.

use indexmap::IndexMap;
use proptest::prelude::*;
use rewardanything_client::compat::pyjson;
use rewardanything_client::compat::reference::{PyException, parse_reference};
use rewardanything_client::metrics::{format_reward, format_reward_reference, py_float_str};
use rewardanything_client::{Completion, parse_completion, parse_output};
use rewardanything_client::{JudgeRequest, Masking, render};
use rewardanything_client::{ParseErrorKind, Recovery};

const ANSWER: &str =
    r#"{"scores": {"model-1": 4, "model-2": 2}, "best-to-worst": ["model-1", "model-2"]}"#;

fn mapping() -> IndexMap<String, String> {
    [("model-1", "alpha"), ("model-2", "beta")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn ten_megabyte_outputs() {
    let m = mapping();
    let think = "I weigh both answers carefully. ".repeat(330_000);
    assert!(think.len() > 10_000_000);
    let text = format!("<think>{think}</think>\n{ANSWER}");
    let j = parse_output(&text, Some(&m)).unwrap();
    assert_eq!(j.scores["alpha"], 4.0);
    assert_eq!(j.reasoning.len(), think.trim_end().len());
    // 10 MB of prose with stray braces and quotes, then the answer: every stage runs
    // over the whole text and the result is a typed error, not a hang or a panic.
    let junk = "{'x': [1, \"a\", ```json ".repeat(450_000);
    let e = parse_output(&format!("{junk}{ANSWER}"), Some(&m)).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::NoJsonObject);
    // A 10 MB JSON string inside the answer.
    let big = format!(
        r#"{{"scores": {{"model-1": 4, "model-2": 2}}, "best-to-worst": ["model-1", "model-2"], "note": "{}"}}"#,
        "x".repeat(10_000_000)
    );
    assert_eq!(
        parse_output(&big, Some(&m)).unwrap().recovery,
        Recovery::Clean
    );
}

#[test]
fn deep_nesting_is_a_typed_error_never_a_stack_overflow() {
    let m = mapping();
    for depth in [996, 10_000, 100_000, 1_000_000] {
        let arr = format!(
            r#"{{"scores": {{"model-1": 1}}, "x": {}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert_eq!(
            parse_output(&arr, Some(&m)).unwrap_err().kind,
            ParseErrorKind::NoJsonObject,
            "{depth}"
        );
        assert_eq!(
            parse_reference(&arr, Some(&m)).unwrap_err().exception,
            PyException::RecursionError
        );
        let objs = "{\"a\": ".repeat(depth);
        assert!(parse_output(&objs, None).is_err());
        let open = "[{".repeat(depth);
        assert!(parse_output(&open, None).is_err());
        assert!(format_reward(&open, &open).is_ok() || format_reward(&open, &open).is_err());
    }
    // What the reference accepts still parses (SPEC: 300 levels must).
    let ok = format!(
        r#"{{"scores": {{"model-1": 1, "model-2": 2}}, "best-to-worst": ["model-2", "model-1"], "x": {}{}}}"#,
        "[".repeat(990),
        "]".repeat(990)
    );
    assert_eq!(
        parse_output(&ok, Some(&m)).unwrap().ranking,
        ["beta", "alpha"]
    );
}

#[test]
fn invalid_utf8_is_read_lossily() {
    let mut bytes = b"<think>\xff\xfe bad \xc3</think>".to_vec();
    bytes.extend_from_slice(ANSWER.as_bytes());
    bytes.extend_from_slice(b"\x80");
    let text = String::from_utf8_lossy(&bytes);
    // The trailing U+FFFD is not whitespace, so the answer is found by the brackets stage.
    let j = parse_output(&text, Some(&mapping())).unwrap();
    assert_eq!(j.recovery, Recovery::Repaired);
    assert_eq!(j.ranking, ["alpha", "beta"]);
}

fn json_ish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        "\"",
        ":",
        ",",
        "'",
        " ",
        "\n",
        "\\",
        "\\u",
        "d800",
        "```",
        "```json",
        "<think>",
        "</think>",
        "scores",
        "\"scores\"",
        "\"best-to-worst\"",
        "best-to-worse",
        "model-1",
        "\"model-1\"",
        "NaN",
        "-Infinity",
        "1e400",
        "1",
        "-0",
        "4.5",
        "true",
        "null",
        "\u{1c}",
        "\u{3000}",
        "\u{feff}",
        "é",
        "🤖",
    ]);
    prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let m = mapping();
        let _ = parse_output(&text, Some(&m));
        let _ = parse_reference(&text, None);
        let _ = pyjson::loads(&text);
        let _ = format_reward_reference(&text, &text);
        let _ = py_float_str(&text);
    }

    #[test]
    fn json_like_text_never_panics(text in json_ish(), gt in json_ish()) {
        let m = mapping();
        let strict = parse_output(&text, Some(&m));
        let reference = parse_reference(&text, Some(&m));
        let _ = format_reward(&text, &gt);
        // The strict layer never returns empty scores.
        if let Ok(j) = &strict {
            prop_assert!(!j.scores.is_empty());
            prop_assert!(j.scores.values().all(|s| s.is_finite()));
        }
        // When the reference cannot even produce a value, nothing valid is invented
        // except through the documented bare-`</think>` salvage.
        if matches!(&reference, Err(e) if e.exception == PyException::RecursionError) {
            prop_assert!(strict.is_err());
        }
    }

    #[test]
    fn render_answer_parse_round_trip(
        names in prop::collection::vec(
            prop_oneof![
                "[a-zA-Z0-9 _.#'`\\-]{0,10}",
                "model-[0-9]{1,2}",
                "Model-[0-9]",
                "[\u{e9}\u{65e5}\u{1F916}\u{1c}\u{200b}\"\\\\]{1,4}",
            ],
            1..8,
        ),
        scores_seed in prop::collection::vec(1u8..=9, 8),
        shape in 0u8..4,
        masking in prop_oneof![Just(Masking::Reference), any::<u64>().prop_map(Masking::Seeded), Just(Masking::None)],
    ) {
        let mut req = JudgeRequest::new("Prefer the most helpful answer.", "Question?");
        for n in &names {
            req = req.response(n.clone(), format!("answer of {n}"));
        }
        let rendered = render(&req, masking);
        let shown = rendered.model_names(&req).into_iter().map(str::to_string).collect::<Vec<_>>();
        // Half-point scores in 1..=5, a ranking sorted best first (stable on ties).
        let model_scores: Vec<(String, f64)> =
            shown.iter().zip(&scores_seed).map(|(n, s)| (n.clone(), 1.0 + f64::from(*s - 1) / 2.0)).collect();
        let mut ranking = model_scores.clone();
        ranking.sort_by(|a, b| b.1.total_cmp(&a.1));
        let answer = serde_json::json!({
            "scores": model_scores.iter().map(|(n, s)| (n.clone(), serde_json::json!(s))).collect::<serde_json::Map<_, _>>(),
            "best-to-worst": ranking.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        });
        let pretty = serde_json::to_string_pretty(&answer).unwrap();
        let reasoning = "Comparing the answers {carefully}.";
        let content = match shape {
            0 => format!("<think>\n{reasoning}\n</think>\n\n```json\n{pretty}\n```"),
            1 => format!("{reasoning}\n</think>\n\n{pretty}"),
            2 => pretty.clone(),
            _ => format!("<think>{reasoning}</think>{}", answer),
        };
        let c = match shape {
            2 => Completion::new(&content).with_reasoning(Some(reasoning)),
            _ => Completion::new(&content),
        };
        let j = parse_completion(&c, rendered.masked2real.as_ref()).unwrap();
        let to_real = |n: &str| match &rendered.masked2real {
            Some(m) if !m.is_empty() => m[n].clone(),
            _ => n.to_string(),
        };
        // The answer's key order is serde_json's (sorted without `preserve_order`):
        // compare as sets; `reorder` below checks the order.
        let mut want: Vec<(String, f64)> = model_scores.iter().map(|(n, s)| (to_real(n), *s)).collect();
        let mut got: Vec<(String, f64)> = j.scores.iter().map(|(k, v)| (k.clone(), *v)).collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        prop_assert_eq!(got, want);
        prop_assert_eq!(j.ranking.clone(), ranking.iter().map(|(n, _)| to_real(n)).collect::<Vec<_>>());
        prop_assert_eq!(j.reasoning.as_str(), reasoning);
        prop_assert!(j.consistent);
        // reorder() puts the scores in the caller's order.
        let mut j = j;
        j.reorder(req.responses.keys().map(String::as_str));
        let caller: Vec<&str> = req.responses.keys().map(String::as_str).collect();
        prop_assert_eq!(j.scores.keys().map(String::as_str).collect::<Vec<_>>(), caller);
    }
}
