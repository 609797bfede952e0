//! Where the publisher's messages come from.
//!
//! The relay numbers each message as it is made and hands it to the
//! publisher at once ([`Stager`], on the pipeline's side), so it goes out
//! without waiting for the commit of its row, and a checkpoint's fsync
//! never sits between a feed and the viewers. The same message is stored in
//! the outbox table in the transaction of what it reports; the publisher
//! reads the table ([`Source`]) only when it is behind: at start (what the
//! last run left), after NATS failed (again from the first message not
//! acknowledged), or when the hand-over queue was full.
//!
//! Both paths carry the same `seq` and `Nats-Msg-Id`, fixed when the message
//! is made, so whichever path a message takes, and however often it is
//! sent, JetStream keeps it once.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags};
use tokio::sync::mpsc;

use super::subjects::{self, OutboxMsg, OutboxRow};

/// Messages handed over and not yet taken by the publisher, at most: about
/// a second of a busy relay. Past it they wait for the publisher to read
/// them from the table (the pipeline never waits).
const HAND_OVER: usize = 4096;

/// The pipeline's side: numbers messages and hands them over.
pub struct Stager {
    next_seq: i64,
    /// This run's random number, in the ids of messages without their own.
    run: u64,
    fresh: mpsc::Sender<Arc<OutboxMsg>>,
    /// The newest `seq` given: every row up to it is in the table or on
    /// its way there.
    staged: Arc<AtomicI64>,
}

impl Stager {
    /// Numbers `row` as the next outbox message and hands it to the
    /// publisher. The caller stores the returned message (its `seq` and id
    /// are final) in the transaction of what it reports.
    pub fn stage(&mut self, row: OutboxRow) -> Arc<OutboxMsg> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let msg_id = row.msg_id.unwrap_or_else(|| subjects::run_seq_id(&row.subject, self.run, seq));
        let msg = Arc::new(OutboxMsg { seq, subject: row.subject, msg_id, payload: row.payload.into() });
        self.staged.store(seq, Ordering::Release);
        // Full: the publisher is behind and reads this one from the table.
        let _ = self.fresh.try_send(msg.clone());
        msg
    }
}

/// The publisher's side: the messages to send next, in `seq` order.
pub struct Source {
    /// Taken while a blocking query runs on the blocking pool.
    conn: Option<Connection>,
    db: PathBuf,
    fresh: mpsc::Receiver<Arc<OutboxMsg>>,
    /// The pipeline is gone: nothing more will be handed over.
    fresh_closed: bool,
    /// Handed over, not sent yet, in `seq` order.
    early: VecDeque<Arc<OutboxMsg>>,
    staged: Arc<AtomicI64>,
    /// The newest `seq` in the table when last looked (rows written by
    /// something other than the stager: an older run's, a benchmark's).
    stored_newest: i64,
}

/// Opens the outbox of the database at `db`: the pipeline's stager, the
/// publisher's source, and the `seq` everything up to which is published.
pub fn open(db: &Path) -> rusqlite::Result<(Stager, Source, i64)> {
    let conn = open_reader(db)?;
    let published = published_through(&conn)?;
    let newest = newest_seq(&conn)?;
    let staged = Arc::new(AtomicI64::new(newest));
    let (tx, rx) = mpsc::channel(HAND_OVER);
    let stager = Stager { next_seq: newest + 1, run: rand::random(), fresh: tx, staged: staged.clone() };
    let source = Source {
        conn: Some(conn),
        db: db.to_path_buf(),
        fresh: rx,
        fresh_closed: false,
        early: VecDeque::new(),
        staged,
        stored_newest: newest,
    };
    Ok((stager, source, published))
}

impl Source {
    /// The newest message made: the publisher has work while it has not
    /// sent this one.
    pub fn newest(&self) -> i64 {
        self.staged.load(Ordering::Acquire).max(self.stored_newest)
    }

    /// Messages made after `acked`. Exact: the numbers have no holes (the
    /// stager gives each once, in order, and the writer retries a failed
    /// transaction with the same rows).
    pub fn backlog(&self, acked: i64) -> u64 {
        self.newest().saturating_sub(acked).max(0) as u64
    }

