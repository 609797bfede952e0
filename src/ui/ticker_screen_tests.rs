//! Whole-screen tests with quote feeds: the four-feed model from
//! [`quote_model`] (Companies House, wig80, carbon, sse) drawn into a
//! `TestBackend`, checked on the text and styles a user would see.

use std::time::Duration;

use chrono::TimeDelta;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

use super::test_support::*;
use super::{Focus, Theme, TickerSort, ViewState};
use feedtop_proto::FeedMsgKind;

const LEGEND: &str = "~ estimate: server-local timestamps";

fn color() -> Theme {
    Theme::new(true)
}

/// The row index of the first line containing `needle`.
fn y_of(buf: &Buffer, needle: &str) -> usize {
    lines(buf).iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no {needle:?} in\n{}", screen(buf)))
}

/// The latency pane's header and feed rows, cut from its left edge.
fn latency_rows(buf: &Buffer, feeds: usize) -> Vec<String> {
    let (x, y) = find(buf, "Latency").unwrap_or_else(|| panic!("{}", screen(buf)));
    let l = lines(buf);
    l[usize::from(y) + 1..=usize::from(y) + 1 + feeds]
        .iter()
        .map(|r| r.chars().skip(usize::from(x)).collect())
        .collect()
}

fn press(view: &mut ViewState, m: &crate::model::Model, c: char) {
    view.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE), m);
}

#[test]
fn tickers_show_prices_and_direction_at_80x24_and_200x50() {
    let m = quote_model();
    let theme = color();
    for (w, h) in [(80, 24), (200, 50)] {
        let buf = render(&m, &ViewState::new(), &theme, w, h);
        let s = screen(&buf);
        assert!(s.contains("Tickers (4) · sort: symbol"), "{s}");
        let pkn = row_with(&buf, "PKN").unwrap_or_else(|| panic!("{s}"));
        for part in ["74.62", "-0.38", "▼ -0.50%", "262k", "wig80", "closed", "10s"] {
            assert!(pkn.contains(part), "{part} at {w}×{h}: {pkn}\n{s}");
        }
        let kghm = row_with(&buf, "KGHM").unwrap_or_else(|| panic!("{s}"));
        for part in ["152.30", "+3.10", "▲ +2.08%", "1.2M"] {
            assert!(kghm.contains(part), "{part} at {w}×{h}: {kghm}");
        }
        // carbon sends only prices: the arrow is the last move.
        let brent = row_with(&buf, "BRENT_CRUDE").unwrap_or_else(|| panic!("{s}"));
        assert!(brent.contains("75.90") && brent.contains('▲') && brent.contains("carbon"), "{brent}");

        let fg = |row: &str, needle: &str| {
            let (x, y) = find_in_row(&buf, row, needle).unwrap_or_else(|| panic!("{needle} in {row}: {s}"));
            buf[(x, y)].fg
        };
        let (up, down) = (theme.up.fg.unwrap(), theme.down.fg.unwrap());
        assert_eq!((up, down), (Color::Green, Color::Red));
        assert_eq!(fg("PKN", "-0.38"), down);
        assert_eq!(fg("PKN", "▼"), down);
        assert_eq!(fg("KGHM", "+3.10"), up);
        assert_eq!(fg("KGHM", "▲"), up);
        assert_eq!(fg("PKN", "74.62"), Color::Reset, "a price that did not just move is plain");
    }
    // Wide, every column and every row fits.
    let wide = render(&m, &ViewState::new(), &theme, 200, 50);
    let header = row_with(&wide, "chg %").unwrap();
    for col in ["price", "chg", "chg %", "vol", "high", "low", "trend", "feed", "status", "age"] {
        assert!(header.contains(col), "{col}: {header}");
    }
    let kghm = row_with(&wide, "KGHM").unwrap();
    assert!(kghm.contains("153.00") && kghm.contains("148.50"), "{kghm}");
    let wig20 = row_with(&wide, "WIG20").unwrap();
    assert!(wig20.contains("2,345.7") && wig20.contains("+12.50") && wig20.contains("46M"), "{wig20}");
    assert!(row_with(&wide, "PKN").unwrap().contains(" - "), "no high/low given: -");
}

#[test]
fn narrow_drops_high_and_low_together() {
    let m = quote_model();
    let mut dropped_at = None;
    for w in (60..=159).rev() {
        let buf = render(&m, &ViewState::new(), &color(), w, 24);
        let header = row_with(&buf, "chg %").unwrap();
        assert_eq!(header.contains("high"), header.contains("low"), "at {w}: {header}");
        if !header.contains("high") && dropped_at.is_none() {
            dropped_at = Some(w);
        }
        assert!(header.contains("price") && header.contains("age"), "at {w}: {header}");
    }
    assert!(dropped_at.is_some_and(|w| w > 80), "80 columns have no room for the range: {dropped_at:?}");
}

