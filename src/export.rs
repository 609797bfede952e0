//! `feedtop strike-offs`: the recorded changes as a table, JSON lines or CSV.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::cli::Format;
use crate::model::StrikeOffChange;
use crate::sanitize;
use crate::store::enrich::Officer;
use crate::store::{self, ts};

/// Each company's officers, as `--with-officers` adds them.
pub type Officers = std::collections::HashMap<String, Vec<Officer>>;

/// Reads `--since`: a duration back from `now` (`24h`, `7d`) or a date/time.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return chrono::TimeDelta::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(|| format!("--since {s} is too far back"));
    }
    if let Ok(day) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    crate::time::parse_published_at(s)
        .ok_or_else(|| format!("cannot read --since {s:?}: use a duration like 24h or 7d, or a date like 2025-06-10"))
}

#[derive(Serialize)]
struct Row<'a> {
    company_number: Cow<'a, str>,
    company_name: Cow<'a, str>,
    change: &'a str,
    from_status: Option<Cow<'a, str>>,
    from_detail: Option<Cow<'a, str>>,
    to_status: Cow<'a, str>,
    to_detail: Option<Cow<'a, str>>,
    published_at: Option<String>,
    timepoint: i64,
    /// `--with-officers` (JSON): the company's officers, as stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    officers: Option<Vec<OfficerCells<'a>>>,
}

/// One officer's cells, each text through the format's cleaner.
#[derive(Serialize)]
struct OfficerCells<'a> {
    name: Cow<'a, str>,
    role: Option<Cow<'a, str>>,
    appointed_on: Option<Cow<'a, str>>,
    resigned_on: Option<Cow<'a, str>>,
    nationality: Option<Cow<'a, str>>,
    occupation: Option<Cow<'a, str>>,
    country_of_residence: Option<Cow<'a, str>>,
    birth_month: Option<u32>,
    birth_year: Option<i32>,
    address: Option<Cow<'a, str>>,
}

impl<'a> OfficerCells<'a> {
    fn new(o: &'a Officer, text: fn(&'a str) -> Cow<'a, str>) -> Self {
        OfficerCells {
            name: text(&o.name),
            role: o.role.as_deref().map(text),
            appointed_on: o.appointed_on.as_deref().map(text),
            resigned_on: o.resigned_on.as_deref().map(text),
            nationality: o.nationality.as_deref().map(text),
            occupation: o.occupation.as_deref().map(text),
            country_of_residence: o.country_of_residence.as_deref().map(text),
            birth_month: o.birth_month,
            birth_year: o.birth_year,
            address: o.address.as_deref().map(text),
        }
    }
}

/// A CSV row of `--with-officers`: the change's cells, then one officer's
/// (empty for a company with none fetched, so no change is left out).
#[derive(Serialize)]
struct CsvOfficerRow<'a> {
    company_number: Cow<'a, str>,
    company_name: Cow<'a, str>,
    change: &'a str,
    from_status: Option<Cow<'a, str>>,
    from_detail: Option<Cow<'a, str>>,
    to_status: Cow<'a, str>,
    to_detail: Option<Cow<'a, str>>,
    published_at: Option<String>,
    timepoint: i64,
    officer_name: Option<Cow<'a, str>>,
    officer_role: Option<Cow<'a, str>>,
    appointed_on: Option<Cow<'a, str>>,
    resigned_on: Option<Cow<'a, str>>,
    nationality: Option<Cow<'a, str>>,
    occupation: Option<Cow<'a, str>>,
    country_of_residence: Option<Cow<'a, str>>,
    birth_month: Option<u32>,
    birth_year: Option<i32>,
    address: Option<Cow<'a, str>>,
}

