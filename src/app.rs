//! The pipeline shared by the TUI and headless modes: feed tasks, the model,
//! and the store writer, wired with bounded channels.
//!
//! The front end drives it with two calls: [`Pipeline::next_input`] (async,
//! cancel-safe, so it can sit in a `select!` beside terminal input and ticks)
//! and [`Pipeline::handle`] (sync: apply to the model, queue facts for the store).
//!
//! Queue policy: feed → core is bounded (`FEED_QUEUE`); core → store is
//! bounded and the store never drops. While the store is slow, facts collect
//! in `pending` up to `MAX_PENDING`; past that the core stops reading feed
//! messages, so backpressure reaches the sockets instead of memory growing.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::feeds::companies_house::{ChConnector, ChSettings};
use crate::feeds::poll::{PollConnector, PollSettings};
use crate::feeds::sse::{SseConnector, SseSettings};
use crate::feeds::supervisor::{supervise, FeedLink};
use crate::feeds::websocket::{WsConnector, WsSettings};
use crate::feeds::{Command, FeedId, FeedInfo, FeedKind, FeedMsg, FeedMsgKind};
use crate::model::proposals::SharedStore;
use crate::model::{Fact, Model, StoreReport, StrikeOffTracker};
use crate::store::lock::DbLock;
use crate::store::proposals::SqliteProposals;
use crate::store::writer::WriterSummary;
use crate::store::{self, StoreError, StoreHandle, WriterSettings};

/// How long the feeds get at shutdown to close their connections politely.
const FEED_STOP: Duration = Duration::from_millis(400);

/// How long a stopping relay goes on publishing its outbox.
const RELAY_FINISH: Duration = Duration::from_secs(2);

/// Messages that may wait between the feed tasks and the core loop.
pub const FEED_QUEUE: usize = 1024;
/// Feed messages applied per wake-up before yielding to input and render.
const DRAIN: usize = 1024;
/// Facts held while the store catches up before feeds are throttled
/// (about 4 MB of 2 KB events).
const MAX_PENDING: usize = 2_000;
/// How long shutdown waits for the store to commit what it holds. A healthy
/// store needs a few milliseconds for the most it can hold (a few thousand
/// facts); a read-only or locked one would otherwise keep the user waiting
/// on retries. What is not written by then is fetched again from the resume
/// point on the next start, and the exit message says how much it was.
pub const STORE_SHUTDOWN: Duration = Duration::from_millis(1500);

/// Companies the strike-off tracker keeps in memory at least (about 130
/// bytes each, with the last status and detail the `from` of a change
/// needs); the rest are asked of the database.
const TRACKER_CACHE: usize = 32_768;

/// The most company events the model can have applied that the store has
/// not committed yet. Each feed message carries at most one company event.
/// - The core's backlog: it reads feeds only while it holds fewer than
///   `MAX_PENDING` facts, and then applies at most `DRAIN + 1` messages.
/// - The writer's queue: `queue` batches, each a whole backlog.
/// - The writer's open batch: a backlog, topped up with queued backlogs
///   while it holds fewer than `max_batch` facts.
pub fn max_uncommitted_events(writer: &WriterSettings) -> usize {
    let backlog = MAX_PENDING + DRAIN;
    let writing = backlog.max(writer.max_batch.saturating_sub(1) + backlog);
    backlog + writer.queue.max(1) * backlog + writing
}

/// The tracker's cache: it must outlast every uncommitted event (the
/// invariant in `model::proposals`), with room to spare.
pub fn tracker_capacity(writer: &WriterSettings) -> std::num::NonZeroUsize {
    let needed = max_uncommitted_events(writer).saturating_mul(2).max(TRACKER_CACHE);
    std::num::NonZeroUsize::new(needed).unwrap_or(std::num::NonZeroUsize::MIN)
}

/// Where a feed picks up after a restart, as stored.
#[derive(Debug, Clone, Default)]
struct Resume {
    timepoint: Option<i64>,
    event_id: Option<String>,
}

/// One configured feed.
#[derive(Debug, Clone)]
pub struct FeedSpec {
    pub info: FeedInfo,
    pub settings: FeedSettings,
}

#[derive(Debug, Clone)]
pub enum FeedSettings {
    CompaniesHouse(ChSettings),
    WebSocket(WsSettings),
    Sse(SseSettings),
    Poll(PollSettings),
}

/// The stable name of a Companies House feed (its storage key), e.g.
/// `ch/companies`.
pub fn companies_house_feed_name(stream: &str) -> String {
    format!("ch/{}", stream.trim_start_matches('/'))
}

impl FeedSpec {
    pub fn companies_house(name: impl Into<FeedId>, settings: ChSettings) -> Self {
        Self { info: FeedInfo::new(name, FeedKind::CompaniesHouse), settings: FeedSettings::CompaniesHouse(settings) }
    }

    pub fn websocket(name: impl Into<FeedId>, settings: WsSettings) -> Self {
        let kind = FeedKind::WebSocket(settings.dialect);
        Self { info: FeedInfo::new(name, kind), settings: FeedSettings::WebSocket(settings) }
    }

    pub fn sse(name: impl Into<FeedId>, settings: SseSettings) -> Self {
        Self { info: FeedInfo::new(name, FeedKind::Sse), settings: FeedSettings::Sse(settings) }
    }

    pub fn poll(name: impl Into<FeedId>, settings: PollSettings) -> Self {
        let kind = FeedKind::Poll(settings.format);
        Self { info: FeedInfo::new(name, kind), settings: FeedSettings::Poll(settings) }
    }

