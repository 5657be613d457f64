//! Upgrades in place with automatic rollback (image/CONTRACT.md, "Slots and
//! upgrades"). The boot partition holds two slots, `a` and `b`; the boot loaders'
//! configs name the default one. Here:
//!
//! - a disk carrying a release (another disk with a `ROUTERBOOT` partition: a new
//!   image's qcow2 attached as an extra disk) is checked (version, the checksum of
//!   each file it copies) and installed into the slot not running; then init sets the
//!   boot loader's one-shot (syslinux's boot-once, systemd-boot's
//!   `LoaderEntryOneShot`) for that slot and reboots;
//! - a slot booted that is not the default is on trial: once routerd reports ready
//!   init makes it the default; if routerd ends a few times first, or is not ready in
//!   time, init reboots, and the boot loader boots the default (old) slot. A kernel
//!   panic reboots too (`panic=5`), with the same result.
//!
//! What was tried and what failed is kept on the state partition, so that a release
//! that failed is not installed again while its disk stays attached.

mod boot;

use crate::disks;
use crate::power;
use crate::sources::Sources;
use crate::state;
use crate::supervisor::Supervisor;
use boot::Loader;
use config::image::STATE_MOUNT;
use config::release::{self, Release, BOOT_LABEL, LOADER_CONF, SLOT_RELEASE_FILE_NAME, SYSLINUX_CFG};
use nix::mount::MsFlags;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// routerd writes it once it is ready (init names it in routerd's environment).
pub const READY_FILE: &str = "/run/routerd-ready";
const BOOT_MOUNT: &str = "/boot";
const RELEASE_MOUNT: &str = "/run/release";
const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// A slot on trial must have routerd ready within this long after init started...
const TRIAL_LIMIT: Duration = Duration::from_secs(180);
/// ...and routerd may end this many times before it is.
const TRIAL_EXITS: u32 = 3;
/// A release disk is installed once routerd is ready, or this long after boot.
const INSTALL_AFTER: Duration = Duration::from_secs(30);
const SCAN_EVERY: Duration = Duration::from_secs(2);
/// On the state partition: the slot on trial and its release (written before the
/// reboot into it).
const TRYING_FILE: &str = "upgrade-trying";
/// On the state partition: one `version payload` line per release that failed.
const FAILED_FILE: &str = "upgrade-failed";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the state partition to be found (or not).
    Start,
    /// No slots (booted without `router.slot=`) or no boot partition found.
    Off,
    Trial,
    Watching,
}

pub struct Upgrade {
    phase: Phase,
    started: Instant,
    booted: Option<String>,
    boot_esp: Option<PathBuf>,
    next_scan: Instant,
    /// Release disks already looked at (each is reported once).
    judged: BTreeSet<PathBuf>,
}

/// The boot loader this boot went through.
fn firmware_loader() -> Loader {
    if Path::new("/sys/firmware/efi").exists() {
        Loader::SystemdBoot
    } else {
        Loader::Syslinux
    }
}

fn config_file(loader: Loader) -> &'static str {
    match loader {
        Loader::Syslinux => SYSLINUX_CFG,
        Loader::SystemdBoot => LOADER_CONF,
    }
}