impl<'a> CsvOfficerRow<'a> {
    fn new(row: Row<'a>, officer: Option<OfficerCells<'a>>) -> Self {
        let o = officer;
        let (name, role, appointed_on, resigned_on, nationality, occupation, country, month, year, address) = match o {
            Some(o) => (
                Some(o.name),
                o.role,
                o.appointed_on,
                o.resigned_on,
                o.nationality,
                o.occupation,
                o.country_of_residence,
                o.birth_month,
                o.birth_year,
                o.address,
            ),
            None => (None, None, None, None, None, None, None, None, None, None),
        };
        CsvOfficerRow {
            company_number: row.company_number,
            company_name: row.company_name,
            change: row.change,
            from_status: row.from_status,
            from_detail: row.from_detail,
            to_status: row.to_status,
            to_detail: row.to_detail,
            published_at: row.published_at,
            timepoint: row.timepoint,
            officer_name: name,
            officer_role: role,
            appointed_on,
            resigned_on,
            nationality,
            occupation,
            country_of_residence: country,
            birth_month: month,
            birth_year: year,
            address,
        }
    }
}

impl<'a> Row<'a> {
    /// The row of `c`, each text cell of feed origin through `text`.
    fn new(c: &'a StrikeOffChange, text: fn(&'a str) -> Cow<'a, str>) -> Self {
        Row {
            company_number: text(&c.company_number),
            company_name: text(&c.company_name),
            change: c.kind.as_str(),
            from_status: c.from_status.as_deref().map(text),
            from_detail: c.from_detail.as_deref().map(text),
            to_status: text(&c.to_status),
            to_detail: c.to_detail.as_deref().map(text),
            published_at: c.published_at.map(ts),
            timepoint: c.timepoint,
            officers: None,
        }
    }
}

/// A CSV cell by default: controls shown as the terminal marker (CSV is read
/// on terminals too) and a would-be formula neutralised for spreadsheets.
fn csv_safe(s: &str) -> Cow<'_, str> {
    match sanitize::for_terminal(s) {
        Cow::Borrowed(s) => sanitize::csv_cell(s),
        Cow::Owned(s) => Cow::Owned(sanitize::csv_cell(&s).into_owned()),
    }
}

/// What `feedtop strike-offs` was asked for.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub format: Format,
    /// Only changes published (or, without a publication time, received) since then.
    pub since: Option<DateTime<Utc>>,
    /// CSV cells exactly as stored: no formula neutralising, no markers.
    pub csv_raw: bool,
    /// Add each company's officers (fetched by the REST enrichment).
    pub with_officers: bool,
}

/// Lists the changes in `db` (newest first) to `out`.
pub fn run(db: &Path, options: Options, out: &mut dyn Write) -> anyhow::Result<usize> {
    if !db.exists() {
        anyhow::bail!("no database at {}: run feedtop first to record changes, or pass --db PATH", db.display());
    }
    let conn = store::open_read_only(db)?;
    let sqlite = |e| store::StoreError::from_sqlite(db, e);
    let has_table: bool = conn
        .query_row("SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'strike_offs'", [], |r| {
            r.get(0)
        })
        .map_err(sqlite)?;
    if !has_table {
        anyhow::bail!(
            "{} is not a feedtop database (it has no strike-off table); pass --db PATH to the database feedtop writes",
            db.display()
        );
    }
    let changes = store::queries::strike_offs(&conn, options.since, None).map_err(sqlite)?;
    let stored = match (changes.is_empty(), options.since) {
        (true, Some(_)) => Some(store::queries::counts(&conn).map_err(sqlite)?.strike_offs),
        _ => None,
    };
    let mut officers = Officers::new();
    if options.with_officers {
        let has_officers: bool = conn
            .query_row("SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'officers'", [], |r| {
                r.get(0)
            })
            .map_err(sqlite)?;
        if !has_officers {
            anyhow::bail!(
                "{} has no officers yet (an older feedtop wrote it): run feedtop with CH_REST_API_KEY set to fetch them",
                db.display()
            );
        }
        for c in &changes {
            if !officers.contains_key(&c.company_number) {
                let list = store::enrich::officers_of(&conn, &c.company_number).map_err(sqlite)?;
                officers.insert(c.company_number.clone(), list);
            }
        }
    }
    write_enriched(&changes, &officers, options, Origin::Database { stored }, out)?;
    Ok(changes.len())
}

