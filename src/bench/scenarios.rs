//! The benchmark scenarios. Each returns a JSON object of figures.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use ratatui::backend::TestBackend;
use ratatui::widgets::Block;
use ratatui::{Frame, Terminal};
use serde_json::{json, Value};

use super::baseline::{self, BareHolder, BareRun};
use super::firehose::{precise_line, Firehose, FirehoseConfig};
use super::quote_firehose::{QuoteFirehose, QuoteFirehoseConfig, QuoteFrames};
use crate::app::{companies_house_feed_name, FeedSpec, Input, Pipeline, PipelineConfig};
use crate::feeds::companies_house::{parse_event, ChSettings};
use crate::feeds::decode;
use crate::feeds::quote::Dialect;
use crate::feeds::websocket::WsSettings;
use crate::feeds::{ConnState, FeedInfo, FeedMsg, FeedMsgKind, Quote, QuoteTime};
use crate::feeds::{FeedId, FeedKind};
use crate::model::{metrics::LatencyWindow, Fact, Model};
use crate::sim::company_gen::CompanyGen;
use crate::store::{self, WriterSettings};
use crate::ui::{self, theme::Theme, view::ViewState};

const SEED: u64 = 42;

fn per_sec(count: f64, elapsed: Duration) -> f64 {
    (count / elapsed.as_secs_f64()).round()
}

/// Scenario 1 — Catch-up: `n` events as fast as possible through the whole pipeline
/// (a child `feedtop --headless`, so its memory is its own), against two
/// baselines from the same run: the same server's bytes read and discarded
/// (the loopback limit) and the same kind of lines parsed by serde_json alone.
pub async fn catch_up(n: usize, fields_only: bool) -> anyhow::Result<Value> {
    // Baseline A: serde_json alone, on 100,000 generated lines.
    let sample: Vec<String> = {
        let mut generator = CompanyGen::new(Some(SEED));
        (0..n.min(100_000)).map(|_| precise_line(&mut generator)).collect()
    };
    let sample_bytes: usize = sample.iter().map(|l| l.len() + 1).sum();
    let started = Instant::now();
    for line in &sample {
        std::hint::black_box(serde_json::from_str::<Value>(line)?);
    }
    let serde_rate = per_sec(sample.len() as f64, started.elapsed());
    let started = Instant::now();
    for line in &sample {
        std::hint::black_box(parse_event(line.as_bytes().to_vec()).ok());
    }
    let decode_rate = per_sec(sample.len() as f64, started.elapsed());

    // Baseline B: read the firehose and discard.
    let hose = Firehose::start(FirehoseConfig { events: n, rate: None, seed: SEED }).await?;
    let started = Instant::now();
    let response =
        reqwest::Client::builder().no_proxy().build()?.get(format!("{}/companies", hose.base_url())).send().await?;
    let mut body = response.bytes_stream();
    let mut lines = 0usize;
    while lines < n {
        let chunk = body.next().await.ok_or_else(|| anyhow::anyhow!("firehose ended early"))??;
        lines += memchr::memchr_iter(b'\n', &chunk).count();
    }
    let read_elapsed = started.elapsed();
    drop(body);
    let loopback_rate = per_sec(n as f64, read_elapsed);
    drop(hose);

    // The full pipeline in a child process.
    let hose = Firehose::start(FirehoseConfig { events: n, rate: None, seed: SEED }).await?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bench.db");
    let storage = if fields_only { "[storage]\nraw_events = \"fields\"\n" } else { "" };
    // Headless lines every 20 ms: the clock stops at the first line that
    // reports the target, so the interval is the figure's resolution.
    let every = Duration::from_millis(20);
    let ChildRun { elapsed, first, last, cpu } = run_child_until(&hose.base_url(), &db, storage, every, move |v| {
        v["store"]["events_written"].as_u64() >= Some(n as u64)
    })
    .await?;
    let bytes = hose.bytes() as f64;
    let db_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(db.with_extension("db-wal")).map(|m| m.len()).unwrap_or(0);
    let rate = per_sec(n as f64, elapsed);
    let rss = |line: &Value| line["process"]["rss_mb"].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "scenario": "catch-up",
        "events": n,
        "raw_events": if fields_only { "fields" } else { "full" },
        "events_per_s": rate,
        "mb_per_s": (bytes / 1_048_576.0 / elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "avg_event_bytes": (bytes / n as f64).round(),
        "elapsed_s": elapsed.as_secs_f64(),
        "cpu_s": cpu,
        "rss_mb_after": last["process"]["rss_mb"],
        // Memory's baseline: the child's first line, one interval after it
        // started (the events it had received by then beside it).
        "rss_mb_at_start": first["process"]["rss_mb"],
        "events_received_at_start": first["feeds"][0]["events"],
        "rss_ratio_after_to_start": ratio(rss(&last), rss(&first)),
        "db_bytes_per_event": (db_bytes as f64 / n as f64).round(),
        "baseline_loopback_events_per_s": loopback_rate,
        "baseline_serde_value_events_per_s": serde_rate,
        "feedtop_decode_events_per_s": decode_rate,
        "ratio_to_loopback": (rate / loopback_rate * 1000.0).round() / 1000.0,
        "ratio_to_serde": (rate / serde_rate * 1000.0).round() / 1000.0,
        "sample_mb": (sample_bytes as f64 / 1_048_576.0).round(),
    }))
}

