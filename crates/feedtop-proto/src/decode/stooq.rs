//! stooq's light-quote CSV (docs/protocols.md §5): the answer to
//! `GET /q/l/?s=<symbols>&f=sd2t2ohlcv&h&e=csv`, one whole body in, one
//! [`Snapshot`] out.
//!
//! ```text
//! Symbol,Date,Time,Open,High,Low,Close,Volume
//! PKN,2026-11-24,17:04:59,74.25,76.12,73.13,74.62,262356
//! XYZ,N/D,N/D,N/D,N/D,N/D,N/D,N/D
//! ```
//!
//! - Columns are found by their header names, in English (stooq.com) or in
//!   Polish (stooq.pl: `Symbol,Data,Czas,Otwarcie,Najwyzszy,Najnizszy,
//!   Zamkniecie,Wolumen`), so an order change or the other host still reads.
//! - A symbol the provider does not know, or one with no trade yet, has `N/D`
//!   (stooq.pl: `B/D`, *brak danych*) for its close: no data, which is an
//!   outcome of its own, not an error and not a malformed row.
//! - Date and time have no zone: they are Warsaw wall-clock time, turned into
//!   an instant with the Europe/Warsaw rules (DST included) and marked
//!   [`QuoteTime::Estimated`].
//! - A row that cannot be read is reported in [`Snapshot::malformed`] and
//!   skipped; an HTML page, a plain-text refusal ("Exceeded the daily hits
//!   limit") or an over-large body is a [`StooqError`] for the whole poll.
//!
//! Pure: no I/O, and no input makes it panic (see the proptest below and
//! `fuzz/fuzz_targets/stooq_decode.rs`).

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Europe::Warsaw;

use super::clip;
use crate::quote::{Quote, QuoteTime};

/// The largest body decoded. A few hundred symbols take a few tens of KiB;
/// anything near this is not a quote list.
pub const MAX_BODY: usize = 1024 * 1024;
/// The longest field of a row: symbols, dates and numbers are a few bytes.
pub const MAX_FIELD: usize = 64;
/// Rows read at most; the rest are skipped (and reported once).
pub const MAX_ROWS: usize = 1_000;
/// How much of a server's text an error repeats.
const MAX_ECHO: usize = 80;

/// What one good response said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// One per symbol with a price, in the order of the rows.
    pub quotes: Vec<Quote>,
    /// Symbols the provider has no data for (`N/D`, `B/D`), as it wrote them.
    pub no_data: Vec<String>,
    /// Why each unreadable row was skipped, one line each.
    pub malformed: Vec<String>,
}

/// Why a whole response could not be read as quotes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StooqError {
    #[error("a response of {0} bytes, over the 1 MiB limit")]
    TooLarge(usize),
    #[error("an empty response instead of CSV")]
    Empty,
    #[error("an HTML page instead of CSV{}", title_suffix(.title))]
    Html { title: Option<String> },
    #[error("not quote CSV: {0:?}")]
    NotCsv(String),
    #[error("the CSV header has no {0} column")]
    MissingColumn(&'static str),
}

fn title_suffix(title: &Option<String>) -> String {
    title.as_ref().map(|t| format!(" ({t})")).unwrap_or_default()
}

/// Where each field is in a row.
#[derive(Debug, Clone, Copy)]
struct Columns {
    count: usize,
    symbol: usize,
    close: usize,
    date: Option<usize>,
    time: Option<usize>,
    open: Option<usize>,
    high: Option<usize>,
    low: Option<usize>,
    volume: Option<usize>,
}

impl Columns {
    fn from_header(line: &str) -> Result<Self, StooqError> {
        if !line.contains(',') {
            return Err(StooqError::NotCsv(clip(line.trim(), MAX_ECHO)));
        }
        let names: Vec<String> = line.split(',').map(|n| n.trim().to_ascii_lowercase()).collect();
        let find = |wanted: &[&str]| names.iter().position(|n| wanted.contains(&n.as_str()));
        Ok(Self {
            count: names.len(),
            symbol: find(&["symbol"]).ok_or(StooqError::MissingColumn("Symbol"))?,
            close: find(&["close", "zamkniecie"]).ok_or(StooqError::MissingColumn("Close"))?,
            date: find(&["date", "data"]),
            time: find(&["time", "czas"]),
            open: find(&["open", "otwarcie"]),
            high: find(&["high", "najwyzszy"]),
            low: find(&["low", "najnizszy"]),
            volume: find(&["volume", "wolumen"]),
        })
    }
}

