//! The `feedtop` binary: parse the command line, pick a front end, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use feedtop::app::{Pipeline, PipelineConfig, ViewerStore};
use feedtop::cli::{BenchArgs, Cli, Cmd, RelayArgs, RunArgs, SourceArg, StrikeOffsArgs};
use feedtop::config::{self, FileConfig, Paths, Settings};
use feedtop::headless::{self, HeadlessOptions};
use feedtop::store::WriterSettings;
use feedtop::{demo, export, tui};

/// Exit status of a settings mistake (a flag or the config file), as clap
/// uses for its own usage errors; failures at run time exit with 1.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A value out of its range (or an unusable URL) is one line naming
        // the flag and what it accepts; clap's blank line and tip add nothing.
        Err(e) if e.kind() == clap::error::ErrorKind::ValueValidation => {
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or_default());
            return ExitCode::from(USAGE);
        }
        Err(e) => e.exit(),
    };
    let json_log = cli.run.log_format == feedtop::logging::LogFormat::Json;
    let result = match cli.command {
        Some(Cmd::StrikeOffs(args)) => strike_offs(args),
        Some(Cmd::Bench(args)) => bench(args),
        Some(Cmd::Record(args)) => watch(args.run, Mode::Record(args.to)),
        Some(Cmd::Relay(args)) => watch(args.run.clone(), Mode::Relay(args)),
        None => watch(cli.run, Mode::Watch),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote feed text (a server's error body, a close reason).
            if json_log {
                say(&feedtop::logging::json_error_line(&format!("feedtop: {e:#}")));
            } else {
                say(&format!("feedtop: {}", feedtop::sanitize::for_terminal(&format!("{e:#}"))));
            }
            let usage = e.downcast_ref::<config::ConfigError>().is_some_and(config::ConfigError::is_usage);
            if usage {
                ExitCode::from(USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A line on stderr; a terminal that is gone (SIGHUP) is not a reason to
/// panic, which `eprintln!` would.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Whether the error is stdout's reader having gone away (csv and serde_json
/// wrap the I/O error without exposing it as a source).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|cause| {
        let csv_io = cause.downcast_ref::<csv::Error>().and_then(|e| match e.kind() {
            csv::ErrorKind::Io(io) => Some(io.kind()),
            _ => None,
        });
        let json_io = cause.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind);
        let io = cause.downcast_ref::<std::io::Error>().map(std::io::Error::kind);
        [io, csv_io, json_io].contains(&Some(BrokenPipe))
    })
}

fn load_file_config(explicit: Option<&std::path::Path>, paths: Option<&Paths>) -> anyhow::Result<FileConfig> {
    Ok(match (explicit, paths) {
        (Some(path), _) => FileConfig::load(path, true)?,
        (None, Some(p)) => FileConfig::load(&p.config_file, false)?,
        (None, None) => FileConfig::default(),
    })
}

/// What a run does besides watching.
enum Mode {
    Watch,
    /// `feedtop record --to FILE`.
    Record(std::path::PathBuf),
    /// `feedtop relay --nats URL`.
    Relay(Box<RelayArgs>),
}

/// The NATS settings of a relay or a viewer: the URL, credentials from the
/// environment, and the flags.
fn nats_settings(url: &str, args: &RunArgs, file: &FileConfig) -> anyhow::Result<feedtop::relay::NatsSettings> {
    let mut settings = feedtop::relay::NatsSettings::new(url);
    // The file's [nats] table (credentials from the environment win), then the flags.
    file.nats.apply_to(&mut settings, &|name| std::env::var(name).ok())?;
    if let Some(ca) = &args.nats_ca {
        settings.tls_ca = Some(ca.clone());
    }
    if let Some(stream) = &args.nats_stream {
        settings.stream = stream.clone();
    }
    if let Some(since) = args.since {
        settings.since = since;
    }
    Ok(settings)
}

