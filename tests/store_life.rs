//! The database over feedtop's whole run, with the real binary: what start
//! refuses (a read-only file, another program's database, a database another
//! feedtop is using), a database deleted or moved while feedtop writes it,
//! and a shutdown that neither hangs on a dead store nor dies on SIGHUP.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;
use feedtop::sim::companies_house::{ChSim, ChSimConfig, ConnPlan};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};

/// Generous bound for each phase (only reached when failing).
const PHASE: Duration = Duration::from_secs(60);

fn feedtop() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedtop"));
    // Never let the developer's own settings or key leak into a test.
    cmd.env_remove("CH_STREAMING_API_KEY").env_remove("FEEDTOP_DB").env_remove("FEEDTOP_CONFIG");
    cmd.env_remove("FEEDTOP_CH_URL").env("NO_COLOR", "1");
    cmd
}

/// One headless run, its JSON lines arriving on a channel as printed and its
/// stderr collected in a file.
struct Run {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
    stderr: PathBuf,
}

impl Run {
    fn start(ch_url: &str, db: &Path, extra: &[&str]) -> Run {
        let stderr = db.with_extension(format!("stderr-{}.log", rand_suffix()));
        let mut child = feedtop()
            .args(["--headless", "--interval", "100ms", "--backoff-cap", "1s", "--ch-url", ch_url])
            .args(extra)
            .arg("--db")
            .arg(db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("feedtop starts");
        let lines = json_lines(child.stdout.take().unwrap(), 4096);
        Run { child, lines, stderr }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Reads report lines until one satisfies `done`; returns it.
    async fn until(&mut self, what: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + PHASE;
        loop {
            match timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if done(&line) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!("{what}: feedtop exited; stderr: {}", self.stderr()),
                Err(_) => panic!("{what}: not within {PHASE:?}; stderr: {}", self.stderr()),
            }
        }
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args([name, &pid]).status().unwrap().success());
    }

    /// The final line and a successful exit.
    async fn finish(mut self) -> serde_json::Value {
        let last = self.until("final line", |l| l["final"] == true).await;
        let stderr = self.stderr();
        let status = tokio::task::spawn_blocking(move || self.child.wait().unwrap()).await.unwrap();
        assert!(status.success(), "{status:?}; stderr: {stderr}");
        last
    }
}

/// Distinct names for the stderr files of several runs on one database.
fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

fn written(line: &serde_json::Value) -> u64 {
    line["store"]["events_written"].as_u64().unwrap_or(0)
}

fn tp(line: &serde_json::Value) -> i64 {
    line["feeds"][0]["last_timepoint"].as_i64().unwrap_or(i64::MIN)
}

/// A Companies House sim pacing `lines` out one a millisecond: seconds of
/// streaming, so that something can happen mid-stream.
async fn paced_sim(lines: Vec<String>) -> ChSim {
    let sim = ChSim::start(ChSimConfig {
        backlog: lines,
        live_from_start: true,
        heartbeat: Duration::from_secs(1),
        ..ChSimConfig::default()
    })
    .await
    .unwrap();
    sim.set_default_plan(Some(ConnPlan::Paced { every: Duration::from_millis(1) }));
    sim
}

/// Runs to completion and expects a start-up refusal: exit 1, one line.
fn refused(db: &Path) -> String {
    let out: Output = feedtop()
        .args(["--headless", "--duration", "2s", "--ch-url", "http://127.0.0.1:9", "--db"])
        .arg(db)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "stdout: {}; stderr: {stderr}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
    stderr
}

#[test]
fn a_read_only_database_is_refused_at_start_with_one_line() {
    let (_dir, db) = temp_db();
    drop(feedtop::store::open(&db).unwrap());
    // Read-only for anyone: the mode for a user, the immutable flag for root
    // (who writes a 0444 file regardless).
    let mut perms = std::fs::metadata(&db).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&db, perms).unwrap();
    let Some(_frozen) = privileged::Immutable::set(std::slice::from_ref(&db)) else { return };
    let e = refused(&db);
    assert!(e.contains("read-only") && e.contains("--db"), "{e}");
}

