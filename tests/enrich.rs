//! The REST enrichment task against the loopback REST simulator: the limit
//! is never exceeded, the server's headers and 429s are obeyed, a restart
//! neither repeats nor forgets a call, the breaker opens and closes, a
//! contradicting profile is flagged, and the key never leaves its host.

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use common::temp_db;
use feedtop::enrich::{self, BreakerSettings, EnrichHandle, EnrichSettings, Limit};
use feedtop::feeds::secret::ApiKey;
use feedtop::model::enrich::{EnrichState, EnrichUpdate};
use feedtop::sim::rest::{RemainingHeader, RestPlan, RestSim, RestSimConfig};
use feedtop::store;
use serde_json::json;

const KEY: &str = "restkey-Jx82Pq";
const WAIT: Duration = Duration::from_secs(20);

fn settings(url: &str, calls: u32, per: Duration) -> EnrichSettings {
    let mut s = EnrichSettings::new(url, ApiKey::new(KEY).unwrap(), "CH_REST_API_KEY");
    s.limit = Limit { calls, per };
    s.timeout = Duration::from_secs(2);
    s.breaker = BreakerSettings { failures: 3, open_for: Duration::from_millis(300) };
    s.idle_poll = Duration::from_millis(20);
    s
}

fn sim_config(limit: u32, window: Duration) -> RestSimConfig {
    RestSimConfig { expected_key: Some(KEY.into()), limit, window, ..RestSimConfig::default() }
}

fn queue(db: &Path, numbers: &[String]) {
    let conn = store::open(db).unwrap();
    for n in numbers {
        store::enrich::enqueue(&conn, n, Utc::now()).unwrap();
    }
}

fn numbers(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{:08}", 10_000_000 + i)).collect()
}

fn queued(db: &Path) -> u64 {
    store::enrich::queue_len(&store::open(db).unwrap()).unwrap()
}

/// Waits until the task reports a state for which `done` holds.
async fn wait_state(handle: &mut EnrichHandle, done: impl Fn(&EnrichState, u64) -> bool) -> bool {
    let wanted = handle.status.wait_for(|s| done(&s.state, s.queued));
    tokio::time::timeout(WAIT, wanted).await.is_ok_and(|r| r.is_ok())
}

async fn drained(handle: &mut EnrichHandle) -> bool {
    wait_state(handle, |state, queued| *state == EnrichState::Idle && queued == 0).await
}

#[tokio::test]
async fn the_limit_is_never_exceeded_in_any_window_counted_at_the_simulator() {
    let per = Duration::from_secs(1);
    let sim = RestSim::start(sim_config(3, per)).await.unwrap();
    let (_dir, db) = temp_db();
    queue(&db, &numbers(6));
    let mut handle = enrich::spawn(settings(&sim.base_url(), 3, per), &db).unwrap();
    assert!(drained(&mut handle).await, "the queue drains");
    handle.stop(WAIT).await;
    let seen = sim.requests();
    assert_eq!(seen.len(), 12, "a profile and one page of officers each");
    assert!(seen.iter().all(|r| r.status == 200), "the simulator never had to refuse one: {seen:?}");
    // Any window at the simulator holds at most 3. The window is shorter
    // than the limit's by a margin: arrival times carry the scheduler's and
    // the network's delays, which only make calls look closer together.
    let window = per - Duration::from_millis(300);
    for (i, r) in seen.iter().enumerate() {
        let within = seen[i..].iter().filter(|s| s.at.duration_since(r.at) < window).count();
        assert!(within <= 3, "{within} requests within {window:?} from request {i}");
    }
    // Profiles (priority 0) before officers, first queued first.
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert!(
        paths[..6].iter().all(|p| !p.ends_with("/officers")) && paths[6..].iter().all(|p| p.ends_with("/officers"))
    );
    assert!(paths[..6].is_sorted(), "FIFO within a priority: {paths:?}");
}