/// Soak: `rate` events/s for `duration` through a child `feedtop --headless`
/// (issue "prove it survives"): memory at the start and end of the run, its
/// peak, and that every event was stored. Not part of `cargo test`.
pub async fn soak(rate: f64, duration: Duration) -> anyhow::Result<Value> {
    let events = (rate * duration.as_secs_f64()) as u64;
    let hose = Firehose::start(FirehoseConfig { events: events as usize, rate: Some(rate), seed: SEED }).await?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("soak.db");
    // (seconds into the run, RSS in MB) from every headless line.
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(f64, f64)>::new()));
    let record = samples.clone();
    // The WAL's largest size while the child runs (at a clean stop SQLite
    // checkpoints it and deletes it, so its size afterwards says nothing).
    let wal = db.with_extension("db-wal");
    let wal_peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let record_wal = wal_peak.clone();
    let started = Instant::now();
    let every = Duration::from_millis(100);
    let ChildRun { elapsed, last, cpu, .. } = run_child_until(&hose.base_url(), &db, "", every, move |v| {
        if let Some(rss) = v["process"]["rss_mb"].as_f64() {
            record.lock().expect("not poisoned").push((started.elapsed().as_secs_f64(), rss));
        }
        let wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
        record_wal.fetch_max(wal_bytes, std::sync::atomic::Ordering::Relaxed);
        v["store"]["events_written"].as_u64() >= Some(events)
    })
    .await?;
    let samples = samples.lock().expect("not poisoned").clone();
    // "Start" is after a 10 % warm-up: the first seconds allocate the queues.
    let warm = samples.iter().find(|(t, _)| *t >= elapsed.as_secs_f64() * 0.1).map(|s| s.1);
    let peak = samples.iter().map(|s| s.1).fold(f64::NAN, f64::max);
    let stored: i64 = rusqlite::Connection::open(&db)?.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    let mb = |bytes: u64| (bytes as f64 / 1e5).round() / 10.0;
    Ok(json!({
        "scenario": "soak",
        // Checkpoints keep the WAL from growing with the run.
        "wal_mb_peak": mb(wal_peak.load(std::sync::atomic::Ordering::Relaxed)),
        "db_mb_end": mb(std::fs::metadata(&db).map_or(0, |m| m.len())),
        "rate": rate,
        "duration_s": elapsed.as_secs_f64(),
        "events_served": events,
        "events_stored": stored,
        "rss_mb_after_warmup": warm,
        "rss_mb_end": last["process"]["rss_mb"],
        "rss_mb_peak": peak,
        "cpu_s": cpu,
        "cpu_percent_of_one_core": (cpu / elapsed.as_secs_f64() * 1000.0).round() / 10.0,
    }))
}

/// Flood: `n` distinct companies entering the proposal to strike off, as
/// fast as the child `feedtop --headless` takes them (issue 10: the set of
/// companies in the proposal used to live in memory, ~100 B each). RSS at
/// every tenth of the events stored; the baseline is the same run's RSS at
/// the first tenth (queues and caches warm, 10 % of the companies in): a
/// tracker that holds every company grows about linearly after it.
pub async fn flood(n: usize) -> anyhow::Result<Value> {
    let hose = Firehose::flood(n).await?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("flood.db");
    // (seconds, events stored, RSS MB) from every headless line.
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(f64, u64, f64)>::new()));
    let record = samples.clone();
    let started = Instant::now();
    let every = Duration::from_millis(100);
    let ChildRun { elapsed, first, last, cpu } = run_child_until(&hose.base_url(), &db, "", every, move |v| {
        let written = v["store"]["events_written"].as_u64().unwrap_or(0);
        if let Some(rss) = v["process"]["rss_mb"].as_f64() {
            record.lock().expect("not poisoned").push((started.elapsed().as_secs_f64(), written, rss));
        }
        written >= n as u64
    })
    .await?;
    let samples = samples.lock().expect("not poisoned").clone();
    // The first sample at or past each tenth of the events.
    let tenths: Vec<Value> = (1..=10)
        .filter_map(|k| {
            let target = (n as u64 * k).div_ceil(10);
            samples.iter().find(|s| s.1 >= target).map(|&(t, written, rss)| {
                json!({ "percent": k * 10, "events_stored": written, "s": round3(t), "rss_mb": rss })
            })
        })
        .collect();
    let rss_at = |percent: u64| tenths.iter().find(|t| t["percent"] == percent).and_then(|t| t["rss_mb"].as_f64());
    let peak = samples.iter().map(|s| s.2).fold(f64::NAN, f64::max);
    let in_db: i64 = rusqlite::Connection::open(&db)?.query_row(
        "SELECT count(*) FROM companies WHERE company_status_detail = ?1",
        [crate::model::strike_off::PROPOSAL],
        |r| r.get(0),
    )?;
    Ok(json!({
        "scenario": "flood",
        "events": n,
        "events_per_s": per_sec(n as f64, elapsed),
        "elapsed_s": elapsed.as_secs_f64(),
        "cpu_s": cpu,
        "rss_mb_at_start": first["process"]["rss_mb"],
        "rss_mb_by_tenth": tenths,
        "rss_mb_peak": peak,
        "rss_mb_end": last["process"]["rss_mb"],
        "baseline_rss_mb_at_10_percent": rss_at(10),
        "rss_mb_growth_after_10_percent": rss_at(100).zip(rss_at(10)).map(|(end, base)| round3(end - base)),
        "entered": last["strike_off"]["entered"],
        "in_proposal": last["strike_off"]["in_proposal"],
        "in_proposal_in_db": in_db,
    }))
}

