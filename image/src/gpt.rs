//! GPT partition table: layout math and the bytes of the protective MBR, the
//! primary and backup headers and entry arrays (UEFI spec 2.10, chapter 5).

pub const SECTOR: u64 = 512;
const MIB: u64 = 1024 * 1024;
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
/// Sectors taken by the entry array: 128 * 128 / 512.
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;

pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
pub const LINUX_DATA_TYPE: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
/// Attribute bit 2: legacy BIOS bootable (what syslinux's gptmbr.bin looks for).
pub const ATTR_LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    pub name: String,
    pub type_guid: String,
    pub size: u64,
    pub attributes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub type_guid: [u8; 16],
    pub unique_guid: [u8; 16],
    pub first_lba: u64,
    /// Inclusive, as GPT stores it.
    pub last_lba: u64,
    pub attributes: u64,
}

impl Partition {
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }
    pub fn size(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub disk_size: u64,
    pub disk_guid: [u8; 16],
    pub partitions: Vec<Partition>,
}

/// Places partitions one after another at 1 MiB boundaries (sizes rounded up to
/// 1 MiB), with 1 MiB at the end for the backup table. `guids` supplies the disk
/// GUID and then one unique GUID per partition.
pub fn layout(specs: &[PartitionSpec], guids: &mut dyn FnMut() -> [u8; 16]) -> Result<Layout, String> {
    let disk_guid = guids();
    let mut next = MIB;
    let mut partitions = Vec::new();
    for s in specs {
        if s.size == 0 {
            return Err(format!("partition {} has size 0", s.name));
        }
        if s.name.encode_utf16().count() > 36 {
            return Err(format!("partition name {} is longer than 36 characters", s.name));
        }
        let size = s.size.div_ceil(MIB) * MIB;
        partitions.push(Partition {
            name: s.name.clone(),
            type_guid: parse_guid(&s.type_guid)?,
            unique_guid: guids(),
            first_lba: next / SECTOR,
            last_lba: (next + size) / SECTOR - 1,
            attributes: s.attributes,
        });
        next += size;
    }
    Ok(Layout {
        disk_size: next + MIB,
        disk_guid,
        partitions,
    })
}

/// "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" in GPT's mixed-endian byte order.
pub fn parse_guid(text: &str) -> Result<[u8; 16], String> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return Err(format!("bad GUID {text}"));
    }
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| format!("bad GUID {text}"))?;
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    Ok(b)
}

