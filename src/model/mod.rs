//! Everything the screen shows, updated by plain functions.
//!
//! The core loop owns the one [`Model`]. [`Model::apply`] folds in a feed
//! message and returns the durable facts for the store; it never reads the
//! clock or does I/O, so scenario tests with explicit times are exact.

pub mod enrich;
pub mod feed_history;
pub mod metrics;
pub mod nats_link;
pub mod proposal_filter;
pub mod proposals;
pub mod quotes;
pub mod strike_off;

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use feed_history::{FeedAbout, StateChange, StateHistory, STATE_HISTORY};
use feedtop_proto::{ChEvent, ConnState, FeedInfo, FeedMsg, FeedMsgKind, Quote, ResumePoint};
pub use metrics::{LatencySummary, LatencyWindow, RateWindow};
pub use quotes::{Direction, QuoteBook, TickerRow};
pub use strike_off::{ChangeKind, StrikeOffChange, StrikeOffTracker, Tally};

/// The derived state of a live feed that has gone quiet.
pub const STALLED: &str = "stalled";

/// The quiet period when a feed does not set one.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(45);

/// On a feed that replays what it missed, a sample at least this far behind
/// the source's clock, before the connection has delivered a fresh one, is
/// backlog: its age says how long feedtop was away, not how late the feed is.
pub const CATCH_UP_LAG: Duration = Duration::from_secs(60);

/// A catch-up with no backlog sample for this long has stopped: the server
/// sent all it had, or the connection went quiet. The screen then says what
/// was replayed instead of "catching up".
pub const CATCH_UP_QUIET: Duration = Duration::from_secs(10);

/// How many strike-off changes the pane keeps in memory (the database has all).
pub const STRIKE_OFF_HISTORY: usize = 2000;

/// A fact that must reach the database.
#[derive(Debug, Clone)]
pub enum Fact {
    Event {
        feed: String,
        event: Box<ChEvent>,
        received_at: DateTime<Utc>,
    },
    StrikeOff(StrikeOffChange),
    Gap {
        feed: String,
        at: DateTime<Utc>,
        after_timepoint: Option<i64>,
        reason: String,
    },
    Quote {
        feed: String,
        quote: Quote,
        received_at: DateTime<Utc>,
    },
    /// The feed's resume point moved (or, after a gap, was dropped).
    Resume {
        feed: String,
        point: ResumePoint,
    },
    /// An alert rule fired (raised by the pipeline, stored in `alerts`).
    Alert(Box<crate::alerts::Alert>),
    /// Queue the company's REST enrichment (profile, then officers), in the
    /// same transaction as the change that asked for it: a crash between the
    /// two can neither lose the calls nor queue them for a change not stored.
    Enrich {
        company_number: String,
        queued_at: DateTime<Utc>,
    },
    /// `feedtop relay`: a message to publish, stored with what it reports
    /// (and handed to the publisher already: see `relay::publisher`).
    Outbox(std::sync::Arc<crate::relay::OutboxMsg>),
    /// NATS acknowledged every outbox row up to this `seq`: delete them.
    Published(i64),
}

/// Per-feed counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedCounts {
    pub events: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub too_long: u64,
    pub keepalives: u64,
    pub unknown_kinds: u64,
    pub gaps: u64,
    /// Resume ids the server sent that could not be sent back, so not kept.
    pub unusable_resume_ids: u64,
}

/// What the Connections pane shows for one feed.
#[derive(Debug, Clone)]
pub struct FeedView {
    pub info: FeedInfo,
    pub state: ConnState,
    pub state_since: Option<DateTime<Utc>>,
    /// Connection attempts so far; the first is not a reconnect.
    pub attempts: u64,
    pub last_error: Option<String>,
    /// The last error came on the current live connection (no SSE
    /// subscription, a server's error event), so it is a present condition;
    /// otherwise an error shown beside `live` is history. Cleared by the next
    /// state change.
    pub error_while_live: bool,
    pub last_byte_at: Option<DateTime<Utc>>,
    pub last_event_at: Option<DateTime<Utc>>,
    pub last_timepoint: Option<i64>,
    pub counts: FeedCounts,
    pub rate: RateWindow,
    pub latency: LatencyWindow,
    /// True once a latency came from a naive (server-local) timestamp.
    pub latency_estimated: bool,
    /// How fine the feed's own timestamps are, from those seen so far.
    pub stamps: StampResolution,
    /// Symbols the source last said it has no data for (stooq `N/D`).
    pub no_data: Vec<String>,
    /// Round-trip time of the feed's own ping, where it has one.
    pub rtt: Option<Duration>,
    /// When `rtt` was measured.
    pub rtt_at: Option<DateTime<Utc>>,
    /// A live connection with nothing received for longer than this is
    /// shown as stalled (the feed's expected quiet period).
    pub stall_after: Duration,
    /// The backlog replayed since the feed last delivered a fresh sample,
    /// kept out of `latency`. `None` once a fresh sample arrives.
    pub catch_up: Option<CatchUp>,
    /// A fresh sample (behind by less than [`CATCH_UP_LAG`]) arrived on the
    /// current connection: later samples are latency however old they are,
    /// since a feed that fell behind while connected is late, not replaying.
    fresh_on_this_connection: bool,
    /// The last state changes and why (the feed's detail view).
    pub history: StateHistory,
    /// The feed as configured (the pipeline fills it in).
    pub about: FeedAbout,
}

