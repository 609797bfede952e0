//! The Companies House Streaming API feed (docs/protocols.md §1).
//!
//! One long-lived `GET` per stream with Basic auth (`key:`), newline-delimited
//! JSON, blank-line heartbeats, and `?timepoint=N` to resume (inclusive, so the
//! last event comes again and is dropped here as a duplicate). Reconnecting is
//! normal operation: the server closes every connection after 24 h.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::backoff::parse_retry_after;
use super::lines::{Line, LineSplitter};
use super::resume_mark::{ResumeMark, Verdict};
use super::supervisor::{read_chunk, Connector, FeedLink, Outcome, Read, Reconnect, Retry};
use super::{ConnState, FeedMsgKind, ResumePoint};
use crate::time::parse_published_at;

/// The only resource kind on `/companies` that carries a company profile.
pub const COMPANY_PROFILE: &str = "company-profile";

pub use super::secret::ApiKey;

/// `changed`, `deleted`, or something this version does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventType {
    Changed,
    Deleted,
    Other(String),
}

impl EventType {
    pub fn as_str(&self) -> &str {
        match self {
            EventType::Changed => "changed",
            EventType::Deleted => "deleted",
            EventType::Other(s) => s,
        }
    }
}

/// The part of a company profile that strike-off detection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyState {
    pub number: String,
    pub name: String,
    pub status: String,
    pub detail: Option<String>,
}

/// One decoded stream event. `raw` is the line as received, kept for storage.
#[derive(Debug, Clone, PartialEq)]
pub struct ChEvent {
    pub resource_kind: String,
    pub resource_id: String,
    pub timepoint: i64,
    pub published_at: Option<DateTime<Utc>>,
    pub event_type: EventType,
    /// Present for `company-profile` events that carry `data`.
    pub company: Option<CompanyState>,
    pub raw: String,
}

impl ChEvent {
    pub fn is_company_profile(&self) -> bool {
        self.resource_kind == COMPANY_PROFILE
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    resource_kind: Cow<'a, str>,
    #[serde(borrow, default)]
    resource_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Meta<'a>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    timepoint: i64,
    #[serde(borrow, default)]
    published_at: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ProfileData<'a> {
    #[serde(borrow, default)]
    company_number: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    company_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    company_status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    company_status_detail: Option<Cow<'a, str>>,
}

/// Why a line was not an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("line is not valid UTF-8")]
    NotUtf8,
    #[error("not a stream event: {0}")]
    Json(String),
    #[error("event has no resource_id")]
    NoResourceId,
}

