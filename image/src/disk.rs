//! The disk of CONTRACT.md: GPT, an ESP (BIOS-bootable through syslinux and
//! gptmbr.bin, UEFI-bootable through a unified kernel image), a blank state partition.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::gpt::{self, PartitionSpec};
use crate::util::{mtools, read, run};

pub const GPTMBR: &str = "/usr/lib/syslinux/mbr/gptmbr.bin";
pub const STATE_SIZE: u64 = 64 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

pub const CMDLINE: &str = "console=tty0 console=ttyS0,115200 loglevel=4";

pub fn syslinux_cfg() -> String {
    format!(
        "SERIAL 0 115200\nDEFAULT router\nPROMPT 0\nTIMEOUT 0\n\nLABEL router\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND {CMDLINE}\n"
    )
}

/// ESP size: twice what it holds (room for an update in place), at least 64 MiB.
pub fn esp_size(content: u64) -> u64 {
    (content * 2).div_ceil(MIB).max(64) * MIB
}

pub struct Files<'a> {
    pub vmlinuz: &'a Path,
    pub initrd: &'a Path,
    pub uki: &'a Path,
    pub versions: &'a Path,
}

pub fn random_guid() -> Result<[u8; 16]> {
    let mut g = [0u8; 16];
    let mut f = std::fs::File::open("/dev/urandom")?;
    std::io::Read::read_exact(&mut f, &mut g)?;
    g[7] = (g[7] & 0x0f) | 0x40; // version 4 (mixed-endian field 3)
    g[8] = (g[8] & 0x3f) | 0x80; // variant
    Ok(g)
}

pub fn write(out: &Path, files: &Files, work: &Path) -> Result<gpt::Layout> {
    let mut content = 0;
    for p in [files.vmlinuz, files.initrd, files.uki] {
        content += std::fs::metadata(p).with_context(|| format!("{}", p.display()))?.len();
    }
    let specs = [
        PartitionSpec {
            name: "ESP".into(),
            type_guid: gpt::ESP_TYPE.into(),
            size: esp_size(content),
            attributes: gpt::ATTR_LEGACY_BIOS_BOOTABLE,
        },
        PartitionSpec {
            name: config::image::STATE_PARTITION.into(),
            type_guid: gpt::LINUX_DATA_TYPE.into(),
            size: STATE_SIZE,
            attributes: 0,
        },
    ];
    let mut guid_err = None;
    let layout = gpt::layout(&specs, &mut || {
        random_guid().unwrap_or_else(|e| {
            guid_err = Some(e);
            [0; 16]
        })
    })
    .map_err(anyhow::Error::msg)?;
    if let Some(e) = guid_err {
        return Err(e.context("cannot read /dev/urandom"));
    }

    let _ = std::fs::remove_file(out);
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    f.set_len(layout.disk_size)?;
    let mbr = read(Path::new(GPTMBR)).context("syslinux's gptmbr.bin (Debian package syslinux-common)")?;
    if mbr.len() > 440 {
        bail!("{GPTMBR} is {} bytes, more than the 440 of MBR boot code", mbr.len());
    }
    f.write_all(&mbr)?;
    for (off, bytes) in gpt::table_bytes(&layout) {
        f.seek(SeekFrom::Start(off))?;
        f.write_all(&bytes)?;
    }
    f.sync_all()?;
    drop(f);

    // The ESP, filled in place with mtools and syslinux's mtools installer.
    let esp = &layout.partitions[0];
    let img = format!("{}@@{}", out.display(), esp.offset());
    run(mtools("mformat")
        .args(["-i", &img, "-T", &(esp.size() / gpt::SECTOR).to_string()])
        .args([
            "-h",
            "64",
            "-s",
            "32",
            "-H",
            &esp.first_lba.to_string(),
            "-v",
            "ROUTERBOOT",
            "::",
        ]))?;
    let cfg = work.join("syslinux.cfg");
    std::fs::write(&cfg, syslinux_cfg())?;
    run(mtools("mmd").args(["-i", &img, "::EFI", "::EFI/BOOT"]))?;
    for (src, dest) in [
        (cfg.as_path(), "::syslinux.cfg"),
        (files.vmlinuz, "::vmlinuz"),
        (files.initrd, "::initrd.img"),
        (files.versions, "::versions.txt"),
        (files.uki, "::EFI/BOOT/BOOTX64.EFI"),
    ] {
        run(mtools("mcopy").arg("-i").arg(&img).arg(src).arg(dest))?;
    }
    run(Command::new("syslinux")
        .env("MTOOLS_SKIP_CHECK", "1")
        .args(["--install", "--offset", &esp.offset().to_string()])
        .arg(out))
    .context("syslinux --install (Debian package syslinux)")?;
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_has_room() {
        assert_eq!(esp_size(1), 64 * MIB);
        assert_eq!(esp_size(50 * MIB), 100 * MIB);
        assert!(syslinux_cfg().contains("APPEND console=tty0 console=ttyS0,115200 loglevel=4"));
    }
}
