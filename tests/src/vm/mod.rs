//! The appliance image under QEMU, wired into the namespace lab: the VM's virtio
//! NICs sit on bridges in the lab's router namespace where the router's veths were,
//! so the hoster (with its MAC filter), the internet host and the LAN guests are the
//! same as in the namespace tests.
//!
//! QEMU runs through `qemu/run` (TCG, `-nodefaults`, taps only inside the test's
//! namespace), its console goes to a file, and the VM is killed on drop. VMs run one
//! at a time: under TCG on two cores, parallel boots only make each other time out.
//!
//! Here: [`Vm`] (QEMU, its console, waits, kill on drop). `qmp`: the QMP client;
//! `agent`: the guest agent client; `disks`: config, ISO and state-partition disks;
//! `peer`: the WireGuard peer VM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::lab::{Lab, Options};
use crate::netns::run;

mod agent;
mod disks;
pub mod peer;
mod qmp;
pub mod release;

pub use disks::{cidata_iso, config_disk, image_bin, iso_image, state_partition};

/// Generous: a Debian kernel boots in seconds under TCG, OVMF and a loaded machine
/// take longer. Tests never assert on timing.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
pub const POWEROFF_TIMEOUT: Duration = Duration::from_secs(60);

/// The hoster's virtual MAC, on the VM's first NIC (Proxmox net0).
pub const WAN_MAC: &str = crate::lab::VIRTUAL_MAC;
pub const LAN_MAC: &str = "52:54:00:12:34:01";
/// The VM's third NIC (Proxmox net2), with [`VmTuning::lan2`].
pub const LAN2_MAC: &str = "52:54:00:12:34:02";

