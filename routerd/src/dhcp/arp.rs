//! ARP probes (RFC 5227 style: sender address 0.0.0.0) on the LAN, to learn whether
//! a host already uses an address before the server offers it.
//!
//! This is the one place routerd needs a raw AF_PACKET socket, which std and socket2
//! cannot address by interface index; hence the few lines of `unsafe` below, each a
//! plain libc call on values built right there.
#![allow(unsafe_code)]

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use config::MacAddr;

const ETH_P_ARP: u16 = 0x0806;
const FRAME_LEN: usize = 42;

/// Builds a broadcast "who has `target`?" probe from `our_mac` with sender IP 0.0.0.0.
pub fn probe_frame(our_mac: MacAddr, target: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&our_mac.0);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&our_mac.0);
    // sender IP stays 0.0.0.0, target MAC stays zero
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// The sender IP and hardware address of an ARP frame (request or reply) that is not
/// from `our_mac`.
pub fn sender(frame: &[u8], our_mac: MacAddr) -> Option<(Ipv4Addr, MacAddr)> {
    if frame.len() < FRAME_LEN || frame[12..14] != ETH_P_ARP.to_be_bytes() || frame[6..12] == our_mac.0 {
        return None;
    }
    let ip = Ipv4Addr::new(frame[28], frame[29], frame[30], frame[31]);
    let mac = MacAddr(<[u8; 6]>::try_from(&frame[22..28]).ok()?);
    (!ip.is_unspecified()).then_some((ip, mac))
}

pub struct ArpSocket {
    fd: AsyncFd<OwnedFd>,
    ifindex: i32,
    mac: MacAddr,
}

impl ArpSocket {
    pub fn open(ifindex: u32, mac: MacAddr) -> io::Result<ArpSocket> {
        let ifindex = i32::try_from(ifindex).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex"))?;
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
        let addr = sockaddr_ll(ifindex, proto, [0; 6]);
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
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(ArpSocket { fd, ifindex, mac })
    }

    pub fn send_probe(&self, target: Ipv4Addr) -> io::Result<()> {
        let frame = probe_frame(self.mac, target);
        let addr = sockaddr_ll(self.ifindex, ETH_P_ARP.to_be(), [0xff; 6]);
        // SAFETY: sendto(2) of a stack buffer with its exact length to a valid sockaddr_ll.
        let rc = unsafe {
            libc::sendto(
                self.fd.get_ref().as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the next ARP frame from another host and returns its sender IP and MAC.
    pub async fn recv_sender(&self) -> io::Result<(Ipv4Addr, MacAddr)> {
        let mut buf = [0u8; 128];
        loop {
            let mut guard = self.fd.readable().await?;
            let n = match guard.try_io(|fd| {
                // SAFETY: recv(2) into a stack buffer of the given length.
                let n = unsafe { libc::recv(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n.unsigned_abs())
                }
            }) {
                Ok(result) => result?,
                Err(_would_block) => continue,
            };
            if let Some(found) = sender(&buf[..n], self.mac) {
                return Ok(found);
            }
        }
    }
}

fn sockaddr_ll(ifindex: i32, proto_be: u16, dest: [u8; 6]) -> libc::sockaddr_ll {
    let mut addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: proto_be,
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0; 8],
    };
    addr.sll_addr[..6].copy_from_slice(&dest);
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_frame_is_a_broadcast_arp_request_with_zero_sender_ip() {
        let mac = MacAddr([2, 0, 0, 0, 0, 0x20]);
        let f = probe_frame(mac, Ipv4Addr::new(172, 16, 10, 7));
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &[0, 0, 0, 0]);
        assert_eq!(&f[38..42], &[172, 16, 10, 7]);
        assert_eq!(sender(&f, mac), None, "our own probe is not an answer");
        let mut reply = f;
        let guest = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
        reply[6..12].copy_from_slice(&guest.0);
        reply[22..28].copy_from_slice(&guest.0);
        reply[28..32].copy_from_slice(&[172, 16, 10, 7]);
        assert_eq!(sender(&reply, mac), Some((Ipv4Addr::new(172, 16, 10, 7), guest)));
        assert_eq!(sender(&reply[..20], mac), None);
    }
}
