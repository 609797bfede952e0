//! Reads: history for start-up and rows for the export commands.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{parse_ts, ts};
use crate::model::quotes::HISTORY;
use crate::model::{ChangeKind, History, StoredQuote, StrikeOffChange, STRIKE_OFF_HISTORY};
use feedtop_proto::{Quote, QuoteTime};

/// The stored resume point of a feed.
pub fn cursor(conn: &Connection, feed: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT timepoint FROM cursors WHERE feed = ?1", [feed], |r| r.get(0)).optional()
}

/// The stored SSE resume point of a feed.
pub fn resume_id(conn: &Connection, feed: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT event_id FROM resume_ids WHERE feed = ?1", [feed], |r| r.get(0)).optional()
}

/// What the model needs before the first frame.
pub fn load_history(conn: &Connection, feeds: &[String]) -> rusqlite::Result<History> {
    let strike_offs = strike_offs(conn, None, Some(STRIKE_OFF_HISTORY))?;
    let mut gaps = Vec::new();
    for feed in feeds {
        let n: i64 = conn.query_row("SELECT count(*) FROM gaps WHERE feed = ?1", [feed], |r| r.get(0))?;
        gaps.push((feed.clone(), n as u64));
    }
    let quotes = latest_quotes(conn, feeds)?;
    Ok(History { strike_offs, gaps, quotes })
}

/// The latest quote of every symbol of the given feeds, with recent prices.
pub fn latest_quotes(conn: &Connection, feeds: &[String]) -> rusqlite::Result<Vec<StoredQuote>> {
    let mut latest = conn.prepare_cached(
        "SELECT symbol, price, change, change_percent, volume, high, low, open, market_status, currency,
                quote_time, time_is_estimate, received_at
           FROM quotes_latest WHERE feed = ?1 ORDER BY symbol",
    )?;
    let mut history = conn
        .prepare_cached("SELECT price FROM quote_history WHERE feed = ?1 AND symbol = ?2 ORDER BY id DESC LIMIT ?3")?;
    let mut out = Vec::new();
    for feed in feeds {
        let rows = latest.query_map([feed], |r| {
            let time: Option<String> = r.get(10)?;
            let estimate: bool = r.get(11)?;
            let received: String = r.get(12)?;
            let mut q = Quote::new(r.get::<_, String>(0)?, r.get(1)?);
            q.change = r.get(2)?;
            q.change_percent = r.get(3)?;
            q.volume = r.get(4)?;
            q.high = r.get(5)?;
            q.low = r.get(6)?;
            q.open = r.get(7)?;
            q.market_status = r.get(8)?;
            q.currency = r.get(9)?;
            q.time = time.as_deref().and_then(|t| stored_quote_time(t, estimate));
            Ok((q, parse_ts(&received).unwrap_or_default()))
        })?;
        for row in rows {
            let (quote, received_at) = row?;
            let mut prices = history
                .query_map(params![feed, quote.symbol, HISTORY as i64], |r| r.get::<_, f64>(0))?
                .collect::<rusqlite::Result<Vec<f64>>>()?;
            prices.reverse();
            out.push(StoredQuote { feed: feed.clone(), quote, received_at, history: prices });
        }
    }
    Ok(out)
}

fn stored_quote_time(text: &str, estimate: bool) -> Option<QuoteTime> {
    if estimate {
        // An estimate with a zone was converted by the exchange's rules
        // (`QuoteTime::Estimated`); without one it is a naive server time.
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(QuoteTime::Naive)
            .or_else(|| parse_ts(text).map(QuoteTime::Estimated))
    } else {
        parse_ts(text).map(QuoteTime::Absolute)
    }
}

/// Newest first, so that it reads `strike_offs_by_timepoint` backwards and
/// stops at the limit instead of sorting the table.
const STRIKE_OFFS: &str = "
    SELECT change, company_number, company_name, from_status, from_detail, to_status, to_detail,
           published_at, timepoint, received_at
      FROM strike_offs
     WHERE ?1 IS NULL OR COALESCE(published_at, received_at) >= ?1
     ORDER BY timepoint DESC, id DESC
     LIMIT ?2";

