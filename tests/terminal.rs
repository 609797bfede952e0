//! The TUI in a real terminal (tmux): it draws, answers keys, and gives the
//! terminal back on quit; it survives being resized down to 20×5 and back and a
//! burst of 10,000 keys; and a panic gives the terminal back too, with the
//! message on the normal screen. Under a locale that is not UTF-8 it writes
//! only ASCII, and on a 16-colour terminal only 16-colour sequences (the
//! bytes it writes are captured with `tmux pipe-pane`). Skipped with a note
//! where tmux is not installed (`.ci/run` installs it).
//!
//! Every command sets its locale: the screen's glyphs depend on it.

use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    session: String,
}

impl Tmux {
    /// `name` keeps the sessions of tests running in parallel apart.
    fn start(name: &str, cols: u16, rows: u16, command: &str) -> Option<Self> {
        Command::new("tmux").arg("-V").output().ok().filter(|o| o.status.success())?;
        let session = format!("feedtop-test-{}-{name}", std::process::id());
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", &cols.to_string(), "-y", &rows.to_string()])
            .arg(command)
            .status()
            .ok()?;
        status.success().then_some(Self { session })
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux").args(["capture-pane", "-p", "-t", &self.session]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Copies everything the program in the pane writes from now on to `path`.
    fn pipe_to(&self, path: &std::path::Path) {
        let status = Command::new("tmux")
            .args(["pipe-pane", "-o", "-t", &self.session])
            .arg(format!("cat >> '{}'", path.display()))
            .status()
            .unwrap();
        assert!(status.success(), "tmux pipe-pane failed");
    }

    /// Wakes a `tmux wait-for <channel>` in the pane (or the next one: tmux
    /// remembers a signal nobody waited for yet).
    fn signal(&self, channel: &str) {
        let status = Command::new("tmux").args(["wait-for", "-S", channel]).status().unwrap();
        assert!(status.success(), "tmux wait-for -S failed");
    }

    fn keys(&self, keys: &str) {
        Command::new("tmux").args(["send-keys", "-t", &self.session, keys]).status().unwrap();
    }

    /// Sends many keys (tmux key names) in one `send-keys` call.
    fn key_list(&self, keys: &[&str]) {
        let status = Command::new("tmux").args(["send-keys", "-t", &self.session]).args(keys).status().unwrap();
        assert!(status.success());
    }

    /// Resizes the window (which makes its size manual, so it stays put).
    fn resize(&self, cols: u16, rows: u16) {
        let status = Command::new("tmux")
            .args(["resize-window", "-t", &self.session, "-x", &cols.to_string(), "-y", &rows.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "tmux resize-window failed");
    }

    /// Polls the screen until `pred` holds; panics with the screen after the deadline.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; screen:\n{screen}");
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.session]).status();
    }
}

#[test]
fn demo_tui_draws_pauses_helps_and_restores_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let command = format!(
        "env -u CH_STREAMING_API_KEY NO_COLOR=1 {UTF8} {} --demo --db {}; echo EXITED=$?; sleep 60",
        env!("CARGO_BIN_EXE_feedtop"),
        db.display()
    );
    let Some(tmux) = Tmux::start("basics", 100, 30, &command) else {
        eprintln!("note: tmux is not installed; the real-terminal test did not run");
        return;
    };
    let screen = tmux.wait_for("the live demo with strike-off changes", |s| {
        s.contains("5/5 live") && s.contains("Strike-off changes — entered") && !s.contains("entered 0 ")
    });
    assert!(screen.contains("DEMO"), "{screen}");
    assert!(screen.contains("Strike-off changes"), "{screen}");

    tmux.keys("p");
    tmux.wait_for("the pause banner", |s| s.contains("PAUSED"));
    tmux.keys("p");
    tmux.wait_for("the pause to end", |s| !s.contains("PAUSED"));

    tmux.keys("?");
    tmux.wait_for("the help overlay", |s| s.contains("reconnect all feeds"));
    tmux.keys("Escape");
    tmux.wait_for("help to close", |s| !s.contains("reconnect all feeds"));

    tmux.keys("/");
    tmux.keys("zzzz-no-such-company");
    tmux.wait_for("the filter to apply", |s| s.contains("no match for"));
    tmux.keys("Escape");

    tmux.keys("q");
    let screen = tmux.wait_for("a clean exit", |s| s.contains("EXITED="));
    assert!(screen.contains("EXITED=0"), "{screen}");
    assert!(screen.contains("new events stored"), "{screen}");
    assert!(!screen.contains("Strike-off changes"), "the alternate screen was left: {screen}");
}

