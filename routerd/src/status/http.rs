//! A deliberately small HTTP/1.1 server: GET `/` (the page) and `/metrics`, one
//! request per connection, bounded in size, time and concurrency.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use rtnetlink::Handle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::collect::Collector;
use super::{metrics, page, Shared};

const MAX_REQUEST: usize = 8192;
const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 16;

/// The server task; dropping it (abort) closes the listener.
pub struct Running {
    task: tokio::task::JoinHandle<()>,
    pub addr: SocketAddrV4,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` (the LAN address: never the WAN) and serves in a task.
pub async fn start(addr: SocketAddrV4, shared: Arc<Shared>, netlink: Handle) -> std::io::Result<Running> {
    let listener = TcpListener::bind(addr).await?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let collector = Collector::new(shared, netlink);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, say: wait instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                continue; // too many at once: drop the connection
            };
            let collector = collector.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(TIMEOUT, serve(stream, &collector)).await;
                drop(permit);
            });
        }
    });
    tracing::info!(%addr, "status page and metrics listening");
    Ok(Running { task, addr })
}

/// The path of a `GET` request head, if it is one.
pub fn request_path(head: &[u8]) -> Option<&str> {
    let line = head.split(|b| *b == b'\r' || *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("GET"), Some(path), Some(v)) if v.starts_with("HTTP/1.") => Some(path),
        _ => None,
    }
}

async fn serve(mut stream: TcpStream, collector: &Arc<Collector>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let (status, kind, body) = match request_path(&head).map(|p| p.split('?').next().unwrap_or(p)) {
        Some("/") => (
            "200 OK",
            "text/html; charset=utf-8",
            page::render(&*collector.snapshot().await),
        ),
        Some("/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(&*collector.snapshot().await),
        ),
        Some(_) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        None => ("400 Bad Request", "text/plain", "bad request\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_get_lines_only() {
        assert_eq!(
            request_path(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some("/metrics")
        );
        assert_eq!(request_path(b"GET / HTTP/1.0\n\n"), Some("/"));
        assert_eq!(request_path(b"POST / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(request_path(b"GET /\r\n\r\n"), None);
        assert_eq!(request_path(b"\xff\xfe"), None);
    }
}
