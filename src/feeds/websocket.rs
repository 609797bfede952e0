//! WebSocket quote feeds (docs/protocols.md §2 and §3).
//!
//! One connection per feed: connect (with the token in the query for carbon),
//! subscribe, ping every `ping_every` (carbon drops a client that stays quiet
//! for 30 s; the pong also gives the round-trip time), and read frames until
//! the server closes, the socket dies or nothing arrives for `read_timeout`.
//! The dialect only changes the frames: decoding lives in `decode::*`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::decode::{self, carbon, wig80};
use super::quote::Dialect;
use super::redirect::MAX_REDIRECTS;
use super::secret::{redact_url, with_token, ApiKey};
use super::session::QuoteSession;
use super::supervisor::{Connector, FeedLink, Outcome, Reconnect, Retry};
use super::{Command, ConnState, FeedMsgKind};

/// Frames larger than this end the connection (counted) instead of memory.
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct WsSettings {
    pub url: String,
    pub dialect: Dialect,
    /// carbon: the JWT, sent as `?token=`.
    pub token: Option<ApiKey>,
    /// carbon: topics to subscribe to.
    pub topics: Vec<String>,
    /// carbon: subscription filters, e.g. `{"commodity": "oil"}`.
    pub filters: Option<Map<String, Value>>,
    /// Keep only these symbols (empty: all).
    pub symbols: Vec<String>,
    pub ping_every: Duration,
    pub reconnect: Reconnect,
    pub max_frame: usize,
}

impl WsSettings {
    pub fn new(url: impl Into<String>, dialect: Dialect) -> Self {
        Self {
            url: url.into(),
            dialect,
            token: None,
            topics: vec!["served.market.latest_prices.v1".to_string()],
            filters: None,
            symbols: Vec::new(),
            ping_every: Duration::from_secs(12),
            // wig80 sends a snapshot every 30 s and our pings are answered
            // every 12 s, so a minute of silence means a dead connection.
            // Our pings are answered every 12 s (and wig80 pings us every 20 s):
            // 30 s of silence is already unusual.
            reconnect: Reconnect {
                read_timeout: Duration::from_secs(60),
                stall_after: Duration::from_secs(30),
                ..Reconnect::default()
            },
            max_frame: MAX_FRAME,
        }
    }

    fn subscribe_frame(&self) -> String {
        match self.dialect {
            Dialect::Wig80 => wig80::subscribe(),
            Dialect::Carbon => carbon::subscribe(&self.topics, self.filters.as_ref()),
        }
    }

    fn ping_frame(&self) -> String {
        match self.dialect {
            Dialect::Wig80 => wig80::ping(),
            Dialect::Carbon => carbon::ping(),
        }
    }

    /// Error text fit to show: no token in it.
    fn scrub(&self, text: String) -> String {
        match &self.token {
            Some(t) => t.scrub(&text),
            None => text,
        }
    }
}

/// Where to dial for a `ws://` or `wss://` URI (IPv6 literals without brackets).
fn host_and_port(uri: &tokio_tungstenite::tungstenite::http::Uri) -> Option<(String, u16)> {
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_string();
    let default = if uri.scheme_str() == Some("wss") { 443 } else { 80 };
    Some((host, uri.port_u16().unwrap_or(default)))
}

pub struct WsConnector {
    settings: WsSettings,
}

impl WsConnector {
    pub fn new(settings: WsSettings) -> Self {
        Self { settings }
    }

