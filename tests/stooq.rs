//! The polled stooq feed end to end, through the Pipeline, against the
//! loopback stooq simulator: quotes with estimated (Warsaw) times in the
//! model and the store, `N/D` symbols as no data, one request per poll for
//! every symbol, a reconnect that polls at once, and recovery from a 429
//! (obeying `Retry-After`), an HTML page, a 500 and a server that never answers.

mod common;

use std::time::Duration;

use chrono::TimeDelta;
use common::*;
use feedtop::app::FeedSpec;
use feedtop::feeds::poll::PollSettings;
use feedtop::feeds::{ConnState, PollFormat, QuoteTime};
use feedtop::model::Model;
use feedtop::sim::stooq::{StooqConfig, StooqPlan, StooqSim};

const SYMBOLS: [&str; 3] = ["pkn", "cdr", "xyz"];

/// Polls every `every` (under the config's 15 s floor: tests may), with the
/// fast recovery timings of the other integration tests.
fn poll(url: String, every: Duration) -> PollSettings {
    let symbols = SYMBOLS.iter().map(|s| s.to_string()).collect();
    let mut s = PollSettings::new(PollFormat::Stooq, url, symbols, every);
    s.reconnect = fast_reconnect();
    s.rate_limit_wait = Duration::from_millis(200);
    s.fit_quiet_period();
    s
}

async fn sim(polish: bool) -> StooqSim {
    StooqSim::start(StooqConfig { seed: Some(11), polish, ..StooqConfig::default() }).await.unwrap()
}

fn has_quotes(m: &Model) -> bool {
    m.quotes.get("PKN", "stooq").is_some() && m.quotes.get("CDR", "stooq").is_some()
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn quotes_arrive_with_estimated_warsaw_times_and_n_d_symbols_are_no_data() {
    let sim = sim(false).await;
    let (_dir, db) = temp_db();
    let settings = poll(sim.url(), Duration::from_millis(200));
    let quiet = settings.quiet_period();
    let mut p = start_feeds(vec![FeedSpec::poll("stooq", settings)], &db);
    assert!(drive_until(&mut p, WAIT, |m| has_quotes(m) && m.feeds[0].rtt.is_some()).await);
    let f = &p.model().feeds[0];
    assert_eq!(f.info.kind.label(), "poll/stooq");
    assert_eq!(f.state, ConnState::Live);
    assert_eq!(f.no_data, ["XYZ"], "N/D is shown as no data");
    assert_eq!((f.counts.malformed, f.last_error.as_deref()), (0, None), "not malformed, not an error");
    assert!(p.model().quotes.get("XYZ", "stooq").is_none());
    assert!(f.latency_estimated, "Warsaw times without a zone are estimates (shown with ~)");
    assert_eq!(f.stall_after, quiet, "quiet between polls is not a stall");
    let pkn = &p.model().quotes.get("PKN", "stooq").unwrap().quote;
    assert!(matches!(pkn.time, Some(QuoteTime::Estimated(_))), "{:?}", pkn.time);
    // The simulator stamps Warsaw's wall clock now: read with the Warsaw
    // rules it is now again. A wrong zone or DST rule is an hour or two off.
    let stamped = pkn.time.and_then(QuoteTime::as_utc).unwrap();
    assert!((chrono::Utc::now() - stamped).abs() < TimeDelta::minutes(10), "{stamped}");
    assert!(pkn.open.is_some() && pkn.high.is_some() && pkn.low.is_some() && pkn.volume.is_some());
    // The simulator's quotes change every poll, so each poll adds to the history.
    assert!(drive_until(&mut p, WAIT, |m| m.quotes.get("PKN", "stooq").unwrap().history.len() >= 3).await);
    p.shutdown().await;

    // Stored with the estimate flag, and read back as estimates next time.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = conn
        .prepare("SELECT symbol, time_is_estimate FROM quotes_latest WHERE feed = 'stooq' ORDER BY symbol")
        .unwrap();
    let rows: Vec<(String, bool)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(rows, [("CDR".to_string(), true), ("PKN".to_string(), true)]);
    let p = start_feeds(vec![FeedSpec::poll("stooq", poll("http://127.0.0.1:9".into(), HOUR))], &db);
    let restored = &p.model().quotes.get("PKN", "stooq").unwrap().quote;
    assert!(matches!(restored.time, Some(QuoteTime::Estimated(_))), "{:?}", restored.time);
    p.shutdown().await;
}

#[tokio::test]
async fn stooq_pl_answers_in_polish_and_reads_the_same() {
    let sim = sim(true).await;
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::poll("stooq", poll(sim.url(), Duration::from_millis(200)))], &db);
    assert!(drive_until(&mut p, WAIT, |m| has_quotes(m) && m.feeds[0].no_data == ["XYZ"]).await);
    assert_eq!(p.model().feeds[0].counts.malformed, 0);
    p.shutdown().await;
}

