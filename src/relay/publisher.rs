//! The relay's publisher: sends each outbox message to JetStream with its
//! de-duplication id, in `seq` order, a window of acks in flight, so a
//! backlog goes out at the speed of the link and not one round trip per
//! message. Messages come as the pipeline makes them, before their rows
//! are committed, or from the outbox table when the publisher is behind
//! ([`super::outbox`]). A message counts as published once JetStream has
//! acknowledged it and every one before it; the pipeline then deletes
//! their rows (`Fact::Published`). While NATS is unreachable nothing is
//! dropped: rows wait in the outbox, and the publisher starts again from
//! the first one not acknowledged (JetStream drops the repeats by their ids).

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishError, publish::PublishAck};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use feedtop_proto::wire::RecordingHeader;

use super::nats::{self, ConnectionEvents, NatsSettings};
use super::outbox::{self, Source, Stager};
use super::subjects::{self, OutboxMsg, OutboxRow};
use super::LinkState;

/// Messages taken at a time (from memory or the table).
const BATCH: usize = 4096;
/// Publishes awaiting their ack at most.
const WINDOW: usize = 4096;
/// How often the relay says it is alive (and which feeds it has).
const HEARTBEAT: Duration = Duration::from_secs(30);
/// How often the outbox table is looked at for rows the pipeline did not
/// hand over (an older run's): once a second is all the backlog on the
/// screen and in `/metrics` needs.
const COUNT_EVERY: Duration = Duration::from_secs(1);
/// The longest wait between attempts while NATS refuses or is away.
const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// What the relay's side of NATS looks like, for the headless line,
/// `/metrics` and `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStatus {
    /// The server(s), secrets shown as `***`.
    pub url: String,
    pub stream: String,
    pub nats: LinkState,
    pub reconnects: u64,
    /// Messages JetStream acknowledged in this run.
    pub published: u64,
    /// Messages made and not yet acknowledged (each is in the outbox, or
    /// on its way there with the commit of what it reports).
    pub backlog: u64,
    pub last_error: Option<String>,
    /// Since when every attempt to publish (or to set the stream up) has
    /// failed, while the link itself may look connected: a server that
    /// refuses (no JetStream, a full disk, permissions) stops the relay as
    /// surely as a cut cable.
    pub failing_since: Option<chrono::DateTime<chrono::Utc>>,
}

/// The running publisher.
pub struct Publisher {
    pub status: watch::Receiver<RelayStatus>,
    /// Every outbox message up to this `seq` is acknowledged.
    pub acked: watch::Receiver<i64>,
    stager: Stager,
    finish_by: watch::Sender<Option<Instant>>,
    task: JoinHandle<()>,
}

impl Publisher {
    /// Starts publishing the outbox of the database at `db`: what an
    /// earlier run left there first, then what [`Publisher::stage`] hands
    /// over. `committed` is told after every commit of the store writer
    /// (rows the publisher is waiting for may be there).
    pub fn spawn(
        settings: NatsSettings,
        db: &Path,
        committed: Arc<Notify>,
        header: RecordingHeader,
    ) -> Result<Self, rusqlite::Error> {
        let (stager, source, start) = outbox::open(db)?;
        let initial = RelayStatus {
            url: settings.shown_url(),
            stream: settings.stream.clone(),
            nats: LinkState::Connecting,
            reconnects: 0,
            published: 0,
            backlog: source.backlog(start),
            last_error: None,
            failing_since: None,
        };
        let (status_tx, status) = watch::channel(initial);
        let (acked_tx, acked) = watch::channel(start);
        let (finish_by, finish_rx) = watch::channel(None);
        let run = Run {
            settings,
            committed,
            header,
            status: status_tx,
            acked: acked_tx,
            finish_by: finish_rx,
            abandoned: false,
            events: Arc::new(ConnectionEvents::default()),
            looked_at: None,
        };
        Ok(Self { status, acked, stager, finish_by, task: tokio::spawn(run.run(source)) })
    }

    /// Numbers a new message and hands it over to be published at once.
    /// The caller stores the returned message in the outbox, in the
    /// transaction of what it reports (see [`outbox`]).
    pub fn stage(&mut self, row: OutboxRow) -> Arc<OutboxMsg> {
        self.stager.stage(row)
    }