/// Strike-off changes, newest first, optionally since a time (by publication
/// time, or reception time where the event had none) and limited.
pub fn strike_offs(
    conn: &Connection,
    since: Option<DateTime<Utc>>,
    limit: Option<usize>,
) -> rusqlite::Result<Vec<StrikeOffChange>> {
    let mut stmt = conn.prepare_cached(STRIKE_OFFS)?;
    let limit = limit.map_or(-1, |l| l as i64);
    let rows = stmt.query_map(params![since.map(ts), limit], strike_off_row)?;
    rows.collect()
}

/// One `strike_offs` row, selected as `change, company_number, company_name,
/// from_status, from_detail, to_status, to_detail, published_at, timepoint,
/// received_at`.
pub fn strike_off_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StrikeOffChange> {
    let change: String = r.get(0)?;
    let published: Option<String> = r.get(7)?;
    let received: String = r.get(9)?;
    Ok(StrikeOffChange {
        kind: ChangeKind::parse(&change).unwrap_or(ChangeKind::Entered),
        company_number: r.get(1)?,
        company_name: r.get(2)?,
        from_status: r.get(3)?,
        from_detail: r.get(4)?,
        to_status: r.get(5)?,
        to_detail: r.get(6)?,
        published_at: published.as_deref().and_then(parse_ts),
        timepoint: r.get(8)?,
        received_at: parse_ts(&received).unwrap_or_default(),
    })
}

/// Row counts, for tests and the export summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub events: u64,
    pub companies: u64,
    pub strike_offs: u64,
    pub gaps: u64,
}

