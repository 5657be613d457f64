//! Starting child processes the way PID 1 must: init keeps its signals
//! blocked (they are read from a signalfd), and a blocked mask is inherited
//! across exec, so every child gets an empty mask and default dispositions
//! (posix_spawn's SETSIGMASK/SETSIGDEF; std's Command does not reset the
//! mask). stdin is /dev/null, stdout and stderr the console, the
//! environment only PATH, and each child leads its own process group.

use crate::console::CONSOLE;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::SigSet;
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::ffi::CString;

/// The children's PATH.
pub const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// argv for `program` followed by `args`; `None` if any holds a NUL byte.
pub fn argv(program: &str, args: &[String]) -> Option<Vec<CString>> {
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(|a| CString::new(a).ok())
        .collect()
}

/// Starts `program` with `args`, output on the console; returns its pid.
pub fn spawn(program: &str, args: &[String]) -> Result<Pid, String> {
    spawn_to(program, args, CONSOLE)
}

/// Starts `program` with `args`, stdout and stderr on `output`.
fn spawn_to(program: &str, args: &[String], output: &str) -> Result<Pid, String> {
    let argv = argv(program, args).ok_or("argument with a NUL byte")?;
    let env = [
        CString::new(format!("PATH={PATH}")).map_err(|e| e.to_string())?,
        // routerd writes it once it is ready: what makes a trial slot the default.
        CString::new(format!("ROUTERD_READY_FILE={}", crate::upgrade::READY_FILE)).map_err(|e| e.to_string())?,
        // routerd's console lines then carry the boot timeline's clock too.
        CString::new("ROUTERD_BOOT_CLOCK=1").map_err(|e| e.to_string())?,
    ];
    let attr = attributes().map_err(|e| format!("posix_spawnattr: {}", e.desc()))?;
    let actions = file_actions(output).map_err(|e| format!("posix_spawn_file_actions: {}", e.desc()))?;
    posix_spawn(program, &actions, &attr, &argv, &env).map_err(|e| e.desc().to_string())
}

fn attributes() -> Result<PosixSpawnAttr, Errno> {
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_sigmask(&SigSet::empty())?;
    // Everything back to SIG_DFL (SIGPIPE is ignored by Rust's runtime).
    attr.set_sigdefault(&SigSet::all())?;
    attr.set_pgroup(Pid::from_raw(0))?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF
            | PosixSpawnFlags::POSIX_SPAWN_SETPGROUP,
    )?;
    Ok(attr)
}

fn file_actions(output: &str) -> Result<PosixSpawnFileActions, Errno> {
    let mut fa = PosixSpawnFileActions::init()?;
    fa.add_open(0, "/dev/null", OFlag::O_RDONLY, Mode::empty())?;
    fa.add_open(1, output, OFlag::O_WRONLY | OFlag::O_NOCTTY, Mode::empty())?;
    fa.add_dup2(1, 2)?;
    Ok(fa)
}

/// Runs `program` to its end (blocking), output on the console, and
/// returns how it ended.
pub fn run(program: &str, args: &[String]) -> Result<WaitStatus, String> {
    wait(spawn(program, args)?)
}

fn wait(pid: Pid) -> Result<WaitStatus, String> {
    loop {
        match waitpid(pid, None) {
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Ok(s),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(format!("waitpid: {}", e.desc())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn argv_puts_the_program_first() {
        let a = argv("/usr/sbin/routerd", &["run".into(), "--config".into()]);
        let a: Vec<String> = a
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.into_string().unwrap_or_default())
            .collect();
        assert_eq!(a, vec!["/usr/sbin/routerd", "run", "--config"]);
        assert!(argv("/bin/x", &["a\0b".into()]).is_none());
    }

    /// A real child: its signal mask must be empty and no standard signal
    /// ignored, although the parent blocks SIGUSR1 and (as Rust programs
    /// do) ignores SIGPIPE. grep reads its own /proc status (a shell would
    /// show the mask it sets while forking). glibc's real-time signals 32
    /// and 33 do not count.
    #[test]
    fn child_starts_with_clean_signals() {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGUSR1);
        let old = mask.thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK);
        let check = |pattern: &str| {
            let args = ["-q".to_string(), pattern.to_string(), "/proc/self/status".to_string()];
            spawn_to("/bin/grep", &args, "/dev/null").and_then(wait)
        };
        let blocked = check("^SigBlk:[[:space:]]*0*$");
        let ignored = check("^SigIgn:[[:space:]]*[0-9a-f]*[08]0000000$");
        if let Ok(old) = old {
            let _ = old.thread_set_mask();
        }
        for (what, status) in [("blocked", blocked), ("ignored", ignored)] {
            match status {
                Ok(WaitStatus::Exited(_, code)) => assert_eq!(code, 0, "child has signals {what}"),
                other => panic!("running /bin/grep: {other:?}"),
            }
        }
    }

    #[test]
    fn spawn_failure_is_an_error() {
        assert!(spawn_to("/nonexistent/routerd", &[], "/dev/null").is_err());
    }
}
