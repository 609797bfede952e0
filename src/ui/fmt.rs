//! Small text formatters shared by the panes, so every pane writes numbers,
//! ages and latencies the same way.

use chrono::{DateTime, TimeDelta, Utc};

use crate::time::short_duration;

/// `1234567` → `1,234,567`: counts are read at a glance, not parsed.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 event`, `34 events`, `1,234 events`: a count and its noun agreeing.
pub fn count(n: u64, noun: &str) -> String {
    format!("{} {noun}{}", thousands(n), if n == 1 { "" } else { "s" })
}

/// How long ago `at` was, or `-` when it never happened.
pub fn age(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    at.map_or_else(|| "-".to_string(), |t| short_duration(now - t))
}

/// Time left until `at`; `now` once it has passed (the retry is due).
pub fn countdown(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        None => "-".to_string(),
        Some(t) if t <= now => "now".to_string(),
        // Round up so a countdown never shows 0s while still waiting.
        Some(t) => short_duration(TimeDelta::milliseconds((t - now).num_milliseconds() + 999)),
    }
}

/// A latency in milliseconds: `850ms`, `1.50s`, `12.3s`, then `3m12s`, `4h05m`.
/// A replayed backlog can be hours old, so the unit grows with the value.
pub fn latency_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=9_999 => format!("{:.2}s", ms as f64 / 1000.0),
        10_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => short_duration(TimeDelta::milliseconds(ms.min(i64::MAX as u64) as i64)),
    }
}

/// A latency at the resolution of the feed's timestamps (`resolution_ms`,
/// see `FeedView::latency_resolution_ms`): with whole-second timestamps the
/// milliseconds are the moment within the second the event arrived, so
/// `<1s` below a second and whole seconds above; finer feeds as [`latency_ms`].
pub fn latency_at(ms: u64, resolution_ms: Option<u64>) -> String {
    match (resolution_ms, ms) {
        (Some(1000..), 0..=999) => "<1s".to_string(),
        (Some(1000..), 1_000..=59_999) => format!("{}s", ms / 1000),
        _ => latency_ms(ms),
    }
}

/// A window length in its natural unit: `5m`, `1h`, `90s`.
pub fn window(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Cuts `s` to at most `width` characters, marking the cut with `…`.
pub fn truncate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn thousands_separators() {
        let cases = [(0, "0"), (999, "999"), (1000, "1,000"), (1234, "1,234"), (1_234_567, "1,234,567")];
        for (n, want) in cases {
            assert_eq!(thousands(n), want);
        }
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn latencies_grow_their_unit() {
        assert_eq!(latency_ms(7), "7ms");
        assert_eq!(latency_ms(1500), "1.50s");
        assert_eq!(latency_ms(12_345), "12.3s");
        assert_eq!(latency_ms(192_000), "3m12s");
        assert_eq!(latency_ms(4 * 3_600_000 + 300_000), "4h05m");
        assert_eq!(latency_ms(u64::MAX), "106751991167d07h");
    }

    #[test]
    fn whole_second_latencies_show_no_milliseconds() {
        let whole = Some(1000);
        assert_eq!(latency_at(487, whole), "<1s");
        assert_eq!(latency_at(991, whole), "<1s");
        assert_eq!(latency_at(1_487, whole), "1s");
        assert_eq!(latency_at(59_999, whole), "59s");
        assert_eq!(latency_at(192_000, whole), "3m12s");
        assert_eq!(latency_at(487, Some(1)), "487ms");
        assert_eq!(latency_at(1_500, None), "1.50s");
    }

    #[test]
    fn ages_and_countdowns() {
        let now = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        assert_eq!(age(None, now), "-");
        assert_eq!(age(Some(now - TimeDelta::seconds(75)), now), "1m15s");
        assert_eq!(countdown(Some(now + TimeDelta::seconds(5)), now), "5s");
        assert_eq!(countdown(Some(now + TimeDelta::milliseconds(4200)), now), "5s");
        assert_eq!(countdown(Some(now - TimeDelta::seconds(1)), now), "now");
        assert_eq!(countdown(None, now), "-");
    }

    #[test]
    fn windows_and_truncation() {
        use std::time::Duration;
        assert_eq!(window(Duration::from_secs(300)), "5m");
        assert_eq!(window(Duration::from_secs(3600)), "1h");
        assert_eq!(window(Duration::from_secs(90)), "90s");
        assert_eq!(truncate("the server closed", 8), "the ser…");
        assert_eq!(truncate("short", 8), "short");
        assert_eq!(truncate("x", 0), "");
    }
}
