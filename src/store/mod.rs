//! SQLite storage: one file, WAL mode, one writer thread.
//!
//! Durable facts from the model (events, strike-off changes, gaps) reach the
//! writer in batches and are committed one transaction per batch together
//! with the feed's resume cursor, so a crash at any point either keeps an
//! event *and* its cursor or neither (and the event is fetched again).

pub mod checkpoint;
pub mod details;
pub mod enrich;
pub mod identity;
pub mod lock;
pub mod proposals;
pub mod queries;
pub mod schema;
pub mod writer;

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags};

pub use writer::{StoreHandle, WriterSettings};

/// What can go wrong opening or using the database, phrased for the user.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The causes below are named `cause`, not `source`: the message already
    // says it, and a `source` would be said again by `{:#}` (anyhow's chain).
    #[error("cannot create the database directory {dir}: {cause}; choose another place with --db PATH")]
    CreateDir { dir: PathBuf, cause: std::io::Error },
    #[error("the database {path} is locked by another process (another feedtop?); stop it or use --db PATH")]
    Locked { path: PathBuf },
    #[error("the database {path} is read-only; make it writable or use --db PATH")]
    ReadOnly { path: PathBuf },
    #[error("{path} is not a feedtop database (or it is corrupt); move it away or use --db PATH")]
    NotADatabase { path: PathBuf },
    #[error("{path} is another program's SQLite database ({tables} tables, none of them feedtop's); feedtop leaves it as it is: use --db PATH for feedtop's own file")]
    Foreign { path: PathBuf, tables: i64 },
    #[error("the database {path} is in use by another feedtop ({}); stop that one first, or use --db PATH for a separate database", .pid.map_or("pid unknown".to_string(), |p| format!("pid {p}")))]
    InUse { path: PathBuf, pid: Option<u32> },
    #[error("cannot use the lock file {path}: {source}; make its directory writable or use --db PATH")]
    LockFile { path: PathBuf, source: std::io::Error },
    #[error("the database {path} is damaged (SQLite: {detail}); move it away and restart (a new one is made), or use --db PATH")]
    Corrupt { path: PathBuf, detail: String },
    #[error("the disk holding {path} is full; free some space or use --db PATH")]
    DiskFull { path: PathBuf },
    #[error("the database {path} was written by a newer feedtop (schema {found}, this build knows {known}); upgrade feedtop or use --db PATH")]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("database {path}: {cause}")]
    Sqlite { path: PathBuf, cause: rusqlite::Error },
}

impl StoreError {
    /// Classifies a SQLite error by its code so the message says what to do.
    pub fn from_sqlite(path: &Path, e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let path = path.to_path_buf();
        match e.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => StoreError::Locked { path },
            Some(C::ReadOnly) => StoreError::ReadOnly { path },
            Some(C::NotADatabase) => StoreError::NotADatabase { path },
            Some(C::DatabaseCorrupt) => StoreError::Corrupt { path, detail: e.to_string() },
            Some(C::DiskFull) => StoreError::DiskFull { path },
            Some(C::CannotOpen) if is_read_only_dir(&path) => StoreError::ReadOnly { path },
            // SQLite reports a refused write (EROFS, EPERM on an immutable
            // file) as a plain I/O error; asking the file system says which.
            Some(C::SystemIoFailure) if !files_writable(&path) => StoreError::ReadOnly { path },
            _ => StoreError::Sqlite { path, cause: e },
        }
    }
}

/// Whether the database and its WAL (if there is one) can be opened for writing now.
fn files_writable(db: &Path) -> bool {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let writable = |file: &Path| match std::fs::OpenOptions::new().append(true).open(file) {
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem),
    };
    writable(db) && writable(Path::new(&wal))
}

fn is_read_only_dir(path: &Path) -> bool {
    path.parent()
        .and_then(|d| std::fs::metadata(if d.as_os_str().is_empty() { Path::new(".") } else { d }).ok())
        .is_some_and(|m| m.permissions().readonly())
}

