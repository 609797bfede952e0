//! The page shown for a strike-off change (Enter): everything the database
//! holds about the company, from [`crate::store::details::company_detail`].
//!
//! Sections: Company, Registered office, Filing, Status history (newest
//! first) and Strike-off changes. A field the stored events do not carry says
//! so, dimmed, instead of leaving a blank that reads as "empty"; every string
//! from the feed goes through the sanitiser.

use chrono::{DateTime, Utc};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::strike_offs::kind_style;
use crate::model::strike_off::state_text;
use crate::sanitize::for_terminal;
use crate::store::details::{CompanyDetail, Due, Profile, MAX_EVENTS};
use crate::store::enrich::Officer;
use crate::ui::clock::Clock;
use crate::ui::fmt::thousands;
use crate::ui::theme::Theme;

/// What a field the stored events lack says.
pub const MISSING: &str = "not in the stream";

/// Width of the label column, so that values line up.
const LABEL: usize = 20;

/// `2025-06-10 10:05:12 CEST`: the history spans days, so the date is always there.
fn when(at: DateTime<Utc>, clock: &Clock) -> String {
    format!("{} {}", clock.in_zone(at).format("%Y-%m-%d %H:%M:%S"), clock.label(at))
}

fn heading(text: &str, theme: &Theme) -> Line<'static> {
    Line::styled(text.to_string(), theme.title)
}

fn note(text: String, theme: &Theme) -> Line<'static> {
    Line::from(vec![Span::raw("  "), Span::styled(text, theme.dim)])
}

/// Feed text made safe for the terminal, or [`MISSING`] dimmed.
fn value(text: Option<&str>, theme: &Theme) -> Span<'static> {
    match text {
        Some(t) => Span::raw(for_terminal(t).into_owned()),
        None => Span::styled(MISSING, theme.dim),
    }
}

fn field(label: &str, value: Span<'static>) -> Line<'static> {
    Line::from(vec![Span::raw(format!("  {label:<LABEL$}")), value])
}

fn company(d: &CompanyDetail, theme: &Theme) -> Vec<Line<'static>> {
    let p = d.profile.as_ref();
    let status = d.status.as_deref().map(|s| state_text(s, d.status_detail.as_deref()));
    let sic = p.filter(|p| !p.sic_codes.is_empty()).map(|p| p.sic_codes.join(", "));
    let mut out = vec![
        // The name and number are the page's title.
        heading("Company", theme),
        field("status", value(status.as_deref(), theme)),
        field("type", value(p.and_then(|p| p.company_type.as_deref()), theme)),
        field("jurisdiction", value(p.and_then(|p| p.jurisdiction.as_deref()), theme)),
        field("created", value(p.and_then(|p| p.date_of_creation.as_deref()), theme)),
    ];
    // Only a dissolved company has one: absent is not missing.
    if let Some(ceased) = p.and_then(|p| p.date_of_cessation.as_deref()) {
        out.push(field("ceased", value(Some(ceased), theme)));
    }
    out.push(field("SIC codes", value(sic.as_deref(), theme)));
    out
}

fn office(p: Option<&Profile>, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = vec![heading("Registered office", theme)];
    match p.map(|p| p.address.as_slice()) {
        Some(lines) if !lines.is_empty() => {
            out.extend(lines.iter().map(|l| Line::from(vec![Span::raw("  "), value(Some(l), theme)])));
        }
        _ => out.push(Line::from(vec![Span::raw("  "), value(None, theme)])),
    }
    out
}

/// `2025-01-19  overdue` (marked) or `2026-05-24` with nothing after it.
fn due(label: &str, due: Option<&Due>, theme: &Theme) -> Line<'static> {
    let mut line = field(label, value(due.and_then(|d| d.next_due.as_deref()), theme));
    if due.and_then(|d| d.overdue) == Some(true) {
        line.spans.push(Span::raw("  "));
        line.spans.push(Span::styled("OVERDUE", theme.error));
    }
    line
}

fn filing(d: &CompanyDetail, clock: &Clock, theme: &Theme) -> Vec<Line<'static>> {
    let p = d.profile.as_ref();
    let mut out = vec![
        heading("Filing", theme),
        due("accounts due", p.map(|p| &p.accounts), theme),
        due("confirmation due", p.map(|p| &p.confirmation_statement), theme),
    ];
    match p {
        Some(p) => {
            out.push(note(format!("as of the event of {} (timepoint {})", when(p.at, clock), p.timepoint), theme))
        }
        // Say why, so that the user knows what to change.
        None if d.events_read == 0 => out
            .push(note("no stored event for this company (older than [storage] event_retention?)".to_string(), theme)),
        None => out.push(note(
            "its stored events hold names and statuses only ([storage] raw_events = \"fields\")".to_string(),
            theme,
        )),
    }
    out
}

