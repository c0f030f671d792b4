//! Items → judged units. A unit is one call: an RM-Bench pair (pairwise mode), an
//! RM-Bench item's six responses (listwise), or a ranked item, under one presented
//! order. With `--permutations K` every call is made under up to K distinct seeded
//! orders ([`permutation_seeds`]); with K = 1 under the client's `--masking`.
//!
//! Each unit is written as an `ra score` input line that is already masked: its
//! responses are named `model-1..model-N` in the presented order and
//! `mask_responses` is false, so the model sees exactly what masking would show it, and
//! the batch engine needs no per-line masking. The plan (which item, pair and order
//! each line is) stays in memory to map the answers back.

use indexmap::IndexMap;
use rewardanything_client::permutation;
use rewardanything_client::permutation_seeds;
use rewardanything_client::{JudgeRequest, Masking};
use serde_json::{Value, json};

use super::data::{RankedItem, RmBenchItem};

/// How RM-Bench items are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The 9 chosen×rejected pairs of each item, each one listwise call of 2.
    Pairwise,
    /// One call with all 6 responses.
    Listwise,
}

/// The items of a run.
pub enum Items {
    RmBench(Vec<RmBenchItem>),
    Ranked(Vec<RankedItem>),
}

impl Items {
    pub fn len(&self) -> usize {
        match self {
            Items::RmBench(v) => v.len(),
            Items::Ranked(v) => v.len(),
        }
    }
}

/// One judged unit: which item and pair, which order, and how it was shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub item: usize,
    /// RM-Bench pairwise: (chosen index, rejected index).
    pub pair: Option<(usize, usize)>,
    /// Which of the item's orders (0-based); order 0 is the "K = 1" judgment.
    pub perm: usize,
    pub masking: Masking,
    /// Entry `p`: the index (in the request's caller order) of the response shown at
    /// position `p`, i.e. named `model-{p+1}`.
    pub order: Vec<usize>,
}

impl Unit {
    /// Where each response (caller order) was shown.
    pub fn positions(&self) -> Vec<usize> {
        let mut pos = vec![0; self.order.len()];
        for (p, &src) in self.order.iter().enumerate() {
            if let Some(slot) = pos.get_mut(src) {
                *slot = p;
            }
        }
        pos
    }
}

/// The names RM-Bench requests use (never shown to the model: units are masked).
pub fn chosen_name(i: usize) -> String {
    format!("chosen_{i}")
}

pub fn rejected_name(j: usize) -> String {
    format!("rejected_{j}")
}

/// The request of an RM-Bench call with the caller's names.
pub fn rm_bench_request(
    item: &RmBenchItem,
    principle: &str,
    pair: Option<(usize, usize)>,
) -> JudgeRequest {
    let request = JudgeRequest::new(principle, item.prompt.clone());
    match pair {
        Some((i, j)) => request
            .response(chosen_name(i), item.chosen[i].clone())
            .response(rejected_name(j), item.rejected[j].clone()),
        None => {
            let mut r = request;
            for (i, text) in item.chosen.iter().enumerate() {
                r = r.response(chosen_name(i), text.clone());
            }
            for (j, text) in item.rejected.iter().enumerate() {
                r = r.response(rejected_name(j), text.clone());
            }
            r
        }
    }
}

/// The request of a ranked item with the caller's names.
pub fn ranked_request(item: &RankedItem) -> JudgeRequest {
    let mut r = JudgeRequest::new(item.principle.clone(), item.prompt.clone());
    r.responses = item.responses.clone();
    r
}

/// The maskings of a request's K orders.
fn maskings(request: &JudgeRequest, k: usize, masking: Masking) -> Vec<Masking> {
    if k <= 1 {
        return vec![masking];
    }
    let base = match masking {
        Masking::Seeded(s) => s,
        _ => 0,
    };
    permutation_seeds(request, k, base)
        .into_iter()
        .map(Masking::Seeded)
        .collect()
}

