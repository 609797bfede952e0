//! Recordings: every feed message of a run, with its receive time (and the
//! raw line a Companies House event was decoded from), written to a file
//! that `feedtop --source FILE` replays through the same pipeline, model
//! and panes.
//!
//! The file is gzip (`zcat` shows it) of JSON lines: first a header record
//! naming the feeds, then one `feedtop_proto::wire` record per message.
//! - [`writer`]: the recorder the pipeline writes each message to;
//! - [`reader`]: the records back, stopping cleanly where a file was cut;
//! - [`replay`]: the task that feeds them to the pipeline with the original
//!   timing scaled by `--speed`, and the replay's clock.

pub mod reader;
pub mod replay;
pub mod writer;

pub use reader::Reader;
pub use replay::{Replay, Speed};
pub use writer::Recorder;

/// Why a recording cannot be written or read: one line saying which file.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("recording {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("recording {path}: {why}")]
    Format { path: String, why: String },
}
