//! What the user has done to the view (focus, selection, scroll, filter,
//! pause, help) as opposed to what the feeds said (the model). Keys change it
//! through [`ViewState::handle_key`]; anything that must reach a feed comes
//! back as a [`UiCommand`] for the core loop to send.

use std::cell::Cell;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::clock::Clock;
use super::filter::{self, Filter, StrikeSort};
use super::keys::{action_for, Action};
pub use super::panes::info::RunInfo;
use super::panes::log_lines::{LogPos, Rows};
pub use super::ticker_list::TickerSort;
use super::ticker_list::{self, has_tickers};
use crate::logging::LogBuffer;
use crate::model::Model;
use feedtop_proto::FeedId;

/// Rows a page key moves before the first frame says how tall the list is.
pub const PAGE: usize = 10;
/// A filter longer than any company name is a stuck key, not a search.
const MAX_FILTER: usize = 160;
/// A ticker not updated for this long is shown as stale.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    Connections,
    #[default]
    StrikeOffs,
    /// Only in the cycle when the model has quote feeds or ticker rows.
    Tickers,
    Log,
}

impl Focus {
    /// The panes Tab visits, in order.
    fn cycle(tickers: bool) -> &'static [Focus] {
        if tickers {
            &[Focus::Connections, Focus::StrikeOffs, Focus::Tickers, Focus::Log]
        } else {
            &[Focus::Connections, Focus::StrikeOffs, Focus::Log]
        }
    }

    /// The pane `by` steps along the cycle (a focus outside it counts as the first).
    fn along(self, tickers: bool, by: isize) -> Self {
        let cycle = Self::cycle(tickers);
        let at = cycle.iter().position(|&f| f == self).unwrap_or(0) as isize;
        cycle[(at + by).rem_euclid(cycle.len() as isize) as usize]
    }
}

/// What the detail overlay shows: what the screen has no room for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// A feed, by id: its whole last error, state history, URL, settings, counters.
    Feed(FeedId),
    /// A company of the strike-off list, by company number.
    Company(String),
    /// A ticker row: the feed it came from and its symbol.
    Ticker { feed: FeedId, symbol: String },
    /// What is in force: config file, database, feeds, version (`i`).
    Info,
}

/// What the store holds for an open company or ticker detail, read when it
/// opens (by the TUI, which has the database; see `crate::detail_store`).
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded {
    Company {
        /// `None`: nothing stored about that number.
        detail: Option<Box<crate::store::details::CompanyDetail>>,
        officers: Vec<crate::store::enrich::Officer>,
        /// When its officers were last fetched in full (enrichment), if ever.
        officers_fetched: Option<String>,
    },
    /// Stored prices, oldest first, thinned to what a chart can show.
    Prices(Vec<(chrono::DateTime<chrono::Utc>, f64)>),
    /// The database could not be read: said on the page, not hidden.
    Failed(String),
    /// There is no database to read: a viewer started without `--db`.
    NoDatabase,
}

/// What the core loop must do for the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiCommand {
    Quit,
    Reconnect(FeedId),
    ReconnectAll,
}