/// Decodes one non-blank line. Only the fields feedtop needs are read (borrowed,
/// no copies); the raw line is kept whole for storage.
pub fn parse_event(line: Vec<u8>) -> Result<ChEvent, ParseError> {
    let raw = String::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let (resource_kind, resource_id, timepoint, published_at, event_type, company) = {
        let env: Envelope = serde_json::from_str(&raw).map_err(|e| ParseError::Json(e.to_string()))?;
        let resource_id = env.resource_id.ok_or(ParseError::NoResourceId)?.into_owned();
        let event_type = match env.event.kind.as_deref() {
            Some("changed") | None => EventType::Changed,
            Some("deleted") => EventType::Deleted,
            Some(other) => EventType::Other(other.to_string()),
        };
        let company = match (env.resource_kind.as_ref(), env.data) {
            (COMPANY_PROFILE, Some(data)) => {
                let d: ProfileData =
                    serde_json::from_str(data.get()).map_err(|e| ParseError::Json(format!("data: {e}")))?;
                Some(CompanyState {
                    number: d.company_number.map(Cow::into_owned).unwrap_or_else(|| resource_id.clone()),
                    name: d.company_name.map(Cow::into_owned).unwrap_or_default(),
                    status: d.company_status.map(Cow::into_owned).unwrap_or_default(),
                    detail: d.company_status_detail.map(Cow::into_owned),
                })
            }
            _ => None,
        };
        let published_at = env.event.published_at.as_deref().and_then(parse_published_at);
        (env.resource_kind.into_owned(), resource_id, env.event.timepoint, published_at, event_type, company)
    };
    Ok(ChEvent { resource_kind, resource_id, timepoint, published_at, event_type, company, raw })
}

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

    /// Reads a 200 response until it ends, fails, idles out, or a command arrives.
    async fn stream(&mut self, link: &mut FeedLink, response: reqwest::Response) -> Outcome {
        if !link.send(FeedMsgKind::State(ConnState::Live)).await {
            return Outcome::Shutdown;
        }
        let live_since = Instant::now();
        let read_timeout = self.settings.reconnect.read_timeout;
        let mut body = response.bytes_stream();
        let mut splitter = LineSplitter::new(self.settings.max_line);
        let mut lines = Vec::new();
        let end = loop {
            match read_chunk(&mut body, link, read_timeout).await {
                Read::Command(outcome) => return outcome,
                Read::Ended(why) => break why,
                Read::Chunk(chunk) => {
                    splitter.push(&chunk, &mut lines);
                    if lines.is_empty() && !link.send(FeedMsgKind::Bytes).await {
                        return Outcome::Shutdown;
                    }
                    for line in lines.drain(..) {
                        let kind = self.decode(line);
                        if !link.send(kind).await {
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
        self.stream(link, response).await
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

    const FIXTURE: &str = include_str!("../../tests/fixtures/ch-companies-sample.ndjson");

    fn line(n: usize) -> Vec<u8> {
        FIXTURE.lines().nth(n - 1).unwrap().as_bytes().to_vec()
    }

    #[test]
    fn parses_a_proposal_entry() {
        let ev = parse_event(line(3)).unwrap();
        assert_eq!(ev.resource_kind, "company-profile");
        assert_eq!(ev.timepoint, 82417310);
        assert_eq!(ev.event_type, EventType::Changed);
        let c = ev.company.unwrap();
        assert_eq!(c.number, "14829301");
        assert_eq!(c.name, "BRIGHTWELL JOINERY LTD");
        assert_eq!(c.status, "active");
        assert_eq!(c.detail.as_deref(), Some("active-proposal-to-strike-off"));
        assert_eq!(ev.published_at.unwrap().to_rfc3339(), "2025-06-10T08:05:12+00:00");
    }

    #[test]
    fn unknown_kind_has_no_company_but_keeps_its_timepoint() {
        let ev = parse_event(line(12)).unwrap();
        assert_eq!(ev.resource_kind, "company-officer-summary");
        assert!(ev.company.is_none());
        assert_eq!(ev.timepoint, 82417318);
    }

    #[test]
    fn deleted_event() {
        let ev = parse_event(line(19)).unwrap();
        assert_eq!(ev.event_type, EventType::Deleted);
    }

    #[test]
    fn legacy_published_at_is_parsed() {
        let ev = parse_event(line(17)).unwrap();
        assert!(ev.published_at.is_some());
    }

    #[test]
    fn truncated_line_is_an_error() {
        assert!(matches!(parse_event(line(7)), Err(ParseError::Json(_))));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(parse_event(vec![0xff, 0xfe]), Err(ParseError::NotUtf8));
        assert!(parse_event(b"[1,2]".to_vec()).is_err());
        assert!(parse_event(br#"{"resource_kind":"x","event":{"timepoint":99999999999999999999}}"#.to_vec()).is_err());
        assert_eq!(
            parse_event(br#"{"resource_kind":"x","event":{"timepoint":1}}"#.to_vec()),
            Err(ParseError::NoResourceId)
        );
    }

    #[test]
    fn deleted_without_data_is_accepted() {
        let ev = parse_event(
            br#"{"resource_kind":"company-profile","resource_id":"1","event":{"timepoint":5,"type":"deleted"}}"#
                .to_vec(),
        )
        .unwrap();
        assert_eq!(ev.event_type, EventType::Deleted);
        assert!(ev.company.is_none());
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let ev = parse_event(
            br#"{"resource_kind":"company-profile","resource_id":"1","data":{"company_name":"A \"Q\" LTD","company_number":"1","company_status":"active"},"event":{"timepoint":5}}"#.to_vec(),
        )
        .unwrap();
        assert_eq!(ev.company.unwrap().name, "A \"Q\" LTD");
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
