//! Feed text is untrusted: the one place that makes it safe for where it goes.
//!
//! Anything a server sends (company names, symbols, market status, error
//! bodies, close reasons, SSE ids, notices) can carry bytes that a terminal or
//! a spreadsheet obeys rather than shows: `ESC ] 0 ; … BEL` retitles the
//! terminal, `ESC ] 52 ; c ; …` writes the clipboard, `ESC [ 2 J` clears the
//! screen, the C1 controls do the same in one byte on some terminals, CR and
//! BS overwrite what was printed, and the bidi overrides make text read in a
//! different order than it is stored. A spreadsheet evaluates a cell that
//! starts with `=`.
//!
//! - [`for_terminal`]: every string of feed text on its way to a terminal (the
//!   TUI panes, the log pane, the `strike-offs` table and CSV, stderr). Each
//!   [unsafe](is_unsafe) character becomes one [`MARKER`], so the text stays
//!   the same length in characters and the user sees that something was there.
//! - [`json_line`] / [`write_json`]: JSON output. serde_json escapes C0
//!   controls but leaves C1, DEL and the bidi overrides raw; these escape them
//!   as `\uXXXX` too. Lossless: a JSON reader gets the original string back.
//! - [`csv_cell`]: neutralises a cell a spreadsheet would evaluate (OWASP's
//!   CSV injection advice: prefix `'`).

use std::borrow::Cow;
use std::io;

use serde::Serialize;

/// What an unsafe character is shown as: U+FFFD REPLACEMENT CHARACTER, `�`.
/// One column wide in every terminal font, and already what users know as
/// "something here could not be shown".
pub const MARKER: char = '\u{FFFD}';

/// C0 controls (including TAB, CR, LF), DEL, C1 controls, and the bidi
/// embedding/override/isolate characters (U+202A–U+202E, U+2066–U+2069).
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every [unsafe](is_unsafe) character replaced by [`MARKER`];
/// borrowed (no copy) when there is none, which is nearly always.
pub fn for_terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().map(|c| if is_unsafe(c) { MARKER } else { c }).collect())
}

/// A spreadsheet evaluates a cell starting with one of these as a formula.
fn starts_formula(s: &str) -> bool {
    s.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// A CSV cell that a spreadsheet shows instead of evaluating: a leading `'`
/// (which spreadsheets hide) before a cell that would start a formula.
pub fn csv_cell(s: &str) -> Cow<'_, str> {
    if starts_formula(s) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// serde_json's compact output, with the characters it leaves raw that a
/// terminal or a careless reader would obey escaped as `\uXXXX`.
struct SafeJson;

impl serde_json::ser::Formatter for SafeJson {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        // Fragments hold no character serde_json escapes itself (C0, `"`, `\`).
        let mut rest = fragment;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| is_unsafe(c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            // Every unsafe character is in the Basic Multilingual Plane.
            write!(writer, "\\u{:04x}", c as u32)?;
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

/// Writes `value` as one line of compact JSON (no newline), escaped as above.
pub fn write_json<W: io::Write, T: Serialize + ?Sized>(writer: W, value: &T) -> serde_json::Result<()> {
    value.serialize(&mut serde_json::Serializer::with_formatter(writer, SafeJson))
}

/// `value` as compact JSON (no newline), escaped as above.
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    write_json(&mut out, value)?;
    // The formatter writes only what serde_json would, plus ASCII escapes.
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str =
        "A\x1b]0;pwned\x07B\x1b]52;c;Y3VybA==\x07C\x1b[2JD\u{9b}31m\r\x08\x7f\u{202E}E\u{2066}F\tG\nH";

    #[test]
    fn terminal_text_loses_every_control_and_override_and_shows_a_marker() {
        let out = for_terminal(HOSTILE);
        assert!(!out.chars().any(is_unsafe), "{out:?}");
        assert!(!out.contains('\x1b') && !out.contains('\u{9b}') && !out.contains('\x7f') && !out.contains('\u{202E}'));
        // One marker per character removed, so widths computed on it hold.
        assert_eq!(out.chars().count(), HOSTILE.chars().count());
        assert_eq!(out.chars().filter(|&c| c == MARKER).count(), HOSTILE.chars().filter(|&c| is_unsafe(c)).count());
        assert!(out.starts_with("A\u{FFFD}]0;pwned\u{FFFD}B"), "{out:?}");
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for s in ["ORCHARD LANE LTD", "ŻABKA POLSKA SP. Z O.O.", "株式会社", "→ dissolved", ""] {
            assert!(matches!(for_terminal(s), Cow::Borrowed(b) if b == s), "{s}");
        }
    }

    #[test]
    fn every_range_is_covered() {
        let unsafe_ranges = [0x00..=0x1f, 0x7f..=0x9f, 0x202a..=0x202e, 0x2066..=0x2069];
        for range in unsafe_ranges {
            for u in range {
                let c = char::from_u32(u).unwrap();
                assert!(is_unsafe(c), "U+{u:04X}");
            }
        }
        for c in [' ', '~', '\u{a0}', '\u{200d}', '\u{2029}', '€'] {
            assert!(!is_unsafe(c), "{c:?}");
        }
    }

    #[test]
    fn json_escapes_c1_del_and_overrides_losslessly() {
        let line = json_line(&serde_json::json!({ "name": HOSTILE })).unwrap();
        assert!(!line.chars().any(is_unsafe), "{line:?}");
        assert!(line.contains("\\u009b") && line.contains("\\u007f") && line.contains("\\u202e"), "{line}");
        assert!(line.contains("\\u001b"), "serde_json's own C0 escapes stay: {line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["name"], HOSTILE, "a JSON reader gets the original back");
    }

    #[test]
    fn json_without_hostile_text_is_what_serde_json_writes() {
        let v = serde_json::json!({ "a": "ŻABKA \"x\" \\ 株式会社", "n": [1, 2.5, null] });
        assert_eq!(json_line(&v).unwrap(), serde_json::to_string(&v).unwrap());
    }

    #[test]
    fn csv_cells_that_start_a_formula_are_neutralised() {
        for s in ["=HYPERLINK(\"http://x\",\"y\")", "+1", "-1+2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(csv_cell(s), format!("'{s}"), "{s:?}");
        }
        for s in ["ORCHARD LANE LTD", "a=b", "", "'quoted"] {
            assert_eq!(csv_cell(s), s);
        }
    }
}
