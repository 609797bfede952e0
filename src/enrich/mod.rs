//! Companies House REST enrichment (issue 13): for each strike-off change of
//! the kinds in `[enrich] on`, the company's profile (confirming what the
//! stream said) and its officers, fetched through a queue stored in SQLite,
//! within the REST rate limit, behind a circuit breaker.
//!
//! The pipeline queues companies with the change that asked for them
//! (`Fact::Enrich`, one transaction); the task here ([`queue`]) takes calls
//! from that queue one at a time and reports its state and each company's
//! news back to the pipeline.

pub mod breaker;
pub mod client;
pub mod limiter;
pub mod queue;

use std::time::Duration;

use crate::feeds::secret::ApiKey;
use crate::model::strike_off::ChangeKind;

pub use breaker::BreakerSettings;
pub use queue::{spawn, EnrichHandle};

/// The REST API's default base URL.
pub const DEFAULT_URL: &str = "https://api.company-information.service.gov.uk";
/// The variable the REST key is read from by default.
pub const DEFAULT_KEY_ENV: &str = "CH_REST_API_KEY";
/// A company fetched within this long is not fetched again.
pub const DEFAULT_CACHE_AGE: Duration = Duration::from_secs(24 * 3600);
/// The REST API's published limit.
pub const DEFAULT_LIMIT: Limit = Limit { calls: 600, per: Duration::from_secs(300) };

/// `N` calls per window `per`, e.g. `600/5m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub calls: u32,
    pub per: Duration,
}

impl Limit {
    /// Parses `N/duration` (`600/5m`, `2/1s`). The count is 1–100,000 and
    /// the window 1 s to 1 day: outside that it is a typo, not a limit.
    pub fn parse(text: &str) -> Result<Self, String> {
        let form = "write it as calls/window, e.g. \"600/5m\"";
        let (calls, per) = text.split_once('/').ok_or_else(|| format!("{text:?}: {form}"))?;
        let calls: u32 =
            calls.trim().parse().map_err(|_| format!("{text:?}: {:?} is not a whole number; {form}", calls.trim()))?;
        let per = crate::bounds::parse_duration(per.trim()).map_err(|e| format!("{text:?}: {e}"))?;
        if !(1..=100_000).contains(&calls) {
            return Err(format!("{text:?}: the count must be 1 to 100000"));
        }
        if per < Duration::from_secs(1) || per > Duration::from_secs(86_400) {
            return Err(format!("{text:?}: the window must be 1s to 1d"));
        }
        Ok(Self { calls, per })
    }
}

/// Everything the enrichment task needs, resolved.
#[derive(Debug, Clone)]
pub struct EnrichSettings {
    pub url: String,
    pub key: ApiKey,
    /// The variable the key came from, for messages about it.
    pub key_env: String,
    pub limit: Limit,
    /// The changes that queue a company.
    pub on: Vec<ChangeKind>,
    pub cache_age: Duration,
    /// One call's deadline (connect and answer).
    pub timeout: Duration,
    pub breaker: BreakerSettings,
    /// How often an empty queue is looked at again (an index lookup: cheap,
    /// and new changes reach the screen's queue count within it).
    pub idle_poll: Duration,
}

impl EnrichSettings {
    pub fn new(url: impl Into<String>, key: ApiKey, key_env: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key,
            key_env: key_env.into(),
            limit: DEFAULT_LIMIT,
            on: vec![ChangeKind::Entered],
            cache_age: DEFAULT_CACHE_AGE,
            timeout: Duration::from_secs(30),
            breaker: BreakerSettings::default(),
            idle_poll: Duration::from_millis(500),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_with_floors_and_ceilings() {
        assert_eq!(Limit::parse("600/5m").unwrap(), DEFAULT_LIMIT);
        assert_eq!(Limit::parse(" 2 / 1s ").unwrap(), Limit { calls: 2, per: Duration::from_secs(1) });
        for bad in ["600", "0/5m", "x/5m", "600/0s", "600/500ms", "600/2d", "200000/5m", "600/five"] {
            assert!(Limit::parse(bad).is_err(), "{bad} was taken");
        }
    }
}