    /// Looks at the table for rows the stager did not make: a lookup, on
    /// the blocking pool (the writer may hold the file), and kept off the
    /// hot loop by the caller. A failure keeps what was known.
    pub async fn look_at_table(&mut self) {
        if let Ok(n) = self.blocking(newest_seq).await {
            self.stored_newest = self.stored_newest.max(n);
        }
    }

    /// The next messages after `after`, in order, up to `limit`: handed
    /// over ones when they follow on, otherwise what the table has
    /// committed. Empty when there is nothing to send yet.
    pub async fn next(&mut self, after: i64, limit: usize) -> rusqlite::Result<Vec<Arc<OutboxMsg>>> {
        self.take_handed_over(after, limit);
        if self.early.front().is_some_and(|m| m.seq == after + 1) {
            let mut out = Vec::new();
            while out.len() < limit {
                match self.early.front() {
                    Some(m) if m.seq == after + 1 + out.len() as i64 => out.extend(self.early.pop_front()),
                    _ => break,
                }
            }
            return Ok(out);
        }
        if after >= self.newest() {
            return Ok(Vec::new());
        }
        let rows = self.blocking(move |conn| read_after(conn, after, limit)).await?;
        Ok(rows.into_iter().map(Arc::new).collect())
    }

    /// Waits until a message is handed over (cancel-safe); never, once the
    /// pipeline is gone.
    pub async fn handed_over(&mut self) {
        if self.fresh_closed {
            return std::future::pending().await;
        }
        match self.fresh.recv().await {
            Some(m) => self.early.push_back(m),
            None => self.fresh_closed = true,
        }
    }

    /// Moves handed-over messages into `early` (up to `limit` held), and
    /// drops those sent already.
    fn take_handed_over(&mut self, after: i64, limit: usize) {
        while self.early.len() < limit && !self.fresh_closed {
            match self.fresh.try_recv() {
                Ok(m) => self.early.push_back(m),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.fresh_closed = true,
            }
        }
        while self.early.front().is_some_and(|m| m.seq <= after) {
            self.early.pop_front();
        }
    }

    /// Deletes the published rows, on the blocking pool (a second's worth
    /// of rows is a write the async threads should not wait on).
    pub async fn delete_through(&mut self, seq: i64) -> rusqlite::Result<usize> {
        self.blocking(move |conn| conn.execute("DELETE FROM relay_outbox WHERE seq <= ?1", [seq])).await
    }

    async fn blocking<T: Send + 'static>(
        &mut self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> rusqlite::Result<T> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => open_reader(&self.db)?,
        };
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = query(&conn);
            (conn, result)
        })
        .await
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        self.conn = Some(conn);
        result
    }
}

fn open_reader(db: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(Duration::from_secs(2))?;
    Ok(conn)
}

/// Committed outbox rows after `seq`, oldest first. A row an older build
/// stored without an id gets the one that build published it with.
fn read_after(conn: &Connection, seq: i64, limit: usize) -> rusqlite::Result<Vec<OutboxMsg>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, subject, msg_id, payload FROM relay_outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![seq, limit as i64], |r| {
        let (seq, subject): (i64, String) = (r.get(0)?, r.get(1)?);
        let msg_id: Option<String> = r.get(2)?;
        let payload: Vec<u8> = r.get(3)?;
        Ok(OutboxMsg {
            seq,
            msg_id: msg_id.unwrap_or_else(|| subjects::seq_id(&subject, seq)),
            subject,
            payload: payload.into(),
        })
    })?;
    rows.collect()
}

/// The newest `seq` ever given in this database (kept by SQLite's
/// AUTOINCREMENT counter after its row is deleted), 0 for none.
fn newest_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(seq) FROM relay_outbox), 0),
                    COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'relay_outbox'), 0))",
        [],
        |r| r.get(0),
    )
}

