//! Loads the kernel modules listed in `/etc/router/modules` (paths relative
//! to `/lib/modules/<uname -r>/`, dependencies first) with `finit_module(2)`.
//! A module already loaded or built in is fine; any other failure is logged
//! and the next module is tried.

use crate::console::say;
use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const LIST: &str = "/etc/router/modules";
const MODULES_ROOT: &str = "/lib/modules";

/// The module paths in a list file, in order: one per line, surrounding
/// blanks trimmed, empty lines and `#` comments skipped.
pub fn parse_list(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The file for a listed module: `relative` under `/lib/modules/<release>/`
/// (a leading `/` in the list does not escape that directory).
pub fn module_path(release: &str, relative: &str) -> PathBuf {
    Path::new(MODULES_ROOT)
        .join(release)
        .join(relative.trim_start_matches('/'))
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub loaded: usize,
    pub already: usize,
    pub failed: usize,
}

enum Outcome {
    Loaded,
    Already,
    /// The module has nothing to drive on this machine (efivarfs under a BIOS).
    NoDevice,
}

/// Loads every module of [`LIST`]; logs each failure and a summary line.
pub fn load_listed() -> Summary {
    let mut summary = Summary::default();
    let text = match std::fs::read_to_string(LIST) {
        Ok(t) => t,
        Err(e) => {
            say(&format!("init: no module list {LIST} ({e}): loading no modules"));
            return summary;
        }
    };
    let release = match nix::sys::utsname::uname() {
        Ok(u) => u.release().to_string_lossy().into_owned(),
        Err(e) => {
            say(&format!("init: uname: {}: loading no modules", e.desc()));
            return summary;
        }
    };
    // How long each load took: the slowest few go on the summary line (the boot
    // timeline says how long all of them took).
    let mut took: Vec<(Duration, &str)> = Vec::new();
    for relative in parse_list(&text) {
        let path = module_path(&release, relative);
        let started = Instant::now();
        let outcome = load(&path);
        took.push((started.elapsed(), relative));
        match outcome {
            Ok(Outcome::Loaded) => summary.loaded += 1,
            Ok(Outcome::Already) => summary.already += 1,
            Ok(Outcome::NoDevice) => {}
            Err(e) => {
                summary.failed += 1;
                say(&format!("init: module {}: {e}", path.display()));
            }
        }
    }
    say(&format!(
        "init: modules: {} loaded, {} already present, {} failed; slowest: {}",
        summary.loaded,
        summary.already,
        summary.failed,
        slowest(took, 3)
    ));
    summary
}

/// The `n` slowest loads, slowest first: `ext4 0.412 s, libata 0.201 s`.
pub fn slowest(mut took: Vec<(Duration, &str)>, n: usize) -> String {
    took.sort_by_key(|(d, _)| std::cmp::Reverse(*d));
    took.iter()
        .take(n)
        .map(|(d, relative)| {
            let name = Path::new(relative)
                .file_name()
                .and_then(|f| f.to_str())
                .map_or(*relative, |f| f.trim_end_matches(".ko"));
            format!("{name} {:.3} s", d.as_secs_f64())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn load(path: &Path) -> Result<Outcome, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("open: {e}"))?;
    let no_params = CString::default();
    match finit_module(&file, &no_params, ModuleInitFlags::empty()) {
        Ok(()) => Ok(Outcome::Loaded),
        Err(Errno::EEXIST) => Ok(Outcome::Already),
        Err(Errno::ENODEV) => Ok(Outcome::NoDevice),
        Err(e) => Err(format!("finit_module: {}", e.desc())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_keeps_order_and_skips_blanks_and_comments() {
        let text = "# virtio\nkernel/drivers/virtio/virtio.ko\n\n  kernel/drivers/virtio/virtio_ring.ko  \n#x\r\nkernel/fs/fat/vfat.ko\r\n";
        assert_eq!(
            parse_list(text),
            vec![
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/fs/fat/vfat.ko",
            ]
        );
    }

    #[test]
    fn the_slowest_loads_by_name_slowest_first() {
        let took = vec![
            (Duration::from_millis(20), "kernel/fs/fat/fat.ko"),
            (Duration::from_millis(412), "kernel/fs/ext4/ext4.ko"),
            (Duration::from_millis(201), "kernel/drivers/ata/libata.ko"),
        ];
        assert_eq!(slowest(took.clone(), 2), "ext4 0.412 s, libata 0.201 s");
        assert_eq!(slowest(took, 5), "ext4 0.412 s, libata 0.201 s, fat 0.020 s");
        assert_eq!(slowest(Vec::new(), 3), "");
    }

    #[test]
    fn empty_list_is_empty() {
        assert!(parse_list("").is_empty());
        assert!(parse_list("\n# nothing\n").is_empty());
    }

    #[test]
    fn paths_are_under_the_release_directory() {
        assert_eq!(
            module_path("6.1.0-28-amd64", "kernel/fs/fat/fat.ko"),
            PathBuf::from("/lib/modules/6.1.0-28-amd64/kernel/fs/fat/fat.ko")
        );
        assert_eq!(
            module_path("6.1.0-28-amd64", "/kernel/fs/fat/fat.ko"),
            PathBuf::from("/lib/modules/6.1.0-28-amd64/kernel/fs/fat/fat.ko")
        );
    }
}
