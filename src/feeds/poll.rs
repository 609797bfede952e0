//! Polled quote feeds (docs/protocols.md §5): one `GET` for all symbols every
//! `every`, its whole body decoded by the format's decoder.
//!
//! The feed is a [`Connector`] like the streaming ones, so the supervisor's
//! states, backoff and commands apply unchanged. One attempt is a run of good
//! polls: the first good answer makes the feed `live`, each one after it
//! keeps it so, and the first failure (no answer in time, an HTTP error, a
//! 429, an HTML page or text that is not quote CSV) ends the attempt with the
//! feed's error, and the supervisor backs off. Whatever the supervisor's
//! backoff says, the next request never comes sooner than `every` after a
//! failure (a 429's `Retry-After` is obeyed, up to a ceiling): the provider
//! is a public web service and asks to be polled gently.
//!
//! [`Command::Reconnect`](super::Command::Reconnect) polls at once: the
//! attempt ends and the supervisor starts the next one without a wait.
//!
//! A poll feed is quiet between polls by design, so its quiet period
//! (`stall_after`) is longer than `every`: see [`PollSettings::quiet_period`].

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::time::Instant;

use super::backoff::parse_retry_after;
use super::companies_house::{error_chain, header_text, http_client, send_with_deadlines, SendFailed};
use super::decode::stooq::{self, Snapshot};
use super::quote::{PollFormat, Quote};
use super::supervisor::{Connector, FeedLink, Outcome, Reconnect, Retry, MIN_WAIT};
use super::{ConnState, FeedMsgKind};

/// How often a poll feed asks when the config does not say.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(30);
/// The longest wait a 429's `Retry-After` is obeyed for; a server asking for
/// a day is asked again after this (the countdown shows it).
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(15 * 60);
/// The wait after a 429 without a usable `Retry-After`.
pub const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// Where and how often to poll, and what the answer is.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// The provider's origin, e.g. `https://stooq.com`; the format's path
    /// and query are added to it.
    pub base_url: String,
    /// As the provider spells them (`pkn`, `cdr`, `aapl.us`): sent trimmed,
    /// lowercased and URL-encoded, all in one request.
    pub symbols: Vec<String>,
    /// From the start of one request to the start of the next. The config's
    /// floor is `bounds::POLL_EVERY` (15 s); code (tests) may go lower, but
    /// never below the supervisor's `MIN_WAIT`.
    pub every: Duration,
    /// `connect_timeout` and `response_timeout` bound each request (the whole
    /// body must be in within `response_timeout` of the head);
    /// `stall_after` is the quiet period (see [`PollSettings::quiet_period`]).
    /// `read_timeout` does not apply: between polls the feed is quiet by
    /// design, and each body has a deadline of its own.
    pub reconnect: Reconnect,
    pub format: PollFormat,
    /// The wait after a 429 without a usable `Retry-After`.
    pub rate_limit_wait: Duration,
}

impl PollSettings {
    pub fn new(format: PollFormat, base_url: impl Into<String>, symbols: Vec<String>, every: Duration) -> Self {
        let mut settings = Self {
            base_url: base_url.into(),
            symbols,
            every: every.max(MIN_WAIT),
            reconnect: Reconnect::default(),
            format,
            rate_limit_wait: RATE_LIMIT_WAIT,
        };
        settings.fit_quiet_period();
        settings
    }

    /// How long a live poll feed may go without an answer before it is shown
    /// stalled: two polls (one missed answer is not yet a stall) and the
    /// time the second may take. Shorter, a feed would flicker `stalled`
    /// between every two polls.
    pub fn quiet_period(&self) -> Duration {
        self.every.saturating_mul(2).saturating_add(self.reconnect.response_timeout)
    }

    /// Sets `stall_after` to [`PollSettings::quiet_period`] (and `read_timeout`,
    /// unused here, above it, as the settings checks want). Call it again
    /// after changing `every` or `response_timeout`.
    pub fn fit_quiet_period(&mut self) {
        let quiet = self.quiet_period();
        self.reconnect.stall_after = quiet;
        self.reconnect.read_timeout = quiet.saturating_add(self.every);
    }

