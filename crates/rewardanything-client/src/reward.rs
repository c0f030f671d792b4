//! Reward helpers for RL loops (PPO, GRPO): one number per response.
//!
//! A GRPO group is scored in *one* listwise call, so the judge compares the responses to
//! each other, as it was trained to. A failed judgment never raises: every response of
//! the group gets the configured failure value (NaN for TRL, which masks NaN rewards; a
//! fixed number plus the `error` flag for veRL-style loops; or `None`).

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::{JudgeError, JudgeErrorKind};
use crate::judgment::{ParseError, ParseErrorKind};
use crate::render::JudgeRequest;

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
    /// use rewardanything_client::reward::Normalization;
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
    /// use rewardanything_client::reward::Normalization;
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
    /// use rewardanything_client::reward::Normalization;
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

/// The reward given when a judgment fails.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnFailure {
    /// `NaN` (default): TRL drops NaN rewards from the loss.
    #[default]
    Nan,
    /// A fixed value, e.g. `0.0`, with [`GroupRewards::error`] set so it can be masked.
    Fixed(f64),
    /// No value (`None`).
    None,
}

impl OnFailure {
    fn value(self) -> Option<f64> {
        match self {
            OnFailure::Nan => Some(f64::NAN),
            OnFailure::Fixed(v) => Some(v),
            OnFailure::None => None,
        }
    }
}

/// Why a group got no rewards: its judgment failed, or its scores could not be
/// normalized as configured.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RewardError {
    /// The judgment failed.
    #[error(transparent)]
    Judge(#[from] JudgeError),
    /// The normalization does not apply to this group (e.g. `group` on one response);
    /// nothing was sent to the judge.
    #[error(transparent)]
    Normalize(#[from] NormalizeError),
}

impl RewardError {
    /// The judgment's error, if that is what failed.
    ///
    /// ```
    /// use rewardanything_client::{RewardError, NormalizeError};
    /// let e = RewardError::Normalize(NormalizeError::NoGroup { responses: 1 });
    /// assert!(e.judge().is_none());
    /// ```
    pub fn judge(&self) -> Option<&JudgeError> {
        match self {
            RewardError::Judge(e) => Some(e),
            RewardError::Normalize(_) => None,
        }
    }
}

/// The rewards of one group, in the order the responses were given.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRewards {
    /// One reward per response; on failure, the [`OnFailure`] value for each.
    pub rewards: Vec<Option<f64>>,
    /// Why the group got no rewards, if it did not.
    #[serde(skip)]
    pub error: Option<RewardError>,
}

impl GroupRewards {
    /// Whether the judgment succeeded.
    ///
    /// ```
    /// let g = rewardanything_client::GroupRewards { rewards: vec![Some(1.0)], error: None };
    /// assert!(g.is_ok());
    /// ```
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// The rewards as plain `f64`, `None` as NaN.
    ///
    /// ```
    /// let g = rewardanything_client::GroupRewards { rewards: vec![None, Some(0.5)], error: None };
    /// let v = g.to_f64();
    /// assert!(v[0].is_nan() && v[1] == 0.5);
    /// ```
    pub fn to_f64(&self) -> Vec<f64> {
        self.rewards.iter().map(|r| r.unwrap_or(f64::NAN)).collect()
    }
}

/// Turns judgments into rewards.
///
/// ```no_run
/// use rewardanything_client::{Client, Rewarder, Normalization, OnFailure};
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder().endpoint("http://127.0.0.1:8000/v1").build()?;
/// let rewarder = Rewarder::new(client).normalization(Normalization::Unit).on_failure(OnFailure::Nan);
/// let group = rewarder
///     .group_rewards("Be concise.", "What is 2+2?", &["4", "It is four, since 2+2=4."])
///     .await;
/// println!("{:?}", group.rewards);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Rewarder {
    client: Client,
    normalization: Normalization,
    on_failure: OnFailure,
}

impl Rewarder {
    /// A rewarder with [`Normalization::Unit`] and [`OnFailure::Nan`].
    pub fn new(client: Client) -> Self {
        Rewarder {
            client,
            normalization: Normalization::default(),
            on_failure: OnFailure::default(),
        }
    }

    /// Sets the normalization.
    pub fn normalization(mut self, normalization: Normalization) -> Self {
        self.normalization = normalization;
        self
    }

    /// Sets the failure value.
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// The reward of a single response (a one-response listwise call). On failure, the
    /// failure value, `OnFailure::None` being NaN here; use
    /// [`reward_flagged`](Self::reward_flagged) to know whether it failed. With
    /// [`Normalization::Group`] it always fails (there is no group): nothing is sent.
    pub async fn reward(&self, principle: &str, prompt: &str, response: &str) -> f64 {
        self.reward_flagged(principle, prompt, response).await.0
    }

