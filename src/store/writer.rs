//! The writer thread: the only code that writes to the database.
//!
//! It takes batches of [`Fact`]s from a bounded channel, merges whatever else
//! is already queued (up to `max_batch`, waiting up to `commit_every` after
//! the previous commit for a part batch to fill), and commits them in one
//! transaction with prepared statements. Every few megabytes it asks the
//! checkpoint thread ([`super::checkpoint`]) to copy the WAL into the
//! database. A failed commit (locked, disk full, read-only, damaged) is reported
//! and retried with the same facts: the store never drops anything it was
//! given while the process runs.
//!
//! It also checks, at least once a second and after every commit, that the
//! database path still names the file it writes ([`super::identity`]): a
//! database deleted or moved under it is copied back to the path and writing
//! goes on there; what it reports as written is always in the file at the path.
//!
//! Shutdown is bounded: [`StoreHandle::close`] gives the writer a deadline
//! to commit what it holds; past it, it stops retrying and says how much could
//! not be written. Those facts were never acknowledged by a cursor, so the
//! feeds fetch them again from their resume point on the next start.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, Notify};

use super::checkpoint::Checkpointer;
use super::identity::{self, FileId, PathState};
use super::lock::DbLock;
use super::{ts, StoreError};
use std::borrow::Cow;

use crate::model::{Fact, StoreReport};
use feedtop_proto::{ChEvent, EventType, QuoteTime, ResumePoint};

#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Facts per transaction at most.
    pub max_batch: usize,
    /// Commits at most this often unless a batch is full: a feed of a few
    /// events a second would otherwise commit each one, and every commit
    /// writes whole 16 KB pages to the WAL. Also the longest an event waits
    /// before it is stored.
    pub commit_every: Duration,
    /// Batches that may wait in the channel. One: a batch can hold 2,000
    /// events of 2 KB, and the core loop keeps its own bounded backlog while
    /// the writer is busy, so more here only held memory (measured: 4 → 1
    /// took 8–10 MB off the RSS of a catch-up at the same speed).
    pub queue: usize,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Quote history older than this is deleted (checked once a minute);
    /// `None` keeps everything.
    pub quote_retention: Option<Duration>,
    /// Raw stream events older than this are deleted; companies, strike-off
    /// changes, gaps, cursors and the latest quotes are kept regardless.
    pub event_retention: Option<Duration>,
    /// What `events.raw` holds: the line as received, or only the fields
    /// feedtop uses (about a seventh of the bytes).
    pub raw_events: RawEvents,
    /// Told after every commit (the relay's publisher waits on it for new
    /// outbox rows instead of polling the database).
    pub on_commit: Option<Arc<Notify>>,
}

/// How much of each stream event to keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawEvents {
    /// The line exactly as received.
    #[default]
    Full,
    /// A small JSON object of the fields that matter: kind, id, timepoint,
    /// published_at, type, and the company's number, name, status and detail.
    Fields,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            max_batch: 2_000,
            commit_every: Duration::from_millis(50),
            queue: 1,
            retry_base: Duration::from_millis(100),
            retry_cap: Duration::from_secs(5),
            quote_retention: Some(Duration::from_secs(7 * 24 * 3600)),
            event_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            raw_events: RawEvents::Full,
            on_commit: None,
        }
    }
}

/// What the writer did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterSummary {
    /// New events of this run that are in the file at the database path.
    pub events_written: u64,
    /// Facts that could not be written before shutdown.
    pub unwritten: usize,
    /// The problem still standing at the end (a failing write, a database
    /// that is gone); `None` when everything handed over is stored.
    pub last_error: Option<String>,
}

/// How often the writer checks that the path still names its file.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a recovered database stays shown as a store message, so that a
/// headless reader or someone glancing at the header sees that it happened.
const NOTICE_FOR: Duration = Duration::from_secs(60);
/// SQLite's wait for another process's lock (see `store::configure`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `close` waits past its deadline for the writer's last attempt
/// (which the writer itself bounds by the deadline) before it stops waiting.
const CLOSE_GRACE: Duration = Duration::from_millis(300);

/// What the writer has done so far, readable without waiting for it: the
/// handle builds its summary from this when the writer cannot finish in time.
#[derive(Default)]
struct Shared {
    /// Facts committed, of those handed over.
    committed: AtomicU64,
    /// New events of this run in the file at the path.
    events_at_path: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Set by `close`: the writer stops retrying at this instant.
    stop_by: Mutex<Option<Instant>>,
    /// Wakes the writer from a retry pause when `close` is called.
    wake: Notify,
}

