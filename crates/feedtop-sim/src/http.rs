//! The HTTP/1.1 plumbing the hand-written simulators share: reading a
//! request head with a size limit, its request line, status reasons, and
//! answering then closing without losing the answer.
//!
//! Every HTTP simulator (Companies House, SSE, stooq) reads requests with it.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time as ttime;

/// Request heads larger than this are refused (400): a real client sends < 1 KiB.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// A client that connects and sends no complete request head is dropped.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer waits for the client to close (see [`linger`]).
const LINGER: Duration = Duration::from_secs(2);

/// What reading a request head gave.
pub(crate) enum Head {
    /// The head up to its blank line, and the bytes read after it (the
    /// start of a body, for a POST).
    Complete(Vec<u8>, Vec<u8>),
    Invalid,
    /// The client left before sending anything.
    Gone,
}

/// The request head up to and including its blank line, and what followed it.
pub(crate) async fn read_head<R: AsyncRead + Unpin>(reader: &mut R) -> Head {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = head_end(&buf) {
            let rest = buf.split_off(end);
            return Head::Complete(buf, rest);
        }
        if buf.len() > MAX_HEAD {
            return Head::Invalid;
        }
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) if buf.is_empty() => return Head::Gone,
            Ok(0) | Err(_) => return Head::Invalid,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// End of the head: the first empty line (CRLF or, leniently, bare LF).
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `(method, target)` of a well-formed HTTP/1.x request line.
pub(crate) fn parse_request_line(line: &str) -> Option<(&str, &str)> {
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = parts.next().is_none()
        && !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && target.starts_with('/')
        && matches!(version, "HTTP/1.1" | "HTTP/1.0");
    valid.then_some((method, target))
}

pub(crate) fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Requested Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// A complete response with a `Content-Length`, then a polite close.
/// `headers` are whole `Name: value\r\n` lines.
pub(crate) async fn respond(socket: &mut TcpStream, code: u16, content_type: &str, headers: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n",
        reason(code),
        body.len()
    );
    if socket.write_all(head.as_bytes()).await.is_ok() && socket.write_all(body).await.is_ok() {
        linger(socket).await;
    }
}

/// Closing a socket that still has unread input makes the kernel send a reset,
/// which can destroy the response before the client reads it. So: half-close,
/// then drain until the client closes (or briefly).
pub(crate) async fn linger(socket: &mut TcpStream) {
    let _ = socket.shutdown().await;
    let mut sink = [0u8; 1024];
    let drain = async { while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = ttime::timeout(LINGER, drain).await;
}

/// Reads and drops whatever the client sends until it closes.
pub(crate) async fn wait_for_close(socket: &mut TcpStream) {
    let mut sink = [0u8; 256];
    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_request_lines() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nrest"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(parse_request_line("GET /q/l/?s=a+b HTTP/1.1"), Some(("GET", "/q/l/?s=a+b")));
        assert_eq!(parse_request_line("GET /x HTTP/2"), None);
        assert_eq!(parse_request_line("get /x HTTP/1.1"), None);
        assert_eq!(parse_request_line("GET x HTTP/1.1"), None);
        assert_eq!(parse_request_line("GET /x HTTP/1.1 extra"), None);
    }
}
