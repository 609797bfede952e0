//! Settings: defaults ← config file ← environment ← flags.
//!
//! The config file is TOML (a commented sample ships in `assets/config.toml`).
//! Secrets never live in it: it names the environment variable that holds the
//! stream key. Paths are injected ([`Paths`]) so tests never touch the real
//! home directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::app::FeedSpec;
use crate::bounds;
use crate::cli::RunArgs;
use crate::feeds::companies_house::{ApiKey, ChSettings};
use crate::feeds::quote::Dialect;
use crate::feeds::sse::SseSettings;
use crate::feeds::supervisor::Reconnect;
use crate::feeds::websocket::WsSettings;
use crate::store::writer::RawEvents;

pub const DEFAULT_CH_URL: &str = "https://stream.companieshouse.gov.uk";
pub const DEFAULT_STREAM: &str = "/companies";
pub const DEFAULT_KEY_ENV: &str = "CH_STREAMING_API_KEY";
pub const DEFAULT_FPS: u32 = 10;
pub const DEFAULT_LATENCY_WINDOW: Duration = Duration::from_secs(300);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(90);
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(60);
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(60);
pub const DEFAULT_QUOTE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
pub const DEFAULT_EVENT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The sample shipped with the project (and tested against the defaults).
pub const SAMPLE: &str = include_str!("../assets/config.toml");

/// A mistake in the settings (exit status 2, like a command-line usage error),
/// or no home directory to find them in.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // `cause`, not `source`: the message says it, and a `source` would be
    // said again by `{:#}` (anyhow's chain).
    #[error("cannot read config file {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot find a home directory for the default config and database paths; pass --db PATH")]
    NoHome,
}

impl ConfigError {
    /// The user's settings are wrong (the file named cannot be read, or says
    /// something invalid): the process exits with 2, as for a bad flag.
    pub fn is_usage(&self) -> bool {
        matches!(self, ConfigError::Read { .. } | ConfigError::Parse { .. })
    }
}

/// A duration written as text in the file (`"90s"`, `"5m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("{e} (examples: \"30s\", \"5m\")")))
    }
}

/// `deserialize_with` helpers: each key is checked against its range (or
/// form) while the file is read, so toml reports the error with the line of
/// the value. One line per key; the ranges live in [`bounds`].
mod within {
    use std::time::Duration;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    use super::HumanDuration;
    use crate::bounds::{self, Bounds};

    type Field<T, E> = Result<Option<T>, E>;

    fn duration<'de, D: Deserializer<'de>>(
        d: D,
        key: &str,
        range: &Bounds<Duration>,
    ) -> Field<HumanDuration, D::Error> {
        let HumanDuration(value) = HumanDuration::deserialize(d)?;
        range.check(value).map(|v| Some(HumanDuration(v))).map_err(|e| D::Error::custom(format!("{key} {e}")))
    }

    /// One checked reader per duration key: `name(d)` reads the key `name`
    /// and refuses a value outside `bounds::RANGE`.
    macro_rules! duration_keys {
        ($($name:ident => $range:ident),* $(,)?) => {$(
            pub fn $name<'de, D: Deserializer<'de>>(d: D) -> Field<HumanDuration, D::Error> {
                duration(d, stringify!($name), &bounds::$range)
            }
        )*};
    }

    duration_keys! {
        read_timeout => READ_TIMEOUT,
        backoff_cap => BACKOFF_CAP,
        connect_timeout => CONNECT_TIMEOUT,
        response_timeout => RESPONSE_TIMEOUT,
        stall_after => STALL_AFTER,
        latency_window => LATENCY_WINDOW,
        stale_after => STALE_AFTER,
        quote_retention => RETENTION,
        event_retention => RETENTION,
        ping_every => PING_EVERY,
    }

    pub fn fps<'de, D: Deserializer<'de>>(d: D) -> Field<u32, D::Error> {
        let value = u32::deserialize(d)?;
        bounds::FPS.check(value).map(Some).map_err(|e| D::Error::custom(format!("fps {e}")))
    }

    pub fn ch_url<'de, D: Deserializer<'de>>(d: D) -> Field<String, D::Error> {
        let text = String::deserialize(d)?;
        match bounds::base_url(&text) {
            Ok(_) => Ok(Some(text.trim().to_string())),
            Err(e) => Err(D::Error::custom(format!("url {e}"))),
        }
    }

    pub fn stream<'de, D: Deserializer<'de>>(d: D) -> Field<String, D::Error> {
        let text = String::deserialize(d)?;
        bounds::stream_path(&text).map(|()| Some(text)).map_err(|e| D::Error::custom(format!("stream {e}")))
    }

