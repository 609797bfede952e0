//! Companies entering and leaving the proposal to strike off, newest first,
//! filtered and scrolled by the view.

use chrono::{DateTime, Utc};
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::block;
use crate::model::enrich::CompanyEnrichment;
use crate::model::strike_off::PROPOSAL;
use crate::model::{ChangeKind, Model, StrikeOffChange};
use crate::sanitize::for_terminal;
use crate::ui::clock::Clock;
use crate::ui::filter::{self, Filter, StrikeSort};
use crate::ui::fmt::{thousands, truncate};
use crate::ui::theme::Theme;

/// The widest compact transition: `proposal → dissolved`.
const COMPACT_TRANSITION: u16 = 20;
/// Room enough for nearly every company name; longer ones end in `…`.
const MAX_NAME_WIDTH: u16 = 36;

pub fn kind_style(kind: ChangeKind, theme: &Theme) -> Style {
    match kind {
        ChangeKind::Entered => theme.entered,
        ChangeKind::Withdrawn => theme.withdrawn,
        ChangeKind::StruckOff => theme.struck_off,
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

/// `from → to` as `feedtop strike-offs` writes it (`?` for a company first
/// seen entering: its earlier state is not known), or the compact form that
/// keeps the end of the transition (where the company went) visible. The
/// form is chosen for the column, not per row, so rows read alike.
fn transition(c: &StrikeOffChange, width: usize, compact: bool) -> String {
    if compact {
        truncate(&c.transition_with(state_short), width)
    } else {
        c.transition()
    }
}

/// When the change was published (the register's time, not when we read it:
/// a replayed backlog arrives all at once), in the chosen zone (named in
/// the column header); older than today shows the date instead of the seconds.
fn when(c: &StrikeOffChange, now: DateTime<Utc>, clock: &Clock) -> String {
    let at = clock.in_zone(c.published_at.unwrap_or(c.received_at));
    if at.date_naive() == clock.in_zone(now).date_naive() {
        at.format("%H:%M:%S").to_string()
    } else {
        at.format("%m-%d %H:%M").to_string()
    }
}

fn row<'a>(
    c: &'a StrikeOffChange,
    time: String,
    theme: &Theme,
    name_width: usize,
    transition_width: usize,
    compact: bool,
    enrich: Option<&CompanyEnrichment>,
) -> Row<'a> {
    let shown_transition = for_terminal(&transition(c, transition_width, compact)).into_owned();
    let room = transition_width.saturating_sub(shown_transition.chars().count());
    let mut last = vec![Span::raw(shown_transition)];
    if let Some(e) = enrich {
        // What the REST API said: the officer count where it fits whole (a
        // cut count would read as another number; Enter shows it), and a
        // profile that contradicts the stream, always, shown rather than hidden.
        if let Some(n) = e.officers {
            let count = format!(" {} officers {n}", theme.glyphs.dot);
            if count.chars().count() <= room {
                last.push(Span::styled(count, theme.dim));
            }
        }
        if let Some(d) = &e.disagrees {
            last.push(Span::styled(format!(" · {}", for_terminal(d)), theme.warn));
        }
    }
    Row::new([
        Cell::from(Span::styled(time, theme.dim)),
        // Feed text, so through the sanitiser (one marker per character
        // replaced: the widths computed on the raw text still hold).
        Cell::from(for_terminal(&c.company_number)),
        Cell::from(for_terminal(&truncate(&c.company_name, name_width)).into_owned()),
        Cell::from(Span::styled(c.kind.as_str(), kind_style(c.kind, theme))),
        Cell::from(Line::from(last)),
    ])
}

pub struct Args<'a> {
    pub filter: &'a Filter,
    pub sort: StrikeSort,
    pub reversed: bool,
    pub scroll: usize,
    pub focused: bool,
    pub clock: &'a Clock,
}

/// The order, when it is not the default (newest first).
fn sort_label(sort: StrikeSort, reversed: bool) -> Option<String> {
    match (sort, reversed) {
        (StrikeSort::Time, false) => None,
        (StrikeSort::Time, true) => Some("sort: time, oldest first".to_string()),
        (s, false) => Some(format!("sort: {}", s.label())),
        (s, true) => Some(format!("sort: {}, reversed", s.label())),
    }
}

