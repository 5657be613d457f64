//! init's own messages: one line each, to `/dev/console` (the serial port: the
//! last `console=` on the kernel command line) and to `/dev/tty0` (the screen),
//! so an operator sees them on either.
//!
//! Writing never fails loudly: a console that cannot be written is skipped.
//! Before [`open`] has run (while `/dev` is not mounted yet) lines go to fd 2,
//! which the kernel points at its initial console.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

/// The consoles [`say`] writes to, filled in by [`open`].
static SINKS: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// Where routerd's and mke2fs' output goes.
pub const CONSOLE: &str = "/dev/console";
const SCREEN: &str = "/dev/tty0";
/// The kernel lists its active consoles here; the last word is the one
/// behind `/dev/console`.
const ACTIVE: &str = "/sys/class/tty/console/active";

fn open_write(path: &str) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY)
        .open(path)
}

/// Opens `/dev/console` (and `/dev/tty0` unless the console already is a
/// virtual terminal), and points init's fds 0, 1 and 2 at the console.
pub fn open() {
    let mut sinks = Vec::new();
    match open_write(CONSOLE) {
        Ok(console) => {
            // Our own stdin/stdout/stderr: whatever the kernel gave us (maybe
            // nothing, if the initramfs had no /dev/console) becomes the console.
            let _ = nix::unistd::dup2_stdin(&console);
            let _ = nix::unistd::dup2_stdout(&console);
            let _ = nix::unistd::dup2_stderr(&console);
            sinks.push(console);
        }
        Err(e) => say(&format!("init: cannot open {CONSOLE}: {e}")),
    }
    let active = std::fs::read_to_string(ACTIVE).unwrap_or_default();
    if !console_is_vt(&active) {
        if let Ok(screen) = open_write(SCREEN) {
            sinks.push(screen);
        }
    }
    let mut guard = SINKS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *guard = sinks;
}

/// Whether `/dev/console` is a virtual terminal (`tty0`, `tty1`, ...), given
/// the contents of `/sys/class/tty/console/active` ("tty0 ttyS0": the last
/// word is the console). Then writing to `/dev/tty0` as well would print
/// every line twice on the screen.
pub fn console_is_vt(active: &str) -> bool {
    match active.split_whitespace().last() {
        Some(last) => last
            .strip_prefix("tty")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// Prints one line on every console.
pub fn say(line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let mut guard = SINKS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.is_empty() {
        let _ = std::io::stderr().write_all(text.as_bytes());
        return;
    }
    for sink in guard.iter_mut() {
        let _ = sink.write_all(text.as_bytes());
    }
}

/// `say!("init: ...{}", x)`: [`say`] with `format!` arguments.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::say(&format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_console_is_not_a_vt() {
        assert!(!console_is_vt("tty0 ttyS0\n"));
        assert!(!console_is_vt("ttyS0\n"));
        assert!(!console_is_vt(""));
        assert!(!console_is_vt("hvc0\n"));
    }

    #[test]
    fn vt_console_is_a_vt() {
        assert!(console_is_vt("ttyS0 tty0\n"));
        assert!(console_is_vt("tty1\n"));
    }
}
