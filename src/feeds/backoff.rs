//! Reconnect delays: exponential backoff with full jitter, and `Retry-After`.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// Exponential backoff with "full jitter": the n-th delay is uniform in
/// `[floor, min(cap, base · 2ⁿ)]`. Jitter spreads reconnects of many clients;
/// the floor keeps a misbehaving server from turning us into a busy loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub floor: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        let floor = (base / 2).min(cap);
        Self { base, cap, floor, attempt: 0 }
    }

    /// Number of failures since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The upper bound the next delay is drawn from.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Draws the next delay and counts the failure.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        if ceiling <= self.floor {
            return ceiling;
        }
        let millis = rng.random_range(self.floor.as_millis() as u64..=ceiling.as_millis() as u64);
        Duration::from_millis(millis)
    }

    /// Called once a connection has stayed healthy long enough.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Parses an HTTP `Retry-After` value: delta-seconds or an HTTP-date.
/// A date in the past means "now" (zero). Returns `None` when unparseable.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn delays_stay_within_floor_and_doubling_ceiling() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut rng = StdRng::seed_from_u64(7);
        for n in 0..12u32 {
            let ceiling = Duration::from_secs(1u64 << n).min(Duration::from_secs(60));
            assert_eq!(b.ceiling(), ceiling, "attempt {n}");
            let d = b.next_delay(&mut rng);
            assert!(d >= Duration::from_millis(500) && d <= ceiling, "attempt {n}: {d:?}");
        }
        assert_eq!(b.attempt(), 12);
    }

    #[test]
    fn jitter_actually_varies() {
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<_> = (0..20)
            .map(|_| {
                let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
                for _ in 0..6 {
                    b.next_delay(&mut rng);
                }
                b.next_delay(&mut rng)
            })
            .collect();
        let first = delays[0];
        assert!(delays.iter().any(|d| *d != first));
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..5 {
            b.next_delay(&mut rng);
        }
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(2));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..1000 {
            assert!(b.next_delay(&mut rng) <= Duration::from_secs(60));
        }
    }

    #[test]
    fn retry_after_seconds() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_http_date() {
        let now = httpdate::parse_http_date("Tue, 24 Nov 2026 01:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("Tue, 24 Nov 2026 01:01:30 GMT", now), Some(Duration::from_secs(90)));
        // A date already past means retry now.
        assert_eq!(parse_retry_after("Tue, 24 Nov 2026 00:59:00 GMT", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_garbage() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }
}
