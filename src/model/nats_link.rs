//! A link to NATS (the relay's publisher, or a viewer's own) as the screen,
//! the headless lines and `/health` judge it: since when it has been down,
//! and whether the relay a viewer reads has gone silent. One place, so the
//! three say the same thing.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::relay::{LinkState, ViewerStatus};

/// A link down for longer than this makes `/health` 503: the relay's data
/// is safe in its outbox, but nobody downstream gets it.
pub const LINK_DOWN_AFTER: Duration = Duration::from_secs(60);

/// The relay announces itself every 30 s: three missed announcements and
/// a viewer calls it silent.
pub const RELAY_SILENT_AFTER: Duration = Duration::from_secs(90);

/// Since when a link has not been connected, as the model's ticks saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DownSince(Option<DateTime<Utc>>);

impl DownSince {
    /// Notes the link's state at `now` (`None`: there is no such link).
    pub fn observe(&mut self, state: Option<LinkState>, now: DateTime<Utc>) {
        match state {
            Some(LinkState::Connecting | LinkState::Disconnected) => {
                self.0.get_or_insert(now);
            }
            Some(LinkState::Connected) | None => self.0 = None,
        }
    }

    /// How long a link now in `state` has been down; `None` while it is
    /// connected. A link seen down for the first time counts from now.
    pub fn down_for(&self, state: LinkState, now: DateTime<Utc>) -> Option<TimeDelta> {
        (state != LinkState::Connected).then(|| (now - self.0.unwrap_or(now)).max(TimeDelta::zero()))
    }
}

/// The model's NATS links.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatsLinks {
    /// `feedtop relay`: its publisher's link.
    pub relay: DownSince,
    /// `--source nats://`: the viewer's own link.
    pub viewer: DownSince,
}

/// How long ago the relay last announced itself, when that is longer than
/// [`RELAY_SILENT_AFTER`] and the viewer's own link is up (while it is
/// down, the viewer cannot hear anything: the link is what is wrong).
pub fn relay_silent_for(v: &ViewerStatus, now: DateTime<Utc>) -> Option<TimeDelta> {
    if v.nats != LinkState::Connected {
        return None;
    }
    let age = now - v.relay_heard?;
    (age > TimeDelta::from_std(RELAY_SILENT_AFTER).unwrap_or(TimeDelta::MAX)).then_some(age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_link_is_down_from_the_first_tick_it_was_seen_down_until_connected() {
        let t0 = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let at = |s| t0 + TimeDelta::seconds(s);
        let mut d = DownSince::default();
        d.observe(Some(LinkState::Connected), at(0));
        assert_eq!(d.down_for(LinkState::Connected, at(0)), None);
        assert_eq!(d.down_for(LinkState::Disconnected, at(1)), Some(TimeDelta::zero()), "just seen down");
        d.observe(Some(LinkState::Disconnected), at(1));
        d.observe(Some(LinkState::Connecting), at(5));
        d.observe(Some(LinkState::Disconnected), at(9));
        assert_eq!(d.down_for(LinkState::Disconnected, at(81)), Some(TimeDelta::seconds(80)));
        d.observe(Some(LinkState::Connected), at(82));
        assert_eq!(d.down_for(LinkState::Connected, at(82)), None);
        d.observe(Some(LinkState::Disconnected), at(90));
        assert_eq!(d.down_for(LinkState::Disconnected, at(91)), Some(TimeDelta::seconds(1)), "counts again");
    }
}
