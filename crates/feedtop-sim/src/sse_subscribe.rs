//! The SSE simulator's `POST /sse/subscribe` (docs/protocols.md §4.3): which
//! connection ids are open, which topics each subscribed to, and the answers.
//!
//! The success body is the documented one. The real service's refusals are
//! not documented; these are invented in the shape its other errors have
//! (FastAPI's `{"detail":{"error":CODE,"message":…}}`, and its own 422 for a
//! missing form field):
//! - unknown connection id: 404 `CONNECTION_NOT_FOUND`;
//! - a topic the server does not carry: 400 `INVALID_TOPIC_FORMAT` (the
//!   WebSocket's code for the same mistake);
//! - a topic refused by [`SseSubscribeConfig::refuse`]: 403
//!   `SUBSCRIPTION_DENIED` (the docs' error event code);
//! - `filters` that are not a JSON object: 400 `INVALID_FILTERS`;
//! - a missing or wrong token: 401, as on the stream.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::carbon::TOPICS;
use super::{Recent, RECENT_KEPT};
use crate::lock;
use crate::py::py_json;

/// The subscribe endpoint's path.
pub const SUBSCRIBE_PATH: &str = "/sse/subscribe";

/// How the subscribe endpoint behaves. The default keeps the simulator as
/// it was before the endpoint existed: one topic, sent to every connection.
#[derive(Debug, Clone, Default)]
pub struct SseSubscribeConfig {
    /// Publish every built-in topic (`carbon::TOPICS`) and send a connection
    /// only the topics it subscribed to, as the documented server does.
    /// Off: `SSE_TOPIC` only, to every connection, subscribed or not.
    pub required: bool,
    /// Topics every subscribe is refused for (403 `SUBSCRIPTION_DENIED`).
    pub refuse: Vec<String>,
    /// Answer every subscribe with this redirect (`code`, `Location`).
    pub redirect: Option<(u16, String)>,
}

/// One subscribe request the server read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeRequest {
    pub method: String,
    pub connection_id: Option<String>,
    pub topic: Option<String>,
    /// `filters` as sent (JSON text).
    pub filters: Option<String>,
    /// Whether `?token=` matched.
    pub token_ok: bool,
    /// The status answered.
    pub status: u16,
}

/// How the request's token compared with the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    Ok,
    Missing,
    Invalid,
}

/// An answer to write: status, extra header lines, JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub code: u16,
    pub headers: String,
    pub body: String,
}

/// Open connections and their subscriptions.
pub(crate) struct Registry {
    config: SseSubscribeConfig,
    /// Open connection id → subscribed topics. An entry lives as long as its stream.
    open: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Every connection id made, in order (the last [`RECENT_KEPT`]).
    ids: Mutex<Recent<String>>,
    requests: Mutex<Recent<SubscribeRequest>>,
    count: watch::Sender<usize>,
}

/// Keeps a connection id open until dropped (the stream ended).
pub(crate) struct Open<'a> {
    registry: &'a Registry,
    pub id: String,
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        lock(&self.registry.open).remove(&self.id);
    }
}

#[derive(Serialize)]
struct Success<'a> {
    success: bool,
    topic: &'a str,
    filters: &'a Map<String, Value>,
    connection_id: &'a str,
}

fn error(code: u16, error: &str, message: &str) -> Answer {
    let body = serde_json::json!({"detail": {"error": error, "message": message}});
    Answer { code, headers: String::new(), body: body.to_string() }
}

/// FastAPI's answer to a missing form field.
fn missing(field: &str) -> Answer {
    let body = serde_json::json!({"detail": [{"type": "missing", "loc": ["body", field], "msg": "Field required", "input": null}]});
    Answer { code: 422, headers: String::new(), body: body.to_string() }
}

impl Registry {
    pub(crate) fn new(config: SseSubscribeConfig) -> Self {
        Self {
            config,
            open: Mutex::new(HashMap::new()),
            ids: Mutex::new(Recent::new(RECENT_KEPT)),
            requests: Mutex::new(Recent::new(RECENT_KEPT)),
            count: watch::Sender::new(0),
        }
    }

