//! Datagrams in batches: `recvmmsg` takes every query waiting on a socket in one
//! system call and `sendmmsg` sends their replies in one, so that under load the
//! resolver pays one wake-up (and one preemption by the woken client) per batch, not
//! per query. std and socket2 have neither call; hence the `unsafe` below, two libc
//! calls on arrays built here and outliving them.
#![allow(unsafe_code)]

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams at most per system call.
pub const BATCH: usize = 32;
/// The largest query taken (bigger ones arrive cut, and fail to parse).
const QUERY_MAX: usize = 4096;

/// The receive buffers of one socket, reused for every batch.
pub struct Inbox {
    bufs: Vec<[u8; QUERY_MAX]>,
    lens: [usize; BATCH],
    from: [Option<SocketAddr>; BATCH],
}

impl Default for Inbox {
    fn default() -> Inbox {
        Inbox {
            bufs: vec![[0; QUERY_MAX]; BATCH],
            lens: [0; BATCH],
            from: [None; BATCH],
        }
    }
}

impl Inbox {
    /// Takes up to [`BATCH`] datagrams waiting on `fd` (non-blocking): how many.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: all-zero is a valid value of these plain C structs.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..BATCH {
            iovs[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            iovs[i].iov_len = QUERY_MAX;
            msgs[i].msg_hdr.msg_name = (&raw mut names[i]).cast();
            msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msgs[i].msg_hdr.msg_iov = &raw mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every pointer in `msgs` points into `names`, `iovs` or `self.bufs`,
        // which live across the call, with the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = usize::try_from(n).unwrap_or(0);
        for i in 0..n {
            self.lens[i] = msgs[i].msg_len as usize;
            self.from[i] = socket_addr(&names[i]);
        }
        Ok(n)
    }

    /// The `i`th datagram of the last batch and where it came from.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        Some((&self.bufs[i][..self.lens[i]], self.from[i]?))
    }
}

fn socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in, which sockaddr_storage holds.
            let a: &libc::sockaddr_in = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is big and aligned enough for a sockaddr_in.
            let v4: &mut libc::sockaddr_in = unsafe { &mut *(&raw mut s).cast() };
            v4.sin_family = libc::AF_INET as libc::sa_family_t;
            v4.sin_port = a.port().to_be();
            v4.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for a sockaddr_in6.
            let v6: &mut libc::sockaddr_in6 = unsafe { &mut *(&raw mut s).cast() };
            v6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            v6.sin6_port = a.port().to_be();
            v6.sin6_addr.s6_addr = a.ip().octets();
            v6.sin6_flowinfo = a.flowinfo();
            v6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (s, len as libc::socklen_t)
}

/// The replies of one batch, sent together.
#[derive(Default)]
pub struct Outbox {
    replies: Vec<(Vec<u8>, SocketAddr)>,
    used: usize,
}

impl Outbox {
    /// A cleared buffer for the next reply (to `to`), kept for reuse.
    pub fn next(&mut self, to: SocketAddr) -> &mut Vec<u8> {
        if self.used == self.replies.len() {
            self.replies.push((Vec::with_capacity(512), to));
        }
        let slot = &mut self.replies[self.used];
        self.used += 1;
        slot.1 = to;
        slot.0.clear();
        &mut slot.0
    }

    /// Forgets the reply last given by [`Outbox::next`] (none is sent).
    pub fn drop_last(&mut self) {
        self.used = self.used.saturating_sub(1);
    }

    /// Sends the replies on `fd` (non-blocking): what the socket buffer cannot take
    /// is dropped, as the kernel would drop it for a single send.
    pub fn flush(&mut self, fd: RawFd) {
        let count = self.used.min(BATCH);
        self.used = 0;
        if count == 0 {
            return;
        }
        // SAFETY: all-zero is a valid value of these plain C structs.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, (bytes, to)) in self.replies[..count].iter_mut().enumerate() {
            let (name, len) = sockaddr(*to);
            names[i] = name;
            iovs[i].iov_base = bytes.as_mut_ptr().cast();
            iovs[i].iov_len = bytes.len();
            msgs[i].msg_hdr.msg_name = (&raw mut names[i]).cast();
            msgs[i].msg_hdr.msg_namelen = len;
            msgs[i].msg_hdr.msg_iov = &raw mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: the pointers in `msgs[sent..count]` point into `names`, `iovs`
            // and the replies, which live across the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs[sent..].as_mut_ptr(),
                    (count - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            match usize::try_from(n) {
                Ok(n) if n > 0 => sent += n,
                // An error is about the first message of those left: skip it.
                _ => sent += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_of_datagrams_in_and_out_with_their_addresses() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let server = std::net::UdpSocket::bind(local).expect("bind");
            let client = std::net::UdpSocket::bind(local).expect("bind");
            let to = server.local_addr().expect("addr");
            for i in 0..40u8 {
                client.send_to(&[i; 3], to).expect("send");
            }
            let mut inbox = Inbox::default();
            let mut outbox = Outbox::default();
            let mut got = 0;
            while got < 40 {
                let n = inbox.recv(server.as_raw_fd()).expect("recv");
                assert!(n > 0 && n <= BATCH);
                for i in 0..n {
                    let (bytes, from) = inbox.get(i).expect("a datagram");
                    assert_eq!(from, client.local_addr().expect("addr"));
                    assert_eq!(bytes, [got as u8; 3]);
                    outbox.next(from).extend_from_slice(&[bytes[0], 0xff]);
                    got += 1;
                }
                outbox.flush(server.as_raw_fd());
            }
            let mut buf = [0u8; 16];
            for i in 0..40u8 {
                let (n, from) = client.recv_from(&mut buf).expect("reply");
                assert_eq!((&buf[..n], from), (&[i, 0xff][..], to));
            }
        }
    }
}
