//! How a Log line reads, `hh:mm:ss L message` in the zone the rest of the
//! screen shows (`t`), wrapped under the message; and where the pane is in
//! the log: a [`LogPos`] names a screen row of one record, so a scrolled
//! view stays on the same lines while new ones arrive.

use std::borrow::Cow;
use std::cmp::Ordering;

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use tracing::Level;

use crate::logging::{LogRecord, LogRing};
use crate::ui::clock::Clock;

/// Continuation rows start under the message: `hh:mm:ss L ` is this wide.
const INDENT: usize = 11;
/// The width to wrap at before the first frame says how wide the pane is.
const UNKNOWN_WIDTH: usize = 1_000;

pub struct LogLines<'a> {
    pub clock: &'a Clock,
    pub error: Style,
    pub warn: Style,
    pub info: Style,
    pub debug: Style,
    pub trace: Style,
}

/// `text` cut into rows of `width` characters, every row after the first
/// indented.
fn wrap(out: &mut Vec<Line<'static>>, style: Style, text: &str, width: usize) {
    let chars: Vec<char> = text.chars().collect();
    let mut at: usize = 0;
    let mut indent = false;
    loop {
        let room = if indent { width.saturating_sub(INDENT) } else { width }.max(1);
        let end = at.saturating_add(room).min(chars.len());
        let mut spans = Vec::new();
        if indent && width > INDENT {
            spans.push(Span::styled(Cow::Owned(" ".repeat(INDENT)), style));
        }
        spans.push(Span::styled(chars[at..end].iter().collect::<String>(), style));
        out.push(Line::from(spans));
        at = end;
        indent = true;
        if at >= chars.len() {
            break;
        }
    }
}

/// Screen rows `record` takes at `width` (the stamp is always 8 wide, so
/// the zone does not change it).
pub fn row_count(record: &LogRecord, width: usize) -> usize {
    let width = if width == 0 { UNKNOWN_WIDTH } else { width };
    let total = INDENT + record.text.chars().count();
    let first = width.max(1);
    let rest = width.saturating_sub(INDENT).max(1);
    1 + total.saturating_sub(first).div_ceil(rest)
}

impl LogLines<'_> {
    /// The rows of one record.
    pub fn format(&self, record: &LogRecord, width: usize) -> Vec<Line<'static>> {
        let (style, level) = match record.level {
            Level::ERROR => (self.error, "E"),
            Level::WARN => (self.warn, "W"),
            Level::INFO => (self.info, "I"),
            Level::DEBUG => (self.debug, "D"),
            Level::TRACE => (self.trace, "T"),
        };
        let stamp = self.clock.in_zone(record.at).format("%H:%M:%S");
        let mut out = Vec::new();
        wrap(&mut out, style, &format!("{stamp} {level} {}", record.text), width);
        out
    }
}

/// One screen row of the log: row `row` of record `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPos {
    pub seq: u64,
    pub row: usize,
}

/// Walks the log's screen rows at one width.
pub struct Rows<'a> {
    pub ring: &'a LogRing,
    pub width: usize,
}

