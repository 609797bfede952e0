//! The built-in demo: every protocol feedtop speaks, simulated on loopback.
//!
//! Companies House starts with an hour of history (so every pane has
//! something from the first frame), then publishes about one event a second.
//! Its timepoints continue after whatever the demo database already holds, so
//! a second demo run resumes instead of seeing only "duplicates". Beside it
//! run a wig80 WebSocket server (naive timestamps, as the real one), a carbon
//! WebSocket server (token check, the frames the real code sends) and an SSE
//! endpoint (documented framing with ids and the subscription flow), and a
//! stooq CSV quote server polled every few seconds. With `--chaos` the
//! streaming simulators also fail at random about once a minute, each in its
//! own protocol's ways.

use std::time::Duration;

use chrono::{TimeDelta, Utc};

use crate::app::FeedSpec;
use crate::config::Settings;
use crate::feeds::companies_house::ChSettings;
use crate::feeds::poll::PollSettings;
use crate::feeds::quote::{Dialect, PollFormat};
use crate::feeds::secret::ApiKey;
use crate::feeds::sse::SseSettings;
use crate::feeds::websocket::WsSettings;
use crate::sim::carbon::{CarbonConfig, CarbonShape, CarbonSim};
use crate::sim::chaos::Chaos;
use crate::sim::companies_house::{ChSim, ChSimConfig};
use crate::sim::company_gen::{CompanyGen, GeneratorConfig};
use crate::sim::rest::{RestSim, RestSimConfig};
use crate::sim::sse::{SseConfig, SseShape, SseSim, SSE_TOPIC};
use crate::sim::sse_subscribe::SseSubscribeConfig;
use crate::sim::stooq::{StooqConfig, StooqSim};
use crate::sim::wig80::{Wig80Config, Wig80Sim};
use crate::sim::ws::WsScript;
use crate::store;

/// Events of history served first.
const HISTORY: usize = 240;
/// Lines the Companies House simulator keeps for replay: an hour at the
/// demo's one event a second (~1.5 KB each, ~5 MB), plenty for a client that
/// reconnects within seconds. The default (200,000, ~300 MB) is for tests.
const REPLAY_LINES: usize = 3_600;
/// The stream the demo's Companies House feed watches.
const DEMO_STREAM: &str = "/companies";
/// The demo's stooq poll interval: faster than a real feed may poll (the
/// config's floor is 15 s), so the demo moves; it is our own loopback server.
const STOOQ_EVERY: Duration = Duration::from_secs(5);
/// The demo's carbon/SSE token (the simulators accept only this one).
const DEMO_TOKEN: &str = "demo-token";

/// The running simulators; dropping this stops them.
pub struct Demo {
    _companies_house: ChSim,
    _rest: RestSim,
    _wig80: Wig80Sim,
    _carbon: CarbonSim,
    _sse: SseSim,
    _stooq: StooqSim,
}

