//! A loopback Companies House REST API (docs/protocols.md §6), for the
//! enrichment task's tests and the demo.
//!
//! `GET /company/{number}` answers the company's profile: the latest one the
//! stream simulator published for it when one is attached
//! ([`RestSimConfig::profiles`]), one put with [`RestSim::put_profile`], or an
//! invented active company. `GET /company/{number}/officers` pages invented
//! officers with `items_per_page` / `start_index`. Both are counted against
//! the simulator's own limit, a fixed window of `limit` requests as on the
//! real service, announced in `X-Ratelimit-*` headers; past it, 429 (or the
//! 403 the real API sometimes sends instead). Tests script single answers
//! (a 502, a stall, a redirect) with [`RestSim::push_plan`] and read every
//! request with its time and the `Authorization` header it carried.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time as ttime;

use super::companies_house::basic_auth_matches;
use super::http::{parse_request_line, read_head, respond, wait_for_close, Head, HEAD_TIMEOUT};
use super::{Recent, RECENT_KEPT};
use crate::{lock, stopped};

/// The real API's published limit: 600 requests per 5 minutes per key.
pub const REAL_LIMIT: u32 = 600;
pub const REAL_WINDOW: Duration = Duration::from_secs(300);
/// The real API's page size cap for officers.
const MAX_PAGE: usize = 100;

/// Looks up the profile the stream published last for a company number.
pub type ProfileSource = Arc<dyn Fn(&str) -> Option<Value> + Send + Sync>;

/// Which spelling the remaining-count header uses (both occur, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemainingHeader {
    /// `X-Ratelimit-Remain` (the main API).
    Remain,
    /// `X-Ratelimit-Remaining` (other Companies House APIs).
    Remaining,
}

impl RemainingHeader {
    fn name(self) -> &'static str {
        match self {
            RemainingHeader::Remain => "X-Ratelimit-Remain",
            RemainingHeader::Remaining => "X-Ratelimit-Remaining",
        }
    }
}

#[derive(Clone)]
pub struct RestSimConfig {
    /// When set, requests need HTTP Basic auth `base64("<key>:")`, else 401.
    pub expected_key: Option<String>,
    /// Requests allowed per window.
    pub limit: u32,
    pub window: Duration,
    pub remaining_header: RemainingHeader,
    /// What a request past the limit gets: 429, or 403 as the API at times sends.
    pub over_limit_status: u16,
    /// Profiles as the stream last published them (the demo attaches its
    /// stream simulator here, so the two agree).
    pub profiles: Option<ProfileSource>,
    /// Seeds the invented officers together with the company number.
    pub seed: u64,
}

impl std::fmt::Debug for RestSimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestSimConfig")
            .field("expected_key", &self.expected_key.as_ref().map(|_| "(redacted)"))
            .field("limit", &self.limit)
            .field("window", &self.window)
            .field("remaining_header", &self.remaining_header)
            .field("over_limit_status", &self.over_limit_status)
            .field("profiles", &self.profiles.is_some())
            .field("seed", &self.seed)
            .finish()
    }
}

impl Default for RestSimConfig {
    fn default() -> Self {
        Self {
            expected_key: None,
            limit: REAL_LIMIT,
            window: REAL_WINDOW,
            remaining_header: RemainingHeader::Remain,
            over_limit_status: 429,
            profiles: None,
            seed: 0,
        }
    }
}

/// How the simulator answers one future request (see [`RestSim::push_plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestPlan {
    /// Answer normally (counted against the limit).
    Serve,
    /// Answer this status with a small JSON body, without counting it.
    Status(u16),
    /// Read the request and never answer while the client waits.
    Stall,
    /// `302` to this location.
    Redirect(String),
    /// `200` with these bytes as the body, whatever they are (hostile input:
    /// not JSON, megabytes, invalid UTF-8).
    Body(Vec<u8>),
}

