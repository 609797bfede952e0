//! feedtop's shared vocabulary: what every part of feedtop says to every
//! other, and what will cross process boundaries (the relay over NATS, the
//! recordings).
//!
//! - [`msg`]: the messages a feed sends ([`msg::FeedMsg`]), connection
//!   states, commands, and feed kinds and ids;
//! - [`ch`]: Companies House stream events and their decoder;
//! - [`quote`]: price updates and the quote decoders' common types;
//! - [`decode`]: the pure wire decoders (wig80, carbon, SSE framing, the SSE
//!   subscription answers, stooq CSV);
//! - [`lines`]: the bounded newline splitter under the HTTP streams;
//! - [`resume_mark`]: when a timepoint may become the resume point;
//! - [`strike_off`]: strike-off changes as a tracker decided them;
//! - [`time`]: the timestamp forms the servers send;
//! - [`wire`]: messages as records with a schema version, for the relay
//!   and recordings.
//!
//! Nothing here does I/O or depends on tokio, reqwest or ratatui; every
//! decoder takes bytes and returns values or an error, never panics.

pub mod ch;
pub mod decode;
pub mod lines;
pub mod msg;
pub mod quote;
pub mod resume_mark;
pub mod strike_off;
pub mod time;
pub mod wire;

pub use ch::{ChEvent, CompanyState, EventType};
pub use msg::{Command, ConnState, FeedId, FeedInfo, FeedKind, FeedMsg, FeedMsgKind, ResumePoint};
pub use quote::{Decoded, Dialect, PollFormat, Quote, QuoteTime};
