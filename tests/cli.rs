//! The binary as a user or a script runs it: headless JSON lines, signals,
//! the export command, and every start-up error a user can cause.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;

fn feedtop() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedtop"));
    // Never let the developer's own settings or key leak into a test.
    cmd.env_remove("CH_STREAMING_API_KEY").env_remove("FEEDTOP_DB").env_remove("FEEDTOP_CONFIG");
    cmd.env_remove("FEEDTOP_CH_URL").env("NO_COLOR", "1");
    cmd
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_prints_json_lines_and_the_key_never_leaks() {
    let key = "sekrit-key-7f3a";
    let sim = sim_with(fixture_lines(), Some(key)).await;
    let (_dir, db) = temp_db();
    let out = tokio::task::spawn_blocking({
        let (url, db) = (sim.base_url(), db.clone());
        move || {
            feedtop()
                .args(["--headless", "--duration", "2s", "--interval", "200ms", "--ch-url", &url])
                .arg("--db")
                .arg(&db)
                .env("CH_STREAMING_API_KEY", key)
                .env("RUST_LOG", "trace")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out.stdout);
    assert!(lines.len() >= 3, "a line per interval plus the final one: {}", lines.len());
    let last = lines.last().unwrap();
    assert_eq!(last["final"], true);
    assert_eq!(
        last["strike_off"],
        serde_json::json!({"entered": 6, "withdrawn": 3, "struck_off": 2, "in_proposal": 1})
    );
    let feed = &last["feeds"][0];
    assert_eq!(feed["state"], "live");
    assert_eq!(feed["events"], 27);
    assert_eq!(feed["malformed"], 1);
    assert_eq!(last["store"]["events_written"], 27);
    assert!(sim.requests()[0].authorized);

    // The key appears nowhere: stdout, stderr (at trace level), or the database.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(key));
    assert!(!stderr.contains(key), "key leaked to stderr");
    for file in [db.clone(), db.with_extension("db-wal")] {
        if let Ok(bytes) = std::fs::read(&file) {
            assert!(!String::from_utf8_lossy(&bytes).contains(key), "key stored in {file:?}");
        }
    }

    // The export command lists the stored changes.
    let export = feedtop().args(["strike-offs", "--format", "json", "--db"]).arg(&db).output().unwrap();
    assert!(export.status.success());
    let rows = json_lines(&export.stdout);
    assert_eq!(rows.len(), 11);
    assert_eq!(rows.iter().filter(|r| r["change"] == "struck-off").count(), 2);
    let csv = feedtop().args(["strike-offs", "--format", "csv", "--db"]).arg(&db).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&csv.stdout).lines().count(), 12, "header + 11 rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_with_everything_stored() {
    let sim = sim_with(fixture_lines(), None).await;
    let (_dir, db) = temp_db();
    let mut child = feedtop()
        .args(["--headless", "--interval", "100ms", "--ch-url", &sim.base_url(), "--db"])
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id().to_string();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        let mut signalled = false;
        let deadline = Instant::now() + WAIT;
        for line in BufReader::new(stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            if !signalled && (v["feeds"][0]["events"] == 27 || Instant::now() > deadline) {
                Command::new("kill").args(["-TERM", &pid]).status().unwrap();
                signalled = true;
            }
            lines.push(v);
        }
        lines
    })
    .await
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let last = lines.last().unwrap();
    assert_eq!(last["final"], true);
    assert_eq!(last["feeds"][0]["events"], 27);
    assert_eq!(db_counts(&db).events, 27);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_shown_as_backoff_not_a_crash() {
    let (_dir, db) = temp_db();
    // Bind then drop a listener: the port is closed, connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = feedtop()
        .args(["--headless", "--duration", "1s", "--interval", "300ms", "--ch-url"])
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success());
    let last = json_lines(&out.stdout).pop().unwrap();
    let feed = &last["feeds"][0];
    assert!(feed["state"] == "backoff" || feed["state"] == "connecting", "{feed}");
    assert!(feed["last_error"].as_str().unwrap().contains("cannot connect"), "{feed}");
}

/// Exit status of a run-time failure (a locked database, …).
const FAILURE: i32 = 1;
/// Exit status of a settings mistake: a flag or a config file key (as clap's own usage errors).
const USAGE: i32 = 2;

fn run_expecting_error(args: &[&str], db: &std::path::Path) -> String {
    run_expecting(FAILURE, args, db)
}

fn run_expecting(code: i32, args: &[&str], db: &std::path::Path) -> String {
    let out = feedtop().args(["--headless", "--duration", "1s"]).args(args).arg("--db").arg(db).output().unwrap();
    assert_eq!(out.status.code(), Some(code), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
    stderr
}

#[test]
fn locked_database_is_one_clear_line() {
    let (_dir, db) = temp_db();
    // A feedtop database one migration behind, its write lock held by another process.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL").unwrap();
    conn.execute_batch(feedtop::store::schema::MIGRATIONS[0]).unwrap();
    conn.execute_batch(
        "PRAGMA user_version = 1; BEGIN EXCLUSIVE; INSERT INTO gaps (feed, at, reason) VALUES ('x', 'x', 'held');",
    )
    .unwrap();
    let e = run_expecting_error(&["--ch-url", "http://127.0.0.1:9"], &db);
    assert!(e.contains("locked") && e.contains("--db"), "{e}");
    drop(conn);
}

#[test]
fn corrupt_database_is_one_clear_line() {
    let (_dir, db) = temp_db();
    std::fs::write(&db, vec![0x42u8; 8192]).unwrap();
    let e = run_expecting_error(&["--ch-url", "http://127.0.0.1:9"], &db);
    assert!(e.contains("not a feedtop database"), "{e}");
}

#[test]
fn database_path_that_cannot_exist_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let e = run_expecting_error(&["--ch-url", "http://127.0.0.1:9"], &file.join("feedtop.db"));
    assert!(e.contains("cannot create the database directory"), "{e}");
}

