//! Connecting to NATS: where, as whom, and what the stream keeps. The
//! credentials come from the environment or the config file and are never
//! logged; the URL is shown with any user and password replaced by `***`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

/// The default JetStream stream the relay writes and viewers read.
pub const DEFAULT_STREAM: &str = "FEEDTOP";
/// How far back a viewer starts by default: the panes fill at once.
pub const DEFAULT_SINCE: Duration = Duration::from_secs(3600);
/// How long the stream keeps a message by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The stream's size cap by default (the oldest messages go first).
pub const DEFAULT_MAX_BYTES: i64 = 1 << 30;
/// JetStream's de-duplication window: a message republished within it
/// (a relay that restarted, a reconnect mid-batch) is stored once. Also
/// how long a crashed relay may stay down before the few messages it had
/// published but not yet marked as published could be stored twice.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How feedtop proves who it is to NATS.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum NatsAuth {
    #[default]
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
    /// A `.creds` file (a user JWT and its nkey seed).
    Creds(PathBuf),
}

impl std::fmt::Debug for NatsAuth {
    // Derived Debug would print the secrets into a log line or a panic.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => write!(f, "none"),
            NatsAuth::UserPassword { user, .. } => write!(f, "user {user} with a password"),
            NatsAuth::Token(_) => write!(f, "a token"),
            NatsAuth::Creds(path) => write!(f, "credentials file {}", path.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NatsSettings {
    /// `nats://host:4222`, `tls://host:4222`, or several, comma-separated
    /// (the servers of a cluster).
    pub url: String,
    pub auth: NatsAuth,
    /// A CA file for `tls://` servers whose certificate no system root signs.
    pub tls_ca: Option<PathBuf>,
    pub stream: String,
    /// Relay: what the stream keeps (created with these, updated to them).
    pub max_age: Duration,
    pub max_bytes: i64,
    pub replicas: usize,
    /// Viewer: how far back it starts.
    pub since: Duration,
}

impl NatsSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            auth: NatsAuth::None,
            tls_ca: None,
            stream: DEFAULT_STREAM.to_string(),
            max_age: DEFAULT_MAX_AGE,
            max_bytes: DEFAULT_MAX_BYTES,
            replicas: 1,
            since: DEFAULT_SINCE,
        }
    }

    /// Credentials from the environment, as the `nats` CLI names them:
    /// `NATS_CREDS` (a `.creds` file), else `NATS_TOKEN`, else `NATS_USER`
    /// with `NATS_PASSWORD`. A user without a password is refused.
    pub fn auth_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<NatsAuth, String> {
        let get = |name: &str| env(name).filter(|v| !v.is_empty());
        if let Some(path) = get("NATS_CREDS") {
            return Ok(NatsAuth::Creds(PathBuf::from(path)));
        }
        if let Some(token) = get("NATS_TOKEN") {
            return Ok(NatsAuth::Token(token));
        }
        match (get("NATS_USER"), get("NATS_PASSWORD")) {
            (Some(user), Some(password)) => Ok(NatsAuth::UserPassword { user, password }),
            (Some(_), None) => Err("NATS_USER is set but NATS_PASSWORD is not: set both, or neither".into()),
            (None, Some(_)) => Err("NATS_PASSWORD is set but NATS_USER is not: set both, or neither".into()),
            (None, None) => Ok(NatsAuth::None),
        }
    }

    /// The URL as it may be shown: a user or password in it is `***`.
    pub fn shown_url(&self) -> String {
        shown_url(&self.url)
    }

    /// The stream as the relay wants it.
    pub fn stream_config(&self) -> jetstream::stream::Config {
        jetstream::stream::Config {
            name: self.stream.clone(),
            subjects: vec![super::subjects::ALL.to_string()],
            max_age: self.max_age,
            max_bytes: self.max_bytes,
            num_replicas: self.replicas,
            duplicate_window: DUPLICATE_WINDOW,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        }
    }
}

/// `nats://u:p@host:4222,nats://host2` → `nats://***@host:4222,nats://host2`.
pub fn shown_url(urls: &str) -> String {
    urls.split(',')
        .map(|one| match one.trim().split_once('@') {
            Some((scheme_and_user, host)) => {
                let scheme = scheme_and_user.split_once("://").map_or("", |(s, _)| s);
                if scheme.is_empty() {
                    format!("***@{host}")
                } else {
                    format!("{scheme}://***@{host}")
                }
            }
            None => one.trim().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Why NATS cannot be used: one line, never with a secret in it.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("NATS {url}: {why}")]
    Connect { url: String, why: String },
    #[error("NATS credentials file {path}: {why}")]
    Creds { path: String, why: String },
    #[error("NATS stream {stream} on {url}: {why}")]
    Stream { stream: String, url: String, why: String },
}

/// Connection news the screen shows: how often the client connected.
#[derive(Debug, Default)]
pub struct ConnectionEvents {
    pub connects: AtomicU64,
    pub disconnects: AtomicU64,
}

impl ConnectionEvents {
    /// Connects after the first: the reconnects.
    pub fn reconnects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed).saturating_sub(1)
    }
}

