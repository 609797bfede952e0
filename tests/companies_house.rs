//! The Companies House feed end to end against the loopback simulator:
//! tallies, every failure status, cuts, idling, resume and restart.

mod common;

use std::time::Duration;

use common::*;
use feedtop::feeds::ConnState;
use feedtop::model::Tally;
use feedtop::sim::companies_house::ConnPlan;

const FIXTURE_TALLY: Tally = Tally { entered: 6, withdrawn: 3, struck_off: 2 };

fn caught_up(m: &feedtop::model::Model) -> bool {
    m.feeds[0].last_timepoint == Some(LAST_TIMEPOINT)
}

#[tokio::test]
async fn fixture_gives_the_expected_tallies_and_storage() {
    let sim = sim_with(fixture_lines(), None).await;
    let (_dir, db) = temp_db();
    let mut p = start(fast_settings(&sim.base_url(), None), &db);
    assert!(drive_until(&mut p, WAIT, caught_up).await, "never caught up");
    let f = &p.model().feeds[0];
    assert_eq!(f.state, ConnState::Live);
    assert_eq!((f.counts.events, f.counts.unknown_kinds, f.counts.malformed), (27, 1, 1));
    assert_eq!(p.model().tally, FIXTURE_TALLY);
    let (_, summary) = p.shutdown().await;
    assert_eq!(summary.writer.unwritten, 0);
    let c = db_counts(&db);
    assert_eq!((c.events, c.strike_offs, c.gaps), (27, 11, 0));
}

#[tokio::test]
async fn cut_mid_line_reconnects_and_resumes_without_loss_or_duplicate() {
    let lines = fixture_lines();
    let sim = sim_with(lines.clone(), None).await;
    sim.push_plan(ConnPlan::CutAfter { events: 5, mid_line: true });
    let (_dir, db) = temp_db();
    let mut p = start(fast_settings(&sim.base_url(), None), &db);
    assert!(drive_until(&mut p, WAIT, caught_up).await);
    let f = &p.model().feeds[0];
    assert!(f.reconnects() >= 1);
    assert_eq!(f.counts.events, 27, "every event exactly once");
    assert!(f.counts.duplicates >= 1, "the replayed resume event is dropped");
    assert!(f.last_error.as_deref().unwrap_or("").contains("partial line"), "{:?}", f.last_error);
    // The second request resumed from the last confirmed resume point: the
    // event before the 5th line's (feeds::resume_mark).
    let requests = sim.requests();
    assert_eq!(requests[0].timepoint, None);
    let delivered = event_keys(&lines[..5]);
    assert_eq!(requests[1].timepoint, Some(delivered[delivered.len() - 2].1));
    assert_eq!(p.model().tally, FIXTURE_TALLY);
    p.shutdown().await;
    assert_eq!(db_counts(&db).events, 27);
}

#[tokio::test]
async fn rate_limit_honours_retry_after_then_recovers() {
    let sim = sim_with(fixture_lines(), None).await;
    sim.push_plan(ConnPlan::Status {
        code: 429,
        retry_after: Some("1".into()),
        body: String::new(),
        content_type: "text/plain".into(),
    });
    let (_dir, db) = temp_db();
    let mut p = start(fast_settings(&sim.base_url(), None), &db);
    assert!(drive_until(&mut p, WAIT, |m| matches!(m.feeds[0].state, ConnState::Backoff { .. })).await);
    let f = &p.model().feeds[0];
    assert!(f.last_error.as_deref().unwrap().contains("429"));
    let wait = f.state.retry_at().unwrap() - f.state_since.unwrap();
    assert!(wait >= chrono::TimeDelta::milliseconds(900), "Retry-After: 1 honoured, waited {wait}");
    assert!(drive_until(&mut p, WAIT, caught_up).await);
    assert_eq!(p.model().tally, FIXTURE_TALLY);
    // What Enter on the feed shows: each change with why, and the feed as configured.
    let f = &p.model().feeds[0];
    let changes: Vec<_> = f.history.newest_first().map(|c| (c.state.label(), c.reason.as_deref())).collect();
    assert!(
        matches!(changes[..], [("live", None), ("connecting", None), ("backoff", Some(r)), ("connecting", None)] if r.contains("429")),
        "{changes:?}"
    );
    assert_eq!(f.about.url.as_deref(), Some(&*format!("{}/companies", sim.base_url().trim_end_matches('/'))));
    assert!(f.about.settings.iter().any(|s| s == &("stalled after", "3s".to_string())), "{:?}", f.about.settings);
    p.shutdown().await;
}

#[tokio::test]
async fn server_errors_back_off_and_recover() {
    let sim = sim_with(fixture_lines(), None).await;
    let html = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>".to_string();
    sim.push_plan(ConnPlan::Status {
        code: 503,
        retry_after: None,
        body: html.clone(),
        content_type: "text/html".into(),
    });
    sim.push_plan(ConnPlan::Status { code: 502, retry_after: None, body: html, content_type: "text/html".into() });
    sim.push_plan(ConnPlan::Refuse);
    let (_dir, db) = temp_db();
    let mut p = start(fast_settings(&sim.base_url(), None), &db);
    assert!(drive_until(&mut p, WAIT, caught_up).await);
    let f = &p.model().feeds[0];
    assert_eq!(f.reconnects(), 3);
    assert_eq!(f.counts.events, 27);
    // The refused connection never got as far as a request.
    assert_eq!((sim.connections(), sim.requests().len()), (4, 3));
    p.shutdown().await;
}

