//! Reward helpers of the reference (SPEC section 4), bit-exact, plus ranking metrics
//! for evaluation work.
//!
//! * [`weighted_pair_penalty`]: the reference's `calculate_weighted_pair_penalty`,
//!   including Python `float()` coercion of strings and its odd outcomes (quirk M4).
//! * [`format_reward_reference`]: the reference's `format_reward`, which raises
//!   `NameError` for every prediction with scores and a ranking key (quirk M1).
//! * [`format_reward`]: the same with [`check_ranking_consistency`] defined (the
//!   reference calls it but never defines it): when the prediction has both keys, it
//!   adds `0.20 ×` the consistency — the weight the reference's own code uses (its
//!   docstring splits the reward into five 20% parts) — so a complete, consistent
//!   prediction with a long think section scores `1.0`; `min(1.0, ·)` still applies.
//! * [`pairwise_accuracy`], [`kendall_tau`] and [`ndcg`] for evaluation.
//!
//! ```
//! use rewardanything_client::metrics::{format_reward, format_reward_reference};
//! let gt = r#"{"scores": {"a": 5, "b": 1}, "best-to-worst": ["a", "b"]}"#;
//! let pred = r#"{"scores": {"a": 4, "b": 2}, "best-to-worst": ["a", "b"]}"#;
//! // no think tags: 0.20 (direct JSON) + 0.10 + 0.10 + 0.20 (coverage) + 0.20 (consistency)
//! assert_eq!(format_reward(pred, gt).unwrap(), 0.2 + 0.1 + 0.1 + 0.2 + 0.2);
//! assert!(format_reward_reference(pred, gt).is_err());
//! ```

use std::collections::HashSet;

use indexmap::IndexMap;

use crate::compat::pyjson::Value;
use crate::compat::reference::{
    PyException, ReferenceError, Stage, py_contains, py_err, py_strip, recover_json,
    reference_json_text,
};

// ---------------------------------------------------------------------------------
// Python float()
// ---------------------------------------------------------------------------------

/// The first code point (digit zero) of every run of Unicode decimal digits (category
/// Nd, Unicode 15 as in CPython 3.11), each run being `0..=9` in order.
const DECIMAL_ZEROS: [u32; 66] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50,
    0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

fn unicode_decimal(c: char) -> Option<u8> {
    let c = c as u32;
    let i = DECIMAL_ZEROS.partition_point(|&z| z <= c);
    let z = *DECIMAL_ZEROS.get(i.checked_sub(1)?)?;
    (c - z < 10).then(|| (c - z) as u8)
}

/// Python's `float(s)` for a `str`: surrounding whitespace (Unicode whitespace except
/// U+001C..U+001F) is ignored, underscores are allowed between digits, `nan`/`inf`/
/// `infinity` in any case with a sign, and non-ASCII decimal digits count as digits.
/// `None` where Python raises `ValueError`.
///
/// ```
/// use rewardanything_client::metrics::py_float_str;
/// assert_eq!(py_float_str(" 1_0 "), Some(10.0));
/// assert_eq!(py_float_str("١٢"), Some(12.0));
/// assert_eq!(py_float_str("\u{1c}2"), None);
/// assert!(py_float_str("-NaN").unwrap().is_nan());
/// assert_eq!(py_float_str("1__0"), None);
/// ```
pub fn py_float_str(s: &str) -> Option<f64> {
    // CPython maps non-ASCII whitespace to ' ' and non-ASCII decimal digits to ASCII
    // digits, and anything else non-ASCII makes the string invalid.
    let mut ascii = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else if crate::compat::reference::is_py_space(c) {
            ascii.push(' ');
        } else {
            ascii.push((b'0' + unicode_decimal(c)?) as char);
        }
    }
    let mut clean = String::with_capacity(ascii.len());
    let mut prev = '\0';
    for c in ascii.chars() {
        if c == '_' {
            if !prev.is_ascii_digit() {
                return None;
            }
        } else {
            if prev == '_' && !c.is_ascii_digit() {
                return None;
            }
            clean.push(c);
        }
        prev = c;
    }
    if prev == '_' {
        return None;
    }
    // Only ASCII whitespace (space, \t, \n, \v, \f, \r) is stripped at this point.
    let t = clean.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r'));
    // Rust's float grammar matches C's strtod on these characters (sign, digits, '.',
    // exponent, inf/infinity/nan in any case); anything else is rejected up front.
    if t.is_empty()
        || t.contains(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    {
        return None;
    }
    t.parse::<f64>().ok()
}