/// How a child `feedtop --headless` went, up to the line that ended it.
struct ChildRun {
    /// From starting the child to that line.
    elapsed: Duration,
    /// Its first report line (one interval after it started).
    first: Value,
    /// The line that ended the run.
    last: Value,
    /// The child's CPU seconds at that line.
    cpu: f64,
}

/// Runs `feedtop --headless` against `url` until a report line satisfies `done`.
async fn run_child_until(
    url: &str,
    db: &std::path::Path,
    config: &str,
    every: Duration,
    done: impl Fn(&Value) -> bool + Send + 'static,
) -> anyhow::Result<ChildRun> {
    let mut child = feedtop_child(db, config)?
        .arg("--interval")
        .arg(format!("{}ms", every.as_millis()))
        .args(["--ch-url", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let pid = child.id();
    let started = Instant::now();
    let found = tokio::task::spawn_blocking(move || {
        let mut first = None;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            let first = first.get_or_insert_with(|| v.clone());
            if done(&v) {
                let cpu = child_cpu_seconds(pid);
                return Some(ChildRun { elapsed: started.elapsed(), first: first.clone(), last: v, cpu });
            }
        }
        None
    })
    .await?;
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    found.ok_or_else(|| anyhow::anyhow!("the child feedtop stopped before the scenario finished"))
}

/// `feedtop --headless --db DB` isolated from the user's key and config
/// (a config file of `config_text` beside the database).
pub(super) fn feedtop_child(db: &std::path::Path, config_text: &str) -> anyhow::Result<Command> {
    let mut cmd = feedtop_child_without_db(&db.with_extension("toml"), config_text)?;
    cmd.arg("--db").arg(db);
    Ok(cmd)
}

/// [`feedtop_child`] with no `--db`: a viewer of a relay's stream then
/// keeps no database.
pub(super) fn feedtop_child_without_db(config: &std::path::Path, config_text: &str) -> anyhow::Result<Command> {
    std::fs::write(config, config_text)?;
    // Another build as the child (`FEEDTOP_BENCH_CHILD=/path/to/feedtop`),
    // to compare two binaries under the same harness.
    let exe = match std::env::var_os("FEEDTOP_BENCH_CHILD") {
        Some(path) => std::path::PathBuf::from(path),
        None => std::env::current_exe()?,
    };
    let mut cmd = Command::new(exe);
    cmd.arg("--headless").arg("--config").arg(config);
    cmd.env_remove("CH_STREAMING_API_KEY").env_remove("FEEDTOP_DB").env_remove("FEEDTOP_CH_URL");
    Ok(cmd)
}

/// User + system CPU of a process from /proc (Linux), in seconds.
pub(super) fn child_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return f64::NAN };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return f64::NAN };
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command name: state is field 3, utime 14, stime 15 (1-based).
    let ticks: f64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(f64::NAN)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    ticks / 100.0
}

pub(super) fn process_cpu_seconds() -> f64 {
    child_cpu_seconds(std::process::id())
}

fn ch_settings(url: &str) -> ChSettings {
    ChSettings::new(url, "/companies", None)
}

