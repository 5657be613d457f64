//! The API filesystems PID 1 sets up, as one table and one loop, plus the
//! mount and unmount helpers the config disk, the state partition and the
//! shutdown sequence use.

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use std::path::Path;

/// One row of the mount table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mount {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);

/// Mounted in order at boot (a parent before its children).
pub const EARLY: &[Mount] = &[
    Mount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    Mount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    Mount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    Mount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("gid=5,mode=0620,ptmxmode=0666"),
    },
    Mount {
        source: "tmpfs",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
    Mount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
    },
    Mount {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
];

/// Symlinks devtmpfs does not make but programs expect (`nft -f -` reads
/// `/dev/stdin`), made after the table: (link, target).
pub const DEV_LINKS: &[(&str, &str)] = &[
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

/// Mounts every row of `table`; a failure is returned as a message per row
/// (the console may not be open yet), never fatal.
pub fn mount_all(table: &[Mount]) -> Vec<String> {
    let mut errors = Vec::new();
    for m in table {
        if let Err(e) = mount_one(m) {
            errors.push(format!("init: mount {} on {}: {e}", m.fstype, m.target));
        }
    }
    for (link, target) in DEV_LINKS {
        if Path::new(link).symlink_metadata().is_err() {
            if let Err(e) = std::os::unix::fs::symlink(target, link) {
                errors.push(format!("init: symlink {link} -> {target}: {e}"));
            }
        }
    }
    errors
}

fn mount_one(m: &Mount) -> Result<(), String> {
    std::fs::create_dir_all(m.target).map_err(|e| format!("mkdir: {e}"))?;
    match nix::mount::mount(Some(m.source), m.target, Some(m.fstype), m.flags, m.data) {
        Ok(()) => Ok(()),
        // Already mounted (the kernel's devtmpfs automount, or a second call).
        Err(Errno::EBUSY) => Ok(()),
        Err(e) => Err(e.desc().to_string()),
    }
}

/// Mounts the block device `dev` on `target` (made if missing).
pub fn mount_device(dev: &Path, target: &str, fstype: &str, flags: MsFlags) -> Result<(), String> {
    std::fs::create_dir_all(target).map_err(|e| format!("mkdir {target}: {e}"))?;
    nix::mount::mount(Some(dev), target, Some(fstype), flags, None::<&str>)
        .map_err(|e| format!("mount {} ({fstype}) on {target}: {}", dev.display(), e.desc()))
}

/// Unmounts `target` for shutdown; if it is busy, remounts it read-only (so
/// its data is on disk) and detaches it. Not being mounted is not an error.
pub fn unmount(target: &str) -> Result<(), String> {
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(first) => {
            let ro = nix::mount::mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            );
            let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
            match ro {
                Ok(()) => Err(format!(
                    "unmount {target}: {}; remounted read-only and detached",
                    first.desc()
                )),
                Err(e) => Err(format!(
                    "unmount {target}: {}; remount read-only: {}",
                    first.desc(),
                    e.desc()
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_mounts_parents_before_children() {
        for (i, m) in EARLY.iter().enumerate() {
            for earlier in &EARLY[..i] {
                assert!(
                    !earlier.target.starts_with(&format!("{}/", m.target)),
                    "{} is mounted before its parent {}",
                    earlier.target,
                    m.target
                );
            }
        }
    }

    #[test]
    fn table_has_the_api_filesystems() {
        let targets: Vec<&str> = EARLY.iter().map(|m| m.target).collect();
        for t in ["/proc", "/sys", "/dev", "/dev/pts", "/run", "/tmp"] {
            assert!(targets.contains(&t), "{t} missing");
        }
    }
}
