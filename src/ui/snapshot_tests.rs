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
//! - The log pane's lines are stamped by the wall clock when logged; the
//!   tests here put their own lines, with fixed times, into the view's
//!   buffer (a fresh view's is empty).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;

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
    let mut m = demo_feeds();
    apply_to(&mut m, CH, secs(0), FeedMsgKind::Malformed { reason: "expected value at line 1".into() });
    ch_events(&mut m, 0);
    demo_quotes(&mut m);
    m.tick(secs(30));
    m
}

/// The demo's five feeds, live since a minute before t0, with nothing
/// received yet.
fn demo_feeds() -> Model {
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
    m
}

/// The demo's quotes (see [`demo_model`]).
fn demo_quotes(m: &mut Model) {
    apply_to(m, WIG80, secs(20), FeedMsgKind::Quotes(wig80_quotes("open")));
    apply_to(m, WIG80, secs(21), FeedMsgKind::Rtt(std::time::Duration::from_millis(42)));

    carbon_brent(m, CARBON);

    let wig20 = Quote { volume: Some(45_600_000.0), ..quote("WIG20", 2_345.67, 12.5, 0.54) };
    apply_to(m, CARBON_SSE, secs(5), FeedMsgKind::Quotes(vec![wig20]));
    apply_to(m, CARBON_SSE, secs(25), FeedMsgKind::KeepAlive);

    let warsaw = QuoteTime::Estimated(secs(23));
    let pko = Quote { high: Some(71.2), low: Some(69.9), time: Some(warsaw), ..quote("PKO", 70.48, 0.36, 0.51) };
    let cdr = Quote { high: Some(251.0), low: Some(244.2), time: Some(warsaw), ..quote("CDR", 246.1, -2.9, -1.16) };
    apply_to(m, STOOQ, secs(25), FeedMsgKind::Quotes(vec![pko, cdr]));
    apply_to(m, STOOQ, secs(25), FeedMsgKind::NoData(vec!["XYZ".into()]));
    apply_to(m, STOOQ, secs(25), FeedMsgKind::Rtt(std::time::Duration::from_millis(180)));
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
    let total = crate::ui::ticker_list::visible(&s.live, &"".into(), s.view.ticker_sort, false).len();
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

/// carbon failed twice: the server closed it, then a 429 whose useful part
/// (`Connection refused (os error 111)`) comes after what a Connections row
/// can hold. Its URL carries its token, and its settings are the defaults
/// with one; `about` comes from the feed's spec as the pipeline makes it.
fn carbon_failing() -> Model {
    let mut m = demo_model();
    let mut ws = crate::feeds::websocket::WsSettings::new(
        "wss://carbon.example/ws?token=SECRET-JWT-123&region=eu",
        Dialect::Carbon,
    );
    ws.token = crate::feeds::secret::ApiKey::new("SECRET-JWT-123");
    m.feeds[CARBON].about = crate::app::FeedSpec::websocket("carbon", ws).about();
    apply_to(&mut m, CARBON, secs(10), FeedMsgKind::Error("closed by the server: 1011 kafka unavailable".into()));
    apply_to(&mut m, CARBON, secs(10), FeedMsgKind::State(ConnState::Backoff { retry_at: secs(12) }));
    apply_to(&mut m, CARBON, secs(12), FeedMsgKind::State(ConnState::Connecting));
    apply_to(&mut m, CARBON, secs(13), FeedMsgKind::Error(LONG_ERROR.into()));
    apply_to(&mut m, CARBON, secs(13), FeedMsgKind::State(ConnState::Backoff { retry_at: secs(43) }));
    m
}

const LONG_ERROR: &str = "HTTP 429: rate limited by the access layer (retry after 30 s); then cannot connect to \
                          wss://carbon.example/ws?token=***&region=eu: Connection refused (os error 111)";

/// Enter on a feed: the whole last error, wrapped (the row cuts it), the
/// state changes with their reasons, the URL with the token hidden, and
/// (scrolled down) the counters and settings in force. Esc gives the
/// screen back as it was.
#[test]
fn feed_detail_shows_the_whole_error() {
    let mut s = Screen::new(carbon_failing());
    s.press(KeyCode::BackTab);
    s.keys("jj");
    let before = s.text(80, 24);
    assert!(!before.contains("(os error 111)"), "the row cuts it: {before}");
    // The footer says how at 80 columns, after the way to every other key.
    let footer = before.lines().last().unwrap();
    assert!(footer.contains("? help  Enter details"), "{footer}");
    s.press(KeyCode::Enter);
    assert_eq!(s.view.detail, Some(crate::ui::Detail::Feed("carbon".into())));
    let top = s.text(80, 24);
    // The whole error, across rows.
    let joined: String =
        top.lines().map(|l| l.trim_matches(|c| c == '"' || c == '│' || c == ' ')).collect::<Vec<_>>().join(" ");
    assert!(joined.contains("Connection refused (os error 111)"), "{top}");
    assert!(joined.contains("closed by the server: 1011 kafka unavailable"), "a reason in the history: {top}");
    assert_screen!("feed_detail_top", s, 80, 24);
    // The rest is below: counters and the settings in force.
    s.press(KeyCode::Char('G'));
    let bottom = s.text(80, 24);
    assert!(bottom.contains("backoff") && bottom.contains("1s doubling to 1m"), "{bottom}");
    assert!(bottom.contains("token") && bottom.contains("set (hidden)"), "{bottom}");
    assert_screen!("feed_detail_bottom", s, 80, 24);
    for screen in [&top, &bottom, &s.text(120, 40)] {
        assert!(!screen.contains("SECRET-JWT"), "the token never reaches the screen: {screen}");
    }
    assert!(s.text(120, 40).contains("wss://carbon.example/ws?token=***&region=eu"));
    // `t` applies inside: the history's zone is named.
    s.press(KeyCode::Char('g'));
    s.press(KeyCode::Char('t'));
    assert!(s.text(80, 24).contains("newest first, UTC)"));
    s.press(KeyCode::Char('t'));
    // Esc closes and nothing else moved; `q` closes too, without quitting.
    s.press(KeyCode::Esc);
    assert_eq!(s.text(80, 24), before);
    s.press(KeyCode::Enter);
    assert_eq!(s.press(KeyCode::Char('q')), None);
    assert_eq!((s.view.detail.as_ref(), s.text(80, 24)), (None, before));
}

/// `z` gives the focused pane the screen between header and footer, and
/// `z` again puts every pane back.
#[test]
fn zoom_on_and_off() {
    let mut s = Screen::new(demo_model());
    s.press(KeyCode::Tab);
    assert_eq!(s.view.focus, Focus::Tickers);
    let before = s.text(80, 24);
    let rows = s.view.ticker_rows_shown.get();
    s.press(KeyCode::Char('z'));
    let zoomed = s.text(80, 24);
    assert!(s.view.ticker_rows_shown.get() > rows, "more rows than {rows}");
    assert!(!zoomed.contains("Connections") && !zoomed.contains("Strike-off"), "{zoomed}");
    assert_screen!("zoom_tickers", s, 80, 24);
    // Tab moves the zoom to the next pane.
    s.press(KeyCode::Tab);
    assert!(s.text(80, 24).contains("Log"));
    s.press(KeyCode::BackTab);
    s.press(KeyCode::Char('z'));
    assert_eq!(s.text(80, 24), before);
}

/// `i`: what is in force, as the TUI hands it over.
#[test]
fn info_overlay() {
    let mut s = Screen::new(carbon_failing());
    s.view.run_info = Some(crate::ui::RunInfo {
        version: "0.1.0".into(),
        config_file: Some("/home/op/.config/feedtop/config.toml".into()),
        db_path: Some("/home/op/.local/share/feedtop/feedtop.db".into()),
        db_bytes: Some(12_345_678),
        fps: 4,
        theme: "colour".into(),
    });
    s.press(KeyCode::Char('i'));
    let text = s.text(80, 24);
    assert!(text.contains("feedtop.db (12.3 MB on disk)") && text.contains("config.toml"), "{text}");
    assert!(!text.contains("SECRET-JWT"), "{text}");
    assert_screen!("info_overlay", s, 80, 24);
    // Without a config file it says so.
    s.view.run_info.as_mut().unwrap().config_file = None;
    assert!(s.text(80, 24).contains("none (defaults and flags)"));
    // A viewer without --db keeps none, and says how to keep one.
    s.view.run_info.as_mut().unwrap().db_path = None;
    assert!(s.text(80, 24).contains("none: this viewer stores nothing (--db PATH"), "{}", s.text(80, 24));
    s.press(KeyCode::Char('i'));
    assert_eq!(s.view.detail, None, "`i` again closes it");
}

/// Enter on a strike-off row or a ticker opens its detail (filled in by the
/// company and chart views); the overlay frame, keys and closing are these.
#[test]
fn enter_on_a_company_or_a_ticker() {
    let mut s = Screen::new(demo_model());
    let first = crate::ui::filter::visible(&s.live, &crate::ui::filter::Filter::new(""), Default::default(), false)[0]
        .company_number
        .clone();
    s.press(KeyCode::Enter);
    assert_eq!(s.view.detail, Some(crate::ui::Detail::Company(first.clone())));
    assert!(s.text(80, 24).contains(&format!("Company {first}")));
    s.press(KeyCode::Enter);
    assert_eq!(s.view.detail, None);
    s.press(KeyCode::Tab);
    s.keys("j");
    let second =
        crate::ui::ticker_list::visible(&s.live, &crate::ui::filter::Filter::new(""), s.view.ticker_sort, false)[1]
            .clone();
    s.press(KeyCode::Enter);
    assert_eq!(
        s.view.detail,
        Some(crate::ui::Detail::Ticker { feed: second.feed.clone(), symbol: second.quote.symbol.clone() })
    );
    s.press(KeyCode::Esc);
    // The Log has nothing to detail.
    s.press(KeyCode::Tab);
    s.press(KeyCode::Enter);
    assert_eq!(s.view.detail, None);
}

/// The demo with alerts raised by a rule on entered strike-offs (flash) and
/// a feed-down alert (bell only), as the pipeline's engine makes them.
fn alerts_model() -> Model {
    use crate::alerts::rules::{Companies, Rule, Trigger};
    use crate::alerts::{Actions, Alert, AlertKind, Engine};
    use crate::model::ChangeKind;
    let mut m = demo_model();
    let rule = Rule {
        number: 1,
        trigger: Trigger::StrikeOff { changes: vec![ChangeKind::Entered], companies: Companies::All },
        actions: Actions { bell: true, flash: true, exec: false },
        exec: Vec::new(),
    };
    let engine = Engine::new(vec![rule]);
    let mut raised = Vec::new();
    for change in m.strike_offs.iter().rev() {
        engine.strike_off("ch/companies", change, &mut raised);
    }
    raised.push(Alert {
        seq: 0,
        at: secs(29),
        rule: 2,
        kind: AlertKind::FeedDown,
        feed: "carbon-sse".into(),
        company: None,
        symbol: None,
        detail: "backoff for 2m00s: HTTP 503 \x1b]0;pwned\x07".into(),
        actions: Actions { bell: true, ..Actions::default() },
    });
    for alert in raised {
        m.alerts.push(alert);
    }
    m
}

/// Flash alerts mark the header until `a`; `A` lists them newest first with
/// their times and whether acknowledged; a pause hides none of it.
#[test]
fn alerts_flash_the_header_and_are_listed() {
    let mut s = Screen::new(alerts_model());
    let flashes = s.live.alerts.iter().filter(|a| a.actions.flash).count();
    assert!(flashes > 1, "the fixture has entered changes");
    assert_screen!("alerts_flashed", s, 80, 24);
    // At 80 columns the marker gives up its keys, so the totals stay whole;
    // where there is room it names them.
    let header = s.text(80, 24).lines().next().unwrap().to_string();
    assert!(header.contains(&format!(" {flashes} ALERTS ")) && header.contains("0 stored"), "{header}");
    let wide = s.text(120, 24).lines().next().unwrap().to_string();
    assert!(wide.contains(&format!(" {flashes} ALERTS · a ack · A list ")), "{wide}");
    // The marker is reversed bold in the error colour: unmissable.
    let buf = render(&s.live, &s.view, &s.theme, 80, 24);
    let (x, y) = find(&buf, "ALERTS").unwrap();
    let style = buf[(x, y)].style();
    assert!(style.add_modifier.contains(Modifier::REVERSED | Modifier::BOLD));
    assert_eq!(style.fg, s.theme.error.fg);

    s.press(KeyCode::Char('A'));
    assert_screen!("alerts_overlay", s, 100, 24);
    let list = s.text(100, 24);
    assert!(list.contains("NEW  feed-down"), "newest first: {list}");
    assert!(!list.chars().any(|c| c == '\x1b' || c == '\x07'), "feed text sanitised");
    // `a` in the list acknowledges; the list stays open and says so.
    s.press(KeyCode::Char('a'));
    let list = s.text(100, 24);
    assert!(!list.contains("NEW") && list.contains("ack  feed-down"), "{list}");
    // Any other key closes it; the marker is gone.
    s.press(KeyCode::Esc);
    assert!(!s.view.show_alerts);
    assert!(!s.text(80, 24).contains("ALERT"));

    // Paused: an alert raised meanwhile still marks the header.
    s.press(KeyCode::Char('p'));
    let alert = s.live.alerts.iter().find(|a| a.actions.flash).unwrap().clone();
    s.live.alerts.push(alert);
    let top = s.text(80, 24).lines().next().unwrap().to_string();
    assert!(top.contains(" 1 ALERT ") && top.contains("PAUSED"), "{top}");
    s.press(KeyCode::Char('a'));
    assert!(!s.text(80, 24).contains("ALERT"));
}

/// The list fits small terminals (scrolling), and an empty one says how to
/// get alerts.
#[test]
fn alerts_list_scrolls_on_a_small_terminal_and_says_when_empty() {
    let mut m = alerts_model();
    for _ in 0..3 {
        let again: Vec<_> = m.alerts.iter().rev().cloned().collect();
        again.into_iter().for_each(|a| drop(m.alerts.push(a)));
    }
    let mut s = Screen::new(m);
    s.press(KeyCode::Char('A'));
    let small = s.text(60, 16);
    assert!(small.contains("Alerts: 56 raised, 56 new") && small.contains("j/k scroll"), "{small}");
    let first = small.lines().find(|l| l.contains("NEW")).unwrap().to_string();
    s.press(KeyCode::Char('G'));
    let last = s.text(60, 16);
    assert!(s.view.alerts_scroll > 0 && !last.contains(&first), "{last}");
    assert!(s.view.show_alerts, "movement keys scroll, they do not close");

    let mut empty = Screen::new(demo_model());
    empty.press(KeyCode::Char('A'));
    assert!(empty.text(80, 24).contains("No alerts. Rules are [[alerts]] tables"));
}

/// The Log pane's rows: between its title rule and the footer.
fn log_rows(screen: &str) -> Vec<String> {
    let lines: Vec<&str> = screen.lines().collect();
    let title = lines.iter().position(|l| l.starts_with("\"Log") || l.starts_with("\"▶ Log")).expect("a Log pane");
    lines[title + 1..lines.len() - 1].iter().map(|l| l.trim_matches('"').trim_end().to_string()).collect()
}

/// The Log pane's title row.
fn log_title(screen: &str) -> String {
    screen.lines().find(|l| l.starts_with("\"Log") || l.starts_with("\"▶ Log")).unwrap_or_default().to_string()
}

/// The Log scrolls line by line and by its visible height, down to its
/// oldest line (`G`) and back to following the newest (`g`); lines that
/// arrive meanwhile do not move a scrolled view, and the title counts them.
/// (tui-logger's widget, before, only paged and never reached the oldest.)
#[test]
fn log_scrolls_to_its_oldest_line() {
    let mut s = Screen::new(demo_model());
    for i in 1..=30 {
        s.view.log.push(secs(i), tracing::Level::INFO, format!("log line {i}"));
    }
    s.press(KeyCode::BackTab);
    s.press(KeyCode::BackTab);
    assert_eq!(s.view.focus, Focus::Log);
    let following = log_rows(&s.text(120, 40));
    let rows = following.len();
    assert!((3..30).contains(&rows), "30 lines must not fit in {rows} rows");
    assert!(following.last().unwrap().ends_with("I log line 30"), "{following:?}");

    s.press(KeyCode::Char('G'));
    let screen = s.text(120, 40);
    let oldest = log_rows(&screen);
    assert!(oldest[0].ends_with("I log line 1"), "{oldest:?}");
    assert!(log_title(&screen).contains(&format!("↓ {} newer lines", 30 - rows)), "{screen}");
    assert_screen!("log_oldest", s, 120, 40);

    // A new line does not move the view; the title counts it.
    s.view.log.push(secs(31), tracing::Level::WARN, "log line 31");
    let screen = s.text(120, 40);
    assert_eq!(log_rows(&screen), oldest);
    assert!(log_title(&screen).contains(&format!("↓ {} newer lines", 31 - rows)), "{screen}");

    // Up at the oldest stays; down moves a line, PgDn the visible height.
    s.keys("kj");
    assert!(log_rows(&s.text(120, 40))[0].ends_with("I log line 2"));
    s.press(KeyCode::PageDown);
    assert!(log_rows(&s.text(120, 40))[0].ends_with(&format!("I log line {}", 2 + rows)));

    // `g` follows the newest again; PgUp goes back one page from there.
    s.press(KeyCode::Char('g'));
    let screen = s.text(120, 40);
    assert!(log_rows(&screen).last().unwrap().ends_with("W log line 31"));
    assert!(!log_title(&screen).contains("newer"), "{screen}");
    s.press(KeyCode::PageUp);
    let screen = s.text(120, 40);
    assert!(log_rows(&screen).last().unwrap().ends_with(&format!("I log line {}", 31 - rows)), "{screen}");
    assert!(log_title(&screen).contains(&format!("↓ {} newer lines", rows)), "{screen}");
    // Down to the newest line follows again, with no marker.
    s.press(KeyCode::PageDown);
    assert_eq!(s.view.log_top, None);
}

/// The rows of `screen` that contain one of `names`, in screen order.
fn order_of<'a>(screen: &str, names: &[&'a str]) -> Vec<&'a str> {
    screen.lines().filter_map(|l| names.iter().find(|n| l.contains(*n)).copied()).collect()
}

