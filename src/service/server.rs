//! The `--listen` HTTP server: `/health` and `/metrics` from the latest
//! published [`Snapshot`](super::Snapshot), 404 for anything else.
//!
//! Bounded so that no client can hurt the pipeline: it only reads a watch
//! channel (never the model), at most [`MAX_CONNECTIONS`] connections are
//! served at once (more wait in the kernel's backlog), a request head must
//! arrive within [`HEAD_TIMEOUT`] and fit hyper's smallest read buffer
//! (8 KiB), and a whole connection is closed after [`CONNECTION_TIMEOUT`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::metrics::{encode_snapshot, CONTENT_TYPE};
use super::snapshot::Latest;

pub const MAX_CONNECTIONS: usize = 16;
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper's minimum; a request head larger than this is refused.
const MAX_HEAD: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "--listen {0}: not a loopback address; /health and /metrics would be open to the network \
         (add --listen-any if that is meant, e.g. behind a firewall)"
    )]
    NotLoopback(SocketAddr),
    #[error("--listen {addr}: cannot listen there: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Binds `addr`, refusing a non-loopback one unless `any`.
pub async fn bind(addr: SocketAddr, any: bool) -> Result<TcpListener, ListenError> {
    if !addr.ip().is_loopback() && !any {
        return Err(ListenError::NotLoopback(addr));
    }
    TcpListener::bind(addr).await.map_err(|source| ListenError::Bind { addr, source })
}

/// Serves until the task is aborted (or the runtime ends).
pub fn spawn(listener: TcpListener, latest: Latest) -> tokio::task::JoinHandle<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else { return };
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause, never spin.
                    tracing::warn!("--listen: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let latest = latest.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let latest = latest.clone();
                    async move { Ok::<_, Infallible>(respond(&req, &latest)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .max_buf_size(MAX_HEAD)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
                drop(permit);
            });
        }
    })
}

fn respond(req: &Request<Incoming>, latest: &Latest) -> Response<Full<Bytes>> {
    let snapshot = latest.borrow().clone();
    match (req.uri().path(), snapshot) {
        ("/health", Some(s)) => {
            let status = if s.healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            // Feed text (errors) is in it: escaped as in the headless lines.
            let body = crate::sanitize::json_line(&*s).expect("snapshots serialise");
            reply(status, "application/json", body + "\n")
        }
        ("/health", None) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            "{\"healthy\":false,\"reason\":\"starting\",\"feeds\":[]}\n".into(),
        ),
        ("/metrics", Some(s)) => reply(StatusCode::OK, CONTENT_TYPE, encode_snapshot(&s, chrono::Utc::now())),
        ("/metrics", None) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n".into()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /health or /metrics\n".into()),
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
