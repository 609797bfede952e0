//! Which companies are in the proposal to strike off, in bounded memory.
//!
//! The register has hundreds of thousands of companies in the proposal at
//! once, and a long run sees millions of companies; holding them all cost
//! ~100 bytes each (2M companies: RSS 79 → 242 MB). The truth is already in
//! the database: the store writer keeps table `companies` up to date in the
//! same transaction as each event. So memory holds only
//!
//! - an LRU cache of the companies seen most recently (in the proposal or not)
//!   with their last status and detail, so a change knows where the company
//!   came from (its `from`) without asking the database,
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
//! trust the store: for whether a company is in the proposal, and for the
//! state a change comes from.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use feedtop_proto::ch::PROPOSAL;
use lru::LruCache;

use super::proposal_filter::ProposalFilter;

/// The store could not answer (the database is gone, locked, damaged).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

/// A stored company's status and detail.
pub type StoredStatus = (String, Option<String>);

/// Where the committed state of every company is kept.
pub trait ProposalStore: Send {
    /// The stored status and detail of `company`; `None` for a company
    /// never stored (or deleted since).
    fn status(&mut self, company: &str) -> Result<Option<StoredStatus>, LookupError>;

    /// Calls `each` for every company stored as in the proposal.
    fn for_each_in_proposal(&mut self, each: &mut dyn FnMut(&str)) -> Result<(), LookupError>;
}

/// Shared so that the model stays `Clone` (a paused view is a clone; it
/// never observes, so it never uses the store).
pub type SharedStore = Arc<Mutex<dyn ProposalStore>>;

/// A company's status and detail as last observed or stored. The texts
/// are shared ([`Texts`]): an entry costs two pointers, not two strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub status: Arc<str>,
    pub detail: Option<Arc<str>>,
}

impl Status {
    pub fn in_proposal(&self) -> bool {
        self.detail.as_deref() == Some(PROPOSAL)
    }
}

/// What is known of a company just before an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Before {
    /// Its last state, from memory or the store.
    Known(Status),
    /// Not in the proposal (the filter rules it out); its state was not read.
    NotInProposal,
    /// Never seen (or deleted since), or the store could not answer.
    Unknown,
}

impl Before {
    pub fn in_proposal(&self) -> bool {
        matches!(self, Before::Known(s) if s.in_proposal())
    }
}

/// Shares the texts of statuses and details: the register uses a few dozen,
/// so each cache entry points at one copy of each. Bounded, so that a feed
/// sending a new status on every event cannot grow it: past [`MAX_TEXTS`]
/// distinct texts, a new one gets its own copy.
#[derive(Clone, Default)]
struct Texts(HashSet<Arc<str>>);

const MAX_TEXTS: usize = 256;

/// The longest status or detail kept, in bytes. The register's longest is
/// under 40; a line may be megabytes, and the cache holds tens of thousands
/// of companies, so a hostile feed's text is kept cut, not whole.
const MAX_TEXT_BYTES: usize = 64;

impl Texts {
    fn get(&mut self, text: &str) -> Arc<str> {
        let mut end = text.len().min(MAX_TEXT_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let text = &text[..end];
        if let Some(shared) = self.0.get(text) {
            return shared.clone();
        }
        let text: Arc<str> = Arc::from(text);
        if self.0.len() < MAX_TEXTS {
            self.0.insert(text.clone());
        }
        text
    }

    fn status(&mut self, status: &str, detail: Option<&str>) -> Status {
        Status { status: self.get(status), detail: detail.map(|d| self.get(d)) }
    }
}

#[derive(Clone)]
pub struct Proposals {
    /// Company number → its last state (`None`: deleted, as in the store).
    /// Bounded with a store; without one (tests, tools) it holds every
    /// company seen.
    cache: LruCache<String, Option<Status>>,
    texts: Texts,
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
    /// Memory only: every company seen is held, with its last state.
    fn default() -> Self {
        Self {
            cache: LruCache::unbounded(),
            texts: Texts::default(),
            backing: None,
            count: 0,
            lookup_errors: 0,
            failing: false,
        }
    }
}

impl Proposals {
    /// Backed by `store`, holding at most `capacity` companies in the cache.
    /// Reads the companies in the proposal once (to count them and fill the
    /// filter), without keeping them.
    pub fn with_store(store: SharedStore, capacity: NonZeroUsize) -> Result<Self, LookupError> {
        let mut me = Self {
            cache: LruCache::new(capacity),
            texts: Texts::default(),
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

    /// What is known of `company` before an event: from memory, or else
    /// from the store. `need_state`: read the stored state even when the
    /// filter rules the proposal out (an entry, which shows where the company
    /// came from); otherwise such a company costs no lookup.
    pub fn before(&mut self, company: &str, need_state: bool) -> Before {
        if let Some(known) = self.cache.get(company) {
            return known.clone().map_or(Before::Unknown, Before::Known);
        }
        let Some(backing) = &mut self.backing else { return Before::Unknown };
        if !need_state && !backing.filter.may_contain(company) {
            return Before::NotInProposal;
        }
        let answer = lock(&backing.store).status(company);
        match answer {
            Ok(stored) => {
                self.failing = false;
                match stored {
                    Some((status, detail)) => Before::Known(self.texts.status(&status, detail.as_deref())),
                    None => Before::Unknown,
                }
            }
            Err(e) => {
                self.lookup_errors += 1;
                if !self.failing {
                    self.failing = true;
                    // No alert is better than a false one: an unknown state
                    // reads as "not in the proposal".
                    tracing::warn!("cannot read a company's proposal state from the database: {e}");
                }
                Before::Unknown
            }
        }
    }

    /// Records the state just observed for `company` (`None`: deleted);
    /// `was_in` is what [`Self::before`] said before it.
    pub fn set(&mut self, company: &str, was_in: bool, now: Option<(&str, Option<&str>)>) {
        let now_in = now.is_some_and(|(_, detail)| detail == Some(PROPOSAL));
        match (was_in, now_in) {
            (false, true) => self.count += 1,
            (true, false) => self.count = self.count.saturating_sub(1),
            _ => {}
        }
        if self.backing.is_none() && now.is_none() {
            self.cache.pop(company);
            return;
        }
        let state = now.map(|(status, detail)| self.texts.status(status, detail));
        // Every observation touches its entry (see the module's invariant).
        match self.cache.get_mut(company) {
            Some(v) => *v = state,
            None => {
                self.cache.put(company.to_string(), state);
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
            let cached = self.cache.iter().filter(|(_, state)| state.as_ref().is_some_and(Status::in_proposal));
            for (company, _) in cached {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A feed's statuses are untrusted: each kept text is short, and the
    /// shared set stays bounded however many different ones come.
    #[test]
    fn kept_texts_are_bounded() {
        let mut p = Proposals::default();
        let huge = "é".repeat(1 << 20);
        p.set("A", false, Some((&huge, Some(PROPOSAL))));
        let Before::Known(a) = p.before("A", true) else { panic!("A is known") };
        assert!(a.in_proposal());
        assert!(a.status.len() <= MAX_TEXT_BYTES && huge.starts_with(&*a.status), "{}", a.status.len());
        for i in 0..10 * MAX_TEXTS {
            p.set(&format!("C{i}"), false, Some((&format!("status-{i}"), None)));
        }
        assert_eq!(p.texts.0.len(), MAX_TEXTS);
        let Before::Known(c) = p.before("C2000", true) else { panic!("C2000 is known") };
        assert_eq!(&*c.status, "status-2000", "past the shared set, still kept");
        assert_eq!(p.count(), 1);
    }
}
