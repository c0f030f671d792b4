//! How `/get_reward` turns a judge's 1–5 score into a reward: a setting of the gateway
//! (`--reward`, `--failure-reward`), kept apart from the route that applies it.

use rewardanything_client::{Normalization, normalize};

/// How a 1–5 score becomes `rewards[i]` (`--reward`).
///
/// ```
/// use ra_gateway::RewardScale;
/// assert_eq!(RewardScale::Raw.reward(4.0), 4.0);
/// assert_eq!(RewardScale::Unit.reward(4.0), 0.75);
/// assert_eq!(RewardScale::Centered.reward(4.0), 0.5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RewardScale {
    /// The score itself, 1 to 5 (default).
    #[default]
    Raw,
    /// `(score - 1) / 4`, in `[0, 1]` ([`Normalization::Unit`]).
    Unit,
    /// `(score - 3) / 2`, in `[-1, 1]` ([`Normalization::Centered`]): a fixed map, so a
    /// reward never depends on which rollouts happened to share its call. Group-mean
    /// centering ([`Normalization::Group`]) is deliberately not offered: coalesced groups
    /// are whoever arrived together, and a rollout judged alone has no group.
    Centered,
}

impl RewardScale {
    /// The client library's normalization this scale is.
    ///
    /// ```
    /// use rewardanything_client::Normalization;
    /// assert_eq!(ra_gateway::RewardScale::Centered.normalization(), Normalization::Centered);
    /// ```
    pub fn normalization(self) -> Normalization {
        match self {
            RewardScale::Raw => Normalization::Raw,
            RewardScale::Unit => Normalization::Unit,
            RewardScale::Centered => Normalization::Centered,
        }
    }

    /// The reward of one score.
    ///
    /// ```
    /// assert_eq!(ra_gateway::RewardScale::Unit.reward(1.0), 0.0);
    /// ```
    pub fn reward(self, score: f64) -> f64 {
        // Every scale is a fixed map, defined on a single score.
        normalize(&[score], self.normalization())
            .ok()
            .and_then(|r| r.first().copied())
            .unwrap_or(f64::NAN)
    }
}

/// A failure reward that is not a finite number (JSON has no NaN or infinity).
///
/// ```
/// let e = ra_gateway::GatewayConfig::default().failure_reward(f64::NAN).unwrap_err();
/// assert!(e.to_string().contains("finite"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("the failure reward must be a finite number (JSON has no NaN or infinity), got {0}")]
pub struct NonFiniteReward(pub f64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_match_the_library() {
        for s in [1.0, 2.0, 3.0, 4.0, 5.0] {
            assert_eq!(RewardScale::Raw.reward(s), s);
            assert_eq!(RewardScale::Unit.reward(s), (s - 1.0) / 4.0);
            assert_eq!(RewardScale::Centered.reward(s), (s - 3.0) / 2.0);
        }
    }
}
