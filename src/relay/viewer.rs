//! A viewer's source: the relay's stream, read with an ordered consumer
//! from "the last hour" (`since`) on, each message handed to the pipeline
//! where a live feed's would go. The viewer shows the relay's feeds (from
//! the relay's latest announcement) and, beside them, its own link to NATS:
//! state, reconnects, and how far behind the stream's head it is.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::push, consumer::DeliverPolicy};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use feedtop_proto::wire::{self, Record, RecordingHeader};
use feedtop_proto::{FeedId, FeedInfo, FeedMsg};

use super::nats::{self, ConnectionEvents, NatsError, NatsSettings};
use super::subjects;
use super::LinkState;

/// The most feeds a relay's announcement may list (anyone who may publish
/// to the stream can write one; a screen of ten thousand rows helps no one).
const MAX_FEEDS: usize = 1024;

/// What the viewer's own link looks like, for its screen and headless line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerStatus {
    pub url: String,
    pub stream: String,
    pub nats: LinkState,
    pub reconnects: u64,
    /// Messages in the stream after the last one received.
    pub behind: u64,
    /// Messages received from the stream.
    pub received: u64,
    /// Records this feedtop could not read (another schema version).
    pub unreadable: u64,
    /// When the relay last announced itself (every 30 s while it runs).
    pub relay_heard: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// How far back in the stream it started (`--since`).
    pub since: Duration,
}

/// A connected viewer, before it starts reading.
pub struct Viewer {
    settings: NatsSettings,
    client: async_nats::Client,
    stream: jetstream::stream::Stream,
    relay: RecordingHeader,
    relay_heard: Option<DateTime<Utc>>,
    events: Arc<ConnectionEvents>,
}

/// What the pipeline asks of the viewer task (`r`, `R`, quitting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewerCommand {
    /// Drop the viewer's own NATS connection and connect again.
    Reconnect,
    /// Ask the relay, over NATS request/reply, to reconnect one of its
    /// feeds (`--ask-relay`; the relay must run with `--accept-reconnect`).
    AskRelay(FeedId),
    Shutdown,
}

/// The running viewer task.
pub struct ViewerHandle {
    pub status: watch::Receiver<ViewerStatus>,
    pub control: mpsc::Sender<ViewerCommand>,
    pub task: JoinHandle<()>,
}

fn stream_error(settings: &NatsSettings, why: impl std::fmt::Display) -> NatsError {
    NatsError::Stream {
        stream: settings.stream.clone(),
        url: settings.shown_url(),
        why: settings.redact(&why.to_string()),
    }
}

impl Viewer {
    /// Connects and reads which feeds the relay has. Fails with one line
    /// when NATS, the stream or the relay's announcement is not there.
    pub async fn open(settings: NatsSettings) -> Result<Self, NatsError> {
        let events = Arc::new(ConnectionEvents::default());
        let client = nats::connect(&settings, "feedtop viewer", true, events.clone()).await?;
        let js = jetstream::new(client.clone());
        let stream = js.get_stream(&settings.stream).await.map_err(|e| {
            stream_error(&settings, format!("{e}; is `feedtop relay --nats {}` running?", settings.shown_url()))
        })?;
        let last = stream.get_last_raw_message_by_subject(subjects::INFO_SUBJECT).await.map_err(|e| {
            stream_error(
                &settings,
                format!("no relay has announced itself in this stream ({e}); start the relay first"),
            )
        })?;
        let relay = match wire::decode_record(&last.payload) {
            Ok(Record::Header(header)) => header,
            Ok(Record::Msg(_)) => return Err(stream_error(&settings, "the relay's announcement is not one")),
            Err(e) => return Err(stream_error(&settings, format!("the relay's announcement: {e}"))),
        };
        if relay.feeds.is_empty() || relay.feeds.len() > MAX_FEEDS {
            let why =
                format!("the relay's announcement lists {} feeds: not something a relay sends", relay.feeds.len());
            return Err(stream_error(&settings, why));
        }
        let relay_heard = offset_to_chrono(last.time);
        Ok(Self { settings, client, stream, relay, relay_heard, events })
    }

    /// The relay's feeds, in its order.
    pub fn feeds(&self) -> &[FeedInfo] {
        &self.relay.feeds
    }

    /// Starts reading from `since` ago, sending each message to `tx`.
    pub fn spawn(self, tx: mpsc::Sender<FeedMsg>) -> ViewerHandle {
        let (control, control_rx) = mpsc::channel(8);
        let (status_tx, status) = watch::channel(ViewerStatus {
            url: self.settings.shown_url(),
            stream: self.settings.stream.clone(),
            nats: LinkState::Connected,
            reconnects: 0,
            behind: 0,
            received: 0,
            unreadable: 0,
            relay_heard: self.relay_heard,
            last_error: None,
            since: self.settings.since,
        });
        let task = tokio::spawn(self.run(tx, control_rx, status_tx));
        ViewerHandle { status, control, task }
    }

