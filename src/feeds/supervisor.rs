//! The reconnect loop every feed shares.
//!
//! A feed kind supplies a [`Connector`]: one connection attempt, from dialing
//! to the end of the stream, reporting what it receives through a
//! [`FeedLink`]. [`supervise`] runs attempts forever: it announces states,
//! decides waits (exponential backoff with full jitter, slow retries after an
//! auth failure, the server's own minimum where it gives one), resets the
//! backoff only after a healthy connection, and cuts a wait short on a
//! reconnect command.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::mpsc;

use super::backoff::Backoff;
use super::{Command, ConnState, FeedId, FeedMsg, FeedMsgKind};

/// Reconnect timings, the same knobs for every feed kind. Tests shrink them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    /// TCP connect (and TLS, for HTTP feeds) must finish within this.
    pub connect_timeout: Duration,
    /// Once connected, the response head (HTTP feeds) or the WebSocket
    /// upgrade (TLS included) must be complete within this: a server that
    /// accepts and never answers, or trickles header bytes, is given up on.
    pub response_timeout: Duration,
    /// No byte for this long → reconnect. Never a total request timeout.
    pub read_timeout: Duration,
    /// No byte for this long on a live connection → shown as `stalled`
    /// (before the read-idle reconnect): the feed's heartbeat interval and a
    /// margin. Shorter than `read_timeout`.
    pub stall_after: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A connection must stay up this long before the backoff resets.
    pub healthy_after: Duration,
    /// Wait after the server refused our credentials.
    pub auth_retry: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(90),
            // Companies House sends a heartbeat every 30 s.
            stall_after: Duration::from_secs(45),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            healthy_after: Duration::from_secs(60),
            auth_retry: Duration::from_secs(300),
        }
    }
}

/// The shortest wait between two attempts, whatever the settings or the
/// server say. The settings are bounded where they are read (`bounds`); this
/// is the second line of defence, so that a zero backoff (`Reconnect` built
/// in code, a zero `auth_retry`, `Retry-After: 0`) can never turn the loop
/// into a flood of requests: at most ten attempts a second.
pub const MIN_WAIT: Duration = Duration::from_millis(100);

/// What decides the wait after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The next backoff delay.
    Backoff,
    /// The next backoff delay, but no less than this (429 `Retry-After`, SSE `retry:`).
    AtLeast(Duration),
    /// Credentials refused: wait `auth_retry` and show `auth failed`.
    Auth,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The connection failed or ended; `live_for` is how long it was up.
    Dropped { error: String, live_for: Duration, retry: Retry },
    /// The user asked for a reconnect.
    ReconnectRequested,
    /// The core loop is gone: stop the task.
    Shutdown,
}

impl Outcome {
    pub fn failed(error: impl Into<String>, retry: Retry) -> Self {
        Outcome::Dropped { error: error.into(), live_for: Duration::ZERO, retry }
    }
}

/// Where a feed task reads the time: the wall clock, or a test's own.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// A feed task's two channels: messages out, commands in.
pub struct FeedLink {
    id: FeedId,
    tx: mpsc::Sender<FeedMsg>,
    control: mpsc::Receiver<Command>,
    clock: Clock,
}

impl FeedLink {
    pub fn new(id: FeedId, tx: mpsc::Sender<FeedMsg>, control: mpsc::Receiver<Command>) -> Self {
        Self { id, tx, control, clock: Arc::new(Utc::now) }
    }

    /// The same link reading `clock` instead of the wall clock (tests).
    pub fn with_clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
    }

    /// The time now, by this link's clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Sends one message stamped with the time now: for what the task itself
    /// decides (states, errors, notices). What was read from the server goes
    /// with [`Self::send_at`] and the time it was read. False once the core
    /// loop is gone.
    pub async fn send(&self, kind: FeedMsgKind) -> bool {
        self.send_at(self.now(), kind).await
    }

    /// Sends one message stamped `at`, the time its bytes were read from the
    /// socket: the core may be slow to take it (the channel is bounded), and
    /// that wait must not count as the feed's latency. False once the core
    /// loop is gone.
    pub async fn send_at(&self, at: DateTime<Utc>, kind: FeedMsgKind) -> bool {
        self.tx.send(FeedMsg { feed: self.id.clone(), at, kind }).await.is_ok()
    }

    /// The next command; `None` when the core loop is gone. Cancel-safe, so it
    /// can sit in a `select!` beside the socket.
    pub async fn command(&mut self) -> Option<Command> {
        self.control.recv().await
    }

    /// What a command received mid-connection means for the attempt.
    pub fn on_command(command: Option<Command>) -> Outcome {
        match command {
            Some(Command::Reconnect) => Outcome::ReconnectRequested,
            Some(Command::Shutdown) | None => Outcome::Shutdown,
        }
    }
}

