//! Judging one request under several presented orders ([`Client::judge_ensemble`]) to
//! measure a judge's position bias and average it out.
//!
//! The reference masks every request of N responses with the same permutation, so a
//! judge that favours, say, the first response shown biases every score the same way.
//! An ensemble judges the request K times, each under a different [`Masking::Seeded`]
//! order (seeds chosen deterministically by [`permutation_seeds`]), and aggregates with
//! [`crate::bias::aggregate`]: mean score, ranking by mean with Borda tie-break, flip
//! rate and score spread.
//!
//! **Failures.** If any permutation fails, the whole ensemble fails with that
//! permutation's error ([`EnsembleError::Judge`]): a mean over fewer orders than asked
//! would silently carry more position bias, which for an RL reward is worse than an
//! error. Judge the orders yourself with [`Client::judge_masked`] to keep partial results.

use futures::future::try_join_all;
use indexmap::IndexMap;
use serde::Serialize;

use crate::bias::{Aggregate, Flips, Vote, aggregate};
use crate::client::{Client, Judged};
use crate::error::JudgeError;
use crate::render::{JudgeRequest, Masking, permutation, positions};

/// The largest number of permutations an ensemble accepts.
///
/// ```
/// assert_eq!(rewardanything_client::MAX_PERMUTATIONS, 1024);
/// ```
pub const MAX_PERMUTATIONS: usize = 1024;

/// Why an ensemble gave no result.
///
/// ```
/// let e = rewardanything_client::EnsembleError::NoPermutations;
/// assert!(e.to_string().contains("at least 1"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnsembleError {
    /// `k` was 0.
    #[error("the number of permutations must be at least 1")]
    NoPermutations,
    /// `k` was above [`MAX_PERMUTATIONS`].
    #[error("{0} permutations asked; at most {MAX_PERMUTATIONS} are allowed")]
    TooManyPermutations(usize),
    /// One permutation's judgment failed (the others were abandoned).
    #[error("permutation {index} (masking seeded:{seed}) failed: {source}")]
    Judge {
        /// Which permutation (0-based).
        index: usize,
        /// Its masking seed.
        seed: u64,
        /// The judgment's error.
        #[source]
        source: JudgeError,
    },
}

/// One permutation's judgment.
///
/// ```no_run
/// # async fn f(client: rewardanything_client::Client, r: rewardanything_client::JudgeRequest) {
/// let e = client.judge_ensemble(&r, 2).await.unwrap();
/// let first = &e.judgments[0];
/// println!("seed {} shown at {:?}: {:?}", first.seed, first.positions, first.judged.judgment.scores);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PermutationJudgment {
    /// The masking seed ([`Masking::Seeded`]).
    pub seed: u64,
    /// Where each response (in the caller's order) was shown, 0 = first.
    pub positions: Vec<usize>,
    /// The judgment under that order.
    pub judged: Judged,
}

/// A request judged under several orders, aggregated.
///
/// ```no_run
/// use rewardanything_client::{Client, JudgeRequest};
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder().endpoint("http://127.0.0.1:8000/v1").build()?;
/// let request = JudgeRequest::new("Prefer correct answers.", "2+2?")
///     .response("a", "4")
///     .response("b", "5");
/// let e = client.judge_ensemble(&request, 2).await?;
/// println!("mean {:?}, best first {:?}", e.scores, e.ranking);
/// println!("flip rate {:?}, largest spread {}", e.flips.rate(), e.max_spread());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Ensemble {
    /// Mean score of each response, in the caller's order.
    pub scores: IndexMap<String, f64>,
    /// Responses by mean score, best first; ties by Borda count, then the caller's order.
    pub ranking: Vec<String>,
    /// Borda points of each response over the permutations.
    pub borda: IndexMap<String, f64>,
    /// Response pairs whose order changed between permutations.
    pub flips: Flips,
    /// Per response, highest minus lowest score over the permutations.
    pub spread: IndexMap<String, f64>,
    /// Each permutation's judgment, in seed order.
    pub judgments: Vec<PermutationJudgment>,
}

impl Ensemble {
    /// The largest score spread of any response.
    ///
    /// ```no_run
    /// # async fn f(client: rewardanything_client::Client, r: rewardanything_client::JudgeRequest) {
    /// let spread = client.judge_ensemble(&r, 4).await.unwrap().max_spread();
    /// # }
    /// ```
    pub fn max_spread(&self) -> f64 {
        self.spread.values().copied().fold(0.0, f64::max)
    }
}

/// `n!`, saturated (only compared with small counts).
fn factorial(n: usize) -> usize {
    (2..=n)
        .try_fold(1usize, |acc, k| acc.checked_mul(k))
        .unwrap_or(usize::MAX)
}

