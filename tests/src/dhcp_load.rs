//! A load of new DHCPv4 clients on the LAN itself, as guests booting at once make it:
//! DISCOVERs broadcast to 255.255.255.255:67 from port 68 with no relay (giaddr 0) and
//! the broadcast flag set (so the server broadcasts its replies; the many MACs are
//! made up and no NIC would take unicast frames to them), then a REQUEST for each
//! OFFER. perfdhcp cannot do this: it always sets giaddr and acts as a relay.
//!
//! Like perfdhcp, a reply later than `DROP_TIME` after its request counts as lost, and
//! nothing is retransmitted.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::netns::Netns;

/// A reply later than this after its request counts as lost (perfdhcp's default).
pub const DROP_TIME: Duration = Duration::from_secs(1);

/// What one run counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub discovers: u64,
    pub offers: u64,
    pub requests: u64,
    pub acks: u64,
    /// Replies that came later than `DROP_TIME`.
    pub late: u64,
    /// Mean DISCOVER→OFFER and REQUEST→ACK delays of the replies in time, ms.
    pub do_ms: f64,
    pub ra_ms: f64,
}

/// A client whose exchange is complete (in its REQUEST slot).
const DONE: u64 = u64::MAX;
const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;

/// Client `n`'s made-up, locally administered MAC.
fn mac(n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x06, 0x4c, b[0], b[1], b[2], b[3]]
}

fn packet(xid: u32, kind: u8, chaddr: [u8; 6], options: &[(u8, &[u8])]) -> Vec<u8> {
    let mut p = vec![0u8; 240];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[10] = 0x80; // the broadcast flag
    p[28..34].copy_from_slice(&chaddr);
    p[236..240].copy_from_slice(&[99, 130, 83, 99]);
    p.extend_from_slice(&[53, 1, kind]);
    for (code, value) in options {
        p.push(*code);
        p.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
        p.extend_from_slice(value);
    }
    p.extend_from_slice(&[55, 4, 1, 3, 6, 15, 255]);
    p
}

/// (xid, message type, yiaddr, server id) of a BOOTREPLY.
fn parse_reply(b: &[u8]) -> Option<(u32, u8, Ipv4Addr, Option<[u8; 4]>)> {
    if b.len() < 240 || b[0] != 2 {
        return None;
    }
    let xid = u32::from_be_bytes(b[4..8].try_into().ok()?);
    let yiaddr = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
    let (mut kind, mut server) = (None, None);
    let mut i = 240;
    while i + 1 < b.len() && b[i] != 255 {
        if b[i] == 0 {
            i += 1;
            continue;
        }
        let len = usize::from(b[i + 1]);
        let value = b.get(i + 2..i + 2 + len)?;
        match b[i] {
            53 if len == 1 => kind = Some(value[0]),
            54 if len == 4 => server = value.try_into().ok(),
            _ => {}
        }
        i += 2 + len;
    }
    Some((xid, kind?, yiaddr, server))
}

/// Runs `rate` new clients a second for `period` from `guest` (which must have no
/// DHCP client of its own on port 68), then waits `DROP_TIME` for the last replies.
pub fn run(guest: &Netns, rate: u32, period: Duration) -> Counts {
    let socket = guest
        .enter(|| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
            s.set_reuse_address(true)?;
            s.set_broadcast(true)?;
            s.set_recv_buffer_size(8 << 20)?;
            s.bind(&std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, 68)).into())?;
            std::io::Result::Ok(UdpSocket::from(s))
        })
        .unwrap_or_else(|e| panic!("the load's socket on port 68: {e}"));
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap_or_else(|e| panic!("{e}"));
    let total = u32::try_from(u64::from(rate) * period.as_secs()).unwrap_or(u32::MAX);
    let server = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let start = Instant::now();
    // Nanoseconds since `start` (+1: 0 means "not sent") each client's DISCOVER and
    // REQUEST left at.
    let slots = |n| Arc::new((0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
    let (discovered, requested) = (slots(total), slots(total));
    let since = move |t: Instant| u64::try_from(t.duration_since(start).as_nanos()).unwrap_or(u64::MAX) + 1;
    let sender = {
        let socket = socket.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let discovered = discovered.clone();
        std::thread::spawn(move || {
            for n in 0..total {
                let due = start + Duration::from_secs_f64(f64::from(n) / f64::from(rate));
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                discovered[n as usize].store(since(Instant::now()), Ordering::Relaxed);
                let _ = socket.send_to(&packet(n, DISCOVER, mac(n), &[]), server);
            }
        })
    };
    let mut c = Counts::default();
    let (mut do_sum, mut ra_sum) = (0.0, 0.0);
    let end = start + period + DROP_TIME + Duration::from_millis(100);
    let mut buf = [0u8; 1500];
    while Instant::now() < end {
        let Ok(n) = socket.recv(&mut buf) else { continue };
        let now = since(Instant::now());
        let Some((xid, kind, yiaddr, server_id)) = parse_reply(&buf[..n]) else {
            continue;
        };
        let Some(i) = usize::try_from(xid).ok().filter(|i| *i < total as usize) else {
            continue;
        };
        let in_time = |sent: &AtomicU64| {
            let sent = sent.load(Ordering::Relaxed);
            (sent != 0 && now - sent <= DROP_TIME.as_nanos() as u64).then(|| (now - sent) as f64 / 1e6)
        };
        match kind {
            OFFER if requested[i].load(Ordering::Relaxed) == 0 => match in_time(&discovered[i]) {
                Some(ms) => {
                    c.offers += 1;
                    do_sum += ms;
                    let sid = server_id.unwrap_or([0; 4]);
                    let request = packet(xid, REQUEST, mac(xid), &[(50, &yiaddr.octets()), (54, &sid)]);
                    requested[i].store(since(Instant::now()), Ordering::Relaxed);
                    let _ = socket.send_to(&request, server);
                    c.requests += 1;
                }
                None => c.late += 1,
            },
            ACK if requested[i].load(Ordering::Relaxed) != DONE => match in_time(&requested[i]) {
                Some(ms) => {
                    c.acks += 1;
                    ra_sum += ms;
                    // Each client counts once, even if a reply comes twice.
                    requested[i].store(DONE, Ordering::Relaxed);
                }
                None => c.late += 1,
            },
            _ => {}
        }
    }
    let _ = sender.join();
    c.discovers = discovered.iter().filter(|t| t.load(Ordering::Relaxed) != 0).count() as u64;
    c.do_ms = if c.offers > 0 { do_sum / c.offers as f64 } else { 0.0 };
    c.ra_ms = if c.acks > 0 { ra_sum / c.acks as f64 } else { 0.0 };
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_broadcast_client_messages_and_replies_parse() {
        let p = packet(7, REQUEST, mac(7), &[(50, &[172, 16, 0, 9]), (54, &[172, 16, 0, 1])]);
        assert_eq!((p[0], p[10], &p[24..28]), (1, 0x80, &[0u8; 4][..]), "no giaddr");
        let mut reply = p.clone();
        reply[0] = 2;
        reply[16..20].copy_from_slice(&[172, 16, 0, 9]);
        reply[242] = ACK;
        assert_eq!(
            parse_reply(&reply),
            Some((7, ACK, Ipv4Addr::new(172, 16, 0, 9), Some([172, 16, 0, 1])))
        );
    }
}