/// The pane title: tallies, the order, the filter, and which rows are shown
/// when not all are. Parts are shortened or dropped, least useful first, to fit.
fn title<'a>(
    model: &Model,
    filter: &str,
    sort: Option<String>,
    range: Option<String>,
    width: u16,
    theme: &Theme,
) -> Vec<Span<'a>> {
    let t = model.tally;
    let tallies = [
        Span::styled(format!("entered {}", thousands(t.entered)), theme.entered),
        Span::raw(" · "),
        Span::styled(format!("withdrawn {}", thousands(t.withdrawn)), theme.withdrawn),
        Span::raw(" · "),
        Span::styled(format!("struck off {}", thousands(t.struck_off)), theme.struck_off),
    ];
    let sort = sort.map(|s| Span::raw(format!(" · {s}")));
    let filter = (!filter.is_empty()).then(|| Span::raw(format!(" · filter: {filter}")));
    let range = range.map(|r| Span::raw(format!(" · {r}")));
    // The focus marker takes two columns.
    let fits = |spans: &[Span]| spans.iter().map(Span::width).sum::<usize>() + 2 <= usize::from(width);
    let mut best = Vec::new();
    for (prefix, with_range) in [("Strike-off changes — ", true), ("Strike-offs — ", true), ("Strike-offs — ", false)]
    {
        let range = if with_range { range.clone() } else { None };
        let spans: Vec<Span> = [Span::raw(prefix)]
            .into_iter()
            .chain(tallies.clone())
            .chain(sort.clone())
            .chain(filter.clone())
            .chain(range)
            .collect();
        best = spans;
        if fits(&best) {
            break;
        }
    }
    best
}

