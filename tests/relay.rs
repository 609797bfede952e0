//! The relay over NATS JetStream, end to end, with a real `nats-server`
//! (started on free loopback ports, JetStream in a temp directory; `.ci/run`
//! installs it, and without it these tests fail, naming the package) and
//! the real binary: `feedtop relay` ingests a Companies House simulator and
//! publishes; `feedtop --source nats://…` viewers show what it published.
//!
//! Every test compares counts a viewer shows with what the simulator sent:
//! a message lost makes a count short, one doubled makes it long.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use feedtop::app::ViewerStore;
use feedtop::sim::nats::{NatsCluster, NatsServer};
use serde_json::Value;

/// The longest any one step may take before the test fails, saying which.
const STEP: Duration = Duration::from_secs(45);

fn feedtop() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedtop"));
    // Never let the developer's own settings, keys or NATS leak into a test.
    for name in [
        "CH_STREAMING_API_KEY",
        "FEEDTOP_DB",
        "FEEDTOP_CONFIG",
        "FEEDTOP_CH_URL",
        "NATS_URL",
        "NATS_USER",
        "NATS_PASSWORD",
        "NATS_TOKEN",
        "NATS_CREDS",
        "FEEDTOP_NATS_STREAM",
    ] {
        cmd.env_remove(name);
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// A running feedtop: its JSON lines as they come, its stderr in a file.
struct Run {
    name: &'static str,
    child: Child,
    lines: tokio::sync::mpsc::Receiver<Value>,
    last: Option<Value>,
    stderr: PathBuf,
}

impl Run {
    fn spawn(name: &'static str, dir: &Path, mut cmd: Command) -> Self {
        let stderr = dir.join(format!("{name}.stderr"));
        let mut child = cmd
            .args(["--headless", "--interval", "100ms"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let lines = json_lines(child.stdout.take().unwrap(), 4096);
        Self { name, child, lines, last: None, stderr }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Reads lines until one satisfies `done`; fails the test after [`STEP`].
    async fn wait_for(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    let ok = done(&line);
                    self.last = Some(line.clone());
                    if ok {
                        return line;
                    }
                }
                Ok(None) => panic!("{}: ended before {what}; last line {:?}\n{}", self.name, self.last, self.stderr()),
                Err(_) => {
                    panic!("{}: no {what} within {STEP:?}; last line {:?}\n{}", self.name, self.last, self.stderr())
                }
            }
        }
    }

    /// SIGTERM, then the final line.
    async fn stop(mut self) -> Value {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let last = loop {
            match tokio::time::timeout(STEP, self.lines.recv()).await {
                Ok(Some(line)) => self.last = Some(line),
                Ok(None) => break self.last.take(),
                Err(_) => panic!("{}: did not stop within {STEP:?}\n{}", self.name, self.stderr()),
            }
        };
        let status = self.child.wait().unwrap();
        let stderr = self.stderr();
        assert!(status.success(), "{}: {status:?}\n{stderr}", self.name);
        let last = last.unwrap_or_else(|| panic!("{}: no line at all\n{stderr}", self.name));
        assert_eq!(last["final"], true, "{}: {last}", self.name);
        last
    }

    /// kill -9: no chance to finish anything.
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Events and strike-off changes of the Companies House feed on a line
/// (not `in_proposal`, which a viewer cannot know and shows as null).
fn tally(line: &Value) -> (u64, Value) {
    let feed = line["feeds"].as_array().unwrap().iter().find(|f| f["id"] == FEED).expect("the ch/companies feed");
    let s = &line["strike_off"];
    (feed["events"].as_u64().unwrap(), serde_json::json!([s["entered"], s["withdrawn"], s["struck_off"]]))
}

fn events(line: &Value) -> u64 {
    tally(line).0
}

fn relay(dir: &Path, sim: &feedtop::sim::companies_house::ChSim, nats: &str, db: &Path) -> Run {
    let mut cmd = feedtop();
    cmd.args(["relay", "--nats", nats, "--backoff-cap", "1s", "--ch-url", &sim.base_url(), "--db"]).arg(db);
    Run::spawn("relay", dir, cmd)
}

/// A viewer without `--db`, with a home and a temporary directory of its
/// own ([`viewer_home`]) to show it writes nothing.
fn viewer(name: &'static str, dir: &Path, nats: &str) -> Run {
    let home = viewer_home(dir, name);
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = feedtop();
    cmd.args(["--source", nats]).env("HOME", &home).env("TMPDIR", &home);
    cmd.env("XDG_DATA_HOME", home.join("data")).env("XDG_CONFIG_HOME", home.join("config"));
    Run::spawn(name, dir, cmd)
}

fn viewer_home(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}-home"))
}

/// Every file under `dir`, however deep.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        match entry.file_type().unwrap().is_dir() {
            true => files.extend(files_under(&entry.path())),
            false => files.push(entry.path()),
        }
    }
    files
}

