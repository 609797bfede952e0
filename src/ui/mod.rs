//! The terminal UI: a pure function from (model, view state, theme) to a
//! frame, so every screen can be drawn into a `TestBackend` and checked.
//!
//! Layout (see [`layout`]), top to bottom: header, connections, rate |
//! latency, strike-off changes and, with quote feeds, tickers (the rest), log,
//! footer; the help overlay floats on top.

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
mod test_support;
#[cfg(test)]
mod ticker_screen_tests;

use ratatui::layout::Rect;
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use crate::model::Model;
pub use theme::Theme;
pub use view::{Focus, TickerSort, UiCommand, ViewState};

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
        too_small(frame, area, paused, theme);
        return;
    }

    let areas = layout::areas(area, model, &view.filter);
    // The lists' heights for the next page key (title and header rows aside,
    // as the panes count them).
    view.strike_rows_shown.set(usize::from(areas.strike_offs.height.saturating_sub(2)));
    view.ticker_rows_shown.set(areas.tickers.map_or(0, |t| usize::from(t.height.saturating_sub(2))));

    panes::header::render(frame, areas.header, model, paused, &view.clock, theme);
    let conn_focused = view.focus == Focus::Connections;
    panes::connections::render(frame, areas.connections, model, view.selected_feed, conn_focused, theme);
    panes::rate::render(frame, areas.rate, model, theme);
    panes::latency::render(frame, areas.latency, model, theme);
    let args = panes::strike_offs::Args {
        filter: &view.filter,
        scroll: view.scroll,
        focused: view.focus == Focus::StrikeOffs,
        clock: &view.clock,
    };
    panes::strike_offs::render(frame, areas.strike_offs, model, args, theme);
    if let Some(tickers) = areas.tickers {
        let args = panes::tickers::Args {
            filter: &view.filter,
            sort: view.ticker_sort,
            scroll: view.ticker_scroll,
            focused: view.focus == Focus::Tickers,
            stale_after: view.stale_after,
        };
        panes::tickers::render(frame, tickers, model, args, theme);
    }
    panes::log::render(frame, areas.log, &view.log, view.focus == Focus::Log, view.clock.utc, theme);
    panes::footer::render(frame, areas.footer, &view.filter, view.editing_filter, theme);
    if view.show_help {
        view.help_rows_shown.set(panes::help::render(frame, area, view.help_scroll, theme));
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
