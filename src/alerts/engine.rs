//! When a rule fires. Pure: the pipeline hands in what the model produced
//! (each strike-off change and quote once, as it is applied) and ticks it
//! with the model's clock; nothing here reads the wall clock, so the tests
//! below are exact.
//!
//! Exactly once, never duplicated:
//! - strike-off: the model makes each change once (a replayed event finds
//!   the company already in its new state), and the engine sees it where the
//!   model makes it, not through the view, so pausing cannot repeat or lose one;
//! - feed-down: one alert per rule per outage. An outage starts when a tick
//!   sees the feed not live or stalled (dated from the feed's own state
//!   change, or the moment it went quiet, when the model has it) and ends at
//!   the first tick that sees it live and receiving again; a recovery after
//!   an alert is a Log line, not an alert;
//! - quote-move: a rule fires when |change| between the price now and the
//!   price `within` ago reaches `percent`, and fires again for that symbol
//!   only after the move has fallen back below `percent` (otherwise every
//!   quote of one big move would alert). Prices are kept in a bounded ring
//!   per (feed, symbol); with too little history the rule says so in the
//!   Log, once, instead of comparing with whatever it has.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};

use super::rules::{Companies, Rule, Trigger};
use super::Alert;
use crate::model::{ChangeKind, FeedView, Model, StrikeOffChange};
use crate::time::short_duration;
use feedtop_proto::{ConnState, Quote};

/// Samples a ring holds at most. The spacing between samples is the longest
/// `within` of the rules watching the symbol over [`RING_SPAN`], so the
/// price used as "`within` ago" is at most that much older than exactly
/// `within` ago (18 s for 15 minutes).
pub const RING: usize = 64;
const RING_SPAN: i32 = 50;

/// A symbol's recent prices, oldest first, thinned to one per `spacing`.
#[derive(Debug, Clone)]
struct Ring {
    samples: VecDeque<(DateTime<Utc>, f64)>,
    spacing: TimeDelta,
    /// How far back the rules look.
    reach: TimeDelta,
}

impl Ring {
    fn new(reach: TimeDelta) -> Self {
        Self { samples: VecDeque::new(), spacing: reach / RING_SPAN, reach }
    }

    fn record(&mut self, at: DateTime<Utc>, price: f64) {
        if self.samples.back().is_some_and(|&(last, _)| at - last < self.spacing) {
            return;
        }
        self.samples.push_back((at, price));
        // Keep one sample at or before `at - reach`: the oldest price a rule needs.
        while self.samples.len() > 1 && self.samples[1].0 <= at - self.reach {
            self.samples.pop_front();
        }
        if self.samples.len() > RING {
            self.samples.pop_front();
        }
    }

    /// The newest price received at or before `t`.
    fn price_at(&self, t: DateTime<Utc>) -> Option<f64> {
        self.samples.iter().rev().find(|(at, _)| *at <= t).map(|&(_, p)| p)
    }
}

/// A feed's current outage.
#[derive(Debug, Clone)]
struct Outage {
    since: DateTime<Utc>,
    /// Rule numbers that have alerted for it.
    alerted: Vec<usize>,
}

