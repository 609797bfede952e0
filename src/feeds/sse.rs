//! Server-Sent Events quote feeds (docs/protocols.md §4).
//!
//! A long `GET` with `Accept: text/event-stream`. The parser follows the full
//! SSE rules but feedtop never depends on them: the real server sends only
//! `data:` lines and stays silent for the first 30 s, so the read-idle timeout
//! must be longer than that. When the server sends `id:` lines, the last one
//! goes back as `Last-Event-ID` on reconnect; a `retry:` sets the minimum wait
//! (clamped, so neither 0 nor 10 hours is taken literally).
//!
//! With `topics`, each connection also runs the documented subscription flow
//! beside the stream (`sse_subscribe.rs`): subscribe once the server says its
//! connection id, or say that it never did.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

use super::companies_house::{body_snippet, header_text, http_client, send_with_deadlines, SendFailed};
use super::decode::sse::{decode_event, SseItem, SseParser};
use super::secret::{with_token, ApiKey};
use super::session::QuoteSession;
use super::sse_subscribe::{next_step, Step, SubscribeSettings, Subscriber};
use super::supervisor::{read_chunk_since, Connector, FeedLink, Outcome, Read, Reconnect, Retry};
use super::{ConnState, FeedMsgKind, ResumePoint};

/// The shortest wait a server's `retry:` may ask for.
const MIN_RETRY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct SseSettings {
    pub url: String,
    pub token: Option<ApiKey>,
    /// Keep only these symbols (empty: all).
    pub symbols: Vec<String>,
    pub reconnect: Reconnect,
    pub max_event: usize,
    /// Topics to subscribe to with `POST /sse/subscribe` once the stream says
    /// its connection id (the documented flow). Empty: no subscriptions.
    pub topics: Vec<String>,
    /// Filters sent with every subscribe, e.g. `{"commodity": "oil"}` (`{}` when `None`).
    pub filters: Option<Map<String, Value>>,
    /// With topics: how long a connection waits for any event before saying
    /// that no connection id came (the documented server sends it first, at
    /// once; the real one sends nothing for 30 s). Not a config key.
    pub id_wait: Duration,
}

impl SseSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            symbols: Vec::new(),
            // The server's first heartbeat comes after 30 s of silence (45 s
            // until shown as stalled, the default).
            reconnect: Reconnect { read_timeout: Duration::from_secs(75), ..Reconnect::default() },
            max_event: 4 * 1024 * 1024,
            topics: Vec::new(),
            filters: None,
            id_wait: Duration::from_secs(10),
        }
    }
}

pub struct SseConnector {
    settings: SseSettings,
    client: reqwest::Client,
    /// The last `id:` the server sent, carried across connections.
    last_event_id: Option<String>,
    /// The last `retry:` the server sent.
    retry: Option<Duration>,
    /// With topics: how each connection subscribes.
    subscriber: Option<Arc<Subscriber>>,
}

impl SseConnector {
    /// `last_event_id`: the stored resume point, sent on the first connect.
    pub fn new(settings: SseSettings, last_event_id: Option<String>) -> anyhow::Result<Self> {
        let client = http_client(&settings.url, settings.reconnect.connect_timeout)?;
        // A stored id that cannot be sent (written by an older feedtop) would
        // stop every connection from being built: start without it.
        let last_event_id = last_event_id.filter(|id| match unsendable(id) {
            None => true,
            Some(why) => {
                tracing::warn!("the stored SSE resume id is not usable ({why}); connecting without it");
                false
            }
        });
        let subscriber = Subscriber::new(
            client.clone(),
            SubscribeSettings {
                stream_url: &settings.url,
                token: settings.token.as_ref(),
                topics: &settings.topics,
                filters: settings.filters.as_ref(),
                timings: &settings.reconnect,
                id_wait: settings.id_wait,
            },
        )
        .map(Arc::new);
        Ok(Self { settings, client, last_event_id, retry: None, subscriber })
    }

