//! The shared libraries the initramfs binaries need: the DT_NEEDED closure,
//! looked up in the extracted Debian packages only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Where the packages put libraries (relative to the extraction root).
pub const LIB_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib64",
    "usr/lib64",
    "lib",
    "usr/lib",
];

/// Closure over DT_NEEDED. `needs_of(binary)` lists what `binary` (a start name or a
/// library name) needs; `find(lib)` says whether it exists. Returns every library
/// reached, or the ones missing with who needed them.
pub fn closure<F, N>(start: &[String], mut find: F, mut needs_of: N) -> Result<BTreeSet<String>>
where
    F: FnMut(&str) -> bool,
    N: FnMut(&str) -> Result<Vec<String>>,
{
    let mut found = BTreeSet::new();
    let mut missing: BTreeMap<String, String> = BTreeMap::new();
    let mut todo: Vec<(String, String)> = Vec::new();
    for s in start {
        for n in needs_of(s)? {
            todo.push((n, s.clone()));
        }
    }
    while let Some((lib, by)) = todo.pop() {
        if found.contains(&lib) || missing.contains_key(&lib) {
            continue;
        }
        if !find(&lib) {
            missing.insert(lib, by);
            continue;
        }
        for n in needs_of(&lib)? {
            todo.push((n, lib.clone()));
        }
        found.insert(lib);
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|(l, by)| format!("{l} (needed by {by})")).collect();
        bail!(
            "shared libraries not found in the extracted Debian packages: {}",
            list.join(", ")
        );
    }
    Ok(found)
}

/// Resolves `path` inside `root`, following symlinks (absolute ones relative to
/// `root`), to the real file.
pub fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut rel = PathBuf::from(path.trim_start_matches('/'));
    for _ in 0..40 {
        let full = root.join(&rel);
        let meta = std::fs::symlink_metadata(&full).ok()?;
        if !meta.file_type().is_symlink() {
            return meta.is_file().then_some(full);
        }
        let target = std::fs::read_link(&full).ok()?;
        rel = if target.is_absolute() {
            target.strip_prefix("/").ok()?.to_path_buf()
        } else {
            normalize(&rel.parent().unwrap_or(Path::new("")).join(target))?
        };
    }
    None
}

fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Some(out)
}

/// Finds library `soname` in `root`'s library directories.
pub fn find_lib(root: &Path, soname: &str) -> Option<PathBuf> {
    LIB_DIRS
        .iter()
        .find_map(|d| resolve_in_root(root, &format!("{d}/{soname}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_follows_libraries_of_libraries() -> Result<()> {
        let graph: BTreeMap<&str, Vec<&str>> = [
            ("nft", vec!["libnftables.so.1", "libc.so.6"]),
            ("libnftables.so.1", vec!["libmnl.so.0", "libc.so.6"]),
            ("libmnl.so.0", vec!["libc.so.6"]),
            ("libc.so.6", vec![]),
        ]
        .into();
        let needs = |b: &str| {
            Ok(graph
                .get(b)
                .map(|v| v.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default())
        };
        let found = closure(&["nft".into()], |l| graph.contains_key(l), needs)?;
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            ["libc.so.6", "libmnl.so.0", "libnftables.so.1"]
        );
        Ok(())
    }

    #[test]
    fn missing_library_is_named_with_who_needs_it() {
        let needs = |b: &str| {
            Ok(if b == "nft" {
                vec!["libgone.so.1".to_string()]
            } else {
                vec![]
            })
        };
        let err = closure(&["nft".into()], |_| false, needs)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("libgone.so.1 (needed by nft)"), "{err}");
    }

    #[test]
    fn symlinks_resolve_inside_the_root() -> Result<()> {
        let root = std::env::temp_dir().join(format!("libs-test-{}", std::process::id()));
        let lib = root.join("usr/lib/x86_64-linux-gnu");
        std::fs::create_dir_all(&lib)?;
        std::fs::create_dir_all(root.join("lib64"))?;
        std::fs::write(lib.join("libfoo.so.1.2.3"), b"x")?;
        std::os::unix::fs::symlink("libfoo.so.1.2.3", lib.join("libfoo.so.1"))?;
        std::os::unix::fs::symlink("/usr/lib/x86_64-linux-gnu/libfoo.so.1", root.join("lib64/libbar.so"))?;
        assert_eq!(find_lib(&root, "libfoo.so.1"), Some(lib.join("libfoo.so.1.2.3")));
        assert_eq!(
            resolve_in_root(&root, "/lib64/libbar.so"),
            Some(lib.join("libfoo.so.1.2.3"))
        );
        assert_eq!(find_lib(&root, "libnone.so"), None);
        std::fs::remove_dir_all(&root)?;
        Ok(())
    }
}
