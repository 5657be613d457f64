//! Watches the LAN for ARP frames from another host that claim the router's own LAN
//! address (a gratuitous ARP, or a reply, with it as the sender address). Guests that
//! believe it send their traffic to that host instead of the router: a misconfigured
//! guest, or one taking over the LAN's gateway. The kernel ignores such frames without
//! a word, so routerd listens itself and logs them (rate-limited per MAC).
//!
//! A raw AF_PACKET socket cannot be bound by interface index with std or socket2;
//! hence the few lines of `unsafe` below, each a plain libc call on values built here.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use config::MacAddr;

const ETH_P_ARP: u16 = 0x0806;
/// Ethernet header and an IPv4-over-Ethernet ARP body.
const FRAME_LEN: usize = 42;
/// The same MAC is warned about at most this often.
const REPEAT_WARNING: Duration = Duration::from_secs(60);
/// MACs remembered for rate limiting; beyond that the memory starts over.
const MACS_KEPT: usize = 256;

/// The MAC of a host claiming `our_ip` in `frame`: an IPv4 ARP frame whose sender
/// address is `our_ip` and whose sender MAC is not `our_mac`.
pub fn claimer(frame: &[u8], our_ip: Ipv4Addr, our_mac: MacAddr) -> Option<MacAddr> {
    if frame.len() < FRAME_LEN
        || frame[12..14] != ETH_P_ARP.to_be_bytes()
        || frame[14..16] != [0, 1] // Ethernet
        || frame[16..18] != [8, 0]
    // IPv4
    {
        return None;
    }
    let sender_mac = MacAddr(<[u8; 6]>::try_from(&frame[22..28]).ok()?);
    let sender_ip = Ipv4Addr::new(frame[28], frame[29], frame[30], frame[31]);
    (sender_ip == our_ip && sender_mac != our_mac && frame[6..12] != our_mac.0).then_some(sender_mac)
}

/// Decides which claims to warn about: each MAC at most once per [`REPEAT_WARNING`].
#[derive(Debug, Default)]
pub struct Limiter {
    last: HashMap<MacAddr, Instant>,
}

impl Limiter {
    pub fn due(&mut self, mac: MacAddr, now: Instant) -> bool {
        if self.last.len() >= MACS_KEPT && !self.last.contains_key(&mac) {
            self.last.clear();
        }
        match self.last.get(&mac) {
            Some(t) if now.duration_since(*t) < REPEAT_WARNING => false,
            _ => {
                self.last.insert(mac, now);
                true
            }
        }
    }
}

pub fn claim_message(our_ip: Ipv4Addr, lan: &str, claimer: MacAddr) -> String {
    format!(
        "the host with MAC {claimer} on {lan} claims this router's LAN address {our_ip} (ARP): guests that \
         believe it send their traffic there instead of through the router; that host's address is misconfigured, \
         or it is taking over the LAN's gateway"
    )
}

/// The running watch on one LAN NIC.
pub struct Watch {
    /// NIC index, router's LAN address, NIC MAC: a change of any restarts the watch.
    key: (u32, Ipv4Addr, MacAddr),
    task: JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps `current` if it watches the same NIC for the same address, else starts anew.
/// Without a MAC on the NIC, or when the socket cannot be opened, nothing is watched.
pub fn ensure(current: Option<Watch>, lan: &super::Nic, our_ip: Ipv4Addr) -> Option<Watch> {
    let our_mac = lan.mac?;
    let key = (lan.index, our_ip, our_mac);
    if let Some(w) = current.filter(|w| w.key == key) {
        return Some(w);
    }
    let socket = match open(lan.index) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch {} for hosts claiming {our_ip}: {e}", lan.name);
            return None;
        }
    };
    let name = lan.name.clone();
    let task = tokio::spawn(async move {
        let mut limiter = Limiter::default();
        let mut buf = [0u8; 128];
        loop {
            let n = match recv(&socket, &mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("watching {name} for hosts claiming {our_ip} stopped: {e}");
                    return;
                }
            };
            if let Some(mac) = claimer(&buf[..n], our_ip, our_mac) {
                if limiter.due(mac, Instant::now()) {
                    tracing::warn!("{}", claim_message(our_ip, &name, mac));
                }
            }
        }
    });
    Some(Watch { key, task })
}

/// A non-blocking packet socket that receives every ARP frame on the NIC `index`.
fn open(index: u32) -> io::Result<AsyncFd<OwnedFd>> {
    let ifindex = i32::try_from(index).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex"))?;
    let proto = ETH_P_ARP.to_be();
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh, valid descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: proto,
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: bind(2) on our descriptor with a fully initialised sockaddr_ll.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an OwnedFd stays open and keeps its number until the AsyncFd drops it.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

/// The next frame into `buf`; returns its length.
async fn recv(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|fd| {
            // SAFETY: recv(2) into a buffer of the given length.
            let n = unsafe { libc::recv(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n.unsigned_abs())
            }
        }) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTER: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
    const OURS: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x20]);
    const GUEST: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 9]);

    /// A gratuitous ARP (request, sender = target = `ip`) from `mac`.
    fn garp(mac: MacAddr, ip: Ipv4Addr) -> [u8; FRAME_LEN] {
        let mut f = [0u8; FRAME_LEN];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&mac.0);
        f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f[22..28].copy_from_slice(&mac.0);
        f[28..32].copy_from_slice(&ip.octets());
        f[38..42].copy_from_slice(&ip.octets());
        f
    }

    #[test]
    fn another_host_claiming_the_router_address_is_found() {
        assert_eq!(claimer(&garp(GUEST, ROUTER), ROUTER, OURS), Some(GUEST));
    }

    #[test]
    fn our_own_frames_other_addresses_and_short_frames_are_not_claims() {
        assert_eq!(claimer(&garp(OURS, ROUTER), ROUTER, OURS), None);
        assert_eq!(
            claimer(&garp(GUEST, Ipv4Addr::new(172, 16, 10, 50)), ROUTER, OURS),
            None
        );
        assert_eq!(claimer(&garp(GUEST, ROUTER)[..30], ROUTER, OURS), None);
        // A probe (sender 0.0.0.0) asking who has the router's address is no claim.
        let mut probe = garp(GUEST, ROUTER);
        probe[28..32].copy_from_slice(&[0; 4]);
        assert_eq!(claimer(&probe, ROUTER, OURS), None);
    }

    #[test]
    fn each_mac_is_warned_about_once_a_minute() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        assert!(l.due(GUEST, t0));
        assert!(!l.due(GUEST, t0 + Duration::from_secs(1)));
        assert!(
            l.due(OURS, t0 + Duration::from_secs(1)),
            "another MAC has its own limit"
        );
        assert!(l.due(GUEST, t0 + REPEAT_WARNING));
    }
}
