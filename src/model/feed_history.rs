//! What a feed's detail view shows beyond its Connections row: the last
//! state changes with why each happened, and a description of the feed as
//! configured (URL with secrets hidden, settings in force).

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use feedtop_proto::ConnState;

/// State changes kept per feed: enough to see a flapping pattern, small
/// enough that a feed reconnecting for weeks holds a few KB.
pub const STATE_HISTORY: usize = 20;

/// One state change of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub at: DateTime<Utc>,
    pub state: ConnState,
    /// The error the feed reported since the previous change: why the
    /// connection ended (for a backoff) or why a try failed.
    pub reason: Option<String>,
}

/// The last [`STATE_HISTORY`] state changes, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateHistory {
    changes: VecDeque<StateChange>,
    /// The latest error since the last change: the next change's reason.
    pending_reason: Option<String>,
}

impl StateHistory {
    /// Remembers an error as the reason for the next state change (the
    /// supervisor reports why an attempt ended, then the backoff).
    pub fn note_error(&mut self, error: &str) {
        self.pending_reason = Some(error.to_string());
    }

    pub fn push(&mut self, at: DateTime<Utc>, state: ConnState) {
        if self.changes.len() == STATE_HISTORY {
            self.changes.pop_front();
        }
        self.changes.push_back(StateChange { at, state, reason: self.pending_reason.take() });
    }

    /// Newest first, as a log reads from the top.
    pub fn newest_first(&self) -> impl Iterator<Item = &StateChange> {
        self.changes.iter().rev()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// A feed as configured, for the detail view: given by the pipeline (the
/// model never sees the settings types of the feed tasks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedAbout {
    /// Where it connects, with any token, key or password replaced by `***`.
    pub url: Option<String>,
    /// `(setting, value)` in the order shown: timeouts, backoff, quiet
    /// period, then the kind's own settings.
    pub settings: Vec<(&'static str, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    #[test]
    fn keeps_the_last_twenty_changes_with_their_reasons() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let at = |s: i64| t0 + TimeDelta::seconds(s);
        let mut h = StateHistory::default();
        // 15 failed tries: connecting, then backoff with the error of the try.
        for i in 0..15 {
            h.push(at(2 * i), ConnState::Connecting);
            h.note_error(&format!("refused #{i}"));
            h.push(at(2 * i + 1), ConnState::Backoff { retry_at: at(2 * i + 2) });
        }
        assert_eq!(h.len(), STATE_HISTORY);
        let newest: Vec<&StateChange> = h.newest_first().collect();
        assert_eq!(newest[0].state, ConnState::Backoff { retry_at: at(30) });
        assert_eq!(newest[0].reason.as_deref(), Some("refused #14"));
        assert_eq!((newest[1].state.clone(), newest[1].reason.as_deref()), (ConnState::Connecting, None));
        // 30 changes: tries 0–4 are gone, try 5 is the oldest kept, with its reason.
        let oldest: Vec<_> = newest[18..].iter().map(|c| (c.at, c.reason.as_deref())).collect();
        assert_eq!(oldest, [(at(11), Some("refused #5")), (at(10), None)]);
        // A reason is used once: the next change has none of its own.
        h.push(at(40), ConnState::Live);
        assert_eq!(h.newest_first().next().unwrap().reason, None);
        assert_eq!(h.len(), STATE_HISTORY);
    }
}
