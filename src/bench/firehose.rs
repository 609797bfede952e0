//! A Companies House-shaped server for benchmarks: it generates real-shaped
//! company-profile events on the fly and writes them in large chunks, as fast
//! as the client reads or at a fixed rate. Unlike `sim`, it keeps nothing in
//! memory, so a million-event run costs no gigabytes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::sim::company_gen::CompanyGen;

#[derive(Debug, Clone, Copy)]
pub struct FirehoseConfig {
    /// Events per connection.
    pub events: usize,
    /// Events per second; `None` writes as fast as the client reads.
    pub rate: Option<f64>,
    pub seed: u64,
}

pub struct Firehose {
    addr: SocketAddr,
    bytes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Firehose {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the lines say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Real-shaped company-profile changes ([`CompanyGen`]).
    Companies,
    /// Every line a new company entering the proposal to strike off
    /// ([`flood_line`]): the `flood` scenario.
    Flood,
}

impl Firehose {
    pub async fn start(config: FirehoseConfig) -> std::io::Result<Self> {
        Self::start_with(config, Source::Companies).await
    }

    /// `events` lines as fast as the client reads, each a distinct company
    /// entering the proposal to strike off.
    pub async fn flood(events: usize) -> std::io::Result<Self> {
        Self::start_with(FirehoseConfig { events, rate: None, seed: 0 }, Source::Flood).await
    }

    async fn start_with(config: FirehoseConfig, source: Source) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let bytes = Arc::new(AtomicU64::new(0));
        let counter = bytes.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, config, source, counter.clone()));
            }
        });
        Ok(Self { addr, bytes, task })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Body bytes written so far (event lines, over all connections).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// One generated line with a microsecond `published_at` (the parser reads
/// both forms), so latency can be measured below a second.
pub fn precise_line(generator: &mut CompanyGen) -> String {
    let now = Utc::now();
    let line = generator.next_event(now);
    let coarse = format!("\"published_at\":\"{}\"", now.format("%Y-%m-%dT%H:%M:%S"));
    let precise = format!("\"published_at\":\"{}\"", now.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
    line.replacen(&coarse, &precise, 1)
}

/// The `published_at` of a line [`precise_line`] made (or any company
/// event), read without parsing the JSON, as a bare client would.
pub fn published_at(line: &[u8]) -> Option<DateTime<Utc>> {
    super::baseline::stamp_after_last(line, "\"published_at\":\"")
}

/// Line `i` of the flood: company `F` + 7 digits (distinct up to ten
/// million) entering the proposal, with the fields feedtop reads.
pub fn flood_line(i: usize, timepoint: i64, published_at: &str) -> String {
    format!(
        concat!(
            r#"{{"resource_kind":"company-profile","resource_uri":"/company/F{i:07}","resource_id":"F{i:07}","#,
            r#""data":{{"company_name":"FLOOD {i} LIMITED","company_number":"F{i:07}","company_status":"active","#,
            r#""company_status_detail":"active-proposal-to-strike-off","type":"ltd","#,
            r#""links":{{"self":"/company/F{i:07}"}}}},"#,
            r#""event":{{"timepoint":{tp},"published_at":"{published}","type":"changed"}}}}"#
        ),
        i = i,
        tp = timepoint,
        published = published_at
    )
}

async fn serve(mut socket: TcpStream, config: FirehoseConfig, source: Source, bytes: Arc<AtomicU64>) {
    // The request itself does not matter; read its head and answer.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let header = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if socket.write_all(header.as_bytes()).await.is_err() {
        return;
    }
    let mut generator = CompanyGen::new(Some(config.seed));
    // Flat out, generating would make the server the bottleneck: cycle a
    // pool of real-shaped lines instead, each with its own timepoint.
    let pool: Vec<String> = match config.rate {
        None if config.events > POOL && source == Source::Companies => {
            (0..POOL).map(|_| precise_line(&mut generator)).collect()
        }
        _ => Vec::new(),
    };
    let first_timepoint = 90_000_000_i64;
    let started = tokio::time::Instant::now();
    let mut body = Vec::with_capacity(96 * 1024);
    let mut sent = 0;
    let stamp = Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
    while sent < config.events {
        // Pace: by `rate`, release the events that are due (1 ms granularity).
        let due = match config.rate {
            Some(rate) => ((started.elapsed().as_secs_f64() * rate) as usize).min(config.events),
            None => config.events,
        };
        if due <= sent {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        while sent < due && body.len() < 64 * 1024 {
            if source == Source::Flood {
                body.extend_from_slice(flood_line(sent, first_timepoint + sent as i64, &stamp).as_bytes());
            } else if pool.is_empty() {
                body.extend_from_slice(precise_line(&mut generator).as_bytes());
            } else {
                with_timepoint(&pool[sent % POOL], first_timepoint + sent as i64, &mut body);
            }
            body.push(b'\n');
            sent += 1;
        }
        bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        if write_chunk(&mut socket, &body).await.is_err() {
            return;
        }
        body.clear();
    }
    // Then stay open with heartbeats, like the real stream.
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if write_chunk(&mut socket, b"\n").await.is_err() {
            return;
        }
    }
}

/// Lines kept for flat-out serving.
const POOL: usize = 20_000;

/// Appends `line` with its `"timepoint":N` replaced by `timepoint`.
fn with_timepoint(line: &str, timepoint: i64, out: &mut Vec<u8>) {
    const KEY: &str = "\"timepoint\":";
    let Some(start) = line.find(KEY).map(|i| i + KEY.len()) else {
        out.extend_from_slice(line.as_bytes());
        return;
    };
    let end = start + line[start..].bytes().take_while(u8::is_ascii_digit).count();
    let bytes = line.as_bytes();
    out.extend_from_slice(&bytes[..start]);
    out.extend_from_slice(timepoint.to_string().as_bytes());
    out.extend_from_slice(&bytes[end..]);
}

async fn write_chunk(socket: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
    socket.write_all(format!("{:x}\r\n", data.len()).as_bytes()).await?;
    socket.write_all(data).await?;
    socket.write_all(b"\r\n").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_at_is_the_precise_stamp() {
        let line = precise_line(&mut CompanyGen::new(Some(1)));
        let stamp = published_at(line.as_bytes()).unwrap();
        assert!(line.contains(&stamp.format("\"published_at\":\"%Y-%m-%dT%H:%M:%S%.6fZ\"").to_string()), "{line}");
    }

    #[test]
    fn a_flood_line_is_a_distinct_company_entering_the_proposal() {
        use crate::feeds::companies_house::parse_event;
        let ev = parse_event(flood_line(1_234_567, 90_000_001, "2025-06-10T12:00:00").into_bytes()).unwrap();
        let company = ev.company.unwrap();
        assert_eq!((company.number.as_str(), ev.timepoint), ("F1234567", 90_000_001));
        assert_eq!(company.detail.as_deref(), Some(crate::model::strike_off::PROPOSAL));
    }

    #[test]
    fn timepoint_is_replaced_in_place() {
        let mut out = Vec::new();
        with_timepoint(r#"{"event":{"timepoint":82417300,"type":"changed"}}"#, 90000123, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"event":{"timepoint":90000123,"type":"changed"}}"#);
    }
}
