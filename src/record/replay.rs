//! Replaying a recording: a task that sends its messages into the
//! pipeline's feed queue, where live feed tasks would send theirs, with the
//! original gaps between them divided by `--speed` (`max`: as fast as the
//! pipeline takes them), and the clock the model runs on meanwhile.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use feedtop_proto::wire::RecordingHeader;
use feedtop_proto::{FeedInfo, FeedMsg};

use super::reader::{Reader, Stop};
use super::RecordError;

/// The slowest and fastest scaled replay: slower than a tenth is a frozen
/// screen, faster than a thousand times is `max` in all but name.
pub const SPEED_MIN: f64 = 0.1;
pub const SPEED_MAX: f64 = 1000.0;

/// How fast a recording replays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// The original timing, this many times faster.
    Scaled(f64),
    /// As fast as the pipeline takes the messages.
    Max,
}

impl Speed {
    /// `1`, `10`, `0.5`, `max`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        let range = format!("must be between {SPEED_MIN} and {SPEED_MAX} (times the recorded speed), or max");
        match s.parse::<f64>() {
            Ok(x) if (SPEED_MIN..=SPEED_MAX).contains(&x) => Ok(Speed::Scaled(x)),
            _ => Err(range),
        }
    }

    /// How long to wait for a gap of `recorded` in the recording.
    fn wait(self, recorded: chrono::TimeDelta) -> Duration {
        match self {
            Speed::Max => Duration::ZERO,
            Speed::Scaled(x) => recorded.to_std().unwrap_or_default().div_f64(x),
        }
    }
}

/// The model's clock during a replay: recording time, not wall time, so
/// rates, ages and stalls read as they did live (scaled). It follows the
/// messages (at `max` it is the last one's time) and stops at the end of
/// the recording, so the screen then shows the state as it ended.
#[derive(Debug, Clone)]
pub struct ReplayClock {
    speed: Speed,
    /// The wall instant the first message was applied, and its time.
    anchor: Option<(Instant, DateTime<Utc>)>,
    last: DateTime<Utc>,
    ended: bool,
}

impl ReplayClock {
    pub fn new(speed: Speed, started: DateTime<Utc>) -> Self {
        Self { speed, anchor: None, last: started, ended: false }
    }

    /// A message was applied at wall instant `wall`.
    pub fn message(&mut self, at: DateTime<Utc>, wall: Instant) {
        self.anchor.get_or_insert((wall, at));
        self.last = self.last.max(at);
    }

    pub fn end(&mut self) {
        self.ended = true;
    }

    pub fn now(&self, wall: Instant) -> DateTime<Utc> {
        match (self.speed, self.anchor) {
            (Speed::Scaled(x), Some((at_wall, at))) if !self.ended => {
                let elapsed = wall.saturating_duration_since(at_wall).mul_f64(x);
                (at + chrono::TimeDelta::from_std(elapsed).unwrap_or_default()).max(self.last)
            }
            _ => self.last,
        }
    }
}

/// How a replay ended.
#[derive(Debug, Clone)]
pub struct ReplayEnd {
    pub path: PathBuf,
    pub messages: u64,
    /// Where the file stopped being readable, when it did before its end.
    pub stop: Option<Stop>,
}

impl std::fmt::Display for ReplayEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match &self.stop {
            None => write!(f, "recording {path}: replayed to its end ({} messages)", self.messages),
            Some(stop) => write!(
                f,
                "recording {path}: replayed the {} messages before the damage, then {stop}; the rest is lost",
                self.messages
            ),
        }
    }
}

/// An opened recording, ready to replay.
pub struct Replay {
    path: PathBuf,
    header: RecordingHeader,
    reader: Reader,
    speed: Speed,
}

impl Replay {
    pub fn open(path: &Path, speed: Speed) -> Result<Self, RecordError> {
        let (header, reader) = Reader::open(path)?;
        Ok(Self { path: path.to_path_buf(), header, reader, speed })
    }

    /// The feeds the recording holds, in the order the live run showed them.
    pub fn feeds(&self) -> &[FeedInfo] {
        &self.header.feeds
    }

    /// Whether the recording carries its run's strike-off changes (every
    /// recording but those of the first version).
    pub fn has_strike_offs(&self) -> bool {
        self.header.strike_offs
    }

    pub fn clock(&self) -> ReplayClock {
        ReplayClock::new(self.speed, self.header.started)
    }

    /// Starts sending the messages to `tx`. The end is sent on the returned
    /// channel before `tx` is dropped, so it is there once the queue closes.
    pub fn spawn(self, tx: mpsc::Sender<FeedMsg>) -> (JoinHandle<()>, oneshot::Receiver<ReplayEnd>) {
        let (end_tx, end_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let Self { path, mut reader, speed, .. } = self;
            let mut messages = 0;
            let mut first: Option<(Instant, DateTime<Utc>)> = None;
            let mut stop = None;
            for item in reader.by_ref() {
                let msg = match item {
                    Ok(msg) => msg,
                    Err(s) => {
                        stop = Some(s);
                        break;
                    }
                };
                let (wall0, at0) = *first.get_or_insert((Instant::now(), msg.at));
                let due = wall0 + speed.wait(msg.at - at0);
                if due > Instant::now() {
                    tokio::time::sleep_until(due).await;
                }
                if tx.send(msg).await.is_err() {
                    return; // The pipeline stopped first.
                }
                messages += 1;
            }
            let _ = end_tx.send(ReplayEnd { path, messages, stop });
            drop(tx);
        });
        (task, end_rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn speed_is_bounded_with_a_clear_message() {
        assert_eq!(Speed::parse("max"), Ok(Speed::Max));
        assert_eq!(Speed::parse("10"), Ok(Speed::Scaled(10.0)));
        assert_eq!(Speed::parse("0.5"), Ok(Speed::Scaled(0.5)));
        for bad in ["0", "-1", "1001", "NaN", "inf", "fast", ""] {
            let e = Speed::parse(bad).unwrap_err();
            assert!(e.contains("between 0.1 and 1000") && e.contains("max"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_clock_runs_scaled_from_the_first_message_and_stops_at_the_end() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 30, 17, 0, 0).unwrap();
        let wall = Instant::now();
        let mut clock = ReplayClock::new(Speed::Scaled(10.0), t0 - chrono::TimeDelta::seconds(5));
        assert_eq!(clock.now(wall), t0 - chrono::TimeDelta::seconds(5), "the header's start before any message");
        clock.message(t0, wall);
        assert_eq!(clock.now(wall + Duration::from_secs(2)), t0 + chrono::TimeDelta::seconds(20));
        clock.message(t0 + chrono::TimeDelta::seconds(21), wall + Duration::from_secs(2));
        clock.end();
        assert_eq!(clock.now(wall + Duration::from_secs(60)), t0 + chrono::TimeDelta::seconds(21));
        let mut max = ReplayClock::new(Speed::Max, t0);
        max.message(t0 + chrono::TimeDelta::seconds(3), wall);
        assert_eq!(max.now(wall + Duration::from_secs(9)), t0 + chrono::TimeDelta::seconds(3));
    }

    #[test]
    fn scaled_waits_divide_the_recorded_gaps() {
        let gap = chrono::TimeDelta::seconds(10);
        assert_eq!(Speed::Scaled(10.0).wait(gap), Duration::from_secs(1));
        assert_eq!(Speed::Max.wait(gap), Duration::ZERO);
        assert_eq!(Speed::Scaled(1.0).wait(-gap), Duration::ZERO, "out of order: no wait");
    }
}
