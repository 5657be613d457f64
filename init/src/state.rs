//! The state partition: the GPT partition named `routerstate` on the boot
//! disk. Made into ext4 (label `ROUTERSTATE`) on first boot when it holds no
//! ext superblock, then mounted at `/state`.

use crate::console::say;
use crate::disks::{self, BlockDev};
use config::image::{STATE_MOUNT, STATE_PARTITION};
use nix::mount::MsFlags;
use nix::sys::wait::WaitStatus;
use std::path::{Path, PathBuf};

pub const FS_LABEL: &str = "ROUTERSTATE";
const MKE2FS: &str = "/usr/sbin/mke2fs";
const E2FSCK: &str = "/usr/sbin/e2fsck";

/// Where the ext2/3/4 superblock's magic number lies, and its value.
const EXT_MAGIC_OFFSET: usize = 1024 + 56;
const EXT_MAGIC: u16 = 0xEF53;

/// The devices among `devs` whose uevent says `PARTNAME=routerstate`, in order.
pub fn state_partitions(devs: &[BlockDev]) -> Vec<&BlockDev> {
    devs.iter()
        .filter(|d| disks::uevent_value(&d.uevent, "PARTNAME") == Some(STATE_PARTITION))
        .collect()
}

/// Whether the first bytes of a device (at least 1024 + 58) hold an ext
/// superblock.
pub fn has_ext_superblock(head: &[u8]) -> bool {
    match head.get(EXT_MAGIC_OFFSET..EXT_MAGIC_OFFSET + 2) {
        Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]) == EXT_MAGIC,
        _ => false,
    }
}

/// The state partition's device node, if the kernel knows one yet. A release disk
/// attached for an upgrade (a fresh image) has a blank state partition too: the one
/// with a filesystem is the router's own; when none has one yet, the first by name.
pub fn find() -> Option<PathBuf> {
    let devs = disks::block_devices();
    // A read-only device (a release disk attached read-only) cannot be the router's.
    let named: Vec<&BlockDev> = state_partitions(&devs)
        .into_iter()
        .filter(|d| {
            std::fs::read_to_string(Path::new("/sys/class/block").join(&d.name).join("ro"))
                .map_or(true, |ro| ro.trim() != "1")
        })
        .collect();
    let formatted = named.iter().find(|d| {
        disks::read_head(&d.node(), 2048)
            .map(|h| has_ext_superblock(&h))
            .unwrap_or(false)
    });
    formatted.or(named.first()).map(|d| d.node())
}

/// Makes the filesystem if the partition has none, then mounts it at
/// [`STATE_MOUNT`].
pub fn prepare_and_mount(node: &Path) -> Result<(), String> {
    crate::timeline::mark("state partition found");
    let head = disks::read_head(node, 2048).map_err(|e| format!("read {}: {e}", node.display()))?;
    if !has_ext_superblock(&head) {
        say(&format!(
            "init: state partition {} has no filesystem: making ext4 ({FS_LABEL})",
            node.display()
        ));
        make_fs(node)?;
        crate::timeline::mark("state filesystem made (mke2fs)");
    } else {
        check_fs(node);
        crate::timeline::mark("state filesystem checked (e2fsck)");
    }
    crate::mounts::mount_device(
        node,
        STATE_MOUNT,
        "ext4",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME,
    )
}

/// What e2fsck's exit status says, in words (its bits: 1 fixed, 2 fixed and wants a
/// reboot, 4 left uncorrected, 8 and up: it could not run).
pub fn fsck_verdict(code: i32) -> Option<&'static str> {
    match code {
        0 => None,
        1..=3 => Some("errors found and fixed"),
        4..=7 => Some("errors left uncorrected"),
        _ => Some("the check could not run"),
    }
}

/// Checks the filesystem before it is mounted (`e2fsck -p`, the boot-time mode that
/// fixes what is safe to fix: a journal left by a power cut is replayed here). Whatever
/// it says, the mount is still tried: a partition that will not mount only means the
/// router runs without its state.
fn check_fs(node: &Path) {
    let args = vec!["-p".to_string(), node.display().to_string()];
    match crate::spawn::run(E2FSCK, &args) {
        Ok(WaitStatus::Exited(_, code)) => {
            if let Some(verdict) = fsck_verdict(code) {
                say(&format!(
                    "init: state partition {}: e2fsck: {verdict} (exit {code})",
                    node.display()
                ));
            }
        }
        Ok(status) => say(&format!(
            "init: state partition {}: e2fsck ended: {status:?}",
            node.display()
        )),
        Err(e) => say(&format!("init: cannot run {E2FSCK}: {e}")),
    }
}

