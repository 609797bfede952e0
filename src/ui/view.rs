//! What the user has done to the view (focus, selection, scroll, filter,
//! pause, help) as opposed to what the feeds said (the model). Keys change it
//! through [`ViewState::handle_key`]; anything that must reach a feed comes
//! back as a [`UiCommand`] for the core loop to send.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tui_logger::{TuiWidgetEvent, TuiWidgetState};

use super::filter;
use super::keys::{action_for, Action};
use crate::feeds::FeedId;
use crate::model::Model;

/// Rows a page key moves: the view does not know the pane height, and a
/// fixed step keeps key handling a pure function of the state.
pub const PAGE: usize = 10;
/// A filter longer than any company name is a stuck key, not a search.
const MAX_FILTER: usize = 160;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    Connections,
    #[default]
    StrikeOffs,
    Log,
}

impl Focus {
    fn next(self) -> Self {
        match self {
            Focus::Connections => Focus::StrikeOffs,
            Focus::StrikeOffs => Focus::Log,
            Focus::Log => Focus::Connections,
        }
    }

    fn prev(self) -> Self {
        self.next().next()
    }
}

/// What the core loop must do for the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiCommand {
    Quit,
    Reconnect(FeedId),
    ReconnectAll,
}

#[derive(Default)]
pub struct ViewState {
    pub focus: Focus,
    pub selected_feed: usize,
    /// Index of the first strike-off row shown (in the filtered list).
    pub scroll: usize,
    pub filter: String,
    pub editing_filter: bool,
    /// The paused view: a snapshot rendered while the live model moves on.
    pub frozen: Option<Box<Model>>,
    pub show_help: bool,
    pub log: TuiWidgetState,
}

impl ViewState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The model the screen shows: the snapshot while paused.
    pub fn shown<'a>(&'a self, live: &'a Model) -> &'a Model {
        self.frozen.as_deref().unwrap_or(live)
    }

    pub fn handle_key(&mut self, key: KeyEvent, live: &Model) -> Option<UiCommand> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let action = action_for(key);
        // Ctrl-C quits from anywhere, even while typing a filter.
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            return Some(UiCommand::Quit);
        }
        if self.show_help {
            // Any key closes the overlay; `q` still quits.
            self.show_help = false;
            return (action == Some(Action::Quit)).then_some(UiCommand::Quit);
        }
        if self.editing_filter {
            self.edit_filter(key);
            return None;
        }
        self.handle(action?, live)
    }

    /// Applies one action; the only place where a key changes the view.
    pub fn handle(&mut self, action: Action, live: &Model) -> Option<UiCommand> {
        match action {
            Action::Quit => return Some(UiCommand::Quit),
            Action::TogglePause => {
                self.frozen = match self.frozen {
                    Some(_) => None,
                    None => Some(Box::new(live.clone())),
                };
                self.scroll = self.scroll.min(self.max_scroll(live));
            }
            Action::Reconnect => {
                let feeds = live.feeds.len();
                return (feeds > 0).then(|| UiCommand::Reconnect(self.selected_feed.min(feeds - 1)));
            }
            Action::ReconnectAll => return Some(UiCommand::ReconnectAll),
            Action::StartFilter => {
                self.editing_filter = true;
                self.scroll = 0;
            }
            Action::ClearFilter => {
                self.filter.clear();
                self.scroll = 0;
            }
            Action::FocusNext => self.focus = self.focus.next(),
            Action::FocusPrev => self.focus = self.focus.prev(),
            Action::ToggleHelp => self.show_help = !self.show_help,
            Action::Up => self.move_by(live, -1),
            Action::Down => self.move_by(live, 1),
            Action::PageUp => self.move_by(live, -(PAGE as isize)),
            Action::PageDown => self.move_by(live, PAGE as isize),
            Action::Top => self.move_by(live, isize::MIN),
            Action::Bottom => self.move_by(live, isize::MAX),
        }
        None
    }

    fn edit_filter(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Enter => self.editing_filter = false,
            KeyCode::Esc => {
                self.filter.clear();
                self.editing_filter = false;
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c)
                if !key.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
                    && !c.is_control()
                    && self.filter.chars().count() < MAX_FILTER =>
            {
                self.filter.push(c);
            }
            _ => return,
        }
        // The list under the cursor changed: start from the newest match.
        self.scroll = 0;
    }

    fn max_scroll(&self, live: &Model) -> usize {
        filter::visible(self.shown(live), &self.filter).count().saturating_sub(1)
    }

    /// Moves the selection or scroll of the focused pane by `delta` rows,
    /// staying inside the list.
    fn move_by(&mut self, live: &Model, delta: isize) {
        match self.focus {
            Focus::Connections => {
                let last = self.shown(live).feeds.len().saturating_sub(1);
                self.selected_feed = step(self.selected_feed, delta, last);
            }
            Focus::StrikeOffs => self.scroll = step(self.scroll, delta, self.max_scroll(live)),
            // The log widget keeps its own scroll position and only pages;
            // "bottom" means following new lines again.
            Focus::Log => self.log.transition(match delta {
                isize::MAX => TuiWidgetEvent::EscapeKey,
                d if d < 0 => TuiWidgetEvent::PrevPageKey,
                _ => TuiWidgetEvent::NextPageKey,
            }),
        }
    }
}

fn step(at: usize, delta: isize, last: usize) -> usize {
    at.saturating_add_signed(delta).min(last)
}
