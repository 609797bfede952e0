//! The `exec` action: a rule's program, run directly (no shell, so nothing
//! in feed text is ever interpreted as a command), with the alert filled
//! into its arguments and given as `FEEDTOP_ALERT_*` environment variables.
//!
//! - Feed text (company names, error bodies) is sanitised first: control
//!   characters, escapes and bidi overrides become `�` (see
//!   `crate::sanitize`), values are cut at [`MAX_VALUE`] characters, and a
//!   value that would start an argument with `-` gets a space in front, so a
//!   company named `--help` cannot become an option of the program.
//! - At most one run per rule at a time, and at most one start per rule per
//!   [`Runner::min_gap`]: an outage of every feed or a burst of strike-offs
//!   must not fork hundreds of `notify-send`s. Alerts in between are
//!   counted and logged (never queued: they are in the Log, the table and
//!   the headless lines anyway).
//! - A program still running after [`Runner::timeout`] is killed; a spawn
//!   error, a non-zero exit or a kill is a Log line naming the rule.
//! - Its stdout and stdin are null (under the TUI the terminal is the
//!   screen); the start of its stderr is kept for the failure line.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Alert, Rule};
use crate::sanitize::for_terminal;

/// A program running longer than this is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// One start per rule per this long at most.
pub const DEFAULT_MIN_GAP: Duration = Duration::from_secs(30);
/// Characters of one placeholder's value at most.
pub const MAX_VALUE: usize = 1000;
/// Bytes of the program's stderr kept for the failure line.
const STDERR_KEPT: usize = 512;

/// How a run ended (for the Log, and for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed(String),
    TimedOut,
    SpawnError(String),
}

#[derive(Debug, Default)]
struct PerRule {
    running: Arc<AtomicBool>,
    last_start: Option<Instant>,
    skipped: u64,
}

#[derive(Debug)]
pub struct Runner {
    pub timeout: Duration,
    pub min_gap: Duration,
    rules: HashMap<usize, PerRule>,
}

impl Default for Runner {
    fn default() -> Self {
        Self::new(DEFAULT_TIMEOUT, DEFAULT_MIN_GAP)
    }
}