/// A replay of missed events after a (re)connection, reported apart from
/// latency: "catching up: 1,204 replayed, lag 2h14m".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// Backlog samples received so far.
    pub replayed: u64,
    /// How far behind the source's clock the latest backlog sample was.
    pub lag: Duration,
    /// When the latest backlog sample arrived.
    pub last_at: DateTime<Utc>,
}

impl CatchUp {
    /// Backlog is still arriving. Once it stops for [`CATCH_UP_QUIET`]
    /// without a fresh sample, how far behind the feed is cannot be known.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        now - self.last_at < chrono::TimeDelta::from_std(CATCH_UP_QUIET).unwrap_or(chrono::TimeDelta::MAX)
    }
}

/// The resolution of a feed's timestamps. Companies House `published_at`
/// has whole seconds, so received minus published below a second is the
/// fraction of the second the event arrived in, not latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StampResolution {
    #[default]
    Unknown,
    /// Every timestamp so far was a whole second.
    WholeSeconds,
    /// One had a fraction. Sticky: a precise timestamp that lands on a whole
    /// second by chance does not make the feed coarse again.
    Fine,
}

impl StampResolution {
    fn seen(self, stamp: DateTime<Utc>) -> Self {
        match (self, stamp.timestamp_subsec_nanos()) {
            (Self::Fine, _) => Self::Fine,
            (_, 0) => Self::WholeSeconds,
            _ => Self::Fine,
        }
    }
}

impl FeedView {
    pub fn new(info: FeedInfo, latency_window: Duration) -> Self {
        Self {
            info,
            state: ConnState::Connecting,
            state_since: None,
            attempts: 0,
            last_error: None,
            error_while_live: false,
            last_byte_at: None,
            last_event_at: None,
            last_timepoint: None,
            counts: FeedCounts::default(),
            rate: RateWindow::default(),
            latency: LatencyWindow::new(latency_window),
            latency_estimated: false,
            stamps: StampResolution::Unknown,
            no_data: Vec::new(),
            rtt: None,
            rtt_at: None,
            stall_after: DEFAULT_STALL_AFTER,
            catch_up: None,
            fresh_on_this_connection: false,
            history: StateHistory::default(),
            about: FeedAbout::default(),
        }
    }

    /// Records one latency sample: received `at`, stamped `stamped` by the
    /// source. A replayed backlog sample goes to `catch_up` instead: an hour
    /// of backlog is not an hour of latency.
    fn record_latency(&mut self, at: DateTime<Utc>, stamped: DateTime<Utc>) {
        self.stamps = self.stamps.seen(stamped);
        let behind = (at - stamped).to_std().unwrap_or_default();
        if self.info.kind.replays_backlog() && !self.fresh_on_this_connection && behind >= CATCH_UP_LAG {
            let replayed = self.catch_up.map_or(0, |c| c.replayed) + 1;
            self.catch_up = Some(CatchUp { replayed, lag: behind, last_at: at });
            return;
        }
        self.fresh_on_this_connection = true;
        self.catch_up = None;
        self.latency.record(at, (at - stamped).num_milliseconds());
    }

    /// The resolution of the feed's latency in milliseconds: 1000 when its
    /// timestamps are whole seconds (a sub-second latency is then noise),
    /// 1 when finer; `None` before any timestamp.
    pub fn latency_resolution_ms(&self) -> Option<u64> {
        match self.stamps {
            StampResolution::Unknown => None,
            StampResolution::WholeSeconds => Some(1000),
            StampResolution::Fine => Some(1),
        }
    }

    pub fn reconnects(&self) -> u64 {
        self.attempts.saturating_sub(1)
    }

    /// Connected, but nothing has arrived for longer than the feed's quiet
    /// period: not dead yet (the read-idle timeout decides that), not healthy.
    pub fn is_stalled(&self, now: DateTime<Utc>) -> bool {
        self.state == ConnState::Live && self.quiet_for(now).is_some_and(|quiet| quiet > self.stall_after)
    }

    /// How long nothing has arrived on the current connection.
    pub fn quiet_for(&self, now: DateTime<Utc>) -> Option<Duration> {
        let since = self.last_byte_at.max(self.state_since)?;
        (now - since).to_std().ok()
    }

