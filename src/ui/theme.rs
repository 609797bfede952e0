//! Styles by role. The colour theme uses only the 16 ANSI colours, which the
//! user's terminal palette maps to something readable on dark and light
//! backgrounds alike (and over SSH); the plain theme uses no colour at all,
//! only modifiers, for `NO_COLOR` and `--no-color`.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// Healthy: a live connection.
    pub ok: Style,
    /// Attention: connecting, backing off, paused.
    pub warn: Style,
    /// Broken: auth failed, store errors.
    pub error: Style,
    /// Secondary text: headers, hints, placeholders.
    pub dim: Style,
    /// Pane titles and the program name.
    pub title: Style,
    /// The title of the pane that has the keyboard.
    pub focus: Style,
    /// The selected row in a focused pane.
    pub selected: Style,
    /// The selected row of a pane without the keyboard: still marked, since
    /// `r` acts on it from anywhere.
    pub selected_idle: Style,
    /// The demo banner: impossible to miss.
    pub banner: Style,
    /// Key names in the footer and help overlay.
    pub key: Style,
    pub entered: Style,
    pub withdrawn: Style,
    pub struck_off: Style,
    /// Price up / down, for the ticker panes.
    pub up: Style,
    pub down: Style,
    /// A price that changed within the last second.
    pub tick: Style,
}

impl Theme {
    pub fn new(color: bool) -> Self {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let dim = Style::new().add_modifier(Modifier::DIM);
        let reversed = Style::new().add_modifier(Modifier::REVERSED);
        if !color {
            return Self {
                ok: Style::new(),
                warn: bold,
                error: bold.add_modifier(Modifier::REVERSED),
                dim,
                title: bold,
                focus: bold.add_modifier(Modifier::REVERSED),
                selected: reversed,
                selected_idle: Style::new().add_modifier(Modifier::UNDERLINED),
                banner: bold.add_modifier(Modifier::REVERSED),
                key: bold,
                entered: bold,
                withdrawn: Style::new(),
                struck_off: bold,
                up: Style::new(),
                down: Style::new(),
                tick: bold.add_modifier(Modifier::REVERSED),
            };
        }
        Self {
            ok: Style::new().fg(Color::Green),
            warn: Style::new().fg(Color::Yellow),
            error: bold.fg(Color::Red),
            // DIM rather than DarkGray: bright black vanishes on some palettes.
            dim,
            title: bold,
            focus: bold.fg(Color::Cyan),
            selected: reversed,
            selected_idle: Style::new().add_modifier(Modifier::UNDERLINED),
            banner: bold.fg(Color::Black).bg(Color::Yellow),
            key: bold.fg(Color::Cyan),
            entered: Style::new().fg(Color::Yellow),
            withdrawn: Style::new().fg(Color::Green),
            struck_off: Style::new().fg(Color::Red),
            up: Style::new().fg(Color::Green),
            down: Style::new().fg(Color::Red),
            tick: bold.add_modifier(Modifier::REVERSED),
        }
    }
}

/// Whether to use colour: not when `--no-color` is given or `NO_COLOR` is set
/// to anything non-empty (<https://no-color.org>).
pub fn color_enabled(no_color_flag: bool) -> bool {
    let env = std::env::var("NO_COLOR").ok();
    color_enabled_with(no_color_flag, env.as_deref())
}

/// [`color_enabled`] with the environment passed in, so tests never touch it.
pub fn color_enabled_with(no_color_flag: bool, no_color_env: Option<&str>) -> bool {
    !no_color_flag && no_color_env.is_none_or(str::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_env_and_flag() {
        assert!(color_enabled_with(false, None));
        assert!(color_enabled_with(false, Some("")), "an empty NO_COLOR is ignored");
        assert!(!color_enabled_with(false, Some("1")));
        assert!(!color_enabled_with(true, None));
        assert!(!color_enabled_with(true, Some("")));
    }

    fn styles(t: &Theme) -> [Style; 16] {
        [
            t.ok,
            t.warn,
            t.error,
            t.dim,
            t.title,
            t.focus,
            t.selected,
            t.selected_idle,
            t.banner,
            t.key,
            t.entered,
            t.withdrawn,
            t.struck_off,
            t.up,
            t.down,
            t.tick,
        ]
    }

    #[test]
    fn plain_theme_has_no_colour() {
        for s in styles(&Theme::new(false)) {
            assert_eq!((s.fg, s.bg), (None, None), "{s:?}");
        }
    }

    #[test]
    fn colour_theme_uses_only_the_16_ansi_colours() {
        for s in styles(&Theme::new(true)) {
            for c in [s.fg, s.bg].into_iter().flatten() {
                assert!(!matches!(c, Color::Rgb(..) | Color::Indexed(_)), "{c:?}");
            }
        }
        assert_eq!(Theme::new(true).struck_off.fg, Some(Color::Red));
    }
}
