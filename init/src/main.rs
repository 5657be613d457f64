//! PID 1 of the router appliance image (see image/CONTRACT.md).
//!
//! Boot: block the signals init handles and open a signalfd, mount the API
//! filesystems, open the consoles, route ctrl-alt-del to SIGINT, set the
//! default hostname, load the listed kernel modules. Then one event loop:
//! each turn looks for the state partition, the config disk and power
//! buttons, brings routerd in line with what should run, and waits (poll)
//! on the signalfd and the power buttons for at most a second.
//!
//! PID 1 must never exit (the kernel panics), so nothing here unwraps and
//! every path ends in a power-off or keeps running.
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

#[macro_use]
mod console;
mod agent;
mod disks;
mod modules;
mod mounts;
mod power;
mod spawn;
mod state;
mod supervisor;

use config::image::{
    CIDATA_MOUNT, CONFIG_FILE, CONFIG_FILE_NAME, CONFIG_LABEL, CONFIG_MOUNT, LAST_GOOD_FILE_NAME, STATE_MOUNT,
};
use nix::mount::MsFlags;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use supervisor::{RunSpec, Supervisor};

/// How long to wait for the state partition before going on without it
/// (it may show up later still: then routerd is restarted with --state).
const STATE_WAIT: Duration = Duration::from_secs(5);
const STATE_SCAN_EVERY: Duration = Duration::from_millis(250);
/// How long the config disk may take to appear before init says what to
/// attach (and runs the last good config meanwhile).
const CONFIG_GRACE: Duration = Duration::from_secs(3);
const NO_CONFIG_REPEAT: Duration = Duration::from_secs(30);
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// The last good config routerd saved on the state partition.
fn last_good() -> PathBuf {
    Path::new(STATE_MOUNT).join(LAST_GOOD_FILE_NAME)
}

fn main() {
    // The guest agent is this same binary, started by init as `/init agent PORT`.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("agent") {
        std::process::exit(agent::main(args.get(2).map(String::as_str)));
    }
    // Run by hand on a workstation this would mount over /dev, load modules
    // and power the machine off on SIGTERM: only ever act as PID 1.
    if nix::unistd::getpid().as_raw() != 1 {
        say!("init: this is the appliance's PID 1 and does nothing as any other process");
        std::process::exit(2);
    }
    boot()
}

fn boot() -> ! {
    // First, so that no signal is lost and every child starts after it.
    let signals = power::open_signals();
    let mount_errors = mounts::mount_all(mounts::EARLY);
    console::open();
    say!("init: starting");
    for e in mount_errors {
        say!("{e}");
    }
    if let Err(e) = &signals {
        say!("init: signalfd: {}: signals are not handled", e.desc());
    }
    power::route_ctrl_alt_del();
    set_default_hostname();
    modules::load_listed();
    let mut init = Init::new(signals.ok(), Instant::now());
    init.run()
}

