//! Which failures are retried, and how long to wait between attempts.
//!
//! Only transient failures are retried: connect errors, timeouts, dropped connections,
//! HTTP 429, 500, 502, 503 and 504. Waits follow exponential backoff with *full jitter*
//! (a uniform draw in `[0, cap]`, where the cap doubles each attempt up to `max_delay`),
//! and a server's `Retry-After` is honoured as a lower bound. The cap schedule comes from
//! `backon`'s exponential builder; the full-jitter draw is ours, because `backon`'s jitter
//! adds to the cap instead of drawing below it.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::{Deserialize, Serialize};

use crate::balance::Outcome;
use crate::error::JudgeErrorKind;
use crate::wire::{AttemptError, ContextOverflow};

/// How many attempts a judgment gets and how long to wait between them.
///
/// ```
/// use rewardanything_client::RetryPolicy;
/// use std::time::Duration;
/// let p = RetryPolicy::default().max_attempts(3).base_delay(Duration::from_millis(100));
/// assert_eq!(p.max_attempts, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry). Default 5.
    pub max_attempts: u32,
    /// Cap of the first wait. Default 500 ms.
    pub base_delay: Duration,
    /// Largest cap. Default 30 s.
    pub max_delay: Duration,
    /// Largest `Retry-After` honoured. Default 120 s.
    pub max_retry_after: Duration,
    /// Seed of the jitter draws (for reproducible tests); random when `None`.
    pub jitter_seed: Option<u64>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            jitter_seed: None,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    ///
    /// ```
    /// assert_eq!(rewardanything_client::RetryPolicy::none().max_attempts, 1);
    /// ```
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Sets the number of attempts (at least 1).
    ///
    /// ```
    /// assert_eq!(rewardanything_client::RetryPolicy::default().max_attempts(0).max_attempts, 1);
    /// ```
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Sets the first cap.
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = rewardanything_client::RetryPolicy::default().base_delay(Duration::from_millis(5));
    /// assert_eq!(p.base_delay, Duration::from_millis(5));
    /// ```
    pub fn base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }

    /// Sets the largest cap.
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = rewardanything_client::RetryPolicy::default().max_delay(Duration::from_secs(1));
    /// assert_eq!(p.max_delay, Duration::from_secs(1));
    /// ```
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// Sets the longest `Retry-After` worth waiting for; a server asking for longer
    /// fails the judgment at once with its answer (default 120 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let p = rewardanything_client::RetryPolicy::default().max_retry_after(Duration::from_secs(5));
    /// assert_eq!(p.max_retry_after, Duration::from_secs(5));
    /// ```
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }

    /// Sets the jitter seed.
    ///
    /// ```
    /// let p = rewardanything_client::RetryPolicy::default().jitter_seed(1);
    /// assert_eq!(p.jitter_seed, Some(1));
    /// ```
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// The waits of one judgment: call [`Backoff::next_delay`] after each failed attempt.
    ///
    /// ```
    /// use rewardanything_client::RetryPolicy;
    /// use std::time::Duration;
    /// let mut b = RetryPolicy::default().max_attempts(2).base_delay(Duration::from_millis(10))
    ///     .jitter_seed(3).backoff(0);
    /// assert!(b.next_delay(None).unwrap() <= Duration::from_millis(10));
    /// assert!(b.next_delay(None).is_none()); // two attempts: only one wait
    /// ```
    pub fn backoff(&self, salt: u64) -> Backoff {
        let caps = ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build();
        let rng = match self.jitter_seed {
            Some(seed) => SmallRng::seed_from_u64(seed ^ salt.rotate_left(17)),
            None => SmallRng::from_rng(&mut rand::rng()),
        };
        Backoff {
            caps,
            rng,
            max_retry_after: self.max_retry_after,
        }
    }
}

/// The remaining waits of one judgment (see [`RetryPolicy::backoff`]).
#[derive(Debug)]
pub struct Backoff {
    caps: backon::ExponentialBackoff,
    rng: SmallRng,
    max_retry_after: Duration,
}

impl Backoff {
    /// The wait before the next attempt, or `None` when no attempt is left. A server's
    /// `Retry-After` raises the wait to at least that long (bounded by `max_retry_after`).
    ///
    /// ```
    /// use rewardanything_client::RetryPolicy;
    /// use std::time::Duration;
    /// let mut b = RetryPolicy::default().jitter_seed(1).backoff(0);
    /// let d = b.next_delay(Some(Duration::from_secs(2))).unwrap();
    /// assert!(d >= Duration::from_secs(2));
    /// ```
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        let cap = self.caps.next()?;
        let jittered = cap.mul_f64(self.rng.random::<f64>());
        Some(match retry_after {
            Some(ra) => jittered.max(ra.min(self.max_retry_after)),
            None => jittered,
        })
    }
}

