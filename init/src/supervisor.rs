//! routerd as a supervised child: started with the config init chose,
//! restarted with exponential backoff when it dies, restarted at once when
//! the config to run changes, stopped with SIGTERM then SIGKILL.
//! Reaping every child is here too (init is PID 1: orphans become ours).

use crate::console::say;
use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use config::image::ROUTERD;

/// How long routerd gets to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Restart delays: 1 s doubling to 30 s; back to 1 s after a run of 60 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const INITIAL: Duration = Duration::from_secs(1);
    pub const MAX: Duration = Duration::from_secs(30);
    pub const RESET_AFTER: Duration = Duration::from_secs(60);

    pub fn new() -> Backoff {
        Backoff { next: Self::INITIAL }
    }

    /// The delay before the next start, after a run that lasted `ran_for`.
    pub fn after_exit(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= Self::RESET_AFTER {
            self.next = Self::INITIAL;
        }
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(Self::MAX);
        delay
    }
}

/// What routerd runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    pub config: PathBuf,
    /// `--state` directory; `None` when there is no state partition.
    pub state: Option<PathBuf>,
}

impl RunSpec {
    /// routerd's arguments. `--set-hostname`: routerd owns the host name (it sets
    /// the one its config gives, at start and on every reload).
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "run".to_string(),
            "--config".to_string(),
            self.config.display().to_string(),
        ];
        if let Some(state) = &self.state {
            args.push("--state".to_string());
            args.push(state.display().to_string());
        }
        args.push("--set-hostname".to_string());
        args
    }
}

/// One child that terminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: Pid,
    pub status: ExitKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(Signal),
}

impl std::fmt::Display for ExitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitKind::Code(c) => write!(f, "exit code {c}"),
            ExitKind::Signal(s) => write!(f, "signal {}", s.as_str()),
        }
    }
}

fn exit_of(status: WaitStatus) -> Option<Exit> {
    match status {
        WaitStatus::Exited(pid, code) => Some(Exit {
            pid,
            status: ExitKind::Code(code),
        }),
        WaitStatus::Signaled(pid, sig, _) => Some(Exit {
            pid,
            status: ExitKind::Signal(sig),
        }),
        _ => None,
    }
}

/// Reaps every child that has terminated (none blocks).
pub fn reap_all() -> Vec<Exit> {
    let mut exits = Vec::new();
    // Bounded: there cannot be more zombies than processes.
    for _ in 0..100_000 {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => break,
            Ok(status) => exits.extend(exit_of(status)),
            Err(Errno::EINTR) => continue,
            // ECHILD: no children at all.
            Err(_) => break,
        }
    }
    exits
}

#[derive(Debug)]
struct Running {
    pid: Pid,
    spec: RunSpec,
    started: Instant,
}

