//! The access layer's documented SSE subscription flow (docs/protocols.md
//! §4.3), the pure half: where the connection id is, where to post, what to
//! post, and what the answer means. The I/O is in `feeds/sse_subscribe.rs`.
//!
//! The documented stream opens with `event: connection_established` whose
//! data carries `connection_id`; the client then posts one form per topic to
//! `/sse/subscribe` on the same origin. The real server sends no such event,
//! so the flow there cannot start: [`connection_id`] is what tells the two apart.

use serde_json::{Map, Value};
use url::Url;

use super::sse::SseEvent;
use super::{clip, parse_object, string};

/// The path of the subscribe endpoint, beside `/sse/stream`.
pub const SUBSCRIBE_PATH: &str = "/sse/subscribe";

/// A connection id longer than this is not one (ids are UUIDs or
/// `conn-12345`); it would go back in every subscribe body.
pub const MAX_CONNECTION_ID: usize = 256;

/// Longest piece of a refusal kept for the error line.
const MAX_REASON: usize = 200;

/// What an event says about the connection id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionId {
    /// Not a `connection_established` event.
    NotAnnounced,
    /// The id to subscribe with.
    Id(String),
    /// A `connection_established` without a usable id; why.
    Unusable(&'static str),
}

/// The connection id a `connection_established` event carries: the
/// documented `event: connection_established` with the id in its JSON data,
/// or a data-only event whose JSON says `"type": "connection_established"`
/// (the WebSocket's shape, should the stream ever send it that way).
pub fn connection_id(event: &SseEvent) -> ConnectionId {
    let data = parse_object(&event.data).ok();
    let announced = event.event == "connection_established"
        || data.as_ref().and_then(|d| d.get("type")).and_then(Value::as_str) == Some("connection_established");
    if !announced {
        return ConnectionId::NotAnnounced;
    }
    let Some(data) = data else { return ConnectionId::Unusable("its data is not a JSON object") };
    match data.get("connection_id") {
        Some(Value::String(id)) if id.trim().is_empty() => ConnectionId::Unusable("its connection_id is empty"),
        Some(Value::String(id)) if id.len() > MAX_CONNECTION_ID => {
            ConnectionId::Unusable("its connection_id is longer than 256 bytes")
        }
        Some(Value::String(id)) if id.chars().any(char::is_control) => {
            ConnectionId::Unusable("its connection_id contains a control character")
        }
        Some(Value::String(id)) => ConnectionId::Id(id.clone()),
        Some(_) => ConnectionId::Unusable("its connection_id is not a string"),
        None => ConnectionId::Unusable("it has no connection_id"),
    }
}

/// `/sse/subscribe` on the stream's origin (scheme, host and port), with the
/// stream URL's query kept: that is where the stream's own token and any
/// other access parameters travel. Never another origin, whatever the
/// server says, so the token goes nowhere the stream did not already go.
pub fn subscribe_url(stream_url: &str) -> Result<Url, String> {
    let mut url = Url::parse(stream_url).map_err(|e| format!("the stream URL is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the stream URL's scheme is {:?}, not http or https", url.scheme()));
    }
    url.set_path(SUBSCRIBE_PATH);
    url.set_fragment(None);
    Ok(url)
}

/// The form body of one subscribe: `connection_id=…&topic=…&filters=…`,
/// `filters` a JSON object (`{}` for none), all form-encoded.
pub fn form_body(connection_id: &str, topic: &str, filters: Option<&Map<String, Value>>) -> String {
    let filters = filters.map_or_else(|| "{}".to_owned(), |f| Value::Object(f.clone()).to_string());
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("connection_id", connection_id)
        .append_pair("topic", topic)
        .append_pair("filters", &filters)
        .finish()
}

/// What the answer to a subscribe means: `Ok` only for a 2xx status whose
/// body is a JSON object with `"success": true`; otherwise why not, in one
/// short line (the server's text is clipped, not trusted to be short).
pub fn answer(status: u16, body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let parsed = parse_object(text).ok();
    if !(200..300).contains(&status) {
        let why = parsed.as_ref().and_then(error_text).or_else(|| first_line(text));
        return Err(match why {
            Some(why) => format!("HTTP {status}: {why}"),
            None => format!("HTTP {status}"),
        });
    }
    let Some(obj) = parsed else {
        return Err(match first_line(text) {
            Some(start) => format!("HTTP {status} with a body that is not a JSON object: {start}"),
            None => format!("HTTP {status} with an empty body, not the JSON answer"),
        });
    };
    match obj.get("success") {
        Some(Value::Bool(true)) => Ok(()),
        Some(Value::Bool(false)) => Err(match error_text(&obj) {
            Some(why) => format!("success false: {why}"),
            None => "success false".to_owned(),
        }),
        _ => Err("the answer has no \"success\": true".to_owned()),
    }
}

