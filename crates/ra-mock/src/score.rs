//! The deterministic "judgment" the mock gives, exported so tests can predict it.

/// FNV-1a, 64-bit, over the bytes: offset basis `0xcbf29ce484222325`, prime
/// `0x100000001b3`. Stable across platforms and releases, unlike `std`'s hasher.
///
/// ```
/// assert_eq!(ra_mock::fnv1a64(b""), 0xcbf29ce484222325);
/// assert_eq!(ra_mock::fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
/// ```
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The hash the attempt log stores for a request's `prompt` text
/// ([`Attempt::prompt_hash`](crate::Attempt::prompt_hash)): [`fnv1a64`] of its UTF-8 bytes.
///
/// ```
/// assert_eq!(ra_mock::prompt_hash("hi"), ra_mock::fnv1a64(b"hi"));
/// ```
pub fn prompt_hash(prompt: &str) -> u64 {
    fnv1a64(prompt.as_bytes())
}

/// The score (1..=5) the mock gives a response text.
///
/// 1. If the text contains `score=K` where `K` is one ASCII digit `1`..=`5` not
///    followed by another digit, the first such `K` is the score.
/// 2. Otherwise the score is `fnv1a64(text.as_bytes()) % 5 + 1` (see [`fnv1a64`]).
///
/// ```
/// use ra_mock::{expected_score, fnv1a64};
/// assert_eq!(expected_score("a fine answer, score=4"), 4);
/// assert_eq!(expected_score("score=9 then score=2"), 2);
/// let text = "no marker here";
/// assert_eq!(u64::from(expected_score(text)), fnv1a64(text.as_bytes()) % 5 + 1);
/// ```
pub fn expected_score(text: &str) -> u8 {
    const MARK: &str = "score=";
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(pos) = text[from..].find(MARK) {
        let at = from + pos + MARK.len();
        if let Some(&d) = bytes.get(at) {
            let next_is_digit = bytes.get(at + 1).is_some_and(u8::is_ascii_digit);
            if (b'1'..=b'5').contains(&d) && !next_is_digit {
                return d - b'0';
            }
        }
        from = from + pos + 1;
    }
    // `% 5` keeps the value below 5, so the cast cannot truncate.
    (fnv1a64(bytes) % 5) as u8 + 1
}

/// The score of the response presented first (the first key of the user message's
/// `responses`) under a position bias of `bias` (see
/// [`MockServerBuilder::position_bias`](crate::MockServerBuilder::position_bias)):
/// `score + bias`, capped at 5. Other responses keep their [`expected_score`].
///
/// ```
/// assert_eq!(ra_mock::biased_score(3, 1), 4);
/// assert_eq!(ra_mock::biased_score(5, 1), 5);
/// assert_eq!(ra_mock::biased_score(2, 0), 2);
/// ```
pub fn biased_score(score: u8, bias: u8) -> u8 {
    score.saturating_add(bias).min(5)
}

/// The `best-to-worst` list the mock gives: names sorted by [`expected_score`]
/// of their text, highest first; equal scores in ascending byte order of the
/// name (`str::cmp`, so `"model-10"` comes before `"model-2"`).
///
/// ```
/// let ranking = ra_mock::expected_ranking([
///     ("model-1", "ok score=3"),
///     ("model-2", "great score=5"),
///     ("model-3", "also score=3"),
/// ]);
/// assert_eq!(ranking, ["model-2", "model-1", "model-3"]);
/// ```
pub fn expected_ranking<'a, I>(responses: I) -> Vec<String>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut scored: Vec<(u8, &str)> = responses
        .into_iter()
        .map(|(name, text)| (expected_score(text), name))
        .collect();
    sort_ranking(&mut scored);
    scored.into_iter().map(|(_, n)| n.to_owned()).collect()
}

pub(crate) fn sort_ranking(scored: &mut [(u8, &str)]) {
    scored.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
}

/// Token estimate used for `usage` and the context-length check: `ceil(bytes / 4)`.
///
/// ```
/// assert_eq!(ra_mock::estimate_tokens(""), 0);
/// assert_eq!(ra_mock::estimate_tokens("hello"), 2);
/// ```
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// `splitmix64`: a tiny, well-mixed hash used as the mock's seeded RNG
/// (`draw = splitmix64(seed ^ stream ^ sequence)`), so draws need no lock.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps a 64-bit draw to a uniform `f64` in `[0, 1)`.
pub(crate) fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_marker_rules() {
        assert_eq!(expected_score("score=1"), 1);
        assert_eq!(expected_score("xx score=5."), 5);
        // two digits: not a marker, falls through to the hash
        let t = "score=12";
        assert_eq!(u64::from(expected_score(t)), fnv1a64(t.as_bytes()) % 5 + 1);
        let t = "score=0 score=6";
        assert_eq!(u64::from(expected_score(t)), fnv1a64(t.as_bytes()) % 5 + 1);
    }

    #[test]
    fn hash_scores_cover_all_values() {
        let mut seen = [false; 6];
        for i in 0..200 {
            let s = expected_score(&format!("response number {i}"));
            assert!((1..=5).contains(&s));
            seen[s as usize] = true;
        }
        assert!(seen[1..].iter().all(|&b| b));
    }

    #[test]
    fn fnv_known_vector() {
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn unit_range() {
        for i in 0..1000 {
            let u = unit(splitmix64(i));
            assert!((0.0..1.0).contains(&u));
        }
    }
}
