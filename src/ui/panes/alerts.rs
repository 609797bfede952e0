//! The alerts list (`A`): every alert this run has kept, newest first, with
//! its time in the view's zone (`t` applies), whether it is acknowledged,
//! the rule, the kind, the feed and what happened. A box over the panes,
//! like the help; it scrolls when there are more alerts than rows.
//!
//! It draws the live model's alerts, not the paused snapshot: a pause
//! freezes the panes, not what the operator must be told.

use chrono::{DateTime, Utc};
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Padding, Paragraph};
use ratatui::Frame;

use crate::alerts::Alert;
use crate::model::Model;
use crate::sanitize::for_terminal;
use crate::ui::clock::Clock;
use crate::ui::fmt::{thousands, truncate};
use crate::ui::theme::Theme;

/// Today's alerts show the time; older ones the date too.
fn when(at: DateTime<Utc>, now: DateTime<Utc>, clock: &Clock) -> String {
    let local = clock.in_zone(at);
    if local.date_naive() == clock.in_zone(now).date_naive() {
        local.format("%H:%M:%S").to_string()
    } else {
        local.format("%m-%d %H:%M").to_string()
    }
}

fn row<'a>(a: &Alert, acked: bool, now: DateTime<Utc>, clock: &Clock, width: usize, theme: &Theme) -> Line<'a> {
    let time = format!("{:>11}", when(a.at, now, clock));
    let (mark, mark_style) = if acked { ("ack", theme.dim) } else { ("NEW", theme.error.add_modifier(Modifier::BOLD)) };
    let kind = format!("{:<10}", a.kind.as_str());
    // Fixed columns: time 11, mark 3, kind 10, gaps; the rest is the text.
    let used = 11 + 2 + 3 + 2 + 10 + 2;
    let text = format!("#{} {}: {}", a.rule, a.feed, a.detail);
    let text = truncate(&for_terminal(&text), width.saturating_sub(used));
    Line::from(vec![
        Span::styled(time, theme.dim),
        Span::raw("  "),
        Span::styled(mark, mark_style),
        Span::raw("  "),
        Span::styled(kind, theme.title),
        Span::raw("  "),
        Span::raw(text),
    ])
}

/// Draws the list from row `scroll` and returns how many rows it showed.
pub fn render(
    frame: &mut Frame,
    area: Rect,
    live: &Model,
    acked: u64,
    scroll: usize,
    clock: &Clock,
    theme: &Theme,
) -> usize {
    let log = &live.alerts;
    let width = area.width.saturating_sub(4).max(20).min(area.width);
    // Borders (2) and the column header (1) around the rows.
    let wanted = log.len().max(1) as u16 + 3;
    let height = wanted.min(area.height.saturating_sub(2)).max(3.min(area.height));
    let [popup] = Layout::horizontal([Constraint::Length(width)]).flex(Flex::Center).areas(area);
    let [popup] = Layout::vertical([Constraint::Length(height)]).flex(Flex::Center).areas(popup);
    let shown = usize::from(height.saturating_sub(3));
    let first = scroll.min(log.len().saturating_sub(shown.max(1)));
    let new = log.iter().take_while(|a| a.seq > acked).count();

    let title = format!(" Alerts: {} raised, {} new ", thousands(log.raised), thousands(new as u64));
    let more = if first + shown < log.len() || first > 0 { "j/k scroll · " } else { "" };
    let hint = format!(" a acknowledges · {more}q closes ");
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.title)
        .padding(Padding::horizontal(1))
        .title(Line::styled(title, theme.title))
        .title_bottom(Line::styled(hint, theme.dim).centered());
    let inner = usize::from(width.saturating_sub(4));
    let mut lines = vec![Line::styled(
        format!(
            "{:>11}  {:<3}  {:<10}  {}",
            format!("time ({})", clock.label(live.now)),
            "",
            "kind",
            "rule feed: what"
        ),
        theme.dim,
    )];
    if log.is_empty() {
        lines.push(Line::styled(
            "No alerts. Rules are [[alerts]] tables in the config file (README: Alerts).",
            theme.dim,
        ));
    }
    lines.extend(log.iter().skip(first).take(shown).map(|a| row(a, a.seq <= acked, live.now, clock, inner, theme)));
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(block), popup);
    shown
}
