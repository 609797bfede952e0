//! Fixed-size windows over time: event rate and latency percentiles.
//!
//! Both take the time from the caller (the message's `received_at` or the
//! render tick), never from the clock, so tests are exact.

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;

/// Events per second for the last minute and per minute for the last hour,
/// in two rings of 60 buckets. Memory is constant however long it runs.
#[derive(Debug, Clone)]
pub struct RateWindow {
    seconds: [(i64, u32); 60],
    minutes: [(i64, u32); 60],
}

impl Default for RateWindow {
    fn default() -> Self {
        Self { seconds: [(i64::MIN, 0); 60], minutes: [(i64::MIN, 0); 60] }
    }
}

fn bump(ring: &mut [(i64, u32); 60], key: i64) {
    let slot = &mut ring[key.rem_euclid(60) as usize];
    if slot.0 == key {
        slot.1 = slot.1.saturating_add(1);
    } else if key > slot.0 {
        *slot = (key, 1);
    }
    // An event older than the slot's current owner is too old to show.
}

impl RateWindow {
    pub fn record(&mut self, at: DateTime<Utc>) {
        let sec = at.timestamp();
        bump(&mut self.seconds, sec);
        bump(&mut self.minutes, sec.div_euclid(60));
    }

    /// Events in the 60 seconds ending at `now`.
    pub fn per_minute(&self, now: DateTime<Utc>) -> u64 {
        let now = now.timestamp();
        self.seconds.iter().filter(|(s, _)| *s > now - 60 && *s <= now).map(|(_, n)| u64::from(*n)).sum()
    }

    /// Events in each of the last 60 minutes, oldest first; the last entry is
    /// the current (partial) minute.
    pub fn minutes(&self, now: DateTime<Utc>) -> Vec<u64> {
        let now_min = now.timestamp().div_euclid(60);
        (0..60)
            .rev()
            .map(|ago| {
                let key = now_min - ago;
                let slot = self.minutes[key.rem_euclid(60) as usize];
                if slot.0 == key {
                    u64::from(slot.1)
                } else {
                    0
                }
            })
            .collect()
    }
}

/// p50 / p90 / p99 / max in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LatencySummary {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    #[serde(skip)]
    pub count: u64,
}

/// Latency over a sliding window: the window is cut into `SLOTS` slots, each
/// with its own HDR histogram; a query merges the slots still inside the
/// window. The window therefore slides in steps of `window / SLOTS`.
#[derive(Debug, Clone)]
pub struct LatencyWindow {
    slot_ms: i64,
    slots: Vec<(i64, Histogram<u64>)>,
}

const SLOTS: usize = 10;
/// Latencies above a week are clamped (a replayed backlog can be days old).
const MAX_TRACKED_MS: u64 = 7 * 24 * 3600 * 1000;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_MS, 2).expect("static histogram bounds are valid")
}

impl LatencyWindow {
    pub fn new(window: std::time::Duration) -> Self {
        let slot_ms = (window.as_millis() as i64 / SLOTS as i64).max(1);
        Self { slot_ms, slots: (0..SLOTS).map(|_| (i64::MIN, new_histogram())).collect() }
    }

    pub fn window(&self) -> std::time::Duration {
        std::time::Duration::from_millis((self.slot_ms * SLOTS as i64) as u64)
    }

    /// Records one latency observed at `at`. Negative latencies (a clock ahead
    /// of ours) count as zero.
    pub fn record(&mut self, at: DateTime<Utc>, latency_ms: i64) {
        let key = at.timestamp_millis().div_euclid(self.slot_ms);
        let slot = &mut self.slots[key.rem_euclid(SLOTS as i64) as usize];
        if slot.0 != key {
            if key < slot.0 {
                return;
            }
            slot.0 = key;
            slot.1.reset();
        }
        slot.1.saturating_record(latency_ms.max(0) as u64);
    }

    /// Percentiles over the window ending at `now`; `None` when it is empty.
    pub fn summary(&self, now: DateTime<Utc>) -> Option<LatencySummary> {
        let now_key = now.timestamp_millis().div_euclid(self.slot_ms);
        let mut merged = new_histogram();
        for (key, h) in &self.slots {
            if *key > now_key - SLOTS as i64 && *key <= now_key {
                merged.add(h).ok()?;
            }
        }
        (!merged.is_empty()).then(|| LatencySummary {
            p50: merged.value_at_quantile(0.50),
            p90: merged.value_at_quantile(0.90),
            p99: merged.value_at_quantile(0.99),
            max: merged.max(),
            count: merged.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};
    use std::time::Duration;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_750_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn rate_counts_the_last_sixty_seconds_only() {
        let mut r = RateWindow::default();
        for s in 0..120 {
            r.record(t(s));
            r.record(t(s));
        }
        assert_eq!(r.per_minute(t(119)), 120);
        // (90, 150] holds seconds 91..=119.
        assert_eq!(r.per_minute(t(150)), 58);
        assert_eq!(r.per_minute(t(178)), 2);
        assert_eq!(r.per_minute(t(179)), 0);
    }

    #[test]
    fn minute_buckets_for_the_sparkline() {
        let mut r = RateWindow::default();
        let base = t(0) - TimeDelta::seconds(t(0).timestamp() % 60);
        r.record(base);
        r.record(base + TimeDelta::seconds(61));
        r.record(base + TimeDelta::seconds(62));
        let m = r.minutes(base + TimeDelta::seconds(65));
        assert_eq!(m.len(), 60);
        assert_eq!(&m[58..], &[1, 2]);
        // An hour later it has all scrolled away.
        assert!(r.minutes(base + TimeDelta::hours(2)).iter().all(|&n| n == 0));
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut w = LatencyWindow::new(Duration::from_secs(300));
        for ms in 1..=1000 {
            w.record(t(10), ms);
        }
        let s = w.summary(t(10)).unwrap();
        assert_eq!(s.count, 1000);
        // Two significant digits: within 1 %.
        assert!((495..=505).contains(&s.p50), "{s:?}");
        assert!((895..=905).contains(&s.p90), "{s:?}");
        assert!((985..=995).contains(&s.p99), "{s:?}");
        assert!((995..=1005).contains(&s.max), "{s:?}");
    }

    #[test]
    fn old_latencies_slide_out_of_the_window() {
        let mut w = LatencyWindow::new(Duration::from_secs(300));
        w.record(t(0), 5000);
        w.record(t(200), 10);
        assert!((5000..5050).contains(&w.summary(t(200)).unwrap().max));
        let later = w.summary(t(330)).unwrap();
        assert_eq!(later.count, 1);
        assert!(later.max < 11, "{later:?}");
        assert_eq!(w.summary(t(600)), None);
    }

    #[test]
    fn negative_and_huge_latencies_are_clamped() {
        let mut w = LatencyWindow::new(Duration::from_secs(60));
        w.record(t(0), -5000);
        w.record(t(0), i64::MAX);
        let s = w.summary(t(0)).unwrap();
        assert_eq!(s.count, 2);
        assert_eq!(s.p50, 0);
    }
}