#[tokio::test]
async fn timepoint_too_old_records_a_gap_and_goes_live() {
    let lines = fixture_lines();
    let sim = sim_with(lines.clone(), None).await;
    let (_dir, db) = temp_db();
    // A first run stores a cursor at the 2nd event (the 3rd, the newest, is
    // confirmed as a resume point only by a later one: feeds::resume_mark).
    {
        let first = sim_with(lines[..3].to_vec(), None).await;
        let mut p = start(fast_settings(&first.base_url(), None), &db);
        let tp3 = timepoint_of(&lines[2]);
        assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].last_timepoint == tp3).await);
        p.shutdown().await;
    }
    // The server has since dropped everything before the 10th event.
    sim.trim_before(timepoint_of(&lines[9]).unwrap());
    let mut p = start(fast_settings(&sim.base_url(), None), &db);
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].counts.gaps == 1 && m.feeds[0].state == ConnState::Live).await);
    let requests = sim.requests();
    assert_eq!(requests[0].timepoint, timepoint_of(&lines[1]), "resumed from the stored cursor");
    assert_eq!(requests[1].timepoint, None, "after 416 the timepoint is dropped");
    assert!(p.model().feeds[0].last_error.as_deref().unwrap().contains("416"));
    p.shutdown().await;
    assert_eq!(db_counts(&db).gaps, 1);
}

#[tokio::test]
async fn refused_key_shows_auth_failed_and_retries_slowly() {
    let sim = sim_with(fixture_lines(), Some("right-key")).await;
    let (_dir, db) = temp_db();
    let mut p = start(fast_settings(&sim.base_url(), Some("wrong-key-123")), &db);
    assert!(drive_until(&mut p, WAIT, |m| matches!(m.feeds[0].state, ConnState::AuthFailed { .. })).await);
    let f = &p.model().feeds[0];
    let error = f.last_error.clone().unwrap();
    assert!(error.contains("401") && error.contains("CH_STREAMING_API_KEY"), "{error}");
    assert!(!error.contains("wrong-key-123"), "the key never appears in messages");
    // It keeps retrying, slowly: a second attempt comes after auth_retry.
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].attempts >= 2).await);
    assert!(sim.wait_for_requests(2, WAIT).await);
    let r = sim.requests();
    assert!(r.iter().all(|r| !r.authorized));
    assert!(r[1].at.duration_since(r[0].at) >= Duration::from_millis(250), "auth retries are slow");
    p.shutdown().await;
}

#[tokio::test]
async fn right_key_is_sent_as_basic_auth() {
    let sim = sim_with(fixture_lines(), Some("right-key")).await;
    let (_dir, db) = temp_db();
    let mut p = start(fast_settings(&sim.base_url(), Some("right-key")), &db);
    assert!(drive_until(&mut p, WAIT, caught_up).await);
    assert!(sim.requests()[0].authorized);
    p.shutdown().await;
    let stored = std::fs::read(&db).unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains("right-key"), "the key is not stored");
}

#[tokio::test]
async fn idle_stream_past_the_read_timeout_reconnects() {
    let sim = sim_with(fixture_lines(), None).await;
    sim.push_plan(ConnPlan::Stall);
    let (_dir, db) = temp_db();
    let mut settings = fast_settings(&sim.base_url(), None);
    settings.reconnect.read_timeout = Duration::from_millis(300);
    let mut p = start(settings, &db);
    assert!(drive_until(&mut p, WAIT, caught_up).await);
    let f = &p.model().feeds[0];
    assert_eq!(f.reconnects(), 1);
    assert!(f.last_error.as_deref().unwrap().contains("read-idle timeout"), "{:?}", f.last_error);
    p.shutdown().await;
}

#[tokio::test]
async fn reconnect_command_drops_a_live_connection() {
    let sim = sim_with(fixture_lines(), None).await;
    sim.push_plan(ConnPlan::Stall);
    let (_dir, db) = temp_db();
    let mut p = start(fast_settings(&sim.base_url(), None), &db);
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].state == ConnState::Live).await);
    p.reconnect(&p.model().feeds[0].info.name);
    assert!(drive_until(&mut p, WAIT, caught_up).await);
    assert_eq!(p.model().feeds[0].reconnects(), 1);
    assert_eq!(sim.requests().len(), 2);
    p.shutdown().await;
}

#[tokio::test]
async fn restart_resumes_from_the_stored_timepoint_without_duplicates() {
    let lines = fixture_lines();
    let (_dir, db) = temp_db();
    let sim = sim_with(lines[..15].to_vec(), None).await;
    let tp15 = timepoint_of(&lines[14]);
    {
        let mut p = start(fast_settings(&sim.base_url(), None), &db);
        assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].last_timepoint == tp15).await);
        p.shutdown().await;
    }
    for line in &lines[15..] {
        sim.append(line.clone());
    }
    let mut p = start(fast_settings(&sim.base_url(), None), &db);
    // History is on screen before the first new event.
    assert!(!p.model().strike_offs.is_empty());
    assert!(drive_until(&mut p, WAIT, caught_up).await);
    // Resumed from the event before the 15th: the 15th was the newest, so no
    // later event confirmed it (feeds::resume_mark). It comes once more; the
    // database already has it.
    let first_run = event_keys(&lines[..15]);
    assert_eq!(sim.requests().last().unwrap().timepoint, Some(first_run[first_run.len() - 2].1));
    assert_eq!(p.model().feeds[0].counts.duplicates, 1, "the inclusive replay");
    p.shutdown().await;
    let c = db_counts(&db);
    assert_eq!((c.events, c.strike_offs), (27, 11), "nothing lost, nothing doubled across the restart");
}
