//! init's event loop: each turn looks for the state partition, the config disk
//! and power buttons, brings routerd in line with what should run, and waits
//! (poll) on the signalfd and the power buttons for at most a second.

use crate::agent;
use crate::power;
use crate::sources::{after, Sources, SCAN_EVERY};
use crate::supervisor::{self, Supervisor};
use crate::upgrade::Upgrade;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

pub struct Init {
    signals: Option<SignalFd>,
    buttons: power::Buttons,
    supervisor: Supervisor,
    agent: agent::Agent,
    sources: Sources,
    upgrade: Upgrade,
    next_button_scan: Instant,
}

impl Init {
    pub fn new(signals: Option<SignalFd>, now: Instant) -> Init {
        Init {
            signals,
            buttons: power::Buttons::default(),
            supervisor: Supervisor::new(),
            agent: agent::Agent::new(now),
            sources: Sources::new(now),
            upgrade: Upgrade::new(now),
            next_button_scan: now,
        }
    }

    pub fn run(&mut self) -> ! {
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
        self.sources.tick(now);
        self.agent.tick(now);
        let desired = self.sources.desired(now);
        self.supervisor.reconcile(desired.as_ref(), now);
        if self.sources.take_reload() {
            self.supervisor.signal(Signal::SIGHUP);
        }
        self.upgrade.tick(now, &self.sources, &mut self.supervisor);
    }

    /// How long the next wait may last: at most a second, less if a scan or
    /// a restart is due sooner.
    fn timeout(&self, now: Instant) -> Duration {
        let mut wake = after(now, SCAN_EVERY);
        if let Some(due) = self.sources.state_scan_due().filter(|due| *due > now) {
            wake = wake.min(due);
        }
        if let Some(due) = self.sources.config_scan_due().filter(|due| *due > now) {
            wake = wake.min(due);
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
