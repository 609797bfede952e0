//! The top lines: program name, pause state, totals and the clock; then the
//! demo banner (or, for a viewer, the NATS source it reads) and a store
//! problem when there is one.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::model::Model;
use crate::sanitize::for_terminal;
use crate::ui::clock::Clock;
use crate::ui::fmt::{thousands, truncate};
use crate::ui::theme::Theme;
use feedtop_proto::ConnState;

const DEMO_HEAD: &str = "DEMO — simulated feeds on loopback.";
const DEMO_TAIL: &str = "Watch the real stream: CH_STREAMING_API_KEY=<key> feedtop";
/// The same on one line for 80 columns: every row counts there.
const DEMO_SHORT: &str = "DEMO (simulated). Real stream: CH_STREAMING_API_KEY=<key> feedtop";

/// Rows the header needs at this width.
pub fn height(model: &Model, width: u16) -> u16 {
    1 + demo_lines(model, width).len() as u16
        + source_line(model, width).is_some() as u16
        + store_lines(model, width).len() as u16
}

/// A viewer's source, so nobody takes the relay's feeds for their own:
/// `source nats://host:4222 · stream FEEDTOP · …`, its parts whole where
/// they fit, the URL (secrets already `***`) cut with `…` only when it
/// alone is wider than the screen.
fn source_line(model: &Model, width: u16) -> Option<Vec<(String, bool)>> {
    let v = model.viewer.as_ref()?;
    let width = usize::from(width);
    let url = for_terminal(&v.url).into_owned();
    let stream = format!(" · stream {}", for_terminal(&v.stream));
    const WHAT: &str = " · the relay's feeds, states and strike-offs";
    // (text, is it the URL): the URL stands out, the rest is dim.
    let candidates = [
        vec![("source ".to_string(), false), (url.clone(), true), (stream.clone(), false), (WHAT.to_string(), false)],
        vec![("source ".to_string(), false), (url.clone(), true), (stream, false)],
        vec![("source ".to_string(), false), (url.clone(), true)],
    ];
    let len = |parts: &[(String, bool)]| parts.iter().map(|(t, _)| t.chars().count()).sum::<usize>();
    candidates.into_iter().find(|c| len(c) <= width).or_else(|| {
        Some(vec![("source ".to_string(), false), (truncate(&url, width.saturating_sub("source ".len())), true)])
    })
}

/// The store problem on up to two rows, broken at a space: its second half
/// says what to do, and one row cut at 80 columns would lose exactly that.
fn store_lines(model: &Model, width: u16) -> Vec<String> {
    let Some(err) = &model.store.error else { return Vec::new() };
    let text = format!("store: {err}");
    let width = usize::from(width).max(1);
    if text.chars().count() <= width {
        return vec![text];
    }
    let fits: String = text.chars().take(width).collect();
    // `fits` is a prefix of `text`, so its byte offsets are `text`'s too.
    let cut = fits.rfind(' ').filter(|&i| i > 0).unwrap_or(fits.len());
    let (first, rest) = text.split_at(cut);
    vec![first.to_string(), truncate(rest.trim_start(), width)]
}

fn demo_lines(model: &Model, width: u16) -> Vec<String> {
    if !model.demo {
        return Vec::new();
    }
    let one = format!("{DEMO_HEAD} {DEMO_TAIL}");
    if one.chars().count() <= width as usize {
        vec![one]
    } else if DEMO_SHORT.chars().count() <= width as usize {
        vec![DEMO_SHORT.to_string()]
    } else {
        vec![DEMO_HEAD.to_string(), DEMO_TAIL.to_string()]
    }
}

/// Memory and, when the store lags, its backlog: `store backlog 1,204 · mem 23 MB · `.
fn health(model: &Model) -> String {
    let p = &model.process;
    let mut text = String::new();
    if p.store_pending > 0 || p.store_queue > 1 {
        text.push_str(&format!("store backlog {} · ", thousands((p.store_pending + p.store_queue) as u64)));
    }
    if let Some(rss) = p.rss_bytes {
        text.push_str(&format!("mem {} MB · ", rss / 1_048_576));
    }
    text
}

/// The marker for flash alerts not acknowledged yet: first after the name,
/// reversed, in the error colour, and naming the keys that deal with it.
pub fn alerts_marker(unacknowledged: usize) -> Option<String> {
    (unacknowledged > 0).then(|| {
        let noun = if unacknowledged == 1 { "ALERT" } else { "ALERTS" };
        format!(" {} {noun} · a ack · A list ", thousands(unacknowledged as u64))
    })
}