/// `/` takes a regular expression, any case; `!` keeps what does not
/// match; an invalid pattern filters nothing out and the footer says so,
/// while typing and after.
#[test]
fn filter_regex_inverse_and_invalid() {
    let mut s = Screen::new(demo_model());
    // Two names by their start, and the ticker whose symbol is exactly KGHM.
    s.keys("/^(brig|ORCH|kghm$)");
    s.press(KeyCode::Enter);
    let screen = s.text(120, 40);
    assert!(screen.contains("ORCHARD LANE BAKERY LTD") && screen.contains("BRIGHTWELL"), "{screen}");
    assert!(!screen.contains("HARTLEY & PRICE LLP") && !screen.contains("VELVET FOX"), "{screen}");
    assert!(screen.contains("KGHM") && !screen.contains("PKN "), "{screen}");
    assert_screen!("filter_regex", s, 120, 40);

    // Inverse: every change not ending in dissolution, every ticker but carbon's.
    s.press(KeyCode::Esc);
    s.keys("/!dissolved|carbon");
    s.press(KeyCode::Enter);
    let screen = s.text(120, 40);
    assert!(!screen.contains("→ dissolved") && screen.contains("HARTLEY & PRICE LLP"), "{screen}");
    assert!(!screen.contains("BRENT_CRUDE") && !screen.contains("WIG20") && screen.contains("KGHM"), "{screen}");
    assert_screen!("filter_inverse", s, 120, 40);

    // Invalid: the footer says so as it is typed, and nothing is filtered out.
    s.press(KeyCode::Esc);
    s.keys("/orchard (");
    let typing = s.text(80, 24);
    assert!(typing.contains("invalid regex: unclosed group"), "{typing}");
    assert_screen!("filter_invalid_typing", s, 80, 24);
    s.press(KeyCode::Enter);
    let screen = s.text(120, 40);
    assert!(screen.contains("not a valid regex (unclosed group): showing all"), "{screen}");
    assert!(screen.contains("HARTLEY & PRICE LLP") && screen.contains("BRENT_CRUDE"), "{screen}");
    assert_screen!("filter_invalid_applied", s, 120, 40);
}