/// A direct run (no relay) over the same events, to its final line.
async fn direct_run(dir: &Path, lines: Vec<String>) -> Value {
    let count = lines.len() as u64;
    let sim = sim_with(lines, None).await;
    let mut cmd = feedtop();
    cmd.args(["--ch-url", &sim.base_url(), "--db"]).arg(dir.join("direct.db"));
    let mut run = Run::spawn("direct", dir, cmd);
    run.wait_for("every event", |l| events(l) == count).await;
    let last = run.stop().await;
    sim.shutdown().await;
    last
}

/// Events in the stream so far (0 while there is no stream).
async fn stream_events(url: &str) -> u64 {
    let Ok(client) = async_nats::connect(url).await else { return 0 };
    let js = async_nats::jetstream::new(client);
    let Ok(stream) = js.get_stream("FEEDTOP").await else { return 0 };
    let subject = format!("feedtop.{FEED}.events");
    match stream.info_with_subjects(subject.clone()).await {
        Ok(mut subjects) => {
            use futures_util::TryStreamExt;
            let mut n = 0;
            while let Ok(Some((_, count))) = subjects.try_next().await {
                n += count as u64;
            }
            n
        }
        Err(_) => 0,
    }
}

/// Timepoints of the events in the stream, in stream order, read directly
/// with async-nats (no feedtop code in the way).
async fn stream_timepoints(url: &str) -> Vec<i64> {
    use async_nats::jetstream::consumer::{pull, DeliverPolicy};
    use futures_util::StreamExt;
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("FEEDTOP").await.unwrap();
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: format!("feedtop.{FEED}.events"),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = consumer.cached_info().num_pending;
    let mut messages = consumer.messages().await.unwrap();
    let mut timepoints = Vec::new();
    while (timepoints.len() as u64) < pending {
        let msg = tokio::time::timeout(STEP, messages.next()).await.unwrap().unwrap().unwrap();
        let msg = feedtop_proto::wire::decode(&msg.payload).unwrap();
        timepoints.push(msg.kind.event().expect("an event").timepoint);
    }
    timepoints
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_viewers_show_the_tallies_of_a_direct_run() {
    let dir = tempfile::tempdir().unwrap();
    let lines = generated_lines(400, 14);
    let count = lines.len() as u64;
    let direct = direct_run(dir.path(), lines.clone()).await;

    let nats = NatsServer::start().unwrap();
    let sim = sim_with(lines, None).await;
    let mut relay = relay(dir.path(), &sim, &nats.url(), &dir.path().join("relay.db"));
    relay.wait_for("every event at the relay", |l| events(l) == count).await;
    wait_for_stream(&nats.url(), count).await;
    let mut a = viewer("viewer-a", dir.path(), &nats.url());
    let mut b = viewer("viewer-b", dir.path(), &nats.url());
    a.wait_for("every event at viewer a", |l| events(l) == count).await;
    b.wait_for("every event at viewer b", |l| events(l) == count).await;
    let (a, b) = (a.stop().await, b.stop().await);
    let relayed = relay.stop().await;
    assert_eq!(tally(&relayed), tally(&direct), "the relay ingests as a direct run does");
    assert_eq!(tally(&a), tally(&direct), "viewer a");
    assert_eq!(tally(&b), tally(&direct), "viewer b");
    assert_ne!(tally(&direct).1[0], 0, "the events hold strike-off changes: {direct}");
    assert!(a["strike_off"]["in_proposal"].is_null(), "a viewer does not claim to know: {a}");
    // Without --db a viewer keeps no database, not even a temporary one.
    assert!(a["store"].is_null(), "nothing stored, and the line says so: {a}");
    assert_eq!(files_under(&viewer_home(dir.path(), "viewer-a")), Vec::<PathBuf>::new());
}

/// kill -9 the relay halfway and start it again on the same database: the
/// viewer, reading all along, ends with every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_stream_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lines = generated_lines(600, 15);
    let count = lines.len() as u64;
    let direct = direct_run(dir.path(), lines.clone()).await;

    let nats = NatsServer::start().unwrap();
    let sim = sim_with(lines[..300].to_vec(), None).await;
    let db = dir.path().join("relay.db");
    let mut first = relay(dir.path(), &sim, &nats.url(), &db);
    first.wait_for("the first half at the relay", |l| events(l) == 300).await;
    wait_for_stream(&nats.url(), 300).await;
    let mut view = viewer("viewer", dir.path(), &nats.url());
    view.wait_for("some events at the viewer", |l| events(l) > 0).await;
    // More arrive while the relay dies: some read, some not yet stored.
    for line in &lines[300..450] {
        sim.append(line.clone());
    }
    first.wait_for("events past the first half", |l| events(l) > 300).await;
    first.crash();
    for line in &lines[450..] {
        sim.append(line.clone());
    }
    let second = relay(dir.path(), &sim, &nats.url(), &db);
    view.wait_for("every event at the viewer", |l| events(l) >= count).await;
    let seen = view.stop().await;
    second.stop().await;
    assert_eq!(tally(&seen), tally(&direct), "nothing lost, nothing doubled");
    let timepoints = stream_timepoints(&nats.url()).await;
    assert_eq!(timepoints.len() as u64, count, "each event is in the stream once");
    assert!(timepoints.windows(2).all(|w| w[0] < w[1]), "in order");
}

