//! The enrichment tables (issue 13): the persistent queue of REST calls, the
//! profiles and officers they brought, and the queries over them.
//!
//! A company's officers, for the company detail view:
//! [`officers_of`] (`SELECT … FROM officers WHERE company_number = ?1 ORDER
//! BY position`), and whether they were fetched in full: [`officers_fetched`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::ts;
use crate::model::strike_off::{state_text, ChangeKind, PROPOSAL};

/// What a queued call fetches. Profiles go first: they confirm the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Profile,
    Officers,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Profile => "profile",
            JobKind::Officers => "officers",
        }
    }

    fn priority(self) -> i64 {
        match self {
            JobKind::Profile => 0,
            JobKind::Officers => 1,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "profile" => Some(JobKind::Profile),
            "officers" => Some(JobKind::Officers),
            _ => None,
        }
    }
}

/// One queued call (for officers: the next page of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub company_number: String,
    pub kind: JobKind,
    pub start_index: i64,
}

/// The profile fields feedtop keeps (the raw JSON is stored beside them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub found: bool,
    pub company_name: Option<String>,
    pub company_status: Option<String>,
    pub company_status_detail: Option<String>,
    pub raw: Option<String>,
}

/// One officer as stored and exported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Officer {
    pub name: String,
    pub role: Option<String>,
    pub appointed_on: Option<String>,
    pub resigned_on: Option<String>,
    pub nationality: Option<String>,
    pub occupation: Option<String>,
    pub country_of_residence: Option<String>,
    pub birth_month: Option<u32>,
    pub birth_year: Option<i32>,
    /// The correspondence address on one line.
    pub address: Option<String>,
}

/// What the strike-off list shows of a company's enrichment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompanyEnrichment {
    /// Officers fetched in full (`None`: not yet).
    pub officers: Option<u32>,
    /// Set when the REST profile contradicts the latest change.
    pub disagrees: Option<String>,
}

/// Queues a company's profile and officers; a company already queued is
/// not queued again (the unique key), so a call is never made twice for it.
pub fn enqueue(conn: &Connection, company_number: &str, at: DateTime<Utc>) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO enrich_queue (company_number, kind, priority, queued_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for kind in [JobKind::Profile, JobKind::Officers] {
        insert.execute(params![company_number, kind.as_str(), kind.priority(), ts(at)])?;
    }
    Ok(())
}

/// The next call: the highest priority, first queued first.
pub fn next_job(conn: &Connection) -> rusqlite::Result<Option<Job>> {
    conn.query_row(
        "SELECT id, company_number, kind, start_index FROM enrich_queue ORDER BY priority, id LIMIT 1",
        [],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?)),
    )
    .optional()
    .map(|row| {
        row.and_then(|(id, company_number, kind, start_index)| {
            Some(Job { id, company_number, kind: JobKind::parse(&kind)?, start_index })
        })
    })
}

pub fn queue_len(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT count(*) FROM enrich_queue", [], |r| r.get(0))
}

/// Drops a queued call without making it (cached, or refused for good).
pub fn drop_job(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM enrich_queue WHERE id = ?1", [id]).map(|_| ())
}

/// Whether `kind` was fetched for the company at or after `since` (the cache).
pub fn fetched_since(
    conn: &Connection,
    company_number: &str,
    kind: JobKind,
    since: DateTime<Utc>,
) -> rusqlite::Result<bool> {
    let sql = match kind {
        JobKind::Profile => "SELECT fetched_at FROM company_profiles WHERE company_number = ?1",
        JobKind::Officers => "SELECT fetched_at FROM officer_fetches WHERE company_number = ?1",
    };
    let at: Option<String> = conn.query_row(sql, [company_number], |r| r.get(0)).optional()?;
    Ok(at.is_some_and(|at| at >= ts(since)))
}

/// Stores a fetched profile, flags the company's latest change when the
/// profile contradicts it, and takes the call off the queue, in one
/// transaction. Returns the disagreement, if any.
pub fn save_profile(
    conn: &mut Connection,
    job: &Job,
    profile: &Profile,
    at: DateTime<Utc>,
) -> rusqlite::Result<Option<String>> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO company_profiles
           (company_number, found, company_name, company_status, company_status_detail, raw, fetched_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (company_number) DO UPDATE SET
           found = excluded.found, company_name = excluded.company_name,
           company_status = excluded.company_status, company_status_detail = excluded.company_status_detail,
           raw = excluded.raw, fetched_at = excluded.fetched_at",
        params![
            job.company_number,
            profile.found,
            profile.company_name,
            profile.company_status,
            profile.company_status_detail,
            profile.raw,
            ts(at)
        ],
    )?;
    let latest: Option<(i64, String)> = tx
        .query_row(
            "SELECT id, change FROM strike_offs WHERE company_number = ?1 ORDER BY timepoint DESC, id DESC LIMIT 1",
            [&job.company_number],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let disagrees = latest.as_ref().and_then(|(_, change)| disagreement(ChangeKind::parse(change)?, profile));
    if let Some((id, _)) = latest {
        tx.execute("UPDATE strike_offs SET profile_disagrees = ?1 WHERE id = ?2", params![disagrees, id])?;
    }
    tx.execute("DELETE FROM enrich_queue WHERE id = ?1", [job.id])?;
    tx.commit()?;
    Ok(disagrees)
}

