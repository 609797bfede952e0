//! The demo's invented companies, seen by the strike-off tracker: every
//! transition the pane shows occurs, at a pace that fills it.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use feedtop::model::{StrikeOffTracker, Tally};
use feedtop::sim::company_gen::CompanyGen;
use feedtop_proto::ch::parse_event;

fn generate(seed: u64, count: usize) -> Vec<(DateTime<Utc>, String)> {
    let start = Utc.with_ymd_and_hms(2025, 6, 10, 8, 0, 0).unwrap();
    let mut gen = CompanyGen::new(Some(seed));
    (0..count)
        .map(|i| {
            let now = start + TimeDelta::seconds(i as i64);
            (now, gen.next_event(now))
        })
        .collect()
}

#[test]
fn storylines_produce_every_strike_off_transition() {
    let events = generate(11, 2_000);
    let mut tracker = StrikeOffTracker::default();
    let mut tally = Tally::default();
    for (now, line) in &events {
        let ev = parse_event(line.clone().into_bytes()).unwrap();
        if let Some(change) = tracker.observe(&ev, *now) {
            tally.add(change.kind);
        }
    }
    assert!(tally.entered > 0 && tally.withdrawn > 0 && tally.struck_off > 0, "{tally:?}");
    // About 10 % of events are strike-off transitions: the demo pane fills up.
    let transitions = tally.entered + tally.withdrawn + tally.struck_off;
    assert!((100..=300).contains(&transitions), "{transitions} transitions in 2000 events");
}