/// `s` sorts the focused list: the strike-offs by company, then `S` turns
/// that upside down; the tickers keep their own order and direction.
#[test]
fn strike_offs_sorted_and_reversed() {
    let names =
        ["BRIGHTWELL JOINERY LTD", "GLENCAIRN HOME SERVICES LTD", "ORCHARD LANE BAKERY LTD", "VELVET FOX EVENTS LTD"];
    let mut s = Screen::new(demo_model());
    assert_eq!(s.view.focus, Focus::StrikeOffs);
    let by_time = order_of(&s.text(120, 60), &names);
    s.keys("s");
    let screen = s.text(120, 60);
    let mut by_company = order_of(&screen, &names);
    by_company.dedup();
    assert_eq!(by_company, names, "A to Z (newest first was {by_time:?})");
    assert!(screen.contains("sort: company"), "{screen}");
    assert!(screen.contains("Tickers (6) · sort: symbol─"), "the tickers do not move: {screen}");
    assert_screen!("strike_offs_by_company", s, 120, 60);
    s.keys("S");
    let screen = s.text(120, 60);
    let mut reversed = names;
    reversed.reverse();
    let mut by_company = order_of(&screen, &names);
    by_company.dedup();
    assert_eq!(by_company, reversed);
    assert!(screen.contains("sort: company, reversed"), "{screen}");
    // By change: entered first, then withdrawn, then struck off.
    s.keys("sS");
    let screen = s.text(120, 60);
    let kinds = order_of(&screen, &[" entered ", " withdrawn ", " struck-off "]);
    let mut sorted = kinds.clone();
    sorted.sort_by_key(|k| [" entered ", " withdrawn ", " struck-off "].iter().position(|x| x == k));
    assert_eq!(kinds, sorted, "{screen}");
    // Time, reversed: the oldest change first.
    s.keys("sS");
    assert!(s.text(120, 60).contains("sort: time, oldest first"));
    assert_eq!(order_of(&s.text(120, 60), &names), by_time.iter().rev().copied().collect::<Vec<_>>());

    // The tickers: `S` reverses their sort, not the strike-offs'.
    s.press(KeyCode::Tab);
    s.keys("S");
    let screen = s.text(120, 60);
    assert!(screen.contains("sort: symbol, reversed"), "{screen}");
    assert_eq!(order_of(&screen, &["BRENT_CRUDE", "CDR ", "WIG20"]), ["WIG20", "CDR ", "BRENT_CRUDE"]);
    assert_screen!("tickers_reversed", s, 120, 60);
}