impl Shared {
    fn stop_by(&self) -> Option<Instant> {
        *self.stop_by.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_last_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// The summary when the writer did not finish: `sent` facts were handed over.
    fn summary_so_far(&self, sent: u64, why: &str) -> WriterSummary {
        let unwritten = sent.saturating_sub(self.committed.load(Ordering::SeqCst)) as usize;
        let last_error = self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let last_error = match (last_error, unwritten) {
            (Some(e), _) => Some(format!("{e}; {why}")),
            (None, 0) => None,
            (None, _) => Some(why.to_string()),
        };
        WriterSummary { events_written: self.events_at_path.load(Ordering::SeqCst), unwritten, last_error }
    }
}

/// The sending side of the writer, owned by the core loop.
pub struct StoreHandle {
    tx: mpsc::Sender<Vec<Fact>>,
    shared: Arc<Shared>,
    /// Facts handed to the writer.
    sent: AtomicU64,
    done: oneshot::Receiver<WriterSummary>,
}

impl StoreHandle {
    /// Starts the writer on `conn`, opened at `path`. `lock` (the one-process
    /// lock) is released when the writer has closed the database.
    pub fn spawn(
        conn: Connection,
        path: PathBuf,
        lock: Option<DbLock>,
        reports: mpsc::Sender<StoreReport>,
        settings: WriterSettings,
    ) -> Self {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let (done_tx, done) = oneshot::channel();
        let shared = Arc::new(Shared::default());
        let file = FileId::of(&path).ok().flatten();
        let writer = Writer {
            conn,
            path,
            file,
            lost: None,
            reopen: false,
            notice: None,
            _lock: lock,
            rx,
            reports,
            settings,
            written: 0,
            shared: shared.clone(),
        };
        // The thread is not joined: `close` waits on `done`, with a deadline.
        std::thread::Builder::new()
            .name("feedtop-store".into())
            .spawn(move || {
                let _ = done_tx.send(writer.run());
            })
            .expect("spawning the store thread");
        Self { tx, shared, sent: AtomicU64::new(0), done }
    }

    /// Queues facts without waiting; gives them back when the queue is full.
    pub fn try_send(&self, facts: Vec<Fact>) -> Result<(), Vec<Fact>> {
        let count = facts.len() as u64;
        self.tx.try_send(facts).map_err(|e| match e {
            mpsc::error::TrySendError::Full(f) | mpsc::error::TrySendError::Closed(f) => f,
        })?;
        self.sent.fetch_add(count, Ordering::SeqCst);
        Ok(())
    }

    /// Queues facts, waiting for room (backpressure towards the feeds).
    pub async fn send(&self, facts: Vec<Fact>) -> Result<(), Vec<Fact>> {
        let count = facts.len() as u64;
        self.tx.send(facts).await.map_err(|e| e.0)?;
        self.sent.fetch_add(count, Ordering::SeqCst);
        Ok(())
    }

    /// Batches waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Facts handed to the writer and not committed yet.
    pub fn in_flight(&self) -> usize {
        self.sent.load(Ordering::SeqCst).saturating_sub(self.shared.committed.load(Ordering::SeqCst)) as usize
    }

    /// Resolves when the queue has room for one batch. Cancel-safe.
    pub async fn ready(&self) {
        // The permit is dropped at once: the caller's next try_send uses the room.
        let _ = self.tx.reserve().await;
    }

