//! Unified kernel image: systemd-boot-efi's stub with `.osrel`, `.cmdline`,
//! `.initrd` and `.linux` added by objcopy at page-aligned addresses past the
//! stub's last section.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use object::pe::ImageNtHeaders64;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile64};
use object::LittleEndian as LE;

use crate::util::{read, run};

pub const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// The first free address past the stub's sections (image base included, as
/// objcopy's VMAs are), and the section alignment.
pub fn stub_end(stub: &[u8]) -> Result<(u64, u64)> {
    let pe = PeFile64::parse(stub).context("the stub is not a PE32+ file")?;
    let nt: &ImageNtHeaders64 = pe.nt_headers();
    let base = nt.optional_header().image_base();
    let align = u64::from(nt.optional_header().section_alignment()).max(4096);
    let end = pe
        .section_table()
        .iter()
        .map(|s| u64::from(s.virtual_address.get(LE)) + u64::from(s.virtual_size.get(LE)))
        .max()
        .unwrap_or(0);
    Ok((base + end, align))
}

/// Addresses for sections of the given sizes, in order, each aligned.
pub fn place(start: u64, align: u64, sizes: &[u64]) -> Vec<u64> {
    let mut next = start.div_ceil(align) * align;
    sizes
        .iter()
        .map(|s| {
            let at = next;
            next = (at + s).div_ceil(align) * align;
            at
        })
        .collect()
}

/// Writes `out` from the stub and the given files.
pub fn build(stub: &Path, osrel: &Path, cmdline: &Path, initrd: &Path, linux: &Path, out: &Path) -> Result<()> {
    let (end, align) = stub_end(&read(stub)?)?;
    let parts = [
        (".osrel", osrel),
        (".cmdline", cmdline),
        (".initrd", initrd),
        (".linux", linux),
    ];
    let mut sizes = Vec::new();
    for (_, p) in &parts {
        sizes.push(std::fs::metadata(p).with_context(|| format!("{}", p.display()))?.len());
    }
    let at = place(end, align, &sizes);
    let mut cmd = Command::new("objcopy");
    for ((name, path), vma) in parts.iter().zip(at) {
        cmd.arg("--add-section").arg(format!("{name}={}", path.display()));
        cmd.arg("--change-section-vma").arg(format!("{name}={vma:#x}"));
    }
    cmd.arg(stub).arg(out);
    run(&mut cmd).context("objcopy could not assemble the unified kernel image")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_page_aligned_and_do_not_overlap() {
        let at = place(0x19134, 0x1000, &[100, 70, 5_000_000, 8_000_000]);
        assert_eq!(at[0], 0x1a000);
        assert_eq!(at[1], 0x1b000);
        assert_eq!(at[2], 0x1c000);
        assert_eq!(at[3], (0x1c000 + 5_000_000u64).div_ceil(0x1000) * 0x1000);
        assert!(at.iter().all(|a| a % 0x1000 == 0));
    }

    #[test]
    fn reads_the_real_stub_when_installed() -> Result<()> {
        if let Ok(stub) = std::fs::read(STUB) {
            let (end, align) = stub_end(&stub)?;
            assert!(end > 0x1000 && align >= 4096, "{end:#x} {align}");
        }
        Ok(())
    }
}