/// One request the simulator read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestRequest {
    /// The path without the query, e.g. `/company/01234567/officers`.
    pub path: String,
    /// The request target as sent.
    pub target: String,
    /// The `Authorization` header as it arrived.
    pub authorization: Option<String>,
    /// The status answered (0 for a stall).
    pub status: u16,
    pub at: Instant,
}

pub struct RestSim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RestSim {
    pub async fn start(config: RestSimConfig) -> io::Result<RestSim> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Binds `addr` (port 0 picks one): a test binds another loopback
    /// address to stand for another host.
    pub async fn start_on(addr: SocketAddr, config: RestSimConfig) -> io::Result<RestSim> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            window: Mutex::new(Window { started: None, used: 0 }),
            plans: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Recent::new(RECENT_KEPT)),
            request_count: watch::Sender::new(0),
            profiles: Mutex::new(HashMap::new()),
            officers: Mutex::new(HashMap::new()),
            config,
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(listener, shared.clone(), stop_rx));
        Ok(RestSim { addr, shared, stop, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues how the next request is answered (FIFO; empty: `Serve`).
    pub fn push_plan(&self, plan: RestPlan) {
        lock(&self.shared.plans).push_back(plan);
    }

    /// Sets a company's profile (`data` of `/company/{number}`); it wins
    /// over the attached stream.
    pub fn put_profile(&self, number: &str, profile: Value) {
        lock(&self.shared.profiles).insert(number.to_string(), profile);
    }

    /// Sets how many officers a company has (otherwise 0–6, from its number).
    pub fn set_officer_count(&self, number: &str, count: usize) {
        lock(&self.shared.officers).insert(number.to_string(), count);
    }

    /// The most recent requests (up to 1,000), oldest first.
    pub fn requests(&self) -> Vec<RestRequest> {
        lock(&self.shared.requests).to_vec()
    }

    /// Waits until `n` requests have been seen; false if the deadline passed first.
    pub async fn wait_for_requests(&self, n: usize, deadline: Duration) -> bool {
        let mut rx = self.shared.request_count.subscribe();
        ttime::timeout(deadline, rx.wait_for(|c| *c >= n)).await.is_ok_and(|r| r.is_ok())
    }

    pub async fn shutdown(self) {
        let RestSim { stop, task, .. } = self;
        stop.send_replace(true);
        let _ = task.await;
    }
}

/// The simulator's fixed rate-limit window.
struct Window {
    started: Option<Instant>,
    used: u32,
}

struct Shared {
    config: RestSimConfig,
    window: Mutex<Window>,
    plans: Mutex<VecDeque<RestPlan>>,
    requests: Mutex<Recent<RestRequest>>,
    request_count: watch::Sender<usize>,
    profiles: Mutex<HashMap<String, Value>>,
    officers: Mutex<HashMap<String, usize>>,
}

/// What the window says about one request.
struct Admission {
    allowed: bool,
    remaining: u32,
    /// When the window ends, in epoch seconds (rounded up).
    reset_epoch: u64,
}

impl Shared {
    fn admit(&self) -> Admission {
        let now = Instant::now();
        let mut w = lock(&self.window);
        let window = self.config.window.max(Duration::from_millis(1));
        let started = match w.started {
            Some(s) if now.duration_since(s) < window => s,
            _ => {
                w.used = 0;
                w.started = Some(now);
                now
            }
        };
        let allowed = w.used < self.config.limit;
        if allowed {
            w.used += 1;
        }
        let left = window.saturating_sub(now.duration_since(started));
        let end = SystemTime::now() + left;
        let secs = end.duration_since(UNIX_EPOCH).unwrap_or_default();
        let reset_epoch = secs.as_secs() + u64::from(secs.subsec_nanos() > 0);
        Admission { allowed, remaining: self.config.limit - w.used, reset_epoch }
    }

    fn record(&self, path: &str, target: &str, authorization: Option<String>, status: u16) {
        let record =
            RestRequest { path: path.into(), target: target.into(), authorization, status, at: Instant::now() };
        let count = lock(&self.requests).push(record);
        self.request_count.send_replace(count);
    }

    fn profile(&self, number: &str) -> Value {
        if let Some(p) = lock(&self.profiles).get(number) {
            return p.clone();
        }
        if let Some(p) = self.config.profiles.as_ref().and_then(|source| source(number)) {
            return p;
        }
        json!({
            "company_number": number,
            "company_name": format!("COMPANY {number} LIMITED"),
            "company_status": "active",
            "type": "ltd",
        })
    }

    fn officer_count(&self, number: &str) -> usize {
        if let Some(n) = lock(&self.officers).get(number) {
            return *n;
        }
        company_rng(self.config.seed, number).random_range(0..=6)
    }
}

async fn run(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    connections.spawn(serve(socket, shared.clone()));
                }
                Err(e) => {
                    tracing::debug!(target: "feedtop::sim", "accept failed: {e}");
                    ttime::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn serve(mut socket: TcpStream, shared: Arc<Shared>) {
    let head = match ttime::timeout(HEAD_TIMEOUT, read_head(&mut socket)).await {
        Ok(Head::Complete(head, _)) => head,
        Ok(Head::Invalid) => return respond(&mut socket, 400, "application/json", "", b"{}").await,
        Ok(Head::Gone) | Err(_) => return,
    };
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines();
    let Some((_, target)) = lines.next().and_then(parse_request_line) else {
        return respond(&mut socket, 400, "application/json", "", b"{}").await;
    };
    let authorization = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim().to_string());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let plan = lock(&shared.plans).pop_front().unwrap_or(RestPlan::Serve);
    let record = |status| shared.record(path, target, authorization.clone(), status);
    match plan {
        RestPlan::Stall => {
            record(0);
            return wait_for_close(&mut socket).await;
        }
        RestPlan::Status(code) => {
            record(code);
            let body = json!({ "error": format!("scripted {code}") }).to_string();
            return respond(&mut socket, code, "application/json", "", body.as_bytes()).await;
        }
        RestPlan::Redirect(location) => {
            record(302);
            return respond(&mut socket, 302, "text/plain", &format!("Location: {location}\r\n"), b"").await;
        }
        RestPlan::Body(bytes) => {
            record(200);
            return respond(&mut socket, 200, "application/json", "", &bytes).await;
        }
        RestPlan::Serve => {}
    }
    if let Some(key) = &shared.config.expected_key {
        if !basic_auth_matches(authorization.as_deref(), key) {
            record(401);
            let body = br#"{"error":"Invalid Authorization","type":"ch:service"}"#;
            return respond(&mut socket, 401, "application/json", "", body).await;
        }
    }
    let admission = shared.admit();
    let headers = format!(
        "X-Ratelimit-Limit: {}\r\n{}: {}\r\nX-Ratelimit-Reset: {}\r\nX-Ratelimit-Window: {}s\r\n",
        shared.config.limit,
        shared.config.remaining_header.name(),
        admission.remaining,
        admission.reset_epoch,
        shared.config.window.as_secs().max(1),
    );
    if !admission.allowed {
        let code = shared.config.over_limit_status;
        record(code);
        return respond(&mut socket, code, "application/json", &headers, br#"{"error":"rate limit exceeded"}"#).await;
    }
    let (code, body) = answer(&shared, path, query);
    record(code);
    respond(&mut socket, code, "application/json", &headers, body.to_string().as_bytes()).await;
}

/// The status and body for a served request.
fn answer(shared: &Shared, path: &str, query: &str) -> (u16, Value) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["company", number] if valid_number(number) => (200, shared.profile(number)),
        ["company", number, "officers"] if valid_number(number) => {
            let param = |name: &str| {
                query.split('&').find_map(|p| p.strip_prefix(name)?.strip_prefix('=')?.parse::<usize>().ok())
            };
            let per_page = param("items_per_page").unwrap_or(35).clamp(1, MAX_PAGE);
            let start = param("start_index").unwrap_or(0);
            (200, officers_page(shared.config.seed, number, shared.officer_count(number), start, per_page))
        }
        _ => (404, json!({ "errors": [{ "error": "company-profile-not-found", "type": "ch:service" }] })),
    }
}

