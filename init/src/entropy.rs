//! Early in a VM without a hardware random source (TCG, no virtio-rng) the kernel's
//! random generator is not ready, and the first read of `/dev/urandom` makes the kernel
//! gather timer jitter until it is: about a second (256 timer ticks) of waiting. nft's
//! JSON parser reads it (jansson's hash seed), so routerd's first ruleset used to wait
//! that second. A thread of init reads it at boot instead, at the lowest priority, so
//! that the ticks go by while the modules load.
#![allow(unsafe_code)]

use crate::console::say;
use crate::timeline;
use std::io::Read;

/// Starts the background read of one byte of `/dev/urandom`.
pub fn gather_in_background() {
    let started = std::thread::Builder::new().name("entropy".into()).spawn(|| {
        lowest_priority();
        let mut byte = [0u8; 1];
        match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut byte)) {
            Ok(()) => {
                if let Some(s) = timeline::since_boot() {
                    say(&format!("init: random numbers ready at {s:.3} s"));
                }
            }
            Err(e) => say(&format!("init: /dev/urandom: {e}")),
        }
    });
    if let Err(e) = started {
        say(&format!("init: cannot start the entropy thread: {e}"));
    }
}

/// Nice 19 for the calling thread (Linux keeps a nice value per thread): the kernel's
/// gathering loop then yields to every other task and only re-arms its timer.
fn lowest_priority() {
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    let rc = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 19) };
    if rc != 0 {
        say(&format!("init: setpriority: {}", std::io::Error::last_os_error()));
    }
}
