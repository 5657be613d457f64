//! Power: the ACPI power button (an evdev input device named "Power
//! Button"), the signals init acts on, and the orderly shutdown sequence.
//!
//! SIGTERM / SIGUSR2 / the power button power off; SIGINT (ctrl-alt-del,
//! which the kernel turns into SIGINT to init once `RB_DISABLE_CAD` is set)
//! reboots; SIGHUP is passed on to routerd; SIGCHLD means "reap".

mod buttons;
mod shutdown;
mod signals;

pub use buttons::Buttons;
pub use shutdown::{shutdown, Action};
pub use signals::{open_signals, pending_signals, request_for, route_ctrl_alt_del, Request};
