//! The disk of CONTRACT.md: GPT, an ESP (BIOS-bootable through syslinux and
//! gptmbr.bin, UEFI-bootable through systemd-boot and each slot's own loader), a blank
//! state partition.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::gpt::{self, PartitionSpec};
use crate::util::{mtools, read, run};

pub const GPTMBR: &str = "/usr/lib/syslinux/mbr/gptmbr.bin";
/// systemd-boot (Debian package systemd-boot-efi): the UEFI boot loader, reading
/// the same slot files as syslinux.
pub const SYSTEMD_BOOT: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// The UEFI loader in each slot (image/efiboot/): systemd-boot's entries start it.
pub const SLOT_LOADER: &str = config::release::SLOT_UEFI_LOADER;
pub const STATE_SIZE: u64 = 64 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

/// `panic=5`: a kernel panic (init dying included) reboots, and the boot loader's
/// default slot boots again: what makes a failed trial of a new slot fall back.
pub const CMDLINE: &str = "console=tty0 console=ttyS0,115200 loglevel=4 panic=5";

/// Added for syslinux (SeaBIOS) only: `acpi=noirq` routes PCI interrupts by the BIOS's
/// MP table instead of ACPI. The first driver on each of the four ACPI PCI interrupt
/// links (the virtio devices) otherwise waits for the ACPI interpreter to set the link
/// up: about 0.2 s each under TCG, 0.75 s of the 2 s the boot modules took. SeaBIOS
/// always writes an MP table (IO-APIC and each PCI device's interrupt on bus 0; the
/// kernel finds those behind a bridge through the bridge's); OVMF writes none, so
/// systemd-boot's entries keep ACPI's routing.
pub const BIOS_CMDLINE: &str = "acpi=noirq";

fn slot_cmdline(slot: &str) -> String {
    format!("{CMDLINE} {}={slot}", config::release::SLOT_CMDLINE_KEY)
}

/// syslinux's config: one label per slot; `DEFAULT` names the slot that boots
/// (init rewrites that line in place, and sets a boot-once in syslinux's ADV to try
/// the other slot).
pub fn syslinux_cfg(default: &str) -> String {
    let mut s = format!("SERIAL 0 115200\nDEFAULT {default}\nPROMPT 0\nTIMEOUT 0\n");
    for slot in config::release::SLOTS {
        s.push_str(&format!(
            "\nLABEL {slot}\n  LINUX /{slot}/vmlinuz\n  INITRD /{slot}/initrd.img\n  APPEND {} {BIOS_CMDLINE}\n",
            slot_cmdline(slot)
        ));
    }
    s
}

/// systemd-boot's config: `default` names the slot's entry (rewritten in place by
/// init; a trial boot is the one-shot EFI variable `LoaderEntryOneShot`).
pub fn loader_conf(default: &str) -> String {
    format!("default {default}.conf\ntimeout 0\neditor no\n")
}

/// A type-1 `efi` entry: systemd-boot starts the slot's own loader with `options` as
/// its LoadOptions (the kernel, then the kernel command line with `initrd=`).
pub fn loader_entry(slot: &str) -> String {
    format!(
        "title Router appliance, slot {slot}\nefi /{slot}/{SLOT_LOADER}\noptions /{slot}/vmlinuz initrd=/{slot}/initrd.img {}\n",
        slot_cmdline(slot)
    )
}

/// ESP size: three times a slot (two slots and room for a larger next release), at
/// least 128 MiB. Blocks never written cost nothing in the qcow2.
pub fn esp_size(slot: u64) -> u64 {
    (slot * 3).div_ceil(MIB).max(128) * MIB
}

/// What slot `a` holds (name on the ESP, file on the host).
pub struct Files<'a> {
    pub slot: Vec<(&'a str, &'a Path)>,
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
    for (_, p) in &files.slot {
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
            config::release::BOOT_LABEL,
            "::",
        ]))?;
    let first = config::release::SLOTS[0];
    let mut texts = vec![
        (
            work.join("syslinux.cfg"),
            format!("::{}", config::release::SYSLINUX_CFG),
            syslinux_cfg(first),
        ),
        (
            work.join("loader.conf"),
            format!("::{}", config::release::LOADER_CONF),
            loader_conf(first),
        ),
    ];
    for slot in config::release::SLOTS {
        texts.push((
            work.join(format!("{slot}.conf")),
            format!("::loader/entries/{slot}.conf"),
            loader_entry(slot),
        ));
    }
    let mut dirs = vec![
        "::EFI".to_string(),
        "::EFI/BOOT".into(),
        "::loader".into(),
        "::loader/entries".into(),
    ];
    dirs.extend(config::release::SLOTS.iter().map(|s| format!("::{s}")));
    run(mtools("mmd").args(["-i", &img]).args(&dirs))?;
    let mut copies: Vec<(&Path, String)> = Vec::new();
    for (host, esp, text) in &texts {
        std::fs::write(host, text)?;
        copies.push((host, esp.clone()));
    }
    copies.push((Path::new(SYSTEMD_BOOT), "::EFI/BOOT/BOOTX64.EFI".into()));
    for (name, src) in &files.slot {
        copies.push((src, format!("::{first}/{name}")));
    }
    for (src, dest) in copies {
        run(mtools("mcopy").arg("-i").arg(&img).arg(src).arg(dest))
            .with_context(|| format!("{} (systemd-boot: Debian package systemd-boot-efi)", src.display()))?;
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
        assert_eq!(esp_size(1), 128 * MIB);
        assert_eq!(esp_size(50 * MIB), 150 * MIB);
    }

    #[test]
    fn both_boot_loaders_name_each_slot_and_its_files() {
        let cfg = syslinux_cfg("a");
        assert!(cfg.contains("\nDEFAULT a\n"), "{cfg}");
        assert!(cfg.contains("LINUX /b/vmlinuz\n  INITRD /b/initrd.img\n  APPEND console=tty0 console=ttyS0,115200 loglevel=4 panic=5 router.slot=b acpi=noirq\n"), "{cfg}");
        assert_eq!(loader_conf("a").lines().next(), Some("default a.conf"));
        assert!(loader_entry("b").contains(
            "efi /b/linux.efi\noptions /b/vmlinuz initrd=/b/initrd.img console=tty0 console=ttyS0,115200 loglevel=4 panic=5 router.slot=b\n"
        ));
    }
}