    fn env_name<'de, D: Deserializer<'de>>(d: D, key: &str) -> Field<String, D::Error> {
        let text = String::deserialize(d)?;
        bounds::env_name(&text).map(|()| Some(text)).map_err(|e| D::Error::custom(format!("{key}: {e}")))
    }
    pub fn key_env<'de, D: Deserializer<'de>>(d: D) -> Field<String, D::Error> {
        env_name(d, "key_env")
    }
    pub fn token_env<'de, D: Deserializer<'de>>(d: D) -> Field<String, D::Error> {
        env_name(d, "token_env")
    }
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub companies_house: CompaniesHouseFile,
    pub ui: UiFile,
    pub storage: StorageFile,
    /// Quote feeds (`[[feeds]]` tables).
    pub feeds: Vec<FeedFile>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FeedFileKind {
    Ws,
    Sse,
}

/// One `[[feeds]]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeedFile {
    /// Shown in the UI and the key for stored quotes.
    pub name: String,
    pub kind: FeedFileKind,
    /// Checked against `kind` after parsing (ws/wss or http/https); the span
    /// gives the line of a bad one.
    pub url: Spanned<String>,
    /// `ws` only: `wig80` or `carbon`.
    pub dialect: Option<Dialect>,
    /// carbon: topics to subscribe to.
    #[serde(default)]
    pub topics: Vec<String>,
    /// carbon: subscription filters, e.g. `{ commodity = "oil" }`.
    pub filters: Option<toml::Table>,
    /// Keep only these symbols.
    #[serde(default)]
    pub symbols: Vec<String>,
    /// The NAME of the environment variable holding the token.
    #[serde(default, deserialize_with = "within::token_env")]
    pub token_env: Option<String>,
    #[serde(default, deserialize_with = "within::read_timeout")]
    pub read_timeout: Option<HumanDuration>,
    #[serde(default, deserialize_with = "within::ping_every")]
    pub ping_every: Option<HumanDuration>,
    #[serde(default, deserialize_with = "within::connect_timeout")]
    pub connect_timeout: Option<HumanDuration>,
    #[serde(default, deserialize_with = "within::response_timeout")]
    pub response_timeout: Option<HumanDuration>,
    /// Nothing received for this long on a live connection → `stalled`.
    #[serde(default, deserialize_with = "within::stall_after")]
    pub stall_after: Option<HumanDuration>,
}

impl FeedFile {
    pub fn deadlines(&self) -> Deadlines {
        Deadlines { connect: self.connect_timeout, response: self.response_timeout, stall_after: self.stall_after }
    }
}

/// The connection-phase deadlines and the quiet period: the same keys in
/// `[companies_house]` and every `[[feeds]]` table. The keys are listed in
/// both tables rather than `#[serde(flatten)]`ed in: flatten turns off
/// `deny_unknown_fields`, and a mistyped key must still be refused.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Deadlines {
    pub connect: Option<HumanDuration>,
    pub response: Option<HumanDuration>,
    pub stall_after: Option<HumanDuration>,
}

impl Deadlines {
    /// Applies these (flags first, then the file) to a feed's timings. The
    /// quiet period must end before the read-idle timeout does, or `stalled`
    /// could never be seen: a default that is not shorter becomes half the
    /// read timeout; a configured one that is not shorter was refused at load.
    fn apply(&self, args: &RunArgs, reconnect: &mut Reconnect) {
        if let Some(d) = args.connect_timeout.or(self.connect.map(|d| d.0)) {
            reconnect.connect_timeout = d;
        }
        if let Some(d) = args.response_timeout.or(self.response.map(|d| d.0)) {
            reconnect.response_timeout = d;
        }
        if let Some(d) = self.stall_after {
            reconnect.stall_after = d.0;
        }
        if reconnect.stall_after >= reconnect.read_timeout {
            reconnect.stall_after = reconnect.read_timeout / 2;
        }
    }