/// The `seq` before the first unpublished row: everything up to it is out
/// (deleted, or never written).
fn published_through(conn: &Connection) -> rusqlite::Result<i64> {
    let first: Option<i64> = conn.query_row("SELECT MIN(seq) FROM relay_outbox", [], |r| r.get(0))?;
    match first {
        Some(first) => Ok(first - 1),
        // Empty: every row ever written is published.
        None => newest_seq(conn),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> (tempfile::TempDir, PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        crate::store::schema::migrate(&mut conn, &path).unwrap();
        (dir, path, conn)
    }

    fn insert(conn: &Connection, n: usize) {
        for _ in 0..n {
            conn.execute("INSERT INTO relay_outbox (subject, payload) VALUES ('s', x'00')", []).unwrap();
        }
    }

    fn store(conn: &Connection, msg: &OutboxMsg) {
        conn.execute(
            "INSERT INTO relay_outbox (seq, subject, msg_id, payload) VALUES (?1, ?2, ?3, ?4)",
            params![msg.seq, msg.subject, msg.msg_id, &msg.payload[..]],
        )
        .unwrap();
    }

    fn row(n: u8) -> OutboxRow {
        OutboxRow { subject: "feedtop.q.quotes.X".into(), msg_id: None, payload: vec![n] }
    }

    fn seqs(msgs: &[Arc<OutboxMsg>]) -> Vec<i64> {
        msgs.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn a_restart_starts_after_what_was_published_and_numbers_after_every_row_ever_made() {
        let (_dir, path, conn) = outbox();
        let (stager, source, published) = open(&path).unwrap();
        assert_eq!((published, stager.next_seq, source.backlog(published)), (0, 1, 0), "new");
        insert(&conn, 10);
        conn.execute("DELETE FROM relay_outbox WHERE seq <= 4", []).unwrap();
        let (stager, source, published) = open(&path).unwrap();
        assert_eq!((published, stager.next_seq, source.backlog(published)), (4, 11, 6));
        conn.execute("DELETE FROM relay_outbox", []).unwrap();
        let (stager, _, published) = open(&path).unwrap();
        assert_eq!((published, stager.next_seq), (10, 11), "all out: numbers are never reused");
    }

    #[tokio::test]
    async fn handed_over_messages_go_out_before_their_commit_and_the_table_fills_a_gap() {
        let (_dir, path, conn) = outbox();
        let (mut stager, mut source, published) = open(&path).unwrap();
        let made: Vec<_> = (0..5).map(|n| stager.stage(row(n))).collect();
        // Nothing committed yet: the first three go from memory.
        assert_eq!(seqs(&source.next(published, 3).await.unwrap()), [1, 2, 3]);
        // NATS failed after 1 was acknowledged: 2 and 3 are gone from memory,
        // and not committed yet, so there is nothing to send until they are.
        assert!(source.next(1, 100).await.unwrap().is_empty());
        for m in &made {
            store(&conn, m);
        }
        let again = source.next(1, 100).await.unwrap();
        assert_eq!(seqs(&again), [2, 3, 4, 5], "from the table, then on");
        assert_eq!(again[0].msg_id, made[1].msg_id, "the same id either way: JetStream keeps it once");
        // The table caught up past what memory holds: memory goes on after it.
        let more = stager.stage(row(9));
        assert_eq!(seqs(&source.next(5, 100).await.unwrap()), [more.seq]);
        assert_eq!(source.backlog(5), 1);
    }

    #[tokio::test]
    async fn a_full_hand_over_loses_nothing_it_waits_in_the_table() {
        let (_dir, path, conn) = outbox();
        let (mut stager, mut source, _) = open(&path).unwrap();
        let made: Vec<_> = (0..HAND_OVER + 10).map(|n| stager.stage(row(n as u8))).collect();
        for m in &made {
            store(&conn, m);
        }
        let mut sent = 0;
        while let Ok(batch) = source.next(sent, 1000).await {
            let Some(last) = batch.last() else { break };
            assert_eq!(batch[0].seq, sent + 1, "in order, no gap");
            sent = last.seq;
        }
        assert_eq!(sent, made.len() as i64);
        assert!(source.next(sent, 1000).await.unwrap().is_empty());
    }

    #[test]
    fn a_row_an_older_build_stored_without_an_id_keeps_the_id_it_was_published_with() {
        let (_dir, _path, conn) = outbox();
        insert(&conn, 1);
        let rows = read_after(&conn, 0, 10).unwrap();
        assert_eq!(rows[0].msg_id, subjects::seq_id("s", 1));
    }
}
