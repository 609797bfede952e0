//! What the detail views show: everything stored about one company, and one
//! symbol's stored price history.
//!
//! Both run on the UI thread when the user presses Enter (on a read-only
//! connection, [`super::open_read_only`]), so both read a bounded number of
//! rows through existing indexes, whatever the size of the database:
//! - a company's events at the timepoints the store already keeps for it
//!   (its newest event in `companies`, each strike-off change in
//!   `strike_offs`), each one index seek, newest first, at most
//!   [`MAX_EVENTS`]. An index of the events by company would find every
//!   event, but it made the writer insert into a B-tree at a random place
//!   for every event: catch-up fell from 43,000–55,000 to 31,000–36,000
//!   events/s with 40 % more CPU (`feedtop bench --scenario catch-up
//!   --events 300000`, three alternated runs each), for a page opened by hand;
//! - a symbol's quotes through `quote_history_by_time` and
//!   `quote_history_by_symbol`, thinned by index seeks so that only the
//!   points drawn are read.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::{parse_ts, ts, StoreError};
use crate::model::StrikeOffChange;

/// Stored events read for one company at most: a company with thousands of
/// changes must not stall the screen.
pub const MAX_EVENTS: usize = 500;
/// Strike-off changes read for one company at most.
pub const MAX_STRIKE_OFFS: usize = 100;

/// Everything stored about one company.
#[derive(Debug, Clone, PartialEq)]
pub struct CompanyDetail {
    pub number: String,
    /// The newest name known (the company's row, else its newest event, else
    /// its newest strike-off change).
    pub name: Option<String>,
    pub status: Option<String>,
    pub status_detail: Option<String>,
    /// The profile from the newest stored event that has one. `None` when
    /// no stored event has one: none is stored (older than the event
    /// retention), or the events were stored as fields only.
    pub profile: Option<Profile>,
    /// The company's state at each change the store recorded for it (every
    /// strike-off change, and its newest event), newest first; equal states
    /// in a row are one entry.
    pub history: Vec<StatusEntry>,
    /// Stored events read for the history (at most [`MAX_EVENTS`]).
    pub events_read: usize,
    /// Older events exist that were not read.
    pub older_events: bool,
    /// Strike-off changes, newest first (at most [`MAX_STRIKE_OFFS`]).
    pub strike_offs: Vec<StrikeOffChange>,
}

/// A company's profile fields, as of one stored event. Dates are the
/// register's `YYYY-MM-DD` text, kept as sent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    /// The event it came from.
    pub timepoint: i64,
    pub at: DateTime<Utc>,
    pub company_type: Option<String>,
    pub jurisdiction: Option<String>,
    pub date_of_creation: Option<String>,
    pub date_of_cessation: Option<String>,
    /// The registered office, one display line each, in postal order.
    pub address: Vec<String>,
    pub sic_codes: Vec<String>,
    pub accounts: Due,
    pub confirmation_statement: Due,
}

/// A filing's next due date and whether it is overdue.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Due {
    pub next_due: Option<String>,
    pub overdue: Option<bool>,
}

/// One state of a company's status history.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusEntry {
    /// When the first event in this state was published (received, where
    /// the event had no publication time).
    pub at: DateTime<Utc>,
    pub timepoint: i64,
    /// `None` when the event did not say (a `deleted` event without data).
    pub status: Option<String>,
    pub detail: Option<String>,
    pub deleted: bool,
    /// Events read in this state.
    pub events: usize,
}

fn sqlite_error(conn: &Connection) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::from_sqlite(Path::new(conn.path().unwrap_or("")), e)
}

/// The company's events at the timepoints `companies` and `strike_offs`
/// hold for it: each a seek of the events' unique (timepoint, kind, id)
/// index, and the timepoints found through those tables' own keys.
const COMPANY_EVENTS: &str = "
    SELECT timepoint, event_type, published_at, received_at, raw
      FROM events
     WHERE timepoint IN (
               SELECT timepoint FROM companies WHERE company_number = ?1
               UNION
               SELECT timepoint FROM (SELECT timepoint FROM strike_offs WHERE company_number = ?1
                                       ORDER BY timepoint DESC LIMIT ?2))
       AND resource_kind = 'company-profile' AND resource_id = ?1
     ORDER BY timepoint DESC
     LIMIT ?2";

/// Uses `strike_offs`' unique (company_number, timepoint) index.
const COMPANY_STRIKE_OFFS: &str = "
    SELECT change, company_number, company_name, from_status, from_detail, to_status, to_detail,
           published_at, timepoint, received_at
      FROM strike_offs
     WHERE company_number = ?1
     ORDER BY timepoint DESC
     LIMIT ?2";