fn valid_number(n: &str) -> bool {
    n.len() == 8 && n.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn company_rng(seed: u64, number: &str) -> StdRng {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    number.hash(&mut h);
    StdRng::seed_from_u64(seed ^ h.finish())
}

const FIRST_NAMES: &[&str] = &[
    "Amelia", "Oliver", "Isla", "George", "Ava", "Harry", "Mia", "Jack", "Grace", "Noah", "Freya", "Arthur", "Ivy",
    "Leo", "Rosie", "Thomas", "Elsie", "Oscar", "Evie", "William",
];
const LAST_NAMES: &[&str] = &[
    "HOLLOWAY",
    "ASHDOWN",
    "PEMBERTON",
    "MARSDEN",
    "CALLOW",
    "FENWICK",
    "GARSIDE",
    "HADLEY",
    "KIRKBY",
    "LOCKWOOD",
    "MERRICK",
    "NORCROSS",
    "OAKLEY",
    "PRESTWICH",
    "RADCLIFFE",
    "SOUTHGATE",
    "TREVELYAN",
    "WHITLOCK",
];
const OCCUPATIONS: &[&str] = &["Director", "Company Director", "Consultant", "Accountant", "Builder", "Retired"];
const NATIONALITIES: &[&str] = &["British", "Irish", "Polish", "Romanian", "Indian", "Italian"];
const TOWNS: &[&str] = &["Leeds", "Bristol", "Glasgow", "Belfast", "Norwich", "Cardiff", "Derby", "York"];

/// A page of the company's invented officers: the same every time for a
/// number and seed, directors first, the last one or two perhaps resigned.
fn officers_page(seed: u64, number: &str, total: usize, start: usize, per_page: usize) -> Value {
    let mut rng = company_rng(seed, number);
    let all: Vec<Value> = (0..total).map(|i| invent_officer(&mut rng, i, total)).collect();
    let items: Vec<Value> = all.iter().skip(start).take(per_page).cloned().collect();
    let resigned = all.iter().filter(|o| o.get("resigned_on").is_some()).count();
    json!({
        "items": items,
        "items_per_page": per_page,
        "start_index": start,
        "total_results": total,
        "active_count": total - resigned,
        "resigned_count": resigned,
        "kind": "officer-list",
    })
}

fn invent_officer(rng: &mut StdRng, index: usize, total: usize) -> Value {
    let pick = |rng: &mut StdRng, list: &[&'static str]| *list.choose(rng).unwrap_or(&"");
    let first = pick(rng, FIRST_NAMES);
    let last = pick(rng, LAST_NAMES);
    let secretary = index == total.saturating_sub(1) && total > 2;
    let appointed_year = rng.random_range(2005..=2024);
    let mut officer = json!({
        "name": format!("{last}, {first}"),
        "officer_role": if secretary { "secretary" } else { "director" },
        "appointed_on": format!("{appointed_year}-{:02}-{:02}", rng.random_range(1..=12), rng.random_range(1..=28)),
        "address": {
            "address_line_1": format!("{} {} Road", rng.random_range(1..=120), pick(rng, LAST_NAMES).to_lowercase()),
            "locality": pick(rng, TOWNS),
            "postal_code": format!("LS{} {}AB", rng.random_range(1..=28), rng.random_range(1..=9)),
            "country": "United Kingdom",
        },
    });
    if !secretary {
        officer["nationality"] = json!(pick(rng, NATIONALITIES));
        officer["occupation"] = json!(pick(rng, OCCUPATIONS));
        officer["country_of_residence"] = json!("England");
        officer["date_of_birth"] = json!({ "month": rng.random_range(1..=12), "year": rng.random_range(1950..=2000) });
    }
    if index > 0 && rng.random_bool(0.2) {
        officer["resigned_on"] = json!(format!("{}-06-30", (appointed_year + 1).min(2025)));
    }
    officer
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(url: &str, key: Option<&str>) -> reqwest::Response {
        let client = reqwest::Client::new();
        let mut req = client.get(url);
        if let Some(key) = key {
            req = req.basic_auth(key, Some(""));
        }
        req.send().await.unwrap()
    }

    #[tokio::test]
    async fn officers_page_until_total_results_and_are_the_same_every_time() {
        let sim = RestSim::start(RestSimConfig::default()).await.unwrap();
        sim.set_officer_count("01234567", 5);
        let url = |start| format!("{}/company/01234567/officers?items_per_page=2&start_index={start}", sim.base_url());
        let mut names = Vec::new();
        for start in [0, 2, 4] {
            let page: Value = serde_json::from_str(&get(&url(start), None).await.text().await.unwrap()).unwrap();
            assert_eq!(page["total_results"], 5);
            names.extend(page["items"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_string()));
        }
        assert_eq!(names.len(), 5);
        let again: Value = serde_json::from_str(&get(&url(0), None).await.text().await.unwrap()).unwrap();
        assert_eq!(again["items"][0]["name"], names[0].as_str());
    }

    #[tokio::test]
    async fn the_window_is_announced_and_enforced_with_either_status_and_spelling() {
        let config = RestSimConfig {
            limit: 2,
            window: Duration::from_secs(60),
            remaining_header: RemainingHeader::Remaining,
            over_limit_status: 403,
            expected_key: Some("k".into()),
            ..RestSimConfig::default()
        };
        let sim = RestSim::start(config).await.unwrap();
        let url = format!("{}/company/SC612947", sim.base_url());
        assert_eq!(get(&url, Some("wrong")).await.status(), 401);
        let first = get(&url, Some("k")).await;
        assert_eq!(first.status(), 200);
        assert_eq!(first.headers()["x-ratelimit-remaining"], "1");
        assert!(first.headers().get("x-ratelimit-reset").is_some());
        assert_eq!(get(&url, Some("k")).await.status(), 200);
        let over = get(&url, Some("k")).await;
        assert_eq!(over.status(), 403);
        assert_eq!(over.headers()["x-ratelimit-remaining"], "0");
        let seen = sim.requests();
        assert_eq!(seen.iter().map(|r| r.status).collect::<Vec<_>>(), [401, 200, 200, 403]);
        assert_eq!(seen[1].authorization.as_deref(), Some("Basic azo="));
    }

    #[tokio::test]
    async fn profiles_come_from_the_stream_source_then_puts_and_scripts_win() {
        let source: ProfileSource =
            Arc::new(|n: &str| Some(json!({ "company_number": n, "company_status": "active" })));
        let sim = RestSim::start(RestSimConfig { profiles: Some(source), ..RestSimConfig::default() }).await.unwrap();
        let url = format!("{}/company/14829301", sim.base_url());
        let p: Value = serde_json::from_str(&get(&url, None).await.text().await.unwrap()).unwrap();
        assert_eq!(p["company_status"], "active");
        sim.put_profile("14829301", json!({ "company_status": "dissolved" }));
        let p: Value = serde_json::from_str(&get(&url, None).await.text().await.unwrap()).unwrap();
        assert_eq!(p["company_status"], "dissolved");
        sim.push_plan(RestPlan::Status(502));
        assert_eq!(get(&url, None).await.status(), 502);
        assert_eq!(get(&format!("{}/company/bad", sim.base_url()), None).await.status(), 404);
    }
}
