//! `feedtop bench --scenario relay` on a tiny load: checks the harness and
//! its baselines run end to end against real nats-server processes and the
//! real binary (as the resting viewer and the `idle` baseline's live run).
//! Not a benchmark: no timing decides it.

use std::time::Duration;

use feedtop::bench::relay::{relay, RelayOptions};

/// Not a benchmark: a tiny relay run goes through every part and its
/// baselines, and the outbox holds what the relay really publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_smoke() {
    // The children are this build's binary, not the test harness.
    std::env::set_var("FEEDTOP_BENCH_CHILD", env!("CARGO_BIN_EXE_feedtop"));
    let r = relay(RelayOptions {
        messages: 400,
        rate: 200.0,
        end_to_end: Duration::from_millis(500),
        viewers: 2,
        idle: Duration::from_millis(500),
        idle_history: 50,
    })
    .await
    .unwrap();
    let p = &r["catch_up_publish"];
    assert_eq!(p["messages"], 400, "{r}");
    assert_eq!(p["stream_messages"], 401, "every row and the heartbeat: {r}");
    assert!(p["baseline_bare_async_nats"]["messages_per_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(p["ratio_to_bare"].as_f64().unwrap() > 0.0, "{r}");
    let e = &r["end_to_end"];
    assert_eq!(e["applied_min"], e["frames_sent"], "every viewer applied every quote: {r}");
    assert!(e["latency_source_to_viewer_ms"]["samples"].as_u64().unwrap() > 0, "{r}");
    assert!(!e["baseline_direct_quotes"]["latency_write_to_model_ms"].is_null(), "{r}");
    assert!(e.get("ratio_p99_to_direct").is_some(), "{r}");
    let v = &r["viewer_idle"];
    assert!(v["caught_up_s"].is_number(), "the viewer showed the whole history: {r}");
    assert!(v["rss_mb_max"].as_f64().unwrap() > 0.0, "{r}");
    assert!(v["baseline_idle_live_run"]["cpu_percent_of_one_core_schedstat"].is_number(), "{r}");
    assert!(v["baseline_idle_live_run"]["rss_mb"].is_number(), "{r}");
}
