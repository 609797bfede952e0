//! Per-symbol quote state for the tickers pane.
//!
//! One row per (symbol, feed): the latest quote, the direction of the last
//! price move, when it last ticked, and a short price history for the
//! sparkline. Memory is bounded by the number of symbols times `HISTORY`.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};

use feedtop_proto::{FeedId, Quote};

/// Prices kept per row for the sparkline.
pub const HISTORY: usize = 60;

/// Rows kept at most: a broken or hostile server inventing symbols must not
/// grow memory without bound. Quotes for symbols beyond it are counted, not shown.
pub const MAX_ROWS: usize = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
    Flat,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TickerRow {
    pub feed: FeedId,
    pub quote: Quote,
    /// When the latest quote was received.
    pub updated_at: DateTime<Utc>,
    /// When the price last changed (for the brief highlight).
    pub ticked_at: DateTime<Utc>,
    /// The direction of the last price change.
    pub direction: Direction,
    /// Recent prices, oldest first.
    pub history: VecDeque<f64>,
}

impl TickerRow {
    /// Change %: the server's figure where it gives one, else from `open`.
    pub fn change_percent(&self) -> Option<f64> {
        self.quote.change_percent.or_else(|| {
            let open = self.quote.open.filter(|o| *o != 0.0)?;
            Some((self.quote.price - open) / open * 100.0)
        })
    }
}

/// All ticker rows, keyed by (symbol, feed) so iteration is by symbol.
#[derive(Debug, Clone, Default)]
pub struct QuoteBook {
    rows: BTreeMap<(String, FeedId), TickerRow>,
    /// Quotes not shown because the book was full.
    pub overflow: u64,
}

impl QuoteBook {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn rows(&self) -> impl Iterator<Item = &TickerRow> {
        self.rows.values()
    }

    pub fn get(&self, symbol: &str, feed: &str) -> Option<&TickerRow> {
        self.rows.get(&(symbol.to_string(), FeedId::from(feed)))
    }

    /// Folds in one quote received at `at`.
    pub fn apply(&mut self, feed: FeedId, quote: Quote, at: DateTime<Utc>) {
        let key = (quote.symbol.clone(), feed.clone());
        let full = self.rows.len() >= MAX_ROWS;
        match self.rows.get_mut(&key) {
            Some(row) => {
                let previous = row.quote.price;
                if quote.price != previous {
                    row.direction = if quote.price > previous { Direction::Up } else { Direction::Down };
                    row.ticked_at = at;
                }
                if row.history.len() == HISTORY {
                    row.history.pop_front();
                }
                row.history.push_back(quote.price);
                row.quote = quote;
                row.updated_at = at;
            }
            None if full => self.overflow += 1,
            None => {
                let direction = match quote.change {
                    Some(c) if c > 0.0 => Direction::Up,
                    Some(c) if c < 0.0 => Direction::Down,
                    _ => Direction::Flat,
                };
                let history = VecDeque::from([quote.price]);
                self.rows.insert(key, TickerRow { feed, quote, updated_at: at, ticked_at: at, direction, history });
            }
        }
    }

    /// Restores a row from storage (latest quote plus stored price history).
    pub fn restore(&mut self, feed: FeedId, quote: Quote, at: DateTime<Utc>, history: Vec<f64>) {
        let mut history: VecDeque<f64> = history.into_iter().rev().take(HISTORY).rev().collect();
        if history.is_empty() {
            history.push_back(quote.price);
        }
        let direction = match quote.change {
            Some(c) if c > 0.0 => Direction::Up,
            Some(c) if c < 0.0 => Direction::Down,
            _ => Direction::Flat,
        };
        self.rows.insert(
            (quote.symbol.clone(), feed.clone()),
            TickerRow { feed, quote, updated_at: at, ticked_at: at, direction, history },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_750_000_000 + s, 0).unwrap()
    }

    #[test]
    fn direction_follows_the_last_price_change() {
        let mut book = QuoteBook::default();
        book.apply("a".into(), Quote::new("PKN", 65.0), t(0));
        assert_eq!(book.get("PKN", "a").unwrap().direction, Direction::Flat);
        book.apply("a".into(), Quote::new("PKN", 66.0), t(1));
        assert_eq!(book.get("PKN", "a").unwrap().direction, Direction::Up);
        // A repeated price (snapshots repeat) keeps the direction and tick time.
        book.apply("a".into(), Quote::new("PKN", 66.0), t(5));
        let row = book.get("PKN", "a").unwrap();
        assert_eq!((row.direction, row.ticked_at, row.updated_at), (Direction::Up, t(1), t(5)));
        book.apply("a".into(), Quote::new("PKN", 64.0), t(6));
        assert_eq!(book.get("PKN", "a").unwrap().direction, Direction::Down);
    }

    #[test]
    fn same_symbol_from_two_feeds_is_two_rows() {
        let mut book = QuoteBook::default();
        book.apply("a".into(), Quote::new("PKN", 1.0), t(0));
        book.apply("b".into(), Quote::new("PKN", 2.0), t(0));
        assert_eq!(book.len(), 2);
    }

    #[test]
    fn history_is_bounded() {
        let mut book = QuoteBook::default();
        for i in 0..500 {
            book.apply("a".into(), Quote::new("X", f64::from(i)), t(0) + TimeDelta::seconds(i.into()));
        }
        let row = book.get("X", "a").unwrap();
        assert_eq!(row.history.len(), HISTORY);
        assert_eq!(row.history.back(), Some(&499.0));
    }

    #[test]
    fn the_number_of_rows_is_bounded() {
        let mut book = QuoteBook::default();
        for i in 0..MAX_ROWS + 10 {
            book.apply("a".into(), Quote::new(format!("S{i}"), 1.0), t(0));
        }
        assert_eq!((book.len(), book.overflow), (MAX_ROWS, 10));
        // Known symbols still update.
        book.apply("a".into(), Quote::new("S0", 2.0), t(1));
        assert_eq!(book.get("S0", "a").unwrap().quote.price, 2.0);
    }

    #[test]
    fn change_percent_falls_back_to_open() {
        let mut q = Quote::new("X", 110.0);
        q.open = Some(100.0);
        let mut book = QuoteBook::default();
        book.apply("a".into(), q, t(0));
        assert!((book.get("X", "a").unwrap().change_percent().unwrap() - 10.0).abs() < 1e-9);
    }
}
