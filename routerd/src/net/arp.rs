//! ARP frames and a raw packet socket for them on one NIC: the LAN watch hears hosts
//! claiming the router's address, the gateway check asks the gateway itself when its
//! MAC is pinned (the kernel then never asks).
//!
//! The socket is a `net::packet` one; the `unsafe` lines here send and receive on it.
#![allow(unsafe_code)]

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use config::MacAddr;

const ETH_P_ARP: u16 = 0x0806;
/// Ethernet header and an IPv4-over-Ethernet ARP body.
pub const FRAME_LEN: usize = 42;
pub const REQUEST: u16 = 1;
pub const REPLY: u16 = 2;

/// The fields of an IPv4-over-Ethernet ARP frame that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    /// The Ethernet source.
    pub from: MacAddr,
    pub op: u16,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

fn mac_at(frame: &[u8], at: usize) -> Option<MacAddr> {
    <[u8; 6]>::try_from(frame.get(at..at + 6)?).ok().map(MacAddr)
}

fn ip_at(frame: &[u8], at: usize) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(frame.get(at..at + 4)?).ok().map(Ipv4Addr::from)
}

impl Arp {
    /// Reads an Ethernet frame; `None` unless it is IPv4-over-Ethernet ARP.
    pub fn parse(frame: &[u8]) -> Option<Arp> {
        if frame.len() < FRAME_LEN
            || frame[12..14] != ETH_P_ARP.to_be_bytes()
            || frame[14..16] != [0, 1] // Ethernet
            || frame[16..18] != [8, 0] // IPv4
            || frame[18..20] != [6, 4]
        {
            return None;
        }
        Some(Arp {
            from: mac_at(frame, 6)?,
            op: u16::from_be_bytes([frame[20], frame[21]]),
            sender_mac: mac_at(frame, 22)?,
            sender_ip: ip_at(frame, 28)?,
            target_ip: ip_at(frame, 38)?,
        })
    }
}

/// A broadcast "who has `target`? tell `our_ip`" from `our_mac`.
pub fn request(our_mac: MacAddr, our_ip: Ipv4Addr, target: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&our_mac.0);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..20].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
    f[20..22].copy_from_slice(&REQUEST.to_be_bytes());
    f[22..28].copy_from_slice(&our_mac.0);
    f[28..32].copy_from_slice(&our_ip.octets());
    // target MAC stays zero
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// A non-blocking packet socket that sends and receives ARP frames on one NIC.
pub struct ArpSocket {
    fd: AsyncFd<OwnedFd>,
    ifindex: i32,
}

impl ArpSocket {
    pub fn open(index: u32) -> io::Result<ArpSocket> {
        let (fd, ifindex) = super::packet::open(index, ETH_P_ARP, None)?;
        // SAFETY: an OwnedFd stays open and keeps its number until the AsyncFd drops it.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(ArpSocket { fd, ifindex })
    }

    /// Sends one frame as it is (it carries its own Ethernet header).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let dest = mac_at(frame, 0).map_or([0xff; 6], |m| m.0);
        let addr = super::packet::sockaddr_ll(self.ifindex, ETH_P_ARP, dest);
        // SAFETY: sendto(2) of a slice with its exact length to a fully initialised sockaddr_ll.
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

    /// The next ARP frame heard on the NIC (sent by this host too).
    pub async fn recv(&self) -> io::Result<Arp> {
        let mut buf = [0u8; 128];
        loop {
            let n = super::packet::recv(&self.fd, &mut buf).await?;
            if let Some(arp) = Arp::parse(&buf[..n]) {
                return Ok(arp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_parses_back_to_what_it_asks() {
        let ours = MacAddr([2, 0, 0, 0, 0, 0x10]);
        let f = request(ours, Ipv4Addr::new(203, 0, 113, 10), Ipv4Addr::new(203, 0, 113, 254));
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(
            Arp::parse(&f),
            Some(Arp {
                from: ours,
                op: REQUEST,
                sender_mac: ours,
                sender_ip: Ipv4Addr::new(203, 0, 113, 10),
                target_ip: Ipv4Addr::new(203, 0, 113, 254),
            })
        );
        assert_eq!(Arp::parse(&f[..41]), None, "short");
        let mut ipv6ish = f;
        ipv6ish[16..18].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(Arp::parse(&ipv6ish), None, "not IPv4");
    }
}