/// Everything stored about company `number`; `None` when nothing is.
pub fn company_detail(conn: &Connection, number: &str) -> Result<Option<CompanyDetail>, StoreError> {
    let err = sqlite_error(conn);
    let row = conn
        .query_row(
            "SELECT company_name, company_status, company_status_detail FROM companies WHERE company_number = ?1",
            [number],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?)),
        )
        .optional()
        .map_err(&err)?;

    let mut stmt = conn.prepare_cached(COMPANY_EVENTS).map_err(&err)?;
    // One more than is used, to know whether older ones exist.
    let events = stmt
        .query_map(params![number, (MAX_EVENTS + 1) as i64], |r| {
            Ok(StoredEvent {
                timepoint: r.get(0)?,
                event_type: r.get(1)?,
                published_at: r.get(2)?,
                received_at: r.get(3)?,
                raw: r.get(4)?,
            })
        })
        .map_err(&err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(&err)?;
    let older_events = events.len() > MAX_EVENTS;
    let events = &events[..events.len().min(MAX_EVENTS)];
    let strike_offs = company_strike_offs(conn, number)?;
    if row.is_none() && events.is_empty() && strike_offs.is_empty() {
        return Ok(None);
    }

    // Each raw event parsed once for its status, without building the rest
    // (500 whole profiles took most of the time); one that does not parse
    // still counts in the history (its kind and time are columns), without
    // a status. Only the newest event with a profile is parsed whole.
    let parsed: Vec<(&StoredEvent, Option<Stored>)> =
        events.iter().map(|e| (e, serde_json::from_str::<Stored>(&e.raw).ok())).collect();
    let profile = parsed
        .iter()
        .find(|(_, s)| s.as_ref().is_some_and(|s| s.data.is_some()))
        .and_then(|(e, _)| profile(e, &serde_json::from_str::<Value>(&e.raw).ok()?));
    let newest = parsed.first().and_then(|(_, s)| s.as_ref()).map(Stored::fields);

    let (name, status, status_detail) = match row {
        Some((name, status, detail)) => (Some(name), Some(status), detail),
        None => {
            let (name, status, detail) = newest.unwrap_or_default();
            let name = name.or_else(|| strike_offs.first().map(|c| c.company_name.clone()));
            (name, status, detail)
        }
    };
    Ok(Some(CompanyDetail {
        number: number.to_string(),
        name,
        status,
        status_detail,
        profile,
        history: history(&parsed),
        events_read: events.len(),
        older_events,
        strike_offs,
    }))
}

struct StoredEvent {
    timepoint: i64,
    event_type: String,
    published_at: Option<String>,
    received_at: String,
    raw: String,
}

impl StoredEvent {
    fn at(&self) -> DateTime<Utc> {
        self.published_at.as_deref().and_then(parse_ts).or_else(|| parse_ts(&self.received_at)).unwrap_or_default()
    }
}

/// The company's fields of a stored event: under `data` in a line stored
/// whole, at the top level when only the fields were stored
/// (`[storage] raw_events = "fields"`). Everything else in the line is
/// skipped unread.
#[derive(serde::Deserialize)]
struct Stored {
    data: Option<Fields>,
    company_name: Option<String>,
    company_status: Option<String>,
    company_status_detail: Option<String>,
}

#[derive(serde::Deserialize)]
struct Fields {
    company_name: Option<String>,
    company_status: Option<String>,
    company_status_detail: Option<String>,
}

