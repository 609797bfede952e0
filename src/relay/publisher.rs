//! The relay's publisher: reads the outbox in `seq` order and publishes
//! each row to JetStream with its de-duplication id, a window of acks in
//! flight, so a backlog goes out at the speed of the link and not one round
//! trip per message. A row counts as published once JetStream has
//! acknowledged it and every row before it; the pipeline then deletes them
//! (`Fact::Published`). While NATS is unreachable nothing is dropped: rows
//! wait in the outbox, and the publisher starts again from the first one
//! not acknowledged (JetStream drops the repeats by their ids).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture};
use rusqlite::{params, Connection, OpenFlags};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use feedtop_proto::wire::RecordingHeader;

use super::nats::{self, ConnectionEvents, NatsSettings};
use super::subjects::{self, OutboxRow};
use super::LinkState;

/// Rows read from the outbox at a time.
const BATCH: usize = 4096;
/// Publishes awaiting their ack at most.
const WINDOW: usize = 4096;
/// How often the relay says it is alive (and which feeds it has).
const HEARTBEAT: Duration = Duration::from_secs(30);
/// How often the backlog is read at most: once a second is all the
/// screen and `/metrics` show. (It was a `COUNT(*)` over every unacked row,
/// a third of a 200,000-message catch-up when run per batch; now it is a
/// lookup, see `count_after`, and the limit only keeps it off the hot loop.)
const COUNT_EVERY: Duration = Duration::from_secs(1);
/// The longest wait between attempts while NATS refuses or is away.
const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// What the relay's side of NATS looks like, for the headless line,
/// `/metrics` and `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStatus {
    /// The server(s), secrets shown as `***`.
    pub url: String,
    pub stream: String,
    pub nats: LinkState,
    pub reconnects: u64,
    /// Messages JetStream acknowledged in this run.
    pub published: u64,
    /// Messages stored in the outbox and not yet acknowledged.
    pub backlog: u64,
    pub last_error: Option<String>,
    /// Since when every attempt to publish (or to set the stream up) has
    /// failed, while the link itself may look connected: a server that
    /// refuses (no JetStream, a full disk, permissions) stops the relay as
    /// surely as a cut cable.
    pub failing_since: Option<chrono::DateTime<chrono::Utc>>,
}

/// The running publisher.
pub struct Publisher {
    pub status: watch::Receiver<RelayStatus>,
    /// Every outbox row up to this `seq` is acknowledged.
    pub acked: watch::Receiver<i64>,
    finish_by: watch::Sender<Option<Instant>>,
    task: JoinHandle<()>,
}

impl Publisher {
    /// Starts publishing the outbox of the database at `db`. `committed` is
    /// told after every commit of the store writer (new rows may be there).
    pub fn spawn(
        settings: NatsSettings,
        db: &Path,
        committed: Arc<Notify>,
        header: RecordingHeader,
    ) -> Result<Self, rusqlite::Error> {
        let conn = open_reader(db)?;
        let start = published_through(&conn)?;
        let initial = RelayStatus {
            url: settings.shown_url(),
            stream: settings.stream.clone(),
            nats: LinkState::Connecting,
            reconnects: 0,
            published: 0,
            backlog: count_after(&conn, start)?,
            last_error: None,
            failing_since: None,
        };
        let (status_tx, status) = watch::channel(initial);
        let (acked_tx, acked) = watch::channel(start);
        let (finish_by, finish_rx) = watch::channel(None);
        let run = Run {
            settings,
            conn: std::sync::Mutex::new(Some(conn)),
            db: db.to_path_buf(),
            committed,
            header,
            status: status_tx,
            acked: acked_tx,
            finish_by: finish_rx,
            events: Arc::new(ConnectionEvents::default()),
            counted_at: None,
        };
        Ok(Self { status, acked, finish_by, task: tokio::spawn(run.run()) })
    }

    /// Publishes what is left in the outbox for `within` at most, then
    /// stops. What is still unpublished stays in the outbox for the next run.
    pub async fn finish(self, within: Duration) -> RelayStatus {
        let _ = self.finish_by.send(Some(Instant::now() + within));
        // The task bounds itself by the deadline; the grace covers a
        // blocking database read in progress.
        if tokio::time::timeout(within + Duration::from_secs(1), self.task).await.is_err() {
            tracing::warn!("the NATS publisher did not stop in time");
        }
        self.status.borrow().clone()
    }
}

