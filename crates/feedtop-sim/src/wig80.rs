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

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Datelike, Local, NaiveDateTime, Timelike, Utc, Weekday};
use futures_util::SinkExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{self as ttime, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use super::prices::{wig80_symbols, PriceWalk, Quote};
use crate::py::{py_json, python_isoformat};
use crate::ws::{open, Incoming, WsPlan, WsScript, WsShared};
use crate::{lock, stopped, tick};

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

pub fn connection_frame(timestamp: &str) -> String {
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
pub fn stock_updates_frame(quotes: &[Quote], stamp: impl Fn() -> String) -> String {
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

impl WsScript for Wig80Sim {
    fn script(&self) -> &WsShared {
        &self.shared.ws
    }
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

    const CAPTURE: &str = include_str!("../../../tests/fixtures/captured-wig80.jsonl");
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