/// The alert's fields by placeholder name, sanitised.
fn values(alert: &Alert) -> [(&'static str, String); 6] {
    let clean = |s: &str| for_terminal(s).chars().take(MAX_VALUE).collect::<String>();
    [
        ("feed", clean(&alert.feed)),
        ("detail", clean(&alert.detail)),
        ("company", clean(alert.company.as_deref().unwrap_or(""))),
        ("symbol", clean(alert.symbol.as_deref().unwrap_or(""))),
        ("kind", alert.kind.as_str().to_string()),
        ("time", crate::store::ts(alert.at)),
    ]
}

/// `template` with each `{name}` replaced by its value.
pub fn fill(template: &str, alert: &Alert) -> String {
    let values = values(alert);
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let name = &after[..close];
            values.iter().find(|(n, _)| *n == name).map(|(_, v)| (v, close))
        });
        match value {
            Some((v, close)) => {
                if out.is_empty() && v.starts_with('-') {
                    out.push(' ');
                }
                out.push_str(v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

impl Runner {
    pub fn new(timeout: Duration, min_gap: Duration) -> Self {
        Self { timeout, min_gap, rules: HashMap::new() }
    }

    /// Starts the rule's program for `alert`, unless one is running or one
    /// started less than `min_gap` ago. Returns the task that waits for it.
    pub fn run(&mut self, rule: &Rule, alert: &Alert) -> Option<JoinHandle<Outcome>> {
        let (program, args) = rule.exec.split_first()?;
        let state = self.rules.entry(rule.number).or_default();
        let now = Instant::now();
        let busy = state.running.load(Ordering::SeqCst);
        let too_soon = state.last_start.is_some_and(|at| now.duration_since(at) < self.min_gap);
        if busy || too_soon {
            if state.skipped == 0 {
                let why = if busy { "its program is still running" } else { "it started its program less than" };
                let gap =
                    if busy { String::new() } else { format!(" {} ago", humantime::format_duration(self.min_gap)) };
                tracing::warn!(
                    "alert rule {}: not running {program} for alert {} ({why}{gap}); alerts until the next run are counted",
                    rule.number,
                    alert.seq
                );
            }
            state.skipped += 1;
            return None;
        }
        if state.skipped > 0 {
            tracing::info!(
                "alert rule {}: {} alerts since the last run did not run {program} (one at a time, at most one start per {})",
                rule.number,
                state.skipped,
                humantime::format_duration(self.min_gap)
            );
            state.skipped = 0;
        }
        state.last_start = Some(now);
        let mut command = tokio::process::Command::new(program);
        command.args(args.iter().map(|a| fill(a, alert)));
        for (name, value) in values(alert) {
            command.env(format!("FEEDTOP_ALERT_{}", name.to_ascii_uppercase()), value);
        }
        command.env("FEEDTOP_ALERT_RULE", rule.number.to_string());
        command.env("FEEDTOP_ALERT_SEQ", alert.seq.to_string());
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
        let running = state.running.clone();
        running.store(true, Ordering::SeqCst);
        let (number, program, timeout) = (rule.number, program.clone(), self.timeout);
        Some(tokio::spawn(async move {
            let outcome = supervise(command, timeout).await;
            running.store(false, Ordering::SeqCst);
            let program = for_terminal(&program);
            match &outcome {
                Outcome::Ok => tracing::debug!("alert rule {number}: {program} done"),
                Outcome::Failed(why) => tracing::warn!("alert rule {number}: {program} failed: {why}"),
                Outcome::TimedOut => {
                    tracing::warn!(
                        "alert rule {number}: {program} was still running after {} and was killed",
                        humantime::format_duration(timeout)
                    )
                }
                Outcome::SpawnError(e) => tracing::warn!("alert rule {number}: cannot run {program}: {e}"),
            }
            outcome
        }))
    }
}

async fn supervise(mut command: tokio::process::Command, timeout: Duration) -> Outcome {
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Outcome::SpawnError(e.to_string()),
    };
    let mut stderr = child.stderr.take();
    let deadline = Instant::now() + timeout;
    // Read the start of stderr (then drain it, so a chatty program cannot
    // block on a full pipe) while waiting for the exit.
    let read = async {
        let mut kept = Vec::new();
        if let Some(err) = stderr.as_mut() {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        kept
    };
    let both = async { tokio::join!(child.wait(), read) };
    let ended = tokio::time::timeout_at(deadline, both).await;
    match ended {
        Ok((Ok(status), _)) if status.success() => Outcome::Ok,
        Ok((Ok(status), kept)) => {
            let text = String::from_utf8_lossy(&kept);
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            let first = for_terminal(first);
            Outcome::Failed(if first.is_empty() { status.to_string() } else { format!("{status}: {first}") })
        }
        Ok((Err(e), _)) => Outcome::Failed(e.to_string()),
        Err(_) => {
            let _ = child.kill().await;
            Outcome::TimedOut
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::Trigger;
    use crate::alerts::{Actions, AlertKind};

    fn alert(feed: &str, detail: &str) -> Alert {
        Alert {
            seq: 7,
            at: chrono::DateTime::from_timestamp(1_749_556_800, 0).unwrap(),
            rule: 1,
            kind: AlertKind::FeedDown,
            feed: feed.into(),
            company: None,
            symbol: None,
            detail: detail.into(),
            actions: Actions { exec: true, ..Actions::default() },
        }
    }

    fn rule(exec: &[&str]) -> Rule {
        Rule {
            number: 1,
            trigger: Trigger::FeedDown { after: Duration::from_secs(60) },
            actions: Actions { exec: true, ..Actions::default() },
            exec: exec.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn placeholders_are_filled_with_sanitised_text() {
        let a = alert("wig80", "closed: \x1b]0;pwned\x07 \u{202E}x");
        assert_eq!(fill("feedtop: {feed} down", &a), "feedtop: wig80 down");
        assert_eq!(fill("{detail}", &a), "closed: �]0;pwned� �x");
        assert_eq!(fill("{kind} at {time} {unknown} {", &a), "feed-down at 2025-06-10T12:00:00.000Z {unknown} {");
        // A value cannot become an option.
        assert_eq!(fill("{detail}", &alert("f", "--help")), " --help");
        assert_eq!(fill("x{detail}", &alert("f", "--help")), "x--help");
        assert_eq!(fill("{detail}", &alert("f", &"y".repeat(5000))).len(), MAX_VALUE);
    }

    /// A real program gets the alert as arguments and environment, sanitised.
    #[tokio::test]
    async fn a_program_gets_the_alert_in_its_arguments_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "printf '%s|%s|%s\\n' \"$FEEDTOP_ALERT_KIND\" \"$1\" \"$FEEDTOP_ALERT_DETAIL\" > {}",
            out.display()
        );
        let r = rule(&["sh", "-c", &script, "sh", "{feed}: {detail}"]);
        let mut runner = Runner::default();
        let outcome = runner.run(&r, &alert("wig\x1b]0;x\x0780", "down \x1b[2J\u{9b}now")).unwrap().await.unwrap();
        assert_eq!(outcome, Outcome::Ok);
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text, "feed-down|wig�]0;x�80: down �[2J�now|down �[2J�now\n");
    }

    #[tokio::test]
    async fn one_at_a_time_rate_limited_and_a_hung_program_is_killed() {
        let mut runner = Runner::new(Duration::from_millis(300), Duration::from_secs(3600));
        let r = rule(&["sleep", "30"]);
        let a = alert("f", "x");
        let first = runner.run(&r, &a).expect("the first alert runs it");
        assert!(runner.run(&r, &a).is_none(), "one at a time");
        assert_eq!(first.await.unwrap(), Outcome::TimedOut);
        assert!(runner.run(&r, &a).is_none(), "at most one start per min_gap");
        assert_eq!(runner.rules[&1].skipped, 2);
    }

    #[tokio::test]
    async fn failures_are_reported() {
        let mut runner = Runner::new(Duration::from_secs(10), Duration::ZERO);
        let a = alert("f", "x");
        let missing = runner.run(&rule(&["/nonexistent/feedtop-notify"]), &a).unwrap().await.unwrap();
        assert!(matches!(missing, Outcome::SpawnError(_)), "{missing:?}");
        let failed = runner.run(&rule(&["sh", "-c", "echo 'no display' >&2; exit 3"]), &a).unwrap().await.unwrap();
        assert_eq!(failed, Outcome::Failed("exit status: 3: no display".into()));
    }
}
