//! A fixed-size Bloom filter of companies that may be in the proposal to
//! strike off: "no" is certain, "maybe" costs one store lookup.
//!
//! Most company events are for companies that were never in the proposal;
//! without the filter each of them, once out of the tracker's cache, would
//! cost a SQLite point query on the core loop. Its size follows the number
//! of companies in the proposal (10 bits each, a power of two) between
//! 128 KiB and 4 MiB, so it is small for a small register and bounded for any:
//! past its design load it only answers "maybe" more often, and the tracker
//! rebuilds it from the store (see [`super::proposals`]).

use std::hash::{BuildHasher, RandomState};

const MIN_BITS: usize = 1 << 20;
const MAX_BITS: usize = 1 << 25;
/// Bits per company at the design load: with 7 hashes, under 1 % false
/// "maybe"s ((1 - e^(-7/10))^7 ≈ 0.008).
const BITS_PER_COMPANY: usize = 10;
/// Bit positions per company.
const HASHES: u64 = 7;

#[derive(Clone)]
pub struct ProposalFilter {
    words: Vec<u64>,
    bits: u64,
    hasher: RandomState,
    /// Companies added since the filter was built (duplicates included).
    added: u64,
}

impl std::fmt::Debug for ProposalFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProposalFilter").field("added", &self.added).finish_non_exhaustive()
    }
}

impl ProposalFilter {
    /// A filter for about `companies` companies (at least ~100,000, at most
    /// [`Self::max_load`]'s worth).
    pub fn for_load(companies: u64) -> Self {
        let wanted = usize::try_from(companies).unwrap_or(usize::MAX).saturating_mul(BITS_PER_COMPANY);
        let bits = wanted.checked_next_power_of_two().unwrap_or(MAX_BITS).clamp(MIN_BITS, MAX_BITS);
        Self { words: vec![0; bits / 64], bits: bits as u64, hasher: RandomState::new(), added: 0 }
    }

    /// The companies this filter is sized for.
    pub fn design_load(&self) -> u64 {
        self.bits / BITS_PER_COMPANY as u64
    }

    /// Whether a larger filter would be no larger than this one.
    pub fn is_largest(&self) -> bool {
        self.bits as usize >= MAX_BITS
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
        let bits = self.bits;
        (0..HASHES).map(move |i| (a.wrapping_add(i.wrapping_mul(b)) % bits) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_says_no_to_an_inserted_company_and_rarely_yes_to_others() {
        let mut f = ProposalFilter::for_load(100_000);
        assert!(f.design_load() >= 100_000, "{}", f.design_load());
        for i in 0..100_000 {
            f.insert(&format!("IN{i:06}"));
        }
        assert!((0..100_000).all(|i| f.may_contain(&format!("IN{i:06}"))));
        let false_maybes = (0..100_000).filter(|i| f.may_contain(&format!("OUT{i:06}"))).count();
        // Expected about 1 % at the design load; 3 % would be a broken hash.
        assert!(false_maybes < 3_000, "{false_maybes}");
        assert_eq!(f.added(), 100_000);
    }

    #[test]
    fn its_size_follows_the_load_within_bounds() {
        assert_eq!(ProposalFilter::for_load(0).words.len() * 8, 128 << 10);
        assert_eq!(ProposalFilter::for_load(1_000_000).words.len() * 8, 2 << 20);
        assert_eq!(ProposalFilter::for_load(u64::MAX).words.len() * 8, 4 << 20);
        assert!(ProposalFilter::for_load(u64::MAX).is_largest());
    }
}
