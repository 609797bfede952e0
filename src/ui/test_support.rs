//! Builders for UI tests: models fed through `Model::apply` with explicit
//! times, and a way to read a drawn `TestBackend` buffer as text.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;

use super::{draw, Theme, ViewState};
use crate::feeds::companies_house::parse_event;
use crate::feeds::{ChEvent, CompanyState, ConnState, EventType, FeedInfo, FeedMsg, FeedMsgKind};
use crate::model::Model;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap()
}

pub fn secs(s: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(s)
}

pub fn empty_model() -> Model {
    let info = FeedInfo { name: "companies".into(), kind: "companies-house" };
    Model::new(vec![info], Duration::from_secs(300), t0())
}

pub fn apply(m: &mut Model, at: DateTime<Utc>, kind: FeedMsgKind) {
    m.apply(FeedMsg { feed: 0, at, kind }, &mut Vec::new());
}

pub fn fixture_events() -> Vec<ChEvent> {
    include_str!("../../tests/fixtures/ch-companies-sample.ndjson")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| parse_event(l.as_bytes().to_vec()).ok())
        .collect()
}

/// A company-profile event for a company not in the fixture.
pub fn profile_event(timepoint: i64, number: &str, name: &str, detail: Option<&str>) -> ChEvent {
    ChEvent {
        resource_kind: "company-profile".into(),
        resource_id: number.into(),
        timepoint,
        published_at: None,
        event_type: EventType::Changed,
        company: Some(CompanyState {
            number: number.into(),
            name: name.into(),
            status: "active".into(),
            detail: detail.map(str::to_string),
        }),
        raw: String::new(),
    }
}

/// Connected a minute before t0, then the whole fixture one event a second
/// from t0; "now" is t0 + 30 s.
pub fn live_model() -> Model {
    let mut m = empty_model();
    apply(&mut m, secs(-60), FeedMsgKind::State(ConnState::Connecting));
    apply(&mut m, secs(-60), FeedMsgKind::State(ConnState::Live));
    apply(&mut m, secs(-1), FeedMsgKind::Malformed { reason: "expected value at line 1".into() });
    for (i, ev) in fixture_events().into_iter().enumerate() {
        apply(&mut m, secs(i as i64), FeedMsgKind::Event(Box::new(ev)));
    }
    m.tick(secs(30));
    m
}

pub fn render(live: &Model, view: &ViewState, theme: &Theme, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| draw(f, live, view, theme)).unwrap();
    terminal.backend().buffer().clone()
}

/// The buffer as one string per row.
pub fn lines(buf: &Buffer) -> Vec<String> {
    let area = buf.area;
    (area.top()..area.bottom()).map(|y| (area.left()..area.right()).map(|x| buf[(x, y)].symbol()).collect()).collect()
}

pub fn screen(buf: &Buffer) -> String {
    lines(buf).join("\n")
}

/// The first row containing `needle`, for checks on what shares a row.
pub fn row_with(buf: &Buffer, needle: &str) -> Option<String> {
    lines(buf).into_iter().find(|l| l.contains(needle))
}
