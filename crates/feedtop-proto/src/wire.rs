//! Feed messages outside the process: the form the relay's shared stream
//! and the recordings carry. JSON, one message per record, with the schema
//! version beside it so that a reader meets a newer writer with a clear
//! refusal instead of a misreading.
//!
//! ```json
//! {"schema":1,"msg":{"feed":"wig80","at":"2026-11-30T17:00:00Z","kind":{"type":"rtt","value":{"secs":0,"nanos":42000000}}}}
//! ```
//!
//! A recording starts with one header record naming the feeds it holds
//! (`{"schema":1,"header":{"feeds":[…],"started":…,"writer":"feedtop 0.1.0"}}`):
//! a record kind of its own beside `msg`, so message records stay exactly
//! what the relay reads, and the version did not have to move.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use chrono::{DateTime, Utc};

use crate::msg::{FeedInfo, FeedMsg};

/// The version of the message schema this build writes and reads. Raise it
/// when a change would make an older reader misunderstand a message.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a record is not a message this build can read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error(
        "schema version {found} is not {SCHEMA_VERSION}, the one this feedtop reads: upgrade the side that is older"
    )]
    Schema { found: u32 },
    #[error("not a feed message: {0}")]
    Invalid(String),
}

#[derive(Serialize)]
struct Outgoing<'a> {
    schema: u32,
    msg: &'a FeedMsg,
}

#[derive(Deserialize)]
struct Incoming<'a> {
    schema: u32,
    #[serde(borrow)]
    msg: &'a RawValue,
}

/// The first record of a recording: what a replay needs besides the
/// messages (which feeds, in which order, as the live run showed them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingHeader {
    pub feeds: Vec<FeedInfo>,
    /// When the recording started (the receive clock of the messages).
    pub started: DateTime<Utc>,
    /// The program and version that wrote it, for a bug report.
    pub writer: String,
    /// The messages include the strike-off changes the writing run's
    /// tracker found ([`crate::FeedMsgKind::StrikeOff`]); a reader shows
    /// those instead of deriving its own. Absent in older recordings.
    #[serde(default)]
    pub strike_offs: bool,
}

/// One record of a recording.
#[derive(Debug, Clone)]
pub enum Record {
    Header(RecordingHeader),
    Msg(FeedMsg),
}

#[derive(Serialize)]
struct OutgoingHeader<'a> {
    schema: u32,
    header: &'a RecordingHeader,
}

#[derive(Deserialize)]
struct IncomingAny<'a> {
    schema: u32,
    #[serde(borrow, default)]
    msg: Option<&'a RawValue>,
    #[serde(borrow, default)]
    header: Option<&'a RawValue>,
}

/// The record for a recording's header.
pub fn encode_header(header: &RecordingHeader) -> Vec<u8> {
    // Strings, a timestamp and unit-like enums: serialising cannot fail.
    serde_json::to_vec(&OutgoingHeader { schema: SCHEMA_VERSION, header }).unwrap_or_default()
}

/// A record of either kind; the schema version is checked first.
pub fn decode_record(record: &[u8]) -> Result<Record, WireError> {
    let incoming: IncomingAny = serde_json::from_slice(record).map_err(|e| WireError::Invalid(e.to_string()))?;
    if incoming.schema != SCHEMA_VERSION {
        return Err(WireError::Schema { found: incoming.schema });
    }
    let invalid = |e: serde_json::Error| WireError::Invalid(e.to_string());
    match (incoming.msg, incoming.header) {
        (Some(msg), None) => serde_json::from_str(msg.get()).map(Record::Msg).map_err(invalid),
        (None, Some(header)) => serde_json::from_str(header.get()).map(Record::Header).map_err(invalid),
        _ => Err(WireError::Invalid("a record holds either a msg or a header".into())),
    }
}

/// The record for one message.
pub fn encode(msg: &FeedMsg) -> Vec<u8> {
    // Every field is a string, a number, a map with string keys or a
    // sequence: serialising cannot fail.
    serde_json::to_vec(&Outgoing { schema: SCHEMA_VERSION, msg }).unwrap_or_default()
}

