//! Hears duplicate address detection on a LAN: a guest that takes an address by SLAAC
//! first asks whether anyone has it (a neighbour solicitation from `::` for it). That
//! is the moment the NDP proxy learns the address, before the guest sends anything.
//!
//! A raw AF_PACKET socket with a small classic BPF filter (only ICMPv6 neighbour
//! solicitations reach user space) and all-multicast reception (the solicitation goes
//! to a solicited-node group the router is not in). The few `unsafe` lines are plain
//! libc calls on values built here.
#![allow(unsafe_code)]

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use crate::net::packet;

const ETH_P_IPV6: u16 = 0x86dd;
const ICMPV6: u8 = 58;
const NEIGHBOUR_SOLICITATION: u8 = 135;
/// Ethernet (14), IPv6 (40), the solicitation's header (8) and target (16).
const MIN_FRAME: usize = 14 + 40 + 8 + 16;

/// The address a DAD probe asks about: an ICMPv6 neighbour solicitation from `::`
/// (no extension headers), as an Ethernet frame.
pub fn dad_target(frame: &[u8]) -> Option<Ipv6Addr> {
    if frame.len() < MIN_FRAME
        || frame[12..14] != ETH_P_IPV6.to_be_bytes()
        || frame[14] >> 4 != 6
        || frame[20] != ICMPV6
        || frame[54] != NEIGHBOUR_SOLICITATION
        || frame[55] != 0
    {
        return None;
    }
    let source = <[u8; 16]>::try_from(&frame[22..38]).ok().map(Ipv6Addr::from)?;
    if !source.is_unspecified() {
        return None;
    }
    <[u8; 16]>::try_from(&frame[62..78]).ok().map(Ipv6Addr::from)
}

/// Only IPv6 frames carrying ICMPv6 neighbour solicitations (no extension headers).
fn filter() -> [libc::sock_filter; 8] {
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    const LDH: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LDB: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    [
        op(LDH, 0, 0, 12),
        op(JEQ, 0, 5, u32::from(ETH_P_IPV6)),
        op(LDB, 0, 0, 20),
        op(JEQ, 0, 3, u32::from(ICMPV6)),
        op(LDB, 0, 0, 54),
        op(JEQ, 0, 1, u32::from(NEIGHBOUR_SOLICITATION)),
        op(RET, 0, 0, 0xffff),
        op(RET, 0, 0, 0),
    ]
}

pub struct DadSocket {
    fd: AsyncFd<OwnedFd>,
}

impl DadSocket {
    pub fn open(index: u32) -> io::Result<DadSocket> {
        let (fd, ifindex) = packet::open(index, ETH_P_IPV6, Some(&filter()))?;
        let membership = libc::packet_mreq {
            mr_ifindex: ifindex,
            mr_type: libc::PACKET_MR_ALLMULTI as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        // SAFETY: setsockopt(2) with a fully initialised packet_mreq; the membership
        // ends when the socket closes.
        packet::check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                std::ptr::from_ref(&membership).cast(),
                size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        })?;
        // SAFETY: an OwnedFd stays open and keeps its number until the AsyncFd drops it.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(DadSocket { fd })
    }

    /// The next address a guest probes for.
    pub async fn recv(&self) -> io::Result<Ipv6Addr> {
        let mut buf = [0u8; 256];
        loop {
            let n = packet::recv(&self.fd, &mut buf).await?;
            if let Some(target) = dad_target(&buf[..n]) {
                return Ok(target);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DAD probe for `target` as a Linux guest sends it (source `src`).
    fn solicitation(src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        let mut f = vec![
            0x33, 0x33, 0xff, 0, 0, 0x50, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x86, 0xdd,
        ];
        f.extend([0x60, 0, 0, 0, 0, 24, ICMPV6, 255]);
        f.extend(src.octets());
        f.extend("ff02::1:ff00:50".parse::<Ipv6Addr>().expect("ip").octets());
        f.extend([NEIGHBOUR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0]);
        f.extend(target.octets());
        f
    }

    #[test]
    fn a_dad_probe_gives_its_target_and_nothing_else_does() {
        let target: Ipv6Addr = "2001:db8:1:2::50".parse().expect("ip");
        assert_eq!(dad_target(&solicitation(Ipv6Addr::UNSPECIFIED, target)), Some(target));
        let ordinary = solicitation("fe80::1".parse().expect("ip"), target);
        assert_eq!(dad_target(&ordinary), None, "a resolution, not DAD");
        let mut advert = solicitation(Ipv6Addr::UNSPECIFIED, target);
        advert[54] = 136;
        assert_eq!(dad_target(&advert), None);
        assert_eq!(dad_target(&solicitation(Ipv6Addr::UNSPECIFIED, target)[..70]), None);
    }

    #[test]
    fn the_filter_drops_to_the_end_from_every_test() {
        let f = filter();
        for (i, op) in f.iter().enumerate().filter(|(_, op)| op.code == 0x15) {
            assert_eq!(i + 1 + usize::from(op.jf), f.len() - 1, "instruction {i}");
        }
        assert_eq!(f[f.len() - 1].k, 0);
    }
}
