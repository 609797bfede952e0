//! One row per symbol and feed: the last price, the day's change, volume,
//! range, a sparkline of recent prices, where it came from and how fresh it
//! is. A price that just moved flashes; a quote gone quiet is dimmed.
//! Columns that do not fit are dropped least-important first. Which columns
//! show, and how wide, depends on the pane's width alone: every column has a
//! width that holds its usual values (a longer symbol or feed name is cut
//! with `…`; a bigger number widens its column rather than drop another).

use std::time::Duration;

use chrono::TimeDelta;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::block;
use crate::model::{Direction, Model, TickerRow};
use crate::sanitize::for_terminal;
use crate::ui::filter::Filter;
use crate::ui::fmt::{age, thousands};
use crate::ui::quote_fmt::{compact, maybe_price, percent, price, signed, sparkline};
use crate::ui::theme::Theme;
use crate::ui::ticker_list::{self, feed_name, TickerSort};

/// Prices in the sparkline: enough to see a trend, cheap in columns.
const TREND_WIDTH: usize = 12;
/// How long a price change stays highlighted.
const TICK_FLASH: TimeDelta = TimeDelta::seconds(1);
/// A long symbol or feed name is cut rather than allowed to push the rest off.
const MAX_COLUMN_WIDTH: usize = 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Col {
    Symbol,
    Price,
    Change,
    ChangePct,
    Volume,
    High,
    Low,
    Trend,
    Feed,
    Status,
    Age,
}

/// Display order.
const COLUMNS: [Col; 11] = [
    Col::Symbol,
    Col::Price,
    Col::Change,
    Col::ChangePct,
    Col::Volume,
    Col::High,
    Col::Low,
    Col::Trend,
    Col::Feed,
    Col::Status,
    Col::Age,
];

/// Dropped from the end of this list first when the pane is narrow.
const IMPORTANCE: [Col; 11] = [
    Col::Symbol,
    Col::Price,
    Col::ChangePct,
    Col::Age,
    Col::Change,
    Col::Trend,
    Col::Volume,
    Col::Feed,
    Col::Status,
    Col::High,
    Col::Low,
];

impl Col {
    fn header(self) -> &'static str {
        match self {
            Col::Symbol => "symbol",
            Col::Price => "price",
            Col::Change => "chg",
            Col::ChangePct => "chg %",
            Col::Volume => "vol",
            Col::High => "high",
            Col::Low => "low",
            Col::Trend => "trend",
            Col::Feed => "feed",
            Col::Status => "status",
            Col::Age => "age",
        }
    }

    /// The width the column keeps whatever the data: its header, or the
    /// widest of its usual values (`123,456`, `▲ +2.08%`, `999k`, `59m59s`).
    /// Feed names come from the config, so their width is fixed for the run.
    fn nominal(self, model: &Model) -> usize {
        let values = match self {
            Col::Symbol => 11,
            Col::Price => 8,
            Col::High | Col::Low => 7,
            Col::Change => 6,
            Col::ChangePct => 8,
            Col::Volume => 4,
            Col::Trend => TREND_WIDTH,
            Col::Feed => model
                .feeds
                .iter()
                .filter(|f| f.info.kind.carries_quotes())
                .map(|f| f.info.name.chars().count())
                .max()
                .unwrap_or(0)
                .min(MAX_COLUMN_WIDTH),
            Col::Status => 7,
            Col::Age => 6,
        };
        values.max(self.header().chars().count())
    }

    /// Names cut with `…` at the nominal width; numbers and the status (which
    /// only the age follows) widen their column instead.
    fn cut(self) -> bool {
        matches!(self, Col::Symbol | Col::Feed)
    }

    fn right_aligned(self) -> bool {
        matches!(self, Col::Price | Col::Change | Col::ChangePct | Col::Volume | Col::High | Col::Low)
    }
}

pub struct Args<'a> {
    pub filter: &'a Filter,
    pub sort: TickerSort,
    pub reversed: bool,
    pub scroll: usize,
    pub focused: bool,
    pub stale_after: Duration,
}

