//! Issue 10, item 2: a live feed that has gone quiet is shown as stalled
//! (before the read-idle timeout reconnects it), not as healthy.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use feedtop::sim::companies_house::ConnPlan;

#[tokio::test]
async fn a_silent_stream_is_stalled_before_it_is_reconnected() {
    let sim = sim_with(fixture_lines(), None).await;
    // Headers, then nothing: no heartbeat, no event.
    sim.push_plan(ConnPlan::Stall);
    let mut settings = fast_settings(&sim.base_url(), None);
    settings.reconnect.stall_after = Duration::from_millis(300);
    settings.reconnect.read_timeout = Duration::from_secs(3);
    let (_dir, db) = temp_db();
    let mut p = start(settings, &db);
    // Being stalled is the absence of input, so poll the clock too.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    while !p.model().feeds[0].is_stalled(Utc::now()) {
        assert!(tokio::time::Instant::now() < deadline, "never stalled: {:?}", p.model().feeds[0].state);
        tokio::select! {
            input = p.next_input() => p.handle(input),
            _ = poll.tick() => {}
        }
    }
    p.tick(Utc::now()).unwrap();
    let line: serde_json::Value = serde_json::from_str(&feedtop::headless::report_line(p.model(), false)).unwrap();
    assert_eq!(line["feeds"][0]["state"], "stalled");
    let f = &p.model().feeds[0];
    assert_eq!(f.attempts, 1, "shown stalled before the read-idle reconnect: {:?} {:?}", f.last_error, f.counts);
    // Then the read-idle timeout reconnects, and the next connection serves.
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].attempts == 2 && m.feeds[0].counts.events == 27).await);
    p.tick(Utc::now()).unwrap();
    assert_eq!(p.model().feeds[0].state_label(p.model().now), "live");
    p.shutdown().await;
}
