//! Decoders for the quote feeds: one text frame (or SSE event) in, one
//! [`Decoded`] out.
//!
//! - [`wig80`]: the Python `websockets` server (`type`-tagged frames, naive
//!   local timestamps).
//! - [`carbon`]: the FastAPI/Kafka access layer, whose real frames often lack
//!   the `type` its docs promise.
//! - [`sse`]: an incremental Server-Sent Events parser (WHATWG rules) for the
//!   access layer's `/sse/stream`, whose event data is carbon JSON.
//! - [`sse_subscribe`]: the documented `/sse/subscribe` flow (connection id,
//!   form body, answer).
//! - [`stooq`]: the light-quote CSV of a polled feed: a whole response body
//!   in, a snapshot of quotes and no-data symbols out.
//!
//! Decoders never panic: anything they cannot understand is a [`DecodeError`],
//! which the connection tasks count as malformed and skip.

pub mod carbon;
pub mod sse;
pub mod sse_subscribe;
pub mod stooq;
pub mod wig80;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use super::quote::{DecodeError, Decoded, Dialect, Quote, QuoteTime};

/// Decodes one WebSocket text frame of the given dialect.
pub fn decode(dialect: Dialect, text: &str) -> Result<Decoded, DecodeError> {
    match dialect {
        Dialect::Wig80 => wig80::decode(text),
        Dialect::Carbon => carbon::decode(text),
    }
}

/// Longest server-supplied string copied into an error value (a hostile
/// `type` could be megabytes long).
const MAX_ECHO_CHARS: usize = 64;

/// Parses a frame that must be one JSON object.
///
/// serde_json stops at 128 levels of nesting with an error, so deep input is
/// an `Err` here rather than a stack overflow.
pub(crate) fn parse_object(text: &str) -> Result<Map<String, Value>, DecodeError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(DecodeError::NotObject),
        Err(e) => Err(DecodeError::NotJson(e.to_string())),
    }
}

/// A short copy of a server-supplied string for error values.
pub(crate) fn echo(s: &str) -> String {
    clip(s, MAX_ECHO_CHARS)
}

/// At most `max` chars of `s`, with `…` when cut.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// A finite number, or `None` (missing, string, null, bool, ±inf).
/// A quote whose optional fields carry the names both dialects use
/// (`change`, `change_percent`, `volume`, `high`, `low`, `open`,
/// `market_status`, `currency`); absent or unusable ones stay `None`.
pub(crate) fn quote_with_fields(obj: &Map<String, Value>, symbol: &str, price: f64, time: Option<QuoteTime>) -> Quote {
    Quote {
        change: num(obj.get("change")),
        change_percent: num(obj.get("change_percent")),
        volume: num(obj.get("volume")),
        high: num(obj.get("high")),
        low: num(obj.get("low")),
        open: num(obj.get("open")),
        market_status: string(obj.get("market_status")),
        currency: string(obj.get("currency")),
        time,
        ..Quote::new(symbol, price)
    }
}

/// `(dir, label, payload)` for each line of a capture file in
/// `tests/fixtures/captured-*` (`<DIR> <LABEL> <PAYLOAD>`).
#[cfg(test)]
pub(crate) fn capture_lines(capture: &str) -> Vec<(&str, &str, &str)> {
    capture
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let dir = parts.next().unwrap();
            let label = parts.next().expect("label");
            (dir, label, parts.next().unwrap_or(""))
        })
        .collect()
}

pub(crate) fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64).filter(|f| f.is_finite())
}

/// A string field, or `None`.
pub(crate) fn string(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// An ISO 8601 time: with `Z` or an offset it is absolute; without a zone it
/// is the server's local wall-clock time (Python's `datetime.isoformat()`).
pub(crate) fn iso_time(s: &str) -> Option<QuoteTime> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(QuoteTime::Absolute(t.with_timezone(&Utc)));
    }
    // `NaiveDateTime`'s parser takes `T` or a space and an optional fraction.
    s.parse::<NaiveDateTime>().ok().map(QuoteTime::Naive)
}

/// Epoch milliseconds below this (before 2001-09-09) are taken to be a
/// monotonic clock, not wall-clock time.
pub(crate) const MIN_EPOCH_MS: i64 = 1_000_000_000_000;