    async fn run(
        self,
        tx: mpsc::Sender<FeedMsg>,
        mut control: mpsc::Receiver<ViewerCommand>,
        status: watch::Sender<ViewerStatus>,
    ) {
        let since = chrono::TimeDelta::from_std(self.settings.since).unwrap_or(chrono::TimeDelta::hours(1));
        let start = Utc::now() - since;
        let mut policy = DeliverPolicy::ByStartTime { start_time: chrono_to_offset(start) };
        let mut last_seq: Option<u64> = None;
        let mut refresh = tokio::time::interval(Duration::from_secs(1));
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            if let Some(seq) = last_seq {
                policy = DeliverPolicy::ByStartSequence { start_sequence: seq + 1 };
            }
            let mut messages = match self.consume(policy).await {
                Ok(m) => m,
                Err(e) => {
                    status.send_modify(|s| s.last_error = Some(e));
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        cmd = control.recv() => if self.obey(cmd, &status).await { return } else { continue },
                    }
                }
            };
            loop {
                tokio::select! {
                    item = messages.next() => match item {
                        Some(Ok(msg)) => {
                            if !deliver(&msg, &mut last_seq, &tx, &status).await {
                                return; // The pipeline stopped.
                            }
                        }
                        // The consumer is lost (its server stopped: missing
                        // heartbeats) or broken: the ordered stream does not
                        // recreate itself then, so a new one starts where
                        // this one was, after a breath.
                        Some(Err(e)) => {
                            let why = self.settings.redact(&e.to_string());
                            tracing::debug!("NATS consumer: {why}; making another");
                            status.send_modify(|s| s.last_error = Some(why));
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            break;
                        }
                        // The consumer is gone (deleted, or the server lost it): make another from where this one was.
                        None => break,
                    },
                    cmd = control.recv() => if self.obey(cmd, &status).await { return },
                    _ = refresh.tick() => self.refresh_link(&status),
                }
            }
        }
    }

    /// The link's state and reconnects, as the client sees them now.
    fn refresh_link(&self, status: &watch::Sender<ViewerStatus>) {
        let state = LinkState::of(&self.client);
        let reconnects = self.events.reconnects();
        status.send_modify(|s| {
            if state == LinkState::Connected && s.nats != LinkState::Connected {
                s.last_error = None;
            }
            s.nats = state;
            s.reconnects = reconnects;
        });
    }

    /// Carries out one command; true when the viewer is to stop.
    async fn obey(&self, cmd: Option<ViewerCommand>, status: &watch::Sender<ViewerStatus>) -> bool {
        match cmd {
            None | Some(ViewerCommand::Shutdown) => return true,
            Some(ViewerCommand::Reconnect) => {
                tracing::info!("NATS: reconnecting to {}", self.settings.shown_url());
                if let Err(e) = self.client.force_reconnect().await {
                    status.send_modify(|s| s.last_error = Some(self.settings.redact(&e.to_string())));
                }
            }
            Some(ViewerCommand::AskRelay(feed)) => {
                let (client, stream) = (self.client.clone(), self.settings.stream.clone());
                // Its own task: the answer may take the whole timeout, and
                // the stream goes on meanwhile.
                tokio::spawn(async move {
                    match super::control::ask(&client, &stream, &feed).await {
                        Ok(answer) => tracing::info!("{feed}: the relay answered: {answer}"),
                        Err(e) => tracing::warn!("{feed}: {e}"),
                    }
                });
            }
        }
        false
    }

    async fn consume(&self, policy: DeliverPolicy) -> Result<push::Ordered, String> {
        let consumer = self
            .stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: subjects::ALL.to_string(),
                deliver_policy: policy,
                description: Some("feedtop viewer".to_string()),
                ..Default::default()
            })
            .await
            .map_err(|e| self.settings.redact(&e.to_string()))?;
        consumer.messages().await.map_err(|e| self.settings.redact(&e.to_string()))
    }
}

/// One message from the stream: the relay's announcement is a heartbeat,
/// a feed message goes to the pipeline, anything else is counted as
/// unreadable (logged the first time). False once the pipeline is gone.
async fn deliver(
    msg: &jetstream::Message,
    last_seq: &mut Option<u64>,
    tx: &mpsc::Sender<FeedMsg>,
    status: &watch::Sender<ViewerStatus>,
) -> bool {
    let info = msg.info().ok().map(|i| (i.stream_sequence, i.pending, i.published));
    if let Some((seq, _, _)) = info {
        *last_seq = Some(seq);
    }
    let behind = info.map_or(0, |(_, pending, _)| pending);
    if msg.subject.as_str() == subjects::INFO_SUBJECT {
        let heard = info.and_then(|(_, _, at)| offset_to_chrono(at));
        status.send_modify(|s| {
            s.relay_heard = heard.max(s.relay_heard);
            s.behind = behind;
        });
        return true;
    }
    match wire::decode(&msg.payload) {
        Ok(feed_msg) => {
            if tx.send(feed_msg).await.is_err() {
                return false;
            }
            status.send_modify(|s| {
                s.received += 1;
                s.behind = behind;
            });
        }
        Err(e) => {
            if status.borrow().unreadable == 0 {
                let subject = crate::sanitize::for_terminal(msg.subject.as_str());
                tracing::warn!("NATS: a message on {subject} cannot be read: {e}");
            }
            status.send_modify(|s| s.unreadable += 1);
        }
    }
    true
}

fn chrono_to_offset(at: DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(at.timestamp_nanos_opt().unwrap_or_default() as i128)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn offset_to_chrono(at: time::OffsetDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_nanos(i64::try_from(at.unix_timestamp_nanos()).ok()?).into()
}
