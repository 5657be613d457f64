//! Real sockets inside the lab's namespaces: echo servers that record who connected,
//! and clients with bounded timeouts.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::netns::Netns;

pub const TIMEOUT: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(20);

/// An echo server (TCP or UDP) that remembers the source address of every peer.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    pub fn tcp(ns: &Netns, addr: &str) -> EchoServer {
        let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
        let listener = ns
            .enter(move || TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("bind tcp {addr}: {e}"));
        listener.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
        Self::serve(move |stop, peers| {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        peers.lock().unwrap_or_else(|e| e.into_inner()).push(peer);
                        std::thread::spawn(move || echo_stream(stream));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        })
    }

    pub fn udp(ns: &Netns, addr: &str) -> EchoServer {
        let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
        let socket = ns
            .enter(move || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("bind udp {addr}: {e}"));
        socket.set_read_timeout(Some(POLL)).unwrap_or_else(|e| panic!("{e}"));
        Self::serve(move |stop, peers| {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                    peers.lock().unwrap_or_else(|e| e.into_inner()).push(peer);
                    let _ = socket.send_to(&buf[..n], peer);
                }
            }
        })
    }

    fn serve<F>(body: F) -> EchoServer
    where
        F: FnOnce(Arc<AtomicBool>, Arc<Mutex<Vec<SocketAddr>>>) + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let (s, p) = (stop.clone(), peers.clone());
        let thread = std::thread::spawn(move || body(s, p));
        EchoServer {
            stop,
            peers,
            thread: Some(thread),
        }
    }

    /// Source addresses of the peers seen so far, oldest first.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The source IP of the last peer, as text.
    pub fn last_peer_ip(&self) -> Option<String> {
        self.peers().last().map(|p| p.ip().to_string())
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn echo_stream(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Opens a TCP connection from inside `ns`, giving up after [`TIMEOUT`].
pub fn tcp_connect(ns: &Netns, addr: &str) -> io::Result<TcpStream> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let stream = ns.enter(move || TcpStream::connect_timeout(&addr, TIMEOUT))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// Sends `msg` on an echo connection and returns what came back.
pub fn tcp_exchange(stream: &mut TcpStream, msg: &str) -> io::Result<String> {
    stream.write_all(msg.as_bytes())?;
    let mut buf = vec![0u8; msg.len()];
    stream.read_exact(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Connects, exchanges one message, and returns the echo.
pub fn tcp_echo(ns: &Netns, addr: &str, msg: &str) -> io::Result<String> {
    let mut stream = tcp_connect(ns, addr)?;
    tcp_exchange(&mut stream, msg)
}

/// Sends one UDP datagram from inside `ns` and waits for the echo (bounded).
pub fn udp_echo(ns: &Netns, addr: &str, msg: &str) -> io::Result<String> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let socket = ns.enter(|| UdpSocket::bind("0.0.0.0:0"))?;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 2048];
    // UDP may lose the first datagram while ARP resolves: a few bounded tries.
    for _ in 0..6 {
        socket.send_to(msg.as_bytes(), addr)?;
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no UDP echo from {addr}"),
    ))
}
