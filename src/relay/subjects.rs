//! Where each message goes on NATS, and the id JetStream de-duplicates it by.
//!
//! ```text
//! feedtop.<feed>.events             Companies House events (and any JSON events)
//! feedtop.<feed>.quotes.<symbol>    one quote per message
//! feedtop.<feed>.strikeoffs         strike-off changes the relay's tracker found
//! feedtop.<feed>.state              everything else: states, errors, gaps, pings
//! feedtop._relay.info               the relay's feed list, every minute (a heartbeat)
//! ```
//!
//! Feed names are letters, digits, `-`, `_` and `/` (see `config`), all
//! valid in a subject token; anything else (a symbol such as `PKN.WA`) is
//! percent-encoded, so a `.`, `*` or `>` in feed text cannot split a token
//! or become a wildcard.

use feedtop_proto::{FeedMsg, FeedMsgKind, ResumePoint};

/// The prefix every feedtop subject starts with.
pub const PREFIX: &str = "feedtop";
/// The relay's own announcements. No feed's subject ends in `.info`, so a
/// feed named `_relay` cannot collide with it.
pub const INFO_SUBJECT: &str = "feedtop._relay.info";
/// What a stream of feedtop messages holds.
pub const ALL: &str = "feedtop.>";
/// Strike-off changes of every feed (for `strike-offs --source nats://`).
pub const ALL_STRIKE_OFFS: &str = "feedtop.*.strikeoffs";

/// One message as it goes out: where, with which de-duplication id (when
/// the message has one of its own), and the `feedtop-proto` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub subject: String,
    pub msg_id: Option<String>,
    pub payload: Vec<u8>,
}

/// A subject token for feed text: kept when it is letters, digits, `-`,
/// `_` or `/`; every other byte as `%XX`.
pub fn token(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// The rows one feed message becomes: one per quote (each on its symbol's
/// subject), otherwise one.
pub fn rows(msg: &FeedMsg) -> Vec<OutboxRow> {
    let feed = token(msg.feed.as_str());
    let (resume, kind) = match &msg.kind {
        FeedMsgKind::Resumable { resume, inner } => (Some(resume), inner.as_ref()),
        kind => (None, kind),
    };
    match kind {
        FeedMsgKind::Quotes(quotes) if quotes.len() > 1 => quotes
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let one = FeedMsgKind::Quotes(vec![q.clone()]);
                let kind = match resume {
                    Some(r) => FeedMsgKind::Resumable { resume: r.clone(), inner: Box::new(one) },
                    None => one,
                };
                let part = FeedMsg { feed: msg.feed.clone(), at: msg.at, kind };
                let id = own_id(&feed, &part).map(|id| format!("{id}.{i}"));
                row(format!("{PREFIX}.{feed}.quotes.{}", token(&q.symbol)), id, &part)
            })
            .collect(),
        FeedMsgKind::Quotes(quotes) => {
            let symbol = quotes.first().map_or_else(|| "%00".to_string(), |q| token(&q.symbol));
            vec![row(format!("{PREFIX}.{feed}.quotes.{symbol}"), own_id(&feed, msg), msg)]
        }
        FeedMsgKind::Event(_) => vec![row(format!("{PREFIX}.{feed}.events"), own_id(&feed, msg), msg)],
        FeedMsgKind::StrikeOff(_) => vec![row(format!("{PREFIX}.{feed}.strikeoffs"), own_id(&feed, msg), msg)],
        _ => vec![row(format!("{PREFIX}.{feed}.state"), own_id(&feed, msg), msg)],
    }
}

fn row(subject: String, msg_id: Option<String>, msg: &FeedMsg) -> OutboxRow {
    OutboxRow { subject, msg_id, payload: feedtop_proto::wire::encode(msg) }
}

/// The de-duplication id a message has of its own: the same message read
/// again from the source after a relay restart gets the same id. An event
/// by its timepoint, a strike-off change by its event's, an SSE message by
/// its event id. Others get one made from their outbox `seq` ([`run_seq_id`]).
fn own_id(feed: &str, msg: &FeedMsg) -> Option<String> {
    if let Some(event) = msg.kind.event() {
        return Some(format!("{feed}.tp.{}", event.timepoint));
    }
    match &msg.kind {
        FeedMsgKind::StrikeOff(change) => Some(format!("{feed}.strike-off.{}", change.timepoint)),
        // Control characters and absurd lengths never become a resume id
        // (`UnusableResumeId`), so the id is a valid header value.
        FeedMsgKind::Resumable { resume: ResumePoint::EventId(id), .. } => Some(format!("{feed}.id.{}", token(id))),
        _ => None,
    }
}

