//! Whole-screen tests: draw into a `TestBackend` and check the text (and a
//! few colours) a user would see, for each state the tool can be in.

use chrono::TimeDelta;
use ratatui::style::Color;

use super::keys::BINDINGS;
use super::test_support::*;
use super::{Focus, Theme, ViewState};
use crate::model::StoreReport;
use feedtop_proto::{ConnState, FeedMsgKind};

fn color() -> Theme {
    Theme::new(true)
}

#[test]
fn live_feed_at_80x24() {
    let m = live_model();
    let buf = render(&m, &ViewState::new(), &color(), 80, 24);
    let s = screen(&buf);
    let conn = row_with(&buf, "companies").unwrap_or_else(|| panic!("{s}"));
    assert!(conn.contains("live"), "{s}");
    assert!(conn.contains("1m30s"), "live since a minute and a half: {s}");
    assert!(conn.contains("27"), "events: {s}");
    assert!(s.contains("entered 6 · withdrawn 3 · struck off 2"), "{s}");
    assert!(s.contains("Rate 27 events/min"), "{s}");
    // Newest first: the struck-off of 12007733 is the first row.
    let first = lines(&buf).into_iter().position(|l| l.contains("12007733")).unwrap_or_else(|| panic!("{s}"));
    let brightwell = lines(&buf).into_iter().position(|l| l.contains("14829301")).unwrap_or_else(|| panic!("{s}"));
    assert!(first < brightwell, "{s}");
    assert!(row_with(&buf, "12007733").unwrap().contains("struck-off"), "{s}");
    assert!(!s.contains("no data"), "fixture events carry published_at: {s}");
    assert!(s.contains("q quit"), "footer hints: {s}");
    // The live state is green.
    let (x, y) = find_in_row(&buf, "companies", "live").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Green);
}

#[test]
fn wide_screen_shows_every_column() {
    let m = live_model();
    let buf = render(&m, &ViewState::new(), &color(), 200, 50);
    let s = screen(&buf);
    let header = row_with(&buf, "last error").unwrap_or_else(|| panic!("{s}"));
    for col in ["feed", "state", "since", "recon", "retry", "last rx", "last ev", "events", "gaps", "bad"] {
        assert!(header.contains(col), "{col}: {header}");
    }
    // Every one of the 11 changes fits.
    for number in ["14829301", "SC612947", "OC431876", "NI678123", "12007733", "15338660"] {
        assert!(s.contains(number), "{number}: {s}");
    }
    assert!(s.contains("active/active-proposal-to-strike-off → dissolved"), "{s}");
    assert!(s.contains("p50") && s.contains("p99") && s.contains("last 5m"), "{s}");
}

fn backoff_model() -> crate::model::Model {
    let mut m = live_model();
    apply(&mut m, secs(30), FeedMsgKind::Error("the server closed the stream after 90s idle".into()));
    apply(&mut m, secs(30), FeedMsgKind::State(ConnState::Backoff { retry_at: secs(35) }));
    m.tick(secs(30));
    m
}

#[test]
fn a_quiet_live_feed_is_shown_stalled_in_amber_and_the_header_says_so() {
    let mut m = live_model();
    // The last event came at 26 s (see live_model); the quiet period is 45 s.
    m.tick(secs(26 + 46));
    let buf = render(&m, &ViewState::new(), &color(), 80, 24);
    let s = screen(&buf);
    let row = row_with(&buf, "companies").unwrap_or_else(|| panic!("{s}"));
    assert!(row.contains("stalled") && !row.contains("live"), "{row}");
    let (x, y) = find_in_row(&buf, "companies", "stalled").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Yellow);
    // Not counted as live, and the count is yellow (stalled, not down).
    let (x, y) = find(&buf, "0/1 live").unwrap_or_else(|| panic!("{s}"));
    assert_eq!(buf[(x, y)].fg, Color::Yellow);
    // Healthy, the count is plain; down, it is red.
    m.tick(secs(30));
    let healthy = render(&m, &ViewState::new(), &color(), 80, 24);
    let (x, y) = find(&healthy, "1/1 live").unwrap();
    assert_ne!(healthy[(x, y)].fg, Color::Yellow);
    assert_ne!(healthy[(x, y)].fg, Color::Red);
    let down = render(&backoff_model(), &ViewState::new(), &color(), 80, 24);
    let (x, y) = find(&down, "0/1 live").unwrap();
    assert_eq!(down[(x, y)].fg, Color::Red);
}

