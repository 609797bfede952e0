//! Events per minute now, and a sparkline of the last hour, over all feeds.

use ratatui::layout::Rect;
use ratatui::text::Span;
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

pub fn render(frame: &mut Frame, area: Rect, model: &Model, theme: &Theme) {
    let inner_width = usize::from(area.width);
    let history = minutes(model);
    // A narrow pane shows the most recent minutes; the right edge is always now.
    let shown = &history[history.len().saturating_sub(inner_width)..];
    let title = vec![
        Span::raw("Rate "),
        Span::styled(thousands(model.per_minute()), theme.ok),
        Span::raw(format!(" events/min {} last {}m", theme.glyphs.dot, shown.len())),
    ];
    let blk = block(title, false, theme);
    let inner = blk.inner(area);
    frame.render_widget(blk, area);
    frame.render_widget(
        Sparkline::default().data(shown.iter().copied()).bar_set(theme.glyphs.bars.clone()).style(theme.ok),
        inner,
    );
}