pub fn render(frame: &mut Frame, area: Rect, model: &Model, args: Args, theme: &Theme) {
    let filter = args.filter.text();
    let matching = filter::visible(model, args.filter, args.sort, args.reversed);
    let rows_fit = usize::from(area.height.saturating_sub(2));
    let first = args.scroll.min(matching.len().saturating_sub(1));
    let range = (first > 0 || matching.len() > rows_fit).then(|| {
        let last = (first + rows_fit).min(matching.len());
        format!("{}–{} of {}", first + 1, last, thousands(matching.len() as u64))
    });
    let sort = sort_label(args.sort, args.reversed);
    let blk = block(title(model, filter, sort, range, area.width, theme), args.focused, theme);
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
    // Every column's width depends on the pane's width alone, not on the
    // rows shown (they used to follow the longest name on the page, and
    // moved while scrolling): the name gets what the fixed columns leave
    // beyond the compact transition's room (at least half), up to what a
    // long name needs, cut with `…` beyond; the transition the rest. The time is `HH:MM:SS` or `MM-DD HH:MM`, both
    // under the header's width.
    let times: Vec<String> = shown.iter().map(|c| when(c, model.now, args.clock)).collect();
    let time_head = format!("time ({})", args.clock.label(model.now));
    let time_width = time_head.chars().count().max(11) as u16;
    let fixed = time_width + 8 + 10 + 4;
    let avail = inner.width.saturating_sub(fixed);
    let name_width = avail.saturating_sub(COMPACT_TRANSITION).max(avail / 2).clamp(7.min(avail), MAX_NAME_WIDTH);
    let header = Row::new([time_head.as_str(), "number", "company", "change", "from → to"]).style(theme.dim);
    let transition_width = usize::from(avail.saturating_sub(name_width));
    let compact = shown.iter().any(|c| c.transition().chars().count() > transition_width);
    let rows = shown.into_iter().zip(times).enumerate().map(|(i, (c, time))| {
        let enrich = model.enrich.of(&c.company_number);
        let row = row(c, time, theme, name_width.into(), transition_width, compact, enrich);
        // The row Enter opens: the first one shown, marked while the pane has the keys.
        if args.focused && i == 0 {
            row.style(theme.selected)
        } else {
            row
        }
    });
    let widths = [
        Constraint::Length(time_width),
        Constraint::Length(8),
        Constraint::Length(name_width),
        Constraint::Length(10),
        Constraint::Fill(1),
    ];
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), inner);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Format;
    use crate::model::Fact;
    use crate::store::writer::{write_batch, RawEvents};
    use crate::ui::test_support::{empty_model, fixture_events, lines, profile_event, row_with, screen, secs};
    use crate::ui::{Theme, ViewState};

    fn draw(m: &Model) -> ratatui::buffer::Buffer {
        crate::ui::test_support::render(m, &ViewState::new(), &Theme::new(true), 200, 60)
    }
    use feedtop_proto::{FeedMsg, FeedMsgKind};

    /// The fixture, then a company seen before it enters and one first seen
    /// entering: the model with its changes, and the facts it stored.
    fn model_and_facts() -> (Model, Vec<Fact>) {
        let mut m = empty_model();
        let mut facts = Vec::new();
        let mut events = fixture_events();
        events.push(profile_event(90_000_001, "AB000001", "KNOWN BEFORE LTD", Some("transferred-from-uk")));
        events.push(profile_event(90_000_002, "AB000001", "KNOWN BEFORE LTD", Some(PROPOSAL)));
        events.push(profile_event(90_000_003, "AB000002", "FIRST SEEN LTD", Some(PROPOSAL)));
        for (i, ev) in events.into_iter().enumerate() {
            m.apply(
                FeedMsg {
                    feed: m.feeds[0].info.name.clone(),
                    at: secs(i as i64),
                    kind: FeedMsgKind::Event(Box::new(ev)),
                },
                &mut facts,
            );
        }
        m.tick(secs(60));
        (m, facts)
    }

    /// A company seen before shows where it came from; one first seen
    /// shows `?` (the old pane showed `→ to` with nothing before the arrow,
    /// where the export showed the state the database had).
    #[test]
    fn the_row_shows_the_state_the_company_came_from() {
        let (m, _) = model_and_facts();
        let buf = draw(&m);
        let known = row_with(&buf, "KNOWN BEFORE LTD").unwrap_or_else(|| panic!("{}", screen(&buf)));
        assert!(
            known.trim_end().ends_with(" active/transferred-from-uk → active/active-proposal-to-strike-off"),
            "{known}"
        );
        let first = row_with(&buf, "FIRST SEEN LTD").unwrap();
        assert!(first.trim_end().ends_with(" ? → active/active-proposal-to-strike-off"), "{first}");
    }

    /// The REST enrichment's news on the company's row: its officer count,
    /// and a profile that contradicts the stream, shown rather than hidden.
    #[test]
    fn officers_and_a_contradicting_profile_show_on_the_row() {
        use crate::model::enrich::EnrichUpdate;
        let (mut m, _) = model_and_facts();
        m.enrich.apply(EnrichUpdate::Officers { company_number: "AB000001".into(), count: 3 });
        m.enrich.apply(EnrichUpdate::Profile {
            company_number: "AB000002".into(),
            disagrees: Some("profile: active, not in the proposal".into()),
        });
        let buf = draw(&m);
        let known = row_with(&buf, "KNOWN BEFORE LTD").unwrap_or_else(|| panic!("{}", screen(&buf)));
        assert!(known.trim_end().ends_with("active-proposal-to-strike-off · officers 3"), "{known}");
        let first = row_with(&buf, "FIRST SEEN LTD").unwrap();
        assert!(first.trim_end().ends_with("· profile: active, not in the proposal"), "{first}");
        // Where the count does not fit whole it is left out, never cut into
        // another number; the contradiction always shows.
        let narrow = crate::ui::test_support::render(&m, &ViewState::new(), &Theme::new(true), 80, 40);
        let known = row_with(&narrow, "KNOWN BEFORE LTD").unwrap_or_else(|| panic!("{}", screen(&narrow)));
        assert!(!known.contains("offic"), "{known}");
        assert!(row_with(&narrow, "FIRST SEEN LTD").unwrap().contains("· prof"), "{}", screen(&narrow));
    }

    /// Where the longest transition does not fit, every row takes the
    /// compact form, not only the rows that would overflow: a column reads
    /// alike from top to bottom.
    #[test]
    fn the_transition_column_has_one_form() {
        let (m, _) = model_and_facts();
        // 110 columns: room for `? → active/active-proposal-to-strike-off`
        // but not for the known company's longer transition.
        let buf = crate::ui::test_support::render(&m, &ViewState::new(), &Theme::new(true), 110, 60);
        let known = row_with(&buf, "KNOWN BEFORE LTD").unwrap_or_else(|| panic!("{}", screen(&buf)));
        let first = row_with(&buf, "FIRST SEEN LTD").unwrap();
        assert!(known.trim_end().ends_with("→ proposal"), "{known}");
        assert!(first.trim_end().ends_with("? → proposal"), "the short row is compact too: {first}");
    }

    /// Every change reads the same on the screen (from the model) and in
    /// `feedtop strike-offs` (from the database the model's facts went to).
    #[test]
    fn the_screen_and_the_export_show_the_same_transition() {
        let (m, facts) = model_and_facts();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        write_batch(&mut crate::store::open(&db).unwrap(), &facts, RawEvents::Full).unwrap();
        let mut out = Vec::new();
        let options =
            crate::export::Options { format: Format::Table, since: None, csv_raw: false, with_officers: false };
        assert_eq!(crate::export::run(&db, options, &mut out).unwrap(), m.strike_offs.len());
        let export = String::from_utf8(out).unwrap();
        let buf = draw(&m);
        let shown = lines(&buf);
        assert_eq!(m.strike_offs.len(), 13);
        for c in &m.strike_offs {
            let text = format!(" {}", c.transition());
            let on_screen = shown.iter().filter(|l| l.contains(&c.company_number) && l.contains(c.kind.as_str()));
            assert!(
                on_screen.clone().any(|l| l.trim_end().ends_with(&text)),
                "{text} on the screen:\n{}",
                screen(&buf)
            );
            let exported = export.lines().filter(|l| l.contains(&c.company_number) && l.contains(c.kind.as_str()));
            assert!(exported.clone().any(|l| l.ends_with(&text)), "{text} in the export:\n{export}");
        }
        assert!(export.contains(" ? → active/active-proposal-to-strike-off"), "{export}");
    }
}
