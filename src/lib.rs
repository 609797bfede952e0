//! feedtop: `top` for live data feeds.
//!
//! The crate is a library with a thin binary on top so that every part (feeds,
//! model, store, UI, the loopback simulators) can be driven from tests.
//!
//! Data flows one way: feed tasks → bounded channel → the core loop, which
//! applies each message to the [`model::Model`] and hands the durable facts to
//! the [`store`] writer thread. The UI and the headless printer only read the model.

pub mod alerts;
pub mod app;
pub mod bench;
pub mod bounds;
pub mod cli;
pub mod config;
pub mod demo;
pub mod detail_store;
pub mod enrich;
pub mod export;
pub mod feed_about;
pub mod feeds;
pub mod headless;
pub mod logging;
pub mod model;
pub mod record;
pub mod relay;
pub mod sanitize;
pub mod service;
/// The loopback simulators (crates/feedtop-sim), under the path the demo,
/// the benchmarks and the tests have always used.
pub use feedtop_sim as sim;
pub mod store;
pub mod time;
pub mod tui;
pub mod ui;