/// Whether a status is worth another attempt as it is.
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// Where a judgment stands when an attempt fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AttemptState {
    /// `max_tokens` of the failed attempt.
    pub max_tokens: u32,
    /// `max_tokens` was already lowered once for a context overflow.
    pub lowered_max_tokens: bool,
    /// The attempt's timeout was cut short by the caller's deadline.
    pub deadline_bound: bool,
    /// The attempt's timeout.
    pub timeout: Duration,
    /// The longest `Retry-After` worth waiting for.
    pub max_retry_after: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Try again after the backoff (at least `retry_after`); `error` is reported if no
    /// attempt is left.
    Retry {
        error: JudgeErrorKind,
        retry_after: Option<Duration>,
    },
    /// Try again at once with `max_tokens` lowered to fit the context.
    Adjust { max_tokens: u32 },
    /// Give up with this error.
    Fail(JudgeErrorKind),
    /// The attempt timed out because the caller's deadline was near: report the deadline.
    Deadline,
}

/// The retry decision, and what the failure says about the endpoint (`None`: nothing,
/// e.g. a timeout the caller's deadline cut short). Pure: no I/O, no clock.
pub(crate) fn classify(error: AttemptError, state: &AttemptState) -> (Option<Outcome>, Decision) {
    match error {
        AttemptError::Transport { message, source } => (
            Some(Outcome::Failure),
            Decision::Retry {
                error: JudgeErrorKind::Transport {
                    message,
                    source: Some(source),
                },
                retry_after: None,
            },
        ),
        AttemptError::Timeout if state.deadline_bound => (None, Decision::Deadline),
        AttemptError::Timeout => (
            Some(Outcome::Failure),
            Decision::Retry {
                error: JudgeErrorKind::Timeout(state.timeout),
                retry_after: None,
            },
        ),
        AttemptError::BadResponse(message) => (
            Some(Outcome::Alive),
            Decision::Fail(JudgeErrorKind::BadResponse(message)),
        ),
        AttemptError::Http {
            status,
            message,
            retry_after,
        } => {
            let outcome = match status {
                429 => Outcome::Busy(retry_after),
                500..=599 => Outcome::Failure,
                _ => Outcome::Alive,
            };
            (
                Some(outcome),
                classify_status(status, message, retry_after, state),
            )
        }
    }
}