/// Starts the simulators and points every feed at them.
pub async fn start(mut settings: Settings) -> anyhow::Result<(Settings, Demo)> {
    let feed = crate::app::companies_house_feed_name(DEMO_STREAM);
    let (resume_after, queued) = {
        let conn = store::open(&settings.db_path)?;
        let sqlite = |e| store::StoreError::from_sqlite(&settings.db_path, e);
        (store::queries::cursor(&conn, &feed).map_err(sqlite)?, store::enrich::queued_states(&conn).map_err(sqlite)?)
    };
    let mut generator = CompanyGen::new(None);
    if let Some(tp) = resume_after {
        generator.resume_after(tp);
    }
    let backlog = generator.history(HISTORY, Utc::now(), TimeDelta::seconds(15));
    let companies_house = ChSim::start(ChSimConfig {
        expected_key: None,
        backlog,
        live_from_start: true,
        heartbeat: Duration::from_secs(30),
        generator: Some(GeneratorConfig { events_per_sec: 1.0, seed: None }),
        chaos: settings.chaos,
        max_log_lines: REPLAY_LINES,
    })
    .await?;
    let companies = ChSettings::new(companies_house.base_url(), DEMO_STREAM, None);
    // The REST API beside it answers with the profiles the stream published,
    // so the enrichment (and the detail view) is full without a key.
    let rest = RestSim::start(RestSimConfig {
        expected_key: Some(DEMO_TOKEN.into()),
        profiles: Some(companies_house.profile_source()),
        seed: rand_seed(),
        ..RestSimConfig::default()
    })
    .await?;
    // Companies an earlier demo queued and did not fetch are not in this
    // run's stream: the REST simulator answers with their stored state, so
    // they do not show as contradicting the stream.
    for q in queued {
        let profile = serde_json::json!({
            "company_number": q.company_number,
            "company_name": q.company_name,
            "company_status": q.company_status,
            "company_status_detail": q.company_status_detail,
        });
        rest.put_profile(&q.company_number, profile);
    }
    let demo_key = ApiKey::new(DEMO_TOKEN).ok_or_else(|| anyhow::anyhow!("the demo's token is empty"))?;
    settings.enrich = Some(crate::enrich::EnrichSettings::new(rest.base_url(), demo_key, "the demo's key"));
    settings.enrich_off = None;

    let wig80 = Wig80Sim::start(Wig80Config {
        snapshot_every: Duration::from_secs(2),
        protocol_ping_every: Some(Duration::from_secs(20)),
        naive_timestamps: true,
        seed: None,
    })
    .await?;
    let carbon = CarbonSim::start(CarbonConfig {
        token: DEMO_TOKEN.into(),
        shape: CarbonShape::Actual,
        publish_every: Duration::from_millis(1500),
        reap_without_ping: Some(Duration::from_secs(30)),
        kafka_down: false,
        seed: None,
    })
    .await?;
    // The documented 254Carbon server: a connection gets only the topics it
    // subscribed to, so the demo's feed goes through the subscription flow.
    let subscribe = SseSubscribeConfig { required: true, ..SseSubscribeConfig::default() };
    let sse = SseSim::start_with(
        SseConfig {
            token: DEMO_TOKEN.into(),
            shape: SseShape::Documented,
            publish_every: Duration::from_secs(3),
            heartbeat_after: Duration::from_secs(30),
            retry: Some(2000),
            seed: None,
        },
        subscribe,
    )
    .await?;

    let stooq = StooqSim::start(StooqConfig::default()).await?;
    // `xyz` is a symbol the provider does not know: shown as "no data".
    let symbols = ["pkn", "pko", "cdr", "kgh", "xyz"].map(String::from).to_vec();
    let stooq_feed = PollSettings::new(PollFormat::Stooq, stooq.url(), symbols, STOOQ_EVERY);

    let token = ApiKey::new(DEMO_TOKEN);
    let mut carbon_ws = WsSettings::new(carbon.url(), Dialect::Carbon);
    carbon_ws.token = token.clone();
    let mut sse_settings = SseSettings::new(sse.url());
    sse_settings.token = token;
    sse_settings.topics = vec![SSE_TOPIC.to_string()];
    settings.feeds = vec![
        FeedSpec::companies_house(feed, companies),
        FeedSpec::websocket("wig80", WsSettings::new(wig80.url(), Dialect::Wig80)),
        FeedSpec::websocket("carbon", carbon_ws),
        FeedSpec::sse("carbon-sse", sse_settings),
        FeedSpec::poll("stooq", stooq_feed),
    ];
    if settings.chaos {
        // Healthy frames before each connection's fault: about a minute at
        // each simulator's pace, as measured in the demo (wig80 ~0.6 frames/s:
        // a snapshot every 2 s and pongs; carbon ~6/s; SSE ~3 events/s).
        wig80.set_chaos(Some(Chaos::new(25..55, None)));
        carbon.set_chaos(Some(Chaos::new(250..550, None)));
        sse.set_chaos(Some(Chaos::new(150..300, None)));
    }
    settings.missing_tokens.clear();
    if !settings.set_aside.is_empty() {
        tracing::info!(
            "demo: the config file's feeds are not run ({}); run without --demo to watch them",
            settings.set_aside.join(", ")
        );
    }
    tracing::info!("demo: simulated feeds on 127.0.0.1 (Companies House at {})", companies_house.base_url());
    let demo = Demo {
        _companies_house: companies_house,
        _rest: rest,
        _wig80: wig80,
        _carbon: carbon,
        _sse: sse,
        _stooq: stooq,
    };
    Ok((settings, demo))
}

/// The demo's officers differ from run to run, as its companies do.
fn rand_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
