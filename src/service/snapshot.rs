//! What the HTTP endpoints serve: a small copy of the model the pipeline
//! publishes each tick ([`Publisher::publish`]), so a scrape never touches
//! (or waits on) the model itself.
//!
//! Health: a feed is healthy while live and receiving; otherwise it is
//! *recovering* while it has been so for less than its recovery budget, and
//! *down* after. The budget is what the feed's own settings give a recovery:
//! the rest of its read-idle timeout once it shows as stalled
//! (`read_timeout - stall_after`), one connect timeout, and 3 × its backoff
//! cap (three waits at the longest): 45s + 30s + 3m = 4m15s for Companies House
//! with the defaults. A feed whose credentials were refused is down at once:
//! waiting will not fix a key. A store that cannot write is down too.
//!
//! NATS: a relay whose link has not been connected for
//! [`LINK_DOWN_AFTER`] (a minute) is down, with the backlog in the reason:
//! its messages are safe in the outbox, but nobody downstream gets them.
//! A viewer is down when its own link has been so for as long, or when the
//! relay it reads has not announced itself for [`RELAY_SILENT_AFTER`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use feedtop_proto::ConnState;
use serde::Serialize;

use crate::app::FeedSpec;
use crate::model::nats_link::{relay_silent_for, LINK_DOWN_AFTER, RELAY_SILENT_AFTER};
use crate::model::{LatencySummary, Model};

/// Attempts at the backoff cap a feed is given before it counts as down.
pub const BUDGET_ATTEMPTS: u32 = 3;
/// The budget of a feed the publisher was not told about.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(45 + 30 + 3 * 60);

/// A feed's recovery budget: (read-idle timeout − stall period) + connect
/// timeout + [`BUDGET_ATTEMPTS`] × backoff cap.
pub fn recovery_budget(spec: &FeedSpec) -> Duration {
    let r = spec.reconnect();
    r.read_timeout
        .saturating_sub(r.stall_after)
        .saturating_add(r.connect_timeout)
        .saturating_add(r.backoff_cap.saturating_mul(BUDGET_ATTEMPTS))
}

/// One feed as the endpoints show it. Counters are the model's own.
#[derive(Debug, Clone, Serialize)]
pub struct FeedSnapshot {
    pub id: String,
    pub kind: &'static str,
    pub state: &'static str,
    /// `ok`, `recovering` or `down`.
    pub health: &'static str,
    /// Why it is not `ok`; absent when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub events: u64,
    pub reconnects: u64,
    pub gaps: u64,
    pub malformed: u64,
    #[serde(skip)]
    pub latency: Option<LatencySummary>,
    #[serde(skip)]
    pub last_event_at: Option<DateTime<Utc>>,
}

/// The whole picture at one tick.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    #[serde(serialize_with = "ser_ts")]
    pub at: DateTime<Utc>,
    pub healthy: bool,
    pub feeds: Vec<FeedSnapshot>,
    /// The current store write problem, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    #[serde(skip)]
    pub events_written: u64,
    /// Batches waiting for the store writer.
    #[serde(skip)]
    pub store_queue: usize,
    /// Facts held by the core loop because the store queue was full.
    #[serde(skip)]
    pub store_pending: usize,
    #[serde(skip)]
    pub rss_bytes: Option<u64>,
    /// `feedtop relay`: its publisher's link to NATS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<LinkSnapshot>,
    /// `--source nats://`: the viewer's own link to NATS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats: Option<LinkSnapshot>,
}

/// A link to NATS as the endpoints show it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkSnapshot {
    /// `connecting`, `connected` or `disconnected`.
    pub state: &'static str,
    /// `ok`, `recovering` or `down`.
    pub health: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub reconnects: u64,
    /// Relay: messages stored and not yet acknowledged by JetStream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<u64>,
    /// Relay: messages JetStream acknowledged in this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<u64>,
    /// Viewer: messages in the stream after the last one received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind: Option<u64>,
    /// Viewer: when the relay last announced itself.
    #[serde(skip)]
    pub relay_heard: Option<DateTime<Utc>>,
}

impl LinkSnapshot {
    pub fn connected(&self) -> bool {
        self.state == crate::relay::LinkState::Connected.label()
    }
}

fn ser_ts<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::store::ts(*t))
}

/// Builds snapshots from the model, remembering since when each feed has
/// not been healthy (the model keeps only the current state's start, and a
/// feed going connecting → backoff → connecting restarts that each time).
#[derive(Debug, Default)]
pub struct HealthTracker {
    budgets: HashMap<String, Duration>,
    unhealthy_since: HashMap<String, DateTime<Utc>>,
}

impl HealthTracker {
    /// `budgets`: each feed's recovery budget by feed id.
    pub fn new(budgets: HashMap<String, Duration>) -> Self {
        Self { budgets, unhealthy_since: HashMap::new() }
    }

