//! A fixed-size Bloom filter of companies that may be in the proposal to
//! strike off: "no" is certain, "maybe" costs one store lookup.
//!
//! Most company events are for companies that were never in the proposal;
//! without the filter each of them, once out of the tracker's cache, would
//! cost a SQLite point query on the core loop. The filter has a fixed size
//! (4 MiB) whatever the number of companies: past its design load it only
//! answers "maybe" more often, and the tracker rebuilds it from the store
//! (see [`super::proposals`]).

use std::hash::{BuildHasher, RandomState};

/// Bits in the filter: 2^25 (4 MiB).
const BITS: usize = 1 << 25;
/// Bit positions per company.
const HASHES: u64 = 7;
/// The load for about 1 % false "maybe"s with these sizes
/// ((1 - e^(-7·3.5M/2^25))^7 ≈ 0.01); past it the filter is rebuilt.
pub const DESIGN_LOAD: u64 = 3_500_000;

#[derive(Clone)]
pub struct ProposalFilter {
    words: Vec<u64>,
    hasher: RandomState,
    /// Companies added since the filter was built (duplicates included).
    added: u64,
}

impl std::fmt::Debug for ProposalFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProposalFilter").field("added", &self.added).finish_non_exhaustive()
    }
}

impl Default for ProposalFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl ProposalFilter {
    pub fn new() -> Self {
        // Zeroed memory: pages are only made resident as bits are set.
        Self { words: vec![0; BITS / 64], hasher: RandomState::new(), added: 0 }
    }

    pub fn insert(&mut self, company: &str) {
        for bit in self.bits(company) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
        self.added += 1;
    }

    /// False only for a company never inserted.
    pub fn may_contain(&self, company: &str) -> bool {
        self.bits(company).all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    pub fn added(&self) -> u64 {
        self.added
    }

    /// Double hashing (Kirsch–Mitzenmacher): the positions come from two
    /// halves of one 64-bit hash.
    fn bits(&self, company: &str) -> impl Iterator<Item = usize> {
        let h = self.hasher.hash_one(company);
        let (a, b) = (h & 0xffff_ffff, (h >> 32) | 1);
        (0..HASHES).map(move |i| (a.wrapping_add(i.wrapping_mul(b)) % BITS as u64) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_says_no_to_an_inserted_company_and_rarely_yes_to_others() {
        let mut f = ProposalFilter::new();
        for i in 0..100_000 {
            f.insert(&format!("IN{i:06}"));
        }
        assert!((0..100_000).all(|i| f.may_contain(&format!("IN{i:06}"))));
        let false_maybes = (0..100_000).filter(|i| f.may_contain(&format!("OUT{i:06}"))).count();
        // Expected ≈ 0 at 3 % of the design load; 100 would be a broken hash.
        assert!(false_maybes < 100, "{false_maybes}");
        assert_eq!(f.added(), 100_000);
    }
}
