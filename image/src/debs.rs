//! Debian packages: `apt-get download` into a cache, `dpkg-deb` to read and extract.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::util::run;

const ATTEMPTS: u32 = 3;

/// The cached `.deb` of package `name`, downloaded when absent.
pub fn fetch(cache: &Path, name: &str) -> Result<PathBuf> {
    if let Some(p) = cached(cache, name)? {
        return Ok(p);
    }
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        eprintln!("image: apt-get download {name}");
        let out = Command::new("apt-get")
            .args(["download", "-q", name])
            .current_dir(cache)
            .output()
            .context("cannot run apt-get (Debian's package tool)")?;
        if out.status.success() {
            if let Some(p) = cached(cache, name)? {
                return Ok(p);
            }
            last = "apt-get reported success but no .deb appeared".into();
        } else {
            last = String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        eprintln!("image: download of {name} failed (attempt {attempt}/{ATTEMPTS}): {last}");
        if attempt < ATTEMPTS {
            std::thread::sleep(Duration::from_secs(u64::from(attempt) * 5));
            if attempt == 1 {
                // Stale package lists name versions the mirror no longer has.
                eprintln!("image: apt-get update");
                let _ = Command::new("apt-get").args(["update", "-q"]).status();
            }
        }
    }
    bail!(
        "downloading Debian package {name} failed after {ATTEMPTS} attempts: {last}\n\
         (is the Debian mirror reachable? has `apt-get update` run?)"
    )
}

fn cached(cache: &Path, name: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{name}_");
    let mut found = Vec::new();
    for e in std::fs::read_dir(cache).with_context(|| format!("cannot list {}", cache.display()))? {
        let e = e?;
        let f = e.file_name().to_string_lossy().into_owned();
        if f.starts_with(&prefix) && f.ends_with(".deb") {
            found.push(e.path());
        }
    }
    found.sort();
    Ok(found.pop())
}

/// One control field (`Depends`, `Version`, ...) of a `.deb`; empty when absent.
pub fn field(deb: &Path, name: &str) -> Result<String> {
    Ok(run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))?
        .trim()
        .to_string())
}

pub fn extract(deb: &Path, root: &Path) -> Result<()> {
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root))?;
    Ok(())
}

/// The Debian kernel package `linux-image-amd64` points at.
pub struct Kernel {
    /// The cached `.deb` of `linux-image-amd64` itself.
    pub meta: PathBuf,
    /// `linux-image-<version>`.
    pub package: String,
    /// The kernel version (`uname -r`, the folder under lib/modules).
    pub version: String,
}

pub fn kernel(cache: &Path) -> Result<Kernel> {
    let meta = fetch(cache, "linux-image-amd64")?;
    let package = parse_depends(&field(&meta, "Depends")?)
        .into_iter()
        .find(|d| d.starts_with("linux-image-"))
        .context("linux-image-amd64 names no linux-image-<kver> package in its Depends")?;
    let version = package.trim_start_matches("linux-image-").to_string();
    Ok(Kernel { meta, package, version })
}

/// Package names of a Depends line: the first of each set of alternatives,
/// without version constraints or architecture qualifiers.
pub fn parse_depends(line: &str) -> Vec<String> {
    line.split(',')
        .filter_map(|dep| {
            let first = dep.split('|').next()?.trim();
            let name = first.split([' ', '(', '[']).next()?.trim();
            let name = name.split(':').next()?;
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// Downloads `seeds` and, following Depends and Pre-Depends, the library
/// packages (`lib*`) they need. Returns package name -> .deb path.
pub fn fetch_with_libraries(cache: &Path, seeds: &[&str]) -> Result<BTreeMap<String, PathBuf>> {
    let mut got = BTreeMap::new();
    let mut todo: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
    while let Some(name) = todo.pop() {
        if got.contains_key(&name) {
            continue;
        }
        let deb = fetch(cache, &name)?;
        let mut deps = parse_depends(&field(&deb, "Pre-Depends")?);
        deps.extend(parse_depends(&field(&deb, "Depends")?));
        todo.extend(
            deps.into_iter()
                .filter(|d| d.starts_with("lib") && !got.contains_key(d)),
        );
        got.insert(name, deb);
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_lines() {
        assert_eq!(
            parse_depends("libnftables1 (= 1.0.6-2+deb12u2), libc6 (>= 2.34), libedit2 (>= 3.1-20130611-0)"),
            ["libnftables1", "libc6", "libedit2"]
        );
        assert_eq!(
            parse_depends("linux-image-6.1.0-56-amd64"),
            ["linux-image-6.1.0-56-amd64"]
        );
        assert_eq!(parse_depends("a | b, c:any (>= 1) [amd64]"), ["a", "c"]);
        assert!(parse_depends("").is_empty());
    }
}