/// After a resume an hour of backlog must not read as an hour of latency:
/// the latency row says "catching up" with the lag and the count, and once the
/// backlog stops without a fresh event it claims no lag at all.
#[test]
fn a_replayed_backlog_is_shown_as_catching_up_not_as_latency() {
    let mut m = empty_model();
    apply(&mut m, secs(-1), FeedMsgKind::State(ConnState::Live));
    for (i, mut ev) in fixture_events().into_iter().take(3).enumerate() {
        ev.published_at = Some(secs(i as i64) - TimeDelta::minutes(134));
        apply(&mut m, secs(i as i64), FeedMsgKind::Event(Box::new(ev)));
    }
    m.tick(secs(3));
    let buf = render(&m, &ViewState::new(), &color(), 100, 30);
    let s = screen(&buf);
    let latency_row =
        lines(&buf).into_iter().filter(|l| l.contains("companies")).nth(1).unwrap_or_else(|| panic!("{s}"));
    assert!(latency_row.contains("catching up: lag 2h14m, 3 replayed"), "{s}");
    // Where the pane has no room for the count, the lag stays.
    let narrow = screen(&render(&m, &ViewState::new(), &color(), 80, 24));
    assert!(narrow.contains("catching up: lag 2h14m "), "{narrow}");
    let narrowest = screen(&render(&m, &ViewState::new(), &color(), 60, 24));
    assert!(narrowest.contains("catch-up 2h14m"), "{narrowest}");
    let (x, y) = find(&buf, "catching up").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Yellow, "a condition, not health");

    m.tick(secs(30));
    let s = screen(&render(&m, &ViewState::new(), &color(), 100, 30));
    assert!(s.contains("replayed 3; no fresh event yet"), "{s}");
    assert!(!s.contains("2h14m"), "a lag that may be over is not claimed: {s}");
    assert!(!s.contains("catching up"), "{s}");
}

#[test]
fn an_old_round_trip_time_is_shown_as_stale() {
    let mut m = four_feeds();
    let wig80 = m.feed_index("wig80").unwrap();
    m.feeds[wig80].stall_after = std::time::Duration::from_secs(30);
    apply_to(&mut m, wig80, secs(10), FeedMsgKind::State(ConnState::Live));
    apply_to(&mut m, wig80, secs(10), FeedMsgKind::Rtt(std::time::Duration::from_millis(12)));
    m.tick(secs(20));
    let fresh = screen(&render(&m, &ViewState::new(), &color(), 200, 50));
    assert!(fresh.contains("12ms") && !fresh.contains("(12ms)"), "{fresh}");
    // Nothing since: past wig80's 30 s quiet period the figure is old.
    m.tick(secs(41));
    let old = screen(&render(&m, &ViewState::new(), &color(), 200, 50));
    assert!(old.contains("(12ms)"), "{old}");
}

#[test]
fn backoff_shows_countdown_and_error() {
    let m = backoff_model();
    let buf = render(&m, &ViewState::new(), &color(), 80, 24);
    let s = screen(&buf);
    let row = row_with(&buf, "companies").unwrap_or_else(|| panic!("{s}"));
    assert!(row.contains("backoff"), "{row}");
    assert!(row.contains(" 5s "), "countdown: {row}");
    assert!(row.contains("the server closed"), "error, maybe cut: {row}");
    let (x, y) = find_in_row(&buf, "companies", "backoff").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Yellow);
    // Wide, the whole error fits.
    let wide = render(&m, &ViewState::new(), &color(), 200, 50);
    assert!(screen(&wide).contains("the server closed the stream after 90s idle"));
}

