//! `feedtop bench --scenario relay` (issue 14): the relay over NATS
//! JetStream against real `nats-server` processes on loopback, in three
//! parts, each beside a baseline from the same run:
//!
//! - catch-up publish: the relay's publisher draining an outbox of `n`
//!   messages (Companies House events and quotes, as `subjects::rows` makes
//!   them) until every one is acked, against a bare async-nats publisher of
//!   the identical (subject, id, payload) list on a second fresh server;
//! - end to end: a quote firehose → a relay pipeline (as `feedtop relay`:
//!   each message published as it is made, its row committed beside it)
//!   → NATS → 10 viewer pipelines (keeping no database, as a viewer without
//!   `--db`), latency from the
//!   firehose's microsecond stamp in each quote to a viewer applying it,
//!   against the same firehose straight into a pipeline (the `quotes`
//!   scenario) in the same run;
//! - a viewer at rest: the real binary `feedtop --source nats://… --headless`
//!   over a stream with history, its RSS and CPU, beside the `idle`
//!   scenario's live run over the same window.

use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use chrono::Utc;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use super::nats_baseline::{self, OutMessage};
use super::quote_firehose::{QuoteFirehose, QuoteFirehoseConfig, QuoteFrames};
use super::scenarios::{
    child_cpu_seconds, feedtop_child, feedtop_child_without_db, idle, latency_ms, load_average, micros_histogram,
    quotes, ratio, record_latency, round3, QUOTE_SYMBOLS,
};
use crate::app::{companies_house_feed_name, FeedSpec, Input, Pipeline, PipelineConfig, ViewerStore};
use crate::feeds::companies_house::parse_event;
use crate::feeds::quote::Dialect;
use crate::feeds::websocket::WsSettings;
use crate::feeds::{FeedInfo, FeedKind, FeedMsg, FeedMsgKind, QuoteTime, ResumePoint};
use crate::relay::{subjects, NatsSettings, Publisher, Viewer};
use crate::sim::company_gen::CompanyGen;
use crate::sim::nats::NatsServer;
use crate::store::{self, WriterSettings};

const SEED: u64 = 42;
/// The relay's commit interval in the end-to-end part: the store's default,
/// as `feedtop relay` commits, or `FEEDTOP_BENCH_COMMIT_US` microseconds
/// (0 to 1,000,000) to see how the latency follows it.
fn commit_every() -> Duration {
    std::env::var("FEEDTOP_BENCH_COMMIT_US")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|us| *us <= 1_000_000)
        .map_or(WriterSettings::default().commit_every, Duration::from_micros)
}

/// How the end-to-end part's viewers store: nothing, as `feedtop --source
/// nats://…` without `--db`, or `FEEDTOP_BENCH_VIEWER_DB=1` for a database
/// each, as with `--db`.
fn viewer_store() -> ViewerStore {
    match std::env::var("FEEDTOP_BENCH_VIEWER_DB").as_deref() {
        Ok("1") => ViewerStore::Database,
        _ => ViewerStore::Nothing,
    }
}

/// Viewers in the end-to-end part, as the target says.
pub const VIEWERS: usize = 10;
/// Messages in the stream the resting viewer starts on.
pub const IDLE_HISTORY: usize = 5_000;
/// The feed names of the outbox's messages.
const QUOTE_FEED: &str = "quotes";

/// What the relay part runs: sizes and the end-to-end rate.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Messages in the catch-up outbox.
    pub messages: usize,
    /// Quotes per second from the firehose in the end-to-end part.
    pub rate: f64,
    /// How long the end-to-end part sends, after its warm-up.
    pub end_to_end: Duration,
    pub viewers: usize,
    /// How long the resting viewer is watched.
    pub idle: Duration,
    pub idle_history: usize,
}

/// All three parts, one after the other.
pub async fn relay(options: RelayOptions) -> anyhow::Result<Value> {
    let load_start = load_average();
    let publish = catch_up_publish(options.messages).await.context("relay catch-up publish")?;
    let e2e = end_to_end(options.rate, options.end_to_end, options.viewers).await.context("relay end to end")?;
    let viewer = viewer_at_rest(options.idle, options.idle_history).await.context("a viewer at rest")?;
    Ok(json!({
        "scenario": "relay",
        "catch_up_publish": publish,
        "end_to_end": e2e,
        "viewer_idle": viewer,
        "loadavg_1m": { "start": load_start, "end": load_average() },
    }))
}