/// Watches the feeds (or replays `--source`), writing every message to
/// a recording or the relay's NATS stream as `mode` says.
fn watch(args: RunArgs, mode: Mode) -> anyhow::Result<()> {
    if args.source.is_some() && !matches!(mode, Mode::Watch) {
        anyhow::bail!(
            "record and relay pass on what live feeds send; --source watches something else: give one or the other"
        );
    }
    let viewing_nats = matches!(args.source, Some(SourceArg::Nats(_)));
    if viewing_nats && args.speed.is_some() {
        anyhow::bail!("--speed replays a recording faster or slower; a NATS stream comes at its own pace");
    }
    if !viewing_nats && (args.since.is_some() || args.ask_relay) {
        let flag = if args.ask_relay { "--ask-relay" } else { "--since" };
        anyhow::bail!("{flag} is for a viewer of a relay's stream: use it with --source nats://…");
    }
    // A replay is opened first: a file that is not a recording is one line
    // before anything else starts.
    let speed = args.speed.unwrap_or(feedtop::record::Speed::Scaled(1.0));
    let replay = match &args.source {
        Some(SourceArg::File(path)) => Some(feedtop::record::Replay::open(path, speed)?),
        _ => None,
    };
    let system_paths = Paths::from_system();
    let file = load_file_config(args.config.as_deref(), system_paths.as_ref().ok())?;
    let nats_source = match &args.source {
        Some(SourceArg::Nats(url)) => Some(nats_settings(url, &args, &file)?),
        _ => None,
    };
    let accept_reconnect = matches!(&mode, Mode::Relay(r) if r.accept_reconnect);
    let relay = match &mode {
        Mode::Relay(relay) => {
            let url = relay.nats.clone().or_else(|| file.nats.url.clone()).ok_or_else(|| {
                config::ConfigError::Usage("relay needs a NATS server: --nats URL, NATS_URL, or url in [nats]".into())
            })?;
            let mut settings = nats_settings(&url, &args, &file)?;
            settings.max_age = relay.max_age.unwrap_or(settings.max_age);
            settings.max_bytes = relay.max_bytes.map_or(settings.max_bytes, |b| b as i64);
            settings.replicas = relay.replicas.unwrap_or(settings.replicas);
            Some(settings)
        }
        _ => None,
    };
    let record_to = match mode {
        Mode::Record(path) => Some(path),
        _ => None,
    };
    let paths = match (system_paths, &args.db) {
        (Ok(p), _) => p,
        // Without a home directory everything must be given explicitly.
        (Err(_), Some(db)) => {
            Paths { config_file: Default::default(), data_dir: db.parent().unwrap_or(db).to_path_buf() }
        }
        (Err(e), None) => return Err(e.into()),
    };
    // The file read, for `i`: the one given, or the default one if it is there.
    let config_file = args.config.clone().or_else(|| Some(paths.config_file.clone()).filter(|p| p.is_file()));
    let settings = config::resolve(&args, &file, &|name| std::env::var(name).ok(), &paths)?;
    // A relay runs unattended: it has no screen.
    let headless = args.headless || relay.is_some() || !std::io::stdout().is_terminal();
    let log = feedtop::logging::init(headless, feedtop::ui::theme::color_enabled(args.no_color), args.log_format);
    if args.listen.is_some() && !headless {
        anyhow::bail!("--listen serves a headless run: add --headless (or run it with stdout not a terminal)");
    }

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    // A replay's store: the pipeline keeps one as for a live run (the
    // strike-off tracker asks it), never the live database, gone at exit.
    let replay_db =
        replay.is_some().then(tempfile::tempdir).transpose().context("cannot create a temporary database")?;
    runtime.block_on(async move {
        // Bound before the feeds start: a refused address stops the run at once.
        let listener = match args.listen {
            Some(addr) => Some(feedtop::service::bind(addr, args.listen_any).await?),
            None => None,
        };
        if let (Some(replay), Some(dir)) = (replay, &replay_db) {
            let mut settings = settings;
            settings.db_path = dir.path().join("replay.db");
            // The recording says which feeds; the demo's are not started.
            let config = PipelineConfig { demo: false, ..pipeline_config(&settings) };
            let mut pipeline = Pipeline::replay(config, replay)?;
            let (rules, without_exec) = settings.alerts.clone().without_exec();
            if without_exec > 0 {
                tracing::info!("a replay runs no alert programs: exec is off for {without_exec} rule(s)");
            }
            pipeline.set_alert_rules(rules);
            front_end(pipeline, &args, &settings, headless, log, config_file, listener).await?;
            return Ok(());
        }
        if let Some(nats) = nats_source {
            // Nothing is stored unless --db says where.
            let store = if args.db.is_some() { ViewerStore::Database } else { ViewerStore::Nothing };
            let viewer = feedtop::relay::Viewer::open(nats).await?;
            // The relay says which feeds; the demo's are not started.
            let config = PipelineConfig { demo: false, ..pipeline_config(&settings) };
            let mut pipeline = Pipeline::from_nats(config, viewer, store)?;
            if args.ask_relay {
                pipeline.ask_relay_to_reconnect();
            }
            pipeline.set_alert_rules(settings.alerts.clone());
            front_end(pipeline, &args, &settings, headless, log, config_file, listener).await?;
            return Ok(());
        }
        let (settings, _demo) = if settings.demo {
            let (settings, demo) = demo::start(settings).await?;
            (settings, Some(demo))
        } else {
            (settings, None)
        };
        for name in &settings.missing_tokens {
            tracing::warn!("{name} is not set: the feed that uses it connects without a key or token");
        }
        // A relay commits as a live run does: it publishes each message as
        // it is made, not after its commit (relay::outbox).
        let mut pipeline = Pipeline::start(pipeline_config(&settings))?;
        pipeline.set_alert_rules(settings.alerts.clone());
        // Said once, after the database opened: an error there stays one line.
        if let Some(why) = &settings.enrich_off {
            tracing::info!("{why}");
        }
        let mut pipeline = pipeline.with_enrichment(settings.enrich.clone())?;
        if let Some(path) = &record_to {
            pipeline = pipeline.record_to(path)?;
        }
        if let Some(nats) = relay {
            if accept_reconnect {
                pipeline.accept_reconnects(nats.clone());
            }
            pipeline = pipeline.relay_to(nats)?;
        }
        let db_path = settings.db_path.clone();
        let summary = front_end(pipeline, &args, &settings, headless, log, config_file, listener).await?;
        match &summary.recording {
            Some(Ok(r)) => say(&format!("feedtop: {} messages recorded in {}", r.messages, r.path.display())),
            Some(Err(e)) => anyhow::bail!("{e}"),
            None => {}
        }
        let w = summary.writer;
        if w.unwritten > 0 {
            anyhow::bail!(
                "{} facts were not written to {} ({}); feeds with a resume point fetch them again from it on the next start",
                w.unwritten,
                db_path.display(),
                w.last_error.unwrap_or_default()
            );
        }
        if let Some(e) = w.last_error {
            anyhow::bail!("{e}");
        }
        if !headless {
            say(&format!("feedtop: {} new events stored in {}", w.events_written, db_path.display()));
        }
        Ok(())
    })
}

