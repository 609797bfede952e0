//! What the quote feeds (WebSocket and SSE) decode into.
//!
//! Each dialect is a small decoder `fn(&str) -> Result<Decoded, DecodeError>`;
//! the connection tasks only move frames and react to [`Decoded`].

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};

/// When a quote was stamped by its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "at", rename_all = "snake_case")]
pub enum QuoteTime {
    /// Epoch or zoned: latency from it is real (up to clock skew).
    Absolute(DateTime<Utc>),
    /// A naive timestamp in the *server's* local time (the wig80 server's
    /// `datetime.now().isoformat()`): read in our local zone, so any latency
    /// from it is an estimate.
    Naive(NaiveDateTime),
    /// A zone-less exchange time turned into an instant by that exchange's
    /// zone rules (stooq: Warsaw, DST included). The instant is right when
    /// the zone is, but the source rounds to the second, may delay its data
    /// and never says which zone it meant: latency from it is an estimate.
    Estimated(DateTime<Utc>),
}

impl QuoteTime {
    /// The instant this stands for; a naive time is taken as our local time.
    pub fn as_utc(self) -> Option<DateTime<Utc>> {
        match self {
            QuoteTime::Absolute(t) | QuoteTime::Estimated(t) => Some(t),
            QuoteTime::Naive(t) => Local.from_local_datetime(&t).earliest().map(|t| t.with_timezone(&Utc)),
        }
    }

    pub fn is_estimate(self) -> bool {
        matches!(self, QuoteTime::Naive(_) | QuoteTime::Estimated(_))
    }
}

/// One price update for one symbol or instrument.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Quote {
    pub symbol: String,
    pub price: f64,
    pub change: Option<f64>,
    pub change_percent: Option<f64>,
    pub volume: Option<f64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub open: Option<f64>,
    /// `pre_market | open | after_hours | closed | weekend | holiday` (wig80).
    pub market_status: Option<String>,
    pub currency: Option<String>,
    pub time: Option<QuoteTime>,
}

impl Quote {
    pub fn new(symbol: impl Into<String>, price: f64) -> Self {
        Self {
            symbol: symbol.into(),
            price,
            change: None,
            change_percent: None,
            volume: None,
            high: None,
            low: None,
            open: None,
            market_status: None,
            currency: None,
            time: None,
        }
    }
}

/// How bad a server-reported error is, which decides the reaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Our token or key was refused (`INVALID_TOKEN`, `MISSING_TOKEN`, …):
    /// show it and back off long; retrying soon cannot help.
    Auth,
    /// The server cannot serve right now (`KAFKA_PRODUCER_NOT_STARTED`,
    /// `AUTH_SERVICE_ERROR`, `INTERNAL_ERROR`): back off.
    Server,
    /// The server did not like one of our requests (`INVALID_FORMAT`,
    /// `UNKNOWN_ACTION`, `SUBSCRIPTION_DENIED`, …): show it, keep going.
    Request,
}

/// What one WebSocket text frame or one SSE event meant.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Quotes(Vec<Quote>),
    /// The session is up (`connection`, `connection_established`).
    Connected {
        detail: String,
    },
    /// The answer to a subscribe: `ok` false when some topics were refused.
    Subscribed {
        ok: bool,
        detail: String,
    },
    /// The answer to our application-level ping.
    Pong,
    /// Liveness only (SSE heartbeat, wig80 `status`).
    Heartbeat,
    /// An error reported by the server.
    ServerError {
        code: String,
        message: String,
        kind: ErrorKind,
    },
    /// Understood and of no interest (topic lists, stats).
    Ignored,
}

/// Why a frame could not be decoded. Counted as malformed, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a JSON object")]
    NotObject,
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("bad field: {0}")]
    BadField(String),
}

/// The body format of a polled feed (`kind = "poll"`, `format = …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PollFormat {
    /// stooq's light-quote CSV (`decode::stooq`).
    Stooq,
}

/// The protocol dialect of a WebSocket feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Wig80,
    Carbon,
}