/// What waiting for the next chunk of an HTTP stream gave.
pub enum Read {
    /// Bytes, and when they were read: every item decoded from them is
    /// stamped with it (an item that began in an earlier chunk was complete
    /// only now).
    Chunk { bytes: bytes::Bytes, at: DateTime<Utc> },
    /// The stream is over; why, for the connections pane.
    Ended(String),
    /// A command arrived: end the attempt with this outcome.
    Command(Outcome),
}

/// The next chunk of a streaming HTTP body, or why there is none: the read-idle
/// timeout (no byte for `read_timeout`, never a total timeout), the server's
/// close, a failure, or a command from the user. Shared by every HTTP feed.
pub async fn read_chunk(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    link: &mut FeedLink,
    read_timeout: Duration,
) -> Read {
    read_chunk_since(body, link, tokio::time::Instant::now(), read_timeout).await
}

/// As [`read_chunk`], for a read that sits in a `select!` beside other work
/// and so is started again after that work: the read-idle deadline counts
/// from `idle_since` (the last chunk), not from this call.
pub async fn read_chunk_since(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    link: &mut FeedLink,
    idle_since: tokio::time::Instant,
    read_timeout: Duration,
) -> Read {
    use futures_util::StreamExt;
    let clock = link.clock.clone();
    tokio::select! {
        next = tokio::time::timeout_at(idle_since + read_timeout, body.next()) => match next {
            Err(_) => Read::Ended(format!("no data for {}s (read-idle timeout); reconnecting", read_timeout.as_secs_f64())),
            Ok(None) => Read::Ended("the server closed the stream".to_string()),
            Ok(Some(Err(e))) => Read::Ended(format!("stream failed: {}", super::companies_house::error_chain(&e))),
            // Stamped as it comes off the socket, before anything waits on the core.
            Ok(Some(Ok(bytes))) => Read::Chunk { bytes, at: clock() },
        },
        cmd = link.command() => Read::Command(FeedLink::on_command(cmd)),
    }
}

/// One connection attempt of a feed kind.
pub trait Connector: Send {
    fn attempt<'a>(&'a mut self, link: &'a mut FeedLink) -> impl Future<Output = Outcome> + Send + 'a;
}