/// A pane's table header: the row after the title row containing `title`.
fn header_below(screen: &str, title: &str) -> String {
    let lines: Vec<&str> = screen.lines().collect();
    let at = lines.iter().position(|l| l.contains(title)).unwrap_or_else(|| panic!("{title}: {screen}"));
    lines[at + 1].to_string()
}

/// Which columns show, and where, depends on the terminal's width, not on
/// the data: a feed that measures no round trip, quotes without a change
/// figure, and a long symbol leave the headers exactly where the demo's
/// data puts them (the `rtt`, `recon` and `chg` columns used to come and go,
/// and widths followed the longest value). Cut names end in `…`.
#[test]
fn columns_are_stable_whatever_the_data() {
    // Only carbon's price-only quotes, a symbol too long for its column, a
    // company name too long for its column, and no round-trip times.
    let mut sparse = demo_feeds();
    carbon_brent(&mut sparse, CARBON);
    apply_to(&mut sparse, CARBON, secs(29), FeedMsgKind::Quotes(vec![Quote::new("WTI_CRUDE_OIL_FUTURES_DEC", 70.1)]));
    let long = profile_event(
        90_000_001,
        "AB000001",
        "THE EXTREMELY LONG NAME HOLDINGS GROUP OF COMPANIES PLC",
        Some("active-proposal-to-strike-off"),
    );
    apply_to(&mut sparse, CH, secs(29), FeedMsgKind::Event(Box::new(long)));
    sparse.tick(secs(30));
    let demo = Screen::new(demo_model());
    let sparse = Screen::new(sparse);
    for (w, h) in [(80, 24), (100, 30), (120, 40), (200, 50)] {
        let (full, thin) = (demo.text(w, h), sparse.text(w, h));
        for title in ["Connections (5)", "Tickers (", "Strike-off"] {
            assert_eq!(header_below(&full, title), header_below(&thin, title), "{title} at {w}×{h}:\n{full}\n{thin}");
        }
        assert!(thin.contains("WTI_CRUDE_…"), "{thin}");
        assert!(thin.contains("THE EXTREMELY LONG NAM"), "{thin}");
        let name = thin.lines().find(|l| l.contains("THE EXTREMELY")).unwrap();
        assert!(name.contains("…"), "{name}");
    }
    assert!(header_below(&demo.text(120, 40), "Connections (5)").contains(" recon "));
    assert!(header_below(&demo.text(120, 40), "Connections (5)").contains(" rtt "));
    assert!(header_below(&demo.text(80, 24), "Tickers (").contains(" chg "));
    assert_screen!("columns_sparse_data_80x24", sparse, 80, 24);
}

