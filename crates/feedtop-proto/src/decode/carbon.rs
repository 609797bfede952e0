//! Dialect `carbon`: the FastAPI access layer in front of Kafka
//! (docs/protocols.md §3.3).
//!
//! The real server breaks its own docs: data frames have no `type`, control
//! replies use `action`, errors are a bare `{"error":…}`. Frames are therefore
//! dispatched on `type`, then `action`, then `error`, then "has `topic` and
//! `data`". The HTTP error body of a refused request
//! (`{"detail":{"error":…,"message":…}}`) decodes as a server error too.
//!
//! A data frame's `timestamp` is epoch ms when Kafka supplied one and the
//! server's monotonic ms otherwise; below 10^12 it is not a time.

use serde_json::{Map, Value};

use super::{echo, epoch_ms, iso_time, num, parse_object, quote_with_fields, string};
use crate::quote::{DecodeError, Decoded, ErrorKind, Quote, QuoteTime};

/// Decodes one server → client text frame (or an SSE event's JSON data).
pub fn decode(text: &str) -> Result<Decoded, DecodeError> {
    decode_object(&parse_object(text)?)
}

/// Decodes an already parsed frame.
pub(crate) fn decode_object(frame: &Map<String, Value>) -> Result<Decoded, DecodeError> {
    if let Some(kind) = frame.get("type") {
        let Some(kind) = kind.as_str() else {
            return Err(DecodeError::BadField("\"type\" is not a string".into()));
        };
        return match kind {
            "data" => data_frame(frame),
            "connection_established" => Ok(connected(frame)),
            "error" => Ok(server_error(frame)),
            "pong" => Ok(Decoded::Pong),
            "subscription_confirmed" => Ok(Decoded::Subscribed { ok: true, detail: "subscribed".to_owned() }),
            "subscribe_response" => Ok(subscribe_response(frame)),
            // The SSE stream's liveness frame.
            "heartbeat" => Ok(Decoded::Heartbeat),
            other => Err(DecodeError::UnknownType(echo(other))),
        };
    }
    if let Some(action) = frame.get("action") {
        let Some(action) = action.as_str() else {
            return Err(DecodeError::BadField("\"action\" is not a string".into()));
        };
        return match action {
            "pong" => Ok(Decoded::Pong),
            "subscribe_response" => Ok(subscribe_response(frame)),
            "topics_list" | "stats_response" | "unsubscribe_response" => Ok(Decoded::Ignored),
            other => Err(DecodeError::UnknownType(echo(other))),
        };
    }
    if frame.contains_key("error") {
        return Ok(server_error(frame));
    }
    if frame.contains_key("topic") && frame.contains_key("data") {
        return data_frame(frame);
    }
    // FastAPI's HTTP error body: `{"detail":{"error":CODE,"message":…}}`.
    if let Some(Value::Object(detail)) = frame.get("detail") {
        if detail.contains_key("error") {
            return Ok(server_error(detail));
        }
    }
    Err(DecodeError::BadField("no \"type\", \"action\", \"error\" or \"topic\" and \"data\"".into()))
}