#[test]
fn another_programs_sqlite_file_is_refused_and_left_as_it_was() {
    let (_dir, db) = temp_db();
    {
        let other = rusqlite::Connection::open(&db).unwrap();
        other.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me');").unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let e = refused(&db);
    assert!(e.contains("another program's SQLite database") && e.contains("--db"), "{e}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file is byte for byte as it was");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_feedtop_on_the_same_database_is_refused_naming_the_first() {
    let sim = sim_with(fixture_lines(), None).await;
    let (_dir, db) = temp_db();
    let mut first = Run::start(&sim.base_url(), &db, &[]);
    first.until("first running", |l| l["feeds"][0]["events"] == 27).await;

    let second = {
        let (url, db) = (sim.base_url(), db.clone());
        tokio::task::spawn_blocking(move || {
            feedtop().args(["--headless", "--duration", "2s", "--ch-url", &url, "--db"]).arg(&db).output().unwrap()
        })
        .await
        .unwrap()
    };
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "the second one ran: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
    assert!(stderr.contains(&format!("pid {}", first.child.id())), "names the first: {stderr}");
    assert_eq!(sim.requests().len(), 1, "the second never connected upstream");

    // The first goes on as before.
    first.until("first still running", |l| l["feeds"][0]["state"] == "live").await;
    assert!(first.child.try_wait().unwrap().is_none());
    first.signal("-TERM");
    let last = first.finish().await;
    assert_eq!(written(&last), 27);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_stops_cleanly_with_everything_stored() {
    let sim = sim_with(fixture_lines(), None).await;
    let (_dir, db) = temp_db();
    let mut run = Run::start(&sim.base_url(), &db, &[]);
    run.until("all events in", |l| l["feeds"][0]["events"] == 27).await;
    run.signal("-HUP");
    let last = run.finish().await;
    assert_eq!(written(&last), 27);
    assert_eq!(db_counts(&db).events, 27);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_made_read_only_mid_run_does_not_hold_up_the_exit() {
    let sim = paced_sim(generated_lines(10_000, 9)).await;
    let (_dir, db) = temp_db();
    let started = std::time::Instant::now();
    let mut run = Run::start(&sim.base_url(), &db, &["--duration", "3s"]);
    run.until("first events stored", |l| written(l) > 0).await;
    let Some(_frozen) = privileged::Immutable::set(&[db.clone(), db.with_extension("db-wal")]) else { return };
    run.until("the fault shown", |l| l["store"]["error"].as_str().is_some_and(|e| e.contains("read-only"))).await;

    let last = run.until("final line", |l| l["final"] == true).await;
    let mut child = run.child;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    let elapsed = started.elapsed();
    let stderr = std::fs::read_to_string(&run.stderr).unwrap_or_default();
    // Before: the store's shutdown retries took 18 s on top of the 3 s run.
    assert!(elapsed < Duration::from_secs(8), "ended after {elapsed:?}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(last["store"]["error"].as_str().is_some_and(|e| e.contains("read-only")), "{last}");
    let line = stderr.lines().last().unwrap_or_default();
    let unwritten: u64 = line
        .strip_prefix("feedtop: ")
        .and_then(|l| l.split(" facts were not written").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("names the unwritten facts: {stderr}"));
    assert!(unwritten > 0 && line.contains("resume point"), "{line}");
    eprintln!("read-only mid-run: ended after {} ms; {unwritten} facts not written", elapsed.as_millis());
}

/// How a test takes the database away from under feedtop.
enum TakeAway {
    Delete,
    /// Renamed, with its -wal and -shm, to another name in the same directory.
    Move,
}

/// Streams 3,000 events; part way the database (with its -wal and -shm) is
/// taken away. The loss must be shown within seconds, the database must be
/// back at the path, and at the end every event the final line claims is in
/// the file at the path; a restart then resumes with nothing lost or doubled.
async fn database_taken_away(how: TakeAway) {
    const TOTAL: usize = 3_000;
    let lines = generated_lines(TOTAL, 31);
    let mut expected = event_keys(&lines);
    expected.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let last_tp = expected.iter().map(|k| k.1).max().unwrap();
    let sim = paced_sim(lines).await;
    let (dir, db) = temp_db();
    let files = |base: &Path| ["", "-wal", "-shm"].map(|s| PathBuf::from(format!("{}{s}", base.display())));

    let mut run = Run::start(&sim.base_url(), &db, &[]);
    run.until("mid-stream", |l| written(l) >= 300 && tp(l) < last_tp).await;
    let moved = dir.path().join("moved.db");
    for (from, to) in files(&db).iter().zip(files(&moved)) {
        match how {
            TakeAway::Delete => std::fs::remove_file(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())),
            TakeAway::Move => std::fs::rename(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display())),
        }
    }
    let shown = run
        .until("the loss shown", |l| {
            l["store"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("deleted or moved") && e.contains(db.to_str().unwrap()))
        })
        .await;
    eprintln!("shown: {}", shown["store"]["error"]);
    let caught_up = run.until("caught up", |l| tp(l) == last_tp && written(l) == TOTAL as u64).await;
    assert!(db.exists(), "the database is back at its path: {caught_up}");
    assert!(run.stderr().contains("recreated it there"), "the log says what was done: {}", run.stderr());
    run.signal("-TERM");
    let last = run.finish().await;
    assert_eq!(last["store"]["error"].as_str().map(|e| e.contains("recreated")), Some(true), "{last}");

    // Every event the final line claims is in the file at the path.
    let claimed = written(&last);
    assert_eq!(db_counts(&db).events, claimed, "claimed {claimed}");
    assert_eq!(stored_event_keys(&db), expected, "each event exactly once");

    // A restart resumes from the stored cursor: nothing lost, nothing doubled.
    let requests = sim.requests().len();
    let mut again = Run::start(&sim.base_url(), &db, &[]);
    again.until("resumed", |l| l["feeds"][0]["state"] == "live").await;
    assert!(sim.wait_for_requests(requests + 1, PHASE).await);
    // The newest event is confirmed as a resume point only by a later one
    // (feeds::resume_mark): the stored cursor is the one before it.
    let confirmed = expected[expected.len() - 2].1;
    assert_eq!(sim.requests()[requests].timepoint, Some(confirmed), "resumed from the stored cursor");
    again.signal("-TERM");
    let last = again.finish().await;
    assert_eq!(written(&last), 0, "nothing new to store");
    assert_eq!(stored_event_keys(&db), expected, "each event exactly once after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_deleted_while_running_is_recreated_with_everything_stored() {
    database_taken_away(TakeAway::Delete).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_moved_away_while_running_is_recreated_with_everything_stored() {
    database_taken_away(TakeAway::Move).await;
}
