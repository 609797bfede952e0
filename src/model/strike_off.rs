//! The strike-off state machine (protocols.md §1, "Strike-off").
//!
//! `active-proposal-to-strike-off` appears only in `company_status_detail`.
//! Detection compares each company-profile event with the company's last known
//! state; the only state that matters is "is it in the proposal now", so the
//! tracker holds just the set of companies currently in the proposal (loaded
//! from the database at start-up, so it survives restarts).

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::feeds::{ChEvent, EventType};

pub const PROPOSAL: &str = "active-proposal-to-strike-off";
pub const DISSOLVED: &str = "dissolved";

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

/// Remembers which companies are in the proposal right now.
#[derive(Debug, Clone, Default)]
pub struct StrikeOffTracker {
    in_proposal: HashSet<String>,
}

impl StrikeOffTracker {
    pub fn from_companies(in_proposal: impl IntoIterator<Item = String>) -> Self {
        Self { in_proposal: in_proposal.into_iter().collect() }
    }

    pub fn in_proposal(&self) -> usize {
        self.in_proposal.len()
    }

    /// Applies one event and says what changed, if anything. A duplicate of the
    /// current state changes nothing; a company first seen dissolved is not
    /// "struck off by this feed".
    pub fn observe(&mut self, ev: &ChEvent, received_at: DateTime<Utc>) -> Option<StrikeOffChange> {
        if !ev.is_company_profile() {
            return None;
        }
        if ev.event_type == EventType::Deleted {
            self.in_proposal.remove(&ev.resource_id);
            return None;
        }
        let company = ev.company.as_ref()?;
        let was_in = self.in_proposal.contains(&company.number);
        let now_in = company.detail.as_deref() == Some(PROPOSAL);
        let kind = match (was_in, now_in) {
            (false, true) => {
                self.in_proposal.insert(company.number.clone());
                ChangeKind::Entered
            }
            (true, false) => {
                self.in_proposal.remove(&company.number);
                if company.status == DISSOLVED {
                    ChangeKind::StruckOff
                } else {
                    ChangeKind::Withdrawn
                }
            }
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
    use crate::feeds::companies_house::parse_event;
    use crate::feeds::CompanyState;

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

    #[test]
    fn state_survives_a_restart_through_the_loaded_set() {
        let mut t = StrikeOffTracker::from_companies(["A".to_string()]);
        let c = t.observe(&event(9, "A", "dissolved", None, Changed), Utc::now()).unwrap();
        assert_eq!(c.kind, StruckOff);
        assert_eq!(c.from_detail.as_deref(), Some(PROPOSAL));
        assert_eq!(c.to_status, "dissolved");
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
