//! Raw AF_PACKET sockets on one NIC for one ethertype (ARP frames; IPv6 neighbour
//! solicitations for the NDP proxy). std and socket2 cannot bind them by interface
//! index; hence the few lines of `unsafe` below, each a plain libc call on values
//! built here.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// The link-layer address of `ifindex` for `ethertype` frames to `dest`.
pub fn sockaddr_ll(ifindex: i32, ethertype: u16, dest: [u8; 6]) -> libc::sockaddr_ll {
    let mut addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ethertype.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0; 8],
    };
    addr.sll_addr[..6].copy_from_slice(&dest);
    addr
}

/// A non-blocking packet socket for `ethertype` frames on the NIC `index`. `filter`
/// (classic BPF) is attached before the socket is bound, so no frame it drops is
/// ever queued.
pub fn open(index: u32, ethertype: u16, filter: Option<&[libc::sock_filter]>) -> io::Result<(OwnedFd, i32)> {
    let ifindex = i32::try_from(index).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex"))?;
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(ethertype.to_be()),
        )
    };
    check(raw)?;
    // SAFETY: `raw` is a fresh, valid descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if let Some(program) = filter {
        let prog = libc::sock_fprog {
            len: u16::try_from(program.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "filter"))?,
            filter: program.as_ptr().cast_mut(),
        };
        // SAFETY: setsockopt(2) with a sock_fprog pointing at `program`, alive here.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                std::ptr::from_ref(&prog).cast(),
                size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        })?;
    }
    let addr = sockaddr_ll(ifindex, ethertype, [0; 6]);
    // SAFETY: bind(2) on our descriptor with a fully initialised sockaddr_ll.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok((fd, ifindex))
}

/// The next frame received on `fd` into `buf`: its length (at most `buf.len()`).
pub async fn recv(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        if let Ok(result) = guard.try_io(|fd| {
            // SAFETY: recv(2) into a buffer of the given length.
            let n = unsafe { libc::recv(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n.unsigned_abs().min(buf.len()))
            }
        }) {
            return result;
        }
    }
}

/// A libc return code as a result.
pub fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