pub fn counts(conn: &Connection) -> rusqlite::Result<Counts> {
    let n = |table: &str| -> rusqlite::Result<u64> {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0)).map(|n| n as u64)
    };
    Ok(Counts { events: n("events")?, companies: n("companies")?, strike_offs: n("strike_offs")?, gaps: n("gaps")? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::strike_off::PROPOSAL;
    use crate::model::{Fact, Model, Tally};
    use crate::store::writer::{write_batch, RawEvents};
    use chrono::TimeZone;
    use feedtop_proto::ch::parse_event;
    use feedtop_proto::FeedKind;
    use feedtop_proto::{FeedInfo, FeedMsg, FeedMsgKind, ResumePoint};
    use std::time::Duration;

    fn fixture_facts(model: &mut Model) -> Vec<Fact> {
        let at = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let mut facts = Vec::new();
        for line in include_str!("../../tests/fixtures/ch-companies-sample.ndjson").lines() {
            if let Ok(ev) = parse_event(line.as_bytes().to_vec()) {
                let resume = ResumePoint::Timepoint(ev.timepoint);
                let kind = FeedMsgKind::Resumable { resume, inner: Box::new(FeedMsgKind::Event(Box::new(ev))) };
                model.apply(FeedMsg { feed: model.feeds[0].info.name.clone(), at, kind }, &mut facts);
            }
        }
        facts
    }

    fn model() -> Model {
        let info = FeedInfo { name: "companies".into(), kind: FeedKind::CompaniesHouse };
        Model::new(vec![info], Duration::from_secs(300), Utc::now())
    }

    #[test]
    fn fixture_round_trip_and_replay_does_not_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = crate::store::open(&path).unwrap();
        let facts = fixture_facts(&mut model());
        assert_eq!(write_batch(&mut conn, &facts, RawEvents::Full).unwrap(), 27);
        // The same facts again (a replay) add nothing.
        assert_eq!(write_batch(&mut conn, &facts, RawEvents::Full).unwrap(), 0);
        let c = counts(&conn).unwrap();
        assert_eq!((c.events, c.strike_offs), (27, 11));
        assert_eq!(cursor(&conn, "companies").unwrap(), Some(82417342));

        let all = strike_offs(&conn, None, None).unwrap();
        let mut tally = Tally::default();
        all.iter().for_each(|c| tally.add(c.kind));
        assert_eq!(tally, Tally { entered: 6, withdrawn: 3, struck_off: 2 });
        assert_eq!(all[0].company_number, "12007733");

        // After a "restart" the history has every change (who is in the
        // proposal is asked of the store: store::proposals).
        let history = load_history(&conn, &["companies".to_string()]).unwrap();
        assert_eq!(history.strike_offs.len(), 11);
    }

    /// The stored `from` is the model's, not finished from `companies` in
    /// SQL: a company seen before has the state the model knew, and a change
    /// whose `from` the model did not know stays unknown even though the
    /// database holds a row for the company (the old insert filled it in,
    /// so the screen showed `? →` where the export showed a state).
    #[test]
    fn a_change_is_stored_with_the_from_the_model_gave_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        let mut m = model();
        let at = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        let mut facts = Vec::new();
        let profile = |tp: i64, status: &str, detail: Option<&str>| feedtop_proto::ChEvent {
            resource_kind: "company-profile".into(),
            resource_id: "01234567".into(),
            timepoint: tp,
            published_at: None,
            event_type: feedtop_proto::EventType::Changed,
            company: Some(feedtop_proto::CompanyState {
                number: "01234567".into(),
                name: "KNOWN LTD".into(),
                status: status.into(),
                detail: detail.map(str::to_string),
            }),
            raw: "{}".into(),
        };
        for ev in [profile(1, "active", Some("transferred-from-uk")), profile(2, "active", Some(PROPOSAL))] {
            m.apply(
                FeedMsg { feed: m.feeds[0].info.name.clone(), at, kind: FeedMsgKind::Event(Box::new(ev)) },
                &mut facts,
            );
        }
        let Some(Fact::StrikeOff(entered)) = facts.iter().find(|f| matches!(f, Fact::StrikeOff(_))).cloned() else {
            panic!("an entry: {facts:?}")
        };
        // The same company entering again with a `from` the model did not know.
        let unknown = StrikeOffChange { from_status: None, from_detail: None, timepoint: 3, ..entered.clone() };
        facts.push(Fact::StrikeOff(unknown));
        write_batch(&mut conn, &facts, RawEvents::Full).unwrap();
        let rows = strike_offs(&conn, None, None).unwrap();
        let from: Vec<_> =
            rows.iter().map(|c| (c.timepoint, c.from_status.as_deref(), c.from_detail.as_deref())).collect();
        assert_eq!(from, [(3, None, None), (2, Some("active"), Some("transferred-from-uk"))]);
        assert_eq!(rows[1], entered, "read back as the model made it");
    }

    #[test]
    fn quotes_round_trip_with_history_and_retention() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = crate::store::open(&path).unwrap();
        let t0 = Utc.with_ymd_and_hms(2025, 11, 6, 20, 0, 0).unwrap();
        let naive =
            chrono::NaiveDate::from_ymd_opt(2025, 11, 6).unwrap().and_hms_micro_opt(20, 23, 56, 123456).unwrap();
        let facts: Vec<Fact> = (0..80)
            .map(|i| {
                let mut q = Quote::new("PKN", 60.0 + f64::from(i));
                q.change = Some(1.25);
                q.market_status = Some("open".into());
                q.time = Some(if i % 2 == 0 { QuoteTime::Naive(naive) } else { QuoteTime::Absolute(t0) });
                Fact::Quote { feed: "wig80".into(), quote: q, received_at: t0 + chrono::TimeDelta::seconds(i.into()) }
            })
            .collect();
        write_batch(&mut conn, &facts, RawEvents::Full).unwrap();
        let stored = latest_quotes(&conn, &["wig80".to_string(), "other".to_string()]).unwrap();
        assert_eq!(stored.len(), 1);
        let s = &stored[0];
        assert_eq!(s.quote.price, 139.0);
        assert_eq!(s.quote.time, Some(QuoteTime::Absolute(t0)));
        assert_eq!(s.quote.market_status.as_deref(), Some("open"));
        assert_eq!(s.history.len(), HISTORY);
        assert_eq!(*s.history.last().unwrap(), 139.0, "oldest first, newest last");
        let removed = crate::store::writer::prune_quotes(&conn, t0 + chrono::TimeDelta::seconds(70)).unwrap();
        assert_eq!(removed, 70);
    }

    /// Each kind of quote time comes back as itself, the estimate flag with it
    /// (a stooq time converted from Warsaw time must not come back absolute,
    /// nor be lost because it carries a zone).
    #[test]
    fn every_kind_of_quote_time_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 16, 4, 59).unwrap();
        let naive = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap().and_hms_opt(17, 4, 59).unwrap();
        let times = [QuoteTime::Absolute(t0), QuoteTime::Naive(naive), QuoteTime::Estimated(t0)];
        let facts: Vec<Fact> = times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let quote = Quote { time: Some(*t), ..Quote::new(format!("S{i}"), 1.0) };
                Fact::Quote { feed: "f".into(), quote, received_at: t0 }
            })
            .collect();
        write_batch(&mut conn, &facts, RawEvents::Full).unwrap();
        let stored = latest_quotes(&conn, &["f".to_string()]).unwrap();
        let back: Vec<Option<QuoteTime>> = stored.iter().map(|s| s.quote.time).collect();
        assert_eq!(back, times.map(Some));
    }

    #[test]
    fn event_retention_deletes_only_old_raw_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = crate::store::open(&path).unwrap();
        let facts = fixture_facts(&mut model());
        write_batch(&mut conn, &facts, RawEvents::Full).unwrap();
        let received = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        // Nothing is older than the receive time: nothing goes.
        assert_eq!(crate::store::writer::prune_events(&conn, received).unwrap(), 0);
        // Everything is: every raw event goes, the derived tables stay.
        let later = received + chrono::TimeDelta::days(31);
        assert_eq!(crate::store::writer::prune_events(&conn, later).unwrap(), 27);
        let c = counts(&conn).unwrap();
        assert_eq!((c.events, c.strike_offs), (0, 11));
        assert!(c.companies > 0);
        assert_eq!(cursor(&conn, "companies").unwrap(), Some(82417342));
    }

    #[test]
    fn fields_only_storage_keeps_what_matters_in_a_fraction_of_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        let facts = fixture_facts(&mut model());
        assert_eq!(write_batch(&mut conn, &facts, RawEvents::Fields).unwrap(), 27);
        let (raw, bytes): (String, i64) = conn
            .query_row(
                "SELECT raw, length(raw) FROM events WHERE resource_id = '14829301' ORDER BY timepoint",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(v["company_status_detail"], "active-proposal-to-strike-off");
        assert_eq!(v["timepoint"], 82417310);
        assert!(bytes < 400, "{bytes} bytes");
        // Everything derived is the same as with full storage.
        assert_eq!(counts(&conn).unwrap().strike_offs, 11);
    }

    #[test]
    fn since_filters_by_publication_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = crate::store::open(&path).unwrap();
        write_batch(&mut conn, &fixture_facts(&mut model()), RawEvents::Full).unwrap();
        let all = strike_offs(&conn, None, None).unwrap();
        let cut = all[5].published_at.unwrap();
        let recent = strike_offs(&conn, Some(cut), None).unwrap();
        assert!(!recent.is_empty() && recent.len() < all.len());
        assert!(recent.iter().all(|c| c.published_at.unwrap() >= cut));
    }

    #[test]
    fn the_newest_strike_offs_are_read_from_the_index_not_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("plan.db")).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {STRIKE_OFFS}"))
            .unwrap()
            .query_map(params![None::<String>, 2000], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(plan.iter().any(|step| step.contains("strike_offs_by_timepoint")), "{plan:?}");
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "sorts the table: {plan:?}");
    }
}
