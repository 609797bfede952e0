//! How a Log line reads: `hh:mm:ss L message`, stamped in the zone the rest
//! of the screen shows (`t`). tui-logger stamps each record with the local
//! time and its own formatter only takes a strftime pattern, which cannot
//! change the zone; this formatter writes the same lines in either zone.

use std::borrow::Cow;

use jiff::tz::TimeZone;
use jiff::Zoned;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use tui_logger::{ExtLogRecord, LogFormatter};

/// Continuation rows start under the message: `hh:mm:ss L ` is this wide.
const INDENT: usize = 11;

pub struct LogLines {
    pub utc: bool,
    pub error: Style,
    pub warn: Style,
    pub info: Style,
    pub debug: Style,
    pub trace: Style,
}

/// `hh:mm:ss` of `at`, in UTC or in the zone it was stamped in (local).
pub fn stamp(at: &Zoned, utc: bool) -> String {
    if utc {
        at.with_time_zone(TimeZone::UTC).strftime("%H:%M:%S").to_string()
    } else {
        at.strftime("%H:%M:%S").to_string()
    }
}

/// `text` cut into rows of `width` characters, every row after the first
/// of the record indented (`first` says whether this text starts it).
fn wrap(out: &mut Vec<Line<'static>>, style: Style, text: &str, width: usize, first: bool) {
    let chars: Vec<char> = text.chars().collect();
    let mut at = 0;
    let mut indent = !first;
    loop {
        let room = if indent { width.saturating_sub(INDENT) } else { width }.max(1);
        let end = (at + room).min(chars.len());
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

impl LogFormatter for LogLines {
    fn min_width(&self) -> u16 {
        INDENT as u16 + 4
    }

    fn format(&self, width: usize, evt: &ExtLogRecord) -> Vec<Line<'_>> {
        let (style, level) = match evt.level {
            log::Level::Error => (self.error, "E"),
            log::Level::Warn => (self.warn, "W"),
            log::Level::Info => (self.info, "I"),
            log::Level::Debug => (self.debug, "D"),
            log::Level::Trace => (self.trace, "T"),
        };
        let mut rows = evt.msg().lines();
        let head = format!("{} {level} {}", stamp(&evt.timestamp, self.utc), rows.next().unwrap_or(""));
        let mut out = Vec::new();
        wrap(&mut out, style, &head, width, true);
        for row in rows {
            wrap(&mut out, style, row, width, false);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_follows_the_chosen_zone() {
        let cet = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // 2025-01-10 16:00:05 UTC, stamped in CET as tui-logger stamps local time.
        let at = jiff::Timestamp::from_second(1_736_524_805).unwrap().to_zoned(cet);
        assert_eq!(stamp(&at, false), "17:00:05");
        assert_eq!(stamp(&at, true), "16:00:05");
    }

    #[test]
    fn long_lines_wrap_under_the_message() {
        let mut out = Vec::new();
        wrap(&mut out, Style::new(), "12:00:00 W abcdefghij", 15, true);
        let rows: Vec<String> = out.iter().map(|l| l.to_string()).collect();
        assert_eq!(rows, ["12:00:00 W abcd", "           efgh", "           ij"]);
    }
}
