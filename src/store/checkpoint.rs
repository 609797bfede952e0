//! Background checkpoints: copying the WAL into the database file on a
//! second thread, so the writer does not stop to do it.
//!
//! In WAL mode every commit appends pages to `feedtop.db-wal`; a checkpoint
//! copies them into `feedtop.db` and fsyncs it. SQLite runs one inside the
//! commit that takes the WAL past `wal_autocheckpoint` pages, on the writer's
//! thread. During a catch-up that was 30 % of the writer's time (perf), and
//! the writer is the pipeline's slowest stage.
//!
//! Here the writer *kicks* this thread every few megabytes it commits, and
//! the thread runs a PASSIVE checkpoint on its own connection: it copies
//! what is committed so far while the writer goes on appending, and never
//! blocks it (a passive checkpoint takes no lock the writer waits for). The
//! writer's own autocheckpoint stays on as the backstop, and it then finds
//! almost every page already copied, so the WAL is reset at the next commit
//! and stays small. A failure here is only logged: the writer reports store
//! errors, and its autocheckpoint still runs.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};

/// The checkpoint thread. [`Checkpointer::stop`] waits for it to end;
/// dropping the handle lets it end on its own once the current checkpoint is done.
pub struct Checkpointer {
    kick: SyncSender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Opens a second connection to `db` and starts the thread. `None` when
    /// the connection cannot be opened (the writer then checkpoints alone).
    pub fn spawn(db: &Path) -> Option<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match Connection::open_with_flags(db, flags) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!("no background checkpoints ({e}); the writer checkpoints alone");
                return None;
            }
        };
        // One pending kick is enough: kicks that arrive during a checkpoint
        // are covered by the next one.
        let (kick, kicks) = mpsc::sync_channel(1);
        let thread =
            std::thread::Builder::new().name("feedtop-checkpoint".into()).spawn(move || run(conn, kicks)).ok()?;
        Some(Self { kick, thread })
    }

    /// Asks for a checkpoint soon. Never blocks.
    pub fn kick(&self) {
        match self.kick.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => tracing::debug!("the checkpoint thread has stopped"),
        }
    }

    /// Ends the thread (after the checkpoint in progress, if any).
    pub fn stop(self) {
        drop(self.kick);
        let _ = self.thread.join();
    }
}

fn run(conn: Connection, kicks: Receiver<()>) {
    while kicks.recv().is_ok() {
        // (busy, frames in the WAL, frames copied); a passive checkpoint
        // copies what it can without waiting and reports the rest.
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match result {
            Ok((busy, log, copied)) => tracing::trace!("checkpoint: {copied} of {log} WAL frames copied (busy {busy})"),
            Err(e) => tracing::debug!("background checkpoint failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kick_copies_the_committed_wal_into_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let writer = crate::store::open(&db).unwrap();
        // The writer never checkpoints here: whatever reaches the file is the thread's doing.
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer
            .execute_batch(
                "CREATE TABLE t (x BLOB);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
                 INSERT INTO t SELECT zeroblob(4000) FROM n;",
            )
            .unwrap();
        let size_before = std::fs::metadata(&db).unwrap().len();

        let checkpointer = Checkpointer::spawn(&db).expect("second connection opens");
        checkpointer.kick();
        checkpointer.stop();

        let size_after = std::fs::metadata(&db).unwrap().len();
        assert!(
            size_after >= size_before + 200 * 4000,
            "the rows reached the database file: {size_before} → {size_after}"
        );
    }

    #[test]
    fn a_database_that_cannot_be_opened_means_no_thread() {
        assert!(Checkpointer::spawn(Path::new("/nonexistent-dir/feedtop.db")).is_none());
    }
}
