//! The WireGuard peer VM (a laptop on the internet) for the boot tests: the image's
//! Debian kernel with busybox, `wg` and the wireguard module (`image peer-vm` builds
//! it; the host kernel has no wireguard). It runs through `qemu/run` (TCG,
//! `-nodefaults`) in the lab's `hoster` namespace, its one NIC on the tap `tappeer`:
//! the hoster routes [`PEER_IP`] there, so the peer reaches the router's public
//! address as any internet host does.
//!
//! Its init runs each shell script [`PeerVm::sh`] sends on the second serial port and
//! answers with the output and the exit code (see image/src/peer_vm.rs).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{image_bin, repo};
use crate::lab::Lab;
use crate::netns::run;

/// The peer's address on the internet side (the hoster is its gateway).
pub const PEER_IP: &str = "198.51.100.2";
pub const PEER_GATEWAY: &str = "198.51.100.254";
pub const PEER_MAC: &str = "52:54:00:77:00:02";
/// Bounded: the peer boots a kernel and a small initramfs, no disk, under TCG.
pub const PEER_BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// One script on the peer (pings and TCP connects retry inside the script).
pub const PEER_COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

const RC_MARK: &str = "@@peer-rc=";

static BUILD: Mutex<()> = Mutex::new(());

/// Where `image peer-vm` wrote the peer's kernel and initramfs: `$PEER_VM_DIR`, else
/// `out/peer-vm`, built there (packages cached in out/cache) when missing or older than
/// the image builder (which holds the peer's init).
pub fn peer_vm_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PEER_VM_DIR") {
        return PathBuf::from(d);
    }
    let dir = repo().join("out/peer-vm");
    let _one_build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let initrd = modified(&dir.join("initrd.img"));
    let stale = initrd.is_none() || modified(&image_bin()) > initrd || !dir.join("vmlinuz").is_file();
    if stale {
        run(Command::new(image_bin())
            .arg("peer-vm")
            .arg("--out")
            .arg(&dir)
            .arg("--cache")
            .arg(repo().join("out/cache")));
    }
    dir
}

/// A running peer VM; killed on drop (its console printed if the test failed).
pub struct PeerVm {
    child: Option<Child>,
    pub dir: PathBuf,
    pub console: PathBuf,
    channel: Option<UnixStream>,
    socket: PathBuf,
    started: Instant,
}

