//! Durations formatted for the screen. (Timestamp parsing is in
//! `feedtop_proto::time`: the decoders need it.)

pub use feedtop_proto::time::parse_published_at;

/// Formats a duration compactly for the screen: `45s`, `3m12s`, `2h05m`, `3d04h`.
pub fn short_duration(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations() {
        use chrono::TimeDelta;
        assert_eq!(short_duration(TimeDelta::seconds(5)), "5s");
        assert_eq!(short_duration(TimeDelta::seconds(192)), "3m12s");
        assert_eq!(short_duration(TimeDelta::seconds(7500)), "2h05m");
        assert_eq!(short_duration(TimeDelta::seconds(273_600)), "3d04h");
        assert_eq!(short_duration(TimeDelta::seconds(-3)), "0s");
    }
}
