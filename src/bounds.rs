//! Floors and ceilings for every setting a user can give, and the checks of
//! every URL, in one place: the command-line value parsers (`cli.rs`) and the
//! config file loader (`config.rs`) both use these, so a flag and its file
//! key can never accept different things.
//!
//! Why ranges at all: a zero backoff cap made thousands of requests a second
//! to a failing server, a zero read timeout reconnected in a loop and a zero
//! interval panicked. A value outside its range is refused with one line
//! naming the setting and the range, never clamped in silence: the user then
//! knows what runs.
//!
//! To add a setting: a named constant here, `value_parser = |s: &str|
//! bounds::NAME.parse(s)` on the flag, and a one-line `deserialize_with`
//! helper in `config.rs` for the file key (see `config::within`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use url::Url;

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// Read-idle timeout of any feed (`--read-timeout`, `read_timeout`): below a
/// second a quiet feed reconnects in a loop; an hour of silence is already
/// far too long to notice a dead connection.
pub const READ_TIMEOUT: Bounds<Duration> = Bounds::new(secs(1), secs(HOUR));
/// Longest wait between reconnect attempts (`--backoff-cap`, `backoff_cap`):
/// the floor is what keeps a failing server from being hammered.
pub const BACKOFF_CAP: Bounds<Duration> = Bounds::new(secs(1), secs(HOUR));
/// TCP (and TLS) connect of any feed (`--connect-timeout`, `connect_timeout`).
pub const CONNECT_TIMEOUT: Bounds<Duration> = Bounds::new(secs(1), secs(5 * MINUTE));
/// Once connected, the response head or WebSocket upgrade
/// (`--response-timeout`, `response_timeout`).
pub const RESPONSE_TIMEOUT: Bounds<Duration> = Bounds::new(secs(1), secs(5 * MINUTE));
/// A live feed quiet for this long is shown stalled (`stall_after`); it must
/// also be shorter than the feed's read timeout, checked where both are known.
pub const STALL_AFTER: Bounds<Duration> = Bounds::new(secs(1), secs(HOUR));
/// Latency percentile window (`--latency-window`, `[ui] latency_window`).
pub const LATENCY_WINDOW: Bounds<Duration> = Bounds::new(secs(10), secs(DAY));
/// Ticker rows are dimmed after this long without an update (`[ui] stale_after`).
pub const STALE_AFTER: Bounds<Duration> = Bounds::new(secs(1), secs(7 * DAY));
/// History kept in the database (`[storage] quote_retention`, `event_retention`).
pub const RETENTION: Bounds<Duration> = Bounds::new(secs(HOUR), secs(3650 * DAY));
/// A WebSocket feed's own ping (`[[feeds]] ping_every`).
pub const PING_EVERY: Bounds<Duration> = Bounds::new(secs(1), secs(HOUR));
/// A polled feed's interval (`[[feeds]] every`, `kind = "poll"`): the floor
/// is the provider's own request (stooq asks to be polled every 15 s at the
/// most); a day between polls is the most that still watches anything.
pub const POLL_EVERY: Bounds<Duration> = Bounds::new(secs(15), secs(DAY));
/// How long a company's REST enrichment is kept before it is fetched again.
pub const CACHE_AGE: Bounds<Duration> = Bounds::new(secs(MINUTE), secs(365 * DAY));
/// Redraws per second (`--fps`, `[ui] fps`).
pub const FPS: Bounds<u32> = Bounds::new(1, 60);
/// Headless: a line this often (`--interval`). The catch-up benchmark reads
/// one every 20 ms, so the floor sits below that.
pub const INTERVAL: Bounds<Duration> = Bounds::new(millis(10), secs(HOUR));
/// Headless: stop after this long (`--duration`).
pub const RUN_FOR: Bounds<Duration> = Bounds::new(millis(100), secs(366 * DAY));
/// `bench --duration`.
pub const BENCH_DURATION: Bounds<Duration> = Bounds::new(millis(100), secs(7 * DAY));
/// `bench --events`.
pub const BENCH_EVENTS: Bounds<usize> = Bounds::new(1, 100_000_000);
/// `bench --rate`, per second.
pub const BENCH_RATE: Bounds<f64> = Bounds::new(1.0, 1_000_000.0);

