//! Quote feeds end to end against the loopback simulators: subscribe,
//! receive, lose the connection, reconnect, re-subscribe, continue; refused
//! tokens; server-side failures; SSE resume; storage across a restart.

mod common;

use std::time::Duration;

use common::*;
use feedtop::app::FeedSpec;
use feedtop::feeds::quote::Dialect;
use feedtop::feeds::secret::ApiKey;
use feedtop::feeds::sse::SseSettings;
use feedtop::feeds::websocket::WsSettings;
use feedtop::feeds::ConnState;
use feedtop::model::Model;
use feedtop::sim::carbon::{CarbonConfig, CarbonShape, CarbonSim};
use feedtop::sim::sse::{SseConfig, SseShape, SseSim};
use feedtop::sim::wig80::{Wig80Config, Wig80Sim};
use feedtop::sim::ws::{WsPlan, WsScript};

const TOKEN: &str = "test-token-5b1e";

fn ws(url: String, dialect: Dialect, token: Option<&str>) -> WsSettings {
    let mut s = WsSettings::new(url, dialect);
    s.token = token.and_then(ApiKey::new);
    s.reconnect = fast_reconnect();
    s.ping_every = Duration::from_millis(100);
    s
}

fn sse(url: String, token: &str) -> SseSettings {
    let mut s = SseSettings::new(url);
    s.token = ApiKey::new(token);
    s.reconnect = fast_reconnect();
    s
}

async fn wig80_sim() -> Wig80Sim {
    Wig80Sim::start(Wig80Config {
        snapshot_every: Duration::from_millis(100),
        protocol_ping_every: Some(Duration::from_millis(200)),
        naive_timestamps: true,
        seed: Some(1),
    })
    .await
    .unwrap()
}

async fn carbon_sim(shape: CarbonShape, kafka_down: bool) -> CarbonSim {
    CarbonSim::start(CarbonConfig {
        token: TOKEN.into(),
        shape,
        publish_every: Duration::from_millis(100),
        reap_without_ping: None,
        kafka_down,
        seed: Some(2),
    })
    .await
    .unwrap()
}

fn symbols(m: &Model) -> usize {
    m.quotes.len()
}

fn subscribes(frames: &[String], needle: &str) -> usize {
    frames.iter().filter(|f| f.contains(needle)).count()
}

#[tokio::test]
async fn wig80_subscribes_receives_and_resubscribes_after_a_drop() {
    let sim = wig80_sim().await;
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::websocket("wig80", ws(sim.url(), Dialect::Wig80, None))], &db);
    assert!(drive_until(&mut p, WAIT, |m| symbols(m) == 16).await, "a full snapshot");
    assert!(sim.received().iter().any(|f| f.contains("\"subscribe\"")));
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].rtt.is_some()).await, "ping round-trip measured");
    assert!(p.model().feeds[0].latency_estimated, "naive timestamps make latency an estimate");

    sim.drop_all();
    let before = p.model().feeds[0].counts.events;
    assert!(
        drive_until(&mut p, WAIT, |m| m.feeds[0].reconnects() == 1 && m.feeds[0].counts.events > before + 16).await
    );
    assert!(sim.wait_for_received(|f| subscribes(f, "\"subscribe\"") >= 2, WAIT).await, "re-subscribed");
    assert_eq!(p.model().feeds[0].state, ConnState::Live);
    let pkn = p.model().quotes.get("PKN", "wig80").unwrap();
    assert!(pkn.quote.price > 0.0 && pkn.quote.market_status.is_some());
    p.shutdown().await;

    // The tickers pane is filled from the database at the next start.
    let p = start_feeds(vec![FeedSpec::websocket("wig80", ws("ws://127.0.0.1:9".into(), Dialect::Wig80, None))], &db);
    assert_eq!(symbols(p.model()), 16);
    assert!(p.model().quotes.get("PKN", "wig80").unwrap().history.len() > 1);
    p.shutdown().await;
}

#[tokio::test]
async fn wig80_survives_garbage_and_a_stall() {
    let sim = wig80_sim().await;
    sim.push_plan(WsPlan::Garbage);
    sim.push_plan(WsPlan::Stall);
    let (_dir, db) = temp_db();
    let mut settings = ws(sim.url(), Dialect::Wig80, None);
    settings.reconnect.read_timeout = Duration::from_millis(400);
    settings.max_frame = 1024 * 1024;
    let mut p = start_feeds(vec![FeedSpec::websocket("wig80", settings)], &db);
    // Garbage: a binary frame and bad JSON are counted; the 2 MiB frame is over
    // the 1 MiB limit and ends that connection. The stall is then noticed by
    // the read timeout, and the third connection serves normally.
    let ok = drive_until(&mut p, WAIT, |m| m.feeds[0].reconnects() >= 2 && symbols(m) == 16).await;
    assert!(
        ok,
        "{:?} {:?} {:?} symbols {}",
        p.model().feeds[0].state,
        p.model().feeds[0].counts,
        p.model().feeds[0].last_error,
        symbols(p.model())
    );
    let f = &p.model().feeds[0];
    assert!(f.counts.malformed >= 1, "{:?}", f.counts);
    assert!(f.counts.too_long >= 1, "{:?}", f.counts);
    p.shutdown().await;
}

