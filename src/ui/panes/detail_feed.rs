//! Enter on a feed: everything the Connections row has no room for. The
//! whole last error (the row cuts it to `HTTP 429: rate limi…`), the last
//! state changes with why each happened, the URL with secrets hidden, the
//! settings in force and every counter the model keeps.

use chrono::{DateTime, Utc};
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::connections::rtt_text;
use super::detail::{field, heading, paragraph, wrap};
use crate::model::{FeedView, STATE_HISTORY};
use crate::sanitize::for_terminal;
use crate::time::short_duration;
use crate::ui::clock::Clock;
use crate::ui::fmt::{age, countdown, thousands};
use crate::ui::theme::Theme;
use feedtop_proto::ConnState;

/// The settings' label column: as wide as the longest label.
const LABEL: usize = 17;

fn state_style(state: &ConnState, theme: &Theme) -> Style {
    match state {
        ConnState::Live => theme.ok,
        ConnState::Connecting | ConnState::Backoff { .. } => theme.warn,
        ConnState::AuthFailed { .. } => theme.error,
    }
}

/// `backoff 5s`: a waiting state with how long it waited.
fn state_text(state: &ConnState, at: DateTime<Utc>) -> String {
    match state.retry_at() {
        Some(retry) => format!("{} {}", state.label(), short_duration(retry - at)),
        None => state.label().to_string(),
    }
}

/// `12:00:30`, or with the date when not today (in the chosen zone).
fn when(at: DateTime<Utc>, now: DateTime<Utc>, clock: &Clock) -> String {
    let local = clock.in_zone(at);
    if local.date_naive() == clock.in_zone(now).date_naive() {
        local.format("%H:%M:%S").to_string()
    } else {
        local.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

pub fn lines(f: &FeedView, now: DateTime<Utc>, clock: &Clock, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();

    // Where it is now, as the Connections row says it, with the countdown.
    let label = f.state_label(now);
    let style = if f.is_stalled(now) { theme.warn } else { state_style(&f.state, theme) };
    let mut now_line = vec![
        Span::styled(f.info.kind.label().to_string(), theme.dim),
        Span::raw("  "),
        Span::styled(label.to_string(), style),
    ];
    if let Some(since) = f.state_since {
        now_line.push(Span::raw(format!(" for {}", short_duration(now - since))));
    }
    if let Some(retry) = f.state.retry_at() {
        now_line.push(Span::raw(format!(", retry in {}", countdown(Some(retry), now))));
    }
    out.push(Line::from(now_line));
    let url = f.about.url.as_deref().unwrap_or("not known");
    field(&mut out, "URL", LABEL, url, Style::new(), width, theme);

    out.push(Line::default());
    match &f.last_error {
        None => out.push(Line::from(vec![Span::styled("Last error", theme.title), Span::styled("  none", theme.dim)])),
        Some(e) => {
            // As the row colours it: a present problem, or history.
            let (when_note, style) = match f.state {
                ConnState::Live if f.error_while_live => ("on this connection", theme.warn),
                ConnState::Live => ("before this connection", theme.dim),
                _ => ("", theme.error),
            };
            let mut title = vec![Span::styled("Last error", theme.title)];
            if !when_note.is_empty() {
                title.push(Span::styled(format!("  {when_note}"), theme.dim));
            }
            out.push(Line::from(title));
            paragraph(&mut out, e, style, 2, width);
        }
    }

    out.push(Line::default());
    out.push(heading(
        format!("State changes ({} of the last {STATE_HISTORY}, newest first, {})", f.history.len(), clock.label(now)),
        theme,
    ));
    if f.history.is_empty() {
        out.push(Line::styled("  none yet", theme.dim));
    }
    let rows: Vec<(String, String, Style, Option<&str>)> = f
        .history
        .newest_first()
        .map(|c| {
            (when(c.at, now, clock), state_text(&c.state, c.at), state_style(&c.state, theme), c.reason.as_deref())
        })
        .collect();
    let time_w = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let state_w = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    let indent = 2 + time_w + 2 + state_w + 2;
    for (at, state, style, reason) in rows {
        let pad = " ".repeat(state_w - state.chars().count());
        let mut spans = vec![
            Span::raw("  "),
            Span::styled(at, theme.dim),
            Span::raw("  "),
            Span::styled(state, style),
            Span::raw(pad),
        ];
        let Some(reason) = reason else {
            out.push(Line::from(spans));
            continue;
        };
        // The reason beside the state, its continuation rows under itself;
        // on a narrow overlay under the state instead.
        let room = width.saturating_sub(indent);
        if room < 20 {
            out.push(Line::from(spans));
            paragraph(&mut out, reason, theme.dim, 4, width);
            continue;
        }
        for (i, row) in wrap(&for_terminal(reason), room).into_iter().enumerate() {
            if i > 0 {
                spans = vec![Span::raw(" ".repeat(indent - 2))];
            }
            spans.push(Span::raw("  "));
            spans.push(Span::styled(row, theme.dim));
            out.push(Line::from(std::mem::take(&mut spans)));
        }
    }

    out.push(Line::default());
    out.push(heading("Counters", theme));
    let c = &f.counts;
    let counters = [
        ("events", thousands(c.events)),
        ("per minute", thousands(f.rate.per_minute(now))),
        ("reconnects", thousands(f.reconnects())),
        ("gaps", thousands(c.gaps)),
        ("malformed", thousands(c.malformed)),
        ("too long", thousands(c.too_long)),
        ("duplicates", thousands(c.duplicates)),
        ("keep-alives", thousands(c.keepalives)),
        ("unknown kinds", thousands(c.unknown_kinds)),
        ("unusable resume ids", thousands(c.unusable_resume_ids)),
        ("last rx", age(f.last_byte_at, now)),
        ("last ev", age(f.last_event_at, now)),
        ("rtt", rtt_text(f, now)),
        ("last timepoint", f.last_timepoint.map_or_else(|| "-".to_string(), |t| t.to_string())),
    ];
    // Whole `name value` items per row, so a counter is never split.
    let mut row = String::new();
    for item in counters.iter().map(|(k, v)| format!("{k} {v}")) {
        if !row.is_empty() && 2 + row.chars().count() + 3 + item.chars().count() > width {
            out.push(Line::raw(format!("  {}", std::mem::take(&mut row))));
        }
        if !row.is_empty() {
            row.push_str(" · ");
        }
        row.push_str(&item);
    }
    out.push(Line::raw(format!("  {row}")));

    out.push(Line::default());
    out.push(heading("Settings in force", theme));
    if f.about.settings.is_empty() {
        out.push(Line::styled("  not known", theme.dim));
    }
    for (label, value) in &f.about.settings {
        field(&mut out, &format!("  {label}"), LABEL + 2, value, Style::new(), width, theme);
    }
    out
}
