//! `ra gateway`'s flags for `/get_reward` (OpenRLHF's remote reward model): the
//! principle, the reward scale, the failure reward and group coalescing.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ra_gateway::{DEFAULT_MAX_GROUP_SIZE, DEFAULT_MAX_OPEN_GROUPS, GatewayConfig, RewardScale};

use crate::config::ReferenceConfig;
use crate::validate;

/// The largest principle file read: a principle is a paragraph, not a corpus.
const MAX_PRINCIPLE_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scale {
    /// The judge's score, 1 to 5.
    Raw,
    /// (score - 1) / 4, in [0, 1].
    Unit,
    /// (score - 3) / 2, in [-1, 1] (a fixed map: a reward never depends on which
    /// rollouts shared its group).
    Centered,
    /// Group-mean centering: refused with a reason (accepted by the parser only so the
    /// error can say why and what to use instead).
    #[value(hide = true)]
    Group,
}

impl TryFrom<Scale> for RewardScale {
    type Error = anyhow::Error;

    fn try_from(s: Scale) -> anyhow::Result<Self> {
        match s {
            Scale::Raw => Ok(RewardScale::Raw),
            Scale::Unit => Ok(RewardScale::Unit),
            Scale::Centered => Ok(RewardScale::Centered),
            Scale::Group => anyhow::bail!(
                "--reward group (unit score minus the group's mean) is not offered by \
                 /get_reward: OpenRLHF sends one rollout per request, so a reward would \
                 depend on which rollouts happened to be coalesced together, and a rollout \
                 judged alone would always get 0; use --reward centered (the fixed \
                 (s-3)/2) or unit"
            ),
        }
    }
}

#[derive(Debug, Args)]
pub struct RewardArgs {
    /// /get_reward: the principle to judge by when a rollout's label gives none
    /// (a label {"principle": …} overrides it). Default: the config's "principle".
    #[arg(long, value_name = "TEXT")]
    principle: Option<String>,
    /// /get_reward: read the principle from a file.
    #[arg(long, value_name = "PATH", conflicts_with = "principle")]
    principle_file: Option<PathBuf>,
    /// /get_reward: how the 1–5 score becomes the reward.
    #[arg(long = "reward", value_enum, default_value = "raw")]
    scale: Scale,
    /// /get_reward: the reward (and score) of a rollout whose judgment failed; flagged
    /// ra_failed in extra_logs. Default: 0.0, or the scale's lowest reward when that is
    /// below 0 (-1.0 for centered), so failing never pays more than the worst answer.
    #[arg(long, value_name = "F", allow_hyphen_values = true, value_parser = validate::finite)]
    failure_reward: Option<f64>,
    /// /get_reward: judge rollouts of the same principle and prompt that arrive within
    /// this many milliseconds together, in one listwise call (0: off).
    #[arg(long, value_name = "MS", default_value = "0", value_parser = validate::window_ms)]
    group_window_ms: Duration,
    /// /get_reward: most rollouts in one group call (at most --max-responses).
    #[arg(long, value_name = "K", default_value_t = DEFAULT_MAX_GROUP_SIZE,
          value_parser = validate::at_least_one::<usize>)]
    max_group_size: usize,
    /// /get_reward: most groups open at once; a rollout that would open one more is
    /// judged alone.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_OPEN_GROUPS,
          value_parser = validate::at_least_one::<usize>)]
    max_open_groups: usize,
    /// /get_reward: the size of a complete group (OpenRLHF's --n_samples_per_prompt):
    /// a group is judged as soon as it holds this many rollouts (at most
    /// --max-group-size), so --group-window-ms only bounds the wait for stragglers.
    #[arg(long, value_name = "N", env = "RA_GROUP_SIZE",
          value_parser = validate::at_least_one::<usize>)]
    group_size: Option<usize>,
}

/// The checked settings, ready to apply to the gateway's config.
pub struct RewardSettings {
    principle: Option<String>,
    scale: RewardScale,
    failure_reward: f64,
    window: Duration,
    max_group_size: usize,
    max_open_groups: usize,
    group_size: Option<usize>,
}

