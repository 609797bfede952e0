//! The strike-off state machine (docs/protocols.md §1.6).
//!
//! `active-proposal-to-strike-off` appears only in `company_status_detail`.
//! Detection compares each company-profile event with the company's last known
//! state; the only state that matters is "is it in the proposal now". That
//! state lives in the database, with recent companies cached in bounded
//! memory ([`Proposals`]), so it survives restarts and does not grow with
//! the register.

use std::num::NonZeroUsize;

use chrono::{DateTime, Utc};

use super::proposals::{Before, LookupError, Proposals, SharedStore};

use feedtop_proto::{ChEvent, EventType};

pub use feedtop_proto::ch::{DISSOLVED, PROPOSAL};

pub use feedtop_proto::strike_off::{state_text, ChangeKind, StrikeOffChange, UNKNOWN_STATE};

/// Counts of changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub entered: u64,
    pub withdrawn: u64,
    pub struck_off: u64,
}

impl Tally {
    pub fn add(&mut self, kind: ChangeKind) {
        match kind {
            ChangeKind::Entered => self.entered += 1,
            ChangeKind::Withdrawn => self.withdrawn += 1,
            ChangeKind::StruckOff => self.struck_off += 1,
        }
    }
}

/// Knows which companies are in the proposal right now. The default holds
/// them all in memory (tests, tools); [`Self::with_store`] keeps memory
/// bounded by asking the database.
#[derive(Debug, Clone, Default)]
pub struct StrikeOffTracker {
    proposals: Proposals,
}

impl StrikeOffTracker {
    /// Backed by the stored state, with at most `capacity` companies in memory
    /// (see [`super::proposals`] for the capacity it needs).
    pub fn with_store(store: SharedStore, capacity: NonZeroUsize) -> Result<Self, LookupError> {
        Ok(Self { proposals: Proposals::with_store(store, capacity)? })
    }

    /// Companies in the proposal now.
    pub fn in_proposal(&self) -> usize {
        self.proposals.count() as usize
    }

    /// Companies held in memory.
    pub fn cached(&self) -> usize {
        self.proposals.cached()
    }