    /// The state as the operator should read it: `stalled` is derived here
    /// from the feed's own `live`.
    pub fn state_label(&self, now: DateTime<Utc>) -> &'static str {
        if self.is_stalled(now) {
            STALLED
        } else {
            self.state.label()
        }
    }

    /// Live and receiving: what the header counts as live.
    pub fn is_healthy(&self, now: DateTime<Utc>) -> bool {
        self.state == ConnState::Live && !self.is_stalled(now)
    }

    /// The round-trip time no longer describes the connection: the feed is
    /// not live and receiving, or the figure is older than the quiet period.
    pub fn rtt_is_stale(&self, now: DateTime<Utc>) -> bool {
        !self.is_healthy(now)
            || self.rtt_at.is_none_or(|at| (now - at).to_std().is_ok_and(|age| age > self.stall_after))
    }
}

/// What the store writer last reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHealth {
    pub events_written: u64,
    /// The current write problem, cleared when a batch commits again.
    pub error: Option<String>,
    /// Nothing is stored: a viewer without `--db`. The screen and the
    /// headless line say so instead of a count of nothing.
    pub no_database: bool,
}

/// feedtop's own health: queue depths and memory, sampled by the pipeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessStats {
    /// Feed messages waiting for the core loop.
    pub feed_queue: usize,
    /// Batches waiting for the store writer.
    pub store_queue: usize,
    /// Facts held by the core loop because the store queue was full.
    pub store_pending: usize,
    /// Resident memory, where the platform tells (Linux).
    pub rss_bytes: Option<u64>,
}

/// A report from the store writer thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreReport {
    pub events_written: u64,
    pub error: Option<String>,
}

/// History loaded from the database before the first frame.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Newest first.
    pub strike_offs: Vec<StrikeOffChange>,
    /// Gaps recorded per feed name.
    pub gaps: Vec<(String, u64)>,
    pub quotes: Vec<StoredQuote>,
}

/// A ticker row as stored: the latest quote and recent prices (oldest first).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredQuote {
    pub feed: String,
    pub quote: Quote,
    pub received_at: DateTime<Utc>,
    pub history: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub feeds: Vec<FeedView>,
    /// Newest first, capped at [`STRIKE_OFF_HISTORY`].
    pub strike_offs: VecDeque<StrikeOffChange>,
    /// Changes detected in this run.
    pub tally: Tally,
    pub tracker: StrikeOffTracker,
    pub quotes: QuoteBook,
    pub store: StoreHealth,
    pub process: ProcessStats,
    /// Events received in this run over all feeds (used for "PAUSED — N new").
    pub events_total: u64,
    /// The time of the latest tick; what "now" means for ages and windows.
    pub now: DateTime<Utc>,
    /// Running against the built-in simulator.
    pub demo: bool,
    /// Strike-off changes come from the source as messages of their own (a
    /// relay's stream, a recording) rather than from this model's tracker:
    /// only the side that saw a company's whole history can tell a change.
    pub changes_from_source: bool,
    /// `feedtop relay`: the publisher's link to NATS and its backlog.
    pub relay: Option<crate::relay::RelayStatus>,
    /// `--source nats://`: this viewer's own link to NATS.
    pub viewer: Option<crate::relay::ViewerStatus>,
    /// Since when the relay's and the viewer's links have been down.
    pub nats_links: nats_link::NatsLinks,
    /// Alerts raised in this run, newest first (the pipeline adds them).
    pub alerts: crate::alerts::AlertLog,
    /// The REST enrichment's state and each listed company's news.
    pub enrich: enrich::Enrichment,
}

impl Model {
    pub fn new(feeds: Vec<FeedInfo>, latency_window: Duration, now: DateTime<Utc>) -> Self {
        Self {
            feeds: feeds.into_iter().map(|f| FeedView::new(f, latency_window)).collect(),
            strike_offs: VecDeque::new(),
            tally: Tally::default(),
            tracker: StrikeOffTracker::default(),
            quotes: QuoteBook::default(),
            store: StoreHealth::default(),
            process: ProcessStats::default(),
            events_total: 0,
            now,
            demo: false,
            changes_from_source: false,
            relay: None,
            viewer: None,
            nats_links: nats_link::NatsLinks::default(),
            alerts: crate::alerts::AlertLog::default(),
            enrich: enrich::Enrichment::default(),
        }
    }

