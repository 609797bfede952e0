//! A loopback wig80 quote server (docs/protocols.md §2), and the WebSocket plumbing
//! the carbon simulator shares with it: [`WsPlan`], scripted per connection,
//! and frames serialised the way Python's `json.dumps` does (`": "`, `", "`).
//!
//! Like the real server (a Python `websockets` app) it greets each socket,
//! broadcasts a snapshot of all 16 symbols to *every* socket on a timer,
//! subscribed or not, answers `subscribe`, `ping` and `status`, ignores
//! unknown types, objects without `type` and non-object JSON, answers invalid
//! JSON (and an empty frame) with an error frame, and sends protocol pings.
//! The first snapshot reaches a new socket about 100 ms after it connects, so
//! tests do not wait for the (30 s by default) timer.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{Datelike, Local, NaiveDateTime, Timelike, Utc, Weekday};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{self as ttime, MissedTickBehavior};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::header::LOCATION;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::chaos::Chaos;
use super::prices::{wig80_symbols, PriceWalk, Quote};
use super::{Recent, RECENT_KEPT};

/// The behaviour of one future WebSocket connection (see `push_plan` on the
/// simulators). "Frames" are the server's text and binary frames, never
/// protocol pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsPlan {
    /// Behave like the real server.
    Serve,
    /// Send `frames` frames, then a close frame with `code`.
    CloseAfter { frames: usize, code: u16 },
    /// Send `after_frames` frames, then close the TCP connection without a close frame.
    Drop { after_frames: usize },
    /// Complete the upgrade, then send nothing and ignore everything, pings included.
    Stall,
    /// Accept the TCP connection and never answer the HTTP upgrade request.
    NoUpgrade,
    /// Send a binary frame, a 2 MiB text frame of junk and a frame of invalid
    /// JSON, then serve normally.
    Garbage,
    /// Complete the upgrade, send one text frame of `bytes` bytes (a JSON
    /// object padded with junk), then close the TCP connection without a
    /// close frame (a client with a smaller frame limit gives up on it anyway).
    Huge { bytes: usize },
    /// Answer the upgrade request with `code` (301, 302, 307, 308) and
    /// `Location: ws://{to}{path}`: a feed that moved, to this server or another.
    Redirect { code: u16, to: SocketAddr, path: &'static str },
}

/// How the wig80 simulator behaves.
#[derive(Debug, Clone)]
pub struct Wig80Config {
    /// The snapshot timer: 30 s on the real server; ~2 s for a lively demo.
    pub snapshot_every: Duration,
    /// Protocol-level pings: every 20 s on the real server.
    pub protocol_ping_every: Option<Duration>,
    /// `true`: naive local `isoformat()` with microseconds, as the real server
    /// sends; `false`: UTC with milliseconds and `Z`, as its docs show.
    pub naive_timestamps: bool,
    /// Makes the price walk reproducible.
    pub seed: Option<u64>,
}

impl Default for Wig80Config {
    /// The real server's timings.
    fn default() -> Self {
        Self {
            snapshot_every: Duration::from_secs(30),
            protocol_ping_every: Some(Duration::from_secs(20)),
            naive_timestamps: true,
            seed: None,
        }
    }
}

/// A new socket gets its first snapshot this soon, whatever the timer.
const FIRST_SNAPSHOT: Duration = Duration::from_millis(100);

