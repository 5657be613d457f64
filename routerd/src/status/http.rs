//! A deliberately small HTTP/1.1 server: GET `/` (the page), `/api/status` and `/metrics`, one
//! request per connection, bounded in size, time and concurrency.

use std::net::{IpAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::collect::Collector;
use super::{api, metrics, page};

const MAX_REQUEST: usize = 8192;
/// The whole request head must arrive within this: a client that trickles it (slowloris)
/// loses its connection.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Collecting the snapshot and sending the answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 16;
/// Connections one client address may hold at once.
const MAX_PER_CLIENT: usize = 4;

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

/// One open connection, as the admission of new ones sees it.
#[derive(Debug)]
struct Slot {
    id: u64,
    client: IpAddr,
    /// Still waiting for its request head (a slow or idle client).
    reading_head: bool,
    /// Its task, to close it when a new client needs the slot.
    task: Option<AbortHandle>,
}

/// The connection slots, oldest first.
#[derive(Debug, Default)]
struct Slots {
    next_id: u64,
    held: Vec<Slot>,
}

#[derive(Debug)]
enum Admission {
    /// The client has its share of slots already, or every slot is answering a request.
    Refused,
    /// `evicted` is the connection that gave up its slot (to be closed).
    Admitted { id: u64, evicted: Option<Slot> },
}

impl Slots {
    fn admit(&mut self, client: IpAddr) -> Admission {
        if self.held.iter().filter(|s| s.client == client).count() >= MAX_PER_CLIENT {
            return Admission::Refused;
        }
        let mut evicted = None;
        if self.held.len() >= MAX_CONNECTIONS {
            // All full: the oldest connection still sending its head makes room.
            let Some(oldest_reading) = self.held.iter().position(|s| s.reading_head) else {
                return Admission::Refused;
            };
            evicted = Some(self.held.remove(oldest_reading));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.held.push(Slot {
            id,
            client,
            reading_head: true,
            task: None,
        });
        Admission::Admitted { id, evicted }
    }

    fn slot(&mut self, id: u64) -> Option<&mut Slot> {
        self.held.iter_mut().find(|s| s.id == id)
    }

    /// The connection has sent its request: no longer one to evict.
    fn head_read(&mut self, id: u64) {
        if let Some(slot) = self.slot(id) {
            slot.reading_head = false;
        }
    }

    fn release(&mut self, id: u64) {
        self.held.retain(|s| s.id != id);
    }
}

/// The slots shared by the accept loop and the connections.
#[derive(Clone, Default)]
struct SharedSlots(Arc<Mutex<Slots>>);

impl SharedSlots {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Frees a connection's slot however its task ends (done, timed out, evicted).
struct HeldSlot {
    slots: SharedSlots,
    id: u64,
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        self.slots.lock().release(self.id);
    }
}

/// Binds `addr` (the LAN address: never the WAN) and serves in a task.
pub async fn start(addr: SocketAddrV4, collector: Arc<Collector>) -> std::io::Result<Running> {
    let listener = TcpListener::bind(addr).await?;
    let slots = SharedSlots::default();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                // Out of file descriptors, say: wait instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let admission = slots.lock().admit(peer.ip());
            let id = match admission {
                Admission::Refused => continue, // dropping the stream closes it
                Admission::Admitted { id, evicted } => {
                    if let Some(task) = evicted.and_then(|slot| slot.task) {
                        task.abort();
                    }
                    id
                }
            };
            let slot = HeldSlot {
                slots: slots.clone(),
                id,
            };
            let collector = collector.clone();
            let task = tokio::spawn(async move { serve(stream, &collector, &slot).await });
            if let Some(slot) = slots.lock().slot(id) {
                slot.task = Some(task.abort_handle());
            }
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

/// Reads the request head: None when the client hangs up or sends too much.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return Ok(None);
        }
        // Only the new bytes and the three before them can complete the blank line: a
        // client sending a byte at a time costs no rescans of what came before.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        let tail = &head[from..];
        if tail.windows(4).any(|w| w == b"\r\n\r\n") || tail.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
    }
}

async fn serve(mut stream: TcpStream, collector: &Arc<Collector>, slot: &HeldSlot) {
    let Ok(Ok(Some(head))) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await else {
        return;
    };
    slot.slots.lock().head_read(slot.id);
    let _ = tokio::time::timeout(RESPONSE_TIMEOUT, respond(stream, &head, collector)).await;
}

async fn respond(mut stream: TcpStream, head: &[u8], collector: &Arc<Collector>) -> std::io::Result<()> {
    let (status, kind, body) = match request_path(head).map(|p| p.split('?').next().unwrap_or(p)) {
        Some("/") => (
            "200 OK",
            "text/html; charset=utf-8",
            page::render(&collector.snapshot_with_history().await),
        ),
        Some("/api/status") => (
            "200 OK",
            "application/json",
            api::render(&collector.snapshot_with_history().await),
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

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([172, 16, 10, last])
    }

    fn admitted(slots: &mut Slots, client: IpAddr) -> (u64, Option<u64>) {
        match slots.admit(client) {
            Admission::Admitted { id, evicted } => (id, evicted.map(|s| s.id)),
            Admission::Refused => panic!("{client} refused: {slots:?}"),
        }
    }

    #[test]
    fn one_client_gets_a_few_slots_only() {
        let mut slots = Slots::default();
        for _ in 0..MAX_PER_CLIENT {
            admitted(&mut slots, ip(50));
        }
        assert!(matches!(slots.admit(ip(50)), Admission::Refused));
        // Others still get in, and the client again once one of its slots is free.
        admitted(&mut slots, ip(51));
        slots.release(0);
        admitted(&mut slots, ip(50));
    }

    #[test]
    fn when_full_the_oldest_client_still_sending_its_head_makes_room() {
        let mut slots = Slots::default();
        let ids: Vec<u64> = (0..MAX_CONNECTIONS)
            .map(|i| admitted(&mut slots, ip(100 + (i / MAX_PER_CLIENT) as u8)).0)
            .collect();
        // The two oldest are answering requests; the third is the oldest still reading.
        for id in &ids[..2] {
            slots.head_read(*id);
        }
        assert_eq!(admitted(&mut slots, ip(200)), (ids.len() as u64, Some(ids[2])));
        assert_eq!(slots.held.len(), MAX_CONNECTIONS);
        // With every slot answering a request, a newcomer waits for none: it is refused.
        for s in &mut slots.held {
            s.reading_head = false;
        }
        assert!(matches!(slots.admit(ip(201)), Admission::Refused));
    }
}
