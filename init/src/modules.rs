//! Loads the kernel modules listed in `/etc/router/modules` (paths relative
//! to `/lib/modules/<uname -r>/`, dependencies first) with `finit_module(2)`.
//! A module already loaded or built in is fine; any other failure is logged
//! and the next module is tried.
//!
//! The other modules the image carries load when asked for (each loaded at boot
//! costs time under emulation): `/etc/router/modules.alias` maps the names they
//! answer to (`<pattern> <module>`) and `/etc/router/modules.dep` lists what to load
//! for each (`<module> <path>...`, the module last). At boot, the PCI drivers whose
//! patterns match a device of this machine; later, what the kernel requests (a VLAN
//! or WireGuard link, the efivarfs mount) through its modprobe, which is then init in
//! its [`modprobe`] mode.

use crate::console::say;
use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const LIST: &str = "/etc/router/modules";
pub const ALIASES: &str = "/etc/router/modules.alias";
pub const DEPS: &str = "/etc/router/modules.dep";
/// init's modprobe mode (a link to /init), for the kernel's requests once the boot
/// modules are in: before that, the kernel's requests for crypto algorithms it
/// probes at boot (none of them in the image) would each start it for nothing.
pub const MODPROBE: &str = "/usr/lib/router/modprobe";
const KERNEL_MODPROBE: &str = "/proc/sys/kernel/modprobe";
/// One `modalias` file per PCI device: what its drivers' `alias=` patterns match.
const PCI_DEVICES: &str = "/sys/bus/pci/devices";
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

/// Loads every module of [`LIST`], then the PCI drivers for this machine's devices;
/// logs each failure and a summary line.
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
        load_counted(&release, relative, &mut summary, &mut took);
    }
    // Without the tables (an older image) only the list above loads.
    let aliases = std::fs::read_to_string(ALIASES).unwrap_or_default();
    let deps = std::fs::read_to_string(DEPS).unwrap_or_default();
    let drivers = drivers_for(&parse_aliases(&aliases), &pci_modaliases());
    let deps = parse_deps(&deps);
    for driver in &drivers {
        for relative in paths_of(&deps, driver) {
            load_counted(&release, relative, &mut summary, &mut took);
        }
    }
    say(&format!(
        "init: modules: {} loaded, {} already present, {} failed; drivers for this machine's devices: {}; slowest: {}",
        summary.loaded,
        summary.already,
        summary.failed,
        if drivers.is_empty() {
            "none".to_string()
        } else {
            drivers.join(" ")
        },
        slowest(took, 3)
    ));
    summary
}

/// Loads one module, counted in `summary` and timed in `took`; a failure is logged.
fn load_counted<'a>(release: &str, relative: &'a str, summary: &mut Summary, took: &mut Vec<(Duration, &'a str)>) {
    let path = module_path(release, relative);
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

/// The modalias of each PCI device, sorted.
fn pci_modaliases() -> Vec<String> {
    let mut devices: Vec<String> = std::fs::read_dir(PCI_DEVICES)
        .map(|dir| {
            dir.flatten()
                .filter_map(|d| std::fs::read_to_string(d.path().join("modalias")).ok())
                .map(|m| m.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    devices.sort();
    devices
}

/// The modules whose device patterns match one of `devices` (modaliases), each once.
pub fn drivers_for<'a>(aliases: &[(&str, &'a str)], devices: &[String]) -> Vec<&'a str> {
    let mut drivers: Vec<&'a str> = Vec::new();
    for device in devices {
        for name in matching(aliases, device) {
            if !drivers.contains(&name) {
                drivers.push(name);
            }
        }
    }
    drivers
}

/// What modules.dep says to load for `module`, in order (nothing if it is not there).
pub fn paths_of<'a>(deps: &[(&str, Vec<&'a str>)], module: &str) -> Vec<&'a str> {
    deps.iter()
        .find(|(m, _)| *m == module)
        .map(|(_, paths)| paths.clone())
        .unwrap_or_default()
}

/// Points the kernel's request_module() at [`MODPROBE`].
pub fn enable_on_request() {
    if let Err(e) = std::fs::write(KERNEL_MODPROBE, MODPROBE) {
        say(&format!("init: {KERNEL_MODPROBE}: {e}: modules load at boot only"));
    }
}