/// A UTF-8 locale, whatever the machine running the tests has.
const UTF8: &str = "LANG=C.UTF-8 LC_ALL= LC_CTYPE=";

/// The demo in a fresh database, then `EXITED=<status>` and a plain shell.
fn demo_command(db: &std::path::Path, env: &str) -> String {
    format!(
        "env -u CH_STREAMING_API_KEY -u RUST_BACKTRACE NO_COLOR=1 {UTF8} {env} {} --demo --db {}; echo EXITED=$?; exec sh",
        env!("CARGO_BIN_EXE_feedtop"),
        db.display()
    )
}

/// Everything a full 100×30 frame shows: header, panes and the key hints.
fn full_screen(s: &str) -> bool {
    s.contains("DEMO")
        && s.contains("Connections")
        && s.contains("Strike-off changes")
        && s.contains("Tickers")
        && s.contains("q quit")
        && !s.contains("too small")
}

/// Quits with `q` and checks that the terminal is back: exit status 0, the
/// alternate screen left, and cooked mode (the shell gets a line and runs it).
fn quit_and_check_the_shell(tmux: &Tmux) {
    tmux.keys("q");
    let screen = tmux.wait_for("a clean exit", |s| s.contains("EXITED="));
    assert!(screen.contains("EXITED=0"), "{screen}");
    assert!(!screen.contains("Strike-off changes"), "the alternate screen was left: {screen}");
    tmux.keys("echo ok");
    tmux.keys("Enter");
    tmux.wait_for("the shell to answer", |s| s.lines().any(|l| l.trim() == "ok"));
}

#[test]
fn survives_a_tiny_window_and_redraws_the_full_screen() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tmux) = Tmux::start("resize", 100, 30, &demo_command(&dir.path().join("demo.db"), "")) else {
        eprintln!("note: tmux is not installed; the real-terminal test did not run");
        return;
    };
    tmux.wait_for("the live demo", |s| full_screen(s) && s.contains("5/5 live"));
    // Down to 20×5: the program says it is too small instead of drawing panes.
    tmux.resize(20, 5);
    let small = tmux.wait_for("the too-small notice", |s| s.contains("too small"));
    assert!(small.lines().count() <= 5 && small.lines().all(|l| l.chars().count() <= 20), "{small}");
    // And back: the whole screen is redrawn, nothing of the notice is left.
    tmux.resize(100, 30);
    let screen = tmux.wait_for("the full screen again", full_screen);
    assert_eq!(screen.lines().count(), 30, "{screen}");
    quit_and_check_the_shell(&tmux);
}

/// crossterm's default (mio) input source is edge-triggered and returns after
/// the first event of a 1 KiB read without draining the tty, so the tail of a
/// burst of input (a paste, a stuck key over SSH) stayed unread until the next
/// key press. feedtop enables crossterm's `use-dev-tty` (a level-triggered
/// `poll` source); this test is what found it.
#[test]
fn stays_responsive_after_a_burst_of_ten_thousand_keys() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tmux) = Tmux::start("burst", 100, 30, &demo_command(&dir.path().join("demo.db"), "")) else {
        eprintln!("note: tmux is not installed; the real-terminal test did not run");
        return;
    };
    tmux.wait_for("the live demo", |s| full_screen(s) && s.contains("5/5 live"));
    // 10,000 keys in five bursts: scrolling, focus, sort, filter typing and
    // clearing. Never q, p, r or R.
    let pattern = ["j", "k", "Tab", "s", "/", "a", "Escape"];
    let burst: Vec<&str> = pattern.iter().copied().cycle().take(2_000).collect();
    for _ in 0..5 {
        tmux.key_list(&burst);
    }
    // An Escape right before a key reads as Alt+key, so a burst can end
    // inside the filter line: leave it, then show that the program still
    // answers (which also means every earlier key has been handled).
    tmux.keys("Escape");
    tmux.wait_for("the burst to be handled", |s| !s.contains("Esc clear") && s.contains("q quit"));
    tmux.keys("?");
    tmux.wait_for("the help overlay after the burst", |s| s.contains("reconnect all feeds"));
    // `q` on the help only closes it; the next one quits.
    tmux.keys("q");
    tmux.wait_for("help to close", |s| !s.contains("reconnect all feeds"));
    quit_and_check_the_shell(&tmux);
}

