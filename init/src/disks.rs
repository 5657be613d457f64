//! Block devices: listing them from `/sys/class/block`, parsing their
//! `uevent`, reading the start of each, and recognising filesystem labels
//! (FAT boot-sector label, iso9660 volume identifier) with pure functions.

use config::image::{CIDATA_LABEL, CONFIG_LABEL};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

const SYS_BLOCK: &str = "/sys/class/block";

/// How many bytes of a device [`read_head`] reads: through the iso9660
/// primary volume descriptor (2048 bytes at 0x8000).
pub const HEAD_LEN: usize = ISO_PVD_OFFSET + 2048;
const ISO_PVD_OFFSET: usize = 0x8000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Vfat,
    Iso9660,
}

impl FsKind {
    /// The name mount(2) wants.
    pub fn fstype(self) -> &'static str {
        match self {
            FsKind::Vfat => "vfat",
            FsKind::Iso9660 => "iso9660",
        }
    }
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([*s.first()?, *s.get(1)?]))
}

/// Trims the space (and NUL) padding of an on-disk label; `None` if nothing
/// is left.
fn trim_label(raw: &[u8]) -> Option<String> {
    let end = raw
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map(|i| i + 1)
        .unwrap_or(0);
    let text = String::from_utf8_lossy(raw.get(..end)?).into_owned();
    if text.is_empty() {
        None
    } else {
        Some(text)
    }
}

/// The volume label in a FAT12/16/32 boot sector (`boot`: at least its first
/// 512 bytes), read from the extended BPB: offset 0x2B for FAT12/16, 0x47 for
/// FAT32, 11 bytes. `None` if this is no FAT boot sector, the extended BPB
/// has no label, or the label is the default "NO NAME".
pub fn fat_label(boot: &[u8]) -> Option<String> {
    if boot.len() < 512 {
        return None;
    }
    // The BIOS parameter block must look like one.
    let bytes_per_sector = le16(boot, 0x0B)?;
    let sectors_per_cluster = *boot.get(0x0D)?;
    let reserved = le16(boot, 0x0E)?;
    let fats = *boot.get(0x10)?;
    if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        || !sectors_per_cluster.is_power_of_two()
        || reserved == 0
        || !(1..=4).contains(&fats)
    {
        return None;
    }
    // FAT32 has 0 in the 16-bit sectors-per-FAT field; its extended BPB
    // starts at 0x40 instead of 0x24.
    let fat32 = le16(boot, 0x16)? == 0;
    let (signature_at, label_at) = if fat32 { (0x42, 0x47) } else { (0x26, 0x2B) };
    // 0x29: the extended BPB holds serial, label and type; 0x28 has no label.
    if *boot.get(signature_at)? != 0x29 {
        return None;
    }
    let label = trim_label(boot.get(label_at..label_at + 11)?)?;
    if label == "NO NAME" {
        None
    } else {
        Some(label)
    }
}

/// The volume identifier of an iso9660 primary volume descriptor (`pvd`: the
/// 2048 bytes at 0x8000): type 1, "CD001" at +1, id at +40 (32 bytes, space
/// padded).
pub fn iso9660_label(pvd: &[u8]) -> Option<String> {
    if *pvd.first()? != 1 || pvd.get(1..6)? != b"CD001" {
        return None;
    }
    trim_label(pvd.get(40..72)?)
}

/// The filesystem kind and label found in the first bytes of a device
/// (`head`: up to [`HEAD_LEN`] bytes; shorter devices are fine).
pub fn detect_label(head: &[u8]) -> Option<(FsKind, String)> {
    if let Some(label) = fat_label(head) {
        return Some((FsKind::Vfat, label));
    }
    let pvd = head.get(ISO_PVD_OFFSET..)?;
    iso9660_label(pvd).map(|label| (FsKind::Iso9660, label))
}

/// Whether an on-disk label names the config disk (FAT tools upper-case
/// labels; compare without case).
pub fn is_config_label(label: &str) -> bool {
    label.eq_ignore_ascii_case(CONFIG_LABEL)
}

/// Whether an on-disk label names a cloud-init NoCloud drive (cloud-init accepts
/// `cidata` and `CIDATA`: compare without case).
pub fn is_cidata_label(label: &str) -> bool {
    label.eq_ignore_ascii_case(CIDATA_LABEL)
}

/// The `KEY=value` pairs of a sysfs `uevent` file.
pub fn parse_uevent(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|line| line.trim_end().split_once('='))
}

