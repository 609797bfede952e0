//! Random faults for `feedtop --demo --chaos`.
//!
//! The Companies House simulator breaks its live stream on a timer (see
//! [`super::Fault`]); the WebSocket and SSE simulators script faults per
//! connection instead, so chaos hands each new connection a plan: serve
//! normally for a random number of frames, then fail in one of the ways the
//! fault tests script one at a time. A connection that ends makes the client
//! reconnect, and that connection draws the next fault.

use std::ops::Range;
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{SsePlan, WsPlan};

/// The close codes real servers send most (normal, going away, policy,
/// internal error, restart, try again later).
const CLOSE_CODES: [u16; 6] = [1000, 1001, 1008, 1011, 1012, 1013];

/// Draws one fault plan per connection.
pub struct Chaos {
    draws: Mutex<Draws>,
    healthy_frames: Range<usize>,
}

struct Draws {
    rng: StdRng,
    /// The first connection always serves data before its fault: a demo
    /// that opens on a silent or refused feed looks broken, not chaotic.
    first: bool,
}

impl Draws {
    /// A fault number in 0..10; the last `quiet` of them (stalls, error
    /// statuses) are never drawn for the first connection.
    fn fault(&mut self, quiet: u32) -> u32 {
        let range = if std::mem::take(&mut self.first) { 0..10 - quiet } else { 0..10 };
        self.rng.random_range(range)
    }
}

impl Chaos {
    /// Each connection serves a number of frames (or SSE events) drawn from
    /// `healthy_frames` before its fault; `seed` makes the draws repeatable.
    pub fn new(healthy_frames: Range<usize>, seed: Option<u64>) -> Self {
        assert!(!healthy_frames.is_empty(), "chaos needs a non-empty frame range");
        let rng = seed.map_or_else(StdRng::from_os_rng, StdRng::seed_from_u64);
        Self { draws: Mutex::new(Draws { rng, first: true }), healthy_frames }
    }

    /// The plan for the next WebSocket connection.
    pub fn ws_plan(&self) -> WsPlan {
        let mut draws = self.draws.lock().unwrap_or_else(|e| e.into_inner());
        let frames = draws.rng.random_range(self.healthy_frames.clone());
        match draws.fault(1) {
            0..=4 => WsPlan::CloseAfter { frames, code: CLOSE_CODES[draws.rng.random_range(0..CLOSE_CODES.len())] },
            5..=8 => WsPlan::Drop { after_frames: frames },
            // Rare: the feed waits out its whole read-idle timeout.
            _ => WsPlan::Stall,
        }
    }

    /// The plan for the next SSE connection.
    pub fn sse_plan(&self) -> SsePlan {
        let mut draws = self.draws.lock().unwrap_or_else(|e| e.into_inner());
        let events = draws.rng.random_range(self.healthy_frames.clone());
        match draws.fault(4) {
            0..=5 => SsePlan::CutAfter { events },
            6 | 7 => SsePlan::Status { code: 503, body: r#"{"error":"service unavailable"}"#.into() },
            8 => SsePlan::Status { code: 500, body: r#"{"error":"internal server error"}"#.into() },
            _ => SsePlan::Stall,
        }
    }
}

impl std::fmt::Debug for Chaos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chaos").field("healthy_frames", &self.healthy_frames).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_plans_cover_every_fault_and_respect_the_frame_range() {
        let chaos = Chaos::new(5..8, Some(1));
        let plans: Vec<WsPlan> = (0..500).map(|_| chaos.ws_plan()).collect();
        let frames = |p: &WsPlan| match *p {
            WsPlan::CloseAfter { frames, .. } | WsPlan::Drop { after_frames: frames } => Some(frames),
            _ => None,
        };
        assert!(plans.iter().filter_map(frames).all(|n| (5..8).contains(&n)));
        assert!(plans.iter().any(|p| matches!(p, WsPlan::CloseAfter { .. })));
        assert!(plans.iter().any(|p| matches!(p, WsPlan::Drop { .. })));
        assert!(plans.iter().any(|p| matches!(p, WsPlan::Stall)));
        assert!(!plans.iter().any(|p| matches!(p, WsPlan::Serve)), "every connection ends");
        for code in CLOSE_CODES {
            let drawn = plans.iter().any(|p| matches!(p, WsPlan::CloseAfter { code: c, .. } if *c == code));
            assert!(drawn, "close code {code} is drawn");
        }
    }

    #[test]
    fn sse_plans_cover_every_fault() {
        let chaos = Chaos::new(1..3, Some(2));
        let plans: Vec<SsePlan> = (0..500).map(|_| chaos.sse_plan()).collect();
        assert!(plans.iter().any(|p| matches!(p, SsePlan::CutAfter { events: 1 | 2 })));
        assert!(plans.iter().any(|p| matches!(p, SsePlan::Status { code: 503, .. })));
        assert!(plans.iter().any(|p| matches!(p, SsePlan::Status { code: 500, .. })));
        assert!(plans.iter().any(|p| matches!(p, SsePlan::Stall)));
        assert!(!plans.contains(&SsePlan::Serve), "every connection ends");
    }

    #[test]
    fn the_first_connection_always_serves_data_first() {
        for seed in 0..200 {
            let chaos = Chaos::new(1..2, Some(seed));
            assert!(matches!(chaos.ws_plan(), WsPlan::CloseAfter { .. } | WsPlan::Drop { .. }), "seed {seed}");
            let chaos = Chaos::new(1..2, Some(seed));
            assert!(matches!(chaos.sse_plan(), SsePlan::CutAfter { .. }), "seed {seed}");
        }
    }

    #[test]
    fn a_seed_repeats_the_draws() {
        let (a, b) = (Chaos::new(1..100, Some(7)), Chaos::new(1..100, Some(7)));
        let draws = |c: &Chaos| (0..20).map(|_| c.ws_plan()).collect::<Vec<_>>();
        assert_eq!(draws(&a), draws(&b));
    }
}