    /// The one request for every symbol. stooq: `/q/l/?s=a+b+c&f=sd2t2ohlcv&h&e=csv`
    /// (`f`: symbol, date, time, open, high, low, close, volume; `h`: a header row).
    pub fn url(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        match self.format {
            PollFormat::Stooq => {
                let symbols: Vec<String> = self
                    .symbols
                    .iter()
                    .map(|s| s.trim().to_lowercase())
                    .filter(|s| !s.is_empty())
                    .map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect())
                    .collect();
                format!("{base}/q/l/?s={}&f=sd2t2ohlcv&h&e=csv", symbols.join("+"))
            }
        }
    }
}

/// The wait after a 429: the server's `Retry-After` (or the default), no
/// longer than [`RETRY_AFTER_CEILING`] and no shorter than one poll interval.
pub fn rate_limited_wait(retry_after: Option<Duration>, settings: &PollSettings) -> Duration {
    retry_after.unwrap_or(settings.rate_limit_wait).min(RETRY_AFTER_CEILING).max(settings.every)
}

/// An error answer as one line: the status, and the page's title or the
/// body's first line, short.
fn refusal(status: reqwest::StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(1024)]);
    let text = text.trim_start_matches('\u{feff}').trim();
    let shown = if text.starts_with('<') {
        stooq::html_title(body).unwrap_or_default()
    } else {
        text.lines().next().unwrap_or("").chars().take(160).collect()
    };
    if shown.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {shown}")
    }
}

/// What one poll gave.
enum Polled {
    /// `at`: when the whole body was in, the receive time of all it holds.
    Answer {
        snapshot: Snapshot,
        rtt: Duration,
        at: DateTime<Utc>,
    },
    Failed {
        error: String,
        retry: Retry,
    },
    Command(Outcome),
}

pub struct PollConnector {
    settings: PollSettings,
    client: reqwest::Client,
    url: String,
    /// The quotes of the last good answer, by symbol: only quotes that
    /// changed since are sent on, so an unchanged price is not a new event,
    /// a new point in the sparkline or a new (ever older) latency sample.
    last: HashMap<String, Quote>,
}

impl PollConnector {
    pub fn new(settings: PollSettings) -> anyhow::Result<Self> {
        let client = http_client(&settings.base_url, settings.reconnect.connect_timeout)?;
        let url = settings.url();
        Ok(Self { settings, client, url, last: HashMap::new() })
    }

    /// A failure's retry: never sooner than the next poll would have been.
    fn gentle(&self) -> Retry {
        Retry::AtLeast(self.settings.every)
    }

    fn failed(&self, error: String) -> Polled {
        Polled::Failed { error, retry: self.gentle() }
    }

    async fn poll_once(&mut self, link: &mut FeedLink) -> Polled {
        let sent = Instant::now();
        let request =
            self.client.get(&self.url).header(reqwest::header::ACCEPT, "text/csv, text/plain;q=0.9, */*;q=0.5");
        let response = match send_with_deadlines(request, &self.settings.reconnect, link).await {
            Ok(r) => r,
            Err(SendFailed::Command(outcome)) => return Polled::Command(outcome),
            Err(SendFailed::Error(e)) => return self.failed(e),
        };
        let status = response.status();
        if status.is_redirection() {
            let location = header_text(&response, reqwest::header::LOCATION);
            return self.failed(super::redirect::moved(status.as_u16(), location.as_deref(), response.url()));
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let asked = header_text(&response, reqwest::header::RETRY_AFTER)
                .and_then(|v| parse_retry_after(&v, SystemTime::now()));
            let wait = rate_limited_wait(asked, &self.settings);
            let error = match asked {
                Some(asked) if asked > wait => format!(
                    "HTTP 429: rate limited; the server asked for {}, waiting {} (the most obeyed)",
                    humantime::format_duration(asked),
                    humantime::format_duration(wait)
                ),
                _ => format!("HTTP 429: rate limited; waiting {}", humantime::format_duration(wait)),
            };
            return Polled::Failed { error, retry: Retry::AtLeast(wait) };
        }
        if !status.is_success() {
            // The body says why (a page title, a line of text), if it comes
            // within the same limits as an answer; else the status alone.
            let body = match self.read_body(response, link).await {
                Ok(body) => body,
                Err(Polled::Command(outcome)) => return Polled::Command(outcome),
                Err(_) => Vec::new(),
            };
            return self.failed(refusal(status, &body));
        }
        let body = match self.read_body(response, link).await {
            Ok(body) => body,
            Err(failed) => return failed,
        };
        let at = link.now();
        let rtt = sent.elapsed();
        let decoded = match self.settings.format {
            PollFormat::Stooq => stooq::decode(&body),
        };
        match decoded {
            Ok(snapshot) => Polled::Answer { snapshot, rtt, at },
            Err(e) => self.failed(format!("{e} (HTTP {status})")),
        }
    }