/// `n` feed messages as a relay receives them: every other one a Companies
/// House event (resumable, as the feed marks it), the rest one-quote frames
/// of the wig80 dialect, decoded by feedtop's decoder.
pub fn relay_messages(n: usize) -> Vec<FeedMsg> {
    let mut generator = CompanyGen::new(Some(SEED));
    let mut frames = QuoteFrames::new(QUOTE_SYMBOLS, SEED);
    let ch = crate::feeds::FeedId::from(companies_house_feed_name("/companies"));
    let quotes = crate::feeds::FeedId::from(QUOTE_FEED);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let at = Utc::now();
        let msg = if out.len() % 2 == 0 {
            let Ok(ev) = parse_event(generator.next_event(at).into_bytes()) else { continue };
            let resume = ResumePoint::Timepoint(ev.timepoint);
            let inner = Box::new(FeedMsgKind::Event(Box::new(ev)));
            FeedMsg { feed: ch.clone(), at, kind: FeedMsgKind::Resumable { resume, inner } }
        } else {
            match crate::feeds::decode::decode(Dialect::Wig80, &frames.next_frame()) {
                Ok(feedtop_proto::Decoded::Quotes(q)) => {
                    FeedMsg { feed: quotes.clone(), at, kind: FeedMsgKind::Quotes(q) }
                }
                _ => continue,
            }
        };
        out.push(msg);
    }
    out
}

fn feed_infos() -> Vec<FeedInfo> {
    vec![
        FeedInfo::new(companies_house_feed_name("/companies"), FeedKind::CompaniesHouse),
        FeedInfo::new(QUOTE_FEED, FeedKind::WebSocket(Dialect::Wig80)),
    ]
}

/// Writes the outbox rows of `msgs` into a fresh database at `db` as the
/// relay does (numbered by its stager, the writer's INSERT) and returns
/// what the relay will publish for them: subject, `Nats-Msg-Id` and
/// payload, in `seq` order.
pub fn fill_outbox(db: &Path, msgs: &[FeedMsg]) -> anyhow::Result<Vec<OutMessage>> {
    let mut conn = store::open(db)?;
    let (mut stager, _, _) = crate::relay::outbox::open(db)?;
    let tx = conn.transaction()?;
    let mut list = Vec::new();
    {
        let mut insert =
            tx.prepare_cached("INSERT INTO relay_outbox (seq, subject, msg_id, payload) VALUES (?1, ?2, ?3, ?4)")?;
        for row in msgs.iter().flat_map(subjects::rows) {
            let msg = stager.stage(row);
            insert.execute(rusqlite::params![msg.seq, msg.subject, msg.msg_id, &msg.payload[..]])?;
            list.push((msg.subject.clone(), msg.msg_id.clone(), msg.payload.clone()));
        }
    }
    tx.commit()?;
    Ok(list)
}

async fn nats_server() -> anyhow::Result<NatsServer> {
    tokio::task::spawn_blocking(NatsServer::start).await?.context("starting nats-server")
}

fn header() -> feedtop_proto::wire::RecordingHeader {
    feedtop_proto::wire::RecordingHeader {
        feeds: feed_infos(),
        started: Utc::now(),
        writer: format!("feedtop {} bench", env!("CARGO_PKG_VERSION")),
        strike_offs: true,
    }
}

/// The relay's publisher on the outbox at `db` until every row up to
/// `last` is acked (or `within` passes); the time from its start.
async fn publish_outbox(url: &str, db: &Path, last: i64, within: Duration) -> anyhow::Result<(Duration, u64)> {
    let settings = NatsSettings::new(url);
    // The stream exists before the clock starts, as the bare publisher's does.
    let client = async_nats::connect(url).await?;
    jetstream::new(client.clone()).create_stream(settings.stream_config()).await?;
    let started = Instant::now();
    let publisher = Publisher::spawn(settings, db, Arc::new(Notify::new()), header())?;
    let mut acked = publisher.acked.clone();
    let reached = tokio::time::timeout(within, acked.wait_for(|&seq| seq >= last)).await;
    let elapsed = started.elapsed();
    let status = publisher.finish(Duration::from_secs(5)).await;
    if !matches!(reached, Ok(Ok(_))) {
        anyhow::bail!("the relay's publisher did not get every ack within {within:?}: {status:?}");
    }
    let mut stream = jetstream::new(client).get_stream(crate::relay::nats::DEFAULT_STREAM).await?;
    let stored = stream.info().await?.state.messages;
    Ok((elapsed, stored))
}

