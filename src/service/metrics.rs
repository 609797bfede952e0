//! `/metrics`: a [`Snapshot`] in the Prometheus text format (OpenMetrics,
//! which Prometheus scrapes natively), encoded by `prometheus-client`.
//! Counters are the model's own figures, copied at the tick, not re-counted.

use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::snapshot::Snapshot;

/// The content type of [`encode_snapshot`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every state a feed can be in: one gauge per state, 1 for the current one.
const STATES: [&str; 5] = ["connecting", "live", "stalled", "backoff", "auth failed"];

type Labels = Vec<(&'static str, String)>;

fn counter(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge<f64, AtomicU64>> {
    let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    registry.register(name, help, family.clone());
    family
}

/// The text for one scrape; `now` dates the last-event ages.
pub fn encode_snapshot(s: &Snapshot, now: DateTime<Utc>) -> String {
    let mut registry = Registry::with_prefix("feedtop");
    let state = gauge(&mut registry, "feed_state", "1 for the feed's current state, 0 for the others");
    let up = gauge(&mut registry, "feed_healthy", "1 while the feed is live or inside its recovery budget");
    let events = counter(&mut registry, "feed_events", "Events received");
    let reconnects = counter(&mut registry, "feed_reconnects", "Connection attempts after the first");
    let gaps = counter(&mut registry, "feed_gaps", "Gaps detected in the feed's sequence");
    let malformed = counter(&mut registry, "feed_malformed", "Lines or frames that could not be decoded");
    let latency = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    registry.register_with_unit(
        "feed_latency",
        "Receive time minus the source's timestamp over the latency window, by quantile",
        Unit::Other("milliseconds".into()),
        latency.clone(),
    );
    let age = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    registry.register_with_unit("feed_last_event_age", "Time since the feed's last event", Unit::Seconds, age.clone());
    for f in &s.feeds {
        let feed = || vec![("feed", f.id.clone())];
        for name in STATES {
            let labels = vec![("feed", f.id.clone()), ("state", name.to_string())];
            state.get_or_create(&labels).set(if f.state == name { 1.0 } else { 0.0 });
        }
        up.get_or_create(&feed()).set(if f.health == "down" { 0.0 } else { 1.0 });
        events.get_or_create(&feed()).inc_by(f.events);
        reconnects.get_or_create(&feed()).inc_by(f.reconnects);
        gaps.get_or_create(&feed()).inc_by(f.gaps);
        malformed.get_or_create(&feed()).inc_by(f.malformed);
        if let Some(l) = f.latency {
            for (q, v) in [("0.5", l.p50), ("0.9", l.p90), ("0.99", l.p99)] {
                let labels = vec![("feed", f.id.clone()), ("quantile", q.to_string())];
                latency.get_or_create(&labels).set(v as f64);
            }
        }
        if let Some(at) = f.last_event_at {
            let secs = (now - at).num_milliseconds().max(0) as f64 / 1000.0;
            age.get_or_create(&feed()).set(secs);
        }
    }
    let written = Counter::<u64>::default();
    written.inc_by(s.events_written);
    registry.register("store_events_written", "Events committed to the database", written);
    let queue = Gauge::<i64>::default();
    queue.set(s.store_queue as i64);
    registry.register("store_queue_batches", "Batches waiting for the store writer", queue);
    let pending = Gauge::<i64>::default();
    pending.set(s.store_pending as i64);
    registry.register("store_pending_facts", "Facts not yet handed to the store writer (its queue was full)", pending);
    if let Some(rss) = s.rss_bytes {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(rss).unwrap_or(i64::MAX));
        registry.register_with_unit("process_resident_memory", "Resident memory", Unit::Bytes, g);
    }
    encode_links(&mut registry, s, now);
    let mut text = String::new();
    encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// The relay's publisher and a viewer's own link, labelled `role`.
fn encode_links(registry: &mut Registry, s: &Snapshot, now: DateTime<Utc>) {
    let links = [("relay", &s.relay), ("viewer", &s.nats)];
    if links.iter().all(|(_, l)| l.is_none()) {
        return;
    }
    let connected = gauge(registry, "nats_connected", "1 while the link to NATS is connected");
    let reconnects = counter(registry, "nats_reconnects", "Connections to NATS after the first");
    for (role, link) in links {
        let Some(link) = link else { continue };
        let labels = vec![("role", role.to_string())];
        connected.get_or_create(&labels).set(if link.connected() { 1.0 } else { 0.0 });
        reconnects.get_or_create(&labels).inc_by(link.reconnects);
    }
    if let Some(relay) = &s.relay {
        let backlog = Gauge::<i64>::default();
        backlog.set(i64::try_from(relay.backlog.unwrap_or(0)).unwrap_or(i64::MAX));
        registry.register("relay_backlog", "Messages stored and not yet acknowledged by JetStream", backlog);
        let published = Counter::<u64>::default();
        published.inc_by(relay.published.unwrap_or(0));
        registry.register("relay_published", "Messages JetStream acknowledged in this run", published);
    }
    if let Some(viewer) = &s.nats {
        let behind = Gauge::<i64>::default();
        behind.set(i64::try_from(viewer.behind.unwrap_or(0)).unwrap_or(i64::MAX));
        registry.register("nats_behind", "Messages in the stream after the last one this viewer received", behind);
        if let Some(at) = viewer.relay_heard {
            let age = Gauge::<f64, AtomicU64>::default();
            age.set((now - at).num_milliseconds().max(0) as f64 / 1000.0);
            registry.register_with_unit(
                "nats_relay_heard_age",
                "Time since the relay last announced itself (every 30 s while it runs)",
                Unit::Seconds,
                age,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::service::snapshot::HealthTracker;
    use chrono::TimeZone;
    use feedtop_proto::{ConnState, FeedInfo, FeedKind, FeedMsg, FeedMsgKind};
    use std::time::Duration;

    #[test]
    fn counters_states_and_quantiles_are_encoded_per_feed() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let info = FeedInfo { name: "ch/companies".into(), kind: FeedKind::CompaniesHouse };
        let mut m = Model::new(vec![info], Duration::from_secs(300), t0);
        let feed = m.feeds[0].info.name.clone();
        m.apply(FeedMsg { feed: feed.clone(), at: t0, kind: FeedMsgKind::State(ConnState::Live) }, &mut Vec::new());
        for _ in 0..3 {
            let kind = FeedMsgKind::Malformed { reason: "x".into() };
            m.apply(FeedMsg { feed: feed.clone(), at: t0, kind }, &mut Vec::new());
        }
        m.feeds[0].last_event_at = Some(t0);
        m.tick(t0);
        let s = HealthTracker::default().snapshot(&m);
        let text = encode_snapshot(&s, t0 + chrono::TimeDelta::milliseconds(2500));
        assert!(text.contains("feedtop_feed_malformed_total{feed=\"ch/companies\"} 3\n"), "{text}");
        assert!(text.contains("feedtop_feed_events_total{feed=\"ch/companies\"} 0\n"), "{text}");
        assert!(text.contains("feedtop_feed_state{feed=\"ch/companies\",state=\"live\"} 1.0\n"), "{text}");
        assert!(text.contains("feedtop_feed_state{feed=\"ch/companies\",state=\"backoff\"} 0.0\n"), "{text}");
        assert!(text.contains("feedtop_feed_last_event_age_seconds{feed=\"ch/companies\"} 2.5\n"), "{text}");
        assert!(!text.contains("feedtop_feed_latency_milliseconds{"), "no sample, no quantiles: {text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(!text.contains("nats") && !text.contains("relay"), "neither a relay nor a viewer: {text}");
    }

    /// A relay's backlog, published count and link; a viewer's link, lag
    /// and the age of the relay's last announcement.
    #[test]
    fn nats_links_are_encoded_by_role() {
        use crate::relay::{LinkState, RelayStatus, ViewerStatus};
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let mut m = Model::new(Vec::new(), Duration::from_secs(300), t0);
        m.relay = Some(RelayStatus {
            url: "nats://h:4222".into(),
            stream: "FEEDTOP".into(),
            nats: LinkState::Disconnected,
            reconnects: 2,
            published: 1200,
            backlog: 345,
            last_error: None,
            failing_since: None,
        });
        m.viewer = Some(ViewerStatus {
            url: "nats://h:4222".into(),
            stream: "FEEDTOP".into(),
            nats: LinkState::Connected,
            reconnects: 1,
            behind: 7,
            received: 500,
            unreadable: 0,
            relay_heard: Some(t0 - chrono::TimeDelta::seconds(12)),
            last_error: None,
            since: std::time::Duration::from_secs(3600),
        });
        m.tick(t0);
        let text = encode_snapshot(&HealthTracker::default().snapshot(&m), t0);
        for want in [
            "feedtop_nats_connected{role=\"relay\"} 0.0\n",
            "feedtop_nats_connected{role=\"viewer\"} 1.0\n",
            "feedtop_nats_reconnects_total{role=\"relay\"} 2\n",
            "feedtop_nats_reconnects_total{role=\"viewer\"} 1\n",
            "feedtop_relay_backlog 345\n",
            "feedtop_relay_published_total 1200\n",
            "feedtop_nats_behind 7\n",
            "feedtop_nats_relay_heard_age_seconds 12.0\n",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
    }
}