/// Scenario 2 — Steady state: `rate` events/s for `duration`, the model updating and
/// the full screen drawn into a TestBackend at 10 fps. Latency is from the
/// server writing an event (its microsecond `published_at`) to the core loop
/// applying it; CPU is the whole process, the simulated server included.
/// Baseline from the same run and the same server, first: a bare reqwest
/// client that splits the same paced stream into lines and reads each
/// line's `published_at`, its CPU measured the same way.
pub async fn steady(rate: f64, duration: Duration) -> anyhow::Result<Value> {
    let events = (rate * duration.as_secs_f64()) as usize;
    let hose = Firehose::start(FirehoseConfig { events, rate: Some(rate), seed: SEED }).await?;
    let slack = Duration::from_secs(10);
    let load_start = load_average();
    let url = format!("{}/companies", hose.base_url());
    let bare = BareRun::measure(baseline::line_client(&url, events as u64, deadline_after(duration + slack))).await?;

    let dir = tempfile::tempdir()?;
    let mut p = Pipeline::start(PipelineConfig {
        feeds: vec![FeedSpec::companies_house(companies_house_feed_name("/companies"), ch_settings(&hose.base_url()))],
        db_path: dir.path().join("bench.db"),
        latency_window: Duration::from_secs(3600),
        demo: false,
        writer: WriterSettings::default(),
    })?;
    let mut to_model = LatencyWindow::new(Duration::from_secs(3600));
    // The same latencies to the microsecond, to compare with the bare client's.
    let mut to_model_us = micros_histogram();
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let frames = drive_with_ui(&mut p, deadline_after(duration + slack), events as u64, |input| {
        if let Some(ev) = match input {
            Input::Feed(msg) => msg.kind.event(),
            _ => None,
        } {
            if let Some(published) = ev.published_at {
                let now = Utc::now();
                to_model.record(now, (now - published).num_microseconds().unwrap_or(i64::MAX) / 1000);
                record_latency(&mut to_model_us, now, published);
            }
        }
    })
    .await?;
    let elapsed = started.elapsed();
    let cpu = process_cpu_seconds() - cpu_before;
    let received = p.model().feeds[0].counts.events;
    let feed_latency = p.model().feeds[0].latency.summary(Utc::now());
    let apply_latency = to_model.summary(Utc::now());
    let rss = crate::app::resident_memory().map(|b| b / 1_048_576);
    p.shutdown().await;
    let cpu_per_event = cpu * 1e6 / received.max(1) as f64;
    let mut out = json!({
        "scenario": "steady",
        "rate": rate,
        "duration_s": elapsed.as_secs_f64(),
        "events": received,
        "frames_drawn": frames,
        "latency_write_to_model_ms": apply_latency,
        "latency_write_to_model_precise_ms": latency_ms(&to_model_us),
        "latency_write_to_feed_ms": feed_latency,
        "cpu_s": cpu,
        "cpu_us_per_event": cpu_per_event.round(),
        "rss_mb_process_incl_sim": rss,
        "baseline_bare_client": bare.json("event"),
        "cpu_us_per_event_over_bare": (cpu_per_event - bare.cpu_us_per_item).round(),
        "loadavg_1m": { "start": load_start, "end": load_average() },
    });
    bare.add_ratios(&mut out, &to_model_us, cpu_per_event);
    Ok(out)
}

/// Symbols in the quotes scenario: 50 × 100 updates/s at the default rate.
pub const QUOTE_SYMBOLS: usize = 50;

