//! Headless mode: the same pipeline, no TUI, one JSON object per line.
//!
//! Chosen with `--headless` or automatically when stdout is not a terminal.
//! Only data goes to stdout; diagnostics go to stderr.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use crate::app::{shutdown_signal, Pipeline, ShutdownSummary};
use chrono::{DateTime, Utc};

use crate::model::{CatchUp, LatencySummary, Model, Tally};

#[derive(Debug, Clone)]
pub struct HeadlessOptions {
    pub duration: Option<Duration>,
    pub interval: Duration,
}

#[derive(Serialize)]
struct Report<'a> {
    ts: String,
    demo: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    r#final: bool,
    feeds: Vec<FeedReport<'a>>,
    strike_off: TallyReport,
    /// Symbols with a quote, over all quote feeds.
    symbols: usize,
    store: Option<StoreReport<'a>>,
    process: ProcessReport,
    /// Alerts raised since the previous line, oldest first (empty when none).
    alerts: Vec<&'a crate::alerts::Alert>,
    /// REST enrichment; absent when it is off (no key).
    #[serde(skip_serializing_if = "Option::is_none")]
    enrich: Option<EnrichReport>,
    /// `feedtop relay`: its link to NATS and what waits to go out; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    relay: Option<RelayReport<'a>>,
    /// `--source nats://`: this viewer's own link to NATS; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    nats: Option<NatsReport<'a>>,
}

/// The relay's publisher: the backlog is what is stored and not yet
/// acknowledged by JetStream (it goes out in order when NATS is back).
#[derive(Serialize)]
struct RelayReport<'a> {
    nats: &'static str,
    /// Seconds the link has not been connected; null while it is.
    down_s: Option<i64>,
    url: &'a str,
    stream: &'a str,
    published: u64,
    backlog: u64,
    reconnects: u64,
    last_error: Option<&'a str>,
}

/// A viewer's own link to the relay's stream.
#[derive(Serialize)]
struct NatsReport<'a> {
    state: &'static str,
    /// Seconds the link has not been connected; null while it is.
    down_s: Option<i64>,
    url: &'a str,
    stream: &'a str,
    /// Messages in the stream after the last one received.
    behind: u64,
    received: u64,
    unreadable: u64,
    reconnects: u64,
    /// When the relay last announced itself (it does every 30 s).
    relay_heard: Option<String>,
    /// Seconds since then, once past 90 s with this link up; else null.
    relay_silent_s: Option<i64>,
    last_error: Option<&'a str>,
}

/// The enrichment task's state, queue and pace.
#[derive(Serialize)]
struct EnrichReport {
    state: &'static str,
    /// Until when a pause or an open breaker lasts.
    until: Option<String>,
    queued: u64,
    /// At the limit, ignoring pauses.
    drain_s: u64,
    used: u32,
    limit: u32,
    window_s: u64,
    next_call: Option<String>,
    calls: u64,
}

/// feedtop's own health, so a script can watch for growth.
#[derive(Serialize)]
struct ProcessReport {
    rss_mb: Option<f64>,
    feed_queue: usize,
    store_queue: usize,
    store_pending: usize,
}

#[derive(Serialize)]
struct FeedReport<'a> {
    id: &'a str,
    kind: &'a str,
    state: &'a str,
    events: u64,
    per_min: u64,
    latency_ms: Option<LatencySummary>,
    /// How fine `latency_ms` is: 1000 when the feed stamps whole seconds
    /// (the milliseconds below that are noise), 1 when finer, null before
    /// any timestamp.
    latency_resolution_ms: Option<u64>,
    /// True when latency comes from naive server-local timestamps.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    latency_estimated: bool,
    /// Backlog replayed after a (re)connection, kept out of `latency_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    catch_up: Option<CatchUpReport>,
    /// Round-trip time of the feed's own ping.
    #[serde(skip_serializing_if = "Option::is_none")]
    rtt_ms: Option<u64>,
    /// The round-trip time is old: the feed is not live and receiving, or
    /// no pong came within the quiet period.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    rtt_stale: bool,
    /// Symbols the source has no data for (stooq `N/D`).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    no_data: &'a [String],
    reconnects: u64,
    gaps: u64,
    malformed: u64,
    duplicates: u64,
    /// Resume ids the server sent that could not be sent back (not kept).
    unusable_resume_ids: u64,
    last_timepoint: Option<i64>,
    last_error: Option<&'a str>,
}

