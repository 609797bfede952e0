//! The tracing log, through tui-logger: diagnostics go here, never onto the
//! screen where they would tear the layout.

use ratatui::layout::Rect;
use ratatui::text::Span;
use ratatui::Frame;
use tui_logger::{TuiLoggerLevelOutput, TuiLoggerWidget, TuiWidgetState};

use super::block;
use crate::ui::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, state: &TuiWidgetState, focused: bool, theme: &Theme) {
    // Level styles are always set from the theme: the widget's own defaults
    // would bring colour into a NO_COLOR screen.
    let widget = TuiLoggerWidget::default()
        .block(block(vec![Span::raw("Log")], focused, theme))
        .style_error(theme.error)
        .style_warn(theme.warn)
        .style_info(ratatui::style::Style::new())
        .style_debug(theme.dim)
        .style_trace(theme.dim)
        .output_timestamp(Some("%H:%M:%S".into()))
        .output_level(Some(TuiLoggerLevelOutput::Abbreviated))
        .output_target(false)
        .output_file(false)
        .output_line(false)
        .output_separator(' ')
        .state(state);
    frame.render_widget(widget, area);
}