fn history(d: &CompanyDetail, clock: &Clock, theme: &Theme) -> Vec<Line<'static>> {
    let read = if d.older_events {
        format!("the newest {} events", thousands(MAX_EVENTS as u64))
    } else {
        format!("{} stored event{}", thousands(d.events_read as u64), if d.events_read == 1 { "" } else { "s" })
    };
    let mut out = vec![Line::from(vec![
        Span::styled("Status history", theme.title),
        // The store keeps a company's events at its changes (see
        // `store::details`), not every event it was sent.
        Span::styled(format!(" — at each change recorded, newest first ({read})"), theme.dim),
    ])];
    if d.history.is_empty() {
        out.push(note("no stored events".to_string(), theme));
    }
    for h in &d.history {
        let state = match (&h.status, h.deleted) {
            (_, true) => Span::styled("deleted from the register", theme.struck_off),
            (Some(s), false) => Span::raw(for_terminal(&state_text(s, h.detail.as_deref())).into_owned()),
            (None, false) => Span::styled(MISSING, theme.dim),
        };
        let mut spans = vec![Span::raw("  "), Span::styled(when(h.at, clock), theme.dim), Span::raw("  "), state];
        let mut tail = format!("  timepoint {}", h.timepoint);
        if h.events > 1 {
            tail.push_str(&format!(", {} events", thousands(h.events as u64)));
        }
        spans.push(Span::styled(tail, theme.dim));
        out.push(Line::from(spans));
    }
    if d.older_events {
        out.push(note("… older events are not read here".to_string(), theme));
    }
    out
}

fn strike_offs(d: &CompanyDetail, clock: &Clock, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = vec![heading("Strike-off changes", theme)];
    if d.strike_offs.is_empty() {
        out.push(note("none stored".to_string(), theme));
    }
    for c in &d.strike_offs {
        out.push(Line::from(vec![
            Span::raw("  "),
            Span::styled(when(c.published_at.unwrap_or(c.received_at), clock), theme.dim),
            Span::raw("  "),
            Span::styled(format!("{:<10}", c.kind.as_str()), kind_style(c.kind, theme)),
            Span::raw("  "),
            Span::raw(for_terminal(&c.transition()).into_owned()),
        ]));
    }
    out
}

/// The company's officers from the REST enrichment, as stored: who, in what
/// role, since and until when, and how to reach them. Says why there are
/// none rather than showing an empty section.
pub fn officer_lines(
    officers: &[Officer],
    fetched_at: Option<&str>,
    clock: &Clock,
    theme: &Theme,
) -> Vec<Line<'static>> {
    let mut out = vec![heading(&format!("Officers ({})", thousands(officers.len() as u64)), theme)];
    // Stored as RFC 3339 UTC; shown in the screen's zone like every time.
    let fetched_at = fetched_at.map(|at| match DateTime::parse_from_rfc3339(at) {
        Ok(t) => when(t.with_timezone(&Utc), clock),
        Err(_) => for_terminal(at).into_owned(),
    });
    let fetched_at = fetched_at.as_deref();
    match (officers.is_empty(), fetched_at) {
        (true, None) => out.push(note(
            "not fetched: enrichment needs a Companies House REST key (README: Enrichment)".to_string(),
            theme,
        )),
        (true, Some(at)) => out.push(note(format!("none listed (fetched {at})"), theme)),
        (false, at) => {
            if let Some(at) = at {
                out.push(note(format!("fetched {at}"), theme));
            }
        }
    }
    for o in officers {
        let role = o.role.as_deref().map(|r| format!(" ({})", for_terminal(r))).unwrap_or_default();
        let mut dates = o.appointed_on.as_deref().map(|d| format!("appointed {}", for_terminal(d))).unwrap_or_default();
        if let Some(resigned) = o.resigned_on.as_deref() {
            dates = format!("{dates}, resigned {}", for_terminal(resigned)).trim_start_matches(", ").to_string();
        }
        out.push(Line::from(vec![
            Span::raw("  "),
            Span::raw(for_terminal(&o.name).into_owned()),
            Span::styled(role, theme.dim),
            Span::styled(if dates.is_empty() { String::new() } else { format!("  {dates}") }, theme.dim),
        ]));
        let born = match (o.birth_month, o.birth_year) {
            (Some(m), Some(y)) => Some(format!("born {m:02}/{y}")),
            (None, Some(y)) => Some(format!("born {y}")),
            _ => None,
        };
        let about: Vec<String> = [o.occupation.clone(), o.nationality.clone(), o.country_of_residence.clone(), born]
            .into_iter()
            .flatten()
            .map(|t| for_terminal(&t).into_owned())
            .collect();
        if !about.is_empty() {
            out.push(note(format!("  {}", about.join(", ")), theme));
        }
        if let Some(address) = o.address.as_deref() {
            out.push(note(format!("  {}", for_terminal(address)), theme));
        }
    }
    out
}

