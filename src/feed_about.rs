//! A configured feed described for the screen ([`FeedAbout`]): where it
//! connects, secrets hidden, and the settings in force. Built once by the
//! pipeline from the [`FeedSpec`], so the model and the UI never see the feed
//! tasks' settings types (or the keys inside them).

use std::time::Duration;

use crate::app::{FeedSettings, FeedSpec};
use crate::feeds::secret::redact_url;
use crate::feeds::supervisor::Reconnect;
use crate::model::FeedAbout;

/// `1m 30s`, as the config file writes durations.
fn dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A list, or `all` when it is empty (no filter).
fn list_or_all(items: &[String]) -> String {
    if items.is_empty() {
        "all".to_string()
    } else {
        items.join(", ")
    }
}

/// `url` fit to show: secret query values (`redact_url`) and a password in
/// the authority replaced by `***`.
pub fn shown_url(url: &str) -> String {
    // `redact_url` writes the whole query again (`&h&` becomes `&h=&`):
    // keep the URL as configured unless it had something to hide.
    let pairs = |u: &str| url::Url::parse(u).map(|u| u.query_pairs().into_owned().collect::<Vec<_>>()).ok();
    let redacted = match redact_url(url) {
        r if pairs(&r) == pairs(url) => url.to_string(),
        r => r,
    };
    match url::Url::parse(&redacted) {
        Ok(mut u) if u.password().is_some() => match u.set_password(Some("***")) {
            Ok(()) => u.into(),
            Err(()) => redacted,
        },
        _ => redacted,
    }
}

/// `4 MiB` for the round sizes the defaults use, else bytes.
fn size(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

fn set_or_not(present: bool) -> String {
    if present { "set (hidden)" } else { "none" }.to_string()
}

fn reconnect(r: &Reconnect, out: &mut Vec<(&'static str, String)>) {
    out.push(("connect timeout", dur(r.connect_timeout)));
    out.push(("response timeout", dur(r.response_timeout)));
    out.push(("read-idle timeout", dur(r.read_timeout)));
    out.push(("stalled after", dur(r.stall_after)));
    out.push(("backoff", format!("{} doubling to {}, jittered", dur(r.backoff_base), dur(r.backoff_cap))));
    out.push(("healthy after", dur(r.healthy_after)));
    out.push(("auth retry", dur(r.auth_retry)));
}

impl FeedSpec {
    /// The feed as the detail view shows it.
    pub fn about(&self) -> FeedAbout {
        let mut settings = Vec::new();
        let url = match &self.settings {
            FeedSettings::CompaniesHouse(s) => {
                reconnect(&s.reconnect, &mut settings);
                settings.push(("stream", s.stream.clone()));
                settings.push(("API key", set_or_not(s.key.is_some())));
                settings.push(("wait after 429", dur(s.rate_limit_wait)));
                settings.push(("longest line", size(s.max_line)));
                format!("{}{}", s.base_url.trim_end_matches('/'), s.stream)
            }
            FeedSettings::WebSocket(s) => {
                reconnect(&s.reconnect, &mut settings);
                settings.push(("token", set_or_not(s.token.is_some())));
                settings.push(("topics", s.topics.join(", ")));
                if let Some(filters) = &s.filters {
                    settings.push(("filters", serde_json::Value::Object(filters.clone()).to_string()));
                }
                settings.push(("symbols", list_or_all(&s.symbols)));
                settings.push(("ping every", dur(s.ping_every)));
                settings.push(("largest frame", size(s.max_frame)));
                s.url.clone()
            }
            FeedSettings::Sse(s) => {
                reconnect(&s.reconnect, &mut settings);
                settings.push(("token", set_or_not(s.token.is_some())));
                if !s.topics.is_empty() {
                    settings.push(("topics", s.topics.join(", ")));
                }
                if let Some(filters) = &s.filters {
                    settings.push(("filters", serde_json::Value::Object(filters.clone()).to_string()));
                }
                settings.push(("symbols", list_or_all(&s.symbols)));
                settings.push(("largest event", size(s.max_event)));
                s.url.clone()
            }
            FeedSettings::Poll(s) => {
                reconnect(&s.reconnect, &mut settings);
                settings.push(("poll every", dur(s.every)));
                settings.push(("symbols", list_or_all(&s.symbols)));
                settings.push(("wait after 429", dur(s.rate_limit_wait)));
                s.url()
            }
        };
        FeedAbout { url: Some(shown_url(&url)), settings }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::secret::ApiKey;
    use crate::feeds::websocket::WsSettings;
    use feedtop_proto::Dialect;

    #[test]
    fn secrets_never_reach_the_description() {
        let mut ws = WsSettings::new("wss://user:hunter2@carbon.example/ws?token=SECRET-JWT&x=1", Dialect::Carbon);
        ws.token = ApiKey::new("SECRET-JWT");
        let about = FeedSpec::websocket("carbon", ws).about();
        let url = about.url.as_deref().unwrap();
        assert_eq!(url, "wss://user:***@carbon.example/ws?token=***&x=1");
        let all = format!("{about:?}");
        assert!(!all.contains("SECRET-JWT") && !all.contains("hunter2"), "{all}");
        assert!(about.settings.contains(&("token", "set (hidden)".to_string())));
    }

    #[test]
    fn a_url_without_secrets_is_shown_as_configured() {
        let stooq = "http://127.0.0.1:9/q/l/?s=pkn+cdr&f=sd2t2ohlcv&h&e=csv";
        assert_eq!(shown_url(stooq), stooq);
        assert_eq!(shown_url("not a url"), "not a url");
        assert_eq!(shown_url("https://h/p?h&key=abc"), "https://h/p?h=&key=***");
    }

    #[test]
    fn settings_in_force_are_listed() {
        let ch = crate::feeds::companies_house::ChSettings::new(
            "https://stream.example/",
            "/companies",
            ApiKey::new("k-123"),
        );
        let about = FeedSpec::companies_house("ch/companies", ch).about();
        assert_eq!(about.url.as_deref(), Some("https://stream.example/companies"));
        let get = |k: &str| about.settings.iter().find(|s| s.0 == k).map(|s| s.1.as_str());
        assert_eq!(get("stalled after"), Some("45s"));
        assert_eq!(get("backoff"), Some("1s doubling to 1m, jittered"));
        assert_eq!(get("API key"), Some("set (hidden)"));
        assert!(!format!("{about:?}").contains("k-123"));
    }
}
