//! Running it as a service: the real binary, headless, with `--listen` on
//! loopback port 0 (the address is read from its log line), against the
//! loopback simulators. Every wait polls with a deadline.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use feedtop::sim::carbon::{CarbonConfig, CarbonShape, CarbonSim};

const KEY: &str = "chkey-Sv41Lx8q";
const TOKEN: &str = "carbontok-Jq73Wd";
const TOKEN_VAR: &str = "FEEDTOP_TEST_SERVICE_TOKEN";

/// The binary running headless with `--listen 127.0.0.1:0`; killed on drop.
struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(reader: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// Polls `f` until it gives a value or `within` passes.
async fn poll<T>(within: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Starts the binary with the config `feeds` (TOML `[[feeds]]` tables) and
/// the Companies House sim, waiting for the listen line on stderr.
async fn start(ch_url: &str, feeds: &str, extra: &[&str]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, feeds).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedtop"));
    cmd.env_remove("FEEDTOP_DB").env_remove("FEEDTOP_CONFIG").env_remove("FEEDTOP_CH_URL").env_remove("RUST_LOG");
    cmd.args(["--headless", "--interval", "100ms", "--listen", "127.0.0.1:0", "--ch-url", ch_url])
        .args(extra)
        .arg("--db")
        .arg(dir.path().join("feedtop.db"))
        .arg("--config")
        .arg(&config)
        .env("CH_STREAMING_API_KEY", KEY)
        .env(TOKEN_VAR, TOKEN)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let mut running = Running { child, stdout, stderr, base: String::new(), _dir: dir };
    let marker = "serving /health and /metrics on ";
    let base = poll(Duration::from_secs(20), async || {
        let lines = running.stderr.lock().unwrap();
        lines.iter().find_map(|l| {
            let at = l.find(marker)? + marker.len();
            Some(l[at..].trim_end_matches(['"', '}']).split('"').next()?.to_string())
        })
    })
    .await;
    running.base = base.unwrap_or_else(|| panic!("no listen line: {:?}", running.stderr.lock().unwrap()));
    running
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let r = client.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap()
}

async fn carbon() -> CarbonSim {
    CarbonSim::start(CarbonConfig {
        token: TOKEN.into(),
        shape: CarbonShape::Actual,
        publish_every: Duration::from_millis(100),
        reap_without_ping: None,
        kafka_down: false,
        seed: Some(5),
    })
    .await
    .unwrap()
}

fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn feed<'a>(health: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    health["feeds"].as_array().unwrap().iter().find(|f| f["id"] == id).unwrap_or_else(|| panic!("{id}: {health}"))
}

/// A live carbon feed with a token, Companies House with a key, and a
/// carbon feed on a port nothing listens on (budget: 1s left of its read
/// timeout + 1s connect + 3 × 1s backoff = 5s). /health is 200 while that
/// one is inside its budget, then 503 naming it; neither body nor /metrics
/// shows the key or token; anything else is 404; stderr is JSON lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_503_with_the_reason_when_a_feed_stays_down() {
    let ch = sim_with(fixture_lines(), Some(KEY)).await;
    let carbon = carbon().await;
    let feeds = format!(
        r#"
[[feeds]]
name = "carbon"
kind = "ws"
dialect = "carbon"
url = "{url}"
token_env = "{TOKEN_VAR}"
topics = ["served.market.latest_prices.v1"]

[[feeds]]
name = "carbon-down"
kind = "ws"
dialect = "carbon"
url = "ws://127.0.0.1:{dead}/ws/stream?token=in-the-url-{TOKEN}"
token_env = "{TOKEN_VAR}"
read_timeout = "2s"
stall_after = "1s"
connect_timeout = "1s"
backoff_cap = "1s"
"#,
        url = carbon.url(),
        dead = dead_port(),
    );
    let run = start(&ch.base_url(), &feeds, &["--log-format", "json"]).await;
    let http = client();
    let health = format!("{}/health", run.base);

    let ok = poll(Duration::from_secs(20), async || {
        let (status, body) = get(&http, &health).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let live = |id| feed(&v, id)["health"] == "ok";
        (status == 200 && live("carbon") && live("ch/companies")).then_some(v)
    })
    .await
    .expect("200 with the live feeds ok");
    assert_eq!(ok["healthy"], true);
    assert_eq!(feed(&ok, "carbon-down")["health"], "recovering", "{ok}");

    let down = poll(Duration::from_secs(30), async || {
        let (status, body) = get(&http, &health).await;
        (status == 503).then_some(body)
    })
    .await
    .expect("503 once the dead feed is past its budget");
    let v: serde_json::Value = serde_json::from_str(&down).unwrap();
    assert_eq!(v["healthy"], false);
    let dead = feed(&v, "carbon-down");
    assert_eq!(dead["health"], "down", "{v}");
    let reason = dead["reason"].as_str().unwrap();
    assert!(reason.contains("past its recovery budget of 5s"), "{reason}");
    assert_eq!(feed(&v, "carbon")["health"], "ok", "{v}");

    let (status, metrics) = get(&http, &format!("{}/metrics", run.base)).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("feedtop_feed_healthy{feed=\"carbon-down\"} 0.0"), "{metrics}");
    assert_eq!(get(&http, &format!("{}/", run.base)).await.0, 404);
    assert_eq!(get(&http, &format!("{}/healthz?x=1", run.base)).await.0, 404);

    for body in [&down, &metrics] {
        for secret in [KEY, TOKEN] {
            assert!(!body.contains(secret), "{secret} in {body}");
        }
    }
    let stderr = run.stderr.lock().unwrap().clone();
    assert!(!stderr.is_empty());
    for line in &stderr {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{line}");
        assert!(!line.contains(KEY) && !line.contains(TOKEN), "{line}");
    }
}

