//! Running feedtop as a service: `--listen ADDR` serves `/health` and
//! `/metrics` for a headless run, from a snapshot the pipeline publishes each
//! tick ([`snapshot`]), so a slow or hostile client never touches the model.

pub mod metrics;
pub mod server;
pub mod snapshot;

pub use server::{bind, spawn, ListenError};
pub use snapshot::{HealthTracker, Latest, Publisher, Snapshot};