/// Where the changes were read, for the table to say so when there are none.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// The database, holding `stored` changes in all (counted only when a
    /// window left none).
    Database { stored: Option<u64> },
    /// A relay's NATS stream of this name.
    Stream { name: &'a str },
}

/// Lists the strike-off changes read from a relay's stream (newest first,
/// as [`crate::relay::history`] returns them) to `out`, exactly as [`run`]
/// lists a database's. Officers live only in a database.
pub fn run_stream(
    changes: &[StrikeOffChange],
    stream: &str,
    options: Options,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    if options.with_officers {
        anyhow::bail!("{WITH_OFFICERS_NEEDS_A_DATABASE}");
    }
    write_enriched(changes, &Officers::new(), options, Origin::Stream { name: stream }, out)?;
    Ok(changes.len())
}

/// Why `--with-officers` and `--source` do not go together.
pub const WITH_OFFICERS_NEEDS_A_DATABASE: &str =
    "--with-officers reads the officers stored in a database, and a relay's stream has none: drop --source or --with-officers";

/// Writes `changes` as asked. `stored` is how many changes the database
/// holds in all, for the table to say when a window left none.
pub fn write(
    changes: &[StrikeOffChange],
    options: Options,
    stored: Option<u64>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    write_enriched(changes, &Officers::new(), options, Origin::Database { stored }, out)
}

/// [`write`], with each company's officers when `options.with_officers`:
/// an array in JSON, one row per officer in CSV, indented lines in the table.
/// The one formatter for both origins: the same cleaning of feed text
/// (terminal markers, CSV formula neutralising) whichever it was.
pub fn write_enriched(
    changes: &[StrikeOffChange],
    officers: &Officers,
    options: Options,
    origin: Origin<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let with = options.with_officers;
    let of = |c: &StrikeOffChange| officers.get(&c.company_number).map_or(&[][..], Vec::as_slice);
    match options.format {
        Format::Json => {
            for c in changes {
                let mut row = Row::new(c, Cow::Borrowed);
                if with {
                    row.officers = Some(of(c).iter().map(|o| OfficerCells::new(o, Cow::Borrowed)).collect());
                }
                // Lossless: C1, DEL and bidi overrides are escaped, not replaced.
                sanitize::write_json(&mut *out, &row)?;
                writeln!(out)?;
            }
        }
        Format::Csv => {
            let text = if options.csv_raw { Cow::Borrowed } else { csv_safe };
            let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(out);
            // Written by hand so that an empty export still has its header row.
            if with {
                w.write_record(CSV_HEADER.iter().chain(&CSV_OFFICER_HEADER))?;
            } else {
                w.write_record(CSV_HEADER)?;
            }
            for c in changes {
                if !with {
                    w.serialize(Row::new(c, text))?;
                    continue;
                }
                let list = of(c);
                if list.is_empty() {
                    w.serialize(CsvOfficerRow::new(Row::new(c, text), None))?;
                }
                for o in list {
                    w.serialize(CsvOfficerRow::new(Row::new(c, text), Some(OfficerCells::new(o, text))))?;
                }
            }
            w.flush()?;
        }
        Format::Table => write_table(changes, with.then_some(officers), options.since, origin, out)?,
    }
    Ok(())
}

/// The officer columns `--with-officers` adds to the CSV.
const CSV_OFFICER_HEADER: [&str; 10] = [
    "officer_name",
    "officer_role",
    "appointed_on",
    "resigned_on",
    "nationality",
    "occupation",
    "country_of_residence",
    "birth_month",
    "birth_year",
    "address",
];

