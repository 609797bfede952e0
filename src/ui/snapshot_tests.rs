//! Whole screens as insta snapshots (`src/ui/snapshots/*.snap`), for the
//! states a user sees. Keys go in as crossterm `KeyEvent`s through
//! [`ViewState::handle_key`], the function the TUI loop calls for every key
//! press, and the model moves only by `Model::apply` and `Model::tick` with
//! fixed times, so a screen is what the terminal would show.
//!
//! Nothing here reads the wall clock: "now" is the model's injected time,
//! and the local zone is pinned to Central European Time (`cet_clock`), so
//! the zone's name and the columns' widths do not depend on the machine.
//! Two things are still kept out of the snapshots:
//! - Times shown in the *local* zone (the header clock and the strike-off
//!   time column) are redacted to `hh:mm:ss` by an insta filter, as they
//!   were before the zone was pinned (`utc_after_t` shows them whole, in
//!   UTC, without the filter). The models keep every
//!   strike-off time between 12:00:00 and 12:14:59 UTC on one day, where no
//!   zone (whole, half or three-quarter hours) has its midnight, so every
//!   zone shows `HH:MM:SS` (never a date) and the column keeps its width.
//! - The log pane shows tui-logger's process-global buffer, which other tests
//!   write to in any order: the view's log state here shows no level (the
//!   pane and its frame are still drawn). `log_pane_shows_tracing_events`
//!   covers its content.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;
use tui_logger::{LevelFilter, TuiWidgetState};

use super::test_support::*;
use super::{draw, Focus, Theme, UiCommand, ViewState};
use crate::model::Model;
use feedtop_proto::{ConnState, Dialect, FeedInfo, FeedKind, FeedMsgKind, PollFormat, Quote, QuoteTime};

/// The demo's feeds, by their places in `demo_model`'s list (`apply_to`).
const CH: usize = 0;
const WIG80: usize = 1;
const CARBON: usize = 2;
const CARBON_SSE: usize = 3;
const STOOQ: usize = 4;

/// A screen as the TUI loop holds it: the live model, the view state the
/// keys change, and the theme.
struct Screen {
    live: Model,
    view: ViewState,
    theme: Theme,
}

impl Screen {
    fn new(live: Model) -> Self {
        let mut view = ViewState::new();
        view.clock = cet_clock();
        // The log buffer is process-global (see the module comment).
        view.log = TuiWidgetState::new().set_default_display_level(LevelFilter::Off);
        Self { live, view, theme: Theme::new(true) }
    }

    /// One key press, as crossterm reports it (an upper-case letter and
    /// BackTab carry SHIFT), through the TUI's own key handling.
    fn press(&mut self, code: KeyCode) -> Option<UiCommand> {
        let shift = matches!(code, KeyCode::BackTab) || matches!(code, KeyCode::Char(c) if c.is_uppercase());
        let modifiers = if shift { KeyModifiers::SHIFT } else { KeyModifiers::NONE };
        self.view.handle_key(KeyEvent::new(code, modifiers), &self.live)
    }

    /// Each character of `keys` as one key press.
    fn keys(&mut self, keys: &str) {
        for c in keys.chars() {
            self.press(KeyCode::Char(c));
        }
    }

    /// What the terminal shows at `width`×`height`, a row a line.
    fn text(&self, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, &self.live, &self.view, &self.theme)).unwrap();
        terminal.backend().to_string()
    }
}

/// Snapshots `$screen` at `$w`×`$h` with the local-zone times redacted.
macro_rules! assert_screen {
    ($name:expr, $screen:expr, $w:expr, $h:expr) => {{
        let text = $screen.text($w, $h);
        insta::with_settings!({
            description => format!("{}×{}", $w, $h),
            omit_expression => true,
            filters => vec![(r"\b\d{2}:\d{2}:\d{2}\b", "hh:mm:ss")],
        }, {
            insta::assert_snapshot!($name, text);
        });
    }};
}