    /// [`reward`](Self::reward) plus whether the judgment succeeded (veRL-style loops take
    /// a fixed failure value and mask it out with this flag).
    pub async fn reward_flagged(
        &self,
        principle: &str,
        prompt: &str,
        response: &str,
    ) -> (f64, bool) {
        let group = self.group_rewards(principle, prompt, &[response]).await;
        (group.to_f64()[0], group.is_ok())
    }

    /// Scores a group of responses in one listwise call; one reward per response, in
    /// input order. With [`Normalization::Group`] a group of fewer than two responses
    /// fails with [`NormalizeError::NoGroup`] before anything is sent.
    pub async fn group_rewards<S: AsRef<str>>(
        &self,
        principle: &str,
        prompt: &str,
        responses: &[S],
    ) -> GroupRewards {
        let request = group_request(principle, prompt, responses);
        if let Err(e) = self.check_group(&request) {
            return self.failed(&request, e.into());
        }
        let result = self.client.judge(&request).await;
        self.to_rewards(&request, result)
    }

    /// Whether the normalization applies to a group of this size, before judging it.
    fn check_group(&self, request: &JudgeRequest) -> Result<(), NormalizeError> {
        check_group_size(request.responses.len(), self.normalization)
    }

    fn failed(&self, request: &JudgeRequest, error: RewardError) -> GroupRewards {
        GroupRewards {
            rewards: vec![self.on_failure.value(); request.responses.len()],
            error: Some(error),
        }
    }

    /// Scores many groups concurrently (up to the client's in-flight limit); results in
    /// input order. A group the normalization does not apply to fails alone (see
    /// [`group_rewards`](Self::group_rewards)) and is not sent.
    pub async fn group_rewards_many<I, S>(&self, groups: I) -> Vec<GroupRewards>
    where
        I: IntoIterator<Item = (String, String, Vec<S>)>,
        S: AsRef<str>,
    {
        let requests: Vec<JudgeRequest> = groups
            .into_iter()
            .map(|(principle, prompt, responses)| group_request(&principle, &prompt, &responses))
            .collect();
        let sendable: Vec<JudgeRequest> = requests
            .iter()
            .filter(|r| self.check_group(r).is_ok())
            .cloned()
            .collect();
        let mut results = self
            .client
            .judge_many_ordered(sendable, None)
            .map(|result| result.map(|judged| judged.judgment))
            .collect::<Vec<_>>()
            .await
            .into_iter();
        requests
            .iter()
            .map(|request| match self.check_group(request) {
                Err(e) => self.failed(request, e.into()),
                // One result per request sent, in order.
                Ok(()) => match results.next() {
                    Some(result) => self.to_rewards(request, result),
                    None => self.failed(
                        request,
                        JudgeError::new(JudgeErrorKind::Cancelled, 0).into(),
                    ),
                },
            })
            .collect()
    }

    fn to_rewards(
        &self,
        request: &JudgeRequest,
        result: Result<crate::judgment::Judgment, JudgeError>,
    ) -> GroupRewards {
        // With lenient parse options a response may come back unscored: that is a
        // failed reward, never a NaN that looks like a success.
        let result = result.and_then(|judgment| {
            match request
                .responses
                .keys()
                .find(|n| !judgment.scores.contains_key(*n))
            {
                None => Ok(judgment),
                Some(name) => Err(JudgeError::new(
                    JudgeErrorKind::Parse(ParseError::new(
                        ParseErrorKind::Incomplete,
                        format!("{name:?} has no score"),
                    )),
                    0,
                )),
            }
        });
        let raw: Vec<f64> = match result {
            Ok(judgment) => request
                .responses
                .keys()
                .map(|name| judgment.scores.get(name).copied().unwrap_or(f64::NAN))
                .collect(),
            Err(error) => return self.failed(request, error.into()),
        };
        match normalize(&raw, self.normalization) {
            Ok(rewards) => GroupRewards {
                rewards: rewards.into_iter().map(Some).collect(),
                error: None,
            },
            Err(error) => self.failed(request, error.into()),
        }
    }
}

fn group_request<S: AsRef<str>>(principle: &str, prompt: &str, responses: &[S]) -> JudgeRequest {
    let mut request = JudgeRequest::new(principle, prompt);
    for (i, text) in responses.iter().enumerate() {
        request = request.response(format!("response-{}", i + 1), text.as_ref());
    }
    request
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
