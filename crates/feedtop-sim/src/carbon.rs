//! A loopback carbon access layer (docs/protocols.md §3): `ws://…/ws/stream?token=…`.
//!
//! Like the real FastAPI server it accepts the socket *before* it checks the
//! token, so a bad token is an error frame and a normal close (1000), and it
//! replies in the shape its code actually sends ([`CarbonShape::Actual`]: data
//! frames without `type`, `{"action": "pong"}`, `{"error": …}`), or in the
//! shape its docs promise ([`CarbonShape::Documented`]). Data frames carry
//! commodity prices from a random walk, one frame per instrument and topic
//! every `publish_every`, to sockets subscribed to that topic only; their
//! `timestamp` alternates between epoch ms and the server's monotonic ms, as
//! the capture shows.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{self as ttime, MissedTickBehavior};

use super::prices::{commodities, commodity_of, PriceWalk};
use crate::py::{py_json, python_isoformat};
use crate::ws::{open, Incoming, WsPlan, WsScript, WsShared};
use crate::{lock, stopped};

/// The topics `subscribe` accepts.
pub const TOPICS: [&str; 3] = ["served.market.latest_prices.v1", "pricing.curve.updates.v1", "market.data.updates.v1"];
/// What `list_topics` advertises (and `subscribe` then rejects), as on the real server.
pub const LISTED_TOPICS: [&str; 3] =
    ["254carbon.pricing.curve.updates.v1", "254carbon.pricing.instrument.updates.v1", "254carbon.market.data.v1"];
/// The WebSocket endpoint.
pub const WS_PATH: &str = "/ws/stream";
const ACTIONS: [&str; 5] = ["subscribe", "unsubscribe", "ping", "list_topics", "get_stats"];
/// Identity the real server's auth stub returned.
pub(crate) const USER_ID: &str = "u1";
pub(crate) const TENANT_ID: &str = "t1";

/// Which wire shapes the server uses (docs/protocols.md §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarbonShape {
    /// What the real code sends: data frames with no `type`, `{"action": "pong", …}`,
    /// `{"action": "subscribe_response", …}`, errors as `{"error": …}`.
    Actual,
    /// What the docs show: `"type": "data"`, `{"type": "pong"}`,
    /// `{"type": "subscription_confirmed"}`, `{"type": "error", "error": …}`.
    Documented,
}

/// How the carbon simulator behaves.
#[derive(Clone)]
pub struct CarbonConfig {
    /// The one token accepted (`?token=`).
    pub token: String,
    pub shape: CarbonShape,
    /// How often every instrument's price is published.
    pub publish_every: Duration,
    /// Close sockets that sent no `{"action": "ping"}` for this long (the
    /// docs say 30 s; the real server never starts its reaper: `None`).
    pub reap_without_ping: Option<Duration>,
    /// Kafka producer down: greet, send `KAFKA_PRODUCER_NOT_STARTED`, close 1000.
    pub kafka_down: bool,
    /// Makes prices and connection ids reproducible.
    pub seed: Option<u64>,
}

/// The token never appears in a debug print.
impl std::fmt::Debug for CarbonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarbonConfig")
            .field("token", &"(redacted)")
            .field("shape", &self.shape)
            .field("publish_every", &self.publish_every)
            .field("reap_without_ping", &self.reap_without_ping)
            .field("kafka_down", &self.kafka_down)
            .field("seed", &self.seed)
            .finish()
    }
}

impl Default for CarbonConfig {
    fn default() -> Self {
        Self {
            token: "t1".into(),
            shape: CarbonShape::Actual,
            publish_every: Duration::from_secs(5),
            reap_without_ping: None,
            kafka_down: false,
            seed: None,
        }
    }
}

