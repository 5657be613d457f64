//! ELF -> PE32+: turns the static position-independent ELF of the UEFI loader
//! (image/efiboot/) into a UEFI application. One PE section per PT_LOAD (page-aligned,
//! at its ELF address plus one page for the PE headers), and a `.reloc` section made
//! from the ELF's R_X86_64_RELATIVE relocations; any other relocation is refused.

use anyhow::{bail, Context, Result};
use object::elf;
use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader, Rela};
use object::{Endianness, ReadRef};

const PAGE: u64 = 0x1000;
const FILE_ALIGN: u64 = 0x200;
/// Where the PE sections start: the headers take the first page.
const SHIFT: u64 = PAGE;
/// The preferred load address; the firmware loads the image anywhere and applies
/// `.reloc`.
const IMAGE_BASE: u64 = 0x1000_0000;
const SUBSYSTEM_EFI_APPLICATION: u16 = 10;
const MACHINE_AMD64: u16 = 0x8664;
const REL_BASED_DIR64: u16 = 10;
/// DT_RELR (packed relative relocations), which object 0.36 does not name.
const DT_RELR: u32 = 36;

const SCN_CNT_CODE: u32 = 0x20;
const SCN_CNT_INITIALIZED_DATA: u32 = 0x40;
const SCN_MEM_DISCARDABLE: u32 = 0x0200_0000;
const SCN_MEM_EXECUTE: u32 = 0x2000_0000;
const SCN_MEM_READ: u32 = 0x4000_0000;
const SCN_MEM_WRITE: u32 = 0x8000_0000;

struct Section {
    name: [u8; 8],
    rva: u64,
    virtual_size: u64,
    data: Vec<u8>,
    characteristics: u32,
}