/// The slot the kernel command line names.
pub fn booted_slot() -> Option<String> {
    boot::booted_slot(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
}

fn state_file(name: &str) -> PathBuf {
    Path::new(STATE_MOUNT).join(name)
}

impl Upgrade {
    pub fn new(now: Instant) -> Upgrade {
        Upgrade {
            phase: Phase::Start,
            started: now,
            booted: booted_slot(),
            boot_esp: None,
            next_scan: now,
            judged: BTreeSet::new(),
        }
    }

    pub fn tick(&mut self, now: Instant, sources: &Sources, supervisor: &mut Supervisor) {
        match self.phase {
            Phase::Start => {
                if let Some(mounted) = sources.state_mounted() {
                    self.start(mounted);
                }
            }
            Phase::Off => {}
            Phase::Trial => self.tick_trial(now, supervisor),
            Phase::Watching => {
                let ready = Path::new(READY_FILE).exists();
                if now < self.next_scan || (!ready && now < after(self.started, INSTALL_AFTER)) {
                    return;
                }
                self.next_scan = after(now, SCAN_EVERY);
                self.scan(supervisor);
            }
        }
    }

    fn start(&mut self, state_mounted: bool) {
        self.phase = Phase::Off;
        let Some(booted) = self.booted.clone() else { return };
        let (boot_esp, _) = find_boot_partitions();
        let Some(boot_esp) = boot_esp else {
            say!("init: no {BOOT_LABEL} partition on the disk with the state partition: upgrades are off");
            return;
        };
        self.boot_esp = Some(boot_esp.clone());
        let loader = firmware_loader();
        let default = with_mount(&boot_esp, BOOT_MOUNT, false, || {
            let text = std::fs::read_to_string(Path::new(BOOT_MOUNT).join(config_file(loader)))
                .map_err(|e| format!("read {}: {e}", config_file(loader)))?;
            boot::default_slot(loader, &text).ok_or_else(|| format!("{} names no slot", config_file(loader)))
        });
        let default = match default {
            Ok(d) => d,
            Err(e) => {
                say!("init: boot partition {}: {e}: upgrades are off", boot_esp.display());
                return;
            }
        };
        if default != booted {
            say!(
                "init: slot {booted} is on trial: it becomes the default once routerd is ready; if routerd \
                 ends {TRIAL_EXITS} times first or is not ready within {} s, the router restarts into slot {default}",
                TRIAL_LIMIT.as_secs()
            );
            self.phase = Phase::Trial;
            return;
        }
        if !state_mounted {
            say!("init: no state partition: upgrades from a release disk are off");
            return;
        }
        // Back on the default slot with a trial recorded for another: the trial failed
        // before init in that slot could say so (a kernel panic, a hang, a power cut).
        if let Some(tried) = read_trying() {
            if tried.0 != booted {
                say!(
                    "init: the upgrade to {} failed: slot {} did not reach routerd ready; running {} from slot {booted} again",
                    tried.1.display(),
                    tried.0,
                    release::running().display()
                );
                record_failed(&tried.1);
            }
            let _ = std::fs::remove_file(state_file(TRYING_FILE));
        }
        self.phase = Phase::Watching;
    }

    fn tick_trial(&mut self, now: Instant, supervisor: &mut Supervisor) {
        let Some(booted) = self.booted.clone() else { return };
        let other = boot::other_slot(&booted);
        if Path::new(READY_FILE).exists() {
            match self.commit(&booted) {
                Ok(()) => say!(
                    "init: release {} in slot {booted} reached routerd ready: slot {booted} is now the default \
                     (slot {other} keeps the previous release)",
                    release::running().display()
                ),
                Err(e) => say!("init: cannot make slot {booted} the default: {e}"),
            }
            let _ = std::fs::remove_file(state_file(TRYING_FILE));
            self.phase = Phase::Watching;
            return;
        }
        let reason = if supervisor.exits() >= TRIAL_EXITS {
            format!("routerd ended {} times", supervisor.exits())
        } else if now >= after(self.started, TRIAL_LIMIT) {
            format!("routerd not ready after {} s", TRIAL_LIMIT.as_secs())
        } else {
            return;
        };
        say!(
            "init: release {} in slot {booted} failed its trial ({reason}): restarting into slot {other}",
            release::running().display()
        );
        record_failed(release::running());
        let _ = std::fs::remove_file(state_file(TRYING_FILE));
        power::shutdown(power::Action::Reboot, supervisor)
    }

    /// Makes `slot` the default of both boot loaders.
    fn commit(&self, slot: &str) -> Result<(), String> {
        let esp = self.boot_esp.as_ref().ok_or("no boot partition")?;
        with_mount(esp, BOOT_MOUNT, true, || {
            for loader in [Loader::Syslinux, Loader::SystemdBoot] {
                let path = Path::new(BOOT_MOUNT).join(config_file(loader));
                let text = std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
                let new = boot::with_default(loader, &text, slot)
                    .ok_or_else(|| format!("{} has no default line to change", path.display()))?;
                write_in_place(&path, new.as_bytes())?;
            }
            Ok(())
        })
    }

    fn scan(&mut self, supervisor: &mut Supervisor) {
        let (_, releases) = find_boot_partitions();
        for node in releases {
            if !self.judged.insert(node.clone()) {
                continue;
            }
            let Some(booted) = self.booted.clone() else { return };
            let target = boot::other_slot(&booted);
            let result = with_mount(&node, RELEASE_MOUNT, false, || self.consider(&node, target));
            match result {
                Ok(Some(new)) => {
                    say!(
                        "init: installed {} into slot {target}; restarting into it once (slot {booted} with {} \
                         stays the default until the new release reaches routerd ready)",
                        new.display(),
                        release::running().display()
                    );
                    power::shutdown(power::Action::Reboot, supervisor)
                }
                Ok(None) => {}
                Err(e) => say!(
                    "init: release disk {}: {e}; nothing changed: slot {booted} stays the default",
                    node.display()
                ),
            }
        }
    }

    /// Looks at the release disk mounted at RELEASE_MOUNT; installs it into `target`
    /// when it is another build that has not failed here. Some(release) once installed.
    fn consider(&self, node: &Path, target: &str) -> Result<Option<Release>, String> {
        let root = Path::new(RELEASE_MOUNT);
        let cfg = std::fs::read_to_string(root.join(SYSLINUX_CFG))
            .map_err(|e| format!("not a release disk: no {SYSLINUX_CFG}: {e}"))?;
        let slot = boot::default_slot(Loader::Syslinux, &cfg).ok_or("not a release disk: no default slot")?;
        let src = root.join(&slot);
        let text = std::fs::read_to_string(src.join(SLOT_RELEASE_FILE_NAME))
            .map_err(|e| format!("no release file in slot {slot}: {e}"))?;
        let new = Release::parse(&text).ok_or("its release file is incomplete")?;
        let running = release::running();
        if new.same_build(running) {
            say!(
                "init: release disk {} holds {}, the release running: nothing to install (detach the disk)",
                node.display(),
                new.display()
            );
            return Ok(None);
        }
        if failed_before(&new) {
            say!(
                "init: release disk {} holds {}, which failed its trial here before: not installing it again \
                 (detach the disk)",
                node.display(),
                new.display()
            );
            return Ok(None);
        }
        // Booted through UEFI, systemd-boot's entry for the slot starts its own loader:
        // a release without one (older than the loader) would not boot.
        let uefi_loader = (firmware_loader() == Loader::SystemdBoot).then_some(release::SLOT_UEFI_LOADER);
        for needed in ["vmlinuz", "initrd.img"].into_iter().chain(uefi_loader) {
            if !new.files.iter().any(|(n, _, _)| n == needed) {
                return Err(format!("its release file lists no {needed}"));
            }
        }
        say!(
            "init: release disk {} holds {} (running {}): installing it into slot {target}",
            node.display(),
            new.display(),
            running.display()
        );
        let esp = self.boot_esp.as_ref().ok_or("no boot partition")?;
        with_mount(esp, BOOT_MOUNT, true, || {
            install(&src, &Path::new(BOOT_MOUNT).join(target), &new)?;
            write_trying(target, &new)?;
            set_one_shot(target)
        })?;
        Ok(Some(new))
    }
}

fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).unwrap_or(t)
}