    pub fn for_feeds(feeds: &[FeedSpec]) -> Self {
        Self::new(feeds.iter().map(|f| (f.info.name.to_string(), recovery_budget(f))).collect())
    }

    /// The model as it is now (`model.now`).
    pub fn snapshot(&mut self, model: &Model) -> Snapshot {
        let now = model.now;
        let feeds: Vec<FeedSnapshot> = model
            .feeds
            .iter()
            .map(|f| {
                let id = f.info.name.to_string();
                let (health, reason) = if f.is_healthy(now) {
                    self.unhealthy_since.remove(&id);
                    ("ok", None)
                } else {
                    let since = *self.unhealthy_since.entry(id.clone()).or_insert(now);
                    let budget = self.budgets.get(&id).copied().unwrap_or(DEFAULT_BUDGET);
                    let for_ = (now - since).to_std().unwrap_or_default();
                    let state = f.state_label(now);
                    let mut why = format!("{state}, not live for {}", secs(for_));
                    if let Some(e) = &f.last_error {
                        why.push_str(&format!(": {e}"));
                    }
                    if matches!(f.state, ConnState::AuthFailed { .. }) {
                        (DOWN, Some(format!("{why} (credentials refused: check the key or token)")))
                    } else if for_ < budget {
                        ("recovering", Some(format!("{why} (recovery budget {})", secs(budget))))
                    } else {
                        (DOWN, Some(format!("{why} (past its recovery budget of {})", secs(budget))))
                    }
                };
                FeedSnapshot {
                    id,
                    kind: f.info.kind.label(),
                    state: f.state_label(now),
                    health,
                    reason,
                    events: f.counts.events,
                    reconnects: f.reconnects(),
                    gaps: f.counts.gaps,
                    malformed: f.counts.malformed,
                    latency: f.latency.summary(now),
                    last_event_at: f.last_event_at,
                }
            })
            .collect();
        let store_error = model.store.error.clone();
        let relay = model.relay.as_ref().map(|r| relay_link(r, model));
        let nats = model.viewer.as_ref().map(|v| viewer_link(v, model));
        let links_up = [&relay, &nats].into_iter().flatten().all(|l| l.health != DOWN);
        let healthy = store_error.is_none() && links_up && feeds.iter().all(|f| f.health != DOWN);
        Snapshot {
            at: now,
            healthy,
            feeds,
            store_error,
            events_written: model.store.events_written,
            store_queue: model.process.store_queue,
            store_pending: model.process.store_pending,
            rss_bytes: model.process.rss_bytes,
            relay,
            nats,
        }
    }
}

/// `recovering` while a link has been down for less than
/// [`LINK_DOWN_AFTER`], `down` after; `why` says what that means here.
fn link_health(down_for: Option<chrono::TimeDelta>, state: &str, why: String) -> (&'static str, Option<String>) {
    let Some(d) = down_for else { return ("ok", None) };
    let for_ = d.to_std().unwrap_or_default();
    let what = format!("NATS {state} for {}{why}", secs(for_));
    if for_ < LINK_DOWN_AFTER {
        ("recovering", Some(format!("{what} (down after {})", secs(LINK_DOWN_AFTER))))
    } else {
        (DOWN, Some(what))
    }
}

fn relay_link(r: &crate::relay::RelayStatus, model: &Model) -> LinkSnapshot {
    let down_for = model.nats_links.relay.down_for(r.nats, model.now);
    // Connected, but every publish refused: as bad as down, and said so.
    let failing_for = r.failing_since.map(|since| (model.now - since).max(chrono::TimeDelta::zero()));
    let (down_for, state) = match (down_for, failing_for) {
        (Some(d), _) => (Some(d), r.nats.label()),
        (None, Some(f)) => (Some(f), "publishing failing"),
        (None, None) => (None, r.nats.label()),
    };
    let mut why = format!(", backlog {} kept in the outbox until it is back", r.backlog);
    if let Some(e) = &r.last_error {
        why.push_str(&format!(": {e}"));
    }
    let (health, reason) = link_health(down_for, state, why);
    LinkSnapshot {
        state: r.nats.label(),
        health,
        reason,
        reconnects: r.reconnects,
        backlog: Some(r.backlog),
        published: Some(r.published),
        behind: None,
        relay_heard: None,
    }
}

