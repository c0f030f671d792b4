//! Every vector of `tests/data/metrics_public.jsonl`, compared bit-exactly (SPEC 4).

use indexmap::IndexMap;
use rewardanything_client::compat::pyjson::{self, Float, Int, Value};
use rewardanything_client::metrics::{
    format_reward, format_reward_reference, weighted_pair_penalty,
};

fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/metrics_public.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("metrics_public.jsonl is readable");
    text.split('\n')
        .filter(|l| !l.is_empty())
        .map(|l| pyjson::loads(l).expect("vector line is JSON"))
        .collect()
}

fn field<'a>(v: &'a Value, k: &str) -> &'a Value {
    v.as_object().and_then(|o| o.get(k)).unwrap_or(&Value::Null)
}

/// Replaces the files' `{"$float": …}` / `{"$int": …}` wrappers (SPEC 0.1) by the values.
fn unwrap(v: &Value) -> Value {
    match v {
        Value::Object(o) if o.len() == 1 => {
            match (o.keys().next().map(String::as_str), o.values().next()) {
                (Some("$float"), Some(Value::Str(s))) => {
                    let value = match s.as_str() {
                        "NaN" => f64::NAN,
                        "Infinity" => f64::INFINITY,
                        "-Infinity" => f64::NEG_INFINITY,
                        other => panic!("bad $float {other}"),
                    };
                    Value::Float(Float {
                        value,
                        underflow: false,
                    })
                }
                (Some("$int"), Some(Value::Str(s))) => Value::Int(Int::Big(s.clone())),
                _ => Value::Object(o.iter().map(|(k, v)| (k.clone(), unwrap(v))).collect()),
            }
        }
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), unwrap(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(unwrap).collect()),
        other => other.clone(),
    }
}

fn scores(v: &Value) -> IndexMap<String, Value> {
    unwrap(v)
        .as_object()
        .expect("scores argument is an object")
        .clone()
}

fn same_bits(got: f64, want: f64) -> bool {
    // Python's int 0 and float 0.0 both compare equal to our 0.0 (quirk M5).
    got == want && (got == 0.0 || got.to_bits() == want.to_bits())
}

#[test]
fn every_metrics_vector_is_bit_exact() {
    let vs = vectors();
    assert!(
        vs.len() >= 34,
        "expected the 34 public vectors, got {}",
        vs.len()
    );
    let mut failures = Vec::new();
    let (mut pp, mut fr, mut raised) = (0, 0, 0);
    for v in &vs {
        let id = field(v, "id").as_str().expect("id");
        let args = field(v, "args");
        let want = field(v, "expected").as_f64();
        let want_err = field(v, "expected_error").as_str();
        match field(v, "function").as_str() {
            Some("calculate_weighted_pair_penalty") => {
                pp += 1;
                let got = weighted_pair_penalty(
                    &scores(field(args, "pred_scores")),
                    &scores(field(args, "gt_scores")),
                );
                match want {
                    Some(w) if same_bits(got, w) => {}
                    _ => failures.push(format!("{id}: got {got:?}, want {want:?} / {want_err:?}")),
                }
            }
            Some("format_reward") => {
                fr += 1;
                let predict = field(args, "predict").as_str().expect("predict");
                let gt = field(args, "ground_truth").as_str().expect("ground_truth");
                let got = format_reward_reference(predict, gt);
                match (want_err, &got) {
                    (Some(exc), Err(e)) if e.exception.as_str() == exc => raised += 1,
                    (None, Ok(g)) if want.is_some_and(|w| same_bits(*g, w)) => {}
                    _ => failures.push(format!("{id}: got {got:?}, want {want:?} / {want_err:?}")),
                }
                // The defined variant agrees wherever the reference does not hit NameError,
                // and yields a value in [0, 1] where it does.
                let ours = format_reward(predict, gt);
                match (want_err, &ours) {
                    (Some("NameError"), Ok(x)) if (0.4..=1.0).contains(x) => {}
                    (Some("NameError"), _) => {
                        failures.push(format!("{id}: format_reward gave {ours:?}"))
                    }
                    _ if ours == got => {}
                    _ => failures.push(format!(
                        "{id}: format_reward {ours:?} differs from reference {got:?}"
                    )),
                }
            }
            other => failures.push(format!("{id}: unknown function {other:?}")),
        }
    }
    println!(
        "metrics: {} vectors ({pp} weighted_pair_penalty, {fr} format_reward, {raised} reference exceptions), {} failures",
        vs.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Where the reference raises NameError, `format_reward` adds 0.20 × consistency; the
/// sums below are spelled out in SPEC 4.3's order.
#[test]
fn defined_consistency_values() {
    let gt3 = r#"{"scores": {"model-1": 3, "model-2": 5, "model-3": 1}, "best-to-worst": ["model-2", "model-1", "model-3"]}"#;
    let think = "<think>The principle asks for concision. Response one is short and correct, response two rambles.</think>";
    let pred = format!("{think}{gt3}");
    let want = 0.0 + 0.15 + 0.05 + 0.20 + 0.10 + 0.10 + 0.2 * (3.0 / 3.0) + 0.20 * 1.0;
    assert_eq!(format_reward(&pred, gt3).unwrap(), want);
    // A ranking against its own scores: one of two adjacent pairs increases.
    let pred = r#"{"scores": {"a": 1, "b": 2, "c": 0}, "best-to-worst": ["a", "b", "c"]}"#;
    let want = 0.0 + 0.20 + 0.10 + 0.10 + 0.20 * 0.5;
    assert_eq!(format_reward(pred, "{}").unwrap(), want);
    let pred = r#"{"scores": {"model-1": 1}, "best-to-worse": ["model-1"]}"#;
    let want = 0.0 + 0.20 + 0.10 + 0.10 + 0.2 * (1.0 / 2.0) + 0.20;
    assert_eq!(
        format_reward(pred, r#"{"scores": {"model-1": 2, "model-2": 4}}"#).unwrap(),
        want
    );
}
