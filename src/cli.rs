//! Command-line interface (clap derive). Flags win over the environment, which
//! wins over the config file, which wins over the defaults.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::bounds;
use crate::ui::theme::ThemeName;

const ABOUT: &str = "top for live data feeds: the Companies House stream (companies entering and \
leaving the proposal to strike off) and stock-quote feeds over WebSocket and SSE, stored in SQLite.";

const AFTER_HELP: &str = "\
Which feeds run: the [[feeds]] the config file lists (any mix of kinds
companies-house, ws, sse), exactly those. With none listed, the Companies
House /companies stream when a *stream* key (not a REST key) is set:

  CH_STREAMING_API_KEY=<key> feedtop

With nothing to watch, or with --demo, built-in simulated feeds on loopback.
assets/config.toml in the source is a commented sample of every setting.

When stdout is not a terminal, feedtop prints JSON lines (as with --headless).

Many viewers of one ingest: `feedtop relay --nats nats://host:4222` where the
keys are, `feedtop --source nats://host:4222` anywhere (README: Many viewers).

Keys in the TUI: q quit · p pause · r/R reconnect · / filter · s sort · Tab focus · ? help
Enter details · z zoom · i what is in force";

#[derive(Debug, Parser)]
#[command(name = "feedtop", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List the recorded strike-off changes from the database.
    StrikeOffs(StrikeOffsArgs),
    /// Measure throughput, latency, render time, memory and idle cost on loopback.
    Bench(BenchArgs),
    /// Watch the configured feeds as usual and also write every message
    /// they send to a recording (gzip, JSON lines) that `--source` replays.
    Record(Box<RecordArgs>),
    /// Ingest the configured feeds once (headless, with its own database)
    /// and publish every message to a NATS JetStream stream that any number
    /// of `feedtop --source nats://…` viewers read.
    Relay(Box<RelayArgs>),
}

#[derive(Debug, Args, Clone)]
pub struct RelayArgs {
    /// The NATS server(s): nats://host:4222, tls://host:4222, or several
    /// comma-separated (a cluster). Credentials: NATS_USER and
    /// NATS_PASSWORD, NATS_TOKEN, or NATS_CREDS (a .creds file).
    /// [default: url in the config file's [nats] table]
    #[arg(long, value_name = "URL", env = "NATS_URL")]
    pub nats: Option<String>,
    /// How long the stream keeps a message (1m to 3650d) [default: 7d].
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| bounds::NATS_MAX_AGE.parse(s))]
    pub max_age: Option<Duration>,
    /// The stream's size cap in bytes; the oldest go first (1048576 to
    /// 17592186044416) [default: 1073741824, 1 GiB].
    #[arg(long, value_name = "BYTES", value_parser = |s: &str| bounds::NATS_MAX_BYTES.parse(s))]
    pub max_bytes: Option<usize>,
    /// Copies of the stream in a NATS cluster (1 to 5) [default: 1].
    #[arg(long, value_name = "N", value_parser = |s: &str| bounds::NATS_REPLICAS.parse(s))]
    pub replicas: Option<usize>,
    /// Let viewers started with --ask-relay reconnect a feed (NATS
    /// request/reply on feedtop-ctl.<stream>.reconnect; who may ask is
    /// whoever NATS permissions let publish there). Off by default.
    #[arg(long)]
    pub accept_reconnect: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Where the messages come from instead of the configured feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceArg {
    /// A recording made with `feedtop record`.
    File(PathBuf),
    /// A relay's stream: nats://… or tls://… (several comma-separated).
    Nats(String),
}

impl SourceArg {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("give a recording file or a nats://host:4222 URL".into());
        }
        let scheme = text.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("nats" | "tls") => Ok(SourceArg::Nats(text.to_string())),
            Some(other) if !other.contains(['/', '\\']) && other.len() < 16 => {
                Err(format!("{other}:// is not a source: give a recording file, nats://… or tls://…"))
            }
            _ => Ok(SourceArg::File(PathBuf::from(text))),
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct RecordArgs {
    /// The recording to write (replaced if it exists), e.g. feeds.jsonl.gz.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
}

/// A JetStream stream name: letters, digits, `-` and `_` (NATS refuses
/// others, and a `.` or `*` would read as a subject).
pub fn parse_stream_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(text.to_string())
    } else {
        Err("must be 1 to 64 letters, digits, - or _".into())
    }
}