#[tokio::test]
async fn the_servers_remaining_count_is_obeyed_in_either_spelling_and_so_is_a_429() {
    for spelling in [RemainingHeader::Remain, RemainingHeader::Remaining] {
        // The server allows 2 a second; our own limit would allow 100.
        let config = RestSimConfig { remaining_header: spelling, ..sim_config(2, Duration::from_secs(1)) };
        let sim = RestSim::start(config).await.unwrap();
        let (_dir, db) = temp_db();
        queue(&db, &numbers(3));
        let mut handle = enrich::spawn(settings(&sim.base_url(), 100, Duration::from_secs(1)), &db).unwrap();
        assert!(wait_state(&mut handle, |s, _| matches!(s, EnrichState::Paused { .. })).await, "{spelling:?}");
        assert!(drained(&mut handle).await);
        handle.stop(WAIT).await;
        let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200; 6], "{spelling:?}: paused at 0 remaining, never refused");
    }

    // A 429 (or a 403) without headers pauses for a window, then the call is made.
    for code in [429, 403] {
        let sim = RestSim::start(sim_config(100, Duration::from_secs(60))).await.unwrap();
        sim.push_plan(RestPlan::Status(code));
        let (_dir, db) = temp_db();
        queue(&db, &numbers(1));
        let mut handle = enrich::spawn(settings(&sim.base_url(), 100, Duration::from_millis(500)), &db).unwrap();
        assert!(wait_state(&mut handle, |s, _| matches!(s, EnrichState::Paused { .. })).await, "{code}");
        assert!(drained(&mut handle).await);
        handle.stop(WAIT).await;
        let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [code, 200, 200], "the refused call is made again after the pause");
    }
}

#[tokio::test]
async fn a_restart_mid_queue_neither_repeats_nor_forgets_a_call() {
    let sim = RestSim::start(sim_config(1000, Duration::from_secs(60))).await.unwrap();
    let companies = numbers(4);
    // 150 officers: two pages each, so a stop can fall between pages too.
    for n in &companies {
        sim.set_officer_count(n, 150);
    }
    let (_dir, db) = temp_db();
    queue(&db, &companies);
    let slow = settings(&sim.base_url(), 1, Duration::from_millis(150));
    let expected = 4 + 4 * 2;
    for stop_after in [3, 7, 10] {
        let handle = enrich::spawn(slow.clone(), &db).unwrap();
        assert!(sim.wait_for_requests(stop_after, WAIT).await);
        handle.stop(WAIT).await;
    }
    let mut handle = enrich::spawn(slow, &db).unwrap();
    assert!(drained(&mut handle).await);
    handle.stop(WAIT).await;
    let mut targets: Vec<String> = sim.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets.len(), expected, "{targets:#?}");
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len(), expected, "no call made twice");
    let conn = store::open(&db).unwrap();
    for n in &companies {
        assert_eq!(store::enrich::officers_of(&conn, n).unwrap().len(), 150, "{n}: both pages stored");
    }
}

#[tokio::test]
async fn the_breaker_opens_after_repeated_server_errors_then_one_trial_closes_it() {
    let sim = RestSim::start(sim_config(1000, Duration::from_secs(60))).await.unwrap();
    for _ in 0..3 {
        sim.push_plan(RestPlan::Status(502));
    }
    let (_dir, db) = temp_db();
    queue(&db, &numbers(1));
    let mut handle = enrich::spawn(settings(&sim.base_url(), 100, Duration::from_secs(1)), &db).unwrap();
    assert!(wait_state(&mut handle, |s, _| matches!(s, EnrichState::Open { .. })).await);
    assert!(drained(&mut handle).await, "the trial succeeded and the queue drained");
    handle.stop(WAIT).await;
    let seen = sim.requests();
    let statuses: Vec<u16> = seen.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [502, 502, 502, 200, 200]);
    // No call while open: the trial came at least the open period after the
    // third failure reached the simulator (a lower bound: delays only add).
    assert!(seen[3].at.duration_since(seen[2].at) >= Duration::from_millis(300));

    // A stall counts like a 5xx (the call's deadline).
    let sim = RestSim::start(sim_config(1000, Duration::from_secs(60))).await.unwrap();
    for _ in 0..3 {
        sim.push_plan(RestPlan::Stall);
    }
    let (_dir, db) = temp_db();
    queue(&db, &numbers(1));
    let mut quick = settings(&sim.base_url(), 100, Duration::from_secs(1));
    quick.timeout = Duration::from_millis(200);
    let mut handle = enrich::spawn(quick, &db).unwrap();
    assert!(wait_state(&mut handle, |s, _| matches!(s, EnrichState::Open { .. })).await);
    assert!(drained(&mut handle).await);
    handle.stop(WAIT).await;
}