/// The whole page, a line each.
pub fn lines(d: &CompanyDetail, clock: &Clock, theme: &Theme) -> Vec<Line<'static>> {
    let name = d.name.as_deref().map_or_else(|| MISSING.to_string(), |n| for_terminal(n).into_owned());
    let title = Line::from(vec![
        Span::styled(name, theme.title),
        Span::styled(format!("  {}", for_terminal(&d.number)), theme.dim),
    ]);
    let mut out = vec![title, Line::default()];
    for (i, section) in [
        company(d, theme),
        office(d.profile.as_ref(), theme),
        filing(d, clock, theme),
        history(d, clock, theme),
        strike_offs(d, clock, theme),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            out.push(Line::default());
        }
        out.extend(section);
    }
    out
}

/// Draws the page from line `scroll` (held so that the last page stays
/// full) and returns how many lines the page has, for the caller's scroll
/// limits.
pub fn render(
    frame: &mut Frame,
    area: Rect,
    detail: &CompanyDetail,
    scroll: usize,
    clock: &Clock,
    theme: &Theme,
) -> usize {
    let lines = lines(detail, clock, theme);
    let total = lines.len();
    let first = scroll.min(total.saturating_sub(usize::from(area.height)));
    let first = u16::try_from(first).unwrap_or(u16::MAX);
    frame.render_widget(Paragraph::new(lines).scroll((first, 0)), area);
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangeKind, Fact, Model, StrikeOffChange};
    use crate::sanitize::{is_unsafe, MARKER};
    use crate::store::details::{company_detail, StatusEntry};
    use crate::store::writer::{write_batch, RawEvents};
    use crate::ui::test_support::{cet_clock, fixture_events, secs, t0};
    use feedtop_proto::{FeedInfo, FeedKind, FeedMsg, FeedMsgKind};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use std::time::Duration;

    /// The fixture through the model and the real writer, as `raw`; the
    /// detail of `number` read back.
    fn stored(number: &str, raw: RawEvents) -> CompanyDetail {
        let info = FeedInfo { name: "companies".into(), kind: FeedKind::CompaniesHouse };
        let mut m = Model::new(vec![info], Duration::from_secs(300), t0());
        let mut facts: Vec<Fact> = Vec::new();
        for (i, ev) in fixture_events().into_iter().enumerate() {
            let kind = FeedMsgKind::Event(Box::new(ev));
            m.apply(FeedMsg { feed: "companies".into(), at: secs(i as i64), kind }, &mut facts);
        }
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        write_batch(&mut conn, &facts, raw).unwrap();
        company_detail(&conn, number).unwrap().expect("in the fixture")
    }

    fn draw(d: &CompanyDetail, scroll: usize, width: u16, height: u16) -> (String, usize) {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        let mut total = 0;
        terminal.draw(|f| total = render(f, f.area(), d, scroll, &cet_clock(), &Theme::new(true))).unwrap();
        (terminal.backend().to_string(), total)
    }

    macro_rules! assert_page {
        ($name:expr, $detail:expr, $w:expr, $h:expr) => {{
            let (text, _) = draw(&$detail, 0, $w, $h);
            insta::with_settings!({ description => format!("{}×{}", $w, $h), omit_expression => true }, {
                insta::assert_snapshot!($name, text);
            });
        }};
    }

    /// Proposal → dissolved, with its filing overdue.
    #[test]
    fn struck_off_company_page() {
        let d = stored("14829301", RawEvents::Full);
        assert_page!("company_detail_struck_off_80x24", d, 80, 24);
        assert_page!("company_detail_struck_off_120x40", d, 120, 40);
    }

    /// Names and statuses only: the profile's fields say they are not there
    /// and why.
    #[test]
    fn fields_only_company_page() {
        let d = stored("SC612947", RawEvents::Fields);
        assert_page!("company_detail_fields_only_120x40", d, 120, 40);
        let (text, _) = draw(&d, 0, 120, 40);
        assert!(text.contains(MISSING), "{text}");
        assert!(text.contains("raw_events = \"fields\""), "{text}");
    }

    /// A company known only from a strike-off change whose events are past
    /// the retention: every field says it is missing, nothing is blank.
    fn forgotten() -> CompanyDetail {
        CompanyDetail {
            number: "01234567".into(),
            name: Some("ORCHARD LANE LTD".into()),
            status: None,
            status_detail: None,
            profile: None,
            history: Vec::new(),
            events_read: 0,
            older_events: false,
            strike_offs: vec![StrikeOffChange {
                kind: ChangeKind::Entered,
                company_number: "01234567".into(),
                company_name: "ORCHARD LANE LTD".into(),
                from_status: None,
                from_detail: None,
                to_status: "active".into(),
                to_detail: Some("active-proposal-to-strike-off".into()),
                published_at: Some(secs(-86_400 * 40)),
                timepoint: 7,
                received_at: secs(-86_400 * 40),
            }],
        }
    }

    #[test]
    fn empty_history_page() {
        assert_page!("company_detail_empty_history_80x24", forgotten(), 80, 24);
        let (text, _) = draw(&forgotten(), 0, 80, 24);
        assert!(text.contains("no stored events"), "{text}");
        assert!(text.contains("event_retention"), "says what to look at: {text}");
        // status, type, jurisdiction, created, SIC codes, office, accounts, confirmation.
        assert_eq!(text.matches(MISSING).count(), 8, "{text}");
    }

    const HOSTILE: &str = "EVIL\x1b]0;pwned\x07LTD\x1b[2J\u{9b}2J\r\x08\x7f\u{202E}DTL";

    /// A name, address, code, date and status that carry terminal escapes,
    /// C1 controls, DEL and a bidi override are drawn with markers.
    fn hostile() -> CompanyDetail {
        let mut d = forgotten();
        d.name = Some(HOSTILE.into());
        d.number = "9\x1b[2J".into();
        d.status = Some("active\x1b]52;c;aGk=\x07".into());
        d.profile = Some(Profile {
            timepoint: 9,
            at: t0(),
            company_type: Some("ltd\u{2066}".into()),
            address: vec![format!("1 {HOSTILE} Road"), "\u{9b}31mTOWN".into()],
            sic_codes: vec!["\x1b[5m".into()],
            date_of_creation: Some("2020-01-01\r".into()),
            accounts: Due { next_due: Some("\x1b[8m2025-01-01".into()), overdue: Some(true) },
            ..Profile::default()
        });
        d.history = vec![StatusEntry {
            at: t0(),
            timepoint: 9,
            status: Some("active".into()),
            detail: Some("\x1b[31mproposal".into()),
            deleted: false,
            events: 3,
        }];
        d.events_read = 3;
        d.strike_offs[0].to_detail = Some("\x1b]0;x\x07".into());
        d
    }

    #[test]
    fn hostile_company_page_is_drawn_with_markers() {
        let (text, _) = draw(&hostile(), 0, 120, 40);
        let bad: Vec<char> = text.chars().filter(|&c| c != '\n' && is_unsafe(c)).collect();
        assert!(bad.is_empty(), "control characters on screen: {bad:?}\n{text}");
        assert!(text.contains(&format!("EVIL{MARKER}]0;pwned{MARKER}LTD{MARKER}[2J")), "{text}");
        assert!(text.contains(&format!("{MARKER}31mTOWN")), "{text}");
        assert_page!("company_detail_hostile_120x40", hostile(), 120, 40);
    }

    /// The page scrolls, and scrolling past the end shows the last page
    /// whole rather than a blank screen.
    #[test]
    fn scrolling_stops_at_the_last_page() {
        let d = stored("14829301", RawEvents::Full);
        let (top, total) = draw(&d, 0, 80, 10);
        assert_eq!(total, lines(&d, &cet_clock(), &Theme::new(true)).len());
        assert!(total > 10);
        assert!(top.lines().next().unwrap().contains("BRIGHTWELL JOINERY LTD  14829301"), "{top}");
        let (end, _) = draw(&d, 10_000, 80, 10);
        let (last, _) = draw(&d, total - 10, 80, 10);
        assert_eq!(end, last);
        assert!(end.contains("Strike-off changes") && end.contains("entered"), "{end}");
    }
}
