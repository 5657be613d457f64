//! Which config routerd runs, and why: init watches for the state partition, the
//! config disk (label ROUTERCFG) and a cloud-init drive (label cidata), mounts
//! them as they appear, and chooses between the config disk, the cloud-init drive
//! and the last good config on the state partition ([`choose_run`]).

use crate::disks;
use crate::mounts;
use crate::state;
use crate::supervisor::RunSpec;
use config::image::{
    CIDATA_MOUNT, CONFIG_FILE, CONFIG_FILE_NAME, CONFIG_LABEL, CONFIG_MOUNT, LAST_GOOD_FILE_NAME, STATE_MOUNT,
};
use nix::mount::MsFlags;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait for the state partition before going on without it
/// (it may show up later still: then routerd is restarted with --state).
const STATE_WAIT: Duration = Duration::from_secs(5);
const STATE_SCAN_EVERY: Duration = Duration::from_millis(250);
/// How often to look for the config disk while it is expected (the grace period at
/// boot): the disks appear a few hundred ms after the modules load, and a scan is a
/// few reads of /sys, so routerd need not wait for the next one-second scan.
const CONFIG_SCAN_AT_BOOT: Duration = Duration::from_millis(100);
/// How long the config disk may take to appear before init says what to
/// attach (and runs the last good config meanwhile).
const CONFIG_GRACE: Duration = Duration::from_secs(3);
const NO_CONFIG_REPEAT: Duration = Duration::from_secs(30);
/// How often init looks again for disks and power buttons.
pub const SCAN_EVERY: Duration = Duration::from_secs(1);

/// The last good config routerd saved on the state partition.
fn last_good() -> PathBuf {
    Path::new(STATE_MOUNT).join(LAST_GOOD_FILE_NAME)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateDisk {
    /// Looking for it until the deadline.
    Searching {
        until: Instant,
    },
    Mounted,
    /// Not found (yet: still looked for, less often).
    Absent,
    /// Found but could not be made or mounted: not retried.
    Failed,
}

/// The cloud-init drive (label `cidata`): used when there is no ROUTERCFG disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloudInit {
    Absent,
    Mounted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConfigDisk {
    Searching { since: Instant, next_message: Instant },
    Mounted,
}

/// The disks routerd's config and state come from, as far as init has found them.
pub struct Sources {
    state: StateDisk,
    config: ConfigDisk,
    cidata: CloudInit,
    next_state_scan: Instant,
    next_config_scan: Instant,
    /// The last config-disk mount error printed (printed again only when it
    /// changes).
    config_error: Option<String>,
    /// The same for the cloud-init drive.
    cidata_error: Option<String>,
    /// Which disk is mounted at /config; None once it was removed (hot-unplugged).
    config_disk: Option<disks::DiskId>,
    /// A config disk appeared in place of a removed one: routerd is to reload it.
    reload_due: bool,
}

/// How the config disk and the cloud-init drive are mounted.
fn read_only() -> MsFlags {
    MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
}

/// `t + d`, or `t` if that would overflow.
pub fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).unwrap_or(t)
}

/// What routerd should run with, from where the disks are: nothing while
/// the state partition is still looked for; the config disk's router.toml
/// once it is mounted (it takes precedence over a cloud-init drive, also
/// when it appears later); after the grace period without one, the
/// cloud-init drive if there is one, else the last good config if the state
/// partition has one (`last_good_exists` is asked only then).
fn choose_run(
    state: StateDisk,
    config: ConfigDisk,
    cidata: CloudInit,
    now: Instant,
    last_good_exists: impl FnOnce() -> bool,
) -> Option<RunSpec> {
    let state = match state {
        StateDisk::Searching { .. } => return None,
        StateDisk::Mounted => Some(PathBuf::from(STATE_MOUNT)),
        StateDisk::Absent | StateDisk::Failed => None,
    };
    match config {
        ConfigDisk::Mounted => Some(RunSpec {
            config: CONFIG_FILE.into(),
            state,
        }),
        ConfigDisk::Searching { since, .. } => {
            let waited = now.saturating_duration_since(since) >= CONFIG_GRACE;
            if waited && cidata == CloudInit::Mounted {
                Some(RunSpec {
                    config: CIDATA_MOUNT.into(),
                    state,
                })
            } else if state.is_some() && waited && last_good_exists() {
                Some(RunSpec {
                    config: last_good(),
                    state,
                })
            } else {
                None
            }
        }
    }
}

