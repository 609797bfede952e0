//! The bottom line: key hints from the key table, or the filter being typed.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::ui::keys::footer_hints;
use crate::ui::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, filter: &str, editing: bool, theme: &Theme) {
    let line = if editing {
        Line::from(vec![
            Span::styled("/ filter: ", theme.key),
            Span::raw(filter.to_string()),
            Span::styled("_", theme.key),
            Span::styled("   Enter keep · Esc clear", theme.dim),
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
