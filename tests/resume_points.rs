//! Issue 10, item 3: one bad line must not break resume.
//!
//! A hostile timepoint must neither become the stored cursor nor make later
//! real events look like duplicates; a 416 replaces the cursor; an SSE id that
//! cannot be sent back as `Last-Event-ID` is never kept.

mod common;

use common::*;
use feedtop::app::FeedSpec;
use feedtop::feeds::sse::SseSettings;
use feedtop::feeds::ConnState;
use feedtop::sim::companies_house::ConnPlan;
use feedtop::sim::sse::{SseConfig, SsePlan, SseShape, SseSim};

fn stored_cursor(db: &std::path::Path) -> Option<i64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    feedtop::store::queries::cursor(&conn, FEED).unwrap()
}

fn timepoints(lines: &[String]) -> Vec<i64> {
    event_keys(lines).into_iter().map(|k| k.1).collect()
}

const ABSURD: &str = r#"{"resource_kind":"company-profile","resource_id":"EVIL0001","data":{"company_number":"EVIL0001","company_name":"EVIL LTD","company_status":"active"},"event":{"timepoint":9223372036854775807,"published_at":"2025-06-10T09:00:00","type":"changed"}}"#;

#[tokio::test]
async fn one_absurd_timepoint_neither_becomes_the_cursor_nor_hides_later_events() {
    let lines = generated_lines(40, 31);
    let tps = timepoints(&lines);
    let last = *tps.last().unwrap();
    let sim = sim_with(lines.clone(), None).await;
    sim.push_plan(ConnPlan::Inject { after: 20, lines: vec![ABSURD.as_bytes().to_vec()] });
    let (_dir, db) = temp_db();

    let mut p = start(fast_settings(&sim.base_url(), None), &db);
    let arrived = drive_until(&mut p, WAIT, |m| m.feeds[0].last_timepoint == Some(last)).await;
    let f = p.model().feeds[0].clone();
    assert!(arrived, "every real event after the absurd one arrives: {:?}", f.counts);
    assert_eq!((f.counts.events, f.counts.duplicates), (41, 0), "40 real events and the absurd one, each once");
    p.shutdown().await;
    assert_eq!(db_counts(&db).events, 41);
    let cursor = stored_cursor(&db);
    assert_eq!(cursor, Some(tps[38]), "the cursor is a real timepoint (the newest is confirmed by the next one)");

    // While feedtop is down, more is published; the restart gets all of it.
    let more = generated_lines(45, 31)[40..].to_vec();
    for line in &more {
        sim.append(line.clone());
    }
    let newest = *timepoints(&more).last().unwrap();
    let mut p = start(fast_settings(&sim.base_url(), None), &db);
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].last_timepoint == Some(newest)).await);
    let f = &p.model().feeds[0];
    assert_eq!(f.counts.gaps, 0, "no 416: {:?}", f.last_error);
    assert_eq!(sim.requests().last().unwrap().timepoint, cursor, "resumed from the stored real timepoint");
    p.shutdown().await;
    assert_eq!(db_counts(&db).events, 46, "everything published while down is stored, nothing twice");
}

#[tokio::test]
async fn a_refused_timepoint_is_replaced_so_the_next_restart_resumes() {
    let lines = generated_lines(30, 32);
    let tps = timepoints(&lines);
    let sim = sim_with(lines.clone(), None).await;
    let (_dir, db) = temp_db();
    // A database whose cursor a hostile line set before this rule existed.
    {
        let conn = feedtop::store::open(&db).unwrap();
        conn.execute(
            "INSERT INTO cursors (feed, timepoint, updated_at) VALUES (?1, ?2, '2025-06-10T09:00:00.000Z')",
            (FEED, i64::MAX),
        )
        .unwrap();
    }
    let mut p = start(fast_settings(&sim.base_url(), None), &db);
    let last = *tps.last().unwrap();
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].last_timepoint == Some(last)).await);
    assert_eq!(p.model().feeds[0].counts.gaps, 1, "the absurd cursor is refused once: a gap");
    p.shutdown().await;
    assert_eq!(stored_cursor(&db), Some(tps[28]), "the 416 replaced the cursor with the live stream's");

    // The next restart resumes from it: no second 416, no second gap.
    sim.append(generated_lines(31, 32)[30].clone());
    let mut p = start(fast_settings(&sim.base_url(), None), &db);
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].counts.events >= 2 && m.feeds[0].state == ConnState::Live).await);
    let second_run = sim.requests();
    assert_eq!(second_run.last().unwrap().timepoint, Some(tps[28]), "{:?}", p.model().feeds[0].last_error);
    p.shutdown().await;
    assert_eq!(db_counts(&db).gaps, 1);
}

async fn sse_sim() -> SseSim {
    SseSim::start(SseConfig {
        token: "t".into(),
        shape: SseShape::Documented,
        publish_every: std::time::Duration::from_millis(50),
        heartbeat_after: std::time::Duration::from_secs(30),
        retry: None,
        seed: Some(7),
    })
    .await
    .unwrap()
}

fn sse_settings(sim: &SseSim) -> SseSettings {
    let mut s = SseSettings::new(sim.url());
    s.token = feedtop::feeds::secret::ApiKey::new("t");
    s.reconnect = fast_reconnect();
    s
}

#[tokio::test]
async fn an_sse_id_with_a_control_character_is_not_kept() {
    let sim = sse_sim().await;
    let payload = r#"{"type":"data","topic":"prices","data":{"instrument_id":"EVIL","price":1.5}}"#;
    // The last id before the connection ends carries a control character.
    sim.push_plan(SsePlan::RawThenCut { raw: format!("event: data\nid: 4\u{1}2\ndata: {payload}\n\n") });
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::sse("prices", sse_settings(&sim))], &db);
    // The reconnect must be built and go live, and events keep coming.
    let ok = drive_until(&mut p, WAIT, |m| m.feeds[0].attempts >= 2 && m.feeds[0].counts.events >= 5).await;
    let f = p.model().feeds[0].clone();
    assert!(ok, "the feed reconnected and goes on: {:?} {:?}", f.state, f.last_error);
    assert_eq!(f.counts.unusable_resume_ids, 1);
    assert!(sim.requests()[1..].iter().all(|r| r.last_event_id.as_deref().is_none_or(|id| !id.contains('\u{1}'))));
    p.shutdown().await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored = feedtop::store::queries::resume_id(&conn, "prices").unwrap();
    assert!(stored.as_deref().is_some_and(|id| id.parse::<u64>().is_ok()), "only a sendable id is stored: {stored:?}");
}

#[tokio::test]
async fn a_stored_sse_id_that_cannot_be_sent_does_not_stop_the_feed_after_a_restart() {
    let sim = sse_sim().await;
    let (_dir, db) = temp_db();
    {
        let conn = feedtop::store::open(&db).unwrap();
        conn.execute(
            "INSERT INTO resume_ids (feed, event_id, updated_at) VALUES ('prices', ?1, '2025-06-10T09:00:00.000Z')",
            ["4\u{1}2"],
        )
        .unwrap();
    }
    let mut p = start_feeds(vec![FeedSpec::sse("prices", sse_settings(&sim))], &db);
    let ok = drive_until(&mut p, WAIT, |m| m.feeds[0].counts.events >= 3).await;
    assert!(ok, "connected without the stored id: {:?}", p.model().feeds[0].last_error);
    assert_eq!(sim.requests()[0].last_event_id, None);
    p.shutdown().await;
}
