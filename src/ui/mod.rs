//! The terminal UI: a pure function from (model, view state, theme) to a
//! frame, so every screen can be drawn into a `TestBackend` and checked.
//!
//! Layout (see [`layout`]), top to bottom: header, connections, rate |
//! latency, strike-off changes and, with quote feeds, tickers (the rest), log,
//! footer. `z` gives the focused pane everything between header and footer;
//! the detail overlay (Enter, `i`) covers the same rows, and the help floats
//! on top of everything.

pub mod clock;
pub mod filter;
pub mod fmt;
pub mod glyphs;
pub mod keys;
pub mod layout;
pub mod panes;
pub mod quote_fmt;
pub mod sgr16;
pub mod theme;
pub mod ticker_list;
pub mod view;

#[cfg(test)]
mod hostile_text_tests;
#[cfg(test)]
mod screen_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod ticker_screen_tests;

use ratatui::layout::Rect;
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use crate::model::Model;
pub use theme::Theme;
pub use view::{Detail, Focus, Loaded, RunInfo, TickerSort, UiCommand, ViewState};

/// Below this the panes would be too cramped to read; say so instead.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

pub fn draw(frame: &mut Frame, live: &Model, view: &ViewState, theme: &Theme) {
    draw_panes(frame, live, view, theme);
    if theme.glyphs.ascii {
        glyphs::asciify(frame.buffer_mut());
    }
}

fn draw_panes(frame: &mut Frame, live: &Model, view: &ViewState, theme: &Theme) {
    let area = frame.area();
    let model = view.shown(live);
    let paused = view.frozen.as_ref().map(|snap| live.events_total.saturating_sub(snap.events_total));

    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(frame, area, paused, view.unacknowledged(live), theme);
        return;
    }

    // Compiled once a frame: the layout and both lists use it.
    let filter = filter::Filter::new(&view.filter);
    let mut areas = layout::areas(area, model, &filter);
    // Between the header and the footer: the zoomed pane's room, and the
    // detail overlay's (the header keeps saying how the feeds are).
    let body = Rect { y: areas.header.bottom(), height: areas.footer.y.saturating_sub(areas.header.bottom()), ..area };
    if view.zoomed {
        areas = layout::zoomed(areas, body, view.focus);
    }
    // The lists' heights for the next page key (title and header rows aside,
    // as the panes count them).
    view.strike_rows_shown.set(usize::from(areas.strike_offs.height.saturating_sub(2)));
    view.ticker_rows_shown.set(areas.tickers.map_or(0, |t| usize::from(t.height.saturating_sub(2))));
    view.log_rows_shown.set(usize::from(areas.log.height.saturating_sub(1)));
    view.log_width.set(usize::from(areas.log.width));

    let alerts = view.unacknowledged(live);
    panes::header::render(frame, areas.header, model, paused, alerts, &view.clock, theme);
    let conn_focused = view.focus == Focus::Connections;
    if !areas.connections.is_empty() {
        panes::connections::render(frame, areas.connections, model, view.selected_feed, conn_focused, theme);
    }
    if areas.metrics_collapsed {
        panes::rate::render_line(frame, areas.rate, model, theme);
    } else if !areas.rate.is_empty() {
        panes::rate::render(frame, areas.rate, model, theme);
    }
    if !areas.latency.is_empty() {
        panes::latency::render(frame, areas.latency, model, theme);
    }
    let args = panes::strike_offs::Args {
        filter: &filter,
        sort: view.strike_sort,
        reversed: view.strike_reversed,
        scroll: view.scroll,
        focused: view.focus == Focus::StrikeOffs,
        clock: &view.clock,
    };
    if !areas.strike_offs.is_empty() {
        panes::strike_offs::render(frame, areas.strike_offs, model, args, theme);
    }
    if let Some(tickers) = areas.tickers.filter(|t| !t.is_empty()) {
        let args = panes::tickers::Args {
            filter: &filter,
            sort: view.ticker_sort,
            reversed: view.ticker_reversed,
            scroll: view.ticker_scroll,
            focused: view.focus == Focus::Tickers,
            stale_after: view.stale_after,
        };
        panes::tickers::render(frame, tickers, model, args, theme);
    }
    if !areas.log.is_empty() {
        let args = panes::log::Args {
            buffer: &view.log,
            top: view.log_top,
            focused: view.focus == Focus::Log,
            clock: &view.clock,
        };
        panes::log::render(frame, areas.log, args, theme);
    }
    panes::footer::render(frame, areas.footer, &view.filter, &filter, view.editing_filter, theme);
    if view.detail.is_some() {
        panes::detail::render(frame, body, model, view, theme);
    }
    if view.show_alerts {
        let rows = panes::alerts::render(frame, area, live, view.alerts_acked, view.alerts_scroll, &view.clock, theme);
        view.alert_rows_shown.set(rows);
    }
    if view.show_help {
        view.help_rows_shown.set(panes::help::render(frame, area, view.help_scroll, theme));
    }
}

/// A terminal too small for the panes still says what is going on.
fn too_small(frame: &mut Frame, area: Rect, paused: Option<u64>, alerts: usize, theme: &Theme) {
    let mut text =
        format!("terminal too small: {}×{}, feedtop needs {MIN_WIDTH}×{MIN_HEIGHT}", area.width, area.height);
    if let Some(n) = paused {
        text = format!("PAUSED — {} new. {text}", fmt::thousands(n));
    }
    if let Some(marker) = panes::header::alerts_marker(alerts) {
        text = format!("{}. {text}", marker.trim());
    }
    frame.render_widget(Paragraph::new(text).style(theme.warn).wrap(Wrap { trim: true }), area);
}