#[test]
fn a_panic_restores_the_terminal_and_shows_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let command = demo_command(&dir.path().join("demo.db"), "FEEDTOP_TEST_PANIC_AFTER_MS=4000");
    let Some(tmux) = Tmux::start("panic", 100, 30, &command) else {
        eprintln!("note: tmux is not installed; the real-terminal test did not run");
        return;
    };
    let screen = tmux.wait_for("the demo, then the exit", |s| s.contains("DEMO") || s.contains("EXITED="));
    assert!(screen.contains("DEMO"), "the TUI was up before the panic: {screen}");
    let screen = tmux.wait_for("the panic and the exit", |s| s.contains("EXITED="));
    assert!(screen.contains("EXITED=101"), "a panic exits with Rust's panic status: {screen}");
    assert!(screen.contains("panicked at") && screen.contains("a deliberate panic for the terminal test"), "{screen}");
    assert!(!screen.contains("Strike-off changes"), "the alternate screen was left: {screen}");
    // No raw mode: the shell gets the line, echoed, and answers.
    tmux.keys("echo ok");
    tmux.keys("Enter");
    let screen = tmux.wait_for("the shell to answer", |s| s.lines().any(|l| l.trim() == "ok"));
    assert!(screen.contains("echo ok"), "typed text is echoed: {screen}");
}

/// Issue 12, Alerts: `bell` writes BEL (\x07) to the terminal once per
/// alert. Two feeds on a port nothing listens on, a feed-down rule with
/// bell and flash: two alerts (one per feed), two BELs in the pane's bytes,
/// two rows in the `alerts` table, and no more after them.
#[test]
fn a_bell_alert_writes_bel_once_per_alert() {
    let dir = tempfile::tempdir().unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/stream", dead.local_addr().unwrap());
    drop(dead);
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[feeds]]\nname = \"down-1\"\nkind = \"sse\"\nurl = \"{url}\"\n\n\
             [[feeds]]\nname = \"down-2\"\nkind = \"sse\"\nurl = \"{url}\"\n\n\
             [[alerts]]\non = \"feed-down\"\nafter = \"1s\"\nactions = [\"bell\", \"flash\"]\n"
        ),
    )
    .unwrap();
    let db = dir.path().join("alerts.db");
    let bytes = dir.path().join("pane.bytes");
    // `read` holds the program until the pane's output is being captured.
    let command = format!(
        "read go; env -u CH_STREAMING_API_KEY NO_COLOR=1 LANG=C.UTF-8 LC_ALL= LC_CTYPE= {} --config {} --db {}; echo EXITED=$?; exec sh",
        env!("CARGO_BIN_EXE_feedtop"),
        config.display(),
        db.display()
    );
    let Some(tmux) = Tmux::start("bell", 100, 30, &command) else {
        eprintln!("note: tmux is not installed; the real-terminal test did not run");
        return;
    };
    tmux.pipe_to(&bytes);
    tmux.keys("Enter");
    tmux.wait_for("both alerts in the header", |s| s.contains(" 2 ALERTS · a ack · A list "));
    let bels = || std::fs::read(&bytes).unwrap_or_default().iter().filter(|&&b| b == 0x07).count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bels() < 2 {
        assert!(Instant::now() < deadline, "BELs written: {}", bels());
        std::thread::park_timeout(Duration::from_millis(50));
    }
    // `a` acknowledges: the marker goes, and no BEL comes with it.
    tmux.keys("a");
    tmux.wait_for("the marker to go", |s| !s.contains("ALERT") && s.contains("q quit"));
    tmux.keys("q");
    let screen = tmux.wait_for("a clean exit", |s| s.contains("EXITED="));
    assert!(screen.contains("EXITED=0"), "{screen}");
    assert_eq!(bels(), 2, "one BEL per alert, no more");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = conn.query_row("SELECT count(*) FROM alerts WHERE kind = 'feed-down'", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 2);
}

