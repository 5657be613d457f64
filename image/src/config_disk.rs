//! `image config`: validate a router.toml with routerd's own validator and write
//! it to a whole-disk FAT image labelled ROUTERCFG.

use std::path::Path;

use anyhow::{Context, Result};
use config::image::{CONFIG_FILE_NAME, CONFIG_LABEL};

use crate::util::{mtools, run};

/// 2 MiB: a FAT12 volume with room for any router.toml.
const SECTORS: u64 = 4096;

/// Returns false (after printing every error, as `routerd check` does) when the
/// config is invalid and `check` is set.
pub fn write(input: &Path, out: &Path, check: bool) -> Result<bool> {
    let text = std::fs::read_to_string(input).with_context(|| format!("cannot read {}", input.display()))?;
    if check {
        if let Err(e) = config::Config::parse(&text, &input.display().to_string()) {
            eprintln!("{e}");
            return Ok(false);
        }
    }
    let tmp = out.with_extension("img.tmp");
    let _ = std::fs::remove_file(&tmp);
    run(mtools("mformat").arg("-C").arg("-i").arg(&tmp).args([
        "-T",
        &SECTORS.to_string(),
        "-h",
        "2",
        "-s",
        "32",
        "-v",
        CONFIG_LABEL,
        "::",
    ]))?;
    run(mtools("mcopy")
        .arg("-i")
        .arg(&tmp)
        .arg(input)
        .arg(format!("::{CONFIG_FILE_NAME}")))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_mtools() -> bool {
        std::process::Command::new("mformat").arg("--version").output().is_ok()
    }

    #[test]
    fn writes_a_fat_disk_labelled_routercfg() -> Result<()> {
        if !have_mtools() {
            return Ok(());
        }
        let dir = std::env::temp_dir().join(format!("config-disk-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let toml = dir.join("router.toml");
        let text = "[wan]\nmac = \"02:00:00:00:00:10\"\naddress = \"203.0.113.10/32\"\n\
                    gateway = \"203.0.113.254\"\ndns = [\"198.51.100.53\"]\n\n[lan]\naddress = \"172.16.0.1/16\"\n";
        std::fs::write(&toml, text)?;
        let img = dir.join("config.img");
        assert!(write(&toml, &img, true)?);
        let disk = std::fs::read(&img)?;
        assert_eq!(
            &disk[43..52],
            CONFIG_LABEL.as_bytes(),
            "FAT12/16 volume label in the boot sector"
        );
        assert_eq!(&disk[510..512], &[0x55, 0xAA]);
        let copy = dir.join("back.toml");
        run(mtools("mcopy")
            .arg("-i")
            .arg(&img)
            .arg(format!("::{CONFIG_FILE_NAME}"))
            .arg(&copy))?;
        assert_eq!(std::fs::read_to_string(&copy)?, text);

        // Invalid: refused unless unchecked.
        std::fs::write(&toml, text.replace("00:10", "00:1g"))?;
        let _ = std::fs::remove_file(&img);
        assert!(!write(&toml, &img, true)?);
        assert!(!img.exists());
        assert!(write(&toml, &img, false)?);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