#[test]
fn bad_config_names_the_line_and_key() {
    let (dir, db) = temp_db();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[ui]\nfps = 10\nfsp = 5\n").unwrap();
    let e = run_expecting(USAGE, &["--config", config.to_str().unwrap()], &db);
    assert!(e.contains("line 3") && e.contains("fsp"), "{e}");
}

/// Each value that once hammered a server, looped, panicked or was retried
/// for ever is refused at start: exit 2 and one line naming the flag and
/// what it accepts. Nothing is connected to, nothing is written.
#[test]
fn nonsense_flags_are_refused_with_one_line() {
    let (dir, db) = temp_db();
    let cases: &[(&[&str], &str)] = &[
        (&["--backoff-cap", "0s"], "must be between 1s and 1h"),
        (&["--read-timeout", "0s"], "must be between 1s and 1h"),
        (&["--interval", "0s"], "must be between 10ms and 1h"),
        (&["--fps", "0"], "must be between 1 and 60"),
        (&["--latency-window", "0s"], "must be between 10s and 1d"),
        (&["--ch-url", "ftp://x"], "not http:// or https://"),
        (&["--ch-url", "http://[::1"], "not a URL"),
        (&["--ch-url", ""], "empty"),
        (&["--ch-url", "javascript:"], "scheme javascript:"),
        (&["--ch-url", "http://127.0.0.1:99999"], "invalid port"),
        (&["--stream", "companies"], "must start with /"),
    ];
    for (args, why) in cases {
        let e = run_expecting(USAGE, args, &db);
        assert!(e.contains(args[0]) && e.contains(why), "{args:?}: {e}");
    }
    // The same from the environment variable behind --ch-url.
    let out = feedtop().env("FEEDTOP_CH_URL", "not a url").args(["--headless", "--db"]).arg(&db).output().unwrap();
    assert_eq!(out.status.code(), Some(USAGE));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.trim().lines().count() == 1 && e.contains("--ch-url") && e.contains("not a URL"), "{e}");
    // And the bench subcommand's numbers.
    for (args, why) in [(["bench", "--rate", "0"], "--rate"), (["bench", "--events", "0"], "--events")] {
        let out = feedtop().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(USAGE), "{args:?}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.trim().lines().count() == 1 && e.contains(why) && e.contains("must be between"), "{e}");
    }
    assert!(!db.exists(), "nothing was started");
    drop(dir);
}

/// The same values in the config file: exit 2, one line with the file, the
/// line, the key and the range.
#[test]
fn nonsense_in_the_config_file_is_refused_with_one_line() {
    let (dir, db) = temp_db();
    let config = dir.path().join("config.toml");
    let cases = [
        (
            "[companies_house]\nbackoff_cap = \"0s\"\n",
            "line 2 (`backoff_cap = \"0s\"`): backoff_cap must be between 1s and 1h",
        ),
        ("[companies_house]\nurl = \"ftp://x\"\n", "line 2 (`url = \"ftp://x\"`): url has the scheme ftp:"),
        ("[companies_house]\nstream = \"companies\"\n", "line 2 (`stream = \"companies\"`): stream"),
        ("[ui]\nfps = 0\n", "line 2 (`fps = 0`): fps must be between 1 and 60"),
        (
            "[[feeds]]\nname = \"x\"\nkind = \"sse\"\nurl = \"not a url\"\n",
            "line 4 (`url = \"not a url\"`): feed \"x\": url is not a URL",
        ),
    ];
    for (text, why) in cases {
        std::fs::write(&config, text).unwrap();
        let e = run_expecting(USAGE, &["--config", config.to_str().unwrap()], &db);
        assert!(e.contains(config.to_str().unwrap()) && e.contains(why), "{text}\n→ {e}");
    }
    assert!(!db.exists(), "nothing was started");
}

#[test]
fn help_explains_how_to_watch_the_real_stream() {
    let out = feedtop().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("CH_STREAMING_API_KEY") && help.contains("--headless") && help.contains("strike-offs"));
}

#[test]
fn export_without_a_database_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = feedtop().args(["strike-offs", "--db"]).arg(dir.path().join("none.db")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run feedtop first"));
}

#[test]
fn demo_runs_headless_on_its_own_database() {
    let (_dir, db) = temp_db();
    let out = feedtop()
        .args(["--demo", "--headless", "--duration", "2s", "--interval", "500ms", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let last = json_lines(&out.stdout).pop().unwrap();
    assert_eq!(last["demo"], true);
    assert!(last["feeds"][0]["events"].as_u64().unwrap() > 0, "{last}");
}
