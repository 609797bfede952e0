//! The binary never hands the user's terminal (or spreadsheet) to a feed:
//! hostile company names through `strike-offs` in every format, a hostile
//! error body through headless stderr and stdout; and the small things an
//! operator notices on the way: a closed pipe, errors said once, no library
//! chatter at the default log level.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use feedtop::sanitize::{is_unsafe, MARKER};
use feedtop::sim::carbon::{CarbonConfig, CarbonShape, CarbonSim};

fn feedtop() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedtop"));
    cmd.env_remove("CH_STREAMING_API_KEY").env_remove("FEEDTOP_DB").env_remove("FEEDTOP_CONFIG");
    cmd.env_remove("FEEDTOP_CH_URL").env_remove("RUST_LOG").env_remove("NO_COLOR");
    cmd
}

/// Retitles the terminal, writes its clipboard, clears it; a C1 CSI, CR, BS,
/// BEL, DEL and a right-to-left override.
const NAME: &str = "EVIL\x1b]0;pwned\x07 LTD\x1b]52;c;aGk=\x07\x1b[2J\u{9b}2J\r\x08\x7f\u{202E}DTL";
const FORMULA: &str = "=HYPERLINK(\"http://evil.example/\",\"click\")";

/// A feedtop database holding `rows` ordinary changes and two hostile ones.
fn seeded_db(rows: usize) -> (tempfile::TempDir, PathBuf) {
    let (dir, db) = temp_db();
    let conn = feedtop::store::open(&db).unwrap();
    let insert = |number: &str, name: &str, timepoint: i64| {
        conn.execute(
            "INSERT INTO strike_offs (company_number, company_name, change, from_status, from_detail, to_status,
                                      to_detail, published_at, timepoint, received_at)
             VALUES (?1, ?2, 'entered', 'active', NULL, 'active', 'active-proposal-to-strike-off',
                     '2025-06-10T11:00:00.000Z', ?3, '2025-06-10T11:00:01.000Z')",
            rusqlite::params![number, name, timepoint],
        )
        .unwrap();
    };
    conn.execute_batch("BEGIN").unwrap();
    for i in 0..rows {
        insert(&format!("{i:08}"), "ORCHARD LANE LIMITED, A PERFECTLY ORDINARY COMPANY", i as i64);
    }
    insert("0\x1b[2J", NAME, 1_000_000);
    insert("+1", FORMULA, 1_000_001);
    conn.execute_batch("COMMIT").unwrap();
    (dir, db)
}

fn strike_offs(db: &Path, args: &[&str]) -> std::process::Output {
    feedtop().arg("strike-offs").args(args).arg("--db").arg(db).output().unwrap()
}

fn control_chars(text: &str) -> Vec<char> {
    text.chars().filter(|&c| c != '\n' && is_unsafe(c)).collect()
}

#[test]
fn strike_offs_writes_no_control_bytes_in_any_format() {
    let (_dir, db) = seeded_db(3);
    for format in ["table", "json", "csv"] {
        let out = strike_offs(&db, &["--format", format]);
        assert!(out.status.success(), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(control_chars(&stdout), Vec::<char>::new(), "{format}: {stdout:?}");
        match format {
            "json" => {
                // Escaped, not lost: a JSON reader gets the stored name back.
                assert!(stdout.contains("\\u009b") && stdout.contains("\\u202e"), "{stdout}");
                let names: Vec<String> = stdout
                    .lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["company_name"].to_string())
                    .collect();
                assert!(names.contains(&serde_json::Value::from(NAME).to_string()), "{names:?}");
            }
            _ => assert!(stdout.contains(&format!("EVIL{MARKER}]0;pwned{MARKER} LTD")), "{format}: {stdout}"),
        }
    }
    // CSV: the formula cells start with ' so a spreadsheet shows them.
    let csv = strike_offs(&db, &["--format", "csv"]);
    let mut reader = csv::Reader::from_reader(&csv.stdout[..]);
    let row = reader.records().map(Result::unwrap).find(|r| r[1].contains("HYPERLINK")).unwrap();
    assert_eq!(&row[1], format!("'{FORMULA}"));
    assert_eq!(&row[0], "'+1");
    // --csv-raw: exactly as stored.
    let raw = strike_offs(&db, &["--format", "csv", "--csv-raw"]);
    let mut reader = csv::Reader::from_reader(&raw.stdout[..]);
    let names: Vec<String> = reader.records().map(|r| r.unwrap()[1].to_string()).collect();
    assert!(names.iter().any(|n| n == FORMULA) && names.iter().any(|n| n == NAME), "{names:?}");
}