/// An outbox row numbered by the relay: stored under `seq`, published
/// with `msg_id`, both fixed when the message is made. It goes to the store
/// and, at the same time, to the publisher (shared, not copied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMsg {
    pub seq: i64,
    pub subject: String,
    pub msg_id: String,
    pub payload: bytes::Bytes,
}

/// The id of a message without one of its own, as this build makes it:
/// its subject, the relay run's random number and its outbox `seq`.
///
/// The run's number is there because a message is published before its
/// row is committed: a relay killed in between has published `seq` N, and
/// the next run, numbering from what was committed, gives N to another
/// message. With the same id JetStream would drop that one as a repeat.
pub fn run_seq_id(subject: &str, run: u64, seq: i64) -> String {
    format!("{subject}#{run:x}.{seq}")
}

/// The id of a row an older build stored without one: its subject and
/// outbox `seq` (that build published only committed rows).
pub fn seq_id(subject: &str, seq: i64) -> String {
    format!("{subject}#{seq}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use feedtop_proto::{ConnState, Quote};

    fn msg(kind: FeedMsgKind) -> FeedMsg {
        FeedMsg { feed: "ch/companies".into(), at: Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap(), kind }
    }

    #[test]
    fn feed_text_cannot_split_a_token_or_become_a_wildcard() {
        assert_eq!(token("PKN"), "PKN");
        assert_eq!(token("ch/companies"), "ch/companies");
        assert_eq!(token("PKN.WA"), "PKN%2EWA");
        assert_eq!(token("a*b>c d"), "a%2Ab%3Ec%20d");
        assert_eq!(token("Ż"), "%C5%BB");
        assert_eq!(token(""), "%00", "an empty token is not a valid subject");
    }

    #[test]
    fn each_kind_goes_to_its_subject_with_its_own_id_where_it_has_one() {
        let line = r#"{"resource_kind":"company-profile","resource_id":"1","data":{"company_number":"1","company_name":"A","company_status":"active"},"event":{"timepoint":42,"type":"changed"}}"#;
        let event = feedtop_proto::ch::parse_event(line.as_bytes().to_vec()).unwrap();
        let resumable = FeedMsgKind::Resumable {
            resume: ResumePoint::Timepoint(42),
            inner: Box::new(FeedMsgKind::Event(Box::new(event))),
        };
        let r = rows(&msg(resumable));
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].subject.as_str(), r[0].msg_id.as_deref()),
            ("feedtop.ch/companies.events", Some("ch/companies.tp.42"))
        );
        assert_eq!(feedtop_proto::wire::decode(&r[0].payload).unwrap().feed.as_str(), "ch/companies");

        let state = rows(&msg(FeedMsgKind::State(ConnState::Live)));
        assert_eq!((state[0].subject.as_str(), state[0].msg_id.as_deref()), ("feedtop.ch/companies.state", None));
        assert_eq!(seq_id(&state[0].subject, 7), "feedtop.ch/companies.state#7");
        let (one_run, next_run) = (run_seq_id(&state[0].subject, 0xab, 7), run_seq_id(&state[0].subject, 0xcd, 7));
        assert_eq!(one_run, "feedtop.ch/companies.state#ab.7");
        assert_ne!(one_run, next_run, "the same seq in another run is another message");
    }

    #[test]
    fn a_frame_of_quotes_becomes_one_message_per_symbol() {
        let quotes = FeedMsgKind::Quotes(vec![Quote::new("PKN.WA", 1.0), Quote::new("KGHM", 2.0)]);
        let sse = FeedMsgKind::Resumable { resume: ResumePoint::EventId("e-9".into()), inner: Box::new(quotes) };
        let r = rows(&msg(sse));
        let subjects: Vec<_> = r.iter().map(|r| r.subject.as_str()).collect();
        assert_eq!(subjects, ["feedtop.ch/companies.quotes.PKN%2EWA", "feedtop.ch/companies.quotes.KGHM"]);
        let ids: Vec<_> = r.iter().map(|r| r.msg_id.as_deref().unwrap()).collect();
        assert_eq!(ids, ["ch/companies.id.e-9.0", "ch/companies.id.e-9.1"], "distinct ids for the parts");
        for row in &r {
            match feedtop_proto::wire::decode(&row.payload).unwrap().kind {
                FeedMsgKind::Resumable { inner, .. } => {
                    assert!(matches!(*inner, FeedMsgKind::Quotes(ref q) if q.len() == 1))
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
