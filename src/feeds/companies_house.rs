//! The Companies House Streaming API feed (docs/protocols.md §1).
//!
//! One long-lived `GET` per stream with Basic auth (`key:`), newline-delimited
//! JSON, blank-line heartbeats, and `?timepoint=N` to resume (inclusive, so the
//! last event comes again and is dropped here as a duplicate). Reconnecting is
//! normal operation: the server closes every connection after 24 h.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::backoff::parse_retry_after;
use super::lines::{Line, LineSplitter};
use super::resume_mark::{ResumeMark, Verdict};
use super::supervisor::{read_chunk, Connector, FeedLink, Outcome, Read, Reconnect, Retry};
use super::{ConnState, FeedMsgKind, ResumePoint};

pub use super::secret::ApiKey;
pub use feedtop_proto::ch::{parse_event, ChEvent, CompanyState, EventType, ParseError, COMPANY_PROFILE};

/// Where and how to connect to one Companies House stream.
#[derive(Debug, Clone)]
pub struct ChSettings {
    /// e.g. `https://stream.companieshouse.gov.uk`
    pub base_url: String,
    /// e.g. `/companies`
    pub stream: String,
    pub key: Option<ApiKey>,
    pub reconnect: Reconnect,
    /// Wait after 429 when the server gives no `Retry-After` (the docs warn
    /// that reconnecting too often gets a client rate limited).
    pub rate_limit_wait: Duration,
    pub max_line: usize,
}

impl ChSettings {
    pub fn new(base_url: impl Into<String>, stream: impl Into<String>, key: Option<ApiKey>) -> Self {
        Self {
            base_url: base_url.into(),
            stream: stream.into(),
            key,
            reconnect: Reconnect::default(),
            rate_limit_wait: Duration::from_secs(60),
            max_line: super::lines::DEFAULT_MAX_LINE,
        }
    }

    fn url(&self, timepoint: Option<i64>) -> String {
        let mut url = format!("{}{}", self.base_url.trim_end_matches('/'), self.stream);
        if let Some(tp) = timepoint {
            url.push_str(&format!("?timepoint={tp}"));
        }
        url
    }
}

/// One connection attempt of a Companies House stream, and the resume point
/// that carries over between attempts.
pub struct ChConnector {
    settings: ChSettings,
    client: reqwest::Client,
    /// Duplicates and the resume point (see [`ResumeMark`] for the rule).
    resume: ResumeMark,
}

impl ChConnector {
    pub fn new(settings: ChSettings, resume_from: Option<i64>) -> anyhow::Result<Self> {
        let client = http_client(&settings.base_url, settings.reconnect.connect_timeout)?;
        Ok(Self { settings, client, resume: ResumeMark::resume_from(resume_from) })
    }

    /// Maps a non-200 answer to what happens next.
    async fn refused(
        &mut self,
        link: &FeedLink,
        status: reqwest::StatusCode,
        retry_after: Option<Duration>,
        body: String,
    ) -> Outcome {
        let code = status.as_u16();
        match code {
            401 | 403 => Outcome::failed(
                format!("HTTP {code}: the stream key was refused; check CH_STREAMING_API_KEY (a stream key, not a REST key)"),
                Retry::Auth,
            ),
            416 => {
                let after = self.resume.forget();
                let shown = after.map_or("?".to_string(), |t| t.to_string());
                let gap = FeedMsgKind::Gap { after_timepoint: after, reason: "HTTP 416: timepoint invalid or too old".into() };
                if !link.send(gap).await {
                    return Outcome::Shutdown;
                }
                Outcome::failed(format!("HTTP 416: timepoint {shown} is too old; reconnecting live (events were missed)"), Retry::Backoff)
            }
            429 => Outcome::failed(
                "HTTP 429: rate limited by the server",
                Retry::AtLeast(retry_after.unwrap_or(self.settings.rate_limit_wait)),
            ),
            _ => {
                let mut message = format!("HTTP {status}");
                if !body.is_empty() {
                    message.push_str(": ");
                    message.push_str(&body);
                }
                Outcome::failed(message, Retry::Backoff)
            }
        }
    }

    /// Reads the body of a 200 response until it ends, fails, idles out, or
    /// a command arrives.
    async fn stream(
        &mut self,
        link: &mut FeedLink,
        mut body: impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    ) -> Outcome {
        if !link.send(FeedMsgKind::State(ConnState::Live)).await {
            return Outcome::Shutdown;
        }
        let live_since = Instant::now();
        let read_timeout = self.settings.reconnect.read_timeout;
        let mut splitter = LineSplitter::new(self.settings.max_line);
        let mut lines = Vec::new();
        let end = loop {
            match read_chunk(&mut body, link, read_timeout).await {
                Read::Command(outcome) => return outcome,
                Read::Ended(why) => break why,
                // Every line completed by this chunk is stamped with its
                // arrival, however long the core takes to accept the lines.
                Read::Chunk { bytes, at } => {
                    splitter.push(&bytes, &mut lines);
                    if lines.is_empty() && !link.send_at(at, FeedMsgKind::Bytes).await {
                        return Outcome::Shutdown;
                    }
                    for line in lines.drain(..) {
                        let kind = self.decode(line);
                        if !link.send_at(at, kind).await {
                            return Outcome::Shutdown;
                        }
                    }
                }
            }
        };
        let error = if splitter.reset() {
            format!("{end} (a partial line was discarded; it is re-read on resume)")
        } else {
            end
        };
        Outcome::Dropped { error, live_for: live_since.elapsed(), retry: Retry::Backoff }
    }

