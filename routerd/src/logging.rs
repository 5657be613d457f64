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
    registry.with(console).init();
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