#[test]
fn sparkline_follows_the_price_history() {
    let mut m = quote_model();
    for (i, p) in [75.0, 76.0, 77.0, 78.0].into_iter().enumerate() {
        let q = feedtop_proto::Quote::new("BRENT_CRUDE", p);
        apply_to(&mut m, CARBON, secs(31 + i as i64), FeedMsgKind::Quotes(vec![q]));
    }
    m.tick(secs(40));
    let row = row_with(&render(&m, &ViewState::new(), &color(), 200, 50), "BRENT_CRUDE").unwrap();
    // 75.50, 75.90, 75, 76, 77, 78 scaled from 75 to 78.
    assert!(row.contains("▂▃▁▃▆█"), "{row}");
}

#[test]
fn a_quote_older_than_stale_after_is_dimmed_and_marked() {
    let m = quote_model();
    let mut view = ViewState::new();
    assert_eq!(view.stale_after, Duration::from_secs(60), "the default");
    let buf = render(&m, &view, &color(), 200, 50);
    // WIG20 arrived at t0 - 90 s; now is t0 + 30 s.
    let wig20 = row_with(&buf, "WIG20").unwrap();
    assert!(wig20.contains("2m00s stale"), "{wig20}");
    let dim = |buf: &Buffer, needle: &str| {
        let (x, y) = find(buf, needle).unwrap();
        buf[(x, y)].modifier.contains(Modifier::DIM)
    };
    assert!(dim(&buf, "WIG20") && dim(&buf, "2,345.7"));
    assert!(!dim(&buf, "PKN") && !row_with(&buf, "PKN").unwrap().contains("stale"));

    view.stale_after = Duration::from_secs(180);
    let buf = render(&m, &view, &color(), 200, 50);
    assert!(!row_with(&buf, "WIG20").unwrap().contains("stale"));
    assert!(!dim(&buf, "WIG20"));
}

#[test]
fn a_price_that_just_moved_is_highlighted_for_a_second() {
    let mut m = quote_model();
    let buf = render(&m, &ViewState::new(), &color(), 200, 50);
    // BRENT_CRUDE moved up half a second ago.
    let (x, y) = find_in_row(&buf, "BRENT_CRUDE", "75.90").unwrap();
    let price = &buf[(x, y)];
    assert!(price.modifier.contains(Modifier::REVERSED | Modifier::BOLD), "{price:?}");
    assert_eq!(price.fg, Color::Green, "the flash shows the move's direction");
    // The price alone: the rest of the row is not redrawn for a tick.
    let (x, y) = find(&buf, "BRENT_CRUDE").unwrap();
    assert!(!buf[(x, y)].modifier.contains(Modifier::BOLD));
    let (x, y) = find_in_row(&buf, "PKN", "74.62").unwrap();
    assert!(!buf[(x, y)].modifier.intersects(Modifier::REVERSED | Modifier::BOLD));

    m.tick(m.now + TimeDelta::seconds(1));
    let buf = render(&m, &ViewState::new(), &color(), 200, 50);
    let (x, y) = find_in_row(&buf, "BRENT_CRUDE", "75.90").unwrap();
    assert!(!buf[(x, y)].modifier.contains(Modifier::REVERSED), "the flash is over");
}

#[test]
fn sorting_orders_rows() {
    let m = quote_model();
    let mut view = ViewState::new();
    let order = |view: &ViewState| {
        let buf = render(&m, view, &color(), 200, 50);
        let mut symbols = ["BRENT_CRUDE", "KGHM", "PKN", "WIG20"];
        symbols.sort_by_key(|s| y_of(&buf, s));
        (symbols, screen(&buf))
    };
    let (rows, _) = order(&view);
    assert_eq!(rows, ["BRENT_CRUDE", "KGHM", "PKN", "WIG20"]);
    view.ticker_sort = TickerSort::ChangePercent;
    let (rows, s) = order(&view);
    // +2.08 %, +0.54 %, -0.50 %, then carbon's row with no figure.
    assert_eq!(rows, ["KGHM", "WIG20", "PKN", "BRENT_CRUDE"]);
    assert!(s.contains("Tickers (4) · sort: change %"), "{s}");
    // By age, newest first: WIG20 updated just now, then BRENT_CRUDE (half a
    // second ago), then KGHM and PKN (ten seconds ago, by symbol).
    let mut m = m.clone();
    apply_to(&mut m, SSE, secs(30), FeedMsgKind::Quotes(vec![quote("WIG20", 2_350.0, 16.83, 0.72)]));
    view.ticker_sort = TickerSort::Age;
    let buf = render(&m, &view, &color(), 200, 50);
    let mut rows = ["BRENT_CRUDE", "KGHM", "PKN", "WIG20"];
    rows.sort_by_key(|s| y_of(&buf, s));
    assert_eq!(rows, ["WIG20", "BRENT_CRUDE", "KGHM", "PKN"], "{}", screen(&buf));
    assert!(screen(&buf).contains("sort: age"));
}

