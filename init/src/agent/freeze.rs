//! Freezing filesystems for a consistent backup (`guest-fsfreeze-*`).
//!
//! The root filesystem lives in RAM and is not in any backup; `/config` and a
//! cloud-init drive are read-only. What a backup of the VM's disks can catch
//! half-written is a writable filesystem on a block device: on this appliance the
//! state partition (`/state`: the last good config, the DHCP leases). Those are
//! frozen with FIFREEZE (writes wait until FITHAW) and counted, as qemu-ga does.
//!
//! FIFREEZE and FITHAW are ioctls that nix does not wrap; the two lines of
//! `unsafe` are those calls on a descriptor opened right there.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;

use nix::errno::Errno;

nix::ioctl_readwrite!(fifreeze, b'X', 119, nix::libc::c_int);
nix::ioctl_readwrite!(fithaw, b'X', 120, nix::libc::c_int);

/// One line of `/proc/self/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub target: String,
    pub fstype: String,
    pub read_only: bool,
}

/// `/proc/self/mounts` escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(rest.get(..i).unwrap_or(""));
        let code = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = rest.get(i + 4..).unwrap_or("");
            }
            None => {
                out.push('\\');
                rest = rest.get(i + 1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let (device, target, fstype, options) = (f.next()?, f.next()?, f.next()?, f.next()?);
            Some(Mount {
                device: unescape(device),
                target: unescape(target),
                fstype: fstype.to_string(),
                read_only: options.split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

/// The mountpoints a backup must see frozen: writable, on a block device.
pub fn freezable(mounts: &[Mount]) -> Vec<String> {
    let mut targets: Vec<String> = Vec::new();
    for m in mounts {
        if m.device.starts_with("/dev/") && !m.read_only && !targets.contains(&m.target) {
            targets.push(m.target.clone());
        }
    }
    targets
}

pub fn current_freezable() -> Vec<String> {
    freezable(&parse_mounts(
        &std::fs::read_to_string("/proc/self/mounts").unwrap_or_default(),
    ))
}

fn ioctl_on(target: &str, thaw: bool) -> Result<(), Errno> {
    let dir = File::open(target).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    let mut unused: nix::libc::c_int = 0;
    // SAFETY: FIFREEZE/FITHAW on a descriptor we own; the kernel ignores the argument.
    let result = unsafe {
        if thaw {
            fithaw(dir.as_raw_fd(), &mut unused)
        } else {
            fifreeze(dir.as_raw_fd(), &mut unused)
        }
    };
    result.map(|_| ())
}

pub fn freeze(target: &str) -> Result<(), String> {
    ioctl_on(target, false).map_err(|e| format!("freezing {target}: {}", e.desc()))
}

/// Thaws `target`; `Ok(false)` when it was not frozen.
pub fn thaw(target: &str) -> Result<bool, String> {
    match ioctl_on(target, true) {
        Ok(()) => Ok(true),
        Err(Errno::EINVAL) => Ok(false),
        Err(e) => Err(format!("thawing {target}: {}", e.desc())),
    }
}

/// Thaws every freezable filesystem, whoever froze it (before a shutdown syncs
/// and unmounts: a frozen filesystem would block both). Returns how many were.
pub fn thaw_all() -> usize {
    current_freezable().iter().filter(|t| thaw(t).unwrap_or(false)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "rootfs / rootfs rw 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
devtmpfs /dev devtmpfs rw,nosuid,size=245780k,nr_inodes=61445,mode=755 0 0
tmpfs /run tmpfs rw,nosuid,nodev,mode=755 0 0
/dev/sda2 /state ext4 rw,relatime 0 0
/dev/sdb /config vfat ro,nosuid,nodev,noexec,relatime,fmask=0022 0 0
/dev/sr0 /cidata iso9660 ro,nosuid,nodev,noexec,relatime,nojoliet 0 0
";

    #[test]
    fn only_the_state_partition_is_frozen_on_the_appliance() {
        assert_eq!(freezable(&parse_mounts(MOUNTS)), vec!["/state".to_string()]);
    }

    #[test]
    fn mount_fields_are_unescaped() {
        let m = parse_mounts("/dev/sdc1 /mnt/my\\040disk ext4 rw 0 0\n");
        assert_eq!(m.first().map(|m| m.target.as_str()), Some("/mnt/my disk"));
        assert_eq!(unescape("a\\134b\\x"), "a\\b\\x");
    }
}