/// Runs the chosen front end over the pipeline until it ends.
async fn front_end(
    pipeline: Pipeline,
    args: &RunArgs,
    settings: &Settings,
    headless: bool,
    log: feedtop::logging::LogBuffer,
    config_file: Option<std::path::PathBuf>,
    listener: Option<tokio::net::TcpListener>,
) -> anyhow::Result<feedtop::app::ShutdownSummary> {
    Ok(if headless {
        let options = HeadlessOptions { duration: args.duration, interval: args.interval };
        let publisher = listener.map(|listener| {
            let (publisher, latest) =
                feedtop::service::Publisher::new(feedtop::service::HealthTracker::for_feeds(&settings.feeds));
            if let Ok(addr) = listener.local_addr() {
                tracing::info!("serving /health and /metrics on http://{addr}");
            }
            feedtop::service::spawn(listener, latest);
            publisher
        });
        headless::run_publishing(pipeline, options, &mut std::io::stdout().lock(), publisher).await?
    } else {
        // A viewer without --db has none.
        let db_path = (!pipeline.model().store.no_database).then(|| settings.db_path.clone());
        let run_info = feedtop::ui::RunInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            config_file,
            db_bytes: db_path.as_deref().and_then(feedtop::ui::RunInfo::db_size),
            db_path,
            fps: settings.fps,
            theme: settings.theme_description(),
        };
        let options = tui::TuiOptions {
            fps: settings.fps,
            theme: settings.theme,
            ascii: settings.ascii,
            tick_highlight: settings.tick_highlight,
            stale_after: settings.stale_after,
            run_info,
            log,
        };
        tui::run(pipeline, options).await?.1
    })
}