fn classify_status(
    status: u16,
    message: String,
    retry_after: Option<Duration>,
    state: &AttemptState,
) -> Decision {
    if status == 400 && ContextOverflow::is_context_message(&message) {
        let fit = ContextOverflow::from_message(&message)
            .filter(|c| !c.is_lower_bound(&message))
            .and_then(|c| c.fitting_max_tokens())
            .filter(|&fit| fit < state.max_tokens);
        return match fit {
            Some(max_tokens) if !state.lowered_max_tokens => Decision::Adjust { max_tokens },
            _ => Decision::Fail(JudgeErrorKind::ContextLength { message }),
        };
    }
    if !is_transient_status(status) {
        return Decision::Fail(JudgeErrorKind::Http { status, message });
    }
    match retry_after {
        // Told to come back later than we would ever wait: fail now with the server's
        // answer rather than sleep through it blindly.
        Some(wait) if wait > state.max_retry_after => Decision::Fail(JudgeErrorKind::Http {
            status,
            message: format!(
                "{message} (Retry-After {wait:?} exceeds the {:?} limit)",
                state.max_retry_after
            ),
        }),
        _ => Decision::Retry {
            error: JudgeErrorKind::Http { status, message },
            retry_after,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_grow_and_draws_stay_below_them() {
        let policy = RetryPolicy::default()
            .max_attempts(6)
            .base_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1))
            .jitter_seed(9);
        let mut b = policy.backoff(1);
        let caps = [100, 200, 400, 800, 1000];
        let mut draws = Vec::new();
        for cap in caps {
            let d = b.next_delay(None).expect("an attempt left");
            assert!(d <= Duration::from_millis(cap), "{d:?} > {cap} ms");
            draws.push(d);
        }
        assert!(b.next_delay(None).is_none(), "stops at the limit");
        draws.dedup();
        assert!(draws.len() > 1, "jitter varies the waits");
    }

    fn state() -> AttemptState {
        AttemptState {
            max_tokens: 4096,
            lowered_max_tokens: false,
            deadline_bound: false,
            timeout: Duration::from_secs(600),
            max_retry_after: Duration::from_secs(120),
        }
    }

    fn http(status: u16, message: &str, retry_after: Option<u64>) -> AttemptError {
        AttemptError::Http {
            status,
            message: message.into(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn transient_statuses_retry_others_fail() {
        for status in [429, 500, 502, 503, 504] {
            let (_, d) = classify(http(status, "busy", None), &state());
            assert!(matches!(d, Decision::Retry { .. }), "{status}: {d:?}");
        }
        for status in [400, 401, 403, 404, 422, 501] {
            let (_, d) = classify(http(status, "no", None), &state());
            assert!(
                matches!(d, Decision::Fail(JudgeErrorKind::Http { status: s, .. }) if s == status),
                "{status}: {d:?}"
            );
        }
    }

    #[test]
    fn what_a_failure_says_about_the_endpoint() {
        assert_eq!(
            classify(http(429, "", Some(3)), &state()).0,
            Some(Outcome::Busy(Some(Duration::from_secs(3))))
        );
        assert_eq!(
            classify(http(503, "", None), &state()).0,
            Some(Outcome::Failure)
        );
        assert_eq!(
            classify(http(404, "", None), &state()).0,
            Some(Outcome::Alive)
        );
        assert_eq!(
            classify(AttemptError::Timeout, &state()).0,
            Some(Outcome::Failure)
        );
        assert_eq!(
            classify(AttemptError::BadResponse("x".into()), &state()).0,
            Some(Outcome::Alive)
        );
        let cut = AttemptState {
            deadline_bound: true,
            ..state()
        };
        assert!(matches!(
            classify(AttemptError::Timeout, &cut),
            (None, Decision::Deadline)
        ));
    }

    #[test]
    fn a_retry_after_beyond_the_limit_fails_at_once() {
        let (_, d) = classify(http(503, "maintenance", Some(3600)), &state());
        match d {
            Decision::Fail(JudgeErrorKind::Http {
                status: 503,
                message,
            }) => {
                assert!(
                    message.contains("maintenance") && message.contains("3600s"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        let (_, d) = classify(http(429, "slow down", Some(2)), &state());
        assert!(
            matches!(
                &d,
                Decision::Retry { error: JudgeErrorKind::Http { status: 429, message }, retry_after: Some(r) }
                    if message == "slow down" && *r == Duration::from_secs(2)
            ),
            "{d:?}"
        );
    }

    #[test]
    fn context_overflow_is_adjusted_once_then_fails() {
        let msg = "This model's maximum context length is 8192 tokens. However, you requested \
                   4096 output tokens and your prompt contains at least 6000 input tokens, for a \
                   total of at least 10096 tokens.";
        assert!(matches!(
            classify(http(400, msg, None), &state()).1,
            Decision::Adjust { max_tokens: 2192 }
        ));
        let lowered = AttemptState {
            lowered_max_tokens: true,
            ..state()
        };
        assert!(matches!(
            classify(http(400, msg, None), &lowered).1,
            Decision::Fail(JudgeErrorKind::ContextLength { .. })
        ));
        // vLLM's truncated floor ("at least L-M+1"): lowering would not help.
        let floor = "This model's maximum context length is 8192 tokens. However, you requested \
                     4096 output tokens and your prompt contains at least 4097 input tokens";
        assert!(matches!(
            classify(http(400, floor, None), &state()).1,
            Decision::Fail(JudgeErrorKind::ContextLength { .. })
        ));
    }

    #[test]
    fn old_vllm_and_llama_cpp_wordings() {
        let old = "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (1000 in the messages, 4000 in the completion).";
        let c = ContextOverflow::from_message(old).unwrap();
        assert_eq!((c.context, c.prompt_tokens), (4096, 1000));
        let newer = "'max_tokens' or 'max_completion_tokens' is too large: 4096. This model's maximum context length is 8192 tokens and your request has 5000 input tokens (4096 > 8192 - 5000).";
        let c = ContextOverflow::from_message(newer).unwrap();
        assert_eq!((c.context, c.prompt_tokens), (8192, 5000));
    }
}
