//! Strike-off changes: a company entering or leaving the proposal to strike
//! off, as the tracker that saw the events decided it. They travel as
//! messages of their own ([`crate::FeedMsgKind::StrikeOff`]) because only the
//! side that saw the company's whole history can tell a change: a viewer
//! that joins a relay's stream late must not guess one from the last hour.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What changed for one company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrikeOffChange {
    pub kind: ChangeKind,
    pub company_number: String,
    pub company_name: String,
    /// The company's state before this change, as the tracker knew it when
    /// it saw the change (from memory or, after a restart or an eviction,
    /// the database). `None` when there was none to know: the company was
    /// first seen by this change (or deleted since, or the database could
    /// not be read). Stored as it is; shown as [`UNKNOWN_STATE`].
    pub from_status: Option<String>,
    pub from_detail: Option<String>,
    pub to_status: String,
    pub to_detail: Option<String>,
    pub published_at: Option<DateTime<Utc>>,
    pub timepoint: i64,
    pub received_at: DateTime<Utc>,
}

/// How a previous state that is not known is written, on the screen and in
/// `feedtop strike-offs`: a question mark claims nothing (the company was
/// first seen entering, or the database could not say), where a reason such
/// as "first seen" would not always be true.
pub const UNKNOWN_STATE: &str = "?";

/// `status/detail`, or just `status` when there is no detail.
pub fn state_text(status: &str, detail: Option<&str>) -> String {
    match detail {
        None => status.to_string(),
        Some(d) => format!("{status}/{d}"),
    }
}

impl StrikeOffChange {
    /// `from → to` in full: the one text the strike-off pane and the
    /// `feedtop strike-offs` table both show, so they cannot disagree.
    pub fn transition(&self) -> String {
        self.transition_with(state_text)
    }

    /// `from → to` with each state written by `state` (the pane's compact
    /// form); an unknown `from` is [`UNKNOWN_STATE`].
    pub fn transition_with(&self, state: fn(&str, Option<&str>) -> String) -> String {
        let from = match &self.from_status {
            Some(status) => state(status, self.from_detail.as_deref()),
            None => UNKNOWN_STATE.to_string(),
        };
        format!("{from} → {}", state(&self.to_status, self.to_detail.as_deref()))
    }
}
