//! The TUI in a real terminal (tmux): it draws, answers keys, and gives the
//! terminal back on quit. Skipped with a note where tmux is not installed
//! (`.ci/run` installs it).

use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    session: String,
}

impl Tmux {
    fn start(cols: u16, rows: u16, command: &str) -> Option<Self> {
        Command::new("tmux").arg("-V").output().ok().filter(|o| o.status.success())?;
        let session = format!("feedtop-test-{}", std::process::id());
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

    fn keys(&self, keys: &str) {
        Command::new("tmux").args(["send-keys", "-t", &self.session, keys]).status().unwrap();
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
        "env -u CH_STREAMING_API_KEY NO_COLOR=1 {} --demo --db {}; echo EXITED=$?; sleep 60",
        env!("CARGO_BIN_EXE_feedtop"),
        db.display()
    );
    let Some(tmux) = Tmux::start(100, 30, &command) else {
        eprintln!("note: tmux is not installed; the real-terminal test did not run");
        return;
    };
    let screen = tmux.wait_for("the live demo with strike-off changes", |s| {
        s.contains("4/4 live") && s.contains("Strike-off changes — entered") && !s.contains("entered 0 ")
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
