//! The WebSocket plumbing both WebSocket simulators (wig80, carbon) and the
//! quote benchmark share: accepting an upgrade under a per-connection
//! [`WsPlan`], a connection that sends and receives under that plan
//! ([`Conn`]), and the scripting state a test or the demo drives
//! ([`WsShared`], [`WsScript`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{self as ttime};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::header::LOCATION;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::chaos::Chaos;
use super::{Recent, RECENT_KEPT};
use crate::lock;

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

/// How long a connection may take to send its upgrade request.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server-initiated close waits for the client's close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// The `Garbage` plan's junk text frame.
const JUNK_LEN: usize = 2 * 1024 * 1024;

pub type Ws = WebSocketStream<TcpStream>;

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

impl Default for WsShared {
    fn default() -> Self {
        Self::new()
    }
}

impl WsShared {
    pub fn new() -> Self {
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
    pub fn accepted(&self) -> WsPlan {
        self.connections.fetch_add(1, Ordering::SeqCst);
        let queued = lock(&self.plans).pop_front();
        let drawn = || lock(&self.chaos).as_ref().map(Chaos::ws_plan);
        queued.or_else(drawn).or(*lock(&self.default_plan)).unwrap_or(WsPlan::Serve)
    }

    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        *lock(&self.chaos) = chaos;
    }

    pub fn set_default_plan(&self, plan: Option<WsPlan>) {
        *lock(&self.default_plan) = plan;
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn push_plan(&self, plan: WsPlan) {
        lock(&self.plans).push_back(plan);
    }

    pub fn drop_all(&self) {
        self.drops.send_modify(|generation| *generation += 1);
    }

    pub fn record(&self, text: &str) {
        let count = lock(&self.received).push(text.to_string());
        self.received_count.send_replace(count);
    }

    pub fn received(&self) -> Vec<String> {
        lock(&self.received).to_vec()
    }

    pub fn client_closes(&self) -> Vec<Option<u16>> {
        lock(&self.client_closes).clone()
    }

    pub async fn wait_for_received(&self, pred: impl Fn(&[String]) -> bool, within: Duration) -> bool {
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
pub enum Incoming {
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
pub struct Conn {
    pub ws: Ws,
    budget: Budget,
    sent: usize,
    drops: watch::Receiver<u64>,
    client_closes: Arc<Mutex<Vec<Option<u16>>>>,
}

impl Conn {
    /// Sends a text frame. False when the connection is over: the client left,
    /// or the plan's budget ran out (the close or drop has been done).
    pub async fn send_text(&mut self, text: String) -> bool {
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
    pub async fn close(&mut self, code: u16) {
        let frame = CloseFrame { code: CloseCode::from(code), reason: "".into() };
        if self.ws.close(Some(frame)).await.is_err() {
            return;
        }
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        let _ = ttime::timeout(CLOSE_LINGER, drain).await;
    }

    /// The next client frame, or why there is none. Cancel-safe.
    pub async fn next(&mut self) -> Incoming {
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
pub async fn open(
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