/// Snapshots `$screen` whole: for screens in UTC, where no time depends on
/// the machine.
macro_rules! assert_screen_unredacted {
    ($name:expr, $screen:expr, $w:expr, $h:expr) => {{
        let text = $screen.text($w, $h);
        insta::with_settings!({ description => format!("{}×{}", $w, $h), omit_expression => true }, {
            insta::assert_snapshot!($name, text);
        });
    }};
}

/// The whole Companies House fixture (27 events, 11 strike-off changes), one
/// event a second from `from` s after t0, each published a second before it
/// arrived (the fixture's own publication times are hours apart, which some
/// zones would show as dates).
fn ch_events(m: &mut Model, from: i64) {
    for (i, mut ev) in fixture_events().into_iter().enumerate() {
        let at = from + 1 + i as i64;
        ev.published_at = Some(secs(at - 1));
        apply_to(m, CH, secs(at), FeedMsgKind::Event(Box::new(ev)));
    }
}

/// What `feedtop --demo` shows half a minute in: every feed kind live since a
/// minute before t0, now t0 + 30 s.
///
/// - ch/companies: the fixture (t0 + 1 s … 27 s) and one malformed line.
/// - wig80: PKN and KGHM at t0 + 20 s, naive server time (estimated 1 s), ping 42 ms.
/// - carbon: BRENT_CRUDE 75.50 then 75.90 half a second ago (it flashes).
/// - carbon-sse: WIG20 at t0 + 5 s, no timestamps.
/// - stooq: PKO and CDR polled at t0 + 25 s (Warsaw times, estimated), `XYZ` unknown.
fn demo_model() -> Model {
    let feeds = [
        ("ch/companies", FeedKind::CompaniesHouse),
        ("wig80", FeedKind::WebSocket(Dialect::Wig80)),
        ("carbon", FeedKind::WebSocket(Dialect::Carbon)),
        ("carbon-sse", FeedKind::Sse),
        ("stooq", FeedKind::Poll(PollFormat::Stooq)),
    ];
    let feeds = feeds.map(|(name, kind)| FeedInfo { name: name.into(), kind }).to_vec();
    let mut m = Model::new(feeds, std::time::Duration::from_secs(300), t0());
    m.demo = true;
    for feed in [CH, WIG80, CARBON, CARBON_SSE, STOOQ] {
        apply_to(&mut m, feed, secs(-60), FeedMsgKind::State(ConnState::Connecting));
        apply_to(&mut m, feed, secs(-60), FeedMsgKind::State(ConnState::Live));
    }
    apply_to(&mut m, CH, secs(0), FeedMsgKind::Malformed { reason: "expected value at line 1".into() });
    ch_events(&mut m, 0);

    apply_to(&mut m, WIG80, secs(20), FeedMsgKind::Quotes(wig80_quotes("open")));
    apply_to(&mut m, WIG80, secs(21), FeedMsgKind::Rtt(std::time::Duration::from_millis(42)));

    carbon_brent(&mut m, CARBON);

    let wig20 = Quote { volume: Some(45_600_000.0), ..quote("WIG20", 2_345.67, 12.5, 0.54) };
    apply_to(&mut m, CARBON_SSE, secs(5), FeedMsgKind::Quotes(vec![wig20]));
    apply_to(&mut m, CARBON_SSE, secs(25), FeedMsgKind::KeepAlive);

    let warsaw = QuoteTime::Estimated(secs(23));
    let pko = Quote { high: Some(71.2), low: Some(69.9), time: Some(warsaw), ..quote("PKO", 70.48, 0.36, 0.51) };
    let cdr = Quote { high: Some(251.0), low: Some(244.2), time: Some(warsaw), ..quote("CDR", 246.1, -2.9, -1.16) };
    apply_to(&mut m, STOOQ, secs(25), FeedMsgKind::Quotes(vec![pko, cdr]));
    apply_to(&mut m, STOOQ, secs(25), FeedMsgKind::NoData(vec!["XYZ".into()]));
    apply_to(&mut m, STOOQ, secs(25), FeedMsgKind::Rtt(std::time::Duration::from_millis(180)));
    m.tick(secs(30));
    m
}

