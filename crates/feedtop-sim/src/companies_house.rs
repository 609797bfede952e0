//! A loopback Companies House Streaming API (docs/protocols.md §1).
//!
//! `GET /companies[?timepoint=N]` with Basic auth (`key:`), answered with a
//! chunked `application/json` stream: one event line per chunk, flushed at once,
//! bare `\n` heartbeats on a fixed timer, replay from timepoint N *inclusive*,
//! `416` for a timepoint older than the (trimmed) log, and then live following
//! of the log. Tests script each connection's behaviour with [`ConnPlan`]; the
//! demo appends generated events and, with `chaos`, injects faults at random.
//!
//! Every write tolerates the client going away: a failed write just ends that
//! connection, quietly.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{self as ttime, MissedTickBehavior};

use super::company_gen::{CompanyGen, GeneratorConfig};
use super::http::{linger, parse_request_line, read_head, reason, wait_for_close, Head, HEAD_TIMEOUT};
use super::{Recent, RECENT_KEPT};
use crate::{lock, stopped};

/// The one stream this simulator serves.
pub const STREAM_PATH: &str = "/companies";

/// Lines copied out of the log per lock, so a big backlog never holds the lock long.
const BATCH: usize = 256;
/// The log's default length (tests): beyond this many lines the oldest are
/// trimmed (and become "too old", as on the real service). The demo, which
/// generates forever, keeps far fewer ([`ChSimConfig::max_log_lines`]).
pub const MAX_LOG_LINES: usize = 200_000;
/// The demo's chaos picks a fault this often (uniformly in the range).
const CHAOS_EVERY: (Duration, Duration) = (Duration::from_secs(45), Duration::from_secs(90));

/// How the simulator behaves.
#[derive(Clone)]
pub struct ChSimConfig {
    /// When set, requests need HTTP Basic auth `base64("<key>:")`, else 401.
    pub expected_key: Option<String>,
    /// Event lines (compact JSON with `event.timepoint`); blank lines are ignored.
    pub backlog: Vec<String>,
    /// A request without `?timepoint=` gets the whole backlog (tests, demo)
    /// instead of only events appended from then on.
    pub live_from_start: bool,
    /// A bare `\n` chunk this often on a fixed timer while a stream is open.
    pub heartbeat: Duration,
    /// The demo: new events appended to the log at a rate.
    pub generator: Option<GeneratorConfig>,
    /// The demo: every 45–90 s, cut a stream (mid-line, or before a 429 or 503).
    pub chaos: bool,
    /// Lines kept for replay; older ones are trimmed (a resume before them
    /// is a 416). Each line is about 1.5 KB.
    pub max_log_lines: usize,
}

/// Like the client's `ApiKey`, the key never appears in a debug print.
impl std::fmt::Debug for ChSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChSimConfig")
            .field("expected_key", &self.expected_key.as_ref().map(|_| "(redacted)"))
            .field("backlog", &format_args!("{} lines", self.backlog.len()))
            .field("live_from_start", &self.live_from_start)
            .field("heartbeat", &self.heartbeat)
            .field("generator", &self.generator)
            .field("chaos", &self.chaos)
            .field("max_log_lines", &self.max_log_lines)
            .finish()
    }
}

impl Default for ChSimConfig {
    fn default() -> Self {
        Self {
            expected_key: None,
            backlog: Vec::new(),
            live_from_start: false,
            heartbeat: Duration::from_secs(30),
            generator: None,
            chaos: false,
            max_log_lines: MAX_LOG_LINES,
        }
    }
}

/// The behaviour of one future connection (see [`ChSim::push_plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnPlan {
    /// 200, stream events from the timepoint (inclusive) then follow the log live.
    Serve,
    /// Stream `events` lines then close the socket; with `mid_line`, also write
    /// the first half of the next line (waiting for one if needed) before closing.
    CutAfter { events: usize, mid_line: bool },
    /// Answer this status whatever the request (429, 503, 401, 416, …).
    Status { code: u16, retry_after: Option<String>, body: String, content_type: String },
    /// 200 and the headers, then nothing at all while the socket stays open.
    Stall,
    /// Accept, then close at once without reading or answering.
    Refuse,
    /// Read the request, then answer these bytes instead of HTTP (a TLS
    /// alert, an SSH banner, line noise) and close.
    Garbage(Vec<u8>),
    /// Read the request, wait `delay`, then behave as `then` (a gateway that
    /// times out: `Delayed { then: Status 504 }`). A nested `Refuse` closes
    /// the socket unanswered after the wait.
    Delayed { delay: Duration, then: Box<ConnPlan> },
    /// 200, then the first `events` lines one byte per chunk, `every` apart
    /// (a slow drip: bounded, so keep lines × bytes × `every` small); then as
    /// `Serve`.
    Drip { events: usize, every: Duration },
    /// 200, `after` events, then `lines` written as they are (each as its own
    /// chunk with a `\n` added: invalid UTF-8, 10 MiB, deep JSON, copies of
    /// old events), then as `Serve`. Injected lines are not in the log: a
    /// resume never replays them and [`ChSim::sent_events`] does not count them.
    Inject { after: usize, lines: Vec<Vec<u8>> },
    /// 200, then as `Serve` but waiting `every` before each event line (a
    /// slow producer: a backlog takes a while).
    Paced { every: Duration },
    /// Answer `code` (301, 302, 307, 308) with this `Location`, whatever the
    /// request: a stream that moved, to this server or another.
    Redirect { code: u16, location: String },
}

/// A fault the server can inject into a live stream (the demo's chaos).
/// Each leaves the client able to resume with `?timepoint=` and lose nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next event line is cut in half and the socket closed.
    CutMidLine,
    /// The stream is closed and the reconnect gets 429 with `Retry-After: 5`.
    RateLimited,
    /// The stream is closed and the reconnect gets 503 with a small HTML body.
    Unavailable,
}

/// One request the server read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The path without the query, e.g. `/companies`.
    pub path: String,
    /// The request target as sent, e.g. `/companies?timepoint=5`.
    pub target: String,
    /// `?timepoint=` when present and a valid integer.
    pub timepoint: Option<i64>,
    /// Whether the credentials were accepted (always true without an expected key).
    pub authorized: bool,
    pub at: Instant,
}