/// A running wig80 simulator on `127.0.0.1`. Dropping it (or
/// [`Wig80Sim::shutdown`]) stops the server and closes its sockets.
pub struct Wig80Sim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Wig80Sim {
    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(config: Wig80Config) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            ws: WsShared::new(),
            naive: config.naive_timestamps,
            walk: Mutex::new(PriceWalk::new(wig80_symbols(), config.seed)),
            snapshots: broadcast::channel(16).0,
            snapshots_sent: AtomicUsize::new(0),
            subscribers: AtomicUsize::new(0),
            ping_every: config.protocol_ping_every.filter(|d| !d.is_zero()),
            ping_rng: Mutex::new(config.seed.map_or_else(StdRng::from_os_rng, StdRng::seed_from_u64)),
        });
        let (stop, stop_rx) = watch::channel(false);
        // A zero period would make the timer panic.
        let every = config.snapshot_every.max(Duration::from_millis(1));
        let task = tokio::spawn(run(listener, shared.clone(), stop_rx, every));
        Ok(Self { addr, shared, stop, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// `stock_updates` frames written to sockets so far (one per socket per snapshot).
    pub fn snapshots_sent(&self) -> usize {
        self.shared.snapshots_sent.load(Ordering::SeqCst)
    }

    /// Stops the server and waits until every connection is closed.
    pub async fn shutdown(self) {
        let Self { stop, task, .. } = self;
        stop.send_replace(true);
        let _ = task.await;
    }
}

struct Shared {
    ws: WsShared,
    naive: bool,
    walk: Mutex<PriceWalk>,
    /// Each timer snapshot, serialised once for every socket.
    snapshots: broadcast::Sender<Arc<str>>,
    snapshots_sent: AtomicUsize,
    /// Open sockets that sent `subscribe` (the `status` frame reports it).
    subscribers: AtomicUsize,
    ping_every: Option<Duration>,
    ping_rng: Mutex<StdRng>,
}

impl Shared {
    fn timestamp(&self) -> String {
        timestamp(self.naive)
    }

    fn snapshot(&self) -> String {
        let walk = lock(&self.walk);
        snapshot_frame(walk.quotes(), self.naive)
    }

    fn ping_payload(&self) -> Vec<u8> {
        lock(&self.ping_rng).random::<[u8; 4]>().to_vec()
    }
}

async fn run(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>, every: Duration) {
    let mut connections = JoinSet::new();
    let mut timer = ttime::interval_at(ttime::Instant::now() + every, every);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    let plan = shared.ws.accepted();
                    connections.spawn(serve_connection(socket, shared.clone(), plan));
                }
                Err(e) => {
                    tracing::debug!(target: "feedtop::sim", "wig80 sim: accept failed: {e}");
                    ttime::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = timer.tick() => {
                let frame = {
                    let mut walk = lock(&shared.walk);
                    walk.step();
                    snapshot_frame(walk.quotes(), shared.naive)
                };
                // No receivers is fine: nobody is connected.
                let _ = shared.snapshots.send(frame.into());
            }
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(socket: TcpStream, shared: Arc<Shared>, plan: WsPlan) {
    let Some((mut conn, _target)) = open(socket, plan, &shared.ws, None).await else {
        return;
    };
    // Subscribed before the greeting: no timer snapshot can slip between.
    let mut snapshots = shared.snapshots.subscribe();
    if !conn.send_text(connection_frame(&shared.timestamp())).await {
        return;
    }
    let mut subscribed = SubscriberGuard { shared: &shared, counted: false };
    let first = ttime::sleep(FIRST_SNAPSHOT);
    tokio::pin!(first);
    let mut first_due = true;
    let mut pings = shared.ping_every.map(|every| {
        let mut timer = ttime::interval_at(ttime::Instant::now() + every, every);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        timer
    });
    loop {
        // `(frame, is_snapshot)`
        let out = tokio::select! {
            _ = &mut first, if first_due => {
                first_due = false;
                Some((shared.snapshot(), true))
            }
            snapshot = snapshots.recv() => match snapshot {
                Ok(frame) => Some((frame.to_string(), true)),
                Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick(&mut pings) => {
                if conn.ws.send(Message::Ping(shared.ping_payload().into())).await.is_err() {
                    return;
                }
                None
            }
            incoming = conn.next() => match incoming {
                Incoming::Text(text) => {
                    shared.ws.record(&text);
                    reply_to(&text, &shared, &mut subscribed).map(|reply| (reply, false))
                }
                // `json.loads` takes bytes too: a binary frame is read like text.
                Incoming::Binary(bytes) => {
                    reply_to(&String::from_utf8_lossy(&bytes), &shared, &mut subscribed).map(|reply| (reply, false))
                }
                Incoming::Other => None,
                Incoming::Gone | Incoming::Dropped => return,
            },
        };
        if let Some((frame, is_snapshot)) = out {
            if is_snapshot {
                shared.snapshots_sent.fetch_add(1, Ordering::SeqCst);
            }
            if !conn.send_text(frame).await {
                return;
            }
        }
    }
}

/// Counts a socket among the subscribers from its first `subscribe` until it closes.
struct SubscriberGuard<'a> {
    shared: &'a Shared,
    counted: bool,
}

impl SubscriberGuard<'_> {
    fn subscribe(&mut self) {
        if !self.counted {
            self.counted = true;
            self.shared.subscribers.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for SubscriberGuard<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.shared.subscribers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The server's answer to one client frame, if any.
fn reply_to(text: &str, shared: &Shared, subscribed: &mut SubscriberGuard<'_>) -> Option<String> {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(_) => return Some(py_json(&ErrorFrame { kind: "error", message: "Invalid JSON message" })),
    };
    let kind = value.as_object()?.get("type")?.as_str()?;
    let frame = match kind {
        "subscribe" => {
            subscribed.subscribe();
            py_json(&TypedStamp { kind: "subscription_confirmed", timestamp: shared.timestamp() })
        }
        "ping" => py_json(&TypedStamp { kind: "pong", timestamp: shared.timestamp() }),
        "status" => py_json(&StatusFrame {
            kind: "status",
            questdb_status: "error",
            pocketbase_status: "error",
            data_providers: &["Stooq.pl"],
            subscribers: shared.subscribers.load(Ordering::SeqCst),
            timestamp: shared.timestamp(),
        }),
        _ => return None,
    };
    Some(frame)
}

#[derive(Serialize)]
struct ConnectionFrame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    status: &'a str,
    timestamp: &'a str,
    message: &'a str,
}

pub(crate) fn connection_frame(timestamp: &str) -> String {
    py_json(&ConnectionFrame {
        kind: "connection",
        status: "connected",
        timestamp,
        message: "Connected to real-time stream",
    })
}

#[derive(Serialize)]
struct TypedStamp<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct StatusFrame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    questdb_status: &'a str,
    pocketbase_status: &'a str,
    data_providers: &'a [&'a str],
    subscribers: usize,
    timestamp: String,
}

#[derive(Serialize)]
struct StockUpdates<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    count: usize,
    data: Vec<StockItem<'a>>,
}