#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// render, startup, catch-up, steady, quotes, idle, all, or soak (long:
    /// e.g. `--scenario soak --rate 5000 --duration 10m`), or flood (`--events`
    /// distinct companies entering the proposal, e.g. `--events 2000000`), or
    /// relay (needs nats-server: catch-up publish of `--events` messages,
    /// 200000 unless given; `--rate` quotes/s to 10 viewers for `--duration`
    /// up to 20s; a resting viewer for `--duration`).
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// One JSON object per scenario instead of a readable line.
    #[arg(long)]
    pub json: bool,
    /// Events for catch-up and for the start-up database (1 to 100000000).
    #[arg(long, value_parser = |s: &str| bounds::BENCH_EVENTS.parse(s), default_value = "1000000")]
    pub events: usize,
    /// How long steady state, quotes, idle and soak run (100ms to 7d).
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| bounds::BENCH_DURATION.parse(s), default_value = "60s")]
    pub duration: Duration,
    /// Events per second in steady state and soak [default: 1000]; quote
    /// frames per second in quotes [default: 5000, 50 symbols × 100]. 1 to 1000000.
    #[arg(long, value_parser = |s: &str| bounds::BENCH_RATE.parse(s))]
    pub rate: Option<f64>,
    /// Catch-up: store only the fields that matter (`raw_events = "fields"`).
    #[arg(long)]
    pub fields_only: bool,
}

