//! Secrets never leak: the real binary, headless, logging at trace level (see
//! [`TRACE`] for the one known exception), against the loopback simulators of
//! every feed kind that takes a secret (the Companies House key, a carbon
//! WebSocket token, an SSE token), once with the right secrets and once with
//! wrong ones. Neither the key nor a token (right or wrong) may appear on
//! stdout, on stderr, in the database or in its WAL; a URL that carries
//! `token=` is only ever shown as `token=***`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine;
use common::*;
use feedtop::sim::carbon::{CarbonConfig, CarbonShape, CarbonSim};
use feedtop::sim::sse::{SseConfig, SseShape, SseSim};

const KEY: &str = "chkey-Q7vLw3Xz9";
const CARBON_TOKEN: &str = "carbontok-Mb81Rq";
const SSE_TOKEN: &str = "ssetok-Zp44Kd0";
const WRONG_KEY: &str = "wrongkey-Hh2Tn6";
const WRONG_CARBON: &str = "wrongcarb-Ue5Ys1";
const WRONG_SSE: &str = "wrongsse-Lc9Fw7";

/// Every log line of feedtop and its libraries. (tungstenite's trace of the
/// handshake request line would show carbon's `?token=`; `logging::init`
/// caps that one target, and the last test here proves it with plain trace.)
const TRACE: &str = "trace";

const CARBON_VAR: &str = "FEEDTOP_TEST_CARBON_TOKEN";
const SSE_VAR: &str = "FEEDTOP_TEST_SSE_TOKEN";

struct Sims {
    ch: feedtop::sim::companies_house::ChSim,
    carbon: CarbonSim,
    sse: SseSim,
}

async fn sims() -> Sims {
    let ch = sim_with(fixture_lines(), Some(KEY)).await;
    let carbon = CarbonSim::start(CarbonConfig {
        token: CARBON_TOKEN.into(),
        shape: CarbonShape::Actual,
        publish_every: Duration::from_millis(100),
        reap_without_ping: None,
        kafka_down: false,
        seed: Some(3),
    })
    .await
    .unwrap();
    let sse = SseSim::start(SseConfig {
        token: SSE_TOKEN.into(),
        shape: SseShape::Documented,
        publish_every: Duration::from_millis(100),
        heartbeat_after: Duration::from_secs(30),
        retry: None,
        seed: Some(4),
    })
    .await
    .unwrap();
    Sims { ch, carbon, sse }
}