    /// The topics published: all built-in ones when subscriptions decide.
    pub(crate) fn published_topics(&self) -> Vec<&'static str> {
        if self.config.required {
            TOPICS.to_vec()
        } else {
            vec![super::sse::SSE_TOPIC]
        }
    }

    /// Registers a new stream's id.
    pub(crate) fn open(&self, id: String) -> Open<'_> {
        lock(&self.open).insert(id.clone(), BTreeSet::new());
        lock(&self.ids).push(id.clone());
        Open { registry: self, id }
    }

    /// Whether an event of `topic` goes to connection `id`.
    pub(crate) fn delivers(&self, id: &str, topic: &str) -> bool {
        !self.config.required || lock(&self.open).get(id).is_some_and(|topics| topics.contains(topic))
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        lock(&self.ids).to_vec()
    }

    pub(crate) fn requests(&self) -> Vec<SubscribeRequest> {
        lock(&self.requests).to_vec()
    }

    pub(crate) fn count(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// Answers one request to the subscribe path and records it.
    pub(crate) fn handle(&self, method: &str, token: Token, body: &[u8]) -> Answer {
        let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
        let answer = self.answer(method, token, &form);
        let count = lock(&self.requests).push(SubscribeRequest {
            method: method.to_owned(),
            connection_id: form.get("connection_id").cloned(),
            topic: form.get("topic").cloned(),
            filters: form.get("filters").cloned(),
            token_ok: token == Token::Ok,
            status: answer.code,
        });
        self.count.send_replace(count);
        answer
    }

    fn answer(&self, method: &str, token: Token, form: &HashMap<String, String>) -> Answer {
        if method != "POST" {
            return Answer { code: 405, headers: String::new(), body: r#"{"detail":"Method Not Allowed"}"#.into() };
        }
        if let Some((code, location)) = &self.config.redirect {
            let body = r#"{"detail":"moved"}"#.into();
            return Answer { code: *code, headers: format!("location: {location}\r\n"), body };
        }
        match token {
            Token::Missing => return error(401, "MISSING_TOKEN", "SSE token required"),
            Token::Invalid => return error(401, "INVALID_TOKEN", "Invalid SSE token"),
            Token::Ok => {}
        }
        let Some(id) = form.get("connection_id") else { return missing("connection_id") };
        let Some(topic) = form.get("topic") else { return missing("topic") };
        let filters = match form.get("filters").map(|f| serde_json::from_str::<Value>(f)) {
            None => Map::new(),
            Some(Ok(Value::Object(filters))) => filters,
            Some(_) => return error(400, "INVALID_FILTERS", "filters must be a JSON object"),
        };
        if !TOPICS.contains(&topic.as_str()) {
            return error(400, "INVALID_TOPIC_FORMAT", &format!("Invalid topic: {topic}"));
        }
        if self.config.refuse.contains(topic) {
            return error(403, "SUBSCRIPTION_DENIED", &format!("Insufficient permissions for topic {topic}"));
        }
        match lock(&self.open).get_mut(id) {
            Some(topics) => topics.insert(topic.clone()),
            None => return error(404, "CONNECTION_NOT_FOUND", &format!("SSE connection {id} not found")),
        };
        let body = py_json(&Success { success: true, topic, filters: &filters, connection_id: id });
        Answer { code: 200, headers: String::new(), body }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes()
    }

    fn json(answer: &Answer) -> Value {
        serde_json::from_str(&answer.body).unwrap()
    }

    #[test]
    fn subscribes_an_open_connection_and_delivers_only_its_topics() {
        let r = Registry::new(SseSubscribeConfig { required: true, ..Default::default() });
        let open = r.open("c1".into());
        assert!(!r.delivers("c1", TOPICS[0]), "nothing before a subscribe");
        let body = form(&[("connection_id", "c1"), ("topic", TOPICS[0]), ("filters", r#"{"commodity":"oil"}"#)]);
        let answer = r.handle("POST", Token::Ok, &body);
        assert_eq!(answer.code, 200, "{answer:?}");
        assert_eq!(
            answer.body,
            format!(
                r#"{{"success": true, "topic": "{}", "filters": {{"commodity": "oil"}}, "connection_id": "c1"}}"#,
                TOPICS[0]
            )
        );
        assert!(r.delivers("c1", TOPICS[0]) && !r.delivers("c1", TOPICS[1]));
        drop(open);
        assert!(!r.delivers("c1", TOPICS[0]), "forgotten with its stream");
        let again = r.handle("POST", Token::Ok, &body);
        assert_eq!((again.code, json(&again)["detail"]["error"].as_str()), (404, Some("CONNECTION_NOT_FOUND")));
        assert_eq!(r.requests().len(), 2);
        assert_eq!(r.ids(), ["c1"]);
    }

    #[test]
    fn refusals() {
        let r = Registry::new(SseSubscribeConfig { required: true, refuse: vec![TOPICS[1].into()], redirect: None });
        let _open = r.open("c1".into());
        let code = |method: &str, token: Token, pairs: &[(&str, &str)]| {
            let a = r.handle(method, token, &form(pairs));
            (a.code, json(&a)["detail"].clone())
        };
        let ok = [("connection_id", "c1"), ("topic", TOPICS[0])];
        assert_eq!(code("POST", Token::Missing, &ok).0, 401);
        assert_eq!(code("POST", Token::Invalid, &ok).1["error"], "INVALID_TOKEN");
        assert_eq!(code("GET", Token::Ok, &ok).0, 405);
        assert_eq!(code("POST", Token::Ok, &[("topic", TOPICS[0])]).0, 422);
        assert_eq!(
            code("POST", Token::Ok, &[("connection_id", "c1"), ("topic", "x.y")]).1["error"],
            "INVALID_TOPIC_FORMAT"
        );
        assert_eq!(
            code("POST", Token::Ok, &[("connection_id", "c1"), ("topic", TOPICS[1])]).1["error"],
            "SUBSCRIPTION_DENIED"
        );
        let bad_filters = [("connection_id", "c1"), ("topic", TOPICS[0]), ("filters", "[1]")];
        assert_eq!(code("POST", Token::Ok, &bad_filters).1["error"], "INVALID_FILTERS");
        assert_eq!(code("POST", Token::Ok, &ok).0, 200, "no filters is none");
    }

    #[test]
    fn without_required_everything_is_delivered_on_one_topic() {
        let r = Registry::new(SseSubscribeConfig::default());
        assert!(r.delivers("anyone", super::super::sse::SSE_TOPIC));
        assert_eq!(r.published_topics(), [super::super::sse::SSE_TOPIC]);
        let r = Registry::new(SseSubscribeConfig { required: true, ..Default::default() });
        assert_eq!(r.published_topics(), TOPICS);
    }
}