/// The value of `key` in a sysfs `uevent` file.
pub fn uevent_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    parse_uevent(text).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// One entry of `/sys/class/block`.
#[derive(Debug, Clone)]
pub struct BlockDev {
    /// The sysfs name (`sda`, `sda2`, `vdb`, `sr0`).
    pub name: String,
    /// Its uevent text (`DEVNAME=`, `DEVTYPE=`, `PARTNAME=`, ...).
    pub uevent: String,
}

impl BlockDev {
    /// Its node under `/dev` (devtmpfs makes it).
    pub fn node(&self) -> PathBuf {
        let name = uevent_value(&self.uevent, "DEVNAME").unwrap_or(&self.name);
        Path::new("/dev").join(name)
    }
}

/// Devices that never hold a config disk or the state partition, and whose
/// reads can be slow or pointless.
fn ignored(name: &str) -> bool {
    ["loop", "ram", "zram", "fd", "nbd"].iter().any(|p| name.starts_with(p))
}

/// Every block device with a non-zero size, sorted by name.
pub fn block_devices() -> Vec<BlockDev> {
    let mut devs = Vec::new();
    let Ok(entries) = std::fs::read_dir(SYS_BLOCK) else {
        return devs;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if ignored(&name) {
            continue;
        }
        let dir = entry.path();
        let sectors = std::fs::read_to_string(dir.join("size"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if sectors == 0 {
            continue;
        }
        let uevent = std::fs::read_to_string(dir.join("uevent")).unwrap_or_default();
        devs.push(BlockDev { name, uevent });
    }
    devs.sort_by(|a, b| a.name.cmp(&b.name));
    devs
}

/// Reads up to `len` bytes from the start of `path` (fewer if it is smaller).
pub fn read_head(path: &Path, len: usize) -> std::io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A config disk found by label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDisk {
    pub node: PathBuf,
    pub kind: FsKind,
}

/// Which block device a node is, so that a hot-unplugged disk is noticed even when a
/// new one takes its name: the device number and the kernel's disk sequence number
/// (`diskseq`, new for every disk attached; read from the whole disk for a partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskId {
    rdev: u64,
    seq: Option<u64>,
}

impl DiskId {
    pub fn of(node: &Path) -> Option<DiskId> {
        use std::os::unix::fs::MetadataExt;
        let rdev = std::fs::metadata(node).ok()?.rdev();
        Some(DiskId {
            rdev,
            seq: disk_seq(rdev),
        })
    }

    /// Whether the same disk is still attached.
    pub fn present(&self) -> bool {
        Path::new(&sys_dev_block(self.rdev)).exists() && disk_seq(self.rdev) == self.seq
    }
}

fn sys_dev_block(rdev: u64) -> String {
    format!("/sys/dev/block/{}:{}", nix::libc::major(rdev), nix::libc::minor(rdev))
}

fn disk_seq(rdev: u64) -> Option<u64> {
    let dir = sys_dev_block(rdev);
    ["diskseq", "../diskseq"]
        .iter()
        .find_map(|f| std::fs::read_to_string(format!("{dir}/{f}")).ok())
        .and_then(|s| s.trim().parse().ok())
}

/// What one look through the block devices found: the `ROUTERCFG` config disk
/// and the cloud-init drive (`cidata`), each the first by device name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub config: Option<ConfigDisk>,
    pub cidata: Option<ConfigDisk>,
}

/// Sorts labelled devices into a [`Found`].
pub fn classify(labelled: impl IntoIterator<Item = (PathBuf, FsKind, String)>) -> Found {
    let mut found = Found::default();
    for (node, kind, label) in labelled {
        let slot = if is_config_label(&label) {
            &mut found.config
        } else if is_cidata_label(&label) {
            &mut found.cidata
        } else {
            continue;
        };
        if slot.is_none() {
            *slot = Some(ConfigDisk { node, kind });
        }
    }
    found
}