/// A running simulator. Dropping it (or [`ChSim::shutdown`]) stops the server
/// and closes its connections.
pub struct ChSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropping this sender also stops the server.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ChSim {
    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(config: ChSimConfig) -> io::Result<ChSim> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Binds `addr` (a loopback address; port 0 picks one) and starts
    /// serving: a test restarts a simulator on the port of one it shut down,
    /// so that the client saw "connection refused" in between.
    pub async fn start_on(addr: SocketAddr, config: ChSimConfig) -> io::Result<ChSim> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut log = EventLog::new(config.max_log_lines);
        for line in config.backlog {
            log.push(line);
        }
        let background = Background::new(&config.generator, config.chaos, log.last_timepoint());
        let shared = Arc::new(Shared::new(config.expected_key, config.live_from_start, config.heartbeat, log));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(listener, shared.clone(), stop_rx, background));
        Ok(ChSim { addr, shared, stop, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues the behaviour of the next connection (FIFO). With the queue
    /// empty, connections are served normally.
    pub fn push_plan(&self, plan: ConnPlan) {
        self.shared.push_plan(plan);
    }

    /// The behaviour of every connection while the queue of
    /// [`ChSim::push_plan`] is empty (`None`: `Serve`). A fault that lasts:
    /// set it, let the client retry for a while, clear it.
    pub fn set_default_plan(&self, plan: Option<ConnPlan>) {
        *lock(&self.shared.default_plan) = plan;
    }

    /// Every request read so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).to_vec()
    }

    /// TCP connections accepted so far, including refused ones.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Adds an event line to the log; open streams receive it.
    pub fn append(&self, line: String) {
        self.shared.append(line);
    }

    /// Drops every event below `timepoint`: a request for an older timepoint
    /// then gets 416, as for an offset the real service no longer holds.
    pub fn trim_before(&self, timepoint: i64) {
        lock(&self.shared.log).trim_before(timepoint);
    }

    /// Event lines written to clients in full (partial lines and heartbeats not counted).
    pub fn sent_events(&self) -> usize {
        *self.shared.sent.borrow()
    }

    /// Waits until `n` requests have been seen; false if the deadline passed first.
    pub async fn wait_for_requests(&self, n: usize, deadline: Duration) -> bool {
        wait_for_count(&self.shared.request_count, n, deadline).await
    }

    /// Waits until `n` event lines have been written; false if the deadline passed first.
    pub async fn wait_for_sent_events(&self, n: usize, deadline: Duration) -> bool {
        wait_for_count(&self.shared.sent, n, deadline).await
    }

    /// Injects a fault into one open stream now. False when no stream is open
    /// (nothing was done).
    pub fn inject_fault(&self, fault: Fault) -> bool {
        self.shared.inject(fault)
    }

    /// The profile (`data`) this stream last published for a company, for
    /// the REST simulator to answer with, so the two agree (the demo).
    /// Looks back through the replay log, newest first.
    pub fn profile_source(&self) -> crate::rest::ProfileSource {
        let shared = self.shared.clone();
        Arc::new(move |number: &str| {
            // A substring test first: parsing every line of an hour's log
            // under the lock would hold up the streams.
            let needle = format!("\"resource_id\":\"{number}\"");
            let log = lock(&shared.log);
            log.entries.iter().rev().filter(|entry| entry.line.contains(&needle)).find_map(|entry| {
                let event: serde_json::Value = serde_json::from_str(&entry.line).ok()?;
                let is_it = event.get("resource_kind")?.as_str()? == "company-profile"
                    && event.get("resource_id")?.as_str()? == number;
                is_it.then(|| event.get("data").cloned()).flatten()
            })
        })
    }

    /// Stops the server and waits until every connection is closed.
    pub async fn shutdown(self) {
        let ChSim { stop, task, .. } = self;
        stop.send_replace(true);
        let _ = task.await;
    }
}

async fn wait_for_count(counter: &watch::Sender<usize>, n: usize, deadline: Duration) -> bool {
    let mut rx = counter.subscribe();
    let reached = ttime::timeout(deadline, rx.wait_for(|count| *count >= n)).await;
    reached.is_ok_and(|r| r.is_ok())
}

/// One line of the log. `key` orders it: its timepoint, or for a line without
/// one (a malformed test line) the previous line's, so the log stays sorted.
#[derive(Debug, Clone)]
struct Entry {
    key: i64,
    line: Arc<str>,
}

#[derive(Debug)]
struct EventLog {
    entries: VecDeque<Entry>,
    /// Lines kept at most.
    cap: usize,
    /// Sequence number of `entries[0]`. Connections keep a sequence number as
    /// their cursor, so trimming the front does not move anyone.
    first_seq: u64,
    /// Events below this were trimmed: asking for them is a 416.
    min_timepoint: Option<i64>,
}

impl EventLog {
    fn new(cap: usize) -> Self {
        Self { entries: VecDeque::new(), cap: cap.max(1), first_seq: 0, min_timepoint: None }
    }

    fn end_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64
    }

    fn last_timepoint(&self) -> Option<i64> {
        self.entries.back().map(|e| e.key)
    }

    /// Adds a line; blank lines are not events and are ignored.
    fn push(&mut self, line: String) -> bool {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return false;
        }
        let last = self.last_timepoint();
        let key = match (timepoint_of(line), last) {
            (Some(tp), Some(last)) => tp.max(last),
            (Some(tp), None) => tp,
            (None, last) => last.unwrap_or(i64::MIN),
        };
        self.entries.push_back(Entry { key, line: line.into() });
        if self.entries.len() > self.cap {
            self.drop_oldest();
        }
        true
    }

    fn drop_oldest(&mut self) {
        self.entries.pop_front();
        self.first_seq += 1;
        self.min_timepoint = self.entries.front().map(|e| e.key);
    }

    fn trim_before(&mut self, timepoint: i64) {
        while self.entries.front().is_some_and(|e| e.key < timepoint) {
            self.entries.pop_front();
            self.first_seq += 1;
        }
        self.min_timepoint = Some(self.min_timepoint.map_or(timepoint, |min| min.max(timepoint)));
    }

    /// Where a stream starts, or `None` when the timepoint is too old (416).
    fn start(&self, timepoint: Option<i64>, whole_backlog: bool) -> Option<u64> {
        match timepoint {
            None if whole_backlog => Some(self.first_seq),
            None => Some(self.end_seq()),
            Some(tp) if self.min_timepoint.is_some_and(|min| tp < min) => None,
            // A timepoint never published is invalid, as for the real service
            // (`?timepoint=9223372036854775807` is answered 416).
            Some(tp) if self.last_timepoint().is_some_and(|last| tp > last) => None,
            Some(tp) => Some(self.first_seq + self.entries.partition_point(|e| e.key < tp) as u64),
        }
    }

    /// Up to `max` lines from sequence `from`, and the cursor after them.
    fn batch(&self, from: u64, max: usize) -> (u64, Vec<Entry>) {
        // Lines trimmed while a connection was behind are gone for it too.
        let from = from.clamp(self.first_seq, self.end_seq());
        let skip = (from - self.first_seq) as usize;
        let entries: Vec<Entry> = self.entries.range(skip..).take(max).cloned().collect();
        (from + entries.len() as u64, entries)
    }
}

#[derive(Deserialize)]
struct TimepointOnly {
    event: TimepointEvent,
}

#[derive(Deserialize)]
struct TimepointEvent {
    timepoint: i64,
}

fn timepoint_of(line: &str) -> Option<i64> {
    serde_json::from_str::<TimepointOnly>(line).ok().map(|t| t.event.timepoint)
}

/// State shared by the accept loop, the connections and the [`ChSim`] handle.
struct Shared {
    expected_key: Option<String>,
    live_from_start: bool,
    heartbeat: Duration,
    log: Mutex<EventLog>,
    /// The log's end sequence number: streams wake up when it moves.
    log_end: watch::Sender<u64>,
    plans: Mutex<VecDeque<ConnPlan>>,
    default_plan: Mutex<Option<ConnPlan>>,
    requests: Mutex<Recent<RequestRecord>>,
    request_count: watch::Sender<usize>,
    sent: watch::Sender<usize>,
    connections: AtomicUsize,
    /// Streams currently following the log: the ones a fault can hit.
    streaming: AtomicUsize,
    /// A fault order for one stream: `Some(mid_line)`.
    pending_cut: Mutex<Option<bool>>,
    cut: Notify,
}

impl Shared {
    fn new(expected_key: Option<String>, live_from_start: bool, heartbeat: Duration, log: EventLog) -> Self {
        let end = log.end_seq();
        Self {
            expected_key,
            live_from_start,
            // A zero period would make the heartbeat timer panic.
            heartbeat: heartbeat.max(Duration::from_millis(1)),
            log: Mutex::new(log),
            log_end: watch::Sender::new(end),
            plans: Mutex::new(VecDeque::new()),
            default_plan: Mutex::new(None),
            requests: Mutex::new(Recent::new(RECENT_KEPT)),
            request_count: watch::Sender::new(0),
            sent: watch::Sender::new(0),
            connections: AtomicUsize::new(0),
            streaming: AtomicUsize::new(0),
            pending_cut: Mutex::new(None),
            cut: Notify::new(),
        }
    }

