//! 16-colour output for terminals with no more.
//!
//! The themes use only the 16 ANSI colours, but crossterm writes every
//! colour in the 256-colour form (`ESC[38;5;1m` for red), which a
//! `TERM=vt100` or `linux` console does not understand: it shows the wrong
//! colour or none. Neither ratatui nor crossterm has a setting for the old
//! forms, so [`Sgr16`] sits between the backend and stdout and rewrites the
//! colour parameters of each SGR sequence (`ESC[…m`) into them: `38;5;N`
//! becomes `30+N` (`90+N-8` for the bright eight), `48;5;N` `40+N`
//! (`100+N-8`). Underline colours (`58;…`, `59`), which such terminals do not
//! have, are dropped. Every other byte passes through as it is.

use std::io::{self, Write};

/// Whether the terminal shows more than the 16 colours: `COLORTERM` set (to
/// anything: `truecolor`, `24bit`, …), or a `TERM` that says 256 colours or
/// direct colour. Anything else (`vt100`, `linux`, `xterm`, `screen`, unset)
/// gets the 16-colour forms, which every colour terminal understands.
pub fn has_256_colours(term: Option<&str>, colorterm: Option<&str>) -> bool {
    if colorterm.is_some_and(|c| !c.is_empty()) {
        return true;
    }
    term.is_some_and(|t| ["256color", "direct", "truecolor"].iter().any(|s| t.contains(s)))
}

/// Longest escape sequence held back while waiting for its end: ours are
/// under 30 bytes; anything longer is not ours and goes out as it is.
const MAX_PENDING: usize = 64;

const ESC: u8 = 0x1b;

/// A writer that rewrites 256-colour SGR sequences into 16-colour ones when
/// `enabled`, and passes everything through untouched otherwise. A sequence
/// split across `write` calls is held until its end arrives.
pub struct Sgr16<W: Write> {
    inner: W,
    enabled: bool,
    /// The start of an escape sequence not yet complete (begins with ESC).
    pending: Vec<u8>,
}

impl<W: Write> Sgr16<W> {
    pub fn new(inner: W, enabled: bool) -> Self {
        Self { inner, enabled, pending: Vec::new() }
    }

    /// Feeds one byte, appending what is ready to go out to `out`.
    fn feed(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.pending.is_empty() {
            if b == ESC {
                self.pending.push(b);
            } else {
                out.push(b);
            }
            return;
        }
        self.pending.push(b);
        let complete_sgr = self.pending.len() > 2 && b == b'm';
        let still_params = match self.pending.len() {
            2 => b == b'[',
            _ => b.is_ascii_digit() || b == b';',
        };
        if complete_sgr {
            let params = &self.pending[2..self.pending.len() - 1];
            rewrite(params, out);
            self.pending.clear();
        } else if !still_params || self.pending.len() > MAX_PENDING {
            // Not an SGR sequence (a cursor move, `ESC[?25l`, …): as it is.
            // A new ESC starts a sequence of its own.
            let restart = b == ESC;
            let upto = if restart { self.pending.len() - 1 } else { self.pending.len() };
            out.extend_from_slice(&self.pending[..upto]);
            self.pending.clear();
            if restart {
                self.pending.push(ESC);
            }
        }
    }
}

/// Writes `ESC[<params>m` with the 256-colour parameters rewritten; nothing
/// at all when every parameter was dropped (an empty `ESC[m` would reset
/// every attribute).
fn rewrite(params: &[u8], out: &mut Vec<u8>) {
    let text = std::str::from_utf8(params).unwrap_or_default();
    if text.is_empty() {
        out.extend_from_slice(b"\x1b[m");
        return;
    }
    let parts: Vec<&str> = text.split(';').collect();
    let mut kept: Vec<String> = Vec::with_capacity(parts.len());
    let mut i = 0;
    while i < parts.len() {
        let indexed = parts.get(i + 1) == Some(&"5");
        let index = parts.get(i + 2).and_then(|n| n.parse::<u8>().ok());
        match (parts[i], indexed, index) {
            ("38", true, Some(n)) if n < 16 => kept.push(basic(30, 90, n)),
            ("48", true, Some(n)) if n < 16 => kept.push(basic(40, 100, n)),
            ("58", true, Some(_)) => {}
            ("59", ..) => {
                i += 1;
                continue;
            }
            _ => {
                kept.push(parts[i].to_string());
                i += 1;
                continue;
            }
        }
        i += 3;
    }
    if !kept.is_empty() {
        out.extend_from_slice(format!("\x1b[{}m", kept.join(";")).as_bytes());
    }
}

/// The 16-colour parameter for colour `n` (0–15): `normal + n` for the first
/// eight, `bright + n - 8` for the bright ones.
fn basic(normal: u8, bright: u8, n: u8) -> String {
    if n < 8 {
        (normal + n).to_string()
    } else {
        (bright + n - 8).to_string()
    }
}