/// Scenario 3 — Quotes: `rate` quote frames/s (one quote each) over
/// [`QUOTE_SYMBOLS`] symbols for `duration`, from a paced loopback WebSocket
/// server through feedtop's real WebSocket feed, wig80 decoder, model and
/// store writer (a SQLite temp file), the full screen drawn at 10 fps. Two
/// baselines from the same run and the same server: a bare tokio-tungstenite
/// client that reads the frames and discards them, and the decoder alone on
/// the same frames. Latency is from the server's microsecond stamp in each
/// frame to the core loop applying the quote (or the bare client reading
/// it); CPU is the whole process, the server included, in both runs.
pub async fn quotes(rate: f64, duration: Duration) -> anyhow::Result<Value> {
    let frames = (rate * duration.as_secs_f64()) as u64;
    let config = QuoteFirehoseConfig { symbols: QUOTE_SYMBOLS, rate, frames, seed: SEED };
    let hose = QuoteFirehose::start(config).await?;
    let slack = Duration::from_secs(10);
    let load_start = load_average();

    // Baseline A: a bare client reads the same server's frames and discards them.
    let bare =
        BareRun::measure(baseline::websocket_client(&hose.url(), frames, deadline_after(duration + slack))).await?;
    let bare_sent = hose.wait_reports(1, slack).await.first().copied();

    // feedtop: feed task, decoder, model, store writer, and the UI.
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("quotes.db");
    let rss_start = crate::app::resident_memory();
    let mut p = Pipeline::start(PipelineConfig {
        feeds: vec![FeedSpec::websocket("quotes", WsSettings::new(hose.url(), Dialect::Wig80))],
        db_path: db.clone(),
        latency_window: Duration::from_secs(3600),
        demo: false,
        writer: WriterSettings::default(),
    })?;
    let mut to_model = micros_histogram();
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let drawn = drive_with_ui(&mut p, deadline_after(duration + slack), frames, |input| {
        if let Input::Feed(FeedMsg { kind: FeedMsgKind::Quotes(quotes), .. }) = input {
            let now = Utc::now();
            for sent in quotes.iter().filter_map(|q| q.time.and_then(QuoteTime::as_utc)) {
                record_latency(&mut to_model, now, sent);
            }
        }
    })
    .await?;
    let elapsed = started.elapsed();
    let cpu_us = (process_cpu_seconds() - cpu_before) * 1e6;
    let rss_end = crate::app::resident_memory();
    let feed = &p.model().feeds[0];
    let (applied, malformed) = (feed.counts.events, feed.counts.malformed);
    let feed_latency = feed.latency.summary(Utc::now());
    let tickers = p.model().quotes.len();
    let (_, summary) = p.shutdown().await;
    let sent = hose.wait_reports(2, slack).await.get(1).copied();
    let stored = rusqlite::Connection::open(&db)?;
    let count = |table: &str| stored.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0));
    let (history_rows, latest_rows) = (count("quote_history")?, count("quotes_latest")?);

    // Baseline B (last, so that its frames are not in the RSS figures): the
    // decoder alone, on the frames the server sends.
    let sample: Vec<String> = {
        let mut next = QuoteFrames::new(QUOTE_SYMBOLS, SEED);
        (0..frames.clamp(1, 50_000)).map(|_| next.next_frame()).collect()
    };
    let started = Instant::now();
    for frame in &sample {
        std::hint::black_box(decode::wig80::decode(frame).ok());
    }
    let decode_us = started.elapsed().as_secs_f64() * 1e6 / sample.len() as f64;

    let cpu_per_update = cpu_us / applied.max(1) as f64;
    let mb = |bytes: Option<u64>| bytes.map(|b| (b as f64 / 1_048_576.0 * 10.0).round() / 10.0);
    let mut baseline_bare_client = bare.json("frame");
    baseline_bare_client["send_rate_achieved_per_s"] = json!(bare_sent.map(|s| s.frames_per_s().round()));
    let mut out = json!({
        "scenario": "quotes",
        "symbols": QUOTE_SYMBOLS,
        "rate": rate,
        "updates_per_symbol_per_s": rate / QUOTE_SYMBOLS as f64,
        "duration_s": elapsed.as_secs_f64(),
        "frames_sent": sent.map(|s| s.frames),
        "send_rate_achieved_per_s": sent.map(|s| s.frames_per_s().round()),
        "send_max_lag_ms": sent.map(|s| round3(s.max_lag.as_secs_f64() * 1000.0)),
        "frames_applied": applied,
        "malformed": malformed,
        "tickers": tickers,
        "frames_drawn": drawn,
        "latency_write_to_model_ms": latency_ms(&to_model),
        "latency_write_to_feed_ms": feed_latency,
        "cpu_s": round3(cpu_us / 1e6),
        "cpu_us_per_update": cpu_per_update.round(),
        "rss_mb_start": mb(rss_start),
        "rss_mb_end": mb(rss_end),
        "quote_history_rows": history_rows,
        "quotes_latest_rows": latest_rows,
        "unwritten": summary.writer.unwritten,
        "baseline_bare_client": baseline_bare_client,
        "baseline_decode_us_per_frame": round3(decode_us),
        "cpu_us_per_update_over_bare": (cpu_per_update - bare.cpu_us_per_item).round(),
        "loadavg_1m": { "start": load_start, "end": load_average() },
    });
    bare.add_ratios(&mut out, &to_model, cpu_per_update);
    Ok(out)
}

fn deadline_after(d: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + d
}

/// Latencies in microseconds, up to ten minutes.
pub(super) fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// Records `now - sent`; a stamp ahead of our clock counts as zero.
pub(super) fn record_latency(h: &mut Histogram<u64>, now: DateTime<Utc>, sent: DateTime<Utc>) {
    h.saturating_record((now - sent).num_microseconds().unwrap_or(i64::MAX).max(0) as u64);
}

/// p50 / p99 / p99.9 / max in milliseconds (to the microsecond) and the sample count.
pub(super) fn latency_ms(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return Value::Null;
    }
    let ms = |us: u64| round3(us as f64 / 1000.0);
    json!({
        "p50": ms(h.value_at_quantile(0.50)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
        "samples": h.len(),
    })
}

pub(super) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `a / b` to two decimals (null in JSON when `b` is zero).
pub(super) fn ratio(a: f64, b: f64) -> f64 {
    (a / b * 100.0).round() / 100.0
}

