//! Which Companies House events are duplicates, and where to resume.
//!
//! Timepoints come from the server and a server can send nonsense: one event
//! with `"timepoint": 9223372036854775807` among real ones. Taken at face
//! value it would become the resume point (every restart then asks for it,
//! is refused with 416 and loses what was published meanwhile) and every real
//! event after it would look like a replay and be dropped.
//!
//! The rule: **one event alone never moves the resume point.** The mark (the
//! resume point, and the line below which events are replays) only advances
//! to a timepoint that the *next* accepted event confirms by coming at or
//! after it: after accepting `t` following `prev`, the mark becomes
//! `max(mark, min(prev, t))`. An outlier high timepoint is kept as an event
//! (it is what the server sent) but the event after it, being lower, moves
//! the mark only to itself; an outlier low one is below the mark and dropped
//! as a replay, as before. Duplicates are events at or below the mark (the
//! inclusive replay after a resume, old events sent again) and an event
//! equal to the last accepted one (the same event twice in a row, or sent
//! again at the start of the next connection).
//!
//! The cost: the newest event is confirmed only by the one after it, so the
//! stored resume point lags one event behind. After a restart that event is
//! received once more; the database already has it (its unique key ignores
//! it) and strike-off detection sees no change in it. Two outliers in a row
//! can still move the mark; the 416 that follows then drops the stored point
//! and the feed goes live with a gap recorded (the server's documented answer).

/// What to do with an event's timepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A new event. `mark_moved_to` is set when the resume point advanced.
    New { mark_moved_to: Option<i64> },
    /// Already delivered (a replay or a repeat): dropped and counted.
    Duplicate,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumeMark {
    /// The confirmed resume point: `?timepoint=` on the next connection.
    mark: Option<i64>,
    /// The last accepted event's timepoint, not yet confirmed by a later one.
    prev: Option<i64>,
}

impl ResumeMark {
    /// Starts from a stored resume point.
    pub fn resume_from(mark: Option<i64>) -> Self {
        Self { mark, prev: None }
    }

    /// Where the next connection resumes.
    pub fn mark(&self) -> Option<i64> {
        self.mark
    }

    /// Judges one event's timepoint and moves the mark.
    pub fn observe(&mut self, timepoint: i64) -> Verdict {
        if self.mark.is_some_and(|mark| timepoint <= mark) || self.prev == Some(timepoint) {
            return Verdict::Duplicate;
        }
        let confirmed = self.prev.map(|prev| prev.min(timepoint));
        let before = self.mark;
        self.mark = self.mark.max(confirmed);
        self.prev = Some(timepoint);
        Verdict::New { mark_moved_to: self.mark.filter(|_| self.mark != before) }
    }

    /// The server refused the mark (416): forget it and start live.
    pub fn forget(&mut self) -> Option<i64> {
        self.prev = None;
        self.mark.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds timepoints through a mark; returns which were new and the final mark.
    fn run(start: Option<i64>, timepoints: &[i64]) -> (Vec<bool>, Option<i64>) {
        let mut m = ResumeMark::resume_from(start);
        let new = timepoints.iter().map(|&t| matches!(m.observe(t), Verdict::New { .. })).collect();
        (new, m.mark())
    }

    #[test]
    fn scenarios() {
        const MAX: i64 = i64::MAX;
        type Case = (&'static str, Option<i64>, Vec<i64>, Vec<bool>, Option<i64>);
        let table: Vec<Case> = vec![
            ("in order: the mark trails by one", None, vec![1, 2, 3], vec![true, true, true], Some(2)),
            ("inclusive replay after a resume", Some(10), vec![10, 11, 12], vec![false, true, true], Some(11)),
            (
                "one absurd timepoint: kept, never the mark, later events not duplicates",
                Some(100),
                vec![101, MAX, 102, 103],
                vec![true, true, true, true],
                Some(102),
            ),
            ("absurd as the very last event: not the mark", Some(100), vec![101, MAX], vec![true, true], Some(101)),
            ("a repeat in a row", None, vec![5, 6, 6, 7], vec![true, true, false, true], Some(6)),
            ("an old event sent again", None, vec![5, 6, 7, 8, 5], vec![true, true, true, true, false], Some(7)),
            ("a hostile low timepoint is a replay", Some(50), vec![51, -1, 52], vec![true, false, true], Some(51)),
            (
                "the absurd one repeated is still one event",
                Some(1),
                vec![MAX, MAX, 2],
                vec![true, false, true],
                Some(2),
            ),
        ];
        for (name, start, timepoints, want_new, want_mark) in table {
            assert_eq!(run(start, &timepoints), (want_new, want_mark), "{name}");
        }
    }

    #[test]
    fn the_last_event_of_a_connection_is_not_delivered_twice_by_the_next() {
        let mut m = ResumeMark::resume_from(None);
        for t in [1, 2, 3] {
            m.observe(t);
        }
        // Reconnect with ?timepoint=2: the server replays 2, then 3, then 4.
        assert_eq!(m.mark(), Some(2));
        assert_eq!(m.observe(2), Verdict::Duplicate);
        assert_eq!(m.observe(3), Verdict::Duplicate, "3 was delivered on the last connection");
        assert_eq!(m.observe(4), Verdict::New { mark_moved_to: Some(3) });
    }

    #[test]
    fn forgetting_after_416_accepts_lower_timepoints() {
        let mut m = ResumeMark::resume_from(Some(i64::MAX));
        assert_eq!(m.observe(5), Verdict::Duplicate);
        assert_eq!(m.forget(), Some(i64::MAX));
        assert_eq!(m.observe(5), Verdict::New { mark_moved_to: None });
        assert_eq!(m.observe(6), Verdict::New { mark_moved_to: Some(5) });
    }
}
