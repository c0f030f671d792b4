//! Ranked-data metrics (RABench-style): per item, the library's
//! [`pairwise_accuracy`], [`kendall_tau`] (τ-b) and [`ndcg`] against the gold
//! relevance, and whether the predicted best is a gold best; averaged over the items
//! where each is defined.

use indexmap::IndexMap;
use rewardanything_client::metrics::{kendall_tau, ndcg, pairwise_accuracy};
use serde::Serialize;

/// Running means of the four metrics.
#[derive(Debug, Clone, Default)]
pub struct RankedTally {
    pairwise: Mean,
    tau: Mean,
    ndcg: Mean,
    top1: Mean,
    items: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Mean {
    sum: f64,
    n: u64,
}

impl Mean {
    fn add(&mut self, v: Option<f64>) {
        if let Some(v) = v {
            self.sum += v;
            self.n += 1;
        }
    }

    fn get(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// The `"ranked"` object of `summary.json`: means over items (`null` where no item
/// defines the metric) and how many items each mean is over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankedSummary {
    pub pairwise_accuracy: Option<f64>,
    pub kendall_tau: Option<f64>,
    pub ndcg: Option<f64>,
    pub top1_accuracy: Option<f64>,
    pub items: u64,
    pub items_with_pairwise_accuracy: u64,
    pub items_with_kendall_tau: u64,
    pub items_with_ndcg: u64,
}

impl RankedTally {
    /// Adds one item: predicted scores and ranking against gold relevance (higher is
    /// better). Top-1 is right when the predicted best has the highest gold relevance
    /// (any of several tied best counts).
    pub fn add(
        &mut self,
        scores: &IndexMap<String, f64>,
        ranking: &[String],
        gold: &IndexMap<String, f64>,
    ) {
        self.items += 1;
        self.pairwise.add(pairwise_accuracy(scores, gold));
        self.tau.add(kendall_tau(scores, gold));
        self.ndcg.add(ndcg(ranking, gold, None));
        let best_gold = gold.values().copied().fold(f64::NEG_INFINITY, f64::max);
        let top1 = ranking
            .first()
            .and_then(|name| gold.get(name))
            .map(|&g| if g == best_gold { 1.0 } else { 0.0 });
        self.top1.add(Some(top1.unwrap_or(0.0)));
    }

    pub fn summary(&self) -> RankedSummary {
        RankedSummary {
            pairwise_accuracy: self.pairwise.get(),
            kendall_tau: self.tau.get(),
            ndcg: self.ndcg.get(),
            top1_accuracy: self.top1.get(),
            items: self.items,
            items_with_pairwise_accuracy: self.pairwise.n,
            items_with_kendall_tau: self.tau.n,
            items_with_ndcg: self.ndcg.n,
        }
    }
}

/// Gold relevance from a best-to-worst ranking: the best of `n` gets `n`, the worst 1
/// (positive, so NDCG has gain everywhere).
pub fn relevance_from_ranking(ranking: &[String]) -> IndexMap<String, f64> {
    let n = ranking.len();
    ranking
        .iter()
        .enumerate()
        .map(|(i, name)| (name.clone(), (n - i) as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, f64)]) -> IndexMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn two_items_by_hand() {
        let mut t = RankedTally::default();
        // item 1: perfect.
        let gold = relevance_from_ranking(&names(&["a", "b", "c"]));
        assert_eq!(gold, map(&[("a", 3.0), ("b", 2.0), ("c", 1.0)]));
        t.add(
            &map(&[("a", 5.0), ("b", 3.0), ("c", 1.0)]),
            &names(&["a", "b", "c"]),
            &gold,
        );
        // item 2: reversed pair of two.
        let gold2 = map(&[("x", 1.0), ("y", 4.0)]);
        t.add(&map(&[("x", 4.0), ("y", 2.0)]), &names(&["x", "y"]), &gold2);
        let s = t.summary();
        assert_eq!(s.items, 2);
        assert_eq!(s.pairwise_accuracy, Some(0.5));
        assert_eq!(s.kendall_tau, Some(0.0)); // (1 + -1) / 2
        assert_eq!(s.top1_accuracy, Some(0.5));
        // ndcg item 2: dcg = 1/log2(2) + 4/log2(3); idcg = 4 + 1/log2(3)
        let n2 = (1.0 + 4.0 / 3f64.log2()) / (4.0 + 1.0 / 3f64.log2());
        assert_eq!(s.ndcg, Some((1.0 + n2) / 2.0));
    }

    #[test]
    fn undefined_metrics_are_not_averaged() {
        let mut t = RankedTally::default();
        // all gold equal: no strictly ordered pair, tau undefined.
        let gold = map(&[("a", 2.0), ("b", 2.0)]);
        t.add(&map(&[("a", 1.0), ("b", 3.0)]), &names(&["b", "a"]), &gold);
        let s = t.summary();
        assert_eq!(s.pairwise_accuracy, None);
        assert_eq!(s.kendall_tau, None);
        assert_eq!(s.items_with_ndcg, 1);
        assert_eq!(s.top1_accuracy, Some(1.0));
    }
}
