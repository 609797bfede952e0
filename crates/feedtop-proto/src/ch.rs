//! Companies House stream events (docs/protocols.md §1.5): the envelope,
//! the part of a company profile that strike-off detection needs, and the
//! decoder of one line.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::time::parse_published_at;

/// The only resource kind on `/companies` that carries a company profile.
pub const COMPANY_PROFILE: &str = "company-profile";
/// `company_status` of a company in the proposal to strike off.
pub const PROPOSAL: &str = "active-proposal-to-strike-off";
/// `company_status` of a company struck off the register.
pub const DISSOLVED: &str = "dissolved";

/// `changed`, `deleted`, or something this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Changed,
    Deleted,
    Other(String),
}

impl EventType {
    pub fn as_str(&self) -> &str {
        match self {
            EventType::Changed => "changed",
            EventType::Deleted => "deleted",
            EventType::Other(s) => s,
        }
    }
}

/// The part of a company profile that strike-off detection needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompanyState {
    pub number: String,
    pub name: String,
    pub status: String,
    pub detail: Option<String>,
}

/// One decoded stream event. `raw` is the line as received, kept for storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChEvent {
    pub resource_kind: String,
    pub resource_id: String,
    pub timepoint: i64,
    pub published_at: Option<DateTime<Utc>>,
    pub event_type: EventType,
    /// Present for `company-profile` events that carry `data`.
    pub company: Option<CompanyState>,
    pub raw: String,
}

impl ChEvent {
    pub fn is_company_profile(&self) -> bool {
        self.resource_kind == COMPANY_PROFILE
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    resource_kind: Cow<'a, str>,
    #[serde(borrow, default)]
    resource_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Meta<'a>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    timepoint: i64,
    #[serde(borrow, default)]
    published_at: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ProfileData<'a> {
    #[serde(borrow, default)]
    company_number: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    company_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    company_status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    company_status_detail: Option<Cow<'a, str>>,
}

/// Why a line was not an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("line is not valid UTF-8")]
    NotUtf8,
    #[error("not a stream event: {0}")]
    Json(String),
    #[error("event has no resource_id")]
    NoResourceId,
}

/// Decodes one non-blank line. Only the fields feedtop needs are read (borrowed,
/// no copies); the raw line is kept whole for storage.
pub fn parse_event(line: Vec<u8>) -> Result<ChEvent, ParseError> {
    let raw = String::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
    let (resource_kind, resource_id, timepoint, published_at, event_type, company) = {
        let env: Envelope = serde_json::from_str(&raw).map_err(|e| ParseError::Json(e.to_string()))?;
        let resource_id = env.resource_id.ok_or(ParseError::NoResourceId)?.into_owned();
        let event_type = match env.event.kind.as_deref() {
            Some("changed") | None => EventType::Changed,
            Some("deleted") => EventType::Deleted,
            Some(other) => EventType::Other(other.to_string()),
        };
        let company = match (env.resource_kind.as_ref(), env.data) {
            (COMPANY_PROFILE, Some(data)) => {
                let d: ProfileData =
                    serde_json::from_str(data.get()).map_err(|e| ParseError::Json(format!("data: {e}")))?;
                Some(CompanyState {
                    number: d.company_number.map(Cow::into_owned).unwrap_or_else(|| resource_id.clone()),
                    name: d.company_name.map(Cow::into_owned).unwrap_or_default(),
                    status: d.company_status.map(Cow::into_owned).unwrap_or_default(),
                    detail: d.company_status_detail.map(Cow::into_owned),
                })
            }
            _ => None,
        };
        let published_at = env.event.published_at.as_deref().and_then(parse_published_at);
        (env.resource_kind.into_owned(), resource_id, env.event.timepoint, published_at, event_type, company)
    };
    Ok(ChEvent { resource_kind, resource_id, timepoint, published_at, event_type, company, raw })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../../tests/fixtures/ch-companies-sample.ndjson");
    fn line(n: usize) -> Vec<u8> {
        FIXTURE.lines().nth(n - 1).unwrap().as_bytes().to_vec()
    }

    #[test]
    fn parses_a_proposal_entry() {
        let ev = parse_event(line(3)).unwrap();
        assert_eq!(ev.resource_kind, "company-profile");
        assert_eq!(ev.timepoint, 82417310);
        assert_eq!(ev.event_type, EventType::Changed);
        let c = ev.company.unwrap();
        assert_eq!(c.number, "14829301");
        assert_eq!(c.name, "BRIGHTWELL JOINERY LTD");
        assert_eq!(c.status, "active");
        assert_eq!(c.detail.as_deref(), Some("active-proposal-to-strike-off"));
        assert_eq!(ev.published_at.unwrap().to_rfc3339(), "2025-06-10T08:05:12+00:00");
    }

    #[test]
    fn unknown_kind_has_no_company_but_keeps_its_timepoint() {
        let ev = parse_event(line(12)).unwrap();
        assert_eq!(ev.resource_kind, "company-officer-summary");
        assert!(ev.company.is_none());
        assert_eq!(ev.timepoint, 82417318);
    }

    #[test]
    fn deleted_event() {
        let ev = parse_event(line(19)).unwrap();
        assert_eq!(ev.event_type, EventType::Deleted);
    }

    #[test]
    fn legacy_published_at_is_parsed() {
        let ev = parse_event(line(17)).unwrap();
        assert!(ev.published_at.is_some());
    }

    #[test]
    fn truncated_line_is_an_error() {
        assert!(matches!(parse_event(line(7)), Err(ParseError::Json(_))));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(parse_event(vec![0xff, 0xfe]), Err(ParseError::NotUtf8));
        assert!(parse_event(b"[1,2]".to_vec()).is_err());
        assert!(parse_event(br#"{"resource_kind":"x","event":{"timepoint":99999999999999999999}}"#.to_vec()).is_err());
        assert_eq!(
            parse_event(br#"{"resource_kind":"x","event":{"timepoint":1}}"#.to_vec()),
            Err(ParseError::NoResourceId)
        );
    }

    #[test]
    fn deleted_without_data_is_accepted() {
        let ev = parse_event(
            br#"{"resource_kind":"company-profile","resource_id":"1","event":{"timepoint":5,"type":"deleted"}}"#
                .to_vec(),
        )
        .unwrap();
        assert_eq!(ev.event_type, EventType::Deleted);
        assert!(ev.company.is_none());
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let ev = parse_event(
            br#"{"resource_kind":"company-profile","resource_id":"1","data":{"company_name":"A \"Q\" LTD","company_number":"1","company_status":"active"},"event":{"timepoint":5}}"#.to_vec(),
        )
        .unwrap();
        assert_eq!(ev.company.unwrap().name, "A \"Q\" LTD");
    }
}
