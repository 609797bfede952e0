//! The documented SSE subscription flow, the I/O half (docs/protocols.md §4.3).
//!
//! When an `sse` feed has topics, each connection waits for the server to
//! reveal its id (`connection_established`), then posts one subscribe per
//! topic to `/sse/subscribe` on the stream's own origin, one after another.
//! The posts run beside the stream, never instead of reading it: the
//! connector polls [`ConnSubscriptions::next`] in the same `select!` as the
//! next chunk. They belong to the connection: when it ends (a drop, a
//! reconnect), the subscriptions still in flight are dropped with it, and
//! the next connection subscribes again with its own new id.
//!
//! - Every topic accepted: a notice each (`subscribed to <topic>`).
//! - One refused (a non-2xx answer, `"success": false`, a body that is not
//!   the JSON answer, no answer within the deadlines): the feed's error, and
//!   the connection is dropped and retried with the usual backoff. Without
//!   its subscriptions the documented server sends nothing, so staying
//!   `live` would only hide the failure; a new connection is a new chance
//!   (a permission fixed, a topic created) and the backoff keeps it gentle.
//! - No id: the real server never sends one. The first event that is not a
//!   `connection_established` (the documented server sends that one first,
//!   on connect), or `id_wait` with no event at all, settles it: the feed
//!   reports "no subscription: the server sent no connection id" as its error
//!   and stays connected, since whatever the server sends anyway still counts.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::companies_house::{header_text, send_within};
use super::decode::sse::SseEvent;
use super::decode::sse_subscribe::{answer, connection_id, form_body, subscribe_url, ConnectionId};
use super::secret::{with_token, ApiKey};
use super::supervisor::{Reconnect, Retry};
use super::FeedMsgKind;

/// The first words of the error shown when the server never says its id.
pub const NO_ID: &str = "no subscription: the server sent no connection id";

/// The longest subscribe answer read; the documented one is a few dozen bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// After a refused subscribe on a rate-limited server, wait at least this.
const RATE_LIMITED_WAIT: Duration = Duration::from_secs(60);

/// A subscribe that did not go through: it ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub error: String,
    pub retry: Retry,
}

/// What the subscriptions of a connection have to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The server accepted this topic.
    Subscribed(String),
    /// A subscribe failed: end the connection with this.
    Refused(Refused),
    /// No connection id is coming: the error to show (the feed stays connected).
    NoId(String),
}

type Answers = Pin<Box<dyn Stream<Item = Result<String, Refused>> + Send>>;

/// What a feed needs to subscribe, made once per feed.
pub struct Subscriber {
    client: reqwest::Client,
    /// `/sse/subscribe` on the stream's origin (with the token), or why there is none.
    url: Result<String, String>,
    topics: Arc<[String]>,
    filters: Option<Arc<Map<String, Value>>>,
    token: Option<ApiKey>,
    timings: Reconnect,
    id_wait: Duration,
}

/// The settings a [`Subscriber`] is made from.
pub struct SubscribeSettings<'a> {
    pub stream_url: &'a str,
    pub token: Option<&'a ApiKey>,
    pub topics: &'a [String],
    pub filters: Option<&'a Map<String, Value>>,
    pub timings: &'a Reconnect,
    pub id_wait: Duration,
}

impl Subscriber {
    /// `None` without topics: then the feed subscribes to nothing and expects no id.
    pub fn new(client: reqwest::Client, s: SubscribeSettings<'_>) -> Option<Self> {
        if s.topics.is_empty() {
            return None;
        }
        // The token travels as on the stream (`?token=`), and only to the
        // stream's origin.
        let url = subscribe_url(s.stream_url).map(|u| with_token(u.as_str(), s.token));
        Some(Self {
            client,
            url,
            topics: s.topics.into(),
            filters: s.filters.cloned().map(Arc::new),
            token: s.token.cloned(),
            timings: s.timings.clone(),
            id_wait: s.id_wait,
        })
    }

    /// The subscription state of a connection that just went live.
    pub fn connection(self: &Arc<Self>) -> ConnSubscriptions {
        let until = Instant::now() + self.id_wait;
        ConnSubscriptions { subscriber: self.clone(), phase: Phase::AwaitingId { until }, id: None }
    }

    /// The subscribes for connection `id`, one topic after another; each
    /// answer as it comes.
    fn subscribe_all(&self, id: &str) -> Answers {
        let posts: Vec<(String, String)> =
            self.topics.iter().map(|t| (t.clone(), form_body(id, t, self.filters.as_deref()))).collect();
        let (client, url, timings, token) =
            (self.client.clone(), self.url.clone(), self.timings.clone(), self.token.clone());
        Box::pin(stream::iter(posts).then(move |(topic, body)| {
            let post = Post { client: client.clone(), url: url.clone(), timings: timings.clone(), topic, body };
            let token = token.clone();
            async move {
                let topic = post.topic.clone();
                post.send().await.map(|()| topic.clone()).map_err(|(error, retry)| {
                    let error = format!("subscription to {topic} refused: {error}");
                    Refused { error: token.as_ref().map_or_else(|| error.clone(), |t| t.scrub(&error)), retry }
                })
            }
        }))
    }