fn align(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// The `.reloc` section's contents: one block per 4 KiB page holding DIR64 entries.
fn base_relocations(mut rvas: Vec<u64>) -> Vec<u8> {
    rvas.sort_unstable();
    rvas.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < rvas.len() {
        let page = rvas[i] & !(PAGE - 1);
        let mut entries: Vec<u16> = Vec::new();
        while i < rvas.len() && rvas[i] & !(PAGE - 1) == page {
            entries.push((REL_BASED_DIR64 << 12) | (rvas[i] & (PAGE - 1)) as u16);
            i += 1;
        }
        if entries.len() % 2 == 1 {
            entries.push(0); // IMAGE_REL_BASED_ABSOLUTE: padding to 4 bytes
        }
        out.extend_from_slice(&(page as u32).to_le_bytes());
        out.extend_from_slice(&(8 + 2 * entries.len() as u32).to_le_bytes());
        for e in entries {
            out.extend_from_slice(&e.to_le_bytes());
        }
    }
    out
}

pub fn from_elf(data: &[u8]) -> Result<Vec<u8>> {
    let file = ElfFile64::<Endianness>::parse(data).context("not a 64-bit ELF file")?;
    let e = file.endian();
    let header = file.elf_header();
    if header.e_machine(e) != elf::EM_X86_64 {
        bail!("not an x86-64 ELF file");
    }
    if header.e_type(e) != elf::ET_DYN {
        bail!("not a position-independent executable (link with -static-pie)");
    }
    let mut sections = Vec::new();
    let mut loads = Vec::new();
    let mut dynamic = None;
    for ph in file.elf_program_headers() {
        match ph.p_type(e) {
            elf::PT_LOAD => {
                let (vaddr, offset) = (ph.p_vaddr(e), ph.p_offset(e));
                let (filesz, memsz) = (ph.p_filesz(e), ph.p_memsz(e));
                let lead = vaddr % PAGE;
                if offset % PAGE != lead {
                    bail!("PT_LOAD at {vaddr:#x}: file offset {offset:#x} not congruent to its address");
                }
                let start = (offset - lead) as usize;
                let bytes = data
                    .get(start..start + (lead + filesz) as usize)
                    .with_context(|| format!("PT_LOAD at {vaddr:#x} is beyond the end of the file"))?;
                let flags = ph.p_flags(e);
                let mut characteristics = SCN_MEM_READ;
                let name = if flags & elf::PF_X != 0 {
                    characteristics |= SCN_CNT_CODE | SCN_MEM_EXECUTE;
                    *b".text\0\0\0"
                } else if flags & elf::PF_W != 0 {
                    characteristics |= SCN_CNT_INITIALIZED_DATA | SCN_MEM_WRITE;
                    *b".data\0\0\0"
                } else {
                    characteristics |= SCN_CNT_INITIALIZED_DATA;
                    *b".rdata\0\0"
                };
                if let Some(prev) = sections.last().map(|s: &Section| s.rva + align(s.virtual_size, PAGE)) {
                    if vaddr - lead + SHIFT < prev {
                        bail!("PT_LOAD at {vaddr:#x} shares a page with the one before");
                    }
                }
                sections.push(Section {
                    name,
                    rva: vaddr - lead + SHIFT,
                    virtual_size: lead + memsz,
                    data: bytes.to_vec(),
                    characteristics,
                });
                loads.push((vaddr, filesz, offset));
            }
            elf::PT_DYNAMIC => dynamic = ph.dynamic(e, data).context("bad PT_DYNAMIC")?,
            elf::PT_TLS => bail!("thread-local storage (PT_TLS) is not supported"),
            elf::PT_INTERP => bail!("has an interpreter: link with -static-pie"),
            _ => {}
        }
    }
    if sections.is_empty() {
        bail!("no PT_LOAD");
    }
    // The file offset of an address, through the PT_LOADs.
    let file_offset = |addr: u64| {
        loads
            .iter()
            .find(|(v, fsz, _)| addr >= *v && addr < v + fsz)
            .map(|(v, _, o)| (o + addr - v) as usize)
    };

    // Relocations: DT_RELA only, and only R_X86_64_RELATIVE.
    let mut relocs: Vec<(u64, u64)> = Vec::new();
    if let Some(dynamic) = dynamic {
        let (mut rela, mut relasz, mut relaent) = (None, 0, 24);
        for d in dynamic {
            let (tag, val) = (d.d_tag(e), d.d_val(e));
            match tag as u32 {
                elf::DT_NULL if tag == 0 => break,
                elf::DT_RELA => rela = Some(val),
                elf::DT_RELASZ => relasz = val,
                elf::DT_RELAENT => relaent = val,
                elf::DT_REL | DT_RELR => bail!("REL/RELR relocations are not supported (only RELA)"),
                elf::DT_JMPREL | elf::DT_PLTRELSZ if val != 0 => bail!("PLT relocations are not supported"),
                elf::DT_TEXTREL => bail!("text relocations are not supported"),
                elf::DT_NEEDED => bail!("needs shared libraries"),
                _ => {}
            }
        }
        if let Some(rela) = rela {
            if relaent != 24 {
                bail!("DT_RELAENT {relaent}, not 24");
            }
            let start = file_offset(rela).context("DT_RELA outside the PT_LOADs")?;
            let entries: &[elf::Rela64<Endianness>] = data
                .read_slice_at(start as u64, (relasz / 24) as usize)
                .ok()
                .context("DT_RELA is beyond the end of the file")?;
            for r in entries {
                let (sym, kind, r_offset) = (r.r_sym(e, false), r.r_type(e, false), r.r_offset(e));
                if kind != elf::R_X86_64_RELATIVE || sym != 0 {
                    bail!(
                        "relocation type {kind} (symbol {sym}) at {r_offset:#x}: only R_X86_64_RELATIVE is supported"
                    );
                }
                relocs.push((r_offset, r.r_addend(e) as u64));
            }
        }
    }
    // Each relocated word holds its preferred address; the firmware adds the difference.
    for (offset, addend) in &relocs {
        let rva = offset + SHIFT;
        let s = sections
            .iter_mut()
            .find(|s| rva >= s.rva && rva + 8 <= s.rva + s.data.len() as u64)
            .with_context(|| format!("relocation at {offset:#x} is outside the loaded file data"))?;
        let at = (rva - s.rva) as usize;
        s.data[at..at + 8].copy_from_slice(&(IMAGE_BASE + SHIFT + addend).to_le_bytes());
    }
    let end = sections
        .last()
        .map(|s| align(s.rva + s.virtual_size, PAGE))
        .unwrap_or(SHIFT);
    let reloc = base_relocations(relocs.iter().map(|(o, _)| o + SHIFT).collect());
    let reloc_rva = end;
    let reloc_size = reloc.len() as u64;
    sections.push(Section {
        name: *b".reloc\0\0",
        rva: reloc_rva,
        virtual_size: reloc_size.max(1),
        data: reloc,
        characteristics: SCN_CNT_INITIALIZED_DATA | SCN_MEM_DISCARDABLE | SCN_MEM_READ,
    });
    let size_of_image = align(reloc_rva + reloc_size.max(1), PAGE);
    let entry = header.e_entry(e) + SHIFT;

    // Headers: DOS stub, PE signature, COFF header, optional header, section table.
    const PE_OFFSET: usize = 0x40;
    let optional_size = 112 + 16 * 8;
    let headers_len = PE_OFFSET + 4 + 20 + optional_size + 40 * sections.len();
    let size_of_headers = align(headers_len as u64, FILE_ALIGN);
    if size_of_headers > SHIFT {
        bail!("too many sections for the headers' page");
    }
    let mut out = vec![0u8; size_of_headers as usize];
    out[0..2].copy_from_slice(b"MZ");
    out[0x3c..0x40].copy_from_slice(&(PE_OFFSET as u32).to_le_bytes());
    let mut h = Vec::with_capacity(headers_len);
    h.extend_from_slice(b"PE\0\0");
    h.extend_from_slice(&MACHINE_AMD64.to_le_bytes());
    h.extend_from_slice(&(sections.len() as u16).to_le_bytes());
    h.extend_from_slice(&[0; 12]); // time stamp, symbol table, symbol count
    h.extend_from_slice(&(optional_size as u16).to_le_bytes());
    h.extend_from_slice(&0x0022u16.to_le_bytes()); // executable image, large address aware
    let sum = |mask: u32| -> u32 {
        sections
            .iter()
            .filter(|s| s.characteristics & mask != 0)
            .map(|s| align(s.data.len() as u64, FILE_ALIGN) as u32)
            .sum()
    };
    let code_base = sections
        .iter()
        .find(|s| s.characteristics & SCN_CNT_CODE != 0)
        .map_or(SHIFT, |s| s.rva) as u32;
    h.extend_from_slice(&0x020bu16.to_le_bytes()); // PE32+
    h.extend_from_slice(&[0, 0]); // linker version
    h.extend_from_slice(&sum(SCN_CNT_CODE).to_le_bytes());
    h.extend_from_slice(&sum(SCN_CNT_INITIALIZED_DATA).to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // uninitialized data
    h.extend_from_slice(&(entry as u32).to_le_bytes());
    h.extend_from_slice(&code_base.to_le_bytes());
    h.extend_from_slice(&IMAGE_BASE.to_le_bytes());
    h.extend_from_slice(&(PAGE as u32).to_le_bytes());
    h.extend_from_slice(&(FILE_ALIGN as u32).to_le_bytes());
    h.extend_from_slice(&[0; 8]); // OS and image versions
    h.extend_from_slice(&[0; 4]); // subsystem version
    h.extend_from_slice(&0u32.to_le_bytes()); // Win32VersionValue
    h.extend_from_slice(&(size_of_image as u32).to_le_bytes());
    h.extend_from_slice(&(size_of_headers as u32).to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // checksum
    h.extend_from_slice(&SUBSYSTEM_EFI_APPLICATION.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes()); // DLL characteristics
    for v in [0x10000u64, 0x10000, 0x10000, 0] {
        h.extend_from_slice(&v.to_le_bytes()); // stack and heap reserve/commit
    }
    h.extend_from_slice(&0u32.to_le_bytes()); // loader flags
    h.extend_from_slice(&16u32.to_le_bytes()); // data directories
    for i in 0..16 {
        let (rva, size) = if i == 5 {
            (reloc_rva as u32, reloc_size as u32)
        } else {
            (0, 0)
        };
        h.extend_from_slice(&rva.to_le_bytes());
        h.extend_from_slice(&size.to_le_bytes());
    }
    let mut raw_at = size_of_headers;
    let mut raw = Vec::new();
    for s in &sections {
        let raw_size = align(s.data.len() as u64, FILE_ALIGN);
        h.extend_from_slice(&s.name);
        h.extend_from_slice(&(s.virtual_size as u32).to_le_bytes());
        h.extend_from_slice(&(s.rva as u32).to_le_bytes());
        h.extend_from_slice(&(raw_size as u32).to_le_bytes());
        h.extend_from_slice(&(if raw_size == 0 { 0 } else { raw_at } as u32).to_le_bytes());
        h.extend_from_slice(&[0; 12]); // line numbers, relocation counts
        h.extend_from_slice(&s.characteristics.to_le_bytes());
        raw.push((raw_at, &s.data));
        raw_at += raw_size;
    }
    out[PE_OFFSET..PE_OFFSET + h.len()].copy_from_slice(&h);
    out.resize(raw_at as usize, 0);
    for (at, d) in raw {
        out[at as usize..at as usize + d.len()].copy_from_slice(d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::read::pe::PeFile64;
    use object::{Object, ObjectSection};

    /// A minimal static-pie ELF: one R+X PT_LOAD with `code`, one RW PT_LOAD holding a
    /// pointer word, PT_DYNAMIC with DT_RELA naming `relas` (offset, info, addend).
    fn elf(relas: &[(u64, u64, u64)]) -> Vec<u8> {
        let mut d = vec![0u8; 0x3000];
        d[0..4].copy_from_slice(b"\x7fELF");
        d[4] = 2; // 64-bit
        d[5] = 1; // little endian
        d[6] = 1;
        d[16..18].copy_from_slice(&elf::ET_DYN.to_le_bytes());
        d[18..20].copy_from_slice(&elf::EM_X86_64.to_le_bytes());
        d[20..24].copy_from_slice(&1u32.to_le_bytes());
        d[24..32].copy_from_slice(&0x1010u64.to_le_bytes()); // entry
        d[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        d[52..54].copy_from_slice(&64u16.to_le_bytes());
        d[54..56].copy_from_slice(&56u16.to_le_bytes());
        d[56..58].copy_from_slice(&3u16.to_le_bytes());
        let ph = |d: &mut Vec<u8>, i: usize, t: u32, f: u32, off: u64, va: u64, sz: u64, msz: u64| {
            let at = 64 + 56 * i;
            d[at..at + 4].copy_from_slice(&t.to_le_bytes());
            d[at + 4..at + 8].copy_from_slice(&f.to_le_bytes());
            for (k, v) in [off, va, va, sz, msz, 0x1000].iter().enumerate() {
                d[at + 8 + 8 * k..at + 16 + 8 * k].copy_from_slice(&v.to_le_bytes());
            }
        };
        ph(
            &mut d,
            0,
            elf::PT_LOAD,
            elf::PF_R | elf::PF_X,
            0x1000,
            0x1000,
            0x100,
            0x100,
        );
        ph(
            &mut d,
            1,
            elf::PT_LOAD,
            elf::PF_R | elf::PF_W,
            0x2000,
            0x2000,
            0x800,
            0x3000,
        );
        ph(
            &mut d,
            2,
            elf::PT_DYNAMIC,
            elf::PF_R | elf::PF_W,
            0x2100,
            0x2100,
            0x40,
            0x40,
        );
        d[0x1010] = 0xc3; // ret
        let dynamic = [
            (elf::DT_RELA, 0x2200u64),
            (elf::DT_RELASZ, 24 * relas.len() as u64),
            (elf::DT_RELAENT, 24),
        ];
        for (i, (t, v)) in dynamic.iter().enumerate() {
            d[0x2100 + 16 * i..0x2108 + 16 * i].copy_from_slice(&u64::from(*t).to_le_bytes());
            d[0x2108 + 16 * i..0x2110 + 16 * i].copy_from_slice(&v.to_le_bytes());
        }
        for (i, (o, info, a)) in relas.iter().enumerate() {
            for (k, v) in [o, info, a].iter().enumerate() {
                d[0x2200 + 24 * i + 8 * k..0x2208 + 24 * i + 8 * k].copy_from_slice(&v.to_le_bytes());
            }
        }
        d
    }

    #[test]
    fn converts_sections_entry_and_relocations() -> Result<()> {
        let relative = u64::from(elf::R_X86_64_RELATIVE);
        let pe = from_elf(&elf(&[(0x2008, relative, 0x1010), (0x1020, relative, 0x2000)]))?;
        let f = PeFile64::parse(&*pe)?;
        let nt = f.nt_headers();
        assert_eq!(nt.file_header.machine.get(object::LittleEndian), MACHINE_AMD64);
        let opt = &nt.optional_header;
        assert_eq!(opt.subsystem.get(object::LittleEndian), SUBSYSTEM_EFI_APPLICATION);
        assert_eq!(opt.address_of_entry_point.get(object::LittleEndian), 0x2010);
        assert_eq!(opt.size_of_image.get(object::LittleEndian), 0x7000);
        let names: Vec<_> = f.sections().map(|s| s.name().unwrap_or("?").to_string()).collect();
        assert_eq!(names, [".text", ".data", ".reloc"]);
        let text = f.section_by_name(".text").context("text")?;
        assert_eq!(text.address(), IMAGE_BASE + 0x2000);
        assert_eq!(text.data()?[0x10], 0xc3);
        // The relocated word holds the preferred address of its target.
        let data = f.section_by_name(".data").context("data")?;
        assert_eq!(data.size(), 0x3000);
        assert_eq!(&data.data()?[8..16], &(IMAGE_BASE + 0x2010).to_le_bytes());
        // .reloc: two pages, one DIR64 entry each (plus padding).
        let reloc = f.section_by_name(".reloc").context("reloc")?;
        let r = reloc.data()?;
        let words: Vec<u32> = r
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        assert_eq!(words, [0x2000, 12, 0xa020, 0x3000, 12, 0xa008]);
        Ok(())
    }

    #[test]
    fn refuses_other_relocations_and_non_pie() {
        let glob_dat = u64::from(elf::R_X86_64_GLOB_DAT) | (1 << 32);
        let err = from_elf(&elf(&[(0x2008, glob_dat, 0)])).expect_err("GLOB_DAT");
        assert!(format!("{err:#}").contains("only R_X86_64_RELATIVE"), "{err:#}");
        let mut exec = elf(&[]);
        exec[16..18].copy_from_slice(&elf::ET_EXEC.to_le_bytes());
        assert!(from_elf(&exec).is_err());
        assert!(from_elf(b"MZ not an elf").is_err());
    }
}
