//! Reads what the detail overlay shows of a company or a ticker from the
//! database, on a read-only connection of its own, when the user opens it.
//! The UI stays a pure function of what it is given; this is the one place
//! the TUI reads the store for it.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use crate::store::{self, details, enrich};
use crate::ui::{Detail, Loaded};

/// Points a price chart is thinned to: more than any terminal is wide.
const CHART_POINTS: usize = 400;

/// The stored data for `detail`, or `None` for the details that need none
/// (a feed, what is in force). Errors become [`Loaded::Failed`], shown on
/// the page: a database that cannot be read is said, not hidden.
pub fn load(db: &Path, detail: &Detail) -> Option<Loaded> {
    let read = |what: &dyn Fn(&Connection) -> Result<Loaded, String>| {
        store::open_read_only(db).map_err(|e| e.to_string()).and_then(|conn| what(&conn)).unwrap_or_else(Loaded::Failed)
    };
    match detail {
        Detail::Company(number) => Some(read(&|conn| company(conn, number))),
        Detail::Ticker { feed, symbol } => Some(read(&|conn| prices(conn, feed, symbol))),
        Detail::Feed(_) | Detail::Info => None,
    }
}

/// What `detail` shows without a database (a viewer without `--db`):
/// `None` for the details that need none.
pub fn needs_database(detail: &Detail) -> Option<Loaded> {
    match detail {
        Detail::Company(_) | Detail::Ticker { .. } => Some(Loaded::NoDatabase),
        Detail::Feed(_) | Detail::Info => None,
    }
}

fn company(conn: &Connection, number: &str) -> Result<Loaded, String> {
    let detail = details::company_detail(conn, number).map_err(|e| e.to_string())?;
    // The enrichment tables hold nothing for it without a REST key.
    let officers = enrich::officers_of(conn, number).map_err(|e| e.to_string())?;
    let officers_fetched = enrich::officers_fetched(conn, number).map_err(|e| e.to_string())?;
    Ok(Loaded::Company { detail: detail.map(Box::new), officers, officers_fetched })
}

fn prices(conn: &Connection, feed: &str, symbol: &str) -> Result<Loaded, String> {
    // The whole stored history: the query's cost does not grow with it.
    let points = details::price_history(conn, feed, symbol, DateTime::<Utc>::MIN_UTC, CHART_POINTS)
        .map_err(|e| e.to_string())?;
    Ok(Loaded::Prices(points))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Fact;
    use crate::store::writer::{write_batch, RawEvents};
    use crate::ui::test_support::{cet_clock, live_model, render, screen, t0};
    use crate::ui::{Theme, ViewState};
    use chrono::TimeDelta;
    use feedtop_proto::Quote;

    /// The fixture's companies as the TUI stores them, an officer fetched for
    /// one of them, and a minute of one symbol's quotes.
    fn stored() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = store::open(&path).unwrap();
        let model = live_model();
        let mut facts: Vec<Fact> = model.strike_offs.iter().cloned().map(Fact::StrikeOff).collect();
        for ev in crate::ui::test_support::fixture_events() {
            facts.push(Fact::Event { feed: "companies".into(), event: Box::new(ev), received_at: t0() });
        }
        for s in 0..60 {
            let quote = Quote::new("KGHM", 150.0 + f64::from(s % 7));
            facts.push(Fact::Quote { feed: "wig80".into(), quote, received_at: t0() + TimeDelta::seconds(s.into()) });
        }
        write_batch(&mut conn, &facts, RawEvents::Full).unwrap();
        conn.execute_batch(
            "INSERT INTO officers (company_number, position, name, officer_role, appointed_on, nationality, \
             occupation, birth_month, birth_year, address) VALUES ('14829301', 0, 'HALE, Morven \x1b[31m', \
             'director', '2019-03-04', 'British', 'Joiner', 7, 1981, '4 Mill Lane, Leeds');
             INSERT INTO officer_fetches VALUES ('14829301', 1, '2025-06-10T12:00:00.000Z');",
        )
        .unwrap();
        (dir, path)
    }

    /// Enter on a strike-off change: the stored page with its officers,
    /// feed text sanitised; Enter on a ticker: the stored prices as a chart.
    #[test]
    fn the_company_page_and_the_chart_come_from_the_store() {
        let (_dir, db) = stored();
        let company = Detail::Company("14829301".into());
        let loaded = load(&db, &company).unwrap();
        let Loaded::Company { detail: Some(_), ref officers, ref officers_fetched } = loaded else {
            panic!("{loaded:?}")
        };
        assert_eq!((officers.len(), officers_fetched.is_some()), (1, true));

        let mut view = ViewState::new();
        view.clock = cet_clock();
        view.detail = Some(company.clone());
        view.detail_data = Some((company, loaded));
        let text = screen(&render(&live_model(), &view, &Theme::new(false), 100, 60));
        assert!(text.contains("BRIGHTWELL JOINERY LTD") && text.contains("Officers (1)"), "{text}");
        assert!(
            text.contains("HALE, Morven") && text.contains("(director)") && text.contains("born 07/1981"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "feed text is sanitised: {text}");
        assert!(text.contains("fetched 2025-06-10 14:00:00 CEST"), "in the screen's zone: {text}");

        let ticker = Detail::Ticker { feed: "wig80".into(), symbol: "KGHM".into() };
        let loaded = load(&db, &ticker).unwrap();
        assert!(matches!(loaded, Loaded::Prices(ref p) if p.len() == 60), "{loaded:?}");
        view.detail = Some(ticker.clone());
        view.detail_data = Some((ticker, loaded));
        let text = screen(&render(&live_model(), &view, &Theme::new(false), 100, 30));
        assert!(text.contains("KGHM") && !text.contains("reading the price history"), "{text}");

        // A company nothing is stored about says so.
        let unknown = Detail::Company("00000000".into());
        let loaded = load(&db, &unknown).unwrap();
        view.detail = Some(unknown.clone());
        view.detail_data = Some((unknown, loaded));
        let text = screen(&render(&live_model(), &view, &Theme::new(false), 100, 30));
        assert!(text.contains("nothing is stored about 00000000"), "{text}");
    }

    #[test]
    fn an_unreadable_database_is_said_on_the_page() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.db");
        let loaded = load(&missing, &Detail::Company("12345678".into()));
        assert!(matches!(loaded, Some(Loaded::Failed(ref e)) if e.contains("none.db")), "{loaded:?}");
        assert_eq!(load(&missing, &Detail::Info), None);
    }

    #[test]
    fn a_viewer_without_a_database_says_how_to_keep_one() {
        let mut view = ViewState::new();
        for detail in
            [Detail::Company("14829301".into()), Detail::Ticker { feed: "wig80".into(), symbol: "KGHM".into() }]
        {
            let loaded = needs_database(&detail).unwrap();
            view.detail = Some(detail.clone());
            view.detail_data = Some((detail, loaded));
            let text = screen(&render(&live_model(), &view, &Theme::new(false), 100, 30)).replace('\n', " ");
            assert!(text.contains("keeps no database") && text.contains("start it with --db"), "{text}");
            assert!(!text.contains("reading the"), "not waiting for a read that never comes: {text}");
        }
        assert_eq!(needs_database(&Detail::Info), None, "what is in force needs no database");
    }
}
