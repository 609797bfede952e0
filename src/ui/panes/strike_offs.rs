//! Companies entering and leaving the proposal to strike off, newest first,
//! filtered and scrolled by the view.

use chrono::{DateTime, Local, Utc};
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::block;
use crate::model::strike_off::PROPOSAL;
use crate::model::{ChangeKind, Model, StrikeOffChange};
use crate::sanitize::for_terminal;
use crate::ui::filter;
use crate::ui::fmt::{thousands, truncate};
use crate::ui::theme::Theme;

pub fn kind_style(kind: ChangeKind, theme: &Theme) -> Style {
    match kind {
        ChangeKind::Entered => theme.entered,
        ChangeKind::Withdrawn => theme.withdrawn,
        ChangeKind::StruckOff => theme.struck_off,
    }
}

/// `status/detail`, or just `status` when there is no detail.
fn state_text(status: &str, detail: Option<&str>) -> String {
    match detail {
        None => status.to_string(),
        Some(d) => format!("{status}/{d}"),
    }
}

/// The compact form for narrow panes: the detail alone when there is one (it
/// implies the status), with the proposal written as `proposal`.
fn state_short(status: &str, detail: Option<&str>) -> String {
    match detail {
        None => status.to_string(),
        Some(PROPOSAL) => "proposal".to_string(),
        Some(d) => d.to_string(),
    }
}

/// `from → to`; an entry's earlier state is often unknown, so then only `→ to`.
/// When that does not fit, the compact form keeps the end of the transition
/// (where the company went) visible.
fn transition(c: &StrikeOffChange, width: usize) -> String {
    let text = |state: fn(&str, Option<&str>) -> String| {
        let to = state(&c.to_status, c.to_detail.as_deref());
        match &c.from_status {
            Some(from) => format!("{} → {to}", state(from, c.from_detail.as_deref())),
            None => format!("→ {to}"),
        }
    };
    let full = text(state_text);
    if full.chars().count() <= width {
        full
    } else {
        truncate(&text(state_short), width)
    }
}

/// When the change was published (the register's time, not when we read it:
/// a replayed backlog arrives all at once), local time; older than today
/// shows the date instead of the seconds.
fn when(c: &StrikeOffChange, now: DateTime<Utc>) -> String {
    let at = c.published_at.unwrap_or(c.received_at).with_timezone(&Local);
    if at.date_naive() == now.with_timezone(&Local).date_naive() {
        at.format("%H:%M:%S").to_string()
    } else {
        at.format("%m-%d %H:%M").to_string()
    }
}

fn row<'a>(c: &'a StrikeOffChange, time: String, theme: &Theme, transition_width: usize) -> Row<'a> {
    Row::new([
        Cell::from(Span::styled(time, theme.dim)),
        // Feed text, so through the sanitiser (one marker per character
        // replaced: the widths computed on the raw text still hold).
        Cell::from(for_terminal(&c.company_number)),
        Cell::from(for_terminal(&c.company_name)),
        Cell::from(Span::styled(c.kind.as_str(), kind_style(c.kind, theme))),
        Cell::from(for_terminal(&transition(c, transition_width)).into_owned()),
    ])
}

pub struct Args<'a> {
    pub filter: &'a str,
    pub scroll: usize,
    pub focused: bool,
}

/// The pane title: tallies, the filter, and which rows are shown when not
/// all are. Parts are shortened or dropped, least useful first, to fit.
fn title<'a>(model: &Model, filter: &str, range: Option<String>, width: u16, theme: &Theme) -> Vec<Span<'a>> {
    let t = model.tally;
    let tallies = [
        Span::styled(format!("entered {}", thousands(t.entered)), theme.entered),
        Span::raw(" · "),
        Span::styled(format!("withdrawn {}", thousands(t.withdrawn)), theme.withdrawn),
        Span::raw(" · "),
        Span::styled(format!("struck off {}", thousands(t.struck_off)), theme.struck_off),
    ];
    let filter = (!filter.is_empty()).then(|| Span::raw(format!(" · filter: {filter}")));
    let range = range.map(|r| Span::raw(format!(" · {r}")));
    // The focus marker takes two columns.
    let fits = |spans: &[Span]| spans.iter().map(Span::width).sum::<usize>() + 2 <= usize::from(width);
    let mut best = Vec::new();
    for (prefix, with_range) in [("Strike-off changes — ", true), ("Strike-offs — ", true), ("Strike-offs — ", false)]
    {
        let range = if with_range { range.clone() } else { None };
        let spans: Vec<Span> =
            [Span::raw(prefix)].into_iter().chain(tallies.clone()).chain(filter.clone()).chain(range).collect();
        best = spans;
        if fits(&best) {
            break;
        }
    }
    best
}

pub fn render(frame: &mut Frame, area: Rect, model: &Model, args: Args, theme: &Theme) {
    let filter = args.filter.trim();
    let matching: Vec<&StrikeOffChange> = filter::visible(model, filter).collect();
    let rows_fit = usize::from(area.height.saturating_sub(2));
    let first = args.scroll.min(matching.len().saturating_sub(1));
    let range = (first > 0 || matching.len() > rows_fit).then(|| {
        let last = (first + rows_fit).min(matching.len());
        format!("{}–{} of {}", first + 1, last, thousands(matching.len() as u64))
    });
    let blk = block(title(model, filter, range, area.width, theme), args.focused, theme);
    let inner = blk.inner(area);
    frame.render_widget(blk, area);

    if matching.is_empty() {
        let text = if filter.is_empty() {
            "no strike-off changes yet".to_string()
        } else {
            format!("no match for '{filter}'")
        };
        frame.render_widget(Paragraph::new(Line::styled(text, theme.dim)), inner);
        return;
    }
    let shown: Vec<&StrikeOffChange> = matching.into_iter().skip(first).take(rows_fit).collect();
    // The name column is as wide as the longest name shown, within limits, and
    // the transition gets the rest: on a wide screen both are whole.
    let times: Vec<String> = shown.iter().map(|c| when(c, model.now)).collect();
    let time_width = times.iter().map(|t| t.len()).max().unwrap_or(8) as u16;
    let fixed = time_width + 8 + 10 + 4;
    let avail = inner.width.saturating_sub(fixed);
    let longest = shown.iter().map(|c| c.company_name.chars().count()).max().unwrap_or(0) as u16;
    let name_width = longest.clamp(7, 40).min(avail / 5 * 3);
    let header = Row::new(["time", "number", "company", "change", "from → to"]).style(theme.dim);
    let transition_width = usize::from(avail.saturating_sub(name_width));
    let rows = shown.into_iter().zip(times).map(|(c, time)| row(c, time, theme, transition_width));
    let widths = [
        Constraint::Length(time_width),
        Constraint::Length(8),
        Constraint::Length(name_width),
        Constraint::Length(10),
        Constraint::Fill(1),
    ];
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), inner);
}