fn viewer_link(v: &crate::relay::ViewerStatus, model: &Model) -> LinkSnapshot {
    let down_for = model.nats_links.viewer.down_for(v.nats, model.now);
    let mut why = format!(", {} reconnects", v.reconnects);
    if let Some(e) = &v.last_error {
        why.push_str(&format!(": {e}"));
    }
    let (mut health, mut reason) = link_health(down_for, v.nats.label(), why);
    if let Some(silent) = relay_silent_for(v, model.now) {
        health = DOWN;
        reason = Some(format!(
            "relay silent for {}: it announces itself every 30s (down after {}); is `feedtop relay` running?",
            secs(silent.to_std().unwrap_or_default()),
            secs(RELAY_SILENT_AFTER)
        ));
    }
    LinkSnapshot {
        state: v.nats.label(),
        health,
        reason,
        reconnects: v.reconnects,
        backlog: None,
        published: None,
        behind: Some(v.behind),
        relay_heard: v.relay_heard,
    }
}

const DOWN: &str = "down";

/// Whole seconds, as `95s`.
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// The pipeline's side of the snapshot channel.
pub struct Publisher {
    tracker: HealthTracker,
    tx: tokio::sync::watch::Sender<Option<Arc<Snapshot>>>,
}

/// The server's side: the latest snapshot (none before the first tick).
pub type Latest = tokio::sync::watch::Receiver<Option<Arc<Snapshot>>>;