/// Part 1: the relay's catch-up publish against the bare publisher.
pub async fn catch_up_publish(n: usize) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("outbox.db");
    let msgs = relay_messages(n);
    let fill_started = Instant::now();
    let list = fill_outbox(&db, &msgs)?;
    let fill = fill_started.elapsed();
    drop(msgs);
    let count = list.len();
    let bytes: usize = list.iter().map(|(_, _, p)| p.len()).sum();
    let last = count as i64;

    // Baseline first, on its own fresh server.
    let bare_server = nats_server().await?;
    let bare = nats_baseline::bare_publish(&bare_server.url(), "BARE", list).await?;
    drop(bare_server);

    let server = nats_server().await?;
    let (elapsed, stored) = publish_outbox(&server.url(), &db, last, Duration::from_secs(600)).await?;
    let rate = (count as f64 / elapsed.as_secs_f64()).round();
    Ok(json!({
        "messages": count,
        "avg_payload_bytes": (bytes as f64 / count.max(1) as f64).round(),
        "outbox_fill_s": round3(fill.as_secs_f64()),
        "elapsed_s": round3(elapsed.as_secs_f64()),
        "messages_per_s": rate,
        // The relay's heartbeat is the one more.
        "stream_messages": stored,
        "baseline_bare_async_nats": {
            "messages_per_s": bare.per_second.round(),
            "elapsed_s": round3(bare.elapsed.as_secs_f64()),
            "window": bare.window,
        },
        "ratio_to_bare": ratio(rate, bare.per_second),
    }))
}

/// A pipeline driven the way a front end drives it, in its own task,
/// until `stop` says so or it is `done`; `observe` sees each input that
/// wakes it, before it is handled.
async fn drive(
    mut p: Pipeline,
    mut stop: watch::Receiver<bool>,
    mut observe: impl FnMut(&Pipeline, &Input) + Send,
    done: impl Fn(&Pipeline) -> bool + Send,
) -> Pipeline {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tick.tick() => { let _ = p.tick(Utc::now()); }
            input = p.next_input() => {
                observe(&p, &input);
                p.handle(input);
                if done(&p) { break; }
            }
        }
    }
    p
}

fn quote_count(p: &Pipeline) -> u64 {
    p.model().feeds.iter().filter(|f| f.info.name.as_str() == QUOTE_FEED).map(|f| f.counts.events).sum()
}

