//! Hostile input never panics: property tests over every parser that reads
//! bytes from the network, through the public API only.
//!
//! Each entry point gets arbitrary bytes (or strings) cut at arbitrary chunk
//! boundaries, structured-but-wrong input (JSON with the known fields holding
//! random types), and the specific nasties: 10,000-deep nesting, numbers that
//! overflow i64/u64/f64, invalid UTF-8, NUL bytes and a 10 MiB line. Case counts
//! are bounded so the whole file runs in seconds; `fuzz/` has cargo-fuzz
//! targets for the same entry points for longer runs.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc};
use feedtop::feeds::companies_house::{parse_event, EventType, ParseError};
use feedtop::feeds::decode::sse::{decode_event, SseEvent, SseItem, SseParser};
use feedtop::feeds::decode::{carbon, wig80};
use feedtop::feeds::lines::{Line, LineSplitter, DEFAULT_MAX_LINE};
use feedtop::feeds::quote::{DecodeError, Decoded};
use feedtop::time::parse_published_at;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};

const FIXTURE: &str = include_str!("fixtures/ch-companies-sample.ndjson");
const WIG80_CAPTURE: &str = include_str!("fixtures/captured-wig80.jsonl");
const CARBON_CAPTURE: &str = include_str!("fixtures/captured-carbon.txt");

/// Cases per property: enough to shake out edge cases, few enough that the
/// whole file stays well under the suite's time budget on two cores.
fn cases(n: u32) -> Config {
    Config { cases: n, failure_persistence: None, ..Config::default() }
}

// ---------------------------------------------------------------- helpers

/// Cuts `input` at the given points (taken modulo the length, any order).
fn split_at_points<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for cut in cuts {
        chunks.push(&input[start..cut]);
        start = cut;
    }
    chunks.push(&input[start..]);
    chunks
}

/// Runs the splitter over `chunks`, checking the memory bound after every push.
fn split(max: usize, chunks: &[&[u8]]) -> Result<Vec<Line>, TestCaseError> {
    let mut splitter = LineSplitter::new(max);
    let mut out = Vec::new();
    for chunk in chunks {
        splitter.push(chunk, &mut out);
        prop_assert!(splitter.pending() <= max, "pending {} > max {max}", splitter.pending());
    }
    Ok(out)
}

fn sse(max: usize, chunks: &[&[u8]]) -> Vec<SseItem> {
    let mut parser = SseParser::new(max);
    let mut out = Vec::new();
    for chunk in chunks {
        parser.push(chunk, &mut out);
    }
    out
}

/// Bytes biased towards the ones parsers branch on.
fn wire_bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            6 => any::<u8>(),
            2 => Just(b'\n'),
            1 => Just(b'\r'),
            1 => Just(b':'),
            1 => Just(b' '),
            1 => Just(0u8),
            1 => Just(b'{'),
            1 => Just(b'"'),
        ],
        0..max_len,
    )
}