#[tokio::test]
async fn a_profile_that_contradicts_the_change_is_flagged_on_it() {
    let sim = RestSim::start(sim_config(1000, Duration::from_secs(60))).await.unwrap();
    let (_dir, db) = temp_db();
    let conn = store::open(&db).unwrap();
    for (n, tp) in [("14829301", 1), ("SC612947", 2)] {
        conn.execute(
            "INSERT INTO strike_offs (company_number, company_name, change, to_status, to_detail, timepoint, received_at)
             VALUES (?1, 'X LTD', 'entered', 'active', 'active-proposal-to-strike-off', ?2, 'now')",
            rusqlite::params![n, tp],
        )
        .unwrap();
    }
    sim.put_profile("14829301", json!({"company_status": "active"}));
    sim.put_profile(
        "SC612947",
        json!({"company_status": "active", "company_status_detail": "active-proposal-to-strike-off"}),
    );
    sim.set_officer_count("SC612947", 3);
    queue(&db, &["14829301".into(), "SC612947".into()]);
    let mut handle = enrich::spawn(settings(&sim.base_url(), 100, Duration::from_secs(1)), &db).unwrap();
    assert!(drained(&mut handle).await);
    let mut updates = Vec::new();
    while let Ok(u) = handle.updates.try_recv() {
        updates.push(u);
    }
    handle.stop(WAIT).await;
    assert!(updates.contains(&EnrichUpdate::Profile {
        company_number: "14829301".into(),
        disagrees: Some("profile: active, not in the proposal".into())
    }));
    assert!(updates.contains(&EnrichUpdate::Profile { company_number: "SC612947".into(), disagrees: None }));
    assert!(updates.contains(&EnrichUpdate::Officers { company_number: "SC612947".into(), count: 3 }));
    let flag = |n: &str| -> Option<String> {
        conn.query_row("SELECT profile_disagrees FROM strike_offs WHERE company_number = ?1", [n], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(flag("14829301").as_deref(), Some("profile: active, not in the proposal"));
    assert_eq!(flag("SC612947"), None);
}

#[tokio::test]
async fn a_refused_key_stops_the_calls_and_changes_nothing_else() {
    let sim = RestSim::start(RestSimConfig { expected_key: Some("another".into()), ..RestSimConfig::default() })
        .await
        .unwrap();
    let (_dir, db) = temp_db();
    queue(&db, &numbers(2));
    let mut handle = enrich::spawn(settings(&sim.base_url(), 100, Duration::from_secs(1)), &db).unwrap();
    assert!(wait_state(&mut handle, |s, _| *s == EnrichState::AuthFailed).await);
    handle.stop(WAIT).await;
    assert_eq!(sim.requests().len(), 1, "one refusal, then no more calls");
    assert_eq!(queued(&db), 4, "the queue is kept for a run with a good key");
}

#[tokio::test]
async fn the_key_never_leaves_the_configured_host() {
    // Another host (127.0.0.2 is loopback too, and another origin).
    let elsewhere = RestSim::start_on("127.0.0.2:0".parse().unwrap(), RestSimConfig::default()).await.unwrap();
    let sim = RestSim::start(sim_config(1000, Duration::from_secs(60))).await.unwrap();
    sim.push_plan(RestPlan::Redirect(format!("{}/company/10000000", elsewhere.base_url())));
    let (_dir, db) = temp_db();
    queue(&db, &numbers(1));
    let mut handle = enrich::spawn(settings(&sim.base_url(), 100, Duration::from_secs(1)), &db).unwrap();
    assert!(drained(&mut handle).await);
    handle.stop(WAIT).await;
    assert!(elsewhere.requests().is_empty(), "the redirect to another host was not followed");
    // Not in the database or its WAL either.
    for file in [db.clone(), db.with_extension("db-wal")] {
        if let Ok(bytes) = std::fs::read(&file) {
            assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "{}", file.display());
        }
    }
    // And never in a debug print of the settings.
    assert!(!format!("{:?}", settings(&sim.base_url(), 1, Duration::from_secs(1))).contains(KEY));
}

/// The whole path: the stream's entered changes queue their companies with
/// the change, the task fetches them from a REST simulator that answers
/// with what the stream published, and the model gets each company's
/// officer count (the strike-off list's `officers N`) and the task's state.
#[tokio::test]
async fn the_pipeline_enriches_the_companies_that_entered_the_proposal() {
    let stream = common::sim_with(common::fixture_lines(), None).await;
    let rest = RestSim::start(RestSimConfig {
        expected_key: Some(KEY.into()),
        profiles: Some(stream.profile_source()),
        ..RestSimConfig::default()
    })
    .await
    .unwrap();
    let (_dir, db) = temp_db();
    let mut p = common::start(common::fast_settings(&stream.base_url(), None), &db)
        .with_enrichment(Some(settings(&rest.base_url(), 100, Duration::from_secs(1))))
        .unwrap();
    let entered = ["14829301", "SC612947", "OC431876", "NI678123", "12007733", "15338660"];
    let all_enriched =
        |m: &feedtop::model::Model| entered.iter().all(|n| m.enrich.of(n).is_some_and(|e| e.officers.is_some()));
    assert!(common::drive_until(&mut p, WAIT, all_enriched).await, "{:?}", p.model().enrich.companies);
    p.tick(Utc::now()).unwrap();
    let status = p.model().enrich.status.clone().expect("enrichment is on");
    let seen: Vec<String> = rest.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(status.calls, 12, "a profile and one page of officers for each, nothing twice: {seen:#?}");
    let (model, _) = p.shutdown().await;
    assert!(model.enrich.companies.values().all(|e| e.disagrees.is_none()), "the profiles agree with the stream");
    let paths: Vec<String> = rest.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.len(), 12);
    assert!(rest.requests().iter().all(|r| r.status == 200));
}

