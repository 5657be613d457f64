//! What a dynamically linked ELF needs at run time: PT_INTERP and DT_NEEDED.

use anyhow::{bail, Context, Result};
use object::elf;
use object::read::elf::{Dyn, ElfFile64, ProgramHeader};
use object::Endianness;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub interp: Option<String>,
    pub needed: Vec<String>,
}

pub fn needs(data: &[u8]) -> Result<Needs> {
    let file = ElfFile64::<Endianness>::parse(data).context("not a 64-bit ELF file")?;
    let endian = file.endian();
    let mut out = Needs::default();
    for ph in file.elf_program_headers() {
        if let Some(interp) = ph.interpreter(endian, data)? {
            out.interp = Some(String::from_utf8_lossy(interp).into_owned());
        }
    }
    let sections = file.elf_section_table();
    if let Some((dynamic, link)) = sections.dynamic(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        for d in dynamic {
            if d.d_tag(endian) == u64::from(elf::DT_NEEDED) {
                let name = d.string(endian, strings).context("bad DT_NEEDED string")?;
                out.needed.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    } else if out.interp.is_some() {
        bail!("has an interpreter but no dynamic section");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_test_binary_itself() -> Result<()> {
        let exe = std::fs::read(std::env::current_exe()?)?;
        let n = needs(&exe)?;
        if n.interp.is_some() {
            assert!(n.needed.iter().any(|l| l.starts_with("libc.so")), "{n:?}");
        }
        Ok(())
    }

    #[test]
    fn rejects_non_elf() {
        assert!(needs(b"#!/bin/sh\n").is_err());
    }
}
