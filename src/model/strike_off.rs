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

use super::proposals::{LookupError, Proposals, SharedStore};

use feedtop_proto::{ChEvent, EventType};

pub use feedtop_proto::ch::{DISSOLVED, PROPOSAL};

/// What changed for one company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// The company entered the proposal to strike off.
    Entered,
    /// It left the proposal and was not dissolved (accounts filed, objection, suspension).
    Withdrawn,
    /// Proposal → dissolved.
    StruckOff,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Entered => "entered",
            ChangeKind::Withdrawn => "withdrawn",
            ChangeKind::StruckOff => "struck-off",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "entered" => Some(ChangeKind::Entered),
            "withdrawn" => Some(ChangeKind::Withdrawn),
            "struck-off" => Some(ChangeKind::StruckOff),
            _ => None,
        }
    }
}

/// One recorded change, as shown in the pane and stored in `strike_offs`.
#[derive(Debug, Clone, PartialEq)]
pub struct StrikeOffChange {
    pub kind: ChangeKind,
    pub company_number: String,
    pub company_name: String,
    /// `None` when the previous state is not known to the tracker (an entry
    /// from a company never seen before); the store fills it from its table.
    pub from_status: Option<String>,
    pub from_detail: Option<String>,
    pub to_status: String,
    pub to_detail: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub timepoint: i64,
    pub received_at: DateTime<Utc>,
}

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
            let was_in = self.proposals.contains(&ev.resource_id);
            self.proposals.set(&ev.resource_id, was_in, false);
            return None;
        }
        let company = ev.company.as_ref()?;
        let was_in = self.proposals.contains(&company.number);
        let now_in = company.detail.as_deref() == Some(PROPOSAL);
        self.proposals.set(&company.number, was_in, now_in);
        let kind = match (was_in, now_in) {
            (false, true) => ChangeKind::Entered,
            (true, false) if company.status == DISSOLVED => ChangeKind::StruckOff,
            (true, false) => ChangeKind::Withdrawn,
            _ => return None,
        };
        let (from_status, from_detail) = match kind {
            ChangeKind::Entered => (None, None),
            _ => (Some("active".to_string()), Some(PROPOSAL.to_string())),
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
        committed: std::collections::HashMap<String, bool>,
        lookups: u64,
    }

    impl super::super::proposals::ProposalStore for LaggingStore {
        fn in_proposal(&mut self, company: &str) -> Result<bool, LookupError> {
            self.lookups += 1;
            Ok(self.committed.get(company).copied().unwrap_or(false))
        }

        fn for_each_in_proposal(&mut self, each: &mut dyn FnMut(&str)) -> Result<(), LookupError> {
            self.committed.iter().filter(|(_, v)| **v).for_each(|(k, _)| each(k));
            Ok(())
        }
    }

    struct Harness {
        tracker: StrikeOffTracker,
        store: std::sync::Arc<std::sync::Mutex<LaggingStore>>,
        uncommitted: std::collections::VecDeque<(String, bool)>,
        lag: usize,
    }

    impl Harness {
        fn new(committed: &[(&str, bool)], capacity: usize, lag: usize) -> Self {
            let store = std::sync::Arc::new(std::sync::Mutex::new(LaggingStore {
                committed: committed.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                lookups: 0,
            }));
            let shared: SharedStore = store.clone();
            let tracker = StrikeOffTracker::with_store(shared, NonZeroUsize::new(capacity).unwrap()).unwrap();
            Self { tracker, store, uncommitted: Default::default(), lag }
        }

        /// The model observes; the "writer" commits what is `lag` events old.
        fn observe(&mut self, ev: ChEvent) -> Option<ChangeKind> {
            let change = self.tracker.observe(&ev, Utc::now()).map(|c| c.kind);
            let now_in = ev.event_type != Deleted && ev.company.as_ref().unwrap().detail.as_deref() == Some(PROPOSAL);
            self.uncommitted.push_back((ev.resource_id.clone(), now_in));
            while self.uncommitted.len() > self.lag {
                let (company, state) = self.uncommitted.pop_front().unwrap();
                self.store.lock().unwrap().committed.insert(company, state);
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
