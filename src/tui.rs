//! The interactive front end: terminal setup, the event loop, redraws.
//!
//! One `select!` multiplexes shutdown signals, terminal input, the render tick
//! and pipeline input. The tick comes before pipeline input in the biased order
//! so that a flood of events (a catch-up replay) cannot starve the screen.
//! Drawing happens only on a tick, only when something changed, so the frame
//! rate is at most `fps` and an idle feed costs next to nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures_util::StreamExt;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Flex, Layout};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use tokio::time::MissedTickBehavior;

use crate::app::{shutdown_signal, Pipeline, ShutdownSummary};
use crate::model::Model;
use crate::ui;
use crate::ui::glyphs::{self, Glyphs};
use crate::ui::sgr16::{self, Sgr16};
use crate::ui::theme::{Theme, ThemeName};
use crate::ui::view::{Detail, RunInfo, UiCommand, ViewState};

#[derive(Debug, Clone)]
pub struct TuiOptions {
    pub fps: u32,
    pub theme: ThemeName,
    /// Draw decoration in ASCII (a non-UTF-8 locale, `--ascii`).
    pub ascii: bool,
    /// Highlight a price that just changed (off with `--low-bandwidth`).
    pub tick_highlight: bool,
    /// Ticker rows older than this are dimmed.
    pub stale_after: Duration,
    /// The log pane's lines, filled by the tracing layer `logging::init` installed.
    pub log: crate::logging::LogBuffer,
    /// What the `i` overlay shows (config file, database, version).
    pub run_info: RunInfo,
}

/// Reads the store for a company or ticker detail that has just opened
/// (once per opening: a synchronous read on an indexed, bounded query, a
/// few milliseconds on a large database).
fn load_detail(view: &mut ViewState) {
    let Some(detail) = view.detail.clone() else {
        view.detail_data = None;
        return;
    };
    if view.detail_data.as_ref().is_some_and(|(shown, _)| *shown == detail) {
        return;
    }
    let Some(info) = view.run_info.as_ref() else { return };
    let loaded = match &info.db_path {
        Some(db) => crate::detail_store::load(db, &detail),
        None => crate::detail_store::needs_database(&detail),
    };
    view.detail_data = loaded.map(|loaded| (detail, loaded));
}

/// Measures the database again while `i` shows its size: a stat or two a
/// second, and only while the overlay is open.
fn refresh_db_size(view: &mut ViewState) {
    if view.detail == Some(Detail::Info) {
        if let Some(info) = view.run_info.as_mut() {
            info.db_bytes = info.db_path.as_deref().and_then(RunInfo::db_size);
        }
    }
}

impl TuiOptions {
    pub fn theme(&self) -> Theme {
        let theme = Theme::named(self.theme).with_glyphs(Glyphs::new(self.ascii));
        if self.tick_highlight {
            theme
        } else {
            theme.without_tick_highlight()
        }
    }
}

type Term = ratatui::Terminal<CrosstermBackend<Sgr16<std::io::Stdout>>>;

/// Puts the terminal back however the TUI ends (return, `?`, or panic:
/// `ratatui::init` also installs a panic hook that restores first).
struct TerminalGuard {
    terminal: Term,
}

/// Set by the panic hook once it has given the terminal back: a panic on any
/// thread (a feed task too) runs the hook, not only one on the UI thread.
static RESTORED_BY_PANIC: AtomicBool = AtomicBool::new(false);

impl TerminalGuard {
    fn new() -> anyhow::Result<Self> {
        // `init` sets the terminal up (raw mode, alternate screen, the panic
        // hook); the frames go through `Sgr16`, which turns crossterm's
        // 256-colour sequences into 16-colour ones where the terminal has no
        // more (TERM=vt100, linux).
        drop(ratatui::init());
        let term = std::env::var("TERM").ok();
        let colorterm = std::env::var("COLORTERM").ok();
        let sixteen = !sgr16::has_256_colours(term.as_deref(), colorterm.as_deref());
        let terminal = match ratatui::Terminal::new(CrosstermBackend::new(Sgr16::new(std::io::stdout(), sixteen))) {
            Ok(t) => t,
            Err(e) => {
                let _ = ratatui::try_restore();
                return Err(anyhow::anyhow!("cannot use the terminal: {e}"));
            }
        };
        // ratatui's hook restores the terminal; remember that it did.
        let restore_and_report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            RESTORED_BY_PANIC.store(true, Ordering::SeqCst);
            restore_and_report(info);
        }));
        Ok(Self { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        // After a panic the hook has restored already, and the panic message
        // is on the screen below the cursor. Leaving the alternate screen a
        // second time would move the cursor back to where the TUI started
        // (terminals restore the saved cursor even outside the alternate
        // screen), so the shell prompt would overwrite the message.
        if !std::thread::panicking() && !RESTORED_BY_PANIC.load(Ordering::SeqCst) {
            // Not `restore()`: it reports a failure with `eprintln!`, which
            // panics when the terminal is gone (SIGHUP after an SSH drop).
            let _ = ratatui::try_restore();
        }
    }
}

/// TEST ONLY: `FEEDTOP_TEST_PANIC_AFTER_MS=N` makes the event loop panic about
/// N ms after start, so that `tests/terminal.rs` can check that a panic gives
/// the terminal back and shows the message. Not a user setting.
const TEST_PANIC_VAR: &str = "FEEDTOP_TEST_PANIC_AFTER_MS";