/// Part 2: firehose → relay → NATS → `viewers` viewer pipelines.
pub async fn end_to_end(rate: f64, duration: Duration, viewers: usize) -> anyhow::Result<Value> {
    let warmup = Duration::from_secs(2);
    let frames = (rate * (duration + warmup).as_secs_f64()) as u64;
    let server = nats_server().await?;
    let dir = tempfile::tempdir()?;
    let config = QuoteFirehoseConfig { symbols: QUOTE_SYMBOLS, rate, frames, seed: SEED };
    let hose = QuoteFirehose::start(config).await?;
    // Viewers need a relay's announcement in the stream: one made here, so
    // every viewer reads before the relay starts and the firehose (which
    // starts sending when the relay connects) is read live from its first
    // frame, not caught up on.
    let settings = NatsSettings::new(server.url());
    let js = jetstream::new(async_nats::connect(server.url()).await?);
    js.create_stream(settings.stream_config()).await?;
    let announcement = feedtop_proto::wire::encode_header(&header());
    js.publish(subjects::INFO_SUBJECT, announcement.into()).await?.await?;
    let mut opened = Vec::new();
    for _ in 0..viewers {
        opened.push(Viewer::open(settings.clone()).await.context("opening a viewer")?);
    }
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::new();
    // The first second is the warm-up (connections, first commits).
    let measure_from = Utc::now() + chrono::TimeDelta::from_std(warmup / 2)?;
    for (i, viewer) in opened.into_iter().enumerate() {
        let p = Pipeline::from_nats(
            PipelineConfig {
                feeds: Vec::new(),
                db_path: dir.path().join(format!("viewer{i}.db")),
                latency_window: Duration::from_secs(3600),
                demo: false,
                writer: WriterSettings::default(),
            },
            viewer,
            viewer_store(),
        )?;
        let mut h = micros_histogram();
        // The first leg alone: the stamp to the relay receiving the frame
        // (`msg.at`, which travels in the record).
        let mut to_relay = micros_histogram();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut first_live: Option<(Instant, u64)> = None;
            let p = drive(
                p,
                stop,
                |p, input| {
                    if let Input::Feed(FeedMsg { kind: FeedMsgKind::Quotes(quotes), at, .. }) = input {
                        let now = Utc::now();
                        for sent in quotes.iter().filter_map(|q| q.time.and_then(QuoteTime::as_utc)) {
                            if sent >= measure_from {
                                first_live.get_or_insert_with(|| (Instant::now(), quote_count(p)));
                                record_latency(&mut h, now, sent);
                                record_latency(&mut to_relay, *at, sent);
                            }
                        }
                    }
                },
                |p| quote_count(p) >= frames,
            )
            .await;
            let applied = quote_count(&p);
            let per_s = first_live.map(|(at, before)| (applied - before) as f64 / at.elapsed().as_secs_f64());
            p.shutdown().await;
            (h, to_relay, applied, per_s)
        }));
    }
    let relay = Pipeline::start(PipelineConfig {
        feeds: vec![FeedSpec::websocket(QUOTE_FEED, WsSettings::new(hose.url(), Dialect::Wig80))],
        db_path: dir.path().join("relay.db"),
        latency_window: Duration::from_secs(3600),
        demo: false,
        writer: WriterSettings { commit_every: commit_every(), ..WriterSettings::default() },
    })?
    .relay_to(settings)?;
    let relay_task = tokio::spawn(drive(relay, stop.clone(), |_, _| {}, |_| false));
    let cpu_before = super::scenarios::process_cpu_seconds();
    let started = Instant::now();
    let sent = hose.wait_reports(1, duration + warmup + Duration::from_secs(30)).await.first().copied();
    let mut all = micros_histogram();
    let mut all_to_relay = micros_histogram();
    let mut per_viewer = Vec::new();
    let mut applied = Vec::new();
    // Every viewer has applied every frame by then, or is reported short.
    let limit = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(limit);
    let mut tasks = futures_util::future::join_all(tasks);
    let results = tokio::select! {
        r = &mut tasks => r,
        _ = &mut limit => { let _ = stop_tx.send(true); tasks.await }
    };
    let elapsed = started.elapsed();
    let cpu = super::scenarios::process_cpu_seconds() - cpu_before;
    let _ = stop_tx.send(true);
    for r in results {
        let (h, to_relay, n, per_s): (Histogram<u64>, Histogram<u64>, u64, Option<f64>) = r?;
        all.add(&h)?;
        all_to_relay.add(&to_relay)?;
        per_viewer.push(json!({ "applied": n, "per_s": per_s.map(f64::round), "p99_ms": latency_ms(&h)["p99"] }));
        applied.push(n);
    }
    let relay = relay_task.await?;
    let relay_status = relay.model().relay.clone();
    relay.shutdown().await;
    drop(server);

    // Baseline: the same firehose straight into a pipeline (`quotes`).
    let direct = quotes(rate, duration).await.context("the quotes baseline")?;
    let p99 = all.value_at_quantile(0.99) as f64 / 1000.0;
    let direct_p99 = direct["latency_write_to_model_ms"]["p99"].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "rate": rate,
        "viewers": viewers,
        "viewer_store": format!("{:?}", viewer_store()),
        "relay_commit_every_ms": round3(commit_every().as_secs_f64() * 1000.0),
        "frames_sent": sent.map(|s| s.frames),
        "send_rate_achieved_per_s": sent.map(|s| s.frames_per_s().round()),
        "elapsed_s": round3(elapsed.as_secs_f64()),
        "applied_min": applied.iter().min(),
        "applied_max": applied.iter().max(),
        "latency_source_to_viewer_ms": latency_ms(&all),
        "latency_p90_ms": round3(all.value_at_quantile(0.90) as f64 / 1000.0),
        // Of which the feed → relay leg (the rest: outbox, commit, publish,
        // JetStream, the viewer's consumer and pipeline).
        "latency_source_to_relay_receive_ms": latency_ms(&all_to_relay),
        "per_viewer": per_viewer,
        "relay_published": relay_status.as_ref().map(|s| s.published),
        "cpu_percent_of_one_core_whole_process": round3(cpu / elapsed.as_secs_f64() * 100.0),
        "baseline_direct_quotes": {
            "latency_write_to_model_ms": direct["latency_write_to_model_ms"],
            "frames_applied": direct["frames_applied"],
        },
        "ratio_p99_to_direct": ratio(p99, direct_p99),
    }))
}