/// Companies House alone, as `feedtop` with only an API key: the fixture
/// from t0 + 1 s, now t0 + 30 s.
fn ch_model() -> Model {
    let mut m = empty_model();
    apply(&mut m, secs(-60), FeedMsgKind::State(ConnState::Connecting));
    apply(&mut m, secs(-60), FeedMsgKind::State(ConnState::Live));
    ch_events(&mut m, 0);
    m.tick(secs(30));
    m
}

#[test]
fn demo_80x24() {
    assert_screen!("demo_80x24", Screen::new(demo_model()), 80, 24);
}

#[test]
fn demo_120x40() {
    assert_screen!("demo_120x40", Screen::new(demo_model()), 120, 40);
}

#[test]
fn first_frame_before_anything_arrived() {
    assert_screen!("first_frame", Screen::new(empty_model()), 80, 24);
}

/// `p` freezes the screen while ingest goes on; `p` again shows what came.
#[test]
fn paused_while_events_arrive_then_resumed() {
    let mut s = Screen::new(demo_model());
    assert_eq!(s.press(KeyCode::Char('p')), None);
    // Two companies the frozen view never saw, and a new PKN price.
    for (i, (number, name)) in
        [("99999999", "NEWCOMER LTD"), ("88888888", "LATE FILINGS LIMITED")].into_iter().enumerate()
    {
        let mut ev = profile_event(90_000_000 + i as i64, number, name, Some("active-proposal-to-strike-off"));
        ev.published_at = Some(secs(40 + i as i64));
        apply_to(&mut s.live, CH, secs(41 + i as i64), FeedMsgKind::Event(Box::new(ev)));
    }
    apply_to(&mut s.live, WIG80, secs(45), FeedMsgKind::Quotes(vec![quote("PKN", 80.01, 5.01, 6.68)]));
    s.live.tick(secs(46));
    assert_screen!("paused_with_new_events", s, 120, 40);
    s.press(KeyCode::Char('p'));
    assert_screen!("resumed", s, 120, 40);
}

#[test]
fn help_overlay() {
    let mut s = Screen::new(demo_model());
    s.press(KeyCode::Char('?'));
    assert_screen!("help_overlay", s, 80, 24);
    // `q` closes it and does nothing else.
    assert_eq!(s.press(KeyCode::Char('q')), None);
    assert!(!s.view.show_help && s.view.scroll == 0);
}

/// At the smallest size the help does not fit: it says there is more, `j`
/// and PgDn scroll it down to the glossary's last line, and `g` back.
#[test]
fn help_scrolls_on_a_small_terminal() {
    let mut s = Screen::new(demo_model());
    s.press(KeyCode::Char('?'));
    let top = s.text(60, 16);
    assert!(top.contains("↓ more"), "{top}");
    assert!(!top.contains("last error"), "the glossary is below: {top}");
    assert_screen!("help_60x16_top", s, 60, 16);
    s.press(KeyCode::Char('j'));
    assert!(s.text(60, 16).contains("↑↓ more"));
    for _ in 0..5 {
        s.press(KeyCode::PageDown);
    }
    let bottom = s.text(60, 16);
    assert!(bottom.contains("↑ more") && !bottom.contains("↓"), "{bottom}");
    assert!(bottom.contains("since the last tick"), "the last glossary line: {bottom}");
    assert_screen!("help_60x16_bottom", s, 60, 16);
    s.press(KeyCode::Char('g'));
    assert_eq!(s.text(60, 16), top);
    assert!(s.view.show_help);
}

/// `/`, a word, Enter: the footer while typing, then the filtered lists.
#[test]
fn filter_typed_then_applied() {
    let mut s = Screen::new(demo_model());
    s.keys("/brightwel");
    assert_screen!("filter_typing", s, 80, 24);
    s.keys("l");
    s.press(KeyCode::Enter);
    assert_screen!("filter_applied", s, 120, 40);
    // Esc clears it; `/` again filters the tickers by symbol.
    s.press(KeyCode::Esc);
    s.keys("/kg");
    s.press(KeyCode::Enter);
    assert_screen!("filter_ticker", s, 120, 40);
}

