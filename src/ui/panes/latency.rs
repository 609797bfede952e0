//! Feed latency (received minus published) percentiles per feed over the
//! model's sliding window.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table};
use ratatui::Frame;

use super::block;
use crate::model::Model;
use crate::ui::fmt::{latency_ms, window};
use crate::ui::theme::Theme;

pub fn render(frame: &mut Frame, area: Rect, model: &Model, theme: &Theme) {
    let win = model.feeds.first().map(|f| window(f.latency.window())).unwrap_or_default();
    let blk = block(vec![Span::raw(format!("Latency · last {win}"))], false, theme);
    let inner = blk.inner(area);
    frame.render_widget(blk, area);

    let name_width = model.feeds.iter().map(|f| f.info.name.chars().count()).max().unwrap_or(4).clamp(4, 30) as u16;
    let header = Row::new(["feed", "p50", "p90", "p99", "max"]).style(theme.dim);
    let rows = model.feeds.iter().map(|f| {
        let name = Cell::from(f.info.name.as_str());
        match f.latency.summary(model.now) {
            Some(s) => {
                Row::new([name].into_iter().chain([s.p50, s.p90, s.p99, s.max].map(|ms| Cell::from(latency_ms(ms)))))
            }
            None => Row::new([name, Cell::from(Span::styled("no data", theme.dim))]),
        }
    });
    // `3h59m` and `850ms` are five wide; "no data" needs seven in the p50 column.
    let any_empty = model.feeds.iter().any(|f| f.latency.summary(model.now).is_none());
    let p50_width = if any_empty { 7 } else { 6 };
    let widths =
        [Constraint::Length(name_width), Constraint::Length(p50_width)].into_iter().chain([Constraint::Length(6); 3]);
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), inner);
}
