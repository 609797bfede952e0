//! Keeps the REST calls within the limit.
//!
//! The limit is "N calls per window" (600 per 5 minutes). A token bucket of
//! N tokens refilled at N per window can make up to 2N calls in one window
//! (a full bucket, then a window's refill), so this keeps the times of the
//! last N calls instead and allows a call only when fewer than N fall in the
//! window before it: never more than N in *any* window, and a backlog still
//! drains at the full rate. On top of that it obeys the server: a remaining
//! count of 0 or a 429/403 pauses until the server's reset time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Limit;

#[derive(Debug)]
pub struct Limiter {
    limit: Limit,
    /// Start times of the calls in the last window, oldest first.
    calls: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

/// What the server said about its limit in one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerLimit {
    /// `X-Ratelimit-Remain` or `X-Ratelimit-Remaining`.
    pub remaining: Option<u64>,
    /// `X-Ratelimit-Reset` (epoch seconds) as a time from now.
    pub reset_in: Option<Duration>,
    /// `Retry-After` in seconds.
    pub retry_after: Option<Duration>,
    /// The answer was 429, or the 403 the API sends instead.
    pub over_limit: bool,
}

impl Limiter {
    pub fn new(limit: Limit) -> Self {
        Self { limit, calls: VecDeque::new(), paused_until: None }
    }

    /// A limiter that remembers calls made before it (an earlier run's, as
    /// stored), oldest first.
    pub fn with_calls(limit: Limit, calls: impl IntoIterator<Item = Instant>) -> Self {
        let mut limiter = Self::new(limit);
        for at in calls {
            limiter.calls.push_back(at);
            if limiter.calls.len() > limit.calls as usize {
                limiter.calls.pop_front();
            }
        }
        limiter
    }

    /// The earliest time the next call may start.
    pub fn next_allowed(&self, now: Instant) -> Instant {
        let by_window = if self.calls.len() >= self.limit.calls as usize {
            // The call that leaves the window first makes room.
            self.calls.front().map_or(now, |&oldest| oldest + self.limit.per)
        } else {
            now
        };
        by_window.max(self.paused_until.unwrap_or(now)).max(now)
    }

    /// A pause the server asked for, while it lasts.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|&until| until > now)
    }

    /// Counts a call starting at `now`.
    pub fn record(&mut self, now: Instant) {
        self.forget_before(now);
        self.calls.push_back(now);
        while self.calls.len() > self.limit.calls as usize {
            self.calls.pop_front();
        }
    }

    /// Calls made in the window ending at `now`.
    pub fn used(&mut self, now: Instant) -> u32 {
        self.forget_before(now);
        self.calls.len() as u32
    }

    /// Obeys the server: at 0 remaining, or past its limit, wait for its
    /// reset (or `Retry-After`, or a whole window when it names neither).
    /// A reset further off than two windows is not believed: a wrong clock
    /// or a hostile header must not stop enrichment for days.
    pub fn observe(&mut self, now: Instant, server: ServerLimit) {
        let exhausted = server.remaining == Some(0);
        if !(exhausted || server.over_limit) {
            return;
        }
        let wait = server.reset_in.or(server.retry_after).unwrap_or(self.limit.per).min(self.limit.per * 2);
        // A reset already past still means "not now": wait a moment.
        let wait = wait.max(Duration::from_millis(500));
        let until = now + wait;
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
    }

    fn forget_before(&mut self, now: Instant) {
        while self.calls.front().is_some_and(|&t| now.saturating_duration_since(t) >= self.limit.per) {
            self.calls.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(calls: u32, secs: u64) -> Limit {
        Limit { calls, per: Duration::from_secs(secs) }
    }

    #[test]
    fn never_more_than_the_limit_in_any_window() {
        let t0 = Instant::now();
        let mut l = Limiter::new(limit(3, 10));
        let mut starts = Vec::new();
        let mut now = t0;
        for _ in 0..10 {
            now = l.next_allowed(now);
            l.record(now);
            starts.push(now);
        }
        for (i, &s) in starts.iter().enumerate() {
            let in_window = starts[i..].iter().filter(|&&t| t < s + Duration::from_secs(10)).count();
            assert!(in_window <= 3, "{in_window} calls in the window from call {i}");
        }
        // And it drains at the limit: 10 calls at 3 per 10 s start by 30 s.
        assert_eq!(starts[9] - t0, Duration::from_secs(30));
    }

    #[test]
    fn the_servers_zero_remaining_and_429_pause_until_its_reset() {
        let t0 = Instant::now();
        let mut l = Limiter::new(limit(100, 300));
        l.observe(t0, ServerLimit { remaining: Some(5), ..ServerLimit::default() });
        assert_eq!(l.next_allowed(t0), t0);
        l.observe(
            t0,
            ServerLimit { remaining: Some(0), reset_in: Some(Duration::from_secs(42)), ..Default::default() },
        );
        assert_eq!(l.next_allowed(t0), t0 + Duration::from_secs(42));
        let mut l = Limiter::new(limit(100, 300));
        l.observe(
            t0,
            ServerLimit { over_limit: true, retry_after: Some(Duration::from_secs(7)), ..Default::default() },
        );
        assert_eq!(l.paused_until(t0), Some(t0 + Duration::from_secs(7)));
        // A reset a year off is capped at two windows.
        let mut l = Limiter::new(limit(100, 300));
        let year = Duration::from_secs(365 * 86_400);
        l.observe(t0, ServerLimit { over_limit: true, reset_in: Some(year), ..Default::default() });
        assert_eq!(l.next_allowed(t0), t0 + Duration::from_secs(600));
    }
}
