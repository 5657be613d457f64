//! The signals init acts on, read from a signalfd, and what each asks for.

use super::Action;
use crate::console::say;
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// What a signal asks init to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Reap,
    Shutdown(Action),
    ReloadRouterd,
    Ignore,
}

/// The signals init handles (all blocked, read from a signalfd).
pub const HANDLED: &[Signal] = &[
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGUSR2,
    Signal::SIGINT,
    Signal::SIGHUP,
];

pub fn request_for(sig: Signal) -> Request {
    match sig {
        Signal::SIGCHLD => Request::Reap,
        Signal::SIGTERM | Signal::SIGUSR2 => Request::Shutdown(Action::PowerOff),
        Signal::SIGINT => Request::Shutdown(Action::Reboot),
        Signal::SIGHUP => Request::ReloadRouterd,
        _ => Request::Ignore,
    }
}

/// Blocks [`HANDLED`] and opens a signalfd for them. Call before any child
/// exists. (Children start with an empty mask: spawn.rs resets it.)
pub fn open_signals() -> Result<SignalFd, Errno> {
    let mut mask = SigSet::empty();
    for sig in HANDLED {
        mask.add(*sig);
    }
    mask.thread_block()?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// Every signal waiting on the signalfd.
pub fn pending_signals(fd: &SignalFd) -> Vec<Signal> {
    let mut out = Vec::new();
    for _ in 0..1024 {
        match fd.read_signal() {
            Ok(Some(info)) => {
                let number = i32::try_from(info.ssi_signo).ok();
                if let Some(sig) = number.and_then(|n| Signal::try_from(n).ok()) {
                    out.push(sig);
                }
            }
            Ok(None) => break,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    out
}

/// Lets ctrl-alt-del reach init as SIGINT instead of rebooting at once.
pub fn route_ctrl_alt_del() {
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        say(&format!("init: reboot(RB_DISABLE_CAD): {}", e.desc()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_requests() {
        assert_eq!(request_for(Signal::SIGCHLD), Request::Reap);
        assert_eq!(request_for(Signal::SIGTERM), Request::Shutdown(Action::PowerOff));
        assert_eq!(request_for(Signal::SIGUSR2), Request::Shutdown(Action::PowerOff));
        assert_eq!(request_for(Signal::SIGINT), Request::Shutdown(Action::Reboot));
        assert_eq!(request_for(Signal::SIGHUP), Request::ReloadRouterd);
        assert_eq!(request_for(Signal::SIGUSR1), Request::Ignore);
        for sig in HANDLED {
            assert_ne!(request_for(*sig), Request::Ignore);
        }
    }
}
