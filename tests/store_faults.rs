//! Database trouble while running: the feed keeps being watched, the problem
//! is shown, nothing is half-written, and writing resumes when it clears.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_shown_and_writing_resumes_when_it_clears() {
    let lines = fixture_lines();
    let sim = sim_with(lines[..10].to_vec(), None).await;
    let (_dir, db) = temp_db();
    let mut p = start(fast_settings(&sim.base_url(), None), &db);
    assert!(drive_until(&mut p, WAIT, |m| m.store.events_written >= 9).await, "first events stored");

    // Another process takes the write lock and keeps it.
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE; INSERT INTO gaps (feed, at, reason) VALUES ('x', 'x', 'held');").unwrap();
    for line in &lines[10..] {
        sim.append(line.clone());
    }
    // The stream is still read and shown while nothing can be written.
    let ok = drive_until(&mut p, WAIT, |m| {
        m.store.error.as_deref().is_some_and(|e| e.contains("locked"))
            && m.feeds[0].last_timepoint == Some(LAST_TIMEPOINT)
    })
    .await;
    assert!(ok, "store: {:?}, feed at {:?}", p.model.store.error, p.model.feeds[0].last_timepoint);
    assert_eq!(p.model.tally.entered, 6, "strike-off detection goes on");

    // The lock goes away: the held batch is written, the message clears.
    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    let ok = drive_until(&mut p, WAIT, |m| m.store.error.is_none() && m.store.events_written == 27).await;
    assert!(ok, "store: {:?}, written {}", p.model.store.error, p.model.store.events_written);
    let (_, summary) = p.shutdown().await;
    assert_eq!(summary.writer.unwritten, 0);
    let c = db_counts(&db);
    assert_eq!((c.events, c.strike_offs, c.gaps), (27, 11, 0), "nothing lost, nothing half-written");
}