#[derive(Serialize)]
struct StockItem<'a> {
    timestamp: String,
    symbol: &'a str,
    price: f64,
    change: f64,
    change_percent: f64,
    volume: u64,
    high: f64,
    low: f64,
    open: f64,
    market_status: &'a str,
    data_source: &'a str,
}

fn snapshot_frame(quotes: &[Quote], naive: bool) -> String {
    stock_updates_frame(quotes, || timestamp(naive))
}

/// A `stock_updates` frame of `quotes`, with timestamps from `stamp` (the
/// benchmark's quote server stamps in UTC with microseconds).
pub(crate) fn stock_updates_frame(quotes: &[Quote], stamp: impl Fn() -> String) -> String {
    let status = market_status(Local::now().naive_local());
    // As on the real server, each item is stamped as it is built, the frame last.
    let data: Vec<StockItem<'_>> = quotes
        .iter()
        .map(|q| StockItem {
            timestamp: stamp(),
            symbol: q.symbol,
            price: q.price,
            change: q.change,
            change_percent: q.change_percent,
            volume: q.volume,
            high: q.high,
            low: q.low,
            open: q.open,
            market_status: status,
            data_source: "stooq.pl",
        })
        .collect();
    py_json(&StockUpdates { kind: "stock_updates", timestamp: stamp(), count: data.len(), data })
}

/// The Warsaw session, roughly, in the server's local time.
fn market_status(now: NaiveDateTime) -> &'static str {
    if matches!(now.weekday(), Weekday::Sat | Weekday::Sun) {
        return "weekend";
    }
    match now.hour() * 60 + now.minute() {
        m if (8 * 60..9 * 60).contains(&m) => "pre_market",
        m if (9 * 60..17 * 60).contains(&m) => "open",
        m if (17 * 60..18 * 60).contains(&m) => "after_hours",
        _ => "closed",
    }
}