impl Sources {
    pub fn new(now: Instant) -> Sources {
        Sources {
            state: StateDisk::Searching {
                until: after(now, STATE_WAIT),
            },
            config: ConfigDisk::Searching {
                since: now,
                next_message: after(now, CONFIG_GRACE),
            },
            cidata: CloudInit::Absent,
            next_state_scan: now,
            next_config_scan: now,
            config_error: None,
            cidata_error: None,
            config_disk: None,
            reload_due: false,
        }
    }

    /// Looks for the disks still missing (when a scan is due) and mounts those found.
    pub fn tick(&mut self, now: Instant) {
        self.tick_state(now);
        self.tick_config(now);
        self.tick_config_swap(now);
    }

    /// Whether a new config disk was mounted in place of a removed one since the
    /// last call: routerd should reload (SIGHUP) rather than restart.
    pub fn take_reload(&mut self) -> bool {
        std::mem::take(&mut self.reload_due)
    }

    /// Once the config disk is mounted: a disk that goes away (Proxmox: `qm set
    /// --delete scsiN`, or `--scsiN` with a new volume) is detached, and routerd
    /// keeps running the config it has (a restart meanwhile runs the last good one);
    /// the next ROUTERCFG disk that appears is mounted and reloaded.
    fn tick_config_swap(&mut self, now: Instant) {
        if self.config != ConfigDisk::Mounted || now < self.next_config_scan {
            return;
        }
        self.next_config_scan = after(now, SCAN_EVERY);
        match self.config_disk {
            Some(disk) if disk.present() => {}
            Some(_) => {
                let _ = nix::mount::umount2(CONFIG_MOUNT, nix::mount::MntFlags::MNT_DETACH);
                say!(
                    "init: the config disk was removed: routerd keeps running its config; \
                     attach a new {CONFIG_LABEL} disk to reload"
                );
                self.config_disk = None;
            }
            None => {
                let Some(disk) = disks::find_config_disks().config else {
                    return;
                };
                if self.mount_config(&disk) {
                    say!("init: a new config disk: reloading routerd");
                    self.reload_due = true;
                }
            }
        }
    }

    /// Whether the state partition is mounted at /state; None while it is still
    /// waited for at boot.
    pub fn state_mounted(&self) -> Option<bool> {
        match self.state {
            StateDisk::Searching { .. } => None,
            StateDisk::Mounted => Some(true),
            StateDisk::Absent | StateDisk::Failed => Some(false),
        }
    }

    /// When the next look for the state partition is due, while it is still
    /// waited for.
    pub fn state_scan_due(&self) -> Option<Instant> {
        matches!(self.state, StateDisk::Searching { .. }).then_some(self.next_state_scan)
    }

    /// When the next look for the config disk is due, while it is expected at boot
    /// (later scans go with the loop's one-second turn).
    pub fn config_scan_due(&self) -> Option<Instant> {
        match self.config {
            ConfigDisk::Searching { since, .. } if self.next_config_scan < after(since, CONFIG_GRACE) => {
                Some(self.next_config_scan)
            }
            _ => None,
        }
    }

    fn tick_state(&mut self, now: Instant) {
        if now < self.next_state_scan {
            return;
        }
        match self.state {
            StateDisk::Searching { until } => {
                self.next_state_scan = after(now, STATE_SCAN_EVERY);
                if let Some(node) = state::find() {
                    self.mount_state(&node);
                } else if now >= until {
                    say!(
                        "init: no state partition (GPT partition named {}): running without {}",
                        config::image::STATE_PARTITION,
                        STATE_MOUNT
                    );
                    self.state = StateDisk::Absent;
                }
            }
            StateDisk::Absent => {
                self.next_state_scan = after(now, SCAN_EVERY);
                if let Some(node) = state::find() {
                    say!("init: state partition {} appeared", node.display());
                    self.mount_state(&node);
                }
            }
            StateDisk::Mounted | StateDisk::Failed => {}
        }
    }