fn make_fs(node: &Path) -> Result<(), String> {
    // -F: the partition is ours by its GPT name; never stop at a question
    // (stdin is /dev/null, which mke2fs would take as "no").
    // -U and hash_seed: mke2fs would take its UUIDs from libuuid, which early in a
    // boot (the kernel's random pool not ready yet, as under TCG) retries getrandom
    // for up to a second each: seconds of the first boot.
    // -E: no discard and no zeroing of the journal (nor of the inode tables: the
    // kernel does that later, in the background): the blank partition the image
    // ships is zeros already; a journal over old data is safe with its checksums
    // (metadata_csum, the default), which no stale block matches.
    let uuid = random_uuid();
    let extended = format!(
        "nodiscard,lazy_itable_init=1,lazy_journal_init=1,hash_seed={}",
        random_uuid()
    );
    let args: Vec<String> = ["-t", "ext4", "-L", FS_LABEL, "-q", "-F", "-U", &uuid, "-E", &extended]
        .iter()
        .map(|a| a.to_string())
        .chain(std::iter::once(node.display().to_string()))
        .collect();
    match crate::spawn::run(MKE2FS, &args) {
        Ok(WaitStatus::Exited(_, 0)) => Ok(()),
        Ok(status) => Err(format!("{MKE2FS} on {} failed: {status:?}", node.display())),
        Err(e) => Err(format!("run {MKE2FS}: {e}")),
    }
}

/// A random (version 4) UUID. It needs to be unique, not secret: the bytes come from
/// std's hash keys, which never wait for the kernel's random pool (GRND_INSECURE).
pub fn random_uuid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut b = [0u8; 16];
    for (i, half) in b.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str, uevent: &str) -> BlockDev {
        BlockDev {
            name: name.into(),
            uevent: uevent.into(),
        }
    }

    #[test]
    fn finds_the_partition_by_gpt_name() {
        let devs = vec![
            dev("sda", "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n"),
            dev(
                "sda1",
                "MAJOR=8\nMINOR=1\nDEVNAME=sda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=EFI System\n",
            ),
            dev(
                "sda2",
                "MAJOR=8\nMINOR=2\nDEVNAME=sda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=routerstate\n",
            ),
        ];
        let found = state_partitions(&devs).first().map(|d| d.node());
        assert_eq!(found, Some(PathBuf::from("/dev/sda2")));
    }

    #[test]
    fn no_partition_without_the_name() {
        let devs = vec![
            dev("vda", "DEVNAME=vda\nDEVTYPE=disk\n"),
            dev("vda1", "DEVNAME=vda1\nDEVTYPE=partition\nPARTNAME=routerstate2\n"),
        ];
        assert!(state_partitions(&devs).is_empty());
        assert!(state_partitions(&[]).is_empty());
    }

    #[test]
    fn random_uuids_are_version_4_and_differ() {
        let a = random_uuid();
        let b = random_uuid();
        assert_ne!(a, b);
        for u in [&a, &b] {
            let parts: Vec<&str> = u.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12],
                "{u}"
            );
            assert!(u.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()), "{u}");
            assert!(parts[2].starts_with('4'), "{u}");
            assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'), "{u}");
        }
    }

    #[test]
    fn fsck_exit_codes_in_words() {
        assert_eq!(fsck_verdict(0), None);
        assert_eq!(fsck_verdict(1), Some("errors found and fixed"));
        assert_eq!(fsck_verdict(4), Some("errors left uncorrected"));
        assert_eq!(fsck_verdict(8), Some("the check could not run"));
    }

    #[test]
    fn ext_magic() {
        let mut head = vec![0u8; 2048];
        assert!(!has_ext_superblock(&head));
        head[1024 + 56] = 0x53;
        head[1024 + 57] = 0xEF;
        assert!(has_ext_superblock(&head));
        assert!(!has_ext_superblock(&head[..1024 + 57]));
        head[1024 + 57] = 0xFE;
        assert!(!has_ext_superblock(&head));
        assert!(!has_ext_superblock(&[]));
    }
}
