//! Random-walk prices for the quote-feed simulators (wig80, carbon, SSE).
//!
//! Each [`PriceWalk::step`] moves every instrument by a small random
//! percentage (a few tenths of a percent at most) and keeps the session
//! statistics a quote feed reports: open (the first price), high, low,
//! cumulative volume, and the change against the open. Seeded walks are
//! reproducible, so tests can compare runs.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The 16 WIG symbols of the wig80 reference server, in the order of its
/// snapshots (`fixtures/captured-wig80.jsonl`), with plausible PLN prices.
pub fn wig80_symbols() -> Vec<(&'static str, f64)> {
    vec![
        ("PKN", 74.62),
        ("KGHM", 152.4),
        ("PGE", 8.95),
        ("ORANGE", 8.31),
        ("CDPROJEKT", 201.5),
        ("PEPCO", 21.7),
        ("LPP", 16020.0),
        ("PKO", 58.9),
        ("SANPL", 560.2),
        ("MBANK", 745.0),
        ("ING", 292.5),
        ("ALIOR", 101.3),
        ("CYFRPL", 13.62),
        ("PLAY", 98.4),
        ("ASB", 31.15),
        ("CCC", 162.8),
    ]
}

/// Commodity instruments for the carbon access layer and the SSE feed, with
/// plausible prices (USD, or the market's own unit where that is customary).
pub fn commodities() -> Vec<(&'static str, f64)> {
    vec![
        ("BRENT_CRUDE", 75.5),
        ("WTI_CRUDE", 71.2),
        ("HENRY_HUB", 3.1),
        ("TTF_GAS", 35.4),
        ("NBP_GAS", 85.3),
        ("EUA_DEC26", 68.2),
        ("UKA_DEC26", 40.1),
        ("COAL_API2", 110.5),
        ("POWER_DE_BASE", 90.2),
        ("POWER_FR_BASE", 84.7),
    ]
}

/// The commodity class of an instrument (`oil`, `gas`, `carbon`, `power`,
/// `coal`), which the carbon feed's `{"commodity": …}` filter matches.
pub fn commodity_of(instrument: &str) -> Option<&'static str> {
    let class = match instrument {
        "BRENT_CRUDE" | "WTI_CRUDE" => "oil",
        "HENRY_HUB" | "TTF_GAS" | "NBP_GAS" => "gas",
        "EUA_DEC26" | "UKA_DEC26" => "carbon",
        "COAL_API2" => "coal",
        "POWER_DE_BASE" | "POWER_FR_BASE" => "power",
        _ => return None,
    };
    Some(class)
}

/// One instrument's current state.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub symbol: &'static str,
    pub price: f64,
    /// The first price of the walk.
    pub open: f64,
    pub high: f64,
    pub low: f64,
    /// Cumulative traded volume.
    pub volume: u64,
    /// `price - open`, rounded to the price's precision.
    pub change: f64,
    /// `change / open * 100`, rounded to two decimals.
    pub change_percent: f64,
}

/// Largest single move, as a fraction of the price.
const MAX_MOVE: f64 = 0.004;
/// A walk stays within this factor of its open (it is pushed back at the edges),
/// so a demo left running for days still shows plausible numbers.
const BAND: f64 = 0.25;

/// A seedable random walk over a list of instruments.
#[derive(Debug, Clone)]
pub struct PriceWalk {
    quotes: Vec<Quote>,
    rng: StdRng,
}