/// Looks once through every block device for the `ROUTERCFG` and `cidata` labels.
pub fn find_config_disks() -> Found {
    classify(block_devices().into_iter().filter_map(|dev| {
        let node = dev.node();
        let head = read_head(&node, HEAD_LEN).ok()?;
        let (kind, label) = detect_label(&head)?;
        Some((node, kind, label))
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A FAT12/16 boot sector as mkfs.fat / mformat write it.
    pub fn fat16_sector(label: &[u8; 11]) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        b[3..11].copy_from_slice(b"mkfs.fat");
        b[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        b[0x0D] = 4; // sectors per cluster
        b[0x0E..0x10].copy_from_slice(&1u16.to_le_bytes()); // reserved
        b[0x10] = 2; // FATs
        b[0x11..0x13].copy_from_slice(&512u16.to_le_bytes()); // root entries
        b[0x13..0x15].copy_from_slice(&2880u16.to_le_bytes());
        b[0x15] = 0xF8;
        b[0x16..0x18].copy_from_slice(&9u16.to_le_bytes()); // sectors per FAT
        b[0x26] = 0x29;
        b[0x27..0x2B].copy_from_slice(&[1, 2, 3, 4]);
        b[0x2B..0x36].copy_from_slice(label);
        b[0x36..0x3E].copy_from_slice(b"FAT12   ");
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    /// A FAT32 boot sector.
    pub fn fat32_sector(label: &[u8; 11]) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
        b[3..11].copy_from_slice(b"mkfs.fat");
        b[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        b[0x0D] = 1;
        b[0x0E..0x10].copy_from_slice(&32u16.to_le_bytes());
        b[0x10] = 2;
        b[0x15] = 0xF8;
        // 16-bit sectors per FAT = 0 marks FAT32.
        b[0x20..0x24].copy_from_slice(&131072u32.to_le_bytes());
        b[0x24..0x28].copy_from_slice(&1009u32.to_le_bytes());
        b[0x2C..0x30].copy_from_slice(&2u32.to_le_bytes()); // root cluster
        b[0x42] = 0x29;
        b[0x43..0x47].copy_from_slice(&[1, 2, 3, 4]);
        b[0x47..0x52].copy_from_slice(label);
        b[0x52..0x5A].copy_from_slice(b"FAT32   ");
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    /// The start of an iso9660 image: 32 KiB system area, then the PVD.
    pub fn iso_head(volume_id: &str) -> Vec<u8> {
        let mut b = vec![0u8; HEAD_LEN];
        let pvd = &mut b[ISO_PVD_OFFSET..];
        pvd[0] = 1;
        pvd[1..6].copy_from_slice(b"CD001");
        pvd[6] = 1;
        pvd[8..40].fill(b' ');
        pvd[8..13].copy_from_slice(b"LINUX");
        let id = &mut pvd[40..72];
        id.fill(b' ');
        id[..volume_id.len()].copy_from_slice(volume_id.as_bytes());
        b
    }

    #[test]
    fn fat16_label() {
        let b = fat16_sector(b"ROUTERCFG  ");
        assert_eq!(fat_label(&b).as_deref(), Some("ROUTERCFG"));
        assert_eq!(detect_label(&b), Some((FsKind::Vfat, "ROUTERCFG".to_string())));
    }

    #[test]
    fn fat32_label() {
        let b = fat32_sector(b"ROUTERCFG  ");
        assert_eq!(fat_label(&b).as_deref(), Some("ROUTERCFG"));
    }

    #[test]
    fn fat_label_keeps_inner_spaces() {
        let b = fat16_sector(b"MY DISK    ");
        assert_eq!(fat_label(&b).as_deref(), Some("MY DISK"));
    }

    #[test]
    fn fat_without_label() {
        assert_eq!(fat_label(&fat16_sector(b"NO NAME    ")), None);
        assert_eq!(fat_label(&fat32_sector(b"           ")), None);
        let mut b = fat16_sector(b"ROUTERCFG  ");
        b[0x26] = 0x28; // short extended BPB: no label field
        assert_eq!(fat_label(&b), None);
    }

    #[test]
    fn not_fat() {
        assert_eq!(fat_label(&[0u8; 512]), None);
        assert_eq!(fat_label(&fat16_sector(b"ROUTERCFG  ")[..511]), None);
        let mut b = fat16_sector(b"ROUTERCFG  ");
        b[0x0B..0x0D].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(fat_label(&b), None);
        let mut b = fat16_sector(b"ROUTERCFG  ");
        b[0x0D] = 3; // sectors per cluster must be a power of two
        assert_eq!(fat_label(&b), None);
        // An ext4 superblock region and an MBR-only sector are not FAT.
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        assert_eq!(fat_label(&mbr), None);
    }

    #[test]
    fn iso_label() {
        let b = iso_head("ROUTERCFG");
        assert_eq!(detect_label(&b), Some((FsKind::Iso9660, "ROUTERCFG".to_string())));
        assert_eq!(iso9660_label(&b[ISO_PVD_OFFSET..]).as_deref(), Some("ROUTERCFG"));
    }

    #[test]
    fn iso_other_label_and_garbage() {
        assert_eq!(
            detect_label(&iso_head("cidata")),
            Some((FsKind::Iso9660, "cidata".to_string()))
        );
        let mut b = iso_head("ROUTERCFG");
        b[ISO_PVD_OFFSET + 3] = b'X';
        assert_eq!(detect_label(&b), None);
        let mut b = iso_head("ROUTERCFG");
        b[ISO_PVD_OFFSET] = 2; // supplementary descriptor, not the primary one
        assert_eq!(detect_label(&b), None);
        assert_eq!(detect_label(&iso_head("")), None);
    }

    #[test]
    fn short_and_empty_devices() {
        assert_eq!(detect_label(&[]), None);
        assert_eq!(detect_label(&[0u8; 100]), None);
        let b = iso_head("ROUTERCFG");
        assert_eq!(detect_label(&b[..ISO_PVD_OFFSET + 50]), None);
        assert_eq!(detect_label(&vec![0u8; HEAD_LEN]), None);
    }

    #[test]
    fn config_label_ignores_case() {
        assert!(is_config_label("ROUTERCFG"));
        assert!(is_config_label("routercfg"));
        assert!(!is_config_label("ROUTERCFG2"));
        assert!(!is_config_label("ROUTERSTATE"));
    }

    #[test]
    fn cidata_label_ignores_case() {
        assert!(is_cidata_label("cidata"));
        assert!(is_cidata_label("CIDATA"));
        assert!(!is_cidata_label("config-2"));
        assert!(!is_cidata_label("ROUTERCFG"));
    }

    #[test]
    fn classify_finds_both_and_keeps_the_first_of_each() {
        let found = classify([
            ("/dev/sda1".into(), FsKind::Vfat, "EFI".to_string()),
            ("/dev/sdb".into(), FsKind::Vfat, "ROUTERCFG".to_string()),
            ("/dev/sr0".into(), FsKind::Iso9660, "cidata".to_string()),
            ("/dev/sr1".into(), FsKind::Iso9660, "CIDATA".to_string()),
        ]);
        assert_eq!(
            found.config,
            Some(ConfigDisk {
                node: "/dev/sdb".into(),
                kind: FsKind::Vfat
            })
        );
        assert_eq!(
            found.cidata,
            Some(ConfigDisk {
                node: "/dev/sr0".into(),
                kind: FsKind::Iso9660
            })
        );
        assert_eq!(classify([]), Found::default());
    }

    /// The volume Proxmox makes (`genisoimage -quiet -iso-level 3 -J -R -V cidata`)
    /// is recognised from its first bytes. Needs genisoimage; skipped without it.
    #[test]
    fn a_proxmox_cidata_iso_is_recognised() {
        let dir = std::env::temp_dir().join(format!("init-cidata-{}", std::process::id()));
        let files = dir.join("files");
        let iso = dir.join("cidata.iso");
        let _ = std::fs::create_dir_all(&files);
        for (name, text) in [
            ("user-data", "#cloud-config\nhostname: router\n"),
            ("meta-data", "instance-id: x\n"),
            ("network-config", "version: 1\nconfig:\n"),
            ("vendor-data", ""),
        ] {
            let _ = std::fs::write(files.join(name), text);
        }
        let made = std::process::Command::new("genisoimage")
            .args(["-quiet", "-iso-level", "3", "-J", "-R", "-V", "cidata", "-o"])
            .arg(&iso)
            .arg(&files)
            .status();
        match made {
            Ok(status) if status.success() => {
                let head = read_head(&iso, HEAD_LEN).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                assert_eq!(detect_label(&head), Some((FsKind::Iso9660, "cidata".to_string())));
            }
            _ => {
                let _ = std::fs::remove_dir_all(&dir);
                eprintln!("genisoimage is not installed: skipped");
            }
        }
    }

    #[test]
    fn uevent_parsing() {
        let text = "MAJOR=8\nMINOR=2\nDEVNAME=sda2\nDEVTYPE=partition\nDISKSEQ=1\nPARTN=2\nPARTNAME=routerstate\n";
        assert_eq!(uevent_value(text, "PARTNAME"), Some("routerstate"));
        assert_eq!(uevent_value(text, "DEVNAME"), Some("sda2"));
        assert_eq!(uevent_value(text, "PARTUUID"), None);
        assert_eq!(parse_uevent(text).count(), 7);
        assert_eq!(uevent_value("PARTNAME=\n", "PARTNAME"), Some(""));
        assert_eq!(uevent_value("garbage\n\n", "PARTNAME"), None);
    }

    #[test]
    fn node_uses_devname() {
        let dev = BlockDev {
            name: "sda2".into(),
            uevent: "DEVNAME=sda2\n".into(),
        };
        assert_eq!(dev.node(), PathBuf::from("/dev/sda2"));
        let dev = BlockDev {
            name: "vdb".into(),
            uevent: String::new(),
        };
        assert_eq!(dev.node(), PathBuf::from("/dev/vdb"));
    }
}