/// What is published instead of a message over the server's size limit (a
/// Companies House line may be up to 4 MiB; NATS takes 1 MiB by default): a
/// notice on the feed, logged here, shown by viewers in their Log.
fn oversize_notice(row: &OutboxRow, max_payload: usize) -> Vec<u8> {
    let original = feedtop_proto::wire::decode(&row.payload).ok();
    let feed = original.as_ref().map_or_else(|| feedtop_proto::FeedId::from("?"), |m| m.feed.clone());
    let at = original.as_ref().map_or_else(chrono::Utc::now, |m| m.at);
    let text = format!(
        "a message of {} bytes was not relayed: over the NATS server's max_payload of {max_payload} bytes",
        row.payload.len()
    );
    tracing::warn!("{feed}: {text}");
    let notice = feedtop_proto::FeedMsg { feed, at, kind: feedtop_proto::FeedMsgKind::Notice(text) };
    feedtop_proto::wire::encode(&notice)
}

fn open_reader(db: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(Duration::from_secs(2))?;
    Ok(conn)
}

/// Outbox rows after `seq`, oldest first.
fn read_after(conn: &Connection, seq: i64, limit: usize) -> rusqlite::Result<Vec<(i64, OutboxRow)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, subject, msg_id, payload FROM relay_outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![seq, limit as i64], |r| {
        Ok((r.get(0)?, OutboxRow { subject: r.get(1)?, msg_id: r.get(2)?, payload: r.get(3)? }))
    })?;
    rows.collect()
}

/// Rows after `seq`. The outbox's sequence numbers have no holes (an
/// AUTOINCREMENT key whose counter rolls back with a failed transaction, and
/// only rows up to the acknowledged one are ever deleted), so this is the
/// newest one's number less `seq`: a lookup, not a count of a long backlog.
fn count_after(conn: &Connection, seq: i64) -> rusqlite::Result<u64> {
    let newest: Option<i64> = conn.query_row("SELECT MAX(seq) FROM relay_outbox", [], |r| r.get(0))?;
    Ok(newest.map_or(0, |n| n.saturating_sub(seq).max(0) as u64))
}

/// The `seq` before the first unpublished row: everything up to it is out
/// (deleted, or never written).
fn published_through(conn: &Connection) -> rusqlite::Result<i64> {
    let first: Option<i64> = conn.query_row("SELECT MIN(seq) FROM relay_outbox", [], |r| r.get(0))?;
    if let Some(first) = first {
        return Ok(first - 1);
    }
    // Empty: every row ever written is published.
    conn.query_row("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'relay_outbox'), 0)", [], |r| {
        r.get(0)
    })
}

struct Run {
    settings: NatsSettings,
    /// Taken while a blocking read runs on the blocking pool (a mutex only
    /// so the task's shared borrows are `Send`; nothing else touches it).
    conn: std::sync::Mutex<Option<Connection>>,
    db: PathBuf,
    committed: Arc<Notify>,
    header: RecordingHeader,
    status: watch::Sender<RelayStatus>,
    acked: watch::Sender<i64>,
    finish_by: watch::Receiver<Option<Instant>>,
    events: Arc<ConnectionEvents>,
    /// When the backlog was last counted (see [`COUNT_EVERY`]).
    counted_at: Option<Instant>,
}

/// Publishes sent and not yet acknowledged, kept across batches: the next
/// batch is read and sent while the last one's acks come back, instead of
/// the pipe running dry at the end of each batch.
#[derive(Default)]
struct InFlight {
    acks: VecDeque<(i64, PublishAckFuture)>,
    /// The last `seq` sent (the next read starts after it).
    sent: i64,
}

/// How a batch ended.
enum Sent {
    All,
    /// Stopped at a failure; the rows after the last acknowledged one go again.
    Failed(String),
}

