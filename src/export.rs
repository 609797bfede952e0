//! `feedtop strike-offs`: the recorded changes as a table, JSON lines or CSV.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::cli::Format;
use crate::model::StrikeOffChange;
use crate::sanitize;
use crate::store::{self, ts};

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
    write(&changes, options, stored, out)?;
    Ok(changes.len())
}

/// Writes `changes` as asked. `stored` is how many changes the database
/// holds in all, for the table to say when a window left none.
pub fn write(
    changes: &[StrikeOffChange],
    options: Options,
    stored: Option<u64>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match options.format {
        Format::Json => {
            for c in changes {
                // Lossless: C1, DEL and bidi overrides are escaped, not replaced.
                sanitize::write_json(&mut *out, &Row::new(c, Cow::Borrowed))?;
                writeln!(out)?;
            }
        }
        Format::Csv => {
            let text = if options.csv_raw { Cow::Borrowed } else { csv_safe };
            let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(out);
            // Written by hand so that an empty export still has its header row.
            w.write_record(CSV_HEADER)?;
            for c in changes {
                w.serialize(Row::new(c, text))?;
            }
            w.flush()?;
        }
        Format::Table => write_table(changes, options.since, stored, out)?,
    }
    Ok(())
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
    since: Option<DateTime<Utc>>,
    stored: Option<u64>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if changes.is_empty() {
        return match (since, stored) {
            (Some(since), Some(n)) => writeln!(
                out,
                "no strike-off changes published since {} UTC ({n} stored in all)",
                since.format("%Y-%m-%d %H:%M:%S")
            ),
            _ => writeln!(out, "no strike-off changes recorded"),
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
        Options { format, since: None, csv_raw: false }
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
}