/// Options for watching feeds (the default command).
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Watch the built-in simulated feeds alone, whatever the config file
    /// lists (the default when there is nothing else to watch).
    #[arg(long)]
    pub demo: bool,

    /// Demo feeds that fail at random every minute or so (cut streams, 429
    /// and 503, WebSocket closes, stalls), to watch feedtop recover. Implies --demo.
    #[arg(long)]
    pub chaos: bool,

    /// Print one JSON object per line instead of drawing the TUI.
    #[arg(long)]
    pub headless: bool,

    /// Headless: stop after this long (e.g. 30s, 5m; 100ms to 366d); default:
    /// run until interrupted.
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| bounds::RUN_FOR.parse(s))]
    pub duration: Option<Duration>,

    /// Headless: print a line this often (10ms to 1h).
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| bounds::INTERVAL.parse(s), default_value = "1s")]
    pub interval: Duration,

    /// SQLite database file [default: feedtop.db in the user data directory;
    /// demo.db there with --demo; none for a viewer of --source nats://].
    #[arg(long, value_name = "PATH", env = "FEEDTOP_DB")]
    pub db: Option<PathBuf>,

    /// Config file [default: config.toml in the user config directory].
    #[arg(long, value_name = "PATH", env = "FEEDTOP_CONFIG")]
    pub config: Option<PathBuf>,

    /// Watch the default Companies House feed (ch/companies) at this base
    /// URL, http:// or https://, beside any feeds the config file lists
    /// [default: https://stream.companieshouse.gov.uk].
    #[arg(long, value_name = "URL", env = "FEEDTOP_CH_URL", value_parser = ch_url)]
    pub ch_url: Option<String>,

    /// The default Companies House feed's stream path, starting with /
    /// [default: /companies]; like --ch-url, adds that feed.
    #[arg(long, value_name = "PATH", value_parser = stream_path)]
    pub stream: Option<String>,

    /// Every feed: reconnect when no byte arrives for this long [default:
    /// 90s Companies House, 60s ws, 75s sse; 1s to 1h].
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| bounds::READ_TIMEOUT.parse(s))]
    pub read_timeout: Option<Duration>,

    /// Every feed: longest wait between reconnect attempts [default: 60s; 1s to 1h].
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| bounds::BACKOFF_CAP.parse(s))]
    pub backoff_cap: Option<Duration>,

    /// Every feed: give up on a TCP/TLS connect after this long [default:
    /// 30s; 1s to 5m].
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| bounds::CONNECT_TIMEOUT.parse(s))]
    pub connect_timeout: Option<Duration>,

    /// Every feed: once connected, give up when the response head (or the
    /// WebSocket upgrade) is not complete after this long [default: 30s; 1s to 5m].
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| bounds::RESPONSE_TIMEOUT.parse(s))]
    pub response_timeout: Option<Duration>,

    /// Latency percentiles cover this sliding window [default: 5m; 10s to 1d].
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| bounds::LATENCY_WINDOW.parse(s))]
    pub latency_window: Option<Duration>,

    /// Redraw at most this many times a second [default: 10; 1 to 60].
    #[arg(long, value_name = "N", value_parser = |s: &str| bounds::FPS.parse(s))]
    pub fps: Option<u32>,

    /// No colours (also when NO_COLOR is set): the same as --theme mono.
    #[arg(long)]
    pub no_color: bool,

    /// Colours for a dark or a light terminal background, or none (mono)
    /// [default: [ui] theme in the config file, else dark]. NO_COLOR and
    /// --no-color mean mono whatever this says.
    #[arg(long, value_enum, value_name = "THEME")]
    pub theme: Option<ThemeName>,

    /// Draw lines, bars and arrows in ASCII. The default under a locale
    /// that is not UTF-8 (LANG=C); a UTF-8 terminal with a wrong locale
    /// gets the full screen back with LANG=C.UTF-8 (or its own locale).
    #[arg(long)]
    pub ascii: bool,

    /// For slow links (SSH over a modem, a satellite): 2 redraws a second,
    /// no highlight on changed prices, ASCII. An explicit --fps wins over
    /// its 2 fps; [ui] fps in the config file does not.
    #[arg(long)]
    pub low_bandwidth: bool,

    /// Watch something other than the configured feeds: a recording made
    /// with `feedtop record --to FILE` (no network), or a relay's NATS
    /// stream, nats://host:4222 or tls://… (the relay's feeds). Either way a
    /// temporary database, unless --db is given.
    #[arg(long, value_name = "FILE|URL", value_parser = SourceArg::parse)]
    pub source: Option<SourceArg>,

    /// With --source FILE: how fast, as a multiple of the recorded timing
    /// (0.1 to 1000), or max (as fast as it goes) [default: 1].
    #[arg(long, value_name = "SPEED", value_parser = crate::record::Speed::parse, requires = "source")]
    pub speed: Option<crate::record::Speed>,

    /// With --source nats://…: start this far back in the stream, so the
    /// panes fill at once (0s to 365d) [default: 1h].
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| bounds::NATS_SINCE.parse(s))]
    pub since: Option<Duration>,

    /// The NATS JetStream stream the relay writes and viewers read
    /// [default: FEEDTOP].
    #[arg(long, value_name = "NAME", env = "FEEDTOP_NATS_STREAM", value_parser = parse_stream_name)]
    pub nats_stream: Option<String>,

    /// A CA certificate (PEM) for a tls:// NATS server that no system root
    /// signs.
    #[arg(long, value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,

    /// With --source nats://…: `r` asks the relay to reconnect the selected
    /// feed (the relay must run with --accept-reconnect); `R` still
    /// reconnects this viewer's own NATS connection.
    #[arg(long)]
    pub ask_relay: bool,

    /// Headless: serve /health and /metrics over HTTP at this address (e.g.
    /// 127.0.0.1:9184; port 0 picks a free one, logged at start). Loopback
    /// only unless --listen-any.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,

    /// Let --listen use an address other than loopback (the endpoints show
    /// feed states and counts, never a key or token).
    #[arg(long, requires = "listen")]
    pub listen_any: bool,

    /// Headless: stderr as readable text or one JSON object per line.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
}

#[derive(Debug, Args, Clone)]
pub struct StrikeOffsArgs {
    /// SQLite database file [default: as for watching].
    #[arg(long, value_name = "PATH", env = "FEEDTOP_DB")]
    pub db: Option<PathBuf>,

    /// Read the demo database instead of the real one.
    #[arg(long, conflicts_with = "source")]
    pub demo: bool,

    /// Only changes published since then: a duration (24h, 7d) or a date/time
    /// (2025-06-10, 2025-06-10T08:00:00Z). With --source, the stream is
    /// read from then on [default: all it keeps].
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// CSV: write cells exactly as stored. By default a cell a spreadsheet
    /// would run as a formula (starting with = + - @, TAB or CR) gets a
    /// leading ' and control characters are shown as U+FFFD; with this flag
    /// neither is done, so only open the file in a spreadsheet you trust
    /// with whatever the feed sent.
    #[arg(long)]
    pub csv_raw: bool,