    /// Seeds the model with what earlier runs stored. Which companies are in
    /// the proposal is not loaded: the pipeline gives the tracker the store
    /// to ask ([`StrikeOffTracker::with_store`]).
    pub fn load_history(&mut self, history: History) {
        self.strike_offs = history.strike_offs.into_iter().take(STRIKE_OFF_HISTORY).collect();
        for (name, gaps) in history.gaps {
            if let Some(f) = self.feeds.iter_mut().find(|f| f.info.name == name) {
                f.counts.gaps = gaps;
            }
        }
        for stored in history.quotes {
            if let Some(index) = self.feed_index(&stored.feed) {
                let id = self.feeds[index].info.name.clone();
                self.quotes.restore(id, stored.quote, stored.received_at, stored.history);
            }
        }
    }

    /// Where the feed of this id (name) is in [`Model::feeds`].
    pub fn feed_index(&self, name: &str) -> Option<usize> {
        self.feeds.iter().position(|f| f.info.name == name)
    }

    /// Advances "now" (the render or report tick).
    pub fn tick(&mut self, now: DateTime<Utc>) {
        self.now = now;
        // The links' states as the pipeline last set them (it copies them
        // in after this), so a link's outage counts from the tick after it
        // was first seen down: at most one tick short.
        self.nats_links.relay.observe(self.relay.as_ref().map(|r| r.nats), now);
        self.nats_links.viewer.observe(self.viewer.as_ref().map(|v| v.nats), now);
    }

    /// Folds in one feed message; durable facts are pushed onto `facts`.
    pub fn apply(&mut self, msg: FeedMsg, facts: &mut Vec<Fact>) {
        let msg = match msg.kind {
            FeedMsgKind::Resumable { resume, inner } => {
                let feed = msg.feed.clone();
                self.apply(FeedMsg { feed: msg.feed, at: msg.at, kind: *inner }, facts);
                if self.feed_index(&feed).is_some() {
                    facts.push(Fact::Resume { feed: feed.to_string(), point: resume });
                }
                return;
            }
            kind => FeedMsg { kind, ..msg },
        };
        let Some(index) = self.feed_index(&msg.feed) else { return };
        let feed = &mut self.feeds[index];
        let at = msg.at;
        match msg.kind {
            FeedMsgKind::State(state) => {
                if state == ConnState::Connecting {
                    feed.attempts += 1;
                }
                if state == ConnState::Live {
                    feed.last_byte_at = Some(at);
                    // A new connection may replay again (a catch-up cut
                    // short by a disconnect goes on counting).
                    feed.fresh_on_this_connection = false;
                }
                feed.history.push(at, state.clone());
                feed.state = state;
                feed.state_since = Some(at);
                feed.error_while_live = false;
            }
            FeedMsgKind::Bytes => feed.last_byte_at = Some(at),
            FeedMsgKind::KeepAlive => {
                feed.last_byte_at = Some(at);
                feed.counts.keepalives += 1;
            }
            FeedMsgKind::Duplicate { .. } => {
                feed.last_byte_at = Some(at);
                feed.counts.duplicates += 1;
            }
            FeedMsgKind::Malformed { .. } => {
                feed.last_byte_at = Some(at);
                feed.counts.malformed += 1;
            }
            FeedMsgKind::TooLong => {
                feed.last_byte_at = Some(at);
                feed.counts.too_long += 1;
            }
            FeedMsgKind::Error(e) => {
                feed.error_while_live = feed.state == ConnState::Live;
                feed.history.note_error(&e);
                feed.last_error = Some(e);
            }
            FeedMsgKind::UnusableResumeId { .. } => feed.counts.unusable_resume_ids += 1,
            // Unwrapped above; nothing nests deeper.
            FeedMsgKind::Resumable { .. } => {}
            FeedMsgKind::Rtt(rtt) => {
                feed.last_byte_at = Some(at);
                feed.rtt = Some(rtt);
                feed.rtt_at = Some(at);
            }
            FeedMsgKind::Notice(_) => feed.last_byte_at = Some(at),
            FeedMsgKind::NoData(symbols) => {
                feed.last_byte_at = Some(at);
                feed.no_data = symbols;
            }
            FeedMsgKind::Quotes(quotes) => {
                feed.last_byte_at = Some(at);
                feed.last_event_at = Some(at);
                for quote in quotes {
                    feed.counts.events += 1;
                    self.events_total += 1;
                    feed.rate.record(at);
                    if let Some(t) = quote.time {
                        // Epoch ms below 10^12 is a monotonic clock, not a time: the
                        // decoders leave `time` empty then, so no latency is made up.
                        if let Some(stamped) = t.as_utc() {
                            feed.record_latency(at, stamped);
                            feed.latency_estimated |= t.is_estimate();
                        }
                    }
                    self.quotes.apply(msg.feed.clone(), quote.clone(), at);
                    facts.push(Fact::Quote { feed: feed.info.name.to_string(), quote, received_at: at });
                }
            }
            FeedMsgKind::Gap { after_timepoint, reason } => {
                feed.counts.gaps += 1;
                facts.push(Fact::Gap { feed: feed.info.name.to_string(), at, after_timepoint, reason });
            }
            FeedMsgKind::Event(event) => {
                feed.last_byte_at = Some(at);
                feed.last_event_at = Some(at);
                feed.last_timepoint = Some(event.timepoint);
                feed.counts.events += 1;
                self.events_total += 1;
                if !event.is_company_profile() {
                    feed.counts.unknown_kinds += 1;
                }
                feed.rate.record(at);
                if let Some(published) = event.published_at {
                    feed.record_latency(at, published);
                }
                let name = feed.info.name.to_string();
                if !self.changes_from_source {
                    if let Some(change) = self.tracker.observe(&event, at) {
                        self.push_change(change, facts);
                    }
                }
                facts.push(Fact::Event { feed: name, event, received_at: at });
            }
            FeedMsgKind::StrikeOff(change) if self.changes_from_source => self.push_change(*change, facts),
            // This model's tracker decides (a live run, where no feed sends one).
            FeedMsgKind::StrikeOff(_) => {}
        }
    }