    /// Turns one line into a message and advances the resume point.
    fn decode(&mut self, line: Line) -> FeedMsgKind {
        match line {
            Line::Blank => FeedMsgKind::KeepAlive,
            Line::TooLong => FeedMsgKind::TooLong,
            Line::Data(bytes) => match parse_event(bytes) {
                Err(e) => FeedMsgKind::Malformed { reason: e.to_string() },
                Ok(ev) => match self.resume.observe(ev.timepoint) {
                    Verdict::Duplicate => FeedMsgKind::Duplicate { timepoint: ev.timepoint },
                    Verdict::New { mark_moved_to: None } => FeedMsgKind::Event(Box::new(ev)),
                    Verdict::New { mark_moved_to: Some(timepoint) } => FeedMsgKind::Resumable {
                        resume: ResumePoint::Timepoint(timepoint),
                        inner: Box::new(FeedMsgKind::Event(Box::new(ev))),
                    },
                },
            },
        }
    }
}

impl Connector for ChConnector {
    async fn attempt(&mut self, link: &mut FeedLink) -> Outcome {
        let url = self.settings.url(self.resume.mark());
        let mut request = self.client.get(&url);
        if let Some(key) = &self.settings.key {
            request = request.basic_auth(key.expose(), Some(""));
        }
        let response = match send_with_deadlines(request, &self.settings.reconnect, link).await {
            Ok(r) => r,
            Err(SendFailed::Command(outcome)) => return outcome,
            Err(SendFailed::Error(e)) => return Outcome::failed(e, Retry::Backoff),
        };
        let status = response.status();
        if status.is_redirection() {
            let location = header_text(&response, reqwest::header::LOCATION);
            let error = super::redirect::moved(status.as_u16(), location.as_deref(), response.url());
            return Outcome::failed(error, Retry::Backoff);
        }
        if status != reqwest::StatusCode::OK {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let body = body_snippet(response).await;
            return self.refused(link, status, retry_after, body).await;
        }
        self.stream(link, response.bytes_stream()).await
    }
}

/// Why a streaming request got no response.
pub(crate) enum SendFailed {
    /// A command arrived first: end the attempt with this outcome.
    Command(Outcome),
    /// The phase that failed or ran out of time, as one line.
    Error(String),
}

/// Sends a streaming feed's request with a deadline on every phase before
/// the body: the client's connect timeout covers TCP and TLS, and the
/// response head must then be complete within `response_timeout` (a server
/// that accepts and never answers, or trickles header bytes, cannot hold the
/// feed in `connecting`). The body has its own read-idle deadline.
pub(crate) async fn send_with_deadlines(
    request: reqwest::RequestBuilder,
    timings: &Reconnect,
    link: &mut FeedLink,
) -> Result<reqwest::Response, SendFailed> {
    tokio::select! {
        sent = send_within(request, timings) => sent.map_err(SendFailed::Error),
        cmd = link.command() => Err(SendFailed::Command(FeedLink::on_command(cmd))),
    }
}

/// [`send_with_deadlines`] without the control channel, for a request that
/// runs beside a stream (an SSE subscribe): the same deadlines and the same
/// one-line reasons.
pub(crate) async fn send_within(
    request: reqwest::RequestBuilder,
    timings: &Reconnect,
) -> Result<reqwest::Response, String> {
    // The connect phase ends by its own timeout first, so running out of
    // this limit means the connection was made and the head did not come.
    let limit = timings.connect_timeout.saturating_add(timings.response_timeout);
    match tokio::time::timeout(limit, request.send()).await {
        Ok(Ok(response)) => Ok(response),
        Err(_) => Err(format!(
            "no response head within {} (the server took the connection but did not answer)",
            humantime::format_duration(timings.response_timeout)
        )),
        Ok(Err(e)) if e.is_connect() && e.is_timeout() => Err(format!(
            "no connection within {} (TCP/TLS connect timed out)",
            humantime::format_duration(timings.connect_timeout)
        )),
        Ok(Err(e)) => Err(format!("cannot connect: {}", error_chain(&e))),
    }
}

/// An HTTP client for a streaming feed: a connect timeout but no total
/// timeout (streams last hours), redirects followed only within the origin
/// (`redirect.rs`), and no proxy for loopback addresses (a proxy from the
/// environment cannot reach our own simulator).
pub fn http_client(base_url: &str, connect_timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut client = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(super::redirect::policy())
        .user_agent(concat!("feedtop/", env!("CARGO_PKG_VERSION")));
    if is_loopback(base_url) {
        client = client.no_proxy();
    }
    Ok(client.build()?)
}

fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else { return false };
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A response header as text, if it is there and is text.
pub(crate) fn header_text(response: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The start of an error body as one short line; HTML pages are reduced to nothing
/// (the status line already says it all).
pub(crate) async fn body_snippet(response: reqwest::Response) -> String {
    let read = tokio::time::timeout(Duration::from_secs(2), response.bytes()).await;
    let Ok(Ok(body)) = read else { return String::new() };
    let text = String::from_utf8_lossy(&body[..body.len().min(1024)]);
    let text = text.trim();
    if text.starts_with('<') {
        return String::new();
    }
    let first = text.lines().next().unwrap_or("");
    first.chars().take(160).collect()
}

/// Joins an error with its sources: reqwest's top-level message alone rarely
/// says what went wrong ("error sending request").
pub fn error_chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::FeedMsg;
    use chrono::{DateTime, TimeDelta, TimeZone, Utc};
    use std::sync::{Arc, Mutex};
    use tokio::sync::mpsc;

    /// Lines that arrived together keep their arrival time while a slow core
    /// keeps them waiting in the feed (the channel to it is full), and a line
    /// split across reads gets the time its last part came. The old feed
    /// stamped each line when it sent it, so the second line here carried the
    /// time the core got round to it: 5 s of latency that was never the
    /// server's.
    #[tokio::test]
    async fn lines_keep_the_time_their_bytes_arrived_while_the_core_is_slow() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let now = Arc::new(Mutex::new(t0));
        let set = |t: DateTime<Utc>| *now.lock().unwrap() = t;
        let clock = now.clone();
        let (tx, mut core) = mpsc::channel::<FeedMsg>(1);
        let (_control_tx, control) = mpsc::channel(1);
        let mut link = FeedLink::new("test".into(), tx, control).with_clock(Arc::new(move || *clock.lock().unwrap()));

        let fixture: Vec<&str> = include_str!("../../tests/fixtures/ch-companies-sample.ndjson")
            .lines()
            .filter(|l| parse_event(l.as_bytes().to_vec()).is_ok())
            .take(3)
            .collect();
        let (first, rest) = fixture[2].split_at(fixture[2].len() / 2);
        // The body: one read with two whole lines and half of the third, then
        // (later) the rest of the third. Room for one read at a time, so that
        // the test knows when the feed has taken one.
        let (body_tx, body_rx) = mpsc::channel::<bytes::Bytes>(1);
        let body = Box::pin(futures_util::stream::unfold(body_rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (Ok(chunk), rx))
        }));
        body_tx.send(format!("{}\n{}\n{first}", fixture[0], fixture[1]).into()).await.unwrap();
        let mut connector = ChConnector::new(ChSettings::new("http://127.0.0.1:9", "/companies", None), None).unwrap();
        let feed = tokio::spawn(async move { connector.stream(&mut link, body).await });

        // The feed has read the first chunk (at t0) and waits on the core.
        // (On this one-thread runtime the feed stamps a chunk in the same
        // poll as it takes it, so the clock cannot move in between.)
        let more = body_tx.reserve().await.unwrap();
        set(t0 + TimeDelta::seconds(5));
        let live = core.recv().await.unwrap();
        assert!(matches!(live.kind, FeedMsgKind::State(ConnState::Live)), "{live:?}");
        for line in 0..2 {
            let msg = core.recv().await.unwrap();
            assert!(msg.kind.event().is_some(), "{msg:?}");
            assert_eq!(msg.at, t0, "line {line}: stamped on arrival, not when the core took it");
        }

        // The third line is complete when its second half arrives, at t0 + 7 s.
        set(t0 + TimeDelta::seconds(7));
        more.send(format!("{rest}\n").into());
        drop(body_tx.reserve().await.unwrap());
        set(t0 + TimeDelta::seconds(9));
        let third = core.recv().await.unwrap();
        assert!(third.kind.event().is_some(), "{third:?}");
        assert_eq!(third.at, t0 + TimeDelta::seconds(7));

        drop(body_tx);
        assert!(matches!(feed.await.unwrap(), Outcome::Dropped { .. }));
    }
    #[test]
    fn loopback_urls_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:8080"));
        assert!(is_loopback("http://localhost/x"));
        assert!(is_loopback("http://[::1]:9"));
        assert!(!is_loopback("https://stream.companieshouse.gov.uk"));
        assert!(!is_loopback("not a url"));
    }

    #[test]
    fn url_carries_the_timepoint() {
        let s = ChSettings::new("http://127.0.0.1:9/", "/companies", None);
        assert_eq!(s.url(None), "http://127.0.0.1:9/companies");
        assert_eq!(s.url(Some(42)), "http://127.0.0.1:9/companies?timepoint=42");
    }
}
