//! A loopback stooq light-quote endpoint (docs/protocols.md §5):
//! `GET /q/l/?s=pkn+cdr&f=sd2t2ohlcv&h&e=csv`, answered with a header row
//! and one row per requested symbol: a moving price for the symbols it
//! knows, `N/D` for the others, dated in Warsaw time without a zone as the
//! real one is. With `polish` it answers as stooq.pl does (Polish header,
//! `B/D`).
//!
//! Every request is recorded (so tests can check one request per poll with
//! every symbol in it) and answered by the next scripted [`StooqPlan`]: the
//! faults a public web service shows (429 with `Retry-After`, 500, an HTML
//! page, a slow or silent answer). Each answer closes its connection.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use chrono_tz::Europe::Warsaw;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time as ttime;

use super::http::{parse_request_line, read_head, respond, wait_for_close, Head, HEAD_TIMEOUT};
use super::prices::PriceWalk;
use super::{Recent, RECENT_KEPT};
use crate::lock;

/// The light-quote path.
pub const QUOTE_PATH: &str = "/q/l/";

/// WSE shares as stooq names them (lowercase, no suffix), with plausible PLN prices.
pub fn stooq_symbols() -> Vec<(&'static str, f64)> {
    vec![
        ("pkn", 74.62),
        ("pko", 58.9),
        ("cdr", 201.5),
        ("kgh", 152.4),
        ("pge", 8.95),
        ("pzu", 47.3),
        ("lpp", 16020.0),
        ("peo", 160.2),
        ("dnp", 420.0),
        ("ale", 27.8),
    ]
}

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct StooqConfig {
    /// The symbols with data (lowercase) and their starting prices.
    pub instruments: Vec<(&'static str, f64)>,
    /// Makes prices reproducible.
    pub seed: Option<u64>,
    /// Answer as stooq.pl: `Symbol,Data,Czas,…` and `B/D`.
    pub polish: bool,
}

impl Default for StooqConfig {
    fn default() -> Self {
        Self { instruments: stooq_symbols(), seed: None, polish: false }
    }
}

/// How the server answers one request (see [`StooqSim::push_plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StooqPlan {
    /// The CSV, prices moved one step since the last one served.
    Serve,
    /// `429 Too Many Requests`, with this `Retry-After` value if any.
    RateLimited { retry_after: Option<String> },
    /// This status with a plain-text body.
    Status { code: u16, body: String },
    /// An HTML page with this status (a CDN's challenge or error page).
    Html { code: u16 },
    /// Read the request and never answer (the socket stays open).
    Mute,
    /// Wait this long, then answer by `then`.
    Delayed { delay: Duration, then: Box<StooqPlan> },
}

/// The page [`StooqPlan::Html`] sends.
pub const HTML_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\
                             <body><h1>Please try again later</h1></body></html>\n";

/// One request the server read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StooqRequest {
    /// The path and query as sent.
    pub target: String,
    /// The `s` parameter as sent (before decoding).
    pub raw_symbols: String,
    /// The symbols asked for, decoded (`+`, spaces or commas between them).
    pub symbols: Vec<String>,
    pub at: Instant,
}

struct State {
    walk: PriceWalk,
    plans: VecDeque<StooqPlan>,
    requests: Recent<StooqRequest>,
}

struct Shared {
    state: Mutex<State>,
    polish: bool,
    request_seen: Notify,
}

/// A running simulator on `127.0.0.1`; dropping it stops it and its sockets.
pub struct StooqSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl StooqSim {
    pub async fn start(config: StooqConfig) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                walk: PriceWalk::new(config.instruments, config.seed),
                plans: VecDeque::new(),
                requests: Recent::new(RECENT_KEPT),
            }),
            polish: config.polish,
            request_seen: Notify::new(),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                connections.spawn(serve_connection(socket, accepting.clone()));
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a poll feed is given.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers a future request this way; plans are used in order, one per
    /// request, and [`StooqPlan::Serve`] follows them.
    pub fn push_plan(&self, plan: StooqPlan) {
        lock(&self.shared.state).plans.push_back(plan);
    }

    /// The last requests read (at most `RECENT_KEPT`), oldest first.
    pub fn requests(&self) -> Vec<StooqRequest> {
        lock(&self.shared.state).requests.to_vec()
    }

    /// Requests read so far.
    pub fn request_count(&self) -> usize {
        lock(&self.shared.state).requests.total
    }

    /// Waits until `n` requests have been read, or `within` has passed.
    pub async fn wait_for_requests(&self, n: usize, within: Duration) -> bool {
        let deadline = ttime::Instant::now() + within;
        loop {
            let seen = self.shared.request_seen.notified();
            if self.request_count() >= n {
                return true;
            }
            if ttime::timeout_at(deadline, seen).await.is_err() {
                return self.request_count() >= n;
            }
        }
    }
}

