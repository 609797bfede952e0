//! Redirects, for every feed kind against the loopback simulators: a stream
//! that moves to another origin (here: another loopback server, which
//! counts its connections) is never connected to and is shown as an error
//! naming the new location; a redirect within the origin is followed.

mod common;

use std::time::Duration;

use common::*;
use feedtop::app::FeedSpec;
use feedtop::feeds::companies_house::ChSettings;
use feedtop::feeds::quote::Dialect;
use feedtop::feeds::secret::ApiKey;
use feedtop::feeds::sse::SseSettings;
use feedtop::feeds::websocket::WsSettings;
use feedtop::feeds::ConnState;
use feedtop::model::Model;
use feedtop::sim::companies_house::{ConnPlan, STREAM_PATH};
use feedtop::sim::sse::{SseConfig, SsePlan, SseShape, SseSim, SSE_PATH};
use feedtop::sim::wig80::{Wig80Config, Wig80Sim};
use feedtop::sim::ws::{WsPlan, WsScript};

const CODES: [u16; 4] = [301, 302, 307, 308];
const TOKEN: &str = "redirect-token-3c9d";

fn error(m: &Model) -> String {
    m.feeds[0].last_error.clone().unwrap_or_default()
}

/// Retried at least twice, and every attempt ended with the move named.
fn refused_twice(m: &Model, location: &str) -> bool {
    m.feeds[0].attempts >= 2 && error(m).contains(&format!("the stream moved to {location}; update the URL"))
}

// ---------------------------------------------------------------------------
// Companies House
// ---------------------------------------------------------------------------

#[tokio::test]
async fn companies_house_never_follows_a_move_to_another_server() {
    let away = sim_with(fixture_lines(), None).await;
    for code in CODES {
        let home = sim_with(Vec::new(), None).await;
        let location = format!("{}{STREAM_PATH}", away.base_url());
        home.set_default_plan(Some(ConnPlan::Redirect { code, location: location.clone() }));
        let (_dir, db) = temp_db();
        let mut p = start(fast_settings(&home.base_url(), None), &db);
        let ok = drive_until(&mut p, WAIT, |m| refused_twice(m, &location)).await;
        assert!(ok, "{code}: {:?}", p.model().feeds[0].last_error);
        assert!(error(p.model()).starts_with(&format!("HTTP {code}: ")), "{}", error(p.model()));
        assert_ne!(p.model().feeds[0].state, ConnState::Live);
        assert_eq!(p.model().feeds[0].counts.events, 0);
        p.shutdown().await;
        assert_eq!(away.connections(), 0, "{code}: the other server was contacted");
        assert_eq!(db_counts(&db).events, 0, "nothing from another host is stored");
    }
}

#[tokio::test]
async fn companies_house_follows_a_redirect_within_its_server() {
    let home = sim_with(fixture_lines(), None).await;
    home.push_plan(ConnPlan::Redirect { code: 301, location: STREAM_PATH.into() });
    let (_dir, db) = temp_db();
    let settings = ChSettings { stream: "/old-companies".into(), ..fast_settings(&home.base_url(), None) };
    let mut p = start(settings, &db);
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].counts.events == 27).await, "{:?}", p.model().feeds[0]);
    let paths: Vec<String> = home.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths[..2], ["/old-companies", STREAM_PATH]);
    assert_eq!(p.model().feeds[0].attempts, 1, "followed within the one attempt");
    assert_eq!(p.model().feeds[0].last_error, None);
    p.shutdown().await;
}

#[tokio::test]
async fn companies_house_stops_after_a_few_redirects_within_its_server() {
    let home = sim_with(fixture_lines(), None).await;
    home.set_default_plan(Some(ConnPlan::Redirect { code: 302, location: STREAM_PATH.into() }));
    let (_dir, db) = temp_db();
    let mut p = start(fast_settings(&home.base_url(), None), &db);
    let ok = drive_until(&mut p, WAIT, |m| error(m).contains("more than 3 redirects")).await;
    assert!(ok, "{:?}", p.model().feeds[0].last_error);
    assert!(error(p.model()).contains(&format!("the last to {}{STREAM_PATH}", home.base_url())));
    let attempts = p.model().feeds[0].attempts;
    p.shutdown().await;
    // Each attempt: the request and at most three redirects followed (an
    // attempt may have begun after the model was read).
    let requests = home.requests().len() as u64;
    assert!(requests <= 4 * (attempts + 1), "{requests} requests in {attempts} attempts");
}