/// With the demo's five feeds every list keeps at least three rows and the
/// log two, from 80×24 up: at 80×24 the rate and latency panes give way to
/// one rate line (they had left the lists one row each and the log one).
#[test]
fn every_list_keeps_three_rows() {
    let s = Screen::new(demo_model());
    for (w, h) in [(80, 24), (100, 30), (120, 40), (200, 50)] {
        let screen = s.text(w, h);
        let rows = (s.view.strike_rows_shown.get(), s.view.ticker_rows_shown.get(), s.view.log_rows_shown.get());
        assert!(rows.0 >= 3 && rows.1 >= 3 && rows.2 >= 2, "{rows:?} at {w}×{h}:\n{screen}");
        let (strike, tickers) = (title_range(&screen, "Strike-off"), title_range(&screen, "Tickers"));
        for range in [strike, tickers].into_iter().flatten() {
            let shown: Vec<usize> = range.split([' ', '–']).filter_map(|n| n.parse().ok()).collect();
            assert!(shown[1] - shown[0] >= 2, "{range} at {w}×{h}:\n{screen}");
        }
        assert_eq!(screen.contains("Latency"), (w, h) != (80, 24), "{screen}");
    }
}

/// ASCII and light-theme screens.
mod terminal;

/// A viewer of a relay's stream (`--source nats://…`): the demo's feeds as
/// the relay reports them, and this viewer's own link to NATS, connected
/// since before t0, the relay last heard at t0 + 18 s; now t0 + 30 s.
fn viewer_model() -> Model {
    let mut m = demo_model();
    m.demo = false;
    m.changes_from_source = true;
    m.viewer = Some(crate::relay::ViewerStatus {
        url: "nats://***@nats.internal:4222".into(),
        stream: "FEEDTOP".into(),
        nats: crate::relay::LinkState::Connected,
        reconnects: 0,
        behind: 0,
        received: 1_234,
        unreadable: 0,
        relay_heard: Some(secs(18)),
        last_error: None,
        since: std::time::Duration::from_secs(3600),
    });
    m.tick(secs(30));
    m
}