/// A viewer starts this far back in the relay's stream (`--since`).
pub const NATS_SINCE: Bounds<Duration> = Bounds::new(secs(0), secs(365 * DAY));
/// How long the relay's stream keeps a message (`relay --max-age`).
pub const NATS_MAX_AGE: Bounds<Duration> = Bounds::new(secs(MINUTE), secs(3650 * DAY));
/// The relay stream's size cap in bytes (`relay --max-bytes`): a megabyte
/// holds a few seconds of a busy feed; 16 TiB is more than one server has.
pub const NATS_MAX_BYTES: Bounds<usize> = Bounds::new(1 << 20, 1 << 44);
/// The relay stream's replicas (`relay --replicas`): JetStream allows 1 to 5.
pub const NATS_REPLICAS: Bounds<usize> = Bounds::new(1, 5);

/// `[[alerts]] after` (feed-down): a second is already a blip worth
/// nothing; a feed down for a week is not news any more.
pub const ALERT_AFTER: Bounds<Duration> = Bounds::new(secs(1), secs(7 * DAY));
/// `[[alerts]] within` (quote-move): below ten seconds a move is one tick's
/// noise; a day is as far back as the per-symbol sample ring reaches.
pub const ALERT_WITHIN: Bounds<Duration> = Bounds::new(secs(10), secs(DAY));
/// `[[alerts]] percent` (quote-move): 0.01 % is a tick on a big price; past
/// 1000 % nothing would ever fire (and 0 would fire on every quote).
pub const ALERT_PERCENT: Bounds<f64> = Bounds::new(0.01, 1000.0);

/// Schemes of an HTTP feed (Companies House, SSE).
pub const HTTP: &[&str] = &["http", "https"];
/// Schemes of a WebSocket feed.
pub const WS: &[&str] = &["ws", "wss"];

/// An inclusive range a setting must lie in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds<T> {
    pub min: T,
    pub max: T,
}

/// A value outside its [`Bounds`]: "must be between 1s and 1h (got 0s)".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be between {min} and {max} (got {got})")]
pub struct OutOfRange {
    pub min: String,
    pub max: String,
    pub got: String,
}

/// How a bounded value is written back to the user: in the form they type.
pub trait Shown: Copy + PartialOrd {
    fn shown(&self) -> String;
}

impl Shown for Duration {
    /// The largest unit that divides it, so that the text parses back:
    /// `3650d`, `1h`, `90s`, `250ms` (humantime would write `9years 11months …`).
    fn shown(&self) -> String {
        if self.is_zero() {
            return "0s".into();
        }
        let ms = self.as_millis();
        let units = [(DAY * 1000, "d"), (HOUR * 1000, "h"), (MINUTE * 1000, "m"), (1000, "s")];
        for (size, unit) in units {
            let size = u128::from(size);
            if ms >= size && ms % size == 0 {
                return format!("{}{unit}", ms / size);
            }
        }
        if self.subsec_nanos() % 1_000_000 == 0 {
            format!("{ms}ms")
        } else {
            format!("{}", humantime::format_duration(*self))
        }
    }
}

impl Shown for u32 {
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl Shown for usize {
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl Shown for f64 {
    fn shown(&self) -> String {
        self.to_string()
    }
}

impl<T: Shown> Bounds<T> {
    pub const fn new(min: T, max: T) -> Self {
        Self { min, max }
    }

    /// The value if it lies in the range. NaN never does.
    pub fn check(&self, value: T) -> Result<T, OutOfRange> {
        if value >= self.min && value <= self.max {
            Ok(value)
        } else {
            Err(OutOfRange { min: self.min.shown(), max: self.max.shown(), got: value.shown() })
        }
    }

    /// "1s to 1h", for help texts.
    pub fn describe(&self) -> String {
        format!("{} to {}", self.min.shown(), self.max.shown())
    }
}

impl Bounds<Duration> {
    /// A clap value parser: `30s`, `5m`, `1h30m` within the range.
    pub fn parse(&self, text: &str) -> Result<Duration, String> {
        let value = parse_duration(text)?;
        self.check(value).map_err(|e| e.to_string())
    }
}

macro_rules! parse_number {
    ($($t:ty),*) => {$(
        impl Bounds<$t> {
            /// A clap value parser: a number within the range.
            pub fn parse(&self, text: &str) -> Result<$t, String> {
                let value = <$t>::from_str(text.trim())
                    .map_err(|_| format!("{text:?} is not a number (between {} and {})", self.min.shown(), self.max.shown()))?;
                self.check(value).map_err(|e| e.to_string())
            }
        }
    )*};
}

parse_number!(u32, usize, f64);

/// `30s`, `5m`, `1h30m`, `2d`: humantime's format.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 30s, 5m, 1h30m)"))
}

/// Why a URL was refused. The text never repeats the URL (it may carry a
/// token); the caller names the setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadUrl(String);

impl fmt::Display for BadUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadUrl {}

/// Parses `text` as an absolute URL with one of `schemes`, a host, and a
/// usable port (1–65535; the parser itself refuses larger ones).
pub fn url(text: &str, schemes: &[&str]) -> Result<Url, BadUrl> {
    let wanted = schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ");
    if text.trim().is_empty() {
        return Err(BadUrl(format!("is empty; give a URL starting with {wanted}")));
    }
    let parsed =
        Url::parse(text.trim()).map_err(|e| BadUrl(format!("is not a URL ({e}); give one starting with {wanted}")))?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(BadUrl(format!("has the scheme {}:, not {wanted}", parsed.scheme())));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(BadUrl(format!("has no host; give one like {}://HOST:PORT", schemes[0])));
    }
    if parsed.port() == Some(0) {
        return Err(BadUrl("has port 0; give a port from 1 to 65535".into()));
    }
    Ok(parsed)
}

