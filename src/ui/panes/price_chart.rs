//! The page shown for a ticker (Enter): its stored price history as a line
//! chart, from [`crate::store::details::price_history`].
//!
//! A summary line (symbol, feed, last, low, high, change over the range,
//! points and since when), then ratatui's `Chart`: time along the bottom in
//! the clock's zone (named in the axis title), price up the side with some
//! room above and below the line so that it does not run along the frame.

use chrono::{DateTime, TimeDelta, Utc};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

use crate::sanitize::for_terminal;
use crate::ui::clock::Clock;
use crate::ui::fmt::thousands;
use crate::ui::quote_fmt::{percent, price};
use crate::ui::theme::Theme;

/// Seconds each side of a single point, so that it has an axis to sit on.
const LONE_POINT_SPAN: i64 = 30;

/// The price axis's bounds: the range of the prices with a twentieth of it
/// above and below; a flat line gets a hundredth of its price each way (or
/// 0.01 at zero) so that it is drawn in the middle, not on the edge.
pub fn price_bounds(prices: impl Iterator<Item = f64>) -> Option<[f64; 2]> {
    let (lo, hi) = prices.fold(None, |acc: Option<(f64, f64)>, p| match acc {
        None => Some((p, p)),
        Some((lo, hi)) => Some((lo.min(p), hi.max(p))),
    })?;
    let pad = if hi > lo { (hi - lo) / 20.0 } else { (lo.abs() / 100.0).max(0.01) };
    let bounds = [lo - pad, hi + pad];
    // Prices near f64's limits (only from a hostile feed) would pad to
    // infinity, which no axis can be divided by: then the range alone.
    Some(if bounds.iter().all(|b| b.is_finite()) { bounds } else { [lo, hi] })
}

/// Time labels: the time of day when the range is within a day, else the
/// date with hours and minutes.
fn time_label(at: DateTime<Utc>, span: TimeDelta, clock: &Clock) -> String {
    let t = clock.in_zone(at);
    if span < TimeDelta::days(1) {
        t.format("%H:%M:%S").to_string()
    } else {
        t.format("%m-%d %H:%M").to_string()
    }
}

fn summary(feed: &str, symbol: &str, points: &[(DateTime<Utc>, f64)], clock: &Clock, theme: &Theme) -> Line<'static> {
    let mut spans = vec![
        Span::styled(for_terminal(symbol).into_owned(), theme.title),
        Span::styled(format!("  {}", for_terminal(feed)), theme.dim),
    ];
    let (Some(&(first_at, first)), Some(&(_, last))) = (points.first(), points.last()) else {
        return Line::from(spans);
    };
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let direction = if last > first {
        theme.up
    } else if last < first {
        theme.down
    } else {
        Style::new()
    };
    spans.push(Span::raw(format!("  last {}", price(last))));
    if first != 0.0 {
        spans.push(Span::styled(format!(" {}", percent((last - first) / first * 100.0)), direction));
    }
    // Short enough for 80 columns with everyday prices.
    spans.push(Span::raw(format!("  range {}–{}", price(lo), price(hi))));
    let n = points.len() as u64;
    let span = points.last().map_or(TimeDelta::zero(), |l| l.0 - first_at);
    spans.push(Span::styled(
        format!(
            "  {} point{} since {} {}",
            thousands(n),
            if n == 1 { "" } else { "s" },
            time_label(first_at, span, clock),
            clock.label(first_at)
        ),
        theme.dim,
    ));
    Line::from(spans)
}

