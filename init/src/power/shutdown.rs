//! The orderly shutdown: routerd stopped, every other process ended, the disks
//! synced and unmounted, then power-off or reboot.

use crate::console::say;
use crate::supervisor::{self, Supervisor};
use config::image;
use nix::sys::reboot::RebootMode;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PowerOff,
    Reboot,
}

/// The orderly shutdown: routerd gets SIGTERM (SIGKILL after 10 s), every
/// other process is ended, the disks are synced and unmounted, then power
/// off or reboot. Never returns.
pub fn shutdown(action: Action, supervisor: &mut Supervisor) -> ! {
    say(match action {
        Action::PowerOff => "init: shutting down",
        Action::Reboot => "init: shutting down for reboot",
    });
    // A filesystem a backup left frozen would block routerd's last writes, the
    // sync and the unmount.
    let thawed = crate::agent::freeze::thaw_all();
    if thawed > 0 {
        say(&format!("init: thawed {thawed} frozen filesystem(s)"));
    }
    supervisor.stop(supervisor::STOP_GRACE);
    end_all_processes();
    nix::unistd::sync();
    for target in [image::STATE_MOUNT, image::CONFIG_MOUNT, image::CIDATA_MOUNT] {
        if let Err(e) = crate::mounts::unmount(target) {
            say(&format!("init: {e}"));
        }
    }
    nix::unistd::sync();
    let mode = match action {
        Action::PowerOff => {
            say("init: powering off");
            RebootMode::RB_POWER_OFF
        }
        Action::Reboot => {
            say("init: rebooting");
            RebootMode::RB_AUTOBOOT
        }
    };
    let Err(e) = nix::sys::reboot::reboot(mode);
    say(&format!("init: reboot(2): {}", e.desc()));
    halt_forever()
}

/// Any process left (nft, mke2fs, ...): SIGTERM, 2 s, SIGKILL.
fn end_all_processes() {
    let all = Pid::from_raw(-1);
    if kill(all, Signal::SIGTERM).is_err() {
        // ESRCH: nothing else runs.
        return;
    }
    for _ in 0..40 {
        supervisor::reap_all();
        if kill(all, None).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(all, Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(100));
    supervisor::reap_all();
}

/// The last resort: PID 1 must not exit (the kernel would panic), so it
/// sleeps for ever, still reaping.
pub fn halt_forever() -> ! {
    loop {
        supervisor::reap_all();
        std::thread::sleep(Duration::from_secs(1));
    }
}