/// Answers that are not the API's (not JSON, invalid UTF-8, too big) drop
/// that one call with a warning; the queue goes on and nothing panics.
#[tokio::test]
async fn hostile_answers_drop_their_call_and_the_queue_goes_on() {
    let sim = RestSim::start(sim_config(1000, Duration::from_secs(60))).await.unwrap();
    sim.push_plan(RestPlan::Body(b"<html>not json</html>".to_vec()));
    sim.push_plan(RestPlan::Body(vec![0xff, 0xfe, b'{']));
    // A valid profile, 5 MiB long: refused for its size, not its form.
    let big = format!("{{\"company_status\":\"active\",\"padding\":\"{}\"}}", "x".repeat(5 << 20));
    sim.push_plan(RestPlan::Body(big.into_bytes()));
    let (_dir, db) = temp_db();
    queue(&db, &numbers(3));
    let mut handle = enrich::spawn(settings(&sim.base_url(), 100, Duration::from_secs(1)), &db).unwrap();
    assert!(drained(&mut handle).await);
    handle.stop(WAIT).await;
    assert_eq!(sim.requests().len(), 6, "each call made once: the bad answers are not retried");
    let conn = store::open(&db).unwrap();
    let profiles: i64 = conn.query_row("SELECT count(*) FROM company_profiles", [], |r| r.get(0)).unwrap();
    assert_eq!(profiles, 0, "no profile stored from a bad answer");
    let fetched: i64 = conn.query_row("SELECT count(*) FROM officer_fetches", [], |r| r.get(0)).unwrap();
    assert_eq!(fetched, 3, "the officers calls went on");
}