#[derive(Serialize)]
struct CatchUpReport {
    replayed: u64,
    /// How far behind the source the latest replayed sample was.
    lag_ms: u64,
    /// Backlog is still arriving; false once it stopped without a fresh sample.
    active: bool,
}

impl CatchUpReport {
    fn of(c: CatchUp, now: DateTime<Utc>) -> Self {
        Self {
            replayed: c.replayed,
            lag_ms: u64::try_from(c.lag.as_millis()).unwrap_or(u64::MAX),
            active: c.is_active(now),
        }
    }
}

#[derive(Serialize)]
struct TallyReport {
    entered: u64,
    withdrawn: u64,
    struck_off: u64,
    /// Companies in the proposal now (from the database, not this run);
    /// null for a viewer or a replay, which cannot know.
    in_proposal: Option<u64>,
}

#[derive(Serialize)]
struct StoreReport<'a> {
    events_written: u64,
    error: Option<&'a str>,
}

impl From<Tally> for TallyReport {
    fn from(t: Tally) -> Self {
        Self { entered: t.entered, withdrawn: t.withdrawn, struck_off: t.struck_off, in_proposal: None }
    }
}

/// One report line for the model as it is now, with no alerts (those are
/// reported once, by the line after they were raised: [`report_line_since`]).
pub fn report_line(model: &Model, is_final: bool) -> String {
    report_line_since(model, is_final, model.alerts.raised)
}

/// One report line with the alerts numbered after `reported` (the last
/// one an earlier line carried).
pub fn report_line_since(model: &Model, is_final: bool, reported: u64) -> String {
    let feeds = model
        .feeds
        .iter()
        .map(|f| FeedReport {
            id: &f.info.name,
            kind: f.info.kind.label(),
            state: f.state_label(model.now),
            events: f.counts.events,
            per_min: f.rate.per_minute(model.now),
            latency_ms: f.latency.summary(model.now),
            latency_resolution_ms: f.latency_resolution_ms(),
            latency_estimated: f.latency_estimated,
            catch_up: f.catch_up.map(|c| CatchUpReport::of(c, model.now)),
            rtt_ms: f.rtt.map(|d| d.as_millis() as u64),
            rtt_stale: f.rtt.is_some() && f.rtt_is_stale(model.now),
            no_data: &f.no_data,
            reconnects: f.reconnects(),
            gaps: f.counts.gaps,
            malformed: f.counts.malformed,
            duplicates: f.counts.duplicates,
            unusable_resume_ids: f.counts.unusable_resume_ids,
            last_timepoint: f.last_timepoint,
            last_error: f.last_error.as_deref(),
        })
        .collect();
    let report = Report {
        ts: crate::store::ts(model.now),
        demo: model.demo,
        r#final: is_final,
        feeds,
        strike_off: TallyReport { in_proposal: model.in_proposal(), ..model.tally.into() },
        symbols: model.quotes.len(),
        // null: a viewer that keeps no database.
        store: (!model.store.no_database)
            .then_some(StoreReport { events_written: model.store.events_written, error: model.store.error.as_deref() }),
        enrich: model.enrich.status.as_ref().map(|e| EnrichReport {
            state: e.state.label(),
            until: e.state.until().map(crate::store::ts),
            queued: e.queued,
            drain_s: e.drain_time().as_secs(),
            used: e.used,
            limit: e.limit,
            window_s: e.per.as_secs(),
            next_call: e.next_call.map(crate::store::ts),
            calls: e.calls,
        }),
        process: ProcessReport {
            rss_mb: model.process.rss_bytes.map(|b| (b as f64 / 1_048_576.0 * 10.0).round() / 10.0),
            feed_queue: model.process.feed_queue,
            store_queue: model.process.store_queue,
            store_pending: model.process.store_pending,
        },
        alerts: model.alerts.since(reported),
        relay: model.relay.as_ref().map(|r| RelayReport {
            nats: r.nats.label(),
            down_s: model.nats_links.relay.down_for(r.nats, model.now).map(|d| d.num_seconds()),
            url: &r.url,
            stream: &r.stream,
            published: r.published,
            backlog: r.backlog,
            reconnects: r.reconnects,
            last_error: r.last_error.as_deref(),
        }),
        nats: model.viewer.as_ref().map(|v| NatsReport {
            state: v.nats.label(),
            down_s: model.nats_links.viewer.down_for(v.nats, model.now).map(|d| d.num_seconds()),
            url: &v.url,
            stream: &v.stream,
            behind: v.behind,
            received: v.received,
            unreadable: v.unreadable,
            reconnects: v.reconnects,
            relay_heard: v.relay_heard.map(crate::store::ts),
            relay_silent_s: crate::model::nats_link::relay_silent_for(v, model.now).map(|d| d.num_seconds()),
            last_error: v.last_error.as_deref(),
        }),
    };
    // Feed text (errors, ids) is in it: C1, DEL and bidi overrides escaped too.
    crate::sanitize::json_line(&report).expect("reports serialise")
}

