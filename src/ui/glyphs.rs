//! Every character the screen draws for its own decoration (not feed text),
//! in a Unicode set and an ASCII set, and the choice between them.
//!
//! A terminal whose locale is not UTF-8 (`LANG=C`, a serial console, an old
//! SSH client) shows box drawing and block characters as mojibake, so under
//! such a locale the screen falls back to ASCII; `--ascii` forces it.
//!
//! Each ASCII glyph is one column wide, like the Unicode one it stands for,
//! so a layout is the same in both sets. The panes use the named glyphs from
//! [`Theme::glyphs`](super::Theme); [`asciify`] then maps whatever Unicode
//! decoration is still in a frame (ratatui's own widgets, shared helpers such
//! as the `…` of a truncated cell, the `→` of a status change) through the
//! same table, so no decoration escapes.

use ratatui::buffer::Buffer;
use ratatui::symbols::{bar, border};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Glyphs {
    /// True for the ASCII set.
    pub ascii: bool,
    /// Pane frames and the help box.
    pub border: border::Set<'static>,
    /// ratatui's `Sparkline` (the rate pane).
    pub bars: &'static bar::Set<'static>,
    /// A text sparkline, lowest to highest (the tickers' trend column).
    pub spark: [char; 8],
    /// Price up / down.
    pub up: &'static str,
    pub down: &'static str,
    /// Between parts of a title or a header: ` · `.
    pub dot: &'static str,
    /// A dash between a name and what follows: `PAUSED — 3 new`.
    pub dash: &'static str,
    /// A range of rows: `1–10 of 11`.
    pub range: &'static str,
    /// From one status to another.
    pub arrow: &'static str,
    /// The end of cut text.
    pub ellipsis: &'static str,
    /// Before the title of the focused pane.
    pub focus: &'static str,
    /// Width × height.
    pub times: &'static str,
    /// More to scroll above / below.
    pub more_up: &'static str,
    pub more_down: &'static str,
}

const ASCII_BORDER: border::Set<'static> = border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};

const ASCII_BARS: bar::Set<'static> = bar::Set {
    full: "#",
    seven_eighths: "*",
    three_quarters: "+",
    five_eighths: "=",
    half: "~",
    three_eighths: "-",
    one_quarter: ".",
    one_eighth: "_",
    empty: " ",
};

impl Glyphs {
    pub const UNICODE: Self = Self {
        ascii: false,
        border: border::PLAIN,
        bars: &bar::NINE_LEVELS,
        spark: ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'],
        up: "▲",
        down: "▼",
        dot: "·",
        dash: "—",
        range: "–",
        arrow: "→",
        ellipsis: "…",
        focus: "▶",
        times: "×",
        more_up: "↑",
        more_down: "↓",
    };

    pub const ASCII: Self = Self {
        ascii: true,
        border: ASCII_BORDER,
        bars: &ASCII_BARS,
        spark: ['_', '.', '-', '~', '=', '+', '*', '#'],
        up: "^",
        down: "v",
        dot: ".",
        dash: "-",
        range: "-",
        arrow: ">",
        ellipsis: "~",
        focus: ">",
        times: "x",
        more_up: "^",
        more_down: "v",
    };

    pub fn new(ascii: bool) -> Self {
        if ascii {
            Self::ASCII
        } else {
            Self::UNICODE
        }
    }
}

impl Default for Glyphs {
    fn default() -> Self {
        Self::UNICODE
    }
}

/// Pairs of (Unicode, ASCII) glyphs, from the two sets above plus the box
/// corners and junctions ratatui's widgets may draw.
fn pairs() -> impl Iterator<Item = (&'static str, &'static str)> {
    let (u, a) = (Glyphs::UNICODE, Glyphs::ASCII);
    let named = [
        (u.up, a.up),
        (u.down, a.down),
        (u.dot, a.dot),
        (u.dash, a.dash),
        (u.range, a.range),
        (u.arrow, a.arrow),
        (u.ellipsis, a.ellipsis),
        (u.focus, a.focus),
        (u.times, a.times),
        (u.more_up, a.more_up),
        (u.more_down, a.more_down),
    ];
    let border = |s: border::Set<'static>| {
        [
            s.top_left,
            s.top_right,
            s.bottom_left,
            s.bottom_right,
            s.vertical_left,
            s.vertical_right,
            s.horizontal_top,
            s.horizontal_bottom,
        ]
    };
    let bars = |s: &'static bar::Set<'static>| {
        [
            s.full,
            s.seven_eighths,
            s.three_quarters,
            s.five_eighths,
            s.half,
            s.three_eighths,
            s.one_quarter,
            s.one_eighth,
        ]
    };
    let rounded_corners = ["╭", "╮", "╰", "╯"].map(|c| (c, "+"));
    let junctions = ["┬", "┴", "├", "┤", "┼"].map(|c| (c, "+"));
    // ratatui's chart marker in the ASCII set (`Marker::Dot`).
    let points = [("•", "*")];
    named
        .into_iter()
        .chain(border(u.border).into_iter().zip(border(a.border)))
        .chain(bars(u.bars).into_iter().zip(bars(a.bars)))
        .chain(rounded_corners)
        .chain(junctions)
        .chain(points)
}

/// The ASCII stand-in for one of our Unicode glyphs; `None` for anything
/// else.
pub fn to_ascii(symbol: &str) -> Option<&'static str> {
    pairs().find(|(u, _)| *u == symbol).map(|(_, a)| a)
}

