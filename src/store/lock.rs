//! One feedtop per database: an exclusive advisory lock on `<db>.lock`.
//!
//! Two processes on one database would both open upstream connections with
//! the same key (Companies House allows one stream per key) and interleave
//! their writes. SQLite's own locks only serialise transactions, so the
//! first process takes `flock(LOCK_EX)` on a file beside the database for its
//! whole run and writes its pid there; a second one is refused with one line
//! naming that pid. The kernel drops the lock when the process ends, however
//! it ends (even `kill -9`), so a stale lock file never blocks a restart.
//!
//! The file is left in place at exit: removing it would let a process that
//! opened it just before the removal lock an unlinked file while a third one
//! creates and locks a new one, and both would run. Readers (`feedtop
//! strike-offs`) do not take the lock and work while feedtop runs.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// Held for as long as this process writes the database; dropping it
/// (closing the file) releases the lock.
#[derive(Debug)]
pub struct DbLock {
    _file: File,
    path: PathBuf,
}

/// The lock file that goes with a database: `feedtop.db` → `feedtop.db.lock`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl DbLock {
    /// Takes the lock for `db`, or says which process holds it.
    pub fn acquire(db: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|cause| StoreError::CreateDir { dir: dir.to_path_buf(), cause })?;
        }
        let path = lock_path(db);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| StoreError::LockFile { path: path.clone(), source })?;
        match try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = text.trim().parse::<u32>().ok();
                return Err(StoreError::InUse { path: db.to_path_buf(), pid });
            }
            Err(source) => return Err(StoreError::LockFile { path, source }),
        }
        // Ours now: say who holds it, for the message a second process shows.
        let written = file
            .set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|_| file.flush());
        if let Err(e) = written {
            // The lock still holds; only the pid in the message is missing.
            tracing::debug!("cannot write the pid into {}: {e}", path.display());
        }
        Ok(Self { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `Ok(false)` when another open file description holds the lock.
#[cfg(unix)]
fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only reads the descriptor, which `file` keeps open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Elsewhere there is no advisory lock: SQLite's own locking is all there is.
#[cfg(not(unix))]
fn try_lock_exclusive(_file: &File) -> std::io::Result<bool> {
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub").join("feedtop.db");
        let first = DbLock::acquire(&db).unwrap();
        assert_eq!(first.path(), dir.path().join("sub").join("feedtop.db.lock"));
        // A second open of the file is a second holder, even in one process.
        let e = DbLock::acquire(&db).unwrap_err();
        assert!(matches!(e, StoreError::InUse { pid: Some(p), .. } if p == std::process::id()), "{e}");
        assert!(e.to_string().contains(&format!("pid {}", std::process::id())), "{e}");
        drop(first);
        DbLock::acquire(&db).expect("free again once the holder is gone");
    }
}