impl Drop for StooqSim {
    fn drop(&mut self) {
        // Aborting the accept loop drops the JoinSet, which aborts every socket.
        self.task.abort();
    }
}

/// `(raw, decoded)` symbols of a `/q/l/` query.
fn symbols_param(query: &str) -> (String, Vec<String>) {
    let raw = query.split('&').find_map(|pair| pair.strip_prefix("s=")).unwrap_or("").to_string();
    let decoded = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "s")
        .map(|(_, v)| {
            v.split(|c: char| c.is_whitespace() || c == ',').filter(|s| !s.is_empty()).map(str::to_string).collect()
        })
        .unwrap_or_default();
    (raw, decoded)
}

async fn serve_connection(mut socket: TcpStream, shared: Arc<Shared>) {
    let head = match ttime::timeout(HEAD_TIMEOUT, read_head(&mut socket)).await {
        Ok(Head::Complete(head, _)) => head,
        Ok(Head::Invalid) => return respond(&mut socket, 400, "text/plain", "", b"bad request\n").await,
        Ok(Head::Gone) | Err(_) => return,
    };
    let request_line = std::str::from_utf8(&head).ok().and_then(|h| h.lines().next()).and_then(parse_request_line);
    let Some((method, target)) = request_line else {
        return respond(&mut socket, 400, "text/plain", "", b"bad request\n").await;
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (raw_symbols, symbols) = symbols_param(query);
    let plan = {
        let mut state = lock(&shared.state);
        let request =
            StooqRequest { target: target.to_string(), raw_symbols, symbols: symbols.clone(), at: Instant::now() };
        state.requests.push(request);
        state.plans.pop_front().unwrap_or(StooqPlan::Serve)
    };
    shared.request_seen.notify_waiters();
    let mut plan = plan;
    while let StooqPlan::Delayed { delay, then } = plan {
        // The client may give up first: then there is nobody to answer.
        if ttime::timeout(delay, wait_for_close(&mut socket)).await.is_ok() {
            return;
        }
        plan = *then;
    }
    match plan {
        StooqPlan::Mute => wait_for_close(&mut socket).await,
        StooqPlan::RateLimited { retry_after } => {
            let header = retry_after.map(|v| format!("Retry-After: {v}\r\n")).unwrap_or_default();
            respond(&mut socket, 429, "text/plain", &header, b"Too Many Requests\n").await
        }
        StooqPlan::Status { code, body } => respond(&mut socket, code, "text/plain", "", body.as_bytes()).await,
        StooqPlan::Html { code } => respond(&mut socket, code, "text/html", "", HTML_PAGE.as_bytes()).await,
        StooqPlan::Delayed { .. } => unreachable!("unwrapped above"),
        StooqPlan::Serve if method != "GET" => respond(&mut socket, 405, "text/plain", "", b"GET only\n").await,
        StooqPlan::Serve if path != QUOTE_PATH => {
            respond(&mut socket, 404, "text/html", "", HTML_PAGE.as_bytes()).await
        }
        StooqPlan::Serve => {
            let csv = {
                let mut state = lock(&shared.state);
                state.walk.step();
                quote_csv(&state.walk, &symbols, shared.polish)
            };
            respond(&mut socket, 200, "text/csv", "", csv.as_bytes()).await
        }
    }
}

/// The CSV for these symbols, stamped now in Warsaw time.
fn quote_csv(walk: &PriceWalk, symbols: &[String], polish: bool) -> String {
    let now = Utc::now().with_timezone(&Warsaw);
    let (date, time) = (now.format("%Y-%m-%d"), now.format("%H:%M:%S"));
    let (header, nd) = if polish {
        ("Symbol,Data,Czas,Otwarcie,Najwyzszy,Najnizszy,Zamkniecie,Wolumen", "B/D")
    } else {
        ("Symbol,Date,Time,Open,High,Low,Close,Volume", "N/D")
    };
    let mut csv = format!("{header}\r\n");
    for symbol in symbols {
        let shown = symbol.to_uppercase();
        match walk.get(&symbol.to_lowercase()) {
            Some(q) => csv.push_str(&format!(
                "{shown},{date},{time},{},{},{},{},{}\r\n",
                q.open, q.high, q.low, q.price, q.volume
            )),
            None => csv.push_str(&format!("{shown},{nd},{nd},{nd},{nd},{nd},{nd},{nd}\r\n")),
        }
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;
    use feedtop_proto::decode::stooq;

    #[test]
    fn symbols_are_read_however_they_are_joined() {
        let (raw, symbols) = symbols_param("s=pkn+cdr+%5Espx&f=sd2t2ohlcv&h&e=csv");
        assert_eq!(raw, "pkn+cdr+%5Espx");
        assert_eq!(symbols, ["pkn", "cdr", "^spx"]);
        assert_eq!(symbols_param("s=a,b%20c").1, ["a", "b", "c"]);
        assert_eq!(symbols_param("f=x").1, Vec::<String>::new());
    }

    #[test]
    fn the_csv_reads_back_with_n_d_for_unknown_symbols_in_both_languages() {
        let walk = PriceWalk::new(stooq_symbols(), Some(1));
        let asked = ["pkn".to_string(), "nope".to_string()];
        for polish in [false, true] {
            let s = stooq::decode(quote_csv(&walk, &asked, polish).as_bytes()).unwrap();
            assert_eq!(s.quotes.len(), 1);
            assert_eq!(s.quotes[0].symbol, "PKN");
            assert_eq!(s.quotes[0].price, walk.get("pkn").unwrap().price);
            let stamped = s.quotes[0].time.and_then(|t| t.as_utc()).unwrap();
            assert!((Utc::now() - stamped).num_seconds().abs() < 60, "Warsaw time read back as now: {stamped}");
            assert_eq!(s.no_data, ["NOPE"]);
        }
    }

    async fn get(sim: &StooqSim, target: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = TcpStream::connect(sim.addr()).await.unwrap();
        socket.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).await.unwrap();
        let code = answer[9..12].parse().unwrap();
        (code, answer.split_once("\r\n\r\n").unwrap().1.to_string())
    }

    #[tokio::test]
    async fn serves_moving_prices_then_the_scripted_faults_and_counts_every_request() {
        let sim = StooqSim::start(StooqConfig { seed: Some(2), ..StooqConfig::default() }).await.unwrap();
        let target = "/q/l/?s=pkn+xyz&f=sd2t2ohlcv&h&e=csv";
        let (code, first) = get(&sim, target).await;
        assert_eq!(code, 200);
        let (_, second) = get(&sim, target).await;
        let a = stooq::decode(first.as_bytes()).unwrap();
        let b = stooq::decode(second.as_bytes()).unwrap();
        assert_ne!(a.quotes[0], b.quotes[0], "prices move between requests");
        assert_eq!(a.no_data, ["XYZ"]);

        sim.push_plan(StooqPlan::RateLimited { retry_after: Some("7".into()) });
        sim.push_plan(StooqPlan::Status { code: 500, body: "oops".into() });
        sim.push_plan(StooqPlan::Html { code: 200 });
        assert_eq!(get(&sim, target).await.0, 429);
        assert_eq!(get(&sim, target).await, (500, "oops".to_string()));
        let (code, page) = get(&sim, target).await;
        assert_eq!(code, 200);
        assert!(matches!(stooq::decode(page.as_bytes()), Err(stooq::StooqError::Html { .. })));
        assert_eq!(get(&sim, "/elsewhere").await.0, 404);
        assert_eq!(sim.request_count(), 6);
        assert!(sim.wait_for_requests(6, Duration::ZERO).await);
        let requests = sim.requests();
        assert_eq!(requests[0].raw_symbols, "pkn+xyz");
        assert_eq!(requests[0].symbols, ["pkn", "xyz"]);
    }

    #[tokio::test]
    async fn a_mute_answer_holds_the_socket_until_the_client_leaves() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let sim = StooqSim::start(StooqConfig::default()).await.unwrap();
        sim.push_plan(StooqPlan::Mute);
        let mut socket = TcpStream::connect(sim.addr()).await.unwrap();
        socket.write_all(b"GET /q/l/?s=pkn HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 16];
        let read = ttime::timeout(Duration::from_millis(300), socket.read(&mut buf)).await;
        assert!(read.is_err(), "nothing is answered");
        assert!(sim.wait_for_requests(1, Duration::from_secs(5)).await, "but the request is counted");
    }
}