    /// Publishes what is left in the outbox for `within` at most, then
    /// stops. What is still unpublished stays in the outbox for the next run.
    pub async fn finish(self, within: Duration) -> RelayStatus {
        let _ = self.finish_by.send(Some(Instant::now() + within));
        // The task bounds itself by the deadline; the grace covers a
        // blocking database read in progress.
        if tokio::time::timeout(within + Duration::from_secs(1), self.task).await.is_err() {
            tracing::warn!("the NATS publisher did not stop in time");
        }
        self.status.borrow().clone()
    }
}

/// What is published instead of a message over the server's size limit (a
/// Companies House line may be up to 4 MiB; NATS takes 1 MiB by default): a
/// notice on the feed, logged here, shown by viewers in their Log.
fn oversize_notice(payload: &[u8], max_payload: usize) -> Vec<u8> {
    let original = feedtop_proto::wire::decode(payload).ok();
    let feed = original.as_ref().map_or_else(|| feedtop_proto::FeedId::from("?"), |m| m.feed.clone());
    let at = original.as_ref().map_or_else(chrono::Utc::now, |m| m.at);
    let text = format!(
        "a message of {} bytes was not relayed: over the NATS server's max_payload of {max_payload} bytes",
        payload.len()
    );
    tracing::warn!("{feed}: {text}");
    let notice = feedtop_proto::FeedMsg { feed, at, kind: feedtop_proto::FeedMsgKind::Notice(text) };
    feedtop_proto::wire::encode(&notice)
}

struct Run {
    settings: NatsSettings,
    committed: Arc<Notify>,
    header: RecordingHeader,
    status: watch::Sender<RelayStatus>,
    acked: watch::Sender<i64>,
    finish_by: watch::Receiver<Option<Instant>>,
    /// The [`Publisher`] was dropped without [`Publisher::finish`]: stop.
    abandoned: bool,
    events: Arc<ConnectionEvents>,
    /// When the table was last looked at (see [`COUNT_EVERY`]).
    looked_at: Option<Instant>,
}

/// JetStream's answer to one publish.
type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

/// Publishes sent and not yet acknowledged, kept across batches: the next
/// batch is sent while the last one's acks come back, instead of the pipe
/// running dry at the end of each batch.
#[derive(Default)]
struct InFlight {
    acks: VecDeque<(i64, AckFuture)>,
    /// The last `seq` sent (the next batch starts after it).
    sent: i64,
}

/// What one step of the loop came to.
enum Sent {
    /// Messages went out or were acknowledged.
    Progress,
    /// Woken with nothing done (a message handed over, a commit, the timer).
    Idle,
    /// Stopped at a failure; the messages after the last acknowledged one go again.
    Failed(String),
}