/// Decodes one response body.
pub fn decode(body: &[u8]) -> Result<Snapshot, StooqError> {
    if body.len() > MAX_BODY {
        return Err(StooqError::TooLarge(body.len()));
    }
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let start = body.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(body.len());
    let body = &body[start..];
    if body.is_empty() {
        return Err(StooqError::Empty);
    }
    if body[0] == b'<' {
        return Err(StooqError::Html { title: html_title(body) });
    }
    let mut lines = body.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let header = lines.next().unwrap_or_default();
    let header = std::str::from_utf8(header).map_err(|_| StooqError::NotCsv("(not UTF-8)".into()))?;
    let columns = Columns::from_header(header)?;
    let mut snapshot = Snapshot::default();
    let mut rows = 0;
    for (n, line) in lines.enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        rows += 1;
        if rows > MAX_ROWS {
            snapshot.malformed.push(format!("more than {MAX_ROWS} rows; the rest were skipped"));
            break;
        }
        // Row numbers as a person counts lines: the header is line 1.
        match row(line, &columns) {
            Ok(Row::Quote(q)) => snapshot.quotes.push(q),
            Ok(Row::NoData(symbol)) => snapshot.no_data.push(symbol),
            Err(why) => snapshot.malformed.push(format!("line {}: {why}", n + 2)),
        }
    }
    Ok(snapshot)
}

enum Row {
    Quote(Quote),
    NoData(String),
}

fn row(line: &[u8], columns: &Columns) -> Result<Row, String> {
    let line = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != columns.count {
        return Err(format!("{} fields where the header has {}", fields.len(), columns.count));
    }
    if fields.iter().any(|f| f.len() > MAX_FIELD) {
        return Err(format!("a field longer than {MAX_FIELD} bytes"));
    }
    let symbol = fields[columns.symbol];
    if symbol.is_empty() {
        return Err("no symbol".into());
    }
    let close = fields[columns.close];
    if is_no_data(close) {
        return Ok(Row::NoData(symbol.to_string()));
    }
    let Some(price) = number(close) else {
        return Err(format!("{symbol}: the close {close:?} is not a number"));
    };
    let field = |i: Option<usize>| i.map(|i| fields[i]);
    let time = match (field(columns.date), field(columns.time)) {
        (Some(date), Some(time)) => warsaw_time(date, time).map(QuoteTime::Estimated),
        _ => None,
    };
    let optional = |i: Option<usize>| field(i).and_then(number);
    Ok(Row::Quote(Quote {
        open: optional(columns.open),
        high: optional(columns.high),
        low: optional(columns.low),
        volume: optional(columns.volume),
        time,
        ..Quote::new(symbol, price)
    }))
}

/// `N/D` (stooq.com) or `B/D` (stooq.pl).
fn is_no_data(field: &str) -> bool {
    field.eq_ignore_ascii_case("N/D") || field.eq_ignore_ascii_case("B/D")
}

/// A finite number, or `None` (empty, `N/D`, text, ±inf, NaN).
fn number(field: &str) -> Option<f64> {
    field.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `2026-11-24` + `17:04:59` (or `20261124` + `170459`), Warsaw wall clock,
/// as an instant.
pub fn warsaw_time(date: &str, time: &str) -> Option<DateTime<Utc>> {
    let date =
        NaiveDate::parse_from_str(date, "%Y-%m-%d").or_else(|_| NaiveDate::parse_from_str(date, "%Y%m%d")).ok()?;
    let time =
        NaiveTime::parse_from_str(time, "%H:%M:%S").or_else(|_| NaiveTime::parse_from_str(time, "%H%M%S")).ok()?;
    warsaw_instant(date.and_time(time))
}

/// A Warsaw wall-clock time as an instant, by the tz database's rules for
/// Europe/Warsaw (CET, CEST from the last Sunday of March to the last
/// Sunday of October since 1996).
pub fn warsaw_instant(local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match Warsaw.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        // 02:00–03:00 on the last Sunday of October happens twice; the
        // exchange is closed then, so which one hardly matters: the first.
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        // 02:00–03:00 on the last Sunday of March never happens: read as
        // winter time (+01:00), the offset the clock had when it was written.
        LocalResult::None => local.checked_sub_signed(TimeDelta::hours(1)).map(|t| Utc.from_utc_datetime(&t)),
    }
}

