//! A paced quote server for the `quotes` benchmark: `symbols` instruments and
//! `rate` frames per second in all, one quote per frame, in the wig80 dialect
//! (docs/protocols.md §2.2) so that feedtop's real WebSocket feed and decoder read it.
//!
//! Unlike `sim::wig80` it has no snapshot timer, plans or replies. Each
//! connection gets its own stream of `frames` frames on an absolute schedule
//! (frame k is due k / `rate` after the greeting, so a late wake-up sends
//! everything that has come due instead of falling behind for good), the same
//! prices for the same seed on every connection, and then stays open, reading
//! and discarding whatever the client sends. Every item and frame is stamped in
//! UTC with microseconds as it is built, just before it is written, so the
//! receiver can measure latency below a millisecond.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::sim::lock;
use crate::sim::prices::PriceWalk;
use crate::sim::wig80::{connection_frame, stock_updates_frame};
use crate::sim::ws::{open, Conn, Incoming, WsShared};
use crate::sim::WsPlan;

#[derive(Debug, Clone, Copy)]
pub struct QuoteFirehoseConfig {
    /// Instruments, updated in turn (one quote per frame).
    pub symbols: usize,
    /// Frames per second per connection, all symbols together.
    pub rate: f64,
    /// Frames per connection; then the connection stays open and quiet.
    pub frames: u64,
    pub seed: u64,
}

/// How one connection's stream went, measured at the server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendReport {
    /// Quote frames written (fewer than configured if the client left).
    pub frames: u64,
    /// From the first quote frame written to the last.
    pub elapsed: Duration,
    /// The furthest any frame was written behind its due time.
    pub max_lag: Duration,
}

impl SendReport {
    /// Frames per second achieved between the first and the last write.
    pub fn frames_per_s(&self) -> f64 {
        if self.frames < 2 || self.elapsed.is_zero() {
            return f64::NAN;
        }
        (self.frames - 1) as f64 / self.elapsed.as_secs_f64()
    }
}