#[test]
fn an_error_on_the_live_connection_is_a_warning_until_the_next_connection() {
    let mut m = live_model();
    let text = "no subscription: the server sent no connection id";
    apply(&mut m, secs(30), FeedMsgKind::Error(text.into()));
    let buf = render(&m, &ViewState::new(), &color(), 200, 50);
    let row = row_with(&buf, "companies").unwrap_or_else(|| panic!("{}", screen(&buf)));
    assert!(row.contains("live") && row.contains(text), "shown while connected: {row}");
    let (x, y) = find_in_row(&buf, "companies", "no subscription").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Yellow, "a present condition, not dimmed history");
    // After a reconnect the same text is history.
    apply(&mut m, secs(31), FeedMsgKind::State(ConnState::Connecting));
    apply(&mut m, secs(31), FeedMsgKind::State(ConnState::Live));
    let buf = render(&m, &ViewState::new(), &color(), 200, 50);
    let (x, y) = find_in_row(&buf, "companies", "no subscription").unwrap();
    assert_ne!(buf[(x, y)].fg, Color::Yellow);
}

#[test]
fn a_live_feed_names_its_no_data_symbols_where_an_old_error_would_be() {
    let mut m = backoff_model();
    apply(&mut m, secs(36), FeedMsgKind::State(ConnState::Live));
    apply(&mut m, secs(36), FeedMsgKind::NoData(vec!["XYZ".into(), "NEW".into()]));
    m.tick(secs(37));
    let buf = render(&m, &ViewState::new(), &color(), 200, 50);
    let row = row_with(&buf, "companies").unwrap_or_else(|| panic!("{}", screen(&buf)));
    assert!(row.contains("no data: XYZ, NEW") && !row.contains("the server closed"), "{row}");
    // Down again, the error is what matters.
    apply(&mut m, secs(40), FeedMsgKind::State(ConnState::Backoff { retry_at: secs(45) }));
    let buf = render(&m, &ViewState::new(), &color(), 200, 50);
    let row = row_with(&buf, "companies").unwrap();
    assert!(row.contains("the server closed") && !row.contains("no data"), "{row}");
}

#[test]
fn auth_failure_is_red() {
    let mut m = live_model();
    apply(&mut m, secs(30), FeedMsgKind::Error("401 Unauthorized: check CH_STREAMING_API_KEY".into()));
    apply(&mut m, secs(30), FeedMsgKind::State(ConnState::AuthFailed { retry_at: secs(90) }));
    let buf = render(&m, &ViewState::new(), &color(), 80, 24);
    let row = row_with(&buf, "companies").unwrap_or_else(|| panic!("{}", screen(&buf)));
    assert!(row.contains("auth failed") && row.contains("1m00s") && row.contains("401 Unauth"), "{row}");
    let (x, y) = find(&buf, "auth failed").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Red);
}

#[test]
fn pause_shows_the_snapshot_and_counts_new_events() {
    let mut live = live_model();
    let mut view = ViewState::new();
    view.handle(super::keys::Action::TogglePause, &live);
    // Ingest goes on: 1,350 more events, and a company the snapshot never saw.
    for round in 0..50 {
        for ev in fixture_events() {
            apply(&mut live, secs(31 + round), FeedMsgKind::Event(Box::new(ev)));
        }
    }
    let newcomer = profile_event(90_000_000, "99999999", "NEWCOMER LTD", Some("active-proposal-to-strike-off"));
    apply(&mut live, secs(90), FeedMsgKind::Event(Box::new(newcomer)));
    live.tick(secs(90));
    let buf = render(&live, &view, &color(), 80, 24);
    let s = screen(&buf);
    assert!(lines(&buf)[0].contains("PAUSED — 1,351 new"), "{s}");
    assert!(!s.contains("99999999"), "the frozen view must not move: {s}");
    assert!(s.contains("12007733"), "{s}");
    // Resume: the live model with the newcomer on top.
    view.handle(super::keys::Action::TogglePause, &live);
    let s = screen(&render(&live, &view, &color(), 80, 24));
    assert!(!s.contains("PAUSED"), "{s}");
    assert!(s.contains("99999999"), "{s}");
}

