//! A loopback SSE endpoint of the carbon access layer (docs/protocols.md §4):
//! `GET /sse/stream?token=…`, answered by a hand-written HTTP/1.1 responder
//! so it can misbehave (cut a stream, stall after the headers, answer any status).
//!
//! A missing or wrong token is a 401 with a compact JSON `detail`. Otherwise a
//! chunked `text/event-stream` follows, one event per chunk: in the real
//! server's shape ([`SseShape::Actual`]) only `data: <json>\n\n` blocks; in the
//! documented shape a `connection_established` event first, then `event: data`
//! blocks with increasing `id:`s, and a reconnect with `Last-Event-ID` resumes
//! after that id from a bounded in-memory log. A heartbeat
//! `data: {"type": "heartbeat", "timestamp": <monotonic ms>}` is sent after
//! `heartbeat_after` of silence.
//!
//! `POST /sse/subscribe` (`sse_subscribe.rs`) subscribes an open connection
//! to a topic; with [`SseSubscribeConfig::required`] a connection gets only
//! the topics it subscribed to. Plans and chaos apply to stream requests only.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time as ttime;

use super::carbon::{publish_round, uuid4, MonoClock, Record, TENANT_ID, USER_ID};
use super::chaos::Chaos;
use super::http::{self, read_head, reason, HEAD_TIMEOUT};
use super::prices::{commodities, PriceWalk};
use super::sse_subscribe::{Registry, SseSubscribeConfig, SubscribeRequest, Token, SUBSCRIBE_PATH};
use super::{Recent, RECENT_KEPT};
use crate::py::py_json;
use crate::{lock, stopped};

/// The stream's path.
pub const SSE_PATH: &str = "/sse/stream";
/// The topic whose records the stream carries.
pub const SSE_TOPIC: &str = "served.market.latest_prices.v1";
/// Events kept for `Last-Event-ID` replay; older ones are forgotten.
const LOG_CAPACITY: usize = 2_000;
/// Served events remembered for [`SseSim::served`]; older ones are forgotten
/// so that a demo running for days stays small (at the demo's 3 s pace,
/// 50,000 took two days to fill and held ~20 MB).
pub const SERVED_KEPT: usize = 5_000;
const LINGER: Duration = Duration::from_secs(2);

/// Which framing the stream uses (docs/protocols.md §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseShape {
    /// What the real server sends: `data: <json>\n\n` blocks only.
    Actual,
    /// What the docs show: `event: connection_established` first, then
    /// `event: data\nid: N\ndata: {…}\n\n`; `Last-Event-ID` is honoured.
    Documented,
}

/// How the SSE simulator behaves.
#[derive(Clone)]
pub struct SseConfig {
    /// The one token accepted (`?token=`).
    pub token: String,
    pub shape: SseShape,
    /// How often every instrument's price is published (one event each).
    pub publish_every: Duration,
    /// A heartbeat follows this much silence: 30 s on the real server.
    pub heartbeat_after: Duration,
    /// When set, every stream starts with `retry: N` (ms).
    pub retry: Option<u64>,
    /// Makes prices and connection ids reproducible.
    pub seed: Option<u64>,
}

/// The token never appears in a debug print.
impl std::fmt::Debug for SseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseConfig")
            .field("token", &"(redacted)")
            .field("shape", &self.shape)
            .field("publish_every", &self.publish_every)
            .field("heartbeat_after", &self.heartbeat_after)
            .field("retry", &self.retry)
            .field("seed", &self.seed)
            .finish()
    }
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            token: "t1".into(),
            shape: SseShape::Actual,
            publish_every: Duration::from_secs(5),
            heartbeat_after: Duration::from_secs(30),
            retry: None,
            seed: None,
        }
    }
}

/// The behaviour of one future connection (see [`SseSim::push_plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SsePlan {
    /// Answer like the real server.
    Serve,
    /// Stream `events` data events, then close the socket without ending the
    /// chunked body (an abrupt end). Heartbeats and the preamble do not count.
    CutAfter { events: usize },
    /// Answer this status with this JSON body, whatever the request.
    Status { code: u16, body: String },
    /// 200 and the headers, then nothing at all while the socket stays open.
    Stall,
    /// Start the stream with `retry: <retry_ms>` (whatever the config says),
    /// send `events` data events, then cut as `CutAfter` does: a server asking
    /// for an instant (0) or a ten-hour (36000000) reconnect.
    RetryThenCut { retry_ms: u64, events: usize },
    /// 200, then these bytes exactly as given (hostile framing: an `id:` with
    /// a control character, …), then an abrupt end as `CutAfter`.
    RawThenCut { raw: String },
    /// Answer `code` (301, 302, 307, 308) with this `Location`, whatever the
    /// request: a stream that moved, to this server or another.
    Redirect { code: u16, location: String },
}

