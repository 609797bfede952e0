//! `feedtop strike-offs --source nats://…`: the binary reads a relay's
//! stream (a real `nats-server`, JetStream in a temporary directory) and
//! prints it through the same formatter as a database, cleaning included.

use std::process::{Command, Output};

use chrono::Utc;
use feedtop::relay::{subjects, NatsSettings};
use feedtop::sim::nats::NatsServer;
use feedtop_proto::strike_off::{ChangeKind, StrikeOffChange};
use feedtop_proto::{FeedMsg, FeedMsgKind};

fn feedtop(args: &[&str]) -> Output {
    feedtop_with_config(args, None)
}

/// With `config` as the user's config file (and never the developer's own).
fn feedtop_with_config(args: &[&str], config: Option<&str>) -> Output {
    let home = tempfile::tempdir().unwrap();
    if let Some(text) = config {
        std::fs::create_dir_all(home.path().join("feedtop")).unwrap();
        std::fs::write(home.path().join("feedtop/config.toml"), text).unwrap();
    }
    Command::new(env!("CARGO_BIN_EXE_feedtop"))
        .env("XDG_CONFIG_HOME", home.path())
        .env_remove("FEEDTOP_DB")
        .env_remove("FEEDTOP_CONFIG")
        .env_remove("FEEDTOP_NATS_STREAM")
        .env_remove("NATS_USER")
        .env_remove("NATS_PASSWORD")
        .env_remove("NATS_TOKEN")
        .env_remove("NATS_CREDS")
        .env("NO_COLOR", "1")
        .arg("strike-offs")
        .args(args)
        .output()
        .unwrap()
}

fn change(number: &str, name: &str, timepoint: i64) -> FeedMsg {
    let now = Utc::now();
    let change = StrikeOffChange {
        kind: ChangeKind::Entered,
        company_number: number.into(),
        company_name: name.into(),
        from_status: Some("active".into()),
        from_detail: None,
        to_status: "active".into(),
        to_detail: Some("active-proposal-to-strike-off".into()),
        published_at: Some(now),
        timepoint,
        received_at: now,
    };
    FeedMsg { feed: "ch/companies".into(), at: now, kind: FeedMsgKind::StrikeOff(Box::new(change)) }
}

/// A relay's stream holding `msgs`, as the relay publishes them.
async fn stream_with(server: &NatsServer, msgs: &[FeedMsg]) {
    let client = async_nats::connect(&server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(NatsSettings::new(server.url()).stream_config()).await.unwrap();
    for msg in msgs {
        for row in subjects::rows(msg) {
            js.publish(row.subject, row.payload.into()).await.unwrap().await.unwrap();
        }
    }
}

const FORMULA: &str = "=HYPERLINK(\"http://evil.example/\",\"x\")";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_the_streams_changes_through_the_same_formatter() {
    let server = NatsServer::start().unwrap();
    stream_with(&server, &[change("00000001", FORMULA, 1), change("00000002", "EVIL\x1b]0;pwned\x07 LTD", 2)]).await;
    let url = server.url();
    let (csv, table, json) = tokio::task::spawn_blocking(move || {
        (
            feedtop(&["--source", &url, "--format", "csv"]),
            feedtop(&["--source", &url, "--since", "1h"]),
            feedtop(&["--source", &url, "--format", "json"]),
        )
    })
    .await
    .unwrap();
    for out in [&csv, &table, &json] {
        assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    let csv = String::from_utf8(csv.stdout).unwrap();
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert_eq!(&rows[0][0], "00000002", "newest first");
    assert_eq!(&rows[1][1], format!("'{FORMULA}"), "a formula is neutralised");
    assert!(!csv.contains('\x1b'), "{csv:?}");
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.starts_with("PUBLISHED (UTC)"), "{table}");
    assert!(table.contains("EVIL\u{FFFD}]0;pwned\u{FFFD} LTD") && !table.contains('\x1b'), "{table:?}");
    let json = String::from_utf8(json.stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["company_name"], "EVIL\x1b]0;pwned\x07 LTD", "JSON is lossless, escaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_stream_officers_and_no_server_are_one_line_each() {
    let server = NatsServer::start().unwrap();
    stream_with(&server, &[]).await;
    let url = server.url();
    let (empty, officers, later) = tokio::task::spawn_blocking(move || {
        (
            feedtop(&["--source", &url]),
            feedtop(&["--source", &url, "--with-officers"]),
            feedtop(&["--source", &url, "--since", "2099-01-01"]),
        )
    })
    .await
    .unwrap();
    assert!(empty.status.success());
    assert_eq!(String::from_utf8_lossy(&empty.stdout).trim(), "no strike-off changes in NATS stream FEEDTOP");
    assert_eq!(
        String::from_utf8_lossy(&later.stdout).trim(),
        "no strike-off changes published since 2099-01-01 00:00:00 UTC in NATS stream FEEDTOP"
    );
    assert_eq!(officers.status.code(), Some(2), "a usage mistake");
    let stderr = String::from_utf8_lossy(&officers.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--with-officers") && stderr.contains("--source"), "{stderr}");

    let gone = server.url();
    drop(server);
    let out = tokio::task::spawn_blocking(move || feedtop(&["--source", &gone])).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("feedtop: NATS nats://127.0.0.1:"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_files_nats_table_is_used_and_the_flag_wins() {
    let server = NatsServer::start().unwrap();
    stream_with(&server, &[change("00000003", "ORCHARD LANE LTD", 3)]).await;
    let url = server.url();
    let (from_file, flag_wins, secret) = tokio::task::spawn_blocking(move || {
        let other = "[nats]\nstream = \"OTHER\"\n";
        (
            feedtop_with_config(&["--source", &url], Some(other)),
            feedtop_with_config(&["--source", &url, "--nats-stream", "FEEDTOP"], Some(other)),
            feedtop_with_config(&["--source", &url], Some("[nats]\ntoken = \"t0k3n\"\n")),
        )
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&from_file.stderr);
    assert!(stderr.starts_with("feedtop: NATS stream OTHER on nats://127.0.0.1:"), "{stderr}");
    assert!(flag_wins.status.success(), "{}", String::from_utf8_lossy(&flag_wins.stderr));
    assert!(String::from_utf8_lossy(&flag_wins.stdout).contains("ORCHARD LANE LTD"));
    assert_eq!(secret.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&secret.stderr);
    assert!(
        stderr.contains("line 2: token: secrets never go in the config file") && !stderr.contains("t0k3n"),
        "{stderr}"
    );
}
