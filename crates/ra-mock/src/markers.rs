//! Markers placed in a request's `prompt` text that steer the mock.

use std::time::Duration;

use crate::config::ReasoningShape;
use crate::fault::{Fault, parse_fault};

/// The markers found in one prompt.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Markers {
    pub fault: Option<Fault>,
    pub fail_first: Option<(u32, Fault)>,
    pub shape: Option<ReasoningShape>,
    pub latency: Option<Duration>,
}

impl Markers {
    /// Scans `[[…]]` groups; groups that do not start with a known keyword are
    /// ignored (prompts may contain brackets), known ones must be well formed.
    pub fn parse(prompt: &str) -> Result<Self, String> {
        let mut out = Self::default();
        if !prompt.contains("[[") {
            return Ok(out);
        }
        let mut rest = prompt;
        while let Some(start) = rest.find("[[") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("]]") else { break };
            let body = &after[..end];
            rest = &after[end + 2..];
            let (key, arg) = body.split_once(':').unwrap_or((body, ""));
            let bad = || format!("ra-mock: invalid marker [[{body}]]");
            match key {
                "fault" => out.fault = Some(parse_fault(arg).ok_or_else(bad)?),
                "fail-first" => {
                    let (n, spec) = arg.split_once(':').ok_or_else(bad)?;
                    let n: u32 = n.parse().map_err(|_| bad())?;
                    out.fail_first = Some((n, parse_fault(spec).ok_or_else(bad)?));
                }
                "shape" => out.shape = Some(arg.parse().map_err(|_| bad())?),
                "latency-ms" => {
                    out.latency = Some(Duration::from_millis(arg.parse().map_err(|_| bad())?))
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::NameFault;

    #[test]
    fn parses_all_markers() {
        let m =
            Markers::parse("a [[fault:429:retry-after=2]] b [[shape:reasoning]] [[latency-ms:30]]")
                .unwrap();
        assert_eq!(
            m.fault,
            Some(Fault::Status {
                code: 429,
                retry_after: Some(2)
            })
        );
        assert_eq!(m.shape, Some(ReasoningShape::Reasoning));
        assert_eq!(m.latency, Some(Duration::from_millis(30)));
        let m = Markers::parse("[[fail-first:3:503]]").unwrap();
        assert_eq!(
            m.fail_first,
            Some((
                3,
                Fault::Status {
                    code: 503,
                    retry_after: None
                }
            ))
        );
        let m = Markers::parse("[[fail-first:1:drop]] [[fault:400-context:prompt-tokens=100]]")
            .unwrap();
        assert_eq!(m.fail_first, Some((1, Fault::Drop)));
        assert_eq!(
            m.fault,
            Some(Fault::ContextLength {
                prompt_tokens: Some(100)
            })
        );
        let m = Markers::parse("[[fail-first:1:names-extra]] [[fault:huge-body:123]]").unwrap();
        assert_eq!(m.fail_first, Some((1, Fault::WrongNames(NameFault::Extra))));
        assert_eq!(m.fault, Some(Fault::HugeBody { bytes: 123 }));
        for s in [
            "hang",
            "drop",
            "malformed",
            "length",
            "500",
            "502",
            "503",
            "endless-body",
            "error-200",
            "names-missing",
            "names-invented",
            "names-extra-ranked",
        ] {
            assert!(
                Markers::parse(&format!("[[fault:{s}]]"))
                    .unwrap()
                    .fault
                    .is_some()
            );
        }
    }

    #[test]
    fn unknown_groups_are_text_but_bad_markers_fail() {
        assert_eq!(
            Markers::parse("[[x]] [[note:y]]").unwrap(),
            Markers::default()
        );
        assert!(Markers::parse("[[fault:200]]").is_err());
        assert!(Markers::parse("[[fault:boom]]").is_err());
        assert!(Markers::parse("[[fault:huge-body]]").is_err());
        assert!(Markers::parse("[[fault:huge-body:-1]]").is_err());
        assert!(Markers::parse("[[fault:names-other]]").is_err());
        assert!(Markers::parse("[[fail-first:x:500]]").is_err());
        assert!(Markers::parse("[[shape:other]]").is_err());
    }
}