/// How the REST profile contradicts the stream's change, if it does.
pub fn disagreement(change: ChangeKind, profile: &Profile) -> Option<String> {
    if !profile.found {
        return Some("profile: not found".into());
    }
    let status = profile.company_status.as_deref().unwrap_or("?");
    let detail = profile.company_status_detail.as_deref();
    let state = state_text(status, detail);
    let in_proposal = detail == Some(PROPOSAL);
    match change {
        ChangeKind::Entered if !in_proposal => Some(format!("profile: {state}, not in the proposal")),
        ChangeKind::Withdrawn if in_proposal => Some(format!("profile: {state}, still in the proposal")),
        ChangeKind::StruckOff if status != crate::model::strike_off::DISSOLVED => {
            Some(format!("profile: {state}, not dissolved"))
        }
        _ => None,
    }
}

/// Stores one page of officers. A first page replaces what was stored; a
/// page with more to come moves the queued call to the next page; the last
/// page records the fetch and takes the call off the queue. One transaction,
/// so a restart continues at the page after the last one stored.
pub fn save_officers_page(
    conn: &mut Connection,
    job: &Job,
    officers: &[Officer],
    next_index: Option<i64>,
    at: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    if job.start_index == 0 {
        tx.execute("DELETE FROM officers WHERE company_number = ?1", [&job.company_number])?;
    }
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO officers
               (company_number, position, name, officer_role, appointed_on, resigned_on, nationality,
                occupation, country_of_residence, birth_month, birth_year, address)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for (i, o) in officers.iter().enumerate() {
            insert.execute(params![
                job.company_number,
                job.start_index + i as i64,
                o.name,
                o.role,
                o.appointed_on,
                o.resigned_on,
                o.nationality,
                o.occupation,
                o.country_of_residence,
                o.birth_month,
                o.birth_year,
                o.address,
            ])?;
        }
    }
    match next_index {
        Some(next) => {
            tx.execute("UPDATE enrich_queue SET start_index = ?1 WHERE id = ?2", params![next, job.id])?;
        }
        None => {
            let total: i64 =
                tx.query_row("SELECT count(*) FROM officers WHERE company_number = ?1", [&job.company_number], |r| {
                    r.get(0)
                })?;
            tx.execute(
                "INSERT INTO officer_fetches (company_number, total, fetched_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (company_number) DO UPDATE SET total = excluded.total, fetched_at = excluded.fetched_at",
                params![job.company_number, total, ts(at)],
            )?;
            tx.execute("DELETE FROM enrich_queue WHERE id = ?1", [job.id])?;
        }
    }
    tx.commit()
}

/// Records a call starting at `at` and forgets those before `forget_before`.
pub fn record_call(conn: &Connection, at: DateTime<Utc>, forget_before: DateTime<Utc>) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM enrich_calls WHERE at < ?1", [ts(forget_before)])?;
    conn.execute("INSERT INTO enrich_calls (at) VALUES (?1)", [ts(at)]).map(|_| ())
}

/// Start times of the calls at or after `since`, oldest first.
pub fn calls_since(conn: &Connection, since: DateTime<Utc>) -> rusqlite::Result<Vec<DateTime<Utc>>> {
    let mut stmt = conn.prepare_cached("SELECT at FROM enrich_calls WHERE at >= ?1 ORDER BY at")?;
    let rows = stmt.query_map([ts(since)], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for at in rows {
        if let Ok(at) = DateTime::parse_from_rfc3339(&at?) {
            out.push(at.with_timezone(&Utc));
        }
    }
    Ok(out)
}

/// A queued company's last state as the stream told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedState {
    pub company_number: String,
    pub company_name: String,
    pub company_status: String,
    pub company_status_detail: Option<String>,
}

/// The stream's last state of every company in the queue (that has one).
pub fn queued_states(conn: &Connection) -> rusqlite::Result<Vec<QueuedState>> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT c.company_number, c.company_name, c.company_status, c.company_status_detail
           FROM enrich_queue q JOIN companies c ON c.company_number = q.company_number",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(QueuedState {
            company_number: r.get(0)?,
            company_name: r.get(1)?,
            company_status: r.get(2)?,
            company_status_detail: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// A company's officers in the order the API listed them.
pub fn officers_of(conn: &Connection, company_number: &str) -> rusqlite::Result<Vec<Officer>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, officer_role, appointed_on, resigned_on, nationality, occupation, country_of_residence,
                birth_month, birth_year, address
           FROM officers WHERE company_number = ?1 ORDER BY position",
    )?;
    let rows = stmt.query_map([company_number], |r| {
        Ok(Officer {
            name: r.get(0)?,
            role: r.get(1)?,
            appointed_on: r.get(2)?,
            resigned_on: r.get(3)?,
            nationality: r.get(4)?,
            occupation: r.get(5)?,
            country_of_residence: r.get(6)?,
            birth_month: r.get(7)?,
            birth_year: r.get(8)?,
            address: r.get(9)?,
        })
    })?;
    rows.collect()
}

