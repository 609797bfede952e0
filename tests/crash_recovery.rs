//! Nothing lost, nothing doubled across `kill -9`: the real binary, headless,
//! against in-test simulators serving a large Companies House backlog (with
//! cuts, 5xx and 429s on the way) and a documented-shape SSE quote stream. The
//! process is killed twice mid-stream and restarted on the same database; the
//! last run finishes and is stopped with SIGTERM. Then the database is read
//! back and compared with what the simulators served.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use feedtop::feeds::companies_house::parse_event;
use feedtop::feeds::decode::carbon;
use feedtop::feeds::Decoded;
use feedtop::model::StrikeOffTracker;
use feedtop::sim::companies_house::{ChSim, ChSimConfig, ConnPlan};
use feedtop::sim::sse::{ServedEvent, SseConfig, SsePlan, SseShape, SseSim};
use feedtop::store::writer::quote_time_text;
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

/// Events in the Companies House backlog.
const TOTAL: usize = 5_000;
/// Generous bound for each phase of the test (only reached when failing).
const PHASE: Duration = Duration::from_secs(90);
const SSE_TOKEN: &str = "crash-token-7";
const SSE_TOKEN_ENV: &str = "FEEDTOP_CRASH_TEST_SSE_TOKEN";

fn html(code: u16) -> ConnPlan {
    ConnPlan::Status {
        code,
        retry_after: None,
        body: format!("<html><body><h1>{code}</h1></body></html>"),
        content_type: "text/html".into(),
    }
}

fn rate_limited() -> ConnPlan {
    ConnPlan::Status {
        code: 429,
        retry_after: Some("1".into()),
        body: r#"{"error":"rate limit"}"#.into(),
        content_type: "application/json".into(),
    }
}

/// One run of the binary, its JSON lines arriving on a channel as printed.
struct Run {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
}

impl Run {
    fn start(config: &Path, db: &Path, stderr: &Path) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_feedtop"))
            .args(["--headless", "--interval", "100ms", "--backoff-cap", "1s"])
            .arg("--db")
            .arg(db)
            .arg("--config")
            .arg(config)
            .env_remove("CH_STREAMING_API_KEY")
            .env_remove("FEEDTOP_DB")
            .env_remove("FEEDTOP_CONFIG")
            .env_remove("FEEDTOP_CH_URL")
            .env(SSE_TOKEN_ENV, SSE_TOKEN)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(stderr).unwrap())
            .spawn()
            .expect("feedtop starts");
        let lines = json_lines(child.stdout.take().unwrap(), 1024);
        Run { child, lines }
    }

    /// Reads report lines until one satisfies `done`; returns it.
    async fn until(
        &mut self,
        what: &str,
        stderr: &Path,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + PHASE;
        loop {
            match timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if done(&line) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!("{what}: feedtop exited; stderr: {}", read(stderr)),
                Err(_) => panic!("{what}: not within {PHASE:?}; stderr: {}", read(stderr)),
            }
        }
    }

    /// `kill -9`, then reap the process.
    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the lines up to the final one and a clean exit.
    async fn terminate(mut self, stderr: &Path) -> serde_json::Value {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let last = self.until("final line", stderr, |l| l["final"] == true).await;
        let status = tokio::task::spawn_blocking(move || self.child.wait().unwrap()).await.unwrap();
        assert!(status.success(), "{status:?}; stderr: {}", read(stderr));
        last
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn tp(line: &serde_json::Value) -> i64 {
    line["feeds"][0]["last_timepoint"].as_i64().unwrap_or(i64::MIN)
}

/// The strike-off changes a clean single run over `lines` records.
fn expected_changes(lines: &[String]) -> Vec<(String, i64, String)> {
    let mut tracker = StrikeOffTracker::default();
    let mut changes: Vec<_> = lines
        .iter()
        .filter_map(|l| parse_event(l.as_bytes().to_vec()).ok())
        .filter_map(|ev| tracker.observe(&ev, chrono::Utc::now()))
        .map(|c| (c.company_number, c.timepoint, c.kind.as_str().to_string()))
        .collect();
    changes.sort();
    changes
}

fn stored_changes(db: &Path) -> Vec<(String, i64, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT company_number, timepoint, change FROM strike_offs").unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
    let mut changes: Vec<_> = rows.collect::<rusqlite::Result<_>>().unwrap();
    changes.sort();
    changes
}

/// What ties a stored quote to the SSE event it came from.
type QuoteKey = (String, u64, Option<String>);

/// The key of the quote in a served SSE payload, decoded by feedtop's own decoder.
fn served_key(event: &ServedEvent) -> QuoteKey {
    let Ok(Decoded::Quotes(quotes)) = carbon::decode(&event.payload) else { panic!("not a quote: {}", event.payload) };
    assert_eq!(quotes.len(), 1);
    let q = &quotes[0];
    (q.symbol.clone(), q.price.to_bits(), quote_time_text(q.time).0)
}

fn stored_quote_keys(db: &Path, feed: &str) -> Vec<QuoteKey> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT symbol, price, quote_time FROM quote_history WHERE feed = ?1").unwrap();
    let rows =
        stmt.query_map([feed], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?.to_bits(), r.get(2)?))).unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