/// The boot partition (a `ROUTERBOOT` FAT partition on the disk holding the state
/// partition) and the other disks' `ROUTERBOOT` partitions (release disks).
fn find_boot_partitions() -> (Option<PathBuf>, Vec<PathBuf>) {
    let boot_disk = state::find().and_then(|node| parent_disk(&node));
    let mut boot = None;
    let mut releases = Vec::new();
    for dev in disks::block_devices() {
        if disks::uevent_value(&dev.uevent, "DEVTYPE") != Some("partition") {
            continue;
        }
        let node = dev.node();
        let labelled = disks::read_head(&node, 512)
            .ok()
            .and_then(|h| disks::fat_label(&h))
            .is_some_and(|l| l.eq_ignore_ascii_case(BOOT_LABEL));
        if !labelled {
            continue;
        }
        if boot_disk.is_some() && parent_disk(&node) == boot_disk {
            boot.get_or_insert(node);
        } else {
            releases.push(node);
        }
    }
    if boot_disk.is_none() {
        releases.clear();
    }
    (boot, releases)
}

/// The disk a partition's node belongs to (`/dev/sda2` -> `sda`), from sysfs.
fn parent_disk(node: &Path) -> Option<String> {
    let name = node.file_name()?;
    let real = std::fs::canonicalize(Path::new("/sys/class/block").join(name)).ok()?;
    Some(real.parent()?.file_name()?.to_string_lossy().into_owned())
}

/// Mounts the FAT partition `node` on `target` (read-only unless `rw`), runs `f`,
/// syncs and unmounts whatever `f` returned.
fn with_mount<T>(node: &Path, target: &str, rw: bool, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME;
    if !rw {
        flags |= MsFlags::MS_RDONLY;
    }
    crate::mounts::mount_device(node, target, "vfat", flags)?;
    let out = f();
    nix::unistd::sync();
    if let Err(e) = crate::mounts::unmount(target) {
        say!("init: {e}");
    }
    out
}

fn sha256_hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copies `src` to `dest` and returns the sha256 of what it read.
fn copy_hashing(src: &Path, dest: &Path) -> Result<String, String> {
    let mut input = std::fs::File::open(src).map_err(|e| format!("open {}: {e}", src.display()))?;
    let mut output = std::fs::File::create(dest).map_err(|e| format!("create {}: {e}", dest.display()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| format!("read {}: {e}", src.display()))?;
        let Some(chunk) = buf.get(..n) else { break };
        if n == 0 {
            break;
        }
        hash.update(chunk);
        output
            .write_all(chunk)
            .map_err(|e| format!("write {}: {e}", dest.display()))?;
    }
    output.sync_all().map_err(|e| format!("sync {}: {e}", dest.display()))?;
    Ok(sha256_hex(&hash.finalize()))
}