    /// Add each company's officers, as fetched by the REST enrichment
    /// ([enrich]): an array in JSON, one row per officer in CSV, indented
    /// lines in the table.
    #[arg(long)]
    pub with_officers: bool,

    /// Read the changes a relay published to its NATS stream instead of a
    /// database: nats://host:4222 or tls://… (several comma-separated).
    /// Credentials as for a viewer: NATS_USER and NATS_PASSWORD,
    /// NATS_TOKEN, or NATS_CREDS (a .creds file), or the [nats] table.
    #[arg(long, value_name = "URL", value_parser = nats_url)]
    pub source: Option<String>,

    /// With --source: the relay's JetStream stream [default: FEEDTOP].
    #[arg(long, value_name = "NAME", env = "FEEDTOP_NATS_STREAM", value_parser = parse_stream_name)]
    pub nats_stream: Option<String>,

    /// With --source: a CA certificate (PEM) for a tls:// NATS server that
    /// no system root signs.
    #[arg(long, value_name = "FILE", requires = "source")]
    pub nats_ca: Option<PathBuf>,
}

/// `strike-offs --source`: a relay's stream; a recording is refused.
fn nats_url(text: &str) -> Result<String, String> {
    match SourceArg::parse(text)? {
        SourceArg::Nats(url) => Ok(url),
        SourceArg::File(_) => Err("give the relay's NATS server, nats://host:4222 or tls://host:4222".into()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for reading.
    Table,
    /// One JSON object per line.
    Json,
    /// Comma-separated with a header row.
    Csv,
}

/// `30s`, `5m`, `1h30m`, `2d`: humantime's format.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    bounds::parse_duration(s)
}

fn ch_url(s: &str) -> Result<String, String> {
    bounds::base_url(s).map(|_| s.trim().to_string()).map_err(|e| e.to_string())
}

fn stream_path(s: &str) -> Result<String, String> {
    bounds::stream_path(s).map(|()| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn headless_flags_parse() {
        let cli = Cli::try_parse_from(["feedtop", "--headless", "--duration", "30s", "--interval", "500ms"]).unwrap();
        assert!(cli.run.headless);
        assert_eq!(cli.run.duration, Some(Duration::from_secs(30)));
        assert_eq!(cli.run.interval, Duration::from_millis(500));
    }

    #[test]
    fn bad_duration_explains_the_format() {
        let e = Cli::try_parse_from(["feedtop", "--duration", "soon"]).unwrap_err().to_string();
        assert!(e.contains("examples: 30s"), "{e}");
    }

    #[test]
    fn strike_offs_subcommand() {
        let cli = Cli::try_parse_from(["feedtop", "strike-offs", "--since", "24h", "--format", "csv"]).unwrap();
        match cli.command {
            Some(Cmd::StrikeOffs(a)) => {
                assert_eq!(a.since.as_deref(), Some("24h"));
                assert_eq!(a.format, Format::Csv);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn strike_offs_from_a_relays_stream() {
        let cli = Cli::try_parse_from([
            "feedtop",
            "strike-offs",
            "--source",
            "nats://h:4222",
            "--nats-stream",
            "OURS",
            "--nats-ca",
            "ca.pem",
        ])
        .unwrap();
        match cli.command {
            Some(Cmd::StrikeOffs(a)) => {
                assert_eq!(a.source.as_deref(), Some("nats://h:4222"));
                assert_eq!(a.nats_stream.as_deref(), Some("OURS"));
                assert!(a.nats_ca.unwrap().ends_with("ca.pem"));
            }
            other => panic!("{other:?}"),
        }
        let e = Cli::try_parse_from(["feedtop", "strike-offs", "--source", "today.ftrec"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(e.to_string().contains("--source") && e.to_string().contains("nats://host:4222"), "{e}");
        let e = Cli::try_parse_from(["feedtop", "strike-offs", "--nats-stream", "a.b"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(Cli::try_parse_from(["feedtop", "strike-offs", "--nats-ca", "ca.pem"]).is_err(), "without --source");
        assert!(Cli::try_parse_from(["feedtop", "strike-offs", "--demo", "--source", "nats://h"]).is_err());
    }

    #[test]
    fn terminal_flags() {
        let cli = Cli::try_parse_from(["feedtop", "--theme", "light", "--ascii", "--low-bandwidth"]).unwrap();
        assert_eq!(cli.run.theme, Some(ThemeName::Light));
        assert!(cli.run.ascii && cli.run.low_bandwidth);
        let e = Cli::try_parse_from(["feedtop", "--theme", "blue"]).unwrap_err().to_string();
        assert!(e.contains("--theme") && e.contains("dark, light, mono"), "{e}");
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("LANG=C.UTF-8") && help.contains("explicit --fps wins"), "{help}");
    }

    #[test]
    fn record_and_replay_flags() {
        let cli = Cli::try_parse_from(["feedtop", "record", "--to", "r.gz", "--demo", "--headless"]).unwrap();
        match cli.command {
            Some(Cmd::Record(a)) => assert!(a.to.ends_with("r.gz") && a.run.demo && a.run.headless),
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["feedtop", "--source", "r.gz", "--speed", "max"]).unwrap();
        assert_eq!(cli.run.speed, Some(crate::record::Speed::Max));
        let e = Cli::try_parse_from(["feedtop", "--source", "r.gz", "--speed", "0"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(e.to_string().contains("--speed") && e.to_string().contains("between 0.1 and 1000"), "{e}");
        assert!(Cli::try_parse_from(["feedtop", "--speed", "2"]).is_err(), "--speed without --source");
    }

    #[test]
    fn fps_is_bounded() {
        assert!(Cli::try_parse_from(["feedtop", "--fps", "0"]).is_err());
        assert!(Cli::try_parse_from(["feedtop", "--fps", "30"]).is_ok());
    }

    /// Every bounded flag refuses a zero (the values that hammered a server,
    /// looped or panicked) with clap's usage error, naming the flag and range.
    #[test]
    fn every_bounded_flag_refuses_nonsense() {
        let cases: &[&[&str]] = &[
            &["--backoff-cap", "0s"],
            &["--read-timeout", "0s"],
            &["--interval", "0s"],
            &["--duration", "0s"],
            &["--latency-window", "0s"],
            &["--fps", "61"],
            &["--read-timeout", "1000d"],
            &["bench", "--duration", "0s"],
            &["bench", "--events", "0"],
            &["bench", "--rate", "0"],
            &["bench", "--rate", "NaN"],
        ];
        for args in cases {
            let e = Cli::try_parse_from(std::iter::once("feedtop").chain(args.iter().copied())).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{args:?}");
            let flag = args.iter().find(|a| a.starts_with("--")).unwrap();
            let text = e.to_string();
            assert!(text.contains(flag) && text.contains("must be between"), "{args:?}: {text}");
        }
    }

    #[test]
    fn urls_and_paths_are_checked() {
        for url in ["ftp://x", "http://[::1", "", "javascript:", "http://x:99999", "not a url"] {
            let e = Cli::try_parse_from(["feedtop", "--ch-url", url]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{url:?}");
            assert!(e.to_string().contains("--ch-url"), "{e}");
        }
        let e = Cli::try_parse_from(["feedtop", "--stream", "companies"]).unwrap_err().to_string();
        assert!(e.contains("--stream") && e.contains("must start with /"), "{e}");
        let cli = Cli::try_parse_from(["feedtop", "--ch-url", "http://127.0.0.1:9", "--stream", "/filings"]).unwrap();
        assert_eq!(cli.run.ch_url.as_deref(), Some("http://127.0.0.1:9"));
    }

    /// The ranges in `--help` are the ones enforced.
    #[test]
    fn help_states_the_enforced_ranges() {
        let help = Cli::command().render_long_help().to_string();
        let ranges = [
            bounds::READ_TIMEOUT.describe(),
            bounds::BACKOFF_CAP.describe(),
            bounds::LATENCY_WINDOW.describe(),
            bounds::INTERVAL.describe(),
            bounds::RUN_FOR.describe(),
            bounds::FPS.describe(),
        ];
        for range in ranges {
            assert!(help.contains(&range), "{range} missing from --help");
        }
        let mut cmd = Cli::command();
        let bench = cmd.find_subcommand_mut("bench").unwrap().render_long_help().to_string();
        for range in [bounds::BENCH_DURATION.describe(), "1 to 100000000".into(), "1 to 1000000".into()] {
            assert!(bench.contains(&range), "{range} missing from bench --help");
        }
        assert_eq!(bounds::BENCH_EVENTS.describe(), "1 to 100000000");
        assert_eq!(bounds::BENCH_RATE.describe(), "1 to 1000000");
    }
}