/// NATS stops while events keep coming: the relay stores them in its
/// outbox, and publishes them in order when NATS is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_of_a_nats_outage_arrives_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let lines = generated_lines(500, 16);
    let count = lines.len() as u64;

    let mut nats = NatsServer::start().unwrap();
    let sim = sim_with(lines[..100].to_vec(), None).await;
    let db = dir.path().join("relay.db");
    let mut relay = relay(dir.path(), &sim, &nats.url(), &db);
    wait_for_stream(&nats.url(), 100).await;
    let mut view = viewer("viewer", dir.path(), &nats.url());
    view.wait_for("the first events at the viewer", |l| events(l) == 100).await;

    nats.stop().unwrap();
    for line in &lines[100..] {
        sim.append(line.clone());
    }
    relay.wait_for("every event at the relay while NATS is down", |l| events(l) == count).await;
    // Stored and committed with their events, a few milliseconds after them.
    let deadline = tokio::time::Instant::now() + STEP;
    while outbox_rows(&db) < count - 100 {
        assert!(tokio::time::Instant::now() < deadline, "the outage's events wait in the outbox\n{}", relay.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    nats.restart().unwrap();
    view.wait_for("every event at the viewer after the outage", |l| events(l) >= count).await;
    let seen = view.stop().await;
    relay.stop().await;
    assert_eq!(events(&seen), count);
    let timepoints = stream_timepoints(&nats.url()).await;
    assert_eq!(timepoints.len() as u64, count);
    assert!(timepoints.windows(2).all(|w| w[0] < w[1]), "the backlog went out in order");
    assert_eq!(outbox_rows(&db), 0, "published rows leave the outbox");
}

fn outbox_rows(db: &Path) -> u64 {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.query_row("SELECT COUNT(*) FROM relay_outbox", [], |r| r.get::<_, i64>(0)).unwrap() as u64
}

/// A viewer started after the relay has published sees what came before it
/// (the last hour by default); `--since 0s` starts at the head instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_viewer_sees_the_last_hour() {
    let dir = tempfile::tempdir().unwrap();
    let lines = generated_lines(200, 17);
    let count = lines.len() as u64;
    let nats = NatsServer::start().unwrap();
    let sim = sim_with(lines, None).await;
    let mut relay = relay(dir.path(), &sim, &nats.url(), &dir.path().join("relay.db"));
    relay.wait_for("every event at the relay", |l| events(l) == count).await;
    // Published: the stream holds them all before any viewer starts.
    wait_for_stream(&nats.url(), count).await;

    let mut late = viewer("late", dir.path(), &nats.url());
    late.wait_for("the last hour at the late viewer", |l| events(l) == count).await;
    let mut cmd = feedtop();
    cmd.args(["--source", &nats.url(), "--since", "0s"]);
    let mut now_only = Run::spawn("since-0s", dir.path(), cmd);
    now_only.wait_for("a line", |_| true).await;
    let (late, now_only) = (late.stop().await, now_only.stop().await);
    relay.stop().await;
    assert_eq!(events(&late), count);
    assert_eq!(events(&now_only), 0, "--since 0s shows nothing from before it started");
}