impl RewardArgs {
    /// Resolves the principle (flag, file, then the config file's) and checks the
    /// group size against `max_responses`.
    pub fn settings(
        &self,
        config_path: Option<&str>,
        max_responses: usize,
    ) -> anyhow::Result<RewardSettings> {
        if self.max_group_size > max_responses {
            anyhow::bail!(
                "--max-group-size {} is above --max-responses {max_responses}: a group is \
                 one request of that many responses",
                self.max_group_size
            );
        }
        let scale: RewardScale = self.scale.try_into()?;
        Ok(RewardSettings {
            principle: self.principle(config_path)?,
            scale,
            failure_reward: failure_reward(self.failure_reward, scale),
            window: self.group_window_ms,
            max_group_size: self.max_group_size,
            max_open_groups: self.max_open_groups,
            group_size: self.group_size,
        })
    }

    fn principle(&self, config_path: Option<&str>) -> anyhow::Result<Option<String>> {
        let (text, from) = if let Some(p) = &self.principle {
            (p.clone(), "--principle".to_string())
        } else if let Some(path) = &self.principle_file {
            (
                read_principle(path)?,
                format!("--principle-file {}", path.display()),
            )
        } else {
            let config = match config_path {
                Some(path) => ReferenceConfig::load(path)?,
                None => return Ok(None),
            };
            match config.principle {
                Some(p) => (
                    p,
                    format!(
                        "the \"principle\" of --config {}",
                        config_path.unwrap_or("")
                    ),
                ),
                None => return Ok(None),
            }
        };
        if text.trim().is_empty() {
            anyhow::bail!("{from} is empty: give the principle's text");
        }
        Ok(Some(text))
    }
}

/// The failure reward: the flag's, else the scale's default (the client's rule: never
/// above the lowest reward of a judged rollout). A larger one is warned about: a policy
/// could then earn more by making its judgment fail (a turn it wrote that fails the
/// split, an answer that breaks the judge's JSON) than by its worst answer.
fn failure_reward(flag: Option<f64>, scale: RewardScale) -> f64 {
    let normalization = scale.normalization();
    let Some(value) = flag else {
        return normalization.default_failure_reward();
    };
    if let Some(warning) = normalization.failure_pays(value, "--failure-reward") {
        tracing::warn!("{warning}");
    }
    value
}

/// The principle file's text, read through the capped reader (a FIFO or /dev/zero is
/// refused at the cap, not read whole).
fn read_principle(path: &std::path::Path) -> anyhow::Result<String> {
    let text = crate::input::read_text_capped(path, MAX_PRINCIPLE_BYTES, "--principle-file")?;
    Ok(text.trim().to_string())
}

impl RewardSettings {
    /// The gateway config with these settings.
    pub fn apply(self, config: GatewayConfig) -> anyhow::Result<GatewayConfig> {
        if self.principle.is_none() {
            tracing::info!(
                "no --principle: /get_reward takes each rollout's principle from its label \
                 ({{\"principle\": …}}) and answers 422 without one"
            );
        }
        Ok(config
            .principle(self.principle)
            .reward_scale(self.scale)
            .group_window(self.window)
            .max_group_size(self.max_group_size)
            .max_open_groups(self.max_open_groups)
            .expected_group_size(self.group_size)
            .failure_reward(self.failure_reward)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        reward: RewardArgs,
    }

    fn failure(args: &[&str]) -> f64 {
        let cli = Cli::try_parse_from(std::iter::once("ra").chain(args.iter().copied())).unwrap();
        cli.reward.settings(None, 64).unwrap().failure_reward
    }

    #[test]
    fn failing_never_pays_more_than_the_worst_answer_by_default() {
        // The lowest judged rewards: raw 1, unit 0, centered -1.
        assert_eq!(failure(&["--reward", "raw"]), 0.0);
        assert_eq!(failure(&["--reward", "unit"]), 0.0);
        assert_eq!(failure(&["--reward", "centered"]), -1.0);
        // An explicit value is kept (warned about when it pays to fail).
        assert_eq!(
            failure(&["--reward", "centered", "--failure-reward", "0.5"]),
            0.5
        );
        assert_eq!(
            failure(&["--reward", "centered", "--failure-reward", "-2"]),
            -2.0
        );
    }

    #[test]
    fn a_principle_file_that_never_ends_is_refused_at_the_cap() {
        let err = read_principle(std::path::Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("--principle-file"), "{err:#}");
    }
}