/// Tab moves the focus from the strike-offs to the tickers; `j` scrolls them.
#[test]
fn tickers_focused_and_scrolled() {
    let mut s = Screen::new(demo_model());
    s.press(KeyCode::Tab);
    assert_eq!(s.view.focus, Focus::Tickers);
    s.keys("jj");
    assert_screen!("tickers_focused_scrolled", s, 80, 24);
    // `s` sorts by change %, from the first row again.
    s.keys("s");
    assert_screen!("tickers_sorted_by_change", s, 120, 40);
}

/// The connections pane focused, the second feed selected: `r` asks for
/// that feed's reconnect.
#[test]
fn connections_focused_with_a_feed_selected() {
    let mut s = Screen::new(demo_model());
    s.press(KeyCode::BackTab);
    s.keys("jj");
    assert_eq!(s.press(KeyCode::Char('r')), Some(UiCommand::Reconnect("carbon".into())));
    assert_screen!("connections_focused", s, 120, 40);
    // The text cannot show which row is selected: the selection is reversed.
    let buf = render(&s.live, &s.view, &s.theme, 120, 40);
    let reversed = |name: &str| {
        let (x, y) = find(&buf, name).unwrap();
        buf[(x, y)].modifier.contains(Modifier::REVERSED)
    };
    assert!(reversed("carbon ") && !reversed("wig80"));
}

/// carbon lost its connection and waits 5 s to retry; the error is on its row.
#[test]
fn feed_in_backoff_with_error() {
    let mut m = demo_model();
    apply_to(&mut m, CARBON, secs(30), FeedMsgKind::Error("closed by the server: 1011 kafka unavailable".into()));
    apply_to(&mut m, CARBON, secs(30), FeedMsgKind::State(ConnState::Backoff { retry_at: secs(35) }));
    assert_screen!("backoff_with_error", Screen::new(m), 120, 40);
}

/// Companies House is connected but has said nothing for 46 s (its quiet
/// period is 45 s): stalled, and the header counts it out.
#[test]
fn stalled_feed() {
    let mut m = ch_model();
    m.tick(secs(27 + 46));
    assert_screen!("stalled", Screen::new(m), 80, 24);
}

/// stooq polls answer, but some symbols have no data: the row says which.
#[test]
fn stooq_with_no_data_symbols() {
    let feeds = vec![FeedInfo { name: "stooq".into(), kind: FeedKind::Poll(PollFormat::Stooq) }];
    let mut m = Model::new(feeds, std::time::Duration::from_secs(300), t0());
    apply_to(&mut m, 0, secs(-60), FeedMsgKind::State(ConnState::Connecting));
    apply_to(&mut m, 0, secs(-60), FeedMsgKind::State(ConnState::Live));
    let pkn = Quote { time: Some(QuoteTime::Estimated(secs(10))), ..quote("PKN", 74.62, -0.38, -0.5) };
    apply_to(&mut m, 0, secs(15), FeedMsgKind::Quotes(vec![pkn]));
    apply_to(&mut m, 0, secs(15), FeedMsgKind::NoData(vec!["XYZ".into(), "NEWCO".into()]));
    apply_to(&mut m, 0, secs(15), FeedMsgKind::Rtt(std::time::Duration::from_millis(180)));
    m.tick(secs(30));
    assert_screen!("stooq_no_data", Screen::new(m), 120, 40);
}

#[test]
fn terminal_too_small() {
    let mut s = Screen::new(demo_model());
    assert_screen!("too_small", s, 59, 15);
    s.press(KeyCode::Char('p'));
    ch_events(&mut s.live, 30);
    assert_screen!("too_small_paused", s, 59, 15);
}