/// Replaces every Unicode decoration glyph in `buf` by its ASCII stand-in,
/// and any other non-ASCII character (a `Ż` in a company name) by `?`: a
/// terminal without UTF-8 would show its bytes as two or three wrong
/// characters and shift the rest of the row. The last step of drawing a
/// frame in the ASCII set.
pub fn asciify(buf: &mut Buffer) {
    let mut i = 0;
    while i < buf.content.len() {
        let symbol = buf.content[i].symbol();
        if !symbol.is_ascii() {
            let stand_in = to_ascii(symbol).unwrap_or("?");
            buf.content[i].set_symbol(stand_in);
            // A wide character's second column holds no symbol of its own:
            // give it a blank so the row keeps its width.
            if let Some(next) = buf.content.get_mut(i + 1).filter(|c| c.symbol().is_empty()) {
                next.set_symbol(" ");
            }
        }
        i += 1;
    }
}

/// Whether the locale's character set is UTF-8, read the way the C library
/// does: the first of `LC_ALL`, `LC_CTYPE` and `LANG` that is set and not
/// empty decides; with none set the locale is `C`, which is ASCII.
pub fn locale_is_utf8(env: &dyn Fn(&str) -> Option<String>) -> bool {
    let Some(locale) = ["LC_ALL", "LC_CTYPE", "LANG"].into_iter().find_map(|v| env(v).filter(|s| !s.is_empty())) else {
        return false;
    };
    // language_TERRITORY.codeset@modifier: only the codeset matters.
    let codeset = locale.split_once('.').map_or("", |(_, rest)| rest);
    let codeset = codeset.split('@').next().unwrap_or("");
    let normalised: String = codeset.chars().filter(|c| *c != '-' && *c != '_').collect();
    normalised.eq_ignore_ascii_case("utf8")
}

/// Whether to draw in ASCII: when asked to, or when the locale is not UTF-8.
pub fn use_ascii(forced: bool, env: &dyn Fn(&str) -> Option<String>) -> bool {
    forced || !locale_is_utf8(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::layout::Rect;
    use ratatui::text::Span;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn locale_detection_follows_lc_all_then_lc_ctype_then_lang() {
        let utf8 = |vars: &[(&str, &str)]| locale_is_utf8(&env(vars));
        assert!(!utf8(&[]), "nothing set is the C locale");
        assert!(!utf8(&[("LANG", "C")]));
        assert!(!utf8(&[("LANG", "POSIX")]));
        assert!(!utf8(&[("LANG", "en_US.ISO-8859-1")]));
        assert!(!utf8(&[("LANG", "en_US")]), "no codeset");
        assert!(utf8(&[("LANG", "en_US.UTF-8")]));
        assert!(utf8(&[("LANG", "C.UTF-8")]));
        assert!(utf8(&[("LANG", "de_DE.utf8")]), "case and the hyphen do not matter");
        assert!(utf8(&[("LANG", "sr_RS.UTF-8@latin")]), "a modifier follows the codeset");
        // The first one set decides, even when it says less.
        assert!(!utf8(&[("LC_ALL", "C"), ("LC_CTYPE", "en_US.UTF-8"), ("LANG", "en_US.UTF-8")]));
        assert!(utf8(&[("LC_ALL", "en_US.UTF-8"), ("LANG", "C")]));
        assert!(!utf8(&[("LC_CTYPE", "C"), ("LANG", "en_US.UTF-8")]));
        assert!(utf8(&[("LC_CTYPE", "C.UTF-8"), ("LANG", "C")]));
        // An empty variable counts as unset.
        assert!(utf8(&[("LC_ALL", ""), ("LC_CTYPE", ""), ("LANG", "C.UTF-8")]));
        assert!(!utf8(&[("LC_ALL", ""), ("LC_CTYPE", ""), ("LANG", "C")]));
    }

    #[test]
    fn the_glyph_set_follows_the_locale_and_the_flag() {
        let c = [("LANG", "C")];
        let utf = [("LANG", "en_GB.UTF-8")];
        assert!(use_ascii(false, &env(&c)));
        assert!(!use_ascii(false, &env(&utf)));
        assert!(use_ascii(true, &env(&utf)), "--ascii forces it");
        assert_eq!(Glyphs::new(true), Glyphs::ASCII);
        assert_eq!(Glyphs::new(false), Glyphs::UNICODE);
    }

    #[test]
    fn the_ascii_set_is_ascii_and_as_wide_as_the_unicode_one() {
        let all: Vec<_> = pairs().collect();
        assert!(all.len() > 30, "{all:?}");
        for (u, a) in all {
            assert!(a.is_ascii(), "{u} -> {a}");
            assert_eq!(Span::raw(u).width(), Span::raw(a).width(), "{u} -> {a}");
        }
        for (u, a) in Glyphs::UNICODE.spark.iter().zip(Glyphs::ASCII.spark) {
            assert!(a.is_ascii() && !u.is_ascii(), "{u} -> {a}");
        }
    }

    #[test]
    fn asciify_replaces_decoration_and_marks_other_text() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 16, 1));
        buf.set_string(0, 0, "▶ a·b→c…ŻÉ株x", ratatui::style::Style::new());
        asciify(&mut buf);
        let row: String = buf.content.iter().map(|c| c.symbol()).collect();
        // Our glyphs get their stand-ins; a character the terminal cannot
        // draw is `?`, a wide one keeps its two columns, so `x` stays put.
        assert_eq!(row, "> a.b>c~??? x   ");
        assert!(row.is_ascii());
    }
}