impl Run {
    async fn run(mut self, mut source: Source) {
        let client = match nats::connect(&self.settings, "feedtop relay", false, self.events.clone()).await {
            Ok(c) => c,
            Err(e) => {
                // Only a bad setting gets here (a credentials file that
                // cannot be read): with retries on, an absent server does not.
                tracing::error!("{e}; the relay keeps storing every message for when this is fixed");
                self.set(|s| s.last_error = Some(e.to_string()));
                return;
            }
        };
        let js = jetstream::new(client.clone());
        let mut acked: i64 = *self.acked.borrow();
        let mut in_flight = InFlight::default();
        let mut stream_ready = false;
        let mut backoff = Duration::from_millis(250);
        let mut heartbeat_due = Instant::now();
        loop {
            self.refresh(&client, &mut source, acked).await;
            let finishing = *self.finish_by.borrow();
            if self.abandoned || finishing.is_some_and(|by| Instant::now() >= by) {
                break;
            }
            if client.connection_state() != async_nats::connection::State::Connected {
                self.pause(Duration::from_millis(200), finishing).await;
                continue;
            }
            if !stream_ready {
                match self.ensure_stream(&js).await {
                    Ok(()) => {
                        stream_ready = true;
                        backoff = Duration::from_millis(250);
                        self.succeeded();
                    }
                    Err(e) => {
                        self.failed(e);
                        self.pause(backoff, finishing).await;
                        backoff = (backoff * 2).min(BACKOFF_CAP);
                        continue;
                    }
                }
            }
            if Instant::now() >= heartbeat_due {
                heartbeat_due = Instant::now() + HEARTBEAT;
                let info = feedtop_proto::wire::encode_header(&self.header);
                // Best effort: the next heartbeat says it again.
                if let Err(e) = js.publish(subjects::INFO_SUBJECT, info.into()).await {
                    tracing::debug!("relay heartbeat: {e}");
                }
            }
            let after = in_flight.sent.max(acked);
            let msgs = match source.next(after, BATCH).await {
                Ok(msgs) => msgs,
                Err(e) => {
                    self.failed(format!("reading the outbox: {e}"));
                    self.pause(BACKOFF_CAP, finishing).await;
                    continue;
                }
            };
            let outcome = if msgs.is_empty() {
                if finishing.is_some() && in_flight.acks.is_empty() {
                    break; // Everything committed is out.
                }
                // Rows made but not handed over (the hand-over was full, or
                // NATS failed after they were sent) come with a commit.
                let behind = after < source.newest();
                let wake = heartbeat_due.min(Instant::now() + Duration::from_secs(1));
                self.wait(&mut source, &mut in_flight, &mut acked, behind, wake).await
            } else {
                let max_payload = client.server_info().max_payload;
                self.publish(&js, &msgs, &mut in_flight, &mut acked, max_payload).await
            };
            match outcome {
                Sent::Progress => {
                    backoff = Duration::from_millis(250);
                    if self.status.borrow().failing_since.is_some() {
                        self.succeeded();
                    }
                }
                Sent::Idle => {}
                Sent::Failed(why) => {
                    self.failed(why);
                    // From the first message not acknowledged again
                    // (JetStream drops the repeats by their ids).
                    in_flight = InFlight::default();
                    // The stream may have been deleted or changed under us.
                    stream_ready = false;
                    self.pause(backoff, finishing).await;
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        }
        self.looked_at = None;
        self.refresh(&client, &mut source, acked).await;
        // The pipeline's store is closed by now: mark what went out, so the
        // next start does not publish it again.
        if acked > 0 {
            if let Err(e) = source.delete_through(acked).await {
                tracing::debug!("the outbox keeps published rows for the next start to skip: {e}");
            }
        }
    }

    /// Waits for the first of: the oldest ack in flight, a message handed
    /// over, a commit (when `behind`: rows to read may be in it), `until`,
    /// a shutdown. An ack is taken as it comes, so a message handed over
    /// meanwhile goes out at once instead of after every ack in flight.
    async fn wait(
        &mut self,
        source: &mut Source,
        in_flight: &mut InFlight,
        acked: &mut i64,
        behind: bool,
        until: Instant,
    ) -> Sent {
        let oldest_ack = async {
            match in_flight.acks.front_mut() {
                Some((seq, ack)) => (*seq, ack.as_mut().await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            (seq, result) = oldest_ack => {
                in_flight.acks.pop_front();
                match result {
                    Ok(_) => {
                        *acked = seq;
                        self.count_published(seq, 1);
                        Sent::Progress
                    }
                    Err(e) => Sent::Failed(format!("publish not acknowledged: {e}")),
                }
            }
            _ = source.handed_over() => Sent::Idle,
            _ = self.committed.notified(), if behind => Sent::Idle,
            _ = tokio::time::sleep_until(until) => Sent::Idle,
            changed = self.finish_by.changed() => {
                self.abandoned |= changed.is_err();
                Sent::Idle
            }
        }
    }

    /// Sleeps, cut short by a shutdown deadline.
    async fn pause(&mut self, wait: Duration, finishing: Option<Instant>) {
        let until = finishing.map_or(Instant::now() + wait, |by| by.min(Instant::now() + wait));
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            changed = self.finish_by.changed() => self.abandoned |= changed.is_err(),
        }
    }

    fn set(&self, change: impl FnOnce(&mut RelayStatus)) {
        self.status.send_modify(change);
    }

    fn failed(&self, why: String) {
        let why = self.settings.redact(&why);
        let same = self.status.borrow().last_error.as_deref() == Some(why.as_str());
        if !same {
            tracing::warn!("NATS: {why}; messages wait in the outbox and go out in order when this clears");
        }
        self.set(|s| {
            s.last_error = Some(why);
            s.failing_since.get_or_insert_with(chrono::Utc::now);
        });
    }

    /// An attempt succeeded: whatever failed before has cleared.
    fn succeeded(&self) {
        self.set(|s| {
            s.last_error = None;
            s.failing_since = None;
        });
    }

    /// The link state and the backlog, as they are now.
    async fn refresh(&mut self, client: &async_nats::Client, source: &mut Source, acked: i64) {
        let state = LinkState::of(client);
        if self.looked_at.is_none_or(|at| at.elapsed() >= COUNT_EVERY) {
            self.looked_at = Some(Instant::now());
            source.look_at_table().await;
        }
        let backlog = source.backlog(acked);
        let reconnects = self.events.reconnects();
        let was = self.status.borrow().nats;
        if was != state {
            let url = self.settings.shown_url();
            match (was, state) {
                (_, LinkState::Connected) => tracing::info!("NATS: connected to {url}"),
                (LinkState::Connected, _) => {
                    tracing::warn!("NATS: lost {url}; messages wait in the outbox, in order, until it is back")
                }
                _ => {}
            }
        }
        let unchanged = {
            let s = self.status.borrow();
            (s.nats, s.reconnects, s.backlog) == (state, reconnects, backlog)
        };
        if !unchanged {
            self.set(|s| {
                s.nats = state;
                s.reconnects = reconnects;
                s.backlog = backlog;
            });
        }
    }

    async fn ensure_stream(&self, js: &jetstream::Context) -> Result<(), String> {
        let wanted = self.settings.stream_config();
        match js.get_stream(&wanted.name).await {
            Ok(mut stream) => {
                let info = stream.info().await.map_err(|e| e.to_string())?;
                let have = &info.config;
                let differs = have.max_age != wanted.max_age
                    || have.max_bytes != wanted.max_bytes
                    || have.num_replicas != wanted.num_replicas
                    || !have.subjects.iter().any(|s| s == subjects::ALL);
                if differs {
                    let mut update = have.clone();
                    update.max_age = wanted.max_age;
                    update.max_bytes = wanted.max_bytes;
                    update.num_replicas = wanted.num_replicas;
                    if !update.subjects.iter().any(|s| s == subjects::ALL) {
                        update.subjects.push(subjects::ALL.to_string());
                    }
                    match js.update_stream(update).await {
                        Ok(_) => tracing::info!("NATS stream {} updated to the configured retention", wanted.name),
                        // Publishing still works with the stream as it is.
                        Err(e) => {
                            tracing::warn!("NATS stream {}: cannot apply the configured retention: {e}", wanted.name)
                        }
                    }
                }
                Ok(())
            }
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                js.create_stream(wanted.clone())
                    .await
                    .map_err(|e| format!("cannot create stream {}: {e}", wanted.name))?;
                tracing::info!(
                    "NATS stream {} created: keeps {} or {} bytes, {} replica(s)",
                    wanted.name,
                    humantime::format_duration(wanted.max_age),
                    wanted.max_bytes,
                    wanted.num_replicas
                );
                Ok(())
            }
            Err(e) => Err(format!("stream {}: {e}", wanted.name)),
        }
    }

    /// Publishes `msgs` in order with up to [`WINDOW`] acks in flight
    /// (those of earlier batches included); moves `acked` past each message
    /// once it and all before it are stored. Acks still in flight at the
    /// end stay in `in_flight` for the next batch or [`Run::wait`].
    async fn publish(
        &self,
        js: &jetstream::Context,
        msgs: &[Arc<OutboxMsg>],
        in_flight: &mut InFlight,
        acked: &mut i64,
        max_payload: usize,
    ) -> Sent {
        let mut published = 0u64;
        let mut outcome = Sent::Progress;
        for msg in msgs {
            let payload = if msg.payload.len() > max_payload && max_payload > 0 {
                // NATS refuses it however often it is tried: say so in its
                // place, so the outbox moves on and viewers know.
                oversize_notice(&msg.payload, max_payload).into()
            } else {
                msg.payload.clone()
            };
            let publish = jetstream::message::PublishMessage::build().message_id(&msg.msg_id).payload(payload);
            match js.send_publish(msg.subject.clone(), publish).await {
                Ok(ack) => {
                    in_flight.acks.push_back((msg.seq, Box::pin(ack.into_future())));
                    in_flight.sent = msg.seq;
                }
                Err(e) => {
                    outcome = Sent::Failed(e.to_string());
                    break;
                }
            }
            if in_flight.acks.len() >= WINDOW {
                if let Err(why) = self.await_one(&mut in_flight.acks, acked, &mut published).await {
                    outcome = Sent::Failed(why);
                    break;
                }
            }
        }
        self.count_published(*acked, published);
        outcome
    }

    /// Tells the pipeline how far the outbox is published, and the screen
    /// how many went out.
    fn count_published(&self, acked: i64, published: u64) {
        let _ = self.acked.send(acked);
        if published > 0 {
            self.set(|s| s.published += published);
        }
    }

    async fn await_one(
        &self,
        in_flight: &mut VecDeque<(i64, AckFuture)>,
        acked: &mut i64,
        published: &mut u64,
    ) -> Result<(), String> {
        let Some((seq, ack)) = in_flight.pop_front() else { return Ok(()) };
        match ack.await {
            // A duplicate is stored already: as good as a fresh store.
            Ok(_) => {
                *acked = seq;
                *published += 1;
                if *published % 1024 == 0 {
                    let _ = self.acked.send(*acked);
                }
                Ok(())
            }
            Err(e) => Err(format!("publish not acknowledged: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use feedtop_proto::{FeedMsg, FeedMsgKind};

    /// The point of handing messages over: one goes out although its row
    /// is never committed (here never written at all), with the id it was
    /// given when made.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_staged_message_is_published_before_its_row_is_committed() {
        let server = tokio::task::spawn_blocking(crate::sim::nats::NatsServer::start).await.unwrap().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("relay.db");
        drop(crate::store::open(&db).unwrap());
        let header = RecordingHeader {
            feeds: Vec::new(),
            started: chrono::Utc::now(),
            writer: "test".into(),
            strike_offs: true,
        };
        let mut publisher =
            Publisher::spawn(NatsSettings::new(server.url()), &db, Arc::new(Notify::new()), header).unwrap();
        let msg = FeedMsg { feed: "q".into(), at: chrono::Utc::now(), kind: FeedMsgKind::Notice("hello".into()) };
        let row =
            OutboxRow { subject: "feedtop.q.state".into(), msg_id: None, payload: feedtop_proto::wire::encode(&msg) };
        let staged = publisher.stage(row);
        let mut acked = publisher.acked.clone();
        let within = Duration::from_secs(30);
        tokio::time::timeout(within, acked.wait_for(|&seq| seq >= staged.seq)).await.unwrap().unwrap();

        let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
        let stream = js.get_stream(super::super::nats::DEFAULT_STREAM).await.unwrap();
        let stored = stream.get_last_raw_message_by_subject("feedtop.q.state").await.unwrap();
        let back = feedtop_proto::wire::decode(&stored.payload).unwrap();
        assert!(matches!(back.kind, FeedMsgKind::Notice(ref text) if text == "hello"), "{back:?}");
        let id = stored.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.as_str().to_string());
        assert_eq!(id.as_deref(), Some(staged.msg_id.as_str()));
        let status = publisher.finish(Duration::from_secs(1)).await;
        assert_eq!((status.published, status.backlog), (1, 0), "{status:?}");
    }

    #[test]
    fn a_message_over_the_server_limit_becomes_a_notice_in_its_place() {
        let msg = FeedMsg {
            feed: "ch/companies".into(),
            at: chrono::Utc::now(),
            kind: FeedMsgKind::Notice("x".repeat(5000)),
        };
        let payload = feedtop_proto::wire::encode(&msg);
        let notice = feedtop_proto::wire::decode(&oversize_notice(&payload, 1024)).unwrap();
        assert_eq!((notice.feed.as_str(), notice.at), ("ch/companies", msg.at));
        match notice.kind {
            FeedMsgKind::Notice(text) => assert!(text.contains("not relayed") && text.contains("1024"), "{text}"),
            other => panic!("{other:?}"),
        }
    }
}