    /// Applies one event and says what changed, if anything. A duplicate of the
    /// current state changes nothing; a company first seen dissolved is not
    /// "struck off by this feed".
    pub fn observe(&mut self, ev: &ChEvent, received_at: DateTime<Utc>) -> Option<StrikeOffChange> {
        if !ev.is_company_profile() {
            return None;
        }
        if ev.event_type == EventType::Deleted {
            let was_in = self.proposals.before(&ev.resource_id, false).in_proposal();
            self.proposals.set(&ev.resource_id, was_in, None);
            return None;
        }
        let company = ev.company.as_ref()?;
        let now_in = company.detail.as_deref() == Some(PROPOSAL);
        // An entry shows where the company came from, so its state is read
        // even when the filter says it was never in the proposal.
        let before = self.proposals.before(&company.number, now_in);
        let was_in = before.in_proposal();
        self.proposals.set(&company.number, was_in, Some((&company.status, company.detail.as_deref())));
        let kind = match (was_in, now_in) {
            (false, true) => ChangeKind::Entered,
            (true, false) if company.status == DISSOLVED => ChangeKind::StruckOff,
            (true, false) => ChangeKind::Withdrawn,
            _ => return None,
        };
        let (from_status, from_detail) = match before {
            Before::Known(s) => (Some(s.status.to_string()), s.detail.map(|d| d.to_string())),
            Before::NotInProposal | Before::Unknown => (None, None),
        };
        Some(StrikeOffChange {
            kind,
            company_number: company.number.clone(),
            company_name: company.name.clone(),
            from_status,
            from_detail,
            to_status: company.status.clone(),
            to_detail: company.detail.clone(),
            published_at: ev.published_at,
            timepoint: ev.timepoint,
            received_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feedtop_proto::ch::parse_event;
    use feedtop_proto::CompanyState;

    fn event(tp: i64, number: &str, status: &str, detail: Option<&str>, kind: EventType) -> ChEvent {
        ChEvent {
            resource_kind: "company-profile".into(),
            resource_id: number.into(),
            timepoint: tp,
            published_at: None,
            event_type: kind,
            company: Some(CompanyState {
                number: number.into(),
                name: format!("{number} LTD"),
                status: status.into(),
                detail: detail.map(str::to_string),
            }),
            raw: String::new(),
        }
    }

    fn kinds(events: &[ChEvent]) -> Vec<Option<ChangeKind>> {
        let mut t = StrikeOffTracker::default();
        events.iter().map(|e| t.observe(e, Utc::now()).map(|c| c.kind)).collect()
    }

    use ChangeKind::*;
    use EventType::*;

    #[test]
    fn scenarios() {
        let p = Some(PROPOSAL);
        type Scenario = (&'static str, Vec<ChEvent>, Vec<Option<ChangeKind>>);
        let table: Vec<Scenario> = vec![
            (
                "enter then withdraw",
                vec![event(1, "A", "active", p, Changed), event(2, "A", "active", None, Changed)],
                vec![Some(Entered), Some(Withdrawn)],
            ),
            (
                "enter then dissolve",
                vec![event(1, "A", "active", p, Changed), event(2, "A", "dissolved", None, Changed)],
                vec![Some(Entered), Some(StruckOff)],
            ),
            (
                "duplicate entry does not re-alert",
                vec![event(1, "A", "active", p, Changed), event(2, "A", "active", p, Changed)],
                vec![Some(Entered), None],
            ),
            ("first seen dissolved is not struck off", vec![event(1, "A", "dissolved", None, Changed)], vec![None]),
            (
                "dissolved with another detail",
                vec![event(1, "A", "dissolved", Some("petition-to-restore-dissolved"), Changed)],
                vec![None],
            ),
            (
                "plain active changes nothing",
                vec![event(1, "A", "active", None, Changed), event(2, "A", "active", None, Changed)],
                vec![None, None],
            ),
            (
                "deleted forgets the proposal",
                vec![
                    event(1, "A", "active", p, Changed),
                    event(2, "A", "active", p, Deleted),
                    event(3, "A", "dissolved", None, Changed),
                ],
                vec![Some(Entered), None, None],
            ),
            (
                "re-entry after withdrawal alerts again",
                vec![
                    event(1, "A", "active", p, Changed),
                    event(2, "A", "active", None, Changed),
                    event(3, "A", "active", p, Changed),
                ],
                vec![Some(Entered), Some(Withdrawn), Some(Entered)],
            ),
            (
                "companies are independent",
                vec![
                    event(1, "A", "active", p, Changed),
                    event(2, "B", "dissolved", None, Changed),
                    event(3, "A", "dissolved", None, Changed),
                ],
                vec![Some(Entered), None, Some(StruckOff)],
            ),
        ];
        for (name, events, want) in table {
            assert_eq!(kinds(&events), want, "{name}");
        }
    }

    /// The committed state, as the store writer leaves it in `companies`,
    /// `lag` events behind the model (its backlog, queue and open batch).
    #[derive(Default)]
    struct LaggingStore {
        committed: std::collections::HashMap<String, (String, Option<String>)>,
        lookups: u64,
    }

    impl super::super::proposals::ProposalStore for LaggingStore {
        fn status(&mut self, company: &str) -> Result<Option<(String, Option<String>)>, LookupError> {
            self.lookups += 1;
            Ok(self.committed.get(company).cloned())
        }

        fn for_each_in_proposal(&mut self, each: &mut dyn FnMut(&str)) -> Result<(), LookupError> {
            self.committed.iter().filter(|(_, (_, d))| d.as_deref() == Some(PROPOSAL)).for_each(|(k, _)| each(k));
            Ok(())
        }
    }

    /// What the writer stores for a company: its status and detail, or
    /// nothing after a deletion.
    type Committed = Option<(String, Option<String>)>;

    struct Harness {
        tracker: StrikeOffTracker,
        store: std::sync::Arc<std::sync::Mutex<LaggingStore>>,
        uncommitted: std::collections::VecDeque<(String, Committed)>,
        lag: usize,
    }

    impl Harness {
        /// `committed`: companies stored as in the proposal (`true`) or
        /// plain `active` (`false`).
        fn new(committed: &[(&str, bool)], capacity: usize, lag: usize) -> Self {
            let state = |in_proposal: bool| ("active".to_string(), in_proposal.then(|| PROPOSAL.to_string()));
            let store = std::sync::Arc::new(std::sync::Mutex::new(LaggingStore {
                committed: committed.iter().map(|(k, v)| (k.to_string(), state(*v))).collect(),
                lookups: 0,
            }));
            let shared: SharedStore = store.clone();
            let tracker = StrikeOffTracker::with_store(shared, NonZeroUsize::new(capacity).unwrap()).unwrap();
            Self { tracker, store, uncommitted: Default::default(), lag }
        }

        /// The model observes; the "writer" commits what is `lag` events old.
        fn observe(&mut self, ev: ChEvent) -> Option<ChangeKind> {
            self.observe_change(ev).map(|c| c.kind)
        }

        fn observe_change(&mut self, ev: ChEvent) -> Option<StrikeOffChange> {
            let change = self.tracker.observe(&ev, Utc::now());
            let state = match ev.event_type {
                Deleted => None,
                _ => ev.company.as_ref().map(|c| (c.status.clone(), c.detail.clone())),
            };
            self.uncommitted.push_back((ev.resource_id.clone(), state));
            while self.uncommitted.len() > self.lag {
                let (company, state) = self.uncommitted.pop_front().unwrap();
                let mut store = self.store.lock().unwrap();
                match state {
                    Some(state) => store.committed.insert(company, state),
                    None => store.committed.remove(&company),
                };
            }
            change
        }

        fn lookups(&self) -> u64 {
            self.store.lock().unwrap().lookups
        }
    }

    #[test]
    fn state_survives_a_restart_through_the_store() {
        let mut h = Harness::new(&[("A", true), ("B", false)], 100, 0);
        assert_eq!(h.tracker.in_proposal(), 1, "counted from the store at start");
        let c = h.tracker.observe(&event(9, "A", "dissolved", None, Changed), Utc::now()).unwrap();
        assert_eq!(c.kind, StruckOff);
        assert_eq!(c.from_detail.as_deref(), Some(PROPOSAL));
        assert_eq!(c.to_status, "dissolved");
        assert_eq!(h.observe(event(10, "B", "dissolved", None, Changed)), None, "B was never in the proposal");
        assert_eq!(h.tracker.in_proposal(), 0);
    }

    fn from(c: &StrikeOffChange) -> (Option<&str>, Option<&str>) {
        (c.from_status.as_deref(), c.from_detail.as_deref())
    }

    /// The change carries the state the company was in, as the tracker knew
    /// it: nothing for a company first seen entering, its last observed
    /// state otherwise (the old tracker knew no `from` for any entry and
    /// wrote every exit as from `active`, leaving the rest to SQL).
    #[test]
    fn a_change_carries_the_state_it_came_from() {
        let mut t = StrikeOffTracker::default();
        let p = Some(PROPOSAL);
        let mut see = |e: ChEvent| t.observe(&e, Utc::now());
        let first = see(event(1, "NEW", "active", p, Changed)).unwrap();
        assert_eq!((first.kind, from(&first)), (Entered, (None, None)), "first seen: not known");
        assert_eq!(first.transition(), "? → active/active-proposal-to-strike-off");

        assert_eq!(see(event(2, "OLD", "active", Some("transferred-from-uk"), Changed)), None);
        let entered = see(event(3, "OLD", "active", p, Changed)).unwrap();
        assert_eq!(from(&entered), (Some("active"), Some("transferred-from-uk")));
        let left = see(event(4, "OLD", "liquidation", None, Changed)).unwrap();
        assert_eq!((left.kind, from(&left)), (Withdrawn, (Some("active"), p)));
        let back = see(event(5, "OLD", "active", p, Changed)).unwrap();
        assert_eq!(from(&back), (Some("liquidation"), None), "the state it left for");

        // A deletion forgets the company, in memory as in the store.
        see(event(6, "GONE", "active", None, Changed));
        see(event(7, "GONE", "active", None, Deleted));
        assert_eq!(from(&see(event(8, "GONE", "active", p, Changed)).unwrap()), (None, None));
    }

    /// After a restart (or once evicted from the cache) the previous state
    /// comes from the store, for an entry as for an exit; a company the
    /// store has never seen is still unknown.
    #[test]
    fn after_a_restart_the_previous_state_comes_from_the_store() {
        let mut h = Harness::new(&[("IN", true), ("OUT", false)], 100, 0);
        let p = Some(PROPOSAL);
        let entered = h.observe_change(event(1, "OUT", "active", p, Changed)).unwrap();
        assert_eq!((entered.kind, from(&entered)), (Entered, (Some("active"), None)));
        let struck = h.observe_change(event(2, "IN", "dissolved", None, Changed)).unwrap();
        assert_eq!((struck.kind, from(&struck)), (StruckOff, (Some("active"), p)));
        let unknown = h.observe_change(event(3, "NEVER", "active", p, Changed)).unwrap();
        assert_eq!(from(&unknown), (None, None));

        // Evicted long ago, read back from what the writer committed.
        let mut h = Harness::new(&[], 10, 0);
        h.observe(event(1, "X", "active", Some("petition-to-restore-dissolved"), Changed));
        for i in 0..50 {
            h.observe(event(2 + i, &format!("N{i}"), "active", None, Changed));
        }
        let lookups = h.lookups();
        let entered = h.observe_change(event(100, "X", "active", p, Changed)).unwrap();
        assert_eq!(from(&entered), (Some("active"), Some("petition-to-restore-dissolved")));
        assert_eq!(h.lookups(), lookups + 1, "one lookup for the entry");
    }

    /// Memory stays bounded by the cache after ten times its capacity of
    /// companies entered (the old tracker held every one of them), and a
    /// company that entered long ago, long evicted, is still reported when
    /// it leaves: its state comes from the store.
    #[test]
    fn memory_is_bounded_and_evicted_companies_are_still_detected() {
        const CAPACITY: usize = 1_000;
        let mut h = Harness::new(&[], CAPACITY, 100);
        let p = Some(PROPOSAL);
        for i in 0..10 * CAPACITY {
            assert_eq!(h.observe(event(i as i64, &format!("C{i:07}"), "active", p, Changed)), Some(Entered));
            assert!(h.tracker.cached() <= CAPACITY, "{} companies held after {i}", h.tracker.cached());
        }
        assert_eq!(h.tracker.in_proposal(), 10 * CAPACITY);
        let tp = 20 * CAPACITY as i64;
        assert_eq!(h.observe(event(tp, "C0000000", "dissolved", None, Changed)), Some(StruckOff));
        assert_eq!(h.observe(event(tp + 1, "C0000001", "active", None, Changed)), Some(Withdrawn));
        assert_eq!(h.observe(event(tp + 2, "C0000002", "active", p, Changed)), None, "still in: no re-alert");
        assert_eq!(h.observe(event(tp + 3, "C0000003", "active", p, Deleted)), None);
        assert_eq!(h.observe(event(tp + 4, "C0000003", "dissolved", None, Changed)), None, "deleted forgets");
        assert_eq!(h.tracker.in_proposal(), 10 * CAPACITY - 3);
        assert!(h.tracker.cached() <= CAPACITY);
    }

    /// The writer lags: a company whose entry is not committed yet must
    /// not be read from the store (which still says "not in the proposal").
    #[test]
    fn an_uncommitted_change_is_answered_from_memory() {
        let capacity = 50;
        // Everything up to just under the capacity is uncommitted.
        let mut h = Harness::new(&[], capacity, capacity - 1);
        let p = Some(PROPOSAL);
        assert_eq!(h.observe(event(1, "X", "active", p, Changed)), Some(Entered));
        for i in 0..capacity - 2 {
            h.observe(event(2 + i as i64, &format!("N{i}"), "active", None, Changed));
        }
        assert!(!h.store.lock().unwrap().committed.contains_key("X"), "X's entry is not committed yet");
        assert_eq!(h.observe(event(100, "X", "dissolved", None, Changed)), Some(StruckOff));
    }

    /// Companies never in the proposal cost no store lookup (the filter
    /// says so), so a catch-up of ordinary changes stays in memory.
    #[test]
    fn companies_never_in_the_proposal_are_not_looked_up() {
        let mut h = Harness::new(&[("OLD", true)], 10, 0);
        for i in 0..1_000 {
            h.observe(event(i, &format!("N{i}"), "active", None, Changed));
        }
        assert!(h.lookups() < 10, "{} lookups for 1,000 ordinary companies", h.lookups());
        assert_eq!(h.observe(event(2_000, "OLD", "active", None, Changed)), Some(Withdrawn));
    }

    #[test]
    fn fixture_tallies_match_the_readme() {
        let fixture = include_str!("../../tests/fixtures/ch-companies-sample.ndjson");
        let mut t = StrikeOffTracker::default();
        let mut tally = Tally::default();
        let mut changes = Vec::new();
        for line in fixture.lines().filter(|l| !l.trim().is_empty()) {
            if let Ok(ev) = parse_event(line.as_bytes().to_vec()) {
                if let Some(c) = t.observe(&ev, Utc::now()) {
                    tally.add(c.kind);
                    changes.push((c.company_number, c.kind));
                }
            }
        }
        assert_eq!(tally, Tally { entered: 6, withdrawn: 3, struck_off: 2 });
        let struck: Vec<_> = changes.iter().filter(|c| c.1 == StruckOff).map(|c| c.0.as_str()).collect();
        assert_eq!(struck, ["14829301", "12007733"]);
    }
}
