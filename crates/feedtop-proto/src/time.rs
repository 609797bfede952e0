//! Timestamp parsing for the forms real feeds send.
//!
//! Companies House `/companies` sends `YYYY-MM-DDTHH:MM:SS` (UTC, no zone);
//! older events and other streams add a fraction and `Z` or an offset. A zoneless
//! value is read as UTC (docs/protocols.md §1.5).

use chrono::{DateTime, NaiveDateTime, Utc};

/// Parses `published_at` in any of the forms Companies House uses.
/// Returns `None` for anything else; callers count that as a bad timestamp
/// rather than failing the whole event.
pub fn parse_published_at(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // Zoneless forms, with `T` or a space, with or without a fraction.
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn zoneless_seconds_is_utc() {
        let t = parse_published_at("2025-06-10T08:02:41").unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2025, 6, 10, 8, 2, 41).unwrap());
    }

    #[test]
    fn legacy_fraction_with_z() {
        let t = parse_published_at("2025-06-10T09:58:14.602331Z").unwrap();
        assert_eq!(t.timestamp(), Utc.with_ymd_and_hms(2025, 6, 10, 9, 58, 14).unwrap().timestamp());
        assert_eq!(t.timestamp_subsec_micros(), 602_331);
    }

    #[test]
    fn offset_is_converted_to_utc() {
        let t = parse_published_at("2022-08-02T16:21:06+01:00").unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2022, 8, 2, 15, 21, 6).unwrap());
    }

    #[test]
    fn zoneless_fraction_and_space_separator() {
        let a = parse_published_at("2022-08-02T15:21:06.5").unwrap();
        assert_eq!(a.timestamp_subsec_millis(), 500);
        assert!(parse_published_at("2022-08-02 15:21:06").is_some());
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in ["", "yesterday", "2022-13-02T15:21:06", "1659453666", "2022-08-02"] {
            assert_eq!(parse_published_at(bad), None, "{bad:?}");
        }
    }
}
