//! The x86 boot-protocol header of a bzImage, and what it means for the RAM an OVMF VM
//! needs (README "Figures").

use anyhow::{bail, Result};

const MIB: u64 = 1024 * 1024;
/// The EFI stub unpacks the kernel into a block aligned to 2 MiB (CONFIG_PHYSICAL_ALIGN).
const KERNEL_ALIGN: u64 = 2 * MIB;
/// Under Debian's OVMF (2022.11, q35, TCG) the block must start at or above 16 MiB and
/// after the firmware's DXE volume (9-21 MiB): the first 2 MiB boundary is 22 MiB.
const OVMF_FIRST_BLOCK: u64 = 22 * MIB;
/// ... and end below OVMF's PEI stack, which stays allocated until ExitBootServices at
/// the bottom of the PEI memory: 64 MiB plus the page tables under the top of RAM
/// (measured in the firmware's memory map: 0x448B000 bytes).
const OVMF_PEI_MEMORY: u64 = 0x448B000;

/// The setup header fields this crate uses.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    /// Memory the kernel needs from its load address while it unpacks and runs; the
    /// EFI stub allocates it (rounded up to 2 MiB) as one block before leaving the
    /// firmware.
    pub init_size: u64,
}

pub fn header(data: &[u8]) -> Result<Header> {
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| data.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if data.get(0x202..0x206) != Some(b"HdrS") {
        bail!("not a bzImage: no \"HdrS\" boot-protocol header");
    }
    let version = u16_at(0x206).unwrap_or(0);
    // init_size is in the header from boot protocol 2.10 on.
    if version < 0x20a {
        bail!("boot protocol {}.{:02}, older than 2.10", version >> 8, version & 0xff);
    }
    let Some(init_size) = u32_at(0x260) else {
        bail!("bzImage truncated in its header");
    };
    Ok(Header {
        init_size: u64::from(init_size),
    })
}

/// The least RAM in MiB with which this kernel's EFI stub finds its block under
/// Debian's OVMF: the largest free block at or above 16 MiB is RAM − 90.5 MiB.
pub fn ovmf_min_ram_mib(h: &Header) -> u64 {
    let block = h.init_size.div_ceil(KERNEL_ALIGN) * KERNEL_ALIGN;
    (OVMF_FIRST_BLOCK + block + OVMF_PEI_MEMORY).div_ceil(MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(version: u16, init_size: u32) -> Vec<u8> {
        let mut d = vec![0u8; 0x270];
        d[0x202..0x206].copy_from_slice(b"HdrS");
        d[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        d[0x260..0x264].copy_from_slice(&init_size.to_le_bytes());
        d
    }

    #[test]
    fn reads_init_size() {
        assert_eq!(
            header(&fake(0x20f, 0x3f98000)).expect("a 2.15 header").init_size,
            0x3f98000
        );
        assert!(header(&fake(0x209, 0x3f98000)).is_err());
        assert!(header(&[0u8; 0x300]).is_err());
        assert!(header(&fake(0x20f, 1)[..0x262]).is_err());
    }

    #[test]
    fn ovmf_floor_matches_the_measured_boots() {
        // Debian 6.1.0-57 generic: 154 MiB fails, 156 MiB boots; cloud: 142 fails, 144 boots.
        assert_eq!(ovmf_min_ram_mib(&Header { init_size: 0x3f98000 }), 155);
        assert_eq!(ovmf_min_ram_mib(&Header { init_size: 0x3378000 }), 143);
    }
}
