//! Shared helpers for the integration tests: a sim server, fast feed timings,
//! and a driver that runs the pipeline until a condition holds or a deadline
//! passes (never a fixed sleep).
#![allow(dead_code)]

pub mod privileged;

use std::path::{Path, PathBuf};
use std::time::Duration;

use feedtop::app::{FeedSpec, Pipeline, PipelineConfig};
use feedtop::feeds::companies_house::{ApiKey, ChSettings};
use feedtop::feeds::supervisor::Reconnect;
use feedtop::model::Model;
use feedtop::sim::companies_house::{ChSim, ChSimConfig};
use feedtop::store::WriterSettings;

pub const FIXTURE: &str = include_str!("../fixtures/ch-companies-sample.ndjson");
pub const LAST_TIMEPOINT: i64 = 82417342;
pub const FEED: &str = "ch/companies";

/// The fixture's event lines (blank keep-alives dropped: the sim sends its own).
pub fn fixture_lines() -> Vec<String> {
    FIXTURE.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

/// Timepoint of the n-th fixture event line (1-based, blank lines skipped,
/// the malformed line 7 included in the numbering).
pub fn timepoint_of(line: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v["event"]["timepoint"].as_i64()
}

pub async fn sim_with(backlog: Vec<String>, key: Option<&str>) -> ChSim {
    ChSim::start(ChSimConfig {
        expected_key: key.map(str::to_string),
        backlog,
        live_from_start: true,
        heartbeat: Duration::from_secs(30),
        ..ChSimConfig::default()
    })
    .await
    .expect("sim starts on loopback")
}

/// Timings shrunk so that recovery paths finish in milliseconds.
pub fn fast_settings(url: &str, key: Option<&str>) -> ChSettings {
    let mut s = ChSettings::new(url, "/companies", key.and_then(ApiKey::new));
    s.reconnect = fast_reconnect();
    s.rate_limit_wait = Duration::from_millis(200);
    s
}

pub fn fast_reconnect() -> Reconnect {
    Reconnect {
        read_timeout: Duration::from_secs(5),
        stall_after: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(2),
        response_timeout: Duration::from_secs(2),
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(200),
        healthy_after: Duration::from_secs(1),
        auth_retry: Duration::from_millis(300),
    }
}

pub fn start(settings: ChSettings, db: &Path) -> Pipeline {
    start_feeds(vec![FeedSpec::companies_house(FEED, settings)], db)
}

pub fn start_feeds(feeds: Vec<FeedSpec>, db: &Path) -> Pipeline {
    Pipeline::start(PipelineConfig {
        feeds,
        db_path: db.to_path_buf(),
        latency_window: Duration::from_secs(300),
        demo: false,
        writer: WriterSettings::default(),
    })
    .expect("pipeline starts")
}

/// Runs the pipeline until `done(model)` or `within` has passed.
pub async fn drive_until(p: &mut Pipeline, within: Duration, done: impl Fn(&Model) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if done(p.model()) {
            return true;
        }
        tokio::select! {
            input = p.next_input() => p.handle(input),
            _ = tokio::time::sleep_until(deadline) => return done(p.model()),
        }
    }
}

pub fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("feedtop.db");
    (dir, path)
}

pub fn db_counts(db: &Path) -> feedtop::store::queries::Counts {
    let conn = rusqlite::Connection::open(db).unwrap();
    feedtop::store::queries::counts(&conn).unwrap()
}

pub const WAIT: Duration = Duration::from_secs(20);

/// `(resource_id, timepoint)` of each event line that parses, in order.
pub fn event_keys(lines: &[String]) -> Vec<(String, i64)> {
    lines
        .iter()
        .filter_map(|l| feedtop::feeds::companies_house::parse_event(l.as_bytes().to_vec()).ok())
        .map(|ev| (ev.resource_id, ev.timepoint))
        .collect()
}

/// `(resource_id, timepoint)` of every stored event, ordered by timepoint.
pub fn stored_event_keys(db: &Path) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT resource_id, timepoint FROM events ORDER BY timepoint, resource_id").unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

/// Invented company events from a fixed seed, published one second apart
/// from a fixed time: the same lines on every run.
pub fn generated_lines(count: usize, seed: u64) -> Vec<String> {
    use chrono::TimeZone;
    let mut gen = feedtop::sim::company_gen::CompanyGen::new(Some(seed));
    let start = chrono::Utc.with_ymd_and_hms(2025, 6, 10, 9, 0, 0).unwrap();
    (0..count).map(|i| gen.next_event(start + chrono::TimeDelta::seconds(i as i64))).collect()
}

/// Reads a child's stdout as JSON lines on a thread of its own, into a
/// channel (a line that is not JSON fails the test).
pub fn json_lines(
    stdout: std::process::ChildStdout,
    capacity: usize,
) -> tokio::sync::mpsc::Receiver<serde_json::Value> {
    use std::io::{BufRead, BufReader};
    let (tx, lines) = tokio::sync::mpsc::channel(capacity);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if tx.blocking_send(value).is_err() {
                break;
            }
        }
    });
    lines
}