/// The bytes the demo writes to a 100×30 pane with `env` set, from its first
/// byte until it has shown live strike-off changes and quit: the pane's shell
/// waits on a tmux channel until the pipe is in place.
fn bytes_written(name: &str, env: &str) -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.bytes");
    let channel = format!("feedtop-test-{}-{name}-go", std::process::id());
    let command = format!(
        "tmux wait-for {channel}; env -u CH_STREAMING_API_KEY -u RUST_BACKTRACE -u NO_COLOR -u COLORTERM {env} {} --demo --db {}; echo EXITED=$?; exec sh",
        env!("CARGO_BIN_EXE_feedtop"),
        dir.path().join("demo.db").display()
    );
    let tmux = Tmux::start(name, 100, 30, &command)?;
    tmux.pipe_to(&out);
    tmux.signal(&channel);
    tmux.wait_for("the live demo with strike-off changes", |s| {
        s.contains("5/5 live")
            && s.contains("Strike-off changes")
            && s.contains("entered ")
            && !s.contains("entered 0 ")
    });
    // Into the help and out again: the box and the key names are drawn too.
    tmux.keys("?");
    tmux.wait_for("the help overlay", |s| s.contains("reconnect all feeds"));
    tmux.keys("j");
    tmux.keys("Escape");
    tmux.wait_for("help to close", |s| !s.contains("reconnect all feeds"));
    tmux.keys("q");
    let screen = tmux.wait_for("a clean exit", |s| s.contains("EXITED="));
    assert!(screen.contains("EXITED=0"), "{screen}");
    drop(tmux);
    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.len() > 1000, "the frames were captured: {} bytes", bytes.len());
    Some(bytes)
}

/// The SGR sequences (`ESC[…m`) in `bytes`, by their parameters.
fn sgr_params(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    text.split("\x1b[")
        .skip(1)
        .filter_map(|rest| {
            let end = rest.find(|c: char| !(c.is_ascii_digit() || c == ';'))?;
            rest[end..].starts_with('m').then(|| rest[..end].to_string())
        })
        .collect()
}

#[test]
fn under_the_c_locale_only_ascii_is_written() {
    let Some(bytes) = bytes_written("ascii", "LANG=C LC_ALL= LC_CTYPE= TERM=xterm-256color") else {
        eprintln!("note: tmux is not installed; the real-terminal test did not run");
        return;
    };
    let odd: Vec<(usize, u8)> = bytes.iter().copied().enumerate().filter(|(_, b)| *b >= 0x80).take(10).collect();
    assert!(odd.is_empty(), "bytes >= 0x80 at {odd:?}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(2000)]));
    // Still the full screen: rules drawn in ASCII.
    assert!(String::from_utf8_lossy(&bytes).contains("-----"), "no ASCII rules");
}

#[test]
fn a_16_colour_terminal_gets_16_colour_sequences() {
    let Some(bytes) = bytes_written("vt100", "LANG=C.UTF-8 LC_ALL= LC_CTYPE= TERM=vt100") else {
        eprintln!("note: tmux is not installed; the real-terminal test did not run");
        return;
    };
    let params = sgr_params(&bytes);
    let wide: Vec<&String> = params.iter().filter(|p| p.contains("38;5;") || p.contains("48;5;")).collect();
    assert!(wide.is_empty(), "256-colour sequences: {wide:?}");
    // Colour is still there: green for `live`, in the 16-colour form.
    let colours: Vec<&String> =
        params.iter().filter(|p| p.split(';').any(|n| matches!(n.parse::<u8>(), Ok(30..=37 | 90..=97)))).collect();
    assert!(colours.iter().any(|p| p.split(';').any(|n| n == "32")), "no green: {params:?}");
    // And the screen was drawn in Unicode: the locale is UTF-8.
    assert!(String::from_utf8_lossy(&bytes).contains('─'));
}

/// The same run on a 256-colour terminal: crossterm's own forms, untouched.
#[test]
fn a_256_colour_terminal_gets_the_256_colour_forms() {
    let Some(bytes) = bytes_written("xterm256", "LANG=C.UTF-8 LC_ALL= LC_CTYPE= TERM=xterm-256color") else {
        eprintln!("note: tmux is not installed; the real-terminal test did not run");
        return;
    };
    assert!(sgr_params(&bytes).iter().any(|p| p.contains("38;5;2")), "green as crossterm writes it");
}