    fn no_id_text(&self, why: &str) -> String {
        format!("{NO_ID} ({why}); topics not subscribed: {}", self.topics.join(", "))
    }
}

/// One subscribe request.
struct Post {
    client: reqwest::Client,
    url: Result<String, String>,
    timings: Reconnect,
    topic: String,
    body: String,
}

impl Post {
    async fn send(self) -> Result<(), (String, Retry)> {
        let url = self.url.map_err(|e| (e, Retry::Backoff))?;
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(self.body);
        let response = send_within(request, &self.timings).await.map_err(|e| (e, Retry::Backoff))?;
        let status = response.status();
        if status.is_redirection() {
            // Followed only within the origin (the client's policy): this one
            // pointed elsewhere, or too many times.
            let location = header_text(&response, reqwest::header::LOCATION);
            return Err((super::redirect::moved(status.as_u16(), location.as_deref(), response.url()), Retry::Backoff));
        }
        let retry = match status.as_u16() {
            401 | 403 => Retry::Auth,
            429 => Retry::AtLeast(RATE_LIMITED_WAIT),
            _ => Retry::Backoff,
        };
        let body = read_bounded(response, MAX_ANSWER, self.timings.response_timeout).await.map_err(|e| (e, retry))?;
        answer(status.as_u16(), &body).map_err(|e| (e, retry))
    }
}

/// The body, at most `max` bytes of it, within `within`.
async fn read_bounded(mut response: reqwest::Response, max: usize, within: Duration) -> Result<Vec<u8>, String> {
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("the answer broke off: {e}"))? {
            let room = max - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() == max {
                break;
            }
        }
        Ok(body)
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or_else(|_| Err(format!("no complete answer within {}", humantime::format_duration(within))))
}

/// The subscriptions of one connection.
pub struct ConnSubscriptions {
    subscriber: Arc<Subscriber>,
    phase: Phase,
    /// The id subscribed with, once the server said it.
    id: Option<String>,
}

enum Phase {
    /// Connected; the id has not come yet.
    AwaitingId { until: Instant },
    /// Posting the subscribes for the current id.
    Subscribing(Answers),
    /// Nothing left to do (all sent, or no id).
    Idle,
}

impl ConnSubscriptions {
    /// Looks at one event of the stream: a connection id starts the
    /// subscribes (again, should the id ever change); while waiting for the
    /// id, any other event means none is coming. Returns the message to send.
    pub fn on_event(&mut self, event: &SseEvent) -> Option<FeedMsgKind> {
        let subscriber = &self.subscriber;
        let awaiting = matches!(self.phase, Phase::AwaitingId { .. });
        match connection_id(event) {
            ConnectionId::Id(id) if self.id.as_ref() != Some(&id) => {
                self.phase = Phase::Subscribing(subscriber.subscribe_all(&id));
                self.id = Some(id);
                None
            }
            ConnectionId::Id(_) => None,
            ConnectionId::Unusable(why) if awaiting => {
                self.phase = Phase::Idle;
                let why = format!("its connection_established event is not usable: {why}");
                Some(FeedMsgKind::Error(subscriber.no_id_text(&why)))
            }
            ConnectionId::NotAnnounced if awaiting => {
                self.phase = Phase::Idle;
                Some(FeedMsgKind::Error(subscriber.no_id_text("its first event was not connection_established")))
            }
            ConnectionId::Unusable(_) | ConnectionId::NotAnnounced => None,
        }
    }

    /// The next thing to report; pending while there is none. Cancel-safe:
    /// a subscribe in flight stays in flight when this future is dropped.
    pub async fn next(&mut self) -> Step {
        let subscriber = self.subscriber.clone();
        loop {
            match &mut self.phase {
                Phase::AwaitingId { until } => {
                    tokio::time::sleep_until(*until).await;
                    self.phase = Phase::Idle;
                    let waited = humantime::format_duration(subscriber.id_wait);
                    return Step::NoId(subscriber.no_id_text(&format!("no event within {waited} of connecting")));
                }
                Phase::Subscribing(answers) => match answers.next().await {
                    Some(Ok(topic)) => return Step::Subscribed(topic),
                    Some(Err(refused)) => {
                        self.phase = Phase::Idle;
                        return Step::Refused(refused);
                    }
                    None => self.phase = Phase::Idle,
                },
                Phase::Idle => std::future::pending::<()>().await,
            }
        }
    }
}

/// [`ConnSubscriptions::next`] for a feed that may have none: pending forever then.
pub async fn next_step(subs: &mut Option<ConnSubscriptions>) -> Step {
    match subs {
        Some(conn) => conn.next().await,
        None => std::future::pending().await,
    }
}
