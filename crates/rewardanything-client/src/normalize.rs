//! How raw 1–5 scores become rewards ([`Normalization`], [`normalize`]) and what a
//! failed judgment may pay. Plain maps with no client behind them, so that the
//! environment (`env`) and the reward loops (`reward`) both build on them.

use serde::{Deserialize, Serialize};

/// How raw 1–5 scores become rewards. Each name means one map everywhere (this
/// library, `ra gateway --reward`, the Python package's `normalize`/`RA_NORMALIZE`).
///
/// `Midpoint` was renamed [`Centered`](Self::Centered) (the same fixed `(s - 3) / 2`);
/// what used to be `Centered` (unit minus the group's mean) is now
/// [`Group`](Self::Group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Normalization {
    /// The judge's score, 1 to 5.
    Raw,
    /// `(score - 1) / 4`, in `[0, 1]` (default).
    #[default]
    Unit,
    /// `(score - 3) / 2`, in `[-1, 1]`: the scale's midpoint is 0. A fixed map: a
    /// response's reward never depends on which other responses shared its call.
    Centered,
    /// `(score - 1) / 4` minus the group's mean of that, so a group sums to 0. Needs a
    /// group of at least two responses: a group of one is refused
    /// ([`NormalizeError::NoGroup`]) rather than given a constant 0.
    Group,
}

impl Normalization {
    /// Every normalization's name, as parsed and printed: `raw`, `unit`, `centered`,
    /// `group`.
    pub const NAMES: [&'static str; 4] = ["raw", "unit", "centered", "group"];

    /// The name (as in `RA_NORMALIZE` and the serde form).
    ///
    /// ```
    /// use rewardanything_client::Normalization;
    /// assert_eq!(Normalization::Group.name(), "group");
    /// assert_eq!("centered".parse::<Normalization>().unwrap(), Normalization::Centered);
    /// assert!("midpoint".parse::<Normalization>().is_err());
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Normalization::Raw => "raw",
            Normalization::Unit => "unit",
            Normalization::Centered => "centered",
            Normalization::Group => "group",
        }
    }

    /// The lowest reward a judged response can get: the map of a score of 1 (raw 1,
    /// unit 0, centered -1); for [`Group`](Self::Group) -1, which its lowest tends to as
    /// the group grows.
    ///
    /// ```
    /// use rewardanything_client::Normalization;
    /// assert_eq!(Normalization::Raw.lowest_reward(), 1.0);
    /// assert_eq!(Normalization::Group.lowest_reward(), -1.0);
    /// ```
    pub fn lowest_reward(self) -> f64 {
        match self {
            Normalization::Group => -1.0,
            // A fixed map: defined on a single score, so `normalize` cannot refuse it.
            fixed => normalize(&[1.0], fixed)
                .ok()
                .and_then(|r| r.first().copied())
                .unwrap_or(-1.0),
        }
    }

    /// The reward of a failed judgment when none is set: failing never pays, so never
    /// above the lowest judged reward (0.0, or that lowest reward when it is below 0:
    /// -1.0 for `centered` and `group`). A policy then never earns more by making its
    /// judgment fail (an injected chat turn, an answer that breaks the judge's JSON)
    /// than by its worst answer.
    ///
    /// ```
    /// use rewardanything_client::Normalization;
    /// assert_eq!(Normalization::Unit.default_failure_reward(), 0.0);
    /// assert_eq!(Normalization::Centered.default_failure_reward(), -1.0);
    /// ```
    pub fn default_failure_reward(self) -> f64 {
        self.lowest_reward().min(0.0)
    }

    /// Whether a failure reward pays more than the worst judged response (then a policy
    /// can learn to fail its judgments); `setting` names where it was set, for the
    /// warning.
    ///
    /// ```
    /// use rewardanything_client::Normalization;
    /// let w = Normalization::Centered.failure_pays(0.0, "--failure-reward").unwrap();
    /// assert!(w.to_string().starts_with("--failure-reward=0.0 is above"));
    /// assert!(Normalization::Centered.failure_pays(-1.0, "--failure-reward").is_none());
    /// ```
    pub fn failure_pays(self, failure_reward: f64, setting: &str) -> Option<FailurePays> {
        (failure_reward > self.lowest_reward()).then(|| FailurePays {
            setting: setting.to_string(),
            failure_reward,
            normalization: self,
        })
    }
}