/// Which way the day went: the server's change where it gives one, else the
/// last price move (a feed that sends only prices still gets an arrow).
fn trend(row: &TickerRow) -> Direction {
    match row.change_percent().or(row.quote.change) {
        Some(x) if x > 0.0 => Direction::Up,
        Some(x) if x < 0.0 => Direction::Down,
        Some(_) => Direction::Flat,
        None => row.direction,
    }
}

fn direction_style(d: Direction, theme: &Theme) -> Style {
    match d {
        Direction::Up => theme.up,
        Direction::Down => theme.down,
        Direction::Flat => Style::new(),
    }
}

fn arrow(d: Direction) -> &'static str {
    match d {
        Direction::Up => "▲",
        Direction::Down => "▼",
        Direction::Flat => "",
    }
}

/// How one row reads on screen: the text of every column, and its state.
struct Shown {
    cells: [String; COLUMNS.len()],
    trend: Direction,
    ticked: bool,
    stale: bool,
}

fn shown(row: &TickerRow, model: &Model, stale_after: Duration) -> Shown {
    let q = &row.quote;
    let trend = trend(row);
    let since_update = model.now - row.updated_at;
    let stale = TimeDelta::from_std(stale_after).is_ok_and(|limit| since_update > limit);
    let since_tick = model.now - row.ticked_at;
    let ticked = since_tick >= TimeDelta::zero() && since_tick < TICK_FLASH;
    let change_pct = match (arrow(trend), row.change_percent()) {
        ("", None) => "-".to_string(),
        (a, None) => a.to_string(),
        ("", Some(p)) => percent(p),
        (a, Some(p)) => format!("{a} {}", percent(p)),
    };
    let mut age = age(Some(row.updated_at), model.now);
    if stale {
        age.push_str(" stale");
    }
    let cells = COLUMNS.map(|c| match c {
        // Feed text, so through the sanitiser.
        Col::Symbol => for_terminal(&q.symbol).into_owned(),
        Col::Price => price(q.price),
        Col::Change => q.change.map_or_else(|| "-".to_string(), signed),
        Col::ChangePct => change_pct.clone(),
        Col::Volume => q.volume.map_or_else(|| "-".to_string(), compact),
        Col::High => maybe_price(q.high),
        Col::Low => maybe_price(q.low),
        Col::Trend => sparkline(row.history.iter().copied(), TREND_WIDTH),
        Col::Feed => feed_name(model, row).to_string(),
        Col::Status => q.market_status.as_deref().map(|s| for_terminal(s).into_owned()).unwrap_or_default(),
        Col::Age => age.clone(),
    });
    Shown { cells, trend, ticked, stale }
}

fn cell_style(col: Col, s: &Shown, row: &TickerRow, theme: &Theme) -> Style {
    match col {
        Col::Change | Col::ChangePct | Col::Trend => direction_style(s.trend, theme),
        // The flash shows which way the price just moved.
        Col::Price if s.ticked => direction_style(row.direction, theme).patch(theme.tick),
        Col::Age if s.stale => theme.warn,
        _ => Style::new(),
    }
}

/// The pane title: count, sort, filter and which rows are shown when not
/// all are; the least useful parts are dropped to fit.
fn title<'a>(total: usize, matching: usize, args: &Args, range: Option<String>, width: u16) -> Vec<Span<'a>> {
    let filter = args.filter.text();
    let count = if filter.is_empty() {
        format!("Tickers ({})", thousands(total as u64))
    } else {
        format!("Tickers ({}/{})", thousands(matching as u64), thousands(total as u64))
    };
    let reversed = if args.reversed { ", reversed" } else { "" };
    let mut parts = vec![count, format!(" · sort: {}{reversed}", args.sort.label())];
    if !filter.is_empty() {
        parts.push(format!(" · filter: {filter}"));
    }
    parts.extend(range.map(|r| format!(" · {r}")));
    // The focus marker takes two columns.
    while parts.len() > 1 && parts.iter().map(|p| p.chars().count()).sum::<usize>() + 2 > usize::from(width) {
        parts.pop();
    }
    parts.into_iter().map(Span::raw).collect()
}

