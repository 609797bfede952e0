//! The terminal UI: a pure function from (model, view state, theme) to a
//! frame, so every screen can be drawn into a `TestBackend` and checked.
//!
//! Layout, top to bottom: header, connections, rate | latency, strike-off
//! changes (the rest), log, footer; the help overlay floats on top.

pub mod filter;
pub mod fmt;
pub mod keys;
pub mod panes;
pub mod theme;
pub mod view;

#[cfg(test)]
mod screen_tests;
#[cfg(test)]
mod test_support;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use crate::model::Model;
pub use theme::Theme;
pub use view::{Focus, UiCommand, ViewState};

/// Below this the panes would be too cramped to read; say so instead.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

pub fn draw(frame: &mut Frame, live: &Model, view: &ViewState, theme: &Theme) {
    let area = frame.area();
    let model = view.shown(live);
    let paused = view.frozen.as_ref().map(|snap| live.events_total.saturating_sub(snap.events_total));

    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(frame, area, paused, theme);
        return;
    }

    let feeds = model.feeds.len() as u16;
    let header = panes::header::height(model, area.width);
    // Title rule + header row + one row per feed, up to a point.
    let connections = 2 + feeds.clamp(1, 8);
    let metrics = (2 + feeds.clamp(1, 6)).max(if area.height >= 40 { 7 } else { 4 });
    let log = (area.height / 5).clamp(3, 12);
    let [header_area, conn_area, metrics_area, strike_area, log_area, footer_area] = Layout::vertical([
        Constraint::Length(header),
        Constraint::Length(connections),
        Constraint::Length(metrics),
        Constraint::Min(4),
        Constraint::Length(log),
        Constraint::Length(1),
    ])
    .areas(area);
    // The sparkline has one bar per minute of the last hour; more width is wasted.
    let rate_width = (area.width / 2).min(64);
    let [rate_area, latency_area] =
        Layout::horizontal([Constraint::Length(rate_width), Constraint::Fill(1)]).spacing(2).areas(metrics_area);

    panes::header::render(frame, header_area, model, paused, theme);
    let conn_focused = view.focus == Focus::Connections;
    panes::connections::render(frame, conn_area, model, view.selected_feed, conn_focused, theme);
    panes::rate::render(frame, rate_area, model, theme);
    panes::latency::render(frame, latency_area, model, theme);
    let args = panes::strike_offs::Args {
        filter: &view.filter,
        scroll: view.scroll,
        focused: view.focus == Focus::StrikeOffs,
    };
    panes::strike_offs::render(frame, strike_area, model, args, theme);
    panes::log::render(frame, log_area, &view.log, view.focus == Focus::Log, theme);
    panes::footer::render(frame, footer_area, &view.filter, view.editing_filter, theme);
    if view.show_help {
        panes::help::render(frame, area, theme);
    }
}

/// A terminal too small for the panes still says what is going on.
fn too_small(frame: &mut Frame, area: Rect, paused: Option<u64>, theme: &Theme) {
    let mut text =
        format!("terminal too small: {}×{}, feedtop needs {MIN_WIDTH}×{MIN_HEIGHT}", area.width, area.height);
    if let Some(n) = paused {
        text = format!("PAUSED — {} new. {text}", fmt::thousands(n));
    }
    frame.render_widget(Paragraph::new(text).style(theme.warn).wrap(Wrap { trim: true }), area);
}
