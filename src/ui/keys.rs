//! Keys as data: one table maps key presses to [`Action`]s, and the same table
//! produces the footer hints and the `?` overlay, so they can never disagree
//! with what a key actually does.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    TogglePause,
    Reconnect,
    ReconnectAll,
    StartFilter,
    ClearFilter,
    FocusNext,
    FocusPrev,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    CycleSort,
    ReverseSort,
    ToggleUtc,
    ToggleHelp,
    /// Details of the focused pane's selection (a feed, a company, a ticker).
    Details,
    /// The focused pane alone on the screen, and back.
    ToggleZoom,
    /// What is in force: config file, database, feeds, version.
    ShowInfo,
    /// Acknowledge every alert so far: the header's marker goes.
    AcknowledgeAlerts,
    /// The alerts list overlay.
    ToggleAlerts,
}

impl Action {
    /// The word shown in the footer, for the actions worth a footer slot.
    pub fn hint(self) -> Option<&'static str> {
        match self {
            Action::Quit => Some("quit"),
            Action::TogglePause => Some("pause"),
            Action::Reconnect => Some("reconnect"),
            // Beside `r reconnect`; short, so `Enter details` fits at 80 columns.
            Action::ReconnectAll => Some("all"),
            Action::StartFilter => Some("filter"),
            Action::FocusNext => Some("focus"),
            Action::ToggleUtc => Some("UTC"),
            Action::ToggleHelp => Some("help"),
            Action::Details => Some("details"),
            Action::ToggleZoom => Some("zoom"),
            Action::ShowInfo => Some("info"),
            Action::ToggleAlerts => Some("alerts"),
            _ => None,
        }
    }
}

/// One key binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub code: KeyCode,
    /// Only CONTROL and ALT are compared: terminals disagree on whether an
    /// upper-case letter or BackTab also carries SHIFT.
    pub modifiers: KeyModifiers,
    pub action: Action,
    /// How the key is written on screen.
    pub key: &'static str,
    pub description: &'static str,
}

const fn bind(
    code: KeyCode,
    modifiers: KeyModifiers,
    action: Action,
    key: &'static str,
    description: &'static str,
) -> Binding {
    Binding { code, modifiers, action, key, description }
}

const NONE: KeyModifiers = KeyModifiers::NONE;

/// Every binding, in the order the help overlay lists them.
pub const BINDINGS: &[Binding] = &[
    bind(KeyCode::Char('q'), NONE, Action::Quit, "q", "quit"),
    bind(KeyCode::Char('c'), KeyModifiers::CONTROL, Action::Quit, "Ctrl-C", "quit"),
    bind(KeyCode::Char('p'), NONE, Action::TogglePause, "p", "pause / resume the view (ingest goes on)"),
    bind(KeyCode::Char('r'), NONE, Action::Reconnect, "r", "reconnect the selected feed now"),
    bind(KeyCode::Char('R'), NONE, Action::ReconnectAll, "R", "reconnect all feeds now"),
    bind(KeyCode::Char('/'), NONE, Action::StartFilter, "/", "filter: regex, any case; !re = not"),
    bind(KeyCode::Esc, NONE, Action::ClearFilter, "Esc", "clear the filter / close help, details"),
    bind(KeyCode::Tab, NONE, Action::FocusNext, "Tab", "focus the next pane"),
    bind(KeyCode::BackTab, NONE, Action::FocusPrev, "BackTab", "focus the previous pane"),
    bind(KeyCode::Up, NONE, Action::Up, "↑", "select feed above / scroll up"),
    bind(KeyCode::Char('k'), NONE, Action::Up, "k", "select feed above / scroll up"),
    bind(KeyCode::Down, NONE, Action::Down, "↓", "select feed below / scroll down"),
    bind(KeyCode::Char('j'), NONE, Action::Down, "j", "select feed below / scroll down"),
    bind(KeyCode::PageUp, NONE, Action::PageUp, "PgUp", "scroll a page up"),
    bind(KeyCode::PageDown, NONE, Action::PageDown, "PgDn", "scroll a page down"),
    bind(KeyCode::Char('g'), NONE, Action::Top, "g", "go to the top (newest)"),
    bind(KeyCode::Home, NONE, Action::Top, "Home", "go to the top (newest)"),
    bind(KeyCode::Char('G'), NONE, Action::Bottom, "G", "go to the bottom (oldest)"),
    bind(KeyCode::End, NONE, Action::Bottom, "End", "go to the bottom (oldest)"),
    bind(KeyCode::Char('s'), NONE, Action::CycleSort, "s", "sort the focused list (orders below)"),
    bind(KeyCode::Char('S'), NONE, Action::ReverseSort, "S", "reverse the focused list's order"),
    bind(KeyCode::Char('?'), NONE, Action::ToggleHelp, "?", "show / hide this help"),
    // After help: the footer drops hints from the end at 80 columns, and
    // `?` is the way to every other key.
    bind(KeyCode::Enter, NONE, Action::Details, "Enter", "details of the selected row"),
    bind(KeyCode::Char('t'), NONE, Action::ToggleUtc, "t", "times in UTC / local time"),
    bind(KeyCode::Char('z'), NONE, Action::ToggleZoom, "z", "zoom the focused pane / back"),
    bind(KeyCode::Char('i'), NONE, Action::ShowInfo, "i", "what is in force: config, db, feeds"),
    // The header's alerts marker names both keys whenever they matter.
    bind(KeyCode::Char('A'), NONE, Action::ToggleAlerts, "A", "list the alerts, newest first"),
    bind(KeyCode::Char('a'), NONE, Action::AcknowledgeAlerts, "a", "acknowledge alerts (header marker)"),
];

