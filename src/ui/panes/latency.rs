//! Feed latency (received minus published) percentiles per feed over the
//! model's sliding window, one row per feed; a feed whose latency comes from
//! server-local timestamps (no zone, or a zone guessed) is marked `~`, and a feed's own ping round-trip
//! gets a column when any feed has one. A feed replaying what it missed shows
//! its catch-up (lag, events replayed) instead: backlog is not latency.

use chrono::{DateTime, TimeDelta, Utc};
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::block;
use crate::model::{CatchUp, FeedView, LatencySummary, Model};
use crate::time::short_duration;
use crate::ui::fmt::{latency_at, thousands, window};
use crate::ui::theme::Theme;

const LEGEND: &str = "~ estimate: server-local timestamps";
/// `3h59m` and `850ms` are five wide.
const NUMBER_WIDTH: u16 = 6;

/// The percentiles, or why there are none.
fn summary(f: &FeedView, model: &Model) -> Result<LatencySummary, &'static str> {
    if let Some(s) = f.latency.summary(model.now) {
        return Ok(s);
    }
    // Events inside the window but no latency: they carried no usable time.
    let window = TimeDelta::from_std(f.latency.window()).unwrap_or(TimeDelta::MAX);
    let recent = f.last_event_at.is_some_and(|t| model.now - t < window);
    Err(if f.counts.events > 0 && recent { "no timestamps" } else { "no data" })
}

const PERCENTILES: [&str; 4] = ["p50", "p90", "p99", "max"];

/// Which columns the table has.
struct Shape {
    name: u16,
    marker: bool,
    p50: u16,
    /// Width of the longest catch-up line, which spans the percentiles and
    /// widens the first of them when there is room (0: none, or no room).
    catch_up: u16,
    /// How many of [`PERCENTILES`] are shown, from the left.
    numbers: usize,
    rtt: bool,
}

impl Shape {
    fn of(model: &Model) -> Self {
        let feeds = &model.feeds;
        Self {
            name: feeds.iter().map(|f| f.info.name.chars().count()).max().unwrap_or(4).clamp(4, 30) as u16,
            marker: feeds.iter().any(|f| f.latency_estimated),
            // "no data" is seven wide and starts in the p50 column.
            p50: if feeds.iter().any(|f| summary(f, model).is_err()) { 7 } else { NUMBER_WIDTH },
            catch_up: feeds
                .iter()
                .filter_map(|f| f.catch_up)
                .map(|c| catch_up_words(c, model.now)[0].chars().count())
                .max()
                .unwrap_or(0) as u16,
            numbers: PERCENTILES.len(),
            rtt: feeds.iter().any(|f| f.rtt.is_some()),
        }
    }

    fn widths(&self) -> Vec<u16> {
        let mut w = vec![self.name];
        if self.marker {
            w.push(1);
        }
        w.push(self.p50_width());
        w.extend(std::iter::repeat_n(NUMBER_WIDTH, self.numbers - 1));
        if self.rtt {
            w.push(NUMBER_WIDTH);
        }
        w
    }

    fn p50_width(&self) -> u16 {
        let others = (self.numbers as u16 - 1) * (NUMBER_WIDTH + 1);
        self.p50.max(self.catch_up.saturating_sub(others))
    }

    /// Columns the percentiles take together, spacing included.
    fn numbers_width(&self) -> usize {
        usize::from(self.p50_width()) + (self.numbers - 1) * usize::from(NUMBER_WIDTH + 1)
    }

    fn width(&self) -> u16 {
        let w = self.widths();
        w.iter().sum::<u16>() + w.len().saturating_sub(1) as u16
    }

    /// Drops the rtt column, then percentiles from the right, until the table
    /// fits `width`: a squeezed table would cut names and numbers instead.
    fn fit(mut self, width: u16) -> Self {
        while self.width() > width {
            if self.catch_up > 0 {
                self.catch_up = 0;
            } else if self.rtt {
                self.rtt = false;
            } else if self.numbers > 1 {
                self.numbers -= 1;
            } else {
                break;
            }
        }
        self
    }
}

/// Columns the table needs to show every number whole.
pub fn width(model: &Model) -> u16 {
    Shape::of(model).width()
}