pub struct QuoteFirehose {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for QuoteFirehose {
    /// Ends the server and, with its `JoinSet`, every connection.
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    ws: WsShared,
    sent: AtomicU64,
    reports: Mutex<Vec<SendReport>>,
    finished: watch::Sender<usize>,
}

impl QuoteFirehose {
    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start(config: QuoteFirehoseConfig) -> std::io::Result<Self> {
        if config.symbols == 0 || !(config.rate.is_finite() && config.rate > 0.0) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "need at least one symbol and a rate"));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            ws: WsShared::new(),
            sent: AtomicU64::new(0),
            reports: Mutex::new(Vec::new()),
            finished: watch::Sender::new(0),
        });
        let server = shared.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => {
                            let plan = server.ws.accepted();
                            connections.spawn(serve(socket, plan, config, server.clone()));
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `ws://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Quote frames written so far, over all connections.
    pub fn frames_sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// The reports of the first `n` connections to finish their stream (or
    /// leave), in the order they finished; fewer if `within` passed first.
    pub async fn wait_reports(&self, n: usize, within: Duration) -> Vec<SendReport> {
        let mut finished = self.shared.finished.subscribe();
        let _ = tokio::time::timeout(within, finished.wait_for(|count| *count >= n)).await;
        lock(&self.shared.reports).iter().take(n).copied().collect()
    }
}

async fn serve(socket: tokio::net::TcpStream, plan: WsPlan, config: QuoteFirehoseConfig, shared: Arc<Shared>) {
    let Some((mut conn, _target)) = open(socket, plan, &shared.ws, None).await else {
        return;
    };
    if !conn.send_text(connection_frame(&stamp())).await {
        return;
    }
    let (report, open) = stream(&mut conn, &config, &shared).await;
    lock(&shared.reports).push(report);
    shared.finished.send_modify(|count| *count += 1);
    if open {
        while !matches!(conn.next().await, Incoming::Gone | Incoming::Dropped) {}
    }
}

/// Writes the connection's frames on schedule; false with the report if the
/// client went away first.
async fn stream(conn: &mut Conn, config: &QuoteFirehoseConfig, shared: &Shared) -> (SendReport, bool) {
    let mut frames = QuoteFrames::new(config.symbols, config.seed);
    let started = Instant::now();
    let due = |k: u64| started + Duration::from_secs_f64(k as f64 / config.rate);
    let mut report = SendReport { frames: 0, elapsed: Duration::ZERO, max_lag: Duration::ZERO };
    let mut first_write = None;
    while report.frames < config.frames {
        tokio::select! {
            _ = tokio::time::sleep_until(due(report.frames)) => {}
            incoming = conn.next() => match incoming {
                Incoming::Gone | Incoming::Dropped => return (report, false),
                _ => continue,
            },
        }
        // Everything that has come due, in one go.
        let now = Instant::now();
        while report.frames < config.frames && due(report.frames) <= now {
            if !conn.send_text(frames.next_frame()).await {
                return (report, false);
            }
            let written = Instant::now();
            report.max_lag = report.max_lag.max(written - due(report.frames));
            report.elapsed = written - *first_write.get_or_insert(written);
            report.frames += 1;
            shared.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
    (report, true)
}

/// The frames a connection sends, in order: one quote each, symbols in turn,
/// every price moved once per round. The same seed gives the same prices.
pub struct QuoteFrames {
    walk: PriceWalk,
    next: usize,
}

impl QuoteFrames {
    pub fn new(symbols: usize, seed: u64) -> Self {
        Self { walk: PriceWalk::new(instruments(symbols), Some(seed)), next: 0 }
    }

    /// The next `stock_updates` frame, stamped now.
    pub fn next_frame(&mut self) -> String {
        let quotes = self.walk.quotes();
        if self.next == quotes.len() {
            self.next = 0;
        }
        if self.next == 0 {
            self.walk.step();
        }
        let i = self.next;
        self.next += 1;
        stock_updates_frame(&self.walk.quotes()[i..=i], stamp)
    }
}

/// Now in UTC with microseconds and `Z`: an absolute time to the decoder.
pub fn stamp() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The send time of a quote frame: its last `"timestamp"` (the one item's,
/// which is also the one feedtop's decoder takes), read without parsing the
/// JSON, as a bare client would.
pub fn sent_at(frame: &str) -> Option<DateTime<Utc>> {
    super::baseline::stamp_after_last(frame.as_bytes(), "\"timestamp\": \"")
}

/// Names handed out so far; each is leaked once and reused, so memory stays
/// bounded by the largest `count` ever asked for.
static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// `count` instruments `Q000`, `Q001`, … with start prices from 5 to 5,000.
pub fn instruments(count: usize) -> Vec<(&'static str, f64)> {
    let mut names = lock(&NAMES);
    while names.len() < count {
        let name = format!("Q{:03}", names.len());
        names.push(Box::leak(name.into_boxed_str()));
    }
    names.iter().take(count).enumerate().map(|(i, name)| (*name, 5.0 * 10f64.powf((i % 7) as f64 / 2.0))).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    use super::*;
    use crate::feeds::decode::wig80;
    use crate::feeds::{Decoded, Quote, QuoteTime};

    /// Reads text frames until `quotes` quote frames have arrived or 20 s
    /// pass; returns the greeting and every quote, decoded by feedtop's decoder.
    async fn read_quotes(url: &str, quotes: usize) -> (Vec<Decoded>, Vec<Quote>) {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("connects");
        let (mut other, mut got) = (Vec::new(), Vec::new());
        let read = async {
            while got.len() < quotes {
                let Some(Ok(Message::Text(text))) = ws.next().await else { break };
                match wig80::decode(text.as_str()).expect("decodes") {
                    Decoded::Quotes(q) => {
                        assert_eq!(q.len(), 1, "one quote a frame: {text}");
                        assert!(sent_at(text.as_str()).is_some(), "{text}");
                        got.extend(q);
                    }
                    d => other.push(d),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(20), read).await;
        (other, got)
    }

    #[tokio::test]
    async fn serves_every_symbol_in_turn_the_configured_number_of_frames() {
        let config = QuoteFirehoseConfig { symbols: 7, rate: 2_000.0, frames: 140, seed: 3 };
        let hose = QuoteFirehose::start(config).await.unwrap();
        let (other, quotes) = read_quotes(&hose.url(), 140).await;
        assert_eq!(other, [Decoded::Connected { detail: "Connected to real-time stream".into() }]);
        assert_eq!(quotes.len(), 140);
        let symbols: Vec<&str> = quotes.iter().take(7).map(|q| q.symbol.as_str()).collect();
        assert_eq!(symbols, ["Q000", "Q001", "Q002", "Q003", "Q004", "Q005", "Q006"]);
        let mut per_symbol = BTreeMap::new();
        for (i, q) in quotes.iter().enumerate() {
            assert_eq!(q.symbol, symbols[i % 7], "in turn");
            assert!(matches!(q.time, Some(QuoteTime::Absolute(_))), "a zoned stamp is a real time: {q:?}");
            assert!(q.price > 0.0 && q.volume.is_some() && q.open.is_some(), "{q:?}");
            *per_symbol.entry(q.symbol.clone()).or_insert(0) += 1;
        }
        assert!(per_symbol.values().all(|n| *n == 20), "{per_symbol:?}");
        let reports = hose.wait_reports(1, Duration::from_secs(20)).await;
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].frames, 140);
        assert_eq!(hose.frames_sent(), 140);
        assert!(reports[0].frames_per_s() > 0.0, "{reports:?}");
    }

    #[tokio::test]
    async fn every_connection_gets_the_same_prices() {
        let config = QuoteFirehoseConfig { symbols: 3, rate: 5_000.0, frames: 60, seed: 9 };
        let hose = QuoteFirehose::start(config).await.unwrap();
        let prices = |quotes: Vec<Quote>| quotes.into_iter().map(|q| (q.symbol, q.price)).collect::<Vec<_>>();
        let first = prices(read_quotes(&hose.url(), 60).await.1);
        let second = prices(read_quotes(&hose.url(), 60).await.1);
        assert_eq!(first.len(), 60);
        assert_eq!(first, second);
        assert_eq!(hose.wait_reports(2, Duration::from_secs(20)).await.len(), 2);
    }

    #[tokio::test]
    async fn a_client_that_leaves_early_gets_a_short_report() {
        let config = QuoteFirehoseConfig { symbols: 2, rate: 1_000.0, frames: 1_000_000, seed: 1 };
        let hose = QuoteFirehose::start(config).await.unwrap();
        let (_, quotes) = read_quotes(&hose.url(), 10).await;
        assert_eq!(quotes.len(), 10);
        // `read_quotes` dropped its socket: the stream ends instead of running on.
        let reports = hose.wait_reports(1, Duration::from_secs(20)).await;
        assert_eq!(reports.len(), 1);
        assert!((10..1_000_000).contains(&reports[0].frames), "{reports:?}");
    }

    #[tokio::test]
    async fn refuses_a_config_that_cannot_pace() {
        for (symbols, rate) in [(0, 10.0), (5, 0.0), (5, f64::NAN)] {
            let config = QuoteFirehoseConfig { symbols, rate, frames: 1, seed: 0 };
            assert!(QuoteFirehose::start(config).await.is_err(), "{symbols} {rate}");
        }
    }

    #[test]
    fn sent_at_is_the_item_stamp_to_the_microsecond() {
        let frame = QuoteFrames::new(1, 0).next_frame();
        let t = sent_at(&frame).unwrap();
        let item = frame.rfind("\"timestamp\": \"").unwrap();
        assert!(frame[..item].contains("\"data\": [{"), "the last stamp is the item's: {frame}");
        let Ok(Decoded::Quotes(q)) = wig80::decode(&frame) else { panic!("{frame}") };
        assert_eq!(q[0].time, Some(QuoteTime::Absolute(t)));
        assert_eq!(
            sent_at(r#"{"timestamp": "2026-01-02T03:04:05.123456Z"}"#).unwrap().timestamp_micros() % 1_000_000,
            123_456
        );
        assert_eq!(sent_at("{}"), None);
        assert_eq!(sent_at(r#"{"timestamp": "soon"}"#), None);
    }

    #[test]
    fn instruments_are_distinct_and_reused() {
        let fifty = instruments(50);
        assert_eq!(fifty.len(), 50);
        let names: std::collections::BTreeSet<_> = fifty.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), 50);
        assert!(fifty.iter().all(|(_, p)| (5.0..=5_000.0).contains(p)));
        // The same names again, not new copies.
        assert!(std::ptr::eq(instruments(3)[2].0, fifty[2].0));
    }
}
