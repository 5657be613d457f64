//! The QEMU guest agent, so that Proxmox sees the router: its addresses on the
//! VM's summary, a clean shutdown from the "Shutdown" button with the agent
//! option on, and frozen filesystems while a backup snapshots the disks.
//!
//! It runs as its own process (`/init agent PORT`, the same binary), started by
//! init once the virtio-serial port named `org.qemu.guest_agent.0` exists and
//! started again when it dies: a fault in it can never take PID 1 down.
//! `protocol` is the pure request/reply half, `host` what the commands read and
//! do, `freeze` the filesystem freezing.

pub mod freeze;
mod host;
pub mod protocol;

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::console::say;
use crate::disks::uevent_value;
use crate::supervisor::Exit;

/// The port name Proxmox (`agent: 1`) and libvirt give the agent's channel.
pub const PORT_NAME: &str = "org.qemu.guest_agent.0";
const SYS_PORTS: &str = "/sys/class/virtio-ports";
/// The binary the agent process runs: init itself.
const SELF: &str = "/init";
/// How often init looks for the port, and waits before starting a dead agent again.
const RETRY: Duration = Duration::from_secs(5);
/// How long a reply may wait for the host to read it. A virtio port blocks writes
/// while no host is connected; a host that left mid-request must not stall the
/// agent (it also lifts overdue freezes).
const WRITE_LIMIT: Duration = Duration::from_secs(2);

/// The `/dev` node of the virtio-serial port named `name`, from sysfs
/// (`/sys/class/virtio-ports/vport1p1/name`).
pub fn find_port_in(sys: &Path, name: &str) -> Option<PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(sys).ok()?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    entries.into_iter().find_map(|e| {
        let port = std::fs::read_to_string(e.path().join("name")).ok()?;
        if port.trim() != name {
            return None;
        }
        let uevent = std::fs::read_to_string(e.path().join("uevent")).unwrap_or_default();
        let dev = uevent_value(&uevent, "DEVNAME")
            .map_or_else(|| e.file_name().to_string_lossy().into_owned(), str::to_string);
        Some(Path::new("/dev").join(dev))
    })
}

/// The agent process as init keeps it running.
#[derive(Debug)]
pub struct Agent {
    pid: Option<Pid>,
    next_try: Instant,
}

impl Agent {
    pub fn new(now: Instant) -> Agent {
        Agent {
            pid: None,
            next_try: now,
        }
    }

    /// Starts the agent when its port exists and it is not running.
    pub fn tick(&mut self, now: Instant) {
        if let Some(pid) = self.pid {
            // Reaped elsewhere (a shutdown's or a restart's wait): gone.
            if kill(pid, None) == Err(Errno::ESRCH) {
                self.pid = None;
            } else {
                return;
            }
        }
        if now < self.next_try {
            return;
        }
        self.next_try = now.checked_add(RETRY).unwrap_or(now);
        let Some(port) = find_port_in(Path::new(SYS_PORTS), PORT_NAME) else {
            return;
        };
        let args = vec!["agent".to_string(), port.display().to_string()];
        match crate::spawn::spawn(SELF, &args) {
            Ok(pid) => {
                say(&format!("init: QEMU guest agent on {} ({PORT_NAME})", port.display()));
                self.pid = Some(pid);
            }
            Err(e) => say(&format!("init: cannot start the guest agent: {e}")),
        }
    }

    pub fn on_exits(&mut self, exits: &[Exit], now: Instant) {
        if let Some(exit) = exits.iter().find(|e| Some(e.pid) == self.pid) {
            say(&format!(
                "init: the guest agent ended with {}; starting it again in {} s",
                exit.status,
                RETRY.as_secs()
            ));
            self.pid = None;
            self.next_try = now.checked_add(RETRY).unwrap_or(now);
        }
    }
}

/// The agent process: serves the port until it cannot be used. Returns the exit
/// code.
pub fn main(port: Option<&str>) -> i32 {
    let Some(port) = port else {
        say("init agent: usage: /init agent PORT");
        return 2;
    };
    // It freezes filesystems and powers the machine off: only ever as init's child
    // on the appliance, never by hand on another system.
    if nix::unistd::getppid().as_raw() != 1 {
        say("init agent: runs only as a child of the appliance's init");
        return 2;
    }
    let file = match OpenOptions::new().read(true).write(true).open(port) {
        Ok(f) => f,
        Err(e) => {
            say(&format!("init agent: cannot open {port}: {e}"));
            return 1;
        }
    };
    serve(file, &mut host::System::default(), false)
}

