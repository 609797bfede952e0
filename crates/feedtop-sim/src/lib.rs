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
pub mod http;
pub mod mute;
pub mod nats;
pub mod prices;
pub mod py;
pub mod rest;
pub mod sse;
pub mod sse_subscribe;
pub mod stooq;
pub mod wig80;
pub mod ws;

pub use carbon::{CarbonConfig, CarbonShape, CarbonSim};
pub use chaos::Chaos;
pub use companies_house::{ChSim, ChSimConfig, ConnPlan, Fault, RequestRecord};
pub use company_gen::{CompanyGen, GeneratorConfig};
pub use mute::{Mute, MuteServer};
pub use nats::{NatsCluster, NatsError, NatsServer};
pub use prices::{commodities, commodity_of, wig80_symbols, PriceWalk, Quote};
pub use rest::{RemainingHeader, RestPlan, RestRequest, RestSim, RestSimConfig};
pub use sse::{SseConfig, SsePlan, SseRequest, SseShape, SseSim};
pub use sse_subscribe::{SseSubscribeConfig, SubscribeRequest};
pub use stooq::{StooqConfig, StooqPlan, StooqRequest, StooqSim};
pub use wig80::{Wig80Config, Wig80Sim};
pub use ws::{WsPlan, WsScript};

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::time as ttime;

/// Requests and frames a simulator remembers for tests to inspect: the most
/// recent ones. Tests see a few dozen; the demo runs for days.
pub(crate) const RECENT_KEPT: usize = 1_000;

/// The last `cap` items pushed, and how many were pushed in all. What a
/// simulator remembers for tests lives in one of these, so that nothing it
/// keeps grows with the time it runs.
#[derive(Debug, Clone)]
pub(crate) struct Recent<T> {
    items: VecDeque<T>,
    total: usize,
    cap: usize,
}

impl<T> Recent<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Self { items: VecDeque::new(), total: 0, cap: cap.max(1) }
    }

    /// Adds an item, forgetting the oldest past the cap; returns the total pushed.
    pub(crate) fn push(&mut self, item: T) -> usize {
        if self.items.len() == self.cap {
            self.items.pop_front();
        }
        self.items.push_back(item);
        self.total += 1;
        self.total
    }

    /// The items kept, oldest first.
    pub(crate) fn as_slice(&mut self) -> &[T] {
        self.items.make_contiguous()
    }

    pub(crate) fn to_vec(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.items.iter().cloned().collect()
    }
}

/// A poisoned lock only means a test panicked elsewhere; the data is still fine.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Returns when asked to stop, or when the simulator handle is dropped.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Ticks an optional timer; never completes without one.
pub(crate) async fn tick(timer: &mut Option<ttime::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_keeps_the_last_cap_items_and_counts_them_all() {
        let mut r = Recent::new(3);
        let totals: Vec<usize> = (0..10).map(|i| r.push(i)).collect();
        assert_eq!(totals, (1..=10).collect::<Vec<_>>());
        assert_eq!(r.as_slice(), [7, 8, 9]);
        assert_eq!(r.to_vec(), [7, 8, 9]);
    }
}