fn pipeline_config(settings: &Settings) -> PipelineConfig {
    PipelineConfig {
        feeds: settings.feeds.clone(),
        db_path: settings.db_path.clone(),
        latency_window: settings.latency_window,
        demo: settings.demo,
        writer: WriterSettings {
            quote_retention: Some(settings.quote_retention),
            event_retention: Some(settings.event_retention),
            raw_events: settings.raw_events,
            ..WriterSettings::default()
        },
    }
}

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let options = feedtop::bench::BenchOptions {
        events: args.events,
        duration: args.duration,
        rate: args.rate,
        fields_only: args.fields_only,
    };
    let names: Vec<&str> =
        if args.scenario == "all" { feedtop::bench::SCENARIOS.to_vec() } else { vec![args.scenario.as_str()] };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    for name in names {
        let result = runtime.block_on(feedtop::bench::run(name, &options))?;
        if args.json {
            println!("{result}");
        } else {
            println!("{}", feedtop::bench::human(&result));
        }
    }
    Ok(())
}

fn strike_offs(args: StrikeOffsArgs) -> anyhow::Result<()> {
    let since = args
        .since
        .as_deref()
        .map(|s| export::parse_since(s, chrono::Utc::now()))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let options =
        export::Options { format: args.format, since, csv_raw: args.csv_raw, with_officers: args.with_officers };
    if let Some(url) = &args.source {
        return strike_offs_from_stream(url, &args, options);
    }
    let db = match args.db {
        Some(db) => db,
        None => {
            let paths = Paths::from_system()?;
            let file = load_file_config(None, Some(&paths))?;
            config::db_path(None, &file, args.demo, &paths)
        }
    };
    match export::run(&db, options, &mut std::io::stdout().lock()) {
        // `feedtop strike-offs | head -1`: the reader has what it wanted.
        Err(e) if is_broken_pipe(&e) => Ok(()),
        result => result.map(drop),
    }
}

/// `strike-offs --source nats://…`: the relay's published changes, read
/// from its stream; no database is opened.
fn strike_offs_from_stream(url: &str, args: &StrikeOffsArgs, options: export::Options) -> anyhow::Result<()> {
    use feedtop::relay::{history, NatsSettings};
    if options.with_officers {
        return Err(config::ConfigError::Usage(export::WITH_OFFICERS_NEEDS_A_DATABASE.into()).into());
    }
    let mut settings = NatsSettings::new(url);
    // The file's [nats] first (credentials from the environment win in
    // it), then the flags over both.
    let paths = Paths::from_system().ok();
    let file = load_file_config(None, paths.as_ref())?;
    file.nats.apply_to(&mut settings, &|name| std::env::var(name).ok())?;
    if let Some(ca) = &args.nats_ca {
        settings.tls_ca = Some(ca.clone());
    }
    if let Some(stream) = &args.nats_stream {
        settings.stream = stream.clone();
    }
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    let found = runtime.block_on(history::strike_offs(&settings, options.since, history::STALL))?;
    if found.unreadable > 0 {
        say(&format!(
            "feedtop: {} message(s) in NATS stream {} could not be read (another feedtop version wrote them)",
            found.unreadable,
            feedtop::sanitize::for_terminal(&settings.stream)
        ));
    }
    match export::run_stream(&found.changes, &settings.stream, options, &mut std::io::stdout().lock()) {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        result => result.map(drop),
    }
}