    /// Closes the queue and waits for the writer to commit what it holds,
    /// for `within` at most (a dead disk cannot hang the exit), or until
    /// `stop_now` resolves (a second `q`). Past either, the summary counts
    /// what was handed over and not committed as unwritten; the thread is
    /// left to end with the process.
    pub async fn close(self, within: Duration, stop_now: impl std::future::Future<Output = ()>) -> WriterSummary {
        let deadline = Instant::now() + within;
        *self.shared.stop_by.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        self.shared.wake.notify_one();
        drop(self.tx);
        let sent = self.sent.load(Ordering::SeqCst);
        let wait = tokio::time::Instant::from_std(deadline + CLOSE_GRACE);
        tokio::select! {
            biased;
            done = self.done => done.unwrap_or_else(|_| self.shared.summary_so_far(sent, "the store thread panicked")),
            _ = tokio::time::sleep_until(wait) => {
                let why = format!("the store did not finish within {} s", within.as_secs_f32());
                self.shared.summary_so_far(sent, &why)
            }
            _ = stop_now => self.shared.summary_so_far(sent, "quit before the store had finished"),
        }
    }
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    /// The file `conn` has open; `None` when it could not be examined.
    file: Option<FileId>,
    /// Why nothing can be written at the path now (the database is gone
    /// and could not be put back); writing waits while it is set.
    lost: Option<String>,
    /// The database was copied back to the path but opening it failed.
    reopen: bool,
    /// A recovery to keep showing for a while: when, and what.
    notice: Option<(Instant, String)>,
    _lock: Option<DbLock>,
    rx: mpsc::Receiver<Vec<Fact>>,
    reports: mpsc::Sender<StoreReport>,
    settings: WriterSettings,
    written: u64,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(mut self) -> WriterSummary {
        // A timer for waiting on the channel with a timeout (the path check
        // runs even when nothing arrives) and for retry pauses that `close`
        // can cut short.
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a timer for the store thread");
        let mut checkpointer = Checkpointer::spawn(&self.path);
        let mut uncheckpointed_bytes = 0usize;
        let mut pending: Vec<Fact> = Vec::new();
        let mut failures: u32 = 0;
        let mut last_error = None;
        let mut pruned_at = Instant::now();
        let mut checked_at = Instant::now();
        // None until the first commit: the first facts are written at once.
        let mut committed_at: Option<Instant> = None;
        self.prune();
        loop {
            if checked_at.elapsed() >= CHECK_EVERY {
                checked_at = Instant::now();
                self.verify(&mut checkpointer);
            }
            if pending.is_empty() {
                let wait = CHECK_EVERY.saturating_sub(checked_at.elapsed());
                // The timer is made inside the runtime: it needs its context.
                let rx = &mut self.rx;
                match rt.block_on(async { tokio::time::timeout(wait, rx.recv()).await }) {
                    Ok(Some(batch)) => pending = batch,
                    Ok(None) => break,
                    Err(_) => continue,
                }
            }
            self.take_queued(&mut pending);
            // A part batch soon after the last commit waits for company
            // (a full one, as in a catch-up, is written at once).
            let since = committed_at.map_or(Duration::MAX, |t| t.elapsed());
            if pending.len() < self.settings.max_batch && since < self.settings.commit_every {
                std::thread::sleep(self.settings.commit_every - since);
                self.take_queued(&mut pending);
            }
            let stop_by = self.stop_by();
            if let Some(by) = stop_by {
                // A lock held elsewhere must not keep SQLite waiting past the deadline.
                let left = by.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
                let _ = self.conn.busy_timeout(left.min(BUSY_TIMEOUT));
            }
            let result = match &self.lost {
                // Commits into a file no one can see would be claimed and lost.
                Some(why) => Err(why.clone()),
                None => write_batch(&mut self.conn, &pending, self.settings.raw_events)
                    .map_err(|e| StoreError::from_sqlite(&self.path, e).to_string()),
            };
            match result {
                Ok(events) => {
                    committed_at = Some(Instant::now());
                    self.written += events;
                    self.shared.committed.fetch_add(pending.len() as u64, Ordering::SeqCst);
                    uncheckpointed_bytes += pending.iter().map(approx_bytes).sum::<usize>();
                    if uncheckpointed_bytes >= CHECKPOINT_EVERY_BYTES {
                        uncheckpointed_bytes = 0;
                        if let Some(c) = &checkpointer {
                            c.kick();
                        }
                    }
                    pending.clear();
                    if let Some(told) = &self.settings.on_commit {
                        told.notify_one();
                    }
                    // Before reporting it: the commit must be in the file at the path.
                    checked_at = Instant::now();
                    self.verify(&mut checkpointer);
                    if failures > 0 && self.lost.is_none() {
                        tracing::info!("database writable again; writing resumed");
                    }
                    failures = 0;
                    last_error = self.lost.clone();
                    self.report(self.lost.clone());
                    if pruned_at.elapsed() >= Duration::from_secs(60) {
                        pruned_at = Instant::now();
                        self.prune();
                    }
                }
                Err(message) => {
                    if failures == 0 && self.lost.is_none() {
                        tracing::error!("cannot write: {message}; retrying, nothing is dropped");
                    }
                    failures = failures.saturating_add(1);
                    self.report(Some(message.clone()));
                    last_error = Some(message);
                    let exp =
                        self.settings.retry_base.saturating_mul(1 << failures.min(16)).min(self.settings.retry_cap);
                    let pause = match stop_by {
                        Some(by) if Instant::now() >= by => break,
                        Some(by) => exp.min(by.saturating_duration_since(Instant::now())),
                        None => exp,
                    };
                    self.pause(&rt, pause);
                    if self.lost.is_some() {
                        // Try to put the database back before the next attempt.
                        checked_at = Instant::now();
                        self.verify(&mut checkpointer);
                    }
                }
            }
        }
        // The summary must not claim what is not at the path.
        self.verify(&mut checkpointer);
        if let Some(c) = checkpointer {
            c.stop();
        }
        let mut unwritten = pending.len();
        while let Ok(more) = self.rx.try_recv() {
            unwritten += more.len();
        }
        if self.lost.is_some() {
            last_error = self.lost.clone();
        } else if unwritten == 0 {
            last_error = None;
        }
        self.shared.set_last_error(last_error.clone());
        WriterSummary { events_written: self.events_at_path(), unwritten, last_error }
    }

