//! Which ticker rows the tickers pane shows, in which order: the `/` filter
//! and the sort the user picked. The pane and the scroll bounds both use
//! [`visible`], so they always agree on the row count.

use std::cmp::{Ordering, Reverse};

use super::filter::Filter;
use crate::model::{Model, TickerRow};

/// The feed kind that carries no quotes.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TickerSort {
    /// A to Z.
    #[default]
    Symbol,
    /// Biggest gainers first, biggest losers last; no figure at the end.
    ChangePercent,
    /// Most recently updated first.
    Age,
}

impl TickerSort {
    pub fn next(self) -> Self {
        match self {
            TickerSort::Symbol => TickerSort::ChangePercent,
            TickerSort::ChangePercent => TickerSort::Age,
            TickerSort::Age => TickerSort::Symbol,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            TickerSort::Symbol => "symbol",
            TickerSort::ChangePercent => "change %",
            TickerSort::Age => "age",
        }
    }
}

/// Whether the model has anything for the tickers pane: a quote feed, or
/// rows restored from an earlier run.
pub fn has_tickers(model: &Model) -> bool {
    !model.quotes.is_empty() || model.feeds.iter().any(|f| f.info.kind.carries_quotes())
}

/// The name of a row's feed (its id).
pub fn feed_name<'a>(_model: &Model, row: &'a TickerRow) -> &'a str {
    row.feed.as_str()
}

/// Whether `row` is shown: the filter on the symbol, the feed name or the
/// market status.
pub fn matches(row: &TickerRow, feed: &str, filter: &Filter) -> bool {
    let fields = [Some(row.quote.symbol.as_str()), Some(feed), row.quote.market_status.as_deref()];
    filter.matches(fields.into_iter().flatten())
}

/// Largest first, rows without a figure last.
fn by_change(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a.filter(|x| !x.is_nan()), b.filter(|x| !x.is_nan())) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// The rows the pane shows, filtered and sorted; ties go by symbol, then
/// feed. `reversed` turns the list upside down, except that rows without a
/// change figure stay last: reversed, the change sort shows the biggest
/// losers first, not the rows it cannot rank.
pub fn visible<'a>(model: &'a Model, filter: &Filter, sort: TickerSort, reversed: bool) -> Vec<&'a TickerRow> {
    let mut rows: Vec<&TickerRow> = model.quotes.rows().filter(|r| matches(r, feed_name(model, r), filter)).collect();
    // The book iterates by symbol and feed already, and the sort is stable.
    match sort {
        TickerSort::Symbol => {}
        TickerSort::ChangePercent => rows.sort_by(|a, b| by_change(a.change_percent(), b.change_percent())),
        TickerSort::Age => rows.sort_by_key(|r| Reverse(r.updated_at)),
    }
    if reversed {
        rows.reverse();
        if sort == TickerSort::ChangePercent {
            rows.sort_by_key(|r| r.change_percent().is_none_or(f64::is_nan));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::test_support::{secs, t0};
    use feedtop_proto::{Dialect, FeedKind};
    use feedtop_proto::{FeedInfo, Quote};
    use std::time::Duration;

    fn model() -> Model {
        let feeds = [
            ("ch/companies", FeedKind::CompaniesHouse),
            ("wig80", FeedKind::WebSocket(Dialect::Wig80)),
            ("carbon", FeedKind::WebSocket(Dialect::Carbon)),
        ];
        let feeds = feeds.map(|(name, kind)| FeedInfo { name: name.into(), kind }).to_vec();
        let mut m = Model::new(feeds, Duration::from_secs(300), t0());
        let quote = |symbol: &str, pct: Option<f64>, status: Option<&str>| {
            let mut q = Quote::new(symbol, 10.0);
            q.change_percent = pct;
            q.market_status = status.map(str::to_string);
            q
        };
        m.quotes.apply("wig80".into(), quote("PKN", Some(-0.5), Some("closed")), secs(3));
        m.quotes.apply("wig80".into(), quote("KGHM", Some(2.0), Some("open")), secs(1));
        m.quotes.apply("carbon".into(), quote("BRENT_CRUDE", None, None), secs(2));
        m.quotes.apply("wig80".into(), quote("CDR", Some(0.1), Some("open")), secs(0));
        m
    }

    fn symbols(rows: Vec<&TickerRow>) -> Vec<&str> {
        rows.into_iter().map(|r| r.quote.symbol.as_str()).collect()
    }

    #[test]
    fn sorts() {
        let m = model();
        let all = Filter::new("");
        assert_eq!(symbols(visible(&m, &all, TickerSort::Symbol, false)), ["BRENT_CRUDE", "CDR", "KGHM", "PKN"]);
        assert_eq!(symbols(visible(&m, &all, TickerSort::ChangePercent, false)), ["KGHM", "CDR", "PKN", "BRENT_CRUDE"]);
        assert_eq!(symbols(visible(&m, &all, TickerSort::Age, false)), ["PKN", "BRENT_CRUDE", "KGHM", "CDR"]);
        // Reversed: upside down, rows without a change figure still last.
        assert_eq!(symbols(visible(&m, &all, TickerSort::Symbol, true)), ["PKN", "KGHM", "CDR", "BRENT_CRUDE"]);
        assert_eq!(symbols(visible(&m, &all, TickerSort::ChangePercent, true)), ["PKN", "CDR", "KGHM", "BRENT_CRUDE"]);
        assert_eq!(symbols(visible(&m, &all, TickerSort::Age, true)), ["CDR", "KGHM", "BRENT_CRUDE", "PKN"]);
        let mut s = TickerSort::default();
        let labels: Vec<&str> = (0..4)
            .map(|_| {
                let l = s.label();
                s = s.next();
                l
            })
            .collect();
        assert_eq!(labels, ["symbol", "change %", "age", "symbol"]);
    }

    #[test]
    fn filter_on_symbol_feed_and_status_ignoring_case() {
        let m = model();
        let shown = |f: &str| symbols(visible(&m, &f.into(), TickerSort::Symbol, false));
        assert_eq!(shown("pkn"), ["PKN"]);
        assert_eq!(shown(" CARBON "), ["BRENT_CRUDE"]);
        assert_eq!(shown("open"), ["CDR", "KGHM"]);
        assert!(shown("zzz").is_empty());
        // A regular expression, its inverse, and an invalid one (filters nothing out).
        assert_eq!(shown("^(pkn|cdr)$"), ["CDR", "PKN"]);
        assert_eq!(shown("!wig80"), ["BRENT_CRUDE"]);
        assert_eq!(shown("[pkn"), ["BRENT_CRUDE", "CDR", "KGHM", "PKN"]);
    }

    #[test]
    fn tickers_exist_with_a_quote_feed_or_rows() {
        let m = model();
        assert!(has_tickers(&m));
        let ch = FeedInfo { name: "companies".into(), kind: FeedKind::CompaniesHouse };
        let mut only_ch = Model::new(vec![ch], Duration::from_secs(300), t0());
        assert!(!has_tickers(&only_ch));
        only_ch.quotes.apply("companies".into(), Quote::new("X", 1.0), t0());
        assert!(has_tickers(&only_ch));
    }
}