/// VmRSS of a process in kB (Linux).
pub(super) fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// Part 3: the real binary as a viewer over a stream of `history` messages,
/// then at rest for `duration`; the `idle` scenario's live run over the
/// same window is the baseline.
pub async fn viewer_at_rest(duration: Duration, history: usize) -> anyhow::Result<Value> {
    let server = nats_server().await?;
    let dir = tempfile::tempdir()?;
    let outbox = dir.path().join("relay.db");
    let list = fill_outbox(&outbox, &relay_messages(history))?;
    publish_outbox(&server.url(), &outbox, list.len() as i64, Duration::from_secs(60)).await?;
    let expected = history as u64;

    let mut viewer = match viewer_store() {
        ViewerStore::Database => feedtop_child(&dir.path().join("viewer.db"), "")?,
        ViewerStore::Nothing => feedtop_child_without_db(&dir.path().join("viewer.toml"), "")?,
    };
    let mut child = viewer
        .args(["--source", &server.url(), "--interval", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = lines_tx.send(v);
            }
        }
    });
    // Wait until it shows the whole history (or 30 s).
    let started = Instant::now();
    let shown = |v: &Value| v["feeds"].as_array().map_or(0, |f| f.iter().filter_map(|f| f["events"].as_u64()).sum());
    let mut caught_up = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(line)) = tokio::time::timeout_at(deadline, lines.recv()).await {
        if shown(&line) >= expected {
            caught_up = Some(started.elapsed());
            break;
        }
    }
    let rss_caught_up = rss_kb(pid);

    // At rest, beside the live run of `idle` over the same window.
    let watch_viewer = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = child_cpu_seconds(pid);
        let threads_before = super::baseline::threads_cpu_ns(pid);
        let mut rss_max = 0u64;
        let end = tokio::time::Instant::now() + duration;
        while tokio::time::Instant::now() < end {
            rss_max = rss_max.max(rss_kb(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(500).min(duration)).await;
        }
        rss_max = rss_max.max(rss_kb(pid).unwrap_or(0));
        let ns = super::baseline::cpu_ns_between(&threads_before, &super::baseline::threads_cpu_ns(pid));
        (child_cpu_seconds(pid) - before, ns as f64, rss_max)
    };
    let (baseline, (cpu, cpu_ns, rss_max)) = tokio::join!(idle(duration), watch_viewer);
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    let baseline = baseline?;
    let mb = |kb: Option<u64>| kb.map(|kb| (kb as f64 / 1024.0 * 10.0).round() / 10.0);
    // To the nanosecond (/proc schedstat), as `idle` measures: at 10 ms a
    // tick, the tick-based figure of a quiet process reads 0.
    let cpu_percent = round3(cpu_ns / 1e9 / duration.as_secs_f64() * 100.0);
    Ok(json!({
        "viewer_store": format!("{:?}", viewer_store()),
        "history_messages": history,
        "caught_up_s": caught_up.map(|d| round3(d.as_secs_f64())),
        "duration_s": duration.as_secs_f64(),
        "rss_mb_caught_up": mb(rss_caught_up),
        "rss_mb_max": mb(Some(rss_max)),
        "cpu_s_ticks": round3(cpu),
        "cpu_percent_of_one_core_schedstat": cpu_percent,
        "baseline_idle_live_run": {
            "cpu_percent_of_one_core_schedstat": baseline["cpu_percent_of_one_core_schedstat"],
            "rss_mb": baseline["rss_mb"],
        },
        "ratio_cpu_to_live_run": ratio(cpu_percent, baseline["cpu_percent_of_one_core_schedstat"].as_f64().unwrap_or(f64::NAN)),
        "ratio_rss_to_live_run": ratio(rss_max as f64 / 1024.0, baseline["rss_mb"].as_f64().unwrap_or(f64::NAN)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_holds_events_and_quotes_with_an_id_each() {
        let dir = tempfile::tempdir().unwrap();
        let list = fill_outbox(&dir.path().join("o.db"), &relay_messages(10)).unwrap();
        assert_eq!(list.len(), 10);
        assert!(list[0].0.ends_with(".events") && list[1].0.contains(".quotes."), "{:?}", list[1].0);
        let ids: std::collections::HashSet<_> = list.iter().map(|m| &m.1).collect();
        assert_eq!(ids.len(), 10);
    }
}