/// Draws the chart of `symbol` on `feed` from `points` (oldest first).
pub fn render(
    frame: &mut Frame,
    area: Rect,
    feed: &str,
    symbol: &str,
    points: &[(DateTime<Utc>, f64)],
    clock: &Clock,
    theme: &Theme,
) {
    // A price that is not a number cannot be placed (and would make the bounds NaN).
    let points: Vec<(DateTime<Utc>, f64)> = points.iter().copied().filter(|p| p.1.is_finite()).collect();
    let [top, body] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
    frame.render_widget(Paragraph::new(summary(feed, symbol, &points, clock, theme)), top);
    let (Some(&(first_at, _)), Some(&(last_at, _)), Some(bounds)) =
        (points.first(), points.last(), price_bounds(points.iter().map(|p| p.1)))
    else {
        let text = format!("no stored history for {} yet", for_terminal(symbol));
        frame.render_widget(Paragraph::new(Line::styled(text, theme.dim)), body);
        return;
    };

    // Seconds from the first point: small numbers keep the precision of the
    // milliseconds that absolute timestamps would lose in an f64's mantissa.
    let data: Vec<(f64, f64)> =
        points.iter().map(|&(t, p)| ((t - first_at).num_milliseconds() as f64 / 1000.0, p)).collect();
    let (start, end) = if last_at > first_at {
        (first_at, last_at)
    } else {
        (first_at - TimeDelta::seconds(LONE_POINT_SPAN), first_at + TimeDelta::seconds(LONE_POINT_SPAN))
    };
    let x_bounds =
        [(start - first_at).num_milliseconds() as f64 / 1000.0, (end - first_at).num_milliseconds() as f64 / 1000.0];
    let span = end - start;
    let x_labels = [start, start + span / 2, end].map(|t| Span::styled(time_label(t, span, clock), theme.dim));
    let y_labels = [bounds[0], (bounds[0] + bounds[1]) / 2.0, bounds[1]].map(|p| Span::styled(price(p), theme.dim));

    let (first, last) = (points[0].1, points[points.len() - 1].1);
    let style = if last > first {
        theme.up
    } else if last < first {
        theme.down
    } else {
        Style::new()
    };
    // A line needs two points; a lone one is drawn as a dot.
    let graph = if data.len() > 1 { GraphType::Line } else { GraphType::Scatter };
    // Braille dots draw a fine line; the ASCII set has only a `*` a cell.
    let marker = if theme.glyphs.ascii { Marker::Dot } else { Marker::Braille };
    let dataset = Dataset::default().marker(marker).graph_type(graph).style(style).data(&data);
    let chart = Chart::new(vec![dataset])
        .x_axis(
            Axis::default()
                .title(Span::styled(format!("time ({})", clock.label(end)), theme.dim))
                .bounds(x_bounds)
                .labels(x_labels)
                .style(theme.dim),
        )
        .y_axis(Axis::default().bounds(bounds).labels(y_labels).style(theme.dim));
    frame.render_widget(chart, body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sanitize::{is_unsafe, MARKER};
    use crate::ui::test_support::{cet_clock, secs};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn draw(symbol: &str, points: &[(DateTime<Utc>, f64)], width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| render(f, f.area(), "wig80", symbol, points, &cet_clock(), &Theme::new(true))).unwrap();
        terminal.backend().to_string()
    }

    macro_rules! assert_chart {
        ($name:expr, $symbol:expr, $points:expr, $w:expr, $h:expr) => {{
            let text = draw($symbol, $points, $w, $h);
            insta::with_settings!({ description => format!("{}×{}", $w, $h), omit_expression => true }, {
                insta::assert_snapshot!($name, text);
            });
            text
        }};
    }

    /// Half an hour of a price rising and falling back part of the way.
    fn session() -> Vec<(DateTime<Utc>, f64)> {
        (0..=60)
            .map(|i| (secs(i * 30), 74.0 + (f64::from(i as i32) / 10.0).sin() * 2.0 + f64::from(i as i32) / 30.0))
            .collect()
    }

    #[test]
    fn a_session_is_a_line_with_times_in_the_clocks_zone() {
        let text = assert_chart!("price_chart_session_80x24", "PKN", &session(), 80, 24);
        assert_chart!("price_chart_session_120x40", "PKN", &session(), 120, 40);
        assert!(text.contains("time (CEST)"), "{text}");
        assert!(text.contains("14:00:00") && text.contains("14:30:00"), "t0 is 12:00 UTC: {text}");
        assert!(
            text.contains(['⠁', '⠂', '⠄', '⡀', '⠈', '⠐', '⠠', '⢀'])
                || text.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c))
        );
    }

    /// Over more than a day, the labels carry the date.
    #[test]
    fn a_long_range_labels_dates() {
        let points = [(secs(0), 10.0), (secs(3 * 86_400), 12.0)];
        let text = draw("PKN", &points, 80, 24);
        assert!(text.contains("06-10 14:00") && text.contains("06-13 14:00"), "{text}");
    }

    /// One point and a flat line still draw, in the middle of the price axis.
    #[test]
    fn one_point_and_a_flat_line_draw() {
        let one = assert_chart!("price_chart_one_point_80x24", "PKN", &[(secs(0), 74.5)], 80, 24);
        let braille = |t: &str| t.chars().filter(|c| ('\u{2801}'..='\u{28ff}').contains(c)).count();
        assert!(braille(&one) >= 1, "{one}");
        let flat: Vec<_> = (0..20).map(|i| (secs(i * 60), 74.5)).collect();
        let text = assert_chart!("price_chart_flat_80x24", "PKN", &flat, 80, 24);
        assert!(braille(&text) >= 20, "{text}");
        assert_eq!(price_bounds([74.5].into_iter()), Some([74.5 - 0.745, 74.5 + 0.745]));
        assert_eq!(price_bounds([0.0, 0.0].into_iter()), Some([-0.01, 0.01]));
        assert_eq!(price_bounds([10.0, 30.0].into_iter()), Some([9.0, 31.0]));
        assert_eq!(price_bounds(std::iter::empty()), None);
    }

    /// Prices a hostile feed could send: at f64's limits, and negative.
    #[test]
    fn extreme_prices_still_draw() {
        let points = [(secs(0), -f64::MAX), (secs(60), f64::MAX), (secs(120), f64::MIN_POSITIVE)];
        assert_eq!(price_bounds(points.iter().map(|p| p.1)), Some([-f64::MAX, f64::MAX]));
        let text = draw("PKN", &points, 80, 24);
        assert!(text.contains("last 0.00"), "{text}");
        let text = draw("PKN", &[(secs(0), -5.0), (secs(60), -7.5)], 80, 24);
        assert!(text.contains("last -7.50"), "{text}");
    }

    #[test]
    fn no_points_says_so() {
        let text = assert_chart!("price_chart_empty_80x24", "PKN", &[], 80, 24);
        assert!(text.contains("no stored history for PKN yet"), "{text}");
        // Prices that are not numbers are no history either.
        let text = draw("PKN", &[(secs(0), f64::NAN), (secs(1), f64::INFINITY)], 80, 24);
        assert!(text.contains("no stored history for PKN yet"), "{text}");
    }

    #[test]
    fn a_hostile_symbol_is_drawn_with_markers() {
        let symbol = "PKN\u{202E}X\x7f\x1b]0;x\x07";
        for points in [vec![], session()] {
            let text = draw(symbol, &points, 80, 24);
            let bad: Vec<char> = text.chars().filter(|&c| c != '\n' && is_unsafe(c)).collect();
            assert!(bad.is_empty(), "control characters on screen: {bad:?}\n{text}");
            assert!(text.contains(&format!("PKN{MARKER}X{MARKER}{MARKER}]0;x{MARKER}")), "{text}");
        }
    }
}