/// One data event written to a client, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedEvent {
    /// Which accepted connection (0 for the first) it went to.
    pub conn: usize,
    /// Its id in the server's log (sent as `id:` in the documented shape only).
    pub id: u64,
    /// The JSON after `data: `.
    pub payload: String,
}

/// One request the server read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseRequest {
    /// Whether `?token=` matched.
    pub token_ok: bool,
    /// The `Last-Event-ID` header, when sent.
    pub last_event_id: Option<String>,
    pub at: Instant,
}

/// A running SSE simulator on `127.0.0.1`. Dropping it (or
/// [`SseSim::shutdown`]) stops the server and closes its connections.
pub struct SseSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SseSim {
    /// Binds `127.0.0.1:0` and starts serving, subscriptions optional.
    pub async fn start(config: SseConfig) -> io::Result<Self> {
        Self::start_with(config, SseSubscribeConfig::default()).await
    }

    /// As [`SseSim::start`], with the subscribe endpoint configured.
    pub async fn start_with(config: SseConfig, subscribe: SseSubscribeConfig) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut rng = config.seed.map_or_else(StdRng::from_os_rng, StdRng::seed_from_u64);
        let walk = PriceWalk::new(commodities(), Some(rng.random()));
        let shared = Arc::new(Shared {
            token: config.token,
            shape: config.shape,
            // A zero period would spin.
            heartbeat_after: config.heartbeat_after.max(Duration::from_millis(1)),
            retry: config.retry,
            clock: MonoClock::new(&mut rng),
            log: Mutex::new(VecDeque::new()),
            last_id: watch::Sender::new(0),
            plans: Mutex::new(VecDeque::new()),
            default_plan: Mutex::new(None),
            chaos: Mutex::new(None),
            served: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Recent::new(RECENT_KEPT)),
            request_count: watch::Sender::new(0),
            connections: AtomicUsize::new(0),
            drops: watch::Sender::new(0),
            rng: Mutex::new(rng),
            subscriptions: Registry::new(subscribe),
        });
        let (stop, stop_rx) = watch::channel(false);
        let every = config.publish_every.max(Duration::from_millis(1));
        let task = tokio::spawn(run(listener, shared.clone(), stop_rx, every, walk));
        Ok(Self { addr, shared, stop, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/sse/stream` (the client appends `?token=…`).
    pub fn url(&self) -> String {
        format!("http://{}{SSE_PATH}", self.addr)
    }

    /// Every request read so far, in order.
    pub fn requests(&self) -> Vec<SseRequest> {
        lock(&self.shared.requests).to_vec()
    }

    /// Waits until `n` requests have been read; false if `within` passed first.
    pub async fn wait_for_requests(&self, n: usize, within: Duration) -> bool {
        let mut count = self.shared.request_count.subscribe();
        let reached = ttime::timeout(within, count.wait_for(|count| *count >= n)).await;
        reached.is_ok_and(|r| r.is_ok())
    }

    /// Every subscribe request read so far, in order.
    pub fn subscribe_requests(&self) -> Vec<SubscribeRequest> {
        self.shared.subscriptions.requests()
    }

    /// Waits until `n` subscribe requests have been read; false if `within` passed first.
    pub async fn wait_for_subscribes(&self, n: usize, within: Duration) -> bool {
        let mut count = self.shared.subscriptions.count();
        let reached = ttime::timeout(within, count.wait_for(|count| *count >= n)).await;
        reached.is_ok_and(|r| r.is_ok())
    }

    /// The id of every stream served so far, in order (sent to the client in
    /// the documented shape only).
    pub fn connection_ids(&self) -> Vec<String> {
        self.shared.subscriptions.ids()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The id of the last data event published (0 before the first).
    pub fn last_event_id(&self) -> u64 {
        *self.shared.last_id.borrow()
    }

    /// Queues the behaviour of the next accepted connection (FIFO); with the
    /// queue empty, connections are served normally.
    pub fn push_plan(&self, plan: SsePlan) {
        lock(&self.shared.plans).push_back(plan);
    }

    /// The plan of every connection while the queue is empty (`None`: `Serve`).
    pub fn set_default_plan(&self, plan: Option<SsePlan>) {
        *lock(&self.shared.default_plan) = plan;
    }

    /// Random faults for every connection while the queue is empty (`--chaos`).
    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        *lock(&self.shared.chaos) = chaos;
    }

    /// The data events written to clients, in order: all of them, or the
    /// last [`SERVED_KEPT`] in a long run (the demo).
    pub fn served(&self) -> Vec<ServedEvent> {
        lock(&self.shared.served).iter().cloned().collect()
    }

    /// Closes every open connection abruptly.
    pub fn drop_all(&self) {
        self.shared.drops.send_modify(|generation| *generation += 1);
    }

    /// Stops the server and waits until every connection is closed.
    pub async fn shutdown(self) {
        let Self { stop, task, .. } = self;
        stop.send_replace(true);
        let _ = task.await;
    }
}

struct Shared {
    token: String,
    shape: SseShape,
    heartbeat_after: Duration,
    retry: Option<u64>,
    clock: MonoClock,
    /// `(id, topic, JSON payload)` of recent data events, oldest first.
    log: Mutex<VecDeque<LogEntry>>,
    /// The last id in the log: streams wake up when it moves.
    last_id: watch::Sender<u64>,
    plans: Mutex<VecDeque<SsePlan>>,
    default_plan: Mutex<Option<SsePlan>>,
    chaos: Mutex<Option<Chaos>>,
    served: Mutex<VecDeque<ServedEvent>>,
    requests: Mutex<Recent<SseRequest>>,
    request_count: watch::Sender<usize>,
    connections: AtomicUsize,
    drops: watch::Sender<u64>,
    rng: Mutex<StdRng>,
    subscriptions: Registry,
}

impl Shared {
    fn documented(&self) -> bool {
        self.shape == SseShape::Documented
    }

    fn publish(&self, records: Vec<Record>) {
        let mut last = *self.last_id.borrow();
        {
            let mut log = lock(&self.log);
            for record in records {
                last += 1;
                let payload = py_json(&SseData {
                    topic: record.topic,
                    data: record.body(self.documented()),
                    timestamp: record.timestamp,
                });
                log.push_back((last, record.topic, payload.into()));
                if log.len() > LOG_CAPACITY {
                    log.pop_front();
                }
            }
        }
        self.last_id.send_replace(last);
    }

    /// Events after `cursor`, and the new cursor.
    fn events_after(&self, cursor: u64) -> (u64, Vec<LogEntry>) {
        let log = lock(&self.log);
        let start = log.partition_point(|(id, _, _)| *id <= cursor);
        let events: Vec<_> = log.range(start..).cloned().collect();
        let next = events.last().map_or(cursor, |(id, _, _)| *id);
        (next, events)
    }

    /// The plan of a stream request: queued, else chaos, else the default.
    fn next_plan(&self) -> SsePlan {
        let queued = lock(&self.plans).pop_front();
        let drawn = || lock(&self.chaos).as_ref().map(Chaos::sse_plan);
        queued.or_else(drawn).or_else(|| lock(&self.default_plan).clone()).unwrap_or(SsePlan::Serve)
    }

    fn record(&self, request: SseRequest) {
        let count = lock(&self.requests).push(request);
        self.request_count.send_replace(count);
    }
}

/// One published event: `(id, topic, JSON payload)`.
type LogEntry = (u64, &'static str, Arc<str>);

#[derive(Serialize)]
struct SseData<'a> {
    topic: &'a str,
    data: super::carbon::DataBody<'a>,
    timestamp: u64,
}

#[derive(Serialize)]
struct Heartbeat {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: u64,
}

#[derive(Serialize)]
struct Established<'a> {
    connection_id: &'a str,
    user_id: &'a str,
    tenant_id: &'a str,
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
    timer.set_missed_tick_behavior(ttime::MissedTickBehavior::Delay);
    let topics = shared.subscriptions.published_topics();
    let mut offsets = vec![0u64; topics.len()];
    let mut round = 0;
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let conn = shared.connections.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(serve_connection(socket, shared.clone(), conn));
                }
                Err(e) => {
                    tracing::debug!(target: "feedtop::sim", "sse sim: accept failed: {e}");
                    ttime::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = timer.tick() => {
                shared.publish(publish_round(&mut walk, round, &topics, &mut offsets, &shared.clock));
                round += 1;
            }
        }
    }
    connections.shutdown().await;
}

/// The parts of a request head the server looks at.
#[derive(Debug)]
struct Head {
    method: String,
    path: String,
    token: Option<String>,
    last_event_id: Option<String>,
    content_length: Option<usize>,
}

fn parse_head(head: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.lines();
    let mut request_line = lines.next()?.split(' ');
    let (method, target, version) = (request_line.next()?, request_line.next()?, request_line.next()?);
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return None;
    }
    let mut last_event_id = None;
    let mut content_length = None;
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("last-event-id") {
            last_event_id = Some(value.trim().to_string());
        } else if name.trim().eq_ignore_ascii_case("content-length") {
            content_length = Some(value.trim().parse().ok()?);
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let token = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned());
    Some(Head { method: method.to_string(), path: path.to_string(), token, last_event_id, content_length })
}

async fn serve_connection(mut socket: TcpStream, shared: Arc<Shared>, conn: usize) {
    let _ = socket.set_nodelay(true);
    let mut drops = shared.drops.subscribe();
    let head = tokio::select! {
        head = ttime::timeout(HEAD_TIMEOUT, read_head(&mut socket)) => head,
        _ = drops.changed() => return,
    };
    let (head, body_start) = match head {
        Ok(http::Head::Complete(head, rest)) => (head, rest),
        Ok(http::Head::Invalid) => return respond(&mut socket, 400, r#"{"detail":"Bad Request"}"#).await,
        Ok(http::Head::Gone) | Err(_) => return,
    };
    let Some(head) = parse_head(&head) else {
        return respond(&mut socket, 400, r#"{"detail":"Bad Request"}"#).await;
    };
    // FastAPI's `if not token`: an empty token is a missing one.
    let token = head.token.as_deref().filter(|t| !t.is_empty());
    let token_ok = token == Some(shared.token.as_str());
    if head.path == SUBSCRIBE_PATH {
        let Some(body) = read_body(&mut socket, body_start, head.content_length).await else {
            return respond(&mut socket, 400, r#"{"detail":"Bad Request"}"#).await;
        };
        let token = match token {
            None => Token::Missing,
            Some(_) if !token_ok => Token::Invalid,
            Some(_) => Token::Ok,
        };
        let answer = shared.subscriptions.handle(&head.method, token, &body);
        return respond_with(&mut socket, answer.code, &answer.headers, &answer.body).await;
    }
    let plan = shared.next_plan();
    shared.record(SseRequest { token_ok, last_event_id: head.last_event_id.clone(), at: Instant::now() });
    let (cut_after, retry) = match plan {
        SsePlan::Status { code, body } => return respond(&mut socket, code, &body).await,
        SsePlan::Redirect { code, location } => {
            let header = format!("location: {location}\r\n");
            return respond_with(&mut socket, code, &header, r#"{"detail":"moved"}"#).await;
        }
        SsePlan::Serve | SsePlan::Stall | SsePlan::RawThenCut { .. } => (None, shared.retry),
        SsePlan::CutAfter { events } => (Some(events), shared.retry),
        SsePlan::RetryThenCut { retry_ms, events } => (Some(events), Some(retry_ms)),
    };
    if head.path != SSE_PATH {
        return respond(&mut socket, 404, r#"{"detail":"Not Found"}"#).await;
    }
    if head.method != "GET" {
        return respond(&mut socket, 405, r#"{"detail":"Method Not Allowed"}"#).await;
    }
    if !token_ok {
        let body = match token {
            None => r#"{"detail":{"error":"MISSING_TOKEN","message":"SSE token required"}}"#,
            Some(_) => r#"{"detail":{"error":"INVALID_TOKEN","message":"Invalid SSE token"}}"#,
        };
        return respond(&mut socket, 401, body).await;
    }
    let stream_head = format!(
        "HTTP/1.1 200 OK\r\ndate: {}\r\nserver: uvicorn\r\ncache-control: no-cache\r\nconnection: keep-alive\r\n\
         access-control-allow-origin: *\r\naccess-control-allow-headers: Cache-Control\r\n\
         content-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n",
        httpdate::fmt_http_date(SystemTime::now())
    );
    if write_flush(&mut socket, stream_head.as_bytes()).await.is_err() {
        return;
    }
    if let SsePlan::RawThenCut { raw } = &plan {
        let _ = write_flush(&mut socket, &chunk(raw)).await;
        return;
    }
    if plan == SsePlan::Stall {
        let mut sink = [0u8; 256];
        let read_all = async { while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {} };
        tokio::select! {
            _ = read_all => {}
            _ = drops.changed() => {}
        }
        return;
    }
    let resume = head.last_event_id.as_deref().and_then(|id| id.trim().parse::<u64>().ok());
    let link = Link { conn, drops, retry };
    stream(socket, &shared, link, cut_after, resume).await;
}

/// What a stream knows about its connection.
struct Link {
    conn: usize,
    drops: watch::Receiver<u64>,
    /// `retry:` to send first, if any.
    retry: Option<u64>,
}

/// Streams events until the client leaves, the cut is due, or `drop_all`.
async fn stream(mut socket: TcpStream, shared: &Shared, link: Link, mut cut_after: Option<usize>, resume: Option<u64>) {
    let Link { conn, mut drops, retry } = link;
    let documented = shared.documented();
    // Every stream has an id (the real server keeps one too); only the
    // documented shape tells the client.
    let open = shared.subscriptions.open(uuid4(&mut lock(&shared.rng)));
    let mut last_id = shared.last_id.subscribe();
    // Live from now, or (documented shape) replay after the client's last id.
    let mut cursor = *last_id.borrow_and_update();
    if let (true, Some(id)) = (documented, resume) {
        cursor = id.min(cursor);
    }
    let mut preamble = String::new();
    if let Some(retry) = retry {
        preamble.push_str(&format!("retry: {retry}\n\n"));
    }
    if documented {
        let hello = py_json(&Established { connection_id: &open.id, user_id: USER_ID, tenant_id: TENANT_ID });
        preamble.push_str(&format!("event: connection_established\ndata: {hello}\n\n"));
    }
    if !preamble.is_empty() && write_flush(&mut socket, &chunk(&preamble)).await.is_err() {
        return;
    }
    let (mut reader, mut writer) = socket.split();
    let mut last_write = ttime::Instant::now();
    let mut sink = [0u8; 256];
    loop {
        last_id.borrow_and_update();
        let (next, events) = shared.events_after(cursor);
        cursor = next;
        for (id, topic, payload) in events {
            if cut_after == Some(0) {
                return;
            }
            if !shared.subscriptions.delivers(&open.id, topic) {
                continue;
            }
            let block = if documented {
                format!("event: data\nid: {id}\ndata: {payload}\n\n")
            } else {
                format!("data: {payload}\n\n")
            };
            if write_flush(&mut writer, &chunk(&block)).await.is_err() {
                return;
            }
            {
                let mut served = lock(&shared.served);
                served.push_back(ServedEvent { conn, id, payload: payload.to_string() });
                if served.len() > SERVED_KEPT {
                    served.pop_front();
                }
            }
            last_write = ttime::Instant::now();
            cut_after = cut_after.map(|left| left - 1);
        }
        if cut_after == Some(0) {
            return; // the socket closes without the final empty chunk
        }
        tokio::select! {
            changed = last_id.changed() => if changed.is_err() { return },
            _ = drops.changed() => return,
            read = reader.read(&mut sink) => if matches!(read, Ok(0) | Err(_)) { return },
            _ = ttime::sleep_until(last_write + shared.heartbeat_after) => {
                let beat = py_json(&Heartbeat { kind: "heartbeat", timestamp: shared.clock.now_ms() });
                if write_flush(&mut writer, &chunk(&format!("data: {beat}\n\n"))).await.is_err() {
                    return;
                }
                last_write = ttime::Instant::now();
            }
        }
    }
}

/// One chunk of the chunked transfer encoding.
fn chunk(payload: &str) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", payload.len()).into_bytes();
    out.extend_from_slice(payload.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

async fn write_flush<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// A complete JSON response, then a polite close.
async fn respond(socket: &mut TcpStream, code: u16, body: &str) {
    respond_with(socket, code, "", body).await;
}

/// As [`respond`], with `headers` (complete `name: value\r\n` lines) added.
async fn respond_with(socket: &mut TcpStream, code: u16, headers: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {code} {}\r\ndate: {}\r\nserver: uvicorn\r\ncontent-length: {}\r\ncontent-type: application/json\r\n\
         {headers}connection: close\r\n\r\n{body}",
        reason(code),
        httpdate::fmt_http_date(SystemTime::now()),
        body.len()
    );
    if socket.write_all(response.as_bytes()).await.is_ok() {
        // Half-close, then drain: closing with unread input would reset the
        // connection and could destroy the response before the client reads it.
        let _ = socket.shutdown().await;
        let mut sink = [0u8; 1024];
        let drain = async { while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {} };
        let _ = ttime::timeout(LINGER, drain).await;
    }
}

/// The longest request body read (a subscribe form is a few hundred bytes).
const MAX_BODY: usize = 16 * 1024;

/// A request body of `length` bytes, `start` of it already read; `None`
/// without a length, past [`MAX_BODY`], or when the client does not send it in time.
async fn read_body<R: AsyncRead + Unpin>(reader: &mut R, mut start: Vec<u8>, length: Option<usize>) -> Option<Vec<u8>> {
    let length = length.filter(|l| *l <= MAX_BODY)?;
    let read = async {
        let mut chunk = [0u8; 2048];
        while start.len() < length {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => start.extend_from_slice(&chunk[..n]),
            }
        }
        start.truncate(length);
        Some(start)
    };
    ttime::timeout(HEAD_TIMEOUT, read).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::{self as ttime, Instant};

    use super::*;
    use crate::wig80::tests::{json, key_order, QUIET, WAIT};

    const HOUR: Duration = Duration::from_secs(3600);
    const FAST: Duration = Duration::from_millis(30);
    const CAPTURE: &str = include_str!("../../../tests/fixtures/captured-carbon.txt");

    fn config(shape: SseShape) -> SseConfig {
        SseConfig {
            token: "secret".into(),
            shape,
            publish_every: FAST,
            heartbeat_after: HOUR,
            retry: None,
            seed: Some(5),
        }
    }

    async fn sim(config: SseConfig) -> SseSim {
        SseSim::start(config).await.unwrap()
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    async fn get(sim: &SseSim, query: &str, last_event_id: Option<&str>) -> reqwest::Response {
        let mut request = http().get(format!("{}{query}", sim.url()));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        ttime::timeout(WAIT, request.send()).await.expect("no response").expect("request failed")
    }

    /// A stream reader that splits the body into SSE blocks (text between blank lines).
    struct Blocks {
        resp: reqwest::Response,
        buf: String,
    }

    impl Blocks {
        fn new(resp: reqwest::Response) -> Self {
            Self { resp, buf: String::new() }
        }

        /// The next complete block, without its terminating blank line; panics
        /// on the deadline or when the stream ends.
        async fn next(&mut self) -> String {
            let deadline = Instant::now() + WAIT;
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block = self.buf[..end].to_string();
                    self.buf.drain(..end + 2);
                    return block;
                }
                match ttime::timeout_at(deadline, self.resp.chunk()).await {
                    Ok(Ok(Some(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                    other => panic!("stream stopped ({other:?}) with {:?}", self.buf),
                }
            }
        }

        /// Reads until the body ends (cleanly or not): the rest of the body.
        async fn rest(&mut self) -> String {
            let deadline = Instant::now() + WAIT;
            loop {
                match ttime::timeout_at(deadline, self.resp.chunk()).await {
                    Ok(Ok(Some(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                    Ok(Ok(None) | Err(_)) => return std::mem::take(&mut self.buf),
                    Err(_) => panic!("the stream did not end: {:?}", self.buf),
                }
            }
        }
    }

    /// The `event`, `id` and `data` fields of a block.
    #[derive(Debug)]
    struct Fields {
        event: Option<String>,
        id: Option<u64>,
        data: String,
    }

    fn fields(block: &str) -> Fields {
        let mut out = Fields { event: None, id: None, data: String::new() };
        for line in block.lines() {
            let (name, value) = line.split_once(": ").unwrap_or_else(|| panic!("odd line {line:?}"));
            match name {
                "event" => out.event = Some(value.to_string()),
                "id" => out.id = Some(value.parse().unwrap()),
                "data" => out.data = value.to_string(),
                other => panic!("unexpected field {other} in {block:?}"),
            }
        }
        out
    }

    #[tokio::test]
    async fn missing_and_bad_tokens_get_401_with_the_detail() {
        let sim = sim(config(SseShape::Actual)).await;
        for (query, expected) in [
            ("", r#"{"detail":{"error":"MISSING_TOKEN","message":"SSE token required"}}"#),
            ("?token=bad", r#"{"detail":{"error":"INVALID_TOKEN","message":"Invalid SSE token"}}"#),
        ] {
            let resp = get(&sim, query, None).await;
            assert_eq!(resp.status(), 401);
            assert_eq!(resp.headers()["content-type"], "application/json");
            assert_eq!(resp.text().await.unwrap(), expected);
        }
        assert!(CAPTURE.contains(r#"{"detail":{"error":"INVALID_TOKEN","message":"Invalid SSE token"}}"#));
        assert!(sim.wait_for_requests(2, WAIT).await);
        assert!(sim.requests().iter().all(|r| !r.token_ok));
    }

    #[tokio::test]
    async fn actual_shape_sends_data_only_blocks() {
        let sim = sim(config(SseShape::Actual)).await;
        let resp = get(&sim, "?token=secret", None).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream; charset=utf-8");
        assert_eq!(resp.headers()["cache-control"], "no-cache");
        assert_eq!(resp.headers()["transfer-encoding"], "chunked");
        let mut blocks = Blocks::new(resp);
        for _ in 0..3 {
            let block = blocks.next().await;
            assert!(block.starts_with("data: {\"topic\": ") && !block.contains('\n'), "{block:?}");
            let payload = &block["data: ".len()..];
            assert_eq!(key_order(payload), ["topic", "data", "timestamp"]);
            let v = json(payload);
            assert_eq!(v["topic"], SSE_TOPIC);
            assert_eq!(v["data"]["currency"], "USD");
            assert!(v["data"].get("timestamp").is_none(), "{payload}");
        }
        let requests = sim.requests();
        assert_eq!(requests.len(), 1);
        assert!(requests[0].token_ok);
        assert_eq!(requests[0].last_event_id, None);
    }

    #[tokio::test]
    async fn documented_shape_has_ids_and_resumes_after_last_event_id() {
        let sim = sim(SseConfig { retry: Some(1500), ..config(SseShape::Documented) }).await;
        let mut blocks = Blocks::new(get(&sim, "?token=secret", None).await);
        assert_eq!(blocks.next().await, "retry: 1500");
        let hello = fields(&blocks.next().await);
        assert_eq!((hello.event.as_deref(), hello.id), (Some("connection_established"), None));
        assert_eq!(key_order(&hello.data), ["connection_id", "user_id", "tenant_id"]);

        let mut ids = Vec::new();
        for _ in 0..3 {
            let event = fields(&blocks.next().await);
            assert_eq!(event.event.as_deref(), Some("data"));
            assert_eq!(json(&event.data)["topic"], SSE_TOPIC);
            ids.push(event.id.unwrap());
        }
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
        drop(blocks);

        // Resume after the second id: the next event is the third, replayed.
        let resumed = get(&sim, "?token=secret", Some(&ids[1].to_string())).await;
        let mut blocks = Blocks::new(resumed);
        assert_eq!(blocks.next().await, "retry: 1500");
        assert_eq!(fields(&blocks.next().await).event.as_deref(), Some("connection_established"));
        assert_eq!(fields(&blocks.next().await).id, Some(ids[2]));
        assert_eq!(fields(&blocks.next().await).id, Some(ids[2] + 1));
        assert_eq!(sim.requests()[1].last_event_id.as_deref(), Some(ids[1].to_string().as_str()));
    }

    #[tokio::test]
    async fn heartbeat_after_silence() {
        let after = Duration::from_millis(200);
        let sim = sim(SseConfig { publish_every: HOUR, heartbeat_after: after, ..config(SseShape::Actual) }).await;
        let started = Instant::now();
        let mut blocks = Blocks::new(get(&sim, "?token=secret", None).await);
        let beat = blocks.next().await;
        assert!(started.elapsed() >= after - Duration::from_millis(20), "heartbeat too early");
        assert!(beat.starts_with(r#"data: {"type": "heartbeat", "timestamp": "#), "{beat:?}");
        let v = json(&beat["data: ".len()..]);
        assert!(v["timestamp"].as_u64().unwrap() < 1_000_000_000_000, "monotonic, not epoch");
        assert!(blocks.next().await.contains("heartbeat"), "heartbeats repeat while silent");
        // Byte for byte the capture's heartbeat chunk, but for the digits.
        let captured = CAPTURE.lines().find_map(|l| l.strip_prefix("<- shipped/sse-ok-chunk@t+30.4s ")).unwrap();
        let captured: String = serde_json::from_str(captured).unwrap();
        let no_digits = |s: &str| s.replace(|c: char| c.is_ascii_digit(), "");
        assert_eq!(no_digits(&format!("{beat}\n\n")), no_digits(&captured));
    }

    #[tokio::test]
    async fn cut_after_ends_the_stream_abruptly() {
        let sim = sim(config(SseShape::Actual)).await;
        sim.push_plan(SsePlan::CutAfter { events: 2 });
        let mut blocks = Blocks::new(get(&sim, "?token=secret", None).await);
        let rest = blocks.rest().await;
        assert_eq!(rest.matches("data: ").count(), 2, "{rest:?}");
        // The next connection is served normally.
        let mut again = Blocks::new(get(&sim, "?token=secret", None).await);
        assert!(again.next().await.starts_with("data: "));
    }

    #[tokio::test]
    async fn retry_then_cut_sends_its_own_retry_and_served_records_every_event() {
        let sim = sim(SseConfig { retry: Some(1500), ..config(SseShape::Documented) }).await;
        sim.push_plan(SsePlan::RetryThenCut { retry_ms: 0, events: 2 });
        sim.push_plan(SsePlan::RetryThenCut { retry_ms: 36_000_000, events: 0 });
        let rest = Blocks::new(get(&sim, "?token=secret", None).await).rest().await;
        assert!(rest.starts_with("retry: 0\n\n"), "{rest:?}");
        assert_eq!(rest.matches("event: data").count(), 2, "{rest:?}");
        let rest = Blocks::new(get(&sim, "?token=secret", None).await).rest().await;
        assert!(rest.starts_with("retry: 36000000\n\n") && !rest.contains("event: data"), "{rest:?}");
        let mut blocks = Blocks::new(get(&sim, "?token=secret", None).await);
        assert_eq!(blocks.next().await, "retry: 1500", "back to the configured retry");
        blocks.next().await;
        let third = fields(&blocks.next().await);
        let served = sim.served();
        assert!(served.len() >= 3, "{served:?}");
        assert_eq!(served.iter().take(3).map(|s| s.conn).collect::<Vec<_>>(), [0, 0, 2]);
        assert_eq!((served[2].id, served[2].payload.as_str()), (third.id.unwrap(), third.data.as_str()));
        assert_eq!(served[1].id, served[0].id + 1);
    }

    #[tokio::test]
    async fn a_default_plan_lasts_until_cleared() {
        let sim = sim(config(SseShape::Actual)).await;
        sim.set_default_plan(Some(SsePlan::Status { code: 503, body: "{}".into() }));
        sim.push_plan(SsePlan::Serve);
        assert_eq!(get(&sim, "?token=secret", None).await.status(), 200, "the queue comes first");
        assert_eq!(get(&sim, "?token=secret", None).await.status(), 503);
        assert_eq!(get(&sim, "?token=secret", None).await.status(), 503);
        sim.set_default_plan(None);
        assert_eq!(get(&sim, "?token=secret", None).await.status(), 200);
    }

    #[tokio::test]
    async fn status_plan_answers_that_status() {
        let sim = sim(config(SseShape::Actual)).await;
        sim.push_plan(SsePlan::Status { code: 503, body: r#"{"detail":"down"}"#.into() });
        let resp = get(&sim, "?token=secret", None).await;
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.text().await.unwrap(), r#"{"detail":"down"}"#);
    }

    #[tokio::test]
    async fn stall_sends_headers_then_nothing() {
        let sim = sim(SseConfig { heartbeat_after: Duration::from_millis(50), ..config(SseShape::Actual) }).await;
        sim.push_plan(SsePlan::Stall);
        let mut resp = get(&sim, "?token=secret", None).await;
        assert_eq!(resp.status(), 200);
        let got = ttime::timeout(QUIET, resp.chunk()).await;
        assert!(got.is_err(), "a stalled stream sent {got:?}");
    }

    #[tokio::test]
    async fn drop_all_cuts_open_streams() {
        let sim = sim(config(SseShape::Actual)).await;
        let mut blocks = Blocks::new(get(&sim, "?token=secret", None).await);
        blocks.next().await;
        sim.drop_all();
        blocks.rest().await;
        assert!(sim.wait_for_requests(1, WAIT).await);
        assert_eq!(sim.connections(), 1);
    }

    #[test]
    fn parse_head_reads_token_and_last_event_id() {
        let head =
            parse_head(b"GET /sse/stream?x=1&token=a%20b HTTP/1.1\r\nHost: h\r\nlast-event-id:  42 \r\n\r\n").unwrap();
        assert_eq!((head.method.as_str(), head.path.as_str()), ("GET", SSE_PATH));
        assert_eq!(head.token.as_deref(), Some("a b"));
        assert_eq!(head.last_event_id.as_deref(), Some("42"));
        assert!(parse_head(b"nonsense\r\n\r\n").is_none());
    }
}