#[test]
fn filter_keeps_only_matching_rows() {
    let m = live_model();
    let mut view = ViewState::new();
    view.filter = "brightwell".into();
    let buf = render(&m, &view, &color(), 80, 24);
    let s = screen(&buf);
    let rows = lines(&buf).into_iter().filter(|l| l.contains("14829301")).count();
    assert_eq!(rows, 2, "entered and struck off: {s}");
    assert!(!s.contains("12007733"), "{s}");
    assert!(s.contains("filter: brightwell"), "{s}");

    view.filter = "xyz".into();
    let s = screen(&render(&m, &view, &color(), 80, 24));
    assert!(s.contains("no match for 'xyz'"), "{s}");
}

#[test]
fn scrolling_skips_the_newest_rows() {
    let m = live_model();
    let mut view = ViewState::new();
    let count = |buf| lines(&buf).iter().filter(|l| l.contains("12007733")).count();
    assert_eq!(count(render(&m, &view, &color(), 200, 50)), 2, "entered and struck off");
    view.scroll = 1;
    let buf = render(&m, &view, &color(), 200, 50);
    assert_eq!(count(buf.clone()), 1, "the newest row scrolled away: {}", screen(&buf));
    assert!(screen(&buf).contains("2–11 of 11"), "{}", screen(&buf));
}

#[test]
fn demo_banner_and_store_error() {
    let mut m = live_model();
    m.demo = true;
    m.apply_store_report(StoreReport {
        events_written: 20,
        error: Some("disk full: free space in ~/.local/share".into()),
    });
    let buf = render(&m, &ViewState::new(), &color(), 80, 24);
    let l = lines(&buf);
    // At 80 columns the banner is one short line: every row counts there.
    assert!(l[1].contains("DEMO (simulated). Real stream: CH_STREAMING_API_KEY=<key> feedtop"), "{}", screen(&buf));
    assert!(l[2].contains("store: disk full"), "{}", screen(&buf));
    // Narrower, it takes two lines rather than being cut.
    let narrow = lines(&render(&m, &ViewState::new(), &color(), 62, 24));
    assert!(narrow[1].contains("DEMO — simulated feeds on loopback."), "{narrow:?}");
    assert!(narrow[2].contains("CH_STREAMING_API_KEY=<key> feedtop"), "{narrow:?}");
    let (x, y) = find(&buf, "store:").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Red);
    // Wide, the banner is one line.
    let wide = render(&m, &ViewState::new(), &color(), 200, 50);
    let banner = "DEMO — simulated feeds on loopback. Watch the real stream: CH_STREAMING_API_KEY=<key> feedtop";
    assert!(lines(&wide)[1].contains(banner), "{}", screen(&wide));
}

#[test]
fn a_long_store_error_keeps_what_to_do_on_screen() {
    let mut m = live_model();
    let path = std::path::PathBuf::from("/home/operator/.local/share/feedtop/feedtop.db");
    let error = crate::store::StoreError::DiskFull { path }.to_string();
    m.apply_store_report(StoreReport { events_written: 20, error: Some(error) });
    let buf = render(&m, &ViewState::new(), &color(), 80, 24);
    let l = lines(&buf);
    assert!(
        l[1].starts_with("store: the disk holding /home/operator/.local/share/feedtop/feedtop.db is full;"),
        "{}",
        screen(&buf)
    );
    assert!(l[2].starts_with("free some space or use --db PATH"), "{}", screen(&buf));
    let (x, y) = find(&buf, "free some").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Red);
    // Wide enough, it is one row and the panes keep the other.
    let wide = lines(&render(&m, &ViewState::new(), &color(), 200, 50));
    assert!(wide[1].contains("is full; free some space or use --db PATH"), "{wide:?}");
    assert!(!wide[2].contains("free some space"), "{wide:?}");
}

#[test]
fn help_overlay_lists_every_key() {
    let mut view = ViewState::new();
    view.show_help = true;
    // Tall enough for every key without scrolling (scrolling has its own tests).
    let buf = render(&live_model(), &view, &color(), 80, 44);
    let s = screen(&buf);
    for b in BINDINGS {
        let row = row_with(&buf, b.description).unwrap_or_else(|| panic!("{}: {s}", b.description));
        assert!(row.contains(b.key), "{} not beside '{}': {s}", b.key, b.description);
    }
}