impl Publisher {
    pub fn new(tracker: HealthTracker) -> (Self, Latest) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (Self { tracker, tx }, rx)
    }

    /// Replaces the snapshot; never waits for a reader.
    pub fn publish(&mut self, model: &Model) {
        let snapshot = Arc::new(self.tracker.snapshot(model));
        self.tx.send_replace(Some(snapshot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::LinkState;
    use chrono::{TimeDelta, TimeZone};
    use feedtop_proto::{FeedInfo, FeedKind, FeedMsg, FeedMsgKind};

    fn model(t0: DateTime<Utc>) -> Model {
        let info = FeedInfo { name: "ch/companies".into(), kind: FeedKind::CompaniesHouse };
        Model::new(vec![info], Duration::from_secs(300), t0)
    }

    fn state(m: &mut Model, at: DateTime<Utc>, state: ConnState) {
        let feed = m.feeds[0].info.name.clone();
        m.apply(FeedMsg { feed, at, kind: FeedMsgKind::State(state) }, &mut Vec::new());
        m.tick(at);
    }

    /// Not live counts from the first tick it was seen so, however often the
    /// state changes in between; live again resets it.
    #[test]
    fn a_feed_is_recovering_inside_its_budget_and_down_after() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let mut m = model(t0);
        let budgets = HashMap::from([("ch/companies".to_string(), Duration::from_secs(10))]);
        let mut t = HealthTracker::new(budgets);
        state(&mut m, t0, ConnState::Live);
        let s = t.snapshot(&m);
        assert!(s.healthy);
        assert_eq!((s.feeds[0].health, s.feeds[0].reason.as_deref()), ("ok", None));

        let retry_at = t0 + TimeDelta::seconds(60);
        state(&mut m, t0 + TimeDelta::seconds(1), ConnState::Backoff { retry_at });
        let s = t.snapshot(&m);
        assert!(s.healthy, "{s:?}");
        assert_eq!(s.feeds[0].health, "recovering");
        state(&mut m, t0 + TimeDelta::seconds(6), ConnState::Connecting);
        assert_eq!(t.snapshot(&m).feeds[0].health, "recovering");
        state(&mut m, t0 + TimeDelta::seconds(11), ConnState::Backoff { retry_at });
        let s = t.snapshot(&m);
        assert!(!s.healthy);
        assert_eq!(s.feeds[0].health, "down");
        let reason = s.feeds[0].reason.as_deref().unwrap();
        assert!(reason.starts_with("backoff, not live for 10s") && reason.contains("budget of 10s"), "{reason}");

        state(&mut m, t0 + TimeDelta::seconds(12), ConnState::Live);
        assert!(t.snapshot(&m).healthy);
        state(&mut m, t0 + TimeDelta::seconds(13), ConnState::Connecting);
        assert_eq!(t.snapshot(&m).feeds[0].health, "recovering", "the budget starts again");
    }

    #[test]
    fn refused_credentials_are_down_at_once() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let mut m = model(t0);
        let mut t = HealthTracker::default();
        state(&mut m, t0, ConnState::AuthFailed { retry_at: t0 + TimeDelta::seconds(300) });
        let s = t.snapshot(&m);
        assert!(!s.healthy);
        assert!(s.feeds[0].reason.as_deref().unwrap().contains("credentials refused"), "{s:?}");
    }

    fn relay_status(nats: LinkState) -> crate::relay::RelayStatus {
        crate::relay::RelayStatus {
            url: "nats://h:4222".into(),
            stream: "FEEDTOP".into(),
            nats,
            reconnects: 0,
            published: 10,
            backlog: 345,
            last_error: None,
            failing_since: None,
        }
    }

    /// A relay whose link is down keeps its messages, so it is recovering
    /// for a minute, then down, saying for how long and the backlog.
    #[test]
    fn a_relay_cut_off_from_nats_is_down_after_a_minute_with_its_backlog() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let mut m = model(t0);
        state(&mut m, t0, ConnState::Live);
        let mut t = HealthTracker::default();
        m.relay = Some(relay_status(LinkState::Connected));
        m.tick(t0);
        let s = t.snapshot(&m);
        assert!(s.healthy);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v["relay"],
            serde_json::json!({"state": "connected", "health": "ok", "reconnects": 0, "backlog": 345, "published": 10})
        );
        assert!(v.get("nats").is_none(), "{v}");

        m.relay = Some(relay_status(LinkState::Disconnected));
        state(&mut m, t0 + TimeDelta::seconds(1), ConnState::Live);
        state(&mut m, t0 + TimeDelta::seconds(31), ConnState::Live);
        let s = t.snapshot(&m);
        assert!(s.healthy, "{s:?}");
        assert_eq!(s.relay.as_ref().unwrap().health, "recovering");
        state(&mut m, t0 + TimeDelta::seconds(61), ConnState::Live);
        let s = t.snapshot(&m);
        assert!(!s.healthy, "{s:?}");
        let relay = s.relay.as_ref().unwrap();
        assert_eq!(relay.health, "down");
        let reason = relay.reason.as_deref().unwrap();
        assert!(reason.starts_with("NATS disconnected for 60s, backlog 345"), "{reason}");

        m.relay = Some(relay_status(LinkState::Connected));
        state(&mut m, t0 + TimeDelta::seconds(62), ConnState::Live);
        assert!(t.snapshot(&m).healthy);

        // Connected, but the server refuses every publish: down all the same.
        let mut refused = relay_status(LinkState::Connected);
        refused.failing_since = Some(t0 + TimeDelta::seconds(62));
        refused.last_error = Some("publish not acknowledged: insufficient resources".into());
        m.relay = Some(refused);
        state(&mut m, t0 + TimeDelta::seconds(70), ConnState::Live);
        assert_eq!(t.snapshot(&m).relay.unwrap().health, "recovering");
        state(&mut m, t0 + TimeDelta::seconds(123), ConnState::Live);
        let s = t.snapshot(&m);
        assert!(!s.healthy, "{s:?}");
        let reason = s.relay.unwrap().reason.unwrap();
        assert!(reason.starts_with("NATS publishing failing for 61s, backlog 345"), "{reason}");
        assert!(reason.contains("insufficient resources"), "{reason}");
    }

    fn viewer_status(nats: LinkState, heard: DateTime<Utc>) -> crate::relay::ViewerStatus {
        crate::relay::ViewerStatus {
            url: "nats://h:4222".into(),
            stream: "FEEDTOP".into(),
            nats,
            reconnects: 3,
            behind: 0,
            received: 100,
            unreadable: 0,
            relay_heard: Some(heard),
            last_error: None,
            since: std::time::Duration::from_secs(3600),
        }
    }

    /// A viewer is down when its own link has been down for a minute, or
    /// when the relay has not announced itself for 90 s while the link is up.
    #[test]
    fn a_viewer_is_down_when_its_link_is_or_the_relay_is_silent() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let mut m = model(t0);
        let mut t = HealthTracker::default();
        m.viewer = Some(viewer_status(LinkState::Connected, t0));
        state(&mut m, t0, ConnState::Live);
        state(&mut m, t0 + TimeDelta::seconds(90), ConnState::Live);
        assert!(t.snapshot(&m).healthy, "90s is three missed announcements, not more");
        state(&mut m, t0 + TimeDelta::seconds(91), ConnState::Live);
        let s = t.snapshot(&m);
        assert!(!s.healthy);
        let nats = s.nats.as_ref().unwrap();
        assert!(nats.reason.as_deref().unwrap().starts_with("relay silent for 91s"), "{nats:?}");

        // The link down: that is what is wrong, not the relay.
        m.viewer = Some(viewer_status(LinkState::Disconnected, t0));
        state(&mut m, t0 + TimeDelta::seconds(100), ConnState::Live);
        let s = t.snapshot(&m);
        assert!(s.healthy, "{s:?}");
        let reason = s.nats.as_ref().unwrap().reason.clone().unwrap();
        assert!(reason.starts_with("NATS disconnected for 0s, 3 reconnects"), "{reason}");
        state(&mut m, t0 + TimeDelta::seconds(160), ConnState::Live);
        let s = t.snapshot(&m);
        assert!(!s.healthy);
        assert_eq!(s.nats.as_ref().unwrap().health, "down");
    }

    #[test]
    fn a_store_that_cannot_write_is_unhealthy() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let mut m = model(t0);
        state(&mut m, t0, ConnState::Live);
        m.store.error = Some("disk full".into());
        let s = HealthTracker::default().snapshot(&m);
        assert!(!s.healthy);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["store_error"], "disk full");
    }
}