impl Run {
    async fn run(mut self) {
        let client = match nats::connect(&self.settings, "feedtop relay", false, self.events.clone()).await {
            Ok(c) => c,
            Err(e) => {
                // Only a bad setting gets here (a credentials file that
                // cannot be read): with retries on, an absent server does not.
                tracing::error!("{e}; the relay keeps storing every message for when this is fixed");
                self.set(|s| s.last_error = Some(e.to_string()));
                return;
            }
        };
        let js = jetstream::new(client.clone());
        let mut acked: i64 = *self.acked.borrow();
        let mut in_flight = InFlight::default();
        let mut stream_ready = false;
        let mut backoff = Duration::from_millis(250);
        let mut heartbeat_due = Instant::now();
        loop {
            self.refresh(&client, acked).await;
            let finishing = *self.finish_by.borrow();
            if finishing.is_some_and(|by| Instant::now() >= by) {
                break;
            }
            if client.connection_state() != async_nats::connection::State::Connected {
                self.pause(Duration::from_millis(200), finishing).await;
                continue;
            }
            if !stream_ready {
                match self.ensure_stream(&js).await {
                    Ok(()) => {
                        stream_ready = true;
                        backoff = Duration::from_millis(250);
                        self.succeeded();
                    }
                    Err(e) => {
                        self.failed(e);
                        self.pause(backoff, finishing).await;
                        backoff = (backoff * 2).min(BACKOFF_CAP);
                        continue;
                    }
                }
            }
            if Instant::now() >= heartbeat_due {
                heartbeat_due = Instant::now() + HEARTBEAT;
                let info = feedtop_proto::wire::encode_header(&self.header);
                // Best effort: the next heartbeat says it again.
                if let Err(e) = js.publish(subjects::INFO_SUBJECT, info.into()).await {
                    tracing::debug!("relay heartbeat: {e}");
                }
            }
            let rows = match self.read(in_flight.sent.max(acked)).await {
                Ok(rows) => rows,
                Err(e) => {
                    self.failed(format!("reading the outbox: {e}"));
                    self.pause(BACKOFF_CAP, finishing).await;
                    continue;
                }
            };
            if rows.is_empty() && !in_flight.acks.is_empty() {
                // Nothing more to send for now: collect the acks, so the
                // outbox and the backlog catch up.
                let drained = self.drain(&mut in_flight, &mut acked).await;
                if matches!(drained, Sent::All) && self.status.borrow().failing_since.is_some() {
                    self.succeeded();
                }
                if let Sent::Failed(why) = drained {
                    self.failed(why);
                    in_flight = InFlight::default();
                    stream_ready = false;
                    self.pause(backoff, finishing).await;
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
                continue;
            }
            if rows.is_empty() {
                if finishing.is_some() {
                    break; // Everything is out.
                }
                let wake = heartbeat_due.min(Instant::now() + Duration::from_secs(1));
                tokio::select! {
                    _ = self.committed.notified() => {}
                    _ = tokio::time::sleep_until(wake) => {}
                    _ = self.finish_by.changed() => {}
                }
                continue;
            }
            let max_payload = client.server_info().max_payload;
            match self.publish(&js, &rows, &mut in_flight, &mut acked, max_payload).await {
                Sent::All => {
                    backoff = Duration::from_millis(250);
                    if self.status.borrow().failing_since.is_some() {
                        self.succeeded();
                    }
                }
                Sent::Failed(why) => {
                    self.failed(why);
                    // From the first row not acknowledged again (JetStream
                    // drops the repeats by their ids).
                    in_flight = InFlight::default();
                    // The stream may have been deleted or changed under us.
                    stream_ready = false;
                    self.pause(backoff, finishing).await;
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        }
        self.counted_at = None;
        self.refresh(&client, acked).await;
        // The pipeline's store is closed by now: mark what went out, so the
        // next start does not publish it again.
        if acked > 0 {
            if let Err(e) = self.delete_through(acked).await {
                tracing::debug!("the outbox keeps published rows for the next start to skip: {e}");
            }
        }
    }

    /// Sleeps, cut short by a shutdown deadline.
    async fn pause(&mut self, wait: Duration, finishing: Option<Instant>) {
        let until = finishing.map_or(Instant::now() + wait, |by| by.min(Instant::now() + wait));
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = self.finish_by.changed() => {}
        }
    }

    fn set(&self, change: impl FnOnce(&mut RelayStatus)) {
        self.status.send_modify(change);
    }

    fn failed(&self, why: String) {
        let why = self.settings.redact(&why);
        let same = self.status.borrow().last_error.as_deref() == Some(why.as_str());
        if !same {
            tracing::warn!("NATS: {why}; messages wait in the outbox and go out in order when this clears");
        }
        self.set(|s| {
            s.last_error = Some(why);
            s.failing_since.get_or_insert_with(chrono::Utc::now);
        });
    }

    /// An attempt succeeded: whatever failed before has cleared.
    fn succeeded(&self) {
        self.set(|s| {
            s.last_error = None;
            s.failing_since = None;
        });
    }

    /// The link state and the backlog, as they are now.
    async fn refresh(&mut self, client: &async_nats::Client, acked: i64) {
        let state = match client.connection_state() {
            async_nats::connection::State::Connected => LinkState::Connected,
            async_nats::connection::State::Pending => LinkState::Connecting,
            async_nats::connection::State::Disconnected => LinkState::Disconnected,
        };
        let due = self.counted_at.is_none_or(|at| at.elapsed() >= COUNT_EVERY);
        let backlog = if due {
            self.counted_at = Some(Instant::now());
            self.with_conn(|conn| count_after(conn, acked).ok()).flatten()
        } else {
            None
        };
        let reconnects = self.events.reconnects();
        let was = self.status.borrow().nats;
        if was != state {
            let url = self.settings.shown_url();
            match (was, state) {
                (_, LinkState::Connected) => tracing::info!("NATS: connected to {url}"),
                (LinkState::Connected, _) => {
                    tracing::warn!("NATS: lost {url}; messages wait in the outbox, in order, until it is back")
                }
                _ => {}
            }
        }
        self.set(|s| {
            s.nats = state;
            s.reconnects = reconnects;
            if let Some(b) = backlog {
                s.backlog = b;
            }
        });
    }

    async fn ensure_stream(&self, js: &jetstream::Context) -> Result<(), String> {
        let wanted = self.settings.stream_config();
        match js.get_stream(&wanted.name).await {
            Ok(mut stream) => {
                let info = stream.info().await.map_err(|e| e.to_string())?;
                let have = &info.config;
                let differs = have.max_age != wanted.max_age
                    || have.max_bytes != wanted.max_bytes
                    || have.num_replicas != wanted.num_replicas
                    || !have.subjects.iter().any(|s| s == subjects::ALL);
                if differs {
                    let mut update = have.clone();
                    update.max_age = wanted.max_age;
                    update.max_bytes = wanted.max_bytes;
                    update.num_replicas = wanted.num_replicas;
                    if !update.subjects.iter().any(|s| s == subjects::ALL) {
                        update.subjects.push(subjects::ALL.to_string());
                    }
                    match js.update_stream(update).await {
                        Ok(_) => tracing::info!("NATS stream {} updated to the configured retention", wanted.name),
                        // Publishing still works with the stream as it is.
                        Err(e) => {
                            tracing::warn!("NATS stream {}: cannot apply the configured retention: {e}", wanted.name)
                        }
                    }
                }
                Ok(())
            }
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                js.create_stream(wanted.clone())
                    .await
                    .map_err(|e| format!("cannot create stream {}: {e}", wanted.name))?;
                tracing::info!(
                    "NATS stream {} created: keeps {} or {} bytes, {} replica(s)",
                    wanted.name,
                    humantime::format_duration(wanted.max_age),
                    wanted.max_bytes,
                    wanted.num_replicas
                );
                Ok(())
            }
            Err(e) => Err(format!("stream {}: {e}", wanted.name)),
        }
    }

    async fn read(&mut self, after: i64) -> rusqlite::Result<Vec<(i64, OutboxRow)>> {
        let conn = match self.conn.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            Some(conn) => conn,
            None => open_reader(&self.db)?,
        };
        let (conn, rows) = tokio::task::spawn_blocking(move || {
            let rows = read_after(&conn, after, BATCH);
            (conn, rows)
        })
        .await
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        *self.conn.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(conn);
        rows
    }

