//! Asking the relay to reconnect one of its feeds, over core NATS
//! request/reply (not JetStream). Off unless the relay is started to accept
//! it, and only for users the NATS server lets publish to the subject: who
//! may ask is NATS's permissions, not feedtop's.
//!
//! The subject is `feedtop-ctl.<stream>.reconnect`, outside `feedtop.>`: a
//! request on a subject the stream captures would be stored, and answered
//! by JetStream's own acknowledgement, which would read as "done" even with
//! no relay listening. The stream's name in it keeps two relays that share
//! a server (each with its own stream) from answering for each other.
//! The request is the feed's name; the answer `ok <feed>`,
//! `unknown feed <feed>`, or why the relay cannot do it now.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use feedtop_proto::FeedId;

/// How long a viewer waits for the relay's answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest feed name a request is read as (longer is no feed's).
const MAX_REQUEST: usize = 256;

/// The subject a relay writing `stream` answers reconnect requests on.
pub fn subject(stream: &str) -> String {
    format!("feedtop-ctl.{}.reconnect", super::subjects::token(stream))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("the relay does not accept reconnect requests (start it with --accept-reconnect)")]
    NoResponders,
    /// Also what a user whom NATS does not let publish the request sees:
    /// the server refuses it without an answer.
    #[error("the relay did not answer the reconnect request within {secs}s (is this NATS user allowed to publish to {subject}?)", secs = .0.as_secs(), subject = .1)]
    Timeout(Duration, String),
    #[error("the relay refused: {0}")]
    Refused(String),
    #[error("NATS: {0}")]
    Nats(String),
}

/// Relay side: answers reconnect requests for `feeds`, sending each feed
/// asked for on `tx`. Returns once the server has the subscription (a
/// request after this is answered), with the task that answers; the task
/// ends when `tx`'s receiver is gone or the client closes.
pub async fn serve(
    client: async_nats::Client,
    stream: &str,
    feeds: Vec<FeedId>,
    tx: mpsc::Sender<FeedId>,
) -> Result<JoinHandle<()>, ControlError> {
    let subject = subject(stream);
    let mut requests = client.subscribe(subject.clone()).await.map_err(|e| ControlError::Nats(e.to_string()))?;
    // The subscription is at the server once a flush returns.
    client.flush().await.map_err(|e| ControlError::Nats(e.to_string()))?;
    tracing::info!("accepting reconnect requests on {subject}");
    Ok(tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let Some(reply) = request.reply else { continue };
            let (answer, stop) = answer(&request.payload, &feeds, &tx);
            if let Err(e) = client.publish(reply, answer.into()).await {
                tracing::debug!("NATS: cannot answer a reconnect request: {e}");
            }
            if stop {
                return;
            }
        }
    }))
}

/// The answer to one request, and whether the relay is stopping.
fn answer(payload: &[u8], feeds: &[FeedId], tx: &mpsc::Sender<FeedId>) -> (String, bool) {
    let text = String::from_utf8_lossy(&payload[..payload.len().min(MAX_REQUEST)]);
    let name = text.trim();
    let Some(feed) = feeds.iter().find(|f| f.as_str() == name) else {
        return (format!("unknown feed {name}"), false);
    };
    match tx.try_send(feed.clone()) {
        Ok(()) => {
            tracing::info!("{feed}: reconnecting, as a viewer asked");
            (format!("ok {feed}"), false)
        }
        Err(mpsc::error::TrySendError::Full(_)) => (format!("busy, try again: {feed}"), false),
        Err(mpsc::error::TrySendError::Closed(_)) => (format!("the relay is stopping: {feed}"), true),
    }
}

