//! The x86 boot-protocol header of a bzImage: how much room the kernel needs to unpack
//! itself (README "Figures").

use anyhow::{bail, Result};

const MIB: u64 = 1024 * 1024;
/// The kernel unpacks itself in a block aligned to 2 MiB (CONFIG_PHYSICAL_ALIGN).
const KERNEL_ALIGN: u64 = 2 * MIB;

/// The setup header fields this crate uses.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    /// Memory the kernel needs from its load address while it unpacks and runs: one
    /// block, which our UEFI loader (image/efiboot/) finds once the firmware is gone,
    /// at 16 MiB in a small VM.
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

/// The block the kernel unpacks itself in, in MiB.
pub fn block_mib(h: &Header) -> u64 {
    h.init_size.div_ceil(KERNEL_ALIGN) * KERNEL_ALIGN / MIB
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
    fn block_is_init_size_in_2_mib_steps() {
        // Debian 6.1.0-57 generic and cloud kernels.
        assert_eq!(block_mib(&Header { init_size: 0x3f98000 }), 64);
        assert_eq!(block_mib(&Header { init_size: 0x3378000 }), 52);
    }
}
