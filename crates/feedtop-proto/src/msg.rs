//! The messages feeds send and the words they share: connection states,
//! commands, and what kind of feed a feed is.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ch::ChEvent;
use crate::quote::{self, Quote};

/// A feed's id: the stable name it is configured under (`ch/companies`,
/// `wig80`). Messages, selections, commands, stored rows and (next) the
/// relay's subjects all use it, so nothing depends on a feed's position in
/// a list. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FeedId(Arc<str>);

impl FeedId {
    pub fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for FeedId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for FeedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for FeedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for FeedId {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for FeedId {
    fn from(name: String) -> Self {
        Self(Arc::from(name))
    }
}

impl From<&String> for FeedId {
    fn from(name: &String) -> Self {
        Self::new(name)
    }
}

impl PartialEq<str> for FeedId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for FeedId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for FeedId {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

/// Everything a feed tells the core loop. `at` is when it was received; the
/// model never reads the clock itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeedMsg {
    pub feed: FeedId,
    pub at: DateTime<Utc>,
    pub kind: FeedMsgKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum FeedMsgKind {
    /// The connection changed state.
    State(ConnState),
    /// Bytes arrived that did not complete an item (partial line): liveness only.
    Bytes,
    /// A blank keep-alive line.
    KeepAlive,
    /// A decoded event (new, not seen before on this feed).
    Event(Box<ChEvent>),
    /// Price updates from a quote feed (one frame may carry many symbols).
    Quotes(Vec<Quote>),
    /// Round-trip time of the feed's own application-level ping (a polled
    /// feed: of its request, from sending it to the end of the body).
    Rtt(std::time::Duration),
    /// The source answered that it has no data for these symbols (stooq
    /// `N/D`: unknown, or no trade yet): not an error, not malformed. A
    /// polled feed sends it with every good answer; it replaces the last
    /// list (empty: every symbol had data).
    NoData(Vec<String>),
    /// A message that also moves the feed's resume point (a Companies House
    /// timepoint, or an SSE event id sent as `Last-Event-ID`) after a
    /// reconnect or a restart. One message, so the point is stored in the
    /// same transaction as what it covers.
    Resumable { resume: ResumePoint, inner: Box<FeedMsgKind> },
    /// Something worth a log line that changes no state (subscribed, server notices).
    Notice(String),
    /// An event at or before the resume point (the replayed event after a resume).
    Duplicate { timepoint: i64 },
    /// A line that is not a valid event; counted and logged, never fatal.
    Malformed { reason: String },
    /// A line over the size limit, skipped.
    TooLong,
    /// Events were missed (HTTP 416: the timepoint was invalid or too old).
    /// The stored resume point is dropped with it: asking for it again would
    /// only get the same answer.
    Gap { after_timepoint: Option<i64>, reason: String },
    /// The server sent a resume id that cannot be sent back (a control
    /// character, or absurdly long): not kept, counted.
    UnusableResumeId { reason: String },
    /// Why the last connection attempt or connection failed.
    Error(String),
    /// A strike-off change the relay's (or a recording run's) tracker found
    /// in the event before it. Feeds never send it; a viewer applies it
    /// instead of guessing from the events it happens to have seen.
    StrikeOff(Box<crate::strike_off::StrikeOffChange>),
}

impl FeedMsgKind {
    /// The Companies House event this message carries, seen through a
    /// [`FeedMsgKind::Resumable`] wrapper.
    pub fn event(&self) -> Option<&ChEvent> {
        match self {
            FeedMsgKind::Event(ev) => Some(ev),
            FeedMsgKind::Resumable { inner, .. } => inner.event(),
            _ => None,
        }
    }
}

/// Where a feed picks up after a reconnect or a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumePoint {
    /// Companies House: `?timepoint=N` (inclusive).
    Timepoint(i64),
    /// SSE: the `Last-Event-ID` header.
    EventId(String),
}

/// The connection state shown in the Connections pane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnState {
    Connecting,
    Live,
    /// Waiting before the next attempt.
    Backoff {
        retry_at: DateTime<Utc>,
    },
    /// The server refused our credentials; retried slowly.
    AuthFailed {
        retry_at: DateTime<Utc>,
    },
}

impl ConnState {
    pub fn label(&self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Live => "live",
            ConnState::Backoff { .. } => "backoff",
            ConnState::AuthFailed { .. } => "auth failed",
        }
    }

    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        match self {
            ConnState::Backoff { retry_at } | ConnState::AuthFailed { retry_at } => Some(*retry_at),
            _ => None,
        }
    }
}

/// Sent to one feed's task on its control channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Drop the current connection (or skip the wait) and connect now.
    Reconnect,
    /// feedtop is stopping: close the connection politely and end the task.
    Shutdown,
}

/// Which protocol a feed speaks: shown in the Connections pane and headless
/// lines (as [`FeedKind::label`]), and what the UI asks instead of comparing
/// strings (a Companies House feed has no tickers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedKind {
    CompaniesHouse,
    WebSocket(quote::Dialect),
    Sse,
    /// Polled over HTTP at an interval.
    Poll(quote::PollFormat),
}

impl FeedKind {
    /// The kind as the config file and the headless lines spell it.
    pub fn label(self) -> &'static str {
        match self {
            FeedKind::CompaniesHouse => "companies-house",
            FeedKind::WebSocket(quote::Dialect::Wig80) => "ws/wig80",
            FeedKind::WebSocket(quote::Dialect::Carbon) => "ws/carbon",
            FeedKind::Sse => "sse",
            FeedKind::Poll(quote::PollFormat::Stooq) => "poll/stooq",
        }
    }

    /// Whether the feed carries stock quotes (everything but Companies House).
    pub fn carries_quotes(self) -> bool {
        !matches!(self, FeedKind::CompaniesHouse)
    }

    /// Whether a (re)connection resumes from a stored point, so that the
    /// server first replays what was missed: Companies House from its
    /// timepoint, SSE from `Last-Event-ID`. WebSocket and polled feeds start
    /// at the present.
    pub fn replays_backlog(self) -> bool {
        matches!(self, FeedKind::CompaniesHouse | FeedKind::Sse)
    }
}

impl std::fmt::Display for FeedKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Static description of a feed, shown in the UI and used as its storage key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedInfo {
    /// Stable name: the feed's id; the resume cursor and stored events are keyed by it.
    pub name: FeedId,
    pub kind: FeedKind,
}

impl FeedInfo {
    pub fn new(name: impl Into<FeedId>, kind: FeedKind) -> Self {
        Self { name: name.into(), kind }
    }
}