    /// `stall_after` against the read timeout it must be shorter than.
    fn check(&self, read_timeout: Duration) -> Result<(), String> {
        match self.stall_after {
            Some(stall) if stall.0 >= read_timeout => Err(format!(
                "stall_after ({}) must be shorter than read_timeout ({}): a feed is shown stalled before it is reconnected",
                humantime::format_duration(stall.0),
                humantime::format_duration(read_timeout)
            )),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CompaniesHouseFile {
    #[serde(deserialize_with = "within::ch_url")]
    pub url: Option<String>,
    #[serde(deserialize_with = "within::stream")]
    pub stream: Option<String>,
    /// The name of the environment variable holding the stream key.
    #[serde(deserialize_with = "within::key_env")]
    pub key_env: Option<String>,
    #[serde(deserialize_with = "within::read_timeout")]
    pub read_timeout: Option<HumanDuration>,
    #[serde(deserialize_with = "within::backoff_cap")]
    pub backoff_cap: Option<HumanDuration>,
    #[serde(default, deserialize_with = "within::connect_timeout")]
    pub connect_timeout: Option<HumanDuration>,
    #[serde(default, deserialize_with = "within::response_timeout")]
    pub response_timeout: Option<HumanDuration>,
    /// Nothing received for this long on a live connection → `stalled`.
    #[serde(default, deserialize_with = "within::stall_after")]
    pub stall_after: Option<HumanDuration>,
}

impl CompaniesHouseFile {
    pub fn deadlines(&self) -> Deadlines {
        Deadlines { connect: self.connect_timeout, response: self.response_timeout, stall_after: self.stall_after }
    }
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UiFile {
    #[serde(deserialize_with = "within::fps")]
    pub fps: Option<u32>,
    #[serde(deserialize_with = "within::latency_window")]
    pub latency_window: Option<HumanDuration>,
    /// Ticker rows not updated for this long are dimmed.
    #[serde(deserialize_with = "within::stale_after")]
    pub stale_after: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageFile {
    pub db: Option<PathBuf>,
    /// Quote history older than this is deleted.
    #[serde(deserialize_with = "within::quote_retention")]
    pub quote_retention: Option<HumanDuration>,
    /// Raw stream events older than this are deleted.
    #[serde(deserialize_with = "within::event_retention")]
    pub event_retention: Option<HumanDuration>,
    /// `full` (the line as received) or `fields` (only what feedtop uses).
    pub raw_events: Option<RawEvents>,
}

impl FileConfig {
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: one_line(&e, text) })?;
        config.check_feeds().map_err(|(name, why, span)| {
            let line = match &span {
                Some(span) => text.as_bytes()[..span.start.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1,
                None => text.lines().position(|l| l.contains(&format!("\"{name}\""))).map_or(0, |i| i + 1),
            };
            let line_text = text.lines().nth(line.saturating_sub(1)).unwrap_or("").trim();
            let at = if span.is_some() { format!("line {line} (`{line_text}`)") } else { format!("line {line}") };
            ConfigError::Parse { path: path.to_path_buf(), message: format!("{at}: feed \"{name}\": {why}") }
        })?;
        let ch = &config.companies_house;
        ch.deadlines().check(ch.read_timeout.map_or(DEFAULT_READ_TIMEOUT, |d| d.0)).map_err(|why| {
            let line = text.lines().position(|l| l.trim_start().starts_with("stall_after")).map_or(0, |i| i + 1);
            ConfigError::Parse { path: path.to_path_buf(), message: format!("line {line}: [companies_house] {why}") }
        })?;
        Ok(config)
    }

    /// What TOML cannot say: names unique, a dialect for every `ws` feed, a
    /// URL of the feed's kind. An error carries the span of the bad value
    /// when there is one.
    #[allow(clippy::type_complexity)]
    fn check_feeds(&self) -> Result<(), (String, String, Option<std::ops::Range<usize>>)> {
        let mut seen = std::collections::HashSet::new();
        for f in &self.feeds {
            if f.name.trim().is_empty() {
                return Err((f.name.clone(), "name must not be empty".into(), None));
            }
            if !seen.insert(f.name.as_str()) || f.name.starts_with("ch/") {
                return Err((f.name.clone(), "name is used twice (or starts with the reserved ch/)".into(), None));
            }
            match (f.kind, f.dialect) {
                (FeedFileKind::Ws, None) => {
                    return Err((f.name.clone(), "kind = \"ws\" needs dialect = \"wig80\" or \"carbon\"".into(), None))
                }
                (FeedFileKind::Sse, Some(_)) => {
                    return Err((f.name.clone(), "dialect applies to kind = \"ws\" only".into(), None))
                }
                _ => {}
            }
            let schemes = match f.kind {
                FeedFileKind::Ws => bounds::WS,
                FeedFileKind::Sse => bounds::HTTP,
            };
            if let Err(e) = bounds::url(f.url.get_ref(), schemes) {
                return Err((f.name.clone(), format!("url {e}"), Some(f.url.span())));
            }
            let read_timeout = f.read_timeout.map_or_else(
                || match f.kind {
                    FeedFileKind::Ws => WsSettings::new("", Dialect::Wig80).reconnect.read_timeout,
                    FeedFileKind::Sse => SseSettings::new("").reconnect.read_timeout,
                },
                |d| d.0,
            );
            if let Err(e) = f.deadlines().check(read_timeout) {
                return Err((f.name.clone(), e, None));
            }
        }
        Ok(())
    }

    /// Reads `path`; a missing file is an error only when the user named it.
    pub fn load(path: &Path, explicit: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Self::default()),
            Err(cause) => Err(ConfigError::Read { path: path.to_path_buf(), cause }),
        }
    }
}

/// toml's messages span several lines with a source excerpt; keep one line:
/// where, which key, and why.
fn one_line(e: &toml::de::Error, text: &str) -> String {
    let reason = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let line_text = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line} (`{line_text}`): {reason}")
        }
        None => reason,
    }
}