#[test]
fn filter_keeps_only_matching_tickers() {
    let m = quote_model();
    let mut view = ViewState::new();
    view.filter = "pkn".into();
    for (w, h) in [(80, 24), (200, 50)] {
        let buf = render(&m, &view, &color(), w, h);
        let s = screen(&buf);
        assert!(row_with(&buf, "PKN").is_some_and(|r| r.contains("74.62")), "{s}");
        for gone in ["KGHM", "BRENT_CRUDE", "WIG20"] {
            assert!(!s.contains(gone), "{gone} at {w}×{h}: {s}");
        }
        assert!(s.contains("Tickers (1/4) · sort: symbol · filter: pkn"), "{s}");
    }
    let shown = |filter: &str| {
        let mut view = ViewState::new();
        view.filter = filter.into();
        let s = screen(&render(&m, &view, &color(), 200, 50));
        ["BRENT_CRUDE", "KGHM", "PKN", "WIG20"].into_iter().filter(|sym| s.contains(sym)).collect::<Vec<_>>()
    };
    assert_eq!(shown("CLOSED"), ["KGHM", "PKN"], "market status, any case");
    assert_eq!(shown("carbon"), ["BRENT_CRUDE"], "feed name");
    view.filter = "xyz".into();
    let s = screen(&render(&m, &view, &color(), 200, 50));
    assert_eq!(s.matches("no match for 'xyz'").count(), 2, "both lists say so: {s}");
}

#[test]
fn latency_lists_every_feed_and_marks_estimates() {
    let m = quote_model();
    // At 80×24 the lists' rows come first and the metrics collapse into the
    // rate line (layout::tests); 30 rows fit the latency pane too.
    for (w, h) in [(80, 30), (200, 50)] {
        let buf = render(&m, &ViewState::new(), &color(), w, h);
        let s = screen(&buf);
        let rows = latency_rows(&buf, 4);
        assert!(rows[0].starts_with("feed") && rows[0].contains("p99") && rows[0].contains("rtt"), "{s}");
        let row = |name: &str| rows.iter().find(|r| r.starts_with(name)).unwrap_or_else(|| panic!("{name}: {s}"));
        // wig80 is stamped with naive server time: ~, and its ping. Both it
        // and Companies House stamp whole seconds, so their latency is too.
        assert!(row("wig80").contains("~ 1s ") && row("wig80").contains("42ms"), "{s}");
        assert!(row("ch/companies").contains(" 2s ") && !row("ch/companies").contains('~'), "{s}");
        assert!(row("carbon").contains("250ms") && !row("carbon").contains('~'), "{s}");
        assert!(row("sse").contains("no timestamps"), "{s}");
        assert!(s.contains(LEGEND), "{s}");
        let (x, y) = find_in_row(&buf, "wig80", "~").unwrap();
        assert_eq!(buf[(x, y)].fg, Color::Yellow);
    }
    // Once the sse quote is older than the window, nothing says it had no time.
    let mut later = m.clone();
    later.tick(secs(-90 + 301));
    let rows = latency_rows(&render(&later, &ViewState::new(), &color(), 200, 50), 4);
    assert!(rows[4].starts_with("sse") && rows[4].contains("no data"), "{rows:?}");
}

#[test]
fn latency_without_estimates_or_pings_has_no_marker_legend_or_rtt() {
    let m = four_feeds();
    let buf = render(&m, &ViewState::new(), &color(), 200, 50);
    let rows = latency_rows(&buf, 4);
    assert!(!rows[0].contains("rtt"), "{rows:?}");
    assert!(rows[1..].iter().all(|r| r.contains("no data") && !r.contains('~')), "{rows:?}");
    assert!(!screen(&buf).contains(LEGEND));
    assert!(screen(&buf).contains("no quotes yet"), "{}", screen(&buf));
}

