//! `feedtop strike-offs --source nats://…`: the strike-off changes a relay
//! published, read back from its stream with no local database.
//!
//! Only `feedtop.*.strikeoffs` is read, with an ordered consumer from the
//! `--since` time on (or the stream's start), up to the messages that were
//! in the stream when reading began: a relay that goes on publishing does
//! not keep the command running. A stream that stops delivering before
//! then is an error after [`STALL`], never a wait without end.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::DeliverPolicy};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use feedtop_proto::strike_off::StrikeOffChange;
use feedtop_proto::{wire, FeedMsgKind};

use super::nats::{self, ConnectionEvents, NatsError, NatsSettings};
use super::subjects;

/// How long reading may go without a message before it is given up.
pub const STALL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("NATS stream {stream} on {url}: reading stopped with {pending} strike-off message(s) still to read: {why}; try again, or check the server")]
    Stalled { stream: String, url: String, pending: u64, why: String },
}

/// What the stream held.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct History {
    /// Newest first, as the database lists them (by timepoint, then the
    /// later message first).
    pub changes: Vec<StrikeOffChange>,
    /// Strike-off messages read, in the window or not.
    pub read: u64,
    /// Messages this feedtop could not read (another schema version).
    pub unreadable: u64,
}

/// Reads the strike-off changes published since `since` (by publication
/// time, or reception time without one, as `strike-offs` does on the
/// database); all of them without `since`.
pub async fn strike_offs(
    settings: &NatsSettings,
    since: Option<DateTime<Utc>>,
    stall: Duration,
) -> Result<History, HistoryError> {
    let client = nats::connect(settings, "feedtop strike-offs", true, Arc::new(ConnectionEvents::default())).await?;
    let stream_error = |why: String| NatsError::Stream {
        stream: settings.stream.clone(),
        url: settings.shown_url(),
        why: settings.redact(&why),
    };
    let js = jetstream::new(client);
    let stream = js
        .get_stream(&settings.stream)
        .await
        .map_err(|e| stream_error(format!("{e}; is `feedtop relay --nats {}` running?", settings.shown_url())))?;
    // The head when reading began: where a live relay's later messages start.
    let head = stream.cached_info().state.last_sequence;
    let deliver_policy = match since {
        // A change is stored after it was published: nothing earlier in
        // the stream can be in the window.
        Some(at) => DeliverPolicy::ByStartTime { start_time: chrono_to_offset(at) },
        None => DeliverPolicy::All,
    };
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subjects::ALL_STRIKE_OFFS.to_string(),
            deliver_policy,
            description: Some("feedtop strike-offs".to_string()),
            ..Default::default()
        })
        .await
        .map_err(|e| stream_error(e.to_string()))?;
    let mut pending = consumer.cached_info().num_pending;
    let mut history = History::default();
    if pending == 0 {
        return Ok(history);
    }
    let mut messages = consumer.messages().await.map_err(|e| stream_error(e.to_string()))?;
    let mut deadline = tokio::time::Instant::now() + stall;
    let mut last_error: Option<String> = None;
    let mut arrived = Vec::new();
    loop {
        let stalled = |why: String| HistoryError::Stalled {
            stream: settings.stream.clone(),
            url: settings.shown_url(),
            pending,
            why,
        };
        let msg = match tokio::time::timeout_at(deadline, messages.next()).await {
            Err(_) => {
                let last = last_error.map(|e| format!(" (last error: {e})")).unwrap_or_default();
                return Err(stalled(format!("nothing arrived for {}s{last}", stall.as_secs())));
            }
            Ok(None) => return Err(stalled("the consumer was closed".into())),
            // The ordered consumer recreates itself after a missed
            // heartbeat or a gap; the deadline decides when to give up.
            Ok(Some(Err(e))) => {
                last_error = Some(settings.redact(&e.to_string()));
                continue;
            }
            Ok(Some(Ok(msg))) => msg,
        };
        deadline = tokio::time::Instant::now() + stall;
        history.read += 1;
        let seq = match msg.info() {
            Ok(info) => {
                pending = info.pending;
                info.stream_sequence
            }
            Err(_) => 0,
        };
        match wire::decode(&msg.payload) {
            Ok(feed_msg) => {
                if let Some(change) = strike_off(feed_msg.kind) {
                    if since.is_none_or(|at| change.published_at.unwrap_or(change.received_at) >= at) {
                        arrived.push(change);
                    }
                }
            }
            Err(e) => {
                if history.unreadable == 0 {
                    tracing::warn!(
                        "NATS: a message on {} cannot be read: {e}",
                        crate::sanitize::for_terminal(msg.subject.as_str())
                    );
                }
                history.unreadable += 1;
            }
        }
        if pending == 0 || seq >= head {
            break;
        }
    }
    // Newest first: the later of two changes with one timepoint first, as
    // the database's `ORDER BY timepoint DESC, id DESC`.
    arrived.reverse();
    arrived.sort_by_key(|c| std::cmp::Reverse(c.timepoint));
    history.changes = arrived;
    Ok(history)
}