    /// The deadline `close` set; a queue closed without `close` (the handle
    /// dropped) gets the default one.
    fn stop_by(&self) -> Option<Instant> {
        if let Some(by) = self.shared.stop_by() {
            return Some(by);
        }
        if self.rx.is_closed() {
            let by = Instant::now() + Duration::from_secs(2);
            *self.shared.stop_by.lock().unwrap_or_else(|e| e.into_inner()) = Some(by);
            return Some(by);
        }
        None
    }

    /// Waits `pause`, or less when `close` is called meanwhile.
    fn pause(&self, rt: &tokio::runtime::Runtime, pause: Duration) {
        rt.block_on(async {
            let _ = tokio::time::timeout(pause, self.shared.wake.notified()).await;
        });
    }

    /// New events of this run in the file at the path: none while the
    /// database is gone from it.
    fn events_at_path(&self) -> u64 {
        if self.lost.is_some() {
            0
        } else {
            self.written
        }
    }

    /// Makes sure the path names the file being written; copies the
    /// database back to the path when it was deleted or moved.
    fn verify(&mut self, checkpointer: &mut Option<Checkpointer>) {
        if self.reopen {
            self.reopen(checkpointer);
            return;
        }
        let Some(file) = self.file else { return };
        match file.check(&self.path) {
            PathState::Same => {
                if self.lost.take().is_some() {
                    tracing::info!("{} names the database again; writing resumed", self.path.display());
                }
            }
            PathState::Missing => self.recover(checkpointer),
            PathState::Replaced => self.set_lost(format!(
                "the database {} was replaced by another file while feedtop was running; nothing more is \
                 written and the {} events of this run are not in that file: move it away (feedtop then \
                 recreates the database there) or restart feedtop",
                self.path.display(),
                self.written
            )),
        }
    }

    /// The path is empty: write a complete copy of the open (unlinked or
    /// renamed) database there and carry on in it.
    fn recover(&mut self, checkpointer: &mut Option<Checkpointer>) {
        let path = self.path.display().to_string();
        if self.lost.is_none() {
            tracing::warn!("the database {path} was deleted or moved while feedtop was running; recreating it there");
            // Shown at once (copying a large database takes a while), and
            // nothing is claimed as written until the copy is there.
            let shown = format!(
                "the database {path} was deleted or moved while feedtop was running; recreating it from the open file"
            );
            self.lost = Some(shown.clone());
            self.report(Some(shown));
        }
        if let Err(why) = identity::recreate(&self.conn, &self.path) {
            self.set_lost(format!(
                "the database {path} was deleted or moved while feedtop was running and cannot be recreated \
                 there ({why}); nothing is written until it can: restore the directory or restart feedtop"
            ));
            return;
        }
        // Close the old file before opening the new one: closing it removes
        // its -wal and -shm by name, which must not be the new file's.
        if let Some(c) = checkpointer.take() {
            c.stop();
        }
        match Connection::open_in_memory() {
            Ok(placeholder) => drop(std::mem::replace(&mut self.conn, placeholder)),
            Err(e) => {
                self.set_lost(format!(
                    "the database {path} could not be switched to its new copy: {e}; restart feedtop"
                ));
                return;
            }
        }
        self.reopen(checkpointer);
    }

