//! A server that takes connections and never gives a usable answer: it is
//! silent, or it trickles the start of a response head a byte at a time and
//! never finishes it. Whatever the protocol (HTTP stream, SSE, WebSocket
//! upgrade), a client must give up on it by its own deadline.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How the server fails to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mute {
    /// Read the request, answer nothing, keep the socket open.
    Silent,
    /// Send `HTTP/1.1 200 OK\r\n`, then header bytes one every `every`, for ever.
    Trickle { every: Duration },
}

/// A running mute server on `127.0.0.1`; dropping it stops it and its sockets.
pub struct MuteServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl MuteServer {
    pub async fn start(mute: Mute) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut sockets = tokio::task::JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                sockets.spawn(hold(socket, mute));
            }
        });
        Ok(Self { addr, accepted, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for MuteServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops the JoinSet, which aborts every socket.
        self.task.abort();
    }
}

async fn hold(mut socket: TcpStream, mute: Mute) {
    let mut sink = [0u8; 1024];
    match mute {
        Mute::Silent => while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {},
        Mute::Trickle { every } => {
            if socket.write_all(b"HTTP/1.1 200 OK\r\n").await.is_err() {
                return;
            }
            // A header that never ends: `X-Padding: aaaa…`.
            if socket.write_all(b"X-Padding: ").await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(every).await;
                if socket.write_all(b"a").await.is_err() {
                    return;
                }
            }
        }
    }
}
