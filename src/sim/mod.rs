//! Loopback servers that speak feedtop's wire protocols, for `--demo` and tests.
//!
//! They are small hand-written HTTP/1.1 responders on `127.0.0.1:0` rather than
//! a web framework, because they must be able to misbehave on purpose: cut a
//! stream mid-line, stall after the headers, refuse a connection, answer 429 or
//! 416. Tests script those faults per connection; the demo injects them at random.

pub mod carbon;
pub mod chaos;
pub mod companies_house;
pub mod company_gen;
pub mod mute;
pub mod prices;
pub mod sse;
pub mod wig80;

pub use carbon::{CarbonConfig, CarbonShape, CarbonSim};
pub use chaos::Chaos;
pub use companies_house::{ChSim, ChSimConfig, ConnPlan, Fault, RequestRecord};
pub use company_gen::{CompanyGen, GeneratorConfig};
pub use mute::{Mute, MuteServer};
pub use prices::{commodities, commodity_of, wig80_symbols, PriceWalk, Quote};
pub use sse::{SseConfig, SsePlan, SseRequest, SseShape, SseSim};
pub use wig80::{Wig80Config, Wig80Sim, WsPlan, WsScript};