pub struct ViewState {
    pub focus: Focus,
    pub selected_feed: usize,
    /// Index of the first strike-off row shown (in the filtered list).
    pub scroll: usize,
    /// Index of the first ticker row shown (in the filtered, sorted list).
    pub ticker_scroll: usize,
    pub ticker_sort: TickerSort,
    /// The tickers' sort turned upside down (`S` with the tickers focused).
    pub ticker_reversed: bool,
    pub strike_sort: StrikeSort,
    pub strike_reversed: bool,
    /// A ticker older than this is dimmed and marked stale.
    pub stale_after: Duration,
    pub filter: String,
    pub editing_filter: bool,
    /// The paused view: a snapshot rendered while the live model moves on.
    pub frozen: Option<Box<Model>>,
    pub show_help: bool,
    /// First line of the help overlay shown, when it does not fit.
    pub help_scroll: usize,
    /// Lines the help showed in the last frame (0 before it was drawn).
    pub help_rows_shown: Cell<usize>,
    /// The zone wall-clock times are shown in (`t`: local time or UTC).
    pub clock: Clock,
    /// The log pane's lines (the TUI's tracing layer fills them).
    pub log: LogBuffer,
    /// The log pane's top row when scrolled back; `None` follows the newest.
    pub log_top: Option<LogPos>,
    /// Rows each list showed in the last frame (`draw` records them, 0 before
    /// the first). The layout depends on the terminal size, which only the
    /// draw knows; keys arrive between frames, so the last frame's heights are
    /// the ones the user is looking at when pressing PgDn or `G`.
    pub strike_rows_shown: Cell<usize>,
    pub ticker_rows_shown: Cell<usize>,
    /// The detail overlay, when open (Enter, `i`).
    pub detail: Option<Detail>,
    /// First line of the detail shown.
    pub detail_scroll: usize,
    /// Lines the detail had and showed in the last frame (0 before it was
    /// drawn): its length depends on the width it was wrapped to.
    pub detail_lines: Cell<usize>,
    pub detail_rows_shown: Cell<usize>,
    /// The focused pane has the screen (`z`).
    pub zoomed: bool,
    /// What the `i` overlay shows; the TUI sets it (tests may leave it out).
    pub run_info: Option<RunInfo>,
    /// The stored data of the open company or ticker detail, with the
    /// detail it belongs to (a stale pair is never shown for another).
    pub detail_data: Option<(Detail, Loaded)>,
    /// Alerts are acknowledged up to this number (`a`): the header's marker
    /// shows flash alerts numbered after it. Alerts come from the live
    /// model, never the paused snapshot: a pause must not hide one.
    pub alerts_acked: u64,
    /// The alerts list overlay (`A`) is open.
    pub show_alerts: bool,
    /// First row of the alerts list shown.
    pub alerts_scroll: usize,
    /// Rows the alerts list showed in the last frame (0 before it was drawn).
    pub alert_rows_shown: Cell<usize>,
    /// The log pane's rows and width in the last frame (its lines wrap).
    pub log_rows_shown: Cell<usize>,
    pub log_width: Cell<usize>,
}