    /// Why the upgrade of `target` (the URL last asked, token included)
    /// failed, fit to show.
    fn handshake_failure(&self, e: WsError, target: &str) -> Outcome {
        let shown = redact_url(&self.settings.url);
        match e {
            WsError::Http(response) if response.status().is_redirection() => {
                let location = response.headers().get("location").and_then(|v| v.to_str().ok());
                let error = match url::Url::parse(target) {
                    Ok(from) => super::redirect::moved(response.status().as_u16(), location, &from),
                    Err(_) => format!("HTTP {} from {shown} instead of a WebSocket upgrade", response.status()),
                };
                Outcome::failed(self.settings.scrub(error), Retry::Backoff)
            }
            WsError::Http(response) => {
                let status = response.status();
                let retry = if matches!(status.as_u16(), 401 | 403) { Retry::Auth } else { Retry::Backoff };
                Outcome::failed(format!("HTTP {status} from {shown} instead of a WebSocket upgrade"), retry)
            }
            other => {
                Outcome::failed(self.settings.scrub(format!("cannot connect to {shown}: {other}")), Retry::Backoff)
            }
        }
    }
}

/// What one connection and upgrade attempt gave.
enum Dialed {
    Open(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
    /// The server answered, but not with an upgrade (or the URL is unusable).
    Refused(WsError),
    /// A phase ran out of time or the socket failed; or a command arrived.
    Failed(Outcome),
}

impl WsConnector {
    /// Connects to `target` and upgrades, each phase under its own deadline
    /// so that the error says which one hung.
    async fn dial(&self, target: &str, config: WebSocketConfig, link: &mut FeedLink) -> Dialed {
        let s = &self.settings;
        let request = match target.into_client_request() {
            Ok(request) => request,
            Err(e) => return Dialed::Refused(e),
        };
        let Some((host, port)) = host_and_port(request.uri()) else {
            return Dialed::Failed(Outcome::failed(
                format!("{} has no host to connect to", redact_url(&s.url)),
                Retry::Backoff,
            ));
        };
        let timings = &s.reconnect;
        let tcp = tokio::select! {
            r = tokio::time::timeout(timings.connect_timeout, TcpStream::connect((host.as_str(), port))) => r,
            cmd = link.command() => return Dialed::Failed(FeedLink::on_command(cmd)),
        };
        let tcp = match tcp {
            Err(_) => {
                let within = humantime::format_duration(timings.connect_timeout);
                let error = format!("no TCP connection to {host}:{port} within {within}");
                return Dialed::Failed(Outcome::failed(error, Retry::Backoff));
            }
            Ok(Err(e)) => {
                let error = s.scrub(format!("cannot connect to {}: {e}", redact_url(&s.url)));
                return Dialed::Failed(Outcome::failed(error, Retry::Backoff));
            }
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        let upgrade = tokio_tungstenite::client_async_tls_with_config(request, tcp, Some(config), None);
        let upgraded = tokio::select! {
            r = tokio::time::timeout(timings.response_timeout, upgrade) => r,
            cmd = link.command() => return Dialed::Failed(FeedLink::on_command(cmd)),
        };
        match upgraded {
            Err(_) => {
                let within = humantime::format_duration(timings.response_timeout);
                let error =
                    format!("no WebSocket upgrade within {within} (the server took the connection but did not answer)");
                Dialed::Failed(Outcome::failed(error, Retry::Backoff))
            }
            Ok(Err(e)) => Dialed::Refused(e),
            Ok(Ok((ws, _response))) => Dialed::Open(Box::new(ws)),
        }
    }
}

impl Connector for WsConnector {
    async fn attempt(&mut self, link: &mut FeedLink) -> Outcome {
        let s = &self.settings;
        let mut target = with_token(&s.url, s.token.as_ref());
        let config = WebSocketConfig::default().max_message_size(Some(s.max_frame)).max_frame_size(Some(s.max_frame));
        // A 3xx to the same origin is followed (a few times); any other is
        // refused by `handshake_failure`, naming where it pointed.
        let mut hops = 0;
        let mut ws = loop {
            let e = match self.dial(&target, config, link).await {
                Dialed::Open(ws) => break *ws,
                Dialed::Failed(outcome) => return outcome,
                Dialed::Refused(e) => e,
            };
            if let WsError::Http(response) = &e {
                let location = response.headers().get("location").and_then(|v| v.to_str().ok());
                let next = url::Url::parse(&target).ok().and_then(|from| super::redirect::next_hop(&from, location));
                if let (true, Some(next)) = (response.status().is_redirection() && hops < MAX_REDIRECTS, next) {
                    hops += 1;
                    target = next.into();
                    continue;
                }
            }
            return self.handshake_failure(e, &target);
        };
        let s = &self.settings;
        if !link.send(FeedMsgKind::State(ConnState::Live)).await {
            return Outcome::Shutdown;
        }
        let live_since = Instant::now();
        let mut session = QuoteSession::new(&s.symbols);
        let mut ping = interval_at(Instant::now() + s.ping_every, s.ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);

        // Subscribing again after every reconnect is what resumes the flow.
        let end = if let Err(e) = ws.send(Message::text(s.subscribe_frame())).await {
            format!("sending the subscription failed: {e}")
        } else {
            // The idle deadline moves only when something arrives: our own
            // pings must not keep a dead connection looking alive.
            let read_timeout = s.reconnect.read_timeout;
            let mut deadline = Instant::now() + read_timeout;
            loop {
                let next = tokio::select! {
                    cmd = link.command() => {
                        // Servers log a close without a code as 1005/1006.
                        let (code, reason) = match cmd {
                            Some(Command::Reconnect) => (CloseCode::Normal, "reconnecting"),
                            _ => (CloseCode::Away, "feedtop is stopping"),
                        };
                        let frame = CloseFrame { code, reason: reason.into() };
                        // The closing handshake: send ours, then read until the
                        // server's close (or the socket's end), so the server
                        // reads ours before the socket goes.
                        let handshake = async {
                            if ws.close(Some(frame)).await.is_ok() {
                                while let Some(Ok(message)) = ws.next().await {
                                    if message.is_close() {
                                        break;
                                    }
                                }
                            }
                        };
                        let _ = tokio::time::timeout(Duration::from_secs(1), handshake).await;
                        return FeedLink::on_command(cmd);
                    }
                    _ = ping.tick() => {
                        session.ping_sent(std::time::Instant::now());
                        if let Err(e) = ws.send(Message::text(s.ping_frame())).await {
                            break format!("sending a ping failed: {e}");
                        }
                        continue;
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        break format!("no data for {}s (read-idle timeout); reconnecting", read_timeout.as_secs_f64());
                    }
                    next = ws.next() => next,
                };
                deadline = Instant::now() + read_timeout;
                // The frame's arrival, before anything waits on the core.
                let at = link.now();
                let kind = match next {
                    None => break "the connection closed".to_string(),
                    Some(Err(WsError::Capacity(e))) => {
                        if !link.send_at(at, FeedMsgKind::TooLong).await {
                            return Outcome::Shutdown;
                        }
                        break format!("a frame over the {} KiB limit ({e}); reconnecting", s.max_frame / 1024);
                    }
                    Some(Err(e)) => break format!("connection failed: {e}"),
                    Some(Ok(message)) => match message {
                        Message::Text(text) => session.on_decoded(decode::decode(s.dialect, text.as_str())),
                        Message::Binary(bytes) => {
                            FeedMsgKind::Malformed { reason: format!("binary frame of {} bytes ignored", bytes.len()) }
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => FeedMsgKind::Bytes,
                        Message::Close(frame) => {
                            break match frame {
                                Some(f) if f.reason.is_empty() => {
                                    format!("closed by the server (code {})", u16::from(f.code))
                                }
                                Some(f) => format!("closed by the server (code {}: {})", u16::from(f.code), f.reason),
                                None => "closed by the server".to_string(),
                            }
                        }
                    },
                };
                if !link.send_at(at, kind).await {
                    return Outcome::Shutdown;
                }
            }
        };
        let (error, retry) = session.ending(self.settings.scrub(end));
        Outcome::Dropped { error, live_for: live_since.elapsed(), retry }
    }
}