/// Epoch milliseconds (integer or float) at or after [`MIN_EPOCH_MS`].
pub(crate) fn epoch_ms(v: &Value) -> Option<DateTime<Utc>> {
    let ms = match v.as_i64() {
        Some(ms) => ms,
        None => {
            let f = v.as_f64().filter(|f| f.is_finite())?;
            // Anything this far out is not a time chrono can hold anyway.
            if f.abs() >= 1e17 {
                return None;
            }
            f as i64
        }
    };
    if ms < MIN_EPOCH_MS {
        return None;
    }
    DateTime::from_timestamp_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quote::Quote;

    #[test]
    fn decode_dispatches_on_dialect() {
        let wig = r#"{"type": "pong", "timestamp": "2026-11-24T01:16:59.769911"}"#;
        assert_eq!(decode(Dialect::Wig80, wig), Ok(Decoded::Pong));
        // carbon's real pong uses `action`; wig80 has no such frame.
        let carbon = r#"{"action": "pong", "timestamp": 973861}"#;
        assert_eq!(decode(Dialect::Carbon, carbon), Ok(Decoded::Pong));
        assert!(decode(Dialect::Wig80, carbon).is_err());
        let data = r#"{"topic": "t", "data": {"instrument_id": "X", "price": 1.5}, "timestamp": 5}"#;
        assert_eq!(decode(Dialect::Carbon, data), Ok(Decoded::Quotes(vec![Quote::new("X", 1.5)])));
        assert!(decode(Dialect::Wig80, data).is_err());
    }

    #[test]
    fn echo_truncates_on_a_char_boundary() {
        assert_eq!(echo("hello"), "hello");
        let long = "é".repeat(100);
        let short = echo(&long);
        assert_eq!(short.chars().count(), MAX_ECHO_CHARS + 1);
        assert!(short.ends_with('…'));
    }

    #[test]
    fn iso_time_forms() {
        let naive = iso_time("2026-11-24T01:16:56.763228").unwrap();
        assert!(naive.is_estimate());
        assert_eq!(naive, QuoteTime::Naive("2026-11-24T01:16:56.763228".parse().unwrap()));
        // Python drops the fraction when the microseconds are zero.
        assert!(matches!(iso_time("2026-11-24T01:16:56"), Some(QuoteTime::Naive(_))));
        let z = iso_time("2025-11-06T20:23:56.000Z").unwrap();
        assert_eq!(z, QuoteTime::Absolute(DateTime::from_timestamp_millis(1_762_460_636_000).unwrap()));
        let off = iso_time("2025-11-06T21:23:56+01:00").unwrap();
        assert_eq!(off, z);
        assert_eq!(iso_time("yesterday"), None);
        assert_eq!(iso_time(""), None);
    }

    #[test]
    fn epoch_ms_rejects_monotonic_and_absurd_values() {
        let t = epoch_ms(&Value::from(1_795_483_170_571_i64)).unwrap();
        assert_eq!(t.timestamp_millis(), 1_795_483_170_571);
        assert_eq!(epoch_ms(&Value::from(976_782)), None);
        assert_eq!(epoch_ms(&Value::from(MIN_EPOCH_MS - 1)), None);
        assert!(epoch_ms(&Value::from(MIN_EPOCH_MS)).is_some());
        assert_eq!(epoch_ms(&Value::from(-5)), None);
        assert_eq!(epoch_ms(&Value::from(u64::MAX)), None);
        assert_eq!(epoch_ms(&Value::from(1e300)), None);
        assert_eq!(epoch_ms(&Value::from(1_795_483_170_571.9)).map(|t| t.timestamp_millis()), Some(1_795_483_170_571));
        assert_eq!(epoch_ms(&Value::from("1795483170571")), None);
    }

    #[test]
    fn num_only_takes_finite_numbers() {
        assert_eq!(num(Some(&Value::from(2))), Some(2.0));
        assert_eq!(num(Some(&Value::from("2"))), None);
        assert_eq!(num(Some(&Value::Null)), None);
        assert_eq!(num(None), None);
        // Beyond u64: serde_json reads it as a float, which is still a number.
        let big: Value = serde_json::from_str("18446744073709551616").unwrap();
        assert_eq!(num(Some(&big)), Some(18_446_744_073_709_551_616.0));
    }
}
