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
use crate::feeds::poll::{self, PollSettings};
use crate::feeds::quote::{Dialect, PollFormat};
use crate::feeds::sse::SseSettings;
use crate::feeds::supervisor::Reconnect;
use crate::feeds::websocket::WsSettings;
use crate::store::writer::RawEvents;
use crate::ui::glyphs::use_ascii;
use crate::ui::theme::{color_enabled_with, ThemeName};

pub const DEFAULT_CH_URL: &str = "https://stream.companieshouse.gov.uk";
pub const DEFAULT_STREAM: &str = "/companies";
pub const DEFAULT_KEY_ENV: &str = "CH_STREAMING_API_KEY";
/// stooq's English site: the light-quote CSV with `N/D` (docs/protocols.md §5).
pub const DEFAULT_STOOQ_URL: &str = "https://stooq.com";
pub const DEFAULT_FPS: u32 = 10;
/// `--low-bandwidth`: redraws a second.
pub const LOW_BANDWIDTH_FPS: u32 = 2;
pub const DEFAULT_LATENCY_WINDOW: Duration = Duration::from_secs(300);
// Read timeouts, backoff caps and quiet periods default per feed kind, in
// each feed's settings (`default_reconnect`); the ticker's stale age is the
// view's own default.
pub use crate::ui::view::DEFAULT_STALE_AFTER;
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
    /// Flags that contradict the file.
    #[error("{0}")]
    Usage(String),
}

