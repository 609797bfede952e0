//! Server-Sent Events (docs/protocols.md §4.2): an incremental
//! `text/event-stream` parser following the WHATWG rules, and the decoder for
//! the access layer's events (carbon JSON in `data`).
//!
//! The real server sends only `data: <json>\n\n` (and a heartbeat after 30 s
//! of silence), but the parser implements the whole format: CRLF/LF/CR line
//! ends split anywhere, comments, multi-line `data`, `event`, `id`, `retry`
//! and a leading BOM. Memory is bounded by `max_event_bytes`: a bigger event
//! is dropped and reported once.

use std::time::Duration;

use serde_json::Value;

use super::{carbon, clip, parse_object, string};
use crate::quote::{DecodeError, Decoded, ErrorKind};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `"message"` when there was none.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id in force when this event was dispatched (it carries
    /// over from earlier events, as in a browser); `None` when empty.
    pub id: Option<String>,
}

/// What [`SseParser::push`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    Event(SseEvent),
    /// A `:` comment line: liveness only.
    Comment,
    /// An event over the size limit was skipped (reported once per event).
    TooLong,
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Incremental `text/event-stream` parser. Feed it the body's chunks as they
/// arrive; how the bytes are split never changes the result.
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    /// The bytes of the line being read (no terminator).
    line: Vec<u8>,
    /// The previous chunk ended in CR: an LF starting the next one belongs to it.
    pending_cr: bool,
    /// Still at the start of the stream, where one BOM is skipped.
    at_start: bool,
    /// How many BOM bytes were swallowed so far at the start.
    bom_matched: usize,
    /// Skipping the rest of an over-long event, up to the next blank line.
    discarding: bool,
    /// While discarding: the current line has bytes (so it is not blank).
    discard_line_nonempty: bool,
    /// Bytes of the event's non-comment lines so far (terminators excluded).
    event_bytes: usize,
    data: String,
    event_type: String,
    /// `id:` seen in the current event; becomes `last_event_id` on dispatch.
    id_buffer: String,
    last_event_id: String,
    retry: Option<Duration>,
}

