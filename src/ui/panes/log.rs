//! The tracing log, through tui-logger: diagnostics go here, never onto the
//! screen where they would tear the layout.

use ratatui::layout::Rect;
use ratatui::text::Span;
use ratatui::Frame;
use tui_logger::{TuiLoggerWidget, TuiWidgetState};

use super::block;
use super::log_lines::LogLines;
use crate::ui::theme::Theme;

/// `utc`: stamp the lines in UTC, as the rest of the screen (`t`).
pub fn render(frame: &mut Frame, area: Rect, state: &TuiWidgetState, focused: bool, utc: bool, theme: &Theme) {
    // Level styles are always set from the theme: the widget's own defaults
    // would bring colour into a NO_COLOR screen.
    let lines = LogLines {
        utc,
        error: theme.error,
        warn: theme.warn,
        info: ratatui::style::Style::new(),
        debug: theme.dim,
        trace: theme.dim,
    };
    let widget = TuiLoggerWidget::default()
        .block(block(vec![Span::raw("Log")], focused, theme))
        .formatter(Box::new(lines))
        .state(state);
    frame.render_widget(widget, area);
}