    fn push_plan(&self, plan: ConnPlan) {
        lock(&self.plans).push_back(plan);
    }

    fn next_plan(&self) -> ConnPlan {
        let queued = lock(&self.plans).pop_front();
        queued.or_else(|| lock(&self.default_plan).clone()).unwrap_or(ConnPlan::Serve)
    }

    fn append(&self, line: String) {
        let end = {
            let mut log = lock(&self.log);
            log.push(line);
            log.end_seq()
        };
        self.log_end.send_replace(end);
    }

    fn record(&self, request: &Request, authorized: bool) {
        let record = RequestRecord {
            path: request.path.clone(),
            target: request.target.clone(),
            timepoint: match request.timepoint {
                TimepointParam::Valid(tp) => Some(tp),
                _ => None,
            },
            authorized,
            at: Instant::now(),
        };
        let count = lock(&self.requests).push(record);
        self.request_count.send_replace(count);
    }

    fn authorized(&self, header: Option<&str>) -> bool {
        match &self.expected_key {
            None => true,
            Some(key) => basic_auth_matches(header, key),
        }
    }

    /// A fault needs a reconnect to be visible, so it always cuts a live
    /// stream; a status fault queues its answer for the reconnect first.
    fn inject(&self, fault: Fault) -> bool {
        if self.streaming.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let mid_line = match fault {
            Fault::CutMidLine => true,
            Fault::RateLimited => {
                self.push_plan(rate_limited_plan());
                false
            }
            Fault::Unavailable => {
                self.push_plan(unavailable_plan());
                false
            }
        };
        *lock(&self.pending_cut) = Some(mid_line);
        self.cut.notify_one();
        tracing::info!(target: "feedtop::sim", ?fault, "companies-house sim: injecting a fault");
        true
    }

    /// Decides the answer to a parsed request. Runs before the request is
    /// recorded, so a test that saw the request can append and be sure the
    /// stream's start was already fixed.
    fn decide(&self, request: &Request, authorized: bool, plan: ConnPlan) -> Reply {
        let mode = match plan {
            ConnPlan::Status { code, retry_after, body, content_type } => {
                return Reply::Status(StatusReply { code, retry_after, body, content_type, location: None })
            }
            ConnPlan::Garbage(bytes) => return Reply::Raw(bytes),
            ConnPlan::Redirect { code, location } => {
                let mut reply = json_status(code, "moved");
                reply.location = Some(location);
                return Reply::Status(reply);
            }
            // `Refuse` never gets this far (the socket is closed unread), nor
            // does `Delayed` (unwrapped after the wait).
            ConnPlan::Serve | ConnPlan::Refuse | ConnPlan::Delayed { .. } => Mode::Follow,
            ConnPlan::CutAfter { events, mid_line } => Mode::CutAfter { events, mid_line },
            ConnPlan::Stall => Mode::Stall,
            ConnPlan::Drip { events, every } => Mode::Drip { events, every },
            ConnPlan::Inject { after, lines } => Mode::Inject { after, lines },
            ConnPlan::Paced { every } => Mode::Paced { every },
        };
        if request.method != "GET" {
            return Reply::Status(json_status(405, "only GET is supported"));
        }
        if request.path != STREAM_PATH {
            return Reply::Status(json_status(404, "unknown stream"));
        }
        if !authorized {
            return Reply::Status(json_status(401, "send the stream key as the Basic user name, empty password"));
        }
        let timepoint = match request.timepoint {
            TimepointParam::Absent => None,
            TimepointParam::Valid(tp) => Some(tp),
            TimepointParam::Invalid => return Reply::Status(json_status(416, "timepoint invalid or too old")),
        };
        match lock(&self.log).start(timepoint, self.live_from_start) {
            Some(start) => Reply::Stream(StreamPlan { start, floor: timepoint.unwrap_or(i64::MIN), mode }),
            None => Reply::Status(json_status(416, "timepoint invalid or too old")),
        }
    }
}

fn rate_limited_plan() -> ConnPlan {
    ConnPlan::Status {
        code: 429,
        retry_after: Some("5".into()),
        body: r#"{"error":"rate limit exceeded"}"#.into(),
        content_type: "application/json".into(),
    }
}

fn unavailable_plan() -> ConnPlan {
    ConnPlan::Status {
        code: 503,
        retry_after: None,
        body: "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n\
               <center><h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n"
            .into(),
        content_type: "text/html".into(),
    }
}

pub(crate) fn basic_auth_matches(header: Option<&str>, key: &str) -> bool {
    let Some((scheme, credentials)) = header.and_then(|h| h.trim().split_once(' ')) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(credentials.trim());
    decoded.is_ok_and(|d| d == format!("{key}:").as_bytes())
}

/// A parsed request head.
#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    path: String,
    timepoint: TimepointParam,
    authorization: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimepointParam {
    Absent,
    Valid(i64),
    /// Present but not an integer: the real service calls that "invalid" (416).
    Invalid,
}

/// `None` for anything that is not a well-formed HTTP/1.x request head.
fn parse_request(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.lines();
    let (method, target) = parse_request_line(lines.next()?)?;
    let mut authorization = None;
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return None;
        }
        if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.trim().to_string());
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some(Request {
        method: method.to_string(),
        target: target.to_string(),
        path: path.to_string(),
        timepoint: timepoint_param(query),
        authorization,
    })
}

fn timepoint_param(query: &str) -> TimepointParam {
    let value = query.split('&').find_map(|pair| pair.strip_prefix("timepoint="));
    match value {
        None => TimepointParam::Absent,
        Some(v) => v.parse().map_or(TimepointParam::Invalid, TimepointParam::Valid),
    }
}

/// What a connection answers.
enum Reply {
    Status(StatusReply),
    Stream(StreamPlan),
    /// Not HTTP at all.
    Raw(Vec<u8>),
}

struct StatusReply {
    code: u16,
    retry_after: Option<String>,
    body: String,
    content_type: String,
    location: Option<String>,
}

fn json_status(code: u16, message: &str) -> StatusReply {
    StatusReply {
        code,
        retry_after: None,
        body: serde_json::json!({ "error": message }).to_string(),
        content_type: "application/json".into(),
        location: None,
    }
}

struct StreamPlan {
    /// Log sequence number of the first line to send.
    start: u64,
    /// Lines ordered before the requested timepoint are never sent, even live.
    floor: i64,
    mode: Mode,
}

enum Mode {
    Follow,
    CutAfter { events: usize, mid_line: bool },
    Stall,
    Drip { events: usize, every: Duration },
    Inject { after: usize, lines: Vec<Vec<u8>> },
    Paced { every: Duration },
}

/// What the accept loop does besides accepting: the demo's generator and chaos.
struct Background {
    generator: Option<(CompanyGen, Duration)>,
    chaos: bool,
    rng: StdRng,
}

impl Background {
    fn new(config: &Option<GeneratorConfig>, chaos: bool, last_timepoint: Option<i64>) -> Self {
        let generator = config.as_ref().filter(|g| g.events_per_sec > 0.0 && g.events_per_sec.is_finite()).map(|g| {
            let mut gen = CompanyGen::from_config(g);
            if let Some(tp) = last_timepoint {
                gen.resume_after(tp);
            }
            // Capped: a vanishing rate would overflow the deadline arithmetic.
            let mean = (1.0 / g.events_per_sec).min(86_400.0);
            (gen, Duration::from_secs_f64(mean))
        });
        Self { generator, chaos, rng: StdRng::from_os_rng() }
    }

