//! Dialect `wig80`: the Python `websockets` quote server (docs/protocols.md §2).
//!
//! Every server frame is a JSON object with a `type`. Timestamps are the
//! server's `datetime.now().isoformat()`: naive local time, so latency from
//! them is an estimate ([`QuoteTime::Naive`]); a zoned time (as in its docs) is
//! taken as absolute.

use serde_json::{Map, Value};

use super::{echo, iso_time, num, parse_object, quote_with_fields, string};
use crate::quote::{DecodeError, Decoded, ErrorKind, Quote, QuoteTime};

/// Decodes one server → client text frame.
pub fn decode(text: &str) -> Result<Decoded, DecodeError> {
    let frame = parse_object(text)?;
    let kind = match frame.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(DecodeError::BadField("\"type\" is not a string".into())),
        None => return Err(DecodeError::BadField("no \"type\" field".into())),
    };
    match kind {
        "stock_updates" => stock_updates(&frame),
        "connection" => {
            let detail = string(frame.get("message"))
                .or_else(|| string(frame.get("status")))
                .unwrap_or_else(|| "connected".to_owned());
            Ok(Decoded::Connected { detail })
        }
        "subscription_confirmed" => Ok(Decoded::Subscribed { ok: true, detail: "subscribed".to_owned() }),
        "pong" => Ok(Decoded::Pong),
        "status" => Ok(Decoded::Heartbeat),
        "error" => Ok(Decoded::ServerError {
            code: "error".to_owned(),
            message: string(frame.get("message")).unwrap_or_default(),
            kind: ErrorKind::Request,
        }),
        other => Err(DecodeError::UnknownType(echo(other))),
    }
}

/// `{"type":"subscribe"}`: start the broadcast (the server sends to every
/// socket anyway, but this is what its clients do).
pub fn subscribe() -> String {
    r#"{"type":"subscribe"}"#.to_owned()
}

/// `{"type":"ping"}`: answered with `{"type":"pong",…}`.
pub fn ping() -> String {
    r#"{"type":"ping"}"#.to_owned()
}

/// A snapshot of many symbols. Bad items are skipped; a frame with items but
/// no good one is an error. An empty `data` list is an empty snapshot.
fn stock_updates(frame: &Map<String, Value>) -> Result<Decoded, DecodeError> {
    let items = match frame.get("data") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(DecodeError::BadField("\"data\" is not a list".into())),
        None => return Err(DecodeError::BadField("no \"data\" list".into())),
    };
    let frame_time = frame.get("timestamp").and_then(Value::as_str).and_then(iso_time);
    let quotes: Vec<Quote> = items.iter().filter_map(|item| quote(item, frame_time)).collect();
    if quotes.is_empty() && !items.is_empty() {
        return Err(DecodeError::BadField(format!(
            "none of the {} quotes has a \"symbol\" and a numeric \"price\"",
            items.len()
        )));
    }
    Ok(Decoded::Quotes(quotes))
}

