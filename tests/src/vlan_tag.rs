//! An access port of a VLAN-aware switch, in user space: what a Proxmox VLAN-aware
//! bridge does for a guest's tap with `tag=ID`. Frames from the guest leave on the trunk
//! with an 802.1Q tag; tagged frames of that VLAN from the trunk reach the guest
//! untagged; other frames are dropped.
//!
//! The build machines' kernel has neither the 8021q module nor bridge VLAN filtering,
//! so the lab cannot tag in the kernel; two AF_PACKET sockets can. Needs root.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::netns::Netns;

/// The running port; stops (and joins its threads) on drop.
pub struct AccessPort {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for AccessPort {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Relays between `access` (the guest's side, untagged) and `trunk` (tagged `vid`),
/// both interfaces of `ns`.
pub fn start(ns: &Netns, access: &str, trunk: &str, vid: u16) -> AccessPort {
    let stop = Arc::new(AtomicBool::new(false));
    let (access, trunk) = (access.to_string(), trunk.to_string());
    let sockets = ns.enter(move || -> io::Result<(PacketSocket, PacketSocket)> {
        Ok((PacketSocket::open(&access)?, PacketSocket::open(&trunk)?))
    });
    let (access, trunk) = sockets.unwrap_or_else(|e| panic!("VLAN access port: {e}"));
    let (access, trunk) = (Arc::new(access), Arc::new(trunk));
    let mut threads = Vec::new();
    {
        let (from, to, stop) = (access.clone(), trunk.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            relay(&from, &to, &stop, |frame, _| Some(tag(frame, vid)))
        }));
    }
    {
        let (from, to, stop) = (trunk, access, stop.clone());
        threads.push(std::thread::spawn(move || {
            relay(&from, &to, &stop, |frame, aux_tci| untag(frame, aux_tci, vid))
        }));
    }
    AccessPort { stop, threads }
}

fn relay(
    from: &PacketSocket,
    to: &PacketSocket,
    stop: &AtomicBool,
    convert: impl Fn(&[u8], Option<u16>) -> Option<Vec<u8>>,
) {
    let mut buf = vec![0u8; 9000];
    while !stop.load(Ordering::Relaxed) {
        // Times out every 200 ms, to see `stop`.
        let Ok(Some(got)) = from.recv(&mut buf) else { continue };
        if let Some(mut out) = convert(&buf[..got.len], got.tci) {
            if got.checksum_pending {
                complete_checksum(&mut out);
            }
            let _ = to.send(&out);
        }
    }
}

/// `frame` with an 802.1Q tag of `vid` after the MAC addresses.
pub fn tag(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&frame[..12.min(frame.len())]);
    out.extend_from_slice(&[0x81, 0x00]);
    out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    out.extend_from_slice(frame.get(12..).unwrap_or_default());
    out
}

/// The untagged frame of VLAN `vid`: the kernel hands packet sockets the tag apart
/// (`aux_tci`, the frame already without it) unless it stayed in the frame.
pub fn untag(frame: &[u8], aux_tci: Option<u16>, vid: u16) -> Option<Vec<u8>> {
    match aux_tci {
        Some(tci) => (tci & 0x0fff == vid).then(|| frame.to_vec()),
        None if frame.len() >= 18 && frame[12..14] == [0x81, 0x00] => {
            let tci = u16::from_be_bytes([frame[14], frame[15]]);
            (tci & 0x0fff == vid).then(|| [&frame[..12], &frame[16..]].concat())
        }
        None => None,
    }
}

/// Fills in the TCP or UDP checksum of an IPv4 frame (tagged or not) whose sender left
/// it to the NIC (checksum offload: the field holds only the pseudo-header's sum). A
/// frame relayed as it is would reach the guest with a wrong checksum.
pub fn complete_checksum(frame: &mut [u8]) {
    let mut l3 = 14;
    if frame.get(12..14) == Some(&[0x81, 0x00]) {
        l3 = 18;
    }
    if frame.get(l3 - 2..l3) != Some(&[0x08, 0x00]) || frame.len() < l3 + 20 {
        return;
    }
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]));
    let field = match frame[l3 + 9] {
        6 => 16,
        17 => 6,
        _ => return,
    };
    let (l4, end) = (l3 + ihl, (l3 + total).min(frame.len()));
    if end < l4 + field + 2 {
        return;
    }
    let mut sum: u32 = frame[l4..end]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let mut checksum = !(sum as u16);
    if checksum == 0 && field == 6 {
        checksum = 0xffff; // UDP: 0 means "no checksum"
    }
    frame[l4 + field..l4 + field + 2].copy_from_slice(&checksum.to_be_bytes());
}

/// What one receive got.
struct Received {
    len: usize,
    /// The VLAN tag the kernel took off the frame, if any.
    tci: Option<u16>,
    /// The sender left the L4 checksum to offload (only the pseudo-header's sum is in).
    checksum_pending: bool,
}

/// A raw AF_PACKET socket on one interface, all protocols, with the VLAN tag of
/// received frames reported apart (PACKET_AUXDATA).
struct PacketSocket {
    fd: OwnedFd,
    index: i32,
}

const ETH_P_ALL: u16 = 0x0003;

impl PacketSocket {
    fn open(ifname: &str) -> io::Result<PacketSocket> {
        let name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
        // SAFETY: if_nametoindex reads a NUL-terminated string we own.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        let index = i32::try_from(index).map_err(io::Error::other)?;
        // SAFETY: plain socket(2); the fd is owned right after.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = index;
        // SAFETY: bind(2) with a sockaddr_ll of its own size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let on: libc::c_int = 1;
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: setsockopt(2) with pointers to values of the sizes given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                std::ptr::from_ref(&on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            ) | libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::from_ref(&timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd, index })
    }

    /// One received frame. `Ok(None)`: a frame this host sent itself (not to be
    /// relayed back).
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = std::ptr::from_mut(&mut from).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control);
        // SAFETY: recvmsg(2) into buffers that live across the call, sizes as given.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            return Ok(None);
        }
        let (mut tci, mut checksum_pending) = (None, false);
        // SAFETY: walking the control messages recvmsg filled in, with libc's macros.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_PACKET && (*cmsg).cmsg_type == libc::PACKET_AUXDATA {
                    let aux: libc::tpacket_auxdata = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        tci = Some(aux.tp_vlan_tci);
                    }
                    checksum_pending = aux.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0;
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok(Some(Received {
            len: n as usize,
            tci,
            checksum_pending,
        }))
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = self.index;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(frame.get(..6).unwrap_or(&[0; 6]));
        // SAFETY: sendto(2) of a buffer we own to a sockaddr_ll of its own size.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_ref(&to).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_tagged_and_untagged_back() {
        let frame: Vec<u8> = (0u8..20).collect();
        let tagged = tag(&frame, 20);
        assert_eq!(&tagged[12..16], &[0x81, 0x00, 0x00, 20]);
        assert_eq!(untag(&tagged, None, 20), Some(frame.clone()));
        assert_eq!(untag(&tagged, None, 30), None, "another VLAN");
        assert_eq!(
            untag(&frame, Some(20), 20),
            Some(frame.clone()),
            "tag taken off by the kernel"
        );
        assert_eq!(untag(&frame, None, 20), None, "untagged frames stay off the VLAN");
    }
}