impl Stored {
    /// Name, status and detail.
    fn fields(&self) -> (Option<String>, Option<String>, Option<String>) {
        match &self.data {
            Some(d) => (d.company_name.clone(), d.company_status.clone(), d.company_status_detail.clone()),
            None => (self.company_name.clone(), self.company_status.clone(), self.company_status_detail.clone()),
        }
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Oldest first through the runs of equal states, then newest first.
fn history(parsed: &[(&StoredEvent, Option<Stored>)]) -> Vec<StatusEntry> {
    let mut out: Vec<StatusEntry> = Vec::new();
    for (e, stored) in parsed.iter().rev() {
        let (_, status, detail) = stored.as_ref().map(Stored::fields).unwrap_or_default();
        let deleted = e.event_type == "deleted";
        if let Some(last) = out.last_mut() {
            if (&last.status, &last.detail, last.deleted) == (&status, &detail, deleted) {
                last.events += 1;
                continue;
            }
        }
        out.push(StatusEntry { at: e.at(), timepoint: e.timepoint, status, detail, deleted, events: 1 });
    }
    out.reverse();
    out
}

/// The profile of a stored event, when it was stored whole.
fn profile(e: &StoredEvent, v: &Value) -> Option<Profile> {
    let data = v.get("data").filter(|d| d.is_object())?;
    let address = data.get("registered_office_address").map(address_lines).unwrap_or_default();
    let sic_codes = data
        .get("sic_codes")
        .and_then(Value::as_array)
        .map(|codes| codes.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let due = |key: &str| {
        let d = data.get(key);
        Due {
            // `next_due` is the profile's summary; `next_accounts.due_on` says
            // the same for accounts where a profile lacks the summary.
            next_due: d
                .and_then(|d| text(d, "next_due").or_else(|| d.get("next_accounts").and_then(|n| text(n, "due_on")))),
            overdue: d.and_then(|d| d.get("overdue")).and_then(Value::as_bool),
        }
    };
    Some(Profile {
        timepoint: e.timepoint,
        at: e.at(),
        company_type: text(data, "type"),
        jurisdiction: text(data, "jurisdiction"),
        date_of_creation: text(data, "date_of_creation"),
        date_of_cessation: text(data, "date_of_cessation"),
        address,
        sic_codes,
        accounts: due("accounts"),
        confirmation_statement: due("confirmation_statement"),
    })
}

/// The registered office as it is written on an envelope: `care of`, PO box,
/// premises with the first line, then one line for each of the rest.
fn address_lines(a: &Value) -> Vec<String> {
    let field = |k: &str| text(a, k).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let join = |parts: &[Option<String>]| {
        let parts: Vec<&str> = parts.iter().flatten().map(String::as_str).collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    };
    [
        field("care_of").map(|c| format!("c/o {c}")),
        field("po_box").map(|p| format!("PO Box {p}")),
        join(&[field("premises"), field("address_line_1")]),
        field("address_line_2"),
        join(&[field("locality"), field("region")]),
        field("postal_code"),
        field("country"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn company_strike_offs(conn: &Connection, number: &str) -> Result<Vec<StrikeOffChange>, StoreError> {
    let err = sqlite_error(conn);
    let mut stmt = conn.prepare_cached(COMPANY_STRIKE_OFFS).map_err(&err)?;
    let rows = stmt.query_map(params![number, MAX_STRIKE_OFFS as i64], super::queries::strike_off_row).map_err(&err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(err)
}

/// The first quote received at or after a time, found through
/// `quote_history_by_time`. Rows are appended as quotes arrive, so every
/// later row has a larger id: the history since then is an id range of
/// `quote_history_by_symbol`.
const FIRST_ID_SINCE: &str = "SELECT id FROM quote_history WHERE received_at >= ?1 ORDER BY received_at, id LIMIT 1";

/// The oldest `?4` rows of the range: all of them when there are fewer.
const OLDEST: &str = "
    SELECT id, received_at, price FROM quote_history
     WHERE feed = ?1 AND symbol = ?2 AND id >= ?3
     ORDER BY id LIMIT ?4";

const NEWEST: &str = "
    SELECT id, received_at, price FROM quote_history
     WHERE feed = ?1 AND symbol = ?2 AND id >= ?3
     ORDER BY id DESC LIMIT 1";

/// The symbol's first row at or after time `?4`, and after id `?3`: two
/// index seeks, whatever the number of rows.
const FIRST_AT: &str = "
    SELECT id, received_at, price FROM quote_history
     WHERE feed = ?1 AND symbol = ?2
       AND id >= max(?3, COALESCE((SELECT id FROM quote_history WHERE received_at >= ?4
                                    ORDER BY received_at, id LIMIT 1), ?3))
     ORDER BY id LIMIT 1";

type Point = (i64, String, f64);

/// The prices of `symbol` on `feed` received since `since`, oldest first,
/// with the time each was received: every row when there are at most
/// `max_points`, else at most `max_points` rows evenly spaced in time (the
/// first row at or after each of `max_points` instants from the oldest row
/// to the newest, both of them included). Where the feed was quiet (a
/// closed market) one row answers several instants, so there are fewer.
///
/// The cost does not grow with the history: thinning a week of 100,000
/// quotes is two index seeks a point (3.8 ms for 200 points in a debug
/// build, `measure_on_a_big_database`), where numbering the rows with a
/// window function took 0.42 s in an optimised SQLite.
pub fn price_history(
    conn: &Connection,
    feed: &str,
    symbol: &str,
    since: DateTime<Utc>,
    max_points: usize,
) -> Result<Vec<(DateTime<Utc>, f64)>, StoreError> {
    let err = sqlite_error(conn);
    if max_points == 0 {
        return Ok(Vec::new());
    }
    let Some(first) = conn.query_row(FIRST_ID_SINCE, [ts(since)], |r| r.get::<_, i64>(0)).optional().map_err(&err)?
    else {
        return Ok(Vec::new());
    };
    let wanted = max_points as i64;
    // One more than wanted says whether there are more.
    let oldest = points(conn, OLDEST, params![feed, symbol, first, wanted + 1]).map_err(&err)?;
    let thinned = if oldest.len() <= max_points {
        oldest
    } else {
        let newest = points(conn, NEWEST, params![feed, symbol, first]).map_err(&err)?;
        match (oldest.first(), newest.into_iter().next()) {
            (_, Some(last)) if max_points == 1 => vec![last],
            (Some(start), Some(last)) => thin(conn, feed, symbol, start.clone(), last, max_points).map_err(&err)?,
            _ => Vec::new(),
        }
    };
    // A time that does not parse (only in a damaged row) is left out rather
    // than drawn at 1970.
    Ok(thinned.into_iter().filter_map(|(_, t, p)| parse_ts(&t).map(|t| (t, p))).collect())
}

/// `max_points` ≥ 2 rows from `start` to `last`, evenly spaced in time.
fn thin(
    conn: &Connection,
    feed: &str,
    symbol: &str,
    start: Point,
    last: Point,
    max_points: usize,
) -> rusqlite::Result<Vec<Point>> {
    let (Some(t0), Some(t1)) = (parse_ts(&start.1), parse_ts(&last.1)) else {
        return Ok(vec![start, last]);
    };
    let span_ms = (t1 - t0).num_milliseconds().max(0);
    let from = start.0;
    let mut out = vec![start];
    let mut stmt = conn.prepare_cached(FIRST_AT)?;
    for k in 1..max_points as i64 - 1 {
        let at = t0 + chrono::TimeDelta::milliseconds(span_ms * k / (max_points as i64 - 1));
        let next = stmt.query_row(params![feed, symbol, from, ts(at)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
        let Some(p) = next.optional()? else { break };
        if p.0 >= last.0 {
            break;
        }
        // Instants in a quiet stretch all find the row after it: kept once.
        if out.last().is_some_and(|prev| p.0 > prev.0) {
            out.push(p);
        }
    }
    out.push(last);
    Ok(out)
}

/// The (id, received_at, price) rows of one of the queries above.
fn points(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<Vec<Point>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChangeKind;
    use crate::model::{Fact, Model};
    use crate::store::writer::{write_batch, RawEvents};
    use chrono::{TimeDelta, TimeZone};
    use feedtop_proto::ch::parse_event;
    use feedtop_proto::{FeedInfo, FeedKind, FeedMsg, FeedMsgKind, Quote, ResumePoint};
    use std::time::Duration;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap()
    }

    /// The fixture through the model (which finds the strike-off changes)
    /// and the real writer, stored as `raw`.
    fn fixture_db(raw: RawEvents) -> (tempfile::TempDir, Connection) {
        let info = FeedInfo { name: "companies".into(), kind: FeedKind::CompaniesHouse };
        let mut model = Model::new(vec![info], Duration::from_secs(300), t0());
        let mut facts = Vec::new();
        for line in include_str!("../../tests/fixtures/ch-companies-sample.ndjson").lines() {
            if let Ok(ev) = parse_event(line.as_bytes().to_vec()) {
                let resume = ResumePoint::Timepoint(ev.timepoint);
                let kind = FeedMsgKind::Resumable { resume, inner: Box::new(FeedMsgKind::Event(Box::new(ev))) };
                model.apply(FeedMsg { feed: "companies".into(), at: t0(), kind }, &mut facts);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        write_batch(&mut conn, &facts, raw).unwrap();
        (dir, conn)
    }

    /// Timepoint, status, detail, deleted, events: one history entry.
    type State<'a> = (i64, Option<&'a str>, Option<&'a str>, bool, usize);

    fn states(d: &CompanyDetail) -> Vec<State<'_>> {
        d.history.iter().map(|h| (h.timepoint, h.status.as_deref(), h.detail.as_deref(), h.deleted, h.events)).collect()
    }

    #[test]
    fn a_struck_off_company_has_its_history_newest_first_and_its_changes() {
        let (_dir, conn) = fixture_db(RawEvents::Full);
        let d = company_detail(&conn, "14829301").unwrap().expect("stored");
        assert_eq!(d.name.as_deref(), Some("BRIGHTWELL JOINERY LTD"));
        assert_eq!((d.status.as_deref(), d.status_detail.as_deref()), (Some("dissolved"), None));
        assert_eq!(
            states(&d),
            [
                (82417331, Some("dissolved"), None, false, 1),
                (82417310, Some("active"), Some("active-proposal-to-strike-off"), false, 1),
            ]
        );
        assert_eq!(d.history[1].at, Utc.with_ymd_and_hms(2025, 6, 10, 8, 5, 12).unwrap(), "published, not received");
        let kinds: Vec<_> = d.strike_offs.iter().map(|c| (c.kind, c.timepoint)).collect();
        assert_eq!(kinds, [(ChangeKind::StruckOff, 82417331), (ChangeKind::Entered, 82417310)]);
        let p = d.profile.expect("stored whole");
        assert_eq!(p.timepoint, 82417331);
        assert_eq!(p.date_of_cessation.as_deref(), Some("2025-06-10"));
        assert_eq!(p.date_of_creation.as_deref(), Some("2023-04-19"));
        assert_eq!(p.company_type.as_deref(), Some("ltd"));
        assert_eq!(p.address, ["Office 2, 14 Station Road", "Swindon", "SN1 1DQ", "England"]);
        assert_eq!(p.sic_codes, ["16230"]);
        assert_eq!(p.accounts, Due { next_due: Some("2025-01-19".into()), overdue: Some(true) });
        assert_eq!(p.confirmation_statement, Due { next_due: Some("2025-05-02".into()), overdue: Some(true) });
        assert_eq!((d.events_read, d.older_events), (2, false));
    }

    /// The filing dates come from the newest event: the company filed its
    /// accounts between its two events.
    #[test]
    fn the_profile_is_the_newest_events() {
        let (_dir, conn) = fixture_db(RawEvents::Full);
        let d = company_detail(&conn, "13390452").unwrap().unwrap();
        let p = d.profile.clone().unwrap();
        assert_eq!(p.timepoint, 82417335);
        assert_eq!(p.accounts, Due { next_due: Some("2027-02-28".into()), overdue: Some(false) });
        assert_eq!(
            p.address,
            ["Unit 4, Northgate House", "Kirkgate", "Wakefield, West Yorkshire", "WF1 3PQ", "England"]
        );
        assert_eq!(states(&d), [(82417335, Some("active"), None, false, 1)]);
    }

    /// Entered, the same again (a duplicate on the stream: no change, so
    /// not read), withdrawn.
    #[test]
    fn a_withdrawn_company_has_both_states() {
        let (_dir, conn) = fixture_db(RawEvents::Full);
        let d = company_detail(&conn, "SC612947").unwrap().unwrap();
        assert_eq!(
            states(&d),
            [
                (82417325, Some("active"), None, false, 1),
                (82417311, Some("active"), Some("active-proposal-to-strike-off"), false, 1),
            ]
        );
    }

    /// Equal states in a row are one entry, dated by the first.
    #[test]
    fn equal_states_in_a_row_are_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        busy_company(&mut conn, 3);
        // The newest event again, later, with nothing changed.
        conn.execute("UPDATE companies SET timepoint = 10 WHERE company_number = 'BUSY0001'", []).unwrap();
        conn.execute(
            "INSERT INTO events (feed, resource_kind, resource_id, timepoint, event_type, received_at, raw)
             SELECT feed, resource_kind, resource_id, 10, event_type, received_at, raw FROM events WHERE timepoint = 4",
            [],
        )
        .unwrap();
        let d = company_detail(&conn, "BUSY0001").unwrap().unwrap();
        let s = states(&d);
        assert_eq!((s[0].0, s[0].2, s[0].4), (4, Some("active-proposal-to-strike-off"), 2), "{s:?}");
        assert_eq!(s.len(), 3, "{s:?}");
    }

    /// A deleted company without strike-off changes has nothing left that
    /// names its events (finding them would mean reading the whole table).
    #[test]
    fn a_deleted_company_without_changes_is_not_found() {
        let (_dir, conn) = fixture_db(RawEvents::Full);
        assert_eq!(company_detail(&conn, "13705118").unwrap(), None);
    }

    /// A stored line that is not JSON, or has a status of the wrong type,
    /// is a history entry without a status, not an error.
    #[test]
    fn a_damaged_stored_event_has_no_status() {
        let (_dir, conn) = fixture_db(RawEvents::Full);
        conn.execute(
            "UPDATE events SET raw = '{not json', published_at = NULL, received_at = 'garbage'
              WHERE timepoint = 82417331",
            [],
        )
        .unwrap();
        let d = company_detail(&conn, "14829301").unwrap().unwrap();
        assert_eq!((d.history[0].status.as_deref(), d.history[0].timepoint), (None, 82417331));
        assert_eq!(d.history[0].at, DateTime::<Utc>::default(), "a time that does not parse");
        assert_eq!(d.profile.unwrap().timepoint, 82417310, "from the newest event that has one");
        conn.execute(r#"UPDATE events SET raw = '{"data":{"company_status":5}}' WHERE timepoint = 82417331"#, [])
            .unwrap();
        let d = company_detail(&conn, "14829301").unwrap().unwrap();
        assert_eq!(d.history[0].status, None);
    }

    #[test]
    fn an_unknown_company_is_none() {
        let (_dir, conn) = fixture_db(RawEvents::Full);
        assert_eq!(company_detail(&conn, "00000000").unwrap(), None);
        assert_eq!(company_detail(&conn, "").unwrap(), None);
    }

    /// With `raw_events = "fields"` there is no profile, but the statuses
    /// and names are there.
    #[test]
    fn fields_only_storage_still_has_the_history() {
        let (_dir, conn) = fixture_db(RawEvents::Fields);
        let d = company_detail(&conn, "14829301").unwrap().unwrap();
        assert_eq!(d.profile, None);
        assert_eq!(states(&d).len(), 2);
        assert_eq!(d.history[1].detail.as_deref(), Some("active-proposal-to-strike-off"));
    }

    /// `n` events for one company, alternating in and out of the proposal
    /// (a strike-off change each), with other companies' events between
    /// them, through the model and the writer.
    fn busy_company(conn: &mut Connection, n: i64) {
        let info = FeedInfo { name: "companies".into(), kind: FeedKind::CompaniesHouse };
        let mut model = Model::new(vec![info], Duration::from_secs(300), t0());
        let mut facts = Vec::new();
        let events = (0..n)
            .flat_map(|i| {
                let detail = if i % 2 == 0 { r#","company_status_detail":"active-proposal-to-strike-off""# } else { "" };
                let line = |tp: i64, number: &str| {
                    format!(
                        r#"{{"resource_kind":"company-profile","resource_id":"{number}","data":{{"company_name":"BUSY LTD","company_number":"{number}","company_status":"active"{detail}}},"event":{{"timepoint":{tp},"published_at":"2025-06-10T08:00:00","type":"changed"}}}}"#
                    )
                };
                [line(2 * i, "BUSY0001"), line(2 * i + 1, &format!("OTHER{i:03}"))]
            })
            .map(|line| parse_event(line.into_bytes()).unwrap());
        for ev in events {
            let kind = FeedMsgKind::Event(Box::new(ev));
            model.apply(FeedMsg { feed: "companies".into(), at: t0(), kind }, &mut facts);
        }
        write_batch(conn, &facts, RawEvents::Full).unwrap();
    }

    #[test]
    fn a_company_with_many_events_reads_only_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        busy_company(&mut conn, 600);
        let d = company_detail(&conn, "BUSY0001").unwrap().unwrap();
        assert_eq!(d.strike_offs.len(), MAX_STRIKE_OFFS);
        assert_eq!((d.events_read, d.older_events), (MAX_EVENTS, true));
        assert_eq!(d.history.len(), MAX_EVENTS);
        assert_eq!(d.history[0].timepoint, 2 * 599, "the newest");
        assert_eq!(d.history.last().unwrap().timepoint, 2 * 100, "the 500th newest");
        assert_eq!(d.history[0].detail, None);
        assert_eq!(d.history[1].detail.as_deref(), Some("active-proposal-to-strike-off"));
    }

    fn plan(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Vec<String> {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(params, |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// Opening a company costs the same in a database of any size: its
    /// events are found through an index and read newest first without a
    /// sort, and so are its strike-off changes.
    #[test]
    fn a_companys_rows_are_found_through_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("plan.db")).unwrap();
        let events = plan(&conn, COMPANY_EVENTS, params!["X", 10]);
        assert!(events.iter().any(|s| s.contains("SEARCH events USING INDEX sqlite_autoindex_events_1")), "{events:?}");
        let changes = plan(&conn, COMPANY_STRIKE_OFFS, params!["X", 10]);
        assert!(changes.iter().any(|s| s.contains("USING INDEX")), "{changes:?}");
        // The few events found are sorted; nothing is scanned.
        for step in events.iter().chain(&changes) {
            assert!(
                !step.starts_with("SCAN events") && !step.starts_with("SCAN strike_offs"),
                "{events:?} {changes:?}"
            );
        }
        assert!(!changes.iter().any(|s| s.contains("TEMP B-TREE")), "{changes:?}");
    }

    /// `n` quotes of `symbol`, one a second from `from` s after t0, the
    /// price equal to the second, each followed by another symbol's.
    fn quotes(conn: &mut Connection, symbol: &str, from: i64, n: i64) {
        let facts: Vec<Fact> = (from..from + n)
            .flat_map(|s| {
                let at = t0() + TimeDelta::seconds(s);
                [
                    Fact::Quote { feed: "wig80".into(), quote: Quote::new(symbol, s as f64), received_at: at },
                    Fact::Quote { feed: "wig80".into(), quote: Quote::new("NOISE", -1.0), received_at: at },
                ]
            })
            .collect();
        write_batch(conn, &facts, RawEvents::Full).unwrap();
    }

    fn prices(points: &[(DateTime<Utc>, f64)]) -> Vec<f64> {
        points.iter().map(|p| p.1).collect()
    }

    #[test]
    fn price_history_is_every_point_when_they_fit() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        quotes(&mut conn, "PKN", 0, 10);
        let all = price_history(&conn, "wig80", "PKN", t0(), 100).unwrap();
        assert_eq!(prices(&all), (0..10).map(f64::from).collect::<Vec<_>>());
        assert_eq!(all[3].0, t0() + TimeDelta::seconds(3));
        // Since a time: the points before it are left out.
        let recent = price_history(&conn, "wig80", "PKN", t0() + TimeDelta::seconds(7), 100).unwrap();
        assert_eq!(prices(&recent), [7.0, 8.0, 9.0]);
        assert!(price_history(&conn, "wig80", "PKN", t0() + TimeDelta::seconds(60), 100).unwrap().is_empty());
        assert!(price_history(&conn, "wig80", "CDR", t0(), 100).unwrap().is_empty(), "another symbol");
        assert!(price_history(&conn, "carbon", "PKN", t0(), 100).unwrap().is_empty(), "another feed");
        assert!(price_history(&conn, "wig80", "PKN", t0(), 0).unwrap().is_empty());
    }

    #[test]
    fn price_history_is_thinned_evenly_keeping_the_oldest_and_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        quotes(&mut conn, "PKN", 0, 1001);
        let thinned = price_history(&conn, "wig80", "PKN", t0(), 11).unwrap();
        assert_eq!(prices(&thinned), (0..=10).map(|i| f64::from(i * 100)).collect::<Vec<_>>());
        // Not a divisor: still exactly as many points, the ends included,
        // steps differing by one row at most.
        let thinned = prices(&price_history(&conn, "wig80", "PKN", t0(), 7).unwrap());
        assert_eq!(thinned.len(), 7);
        assert_eq!((thinned[0], thinned[6]), (0.0, 1000.0));
        let steps: Vec<f64> = thinned.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(steps.iter().all(|&s| (166.0..=167.0).contains(&s)), "{steps:?}");
        assert_eq!(prices(&price_history(&conn, "wig80", "PKN", t0(), 1).unwrap()), [1000.0], "the newest");
        assert_eq!(price_history(&conn, "wig80", "PKN", t0(), 1001).unwrap().len(), 1001);
    }

    /// Thinned in time, not in rows: a market closed for hours is not
    /// filled with the rows just after it opened again.
    #[test]
    fn price_history_is_thinned_in_time_across_a_quiet_stretch() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        quotes(&mut conn, "PKN", 0, 100);
        quotes(&mut conn, "PKN", 10_000, 100);
        let thinned = prices(&price_history(&conn, "wig80", "PKN", t0(), 11).unwrap());
        assert_eq!(thinned, [0.0, 10_000.0, 10_099.0]);
    }

    /// Each point of a thinned history is two index seeks, whatever the
    /// size of the table: no scan, no sort.
    #[test]
    fn price_history_reads_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("plan.db")).unwrap();
        let first = plan(&conn, FIRST_ID_SINCE, ["x"]);
        assert!(first.iter().any(|s| s.contains("quote_history_by_time")), "{first:?}");
        let at = plan(&conn, FIRST_AT, params!["f", "S", 0, "x"]);
        assert!(at.iter().any(|s| s.contains("quote_history_by_time")), "{at:?}");
        assert!(at.iter().any(|s| s.contains("quote_history_by_symbol")), "{at:?}");
        let ends = [plan(&conn, OLDEST, params!["f", "S", 0, 10]), plan(&conn, NEWEST, params!["f", "S", 0])];
        for step in ends.iter().flatten().chain(&first).chain(&at) {
            assert!(!step.contains("TEMP B-TREE") && !step.starts_with("SCAN"), "{step}: {at:?} {ends:?}");
        }
    }

    /// Not a test: the figures for PERFORMANCE notes. Builds (once) a
    /// database of 300,000 company events, one company with 10,000 of them
    /// (each a strike-off change), and 1,000,000 quotes over a week, through
    /// the real writer, then times opening the busy company and a week's chart:
    /// `FEEDTOP_MEASURE_DB=/tmp/big.db cargo test --lib measure_on_a_big_database -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, run by hand"]
    fn measure_on_a_big_database() {
        let Ok(path) = std::env::var("FEEDTOP_MEASURE_DB") else { return };
        let path = std::path::PathBuf::from(path);
        let mut conn = crate::store::open(&path).unwrap();
        let now = t0() + TimeDelta::days(7);
        if crate::store::queries::counts(&conn).unwrap().events == 0 {
            let fixture = include_str!("../../tests/fixtures/ch-companies-sample.ndjson").lines().next().unwrap();
            let template = parse_event(fixture.as_bytes().to_vec()).unwrap();
            let mut tp = 0;
            for batch in 0..150 {
                let facts: Vec<Fact> = (0..2_000)
                    .flat_map(|i| {
                        tp += 1;
                        // Every 30th event is the busy company's: 10,000 in all.
                        let number = if tp % 30 == 0 {
                            "BUSY0001".to_string()
                        } else {
                            format!("{:08}", (batch * 2_000 + i) % 30_000)
                        };
                        let mut event = template.clone();
                        event.timepoint = tp;
                        event.resource_id = number.clone();
                        if let Some(c) = event.company.as_mut() {
                            c.number = number.clone();
                        }
                        let change = (number == "BUSY0001").then(|| {
                            Fact::StrikeOff(StrikeOffChange {
                                kind: ChangeKind::Entered,
                                company_number: number,
                                company_name: "BUSY LTD".into(),
                                from_status: None,
                                from_detail: None,
                                to_status: "active".into(),
                                to_detail: None,
                                published_at: None,
                                timepoint: tp,
                                received_at: t0(),
                            })
                        });
                        [
                            Some(Fact::Event { feed: "companies".into(), event: Box::new(event), received_at: t0() }),
                            change,
                        ]
                        .into_iter()
                        .flatten()
                    })
                    .collect();
                write_batch(&mut conn, &facts, RawEvents::Full).unwrap();
            }
            for batch in 0..500i64 {
                let facts: Vec<Fact> = (0..2_000i64)
                    .map(|i| {
                        let n = batch * 2_000 + i;
                        // 10 symbols, a quote every 0.6 s: a week in all.
                        let at = t0() + TimeDelta::milliseconds(n * 605);
                        let quote = Quote::new(format!("S{}", n % 10), 100.0 + (n % 1000) as f64 / 10.0);
                        Fact::Quote { feed: "wig80".into(), quote, received_at: at }
                    })
                    .collect();
                write_batch(&mut conn, &facts, RawEvents::Full).unwrap();
            }
        }
        let time = |what: &str, f: &mut dyn FnMut() -> usize| {
            let start = std::time::Instant::now();
            let mut n = 0;
            for _ in 0..5 {
                n = f();
            }
            println!("{what}: {:.1} ms ({n} rows/points)", start.elapsed().as_secs_f64() * 1000.0 / 5.0);
        };
        let ro = crate::store::open_read_only(&path).unwrap();
        time("company_detail(busy, 10,000 events)", &mut || {
            company_detail(&ro, "BUSY0001").unwrap().unwrap().events_read
        });
        time("company_detail(ordinary, 10 events)", &mut || {
            company_detail(&ro, "00000042").unwrap().unwrap().events_read
        });
        time("price_history(a week, 100,000 rows -> 200)", &mut || {
            price_history(&ro, "wig80", "S3", now - TimeDelta::days(8), 200).unwrap().len()
        });
        time("price_history(last hour -> 200)", &mut || {
            price_history(&ro, "wig80", "S3", now - TimeDelta::hours(1), 200).unwrap().len()
        });
    }
}
