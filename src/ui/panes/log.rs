//! The tracing log: diagnostics go here, never onto the screen where they
//! would tear the layout. The newest lines at the bottom, followed as they
//! come; scrolled back, the view stays on its lines and the title counts
//! the newer ones below.

use ratatui::layout::Rect;
use ratatui::text::Span;
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::block;
use super::log_lines::{LogLines, LogPos, Rows};
use crate::logging::LogBuffer;
use crate::ui::clock::Clock;
use crate::ui::fmt::count;
use crate::ui::theme::Theme;

pub struct Args<'a> {
    pub buffer: &'a LogBuffer,
    /// The top row when scrolled back; `None` follows the newest line.
    pub top: Option<LogPos>,
    pub focused: bool,
    pub clock: &'a Clock,
}

pub fn render(frame: &mut Frame, area: Rect, args: Args, theme: &Theme) {
    let ring = args.buffer.lock();
    // The title rule is the block's only border.
    let width = usize::from(area.width);
    let height = usize::from(area.height.saturating_sub(1));
    let rows = Rows { ring: &ring, width };
    let top = args.top.and_then(|p| rows.clamp(p));
    let following = rows.following_top(height);
    let start = match top {
        Some(t) if following.is_some_and(|f| t < f) => Some(t),
        _ => following,
    };
    let lines = LogLines {
        clock: args.clock,
        error: theme.error,
        warn: theme.warn,
        info: ratatui::style::Style::new(),
        debug: theme.dim,
        trace: theme.dim,
    };
    let mut shown = Vec::with_capacity(height);
    let mut last_seq = None;
    if let Some(start) = start {
        let mut seq = start.seq;
        let mut skip = start.row;
        while shown.len() < height {
            let Some(record) = ring.get(seq) else { break };
            shown.extend(lines.format(record, width).into_iter().skip(skip).take(height - shown.len()));
            last_seq = Some(seq);
            skip = 0;
            seq += 1;
        }
    }
    let newer = match (ring.last_seq(), last_seq) {
        (Some(last), Some(shown)) => last - shown,
        _ => 0,
    };
    let mut title = vec![Span::raw("Log")];
    if newer > 0 {
        title.push(Span::styled(format!(" · ↓ {}", count(newer, "newer line")), theme.warn));
    }
    let blk = block(title, args.focused, theme);
    let inner = blk.inner(area);
    frame.render_widget(blk, area);
    frame.render_widget(Paragraph::new(shown), inner);
}