#[test]
fn connections_fit_four_feeds_and_show_rtt_when_wide() {
    let m = quote_model();
    let buf = render(&m, &ViewState::new(), &color(), 80, 24);
    for name in ["ch/companies", "wig80", "carbon", "sse"] {
        assert!(row_with(&buf, name).is_some_and(|r| r.contains("live")), "{name}: {}", screen(&buf));
    }
    assert!(!row_with(&buf, "last error").unwrap().contains("rtt"), "no room at 80 columns");
    let wide = render(&m, &ViewState::new(), &color(), 200, 50);
    assert!(row_with(&wide, "last error").unwrap().contains("rtt"));
    let wig80 = row_with(&wide, "wig80").unwrap();
    assert!(wig80.contains("42ms") && wig80.contains("live"), "{wig80}");
}

#[test]
fn wide_puts_tickers_beside_strike_offs_narrow_below() {
    let m = quote_model();
    let buf = render(&m, &ViewState::new(), &color(), 200, 50);
    assert_eq!(y_of(&buf, "Tickers (4)"), y_of(&buf, "Strike-off changes"), "{}", screen(&buf));
    let buf = render(&m, &ViewState::new(), &color(), 159, 45);
    assert!(y_of(&buf, "Tickers (4)") > y_of(&buf, "Strike-off changes"), "{}", screen(&buf));
    assert!(y_of(&buf, "Tickers (4)") < y_of(&buf, "Log"));
    // Companies House alone: no tickers pane at any size.
    for (w, h) in [(80, 24), (200, 50)] {
        let s = screen(&render(&live_model(), &ViewState::new(), &color(), w, h));
        assert!(!s.contains("Tickers") && !s.contains("no quotes"), "{s}");
    }
}

#[test]
fn stacked_lists_share_the_height() {
    // With strike-offs too, both lists keep rows at 80×24.
    let mut m = quote_model();
    for (i, ev) in fixture_events().into_iter().enumerate() {
        apply(&mut m, secs(i as i64), FeedMsgKind::Event(Box::new(ev)));
    }
    let buf = render(&m, &ViewState::new(), &color(), 80, 24);
    let s = screen(&buf);
    assert!(s.contains("12007733"), "the newest strike-off: {s}");
    assert!(s.contains("BRENT_CRUDE"), "the first ticker: {s}");
    assert!(s.contains("Log"), "{s}");
}

#[test]
fn key_s_cycles_the_sort_and_is_in_the_help() {
    let m = quote_model();
    let mut view = ViewState::new();
    // `s` sorts the focused list.
    view.focus = crate::ui::Focus::Tickers;
    let title = |view: &ViewState| row_with(&render(&m, view, &color(), 80, 24), "Tickers").unwrap();
    assert!(title(&view).contains("sort: symbol"));
    for want in ["sort: change %", "sort: age", "sort: symbol"] {
        press(&mut view, &m, 's');
        assert!(title(&view).contains(want), "{want}: {}", title(&view));
    }
    view.show_help = true;
    let buf = render(&m, &view, &color(), 80, 24);
    let row = row_with(&buf, "sort the focused list").unwrap_or_else(|| panic!("{}", screen(&buf)));
    assert!(row.contains(" s "), "{row}");
}

#[test]
fn no_colour_tickers_still_read() {
    let m = quote_model();
    let buf = render(&m, &ViewState::new(), &Theme::new(false), 120, 40);
    let s = screen(&buf);
    assert!(row_with(&buf, "PKN").unwrap().contains('▼') && row_with(&buf, "KGHM").unwrap().contains('▲'), "{s}");
    for cell in buf.content() {
        assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
    }
}

#[test]
fn tiny_terminals_with_four_feeds_do_not_panic() {
    let m = quote_model();
    let view = ViewState::new();
    let s = screen(&render(&m, &view, &color(), 20, 5));
    assert!(s.contains("too small"), "{s}");
    render(&m, &view, &color(), 1, 1);
    render(&m, &view, &color(), 30_000, 60);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 96, ..Default::default() })]
    /// Any size, with four feeds, the tickers focused and scrolled, with the
    /// overlay or a filter: never a panic.
    #[test]
    fn any_terminal_size_draws_the_tickers(
        w in 0u16..=240,
        h in 0u16..=70,
        help: bool,
        filter in proptest::sample::select(vec!["", "k", "zzz"]),
        scroll in 0usize..8,
    ) {
        let m = quote_model();
        let mut view = ViewState::new();
        view.focus = Focus::Tickers;
        view.ticker_scroll = scroll;
        view.show_help = help;
        view.filter = filter.into();
        render(&m, &view, &color(), w, h);
    }
}