impl Default for ViewState {
    fn default() -> Self {
        Self {
            focus: Focus::default(),
            selected_feed: 0,
            scroll: 0,
            ticker_scroll: 0,
            ticker_sort: TickerSort::default(),
            ticker_reversed: false,
            strike_sort: StrikeSort::default(),
            strike_reversed: false,
            stale_after: DEFAULT_STALE_AFTER,
            filter: String::new(),
            editing_filter: false,
            frozen: None,
            show_help: false,
            help_scroll: 0,
            help_rows_shown: Cell::new(0),
            clock: Clock::default(),
            log: LogBuffer::new(),
            log_top: None,
            strike_rows_shown: Cell::new(0),
            ticker_rows_shown: Cell::new(0),
            detail: None,
            detail_scroll: 0,
            detail_lines: Cell::new(0),
            detail_rows_shown: Cell::new(0),
            zoomed: false,
            run_info: None,
            detail_data: None,
            alerts_acked: 0,
            show_alerts: false,
            alerts_scroll: 0,
            alert_rows_shown: Cell::new(0),
            log_rows_shown: Cell::new(0),
            log_width: Cell::new(0),
        }
    }
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
            self.help_key(action);
            return None;
        }
        if self.show_alerts {
            self.alerts_key(action, live);
            return None;
        }
        if self.editing_filter {
            self.edit_filter(key);
            return None;
        }
        if self.detail.is_some() {
            return self.detail_key(action?, live);
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
                self.ticker_scroll = self.ticker_scroll.min(self.max_ticker_scroll(live));
            }
            Action::Reconnect => {
                // The selection is a row of the Connections pane; what goes
                // to the pipeline is that feed's id.
                let last = live.feeds.len().checked_sub(1)?;
                return Some(UiCommand::Reconnect(live.feeds[self.selected_feed.min(last)].info.name.clone()));
            }
            Action::ReconnectAll => return Some(UiCommand::ReconnectAll),
            Action::StartFilter => {
                self.editing_filter = true;
                self.scroll_to_top();
            }
            Action::ClearFilter => {
                self.filter.clear();
                self.scroll_to_top();
            }
            Action::FocusNext => self.focus = self.focus.along(has_tickers(self.shown(live)), 1),
            Action::FocusPrev => self.focus = self.focus.along(has_tickers(self.shown(live)), -1),
            // The focused list; a new order starts from its first row.
            Action::CycleSort => match self.focus {
                Focus::StrikeOffs => {
                    self.strike_sort = self.strike_sort.next();
                    self.scroll = 0;
                }
                Focus::Tickers => {
                    self.ticker_sort = self.ticker_sort.next();
                    self.ticker_scroll = 0;
                }
                Focus::Connections | Focus::Log => {}
            },
            Action::ReverseSort => match self.focus {
                Focus::StrikeOffs => {
                    self.strike_reversed = !self.strike_reversed;
                    self.scroll = 0;
                }
                Focus::Tickers => {
                    self.ticker_reversed = !self.ticker_reversed;
                    self.ticker_scroll = 0;
                }
                Focus::Connections | Focus::Log => {}
            },
            Action::ToggleUtc => self.clock.toggle(),
            Action::ToggleHelp => {
                self.show_help = !self.show_help;
                self.help_scroll = 0;
            }
            Action::AcknowledgeAlerts => self.alerts_acked = live.alerts.raised,
            Action::ToggleAlerts => {
                self.show_alerts = true;
                self.alerts_scroll = 0;
            }
            Action::Up => self.move_by(live, -1),
            Action::Down => self.move_by(live, 1),
            Action::PageUp => self.move_by(live, -(self.page() as isize)),
            Action::PageDown => self.move_by(live, self.page() as isize),
            Action::Top => self.move_by(live, isize::MIN),
            Action::Bottom => self.move_by(live, isize::MAX),
            Action::Details => self.open_detail(self.selection(live)),
            Action::ShowInfo => self.open_detail(Some(Detail::Info)),
            Action::ToggleZoom => self.zoomed = !self.zoomed,
        }
        None
    }

    /// What Enter opens in the focused pane: the selected feed, or the row
    /// at the top of the strike-off or ticker list (where its scroll is).
    fn selection(&self, live: &Model) -> Option<Detail> {
        let model = self.shown(live);
        match self.focus {
            Focus::Connections => {
                let last = model.feeds.len().checked_sub(1)?;
                Some(Detail::Feed(model.feeds[self.selected_feed.min(last)].info.name.clone()))
            }
            Focus::StrikeOffs => {
                filter::visible(model, &Filter::new(&self.filter), self.strike_sort, self.strike_reversed)
                    .get(self.scroll)
                    .map(|c| Detail::Company(c.company_number.clone()))
            }
            Focus::Tickers => {
                ticker_list::visible(model, &Filter::new(&self.filter), self.ticker_sort, self.ticker_reversed)
                    .get(self.ticker_scroll)
                    .map(|r| Detail::Ticker { feed: r.feed.clone(), symbol: r.quote.symbol.clone() })
            }
            Focus::Log => None,
        }
    }

    fn open_detail(&mut self, detail: Option<Detail>) {
        if detail.is_some() {
            self.detail = detail;
            self.detail_scroll = 0;
            self.detail_lines.set(0);
        }
    }

    /// While a detail is open the movement keys scroll it; Enter, Esc and
    /// `q` close it (`q` means "close this" here, as in the help). Keys that
    /// act on feeds or on the whole view (`r`, `R`, `p`, `t`, `?`, `a`, `A`) still
    /// work, so the user can reconnect a feed while reading why it failed;
    /// the rest do nothing rather than change a list the user cannot see.
    fn detail_key(&mut self, action: Action, live: &Model) -> Option<UiCommand> {
        let shown = self.detail_rows_shown.get();
        let last = self.detail_lines.get().saturating_sub(shown.max(1));
        if let Some(delta) = scroll_delta(action, shown) {
            self.detail_scroll = step(self.detail_scroll, delta, last);
            return None;
        }
        match action {
            Action::Quit | Action::ClearFilter | Action::Details => {
                self.detail = None;
                return None;
            }
            // `i` again closes what is in force; from another detail it opens it.
            Action::ShowInfo if self.detail == Some(Detail::Info) => {
                self.detail = None;
                return None;
            }
            Action::ShowInfo => {
                self.open_detail(Some(Detail::Info));
                return None;
            }
            Action::Reconnect
            | Action::ReconnectAll
            | Action::TogglePause
            | Action::ToggleUtc
            | Action::ToggleHelp
            | Action::AcknowledgeAlerts
            | Action::ToggleAlerts => return self.handle(action, live),
            Action::StartFilter
            | Action::FocusNext
            | Action::FocusPrev
            | Action::CycleSort
            | Action::ReverseSort
            | Action::ToggleZoom => return None,
            // Movement keys scrolled above.
            Action::Up | Action::Down | Action::PageUp | Action::PageDown | Action::Top | Action::Bottom => {}
        }
        None
    }

    /// While the help is open the movement keys scroll it and every other
    /// key only closes it: `q` there means "close this", not "quit".
    fn help_key(&mut self, action: Option<Action>) {
        let shown = self.help_rows_shown.get();
        let last = super::panes::help::line_count().saturating_sub(shown.max(1));
        match action.and_then(|a| scroll_delta(a, shown)) {
            Some(delta) => self.help_scroll = step(self.help_scroll, delta, last),
            None => {
                self.show_help = false;
                self.help_scroll = 0;
            }
        }
    }

    /// While the alerts list is open the movement keys scroll it, `a`
    /// acknowledges, and every other key closes it (like the help).
    fn alerts_key(&mut self, action: Option<Action>, live: &Model) {
        let shown = self.alert_rows_shown.get();
        let last = live.alerts.len().saturating_sub(shown.max(1));
        match (action, action.and_then(|a| scroll_delta(a, shown))) {
            (_, Some(delta)) => self.alerts_scroll = step(self.alerts_scroll, delta, last),
            (Some(Action::AcknowledgeAlerts), None) => self.alerts_acked = live.alerts.raised,
            _ => self.show_alerts = false,
        }
    }

    /// Flash alerts not acknowledged yet: the header's marker.
    pub fn unacknowledged(&self, live: &Model) -> usize {
        live.alerts.unacknowledged_flashes(self.alerts_acked)
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
        // The lists under the cursor changed: start from the first match.
        self.scroll_to_top();
    }

    fn scroll_to_top(&mut self) {
        self.scroll = 0;
        self.ticker_scroll = 0;
    }

    /// The last first row: the one that shows the last full page (the last
    /// item on the pane's bottom row), or the last item before any frame.
    fn max_scroll(&self, live: &Model) -> usize {
        let rows = filter::visible(self.shown(live), &Filter::new(&self.filter), self.strike_sort, false).len();
        rows.saturating_sub(self.strike_rows_shown.get().max(1))
    }

    fn max_ticker_scroll(&self, live: &Model) -> usize {
        let rows = ticker_list::visible(self.shown(live), &Filter::new(&self.filter), self.ticker_sort, false).len();
        rows.saturating_sub(self.ticker_rows_shown.get().max(1))
    }

    /// Rows a page key moves in the focused list: its visible height.
    fn page(&self) -> usize {
        let shown = match self.focus {
            Focus::StrikeOffs => self.strike_rows_shown.get(),
            Focus::Tickers => self.ticker_rows_shown.get(),
            Focus::Log => self.log_rows_shown.get(),
            Focus::Connections => 0,
        };
        if shown == 0 {
            PAGE
        } else {
            shown
        }
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
            Focus::Tickers => self.ticker_scroll = step(self.ticker_scroll, delta, self.max_ticker_scroll(live)),
            Focus::Log => self.scroll_log(delta),
        }
    }

    /// The log reads the other way up: its newest line is at the bottom, so
    /// up (`k`, PgUp) goes back in time, and the lists' "top" and "bottom"
    /// keys mean newest (`g`, Home: follow new lines again) and oldest
    /// (`G`, End).
    fn scroll_log(&mut self, delta: isize) {
        let ring = self.log.lock();
        let rows = Rows { ring: &ring, width: self.log_width.get() };
        let height = if self.log_rows_shown.get() == 0 { PAGE } else { self.log_rows_shown.get() };
        let top = match delta {
            isize::MIN => None,
            isize::MAX => rows.scroll(self.log_top, isize::MIN, height),
            d => rows.scroll(self.log_top, d, height),
        };
        drop(ring);
        self.log_top = top;
    }
}