/// Runs until the duration ends or SIGINT/SIGTERM, printing a line every
/// interval and a final one (`"final": true`) after everything is stored.
pub async fn run(pipeline: Pipeline, options: HeadlessOptions, out: &mut dyn Write) -> anyhow::Result<ShutdownSummary> {
    run_publishing(pipeline, options, out, None).await
}

/// The pipeline ticks at least this often, whatever the line interval.
const BEAT: Duration = Duration::from_secs(1);

/// [`run`], also publishing a snapshot for `--listen` each tick.
pub async fn run_publishing(
    mut pipeline: Pipeline,
    options: HeadlessOptions,
    out: &mut dyn Write,
    mut publisher: Option<crate::service::Publisher>,
) -> anyhow::Result<ShutdownSummary> {
    let start = Instant::now();
    let deadline = options.duration.map(|d| start + d);
    let mut ticker = interval_at(start + options.interval, options.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    // The pipeline's beat (stall checks, the relay's published rows leaving
    // the outbox, the --listen snapshot) does not wait for a line: with
    // `--interval 1m` it still comes every second.
    let mut beat = interval_at(start + BEAT, BEAT);
    beat.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let until_deadline = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_deadline);
    // The last alert a line carried: each goes out once, in the next line.
    let mut reported = 0;
    loop {
        // Whether this wake-up is a beat, and whether it prints a line.
        let (beat_now, line_now) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = &mut until_deadline => break,
            _ = beat.tick(), if options.interval > BEAT => (true, false),
            _ = ticker.tick() => (true, true),
            input = pipeline.next_input() => {
                pipeline.handle(input);
                // A replay ends with its recording.
                if pipeline.source_finished() {
                    break;
                }
                (false, false)
            }
        };
        if beat_now {
            if let Err(stopped) = pipeline.tick(chrono::Utc::now()) {
                let (_, summary) = pipeline.shutdown().await;
                anyhow::bail!(
                    "{stopped} (everything received before it is stored: {} events)",
                    summary.writer.events_written
                );
            }
            if let Some(p) = &mut publisher {
                p.publish(pipeline.model());
            }
        }
        if line_now {
            let line = report_line_since(pipeline.model(), false, reported);
            reported = pipeline.model().alerts.raised;
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                // The reader went away (e.g. `| head`): stop cleanly.
                break;
            }
        }
    }
    // A second Ctrl-C (or SIGTERM/SIGHUP) stops waiting for the store.
    let (model, summary) = pipeline.shutdown_or(shutdown_signal()).await;
    let _ = writeln!(out, "{}", report_line_since(&model, true, reported)).and_then(|_| out.flush());
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use feedtop_proto::{ConnState, FeedInfo, FeedMsg, FeedMsgKind};
    use feedtop_proto::{Dialect, FeedKind};

    #[test]
    fn report_has_the_documented_shape() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let info = FeedInfo { name: "companies".into(), kind: FeedKind::CompaniesHouse };
        let mut m = Model::new(vec![info], Duration::from_secs(300), t0);
        let mut facts = Vec::new();
        m.apply(
            FeedMsg { feed: m.feeds[0].info.name.clone(), at: t0, kind: FeedMsgKind::State(ConnState::Live) },
            &mut facts,
        );
        m.apply(
            FeedMsg { feed: m.feeds[0].info.name.clone(), at: t0, kind: FeedMsgKind::Malformed { reason: "x".into() } },
            &mut facts,
        );
        let v: serde_json::Value = serde_json::from_str(&report_line(&m, false)).unwrap();
        assert_eq!(v["ts"], "2025-06-10T12:00:00.000Z");
        let f = &v["feeds"][0];
        assert_eq!(f["id"], "companies");
        assert_eq!(f["kind"], "companies-house");
        assert_eq!(f["state"], "live");
        assert_eq!(f["malformed"], 1);
        assert_eq!(f["events"], 0);
        assert!(f["latency_ms"].is_null());
        assert!(f["latency_resolution_ms"].is_null(), "no timestamp seen yet");
        assert_eq!(v["strike_off"]["entered"], 0);
        assert!(v.get("final").is_none());
        assert_eq!(v["process"]["feed_queue"], 0);
        assert!(v["process"]["rss_mb"].is_null(), "not sampled in a pure model");
        assert_eq!(v["alerts"], serde_json::json!([]));
        let last: serde_json::Value = serde_json::from_str(&report_line(&m, true)).unwrap();
        assert_eq!(last["final"], true);
        assert!(v.get("enrich").is_none(), "no enrichment without a key");
    }

    #[test]
    fn enrichment_state_queue_and_pace_are_reported() {
        use crate::model::enrich::{EnrichState, EnrichStatus};
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let mut m = Model::new(Vec::new(), Duration::from_secs(300), t0);
        let mut status = EnrichStatus::new(600, Duration::from_secs(300));
        status.state = EnrichState::Open { until: t0 + chrono::TimeDelta::seconds(60) };
        status.queued = 1500;
        status.used = 600;
        m.enrich.status = Some(status);
        let v: serde_json::Value = serde_json::from_str(&report_line(&m, false)).unwrap();
        let e = &v["enrich"];
        assert_eq!(e["state"], "open");
        assert_eq!(e["until"], "2025-06-10T12:01:00.000Z");
        assert_eq!(e["queued"], 1500);
        assert_eq!(e["drain_s"], 900);
        assert_eq!(
            (e["used"].as_u64(), e["limit"].as_u64(), e["window_s"].as_u64()),
            (Some(600), Some(600), Some(300))
        );
    }

    /// Each alert goes out once, in the first line after it was raised,
    /// with feed text escaped like the rest of the line.
    #[test]
    fn alerts_are_reported_once_in_the_next_line() {
        use crate::alerts::{Actions, Alert, AlertKind};
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let info = FeedInfo { name: "wig80".into(), kind: FeedKind::WebSocket(Dialect::Wig80) };
        let mut m = Model::new(vec![info], Duration::from_secs(300), t0);
        let raise = |m: &mut Model, detail: &str| {
            m.alerts.push(Alert {
                seq: 0,
                at: t0,
                rule: 2,
                kind: AlertKind::FeedDown,
                feed: "wig80".into(),
                company: None,
                symbol: None,
                detail: detail.into(),
                actions: Actions { flash: true, ..Actions::default() },
            })
        };
        raise(&mut m, "backoff for 2m00s: closed \u{9b}2J");
        let line = report_line_since(&m, false, 0);
        assert!(!line.chars().any(crate::sanitize::is_unsafe), "{line:?}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["alerts"],
            serde_json::json!([{
                "seq": 1, "at": "2025-06-10T12:00:00.000Z", "rule": 2, "kind": "feed-down",
                "feed": "wig80", "detail": "backoff for 2m00s: closed \u{9b}2J"
            }])
        );
        raise(&mut m, "second");
        let v: serde_json::Value = serde_json::from_str(&report_line_since(&m, false, 1)).unwrap();
        assert_eq!(v["alerts"].as_array().unwrap().len(), 1);
        assert_eq!(v["alerts"][0]["seq"], 2);
    }

    /// Companies House stamps whole seconds: the report keeps milliseconds
    /// and says they are only good to the second.
    #[test]
    fn latency_says_its_resolution() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let info = FeedInfo { name: "companies".into(), kind: FeedKind::CompaniesHouse };
        let mut m = Model::new(vec![info], Duration::from_secs(300), t0);
        let mut facts = Vec::new();
        let line = include_str!("../tests/fixtures/ch-companies-sample.ndjson").lines().next().unwrap();
        let mut ev = feedtop_proto::ch::parse_event(line.as_bytes().to_vec()).unwrap();
        ev.published_at = Some(t0);
        let at = t0 + chrono::TimeDelta::milliseconds(487);
        m.apply(FeedMsg { feed: m.feeds[0].info.name.clone(), at, kind: FeedMsgKind::Event(Box::new(ev)) }, &mut facts);
        let v: serde_json::Value = serde_json::from_str(&report_line(&m, false)).unwrap();
        let f = &v["feeds"][0];
        assert_eq!(f["latency_resolution_ms"], 1000, "{f}");
        assert!(f["latency_ms"]["p50"].as_u64().is_some_and(|p| (480..=490).contains(&p)), "{f}");
    }

    /// A replayed backlog is reported as a catch-up beside (not inside) the
    /// latency percentiles, and the field is absent when there is none.
    #[test]
    fn a_catch_up_is_reported_apart_from_latency() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let info = FeedInfo { name: "companies".into(), kind: FeedKind::CompaniesHouse };
        let mut m = Model::new(vec![info], Duration::from_secs(300), t0);
        let feed = m.feeds[0].info.name.clone();
        let line = include_str!("../tests/fixtures/ch-companies-sample.ndjson").lines().next().unwrap();
        let before: serde_json::Value = serde_json::from_str(&report_line(&m, false)).unwrap();
        assert!(before["feeds"][0].get("catch_up").is_none(), "{before}");
        m.apply(FeedMsg { feed: feed.clone(), at: t0, kind: FeedMsgKind::State(ConnState::Live) }, &mut Vec::new());
        let mut ev = feedtop_proto::ch::parse_event(line.as_bytes().to_vec()).unwrap();
        ev.published_at = Some(t0 - chrono::TimeDelta::hours(2));
        m.apply(FeedMsg { feed, at: t0, kind: FeedMsgKind::Event(Box::new(ev)) }, &mut Vec::new());
        let v: serde_json::Value = serde_json::from_str(&report_line(&m, false)).unwrap();
        let f = &v["feeds"][0];
        assert_eq!(f["catch_up"], serde_json::json!({"replayed": 1, "lag_ms": 7_200_000, "active": true}), "{f}");
        assert!(f["latency_ms"].is_null(), "{f}");
    }

    #[test]
    fn a_quiet_live_feed_is_reported_stalled_with_its_rtt_stale() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let info = FeedInfo { name: "wig80".into(), kind: FeedKind::WebSocket(Dialect::Wig80) };
        let mut m = Model::new(vec![info], Duration::from_secs(300), t0);
        m.feeds[0].stall_after = Duration::from_secs(30);
        let mut facts = Vec::new();
        m.apply(
            FeedMsg { feed: m.feeds[0].info.name.clone(), at: t0, kind: FeedMsgKind::State(ConnState::Live) },
            &mut facts,
        );
        m.apply(
            FeedMsg { feed: m.feeds[0].info.name.clone(), at: t0, kind: FeedMsgKind::Rtt(Duration::from_millis(7)) },
            &mut facts,
        );
        let feed =
            |m: &Model| serde_json::from_str::<serde_json::Value>(&report_line(m, false)).unwrap()["feeds"][0].clone();
        assert_eq!((feed(&m)["state"].clone(), feed(&m).get("rtt_stale").cloned()), ("live".into(), None));
        m.tick(t0 + chrono::TimeDelta::seconds(31));
        assert_eq!(feed(&m)["state"], "stalled");
        assert_eq!(feed(&m)["rtt_ms"], 7);
        assert_eq!(feed(&m)["rtt_stale"], true);
    }

    #[test]
    fn no_data_symbols_are_listed_only_when_there_are_some() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let info = FeedInfo { name: "stooq".into(), kind: FeedKind::Poll(feedtop_proto::PollFormat::Stooq) };
        let mut m = Model::new(vec![info], Duration::from_secs(300), t0);
        let feed =
            |m: &Model| serde_json::from_str::<serde_json::Value>(&report_line(m, false)).unwrap()["feeds"][0].clone();
        assert_eq!(feed(&m).get("no_data"), None);
        let no_data = FeedMsgKind::NoData(vec!["XYZ".into()]);
        m.apply(FeedMsg { feed: m.feeds[0].info.name.clone(), at: t0, kind: no_data }, &mut Vec::new());
        assert_eq!(feed(&m)["no_data"], serde_json::json!(["XYZ"]));
        assert_eq!(feed(&m)["malformed"], 0);
        assert!(feed(&m)["last_error"].is_null());
    }

    fn relay_status() -> crate::relay::RelayStatus {
        crate::relay::RelayStatus {
            url: "nats://***@nats.internal:4222".into(),
            stream: "FEEDTOP".into(),
            nats: crate::relay::LinkState::Disconnected,
            reconnects: 2,
            published: 1200,
            backlog: 345,
            last_error: Some("publish not acknowledged: timed out".into()),
            failing_since: None,
        }
    }

    fn viewer_status(heard: DateTime<Utc>) -> crate::relay::ViewerStatus {
        crate::relay::ViewerStatus {
            url: "nats://h:4222".into(),
            stream: "FEEDTOP".into(),
            nats: crate::relay::LinkState::Connected,
            reconnects: 1,
            behind: 7,
            received: 500,
            unreadable: 0,
            relay_heard: Some(heard),
            last_error: None,
            since: std::time::Duration::from_secs(3600),
        }
    }

    /// A relay's line says its NATS link, for how long it has been down,
    /// and the backlog waiting in the outbox; a run that is no relay has
    /// no `relay` object.
    #[test]
    fn a_relay_reports_its_link_and_backlog() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let mut m = Model::new(Vec::new(), Duration::from_secs(300), t0);
        let v: serde_json::Value = serde_json::from_str(&report_line(&m, false)).unwrap();
        assert!(v.get("relay").is_none() && v.get("nats").is_none(), "{v}");
        m.relay = Some(relay_status());
        m.tick(t0);
        m.tick(t0 + chrono::TimeDelta::seconds(75));
        let v: serde_json::Value = serde_json::from_str(&report_line(&m, false)).unwrap();
        assert_eq!(
            v["relay"],
            serde_json::json!({
                "nats": "disconnected", "down_s": 75, "url": "nats://***@nats.internal:4222", "stream": "FEEDTOP",
                "published": 1200, "backlog": 345, "reconnects": 2,
                "last_error": "publish not acknowledged: timed out"
            })
        );
        m.relay.as_mut().unwrap().nats = crate::relay::LinkState::Connected;
        let v: serde_json::Value = serde_json::from_str(&report_line(&m, false)).unwrap();
        assert!(v["relay"]["down_s"].is_null(), "{v}");
    }

    /// A viewer's line says its own link, how far behind the stream it is,
    /// when the relay last announced itself, and that it is silent once
    /// that is more than 90 s ago.
    #[test]
    fn a_viewer_reports_its_link_and_the_relays_silence() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let mut m = Model::new(Vec::new(), Duration::from_secs(300), t0);
        m.viewer = Some(viewer_status(t0 - chrono::TimeDelta::seconds(12)));
        m.tick(t0);
        let v: serde_json::Value = serde_json::from_str(&report_line(&m, false)).unwrap();
        assert_eq!(
            v["nats"],
            serde_json::json!({
                "state": "connected", "down_s": null, "url": "nats://h:4222", "stream": "FEEDTOP",
                "behind": 7, "received": 500, "unreadable": 0, "reconnects": 1,
                "relay_heard": "2025-06-10T11:59:48.000Z", "relay_silent_s": null, "last_error": null
            })
        );
        assert!(v.get("relay").is_none(), "{v}");
        m.tick(t0 + chrono::TimeDelta::seconds(79));
        let v: serde_json::Value = serde_json::from_str(&report_line(&m, false)).unwrap();
        assert_eq!(v["nats"]["relay_silent_s"], 91, "{v}");
    }

    #[test]
    fn feed_text_in_a_report_is_escaped_not_raw() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let info = FeedInfo { name: "carbon".into(), kind: FeedKind::WebSocket(Dialect::Carbon) };
        let mut m = Model::new(vec![info], Duration::from_secs(300), t0);
        let hostile = "closed: \x1b]0;pwned\x07 \u{9b}2J \x7f \u{202E}gnp.exe";
        m.apply(
            FeedMsg { feed: m.feeds[0].info.name.clone(), at: t0, kind: FeedMsgKind::Error(hostile.into()) },
            &mut Vec::new(),
        );
        let line = report_line(&m, false);
        assert!(!line.chars().any(crate::sanitize::is_unsafe), "{line:?}");
        assert!(line.contains("\\u009b") && line.contains("\\u007f") && line.contains("\\u202e"), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["feeds"][0]["last_error"], hostile, "lossless");
    }
}