impl SseParser {
    /// `max_event_bytes` bounds one event: the bytes of its lines, comments
    /// excepted, without the line terminators. A single line (even a comment)
    /// that would take the event over the limit drops the event. The limit is
    /// on bytes as received: invalid UTF-8 becomes U+FFFD (three bytes for
    /// one), so an event's decoded `data` can be up to three times as long.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            line: Vec::new(),
            pending_cr: false,
            at_start: true,
            bom_matched: 0,
            discarding: false,
            discard_line_nonempty: false,
            event_bytes: 0,
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            retry: None,
        }
    }

    /// Feeds one chunk of the body; complete items are appended to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<SseItem>) {
        if self.at_start {
            while let Some((&b, rest)) = chunk.split_first() {
                if b == BOM[self.bom_matched] {
                    self.bom_matched += 1;
                    chunk = rest;
                    if self.bom_matched == BOM.len() {
                        self.at_start = false;
                        break;
                    }
                } else {
                    // Not a BOM after all: its first bytes were data.
                    self.at_start = false;
                    let swallowed = self.bom_matched;
                    self.feed(&BOM[..swallowed], out);
                    break;
                }
            }
            if self.at_start {
                return;
            }
        }
        self.feed(chunk, out);
    }

    /// The id to send as `Last-Event-ID` when reconnecting, if the server set one.
    pub fn last_event_id(&self) -> Option<&str> {
        Some(self.last_event_id.as_str()).filter(|id| !id.is_empty())
    }

    /// The reconnection delay from the last valid `retry:` line.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// After a disconnect: forget the unfinished line and event; keep the last
    /// event id and retry. The next bytes are the start of a new stream.
    pub fn reset_partial(&mut self) {
        self.line.clear();
        self.pending_cr = false;
        self.at_start = true;
        self.bom_matched = 0;
        self.discarding = false;
        self.discard_line_nonempty = false;
        self.event_bytes = 0;
        self.data.clear();
        self.event_type.clear();
        self.id_buffer.clone_from(&self.last_event_id);
    }

    /// Splits bytes into lines (CRLF, LF or CR).
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseItem>) {
        if self.pending_cr && !bytes.is_empty() {
            self.pending_cr = false;
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
        }
        while !bytes.is_empty() {
            let Some(end) = memchr::memchr2(b'\r', b'\n', bytes) else {
                self.append(bytes, out);
                return;
            };
            self.append(&bytes[..end], out);
            let terminator = bytes[end];
            bytes = &bytes[end + 1..];
            if terminator == b'\r' {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
            self.end_line(out);
        }
    }

    /// Adds bytes to the current line, or drops the event if that makes it too big.
    fn append(&mut self, bytes: &[u8], out: &mut Vec<SseItem>) {
        if bytes.is_empty() {
            return;
        }
        if self.discarding {
            self.discard_line_nonempty = true;
            return;
        }
        if self.event_bytes.saturating_add(self.line.len()).saturating_add(bytes.len()) > self.max_event_bytes {
            out.push(SseItem::TooLong);
            self.discarding = true;
            self.discard_line_nonempty = true;
            self.line.clear();
            self.data.clear();
            self.event_type.clear();
            self.event_bytes = 0;
            // The dropped event's id goes with it.
            self.id_buffer.clone_from(&self.last_event_id);
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn end_line(&mut self, out: &mut Vec<SseItem>) {
        if self.discarding {
            // A blank line ends the dropped event; parsing resumes after it.
            if !self.discard_line_nonempty {
                self.discarding = false;
            }
            self.discard_line_nonempty = false;
            return;
        }
        let line = std::mem::take(&mut self.line);
        self.process_line(&line, out);
        self.line = line;
        self.line.clear();
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseItem>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            out.push(SseItem::Comment);
            return;
        }
        self.event_bytes += line.len();
        let (name, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"event" => self.event_type = String::from_utf8_lossy(value).into_owned(),
            b"data" => {
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
            }
            b"id" if !value.contains(&0) => self.id_buffer = String::from_utf8_lossy(value).into_owned(),
            // Only all ASCII digits (so UTF-8); too many digits to fit is ignored.
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Some(ms) = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok()) {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
    }

    /// A blank line: commit the id and emit the event if it has data.
    fn dispatch(&mut self, out: &mut Vec<SseItem>) {
        self.last_event_id.clone_from(&self.id_buffer);
        self.event_bytes = 0;
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the last line's `\n`
        let event = match std::mem::take(&mut self.event_type) {
            t if t.is_empty() => "message".to_owned(),
            t => t,
        };
        out.push(SseItem::Event(SseEvent { event, data, id: self.last_event_id().map(str::to_owned) }));
    }
}

/// Longest non-JSON error text kept from an `error` event.
const MAX_ERROR_TEXT: usize = 500;

/// Decodes one event of the access layer's stream.
///
/// `connection_established` → Connected, `heartbeat` → Heartbeat, `error` →
/// ServerError; any other event's data is a carbon frame (topic + data →
/// quotes, `{"type":"heartbeat"}` → Heartbeat).
pub fn decode_event(event: &SseEvent) -> Result<Decoded, DecodeError> {
    match event.event.as_str() {
        "connection_established" => {
            let detail = match parse_object(&event.data) {
                Ok(obj) => string(obj.get("connection_id")).unwrap_or_default(),
                Err(_) => clip(event.data.trim(), MAX_ERROR_TEXT),
            };
            Ok(Decoded::Connected { detail })
        }
        "heartbeat" => Ok(Decoded::Heartbeat),
        "error" => Ok(error_event(&event.data)),
        _ => carbon::decode(&event.data),
    }
}

/// An `error` event: carbon error JSON (bare, typed or FastAPI's `detail`)
/// when it is that, else the text. The SSE client sends no requests, so an
/// error without a known code is the server's.
fn error_event(data: &str) -> Decoded {
    let unknown = |message: String| Decoded::ServerError { code: "error".to_owned(), message, kind: ErrorKind::Server };
    let Ok(obj) = parse_object(data) else {
        return unknown(clip(data.trim(), MAX_ERROR_TEXT));
    };
    if obj.contains_key("error") {
        return carbon::server_error(&obj);
    }
    if let Some(Value::Object(detail)) = obj.get("detail") {
        if detail.contains_key("error") {
            return carbon::server_error(detail);
        }
    }
    unknown(string(obj.get("message")).unwrap_or_else(|| clip(data.trim(), MAX_ERROR_TEXT)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quote::{Quote, QuoteTime};
    use proptest::prelude::*;

    const CAPTURE: &str = include_str!("../../../../tests/fixtures/captured-carbon.txt");
    const MAX: usize = 1 << 20;

    fn parse_with(max: usize, chunks: &[&[u8]]) -> Vec<SseItem> {
        let mut parser = SseParser::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            parser.push(chunk, &mut out);
        }
        out
    }

    fn parse(input: &[u8]) -> Vec<SseItem> {
        parse_with(MAX, &[input])
    }

    /// Parses `input` whole, then split in two at every byte boundary, then
    /// byte by byte: all must agree. Returns the items.
    fn parse_every_split(max: usize, input: &[u8]) -> Vec<SseItem> {
        let whole = parse_with(max, &[input]);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(parse_with(max, &[a, b]), whole, "split at {cut} of {:?}", String::from_utf8_lossy(input));
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(parse_with(max, &bytes), whole, "byte by byte");
        whole
    }

    fn event(event: &str, data: &str, id: Option<&str>) -> SseItem {
        SseItem::Event(SseEvent { event: event.into(), data: data.into(), id: id.map(Into::into) })
    }

    fn events(items: &[SseItem]) -> Vec<&SseEvent> {
        items
            .iter()
            .filter_map(|i| match i {
                SseItem::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn captured_heartbeat_chunk() {
        let line = CAPTURE.lines().find(|l| l.starts_with("<- shipped/sse-ok-chunk")).expect("chunk in capture");
        let encoded = line.splitn(3, ' ').nth(2).unwrap();
        let chunk: String = serde_json::from_str(encoded).unwrap();
        assert!(chunk.ends_with("\n\n"));
        let items = parse_every_split(MAX, chunk.as_bytes());
        assert_eq!(items, [event("message", r#"{"type": "heartbeat", "timestamp": 933520}"#, None)]);
        let SseItem::Event(e) = &items[0] else { unreachable!() };
        assert_eq!(decode_event(e), Ok(Decoded::Heartbeat));
    }

    #[test]
    fn documented_framing() {
        let input = concat!(
            "event: connection_established\n",
            "data: {\"connection_id\": \"conn-12345\", \"user_id\": \"user-123\", \"tenant_id\": \"tenant-1\"}\n",
            "\n",
            "event: data\n",
            "data: {\"topic\": \"pricing.updates\", \"data\": {\"instrument_id\": \"BRENT_CRUDE\", \"price\": 75.50}, \"timestamp\": 1705312200000}\n",
            "\n",
        );
        let items = parse_every_split(MAX, input.as_bytes());
        let decoded: Vec<_> = events(&items).into_iter().map(decode_event).collect();
        let t = chrono::DateTime::from_timestamp_millis(1_705_312_200_000).unwrap();
        assert_eq!(
            decoded,
            [
                Ok(Decoded::Connected { detail: "conn-12345".into() }),
                Ok(Decoded::Quotes(vec![Quote {
                    time: Some(QuoteTime::Absolute(t)),
                    ..Quote::new("BRENT_CRUDE", 75.5)
                }])),
            ]
        );
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn multi_line_data_and_field_forms() {
        let input = "data: a\ndata:b\ndata:  c\ndata\ndata: \n\n";
        assert_eq!(parse_every_split(MAX, input.as_bytes()), [event("message", "a\nb\n c\n\n", None)]);
        // A field name alone is an empty value; `data` alone is an (empty) event.
        assert_eq!(parse(b"data\n\n"), [event("message", "", None)]);
        // Unknown fields and field names with spaces are ignored.
        assert_eq!(parse(b"foo: bar\ndata : x\nDATA: y\ndata: z\n\n"), [event("message", "z", None)]);
        // Only one space is stripped, and only after the first colon.
        assert_eq!(parse(b"data:a: b\n\n"), [event("message", "a: b", None)]);
        // No data, no event; the event type does not leak into the next event.
        assert_eq!(parse(b"event: foo\n\ndata: x\n\n"), [event("message", "x", None)]);
        assert_eq!(parse(b"event: foo\ndata: x\n\n"), [event("foo", "x", None)]);
        assert_eq!(parse(b"event:\ndata: x\n\n"), [event("message", "x", None)]);
        // An unterminated event is not dispatched.
        assert_eq!(parse(b"data: x\n"), []);
        assert_eq!(parse(b"data: x"), []);
    }

    #[test]
    fn line_endings_mix() {
        let lf = "data: 1\ndata: 2\n\nevent: e\ndata: 3\n\n";
        let want = [event("message", "1\n2", None), event("e", "3", None)];
        for input in [
            lf.to_owned(),
            lf.replace('\n', "\r\n"),
            lf.replace('\n', "\r"),
            "data: 1\rdata: 2\r\n\nevent: e\r\ndata: 3\n\r".to_owned(),
        ] {
            assert_eq!(parse_every_split(MAX, input.as_bytes()), want, "{input:?}");
        }
        // CR at the end of one chunk, LF at the start of the next: one line end.
        assert_eq!(parse_with(MAX, &[b"data: a\r", b"\ndata: b\r", b"\n\r\n"]), [event("message", "a\nb", None)]);
        // CR CR is two line ends: a blank line.
        assert_eq!(parse(b"data: a\r\rdata: b\n\n"), [event("message", "a", None), event("message", "b", None)]);
    }

    #[test]
    fn comments() {
        let items = parse_every_split(MAX, b": hello\n:\n\n:keepalive\r\ndata: x\n: mid\n\n");
        assert_eq!(
            items,
            [SseItem::Comment, SseItem::Comment, SseItem::Comment, SseItem::Comment, event("message", "x", None)]
        );
    }

    #[test]
    fn ids() {
        let mut p = SseParser::new(MAX);
        let mut out = Vec::new();
        assert_eq!(p.last_event_id(), None);
        p.push(b"id: 1\ndata: a\n\ndata: b\n\n", &mut out);
        assert_eq!(out, [event("message", "a", Some("1")), event("message", "b", Some("1"))]);
        assert_eq!(p.last_event_id(), Some("1"));
        // An id with NUL is ignored.
        out.clear();
        p.push(b"id: 2\0x\ndata: c\n\n", &mut out);
        assert_eq!(out, [event("message", "c", Some("1"))]);
        // An id alone (no data) still moves the last event id.
        out.clear();
        p.push(b"id: 7\n\n", &mut out);
        assert_eq!((out.as_slice(), p.last_event_id()), (&[][..], Some("7")));
        // Not committed before the blank line.
        p.push(b"id: 8\ndata: d\n", &mut out);
        assert_eq!(p.last_event_id(), Some("7"));
        p.push(b"\n", &mut out);
        assert_eq!(p.last_event_id(), Some("8"));
        // `id` with no value clears it.
        out.clear();
        p.push(b"id\ndata: e\n\n", &mut out);
        assert_eq!((out.as_slice(), p.last_event_id()), (&[event("message", "e", None)][..], None));
        // Values keep inner spaces and colons.
        p.push(b"id:  a:b \n\n", &mut out);
        assert_eq!(p.last_event_id(), Some(" a:b "));
        assert_eq!(parse_every_split(MAX, b"id: x\r\ndata: 1\r\n\r\n"), [event("message", "1", Some("x"))]);
    }

    #[test]
    fn retry() {
        let retry_after = |input: &[u8]| {
            let mut p = SseParser::new(MAX);
            p.push(input, &mut Vec::new());
            p.retry()
        };
        assert_eq!(retry_after(b"retry: 0\n"), Some(Duration::ZERO));
        assert_eq!(retry_after(b"retry: 36000000\n"), Some(Duration::from_secs(36_000)));
        assert_eq!(retry_after(b"retry:1500\r"), Some(Duration::from_millis(1500)));
        assert_eq!(retry_after(b"retry: 1000\nretry: abc\n"), Some(Duration::from_secs(1)));
        for bad in [
            &b"retry: abc\n"[..],
            b"retry: 1.5\n",
            b"retry: -1\n",
            b"retry:  5\n",
            b"retry:\n",
            b"retry\n",
            b"retry: 5s\n",
        ] {
            assert_eq!(retry_after(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(retry_after(b"retry: 99999999999999999999999999\n"), None);
        assert_eq!(retry_after(b"retry: \xd9\xa3\n"), None, "non-ASCII digits");
        // Applied when the line ends, not at dispatch, and with no event at all.
        assert_eq!(retry_after(b"retry: 10\ndata: x"), Some(Duration::from_millis(10)));
    }

    #[test]
    fn over_long_event_then_a_good_one() {
        let big = format!("data: {}\n\n", "x".repeat(100));
        let input = format!("{big}data: ok\n\n");
        assert_eq!(parse_every_split(64, input.as_bytes()), [SseItem::TooLong, event("message", "ok", None)]);
        // Many lines, each small, adding up to too much: still one report.
        let many = "data: 0123456789\n".repeat(20) + "\nid: 3\ndata: fine\n\n";
        assert_eq!(parse_every_split(64, many.as_bytes()), [SseItem::TooLong, event("message", "fine", Some("3"))]);
        // Exactly at the limit is fine: "data: " + 58 = 64 bytes.
        let exact = format!("data: {}\n\n", "y".repeat(58));
        assert_eq!(parse_every_split(64, exact.as_bytes()), [event("message", &"y".repeat(58), None)]);
        let over = format!("data: {}\n\n", "y".repeat(59));
        assert_eq!(parse_with(64, &[over.as_bytes()]), [SseItem::TooLong]);
        // Comment lines do not add up, but one long comment line is too long.
        let comments = ":0123456789\n".repeat(20) + "data: x\n\n";
        assert_eq!(parse_with(16, &[comments.as_bytes()]).last(), Some(&event("message", "x", None)));
        assert_eq!(parse_with(16, &[b":01234567890123456789\ndata: x\n\n"]), [SseItem::TooLong]);
        // The dropped event's id is dropped too; earlier ids stay.
        let mut p = SseParser::new(32);
        let mut out = Vec::new();
        p.push(b"id: 1\ndata: a\n\nid: 2\ndata: 0123456789012345678901234567890123456789\n\n", &mut out);
        assert_eq!(out, [event("message", "a", Some("1")), SseItem::TooLong]);
        assert_eq!(p.last_event_id(), Some("1"));
        p.push(b"data: b\n\n", &mut out);
        assert_eq!(out[2], event("message", "b", Some("1")));
        assert_eq!(p.last_event_id(), Some("1"));
    }

    #[test]
    fn an_unterminated_flood_is_bounded() {
        let mut p = SseParser::new(1024);
        let mut out = Vec::new();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..160 {
            p.push(&chunk, &mut out); // 10 MiB, no newline
            assert!(p.line.len() <= 1024);
        }
        assert_eq!(out, [SseItem::TooLong]);
        p.push(b"\n\ndata: after\n\n", &mut out);
        assert_eq!(out, [SseItem::TooLong, event("message", "after", None)]);
    }

    #[test]
    fn bom_at_stream_start_only() {
        assert_eq!(parse_every_split(MAX, b"\xEF\xBB\xBFdata: x\n\n"), [event("message", "x", None)]);
        // A second BOM is part of the first field name, which is then unknown.
        assert_eq!(parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n"), []);
        // Bytes that start like a BOM but are not one are kept.
        assert_eq!(parse_every_split(MAX, b"\xEF\xBBdata: x\n\n"), []);
        assert_eq!(parse_every_split(MAX, b"\xEFdata: x\n\ndata: y\n\n"), [event("message", "y", None)]);
        let mut p = SseParser::new(MAX);
        let mut out = Vec::new();
        p.push(b"\xEF", &mut out);
        p.push(b"\xBB", &mut out);
        p.push(b"\xBFdata: 1\n\n", &mut out);
        // A reconnect is a new stream: a BOM there is skipped again.
        p.reset_partial();
        p.push(b"\xEF\xBB\xBFdata: 2\n\n", &mut out);
        assert_eq!(out, [event("message", "1", None), event("message", "2", None)]);
    }

    #[test]
    fn reset_partial_drops_the_half_event_and_keeps_id_and_retry() {
        let mut p = SseParser::new(MAX);
        let mut out = Vec::new();
        p.push(b"retry: 5000\nid: 5\ndata: one\n\nid: 6\nevent: odd\ndata: hal", &mut out);
        assert_eq!(out, [event("message", "one", Some("5"))]);
        p.reset_partial();
        assert_eq!((p.last_event_id(), p.retry()), (Some("5"), Some(Duration::from_secs(5))));
        out.clear();
        p.push(b"f\n\ndata: new\n\n", &mut out);
        // "f" is a field line of the new stream (ignored), then a blank line.
        assert_eq!(out, [event("message", "new", Some("5"))]);
        // A CR pending at the disconnect does not eat the new stream's LF.
        let mut p = SseParser::new(MAX);
        out.clear();
        p.push(b"data: a\r", &mut out);
        p.reset_partial();
        p.push(b"\ndata: b\n\n", &mut out);
        assert_eq!(out, [event("message", "b", None)]);
        // Nor does an over-long event in progress swallow the new stream.
        let mut p = SseParser::new(8);
        out.clear();
        p.push(b"data: 0123456789", &mut out);
        p.reset_partial();
        p.push(b"data: b\n\n", &mut out);
        assert_eq!(out, [SseItem::TooLong, event("message", "b", None)]);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let items = parse_every_split(MAX, b"event: \xff\ndata: a\xc3\n\n");
        assert_eq!(items, [event("\u{fffd}", "a\u{fffd}", None)]);
    }

    #[test]
    fn decode_event_variants() {
        let ev = |event: &str, data: &str| SseEvent { event: event.into(), data: data.into(), id: None };
        assert_eq!(decode_event(&ev("heartbeat", "")), Ok(Decoded::Heartbeat));
        assert_eq!(decode_event(&ev("message", r#"{"type":"heartbeat","timestamp":1}"#)), Ok(Decoded::Heartbeat));
        assert_eq!(
            decode_event(&ev("connection_established", "conn-1")),
            Ok(Decoded::Connected { detail: "conn-1".into() })
        );
        assert_eq!(
            decode_event(&ev("error", r#"{"error":"TOKEN_EXPIRED","message":"expired"}"#)),
            Ok(Decoded::ServerError { code: "TOKEN_EXPIRED".into(), message: "expired".into(), kind: ErrorKind::Auth })
        );
        assert_eq!(
            decode_event(&ev("error", r#"{"detail":{"error":"AUTH_SERVICE_ERROR","message":"down"}}"#)),
            Ok(Decoded::ServerError {
                code: "AUTH_SERVICE_ERROR".into(),
                message: "down".into(),
                kind: ErrorKind::Server
            })
        );
        assert_eq!(
            decode_event(&ev("error", "stream broke")),
            Ok(Decoded::ServerError { code: "error".into(), message: "stream broke".into(), kind: ErrorKind::Server })
        );
        assert_eq!(
            decode_event(&ev("error", r#"{"message":"m"}"#)),
            Ok(Decoded::ServerError { code: "error".into(), message: "m".into(), kind: ErrorKind::Server })
        );
        let data = r#"{"topic":"t","data":{"instrument_id":"X","price":2},"timestamp":976782}"#;
        for name in ["message", "data", "anything"] {
            assert_eq!(decode_event(&ev(name, data)), Ok(Decoded::Quotes(vec![Quote::new("X", 2.0)])), "{name}");
        }
        // The data is still checked.
        assert!(matches!(decode_event(&ev("message", "")), Err(DecodeError::NotJson(_))));
        assert_eq!(decode_event(&ev("data", "[1,2,3]")), Err(DecodeError::NotObject));
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(decode_event(&ev("message", &deep)).is_err());
        assert!(matches!(decode_event(&ev("error", &deep)), Ok(Decoded::ServerError { kind: ErrorKind::Server, .. })));
        let Ok(Decoded::ServerError { message, .. }) = decode_event(&ev("error", &"e".repeat(10 << 20))) else {
            panic!()
        };
        assert!(message.len() < 1024);
    }

    #[test]
    fn hostile_streams_do_not_panic() {
        let inputs: [&[u8]; 6] = [
            b"",
            b"\0\0\0\xff\xfe\r\r\n\n::::\xEF\xBB\xBF",
            b"data:\0\n\n",
            b"\n\n\n\r\r\r\r\n",
            b"retry: 18446744073709551616\nid:\0\nevent\n\n",
            b":\xff\n",
        ];
        for input in inputs {
            for max in [0, 1, 5, MAX] {
                parse_every_split(max, input);
            }
        }
        assert_eq!(parse_with(0, &[b"data: x\n\n:c\n\n"]), [SseItem::TooLong, SseItem::TooLong]);
    }

    /// Cuts `input` at the given (unordered, out-of-range) points.
    fn split_at_points<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = points.iter().map(|p| p % (input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts {
            chunks.push(&input[start..cut]);
            start = cut;
        }
        chunks.push(&input[start..]);
        chunks
    }

    /// One generated event: (event type, data lines, id, line ending).
    type GenEvent = (String, Vec<String>, Option<String>, &'static str);

    fn field_text() -> impl Strategy<Value = String> {
        // Anything but CR and LF, including spaces, colons, NUL and non-ASCII.
        let ch = prop_oneof![
            4 => proptest::char::range(' ', '~'),
            1 => Just(':'),
            1 => Just(' '),
            1 => Just('\0'),
            1 => proptest::char::range('\u{a0}', '\u{2fff}'),
        ];
        proptest::collection::vec(ch, 0..12).prop_map(String::from_iter)
    }

    fn gen_event() -> impl Strategy<Value = GenEvent> {
        (
            proptest::collection::vec(proptest::char::range('a', 'z'), 0..6).prop_map(String::from_iter),
            proptest::collection::vec(field_text(), 1..4),
            proptest::option::of(field_text()),
            prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_any_chunking_no_panic_same_items(
            input in proptest::collection::vec(
                prop_oneof![
                    4 => any::<u8>(),
                    2 => Just(b'\n'),
                    1 => Just(b'\r'),
                    1 => Just(b':'),
                ],
                0..300,
            ),
            points in proptest::collection::vec(any::<usize>(), 0..12),
            max in prop_oneof![Just(0usize), 1usize..40, Just(MAX)],
        ) {
            let whole = parse_with(max, &[&input]);
            let chunked = parse_with(max, &split_at_points(&input, &points));
            prop_assert_eq!(chunked, whole);
        }

        #[test]
        fn generated_events_come_back_exactly(
            generated in proptest::collection::vec((gen_event(), any::<bool>()), 0..8),
            points in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let mut wire = String::new();
            let mut want = Vec::new();
            let mut last_id = String::new();
            for ((event_type, data, id, eol), comment) in &generated {
                if *comment {
                    wire.push_str(": note");
                    wire.push_str(eol);
                    want.push(SseItem::Comment);
                }
                if !event_type.is_empty() {
                    wire.push_str(&format!("event: {event_type}{eol}"));
                }
                if let Some(id) = id {
                    wire.push_str(&format!("id: {id}{eol}"));
                    if !id.contains('\0') {
                        last_id.clone_from(id);
                    }
                }
                for line in data {
                    wire.push_str(&format!("data: {line}{eol}"));
                }
                wire.push_str(eol);
                want.push(event(
                    if event_type.is_empty() { "message" } else { event_type },
                    &data.join("\n"),
                    Some(last_id.as_str()).filter(|id| !id.is_empty()),
                ));
            }
            let got = parse_with(MAX, &split_at_points(wire.as_bytes(), &points));
            prop_assert_eq!(got, want);
        }
    }
}