/// How far a movement key scrolls an overlay that showed `shown` rows in
/// the last frame (a page before the first); `None` for other keys.
fn scroll_delta(action: Action, shown: usize) -> Option<isize> {
    let page = if shown == 0 { PAGE } else { shown } as isize;
    match action {
        Action::Up => Some(-1),
        Action::Down => Some(1),
        Action::PageUp => Some(-page),
        Action::PageDown => Some(page),
        Action::Top => Some(isize::MIN),
        Action::Bottom => Some(isize::MAX),
        _ => None,
    }
}

fn step(at: usize, delta: isize, last: usize) -> usize {
    at.saturating_add_signed(delta).min(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::test_support::{apply, empty_model, live_model, secs};
    use feedtop_proto::FeedKind;
    use feedtop_proto::{FeedInfo, FeedMsgKind};

    fn press(view: &mut ViewState, live: &Model, code: KeyCode) -> Option<UiCommand> {
        view.handle_key(KeyEvent::new(code, KeyModifiers::NONE), live)
    }

    fn chars(view: &mut ViewState, live: &Model, s: &str) {
        for c in s.chars() {
            press(view, live, KeyCode::Char(c));
        }
    }

    fn two_feeds() -> Model {
        let feeds = ["companies", "officers"].map(|n| FeedInfo { name: n.into(), kind: FeedKind::CompaniesHouse });
        Model::new(feeds.to_vec(), std::time::Duration::from_secs(60), secs(0))
    }

    #[test]
    fn commands() {
        let m = two_feeds();
        let mut v = ViewState::new();
        assert_eq!(press(&mut v, &m, KeyCode::Char('q')), Some(UiCommand::Quit));
        assert_eq!(press(&mut v, &m, KeyCode::Char('r')), Some(UiCommand::Reconnect("companies".into())));
        assert_eq!(press(&mut v, &m, KeyCode::Char('R')), Some(UiCommand::ReconnectAll));
        v.focus = Focus::Connections;
        press(&mut v, &m, KeyCode::Char('j'));
        assert_eq!(press(&mut v, &m, KeyCode::Char('r')), Some(UiCommand::Reconnect("officers".into())));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(v.handle_key(ctrl_c, &m), Some(UiCommand::Quit));
        // No feeds, nothing to reconnect.
        let none = Model::new(Vec::new(), std::time::Duration::from_secs(60), secs(0));
        assert_eq!(press(&mut v, &none, KeyCode::Char('r')), None);
    }

    #[test]
    fn pause_freezes_a_snapshot_and_resumes() {
        let mut live = live_model();
        let mut v = ViewState::new();
        assert_eq!(press(&mut v, &live, KeyCode::Char('p')), None);
        let frozen = v.frozen.as_ref().expect("paused").events_total;
        assert_eq!(frozen, live.events_total);
        apply(&mut live, secs(40), FeedMsgKind::Event(Box::new(crate::ui::test_support::fixture_events().remove(0))));
        assert_eq!(v.frozen.as_ref().unwrap().events_total, frozen, "the snapshot does not move");
        assert_eq!(v.shown(&live).events_total, frozen);
        press(&mut v, &live, KeyCode::Char('p'));
        assert!(v.frozen.is_none());
        assert_eq!(v.shown(&live).events_total, frozen + 1);
    }

    #[test]
    fn filter_editing() {
        let m = live_model();
        let mut v = ViewState::new();
        v.scroll = 3;
        press(&mut v, &m, KeyCode::Char('/'));
        assert!(v.editing_filter);
        assert_eq!(v.scroll, 0);
        // While typing, command keys are text: `q` does not quit.
        chars(&mut v, &m, "abqx");
        assert_eq!(press(&mut v, &m, KeyCode::Backspace), None);
        press(&mut v, &m, KeyCode::Backspace);
        chars(&mut v, &m, "c");
        assert_eq!(v.filter, "abc");
        press(&mut v, &m, KeyCode::Enter);
        assert!(!v.editing_filter);
        assert_eq!(v.filter, "abc", "Enter keeps the filter");
        // Esc outside editing clears it too.
        press(&mut v, &m, KeyCode::Esc);
        assert_eq!(v.filter, "");
        // Esc while editing clears and stops.
        chars(&mut v, &m, "/zz");
        press(&mut v, &m, KeyCode::Esc);
        assert_eq!((v.filter.as_str(), v.editing_filter), ("", false));
        // Ctrl-C quits even while typing.
        press(&mut v, &m, KeyCode::Char('/'));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(v.handle_key(ctrl_c, &m), Some(UiCommand::Quit));
        assert_eq!(v.filter, "");
    }

    #[test]
    fn tab_cycles_focus_both_ways() {
        let m = empty_model();
        let mut v = ViewState::new();
        let start = v.focus;
        let mut seen = vec![start];
        for _ in 0..3 {
            press(&mut v, &m, KeyCode::Tab);
            seen.push(v.focus);
        }
        assert_eq!(seen, [Focus::StrikeOffs, Focus::Log, Focus::Connections, Focus::StrikeOffs]);
        press(&mut v, &m, KeyCode::BackTab);
        assert_eq!(v.focus, Focus::Connections);
    }

    #[test]
    fn movement_is_bounded() {
        let m = live_model();
        let rows = crate::ui::filter::visible(&m, &"".into(), StrikeSort::Time, false).len();
        assert_eq!(rows, 11);
        let mut v = ViewState::new();
        press(&mut v, &m, KeyCode::Char('k'));
        assert_eq!(v.scroll, 0, "cannot scroll above the newest");
        for _ in 0..50 {
            press(&mut v, &m, KeyCode::Char('j'));
        }
        assert_eq!(v.scroll, rows - 1);
        press(&mut v, &m, KeyCode::Char('g'));
        assert_eq!(v.scroll, 0);
        press(&mut v, &m, KeyCode::PageDown);
        assert_eq!(v.scroll, PAGE);
        press(&mut v, &m, KeyCode::End);
        assert_eq!(v.scroll, rows - 1);
        press(&mut v, &m, KeyCode::Up);
        assert_eq!(v.scroll, rows - 2);
        // The bound is the filtered list: "brightwell" has two rows.
        v.filter = "brightwell".into();
        press(&mut v, &m, KeyCode::Char('G'));
        assert_eq!(v.scroll, 1);

        let feeds = two_feeds();
        v.focus = Focus::Connections;
        for _ in 0..5 {
            press(&mut v, &feeds, KeyCode::Char('j'));
        }
        assert_eq!(v.selected_feed, 1);
        for _ in 0..5 {
            press(&mut v, &feeds, KeyCode::Char('k'));
        }
        assert_eq!(v.selected_feed, 0);
        let scroll = v.scroll;
        press(&mut v, &feeds, KeyCode::Char('j'));
        assert_eq!(v.scroll, scroll, "Connections focus does not scroll the list");
    }

    #[test]
    fn tab_visits_tickers_only_with_quote_feeds() {
        let m = crate::ui::test_support::quote_model();
        let mut v = ViewState::new();
        let mut seen = vec![v.focus];
        for _ in 0..4 {
            press(&mut v, &m, KeyCode::Tab);
            seen.push(v.focus);
        }
        assert_eq!(seen, [Focus::StrikeOffs, Focus::Tickers, Focus::Log, Focus::Connections, Focus::StrikeOffs]);
        press(&mut v, &m, KeyCode::BackTab);
        assert_eq!(v.focus, Focus::Connections);
        press(&mut v, &m, KeyCode::BackTab);
        assert_eq!(v.focus, Focus::Log);
        press(&mut v, &m, KeyCode::BackTab);
        assert_eq!(v.focus, Focus::Tickers);
    }

    #[test]
    fn ticker_scroll_is_bounded_and_reset() {
        let m = crate::ui::test_support::quote_model();
        let mut v = ViewState::new();
        v.focus = Focus::Tickers;
        for _ in 0..10 {
            press(&mut v, &m, KeyCode::Char('j'));
        }
        assert_eq!((v.ticker_scroll, v.scroll), (3, 0), "four rows; the strike-offs do not move");
        press(&mut v, &m, KeyCode::Char('k'));
        assert_eq!(v.ticker_scroll, 2);
        // A new sort starts from its first row.
        press(&mut v, &m, KeyCode::Char('s'));
        assert_eq!((v.ticker_sort, v.ticker_scroll), (TickerSort::ChangePercent, 0));
        press(&mut v, &m, KeyCode::Char('G'));
        assert_eq!(v.ticker_scroll, 3);
        // Typing a filter starts from the first match; the bound is the filtered list.
        chars(&mut v, &m, "/pkn");
        press(&mut v, &m, KeyCode::Enter);
        assert_eq!(v.ticker_scroll, 0);
        press(&mut v, &m, KeyCode::Char('j'));
        assert_eq!(v.ticker_scroll, 0, "one match");
    }

    #[test]
    fn help_closes_on_q_without_quitting_and_scrolls() {
        let m = live_model();
        let mut v = ViewState::new();
        press(&mut v, &m, KeyCode::Char('?'));
        assert!(v.show_help);
        // `q` closes the help and does nothing else; the next `q` quits.
        assert_eq!(press(&mut v, &m, KeyCode::Char('q')), None);
        assert!(!v.show_help);
        assert_eq!(press(&mut v, &m, KeyCode::Char('q')), Some(UiCommand::Quit));
        // Movement keys scroll the help, not the list under it.
        press(&mut v, &m, KeyCode::Char('?'));
        assert_eq!(press(&mut v, &m, KeyCode::Char('j')), None);
        assert!(v.show_help);
        assert_eq!((v.help_scroll, v.scroll), (1, 0));
        // Any other key closes it, and it opens again at the top.
        for close in [KeyCode::Esc, KeyCode::Char('?'), KeyCode::Char('p')] {
            assert_eq!(press(&mut v, &m, close), None);
            assert!(!v.show_help && v.frozen.is_none(), "{close:?} only closes");
            press(&mut v, &m, KeyCode::Char('?'));
            assert_eq!(v.help_scroll, 0);
        }
        // Ctrl-C still quits from the help.
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(v.handle_key(ctrl_c, &m), Some(UiCommand::Quit));
    }

    #[test]
    fn a_detail_scrolls_by_its_height_and_keeps_the_feed_keys() {
        let m = two_feeds();
        let mut v = ViewState::new();
        v.focus = Focus::Connections;
        press(&mut v, &m, KeyCode::Char('j'));
        press(&mut v, &m, KeyCode::Enter);
        assert_eq!(v.detail, Some(Detail::Feed("officers".into())));
        // As the last frame drew it: 30 lines, 8 shown.
        v.detail_lines.set(30);
        v.detail_rows_shown.set(8);
        press(&mut v, &m, KeyCode::PageDown);
        assert_eq!(v.detail_scroll, 8, "a page is the visible height");
        press(&mut v, &m, KeyCode::Char('G'));
        assert_eq!(v.detail_scroll, 22, "the last page, not past it");
        press(&mut v, &m, KeyCode::Char('k'));
        assert_eq!((v.detail_scroll, v.selected_feed, v.scroll), (21, 1, 0), "the panes below do not move");
        // Feed keys still act: reconnect the feed being read about.
        assert_eq!(press(&mut v, &m, KeyCode::Char('r')), Some(UiCommand::Reconnect("officers".into())));
        press(&mut v, &m, KeyCode::Char('t'));
        assert!(v.clock.utc);
        // Keys for hidden panes do nothing; `q` closes without quitting.
        press(&mut v, &m, KeyCode::Tab);
        press(&mut v, &m, KeyCode::Char('/'));
        assert_eq!((v.focus, v.editing_filter, v.detail.is_some()), (Focus::Connections, false, true));
        assert_eq!(press(&mut v, &m, KeyCode::Char('q')), None);
        assert_eq!(v.detail, None);
        // It opens again at the top; `i` switches to what is in force.
        press(&mut v, &m, KeyCode::Enter);
        assert_eq!(v.detail_scroll, 0);
        press(&mut v, &m, KeyCode::Char('i'));
        assert_eq!(v.detail, Some(Detail::Info));
        press(&mut v, &m, KeyCode::Esc);
        assert_eq!(v.detail, None);
        // `z` zooms and unzooms.
        press(&mut v, &m, KeyCode::Char('z'));
        assert!(v.zoomed);
        press(&mut v, &m, KeyCode::Char('z'));
        assert!(!v.zoomed);
    }

    #[test]
    fn unknown_keys_do_nothing() {
        let m = live_model();
        let mut v = ViewState::new();
        for code in [KeyCode::F(1), KeyCode::Char('x'), KeyCode::Insert, KeyCode::Null, KeyCode::Char('Z')] {
            assert_eq!(press(&mut v, &m, code), None);
        }
        assert_eq!((v.focus, v.scroll, v.filter.as_str(), v.show_help), (Focus::StrikeOffs, 0, "", false));
        assert!(v.frozen.is_none() && !v.editing_filter);
    }

    #[test]
    fn key_bursts_do_not_panic() {
        let m = live_model();
        let mut v = ViewState::new();
        let codes = [
            KeyCode::Char('q'),
            KeyCode::Char('p'),
            KeyCode::Char('r'),
            KeyCode::Char('R'),
            KeyCode::Char('/'),
            KeyCode::Esc,
            KeyCode::Tab,
            KeyCode::BackTab,
            KeyCode::Up,
            KeyCode::Down,
            KeyCode::Char('j'),
            KeyCode::Char('k'),
            KeyCode::PageUp,
            KeyCode::PageDown,
            KeyCode::Home,
            KeyCode::End,
            KeyCode::Char('g'),
            KeyCode::Char('G'),
            KeyCode::Char('?'),
            KeyCode::Enter,
            KeyCode::Backspace,
            KeyCode::Char('é'),
            KeyCode::Char('\u{7}'),
            KeyCode::Char('a'),
            KeyCode::Char('A'),
            KeyCode::F(12),
            KeyCode::Delete,
        ];
        let mods = [KeyModifiers::NONE, KeyModifiers::SHIFT, KeyModifiers::CONTROL, KeyModifiers::ALT];
        // A fixed xorshift: the same "random" burst on every run.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut quits = 0;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = KeyEvent::new(codes[x as usize % codes.len()], mods[(x >> 32) as usize % mods.len()]);
            if v.handle_key(key, &m) == Some(UiCommand::Quit) {
                quits += 1;
            }
            assert!(v.scroll <= 10 && v.selected_feed == 0, "bounds hold");
            assert!(v.filter.chars().count() <= MAX_FILTER);
        }
        assert!(quits > 0, "the burst reached q");
        // The state it ends in still draws.
        crate::ui::test_support::render(&m, &v, &crate::ui::Theme::new(true), 80, 24);
    }
}
