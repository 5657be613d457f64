//! The boot timeline on the console: `init: timeline 3.214 s <step>` for each step
//! from init's first line to routerd's start, in seconds since the kernel started
//! (CLOCK_BOOTTIME, the clock of the kernel's own timestamps), so a slow boot shows
//! where its time went. routerd's lines carry the same clock (`ROUTERD_BOOT_CLOCK`).

use crate::console::say;

/// Seconds since the kernel started; None if the clock cannot be read.
pub fn since_boot() -> Option<f64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    Some(t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

pub fn line(seconds: f64, step: &str) -> String {
    format!("init: timeline {seconds:.3} s {step}")
}

/// Prints one step of the timeline.
pub fn mark(step: &str) {
    if let Some(s) = since_boot() {
        say(&line(s, step));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_with_milliseconds() {
        assert_eq!(line(3.2144, "modules loaded"), "init: timeline 3.214 s modules loaded");
    }

    #[test]
    fn the_clock_runs() {
        let a = since_boot().expect("CLOCK_BOOTTIME");
        let b = since_boot().expect("CLOCK_BOOTTIME");
        assert!(a > 0.0 && b >= a);
    }
}
