//! The relay behind forwards by name with the real routerd: large transfers both ways
//! at once arrive byte-exact and counted, a half-closed connection goes on the other
//! way, and a DNAT forward to the same service is not taken for the proxy's own
//! connections. Needs root.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use testkit::http::{get, metric};
use testkit::lab::{Lab, Options, CONFIG, FAILOVER_IP, INET_IP, ROUTER_LAN_IP, WEB_IP};
use testkit::traffic::EchoServer;

const BIG: &str = "big.example.com";
const ECHO: &str = "echo.example.com";
/// Each way.
const LEN: u64 = 64 << 20;
/// What the service sends after the client has ended its sending.
const TRAILER: &[u8] = b"sent after your end";
/// A bound on every read and write: a relay that loses bytes fails, not hangs.
const STALL: Duration = Duration::from_secs(60);

/// The lab's WAN and LAN; by name: `BIG` on 443 to the checking service (9443), `ECHO`
/// on 8080 by Host to an echo service (9444); and a plain DNAT forward on 8443 to the
/// same echo service.
fn config() -> String {
    CONFIG.split("[[forward]]").next().unwrap_or(CONFIG).to_string()
        + &format!(
            "[[forward]]\nport = 443\nhost = \"{BIG}\"\nto = \"{WEB_IP}\"\nto_port = 9443\n\n\
             [[forward]]\nport = 8080\nhost = \"{ECHO}\"\nto = \"{WEB_IP}\"\nto_port = 9444\n\n\
             [[forward]]\nport = 8443\nto = \"{WEB_IP}\"\nto_port = 9444\n"
        )
}

/// The `i`th byte of stream `seed`: no short period, so a lost, doubled or reordered
/// piece shows.
fn byte(seed: u64, i: u64) -> u8 {
    let x = (i ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 56) as u8 ^ (i >> 12) as u8
}

/// Writes `LEN` bytes of stream `seed`.
fn send(s: &mut TcpStream, seed: u64) -> std::io::Result<()> {
    let mut chunk = vec![0u8; 256 * 1024];
    let mut at = 0u64;
    while at < LEN {
        let n = chunk.len().min(usize::try_from(LEN - at).unwrap_or(usize::MAX));
        for (k, b) in chunk[..n].iter_mut().enumerate() {
            *b = byte(seed, at + k as u64);
        }
        s.write_all(&chunk[..n])?;
        at += n as u64;
    }
    Ok(())
}

/// Reads to the end: how many bytes, whether the first `LEN` were stream `seed`'s,
/// and what came after them.
fn receive(s: &mut TcpStream, seed: u64) -> std::io::Result<(u64, bool, Vec<u8>)> {
    let mut chunk = vec![0u8; 256 * 1024];
    let (mut at, mut exact, mut after) = (0u64, true, Vec::new());
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok((at, exact, after));
        }
        for (k, b) in chunk[..n].iter().enumerate() {
            let i = at + k as u64;
            if i < LEN {
                exact &= *b == byte(seed, i);
            } else {
                after.push(*b);
            }
        }
        at += n as u64;
    }
}

/// A TLS ClientHello naming `name` (the service behind reads past it).
fn client_hello(name: &str) -> Vec<u8> {
    let mut sni = vec![0u8];
    sni.extend(u16::try_from(name.len()).unwrap_or(0).to_be_bytes());
    sni.extend(name.as_bytes());
    let mut ext = vec![0u8, 0];
    ext.extend(u16::try_from(sni.len() + 2).unwrap_or(0).to_be_bytes());
    ext.extend(u16::try_from(sni.len()).unwrap_or(0).to_be_bytes());
    ext.extend(sni);
    let mut body = vec![3u8, 3];
    body.extend([7u8; 32]);
    body.push(0);
    body.extend([0, 2, 0x13, 0x01, 1, 0]);
    body.extend(u16::try_from(ext.len()).unwrap_or(0).to_be_bytes());
    body.extend(ext);
    let len = u32::try_from(body.len()).unwrap_or(0).to_be_bytes();
    let mut hs = vec![1u8, len[1], len[2], len[3]];
    hs.extend(body);
    let mut rec = vec![0x16u8, 3, 1];
    rec.extend(u16::try_from(hs.len()).unwrap_or(0).to_be_bytes());
    rec.extend(hs);
    rec
}

/// What the checking service saw of one connection.
#[derive(Debug)]
struct Seen {
    peer: SocketAddr,
    received: u64,
    exact: bool,
}

/// The checking service in `web` on 9443: after the hello, it sends `LEN` bytes of
/// stream 2 while it reads the client's stream 1 to its end, then the trailer, and
/// closes.
fn checking_service(lab: &Lab) -> mpsc::Receiver<std::io::Result<Seen>> {
    let listener = lab
        .web
        .enter(|| TcpListener::bind(format!("{WEB_IP}:9443")))
        .expect("bind 9443");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut s, peer)) = listener.accept() else { return };
        let served = (|| {
            s.set_read_timeout(Some(STALL))?;
            s.set_write_timeout(Some(STALL))?;
            let mut hello = vec![0u8; client_hello(BIG).len()];
            s.read_exact(&mut hello)?;
            let mut writer = s.try_clone()?;
            let sending = std::thread::spawn(move || send(&mut writer, 2));
            let (received, exact, after) = receive(&mut s, 1)?;
            sending.join().map_err(|_| std::io::Error::other("sender panicked"))??;
            // The client has ended its sending: this way is still open.
            s.write_all(TRAILER)?;
            s.shutdown(Shutdown::Write)?;
            Ok(Seen {
                peer,
                received: received + after.len() as u64,
                exact: exact && hello == client_hello(BIG),
            })
        })();
        let _ = tx.send(served);
    });
    rx
}

