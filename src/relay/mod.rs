//! Ingest once, watch anywhere: `feedtop relay` publishes every message of
//! its feeds to NATS JetStream, and `feedtop --source nats://…` viewers
//! read them into the same pipeline, model and panes.
//!
//! ```text
//!  feeds ─▶ relay pipeline ─▶ SQLite (events, … and the outbox, one transaction)
//!                │ each message handed over as made    ┆ read only when behind
//!                └──────────▶ publisher: in seq order, acked
//!                                   ▼
//!                         JetStream stream FEEDTOP (feedtop.>)
//!                                   │ ordered consumers, from the last hour
//!                     ┌─────────────┼─────────────┐
//!                  viewer        viewer      strike-offs --source
//! ```
//!
//! - [`subjects`]: where each message goes, and its de-duplication id;
//! - [`nats`]: settings, credentials, connecting;
//! - [`outbox`]: the messages to publish, handed over as made, or from the table;
//! - [`publisher`]: those messages to JetStream, in order, at least once;
//! - [`viewer`]: JetStream to a viewer's pipeline.

pub mod control;
pub mod history;
pub mod nats;
pub mod outbox;
pub mod publisher;
pub mod subjects;
pub mod viewer;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use feedtop_proto::{FeedId, FeedMsg, FeedMsgKind};

pub use nats::{NatsAuth, NatsSettings};
pub use publisher::{Publisher, RelayStatus};
pub use subjects::{OutboxMsg, OutboxRow};
pub use viewer::{Viewer, ViewerCommand, ViewerHandle, ViewerStatus};

/// A link to NATS as the screen shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected,
    Disconnected,
}

impl LinkState {
    /// The state of `client`'s connection now.
    pub fn of(client: &async_nats::Client) -> Self {
        match client.connection_state() {
            async_nats::connection::State::Connected => LinkState::Connected,
            async_nats::connection::State::Pending => LinkState::Connecting,
            async_nats::connection::State::Disconnected => LinkState::Disconnected,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Disconnected => "disconnected",
        }
    }
}

/// What of the pipeline's messages goes to the outbox. Everything, except
/// that "bytes arrived" (a partial line: liveness only) goes at most once a
/// second per feed: a viewer needs to know the feed is alive, not every read.
#[derive(Debug, Default)]
pub struct Outgoing {
    bytes_sent: HashMap<FeedId, DateTime<Utc>>,
}

impl Outgoing {
    pub fn rows(&mut self, msg: &FeedMsg) -> Vec<OutboxRow> {
        if matches!(msg.kind, FeedMsgKind::Bytes) {
            let last = self.bytes_sent.get(&msg.feed);
            if last.is_some_and(|t| msg.at - *t < chrono::TimeDelta::seconds(1)) {
                return Vec::new();
            }
            self.bytes_sent.insert(msg.feed.clone(), msg.at);
        }
        subjects::rows(msg)
    }
}
