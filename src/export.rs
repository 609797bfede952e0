//! `feedtop strike-offs`: the recorded changes as a table, JSON lines or CSV.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::cli::Format;
use crate::model::StrikeOffChange;
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
    company_number: &'a str,
    company_name: &'a str,
    change: &'a str,
    from_status: Option<&'a str>,
    from_detail: Option<&'a str>,
    to_status: &'a str,
    to_detail: Option<&'a str>,
    published_at: Option<String>,
    timepoint: i64,
}

impl<'a> From<&'a StrikeOffChange> for Row<'a> {
    fn from(c: &'a StrikeOffChange) -> Self {
        Row {
            company_number: &c.company_number,
            company_name: &c.company_name,
            change: c.kind.as_str(),
            from_status: c.from_status.as_deref(),
            from_detail: c.from_detail.as_deref(),
            to_status: &c.to_status,
            to_detail: c.to_detail.as_deref(),
            published_at: c.published_at.map(ts),
            timepoint: c.timepoint,
        }
    }
}

/// Lists the changes in `db` (newest first) to `out`.
pub fn run(db: &Path, since: Option<DateTime<Utc>>, format: Format, out: &mut dyn Write) -> anyhow::Result<usize> {
    if !db.exists() {
        anyhow::bail!("no database at {}: run feedtop first to record changes, or pass --db PATH", db.display());
    }
    let conn = store::open_read_only(db)?;
    let changes = store::queries::strike_offs(&conn, since, None).map_err(|e| store::StoreError::from_sqlite(db, e))?;
    write(&changes, format, out)?;
    Ok(changes.len())
}

pub fn write(changes: &[StrikeOffChange], format: Format, out: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            for c in changes {
                serde_json::to_writer(&mut *out, &Row::from(c))?;
                writeln!(out)?;
            }
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            for c in changes {
                w.serialize(Row::from(c))?;
            }
            w.flush()?;
        }
        Format::Table => write_table(changes, out)?,
    }
    Ok(())
}

fn state(status: Option<&str>, detail: Option<&str>) -> String {
    match (status, detail) {
        (None, _) => "?".to_string(),
        (Some(s), None) => s.to_string(),
        (Some(s), Some(d)) => format!("{s} ({d})"),
    }
}

fn write_table(changes: &[StrikeOffChange], out: &mut dyn Write) -> std::io::Result<()> {
    if changes.is_empty() {
        return writeln!(out, "no strike-off changes recorded");
    }
    let name_width = changes.iter().map(|c| c.company_name.chars().count()).max().unwrap_or(4).clamp(4, 40);
    writeln!(
        out,
        "{:<19}  {:<10}  {:<10}  {:<name_width$}  {:>11}  CHANGE",
        "PUBLISHED (UTC)", "NUMBER", "CHANGE", "NAME", "TIMEPOINT"
    )?;
    for c in changes {
        let published = c.published_at.map_or_else(|| "-".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        let name: String = c.company_name.chars().take(name_width).collect();
        writeln!(
            out,
            "{published:<19}  {:<10}  {:<10}  {name:<name_width$}  {:>11}  {} → {}",
            c.company_number,
            c.kind.as_str(),
            c.timepoint,
            state(c.from_status.as_deref(), c.from_detail.as_deref()),
            state(Some(&c.to_status), c.to_detail.as_deref()),
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

    fn render(format: Format, name: &str) -> String {
        let mut out = Vec::new();
        write(&[change(name)], format, &mut out).unwrap();
        String::from_utf8(out).unwrap()
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
        assert!(out.contains("active (active-proposal-to-strike-off) → dissolved"), "{out}");
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
        let e = run(Path::new("/nonexistent/x.db"), None, Format::Table, &mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("run feedtop first"), "{e}");
    }
}