fn metrics(lab: &Lab) -> String {
    let (code, body) = get(&lab.guest, &format!("{ROUTER_LAN_IP}:80"), "/metrics").expect("metrics");
    assert_eq!(code, 200);
    body
}

#[test]
fn sixty_four_mib_each_way_at_once_arrive_byte_exact_and_the_half_closed_way_goes_on() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    let seen = checking_service(&lab);
    lab.start_routerd(&config());

    let client = lab.inet.spawn(|| -> std::io::Result<(u64, bool, Vec<u8>)> {
        let mut s = TcpStream::connect((FAILOVER_IP, 443))?;
        s.set_read_timeout(Some(STALL))?;
        s.set_write_timeout(Some(STALL))?;
        s.write_all(&client_hello(BIG))?;
        let mut writer = s.try_clone()?;
        let sending = std::thread::spawn(move || {
            send(&mut writer, 1)?;
            // Ends its sending; keeps reading what the service still sends.
            writer.shutdown(Shutdown::Write)
        });
        let received = receive(&mut s, 2)?;
        sending.join().map_err(|_| std::io::Error::other("sender panicked"))??;
        Ok(received)
    });
    let (received, exact, after) = client.join().expect("client").expect("the client's transfer");
    assert_eq!(received, LEN + TRAILER.len() as u64, "bytes the client received");
    assert!(exact, "the service's 64 MiB arrived changed");
    assert_eq!(after, TRAILER, "what the service sent after the client's end");
    let seen = seen
        .recv_timeout(STALL)
        .expect("the service saw the connection")
        .expect("the service's transfer");
    assert_eq!(seen.received, LEN, "bytes the service received");
    assert!(seen.exact, "the client's 64 MiB arrived changed");
    assert_eq!(seen.peer.ip().to_string(), INET_IP, "the service sees the client");

    let m = metrics(&lab);
    let value = |name: &str| metric(&m, name, &[("host", BIG)]).unwrap_or(0.0);
    let hello = client_hello(BIG).len() as f64;
    assert_eq!(value("router_by_name_client_bytes_total"), LEN as f64 + hello, "{m}");
    assert_eq!(
        value("router_by_name_service_bytes_total"),
        LEN as f64 + TRAILER.len() as f64,
        "{m}"
    );
}

#[test]
fn a_dnat_forward_to_the_same_service_is_not_taken_for_a_closed_proxy_connection() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    let echo = EchoServer::tcp(&lab.web, &format!("{WEB_IP}:9444"));
    lab.start_routerd(&config());

    // A connection by name that the client ends first: routerd passes the end on
    // first too, so its connection to the service (from the client's address and a
    // port of its choosing) lingers in TIME_WAIT on the router.
    let request = format!("GET / HTTP/1.1\r\nHost: {ECHO}\r\n\r\n");
    let echoed = lab.inet.enter(move || -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect((FAILOVER_IP, 8080))?;
        s.set_read_timeout(Some(STALL))?;
        s.write_all(request.as_bytes())?;
        s.shutdown(Shutdown::Write)?;
        let mut echoed = Vec::new();
        s.read_to_end(&mut echoed)?;
        Ok(echoed)
    });
    assert!(echoed.expect("by name").starts_with(b"GET / HTTP/1.1\r\n"), "the echo");
    let proxied = *echo.peers().last().expect("the service saw the proxy's connection");
    assert_eq!(proxied.ip().to_string(), INET_IP);

    // The same client, from the port routerd used, through the DNAT forward to the
    // same service: the service's replies are for this connection, not the proxy's.
    let port = proxied.port();
    let lingering = format!("{INET_IP}:{port} ");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lab.router.sh("ss -Htan state time-wait").contains(&lingering) {
        assert!(
            std::time::Instant::now() < deadline,
            "routerd's connection to the service is not in TIME_WAIT: {}",
            lab.router.sh("ss -Htan")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let through_dnat = lab.inet.enter(move || -> std::io::Result<Vec<u8>> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::from(([198, 51, 100, 1], port)).into())?;
        let to: SocketAddr = format!("{FAILOVER_IP}:8443").parse().map_err(std::io::Error::other)?;
        socket.connect_timeout(&to.into(), Duration::from_secs(20))?;
        let mut s: TcpStream = socket.into();
        s.set_read_timeout(Some(STALL))?;
        s.write_all(b"dnat")?;
        let mut back = [0u8; 4];
        s.read_exact(&mut back)?;
        Ok(back.to_vec())
    });
    assert_eq!(
        through_dnat.expect("the DNAT forward answers from the proxy's port"),
        b"dnat"
    );
}