/// `/metrics` is Prometheus text whose event counter is the model's: the
/// same as the headless lines' count once the fixture is all in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_what_the_headless_lines_count() {
    let ch = sim_with(fixture_lines(), Some(KEY)).await;
    let run = start(&ch.base_url(), "", &[]).await;
    let http = client();
    let url = format!("{}/metrics", run.base);
    let last_line_events = || {
        let lines = run.stdout.lock().unwrap();
        let v: serde_json::Value = serde_json::from_str(lines.last()?).unwrap();
        v["feeds"][0]["events"].as_u64()
    };
    let (line_events, text) = poll(Duration::from_secs(20), async || {
        let before = last_line_events()?;
        let (_, text) = get(&http, &url).await;
        let after = last_line_events()?;
        // Settled: the fixture is in and no line changed while scraping.
        let want = format!("feedtop_feed_events_total{{feed=\"{FEED}\"}} {before}\n");
        (before > 0 && before == after && text.contains(&want)).then_some((before, text))
    })
    .await
    .unwrap_or_else(|| panic!("the counter never matched the lines: {:?}", last_line_events()));
    assert!(text.ends_with("# EOF\n"), "{text}");
    let mut events = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{e}: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
        if series == format!("feedtop_feed_events_total{{feed=\"{FEED}\"}}") {
            events = Some(value as u64);
        }
    }
    assert_eq!(events, Some(line_events), "{text}");
    assert!(text.contains("# TYPE feedtop_feed_events counter"), "{text}");
}

/// Runs the demo headless with `args`, returning its output.
fn demo_run(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.toml"), "").unwrap();
    Command::new(env!("CARGO_BIN_EXE_feedtop"))
        .env_remove("FEEDTOP_CONFIG")
        .env_remove("FEEDTOP_CH_URL")
        .env("NO_COLOR", "1")
        .args(["--headless", "--demo", "--duration", "5s"])
        .args(args)
        .arg("--db")
        .arg(dir.path().join("demo.db"))
        .arg("--config")
        .arg(dir.path().join("empty.toml"))
        .output()
        .unwrap()
}

/// A listener open to the network is refused with one line saying how to
/// allow it, before any feed starts; with JSON logs that line is JSON too.
#[test]
fn a_non_loopback_listen_address_is_refused() {
    let out = demo_run(&["--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("--listen")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("not a loopback address") && lines[0].contains("--listen-any"), "{stderr}");
    assert!(out.stdout.is_empty(), "no run started");

    let out = demo_run(&["--listen", "[::]:0", "--log-format", "json"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    assert_eq!(last["level"], "ERROR");
    assert!(last["fields"]["message"].as_str().unwrap().contains("--listen-any"), "{last}");
}

/// Clients that connect and send nothing, or send an endless head, hold at
/// most their connection slot for the head timeout: the headless lines keep
/// coming meanwhile, the silent connections are closed, and /health answers
/// again once they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_neither_stall_the_pipeline_nor_hold_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ch = sim_with(fixture_lines(), Some(KEY)).await;
    let run = start(&ch.base_url(), "", &[]).await;
    let addr = run.base.trim_start_matches("http://").to_string();
    // More silent clients than the server serves at once.
    let mut silent = Vec::new();
    for _ in 0..feedtop::service::server::MAX_CONNECTIONS + 4 {
        silent.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut flood = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = flood.write_all(b"GET /health HTTP/1.1\r\nX: ").await;
    let _ = flood.write_all(&vec![b'a'; 64 * 1024]).await;

    let lines_now = || run.stdout.lock().unwrap().len();
    let before = lines_now();
    let grew = poll(Duration::from_secs(10), async || (lines_now() >= before + 5).then_some(())).await;
    assert!(grew.is_some(), "the pipeline kept printing while clients hung");

    // The server closes each silent connection (EOF) within its head timeout.
    let mut buf = [0u8; 512];
    let limit = feedtop::service::server::HEAD_TIMEOUT + Duration::from_secs(10);
    for s in silent.iter_mut().chain(std::iter::once(&mut flood)) {
        let closed = tokio::time::timeout(limit, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a connection was held past the head timeout");
    }
    let http = client();
    let status = poll(Duration::from_secs(10), async || {
        let r = http.get(format!("{}/health", run.base)).send().await.ok()?;
        Some(r.status().as_u16())
    })
    .await;
    assert_eq!(status, Some(200));
}