/// The Companies House base URL: an HTTP URL the stream path is appended to,
/// so it carries no query or fragment.
pub fn base_url(text: &str) -> Result<Url, BadUrl> {
    let parsed = url(text, HTTP)?;
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(BadUrl("has a query or fragment; give the base URL only (the stream path is added to it)".into()));
    }
    Ok(parsed)
}

/// A Companies House stream path: `/companies`, `/filings`, ….
pub fn stream_path(text: &str) -> Result<(), String> {
    if !text.starts_with('/') {
        return Err(format!("{text:?} must start with / (e.g. /companies)"));
    }
    if text.len() > 256 || text.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#')) {
        return Err("must be a plain path such as /companies (no spaces, controls, ? or #)".into());
    }
    Ok(())
}

/// A feed's name: its storage key, its id in headless lines, and (later) a
/// token of the relay's subject names, so it stays short and plain: 1 to 64
/// letters, digits, `-`, `_` or `/` (`ch/companies`, `wig80`).
pub fn feed_name(text: &str) -> Result<(), String> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "name {:?} must be 1 to 64 letters, digits, -, _ or / (e.g. \"wig80\", \"ch/companies\")",
            text.chars().take(80).collect::<String>()
        ))
    }
}

/// The most symbols one poll asks for: one request carries them all, and
/// the stooq decoder reads at most 1,000 rows.
pub const MAX_POLL_SYMBOLS: usize = 200;

/// A poll feed's symbols: 1 to [`MAX_POLL_SYMBOLS`], each 1 to 32 visible
/// characters (they go into the request's query, URL-encoded).
pub fn poll_symbols(symbols: &[String]) -> Result<(), String> {
    if symbols.is_empty() {
        return Err("kind = \"poll\" needs symbols, e.g. symbols = [\"pkn\", \"cdr\"]".into());
    }
    if symbols.len() > MAX_POLL_SYMBOLS {
        return Err(format!("symbols lists {}; at most {MAX_POLL_SYMBOLS} in one poll", symbols.len()));
    }
    match symbols
        .iter()
        .find(|s| s.is_empty() || s.chars().count() > 32 || s.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        Some(bad) => {
            Err(format!("symbol {:?} must be 1 to 32 visible characters", bad.chars().take(40).collect::<String>()))
        }
        None => Ok(()),
    }
}

