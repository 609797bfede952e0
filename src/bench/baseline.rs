//! Same-run baselines: bare clients that read what feedtop reads with as
//! little as a client can do, and the CPU readers that charge them.
//!
//! Each scenario that has a bare-client baseline reports it under
//! `baseline_bare_client` and its ratios to it as `ratio_…_to_bare`.

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::firehose::published_at;
use super::quote_firehose::sent_at;
use super::scenarios::{latency_ms, micros_histogram, process_cpu_seconds, ratio, record_latency};

/// A bare client's run: the items it read, the latencies it noted, and the
/// whole process's CPU over the run per item (µs), the in-process server's
/// share included, as in the feedtop run it is compared with.
pub struct BareRun {
    pub items: u64,
    pub latency: Histogram<u64>,
    pub cpu_us_per_item: f64,
}

impl BareRun {
    /// Runs `client` (items read, their latencies) and charges the process's
    /// CPU over it to each item.
    pub async fn measure(client: impl Future<Output = anyhow::Result<(u64, Histogram<u64>)>>) -> anyhow::Result<Self> {
        let cpu_before = process_cpu_seconds();
        let (items, latency) = client.await?;
        let cpu_us_per_item = (process_cpu_seconds() - cpu_before) * 1e6 / items.max(1) as f64;
        Ok(Self { items, latency, cpu_us_per_item })
    }

    /// `{"<unit>s": …, "latency_ms": {…}, "cpu_us_per_<unit>": …}`
    pub fn json(&self, unit: &str) -> Value {
        let mut map = Map::new();
        map.insert(format!("{unit}s"), json!(self.items));
        map.insert("latency_ms".into(), latency_ms(&self.latency));
        map.insert(format!("cpu_us_per_{unit}"), json!(self.cpu_us_per_item.round()));
        Value::Object(map)
    }

    /// Adds feedtop's ratios to this run: latency p50 and p99
    /// (`ratio_latency_p50_to_bare`, `…_p99_…`) and CPU per item (`ratio_cpu_to_bare`).
    pub fn add_ratios(&self, out: &mut Value, latency: &Histogram<u64>, cpu_us_per_item: f64) {
        for (q, key) in [(0.5, "ratio_latency_p50_to_bare"), (0.99, "ratio_latency_p99_to_bare")] {
            out[key] = json!(ratio(latency.value_at_quantile(q) as f64, self.latency.value_at_quantile(q) as f64));
        }
        out["ratio_cpu_to_bare"] = json!(ratio(cpu_us_per_item, self.cpu_us_per_item));
    }
}

/// Reads `stream` until `count` (how many items a message held) has counted
/// `items`, the stream ends, or `deadline` passes. Returns the items counted.
async fn read_until<T, E: std::fmt::Display>(
    mut stream: impl Stream<Item = Result<T, E>> + Unpin,
    items: u64,
    deadline: Instant,
    mut count: impl FnMut(T) -> u64,
) -> anyhow::Result<u64> {
    let mut read = 0u64;
    while read < items {
        let next = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            next = stream.next() => next,
        };
        match next {
            Some(Ok(message)) => read += count(message),
            Some(Err(e)) => anyhow::bail!("the bare client's connection failed: {e}"),
            None => break,
        }
    }
    Ok(read)
}

/// Reads `frames` quote frames from `url` with nothing but tokio-tungstenite,
/// noting each one's latency from its stamp (found without parsing the JSON)
/// and discarding it. Returns the frames read and their latencies.
pub async fn websocket_client(url: &str, frames: u64, deadline: Instant) -> anyhow::Result<(u64, Histogram<u64>)> {
    let (ws, _) = tokio_tungstenite::connect_async(url).await?;
    let mut latency = micros_histogram();
    let read = read_until(ws, frames, deadline, |message| match message {
        Message::Text(text) if text.starts_with(r#"{"type": "stock_updates""#) => {
            let now = Utc::now();
            if let Some(sent) = sent_at(text.as_str()) {
                record_latency(&mut latency, now, sent);
            }
            1
        }
        _ => 0,
    })
    .await?;
    Ok((read, latency))
}

