//! Answers whose names are wrong (the `names-*` faults): what a model does when it
//! scores a response that was never sent, forgets one, or ranks a name it invented,
//! so clients can be tested on "a judgment names exactly the request's responses".

use std::fmt;

use crate::render::{answer_json_ranked, ranking_of};

/// How a `names-*` fault gets the names wrong. The *extra* name is `model-{N+7}` when
/// the request is masked (its response names are exactly `model-1`..`model-N`), else
/// `zzz` (with more `z`s if the request already uses that name); it gets score 4.
///
/// ```
/// use ra_mock::{Fault, NameFault};
/// let f: Fault = "names-extra".parse().unwrap();
/// assert_eq!(f, Fault::WrongNames(NameFault::Extra));
/// assert_eq!(NameFault::ExtraRanked.to_string(), "names-extra-ranked");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameFault {
    /// `names-extra`: scores and ranks the extra name besides the real ones.
    Extra,
    /// `names-missing`: drops the request's last response from scores and ranking.
    Missing,
    /// `names-invented`: scores and ranks only the invented name `zzz` (more `z`s if taken).
    Invented,
    /// `names-extra-ranked`: correct scores, but the ranking ends with the extra name.
    ExtraRanked,
}

impl NameFault {
    /// The fault spec: `names-extra`, `names-missing`, `names-invented`, `names-extra-ranked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Extra => "names-extra",
            Self::Missing => "names-missing",
            Self::Invented => "names-invented",
            Self::ExtraRanked => "names-extra-ranked",
        }
    }

    pub(crate) fn from_spec(spec: &str) -> Option<Self> {
        [
            Self::Extra,
            Self::Missing,
            Self::Invented,
            Self::ExtraRanked,
        ]
        .into_iter()
        .find(|f| f.as_str() == spec)
    }
}

impl fmt::Display for NameFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Score the extra and invented names get.
const EXTRA_SCORE: u8 = 4;

/// The name a request does not have: `model-{N+7}` for a masked request, else `zzz…`.
pub(crate) fn extra_name(scored: &[(u8, &str)]) -> String {
    let n = scored.len();
    let masked = (1..=n).all(|i| {
        let want = format!("model-{i}");
        scored.iter().any(|(_, name)| *name == want)
    });
    if masked && n > 0 {
        return format!("model-{}", n + 7);
    }
    invented_name(scored)
}

/// `zzz`, lengthened until no response of the request has that name.
fn invented_name(scored: &[(u8, &str)]) -> String {
    let mut name = String::from("zzz");
    while scored.iter().any(|(_, n)| *n == name) {
        name.push('z');
    }
    name
}

/// The JSON answer for `scored` (the request's names and their true scores), wrong as `fault` says.
pub(crate) fn wrong_answer(fault: NameFault, scored: &[(u8, &str)]) -> String {
    match fault {
        NameFault::Extra => {
            let extra = extra_name(scored);
            let mut all = scored.to_vec();
            all.push((EXTRA_SCORE, &extra));
            answer_json_ranked(&all, &ranking_of(&all))
        }
        NameFault::Missing => {
            let kept = &scored[..scored.len().saturating_sub(1)];
            answer_json_ranked(kept, &ranking_of(kept))
        }
        NameFault::Invented => {
            let invented = invented_name(scored);
            let only = [(EXTRA_SCORE, invented.as_str())];
            answer_json_ranked(&only, &ranking_of(&only))
        }
        NameFault::ExtraRanked => {
            let extra = extra_name(scored);
            let mut ranking = ranking_of(scored);
            ranking.push(&extra);
            answer_json_ranked(scored, &ranking)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASKED: [(u8, &str); 2] = [(3, "model-1"), (5, "model-2")];
    const PLAIN: [(u8, &str); 2] = [(3, "a"), (5, "b")];

    #[test]
    fn extra_names() {
        assert_eq!(extra_name(&MASKED), "model-9");
        assert_eq!(extra_name(&PLAIN), "zzz");
        assert_eq!(extra_name(&[(1, "model-2")]), "zzz", "not model-1..N");
        assert_eq!(extra_name(&[(1, "zzz"), (2, "zzzz")]), "zzzzz");
    }

    #[test]
    fn wrong_answers() {
        assert_eq!(
            wrong_answer(NameFault::Extra, &MASKED),
            r#"{"scores": {"model-1": 3, "model-2": 5, "model-9": 4}, "best-to-worst": ["model-2", "model-9", "model-1"]}"#
        );
        assert_eq!(
            wrong_answer(NameFault::Missing, &PLAIN),
            r#"{"scores": {"a": 3}, "best-to-worst": ["a"]}"#
        );
        assert_eq!(
            wrong_answer(NameFault::Invented, &PLAIN),
            r#"{"scores": {"zzz": 4}, "best-to-worst": ["zzz"]}"#
        );
        assert_eq!(
            wrong_answer(NameFault::ExtraRanked, &PLAIN),
            r#"{"scores": {"a": 3, "b": 5}, "best-to-worst": ["b", "a", "zzz"]}"#
        );
    }
}