    /// Companies in the proposal now, as this feedtop knows: `None` where
    /// the changes come from the source (a viewer sees only the relay's
    /// recent changes, not which companies were in the proposal before).
    pub fn in_proposal(&self) -> Option<u64> {
        (!self.changes_from_source).then(|| self.tracker.in_proposal() as u64)
    }

    fn push_change(&mut self, change: StrikeOffChange, facts: &mut Vec<Fact>) {
        self.tally.add(change.kind);
        self.strike_offs.push_front(change.clone());
        self.strike_offs.truncate(STRIKE_OFF_HISTORY);
        facts.push(Fact::StrikeOff(change));
    }

    pub fn apply_store_report(&mut self, report: StoreReport) {
        self.store.events_written = report.events_written;
        self.store.error = report.error;
    }

    /// Events per minute over all feeds.
    pub fn per_minute(&self) -> u64 {
        self.feeds.iter().map(|f| f.rate.per_minute(self.now)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use feedtop_proto::ch::parse_event;
    use feedtop_proto::FeedKind;

    fn info() -> FeedInfo {
        FeedInfo { name: "companies".into(), kind: FeedKind::CompaniesHouse }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap()
    }

    fn msg(at: DateTime<Utc>, kind: FeedMsgKind) -> FeedMsg {
        FeedMsg { feed: "companies".into(), at, kind }
    }

    #[test]
    fn fixture_through_the_model() {
        let mut m = Model::new(vec![info()], Duration::from_secs(300), t0());
        let mut facts = Vec::new();
        let fixture = include_str!("../../tests/fixtures/ch-companies-sample.ndjson");
        for line in fixture.lines() {
            let kind = if line.is_empty() {
                FeedMsgKind::KeepAlive
            } else {
                match parse_event(line.as_bytes().to_vec()) {
                    Ok(ev) => FeedMsgKind::Event(Box::new(ev)),
                    Err(e) => FeedMsgKind::Malformed { reason: e.to_string() },
                }
            };
            m.apply(msg(t0(), kind), &mut facts);
        }
        let c = m.feeds[0].counts;
        assert_eq!((c.events, c.unknown_kinds, c.malformed, c.keepalives), (27, 1, 1, 2));
        assert_eq!(m.tally, Tally { entered: 6, withdrawn: 3, struck_off: 2 });
        assert_eq!(m.feeds[0].last_timepoint, Some(82417342));
        let events = facts.iter().filter(|f| matches!(f, Fact::Event { .. })).count();
        let changes = facts.iter().filter(|f| matches!(f, Fact::StrikeOff(_))).count();
        assert_eq!((events, changes), (27, 11));
        // Newest first: the last change in the file is the struck-off of 12007733.
        assert_eq!(m.strike_offs[0].company_number, "12007733");
        assert_eq!(m.strike_offs[0].kind, ChangeKind::StruckOff);
    }

    #[test]
    fn states_and_reconnect_count() {
        let mut m = Model::new(vec![info()], Duration::from_secs(300), t0());
        let mut facts = Vec::new();
        let retry_at = t0() + TimeDelta::seconds(5);
        for kind in [
            FeedMsgKind::State(ConnState::Connecting),
            FeedMsgKind::State(ConnState::Live),
            FeedMsgKind::Error("the server closed the stream".into()),
            FeedMsgKind::State(ConnState::Backoff { retry_at }),
            FeedMsgKind::State(ConnState::Connecting),
        ] {
            m.apply(msg(t0(), kind), &mut facts);
        }
        let f = &m.feeds[0];
        assert_eq!(f.state, ConnState::Connecting);
        assert_eq!(f.reconnects(), 1);
        assert_eq!(f.last_error.as_deref(), Some("the server closed the stream"));
        assert!(facts.is_empty());
    }

    /// The detail view's history: every state change with the error that
    /// ended the attempt before it, the last 20 only.
    #[test]
    fn state_changes_are_kept_with_their_reasons() {
        let mut m = Model::new(vec![info()], Duration::from_secs(300), t0());
        let mut facts = Vec::new();
        let at = |s: i64| t0() + TimeDelta::seconds(s);
        for i in 0..12 {
            m.apply(msg(at(3 * i), FeedMsgKind::State(ConnState::Connecting)), &mut facts);
            m.apply(msg(at(3 * i + 1), FeedMsgKind::Error(format!("HTTP 429 #{i}"))), &mut facts);
            let retry_at = at(3 * i + 3);
            m.apply(msg(at(3 * i + 1), FeedMsgKind::State(ConnState::Backoff { retry_at })), &mut facts);
        }
        m.apply(msg(at(40), FeedMsgKind::State(ConnState::Live)), &mut facts);
        let h: Vec<_> = m.feeds[0].history.newest_first().map(|c| (c.at, c.state.label(), c.reason.clone())).collect();
        assert_eq!(h.len(), STATE_HISTORY);
        assert_eq!(h[0], (at(40), "live", None));
        assert_eq!(h[1], (at(34), "backoff", Some("HTTP 429 #11".to_string())));
        assert_eq!(h[2], (at(33), "connecting", None));
        // 25 changes: the first five (tries 0, 1 and the connecting of 2) are gone.
        assert_eq!(h[19], (at(7), "backoff", Some("HTTP 429 #2".to_string())));
    }

    #[test]
    fn an_error_while_live_is_current_until_the_state_changes() {
        let mut m = Model::new(vec![info()], Duration::from_secs(300), t0());
        let mut facts = Vec::new();
        m.apply(msg(t0(), FeedMsgKind::State(ConnState::Live)), &mut facts);
        m.apply(msg(t0(), FeedMsgKind::Error("no subscription".into())), &mut facts);
        let f = &m.feeds[0];
        assert_eq!(
            (f.state.clone(), f.last_error.as_deref(), f.error_while_live),
            (ConnState::Live, Some("no subscription"), true)
        );
        m.apply(msg(t0(), FeedMsgKind::State(ConnState::Connecting)), &mut facts);
        assert!(!m.feeds[0].error_while_live);
        m.apply(msg(t0(), FeedMsgKind::Error("refused".into())), &mut facts);
        assert!(!m.feeds[0].error_while_live, "not live when it came");
    }

    #[test]
    fn a_quiet_live_feed_is_stalled_until_something_arrives() {
        let mut m = Model::new(vec![info()], Duration::from_secs(300), t0());
        m.feeds[0].stall_after = Duration::from_secs(30);
        let mut facts = Vec::new();
        let at = |s: i64| t0() + TimeDelta::seconds(s);
        m.apply(msg(at(0), FeedMsgKind::State(ConnState::Live)), &mut facts);
        m.apply(msg(at(5), FeedMsgKind::Rtt(Duration::from_millis(12))), &mut facts);
        let f = |m: &Model| m.feeds[0].clone();
        // (seconds after the start, state shown, rtt stale)
        for (now, label, rtt_stale) in [(5, "live", false), (35, "live", false), (36, "stalled", true)] {
            assert_eq!(f(&m).state_label(at(now)), label, "at {now} s");
            assert_eq!(f(&m).rtt_is_stale(at(now)), rtt_stale, "rtt at {now} s");
        }
        m.apply(msg(at(40), FeedMsgKind::KeepAlive), &mut facts);
        assert_eq!(f(&m).state_label(at(41)), "live", "a heartbeat ends the stall");
        assert!(f(&m).rtt_is_stale(at(41)), "the rtt itself is still 36 s old");
        // Only a live connection stalls: a backoff is shown as it is.
        let retry_at = at(200);
        m.apply(msg(at(50), FeedMsgKind::State(ConnState::Backoff { retry_at })), &mut facts);
        assert_eq!(f(&m).state_label(at(150)), "backoff");
        // A new connection counts its quiet time from when it went live.
        m.apply(msg(at(300), FeedMsgKind::State(ConnState::Live)), &mut facts);
        assert_eq!(f(&m).state_label(at(320)), "live");
        assert_eq!(f(&m).state_label(at(331)), "stalled");
    }

    #[test]
    fn gap_is_counted_and_stored() {
        let mut m = Model::new(vec![info()], Duration::from_secs(300), t0());
        let mut facts = Vec::new();
        m.apply(msg(t0(), FeedMsgKind::Gap { after_timepoint: Some(7), reason: "416".into() }), &mut facts);
        assert_eq!(m.feeds[0].counts.gaps, 1);
        assert!(matches!(facts[0], Fact::Gap { after_timepoint: Some(7), .. }));
    }

    /// Whole-second `published_at` makes the feed's latency whole seconds;
    /// one stamp with a fraction makes it fine for good.
    #[test]
    fn latency_resolution_follows_the_feeds_timestamps() {
        let mut m = Model::new(vec![info()], Duration::from_secs(300), t0());
        let mut facts = Vec::new();
        assert_eq!(m.feeds[0].latency_resolution_ms(), None);
        let line = include_str!("../../tests/fixtures/ch-companies-sample.ndjson").lines().next().unwrap();
        let mut send = |m: &mut Model, published: DateTime<Utc>| {
            let mut ev = parse_event(line.as_bytes().to_vec()).unwrap();
            ev.published_at = Some(published);
            m.apply(msg(published + TimeDelta::milliseconds(487), FeedMsgKind::Event(Box::new(ev))), &mut facts);
        };
        send(&mut m, t0());
        send(&mut m, t0() + TimeDelta::seconds(1));
        assert_eq!(m.feeds[0].latency_resolution_ms(), Some(1000));
        send(&mut m, t0() + TimeDelta::milliseconds(2250));
        assert_eq!(m.feeds[0].latency_resolution_ms(), Some(1));
        send(&mut m, t0() + TimeDelta::seconds(3));
        assert_eq!(m.feeds[0].latency_resolution_ms(), Some(1), "sticky");
    }

    #[test]
    fn latency_is_received_minus_published() {
        let mut m = Model::new(vec![info()], Duration::from_secs(300), t0());
        let mut facts = Vec::new();
        let mut ev = parse_event(
            include_str!("../../tests/fixtures/ch-companies-sample.ndjson").lines().next().unwrap().as_bytes().to_vec(),
        )
        .unwrap();
        ev.published_at = Some(t0());
        m.apply(msg(t0() + TimeDelta::milliseconds(1500), FeedMsgKind::Event(Box::new(ev))), &mut facts);
        let s = m.feeds[0].latency.summary(t0() + TimeDelta::seconds(2)).unwrap();
        assert!((1490..=1510).contains(&s.p50), "{s:?}");
        m.tick(t0() + TimeDelta::seconds(2));
        assert_eq!(m.per_minute(), 1);
    }

    /// An event of the sample fixture published at `published`, received at `at`.
    fn event_at(m: &mut Model, published: DateTime<Utc>, at: DateTime<Utc>) {
        let line = include_str!("../../tests/fixtures/ch-companies-sample.ndjson").lines().next().unwrap();
        let mut ev = parse_event(line.as_bytes().to_vec()).unwrap();
        ev.published_at = Some(published);
        m.apply(msg(at, FeedMsgKind::Event(Box::new(ev))), &mut Vec::new());
    }

    /// After a resume the server replays an hour of backlog: that is a lag
    /// reported apart, not an hour of latency in the percentiles.
    #[test]
    fn replayed_backlog_is_catch_up_not_latency() {
        let mut m = Model::new(vec![info()], Duration::from_secs(300), t0());
        m.apply(msg(t0(), FeedMsgKind::State(ConnState::Live)), &mut Vec::new());
        for i in 0..3 {
            let received = t0() + TimeDelta::seconds(i);
            event_at(&mut m, received - TimeDelta::minutes(134) + TimeDelta::seconds(i), received);
        }
        let f = &m.feeds[0];
        let c = f.catch_up.expect("catching up");
        assert_eq!((c.replayed, c.lag), (3, Duration::from_secs(134 * 60 - 2)));
        assert!(c.is_active(t0() + TimeDelta::seconds(5)));
        assert_eq!(f.latency.summary(t0() + TimeDelta::seconds(3)), None, "no backlog in the percentiles");
        assert_eq!(f.counts.events, 3, "replayed events still count as events");

        // The first fresh event ends the catch-up and is the first latency.
        let fresh = t0() + TimeDelta::seconds(10);
        event_at(&mut m, fresh - TimeDelta::seconds(2), fresh);
        let f = &m.feeds[0];
        assert_eq!(f.catch_up, None);
        let s = f.latency.summary(fresh).unwrap();
        assert_eq!((s.count, s.max / 100), (1, 20), "{s:?}");
    }

    /// Once the connection has delivered a fresh event, an old one is a late
    /// feed, which the operator must see as latency.
    #[test]
    fn lateness_after_a_fresh_event_is_latency() {
        let mut m = Model::new(vec![info()], Duration::from_secs(300), t0());
        m.apply(msg(t0(), FeedMsgKind::State(ConnState::Live)), &mut Vec::new());
        event_at(&mut m, t0(), t0());
        let late = t0() + TimeDelta::minutes(3);
        event_at(&mut m, t0(), late);
        let f = &m.feeds[0];
        assert_eq!(f.catch_up, None);
        assert_eq!(f.latency.summary(late).unwrap().count, 2);
    }

    /// A reconnection may replay again; a catch-up cut short by a
    /// disconnect goes on counting. Feeds that start at the present (here a
    /// WebSocket one) never replay, so their old stamps are latency.
    #[test]
    fn catch_up_restarts_per_connection_and_only_where_feeds_replay() {
        let mut m = Model::new(vec![info()], Duration::from_secs(300), t0());
        let live = |m: &mut Model, at| m.apply(msg(at, FeedMsgKind::State(ConnState::Live)), &mut Vec::new());
        live(&mut m, t0());
        event_at(&mut m, t0() - TimeDelta::hours(1), t0());
        live(&mut m, t0() + TimeDelta::seconds(5));
        event_at(&mut m, t0() - TimeDelta::minutes(50), t0() + TimeDelta::seconds(6));
        assert_eq!(m.feeds[0].catch_up.map(|c| c.replayed), Some(2));
        // After a fresh event and a new connection, old events are backlog again.
        event_at(&mut m, t0() + TimeDelta::seconds(7), t0() + TimeDelta::seconds(7));
        live(&mut m, t0() + TimeDelta::seconds(8));
        event_at(&mut m, t0() - TimeDelta::minutes(5), t0() + TimeDelta::seconds(9));
        assert_eq!(m.feeds[0].catch_up.map(|c| c.replayed), Some(1));
        // Quiet for CATCH_UP_QUIET: no longer "catching up", and no lag claimed.
        let c = m.feeds[0].catch_up.unwrap();
        assert!(!c.is_active(t0() + TimeDelta::seconds(9) + TimeDelta::from_std(CATCH_UP_QUIET).unwrap()));

        let ws = FeedInfo { name: "ticks".into(), kind: FeedKind::WebSocket(feedtop_proto::Dialect::Carbon) };
        let mut m = Model::new(vec![ws], Duration::from_secs(300), t0());
        let mut quote = Quote::new("BRENT_CRUDE", 75.5);
        quote.time = Some(feedtop_proto::QuoteTime::Absolute(t0() - TimeDelta::hours(1)));
        m.apply(FeedMsg { feed: "ticks".into(), at: t0(), kind: FeedMsgKind::State(ConnState::Live) }, &mut Vec::new());
        m.apply(FeedMsg { feed: "ticks".into(), at: t0(), kind: FeedMsgKind::Quotes(vec![quote]) }, &mut Vec::new());
        assert_eq!(m.feeds[0].catch_up, None);
        assert_eq!(m.feeds[0].latency.summary(t0()).unwrap().count, 1);
    }

    #[test]
    fn a_resumable_message_stores_its_id_after_what_it_covers() {
        let mut m = Model::new(vec![info()], Duration::from_secs(300), t0());
        let mut facts = Vec::new();
        let quotes = vec![Quote::new("BRENT_CRUDE", 75.5), Quote::new("WTI_CRUDE", 71.0)];
        let inner = Box::new(FeedMsgKind::Quotes(quotes));
        let resume = ResumePoint::EventId("41".into());
        m.apply(msg(t0(), FeedMsgKind::Resumable { resume, inner }), &mut facts);
        assert_eq!(m.feeds[0].counts.events, 2);
        assert_eq!(m.quotes.len(), 2);
        assert!(
            matches!(facts[..], [Fact::Quote { .. }, Fact::Quote { .. }, Fact::Resume { point: ResumePoint::EventId(ref id), .. }] if id == "41")
        );
    }

    #[test]
    fn no_data_symbols_are_shown_not_counted_as_errors() {
        let mut m = Model::new(vec![info()], Duration::from_secs(300), t0());
        let mut facts = Vec::new();
        m.apply(msg(t0(), FeedMsgKind::NoData(vec!["XYZ".into(), "NEW".into()])), &mut facts);
        let f = &m.feeds[0];
        assert_eq!(f.no_data, ["XYZ", "NEW"]);
        assert_eq!((f.counts.malformed, f.counts.events, f.last_error.as_ref()), (0, 0, None));
        assert_eq!(f.last_byte_at, Some(t0()), "an answer, so the feed is not quiet");
        assert!(facts.is_empty(), "nothing to store");
        // The next answer replaces the list.
        m.apply(msg(t0(), FeedMsgKind::NoData(vec![])), &mut facts);
        assert!(m.feeds[0].no_data.is_empty());
    }

    #[test]
    fn messages_for_unknown_feeds_are_ignored() {
        let mut m = Model::new(vec![info()], Duration::from_secs(300), t0());
        let mut facts = Vec::new();
        m.apply(FeedMsg { feed: "not-configured".into(), at: t0(), kind: FeedMsgKind::Bytes }, &mut facts);
        assert!(facts.is_empty());
    }
}
