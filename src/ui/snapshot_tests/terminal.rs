//! The screen on the terminal the user has: the ASCII glyph set (a locale
//! that is not UTF-8, `--ascii`) and the light theme, as snapshots of the
//! demo, plus checks over every cell.

use super::*;
use crate::ui::glyphs::Glyphs;
use crate::ui::theme::ThemeName;

/// These snapshots live beside the others, in `src/ui/snapshots`.
fn beside_the_others(f: impl FnOnce()) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.bind(f);
}

fn ascii(mut s: Screen) -> Screen {
    s.theme = s.theme.with_glyphs(Glyphs::ASCII);
    s
}

/// Every cell of `s` at `w`×`h` is ASCII (the demo's feed text is).
fn assert_all_ascii(s: &Screen, w: u16, h: u16) {
    let text = s.text(w, h);
    let odd: Vec<char> = text.chars().filter(|c| !c.is_ascii()).collect();
    assert!(odd.is_empty(), "{odd:?} in\n{text}");
}

#[test]
fn ascii_demo_80x24() {
    let s = ascii(Screen::new(demo_model()));
    assert_all_ascii(&s, 80, 24);
    beside_the_others(|| assert_screen!("ascii_demo_80x24", s, 80, 24));
}

/// Every decoration the demo has, at the size that shows them all: rules,
/// bars, arrows, dots, dashes, ranges, the focus marker; and a cut error.
#[test]
fn ascii_demo_120x40() {
    let mut m = demo_model();
    apply_to(
        &mut m,
        CARBON,
        secs(30),
        FeedMsgKind::Error("closed by the server: 1011 kafka unavailable, try later".into()),
    );
    apply_to(&mut m, CARBON, secs(30), FeedMsgKind::State(ConnState::Backoff { retry_at: secs(35) }));
    let mut s = ascii(Screen::new(m));
    s.press(KeyCode::Char('p'));
    assert_all_ascii(&s, 120, 40);
    beside_the_others(|| assert_screen!("ascii_demo_120x40", s, 120, 40));
}

/// The help box and its scroll hint in ASCII; the arrow keys by name.
#[test]
fn ascii_help() {
    let mut s = ascii(Screen::new(demo_model()));
    s.press(KeyCode::Char('?'));
    s.press(KeyCode::Char('j'));
    assert_all_ascii(&s, 60, 16);
    beside_the_others(|| assert_screen!("ascii_help_60x16", s, 60, 16));
    let text = s.text(80, 30);
    assert!(text.contains("Up / k") && text.contains("Down / j"), "{text}");
    assert_all_ascii(&s, 80, 30);
}

#[test]
fn ascii_too_small() {
    let mut s = ascii(Screen::new(demo_model()));
    s.press(KeyCode::Char('p'));
    assert_all_ascii(&s, 40, 10);
    assert!(s.text(40, 10).contains("40x10"), "{}", s.text(40, 10));
}

/// A letter for a colour, upper case for a background: what the colour map
/// of a snapshot shows.
fn colour_letter(c: Color) -> char {
    match c {
        Color::Reset => '.',
        Color::Black => 'k',
        Color::Red => 'r',
        Color::Green => 'g',
        Color::Yellow => 'y',
        Color::Blue => 'b',
        Color::Magenta => 'm',
        Color::Cyan => 'c',
        Color::Gray => 'w',
        _ => '?',
    }
}

/// The screen's text, then its colours: a row of foreground letters per
/// row (background letters in upper case where one is set).
fn with_colours(s: &Screen, w: u16, h: u16) -> String {
    let buf = render(&s.live, &s.view, &s.theme, w, h);
    let mut out = s.text(w, h);
    for y in 0..h {
        let row: String = (0..w)
            .map(|x| {
                let cell = &buf[(x, y)];
                match cell.bg {
                    Color::Reset => colour_letter(cell.fg),
                    bg => colour_letter(bg).to_ascii_uppercase(),
                }
            })
            .collect();
        out.push('\n');
        out.push_str(&row);
    }
    out
}

/// The light theme reads on white: no cell has yellow, white, cyan or a
/// bright colour as its text colour over the terminal's own background.
fn assert_reads_on_white(s: &Screen, w: u16, h: u16) {
    let buf = render(&s.live, &s.view, &s.theme, w, h);
    for cell in buf.content() {
        let fades = matches!(cell.fg, Color::Yellow | Color::White | Color::Gray | Color::Cyan)
            || matches!(cell.fg, Color::LightRed | Color::LightGreen | Color::LightYellow)
            || matches!(cell.fg, Color::LightBlue | Color::LightMagenta | Color::LightCyan | Color::DarkGray);
        assert!(!fades || cell.bg != Color::Reset, "{cell:?}");
    }
}

#[test]
fn light_demo_80x24() {
    let mut s = Screen::new(demo_model());
    s.theme = Theme::named(ThemeName::Light);
    assert_reads_on_white(&s, 80, 24);
    let text = with_colours(&s, 80, 24);
    beside_the_others(|| {
        insta::with_settings!({
            description => "80×24, then the colours: . default, r red, g green, m magenta, b blue, K black background, Y yellow",
            omit_expression => true,
            filters => vec![(r"\b\d{2}:\d{2}:\d{2}\b", "hh:mm:ss")],
        }, {
            insta::assert_snapshot!("light_demo_80x24", text);
        })
    });
}

/// Every state with a colour of its own, in the light theme: paused (the
/// banner), a feed in backoff with an error, the strike-off kinds, prices up
/// and down, the help's key names.
#[test]
fn light_theme_every_role_reads_on_white() {
    let mut m = demo_model();
    apply_to(&mut m, CARBON, secs(30), FeedMsgKind::Error("closed by the server: 1011 kafka unavailable".into()));
    apply_to(&mut m, CARBON, secs(30), FeedMsgKind::State(ConnState::Backoff { retry_at: secs(35) }));
    let mut s = Screen::new(m);
    s.theme = Theme::named(ThemeName::Light);
    s.press(KeyCode::Char('p'));
    assert_reads_on_white(&s, 120, 40);
    // The same screen in dark does have yellow text: the check can fail.
    let dark = Screen { theme: Theme::named(ThemeName::Dark), ..Screen::new(s.live.clone()) };
    let yellow = render(&dark.live, &dark.view, &dark.theme, 120, 40)
        .content()
        .iter()
        .any(|c| c.fg == Color::Yellow && c.bg == Color::Reset);
    assert!(yellow, "the dark theme's warnings and entered rows are yellow");
    s.press(KeyCode::Char('?'));
    assert_reads_on_white(&s, 120, 40);
}

/// `--low-bandwidth`: the price that just ticked (BRENT_CRUDE, half a second
/// ago) is drawn as it will be once the moment has passed, so nothing
/// changes on the screen when the highlight would have gone.
#[test]
fn low_bandwidth_prices_do_not_flash() {
    let price_style = |s: &Screen| {
        let buf = render(&s.live, &s.view, &s.theme, 120, 40);
        let (x, y) = find(&buf, "75.90").unwrap();
        let cell = &buf[(x, y)];
        (cell.fg, cell.bg, cell.modifier)
    };
    let mut s = Screen::new(demo_model());
    let flashing = price_style(&s);
    s.theme = s.theme.without_tick_highlight();
    let calm = price_style(&s);
    s.live.tick(secs(32));
    let later = price_style(&s);
    assert_ne!(flashing, later, "the demo's BRENT_CRUDE has just ticked");
    assert_eq!(calm, later);
}
