//! The circuit breaker: after repeated server errors or timeouts, stop
//! calling for a while, then let one trial call through. A success closes
//! it; a failed trial opens it again. Calls are made one at a time, so the
//! first call after the open period is the one trial.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Failures in a row that open the breaker.
    pub failures: u32,
    /// How long it stays open before the trial call.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self { failures: 3, open_for: Duration::from_secs(60) }
    }
}

#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self { settings, failures: 0, open_until: None }
    }

    /// `Some(until)` while open: no call before then.
    pub fn open_until(&self, now: Instant) -> Option<Instant> {
        self.open_until.filter(|&until| until > now)
    }

    pub fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
    }

    /// Counts a failure; returns true when this one opened the breaker.
    pub fn failure(&mut self, now: Instant) -> bool {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.settings.failures.max(1) {
            self.open_until = Some(now + self.settings.open_for);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_then_one_trial_decides() {
        let t0 = Instant::now();
        let open_for = Duration::from_secs(30);
        let mut b = Breaker::new(BreakerSettings { failures: 3, open_for });
        assert!(!b.failure(t0));
        b.success();
        assert!(!b.failure(t0));
        assert!(!b.failure(t0));
        assert_eq!(b.open_until(t0), None);
        assert!(b.failure(t0));
        assert_eq!(b.open_until(t0), Some(t0 + open_for));
        let later = t0 + open_for;
        assert_eq!(b.open_until(later), None, "the trial call may go");
        assert!(b.failure(later), "a failed trial opens it again at once");
        assert_eq!(b.open_until(later), Some(later + open_for));
        b.success();
        assert_eq!(b.open_until(later), None);
        assert!(!b.failure(later), "closed: failures count from zero again");
    }
}
