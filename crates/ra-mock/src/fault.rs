//! The faults the mock can inject: what they are, how their specs read and parse, and
//! the random rates that draw them.

use std::fmt;
use std::str::FromStr;

use crate::config::ParseNameError;
use crate::names::NameFault;

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
        parse_fault(s).ok_or_else(|| ParseNameError {
            what: "fault",
            value: s.to_owned(),
            expected: "CODE (400-599), CODE:retry-after=S, hang, drop, malformed, length, \
                       400-context, 400-context:prompt-tokens=N, endless-body, huge-body:N, \
                       error-200, names-extra, names-missing, names-invented, names-extra-ranked",
        })
    }
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

/// Parses a fault spec: `hang`, `drop`, `malformed`, `length`, `400-context`,
/// `400-context:prompt-tokens=N`, `endless-body`, `huge-body:N`, `error-200`,
/// `names-extra`, `names-missing`, `names-invented`, `names-extra-ranked`, `CODE` or
/// `CODE:retry-after=S` (CODE in 400..=599).
pub(crate) fn parse_fault(spec: &str) -> Option<Fault> {
    match spec {
        "hang" => return Some(Fault::Hang),
        "drop" => return Some(Fault::Drop),
        "malformed" => return Some(Fault::Malformed),
        "length" => return Some(Fault::Length),
        "400-context" => {
            return Some(Fault::ContextLength {
                prompt_tokens: None,
            });
        }
        "endless-body" => return Some(Fault::EndlessBody),
        "error-200" => return Some(Fault::Error200),
        _ => {}
    }
    if let Some(names) = NameFault::from_spec(spec) {
        return Some(Fault::WrongNames(names));
    }
    if let Some(arg) = spec.strip_prefix("400-context:prompt-tokens=") {
        return Some(Fault::ContextLength {
            prompt_tokens: Some(arg.parse().ok()?),
        });
    }
    if let Some(arg) = spec.strip_prefix("huge-body:") {
        return Some(Fault::HugeBody {
            bytes: arg.parse().ok()?,
        });
    }
    let (code, opt) = match spec.split_once(':') {
        Some((c, o)) => (c, Some(o)),
        None => (spec, None),
    };
    let code: u16 = code.parse().ok()?;
    if !(400..=599).contains(&code) {
        return None;
    }
    let retry_after = match opt {
        None => None,
        Some(o) => Some(o.strip_prefix("retry-after=")?.parse().ok()?),
    };
    Some(Fault::Status { code, retry_after })
}

#[cfg(test)]
mod tests {
    use super::*;

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