impl PriceWalk {
    /// Starts every instrument at its given price. With a seed the walk is
    /// reproducible; without one it is seeded from the OS.
    pub fn new(instruments: Vec<(&'static str, f64)>, seed: Option<u64>) -> Self {
        let mut rng = seed.map_or_else(StdRng::from_os_rng, StdRng::seed_from_u64);
        let quotes = instruments
            .into_iter()
            .map(|(symbol, start)| {
                let price = round_price(start, start);
                // As if the session had been trading for a while already.
                let volume = rng.random_range(50_000..1_000_000) / lot_divisor(start);
                Quote { symbol, price, open: price, high: price, low: price, volume, change: 0.0, change_percent: 0.0 }
            })
            .collect();
        Self { quotes, rng }
    }

    /// The instruments' current state, in the order they were given.
    pub fn quotes(&self) -> &[Quote] {
        &self.quotes
    }

    pub fn get(&self, symbol: &str) -> Option<&Quote> {
        self.quotes.iter().find(|q| q.symbol == symbol)
    }

    /// Moves every price by a small random percentage and updates the statistics.
    pub fn step(&mut self) {
        for q in &mut self.quotes {
            // The sum of two uniforms: small moves are common, large ones rare.
            let mut pct = (self.rng.random_range(-1.0..1.0) + self.rng.random_range(-1.0..1.0)) * MAX_MOVE / 2.0;
            let drift = q.price / q.open - 1.0;
            if drift.abs() > BAND && pct.signum() == drift.signum() {
                pct = -pct;
            }
            let price = round_price(q.price * (1.0 + pct), q.open);
            q.price = if price > 0.0 { price } else { q.price };
            q.high = q.high.max(q.price);
            q.low = q.low.min(q.price);
            q.volume += self.rng.random_range(100..20_000) / lot_divisor(q.open);
            q.change = round_price(q.price - q.open, q.open);
            q.change_percent = round_to(q.change / q.open * 100.0, 2);
        }
    }
}

/// Expensive shares trade in fewer units (LPP at 16 000 PLN is not bought by the million).
fn lot_divisor(price: f64) -> u64 {
    if price >= 1000.0 {
        50
    } else {
        1
    }
}

/// Two decimals, or three for prices under 10 (gas at 3.1 moves in tenths of a cent).
fn round_price(value: f64, reference: f64) -> f64 {
    round_to(value, if reference < 10.0 { 3 } else { 2 })
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    let rounded = (value * factor).round() / factor;
    // No "-0.0" on the wire.
    if rounded == 0.0 {
        0.0
    } else {
        rounded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wig80_symbols_are_the_capture_order() {
        let names: Vec<_> = wig80_symbols().into_iter().map(|(s, _)| s).collect();
        assert_eq!(
            names,
            [
                "PKN",
                "KGHM",
                "PGE",
                "ORANGE",
                "CDPROJEKT",
                "PEPCO",
                "LPP",
                "PKO",
                "SANPL",
                "MBANK",
                "ING",
                "ALIOR",
                "CYFRPL",
                "PLAY",
                "ASB",
                "CCC"
            ]
        );
    }

    #[test]
    fn every_commodity_has_a_class() {
        for (name, _) in commodities() {
            assert!(commodity_of(name).is_some(), "{name} has no commodity class");
        }
        let classes: std::collections::BTreeSet<_> =
            commodities().iter().filter_map(|(n, _)| commodity_of(n)).collect();
        assert_eq!(classes.into_iter().collect::<Vec<_>>(), ["carbon", "coal", "gas", "oil", "power"]);
        assert_eq!(commodity_of("PKN"), None);
    }

    #[test]
    fn seeded_walks_repeat_and_different_seeds_differ() {
        let run = |seed| {
            let mut walk = PriceWalk::new(commodities(), Some(seed));
            for _ in 0..50 {
                walk.step();
            }
            walk.quotes().to_vec()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn step_tracks_open_high_low_volume_and_change() {
        let mut walk = PriceWalk::new(wig80_symbols(), Some(1));
        let start: Vec<Quote> = walk.quotes().to_vec();
        for q in &start {
            assert_eq!((q.open, q.high, q.low, q.change, q.change_percent), (q.price, q.price, q.price, 0.0, 0.0));
        }
        let mut moved = false;
        for _ in 0..200 {
            walk.step();
            for (q, first) in walk.quotes().iter().zip(&start) {
                assert_eq!(q.open, first.open, "open is the first price");
                assert!(q.low <= q.price && q.price <= q.high, "{q:?}");
                assert!(q.volume > first.volume, "volume only grows: {q:?}");
                let expected = q.price - q.open;
                assert!((q.change - expected).abs() < 0.006, "{q:?}");
                let pct = q.change / q.open * 100.0;
                assert!((q.change_percent - pct).abs() <= 0.0051, "{q:?}");
                moved |= q.price != first.price;
            }
        }
        assert!(moved, "200 steps moved nothing");
    }

    #[test]
    fn moves_are_small_and_prices_stay_plausible() {
        let mut walk = PriceWalk::new(commodities(), Some(3));
        for _ in 0..5_000 {
            let before: Vec<f64> = walk.quotes().iter().map(|q| q.price).collect();
            walk.step();
            for (q, prev) in walk.quotes().iter().zip(before) {
                // One step moves at most MAX_MOVE, plus rounding (to 0.01 at most).
                assert!(
                    (q.price - prev).abs() <= prev * MAX_MOVE + 0.0051,
                    "{} jumped {prev} -> {}",
                    q.symbol,
                    q.price
                );
            }
        }
        for q in walk.quotes() {
            let ratio = q.price / q.open;
            assert!((0.7..1.3).contains(&ratio), "{} wandered to {ratio}", q.symbol);
        }
    }

    #[test]
    fn start_prices_are_realistic() {
        let walk = PriceWalk::new(wig80_symbols(), Some(0));
        assert_eq!(walk.get("PKN").unwrap().price, 74.62);
        assert!(walk.get("LPP").unwrap().price > 10_000.0);
        let cdr = walk.get("CDPROJEKT").unwrap().price;
        assert!((150.0..300.0).contains(&cdr));
        let brent = PriceWalk::new(commodities(), Some(0)).get("BRENT_CRUDE").unwrap().price;
        assert!((60.0..90.0).contains(&brent));
    }
}