/// The name of an environment variable (`key_env`, `token_env`): letters,
/// digits and `_`, not starting with a digit. (An empty name or one with `=`
/// cannot be looked up at all.)
pub fn env_name(text: &str) -> Result<(), String> {
    let valid = !text.is_empty()
        && text.len() <= 128
        && !text.starts_with(|c: char| c.is_ascii_digit())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!("{text:?} is not an environment variable name (letters, digits and _, e.g. CH_STREAMING_API_KEY)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_duration_range_refuses_zero_and_centuries_and_takes_its_ends() {
        let ranges = [
            READ_TIMEOUT,
            BACKOFF_CAP,
            LATENCY_WINDOW,
            STALE_AFTER,
            RETENTION,
            PING_EVERY,
            POLL_EVERY,
            INTERVAL,
            RUN_FOR,
            BENCH_DURATION,
        ];
        for r in ranges {
            assert!(r.min > Duration::ZERO && r.min <= r.max, "{r:?}");
            assert!(r.check(Duration::ZERO).is_err(), "{r:?}");
            assert!(r.check(secs(100 * 366 * DAY)).is_err(), "{r:?}");
            assert_eq!(r.check(r.min), Ok(r.min));
            assert_eq!(r.check(r.max), Ok(r.max));
            assert!(r.check(r.min - millis(1)).is_err());
            assert!(r.check(r.max + millis(1)).is_err());
            // What the range says can be typed back.
            assert_eq!(r.parse(&r.min.shown()), Ok(r.min));
            assert_eq!(r.parse(&r.max.shown()), Ok(r.max));
        }
    }

    #[test]
    fn the_message_names_the_range_and_the_value() {
        let e = BACKOFF_CAP.parse("0s").unwrap_err();
        assert_eq!(e, "must be between 1s and 1h (got 0s)");
        assert_eq!(RETENTION.describe(), "1h to 3650d");
        assert_eq!(INTERVAL.describe(), "10ms to 1h");
        assert_eq!(POLL_EVERY.parse("14s").unwrap_err(), "must be between 15s and 1d (got 14s)");
        assert_eq!(POLL_EVERY.parse("30s"), Ok(secs(30)));
        assert!(READ_TIMEOUT.parse("soon").unwrap_err().contains("examples: 30s"));
    }

    #[test]
    fn numbers() {
        assert_eq!(FPS.parse("60"), Ok(60));
        assert_eq!(FPS.parse("0").unwrap_err(), "must be between 1 and 60 (got 0)");
        assert!(FPS.parse("61").is_err());
        assert!(FPS.parse("-1").unwrap_err().contains("not a number"));
        assert!(BENCH_EVENTS.parse("0").is_err());
        assert_eq!(BENCH_RATE.parse("2500"), Ok(2500.0));
        for bad in ["0", "-5", "NaN", "inf", "1e9", "x"] {
            assert!(BENCH_RATE.parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_need_their_scheme_a_host_and_a_real_port() {
        assert!(url("https://stream.companieshouse.gov.uk", HTTP).is_ok());
        assert!(url("http://127.0.0.1:8080/x?y=1", HTTP).is_ok());
        assert!(url("wss://h/ws/stream", WS).is_ok());
        assert!(url("http://[::1]:9", HTTP).is_ok());
        let refused = [
            ("ftp://x", HTTP, "scheme ftp:"),
            ("http://[::1", HTTP, "not a URL"),
            ("", HTTP, "empty"),
            ("   ", HTTP, "empty"),
            ("javascript:", HTTP, "scheme javascript:"),
            ("javascript:alert(1)", HTTP, "scheme javascript:"),
            ("http://x:99999", HTTP, "not a URL"),
            ("http://x:0/", HTTP, "port 0"),
            ("not a url", HTTP, "not a URL"),
            ("ws://h/ws", HTTP, "scheme ws:"),
            ("http://h/sse", WS, "scheme http:"),
            ("file:///etc/passwd", HTTP, "scheme file:"),
        ];
        for (text, schemes, why) in refused {
            let e = url(text, schemes).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
        assert!(base_url("http://h/?timepoint=1").unwrap_err().to_string().contains("query"));
        assert!(base_url("http://h/prefix").is_ok());
    }

    #[test]
    fn a_refused_url_is_not_repeated_in_the_message() {
        let e = url("ftp://user:sekrit@h/?token=abc", HTTP).unwrap_err().to_string();
        assert!(!e.contains("sekrit") && !e.contains("abc"), "{e}");
    }

    #[test]
    fn stream_paths_and_env_names() {
        assert!(stream_path("/companies").is_ok());
        assert!(stream_path("/persons-with-significant-control").is_ok());
        assert!(stream_path("companies").unwrap_err().contains("must start with /"));
        assert!(stream_path("").is_err());
        assert!(stream_path("/a b").is_err());
        assert!(stream_path("/a?timepoint=1").is_err());
        assert!(stream_path("/a\u{1b}[2J").is_err());
        assert!(env_name("CH_STREAMING_API_KEY").is_ok());
        for bad in ["", "A=B", "1KEY", "A\0B", "MY KEY"] {
            assert!(env_name(bad).is_err(), "{bad:?}");
        }
    }
}