    /// Opens the copy at the path and makes it the database written.
    fn reopen(&mut self, checkpointer: &mut Option<Checkpointer>) {
        let path = self.path.display().to_string();
        match super::open(&self.path) {
            Ok(conn) => {
                self.conn = conn;
                self.file = FileId::of(&self.path).ok().flatten();
                self.reopen = false;
                self.lost = None;
                *checkpointer = Checkpointer::spawn(&self.path);
                let message = format!(
                    "the database {path} was deleted or moved while feedtop was running; feedtop recreated it \
                     there with everything stored ({} events this run) and goes on writing (to remove it, stop \
                     feedtop first)",
                    self.written
                );
                tracing::warn!("{message}");
                self.notice = Some((Instant::now(), message));
                self.report(None);
            }
            Err(e) => {
                self.reopen = true;
                self.set_lost(format!(
                    "the database {path} was deleted or moved while feedtop was running; it was recreated \
                     there but cannot be opened: {e}"
                ));
            }
        }
    }

    fn set_lost(&mut self, why: String) {
        if self.lost.as_deref() != Some(why.as_str()) {
            tracing::error!("{why}");
            self.lost = Some(why.clone());
        }
        self.report(Some(why));
    }

    /// Adds whatever is queued to `pending`, up to a batch.
    fn take_queued(&mut self, pending: &mut Vec<Fact>) {
        while pending.len() < self.settings.max_batch {
            match self.rx.try_recv() {
                Ok(more) => pending.extend(more),
                Err(_) => break,
            }
        }
    }

    /// Applies the retention settings. A failure here only delays pruning.
    fn prune(&self) {
        let cutoff =
            |keep: Option<Duration>| keep.and_then(|k| chrono::TimeDelta::from_std(k).ok()).map(|k| Utc::now() - k);
        let results = [
            ("quotes", cutoff(self.settings.quote_retention).map(|c| prune_quotes(&self.conn, c))),
            ("events", cutoff(self.settings.event_retention).map(|c| prune_events(&self.conn, c))),
        ];
        for (what, result) in results {
            match result {
                None | Some(Ok(0)) => {}
                Some(Ok(n)) => tracing::debug!("pruned {n} {what} older than the retention"),
                Some(Err(e)) => tracing::warn!("pruning old {what} failed: {e}"),
            }
        }
    }

    fn report(&mut self, error: Option<String>) {
        let events_written = self.events_at_path();
        self.shared.events_at_path.store(events_written, Ordering::SeqCst);
        self.shared.set_last_error(error.clone());
        if self.notice.as_ref().is_some_and(|(at, _)| at.elapsed() >= NOTICE_FOR) {
            self.notice = None;
        }
        let error = error.or_else(|| self.notice.as_ref().map(|(_, n)| n.clone()));
        // Reports carry totals, so a dropped one is made good by the next.
        let _ = self.reports.try_send(StoreReport { events_written, error });
    }
}

/// Committed data after which the checkpoint thread is kicked: 4 MB is an
/// eighth of the writer's own autocheckpoint (32 MB of WAL), so the
/// autocheckpoint finds little left to copy. A live feed of one event a
/// second takes hours to get there; a catch-up, a fraction of a second.
const CHECKPOINT_EVERY_BYTES: usize = 4 << 20;

/// Roughly what a fact adds to the WAL: the stored line, plus a row's worth
/// for the rest (the exact figure does not matter, only its scale).
fn approx_bytes(fact: &Fact) -> usize {
    const ROW: usize = 200;
    match fact {
        Fact::Event { event, .. } => ROW + event.raw.len(),
        Fact::Outbox(row) => ROW + row.payload.len(),
        _ => ROW,
    }
}

/// The fields of an event feedtop uses, as a small JSON object.
fn fields_only(event: &ChEvent) -> String {
    let company = event.company.as_ref();
    serde_json::json!({
        "resource_kind": event.resource_kind,
        "resource_id": event.resource_id,
        "timepoint": event.timepoint,
        "published_at": event.published_at.map(ts),
        "type": event.event_type.as_str(),
        "company_number": company.map(|c| &c.number),
        "company_name": company.map(|c| &c.name),
        "company_status": company.map(|c| &c.status),
        "company_status_detail": company.and_then(|c| c.detail.as_ref()),
    })
    .to_string()
}

/// The stored form of a quote's own timestamp and whether it is an estimate.
pub fn quote_time_text(time: Option<QuoteTime>) -> (Option<String>, bool) {
    match time {
        None => (None, false),
        Some(QuoteTime::Absolute(t)) => (Some(ts(t)), false),
        Some(QuoteTime::Naive(t)) => (Some(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()), true),
        // Zoned text with the estimate flag: read back as `Estimated`.
        Some(QuoteTime::Estimated(t)) => (Some(ts(t)), true),
    }
}

/// Deletes quote history received before `before`. Returns the rows removed.
pub fn prune_quotes(conn: &Connection, before: DateTime<Utc>) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM quote_history WHERE received_at < ?1", [ts(before)])
}

