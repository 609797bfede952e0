//! Wall-clock times on the screen, in the zone the user chose (`t` toggles
//! local time and UTC), always with the zone named: the CLI prints UTC, and
//! a bare `17:00:05` next to it would be read in the wrong zone.
//!
//! The local zone comes from jiff (the `TZ` variable, else `/etc/localtime`)
//! because chrono's `Local` knows offsets but not names. Its abbreviation
//! (`CET`, `BST`) is shown when the zone database has one; many zones have
//! only a number there (`+04`), and then the label is the offset written so
//! it cannot be misread: `UTC+04:00`.

use chrono::{DateTime, FixedOffset, Utc};
use jiff::tz::TimeZone;

#[derive(Debug, Clone)]
pub struct Clock {
    /// Show UTC instead of the local zone.
    pub utc: bool,
    local: TimeZone,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new(TimeZone::system())
    }
}

impl Clock {
    /// Local time in `local` (tests pin a zone; the TUI uses the system's).
    pub fn new(local: TimeZone) -> Self {
        Self { utc: false, local }
    }

    pub fn toggle(&mut self) {
        self.utc = !self.utc;
    }

    /// The offset in force at `at` and the zone's label there.
    fn zone_at(&self, at: DateTime<Utc>) -> (FixedOffset, String) {
        if self.utc {
            return (FixedOffset::east_opt(0).expect("zero offset"), "UTC".to_string());
        }
        // Out of jiff's range (years beyond ±9999) only for corrupt input: UTC then.
        let Ok(ts) = jiff::Timestamp::from_second(at.timestamp()) else {
            return (FixedOffset::east_opt(0).expect("zero offset"), "UTC".to_string());
        };
        let info = self.local.to_offset_info(ts);
        let secs = info.offset().seconds();
        let offset = FixedOffset::east_opt(secs).unwrap_or(FixedOffset::east_opt(0).expect("zero offset"));
        let abbr = info.abbreviation();
        let label = if !abbr.is_empty() && abbr.chars().all(|c| c.is_ascii_alphabetic()) {
            abbr.to_string()
        } else if secs == 0 {
            "UTC".to_string()
        } else {
            let sign = if secs < 0 { '-' } else { '+' };
            let m = secs.unsigned_abs() / 60;
            format!("UTC{sign}{:02}:{:02}", m / 60, m % 60)
        };
        (offset, label)
    }

    /// `at` in the chosen zone.
    pub fn in_zone(&self, at: DateTime<Utc>) -> DateTime<FixedOffset> {
        at.with_timezone(&self.zone_at(at).0)
    }

    /// The zone's name at `at`: `UTC`, `CET`, `UTC+05:30`.
    pub fn label(&self, at: DateTime<Utc>) -> String {
        self.zone_at(at).1
    }

    /// `17:00:05 CET`: a clock reading that says its zone.
    pub fn time_with_zone(&self, at: DateTime<Utc>) -> String {
        let (offset, label) = self.zone_at(at);
        format!("{} {label}", at.with_timezone(&offset).format("%H:%M:%S"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn cet() -> Clock {
        Clock::new(TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap())
    }

    #[test]
    fn local_time_is_named_by_its_abbreviation_and_follows_dst() {
        let winter = Utc.with_ymd_and_hms(2025, 1, 10, 16, 0, 5).unwrap();
        let summer = Utc.with_ymd_and_hms(2025, 7, 10, 16, 0, 5).unwrap();
        assert_eq!(cet().time_with_zone(winter), "17:00:05 CET");
        assert_eq!(cet().time_with_zone(summer), "18:00:05 CEST");
    }

    #[test]
    fn t_shows_utc() {
        let at = Utc.with_ymd_and_hms(2025, 1, 10, 16, 0, 5).unwrap();
        let mut c = cet();
        c.toggle();
        assert_eq!(c.time_with_zone(at), "16:00:05 UTC");
        assert_eq!(c.in_zone(at).format("%H").to_string(), "16");
        c.toggle();
        assert_eq!(c.label(at), "CET");
    }

    /// A zone without a name is labelled by its offset, never by a bare
    /// number that reads like a time.
    #[test]
    fn a_zone_without_a_name_shows_its_offset() {
        let at = Utc.with_ymd_and_hms(2025, 1, 10, 16, 0, 5).unwrap();
        let india = Clock::new(TimeZone::fixed(jiff::tz::Offset::from_seconds(5 * 3600 + 1800).unwrap()));
        assert_eq!(india.time_with_zone(at), "21:30:05 UTC+05:30");
        let west = Clock::new(TimeZone::fixed(jiff::tz::offset(-3)));
        assert_eq!(west.label(at), "UTC-03:00");
        assert_eq!(Clock::new(TimeZone::UTC).label(at), "UTC");
    }
}