/// `modprobe -q -- NAME` as the kernel's request_module() runs it: loads the
/// module NAME names (a module or an alias of modules.alias) with its dependencies.
/// Exit status 0 when it loaded (or already was), 1 when no module answers to NAME
/// or one failed to load.
pub fn modprobe(args: &[String]) -> i32 {
    let Some(wanted) = args.iter().skip(1).rfind(|a| !a.starts_with('-')) else {
        return 1;
    };
    let (Ok(aliases), Ok(deps)) = (std::fs::read_to_string(ALIASES), std::fs::read_to_string(DEPS)) else {
        return 1;
    };
    let Ok(release) = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()) else {
        return 1;
    };
    let aliases = parse_aliases(&aliases);
    let deps = parse_deps(&deps);
    let names = matching(&aliases, wanted);
    if names.is_empty() {
        return 1;
    }
    let mut status = 0;
    for name in names {
        let mut loaded = true;
        for relative in paths_of(&deps, name) {
            let path = module_path(&release, relative);
            if let Err(e) = load(&path) {
                say(&format!("init: modprobe {wanted}: module {}: {e}", path.display()));
                loaded = false;
            }
        }
        if loaded {
            say(&format!("init: modprobe {wanted}: {name} loaded"));
        } else {
            status = 1;
        }
    }
    status
}

/// modules.alias: `(pattern, module)` per line; blank lines and `#` comments skipped.
pub fn parse_aliases(text: &str) -> Vec<(&str, &str)> {
    parse_list(text)
        .into_iter()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?, words.next()?))
        })
        .collect()
}

/// modules.dep: `(module, paths in load order)` per line.
pub fn parse_deps(text: &str) -> Vec<(&str, Vec<&str>)> {
    parse_list(text)
        .into_iter()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?, words.collect()))
        })
        .collect()
}

/// The modules whose patterns match `name` (a device's modalias or a requested
/// alias), each once, in the table's order. A module's own name matches with `-`
/// and `_` alike, as modprobe's do.
pub fn matching<'a>(aliases: &[(&str, &'a str)], name: &str) -> Vec<&'a str> {
    let mut found: Vec<&'a str> = Vec::new();
    for (pattern, module) in aliases {
        let hit = glob(pattern, name) || (pattern == module && *module == name.replace('-', "_"));
        if hit && !found.contains(module) {
            found.push(module);
        }
    }
    found
}

/// Shell-style match of `text` against `pattern` with `*` (any run) and `?` (any one
/// character): what the kernel's module alias patterns use.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is tried from.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || Some(c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..).is_some_and(|rest| rest.iter().all(|c| *c == '*'))
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

    const ALIAS_TABLE: &str = "e1000 e1000\npci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n8021q 8021q\nrtnl-link-vlan 8021q\nahci ahci\npci:v*d*sv*sd*bc01sc06i01* ahci\n";

    #[test]
    fn globs_as_module_aliases_use_them() {
        assert!(glob(
            "pci:v00001AF4d*sv*sd*bc*sc*i*",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
        assert!(!glob(
            "pci:v00001AF4d*sv*sd*bc*sc*i*",
            "pci:v00008086d00007010sv00000000sd00000000bc01sc01i80"
        ));
        assert!(glob(
            "pci:v*d*sv*sd*bc01sc06i01*",
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"
        ));
        assert!(glob("a?c", "abc") && !glob("a?c", "ac"));
        assert!(glob("rtnl-link-vlan", "rtnl-link-vlan") && !glob("rtnl-link-vlan", "rtnl-link-vlan2"));
        assert!(glob("*", "") && glob("a**", "a") && !glob("", "a"));
    }

    #[test]
    fn a_machine_gets_the_drivers_of_its_devices_only() {
        let aliases = parse_aliases(ALIAS_TABLE);
        let devices = vec![
            // i440fx host bridge, virtio NIC, Intel e1000 NIC
            "pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00".to_string(),
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".to_string(),
            "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00".to_string(),
        ];
        assert_eq!(drivers_for(&aliases, &devices), ["e1000"]);
        let q35_sata = vec!["pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01".to_string()];
        assert_eq!(drivers_for(&aliases, &q35_sata), ["ahci"]);
        assert!(drivers_for(&aliases, &[]).is_empty());
    }

    #[test]
    fn requests_find_modules_by_alias_or_name() {
        let aliases = parse_aliases(ALIAS_TABLE);
        assert_eq!(matching(&aliases, "rtnl-link-vlan"), ["8021q"]);
        assert_eq!(matching(&aliases, "8021q"), ["8021q"]);
        assert!(matching(&aliases, "nft-expr-2-foo").is_empty());
        let aliases = parse_aliases("nls_iso8859_1 nls_iso8859_1\n");
        assert_eq!(matching(&aliases, "nls-iso8859-1"), ["nls_iso8859_1"]);
    }

    #[test]
    fn dependencies_of_a_module_in_load_order() {
        let deps = parse_deps("# module, then what to load\n8021q kernel/net/802/garp.ko kernel/net/8021q/8021q.ko\nefivarfs kernel/fs/efivarfs/efivarfs.ko\n");
        assert_eq!(
            paths_of(&deps, "8021q"),
            ["kernel/net/802/garp.ko", "kernel/net/8021q/8021q.ko"]
        );
        assert_eq!(paths_of(&deps, "efivarfs"), ["kernel/fs/efivarfs/efivarfs.ko"]);
        assert!(paths_of(&deps, "wireguard").is_empty());
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