/// The 1-minute load average, to judge how noisy a run was.
pub(super) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// Runs the core loop the way the TUI does until the first feed has applied
/// `events` events (or quotes) or `deadline` passes: input applied as it
/// comes, the full screen drawn into a 200×50 `TestBackend` 10 times a
/// second. `observe` sees each input that wakes the loop before it is
/// applied (the messages drained with it are not shown to it). Returns the
/// frames drawn.
async fn drive_with_ui(
    p: &mut Pipeline,
    deadline: tokio::time::Instant,
    events: u64,
    mut observe: impl FnMut(&Input),
) -> anyhow::Result<u64> {
    let mut terminal = Terminal::new(TestBackend::new(200, 50))?;
    let theme = Theme::new(true);
    let view = ViewState::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut frames = 0u64;
    while p.model().feeds[0].counts.events < events {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tick.tick() => {
                p.tick(Utc::now())?;
                terminal.draw(|f| ui::draw(f, p.model(), &view, &theme))?;
                frames += 1;
            }
            input = p.next_input() => {
                observe(&input);
                p.handle(input);
            }
        }
    }
    Ok(frames)
}

/// A model with every pane full: four feeds, 2,000 strike-off changes,
/// 50 tickers with full sparklines, an hour of rates and latencies.
pub fn full_model() -> Model {
    let feeds = vec![
        FeedInfo { name: "ch/companies".into(), kind: FeedKind::CompaniesHouse },
        FeedInfo { name: "wig80".into(), kind: FeedKind::WebSocket(Dialect::Wig80) },
        FeedInfo { name: "carbon".into(), kind: FeedKind::WebSocket(Dialect::Carbon) },
        FeedInfo { name: "carbon-sse".into(), kind: FeedKind::Sse },
    ];
    let start = Utc::now() - chrono::TimeDelta::hours(1);
    let mut model = Model::new(feeds, Duration::from_secs(300), start);
    let mut facts = Vec::new();
    let mut generator = CompanyGen::new(Some(SEED));
    let mut i = 0i64;
    while model.strike_offs.len() < 2000 && i < 200_000 {
        let at = start + chrono::TimeDelta::milliseconds(i * 50);
        if let Ok(ev) = parse_event(generator.next_event(at).into_bytes()) {
            model
                .apply(FeedMsg { feed: "ch/companies".into(), at, kind: FeedMsgKind::Event(Box::new(ev)) }, &mut facts);
        }
        facts.clear();
        i += 1;
    }
    for round in 0..60 {
        let at = start + chrono::TimeDelta::seconds(round * 60);
        for (n, feed) in ["wig80", "carbon", "carbon-sse"].into_iter().enumerate() {
            let feed = FeedId::from(feed);
            let n = n + 1;
            let quotes = (0..17)
                .map(|s| {
                    let mut q = Quote::new(format!("SYM{n}{s:02}"), 100.0 + (round as f64 * 0.37 + s as f64).sin());
                    q.change = Some(0.5 - (s % 3) as f64 * 0.5);
                    q.change_percent = q.change;
                    q.volume = Some(1_234_567.0);
                    q
                })
                .collect();
            model.apply(FeedMsg { feed: feed.clone(), at, kind: FeedMsgKind::Quotes(quotes) }, &mut facts);
            model.apply(FeedMsg { feed, at, kind: FeedMsgKind::State(ConnState::Live) }, &mut facts);
        }
    }
    model.tick(start + chrono::TimeDelta::hours(1));
    model
}

/// Scenario 4 — Render: one full frame at 80×24 and 200×50 with every pane
/// full, against ratatui's own floor from the same run: the same terminal
/// drawing a frame of the same size with nothing in it (one empty `Block`).
pub fn render() -> anyhow::Result<Value> {
    render_frames(RENDER_FRAMES)
}

/// Frames drawn per size and kind in the render scenario.
const RENDER_FRAMES: usize = 500;

/// The render scenario with `frames` frames of each size and kind.
fn render_frames(frames: usize) -> anyhow::Result<Value> {
    let model = full_model();
    let theme = Theme::new(true);
    let view = ViewState::new();
    let load_start = load_average();
    let mut out =
        json!({ "scenario": "render", "strike_offs": model.strike_offs.len(), "tickers": model.quotes.len() });
    for (w, h) in [(80u16, 24u16), (200, 50)] {
        let full = frame_times_ms(w, h, frames, |f| ui::draw(f, &model, &view, &theme))?;
        let empty = frame_times_ms(w, h, frames, |f| f.render_widget(Block::new(), f.area()))?;
        let p50 = |times: &[f64]| times[times.len() / 2];
        let quantiles =
            |times: &[f64]| json!({ "p50": round3(p50(times)), "p99": round3(times[times.len() * 99 / 100]) });
        out[format!("frame_ms_{w}x{h}")] = quantiles(&full);
        out[format!("baseline_empty_frame_ms_{w}x{h}")] = quantiles(&empty);
        out[format!("ratio_p50_to_empty_{w}x{h}")] = json!(ratio(p50(&full), p50(&empty)));
    }
    out["loadavg_1m"] = json!({ "start": load_start, "end": load_average() });
    Ok(out)
}

