//! Position bias: aggregating judgments of one request made under different presented
//! orders (mean score, Borda tie-break), how often they disagree (flip rate, score
//! spread), and the mean score by presented position.
//!
//! Pure functions over scores and rankings, so a caller can aggregate judgments read
//! back from disk exactly as [`Client::judge_ensemble`](crate::Client::judge_ensemble)
//! does.
//!
//! ```
//! use indexmap::IndexMap;
//! use rewardanything_client::{aggregate, Vote};
//! let s1: IndexMap<String, f64> = [("a".into(), 4.0), ("b".into(), 3.0)].into();
//! let s2: IndexMap<String, f64> = [("a".into(), 3.0), ("b".into(), 4.0)].into();
//! let (r1, r2) = (vec!["a".to_string(), "b".to_string()], vec!["b".to_string(), "a".to_string()]);
//! let agg = aggregate(&["a", "b"], &[Vote::new(&s1, &r1), Vote::new(&s2, &r2)]);
//! assert_eq!(agg.scores["a"], 3.5);
//! assert_eq!(agg.flips.rate(), Some(1.0)); // the only pair changed order
//! assert_eq!(agg.spread["b"], 1.0);
//! ```

use std::cmp::Ordering;

use indexmap::IndexMap;
use serde::Serialize;

/// One judgment as the aggregation sees it: scores by name and the best-to-worst ranking.
///
/// ```
/// use indexmap::IndexMap;
/// let scores: IndexMap<String, f64> = [("a".into(), 5.0)].into();
/// let ranking = vec!["a".to_string()];
/// let vote = rewardanything_client::Vote::new(&scores, &ranking);
/// assert_eq!(vote.ranking.len(), 1);
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Vote<'a> {
    /// Name → score.
    pub scores: &'a IndexMap<String, f64>,
    /// Names from best to worst.
    pub ranking: &'a [String],
}

impl<'a> Vote<'a> {
    /// A vote from a judgment's scores and ranking.
    ///
    /// ```
    /// # use indexmap::IndexMap;
    /// let s: IndexMap<String, f64> = IndexMap::new();
    /// let v = rewardanything_client::Vote::new(&s, &[]);
    /// assert!(v.scores.is_empty());
    /// ```
    pub fn new(scores: &'a IndexMap<String, f64>, ranking: &'a [String]) -> Self {
        Vote { scores, ranking }
    }
}

/// Pairs of responses whose order changed between judgments, out of all pairs.
///
/// ```
/// let f = rewardanything_client::Flips { flipped: 1, pairs: 4 };
/// assert_eq!(f.rate(), Some(0.25));
/// assert_eq!(rewardanything_client::Flips::default().rate(), None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Flips {
    /// Pairs whose order (`>`, `=` or `<` of their scores) was not the same in every
    /// judgment.
    pub flipped: u64,
    /// Pairs compared (only counted with at least two judgments).
    pub pairs: u64,
}

impl Flips {
    /// `flipped / pairs`, or `None` when no pair was compared.
    ///
    /// ```
    /// use rewardanything_client::Flips;
    /// assert_eq!(Flips { flipped: 3, pairs: 4 }.rate(), Some(0.75));
    /// ```
    pub fn rate(&self) -> Option<f64> {
        (self.pairs > 0).then(|| self.flipped as f64 / self.pairs as f64)
    }

    /// Adds another count (e.g. to pool requests).
    ///
    /// ```
    /// use rewardanything_client::Flips;
    /// let mut f = Flips { flipped: 1, pairs: 1 };
    /// f.add(Flips { flipped: 0, pairs: 3 });
    /// assert_eq!(f, Flips { flipped: 1, pairs: 4 });
    /// ```
    pub fn add(&mut self, other: Flips) {
        self.flipped += other.flipped;
        self.pairs += other.pairs;
    }
}

