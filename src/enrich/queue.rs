//! The enrichment task: takes calls from the stored queue one at a time,
//! highest priority first, waits for the limiter and the breaker, makes the
//! call, and stores what it brought in the same transaction that takes the
//! call off the queue. Stopped between calls (a call in flight finishes
//! and is stored first), it leaves the queue exactly where it was: a
//! restart neither repeats nor forgets a call.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::breaker::Breaker;
use super::client::{Client, Reply};
use super::limiter::Limiter;
use super::EnrichSettings;
use crate::model::enrich::{EnrichState, EnrichStatus, EnrichUpdate};
use crate::store::enrich::{self as db, Job, JobKind};

/// Company news waiting for the pipeline; past this, news is dropped (the
/// database has it; only the screen's counts lag until the next start).
const UPDATES: usize = 256;

/// The running task: its reports, and the way to stop it.
pub struct EnrichHandle {
    pub status: watch::Receiver<EnrichStatus>,
    pub updates: mpsc::Receiver<EnrichUpdate>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl EnrichHandle {
    /// Asks the task to stop after the call in flight (stored first), and
    /// waits for it up to `within`; then it is aborted.
    pub async fn stop(self, within: Duration) {
        let EnrichHandle { stop, mut task, .. } = self;
        stop.send_replace(true);
        if tokio::time::timeout(within, &mut task).await.is_err() {
            task.abort();
        }
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Opens its own connection to the database and starts the task.
pub fn spawn(settings: EnrichSettings, db_path: &Path) -> anyhow::Result<EnrichHandle> {
    let conn = crate::store::open(db_path)?;
    let client = Client::new(&settings.url, settings.key.clone(), settings.timeout)?;
    let mut status = EnrichStatus::new(settings.limit.calls, settings.limit.per);
    // What is queued from earlier runs shows from the start (and "idle with
    // nothing queued" is never reported before the queue was looked at).
    status.queued = crate::store::enrich::queue_len(&conn)?;
    let (status_tx, status_rx) = watch::channel(status.clone());
    let (updates_tx, updates_rx) = mpsc::channel(UPDATES);
    let (stop_tx, stop_rx) = watch::channel(false);
    // The calls of an earlier run that still count against the window.
    let window = chrono::TimeDelta::from_std(settings.limit.per).unwrap_or_default();
    let (now, wall_now) = (Instant::now(), Utc::now());
    let earlier = crate::store::enrich::calls_since(&conn, wall_now - window)?;
    let earlier = earlier.into_iter().map(|at| now - (wall_now - at).to_std().unwrap_or_default());
    let task = Task {
        limiter: Limiter::with_calls(settings.limit, earlier),
        breaker: Breaker::new(settings.breaker),
        settings,
        conn,
        client,
        status,
        status_tx,
        updates: updates_tx,
        stop: stop_rx,
    };
    let task = tokio::spawn(task.run());
    Ok(EnrichHandle { status: status_rx, updates: updates_rx, stop: stop_tx, task })
}

struct Task {
    settings: EnrichSettings,
    conn: Connection,
    client: Client,
    limiter: Limiter,
    breaker: Breaker,
    status: EnrichStatus,
    status_tx: watch::Sender<EnrichStatus>,
    updates: mpsc::Sender<EnrichUpdate>,
    stop: watch::Receiver<bool>,
}

impl Task {
    async fn run(mut self) {
        loop {
            if *self.stop.borrow() {
                return;
            }
            let job = match db::next_job(&self.conn) {
                Ok(job) => job,
                Err(e) => {
                    tracing::warn!("enrichment: cannot read its queue ({e}); trying again shortly");
                    if self.sleep(Instant::now() + self.settings.idle_poll).await {
                        return;
                    }
                    continue;
                }
            };
            let Some(job) = job else {
                self.publish(EnrichState::Idle, None);
                if self.sleep(Instant::now() + self.settings.idle_poll).await {
                    return;
                }
                continue;
            };
            if self.skip(&job) {
                continue;
            }
            let now = Instant::now();
            if let Some(until) = self.breaker.open_until(now) {
                self.publish(EnrichState::Open { until: wall(until) }, Some(until));
                if self.sleep(until).await {
                    return;
                }
                continue;
            }
            let at = self.limiter.next_allowed(now);
            if at > now {
                let state = match self.limiter.paused_until(now) {
                    Some(until) => EnrichState::Paused { until: wall(until) },
                    None => EnrichState::Running,
                };
                self.publish(state, Some(at));
                if self.sleep(at).await {
                    return;
                }
                continue;
            }
            self.limiter.record(now);
            let wall_now = Utc::now();
            let window = chrono::TimeDelta::from_std(self.settings.limit.per).unwrap_or_default();
            if let Err(e) = db::record_call(&self.conn, wall_now, wall_now - window) {
                tracing::warn!("enrichment: cannot record a call ({e}); a restart may not know of it");
            }
            self.status.calls += 1;
            self.publish(EnrichState::Running, None);
            if self.call(&job).await {
                self.publish(EnrichState::AuthFailed, None);
                // The key was refused: no more calls this run; the rest of
                // feedtop goes on. Wait to be stopped.
                let _ = self.stop.wait_for(|s| *s).await;
                return;
            }
        }
    }

    /// A queued call not to make: fetched within the cache age, or a
    /// company number that is not one (it goes into the URL's path).
    fn skip(&mut self, job: &Job) -> bool {
        let valid = (1..=10).contains(&job.company_number.len())
            && job.company_number.bytes().all(|b| b.is_ascii_alphanumeric());
        let since = Utc::now() - chrono::TimeDelta::from_std(self.settings.cache_age).unwrap_or_default();
        let cached = valid && db::fetched_since(&self.conn, &job.company_number, job.kind, since).unwrap_or(false);
        if valid && !cached {
            return false;
        }
        if !valid {
            tracing::warn!("enrichment: {:?} is not a company number; not fetched", job.company_number);
        }
        if let Err(e) = db::drop_job(&self.conn, job.id) {
            tracing::warn!("enrichment: cannot update its queue ({e})");
        }
        true
    }

    /// Makes one call and stores what it gave. True when the key was refused.
    async fn call(&mut self, job: &Job) -> bool {
        let number = job.company_number.clone();
        let what = match job.kind {
            JobKind::Profile => "profile",
            JobKind::Officers => "officers",
        };
        let (outcome, server) = match job.kind {
            JobKind::Profile => {
                let (reply, server) = self.client.profile(&number).await;
                (reply.map(Fetched::Profile), server)
            }
            JobKind::Officers => {
                let (reply, server) = self.client.officers(&number, job.start_index).await;
                (reply.map(Fetched::Officers), server)
            }
        };
        let now = Instant::now();
        self.limiter.observe(now, server);
        match outcome {
            Reply::Ok(fetched) => {
                self.breaker.success();
                if let Err(e) = self.store(job, fetched) {
                    tracing::warn!("enrichment: {number} {what}: cannot store ({e}); fetched again later");
                }
            }
            Reply::NotFound => self.breaker.success(),
            Reply::AuthFailed => {
                tracing::error!(
                    "enrichment: the REST API refused the key in {} (401); no more REST calls this run (the stream goes on); check the key and restart",
                    self.settings.key_env
                );
                return true;
            }
            Reply::OverLimit => {
                tracing::warn!("enrichment: the REST API says the rate limit is reached; pausing until its reset");
            }
            Reply::Failed(e) => {
                if self.breaker.failure(now) {
                    let until = wall(now + self.settings.breaker.open_for).format("%H:%M:%S UTC");
                    tracing::warn!("enrichment: {number} {what}: {e}; repeated failures, no calls until {until}");
                } else {
                    tracing::warn!("enrichment: {number} {what}: {e}; tried again later");
                }
            }
            Reply::Refused(e) => {
                tracing::warn!("enrichment: {number} {what}: {e}; not fetched");
                let _ = db::drop_job(&self.conn, job.id);
            }
        }
        false
    }

    fn store(&mut self, job: &Job, fetched: Fetched) -> rusqlite::Result<()> {
        let at = Utc::now();
        let company_number = job.company_number.clone();
        match fetched {
            Fetched::Profile(profile) => {
                let disagrees = db::save_profile(&mut self.conn, job, &profile, at)?;
                if let Some(d) = &disagrees {
                    tracing::warn!("enrichment: {company_number}: the REST profile contradicts the stream ({d})");
                }
                let _ = self.updates.try_send(EnrichUpdate::Profile { company_number, disagrees });
            }
            Fetched::Officers(page) => {
                db::save_officers_page(&mut self.conn, job, &page.officers, page.next, at)?;
                if page.next.is_none() {
                    let count = db::officers_of(&self.conn, &company_number)?.len() as u32;
                    let _ = self.updates.try_send(EnrichUpdate::Officers { company_number, count });
                }
            }
        }
        Ok(())
    }

    /// Sleeps until `until`; true when asked to stop meanwhile.
    async fn sleep(&mut self, until: Instant) -> bool {
        let stopped = tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => false,
            _ = self.stop.wait_for(|s| *s) => true,
        };
        stopped || *self.stop.borrow()
    }

    fn publish(&mut self, state: EnrichState, next: Option<Instant>) {
        let now = Instant::now();
        self.status.state = state;
        self.status.queued = db::queue_len(&self.conn).unwrap_or(self.status.queued);
        self.status.used = self.limiter.used(now);
        self.status.next_call = next.map(wall);
        self.status_tx.send_if_modified(|s| {
            let changed = *s != self.status;
            if changed {
                *s = self.status.clone();
            }
            changed
        });
    }
}

enum Fetched {
    Profile(crate::store::enrich::Profile),
    Officers(super::client::OfficersPage),
}

impl<T> Reply<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Reply<U> {
        match self {
            Reply::Ok(v) => Reply::Ok(f(v)),
            Reply::NotFound => Reply::NotFound,
            Reply::AuthFailed => Reply::AuthFailed,
            Reply::OverLimit => Reply::OverLimit,
            Reply::Failed(e) => Reply::Failed(e),
            Reply::Refused(e) => Reply::Refused(e),
        }
    }
}

/// An instant as a wall-clock time, for the screen.
fn wall(at: Instant) -> DateTime<Utc> {
    let now = Instant::now();
    let delta = if at >= now {
        chrono::TimeDelta::from_std(at - now).unwrap_or_default()
    } else {
        -chrono::TimeDelta::from_std(now - at).unwrap_or_default()
    };
    Utc::now() + delta
}
