//! One row per feed: its state and how fresh its data is. Columns that do not
//! fit are dropped least-important first, so the last error keeps room.
//! Which columns show, and how wide, depends on the pane's width alone, not
//! on the data: each column has a width that holds its usual values (a count
//! past it widens its column rather than drop another), and a long feed name
//! is cut with `…`.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table};
use ratatui::Frame;

use super::block;
use crate::model::{FeedView, Model};
use crate::sanitize::for_terminal;
use crate::time::short_duration;
use crate::ui::fmt::{age, countdown, latency_ms, thousands, truncate};
use crate::ui::theme::Theme;
use feedtop_proto::ConnState;

/// The last error column is never squeezed below this.
const MIN_ERROR_WIDTH: u16 = 20;
/// A long feed name is cut rather than allowed to push everything else off.
const MAX_COLUMN_WIDTH: usize = 30;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Col {
    Feed,
    State,
    Since,
    Reconnects,
    Retry,
    LastByte,
    LastEvent,
    Events,
    Gaps,
    Malformed,
    Rtt,
}

/// Display order.
const COLUMNS: [Col; 11] = [
    Col::Feed,
    Col::State,
    Col::Since,
    Col::Reconnects,
    Col::Retry,
    Col::LastByte,
    Col::LastEvent,
    Col::Rtt,
    Col::Events,
    Col::Gaps,
    Col::Malformed,
];

/// Dropped from the end of this list first when the pane is narrow.
const IMPORTANCE: [Col; 11] = [
    Col::Feed,
    Col::State,
    Col::Retry,
    Col::Events,
    Col::LastEvent,
    Col::Since,
    Col::LastByte,
    Col::Reconnects,
    Col::Gaps,
    Col::Malformed,
    Col::Rtt,
];

impl Col {
    fn header(self) -> &'static str {
        match self {
            Col::Feed => "feed",
            Col::State => "state",
            Col::Since => "since",
            Col::Reconnects => "recon",
            Col::Retry => "retry",
            Col::LastByte => "last rx",
            Col::LastEvent => "last ev",
            Col::Events => "events",
            Col::Gaps => "gaps",
            Col::Malformed => "bad",
            Col::Rtt => "rtt",
        }
    }

    /// The width the column keeps whatever the data: its header, or the
    /// widest of its usual values (`connecting`, `59m59s`, `999,999`,
    /// `(1.50s)`). The feed names come from the config, so their width is
    /// fixed for the run.
    fn nominal(self, model: &Model) -> u16 {
        let values: u16 = match self {
            Col::Feed => {
                model.feeds.iter().map(|f| f.info.name.chars().count()).max().unwrap_or(0).min(MAX_COLUMN_WIDTH) as u16
            }
            Col::State => 10,
            Col::Since | Col::LastByte | Col::LastEvent => 6,
            Col::Reconnects | Col::Gaps | Col::Malformed => 3,
            Col::Retry => 5,
            Col::Rtt => 7,
            Col::Events => 7,
        };
        values.max(self.header().len() as u16)
    }

    fn text(self, f: &FeedView, model: &Model) -> String {
        let now = model.now;
        match self {
            Col::Feed => truncate(&f.info.name, MAX_COLUMN_WIDTH),
            Col::State => f.state_label(now).to_string(),
            Col::Since => f.state_since.map_or_else(|| "-".into(), |t| short_duration(now - t)),
            Col::Reconnects => thousands(f.reconnects()),
            Col::Retry => countdown(f.state.retry_at(), now),
            Col::LastByte => age(f.last_byte_at, now),
            Col::LastEvent => age(f.last_event_at, now),
            Col::Events => thousands(f.counts.events),
            Col::Gaps => thousands(f.counts.gaps),
            Col::Malformed => thousands(f.counts.malformed + f.counts.too_long),
            Col::Rtt => rtt_text(f, now),
        }
    }
}

/// The ping round-trip time; in brackets once it no longer describes the
/// connection (stalled, not live, or older than the quiet period).
pub fn rtt_text(f: &FeedView, now: chrono::DateTime<chrono::Utc>) -> String {
    match f.rtt {
        None => "-".into(),
        Some(d) => {
            let ms = latency_ms(d.as_millis().min(u128::from(u64::MAX)) as u64);
            if f.rtt_is_stale(now) {
                format!("({ms})")
            } else {
                ms
            }
        }
    }
}