    /// Deletes the published rows, on the blocking pool (a second's worth
    /// of rows is a write the async threads should not wait on).
    async fn delete_through(&mut self, seq: i64) -> rusqlite::Result<usize> {
        let conn = match self.conn.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            Some(conn) => conn,
            None => open_reader(&self.db)?,
        };
        tokio::task::spawn_blocking(move || conn.execute("DELETE FROM relay_outbox WHERE seq <= ?1", [seq]))
            .await
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?
    }

    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> T) -> Option<T> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(f)
    }

    /// Publishes `rows` in order with up to [`WINDOW`] acks in flight
    /// (those of earlier batches included); moves `acked` past each row
    /// once it and all before it are stored. Acks still in flight at the
    /// end stay in `in_flight` for the next batch or [`Run::drain`].
    async fn publish(
        &self,
        js: &jetstream::Context,
        rows: &[(i64, OutboxRow)],
        in_flight: &mut InFlight,
        acked: &mut i64,
        max_payload: usize,
    ) -> Sent {
        let mut published = 0u64;
        let mut outcome = Sent::All;
        for (seq, row) in rows {
            let id = row.msg_id.clone().unwrap_or_else(|| subjects::seq_id(&row.subject, *seq));
            let payload = if row.payload.len() > max_payload && max_payload > 0 {
                // NATS refuses it however often it is tried: say so in its
                // place, so the outbox moves on and viewers know.
                oversize_notice(row, max_payload)
            } else {
                row.payload.clone()
            };
            let publish = jetstream::message::PublishMessage::build().message_id(id).payload(payload.into());
            match js.send_publish(row.subject.clone(), publish).await {
                Ok(ack) => {
                    in_flight.acks.push_back((*seq, ack));
                    in_flight.sent = *seq;
                }
                Err(e) => {
                    outcome = Sent::Failed(e.to_string());
                    break;
                }
            }
            if in_flight.acks.len() >= WINDOW {
                if let Err(why) = self.await_one(&mut in_flight.acks, acked, &mut published).await {
                    outcome = Sent::Failed(why);
                    break;
                }
            }
        }
        self.count_published(*acked, published);
        outcome
    }

    /// Tells the pipeline how far the outbox is published, and the screen
    /// how many went out.
    fn count_published(&self, acked: i64, published: u64) {
        let _ = self.acked.send(acked);
        self.set(|s| s.published += published);
    }

    /// Waits for every ack in flight.
    async fn drain(&self, in_flight: &mut InFlight, acked: &mut i64) -> Sent {
        let mut published = 0u64;
        let mut outcome = Sent::All;
        while !in_flight.acks.is_empty() {
            if let Err(why) = self.await_one(&mut in_flight.acks, acked, &mut published).await {
                outcome = Sent::Failed(why);
                break;
            }
        }
        self.count_published(*acked, published);
        outcome
    }

    async fn await_one(
        &self,
        in_flight: &mut VecDeque<(i64, PublishAckFuture)>,
        acked: &mut i64,
        published: &mut u64,
    ) -> Result<(), String> {
        let Some((seq, ack)) = in_flight.pop_front() else { return Ok(()) };
        match ack.await {
            // A duplicate is stored already: as good as a fresh store.
            Ok(_) => {
                *acked = seq;
                *published += 1;
                if *published % 1024 == 0 {
                    let _ = self.acked.send(*acked);
                }
                Ok(())
            }
            Err(e) => Err(format!("publish not acknowledged: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feedtop_proto::{FeedMsg, FeedMsgKind};

    fn outbox() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        crate::store::schema::migrate(&mut conn, &path).unwrap();
        (dir, conn)
    }

    fn insert(conn: &Connection, n: usize) {
        for _ in 0..n {
            conn.execute("INSERT INTO relay_outbox (subject, payload) VALUES ('s', x'00')", []).unwrap();
        }
    }

    #[test]
    fn a_restart_starts_after_what_was_published_and_counts_the_rest() {
        let (_dir, conn) = outbox();
        assert_eq!((published_through(&conn).unwrap(), count_after(&conn, 0).unwrap()), (0, 0), "new");
        insert(&conn, 10);
        assert_eq!((published_through(&conn).unwrap(), count_after(&conn, 0).unwrap()), (0, 10));
        conn.execute("DELETE FROM relay_outbox WHERE seq <= 4", []).unwrap();
        assert_eq!((published_through(&conn).unwrap(), count_after(&conn, 4).unwrap()), (4, 6));
        conn.execute("DELETE FROM relay_outbox", []).unwrap();
        assert_eq!(published_through(&conn).unwrap(), 10, "all out: the next row is 11");
        insert(&conn, 1);
        let rows = read_after(&conn, published_through(&conn).unwrap(), 10).unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [11], "numbers are never reused");
    }

    #[test]
    fn a_message_over_the_server_limit_becomes_a_notice_in_its_place() {
        let msg = FeedMsg {
            feed: "ch/companies".into(),
            at: chrono::Utc::now(),
            kind: FeedMsgKind::Notice("x".repeat(5000)),
        };
        let row = OutboxRow {
            subject: "feedtop.ch/companies.state".into(),
            msg_id: None,
            payload: feedtop_proto::wire::encode(&msg),
        };
        let notice = feedtop_proto::wire::decode(&oversize_notice(&row, 1024)).unwrap();
        assert_eq!((notice.feed.as_str(), notice.at), ("ch/companies", msg.at));
        match notice.kind {
            FeedMsgKind::Notice(text) => assert!(text.contains("not relayed") && text.contains("1024"), "{text}"),
            other => panic!("{other:?}"),
        }
    }
}