impl Rows<'_> {
    fn rows(&self, seq: u64) -> usize {
        self.ring.get(seq).map_or(1, |r| row_count(r, self.width))
    }

    /// The first row, `None` for an empty log.
    pub fn oldest(&self) -> Option<LogPos> {
        self.ring.last_seq().map(|_| LogPos { seq: self.ring.first_seq(), row: 0 })
    }

    /// The last row.
    pub fn newest(&self) -> Option<LogPos> {
        let seq = self.ring.last_seq()?;
        Some(LogPos { seq, row: self.rows(seq) - 1 })
    }

    /// `pos` where it still names a row: a dropped record's row becomes the
    /// oldest row, a row past a record's end (a wider pane) its last row.
    pub fn clamp(&self, pos: LogPos) -> Option<LogPos> {
        let oldest = self.oldest()?;
        let newest = self.newest()?;
        if pos < oldest {
            return Some(oldest);
        }
        if pos > newest {
            return Some(newest);
        }
        Some(LogPos { seq: pos.seq, row: pos.row.min(self.rows(pos.seq) - 1) })
    }

    /// `n` rows older than `pos`, or the oldest row.
    pub fn back(&self, mut pos: LogPos, mut n: usize) -> LogPos {
        let first = self.ring.first_seq();
        loop {
            if n <= pos.row {
                pos.row -= n;
                return pos;
            }
            if pos.seq <= first {
                return LogPos { seq: first, row: 0 };
            }
            n -= pos.row + 1;
            pos.seq -= 1;
            pos.row = self.rows(pos.seq) - 1;
        }
    }

    /// `n` rows newer than `pos`, or the newest row.
    pub fn forward(&self, mut pos: LogPos, mut n: usize) -> LogPos {
        let Some(last) = self.ring.last_seq() else { return pos };
        loop {
            let left = self.rows(pos.seq) - 1 - pos.row;
            if n <= left {
                pos.row += n;
                return pos;
            }
            if pos.seq >= last {
                pos.row += left;
                return pos;
            }
            n -= left + 1;
            pos.seq += 1;
            pos.row = 0;
        }
    }

    /// The top row of a pane `height` rows tall that shows the newest row
    /// on its bottom row (or everything, when the log is shorter).
    pub fn following_top(&self, height: usize) -> Option<LogPos> {
        Some(self.back(self.newest()?, height.saturating_sub(1)))
    }

    /// Where the view's top should go from `top` (`None`: following the
    /// newest) by `delta` rows, negative towards the oldest; a view that
    /// reaches the newest lines follows them again.
    pub fn scroll(&self, top: Option<LogPos>, delta: isize, height: usize) -> Option<LogPos> {
        let following = self.following_top(height)?;
        let at = top.and_then(|p| self.clamp(p)).unwrap_or(following).min(following);
        let to = match delta.cmp(&0) {
            Ordering::Less => self.back(at, delta.unsigned_abs()),
            Ordering::Greater => self.forward(at, delta.unsigned_abs()),
            Ordering::Equal => at,
        };
        (to < following).then_some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::test_support::{cet_clock, t0};

    fn ring(lens: &[usize]) -> LogRing {
        let mut ring = LogRing::default();
        for &n in lens {
            ring.push(LogRecord { at: t0(), level: Level::INFO, text: "x".repeat(n) });
        }
        ring
    }

    #[test]
    fn the_stamp_follows_the_chosen_zone() {
        let mut clock = cet_clock();
        let lines = |clock: &Clock| {
            let f = LogLines {
                clock,
                error: Style::new(),
                warn: Style::new(),
                info: Style::new(),
                debug: Style::new(),
                trace: Style::new(),
            };
            let r = LogRecord { at: t0(), level: Level::WARN, text: "m".into() };
            f.format(&r, 80)[0].to_string()
        };
        // t0 is 12:00:00 UTC in June: 14:00:00 CEST.
        assert_eq!(lines(&clock), "14:00:00 W m");
        clock.toggle();
        assert_eq!(lines(&clock), "12:00:00 W m");
    }

    #[test]
    fn long_lines_wrap_under_the_message() {
        let mut out = Vec::new();
        wrap(&mut out, Style::new(), "12:00:00 W abcdefghij", 15);
        let rows: Vec<String> = out.iter().map(|l| l.to_string()).collect();
        assert_eq!(rows, ["12:00:00 W abcd", "           efgh", "           ij"]);
        let r = LogRecord { at: t0(), level: Level::WARN, text: "abcdefghij".into() };
        assert_eq!(row_count(&r, 15), 3);
        assert_eq!(row_count(&r, 21), 1);
        assert_eq!(row_count(&r, 20), 2);
        assert_eq!(row_count(&r, 0), 1, "before the first frame");
    }

    /// Records of 1, 3 (wrapped) and 1 rows at width 15.
    #[test]
    fn rows_walk_across_wrapped_records() {
        let ring = ring(&[1, 10, 1]);
        let rows = Rows { ring: &ring, width: 15 };
        let p = |seq, row| LogPos { seq, row };
        assert_eq!(rows.newest(), Some(p(2, 0)));
        assert_eq!(rows.back(p(2, 0), 1), p(1, 2));
        assert_eq!(rows.back(p(2, 0), 4), p(0, 0));
        assert_eq!(rows.back(p(2, 0), 99), p(0, 0));
        assert_eq!(rows.forward(p(0, 0), 2), p(1, 1));
        assert_eq!(rows.forward(p(0, 0), 99), p(2, 0));
        assert_eq!(rows.following_top(2), Some(p(1, 2)));
        assert_eq!(rows.following_top(99), Some(p(0, 0)));
        // Up from following, down back into following.
        assert_eq!(rows.scroll(None, -1, 2), Some(p(1, 1)));
        assert_eq!(rows.scroll(Some(p(1, 1)), 1, 2), None);
        assert_eq!(rows.scroll(None, isize::MIN, 2), Some(p(0, 0)));
        // Everything fits: there is nowhere to scroll.
        assert_eq!(rows.scroll(None, -1, 10), None);
        assert_eq!(rows.clamp(p(1, 7)), Some(p(1, 2)));
        assert_eq!(Rows { ring: &LogRing::default(), width: 15 }.scroll(None, -1, 3), None);
    }
}