/// `{"detail":{"error":…,"message":…}}`, `{"error":…,"message":…}`,
/// `{"detail":"…"}` or `{"message":"…"}` as `CODE: message`.
fn error_text(obj: &Map<String, Value>) -> Option<String> {
    let inner = match obj.get("detail") {
        Some(Value::Object(detail)) => detail,
        Some(Value::String(detail)) => return Some(clip(detail, MAX_REASON)),
        _ => obj,
    };
    let code = string(inner.get("error"));
    let message = string(inner.get("message"));
    let text = match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => return None,
    };
    Some(clip(&text, MAX_REASON))
}

/// The first line of a non-HTML body, clipped; `None` when there is nothing to show.
fn first_line(text: &str) -> Option<String> {
    let line = text.lines().next().unwrap_or("").trim();
    (!line.is_empty() && !line.starts_with('<')).then(|| clip(line, MAX_REASON))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent { event: event.into(), data: data.into(), id: None }
    }

    #[test]
    fn the_documented_event_gives_the_id() {
        let hello = r#"{"connection_id": "conn-12345", "user_id": "user-123", "tenant_id": "tenant-1"}"#;
        assert_eq!(connection_id(&ev("connection_established", hello)), ConnectionId::Id("conn-12345".into()));
        let typed = r#"{"type":"connection_established","connection_id":"3f0c"}"#;
        assert_eq!(connection_id(&ev("message", typed)), ConnectionId::Id("3f0c".into()));
    }

    #[test]
    fn other_events_announce_nothing() {
        let data = r#"{"topic": "t", "data": {"instrument_id": "X", "price": 1}}"#;
        assert_eq!(connection_id(&ev("message", data)), ConnectionId::NotAnnounced);
        assert_eq!(connection_id(&ev("data", data)), ConnectionId::NotAnnounced);
        let beat = r#"{"type": "heartbeat", "timestamp": 933520}"#;
        assert_eq!(connection_id(&ev("message", beat)), ConnectionId::NotAnnounced);
        assert_eq!(connection_id(&ev("message", "not json")), ConnectionId::NotAnnounced);
    }

    #[test]
    fn an_announcement_without_a_usable_id_says_why() {
        for data in [
            "conn-1",
            "{}",
            r#"{"connection_id": 7}"#,
            r#"{"connection_id": "  "}"#,
            r#"{"connection_id": "a\u0007b"}"#,
        ] {
            let got = connection_id(&ev("connection_established", data));
            assert!(matches!(got, ConnectionId::Unusable(_)), "{data}: {got:?}");
        }
        let long = format!(r#"{{"connection_id": "{}"}}"#, "x".repeat(MAX_CONNECTION_ID + 1));
        assert!(matches!(connection_id(&ev("connection_established", &long)), ConnectionId::Unusable(_)));
    }

    #[test]
    fn subscribe_url_keeps_origin_and_query_only() {
        let url = subscribe_url("http://127.0.0.1:8001/sse/stream?token=abc#x").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8001/sse/subscribe?token=abc");
        let url = subscribe_url("https://example.com/api/v1/sse/stream").unwrap();
        assert_eq!(url.as_str(), "https://example.com/sse/subscribe");
        assert!(subscribe_url("ws://h/sse/stream").is_err());
        assert!(subscribe_url("not a url").is_err());
    }

    #[test]
    fn form_body_is_form_encoded_with_json_filters() {
        assert_eq!(
            form_body("conn-1", "served.market.latest_prices.v1", None),
            "connection_id=conn-1&topic=served.market.latest_prices.v1&filters=%7B%7D"
        );
        let filters: Map<String, Value> = serde_json::from_str(r#"{"commodity":"oil"}"#).unwrap();
        let body = form_body("a b&c=d", "t", Some(&filters));
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("connection_id".into(), "a b&c=d".into()),
                ("topic".into(), "t".into()),
                ("filters".into(), r#"{"commodity":"oil"}"#.into())
            ]
        );
    }

    #[test]
    fn answers() {
        let ok = br#"{"success": true, "topic": "t", "filters": {}, "connection_id": "c"}"#;
        assert_eq!(answer(200, ok), Ok(()));
        assert_eq!(
            answer(404, br#"{"detail":{"error":"CONNECTION_NOT_FOUND","message":"Connection c not found"}}"#),
            Err("HTTP 404: CONNECTION_NOT_FOUND: Connection c not found".into())
        );
        assert_eq!(answer(403, br#"{"detail":"Forbidden"}"#), Err("HTTP 403: Forbidden".into()));
        assert_eq!(answer(502, b"<html><body>Bad gateway</body></html>"), Err("HTTP 502".into()));
        assert_eq!(
            answer(200, br#"{"success": false, "error": "SUBSCRIPTION_DENIED", "message": "no"}"#),
            Err("success false: SUBSCRIPTION_DENIED: no".into())
        );
        assert_eq!(answer(200, br#"{"topic": "t"}"#), Err("the answer has no \"success\": true".into()));
        assert_eq!(answer(200, b"OK"), Err("HTTP 200 with a body that is not a JSON object: OK".into()));
        assert!(answer(200, b"").unwrap_err().contains("empty body"));
        let long = format!(r#"{{"detail":"{}"}}"#, "y".repeat(10_000));
        assert!(answer(400, long.as_bytes()).unwrap_err().len() < 300, "clipped");
    }
}
