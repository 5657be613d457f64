//! Logs go to journald when routerd's stderr is the journal (a systemd service:
//! `$JOURNAL_STREAM` names it), as structured entries; everywhere else to stderr: the
//! appliance's console, a test's log file, a terminal.

use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Whether stderr is the journal stream systemd connected (device:inode in
/// `$JOURNAL_STREAM` match stderr's). A journald socket merely existing is not enough:
/// routerd started by hand or by a test on such a host must still log to its stderr.
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| stream == format!("{}:{}", m.dev(), m.ino()))
}

pub fn init() {
    let filter = EnvFilter::try_from_env("ROUTERD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if stderr_is_journal() {
        if let Ok(journald) = tracing_journald::layer() {
            registry.with(journald.with_syslog_identifier("routerd".into())).init();
            return;
        }
    }
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    // Started by the image's init: each line also says when, on the clock of init's
    // boot timeline, so the console shows where a boot spends its time up to ready.
    if std::env::var_os("ROUTERD_BOOT_CLOCK").is_some() {
        registry.with(console.with_timer(BootClock)).init();
    } else {
        registry.with(console).init();
    }
}

/// The wall clock as usual, then the seconds since the kernel started (CLOCK_BOOTTIME).
struct BootClock;

fn since_boot() -> Option<f64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    Some(t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

impl tracing_subscriber::fmt::time::FormatTime for BootClock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        tracing_subscriber::fmt::time::SystemTime.format_time(w)?;
        match since_boot() {
            Some(s) => write!(w, " boot+{s:.3}s"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_process_is_not_a_journal_stream() {
        // Under cargo test stderr is a pipe or terminal, whatever JOURNAL_STREAM says
        // about some other stream.
        std::env::set_var("JOURNAL_STREAM", "0:0");
        assert!(!stderr_is_journal());
    }
}
