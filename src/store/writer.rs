//! The writer thread: the only code that writes to the database.
//!
//! It takes batches of [`Fact`]s from a bounded channel, merges whatever else
//! is already queued (up to `max_batch`, waiting up to `commit_every` after
//! the previous commit for a part batch to fill), and commits them in one
//! transaction with prepared statements. Every few megabytes it asks the
//! checkpoint thread ([`super::checkpoint`]) to copy the WAL into the
//! database. A failed commit (locked, disk full, read-only, damaged) is reported
//! and retried with the same facts: the store never drops anything it was
//! given while the process runs. At shutdown it retries a few times and then
//! says how much could not be written; those events were never acknowledged
//! by a cursor, so they are fetched again on the next start.

use std::collections::HashMap;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::mpsc;

use super::checkpoint::Checkpointer;
use super::{ts, StoreError};
use std::borrow::Cow;

use crate::feeds::{ChEvent, EventType, QuoteTime, ResumePoint};
use crate::model::{Fact, StoreReport};

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
    /// Attempts left for the last batch once the channel is closed.
    pub shutdown_retries: u32,
    /// Quote history older than this is deleted (checked once a minute);
    /// `None` keeps everything.
    pub quote_retention: Option<Duration>,
    /// Raw stream events older than this are deleted; companies, strike-off
    /// changes, gaps, cursors and the latest quotes are kept regardless.
    pub event_retention: Option<Duration>,
    /// What `events.raw` holds: the line as received, or only the fields
    /// feedtop uses (about a seventh of the bytes).
    pub raw_events: RawEvents,
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
            shutdown_retries: 3,
            quote_retention: Some(Duration::from_secs(7 * 24 * 3600)),
            event_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            raw_events: RawEvents::Full,
        }
    }
}

/// What the writer did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterSummary {
    pub events_written: u64,
    /// Facts that could not be written before shutdown.
    pub unwritten: usize,
    pub last_error: Option<String>,
}

/// The sending side of the writer, owned by the core loop.
pub struct StoreHandle {
    tx: mpsc::Sender<Vec<Fact>>,
    thread: JoinHandle<WriterSummary>,
}

impl StoreHandle {
    pub fn spawn(
        conn: Connection,
        path: PathBuf,
        reports: mpsc::Sender<StoreReport>,
        settings: WriterSettings,
    ) -> Self {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let thread = std::thread::Builder::new()
            .name("feedtop-store".into())
            .spawn(move || Writer { conn, path, rx, reports, settings, written: 0 }.run())
            .expect("spawning the store thread");
        Self { tx, thread }
    }

    /// Queues facts without waiting; gives them back when the queue is full.
    pub fn try_send(&self, facts: Vec<Fact>) -> Result<(), Vec<Fact>> {
        self.tx.try_send(facts).map_err(|e| match e {
            mpsc::error::TrySendError::Full(f) | mpsc::error::TrySendError::Closed(f) => f,
        })
    }

    /// Queues facts, waiting for room (backpressure towards the feeds).
    pub async fn send(&self, facts: Vec<Fact>) -> Result<(), Vec<Fact>> {
        self.tx.send(facts).await.map_err(|e| e.0)
    }

    /// Batches waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Resolves when the queue has room for one batch. Cancel-safe.
    pub async fn ready(&self) {
        // The permit is dropped at once: the caller's next try_send uses the room.
        let _ = self.tx.reserve().await;
    }

    /// Closes the queue and waits for the writer to finish. Blocking.
    pub fn close(self) -> WriterSummary {
        drop(self.tx);
        self.thread.join().unwrap_or_else(|_| WriterSummary {
            last_error: Some("the store thread panicked".into()),
            ..Default::default()
        })
    }
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    rx: mpsc::Receiver<Vec<Fact>>,
    reports: mpsc::Sender<StoreReport>,
    settings: WriterSettings,
    written: u64,
}

