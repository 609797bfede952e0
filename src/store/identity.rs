//! Whether the database path still names the file the writer has open.
//!
//! An open SQLite connection keeps writing into its file after the file is
//! deleted or renamed: commits succeed, nothing reaches the path, and at exit
//! the unlinked file is gone. The writer therefore notes which file it opened
//! (device and inode) and compares that with the path at least once a second
//! and after every commit. When the path no longer names it, the connection
//! still holds the whole database (the unlinked file stays readable while it
//! is open), so [`recreate`] copies it back to the path with `VACUUM INTO`:
//! everything committed, cursors included, so the resume point and the
//! stored events agree in the new file.

use std::path::Path;

use rusqlite::Connection;

/// The file a path names: device and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

/// What the path names now, compared with the file the writer has open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// The path names the open file.
    Same,
    /// Nothing at the path (deleted, or renamed away).
    Missing,
    /// Another file is at the path now.
    Replaced,
}

impl FileId {
    /// The file at `path`; `None` when there is none.
    pub fn of(path: &Path) -> std::io::Result<Option<Self>> {
        match std::fs::metadata(path) {
            Ok(meta) => Ok(Some(Self::from_meta(&meta))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    #[cfg(unix)]
    fn from_meta(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self { dev: meta.dev(), ino: meta.ino() }
    }

    /// Without inode numbers every file looks the same: no check.
    #[cfg(not(unix))]
    fn from_meta(_meta: &std::fs::Metadata) -> Self {
        Self { dev: 0, ino: 0 }
    }

    /// Compares the path with this (the open) file. A path that cannot be
    /// examined (permissions) counts as the same: only a definite answer
    /// leads to copying the database.
    pub fn check(&self, path: &Path) -> PathState {
        match Self::of(path) {
            Ok(Some(now)) if now == *self => PathState::Same,
            Ok(Some(_)) => PathState::Replaced,
            Ok(None) => PathState::Missing,
            Err(e) => {
                tracing::debug!("cannot examine {}: {e}", path.display());
                PathState::Same
            }
        }
    }
}

/// Writes a complete copy of the database `conn` has open to `path`, which
/// must not exist. The caller then closes `conn` and opens `path`.
pub fn recreate(conn: &Connection, path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        return Err(format!("{} exists (another file)", path.display()));
    }
    let target = path.to_str().ok_or_else(|| format!("{} is not valid UTF-8", path.display()))?;
    // Through a parameter: the path may contain quotes.
    conn.execute("VACUUM INTO ?1", [target]).map_err(|e| {
        // A half-written copy must not be taken for the database.
        let _ = std::fs::remove_file(path);
        e.to_string()
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_database_is_noticed_and_copied_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.db");
        let conn = crate::store::open(&path).unwrap();
        conn.execute("INSERT INTO cursors VALUES ('ch/companies', 42, 'x')", []).unwrap();
        let id = FileId::of(&path).unwrap().unwrap();
        assert_eq!(id.check(&path), PathState::Same);

        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        assert_eq!(id.check(&path), PathState::Missing);
        // The open connection still commits into the unlinked file.
        conn.execute("INSERT INTO cursors VALUES ('sse', 7, 'x')", []).unwrap();

        recreate(&conn, &path).unwrap();
        assert_eq!(id.check(&path), PathState::Replaced, "a new file at the path");
        drop(conn);
        let copy = crate::store::open(&path).unwrap();
        let cursors: i64 = copy.query_row("SELECT sum(timepoint) FROM cursors", [], |r| r.get(0)).unwrap();
        assert_eq!(cursors, 49, "both commits, the one after the delete too");
    }

    #[test]
    fn an_existing_file_at_the_path_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.db");
        let conn = crate::store::open(&path).unwrap();
        let other = dir.path().join("other");
        std::fs::write(&other, b"someone else's").unwrap();
        assert!(recreate(&conn, &other).is_err());
        assert_eq!(std::fs::read(&other).unwrap(), b"someone else's");
    }
}