#[test]
fn focused_connection_row_is_highlighted() {
    let m = live_model();
    let mut view = ViewState::new();
    view.focus = Focus::Connections;
    let buf = render(&m, &view, &color(), 80, 24);
    let (x, y) = find(&buf, "companies").unwrap();
    assert!(buf[(x, y)].modifier.contains(ratatui::style::Modifier::REVERSED));
    view.focus = Focus::Log;
    let buf = render(&m, &view, &color(), 80, 24);
    let (x, y) = find(&buf, "companies").unwrap();
    assert!(!buf[(x, y)].modifier.contains(ratatui::style::Modifier::REVERSED));
}

/// Enter opens the first strike-off row shown (where the list is
/// scrolled to): it is marked while the list has the keys, and the mark
/// follows the scroll.
#[test]
fn the_row_enter_opens_is_marked() {
    let m = live_model();
    let reversed = |view: &ViewState, needle: &str| {
        let buf = render(&m, view, &color(), 80, 24);
        let (x, y) = find(&buf, needle).unwrap_or_else(|| panic!("{needle}: {}", screen(&buf)));
        buf[(x, y)].modifier.contains(ratatui::style::Modifier::REVERSED)
    };
    let mut view = ViewState::new();
    assert_eq!(view.focus, Focus::StrikeOffs);
    // Newest first: 12007733 on top, then OC431876.
    assert!(reversed(&view, "12007733") && !reversed(&view, "OC431876"));
    view.scroll = 1;
    assert!(reversed(&view, "OC431876"), "the mark follows the scroll");
    view.scroll = 0;
    view.focus = Focus::Log;
    assert!(!reversed(&view, "12007733"), "no mark without the keys");
}

#[test]
fn tiny_terminals_do_not_panic() {
    let mut m = backoff_model();
    m.demo = true;
    let mut view = ViewState::new();
    view.handle(super::keys::Action::TogglePause, &m);
    let s = screen(&render(&m, &view, &color(), 20, 5));
    assert!(s.contains("PAUSED") && s.contains("too small"), "{s}");
    render(&m, &view, &color(), 1, 1);
    // Arithmetic on widths must not overflow on absurdly wide terminals.
    render(&m, &view, &color(), 30_000, 20);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 96, ..Default::default() })]
    /// Any size a terminal can have, with and without the overlay: the
    /// layout's arithmetic never panics (a bounded sample instead of every size).
    #[test]
    fn any_terminal_size_draws(
        w in 0u16..=240,
        h in 0u16..=70,
        help: bool,
        paused: bool,
        zoomed: bool,
        detail in 0usize..3,
    ) {
        let mut m = backoff_model();
        m.demo = true;
        let mut view = ViewState::new();
        if paused {
            view.handle(super::keys::Action::TogglePause, &m);
        }
        view.show_help = help;
        view.zoomed = zoomed;
        let feed = m.feeds[0].info.name.clone();
        view.detail = [None, Some(super::Detail::Feed(feed)), Some(super::Detail::Info)][detail].clone();
        render(&m, &view, &color(), w, h);
    }
}

#[test]
fn no_colour_theme_has_no_colour() {
    let mut m = backoff_model();
    m.demo = true;
    m.apply_store_report(StoreReport { events_written: 1, error: Some("locked".into()) });
    let mut view = ViewState::new();
    view.handle(super::keys::Action::TogglePause, &m);
    for help in [false, true] {
        view.show_help = help;
        let buf = render(&m, &view, &Theme::new(false), 120, 40);
        assert!(screen(&buf).contains("backoff"));
        for cell in buf.content() {
            assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
        }
    }
    // …while the colour theme does colour the same screen.
    let buf = render(&m, &view, &color(), 120, 40);
    assert!(buf.content().iter().any(|c| c.fg != Color::Reset));
}