impl<W: Write> Write for Sgr16<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.enabled {
            return self.inner.write(buf);
        }
        let mut out = Vec::with_capacity(buf.len() + self.pending.len());
        for &b in buf {
            self.feed(b, &mut out);
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // An incomplete sequence stays held: its end is still to come, and
        // half of one on the terminal would be garbage.
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::style::{Color, Colors, SetBackgroundColor, SetColors, SetForegroundColor, SetUnderlineColor};

    /// `input` written through an enabled [`Sgr16`] in pieces of `chunk` bytes.
    fn through(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut w = Sgr16::new(Vec::new(), true);
        for piece in input.chunks(chunk) {
            w.write_all(piece).unwrap();
        }
        w.flush().unwrap();
        w.inner
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn colour_256_forms_become_16_colour_ones() {
        let cases: &[(&str, &str)] = &[
            ("\x1b[38;5;1m", "\x1b[31m"),
            ("\x1b[38;5;0m", "\x1b[30m"),
            ("\x1b[38;5;7m", "\x1b[37m"),
            ("\x1b[38;5;9m", "\x1b[91m"),
            ("\x1b[38;5;15m", "\x1b[97m"),
            ("\x1b[48;5;3m", "\x1b[43m"),
            ("\x1b[48;5;11m", "\x1b[103m"),
            ("\x1b[38;5;2;48;5;3m", "\x1b[32;43m"),
            ("\x1b[1;38;5;6m", "\x1b[1;36m"),
            ("\x1b[39;49m", "\x1b[39;49m"),
            ("\x1b[0m", "\x1b[0m"),
            ("\x1b[m", "\x1b[m"),
            // Not one of the 16: left alone (the themes never send it).
            ("\x1b[38;5;196m", "\x1b[38;5;196m"),
            ("\x1b[38;2;1;2;3m", "\x1b[38;2;1;2;3m"),
            // Underline colour: dropped, and a sequence left empty is gone.
            ("\x1b[59m", ""),
            ("\x1b[58;5;1m", ""),
            ("\x1b[1;59m", "\x1b[1m"),
            // Not SGR: as it is.
            ("\x1b[12;5H", "\x1b[12;5H"),
            ("\x1b[?25l", "\x1b[?25l"),
            ("\x1b[2J", "\x1b[2J"),
            ("\x1b7", "\x1b7"),
            ("plain → text", "plain → text"),
        ];
        for (input, want) in cases {
            assert_eq!(text(&through(input.as_bytes(), 1000)), *want, "{input:?}");
        }
    }

    /// crossterm writes a command in several `write` calls (`ESC[`, the
    /// colour, `m`): a sequence split anywhere comes out the same.
    #[test]
    fn sequences_split_across_writes() {
        let input = "ab\x1b[38;5;1mred\x1b[1;48;5;12mx\x1b[12;5Hy\x1b\x1b[38;5;2mz\x1b[59m";
        let want = "ab\x1b[31mred\x1b[1;104mx\x1b[12;5Hy\x1b\x1b[32mz";
        for chunk in 1..input.len() {
            assert_eq!(text(&through(input.as_bytes(), chunk)), want, "chunks of {chunk}");
        }
    }

    #[test]
    fn what_crossterm_writes_for_the_theme_colours() {
        let mut w = Sgr16::new(Vec::new(), true);
        crossterm::queue!(
            w,
            SetForegroundColor(Color::DarkRed),
            SetBackgroundColor(Color::DarkYellow),
            SetColors(Colors::new(Color::DarkGreen, Color::Black)),
            SetForegroundColor(Color::Reset),
            SetUnderlineColor(Color::Reset),
        )
        .unwrap();
        let out = text(&w.inner);
        assert_eq!(out, "\x1b[31m\x1b[43m\x1b[32;40m\x1b[39m");
        assert!(!out.contains("5;"), "{out:?}");
    }

    #[test]
    fn disabled_passes_everything_through() {
        let mut w = Sgr16::new(Vec::new(), false);
        w.write_all(b"\x1b[38;5;1mx\x1b[59m").unwrap();
        assert_eq!(w.inner, b"\x1b[38;5;1mx\x1b[59m");
    }

    #[test]
    fn a_long_unterminated_sequence_is_not_held_forever() {
        let input = format!("\x1b[{}", "1;".repeat(100));
        assert_eq!(text(&through(input.as_bytes(), 7)), input);
    }

    #[test]
    fn which_terminals_have_256_colours() {
        assert!(!has_256_colours(Some("vt100"), None));
        assert!(!has_256_colours(Some("linux"), None));
        assert!(!has_256_colours(Some("xterm"), None));
        assert!(!has_256_colours(None, None));
        assert!(!has_256_colours(Some("vt100"), Some("")));
        assert!(has_256_colours(Some("xterm-256color"), None));
        assert!(has_256_colours(Some("tmux-256color"), None));
        assert!(has_256_colours(Some("xterm-direct"), None));
        assert!(has_256_colours(Some("vt100"), Some("truecolor")));
    }
}