/// Deletes raw events received before `before`. Events are appended in
/// time order, so everything below the first id at or after the cutoff goes;
/// that walks the rowid from the oldest row and needs no extra index.
pub fn prune_events(conn: &Connection, before: DateTime<Utc>) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM events WHERE id < COALESCE(
            (SELECT id FROM events WHERE received_at >= ?1 ORDER BY id LIMIT 1),
            (SELECT max(id) + 1 FROM events))",
        [ts(before)],
    )
}

/// Writes one batch in one transaction. Returns the number of new events.
pub fn write_batch(conn: &mut Connection, facts: &[Fact], raw_events: RawEvents) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut new_events = 0;
    let mut cursors: HashMap<&str, i64> = HashMap::new();
    {
        let mut insert_event = tx.prepare_cached(
            "INSERT OR IGNORE INTO events
               (feed, resource_kind, resource_id, timepoint, event_type, published_at, received_at, raw)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut upsert_company = tx.prepare_cached(
            "INSERT INTO companies
               (company_number, company_name, company_status, company_status_detail, timepoint, published_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (company_number) DO UPDATE SET
               company_name = excluded.company_name,
               company_status = excluded.company_status,
               company_status_detail = excluded.company_status_detail,
               timepoint = excluded.timepoint,
               published_at = excluded.published_at,
               updated_at = excluded.updated_at
             WHERE excluded.timepoint > companies.timepoint",
        )?;
        let mut delete_company =
            tx.prepare_cached("DELETE FROM companies WHERE company_number = ?1 AND timepoint < ?2")?;
        // Stored as the model saw it (its `from` included, NULL when the
        // company was first seen), so the screen and the export show the same.
        let mut insert_change = tx.prepare_cached(
            "INSERT OR IGNORE INTO strike_offs
               (company_number, company_name, change, from_status, from_detail,
                to_status, to_detail, published_at, timepoint, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut insert_gap =
            tx.prepare_cached("INSERT INTO gaps (feed, at, after_timepoint, reason) VALUES (?1, ?2, ?3, ?4)")?;
        let mut delete_cursor = tx.prepare_cached("DELETE FROM cursors WHERE feed = ?1")?;
        let mut upsert_quote = tx.prepare_cached(
            "INSERT OR REPLACE INTO quotes_latest
               (feed, symbol, price, change, change_percent, volume, high, low, open,
                market_status, currency, quote_time, time_is_estimate, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        let mut upsert_resume =
            tx.prepare_cached("INSERT OR REPLACE INTO resume_ids (feed, event_id, updated_at) VALUES (?1, ?2, ?3)")?;
        let mut insert_quote = tx.prepare_cached(
            "INSERT INTO quote_history (feed, symbol, price, volume, quote_time, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut insert_alert = tx.prepare_cached(
            "INSERT INTO alerts (at, rule, kind, feed, company, symbol, detail, actions)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;

        // Under the relay's own number: the publisher may have sent the row
        // already, by that number (see `relay::publisher`).
        let mut insert_outbox =
            tx.prepare_cached("INSERT INTO relay_outbox (seq, subject, msg_id, payload) VALUES (?1, ?2, ?3, ?4)")?;
        let mut delete_published = tx.prepare_cached("DELETE FROM relay_outbox WHERE seq <= ?1")?;

        for fact in facts {
            match fact {
                Fact::Outbox(msg) => {
                    insert_outbox.execute(params![msg.seq, msg.subject, msg.msg_id, &msg.payload[..]])?;
                }
                Fact::Published(seq) => {
                    delete_published.execute([seq])?;
                }
                Fact::Event { feed, event, received_at } => {
                    let inserted = insert_event.execute(params![
                        feed,
                        event.resource_kind,
                        event.resource_id,
                        event.timepoint,
                        event.event_type.as_str(),
                        event.published_at.map(ts),
                        ts(*received_at),
                        match raw_events {
                            RawEvents::Full => Cow::Borrowed(event.raw.as_str()),
                            RawEvents::Fields => Cow::Owned(fields_only(event)),
                        },
                    ])?;
                    if inserted == 0 {
                        continue;
                    }
                    new_events += 1;
                    if !event.is_company_profile() {
                        continue;
                    }
                    if event.event_type == EventType::Deleted {
                        delete_company.execute(params![event.resource_id, event.timepoint])?;
                    } else if let Some(c) = &event.company {
                        upsert_company.execute(params![
                            c.number,
                            c.name,
                            c.status,
                            c.detail,
                            event.timepoint,
                            event.published_at.map(ts),
                            ts(*received_at),
                        ])?;
                    }
                }
                Fact::StrikeOff(c) => {
                    insert_change.execute(params![
                        c.company_number,
                        c.company_name,
                        c.kind.as_str(),
                        c.from_status,
                        c.from_detail,
                        c.to_status,
                        c.to_detail,
                        c.published_at.map(ts),
                        c.timepoint,
                        ts(c.received_at),
                    ])?;
                }
                Fact::Enrich { company_number, queued_at } => {
                    super::enrich::enqueue(&tx, company_number, *queued_at)?;
                }
                Fact::Gap { feed, at, after_timepoint, reason } => {
                    insert_gap.execute(params![feed, ts(*at), after_timepoint, reason])?;
                    // The server refused the stored timepoint (416): asking for
                    // it after a restart would only be refused again, and the
                    // events from the live stream must be able to set a lower one.
                    delete_cursor.execute([feed])?;
                    cursors.remove(feed.as_str());
                }
                Fact::Resume { feed, point: ResumePoint::EventId(event_id) } => {
                    upsert_resume.execute(params![feed, event_id, ts(Utc::now())])?;
                }
                Fact::Resume { feed, point: ResumePoint::Timepoint(timepoint) } => {
                    // The feed decides the resume point (see `ResumeMark`); the
                    // last one in a batch is the one to keep, even if lower.
                    cursors.insert(feed.as_str(), *timepoint);
                }
                Fact::Quote { feed, quote: q, received_at } => {
                    let (time, estimate) = quote_time_text(q.time);
                    let received = ts(*received_at);
                    upsert_quote.execute(params![
                        feed,
                        q.symbol,
                        q.price,
                        q.change,
                        q.change_percent,
                        q.volume,
                        q.high,
                        q.low,
                        q.open,
                        q.market_status,
                        q.currency,
                        time,
                        estimate,
                        received,
                    ])?;
                    insert_quote.execute(params![feed, q.symbol, q.price, q.volume, time, received])?;
                }
                Fact::Alert(a) => {
                    insert_alert.execute(params![
                        ts(a.at),
                        a.rule as i64,
                        a.kind.as_str(),
                        a.feed,
                        a.company,
                        a.symbol,
                        a.detail,
                        a.actions.label(),
                    ])?;
                }
            }
        }
        let mut upsert_cursor =
            tx.prepare_cached("INSERT OR REPLACE INTO cursors (feed, timepoint, updated_at) VALUES (?1, ?2, ?3)")?;
        let now = ts(Utc::now());
        for (feed, timepoint) in cursors {
            upsert_cursor.execute(params![feed, timepoint, now])?;
        }
    }
    tx.commit()?;
    Ok(new_events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use feedtop_proto::ch::parse_event;

    fn event(line: &str) -> Fact {
        let event = Box::new(parse_event(line.as_bytes().to_vec()).expect("fixture line parses"));
        Fact::Event { feed: "companies".into(), event, received_at: Utc::now() }
    }

    /// Every alert is a row of `alerts`, with what fired and what it did.
    #[test]
    fn alerts_are_stored_one_row_each() {
        use crate::alerts::{Actions, Alert, AlertKind};
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        let at = chrono::DateTime::from_timestamp(1_749_556_800, 0).unwrap();
        let alert = |seq, kind, company: Option<&str>, symbol: Option<&str>| {
            Fact::Alert(Box::new(Alert {
                seq,
                at,
                rule: seq as usize,
                kind,
                feed: "ch/companies".into(),
                company: company.map(Into::into),
                symbol: symbol.map(Into::into),
                detail: format!("detail {seq}"),
                actions: Actions { bell: true, flash: true, exec: false },
            }))
        };
        let facts =
            [alert(1, AlertKind::StrikeOff, Some("01234567"), None), alert(2, AlertKind::QuoteMove, None, Some("PKN"))];
        assert_eq!(write_batch(&mut conn, &facts, RawEvents::Full).unwrap(), 0, "no events");
        let mut stmt = conn
            .prepare("SELECT at, rule, kind, feed, company, symbol, detail, actions FROM alerts ORDER BY id")
            .unwrap();
        type Row = (String, i64, String, String, Option<String>, Option<String>, String, String);
        let rows: Vec<Row> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let when = "2025-06-10T12:00:00.000Z".to_string();
        let (feed, actions) = ("ch/companies".to_string(), "bell,flash".to_string());
        assert_eq!(
            rows,
            [
                (
                    when.clone(),
                    1,
                    "strike-off".into(),
                    feed.clone(),
                    Some("01234567".into()),
                    None,
                    "detail 1".into(),
                    actions.clone()
                ),
                (when, 2, "quote-move".into(), feed, None, Some("PKN".into()), "detail 2".into(), actions),
            ]
        );
    }

    #[tokio::test]
    async fn facts_arriving_soon_after_a_commit_are_committed_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = crate::store::open(&path).unwrap();
        let (reports_tx, mut reports) = mpsc::channel(16);
        let settings = WriterSettings { commit_every: Duration::from_millis(300), ..WriterSettings::default() };
        let store = StoreHandle::spawn(conn, path, None, reports_tx, settings);
        let lines: Vec<&str> = include_str!("../../tests/fixtures/ch-companies-sample.ndjson")
            .lines()
            .filter(|l| parse_event(l.as_bytes().to_vec()).is_ok())
            .take(3)
            .collect();

        // The first event after a quiet spell is written at once.
        store.send(vec![event(lines[0])]).await.unwrap();
        assert_eq!(reports.recv().await.unwrap().events_written, 1);
        // Two more right after that commit wait for each other.
        store.send(vec![event(lines[1])]).await.unwrap();
        store.send(vec![event(lines[2])]).await.unwrap();
        assert_eq!(reports.recv().await.unwrap().events_written, 3, "one commit for both");
        let summary = store.close(Duration::from_secs(5), std::future::pending()).await;
        assert_eq!((summary.events_written, summary.unwritten), (3, 0));
    }

    /// A writer that cannot commit (another connection holds the write lock),
    /// with three facts handed over and the failure reported.
    async fn stuck_writer(dir: &std::path::Path) -> (StoreHandle, Connection) {
        let path = dir.join("w.db");
        let conn = crate::store::open(&path).unwrap();
        let locker = Connection::open(&path).unwrap();
        locker.execute_batch("BEGIN IMMEDIATE; INSERT INTO gaps (feed, at, reason) VALUES ('x', 'x', 'held')").unwrap();
        let (reports_tx, mut reports) = mpsc::channel(16);
        let store = StoreHandle::spawn(conn, path, None, reports_tx, WriterSettings::default());
        let lines: Vec<&str> = include_str!("../../tests/fixtures/ch-companies-sample.ndjson")
            .lines()
            .filter(|l| parse_event(l.as_bytes().to_vec()).is_ok())
            .take(3)
            .collect();
        store.send(lines.iter().map(|l| event(l)).collect()).await.unwrap();
        while reports.recv().await.unwrap().error.is_none() {}
        (store, locker)
    }

    #[tokio::test]
    async fn close_gives_up_at_its_deadline_and_counts_what_was_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _locker) = stuck_writer(dir.path()).await;
        assert_eq!(store.in_flight(), 3);
        let started = Instant::now();
        let summary = store.close(Duration::from_millis(300), std::future::pending()).await;
        // Before: three more attempts of SQLite's 2 s lock wait each, plus
        // the retry pauses (over 6 s). Now the deadline bounds the attempts.
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert_eq!((summary.events_written, summary.unwritten), (0, 3));
        assert!(summary.last_error.as_deref().is_some_and(|e| e.contains("locked")), "{summary:?}");
    }

    #[tokio::test]
    async fn a_second_quit_stops_waiting_for_the_store_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _locker) = stuck_writer(dir.path()).await;
        let summary = store.close(Duration::from_secs(60), std::future::ready(())).await;
        assert_eq!(summary.unwritten, 3);
        assert!(summary.last_error.as_deref().is_some_and(|e| e.contains("quit before")), "{summary:?}");
    }
}