/// `frames` frames of `w`×`h` drawn by `draw` into a `TestBackend`, each
/// one's time in milliseconds, sorted.
fn frame_times_ms(w: u16, h: u16, frames: usize, mut draw: impl FnMut(&mut Frame)) -> anyhow::Result<Vec<f64>> {
    let mut terminal = Terminal::new(TestBackend::new(w, h))?;
    let mut times = Vec::new();
    for _ in 0..frames {
        let started = Instant::now();
        terminal.draw(&mut draw)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times)
}

/// Scenario 6 — Idle: CPU of a headless feedtop connected to a live stream that sends
/// only heartbeats, over `duration` (after a 2 s warm-up). Baseline, side by
/// side over the same window: a bare reqwest client on a thread of its own
/// holding the same kind of connection to the same server. Both are also
/// read from /proc schedstat to the nanosecond: at 10 ms a tick, a minute
/// of idle feedtop is one or two ticks, and the bare client's is none.
pub async fn idle(duration: Duration) -> anyhow::Result<Value> {
    let hose = Firehose::start(FirehoseConfig { events: 0, rate: None, seed: SEED }).await?;
    let load_start = load_average();
    let bare = BareHolder::connect(format!("{}/companies", hose.base_url())).await?;
    let dir = tempfile::tempdir()?;
    let mut child = feedtop_child(&dir.path().join("idle.db"), "")?
        .args(["--interval", "10s", "--ch-url", &hose.base_url()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (before, threads_before, bare_before) = (child_cpu_seconds(pid), baseline::threads_cpu_ns(pid), bare.cpu_ns());
    tokio::time::sleep(duration).await;
    let cpu = child_cpu_seconds(pid) - before;
    let threads_ns = baseline::cpu_ns_between(&threads_before, &baseline::threads_cpu_ns(pid)) as f64;
    let bare_ns = bare.cpu_ns().zip(bare_before).map(|(after, before)| after.saturating_sub(before) as f64);
    let rss_kb = super::relay::rss_kb(pid);
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    let bare_bytes = bare.finish().await?;
    let window_ns = duration.as_secs_f64() * 1e9;
    // Percent of one core, to the thousandth.
    let percent = |ns: f64| (ns / window_ns * 100.0 * 1000.0).round() / 1000.0;
    let mut out = json!({
        "scenario": "idle",
        "mode": "headless",
        "duration_s": duration.as_secs_f64(),
        "cpu_s": cpu,
        "cpu_percent_of_one_core": percent(cpu * 1e9),
        "cpu_ms_schedstat": round3(threads_ns / 1e6),
        "cpu_percent_of_one_core_schedstat": percent(threads_ns),
        "baseline_bare_client": {
            "heartbeat_bytes": bare_bytes,
            "cpu_ms_schedstat": bare_ns.map(|ns| round3(ns / 1e6)),
            "cpu_percent_of_one_core": bare_ns.map(percent),
        },
        "ratio_cpu_to_bare": bare_ns.map(|ns| ratio(threads_ns, ns)),
        // At the end of the window (the relay scenario's resting viewer is
        // compared with it).
        "rss_mb": rss_kb.map(|kb| (kb as f64 / 1024.0 * 10.0).round() / 10.0),
        "cpu_percent_over_bare": bare_ns.map(|ns| percent(threads_ns - ns)),
        "loadavg_1m": { "start": load_start, "end": load_average() },
    });
    if bare_ns.is_some_and(|ns| ns < 1e6) {
        out["ratio_note"] = json!(concat!(
            "the bare client used under 1 ms of CPU in the window: a wake-up more or less ",
            "moves the ratio a lot; cpu_percent_over_bare is the stable figure"
        ));
    }
    Ok(out)
}

/// Scenario 7 — Start-up: time to the first frame with a database of `n`
/// events, against the same start on an empty database in the same run
/// (after it, so that anything done once per process is charged to the
/// full database, not to the baseline).
pub async fn startup(n: usize) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("startup.db");
    let load_start = load_average();
    let fill_started = Instant::now();
    fill_database(&db, n)?;
    let fill = fill_started.elapsed();
    let (first_frame, shown) = start_to_first_frame(&db).await?;
    let db_bytes = std::fs::metadata(&db)?.len();
    let empty = dir.path().join("empty.db");
    fill_database(&empty, 0)?;
    let (empty_first_frame, _) = start_to_first_frame(&empty).await?;
    let ms = |d: Duration| (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    Ok(json!({
        "scenario": "startup",
        "events_in_db": n,
        "db_mb": db_bytes / 1_048_576,
        "fill_s": fill.as_secs_f64(),
        "first_frame_ms": ms(first_frame),
        "strike_offs_loaded": shown,
        "baseline_empty_db_first_frame_ms": ms(empty_first_frame),
        "ratio_to_empty_db": ratio(first_frame.as_secs_f64(), empty_first_frame.as_secs_f64()),
        "loadavg_1m": { "start": load_start, "end": load_average() },
    }))
}

/// A database at `db` with `n` events written through the real writer.
fn fill_database(db: &std::path::Path, n: usize) -> anyhow::Result<()> {
    let mut conn = store::open(db)?;
    let mut generator = CompanyGen::new(Some(SEED));
    let mut model = Model::new(
        vec![FeedInfo::new(companies_house_feed_name("/companies"), FeedKind::CompaniesHouse)],
        Duration::from_secs(300),
        Utc::now(),
    );
    let mut facts: Vec<Fact> = Vec::new();
    for i in 0..n {
        let ev = parse_event(generator.next_event(Utc::now()).into_bytes())?;
        let feed = model.feeds[0].info.name.clone();
        model.apply(FeedMsg { feed, at: Utc::now(), kind: FeedMsgKind::Event(Box::new(ev)) }, &mut facts);
        if facts.len() >= 10_000 || i + 1 == n {
            store::writer::write_batch(&mut conn, &facts, store::writer::RawEvents::Full)?;
            facts.clear();
        }
    }
    Ok(())
}

/// `Pipeline::start` on `db` (history, cursors, quotes) plus the first
/// 200×50 frame: how long it took and the strike-offs it showed.
async fn start_to_first_frame(db: &std::path::Path) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let p = Pipeline::start(PipelineConfig {
        feeds: vec![FeedSpec::companies_house(
            companies_house_feed_name("/companies"),
            ch_settings("http://127.0.0.1:9"),
        )],
        db_path: db.to_path_buf(),
        latency_window: Duration::from_secs(300),
        demo: false,
        writer: WriterSettings::default(),
    })?;
    let mut terminal = Terminal::new(TestBackend::new(200, 50))?;
    terminal.draw(|f| ui::draw(f, p.model(), &ViewState::new(), &Theme::new(true)))?;
    let elapsed = started.elapsed();
    let shown = p.model().strike_offs.len();
    p.shutdown().await;
    Ok((elapsed, shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not a benchmark: checks the harness itself runs end to end on a tiny load.
    #[tokio::test]
    async fn harness_smoke() {
        let r = render_frames(5).unwrap();
        assert!(r["frame_ms_80x24"]["p50"].as_f64().unwrap() > 0.0);
        assert!(r["strike_offs"].as_u64().unwrap() >= 2000);
        for size in ["80x24", "200x50"] {
            assert!(r[format!("baseline_empty_frame_ms_{size}")]["p50"].is_number(), "{r}");
            assert!(r[format!("ratio_p50_to_empty_{size}")].as_f64().unwrap() > 0.0, "{r}");
        }
        let s = startup(2_000).await.unwrap();
        assert!(s["strike_offs_loaded"].as_u64().unwrap() > 0, "{s}");
        assert!(s["baseline_empty_db_first_frame_ms"].is_number(), "{s}");
        assert!(s["ratio_to_empty_db"].as_f64().unwrap() > 0.0, "{s}");
    }

    /// Not a benchmark: a tiny steady run goes through the pipeline and the bare-client baseline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn steady_smoke() {
        let st = steady(500.0, Duration::from_millis(600)).await.unwrap();
        assert_eq!(st["events"], 300, "{st}");
        assert!(!st["latency_write_to_model_ms"].is_null(), "{st}");
        assert!(st["latency_write_to_model_precise_ms"]["samples"].as_u64().unwrap() > 0, "{st}");
        let bare = &st["baseline_bare_client"];
        assert_eq!(bare["events"], 300, "{st}");
        assert_eq!(bare["latency_ms"]["samples"], 300, "the bare client read every stamp: {st}");
        assert!(bare["cpu_us_per_event"].is_number(), "{st}");
        assert!(st["ratio_latency_p99_to_bare"].as_f64().unwrap() > 0.0, "{st}");
        assert!(st.get("ratio_cpu_to_bare").is_some(), "{st}");
    }

    /// Not a benchmark: a tiny quotes run goes through every stage and both baselines.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quotes_smoke() {
        let q = quotes(500.0, Duration::from_millis(600)).await.unwrap();
        assert_eq!(q["frames_sent"], 300, "{q}");
        assert_eq!(q["frames_applied"], 300, "{q}");
        assert_eq!(q["malformed"], 0, "{q}");
        assert_eq!(q["tickers"].as_u64(), Some(QUOTE_SYMBOLS as u64), "{q}");
        assert_eq!(q["quote_history_rows"], 300, "stored every quote: {q}");
        assert_eq!(q["quotes_latest_rows"].as_u64(), Some(QUOTE_SYMBOLS as u64), "{q}");
        assert_eq!(q["baseline_bare_client"]["frames"], 300, "{q}");
        assert!(q["latency_write_to_model_ms"]["samples"].as_u64().unwrap() > 0, "{q}");
        assert!(!q["baseline_bare_client"]["latency_ms"].is_null(), "{q}");
        assert!(q["baseline_decode_us_per_frame"].as_f64().unwrap() > 0.0, "{q}");
    }
}
