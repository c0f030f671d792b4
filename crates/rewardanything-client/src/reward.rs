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
use crate::normalize::{Normalization, NormalizeError, check_group_size, normalize};
use crate::render::JudgeRequest;

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
