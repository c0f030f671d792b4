//! Judged units → the figures: RM-Bench outcomes and ranked metrics for order 0 alone
//! ("K = 1") and for the K orders aggregated, the position table and the flip rate.

use indexmap::IndexMap;
use rewardanything_client::{Flips, PositionTable, Vote, aggregate};

use super::data::{RankedItem, RmBenchItem};
use super::ranked::{RankedSummary, RankedTally};
use super::rmbench::{ItemOutcome, RmBench, compute_accuracy};
use super::units::{Items, Unit, chosen_name, rejected_name, unmask};

/// How an RM-Bench comparison is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// `score(chosen) > score(rejected)`; a tie is not a win (RM-Bench's rule).
    Scores,
    /// The same, with a tie broken by the judge's best-to-worst order (for aggregated
    /// orders: by Borda count).
    Ranking,
}

/// One unit's answer in the caller's names.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub scores: IndexMap<String, f64>,
    pub ranking: Vec<String>,
}

/// Everything the summary reports.
#[derive(Debug, Default)]
pub struct Figures {
    pub rm_bench: Option<RmBench>,
    pub rm_bench_ensemble: Option<RmBench>,
    pub ranked: Option<RankedSummary>,
    pub ranked_ensemble: Option<RankedSummary>,
    pub positions: PositionTable,
    pub flips: Flips,
    /// Mean over unit groups of the largest score spread between orders.
    pub mean_max_spread: Option<f64>,
    /// How many calls had each largest spread (key: the spread, 2 decimals).
    pub max_spread_counts: std::collections::BTreeMap<String, u64>,
    /// Items with every unit judged (order 0 / all orders).
    pub items_scored: u64,
    pub items_scored_ensemble: u64,
}