#[tokio::test]
async fn carbon_both_frame_shapes_give_quotes_with_real_latency_only_from_epoch_times() {
    for shape in [CarbonShape::Actual, CarbonShape::Documented] {
        let sim = carbon_sim(shape, false).await;
        let (_dir, db) = temp_db();
        let mut p = start_feeds(vec![FeedSpec::websocket("carbon", ws(sim.url(), Dialect::Carbon, Some(TOKEN)))], &db);
        assert!(drive_until(&mut p, WAIT, |m| symbols(m) >= 3 && m.feeds[0].rtt.is_some()).await);
        let f = &p.model().feeds[0];
        assert!(!f.latency_estimated);
        assert!(f.latency.summary(p.model().now.max(chrono::Utc::now())).is_some(), "epoch-ms frames give latency");
        assert!(sim.received().iter().any(|f| f.contains("served.market.latest_prices.v1")));
        assert!(sim.received().iter().any(|f| f.contains("\"ping\"")));
        p.shutdown().await;
    }
}

#[tokio::test]
async fn carbon_bad_token_is_auth_failed_with_a_long_wait() {
    let sim = carbon_sim(CarbonShape::Actual, false).await;
    let (_dir, db) = temp_db();
    let mut settings = ws(sim.url(), Dialect::Carbon, Some("wrong-token-99"));
    settings.reconnect.auth_retry = Duration::from_secs(300);
    let mut p = start_feeds(vec![FeedSpec::websocket("carbon", settings)], &db);
    assert!(drive_until(&mut p, WAIT, |m| matches!(m.feeds[0].state, ConnState::AuthFailed { .. })).await);
    let f = &p.model().feeds[0];
    let error = f.last_error.clone().unwrap();
    assert!(error.contains("INVALID_TOKEN"), "{error}");
    assert!(!error.contains("wrong-token-99"), "the token is never shown: {error}");
    let wait = f.state.retry_at().unwrap() - f.state_since.unwrap();
    assert!(wait > chrono::TimeDelta::seconds(250), "backs off long: {wait}");
    assert_eq!(sim.connections(), 1, "no hammering");
    p.shutdown().await;
}

#[tokio::test]
async fn carbon_kafka_down_is_a_server_failure_not_an_auth_failure() {
    let sim = carbon_sim(CarbonShape::Actual, true).await;
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::websocket("carbon", ws(sim.url(), Dialect::Carbon, Some(TOKEN)))], &db);
    assert!(drive_until(&mut p, WAIT, |m| matches!(m.feeds[0].state, ConnState::Backoff { .. })).await);
    let f = &p.model().feeds[0];
    assert!(f.last_error.as_deref().unwrap().contains("KAFKA_PRODUCER_NOT_STARTED"));
    let wait = f.state.retry_at().unwrap() - f.state_since.unwrap();
    assert!(wait >= chrono::TimeDelta::seconds(14), "waits for the server: {wait}");
    p.shutdown().await;
}

async fn sse_sim(shape: SseShape) -> SseSim {
    SseSim::start(SseConfig {
        token: TOKEN.into(),
        shape,
        publish_every: Duration::from_millis(100),
        heartbeat_after: Duration::from_millis(500),
        retry: None,
        seed: Some(3),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn sse_resumes_with_last_event_id() {
    let sim = sse_sim(SseShape::Documented).await;
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::sse("carbon-sse", sse(sim.url(), TOKEN))], &db);
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].counts.events >= 10).await);
    sim.drop_all();
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].reconnects() == 1 && m.feeds[0].state == ConnState::Live).await);
    assert!(sim.wait_for_requests(2, WAIT).await);
    let requests = sim.requests();
    assert_eq!(requests[0].last_event_id, None);
    assert!(requests[1].last_event_id.is_some(), "Last-Event-ID sent on reconnect");
    assert!(requests.iter().all(|r| r.token_ok));
    p.shutdown().await;
}

#[tokio::test]
async fn sse_data_only_frames_and_bad_token() {
    let sim = sse_sim(SseShape::Actual).await;
    let (_dir, db) = temp_db();
    let feeds =
        vec![FeedSpec::sse("good", sse(sim.url(), TOKEN)), FeedSpec::sse("bad", sse(sim.url(), "nope-token-3"))];
    let mut p = start_feeds(feeds, &db);
    assert!(
        drive_until(&mut p, WAIT, |m| m.feeds[0].counts.events >= 5
            && matches!(m.feeds[1].state, ConnState::AuthFailed { .. }))
        .await
    );
    let error = p.model().feeds[1].last_error.clone().unwrap();
    assert!(error.contains("401") && error.contains("INVALID_TOKEN"), "{error}");
    assert!(!error.contains("nope-token-3"));
    p.shutdown().await;
}

#[tokio::test]
async fn sse_resumes_after_a_restart_from_the_stored_event_id() {
    let sim = sse_sim(SseShape::Documented).await;
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::sse("carbon-sse", sse(sim.url(), TOKEN))], &db);
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].counts.events >= 10).await);
    p.shutdown().await;
    let stored: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT event_id FROM resume_ids WHERE feed = 'carbon-sse'", [], |r| r.get(0))
        .expect("the resume point is stored with the quotes");

    let mut p = start_feeds(vec![FeedSpec::sse("carbon-sse", sse(sim.url(), TOKEN))], &db);
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].counts.events >= 1).await);
    assert!(sim.wait_for_requests(2, WAIT).await);
    assert_eq!(sim.requests()[1].last_event_id.as_deref(), Some(stored.as_str()), "first request after the restart");
    p.shutdown().await;
}