static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The repository: the parent of this crate's folder `tests/`.
fn repo() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Where the raw disk image is: `$ROUTER_IMAGE`, else `out/router.img` (qemu/build
/// writes it), whether it is there or not (see [`crate::require_image`]).
pub fn image_file() -> PathBuf {
    std::env::var_os("ROUTER_IMAGE").map_or_else(|| repo().join("out/router.img"), PathBuf::from)
}

/// The raw disk image ([`image_file`]); fails when it is missing.
pub fn image_path() -> PathBuf {
    let p = image_file();
    assert!(
        p.exists(),
        "{} is missing: build the image with qemu/build (or set ROUTER_IMAGE)",
        p.display()
    );
    p
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

/// A second WAN port for the VM (Proxmox's net2, or next, on vmbr0): the lab's router port
/// `wan2` on the hoster's bridge, switched to the tap `tapwan2` in the router
/// namespace (see [`VmTuning::wan2_mac`]).
pub fn add_vm_wan2(lab: &Lab) {
    lab.add_router_wan_port("wan2", None);
    let r = &lab.router;
    r.ip(&["link", "add", "brwan2", "type", "bridge"]);
    r.ip(&["link", "set", "wan2", "master", "brwan2"]);
    r.ip(&["link", "set", "wan2", "up"]);
    r.ip(&["tuntap", "add", "mode", "tap", "name", "tapwan2"]);
    r.ip(&["link", "set", "tapwan2", "master", "brwan2"]);
    r.ip(&["link", "set", "tapwan2", "up"]);
    r.ip(&["link", "set", "brwan2", "up"]);
}

/// A third segment for [`vm_lab`]'s VM (its net2, with [`VmTuning::lan2`]): the bridge
/// `brlan2` in the router namespace with the tap `taplan2` and a veth to a LAN bridge
/// of its own (see [`Lab::add_lan_bridge`]), which is returned.
pub fn add_vm_lan2(lab: &Lab) -> crate::netns::Netns {
    let bridge = lab.add_lan_bridge("lan2");
    let r = &lab.router;
    r.ip(&["link", "add", "brlan2", "type", "bridge"]);
    r.ip(&["link", "set", "lan2", "master", "brlan2"]);
    r.ip(&["tuntap", "add", "mode", "tap", "name", "taplan2"]);
    r.ip(&["link", "set", "taplan2", "master", "brlan2"]);
    r.ip(&["link", "set", "taplan2", "up"]);
    r.ip(&["link", "set", "brlan2", "up"]);
    bridge
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
    /// A third NIC (net2, MAC [`LAN2_MAC`]) on the tap of [`add_vm_lan2`].
    pub lan2: bool,
    /// net2's QEMU NIC model (e.g. `e1000`); None: virtio-net-pci.
    pub lan2_model: Option<&'static str>,
    /// A second WAN NIC with this MAC on the tap `tapwan2` (see [`add_vm_wan2`]), after
    /// the others (Proxmox's net2 when there is no `lan2`).
    pub wan2_mac: Option<String>,
    /// An extra disk (Proxmox `qm set --scsi1`), e.g. a release to upgrade to (see
    /// [`release::build`]).
    pub extra_disk: Option<PathBuf>,
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
    /// Config disks swapped in by [`Vm::swap_config_disk`] since this boot.
    config_swaps: usize,
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
            config_swaps: 0,
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
        self.config_swaps = 0;
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
        if self.tuning.lan2 {
            cmd.args(["--lan2-tap", "taplan2", "--lan2-mac", LAN2_MAC]);
            if let Some(model) = self.tuning.lan2_model {
                cmd.args(["--lan2-model", model]);
            }
        }
        if self.tuning.agent {
            let _ = std::fs::remove_file(&self.qga);
            cmd.arg("--agent").arg(&self.qga);
        }
        if let Some(mac) = &self.tuning.wan2_mac {
            cmd.args(["--wan2-tap", "tapwan2", "--wan2-mac", mac]);
        }
        if let Some(disk) = &self.tuning.extra_disk {
            cmd.arg("--disk").arg(disk);
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
        qmp::execute(&self.qmp, command)
    }

    /// Changes the config of the running router the Proxmox way: the config disk is
    /// hot-unplugged, `disk` hot-plugged in its place (QMP `device_del`, `blockdev-add`,
    /// `device_add`); returns once init has mounted it and told routerd to reload.
    pub fn swap_config_disk(&mut self, disk: &Path) {
        let n = self.config_swaps;
        let old = if n == 0 {
            "config-disk".to_string()
        } else {
            format!("config-disk{n}")
        };
        let removed = self.qmp_with("device_del", serde_json::json!({ "id": old }));
        assert!(removed.get("return").is_some(), "device_del {old}: {removed}");
        self.wait_console_count("the config disk was removed", n + 1, BOOT_TIMEOUT);
        let node = format!("config{}", n + 1);
        let added = self.qmp_with(
            "blockdev-add",
            serde_json::json!({
                "driver": "raw", "node-name": node, "read-only": true,
                "file": { "driver": "file", "filename": disk.display().to_string(), "read-only": true }
            }),
        );
        assert!(
            added.get("return").is_some(),
            "blockdev-add {}: {added}",
            disk.display()
        );
        let id = format!("config-disk{}", n + 1);
        let plugged = self.qmp_with(
            "device_add",
            serde_json::json!({ "driver": "scsi-hd", "bus": "scsi1.0", "drive": node, "id": id }),
        );
        assert!(plugged.get("return").is_some(), "device_add {id}: {plugged}");
        self.config_swaps = n + 1;
        self.wait_console_count("reloading routerd", n + 1, BOOT_TIMEOUT);
    }

    /// [`Vm::qmp`] with arguments.
    pub fn qmp_with(&self, command: &str, arguments: serde_json::Value) -> serde_json::Value {
        qmp::execute_with(&self.qmp, command, arguments)
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

    /// Reads `/<name>` from the VM's state partition while QEMU is not running; see
    /// `disks::read_state_file`.
    pub fn read_state_file(&mut self, name: &str) -> Option<Vec<u8>> {
        assert!(
            self.child.is_none() || self.try_wait().is_some(),
            "read_state_file needs QEMU stopped"
        );
        disks::read_state_file(&image_path(), &self.disk, &self.dir, name)
    }

    /// Sends one guest agent command as Proxmox does and returns its reply (None for
    /// `guest-shutdown`); see `agent::execute`.
    pub fn agent(&self, command: &str, arguments: serde_json::Value) -> Option<serde_json::Value> {
        agent::execute(&self.qga, command, arguments)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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
