//! The `?` overlay: every binding from the key table, so it is never out of
//! date, then what the Connections and Tickers columns mean. On a terminal
//! too short for it, it scrolls (the view owns the scroll) and says so.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Padding, Paragraph};
use ratatui::Frame;

use crate::ui::keys::help_rows;
use crate::ui::theme::Theme;

/// The Connections columns, by their headers.
const CONNECTIONS: &[(&str, &str)] = &[
    ("since", "time in the current state"),
    ("recon", "reconnects since start"),
    ("retry", "countdown to the next try"),
    ("last rx", "age of the last byte received"),
    ("last ev", "age of the last event or quote"),
    ("events", "events or quotes received"),
    ("gaps", "times the feed said data was lost"),
    ("bad", "lines skipped: malformed or too long"),
    ("rtt", "last ping/poll round trip; (…) = old"),
    ("last error", "the feed's latest error"),
];

/// The orders `s` steps through in each list (`S` turns one upside down).
const SORTS: &[(&str, &str)] =
    &[("changes", "time (newest first) / company / change"), ("tickers", "symbol / change % / age")];

/// The Tickers columns, by their headers.
const TICKERS: &[(&str, &str)] = &[
    ("chg, chg %", "change on the day, ▲ up ▼ down"),
    ("vol", "volume traded"),
    ("high, low", "the day's range"),
    ("trend", "sparkline of recent prices"),
    ("status", "market status the feed sent"),
    ("age", "since the last tick; dim = stale"),
];

enum HelpLine {
    Entry(String, &'static str),
    Heading(&'static str),
    Blank,
}

fn lines() -> Vec<HelpLine> {
    let mut lines: Vec<HelpLine> = help_rows().into_iter().map(|(k, d)| HelpLine::Entry(k, d)).collect();
    for (heading, glossary) in
        [("Sort orders (s, S)", SORTS), ("Connections columns", CONNECTIONS), ("Tickers columns", TICKERS)]
    {
        lines.push(HelpLine::Blank);
        lines.push(HelpLine::Heading(heading));
        lines.extend(glossary.iter().map(|&(col, d)| HelpLine::Entry(col.to_string(), d)));
    }
    lines
}

/// Lines in the overlay, for the view's scroll bound.
pub fn line_count() -> usize {
    lines().len()
}

/// Draws the overlay from line `scroll` (bounded here too, in case the
/// terminal grew) and returns how many lines it showed.
pub fn render(frame: &mut Frame, area: Rect, scroll: usize, theme: &Theme) -> usize {
    let mut lines = lines();
    if theme.glyphs.ascii {
        // `^` would read as Ctrl: name the arrow keys.
        for line in &mut lines {
            if let HelpLine::Entry(keys, _) = line {
                *keys = keys.replace('↑', "Up").replace('↓', "Down");
            }
        }
    }
    let entry_widths = || lines.iter().filter_map(|l| if let HelpLine::Entry(k, d) = l { Some((k, d)) } else { None });
    let key_width = entry_widths().map(|(k, _)| k.chars().count()).max().unwrap_or(0) as u16;
    let desc_width = entry_widths().map(|(_, d)| d.chars().count()).max().unwrap_or(0) as u16;
    // Borders (2) + one column gap + a space of padding each side.
    let width = (key_width + desc_width + 5).min(area.width);
    let height = (lines.len() as u16 + 2).min(area.height);
    let [popup] = Layout::horizontal([Constraint::Length(width)]).flex(Flex::Center).areas(area);
    let [popup] = Layout::vertical([Constraint::Length(height)]).flex(Flex::Center).areas(popup);

    let shown = usize::from(height.saturating_sub(2));
    let first = scroll.min(lines.len().saturating_sub(shown));
    let below = first + shown < lines.len();
    // What closes it, and where there is more when it does not fit.
    let hint = match (first > 0, below) {
        (false, false) => " q / Esc closes ".to_string(),
        (up, down) => {
            let g = &theme.glyphs;
            let arrows = [(up, g.more_up), (down, g.more_down)].iter().filter(|a| a.0).map(|a| a.1).collect::<String>();
            format!(" {arrows} more {dot} j/k scroll {dot} q closes ", dot = g.dot)
        }
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_set(theme.glyphs.border)
        .border_style(theme.title)
        .padding(Padding::horizontal(1))
        .title(Line::styled(" Keys ", theme.title))
        .title_bottom(Line::styled(hint, theme.dim).centered());
    // Headings span both columns, so this is lines, not a table.
    let text: Vec<Line> = lines
        .into_iter()
        .skip(first)
        .take(shown)
        .map(|l| match l {
            HelpLine::Entry(keys, desc) => {
                let pad = usize::from(key_width).saturating_sub(keys.chars().count()) + 1;
                Line::from(vec![Span::styled(keys, theme.key), Span::raw(" ".repeat(pad)), Span::raw(desc)])
            }
            HelpLine::Heading(h) => Line::styled(h, theme.title),
            HelpLine::Blank => Line::default(),
        })
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(text).block(block), popup);
    shown
}