#[test]
fn help_documents_csv_raw() {
    let out = feedtop().args(["strike-offs", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--csv-raw") && help.contains("formula"), "{help}");
}

/// `feedtop strike-offs | head -1`: far more than a pipe holds, so feedtop
/// is still writing when the reader goes away.
#[test]
fn strike_offs_into_a_closed_pipe_exits_0_quietly() {
    let (_dir, db) = seeded_db(5_000);
    for format in ["table", "json", "csv"] {
        let mut child = feedtop()
            .args(["strike-offs", "--format", format, "--db"])
            .arg(&db)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        assert!(!first.is_empty(), "{format}");
        // The reader (and with it the pipe) is dropped here, like `head -1` exiting.
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{format}: {status:?}, stderr: {stderr}");
        assert_eq!(stderr, "", "{format}");
    }
}

#[test]
fn a_database_without_feedtop_tables_is_one_line() {
    let (_dir, db) = temp_db();
    rusqlite::Connection::open(&db).unwrap().execute_batch("CREATE TABLE notes (x TEXT)").unwrap();
    let out = strike_offs(&db, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not a feedtop database") && !stderr.contains("no such table"), "{stderr}");
}

#[test]
fn an_empty_window_says_what_it_was() {
    let (_dir, db) = seeded_db(85);
    let out = strike_offs(&db, &["--since", "2099-01-01"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("since 2099-01-01 00:00:00 UTC (87 stored in all)"), "{stdout}");
    let csv = strike_offs(&db, &["--since", "0s", "--format", "csv"]);
    assert_eq!(String::from_utf8_lossy(&csv.stdout).lines().count(), 1, "the header row alone");
}

#[test]
fn errors_say_the_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let under_a_file = file.join("y.db");
    // A config file that cannot be read is a settings mistake (2); a
    // database that cannot be made is a failure at run time (1).
    let cases: [(&[&str], i32); 2] = [
        (&["--config", "/nonexistent/feedtop.toml", "--db", file.to_str().unwrap()], 2),
        (&["--db", under_a_file.to_str().unwrap()], 1),
    ];
    for (args, code) in cases {
        let out = feedtop().args(["--headless", "--duration", "1s"]).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.matches("os error").count(), 1, "{args:?}: {stderr}");
    }
}

/// Answers every request with a 503 whose body is hostile text.
fn hostile_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let body = format!("down {NAME} for maintenance");
            let response = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    url
}

#[test]
fn headless_stderr_and_stdout_carry_no_escapes() {
    let url = hostile_server();
    let (_dir, db) = temp_db();
    // Colour allowed (no NO_COLOR, no --no-color), but stderr is not a terminal.
    let out = feedtop()
        .args(["--headless", "--duration", "2s", "--interval", "500ms", "--ch-url", &url, "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains('\x1b'), "no ESC byte on redirected stderr: {stderr:?}");
    assert_eq!(control_chars(&stderr), Vec::<char>::new(), "{stderr:?}");
    assert!(stderr.contains(&format!(": down EVIL{MARKER}]0;pwned{MARKER} LTD")), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(control_chars(&stdout), Vec::<char>::new(), "{stdout:?}");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(last["feeds"][0]["last_error"].as_str().unwrap().contains(NAME), "escaped, not lost: {last}");
}

#[test]
fn no_color_flag_keeps_stderr_plain() {
    let (_dir, db) = temp_db();
    let out = feedtop()
        .args(["--headless", "--no-color", "--duration", "1s", "--ch-url", "http://127.0.0.1:9", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WARN"), "something was logged: {stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
}

/// At `RUST_LOG=warn` (and at the default level) a WebSocket connect logs
/// nothing of the WebSocket library.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connects_log_nothing_of_tungstenite() {
    let carbon = CarbonSim::start(CarbonConfig {
        token: "tok".into(),
        shape: CarbonShape::Actual,
        publish_every: Duration::from_millis(100),
        reap_without_ping: None,
        kafka_down: false,
        seed: Some(3),
    })
    .await
    .unwrap();
    let (dir, db) = temp_db();
    let config = dir.path().join("config.toml");
    let text = format!(
        "[[feeds]]\nname = \"carbon\"\nkind = \"ws\"\ndialect = \"carbon\"\nurl = \"{}\"\ntoken_env = \"FEEDTOP_TEST_TOKEN\"\n",
        carbon.url()
    );
    std::fs::write(&config, text).unwrap();
    for rust_log in [Some("warn"), None] {
        let mut cmd = feedtop();
        cmd.args(["--headless", "--duration", "2s", "--interval", "500ms", "--ch-url", "http://127.0.0.1:9"])
            .arg("--db")
            .arg(&db)
            .arg("--config")
            .arg(&config)
            .env("FEEDTOP_TEST_TOKEN", "tok");
        if let Some(level) = rust_log {
            cmd.env("RUST_LOG", level);
        }
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        let feed = last["feeds"].as_array().unwrap().iter().find(|f| f["id"] == "carbon").unwrap();
        assert!(feed["events"].as_u64().unwrap() > 0, "the WebSocket connected: {feed}");
        for word in ["handshake", "tungstenite", "DEBUG", ".cargo"] {
            assert!(!stderr.contains(word), "{rust_log:?}: {word} in {stderr}");
        }
    }
}