/// Several judgments of one request, aggregated.
///
/// ```
/// # use indexmap::IndexMap;
/// use rewardanything_client::{aggregate, Vote};
/// let s: IndexMap<String, f64> = [("a".into(), 2.0), ("b".into(), 2.0)].into();
/// let r = vec!["b".to_string(), "a".to_string()];
/// let agg = aggregate(&["a", "b"], &[Vote::new(&s, &r)]);
/// assert_eq!(agg.ranking, ["b", "a"]); // equal means: the Borda count decides
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Aggregate {
    /// Mean score of each name, in the order of the names given.
    pub scores: IndexMap<String, f64>,
    /// Names by mean score, best first; equal means by Borda count (a name ranked `r`-th
    /// of `n`, 0-based, earns `n − 1 − r` points per judgment), then in the names' order.
    pub ranking: Vec<String>,
    /// Borda points of each name, summed over the judgments.
    pub borda: IndexMap<String, f64>,
    /// Pairs whose order changed between judgments.
    pub flips: Flips,
    /// Per name, the highest score minus the lowest over the judgments.
    pub spread: IndexMap<String, f64>,
}

impl Aggregate {
    /// The largest [`spread`](Self::spread) of any name (0 with no names).
    ///
    /// ```
    /// # use indexmap::IndexMap;
    /// use rewardanything_client::{aggregate, Vote};
    /// let s1: IndexMap<String, f64> = [("a".into(), 1.0)].into();
    /// let s2: IndexMap<String, f64> = [("a".into(), 4.0)].into();
    /// let r = vec!["a".to_string()];
    /// assert_eq!(aggregate(&["a"], &[Vote::new(&s1, &r), Vote::new(&s2, &r)]).max_spread(), 3.0);
    /// ```
    pub fn max_spread(&self) -> f64 {
        self.spread.values().copied().fold(0.0, f64::max)
    }
}