#[derive(Debug)]
pub struct Supervisor {
    running: Option<Running>,
    backoff: Backoff,
    /// No (re)start before this instant.
    not_before: Option<Instant>,
    /// How many times routerd ended since boot.
    exits: u32,
}

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor {
            running: None,
            backoff: Backoff::new(),
            not_before: None,
            exits: 0,
        }
    }

    /// How many times routerd ended since boot (a trial slot gives up after a few).
    pub fn exits(&self) -> u32 {
        self.exits
    }

    pub fn pid(&self) -> Option<Pid> {
        self.running.as_ref().map(|r| r.pid)
    }

    /// When a restart is due, if one is waiting.
    pub fn restart_due(&self) -> Option<Instant> {
        if self.running.is_some() {
            None
        } else {
            self.not_before
        }
    }

    /// Brings routerd in line with `desired` (the run init wants now, if
    /// any): starts it when it is not running and its backoff delay has
    /// passed, restarts it at once when it runs with other arguments. With
    /// nothing desired a running routerd is left alone.
    pub fn reconcile(&mut self, desired: Option<&RunSpec>, now: Instant) {
        let Some(desired) = desired else { return };
        if let Some(running) = &self.running {
            if running.spec == *desired {
                return;
            }
            say(&format!("init: restarting routerd with {}", desired.args().join(" ")));
            self.stop(STOP_GRACE);
            self.not_before = None;
            // Stopping may have taken a while.
            self.start(desired, Instant::now());
            return;
        }
        if self.not_before.is_some_and(|t| now < t) {
            return;
        }
        self.start(desired, now);
    }

    fn start(&mut self, spec: &RunSpec, now: Instant) {
        let args = spec.args();
        say(&format!("init: starting {ROUTERD} {}", args.join(" ")));
        // Its own process group: SIGKILL reaches the nft it may be running.
        match crate::spawn::spawn(ROUTERD, &args) {
            Ok(pid) => {
                crate::timeline::mark("routerd started");
                self.running = Some(Running {
                    pid,
                    spec: spec.clone(),
                    started: now,
                });
                self.not_before = None;
            }
            Err(e) => {
                let delay = self.backoff.after_exit(Duration::ZERO);
                say(&format!(
                    "init: cannot start {ROUTERD}: {e}; trying again in {} s",
                    delay.as_secs()
                ));
                self.not_before = now.checked_add(delay);
            }
        }
    }

    /// Tells the supervisor about children that terminated; schedules the
    /// restart if routerd is among them.
    pub fn on_exits(&mut self, exits: &[Exit], now: Instant) {
        for exit in exits {
            let Some(running) = &self.running else { return };
            if running.pid != exit.pid {
                continue;
            }
            let ran_for = now.saturating_duration_since(running.started);
            let delay = self.backoff.after_exit(ran_for);
            say(&format!(
                "init: routerd ({}) ended with {} after {} s; restarting in {} s",
                exit.pid,
                exit.status,
                ran_for.as_secs(),
                delay.as_secs()
            ));
            self.running = None;
            self.exits = self.exits.saturating_add(1);
            self.not_before = now.checked_add(delay);
        }
    }

    /// Passes a signal on to routerd (SIGHUP: reload).
    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, sig);
        }
    }

    /// Stops routerd: SIGTERM, up to `grace` to exit, then SIGKILL to its
    /// process group. Other children that end meanwhile are reaped too.
    pub fn stop(&mut self, grace: Duration) {
        let Some(running) = self.running.take() else {
            return;
        };
        let pid = running.pid;
        let _ = kill(pid, Signal::SIGTERM);
        if wait_for(pid, grace) {
            return;
        }
        say(&format!(
            "init: routerd ({pid}) still running {} s after SIGTERM: SIGKILL",
            grace.as_secs()
        ));
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = kill(pid, Signal::SIGKILL);
        if !wait_for(pid, Duration::from_secs(5)) {
            say(&format!("init: routerd ({pid}) did not die on SIGKILL"));
        }
    }
}

/// Waits up to `limit` for `pid` to terminate, reaping whatever ends.
pub fn wait_for(pid: Pid, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        if reap_all().iter().any(|e| e.pid == pid) {
            return true;
        }
        // Gone already (reaped elsewhere) or never ours.
        if kill(pid, None) == Err(Errno::ESRCH) {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        let mut b = Backoff::new();
        let delays: Vec<u64> = (0..8).map(|_| b.after_exit(secs(0)).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn backoff_resets_after_a_minute_of_running() {
        let mut b = Backoff::new();
        for _ in 0..5 {
            b.after_exit(secs(1));
        }
        assert_eq!(b.after_exit(secs(59)), secs(30));
        assert_eq!(b.after_exit(secs(60)), secs(1));
        assert_eq!(b.after_exit(secs(3)), secs(2));
        assert_eq!(b.after_exit(secs(3600)), secs(1));
    }

    #[test]
    fn args_with_and_without_state() {
        use config::image::{CONFIG_FILE, STATE_MOUNT};
        let spec = RunSpec {
            config: CONFIG_FILE.into(),
            state: Some(STATE_MOUNT.into()),
        };
        assert_eq!(
            spec.args(),
            vec!["run", "--config", CONFIG_FILE, "--state", STATE_MOUNT, "--set-hostname"]
        );
        let spec = RunSpec {
            config: CONFIG_FILE.into(),
            state: None,
        };
        assert_eq!(spec.args(), vec!["run", "--config", CONFIG_FILE, "--set-hostname"]);
    }

    #[test]
    fn exit_status_mapping() {
        let pid = Pid::from_raw(42);
        assert_eq!(
            exit_of(WaitStatus::Exited(pid, 3)),
            Some(Exit {
                pid,
                status: ExitKind::Code(3)
            })
        );
        assert_eq!(
            exit_of(WaitStatus::Signaled(pid, Signal::SIGKILL, false)).map(|e| e.status),
            Some(ExitKind::Signal(Signal::SIGKILL))
        );
        assert_eq!(exit_of(WaitStatus::StillAlive), None);
        assert_eq!(ExitKind::Signal(Signal::SIGTERM).to_string(), "signal SIGTERM");
    }
}
