//! Issue 12, Alerts: rules from a config file, against loopback feeds, in
//! headless mode: every alert is in exactly one line's `alerts` array, and
//! in the `alerts` table.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::*;
use feedtop::app::FeedSpec;
use feedtop::config::FileConfig;
use feedtop::headless::{self, HeadlessOptions};

/// Collects headless lines; says "reader gone" (which ends the run
/// cleanly) once `done` holds for the lines so far.
struct Lines<F: Fn(&[serde_json::Value]) -> bool> {
    lines: Vec<serde_json::Value>,
    partial: Vec<u8>,
    done: F,
}

impl<F: Fn(&[serde_json::Value]) -> bool> Write for Lines<F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.lines.push(serde_json::from_slice(&line).expect("each line is JSON"));
        }
        if (self.done)(&self.lines) {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn alerts_of(lines: &[serde_json::Value]) -> Vec<serde_json::Value> {
    lines.iter().flat_map(|l| l["alerts"].as_array().cloned().unwrap_or_default()).collect()
}

#[tokio::test]
async fn headless_lines_carry_each_alert_once_and_the_table_has_them() {
    let sim = sim_with(fixture_lines(), None).await;
    // A port nothing listens on: that feed never comes up.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let (dir, db) = temp_db();
    let config = "\
[[alerts]]
on = \"strike-off\"
changes = [\"entered\"]
actions = [\"flash\"]

[[alerts]]
on = \"feed-down\"
after = \"1s\"
actions = [\"bell\"]
";
    let file = FileConfig::parse(config, &dir.path().join("config.toml")).unwrap();
    let feeds = vec![
        FeedSpec::companies_house(FEED, fast_settings(&sim.base_url(), None)),
        FeedSpec::companies_house("ch/dead", fast_settings(&dead_url, None)),
    ];
    let mut p = start_feeds(feeds, &db);
    p.set_alert_rules(file.alert_rules);

    let mut out = Lines {
        lines: Vec::new(),
        partial: Vec::new(),
        done: |lines: &[serde_json::Value]| {
            let Some(last) = lines.last() else { return false };
            let alerts = alerts_of(lines);
            let entered = last["strike_off"]["entered"].as_u64().unwrap_or(0);
            let strike_offs = alerts.iter().filter(|a| a["kind"] == "strike-off").count() as u64;
            last["feeds"][0]["events"] == 27
                && entered > 0
                && strike_offs == entered
                && alerts.iter().any(|a| a["kind"] == "feed-down")
        },
    };
    let options = HeadlessOptions { duration: Some(Duration::from_secs(20)), interval: Duration::from_millis(50) };
    headless::run(p, options, &mut out).await.unwrap();
    assert!((out.done)(&out.lines), "the run ended at its deadline, not with every alert: {:?}", out.lines.last());

    let alerts = alerts_of(&out.lines);
    let seqs: Vec<u64> = alerts.iter().map(|a| a["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=alerts.len() as u64).collect::<Vec<_>>(), "each alert once, in order");
    let down: Vec<&serde_json::Value> = alerts.iter().filter(|a| a["kind"] == "feed-down").collect();
    assert_eq!(down.len(), 1, "one alert for the outage: {down:?}");
    assert_eq!((down[0]["feed"].as_str(), down[0]["rule"].as_u64()), (Some("ch/dead"), Some(2)));
    let entered = alerts.iter().filter(|a| a["kind"] == "strike-off").all(|a| {
        a["feed"] == FEED
            && a["rule"] == 1
            && a["detail"].as_str().is_some_and(|d| d.ends_with(" entered the proposal to strike off"))
    });
    assert!(entered, "{alerts:?}");

    assert_eq!(stored_alerts(&db), alerts.len() as i64, "every alert is a row");
}

fn stored_alerts(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT count(*) FROM alerts", [], |r| r.get(0)).unwrap()
}