fn strike_off(kind: FeedMsgKind) -> Option<StrikeOffChange> {
    match kind {
        FeedMsgKind::StrikeOff(change) => Some(*change),
        FeedMsgKind::Resumable { inner, .. } => strike_off(*inner),
        _ => None,
    }
}

fn chrono_to_offset(at: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(at.timestamp_nanos_opt().unwrap_or_default() as i128)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::nats::NatsServer;
    use chrono::TimeZone;
    use feedtop_proto::strike_off::ChangeKind;
    use feedtop_proto::FeedMsg;

    fn change(number: &str, timepoint: i64, published: DateTime<Utc>) -> FeedMsg {
        let change = StrikeOffChange {
            kind: ChangeKind::Entered,
            company_number: number.into(),
            company_name: format!("COMPANY {number} LTD"),
            from_status: Some("active".into()),
            from_detail: None,
            to_status: "active".into(),
            to_detail: Some("active-proposal-to-strike-off".into()),
            published_at: Some(published),
            timepoint,
            received_at: published,
        };
        FeedMsg { feed: "ch/companies".into(), at: published, kind: FeedMsgKind::StrikeOff(Box::new(change)) }
    }

    async fn publish(js: &jetstream::Context, msg: &FeedMsg) {
        for row in subjects::rows(msg) {
            js.publish(row.subject, row.payload.into()).await.unwrap().await.unwrap();
        }
    }

    #[tokio::test]
    async fn reads_the_strike_offs_in_the_stream_newest_first_and_nothing_else() {
        let server = NatsServer::start().unwrap();
        let settings = NatsSettings::new(server.url());
        let client = async_nats::connect(&server.url()).await.unwrap();
        let js = jetstream::new(client);
        js.create_stream(settings.stream_config()).await.unwrap();

        // Nothing yet: an answer at once, not a wait.
        let empty = strike_offs(&settings, None, STALL).await.unwrap();
        assert_eq!(empty, History::default());

        let old = Utc.with_ymd_and_hms(2025, 6, 10, 11, 0, 0).unwrap();
        publish(&js, &change("00000001", 10, old)).await;
        let state =
            FeedMsg { feed: "ch/companies".into(), at: old, kind: FeedMsgKind::State(feedtop_proto::ConnState::Live) };
        publish(&js, &state).await;
        js.publish("feedtop.other.strikeoffs", "not a record".into()).await.unwrap().await.unwrap();
        publish(&js, &change("00000002", 20, Utc::now())).await;

        let all = strike_offs(&settings, None, STALL).await.unwrap();
        let numbers: Vec<_> = all.changes.iter().map(|c| c.company_number.as_str()).collect();
        assert_eq!(numbers, ["00000002", "00000001"], "newest first");
        assert_eq!((all.read, all.unreadable), (3, 1), "the state message is not read at all");

        // The window is by publication time, as on the database.
        let recent = strike_offs(&settings, Some(Utc::now() - chrono::TimeDelta::hours(1)), STALL).await.unwrap();
        let numbers: Vec<_> = recent.changes.iter().map(|c| c.company_number.as_str()).collect();
        assert_eq!(numbers, ["00000002"]);
        // Stored after the window starts: none of them is delivered.
        let future = strike_offs(&settings, Some(Utc::now() + chrono::TimeDelta::hours(1)), STALL).await.unwrap();
        assert_eq!(future, History::default());
    }

    #[tokio::test]
    async fn a_missing_stream_says_to_start_the_relay() {
        let server = NatsServer::start().unwrap();
        let mut settings = NatsSettings::new(server.url());
        settings.stream = "NOPE".into();
        let e = strike_offs(&settings, None, STALL).await.unwrap_err().to_string();
        assert!(e.starts_with("NATS stream NOPE on nats://127.0.0.1:"), "{e}");
        assert!(e.contains("is `feedtop relay --nats"), "{e}");
    }
}
