//! `feedtop bench`: end-to-end scenarios against loopback servers, each
//! printed as one JSON object (with `--json`) or one readable line, each but
//! soak with a baseline measured in the same run and feedtop's ratio to it
//! (`baseline_…` and `ratio_…` keys; the bare clients are in `baseline.rs`).
//!
//! Benchmarks measure; tests assert behaviour. Nothing here runs in `cargo test`
//! except tiny smoke runs that check the harness and its baselines work.

mod baseline;
pub mod firehose;
pub mod nats_baseline;
pub mod quote_firehose;
pub mod relay;
mod scenarios;

use std::time::Duration;

use serde_json::Value;

pub use scenarios::{catch_up, flood, full_model, idle, quotes, render, soak, startup, steady, QUOTE_SYMBOLS};

/// The scenarios, in the order `--scenario all` runs them. `soak` and
/// `flood` are run only by name: they are long by design.
pub const SCENARIOS: &[&str] = &["render", "startup", "catch-up", "steady", "quotes", "idle"];

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Events for catch-up, flood and the start-up database.
    pub events: usize,
    /// How long steady state, quotes and idle run.
    pub duration: Duration,
    /// Events per second in steady state and soak (default 1,000); quote
    /// frames per second in quotes (default 5,000: 50 symbols × 100).
    pub rate: Option<f64>,
    /// Catch-up stores only the fields that matter.
    pub fields_only: bool,
}

/// Runs one scenario by name and returns its figures.
pub async fn run(name: &str, options: &BenchOptions) -> anyhow::Result<Value> {
    match name {
        "catch-up" => catch_up(options.events, options.fields_only).await,
        "steady" => steady(options.rate.unwrap_or(1000.0), options.duration).await,
        "quotes" => quotes(options.rate.unwrap_or(5000.0), options.duration).await,
        "render" => render(),
        "idle" => idle(options.duration).await,
        "startup" => startup(options.events).await,
        "soak" => soak(options.rate.unwrap_or(1000.0), options.duration).await,
        "flood" => flood(options.events).await,
        "relay" => relay::relay(relay_options(options)).await,
        other => anyhow::bail!(
            "unknown scenario {other:?}; choose one of: {}, soak, flood, relay, all",
            SCENARIOS.join(", ")
        ),
    }
}

/// `--events`' default (catch-up's million): the relay part publishes
/// [`RELAY_DEFAULT_MESSAGES`] instead unless `--events` says otherwise.
const CLI_DEFAULT_EVENTS: usize = 1_000_000;
/// Messages the relay's catch-up publish drains by default.
pub const RELAY_DEFAULT_MESSAGES: usize = 200_000;
/// The relay's end-to-end part sends for `--duration`, at most this long
/// (the viewer-at-rest part takes the whole `--duration`).
const RELAY_END_TO_END_MAX: Duration = Duration::from_secs(20);

fn relay_options(options: &BenchOptions) -> relay::RelayOptions {
    let messages = if options.events == CLI_DEFAULT_EVENTS { RELAY_DEFAULT_MESSAGES } else { options.events };
    relay::RelayOptions {
        messages,
        rate: options.rate.unwrap_or(5000.0),
        end_to_end: options.duration.min(RELAY_END_TO_END_MAX),
        // `FEEDTOP_BENCH_VIEWERS=1` (1 to 100): how the latency depends on
        // the viewers sharing this process and its two cores.
        viewers: std::env::var("FEEDTOP_BENCH_VIEWERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|n| (1..=100).contains(n))
            .unwrap_or(relay::VIEWERS),
        idle: options.duration,
        idle_history: relay::IDLE_HISTORY,
    }
}

/// `name: key=value key=value …` for people; `--json` prints the object.
pub fn human(result: &Value) -> String {
    let name = result["scenario"].as_str().unwrap_or("?");
    let mut parts = Vec::new();
    if let Some(map) = result.as_object() {
        for (k, v) in map.iter().filter(|(k, _)| k.as_str() != "scenario") {
            parts.push(format!("{k}={}", compact(v)));
        }
    }
    format!("{name}: {}", parts.join("  "))
}

fn compact(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() != 0.0 => format!("{f:.3}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Object(map) => {
            let inner: Vec<String> = map.iter().map(|(k, v)| format!("{k}:{}", compact(v))).collect();
            format!("{{{}}}", inner.join(" "))
        }
        other => other.to_string(),
    }
}
