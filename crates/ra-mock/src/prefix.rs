//! A per-server model of vLLM's automatic prefix caching, so that routing that keeps
//! requests sharing a prefix on one replica shows what it saves.
//!
//! The prompt (every message's content, in order) is cut into blocks of
//! [`BLOCK_BYTES`] bytes (16 tokens at the mock's 4 bytes a token); each block is keyed
//! by a hash chained over every block before it, as vLLM keys its KV blocks, so a block
//! is a hit only when the whole prefix up to it was seen. The leading run of hits is
//! cached; everything after the first miss (and a last partial block, which vLLM does
//! not cache either) is prefilled, and costs `prefill_per_token` per token on top of the
//! request's latency. The cache holds `capacity_tokens` worth of blocks and evicts the
//! least recently used.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::score::{fnv1a64, splitmix64};

/// Bytes in one cached block: 16 tokens by [`estimate_tokens`](crate::estimate_tokens).
pub const BLOCK_BYTES: usize = 64;

/// Prefix-cache settings ([`MockServerBuilder::prefix_cache`](crate::MockServerBuilder::prefix_cache)).
///
/// ```
/// use std::time::Duration;
/// let p = ra_mock::PrefixCache::new(1_000_000, Duration::from_micros(50));
/// assert_eq!(p.capacity_tokens, 1_000_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrefixCache {
    /// Tokens the cache holds (rounded down to whole blocks).
    pub capacity_tokens: u64,
    /// Time to prefill one uncached prompt token.
    pub prefill_per_token: Duration,
}

impl PrefixCache {
    /// A cache of `capacity_tokens` with this prefill cost per uncached token.
    pub fn new(capacity_tokens: u64, prefill_per_token: Duration) -> Self {
        Self {
            capacity_tokens,
            prefill_per_token,
        }
    }
}

/// What one prompt cost: tokens found in the cache and tokens prefilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Lookup {
    pub cached_tokens: u64,
    pub prefilled_tokens: u64,
}

/// The blocks of one server, least recently used first out.
pub(crate) struct BlockCache {
    capacity_blocks: usize,
    clock: u64,
    /// Block key → last use.
    last_use: HashMap<u64, u64>,
    /// Last use → block key (each use stamp is unique).
    by_age: BTreeMap<u64, u64>,
}

impl BlockCache {
    pub fn new(capacity_tokens: u64) -> Self {
        Self {
            capacity_blocks: usize::try_from(capacity_tokens / (BLOCK_BYTES as u64 / 4))
                .unwrap_or(usize::MAX),
            clock: 0,
            last_use: HashMap::new(),
            by_age: BTreeMap::new(),
        }
    }

    /// Looks the prompt up and caches its full blocks. Memory stays within
    /// `capacity_blocks` entries whatever the prompts.
    pub fn admit(&mut self, parts: &[&[u8]]) -> Lookup {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let full_blocks = total / BLOCK_BYTES;
        let mut out = Lookup::default();
        let mut chain = 0u64;
        let mut missed = false;
        let mut bytes = parts.iter().flat_map(|p| p.iter().copied());
        let mut block = [0u8; BLOCK_BYTES];
        for _ in 0..full_blocks {
            for b in block.iter_mut() {
                *b = bytes.next().unwrap_or(0);
            }
            chain = splitmix64(chain ^ fnv1a64(&block));
            let hit = !missed && self.last_use.contains_key(&chain);
            missed |= !hit;
            let tokens = (BLOCK_BYTES / 4) as u64;
            if hit {
                out.cached_tokens += tokens;
            } else {
                out.prefilled_tokens += tokens;
            }
            self.touch(chain);
        }
        out.prefilled_tokens += ((total - full_blocks * BLOCK_BYTES) as u64).div_ceil(4);
        out
    }

    fn touch(&mut self, key: u64) {
        if self.capacity_blocks == 0 {
            return;
        }
        self.clock += 1;
        if let Some(old) = self.last_use.insert(key, self.clock) {
            self.by_age.remove(&old);
        }
        self.by_age.insert(self.clock, key);
        while self.last_use.len() > self.capacity_blocks {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            self.last_use.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(c: &mut BlockCache, s: &str) -> Lookup {
        c.admit(&[s.as_bytes()])
    }

    #[test]
    fn a_shared_prefix_is_prefilled_once() {
        let mut c = BlockCache::new(1_000_000);
        let prefix = "p".repeat(BLOCK_BYTES * 10);
        let a = admit(&mut c, &format!("{prefix}{}", "a".repeat(BLOCK_BYTES * 2)));
        assert_eq!(a.cached_tokens, 0);
        assert_eq!(a.prefilled_tokens, 12 * 16);
        let b = admit(
            &mut c,
            &format!("{prefix}{}", "b".repeat(BLOCK_BYTES * 2 + 3)),
        );
        assert_eq!(b.cached_tokens, 10 * 16, "the shared blocks hit");
        assert_eq!(
            b.prefilled_tokens,
            2 * 16 + 1,
            "the rest and the partial block"
        );
        // A block equal to a cached one but after a different prefix is a miss.
        let c2 = admit(&mut c, &format!("x{}", &prefix[1..]));
        assert_eq!(c2.cached_tokens, 0);
    }

    #[test]
    fn parts_are_one_stream_and_the_oldest_blocks_are_evicted() {
        let mut c = BlockCache::new(4 * 16);
        let s = "q".repeat(BLOCK_BYTES * 3);
        admit(&mut c, &s);
        let split = c.admit(&[&s.as_bytes()[..10], &s.as_bytes()[10..]]);
        assert_eq!(split.cached_tokens, 3 * 16);
        // Four more blocks push the first prompt out.
        admit(&mut c, &"r".repeat(BLOCK_BYTES * 4));
        assert_eq!(admit(&mut c, &s).cached_tokens, 0);
        assert!(c.last_use.len() <= 4 && c.by_age.len() == c.last_use.len());
    }
}