/// The REST enrichment on one strip of the title: state (with how long a
/// pause or an open breaker lasts), queue and time to drain it at the
/// limit, the rate used of the limit, and when the next call goes.
fn enrich_strip(model: &Model, theme: &Theme) -> Vec<Span<'static>> {
    use crate::model::enrich::EnrichState;
    let Some(e) = &model.enrich.status else { return Vec::new() };
    let left = |t: chrono::DateTime<chrono::Utc>| short_duration((t - model.now).max(chrono::TimeDelta::zero()));
    let (state, style) = match &e.state {
        EnrichState::Idle => ("idle".to_string(), theme.dim),
        EnrichState::Running => ("running".to_string(), theme.ok),
        EnrichState::Paused { until } => (format!("paused {}", left(*until)), theme.warn),
        EnrichState::Open { until } => (format!("open {}", left(*until)), theme.error),
        EnrichState::AuthFailed => ("auth failed".to_string(), theme.error),
    };
    let mut text = format!(" · queue {}", thousands(e.queued));
    let drain = e.drain_time();
    if !drain.is_zero() {
        let drain = chrono::TimeDelta::from_std(drain).unwrap_or(chrono::TimeDelta::MAX);
        text.push_str(&format!(" (~{})", short_duration(drain)));
    }
    let per = chrono::TimeDelta::from_std(e.per).unwrap_or_default();
    text.push_str(&format!(" · {}/{} per {}", e.used, e.limit, short_duration(per)));
    if let Some(next) = e.next_call.filter(|&n| n > model.now) {
        text.push_str(&format!(" · next in {}", left(next)));
    }
    vec![Span::raw(" · enrich "), Span::styled(state, style), Span::raw(text)]
}

/// A viewer's own link to NATS on the title: its state (and for how long
/// it has been down), how far behind the stream it is, when the relay last
/// announced itself (or that it has gone silent), and reconnects. The rows
/// are the relay's feeds; this is what stands between them and the screen.
/// Each part shows whole or not at all, the least needed going first when
/// `room` (the columns left on the title) is short.
fn nats_strip(model: &Model, theme: &Theme, room: usize) -> Vec<Span<'static>> {
    use crate::model::nats_link::{relay_silent_for, LINK_DOWN_AFTER};
    let Some(v) = &model.viewer else { return Vec::new() };
    let down_for = model.nats_links.viewer.down_for(v.nats, model.now);
    let (state, state_style) = match down_for {
        None => (v.nats.label().to_string(), theme.ok),
        Some(d) => {
            let past = d.to_std().unwrap_or_default() >= LINK_DOWN_AFTER;
            (format!("{} {}", v.nats.label(), short_duration(d)), if past { theme.error } else { theme.warn })
        }
    };
    // (priority, spans): lower goes last.
    let mut parts: Vec<(u8, Vec<Span<'static>>)> =
        vec![(0, vec![Span::raw(" · NATS "), Span::styled(state, state_style)])];
    if down_for.is_none() {
        parts.push((2, vec![Span::raw(format!(" · {} behind", thousands(v.behind)))]));
        match (relay_silent_for(v, model.now), v.relay_heard) {
            (Some(silent), _) => parts.push((
                1,
                vec![Span::raw(" · "), Span::styled(format!("relay silent {}", short_duration(silent)), theme.warn)],
            )),
            (None, Some(heard)) => {
                parts.push((3, vec![Span::raw(format!(" · relay heard {} ago", short_duration(model.now - heard)))]))
            }
            (None, None) => {}
        }
    }
    if v.reconnects > 0 {
        parts.push((4, vec![Span::raw(format!(" · reconnects {}", thousands(v.reconnects)))]));
    }
    let width = |parts: &[(u8, Vec<Span<'static>>)]| parts.iter().flat_map(|(_, s)| s).map(Span::width).sum::<usize>();
    while width(&parts) > room {
        let Some(last) = parts.iter().enumerate().max_by_key(|(_, (p, _))| *p).map(|(i, _)| i) else { break };
        parts.remove(last);
    }
    parts.into_iter().flat_map(|(_, spans)| spans).collect()
}

fn state_style(f: &FeedView, now: chrono::DateTime<chrono::Utc>, theme: &Theme) -> Style {
    match &f.state {
        ConnState::Live if f.is_stalled(now) => theme.warn,
        ConnState::Live => theme.ok,
        ConnState::Connecting | ConnState::Backoff { .. } => theme.warn,
        ConnState::AuthFailed { .. } => theme.error,
    }
}

pub fn render(frame: &mut Frame, area: Rect, model: &Model, selected: usize, focused: bool, theme: &Theme) {
    let mut title = vec![Span::raw(format!("Connections ({})", model.feeds.len()))];
    title.extend(enrich_strip(model, theme));
    // The focus marker takes two columns before the title.
    let used = if focused { 2 } else { 0 } + title.iter().map(Span::width).sum::<usize>();
    title.extend(nats_strip(model, theme, usize::from(area.width).saturating_sub(used)));
    let blk = block(title, focused, theme);
    let inner = blk.inner(area);
    frame.render_widget(blk, area);

    // Which columns fit is decided on their nominal widths; a rare wider
    // value (`auth failed`, a count past a million) widens its own column.
    let nominal = |cols: &[Col]| cols.iter().map(|&c| c.nominal(model) + 1).sum::<u16>();
    let mut shown: Vec<Col> = IMPORTANCE.to_vec();
    while shown.len() > 2 && nominal(&shown) + MIN_ERROR_WIDTH > inner.width {
        shown.pop();
    }
    let width = |c: Col| {
        let cells = model.feeds.iter().map(|f| c.text(f, model).chars().count() as u16);
        cells.max().unwrap_or(0).max(c.nominal(model))
    };
    let used = |cols: &[Col]| cols.iter().map(|&c| width(c) + 1).sum::<u16>();
    let cols: Vec<Col> = COLUMNS.into_iter().filter(|c| shown.contains(c)).collect();
    let error_width = inner.width.saturating_sub(used(&cols));

    let header = Row::new(cols.iter().map(|c| c.header()).chain(["last error"])).style(theme.dim);
    let rows = model.feeds.iter().enumerate().map(|(i, f)| {
        let mut cells: Vec<Cell> = cols
            .iter()
            .map(|&c| {
                let style = match c {
                    Col::State => state_style(f, model.now, theme),
                    Col::Rtt if f.rtt_is_stale(model.now) => theme.dim,
                    _ => Style::new(),
                };
                Cell::from(Span::styled(c.text(f, model), style))
            })
            .collect();
        // A live feed whose source has no data for some symbols says so
        // here: that is what the user needs, not an error from before.
        let no_data =
            (f.state == ConnState::Live && !f.no_data.is_empty()).then(|| format!("no data: {}", f.no_data.join(", ")));
        // A server's text (error bodies, close reasons), so through the sanitiser.
        // An error that came on the live connection (no subscription possible)
        // is a warning; on a live feed otherwise, the symbols its source has
        // no data for, or an error from before the connection (history, dimmed).
        let (text, err_style) = match f.state {
            ConnState::Live if f.error_while_live => (f.last_error.as_deref(), theme.warn),
            ConnState::Live => (no_data.as_deref().or(f.last_error.as_deref()), theme.dim),
            _ => (f.last_error.as_deref(), theme.error),
        };
        let err = text.map(|e| truncate(&for_terminal(e), error_width as usize)).unwrap_or_default();
        cells.push(Cell::from(Line::from(Span::styled(err, err_style))));
        match (i == selected.min(model.feeds.len().saturating_sub(1)), focused) {
            (true, true) => Row::new(cells).style(theme.selected),
            // `r` reconnects the selected feed whichever pane has focus. Its
            // name alone is marked: an attribute over the whole row would
            // go out again with every second's new ages.
            (true, false) => {
                if let Some(name) = cells.first_mut() {
                    *name = std::mem::take(name).style(theme.selected_idle);
                }
                Row::new(cells)
            }
            (false, _) => Row::new(cells),
        }
    });
    let widths = cols.iter().map(|&c| Constraint::Length(width(c))).chain([Constraint::Fill(1)]);
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), inner);
}

