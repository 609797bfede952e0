//! One file per pane; each has `render(frame, area, …, theme)` and draws only
//! inside `area`, so the layout in `ui::draw` decides everything about size.

pub mod alerts;
pub mod company_detail;
pub mod connections;
pub mod detail;
pub mod detail_feed;
pub mod footer;
pub mod header;
pub mod help;
pub mod info;
pub mod latency;
pub mod log;
pub mod log_lines;
pub mod price_chart;
pub mod rate;
pub mod strike_offs;
pub mod tickers;

use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders};

use super::theme::Theme;

/// A pane frame: a rule along the top carrying the title. A full box would
/// cost two rows and two columns per pane, which 80×24 cannot spare.
pub fn block<'a>(title: Vec<Span<'a>>, focused: bool, theme: &Theme) -> Block<'a> {
    let style = if focused { theme.focus } else { theme.title };
    let marker = if focused { format!("{} ", theme.glyphs.focus) } else { String::new() };
    let mut spans = vec![Span::styled(marker, style)];
    spans.extend(title.into_iter().map(|s| if s.style == Default::default() { s.style(style) } else { s }));
    Block::default()
        .borders(Borders::TOP)
        .border_set(theme.glyphs.border)
        .border_style(theme.dim)
        .title(Line::from(spans))
}