    fn scrub(&self, text: String) -> String {
        match &self.settings.token {
            Some(t) => t.scrub(&text),
            None => text,
        }
    }

    /// Keeps what the stream told us for the next connection: the last event
    /// id (sent back as `Last-Event-ID`) and the `retry:` delay.
    fn remember(&mut self, parser: &SseParser) {
        if let Some(id) = parser.last_event_id().filter(|id| unsendable(id).is_none()) {
            self.last_event_id = Some(id.to_string());
        }
        self.retry = parser.retry().or(self.retry);
    }

    fn retry_after_drop(&self) -> Retry {
        match self.retry {
            Some(r) => Retry::AtLeast(r.clamp(MIN_RETRY, self.settings.reconnect.backoff_cap)),
            None => Retry::Backoff,
        }
    }
}

/// The longest event id kept as a resume point. Ids are short tokens in
/// practice; a longer one would be sent as a header on every reconnect.
const MAX_EVENT_ID: usize = 1024;

/// Why an event id cannot go back as `Last-Event-ID`, if it cannot: a header
/// value carries no control characters, and an id a server can make a
/// request fail with would stop the feed from ever connecting again.
fn unsendable(id: &str) -> Option<&'static str> {
    if id.len() > MAX_EVENT_ID {
        Some("longer than 1 KiB")
    } else if reqwest::header::HeaderValue::from_str(id).is_err() {
        Some("it contains a control character or non-ASCII text, which cannot be sent as Last-Event-ID")
    } else {
        None
    }
}

/// `{"detail":{"error":"INVALID_TOKEN","message":"…"}}` → `INVALID_TOKEN: …`.
fn detail_text(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let detail = v.get("detail")?;
    match (detail.get("error").and_then(|e| e.as_str()), detail.get("message").and_then(|m| m.as_str())) {
        (Some(e), Some(m)) => Some(format!("{e}: {m}")),
        (Some(e), None) => Some(e.to_string()),
        _ => detail.as_str().map(str::to_string),
    }
}

