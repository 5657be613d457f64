//! PID 1 of the router appliance image (see image/CONTRACT.md).
//!
//! Boot: block the signals init handles and open a signalfd, mount the API
//! filesystems, open the consoles, route ctrl-alt-del to SIGINT, set the
//! default hostname, load the listed kernel modules. Then the event loop
//! (event_loop.rs) for ever; which config routerd runs is sources.rs.
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
mod entropy;
mod event_loop;
mod modules;
mod mounts;
mod power;
mod sources;
mod spawn;
mod state;
mod supervisor;
mod timeline;
mod upgrade;

use std::time::Instant;

fn main() {
    // The guest agent is this same binary, started by init as `/init agent PORT`.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("agent") {
        std::process::exit(agent::main(args.get(2).map(String::as_str)));
    }
    // The kernel's request_module() runs /sbin/modprobe, a link to this binary.
    if args.first().and_then(|a| a.rsplit('/').next()) == Some("modprobe") {
        console::open();
        std::process::exit(modules::modprobe(&args));
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
    timeline::mark("init started");
    say!(
        "init: router {}{}",
        config::release::running().display(),
        upgrade::booted_slot().map_or(String::new(), |s| format!(" in slot {s}"))
    );
    for e in mount_errors {
        say!("{e}");
    }
    if let Err(e) = &signals {
        say!("init: signalfd: {}: signals are not handled", e.desc());
    }
    entropy::gather_in_background();
    power::route_ctrl_alt_del();
    set_default_hostname();
    modules::load_listed();
    modules::enable_on_request();
    timeline::mark("modules loaded");
    let mut init = event_loop::Init::new(signals.ok(), Instant::now());
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