/// With an hour between polls, every request after the first is the
/// reconnect's: one each, at once, for all the symbols.
#[tokio::test]
async fn one_request_per_poll_for_every_symbol_and_a_reconnect_polls_at_once() {
    let sim = sim(false).await;
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::poll("stooq", poll(sim.url(), HOUR))], &db);
    // Each answer moves both known prices: two events a poll.
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].counts.events == 2).await);
    assert_eq!(sim.request_count(), 1);
    p.reconnect(&p.model().feeds[0].info.name);
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].counts.events == 4).await, "polled at once");
    p.reconnect(&p.model().feeds[0].info.name);
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].counts.events == 6).await);
    assert_eq!(sim.request_count(), 3, "one request per poll");
    for request in sim.requests() {
        assert_eq!(request.raw_symbols, "pkn+cdr+xyz", "all symbols in one request: {}", request.target);
        assert!(request.target.starts_with("/q/l/?s=pkn+cdr+xyz&f=sd2t2ohlcv&h&e=csv"), "{}", request.target);
    }
    assert_eq!(p.model().feeds[0].state, ConnState::Live);
    p.shutdown().await;
}

#[tokio::test]
async fn a_429_backs_off_for_its_retry_after_then_polling_resumes() {
    let sim = sim(false).await;
    sim.push_plan(StooqPlan::RateLimited { retry_after: Some("2".into()) });
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::poll("stooq", poll(sim.url(), Duration::from_millis(100)))], &db);
    assert!(drive_until(&mut p, WAIT, |m| matches!(m.feeds[0].state, ConnState::Backoff { .. })).await);
    let f = &p.model().feeds[0];
    let error = f.last_error.clone().unwrap();
    assert!(error.contains("429"), "{error}");
    // The server's 2 s, not the 100 ms interval nor the 20 ms backoff.
    let wait = f.state.retry_at().unwrap() - f.state_since.unwrap();
    assert!(wait > TimeDelta::milliseconds(1500), "{wait}");
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].state == ConnState::Live && has_quotes(m)).await);
    let requests = sim.requests();
    assert!(requests[1].at - requests[0].at >= Duration::from_millis(1900), "no request before Retry-After");
    assert_eq!(p.model().feeds[0].reconnects(), 1);
    p.shutdown().await;
}

#[tokio::test]
async fn an_html_page_and_a_500_are_the_feeds_error_then_it_recovers() {
    let sim = sim(false).await;
    sim.push_plan(StooqPlan::Html { code: 200 });
    sim.push_plan(StooqPlan::Status { code: 500, body: "database is down".into() });
    let (_dir, db) = temp_db();
    let mut p = start_feeds(vec![FeedSpec::poll("stooq", poll(sim.url(), Duration::from_millis(100)))], &db);
    let html_seen = drive_until(&mut p, WAIT, |m| {
        m.feeds[0].last_error.as_deref().is_some_and(|e| e.contains("HTML page"))
            && matches!(m.feeds[0].state, ConnState::Backoff { .. })
    })
    .await;
    assert!(html_seen, "{:?}", p.model().feeds[0].last_error);
    assert!(p.model().feeds[0].last_error.as_deref().unwrap().contains("Service Unavailable"), "the page's title");
    assert!(
        drive_until(&mut p, WAIT, |m| m.feeds[0].last_error.as_deref().is_some_and(|e| e.contains("500"))).await,
        "{:?}",
        p.model().feeds[0].last_error
    );
    assert!(p.model().feeds[0].last_error.as_deref().unwrap().contains("database is down"));
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].state == ConnState::Live && has_quotes(m)).await);
    let f = &p.model().feeds[0];
    assert_eq!((f.reconnects(), f.counts.malformed), (2, 0), "errors, not malformed rows");
    p.shutdown().await;
}

