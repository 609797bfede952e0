//! Database trouble while running: the feed keeps being watched, the problem
//! is shown, nothing is half-written, and writing resumes when it clears.

mod common;

use std::path::Path;
use std::time::Instant;

use common::*;
use feedtop::app::Pipeline;

/// One line for RELIABILITY.md: how long writing took to catch up once the
/// fault was gone (`cargo test --test store_faults -- --nocapture`).
fn report(shown: &str, fault: &str, p: &Pipeline, cleared: Instant) {
    let written = p.model().store.events_written;
    eprintln!("RELIABILITY store | {fault} | shown: {shown}");
    eprintln!(
        "RELIABILITY store | {fault} | all {written} events written {} ms after it cleared",
        cleared.elapsed().as_millis()
    );
}

/// The fixture through a database fault: its first 10 events are stored,
/// then `break_db` breaks the database (`None`: the machine cannot, skip),
/// the other 17 arrive and must be read and shown while the store error
/// contains `expect`; then `repair` undoes the fault and all 27 events,
/// 11 strike-off changes and nothing else must be in an intact database.
async fn fixture_through_a_fault<F>(
    fault: &str,
    expect: &[&str],
    break_db: impl FnOnce(&Path) -> Option<F>,
    repair: impl FnOnce(F),
) {
    let lines = fixture_lines();
    let sim = sim_with(lines[..10].to_vec(), None).await;
    let (_dir, db) = temp_db();
    let mut p = start(fast_settings(&sim.base_url(), None), &db);
    assert!(drive_until(&mut p, WAIT, |m| m.store.events_written >= 9).await, "first events stored");

    let Some(broken) = break_db(&db) else { return };
    for line in &lines[10..] {
        sim.append(line.clone());
    }
    // The stream is still read and shown while nothing can be written.
    let ok = drive_until(&mut p, WAIT, |m| {
        m.store.error.as_deref().is_some_and(|e| expect.iter().all(|x| e.contains(x)))
            && m.feeds[0].last_timepoint == Some(LAST_TIMEPOINT)
    })
    .await;
    assert!(ok, "store: {:?}, feed at {:?}", p.model().store.error, p.model().feeds[0].last_timepoint);
    let shown = p.model().store.error.clone().unwrap_or_default();
    assert_eq!(p.model().tally.entered, 6, "strike-off detection goes on");
    assert!(p.model().store.events_written < 27, "nothing was written while broken");

    // The fault goes away: the held facts are written, the message clears.
    repair(broken);
    let cleared = Instant::now();
    let ok = drive_until(&mut p, WAIT, |m| m.store.error.is_none() && m.store.events_written == 27).await;
    assert!(ok, "store: {:?}, written {}", p.model().store.error, p.model().store.events_written);
    report(&shown, fault, &p, cleared);
    let (_, summary) = p.shutdown().await;
    assert_eq!(summary.writer.unwritten, 0);
    assert_intact(&db);
    let c = db_counts(&db);
    assert_eq!((c.events, c.strike_offs, c.gaps), (27, 11, 0), "nothing lost, nothing half-written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_shown_and_writing_resumes_when_it_clears() {
    // Another process takes the write lock and keeps it.
    let lock = |db: &Path| {
        let locker = rusqlite::Connection::open(db).unwrap();
        locker
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO gaps (feed, at, reason) VALUES ('x', 'x', 'held');")
            .unwrap();
        Some(locker)
    };
    let unlock = |locker: rusqlite::Connection| locker.execute_batch("ROLLBACK").unwrap();
    fixture_through_a_fault("locked by another process", &["locked"], lock, unlock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_database_is_shown_and_writing_resumes_once_repaired() {
    // Another program damages the file: the events table now points at a
    // page past the end of the database ("database disk image is malformed").
    let damage = |db: &Path| {
        let vandal = rusqlite::Connection::open(db).unwrap();
        let root: i64 =
            vandal.query_row("SELECT rootpage FROM sqlite_schema WHERE name = 'events'", [], |r| r.get(0)).unwrap();
        set_root_page(&vandal, "events", 1 << 30);
        Some((vandal, root))
    };
    // Repaired (here: the pointer put back).
    let repair = |(vandal, root): (rusqlite::Connection, i64)| set_root_page(&vandal, "events", root);
    let fault = "corrupt (table points past the end of the file)";
    fixture_through_a_fault(fault, &["is damaged", "move it away"], damage, repair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_shown_and_writing_resumes_when_writable_again() {
    // The files turn read-only under the running process (chattr +i: even
    // root's open descriptors cannot write).
    let freeze = |db: &Path| privileged::Immutable::set(&[db.to_path_buf(), db.with_extension("db-wal")]);
    fixture_through_a_fault("read-only (chattr +i)", &["read-only"], freeze, drop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_file_put_at_the_database_path_is_never_overwritten() {
    let lines = fixture_lines();
    let sim = sim_with(lines[..10].to_vec(), None).await;
    let (dir, db) = temp_db();
    let mut p = start(fast_settings(&sim.base_url(), None), &db);
    assert!(drive_until(&mut p, WAIT, |m| m.store.events_written >= 9).await, "first events stored");

    // Someone else's file takes the path (rename replaces it in one step).
    let theirs = dir.path().join("theirs");
    std::fs::write(&theirs, b"not feedtop's").unwrap();
    std::fs::rename(&theirs, &db).unwrap();
    for line in &lines[10..] {
        sim.append(line.clone());
    }
    let ok = drive_until(&mut p, WAIT, |m| {
        m.store.error.as_deref().is_some_and(|e| e.contains("replaced by another file"))
            && m.feeds[0].last_timepoint == Some(LAST_TIMEPOINT)
    })
    .await;
    assert!(ok, "store: {:?}, feed at {:?}", p.model().store.error, p.model().feeds[0].last_timepoint);
    assert_eq!(p.model().store.events_written, 0, "nothing of this run is in the file at the path");
    assert_eq!(std::fs::read(&db).unwrap(), b"not feedtop's", "never overwritten");

    // Once it is moved away, the database is written back there, all of it.
    std::fs::remove_file(&db).unwrap();
    let ok = drive_until(&mut p, WAIT, |m| {
        m.store.events_written == 27 && m.store.error.as_deref().is_some_and(|e| e.contains("recreated it there"))
    })
    .await;
    assert!(ok, "store: {:?}, written {}", p.model().store.error, p.model().store.events_written);
    let (_, summary) = p.shutdown().await;
    assert_eq!((summary.writer.unwritten, summary.writer.events_written), (0, 27));
    assert_intact(&db);
    let c = db_counts(&db);
    assert_eq!((c.events, c.strike_offs, c.gaps), (27, 11, 0), "nothing lost, nothing half-written");
}

/// Rewrites a table's root page in the schema, as a buggy or hostile program
/// could, and bumps the schema cookie so other connections notice.
fn set_root_page(conn: &rusqlite::Connection, table: &str, page: i64) {
    let cookie: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0)).unwrap();
    conn.execute_batch("PRAGMA writable_schema = ON").unwrap();
    conn.execute("UPDATE sqlite_schema SET rootpage = ?1 WHERE name = ?2", rusqlite::params![page, table]).unwrap();
    conn.execute_batch(&format!("PRAGMA schema_version = {}; PRAGMA writable_schema = OFF", cookie + 1)).unwrap();
}

fn assert_intact(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_shown_and_writing_resumes_when_space_is_freed() {
    let Some(disk) = privileged::SmallDisk::mount("640k") else { return };
    let db = disk.path().join("feedtop.db");
    let lines = generated_lines(600, 11);
    let last = timepoint_of(lines.last().unwrap());
    let sim = sim_with(lines.clone(), None).await;
    let mut p = start(fast_settings(&sim.base_url(), None), &db);

    // The disk fills up part way; the stream is still read to the end.
    let ok = drive_until(&mut p, WAIT, |m| {
        m.store.error.as_deref().is_some_and(|e| e.contains("is full; free some space"))
            && m.feeds[0].last_timepoint == last
    })
    .await;
    assert!(ok, "store: {:?}, feed at {:?}", p.model().store.error, p.model().feeds[0].last_timepoint);
    let shown = p.model().store.error.clone().unwrap_or_default();
    assert!(p.model().store.events_written < 600, "the disk was meant to fill up");

    disk.grow("64m");
    let cleared = Instant::now();
    let ok = drive_until(&mut p, WAIT, |m| m.store.error.is_none() && m.store.events_written == 600).await;
    assert!(ok, "store: {:?}, written {}", p.model().store.error, p.model().store.events_written);
    report(&shown, "disk full", &p, cleared);
    let (_, summary) = p.shutdown().await;
    assert_eq!(summary.writer.unwritten, 0);
    assert_intact(&db);
    assert_eq!(stored_event_keys(&db), sorted(event_keys(&lines)), "each event exactly once");
}

fn sorted(mut keys: Vec<(String, i64)>) -> Vec<(String, i64)> {
    keys.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    keys
}
