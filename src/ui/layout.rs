//! Where each pane goes, as a pure function of the terminal size and the
//! model. With only Companies House: header, connections, rate | latency,
//! strike-offs, log, footer. With quote feeds the tickers pane joins the
//! strike-offs (beside them when the terminal is wide, below them when not),
//! and the other panes give up rows before any feed leaves the screen: each
//! list keeps at least [`LIST_ROWS_MIN`] rows and the log [`LOG_ROWS_MIN`]
//! before the rate and latency panes get theirs, and when those do not fit
//! they collapse into one line (the rate and its sparkline; 80×24 with the
//! demo's five feeds is such a screen).

use ratatui::layout::{Constraint, Layout, Rect};

use super::filter::{self, Filter};
use super::panes;
use super::ticker_list::{self, has_tickers};
use super::view::Focus;
use crate::model::Model;

/// From this width strike-offs and tickers sit side by side.
pub const SIDE_BY_SIDE: u16 = 160;
/// Table rows each list keeps before the metrics get theirs: enough to
/// read a few changes and scroll them. A list pane adds a title and a
/// header row.
pub const LIST_ROWS_MIN: u16 = 3;
/// Lines the log keeps before the metrics get theirs (plus its title).
pub const LOG_ROWS_MIN: u16 = 2;
/// The log grows with a tall terminal from this (title included).
const LOG_MIN: u16 = LOG_ROWS_MIN + 1;
/// The rate pane's sparkline is never squeezed below this to widen latency.
const RATE_MIN: u16 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub header: Rect,
    pub connections: Rect,
    pub rate: Rect,
    pub latency: Rect,
    /// The rate and latency panes did not fit: `rate` is one line and
    /// `latency` empty.
    pub metrics_collapsed: bool,
    pub strike_offs: Rect,
    /// `None` without quote feeds or ticker rows.
    pub tickers: Option<Rect>,
    pub log: Rect,
    pub footer: Rect,
}

pub fn areas(area: Rect, model: &Model, filter: &Filter) -> Areas {
    if has_tickers(model) {
        with_tickers(area, model, filter)
    } else {
        companies_house_only(area, model)
    }
}