/// The message in one record; the schema version is checked before the
/// message is read.
pub fn decode(record: &[u8]) -> Result<FeedMsg, WireError> {
    let incoming: Incoming = serde_json::from_slice(record).map_err(|e| WireError::Invalid(e.to_string()))?;
    if incoming.schema != SCHEMA_VERSION {
        return Err(WireError::Schema { found: incoming.schema });
    }
    serde_json::from_str(incoming.msg.get()).map_err(|e| WireError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::ch::parse_event;
    use crate::msg::{ConnState, FeedMsgKind, ResumePoint};
    use crate::quote::{Quote, QuoteTime};

    fn every_kind() -> Vec<FeedMsgKind> {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 17, 0, 0).unwrap();
        let line = r#"{"resource_kind":"company-profile","resource_id":"01234567","data":{"company_number":"01234567","company_name":"A LTD","company_status":"active","company_status_detail":"active-proposal-to-strike-off"},"event":{"timepoint":5,"published_at":"2026-11-30T16:59:59","type":"changed"}}"#;
        let event = parse_event(line.as_bytes().to_vec()).unwrap();
        let mut quote = Quote::new("PKN", 65.5);
        quote.time = Some(QuoteTime::Estimated(at));
        quote.market_status = Some("open".into());
        vec![
            FeedMsgKind::State(ConnState::Connecting),
            FeedMsgKind::State(ConnState::Live),
            FeedMsgKind::State(ConnState::Backoff { retry_at: at }),
            FeedMsgKind::State(ConnState::AuthFailed { retry_at: at }),
            FeedMsgKind::Bytes,
            FeedMsgKind::KeepAlive,
            FeedMsgKind::Event(Box::new(event.clone())),
            FeedMsgKind::Quotes(vec![quote, Quote::new("KGHM", 150.0)]),
            FeedMsgKind::Rtt(Duration::from_millis(42)),
            FeedMsgKind::Resumable {
                resume: ResumePoint::Timepoint(5),
                inner: Box::new(FeedMsgKind::Event(Box::new(event))),
            },
            FeedMsgKind::Resumable {
                resume: ResumePoint::EventId("ev-9".into()),
                inner: Box::new(FeedMsgKind::Quotes(vec![])),
            },
            FeedMsgKind::Notice("subscribed".into()),
            FeedMsgKind::Duplicate { timepoint: 4 },
            FeedMsgKind::Malformed { reason: "bad".into() },
            FeedMsgKind::TooLong,
            FeedMsgKind::Gap { after_timepoint: Some(3), reason: "416".into() },
            FeedMsgKind::UnusableResumeId { reason: "control character".into() },
            FeedMsgKind::NoData(vec!["XYZ".into()]),
            FeedMsgKind::Error("HTTP 503".into()),
        ]
    }

    /// Every kind of message comes back from its record as it went in
    /// (compared through Debug: the types do not all implement PartialEq).
    #[test]
    fn every_message_kind_round_trips() {
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 17, 0, 1).unwrap();
        for kind in every_kind() {
            let msg = FeedMsg { feed: "wig80".into(), at, kind };
            let record = encode(&msg);
            let back = decode(&record).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&record)));
            assert_eq!(format!("{back:?}"), format!("{msg:?}"));
        }
    }

    #[test]
    fn the_record_carries_the_schema_and_the_feeds_name() {
        let msg = FeedMsg { feed: "ch/companies".into(), at: Utc::now(), kind: FeedMsgKind::KeepAlive };
        let value: serde_json::Value = serde_json::from_slice(&encode(&msg)).unwrap();
        assert_eq!(value["schema"], SCHEMA_VERSION);
        assert_eq!(value["msg"]["feed"], "ch/companies");
    }

    #[test]
    fn another_schema_version_is_refused_before_the_message_is_read() {
        let record = br#"{"schema":2,"msg":{"anything":"new"}}"#;
        let e = decode(record).unwrap_err();
        assert_eq!(e, WireError::Schema { found: 2 });
        assert!(e.to_string().contains("schema version 2"), "{e}");
        assert!(matches!(decode(br#"{"msg":{}}"#), Err(WireError::Invalid(_))));
    }

    #[test]
    fn a_header_and_a_message_are_told_apart() {
        use crate::msg::FeedKind;
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 17, 0, 1).unwrap();
        let header = RecordingHeader {
            strike_offs: true,
            feeds: vec![FeedInfo::new("ch/companies", FeedKind::CompaniesHouse)],
            started: at,
            writer: "feedtop 0.1.0".into(),
        };
        match decode_record(&encode_header(&header)) {
            Ok(Record::Header(back)) => assert_eq!(back, header),
            other => panic!("{other:?}"),
        }
        let msg = FeedMsg { feed: "ch/companies".into(), at, kind: FeedMsgKind::KeepAlive };
        assert!(matches!(decode_record(&encode(&msg)), Ok(Record::Msg(m)) if m.feed == "ch/companies"));
        assert_eq!(decode_record(br#"{"schema":9,"header":{}}"#).unwrap_err(), WireError::Schema { found: 9 });
        assert!(matches!(decode_record(br#"{"schema":1}"#), Err(WireError::Invalid(_))));
    }

    proptest! {
        /// A record from a hostile stream is an error, never a panic.
        #[test]
        fn any_bytes_are_a_message_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let _ = decode_record(&bytes);
        }
    }
}
