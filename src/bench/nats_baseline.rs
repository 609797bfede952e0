//! The bare `async-nats` JetStream publisher that `feedtop bench --scenario
//! relay` measures the relay against: the same messages, published with
//! their `Nats-Msg-Id`, a window of acks in flight, every ack checked, and
//! nothing else (no store, no pipeline, no backlog bookkeeping).
//!
//! The issue asks the relay's catch-up publish for at least half of this
//! figure, measured in the same run against the same server.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, context::ContextBuilder, stream, Context};
use bytes::Bytes;
use serde_json::json;

/// Acks in flight by default. Measured on the 2-core dev box (load 2-4 from
/// other builds) against one local nats-server 2.9.10, 200,000 messages of
/// 600 bytes, release build, msg/s: window 1 (a round trip each) ~27k, 16
/// ~70-77k, 64 ~80-99k, 256 ~95-121k, 1024-8192 ~115-146k (a plateau). 4096
/// sits on it and keeps the pipe full on a slower link too.
pub const DEFAULT_WINDOW: usize = 4096;

/// The subjects the baseline's stream captures: the relay's layout.
pub const SUBJECTS: &str = "feedtop.>";

/// One message to publish: subject, `Nats-Msg-Id`, payload.
pub type OutMessage = (String, String, Bytes);

/// What one bare run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BareFigures {
    /// Messages published and acked (none duplicate).
    pub messages: usize,
    /// Payload bytes published.
    pub bytes: u64,
    /// From the first publish to the last ack: connecting and creating the
    /// stream are not part of it.
    pub elapsed: Duration,
    pub per_second: f64,
    pub window: usize,
}

/// Publishes every message to `stream` (created if missing, capturing
/// [`SUBJECTS`]) with [`DEFAULT_WINDOW`] acks in flight.
pub async fn bare_publish(client_url: &str, stream: &str, messages: Vec<OutMessage>) -> anyhow::Result<BareFigures> {
    bare_publish_windowed(client_url, stream, messages, DEFAULT_WINDOW).await
}

/// As [`bare_publish`], with up to `window` acks in flight (at least one),
/// awaited in publish order. Fails on the first failed or duplicate ack: the
/// messages are expected to be new to the stream.
pub async fn bare_publish_windowed(
    client_url: &str,
    stream: &str,
    messages: Vec<OutMessage>,
    window: usize,
) -> anyhow::Result<BareFigures> {
    let window = window.max(1);
    let client =
        async_nats::connect(client_url).await.with_context(|| format!("connecting to NATS at {client_url}"))?;
    // The context's own in-flight limit must not be the smaller one, or it
    // and not `window` would decide how much is pipelined.
    let js = ContextBuilder::new().max_ack_inflight(window).build(client.clone());
    ensure_stream(&js, stream).await?;

    let mut in_flight = VecDeque::with_capacity(window);
    let mut bytes = 0u64;
    let count = messages.len();
    let started = Instant::now();
    for (subject, id, payload) in messages {
        if in_flight.len() == window {
            check_ack(in_flight.pop_front(), stream).await?;
        }
        bytes += payload.len() as u64;
        let publish = jetstream::message::PublishMessage::build().message_id(id).payload(payload);
        let ack = js.send_publish(subject, publish).await.context("publishing to JetStream")?;
        in_flight.push_back(ack);
    }
    while !in_flight.is_empty() {
        check_ack(in_flight.pop_front(), stream).await?;
    }
    let elapsed = started.elapsed();
    client.drain().await.context("draining the NATS connection")?;
    Ok(BareFigures {
        messages: count,
        bytes,
        elapsed,
        per_second: count as f64 / elapsed.as_secs_f64().max(1e-9),
        window,
    })
}

async fn check_ack(ack: Option<jetstream::context::PublishAckFuture>, stream: &str) -> anyhow::Result<()> {
    let Some(ack) = ack else { return Ok(()) };
    let ack = ack.await.context("waiting for a JetStream publish ack")?;
    if ack.duplicate {
        bail!(
            "JetStream acked message {} of stream {} as a duplicate: the stream was not empty",
            ack.sequence,
            ack.stream
        );
    }
    if ack.stream != stream {
        bail!("JetStream acked into stream {:?}, not {stream:?}", ack.stream);
    }
    Ok(())
}

/// Gets the stream, creating it (file storage, one replica, the server's
/// default two-minute de-duplication window) if it does not exist.
pub async fn ensure_stream(js: &Context, name: &str) -> anyhow::Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: name.to_string(),
        subjects: vec![SUBJECTS.to_string()],
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating JetStream stream {name:?}"))
}

/// `count` messages shaped like the relay's: Companies House event JSON of
/// about `payload_len` bytes on `feedtop.ch.events`, each with its own id.
pub fn sample_messages(count: usize, payload_len: usize) -> Vec<OutMessage> {
    (0..count)
        .map(|i| {
            let mut event = json!({
                "v": 1,
                "feed": "ch",
                "kind": "event",
                "timepoint": 1_000_000 + i,
                "resource_kind": "company-profile",
                "company_number": format!("{:08}", i % 100_000_000),
                "company_name": format!("SAMPLE TRADING {i} LIMITED"),
                "company_status": "active",
                "published_at": "2026-11-30T12:00:00Z",
                "pad": "",
            });
            let short = serde_json::to_vec(&event).map(|v| v.len()).unwrap_or(0);
            event["pad"] = json!("x".repeat(payload_len.saturating_sub(short)));
            let payload = Bytes::from(serde_json::to_vec(&event).unwrap_or_default());
            ("feedtop.ch.events".to_string(), format!("ch:{}", 1_000_000 + i), payload)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use feedtop_sim::NatsServer;

    #[test]
    fn sample_messages_are_about_the_size_asked_with_distinct_ids() {
        let messages = sample_messages(100, 600);
        assert!(messages.iter().all(|(_, _, p)| (600..620).contains(&p.len())), "{}", messages[0].2.len());
        let ids: std::collections::HashSet<_> = messages.iter().map(|(_, id, _)| id.clone()).collect();
        assert_eq!(ids.len(), 100);
    }

    #[tokio::test]
    async fn the_bare_publisher_gets_every_ack_and_the_stream_holds_every_message() {
        let server = tokio::task::spawn_blocking(NatsServer::start).await.unwrap().expect("nats-server");
        let figures = bare_publish_windowed(&server.url(), "BARE", sample_messages(1_000, 600), 64).await.unwrap();
        assert_eq!(figures.messages, 1_000);
        assert!(figures.bytes >= 600_000);

        let client = async_nats::connect(server.url()).await.unwrap();
        let js = jetstream::new(client);
        let mut stream = js.get_stream("BARE").await.unwrap();
        assert_eq!(stream.info().await.unwrap().state.messages, 1_000);
        // The ids reached the server: the same messages again are all
        // duplicates, and the baseline refuses to count them.
        let again = bare_publish(&server.url(), "BARE", sample_messages(10, 600)).await.unwrap_err();
        assert!(format!("{again:#}").contains("duplicate"), "{again:#}");
        assert_eq!(stream.info().await.unwrap().state.messages, 1_000);
    }
}