/// A loopback URL where nothing listens (the port was just released).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The config file: the carbon and SSE feeds with their token variables, and
/// the same two kinds pointed at a dead port so that connect errors, which
/// quote the URL, are shown too.
fn write_config(dir: &Path, sims: &Sims) -> PathBuf {
    let dead = dead_port();
    let text = format!(
        r#"
[[feeds]]
name = "carbon"
kind = "ws"
dialect = "carbon"
url = "{carbon}"
token_env = "{CARBON_VAR}"
topics = ["served.market.latest_prices.v1"]

[[feeds]]
name = "prices-sse"
kind = "sse"
url = "{sse}"
token_env = "{SSE_VAR}"

[[feeds]]
name = "carbon-down"
kind = "ws"
dialect = "carbon"
url = "ws://127.0.0.1:{dead}/ws/stream"
token_env = "{CARBON_VAR}"

[[feeds]]
name = "sse-down"
kind = "sse"
url = "http://127.0.0.1:{dead}/sse/stream"
token_env = "{SSE_VAR}"
"#,
        carbon = sims.carbon.url(),
        sse = sims.sse.url(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary headless for a few seconds with these secrets.
async fn run(sims: &Sims, key: &str, carbon: &str, sse: &str) -> (Output, tempfile::TempDir, PathBuf) {
    run_logging(sims, key, carbon, sse, TRACE).await
}

async fn run_logging(
    sims: &Sims,
    key: &str,
    carbon: &str,
    sse: &str,
    rust_log: &str,
) -> (Output, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feedtop.db");
    let config = write_config(dir.path(), sims);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedtop"));
    cmd.env_remove("FEEDTOP_DB").env_remove("FEEDTOP_CONFIG").env_remove("FEEDTOP_CH_URL");
    cmd.args(["--headless", "--duration", "3s", "--interval", "500ms", "--ch-url", &sims.ch.base_url()])
        .arg("--db")
        .arg(&db)
        .arg("--config")
        .arg(&config)
        .env("CH_STREAMING_API_KEY", key)
        .env(CARBON_VAR, carbon)
        .env(SSE_VAR, sse)
        .env("RUST_LOG", rust_log)
        .env("NO_COLOR", "1");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    (out, dir, db)
}

/// Every form a secret could take on the way out: as is, URL-encoded (the
/// same for these), and inside a Basic auth header.
fn forms(secret: &str) -> Vec<String> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{secret}:"));
    vec![secret.to_owned(), basic.trim_end_matches('=').to_owned()]
}

/// Checks stdout, stderr, the database and its WAL for every secret.
fn assert_nothing_leaks(out: &Output, db: &Path, secrets: &[&str]) {
    let mut places: Vec<(String, Vec<u8>)> =
        vec![("stdout".into(), out.stdout.clone()), ("stderr".into(), out.stderr.clone())];
    for file in [db.to_path_buf(), db.with_extension("db-wal"), db.with_extension("db-shm")] {
        if let Ok(bytes) = std::fs::read(&file) {
            places.push((file.display().to_string(), bytes));
        }
    }
    assert!(places.len() >= 3, "the database was written");
    for (place, bytes) in &places {
        let text = String::from_utf8_lossy(bytes);
        for secret in secrets {
            for form in forms(secret) {
                let line = text.lines().find(|l| l.contains(&form));
                assert!(line.is_none(), "{form:?} (from {secret:?}) leaked to {place}: {}", line.unwrap_or_default());
            }
        }
    }
    // A URL with a token, where shown, is redacted.
    for (place, bytes) in &places[..2] {
        let text = String::from_utf8_lossy(bytes);
        for sep in ["?token=", "&token="] {
            for (at, _) in text.match_indices(sep) {
                let shown = &text[at + 1..(at + 10).min(text.len())];
                assert_eq!(shown, "token=***", "an unredacted token in {place}");
            }
        }
    }
}

fn final_report(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_else(|| panic!("no output; stderr: {}", stderr(out)));
    let report: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(report["final"], true, "{last}");
    report
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn feed<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["feeds"].as_array().unwrap().iter().find(|f| f["id"] == id).unwrap_or_else(|| panic!("no feed {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_secrets_leak_nowhere() {
    let sims = sims().await;
    let (out, _dir, db) = run(&sims, KEY, CARBON_TOKEN, SSE_TOKEN).await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let report = final_report(&out);
    // The secrets were really used: every feed that has them got data.
    assert!(sims.ch.requests().iter().any(|r| r.authorized));
    assert!(sims.sse.requests().iter().any(|r| r.token_ok));
    for id in ["ch/companies", "carbon", "prices-sse"] {
        let f = feed(&report, id);
        assert!(f["events"].as_u64().unwrap() > 0, "{id} received nothing: {f}\nstderr: {}", stderr(&out));
    }
    // The dead feeds failed with a message that names the (redacted) URL.
    // The dead feeds failed with their connect errors. The WebSocket one names
    // the URL without its token; the SSE one quotes the URL reqwest was given,
    // token redacted, and so does the log.
    let down = |id: &str| feed(&report, id)["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(down("carbon-down").starts_with("cannot connect to ws://127.0.0.1:"), "{}", down("carbon-down"));
    assert!(down("sse-down").contains("/sse/stream?token=***"), "{}", down("sse-down"));
    assert!(stderr(&out).contains("/sse/stream?token=***"), "the connect error is logged, redacted");
    assert_nothing_leaks(&out, &db, &[KEY, CARBON_TOKEN, SSE_TOKEN]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_secrets_leak_nowhere() {
    let sims = sims().await;
    let (out, _dir, db) = run(&sims, WRONG_KEY, WRONG_CARBON, WRONG_SSE).await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let report = final_report(&out);
    assert!(sims.ch.requests().iter().all(|r| !r.authorized));
    assert!(sims.sse.requests().iter().all(|r| !r.token_ok));
    let error = |id: &str| feed(&report, id)["last_error"].as_str().unwrap_or_default().to_owned();
    for (id, says) in
        [("ch/companies", "key was refused"), ("carbon", "INVALID_TOKEN"), ("prices-sse", "INVALID_TOKEN")]
    {
        let f = feed(&report, id);
        assert_eq!(f["state"], "auth failed", "{id}: {f}");
        assert!(error(id).contains(says), "{id}: {}", error(id));
        assert_eq!(f["events"], 0, "{id}");
    }
    // The refusal also reached the log.
    let log = stderr(&out);
    assert!(log.contains("INVALID_TOKEN") && log.contains("key was refused"), "{log}");
    // Neither the wrong secrets nor (of course) the right ones appear.
    assert_nothing_leaks(&out, &db, &[WRONG_KEY, WRONG_CARBON, WRONG_SSE, KEY, CARBON_TOKEN, SSE_TOKEN]);
}

/// With plain `RUST_LOG=trace`, tungstenite (through the `log` bridge) would
/// trace the handshake request line, which holds carbon's `?token=`;
/// `logging::init` caps that library at warnings whatever the user asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_trace_logging_leaks_no_websocket_token() {
    let sims = sims().await;
    let (out, _dir, db) = run_logging(&sims, KEY, CARBON_TOKEN, SSE_TOKEN, "trace").await;
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_nothing_leaks(&out, &db, &[KEY, CARBON_TOKEN, SSE_TOKEN]);
}
