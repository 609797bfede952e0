//! The Companies House client against the simulator's scripted faults,
//! below the pipeline: the supervisor and the connector alone.

use std::time::Duration;

use feedtop::feeds::companies_house::{ApiKey, ChConnector, ChSettings};
use feedtop::feeds::supervisor::{supervise, FeedLink};
use feedtop::feeds::{ConnState, FeedMsgKind};
use feedtop::sim::companies_house::{ChSim, ChSimConfig, ConnPlan};
use tokio::sync::mpsc;
use tokio::time as ttime;

const FIXTURE: &str = include_str!("fixtures/ch-companies-sample.ndjson");
/// Generous: only reached when a test is failing.
const WAIT: Duration = Duration::from_secs(10);

fn fixture_lines() -> Vec<String> {
    FIXTURE.lines().filter(|l| !l.trim().is_empty()).map(String::from).collect()
}

fn fixture_timepoints() -> Vec<i64> {
    fixture_lines()
        .iter()
        .filter_map(|l| feedtop_proto::ch::parse_event(l.as_bytes().to_vec()).ok())
        .map(|e| e.timepoint)
        .collect()
}

fn config(backlog: Vec<String>, live_from_start: bool) -> ChSimConfig {
    ChSimConfig { backlog, live_from_start, heartbeat: Duration::from_secs(3600), ..ChSimConfig::default() }
}

/// End to end with the real client: scripted cuts and errors cost no event
/// and deliver none twice.
#[tokio::test]
async fn the_feed_client_survives_scripted_faults() {
    let sim =
        ChSim::start(ChSimConfig { expected_key: Some("k".into()), ..config(fixture_lines(), true) }).await.unwrap();
    for plan in [
        ConnPlan::CutAfter { events: 5, mid_line: true },
        ConnPlan::Status {
            code: 503,
            retry_after: None,
            body: "<html></html>".into(),
            content_type: "text/html".into(),
        },
        ConnPlan::CutAfter { events: 9, mid_line: false },
        ConnPlan::Refuse,
        ConnPlan::Status {
            code: 429,
            retry_after: Some("0".into()),
            body: String::new(),
            content_type: "text/plain".into(),
        },
    ] {
        sim.push_plan(plan);
    }
    let mut settings = ChSettings::new(sim.base_url(), "/companies", ApiKey::new("k"));
    settings.reconnect.backoff_base = Duration::from_millis(10);
    settings.reconnect.backoff_cap = Duration::from_millis(40);
    settings.reconnect.read_timeout = WAIT;
    let (tx, mut rx) = mpsc::channel(64);
    let (_control_tx, control_rx) = mpsc::channel(1);
    let timings = settings.reconnect.clone();
    let connector = ChConnector::new(settings, None).unwrap();
    tokio::spawn(supervise(FeedLink::new("test".into(), tx, control_rx), timings, connector));
    let expected = fixture_timepoints();
    let mut got = Vec::new();
    let mut duplicates = 0;
    while got.len() < expected.len() {
        let msg = ttime::timeout(WAIT, rx.recv()).await.expect("feed stalled").expect("feed ended");
        if let Some(ev) = msg.kind.event() {
            got.push(ev.timepoint);
        }
        match msg.kind {
            FeedMsgKind::Duplicate { .. } => duplicates += 1,
            FeedMsgKind::State(ConnState::AuthFailed { .. }) => panic!("the key was refused"),
            _ => {}
        }
    }
    assert_eq!(got, expected, "every event exactly once, in order");
    assert!(duplicates >= 2, "each resume replays the last event: {duplicates}");
    assert!(sim.requests().iter().skip(1).all(|r| r.timepoint.is_some()), "reconnects resume");
    assert_eq!(sim.connections(), 6);
}