/// The Connections title row of a screen.
fn connections_title(screen: &str) -> String {
    let line = screen.lines().find(|l| l.contains("Connections (")).unwrap_or_default();
    line.trim_matches('"').trim_end_matches('─').to_string()
}

/// A viewer says where it reads from under the header, and its own NATS
/// link on the Connections title: connected with its lag and when the relay
/// was last heard; down and for how long (the relay's rows cannot be fresh);
/// back, with the relay silent past 90 s in the warning colour.
#[test]
fn viewer_with_its_nats_link_up_down_and_the_relay_silent() {
    use crate::relay::LinkState;
    let mut s = Screen::new(viewer_model());
    let text = s.text(80, 24);
    assert!(text.contains("source nats://***@nats.internal:4222 · stream FEEDTOP"), "{text}");
    assert!(
        connections_title(&text).ends_with("Connections (5) · NATS connected · 0 behind · relay heard 12s ago"),
        "{text}"
    );
    assert_screen!("viewer_connected_80x24", s, 80, 24);

    let v = s.live.viewer.as_mut().unwrap();
    v.nats = LinkState::Disconnected;
    v.reconnects = 3;
    s.live.tick(secs(31));
    s.live.tick(secs(111));
    let text = s.text(80, 24);
    assert!(connections_title(&text).ends_with("· NATS disconnected 1m20s · reconnects 3"), "{text}");
    assert_screen!("viewer_disconnected_80x24", s, 80, 24);

    s.live.viewer.as_mut().unwrap().nats = LinkState::Connected;
    s.live.tick(secs(130));
    let wide = s.text(120, 30);
    assert!(
        connections_title(&wide).ends_with("· NATS connected · 0 behind · relay silent 1m52s · reconnects 3"),
        "{wide}"
    );
    assert_screen!("viewer_relay_silent_120x30", s, 120, 30);
    // At 80 columns, with the focus marker on the title, the reconnects
    // give way, whole, to the silence.
    assert!(connections_title(&s.text(80, 24)).ends_with("relay silent 1m52s · reconnects 3"));
    s.view.focus = Focus::Connections;
    let narrow = connections_title(&s.text(80, 24));
    assert!(narrow.ends_with("· NATS connected · 0 behind · relay silent 1m52s"), "{narrow}");
    let buf = render(&s.live, &s.view, &s.theme, 80, 24);
    let row =
        (0..24).find(|&y| (0..80).any(|x| buf[(x, y)].symbol() == "C" && buf[(x + 1, y)].symbol() == "o")).unwrap();
    let silent = (0..80u16).find(|&x| buf[(x, row)].symbol() == "s" && buf[(x + 1, row)].symbol() == "i").unwrap();
    assert_eq!(buf[(silent, row)].fg, s.theme.warn.fg.unwrap_or(Color::Reset), "relay silent in the warning colour");
}