    fn mount_state(&mut self, node: &Path) {
        match state::prepare_and_mount(node) {
            Ok(()) => {
                say!("init: state partition {} mounted at {}", node.display(), STATE_MOUNT);
                crate::timeline::mark("state partition mounted");
                self.state = StateDisk::Mounted;
            }
            Err(e) => {
                say!(
                    "init: state partition {}: {e}; running without {}",
                    node.display(),
                    STATE_MOUNT
                );
                self.state = StateDisk::Failed;
            }
        }
    }

    fn tick_config(&mut self, now: Instant) {
        let ConfigDisk::Searching { since, next_message } = self.config else {
            return;
        };
        if now >= self.next_config_scan {
            let every = if now < after(since, CONFIG_GRACE) {
                CONFIG_SCAN_AT_BOOT
            } else {
                SCAN_EVERY
            };
            self.next_config_scan = after(now, every);
            let found = disks::find_config_disks();
            if let (Some(disk), CloudInit::Absent) = (&found.cidata, self.cidata) {
                self.mount_cidata(disk);
            }
            if let Some(disk) = found.config {
                if self.mount_config(&disk) {
                    if !Path::new(CONFIG_FILE).is_file() {
                        say!(
                            "init: config disk {} has no {CONFIG_FILE_NAME} at its root",
                            disk.node.display()
                        );
                    }
                    if self.cidata == CloudInit::Mounted {
                        say!(
                            "init: the {CONFIG_LABEL} config disk takes precedence over the \
                             cloud-init drive: routerd runs {CONFIG_FILE}, {CIDATA_MOUNT} is ignored"
                        );
                    }
                    crate::timeline::mark("config disk mounted");
                    self.config = ConfigDisk::Mounted;
                    return;
                }
            }
        }
        if now >= next_message {
            if self.cidata == CloudInit::Absent {
                say!(
                    "init: no config disk: attach a disk labelled {CONFIG_LABEL} (vfat or iso9660) \
                     holding {CONFIG_FILE_NAME} (`image config router.toml -o config.img` makes one), \
                     or a Proxmox cloud-init drive with the WAN set (`qm set ID --ide2 local-lvm:cloudinit \
                     --ipconfig0 ip=203.0.113.10/32,gw=203.0.113.254`)"
                );
            }
            if let Some(e) = &self.config_error {
                say!("init: (a disk labelled {CONFIG_LABEL} is there but cannot be mounted: {e})");
            }
            self.config = ConfigDisk::Searching {
                since,
                next_message: after(now, NO_CONFIG_REPEAT),
            };
        }
    }

    /// Mounts `disk` read-only at /config and remembers which disk it is; a mount
    /// error is said once (again only when it changes).
    fn mount_config(&mut self, disk: &disks::ConfigDisk) -> bool {
        match mounts::mount_device(&disk.node, CONFIG_MOUNT, disk.kind.fstype(), read_only()) {
            Ok(()) => {
                say!(
                    "init: config disk {} ({}) mounted read-only at {CONFIG_MOUNT}",
                    disk.node.display(),
                    disk.kind.fstype()
                );
                self.config_disk = disks::DiskId::of(&disk.node);
                true
            }
            Err(e) => {
                if self.config_error.as_deref() != Some(e.as_str()) {
                    say!("init: config disk: {e}; trying again");
                    self.config_error = Some(e);
                }
                false
            }
        }
    }

    fn mount_cidata(&mut self, disk: &disks::ConfigDisk) {
        match mounts::mount_device(&disk.node, CIDATA_MOUNT, disk.kind.fstype(), read_only()) {
            Ok(()) => {
                say!(
                    "init: cloud-init drive {} ({}) mounted read-only at {CIDATA_MOUNT}: it configures \
                     the router unless a {CONFIG_LABEL} config disk is attached (that takes precedence)",
                    disk.node.display(),
                    disk.kind.fstype()
                );
                crate::timeline::mark("cloud-init drive mounted");
                self.cidata = CloudInit::Mounted;
            }
            Err(e) => {
                if self.cidata_error.as_deref() != Some(e.as_str()) {
                    say!("init: cloud-init drive: {e}; trying again");
                    self.cidata_error = Some(e);
                }
            }
        }
    }