fn row<'a>(f: &'a FeedView, model: &Model, shape: &Shape, theme: &Theme) -> Row<'a> {
    let mut cells = vec![Cell::from(f.info.name.as_str())];
    if shape.marker {
        cells.push(Cell::from(Span::styled(if f.latency_estimated { "~" } else { "" }, theme.warn)));
    }
    match (f.catch_up, summary(f, model)) {
        (Some(catch_up), _) => {
            let text = catch_up_text(catch_up, model.now, shape.numbers_width(), theme);
            cells.push(Cell::from(text).column_span(shape.numbers as u16))
        }
        (None, Ok(s)) => {
            let numbers = [s.p50, s.p90, s.p99, s.max].into_iter().take(shape.numbers);
            let resolution = f.latency_resolution_ms();
            cells.extend(numbers.map(|ms| Cell::from(latency_at(ms, resolution))));
        }
        (None, Err(why)) => cells.push(Cell::from(Span::styled(why, theme.dim)).column_span(shape.numbers as u16)),
    }
    if f.rtt.is_some() && shape.rtt {
        let style = if f.rtt_is_stale(model.now) { theme.dim } else { Style::new() };
        cells.push(Cell::from(Span::styled(super::connections::rtt_text(f, model.now), style)));
    } else if shape.rtt {
        cells.push(Cell::from(Span::styled("-", theme.dim)));
    }
    Row::new(cells)
}

/// A replay of missed events, in place of the percentiles it would distort:
/// the whole line first, then shorter ones that keep what matters most.
fn catch_up_words(c: CatchUp, now: DateTime<Utc>) -> [String; 3] {
    let replayed = thousands(c.replayed);
    if c.is_active(now) {
        let lag = short_duration(TimeDelta::from_std(c.lag).unwrap_or(TimeDelta::MAX));
        [
            format!("catching up: lag {lag}, {replayed} replayed"),
            format!("catching up: lag {lag}"),
            format!("catch-up {lag}"),
        ]
    } else {
        // The backlog stopped without a fresh sample: how far behind the
        // feed is now cannot be known, so no lag is claimed.
        [format!("replayed {replayed}; no fresh event yet"), format!("replayed {replayed}"), "replayed".to_string()]
    }
}

fn catch_up_text(c: CatchUp, now: DateTime<Utc>, width: usize, theme: &Theme) -> Span<'static> {
    let [full, shorter, shortest] = catch_up_words(c, now);
    let text = [full, shorter].into_iter().find(|t| t.chars().count() <= width).unwrap_or(shortest);
    Span::styled(text, if c.is_active(now) { theme.warn } else { theme.dim })
}

pub fn render(frame: &mut Frame, area: Rect, model: &Model, theme: &Theme) {
    let shape = Shape::of(model).fit(area.width);
    let win = model.feeds.first().map(|f| window(f.latency.window())).unwrap_or_default();
    let plain = format!("Latency · last {win}");
    // The legend goes in the title when it fits, else on a row of its own
    // when there is one to spare, else it is cut to the marker's meaning.
    let mut legend_row = false;
    let title = if !shape.marker {
        plain
    } else if let Some(t) = [format!("{plain} · {LEGEND}"), format!("Latency {win} · {LEGEND}")]
        .into_iter()
        .find(|t| t.chars().count() <= usize::from(area.width))
    {
        t
    } else if usize::from(area.height) >= model.feeds.len() + 3 {
        legend_row = true;
        plain
    } else {
        format!("Latency {win} · ~ estimate")
    };
    let blk = block(vec![Span::raw(title)], false, theme);
    let inner = blk.inner(area);
    frame.render_widget(blk, area);

    let mut header = vec!["feed"];
    if shape.marker {
        header.push("");
    }
    header.extend(&PERCENTILES[..shape.numbers]);
    if shape.rtt {
        header.push("rtt");
    }
    let header = Row::new(header).style(theme.dim);
    let rows = model.feeds.iter().map(|f| row(f, model, &shape, theme));
    let widths = shape.widths().into_iter().map(Constraint::Length);
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), inner);
    if legend_row {
        let bottom = Rect { y: inner.bottom().saturating_sub(1), height: inner.height.min(1), ..inner };
        frame.render_widget(Paragraph::new(Line::styled(LEGEND, theme.dim)), bottom);
    }
}
