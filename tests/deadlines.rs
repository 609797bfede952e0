//! Issue 10, item 1: stuck for ever. A server that takes the connection and
//! never answers (or trickles header bytes) must not hold a feed in
//! `connecting`: every phase has a deadline, and past it the error names the
//! phase and the feed backs off and tries again.

mod common;

use std::time::Duration;

use common::*;
use feedtop::app::{FeedSpec, Pipeline};
use feedtop::feeds::quote::Dialect;
use feedtop::feeds::sse::SseSettings;
use feedtop::feeds::supervisor::Reconnect;
use feedtop::feeds::websocket::WsSettings;
use feedtop::sim::{Mute, MuteServer};

/// Short deadlines; the read-idle timeout is long, so only the response
/// deadline can end an attempt.
fn timings() -> Reconnect {
    Reconnect {
        response_timeout: Duration::from_millis(300),
        read_timeout: Duration::from_secs(60),
        ..fast_reconnect()
    }
}

/// Runs until the feed has given up on the mute server twice, and returns
/// the error it showed.
async fn gives_up(mut p: Pipeline, server: &MuteServer) -> String {
    let ok = drive_until(&mut p, WAIT, |m| m.feeds[0].last_error.is_some() && server.accepted() >= 2).await;
    let f = p.model().feeds[0].clone();
    assert!(ok, "stuck in {:?} after {} connections: {:?}", f.state, server.accepted(), f.last_error);
    p.shutdown().await;
    f.last_error.unwrap()
}

async fn companies_house(mute: Mute) -> String {
    let server = MuteServer::start(mute).await.unwrap();
    let mut settings = fast_settings(&format!("http://{}", server.addr()), None);
    settings.reconnect = timings();
    let (_dir, db) = temp_db();
    gives_up(start(settings, &db), &server).await
}

async fn sse(mute: Mute) -> String {
    let server = MuteServer::start(mute).await.unwrap();
    let mut settings = SseSettings::new(format!("http://{}/sse/stream", server.addr()));
    settings.reconnect = timings();
    let (_dir, db) = temp_db();
    gives_up(start_feeds(vec![FeedSpec::sse("prices", settings)], &db), &server).await
}

async fn websocket(mute: Mute) -> String {
    let server = MuteServer::start(mute).await.unwrap();
    let mut settings = WsSettings::new(format!("ws://{}/", server.addr()), Dialect::Wig80);
    settings.reconnect = timings();
    let (_dir, db) = temp_db();
    gives_up(start_feeds(vec![FeedSpec::websocket("wig80", settings)], &db), &server).await
}

const TRICKLE: Mute = Mute::Trickle { every: Duration::from_millis(50) };

#[tokio::test]
async fn companies_house_gives_up_on_a_server_that_never_answers() {
    let error = companies_house(Mute::Silent).await;
    assert_eq!(error, "no response head within 300ms (the server took the connection but did not answer)");
}

#[tokio::test]
async fn companies_house_gives_up_on_a_response_head_that_never_ends() {
    let error = companies_house(TRICKLE).await;
    assert!(error.starts_with("no response head within 300ms"), "{error}");
}

#[tokio::test]
async fn sse_gives_up_on_a_server_that_never_answers() {
    let error = sse(Mute::Silent).await;
    assert!(error.starts_with("no response head within 300ms"), "{error}");
}

#[tokio::test]
async fn sse_gives_up_on_a_response_head_that_never_ends() {
    let error = sse(TRICKLE).await;
    assert!(error.starts_with("no response head within 300ms"), "{error}");
}

#[tokio::test]
async fn websocket_gives_up_on_an_upgrade_that_never_comes() {
    let error = websocket(Mute::Silent).await;
    assert!(error.starts_with("no WebSocket upgrade within 300ms"), "{error}");
}

#[tokio::test]
async fn websocket_gives_up_on_an_upgrade_answer_that_never_ends() {
    let error = websocket(TRICKLE).await;
    assert!(error.starts_with("no WebSocket upgrade within 300ms"), "{error}");
}