/// The real binary, headless, logging at trace level, with the REST key in
/// its variable and `[enrich]` pointing at the simulator: the companies are
/// enriched (the headless line says so) and the key, in any form, is on no
/// output, in no log line and not in the database. With a refused key the
/// line says `auth failed` and the stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_enriches_and_the_key_leaks_nowhere() {
    use base64::Engine as _;
    let stream = common::sim_with(common::fixture_lines(), None).await;
    for (key, accepted) in [(KEY, true), ("wrongrest-Tq71Vb", false)] {
        let rest = RestSim::start(RestSimConfig {
            expected_key: Some(KEY.into()),
            profiles: Some(stream.profile_source()),
            ..RestSimConfig::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("feedtop.db");
        let config = dir.path().join("config.toml");
        let text = format!("[enrich]\nkey_env = \"TEST_REST_KEY\"\nurl = \"{}\"\nlimit = \"50/1s\"\n", rest.base_url());
        std::fs::write(&config, text).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_feedtop"));
        cmd.env_remove("FEEDTOP_DB").env_remove("FEEDTOP_CONFIG").env_remove("FEEDTOP_CH_URL");
        cmd.args(["--headless", "--duration", "3s", "--interval", "500ms", "--ch-url", &stream.base_url()])
            .arg("--db")
            .arg(&db)
            .arg("--config")
            .arg(&config)
            .env("CH_STREAMING_API_KEY", "streamkey-unused")
            .env("TEST_REST_KEY", key)
            .env("RUST_LOG", "trace")
            .env("NO_COLOR", "1");
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(last["final"], true);
        if accepted {
            assert_eq!(last["enrich"]["queued"], 0, "{last}");
            assert_eq!(last["enrich"]["calls"], 12, "{last}");
            assert!(rest.requests().iter().all(|r| r.status == 200));
        } else {
            assert_eq!(last["enrich"]["state"], "auth failed", "{last}");
            assert_eq!(rest.requests().len(), 1, "one refusal, then no more calls");
            assert!(String::from_utf8_lossy(&out.stderr).contains("refused the key in TEST_REST_KEY"));
        }
        assert!(last["strike_off"]["entered"].as_u64().unwrap() >= 6, "the stream went on: {last}");
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
        let mut places = vec![("stdout", out.stdout.clone()), ("stderr", out.stderr.clone())];
        for file in [db.clone(), db.with_extension("db-wal"), db.with_extension("db-shm")] {
            if let Ok(bytes) = std::fs::read(&file) {
                places.push(("database", bytes));
            }
        }
        for (place, bytes) in places {
            let text = String::from_utf8_lossy(&bytes);
            for form in [key, basic.trim_end_matches('=')] {
                assert!(!text.contains(form), "{form} leaked to {place}");
            }
        }
        rest.shutdown().await;
    }
}

/// The limit's window outlives a restart: calls made just before it still
/// count, so the next run does not start a second window's worth at once.
#[tokio::test]
async fn the_limit_counts_the_calls_of_the_run_before_a_restart() {
    let per = Duration::from_secs(2);
    let sim = RestSim::start(sim_config(1000, Duration::from_secs(60))).await.unwrap();
    let (_dir, db) = temp_db();
    queue(&db, &numbers(3));
    let handle = enrich::spawn(settings(&sim.base_url(), 3, per), &db).unwrap();
    assert!(sim.wait_for_requests(3, WAIT).await);
    handle.stop(WAIT).await;
    let mut handle = enrich::spawn(settings(&sim.base_url(), 3, per), &db).unwrap();
    assert!(drained(&mut handle).await);
    handle.stop(WAIT).await;
    let seen = sim.requests();
    assert_eq!(seen.len(), 6);
    // The 4th call waited for the 1st to leave the window, although it was
    // the new run's first (a lower bound, less a margin for the 1st call's
    // own way to the simulator).
    assert!(seen[3].at.duration_since(seen[0].at) >= per - Duration::from_millis(50), "{:?}", seen[3].at - seen[0].at);
}

/// Only the changes in `on` queue their company: with `on = ["withdrawn"]`
/// the fixture's withdrawn companies are fetched, and none that only entered.
#[tokio::test]
async fn only_the_changes_in_on_queue_their_company() {
    let stream = common::sim_with(common::fixture_lines(), None).await;
    let rest = RestSim::start(sim_config(1000, Duration::from_secs(60))).await.unwrap();
    let (_dir, db) = temp_db();
    let mut on_withdrawn = settings(&rest.base_url(), 100, Duration::from_secs(1));
    on_withdrawn.on = vec![feedtop::model::strike_off::ChangeKind::Withdrawn];
    let mut p = common::start(common::fast_settings(&stream.base_url(), None), &db)
        .with_enrichment(Some(on_withdrawn))
        .unwrap();
    let done = |m: &feedtop::model::Model| m.enrich.of("SC612947").is_some_and(|e| e.officers.is_some());
    assert!(common::drive_until(&mut p, WAIT, done).await);
    let (model, _) = p.shutdown().await;
    use feedtop::model::strike_off::ChangeKind;
    let with = |kind: ChangeKind| -> std::collections::BTreeSet<String> {
        model.strike_offs.iter().filter(|c| c.kind == kind).map(|c| c.company_number.clone()).collect()
    };
    let withdrawn = with(ChangeKind::Withdrawn);
    let requested: std::collections::BTreeSet<String> = rest
        .requests()
        .into_iter()
        .map(|r| r.path.trim_start_matches("/company/").trim_end_matches("/officers").to_string())
        .collect();
    assert!(requested.is_subset(&withdrawn), "{requested:?} but withdrawn {withdrawn:?}");
    let only_entered: Vec<String> = with(ChangeKind::Entered).difference(&withdrawn).cloned().collect();
    assert!(!only_entered.is_empty() && only_entered.iter().all(|n| !requested.contains(n)), "{only_entered:?}");
}