    /// The whole body, at most `stooq::MAX_BODY` bytes, within
    /// `response_timeout` of the head (a server that trickles it cannot hold
    /// the feed), or why not.
    async fn read_body(&self, response: reqwest::Response, link: &mut FeedLink) -> Result<Vec<u8>, Polled> {
        let max = stooq::MAX_BODY;
        let too_large = || self.failed(format!("a response over the {} KiB limit", max / 1024));
        if response.content_length().is_some_and(|len| len > max as u64) {
            return Err(too_large());
        }
        let within = self.settings.reconnect.response_timeout;
        let deadline = Instant::now() + within;
        let mut stream = response.bytes_stream();
        let mut body = Vec::new();
        loop {
            tokio::select! {
                next = stream.next() => match next {
                    None => return Ok(body),
                    Some(Err(e)) => return Err(self.failed(format!("the response broke off: {}", error_chain(&e)))),
                    Some(Ok(chunk)) => {
                        if body.len() + chunk.len() > max {
                            return Err(too_large());
                        }
                        body.extend_from_slice(&chunk);
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let within = humantime::format_duration(within);
                    return Err(self.failed(format!("the response did not finish within {within}")));
                }
                cmd = link.command() => return Err(Polled::Command(FeedLink::on_command(cmd))),
            }
        }
    }

    /// The messages for one good answer: its round trip, the quotes that
    /// changed, the symbols without data, and the rows that were unreadable.
    fn messages(&mut self, snapshot: Snapshot, rtt: Duration) -> Vec<FeedMsgKind> {
        let mut out = vec![FeedMsgKind::Rtt(rtt)];
        let changed: Vec<Quote> =
            snapshot.quotes.iter().filter(|q| self.last.get(&q.symbol) != Some(*q)).cloned().collect();
        // Only this answer's quotes are kept: the map stays as small as one answer.
        self.last = snapshot.quotes.into_iter().map(|q| (q.symbol.clone(), q)).collect();
        if !changed.is_empty() {
            out.push(FeedMsgKind::Quotes(changed));
        }
        out.push(FeedMsgKind::NoData(snapshot.no_data));
        out.extend(snapshot.malformed.into_iter().map(|reason| FeedMsgKind::Malformed { reason }));
        out
    }
}

impl Connector for PollConnector {
    async fn attempt(&mut self, link: &mut FeedLink) -> Outcome {
        let mut live_since: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let (snapshot, rtt, at) = match self.poll_once(link).await {
                Polled::Answer { snapshot, rtt, at } => (snapshot, rtt, at),
                Polled::Command(outcome) => return outcome,
                Polled::Failed { error, retry } => {
                    let live_for = live_since.map_or(Duration::ZERO, |since| since.elapsed());
                    return Outcome::Dropped { error, live_for, retry };
                }
            };
            if live_since.is_none() {
                if !link.send_at(at, FeedMsgKind::State(ConnState::Live)).await {
                    return Outcome::Shutdown;
                }
                live_since = Some(started);
            }
            // One answer, one receive time, however slowly the core takes it.
            for kind in self.messages(snapshot, rtt) {
                if !link.send_at(at, kind).await {
                    return Outcome::Shutdown;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(started + self.settings.every) => {}
                cmd = link.command() => return FeedLink::on_command(cmd),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(every: u64) -> PollSettings {
        let symbols = ["PKN", " cdr ", "", "aapl.us", "^spx", "a&b=c"].map(String::from).to_vec();
        PollSettings::new(PollFormat::Stooq, "https://stooq.com/", symbols, Duration::from_secs(every))
    }

    #[test]
    fn one_url_carries_every_symbol_lowercased_and_encoded() {
        assert_eq!(
            settings(30).url(),
            "https://stooq.com/q/l/?s=pkn+cdr+aapl.us+%5Espx+a%26b%3Dc&f=sd2t2ohlcv&h&e=csv"
        );
    }

    #[test]
    fn the_quiet_period_is_longer_than_the_interval() {
        let mut s = settings(30);
        assert_eq!(s.reconnect.stall_after, Duration::from_secs(90), "two polls and a response time");
        assert!(s.reconnect.stall_after < s.reconnect.read_timeout);
        s.every = Duration::from_secs(600);
        s.reconnect.response_timeout = Duration::from_secs(5);
        s.fit_quiet_period();
        assert_eq!(s.reconnect.stall_after, Duration::from_secs(1205));
        // Zero is not a busy loop.
        assert_eq!(settings(0).every, MIN_WAIT);
    }

    #[test]
    fn a_429_waits_what_it_asks_within_a_ceiling_and_never_less_than_a_poll() {
        let s = settings(30);
        assert_eq!(rate_limited_wait(Some(Duration::from_secs(120)), &s), Duration::from_secs(120));
        assert_eq!(rate_limited_wait(Some(Duration::from_secs(86_400)), &s), RETRY_AFTER_CEILING);
        assert_eq!(rate_limited_wait(Some(Duration::ZERO), &s), Duration::from_secs(30));
        assert_eq!(rate_limited_wait(None, &s), RATE_LIMIT_WAIT);
        let slow = settings(3600);
        assert_eq!(rate_limited_wait(Some(Duration::from_secs(5)), &slow), Duration::from_secs(3600));
    }

    #[test]
    fn an_error_answer_is_named_by_its_status_and_its_text() {
        let status = reqwest::StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(refusal(status, b""), "HTTP 503 Service Unavailable");
        assert_eq!(refusal(status, b"overloaded\nretry later"), "HTTP 503 Service Unavailable: overloaded");
        let page = b"<html><head><title>Just a moment...</title></head><body><script>x</script></body></html>";
        assert_eq!(refusal(status, page), "HTTP 503 Service Unavailable: Just a moment...");
        assert_eq!(refusal(status, b"<html><body>x</body></html>"), "HTTP 503 Service Unavailable");
        assert!(refusal(status, &[b'x'; 10_000]).len() < 200);
    }

    #[test]
    fn only_changed_quotes_are_sent_and_no_data_every_time() {
        let mut c = PollConnector::new(settings(30)).unwrap();
        let pkn = Quote::new("PKN", 74.62);
        let cdr = Quote::new("CDR", 201.5);
        let answer = |quotes: Vec<Quote>, no_data: &[&str]| Snapshot {
            quotes,
            no_data: no_data.iter().map(|s| s.to_string()).collect(),
            malformed: vec!["line 9: no symbol".into()],
        };
        let rtt = Duration::from_millis(40);
        let first = c.messages(answer(vec![pkn.clone(), cdr.clone()], &["XYZ"]), rtt);
        assert!(
            matches!(&first[..], [
            FeedMsgKind::Rtt(_),
            FeedMsgKind::Quotes(q),
            FeedMsgKind::NoData(n),
            FeedMsgKind::Malformed { .. },
        ] if q.len() == 2 && n == &["XYZ"]),
            "{first:?}"
        );
        let moved = Quote { price: 75.0, ..pkn.clone() };
        let second = c.messages(answer(vec![moved.clone(), cdr.clone()], &[]), rtt);
        assert!(matches!(&second[1], FeedMsgKind::Quotes(q) if q[..] == [moved.clone()]), "{second:?}");
        assert!(matches!(&second[2], FeedMsgKind::NoData(n) if n.is_empty()), "{second:?}");
        let same = c.messages(answer(vec![moved, cdr], &[]), rtt);
        assert!(!same.iter().any(|m| matches!(m, FeedMsgKind::Quotes(_))), "{same:?}");
        assert!(matches!(same[0], FeedMsgKind::Rtt(_)), "an answer all the same");
    }
}
