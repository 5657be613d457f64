//! The appliance image under QEMU, wired into the namespace lab: the VM's virtio
//! NICs sit on bridges in the lab's router namespace where the router's veths were,
//! so the hoster (with its MAC filter), the internet host and the LAN guests are the
//! same as in the namespace tests.
//!
//! QEMU runs through `qemu/run` (TCG, `-nodefaults`, taps only inside the test's
//! namespace), its console goes to a file, and the VM is killed on drop. VMs run one
//! at a time: under TCG on two cores, parallel boots only make each other time out.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::lab::{Lab, Options};
use crate::netns::run;

/// Generous: a Debian kernel boots in seconds under TCG, OVMF and a loaded machine
/// take longer. Tests never assert on timing.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
pub const POWEROFF_TIMEOUT: Duration = Duration::from_secs(60);

/// The hoster's virtual MAC, on the VM's first NIC (Proxmox net0).
pub const WAN_MAC: &str = crate::lab::VIRTUAL_MAC;
pub const LAN_MAC: &str = "52:54:00:12:34:01";

static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The raw disk image: `$ROUTER_IMAGE`, else `out/router.img` (qemu/build writes it).
pub fn image_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ROUTER_IMAGE") {
        return PathBuf::from(p);
    }
    let p = repo().join("out/router.img");
    assert!(
        p.exists(),
        "{} is missing: build the image with qemu/build (or set ROUTER_IMAGE)",
        p.display()
    );
    p
}

/// The image builder binary: `$IMAGE_BIN`, else the workspace's release or debug build.
pub fn image_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("IMAGE_BIN") {
        return PathBuf::from(p);
    }
    for profile in ["release", "debug"] {
        let p = repo().join("target").join(profile).join("image");
        if p.exists() {
            return p;
        }
    }
    panic!("the image builder is missing: run qemu/build (or cargo build -p image) or set IMAGE_BIN");
}

/// Writes a config disk holding `text` with `image config`; `checked: false` writes
/// it even when invalid (to see what the appliance does with a bad config).
pub fn config_disk(dir: &Path, name: &str, text: &str, checked: bool) -> PathBuf {
    let toml = dir.join(format!("{name}.toml"));
    std::fs::write(&toml, text).unwrap_or_else(|e| panic!("{}: {e}", toml.display()));
    let img = dir.join(format!("{name}.img"));
    let mut cmd = Command::new(image_bin());
    cmd.arg("config").arg(&toml).arg("-o").arg(&img);
    if !checked {
        cmd.arg("--unchecked");
    }
    run(&mut cmd);
    img
}

/// A cloud-init drive as Proxmox makes one: the files in an iso9660 volume from
/// `genisoimage -quiet -iso-level 3 -J -R -V cidata`, padded to 4 MiB.
pub fn cidata_iso(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    iso_image(dir, name, "cidata", files)
}

/// An ISO 9660 image (Joliet + Rock Ridge names, as `genisoimage -J -R` makes for
/// Proxmox) labelled `label`, holding `files`, padded to 4 MiB.
pub fn iso_image(dir: &Path, name: &str, label: &str, files: &[(&str, &str)]) -> PathBuf {
    let tree = dir.join(format!("{name}-files"));
    std::fs::create_dir_all(&tree).unwrap_or_else(|e| panic!("{}: {e}", tree.display()));
    for (file, text) in files {
        std::fs::write(tree.join(file), text).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let iso = dir.join(format!("{name}.iso"));
    run(Command::new("genisoimage")
        .args(["-quiet", "-iso-level", "3", "-J", "-R", "-V", label, "-o"])
        .arg(&iso)
        .arg(&tree));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&iso)
        .unwrap_or_else(|e| panic!("{e}"));
    f.set_len(4 << 20).unwrap_or_else(|e| panic!("{e}"));
    iso
}