    /// What routerd should run with now, if anything.
    pub fn desired(&self, now: Instant) -> Option<RunSpec> {
        choose_run(self.state, self.config, self.cidata, now, || last_good().is_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_init_runs_after_the_grace_period_when_there_is_no_config_disk() {
        let t = Instant::now();
        let later = after(t, CONFIG_GRACE);
        let mounted = CloudInit::Mounted;
        assert_eq!(choose_run(StateDisk::Mounted, searching(t), mounted, t, || true), None);
        assert_eq!(
            choose_run(StateDisk::Mounted, searching(t), mounted, later, || true),
            spec(CIDATA_MOUNT, true)
        );
        // Without a state partition too (then with no --state).
        assert_eq!(
            choose_run(StateDisk::Absent, searching(t), mounted, later, || false),
            spec(CIDATA_MOUNT, false)
        );
    }

    #[test]
    fn the_config_disk_is_looked_for_often_only_during_the_grace_period() {
        let t0 = Instant::now();
        let mut sources = Sources::new(t0);
        assert_eq!(sources.config_scan_due(), Some(t0));
        sources.next_config_scan = t0 + CONFIG_SCAN_AT_BOOT;
        assert_eq!(sources.config_scan_due(), Some(t0 + CONFIG_SCAN_AT_BOOT));
        // Past the grace period the loop's one-second turn is soon enough.
        sources.next_config_scan = t0 + CONFIG_GRACE + SCAN_EVERY;
        assert_eq!(sources.config_scan_due(), None);
        sources.next_config_scan = t0;
        sources.config = ConfigDisk::Mounted;
        assert_eq!(sources.config_scan_due(), None);
    }

    #[test]
    fn the_config_disk_takes_precedence_over_cloud_init() {
        let t = Instant::now();
        assert_eq!(
            choose_run(StateDisk::Mounted, ConfigDisk::Mounted, CloudInit::Mounted, t, || true),
            spec(CONFIG_FILE, true)
        );
    }

    fn searching(since: Instant) -> ConfigDisk {
        ConfigDisk::Searching {
            since,
            next_message: since,
        }
    }

    fn spec(config: &str, state: bool) -> Option<RunSpec> {
        Some(RunSpec {
            config: config.into(),
            state: state.then(|| PathBuf::from(STATE_MOUNT)),
        })
    }

    #[test]
    fn waits_for_the_state_partition() {
        let t = Instant::now();
        let state = StateDisk::Searching { until: t };
        assert_eq!(
            choose_run(state, ConfigDisk::Mounted, CloudInit::Absent, t, || true),
            None
        );
    }

    #[test]
    fn config_disk_wins() {
        let t = Instant::now();
        assert_eq!(
            choose_run(StateDisk::Mounted, ConfigDisk::Mounted, CloudInit::Absent, t, || true),
            spec(CONFIG_FILE, true)
        );
        for state in [StateDisk::Absent, StateDisk::Failed] {
            assert_eq!(
                choose_run(state, ConfigDisk::Mounted, CloudInit::Absent, t, || true),
                spec(CONFIG_FILE, false)
            );
        }
    }

    #[test]
    fn last_good_runs_only_after_the_grace_period() {
        let t = Instant::now();
        let later = after(t, CONFIG_GRACE);
        assert_eq!(
            choose_run(StateDisk::Mounted, searching(t), CloudInit::Absent, t, || true),
            None
        );
        assert_eq!(
            choose_run(StateDisk::Mounted, searching(t), CloudInit::Absent, later, || true),
            Some(RunSpec {
                config: last_good(),
                state: Some(STATE_MOUNT.into()),
            })
        );
        assert_eq!(
            choose_run(StateDisk::Mounted, searching(t), CloudInit::Absent, later, || false),
            None
        );
        // No state partition: no last good config either.
        assert_eq!(
            choose_run(StateDisk::Absent, searching(t), CloudInit::Absent, later, || true),
            None
        );
    }
}