/// The Companies House simulator's stream first (feeds[0] in the lines), then the SSE one.
fn config_file(dir: &Path, ch_url: &str, sse_url: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[[feeds]]\nname = \"ch/companies\"\nkind = \"companies-house\"\nurl = \"{ch_url}\"\n\n[[feeds]]\nname = \"sse\"\nkind = \"sse\"\nurl = \"{sse_url}\"\ntoken_env = \"{SSE_TOKEN_ENV}\"\nread_timeout = \"10s\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_twice_loses_and_doubles_nothing() {
    let lines = generated_lines(TOTAL, 2024);
    let keys = event_keys(&lines);
    assert_eq!(keys.len(), TOTAL);
    let tps: Vec<i64> = keys.iter().map(|k| k.1).collect();
    let last = *tps.last().unwrap();

    let ch = ChSim::start(ChSimConfig {
        backlog: lines.clone(),
        live_from_start: true,
        heartbeat: Duration::from_secs(1),
        ..ChSimConfig::default()
    })
    .await
    .unwrap();
    // A slow producer: the backlog takes seconds, so a kill lands mid-stream.
    ch.set_default_plan(Some(ConnPlan::Paced { every: Duration::from_millis(1) }));
    // Each run: a burst cut mid-line, server errors and a rate limit, then
    // the paced stream the kill interrupts. The last run finishes.
    for plan in [
        ConnPlan::CutAfter { events: 700, mid_line: true },
        html(503),
        rate_limited(),
        ConnPlan::Paced { every: Duration::from_millis(1) },
        ConnPlan::CutAfter { events: 400, mid_line: false },
        html(502),
        rate_limited(),
        ConnPlan::Paced { every: Duration::from_millis(1) },
        ConnPlan::CutAfter { events: 300, mid_line: true },
        html(500),
    ] {
        ch.push_plan(plan);
    }

    let sse = SseSim::start(SseConfig {
        token: SSE_TOKEN.into(),
        shape: SseShape::Documented,
        publish_every: Duration::from_millis(50),
        heartbeat_after: Duration::from_secs(1),
        retry: None,
        seed: Some(7),
    })
    .await
    .unwrap();
    // A cut in each run: within a run, Last-Event-ID resumes it.
    for plan in [SsePlan::CutAfter { events: 60 }, SsePlan::Serve, SsePlan::CutAfter { events: 60 }, SsePlan::Serve] {
        sse.push_plan(plan);
    }

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feedtop.db");
    let stderr = dir.path().join("stderr.log");
    let config = config_file(dir.path(), &ch.base_url(), &sse.url());

    // Run 1: killed once it is streaming the paced backlog.
    let mut run = Run::start(&config, &db, &stderr);
    let seen = run
        .until("run 1 mid-stream", &stderr, |l| l["feeds"][0]["state"] == "live" && tp(l) >= tps[1_500] && tp(l) < last)
        .await;
    assert!(seen["feeds"][1]["events"].as_u64().unwrap() > 0, "the SSE feed is flowing too: {seen}");
    run.kill9();
    eprintln!("kill -9 #1 at timepoint {} (event {} of {TOTAL})", tp(&seen), tps.partition_point(|t| *t <= tp(&seen)));

    // Run 2: the same database; killed again further on.
    let mut run = Run::start(&config, &db, &stderr);
    let seen = run
        .until("run 2 mid-stream", &stderr, |l| l["feeds"][0]["state"] == "live" && tp(l) >= tps[3_200] && tp(l) < last)
        .await;
    run.kill9();
    eprintln!("kill -9 #2 at timepoint {} (event {} of {TOTAL})", tp(&seen), tps.partition_point(|t| *t <= tp(&seen)));

    // Run 3: to the end, then SIGTERM.
    let mut run = Run::start(&config, &db, &stderr);
    run.until("run 3 caught up", &stderr, |l| tp(l) == last && l["feeds"][1]["events"].as_u64().unwrap_or(0) >= 100)
        .await;
    let final_line = run.terminate(&stderr).await;
    assert_eq!(final_line["store"]["error"], serde_json::Value::Null);

    // --- Companies House: every served event stored exactly once.
    let mut expected = keys.clone();
    expected.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let stored = stored_event_keys(&db);
    assert_eq!(stored.len(), TOTAL, "events stored");
    assert_eq!(stored, expected, "every event exactly once");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let cursor: i64 =
        conn.query_row("SELECT timepoint FROM cursors WHERE feed = 'ch/companies'", [], |r| r.get(0)).unwrap();
    // The newest event is confirmed as a resume point only by a later one
    // (feeds::resume_mark), so the cursor is the one before it.
    assert_eq!(cursor, tps[tps.len() - 2]);
    // Strike-off changes: the same as a clean single run over the same lines.
    let changes = expected_changes(&lines);
    assert!(changes.len() > 100, "the backlog has strike-off storylines: {}", changes.len());
    eprintln!("CH: {} events and {} strike-off changes, each stored once", stored.len(), changes.len());
    assert_eq!(stored_changes(&db), changes, "strike-off changes across two crashes");
    let requests = ch.requests();
    assert!(requests.iter().skip(1).all(|r| r.timepoint.is_some()), "every connection after the first resumed");

    // --- SSE: tie each stored quote to the event id it came from.
    // An event may be written twice: into a connection that died with a
    // killed process, then again when the next process resumes after the
    // stored id. Distinct ids are what the server published to us.
    let served = sse.served();
    let mut by_key: HashMap<QuoteKey, u64> = HashMap::new();
    for event in &served {
        let previous = by_key.insert(served_key(event), event.id);
        assert!(previous.is_none_or(|id| id == event.id), "two events share (symbol, price, time)");
    }
    let served_ids: HashSet<u64> = served.iter().map(|e| e.id).collect();
    let stored_quotes = stored_quote_keys(&db, "sse");
    let mut stored_ids = HashSet::new();
    for key in &stored_quotes {
        let id = by_key.get(key).unwrap_or_else(|| panic!("a stored quote no event carried: {key:?}"));
        assert!(stored_ids.insert(*id), "event {id} stored twice");
    }
    // The resume id is stored in the same transaction as the quotes it
    // covers and sent as Last-Event-ID by the next process, so a kill loses
    // nothing: what was received but not committed is served again.
    // Events the server wrote in the moment the last process was stopping
    // were never read; they come after the stored resume id, so a next run
    // would fetch them. Nothing before it may be missing.
    let newest_stored = stored_ids.iter().max().copied().unwrap_or(0);
    let missing: Vec<u64> =
        served_ids.iter().filter(|id| **id < newest_stored && !stored_ids.contains(id)).copied().collect();
    assert!(missing.is_empty(), "served but never stored: {missing:?}");
    let resume_id = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT event_id FROM resume_ids WHERE feed = 'sse'", [], |r| r.get::<_, String>(0))
        .unwrap();
    assert_eq!(resume_id, newest_stored.to_string(), "the next run resumes after the newest stored event");
    let (first, last_id) = (*served_ids.iter().min().unwrap(), *served_ids.iter().max().unwrap());
    assert_eq!(
        (last_id - first + 1) as usize,
        served_ids.len(),
        "no event published while feedtop was down was skipped"
    );
    let resumed = sse.requests().iter().filter(|r| r.last_event_id.is_some()).count();
    assert_eq!(resumed, sse.requests().len() - 1, "every request after the very first resumed with Last-Event-ID");
    eprintln!("SSE: {} distinct events served, each stored exactly once, none lost across two kills", served_ids.len());
}
