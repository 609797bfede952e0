//! Every feed is an entry of one list: a config that lists feeds runs
//! exactly those (never the demo, never an extra Companies House feed because
//! a key happens to be set), and two Companies House streams run side by side,
//! each resuming from its own point.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use feedtop::app::FeedSpec;
use feedtop::sim::wig80::{Wig80Config, Wig80Sim};

fn feedtop() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedtop"));
    cmd.env_remove("FEEDTOP_DB").env_remove("FEEDTOP_CONFIG").env_remove("FEEDTOP_CH_URL").env("NO_COLOR", "1");
    cmd
}

/// A quote-only config with a stream key in the environment: headless lines
/// show that one feed, live, and `"demo":false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_only_config_runs_exactly_its_feeds() {
    let wig80 = Wig80Sim::start(Wig80Config {
        snapshot_every: Duration::from_millis(100),
        protocol_ping_every: None,
        naive_timestamps: true,
        seed: Some(3),
    })
    .await
    .unwrap();
    let (dir, db) = temp_db();
    let config = dir.path().join("quotes.toml");
    let text = format!("[[feeds]]\nname = \"wig80\"\nkind = \"ws\"\ndialect = \"wig80\"\nurl = \"{}\"\n", wig80.url());
    std::fs::write(&config, text).unwrap();
    let mut child = feedtop()
        .args(["--headless", "--interval", "100ms", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db)
        .env("CH_STREAMING_API_KEY", "a-key-that-must-not-add-a-feed")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = json_lines(child.stdout.take().unwrap(), 64);
    let live = tokio::time::timeout(WAIT, async {
        loop {
            let line = lines.recv().await.expect("feedtop exited before its feed was live");
            if line["feeds"][0]["state"] == "live" && line["symbols"].as_u64() > Some(0) {
                return line;
            }
        }
    })
    .await
    .expect("the wig80 feed is live within the deadline");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(live["demo"], false, "{live}");
    let ids: Vec<_> = live["feeds"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["wig80"], "{live}");
    assert_eq!(live["feeds"][0]["kind"], "ws/wig80");
}

/// `--demo` with a config that lists feeds runs the simulators alone and
/// says which configured feeds it is not running.
#[test]
fn demo_with_a_feed_list_says_it_sets_the_list_aside() {
    let (dir, db) = temp_db();
    let config = dir.path().join("quotes.toml");
    std::fs::write(
        &config,
        "[[feeds]]\nname = \"mine\"\nkind = \"ws\"\ndialect = \"wig80\"\nurl = \"ws://127.0.0.1:9\"\n",
    )
    .unwrap();
    let out = feedtop()
        .args(["--demo", "--headless", "--duration", "300ms", "--interval", "100ms", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the config file's feeds are not run (mine)"), "{stderr}");
    let last = String::from_utf8_lossy(&out.stdout).lines().last().map(|l| l.to_string()).unwrap();
    let last: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(last["demo"], true);
    assert!(!last["feeds"].as_array().unwrap().iter().any(|f| f["id"] == "mine"), "{last}");
}

/// Two streams, two resume points: after a restart each asks its own server
/// for its own timepoint, and nothing is lost or doubled on either.
#[tokio::test]
async fn two_companies_house_streams_resume_independently() {
    let first_lines = fixture_lines();
    let second_lines = generated_lines(30, 11);
    let first = sim_with(first_lines[..15].to_vec(), None).await;
    let second = sim_with(second_lines[..20].to_vec(), None).await;
    let feeds = |first_url: &str, second_url: &str| {
        vec![
            FeedSpec::companies_house("companies", fast_settings(first_url, None)),
            FeedSpec::companies_house("companies-again", fast_settings(second_url, None)),
        ]
    };
    let last_of = |lines: &[String]| event_keys(lines).last().unwrap().1;
    let (_dir, db) = temp_db();
    {
        let mut p = start_feeds(feeds(&first.base_url(), &second.base_url()), &db);
        let (a, b) = (last_of(&first_lines[..15]), last_of(&second_lines[..20]));
        let caught_up =
            |m: &feedtop::model::Model| m.feeds[0].last_timepoint == Some(a) && m.feeds[1].last_timepoint == Some(b);
        assert!(drive_until(&mut p, WAIT, caught_up).await);
        p.shutdown().await;
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let cursors = [
        feedtop::store::queries::cursor(&conn, "companies").unwrap(),
        feedtop::store::queries::cursor(&conn, "companies-again").unwrap(),
    ];
    drop(conn);
    // Each cursor lags its own stream's newest event by one (feeds::resume_mark).
    let second_to_last = |lines: &[String]| {
        let keys = event_keys(lines);
        keys[keys.len() - 2].1
    };
    assert_eq!(cursors, [Some(second_to_last(&first_lines[..15])), Some(second_to_last(&second_lines[..20]))]);

    first_lines[15..].iter().for_each(|l| first.append(l.clone()));
    second_lines[20..].iter().for_each(|l| second.append(l.clone()));
    let mut p = start_feeds(feeds(&first.base_url(), &second.base_url()), &db);
    let (a, b) = (last_of(&first_lines), last_of(&second_lines));
    let caught_up =
        |m: &feedtop::model::Model| m.feeds[0].last_timepoint == Some(a) && m.feeds[1].last_timepoint == Some(b);
    assert!(drive_until(&mut p, WAIT, caught_up).await);
    assert_eq!(first.requests().last().unwrap().timepoint, cursors[0], "the first stream resumes from its own point");
    assert_eq!(second.requests().last().unwrap().timepoint, cursors[1], "the second from its own");
    p.shutdown().await;
    let distinct = event_keys(&first_lines).len() + event_keys(&second_lines).len();
    assert_eq!(stored_event_keys(&db).len(), distinct, "nothing lost, nothing doubled on either stream");
}
