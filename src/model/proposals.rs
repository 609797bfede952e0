//! Which companies are in the proposal to strike off, in bounded memory.
//!
//! The register has hundreds of thousands of companies in the proposal at
//! once, and a long run sees millions of companies; holding them all cost
//! ~100 bytes each (2M companies: RSS 79 → 242 MB). The truth is already in
//! the database: the store writer keeps table `companies` up to date in the
//! same transaction as each event. So memory holds only
//!
//! - an LRU cache of the companies seen most recently (in the proposal or not),
//! - a fixed-size filter of companies that may be in the proposal
//!   ([`ProposalFilter`]), so a company never in it costs no lookup,
//! - the count of companies in the proposal (the header shows it),
//!
//! and everything else is asked of a [`ProposalStore`]: the one read the
//! model makes outside its own memory, injected (a read-only SQLite
//! connection in the pipeline, a map in tests), so `Model::apply` still
//! reads no clock and opens no file itself.
//!
//! **The invariant that makes this correct.** The writer lags the model:
//! a company observed a moment ago may not be committed yet (its event is in
//! the core's backlog, the writer's queue or the batch being written), and
//! the store would give its old state. Every observed event touches its
//! company's cache entry, so an entry is evicted only after `capacity` other
//! companies were observed after it. The pipeline makes `capacity` larger
//! than the most events that can be observed and not yet committed
//! (`app::tracker_capacity`, checked by a test there), so every company
//! whose change is not committed is still in the cache, and a miss can
//! trust the store.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::proposal_filter::ProposalFilter;

/// The store could not answer (the database is gone, locked, damaged).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

/// Where the committed state of every company is kept.
pub trait ProposalStore: Send {
    /// Whether the stored state of `company` is "in the proposal" (false for
    /// a company never stored).
    fn in_proposal(&mut self, company: &str) -> Result<bool, LookupError>;

    /// Calls `each` for every company stored as in the proposal.
    fn for_each_in_proposal(&mut self, each: &mut dyn FnMut(&str)) -> Result<(), LookupError>;
}

/// Shared so that the model stays `Clone` (a paused view is a clone; it
/// never observes, so it never uses the store).
pub type SharedStore = Arc<Mutex<dyn ProposalStore>>;

#[derive(Clone)]
pub struct Proposals {
    /// Company number → in the proposal. Bounded with a store; without one
    /// (tests, tools) it holds every company in the proposal and nothing else.
    cache: LruCache<String, bool>,
    backing: Option<Backing>,
    count: u64,
    lookup_errors: u64,
    /// True while lookups fail, so the failure is logged once per streak.
    failing: bool,
}

#[derive(Clone)]
struct Backing {
    store: SharedStore,
    filter: ProposalFilter,
    /// Rebuild the filter once this many companies were added to it.
    rebuild_at: u64,
}

impl std::fmt::Debug for Proposals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proposals")
            .field("cached", &self.cache.len())
            .field("count", &self.count)
            .field("backed", &self.backing.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Proposals {
    /// Memory only: every company in the proposal is held (as before the store).
    fn default() -> Self {
        Self { cache: LruCache::unbounded(), backing: None, count: 0, lookup_errors: 0, failing: false }
    }
}

impl Proposals {
    /// Backed by `store`, holding at most `capacity` companies in the cache.
    /// Reads the companies in the proposal once (to count them and fill the
    /// filter), without keeping them.
    pub fn with_store(store: SharedStore, capacity: NonZeroUsize) -> Result<Self, LookupError> {
        let mut me = Self {
            cache: LruCache::new(capacity),
            backing: Some(Backing { store, filter: ProposalFilter::for_load(0), rebuild_at: 0 }),
            count: 0,
            lookup_errors: 0,
            failing: false,
        };
        me.count = me.rebuild_filter()?;
        Ok(me)
    }

    /// Companies in the proposal now.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Companies held in memory (the cache); bounded by the capacity when backed.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Lookups that failed (each answered "not in the proposal").
    pub fn lookup_errors(&self) -> u64 {
        self.lookup_errors
    }

    /// Whether `company` is in the proposal, from memory or the store.
    pub fn contains(&mut self, company: &str) -> bool {
        if let Some(&known) = self.cache.get(company) {
            return known;
        }
        let Some(backing) = &mut self.backing else { return false };
        if !backing.filter.may_contain(company) {
            return false;
        }
        let answer = lock(&backing.store).in_proposal(company);
        match answer {
            Ok(known) => {
                self.failing = false;
                known
            }
            Err(e) => {
                self.lookup_errors += 1;
                if !self.failing {
                    self.failing = true;
                    // No alert is better than a false one: an unknown state
                    // reads as "not in the proposal".
                    tracing::warn!("cannot read a company's proposal state from the database: {e}");
                }
                false
            }
        }
    }

    /// Records the state just observed for `company`; `was_in` is what
    /// [`Self::contains`] said before it.
    pub fn set(&mut self, company: &str, was_in: bool, now_in: bool) {
        match (was_in, now_in) {
            (false, true) => self.count += 1,
            (true, false) => self.count = self.count.saturating_sub(1),
            _ => {}
        }
        if self.backing.is_none() && !now_in {
            self.cache.pop(company);
            return;
        }
        // Every observation touches its entry (see the module's invariant).
        match self.cache.get_mut(company) {
            Some(v) => *v = now_in,
            None => {
                self.cache.put(company.to_string(), now_in);
            }
        }
        if now_in && !was_in {
            self.add_to_filter(company);
        }
    }

    fn add_to_filter(&mut self, company: &str) {
        let Some(backing) = &mut self.backing else { return };
        backing.filter.insert(company);
        if backing.filter.added() >= backing.rebuild_at {
            if let Err(e) = self.rebuild_filter() {
                // The old filter still says "maybe" for everything it had:
                // only the false "maybe"s grow until the next try.
                tracing::warn!("cannot rebuild the strike-off filter from the database: {e}");
            }
        }
    }

    /// Refills the filter from the store and the cache (which holds every
    /// change not yet committed), sized for twice the companies in the
    /// proposal. Returns the companies the store has in the proposal.
    fn rebuild_filter(&mut self) -> Result<u64, LookupError> {
        let Some(backing) = &mut self.backing else { return Ok(self.count) };
        let mut expected = self.count;
        loop {
            let mut filter = ProposalFilter::for_load(expected.saturating_mul(2));
            let mut stored = 0u64;
            lock(&backing.store).for_each_in_proposal(&mut |company| {
                filter.insert(company);
                stored += 1;
            })?;
            for (company, _) in self.cache.iter().filter(|(_, in_proposal)| **in_proposal) {
                filter.insert(company);
            }
            // At start-up the count is not known yet: a register larger than
            // the guess is read again into a filter of the right size.
            if filter.added() > filter.design_load() / 2 && !filter.is_largest() {
                expected = filter.added();
                continue;
            }
            // The largest filter past its load would rebuild on every
            // entry: wait for as many entries again.
            backing.rebuild_at = filter.design_load().max(filter.added().saturating_mul(2));
            backing.filter = filter;
            return Ok(stored);
        }
    }
}

fn lock(store: &SharedStore) -> std::sync::MutexGuard<'_, dyn ProposalStore + 'static> {
    // A panic elsewhere while holding it leaves a connection that still works.
    store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