/// Waits until the stream holds `count` events (published and acked): a
/// viewer needs the stream and the relay's announcement to start.
async fn wait_for_stream(url: &str, count: u64) {
    let deadline = tokio::time::Instant::now() + STEP;
    while stream_events(url).await < count {
        assert!(tokio::time::Instant::now() < deadline, "the stream did not get {count} events");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A three-node cluster with the stream on every node: one node stops
/// mid-stream, and the viewer still gets every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_with_three_replicas_loses_nothing_when_a_node_stops() {
    let dir = tempfile::tempdir().unwrap();
    let lines = generated_lines(400, 18);
    let count = lines.len() as u64;
    let mut cluster = NatsCluster::start(3).unwrap();
    let urls = cluster.urls();
    let sim = sim_with(lines[..150].to_vec(), None).await;
    let mut cmd = feedtop();
    cmd.args(["relay", "--nats", &urls, "--replicas", "3", "--backoff-cap", "1s", "--ch-url", &sim.base_url()]);
    cmd.arg("--db").arg(dir.path().join("relay.db"));
    let relay = Run::spawn("relay", dir.path(), cmd);
    wait_for_stream(&cluster.node_url(1), 150).await;
    let mut view = viewer("viewer", dir.path(), &urls);
    view.wait_for("the first events at the viewer", |l| events(l) == 150).await;

    cluster.stop_node(0).unwrap();
    for line in &lines[150..] {
        sim.append(line.clone());
    }
    view.wait_for("every event with a node down", |l| events(l) >= count).await;
    let seen = view.stop().await;
    relay.stop().await;
    assert_eq!(events(&seen), count, "nothing lost or doubled");
}

/// Publishes `count` events from a fresh simulator through a relay given
/// `env`, and returns the relay's stderr once a viewer given the same `env`
/// has shown them all (with its stderr).
async fn relay_and_view_with(
    dir: &Path,
    nats: &str,
    env: &[(&str, &str)],
    extra: &[&str],
    count: usize,
) -> (String, String) {
    let sim = sim_with(generated_lines(count, 19), None).await;
    let mut cmd = feedtop();
    cmd.args(["relay", "--nats", nats, "--ch-url", &sim.base_url()]).args(extra).envs(env.iter().copied());
    cmd.env("RUST_LOG", "trace").arg("--db").arg(dir.join("relay.db"));
    let relay = Run::spawn("relay", dir, cmd);
    let mut cmd = feedtop();
    cmd.args(["--source", nats]).args(extra).envs(env.iter().copied()).env("RUST_LOG", "trace");
    let deadline = tokio::time::Instant::now() + STEP;
    // Until the relay has announced itself, a viewer stops at once, saying so.
    let mut view = loop {
        let mut view = Run::spawn("viewer", dir, cmd_clone(&cmd));
        match tokio::time::timeout(Duration::from_secs(5), view.lines.recv()).await {
            Ok(Some(_)) => break view,
            _ => {
                assert!(tokio::time::Instant::now() < deadline, "no viewer could start\n{}", view.stderr());
                let _ = view.child.kill();
                let _ = view.child.wait();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    view.wait_for("every event at the viewer", |l| events(l) == count as u64).await;
    let view_err = view.stderr();
    view.stop().await;
    let relay_err = relay.stderr();
    relay.stop().await;
    (relay_err, view_err)
}

fn cmd_clone(cmd: &Command) -> Command {
    let mut copy = Command::new(cmd.get_program());
    copy.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => copy.env(k, v),
            None => copy.env_remove(k),
        };
    }
    copy
}

/// A NATS server that wants a user and password: the relay and a viewer
/// given them through the environment get in; a viewer with the wrong
/// password is refused with one line; no log line, even at trace level,
/// shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_and_password_get_in_and_never_reach_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let password = "s3cr3t-pa55word";
    let nats = NatsServer::start_with(&["--user", "feeds", "--pass", password]).unwrap();
    let env = [("NATS_USER", "feeds"), ("NATS_PASSWORD", password)];
    let (relay_err, view_err) = relay_and_view_with(dir.path(), &nats.url(), &env, &[], 30).await;
    assert!(!relay_err.contains(password) && !view_err.contains(password), "the password was logged");

    let wrong = feedtop()
        .args(["--headless", "--source", &nats.url()])
        .envs([("NATS_USER", "feeds"), ("NATS_PASSWORD", "not-the-pa55word")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(stderr.to_lowercase().contains("authorization"), "says why: {stderr}");
    assert!(!stderr.contains("not-the-pa55word"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    let half = feedtop().args(["--headless", "--source", &nats.url()]).env("NATS_USER", "feeds").output().unwrap();
    let stderr = String::from_utf8_lossy(&half.stderr);
    assert!(stderr.contains("NATS_PASSWORD is not"), "a user without a password is a setting mistake: {stderr}");
    assert_eq!(half.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_gets_in_and_never_reaches_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let token = "t0ken-for-the-relay";
    let nats = NatsServer::start_with(&["--auth", token]).unwrap();
    let (relay_err, view_err) = relay_and_view_with(dir.path(), &nats.url(), &[("NATS_TOKEN", token)], &[], 30).await;
    assert!(!relay_err.contains(token) && !view_err.contains(token), "the token was logged");
    let refused = feedtop().args(["--headless", "--source", &nats.url()]).output().unwrap();
    assert!(!refused.status.success(), "no token, no entry");
}

/// `tls://` with a CA of our own: the relay and the viewer verify the
/// server's certificate against it and talk over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_works_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = (dir.path().join("ca.pem"), dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(dir.path().join("leaf.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir.path())
            .args(args)
            .output()
            .expect("openssl makes the test's certificates (.ci/run installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // A CA of our own, and the server's certificate signed by it.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=feedtop test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.cnf",
        "-out",
        "cert.pem",
    ]);
    let (ca_s, cert_s, key_s) = (ca.display().to_string(), cert.display().to_string(), key.display().to_string());
    let nats = NatsServer::start_with(&["--tls", "--tlscert", &cert_s, "--tlskey", &key_s]).unwrap();
    let url = format!("tls://127.0.0.1:{}", nats.port());
    relay_and_view_with(dir.path(), &url, &[], &["--nats-ca", &ca_s], 20).await;

    // Without the CA, the certificate is not trusted: refused, one line.
    let untrusted = feedtop().args(["--headless", "--source", &url]).output().unwrap();
    assert!(!untrusted.status.success());
}

/// A `.creds` file that cannot be read is one line naming it, before any
/// connection (no server needed to find that out).
#[test]
fn an_unreadable_creds_file_is_one_line_naming_it() {
    let out = feedtop()
        .args(["--headless", "--source", "nats://127.0.0.1:9"])
        .env("NATS_CREDS", "/nonexistent/feedtop.creds")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("NATS credentials file /nonexistent/feedtop.creds"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// Runs a pipeline in a task of its own (inputs and a tick every 100 ms)
/// until the returned sender is dropped, then hands it back.
fn in_background(
    mut p: feedtop::app::Pipeline,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<feedtop::app::Pipeline>) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = &mut stopped => return p,
                _ = tick.tick() => { let _ = p.tick(chrono::Utc::now()); }
                input = p.next_input() => p.handle(input),
            }
        }
    });
    (stop, task)
}

/// `relay --accept-reconnect` and a viewer with `--ask-relay`: the viewer's
/// `r` on a feed makes the relay drop that feed's connection and connect
/// again (the simulator sees a second connection). (Refusals and NATS
/// permissions: `relay::control`'s own tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_asks_the_relay_to_reconnect_a_feed() {
    use feedtop::relay::{NatsSettings, Viewer};
    let nats = NatsServer::start().unwrap();
    let sim = sim_with(generated_lines(20, 20), None).await;
    let (_dir, db) = temp_db();
    let settings = NatsSettings::new(nats.url());
    // Quiet for minutes without reconnecting: only the request can make a second connection.
    let mut ch = fast_settings(&sim.base_url(), None);
    ch.reconnect.read_timeout = Duration::from_secs(600);
    ch.reconnect.stall_after = Duration::from_secs(300);
    let mut relay = start(ch, &db);
    relay.accept_reconnects(settings.clone());
    let relay = relay.relay_to(settings.clone()).unwrap();
    let (stop_relay, relay) = in_background(relay);
    wait_for_stream(&nats.url(), 20).await;
    assert!(sim.wait_for_requests(1, STEP).await);

    let config = feedtop::app::PipelineConfig {
        feeds: Vec::new(),
        // Not used: this viewer stores nothing.
        db_path: "/nonexistent/viewer.db".into(),
        latency_window: Duration::from_secs(300),
        demo: false,
        writer: Default::default(),
    };
    let viewer = Viewer::open(settings).await.unwrap();
    let mut viewer = feedtop::app::Pipeline::from_nats(config, viewer, ViewerStore::Nothing).unwrap();
    viewer.ask_relay_to_reconnect();
    viewer.reconnect(&FEED.into());
    assert!(sim.wait_for_requests(2, STEP).await, "the relay's feed connected again: {:?}", sim.requests().len());
    drop(stop_relay);
    relay.await.unwrap().shutdown().await;
    viewer.shutdown().await;
}