/// Viewer side: asks the relay writing `stream` to reconnect `feed`;
/// `ok <feed>` when it will.
pub async fn ask(client: &async_nats::Client, stream: &str, feed: &FeedId) -> Result<String, ControlError> {
    use async_nats::RequestErrorKind;
    let subject = subject(stream);
    let request = client.request(subject.clone(), feed.as_str().to_string().into());
    let reply = match tokio::time::timeout(ASK_TIMEOUT, request).await {
        Err(_) => return Err(ControlError::Timeout(ASK_TIMEOUT, subject)),
        Ok(Err(e)) => {
            return Err(match e.kind() {
                RequestErrorKind::NoResponders => ControlError::NoResponders,
                RequestErrorKind::TimedOut => ControlError::Timeout(ASK_TIMEOUT, subject),
                RequestErrorKind::Other => ControlError::Nats(e.to_string()),
            })
        }
        Ok(Ok(reply)) => reply,
    };
    // The answer is shown on a screen: whatever answered, it is made safe.
    let text = crate::sanitize::for_terminal(&String::from_utf8_lossy(&reply.payload)).into_owned();
    if text == format!("ok {feed}") {
        Ok(text)
    } else {
        Err(ControlError::Refused(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::NatsSettings;
    use crate::sim::nats::NatsServer;

    async fn client(url: &str) -> async_nats::Client {
        async_nats::connect(url).await.unwrap()
    }

    #[tokio::test]
    async fn a_relay_that_accepts_reconnects_the_feed_asked_for() {
        let server = NatsServer::start().unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let feeds = vec![FeedId::new("ch/companies"), FeedId::new("wig80")];
        let relay = client(&server.url()).await;
        let task = serve(relay, "FEEDTOP", feeds, tx).await.unwrap();
        let viewer = client(&server.url()).await;
        assert_eq!(ask(&viewer, "FEEDTOP", &FeedId::new("wig80")).await.unwrap(), "ok wig80");
        assert_eq!(rx.recv().await.unwrap().as_str(), "wig80");
        let e = ask(&viewer, "FEEDTOP", &FeedId::new("nope\x1b[2J")).await.unwrap_err();
        assert_eq!(e, ControlError::Refused("unknown feed nope\u{FFFD}[2J".into()), "made safe for a screen");
        assert!(rx.try_recv().is_err(), "an unknown feed reconnects nothing");
        // Another relay's stream: nobody answers there.
        assert_eq!(ask(&viewer, "OTHER", &FeedId::new("wig80")).await.unwrap_err(), ControlError::NoResponders);
        drop(rx);
        // A relay that is stopping says so, and stops answering.
        let e = ask(&viewer, "FEEDTOP", &FeedId::new("wig80")).await.unwrap_err();
        assert!(matches!(e, ControlError::Refused(ref t) if t.contains("stopping")), "{e:?}");
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    }

    /// Off by default: with no relay accepting, even where the relay's
    /// stream captures `feedtop.>`, the viewer hears "no responders", never
    /// JetStream's acknowledgement of a stored request.
    #[tokio::test]
    async fn without_a_relay_accepting_the_viewer_is_told_how_to_turn_it_on() {
        let server = NatsServer::start().unwrap();
        let viewer = client(&server.url()).await;
        let settings = NatsSettings::new(server.url());
        async_nats::jetstream::new(viewer.clone()).create_stream(settings.stream_config()).await.unwrap();
        let e = ask(&viewer, &settings.stream, &FeedId::new("ch/companies")).await.unwrap_err();
        assert_eq!(e, ControlError::NoResponders);
        assert_eq!(e.to_string(), "the relay does not accept reconnect requests (start it with --accept-reconnect)");
    }

    /// Who may ask is NATS's to say: a user the server does not let
    /// publish the request is told so, and nothing reconnects.
    #[tokio::test]
    async fn only_users_nats_allows_can_ask() {
        let conf = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            conf.path(),
            r#"authorization { users = [
                { user: relay, password: rp }
                { user: ops, password: op }
                { user: viewer, password: vp, permissions: { publish: { deny: ["feedtop-ctl.>"] } } }
            ] }"#,
        )
        .unwrap();
        let server = NatsServer::start_with(&["-c", &conf.path().display().to_string()]).unwrap();
        let as_user = |user: &str, password: &str| {
            async_nats::ConnectOptions::new().user_and_password(user.into(), password.into()).connect(server.url())
        };
        let (tx, mut rx) = mpsc::channel(4);
        let relay = as_user("relay", "rp").await.unwrap();
        let _task = serve(relay, "FEEDTOP", vec![FeedId::new("wig80")], tx).await.unwrap();
        let viewer = as_user("viewer", "vp").await.unwrap();
        let e = ask(&viewer, "FEEDTOP", &FeedId::new("wig80")).await.unwrap_err();
        assert_eq!(e, ControlError::Timeout(ASK_TIMEOUT, "feedtop-ctl.FEEDTOP.reconnect".into()));
        assert!(
            e.to_string().contains("is this NATS user allowed to publish to feedtop-ctl.FEEDTOP.reconnect?"),
            "{e}"
        );
        assert!(rx.try_recv().is_err(), "the refused request reconnected nothing");
        let ops = as_user("ops", "op").await.unwrap();
        assert_eq!(ask(&ops, "FEEDTOP", &FeedId::new("wig80")).await.unwrap(), "ok wig80");
        assert_eq!(rx.recv().await.unwrap().as_str(), "wig80");
    }

    #[test]
    fn a_full_queue_is_busy_not_lost() {
        let (tx, _rx) = mpsc::channel(1);
        let feeds = [FeedId::new("a")];
        assert_eq!(answer(b"a", &feeds, &tx), ("ok a".to_string(), false));
        assert_eq!(answer(b" a\n", &feeds, &tx).0, "busy, try again: a");
        let long = vec![b'x'; 10_000];
        assert_eq!(answer(&long, &feeds, &tx).0.len(), "unknown feed ".len() + MAX_REQUEST);
    }
}