/// A client for `settings`, reconnecting by itself forever once connected.
/// With `wait` false it returns at once and connects in the background
/// (the relay: NATS may be down when it starts, and ingest goes on); with
/// `wait` true it fails when the first attempt does (a viewer has nothing
/// to show without the stream).
pub async fn connect(
    settings: &NatsSettings,
    name: &str,
    wait: bool,
    events: Arc<ConnectionEvents>,
) -> Result<async_nats::Client, NatsError> {
    let url = settings.shown_url();
    let redacted = std::sync::Arc::new(settings.clone());
    // rustls is built with two crypto backends here (reqwest's aws-lc-rs,
    // async-nats' ring), so it cannot pick a process default by itself and
    // a `tls://` connection would panic. Choose once; a second call is a no-op.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .event_callback(move |event| {
            let events = events.clone();
            let redacted = redacted.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        events.connects.fetch_add(1, Ordering::Relaxed);
                    }
                    async_nats::Event::Disconnected => {
                        events.disconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    // The client's own log lines are kept out (they show
                    // secrets: see `logging::quiet_dependencies`): its news
                    // is told here instead, in feedtop's words.
                    async_nats::Event::ServerError(e) => {
                        tracing::warn!("NATS server: {}", redacted.redact(&e.to_string()))
                    }
                    async_nats::Event::ClientError(e) => {
                        tracing::warn!("NATS client: {}", redacted.redact(&e.to_string()))
                    }
                    async_nats::Event::SlowConsumer(_) => {
                        tracing::warn!(
                            "NATS: this feedtop reads the stream slower than it comes; the server may drop it"
                        )
                    }
                    async_nats::Event::LameDuckMode => {
                        tracing::info!("NATS: the server is going away (lame duck mode); reconnecting to another")
                    }
                    // Closing is ours (a stop); draining too.
                    other => tracing::debug!("NATS: {other}"),
                }
            }
        });
    if !wait {
        options = options.retry_on_initial_connect();
    }
    options = match &settings.auth {
        NatsAuth::None => options,
        NatsAuth::UserPassword { user, password } => options.user_and_password(user.clone(), password.clone()),
        NatsAuth::Token(token) => options.token(token.clone()),
        NatsAuth::Creds(path) => options
            .credentials_file(path)
            .await
            .map_err(|e| NatsError::Creds { path: path.display().to_string(), why: e.to_string() })?,
    };
    if let Some(ca) = &settings.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if settings.url.split(',').any(|u| u.trim().starts_with("tls://")) {
        options = options.require_tls(true);
    }
    let servers = settings.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect::<Vec<_>>();
    options.connect(servers).await.map_err(|e| NatsError::Connect { url, why: settings.redact(&e.to_string()) })
}

impl NatsSettings {
    /// `text` (an error from the client) with every secret of these
    /// settings replaced by `***`, and made safe for a terminal.
    pub fn redact(&self, text: &str) -> String {
        let mut secrets: Vec<&str> = Vec::new();
        for one in self.url.split(',') {
            if let Some((before, _)) = one.split_once('@') {
                let userinfo = before.rsplit_once("://").map_or(before, |(_, u)| u);
                secrets.extend(userinfo.split(':'));
            }
        }
        match &self.auth {
            NatsAuth::UserPassword { password, .. } => secrets.push(password),
            NatsAuth::Token(token) => secrets.push(token),
            NatsAuth::None | NatsAuth::Creds(_) => {}
        }
        let mut text = text.to_string();
        for secret in secrets.into_iter().filter(|s| s.len() >= 3) {
            text = text.replace(secret, "***");
        }
        crate::sanitize::for_terminal(&text).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_a_url_or_the_settings_are_never_shown() {
        assert_eq!(shown_url("nats://u:secret@h:4222"), "nats://***@h:4222");
        assert_eq!(shown_url("tls://tok@h:4222, nats://h2:4222"), "tls://***@h:4222,nats://h2:4222");
        assert_eq!(shown_url("h:4222"), "h:4222");
        let auth = NatsAuth::UserPassword { user: "u".into(), password: "hunter2".into() };
        assert!(!format!("{auth:?}").contains("hunter2"));
        assert!(!format!("{:?}", NatsAuth::Token("t0k3n".into())).contains("t0k3n"));
        let mut settings = NatsSettings::new("nats://alice:s3cret@h:4222");
        settings.auth = NatsAuth::Token("t0k3n".into());
        assert_eq!(settings.redact("refused alice:s3cret with t0k3n"), "refused ***:*** with ***");
    }
}