fn significant(m: KeyModifiers) -> KeyModifiers {
    m & (KeyModifiers::CONTROL | KeyModifiers::ALT)
}

/// The binding a key press matches, if any. Key releases (sent by some
/// terminals and Windows) never match, so one press acts once.
pub fn binding_for(key: KeyEvent) -> Option<&'static Binding> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    BINDINGS.iter().find(|b| b.code == key.code && significant(b.modifiers) == significant(key.modifiers))
}

pub fn action_for(key: KeyEvent) -> Option<Action> {
    binding_for(key).map(|b| b.action)
}

/// One row per action, in table order: every key for it joined with ` / `,
/// and its description. Used by the help overlay.
pub fn help_rows() -> Vec<(String, &'static str)> {
    let mut rows: Vec<(Action, String, &'static str)> = Vec::new();
    for b in BINDINGS {
        match rows.iter_mut().find(|r| r.0 == b.action) {
            Some(row) => {
                row.1.push_str(" / ");
                row.1.push_str(b.key);
            }
            None => rows.push((b.action, b.key.to_string(), b.description)),
        }
    }
    rows.into_iter().map(|(_, keys, d)| (keys, d)).collect()
}

/// `(key, word)` for the footer: the first key of each action that has a hint.
pub fn footer_hints() -> Vec<(&'static str, &'static str)> {
    let mut seen = Vec::new();
    let mut hints = Vec::new();
    for b in BINDINGS {
        if let Some(word) = b.action.hint() {
            if !seen.contains(&b.action) {
                seen.push(b.action);
                hints.push((b.key, word));
            }
        }
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    #[test]
    fn table_lookups() {
        let cases = [
            (key(KeyCode::Char('q'), NONE), Some(Action::Quit)),
            (key(KeyCode::Char('c'), KeyModifiers::CONTROL), Some(Action::Quit)),
            (key(KeyCode::Char('c'), NONE), None),
            (key(KeyCode::Char('R'), KeyModifiers::SHIFT), Some(Action::ReconnectAll)),
            (key(KeyCode::Char('r'), NONE), Some(Action::Reconnect)),
            (key(KeyCode::BackTab, KeyModifiers::SHIFT), Some(Action::FocusPrev)),
            (key(KeyCode::Char('q'), KeyModifiers::CONTROL), None),
            (key(KeyCode::Char('j'), KeyModifiers::ALT), None),
            (key(KeyCode::End, NONE), Some(Action::Bottom)),
            (key(KeyCode::F(5), NONE), None),
            (key(KeyCode::Char('s'), NONE), Some(Action::CycleSort)),
            (key(KeyCode::Char('s'), KeyModifiers::CONTROL), None),
            (key(KeyCode::Char('S'), KeyModifiers::SHIFT), Some(Action::ReverseSort)),
            (key(KeyCode::Char('t'), NONE), Some(Action::ToggleUtc)),
            (key(KeyCode::Enter, NONE), Some(Action::Details)),
            (key(KeyCode::Char('z'), NONE), Some(Action::ToggleZoom)),
            (key(KeyCode::Char('i'), NONE), Some(Action::ShowInfo)),
            (key(KeyCode::Char('i'), KeyModifiers::CONTROL), None),
            (key(KeyCode::Char('a'), NONE), Some(Action::AcknowledgeAlerts)),
            (key(KeyCode::Char('A'), KeyModifiers::SHIFT), Some(Action::ToggleAlerts)),
        ];
        for (k, want) in cases {
            assert_eq!(action_for(k), want, "{k:?}");
        }
    }

    #[test]
    fn releases_do_not_act() {
        let mut k = key(KeyCode::Char('q'), NONE);
        k.kind = KeyEventKind::Release;
        assert_eq!(action_for(k), None);
        k.kind = KeyEventKind::Repeat;
        assert_eq!(action_for(k), Some(Action::Quit));
    }

    #[test]
    fn every_binding_is_reachable_and_consistent() {
        for b in BINDINGS {
            // No earlier entry shadows this one.
            let found = binding_for(key(b.code, b.modifiers)).unwrap();
            assert_eq!(found, b, "{} is shadowed", b.key);
            // The overlay shows one description per action, so they must agree.
            let first = BINDINGS.iter().find(|o| o.action == b.action).unwrap();
            assert_eq!(first.description, b.description, "{}", b.key);
        }
    }

    #[test]
    fn help_and_footer_come_from_the_table() {
        let rows = help_rows();
        assert_eq!(rows.len(), 23, "one row per action");

        assert!(rows.contains(&("S".to_string(), "reverse the focused list's order")));
        assert_eq!(rows[0], ("q / Ctrl-C".to_string(), "quit"));
        assert!(rows.iter().any(|r| r.0 == "↑ / k"));
        let hints = footer_hints();
        assert_eq!(hints[0], ("q", "quit"));
        assert!(hints.contains(&("R", "all")));
        assert!(hints.contains(&("?", "help")));
        // `?` comes before the hints an 80-column footer cannot hold.
        let at = |key: &str| hints.iter().position(|h| h.0 == key).unwrap();
        assert!(at("?") < at("Enter") && at("Enter") < at("z") && at("z") < at("i"));
        assert_eq!(hints.last(), Some(&("A", "alerts")));
    }
}
