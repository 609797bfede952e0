//! The documented SSE subscription flow end to end, through the pipeline,
//! against the loopback SSE simulator (docs/protocols.md §4.3): subscribe
//! to every topic once the stream says its connection id, again with the
//! new id after a reconnect; a refused subscribe is the feed's error; a
//! server that never says its id is reported; the token stays on its origin.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use feedtop::app::FeedSpec;
use feedtop::feeds::secret::ApiKey;
use feedtop::feeds::sse::SseSettings;
use feedtop::feeds::sse_subscribe::NO_ID;
use feedtop::feeds::ConnState;
use feedtop::model::Model;
use feedtop::sim::carbon::TOPICS;
use feedtop::sim::sse::{SseConfig, SseShape, SseSim};
use feedtop::sim::sse_subscribe::{SseSubscribeConfig, SUBSCRIBE_PATH};

const TOKEN: &str = "subscribe-token-7f3a";

fn config(shape: SseShape) -> SseConfig {
    SseConfig {
        token: TOKEN.into(),
        shape,
        publish_every: Duration::from_millis(50),
        heartbeat_after: Duration::from_secs(3600),
        retry: None,
        seed: Some(11),
    }
}

/// The documented server, sending a connection only what it subscribed to.
async fn documented(subscribe: SseSubscribeConfig) -> SseSim {
    SseSim::start_with(config(SseShape::Documented), SseSubscribeConfig { required: true, ..subscribe }).await.unwrap()
}

fn settings(sim: &SseSim, topics: &[&str]) -> SseSettings {
    let mut s = SseSettings::new(sim.url());
    s.token = ApiKey::new(TOKEN);
    s.reconnect = fast_reconnect();
    s.topics = topics.iter().map(|t| t.to_string()).collect();
    s
}

fn error(m: &Model) -> String {
    m.feeds[0].last_error.clone().unwrap_or_default()
}

/// The topics of the events served on connection `conn`.
fn served_topics(sim: &SseSim, conn: usize) -> BTreeSet<String> {
    sim.served()
        .iter()
        .filter(|e| e.conn == conn)
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.payload).unwrap()["topic"].as_str().unwrap().to_owned())
        .collect()
}

/// The stream connections' indexes (subscribes are connections too), in order.
fn stream_conns(sim: &SseSim) -> Vec<usize> {
    let mut conns: Vec<usize> = sim.served().iter().map(|e| e.conn).collect();
    conns.dedup();
    conns
}

#[tokio::test]
async fn subscribes_to_every_topic_and_their_events_arrive() {
    let sim = documented(SseSubscribeConfig::default()).await;
    let (_dir, db) = temp_db();
    let mut s = settings(&sim, &[TOPICS[0], TOPICS[2]]);
    s.filters = Some(serde_json::from_str(r#"{"commodity":"oil"}"#).unwrap());
    let mut p = start_feeds(vec![FeedSpec::sse("carbon-sse", s)], &db);
    let ok = drive_until(&mut p, WAIT, |m| {
        m.feeds[0].counts.events >= 10 && stream_conns(&sim).first().is_some_and(|&c| served_topics(&sim, c).len() == 2)
    })
    .await;
    assert!(ok, "{:?} {:?}", p.model().feeds[0].last_error, sim.subscribe_requests());

    let ids = sim.connection_ids();
    assert_eq!(ids.len(), 1);
    let requests = sim.subscribe_requests();
    assert_eq!(requests.len(), 2, "one per topic: {requests:?}");
    for (request, topic) in requests.iter().zip([TOPICS[0], TOPICS[2]]) {
        assert_eq!(request.method, "POST");
        assert_eq!(request.status, 200, "{request:?}");
        assert!(request.token_ok, "the token goes as on the stream");
        assert_eq!(request.connection_id.as_deref(), Some(ids[0].as_str()));
        assert_eq!(request.topic.as_deref(), Some(topic));
        assert_eq!(request.filters.as_deref(), Some(r#"{"commodity":"oil"}"#));
    }
    // Only the subscribed topics were sent, and both were.
    let conn = stream_conns(&sim)[0];
    assert_eq!(served_topics(&sim, conn), BTreeSet::from([TOPICS[0].to_owned(), TOPICS[2].to_owned()]));
    let f = &p.model().feeds[0];
    assert_eq!((f.state.clone(), f.last_error.clone()), (ConnState::Live, None));
    p.shutdown().await;
}

#[tokio::test]
async fn a_reconnect_subscribes_again_with_the_new_id() {
    let sim = documented(SseSubscribeConfig::default()).await;
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::sse("carbon-sse", settings(&sim, &[TOPICS[1]]))], &db);
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].counts.events >= 5).await, "{}", error(p.model()));
    let before = p.model().feeds[0].counts.events;

    p.reconnect(&p.model().feeds[0].info.name);
    let ok = drive_until(&mut p, WAIT, |m| {
        m.feeds[0].reconnects() == 1 && m.feeds[0].counts.events >= before + 5 && sim.subscribe_requests().len() >= 2
    })
    .await;
    assert!(ok, "{} {:?}", error(p.model()), sim.subscribe_requests());
    let ids = sim.connection_ids();
    assert_eq!(ids.len(), 2, "two streams");
    assert_ne!(ids[0], ids[1], "a new connection is a new id");
    let requests = sim.subscribe_requests();
    let used: Vec<_> = requests.iter().map(|r| (r.connection_id.clone().unwrap(), r.status)).collect();
    assert_eq!(used, [(ids[0].clone(), 200), (ids[1].clone(), 200)]);
    // The events after the reconnect came through the new subscription.
    let conns = stream_conns(&sim);
    assert_eq!(served_topics(&sim, *conns.last().unwrap()), BTreeSet::from([TOPICS[1].to_owned()]));
    p.shutdown().await;
}