#[cfg(test)]
mod enrich_tests {
    use std::time::Duration;

    use crate::model::enrich::{EnrichState, EnrichStatus};
    use crate::ui::test_support::{empty_model, render, row_with, screen, t0};
    use crate::ui::{Theme, ViewState};

    /// The Connections title carries the enrichment's state, queue and
    /// drain time, rate used of the limit, and the next call; nothing when
    /// enrichment is off.
    #[test]
    fn the_enrichment_strip_says_state_queue_rate_and_next_call() {
        let mut m = empty_model();
        let buf = render(&m, &ViewState::new(), &Theme::new(true), 160, 30);
        assert!(!screen(&buf).contains("enrich"));
        let mut e = EnrichStatus::new(600, Duration::from_secs(300));
        e.state = EnrichState::Open { until: t0() + chrono::TimeDelta::seconds(90) };
        e.queued = 1500;
        e.used = 600;
        e.next_call = Some(t0() + chrono::TimeDelta::seconds(90));
        m.enrich.status = Some(e);
        let buf = render(&m, &ViewState::new(), &Theme::new(true), 160, 30);
        let title = row_with(&buf, "Connections").unwrap_or_else(|| panic!("{}", screen(&buf)));
        assert!(
            title.contains("enrich open 1m30s · queue 1,500 (~15m00s) · 600/600 per 5m00s · next in 1m30s"),
            "{title}"
        );
        m.enrich.status.as_mut().unwrap().state = EnrichState::AuthFailed;
        let buf = render(&m, &ViewState::new(), &Theme::new(true), 160, 30);
        assert!(row_with(&buf, "Connections").unwrap().contains("enrich auth failed"));
    }
}