/// Builds every unit of the run, calling `emit` with each unit and its input line (in
/// unit order), so lines need not all be held at once.
pub fn expand(
    items: &Items,
    mode: Mode,
    principle: &str,
    k: usize,
    masking: Masking,
    mut emit: impl FnMut(&Unit, String) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Unit>> {
    let mut units = Vec::new();
    let mut push = |item: usize, pair: Option<(usize, usize)>, request: JudgeRequest| {
        for (perm, m) in maskings(&request, k, masking).into_iter().enumerate() {
            let order =
                permutation(&request, m).unwrap_or_else(|| (0..request.responses.len()).collect());
            let unit = Unit {
                item,
                pair,
                perm,
                masking: m,
                order,
            };
            emit(&unit, unit_line(units.len(), &unit, &request))?;
            units.push(unit);
        }
        anyhow::Ok(())
    };
    match items {
        Items::RmBench(list) => {
            for (index, item) in list.iter().enumerate() {
                match mode {
                    Mode::Pairwise => {
                        for i in 0..3 {
                            for j in 0..3 {
                                push(
                                    index,
                                    Some((i, j)),
                                    rm_bench_request(item, principle, Some((i, j))),
                                )?;
                            }
                        }
                    }
                    Mode::Listwise => push(index, None, rm_bench_request(item, principle, None))?,
                }
            }
        }
        Items::Ranked(list) => {
            for (index, item) in list.iter().enumerate() {
                push(index, None, ranked_request(item))?;
            }
        }
    }
    Ok(units)
}

/// The `ra score` input line of a unit: pre-masked, names `model-1..N` in the shown order.
fn unit_line(index: usize, unit: &Unit, request: &JudgeRequest) -> String {
    let mut responses = serde_json::Map::new();
    for (p, &src) in unit.order.iter().enumerate() {
        let text = request
            .responses
            .get_index(src)
            .map(|(_, t)| t.as_str())
            .unwrap_or_default();
        responses.insert(format!("model-{}", p + 1), Value::from(text));
    }
    let id = match unit.pair {
        Some((i, j)) => format!("{index}:item{}:pair{i}{j}:order{}", unit.item, unit.perm),
        None => format!("{index}:item{}:order{}", unit.item, unit.perm),
    };
    let line = json!({
        "id": id,
        "principle": request.principle,
        "prompt": request.prompt,
        "responses": responses,
        "mask_responses": false,
    });
    format!("{line}\n")
}

/// Maps a unit's answer (scores and ranking by `model-k`) back to the caller's names.
pub fn unmask(
    unit: &Unit,
    names: &[String],
    scores: &IndexMap<String, f64>,
    ranking: &[String],
) -> Option<(IndexMap<String, f64>, Vec<String>)> {
    let real = |masked: &str| -> Option<&String> {
        let p: usize = masked.strip_prefix("model-")?.parse().ok()?;
        names.get(*unit.order.get(p.checked_sub(1)?)?)
    };
    let mut by_name = IndexMap::with_capacity(names.len());
    for name in names {
        by_name.insert(name.clone(), f64::NAN);
    }
    for (masked, &s) in scores {
        *by_name.get_mut(real(masked)?)? = s;
    }
    if by_name.values().any(|s| s.is_nan()) {
        return None;
    }
    let ranking = ranking
        .iter()
        .map(|m| real(m).cloned())
        .collect::<Option<Vec<String>>>()?;
    Some((by_name, ranking))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> RmBenchItem {
        RmBenchItem {
            id: json!(1),
            prompt: "q".into(),
            chosen: ["c0".into(), "c1".into(), "c2".into()],
            rejected: ["r0".into(), "r1".into(), "r2".into()],
            domain: None,
        }
    }

    #[test]
    fn pairwise_with_two_orders_shows_each_response_first_once() {
        let items = Items::RmBench(vec![item()]);
        let mut lines = Vec::new();
        let units = expand(
            &items,
            Mode::Pairwise,
            "p",
            2,
            Masking::Reference,
            |_, l| {
                lines.push(l);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(units.len(), 18);
        for pair in units.chunks(2) {
            assert_eq!(pair[0].pair, pair[1].pair);
            assert_ne!(pair[0].order, pair[1].order);
        }
        let first: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["mask_responses"], false);
        let shown: Vec<&str> = first["responses"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_str().unwrap())
            .collect();
        let expect: Vec<&str> = units[0].order.iter().map(|&s| ["c0", "r0"][s]).collect();
        assert_eq!(shown, expect);
    }

    #[test]
    fn one_order_follows_the_client_masking() {
        let items = Items::RmBench(vec![item()]);
        let units = expand(
            &items,
            Mode::Listwise,
            "p",
            1,
            Masking::Reference,
            |_, _| Ok(()),
        )
        .unwrap();
        assert_eq!(units.len(), 1);
        let request = rm_bench_request(&item(), "p", None);
        assert_eq!(
            Some(units[0].order.clone()),
            permutation(&request, Masking::Reference)
        );
    }

    #[test]
    fn unmask_maps_back_and_refuses_unknown_names() {
        let unit = Unit {
            item: 0,
            pair: None,
            perm: 0,
            masking: Masking::Reference,
            order: vec![1, 0],
        };
        let names = vec!["a".to_string(), "b".to_string()];
        let scores: IndexMap<String, f64> =
            [("model-1".into(), 5.0), ("model-2".into(), 2.0)].into();
        let (s, r) = unmask(
            &unit,
            &names,
            &scores,
            &["model-1".into(), "model-2".into()],
        )
        .unwrap();
        assert_eq!(s["b"], 5.0);
        assert_eq!(s["a"], 2.0);
        assert_eq!(r, ["b", "a"]);
        let bad: IndexMap<String, f64> = [("model-3".into(), 5.0)].into();
        assert!(unmask(&unit, &names, &bad, &[]).is_none());
        assert_eq!(unit.positions(), [1, 0]);
    }
}