/// Reads `events` lines of a Companies House stream from `url` with nothing
/// but reqwest: splits the body into lines and notes each one's latency from
/// its `published_at` (found without parsing the JSON); blank lines are
/// heartbeats. Returns the events read and their latencies.
pub async fn line_client(url: &str, events: u64, deadline: Instant) -> anyhow::Result<(u64, Histogram<u64>)> {
    let response = reqwest::Client::builder().no_proxy().build()?.get(url).send().await?.error_for_status()?;
    let mut latency = micros_histogram();
    let mut partial = Vec::new();
    let read = read_until(response.bytes_stream(), events, deadline, |chunk| {
        let now = Utc::now();
        let mut read = 0;
        for_each_line(&mut partial, &chunk, |line| {
            if !line.is_empty() {
                if let Some(sent) = published_at(line) {
                    record_latency(&mut latency, now, sent);
                }
                read += 1;
            }
        });
        read
    })
    .await?;
    Ok((read, latency))
}

/// Calls `f` with every complete line (without its `\n`) that `chunk`
/// finishes, the first one joined to what `partial` held from earlier
/// chunks; keeps the unfinished tail in `partial`.
fn for_each_line(partial: &mut Vec<u8>, chunk: &[u8], mut f: impl FnMut(&[u8])) {
    let mut rest = chunk;
    while let Some(end) = memchr::memchr(b'\n', rest) {
        if partial.is_empty() {
            f(&rest[..end]);
        } else {
            partial.extend_from_slice(&rest[..end]);
            f(partial);
            partial.clear();
        }
        rest = &rest[end + 1..];
    }
    partial.extend_from_slice(rest);
}

/// Idle's baseline: a bare reqwest client on a thread of its own (with a
/// current-thread runtime, so that all its work is that thread's CPU)
/// holding a stream open and discarding whatever arrives until stopped.
pub struct BareHolder {
    /// The thread's id, where /proc names it.
    pub tid: Option<u32>,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<anyhow::Result<u64>>,
}

impl BareHolder {
    /// Starts the thread; returns once the response head has arrived.
    pub async fn connect(url: String) -> anyhow::Result<Self> {
        let (connected, is_connected) = tokio::sync::oneshot::channel();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread =
            std::thread::Builder::new().name("bench-bare-hold".into()).spawn(move || -> anyhow::Result<u64> {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(async move {
                    let response = reqwest::Client::builder().no_proxy().build()?.get(url).send().await?;
                    let mut body = response.error_for_status()?.bytes_stream();
                    let _ = connected.send(current_tid());
                    let mut bytes = 0u64;
                    loop {
                        tokio::select! {
                            _ = &mut stopped => return Ok(bytes),
                            chunk = body.next() => match chunk {
                                Some(chunk) => bytes += chunk?.len() as u64,
                                None => return Ok(bytes),
                            },
                        }
                    }
                })
            })?;
        match is_connected.await {
            Ok(tid) => Ok(Self { tid, stop, thread }),
            Err(_) => match tokio::task::spawn_blocking(move || thread.join()).await? {
                Ok(Err(e)) => Err(e.context("the bare client could not connect")),
                _ => anyhow::bail!("the bare client's thread stopped before it connected"),
            },
        }
    }

    /// The thread's CPU so far, in nanoseconds.
    pub fn cpu_ns(&self) -> Option<u64> {
        task_cpu_ns(std::process::id(), self.tid?)
    }

    /// Stops the client; returns the body bytes it read (heartbeats).
    pub async fn finish(self) -> anyhow::Result<u64> {
        let _ = self.stop.send(());
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the bare client's thread panicked"))?
    }
}

/// The calling thread's id, from /proc/thread-self (`PID/task/TID`).
fn current_tid() -> Option<u32> {
    std::fs::read_link("/proc/thread-self").ok()?.file_name()?.to_str()?.parse().ok()
}

/// One thread's CPU time in nanoseconds, from its /proc schedstat (Linux):
/// to the nanosecond, where /proc/PID/stat counts 10 ms ticks.
pub fn task_cpu_ns(pid: u32, tid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?.split_whitespace().next()?.parse().ok()
}