/// Consecutive units of one call (same item and pair), one per order.
fn groups(units: &[Unit]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=units.len() {
        if i == units.len() || units[i].perm == 0 {
            out.push(start..i);
            start = i;
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

/// The caller's names of a unit.
fn names_of(items: &Items, unit: &Unit) -> Vec<String> {
    match (items, unit.pair) {
        (Items::RmBench(_), Some((i, j))) => vec![chosen_name(i), rejected_name(j)],
        (Items::RmBench(_), None) => (0..3)
            .map(chosen_name)
            .chain((0..3).map(rejected_name))
            .collect(),
        (Items::Ranked(list), _) => list
            .get(unit.item)
            .map(|it| it.responses.keys().cloned().collect())
            .unwrap_or_default(),
    }
}

/// Unmasks the raw answers (by `model-k`) of every unit; `None` for a failed unit.
pub fn answers(
    items: &Items,
    units: &[Unit],
    raw: &[Option<super::judge::RawAnswer>],
) -> Vec<Option<Answer>> {
    units
        .iter()
        .zip(raw)
        .map(|(unit, r)| {
            let (scores, ranking) = r.as_ref()?;
            let names = names_of(items, unit);
            let (scores, ranking) = unmask(unit, &names, scores, ranking)?;
            Some(Answer { scores, ranking })
        })
        .collect()
}

/// The aggregate of a group's answers, `None` unless every order was judged.
fn group_answer(names: &[String], answers: &[Option<Answer>]) -> Option<(Answer, Flips, f64)> {
    let all: Vec<&Answer> = answers.iter().map(Option::as_ref).collect::<Option<_>>()?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let votes: Vec<Vote<'_>> = all
        .iter()
        .map(|a| Vote::new(&a.scores, &a.ranking))
        .collect();
    let agg = aggregate(&refs, &votes);
    let spread = agg.max_spread();
    Some((
        Answer {
            scores: agg.scores,
            ranking: agg.ranking,
        },
        agg.flips,
        spread,
    ))
}

fn beats(answer: &Answer, a: &str, b: &str, compare: Compare) -> bool {
    let (Some(sa), Some(sb)) = (answer.scores.get(a), answer.scores.get(b)) else {
        return false;
    };
    if sa > sb {
        return true;
    }
    if compare == Compare::Ranking && sa == sb {
        let pos = |n: &str| answer.ranking.iter().position(|x| x == n);
        return matches!((pos(a), pos(b)), (Some(x), Some(y)) if x < y);
    }
    false
}

/// Computes every figure from the units and their answers.
pub fn figures(
    items: &Items,
    units: &[Unit],
    answers: &[Option<Answer>],
    compare: Compare,
) -> Figures {
    let mut fig = Figures::default();
    for (unit, answer) in units.iter().zip(answers) {
        if let Some(a) = answer {
            let scores: Vec<f64> = a.scores.values().copied().collect();
            fig.positions.add(&unit.positions(), &scores);
        }
    }
    let k = units.iter().map(|u| u.perm + 1).max().unwrap_or(1);
    // Per group: order 0's answer and the aggregate of all orders.
    let mut single: Vec<Option<Answer>> = Vec::new();
    let mut ensemble: Vec<Option<Answer>> = Vec::new();
    let mut spreads = Vec::new();
    let ranges = groups(units);
    for r in &ranges {
        single.push(answers[r.start].clone());
        let names = names_of(items, &units[r.start]);
        match group_answer(&names, &answers[r.clone()]) {
            Some((a, flips, spread)) => {
                fig.flips.add(flips);
                spreads.push(spread);
                ensemble.push(Some(a));
            }
            None => ensemble.push(None),
        }
    }
    if !spreads.is_empty() && k > 1 {
        fig.mean_max_spread = Some(spreads.iter().sum::<f64>() / spreads.len() as f64);
        for s in &spreads {
            *fig.max_spread_counts.entry(format!("{s:.2}")).or_default() += 1;
        }
    }
    let group_units: Vec<&Unit> = ranges.iter().map(|r| &units[r.start]).collect();
    match items {
        Items::RmBench(list) => {
            let (out, n) = rm_bench_outcomes(list, &group_units, &single, compare);
            fig.items_scored = n;
            fig.rm_bench = compute_accuracy(&out);
            if k > 1 {
                let (out, n) = rm_bench_outcomes(list, &group_units, &ensemble, compare);
                fig.items_scored_ensemble = n;
                fig.rm_bench_ensemble = compute_accuracy(&out);
            }
        }
        Items::Ranked(list) => {
            let (tally, n) = ranked_tally(list, &group_units, &single);
            fig.items_scored = n;
            fig.ranked = Some(tally.summary());
            if k > 1 {
                let (tally, n) = ranked_tally(list, &group_units, &ensemble);
                fig.items_scored_ensemble = n;
                fig.ranked_ensemble = Some(tally.summary());
            }
        }
    }
    fig
}

/// Each item's 3×3 outcome table from its groups' answers; items with a missing answer
/// are left out. Returns the outcomes and their number.
fn rm_bench_outcomes(
    list: &[RmBenchItem],
    groups: &[&Unit],
    answers: &[Option<Answer>],
    compare: Compare,
) -> (Vec<ItemOutcome>, u64) {
    let mut tables: Vec<Option<[[Option<bool>; 3]; 3]>> = vec![Some([[None; 3]; 3]); list.len()];
    for (unit, answer) in groups.iter().zip(answers) {
        let Some(Some(table)) = tables.get_mut(unit.item) else {
            continue;
        };
        let Some(a) = answer else {
            tables[unit.item] = None;
            continue;
        };
        let cells: Vec<(usize, usize)> = match unit.pair {
            Some(p) => vec![p],
            None => (0..3).flat_map(|i| (0..3).map(move |j| (i, j))).collect(),
        };
        for (i, j) in cells {
            table[i][j] = Some(beats(a, &chosen_name(i), &rejected_name(j), compare));
        }
    }
    let out: Vec<ItemOutcome> = tables
        .into_iter()
        .zip(list)
        .filter_map(|(t, item)| {
            let t = t?;
            let mut wins = [[false; 3]; 3];
            for i in 0..3 {
                for j in 0..3 {
                    wins[i][j] = t[i][j]?;
                }
            }
            Some(ItemOutcome {
                domain: item.domain.clone(),
                wins,
            })
        })
        .collect();
    let n = out.len() as u64;
    (out, n)
}

fn ranked_tally(
    list: &[RankedItem],
    groups: &[&Unit],
    answers: &[Option<Answer>],
) -> (RankedTally, u64) {
    let mut tally = RankedTally::default();
    let mut n = 0;
    for (unit, answer) in groups.iter().zip(answers) {
        if let (Some(item), Some(a)) = (list.get(unit.item), answer) {
            tally.add(&a.scores, &a.ranking, &item.gold);
            n += 1;
        }
    }
    (tally, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewardanything_client::Masking;

    fn unit(item: usize, pair: Option<(usize, usize)>, perm: usize, order: Vec<usize>) -> Unit {
        Unit {
            item,
            pair,
            perm,
            masking: Masking::Seeded(perm as u64),
            order,
        }
    }

    fn answer(pairs: &[(&str, f64)], ranking: &[&str]) -> Option<Answer> {
        Some(Answer {
            scores: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ranking: ranking.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn ranked_single_vs_ensemble_and_position_table() {
        let items = Items::Ranked(vec![RankedItem {
            id: serde_json::Value::Null,
            principle: "p".into(),
            prompt: "q".into(),
            responses: [("a".into(), "x".into()), ("b".into(), "y".into())].into(),
            gold: [("a".into(), 2.0), ("b".into(), 1.0)].into(),
        }]);
        // order 0 shows b first and b gets +1 (tie 3-3, b ranked first); order 1 shows a first.
        let units = vec![unit(0, None, 0, vec![1, 0]), unit(0, None, 1, vec![0, 1])];
        let answers = vec![
            answer(&[("a", 3.0), ("b", 3.0)], &["b", "a"]),
            answer(&[("a", 4.0), ("b", 2.0)], &["a", "b"]),
        ];
        let f = figures(&items, &units, &answers, Compare::Scores);
        assert_eq!(f.ranked.as_ref().unwrap().pairwise_accuracy, Some(0.5));
        assert_eq!(f.ranked.as_ref().unwrap().top1_accuracy, Some(0.0));
        let e = f.ranked_ensemble.unwrap();
        assert_eq!(e.pairwise_accuracy, Some(1.0));
        assert_eq!(e.top1_accuracy, Some(1.0));
        assert_eq!(
            f.flips,
            Flips {
                flipped: 1,
                pairs: 1
            }
        );
        // position 0 got b=3 and a=4; position 1 got a=3 and b=2
        assert_eq!(f.positions.means(), [Some(3.5), Some(2.5)]);
        assert_eq!(f.mean_max_spread, Some(1.0));
        assert_eq!(f.max_spread_counts.get("1.00"), Some(&1));
    }

    #[test]
    fn rm_bench_pairwise_compare_modes_and_a_failed_unit() {
        let item = |domain: &str| RmBenchItem {
            id: serde_json::Value::Null,
            prompt: "q".into(),
            chosen: ["a".into(), "b".into(), "c".into()],
            rejected: ["d".into(), "e".into(), "f".into()],
            domain: Some(domain.into()),
        };
        let items = Items::RmBench(vec![item("chat"), item("math")]);
        let mut units = Vec::new();
        let mut answers = Vec::new();
        for it in 0..2 {
            for i in 0..3 {
                for j in 0..3 {
                    units.push(unit(it, Some((i, j)), 0, vec![0, 1]));
                    let (c, r) = (chosen_name(i), rejected_name(j));
                    // ties everywhere, chosen ranked first
                    answers.push(answer(&[(&c, 3.0), (&r, 3.0)], &[&c, &r]));
                }
            }
        }
        let f = figures(&items, &units, &answers, Compare::Scores);
        let rb = f.rm_bench.unwrap();
        assert_eq!(rb.flat["total_avg_acc"], 0.0);
        let f = figures(&items, &units, &answers, Compare::Ranking);
        let rb = f.rm_bench.unwrap();
        assert_eq!(rb.flat["total_avg_acc"], 1.0);
        assert_eq!(f.items_scored, 2);
        answers[9] = None; // item 1 (math), pair (0,0)
        let f = figures(&items, &units, &answers, Compare::Ranking);
        assert_eq!(f.items_scored, 1);
        let rb = f.rm_bench.unwrap();
        assert_eq!(
            rb.flat.keys().collect::<Vec<_>>(),
            [
                "chat",
                "hard_acc",
                "normal_acc",
                "easy_acc",
                "total_avg_acc"
            ]
        );
    }
}