#[tokio::test]
async fn a_refused_subscribe_is_the_feeds_error_and_it_retries() {
    let sim = documented(SseSubscribeConfig { refuse: vec![TOPICS[1].into()], ..SseSubscribeConfig::default() }).await;
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::sse("carbon-sse", settings(&sim, &[TOPICS[0], TOPICS[1]]))], &db);
    let refused = format!("subscription to {} refused: HTTP 403: SUBSCRIPTION_DENIED", TOPICS[1]);
    let ok = drive_until(&mut p, WAIT, |m| m.feeds[0].attempts >= 2 && error(m).contains(&refused)).await;
    assert!(ok, "{} {:?}", error(p.model()), p.model().feeds[0].state);
    assert!(!error(p.model()).contains(TOKEN));
    // Each connection subscribed with its own id, and was dropped after the refusal.
    assert!(sim.wait_for_subscribes(4, WAIT).await);
    let requests = sim.subscribe_requests();
    let ids = sim.connection_ids();
    assert_eq!(requests[0].connection_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(requests[2].connection_id.as_deref(), Some(ids[1].as_str()));
    assert_eq!(requests.iter().map(|r| r.status).take(4).collect::<Vec<_>>(), [200, 403, 200, 403]);
    p.shutdown().await;
}

#[tokio::test]
async fn without_a_connection_id_the_feed_says_so_and_keeps_its_data() {
    // The real server's shape: bare `data:` events, no connection_established.
    let sim = SseSim::start(config(SseShape::Actual)).await.unwrap();
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::sse("carbon-sse", settings(&sim, &[TOPICS[0]]))], &db);
    let ok = drive_until(&mut p, WAIT, |m| error(m).starts_with(NO_ID) && m.feeds[0].counts.events >= 5).await;
    assert!(ok, "{} {:?}", error(p.model()), p.model().feeds[0].counts);
    assert_eq!(NO_ID, "no subscription: the server sent no connection id");
    let f = &p.model().feeds[0];
    assert_eq!((f.state.clone(), f.attempts), (ConnState::Live, 1), "still connected");
    assert!(f.error_while_live, "shown as a present condition");
    assert!(error(p.model()).contains(TOPICS[0]), "names what was not subscribed: {}", error(p.model()));
    assert!(sim.subscribe_requests().is_empty());
    p.shutdown().await;
}

#[tokio::test]
async fn a_silent_server_is_given_a_bounded_wait_for_its_id() {
    // Nothing at all after the headers (the real server's first 30 s).
    let silent = SseConfig { publish_every: Duration::from_secs(3600), ..config(SseShape::Actual) };
    let sim = SseSim::start(silent).await.unwrap();
    let (_dir, db) = temp_db();
    let mut s = settings(&sim, &[TOPICS[0]]);
    s.id_wait = Duration::from_millis(100);
    let mut p = start_feeds(vec![FeedSpec::sse("carbon-sse", s)], &db);
    let ok = drive_until(&mut p, WAIT, |m| error(m).starts_with(NO_ID)).await;
    assert!(ok, "{}", error(p.model()));
    assert!(error(p.model()).contains("no event within 100ms"), "{}", error(p.model()));
    assert_eq!(p.model().feeds[0].state, ConnState::Live);
    p.shutdown().await;
}

#[tokio::test]
async fn without_topics_nothing_changes() {
    let sim = SseSim::start(config(SseShape::Actual)).await.unwrap();
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::sse("carbon-sse", settings(&sim, &[]))], &db);
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].counts.events >= 5).await);
    assert_eq!(p.model().feeds[0].last_error, None, "no subscription was asked for");
    assert!(sim.subscribe_requests().is_empty());
    p.shutdown().await;
}

#[tokio::test]
async fn the_token_never_goes_to_another_origin() {
    let away = SseSim::start(config(SseShape::Documented)).await.unwrap();
    let location = format!("http://{}{SUBSCRIBE_PATH}", away.addr());
    let home =
        documented(SseSubscribeConfig { redirect: Some((307, location.clone())), ..SseSubscribeConfig::default() })
            .await;
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::sse("carbon-sse", settings(&home, &[TOPICS[0]]))], &db);
    let moved = format!("subscription to {} refused: HTTP 307: the stream moved to {location}", TOPICS[0]);
    let ok = drive_until(&mut p, WAIT, |m| m.feeds[0].attempts >= 2 && error(m).contains(&moved)).await;
    assert!(ok, "{}", error(p.model()));
    assert!(!error(p.model()).contains(TOKEN));
    p.shutdown().await;
    assert_eq!(away.connections(), 0, "the other server was never contacted");
    let requests = home.subscribe_requests();
    assert!(!requests.is_empty() && requests.iter().all(|r| r.token_ok), "{requests:?}");
}