#[tokio::test]
async fn a_server_that_never_answers_is_given_up_on_by_the_response_deadline() {
    let sim = sim(false).await;
    sim.push_plan(StooqPlan::Mute);
    sim.push_plan(StooqPlan::Delayed { delay: HOUR, then: Box::new(StooqPlan::Serve) });
    let (_dir, db) = temp_db();
    let mut settings = poll(sim.url(), Duration::from_millis(100));
    settings.reconnect.response_timeout = Duration::from_millis(300);
    settings.fit_quiet_period();
    let mut p = start_feeds(vec![FeedSpec::poll("stooq", settings)], &db);
    assert!(drive_until(&mut p, WAIT, |m| m.feeds[0].state == ConnState::Live && has_quotes(m)).await);
    let f = &p.model().feeds[0];
    assert_eq!(f.reconnects(), 2, "two requests given up on");
    assert!(f.last_error.as_deref().unwrap().contains("no response head within"), "{:?}", f.last_error);
    assert_eq!(sim.request_count(), 3);
    p.shutdown().await;
}

/// Everything one answer holds is stamped with the time the answer came in,
/// however long the core takes to accept it: here the channel to the core
/// holds one message and the core takes each only after its clock moved on
/// by 5 s. The old feed stamped each message as it sent it, so the no-data
/// list of the same answer came 5 s "later" than its quotes.
#[tokio::test]
async fn an_answer_keeps_its_arrival_time_while_the_core_is_slow() {
    use chrono::{TimeZone, Utc};
    use feedtop::feeds::poll::PollConnector;
    use feedtop::feeds::supervisor::{supervise, FeedLink};
    use feedtop::feeds::FeedMsgKind;
    use std::sync::{Arc, Mutex};

    let sim = sim(false).await;
    let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 16, 0, 0).unwrap();
    let now = Arc::new(Mutex::new(t0));
    let clock = now.clone();
    let (tx, mut core) = tokio::sync::mpsc::channel(1);
    let (_control_tx, control) = tokio::sync::mpsc::channel(1);
    let link = FeedLink::new("test".into(), tx, control).with_clock(Arc::new(move || *clock.lock().unwrap()));
    let feed = tokio::spawn(supervise(link, fast_reconnect(), PollConnector::new(poll(sim.url(), HOUR)).unwrap()));

    async fn next(core: &mut tokio::sync::mpsc::Receiver<feedtop::feeds::FeedMsg>) -> feedtop::feeds::FeedMsg {
        tokio::time::timeout(WAIT, core.recv()).await.expect("a message in time").expect("the feed runs")
    }
    let connecting = next(&mut core).await;
    assert!(matches!(connecting.kind, FeedMsgKind::State(ConnState::Connecting)), "{connecting:?}");
    // Live is sent once the answer is in: it was read at t0.
    let live = next(&mut core).await;
    assert!(matches!(live.kind, FeedMsgKind::State(ConnState::Live)), "{live:?}");
    assert_eq!(live.at, t0);
    let mut kinds = Vec::new();
    for step in 1..=3 {
        *now.lock().unwrap() = t0 + TimeDelta::seconds(5 * step);
        let msg = next(&mut core).await;
        assert_eq!(msg.at, t0, "stamped when the answer came, not when the core took it: {msg:?}");
        kinds.push(msg.kind);
    }
    assert!(
        matches!(&kinds[..], [FeedMsgKind::Rtt(_), FeedMsgKind::Quotes(q), FeedMsgKind::NoData(n)] if q.len() == 2 && n == &["XYZ"]),
        "{kinds:?}"
    );
    feed.abort();
}