/// Python's `float(v)` for a JSON value: ints (exactly rounded), floats, bools and
/// numeric strings; `None` where Python raises (`None`, lists, dicts, bad strings,
/// ints too large for a float).
pub fn py_float(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Int(i) => i.to_f64(),
        Value::Float(f) => Some(f.value),
        Value::Str(s) => py_float_str(s),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// A score value the metrics accept, converted like Python's `float()`.
pub trait ScoreValue {
    /// The value as Python's `float(v)` would give it, or `None` where that raises.
    fn py_float(&self) -> Option<f64>;
}

impl ScoreValue for f64 {
    fn py_float(&self) -> Option<f64> {
        Some(*self)
    }
}

impl ScoreValue for Value {
    fn py_float(&self) -> Option<f64> {
        py_float(self)
    }
}

impl ScoreValue for serde_json::Value {
    fn py_float(&self) -> Option<f64> {
        use serde_json::Value as J;
        match self {
            J::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            J::Number(n) => n.as_f64(),
            J::String(s) => py_float_str(s),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------
// SPEC 4.2
// ---------------------------------------------------------------------------------

/// The reference's `calculate_weighted_pair_penalty(pred_scores, gt_scores)` (SPEC 4.2).
///
/// Over every pair of names scored in both maps (pairs whose four values do not all
/// convert with Python `float()` are skipped): weight `w = 1 + |ga − gb|`; penalty `w`
/// for a reversed pair, `w / 2` for a predicted tie where the truth has none. Returns
/// `max(0, 1 − Σpenalty/Σw)`; `1.0` when fewer than two names overlap; `0.0` when every
/// pair was skipped or the result is NaN (Python returns the int `0` there, quirk M5).
/// Pairs are visited in `pred`'s key order; the reference uses hash order, which gives
/// the same bits whenever the sums are exact (integer or dyadic scores).
///
/// ```
/// use indexmap::IndexMap;
/// use rewardanything_client::metrics::weighted_pair_penalty;
/// let pred: IndexMap<String, f64> = [("a".into(), 2.0), ("b".into(), 1.0), ("c".into(), 5.0)].into();
/// let gt: IndexMap<String, f64> = [("a".into(), 1.0), ("b".into(), 2.0), ("c".into(), 5.0)].into();
/// assert_eq!(weighted_pair_penalty(&pred, &gt), 0.8181818181818181);
/// ```
pub fn weighted_pair_penalty<P: ScoreValue, G: ScoreValue>(
    pred: &IndexMap<String, P>,
    gt: &IndexMap<String, G>,
) -> f64 {
    let common: Vec<(&P, &G)> = pred
        .iter()
        .filter_map(|(k, p)| gt.get(k).map(|g| (p, g)))
        .collect();
    if common.len() < 2 {
        return 1.0;
    }
    let vals: Vec<Option<(f64, f64)>> = common
        .iter()
        .map(|(p, g)| Some((p.py_float()?, g.py_float()?)))
        .collect();
    let mut tp = 0.0f64;
    let mut tw = 0.0f64;
    for i in 0..vals.len() {
        for j in i + 1..vals.len() {
            let (Some((pa, ga)), Some((pb, gb))) = (vals[i], vals[j]) else {
                continue;
            };
            let w = 1.0 + (ga - gb).abs();
            let dp = pa - pb;
            let dg = ga - gb;
            let penalty = if dp * dg < 0.0 {
                w
            } else if dp == 0.0 && dg != 0.0 {
                w * 0.5
            } else {
                0.0
            };
            tp += penalty;
            tw += w;
        }
    }
    if tw == 0.0 {
        return 0.0;
    }
    let r = 1.0 - tp / tw;
    if r > 0.0 { r } else { 0.0 }
}

// ---------------------------------------------------------------------------------
// SPEC 4.3
// ---------------------------------------------------------------------------------

/// The error `format_reward` raises, as the Python exception it corresponds to.
pub type MetricError = ReferenceError;

fn get_item<'v>(r: &'v Value, key: &str) -> Result<&'v Value, MetricError> {
    match r {
        Value::Object(o) => o
            .get(key)
            .ok_or_else(|| py_err(PyException::TypeError, format!("KeyError: {key:?}"))),
        Value::Array(_) => Err(py_err(
            PyException::TypeError,
            "list indices must be integers or slices, not str",
        )),
        Value::Str(_) => Err(py_err(
            PyException::TypeError,
            "string indices must be integers",
        )),
        other => Err(py_err(
            PyException::TypeError,
            format!("'{}' object is not subscriptable", other.type_name()),
        )),
    }
}

/// This port's definition of the function the reference calls but never defines
/// (SPEC 4.1): the fraction of adjacent pairs in the prediction's ranking
/// (`best-to-worst`, else `best-to-worse`) whose scores do not increase.
///
/// A pair counts as consistent only when both names have a score that converts with
/// Python `float()` and the first is `>=` the second. A ranking with fewer than two
/// entries has no pair to contradict and gives `1.0`; a prediction that is not an
/// object, or whose `scores` is not an object or ranking not an array, gives `0.0`.
///
/// ```
/// use rewardanything_client::{metrics::check_ranking_consistency, compat::pyjson::loads};
/// let v = loads(r#"{"scores": {"a": 5, "b": 3, "c": 4}, "best-to-worst": ["a", "b", "c"]}"#).unwrap();
/// assert_eq!(check_ranking_consistency(&v), 0.5);
/// ```
pub fn check_ranking_consistency(pred: &Value) -> f64 {
    let Some(o) = pred.as_object() else {
        return 0.0;
    };
    let Some(scores) = o.get("scores").and_then(Value::as_object) else {
        return 0.0;
    };
    let Some(ranking) = o
        .get("best-to-worst")
        .or_else(|| o.get("best-to-worse"))
        .and_then(Value::as_array)
    else {
        return 0.0;
    };
    if ranking.len() < 2 {
        return 1.0;
    }
    let score = |v: &Value| v.as_str().and_then(|k| scores.get(k)).and_then(py_float);
    let good = ranking
        .windows(2)
        .filter(|w| matches!((score(&w[0]), score(&w[1])), (Some(a), Some(b)) if a >= b))
        .count();
    good as f64 / (ranking.len() - 1) as f64
}

fn think_bonus(predict: &str) -> f64 {
    let mut score = 0.0;
    let o = predict.find("<think>");
    let c = predict.contains("</think>");
    match o {
        Some(a) if c => {
            score += 0.15;
            let inner = &predict[a + 7..];
            if let Some(b) = inner.find("</think>")
                && py_strip(&inner[..b]).chars().count() > 50
            {
                score += 0.05;
            }
        }
        _ if o.is_some() || c => score += 0.05,
        _ => {}
    }
    score
}

fn format_reward_impl(
    predict: &str,
    ground_truth: &str,
    define_consistency: bool,
) -> Result<f64, MetricError> {
    let mut score = think_bonus(predict);
    let (pred, stage) = recover_json(&reference_json_text(predict))?;
    let (gt, _) = recover_json(ground_truth)?;
    if pred.is_truthy() {
        score += if stage == Stage::Brackets { 0.15 } else { 0.20 };
        let has_s = py_contains(&pred, "scores")?;
        let has_r = py_contains(&pred, "best-to-worst")? || py_contains(&pred, "best-to-worse")?;
        if has_s {
            score += 0.10;
        }
        if has_r {
            score += 0.10;
        }
        if has_s && py_contains(&gt, "scores")? {
            let gt_models: HashSet<&str> = match get_item(&gt, "scores")? {
                Value::Object(o) => o.keys().map(String::as_str).collect(),
                other => {
                    return Err(py_err(
                        PyException::AttributeError,
                        format!("'{}' object has no attribute 'keys'", other.type_name()),
                    ));
                }
            };
            let pred_models: HashSet<&str> = match get_item(&pred, "scores")? {
                Value::Object(o) => o.keys().map(String::as_str).collect(),
                _ => HashSet::new(),
            };
            if !gt_models.is_empty() && !pred_models.is_empty() {
                let inter = gt_models.intersection(&pred_models).count();
                score += 0.2 * (inter as f64 / gt_models.len().max(1) as f64);
            }
        }
        if has_s && has_r {
            if !define_consistency {
                return Err(py_err(
                    PyException::NameError,
                    "name 'check_ranking_consistency' is not defined",
                ));
            }
            score += 0.20 * check_ranking_consistency(&pred);
        }
    }
    Ok(if score < 1.0 { score } else { 1.0 })
}

/// The reference's `format_reward(predict, ground_truth)` exactly (SPEC 4.3), including
/// the `NameError` it raises whenever the prediction has scores and a ranking key, and
/// the `TypeError`/`AttributeError`/`ValueError`/`RecursionError` cases.
///
/// ```
/// use rewardanything_client::{metrics::format_reward_reference, compat::reference::PyException};
/// assert_eq!(format_reward_reference("<think>short</think>{\"best-to-worse\": [\"m\"]}", "{}").unwrap(), 0.44999999999999996);
/// assert_eq!(format_reward_reference("[\"scores\"]", "{\"scores\": {}}").unwrap_err().exception, PyException::TypeError);
/// ```
pub fn format_reward_reference(predict: &str, ground_truth: &str) -> Result<f64, MetricError> {
    format_reward_impl(predict, ground_truth, false)
}

/// [`format_reward_reference`] with [`check_ranking_consistency`] defined: where the
/// reference raises `NameError`, this adds `0.20 × consistency` and goes on. Other
/// exceptions are still returned as errors.
///
/// ```
/// use rewardanything_client::metrics::format_reward;
/// let p = "{\"scores\": {\"m\": 1}, \"best-to-worse\": [\"m\"]}";
/// assert_eq!(format_reward(p, "{\"scores\": {\"m\": 2, \"n\": 4}}").unwrap(), 0.2 + 0.1 + 0.1 + 0.1 + 0.2);
/// ```
pub fn format_reward(predict: &str, ground_truth: &str) -> Result<f64, MetricError> {
    format_reward_impl(predict, ground_truth, true)
}

// ---------------------------------------------------------------------------------
// Evaluation metrics
// ---------------------------------------------------------------------------------

fn common_pairs(pred: &IndexMap<String, f64>, gt: &IndexMap<String, f64>) -> Vec<(f64, f64)> {
    pred.iter()
        .filter_map(|(k, p)| gt.get(k).map(|g| (*p, *g)))
        .collect()
}

/// Pairwise accuracy over the names scored in both maps: among pairs the ground truth
/// orders strictly, the fraction the prediction orders the same way; a predicted tie
/// counts one half. `None` when no pair is strictly ordered by the ground truth.
///
/// ```
/// use indexmap::IndexMap;
/// use rewardanything_client::metrics::pairwise_accuracy;
/// let p: IndexMap<String, f64> = [("a".into(), 3.0), ("b".into(), 3.0), ("c".into(), 1.0)].into();
/// let g: IndexMap<String, f64> = [("a".into(), 5.0), ("b".into(), 1.0), ("c".into(), 2.0)].into();
/// // (a,b) tie → 0.5; (a,c) right → 1; (b,c) wrong → 0
/// assert_eq!(pairwise_accuracy(&p, &g), Some(0.5));
/// ```
pub fn pairwise_accuracy(pred: &IndexMap<String, f64>, gt: &IndexMap<String, f64>) -> Option<f64> {
    let v = common_pairs(pred, gt);
    let (mut right, mut total) = (0.0, 0usize);
    for i in 0..v.len() {
        for j in i + 1..v.len() {
            let dg = v[i].1 - v[j].1;
            if dg == 0.0 || dg.is_nan() {
                continue;
            }
            total += 1;
            let dp = v[i].0 - v[j].0;
            if dp * dg > 0.0 {
                right += 1.0;
            } else if dp == 0.0 {
                right += 0.5;
            }
        }
    }
    (total > 0).then(|| right / total as f64)
}

/// Kendall's tau-b between predicted and ground-truth scores over the names scored in
/// both maps (ties handled as in `scipy.stats.kendalltau`). `None` with fewer than two
/// common names or when either side is constant.
///
/// ```
/// use indexmap::IndexMap;
/// use rewardanything_client::metrics::kendall_tau;
/// let p: IndexMap<String, f64> = [("a".into(), 1.0), ("b".into(), 2.0), ("c".into(), 3.0)].into();
/// let g: IndexMap<String, f64> = [("a".into(), 3.0), ("b".into(), 2.0), ("c".into(), 1.0)].into();
/// assert_eq!(kendall_tau(&p, &g), Some(-1.0));
/// ```
pub fn kendall_tau(pred: &IndexMap<String, f64>, gt: &IndexMap<String, f64>) -> Option<f64> {
    let v = common_pairs(pred, gt);
    let (mut conc, mut disc, mut tie_p, mut tie_g) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..v.len() {
        for j in i + 1..v.len() {
            let dp = v[i].0 - v[j].0;
            let dg = v[i].1 - v[j].1;
            match (dp == 0.0, dg == 0.0) {
                (true, true) => {}
                (true, false) => tie_p += 1,
                (false, true) => tie_g += 1,
                _ if dp * dg > 0.0 => conc += 1,
                _ => disc += 1,
            }
        }
    }
    let n_p = (conc + disc + tie_p) as f64;
    let n_g = (conc + disc + tie_g) as f64;
    let denom = (n_p * n_g).sqrt();
    (denom > 0.0).then(|| (conc - disc) as f64 / denom)
}

/// NDCG of a predicted ranking (best first) against ground-truth relevance scores,
/// with linear gain `rel` and discount `1 / log2(position + 1)`, cut at `k` entries
/// when given. Names the ground truth does not know have gain 0; a repeated name counts
/// only at its first position. `None` when the ideal DCG is 0.
///
/// ```
/// use indexmap::IndexMap;
/// use rewardanything_client::metrics::ndcg;
/// let g: IndexMap<String, f64> = [("a".into(), 3.0), ("b".into(), 1.0)].into();
/// assert_eq!(ndcg(&["a".to_string(), "b".to_string()], &g, None), Some(1.0));
/// assert!(ndcg(&["b".to_string(), "a".to_string()], &g, None).unwrap() < 1.0);
/// ```
pub fn ndcg(ranking: &[String], gt: &IndexMap<String, f64>, k: Option<usize>) -> Option<f64> {
    let k = k.unwrap_or(usize::MAX);
    let disc = |i: usize| 1.0 / ((i + 2) as f64).log2();
    let mut seen = HashSet::new();
    let dcg: f64 = ranking
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, n)| {
            if seen.insert(n.as_str()) {
                gt.get(n).copied().unwrap_or(0.0) * disc(i)
            } else {
                0.0
            }
        })
        .sum();
    let mut ideal: Vec<f64> = gt.values().copied().collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, r)| r * disc(i))
        .sum();
    (idcg > 0.0).then(|| dcg / idcg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_coercion_edges() {
        assert_eq!(py_float_str("+3"), Some(3.0));
        assert_eq!(py_float_str("1e0"), Some(1.0));
        assert_eq!(py_float_str("\u{a0}2\u{3000}"), Some(2.0));
        assert_eq!(py_float_str("\u{b}2\u{c}"), Some(2.0));
        assert_eq!(py_float_str("2\u{1f}"), None);
        assert_eq!(py_float_str("_1"), None);
        assert_eq!(py_float_str("1_"), None);
        assert_eq!(py_float_str("1_.5"), None);
        assert_eq!(py_float_str("1.5_5"), Some(1.55));
        assert_eq!(py_float_str("iNfInItY"), Some(f64::INFINITY));
        assert_eq!(py_float_str("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(py_float_str("1e999"), Some(f64::INFINITY));
        assert_eq!(py_float_str("."), None);
        assert_eq!(py_float_str(""), None);
        assert_eq!(py_float_str("1 2"), None);
        assert_eq!(py_float_str("１２.５"), Some(12.5));
        assert_eq!(py_float_str("0x10"), None);
        assert_eq!(py_float_str("½"), None);
    }

    #[test]
    fn consistency_definition() {
        let v =
            crate::compat::pyjson::loads(r#"{"scores": {"a": 1}, "best-to-worst": ["a", "zz"]}"#)
                .unwrap();
        assert_eq!(check_ranking_consistency(&v), 0.0);
        let v =
            crate::compat::pyjson::loads(r#"{"scores": {"a": 1}, "best-to-worse": []}"#).unwrap();
        assert_eq!(check_ranking_consistency(&v), 1.0);
        assert_eq!(check_ranking_consistency(&Value::Null), 0.0);
    }

    #[test]
    fn tau_b_with_ties() {
        let p: IndexMap<String, f64> = [("a", 1.0), ("b", 1.0), ("c", 2.0)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        let g: IndexMap<String, f64> = [("a", 1.0), ("b", 2.0), ("c", 3.0)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
        // conc 2, disc 0, tie_p 1: 2 / sqrt(2 * 3)
        assert_eq!(kendall_tau(&p, &g), Some(2.0 / 6f64.sqrt()));
    }
}