/// One item of `data`, or `None` without a symbol or a finite price.
fn quote(item: &Value, frame_time: Option<QuoteTime>) -> Option<Quote> {
    let item = item.as_object()?;
    let symbol = item.get("symbol").and_then(Value::as_str).filter(|s| !s.is_empty())?;
    let price = num(item.get("price"))?;
    let time = item.get("timestamp").and_then(Value::as_str).and_then(iso_time).or(frame_time);
    Some(quote_with_fields(item, symbol, price, time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::capture_lines;

    const CAPTURE: &str = include_str!("../../../../tests/fixtures/captured-wig80.jsonl");

    const SYMBOLS: [&str; 16] = [
        "PKN",
        "KGHM",
        "PGE",
        "ORANGE",
        "CDPROJEKT",
        "PEPCO",
        "LPP",
        "PKO",
        "SANPL",
        "MBANK",
        "ING",
        "ALIOR",
        "CYFRPL",
        "PLAY",
        "ASB",
        "CCC",
    ];

    fn is_json_payload(payload: &str) -> bool {
        payload.starts_with('{') || payload.starts_with('[')
    }

    fn naive(s: &str) -> QuoteTime {
        QuoteTime::Naive(s.parse().unwrap())
    }

    #[test]
    fn every_captured_server_frame_decodes() {
        let mut checked = 0;
        let mut snapshots = 0;
        for (dir, label, payload) in capture_lines(CAPTURE) {
            if dir != "<-" || !is_json_payload(payload) {
                continue;
            }
            let got = decode(payload).unwrap_or_else(|e| panic!("{label}: {e}"));
            let step = label.split('@').next().unwrap();
            match step {
                "connect" => {
                    assert_eq!(got, Decoded::Connected { detail: "Connected to real-time stream".into() })
                }
                "subscribe" => assert!(matches!(got, Decoded::Subscribed { ok: true, .. }), "{label}: {got:?}"),
                "ping" => assert_eq!(got, Decoded::Pong),
                "status" => assert_eq!(got, Decoded::Heartbeat),
                "invalid-json" | "empty-text" => assert_eq!(
                    got,
                    Decoded::ServerError {
                        code: "error".into(),
                        message: "Invalid JSON message".into(),
                        kind: ErrorKind::Request
                    }
                ),
                "stock_updates" => {
                    snapshots += 1;
                    check_snapshot(label, got);
                }
                _ => panic!("no expectation for {label}: {payload}"),
            }
            checked += 1;
        }
        assert_eq!(snapshots, 3);
        assert_eq!(checked, 9);
    }

    fn check_snapshot(label: &str, got: Decoded) {
        let Decoded::Quotes(quotes) = got else { panic!("{label}: {got:?}") };
        let symbols: Vec<&str> = quotes.iter().map(|q| q.symbol.as_str()).collect();
        assert_eq!(symbols, SYMBOLS, "{label}");
        let pkn = &quotes[0];
        assert_eq!(pkn.price, 74.62);
        assert_eq!(pkn.change, Some(-0.38));
        assert_eq!(pkn.change_percent, Some(-0.5));
        assert_eq!(pkn.volume, Some(262_356.0));
        assert_eq!(pkn.high, Some(76.12));
        assert_eq!(pkn.low, Some(73.13));
        assert_eq!(pkn.open, Some(74.25));
        assert_eq!(pkn.market_status.as_deref(), Some("closed"));
        assert_eq!(pkn.currency, None);
        for q in &quotes {
            assert!(matches!(q.time, Some(QuoteTime::Naive(_))), "{label} {}: {:?}", q.symbol, q.time);
            assert_eq!(q.market_status.as_deref(), Some("closed"));
            assert!(q.volume.is_some() && q.high.is_some() && q.low.is_some() && q.open.is_some());
        }
        if label == "stock_updates@t+2.1s" {
            assert_eq!(pkn.time, Some(naive("2026-11-24T01:16:58.793969")));
        }
    }

    #[test]
    fn captured_client_frames_are_what_we_send_and_bad_ones_are_errors() {
        let mut checked = 0;
        for (dir, label, payload) in capture_lines(CAPTURE) {
            if dir != "->" {
                continue;
            }
            match label {
                "subscribe" => assert_eq!(json(payload), json(&subscribe())),
                "ping" => assert_eq!(json(payload), json(&ping())),
                // Frames the server ignores or rejects: as input they are errors.
                "status" => assert_eq!(decode(payload), Ok(Decoded::Heartbeat)),
                "unknown-type" => assert_eq!(decode(payload), Err(DecodeError::UnknownType("hello".into()))),
                "no-type-field" => assert!(matches!(decode(payload), Err(DecodeError::BadField(_)))),
                "invalid-json" | "empty-text" => assert!(matches!(decode(payload), Err(DecodeError::NotJson(_)))),
                "json-array" => assert_eq!(decode(payload), Err(DecodeError::NotObject)),
                _ => continue,
            }
            checked += 1;
        }
        assert_eq!(checked, 8);
    }

    fn json(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn builders_are_compact_json() {
        assert_eq!(subscribe(), r#"{"type":"subscribe"}"#);
        assert_eq!(ping(), r#"{"type":"ping"}"#);
    }

    #[test]
    fn documented_frames_decode() {
        let doc = r#"{"type":"stock_updates","timestamp":"2025-11-06T20:23:56.123456","count":2,"data":[
          {"timestamp":"2025-11-06T20:23:56.123456","symbol":"PKN","price":65.5,"change":1.25,"change_percent":1.94,
           "volume":1250000,"high":66.8,"low":64.2,"open":64.8,"market_status":"open","data_source":"stooq.pl"},
          {"timestamp":"2025-11-06T20:23:56.000Z","symbol":"KGHM","price":151.2,"change":-0.8,"change_percent":-0.53,
           "volume":310000,"high":153.0,"low":150.1,"open":152.0,"market_status":"open","data_source":"stooq.pl"}]}"#;
        let Ok(Decoded::Quotes(q)) = decode(doc) else { panic!("{:?}", decode(doc)) };
        assert_eq!(q.len(), 2);
        assert_eq!(
            q[0],
            Quote {
                change: Some(1.25),
                change_percent: Some(1.94),
                volume: Some(1_250_000.0),
                high: Some(66.8),
                low: Some(64.2),
                open: Some(64.8),
                market_status: Some("open".into()),
                time: Some(naive("2025-11-06T20:23:56.123456")),
                ..Quote::new("PKN", 65.5)
            }
        );
        let abs = chrono::DateTime::from_timestamp_millis(1_762_460_636_000).unwrap();
        assert_eq!(q[1].time, Some(QuoteTime::Absolute(abs)));
        assert_eq!(q[1].price, 151.2);

        let conn = r#"{"type":"connection","status":"connected","timestamp":"2025-11-06T20:23:56.123456","message":"Connected to real-time stream"}"#;
        assert_eq!(decode(conn), Ok(Decoded::Connected { detail: "Connected to real-time stream".into() }));
        assert_eq!(
            decode(r#"{"type":"connection","status":"connected"}"#),
            Ok(Decoded::Connected { detail: "connected".into() })
        );
        let status = r#"{"type":"status","questdb_status":"error","pocketbase_status":"error","data_providers":["Stooq.pl"],"subscribers":1,"timestamp":"…"}"#;
        assert_eq!(decode(status), Ok(Decoded::Heartbeat));
        assert_eq!(
            decode(r#"{"type":"error"}"#),
            Ok(Decoded::ServerError { code: "error".into(), message: String::new(), kind: ErrorKind::Request })
        );
    }

    #[test]
    fn bad_quotes_are_skipped_and_an_all_bad_frame_is_an_error() {
        let frame = r#"{"type":"stock_updates","timestamp":"2026-11-24T01:16:58.798403","data":[
            {"price":1.0},
            {"symbol":"NOPRICE"},
            {"symbol":"STR","price":"74.62"},
            {"symbol":"","price":3},
            {"symbol":7,"price":3},
            "PKN",
            null,
            {"symbol":"OK","price":2,"volume":"many","high":null,"market_status":5}
        ]}"#;
        let Ok(Decoded::Quotes(q)) = decode(frame) else { panic!("{:?}", decode(frame)) };
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].symbol, "OK");
        assert_eq!(q[0].price, 2.0);
        assert_eq!((q[0].volume, q[0].high, q[0].market_status.as_deref()), (None, None, None));
        // No per-item timestamp: the frame's.
        assert_eq!(q[0].time, Some(naive("2026-11-24T01:16:58.798403")));

        let all_bad = r#"{"type":"stock_updates","data":[{"symbol":"X"},{"price":1}]}"#;
        assert!(matches!(decode(all_bad), Err(DecodeError::BadField(_))));
        assert_eq!(decode(r#"{"type":"stock_updates","data":[]}"#), Ok(Decoded::Quotes(vec![])));
        assert!(matches!(decode(r#"{"type":"stock_updates"}"#), Err(DecodeError::BadField(_))));
        assert!(matches!(decode(r#"{"type":"stock_updates","data":{}}"#), Err(DecodeError::BadField(_))));
        // An unparseable time is no time, not a bad quote.
        let Ok(Decoded::Quotes(q)) =
            decode(r#"{"type":"stock_updates","data":[{"symbol":"X","price":1,"timestamp":"soon"}]}"#)
        else {
            panic!()
        };
        assert_eq!(q[0].time, None);
    }

    #[test]
    fn frames_without_a_usable_type_are_errors() {
        assert!(matches!(decode(r#"{"message":"x"}"#), Err(DecodeError::BadField(_))));
        assert!(matches!(decode(r#"{"type":null}"#), Err(DecodeError::BadField(_))));
        assert!(matches!(decode(r#"{"type":["pong"]}"#), Err(DecodeError::BadField(_))));
        assert_eq!(decode(r#"{"type":"PONG"}"#), Err(DecodeError::UnknownType("PONG".into())));
        assert_eq!(decode("[1,2,3]"), Err(DecodeError::NotObject));
        assert_eq!(decode("\"pong\""), Err(DecodeError::NotObject));
        assert_eq!(decode("null"), Err(DecodeError::NotObject));
        assert!(matches!(decode(""), Err(DecodeError::NotJson(_))));
        assert!(matches!(decode("this is not json{"), Err(DecodeError::NotJson(_))));
        assert!(matches!(decode(r#"{"type":"pong"} trailing"#), Err(DecodeError::NotJson(_))));
        let long_type = format!(r#"{{"type":"{}"}}"#, "t".repeat(100_000));
        let Err(DecodeError::UnknownType(t)) = decode(&long_type) else { panic!() };
        assert!(t.len() < 100, "echoed {} bytes", t.len());
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(decode(&deep), Err(DecodeError::NotJson(_))));
        let deep_obj = format!(r#"{{"type":"stock_updates","data":{}1{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(decode(&deep_obj), Err(DecodeError::NotJson(_))));
        let big_string = format!("\"{}\"", "x".repeat(10 << 20));
        assert_eq!(decode(&big_string), Err(DecodeError::NotObject));
        let big_garbage = "x".repeat(10 << 20);
        let Err(DecodeError::NotJson(msg)) = decode(&big_garbage) else { panic!() };
        assert!(msg.len() < 200, "the error must not echo the input");
        let big_symbol =
            format!(r#"{{"type":"stock_updates","data":[{{"symbol":"{}","price":1}}]}}"#, "S".repeat(10 << 20));
        assert!(matches!(decode(&big_symbol), Ok(Decoded::Quotes(q)) if q[0].symbol.len() == 10 << 20));

        // Out of f64 range: serde_json refuses the frame.
        assert!(decode(r#"{"type":"stock_updates","data":[{"symbol":"X","price":1e400}]}"#).is_err());
        // Past u64 but within f64: still a number.
        let Ok(Decoded::Quotes(q)) =
            decode(r#"{"type":"stock_updates","data":[{"symbol":"X","price":1,"volume":184467440737095516160}]}"#)
        else {
            panic!()
        };
        assert_eq!(q[0].volume, Some(2f64.powi(64) * 10.0));
        assert!(decode("NaN").is_err());
        assert!(decode(r#"{"type":"stock_updates","data":[{"symbol":"X","price":NaN}]}"#).is_err());
        assert!(decode(r#"{"type":"stock_updates","data":[{"symbol":"X","price":Infinity}]}"#).is_err());
        assert!(decode("\u{0}\u{1}\u{2}\u{fffd}\u{7f}PK\u{3}\u{4}").is_err());
        assert!(decode("\u{feff}{\"type\":\"pong\"}").is_err());
    }
}