/// Text made of JSON tokens, mostly the field names feedtop reads, glued
/// together in random order: it gets deep into the decoders' branches.
fn json_ish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(":".to_owned()),
        Just(",".to_owned()),
        Just(" ".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("-0".to_owned()),
        Just("1e400".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        prop_oneof![
            Just("resource_kind"),
            Just("resource_id"),
            Just("company-profile"),
            Just("data"),
            Just("event"),
            Just("timepoint"),
            Just("published_at"),
            Just("type"),
            Just("action"),
            Just("error"),
            Just("topic"),
            Just("symbol"),
            Just("instrument_id"),
            Just("price"),
            Just("timestamp"),
            Just("stock_updates"),
            Just("subscribe_response"),
            Just("failed_topics"),
            Just("detail"),
        ]
        .prop_map(|k| format!("\"{k}\"")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        "[a-z0-9 .:+-]{0,8}".prop_map(|s| format!("\"{s}\"")),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

/// Any JSON value, a few levels deep, with numbers at the edges of every type.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(f64::MAX)),
        Just(json!(1_000_000_000_000_i64)),
        ".{0,12}".prop_map(Value::from),
        Just(Value::from("2025-06-10T08:02:41")),
        Just(Value::from("+262143-12-31T23:59:59.999999999Z")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A string value that [`with_raw`] replaces.
const MARKER: &str = "@@RAW@@";

/// `template` as text with its [`MARKER`] string replaced by `raw`: puts text
/// serde_json cannot hold (a 30-digit number, 10,000 brackets) in a field.
fn with_raw(template: &Value, raw: &str) -> String {
    template.to_string().replace(&format!("\"{MARKER}\""), raw)
}

/// Numbers no integer or float type can hold, and their neighbours.
const HUGE_NUMBERS: [&str; 10] = [
    "1e400",
    "-1e400",
    "123456789012345678901234567890",
    "-123456789012345678901234567890",
    "18446744073709551616",
    "9223372036854775808",
    "-9223372036854775809",
    "1.7976931348623157e309",
    "0.0000000000000000000000000000000000000000001e-400",
    "1E+400",
];

fn deep_array(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

fn deep_object(depth: usize) -> String {
    r#"{"a":"#.repeat(depth) + "1" + &"}".repeat(depth)
}

/// Payloads of a capture file (`dir label payload` per line).
fn capture_payloads(capture: &str) -> Vec<&str> {
    capture.lines().filter_map(|l| l.splitn(3, ' ').nth(2)).filter(|p| p.starts_with('{')).collect()
}

fn fixture_event_lines() -> Vec<&'static str> {
    FIXTURE.lines().filter(|l| !l.trim().is_empty()).collect()
}

// ---------------------------------------------------------- line splitter

/// A non-blank line with no `\n` and no trailing `\r` (which the splitter
/// would strip), made of arbitrary bytes including NUL and invalid UTF-8.
fn good_line() -> impl Strategy<Value = Vec<u8>> {
    (proptest::collection::vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..40), 0x21u8..0x7f).prop_map(
        |(mut bytes, visible)| {
            // One visible byte makes the line non-blank; a visible last byte
            // keeps a trailing `\r` out of it.
            bytes.push(visible);
            bytes
        },
    )
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn splitter_any_bytes_any_chunking(
        input in wire_bytes(400),
        points in proptest::collection::vec(any::<usize>(), 0..16),
        max in prop_oneof![Just(0usize), 1usize..48, Just(DEFAULT_MAX_LINE)],
    ) {
        let whole = split(max, &[&input])?;
        let chunked = split(max, &split_at_points(&input, &points))?;
        prop_assert_eq!(&chunked, &whole, "chunking changed the lines");
        // Every item is accounted for by a `\n` in the input.
        let newlines = input.iter().filter(|&&b| b == b'\n').count();
        let too_long = whole.iter().filter(|l| **l == Line::TooLong).count();
        prop_assert!(whole.len() <= newlines + too_long);
        for line in &whole {
            if let Line::Data(bytes) = line {
                prop_assert!(bytes.len() <= max && !bytes.contains(&b'\n'));
            }
        }
    }

    #[test]
    fn splitter_well_formed_lines_come_back_exactly(
        lines in proptest::collection::vec(
            prop_oneof![3 => good_line().prop_map(Some), 1 => Just(None)],
            0..20,
        ),
        crlf in proptest::collection::vec(any::<bool>(), 20),
        points in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            match line {
                Some(bytes) => {
                    wire.extend_from_slice(bytes);
                    want.push(Line::Data(bytes.clone()));
                }
                None => want.push(Line::Blank),
            }
            wire.extend_from_slice(if crlf[i] { b"\r\n" } else { b"\n" });
        }
        let got = split(DEFAULT_MAX_LINE, &split_at_points(&wire, &points))?;
        prop_assert_eq!(got, want);
    }

    #[test]
    fn splitter_drops_each_over_long_line_once_and_keeps_the_rest(
        lens in proptest::collection::vec(1usize..64, 1..12),
        points in proptest::collection::vec(any::<usize>(), 0..24),
        max in 1usize..40,
    ) {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for (i, len) in lens.iter().enumerate() {
            let line = vec![b'a' + (i % 26) as u8; *len];
            wire.extend_from_slice(&line);
            wire.push(b'\n');
            want.push(if *len > max { Line::TooLong } else { Line::Data(line) });
        }
        prop_assert_eq!(split(max, &split_at_points(&wire, &points))?, want);
    }
}

#[test]
fn splitter_ten_mib_line_is_too_long_once_and_the_stream_goes_on() {
    let big = vec![b'x'; 10 << 20];
    let want = vec![Line::Data(b"{\"before\":1}".to_vec()), Line::TooLong, Line::Data(b"{\"after\":1}".to_vec())];
    // In network-sized reads.
    let mut splitter = LineSplitter::new(DEFAULT_MAX_LINE);
    let mut out = Vec::new();
    splitter.push(b"{\"before\":1}\n", &mut out);
    for chunk in big.chunks(64 * 1024) {
        splitter.push(chunk, &mut out);
        assert!(splitter.pending() <= DEFAULT_MAX_LINE);
    }
    splitter.push(b"\n{\"after\":1}\n", &mut out);
    assert_eq!(out, want);
    assert_eq!(splitter.pending(), 0);
    // In one read with everything around it.
    let mut wire = b"{\"before\":1}\n".to_vec();
    wire.extend_from_slice(&big);
    wire.extend_from_slice(b"\r\n{\"after\":1}\n");
    let mut splitter = LineSplitter::new(DEFAULT_MAX_LINE);
    let mut out = Vec::new();
    splitter.push(&wire, &mut out);
    assert_eq!(out, want);
    // Two over-long lines back to back: two reports, not one or four.
    let mut splitter = LineSplitter::new(DEFAULT_MAX_LINE);
    let mut out = Vec::new();
    for _ in 0..2 {
        for chunk in big.chunks(1 << 20) {
            splitter.push(chunk, &mut out);
        }
        splitter.push(b"\n", &mut out);
    }
    assert_eq!(out, [Line::TooLong, Line::TooLong]);
}

#[test]
fn splitter_keeps_nul_and_invalid_utf8_bytes_as_they_are() {
    let mut splitter = LineSplitter::new(64);
    let mut out = Vec::new();
    splitter.push(b"\0\0\0\n\xff\xfe\xc3\n\0\r\n", &mut out);
    assert_eq!(out, [Line::Data(b"\0\0\0".to_vec()), Line::Data(b"\xff\xfe\xc3".to_vec()), Line::Data(b"\0".to_vec())]);
}

// ------------------------------------------------ Companies House events

fn envelope(kind: &Value, id: &Value, data: Option<&Value>, tp: &Value, at: &Value, ty: &Value) -> Value {
    let mut v = json!({
        "resource_kind": kind,
        "resource_id": id,
        "event": {"timepoint": tp, "published_at": at, "type": ty},
    });
    if let Some(data) = data {
        v["data"] = data.clone();
    }
    v
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn parse_event_any_bytes(bytes in wire_bytes(300)) {
        let _ = parse_event(bytes);
    }

    #[test]
    fn parse_event_json_ish(text in json_ish()) {
        let _ = parse_event(text.into_bytes());
    }

    #[test]
    fn parse_event_fields_of_any_type(
        kind in prop_oneof![Just(json!("company-profile")), any_json()],
        id in any_json(),
        data in proptest::option::of(prop_oneof![
            any_json(),
            (any_json(), any_json(), any_json(), any_json()).prop_map(|(n, name, s, d)| json!({
                "company_number": n, "company_name": name, "company_status": s, "company_status_detail": d,
            })),
        ]),
        tp in prop_oneof![any::<i64>().prop_map(Value::from), any_json()],
        at in any_json(),
        ty in prop_oneof![Just(json!("changed")), Just(json!("deleted")), any_json()],
    ) {
        let line = envelope(&kind, &id, data.as_ref(), &tp, &at, &ty).to_string();
        if let Ok(ev) = parse_event(line.clone().into_bytes()) {
            // What came out is what went in.
            prop_assert_eq!(Some(ev.timepoint), tp.as_i64());
            prop_assert_eq!(Some(ev.resource_kind.as_str()), kind.as_str());
            prop_assert_eq!(Some(ev.resource_id.as_str()), id.as_str());
            prop_assert_eq!(ev.raw, line);
            match ty.as_str() {
                Some("deleted") => prop_assert_eq!(ev.event_type, EventType::Deleted),
                Some("changed") | None => prop_assert_eq!(ev.event_type, EventType::Changed),
                Some(other) => prop_assert_eq!(ev.event_type, EventType::Other(other.to_owned())),
            }
        }
    }

    #[test]
    fn parse_event_fixture_lines_with_flipped_bytes(
        which in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
    ) {
        let lines = fixture_event_lines();
        let mut line = lines[which.index(lines.len())].as_bytes().to_vec();
        let len = line.len();
        for (at, mask) in flips {
            line[at.index(len)] ^= mask;
        }
        let _ = parse_event(line);
    }
}

#[test]
fn parse_event_nasties() {
    let ok = |tp: &str| {
        format!(r#"{{"resource_kind":"company-profile","resource_id":"1","data":{{}},"event":{{"timepoint":{tp}}}}}"#)
    };
    assert!(parse_event(ok("5").into_bytes()).is_ok(), "the template itself is good");
    for number in HUGE_NUMBERS {
        let got = parse_event(ok(number).into_bytes());
        assert!(matches!(got, Err(ParseError::Json(_))), "timepoint {number}: {got:?}");
    }
    assert_eq!(parse_event(ok(&i64::MAX.to_string()).into_bytes()).unwrap().timepoint, i64::MAX);
    assert_eq!(parse_event(ok(&i64::MIN.to_string()).into_bytes()).unwrap().timepoint, i64::MIN);

    for deep in [deep_array(10_000), deep_object(10_000)] {
        assert!(parse_event(deep.clone().into_bytes()).is_err());
        // Deep in the parts feedtop reads: an error (or, for `data`, whose
        // unknown keys are skipped, an event without company fields)…
        for slot in ["resource_kind", "resource_id", "event", "data"] {
            let mut v = json!({"resource_kind":"company-profile","resource_id":"1","event":{"timepoint":1}});
            v[slot] = json!(MARKER);
            if let Ok(ev) = parse_event(with_raw(&v, &deep).into_bytes()) {
                assert_eq!(slot, "data");
                assert_eq!(ev.company.map(|c| c.name), Some(String::new()));
            }
        }
        // …and in the ones it skips, which serde_json steps over without
        // recursion: the event is still good.
        let line = format!(
            r#"{{"resource_kind":"company-profile","resource_id":"1","data":{{"x":{deep}}},"y":{deep},"event":{{"timepoint":1,"z":{deep}}}}}"#
        );
        assert_eq!(parse_event(line.into_bytes()).map(|ev| ev.timepoint), Ok(1));
    }

    let mut invalid = ok("5").into_bytes();
    invalid.insert(3, 0xff);
    assert_eq!(parse_event(invalid), Err(ParseError::NotUtf8));
    assert!(parse_event(b"\0".to_vec()).is_err());
    let nul_in_name = r#"{"resource_kind":"company-profile","resource_id":"1","data":{"company_name":"A\u0000B"},"event":{"timepoint":1}}"#;
    assert_eq!(parse_event(nul_in_name.as_bytes().to_vec()).unwrap().company.unwrap().name, "A\0B");
    let lone_surrogate = r#"{"resource_kind":"x","resource_id":"\ud800","event":{"timepoint":1}}"#;
    assert!(parse_event(lone_surrogate.as_bytes().to_vec()).is_err());
    let big = format!(r#"{{"resource_kind":"x","resource_id":"{}","event":{{"timepoint":1}}}}"#, "9".repeat(10 << 20));
    assert_eq!(parse_event(big.into_bytes()).unwrap().resource_id.len(), 10 << 20);
}

// ------------------------------------------------------------ SSE parser

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn sse_any_bytes_any_chunking(
        input in wire_bytes(400),
        points in proptest::collection::vec(any::<usize>(), 0..16),
        max in prop_oneof![Just(0usize), 1usize..48, Just(4usize << 20)],
    ) {
        let whole = sse(max, &[&input]);
        let chunked = sse(max, &split_at_points(&input, &points));
        prop_assert_eq!(&chunked, &whole);
        for item in &whole {
            if let SseItem::Event(event) = item {
                // Each received byte decodes to at most three (U+FFFD).
                prop_assert!(event.data.len() <= 3 * max);
                let _ = decode_event(event);
            }
        }
    }

    #[test]
    fn sse_events_with_json_ish_data_decode_without_panic(
        name in prop_oneof![
            Just("message"),
            Just("error"),
            Just("heartbeat"),
            Just("connection_established"),
            Just("data"),
        ],
        data in prop_oneof![json_ish(), any_json().prop_map(|v| v.to_string())],
    ) {
        let event = SseEvent { event: name.to_owned(), data, id: None };
        let _ = decode_event(&event);
    }
}

#[test]
fn sse_nasties() {
    const MAX: usize = 4 << 20;
    // A 10 MiB unterminated line: one report, then the stream goes on.
    let mut parser = SseParser::new(MAX);
    let mut out = Vec::new();
    let flood = vec![b'd'; 64 * 1024];
    parser.push(b"data: ", &mut out);
    for _ in 0..160 {
        parser.push(&flood, &mut out);
    }
    parser.push(b"\n\ndata: {\"type\":\"heartbeat\"}\n\n", &mut out);
    assert_eq!(out.len(), 2, "one report and one event");
    assert_eq!(out[0], SseItem::TooLong);
    let SseItem::Event(ev) = &out[1] else { panic!("{:?}", out[1]) };
    assert_eq!(decode_event(ev), Ok(Decoded::Heartbeat));

    for deep in [deep_array(10_000), deep_object(10_000)] {
        for name in ["message", "error", "connection_established"] {
            let wire = format!("event: {name}\ndata: {deep}\n\n");
            let items = sse(MAX, &[wire.as_bytes()]);
            let [SseItem::Event(ev)] = items.as_slice() else { panic!("{items:?}") };
            let _ = decode_event(ev);
        }
    }
    let items = sse(MAX, &[b"id: \0\ndata: \0\xff\xfe\n\nretry: 99999999999999999999999999999\n\n"]);
    assert_eq!(items.len(), 1);
    // The limit counts received bytes; invalid UTF-8 decodes to U+FFFD, three
    // bytes each (found by the sse_parser fuzz target).
    let mut wire = b"data: ".to_vec();
    wire.extend([0xff; 58]);
    wire.extend(b"\n\n");
    let items = sse(64, &[&wire]);
    let [SseItem::Event(ev)] = items.as_slice() else { panic!("{items:?}") };
    assert_eq!(ev.data, "\u{fffd}".repeat(58));
    assert_eq!(ev.data.len(), 3 * 58);
}

// ------------------------------------------------------- quote decoders

fn wig80_frame() -> impl Strategy<Value = Value> {
    let item = (any_json(), any_json(), any_json(), any_json(), any_json(), any_json()).prop_map(
        |(symbol, price, ts, change, volume, status)| {
            json!({"symbol": symbol, "price": price, "timestamp": ts, "change": change, "change_percent": change,
                   "volume": volume, "high": price, "low": volume, "open": change, "market_status": status,
                   "currency": status})
        },
    );
    let good = (".{0,6}", any::<f64>()).prop_map(|(s, p)| json!({"symbol": s, "price": p}));
    (
        prop_oneof![Just(json!("stock_updates")), Just(json!("connection")), Just(json!("error")), any_json()],
        prop_oneof![
            proptest::collection::vec(prop_oneof![item, good, any_json()], 0..5).prop_map(Value::Array),
            any_json()
        ],
        any_json(),
        any_json(),
    )
        .prop_map(|(ty, data, ts, message)| json!({"type": ty, "data": data, "timestamp": ts, "message": message}))
}

fn carbon_quote() -> impl Strategy<Value = Value> {
    (any_json(), any_json(), any_json(), any_json()).prop_map(|(id, price, ts, volume)| {
        json!({"instrument_id": id, "symbol": id, "price": price, "timestamp": ts, "volume": volume,
               "change": price, "high": volume, "currency": ts})
    })
}

fn carbon_frame() -> impl Strategy<Value = Value> {
    let data = prop_oneof![
        carbon_quote(),
        proptest::collection::vec(prop_oneof![carbon_quote(), any_json()], 0..4).prop_map(Value::Array),
        any_json(),
    ];
    let dispatch = prop_oneof![
        Just(None),
        Just(Some(("type", json!("data")))),
        Just(Some(("type", json!("error")))),
        Just(Some(("type", json!("subscribe_response")))),
        Just(Some(("action", json!("subscribe_response")))),
        any_json().prop_map(|v| Some(("type", v))),
        any_json().prop_map(|v| Some(("action", v))),
        any_json().prop_map(|v| Some(("error", v))),
    ];
    (dispatch, data, any_json(), any_json(), any_json(), any_json()).prop_map(
        |(dispatch, data, ts, success, topics, detail)| {
            let mut v = json!({"topic": "t", "data": data, "timestamp": ts, "success": success,
                               "subscribed_topics": topics, "failed_topics": topics, "detail": detail});
            if let Some((key, value)) = dispatch {
                v[key] = value;
            }
            v
        },
    )
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn wig80_any_text(text in prop_oneof![".{0,200}", json_ish()]) {
        let _ = wig80::decode(&text);
    }

    #[test]
    fn carbon_any_text(text in prop_oneof![".{0,200}", json_ish()]) {
        let _ = carbon::decode(&text);
    }

    #[test]
    fn wig80_known_fields_of_any_type(frame in wig80_frame()) {
        if let Ok(Decoded::Quotes(quotes)) = wig80::decode(&frame.to_string()) {
            for q in quotes {
                prop_assert!(q.price.is_finite() && !q.symbol.is_empty());
            }
        }
    }

    #[test]
    fn carbon_known_fields_of_any_type(frame in carbon_frame()) {
        if let Ok(Decoded::Quotes(quotes)) = carbon::decode(&frame.to_string()) {
            for q in quotes {
                prop_assert!(q.price.is_finite() && !q.symbol.is_empty());
            }
        }
    }

    #[test]
    fn captured_frames_with_flipped_bytes(
        carbon_side in any::<bool>(),
        which in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6),
    ) {
        let frames = capture_payloads(if carbon_side { CARBON_CAPTURE } else { WIG80_CAPTURE });
        let mut bytes = frames[which.index(frames.len())].as_bytes().to_vec();
        let len = bytes.len();
        for (at, mask) in flips {
            bytes[at.index(len)] ^= mask;
        }
        let text = String::from_utf8_lossy(&bytes);
        let _ = wig80::decode(&text);
        let _ = carbon::decode(&text);
    }
}

#[test]
fn quote_decoder_nasties() {
    for deep in [deep_array(10_000), deep_object(10_000)] {
        assert!(matches!(wig80::decode(&deep), Err(DecodeError::NotJson(_))));
        assert!(matches!(carbon::decode(&deep), Err(DecodeError::NotJson(_))));
        let in_data = format!(r#"{{"type":"stock_updates","data":[{{"symbol":"X","price":{deep}}}]}}"#);
        assert!(wig80::decode(&in_data).is_err());
        let in_data = format!(r#"{{"topic":"t","data":{deep}}}"#);
        assert!(carbon::decode(&in_data).is_err());
    }
    let wig_price = json!({"type":"stock_updates","data":[{"symbol":"X","price":MARKER,"volume":1}]});
    let wig_volume = json!({"type":"stock_updates","data":[{"symbol":"X","price":1,"volume":MARKER}]});
    let carbon_price = json!({"topic":"t","timestamp":5,"data":{"instrument_id":"X","price":MARKER}});
    let carbon_time = json!({"topic":"t","timestamp":MARKER,"data":{"instrument_id":"X","price":1}});
    for number in HUGE_NUMBERS {
        // serde_json refuses numbers beyond f64 and reads big integers as
        // floats: an error or finite numbers, never a panic or an infinity.
        for text in [with_raw(&wig_price, number), with_raw(&wig_volume, number)] {
            if let Ok(Decoded::Quotes(q)) = wig80::decode(&text) {
                assert!(q.iter().all(|q| q.price.is_finite() && q.volume.is_none_or(f64::is_finite)), "{text}");
            }
        }
        for text in [with_raw(&carbon_price, number), with_raw(&carbon_time, number)] {
            if let Ok(Decoded::Quotes(q)) = carbon::decode(&text) {
                assert!(q.iter().all(|q| q.price.is_finite()), "{text}");
            }
        }
    }
    for text in ["\0", "{\"type\":\"pong\u{0}\"}", "\u{feff}{}", "{\"type\":\"\\ud800\"}"] {
        let _ = wig80::decode(text);
        let _ = carbon::decode(text);
    }
    let invalid = String::from_utf8_lossy(b"{\"type\":\"stock_updates\",\"data\":[{\"symbol\":\"\xff\",\"price\":1}]}");
    assert!(matches!(wig80::decode(&invalid), Ok(Decoded::Quotes(q)) if q[0].symbol == "\u{fffd}"));
    let big = format!(r#"{{"topic":"t","data":{{"instrument_id":"{}","price":1}}}}"#, "I".repeat(10 << 20));
    assert!(matches!(carbon::decode(&big), Ok(Decoded::Quotes(q)) if q[0].symbol.len() == 10 << 20));
}

// ----------------------------------------------------------- published_at

/// One valid `YYYY-MM-DDTHH:MM:SS[.ffffff][Z|±HH:MM]` and the instant it names.
#[derive(Debug, Clone)]
struct Stamp {
    text: String,
    instant: DateTime<Utc>,
}

fn stamp() -> impl Strategy<Value = Stamp> {
    (
        (1i32..=9999, 1u32..=12, 1u32..=31),
        (0u32..24, 0u32..60, 0u32..60),
        proptest::option::of((1usize..=9, 0u32..1_000_000_000)),
        prop_oneof![Just(None::<i32>), Just(Some(0)), (-(23 * 60 + 59)..=(23 * 60 + 59)).prop_map(Some)],
        any::<bool>(),
    )
        .prop_filter_map("a real calendar day", |((y, mo, d), (h, mi, s), frac, offset_min, lower_z)| {
            let date = NaiveDate::from_ymd_opt(y, mo, d)?;
            let (frac_text, nanos) = match frac {
                None => (String::new(), 0),
                Some((digits, n)) => {
                    let n = n / 10u32.pow(9 - digits as u32);
                    (format!(".{n:0digits$}"), n * 10u32.pow(9 - digits as u32))
                }
            };
            let local = NaiveDateTime::new(date, NaiveTime::from_hms_nano_opt(h, mi, s, nanos)?);
            let (zone, offset) = match offset_min {
                None => (String::new(), 0),
                Some(0) if lower_z => ("z".to_owned(), 0),
                Some(0) => ("Z".to_owned(), 0),
                Some(m) => {
                    let sign = if m < 0 { '-' } else { '+' };
                    (format!("{sign}{:02}:{:02}", m.abs() / 60, m.abs() % 60), m * 60)
                }
            };
            let instant = FixedOffset::east_opt(offset)?.from_local_datetime(&local).single()?.with_timezone(&Utc);
            let text = format!("{}{frac_text}{zone}", local.format("%Y-%m-%dT%H:%M:%S"));
            Some(Stamp { text, instant })
        })
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn published_at_any_string(s in prop_oneof![".{0,40}", "[0-9T:+Zz. -]{0,40}"]) {
        let _ = parse_published_at(&s);
    }

    #[test]
    fn published_at_mutated_valid_stamp(
        stamp in stamp(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<char>()), 1..4),
    ) {
        let mut chars: Vec<char> = stamp.text.chars().collect();
        for (at, c) in flips {
            let i = at.index(chars.len());
            chars[i] = c;
        }
        let _ = parse_published_at(&chars.into_iter().collect::<String>());
    }

    #[test]
    fn published_at_valid_stamps_round_trip(stamp in stamp()) {
        let got = parse_published_at(&stamp.text);
        prop_assert_eq!(got, Some(stamp.instant), "{}", stamp.text);
        // The same with surrounding whitespace, as a sloppy server sends it.
        prop_assert_eq!(parse_published_at(&format!(" {}\n", stamp.text)), Some(stamp.instant));
    }
}

#[test]
fn published_at_nasties() {
    for s in [
        "\0",
        "2025-06-10T08:02:41\0",
        "9999-12-31T23:59:59-23:59",
        "0000-01-01T00:00:00+23:59",
        "+262143-12-31T23:59:59",
        "-262144-01-01T00:00:00",
        "2025-06-10T08:02:41.99999999999999999999999999999Z",
        "2025-06-10T08:02:41+99:99",
        "2025-02-29T00:00:00",
        "2025-06-10T24:00:00",
        "2025-06-10T23:59:60Z",
        "99999999999999999999-01-01T00:00:00",
    ] {
        let _ = parse_published_at(s);
    }
    let leap = parse_published_at("2016-12-31T23:59:60Z").expect("a leap second is a valid RFC 3339 time");
    assert_eq!((leap.year(), leap.second(), leap.nanosecond()), (2016, 59, 1_000_000_000));
    assert_eq!(parse_published_at(&"9".repeat(10 << 20)), None);
}

// ------------------------------------------- from the wire to the screen

/// A quote frame whose fields hold strings and numbers a screen finds hard:
/// wide and zero-width characters, control bytes, huge and tiny numbers,
/// times at the ends of chrono's range.
fn screen_hostile_frame() -> impl Strategy<Value = String> {
    let text = prop_oneof![
        Just("\u{1b}[2J\u{7}".to_owned()),
        Just("株式会社🦀🦀".to_owned()),
        Just("e\u{301}\u{200b}\u{fe0f}".to_owned()),
        Just("\t\r\0".to_owned()),
        Just("W".repeat(500)),
        ".{1,12}",
    ];
    let number = prop_oneof![
        Just("1.7976931348623157e308".to_owned()),
        Just("-1.7976931348623157e308".to_owned()),
        Just("5e-324".to_owned()),
        Just("0".to_owned()),
        Just("-0.0".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    let time = prop_oneof![
        Just("\"+262143-12-31T23:59:59.999999999\"".to_owned()),
        Just("\"-262143-01-01T00:00:00\"".to_owned()),
        Just("\"+262143-12-31T23:59:59Z\"".to_owned()),
        Just("\"0001-01-01T00:00:00-23:59\"".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("1000000000000".to_owned()),
        Just("99999999999999999".to_owned()),
    ];
    (any::<bool>(), text.clone(), text, proptest::collection::vec(number, 8), time).prop_map(
        |(carbon, symbol, status, n, time)| {
            let symbol = Value::from(symbol);
            let status = Value::from(status);
            if carbon {
                format!(
                    r#"{{"topic":"t","timestamp":{time},"data":{{"instrument_id":{symbol},"price":{},"change":{},"change_percent":{},"volume":{},"high":{},"low":{},"open":{},"market_status":{status},"currency":{status}}}}}"#,
                    n[0], n[1], n[2], n[3], n[4], n[5], n[6]
                )
            } else {
                format!(
                    r#"{{"type":"stock_updates","data":[{{"symbol":{symbol},"timestamp":{time},"price":{},"change":{},"change_percent":{},"volume":{},"high":{},"low":{},"open":{},"market_status":{status}}}]}}"#,
                    n[0], n[1], n[2], n[3], n[4], n[5], n[6]
                )
            }
        },
    )
}

proptest! {
    #![proptest_config(cases(40))]

    /// Whatever the decoders let through, the model takes and every pane
    /// draws, at a normal size and a wide one.
    #[test]
    fn decoded_hostile_input_reaches_the_screen_without_panic(
        frames in proptest::collection::vec(screen_hostile_frame(), 1..6),
        events in proptest::collection::vec(
            (
                any_json(),
                ".{0,30}",
                prop_oneof![Just("active".to_owned()), ".{0,8}"],
                any::<i64>(),
                prop_oneof![
                    Just("+262143-12-31T23:59:59Z".to_owned()),
                    Just("1000-01-01T00:00:00".to_owned()),
                    ".{0,20}",
                ],
            ),
            0..6,
        ),
        keys in proptest::collection::vec(
            prop_oneof![Just('j'), Just('k'), Just('G'), Just('g'), Just('s'), Just('\t'), Just('p')],
            0..8,
        ),
    ) {
        use feedtop::feeds::{Dialect, FeedInfo, FeedKind, FeedMsg, FeedMsgKind};
        use feedtop::model::Model;
        use feedtop::ui::{draw, Theme, ViewState};
        use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let feeds = [("ch/companies", FeedKind::CompaniesHouse), ("wig80", FeedKind::WebSocket(Dialect::Wig80)), ("carbon", FeedKind::WebSocket(Dialect::Carbon))];
        let feeds = feeds.map(|(name, kind)| FeedInfo { name: name.into(), kind }).to_vec();
        let mut model = Model::new(feeds, std::time::Duration::from_secs(300), now);
        let mut facts = Vec::new();
        let mut apply = |model: &mut Model, index: usize, kind| {
            let feed = model.feeds[index].info.name.clone();
            model.apply(FeedMsg { feed, at: now, kind }, &mut facts)
        };
        for frame in &frames {
            for (feed, decoded) in [(1, wig80::decode(frame)), (2, carbon::decode(frame))] {
                match decoded {
                    Ok(Decoded::Quotes(quotes)) if !quotes.is_empty() => {
                        apply(&mut model, feed, FeedMsgKind::Quotes(quotes))
                    }
                    Ok(_) => {}
                    Err(e) => apply(&mut model, feed, FeedMsgKind::Malformed { reason: e.to_string() }),
                }
            }
        }
        for (number, name, detail, timepoint, published) in events {
            let line = json!({
                "resource_kind": "company-profile", "resource_id": "1",
                "data": {"company_number": number, "company_name": name, "company_status": "active",
                         "company_status_detail": detail},
                "event": {"timepoint": timepoint, "published_at": published},
            });
            match parse_event(line.to_string().into_bytes()) {
                Ok(ev) => apply(&mut model, 0, FeedMsgKind::Event(Box::new(ev))),
                Err(e) => apply(&mut model, 0, FeedMsgKind::Error(e.to_string())),
            }
        }
        prop_assert!(!model.quotes.is_empty(), "every generated frame has a symbol and a finite price");
        model.tick(now);
        let mut view = ViewState::new();
        let theme = Theme::new(true);
        for (i, key) in keys.into_iter().enumerate() {
            let code = if key == '\t' { KeyCode::Tab } else { KeyCode::Char(key) };
            view.handle_key(KeyEvent::new(code, KeyModifiers::NONE), &model);
            if i == 3 {
                view.focus = feedtop::ui::Focus::Tickers;
            }
        }
        for (w, h) in [(80, 24), (240, 60)] {
            let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).unwrap();
            terminal.draw(|f| draw(f, &model, &view, &theme)).unwrap();
        }
    }
}