    /// The feed's reconnect timings.
    pub fn reconnect(&self) -> &crate::feeds::supervisor::Reconnect {
        match &self.settings {
            FeedSettings::CompaniesHouse(s) => &s.reconnect,
            FeedSettings::WebSocket(s) => &s.reconnect,
            FeedSettings::Sse(s) => &s.reconnect,
            FeedSettings::Poll(s) => &s.reconnect,
        }
    }

    /// Starts the feed's task.
    fn spawn(self, link: FeedLink, resume: Resume) -> anyhow::Result<JoinHandle<()>> {
        Ok(match self.settings {
            FeedSettings::CompaniesHouse(settings) => {
                let timings = settings.reconnect.clone();
                tokio::spawn(supervise(link, timings, ChConnector::new(settings, resume.timepoint)?))
            }
            FeedSettings::WebSocket(settings) => {
                let timings = settings.reconnect.clone();
                tokio::spawn(supervise(link, timings, WsConnector::new(settings)))
            }
            FeedSettings::Sse(settings) => {
                let timings = settings.reconnect.clone();
                tokio::spawn(supervise(link, timings, SseConnector::new(settings, resume.event_id)?))
            }
            FeedSettings::Poll(settings) => {
                let timings = settings.reconnect.clone();
                tokio::spawn(supervise(link, timings, PollConnector::new(settings)?))
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub feeds: Vec<FeedSpec>,
    pub db_path: PathBuf,
    pub latency_window: Duration,
    pub demo: bool,
    pub writer: WriterSettings,
}

/// Something the front end should react to.
#[derive(Debug)]
pub enum Input {
    Feed(FeedMsg),
    Store(StoreReport),
    /// The store queue has room again after a stall.
    StoreHasRoom,
    /// News of one company from the enrichment task.
    Enrich(crate::model::enrich::EnrichUpdate),
    /// Every message of the source was delivered (a replay reached the end
    /// of its recording, or where the file was cut).
    SourceEnded,
    /// A viewer asked the relay, over NATS, to reconnect this feed.
    RemoteReconnect(FeedId),
}

pub struct Pipeline {
    /// Written only here (feed messages, store reports, the tick); the
    /// front ends read it through [`Pipeline::model`].
    model: Model,
    feed_rx: mpsc::Receiver<FeedMsg>,
    controls: Vec<mpsc::Sender<Command>>,
    tasks: Vec<JoinHandle<()>>,
    /// `None`: a viewer that keeps no database (see [`ViewerStore`]).
    store: Option<StoreHandle>,
    reports: mpsc::Receiver<StoreReport>,
    pending: Vec<Fact>,
    rss_sampled: Option<std::time::Instant>,
    /// Which feeds were last seen stalled, to log each change once.
    stalled: Vec<bool>,
    /// `[[alerts]]` rules: evaluated here, where every front end passes.
    alert_engine: crate::alerts::Engine,
    alert_exec: crate::alerts::exec::Runner,
    db_path: PathBuf,
    /// The REST enrichment task, when there is a key for it.
    enrich: Option<crate::enrich::EnrichHandle>,
    /// The changes that queue a company for enrichment.
    enrich_on: Vec<crate::model::strike_off::ChangeKind>,
    /// `feedtop record`: every feed message also goes to this file.
    recorder: Option<crate::record::Recorder>,
    /// `--source FILE`: the recording the messages come from instead of feeds.
    replay: Option<ReplayState>,
    /// The feed queue closed (every sender gone): asked of it no more.
    feeds_closed: bool,
    /// `--source nats://`: the viewer reading the relay's stream.
    viewer: Option<crate::relay::ViewerHandle>,
    /// `feedtop relay`: every message also goes to the outbox.
    relay: Option<RelayOut>,
    /// Told by the store writer after each commit.
    committed: std::sync::Arc<tokio::sync::Notify>,
    /// A viewer's `r` asks the relay to reconnect the feed (`--ask-relay`).
    ask_relay: bool,
    /// `relay --accept-reconnect`: feeds viewers asked to reconnect.
    remote_reconnects: Option<mpsc::Receiver<FeedId>>,
}

/// Where messages come from instead of feed tasks.
enum Source {
    Replay(crate::record::Replay),
    Nats(Box<crate::relay::Viewer>, ViewerStore),
}

/// Whether a viewer of a relay's stream keeps a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerStore {
    /// `--db PATH`: what it receives is stored as a live run stores it.
    Database,
    /// The default: nothing is stored, the model holds what the screen
    /// shows, and the history is the stream's. Ten viewers in one process
    /// met a 10 ms p99 without databases and missed it with them
    /// (PERFORMANCE.md, "Relay over NATS").
    Nothing,
}

/// `feedtop relay`: what goes to the outbox, and the task publishing it.
struct RelayOut {
    outgoing: crate::relay::Outgoing,
    publisher: crate::relay::Publisher,
    /// The last acknowledged `seq` handed to the store for deletion.
    deleted_through: i64,
}

/// A replay in progress: its task, its end, and the clock the model runs on.
struct ReplayState {
    task: JoinHandle<()>,
    end: tokio::sync::oneshot::Receiver<crate::record::replay::ReplayEnd>,
    clock: crate::record::replay::ReplayClock,
    ended: Option<crate::record::replay::ReplayEnd>,
}

/// A feed task ended before shutdown: a bug, reported by name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FeedStopped(pub String);

/// What happened at shutdown, for the exit message.
#[derive(Debug, Clone, Default)]
pub struct ShutdownSummary {
    pub writer: WriterSummary,
    /// `feedtop record`: the finished recording, or why it is incomplete.
    pub recording: Option<Result<crate::record::writer::RecordSummary, String>>,
}

impl Pipeline {
    /// Opens the database, loads history and resume points, and starts every
    /// feed and the writer. Must run inside a tokio runtime. Database errors
    /// are [`StoreError`]s (downcast to tell them apart); a database another
    /// feedtop is using is refused before any feed connects.
    pub fn start(config: PipelineConfig) -> anyhow::Result<Self> {
        Self::start_from(config, None)
    }

    /// [`Pipeline::start`] with a recording as the source instead of the
    /// configured feeds (`config.feeds` is not used): the feeds shown are
    /// the recording's, and no feed task, hence no socket, is started.
    pub fn replay(config: PipelineConfig, replay: crate::record::Replay) -> anyhow::Result<Self> {
        Self::start_from(config, Some(Source::Replay(replay)))
    }

    /// [`Pipeline::start`] fed from a relay's NATS stream (`config.feeds`
    /// is not used): the relay's feeds, its states and its strike-off
    /// changes, with no connection but the one to NATS.
    /// With [`ViewerStore::Nothing`], `config.db_path` is not used.
    pub fn from_nats(config: PipelineConfig, viewer: crate::relay::Viewer, store: ViewerStore) -> anyhow::Result<Self> {
        Self::start_from(config, Some(Source::Nats(Box::new(viewer), store)))
    }

    fn start_from(mut config: PipelineConfig, source: Option<Source>) -> anyhow::Result<Self> {
        let infos: Vec<FeedInfo> = match &source {
            Some(Source::Replay(r)) => r.feeds().to_vec(),
            Some(Source::Nats(v, _)) => v.feeds().to_vec(),
            None => config.feeds.iter().map(|f| f.info.clone()).collect(),
        };
        if source.is_some() {
            config.feeds.clear();
        }
        let changes_from_source = match &source {
            Some(Source::Replay(r)) => r.has_strike_offs(),
            Some(Source::Nats(..)) => true,
            None => false,
        };
        let committed = config.writer.on_commit.get_or_insert_with(Default::default).clone();
        let keeps_database = !matches!(source, Some(Source::Nats(_, ViewerStore::Nothing)));
        let (replay, viewer) = match source {
            Some(Source::Replay(r)) => (Some(r), None),
            Some(Source::Nats(v, _)) => (None, Some(*v)),
            None => (None, None),
        };
        let clock = replay.as_ref().map(crate::record::Replay::clock);
        let started = clock.as_ref().map_or_else(Utc::now, |c| c.now(tokio::time::Instant::now()));
        let mut model = Model::new(infos, config.latency_window, started);
        model.demo = config.demo;
        model.changes_from_source = changes_from_source;
        model.store.no_database = !keeps_database;
        let opened = match keeps_database {
            true => Some(open_store(&config, &mut model, viewer.is_some())?),
            false => None,
        };
        for (view, spec) in model.feeds.iter_mut().zip(&config.feeds) {
            view.stall_after = spec.reconnect().stall_after;
            view.about = spec.about();
        }

        let (feed_tx, feed_rx) = mpsc::channel(FEED_QUEUE);
        let mut controls = Vec::new();
        let mut tasks = Vec::new();
        for spec in config.feeds {
            let (ctl_tx, ctl_rx) = mpsc::channel(8);
            let name = &spec.info.name;
            let resume = match &opened {
                Some((conn, _)) => {
                    stored_resume(conn, name).map_err(|e| StoreError::from_sqlite(&config.db_path, e))?
                }
                None => Resume::default(),
            };
            if let Some(tp) = resume.timepoint {
                tracing::info!("{name}: resuming from timepoint {tp}");
            }
            if let Some(id) = &resume.event_id {
                tracing::info!("{name}: resuming after event id {id}");
            }
            let id = spec.info.name.clone();
            let task = spec.spawn(FeedLink::new(id, feed_tx.clone(), ctl_rx), resume)?;
            controls.push(ctl_tx);
            tasks.push(task);
        }
        let replay = replay.zip(clock).map(|(replay, clock)| {
            let (task, end) = replay.spawn(feed_tx.clone());
            ReplayState { task, end, clock, ended: None }
        });
        let viewer = viewer.map(|v| v.spawn(feed_tx.clone()));
        drop(feed_tx);
        let (report_tx, reports) = mpsc::channel(64);
        let db_path = config.db_path.clone();
        let store =
            opened.map(|(conn, lock)| StoreHandle::spawn(conn, config.db_path, Some(lock), report_tx, config.writer));
        let stalled = vec![false; model.feeds.len()];
        Ok(Self {
            model,
            feed_rx,
            controls,
            tasks,
            store,
            reports,
            pending: Vec::new(),
            rss_sampled: None,
            stalled,
            alert_engine: crate::alerts::Engine::default(),
            alert_exec: crate::alerts::exec::Runner::default(),
            db_path,
            enrich: None,
            enrich_on: Vec::new(),
            recorder: None,
            replay,
            feeds_closed: false,
            viewer,
            relay: None,
            committed,
            ask_relay: false,
            remote_reconnects: None,
        })
    }

    /// `--ask-relay`: a viewer's `r` asks the relay to reconnect the feed
    /// over NATS instead of reconnecting the viewer's own connection.
    pub fn ask_relay_to_reconnect(&mut self) {
        self.ask_relay = true;
    }

    /// `relay --accept-reconnect`: viewers may ask, over NATS request/reply
    /// and as far as NATS permissions let them, for a feed to reconnect.
    pub fn accept_reconnects(&mut self, settings: crate::relay::NatsSettings) {
        let (tx, rx) = mpsc::channel(8);
        let feeds: Vec<FeedId> = self.model.feeds.iter().map(|f| f.info.name.clone()).collect();
        tokio::spawn(async move {
            let events = std::sync::Arc::new(crate::relay::nats::ConnectionEvents::default());
            let served = match crate::relay::nats::connect(&settings, "feedtop relay control", false, events).await {
                Ok(client) => {
                    crate::relay::control::serve(client, &settings.stream, feeds, tx).await.map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match served {
                // The answering task runs until the pipeline drops the receiver.
                Ok(task) => drop(task),
                Err(e) => tracing::warn!("reconnect requests cannot be accepted: {e}"),
            }
        });
        self.remote_reconnects = Some(rx);
    }

    /// `feedtop relay`: every message from now on is also handed to a
    /// publisher that sends it to NATS at once, in order, and stored in the
    /// outbox in the transaction of what it reports, for when the publisher
    /// is behind (see [`crate::relay::outbox`]).
    pub fn relay_to(mut self, settings: crate::relay::NatsSettings) -> anyhow::Result<Self> {
        anyhow::ensure!(self.store.is_some(), "a relay keeps its outbox in a database; this pipeline has none");
        let header = feedtop_proto::wire::RecordingHeader {
            feeds: self.model.feeds.iter().map(|f| f.info.clone()).collect(),
            started: Utc::now(),
            writer: format!("feedtop {} relay", env!("CARGO_PKG_VERSION")),
            strike_offs: true,
        };
        tracing::info!("relaying every message to NATS {}, stream {}", settings.shown_url(), settings.stream);
        let publisher = crate::relay::Publisher::spawn(settings, &self.db_path, self.committed.clone(), header)
            .map_err(|e| StoreError::from_sqlite(&self.db_path, e))?;
        self.model.relay = Some(publisher.status.borrow().clone());
        self.relay = Some(RelayOut { outgoing: Default::default(), publisher, deleted_through: 0 });
        Ok(self)
    }

    /// Writes every feed message from now on to `path` (created or
    /// replaced), after a header naming the feeds.
    pub fn record_to(mut self, path: &std::path::Path) -> anyhow::Result<Self> {
        let feeds = self.model.feeds.iter().map(|f| f.info.clone()).collect();
        self.recorder = Some(crate::record::Recorder::create(path, feeds, Utc::now())?);
        tracing::info!("recording every feed message to {}", path.display());
        Ok(self)
    }

    /// Whether the source has delivered everything it will: a replay that
    /// reached the end of its recording (never, for live feeds).
    pub fn source_finished(&self) -> bool {
        self.replay.as_ref().is_some_and(|r| r.ended.is_some())
    }

    /// The time the model runs on: the recording's during a replay.
    fn clock(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match &self.replay {
            Some(r) => r.clock.now(tokio::time::Instant::now()),
            None => now,
        }
    }

    /// Starts the REST enrichment task (none without settings: no key).
    /// From then on, each strike-off change of a kind in `settings.on`
    /// queues its company, in the change's own transaction.
    pub fn with_enrichment(mut self, settings: Option<crate::enrich::EnrichSettings>) -> anyhow::Result<Self> {
        let Some(settings) = settings else { return Ok(self) };
        anyhow::ensure!(self.store.is_some(), "enrichment queues its calls in a database; this pipeline has none");
        self.enrich_on = settings.on.clone();
        let on: Vec<&str> = settings.on.iter().map(|k| k.as_str()).collect();
        tracing::info!(
            "enrichment: companies of {} changes are fetched from the REST API within {}/{}",
            on.join(", "),
            settings.limit.calls,
            humantime::format_duration(settings.limit.per)
        );
        self.enrich = Some(crate::enrich::spawn(settings, &self.db_path)?);
        Ok(self)
    }

    /// Waits for the next thing to handle. Cancel-safe.
    pub async fn next_input(&mut self) -> Input {
        if let Some(store) = self.store.as_ref().filter(|_| self.pending.len() >= MAX_PENDING) {
            // Stop reading feeds until the store takes the backlog.
            tokio::select! {
                _ = store.ready() => return Input::StoreHasRoom,
                Some(r) = self.reports.recv() => return Input::Store(r),
            }
        }
        let enrich = async {
            match self.enrich.as_mut() {
                Some(e) => e.updates.recv().await,
                None => std::future::pending().await,
            }
        };
        let remote = async {
            match self.remote_reconnects.as_mut() {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = self.feed_rx.recv(), if !self.feeds_closed => match msg {
                Some(msg) => Input::Feed(msg),
                None => {
                    self.feeds_closed = true;
                    Input::SourceEnded
                }
            },
            Some(r) = self.reports.recv() => Input::Store(r),
            Some(u) = enrich => Input::Enrich(u),
            Some(feed) = remote => Input::RemoteReconnect(feed),
        }
    }

    /// Applies an input and whatever feed messages are already queued.
    pub fn handle(&mut self, input: Input) {
        match input {
            Input::Feed(msg) => {
                self.apply(msg);
                for _ in 0..DRAIN {
                    match self.feed_rx.try_recv() {
                        Ok(msg) => self.apply(msg),
                        Err(_) => break,
                    }
                }
            }
            Input::Store(report) => self.model.apply_store_report(report),
            Input::StoreHasRoom => {}
            Input::SourceEnded => self.source_ended(),
            Input::RemoteReconnect(feed) => self.reconnect(&feed),
            Input::Enrich(update) => {
                self.model.enrich.apply(update);
                let listed = self.model.strike_offs.iter().map(|c| c.company_number.as_str());
                self.model.enrich.retain_listed(listed, 2 * crate::model::STRIKE_OFF_HISTORY);
            }
        }
        self.flush();
    }

    /// Turns on the config file's `[[alerts]]` rules (none by default).
    /// Apart from [`PipelineConfig`] so the feeds-only callers (tests,
    /// benchmarks) stay as they are.
    pub fn set_alert_rules(&mut self, rules: crate::alerts::Rules) {
        if !rules.is_empty() {
            tracing::info!("{} alert rule(s) on", rules.0.len());
        }
        self.alert_engine = crate::alerts::Engine::new(rules.0);
    }

    /// The exec action's limits (tests shorten them).
    pub fn set_alert_exec(&mut self, runner: crate::alerts::exec::Runner) {
        self.alert_exec = runner;
    }

    /// The model as the feeds and the store have made it.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// One beat of the pipeline, the same for every front end (TUI,
    /// headless, the benchmarks, the tests): a feed task that died is
    /// reported (a bug: the front ends stop on it rather than watch a feed
    /// that is silently dead); then the model's clock moves to `now` (rates,
    /// ages, stalls), pending facts go to the store if it has room, and the
    /// self-metrics and stall log lines are refreshed.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Result<(), FeedStopped> {
        if let Some(report) = self.stopped_feed() {
            return Err(FeedStopped(report));
        }
        // The links' news first: the model's tick dates their changes.
        if let Some(v) = &self.viewer {
            self.model.viewer = Some(v.status.borrow().clone());
        }
        if let Some(relay) = &self.relay {
            self.model.relay = Some(relay.publisher.status.borrow().clone());
        }
        self.model.tick(self.clock(now));
        if let Some(r) = self.recorder.as_mut() {
            r.flush_if_due();
        }
        if let Some(e) = &self.enrich {
            self.model.enrich.status = Some(e.status.borrow().clone());
        }
        if let Some(relay) = self.relay.as_mut() {
            let acked = *relay.publisher.acked.borrow();
            if acked > relay.deleted_through {
                relay.deleted_through = acked;
                self.pending.push(Fact::Published(acked));
            }
        }
        if !self.alert_engine.is_empty() {
            let mut raised = Vec::new();
            self.alert_engine.tick(&self.model, &mut raised);
            raised.into_iter().for_each(|a| self.raise(a));
        }
        self.flush();
        self.sample();
        Ok(())
    }

    /// One alert: numbered into the model's list (the TUI's list and flash,
    /// the headless `alerts` array), a Log line, a row for the store, and
    /// the rule's program when it has the exec action.
    fn raise(&mut self, alert: crate::alerts::Alert) {
        let alert = self.model.alerts.push(alert);
        tracing::warn!("ALERT rule {} {}: {}", alert.rule, alert.kind.as_str(), alert.detail);
        if alert.actions.exec {
            if let Some(rule) = self.alert_engine.rule(alert.rule) {
                // Detached: it logs its own outcome, and a hung program is killed.
                drop(self.alert_exec.run(rule, &alert));
            }
        }
        self.pending.push(Fact::Alert(Box::new(alert)));
    }

    /// Hands pending facts to the store if it has room; called on every input and tick.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let Some(store) = &self.store else {
            // A viewer without a database: the model has applied them.
            self.pending.clear();
            return;
        };
        if let Err(facts) = store.try_send(std::mem::take(&mut self.pending)) {
            self.pending = facts;
        }
    }

    /// The feed queue closed: for a replay, its recording is used up, and
    /// the user is told whether to its end or to where the file was cut.
    fn source_ended(&mut self) {
        let Some(replay) = self.replay.as_mut() else { return };
        replay.clock.end();
        let end = replay.end.try_recv().ok();
        match &end {
            Some(end) if end.stop.is_some() => tracing::warn!("{end}"),
            Some(end) => tracing::info!("{end}"),
            None => tracing::warn!("the replay stopped unexpectedly; this is a bug, please report it"),
        }
        replay.ended = Some(end.unwrap_or_else(|| crate::record::replay::ReplayEnd {
            path: Default::default(),
            messages: 0,
            stop: None,
        }));
    }

    fn apply(&mut self, msg: FeedMsg) {
        log_message(&self.model, &msg);
        // What the recorder and the relay pass on: the message, then the
        // strike-off change it made (found once, here, with the history).
        let passed_on = (self.recorder.is_some() || self.relay.is_some()).then(|| msg.clone());
        if let Some(r) = self.replay.as_mut() {
            r.clock.message(msg.at, tokio::time::Instant::now());
        }
        // The facts this message made are the strike-off changes and quotes
        // the rules look at, and the changes that queue an enrichment: each
        // is made once, so each alerts (and queues) once.
        let feed = msg.feed.clone();
        let before = self.pending.len();
        self.model.apply(msg, &mut self.pending);
        if let Some(msg) = passed_on {
            self.pass_on(msg, before);
        }
        if self.enrich.is_some() {
            let wanted: Vec<Fact> = self.pending[before..]
                .iter()
                .filter_map(|f| match f {
                    Fact::StrikeOff(c) if self.enrich_on.contains(&c.kind) => {
                        Some(Fact::Enrich { company_number: c.company_number.clone(), queued_at: c.received_at })
                    }
                    _ => None,
                })
                .collect();
            self.pending.extend(wanted);
        }
        if self.alert_engine.is_empty() {
            return;
        }
        let mut raised = Vec::new();
        for fact in &self.pending[before..] {
            match fact {
                Fact::StrikeOff(change) => self.alert_engine.strike_off(&feed, change, &mut raised),
                Fact::Quote { feed, quote, received_at } => {
                    self.alert_engine.quote(feed, quote, *received_at, &mut raised)
                }
                _ => {}
            }
        }
        raised.into_iter().for_each(|a| self.raise(a));
    }

    /// Writes `msg` and the strike-off changes among the facts from
    /// `before` on to the recording and the relay's outbox.
    fn pass_on(&mut self, msg: FeedMsg, before: usize) {
        let changes: Vec<FeedMsg> = self.pending[before..]
            .iter()
            .filter_map(|f| match f {
                Fact::StrikeOff(c) => Some(FeedMsg {
                    feed: msg.feed.clone(),
                    at: c.received_at,
                    kind: FeedMsgKind::StrikeOff(Box::new(c.clone())),
                }),
                _ => None,
            })
            .collect();
        for m in std::iter::once(msg).chain(changes) {
            if let Some(r) = self.recorder.as_mut() {
                r.write(&m);
            }
            if let Some(relay) = self.relay.as_mut() {
                // Published from here at once; stored with what it reports.
                for row in relay.outgoing.rows(&m) {
                    self.pending.push(Fact::Outbox(relay.publisher.stage(row)));
                }
            }
        }
    }

    /// Facts received and not committed yet (held here or by the writer).
    pub fn unstored(&self) -> usize {
        self.pending.len() + self.store.as_ref().map_or(0, StoreHandle::in_flight)
    }

    pub fn feed_count(&self) -> usize {
        self.controls.len()
    }

    /// A feed task that ended: they loop until shutdown, so that is a bug
    /// (a panic). Returns a one-line report naming the feed; the front ends
    /// stop on it rather than go on watching a feed that is silently dead.
    fn stopped_feed(&mut self) -> Option<String> {
        use futures_util::FutureExt;
        let id = self.tasks.iter().position(|t| t.is_finished())?;
        let name = self.model.feeds.get(id).map_or("?", |f| f.info.name.as_str()).to_string();
        let why = match (&mut self.tasks[id]).now_or_never() {
            Some(Err(e)) if e.is_panic() => {
                let payload = e.into_panic();
                payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_string())
            }
            _ => "it ended".to_string(),
        };
        // Replace the handle so the report is made once.
        self.tasks[id] = tokio::spawn(std::future::pending());
        Some(format!("the {name} feed stopped unexpectedly ({why}); this is a bug, please report it"))
    }

    /// Refreshes the self-metrics (queue depths every call, memory at most
    /// once a second: reading /proc is cheap but not free).
    fn sample(&mut self) {
        let p = &mut self.model.process;
        p.feed_queue = self.feed_rx.len();
        p.store_queue = self.store.as_ref().map_or(0, StoreHandle::queued);
        p.store_pending = self.pending.len();
        if self.rss_sampled.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            self.rss_sampled = Some(std::time::Instant::now());
            p.rss_bytes = resident_memory();
        }
        self.log_stalls();
    }

    /// A Log line when a feed goes quiet for longer than its quiet period,
    /// and when it recovers (the state itself is derived in the model).
    fn log_stalls(&mut self) {
        let now = self.model.now;
        for (feed, was) in self.model.feeds.iter().zip(self.stalled.iter_mut()) {
            let is = feed.is_stalled(now);
            if is && !*was {
                let quiet = feed.quiet_for(now).and_then(|d| chrono::TimeDelta::from_std(d).ok()).unwrap_or_default();
                let quiet = crate::time::short_duration(quiet);
                tracing::warn!(
                    "{}: stalled: nothing received for {quiet} (expected within {}); the read-idle timeout reconnects if it stays quiet",
                    feed.info.name,
                    humantime::format_duration(feed.stall_after)
                );
            } else if !is && *was && feed.state == crate::feeds::ConnState::Live {
                tracing::info!("{}: receiving again", feed.info.name);
            }
            *was = is;
        }
    }

    /// Asks one feed to drop its connection and connect now. (The control
    /// channels are in the model's feed order, both made from the one list.)
    pub fn reconnect(&self, feed: &FeedId) {
        if let Some(viewer) = &self.viewer {
            // A viewer's only connection is its own, to NATS; the relay's
            // feeds are asked for over NATS, when the user chose to.
            let command = match self.ask_relay {
                true => crate::relay::ViewerCommand::AskRelay(feed.clone()),
                false => crate::relay::ViewerCommand::Reconnect,
            };
            let _ = viewer.control.try_send(command);
            return;
        }
        let Some(index) = self.model.feed_index(feed) else { return };
        if let Some(ctl) = self.controls.get(index) {
            // A full control queue already holds a reconnect request.
            let _ = ctl.try_send(Command::Reconnect);
            tracing::info!("{feed}: reconnect requested");
        }
    }

    pub fn reconnect_all(&self) {
        if let Some(viewer) = &self.viewer {
            let _ = viewer.control.try_send(crate::relay::ViewerCommand::Reconnect);
            return;
        }
        self.model.feeds.iter().for_each(|f| self.reconnect(&f.info.name));
    }

    /// Stops the feeds, applies what they already delivered, and waits for
    /// the writer to commit everything, for [`STORE_SHUTDOWN`] at most (a dead
    /// disk cannot hang the exit).
    pub async fn shutdown(self) -> (Model, ShutdownSummary) {
        self.shutdown_or(std::future::pending()).await
    }

    /// [`Pipeline::shutdown`], cut short when `stop_now` resolves (a second
    /// `q` or Ctrl-C): whatever is not committed by then is counted as
    /// unwritten, and is fetched again from the resume point next time.
    pub async fn shutdown_or(self, stop_now: impl std::future::Future<Output = ()>) -> (Model, ShutdownSummary) {
        self.shutdown_within(STORE_SHUTDOWN, stop_now).await
    }

    /// Asks every feed to close its connection politely (a WebSocket sends
    /// close 1001 "going away"), applies what they deliver meanwhile, and
    /// aborts whatever has not ended after [`FEED_STOP`].
    async fn stop_feeds(&mut self) {
        for control in &self.controls {
            let _ = control.try_send(Command::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + FEED_STOP;
        while !self.tasks.iter().all(JoinHandle::is_finished) {
            // `None` once every task has ended and dropped its sender.
            match tokio::time::timeout_at(deadline, self.feed_rx.recv()).await {
                Ok(Some(msg)) => self.apply(msg),
                Ok(None) | Err(_) => break,
            }
        }
        for task in &self.tasks {
            task.abort();
        }
        if let Some(r) = &self.replay {
            r.task.abort();
        }
        if let Some(v) = &self.viewer {
            v.task.abort();
        }
    }

    async fn shutdown_within(
        mut self,
        within: Duration,
        stop_now: impl std::future::Future<Output = ()>,
    ) -> (Model, ShutdownSummary) {
        // One deadline for both steps: the feeds' polite close comes out of
        // the store's time, so the whole stop stays within `within`.
        let deadline = tokio::time::Instant::now() + within;
        if let Some(enrich) = self.enrich.take() {
            // A call in flight is finished and stored, within its share of the time.
            enrich.stop(within / 4).await;
        }
        self.stop_feeds().await;
        tokio::pin!(stop_now);
        let mut stopped = false;
        while let Ok(msg) = self.feed_rx.try_recv() {
            self.apply(msg);
        }
        let pending = std::mem::take(&mut self.pending);
        let mut unsent = 0;
        if let Some(store) = self.store.as_ref().filter(|_| !pending.is_empty()) {
            let count = pending.len();
            let sent = tokio::select! {
                sent = tokio::time::timeout_at(deadline, store.send(pending)) => matches!(sent, Ok(Ok(()))),
                _ = &mut stop_now => {
                    stopped = true;
                    false
                }
            };
            if !sent {
                unsent = count;
            }
        }
        let left =
            if stopped { Duration::ZERO } else { deadline.saturating_duration_since(tokio::time::Instant::now()) };
        let stop_now = async move {
            if !stopped {
                stop_now.await;
            }
        };
        // A replay's final state is at the recording's time, not the wall's.
        let replay_now = self.replay.as_ref().map(|r| r.clock.now(tokio::time::Instant::now()));
        let mut writer = match self.store.take() {
            Some(store) => store.close(left, stop_now).await,
            None => WriterSummary::default(),
        };
        writer.unwritten += unsent;
        if writer.unwritten > 0 {
            tracing::warn!(
                "{} facts were not written; feeds with a resume point fetch them again from it on the next start",
                writer.unwritten
            );
        }
        // Everything is in the outbox now: publish what NATS takes in a
        // moment; the rest goes at the next start.
        if let Some(relay) = self.relay.take() {
            let status = relay.publisher.finish(RELAY_FINISH).await;
            if status.backlog > 0 {
                tracing::warn!(
                    "{} messages wait in the outbox of {}; they are published, in order, at the next start",
                    status.backlog,
                    self.db_path.display()
                );
            }
            self.model.relay = Some(status);
        }
        // The final state says what the writer finally did.
        let recording = self.recorder.take().map(crate::record::Recorder::finish);
        if let Some(Err(e)) = &recording {
            tracing::error!("{e}");
        }
        let mut model = self.model;
        model.tick(replay_now.unwrap_or_else(Utc::now));
        model.store.events_written = writer.events_written;
        if let Some(e) = &writer.last_error {
            model.store.error = Some(e.clone());
        }
        (model, ShutdownSummary { writer, recording })
    }
}

/// Opens the database of a pipeline (refused when another feedtop holds
/// it), and loads into `model` what it shows from the start: the recent
/// strike-off changes, their enrichment, the proposal tracker's store.
fn open_store(
    config: &PipelineConfig,
    model: &mut Model,
    viewer: bool,
) -> anyhow::Result<(rusqlite::Connection, DbLock)> {
    let lock = DbLock::acquire(&config.db_path)?;
    let conn = store::open(&config.db_path)?;
    let sqlite = |e| StoreError::from_sqlite(&config.db_path, e);
    if viewer {
        // A viewer's batches are the live rate's, not a catch-up's: the
        // writer's 8 MB cache (store::configure) would only be memory.
        // 2 MB, SQLite's default: `feedtop bench --scenario relay`'s
        // resting viewer, PERFORMANCE.md.
        conn.pragma_update(None, "cache_size", -2048).map_err(sqlite)?;
    }
    let names: Vec<String> = model.feeds.iter().map(|f| f.info.name.to_string()).collect();
    let history = store::queries::load_history(&conn, &names).map_err(sqlite)?;
    model.load_history(history);
    let listed: Vec<&str> = model.strike_offs.iter().map(|c| c.company_number.as_str()).collect();
    model.enrich.companies = store::enrich::enrichment_of(&conn, &listed).map_err(sqlite)?;
    let proposals: SharedStore = std::sync::Arc::new(std::sync::Mutex::new(SqliteProposals::open(&config.db_path)?));
    model.tracker = StrikeOffTracker::with_store(proposals, tracker_capacity(&config.writer))
        .map_err(|e| anyhow::anyhow!("database {}: {e}", config.db_path.display()))?;
    Ok((conn, lock))
}

/// Where a feed picks up, as its last run stored it.
fn stored_resume(conn: &rusqlite::Connection, feed: &str) -> rusqlite::Result<Resume> {
    Ok(Resume { timepoint: store::queries::cursor(conn, feed)?, event_id: store::queries::resume_id(conn, feed)? })
}

/// Resident set size from `/proc/self/status` (Linux); `None` elsewhere.
pub fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resolves on Ctrl-C (SIGINT), SIGTERM or SIGHUP: each ends the run
/// cleanly, with everything stored. SIGHUP is what an SSH session that drops
/// sends; its default action would kill feedtop mid-write.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // A signal that cannot be watched only leaves the others.
        let watch = |kind: SignalKind| async move {
            match signal(kind) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = watch(SignalKind::terminate()) => {}
            _ = watch(SignalKind::hangup()) => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Log lines for what a user should know about; routine traffic is not logged.
fn log_message(model: &Model, msg: &FeedMsg) {
    let Some(feed) = model.feed_index(&msg.feed).map(|i| &model.feeds[i]) else { return };
    let name = &feed.info.name;
    match &msg.kind {
        FeedMsgKind::State(state) if state.label() != feed.state.label() || feed.state_since.is_none() => {
            tracing::info!("{name}: {}", state.label());
        }
        FeedMsgKind::Error(e) => tracing::warn!("{name}: {e}"),
        // Subscribed, connected: rare, and what a user checks first when data does not come.
        FeedMsgKind::Notice(text) => tracing::info!("{name}: {text}"),
        // Said when the list changes, not on every poll.
        FeedMsgKind::NoData(symbols) if *symbols != feed.no_data && !symbols.is_empty() => {
            tracing::info!("{name}: no data for {}", symbols.join(", "))
        }
        FeedMsgKind::Malformed { reason } => tracing::warn!("{name}: skipped a malformed line: {reason}"),
        FeedMsgKind::TooLong => tracing::warn!("{name}: skipped a line over the size limit"),
        FeedMsgKind::Gap { after_timepoint, reason } => {
            tracing::warn!("{name}: gap after timepoint {after_timepoint:?}: {reason}")
        }
        // Logged once per run; the counter shows how many followed.
        FeedMsgKind::UnusableResumeId { reason } if feed.counts.unusable_resume_ids == 0 => {
            tracing::warn!("{name}: the server sent an event id that is not kept as the resume point: {reason}")
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The invariant the strike-off tracker's correctness rests on
    /// (model::proposals): its cache outlasts every uncommitted event.
    #[test]
    fn the_tracker_cache_outlasts_every_uncommitted_event() {
        let defaults = WriterSettings::default();
        assert_eq!(max_uncommitted_events(&defaults), 11_071);
        assert!(tracker_capacity(&defaults).get() >= 2 * max_uncommitted_events(&defaults));
        let big = WriterSettings { max_batch: 100_000, queue: 8, ..WriterSettings::default() };
        assert!(tracker_capacity(&big).get() >= 2 * max_uncommitted_events(&big), "follows the settings");
    }

    /// The tracker's reader connection must not keep the WAL alive: the
    /// last connection to close deletes it, and a read-only one could not.
    #[tokio::test]
    async fn a_clean_stop_leaves_no_wal_beside_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let settings = ChSettings::new("http://127.0.0.1:9", "/companies", None);
        let p = Pipeline::start(PipelineConfig {
            feeds: vec![FeedSpec::companies_house("ch/companies", settings)],
            db_path: db.clone(),
            latency_window: Duration::from_secs(300),
            demo: false,
            writer: WriterSettings::default(),
        })
        .unwrap();
        let (model, _) = p.shutdown().await;
        drop(model);
        let wal = dir.path().join("t.db-wal");
        assert!(!wal.exists(), "{} left behind", wal.display());
    }

    #[tokio::test]
    async fn a_feed_task_that_dies_is_reported_once_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let settings = ChSettings::new("http://127.0.0.1:9", "/companies", None);
        let mut p = Pipeline::start(PipelineConfig {
            feeds: vec![FeedSpec::companies_house("ch/companies", settings)],
            db_path: dir.path().join("t.db"),
            latency_window: Duration::from_secs(300),
            demo: false,
            writer: WriterSettings::default(),
        })
        .unwrap();
        assert_eq!(p.stopped_feed(), None, "a running feed is not reported");
        p.tasks[0].abort();
        p.tasks[0] = tokio::spawn(async { panic!("decoder exploded") });
        while !p.tasks[0].is_finished() {
            tokio::task::yield_now().await;
        }
        let report = p.stopped_feed().unwrap();
        assert!(report.contains("ch/companies") && report.contains("decoder exploded"), "{report}");
        assert_eq!(p.stopped_feed(), None, "reported once");
        p.shutdown().await;
    }
}