impl Connector for SseConnector {
    async fn attempt(&mut self, link: &mut FeedLink) -> Outcome {
        let url = with_token(&self.settings.url, self.settings.token.as_ref());
        let mut request =
            self.client.get(url).header("Accept", "text/event-stream").header("Cache-Control", "no-cache");
        if let Some(id) = &self.last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = match send_with_deadlines(request, &self.settings.reconnect, link).await {
            Ok(r) => r,
            Err(SendFailed::Command(outcome)) => return outcome,
            Err(SendFailed::Error(e)) => return Outcome::failed(self.scrub(e), Retry::Backoff),
        };
        let status = response.status();
        if status.is_redirection() {
            let location = header_text(&response, reqwest::header::LOCATION);
            let error = super::redirect::moved(status.as_u16(), location.as_deref(), response.url());
            return Outcome::failed(self.scrub(error), Retry::Backoff);
        }
        if !status.is_success() {
            let body = body_snippet(response).await;
            let shown = detail_text(&body).unwrap_or(body);
            let message = if shown.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {shown}") };
            let retry = match status.as_u16() {
                401 | 403 => Retry::Auth,
                429 => Retry::AtLeast(Duration::from_secs(60)),
                _ => Retry::Backoff,
            };
            return Outcome::failed(message, retry);
        }
        if !link.send(FeedMsgKind::State(ConnState::Live)).await {
            return Outcome::Shutdown;
        }
        let live_since = Instant::now();
        let read_timeout = self.settings.reconnect.read_timeout;
        let mut session = QuoteSession::new(&self.settings.symbols);
        let mut parser = SseParser::new(self.settings.max_event);
        let mut body = response.bytes_stream();
        let mut items = Vec::new();
        // This connection's subscriptions: dropped with it, in flight or not.
        let mut subs = self.subscriber.as_ref().map(Subscriber::connection);
        let mut idle_since = Instant::now();
        let end = loop {
            let read = tokio::select! {
                read = read_chunk_since(&mut body, link, idle_since, read_timeout) => read,
                step = next_step(&mut subs) => {
                    let kind = match step {
                        Step::Subscribed(topic) => FeedMsgKind::Notice(format!("subscribed to {topic}")),
                        Step::NoId(text) => FeedMsgKind::Error(text),
                        Step::Refused(refused) => {
                            self.remember(&parser);
                            let live_for = live_since.elapsed();
                            return Outcome::Dropped { error: refused.error, live_for, retry: refused.retry };
                        }
                    };
                    if !link.send(kind).await {
                        return Outcome::Shutdown;
                    }
                    continue;
                }
            };
            match read {
                Read::Command(outcome) => {
                    // A reconnect asked for by the user resumes like any other.
                    self.remember(&parser);
                    return outcome;
                }
                Read::Ended(why) => break why,
                // Every event completed by this chunk is stamped with its
                // arrival, however long the core takes to accept them.
                Read::Chunk { bytes, at } => {
                    idle_since = Instant::now();
                    parser.push(&bytes, &mut items);
                    if items.is_empty() && !link.send_at(at, FeedMsgKind::Bytes).await {
                        return Outcome::Shutdown;
                    }
                    for item in items.drain(..) {
                        let mut subscription = None;
                        let (kind, resume) = match item {
                            SseItem::Event(event) => {
                                subscription = subs.as_mut().and_then(|s| s.on_event(&event));
                                // The id goes to the store after the event's quotes.
                                let moved = event.id.clone().filter(|id| Some(id) != self.last_event_id.as_ref());
                                (session.on_decoded(decode_event(&event)), moved)
                            }
                            SseItem::Comment => (FeedMsgKind::KeepAlive, None),
                            SseItem::TooLong => (FeedMsgKind::TooLong, None),
                        };
                        let kind = match resume {
                            Some(event_id) => match unsendable(&event_id) {
                                None => {
                                    self.last_event_id = Some(event_id.clone());
                                    let resume = ResumePoint::EventId(event_id);
                                    FeedMsgKind::Resumable { resume, inner: Box::new(kind) }
                                }
                                Some(reason) => {
                                    // The event itself is kept; only its id is not.
                                    if !link.send_at(at, kind).await {
                                        return Outcome::Shutdown;
                                    }
                                    FeedMsgKind::UnusableResumeId { reason: reason.to_string() }
                                }
                            },
                            None => kind,
                        };
                        if !link.send_at(at, kind).await {
                            return Outcome::Shutdown;
                        }
                        if let Some(kind) = subscription {
                            if !link.send_at(at, kind).await {
                                return Outcome::Shutdown;
                            }
                        }
                    }
                }
            }
        };
        self.remember(&parser);
        let (error, retry) = session.ending(self.scrub(end));
        let retry = if retry == Retry::Backoff { self.retry_after_drop() } else { retry };
        Outcome::Dropped { error, live_for: live_since.elapsed(), retry }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_cannot_be_sent_back_are_refused() {
        assert_eq!(unsendable("41"), None);
        assert_eq!(unsendable("evt-2026-11-30T12:00:00Z"), None);
        assert!(unsendable("4\u{1}1").is_some());
        assert!(unsendable("a\rb").is_some());
        assert!(unsendable("\u{7f}").is_some());
        assert!(unsendable(&"x".repeat(MAX_EVENT_ID + 1)).is_some());
    }

    #[test]
    fn detail_of_a_401_body() {
        let body = r#"{"detail":{"error":"INVALID_TOKEN","message":"Invalid SSE token"}}"#;
        assert_eq!(detail_text(body).as_deref(), Some("INVALID_TOKEN: Invalid SSE token"));
        assert_eq!(detail_text(r#"{"detail":"Not Found"}"#).as_deref(), Some("Not Found"));
        assert_eq!(detail_text("<html>"), None);
    }
}