/// The sha256 of `path` as the disk has it (its cached pages dropped first).
fn hash_from_disk(path: &Path) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let _ = nix::fcntl::posix_fadvise(&f, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hash.update(buf.get(..n).unwrap_or_default());
    }
    Ok(sha256_hex(&hash.finalize()))
}

/// Fills slot directory `dest` from `src`: the old content goes first (the release
/// file first of all, so a slot cut short is never taken for complete), each file is
/// checked against the release's checksum as read and again as written, and the
/// release file comes last.
fn install(src: &Path, dest: &Path, new: &Release) -> Result<(), String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("mkdir {}: {e}", dest.display()))?;
    let _ = std::fs::remove_file(dest.join(SLOT_RELEASE_FILE_NAME));
    if let Ok(entries) = std::fs::read_dir(dest) {
        for e in entries.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    for (name, size, sum) in &new.files {
        let from = src.join(name);
        let tmp = dest.join(format!("{name}.new"));
        say!("init: copying {name} ({size} bytes) into {}", dest.display());
        let read = copy_hashing(&from, &tmp)?;
        if &read != sum {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!(
                "{name}: checksum {read} is not the release's {sum} (a damaged disk?)"
            ));
        }
        let written = hash_from_disk(&tmp)?;
        if &written != sum {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("{name}: written copy has checksum {written}, not {sum}"));
        }
        let to = dest.join(name);
        std::fs::rename(&tmp, &to).map_err(|e| format!("rename {}: {e}", to.display()))?;
    }
    write_atomically(&dest.join(SLOT_RELEASE_FILE_NAME), new.render().as_bytes())
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("new");
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename {}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Overwrites the start of an existing file with `data` of the same length: a config
/// line changed in place, in one sector, never a file missing or half written.
fn write_in_place(path: &Path, data: &[u8]) -> Result<(), String> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    f.write_all_at(data, 0)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("write {}: {e}", path.display()))
}

/// The boot loader of this firmware boots `slot` once at the next boot.
fn set_one_shot(slot: &str) -> Result<(), String> {
    match firmware_loader() {
        Loader::Syslinux => {
            let path = Path::new(BOOT_MOUNT).join("ldlinux.sys");
            let data = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
            let at = boot::find_adv(&data).ok_or("ldlinux.sys holds no syslinux ADV")?;
            let adv = boot::adv_with_boot_once(slot).ok_or("boot-once command too long")?;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| format!("open {}: {e}", path.display()))?;
            f.write_all_at(&adv, at as u64)
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("write the boot-once into {}: {e}", path.display()))
        }
        Loader::SystemdBoot => {
            match nix::mount::mount(
                Some("efivarfs"),
                EFIVARS,
                Some("efivarfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            ) {
                Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
                Err(e) => return Err(format!("mount efivarfs: {}", e.desc())),
            }
            let path = Path::new(EFIVARS).join(format!("LoaderEntryOneShot-{}", boot::LOADER_GUID));
            std::fs::write(&path, boot::one_shot_variable(slot))
                .map_err(|e| format!("write EFI variable {}: {e}", path.display()))
        }
    }
}

fn write_trying(slot: &str, new: &Release) -> Result<(), String> {
    let text = format!("slot={slot}\n{}", new.render());
    write_atomically(&state_file(TRYING_FILE), text.as_bytes())
}

/// The slot and release of a trial recorded on the state partition.
fn read_trying() -> Option<(String, Release)> {
    let text = std::fs::read_to_string(state_file(TRYING_FILE)).ok()?;
    let slot = text.lines().find_map(|l| l.strip_prefix("slot="))?.to_string();
    Some((slot, Release::parse(&text)?))
}

fn failed_before(r: &Release) -> bool {
    let line = format!("{} {}", r.version, r.payload);
    std::fs::read_to_string(state_file(FAILED_FILE))
        .unwrap_or_default()
        .lines()
        .any(|l| l == line)
}

fn record_failed(r: &Release) {
    if failed_before(r) {
        return;
    }
    let mut text = std::fs::read_to_string(state_file(FAILED_FILE)).unwrap_or_default();
    text.push_str(&format!("{} {}\n", r.version, r.payload));
    if let Err(e) = write_atomically(&state_file(FAILED_FILE), text.as_bytes()) {
        say!("init: cannot record the failed release: {e}");
    }
}