/// The pieces to write: (byte offset, bytes).
pub fn table_bytes(l: &Layout) -> Vec<(u64, Vec<u8>)> {
    let last_lba = l.disk_size / SECTOR - 1;
    let mut entries = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in l.partitions.iter().enumerate() {
        let e = &mut entries[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.type_guid);
        e[16..32].copy_from_slice(&p.unique_guid);
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
        for (j, u) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
        }
    }
    let entries_crc = crc32(&entries);
    let backup_entries_lba = last_lba - ENTRY_SECTORS;
    let header = |my: u64, alt: u64, entries_lba: u64| {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(backup_entries_lba - 1).to_le_bytes());
        h[56..72].copy_from_slice(&l.disk_guid);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    // Protective MBR: partition table and signature only; bytes 0..440 are the
    // boot code (gptmbr.bin), written separately.
    let mut mbr = vec![0u8; 512 - 446];
    let pe = &mut mbr[0..16];
    pe[0] = 0x00;
    pe[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    pe[4] = 0xEE;
    pe[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    pe[8..12].copy_from_slice(&1u32.to_le_bytes());
    pe[12..16].copy_from_slice(&(u32::try_from(last_lba).unwrap_or(u32::MAX)).to_le_bytes());
    mbr[64] = 0x55;
    mbr[65] = 0xAA;
    vec![
        (446, mbr),
        (SECTOR, header(1, last_lba, 2)),
        (2 * SECTOR, entries.clone()),
        (backup_entries_lba * SECTOR, entries),
        (last_lba * SECTOR, header(last_lba, 1, backup_entries_lba)),
    ]
}

/// CRC-32 (IEEE 802.3), as GPT uses.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<PartitionSpec> {
        vec![
            PartitionSpec {
                name: "ESP".into(),
                type_guid: ESP_TYPE.into(),
                size: 100 * MIB - 5,
                attributes: ATTR_LEGACY_BIOS_BOOTABLE,
            },
            PartitionSpec {
                name: config::image::STATE_PARTITION.into(),
                type_guid: LINUX_DATA_TYPE.into(),
                size: 64 * MIB,
                attributes: 0,
            },
        ]
    }

    fn counter() -> impl FnMut() -> [u8; 16] {
        let mut n = 0u8;
        move || {
            n += 1;
            [n; 16]
        }
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn guid_byte_order() {
        let g = parse_guid(ESP_TYPE).unwrap_or_default();
        assert_eq!(g[..4], [0x28, 0x73, 0x2A, 0xC1]);
        assert_eq!(g[4..6], [0x1F, 0xF8]);
        assert_eq!(g[6..8], [0xD2, 0x11]);
        assert_eq!(g[8..], [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B]);
        assert!(parse_guid("nope").is_err());
    }

    #[test]
    fn partitions_are_aligned_and_fit() -> Result<(), String> {
        let l = layout(&specs(), &mut counter())?;
        assert_eq!(l.partitions[0].first_lba, 2048);
        assert_eq!(l.partitions[0].size(), 100 * MIB, "rounded up to 1 MiB");
        assert_eq!(l.partitions[1].offset(), 101 * MIB);
        assert_eq!(l.partitions[1].size(), 64 * MIB);
        assert_eq!(l.disk_size, 166 * MIB);
        let last_usable = l.disk_size / SECTOR - 1 - ENTRY_SECTORS - 1;
        assert!(l.partitions[1].last_lba <= last_usable);
        Ok(())
    }

    #[test]
    fn headers_carry_valid_crcs_and_point_at_each_other() -> Result<(), String> {
        let l = layout(&specs(), &mut counter())?;
        let mut disk = vec![0u8; l.disk_size as usize];
        for (off, bytes) in table_bytes(&l) {
            disk[off as usize..off as usize + bytes.len()].copy_from_slice(&bytes);
        }
        assert_eq!(&disk[510..512], &[0x55, 0xAA]);
        assert_eq!(disk[446 + 4], 0xEE);
        let last = l.disk_size / SECTOR - 1;
        for (lba, alt) in [(1, last), (last, 1)] {
            let h = &disk[(lba * SECTOR) as usize..(lba * SECTOR) as usize + 92];
            assert_eq!(&h[..8], b"EFI PART");
            let mut copy = h.to_vec();
            copy[16..20].fill(0);
            assert_eq!(crc32(&copy), u32::from_le_bytes([h[16], h[17], h[18], h[19]]));
            let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap_or_default());
            assert_eq!((u64_at(24), u64_at(32)), (lba, alt));
            let entries_lba = u64_at(72) as usize;
            let entries = &disk[entries_lba * 512..entries_lba * 512 + 16384];
            assert_eq!(crc32(entries), u32::from_le_bytes([h[88], h[89], h[90], h[91]]));
            // partition 2's name
            let name: Vec<u16> = entries[128 + 56..128 + 56 + 2 * config::image::STATE_PARTITION.len()]
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            assert_eq!(String::from_utf16_lossy(&name), config::image::STATE_PARTITION);
            assert_eq!(entries[48], ATTR_LEGACY_BIOS_BOOTABLE as u8);
        }
        // util-linux agrees, when it is installed.
        if std::process::Command::new("sfdisk").arg("--version").output().is_ok() {
            let path = std::env::temp_dir().join(format!("gpt-test-{}.img", std::process::id()));
            std::fs::write(&path, &disk).map_err(|e| e.to_string())?;
            let out = std::process::Command::new("sfdisk").arg("--verify").arg(&path).output();
            let _ = std::fs::remove_file(&path);
            let out = out.map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && text.contains("No errors detected"), "{text}");
        }
        Ok(())
    }
}
