//! Configuration types of the mock.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Where the mock puts the model's thinking in a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReasoningShape {
    /// `content` = `"<think>\n…\n</think>\n\n{json}"` (no reasoning parser on the server).
    #[default]
    Inline,
    /// `content` = `"{json}"`, thought in `message.reasoning` (vLLM ≥ 0.10 with a reasoning parser).
    Reasoning,
    /// `content` = `"{json}"`, thought in `message.reasoning_content` (older vLLM, llama.cpp).
    ReasoningContent,
    /// `content` = `"…\n</think>\n\n{json}"`: the chat template pre-filled `<think>`,
    /// so the output has only the closing tag.
    Prefilled,
}

impl ReasoningShape {
    /// The name used by markers, the header and the CLI: `inline`, `reasoning`,
    /// `reasoning_content`, `prefilled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inline => "inline",
            Self::Reasoning => "reasoning",
            Self::ReasoningContent => "reasoning_content",
            Self::Prefilled => "prefilled",
        }
    }
}

impl fmt::Display for ReasoningShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown name given to one of this crate's `FromStr` impls.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {expected})")]
pub struct ParseNameError {
    pub(crate) what: &'static str,
    pub(crate) value: String,
    pub(crate) expected: &'static str,
}

impl FromStr for ReasoningShape {
    type Err = ParseNameError;

    /// Accepts `inline`, `reasoning`, `reasoning_content` (or `reasoning-content`), `prefilled`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "inline" => Ok(Self::Inline),
            "reasoning" => Ok(Self::Reasoning),
            "reasoning_content" | "reasoning-content" => Ok(Self::ReasoningContent),
            "prefilled" => Ok(Self::Prefilled),
            _ => Err(ParseNameError {
                what: "reasoning shape",
                value: s.to_owned(),
                expected: "inline, reasoning, reasoning_content, prefilled",
            }),
        }
    }
}

/// Time the mock holds each successful request (while it occupies a capacity slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Latency {
    /// Answer at once.
    #[default]
    None,
    /// Always this long.
    Fixed(Duration),
    /// Uniformly random in `[min, max]`, drawn from the server's seeded RNG.
    Uniform {
        /// Lower bound.
        min: Duration,
        /// Upper bound (inclusive).
        max: Duration,
    },
}

impl Latency {
    /// `Fixed(ms milliseconds)`, or `None` for 0.
    pub fn from_millis(ms: u64) -> Self {
        if ms == 0 {
            Self::None
        } else {
            Self::Fixed(Duration::from_millis(ms))
        }
    }

    /// `Uniform { min, max }` (the bounds are swapped if given backwards).
    pub fn uniform(min: Duration, max: Duration) -> Self {
        let (min, max) = if min <= max { (min, max) } else { (max, min) };
        Self::Uniform { min, max }
    }

    /// The delay for a uniform draw `u` in `[0, 1)`.
    pub(crate) fn pick(self, u: f64) -> Duration {
        match self {
            Self::None => Duration::ZERO,
            Self::Fixed(d) => d,
            Self::Uniform { min, max } => {
                // `(max - min) * u` with u < 1 stays within the span; +1 ns makes `max` reachable.
                let span = (max - min).as_nanos() as f64 + 1.0;
                min + Duration::from_nanos((span * u) as u64)
            }
        }
    }
}

/// What happens to a request that arrives while `capacity` requests are being processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverCapacity {
    /// Wait (first come, first served) for a free slot, like vLLM's scheduler queue.
    #[default]
    Queue,
    /// Answer 429 at once, with `Retry-After: secs` when given.
    Reject {
        /// Value of the `Retry-After` header, in seconds.
        retry_after: Option<u64>,
    },
}

/// Wording of the 400 the mock answers when `prompt tokens + max_tokens`
/// exceeds the context length.
///
/// The mock's prompt token count `P` is [`estimate_tokens`](crate::estimate_tokens)
/// of all message contents (or the count a `[[fault:400-context]]` marker
/// pretends), `M` is the request's `max_completion_tokens` or `max_tokens`,
/// `L` the configured context length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContextErrorStyle {
    /// vLLM 0.18–0.30 wording with the *true* `P`:
    /// `This model's maximum context length is L tokens. However, you requested M output tokens and your prompt contains at least P input tokens, for a total of at least P+M tokens. Please reduce the length of the input prompt or the number of requested output tokens. (parameter=input_tokens, value=P)`
    #[default]
    AtLeast,
    /// Same wording without the two "at least" (vLLM's form when the prompt was not truncated).
    Exact,
    /// What vLLM 0.18–0.30 really sends for a text prompt: it tokenizes at most
    /// `L - M + 1` tokens, so the message says "at least `L-M+1`" whatever `P` is.
    Truncated,
    /// vLLM 0.10.2–0.17:
    /// `'max_tokens' or 'max_completion_tokens' is too large: M. This model's maximum context length is L tokens and your request has P input tokens (M > L - P).`
    Legacy,
}

impl FromStr for ContextErrorStyle {
    type Err = ParseNameError;

    /// Accepts `at-least`, `exact`, `truncated`, `legacy`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "at-least" | "at_least" => Ok(Self::AtLeast),
            "exact" => Ok(Self::Exact),
            "truncated" => Ok(Self::Truncated),
            "legacy" => Ok(Self::Legacy),
            _ => Err(ParseNameError {
                what: "context error style",
                value: s.to_owned(),
                expected: "at-least, exact, truncated, legacy",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_round_trip() {
        for s in [
            ReasoningShape::Inline,
            ReasoningShape::Reasoning,
            ReasoningShape::ReasoningContent,
            ReasoningShape::Prefilled,
        ] {
            assert_eq!(s.as_str().parse::<ReasoningShape>(), Ok(s));
        }
        assert!("think".parse::<ReasoningShape>().is_err());
    }

    #[test]
    fn uniform_latency_within_bounds() {
        let l = Latency::uniform(Duration::from_millis(10), Duration::from_millis(20));
        assert_eq!(l.pick(0.0), Duration::from_millis(10));
        let hi = l.pick(0.999_999_999_9);
        assert!(hi <= Duration::from_millis(20) && hi > Duration::from_millis(19));
    }
}