/// Where files live by default.
#[derive(Debug, Clone)]
pub struct Paths {
    pub config_file: PathBuf,
    pub data_dir: PathBuf,
}

impl Paths {
    pub fn from_system() -> Result<Self, ConfigError> {
        let dirs = directories::ProjectDirs::from("", "", "feedtop").ok_or(ConfigError::NoHome)?;
        Ok(Self { config_file: dirs.config_dir().join("config.toml"), data_dir: dirs.data_dir().to_path_buf() })
    }
}

/// Everything the run needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ch: ChSettings,
    /// True when running against the built-in simulator.
    pub demo: bool,
    /// The simulators inject faults at random (`--chaos`).
    pub chaos: bool,
    pub db_path: PathBuf,
    pub fps: u32,
    pub latency_window: Duration,
    pub key_env: String,
    /// Quote feeds from the config file (replaced by the simulators in the demo).
    pub quote_feeds: Vec<FeedSpec>,
    pub stale_after: Duration,
    pub quote_retention: Duration,
    pub event_retention: Duration,
    pub raw_events: RawEvents,
    /// Names of token variables that feeds want but the environment lacks.
    pub missing_tokens: Vec<String>,
}

/// Merges defaults, the file, the environment (through `env`) and the flags.
pub fn resolve(args: &RunArgs, file: &FileConfig, env: &dyn Fn(&str) -> Option<String>, paths: &Paths) -> Settings {
    let ch_file = &file.companies_house;
    let key_env = ch_file.key_env.clone().unwrap_or_else(|| DEFAULT_KEY_ENV.to_string());
    let key = env(&key_env).and_then(ApiKey::new);
    let url = args.ch_url.clone().or_else(|| ch_file.url.clone());
    // No key and no custom URL: there is nothing real to watch, so show the demo.
    let demo = args.demo || args.chaos || (key.is_none() && url.is_none());
    let url = url.unwrap_or_else(|| DEFAULT_CH_URL.to_string());
    let stream = args.stream.clone().or_else(|| ch_file.stream.clone()).unwrap_or_else(|| DEFAULT_STREAM.to_string());

    let mut ch = ChSettings::new(url, stream, if demo { None } else { key });
    ch.reconnect.read_timeout = args.read_timeout.or(ch_file.read_timeout.map(|d| d.0)).unwrap_or(DEFAULT_READ_TIMEOUT);
    ch.reconnect.backoff_cap = args.backoff_cap.or(ch_file.backoff_cap.map(|d| d.0)).unwrap_or(DEFAULT_BACKOFF_CAP);
    ch_file.deadlines().apply(args, &mut ch.reconnect);

    let db_name = if demo { "demo.db" } else { "feedtop.db" };
    let db_path = args
        .db
        .clone()
        .or_else(|| if demo { None } else { file.storage.db.clone() })
        .unwrap_or_else(|| paths.data_dir.join(db_name));
    Settings {
        ch,
        demo,
        chaos: args.chaos,
        db_path,
        fps: args.fps.or(file.ui.fps).unwrap_or(DEFAULT_FPS),
        latency_window: args.latency_window.or(file.ui.latency_window.map(|d| d.0)).unwrap_or(DEFAULT_LATENCY_WINDOW),
        key_env,
        quote_feeds: file.feeds.iter().map(|f| quote_feed(f, args, env)).collect(),
        stale_after: file.ui.stale_after.map_or(DEFAULT_STALE_AFTER, |d| d.0),
        quote_retention: file.storage.quote_retention.map_or(DEFAULT_QUOTE_RETENTION, |d| d.0),
        event_retention: file.storage.event_retention.map_or(DEFAULT_EVENT_RETENTION, |d| d.0),
        raw_events: file.storage.raw_events.unwrap_or_default(),
        missing_tokens: file
            .feeds
            .iter()
            .filter_map(|f| f.token_env.clone())
            .filter(|name| env(name).and_then(ApiKey::new).is_none())
            .collect(),
    }
}

