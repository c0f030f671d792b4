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

/// How many attempts a judgment gets and how long to wait between them.
///
/// ```
/// use rewardanything_client::RetryPolicy;
/// use std::time::Duration;
/// let p = RetryPolicy::default().max_attempts(3).base_delay(Duration::from_millis(100));
/// assert_eq!(p.max_attempts, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
///
/// ```
/// use rewardanything_client::retry::is_transient_status;
/// assert!(is_transient_status(503));
/// assert!(!is_transient_status(400));
/// ```
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// Parses a `Retry-After` header: delay-seconds (possibly fractional), or an HTTP date.
///
/// ```
/// use rewardanything_client::retry::parse_retry_after;
/// use std::time::Duration;
/// assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
/// assert_eq!(parse_retry_after("soon"), None);
/// ```
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e6)));
    }
    let when = httpdate_to_unix(v)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(when.saturating_sub(now)))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to Unix seconds; the other obsolete
/// formats are not used by inference servers.
fn httpdate_to_unix(s: &str) -> Option<u64> {
    let mut parts = s.split_whitespace();
    let _weekday = parts.next()?;
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|x| x.parse::<u64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" {
        return None;
    }
    // Server-controlled: keep every product below overflow.
    if !(1970..=9999).contains(&year) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo as i64 + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + h * 3600 + m * 60 + sec)
}

/// What a context-length 400 says: the model's context size and the prompt's tokens.
///
/// ```
/// use rewardanything_client::retry::ContextOverflow;
/// let msg = "This model's maximum context length is 8192 tokens. However, you requested \
///            4096 output tokens and your prompt contains at least 6000 input tokens, for a \
///            total of at least 10096 tokens.";
/// let c = ContextOverflow::from_message(msg).unwrap();
/// assert_eq!((c.context, c.prompt_tokens), (8192, 6000));
/// assert_eq!(c.fitting_max_tokens(), Some(2192));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextOverflow {
    /// The model's context size in tokens.
    pub context: u64,
    /// The prompt's size in tokens (a lower bound in vLLM's wording).
    pub prompt_tokens: u64,
}

impl ContextOverflow {
    /// Reads vLLM's wordings (current: "…maximum context length is C tokens. However, you
    /// requested M output tokens and your prompt contains at least P input tokens…";
    /// older: "…(P in the messages, M in the completion)…" and "…your request has P input
    /// tokens…") and llama.cpp's ("request (P tokens) exceeds the available context size
    /// (C tokens)…").
    pub fn from_message(message: &str) -> Option<Self> {
        let context = number_after(message, "maximum context length is ")
            .or_else(|| number_after(message, "available context size ("))?;
        let prompt_tokens = number_after(message, "prompt contains at least ")
            .or_else(|| number_after(message, "your request has "))
            .or_else(|| number_after(message, "tokens ("))
            .or_else(|| number_after(message, "request ("))?;
        Some(ContextOverflow {
            context,
            prompt_tokens,
        })
    }

    /// The largest `max_tokens` that fits, if any room is left at all.
    pub fn fitting_max_tokens(&self) -> Option<u32> {
        let room = self.context.checked_sub(self.prompt_tokens)?;
        (room >= 1).then(|| u32::try_from(room).unwrap_or(u32::MAX))
    }

    /// Whether the prompt count is only a floor: vLLM (0.18 and later) stops counting
    /// after `context - requested + 1` prompt tokens and says "at least". Then the room
    /// left is unknown and lowering `max_tokens` to [`fitting_max_tokens`] would likely
    /// fail again.
    ///
    /// ```
    /// use rewardanything_client::retry::ContextOverflow;
    /// let msg = "This model's maximum context length is 8192 tokens. However, you requested \
    ///            4096 output tokens and your prompt contains at least 4097 input tokens";
    /// assert!(ContextOverflow::from_message(msg).unwrap().is_lower_bound(msg));
    /// ```
    ///
    /// [`fitting_max_tokens`]: Self::fitting_max_tokens
    pub fn is_lower_bound(&self, message: &str) -> bool {
        message.contains("at least")
            && number_after(message, "you requested ").is_some_and(|requested| {
                self.prompt_tokens.checked_add(requested) == self.context.checked_add(1)
            })
    }

    /// Whether a server message is a context-length complaint at all.
    pub fn is_context_message(message: &str) -> bool {
        message.contains("maximum context length")
            || message.contains("exceeds the available context size")
    }
}

fn number_after(haystack: &str, needle: &str) -> Option<u64> {
    let start = haystack.find(needle)? + needle.len();
    let digits: String = haystack[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
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

    #[test]
    fn old_vllm_and_llama_cpp_wordings() {
        let old = "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (1000 in the messages, 4000 in the completion).";
        let c = ContextOverflow::from_message(old).unwrap();
        assert_eq!((c.context, c.prompt_tokens), (4096, 1000));
        let newer = "'max_tokens' or 'max_completion_tokens' is too large: 4096. This model's maximum context length is 8192 tokens and your request has 5000 input tokens (4096 > 8192 - 5000).";
        let c = ContextOverflow::from_message(newer).unwrap();
        assert_eq!((c.context, c.prompt_tokens), (8192, 5000));
        let llama = "request (5000 tokens) exceeds the available context size (4096 tokens), try increasing it";
        let c = ContextOverflow::from_message(llama).unwrap();
        assert_eq!((c.context, c.prompt_tokens), (4096, 5000));
        assert_eq!(c.fitting_max_tokens(), None);
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            httpdate_to_unix("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(httpdate_to_unix("garbage"), None);
    }
}