/// Every live thread of `pid` with its CPU time in nanoseconds.
pub fn threads_cpu_ns(pid: u32) -> HashMap<u32, u64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return HashMap::new() };
    tasks
        .filter_map(|task| task.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(|tid| Some((tid, task_cpu_ns(pid, tid)?)))
        .collect()
}

/// CPU used between two [`threads_cpu_ns`] readings by the threads alive at
/// the second (one that ended in between is not counted: a lower bound).
pub fn cpu_ns_between(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after.iter().map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0))).sum()
}

/// The last `key` in `text` followed by an RFC 3339 time up to the next
/// `"`, read without parsing the JSON around it, as a bare client would.
pub fn stamp_after_last(text: &[u8], key: &str) -> Option<DateTime<Utc>> {
    let start = memchr::memmem::rfind(text, key.as_bytes())? + key.len();
    let end = start + memchr::memchr(b'"', &text[start..])?;
    let stamp = std::str::from_utf8(&text[start..end]).ok()?;
    DateTime::parse_from_rfc3339(stamp).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::firehose::{Firehose, FirehoseConfig};

    #[test]
    fn lines_are_split_across_chunks() {
        let mut partial = Vec::new();
        let mut lines = Vec::new();
        for chunk in [&b"ab"[..], b"c\n\nde", b"", b"f\ng", b"h\n"] {
            for_each_line(&mut partial, chunk, |line| lines.push(String::from_utf8(line.to_vec()).unwrap()));
        }
        assert_eq!(lines, ["abc", "", "def", "gh"]);
        assert!(partial.is_empty());
    }

    #[tokio::test]
    async fn the_line_client_reads_every_event_with_its_latency() {
        let hose = Firehose::start(FirehoseConfig { events: 50, rate: Some(5_000.0), seed: 7 }).await.unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        let run = BareRun::measure(line_client(&format!("{}/companies", hose.base_url()), 50, deadline)).await.unwrap();
        assert_eq!(run.items, 50);
        assert_eq!(run.latency.len(), 50, "every line had a published_at");
        assert!(run.cpu_us_per_item.is_finite());
        let out = run.json("event");
        assert_eq!(out["events"], 50);
        assert_eq!(out["latency_ms"]["samples"], 50);
        assert!(out["cpu_us_per_event"].is_number(), "{out}");
    }

    #[tokio::test]
    async fn the_holder_keeps_a_connection_on_a_thread_of_its_own() {
        let hose = Firehose::start(FirehoseConfig { events: 3, rate: None, seed: 7 }).await.unwrap();
        let holder = BareHolder::connect(format!("{}/companies", hose.base_url())).await.unwrap();
        let tid = holder.tid.expect("Linux names the thread");
        assert_ne!(Some(tid), current_tid());
        assert!(threads_cpu_ns(std::process::id()).contains_key(&tid), "one of this process's threads");
        assert!(holder.cpu_ns().is_some());
        holder.finish().await.unwrap();
        let dead = "http://127.0.0.1:9/companies".to_string();
        assert!(BareHolder::connect(dead).await.is_err(), "a refused connection is an error, not a hang");
    }

    #[test]
    fn cpu_between_readings_counts_only_threads_alive_at_the_second() {
        let before = HashMap::from([(1, 100), (2, 50)]);
        let after = HashMap::from([(1, 130), (3, 7)]);
        assert_eq!(cpu_ns_between(&before, &after), 37);
    }

    #[test]
    fn stamps_are_found_without_parsing() {
        let line = br#"{"data":{},"event":{"timepoint":1,"published_at":"2026-01-02T03:04:05.123456Z"}}"#;
        let t = stamp_after_last(line, "\"published_at\":\"").unwrap();
        assert_eq!(t.timestamp_micros() % 1_000_000, 123_456);
        assert_eq!(stamp_after_last(b"{}", "\"published_at\":\""), None);
        assert_eq!(stamp_after_last(br#"{"published_at":"soon"}"#, "\"published_at\":\""), None);
    }
}