/// A `[[feeds]]` table as a feed to run.
fn quote_feed(f: &FeedFile, args: &RunArgs, env: &dyn Fn(&str) -> Option<String>) -> FeedSpec {
    let token = f.token_env.as_deref().and_then(env).and_then(ApiKey::new);
    match (f.kind, f.dialect) {
        (FeedFileKind::Ws, dialect) => {
            // check_feeds guarantees a dialect for ws feeds.
            let mut ws = WsSettings::new(f.url.get_ref(), dialect.unwrap_or(Dialect::Wig80));
            ws.token = token;
            if !f.topics.is_empty() {
                ws.topics = f.topics.clone();
            }
            ws.filters = f.filters.as_ref().map(|t| toml_to_json(t.clone()));
            ws.symbols = f.symbols.clone();
            if let Some(d) = f.read_timeout {
                ws.reconnect.read_timeout = d.0;
            }
            if let Some(d) = f.ping_every {
                ws.ping_every = d.0;
            }
            f.deadlines().apply(args, &mut ws.reconnect);
            FeedSpec::websocket(f.name.clone(), ws)
        }
        (FeedFileKind::Sse, _) => {
            let mut sse = SseSettings::new(f.url.get_ref());
            sse.token = token;
            sse.symbols = f.symbols.clone();
            if let Some(d) = f.read_timeout {
                sse.reconnect.read_timeout = d.0;
            }
            f.deadlines().apply(args, &mut sse.reconnect);
            FeedSpec::sse(f.name.clone(), sse)
        }
    }
}