/// Whoever may publish to the stream can write anything into it: a record
/// of another schema version or plain junk is counted as unreadable and
/// skipped, the good messages around it are shown; a junk announcement
/// stops a viewer at start with one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_in_the_stream_is_counted_and_skipped_and_a_junk_announcement_refused() {
    use feedtop_proto::wire::{self, RecordingHeader};
    use feedtop_proto::{FeedInfo, FeedKind, FeedMsg, FeedMsgKind};
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(feedtop::relay::NatsSettings::new(nats.url()).stream_config()).await.unwrap();
    let publish = |subject: &'static str, payload: Vec<u8>| {
        let js = js.clone();
        async move { js.publish(subject, payload.into()).await.unwrap().await.unwrap() }
    };
    publish("feedtop._relay.info", b"\x1b[2J not an announcement".to_vec()).await;
    let refused = feedtop().args(["--headless", "--source", &nats.url()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("announcement") && !stderr.contains('\x1b'), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let header = RecordingHeader {
        feeds: vec![FeedInfo::new(FEED, FeedKind::CompaniesHouse)],
        started: chrono::Utc::now(),
        writer: "test".into(),
        strike_offs: true,
    };
    publish("feedtop._relay.info", wire::encode_header(&header)).await;
    let line = generated_lines(1, 21).remove(0);
    let event = feedtop::feeds::companies_house::parse_event(line.into_bytes()).unwrap();
    let good = FeedMsg { feed: FEED.into(), at: chrono::Utc::now(), kind: FeedMsgKind::Event(Box::new(event)) };
    publish("feedtop.ch/companies.events", br#"{"schema":2,"msg":{"from":"the future"}}"#.to_vec()).await;
    publish("feedtop.ch/companies.events", b"\x00\xff junk".to_vec()).await;
    publish("feedtop.ch/companies.events", wire::encode(&good)).await;

    let mut view = viewer("viewer", dir.path(), &nats.url());
    let line = view.wait_for("the good event", |l| events(l) == 1 && l["nats"]["unreadable"] == 2).await;
    view.stop().await;
    assert_eq!(line["nats"]["received"], 1, "{line}");
}

/// A NATS server in operator mode (decentralised JWT auth, as `nsc` sets
/// up) and a `.creds` file for one of its users: the relay and a viewer
/// given `NATS_CREDS` get in; neither logs the file's JWT or seed, even at
/// trace level; without credentials the server refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_logs_in_with_its_jwt_and_never_reaches_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let trust = jwt::Trust::new();
    let config = dir.path().join("operator.conf");
    std::fs::write(&config, trust.server_config()).unwrap();
    let nats = NatsServer::start_with(&["-c", config.to_str().unwrap()]).unwrap();
    let creds = dir.path().join("feedtop.creds");
    std::fs::write(&creds, trust.user_creds()).unwrap();
    let env = [("NATS_CREDS", creds.to_str().unwrap())];
    let (relay_err, view_err) = relay_and_view_with(dir.path(), &nats.url(), &env, &[], 30).await;
    for secret in [trust.user_seed(), trust.user_jwt()] {
        assert!(!relay_err.contains(&secret) && !view_err.contains(&secret), "a credential was logged");
    }
    let refused = feedtop().args(["--headless", "--source", &nats.url()]).output().unwrap();
    assert!(!refused.status.success(), "no credentials, no entry");
}

/// NATS's decentralised auth made by hand: an operator, a system account
/// and an account with JetStream, and a user of it, each signed by the one
/// above as `nsc` signs them (JWTs of ed25519-nkey claims).
mod jwt {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use nkeys::KeyPair;
    use serde_json::{json, Value};
    use sha2::Digest;

    pub struct Trust {
        operator: KeyPair,
        system: KeyPair,
        account: KeyPair,
        user: KeyPair,
        /// Made once: signing again gives another (a new `iat`).
        user_jwt: String,
    }

    /// `header.claims.signature`, the claims given a `jti` (their hash),
    /// `iat`, `iss` (the signer) and `sub`.
    fn sign(issuer: &KeyPair, subject: &KeyPair, name: &str, nats: Value) -> String {
        let mut claims = json!({
            "iat": chrono::Utc::now().timestamp(),
            "iss": issuer.public_key(),
            "name": name,
            "sub": subject.public_key(),
            "nats": nats,
        });
        let jti = sha2::Sha256::digest(claims.to_string().as_bytes());
        claims["jti"] = json!(jti.iter().map(|b| format!("{b:02X}")).collect::<String>());
        let header = URL_SAFE_NO_PAD.encode(json!({"typ": "JWT", "alg": "ed25519-nkey"}).to_string());
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{body}");
        let signature = issuer.sign(signed.as_bytes()).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn account_claims(jetstream: bool) -> Value {
        let mut limits = json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
        });
        if jetstream {
            for key in ["mem_storage", "disk_storage", "streams", "consumer"] {
                limits[key] = json!(-1);
            }
        }
        json!({ "limits": limits, "default_permissions": { "pub": {}, "sub": {} }, "type": "account", "version": 2 })
    }

    impl Trust {
        pub fn new() -> Self {
            let (account, user) = (KeyPair::new_account(), KeyPair::new_user());
            let claims =
                json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2});
            let user_jwt = sign(&account, &user, "relay", claims);
            Self { operator: KeyPair::new_operator(), system: KeyPair::new_account(), account, user, user_jwt }
        }

        /// A nats-server config trusting the operator, its accounts preloaded.
        pub fn server_config(&self) -> String {
            let operator = sign(&self.operator, &self.operator, "test", json!({"type": "operator", "version": 2}));
            let system = sign(&self.operator, &self.system, "SYS", account_claims(false));
            let account = sign(&self.operator, &self.account, "feedtop", account_claims(true));
            format!(
                "operator: \"{operator}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
                 resolver_preload: {{\n  {sys}: \"{system}\"\n  {acc}: \"{account}\"\n}}\n",
                sys = self.system.public_key(),
                acc = self.account.public_key(),
            )
        }

        pub fn user_jwt(&self) -> String {
            self.user_jwt.clone()
        }

        pub fn user_seed(&self) -> String {
            self.user.seed().unwrap()
        }

        /// The `.creds` file `nsc generate creds` writes.
        pub fn user_creds(&self) -> String {
            format!(
                "-----BEGIN NATS USER JWT-----\n{}\n------END NATS USER JWT------\n\n\
                 ************************* IMPORTANT *************************\n\
                 NKEY Seed printed below can be used to sign and prove identity.\n\n\
                 -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
                self.user_jwt(),
                self.user_seed()
            )
        }
    }
}