fn companies_house_only(area: Rect, model: &Model) -> Areas {
    let feeds = model.feeds.len() as u16;
    let header = panes::header::height(model, area.width);
    // Title rule + header row + one row per feed, up to a point.
    let connections = 2 + feeds.clamp(1, 8);
    let metrics = (2 + feeds.clamp(1, 6)).max(if area.height >= 40 { 7 } else { 4 });
    let log = (area.height / 5).clamp(3, 12);
    let [header, connections, metrics, strike_offs, log, footer] = Layout::vertical([
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
    let [rate, latency] =
        Layout::horizontal([Constraint::Length(rate_width), Constraint::Fill(1)]).spacing(2).areas(metrics);
    Areas { header, connections, rate, latency, metrics_collapsed: false, strike_offs, tickers: None, log, footer }
}

/// `z`: the focused pane gets `body` (everything between the header and
/// the footer); the others get no room and are not drawn.
pub fn zoomed(areas: Areas, body: Rect, focus: Focus) -> Areas {
    let none = Rect { width: 0, height: 0, ..body };
    let mut zoomed = Areas {
        connections: none,
        rate: none,
        latency: none,
        strike_offs: none,
        tickers: areas.tickers.map(|_| none),
        log: none,
        ..areas
    };
    match focus {
        Focus::Connections => zoomed.connections = body,
        Focus::StrikeOffs => zoomed.strike_offs = body,
        Focus::Tickers => zoomed.tickers = Some(body),
        Focus::Log => zoomed.log = body,
    }
    zoomed
}

/// Takes up to `want` rows from `rest`.
fn take(want: u16, rest: &mut u16) -> u16 {
    let got = want.min(*rest);
    *rest -= got;
    got
}

fn with_tickers(area: Rect, model: &Model, filter: &Filter) -> Areas {
    let feeds = model.feeds.len() as u16;
    let header = panes::header::height(model, area.width);
    // Every feed keeps its connections row: that is what the tool is for.
    let connections = 2 + feeds.clamp(1, 8);
    let mut rest = area.height.saturating_sub(header + connections + 1);
    // Stacked, both lists need their title, header and rows; side by side
    // they share the rows.
    let list_panes = if area.width >= SIDE_BY_SIDE { 1 } else { 2 };
    let lists_floor = take(list_panes * (LIST_ROWS_MIN + 2), &mut rest);
    let log_floor = take(LOG_MIN, &mut rest);
    let full_metrics = (2 + feeds.clamp(1, 6)).max(if area.height >= 40 { 7 } else { 4 });
    let collapsed = full_metrics > rest;
    let metrics = if collapsed { take(1, &mut rest) } else { take(full_metrics, &mut rest) };
    // A tall terminal grows the log too, but the lists get most of it.
    let log_extra = ((area.height / 5).clamp(LOG_MIN, 12) - LOG_MIN).min(rest / 3);
    let log = log_floor + log_extra;
    let lists = lists_floor + rest - log_extra;
    let [header, connections, metrics, lists, log, footer] = Layout::vertical([
        Constraint::Length(header),
        Constraint::Length(connections),
        Constraint::Length(metrics),
        Constraint::Length(lists),
        Constraint::Length(log),
        Constraint::Length(1),
    ])
    .areas(area);

    // Latency gets the width to show every number, the rate sparkline what is
    // left (up to its hour of minutes), and latency then the rest again.
    let rate_width = area.width.saturating_sub(panes::latency::width(model) + 2).clamp(RATE_MIN.min(area.width), 64);
    let [rate, latency] = if collapsed {
        [metrics, Rect { height: 0, ..metrics }]
    } else {
        Layout::horizontal([Constraint::Length(rate_width), Constraint::Fill(1)]).spacing(2).areas(metrics)
    };

    let (strike_offs, tickers) = if area.width >= SIDE_BY_SIDE {
        let [s, t] = Layout::horizontal([Constraint::Fill(1); 2]).spacing(2).areas(lists);
        (s, t)
    } else {
        let strike_rows = model.strike_offs.iter().filter(|c| filter::matches(c, filter)).count();
        let ticker_rows = ticker_list::visible(model, filter, Default::default(), false).len();
        let top = stacked_split(lists.height, wanted(strike_rows), wanted(ticker_rows));
        let [s, t] = Layout::vertical([Constraint::Length(top), Constraint::Fill(1)]).areas(lists);
        (s, t)
    };
    Areas {
        header,
        connections,
        rate,
        latency,
        metrics_collapsed: collapsed,
        strike_offs,
        tickers: Some(tickers),
        log,
        footer,
    }
}

/// Rows a list pane needs for `n` rows: title and header, or title and an
/// empty-state line.
fn wanted(n: usize) -> u16 {
    if n == 0 {
        2
    } else {
        (n as u16).saturating_add(2)
    }
}

/// The strike-offs' share of `height` when the tickers sit below them: each
/// pane gets what it needs if both fit, a pane needing less than half gives
/// the rest to the other, and otherwise they split evenly.
fn stacked_split(height: u16, strike: u16, tickers: u16) -> u16 {
    let half = height / 2;
    if strike.saturating_add(tickers) <= height || strike <= half {
        strike.min(height)
    } else if tickers <= height - half {
        height - tickers
    } else {
        half
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacked_lists_share_by_need() {
        // Both fit: each its need, the spare rows below the tickers.
        assert_eq!(stacked_split(20, 5, 6), 5);
        // The strike-offs need little: the tickers take the rest.
        assert_eq!(stacked_split(7, 2, 30), 2);
        // The tickers need little: the strike-offs take the rest.
        assert_eq!(stacked_split(10, 30, 4), 6);
        // Both need more than half: an even split.
        assert_eq!(stacked_split(7, 30, 30), 3);
        assert_eq!(stacked_split(0, 30, 30), 0);
        assert_eq!(stacked_split(1, 2, 2), 0);
    }
}
