//! Alerts: `[[alerts]]` rules in the config file, evaluated in the pipeline
//! (the one place both front ends go through), so an alert is raised once
//! whatever the view does (paused, help open) and whichever front end runs.
//!
//! - [`rules`]: reading and checking the rules at start (line and key on error);
//! - [`engine`]: deciding when a rule fires, from the model's strike-off
//!   changes, feed states and quotes, with times injected (exact tests);
//! - [`exec`]: running a rule's program (no shell, rate-limited, timed out).
//!
//! Every alert is a Log line, a stored row (`alerts` table), an entry of the
//! next headless line's `alerts` array and of the TUI's alerts list; `bell`
//! and `flash` are for the TUI.

pub mod engine;
pub mod exec;
pub mod rules;

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use engine::Engine;
pub use rules::{Rule, Rules};

/// What a rule watches (`on = …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    StrikeOff,
    FeedDown,
    QuoteMove,
}

impl AlertKind {
    pub const ALL: [AlertKind; 3] = [AlertKind::StrikeOff, AlertKind::FeedDown, AlertKind::QuoteMove];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::StrikeOff => "strike-off",
            AlertKind::FeedDown => "feed-down",
            AlertKind::QuoteMove => "quote-move",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What a rule does when it fires, besides the Log line, the row and the
/// headless entry that every alert gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Actions {
    /// BEL to the terminal (TUI).
    pub bell: bool,
    /// The header's alerts marker until acknowledged (TUI).
    pub flash: bool,
    /// The rule's program.
    pub exec: bool,
}

impl Actions {
    /// `bell,flash` as stored and shown.
    pub fn label(&self) -> String {
        let names = [(self.bell, "bell"), (self.flash, "flash"), (self.exec, "exec")];
        names.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect::<Vec<_>>().join(",")
    }
}

/// One alert raised. Feed text in it (names, details) is raw: each output
/// sanitises for where it goes (terminal, JSON, argv).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Numbered from 1 in the order raised in this run; the TUI acknowledges
    /// up to a number.
    pub seq: u64,
    #[serde(serialize_with = "ts")]
    pub at: DateTime<Utc>,
    /// The rule's place among the `[[alerts]]` tables, from 1.
    pub rule: usize,
    pub kind: AlertKind,
    pub feed: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// One line saying what happened.
    pub detail: String,
    #[serde(skip)]
    pub actions: Actions,
}

fn ts<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::store::ts(*at))
}

/// Alerts kept for the TUI's list. The table has them all; the screen needs
/// the recent ones, and memory must not grow over weeks.
pub const ALERT_HISTORY: usize = 500;

/// The alerts of this run, newest first, bounded.
#[derive(Debug, Clone, Default)]
pub struct AlertLog {
    recent: VecDeque<Alert>,
    /// Alerts raised in this run (also those no longer kept).
    pub raised: u64,
}

impl AlertLog {
    /// Numbers the alert and keeps it.
    pub fn push(&mut self, mut alert: Alert) -> Alert {
        self.raised += 1;
        alert.seq = self.raised;
        self.recent.push_front(alert.clone());
        self.recent.truncate(ALERT_HISTORY);
        alert
    }

    /// Newest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Alert> {
        self.recent.iter()
    }

    pub fn len(&self) -> usize {
        self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// Alerts numbered after `seq`, oldest first (those still kept: past
    /// [`ALERT_HISTORY`] in one go, the oldest are only in the table).
    pub fn since(&self, seq: u64) -> Vec<&Alert> {
        let mut newer: Vec<&Alert> = self.recent.iter().take_while(|a| a.seq > seq).collect();
        newer.reverse();
        newer
    }

    /// Flash alerts numbered after `acked` (acknowledged up to there).
    pub fn unacknowledged_flashes(&self, acked: u64) -> usize {
        self.recent.iter().take_while(|a| a.seq > acked).filter(|a| a.actions.flash).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_numbers_keeps_newest_first_and_is_bounded() {
        let mut log = AlertLog::default();
        let t = chrono::DateTime::<Utc>::UNIX_EPOCH;
        for i in 0..ALERT_HISTORY + 3 {
            let flash = i % 2 == 0;
            let a = Alert {
                seq: 0,
                at: t,
                rule: 1,
                kind: AlertKind::FeedDown,
                feed: "f".into(),
                company: None,
                symbol: None,
                detail: String::new(),
                actions: Actions { flash, ..Actions::default() },
            };
            assert_eq!(log.push(a).seq, i as u64 + 1);
        }
        assert_eq!((log.len(), log.raised), (ALERT_HISTORY, ALERT_HISTORY as u64 + 3));
        assert_eq!(log.iter().next().unwrap().seq, ALERT_HISTORY as u64 + 3);
        let last = log.raised;
        assert_eq!(log.unacknowledged_flashes(last), 0);
        // The newest (503, odd index 502 → flash) and 502 (no flash), 501 (flash).
        assert_eq!(log.unacknowledged_flashes(last - 3), 2);
        let since: Vec<u64> = log.since(last - 2).iter().map(|a| a.seq).collect();
        assert_eq!(since, [last - 1, last], "oldest first");
        assert!(log.since(last).is_empty());
    }
}