/// The lab of lab.rs with the router namespace turned into two switches: `wan` and
/// `lan` enslaved to bridges `brwan`/`brlan`, each with a tap for the VM.
pub fn vm_lab() -> Lab {
    let lab = Lab::new(Options { wan_mac: None });
    let r = &lab.router;
    // The namespace is only a switch now and must send nothing of its own (IPv6
    // neighbour discovery, IGMP from the bridges' MACs would trip the hoster's filter).
    r.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
    r.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
    r.sh("nft -f - <<'EOF'
table bridge switch_only {
  chain output {
    type filter hook output priority 0; policy drop;
  }
}
EOF");
    for (side, veth) in [("wan", "wan"), ("lan", "lan")] {
        let br = format!("br{side}");
        let tap = format!("tap{side}");
        r.ip(&["link", "add", &br, "type", "bridge"]);
        r.ip(&["link", "set", veth, "master", &br]);
        r.ip(&["tuntap", "add", "mode", "tap", "name", &tap]);
        r.ip(&["link", "set", &tap, "master", &br]);
        r.ip(&["link", "set", &tap, "up"]);
        r.ip(&["link", "set", &br, "up"]);
    }
    lab
}

pub struct VmOptions {
    pub uefi: bool,
    /// A config disk image (see [`config_disk`]); None: no config disk.
    pub config: Option<PathBuf>,
}

/// Knobs beyond [`VmOptions`] (kept apart so that `VmOptions { uefi, config }`
/// literals stay valid): see [`Vm::start_tuned`] and [`Vm::set_tuning`].
#[derive(Debug, Clone, Default)]
pub struct VmTuning {
    /// Guest RAM in MiB (`qemu/run --memory`); None: qemu/run's default (512).
    pub memory_mib: Option<u32>,
    /// A cloud-init drive (see [`cidata_iso`]) on an IDE CD-ROM, as Proxmox attaches it.
    pub cidata: Option<PathBuf>,
    /// The QEMU guest agent channel (virtio-serial), spoken to with [`Vm::agent`].
    pub agent: bool,
}

/// A running VM. Killed (and its console dumped if the test failed) on drop.
pub struct Vm {
    child: Option<Child>,
    pub dir: PathBuf,
    pub console: PathBuf,
    pub qmp: PathBuf,
    /// The guest agent's socket (with [`VmTuning::agent`]).
    pub qga: PathBuf,
    /// The VM's own copy-on-write disk over the built image: survives [`Vm::restart`].
    pub disk: PathBuf,
    netns: String,
    started: Instant,
    tuning: VmTuning,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Vm {
    /// Boots the image in the lab's router namespace (see [`vm_lab`]).
    pub fn start(lab: &Lab, opts: VmOptions) -> Vm {
        Vm::start_tuned(lab, opts, VmTuning::default())
    }

    /// [`Vm::start`] with extra knobs (kept for [`Vm::restart`] too).
    pub fn start_tuned(lab: &Lab, opts: VmOptions, tuning: VmTuning) -> Vm {
        let guard = ONE_VM_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let dir = lab.dir.join("vm");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let disk = dir.join("disk.qcow2");
        let image = image_path();
        let image = image
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", image.display()));
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&image)
            .arg(&disk));
        let mut vm = Vm {
            child: None,
            console: dir.join("console.log"),
            qmp: dir.join("qmp.sock"),
            qga: dir.join("qga.sock"),
            dir,
            disk,
            netns: lab.router.name.clone(),
            started: Instant::now(),
            tuning,
            _one_at_a_time: guard,
        };
        vm.boot(&opts);
        vm
    }

    /// Boots again from the same disk (after the VM powered off), with `opts`.
    pub fn restart(&mut self, opts: VmOptions) {
        self.kill();
        self.boot(&opts);
    }

    fn boot(&mut self, opts: &VmOptions) {
        let _ = std::fs::remove_file(&self.console);
        let _ = std::fs::remove_file(&self.qmp);
        let log = std::fs::File::create(self.dir.join("qemu.log")).unwrap_or_else(|e| panic!("qemu.log: {e}"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns])
            .arg(repo().join("qemu/run"))
            .arg("--image")
            .arg(&self.disk)
            .args([
                "--wan-tap",
                "tapwan",
                "--wan-mac",
                WAN_MAC,
                "--lan-tap",
                "taplan",
                "--lan-mac",
                LAN_MAC,
            ])
            .arg("--serial")
            .arg(format!("file:{}", self.console.display()))
            .arg("--qmp")
            .arg(&self.qmp)
            .arg("--state-dir")
            .arg(&self.dir);
        if let Some(c) = &opts.config {
            cmd.arg("--config").arg(c);
        }
        if opts.uefi {
            cmd.arg("--uefi");
        }
        if let Some(mib) = self.tuning.memory_mib {
            cmd.arg("--memory").arg(mib.to_string());
        }
        if let Some(iso) = &self.tuning.cidata {
            cmd.arg("--cidata").arg(iso);
        }
        if self.tuning.agent {
            let _ = std::fs::remove_file(&self.qga);
            cmd.arg("--agent").arg(&self.qga);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("{e}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start qemu/run: {e}"));
        self.child = Some(child);
        self.started = Instant::now();
    }

    pub fn console_text(&self) -> String {
        let bytes = std::fs::read(&self.console).unwrap_or_default();
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }

    fn qemu_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("qemu.log")).unwrap_or_default()
    }

    /// Waits until the console shows `needle` (bounded); fails with the console if
    /// the time runs out or QEMU exits first.
    pub fn wait_console(&mut self, needle: &str, timeout: Duration) {
        self.wait_console_count(needle, 1, timeout);
    }

    pub fn wait_console_count(&mut self, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.console_text().matches(needle).count() >= count {
                // For the record (tests never assert on timing).
                eprintln!(
                    "vm: console showed {needle:?} {:.1} s after QEMU started",
                    self.started.elapsed().as_secs_f64()
                );
                return;
            }
            if let Some(status) = self.try_wait() {
                panic!(
                    "QEMU exited ({status}) before the console showed {needle:?}\n{}",
                    self.qemu_log()
                );
            }
            if Instant::now() > deadline {
                panic!("the console did not show {needle:?} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits (bounded) for QEMU to exit; None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.try_wait() {
                eprintln!(
                    "vm: QEMU exited {:.1} s after it started",
                    self.started.elapsed().as_secs_f64()
                );
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }

    /// Sends one QMP command (after the capabilities handshake) and returns the reply.
    pub fn qmp(&self, command: &str) -> serde_json::Value {
        let stream = UnixStream::connect(&self.qmp).unwrap_or_else(|e| panic!("QMP {}: {e}", self.qmp.display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut writer = stream.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let mut reader = BufReader::new(stream);
        let mut read_reply = |what: &str| -> serde_json::Value {
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => panic!("QMP closed while waiting for {what}"),
                    Ok(_) => {}
                }
                let v: serde_json::Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("QMP sent {line:?}: {e}"));
                // Skip asynchronous events.
                if v.get("event").is_none() {
                    return v;
                }
            }
        };
        let greeting = read_reply("the greeting");
        assert!(greeting.get("QMP").is_some(), "not a QMP greeting: {greeting}");
        writer
            .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let caps = read_reply("qmp_capabilities");
        assert!(caps.get("return").is_some(), "qmp_capabilities: {caps}");
        writer
            .write_all(format!("{{\"execute\":\"{command}\"}}\n").as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        read_reply(command)
    }

    /// Knobs for the next [`Vm::restart`].
    pub fn set_tuning(&mut self, tuning: VmTuning) {
        self.tuning = tuning;
    }

    /// Time since QEMU was started for the current boot.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// QEMU's exit status if it has exited (None while it runs).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.try_wait()
    }

    /// Like [`Vm::wait_console`] without failing: the time since QEMU started when the
    /// console first showed `needle` (polled every 50 ms), or None if the time ran out,
    /// QEMU exited, or the console showed one of `fatal` first (e.g. "Kernel panic").
    pub fn poll_console(&mut self, needle: &str, fatal: &[&str], timeout: Duration) -> Option<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.console_text();
            if text.contains(needle) {
                return Some(self.started.elapsed());
            }
            if fatal.iter().any(|f| text.contains(f)) || self.try_wait().is_some() || Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pulls the plug: SIGKILL to QEMU (no ACPI, no flush from the guest). The child is
    /// QEMU itself (`ip netns exec` and `qemu/run` both exec). What QEMU already wrote
    /// to the overlay file stays in the host's page cache; what the guest had not yet
    /// handed to QEMU is lost, as in a power cut.
    pub fn hard_kill(&mut self) {
        if let Some(c) = &self.child {
            let comm = std::fs::read_to_string(format!("/proc/{}/comm", c.id())).unwrap_or_default();
            assert!(
                comm.trim().starts_with("qemu-system") || self.try_wait().is_some(),
                "the VM's child process is {comm:?}, not QEMU"
            );
        }
        self.kill();
    }

    /// Reads `/<name>` from the VM's state partition (GPT name `routerstate`, ext4)
    /// from the host side while QEMU is not running, with no kernel help (no loop
    /// device, no nbd): `qemu-img convert` copies the partition out of the qcow2 overlay,
    /// `e2fsck -fy` replays the journal on that copy (a killed VM leaves one to
    /// replay, as the kernel would at the next mount), `debugfs` dumps the file.
    /// None when the partition has no filesystem yet or the file does not exist.
    pub fn read_state_file(&mut self, name: &str) -> Option<Vec<u8>> {
        assert!(
            self.child.is_none() || self.try_wait().is_some(),
            "read_state_file needs QEMU stopped"
        );
        let (start, size) = state_partition(&image_path());
        let part = self.dir.join("state-part.img");
        let _ = std::fs::remove_file(&part);
        // The raw driver's offset/size window over the qcow2 overlay (`qemu-img dd
        // skip=` refuses the offset on QEMU 7.2 and still exits 0).
        run(Command::new("qemu-img")
            .arg("convert")
            .arg("--image-opts")
            .arg(format!(
                "driver=raw,offset={start},size={size},file.driver=qcow2,file.file.driver=file,file.file.filename={}",
                self.disk.display()
            ))
            .args(["-O", "raw"])
            .arg(&part));
        let fsck = Command::new("e2fsck")
            .arg("-fy")
            .arg(&part)
            .output()
            .unwrap_or_else(|e| panic!("e2fsck: {e}"));
        // 0: clean, 1: fixed (a journal replay counts), 8: no ext4 here (never booted).
        let code = fsck.status.code().unwrap_or(-1);
        let fsck_text = format!(
            "{}{}",
            String::from_utf8_lossy(&fsck.stdout),
            String::from_utf8_lossy(&fsck.stderr)
        );
        if code >= 8 {
            eprintln!("vm: no ext4 filesystem on the state partition (e2fsck exit {code}):\n{fsck_text}");
            return None;
        }
        assert!(
            code < 4,
            "e2fsck found uncorrected errors on the state partition (exit {code}):\n{fsck_text}"
        );
        if code != 0 {
            eprintln!("vm: e2fsck on a copy of the state partition (exit {code}):\n{fsck_text}");
        }
        let out = self.dir.join(format!("state-{}", name.replace('/', "_")));
        let _ = std::fs::remove_file(&out);
        let dump = run(Command::new("debugfs")
            .arg("-R")
            .arg(format!("dump /{name} {}", out.display()))
            .arg(&part));
        let bytes = std::fs::read(&out).ok();
        if bytes.is_none() {
            let ls = run(Command::new("debugfs").args(["-R", "ls -l /"]).arg(&part));
            eprintln!(
                "vm: debugfs found no /{name}: {}\nthe state partition holds:\n{}",
                String::from_utf8_lossy(&dump.stderr),
                String::from_utf8_lossy(&ls.stdout)
            );
        }
        let _ = std::fs::remove_file(&part);
        bytes
    }

    /// Sends one guest agent command the way Proxmox's QMPClient does
    /// (`guest-sync-delimited` with an id, then the command, in one write) and
    /// returns the command's reply, or None for `guest-shutdown` (it answers
    /// nothing). Fails when no reply comes within 30 s.
    pub fn agent(&self, command: &str, arguments: serde_json::Value) -> Option<serde_json::Value> {
        use std::io::Read;
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut stream = UnixStream::connect(&self.qga).unwrap_or_else(|e| panic!("agent {}: {e}", self.qga.display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap_or_else(|e| panic!("{e}"));
        let request = format!(
            "{}\n{}\n",
            serde_json::json!({ "execute": "guest-sync-delimited", "arguments": { "id": id } }),
            serde_json::json!({ "execute": command, "arguments": arguments })
        );
        stream
            .write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("agent: {e}"));
        let lines_wanted = if command == "guest-shutdown" { 1 } else { 2 };
        let mut got: Vec<u8> = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            // Proxmox skips everything up to the last 0xFF, then reads whole lines.
            let after = got.iter().rposition(|b| *b == 0xFF).map(|i| &got[i + 1..]);
            if let Some(rest) = after {
                let text = String::from_utf8_lossy(rest).into_owned();
                let lines: Vec<&str> = text.split('\n').collect();
                if lines.len() > lines_wanted {
                    let sync: serde_json::Value = serde_json::from_str(lines[0])
                        .unwrap_or_else(|e| panic!("agent sync reply {:?}: {e}", lines[0]));
                    assert_eq!(
                        sync["return"], id,
                        "guest-sync-delimited answered with another id: {text:?}"
                    );
                    return (lines_wanted == 2).then(|| {
                        serde_json::from_str(lines[1]).unwrap_or_else(|e| panic!("agent reply {:?}: {e}", lines[1]))
                    });
                }
            }
            let n = stream
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("agent: no reply to {command} ({e}); got {got:?}"));
            assert!(n > 0, "agent socket closed while waiting for {command}");
            got.extend_from_slice(&buf[..n]);
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The state partition's byte offset and length in the image, from its GPT (read
/// with `sfdisk -J`, which reads the file and needs no device).
pub fn state_partition(image: &Path) -> (u64, u64) {
    let out = run(Command::new("sfdisk").arg("-J").arg(image));
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("sfdisk -J {}: {e}", image.display()));
    let table = &json["partitiontable"];
    let sector = table["sectorsize"].as_u64().unwrap_or(512);
    let parts = table["partitions"].as_array().cloned().unwrap_or_default();
    let p = parts
        .iter()
        .find(|p| p["name"].as_str() == Some("routerstate"))
        .unwrap_or_else(|| panic!("no partition named routerstate in {}: {json}", image.display()));
    let start = p["start"].as_u64().unwrap_or_else(|| panic!("partition start: {p}"));
    let size = p["size"].as_u64().unwrap_or_else(|| panic!("partition size: {p}"));
    (start * sector, size * sector)
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- VM console ({}) ---\n{}",
                self.console.display(),
                self.console_text()
            );
            eprintln!("--- qemu ---\n{}", self.qemu_log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