fn toml_to_json(table: toml::Table) -> serde_json::Map<String, serde_json::Value> {
    table.into_iter().map(|(k, v)| (k, serde_json::to_value(v).unwrap_or(serde_json::Value::Null))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Paths {
        Paths { config_file: "/nonexistent/config.toml".into(), data_dir: "/data".into() }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn shipped_sample_parses_and_equals_the_defaults() {
        let sample = FileConfig::parse(SAMPLE, Path::new("assets/config.toml")).unwrap();
        let from_sample = resolve(&RunArgs::default(), &sample, &no_env, &paths());
        let from_nothing = resolve(&RunArgs::default(), &FileConfig::default(), &no_env, &paths());
        assert_eq!(format!("{from_sample:?}"), format!("{from_nothing:?}"));
        assert_eq!(from_sample.ch.reconnect.read_timeout, DEFAULT_READ_TIMEOUT);
        assert_eq!(from_sample.fps, DEFAULT_FPS);
    }

    #[test]
    fn no_key_means_demo_with_its_own_database() {
        let s = resolve(&RunArgs::default(), &FileConfig::default(), &no_env, &paths());
        assert!(s.demo);
        assert_eq!(s.db_path, PathBuf::from("/data/demo.db"));
        assert!(s.ch.key.is_none());
    }

    #[test]
    fn chaos_means_the_demo_even_with_a_key() {
        let env = |name: &str| (name == "CH_STREAMING_API_KEY").then(|| "k-123".to_string());
        let args = RunArgs { chaos: true, ..RunArgs::default() };
        let s = resolve(&args, &FileConfig::default(), &env, &paths());
        assert!(s.demo && s.chaos);
        assert!(s.ch.key.is_none(), "the real key is never sent to a simulator");
        assert_eq!(s.db_path, PathBuf::from("/data/demo.db"));
        assert!(!resolve(&RunArgs::default(), &FileConfig::default(), &no_env, &paths()).chaos, "calm by default");
    }

    #[test]
    fn key_from_the_environment_means_live() {
        let env = |name: &str| (name == "CH_STREAMING_API_KEY").then(|| "k-123".to_string());
        let s = resolve(&RunArgs::default(), &FileConfig::default(), &env, &paths());
        assert!(!s.demo);
        assert_eq!(s.ch.key, ApiKey::new("k-123"));
        assert_eq!(s.ch.base_url, DEFAULT_CH_URL);
        assert_eq!(s.db_path, PathBuf::from("/data/feedtop.db"));
    }

    #[test]
    fn key_env_name_comes_from_the_file() {
        let file = FileConfig::parse("[companies_house]\nkey_env = \"MY_KEY\"\n", Path::new("c.toml")).unwrap();
        let env = |name: &str| (name == "MY_KEY").then(|| "abc".to_string());
        let s = resolve(&RunArgs::default(), &file, &env, &paths());
        assert_eq!(s.ch.key, ApiKey::new("abc"));
    }

    #[test]
    fn flags_beat_the_file() {
        let file = FileConfig::parse(
            "[companies_house]\nurl = \"http://file\"\nread_timeout = \"10s\"\n[ui]\nfps = 5\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let args = RunArgs {
            ch_url: Some("http://flag".into()),
            fps: Some(20),
            db: Some("/tmp/x.db".into()),
            ..Default::default()
        };
        let s = resolve(&args, &file, &no_env, &paths());
        assert_eq!(s.ch.base_url, "http://flag");
        assert_eq!(s.ch.reconnect.read_timeout, Duration::from_secs(10));
        assert_eq!(s.fps, 20);
        assert_eq!(s.db_path, PathBuf::from("/tmp/x.db"));
        // A custom URL without a key is watched as it is, not replaced by the demo.
        assert!(!s.demo);
    }

    #[test]
    fn quote_feeds_from_the_file_take_tokens_from_the_environment() {
        let text = r#"
[[feeds]]
name = "wig80"
kind = "ws"
dialect = "wig80"
url = "ws://localhost:8765"
symbols = ["PKN", "KGHM"]

[[feeds]]
name = "carbon"
kind = "ws"
dialect = "carbon"
url = "ws://localhost:8001/ws/stream"
token_env = "CARBON_TOKEN"
topics = ["served.market.latest_prices.v1"]
filters = { commodity = "oil" }

[[feeds]]
name = "prices-sse"
kind = "sse"
url = "http://localhost:8001/sse/stream"
token_env = "MISSING_TOKEN_VAR"
read_timeout = "2m"
"#;
        let file = FileConfig::parse(text, Path::new("c.toml")).unwrap();
        let env = |name: &str| (name == "CARBON_TOKEN").then(|| "jwt-abc".to_string());
        let s = resolve(&RunArgs::default(), &file, &env, &paths());
        assert_eq!(s.quote_feeds.len(), 3);
        assert_eq!(s.quote_feeds[0].info.kind.label(), "ws/wig80");
        assert_eq!(s.quote_feeds[2].info.kind.label(), "sse");
        match &s.quote_feeds[1].settings {
            crate::app::FeedSettings::WebSocket(ws) => {
                assert_eq!(ws.token, ApiKey::new("jwt-abc"));
                assert_eq!(ws.filters.as_ref().unwrap()["commodity"], "oil");
            }
            other => panic!("{other:?}"),
        }
        match &s.quote_feeds[2].settings {
            crate::app::FeedSettings::Sse(sse) => assert_eq!(sse.reconnect.read_timeout, Duration::from_secs(120)),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.missing_tokens, ["MISSING_TOKEN_VAR"]);
        assert!(!format!("{s:?}").contains("jwt-abc"), "settings never print a token");
    }

    /// A panic message or a `{:?}` in a log line prints settings with Debug:
    /// neither the resolved settings nor any feed's own settings show a secret,
    /// however they are printed.
    #[test]
    fn no_settings_debug_print_shows_a_secret() {
        let text = r#"
[companies_house]
key_env = "MY_CH_KEY"

[[feeds]]
name = "carbon"
kind = "ws"
dialect = "carbon"
url = "ws://localhost:8001/ws/stream"
token_env = "WS_TOKEN"

[[feeds]]
name = "sse"
kind = "sse"
url = "http://localhost:8001/sse/stream"
token_env = "SSE_TOKEN"
"#;
        let secrets = [("MY_CH_KEY", "ch-key-8d2f"), ("WS_TOKEN", "ws-tok-41aa"), ("SSE_TOKEN", "sse-tok-9c0e")];
        let env = |name: &str| secrets.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string());
        let file = FileConfig::parse(text, Path::new("c.toml")).unwrap();
        let s = resolve(
            &RunArgs { ch_url: Some("http://127.0.0.1:9".into()), ..Default::default() },
            &file,
            &env,
            &paths(),
        );
        assert!(!s.demo);
        assert_eq!(s.ch.key, ApiKey::new("ch-key-8d2f"), "the key is there, only not printed");

        let mut printed = vec![format!("{s:?}"), format!("{s:#?}"), format!("{:?}", s.ch), format!("{:#?}", s.ch)];
        for feed in &s.quote_feeds {
            printed.push(format!("{feed:?}"));
            printed.push(format!("{feed:#?}"));
            match &feed.settings {
                crate::app::FeedSettings::WebSocket(ws) => {
                    assert_eq!(ws.token, ApiKey::new("ws-tok-41aa"));
                    printed.push(format!("{ws:?}"));
                }
                crate::app::FeedSettings::Sse(sse) => {
                    assert_eq!(sse.token, ApiKey::new("sse-tok-9c0e"));
                    printed.push(format!("{sse:?}"));
                }
                other => panic!("{other:?}"),
            }
        }
        let pipeline = crate::app::PipelineConfig {
            feeds: s.quote_feeds.clone(),
            db_path: s.db_path.clone(),
            latency_window: s.latency_window,
            demo: false,
            writer: Default::default(),
        };
        printed.push(format!("{pipeline:?}"));
        for text in &printed {
            for (_, secret) in secrets {
                assert!(!text.contains(secret), "{secret} printed in {text}");
            }
            assert!(!text.contains("-8d2f") && !text.contains("-41aa") && !text.contains("-9c0e"), "{text}");
        }
        assert!(printed[0].contains("ApiKey(redacted)"), "the key is shown as present: {}", printed[0]);
    }

    #[test]
    fn deadlines_and_quiet_periods_reach_every_feed() {
        let text = r#"
[companies_house]
response_timeout = "10s"
stall_after = "20s"

[[feeds]]
name = "w"
kind = "ws"
dialect = "wig80"
url = "ws://localhost:8765"
connect_timeout = "5s"

[[feeds]]
name = "s"
kind = "sse"
url = "http://localhost:8001/sse/stream"
read_timeout = "20s"
"#;
        let file = FileConfig::parse(text, Path::new("c.toml")).unwrap();
        let args = RunArgs { response_timeout: Some(Duration::from_secs(7)), ..RunArgs::default() };
        let s = resolve(&args, &file, &no_env, &paths());
        let secs = Duration::from_secs;
        // The flag beats the file for every feed.
        assert_eq!((s.ch.reconnect.response_timeout, s.ch.reconnect.stall_after), (secs(7), secs(20)));
        let timings: Vec<_> = s.quote_feeds.iter().map(|f| f.reconnect().clone()).collect();
        assert_eq!((timings[0].connect_timeout, timings[0].response_timeout), (secs(5), secs(7)));
        assert_eq!(timings[0].stall_after, secs(30), "the ws default");
        assert_eq!(timings[1].stall_after, secs(10), "half a read timeout shorter than the default quiet period");
    }

    #[test]
    fn a_quiet_period_not_shorter_than_the_read_timeout_is_refused() {
        let ch = "[companies_house]\nread_timeout = \"30s\"\nstall_after = \"30s\"\n";
        let e = FileConfig::parse(ch, Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("stall_after (30s) must be shorter than read_timeout (30s)"), "{e}");
        let feed =
            "[[feeds]]\nname = \"w\"\nkind = \"ws\"\ndialect = \"wig80\"\nurl = \"ws://x\"\nstall_after = \"90s\"\n";
        let e = FileConfig::parse(feed, Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("feed \"w\"") && e.contains("shorter than read_timeout (1m)"), "{e}");
        let e = FileConfig::parse("[companies_house]\nresponse_timeout = \"0s\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("response_timeout must be between 1s and 5m"), "{e}");
    }

    #[test]
    fn feed_mistakes_are_named() {
        let e = FileConfig::parse("[[feeds]]\nname = \"w\"\nkind = \"ws\"\nurl = \"ws://x\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("needs dialect"), "{e}");
        let twice = "[[feeds]]\nname = \"a\"\nkind = \"sse\"\nurl = \"http://x\"\n[[feeds]]\nname = \"a\"\nkind = \"sse\"\nurl = \"http://y\"\n";
        assert!(FileConfig::parse(twice, Path::new("c.toml")).unwrap_err().to_string().contains("used twice"));
        let e = FileConfig::parse("[[feeds]]\nname = \"a\"\nkind = \"mqtt\"\nurl = \"x\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("mqtt"), "{e}");
    }

    /// Every bounded key refuses a value out of its range, and every URL a
    /// wrong scheme, with the file, the line, the key and what is allowed.
    #[test]
    fn every_key_out_of_range_names_its_line_key_and_range() {
        let feed = |extra: &str| format!("[[feeds]]\nname = \"q\"\nkind = \"sse\"\nurl = \"http://h/s\"\n{extra}\n");
        let ws_feed =
            |url: &str| format!("[[feeds]]\nname = \"w\"\nkind = \"ws\"\ndialect = \"wig80\"\nurl = \"{url}\"\n");
        let cases = [
            (
                "[companies_house]\nbackoff_cap = \"0s\"\n".to_string(),
                2,
                "backoff_cap must be between 1s and 1h (got 0s)",
            ),
            ("[companies_house]\nread_timeout = \"0s\"\n".into(), 2, "read_timeout must be between 1s and 1h"),
            ("[companies_house]\nread_timeout = \"2h\"\n".into(), 2, "read_timeout must be between 1s and 1h (got 2h)"),
            ("[companies_house]\nurl = \"ftp://x\"\n".into(), 2, "url has the scheme ftp:, not http:// or https://"),
            ("[companies_house]\nurl = \"http://[::1\"\n".into(), 2, "url is not a URL"),
            ("[companies_house]\nurl = \"\"\n".into(), 2, "url is empty"),
            ("[companies_house]\nurl = \"http://x:99999\"\n".into(), 2, "invalid port"),
            ("[companies_house]\nstream = \"companies\"\n".into(), 2, "stream \"companies\" must start with /"),
            ("[companies_house]\nkey_env = \"\"\n".into(), 2, "key_env: \"\" is not an environment variable name"),
            ("[ui]\nfps = 0\n".into(), 2, "fps must be between 1 and 60 (got 0)"),
            ("[ui]\n\nfps = 61\n".into(), 3, "fps must be between 1 and 60 (got 61)"),
            ("[ui]\nlatency_window = \"1s\"\n".into(), 2, "latency_window must be between 10s and 1d"),
            ("[ui]\nstale_after = \"0s\"\n".into(), 2, "stale_after must be between 1s and 7d"),
            ("[storage]\nquote_retention = \"1m\"\n".into(), 2, "quote_retention must be between 1h and 3650d"),
            ("[storage]\nevent_retention = \"100000d\"\n".into(), 2, "event_retention must be between 1h and 3650d"),
            (feed("read_timeout = \"0s\""), 5, "read_timeout must be between 1s and 1h"),
            (feed("ping_every = \"0s\""), 5, "ping_every must be between 1s and 1h"),
            (feed("token_env = \"A=B\""), 5, "token_env"),
            (ws_feed("not a url"), 5, "feed \"w\": url is not a URL"),
            (ws_feed("http://h/x"), 5, "feed \"w\": url has the scheme http:, not ws:// or wss://"),
            (ws_feed("javascript:"), 5, "url has the scheme javascript:"),
            (
                feed("").replace("http://h/s", "ws://h/s"),
                4,
                "feed \"q\": url has the scheme ws:, not http:// or https://",
            ),
        ];
        for (text, line, why) in cases {
            let e = FileConfig::parse(&text, Path::new("c.toml")).unwrap_err().to_string();
            assert!(e.starts_with("config file c.toml: "), "{e}");
            assert!(e.contains(&format!("line {line} (`")) && e.contains(why), "{text}\n→ {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn values_at_the_ends_of_their_ranges_are_taken_as_given() {
        let text = "[companies_house]\nbackoff_cap = \"1s\"\nread_timeout = \"1h\"\n[ui]\nfps = 60\n";
        let file = FileConfig::parse(text, Path::new("c.toml")).unwrap();
        let s = resolve(&RunArgs::default(), &file, &no_env, &paths());
        assert_eq!(s.ch.reconnect.backoff_cap, Duration::from_secs(1));
        assert_eq!(s.ch.reconnect.read_timeout, Duration::from_secs(3600));
        assert_eq!(s.fps, 60);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = FileConfig::parse("[ui]\nfsp = 5\n", Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("line 2") && e.contains("fsp"), "{e}");
    }

    #[test]
    fn bad_duration_is_named() {
        let e = FileConfig::parse("[ui]\nlatency_window = \"forever\"\n", Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("examples"), "{e}");
    }

    #[test]
    fn missing_default_file_is_fine_but_a_named_one_is_not() {
        let missing = Path::new("/nonexistent/feedtop/config.toml");
        assert_eq!(FileConfig::load(missing, false).unwrap(), FileConfig::default());
        let e = FileConfig::load(missing, true).unwrap_err().to_string();
        assert!(e.contains("cannot read config file"), "{e}");
    }
}