/// One officer as an indented table line: name, then what is known.
fn officer_line(o: &Officer) -> String {
    let mut parts: Vec<String> = Vec::new();
    parts.extend(o.role.clone());
    parts.extend(o.appointed_on.as_ref().map(|d| format!("appointed {d}")));
    parts.extend(o.resigned_on.as_ref().map(|d| format!("resigned {d}")));
    parts.extend(o.nationality.clone());
    parts.extend(o.occupation.clone());
    parts.extend(o.country_of_residence.clone());
    if let Some(year) = o.birth_year {
        parts.push(match o.birth_month {
            Some(m) => format!("born {m:02}/{year}"),
            None => format!("born {year}"),
        });
    }
    let mut line = format!("    officer: {}", o.name);
    if !parts.is_empty() {
        line.push_str(&format!(" ({})", parts.join(", ")));
    }
    if let Some(a) = &o.address {
        line.push_str(&format!("; {a}"));
    }
    // Text from the REST API reaches the terminal only through the sanitiser.
    sanitize::for_terminal(&line).into_owned()
}

/// The CSV header: [`Row`]'s field names, in order.
const CSV_HEADER: [&str; 9] = [
    "company_number",
    "company_name",
    "change",
    "from_status",
    "from_detail",
    "to_status",
    "to_detail",
    "published_at",
    "timepoint",
];