#[test]
fn ages_follow_the_model_clock() {
    let mut m = live_model();
    m.tick(m.now + TimeDelta::minutes(3));
    let buf = render(&m, &ViewState::new(), &color(), 200, 50);
    let row = row_with(&buf, "companies").unwrap();
    // Live since t0 - 60 s, now t0 + 210 s.
    assert!(row.contains("4m30s"), "{row}");
    assert!(screen(&buf).contains("Rate 0 events/min"), "{}", screen(&buf));
}

#[test]
fn narrow_transition_keeps_its_destination() {
    let buf = render(&live_model(), &ViewState::new(), &color(), 80, 24);
    let row = row_with(&buf, "ORCHARD LANE BAKERY LTD").unwrap();
    assert!(row.trim_end().ends_with("struck-off proposal → dissolved"), "{row}");
    let wide = render(&live_model(), &ViewState::new(), &color(), 200, 50);
    assert!(row_with(&wide, "ORCHARD").unwrap().contains("active/active-proposal-to-strike-off → dissolved"));
}

#[test]
fn log_pane_shows_tracing_events() {
    use tracing_subscriber::layer::SubscriberExt;
    let view = ViewState::new();
    let subscriber = tracing_subscriber::registry().with(crate::logging::TuiLog(view.log.clone()));
    tracing::subscriber::with_default(subscriber, || tracing::warn!("feed companies: reconnect requested by the user"));
    let buf = render(&live_model(), &view, &color(), 120, 40);
    let l = lines(&buf);
    let title = l.iter().position(|r| r.starts_with("Log")).unwrap();
    let hit = l.iter().position(|r| r.contains("reconnect requested by the user"));
    assert!(hit.is_some_and(|y| y > title), "{}", screen(&buf));
}

#[test]
fn own_memory_and_store_backlog_are_in_the_header_when_wide() {
    let mut m = live_model();
    m.process.rss_bytes = Some(23 * 1_048_576);
    let wide = render(&m, &ViewState::new(), &color(), 200, 50);
    assert!(lines(&wide)[0].contains("mem 23 MB · "), "{}", screen(&wide));
    m.process.store_pending = 1204;
    let wide = render(&m, &ViewState::new(), &color(), 200, 50);
    assert!(lines(&wide)[0].contains("store backlog 1,204 · mem 23 MB"), "{}", screen(&wide));
    // At 80 columns the totals win; the clock still shows.
    let narrow = render(&m, &ViewState::new(), &color(), 80, 24);
    assert!(!lines(&narrow)[0].contains("mem"), "{}", screen(&narrow));
}

/// Every wall-clock time says its zone, and `t` switches all of them
/// between local time and UTC (the CLI's zone) and back.
#[test]
fn t_toggles_every_time_between_local_and_utc() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let m = live_model();
    let mut view = ViewState::new();
    view.clock = cet_clock();
    let newest = m.strike_offs.iter().max_by_key(|c| c.published_at).unwrap();
    let published = newest.published_at.unwrap();
    let number = newest.company_number.clone();
    let in_zone = |offset_hours: i64, fmt: &str| {
        let same_day = (published + TimeDelta::hours(offset_hours)).date_naive()
            == (m.now + TimeDelta::hours(offset_hours)).date_naive();
        let fmt = if same_day { fmt } else { "%m-%d %H:%M" };
        (published + TimeDelta::hours(offset_hours)).format(fmt).to_string()
    };
    let header = |buf: &ratatui::buffer::Buffer| lines(buf)[0].trim_end().to_string();

    // Local: Central European Summer Time in June, two hours ahead of UTC.
    let buf = render(&m, &view, &color(), 120, 40);
    let s = screen(&buf);
    let local_clock = format!("{} CEST", (m.now + TimeDelta::hours(2)).format("%H:%M:%S"));
    assert!(header(&buf).ends_with(&local_clock), "{s}");
    assert!(row_with(&buf, "number").unwrap().starts_with("time (CEST) "), "{s}");
    assert!(row_with(&buf, &number).unwrap().starts_with(&in_zone(2, "%H:%M:%S")), "{s}");

    view.handle_key(KeyEvent::new(KeyCode::Char('t'), KeyModifiers::NONE), &m);
    let buf = render(&m, &view, &color(), 120, 40);
    let s = screen(&buf);
    assert!(header(&buf).ends_with(&format!("{} UTC", m.now.format("%H:%M:%S"))), "{s}");
    assert!(row_with(&buf, "number").unwrap().starts_with("time (UTC) "), "{s}");
    assert!(row_with(&buf, &number).unwrap().starts_with(&in_zone(0, "%H:%M:%S")), "{s}");

    view.handle_key(KeyEvent::new(KeyCode::Char('t'), KeyModifiers::NONE), &m);
    let buf = render(&m, &view, &color(), 120, 40);
    assert!(header(&buf).ends_with(&local_clock), "back to local time: {}", screen(&buf));
}

