//! Asking the upstream resolvers: UDP, and TCP when the answer was truncated; each
//! server in turn within one deadline, so a dead upstream costs the client a quick
//! SERVFAIL, not a hang.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The whole time an upstream question may take, over all servers and retries.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// The UDP payload we offer upstream (the DNS flag day 2020 size).
pub const UDP_PAYLOAD: u16 = 1232;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no upstream resolver is configured")]
    NoServer,
    #[error("no answer from the upstream resolvers within {} s", DEADLINE.as_secs())]
    Timeout,
    #[error("the upstream resolvers failed")]
    Failed(#[source] std::io::Error),
}

/// Asks `servers` (port 53) for `query`, recursion desired; the first valid answer.
pub async fn resolve(servers: &[Ipv4Addr], query: &Query) -> Result<Message, UpstreamError> {
    if servers.is_empty() {
        return Err(UpstreamError::NoServer);
    }
    let deadline = Instant::now() + DEADLINE;
    // Each server gets an equal share of what is left, the last one all of it.
    let mut last_error = None;
    for (i, server) in servers.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let share = left / u32::try_from(servers.len() - i).unwrap_or(1);
        let to = SocketAddr::from((*server, 53));
        match tokio::time::timeout(share, ask(to, query)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => last_error = Some(e),
            Err(_) => {}
        }
    }
    Err(last_error.map_or(UpstreamError::Timeout, UpstreamError::Failed))
}

fn request(query: &Query) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD);
    m.set_edns(edns);
    m
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Whether `answer` answers `request` (its ID and question): anything else is a
/// stray or forged datagram, and ignored.
fn answers(answer: &Message, request: &Message) -> bool {
    answer.metadata.id == request.metadata.id && answer.queries == request.queries
}

async fn ask(to: SocketAddr, query: &Query) -> std::io::Result<Message> {
    let req = request(query);
    let bytes = req.to_vec().map_err(|_| invalid("cannot encode the query"))?;
    // A fresh socket per question: a random source port, as spoofing defence.
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).await?;
    socket.connect(to).await?;
    socket.send(&bytes).await?;
    // We offered UDP_PAYLOAD: a bigger answer comes truncated, then over TCP. (Room for
    // a server that sends more anyway; 64 KiB per waiting question would stay in the heap.)
    let mut buf = vec![0u8; 4 * usize::from(UDP_PAYLOAD)];
    let answer = loop {
        let n = socket.recv(&mut buf).await?;
        match Message::from_vec(&buf[..n]) {
            Ok(m) if answers(&m, &req) => break m,
            _ => continue,
        }
    };
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    ask_tcp(to, &req, &bytes).await
}

async fn ask_tcp(to: SocketAddr, req: &Message, bytes: &[u8]) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(to).await?;
    let len = u16::try_from(bytes.len()).map_err(|_| invalid("query too long"))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    let answer = Message::from_vec(&buf).map_err(|_| invalid("a malformed answer"))?;
    if answers(&answer, req) {
        Ok(answer)
    } else {
        Err(invalid("an answer to another question"))
    }
}
