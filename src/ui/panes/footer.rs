//! The bottom line: key hints from the key table, or the filter being typed.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::ui::filter::Filter;
use crate::ui::keys::footer_hints;
use crate::ui::theme::Theme;

/// `typed`: the filter as typed (with any trailing space), `filter` compiled.
pub fn render(frame: &mut Frame, area: Rect, typed: &str, filter: &Filter, editing: bool, theme: &Theme) {
    let line = if editing {
        let mut spans =
            vec![Span::styled("/ filter: ", theme.key), Span::raw(typed.to_string()), Span::styled("_", theme.key)];
        match filter.error() {
            Some(why) => spans.push(Span::styled(format!("   invalid regex: {why}"), theme.warn)),
            None => spans.push(Span::styled("   regex · !regex inverts · Enter keep · Esc clear", theme.dim)),
        }
        Line::from(spans)
    } else if let Some(why) = filter.error() {
        // Kept but not compiling: it filters nothing out, and says so.
        Line::from(vec![
            Span::styled(format!("filter '{}' is not a valid regex ({why}): showing all", filter.text()), theme.warn),
            Span::styled("   / edit · Esc clear", theme.dim),
        ])
    } else {
        hints_line(area.width, theme)
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// As many whole hints as fit; a half-cut hint would read as a wrong key.
fn hints_line(width: u16, theme: &Theme) -> Line<'static> {
    let mut spans = Vec::new();
    let mut used = 0usize;
    for (i, (key, word)) in footer_hints().into_iter().enumerate() {
        let sep = if i == 0 { "" } else { "  " };
        let w = sep.len() + key.chars().count() + 1 + word.len();
        if used + w > usize::from(width) {
            break;
        }
        used += w;
        spans.push(Span::raw(sep));
        spans.push(Span::styled(key, theme.key));
        spans.push(Span::styled(format!(" {word}"), theme.dim));
    }
    Line::from(spans)
}
