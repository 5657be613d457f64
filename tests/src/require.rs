//! What the lab and QEMU tests need from the machine, checked at each test's start so
//! that `cargo test` as a normal user skips them with one line saying what to run,
//! instead of failing deep inside `ip netns add`:
//!
//! ```text
//! #[test]
//! fn some_lab_test() {
//!     if !testkit::require_root() {
//!         return;
//!     }
//!     ...
//! }
//! ```
//!
//! Under `tests/run` (which sets [`NO_SKIP_ENV`]) nothing may be skipped silently: a
//! missing requirement fails the test with the same line.

use std::io::Write;
use std::panic::Location;
use std::sync::Once;

/// Set (to anything but empty or `0`) by `tests/run`: a test that cannot run here
/// fails instead of skipping.
pub const NO_SKIP_ENV: &str = "ROUTER_TESTS_NO_SKIP";

/// True when the test may go on. False (after one line on stderr, once per test
/// binary) when not running as root; panics instead under [`NO_SKIP_ENV`].
#[track_caller]
#[must_use]
pub fn require_root() -> bool {
    static SAID: Once = Once::new();
    require(
        nix::unistd::geteuid().is_root(),
        "needs root for network namespaces: run `sudo bash tests/run` (or as root: `bash tests/run`)",
        no_skip(),
        &SAID,
        Location::caller(),
        &mut std::io::stderr(),
    )
}

/// True when the appliance image the QEMU tests boot is there (`$ROUTER_IMAGE`, else
/// `out/router.img`). Otherwise like [`require_root`].
#[track_caller]
#[must_use]
pub fn require_image() -> bool {
    static SAID: Once = Once::new();
    let image = crate::vm::image_file();
    require(
        image.exists(),
        &format!(
            "needs the appliance image {}: build it with `bash qemu/build` (tests/run does) or set ROUTER_IMAGE",
            image.display()
        ),
        no_skip(),
        &SAID,
        Location::caller(),
        &mut std::io::stderr(),
    )
}

fn no_skip() -> bool {
    std::env::var_os(NO_SKIP_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The decision, apart from the machine: `met` goes on; otherwise skip (saying `need`
/// on `out` once per `said`) or, with `no_skip`, fail. `out` is stderr itself, not
/// eprintln!: libtest captures print!/eprint! of passing tests, and this line is for
/// whoever ran `cargo test`.
fn require(met: bool, need: &str, no_skip: bool, said: &Once, test: &Location, out: &mut dyn Write) -> bool {
    if met {
        return true;
    }
    if no_skip {
        panic!("{}: {need} ({NO_SKIP_ENV} is set: no test may be skipped)", test.file());
    }
    said.call_once(|| {
        let _ = writeln!(out, "{}: skipped: {need}", test.file());
    });
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_met_requirement_goes_on_silently_even_under_no_skip() {
        let mut out = Vec::new();
        assert!(require(
            true,
            "needs x",
            true,
            &Once::new(),
            Location::caller(),
            &mut out
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn an_unmet_requirement_skips_saying_so_once_naming_the_test_file() {
        let (said, mut out) = (Once::new(), Vec::new());
        assert!(!require(false, "needs x", false, &said, Location::caller(), &mut out));
        assert!(!require(false, "needs x", false, &said, Location::caller(), &mut out));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "tests/src/require.rs: skipped: needs x\n"
        );
    }

    #[test]
    #[should_panic(expected = "tests/src/require.rs: needs x (ROUTER_TESTS_NO_SKIP is set")]
    fn an_unmet_requirement_fails_under_no_skip() {
        let _ = require(
            false,
            "needs x",
            true,
            &Once::new(),
            Location::caller(),
            &mut Vec::new(),
        );
    }
}