/// `{"action":"subscribe","data":{"topics":[…],"filters":{…}}}`; no
/// `filters` key when `None`.
pub fn subscribe(topics: &[String], filters: Option<&Map<String, Value>>) -> String {
    // Written by hand to keep the documented key order (serde_json's map sorts).
    let topics = Value::from(topics.to_vec());
    match filters {
        Some(filters) => {
            let filters = Value::Object(filters.clone());
            format!(r#"{{"action":"subscribe","data":{{"topics":{topics},"filters":{filters}}}}}"#)
        }
        None => format!(r#"{{"action":"subscribe","data":{{"topics":{topics}}}}}"#),
    }
}

/// `{"action":"ping","data":{}}`; the server drops a client that does not
/// send one for 30 s.
pub fn ping() -> String {
    r#"{"action":"ping","data":{}}"#.to_owned()
}

/// How to react to an error code.
pub fn error_kind(code: &str) -> ErrorKind {
    const AUTH: [&str; 5] = ["INVALID_TOKEN", "MISSING_TOKEN", "TOKEN_EXPIRED", "UNAUTHORIZED", "FORBIDDEN"];
    const SERVER: [&str; 3] = ["AUTH_SERVICE_ERROR", "INTERNAL_ERROR", "SERVICE_UNAVAILABLE"];
    let code = code.trim().to_ascii_uppercase();
    if AUTH.contains(&code.as_str()) {
        ErrorKind::Auth
    } else if code.starts_with("KAFKA_") || code.starts_with("AUTH_") || SERVER.contains(&code.as_str()) {
        // AUTH_ERROR, AUTH_SERVICE_TIMEOUT, …: the server's auth service
        // failed, not our token; waiting is what helps.
        ErrorKind::Server
    } else {
        ErrorKind::Request
    }
}

fn connected(frame: &Map<String, Value>) -> Decoded {
    Decoded::Connected { detail: string(frame.get("connection_id")).unwrap_or_default() }
}

/// `{"error":CODE,"message":…}`, with or without `"type":"error"`.
pub(crate) fn server_error(frame: &Map<String, Value>) -> Decoded {
    let code = match frame.get("error") {
        Some(Value::String(code)) => code.clone(),
        Some(Value::Null) | None => "error".to_owned(),
        Some(other) => echo(&other.to_string()),
    };
    let message = string(frame.get("message")).unwrap_or_default();
    let kind = error_kind(&code);
    Decoded::ServerError { code, message, kind }
}

/// `ok` only when the server says `success` and refused no topic.
fn subscribe_response(frame: &Map<String, Value>) -> Decoded {
    let success = frame.get("success").and_then(Value::as_bool).unwrap_or(false);
    let list = |key: &str| frame.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let subscribed: Vec<String> = list("subscribed_topics").iter().map(plain).collect();
    let failed: Vec<String> = list("failed_topics")
        .iter()
        .map(|f| match f.get("error") {
            Some(err) => format!("{} ({})", plain(f.get("topic").unwrap_or(&Value::Null)), plain(err)),
            None => plain(f.get("topic").unwrap_or(f)),
        })
        .collect();
    let mut detail = if subscribed.is_empty() {
        "subscribed to none".to_owned()
    } else {
        format!("subscribed {}", subscribed.join(", "))
    };
    if !failed.is_empty() {
        detail.push_str("; failed ");
        detail.push_str(&failed.join(", "));
    }
    if !success && failed.is_empty() {
        detail.push_str("; not successful");
    }
    Decoded::Subscribed { ok: success && failed.is_empty(), detail }
}

/// A JSON value as text: strings without quotes.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => echo(s),
        other => echo(&other.to_string()),
    }
}

/// `{"topic":…,"data":{…},"timestamp":ms,…}`. `data` is one quote, or a list
/// of them (bad items skipped).
fn data_frame(frame: &Map<String, Value>) -> Result<Decoded, DecodeError> {
    let frame_time = frame.get("timestamp").and_then(frame_time);
    match frame.get("data") {
        Some(Value::Object(data)) => quote(data, frame_time).map(|q| Decoded::Quotes(vec![q])).ok_or_else(|| {
            DecodeError::BadField("data frame without \"instrument_id\" and a numeric \"price\"".into())
        }),
        Some(Value::Array(items)) => {
            let quotes: Vec<Quote> =
                items.iter().filter_map(|item| item.as_object().and_then(|d| quote(d, frame_time))).collect();
            if quotes.is_empty() && !items.is_empty() {
                return Err(DecodeError::BadField("no item has \"instrument_id\" and a numeric \"price\"".into()));
            }
            Ok(Decoded::Quotes(quotes))
        }
        _ => Err(DecodeError::BadField("\"data\" is not an object".into())),
    }
}

/// The frame's `timestamp`: epoch ms (≥ 10^12) or an ISO string. A smaller
/// number is the server's monotonic clock: no time.
fn frame_time(v: &Value) -> Option<QuoteTime> {
    match v {
        Value::String(s) => iso_time(s),
        other => epoch_ms(other).map(QuoteTime::Absolute),
    }
}