impl PeerVm {
    /// Boots the peer with its NIC on a new tap `tappeer` in the lab's hoster
    /// namespace, which routes [`PEER_IP`] to it; waits until its init is ready and
    /// gives it its address.
    pub fn start(lab: &Lab) -> PeerVm {
        let images = peer_vm_dir();
        let h = &lab.hoster;
        h.ip(&["tuntap", "add", "mode", "tap", "name", "tappeer"]);
        h.ip(&["link", "set", "tappeer", "up"]);
        h.ip(&["route", "add", &format!("{PEER_IP}/32"), "dev", "tappeer"]);
        let dir = lab.dir.join("peer-vm");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let console = dir.join("console.log");
        let socket = dir.join("channel.sock");
        let log = std::fs::File::create(dir.join("qemu.log")).unwrap_or_else(|e| panic!("qemu.log: {e}"));
        let child = Command::new("ip")
            .args(["netns", "exec", &h.name])
            .arg(repo().join("qemu/run"))
            .arg("--kernel")
            .arg(images.join("vmlinuz"))
            .arg("--initrd")
            .arg(images.join("initrd.img"))
            .args(["--append", "console=ttyS0 panic=-1 quiet"])
            .args(["--memory", "256", "--wan-tap", "tappeer", "--wan-mac", PEER_MAC])
            .arg("--serial")
            .arg(format!("file:{}", console.display()))
            .arg("--serial2")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("{e}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start qemu/run for the peer VM: {e}"));
        let mut vm = PeerVm {
            child: Some(child),
            dir,
            console,
            channel: None,
            socket,
            started: Instant::now(),
        };
        vm.wait_console("peer: ready", PEER_BOOT_TIMEOUT);
        vm.ok(&format!(
            "ip link set eth0 up && ip addr add {PEER_IP}/24 dev eth0 && ip route add default via {PEER_GATEWAY}"
        ));
        vm
    }

    pub fn console_text(&self) -> String {
        let bytes = std::fs::read(&self.console).unwrap_or_default();
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }

    fn qemu_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("qemu.log")).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn wait_console(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.console_text().contains(needle) {
            if let Some(status) = self.exited() {
                panic!(
                    "the peer VM's QEMU exited ({status}) before its console showed {needle:?}\n{}",
                    self.qemu_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the peer VM's console did not show {needle:?} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "peer vm: console showed {needle:?} {:.1} s after QEMU started",
            self.started.elapsed().as_secs_f64()
        );
    }

    fn channel(&mut self) -> &mut UnixStream {
        if self.channel.is_none() {
            let s = UnixStream::connect(&self.socket)
                .unwrap_or_else(|e| panic!("the peer VM's command channel {}: {e}", self.socket.display()));
            self.channel = Some(s);
        }
        self.channel.as_mut().unwrap_or_else(|| unreachable!())
    }

    /// Runs `script` with the peer's busybox sh; returns its exit code and output
    /// (stdout and stderr). Bounded by [`PEER_COMMAND_TIMEOUT`].
    pub fn sh(&mut self, script: &str) -> (i32, String) {
        let line = format!("{}\n", base64(script.as_bytes()));
        let timeout = PEER_COMMAND_TIMEOUT;
        let deadline = Instant::now() + timeout;
        let ch = self.channel();
        ch.write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("writing to the peer VM: {e}"));
        ch.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some(at) = text.find(RC_MARK) {
                let rest = &text[at + RC_MARK.len()..];
                if let Some(end) = rest.find("@@") {
                    let rc = rest[..end]
                        .parse()
                        .unwrap_or_else(|e| panic!("exit code {:?} from the peer: {e}", &rest[..end]));
                    let out = text[..at].to_string();
                    eprintln!("peer$ {script}\n{out}(exit {rc})");
                    return (rc, out);
                }
            }
            assert!(
                Instant::now() < deadline,
                "the peer VM did not finish {script:?} within {timeout:?}; so far:\n{text}"
            );
            match self.channel().read(&mut buf) {
                Ok(0) => panic!("the peer VM closed its command channel during {script:?}:\n{text}"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    if let Some(status) = self.exited() {
                        panic!("the peer VM's QEMU exited ({status}) during {script:?}:\n{text}");
                    }
                }
                Err(e) => panic!("reading from the peer VM: {e}"),
            }
        }
    }

    /// [`PeerVm::sh`] that must succeed; returns the output.
    pub fn ok(&mut self, script: &str) -> String {
        let (rc, out) = self.sh(script);
        assert_eq!(rc, 0, "on the peer VM, {script:?} failed (exit {rc}):\n{out}");
        out
    }

    /// A TCP exchange from the peer with busybox nc (three tries): the text that came
    /// back from `ip:port` for `msg` (one word), or None when nothing came back.
    pub fn tcp_echo(&mut self, ip: &str, port: u16, msg: &str) -> Option<String> {
        let (rc, out) = self.sh(&format!(
            "for i in 1 2 3; do \
               r=\"$(echo {msg} | timeout 10 nc -w 3 {ip} {port})\"; \
               [ -n \"$r\" ] && echo \"$r\" && exit 0; sleep 1; \
             done; exit 1"
        ));
        (rc == 0).then(|| out.trim().to_string())
    }

    /// Writes `text` to `path` on the peer.
    pub fn write_file(&mut self, path: &str, text: &str) {
        let b64 = base64(text.as_bytes());
        self.ok(&format!("echo {b64} | base64 -d > {path}"));
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PeerVm {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- peer VM console ({}) ---\n{}",
                self.console.display(),
                self.console_text()
            );
            eprintln!("--- peer qemu ---\n{}", self.qemu_log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Standard base64 with padding (what busybox `base64 -d` reads).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc4648() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }
}