/// Opens (creating if needed) and migrates the database at `path`.
///
/// Refused before anything is written: a file feedtop cannot write (SQLite
/// would quietly open it read-only, and every commit would then fail), and
/// another program's database (the page size and WAL settings below would
/// already rewrite its header).
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|cause| StoreError::CreateDir { dir: dir.to_path_buf(), cause })?;
    }
    if !files_writable(path) {
        return Err(StoreError::ReadOnly { path: path.to_path_buf() });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::from_sqlite(path, e))?;
    let sqlite = |e| StoreError::from_sqlite(path, e);
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(sqlite)? {
        return Err(StoreError::ReadOnly { path: path.to_path_buf() });
    }
    conn.busy_timeout(std::time::Duration::from_secs(2)).map_err(sqlite)?;
    schema::refuse_foreign(&conn, path)?;
    configure(&conn).map_err(sqlite)?;
    schema::migrate(&mut conn, path)?;
    Ok(conn)
}

/// Opens an existing database for reading only (the export commands).
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::from_sqlite(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(2)).map_err(|e| StoreError::from_sqlite(path, e))?;
    schema::check_version(&conn, path)?;
    Ok(conn)
}

/// The page size of a database feedtop creates.
const PAGE_SIZE: i64 = 16_384;
/// The WAL size at which the writer checkpoints (see [`checkpoint`]).
const WAL_CHECKPOINT_BYTES: i64 = 32 << 20;

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // Long enough to ride out another writer's commit, short enough that a
    // database held by another process is reported instead of hanging.
    conn.busy_timeout(std::time::Duration::from_secs(2))?;
    // 16 KB pages for a new database (SQLite's default is 4 KB). A company
    // event's row is ~1.5 KB: a 4 KB page holds two and wastes a quarter of
    // itself, a 16 KB page holds ten. Measured: 2,106 → 1,695 bytes per
    // event, and the writer writes that much less (PERFORMANCE.md). Only a
    // new, empty file takes it (before WAL mode is set); an existing
    // database keeps its page size.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!("SQLite refused WAL mode (got {mode}); writes will be slower");
    }
    // NORMAL in WAL mode: a power cut may lose the last commits, never corrupt.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Checkpoint when the WAL reaches 32 MB instead of SQLite's 1,000 pages:
    // each checkpoint ends in an fsync, and during a catch-up the writer was
    // waiting on them. Measured: 58k → 95k events/s (PERFORMANCE.md). The
    // setting counts pages, so it follows the file's actual page size.
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_BYTES / page_size.max(512))?;
    // An 8 MB page cache (SQLite's default is 2 MB): a batch of 2,000 full
    // events is about 4 MB, and with the default cache SQLite spilled pages
    // to the WAL in the middle of each transaction (pagerStress, 17 % of the
    // writer's time). Measured: 107k → 120k events/s (PERFORMANCE.md).
    conn.pragma_update(None, "cache_size", -8192)?;
    Ok(())
}

/// The stored form of a time: RFC 3339 UTC with milliseconds, so that text
/// order is time order.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pragma(conn: &Connection, name: &str) -> i64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_new_database_gets_large_pages_and_a_32_mb_checkpoint_mark() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("new.db")).unwrap();
        assert_eq!(pragma(&conn, "page_size"), PAGE_SIZE);
        assert_eq!(pragma(&conn, "wal_autocheckpoint") * PAGE_SIZE, WAL_CHECKPOINT_BYTES);
    }

    #[test]
    fn an_existing_database_keeps_its_page_size_and_the_mark_follows_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // A feedtop database from before the 16 KB pages: version 1, 4 KB.
            let old = Connection::open(&path).unwrap();
            old.execute_batch("PRAGMA page_size = 4096;").unwrap();
            old.execute_batch(schema::MIGRATIONS[0]).unwrap();
            old.pragma_update(None, "user_version", 1).unwrap();
        }
        let conn = open(&path).unwrap();
        assert_eq!(pragma(&conn, "page_size"), 4096);
        assert_eq!(pragma(&conn, "wal_autocheckpoint"), WAL_CHECKPOINT_BYTES / 4096);
        let tables: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'events'", [], |r| r.get(0)).unwrap();
        assert_eq!(tables, 1, "migrated as usual");
    }
}
