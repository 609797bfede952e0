//! Recordings: `feedtop record --to FILE` on loopback simulators, then
//! `feedtop --source FILE --speed max --headless` with the simulators gone.
//! The replay must end where the recording ended: same feeds, same tallies.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The longest a recorded run waits for its data before it is stopped anyway.
const WAIT: Duration = Duration::from_secs(20);

fn feedtop() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feedtop"));
    // Never let the developer's own settings or key leak into a test.
    cmd.env_remove("CH_STREAMING_API_KEY").env_remove("FEEDTOP_DB").env_remove("FEEDTOP_CONFIG");
    cmd.env_remove("FEEDTOP_CH_URL").env("NO_COLOR", "1");
    cmd
}

fn last_line(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| panic!("no line; stderr: {}", stderr(out)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What a final line says about the data: events per feed, the strike-off
/// tally, the symbols quoted and the events stored.
fn tallies(line: &serde_json::Value) -> serde_json::Value {
    let feeds: Vec<_> = line["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| serde_json::json!([f["id"], f["kind"], f["events"], f["duplicates"], f["malformed"]]))
        .collect();
    serde_json::json!({
        "feeds": feeds,
        // Not `in_proposal`: a replay cannot know which companies were in
        // the proposal before the recording started (it shows null).
        "strike_off": [line["strike_off"]["entered"], line["strike_off"]["withdrawn"], line["strike_off"]["struck_off"]],
        "symbols": line["symbols"],
        "stored": line["store"]["events_written"],
    })
}

fn replay(file: &Path, speed: &str) -> Output {
    feedtop().args(["--headless", "--interval", "1h", "--speed", speed, "--source"]).arg(file).output().unwrap()
}

/// A two-second recording of the demo's simulators (Companies House, two
/// WebSocket dialects, SSE, stooq), which stop with the process.
fn record_demo(dir: &Path) -> (std::path::PathBuf, serde_json::Value) {
    let file = dir.join("demo.jsonl.gz");
    let out = feedtop()
        .args(["record", "--to"])
        .arg(&file)
        .args(["--demo", "--headless", "--duration", "2s", "--interval", "500ms", "--db"])
        .arg(dir.join("demo.db"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("messages recorded in"), "{}", stderr(&out));
    let last = last_line(&out);
    assert_eq!(last["final"], true);
    (file, last)
}

#[test]
fn a_replay_at_max_ends_with_the_recording_runs_tallies() {
    let dir = tempfile::tempdir().unwrap();
    let (file, recorded) = record_demo(dir.path());
    assert!(recorded["feeds"][0]["events"].as_u64().unwrap() > 0, "{recorded}");
    assert!(recorded["symbols"].as_u64().unwrap() > 0, "quotes were recorded: {recorded}");
    let out = replay(&file, "max");
    assert!(out.status.success(), "{}", stderr(&out));
    let replayed = last_line(&out);
    assert_eq!(replayed["final"], true);
    assert_eq!(tallies(&replayed), tallies(&recorded));
    assert!(stderr(&out).contains("replayed to its end"), "{}", stderr(&out));
}

/// Stopped by SIGTERM (no --duration), the recording is finished: it
/// replays to its end, with the simulator shut down first, so the replay
/// cannot have read anything from the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_recording_and_the_replay_needs_no_server() {
    let sim = sim_with(fixture_lines(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ch.jsonl.gz");
    let mut child = feedtop()
        .args(["record", "--headless", "--interval", "100ms", "--ch-url", &sim.base_url(), "--to"])
        .arg(&file)
        .arg("--db")
        .arg(dir.path().join("ch.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let pid = child.id().to_string();
    let recorded = tokio::task::spawn_blocking(move || {
        let mut last = serde_json::Value::Null;
        let mut signalled = false;
        let deadline = Instant::now() + WAIT;
        for line in BufReader::new(stdout).lines() {
            last = serde_json::from_str(&line.unwrap()).unwrap();
            if !signalled && (last["feeds"][0]["events"] == 27 || Instant::now() > deadline) {
                Command::new("kill").args(["-TERM", &pid]).status().unwrap();
                signalled = true;
            }
        }
        last
    })
    .await
    .unwrap();
    assert!(child.wait().unwrap().success());
    sim.shutdown().await;
    assert_eq!(recorded["final"], true);
    assert_eq!(recorded["feeds"][0]["events"], 27);

    let out = tokio::task::spawn_blocking(move || replay(&file, "max")).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let replayed = last_line(&out);
    assert_eq!(tallies(&replayed), tallies(&recorded));
    assert_eq!(replayed["feeds"][0]["state"], recorded["feeds"][0]["state"]);
    assert!(stderr(&out).contains("replayed to its end"), "{}", stderr(&out));
}

/// A recording cut short (a crash, a full disk) replays what is intact, then
/// says where it stopped; it never panics.
#[test]
fn a_truncated_recording_replays_its_intact_prefix_and_says_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (file, recorded) = record_demo(dir.path());
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.jsonl.gz");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = replay(&cut, "max");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("stopped at line") && err.contains("the file is cut or corrupt"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let replayed = last_line(&out);
    assert_eq!(replayed["final"], true);
    let events = |v: &serde_json::Value| {
        v["feeds"].as_array().unwrap().iter().map(|f| f["events"].as_u64().unwrap()).sum::<u64>()
    };
    assert!(events(&replayed) > 0, "the intact prefix is replayed: {replayed}");
    assert!(events(&replayed) < events(&recorded), "a third was cut off: {replayed}");
}

/// A recording from a feedtop with another schema version is refused with
/// one line saying so; so is a file that is not a recording at all.
#[test]
fn another_schema_version_and_a_stranger_file_are_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let newer = dir.path().join("newer.jsonl.gz");
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&newer).unwrap(), Default::default());
    gz.write_all(br#"{"schema":99,"header":{"feeds":[],"started":"2026-11-30T17:00:00Z","writer":"feedtop 9"}}"#)
        .unwrap();
    gz.finish().unwrap();
    let out = replay(&newer, "1");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("schema version 99") && err.contains("upgrade"), "{err}");
    assert!(out.stdout.is_empty(), "nothing replayed");

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a recording\n").unwrap();
    let out = replay(&text, "1");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not a feedtop recording") && err.contains("notes.txt"), "{err}");
}

#[test]
fn speed_out_of_range_is_one_line_naming_the_flag() {
    let out = feedtop().args(["--source", "x.gz", "--speed", "5000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--speed") && err.contains("between 0.1 and 1000"), "{err}");
}

/// Company events in what can be read of a recording so far (none while
/// not even its header has reached the file).
fn events_readable(file: &Path) -> usize {
    match feedtop::record::Reader::open(file) {
        Ok((_, reader)) => reader.map_while(Result::ok).filter(|m| m.kind.event().is_some()).count(),
        Err(_) => 0,
    }
}

/// A recorder killed outright (no chance to finish the file) has flushed
/// what it had about once a second: the replay gets all of that, then says
/// where the file stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_cut_by_a_crash_replays_what_was_flushed() {
    let sim = sim_with(fixture_lines(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crash.jsonl.gz");
    let mut child = feedtop()
        .args(["record", "--headless", "--interval", "100ms", "--ch-url", &sim.base_url(), "--to"])
        .arg(&file)
        .arg("--db")
        .arg(dir.path().join("crash.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while events_readable(&file) < 27 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    sim.shutdown().await;
    assert_eq!(events_readable(&file), 27, "flushed while running");

    let out = tokio::task::spawn_blocking(move || replay(&file, "max")).await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(last_line(&out)["feeds"][0]["events"], 27);
    let err = stderr(&out);
    assert!(err.contains("stopped at line") && err.contains("before the damage"), "{err}");
}