fn write_table(
    changes: &[StrikeOffChange],
    officers: Option<&Officers>,
    since: Option<DateTime<Utc>>,
    origin: Origin<'_>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if changes.is_empty() {
        let since = since.map(|t| t.format("%Y-%m-%d %H:%M:%S"));
        return match (since, origin) {
            (Some(since), Origin::Database { stored: Some(n) }) => {
                writeln!(out, "no strike-off changes published since {since} UTC ({n} stored in all)")
            }
            (None | Some(_), Origin::Database { .. }) => writeln!(out, "no strike-off changes recorded"),
            // The stream's name is the user's, but shown only through the sanitiser all the same.
            (Some(since), Origin::Stream { name }) => writeln!(
                out,
                "no strike-off changes published since {since} UTC in NATS stream {}",
                sanitize::for_terminal(name)
            ),
            (None, Origin::Stream { name }) => {
                writeln!(out, "no strike-off changes in NATS stream {}", sanitize::for_terminal(name))
            }
        };
    }
    // Feed text reaches the terminal only through the sanitiser.
    let names: Vec<Cow<str>> = changes.iter().map(|c| sanitize::for_terminal(&c.company_name)).collect();
    let name_width = names.iter().map(|n| n.chars().count()).max().unwrap_or(4).clamp(4, 40);
    writeln!(
        out,
        "{:<19}  {:<10}  {:<10}  {:<name_width$}  {:>11}  FROM → TO",
        "PUBLISHED (UTC)", "NUMBER", "CHANGE", "NAME", "TIMEPOINT"
    )?;
    for (c, name) in changes.iter().zip(names) {
        let published = c.published_at.map_or_else(|| "-".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        let name: String = name.chars().take(name_width).collect();
        writeln!(
            out,
            "{published:<19}  {:<10}  {:<10}  {name:<name_width$}  {:>11}  {}",
            sanitize::for_terminal(&c.company_number),
            c.kind.as_str(),
            c.timepoint,
            // The strike-off pane's text, word for word.
            sanitize::for_terminal(&c.transition()),
        )?;
        if let Some(officers) = officers {
            match officers.get(&c.company_number).filter(|l| !l.is_empty()) {
                Some(list) => {
                    for o in list {
                        writeln!(out, "{}", officer_line(o))?;
                    }
                }
                None => writeln!(out, "    (no officers fetched)")?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChangeKind;
    use chrono::TimeZone;

    fn change(name: &str) -> StrikeOffChange {
        StrikeOffChange {
            kind: ChangeKind::StruckOff,
            company_number: "12007733".into(),
            company_name: name.into(),
            from_status: Some("active".into()),
            from_detail: Some("active-proposal-to-strike-off".into()),
            to_status: "dissolved".into(),
            to_detail: None,
            published_at: Some(Utc.with_ymd_and_hms(2025, 6, 10, 11, 0, 0).unwrap()),
            timepoint: 82417340,
            received_at: Utc.with_ymd_and_hms(2025, 6, 10, 11, 0, 1).unwrap(),
        }
    }

    fn options(format: Format) -> Options {
        Options { format, since: None, csv_raw: false, with_officers: false }
    }

    fn render_with(options: Options, changes: &[StrikeOffChange], stored: Option<u64>) -> String {
        let mut out = Vec::new();
        write(changes, options, stored, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn render(format: Format, name: &str) -> String {
        render_with(options(format), &[change(name)], None)
    }

    /// Retitles the terminal, writes the clipboard, clears the screen, and
    /// more: C1 CSI, CR, BS, BEL, DEL, a right-to-left override.
    const HOSTILE: &str = "EVIL\x1b]0;pwned\x07 LTD\x1b]52;c;aGk=\x07\x1b[2J\u{9b}2J\r\x08\x7f\u{202E}DTL";

    fn hostile_bytes(out: &str) -> Vec<char> {
        out.chars().filter(|&c| c != '\n' && sanitize::is_unsafe(c)).collect()
    }

    #[test]
    fn json_lines() {
        let out = render(Format::Json, "ORCHARD LANE LTD");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["change"], "struck-off");
        assert_eq!(v["from_detail"], "active-proposal-to-strike-off");
        assert_eq!(v["to_status"], "dissolved");
        assert_eq!(v["published_at"], "2025-06-10T11:00:00.000Z");
        assert_eq!(v["timepoint"], 82417340);
    }

    #[test]
    fn csv_quotes_awkward_names() {
        let out = render(Format::Csv, "SMITH, JONES & \"CO\" LTD");
        let mut lines = out.lines();
        assert!(lines.next().unwrap().starts_with("company_number,company_name,change"));
        assert!(lines.next().unwrap().contains("\"SMITH, JONES & \"\"CO\"\" LTD\""));
    }

    #[test]
    fn table_shows_the_transition() {
        let out = render(Format::Table, "ORCHARD LANE LTD");
        assert!(out.contains("12007733") && out.contains("struck-off"));
        assert!(out.contains("active/active-proposal-to-strike-off → dissolved"), "{out}");
    }

    #[test]
    fn since_forms() {
        let now = Utc.with_ymd_and_hms(2025, 6, 10, 12, 0, 0).unwrap();
        assert_eq!(parse_since("24h", now).unwrap(), Utc.with_ymd_and_hms(2025, 6, 9, 12, 0, 0).unwrap());
        assert_eq!(parse_since("2025-06-01", now).unwrap(), Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap());
        assert_eq!(
            parse_since("2025-06-01T08:00:00Z", now).unwrap(),
            Utc.with_ymd_and_hms(2025, 6, 1, 8, 0, 0).unwrap()
        );
        assert!(parse_since("last tuesday", now).unwrap_err().contains("24h"));
    }

    #[test]
    fn missing_database_says_what_to_do() {
        let e = run(Path::new("/nonexistent/x.db"), options(Format::Table), &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("run feedtop first"), "{e}");
    }

    #[test]
    fn table_header_names_each_column_once() {
        let out = render(Format::Table, "ORCHARD LANE LTD");
        let header = out.lines().next().unwrap();
        assert_eq!(header.matches("CHANGE").count(), 1, "{header}");
        assert!(header.ends_with("FROM → TO"), "{header}");
    }

    #[test]
    fn table_shows_hostile_names_as_markers() {
        let mut c = change(HOSTILE);
        c.company_number = "1\x1b[2J".into();
        c.to_detail = Some("x\u{9b}y".into());
        let out = render_with(options(Format::Table), &[c], None);
        assert_eq!(hostile_bytes(&out), Vec::<char>::new(), "{out:?}");
        assert!(out.contains("EVIL\u{FFFD}]0;pwned\u{FFFD} LTD"), "{out}");
        assert!(out.contains("1\u{FFFD}[2J") && out.contains("x\u{FFFD}y"), "{out}");
    }

    #[test]
    fn json_escapes_what_a_terminal_would_obey() {
        let out = render(Format::Json, HOSTILE);
        assert_eq!(hostile_bytes(&out), Vec::<char>::new(), "{out:?}");
        assert!(out.contains("\\u009b") && out.contains("\\u007f") && out.contains("\\u202e"), "{out}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["company_name"], HOSTILE, "lossless");
    }

    #[test]
    fn csv_neutralises_formulas_unless_raw() {
        let formula = "=HYPERLINK(\"http://evil.example/\",\"click\")";
        let mut c = change(formula);
        c.company_number = "+1".into();
        c.to_detail = Some("@SUM(A1)".into());
        let read = |out: &str| {
            let mut r = csv::Reader::from_reader(out.as_bytes());
            r.records().next().unwrap().unwrap()
        };
        let safe = read(&render_with(options(Format::Csv), std::slice::from_ref(&c), None));
        assert_eq!(&safe[1], format!("'{formula}"));
        assert_eq!(&safe[0], "'+1");
        assert_eq!(&safe[6], "'@SUM(A1)");
        assert_eq!(&safe[8], "82417340", "numbers stay numbers");
        let raw = read(&render_with(Options { csv_raw: true, ..options(Format::Csv) }, &[c], None));
        assert_eq!(&raw[1], formula);
        assert_eq!(&raw[0], "+1");
    }

    #[test]
    fn csv_marks_controls_unless_raw() {
        let out = render(Format::Csv, HOSTILE);
        assert_eq!(hostile_bytes(&out), Vec::<char>::new(), "{out:?}");
        assert!(out.contains("EVIL\u{FFFD}]0;pwned"), "{out}");
        let raw = render_with(Options { csv_raw: true, ..options(Format::Csv) }, &[change(HOSTILE)], None);
        assert!(raw.contains(HOSTILE), "raw keeps the stored value");
    }

    #[test]
    fn empty_csv_still_has_its_header() {
        let out = render_with(options(Format::Csv), &[], None);
        assert_eq!(out.trim_end(), CSV_HEADER.join(","));
        let full = render(Format::Csv, "ORCHARD LANE LTD");
        assert_eq!(full.lines().next().unwrap(), CSV_HEADER.join(","), "the same header as serde's");
    }

    #[test]
    fn an_empty_window_says_what_it_was_and_what_is_stored() {
        let since = Utc.with_ymd_and_hms(2099, 1, 1, 0, 0, 0).unwrap();
        let out = render_with(Options { since: Some(since), ..options(Format::Table) }, &[], Some(87));
        assert_eq!(out.trim(), "no strike-off changes published since 2099-01-01 00:00:00 UTC (87 stored in all)");
        assert_eq!(render_with(options(Format::Table), &[], None).trim(), "no strike-off changes recorded");
    }

    #[test]
    fn a_database_without_feedtop_tables_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("other.db");
        rusqlite::Connection::open(&db).unwrap().execute_batch("CREATE TABLE notes (x TEXT)").unwrap();
        let e = format!("{:#}", run(&db, options(Format::Table), &mut Vec::new()).unwrap_err());
        assert!(e.contains("not a feedtop database"), "{e}");
        assert_eq!(e.matches("strike-off").count(), 1, "said once: {e}");
        assert!(!e.contains("no such table"), "{e}");
    }

    #[test]
    fn the_window_is_counted_against_the_whole_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("feedtop.db");
        let conn = store::open(&db).unwrap();
        conn.execute(
            "INSERT INTO strike_offs (company_number, company_name, change, to_status, published_at, timepoint, received_at)
             VALUES ('1', 'A LTD', 'entered', 'active', '2025-06-10T11:00:00.000Z', 1, '2025-06-10T11:00:00.000Z')",
            [],
        )
        .unwrap();
        let since = Utc.with_ymd_and_hms(2099, 1, 1, 0, 0, 0).unwrap();
        let mut out = Vec::new();
        let n = run(&db, Options { since: Some(since), ..options(Format::Table) }, &mut out).unwrap();
        assert_eq!(n, 0);
        assert!(String::from_utf8(out).unwrap().contains("(1 stored in all)"));
    }

    fn officers() -> Officers {
        let o = Officer {
            name: "HOLLOWAY, Amelia".into(),
            role: Some("director".into()),
            appointed_on: Some("2019-04-01".into()),
            nationality: Some("British".into()),
            occupation: Some("=cmd|' /C calc'!A0".into()),
            country_of_residence: Some("England".into()),
            birth_month: Some(3),
            birth_year: Some(1980),
            address: Some("12, Mill Road, Leeds".into()),
            ..Officer::default()
        };
        let second =
            Officer { name: "ASHDOWN, Leo\x1b[2J".into(), role: Some("secretary".into()), ..Officer::default() };
        Officers::from([("12007733".to_string(), vec![o, second])])
    }

    fn render_officers(format: Format, changes: &[StrikeOffChange]) -> String {
        let mut out = Vec::new();
        let options = Options { with_officers: true, ..options(format) };
        write_enriched(changes, &officers(), options, Origin::Database { stored: None }, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn with_officers_csv_has_one_row_per_officer_and_keeps_changes_without_any() {
        let mut other = change("OTHER LTD");
        other.company_number = "99999999".into();
        let out = render_officers(Format::Csv, &[change("ORCHARD LANE LTD"), other]);
        let mut r = csv::Reader::from_reader(out.as_bytes());
        let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        assert_eq!(header.len(), 19);
        assert_eq!(header[9], "officer_name");
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 3, "two officers, and the change without any");
        assert_eq!(&rows[0][9], "HOLLOWAY, Amelia");
        assert_eq!(&rows[0][13], "British");
        assert_eq!((&rows[0][16], &rows[0][17]), ("3", "1980"));
        assert!(rows[0][14].starts_with('\''), "a formula from the API is neutralised: {}", &rows[0][14]);
        assert!(!rows[1][9].contains('\x1b'), "controls are marked");
        assert_eq!((&rows[2][0], &rows[2][9]), ("99999999", ""));
    }

    #[test]
    fn with_officers_json_has_an_array_and_table_lines() {
        let out = render_officers(Format::Json, &[change("ORCHARD LANE LTD")]);
        let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        let list = v["officers"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["name"], "HOLLOWAY, Amelia");
        assert_eq!(list[0]["birth_year"], 1980);
        assert!(hostile_bytes(&out).is_empty(), "escaped, not raw");
        let plain: serde_json::Value = serde_json::from_str(render(Format::Json, "X").lines().next().unwrap()).unwrap();
        assert!(plain.get("officers").is_none(), "only when asked");

        let table = render_officers(Format::Table, &[change("ORCHARD LANE LTD")]);
        assert!(table.contains("    officer: HOLLOWAY, Amelia (director, appointed 2019-04-01, British, "), "{table}");
        assert!(table.contains("born 03/1980); 12, Mill Road, Leeds"), "{table}");
        assert!(hostile_bytes(&table).is_empty(), "{table}");
    }

    #[test]
    fn with_officers_reads_them_from_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let mut conn = store::open(&db).unwrap();
        let c = change("ORCHARD LANE LTD");
        crate::store::writer::write_batch(&mut conn, &[crate::model::Fact::StrikeOff(c.clone())], Default::default())
            .unwrap();
        store::enrich::enqueue(&conn, "12007733", Utc::now()).unwrap();
        let profile = store::enrich::next_job(&conn).unwrap().unwrap();
        store::enrich::drop_job(&conn, profile.id).unwrap();
        let job = store::enrich::next_job(&conn).unwrap().unwrap();
        let list = officers().remove("12007733").unwrap();
        store::enrich::save_officers_page(&mut conn, &job, &list, None, Utc::now()).unwrap();
        drop(conn);
        let mut out = Vec::new();
        run(&db, Options { with_officers: true, ..options(Format::Csv) }, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 3, "a header and two officers");
    }
}