impl ConfigError {
    /// The user's settings are wrong (the file named cannot be read, or says
    /// something invalid): the process exits with 2, as for a bad flag.
    pub fn is_usage(&self) -> bool {
        matches!(self, ConfigError::Read { .. } | ConfigError::Parse { .. } | ConfigError::Usage(_))
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
        every => POLL_EVERY,
        since => NATS_SINCE,
        max_age => NATS_MAX_AGE,
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

    pub fn enrich_limit<'de, D: Deserializer<'de>>(d: D) -> Field<crate::enrich::Limit, D::Error> {
        let text = String::deserialize(d)?;
        crate::enrich::Limit::parse(&text).map(Some).map_err(|e| D::Error::custom(format!("limit {e}")))
    }

    pub fn enrich_on<'de, D: Deserializer<'de>>(d: D) -> Field<Vec<crate::model::strike_off::ChangeKind>, D::Error> {
        use crate::model::strike_off::ChangeKind;
        let names = Vec::<String>::deserialize(d)?;
        let kinds = names
            .iter()
            .map(|n| {
                ChangeKind::parse(n).ok_or_else(|| {
                    D::Error::custom(format!(
                        "on: {n:?} is not a change; use \"entered\", \"withdrawn\" or \"struck-off\""
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(kinds))
    }

    pub fn cache_age<'de, D: Deserializer<'de>>(d: D) -> Field<HumanDuration, D::Error> {
        duration(d, "cache_age", &bounds::CACHE_AGE)
    }

    pub fn nats_url<'de, D: Deserializer<'de>>(d: D) -> Field<String, D::Error> {
        let text = String::deserialize(d)?;
        match crate::cli::SourceArg::parse(&text) {
            Ok(crate::cli::SourceArg::Nats(url)) => Ok(Some(url)),
            _ => Err(D::Error::custom(format!(
                "url {text:?}: give the NATS server(s) as nats://host:4222 or tls://host:4222, comma-separated"
            ))),
        }
    }

    pub fn nats_stream<'de, D: Deserializer<'de>>(d: D) -> Field<String, D::Error> {
        let text = String::deserialize(d)?;
        crate::cli::parse_stream_name(&text).map(Some).map_err(|e| D::Error::custom(format!("stream {text:?} {e}")))
    }

    pub fn max_bytes<'de, D: Deserializer<'de>>(d: D) -> Field<usize, D::Error> {
        let value = usize::deserialize(d)?;
        bounds::NATS_MAX_BYTES.check(value).map(Some).map_err(|e| D::Error::custom(format!("max_bytes {e}")))
    }

    pub fn replicas<'de, D: Deserializer<'de>>(d: D) -> Field<usize, D::Error> {
        let value = usize::deserialize(d)?;
        bounds::NATS_REPLICAS.check(value).map(Some).map_err(|e| D::Error::custom(format!("replicas {e}")))
    }

    pub fn user_env<'de, D: Deserializer<'de>>(d: D) -> Field<String, D::Error> {
        env_name(d, "user_env")
    }
    pub fn password_env<'de, D: Deserializer<'de>>(d: D) -> Field<String, D::Error> {
        env_name(d, "password_env")
    }

    /// A secret written into the file: refused, whatever its value, with
    /// where it goes instead.
    fn secret<E: serde::de::Error>(key: &str) -> Field<(), E> {
        Err(E::custom(format!(
            "{key}: {} put it in an environment variable and name that with {key}_env",
            super::SECRET_REFUSED
        )))
    }
    pub fn password<'de, D: Deserializer<'de>>(_: D) -> Field<(), D::Error> {
        secret("password")
    }
    pub fn token<'de, D: Deserializer<'de>>(_: D) -> Field<(), D::Error> {
        secret("token")
    }
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// The default Companies House feed's settings (the form from before
    /// `[[feeds]]` took every kind); only valid when no `[[feeds]]` are listed.
    pub companies_house: Option<CompaniesHouseFile>,
    pub ui: UiFile,
    pub storage: StorageFile,
    /// The feeds to watch (`[[feeds]]` tables), every kind.
    pub feeds: Vec<FeedFile>,
    /// `[[alerts]]` rules as written (none by default).
    pub alerts: Vec<crate::alerts::rules::AlertFile>,
    /// The same, checked at load ([`FileConfig::parse`]): a bad rule is
    /// refused with its line and key before anything starts.
    #[serde(skip)]
    pub alert_rules: crate::alerts::Rules,
    /// Companies House REST enrichment (issue 13).
    pub enrich: EnrichFile,
    /// The relay's NATS server, stream and credentials (issue 14).
    pub nats: NatsFile,
}

/// `[nats]`: where the relay publishes and viewers read, what the stream
/// keeps, and how feedtop proves who it is. Never a secret: the file names
/// the environment variables that hold them (`*_env`), or a `.creds` file.
/// Flags and the environment win over it ([`NatsFile::apply_to`]).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NatsFile {
    /// `feedtop relay`'s server(s) when neither --nats nor NATS_URL says.
    #[serde(deserialize_with = "within::nats_url")]
    pub url: Option<String>,
    #[serde(deserialize_with = "within::nats_stream")]
    pub stream: Option<String>,
    /// Where a viewer starts in the stream.
    #[serde(deserialize_with = "within::since")]
    pub since: Option<HumanDuration>,
    #[serde(deserialize_with = "within::max_age")]
    pub max_age: Option<HumanDuration>,
    #[serde(deserialize_with = "within::max_bytes")]
    pub max_bytes: Option<usize>,
    #[serde(deserialize_with = "within::replicas")]
    pub replicas: Option<usize>,
    /// A `.creds` file (relative to the config file's directory).
    pub creds: Option<PathBuf>,
    /// A CA certificate for a `tls://` server (relative as `creds`).
    pub tls_ca: Option<PathBuf>,
    #[serde(deserialize_with = "within::user_env")]
    pub user_env: Option<String>,
    #[serde(deserialize_with = "within::password_env")]
    pub password_env: Option<String>,
    #[serde(deserialize_with = "within::token_env")]
    pub token_env: Option<String>,
    /// Refused when present: only there to say what to write instead.
    #[serde(deserialize_with = "within::password")]
    password: Option<()>,
    #[serde(deserialize_with = "within::token")]
    token: Option<()>,
}

impl NatsFile {
    /// What TOML cannot say: one way to prove who feedtop is, a user with
    /// its password. The key at fault, for its line.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let ways = [self.creds.is_some(), self.token_env.is_some(), self.user_env.is_some()];
        if ways.iter().filter(|&&w| w).count() > 1 {
            let key = if self.user_env.is_some() { "user_env" } else { "token_env" };
            return Err((key, format!("{key}: give one of creds, token_env or user_env (with password_env)")));
        }
        match (&self.user_env, &self.password_env) {
            (Some(_), None) => Err(("user_env", "user_env needs password_env beside it".into())),
            (None, Some(_)) => Err(("password_env", "password_env needs user_env beside it".into())),
            _ => Ok(()),
        }
    }

    /// Paths in the file are relative to the file's directory.
    fn anchor(&mut self, base: &Path) {
        for path in [&mut self.creds, &mut self.tls_ca].into_iter().flatten() {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// Puts the file's settings on `settings` (made from the URL, before
    /// any flag is applied: the flags go on after, and win). Credentials:
    /// `NATS_CREDS`, `NATS_TOKEN` or `NATS_USER`/`NATS_PASSWORD` when the
    /// environment has them, else the file's `creds` or the variables its
    /// `*_env` keys name (an error when one of those is not set).
    pub fn apply_to(
        &self,
        settings: &mut crate::relay::NatsSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        use crate::relay::NatsAuth;
        if let Some(stream) = &self.stream {
            settings.stream = stream.clone();
        }
        if let Some(since) = self.since {
            settings.since = since.0;
        }
        if let Some(age) = self.max_age {
            settings.max_age = age.0;
        }
        if let Some(bytes) = self.max_bytes {
            // At most 2^44 (bounds::NATS_MAX_BYTES): it fits.
            settings.max_bytes = bytes as i64;
        }
        if let Some(replicas) = self.replicas {
            settings.replicas = replicas;
        }
        if let Some(ca) = &self.tls_ca {
            settings.tls_ca = Some(ca.clone());
        }
        let from_env = crate::relay::NatsSettings::auth_from_env(env).map_err(ConfigError::Usage)?;
        if from_env != NatsAuth::None {
            settings.auth = from_env;
            return Ok(());
        }
        let named = |key: &str, name: &str| {
            env(name).filter(|v| !v.is_empty()).ok_or_else(|| {
                ConfigError::Usage(format!(
                    "{name} is not set ([nats] {key} in the config file names it): set it, or remove {key}"
                ))
            })
        };
        settings.auth = match (&self.creds, &self.token_env, &self.user_env, &self.password_env) {
            (Some(path), _, _, _) => NatsAuth::Creds(path.clone()),
            (None, Some(token), _, _) => NatsAuth::Token(named("token_env", token)?),
            (None, None, Some(user), Some(password)) => {
                NatsAuth::UserPassword { user: named("user_env", user)?, password: named("password_env", password)? }
            }
            _ => settings.auth.clone(),
        };
        Ok(())
    }
}

/// `[enrich]`: which changes send their company to the REST API, where,
/// with which key, and how fast.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichFile {
    #[serde(deserialize_with = "within::key_env")]
    pub key_env: Option<String>,
    #[serde(deserialize_with = "within::ch_url")]
    pub url: Option<String>,
    #[serde(deserialize_with = "within::enrich_limit")]
    pub limit: Option<crate::enrich::Limit>,
    #[serde(deserialize_with = "within::enrich_on")]
    pub on: Option<Vec<crate::model::strike_off::ChangeKind>>,
    #[serde(deserialize_with = "within::cache_age")]
    pub cache_age: Option<HumanDuration>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FeedFileKind {
    CompaniesHouse,
    Ws,
    Sse,
    Poll,
}

impl FeedFileKind {
    fn label(self) -> &'static str {
        match self {
            FeedFileKind::CompaniesHouse => "companies-house",
            FeedFileKind::Ws => "ws",
            FeedFileKind::Sse => "sse",
            FeedFileKind::Poll => "poll",
        }
    }
}

/// One `[[feeds]]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeedFile {
    /// The feed's id: shown in the UI and headless lines, and the key of its
    /// stored events, quotes and resume point.
    pub name: String,
    pub kind: FeedFileKind,
    /// Checked against `kind` after parsing (ws/wss or http/https); the span
    /// gives the line of a bad one. Companies House has a default.
    pub url: Option<Spanned<String>>,
    /// companies-house: the stream path (`/companies`, `/filings`, …).
    #[serde(default, deserialize_with = "within::stream")]
    pub stream: Option<String>,
    /// companies-house: the NAME of the environment variable holding the key.
    #[serde(default, deserialize_with = "within::key_env")]
    pub key_env: Option<String>,
    /// poll: what the answer is (`stooq`).
    pub format: Option<PollFormat>,
    /// poll: from one request to the next.
    #[serde(default, deserialize_with = "within::every")]
    pub every: Option<HumanDuration>,
    /// `ws` only: `wig80` or `carbon`.
    pub dialect: Option<Dialect>,
    /// carbon (ws) and sse: topics to subscribe to.
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
    #[serde(default, deserialize_with = "within::backoff_cap")]
    pub backoff_cap: Option<HumanDuration>,
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
    /// The first key given that means nothing to this feed's kind.
    fn misplaced_key(&self) -> Option<&'static str> {
        use FeedFileKind::{CompaniesHouse, Poll, Sse, Ws};
        // A poll feed is quiet between polls by design: its read and quiet
        // periods follow `every` (feeds::poll), so neither is set by hand.
        let given: [(&str, bool, &[FeedFileKind]); 12] = [
            ("stream", self.stream.is_some(), &[CompaniesHouse]),
            ("key_env", self.key_env.is_some(), &[CompaniesHouse]),
            ("dialect", self.dialect.is_some(), &[Ws]),
            ("topics", !self.topics.is_empty(), &[Ws, Sse]),
            ("filters", self.filters.is_some(), &[Ws, Sse]),
            ("symbols", !self.symbols.is_empty(), &[Ws, Sse, Poll]),
            ("token_env", self.token_env.is_some(), &[Ws, Sse]),
            ("ping_every", self.ping_every.is_some(), &[Ws]),
            ("format", self.format.is_some(), &[Poll]),
            ("every", self.every.is_some(), &[Poll]),
            ("read_timeout", self.read_timeout.is_some(), &[CompaniesHouse, Ws, Sse]),
            ("stall_after", self.stall_after.is_some(), &[CompaniesHouse, Ws, Sse]),
        ];
        given.iter().find(|(_, set, kinds)| *set && !kinds.contains(&self.kind)).map(|(key, ..)| *key)
    }

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
    /// `dark`, `light` or `mono`; `--theme` wins.
    pub theme: Option<ThemeName>,
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
        let mut config: Self = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: one_line(&e, text) })?;
        config.check_feeds().map_err(|(index, why, span)| {
            let name = &config.feeds[index].name;
            let line = match &span {
                Some(span) => text.as_bytes()[..span.start.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1,
                None => name_line(text, index),
            };
            let line_text = text.lines().nth(line.saturating_sub(1)).unwrap_or("").trim();
            let at = if span.is_some() { format!("line {line} (`{line_text}`)") } else { format!("line {line}") };
            ConfigError::Parse { path: path.to_path_buf(), message: format!("{at}: feed \"{name}\": {why}") }
        })?;
        if let Some(ch) = &config.companies_house {
            let at = |key: &str| text.lines().position(|l| l.trim_start().starts_with(key)).map_or(0, |i| i + 1);
            let parse_error = |line: usize, why: String| ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!("line {line}: [companies_house] {why}"),
            };
            if !config.feeds.is_empty() {
                return Err(parse_error(
                    at("[companies_house]"),
                    "describes the default feed, which does not run when [[feeds]] are listed: move its keys into a [[feeds]] entry with kind = \"companies-house\" (name it \"ch/companies\" to keep its resume point)".into(),
                ));
            }
            let read_timeout =
                ch.read_timeout.map_or(default_reconnect(FeedFileKind::CompaniesHouse).read_timeout, |d| d.0);
            ch.deadlines().check(read_timeout).map_err(|why| parse_error(at("stall_after"), why))?;
        }
        if let Err((key, why)) = config.nats.check() {
            let line = section_key_line(text, "[nats]", key);
            let line_text = text.lines().nth(line.saturating_sub(1)).unwrap_or("").trim();
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!("line {line} (`{line_text}`): [nats] {why}"),
            });
        }
        // A relative watch list (`companies = "watchlist.txt"`) sits beside the file.
        let base = path.parent().unwrap_or(Path::new("."));
        config.nats.anchor(base);
        config.alert_rules = crate::alerts::Rules::check(&config.alerts, base).map_err(|e| {
            let line = text.as_bytes()[..e.span.start.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1;
            let line_text = text.lines().nth(line - 1).unwrap_or("").trim();
            ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!("line {line} (`{line_text}`): [[alerts]] rule {}: {} {}", e.number, e.key, e.why),
            }
        })?;
        Ok(config)
    }

    /// What TOML cannot say: names plain and unique, a dialect for every
    /// `ws` feed, each key used only by the kinds it means something to, a
    /// URL of the feed's kind. An error carries the span of the bad value
    /// when there is one.
    #[allow(clippy::type_complexity)]
    fn check_feeds(&self) -> Result<(), (usize, String, Option<std::ops::Range<usize>>)> {
        let mut seen = std::collections::HashSet::new();
        for (index, f) in self.feeds.iter().enumerate() {
            let fail = |why: String| Err((index, why, None));
            if let Err(e) = bounds::feed_name(&f.name) {
                return fail(e);
            }
            if !seen.insert(f.name.as_str()) {
                return fail("name is used by another feed; each feed needs its own".into());
            }
            if let Some(key) = f.misplaced_key() {
                return fail(format!("{key} does not apply to kind = \"{}\"", f.kind.label()));
            }
            if f.kind == FeedFileKind::Ws && f.dialect.is_none() {
                return fail("kind = \"ws\" needs dialect = \"wig80\" or \"carbon\"".into());
            }
            if f.kind == FeedFileKind::Poll {
                if f.format.is_none() {
                    return fail("kind = \"poll\" needs format = \"stooq\"".into());
                }
                if let Err(e) = bounds::poll_symbols(&f.symbols) {
                    return fail(e);
                }
            }
            let url_check = match f.kind {
                FeedFileKind::CompaniesHouse | FeedFileKind::Poll => bounds::base_url,
                FeedFileKind::Ws => |u: &str| bounds::url(u, bounds::WS),
                FeedFileKind::Sse => |u: &str| bounds::url(u, bounds::HTTP),
            };
            match &f.url {
                Some(url) => {
                    if let Err(e) = url_check(url.get_ref()) {
                        return Err((index, format!("url {e}"), Some(url.span())));
                    }
                }
                None if !matches!(f.kind, FeedFileKind::CompaniesHouse | FeedFileKind::Poll) => {
                    return fail(format!("kind = \"{}\" needs a url", f.kind.label()))
                }
                None => {}
            }
            let read_timeout = f.read_timeout.map_or(default_reconnect(f.kind).read_timeout, |d| d.0);
            if let Err(e) = f.deadlines().check(read_timeout) {
                return fail(e);
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

/// The line (1-based) of the `name` key of the `index`-th `[[feeds]]` table,
/// or of the table's header when the name is not on a line of its own.
fn name_line(text: &str, index: usize) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let Some(header) = lines.iter().enumerate().filter(|(_, l)| l.trim() == "[[feeds]]").nth(index).map(|(i, _)| i)
    else {
        return 0;
    };
    let table = lines[header + 1..].iter().take_while(|l| !l.trim_start().starts_with('['));
    let name = table.enumerate().find(|(_, l)| l.trim_start().starts_with("name")).map(|(i, _)| header + 1 + i);
    name.unwrap_or(header) + 1
}

/// The line (1-based) of `key` in the table whose header is `header`, or of
/// the header when the key is not on a line of its own.
fn section_key_line(text: &str, header: &str, key: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines.iter().position(|l| l.trim() == header) else { return 0 };
    let table = lines[start + 1..].iter().take_while(|l| !l.trim_start().starts_with('['));
    let at = table
        .enumerate()
        .find(|(_, l)| l.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')));
    at.map_or(start, |(i, _)| start + 1 + i) + 1
}

/// How a secret written into the file is refused: the line is named but
/// not quoted, so the secret is not shown again.
const SECRET_REFUSED: &str = "secrets never go in the config file;";

/// toml's messages span several lines with a source excerpt; keep one line:
/// where, which key, and why.
fn one_line(e: &toml::de::Error, text: &str) -> String {
    let reason = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) if reason.contains(SECRET_REFUSED) => {
            format!("line {}: {reason}", text[..span.start.min(text.len())].matches('\n').count() + 1)
        }
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
    /// The feeds to run, in the order shown (empty for the demo until
    /// [`crate::demo::start`] fills in its simulated ones).
    pub feeds: Vec<FeedSpec>,
    /// True when running against the built-in simulators.
    pub demo: bool,
    /// The simulators inject faults at random (`--chaos`).
    pub chaos: bool,
    /// Feeds the config file lists that `--demo` does not run.
    pub set_aside: Vec<String>,
    pub db_path: PathBuf,
    pub fps: u32,
    /// Colours: `--theme`, else `[ui] theme`, else dark; mono with
    /// `NO_COLOR` or `--no-color`.
    pub theme: ThemeName,
    /// Decoration in ASCII: `--ascii`, `--low-bandwidth`, or a locale that
    /// is not UTF-8.
    pub ascii: bool,
    /// Highlight a price that just changed (not with `--low-bandwidth`).
    pub tick_highlight: bool,
    pub latency_window: Duration,
    pub stale_after: Duration,
    pub quote_retention: Duration,
    pub event_retention: Duration,
    pub raw_events: RawEvents,
    /// Names of key and token variables that feeds want but the environment lacks.
    pub missing_tokens: Vec<String>,
    /// `[[alerts]]` rules, checked (they apply to the demo's feeds too, so
    /// a rule can be tried out with `--demo`).
    pub alerts: crate::alerts::Rules,
    /// REST enrichment, when its key is set (the demo sets its simulator's).
    pub enrich: Option<crate::enrich::EnrichSettings>,
    /// Why there is no enrichment, said once at start.
    pub enrich_off: Option<String>,
    /// `[nats]` as the file says it: [`NatsFile::apply_to`] puts it on a
    /// relay's or viewer's NATS settings before the flags.
    pub nats: NatsFile,
}

impl Settings {
    /// The screen's look as the `i` overlay states it.
    pub fn theme_description(&self) -> String {
        let theme = match self.theme {
            ThemeName::Dark => "dark",
            ThemeName::Light => "light",
            ThemeName::Mono => "mono (no colour)",
        };
        let glyphs = if self.ascii { "ASCII" } else { "Unicode" };
        format!("{theme}, {glyphs}")
    }
}

/// Merges defaults, the file, the environment (through `env`) and the flags.
///
/// Which feeds run:
/// - `--demo` or `--chaos`: the simulated ones alone, whatever the file lists;
/// - otherwise the file's `[[feeds]]`, exactly;
/// - with none listed, the default Companies House feed (`ch/companies`,
///   from `[companies_house]`, `--ch-url`, `--stream`), when its key is set
///   or a URL for it is given;
/// - `--ch-url` or `--stream` ask for that feed by name: it runs beside the
///   listed ones;
/// - with nothing at all to watch, the demo.
pub fn resolve(
    args: &RunArgs,
    file: &FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
    paths: &Paths,
) -> Result<Settings, ConfigError> {
    let demo_asked = args.demo || args.chaos;
    let mut feeds: Vec<FeedSpec> = file.feeds.iter().map(|f| feed_spec(f, args, env)).collect();
    let flags_ask = args.ch_url.is_some() || args.stream.is_some();
    if file.feeds.is_empty() || flags_ask {
        if let Some(ch) = default_companies_house(args, file.companies_house.as_ref(), env) {
            if feeds.iter().any(|f| f.info.name == ch.info.name) && !demo_asked {
                return Err(ConfigError::Usage(format!(
                    "--ch-url (FEEDTOP_CH_URL) and --stream add the Companies House feed {}, and the config file lists a feed of that name: set its url and stream in the file instead",
                    ch.info.name
                )));
            }
            feeds.insert(0, ch);
        }
    }
    let demo = demo_asked || feeds.is_empty();
    let set_aside = if demo { file.feeds.iter().map(|f| f.name.clone()).collect() } else { Vec::new() };
    let missing_tokens = if demo {
        // The simulators take no real key or token: none is looked up or sent.
        feeds.clear();
        Vec::new()
    } else {
        file.feeds
            .iter()
            .filter_map(|f| f.token_env.clone().or_else(|| f.key_env.clone()).or_else(|| default_key_env(f)))
            .filter(|name| env(name).and_then(ApiKey::new).is_none())
            .collect()
    };
    let (enrich, enrich_off) = if demo { (None, None) } else { enrich_settings(&file.enrich, env) };
    Ok(Settings {
        enrich,
        enrich_off,
        nats: file.nats.clone(),
        feeds,
        demo,
        chaos: args.chaos,
        set_aside,
        db_path: db_path(args.db.as_deref(), file, demo, paths),
        // The preset is a flag: it wins over the file, and --fps over it.
        fps: args.fps.or(args.low_bandwidth.then_some(LOW_BANDWIDTH_FPS)).or(file.ui.fps).unwrap_or(DEFAULT_FPS),
        theme: if color_enabled_with(args.no_color, env("NO_COLOR").as_deref()) {
            args.theme.or(file.ui.theme).unwrap_or_default()
        } else {
            ThemeName::Mono
        },
        ascii: use_ascii(args.ascii || args.low_bandwidth, env),
        tick_highlight: !args.low_bandwidth,
        latency_window: args.latency_window.or(file.ui.latency_window.map(|d| d.0)).unwrap_or(DEFAULT_LATENCY_WINDOW),
        stale_after: file.ui.stale_after.map_or(DEFAULT_STALE_AFTER, |d| d.0),
        quote_retention: file.storage.quote_retention.map_or(DEFAULT_QUOTE_RETENTION, |d| d.0),
        event_retention: file.storage.event_retention.map_or(DEFAULT_EVENT_RETENTION, |d| d.0),
        raw_events: file.storage.raw_events.unwrap_or_default(),
        missing_tokens,
        alerts: file.alert_rules.clone(),
    })
}

/// `[enrich]` with its key from the environment; without a key, no
/// enrichment and the one line that says so.
fn enrich_settings(
    file: &EnrichFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Option<crate::enrich::EnrichSettings>, Option<String>) {
    use crate::enrich;
    let key_env = file.key_env.clone().unwrap_or_else(|| enrich::DEFAULT_KEY_ENV.to_string());
    let Some(key) = env(&key_env).and_then(ApiKey::new) else {
        let off = format!("enrichment is off: {key_env} is not set (set it to a Companies House REST API key to fetch the officers of companies entering the proposal)");
        return (None, Some(off));
    };
    let url = file.url.clone().unwrap_or_else(|| enrich::DEFAULT_URL.to_string());
    let mut s = enrich::EnrichSettings::new(url, key, key_env);
    if let Some(limit) = file.limit {
        s.limit = limit;
    }
    if let Some(on) = &file.on {
        s.on = on.clone();
    }
    if let Some(age) = file.cache_age {
        s.cache_age = age.0;
    }
    (Some(s), None)
}

/// The database: `--db` (or `FEEDTOP_DB`), else the file's `[storage] db`
/// (not for the demo, which keeps its invented data apart), else
/// `feedtop.db` or `demo.db` in the data directory. The one place this is
/// decided, for watching and for `strike-offs` alike.
pub fn db_path(explicit: Option<&Path>, file: &FileConfig, demo: bool, paths: &Paths) -> PathBuf {
    let configured = if demo { None } else { file.storage.db.clone() };
    let default = || paths.data_dir.join(if demo { "demo.db" } else { "feedtop.db" });
    explicit.map(Path::to_path_buf).or(configured).unwrap_or_else(default)
}

/// A kind's reconnect timings before any setting: the feed modules' own
/// defaults, so there is one source for each.
fn default_reconnect(kind: FeedFileKind) -> Reconnect {
    match kind {
        FeedFileKind::CompaniesHouse => ChSettings::new("", "", None).reconnect,
        FeedFileKind::Ws => WsSettings::new("", Dialect::Wig80).reconnect,
        FeedFileKind::Sse => SseSettings::new("").reconnect,
        FeedFileKind::Poll => PollSettings::new(PollFormat::Stooq, "", Vec::new(), poll::DEFAULT_EVERY).reconnect,
    }
}

/// The key variable a Companies House entry uses when it names none.
fn default_key_env(f: &FeedFile) -> Option<String> {
    (f.kind == FeedFileKind::CompaniesHouse).then(|| DEFAULT_KEY_ENV.to_string())
}

/// Read and backoff timings: a flag for every feed beats the feed's own
/// key, which beats the kind's default; then the deadlines.
fn timings(
    kind: FeedFileKind,
    read_timeout: Option<HumanDuration>,
    backoff_cap: Option<HumanDuration>,
    deadlines: Deadlines,
    args: &RunArgs,
) -> Reconnect {
    let mut reconnect = default_reconnect(kind);
    if let Some(d) = args.read_timeout.or(read_timeout.map(|d| d.0)) {
        reconnect.read_timeout = d;
    }
    if let Some(d) = args.backoff_cap.or(backoff_cap.map(|d| d.0)) {
        reconnect.backoff_cap = d;
    }
    deadlines.apply(args, &mut reconnect);
    reconnect
}

/// The Companies House feed of a run whose file lists no feeds: from
/// `[companies_house]` and the flags, when there is something real to watch
/// (a key, or a URL given for it).
fn default_companies_house(
    args: &RunArgs,
    file: Option<&CompaniesHouseFile>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<FeedSpec> {
    let empty = CompaniesHouseFile::default();
    let ch_file = file.unwrap_or(&empty);
    let key_env = ch_file.key_env.as_deref().unwrap_or(DEFAULT_KEY_ENV);
    let key = env(key_env).and_then(ApiKey::new);
    let url = args.ch_url.clone().or_else(|| ch_file.url.clone());
    if key.is_none() && url.is_none() {
        return None;
    }
    let stream = args.stream.clone().or_else(|| ch_file.stream.clone()).unwrap_or_else(|| DEFAULT_STREAM.to_string());
    let mut ch = ChSettings::new(url.unwrap_or_else(|| DEFAULT_CH_URL.to_string()), stream, key);
    let kind = FeedFileKind::CompaniesHouse;
    ch.reconnect = timings(kind, ch_file.read_timeout, ch_file.backoff_cap, ch_file.deadlines(), args);
    Some(FeedSpec::companies_house(crate::app::companies_house_feed_name(&ch.stream), ch))
}

/// A `[[feeds]]` table as a feed to run.
fn feed_spec(f: &FeedFile, args: &RunArgs, env: &dyn Fn(&str) -> Option<String>) -> FeedSpec {
    let secret = f.token_env.clone().or_else(|| f.key_env.clone()).or_else(|| default_key_env(f));
    let secret = secret.as_deref().and_then(env).and_then(ApiKey::new);
    let reconnect = timings(f.kind, f.read_timeout, f.backoff_cap, f.deadlines(), args);
    let url = f.url.as_ref().map(|u| u.get_ref().trim().to_string());
    match f.kind {
        FeedFileKind::CompaniesHouse => {
            let stream = f.stream.clone().unwrap_or_else(|| DEFAULT_STREAM.to_string());
            let mut ch = ChSettings::new(url.unwrap_or_else(|| DEFAULT_CH_URL.to_string()), stream, secret);
            ch.reconnect = reconnect;
            FeedSpec::companies_house(f.name.clone(), ch)
        }
        FeedFileKind::Ws => {
            // check_feeds guarantees a dialect and a URL for ws feeds.
            let mut ws = WsSettings::new(url.unwrap_or_default(), f.dialect.unwrap_or(Dialect::Wig80));
            ws.token = secret;
            if !f.topics.is_empty() {
                ws.topics = f.topics.clone();
            }
            ws.filters = f.filters.as_ref().map(|t| toml_to_json(t.clone()));
            ws.symbols = f.symbols.clone();
            if let Some(d) = f.ping_every {
                ws.ping_every = d.0;
            }
            ws.reconnect = reconnect;
            FeedSpec::websocket(f.name.clone(), ws)
        }
        FeedFileKind::Sse => {
            let mut sse = SseSettings::new(url.unwrap_or_default());
            sse.token = secret;
            sse.symbols = f.symbols.clone();
            // With topics, the feed subscribes to each once the stream says
            // its connection id (docs/protocols.md §4).
            sse.topics = f.topics.clone();
            sse.filters = f.filters.as_ref().map(|t| toml_to_json(t.clone()));
            sse.reconnect = reconnect;
            FeedSpec::sse(f.name.clone(), sse)
        }
        FeedFileKind::Poll => {
            // check_feeds guarantees a format and symbols for poll feeds.
            let format = f.format.unwrap_or(PollFormat::Stooq);
            let base = url.unwrap_or_else(|| DEFAULT_STOOQ_URL.to_string());
            let every = f.every.map_or(poll::DEFAULT_EVERY, |d| d.0);
            let mut poll = PollSettings::new(format, base, f.symbols.clone(), every);
            poll.reconnect = reconnect;
            poll.fit_quiet_period();
            FeedSpec::poll(f.name.clone(), poll)
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

    use crate::relay::{NatsAuth, NatsSettings};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// The settings of the run's Companies House feed (there must be one).
    fn ch(s: &Settings) -> &ChSettings {
        s.feeds
            .iter()
            .find_map(|f| match &f.settings {
                crate::app::FeedSettings::CompaniesHouse(ch) => Some(ch),
                _ => None,
            })
            .expect("a Companies House feed")
    }

    #[test]
    fn enrich_runs_only_with_its_key_and_says_once_why_not() {
        let file = FileConfig::default();
        let off =
            resolve(&RunArgs::default(), &file, &|n: &str| (n == DEFAULT_KEY_ENV).then(|| "k-0".to_string()), &paths())
                .unwrap();
        assert!(off.enrich.is_none());
        assert!(off.enrich_off.as_deref().unwrap().contains("CH_REST_API_KEY is not set"));
        let both = |name: &str| matches!(name, DEFAULT_KEY_ENV | "CH_REST_API_KEY").then(|| "k-1".to_string());
        let on = resolve(&RunArgs::default(), &file, &both, &paths()).unwrap();
        let e = on.enrich.clone().expect("enrichment with a key");
        assert_eq!(e.limit, crate::enrich::DEFAULT_LIMIT);
        assert_eq!(e.on, [crate::model::strike_off::ChangeKind::Entered]);
        assert_eq!(e.cache_age, Duration::from_secs(86_400));
        assert_eq!(e.url, crate::enrich::DEFAULT_URL);
        assert!(on.enrich_off.is_none());
        assert!(!format!("{on:?}").contains("k-1"), "the REST key is never in a debug print");
    }

    #[test]
    fn the_samples_enrich_table_is_the_defaults() {
        let text = sample_with_uncommented("# [enrich]", "\n\n\n\n");
        let file = FileConfig::parse(&text, Path::new("sample")).unwrap();
        assert!(file.enrich.limit.is_some(), "the table was uncommented");
        let env = |name: &str| (name == "CH_REST_API_KEY").then(|| "k-1".to_string());
        let from_sample = resolve(&RunArgs::default(), &file, &env, &paths()).unwrap();
        let from_nothing = resolve(&RunArgs::default(), &FileConfig::default(), &env, &paths()).unwrap();
        assert_eq!(format!("{:?}", from_sample.enrich), format!("{:?}", from_nothing.enrich));
    }

    #[test]
    fn enrich_mistakes_name_their_line_and_key() {
        let cases = [
            ("limit = \"600\"", "line 2 (`limit = \"600\"`): limit \"600\": write it as calls/window"),
            ("limit = \"0/5m\"", "limit \"0/5m\": the count must be 1 to 100000"),
            ("limit = \"600/1ms\"", "the window must be 1s to 1d"),
            ("on = [\"entred\"]", "line 2 (`on = [\"entred\"]`): on: \"entred\" is not a change"),
            ("cache_age = \"1s\"", "cache_age"),
            ("url = \"ftp://x\"", "url"),
            ("key_env = \"not a name\"", "key_env"),
            ("keyenv = \"X\"", "unknown field `keyenv`"),
        ];
        for (line, expected) in cases {
            let text = format!("[enrich]\n{line}\n");
            let e = FileConfig::parse(&text, Path::new("c.toml")).unwrap_err().to_string();
            assert!(e.contains(expected), "{line}: {e}");
            assert!(e.contains("line 2"), "{line}: {e}");
        }
        let ok = FileConfig::parse("[enrich]\nlimit = \"2/1s\"\non = [\"entered\", \"struck-off\"]\n", Path::new("c"));
        assert_eq!(ok.unwrap().enrich.on.unwrap().len(), 2);
    }

    fn nats_env(name: &str) -> Option<String> {
        match name {
            "RELAY_TOKEN" => Some("t0k3n-file".into()),
            "RELAY_USER" => Some("alice".into()),
            "RELAY_PASSWORD" => Some("s3cret".into()),
            _ => None,
        }
    }

    fn nats_applied(table: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<NatsSettings, ConfigError> {
        let file = FileConfig::parse(&format!("[nats]\n{table}"), Path::new("/etc/feedtop/config.toml"))?;
        let mut settings = NatsSettings::new("nats://h:4222");
        file.nats.apply_to(&mut settings, env)?;
        Ok(settings)
    }

    #[test]
    fn the_nats_table_reaches_the_settings() {
        let table = "url = \"nats://a:4222, tls://b:4222\"\nstream = \"OURS\"\nsince = \"2h\"\nmax_age = \"30d\"\nmax_bytes = 2097152\nreplicas = 3\ntls_ca = \"ca.pem\"\ntoken_env = \"RELAY_TOKEN\"\n";
        let s = nats_applied(table, &nats_env).unwrap();
        assert_eq!(s.stream, "OURS");
        assert_eq!(s.since, Duration::from_secs(7200));
        assert_eq!(s.max_age, Duration::from_secs(30 * 86_400));
        assert_eq!((s.max_bytes, s.replicas), (2_097_152, 3));
        assert_eq!(s.tls_ca.as_deref(), Some(Path::new("/etc/feedtop/ca.pem")), "beside the file");
        assert_eq!(s.auth, NatsAuth::Token("t0k3n-file".into()));
        assert_eq!(s.url, "nats://h:4222", "the file's url is the relay's fallback, not an override");
        let file = FileConfig::parse(&format!("[nats]\n{table}"), Path::new("c.toml")).unwrap();
        assert_eq!(file.nats.url.as_deref(), Some("nats://a:4222, tls://b:4222"));
        let resolved = resolve(&RunArgs::default(), &file, &no_env, &paths()).unwrap();
        assert_eq!(resolved.nats, file.nats, "the settings carry the table");

        let s = nats_applied("user_env = \"RELAY_USER\"\npassword_env = \"RELAY_PASSWORD\"\n", &nats_env).unwrap();
        assert_eq!(s.auth, NatsAuth::UserPassword { user: "alice".into(), password: "s3cret".into() });
        let s = nats_applied("creds = \"/keys/relay.creds\"\n", &nats_env).unwrap();
        assert_eq!(s.auth, NatsAuth::Creds("/keys/relay.creds".into()));
        let defaults = nats_applied("", &nats_env).unwrap();
        assert_eq!(defaults, NatsSettings::new("nats://h:4222"), "an empty table changes nothing");
    }

    #[test]
    fn the_environment_wins_over_the_nats_table() {
        let env = |name: &str| match name {
            "NATS_TOKEN" => Some("from-env".to_string()),
            other => nats_env(other),
        };
        let s = nats_applied("creds = \"relay.creds\"\n", &env).unwrap();
        assert_eq!(s.auth, NatsAuth::Token("from-env".into()));
        let e = nats_applied("token_env = \"UNSET_TOKEN\"\n", &no_env).unwrap_err();
        assert!(e.is_usage());
        assert_eq!(
            e.to_string(),
            "UNSET_TOKEN is not set ([nats] token_env in the config file names it): set it, or remove token_env"
        );
    }

    #[test]
    fn nats_mistakes_name_their_line_and_key() {
        let cases = [
            ("password = \"hunter2\"", "line 2: password: secrets never go in the config file; put it in an environment variable and name that with password_env"),
            ("token = 42", "token: secrets never go in the config file"),
            ("max_bytes = 10", "max_bytes must be between"),
            ("replicas = 7", "replicas must be between 1 and 5"),
            ("since = \"400d\"", "since must be between"),
            ("max_age = \"1s\"", "max_age must be between"),
            ("url = \"http://h:4222\"", "url \"http://h:4222\": give the NATS server(s)"),
            ("stream = \"a.b\"", "stream \"a.b\" must be 1 to 64 letters"),
            ("user_env = \"not a name\"", "user_env"),
            ("password_env = \"P\"", "line 2 (`password_env = \"P\"`): [nats] password_env needs user_env beside it"),
            ("stream = \"S\"\nuser_env = \"U\"", "line 3 (`user_env = \"U\"`): [nats] user_env needs password_env"),
            ("creds = \"a.creds\"\ntoken_env = \"T\"", "line 3 (`token_env = \"T\"`): [nats] token_env: give one of creds"),
            ("passwd_env = \"X\"", "unknown field `passwd_env`"),
        ];
        for (lines, expected) in cases {
            let text = format!("[nats]\n{lines}\n");
            let e = FileConfig::parse(&text, Path::new("c.toml")).unwrap_err().to_string();
            assert!(e.contains(expected), "{lines}: {e}");
            assert!(e.contains("line "), "{lines}: {e}");
            assert!(!e.contains("hunter2"), "the secret is not repeated: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn the_samples_nats_table_is_the_defaults() {
        let text = sample_with_uncommented("# [nats]", "\u{0}");
        let file = FileConfig::parse(&text, Path::new("sample")).unwrap();
        assert_eq!(file.nats.stream.as_deref(), Some("FEEDTOP"), "the table was uncommented");
        let mut from_sample = NatsSettings::new("nats://h:4222");
        file.nats.apply_to(&mut from_sample, &no_env).unwrap();
        assert_eq!(from_sample, NatsSettings::new("nats://h:4222"));
    }

    #[test]
    fn shipped_sample_parses_and_equals_the_defaults() {
        let sample = FileConfig::parse(SAMPLE, Path::new("assets/config.toml")).unwrap();
        // With a key, so that the default Companies House feed (whose
        // settings the sample spells out) runs and is compared too.
        let env = |name: &str| (name == DEFAULT_KEY_ENV).then(|| "k-123".to_string());
        let from_sample = resolve(&RunArgs::default(), &sample, &env, &paths()).unwrap();
        let from_nothing = resolve(&RunArgs::default(), &FileConfig::default(), &env, &paths()).unwrap();
        assert_eq!(format!("{from_sample:?}"), format!("{from_nothing:?}"));
        assert_eq!(ch(&from_sample).reconnect.read_timeout, Duration::from_secs(90));
        assert_eq!(from_sample.fps, DEFAULT_FPS);
        let no_key = resolve(&RunArgs::default(), &sample, &no_env, &paths()).unwrap();
        assert!(no_key.demo, "the sample as shipped, without a key, is the demo");
    }

    /// The sample's commented-out settings with the `# ` taken off the
    /// setting lines between `from` and `to`.
    fn sample_with_uncommented(from: &str, to: &str) -> String {
        let setting = regex_lite_setting;
        let (start, end) = (SAMPLE.find(from).unwrap(), SAMPLE.find(to).unwrap_or(SAMPLE.len()));
        let middle: Vec<&str> = SAMPLE[start..end].lines().map(|l| if setting(l) { &l[2..] } else { l }).collect();
        format!("{}{}\n{}", &SAMPLE[..start], middle.join("\n"), &SAMPLE[end..])
    }

    /// `# key = value`, `# [table]` or `# [[feeds]]`: a line of the sample that
    /// is a setting shown commented out, not prose.
    fn regex_lite_setting(line: &str) -> bool {
        let Some(rest) = line.strip_prefix("# ") else { return false };
        let key: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
        rest.starts_with('[') || (!key.is_empty() && rest[key.len()..].starts_with(" = "))
    }

    /// The commented-out [companies_house] table shows the default feed's
    /// defaults, and every [[feeds]] example parses as written.
    #[test]
    fn the_samples_commented_settings_are_the_defaults_and_parse() {
        let env = |name: &str| (name == DEFAULT_KEY_ENV).then(|| "k-123".to_string());
        let ch_text = sample_with_uncommented("# [companies_house]", "# Feeds. None by default");
        let ch_file = FileConfig::parse(&ch_text, Path::new("sample")).unwrap();
        assert!(ch_file.companies_house.is_some());
        let from_sample = resolve(&RunArgs::default(), &ch_file, &env, &paths()).unwrap();
        let from_nothing = resolve(&RunArgs::default(), &FileConfig::default(), &env, &paths()).unwrap();
        assert_eq!(format!("{from_sample:?}"), format!("{from_nothing:?}"));

        let feeds_text = sample_with_uncommented("# Feeds. None by default", "\u{0}");
        let feeds_file = FileConfig::parse(&feeds_text, Path::new("sample")).unwrap();
        let kinds: Vec<_> = feeds_file.feeds.iter().map(|f| f.kind.label()).collect();
        assert_eq!(kinds, ["companies-house", "ws", "ws", "sse", "sse", "poll"]);
        let alerts: Vec<_> = feeds_file.alert_rules.0.iter().map(|r| r.trigger.kind().as_str()).collect();
        assert_eq!(alerts, ["strike-off", "feed-down", "quote-move"], "the sample's alert rules parse");
        let s = resolve(&RunArgs::default(), &feeds_file, &env, &paths()).unwrap();
        assert_eq!(ch(&s).reconnect.read_timeout, Duration::from_secs(90));
        assert_eq!(ch(&s).stream, DEFAULT_STREAM);
    }

    #[test]
    fn no_key_means_demo_with_its_own_database() {
        let s = resolve(&RunArgs::default(), &FileConfig::default(), &no_env, &paths()).unwrap();
        assert!(s.demo);
        assert_eq!(s.db_path, PathBuf::from("/data/demo.db"));
        assert!(s.feeds.is_empty(), "the demo's simulated feeds are added when they start");
    }

    #[test]
    fn chaos_means_the_demo_even_with_a_key() {
        let env = |name: &str| (name == "CH_STREAMING_API_KEY").then(|| "k-123".to_string());
        let args = RunArgs { chaos: true, ..RunArgs::default() };
        let s = resolve(&args, &FileConfig::default(), &env, &paths()).unwrap();
        assert!(s.demo && s.chaos);
        assert!(s.feeds.is_empty(), "the real key is never sent to a simulator");
        assert!(s.missing_tokens.is_empty());
        assert_eq!(s.db_path, PathBuf::from("/data/demo.db"));
        assert!(
            !resolve(&RunArgs::default(), &FileConfig::default(), &no_env, &paths()).unwrap().chaos,
            "calm by default"
        );
    }

    #[test]
    fn key_from_the_environment_means_live() {
        let env = |name: &str| (name == "CH_STREAMING_API_KEY").then(|| "k-123".to_string());
        let s = resolve(&RunArgs::default(), &FileConfig::default(), &env, &paths()).unwrap();
        assert!(!s.demo);
        assert_eq!(ch(&s).key, ApiKey::new("k-123"));
        assert_eq!(ch(&s).base_url, DEFAULT_CH_URL);
        assert_eq!(s.db_path, PathBuf::from("/data/feedtop.db"));
    }

    #[test]
    fn key_env_name_comes_from_the_file() {
        let file = FileConfig::parse("[companies_house]\nkey_env = \"MY_KEY\"\n", Path::new("c.toml")).unwrap();
        let env = |name: &str| (name == "MY_KEY").then(|| "abc".to_string());
        let s = resolve(&RunArgs::default(), &file, &env, &paths()).unwrap();
        assert_eq!(ch(&s).key, ApiKey::new("abc"));
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
        let s = resolve(&args, &file, &no_env, &paths()).unwrap();
        assert_eq!(ch(&s).base_url, "http://flag");
        assert_eq!(ch(&s).reconnect.read_timeout, Duration::from_secs(10));
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
        let s = resolve(&RunArgs::default(), &file, &env, &paths()).unwrap();
        assert_eq!(s.feeds.len(), 3);
        assert_eq!(s.feeds[0].info.kind.label(), "ws/wig80");
        assert_eq!(s.feeds[2].info.kind.label(), "sse");
        match &s.feeds[1].settings {
            crate::app::FeedSettings::WebSocket(ws) => {
                assert_eq!(ws.token, ApiKey::new("jwt-abc"));
                assert_eq!(ws.filters.as_ref().unwrap()["commodity"], "oil");
            }
            other => panic!("{other:?}"),
        }
        match &s.feeds[2].settings {
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
[[feeds]]
name = "companies"
kind = "companies-house"
url = "http://127.0.0.1:9"
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
        let s = resolve(&RunArgs::default(), &file, &env, &paths()).unwrap();
        assert!(!s.demo);
        assert_eq!(ch(&s).key, ApiKey::new("ch-key-8d2f"), "the key is there, only not printed");

        let mut printed = vec![format!("{s:?}"), format!("{s:#?}")];
        for feed in &s.feeds {
            printed.push(format!("{feed:?}"));
            printed.push(format!("{feed:#?}"));
            match &feed.settings {
                crate::app::FeedSettings::Poll(poll) => panic!("{poll:?}"),
                crate::app::FeedSettings::CompaniesHouse(ch) => printed.push(format!("{ch:?}")),
                crate::app::FeedSettings::WebSocket(ws) => {
                    assert_eq!(ws.token, ApiKey::new("ws-tok-41aa"));
                    printed.push(format!("{ws:?}"));
                }
                crate::app::FeedSettings::Sse(sse) => {
                    assert_eq!(sse.token, ApiKey::new("sse-tok-9c0e"));
                    printed.push(format!("{sse:?}"));
                }
            }
        }
        let pipeline = crate::app::PipelineConfig {
            feeds: s.feeds.clone(),
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
[[feeds]]
name = "c"
kind = "companies-house"
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
        let s = resolve(&args, &file, &no_env, &paths()).unwrap();
        let secs = Duration::from_secs;
        // The flag beats the file for every feed.
        assert_eq!((ch(&s).reconnect.response_timeout, ch(&s).reconnect.stall_after), (secs(7), secs(20)));
        let timings: Vec<_> = s.feeds.iter().map(|f| f.reconnect().clone()).collect();
        assert_eq!((timings[1].connect_timeout, timings[1].response_timeout), (secs(5), secs(7)));
        assert_eq!(timings[1].stall_after, secs(30), "the ws default");
        assert_eq!(timings[2].stall_after, secs(10), "half a read timeout shorter than the default quiet period");
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
        let e = FileConfig::parse(twice, Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("line 6") && e.contains("name is used by another feed"), "{e}");
        let misplaced = [
            (
                "name = \"c\"\nkind = \"companies-house\"\ndialect = \"wig80\"",
                "dialect does not apply to kind = \"companies-house\"",
            ),
            (
                "name = \"s\"\nkind = \"sse\"\nurl = \"http://x\"\nstream = \"/filings\"",
                "stream does not apply to kind = \"sse\"",
            ),
            (
                "name = \"w\"\nkind = \"ws\"\ndialect = \"wig80\"\nurl = \"ws://x\"\nkey_env = \"K\"",
                "key_env does not apply to kind = \"ws\"",
            ),
            ("name = \"c\"\nkind = \"companies-house\"\nsymbols = [\"PKN\"]", "symbols does not apply"),
            ("name = \"s\"\nkind = \"sse\"", "kind = \"sse\" needs a url"),
            ("name = \"bad name\"\nkind = \"sse\"\nurl = \"http://x\"", "name \"bad name\" must be 1 to 64 letters"),
            ("name = \"\"\nkind = \"sse\"\nurl = \"http://x\"", "must be 1 to 64"),
            ("name = \"c\"\nkind = \"companies-house\"\nurl = \"ws://x\"", "url has the scheme ws:"),
            ("name = \"c\"\nkind = \"companies-house\"\nurl = \"http://x/?q=1\"", "url has a query"),
        ];
        for (entry, why) in misplaced {
            let e = FileConfig::parse(&format!("[[feeds]]\n{entry}\n"), Path::new("c.toml")).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("line "), "{entry}\n→ {e}");
        }
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
            ("[ui]\n\ntheme = \"blue\"\n".into(), 3, "expected one of `dark`, `light`, `mono`"),
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

    /// Theme, ASCII and the low-bandwidth preset: flags beat the file,
    /// NO_COLOR beats both, the locale decides ASCII unless a flag forces it.
    #[test]
    fn terminal_settings() {
        let utf8 = |name: &str| (name == "LANG").then(|| "en_GB.UTF-8".to_string());
        let file = |text: &str| FileConfig::parse(text, Path::new("c.toml")).unwrap();
        let light = file("[ui]\ntheme = \"light\"\nfps = 5\n");
        let run = |args: &RunArgs, file: &FileConfig, env: &dyn Fn(&str) -> Option<String>| {
            resolve(args, file, env, &paths()).unwrap()
        };

        let s = run(&RunArgs::default(), &FileConfig::default(), &utf8);
        assert_eq!((s.theme, s.ascii, s.tick_highlight, s.fps), (ThemeName::Dark, false, true, DEFAULT_FPS));
        assert_eq!(run(&RunArgs::default(), &light, &utf8).theme, ThemeName::Light);
        let mono = RunArgs { theme: Some(ThemeName::Mono), ..Default::default() };
        assert_eq!(run(&mono, &light, &utf8).theme, ThemeName::Mono, "the flag wins");
        let no_color = |name: &str| match name {
            "NO_COLOR" => Some("1".to_string()),
            _ => utf8(name),
        };
        let dark = RunArgs { theme: Some(ThemeName::Dark), ..Default::default() };
        assert_eq!(run(&dark, &light, &no_color).theme, ThemeName::Mono, "NO_COLOR means mono");
        let flag = RunArgs { no_color: true, ..dark.clone() };
        assert_eq!(run(&flag, &light, &utf8).theme, ThemeName::Mono, "--no-color means mono");

        // ASCII: the C locale (nothing set), or the flag.
        assert!(run(&RunArgs::default(), &FileConfig::default(), &no_env).ascii);
        let ascii = RunArgs { ascii: true, ..Default::default() };
        assert!(run(&ascii, &FileConfig::default(), &utf8).ascii);

        // The preset: 2 fps over the file's 5, no highlight, ASCII; --fps over it.
        let low = RunArgs { low_bandwidth: true, ..Default::default() };
        let s = run(&low, &light, &utf8);
        assert_eq!((s.fps, s.ascii, s.tick_highlight), (LOW_BANDWIDTH_FPS, true, false));
        let low_fps = RunArgs { fps: Some(7), ..low };
        assert_eq!(run(&low_fps, &light, &utf8).fps, 7);
    }

    #[test]
    fn values_at_the_ends_of_their_ranges_are_taken_as_given() {
        let text =
            "[companies_house]\nurl = \"http://h\"\nbackoff_cap = \"1s\"\nread_timeout = \"1h\"\n[ui]\nfps = 60\n";
        let file = FileConfig::parse(text, Path::new("c.toml")).unwrap();
        let s = resolve(&RunArgs::default(), &file, &no_env, &paths()).unwrap();
        assert_eq!(ch(&s).reconnect.backoff_cap, Duration::from_secs(1));
        assert_eq!(ch(&s).reconnect.read_timeout, Duration::from_secs(3600));
        assert_eq!(s.fps, 60);
    }

    const QUOTES_ONLY: &str =
        "[[feeds]]\nname = \"wig80\"\nkind = \"ws\"\ndialect = \"wig80\"\nurl = \"ws://localhost:8765\"\n";

    fn with_key(name: &str) -> Option<String> {
        (name == DEFAULT_KEY_ENV).then(|| "k-123".to_string())
    }

    /// A config that lists feeds runs exactly those: no Companies House feed
    /// because a key happens to be set, and never the demo.
    #[test]
    fn listed_feeds_run_exactly_as_listed() {
        let file = FileConfig::parse(QUOTES_ONLY, Path::new("q.toml")).unwrap();
        for env in [&no_env as &dyn Fn(&str) -> Option<String>, &with_key] {
            let s = resolve(&RunArgs::default(), &file, env, &paths()).unwrap();
            assert!(!s.demo);
            let names: Vec<_> = s.feeds.iter().map(|f| f.info.name.as_str()).collect();
            assert_eq!(names, ["wig80"]);
            assert_eq!(s.db_path, PathBuf::from("/data/feedtop.db"));
        }
    }

    #[test]
    fn two_companies_house_streams_each_with_its_own_name_stream_and_key() {
        let text = r#"
[[feeds]]
name = "companies"
kind = "companies-house"

[[feeds]]
name = "filings"
kind = "companies-house"
url = "http://127.0.0.1:9"
stream = "/filings"
key_env = "OTHER_KEY"
read_timeout = "2m"
"#;
        let file = FileConfig::parse(text, Path::new("c.toml")).unwrap();
        let s = resolve(&RunArgs::default(), &file, &with_key, &paths()).unwrap();
        let chs: Vec<_> = s
            .feeds
            .iter()
            .map(|f| match &f.settings {
                crate::app::FeedSettings::CompaniesHouse(ch) => (f.info.name.as_str(), ch),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(chs[0].0, "companies");
        assert_eq!((chs[0].1.base_url.as_str(), chs[0].1.stream.as_str()), (DEFAULT_CH_URL, DEFAULT_STREAM));
        assert_eq!(chs[0].1.key, ApiKey::new("k-123"), "the default key variable");
        assert_eq!(chs[1].0, "filings");
        assert_eq!((chs[1].1.base_url.as_str(), chs[1].1.stream.as_str()), ("http://127.0.0.1:9", "/filings"));
        assert_eq!(chs[1].1.key, None);
        assert_eq!(chs[1].1.reconnect.read_timeout, Duration::from_secs(120));
        assert_eq!(s.missing_tokens, ["OTHER_KEY"], "said at start, not silently sent without a key");
    }

    #[test]
    fn a_stooq_poll_feed_from_the_file() {
        let text = "[[feeds]]\nname = \"stooq\"\nkind = \"poll\"\nformat = \"stooq\"\nsymbols = [\"pkn\", \"pko\", \"cdr\"]\nevery = \"45s\"\n";
        let file = FileConfig::parse(text, Path::new("c.toml")).unwrap();
        let s = resolve(&RunArgs::default(), &file, &no_env, &paths()).unwrap();
        assert!(!s.demo);
        assert_eq!(s.feeds[0].info.kind.label(), "poll/stooq");
        let crate::app::FeedSettings::Poll(poll) = &s.feeds[0].settings else { panic!("{:?}", s.feeds[0]) };
        assert_eq!((poll.base_url.as_str(), poll.every), (DEFAULT_STOOQ_URL, Duration::from_secs(45)));
        assert_eq!(poll.symbols, ["pkn", "pko", "cdr"]);
        assert!(poll.reconnect.stall_after > poll.every, "quiet between polls is not a stall");

        let poll = |extra: &str| format!("[[feeds]]\nname = \"p\"\nkind = \"poll\"\n{extra}\n");
        let refused = [
            (poll("symbols = [\"pkn\"]"), "needs format = \"stooq\""),
            (poll("format = \"stooq\""), "needs symbols"),
            (poll("format = \"csv\"\nsymbols = [\"pkn\"]"), "unknown variant `csv`"),
            (poll("format = \"stooq\"\nsymbols = [\"pkn\"]\nevery = \"5s\""), "every must be between 15s and 1d"),
            (poll("format = \"stooq\"\nsymbols = [\"a b\"]"), "must be 1 to 32 visible characters"),
            (poll("format = \"stooq\"\nsymbols = [\"pkn\"]\nstall_after = \"1m\""), "stall_after does not apply"),
            (poll("format = \"stooq\"\nsymbols = [\"pkn\"]\nurl = \"ftp://x\""), "url has the scheme ftp:"),
        ];
        for (text, why) in refused {
            let e = FileConfig::parse(&text, Path::new("c.toml")).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("line "), "{text}\n→ {e}");
        }
        let many: Vec<String> = (0..=crate::bounds::MAX_POLL_SYMBOLS).map(|i| format!("\"s{i}\"")).collect();
        let e =
            FileConfig::parse(&poll(&format!("format = \"stooq\"\nsymbols = [{}]", many.join(","))), Path::new("c"))
                .unwrap_err()
                .to_string();
        assert!(e.contains("at most 200"), "{e}");
    }

    /// `--demo` runs the simulators alone and keeps the names of the file's
    /// feeds it does not run, to say so.
    #[test]
    fn demo_sets_the_files_feeds_aside() {
        let file = FileConfig::parse(QUOTES_ONLY, Path::new("q.toml")).unwrap();
        let s = resolve(&RunArgs { demo: true, ..RunArgs::default() }, &file, &with_key, &paths()).unwrap();
        assert!(s.demo && s.feeds.is_empty());
        assert_eq!(s.set_aside, ["wig80"]);
        assert_eq!(s.db_path, PathBuf::from("/data/demo.db"));
    }

    /// The default Companies House feed's settings cannot sit beside a list
    /// that would not run it: said at start, with what to write instead.
    #[test]
    fn the_default_feeds_settings_beside_a_feed_list_are_refused() {
        let text = format!("[companies_house]\nstream = \"/filings\"\n\n{QUOTES_ONLY}");
        let e = FileConfig::parse(&text, Path::new("c.toml")).unwrap_err();
        assert!(e.is_usage());
        let e = e.to_string();
        assert!(e.contains("line 1") && e.contains("kind = \"companies-house\""), "{e}");
    }

    /// `--ch-url` asks for the default Companies House feed by name: it runs
    /// first, beside the listed feeds (unless one has its name).
    #[test]
    fn the_ch_url_flag_adds_the_default_feed_to_the_list() {
        let file = FileConfig::parse(QUOTES_ONLY, Path::new("q.toml")).unwrap();
        let args = RunArgs { ch_url: Some("http://127.0.0.1:9".into()), ..RunArgs::default() };
        let s = resolve(&args, &file, &no_env, &paths()).unwrap();
        let names: Vec<_> = s.feeds.iter().map(|f| f.info.name.as_str()).collect();
        assert_eq!(names, ["ch/companies", "wig80"]);
        assert_eq!(ch(&s).base_url, "http://127.0.0.1:9");
        let clash = QUOTES_ONLY.replace("wig80\"\nkind", "ch/companies\"\nkind");
        let file = FileConfig::parse(&clash, Path::new("q.toml")).unwrap();
        let e = resolve(&args, &file, &no_env, &paths()).unwrap_err();
        assert!(e.is_usage() && e.to_string().contains("lists a feed of that name"), "{e}");
    }

    #[test]
    fn read_and_backoff_flags_reach_every_feed() {
        let file = FileConfig::parse(QUOTES_ONLY, Path::new("q.toml")).unwrap();
        let args = RunArgs {
            read_timeout: Some(Duration::from_secs(20)),
            backoff_cap: Some(Duration::from_secs(5)),
            ..RunArgs::default()
        };
        let s = resolve(&args, &file, &no_env, &paths()).unwrap();
        let r = s.feeds[0].reconnect();
        assert_eq!((r.read_timeout, r.backoff_cap), (Duration::from_secs(20), Duration::from_secs(5)));
    }

    /// `strike-offs` and the watcher read the same file for the same settings.
    #[test]
    fn the_database_path_is_decided_in_one_place() {
        let file = FileConfig::parse("[storage]\ndb = \"/srv/f.db\"\n", Path::new("c.toml")).unwrap();
        assert_eq!(db_path(None, &file, false, &paths()), PathBuf::from("/srv/f.db"));
        assert_eq!(db_path(None, &file, true, &paths()), PathBuf::from("/data/demo.db"));
        assert_eq!(db_path(Some(Path::new("/x.db")), &file, true, &paths()), PathBuf::from("/x.db"));
        let s = resolve(&RunArgs::default(), &file, &with_key, &paths()).unwrap();
        assert_eq!(s.db_path, db_path(None, &file, false, &paths()));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = FileConfig::parse("[ui]\nfsp = 5\n", Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("line 2") && e.contains("fsp"), "{e}");
    }

    /// A bad `[[alerts]]` rule stops the start with the file, line, rule and
    /// key; a good one reaches the settings, its watch list read beside the file.
    #[test]
    fn alert_rules_are_checked_at_load_and_reach_the_settings() {
        let text = "[[alerts]]\non = \"feed-down\"\nafter = \"2m\"\nactions = [\"bell\"]\n\n[[alerts]]\non = \"quote-move\"\nsymbols = [\"PKN\"]\npercent = 3.0\nwithin = \"1s\"\nactions = [\"flash\"]\n";
        let e = FileConfig::parse(text, Path::new("c.toml")).unwrap_err();
        assert!(e.is_usage());
        assert_eq!(
            e.to_string(),
            "config file c.toml: line 10 (`within = \"1s\"`): [[alerts]] rule 2: within must be between 10s and 1d (got 1s)"
        );
        let e = FileConfig::parse(
            "[[alerts]]\non = \"strike-off\"\nactions = [\"bell\"]\nevery = \"1m\"\n",
            Path::new("c.toml"),
        );
        assert!(e.unwrap_err().to_string().contains("line 4"), "an unknown key is named by toml");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("watch.txt"), "01234567\n").unwrap();
        let text = "[[alerts]]\non = \"strike-off\"\ncompanies = \"watch.txt\"\nactions = [\"bell\"]\n";
        let file = FileConfig::parse(text, &dir.path().join("config.toml")).unwrap();
        let settings = resolve(&RunArgs::default(), &file, &no_env, &paths()).unwrap();
        assert_eq!(settings.alerts.0.len(), 1);
        let missing = FileConfig::parse(text, &dir.path().join("sub/config.toml")).unwrap_err().to_string();
        assert!(missing.contains("line 3") && missing.contains("sub/watch.txt"), "{missing}");
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
