//! Keys and tokens: kept out of logs, errors, output and the database.

use std::fmt;

/// A stream key or access token. `Debug` never shows the value, so it cannot
/// leak through a log line or an error message by accident; the only way to
/// the value is [`ApiKey::expose`], used where it goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Returns `None` for an empty or blank key.
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let key = key.into().trim().to_string();
        (!key.is_empty()).then_some(Self(key))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of the value in `text` (error messages from
    /// libraries may quote a URL that carries it).
    pub fn scrub(&self, text: &str) -> String {
        text.replace(&self.0, "***")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(redacted)")
    }
}

/// `url` with `token=<token>` added to its query (the carbon access layer
/// takes its JWT there). Unparseable URLs are returned unchanged, so the
/// connect error names them.
pub fn with_token(url: &str, token: Option<&ApiKey>) -> String {
    let Some(token) = token else { return url.to_string() };
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.query_pairs_mut().append_pair("token", token.expose());
            u.into()
        }
        Err(_) => url.to_string(),
    }
}

/// A URL fit to show: the value of any `token`, `key` or `apikey` query
/// parameter replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else { return url.to_string() };
    if u.query().is_none() {
        return url.to_string();
    }
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let secret =
                matches!(k.to_ascii_lowercase().as_str(), "token" | "key" | "apikey" | "api_key" | "access_token");
            (k.into_owned(), if secret { "***".to_string() } else { v.into_owned() })
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let key = ApiKey::new("secret-123").unwrap();
        assert!(!format!("{key:?}").contains("secret"));
        assert!(ApiKey::new("  ").is_none());
        assert_eq!(key.scrub("url?token=secret-123&x=1"), "url?token=***&x=1");
    }

    #[test]
    fn token_goes_into_the_query_and_is_redacted_for_display() {
        let key = ApiKey::new("eyJ.abc/+=").unwrap();
        let url = with_token("ws://127.0.0.1:8001/ws/stream", Some(&key));
        assert!(url.starts_with("ws://127.0.0.1:8001/ws/stream?token="));
        let shown = redact_url(&url);
        assert_eq!(shown, "ws://127.0.0.1:8001/ws/stream?token=***");
        assert!(!shown.contains("eyJ"));
        assert_eq!(redact_url("http://h/p?a=1&token=x"), "http://h/p?a=1&token=***");
        assert_eq!(redact_url("http://h/p"), "http://h/p");
        assert_eq!(with_token("ws://h/p", None), "ws://h/p");
    }
}