/// Runs attempts until the core loop goes away.
pub async fn supervise(mut link: FeedLink, timings: Reconnect, mut connector: impl Connector) {
    let mut backoff = Backoff::new(timings.backoff_base, timings.backoff_cap);
    let mut rng = StdRng::from_os_rng();
    loop {
        if !link.send(FeedMsgKind::State(ConnState::Connecting)).await {
            return;
        }
        let (error, live_for, retry) = match connector.attempt(&mut link).await {
            Outcome::Shutdown => return,
            Outcome::ReconnectRequested => continue,
            Outcome::Dropped { error, live_for, retry } => (error, live_for, retry),
        };
        if live_for >= timings.healthy_after {
            backoff.reset();
        }
        if !link.send(FeedMsgKind::Error(error)).await {
            return;
        }
        let (wait, auth) = match retry {
            Retry::Backoff => (backoff.next_delay(&mut rng), false),
            Retry::AtLeast(min) => (backoff.next_delay(&mut rng).max(min), false),
            Retry::Auth => (timings.auth_retry, true),
        };
        let wait = wait.max(MIN_WAIT);
        // A server may ask for any wait (`Retry-After: 99999999999999`): past
        // the last representable date, show that date rather than overflow.
        let retry_at = chrono::TimeDelta::from_std(wait)
            .ok()
            .and_then(|wait| Utc::now().checked_add_signed(wait))
            .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
        let state = if auth { ConnState::AuthFailed { retry_at } } else { ConnState::Backoff { retry_at } };
        if !link.send(FeedMsgKind::State(state)).await {
            return;
        }
        // The control channel closes with the core loop, so this also ends the task then.
        let go_on = tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            cmd = link.command() => cmd == Some(Command::Reconnect),
        };
        if !go_on {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails every attempt the same way and counts them.
    struct AlwaysFails {
        retry: Retry,
        attempts: usize,
    }

    impl Connector for AlwaysFails {
        async fn attempt(&mut self, _link: &mut FeedLink) -> Outcome {
            self.attempts += 1;
            Outcome::failed("refused", self.retry)
        }
    }

    fn fast() -> Reconnect {
        Reconnect {
            backoff_base: Duration::from_millis(10),
            backoff_cap: Duration::from_millis(40),
            auth_retry: Duration::from_secs(3600),
            ..Reconnect::default()
        }
    }

    async fn states(retry: Retry, n: usize) -> Vec<FeedMsgKind> {
        let (tx, mut rx) = mpsc::channel(64);
        let (_ctl_tx, ctl_rx) = mpsc::channel(1);
        let task = tokio::spawn(supervise(
            FeedLink::new("test".into(), tx, ctl_rx),
            fast(),
            AlwaysFails { retry, attempts: 0 },
        ));
        let mut seen = Vec::new();
        while seen.len() < n {
            seen.push(rx.recv().await.unwrap().kind);
        }
        task.abort();
        seen
    }

    #[tokio::test]
    async fn failures_cycle_connecting_error_backoff() {
        let seen = states(Retry::Backoff, 6).await;
        assert!(matches!(seen[0], FeedMsgKind::State(ConnState::Connecting)));
        assert!(matches!(&seen[1], FeedMsgKind::Error(e) if e == "refused"));
        assert!(matches!(seen[2], FeedMsgKind::State(ConnState::Backoff { .. })));
        assert!(matches!(seen[3], FeedMsgKind::State(ConnState::Connecting)), "retried after the backoff");
    }

    #[tokio::test]
    async fn auth_failure_waits_the_slow_retry_and_a_command_cuts_it_short() {
        let (tx, mut rx) = mpsc::channel(64);
        let (ctl_tx, ctl_rx) = mpsc::channel(1);
        let task = tokio::spawn(supervise(
            FeedLink::new("test".into(), tx, ctl_rx),
            fast(),
            AlwaysFails { retry: Retry::Auth, attempts: 0 },
        ));
        let mut kinds = Vec::new();
        for _ in 0..3 {
            kinds.push(rx.recv().await.unwrap().kind);
        }
        let FeedMsgKind::State(ConnState::AuthFailed { retry_at }) = kinds[2] else { panic!("{kinds:?}") };
        assert!(retry_at - Utc::now() > chrono::TimeDelta::minutes(59), "waits auth_retry");
        // Nothing more comes during the hour-long wait, until a reconnect command.
        assert!(tokio::time::timeout(Duration::from_millis(100), rx.recv()).await.is_err());
        ctl_tx.send(Command::Reconnect).await.unwrap();
        assert!(matches!(rx.recv().await.unwrap().kind, FeedMsgKind::State(ConnState::Connecting)));
        task.abort();
    }

    #[tokio::test]
    async fn server_minimum_is_honoured() {
        let seen = states(Retry::AtLeast(Duration::from_secs(30)), 3).await;
        let FeedMsgKind::State(ConnState::Backoff { retry_at }) = seen[2] else { panic!("{seen:?}") };
        assert!(retry_at - Utc::now() > chrono::TimeDelta::seconds(29));
    }

    #[tokio::test]
    async fn a_wait_past_the_last_date_does_not_panic() {
        let seen = states(Retry::AtLeast(Duration::from_secs(99_999_999_999_999)), 3).await;
        let FeedMsgKind::State(ConnState::Backoff { retry_at }) = seen[2] else { panic!("{seen:?}") };
        assert_eq!(retry_at, chrono::DateTime::<Utc>::MAX_UTC);
    }

    /// Counts attempts where the test can read them while the task runs.
    struct CountedFailures(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl Connector for CountedFailures {
        async fn attempt(&mut self, _link: &mut FeedLink) -> Outcome {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Outcome::failed("HTTP 503", Retry::Backoff)
        }
    }

    /// A zero cap (and zero everything) reaching the loop must not make it
    /// hammer: each attempt after the first waits at least MIN_WAIT, so by
    /// any moment the count is at most 1 + elapsed / MIN_WAIT. (On the old
    /// code this connector was called thousands of times in milliseconds.)
    #[tokio::test]
    async fn zero_backoff_never_hammers() {
        use std::sync::atomic::Ordering;
        let zero = Reconnect {
            backoff_base: Duration::ZERO,
            backoff_cap: Duration::ZERO,
            auth_retry: Duration::ZERO,
            ..Reconnect::default()
        };
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tx, mut rx) = mpsc::channel(64);
        let (_ctl_tx, ctl_rx) = mpsc::channel(1);
        let started = std::time::Instant::now();
        let task =
            tokio::spawn(supervise(FeedLink::new("test".into(), tx, ctl_rx), zero, CountedFailures(attempts.clone())));
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        // It keeps retrying: wait (with a deadline) for a few attempts.
        let deadline = started + Duration::from_secs(10);
        let mut poll = tokio::time::interval(Duration::from_millis(10));
        while attempts.load(Ordering::SeqCst) < 4 && std::time::Instant::now() < deadline {
            poll.tick().await;
        }
        let seen = attempts.load(Ordering::SeqCst);
        let elapsed = started.elapsed();
        task.abort();
        drain.abort();
        assert!(seen >= 4, "it retries: {seen} attempts in {elapsed:?}");
        let allowed = 1 + (elapsed.as_millis() / MIN_WAIT.as_millis()) as usize;
        assert!(seen <= allowed, "{seen} attempts in {elapsed:?}: more than one per {MIN_WAIT:?}");
    }

    #[tokio::test]
    async fn task_ends_when_the_core_loop_goes_away() {
        let (tx, rx) = mpsc::channel(1);
        let (_ctl_tx, ctl_rx) = mpsc::channel(1);
        drop(rx);
        let task = tokio::spawn(supervise(
            FeedLink::new("test".into(), tx, ctl_rx),
            fast(),
            AlwaysFails { retry: Retry::Backoff, attempts: 0 },
        ));
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("stopped").unwrap();
    }
}
