//! Feed text on screen: a company name, an error body, a ticker symbol and
//! market status that carry terminal escapes, C1 controls, DEL and bidi
//! overrides are drawn with the sanitiser's marker, never as control bytes.

use super::test_support::*;
use super::{Theme, ViewState};
use crate::sanitize::{is_unsafe, MARKER};
use feedtop_proto::{ConnState, FeedMsgKind, Quote};

/// Retitles the terminal, clears it, a C1 CSI, CR, BS, DEL, a right-to-left override.
const NAME: &str = "EVIL\x1b]0;pwned\x07LTD\x1b[2J\u{9b}2J\r\x08\x7f\u{202E}DTL";
const ERROR: &str = "HTTP 503: \x1b]52;c;aGk=\x07\u{9b}31m\u{2066}bad\u{2069}";

fn assert_safe(screen: &str) {
    let bad: Vec<char> = screen.chars().filter(|&c| c != '\n' && is_unsafe(c)).collect();
    assert!(bad.is_empty(), "control characters on screen: {bad:?}\n{screen}");
}

#[test]
fn hostile_company_name_and_error_are_drawn_with_markers() {
    let mut m = live_model();
    let ev = profile_event(90_000_000, "9\x1b[2J", NAME, Some("active-proposal-to-strike-off"));
    apply(&mut m, secs(29), FeedMsgKind::Event(Box::new(ev)));
    apply(&mut m, secs(30), FeedMsgKind::Error(ERROR.into()));
    apply(&mut m, secs(30), FeedMsgKind::State(ConnState::Backoff { retry_at: secs(35) }));
    m.tick(secs(30));
    let s = screen(&render(&m, &ViewState::new(), &Theme::new(true), 200, 50));
    assert_safe(&s);
    assert!(s.contains(&format!("EVIL{MARKER}]0;pwned{MARKER}LTD{MARKER}[2J")), "{s}");
    assert!(s.contains(&format!("9{MARKER}[2J")), "the number too: {s}");
    assert!(s.contains(&format!("HTTP 503: {MARKER}]52;c;aGk={MARKER}{MARKER}31m{MARKER}bad{MARKER}")), "{s}");
}

#[test]
fn hostile_symbol_and_market_status_are_drawn_with_markers() {
    let mut m = quote_model();
    let q = Quote { market_status: Some("open\x1b]0;x\x07".into()), ..quote("PKN\u{202E}X\x7f", 74.9, 0.1, 0.2) };
    apply_to(&mut m, WIG80, secs(30), FeedMsgKind::Quotes(vec![q]));
    m.tick(secs(30));
    let s = screen(&render(&m, &ViewState::new(), &Theme::new(true), 200, 50));
    assert_safe(&s);
    assert!(s.contains(&format!("PKN{MARKER}X{MARKER}")), "{s}");
    assert!(s.contains(&format!("open{MARKER}]0;x{MARKER}")), "{s}");
}

/// The feed detail shows the whole error and the reasons of its state
/// changes, and `i` the feeds' URLs: all through the sanitiser too.
#[test]
fn hostile_error_in_the_feed_detail_and_info_is_drawn_with_markers() {
    let mut m = live_model();
    apply(&mut m, secs(30), FeedMsgKind::Error(ERROR.into()));
    apply(&mut m, secs(30), FeedMsgKind::State(ConnState::Backoff { retry_at: secs(35) }));
    m.feeds[0].about.url = Some("https://h/\x1b]0;x\x07".into());
    m.feeds[0].about.settings = vec![("topics", NAME.into())];
    m.tick(secs(30));
    let mut view = ViewState::new();
    view.focus = super::Focus::Connections;
    view.handle(super::keys::Action::Details, &m);
    for detail in [super::Detail::Feed(m.feeds[0].info.name.clone()), super::Detail::Info] {
        view.detail = Some(detail);
        view.detail_scroll = 0;
        for (w, h) in [(200, 60), (60, 16)] {
            // Scrolled through, so every line is drawn once.
            for _ in 0..40 {
                let s = screen(&render(&m, &view, &Theme::new(true), w, h));
                assert_safe(&s);
                view.detail_scroll += 1;
            }
            view.detail_scroll = 0;
        }
        let s = screen(&render(&m, &view, &Theme::new(true), 200, 60));
        assert!(s.contains(&format!("h/{MARKER}]0;x{MARKER}")), "{s}");
    }
}