impl Writer {
    fn run(mut self) -> WriterSummary {
        let checkpointer = Checkpointer::spawn(&self.path);
        let mut uncheckpointed_bytes = 0usize;
        let mut pending: Vec<Fact> = Vec::new();
        let mut failures: u32 = 0;
        let mut retries_after_close: u32 = 0;
        let mut last_error = None;
        let mut pruned_at = std::time::Instant::now();
        // None until the first commit: the first facts are written at once.
        let mut committed_at: Option<std::time::Instant> = None;
        self.prune();
        loop {
            if pending.is_empty() {
                match self.rx.blocking_recv() {
                    Some(batch) => pending = batch,
                    None => break,
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
            match write_batch(&mut self.conn, &pending, self.settings.raw_events) {
                Ok(events) => {
                    committed_at = Some(std::time::Instant::now());
                    self.written += events;
                    uncheckpointed_bytes += pending.iter().map(approx_bytes).sum::<usize>();
                    if uncheckpointed_bytes >= CHECKPOINT_EVERY_BYTES {
                        uncheckpointed_bytes = 0;
                        if let Some(c) = &checkpointer {
                            c.kick();
                        }
                    }
                    pending.clear();
                    if failures > 0 {
                        tracing::info!("database writable again; writing resumed");
                    }
                    failures = 0;
                    last_error = None;
                    self.report(None);
                    if pruned_at.elapsed() >= Duration::from_secs(60) {
                        pruned_at = std::time::Instant::now();
                        self.prune();
                    }
                }
                Err(e) => {
                    let message = StoreError::from_sqlite(&self.path, e).to_string();
                    if failures == 0 {
                        tracing::error!("cannot write: {message}; retrying, nothing is dropped");
                    }
                    failures = failures.saturating_add(1);
                    self.report(Some(message.clone()));
                    last_error = Some(message);
                    if self.rx.is_closed() {
                        retries_after_close += 1;
                        if retries_after_close > self.settings.shutdown_retries {
                            break;
                        }
                    }
                    let exp = self.settings.retry_base.saturating_mul(1 << failures.min(16));
                    // A dedicated thread: waiting here blocks nothing else.
                    std::thread::sleep(exp.min(self.settings.retry_cap));
                }
            }
        }
        if let Some(c) = checkpointer {
            c.stop();
        }
        let mut unwritten = pending.len();
        while let Ok(more) = self.rx.try_recv() {
            unwritten += more.len();
        }
        WriterSummary { events_written: self.written, unwritten, last_error }
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

    fn report(&self, error: Option<String>) {
        // Reports carry totals, so a dropped one is made good by the next.
        let _ = self.reports.try_send(StoreReport { events_written: self.written, error });
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
        // The previous state comes from `companies` when the model did not know
        // it; this runs before the same event updates `companies`.
        let mut insert_change = tx.prepare_cached(
            "INSERT OR IGNORE INTO strike_offs
               (company_number, company_name, change, from_status, from_detail,
                to_status, to_detail, published_at, timepoint, received_at)
             VALUES (?1, ?2, ?3,
               COALESCE(?4, (SELECT company_status FROM companies WHERE company_number = ?1)),
               CASE WHEN ?4 IS NULL
                    THEN (SELECT company_status_detail FROM companies WHERE company_number = ?1)
                    ELSE ?5 END,
               ?6, ?7, ?8, ?9, ?10)",
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

        for fact in facts {
            match fact {
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
    use crate::feeds::companies_house::parse_event;

    fn event(line: &str) -> Fact {
        let event = Box::new(parse_event(line.as_bytes().to_vec()).expect("fixture line parses"));
        Fact::Event { feed: "companies".into(), event, received_at: Utc::now() }
    }

    #[tokio::test]
    async fn facts_arriving_soon_after_a_commit_are_committed_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = crate::store::open(&path).unwrap();
        let (reports_tx, mut reports) = mpsc::channel(16);
        let settings = WriterSettings { commit_every: Duration::from_millis(300), ..WriterSettings::default() };
        let store = StoreHandle::spawn(conn, path, reports_tx, settings);
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
        let summary = tokio::task::spawn_blocking(move || store.close()).await.unwrap();
        assert_eq!((summary.events_written, summary.unwritten), (3, 0));
    }
}