/// Aggregates judgments of the same request's `names` (see [`Aggregate`]). A name a
/// judgment does not score is left out of that judgment's mean, spread and pairs (the
/// client's judgments always score every name).
///
/// ```
/// # use indexmap::IndexMap;
/// use rewardanything_client::{aggregate, Vote};
/// let s: IndexMap<String, f64> = [("a".into(), 5.0), ("b".into(), 1.0)].into();
/// let r = vec!["a".to_string(), "b".to_string()];
/// let agg = aggregate(&["a", "b"], &[Vote::new(&s, &r), Vote::new(&s, &r)]);
/// assert_eq!(agg.flips.rate(), Some(0.0));
/// ```
pub fn aggregate(names: &[&str], votes: &[Vote<'_>]) -> Aggregate {
    let mut scores = IndexMap::with_capacity(names.len());
    let mut spread = IndexMap::with_capacity(names.len());
    let mut borda: IndexMap<String, f64> = names.iter().map(|n| (n.to_string(), 0.0)).collect();
    for name in names {
        let values: Vec<f64> = votes
            .iter()
            .filter_map(|v| v.scores.get(*name).copied())
            .collect();
        let mean = if values.is_empty() {
            f64::NAN
        } else {
            values.iter().sum::<f64>() / values.len() as f64
        };
        let (lo, hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        scores.insert(name.to_string(), mean);
        spread.insert(
            name.to_string(),
            if values.is_empty() { 0.0 } else { hi - lo },
        );
    }
    for vote in votes {
        let n = vote.ranking.len();
        for (r, name) in vote.ranking.iter().enumerate() {
            if let Some(points) = borda.get_mut(name) {
                *points += (n - 1 - r) as f64;
            }
        }
    }
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| {
        let by_mean = scores[b].partial_cmp(&scores[a]).unwrap_or(Ordering::Equal);
        by_mean
            .then_with(|| borda[b].total_cmp(&borda[a]))
            .then(a.cmp(&b))
    });
    let ranking = order.into_iter().map(|i| names[i].to_string()).collect();
    Aggregate {
        scores,
        ranking,
        borda,
        flips: flips(names, votes),
        spread,
    }
}

/// Counts the pairs of `names` whose order differs between votes.
fn flips(names: &[&str], votes: &[Vote<'_>]) -> Flips {
    let mut out = Flips::default();
    if votes.len() < 2 {
        return out;
    }
    for i in 0..names.len() {
        for j in i + 1..names.len() {
            let orders: Vec<Ordering> = votes
                .iter()
                .filter_map(|v| {
                    let a = v.scores.get(names[i])?;
                    let b = v.scores.get(names[j])?;
                    a.partial_cmp(b)
                })
                .collect();
            if orders.len() < 2 {
                continue;
            }
            out.pairs += 1;
            if orders.iter().any(|o| *o != orders[0]) {
                out.flipped += 1;
            }
        }
    }
    out
}

/// Mean score by presented position (0 = shown first, as `model-1`), accumulated over
/// judgments.
///
/// ```
/// use rewardanything_client::PositionTable;
/// let mut t = PositionTable::default();
/// t.add(&[1, 0], &[3.0, 5.0]); // the second response was shown first and scored 5
/// t.add(&[0, 1], &[4.0, 2.0]);
/// assert_eq!(t.means(), [Some(4.5), Some(2.5)]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PositionTable {
    /// Sum of the scores given at each position.
    pub sums: Vec<f64>,
    /// Scores counted at each position.
    pub counts: Vec<u64>,
}

impl PositionTable {
    /// Adds one judgment: `positions[i]` is where response `i` was shown, `scores[i]` its
    /// score. Extra entries of the longer slice are ignored.
    ///
    /// ```
    /// let mut t = rewardanything_client::PositionTable::default();
    /// t.add(&[0, 1], &[5.0, 1.0]);
    /// assert_eq!(t.counts, [1, 1]);
    /// ```
    pub fn add(&mut self, positions: &[usize], scores: &[f64]) {
        for (&p, &s) in positions.iter().zip(scores) {
            if self.sums.len() <= p {
                self.sums.resize(p + 1, 0.0);
                self.counts.resize(p + 1, 0);
            }
            self.sums[p] += s;
            self.counts[p] += 1;
        }
    }

    /// The mean score at each position (`None` where nothing was counted).
    ///
    /// ```
    /// let mut t = rewardanything_client::PositionTable::default();
    /// t.add(&[1], &[4.0]);
    /// assert_eq!(t.means(), [None, Some(4.0)]);
    /// ```
    pub fn means(&self) -> Vec<Option<f64>> {
        self.sums
            .iter()
            .zip(&self.counts)
            .map(|(s, &c)| (c > 0).then(|| s / c as f64))
            .collect()
    }
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
    fn mean_then_borda_then_input_order() {
        let s1 = map(&[("a", 3.0), ("b", 3.0), ("c", 1.0)]);
        let s2 = map(&[("a", 3.0), ("b", 3.0), ("c", 5.0)]);
        let r1 = names(&["b", "a", "c"]);
        let r2 = names(&["c", "b", "a"]);
        let agg = aggregate(
            &["a", "b", "c"],
            &[Vote::new(&s1, &r1), Vote::new(&s2, &r2)],
        );
        assert_eq!(agg.scores, map(&[("a", 3.0), ("b", 3.0), ("c", 3.0)]));
        // borda: a 1+0, b 2+1, c 0+2
        assert_eq!(agg.borda, map(&[("a", 1.0), ("b", 3.0), ("c", 2.0)]));
        assert_eq!(agg.ranking, ["b", "c", "a"]);
        // pairs: (a,b) = in both: no flip; (a,c) > then <: flip; (b,c) same: flip
        assert_eq!(
            agg.flips,
            Flips {
                flipped: 2,
                pairs: 3
            }
        );
        assert_eq!(agg.spread["c"], 4.0);
        assert_eq!(agg.spread["a"], 0.0);
    }

    #[test]
    fn a_tie_against_an_order_is_a_flip_and_one_vote_has_no_pairs() {
        let s1 = map(&[("a", 3.0), ("b", 3.0)]);
        let s2 = map(&[("a", 4.0), ("b", 3.0)]);
        let r = names(&["a", "b"]);
        let agg = aggregate(&["a", "b"], &[Vote::new(&s1, &r), Vote::new(&s2, &r)]);
        assert_eq!(agg.flips.rate(), Some(1.0));
        let one = aggregate(&["a", "b"], &[Vote::new(&s1, &r)]);
        assert_eq!(one.flips, Flips::default());
        assert_eq!(one.flips.rate(), None);
    }

    #[test]
    fn equal_everything_keeps_input_order() {
        let s = map(&[("x", 2.0), ("y", 2.0)]);
        let agg = aggregate(&["y", "x"], &[Vote::new(&s, &[])]);
        assert_eq!(agg.ranking, ["y", "x"]);
    }

    #[test]
    fn position_table_grows_and_means() {
        let mut t = PositionTable::default();
        t.add(&[2], &[5.0]);
        assert_eq!(t.means(), [None, None, Some(5.0)]);
    }
}
