//! Builders for UI tests: models fed through `Model::apply` with explicit
//! times, and a way to read a drawn `TestBackend` buffer as text.

use std::time::Duration;

use chrono::{DateTime, Local, TimeDelta, TimeZone, Utc};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;

use super::{draw, Theme, ViewState};
use crate::model::Model;
use feedtop_proto::ch::parse_event;
use feedtop_proto::{ChEvent, CompanyState, ConnState, EventType, FeedInfo, FeedMsg, FeedMsgKind, Quote, QuoteTime};
use feedtop_proto::{Dialect, FeedKind};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap()
}

/// Local time pinned to Central European Time (CEST in June, at t0), for
/// screens that must not depend on the machine's zone.
pub fn cet_clock() -> crate::ui::clock::Clock {
    crate::ui::clock::Clock::new(jiff::tz::TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap())
}

pub fn secs(s: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(s)
}

pub fn empty_model() -> Model {
    let info = FeedInfo { name: "companies".into(), kind: FeedKind::CompaniesHouse };
    Model::new(vec![info], Duration::from_secs(300), t0())
}

pub fn apply(m: &mut Model, at: DateTime<Utc>, kind: FeedMsgKind) {
    apply_to(m, 0, at, kind);
}

/// Applies a message from the model's `index`-th feed (tests build their
/// models with a known order).
pub fn apply_to(m: &mut Model, index: usize, at: DateTime<Utc>, kind: FeedMsgKind) {
    let feed = m.feeds[index].info.name.clone();
    m.apply(FeedMsg { feed, at, kind }, &mut Vec::new());
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

/// Position of the first `needle`.
pub fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    find_in_row(buf, "", needle)
}

/// Position of `needle` in the first row that also contains `row`.
pub fn find_in_row(buf: &Buffer, row: &str, needle: &str) -> Option<(u16, u16)> {
    lines(buf).iter().enumerate().find_map(|(y, l)| {
        let byte = l.find(needle).filter(|_| l.contains(row))?;
        Some((l[..byte].chars().count() as u16, y as u16))
    })
}

/// Companies House and the three quote feeds, in that order.
pub fn four_feeds() -> Model {
    let feeds = [
        ("ch/companies", FeedKind::CompaniesHouse),
        ("wig80", FeedKind::WebSocket(Dialect::Wig80)),
        ("carbon", FeedKind::WebSocket(Dialect::Carbon)),
        ("sse", FeedKind::Sse),
    ];
    let feeds = feeds.map(|(name, kind)| FeedInfo { name: name.into(), kind }).to_vec();
    Model::new(feeds, Duration::from_secs(300), t0())
}

// Positions in the test models' feed lists (see `apply_to`).
pub const WIG80: usize = 1;
pub const CARBON: usize = 2;
pub const SSE: usize = 3;

/// wig80's PKN (down) and KGHM (up) with the market in `status`, stamped
/// with the server's naive local time one second before t0 + 20 s.
pub fn wig80_quotes(status: &str) -> Vec<Quote> {
    let naive = QuoteTime::Naive(secs(19).with_timezone(&Local).naive_local());
    let pkn = Quote {
        volume: Some(262_356.0),
        market_status: Some(status.into()),
        time: Some(naive),
        ..quote("PKN", 74.62, -0.38, -0.5)
    };
    let kghm = Quote {
        volume: Some(1_234_567.0),
        high: Some(153.0),
        low: Some(148.5),
        market_status: Some(status.into()),
        time: Some(naive),
        ..quote("KGHM", 152.30, 3.10, 2.08)
    };
    vec![pkn, kghm]
}

/// carbon's BRENT_CRUDE on the model's `index`-th feed: 75.50 at t0 + 20 s,
/// then 75.90 half a second before t0 + 30 s (it just ticked up); zoned
/// timestamps, 250 ms late.
pub fn carbon_brent(m: &mut Model, index: usize) {
    let brent = |price: f64, at: DateTime<Utc>| Quote {
        volume: Some(1000.0),
        time: Some(QuoteTime::Absolute(at - TimeDelta::milliseconds(250))),
        ..Quote::new("BRENT_CRUDE", price)
    };
    apply_to(m, index, secs(20), FeedMsgKind::Quotes(vec![brent(75.5, secs(20))]));
    let just_now = secs(30) - TimeDelta::milliseconds(500);
    apply_to(m, index, just_now, FeedMsgKind::Quotes(vec![brent(75.9, just_now)]));
}

/// A quote with the day's change.
pub fn quote(symbol: &str, price: f64, change: f64, percent: f64) -> Quote {
    Quote { change: Some(change), change_percent: Some(percent), ..Quote::new(symbol, price) }
}

/// The four feeds live since a minute before t0; now is t0 + 30 s.
///
/// - Companies House: one event published 2 s before it arrived, no change.
/// - wig80: PKN down and KGHM up at t0 + 20 s, stamped with the server's
///   naive local time (an estimated latency of 1 s); its ping takes 42 ms.
/// - carbon: BRENT_CRUDE 75.50 at t0 + 20 s, then 75.90 half a second before
///   now (it just ticked up); zoned timestamps, 250 ms late.
/// - sse: WIG20 at t0 - 90 s (two minutes old at now), no timestamps.
pub fn quote_model() -> Model {
    let mut m = four_feeds();
    for feed in 0..4 {
        apply_to(&mut m, feed, secs(-60), FeedMsgKind::State(ConnState::Connecting));
        apply_to(&mut m, feed, secs(-60), FeedMsgKind::State(ConnState::Live));
    }
    let mut ev = profile_event(1, "01234567", "STEADY TRADING LTD", None);
    ev.published_at = Some(secs(8));
    apply_to(&mut m, 0, secs(10), FeedMsgKind::Event(Box::new(ev)));

    apply_to(&mut m, WIG80, secs(20), FeedMsgKind::Quotes(wig80_quotes("closed")));
    apply_to(&mut m, WIG80, secs(21), FeedMsgKind::Rtt(Duration::from_millis(42)));

    carbon_brent(&mut m, CARBON);

    let wig20 = Quote { volume: Some(45_600_000.0), ..quote("WIG20", 2_345.67, 12.5, 0.54) };
    apply_to(&mut m, SSE, secs(-90), FeedMsgKind::Quotes(vec![wig20]));
    // Its heartbeat keeps the connection from looking stalled.
    apply_to(&mut m, SSE, secs(25), FeedMsgKind::KeepAlive);
    m.tick(secs(30));
    m
}