/// A frame timestamp: the real server's naive local `isoformat()`, or the docs' UTC `…Z`.
fn timestamp(naive: bool) -> String {
    if naive {
        python_isoformat(Local::now().naive_local())
    } else {
        Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

/// Python's `datetime.isoformat()`: microseconds, which it leaves out when they are zero.
pub(crate) fn python_isoformat(t: NaiveDateTime) -> String {
    if t.nanosecond() / 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }
}

// ---------------------------------------------------------------------------
// Shared with the carbon simulator: Python-style JSON and the WebSocket plumbing.
// ---------------------------------------------------------------------------

/// Serialises like Python's `json.dumps` with default arguments: `": "` and
/// `", "` separators, non-ASCII escaped as `\uXXXX`. Field order is the
/// struct's declaration order.
pub(crate) fn py_json<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PyFormatter);
    // Our frame types have string keys only, so this cannot fail.
    if let Err(e) = value.serialize(&mut serializer) {
        tracing::error!(target: "feedtop::sim", "sim frame did not serialise: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

struct PyFormatter;

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        if fragment.is_ascii() {
            return writer.write_all(fragment.as_bytes());
        }
        for c in fragment.chars() {
            if c.is_ascii() {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// How long a connection may take to send its upgrade request.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server-initiated close waits for the client's close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// The `Garbage` plan's junk text frame.
const JUNK_LEN: usize = 2 * 1024 * 1024;

pub(crate) type Ws = WebSocketStream<TcpStream>;

/// Scripting and inspecting either WebSocket simulator (wig80, carbon): both
/// keep the same [`WsShared`] state, so these are written once, here.
// The futures are awaited where they are made (tests, the demo), never
// spawned, so the missing `Send` bound the lint warns about does not bite.
#[allow(async_fn_in_trait)]
pub trait WsScript {
    /// The simulator's scripting state.
    fn script(&self) -> &WsShared;

    /// TCP connections accepted so far.
    fn connections(&self) -> usize {
        self.script().connections()
    }

    /// Every text frame clients sent, in order.
    fn received(&self) -> Vec<String> {
        self.script().received()
    }

    /// The close code of every close frame clients sent, in order.
    fn client_closes(&self) -> Vec<Option<u16>> {
        self.script().client_closes()
    }

    /// Waits until `pred` holds for the frames received; false if `within` passed first.
    async fn wait_for_received(&self, pred: impl Fn(&[String]) -> bool, within: Duration) -> bool {
        self.script().wait_for_received(pred, within).await
    }

    /// Queues the behaviour of the next accepted connection (FIFO); with the
    /// queue empty, connections are served normally.
    fn push_plan(&self, plan: WsPlan) {
        self.script().push_plan(plan);
    }

    /// Closes every open socket abruptly, without a close frame.
    fn drop_all(&self) {
        self.script().drop_all();
    }

    /// The plan of every connection while the queue is empty (`None`: `Serve`).
    fn set_default_plan(&self, plan: Option<WsPlan>) {
        self.script().set_default_plan(plan);
    }

    /// Random faults for every connection while the queue is empty (`--chaos`).
    fn set_chaos(&self, chaos: Option<Chaos>) {
        self.script().set_chaos(chaos);
    }
}

impl WsScript for Wig80Sim {
    fn script(&self) -> &WsShared {
        &self.shared.ws
    }
}

/// State every WebSocket simulator keeps: plans, received frames, counters.
pub struct WsShared {
    connections: AtomicUsize,
    received: Mutex<Recent<String>>,
    received_count: watch::Sender<usize>,
    plans: Mutex<VecDeque<WsPlan>>,
    default_plan: Mutex<Option<WsPlan>>,
    chaos: Mutex<Option<Chaos>>,
    /// Bumped by `drop_all`: every connection watching it ends abruptly.
    drops: watch::Sender<u64>,
    /// The code of every close frame a client sent (`None`: a frame without one).
    client_closes: Arc<Mutex<Vec<Option<u16>>>>,
}

impl WsShared {
    pub(crate) fn new() -> Self {
        Self {
            connections: AtomicUsize::new(0),
            received: Mutex::new(Recent::new(RECENT_KEPT)),
            received_count: watch::Sender::new(0),
            plans: Mutex::new(VecDeque::new()),
            default_plan: Mutex::new(None),
            chaos: Mutex::new(None),
            drops: watch::Sender::new(0),
            client_closes: Arc::default(),
        }
    }

    /// Counts an accepted TCP connection and hands out its plan: a scripted
    /// one first, else a random fault under chaos, else the default.
    pub(crate) fn accepted(&self) -> WsPlan {
        self.connections.fetch_add(1, Ordering::SeqCst);
        let queued = lock(&self.plans).pop_front();
        let drawn = || lock(&self.chaos).as_ref().map(Chaos::ws_plan);
        queued.or_else(drawn).or(*lock(&self.default_plan)).unwrap_or(WsPlan::Serve)
    }

    pub(crate) fn set_chaos(&self, chaos: Option<Chaos>) {
        *lock(&self.chaos) = chaos;
    }

    pub(crate) fn set_default_plan(&self, plan: Option<WsPlan>) {
        *lock(&self.default_plan) = plan;
    }

    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub(crate) fn push_plan(&self, plan: WsPlan) {
        lock(&self.plans).push_back(plan);
    }

    pub(crate) fn drop_all(&self) {
        self.drops.send_modify(|generation| *generation += 1);
    }

    pub(crate) fn record(&self, text: &str) {
        let count = lock(&self.received).push(text.to_string());
        self.received_count.send_replace(count);
    }

    pub(crate) fn received(&self) -> Vec<String> {
        lock(&self.received).to_vec()
    }

    pub(crate) fn client_closes(&self) -> Vec<Option<u16>> {
        lock(&self.client_closes).clone()
    }

    pub(crate) async fn wait_for_received(&self, pred: impl Fn(&[String]) -> bool, within: Duration) -> bool {
        let mut count = self.received_count.subscribe();
        let wait = async {
            loop {
                // Seen before checking: a frame recorded after this wakes `changed()`.
                count.borrow_and_update();
                if pred(lock(&self.received).as_slice()) {
                    return true;
                }
                if count.changed().await.is_err() {
                    return false;
                }
            }
        };
        ttime::timeout(within, wait).await.unwrap_or(false)
    }
}

/// What a served connection read next.
pub(crate) enum Incoming {
    Text(String),
    Binary(Vec<u8>),
    /// Ping, pong, or the client's close frame (answered by the library).
    Other,
    /// The client left, or the connection failed.
    Gone,
    /// `drop_all` was called (or the simulator is gone).
    Dropped,
}

/// How many frames a connection may still send under its plan.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Unlimited,
    CloseAfter { frames: usize, code: u16 },
    Drop { after_frames: usize },
}

/// An upgraded connection that follows its plan's frame budget.
pub(crate) struct Conn {
    pub(crate) ws: Ws,
    budget: Budget,
    sent: usize,
    drops: watch::Receiver<u64>,
    client_closes: Arc<Mutex<Vec<Option<u16>>>>,
}

impl Conn {
    /// Sends a text frame. False when the connection is over: the client left,
    /// or the plan's budget ran out (the close or drop has been done).
    pub(crate) async fn send_text(&mut self, text: String) -> bool {
        self.send(Message::text(text)).await
    }

    async fn send(&mut self, message: Message) -> bool {
        if self.ws.send(message).await.is_err() {
            return false;
        }
        self.sent += 1;
        self.within_budget().await
    }

    /// Applies the budget: false (after closing, for `CloseAfter`) once it is spent.
    async fn within_budget(&mut self) -> bool {
        match self.budget {
            Budget::CloseAfter { frames, code } if self.sent >= frames => {
                self.close(code).await;
                false
            }
            // The caller returns and drops the socket: no close frame.
            Budget::Drop { after_frames } if self.sent >= after_frames => false,
            _ => true,
        }
    }

    /// Sends a close frame with `code` and an empty reason, then waits briefly
    /// for the client's close frame, as a polite server does.
    pub(crate) async fn close(&mut self, code: u16) {
        let frame = CloseFrame { code: CloseCode::from(code), reason: "".into() };
        if self.ws.close(Some(frame)).await.is_err() {
            return;
        }
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        let _ = ttime::timeout(CLOSE_LINGER, drain).await;
    }

    /// The next client frame, or why there is none. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Incoming {
        tokio::select! {
            biased;
            _ = self.drops.changed() => Incoming::Dropped,
            message = self.ws.next() => match message {
                Some(Ok(Message::Text(text))) => Incoming::Text(text.to_string()),
                Some(Ok(Message::Binary(bytes))) => Incoming::Binary(bytes.to_vec()),
                Some(Ok(Message::Close(frame))) => {
                    lock(&self.client_closes).push(frame.map(|f| u16::from(f.code)));
                    Incoming::Other
                }
                Some(Ok(_)) => Incoming::Other,
                Some(Err(_)) | None => Incoming::Gone,
            },
        }
    }
}

/// Carries out the parts of a plan that come before serving: `NoUpgrade` and
/// `Stall` (which never return a connection), the upgrade itself, the
/// `Garbage` frames, and a budget of zero frames. `path`, when given, is the
/// only path the upgrade accepts (else 404). Returns the connection and the
/// request target (path and query).
pub(crate) async fn open(
    mut socket: TcpStream,
    plan: WsPlan,
    shared: &WsShared,
    path: Option<&str>,
) -> Option<(Conn, String)> {
    let mut drops = shared.drops.subscribe();
    if plan == WsPlan::NoUpgrade {
        hold_raw(&mut socket, &mut drops).await;
        return None;
    }
    let _ = socket.set_nodelay(true);
    let mut target = String::new();
    // The signature is tungstenite's `Callback`: the large error type is theirs.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        target = request.uri().to_string();
        if let WsPlan::Redirect { code, to, path } = plan {
            let mut moved = ErrorResponse::new(None);
            *moved.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
            if let Ok(location) = HeaderValue::from_str(&format!("ws://{to}{path}")) {
                moved.headers_mut().insert(LOCATION, location);
            }
            return Err(moved);
        }
        match path {
            Some(path) if request.uri().path() != path => {
                let mut refusal = ErrorResponse::new(Some("Not Found".into()));
                *refusal.status_mut() = StatusCode::NOT_FOUND;
                Err(refusal)
            }
            _ => Ok(response),
        }
    };
    let upgraded = ttime::timeout(UPGRADE_TIMEOUT, tokio_tungstenite::accept_hdr_async(socket, callback)).await;
    let Ok(Ok(ws)) = upgraded else {
        return None;
    };
    let budget = match plan {
        WsPlan::CloseAfter { frames, code } => Budget::CloseAfter { frames, code },
        WsPlan::Drop { after_frames } => Budget::Drop { after_frames },
        _ => Budget::Unlimited,
    };
    let mut conn = Conn { ws, budget, sent: 0, drops, client_closes: shared.client_closes.clone() };
    match plan {
        WsPlan::Stall => {
            hold_raw(conn.ws.get_mut(), &mut conn.drops).await;
            return None;
        }
        WsPlan::Huge { bytes } => {
            let _ = conn.ws.send(Message::text(huge_frame(bytes))).await;
            let _ = conn.ws.flush().await;
            return None;
        }
        WsPlan::Garbage => {
            let junk: String = "garbage! ".chars().cycle().take(JUNK_LEN).collect();
            let frames = [
                Message::binary(vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]),
                Message::text(junk),
                Message::text(r#"{"type": "stock_updates", "data": [{"symbol": "#),
            ];
            for frame in frames {
                if !conn.send(frame).await {
                    return None;
                }
            }
        }
        _ => {}
    }
    if !conn.within_budget().await {
        return None;
    }
    Some((conn, target))
}

/// `{"type": "stock_updates", "count": 0, "data": [], "pad": "xxx…"}`, `bytes`
/// long (never shorter than the envelope).
fn huge_frame(bytes: usize) -> String {
    let head = r#"{"type": "stock_updates", "count": 0, "data": [], "pad": ""#;
    let tail = r#""}"#;
    let pad = bytes.saturating_sub(head.len() + tail.len());
    let mut frame = String::with_capacity(bytes);
    frame.push_str(head);
    frame.extend(std::iter::repeat_n('x', pad));
    frame.push_str(tail);
    frame
}

/// Keeps a socket open without answering anything until the client leaves
/// or `drop_all` is called.
async fn hold_raw(socket: &mut TcpStream, drops: &mut watch::Receiver<u64>) {
    let mut sink = [0u8; 1024];
    let read_all = async { while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {} };
    tokio::select! {
        _ = read_all => {}
        _ = drops.changed() => {}
    }
}

/// Ticks an optional timer; never completes without one.
pub(crate) async fn tick(timer: &mut Option<ttime::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Returns when asked to stop, or when the simulator handle is dropped.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A poisoned lock only means a test panicked elsewhere; the data is still fine.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use tokio::net::TcpStream;
    use tokio::time::{self as ttime, Instant};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

    use super::*;

    const CAPTURE: &str = include_str!("../../tests/fixtures/captured-wig80.jsonl");
    /// Generous: only reached when a test is failing.
    pub(crate) const WAIT: Duration = Duration::from_secs(10);
    /// How long "nothing arrives" is watched for.
    pub(crate) const QUIET: Duration = Duration::from_millis(300);
    const HOUR: Duration = Duration::from_secs(3600);

    pub(crate) type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

    fn config() -> Wig80Config {
        Wig80Config { snapshot_every: HOUR, protocol_ping_every: None, naive_timestamps: true, seed: Some(42) }
    }

    async fn sim(config: Wig80Config) -> Wig80Sim {
        Wig80Sim::start(config).await.unwrap()
    }

    pub(crate) async fn connect(url: &str) -> Client {
        ttime::timeout(WAIT, connect_async(url)).await.expect("connect timed out").expect("connect failed").0
    }

    /// The next data frame (text or binary), skipping pings; panics on close or deadline.
    pub(crate) async fn next_frame(client: &mut Client) -> Message {
        let deadline = Instant::now() + WAIT;
        loop {
            match ttime::timeout_at(deadline, client.next()).await {
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(message))) => return message,
                other => panic!("no frame: {other:?}"),
            }
        }
    }

    pub(crate) async fn next_text(client: &mut Client) -> String {
        match next_frame(client).await {
            Message::Text(text) => text.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Text frames until one satisfies `pred` (returned); the others are skipped.
    pub(crate) async fn text_until(client: &mut Client, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let text = next_text(client).await;
            if pred(&text) {
                return text;
            }
        }
    }

    pub(crate) fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Frames that arrive within [`QUIET`] (pings excluded) and are not snapshots.
    async fn replies_within_quiet(client: &mut Client) -> Vec<String> {
        let deadline = Instant::now() + QUIET;
        let mut out = Vec::new();
        while let Ok(message) = ttime::timeout_at(deadline, client.next()).await {
            match message {
                Some(Ok(Message::Text(text))) if !text.starts_with(r#"{"type": "stock_updates""#) => {
                    out.push(text.to_string())
                }
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
        out
    }

    /// How the stream ended: `Some(code)` for a close frame, `None` for an abrupt end.
    pub(crate) async fn ending(client: &mut Client) -> Option<CloseCode> {
        let deadline = Instant::now() + WAIT;
        loop {
            match ttime::timeout_at(deadline, client.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_)) | None) => return None,
                Err(_) => panic!("the connection did not end"),
            }
        }
    }

    /// Key order of a JSON object as it appears in the text (serde_json's map sorts).
    pub(crate) fn key_order(object_text: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut depth = 0;
        let mut chars = object_text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' | '[' => depth += 1,
                '}' | ']' => depth -= 1,
                '"' => {
                    let end = object_text[i + 1..].find('"').unwrap() + i + 1;
                    if depth == 1 && object_text[end + 1..].starts_with(": ") {
                        keys.push(object_text[i + 1..end].to_string());
                    }
                    while chars.peek().is_some_and(|(j, _)| *j <= end) {
                        chars.next();
                    }
                }
                _ => {}
            }
        }
        keys
    }

    fn capture_payload(label: &str) -> &'static str {
        CAPTURE
            .lines()
            .find_map(|line| line.strip_prefix("<- ")?.strip_prefix(label)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {label} in the capture"))
    }

    /// Replaces every number and string value with a placeholder, keeping keys,
    /// punctuation and spacing: two frames with the same skeleton are byte-compatible.
    pub(crate) fn skeleton(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    let mut s = String::new();
                    for c in chars.by_ref() {
                        if c == '"' {
                            break;
                        }
                        s.push(c);
                    }
                    if chars.peek() == Some(&':') {
                        out.push_str(&format!("\"{s}\""));
                    } else {
                        out.push('S');
                    }
                }
                '-' | '0'..='9' => {
                    while chars.peek().is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '-' | '+')) {
                        chars.next();
                    }
                    out.push('N');
                }
                c => out.push(c),
            }
        }
        out
    }

    #[test]
    fn py_json_matches_python_spacing_and_escapes() {
        #[derive(Serialize)]
        struct Sample<'a> {
            b: f64,
            a: &'a [i32],
            text: &'a str,
            whole: f64,
        }
        let text = py_json(&Sample { b: 92.8, a: &[1, 2, 3], text: "zł \"q\"", whole: 16020.0 });
        assert_eq!(text, r#"{"b": 92.8, "a": [1, 2, 3], "text": "z\u0142 \"q\"", "whole": 16020.0}"#);
    }

    #[test]
    fn isoformat_drops_zero_microseconds_like_python() {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap().and_hms_micro_opt(1, 16, 56, 763_228).unwrap();
        assert_eq!(python_isoformat(t), "2026-11-24T01:16:56.763228");
        let whole = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap().and_hms_opt(1, 16, 56).unwrap();
        assert_eq!(python_isoformat(whole), "2026-11-24T01:16:56");
    }

    #[test]
    fn market_status_follows_the_session() {
        let at = |d, h, m| chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap().and_hms_opt(h, m, 0).unwrap();
        // 24 Nov 2026 is a Tuesday, 28 Nov a Saturday.
        assert_eq!(market_status(at(24, 1, 16)), "closed");
        assert_eq!(market_status(at(24, 8, 30)), "pre_market");
        assert_eq!(market_status(at(24, 12, 0)), "open");
        assert_eq!(market_status(at(24, 17, 10)), "after_hours");
        assert_eq!(market_status(at(28, 12, 0)), "weekend");
    }

    #[tokio::test]
    async fn greets_then_sends_a_snapshot_shaped_like_the_capture() {
        let sim = sim(config()).await;
        let mut client = connect(&sim.url()).await;

        let hello = next_text(&mut client).await;
        assert_eq!(skeleton(&hello), skeleton(capture_payload("connect")));
        assert_eq!(key_order(&hello), key_order(capture_payload("connect")));
        assert!(hello.contains(r#""message": "Connected to real-time stream""#), "{hello}");
        let stamp = json(&hello)["timestamp"].as_str().unwrap().to_string();
        assert!(NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%dT%H:%M:%S%.f").is_ok(), "{stamp}");
        assert!(!stamp.ends_with('Z'), "naive timestamps have no zone: {stamp}");

        let snapshot = next_text(&mut client).await;
        let captured = capture_payload("stock_updates@t+2.1s");
        // Same keys, key order, separators and value kinds as the real server's frame.
        assert_eq!(skeleton(&snapshot), skeleton(captured));
        let value = json(&snapshot);
        assert_eq!(value["count"], 16);
        let symbols: Vec<&str> =
            value["data"].as_array().unwrap().iter().map(|q| q["symbol"].as_str().unwrap()).collect();
        let expected: Vec<&str> = wig80_symbols().into_iter().map(|(s, _)| s).collect();
        assert_eq!(symbols, expected);
        for quote in value["data"].as_array().unwrap() {
            let status = quote["market_status"].as_str().unwrap();
            assert!(["pre_market", "open", "after_hours", "closed", "weekend", "holiday"].contains(&status));
        }
        assert_eq!(value["data"][0]["price"], 74.62);
        assert_eq!(sim.snapshots_sent(), 1);
        assert_eq!(sim.connections(), 1);
    }

    #[tokio::test]
    async fn docs_style_timestamps_end_in_z() {
        let sim = sim(Wig80Config { naive_timestamps: false, ..config() }).await;
        let mut client = connect(&sim.url()).await;
        let hello = json(&next_text(&mut client).await);
        let stamp = hello["timestamp"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok() && stamp.ends_with('Z'), "{stamp}");
    }

    #[tokio::test]
    async fn snapshots_repeat_on_the_timer_to_every_socket() {
        let sim = sim(Wig80Config { snapshot_every: Duration::from_millis(150), ..config() }).await;
        let mut subscribed = connect(&sim.url()).await;
        let mut silent = connect(&sim.url()).await;
        subscribed.send(Message::text(r#"{"type":"subscribe"}"#)).await.unwrap();
        for client in [&mut subscribed, &mut silent] {
            for _ in 0..3 {
                let frame = text_until(client, |t| t.contains("stock_updates")).await;
                assert_eq!(json(&frame)["count"], 16);
            }
        }
        assert!(sim.snapshots_sent() >= 6);
    }

    #[tokio::test]
    async fn answers_subscribe_ping_and_status_and_records_them() {
        let sim = sim(config()).await;
        let mut client = connect(&sim.url()).await;
        next_text(&mut client).await;

        client.send(Message::text(r#"{"type": "subscribe"}"#)).await.unwrap();
        let confirmed = text_until(&mut client, |t| !t.contains("stock_updates")).await;
        assert_eq!(skeleton(&confirmed), skeleton(capture_payload("subscribe")));
        assert_eq!(json(&confirmed)["type"], "subscription_confirmed");

        client.send(Message::text(r#"{"type": "ping"}"#)).await.unwrap();
        let pong = text_until(&mut client, |t| !t.contains("stock_updates")).await;
        assert_eq!(skeleton(&pong), skeleton(capture_payload("ping")));
        assert_eq!(json(&pong)["type"], "pong");

        client.send(Message::text(r#"{"type": "status"}"#)).await.unwrap();
        let status = text_until(&mut client, |t| !t.contains("stock_updates")).await;
        assert_eq!(skeleton(&status), skeleton(capture_payload("status")));
        assert_eq!(json(&status)["subscribers"], 1);

        let sent = [r#"{"type": "subscribe"}"#, r#"{"type": "ping"}"#, r#"{"type": "status"}"#];
        assert!(sim.wait_for_received(|r| r == sent, WAIT).await, "{:?}", sim.received());
    }

    #[tokio::test]
    async fn invalid_json_and_empty_frames_get_the_error_frame() {
        let sim = sim(config()).await;
        let mut client = connect(&sim.url()).await;
        next_text(&mut client).await;
        for bad in ["this is not json{", ""] {
            client.send(Message::text(bad)).await.unwrap();
            let error = text_until(&mut client, |t| !t.contains("stock_updates")).await;
            assert_eq!(error, r#"{"type": "error", "message": "Invalid JSON message"}"#);
            assert_eq!(error, capture_payload("invalid-json"));
        }
    }

    #[tokio::test]
    async fn unknown_types_untyped_objects_and_arrays_get_no_reply() {
        let sim = sim(config()).await;
        let mut client = connect(&sim.url()).await;
        next_text(&mut client).await;
        for quiet in [r#"{"type": "hello"}"#, r#"{"action": "ping", "data": {}}"#, "[1,2,3]", "42"] {
            client.send(Message::text(quiet)).await.unwrap();
            assert!(sim.wait_for_received(|r| r.last().is_some_and(|l| l == quiet), WAIT).await);
            let replies = replies_within_quiet(&mut client).await;
            assert!(replies.is_empty(), "{quiet} got {replies:?}");
        }
        // The connection still works afterwards.
        client.send(Message::text(r#"{"type": "ping"}"#)).await.unwrap();
        assert!(text_until(&mut client, |t| !t.contains("stock_updates")).await.contains("pong"));
    }

    #[tokio::test]
    async fn sends_protocol_pings_and_answers_the_clients() {
        let sim = sim(Wig80Config { protocol_ping_every: Some(Duration::from_millis(50)), ..config() }).await;
        let mut client = connect(&sim.url()).await;
        client.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
        let (mut pinged, mut ponged) = (false, false);
        let deadline = Instant::now() + WAIT;
        while !(pinged && ponged) {
            match ttime::timeout_at(deadline, client.next()).await {
                Ok(Some(Ok(Message::Ping(payload)))) => pinged |= payload.len() == 4,
                Ok(Some(Ok(Message::Pong(payload)))) => ponged |= payload.as_ref() == b"hi",
                Ok(Some(Ok(_))) => {}
                other => panic!("pinged {pinged}, ponged {ponged}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn close_after_sends_the_close_code() {
        let sim = sim(config()).await;
        sim.push_plan(WsPlan::CloseAfter { frames: 1, code: 1011 });
        let mut client = connect(&sim.url()).await;
        assert!(next_text(&mut client).await.contains(r#""type": "connection""#));
        assert_eq!(ending(&mut client).await, Some(CloseCode::from(1011)));
        // The plan was for one connection only.
        let mut next = connect(&sim.url()).await;
        next_text(&mut next).await;
        assert!(next_text(&mut next).await.contains("stock_updates"));
        assert_eq!(sim.connections(), 2);
    }

    #[tokio::test]
    async fn drop_ends_without_a_close_frame() {
        let sim = sim(config()).await;
        sim.push_plan(WsPlan::Drop { after_frames: 2 });
        let mut client = connect(&sim.url()).await;
        next_text(&mut client).await;
        assert!(next_text(&mut client).await.contains("stock_updates"));
        assert_eq!(ending(&mut client).await, None);
    }

    #[tokio::test]
    async fn drop_all_cuts_every_open_socket() {
        let sim = sim(config()).await;
        let mut a = connect(&sim.url()).await;
        let mut b = connect(&sim.url()).await;
        next_text(&mut a).await;
        next_text(&mut b).await;
        sim.drop_all();
        assert_eq!(ending(&mut a).await, None);
        assert_eq!(ending(&mut b).await, None);
    }

    #[tokio::test]
    async fn stall_sends_nothing_and_ignores_pings() {
        let sim = sim(Wig80Config { protocol_ping_every: Some(Duration::from_millis(20)), ..config() }).await;
        sim.push_plan(WsPlan::Stall);
        let mut client = connect(&sim.url()).await;
        client.send(Message::Ping(b"x".to_vec().into())).await.unwrap();
        client.send(Message::text(r#"{"type": "ping"}"#)).await.unwrap();
        let got = ttime::timeout(QUIET, client.next()).await;
        assert!(got.is_err(), "a stalled socket sent {got:?}");
        assert!(sim.received().is_empty());
    }

    #[tokio::test]
    async fn no_upgrade_never_answers_the_handshake() {
        let sim = sim(config()).await;
        sim.push_plan(WsPlan::NoUpgrade);
        let attempt = ttime::timeout(QUIET, connect_async(sim.url())).await;
        assert!(attempt.is_err(), "the upgrade was answered: {:?}", attempt.map(|r| r.map(|(_, resp)| resp.status())));
        assert_eq!(sim.connections(), 1);
    }

    #[tokio::test]
    async fn huge_sends_one_big_frame_then_drops() {
        let sim = sim(config()).await;
        sim.push_plan(WsPlan::Huge { bytes: 1024 * 1024 });
        let mut client = connect(&sim.url()).await;
        let big = next_text(&mut client).await;
        assert_eq!(big.len(), 1024 * 1024);
        let value: serde_json::Value = serde_json::from_str(&big).unwrap();
        assert_eq!(value["type"], "stock_updates");
        assert_eq!(ending(&mut client).await, None, "no close frame");
    }

    #[tokio::test]
    async fn a_default_plan_lasts_until_cleared() {
        let sim = sim(config()).await;
        sim.set_default_plan(Some(WsPlan::CloseAfter { frames: 1, code: 1013 }));
        for _ in 0..2 {
            let mut client = connect(&sim.url()).await;
            next_text(&mut client).await;
            assert_eq!(ending(&mut client).await, Some(CloseCode::from(1013)));
        }
        sim.set_default_plan(None);
        let mut client = connect(&sim.url()).await;
        next_text(&mut client).await;
        assert!(next_text(&mut client).await.contains("stock_updates"));
    }

    #[tokio::test]
    async fn garbage_comes_first_then_normal_service() {
        let sim = sim(config()).await;
        sim.push_plan(WsPlan::Garbage);
        let mut client = connect(&sim.url()).await;
        assert!(matches!(next_frame(&mut client).await, Message::Binary(_)));
        let junk = next_text(&mut client).await;
        assert_eq!(junk.len(), 2 * 1024 * 1024);
        assert!(serde_json::from_str::<serde_json::Value>(&junk).is_err());
        let truncated = next_text(&mut client).await;
        assert!(serde_json::from_str::<serde_json::Value>(&truncated).is_err(), "{truncated}");
        assert!(next_text(&mut client).await.contains(r#""type": "connection""#));
        assert!(next_text(&mut client).await.contains("stock_updates"));
    }
}