    /// Gaps vary ±50 % around the mean so the trickle does not look mechanical.
    fn next_event_at(&mut self) -> Option<ttime::Instant> {
        let mean = self.generator.as_ref()?.1;
        Some(ttime::Instant::now() + mean.mul_f64(self.rng.random_range(0.5..1.5)))
    }

    fn next_fault_at(&mut self) -> Option<ttime::Instant> {
        self.chaos.then(|| ttime::Instant::now() + self.rng.random_range(CHAOS_EVERY.0..CHAOS_EVERY.1))
    }

    fn generate(&mut self, shared: &Shared) {
        if let Some((gen, _)) = &mut self.generator {
            shared.append(gen.next_event(Utc::now()));
        }
    }

    fn random_fault(&mut self) -> Fault {
        match self.rng.random_range(0..3) {
            0 => Fault::CutMidLine,
            1 => Fault::RateLimited,
            _ => Fault::Unavailable,
        }
    }
}

async fn sleep_until(deadline: Option<ttime::Instant>) {
    match deadline {
        Some(at) => ttime::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The accept loop. Connections live in a `JoinSet`, so stopping the loop
/// aborts them all and their sockets close.
async fn run(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>, mut bg: Background) {
    let mut connections = JoinSet::new();
    let mut next_event = bg.next_event_at();
    let mut next_fault = bg.next_fault_at();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let plan = shared.next_plan();
                    connections.spawn(serve_connection(socket, shared.clone(), plan));
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::debug!(target: "feedtop::sim", "accept failed: {e}");
                    ttime::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = sleep_until(next_event) => {
                bg.generate(&shared);
                next_event = bg.next_event_at();
            }
            _ = sleep_until(next_fault) => {
                let fault = bg.random_fault();
                shared.inject(fault);
                next_fault = bg.next_fault_at();
            }
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(mut socket: TcpStream, shared: Arc<Shared>, mut plan: ConnPlan) {
    if plan == ConnPlan::Refuse {
        return; // dropping the socket closes it without a word
    }
    // Each chunk must leave at once: Nagle would hold back small heartbeats.
    let _ = socket.set_nodelay(true);
    let head = match ttime::timeout(HEAD_TIMEOUT, read_head(&mut socket)).await {
        Ok(Head::Complete(head, _)) => head,
        Ok(Head::Invalid) => return reply_status(&mut socket, &bad_request()).await,
        Ok(Head::Gone) | Err(_) => return,
    };
    let Some(request) = parse_request(&head) else {
        return reply_status(&mut socket, &bad_request()).await;
    };
    while let ConnPlan::Delayed { delay, then } = plan {
        // The client may give up first: then there is nobody to answer.
        if ttime::timeout(delay, wait_for_close(&mut socket)).await.is_ok() {
            return;
        }
        plan = *then;
    }
    if plan == ConnPlan::Refuse {
        return;
    }
    let authorized = shared.authorized(request.authorization.as_deref());
    let reply = shared.decide(&request, authorized, plan);
    shared.record(&request, authorized);
    match reply {
        Reply::Status(status) => reply_status(&mut socket, &status).await,
        Reply::Stream(plan) => stream_events(socket, &shared, plan).await,
        Reply::Raw(bytes) => {
            if socket.write_all(&bytes).await.is_ok() {
                linger(&mut socket).await;
            }
        }
    }
}

fn bad_request() -> StatusReply {
    StatusReply {
        code: 400,
        retry_after: None,
        body: "bad request\n".into(),
        content_type: "text/plain".into(),
        location: None,
    }
}

async fn reply_status(socket: &mut TcpStream, reply: &StatusReply) {
    let mut response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.code,
        reason(reply.code),
        reply.content_type,
        reply.body.len()
    );
    if let Some(retry_after) = &reply.retry_after {
        response.push_str(&format!("Retry-After: {retry_after}\r\n"));
    }
    if let Some(location) = &reply.location {
        response.push_str(&format!("Location: {location}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&reply.body);
    if socket.write_all(response.as_bytes()).await.is_ok() {
        linger(socket).await;
    }
}

const STREAM_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
const HEARTBEAT_CHUNK: &[u8] = b"1\r\n\n\r\n";

async fn stream_events(mut socket: TcpStream, shared: &Shared, plan: StreamPlan) {
    // Counted before the headers go out: once a client has seen them, a fault
    // injected by a test is sure to find this stream.
    let stalls = matches!(plan.mode, Mode::Stall);
    let _streaming = (!stalls).then(|| StreamingGuard::enter(shared));
    if socket.write_all(STREAM_HEAD).await.is_err() {
        return;
    }
    match plan.mode {
        Mode::Stall => wait_for_close(&mut socket).await,
        _ => follow(socket, shared, plan).await,
    }
}

struct StreamingGuard<'a>(&'a Shared);

impl<'a> StreamingGuard<'a> {
    fn enter(shared: &'a Shared) -> Self {
        shared.streaming.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for StreamingGuard<'_> {
    fn drop(&mut self) {
        self.0.streaming.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Per-stream bookkeeping for cuts (scripted or injected).
struct Cutter {
    /// Events left before the cut; `None` = no cut planned.
    budget: Option<usize>,
    /// Whether the cut writes half of the next line first.
    mid_line: bool,
    /// Events still to be written one byte per chunk, and the pause between bytes.
    drip: (usize, Duration),
    /// A pause before each event line.
    pace: Option<Duration>,
    /// Raw lines to write once `.0` events have gone out (taken when written).
    inject: Option<(usize, Vec<Vec<u8>>)>,
    /// Events written on this stream.
    sent: usize,
}

enum Step {
    Continue,
    Stop,
}

impl Cutter {
    fn new(mode: &Mode) -> Self {
        let mut cutter =
            Self { budget: None, mid_line: false, drip: (0, Duration::ZERO), pace: None, inject: None, sent: 0 };
        match mode {
            Mode::CutAfter { events, mid_line } => (cutter.budget, cutter.mid_line) = (Some(*events), *mid_line),
            Mode::Drip { events, every } => cutter.drip = (*events, *every),
            Mode::Inject { after, lines } => cutter.inject = Some((*after, lines.clone())),
            Mode::Paced { every } => cutter.pace = Some(*every),
            Mode::Follow | Mode::Stall => {}
        }
        cutter
    }

    /// The injected lines, once their moment has come.
    fn injection_due(&mut self) -> Option<Vec<Vec<u8>>> {
        if self.inject.as_ref().is_some_and(|(after, _)| *after <= self.sent) {
            return self.inject.take().map(|(_, lines)| lines);
        }
        None
    }

    /// A cut on a line boundary is due now (no next line is needed).
    fn clean_cut_due(&self) -> bool {
        self.budget == Some(0) && !self.mid_line
    }

    /// A mid-line cut is due: the next line is written half and the stream ends.
    fn half_line_due(&self) -> bool {
        self.budget == Some(0) && self.mid_line
    }

    fn sent_one(&mut self) {
        self.sent += 1;
        if let Some(left) = &mut self.budget {
            *left = left.saturating_sub(1);
        }
    }

    /// An injected fault: `mid_line` cuts the next line, otherwise stop now.
    fn order(&mut self, mid_line: bool) -> Step {
        if !mid_line {
            return Step::Stop;
        }
        self.budget = Some(0);
        self.mid_line = true;
        Step::Continue
    }
}

/// Sends the log from the plan's start, then follows it live with heartbeats,
/// until the client leaves, a cut is due, or the server stops.
async fn follow(mut socket: TcpStream, shared: &Shared, plan: StreamPlan) {
    let (mut reader, mut writer) = socket.split();
    let mut cutter = Cutter::new(&plan.mode);
    let mut cursor = plan.start;
    let mut log_end = shared.log_end.subscribe();
    let mut heartbeat = ttime::interval_at(ttime::Instant::now() + shared.heartbeat, shared.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sink = [0u8; 256];
    loop {
        // A fault order is handled before any further line is read, so "cut
        // the next line" really means the next one, even when it raced the order.
        let order = lock(&shared.pending_cut).take();
        if let Some(Step::Stop) = order.map(|mid_line| cutter.order(mid_line)) {
            return;
        }
        if cutter.clean_cut_due() {
            return;
        }
        if inject(&mut writer, &mut cutter).await.is_err() {
            return;
        }
        // Mark the log seen *before* reading it: an append after this point
        // wakes the `changed()` below, so no line can be missed.
        log_end.borrow_and_update();
        let (next, entries) = lock(&shared.log).batch(cursor, BATCH);
        cursor = next;
        for entry in entries.iter().filter(|e| e.key >= plan.floor) {
            if let Step::Stop = send_entry(&mut writer, shared, &mut cutter, entry).await {
                return;
            }
        }
        if entries.len() == BATCH {
            continue; // more backlog is waiting
        }
        tokio::select! {
            // Biased: a fault order wins over a line that arrived at the same time.
            biased;
            // Only wakes the loop: the order is taken at the top.
            _ = shared.cut.notified() => {}
            changed = log_end.changed() => if changed.is_err() { return },
            read = reader.read(&mut sink) => if matches!(read, Ok(0) | Err(_)) { return },
            _ = heartbeat.tick() => if write_flush(&mut writer, HEARTBEAT_CHUNK).await.is_err() { return },
        }
    }
}

/// Writes one log line as its own chunk, or half of it when a mid-line cut is due.
async fn send_entry<W: AsyncWrite + Unpin>(
    writer: &mut W,
    shared: &Shared,
    cutter: &mut Cutter,
    entry: &Entry,
) -> Step {
    if cutter.half_line_due() {
        let half = &entry.line.as_bytes()[..entry.line.len() / 2];
        let _ = write_flush(writer, &chunk(half, false)).await;
        return Step::Stop;
    }
    if let Some(every) = cutter.pace {
        ttime::sleep(every).await;
    }
    let written = if cutter.drip.0 > 0 {
        cutter.drip.0 -= 1;
        drip(writer, entry.line.as_bytes(), cutter.drip.1).await
    } else {
        write_flush(writer, &chunk(entry.line.as_bytes(), true)).await
    };
    if written.is_err() {
        return Step::Stop;
    }
    shared.sent.send_modify(|n| *n += 1);
    cutter.sent_one();
    if cutter.clean_cut_due() || inject(writer, cutter).await.is_err() {
        return Step::Stop;
    }
    Step::Continue
}

/// Writes a line and its `\n` one byte per chunk, `every` apart.
async fn drip<W: AsyncWrite + Unpin>(writer: &mut W, line: &[u8], every: Duration) -> io::Result<()> {
    for byte in line.iter().chain(b"\n") {
        write_flush(writer, &chunk(std::slice::from_ref(byte), false)).await?;
        ttime::sleep(every).await;
    }
    Ok(())
}

/// Writes the plan's injected lines if their moment has come.
async fn inject<W: AsyncWrite + Unpin>(writer: &mut W, cutter: &mut Cutter) -> io::Result<()> {
    for line in cutter.injection_due().unwrap_or_default() {
        write_flush(writer, &chunk(&line, true)).await?;
    }
    Ok(())
}

/// One chunk of the chunked encoding: `{len:x}\r\n{payload}[\n]\r\n`.
fn chunk(payload: &[u8], newline: bool) -> Vec<u8> {
    let len = payload.len() + usize::from(newline);
    let mut out = Vec::with_capacity(len + 12);
    out.extend_from_slice(format!("{len:x}\r\n").as_bytes());
    out.extend_from_slice(payload);
    if newline {
        out.push(b'\n');
    }
    out.extend_from_slice(b"\r\n");
    out
}

async fn write_flush<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::{self as ttime, Instant};

    use super::*;
    use crate::http::head_end;
    use feedtop_proto::ch::parse_event;

    const FIXTURE: &str = include_str!("../../../tests/fixtures/ch-companies-sample.ndjson");
    /// Generous: only reached when a test is failing.
    const WAIT: Duration = Duration::from_secs(10);
    const HOUR: Duration = Duration::from_secs(3600);

    /// The fixture's non-blank lines (28 of 30, one of them malformed).
    fn fixture_lines() -> Vec<String> {
        FIXTURE.lines().filter(|l| !l.trim().is_empty()).map(String::from).collect()
    }

    fn fixture_timepoints() -> Vec<i64> {
        fixture_lines().iter().filter_map(|l| timepoint_of(l)).collect()
    }

    fn config(backlog: Vec<String>, live_from_start: bool) -> ChSimConfig {
        ChSimConfig { backlog, live_from_start, heartbeat: HOUR, ..ChSimConfig::default() }
    }

    async fn fixture_sim() -> ChSim {
        ChSim::start(config(fixture_lines(), true)).await.unwrap()
    }

    /// The demo appends forever: the log keeps at most its cap, and a resume
    /// before what it kept is "too old" (416), as on the real service.
    #[test]
    fn the_log_never_exceeds_its_cap() {
        let mut log = EventLog::new(100);
        for tp in 1..=1_000 {
            log.push(format!(r#"{{"event":{{"timepoint":{tp}}}}}"#));
            assert!(log.entries.len() <= 100, "{} lines after {tp}", log.entries.len());
        }
        assert_eq!(log.entries.len(), 100);
        assert_eq!(log.start(Some(900), false), None, "trimmed: 416");
        assert_eq!(log.start(Some(901), false), Some(900), "the oldest line kept");
        assert_eq!(log.last_timepoint(), Some(1_000));
    }

    #[tokio::test]
    async fn requests_remembered_are_bounded_but_all_counted() {
        let sim = ChSim::start(ChSimConfig { max_log_lines: 5, ..config(fixture_lines(), true) }).await.unwrap();
        let total = super::RECENT_KEPT + 20;
        for _ in 0..total {
            let request = Request {
                method: "GET".into(),
                target: "/companies".into(),
                path: "/companies".into(),
                timepoint: TimepointParam::Absent,
                authorization: None,
            };
            sim.shared.record(&request, true);
        }
        assert!(sim.wait_for_requests(total, WAIT).await, "every request counted");
        assert_eq!(sim.requests().len(), super::RECENT_KEPT);
        assert_eq!(lock(&sim.shared.log).entries.len(), 5, "the backlog is trimmed to the cap too");
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    async fn get(sim: &ChSim, target: &str) -> reqwest::Response {
        client().get(format!("{}{target}", sim.base_url())).send().await.unwrap()
    }

    /// Complete non-blank lines of a body.
    fn data_lines(body: &[u8]) -> Vec<String> {
        let complete = &body[..body.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1)];
        String::from_utf8_lossy(complete).lines().filter(|l| !l.is_empty()).map(String::from).collect()
    }

    /// Reads the body until `done(body)` holds; panics if the stream ends or
    /// the deadline passes first.
    async fn read_until(resp: &mut reqwest::Response, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        let mut body = Vec::new();
        while !done(&body) {
            match ttime::timeout_at(deadline, resp.chunk()).await {
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                other => panic!("stopped early ({other:?}) with {:?}", String::from_utf8_lossy(&body)),
            }
        }
        body
    }

    async fn read_lines(resp: &mut reqwest::Response, n: usize) -> Vec<String> {
        data_lines(&read_until(resp, |b| data_lines(b).len() >= n).await)
    }

    /// Reads until the body ends (cleanly or with an error); panics on the deadline.
    async fn read_to_end(resp: &mut reqwest::Response) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        let mut body = Vec::new();
        loop {
            match ttime::timeout_at(deadline, resp.chunk()).await {
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                Ok(Ok(None)) | Ok(Err(_)) => return body,
                Err(_) => panic!("the stream did not end; got {:?}", String::from_utf8_lossy(&body)),
            }
        }
    }

    async fn raw_request(sim: &ChSim, request: &str) -> TcpStream {
        let mut socket = TcpStream::connect(sim.addr()).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        socket
    }

    async fn raw_read_until(socket: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        let mut received = Vec::new();
        let mut buf = [0u8; 8192];
        while !done(&received) {
            match ttime::timeout_at(deadline, socket.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buf[..n]),
                other => panic!("stopped early ({other:?}) with {:?}", String::from_utf8_lossy(&received)),
            }
        }
        received
    }

    #[tokio::test]
    async fn serves_the_backlog_one_chunk_per_line() {
        // Raw fixture lines: the two blank ones must be ignored by the server.
        let backlog = FIXTURE.lines().map(String::from).collect();
        let sim = ChSim::start(config(backlog, true)).await.unwrap();
        let lines = fixture_lines();
        let expected: Vec<u8> = lines.iter().flat_map(|l| chunk(l.as_bytes(), true)).collect();
        let mut socket = raw_request(&sim, "GET /companies HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let received = raw_read_until(&mut socket, |r| r.ends_with(&expected)).await;
        let text = String::from_utf8_lossy(&received);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Type: application/json"), "{head}");
        assert!(head.contains("\r\nTransfer-Encoding: chunked"), "{head}");
        assert_eq!(body.as_bytes(), expected.as_slice(), "exactly one chunk per line, nothing else");
        let first = format!("{:x}\r\n{}\n\r\n", lines[0].len() + 1, lines[0]);
        assert!(body.starts_with(&first));
        assert_eq!(lines.len(), 28);
    }

    #[tokio::test]
    async fn reqwest_decodes_the_lines_and_the_heartbeats() {
        let cfg = ChSimConfig { heartbeat: Duration::from_millis(50), ..config(fixture_lines(), true) };
        let sim = ChSim::start(cfg).await.unwrap();
        let mut resp = get(&sim, "/companies").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        // Two heartbeats after the 28 lines: a blank line each.
        let body = read_until(&mut resp, |b| data_lines(b).len() == 28 && b.ends_with(b"\n\n\n")).await;
        assert_eq!(data_lines(&body), fixture_lines());
        assert!(sim.wait_for_sent_events(28, WAIT).await);
        assert_eq!(sim.sent_events(), 28, "heartbeats are not events");
    }

    #[tokio::test]
    async fn heartbeats_keep_an_idle_stream_alive() {
        let cfg = ChSimConfig { heartbeat: Duration::from_millis(50), ..config(Vec::new(), false) };
        let sim = ChSim::start(cfg).await.unwrap();
        let mut socket = raw_request(&sim, "GET /companies HTTP/1.1\r\n\r\n").await;
        let beats = HEARTBEAT_CHUNK.repeat(3);
        let received = raw_read_until(&mut socket, |r| r.ends_with(&beats)).await;
        let body = &received[head_end(&received).unwrap()..];
        assert!(body.chunks(HEARTBEAT_CHUNK.len()).all(|c| c == HEARTBEAT_CHUNK), "{body:?}");
    }

    #[tokio::test]
    async fn timepoint_is_inclusive() {
        let sim = fixture_sim().await;
        let tps = fixture_timepoints();
        let lines: Vec<String> = fixture_lines().into_iter().filter(|l| timepoint_of(l).is_some()).collect();
        let mut resp = get(&sim, &format!("/companies?timepoint={}", tps[10])).await;
        assert_eq!(read_lines(&mut resp, 1).await[0], lines[10], "the event at N is sent again");
        // A timepoint that falls in a gap starts at the next event.
        let gap = (0..tps.len() - 1).find(|&i| tps[i + 1] > tps[i] + 1).expect("the fixture has gaps");
        let mut resp = get(&sim, &format!("/companies?timepoint={}", tps[gap] + 1)).await;
        assert_eq!(read_lines(&mut resp, 1).await[0], lines[gap + 1]);
        let recorded: Vec<_> = sim.requests().iter().map(|r| r.timepoint).collect();
        assert_eq!(recorded, [Some(tps[10]), Some(tps[gap] + 1)]);
    }

    #[tokio::test]
    async fn trimmed_log_answers_416_for_an_old_timepoint() {
        let sim = fixture_sim().await;
        let tps = fixture_timepoints();
        let mut resp = get(&sim, "/companies?timepoint=1").await;
        assert_eq!(resp.status(), 200, "nothing trimmed yet: replay everything");
        assert_eq!(read_lines(&mut resp, 1).await[0], fixture_lines()[0]);
        sim.trim_before(tps[5]);
        assert_eq!(get(&sim, "/companies?timepoint=1").await.status(), 416);
        assert_eq!(get(&sim, &format!("/companies?timepoint={}", tps[5] - 1)).await.status(), 416);
        let mut resp = get(&sim, &format!("/companies?timepoint={}", tps[5])).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(timepoint_of(&read_lines(&mut resp, 1).await[0]), Some(tps[5]));
        let mut resp = get(&sim, "/companies").await;
        assert_eq!(timepoint_of(&read_lines(&mut resp, 1).await[0]), Some(tps[5]), "the trimmed lines are gone");
        assert_eq!(get(&sim, "/companies?timepoint=abc").await.status(), 416);
    }

    #[tokio::test]
    async fn auth_requires_the_key_as_user_name_with_empty_password() {
        let cfg = ChSimConfig { expected_key: Some("k3y".into()), ..config(fixture_lines(), true) };
        let sim = ChSim::start(cfg).await.unwrap();
        let url = format!("{}/companies", sim.base_url());
        let none = client().get(&url).send().await.unwrap();
        assert_eq!(none.status(), 401);
        assert!(!none.text().await.unwrap().is_empty(), "a 401 says why");
        let wrong = client().get(&url).basic_auth("nope", Some("")).send().await.unwrap();
        assert_eq!(wrong.status(), 401);
        let with_password = client().get(&url).basic_auth("k3y", Some("pw")).send().await.unwrap();
        assert_eq!(with_password.status(), 401);
        let mut right = client().get(&url).basic_auth("k3y", Some("")).send().await.unwrap();
        assert_eq!(right.status(), 200);
        assert_eq!(read_lines(&mut right, 1).await[0], fixture_lines()[0]);
        let authorized: Vec<bool> = sim.requests().iter().map(|r| r.authorized).collect();
        assert_eq!(authorized, [false, false, false, true]);
    }

    #[tokio::test]
    async fn unknown_path_is_404_and_garbage_is_400() {
        let sim = fixture_sim().await;
        assert_eq!(get(&sim, "/filings").await.status(), 404);
        assert_eq!(sim.requests()[0].path, "/filings");
        for garbage in
            ["NONSENSE\r\n\r\n", "GET /companies HTTP/1.1\r\nno colon here\r\n\r\n", "GET companies HTTP/1.1\r\n\r\n"]
        {
            let mut socket = raw_request(&sim, garbage).await;
            let mut reply = Vec::new();
            ttime::timeout(WAIT, socket.read_to_end(&mut reply)).await.unwrap().unwrap();
            assert!(reply.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{garbage:?}: {reply:?}");
        }
        assert_eq!(sim.requests().len(), 1, "unparseable requests are not recorded");
    }

    #[tokio::test]
    async fn cut_after_mid_line_leaves_a_partial_line_then_eof() {
        let sim = fixture_sim().await;
        sim.push_plan(ConnPlan::CutAfter { events: 3, mid_line: true });
        let lines = fixture_lines();
        let mut resp = get(&sim, "/companies").await;
        let body = read_to_end(&mut resp).await;
        let mut expected = lines[..3].join("\n") + "\n";
        expected.push_str(&lines[3][..lines[3].len() / 2]);
        assert_eq!(String::from_utf8(body).unwrap(), expected);
        assert_eq!(sim.sent_events(), 3, "the partial line is not counted");
        // The queue is empty again: the next connection is served normally.
        let mut resp = get(&sim, "/companies").await;
        assert_eq!(read_lines(&mut resp, 28).await, lines);
    }

    #[tokio::test]
    async fn cut_after_on_a_line_boundary_waits_for_live_lines() {
        let sim = ChSim::start(config(Vec::new(), false)).await.unwrap();
        sim.push_plan(ConnPlan::CutAfter { events: 2, mid_line: false });
        let mut resp = get(&sim, "/companies").await;
        let lines = fixture_lines();
        sim.append(lines[0].clone());
        sim.append(lines[1].clone());
        sim.append(lines[2].clone());
        let body = read_to_end(&mut resp).await;
        assert_eq!(String::from_utf8(body).unwrap(), format!("{}\n{}\n", lines[0], lines[1]));
    }

    #[tokio::test]
    async fn status_plans_answer_code_retry_after_and_body() {
        let sim = fixture_sim().await;
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        sim.push_plan(ConnPlan::Status {
            code: 429,
            retry_after: Some("1".into()),
            body: "slow down".into(),
            content_type: "text/plain".into(),
        });
        sim.push_plan(ConnPlan::Status {
            code: 503,
            retry_after: Some(date.into()),
            body: "<html><body>down</body></html>".into(),
            content_type: "text/html".into(),
        });
        sim.push_plan(ConnPlan::Status {
            code: 416,
            retry_after: None,
            body: "{}".into(),
            content_type: "application/json".into(),
        });
        let first = get(&sim, "/companies").await;
        assert_eq!(first.status(), 429);
        assert_eq!(first.headers()["retry-after"], "1");
        assert_eq!(first.headers()["content-type"], "text/plain");
        assert_eq!(first.text().await.unwrap(), "slow down");
        let second = get(&sim, "/companies").await;
        assert_eq!(second.status(), 503);
        assert_eq!(second.headers()["retry-after"], date);
        assert_eq!(second.text().await.unwrap(), "<html><body>down</body></html>");
        let third = get(&sim, "/companies").await;
        assert_eq!(third.status(), 416);
        assert!(third.headers().get("retry-after").is_none());
        assert_eq!(get(&sim, "/companies").await.status(), 200);
    }

    #[tokio::test]
    async fn stall_sends_headers_then_nothing() {
        let cfg = ChSimConfig { heartbeat: Duration::from_millis(20), ..config(fixture_lines(), true) };
        let sim = ChSim::start(cfg).await.unwrap();
        sim.push_plan(ConnPlan::Stall);
        let mut resp = get(&sim, "/companies").await;
        assert_eq!(resp.status(), 200);
        // Data and heartbeats are both due many times over in this window.
        let next = ttime::timeout(Duration::from_millis(300), resp.chunk()).await;
        assert!(next.is_err(), "no byte may arrive on a stalled stream: {next:?}");
        assert_eq!(sim.sent_events(), 0);
    }

    #[tokio::test]
    async fn refuse_closes_without_a_response() {
        let sim = fixture_sim().await;
        sim.push_plan(ConnPlan::Refuse);
        let url = format!("{}/companies", sim.base_url());
        assert!(client().get(&url).send().await.is_err());
        assert_eq!(get(&sim, "/companies").await.status(), 200);
        assert_eq!(sim.connections(), 2);
        assert_eq!(sim.requests().len(), 1, "a refused connection never had its request read");
    }

    #[tokio::test]
    async fn a_live_stream_receives_appended_lines_only() {
        let sim = ChSim::start(config(fixture_lines(), false)).await.unwrap();
        let mut resp = get(&sim, "/companies").await;
        assert!(sim.wait_for_requests(1, WAIT).await);
        let mut gen = CompanyGen::new(Some(1));
        gen.resume_after(*fixture_timepoints().last().unwrap());
        let new = [gen.next_event(Utc::now()), gen.next_event(Utc::now())];
        sim.append(new[0].clone());
        assert_eq!(read_lines(&mut resp, 1).await, [new[0].clone()], "no backlog without a timepoint");
        sim.append(new[1].clone());
        let body = read_until(&mut resp, |b| data_lines(b).len() == 1).await;
        assert_eq!(data_lines(&body), [new[1].clone()]);
        assert!(sim.wait_for_sent_events(2, WAIT).await);
    }

    #[tokio::test]
    async fn shutdown_and_drop_close_open_streams() {
        let sim = fixture_sim().await;
        let mut resp = get(&sim, "/companies").await;
        read_lines(&mut resp, 28).await;
        sim.shutdown().await;
        read_to_end(&mut resp).await;

        let sim = fixture_sim().await;
        let mut resp = get(&sim, "/companies").await;
        read_lines(&mut resp, 28).await;
        drop(sim);
        read_to_end(&mut resp).await;
    }

    #[tokio::test]
    async fn injected_faults_are_recoverable_by_resuming() {
        let sim = fixture_sim().await;
        assert!(!sim.inject_fault(Fault::RateLimited), "no open stream to hit");
        let lines: Vec<String> = fixture_lines();
        let last = lines.last().unwrap().clone();
        let last_tp = timepoint_of(&last).unwrap();
        let resume = format!("/companies?timepoint={last_tp}");

        let mut resp = get(&sim, "/companies").await;
        read_lines(&mut resp, 28).await;
        assert!(sim.inject_fault(Fault::RateLimited));
        read_to_end(&mut resp).await;
        let limited = get(&sim, &resume).await;
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.headers()["retry-after"], "5");

        let mut resp = get(&sim, &resume).await;
        assert_eq!(read_lines(&mut resp, 1).await, [last.as_str()], "resume replays the last event");
        assert!(sim.inject_fault(Fault::CutMidLine));
        let mut gen = CompanyGen::new(Some(2));
        gen.resume_after(last_tp);
        let next = gen.next_event(Utc::now());
        sim.append(next.clone());
        let body = String::from_utf8(read_to_end(&mut resp).await).unwrap();
        assert!(body.ends_with(&next[..next.len() / 2]), "cut in the middle of the new line: {body}");

        let mut resp = get(&sim, &resume).await;
        assert_eq!(read_lines(&mut resp, 2).await, [last.clone(), next], "nothing lost");
        assert!(sim.inject_fault(Fault::Unavailable));
        read_to_end(&mut resp).await;
        let down = get(&sim, &resume).await;
        assert_eq!(down.status(), 503);
        assert!(down.text().await.unwrap().contains("<html>"));
        assert_eq!(get(&sim, &resume).await.status(), 200);
    }

    #[tokio::test]
    async fn the_generator_continues_after_the_backlog() {
        let generator = GeneratorConfig { events_per_sec: 200.0, seed: Some(5) };
        let cfg = ChSimConfig { generator: Some(generator), ..config(fixture_lines(), false) };
        let sim = ChSim::start(cfg).await.unwrap();
        let mut resp = get(&sim, "/companies").await;
        let lines = read_lines(&mut resp, 5).await;
        let backlog_end = *fixture_timepoints().last().unwrap();
        let mut previous = backlog_end;
        for line in lines {
            let ev = parse_event(line.into_bytes()).unwrap();
            assert!(ev.timepoint > previous, "{} after {previous}", ev.timepoint);
            previous = ev.timepoint;
        }
    }

    #[test]
    fn config_debug_hides_the_key() {
        let cfg = ChSimConfig { expected_key: Some("s3cret".into()), ..ChSimConfig::default() };
        let printed = format!("{cfg:?}");
        assert!(!printed.contains("s3cret") && printed.contains("redacted"), "{printed}");
    }

    #[test]
    fn request_parsing() {
        let r =
            parse_request(b"GET /companies?x=1&timepoint=42 HTTP/1.1\r\nAuthorization: Basic YTo=\r\n\r\n").unwrap();
        assert_eq!((r.path.as_str(), r.timepoint), ("/companies", TimepointParam::Valid(42)));
        assert!(basic_auth_matches(r.authorization.as_deref(), "a"));
        assert!(!basic_auth_matches(r.authorization.as_deref(), "b"));
        assert_eq!(parse_request(b"GET /companies HTTP/1.1\n\n").unwrap().timepoint, TimepointParam::Absent);
        assert!(parse_request(b"GET /companies HTTP/2\r\n\r\n").is_none());
        assert!(parse_request(b"get /companies HTTP/1.1\r\n\r\n").is_none());
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
    }

    #[tokio::test]
    async fn garbage_answers_non_http_bytes() {
        let sim = fixture_sim().await;
        sim.push_plan(ConnPlan::Garbage(b"\x15\x03\x01\x00\x02\x02\x46SSH-2.0-nope\r\n".to_vec()));
        let mut socket = raw_request(&sim, "GET /companies HTTP/1.1\r\n\r\n").await;
        let mut reply = Vec::new();
        ttime::timeout(WAIT, socket.read_to_end(&mut reply)).await.unwrap().unwrap();
        assert!(reply.starts_with(b"\x15\x03\x01") && reply.ends_with(b"SSH-2.0-nope\r\n"), "{reply:?}");
        assert_eq!(sim.requests().len(), 1, "the request was read first");
        let url = format!("{}/companies", sim.base_url());
        sim.push_plan(ConnPlan::Garbage(b"NOT HTTP AT ALL\r\n\r\n".to_vec()));
        assert!(client().get(&url).send().await.is_err(), "a client cannot read that as HTTP");
        assert_eq!(get(&sim, "/companies").await.status(), 200);
    }

    #[tokio::test]
    async fn delayed_status_waits_before_answering() {
        let sim = fixture_sim().await;
        let then = ConnPlan::Status {
            code: 504,
            retry_after: None,
            body: "<html>gateway timeout</html>".into(),
            content_type: "text/html".into(),
        };
        sim.push_plan(ConnPlan::Delayed { delay: Duration::from_millis(200), then: Box::new(then) });
        let started = Instant::now();
        let resp = get(&sim, "/companies").await;
        assert_eq!(resp.status(), 504);
        assert!(started.elapsed() >= Duration::from_millis(200));
        sim.push_plan(ConnPlan::Delayed { delay: Duration::from_millis(10), then: Box::new(ConnPlan::Refuse) });
        let url = format!("{}/companies", sim.base_url());
        assert!(client().get(&url).send().await.is_err(), "closed unanswered after the wait");
        assert_eq!(sim.requests().len(), 1, "a delayed refusal is not recorded as a request");
    }

    #[tokio::test]
    async fn drip_sends_one_byte_per_chunk_then_serves_normally() {
        // The two shortest fixture lines (the malformed one and the unknown kind): a drip is slow.
        let lines: Vec<String> = fixture_lines().into_iter().filter(|l| l.len() < 700).collect();
        assert_eq!(lines.len(), 2);
        let sim = ChSim::start(config(lines.clone(), true)).await.unwrap();
        sim.push_plan(ConnPlan::Drip { events: 1, every: Duration::ZERO });
        let mut socket = raw_request(&sim, "GET /companies HTTP/1.1\r\n\r\n").await;
        let mut expected: Vec<u8> = Vec::new();
        for byte in lines[0].as_bytes().iter().chain(b"\n") {
            expected.extend_from_slice(&chunk(std::slice::from_ref(byte), false));
        }
        for line in &lines[1..] {
            expected.extend_from_slice(&chunk(line.as_bytes(), true));
        }
        let received = raw_read_until(&mut socket, |r| r.ends_with(&expected)).await;
        let body_at = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(&received[body_at..], expected.as_slice());
        assert!(sim.wait_for_sent_events(2, WAIT).await);
    }

    #[tokio::test]
    async fn inject_writes_raw_lines_that_are_not_in_the_log() {
        let sim = fixture_sim().await;
        let lines = fixture_lines();
        let junk = vec![vec![0xff, 0xfe, b'{'], b"[[[[".to_vec()];
        sim.push_plan(ConnPlan::Inject { after: 2, lines: junk });
        let mut resp = get(&sim, "/companies").await;
        let body = read_until(&mut resp, |b| data_lines(b).len() >= 6).await;
        let mut expected = format!("{}\n{}\n", lines[0], lines[1]).into_bytes();
        expected.extend_from_slice(b"\xff\xfe{\n[[[[\n");
        expected.extend_from_slice(format!("{}\n{}\n", lines[2], lines[3]).as_bytes());
        assert!(body.starts_with(&expected), "{:?}", String::from_utf8_lossy(&body));
        assert!(sim.wait_for_sent_events(28, WAIT).await);
        assert_eq!(sim.sent_events(), 28, "injected lines are not events");
        // A resume does not see them.
        let tp = timepoint_of(&lines[1]).unwrap();
        let mut resp = get(&sim, &format!("/companies?timepoint={tp}")).await;
        assert_eq!(read_lines(&mut resp, 2).await, [lines[1].clone(), lines[2].clone()]);
    }

    #[tokio::test]
    async fn paced_and_default_plans() {
        let sim = fixture_sim().await;
        sim.set_default_plan(Some(ConnPlan::Paced { every: Duration::from_millis(20) }));
        let started = Instant::now();
        let mut resp = get(&sim, "/companies").await;
        read_lines(&mut resp, 5).await;
        assert!(started.elapsed() >= Duration::from_millis(100), "five lines 20 ms apart");
        let unavailable =
            ConnPlan::Status { code: 503, retry_after: None, body: String::new(), content_type: "text/plain".into() };
        sim.set_default_plan(Some(unavailable));
        sim.push_plan(ConnPlan::Serve);
        assert_eq!(get(&sim, "/companies").await.status(), 200, "the queue comes first");
        assert_eq!(get(&sim, "/companies").await.status(), 503);
        assert_eq!(get(&sim, "/companies").await.status(), 503, "the default lasts");
        sim.set_default_plan(None);
        assert_eq!(get(&sim, "/companies").await.status(), 200);
    }

    #[tokio::test]
    async fn restart_on_the_same_port() {
        let sim = fixture_sim().await;
        let addr = sim.addr();
        sim.shutdown().await;
        assert!(TcpStream::connect(addr).await.is_err(), "the port is closed: refused");
        let sim = ChSim::start_on(addr, config(fixture_lines(), true)).await.unwrap();
        assert_eq!(sim.addr(), addr);
        assert_eq!(get(&sim, "/companies").await.status(), 200);
    }
}