/// The marker without its keys, for a narrow header (the footer and `?`
/// still name them).
fn alerts_marker_short(unacknowledged: usize) -> Option<String> {
    (unacknowledged > 0).then(|| {
        let noun = if unacknowledged == 1 { "ALERT" } else { "ALERTS" };
        format!(" {} {noun} ", thousands(unacknowledged as u64))
    })
}

/// `paused` is the number of events that arrived since the snapshot shown;
/// `alerts` the flash alerts not acknowledged (from the live model).
pub fn render(
    frame: &mut Frame,
    area: Rect,
    model: &Model,
    paused: Option<u64>,
    alerts: usize,
    clock: &Clock,
    theme: &Theme,
) {
    let mut rows = area.rows();
    let Some(top) = rows.next() else { return };

    let live = model.feeds.iter().filter(|f| f.is_healthy(model.now)).count();
    // Red when a feed is down, yellow when one is only stalled.
    let live_style = if model.feeds.iter().any(|f| f.state != ConnState::Live) {
        theme.error
    } else if live < model.feeds.len() {
        theme.warn
    } else {
        theme.dim
    };
    // The alerts marker names its keys where the row has room; on a narrow
    // terminal it gives them up before the totals or the clock go.
    let line_with = |marker: Option<String>| {
        let mut spans = vec![Span::styled("feedtop", theme.title), Span::raw("  ")];
        if let Some(marker) = marker {
            let style = theme.error.add_modifier(Modifier::REVERSED | Modifier::BOLD);
            spans.push(Span::styled(marker, style));
            spans.push(Span::raw("  "));
        }
        if let Some(n) = paused {
            let style = theme.warn.add_modifier(Modifier::REVERSED | Modifier::BOLD);
            spans.push(Span::styled(format!(" PAUSED — {} new ", thousands(n)), style));
            spans.push(Span::raw("  "));
        }
        spans.push(Span::styled(format!("{live}/{} live", model.feeds.len()), live_style));
        let stored = match model.store.no_database {
            true => "none stored".to_string(),
            false => format!("{} stored", thousands(model.store.events_written)),
        };
        let totals = format!(
            " · {} · {} in proposal · {stored}",
            crate::ui::fmt::count(model.events_total, "event"),
            model.in_proposal().map_or_else(|| "?".to_string(), thousands),
        );
        spans.push(Span::styled(totals, theme.dim));
        Line::from(spans)
    };
    let clock = clock.time_with_zone(model.now);
    let fits = |left: &Line, right: &str| left.width() + right.chars().count() < usize::from(top.width);
    let left = [alerts_marker(alerts), alerts_marker_short(alerts)]
        .into_iter()
        .map(line_with)
        .find(|left| fits(left, &clock))
        .unwrap_or_else(|| line_with(alerts_marker_short(alerts)));

    // Right-aligned: feedtop's own health, then the clock; each only if it
    // does not cover the totals.
    let with_health = format!("{}{clock}", health(model));
    let right = [with_health, clock].into_iter().find(|r| fits(&left, r));
    match right {
        Some(right) => {
            let width = right.chars().count() as u16;
            let [text, corner] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(width)]).areas(top);
            frame.render_widget(Paragraph::new(left), text);
            let style = if model.process.store_pending > 0 { theme.warn } else { theme.dim };
            frame.render_widget(Paragraph::new(Span::styled(right, style)), corner);
        }
        None => frame.render_widget(Paragraph::new(left), top),
    }

    for text in demo_lines(model, area.width) {
        let Some(row) = rows.next() else { return };
        frame.render_widget(Paragraph::new(text).style(theme.banner), row);
    }
    if let Some(parts) = source_line(model, area.width) {
        let Some(row) = rows.next() else { return };
        let spans: Vec<Span> =
            parts.into_iter().map(|(t, url)| Span::styled(t, if url { theme.title } else { theme.dim })).collect();
        frame.render_widget(Paragraph::new(Line::from(spans)), row);
    }
    for text in store_lines(model, area.width) {
        let Some(row) = rows.next() else { return };
        frame.render_widget(Paragraph::new(Span::styled(text, theme.error)), row);
    }
}
