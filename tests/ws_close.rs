//! Issue 10, item 10: a WebSocket feed says why it closes. The server sees
//! 1000 (normal) when the operator reconnects and 1001 (going away) when
//! feedtop stops, never a close without a code (1005) or none at all (1006).

mod common;

use std::time::Duration;

use common::*;
use feedtop::app::FeedSpec;
use feedtop::feeds::quote::Dialect;
use feedtop::feeds::websocket::WsSettings;
use feedtop::feeds::ConnState;
use feedtop::sim::{Wig80Config, Wig80Sim, WsScript};

/// Polls the simulator until a client close with `code` is recorded.
async fn close_seen(sim: &Wig80Sim, code: u16) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut poll = tokio::time::interval(Duration::from_millis(10));
    while tokio::time::Instant::now() < deadline {
        if sim.client_closes().contains(&Some(code)) {
            return true;
        }
        poll.tick().await;
    }
    false
}

#[tokio::test]
async fn reconnect_closes_with_1000_and_stopping_with_1001() {
    let sim = Wig80Sim::start(Wig80Config {
        snapshot_every: Duration::from_millis(100),
        protocol_ping_every: None,
        naive_timestamps: false,
        seed: Some(3),
    })
    .await
    .unwrap();
    let mut settings = WsSettings::new(sim.url(), Dialect::Wig80);
    settings.reconnect = fast_reconnect();
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::websocket("wig80", settings)], &db);
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].counts.events >= 16).await);

    p.reconnect(&p.model().feeds[0].info.name);
    let before = p.model().feeds[0].counts.events;
    // Stopped only once the new connection is live and delivering.
    let reconnected = drive_until(&mut p, WAIT, |m| {
        let f = &m.feeds[0];
        f.attempts >= 2 && f.state == ConnState::Live && f.counts.events >= before + 16
    })
    .await;
    assert!(reconnected);
    assert!(close_seen(&sim, 1000).await, "reconnect: {:?}", sim.client_closes());

    p.shutdown().await;
    assert!(close_seen(&sim, 1001).await, "stop: {:?}", sim.client_closes());
    assert_eq!(sim.client_closes(), [Some(1000), Some(1001)]);
}