/// NO_COLOR, paused, a feed in backoff and the help open: every state is
/// still in the words, and not one cell is coloured.
#[test]
fn no_colour() {
    let mut m = demo_model();
    apply_to(&mut m, CARBON, secs(30), FeedMsgKind::Error("closed by the server: 1011 kafka unavailable".into()));
    apply_to(&mut m, CARBON, secs(30), FeedMsgKind::State(ConnState::Backoff { retry_at: secs(35) }));
    let mut s = Screen::new(m);
    s.theme = Theme::new(false);
    s.press(KeyCode::Char('p'));
    assert_screen!("no_colour", s, 120, 40);
    s.press(KeyCode::Char('?'));
    assert_screen!("no_colour_help", s, 120, 40);
    for help in [false, true] {
        s.view.show_help = help;
        for cell in render(&s.live, &s.view, &s.theme, 120, 40).content() {
            assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
        }
    }
}

/// The `from–to of n` range a list pane's title shows, if any.
fn title_range(screen: &str, pane: &str) -> Option<String> {
    let line = screen.lines().find(|l| l.contains(pane))?;
    let at = line.find(" of ")?;
    let from = line[..at].rfind(|c: char| !c.is_ascii_digit() && c != '–').map_or(0, |i| i + 1);
    let to = line[at + 4..].find(|c: char| !c.is_ascii_digit()).map_or(line.len(), |i| at + 4 + i);
    Some(line[from..to].to_string())
}

/// PgDn/PgUp move the strike-offs by the rows the pane shows, and `G` shows
/// the last full page: the oldest change on the bottom row, no blank rows.
/// Keys come after a frame, as in the TUI, where the user sees the pane first.
#[test]
fn strike_offs_page_by_the_visible_height() {
    let mut s = Screen::new(ch_model());
    s.text(80, 24);
    let rows = s.view.strike_rows_shown.get();
    assert!((2..11).contains(&rows), "11 changes must not fit in {rows} rows");
    s.press(KeyCode::PageDown);
    assert_eq!(
        title_range(&s.text(80, 24), "Strike-off").as_deref(),
        Some(&*format!("{}–{} of 11", rows.min(11 - rows) + 1, (2 * rows).min(11)))
    );
    s.press(KeyCode::PageUp);
    assert_eq!(s.view.scroll, 0);
    s.press(KeyCode::Char('G'));
    assert_eq!(title_range(&s.text(80, 24), "Strike-off").as_deref(), Some(&*format!("{}–11 of 11", 12 - rows)));
    assert_screen!("strike_offs_last_page", s, 80, 24);
    // Bounded: further down stays on the last full page.
    s.press(KeyCode::PageDown);
    s.press(KeyCode::Char('j'));
    assert_eq!(s.view.scroll, 11 - rows);
    s.press(KeyCode::Char('g'));
    assert_eq!(s.view.scroll, 0);
}

/// The same for the tickers, in a pane a few rows tall.
#[test]
fn tickers_page_by_the_visible_height() {
    let mut s = Screen::new(demo_model());
    s.press(KeyCode::Tab);
    s.text(80, 32);
    let rows = s.view.ticker_rows_shown.get();
    let total = crate::ui::ticker_list::visible(&s.live, "", s.view.ticker_sort).len();
    assert!(rows >= 2 && rows < total, "{total} tickers must not fit in {rows} rows");
    s.press(KeyCode::Char('G'));
    assert_eq!(
        title_range(&s.text(80, 32), "Tickers").as_deref(),
        Some(&*format!("{}–{total} of {total}", total + 1 - rows))
    );
    assert_screen!("tickers_last_page", s, 80, 32);
    s.press(KeyCode::PageUp);
    assert_eq!(s.view.ticker_scroll, (total - rows).saturating_sub(rows));
    s.press(KeyCode::Home);
    s.press(KeyCode::PageDown);
    assert_eq!(s.view.ticker_scroll, rows.min(total - rows));
}

/// `t` shows every wall-clock time in UTC and says so: the header clock and
/// the strike-off times (published t0 + 0…26 s, shown at t0 + 30 s).
#[test]
fn utc_after_t() {
    let mut s = Screen::new(demo_model());
    s.keys("t");
    assert_screen_unredacted!("utc_after_t", s, 120, 40);
}

/// ASCII and light-theme screens.
mod terminal;
