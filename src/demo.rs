//! The built-in demo: a simulated Companies House server on loopback.
//!
//! It starts with an hour of history (so every pane has something from the
//! first frame), then publishes about one event a second with the occasional
//! fault. Its timepoints continue after whatever the demo database already
//! holds, so a second demo run resumes instead of seeing only "duplicates".

use std::time::Duration;

use chrono::{TimeDelta, Utc};

use crate::config::Settings;
use crate::sim::companies_house::{ChSim, ChSimConfig};
use crate::sim::company_gen::{CompanyGen, GeneratorConfig};
use crate::store;

/// Events of history served first.
const HISTORY: usize = 240;

/// Starts the simulator and points the Companies House settings at it.
pub async fn start(mut settings: Settings) -> anyhow::Result<(Settings, Option<ChSim>)> {
    let feed = crate::app::companies_house_feed_name(&settings.ch.stream);
    let resume_after = {
        let conn = store::open(&settings.db_path)?;
        store::queries::cursor(&conn, &feed).map_err(|e| store::StoreError::from_sqlite(&settings.db_path, e))?
    };
    let mut generator = CompanyGen::new(None);
    if let Some(tp) = resume_after {
        generator.resume_after(tp);
    }
    let backlog = generator.history(HISTORY, Utc::now(), TimeDelta::seconds(15));
    let sim = ChSim::start(ChSimConfig {
        expected_key: None,
        backlog,
        live_from_start: true,
        heartbeat: Duration::from_secs(30),
        generator: Some(GeneratorConfig { events_per_sec: 1.0, seed: None }),
        chaos: true,
    })
    .await?;
    settings.ch.base_url = sim.base_url();
    settings.ch.key = None;
    tracing::info!("demo: simulated Companies House stream at {}", sim.base_url());
    Ok((settings, Some(sim)))
}