/// The text of an HTML page's `<title>`, short and on one line.
pub fn html_title(body: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]);
    let lower = head.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    let title = head[start..end].split_whitespace().collect::<Vec<_>>().join(" ");
    (!title.is_empty()).then(|| clip(&title, MAX_ECHO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEADER: &str = "Symbol,Date,Time,Open,High,Low,Close,Volume";

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn rows_become_quotes_with_warsaw_times_marked_as_estimates() {
        let body = format!("{HEADER}\r\nPKN,2026-11-24,17:04:59,74.25,76.12,73.13,74.62,262356\r\nCDR,2026-07-01,09:00:05,201.5,203,200.1,202.4,1000\r\n");
        let s = decode(body.as_bytes()).unwrap();
        assert_eq!(s.no_data, Vec::<String>::new());
        assert_eq!(s.malformed, Vec::<String>::new());
        assert_eq!(
            s.quotes[0],
            Quote {
                open: Some(74.25),
                high: Some(76.12),
                low: Some(73.13),
                volume: Some(262_356.0),
                // November: CET, one hour ahead of UTC.
                time: Some(QuoteTime::Estimated(utc("2026-11-24T16:04:59Z"))),
                ..Quote::new("PKN", 74.62)
            }
        );
        // July: CEST, two hours ahead.
        assert_eq!(s.quotes[1].time, Some(QuoteTime::Estimated(utc("2026-07-01T07:00:05Z"))));
        assert!(s.quotes[1].time.unwrap().is_estimate());
        assert_eq!(s.quotes[1].price, 202.4);
    }

    #[test]
    fn dst_changes_follow_the_warsaw_rules() {
        let at = |d, t| warsaw_time(d, t).unwrap();
        // 2026: summer time from Sunday 29 March 01:00 UTC to Sunday 25 October 01:00 UTC.
        assert_eq!(at("2026-03-29", "01:59:59"), utc("2026-03-29T00:59:59Z"));
        assert_eq!(at("2026-03-29", "03:00:00"), utc("2026-03-29T01:00:00Z"));
        // The hour that does not exist is read as winter time.
        assert_eq!(at("2026-03-29", "02:30:00"), utc("2026-03-29T01:30:00Z"));
        assert_eq!(at("2026-10-25", "01:59:59"), utc("2026-10-24T23:59:59Z"));
        // The hour that happens twice: the first.
        assert_eq!(at("2026-10-25", "02:30:00"), utc("2026-10-25T00:30:00Z"));
        assert_eq!(at("2026-10-25", "03:00:00"), utc("2026-10-25T02:00:00Z"));
        // The day before the change is still summer time: not a fixed date rule.
        assert_eq!(at("2026-03-28", "12:00:00"), utc("2026-03-28T11:00:00Z"));
        assert_eq!(at("2027-03-28", "12:00:00"), utc("2027-03-28T10:00:00Z"));
        // Compact forms.
        assert_eq!(at("20261124", "170459"), utc("2026-11-24T16:04:59Z"));
        assert_eq!(warsaw_time("2026-02-30", "12:00:00"), None);
        assert_eq!(warsaw_time("2026-11-24", "25:00:00"), None);
        assert_eq!(warsaw_time("N/D", "N/D"), None);
    }

    #[test]
    fn n_d_rows_are_no_data_not_errors() {
        let body = format!(
            "{HEADER}\nPKN,2026-11-24,17:04:59,74.25,76.12,73.13,74.62,262356\nXYZ,N/D,N/D,N/D,N/D,N/D,N/D,N/D\nNEW,2026-11-24,N/D,N/D,N/D,N/D,n/d,N/D\n"
        );
        let s = decode(body.as_bytes()).unwrap();
        assert_eq!(s.quotes.len(), 1);
        assert_eq!(s.no_data, ["XYZ", "NEW"]);
        assert!(s.malformed.is_empty(), "{:?}", s.malformed);
        // A price with the rest missing is a quote without them.
        let s = decode(format!("{HEADER}\nIDX,N/D,N/D,N/D,N/D,N/D,1200.5,N/D\n").as_bytes()).unwrap();
        assert_eq!(s.quotes, [Quote::new("IDX", 1200.5)]);
    }

    #[test]
    fn the_polish_header_and_b_d_of_stooq_pl_read_the_same() {
        let body = "Symbol,Data,Czas,Otwarcie,Najwyzszy,Najnizszy,Zamkniecie,Wolumen\r\n\
                    PKN,2026-11-24,17:04:59,74.25,76.12,73.13,74.62,262356\r\nXYZ,B/D,B/D,B/D,B/D,B/D,B/D,B/D\r\n";
        let s = decode(body.as_bytes()).unwrap();
        assert_eq!(s.quotes[0].price, 74.62);
        assert_eq!(s.quotes[0].volume, Some(262_356.0));
        assert_eq!(s.quotes[0].time, Some(QuoteTime::Estimated(utc("2026-11-24T16:04:59Z"))));
        assert_eq!(s.no_data, ["XYZ"]);
    }

    #[test]
    fn columns_are_found_by_name() {
        let s = decode(b"Close,Symbol\n1.5,ABC\n").unwrap();
        assert_eq!(s.quotes, [Quote::new("ABC", 1.5)]);
        assert_eq!(decode(b"Symbol,Date\nABC,2026-01-01\n"), Err(StooqError::MissingColumn("Close")));
        assert_eq!(decode(b"Date,Close\n2026-01-01,1\n"), Err(StooqError::MissingColumn("Symbol")));
        // A header and no rows: nothing asked, nothing answered.
        assert_eq!(decode(HEADER.as_bytes()), Ok(Snapshot::default()));
        // A byte-order mark and blank lines around the data are fine.
        let s = decode(format!("\u{feff}\n{HEADER}\n\nA,N/D,N/D,N/D,N/D,N/D,2,N/D\n\n").as_bytes()).unwrap();
        assert_eq!(s.quotes, [Quote::new("A", 2.0)]);
    }

    #[test]
    fn bad_rows_are_malformed_and_the_rest_still_count() {
        let long = "9".repeat(MAX_FIELD + 1);
        let body = format!(
            "{HEADER}\nA,2026-11-24,17:00:00,1,1,1,1,1\nB,2026-11-24\n,2026-11-24,17:00:00,1,1,1,1,1\n\
             C,2026-11-24,17:00:00,1,1,1,abc,1\nD,2026-11-24,17:00:00,1,1,1,inf,1\nE,2026-11-24,17:00:00,1,1,1,{long},1\n\
             F,soon,later,x,y,z,3,many\n"
        );
        let mut bytes = body.into_bytes();
        bytes.extend_from_slice(b"G,\xff\xfe,17:00:00,1,1,1,1,1\n");
        let s = decode(&bytes).unwrap();
        let symbols: Vec<&str> = s.quotes.iter().map(|q| q.symbol.as_str()).collect();
        // F's unreadable extras are missing values, as in the other decoders.
        assert_eq!(symbols, ["A", "F"]);
        assert_eq!((s.quotes[1].open, s.quotes[1].volume, s.quotes[1].time), (None, None, None));
        assert_eq!(s.malformed.len(), 6, "{:#?}", s.malformed);
        assert_eq!(s.malformed[0], "line 3: 2 fields where the header has 8");
        assert_eq!(s.malformed[1], "line 4: no symbol");
        assert!(s.malformed[2].starts_with("line 5: C: the close"), "{}", s.malformed[2]);
        assert!(s.malformed[3].contains("\"inf\""), "{}", s.malformed[3]);
        assert!(s.malformed[4].contains("longer than 64"), "{}", s.malformed[4]);
        assert_eq!(s.malformed[5], "line 9: not UTF-8");
        assert!(s.no_data.is_empty());
    }

    #[test]
    fn pages_refusals_and_oversized_bodies_are_errors() {
        let page =
            b"\r\n<!DOCTYPE html><html><head><TITLE>\n  Service   Unavailable </TITLE></head><body>x</body></html>";
        assert_eq!(decode(page), Err(StooqError::Html { title: Some("Service Unavailable".into()) }));
        assert_eq!(decode(b"<html><body>busy</body></html>"), Err(StooqError::Html { title: None }));
        assert_eq!(
            decode(b"Exceeded the daily hits limit"),
            Err(StooqError::NotCsv("Exceeded the daily hits limit".into()))
        );
        assert_eq!(decode(b""), Err(StooqError::Empty));
        assert_eq!(decode(b" \r\n\t"), Err(StooqError::Empty));
        assert_eq!(decode(b"\xff\xfe,\n"), Err(StooqError::NotCsv("(not UTF-8)".into())));
        let big = vec![b'a'; MAX_BODY + 1];
        assert_eq!(decode(&big), Err(StooqError::TooLarge(MAX_BODY + 1)));
        let error = StooqError::Html { title: Some("Just a moment...".into()) }.to_string();
        assert_eq!(error, "an HTML page instead of CSV (Just a moment...)");
        // A server's text is repeated short.
        let Err(StooqError::NotCsv(echo)) = decode("x".repeat(10_000).as_bytes()) else { panic!() };
        assert!(echo.chars().count() <= MAX_ECHO + 1);
        let title = format!("<title>{}</title>", "t".repeat(10_000));
        let Err(StooqError::Html { title: Some(t) }) = decode(title.as_bytes()) else { panic!() };
        assert!(t.chars().count() <= MAX_ECHO + 1);
    }

    #[test]
    fn rows_past_the_limit_are_skipped_and_said_once() {
        let mut body = String::from(HEADER);
        for i in 0..MAX_ROWS + 50 {
            body.push_str(&format!("\nS{i},N/D,N/D,N/D,N/D,N/D,{i},N/D"));
        }
        let s = decode(body.as_bytes()).unwrap();
        assert_eq!(s.quotes.len(), MAX_ROWS);
        assert_eq!(s.malformed, [format!("more than {MAX_ROWS} rows; the rest were skipped")]);
    }

    /// One row as stooq writes it, with a price or with `N/D`.
    fn good_row() -> impl Strategy<Value = (String, Option<(u32, u32)>)> {
        ("[A-Z]{1,6}(\\.[A-Z]{2})?", proptest::option::of((1u32..1_000_000, 0u32..100)))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_decode_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(s) = decode(&body) {
                prop_assert!(s.quotes.iter().all(|q| !q.symbol.is_empty() && q.price.is_finite()));
                prop_assert!(s.quotes.len() + s.no_data.len() <= MAX_ROWS);
            }
            let mut csv = HEADER.as_bytes().to_vec();
            csv.push(b'\n');
            csv.extend_from_slice(&body);
            let _ = decode(&csv);
        }

        #[test]
        fn well_formed_rows_come_back_exactly(rows in proptest::collection::vec(good_row(), 0..40)) {
            let mut body = String::from(HEADER);
            for (symbol, price) in &rows {
                match price {
                    Some((units, cents)) => {
                        body.push_str(&format!("\r\n{symbol},2026-11-24,17:04:59,1,2,0.5,{units}.{cents:02},10"))
                    }
                    None => body.push_str(&format!("\r\n{symbol},N/D,N/D,N/D,N/D,N/D,N/D,N/D")),
                }
            }
            let s = decode(body.as_bytes()).unwrap();
            prop_assert!(s.malformed.is_empty());
            let priced: Vec<(String, f64)> = rows
                .iter()
                .filter_map(|(s, p)| p.map(|(u, c)| (s.clone(), format!("{u}.{c:02}").parse().unwrap())))
                .collect();
            let got: Vec<(String, f64)> = s.quotes.iter().map(|q| (q.symbol.clone(), q.price)).collect();
            prop_assert_eq!(got, priced);
            let missing: Vec<String> = rows.iter().filter(|(_, p)| p.is_none()).map(|(s, _)| s.clone()).collect();
            prop_assert_eq!(s.no_data, missing);
        }
    }
}
