//! What a quote feed does with each decoded message, shared by the WebSocket
//! and SSE connectors: symbol filtering, ping round-trips, and remembering a
//! server error so that the close after it is understood.

use std::time::{Duration, Instant};

use super::quote::{DecodeError, Decoded, ErrorKind};
use super::supervisor::Retry;
use super::FeedMsgKind;

/// After a server-side failure frame (`KAFKA_PRODUCER_NOT_STARTED`, …) and
/// the close that follows, wait at least this long: the server will not be
/// better in a second.
pub const SERVER_ERROR_WAIT: Duration = Duration::from_secs(15);

/// Per-connection state of a quote feed.
#[derive(Debug, Default)]
pub struct QuoteSession {
    /// Upper-cased symbols to keep; empty keeps all.
    symbols: Vec<String>,
    /// When our outstanding application-level ping was sent.
    ping_sent: Option<Instant>,
    /// The last error the server reported on this connection.
    server_error: Option<(ErrorKind, String)>,
}

impl QuoteSession {
    pub fn new(symbols: &[String]) -> Self {
        Self { symbols: symbols.iter().map(|s| s.to_uppercase()).collect(), ..Self::default() }
    }

    /// Notes that a ping went out (the first unanswered one counts).
    pub fn ping_sent(&mut self, at: Instant) {
        self.ping_sent.get_or_insert(at);
    }

    /// The message for the core loop.
    pub fn on_decoded(&mut self, decoded: Result<Decoded, DecodeError>) -> FeedMsgKind {
        match decoded {
            Err(e) => FeedMsgKind::Malformed { reason: e.to_string() },
            Ok(Decoded::Quotes(mut quotes)) => {
                if !self.symbols.is_empty() {
                    quotes.retain(|q| self.symbols.contains(&q.symbol.to_uppercase()));
                }
                if quotes.is_empty() {
                    FeedMsgKind::Bytes
                } else {
                    FeedMsgKind::Quotes(quotes)
                }
            }
            Ok(Decoded::Pong) => match self.ping_sent.take() {
                Some(sent) => FeedMsgKind::Rtt(sent.elapsed()),
                None => FeedMsgKind::Bytes,
            },
            Ok(Decoded::Connected { detail }) => FeedMsgKind::Notice(format!("connected {detail}").trim().to_string()),
            Ok(Decoded::Subscribed { ok: true, detail }) => {
                FeedMsgKind::Notice(format!("subscribed {detail}").trim().to_string())
            }
            Ok(Decoded::Subscribed { ok: false, detail }) => {
                FeedMsgKind::Error(format!("subscription refused: {detail}"))
            }
            Ok(Decoded::Heartbeat | Decoded::Ignored) => FeedMsgKind::Bytes,
            Ok(Decoded::ServerError { code, message, kind }) => {
                let text = format!("server error {code}: {message}");
                self.server_error = Some((kind, text.clone()));
                FeedMsgKind::Error(text)
            }
        }
    }

    /// How to describe the end of the connection and how long to wait: an
    /// error frame followed by a close is the real reason for the close.
    pub fn ending(&self, end: String) -> (String, Retry) {
        match &self.server_error {
            Some((ErrorKind::Auth, text)) => (format!("{text}; then {end}: check the token"), Retry::Auth),
            Some((ErrorKind::Server, text)) => (format!("{text}; then {end}"), Retry::AtLeast(SERVER_ERROR_WAIT)),
            // The code stays in the error: it is the only clue to the close.
            Some((ErrorKind::Request, text)) => (format!("{text}; then {end}"), Retry::Backoff),
            None => (end, Retry::Backoff),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::Quote;

    #[test]
    fn symbols_filter_is_case_insensitive() {
        let mut s = QuoteSession::new(&["pkn".to_string()]);
        let kind = s.on_decoded(Ok(Decoded::Quotes(vec![Quote::new("PKN", 1.0), Quote::new("KGHM", 2.0)])));
        let FeedMsgKind::Quotes(q) = kind else { panic!("{kind:?}") };
        assert_eq!(q.len(), 1);
        assert!(matches!(s.on_decoded(Ok(Decoded::Quotes(vec![Quote::new("CDR", 1.0)]))), FeedMsgKind::Bytes));
    }

    #[test]
    fn pong_gives_a_round_trip_once() {
        let mut s = QuoteSession::new(&[]);
        assert!(matches!(s.on_decoded(Ok(Decoded::Pong)), FeedMsgKind::Bytes), "no ping outstanding");
        s.ping_sent(Instant::now());
        assert!(matches!(s.on_decoded(Ok(Decoded::Pong)), FeedMsgKind::Rtt(_)));
        assert!(matches!(s.on_decoded(Ok(Decoded::Pong)), FeedMsgKind::Bytes));
    }

    #[test]
    fn error_then_close_decides_the_wait() {
        let mut s = QuoteSession::new(&[]);
        assert_eq!(s.ending("closed".into()).1, Retry::Backoff);
        s.on_decoded(Ok(Decoded::ServerError {
            code: "KAFKA_PRODUCER_NOT_STARTED".into(),
            message: "Producer not started".into(),
            kind: ErrorKind::Server,
        }));
        let (text, retry) = s.ending("closed (1000)".into());
        assert_eq!(retry, Retry::AtLeast(SERVER_ERROR_WAIT));
        assert!(text.contains("KAFKA_PRODUCER_NOT_STARTED"), "{text}");
        s.on_decoded(Ok(Decoded::ServerError {
            code: "INVALID_TOKEN".into(),
            message: "x".into(),
            kind: ErrorKind::Auth,
        }));
        assert_eq!(s.ending("closed".into()).1, Retry::Auth);
    }

    #[test]
    fn an_auth_service_failure_then_close_waits_and_keeps_its_code() {
        for code in ["AUTH_ERROR", "AUTH_SERVICE_TIMEOUT"] {
            let mut s = QuoteSession::new(&[]);
            let kind = crate::feeds::decode::carbon::error_kind(code);
            s.on_decoded(Ok(Decoded::ServerError { code: code.into(), message: "auth down".into(), kind }));
            let (text, retry) = s.ending("closed by the server (code 1000)".into());
            assert_eq!(retry, Retry::AtLeast(SERVER_ERROR_WAIT), "{code}");
            assert!(text.contains(code), "{text}");
        }
        // Any other error before a close is named too.
        let mut s = QuoteSession::new(&[]);
        let kind = ErrorKind::Request;
        s.on_decoded(Ok(Decoded::ServerError { code: "INVALID_FORMAT".into(), message: "x".into(), kind }));
        assert!(s.ending("closed".into()).0.contains("INVALID_FORMAT"));
    }

    #[test]
    fn refused_subscription_is_an_error_and_garbage_is_malformed() {
        let mut s = QuoteSession::new(&[]);
        let k = s.on_decoded(Ok(Decoded::Subscribed { ok: false, detail: "x: INVALID_TOPIC_FORMAT".into() }));
        assert!(matches!(k, FeedMsgKind::Error(e) if e.contains("INVALID_TOPIC_FORMAT")));
        assert!(matches!(s.on_decoded(Err(DecodeError::NotObject)), FeedMsgKind::Malformed { .. }));
    }
}