pub fn render(frame: &mut Frame, area: Rect, model: &Model, args: Args, theme: &Theme) {
    let matching = ticker_list::visible(model, args.filter, args.sort, args.reversed);
    let rows_fit = usize::from(area.height.saturating_sub(2));
    let first = args.scroll.min(matching.len().saturating_sub(1));
    let range = (first > 0 || matching.len() > rows_fit).then(|| {
        let last = (first + rows_fit).min(matching.len());
        format!("{}–{} of {}", first + 1, last, thousands(matching.len() as u64))
    });
    let blk = block(title(model.quotes.len(), matching.len(), &args, range, area.width), args.focused, theme);
    let inner = blk.inner(area);
    frame.render_widget(blk, area);

    if matching.is_empty() {
        let text = if model.quotes.is_empty() {
            "no quotes yet".to_string()
        } else {
            format!("no match for '{}'", args.filter.text())
        };
        frame.render_widget(Paragraph::new(Line::styled(text, theme.dim)), inner);
        return;
    }

    // Which columns fit is decided on their nominal widths; a number wider
    // than that (from every matching row, so columns stay put while
    // scrolling) widens its own column. The age column is the last: a
    // stale marker there moves nothing.
    let all: Vec<Shown> = matching.iter().map(|r| shown(r, model, args.stale_after)).collect();
    let width = |i: usize| {
        let col = COLUMNS[i];
        let nominal = col.nominal(model);
        let widest = if col.cut() { 0 } else { all.iter().map(|s| s.cells[i].chars().count()).max().unwrap_or(0) };
        widest.max(nominal) as u16
    };
    let mut kept: Vec<Col> = IMPORTANCE.to_vec();
    while kept.len() > 2 && kept.iter().map(|&c| c.nominal(model) as u16 + 1).sum::<u16>() > inner.width + 1 {
        // A high without its low reads as a price: they go together.
        if kept.pop() == Some(Col::Low) {
            kept.retain(|&c| c != Col::High);
        }
    }
    let cols: Vec<(usize, Col)> = COLUMNS.into_iter().enumerate().filter(|(_, c)| kept.contains(c)).collect();
    // The last column gets the rest of the row, which holds at least its
    // nominal width unless another column widened: then it is cut (with
    // `…`), never the columns before it.
    let mut widths: Vec<u16> = cols.iter().map(|&(i, _)| width(i)).collect();
    if let Some((last, before)) = widths.split_last_mut() {
        *last = inner.width.saturating_sub(before.iter().map(|w| w + 1).sum());
    }
    let aligned = |col: Col, line: Line<'static>| if col.right_aligned() { line.right_aligned() } else { line };
    let header = Row::new(cols.iter().map(|&(_, c)| Cell::from(aligned(c, Line::raw(c.header()))))).style(theme.dim);
    let rows = matching.iter().zip(all).skip(first).take(rows_fit).enumerate().map(|(shown, (row, s))| {
        // No flash at all with --low-bandwidth: neither the price nor the row.
        let s = Shown { ticked: s.ticked && theme.flash_ticks, ..s };
        let cells = cols.iter().zip(&widths).map(|(&(i, c), &w)| {
            let text = crate::ui::fmt::truncate(&s.cells[i], usize::from(w));
            Cell::from(aligned(c, Line::styled(text, cell_style(c, &s, row, theme))))
        });
        // A tick flashes the price cell alone: making the whole row bold and
        // back re-sent every cell of it twice a tick, the largest share of
        // the bytes a busy ticker list wrote (PERFORMANCE.md).
        let style = if s.stale { theme.dim } else { Style::new() };
        // The row Enter opens: the first one shown, marked while the pane has the keys.
        let style = if args.focused && shown == 0 { style.patch(theme.selected) } else { style };
        Row::new(cells.collect::<Vec<_>>()).style(style)
    });
    let constraints = widths.iter().map(|&w| Constraint::Length(w));
    frame.render_widget(Table::new(rows, constraints).header(header).column_spacing(1), inner);
}
