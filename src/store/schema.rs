//! Schema migrations keyed on `PRAGMA user_version`.
//!
//! Each entry of [`MIGRATIONS`] moves the schema one version up; a database is
//! migrated in one transaction, so a crash mid-migration leaves the old version.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

const V1: &str = "
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    feed          TEXT    NOT NULL,
    resource_kind TEXT    NOT NULL,
    resource_id   TEXT    NOT NULL,
    timepoint     INTEGER NOT NULL,
    event_type    TEXT    NOT NULL,
    published_at  TEXT,
    received_at   TEXT    NOT NULL,
    raw           TEXT    NOT NULL,
    -- Timepoint first: timepoints only grow, so new keys land at the right
    -- edge of the index instead of on random pages (catch-up speed).
    UNIQUE (timepoint, resource_kind, resource_id)
);
-- The last known state of each company seen on the stream.
CREATE TABLE companies (
    company_number        TEXT PRIMARY KEY,
    company_name          TEXT    NOT NULL,
    company_status        TEXT    NOT NULL,
    company_status_detail TEXT,
    timepoint             INTEGER NOT NULL,
    published_at          TEXT,
    updated_at            TEXT    NOT NULL
);
CREATE INDEX companies_by_detail ON companies (company_status_detail)
    WHERE company_status_detail IS NOT NULL;
CREATE TABLE strike_offs (
    id             INTEGER PRIMARY KEY,
    company_number TEXT    NOT NULL,
    company_name   TEXT    NOT NULL,
    change         TEXT    NOT NULL,
    from_status    TEXT,
    from_detail    TEXT,
    to_status      TEXT    NOT NULL,
    to_detail      TEXT,
    published_at   TEXT,
    timepoint      INTEGER NOT NULL,
    received_at    TEXT    NOT NULL,
    UNIQUE (company_number, timepoint)
);
CREATE TABLE gaps (
    id              INTEGER PRIMARY KEY,
    feed            TEXT NOT NULL,
    at              TEXT NOT NULL,
    after_timepoint INTEGER,
    reason          TEXT NOT NULL
);
-- Where each feed resumes: the last timepoint committed with its event.
CREATE TABLE cursors (
    feed       TEXT PRIMARY KEY,
    timepoint  INTEGER NOT NULL,
    updated_at TEXT    NOT NULL
);
";

const V2: &str = "
-- The latest quote per (feed, symbol): fills the tickers pane at start-up.
CREATE TABLE quotes_latest (
    feed             TEXT    NOT NULL,
    symbol           TEXT    NOT NULL,
    price            REAL    NOT NULL,
    change           REAL,
    change_percent   REAL,
    volume           REAL,
    high             REAL,
    low              REAL,
    open             REAL,
    market_status    TEXT,
    currency         TEXT,
    quote_time       TEXT,
    -- 1 when quote_time is the server's naive local time, not an absolute one.
    time_is_estimate INTEGER NOT NULL DEFAULT 0,
    received_at      TEXT    NOT NULL,
    PRIMARY KEY (feed, symbol)
);
-- Every quote received, pruned to the retention setting.
CREATE TABLE quote_history (
    id          INTEGER PRIMARY KEY,
    feed        TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    price       REAL NOT NULL,
    volume      REAL,
    quote_time  TEXT,
    received_at TEXT NOT NULL
);
CREATE INDEX quote_history_by_symbol ON quote_history (feed, symbol, id);
CREATE INDEX quote_history_by_time ON quote_history (received_at);
";

const V3: &str = "
-- Where each SSE feed resumes: the last event id stored with its quotes.
CREATE TABLE resume_ids (
    feed       TEXT PRIMARY KEY,
    event_id   TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
";

const V4: &str = "
-- The start-up query for the newest strike-off changes walks this backwards
-- and stops after 2,000 rows; without it SQLite sorted the whole table, and
-- start-up grew with the database (25 of 32 ms at 300,000 events).
CREATE INDEX strike_offs_by_timepoint ON strike_offs (timepoint, id);
";

const V5: &str = "
-- Every alert raised by an [[alerts]] rule (src/alerts): what fired, when,
-- about which feed, company or symbol, and what it did.
CREATE TABLE alerts (
    id       INTEGER PRIMARY KEY,
    at       TEXT    NOT NULL,
    rule     INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    feed     TEXT    NOT NULL,
    company  TEXT,
    symbol   TEXT,
    detail   TEXT    NOT NULL,
    actions  TEXT    NOT NULL
);
CREATE INDEX alerts_by_time ON alerts (at);
";

const V6: &str = "
-- Companies House REST calls still to make (issue 13): one row per company
-- and kind, so nothing is queued twice; profiles (priority 0) before
-- officers (1), first queued first within a priority. `start_index` is the
-- next officers page, so a restart continues the paging where it was.
CREATE TABLE enrich_queue (
    id             INTEGER PRIMARY KEY,
    company_number TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    priority       INTEGER NOT NULL,
    start_index    INTEGER NOT NULL DEFAULT 0,
    queued_at      TEXT    NOT NULL,
    UNIQUE (company_number, kind)
);
CREATE INDEX enrich_queue_order ON enrich_queue (priority, id);
-- The profile the REST API gave (found = 0: it said 404).
CREATE TABLE company_profiles (
    company_number        TEXT PRIMARY KEY,
    found                 INTEGER NOT NULL,
    company_name          TEXT,
    company_status        TEXT,
    company_status_detail TEXT,
    raw                   TEXT,
    fetched_at            TEXT NOT NULL
);
-- A company's officers, as of its last complete fetch (or the pages so far).
CREATE TABLE officers (
    company_number       TEXT    NOT NULL,
    position             INTEGER NOT NULL,
    name                 TEXT    NOT NULL,
    officer_role         TEXT,
    appointed_on         TEXT,
    resigned_on          TEXT,
    nationality          TEXT,
    occupation           TEXT,
    country_of_residence TEXT,
    birth_month          INTEGER,
    birth_year           INTEGER,
    address              TEXT,
    PRIMARY KEY (company_number, position)
);
-- When a company's officers were last fetched in full.
CREATE TABLE officer_fetches (
    company_number TEXT PRIMARY KEY,
    total          INTEGER NOT NULL,
    fetched_at     TEXT    NOT NULL
);
-- When recent REST calls started: the limit's window outlives a restart,
-- so a restart cannot start a second window's worth of calls at once.
CREATE TABLE enrich_calls (
    at TEXT NOT NULL
);
-- Set on a change when the REST profile contradicts it (entered, but the
-- profile says the company is not in the proposal): shown, not hidden.
ALTER TABLE strike_offs ADD COLUMN profile_disagrees TEXT;
";

const V7: &str = "
-- `feedtop relay` (issue 14): every message to publish, written in the
-- transaction of what it reports (an event with its cursor), so a relay
-- that crashes or loses NATS publishes it later instead of losing it. The
-- publisher reads in `seq` order; published rows are deleted once NATS
-- has acknowledged them. `msg_id` is the JetStream de-duplication id when
-- the message has one of its own (a timepoint, an SSE id); otherwise the
-- publisher makes one from `subject` and `seq`, which is never reused.
CREATE TABLE relay_outbox (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    msg_id  TEXT,
    payload BLOB NOT NULL
);
";

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7];

pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Refuses a database from a newer build instead of misreading it.
pub fn check_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let found = version(conn).map_err(|e| StoreError::from_sqlite(path, e))?;
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(StoreError::TooNew { path: path.to_path_buf(), found, known });
    }
    Ok(found)
}

/// The tables every feedtop database has had since version 1.
const FEEDTOP_TABLES: &[&str] = &["events", "companies", "strike_offs", "gaps", "cursors"];

/// Refuses another program's database instead of adding feedtop's tables to
/// it. Only reads: a database is feedtop's when it is empty (new) or has a
/// schema version and feedtop's version-1 tables. Migrations set the version
/// in the same transaction as their tables, so a feedtop database is never
/// at version 0 with tables in it.
pub fn refuse_foreign(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let err = |e| StoreError::from_sqlite(path, e);
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'", [], |r| {
            r.get(0)
        })
        .map_err(err)?;
    if tables == 0 {
        return Ok(());
    }
    let ours: i64 = conn
        .query_row(
            &format!(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ({})",
                FEEDTOP_TABLES.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ")
            ),
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    if version(conn).map_err(err)? == 0 || ours < FEEDTOP_TABLES.len() as i64 {
        return Err(StoreError::Foreign { path: path.to_path_buf(), tables });
    }
    Ok(())
}

pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let err = |e| StoreError::from_sqlite(path, e);
    let current = check_version(conn, path)?;
    if current == MIGRATIONS.len() as i64 {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(err)?;
    }
    tx.commit().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_reaches_the_latest_version_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        assert_eq!(version(&conn).unwrap(), MIGRATIONS.len() as i64);
        migrate(&mut conn, &path).unwrap();
        let tables: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_master WHERE type='table'", [], |r| r.get(0)).unwrap();
        assert_eq!(tables, 16, "V7 adds relay_outbox and, for its AUTOINCREMENT, sqlite_sequence");
    }

    #[test]
    fn a_version_1_database_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch(V1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute("INSERT INTO cursors VALUES ('ch/companies', 7, 'x')", []).unwrap();
        migrate(&mut conn, &path).unwrap();
        assert_eq!(version(&conn).unwrap(), MIGRATIONS.len() as i64);
        let kept: i64 = conn.query_row("SELECT timepoint FROM cursors", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 7);
        conn.execute("INSERT INTO quote_history (feed, symbol, price, received_at) VALUES ('w', 'PKN', 1.0, 'x')", [])
            .unwrap();
    }

    #[test]
    fn another_programs_database_is_refused_and_feedtops_own_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        refuse_foreign(&conn, &path).expect("an empty file is a new database");
        conn.execute_batch("CREATE TABLE notes (x); INSERT INTO notes VALUES ('mine');").unwrap();
        let e = refuse_foreign(&conn, &path).unwrap_err();
        assert!(matches!(e, StoreError::Foreign { tables: 1, .. }), "{e}");
        // Another program that numbers its schema too.
        conn.pragma_update(None, "user_version", 2).unwrap();
        assert!(matches!(refuse_foreign(&conn, &path), Err(StoreError::Foreign { .. })));

        let ours = dir.path().join("ours.db");
        let mut conn = Connection::open(&ours).unwrap();
        migrate(&mut conn, &ours).unwrap();
        refuse_foreign(&conn, &ours).expect("feedtop's own database");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        let e = migrate(&mut conn, &path).unwrap_err();
        assert!(matches!(e, StoreError::TooNew { found: 99, .. }), "{e}");
    }
}
