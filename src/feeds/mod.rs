//! Feed tasks and the messages they send.
//!
//! A feed is one tokio task that owns its socket, reconnects itself and sends
//! [`FeedMsg`]s to the core loop over a bounded channel. It receives
//! [`Command`]s on its own control channel. The model does not care which
//! protocol produced a message.

pub mod backoff;
pub mod companies_house;
pub mod poll;
pub mod redirect;
pub mod secret;
pub mod session;
pub mod sse;
pub mod sse_subscribe;
pub mod supervisor;
pub mod websocket;

// The vocabulary and the pure decoders live in feedtop-proto (they will
// cross process boundaries); these re-exports keep `feeds::…` paths whole.
pub use feedtop_proto::ch::{ChEvent, CompanyState, EventType};
pub use feedtop_proto::msg::*;
pub use feedtop_proto::quote::{Decoded, Dialect, PollFormat, Quote, QuoteTime};
pub use feedtop_proto::resume_mark::ResumeMark;
pub use feedtop_proto::{decode, lines, quote, resume_mark};