fn test_panic_at() -> Option<std::time::Instant> {
    let ms: u64 = std::env::var(TEST_PANIC_VAR).ok()?.parse().ok()?;
    Some(std::time::Instant::now() + Duration::from_millis(ms))
}

pub async fn run(mut pipeline: Pipeline, options: TuiOptions) -> anyhow::Result<(Model, ShutdownSummary)> {
    let panic_at = test_panic_at();
    let mut guard = TerminalGuard::new()?;
    let theme = options.theme();
    let mut view = ViewState::new();
    view.stale_after = options.stale_after;
    view.run_info = Some(options.run_info.clone());
    view.log = options.log;
    let mut shown_log = view.log.next_seq();
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / options.fps.max(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    let mut dirty = true;
    let mut shown_second = 0;
    // The last alert a BEL was written for (or not needed): each once.
    let mut belled = pipeline.model().alerts.raised;
    let result: anyhow::Result<()> = loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break Ok(()),
            event = keys.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                    match view.handle_key(key, pipeline.model()) {
                        Some(UiCommand::Quit) => break Ok(()),
                        Some(UiCommand::Reconnect(feed)) => pipeline.reconnect(&feed),
                        Some(UiCommand::ReconnectAll) => pipeline.reconnect_all(),
                        None => {}
                    }
                    refresh_db_size(&mut view);
                    load_detail(&mut view);
                    dirty = true;
                }
                Some(Ok(Event::Resize(..))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(anyhow::anyhow!("reading the terminal failed: {e}")),
                None => break Ok(()),
            },
            _ = tick.tick() => {
                if panic_at.is_some_and(|at| std::time::Instant::now() >= at) {
                    panic!("{TEST_PANIC_VAR} is set: a deliberate panic for the terminal test");
                }
                let now = Utc::now();
                if let Err(stopped) = pipeline.tick(now) {
                    break Err(stopped.into());
                }
                // A feed-down alert is raised by the tick itself.
                if pipeline.model().alerts.raised != belled {
                    dirty = true;
                }
                // Ages and countdowns move every second even with no traffic.
                if now.timestamp() != shown_second {
                    shown_second = now.timestamp();
                    refresh_db_size(&mut view);
                    load_detail(&mut view);
                    dirty = true;
                }
                // A new log line shows at the next tick, not a second later.
                if view.log.next_seq() != shown_log {
                    shown_log = view.log.next_seq();
                    dirty = true;
                }
                if dirty {
                    if let Err(e) = guard.terminal.draw(|frame| ui::draw(frame, pipeline.model(), &view, &theme)) {
                        break Err(anyhow::anyhow!("drawing to the terminal failed: {e}"));
                    }
                    dirty = false;
                    let alerts = &pipeline.model().alerts;
                    let bells = alerts.since(belled).iter().filter(|a| a.actions.bell).count();
                    belled = alerts.raised;
                    if bells > 0 {
                        ring_bell(guard.terminal.backend_mut(), bells);
                    }
                }
            }
            input = pipeline.next_input() => {
                pipeline.handle(input);
                dirty = true;
            }
        }
    };
    // The screen stays up while the store finishes (bounded), saying so;
    // a second quit key or signal stops waiting.
    if result.is_ok() {
        let unstored = pipeline.unstored();
        let _ = guard.terminal.draw(|frame| {
            ui::draw(frame, pipeline.model(), &view, &theme);
            draw_stopping(frame, unstored, &theme);
            if theme.glyphs.ascii {
                glyphs::asciify(frame.buffer_mut());
            }
        });
    }
    let quit_now = async {
        let signal = shutdown_signal();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => return,
                event = keys.next() => match event {
                    Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release && quits_now(key) => return,
                    Some(Ok(_)) => {}
                    // No terminal to read: only a signal can cut the wait short.
                    Some(Err(_)) | None => break,
                },
            }
        }
        signal.await
    };
    let stopped = pipeline.shutdown_or(quit_now).await;
    drop(guard);
    result.map(|_| stopped)
}

/// One BEL per alert with the bell action, written after the frame
/// (straight to the terminal: in a widget it would be a cell, not a sound).
/// A terminal that cannot take it is not a reason to stop.
fn ring_bell(out: &mut impl std::io::Write, bells: usize) {
    let _ = out.write_all(&vec![0x07; bells]).and_then(|()| out.flush());
}

/// Keys that stop waiting for the store at shutdown.
fn quits_now(key: KeyEvent) -> bool {
    matches!(key.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc)
        || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL))
}

/// A box over the last frame while shutdown waits for the store.
fn draw_stopping(frame: &mut ratatui::Frame, unstored: usize, theme: &Theme) {
    let text = if unstored == 0 {
        "Stopping…".to_string()
    } else {
        format!(
            "Stopping: writing {unstored} facts to the database (at most {:.1} s).\n\
             Press q again to quit now: what is not written is fetched again from the resume point next time.",
            crate::app::STORE_SHUTDOWN.as_secs_f32()
        )
    };
    let [area] = Layout::vertical([Constraint::Length(5)]).flex(Flex::Center).areas(frame.area());
    let [area] = Layout::horizontal([Constraint::Max(72)]).flex(Flex::Center).areas(area);
    frame.render_widget(Clear, area);
    let block = Block::bordered().border_set(theme.glyphs.border).title(" feedtop ").border_style(theme.warn);
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }).block(block), area);
}
