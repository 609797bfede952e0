//! Styles by role, and the glyphs to draw with. The colour themes use only
//! the 16 ANSI colours (see [`super::sgr16`] for terminals with no more):
//! `dark` for a dark background, `light` for a white one (no yellow and no
//! bright colour as text: they fade into white); `mono` uses no colour at
//! all, only modifiers, for `NO_COLOR` and `--no-color`.

use ratatui::style::{Color, Modifier, Style};

use super::glyphs::Glyphs;

/// `--theme` and `[ui] theme`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThemeName {
    /// Colours for a dark background.
    #[default]
    Dark,
    /// Colours for a light (white) background.
    Light,
    /// No colour: bold, dim, reverse and underline only.
    Mono,
}

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
    /// Whether such a price is highlighted at all (colour and `tick`): not
    /// with `--low-bandwidth`, where the highlight coming and going costs
    /// two redraws of the row per tick.
    pub flash_ticks: bool,
    /// The characters decoration is drawn with (Unicode or ASCII).
    pub glyphs: Glyphs,
}

impl Theme {
    /// `dark` with colour, `mono` without, in Unicode.
    pub fn new(color: bool) -> Self {
        Self::named(if color { ThemeName::Dark } else { ThemeName::Mono })
    }

    pub fn named(name: ThemeName) -> Self {
        match name {
            ThemeName::Dark => Self::dark(),
            ThemeName::Light => Self::light(),
            ThemeName::Mono => Self::mono(),
        }
    }

    pub fn with_glyphs(self, glyphs: Glyphs) -> Self {
        Self { glyphs, ..self }
    }

    /// No highlight on a price that just changed (`--low-bandwidth`).
    pub fn without_tick_highlight(self) -> Self {
        Self { flash_ticks: false, ..self }
    }

    fn mono() -> Self {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let dim = Style::new().add_modifier(Modifier::DIM);
        let reversed = Style::new().add_modifier(Modifier::REVERSED);
        Self {
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
            flash_ticks: true,
            glyphs: Glyphs::UNICODE,
        }
    }

    fn dark() -> Self {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let dim = Style::new().add_modifier(Modifier::DIM);
        let reversed = Style::new().add_modifier(Modifier::REVERSED);
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
            flash_ticks: true,
            glyphs: Glyphs::UNICODE,
        }
    }

    /// `dark` with the colours that fade on white replaced: yellow text by
    /// magenta, cyan by blue. Only the normal-intensity colours, which
    /// palettes keep dark enough for a white background.
    fn light() -> Self {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        Self {
            warn: Style::new().fg(Color::Magenta),
            focus: bold.fg(Color::Blue),
            key: bold.fg(Color::Blue),
            entered: Style::new().fg(Color::Magenta),
            // Black on a yellow background reads on any palette; it is the
            // text colour that must not be yellow.
            banner: bold.fg(Color::Black).bg(Color::Yellow),
            ..Self::dark()
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

    #[test]
    fn named_themes() {
        assert_eq!(Theme::named(ThemeName::Dark), Theme::new(true));
        assert_eq!(Theme::named(ThemeName::Mono), Theme::new(false));
        assert_ne!(Theme::named(ThemeName::Light), Theme::new(true));
        let ascii = Theme::named(ThemeName::Light).with_glyphs(Glyphs::ASCII);
        assert_eq!(ascii.glyphs, Glyphs::ASCII);
        assert!(Theme::new(true).flash_ticks && !Theme::new(true).without_tick_highlight().flash_ticks);
    }

    /// Every role of the light theme reads on white: no text in yellow, in
    /// white or grey, in cyan, or in any bright colour (palettes make those
    /// pale), and every colour still one of the 16.
    #[test]
    fn light_theme_has_no_text_colour_that_fades_on_white() {
        let light = Theme::named(ThemeName::Light);
        for s in styles(&light) {
            if let Some(fg) = s.fg {
                let fades = matches!(
                    fg,
                    Color::Yellow
                        | Color::White
                        | Color::Gray
                        | Color::Cyan
                        | Color::LightYellow
                        | Color::LightCyan
                        | Color::LightGreen
                        | Color::LightBlue
                        | Color::LightMagenta
                        | Color::LightRed
                        | Color::DarkGray
                        | Color::Rgb(..)
                        | Color::Indexed(_)
                );
                // Text on a background of its own does not sit on white.
                assert!(!fades || s.bg.is_some(), "{s:?}");
            }
        }
        // Still colour, where dark has it.
        assert_eq!(light.error.fg, Some(Color::Red));
        assert_eq!(light.warn.fg, Some(Color::Magenta));
    }
}
