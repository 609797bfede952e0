//! Events per minute now, and a sparkline of the last hour, over all feeds.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Sparkline;
use ratatui::Frame;

use super::block;
use crate::model::Model;
use crate::ui::fmt::thousands;
use crate::ui::theme::Theme;

/// Events in each of the last 60 minutes over all feeds, oldest first.
pub fn minutes(model: &Model) -> Vec<u64> {
    let mut sum = vec![0u64; 60];
    for feed in &model.feeds {
        for (total, n) in sum.iter_mut().zip(feed.rate.minutes(model.now)) {
            *total += n;
        }
    }
    sum
}

/// The title: the rate and how many minutes the sparkline covers, shortened
/// to fit `width` (a cut `last 28` would read as 28 of something else).
fn title<'a>(model: &Model, minutes: usize, width: u16, theme: &Theme) -> Vec<Span<'a>> {
    let rate = thousands(model.per_minute());
    let dot = theme.glyphs.dot;
    let tails = [format!(" events/min {dot} last {minutes}m"), " events/min".to_string(), "/min".to_string()];
    let fits = |tail: &str| 5 + rate.chars().count() + tail.chars().count() <= usize::from(width);
    let tail = tails.iter().find(|t| fits(t)).unwrap_or(&tails[2]).clone();
    vec![Span::raw("Rate "), Span::styled(rate, theme.ok), Span::raw(tail)]
}

pub fn render(frame: &mut Frame, area: Rect, model: &Model, theme: &Theme) {
    let inner_width = usize::from(area.width);
    let history = minutes(model);
    // A narrow pane shows the most recent minutes; the right edge is always now.
    let shown = &history[history.len().saturating_sub(inner_width)..];
    let blk = block(title(model, shown.len(), area.width, theme), false, theme);
    let inner = blk.inner(area);
    frame.render_widget(blk, area);
    frame.render_widget(
        Sparkline::default().data(shown.iter().copied()).bar_set(theme.glyphs.bars.clone()).style(theme.ok),
        inner,
    );
}

/// The rate and latency panes collapsed into one line, where the screen
/// has no rows for them: the rate, then the last minutes as a one-row
/// sparkline; the latencies are on a taller terminal (and in headless lines).
pub fn render_line(frame: &mut Frame, area: Rect, model: &Model, theme: &Theme) {
    let history = minutes(model);
    let label = Line::from(vec![
        Span::styled("Rate ", theme.title),
        Span::styled(thousands(model.per_minute()), theme.ok),
        Span::styled(" events/min ", theme.title),
    ]);
    let label_width = label.width() as u16;
    let [text, spark] = Layout::horizontal([Constraint::Length(label_width), Constraint::Fill(1)]).areas(area);
    frame.render_widget(label, text);
    let shown = &history[history.len().saturating_sub(usize::from(spark.width))..];
    frame.render_widget(
        Sparkline::default().data(shown.iter().copied()).bar_set(theme.glyphs.bars.clone()).style(theme.ok),
        spark,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::test_support::empty_model;

    #[test]
    fn the_title_is_shortened_whole() {
        let theme = Theme::new(false);
        let m = empty_model();
        let text = |w| title(&m, 28, w, &theme).iter().map(|s| s.content.to_string()).collect::<String>();
        assert_eq!(text(40), "Rate 0 events/min · last 28m");
        assert_eq!(text(28), "Rate 0 events/min · last 28m");
        assert_eq!(text(27), "Rate 0 events/min");
        assert_eq!(text(16), "Rate 0/min");
    }
}