/// The masking seeds of an ensemble of `k` orders: from `base` upwards, each seed whose
/// order ([`permutation`]) was not already chosen, until `k` seeds or every distinct
/// order of the request's responses (`n!`) are taken. So two responses give at most
/// two orders (both), whatever `k`. The search is bounded (`64·k + 1024` seeds); an
/// unmasked request has one order, hence one seed.
///
/// ```
/// use rewardanything_client::{permutation_seeds, positions, JudgeRequest, Masking};
/// let req = JudgeRequest::new("p", "q").response("a", "x").response("b", "y");
/// let seeds = permutation_seeds(&req, 5, 0);
/// assert_eq!(seeds.len(), 2);
/// let orders: Vec<_> = seeds.iter().map(|&s| positions(&req, Masking::Seeded(s))).collect();
/// assert_ne!(orders[0], orders[1]);
/// ```
pub fn permutation_seeds(request: &JudgeRequest, k: usize, base: u64) -> Vec<u64> {
    let n = request.responses.len();
    let want = k.min(factorial(n));
    if !request.mask_responses {
        return vec![base];
    }
    let mut seen: Vec<Vec<usize>> = Vec::with_capacity(want);
    let mut seeds = Vec::with_capacity(want);
    let tries = want.saturating_mul(64).saturating_add(1024) as u64;
    for step in 0..tries {
        if seeds.len() >= want {
            break;
        }
        let seed = base.wrapping_add(step);
        let order = permutation(request, Masking::Seeded(seed)).unwrap_or_default();
        if !seen.contains(&order) {
            seen.push(order);
            seeds.push(seed);
        }
    }
    seeds
}

impl Client {
    /// Judges `request` under up to `k` distinct seeded orders (see
    /// [`permutation_seeds`]; the seeds start at the client's `Masking::Seeded` seed, else
    /// 0), concurrently, and aggregates them (see [`Ensemble`]). The orders are always
    /// [`Masking::Seeded`], whatever the client's masking; a request with
    /// `mask_responses: false` has only its own order, hence one judgment. Any failed
    /// permutation fails the ensemble (see [`Ensemble`](crate::Ensemble)).
    ///
    /// ```no_run
    /// # async fn f(client: rewardanything_client::Client, r: rewardanything_client::JudgeRequest) {
    /// let e = client.judge_ensemble(&r, 4).await.unwrap();
    /// assert!(e.judgments.len() <= 4);
    /// # }
    /// ```
    pub async fn judge_ensemble(
        &self,
        request: &JudgeRequest,
        k: usize,
    ) -> Result<Ensemble, EnsembleError> {
        if k == 0 {
            return Err(EnsembleError::NoPermutations);
        }
        if k > MAX_PERMUTATIONS {
            return Err(EnsembleError::TooManyPermutations(k));
        }
        let base = match self.masking() {
            Masking::Seeded(s) => s,
            _ => 0,
        };
        let seeds = permutation_seeds(request, k, base);
        let calls = seeds.iter().enumerate().map(|(index, &seed)| async move {
            let masking = Masking::Seeded(seed);
            match self.judge_masked(request, masking).await {
                Ok(judged) => Ok(PermutationJudgment {
                    seed,
                    positions: positions(request, masking),
                    judged,
                }),
                Err(source) => Err(EnsembleError::Judge {
                    index,
                    seed,
                    source,
                }),
            }
        });
        let judgments = try_join_all(calls).await?;
        Ok(ensemble_of(request, judgments))
    }
}

/// Aggregates the permutations' judgments.
fn ensemble_of(request: &JudgeRequest, judgments: Vec<PermutationJudgment>) -> Ensemble {
    let names: Vec<&str> = request.responses.keys().map(String::as_str).collect();
    let votes: Vec<Vote<'_>> = judgments
        .iter()
        .map(|j| Vote::new(&j.judged.judgment.scores, &j.judged.judgment.ranking))
        .collect();
    let Aggregate {
        scores,
        ranking,
        borda,
        flips,
        spread,
        ..
    } = aggregate(&names, &votes);
    Ensemble {
        scores,
        ranking,
        borda,
        flips,
        spread,
        judgments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_give_distinct_orders_up_to_n_factorial() {
        let req = JudgeRequest::new("p", "q")
            .response("a", "1")
            .response("b", "2")
            .response("c", "3");
        let seeds = permutation_seeds(&req, 100, 7);
        assert_eq!(seeds.len(), 6);
        let mut orders: Vec<_> = seeds
            .iter()
            .map(|&s| positions(&req, Masking::Seeded(s)))
            .collect();
        orders.sort();
        orders.dedup();
        assert_eq!(orders.len(), 6);
        // deterministic
        assert_eq!(seeds, permutation_seeds(&req, 100, 7));
        assert_eq!(permutation_seeds(&req, 2, 7), seeds[..2]);
    }

    #[test]
    fn unmasked_or_single_response_has_one_order() {
        let req = JudgeRequest::new("p", "q").response("a", "1");
        assert_eq!(permutation_seeds(&req, 8, 0).len(), 1);
        let req = JudgeRequest::new("p", "q")
            .response("a", "1")
            .response("b", "2")
            .mask_responses(false);
        assert_eq!(permutation_seeds(&req, 8, 3), [3]);
    }

    #[test]
    fn factorial_saturates() {
        assert_eq!(factorial(0), 1);
        assert_eq!(factorial(3), 6);
        assert_eq!(factorial(100), usize::MAX);
    }
}