// ---------------------------------------------------------------------------
// SSE
// ---------------------------------------------------------------------------

async fn sse_sim() -> SseSim {
    SseSim::start(SseConfig {
        token: TOKEN.into(),
        shape: SseShape::Actual,
        publish_every: Duration::from_millis(50),
        heartbeat_after: Duration::from_secs(3600),
        retry: None,
        seed: Some(3),
    })
    .await
    .unwrap()
}

fn sse(url: String) -> SseSettings {
    let mut s = SseSettings::new(url);
    s.token = ApiKey::new(TOKEN);
    s.reconnect = fast_reconnect();
    s
}

#[tokio::test]
async fn sse_never_follows_a_move_to_another_server() {
    let away = sse_sim().await;
    for code in CODES {
        let home = sse_sim().await;
        home.set_default_plan(Some(SsePlan::Redirect { code, location: away.url() }));
        let (_dir, db) = temp_db();
        let mut p = start_feeds(vec![FeedSpec::sse("sse", sse(home.url()))], &db);
        let ok = drive_until(&mut p, WAIT, |m| refused_twice(m, &away.url())).await;
        assert!(ok, "{code}: {:?}", p.model().feeds[0].last_error);
        assert!(p.model().quotes.is_empty());
        assert!(!error(p.model()).contains(TOKEN));
        p.shutdown().await;
        assert_eq!(away.connections(), 0, "{code}: the other server was contacted");
    }
}

#[tokio::test]
async fn sse_follows_a_redirect_within_its_server() {
    let home = sse_sim().await;
    // The new place keeps the token in its query, as a server that moves a
    // stream within itself would.
    home.push_plan(SsePlan::Redirect { code: 307, location: format!("{SSE_PATH}?token={TOKEN}") });
    let (_dir, db) = temp_db();
    let old = home.url().replace(SSE_PATH, "/old/stream");
    let mut p = start_feeds(vec![FeedSpec::sse("sse", sse(old))], &db);
    assert!(drive_until(&mut p, WAIT, |m| !m.quotes.is_empty()).await, "{:?}", p.model().feeds[0].last_error);
    assert_eq!(home.connections(), 2, "the redirect and the stream");
    assert_eq!(p.model().feeds[0].attempts, 1);
    p.shutdown().await;
}

// ---------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------

async fn wig80_sim() -> Wig80Sim {
    Wig80Sim::start(Wig80Config {
        snapshot_every: Duration::from_millis(100),
        protocol_ping_every: None,
        naive_timestamps: true,
        seed: Some(1),
    })
    .await
    .unwrap()
}

fn ws(url: String) -> WsSettings {
    let mut s = WsSettings::new(url, Dialect::Wig80);
    s.reconnect = fast_reconnect();
    s
}

#[tokio::test]
async fn websocket_never_follows_a_move_to_another_server() {
    let away = wig80_sim().await;
    for code in CODES {
        let home = wig80_sim().await;
        home.set_default_plan(Some(WsPlan::Redirect { code, to: away.addr(), path: "/" }));
        let (_dir, db) = temp_db();
        let mut p = start_feeds(vec![FeedSpec::websocket("wig80", ws(home.url()))], &db);
        let location = format!("{}/", away.url());
        let ok = drive_until(&mut p, WAIT, |m| refused_twice(m, &location)).await;
        assert!(ok, "{code}: {:?}", p.model().feeds[0].last_error);
        assert!(p.model().quotes.is_empty());
        p.shutdown().await;
        assert_eq!(away.connections(), 0, "{code}: the other server was contacted");
    }
}

#[tokio::test]
async fn websocket_follows_a_redirect_within_its_server() {
    let home = wig80_sim().await;
    home.push_plan(WsPlan::Redirect { code: 301, to: home.addr(), path: "/moved" });
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::websocket("wig80", ws(home.url()))], &db);
    assert!(drive_until(&mut p, WAIT, |m| !m.quotes.is_empty()).await, "{:?}", p.model().feeds[0].last_error);
    assert_eq!(home.connections(), 2, "the redirect and the stream");
    assert_eq!(p.model().feeds[0].attempts, 1);
    p.shutdown().await;
}