/// A failure reward above the lowest reward of a judged response
/// ([`Normalization::failure_pays`]); its `Display` is the warning to give.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FailurePays {
    /// Where the failure reward was set (`--failure-reward`, `RA_FAILURE_REWARD`).
    pub setting: String,
    /// The failure reward.
    pub failure_reward: f64,
    /// The normalization it was checked against.
    pub normalization: Normalization,
}

impl std::fmt::Display for FailurePays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.normalization;
        write!(
            f,
            "{}={:?} is above the lowest reward of a judged response under {:?} ({:?}): a \
             policy can earn more by making its judgment fail than by its worst answer; use \
             {:?} or less",
            self.setting,
            self.failure_reward,
            n.name(),
            n.lowest_reward(),
            n.default_failure_reward()
        )
    }
}

impl std::fmt::Display for Normalization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A normalization name that is not one of [`Normalization::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown normalization {0:?}: expected raw, unit, centered (the fixed (s-3)/2) or group (unit minus the group's mean)"
)]
pub struct UnknownNormalization(pub String);

impl std::str::FromStr for Normalization {
    type Err = UnknownNormalization;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Normalization::Raw,
            Normalization::Unit,
            Normalization::Centered,
            Normalization::Group,
        ]
        .into_iter()
        .find(|n| n.name() == s)
        .ok_or_else(|| UnknownNormalization(s.to_string()))
    }
}

/// A normalization that cannot apply to the scores given.
///
/// ```
/// use rewardanything_client::{normalize, Normalization, NormalizeError};
/// let e = normalize(&[4.0], Normalization::Group).unwrap_err();
/// assert_eq!(e, NormalizeError::NoGroup { responses: 1 });
/// assert!(e.to_string().contains("group"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NormalizeError {
    /// [`Normalization::Group`] on fewer than two responses: the group mean of one
    /// response is itself, so every reward would be 0 whatever the score.
    #[error(
        "normalization `group` (unit score minus the group's mean) needs a group of at least 2 \
         responses judged together, got {responses}: every reward would be 0; use `centered` \
         (the fixed (s-3)/2) or `unit` for single responses"
    )]
    NoGroup {
        /// How many responses there were.
        responses: usize,
    },
}

/// Whether `normalization` applies to a group of `responses` responses:
/// [`Normalization::Group`] needs at least two, the fixed maps any number.
///
/// ```
/// use rewardanything_client::{check_group_size, Normalization};
/// assert!(check_group_size(1, Normalization::Centered).is_ok());
/// assert!(check_group_size(1, Normalization::Group).is_err());
/// assert!(check_group_size(2, Normalization::Group).is_ok());
/// ```
pub fn check_group_size(
    responses: usize,
    normalization: Normalization,
) -> Result<(), NormalizeError> {
    match normalization {
        Normalization::Group if responses < 2 => Err(NormalizeError::NoGroup { responses }),
        _ => Ok(()),
    }
}

/// Applies a [`Normalization`] to the raw 1–5 scores of one group.
///
/// ```
/// use rewardanything_client::{normalize, Normalization};
/// assert_eq!(normalize(&[1.0, 5.0], Normalization::Unit).unwrap(), [0.0, 1.0]);
/// assert_eq!(normalize(&[1.0, 3.0, 4.0], Normalization::Centered).unwrap(), [-1.0, 0.0, 0.5]);
/// assert_eq!(normalize(&[1.0, 5.0], Normalization::Group).unwrap(), [-0.5, 0.5]);
/// assert!(normalize(&[5.0], Normalization::Group).is_err()); // no group: never a constant 0
/// ```
pub fn normalize(raw: &[f64], normalization: Normalization) -> Result<Vec<f64>, NormalizeError> {
    check_group_size(raw.len(), normalization)?;
    let unit = |s: f64| (s - 1.0) / 4.0;
    Ok(match normalization {
        Normalization::Raw => raw.to_vec(),
        Normalization::Unit => raw.iter().map(|&s| unit(s)).collect(),
        Normalization::Centered => raw.iter().map(|&s| (s - 3.0) / 2.0).collect(),
        Normalization::Group => {
            let mean = raw.iter().map(|&s| unit(s)).sum::<f64>() / raw.len() as f64;
            raw.iter().map(|&s| unit(s) - mean).collect()
        }
    })
}