/// However narrow the screen, each part of the NATS strip shows whole or
/// not at all (a cut `1m2` would read as another duration), and the lists
/// keep their rows with the source line under the header.
#[test]
fn the_nats_strip_shows_only_whole_parts() {
    let mut s = Screen::new(viewer_model());
    s.live.viewer.as_mut().unwrap().reconnects = 12;
    s.live.viewer.as_mut().unwrap().behind = 4_321;
    let whole = ["NATS connected", "4,321 behind", "relay heard 12s ago", "reconnects 12"];
    for focus in [Focus::StrikeOffs, Focus::Connections] {
        s.view.focus = focus;
        for w in 60..=140 {
            let text = s.text(w, 24);
            let title = connections_title(&text);
            let parts: Vec<&str> = title.split(" · ").skip(1).collect();
            assert!(parts.iter().all(|p| whole.contains(p)), "{w}: {title}");
            if w >= 100 {
                assert_eq!(parts, whole, "{w}: {title}");
            }
        }
    }
    s.text(80, 24);
    let rows = (s.view.strike_rows_shown.get(), s.view.ticker_rows_shown.get(), s.view.log_rows_shown.get());
    assert!(rows.0 >= 3 && rows.1 >= 3 && rows.2 >= 2, "{rows:?}:\n{}", s.text(80, 24));
}

/// `i` for a viewer: the relay's stream it reads (secrets `***`), its own
/// link, what it has read, and when the relay was last heard.
#[test]
fn info_overlay_of_a_viewer() {
    let mut s = Screen::new(viewer_model());
    s.press(KeyCode::Char('i'));
    let text = s.text(80, 24);
    for want in [
        "source      nats://***@nats.internal:4222 · stream FEEDTOP",
        "NATS link   connected · 0 reconnects",
        "read        1,234 messages · 0 behind",
        "relay       heard 12s ago, at hh:mm:ss CEST",
    ] {
        let want = want.replace("hh:mm:ss", "14:00:18");
        assert!(text.contains(&want), "{want} in\n{text}");
    }
    assert_screen!("info_overlay_viewer", s, 80, 24);
}
