//! `i`: what is in force. The config file (or that there is none), the
//! database and its size on disk, the feeds with their URLs (secrets
//! hidden), the version and the screen's own settings, so an operator on
//! someone else's server can tell what this feedtop is doing without
//! reading its command line.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::detail::{field, heading};
use crate::model::Model;
use crate::sanitize::for_terminal;
use crate::ui::clock::Clock;
use crate::ui::theme::Theme;

/// What the TUI knows about its run; the model knows the feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub version: String,
    /// The config file read, `None` when there was none.
    pub config_file: Option<PathBuf>,
    /// `None`: a viewer that keeps no database (no `--db`).
    pub db_path: Option<PathBuf>,
    /// The database's files on disk (with its write-ahead log), as last
    /// measured by the TUI; `None` when they could not be read.
    pub db_bytes: Option<u64>,
    pub fps: u32,
    /// How colours are chosen, in words (`colour`, `no colour (NO_COLOR)`).
    pub theme: String,
}

impl RunInfo {
    /// The size of the SQLite database at `path` on disk: the file and its
    /// `-wal` (which holds recent writes until a checkpoint).
    pub fn db_size(path: &std::path::Path) -> Option<u64> {
        let main = std::fs::metadata(path).ok()?.len();
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Some(main + std::fs::metadata(wal).map_or(0, |m| m.len()))
    }
}

/// `12.3 MB` (decimal units, as `ls -lh --si` and disk tools print them).
pub fn size(bytes: u64) -> String {
    match bytes {
        0..=999 => format!("{bytes} B"),
        1_000..=999_999 => format!("{:.1} kB", bytes as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}

const LABEL: usize = 11;

pub fn lines(run: Option<&RunInfo>, model: &Model, clock: &Clock, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let now: DateTime<Utc> = model.now;
    let unknown = "not known".to_string();
    let version = run.map_or_else(|| unknown.clone(), |r| format!("feedtop {}", r.version));
    field(&mut out, "version", LABEL, &version, Style::new(), width, theme);
    let config = match run {
        None => unknown.clone(),
        Some(RunInfo { config_file: None, .. }) => "none (defaults and flags)".to_string(),
        Some(RunInfo { config_file: Some(p), .. }) => p.display().to_string(),
    };
    field(&mut out, "config file", LABEL, &config, Style::new(), width, theme);
    let db = run.map_or_else(
        || unknown.clone(),
        |r| match (&r.db_path, r.db_bytes) {
            (None, _) => "none: this viewer stores nothing (--db PATH keeps what it sees)".to_string(),
            (Some(path), Some(b)) => format!("{} ({} on disk)", path.display(), size(b)),
            (Some(path), None) => format!("{} (size not readable)", path.display()),
        },
    );
    field(&mut out, "database", LABEL, &db, Style::new(), width, theme);
    let zone = if clock.utc {
        "UTC (t: local time)".to_string()
    } else {
        format!("local time, {} (t: UTC)", clock.label(now))
    };
    let screen = match run {
        Some(r) => format!("{} fps · {} · times in {zone}", r.fps, r.theme),
        None => format!("times in {zone}"),
    };
    field(&mut out, "screen", LABEL, &screen, Style::new(), width, theme);
    if model.demo {
        field(&mut out, "mode", LABEL, "demo: the built-in simulators", theme.warn, width, theme);
    }
    nats_source(&mut out, model, clock, width, theme);

    out.push(Line::default());
    out.push(heading(format!("Feeds ({})", model.feeds.len()), theme));
    let name_w = model.feeds.iter().map(|f| for_terminal(&f.info.name).chars().count()).max().unwrap_or(0);
    let kind_w = model.feeds.iter().map(|f| f.info.kind.label().len()).max().unwrap_or(0);
    for f in &model.feeds {
        let name = for_terminal(&f.info.name).to_string();
        let label = format!("  {name}{}  {}", " ".repeat(name_w - name.chars().count()), f.info.kind.label());
        let url = f.about.url.as_deref().unwrap_or("URL not known");
        let before = out.len();
        field(&mut out, &label, 2 + name_w + 2 + kind_w + 1, url, Style::new(), width, theme);
        // The feed's name reads as a name, not as a dim label.
        if let Some(first) = out.get_mut(before) {
            first.spans[0] = Span::raw(label);
        }
    }
    out
}

/// A viewer: where the relay's stream is (secrets already `***`), its own
/// link, what it has read, and when the relay last announced itself.
fn nats_source(out: &mut Vec<Line<'static>>, model: &Model, clock: &Clock, width: usize, theme: &Theme) {
    use crate::model::nats_link::relay_silent_for;
    use crate::time::short_duration;
    use crate::ui::fmt::thousands;
    let Some(v) = &model.viewer else { return };
    let now = model.now;
    field(out, "source", LABEL, &format!("{} · stream {}", v.url, v.stream), Style::new(), width, theme);
    let since = humantime::format_duration(v.since);
    field(out, "started", LABEL, &format!("{since} back in the stream"), Style::new(), width, theme);
    let (link, style) = match model.nats_links.viewer.down_for(v.nats, now) {
        None => (v.nats.label().to_string(), theme.ok),
        Some(d) => (format!("{} for {}", v.nats.label(), short_duration(d)), theme.warn),
    };
    field(out, "NATS link", LABEL, &format!("{link} · {} reconnects", thousands(v.reconnects)), style, width, theme);
    let mut read = format!("{} messages · {} behind", thousands(v.received), thousands(v.behind));
    if v.unreadable > 0 {
        read.push_str(&format!(" · {} unreadable (another schema version)", thousands(v.unreadable)));
    }
    field(out, "read", LABEL, &read, Style::new(), width, theme);
    let (relay, style) = match (v.relay_heard, relay_silent_for(v, now)) {
        (Some(at), Some(silent)) => {
            (format!("silent for {} (last heard {})", short_duration(silent), clock.time_with_zone(at)), theme.warn)
        }
        (Some(at), None) => {
            (format!("heard {} ago, at {}", short_duration(now - at), clock.time_with_zone(at)), Style::new())
        }
        (None, _) => ("not heard".to_string(), theme.warn),
    };
    field(out, "relay", LABEL, &relay, style, width, theme);
    if let Some(e) = &v.last_error {
        field(out, "NATS error", LABEL, e, theme.error, width, theme);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_at_a_glance() {
        let cases =
            [(0, "0 B"), (999, "999 B"), (1_000, "1.0 kB"), (12_345_678, "12.3 MB"), (2_500_000_000, "2.50 GB")];
        for (bytes, want) in cases {
            assert_eq!(size(bytes), want);
        }
    }

    #[test]
    fn database_size_counts_the_write_ahead_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("feedtop.db");
        assert_eq!(RunInfo::db_size(&db), None, "no database yet");
        std::fs::write(&db, [0u8; 4096]).unwrap();
        assert_eq!(RunInfo::db_size(&db), Some(4096));
        std::fs::write(dir.path().join("feedtop.db-wal"), [0u8; 1000]).unwrap();
        assert_eq!(RunInfo::db_size(&db), Some(5096));
    }
}