/// Per rule and (feed, symbol): may fire; and whether "not enough history" was said.
#[derive(Debug, Clone, Copy)]
struct MoveState {
    armed: bool,
    said_no_history: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Engine {
    rules: Vec<Rule>,
    /// Per feed (the model's order).
    outages: Vec<Option<Outage>>,
    rings: HashMap<(String, String), Ring>,
    moves: HashMap<(usize, String, String), MoveState>,
    /// Symbols any quote-move rule watches, and the longest `within` for each.
    reach: HashMap<String, TimeDelta>,
}

impl Engine {
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut reach: HashMap<String, TimeDelta> = HashMap::new();
        for rule in &rules {
            if let Trigger::QuoteMove { symbols, within, .. } = &rule.trigger {
                let within = TimeDelta::from_std(*within).unwrap_or(TimeDelta::MAX);
                for s in symbols {
                    let r = reach.entry(s.to_ascii_uppercase()).or_insert(within);
                    *r = (*r).max(within);
                }
            }
        }
        Self { rules, reach, ..Self::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rule(&self, number: usize) -> Option<&Rule> {
        self.rules.iter().find(|r| r.number == number)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    fn alert(rule: &Rule, at: DateTime<Utc>, feed: &str, detail: String) -> Alert {
        Alert {
            seq: 0,
            at,
            rule: rule.number,
            kind: rule.trigger.kind(),
            feed: feed.to_string(),
            company: None,
            symbol: None,
            detail,
            actions: rule.actions,
        }
    }

    /// A strike-off change the model made from `feed`'s event.
    pub fn strike_off(&self, feed: &str, change: &StrikeOffChange, out: &mut Vec<Alert>) {
        for rule in &self.rules {
            let Trigger::StrikeOff { changes, companies } = &rule.trigger else { continue };
            if !changes.is_empty() && !changes.contains(&change.kind) {
                continue;
            }
            let wanted = match companies {
                Companies::All => true,
                Companies::Numbers(numbers) => numbers.contains(&change.company_number.trim().to_ascii_uppercase()),
                Companies::Name(re) => re.is_match(&change.company_name),
            };
            if !wanted {
                continue;
            }
            let what = match change.kind {
                ChangeKind::Entered => "entered the proposal to strike off",
                ChangeKind::Withdrawn => "left the proposal to strike off",
                ChangeKind::StruckOff => "struck off",
            };
            let detail = format!("{} {} {what}", change.company_number, change.company_name);
            let mut alert = Self::alert(rule, change.received_at, feed, detail);
            alert.company = Some(change.company_number.clone());
            out.push(alert);
        }
    }

    /// A quote `feed` delivered at `at`.
    pub fn quote(&mut self, feed: &str, quote: &Quote, at: DateTime<Utc>, out: &mut Vec<Alert>) {
        let symbol = quote.symbol.to_ascii_uppercase();
        let Some(&reach) = self.reach.get(&symbol) else { return };
        if !quote.price.is_finite() {
            return;
        }
        let key = (feed.to_string(), symbol.clone());
        let ring = self.rings.entry(key).or_insert_with(|| Ring::new(reach));
        for rule in &self.rules {
            let Trigger::QuoteMove { symbols, percent, within } = &rule.trigger else { continue };
            if !symbols.iter().any(|s| s.eq_ignore_ascii_case(&symbol)) {
                continue;
            }
            let within_td = TimeDelta::from_std(*within).unwrap_or(TimeDelta::MAX);
            let state = self
                .moves
                .entry((rule.number, feed.to_string(), symbol.clone()))
                .or_insert(MoveState { armed: true, said_no_history: false });
            let Some(then) = ring.price_at(at - within_td).filter(|p| *p != 0.0 && p.is_finite()) else {
                if !state.said_no_history {
                    state.said_no_history = true;
                    tracing::info!(
                        "alert rule {} ({feed} {}): not enough history yet for a change over {}; it starts once there is",
                        rule.number,
                        quote.symbol,
                        humantime::format_duration(*within)
                    );
                }
                continue;
            };
            let change = (quote.price - then) / then * 100.0;
            if change.abs() >= *percent {
                if state.armed {
                    state.armed = false;
                    let detail = format!(
                        "{} {change:+.2}% in {} ({then} → {})",
                        quote.symbol,
                        humantime::format_duration(*within),
                        quote.price
                    );
                    let mut alert = Self::alert(rule, at, feed, detail);
                    alert.symbol = Some(quote.symbol.clone());
                    out.push(alert);
                }
            } else {
                state.armed = true;
            }
        }
        ring.record(at, quote.price);
    }

    /// Feed-down rules at the model's `now`: alerts for outages that reached
    /// a rule's `after`; a Log line when a feed that alerted recovers.
    pub fn tick(&mut self, model: &Model, out: &mut Vec<Alert>) {
        let now = model.now;
        if !self.rules.iter().any(|r| matches!(r.trigger, Trigger::FeedDown { .. })) {
            return;
        }
        self.outages.resize(model.feeds.len(), None);
        for (feed, outage) in model.feeds.iter().zip(self.outages.iter_mut()) {
            let name = feed.info.name.as_str();
            if feed.is_healthy(now) {
                if let Some(ended) = outage.take().filter(|o| !o.alerted.is_empty()) {
                    tracing::info!(
                        "alert rule {} ({name}): {name} is live again after {} down",
                        ended.alerted.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
                        short_duration(now - ended.since)
                    );
                }
                continue;
            }
            let o = outage.get_or_insert_with(|| Outage { since: down_since(feed, now), alerted: Vec::new() });
            let down_for = now - o.since;
            for rule in &self.rules {
                let Trigger::FeedDown { after } = rule.trigger else { continue };
                let after = TimeDelta::from_std(after).unwrap_or(TimeDelta::MAX);
                if down_for < after || o.alerted.contains(&rule.number) {
                    continue;
                }
                o.alerted.push(rule.number);
                // The feed is the alert's own field ({feed}); this says how.
                let mut detail = format!("{} for {}", feed.state_label(now), short_duration(down_for));
                if let Some(e) = &feed.last_error {
                    detail.push_str(&format!(": {e}"));
                }
                out.push(Self::alert(rule, now, name, detail));
            }
        }
    }
}

/// When the feed's outage began, as well as the model knows: the moment a
/// live feed went quiet past its quiet period, the start of its current
/// state, or (before any state, at start) now.
fn down_since(feed: &FeedView, now: DateTime<Utc>) -> DateTime<Utc> {
    if feed.state == ConnState::Live {
        let quiet_from = feed.last_byte_at.max(feed.state_since);
        let stall = TimeDelta::from_std(feed.stall_after).unwrap_or_default();
        return quiet_from.map_or(now, |t| (t + stall).min(now));
    }
    feed.state_since.unwrap_or(now).min(now)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;
    use feedtop_proto::{FeedInfo, FeedKind, FeedMsg, FeedMsgKind};

    use super::*;
    use crate::alerts::rules::{Companies, Trigger};
    use crate::alerts::{Actions, AlertKind};

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap() + TimeDelta::seconds(s)
    }

    fn rule(number: usize, trigger: Trigger) -> Rule {
        Rule { number, trigger, actions: Actions { flash: true, ..Actions::default() }, exec: Vec::new() }
    }

    fn change(kind: ChangeKind, number: &str, name: &str, at: i64) -> StrikeOffChange {
        StrikeOffChange {
            kind,
            company_number: number.into(),
            company_name: name.into(),
            from_status: Some("active".into()),
            from_detail: None,
            to_status: "active".into(),
            to_detail: Some("active-proposal-to-strike-off".into()),
            published_at: None,
            timepoint: at,
            received_at: t(at),
        }
    }

    #[test]
    fn strike_off_rules_fire_once_per_matching_change() {
        let numbers = Companies::Numbers(["01234567".to_string()].into());
        let name = Companies::Name(regex::RegexBuilder::new("^acme").case_insensitive(true).build().unwrap());
        let e = Engine::new(vec![
            rule(1, Trigger::StrikeOff { changes: vec![ChangeKind::Entered], companies: numbers }),
            rule(2, Trigger::StrikeOff { changes: Vec::new(), companies: name }),
        ]);
        let mut out = Vec::new();
        e.strike_off("ch", &change(ChangeKind::Entered, "01234567", "Zed Ltd", 1), &mut out);
        e.strike_off("ch", &change(ChangeKind::Withdrawn, "01234567", "Zed Ltd", 2), &mut out);
        e.strike_off("ch", &change(ChangeKind::StruckOff, "07654321", "ACME Widgets", 3), &mut out);
        e.strike_off("ch", &change(ChangeKind::Entered, "07654321", "Not Acme", 4), &mut out);
        let got: Vec<(usize, &str, Option<&str>)> =
            out.iter().map(|a| (a.rule, a.feed.as_str(), a.company.as_deref())).collect();
        assert_eq!(got, [(1, "ch", Some("01234567")), (2, "ch", Some("07654321"))]);
        assert_eq!(out[0].kind, AlertKind::StrikeOff);
        assert_eq!(out[0].at, t(1));
        assert_eq!(out[0].detail, "01234567 Zed Ltd entered the proposal to strike off");
        assert_eq!(out[1].detail, "07654321 ACME Widgets struck off");
    }

    /// The pipeline's path for strike-offs: model facts, fed in once each,
    /// with a pause of the view in between (the view is not involved).
    #[test]
    fn a_replayed_event_does_not_alert_again() {
        let info = FeedInfo { name: "ch".into(), kind: FeedKind::CompaniesHouse };
        let mut m = Model::new(vec![info], Duration::from_secs(60), t(0));
        let e = Engine::new(vec![rule(1, Trigger::StrikeOff { changes: Vec::new(), companies: Companies::All })]);
        let ev = crate::ui::test_support::profile_event(5, "01234567", "Zed", Some("active-proposal-to-strike-off"));
        let mut out = Vec::new();
        for _ in 0..3 {
            // The same event three times (a resume replays the last one).
            let mut facts = Vec::new();
            m.apply(
                FeedMsg { feed: "ch".into(), at: t(1), kind: FeedMsgKind::Event(Box::new(ev.clone())) },
                &mut facts,
            );
            for f in &facts {
                if let crate::model::Fact::StrikeOff(c) = f {
                    e.strike_off("ch", c, &mut out);
                }
            }
        }
        assert_eq!(out.len(), 1, "{out:?}");
    }

    fn feed_model() -> Model {
        let info = FeedInfo { name: "wig80".into(), kind: FeedKind::WebSocket(feedtop_proto::Dialect::Wig80) };
        let mut m = Model::new(vec![info], Duration::from_secs(60), t(0));
        m.feeds[0].stall_after = Duration::from_secs(30);
        m
    }

    fn state(m: &mut Model, at: i64, s: ConnState) {
        m.apply(FeedMsg { feed: "wig80".into(), at: t(at), kind: FeedMsgKind::State(s) }, &mut Vec::new());
    }

    #[test]
    fn feed_down_fires_once_per_outage_after_its_delay() {
        let mut m = feed_model();
        let mut e = Engine::new(vec![
            rule(1, Trigger::FeedDown { after: Duration::from_secs(120) }),
            rule(2, Trigger::FeedDown { after: Duration::from_secs(10) }),
        ]);
        let mut out = Vec::new();
        let tick = |m: &mut Model, e: &mut Engine, at: i64, out: &mut Vec<Alert>| {
            m.tick(t(at));
            e.tick(m, out);
        };
        state(&mut m, 0, ConnState::Connecting);
        state(&mut m, 1, ConnState::Live);
        tick(&mut m, &mut e, 1, &mut out);
        tick(&mut m, &mut e, 20, &mut out);
        assert!(out.is_empty(), "live and receiving");
        // Connection drops at 25 s; reconnect attempts keep changing the state.
        state(&mut m, 25, ConnState::Backoff { retry_at: t(30) });
        for s in 26..34 {
            tick(&mut m, &mut e, s, &mut out);
        }
        state(&mut m, 34, ConnState::Connecting);
        tick(&mut m, &mut e, 35, &mut out);
        assert_eq!(out.iter().map(|a| a.rule).collect::<Vec<_>>(), [2], "10 s after 25 s, once");
        assert_eq!(out[0].at, t(35));
        assert_eq!(out[0].detail, "connecting for 10s");
        state(&mut m, 40, ConnState::Backoff { retry_at: t(60) });
        for s in (40..=145).step_by(5) {
            tick(&mut m, &mut e, s, &mut out);
        }
        assert_eq!(out.iter().map(|a| a.rule).collect::<Vec<_>>(), [2, 1], "rule 1 at 2 m");
        assert_eq!(out[1].at, t(145));
        // Recovered: the outage ends; a second one alerts again.
        state(&mut m, 150, ConnState::Live);
        tick(&mut m, &mut e, 150, &mut out);
        tick(&mut m, &mut e, 160, &mut out);
        assert_eq!(out.len(), 2);
        // Nothing after 160 s: stalled once quiet past its 30 s quiet period, down since 190 s.
        m.apply(FeedMsg { feed: "wig80".into(), at: t(160), kind: FeedMsgKind::Bytes }, &mut Vec::new());
        tick(&mut m, &mut e, 190, &mut out);
        tick(&mut m, &mut e, 199, &mut out);
        assert_eq!(out.len(), 2, "stalled 9 s");
        tick(&mut m, &mut e, 200, &mut out);
        tick(&mut m, &mut e, 205, &mut out);
        assert_eq!(out.iter().map(|a| a.rule).collect::<Vec<_>>(), [2, 1, 2]);
        assert_eq!(out[2].detail, "stalled for 10s");
    }

    fn quote(symbol: &str, price: f64) -> Quote {
        Quote::new(symbol, price)
    }

    #[test]
    fn quote_move_compares_with_the_price_within_ago_and_fires_once_per_move() {
        let within = Duration::from_secs(900);
        let mut e =
            Engine::new(vec![rule(1, Trigger::QuoteMove { symbols: vec!["PKN".into()], percent: 3.0, within })]);
        let mut out = Vec::new();
        // 100 from 0 s; a quote every 10 s.
        for s in (0..900).step_by(10) {
            e.quote("wig80", &quote("PKN", 100.0), t(s), &mut out);
        }
        // A 5 % jump before 15 minutes of history: not enough history, no alert.
        e.quote("wig80", &quote("PKN", 105.0), t(895), &mut out);
        assert!(out.is_empty());
        // Other symbols are not watched.
        e.quote("wig80", &quote("CDR", 1.0), t(900), &mut out);
        e.quote("wig80", &quote("CDR", 2.0), t(1900), &mut out);
        // 15 minutes in: compared with 100 (the price at 0 s).
        e.quote("wig80", &quote("PKN", 102.9), t(900), &mut out);
        assert!(out.is_empty(), "2.9 % is under 3 %");
        e.quote("wig80", &quote("PKN", 103.0), t(910), &mut out);
        e.quote("wig80", &quote("PKN", 104.0), t(920), &mut out);
        e.quote("wig80", &quote("PKN", 105.0), t(930), &mut out);
        assert_eq!(out.len(), 1, "one alert for the move: {out:?}");
        assert_eq!((out[0].symbol.as_deref(), out[0].at), (Some("PKN"), t(910)));
        assert!(out[0].detail.starts_with("PKN +3.00% in 15m (100 → 103)"), "{}", out[0].detail);
        // Falls back under 3 % against the price 15 minutes earlier, then moves down again.
        let mut at = 940;
        for p in [101.0, 96.0] {
            e.quote("wig80", &quote("PKN", p), t(at), &mut out);
            at += 10;
        }
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[1].detail.starts_with("PKN -4.00%"), "{}", out[1].detail);
        // The ring stays bounded however many quotes come.
        for s in 0..10_000 {
            e.quote("wig80", &quote("PKN", 100.0), t(2000 + s), &mut out);
        }
        assert!(e.rings.values().all(|r| r.samples.len() <= RING));
    }
}