/// A running carbon simulator on `127.0.0.1`. Dropping it (or
/// [`CarbonSim::shutdown`]) stops the server and closes its sockets.
pub struct CarbonSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl CarbonSim {
    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(config: CarbonConfig) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut rng = config.seed.map_or_else(StdRng::from_os_rng, StdRng::seed_from_u64);
        let walk = PriceWalk::new(commodities(), Some(rng.random()));
        let shared = Arc::new(Shared {
            ws: WsShared::new(),
            token: config.token,
            shape: config.shape,
            reap: config.reap_without_ping.filter(|d| !d.is_zero()),
            kafka_down: config.kafka_down,
            clock: MonoClock::new(&mut rng),
            records: broadcast::channel(1024).0,
            published: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
            next_conn: AtomicU64::new(0),
            rng: Mutex::new(rng),
        });
        let (stop, stop_rx) = watch::channel(false);
        let every = config.publish_every.max(Duration::from_millis(1));
        let task = tokio::spawn(run(listener, shared.clone(), stop_rx, every, walk));
        Ok(Self { addr, shared, stop, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/ws/stream` (the client appends `?token=…`).
    pub fn url(&self) -> String {
        format!("ws://{}{WS_PATH}", self.addr)
    }

    /// Records published so far (per instrument and topic, delivered or not).
    pub fn published(&self) -> u64 {
        self.shared.published.load(Ordering::SeqCst)
    }

    /// Stops the server and waits until every connection is closed.
    pub async fn shutdown(self) {
        let Self { stop, task, .. } = self;
        stop.send_replace(true);
        let _ = task.await;
    }
}

impl WsScript for CarbonSim {
    fn script(&self) -> &WsShared {
        &self.shared.ws
    }
}

/// The server's monotonic clock in ms (Python's `time.monotonic()`, roughly
/// the machine's uptime): far below 10^12, so never mistaken for epoch ms.
#[derive(Debug)]
pub(crate) struct MonoClock {
    started: Instant,
    base_ms: u64,
}

impl MonoClock {
    pub(crate) fn new(rng: &mut StdRng) -> Self {
        Self { started: Instant::now(), base_ms: rng.random_range(100_000..5_000_000) }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.base_ms + self.started.elapsed().as_millis() as u64
    }
}

pub(crate) fn epoch_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

/// A UUID4-shaped id, as the real server's `connection_id`.
pub(crate) fn uuid4(rng: &mut StdRng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// One published price: a Kafka record as the access layer sees it.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) topic: &'static str,
    pub(crate) instrument: &'static str,
    pub(crate) commodity: &'static str,
    pub(crate) price: f64,
    pub(crate) volume: u64,
    pub(crate) change: f64,
    pub(crate) change_percent: f64,
    /// Epoch ms when "Kafka supplied one", else the server's monotonic ms.
    pub(crate) timestamp: u64,
    pub(crate) offset: u64,
    /// The docs' `data.timestamp` (ISO, UTC).
    pub(crate) as_of: String,
}

/// The `data` object of a data frame.
#[derive(Serialize)]
pub(crate) struct DataBody<'a> {
    instrument_id: &'a str,
    price: f64,
    volume: u64,
    currency: &'a str,
    change: f64,
    change_percent: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<&'a str>,
}

impl Record {
    /// With `documented`, the body also carries the docs' ISO `timestamp`.
    pub(crate) fn body(&self, documented: bool) -> DataBody<'_> {
        DataBody {
            instrument_id: self.instrument,
            price: self.price,
            volume: self.volume,
            currency: "USD",
            change: self.change,
            change_percent: self.change_percent,
            timestamp: documented.then_some(self.as_of.as_str()),
        }
    }
}

/// Publishes every instrument on each of `topics`: one record each (`offsets`
/// holds each topic's last offset). Within a topic
/// the timestamp kind alternates between instruments and, for each
/// instrument, from one round to the next, so even a filtered view sees both.
pub(crate) fn publish_round(
    walk: &mut PriceWalk,
    round: u64,
    topics: &[&'static str],
    offsets: &mut [u64],
    clock: &MonoClock,
) -> Vec<Record> {
    walk.step();
    let as_of = Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let mut records = Vec::new();
    for (topic, offset) in topics.iter().zip(offsets.iter_mut()) {
        for (i, q) in walk.quotes().iter().enumerate() {
            *offset += 1;
            let timestamp = if (round + i as u64) % 2 == 0 { clock.now_ms() } else { epoch_ms() };
            records.push(Record {
                topic,
                instrument: q.symbol,
                commodity: commodity_of(q.symbol).unwrap_or("other"),
                price: q.price,
                volume: q.volume,
                change: q.change,
                change_percent: q.change_percent,
                timestamp,
                offset: *offset,
                as_of: as_of.clone(),
            });
        }
    }
    records
}

struct Shared {
    ws: WsShared,
    token: String,
    shape: CarbonShape,
    reap: Option<Duration>,
    kafka_down: bool,
    clock: MonoClock,
    records: broadcast::Sender<Arc<Record>>,
    published: AtomicU64,
    /// Open, authenticated connections and their topics (for `get_stats`).
    open: Mutex<BTreeMap<u64, Vec<&'static str>>>,
    next_conn: AtomicU64,
    rng: Mutex<StdRng>,
}

async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    every: Duration,
    mut walk: PriceWalk,
) {
    let mut connections = JoinSet::new();
    let mut timer = ttime::interval_at(ttime::Instant::now() + every, every);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut offsets = [0u64; TOPICS.len()];
    let mut round = 0;
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let plan = shared.ws.accepted();
                    connections.spawn(serve_connection(socket, shared.clone(), plan));
                }
                Err(e) => {
                    tracing::debug!(target: "feedtop::sim", "carbon sim: accept failed: {e}");
                    ttime::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = timer.tick() => {
                for record in publish_round(&mut walk, round, &TOPICS, &mut offsets, &shared.clock) {
                    shared.published.fetch_add(1, Ordering::SeqCst);
                    let _ = shared.records.send(Arc::new(record));
                }
                round += 1;
            }
        }
    }
    connections.shutdown().await;
}

fn token_of(target: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
}

async fn serve_connection(socket: TcpStream, shared: Arc<Shared>, plan: WsPlan) {
    let Some((mut conn, target)) = open(socket, plan, &shared.ws, Some(WS_PATH)).await else {
        return;
    };
    let replies = Replies { shape: shared.shape };
    // FastAPI's `if not token`: an empty token is a missing one.
    let refusal = match token_of(&target).filter(|t| !t.is_empty()) {
        None => Some(replies.error("MISSING_TOKEN", "WebSocket token required".into())),
        Some(token) if token != shared.token => Some(replies.error("INVALID_TOKEN", "Invalid WebSocket token".into())),
        Some(_) => None,
    };
    if let Some(refusal) = refusal {
        if conn.send_text(refusal).await {
            conn.close(1000).await;
        }
        return;
    }
    let id = uuid4(&mut lock(&shared.rng));
    let greeting = py_json(&Established {
        kind: "connection_established",
        connection_id: &id,
        user_id: USER_ID,
        tenant_id: TENANT_ID,
    });
    if !conn.send_text(greeting).await {
        return;
    }
    if shared.kafka_down {
        if conn.send_text(replies.error("KAFKA_PRODUCER_NOT_STARTED", "Producer not started".into())).await {
            conn.close(1000).await;
        }
        return;
    }
    let mut session = Session::new(&shared, id);
    let mut records = shared.records.subscribe();
    let mut last_ping = ttime::Instant::now();
    loop {
        let frames: Vec<String> = tokio::select! {
            record = records.recv() => match record {
                Ok(record) => session.data_frame(&record).into_iter().collect(),
                Err(broadcast::error::RecvError::Lagged(_)) => Vec::new(),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = reap_at(shared.reap.map(|reap| last_ping + reap)) => {
                conn.close(1000).await;
                return;
            }
            incoming = conn.next() => match incoming {
                Incoming::Text(text) => {
                    shared.ws.record(&text);
                    let (frames, pinged) = session.handle(&text);
                    if pinged {
                        last_ping = ttime::Instant::now();
                    }
                    frames
                }
                Incoming::Binary(_) => vec![replies.error("INTERNAL_ERROR", "Internal server error".into())],
                Incoming::Other => Vec::new(),
                Incoming::Gone | Incoming::Dropped => return,
            },
        };
        for frame in frames {
            if !conn.send_text(frame).await {
                return;
            }
        }
    }
}

async fn reap_at(deadline: Option<ttime::Instant>) {
    match deadline {
        Some(at) => ttime::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `"action": …` in the actual shape, `"type": …` in the documented one.
#[derive(Serialize)]
enum Tag {
    #[serde(rename = "action")]
    Action(&'static str),
    #[serde(rename = "type")]
    Type(&'static str),
}

#[derive(Serialize)]
struct Established<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    connection_id: &'a str,
    user_id: &'a str,
    tenant_id: &'a str,
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    available_actions: Option<&'a [&'a str]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<TopicDetail>,
}

#[derive(Serialize)]
struct TopicDetail {
    topic: String,
}

#[derive(Serialize)]
struct FailedTopic<'a> {
    topic: String,
    error: &'a str,
}

#[derive(Serialize)]
struct SubscribeResponse<'a> {
    #[serde(flatten)]
    tag: Tag,
    subscribed_topics: &'a [&'a str],
    failed_topics: &'a [FailedTopic<'a>],
    success: bool,
}

#[derive(Serialize)]
struct UnsubscribeResponse<'a> {
    #[serde(flatten)]
    tag: Tag,
    unsubscribed_topics: &'a [&'a str],
    failed_topics: &'a [FailedTopic<'a>],
    success: bool,
}

#[derive(Serialize)]
struct Confirmed<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    topics: &'a [&'a str],
}

#[derive(Serialize)]
struct ActionPong {
    action: &'static str,
    timestamp: u64,
}

#[derive(Serialize)]
struct TypePong {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct TopicsList<'a> {
    #[serde(flatten)]
    tag: Tag,
    subscribed_topics: &'a [&'a str],
    available_topics: &'a [&'a str],
}

#[derive(Serialize)]
struct StatsResponse<'a> {
    #[serde(flatten)]
    tag: Tag,
    connection_stats: ConnectionStats,
    connection_info: ConnectionInfo<'a>,
}

#[derive(Serialize)]
struct ConnectionStats {
    total_connections: usize,
    max_connections: usize,
    user_connections: usize,
    tenant_connections: usize,
    topic_subscribers: usize,
    topics: Vec<&'static str>,
}

#[derive(Serialize)]
struct ConnectionInfo<'a> {
    connection_id: &'a str,
    user_id: &'a str,
    tenant_id: &'a str,
    subscribed_topics: &'a [&'a str],
    created_at: &'a str,
    last_heartbeat: &'a str,
}

#[derive(Serialize)]
struct DataFrame<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    topic: &'a str,
    data: DataBody<'a>,
    timestamp: u64,
    partition: u32,
    offset: u64,
}

/// Builds frames in the configured shape.
#[derive(Clone, Copy)]
struct Replies {
    shape: CarbonShape,
}

impl Replies {
    fn documented(self) -> bool {
        self.shape == CarbonShape::Documented
    }

    fn tag(self, name: &'static str) -> Tag {
        if self.documented() {
            Tag::Type(name)
        } else {
            Tag::Action(name)
        }
    }

    fn error(self, code: &str, message: String) -> String {
        self.error_frame(ErrorFrame { kind: None, error: code, message, available_actions: None, details: None })
    }

    fn error_frame(self, mut frame: ErrorFrame<'_>) -> String {
        if self.documented() {
            frame.kind = Some("error");
        }
        py_json(&frame)
    }
}

/// What a subscription lets through.
#[derive(Debug, Clone, Default)]
struct Filter {
    commodities: Option<Vec<String>>,
    instruments: Option<Vec<String>>,
}

impl Filter {
    /// `{"commodity": "oil"}` or `{"commodity": ["oil", "gas"]}`, and the
    /// same for `instrument_id`; other keys (e.g. `region`) are ignored.
    fn parse(filters: Option<&Value>) -> Self {
        let list = |key: &str| {
            let value = filters?.get(key)?;
            let items: Vec<String> = match value {
                Value::String(s) => vec![s.to_lowercase()],
                Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_lowercase).collect(),
                _ => return None,
            };
            Some(items)
        };
        Self { commodities: list("commodity"), instruments: list("instrument_id") }
    }

    fn allows(&self, record: &Record) -> bool {
        let commodity_ok = self.commodities.as_ref().is_none_or(|c| c.iter().any(|c| c == record.commodity));
        let instrument_ok =
            self.instruments.as_ref().is_none_or(|i| i.iter().any(|i| i.eq_ignore_ascii_case(record.instrument)));
        commodity_ok && instrument_ok
    }
}

/// One authenticated connection's state.
struct Session<'a> {
    shared: &'a Shared,
    replies: Replies,
    key: u64,
    id: String,
    topics: BTreeMap<&'static str, Filter>,
    created_at: String,
    last_heartbeat: String,
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, id: String) -> Self {
        let key = shared.next_conn.fetch_add(1, Ordering::SeqCst);
        lock(&shared.open).insert(key, Vec::new());
        let now = python_isoformat(Utc::now().naive_utc());
        Session {
            shared,
            replies: Replies { shape: shared.shape },
            key,
            id,
            topics: BTreeMap::new(),
            created_at: now.clone(),
            last_heartbeat: now,
        }
    }

    fn topic_names(&self) -> Vec<&'static str> {
        self.topics.keys().copied().collect()
    }

    fn sync(&self) {
        lock(&self.shared.open).insert(self.key, self.topic_names());
    }

    fn data_frame(&self, record: &Record) -> Option<String> {
        let filter = self.topics.get(record.topic)?;
        if !filter.allows(record) {
            return None;
        }
        let documented = self.replies.documented();
        Some(py_json(&DataFrame {
            kind: documented.then_some("data"),
            topic: record.topic,
            data: record.body(documented),
            timestamp: record.timestamp,
            partition: 0,
            offset: record.offset,
        }))
    }

    /// The replies to one client text frame, and whether it was a ping.
    fn handle(&mut self, text: &str) -> (Vec<String>, bool) {
        let replies = self.replies;
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(_) => return (vec![replies.error("INVALID_JSON", "Message must be valid JSON".into())], false),
        };
        let Some(message) = value.as_object() else {
            return (vec![replies.error("INVALID_FORMAT", "Message must be a JSON object".into())], false);
        };
        let Some(action) = message.get("action") else {
            return (vec![replies.error("INVALID_FORMAT", "Message must have 'action' field".into())], false);
        };
        let data = message.get("data");
        let frames = match action.as_str() {
            Some("subscribe") => self.subscribe(data),
            Some("unsubscribe") => self.unsubscribe(data),
            Some("ping") => {
                self.last_heartbeat = python_isoformat(Utc::now().naive_utc());
                let pong = if replies.documented() {
                    py_json(&TypePong { kind: "pong" })
                } else {
                    py_json(&ActionPong { action: "pong", timestamp: self.shared.clock.now_ms() })
                };
                return (vec![pong], true);
            }
            Some("list_topics") => vec![py_json(&TopicsList {
                tag: replies.tag("topics_list"),
                subscribed_topics: &self.topic_names(),
                available_topics: &LISTED_TOPICS,
            })],
            Some("get_stats") => vec![self.stats()],
            other => {
                let name = other.map_or_else(|| action.to_string(), str::to_string);
                vec![replies.error_frame(ErrorFrame {
                    kind: None,
                    error: "UNKNOWN_ACTION",
                    message: format!("Unknown action: {name}"),
                    available_actions: Some(&ACTIONS),
                    details: None,
                })]
            }
        };
        (frames, false)
    }

    /// The `topics` list of a (un)subscribe, split into known topics and
    /// failures; `Err` is the error frame for a missing or malformed list.
    fn topics_of(&self, data: Option<&Value>) -> Result<(Vec<&'static str>, Vec<FailedTopic<'static>>), String> {
        let topics = match data.and_then(|d| d.get("topics")) {
            None | Some(Value::Null) => {
                return Err(self.replies.error("MISSING_TOPICS", "Topics list is required".into()))
            }
            Some(Value::Array(topics)) => topics,
            Some(_) => return Err(self.replies.error("INVALID_TOPICS", "Topics must be a list".into())),
        };
        let mut known = Vec::new();
        let mut failed = Vec::new();
        for topic in topics {
            match topic.as_str().and_then(|t| TOPICS.iter().find(|known| **known == t)) {
                Some(t) if !known.contains(t) => known.push(*t),
                Some(_) => {}
                None => {
                    let name = topic.as_str().map_or_else(|| topic.to_string(), str::to_string);
                    failed.push(FailedTopic { topic: name, error: "INVALID_TOPIC_FORMAT" });
                }
            }
        }
        Ok((known, failed))
    }

    fn subscribe(&mut self, data: Option<&Value>) -> Vec<String> {
        let (subscribed, failed) = match self.topics_of(data) {
            Ok(split) => split,
            Err(frame) => return vec![frame],
        };
        let filter = Filter::parse(data.and_then(|d| d.get("filters")));
        for topic in &subscribed {
            self.topics.insert(topic, filter.clone());
        }
        self.sync();
        if !self.replies.documented() {
            return vec![py_json(&SubscribeResponse {
                tag: Tag::Action("subscribe_response"),
                subscribed_topics: &subscribed,
                failed_topics: &failed,
                success: failed.is_empty(),
            })];
        }
        let mut frames: Vec<String> = failed.into_iter().map(|f| self.topic_error(f)).collect();
        if !subscribed.is_empty() {
            frames.push(py_json(&Confirmed { kind: "subscription_confirmed", topics: &subscribed }));
        }
        frames
    }

    fn unsubscribe(&mut self, data: Option<&Value>) -> Vec<String> {
        let (unsubscribed, failed) = match self.topics_of(data) {
            Ok(split) => split,
            Err(frame) => return vec![frame],
        };
        for topic in &unsubscribed {
            self.topics.remove(topic);
        }
        self.sync();
        if !self.replies.documented() {
            return vec![py_json(&UnsubscribeResponse {
                tag: Tag::Action("unsubscribe_response"),
                unsubscribed_topics: &unsubscribed,
                failed_topics: &failed,
                success: failed.is_empty(),
            })];
        }
        let mut frames: Vec<String> = failed.into_iter().map(|f| self.topic_error(f)).collect();
        if !unsubscribed.is_empty() {
            frames.push(py_json(&Confirmed { kind: "unsubscription_confirmed", topics: &unsubscribed }));
        }
        frames
    }

    fn topic_error(&self, failed: FailedTopic<'_>) -> String {
        self.replies.error_frame(ErrorFrame {
            kind: None,
            error: failed.error,
            message: format!("Invalid topic format: {}", failed.topic),
            available_actions: None,
            details: Some(TopicDetail { topic: failed.topic }),
        })
    }

    fn stats(&self) -> String {
        let (total, subscribers, topics) = {
            let open = lock(&self.shared.open);
            let subscribers = open.values().filter(|t| !t.is_empty()).count();
            let topics: BTreeSet<&'static str> = open.values().flatten().copied().collect();
            (open.len(), subscribers, topics.into_iter().collect())
        };
        py_json(&StatsResponse {
            tag: self.replies.tag("stats_response"),
            connection_stats: ConnectionStats {
                total_connections: total,
                max_connections: 1000,
                user_connections: total,
                tenant_connections: total,
                topic_subscribers: subscribers,
                topics,
            },
            connection_info: ConnectionInfo {
                connection_id: &self.id,
                user_id: USER_ID,
                tenant_id: TENANT_ID,
                subscribed_topics: &self.topic_names(),
                created_at: &self.created_at,
                last_heartbeat: &self.last_heartbeat,
            },
        })
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        lock(&self.shared.open).remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use tokio::time::{self as ttime, Instant};
    use tokio_tungstenite::connect_async;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;

    use super::*;
    use crate::wig80::tests::{
        connect, ending, json, key_order, next_frame, next_text, skeleton, text_until, Client, QUIET, WAIT,
    };

    const CAPTURE: &str = include_str!("../../../tests/fixtures/captured-carbon.txt");
    const HOUR: Duration = Duration::from_secs(3600);
    const FAST: Duration = Duration::from_millis(30);
    const LATEST: &str = "served.market.latest_prices.v1";

    fn config(shape: CarbonShape) -> CarbonConfig {
        CarbonConfig { token: "secret".into(), shape, publish_every: HOUR, seed: Some(9), ..CarbonConfig::default() }
    }

    async fn sim(config: CarbonConfig) -> CarbonSim {
        CarbonSim::start(config).await.unwrap()
    }

    /// Connects with the good token and reads the greeting.
    async fn greeted(sim: &CarbonSim) -> (Client, serde_json::Value) {
        let mut client = connect(&format!("{}?token=secret", sim.url())).await;
        let text = next_text(&mut client).await;
        assert_eq!(key_order(&text), ["type", "connection_id", "user_id", "tenant_id"]);
        let hello = json(&text);
        assert_eq!(hello["type"], "connection_established", "{hello}");
        (client, hello)
    }

    async fn send(client: &mut Client, text: &str) {
        client.send(Message::text(text)).await.unwrap();
    }

    fn is_data(text: &str) -> bool {
        let v = json(text);
        v.get("topic").is_some() && v.get("data").is_some()
    }

    /// The next reply that is not a data frame.
    async fn reply(client: &mut Client) -> String {
        text_until(client, |t| !is_data(t)).await
    }

    /// The first server frame with this label in the capture.
    fn captured(label: &str) -> &'static str {
        captured_nth(label, 0)
    }

    fn captured_nth(label: &str, n: usize) -> &'static str {
        CAPTURE
            .lines()
            .filter_map(|line| line.strip_prefix("<- ")?.strip_prefix(label)?.strip_prefix(' '))
            .nth(n)
            .unwrap_or_else(|| panic!("no {label} #{n} in the capture"))
    }

    #[test]
    fn uuid4_has_the_right_shape() {
        let id = uuid4(&mut StdRng::seed_from_u64(1));
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert!(parts[2].starts_with('4'), "{id}");
        assert!("89ab".contains(&parts[3][..1]), "{id}");
    }

    #[tokio::test]
    async fn missing_and_bad_tokens_get_an_error_frame_then_close_1000() {
        let sim = sim(config(CarbonShape::Actual)).await;
        for (query, expected) in [
            ("", captured("shipped/ws-missing-token-connect")),
            ("?token=", captured("shipped/ws-missing-token-connect")),
            ("?token=bad", captured("shipped/ws-bad-token-connect")),
        ] {
            // The socket is accepted before the token is checked: the upgrade succeeds.
            let mut client = connect(&format!("{}{query}", sim.url())).await;
            assert_eq!(next_text(&mut client).await, expected, "{query}");
            assert_eq!(ending(&mut client).await, Some(CloseCode::Normal), "{query}");
        }
    }

    #[tokio::test]
    async fn documented_shape_types_its_errors() {
        let sim = sim(config(CarbonShape::Documented)).await;
        let mut client = connect(&format!("{}?token=nope", sim.url())).await;
        let error = json(&next_text(&mut client).await);
        assert_eq!((error["type"].as_str(), error["error"].as_str()), (Some("error"), Some("INVALID_TOKEN")));
        assert_eq!(ending(&mut client).await, Some(CloseCode::Normal));
    }

    #[tokio::test]
    async fn other_paths_are_not_upgraded() {
        let sim = sim(config(CarbonShape::Actual)).await;
        let url = sim.url().replace(WS_PATH, "/ws/other");
        let refused = ttime::timeout(WAIT, connect_async(format!("{url}?token=secret"))).await.unwrap();
        assert!(refused.is_err());
    }

    #[tokio::test]
    async fn kafka_down_greets_then_errors_then_closes() {
        let sim = sim(CarbonConfig { kafka_down: true, ..config(CarbonShape::Actual) }).await;
        let (mut client, hello) = greeted(&sim).await;
        assert_eq!(hello["user_id"], "u1");
        let error = next_text(&mut client).await;
        assert_eq!(error, captured_nth("shipped/ws-ok-connect", 1));
        assert_eq!(ending(&mut client).await, Some(CloseCode::Normal));
    }

    #[tokio::test]
    async fn actual_shape_subscribe_and_data_frames() {
        let sim = sim(CarbonConfig { publish_every: FAST, ..config(CarbonShape::Actual) }).await;
        let (mut client, hello) = greeted(&sim).await;
        let id = hello["connection_id"].as_str().unwrap().to_string();
        let (mut other, other_hello) = greeted(&sim).await;
        assert_ne!(other_hello["connection_id"].as_str(), Some(id.as_str()), "ids are fresh");

        send(&mut client, r#"{"action": "subscribe", "data": {"topics": ["served.market.latest_prices.v1"]}}"#).await;
        let response = reply(&mut client).await;
        assert_eq!(response, captured("harness/ws-subscribe"));

        let frame = text_until(&mut client, is_data).await;
        let v = json(&frame);
        assert!(v.get("type").is_none(), "actual data frames have no type: {frame}");
        assert_eq!(key_order(&frame), ["topic", "data", "timestamp", "partition", "offset"]);
        assert!(frame.starts_with(r#"{"topic": "served.market.latest_prices.v1", "data": {"instrument_id": "#));
        let data = &frame[frame.find(r#""data": {"#).unwrap() + 8..];
        assert_eq!(key_order(data), ["instrument_id", "price", "volume", "currency", "change", "change_percent"]);
        assert_eq!(v["partition"], 0);
        assert!(v["offset"].as_u64().unwrap() >= 1);
        assert!(commodities().iter().any(|(name, _)| v["data"]["instrument_id"] == *name));

        // The unsubscribed socket gets nothing but what it asks for.
        send(&mut other, r#"{"action": "ping", "data": {}}"#).await;
        let pong = next_text(&mut other).await;
        assert!(pong.starts_with(r#"{"action": "pong", "timestamp": "#), "{pong}");
        assert!(json(&pong)["timestamp"].as_u64().unwrap() < 1_000_000_000_000, "monotonic, not epoch");
        let quiet = ttime::timeout(QUIET, other.next()).await;
        assert!(quiet.is_err(), "an unsubscribed socket got {quiet:?}");
    }

    #[tokio::test]
    async fn documented_shape_subscribe_and_data_frames() {
        let sim = sim(CarbonConfig { publish_every: FAST, ..config(CarbonShape::Documented) }).await;
        let (mut client, _) = greeted(&sim).await;
        send(&mut client, r#"{"action":"subscribe","data":{"topics":["served.market.latest_prices.v1","x.y"]}}"#).await;
        let error = json(&reply(&mut client).await);
        assert_eq!((error["type"].as_str(), error["error"].as_str()), (Some("error"), Some("INVALID_TOPIC_FORMAT")));
        assert_eq!(error["details"]["topic"], "x.y");
        let confirmed = json(&reply(&mut client).await);
        assert_eq!(confirmed["type"], "subscription_confirmed");

        let frame = text_until(&mut client, is_data).await;
        let v = json(&frame);
        assert_eq!(v["type"], "data");
        assert_eq!(key_order(&frame), ["type", "topic", "data", "timestamp", "partition", "offset"]);
        assert!(v["data"]["timestamp"].as_str().unwrap().ends_with('Z'));

        send(&mut client, r#"{"action":"ping","data":{}}"#).await;
        assert_eq!(reply(&mut client).await, r#"{"type": "pong"}"#);
    }

    #[tokio::test]
    async fn data_timestamps_alternate_between_epoch_and_monotonic() {
        let sim = sim(CarbonConfig { publish_every: FAST, ..config(CarbonShape::Actual) }).await;
        let (mut client, _) = greeted(&sim).await;
        // One instrument only: the alternation must show even through a filter.
        send(&mut client, r#"{"action":"subscribe","data":{"topics":["served.market.latest_prices.v1"],"filters":{"commodity":"coal"}}}"#).await;
        reply(&mut client).await;
        let mut kinds = Vec::new();
        let mut offsets = Vec::new();
        for _ in 0..4 {
            let v = json(&text_until(&mut client, is_data).await);
            kinds.push(v["timestamp"].as_u64().unwrap() >= 1_000_000_000_000);
            offsets.push(v["offset"].as_u64().unwrap());
        }
        assert!(kinds.windows(2).all(|w| w[0] != w[1]), "epoch? {kinds:?}");
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    }

    #[tokio::test]
    async fn filters_narrow_the_instruments() {
        let sim = sim(CarbonConfig { publish_every: FAST, ..config(CarbonShape::Actual) }).await;
        let (mut client, _) = greeted(&sim).await;
        send(&mut client, r#"{"action":"subscribe","data":{"topics":["pricing.curve.updates.v1"],"filters":{"commodity":"oil","region":"north_sea"}}}"#).await;
        reply(&mut client).await;
        let mut seen = BTreeSet::new();
        while seen.len() < 2 {
            let v = json(&text_until(&mut client, is_data).await);
            assert_eq!(v["topic"], "pricing.curve.updates.v1");
            let instrument = v["data"]["instrument_id"].as_str().unwrap().to_string();
            assert_eq!(commodity_of(&instrument), Some("oil"), "{instrument} got through the oil filter");
            seen.insert(instrument);
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["BRENT_CRUDE", "WTI_CRUDE"]);
    }

    #[tokio::test]
    async fn replies_match_the_capture_for_every_kind_of_request() {
        let sim = sim(config(CarbonShape::Actual)).await;
        let (mut client, hello) = greeted(&sim).await;
        let cases = [
            (r#"{"type": "ping"}"#, "harness/ws-ping-docs-style"),
            (r#"{"action": "hello", "data": {}}"#, "harness/ws-unknown-action"),
            ("this is not json{", "harness/ws-invalid-json"),
            ("[1,2,3]", "harness/ws-json-array"),
            (
                r#"{"action": "subscribe", "data": {"topics": ["254carbon.market.data.v1"]}}"#,
                "harness/ws-subscribe-listed-topic",
            ),
            (
                r#"{"action": "subscribe", "data": {"topics": "served.market.latest_prices.v1"}}"#,
                "harness/ws-subscribe-topics-not-list",
            ),
            (r#"{"action": "subscribe", "data": {}}"#, "harness/ws-subscribe-no-topics"),
            (
                r#"{"action": "subscribe", "data": {"topics": ["served.market.latest_prices.v1"]}}"#,
                "harness/ws-subscribe",
            ),
            (r#"{"action": "list_topics", "data": {}}"#, "harness/ws-list_topics"),
            (
                r#"{"action": "unsubscribe", "data": {"topics": ["served.market.latest_prices.v1"]}}"#,
                "harness/ws-unsubscribe",
            ),
        ];
        for (request, label) in cases {
            send(&mut client, request).await;
            assert_eq!(reply(&mut client).await, captured(label), "{request}");
        }
        send(&mut client, "").await;
        assert_eq!(reply(&mut client).await, captured("harness/ws-invalid-json"));

        send(&mut client, r#"{"action": "subscribe", "data": {"topics": ["served.market.latest_prices.v1"]}}"#).await;
        reply(&mut client).await;
        send(&mut client, r#"{"action": "get_stats", "data": {}}"#).await;
        let stats = reply(&mut client).await;
        assert_eq!(skeleton(&stats), skeleton(captured("harness/ws-get_stats")));
        let stats = json(&stats);
        assert_eq!(stats["connection_info"]["connection_id"], hello["connection_id"]);
        assert_eq!(stats["connection_stats"]["topics"], serde_json::json!([LATEST]));

        let sent = sim.received();
        assert_eq!(sent.len(), cases.len() + 3);
        assert_eq!(sent[0], r#"{"type": "ping"}"#);
    }

    #[tokio::test]
    async fn binary_frames_get_internal_error_and_the_socket_stays_open() {
        let sim = sim(config(CarbonShape::Actual)).await;
        let (mut client, _) = greeted(&sim).await;
        client.send(Message::binary(vec![1, 2])).await.unwrap();
        assert_eq!(next_text(&mut client).await, captured("harness/ws-binary-frame"));
        send(&mut client, r#"{"action":"ping","data":{}}"#).await;
        assert!(next_text(&mut client).await.contains("pong"));
    }

    #[tokio::test]
    async fn sockets_that_do_not_ping_are_reaped() {
        let reap = Duration::from_millis(500);
        let sim = sim(CarbonConfig { reap_without_ping: Some(reap), ..config(CarbonShape::Actual) }).await;
        // Before the quiet socket exists: it cannot be reaped sooner than `reap` after this.
        let started = Instant::now();
        let (mut quiet, _) = greeted(&sim).await;
        let (mut pinger, _) = greeted(&sim).await;
        let ping = async {
            loop {
                pinger.send(Message::text(r#"{"action":"ping","data":{}}"#)).await.unwrap();
                assert!(next_text(&mut pinger).await.contains("pong"));
                ttime::sleep(reap / 5).await;
            }
        };
        tokio::select! {
            code = ending(&mut quiet) => assert_eq!(code, Some(CloseCode::Normal)),
            _ = ping => unreachable!(),
        }
        assert!(started.elapsed() >= reap, "reaped too early");
        // The pinging socket outlived the reaping.
        send(&mut pinger, r#"{"action":"ping","data":{}}"#).await;
        assert!(next_text(&mut pinger).await.contains("pong"));
    }

    #[tokio::test]
    async fn without_a_reaper_silent_sockets_stay() {
        let sim = sim(config(CarbonShape::Actual)).await;
        let (mut client, _) = greeted(&sim).await;
        let got = ttime::timeout(QUIET, client.next()).await;
        assert!(got.is_err(), "{got:?}");
    }

    #[tokio::test]
    async fn plans_apply_to_carbon_connections_too() {
        let sim = sim(config(CarbonShape::Actual)).await;
        sim.push_plan(WsPlan::CloseAfter { frames: 1, code: 1013 });
        sim.push_plan(WsPlan::Garbage);
        let (mut closing, _) = greeted(&sim).await;
        assert_eq!(ending(&mut closing).await, Some(CloseCode::from(1013)));
        let mut garbage = connect(&format!("{}?token=secret", sim.url())).await;
        assert!(matches!(next_frame(&mut garbage).await, Message::Binary(_)));
        next_text(&mut garbage).await;
        next_text(&mut garbage).await;
        assert!(next_text(&mut garbage).await.contains("connection_established"));
    }
}