/// Companies House stamps whole seconds, so a stream on time shows `<1s`,
/// not the fraction of the second each event happened to arrive in
/// (`p50 487ms p99 991ms`); a later one shows whole seconds.
#[test]
fn whole_second_timestamps_show_latency_in_seconds() {
    let mut m = empty_model();
    apply(&mut m, secs(-60), FeedMsgKind::State(ConnState::Live));
    for (i, mut ev) in fixture_events().into_iter().take(20).enumerate() {
        ev.published_at = Some(secs(i as i64));
        // Arriving 10 ms … 990 ms into the second after publication.
        let arrival = secs(i as i64) + TimeDelta::milliseconds(10 + 49 * i as i64);
        apply(&mut m, arrival, FeedMsgKind::Event(Box::new(ev)));
    }
    m.tick(secs(30));
    let buf = render(&m, &ViewState::new(), &color(), 120, 40);
    let s = screen(&buf);
    let (x, y) = find(&buf, "p50").unwrap_or_else(|| panic!("{s}"));
    let row: String = lines(&buf)[usize::from(y) + 1].chars().skip(usize::from(x)).collect();
    assert!(row.starts_with("<1s    <1s    <1s    <1s"), "{row}\n{s}");
    assert!(!s.contains("ms "), "no milliseconds in the latency pane: {s}");

    // Two seconds late: `2s`, not `2.49s`.
    let mut ev = fixture_events().remove(0);
    ev.published_at = Some(secs(25));
    apply(&mut m, secs(27) + TimeDelta::milliseconds(490), FeedMsgKind::Event(Box::new(ev)));
    m.tick(secs(30));
    let buf = render(&m, &ViewState::new(), &color(), 120, 40);
    let (x, y) = find(&buf, "p50").unwrap();
    let row: String = lines(&buf)[usize::from(y) + 1].chars().skip(usize::from(x)).collect();
    assert!(row.contains(" 2s "), "{row}\n{}", screen(&buf));
}

/// `r` reconnects the selected feed whichever pane has the keyboard, so the
/// selection stays marked (underlined) when the Connections pane loses focus.
#[test]
fn the_selected_feed_stays_marked_without_focus() {
    let m = four_feeds();
    let mut view = ViewState::new();
    view.focus = Focus::Connections;
    view.selected_feed = 1;
    let buf = render(&m, &view, &color(), 200, 50);
    let (x, y) = find_in_row(&buf, "wig80", "wig80").unwrap();
    assert!(buf[(x, y)].modifier.contains(ratatui::style::Modifier::REVERSED), "focused: reversed");
    view.focus = Focus::StrikeOffs;
    for theme in [color(), Theme::new(false)] {
        let buf = render(&m, &view, &theme, 200, 50);
        let (x, y) = find_in_row(&buf, "wig80", "wig80").unwrap();
        let marked = buf[(x, y)].modifier;
        assert!(marked.contains(ratatui::style::Modifier::UNDERLINED), "not focused: still marked ({marked:?})");
        // The name alone: ages change every second, and an attribute over
        // the whole row would be re-sent with them.
        assert!(!buf[(150, y)].modifier.contains(ratatui::style::Modifier::UNDERLINED), "the name only");
        let (x, y) = find_in_row(&buf, "carbon", "carbon").unwrap();
        assert!(!buf[(x, y)].modifier.contains(ratatui::style::Modifier::UNDERLINED), "only the selected row");
    }
}