/// When the company's officers were last fetched in full, if ever.
pub fn officers_fetched(conn: &Connection, company_number: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT fetched_at FROM officer_fetches WHERE company_number = ?1", [company_number], |r| r.get(0))
        .optional()
}

/// The enrichment of each listed company that has any (the strike-off
/// list's `officers N` and contradiction flags at start-up).
pub fn enrichment_of(conn: &Connection, numbers: &[&str]) -> rusqlite::Result<HashMap<String, CompanyEnrichment>> {
    let mut out = HashMap::new();
    let mut officers = conn.prepare_cached("SELECT total FROM officer_fetches WHERE company_number = ?1")?;
    let mut flag = conn.prepare_cached(
        "SELECT profile_disagrees FROM strike_offs WHERE company_number = ?1 ORDER BY timepoint DESC, id DESC LIMIT 1",
    )?;
    for &n in numbers {
        let count: Option<u32> = officers.query_row([n], |r| r.get(0)).optional()?;
        let disagrees: Option<String> = flag.query_row([n], |r| r.get(0)).optional()?.flatten();
        if count.is_some() || disagrees.is_some() {
            out.insert(n.to_string(), CompanyEnrichment { officers: count, disagrees });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        (dir, conn)
    }

    #[test]
    fn profiles_come_before_officers_first_queued_first_and_nothing_twice() {
        let (_dir, conn) = db();
        let t = Utc::now();
        for n in ["A0000001", "B0000002", "A0000001"] {
            enqueue(&conn, n, t).unwrap();
        }
        assert_eq!(queue_len(&conn).unwrap(), 4);
        let mut order = Vec::new();
        while let Some(job) = next_job(&conn).unwrap() {
            order.push(format!("{}:{}", job.company_number, job.kind.as_str()));
            drop_job(&conn, job.id).unwrap();
        }
        assert_eq!(order, ["A0000001:profile", "B0000002:profile", "A0000001:officers", "B0000002:officers"]);
    }

    #[test]
    fn officer_pages_move_the_queued_call_on_and_the_last_records_the_fetch() {
        let (_dir, mut conn) = db();
        let t = Utc::now();
        enqueue(&conn, "A0000001", t).unwrap();
        let profile = next_job(&conn).unwrap().unwrap();
        drop_job(&conn, profile.id).unwrap();
        let job = next_job(&conn).unwrap().unwrap();
        let o = |name: &str| Officer { name: name.into(), ..Officer::default() };
        save_officers_page(&mut conn, &job, &[o("A"), o("B")], Some(2), t).unwrap();
        let job = next_job(&conn).unwrap().unwrap();
        assert_eq!(job.start_index, 2);
        assert!(!fetched_since(&conn, "A0000001", JobKind::Officers, t).unwrap());
        save_officers_page(&mut conn, &job, &[o("C")], None, t).unwrap();
        assert_eq!(next_job(&conn).unwrap(), None);
        let names: Vec<String> = officers_of(&conn, "A0000001").unwrap().into_iter().map(|o| o.name).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert!(fetched_since(&conn, "A0000001", JobKind::Officers, t).unwrap());
        let e = enrichment_of(&conn, &["A0000001", "Z0000000"]).unwrap();
        assert_eq!(e["A0000001"].officers, Some(3));
        assert!(!e.contains_key("Z0000000"));
    }

    #[test]
    fn queued_companies_come_with_the_streams_last_state() {
        let (_dir, conn) = db();
        conn.execute(
            "INSERT INTO companies VALUES ('A0000001', 'A LTD', 'active', 'active-proposal-to-strike-off', 1, NULL, 'x')",
            [],
        )
        .unwrap();
        enqueue(&conn, "A0000001", Utc::now()).unwrap();
        enqueue(&conn, "B0000002", Utc::now()).unwrap();
        let states = queued_states(&conn).unwrap();
        assert_eq!(states.len(), 1, "once per company, and only those the stream described");
        assert_eq!(states[0].company_status_detail.as_deref(), Some(PROPOSAL));
    }

    #[test]
    fn a_profile_that_contradicts_the_change_is_named() {
        let p = |status: &str, detail: Option<&str>| Profile {
            found: true,
            company_status: Some(status.into()),
            company_status_detail: detail.map(String::from),
            ..Profile::default()
        };
        assert_eq!(disagreement(ChangeKind::Entered, &p("active", Some(PROPOSAL))), None);
        assert_eq!(
            disagreement(ChangeKind::Entered, &p("active", None)).as_deref(),
            Some("profile: active, not in the proposal")
        );
        assert!(disagreement(ChangeKind::Withdrawn, &p("active", Some(PROPOSAL))).is_some());
        assert_eq!(disagreement(ChangeKind::StruckOff, &p("dissolved", None)), None);
        assert_eq!(disagreement(ChangeKind::Entered, &Profile::default()).as_deref(), Some("profile: not found"));
    }
}
