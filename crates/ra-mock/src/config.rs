//! Configuration types of the mock.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::names::NameFault;

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
    what: &'static str,
    value: String,
    expected: &'static str,
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

/// Probabilities (each in `[0, 1]`, summing to at most 1) that a chat request
/// gets a random fault, drawn from the seeded RNG by the request's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultRates {
    /// Answer 500.
    pub status_500: f64,
    /// Answer 429 (no `Retry-After`).
    pub status_429: f64,
    /// Close the connection without a response.
    pub drop: f64,
    /// Never answer.
    pub hang: f64,
}

impl FaultRates {
    pub(crate) fn total(&self) -> f64 {
        self.status_500 + self.status_429 + self.drop + self.hang
    }

    pub(crate) fn pick(&self, u: f64) -> Option<Fault> {
        let mut edge = self.status_500;
        if u < edge {
            return Some(Fault::Status {
                code: 500,
                retry_after: None,
            });
        }
        edge += self.status_429;
        if u < edge {
            return Some(Fault::Status {
                code: 429,
                retry_after: None,
            });
        }
        edge += self.drop;
        if u < edge {
            return Some(Fault::Drop);
        }
        edge += self.hang;
        if u < edge {
            return Some(Fault::Hang);
        }
        None
    }
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

/// A fault the mock can inject into a chat request, by marker in the prompt
/// (see the crate docs), by [`MockHandle::set_forced_fault`](crate::MockHandle::set_forced_fault)
/// or by [`FaultRates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer this HTTP status at once with an OpenAI-shaped error body,
    /// plus `Retry-After: secs` when given.
    Status {
        /// HTTP status code (400..=599).
        code: u16,
        /// `Retry-After` header value in seconds.
        retry_after: Option<u64>,
    },
    /// Never answer (until the client gives up or the server is killed).
    Hang,
    /// Close the connection without writing a response.
    Drop,
    /// 200 with content that is not in the model's format (no JSON after the think block).
    Malformed,
    /// 200 with `finish_reason: "length"`, the output cut inside the think block.
    Length,
    /// Pretend the prompt has `prompt_tokens` tokens (default: `context_length - 2767`,
    /// 30001 for 32768) in the context-length check, so a request with a large
    /// `max_tokens` gets vLLM's context-length 400 and a retry with
    /// `max_tokens <= context_length - prompt_tokens` is answered normally.
    ContextLength {
        /// Pretended prompt size in tokens.
        prompt_tokens: Option<u64>,
    },
    /// 200 with `Transfer-Encoding: chunked` and a body that never ends: the start of a
    /// chat completion, then `x` forever, generated as the client reads and stopped when
    /// it disconnects (see [`Stats::streaming_bodies`](crate::Stats::streaming_bodies)).
    EndlessBody,
    /// 200 with `Content-Length: bytes` and that many bytes (the start of a chat
    /// completion, then `x`), generated as the client reads, never held at once.
    HugeBody {
        /// Body size in bytes.
        bytes: u64,
    },
    /// 200 whose JSON body is an error envelope, as some proxies and servers send:
    /// `{"error": {"message": "ra-mock: injected error in a 200 answer (error-200)",
    /// "type": "InternalServerError", "param": null, "code": 500}}`.
    Error200,
    /// 200 with a judgment that names the wrong responses (see [`NameFault`]).
    WrongNames(NameFault),
}

impl Fault {
    /// The spec this fault has in markers and on the command line (`503`,
    /// `429:retry-after=2`, `hang`, `huge-body:1000`, `names-extra`, …); it parses back.
    ///
    /// ```
    /// use ra_mock::Fault;
    /// let f = Fault::HugeBody { bytes: 1000 };
    /// assert_eq!(f.to_string(), "huge-body:1000");
    /// assert_eq!("huge-body:1000".parse::<Fault>(), Ok(f));
    /// ```
    pub fn spec(&self) -> String {
        match self {
            Self::Status {
                code,
                retry_after: None,
            } => code.to_string(),
            Self::Status {
                code,
                retry_after: Some(s),
            } => format!("{code}:retry-after={s}"),
            Self::Hang => "hang".into(),
            Self::Drop => "drop".into(),
            Self::Malformed => "malformed".into(),
            Self::Length => "length".into(),
            Self::ContextLength {
                prompt_tokens: None,
            } => "400-context".into(),
            Self::ContextLength {
                prompt_tokens: Some(n),
            } => format!("400-context:prompt-tokens={n}"),
            Self::EndlessBody => "endless-body".into(),
            Self::HugeBody { bytes } => format!("huge-body:{bytes}"),
            Self::Error200 => "error-200".into(),
            Self::WrongNames(f) => f.as_str().into(),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec())
    }
}

impl FromStr for Fault {
    type Err = ParseNameError;

    /// Parses a fault spec as markers take it after `fault:` (see the crate docs).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::markers::parse_fault(s).ok_or_else(|| ParseNameError {
            what: "fault",
            value: s.to_owned(),
            expected: "CODE (400-599), CODE:retry-after=S, hang, drop, malformed, length, \
                       400-context, 400-context:prompt-tokens=N, endless-body, huge-body:N, \
                       error-200, names-extra, names-missing, names-invented, names-extra-ranked",
        })
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

    #[test]
    fn fault_rates_pick() {
        let r = FaultRates {
            status_500: 0.1,
            status_429: 0.1,
            drop: 0.1,
            hang: 0.1,
        };
        assert!(matches!(
            r.pick(0.05),
            Some(Fault::Status { code: 500, .. })
        ));
        assert!(matches!(
            r.pick(0.15),
            Some(Fault::Status { code: 429, .. })
        ));
        assert_eq!(r.pick(0.25), Some(Fault::Drop));
        assert_eq!(r.pick(0.35), Some(Fault::Hang));
        assert_eq!(r.pick(0.45), None);
    }
}