/// One quote out of a data object. `as_of` is deliberately not a time: it
/// is the instrument's reference date, not when the price was stamped.
fn quote(data: &Map<String, Value>, frame_time: Option<QuoteTime>) -> Option<Quote> {
    let symbol = ["instrument_id", "symbol"]
        .iter()
        .find_map(|k| data.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))?;
    let price = num(data.get("price"))?;
    let time = frame_time.or_else(|| data.get("timestamp").and_then(Value::as_str).and_then(iso_time));
    Some(quote_with_fields(data, symbol, price, time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::capture_lines;
    use chrono::DateTime;

    const CAPTURE: &str = include_str!("../../../../tests/fixtures/captured-carbon.txt");

    fn err(code: &str, kind: ErrorKind) -> impl Fn(&Decoded) -> bool + '_ {
        move |d| matches!(d, Decoded::ServerError { code: c, kind: k, .. } if c == code && *k == kind)
    }

    /// The 10 synthetic records in the harness group: seq → (price, frame timestamp).
    fn check_data_frame(label: &str, payload: &str, got: &Decoded) {
        let Decoded::Quotes(quotes) = got else { panic!("{label}: {got:?}") };
        assert_eq!(quotes.len(), 1, "{label}");
        let q = &quotes[0];
        let raw: Value = serde_json::from_str(payload).unwrap();
        let seq = raw["data"]["seq"].as_f64().unwrap();
        let ts = raw["timestamp"].as_i64().unwrap();
        assert_eq!(q.symbol, "TEST.PWR.1");
        assert_eq!(q.price, 42.5 + seq, "{label}");
        assert_eq!(q.currency.as_deref(), Some("USD"));
        assert_eq!((q.volume, q.change, q.market_status.as_ref()), (None, None, None));
        if ts < 1_000_000_000_000 {
            assert_eq!(q.time, None, "{label}: monotonic {ts} must not be a time (nor as_of)");
        } else {
            assert_eq!(q.time, Some(QuoteTime::Absolute(DateTime::from_timestamp_millis(ts).unwrap())), "{label}");
        }
    }

    #[test]
    fn every_captured_server_frame_decodes() {
        let mut checked = 0;
        let (mut monotonic, mut absolute) = (0, 0);
        for (dir, label, payload) in capture_lines(CAPTURE) {
            if dir != "<-" || !payload.starts_with('{') {
                continue;
            }
            let got = decode(payload).unwrap_or_else(|e| panic!("{label}: {e}"));
            let ok: bool = match label {
                "shipped/sse-missing-token-body" | "shipped/ws-missing-token-connect" => {
                    err("MISSING_TOKEN", ErrorKind::Auth)(&got)
                }
                "shipped/sse-bad-token-body" | "shipped/ws-bad-token-connect" => {
                    err("INVALID_TOKEN", ErrorKind::Auth)(&got)
                }
                "shipped/ws-ok-connect" if payload.contains("connection_established") => {
                    got == Decoded::Connected { detail: "0e07584b-8a15-4df9-b494-e870b5ef99b9".into() }
                }
                "shipped/ws-ok-connect" => {
                    got == Decoded::ServerError {
                        code: "KAFKA_PRODUCER_NOT_STARTED".into(),
                        message: "Producer not started".into(),
                        kind: ErrorKind::Server,
                    }
                }
                "authdown/ws-auth-down-connect" | "authdown/sse-auth-down-body" => {
                    err("AUTH_SERVICE_ERROR", ErrorKind::Server)(&got)
                }
                "harness/ws-connect" => {
                    got == Decoded::Connected { detail: "dc21bfe0-f0c5-4869-9e5c-64fb669dea4e".into() }
                }
                "harness/ws-subscribe" | "harness/ws-resubscribe" => matches!(&got,
                    Decoded::Subscribed { ok: true, detail } if detail.contains("served.market.latest_prices.v1")),
                "harness/ws-subscribe-listed-topic" => matches!(&got,
                    Decoded::Subscribed { ok: false, detail }
                        if detail.contains("254carbon.market.data.v1 (INVALID_TOPIC_FORMAT)")),
                "harness/ws-ping" => got == Decoded::Pong,
                "harness/ws-ping-docs-style" | "harness/ws-json-array" => {
                    err("INVALID_FORMAT", ErrorKind::Request)(&got)
                }
                "harness/ws-unknown-action" => {
                    got == Decoded::ServerError {
                        code: "UNKNOWN_ACTION".into(),
                        message: "Unknown action: hello".into(),
                        kind: ErrorKind::Request,
                    }
                }
                "harness/ws-invalid-json" => err("INVALID_JSON", ErrorKind::Request)(&got),
                "harness/ws-subscribe-topics-not-list" => err("INVALID_TOPICS", ErrorKind::Request)(&got),
                "harness/ws-subscribe-no-topics" => err("MISSING_TOPICS", ErrorKind::Request)(&got),
                "harness/ws-list_topics" | "harness/ws-get_stats" | "harness/ws-unsubscribe" => got == Decoded::Ignored,
                "harness/ws-binary-frame" => err("INTERNAL_ERROR", ErrorKind::Server)(&got),
                _ if label.starts_with("harness/ws-data@") => {
                    check_data_frame(label, payload, &got);
                    if payload.contains("\"timestamp\": 17954") {
                        absolute += 1;
                    } else {
                        monotonic += 1;
                    }
                    true
                }
                _ => panic!("no expectation for {label}: {payload}"),
            };
            assert!(ok, "{label}: {payload}\n  decoded as {got:?}");
            checked += 1;
        }
        assert_eq!((monotonic, absolute), (6, 5));
        assert_eq!(checked, 34);
    }

    #[test]
    fn the_health_body_is_not_a_frame() {
        let line = CAPTURE.lines().find(|l| l.contains("shipped/http-health")).unwrap();
        let body = &line[line.find('{').unwrap()..];
        assert!(matches!(decode(body), Err(DecodeError::BadField(_))));
    }

    #[test]
    fn captured_client_frames_match_our_builders() {
        let topics = vec!["served.market.latest_prices.v1".to_owned()];
        let mut seen = 0;
        for (dir, label, payload) in capture_lines(CAPTURE) {
            if dir != "->" {
                continue;
            }
            let payload = payload.trim_start_matches("(not sent: server already closed) ");
            let json = |s: &str| serde_json::from_str::<Value>(s).unwrap();
            match label {
                "shipped/ws-ok-ping" | "harness/ws-ping" => assert_eq!(json(payload), json(&ping())),
                "shipped/ws-missing-token-subscribe"
                | "shipped/ws-bad-token-subscribe"
                | "shipped/ws-ok-subscribe"
                | "harness/ws-subscribe"
                | "harness/ws-resubscribe" => assert_eq!(json(payload), json(&subscribe(&topics, None))),
                _ => continue,
            }
            seen += 1;
        }
        assert_eq!(seen, 7);
    }

    #[test]
    fn builders() {
        assert_eq!(ping(), r#"{"action":"ping","data":{}}"#);
        let topics = vec!["served.market.latest_prices.v1".to_owned(), "a\"b".to_owned()];
        assert_eq!(
            subscribe(&topics, None),
            r#"{"action":"subscribe","data":{"topics":["served.market.latest_prices.v1","a\"b"]}}"#
        );
        let mut filters = Map::new();
        filters.insert("commodity".into(), "oil".into());
        assert_eq!(
            subscribe(&topics[..1], Some(&filters)),
            r#"{"action":"subscribe","data":{"topics":["served.market.latest_prices.v1"],"filters":{"commodity":"oil"}}}"#
        );
        assert_eq!(subscribe(&[], Some(&Map::new())), r#"{"action":"subscribe","data":{"topics":[],"filters":{}}}"#);
    }

    #[test]
    fn error_kinds() {
        for code in ["INVALID_TOKEN", "MISSING_TOKEN", "TOKEN_EXPIRED", "UNAUTHORIZED", "FORBIDDEN", "invalid_token"] {
            assert_eq!(error_kind(code), ErrorKind::Auth, "{code}");
        }
        for code in [
            "KAFKA_PRODUCER_NOT_STARTED",
            "KAFKA_ANYTHING",
            "AUTH_SERVICE_ERROR",
            "AUTH_ERROR",
            "AUTH_SERVICE_TIMEOUT",
            "INTERNAL_ERROR",
            "SERVICE_UNAVAILABLE",
        ] {
            assert_eq!(error_kind(code), ErrorKind::Server, "{code}");
        }
        for code in [
            "INVALID_FORMAT",
            "UNKNOWN_ACTION",
            "INVALID_JSON",
            "SUBSCRIPTION_DENIED",
            "INVALID_TOPICS",
            "MISSING_TOPICS",
            "INVALID_TOPIC_FORMAT",
            "error",
            "",
            "KAFKA",
        ] {
            assert_eq!(error_kind(code), ErrorKind::Request, "{code}");
        }
    }

    #[test]
    fn documented_frames_decode() {
        let data = r#"{"type":"data","topic":"pricing.updates","data":{"instrument_id":"BRENT_CRUDE","price":75.5,"volume":1000,"timestamp":"2024-01-15T10:30:00Z"},"timestamp":1705312200000,"partition":0,"offset":12345}"#;
        let t = DateTime::from_timestamp_millis(1_705_312_200_000).unwrap();
        assert_eq!(
            decode(data),
            Ok(Decoded::Quotes(vec![Quote {
                volume: Some(1000.0),
                time: Some(QuoteTime::Absolute(t)),
                ..Quote::new("BRENT_CRUDE", 75.5)
            }]))
        );
        // The same without `type`, as the real server sends it.
        let real = r#"{"topic":"served.market.latest_prices.v1","data":{"instrument_id":"BRENT_CRUDE","price":75.5},"timestamp":1705312200000,"partition":0,"offset":12345}"#;
        let Ok(Decoded::Quotes(q)) = decode(real) else { panic!() };
        assert_eq!((q[0].symbol.as_str(), q[0].price, q[0].time), ("BRENT_CRUDE", 75.5, Some(QuoteTime::Absolute(t))));

        let denied = r#"{"type":"error","error":"SUBSCRIPTION_DENIED","message":"Insufficient permissions for topic pricing.updates","details":{"topic":"pricing.updates"}}"#;
        assert_eq!(
            decode(denied),
            Ok(Decoded::ServerError {
                code: "SUBSCRIPTION_DENIED".into(),
                message: "Insufficient permissions for topic pricing.updates".into(),
                kind: ErrorKind::Request,
            })
        );
        assert_eq!(decode(r#"{"type":"pong"}"#), Ok(Decoded::Pong));
        assert!(matches!(decode(r#"{"type":"subscription_confirmed"}"#), Ok(Decoded::Subscribed { ok: true, .. })));
        let conn = r#"{"type":"connection_established","connection_id":"conn-12345","user_id":"user-123","tenant_id":"tenant-1"}"#;
        assert_eq!(decode(conn), Ok(Decoded::Connected { detail: "conn-12345".into() }));
        assert_eq!(decode(r#"{"action":"pong","timestamp":8812345}"#), Ok(Decoded::Pong));
        let partial = r#"{"action":"subscribe_response","subscribed_topics":["served.market.latest_prices.v1"],"failed_topics":[{"topic":"x","error":"INVALID_TOPIC_FORMAT"}],"success":true}"#;
        assert_eq!(
            decode(partial),
            Ok(Decoded::Subscribed {
                ok: false,
                detail: "subscribed served.market.latest_prices.v1; failed x (INVALID_TOPIC_FORMAT)".into()
            })
        );
        let unknown = r#"{"error":"UNKNOWN_ACTION","message":"Unknown action: X","available_actions":["subscribe","unsubscribe","ping","list_topics","get_stats"]}"#;
        assert!(err("UNKNOWN_ACTION", ErrorKind::Request)(&decode(unknown).unwrap()));
    }

    #[test]
    fn data_frame_times() {
        let frame = |ts: &str, data_ts: &str| {
            let text = format!(
                r#"{{"topic":"t","data":{{"instrument_id":"X","price":1,"as_of":"2025-01-01T00:00:00Z"{data_ts}}}{ts}}}"#
            );
            match decode(&text) {
                Ok(Decoded::Quotes(q)) => q[0].time,
                other => panic!("{text}: {other:?}"),
            }
        };
        let iso = DateTime::from_timestamp_millis(1_705_314_600_000).unwrap(); // 2024-01-15T10:30:00Z
        let epoch = DateTime::from_timestamp_millis(1_795_483_170_571).unwrap();
        assert_eq!(frame(r#","timestamp":976782"#, ""), None);
        assert_eq!(frame("", ""), None);
        assert_eq!(frame(r#","timestamp":1795483170571"#, ""), Some(QuoteTime::Absolute(epoch)));
        // The data's own ISO time when the frame's is monotonic or missing.
        let data_ts = r#","timestamp":"2024-01-15T10:30:00Z""#;
        assert_eq!(frame(r#","timestamp":976782"#, data_ts), Some(QuoteTime::Absolute(iso)));
        assert_eq!(frame("", data_ts), Some(QuoteTime::Absolute(iso)));
        assert_eq!(frame(r#","timestamp":1795483170571"#, data_ts), Some(QuoteTime::Absolute(epoch)));
        // A numeric data timestamp is not trusted (it could be monotonic too).
        assert_eq!(frame(r#","timestamp":976782"#, r#","timestamp":1795483170571"#), None);
        assert_eq!(frame(r#","timestamp":"2024-01-15T10:30:00Z""#, ""), Some(QuoteTime::Absolute(iso)));
        assert_eq!(frame(r#","timestamp":null"#, ""), None);
        assert_eq!(frame(r#","timestamp":-1795483170571"#, ""), None);
        assert_eq!(frame(r#","timestamp":99999999999999999999999"#, ""), None);
    }

    #[test]
    fn dispatch_order_and_bad_frames() {
        // `type` wins over everything else.
        assert_eq!(decode(r#"{"type":"pong","error":"X","topic":"t","data":{}}"#), Ok(Decoded::Pong));
        // `action` wins over `error` and `topic`/`data`.
        assert_eq!(decode(r#"{"action":"topics_list","error":"X"}"#), Ok(Decoded::Ignored));
        assert_eq!(decode(r#"{"action":"stats_response"}"#), Ok(Decoded::Ignored));
        assert_eq!(decode(r#"{"action":"unsubscribe_response","success":true}"#), Ok(Decoded::Ignored));
        // `error` wins over `topic`/`data`.
        assert!(matches!(decode(r#"{"error":"X","topic":"t","data":{}}"#), Ok(Decoded::ServerError { .. })));
        assert_eq!(decode(r#"{"type":"hello"}"#), Err(DecodeError::UnknownType("hello".into())));
        assert_eq!(decode(r#"{"action":"hello"}"#), Err(DecodeError::UnknownType("hello".into())));
        assert!(matches!(decode(r#"{"type":1}"#), Err(DecodeError::BadField(_))));
        assert!(matches!(decode(r#"{"action":{}}"#), Err(DecodeError::BadField(_))));
        assert!(matches!(decode(r#"{"topic":"t"}"#), Err(DecodeError::BadField(_))));
        assert!(matches!(decode(r#"{"data":{"instrument_id":"X","price":1}}"#), Err(DecodeError::BadField(_))));
        assert!(matches!(decode(r#"{"topic":"t","data":"x"}"#), Err(DecodeError::BadField(_))));
        assert!(matches!(decode(r#"{"topic":"t","data":{"price":1}}"#), Err(DecodeError::BadField(_))));
        assert!(matches!(decode(r#"{"topic":"t","data":{"instrument_id":"X"}}"#), Err(DecodeError::BadField(_))));
        assert!(matches!(
            decode(r#"{"topic":"t","data":{"instrument_id":"X","price":"1"}}"#),
            Err(DecodeError::BadField(_))
        ));
        assert!(matches!(decode(r#"{"detail":"Not Found"}"#), Err(DecodeError::BadField(_))));
        assert_eq!(decode("[1,2,3]"), Err(DecodeError::NotObject));
        assert!(matches!(decode(""), Err(DecodeError::NotJson(_))));
        // A list of quotes: bad items skipped.
        let list =
            r#"{"topic":"t","data":[{"instrument_id":"A","price":1},{"instrument_id":"B"},{"symbol":"C","price":3}]}"#;
        let Ok(Decoded::Quotes(q)) = decode(list) else { panic!() };
        assert_eq!(q.iter().map(|q| q.symbol.as_str()).collect::<Vec<_>>(), ["A", "C"]);
        assert!(matches!(decode(r#"{"topic":"t","data":[{"price":1}]}"#), Err(DecodeError::BadField(_))));
        // Odd error shapes still give a code.
        assert_eq!(
            decode(r#"{"error":{"code":5}}"#),
            Ok(Decoded::ServerError { code: r#"{"code":5}"#.into(), message: String::new(), kind: ErrorKind::Request })
        );
        assert!(err("error", ErrorKind::Request)(&decode(r#"{"type":"error"}"#).unwrap()));
        assert_eq!(
            decode(r#"{"action":"subscribe_response","success":false}"#),
            Ok(Decoded::Subscribed { ok: false, detail: "subscribed to none; not successful".into() })
        );
        assert_eq!(decode(r#"{"type":"heartbeat","timestamp":933520}"#), Ok(Decoded::Heartbeat));
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(matches!(decode(&deep), Err(DecodeError::NotJson(_))));
        let deep_data = format!(r#"{{"topic":"t","data":{}{}}}"#, r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
        assert!(matches!(decode(&deep_data), Err(DecodeError::NotJson(_))));
        let big = format!("\"{}\"", "x".repeat(10 << 20));
        assert_eq!(decode(&big), Err(DecodeError::NotObject));
        let big_error = format!(r#"{{"error":"{}"}}"#, "E".repeat(10 << 20));
        assert!(matches!(decode(&big_error), Ok(Decoded::ServerError { kind: ErrorKind::Request, .. })));
        assert!(decode(r#"{"topic":"t","data":{"instrument_id":"X","price":1e400}}"#).is_err());
        assert!(decode(r#"{"topic":"t","data":{"instrument_id":"X","price":-1e400}}"#).is_err());
        assert!(decode("\u{0}\u{1}\u{fffd}\u{7f}\u{1b}[2J").is_err());
        assert_eq!(decode("[1,2,3]"), Err(DecodeError::NotObject));
        assert!(decode("").is_err());
    }
}
