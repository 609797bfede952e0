//! The enrichment's state as the screen and headless lines show it.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::store::enrich::CompanyEnrichment;

/// What the enrichment task is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrichState {
    /// Nothing queued.
    Idle,
    /// Working through the queue at the limit.
    Running,
    /// The server said stop (0 remaining, 429, 403) until then.
    Paused { until: DateTime<Utc> },
    /// The breaker is open (repeated 5xx or timeouts) until then.
    Open { until: DateTime<Utc> },
    /// The REST API refused the key: no more calls this run.
    AuthFailed,
}

impl EnrichState {
    pub fn label(&self) -> &'static str {
        match self {
            EnrichState::Idle => "idle",
            EnrichState::Running => "running",
            EnrichState::Paused { .. } => "paused",
            EnrichState::Open { .. } => "open",
            EnrichState::AuthFailed => "auth failed",
        }
    }

    /// Until when a pause or an open breaker lasts.
    pub fn until(&self) -> Option<DateTime<Utc>> {
        match self {
            EnrichState::Paused { until } | EnrichState::Open { until } => Some(*until),
            _ => None,
        }
    }
}

/// The enrichment task's report, refreshed after every call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichStatus {
    pub state: EnrichState,
    /// Calls queued (an officers call may take more than one page).
    pub queued: u64,
    /// Calls made in the current limit window, and the limit.
    pub used: u32,
    pub limit: u32,
    pub per: Duration,
    /// When the next call may start, while something is queued.
    pub next_call: Option<DateTime<Utc>>,
    /// Calls made in this run.
    pub calls: u64,
}

impl EnrichStatus {
    pub fn new(limit: u32, per: Duration) -> Self {
        Self { state: EnrichState::Idle, queued: 0, used: 0, limit, per, next_call: None, calls: 0 }
    }

    /// How long the queue takes at the limit (ignoring pauses).
    pub fn drain_time(&self) -> Duration {
        let limit = u64::from(self.limit.max(1));
        let windows = self.queued.saturating_sub(u64::from(self.limit.saturating_sub(self.used))).div_ceil(limit);
        let partial = self.queued.min(u64::from(self.limit.saturating_sub(self.used)));
        // Calls that fit in the current window go now; the rest take a window per `limit`.
        if partial == self.queued {
            Duration::ZERO
        } else {
            self.per.saturating_mul(u32::try_from(windows).unwrap_or(u32::MAX))
        }
    }
}

/// The model's part: the task's last report (`None`: enrichment is off)
/// and what is known of each company in the strike-off list.
#[derive(Debug, Clone, Default)]
pub struct Enrichment {
    pub status: Option<EnrichStatus>,
    pub companies: HashMap<String, CompanyEnrichment>,
}

/// One company's news from the enrichment task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrichUpdate {
    Profile { company_number: String, disagrees: Option<String> },
    Officers { company_number: String, count: u32 },
}

impl Enrichment {
    pub fn apply(&mut self, update: EnrichUpdate) {
        match update {
            EnrichUpdate::Profile { company_number, disagrees } => {
                self.companies.entry(company_number).or_default().disagrees = disagrees;
            }
            EnrichUpdate::Officers { company_number, count } => {
                self.companies.entry(company_number).or_default().officers = Some(count);
            }
        }
    }

    /// What is known of a company (for the strike-off list).
    pub fn of(&self, company_number: &str) -> Option<&CompanyEnrichment> {
        self.companies.get(company_number)
    }

    /// Keeps only the companies still listed, once the map outgrows the list.
    pub fn retain_listed<'a>(&mut self, listed: impl Iterator<Item = &'a str>, cap: usize) {
        if self.companies.len() <= cap {
            return;
        }
        let keep: std::collections::HashSet<&str> = listed.collect();
        self.companies.retain(|n, _| keep.contains(n.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_time_counts_whole_windows_beyond_what_fits_now() {
        let per = Duration::from_secs(300);
        let mut s = EnrichStatus::new(600, per);
        s.queued = 100;
        assert_eq!(s.drain_time(), Duration::ZERO);
        s.used = 600;
        s.queued = 1200;
        assert_eq!(s.drain_time(), per * 2);
        s.used = 100;
        s.queued = 1000;
        assert_eq!(s.drain_time(), per);
    }
}
