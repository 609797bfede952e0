//! The NATS harness the relay's tests stand on (feedtop_sim::nats), checked
//! with the client the relay uses: a real nats-server 2.9 takes JetStream
//! streams and acked publishes, keeps them across a restart, and a
//! three-node cluster with three replicas loses nothing when a node stops.
//!
//! Starting and stopping servers blocks (std processes), so it runs on
//! `spawn_blocking` and never holds up the client's runtime.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::ServerAddr;
use feedtop_sim::{NatsCluster, NatsServer};

/// A JetStream request against a cluster that just lost a node can wait for a
/// new stream leader; every wait is bounded so a broken cluster fails the test.
const DEADLINE: Duration = Duration::from_secs(20);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("harness thread")
}

/// `url` may list several servers, comma-separated: async-nats 0.46 takes a
/// list of `ServerAddr`s but does not split a string itself.
async fn context(url: &str) -> jetstream::Context {
    let servers: Vec<ServerAddr> = url.split(',').map(|one| one.parse().expect("a NATS URL")).collect();
    let client = async_nats::connect(servers).await.expect("connect to nats-server");
    jetstream::new(client)
}

fn config(replicas: usize) -> stream::Config {
    stream::Config {
        name: "HARNESS".into(),
        subjects: vec!["feedtop.>".into()],
        num_replicas: replicas,
        ..Default::default()
    }
}

async fn publish(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
    body: &'static str,
) -> jetstream::publish::PublishAck {
    let message = jetstream::message::PublishMessage::build().message_id(id).payload(body.into());
    let ack = tokio::time::timeout(DEADLINE, async { js.send_publish(subject.to_string(), message).await?.await })
        .await
        .expect("publish ack in time");
    ack.expect("publish acked")
}

async fn stored(js: &jetstream::Context, sequence: u64) -> String {
    let read = tokio::time::timeout(DEADLINE, async {
        let stream = js.get_stream("HARNESS").await?;
        let message = stream.get_raw_message(sequence).await?;
        Ok::<_, async_nats::Error>(String::from_utf8_lossy(&message.payload).into_owned())
    })
    .await
    .expect("read in time");
    read.expect("read the stored message")
}

async fn count(js: &jetstream::Context) -> u64 {
    let mut stream = js.get_stream("HARNESS").await.expect("stream exists");
    stream.info().await.expect("stream info").state.messages
}

#[tokio::test]
async fn one_node_acks_publishes_and_keeps_them_across_a_restart_and_a_kill() {
    let mut server = blocking(NatsServer::start).await.expect("start nats-server");
    let js = context(&server.url()).await;
    js.create_stream(config(1)).await.expect("create stream");
    let ack = publish(&js, "feedtop.ch.events", "ch:1", "first").await;
    assert_eq!((ack.stream.as_str(), ack.sequence, ack.duplicate), ("HARNESS", 1, false));
    // The same id again is de-duplicated by the server, not stored twice.
    assert!(publish(&js, "feedtop.ch.events", "ch:1", "first").await.duplicate);

    let mut server = blocking(move || server.restart().map(|()| server)).await.expect("restart");
    let js = context(&server.url()).await;
    assert_eq!(count(&js).await, 1);
    assert_eq!(stored(&js, 1).await, "first");

    server.kill();
    assert!(!server.is_running());
    assert!(async_nats::connect(server.url()).await.is_err(), "a killed server still takes connections");
    let server = blocking(move || server.restart().map(|()| server)).await.expect("start after kill");
    let js = context(&server.url()).await;
    assert_eq!(stored(&js, 1).await, "first", "an acked message survives SIGKILL");
    assert_eq!(publish(&js, "feedtop.ch.events", "ch:2", "second").await.sequence, 2);
}

#[tokio::test]
async fn a_three_node_cluster_with_three_replicas_loses_nothing_when_a_node_stops() {
    let mut cluster = blocking(|| NatsCluster::start(3)).await.expect("start a 3-node cluster");
    let js = context(&cluster.urls()).await;
    js.create_stream(config(3)).await.expect("create a stream with 3 replicas");
    assert_eq!(publish(&js, "feedtop.ch.events", "ch:1", "before").await.sequence, 1);

    // Stop the node the client is not necessarily on: any one of three must do.
    let mut cluster = blocking(move || cluster.stop_node(0).map(|()| cluster)).await.expect("stop node0");
    let survivor = context(&cluster.node_url(1)).await;
    assert_eq!(stored(&survivor, 1).await, "before");
    assert_eq!(publish(&survivor, "feedtop.ch.events", "ch:2", "during").await.sequence, 2);

    let _cluster = blocking(move || cluster.start_node(0).map(|()| cluster)).await.expect("node0 rejoins");
    assert_eq!(count(&survivor).await, 2);
}

/// What viewers will do: an ordered pull consumer over a subject filter. It
/// is checked here because async-nats 0.46 also speaks server 2.10+ (multiple
/// filter subjects, metadata), and the server CI installs is 2.9.
#[tokio::test]
async fn an_ordered_consumer_reads_a_filtered_stream_back_from_nats_server_2_9() {
    use async_nats::jetstream::consumer::{pull, DeliverPolicy};
    use futures_util::StreamExt as _;

    let server = blocking(NatsServer::start).await.expect("start nats-server");
    let js = context(&server.url()).await;
    js.create_stream(config(1)).await.expect("create stream");
    publish(&js, "feedtop.ch.events", "ch:1", "one").await;
    publish(&js, "feedtop.ch.state", "ch:s1", "state").await;
    publish(&js, "feedtop.ch.events", "ch:2", "two").await;

    let stream = js.get_stream("HARNESS").await.expect("stream");
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: "feedtop.ch.events".into(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("an ordered consumer on 2.9");
    let mut messages = consumer.messages().await.expect("consume");
    let mut bodies = Vec::new();
    while bodies.len() < 2 {
        let message = tokio::time::timeout(DEADLINE, messages.next()).await.expect("a message in time");
        let message = message.expect("stream open").expect("a message");
        bodies.push(String::from_utf8_lossy(&message.payload).into_owned());
    }
    assert_eq!(bodies, ["one", "two"]);
}