/// The name the router has until routerd applies a config: routerd sets the name
/// the config gives (`--set-hostname`), at start and on every reload.
fn set_default_hostname() {
    let name = config::hostname::DEFAULT;
    if let Err(e) = nix::unistd::sethostname(name) {
        say!("init: sethostname {name}: {}", e.desc());
    }
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

struct Init {
    signals: Option<SignalFd>,
    buttons: power::Buttons,
    supervisor: Supervisor,
    agent: agent::Agent,
    state: StateDisk,
    config: ConfigDisk,
    cidata: CloudInit,
    next_state_scan: Instant,
    next_config_scan: Instant,
    next_button_scan: Instant,
    /// The last config-disk mount error printed (printed again only when it
    /// changes).
    config_error: Option<String>,
    /// The same for the cloud-init drive.
    cidata_error: Option<String>,
}

/// `t + d`, or `t` if that would overflow.
fn after(t: Instant, d: Duration) -> Instant {
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

impl Init {
    fn new(signals: Option<SignalFd>, now: Instant) -> Init {
        Init {
            signals,
            buttons: power::Buttons::default(),
            supervisor: Supervisor::new(),
            agent: agent::Agent::new(now),
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
            next_button_scan: now,
            config_error: None,
            cidata_error: None,
        }
    }

    fn run(&mut self) -> ! {
        loop {
            let now = Instant::now();
            self.tick(now);
            let timeout = self.timeout(Instant::now());
            let (signal_ready, buttons_ready) = self.wait(timeout);
            if signal_ready {
                self.handle_signals();
            }
            // Highest index first: a failed button is removed from the list.
            for index in buttons_ready.into_iter().rev() {
                if self.buttons.pressed(index) {
                    say!("init: power button pressed");
                    power::shutdown(power::Action::PowerOff, &mut self.supervisor);
                }
            }
            let exits = supervisor::reap_all();
            self.supervisor.on_exits(&exits, Instant::now());
            self.agent.on_exits(&exits, Instant::now());
        }
    }

    fn tick(&mut self, now: Instant) {
        if now >= self.next_button_scan {
            self.next_button_scan = after(now, SCAN_EVERY);
            self.buttons.scan();
        }
        self.tick_state(now);
        self.tick_config(now);
        self.agent.tick(now);
        let desired = self.desired(now);
        self.supervisor.reconcile(desired.as_ref(), now);
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
            self.next_config_scan = after(now, SCAN_EVERY);
            let found = disks::find_config_disks();
            if let (Some(disk), CloudInit::Absent) = (&found.cidata, self.cidata) {
                self.mount_cidata(disk);
            }
            if let Some(disk) = found.config {
                let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
                match mounts::mount_device(&disk.node, CONFIG_MOUNT, disk.kind.fstype(), flags) {
                    Ok(()) => {
                        say!(
                            "init: config disk {} ({}) mounted read-only at {CONFIG_MOUNT}",
                            disk.node.display(),
                            disk.kind.fstype()
                        );
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
                        self.config = ConfigDisk::Mounted;
                        return;
                    }
                    Err(e) => {
                        if self.config_error.as_deref() != Some(e.as_str()) {
                            say!("init: config disk: {e}; trying again");
                            self.config_error = Some(e);
                        }
                    }
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

    fn mount_cidata(&mut self, disk: &disks::ConfigDisk) {
        let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        match mounts::mount_device(&disk.node, CIDATA_MOUNT, disk.kind.fstype(), flags) {
            Ok(()) => {
                say!(
                    "init: cloud-init drive {} ({}) mounted read-only at {CIDATA_MOUNT}: it configures \
                     the router unless a {CONFIG_LABEL} config disk is attached (that takes precedence)",
                    disk.node.display(),
                    disk.kind.fstype()
                );
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
    fn desired(&self, now: Instant) -> Option<RunSpec> {
        choose_run(self.state, self.config, self.cidata, now, || last_good().is_file())
    }

    /// How long the next wait may last: at most a second, less if a scan or
    /// a restart is due sooner.
    fn timeout(&self, now: Instant) -> Duration {
        let mut wake = after(now, SCAN_EVERY);
        if matches!(self.state, StateDisk::Searching { .. }) && self.next_state_scan > now {
            wake = wake.min(self.next_state_scan);
        }
        // A restart already due was just declined by tick() (nothing to run):
        // only a future one shortens the wait, so the loop never spins.
        if let Some(due) = self.supervisor.restart_due().filter(|due| *due > now) {
            wake = wake.min(due);
        }
        wake.saturating_duration_since(now)
    }

    /// Waits for a signal or a button; returns whether the signalfd is
    /// readable and which buttons are.
    fn wait(&self, timeout: Duration) -> (bool, Vec<usize>) {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds: Vec<PollFd> = Vec::new();
        if let Some(sfd) = &self.signals {
            fds.push(PollFd::new(sfd.as_fd(), PollFlags::POLLIN));
        }
        let first_button = fds.len();
        for f in self.buttons.files() {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        if fds.is_empty() {
            std::thread::sleep(timeout);
            return (false, Vec::new());
        }
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => {}
            // Timeout, EINTR or an error: the caller's loop goes on.
            _ => return (false, Vec::new()),
        }
        let ready: Vec<bool> = fds.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect();
        let signal_ready = self.signals.is_some() && ready.first().copied().unwrap_or(false);
        let buttons = ready
            .iter()
            .enumerate()
            .skip(first_button)
            .filter(|(_, r)| **r)
            .map(|(i, _)| i - first_button)
            .collect();
        (signal_ready, buttons)
    }

    fn handle_signals(&mut self) {
        let Some(sfd) = &self.signals else { return };
        for sig in power::pending_signals(sfd) {
            match power::request_for(sig) {
                power::Request::Reap | power::Request::Ignore => {}
                power::Request::Shutdown(action) => {
                    say!("init: {} received", sig.as_str());
                    power::shutdown(action, &mut self.supervisor)
                }
                power::Request::ReloadRouterd => self.supervisor.signal(Signal::SIGHUP),
            }
        }
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