/// Answers requests on `port` for ever (`until_eof`: until the other end closes,
/// for tests: a virtio port reads EOF whenever no host is connected).
fn serve<P: Read + Write + AsFd>(mut port: P, system: &mut dyn protocol::Host, until_eof: bool) -> i32 {
    let version = env!("CARGO_PKG_VERSION");
    let mut framer = protocol::Framer::default();
    let mut buf = [0u8; 4096];
    if let Err(e) = set_nonblocking(&port) {
        say(&format!("init agent: O_NONBLOCK: {}", e.desc()));
        return 1;
    }
    loop {
        system.thaw_if_overdue(Instant::now());
        let readable = {
            let mut fds = [PollFd::new(port.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(1000u16)) {
                Ok(n) if n > 0 => fds
                    .first()
                    .and_then(PollFd::revents)
                    .is_some_and(|r| r.contains(PollFlags::POLLIN)),
                _ => false,
            }
        };
        if !readable && !until_eof {
            // No host on the other end (the socket has no client): poll reports a
            // hang-up at once; do not spin.
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let n = match port.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                ) =>
            {
                continue
            }
            Err(e) => {
                say(&format!("init agent: reading the port: {e}"));
                return 1;
            }
        };
        if n == 0 {
            if until_eof {
                return 0;
            }
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        for frame in framer.push(buf.get(..n).unwrap_or(&[])) {
            let reply = protocol::handle(&frame, system, version);
            // A host that went away while we answered gets no reply: the next
            // request comes on a new connection, with a new guest-sync.
            let _ = write_bounded(&mut port, &reply, WRITE_LIMIT);
        }
    }
}

fn set_nonblocking(port: &impl AsFd) -> Result<(), Errno> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(port.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(port.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(|_| ())
}

/// Writes all of `data` unless the other end does not take it within `limit`.
fn write_bounded<P: Write + AsFd>(port: &mut P, mut data: &[u8], limit: Duration) -> Result<(), String> {
    let deadline = Instant::now().checked_add(limit).unwrap_or_else(Instant::now);
    while !data.is_empty() {
        match port.write(data) {
            Ok(0) => return Err("the port is closed".into()),
            Ok(n) => data = data.get(n..).unwrap_or(&[]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err("no host reads the reply".into());
                }
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let mut fds = [PollFd::new(port.as_fd(), PollFlags::POLLOUT)];
                let writable = matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0)
                    && fds
                        .first()
                        .and_then(PollFd::revents)
                        .is_some_and(|r| r.contains(PollFlags::POLLOUT));
                if !writable {
                    // Hung up (no host): poll returns at once; do not spin.
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent's loop over a socket pair, spoken to exactly as Proxmox's
    /// QMPClient does: `guest-sync-delimited` with a command id, then the command,
    /// in one write; the reply is 0xFF, the sync line and the command's line.
    #[test]
    fn serves_requests_the_way_proxmox_sends_them() {
        use std::os::unix::net::UnixStream;
        let (guest, mut proxmox) = UnixStream::pair().unwrap_or_else(|e| panic!("socketpair: {e}"));
        let agent = std::thread::spawn(move || {
            let mut host = protocol::tests::FakeHost::default();
            serve(guest, &mut host, true)
        });
        proxmox
            .write_all(b"{\"execute\":\"guest-sync-delimited\",\"arguments\":{\"id\":4711}}\n{\"arguments\":{},\"execute\":\"guest-network-get-interfaces\"}\n")
            .unwrap_or_else(|e| panic!("write: {e}"));
        proxmox
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while got.iter().filter(|b| **b == b'\n').count() < 2 {
            let n = proxmox.read(&mut buf).unwrap_or_else(|e| panic!("read: {e}"));
            assert!(n > 0, "the agent closed the connection");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.first(), Some(&0xFF));
        let text = String::from_utf8_lossy(&got[1..]).into_owned();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("{\"return\":4711}"));
        let reply: serde_json::Value = serde_json::from_str(lines.next().unwrap_or("")).unwrap_or_default();
        assert_eq!(reply["return"][0]["ip-addresses"][0]["ip-address"], "203.0.113.10");
        drop(proxmox);
        assert_eq!(agent.join().ok(), Some(0));
    }

    #[test]
    fn a_reply_nobody_reads_is_dropped_after_the_limit() {
        use std::os::unix::net::UnixStream;
        let (mut guest, _host) = UnixStream::pair().unwrap_or_else(|e| panic!("socketpair: {e}"));
        set_nonblocking(&guest).unwrap_or_else(|e| panic!("{e}"));
        let big = vec![b'x'; 4 << 20]; // more than the socket buffer holds
        let started = Instant::now();
        assert!(write_bounded(&mut guest, &big, Duration::from_millis(300)).is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn finds_the_agent_port_by_name() {
        let sys = std::env::temp_dir().join(format!("init-vports-{}", std::process::id()));
        for (dir, name, devname) in [
            ("vport1p1", "org.qemu.spice.0", "vport1p1"),
            ("vport2p1", PORT_NAME, "vport2p1"),
        ] {
            let d = sys.join(dir);
            let _ = std::fs::create_dir_all(&d);
            let _ = std::fs::write(d.join("name"), format!("{name}\n"));
            let _ = std::fs::write(d.join("uevent"), format!("MAJOR=244\nMINOR=1\nDEVNAME={devname}\n"));
        }
        let found = find_port_in(&sys, PORT_NAME);
        let missing = find_port_in(&sys, "org.example.none");
        let _ = std::fs::remove_dir_all(&sys);
        assert_eq!(found, Some(PathBuf::from("/dev/vport2p1")));
        assert_eq!(missing, None);
    }
}
