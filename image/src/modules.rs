//! Kernel modules: `.modinfo` parsing and load order (dependencies first).
//! Debian's kernel package ships no modules.dep, so the order comes from each
//! module's own `depends=` (and `softdep=pre:`) entries.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use object::{Object, ObjectSection};

/// The key=value strings of a `.modinfo` section (NUL separated).
pub fn parse_modinfo(section: &[u8]) -> Vec<(String, String)> {
    section
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let s = std::str::from_utf8(entry).ok()?;
            let (k, v) = s.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Modules to load before this one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deps {
    /// `depends=`: the module does not load without them.
    pub hard: Vec<String>,
    /// `softdep=pre:`: loaded first when present (e.g. crc32c for ext4).
    pub soft: Vec<String>,
}

pub fn dependencies(info: &[(String, String)]) -> Deps {
    let mut deps = Deps::default();
    for (k, v) in info {
        match k.as_str() {
            "depends" => deps
                .hard
                .extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(normalize)),
            "softdep" => {
                // "pre: a b post: c"
                let mut pre = false;
                for word in v.split_whitespace() {
                    match word {
                        "pre:" => pre = true,
                        "post:" => pre = false,
                        w if pre => deps.soft.push(normalize(w)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    deps
}

/// The `.modinfo` entries of one `.ko` file.
pub fn modinfo_of_ko(data: &[u8]) -> anyhow::Result<Vec<(String, String)>> {
    let file = object::File::parse(data)?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or_else(|| anyhow::anyhow!("no .modinfo section"))?;
    Ok(parse_modinfo(section.data()?))
}

/// The trailer the kernel's sign-file appends: signature, a 12-byte descriptor
/// whose last 4 bytes are the signature's length (big endian), then this magic.
const SIGNATURE_MAGIC: &[u8] = b"~Module signature appended~\n";

/// The module without its appended signature (as is when it has none). Checking a
/// signature costs each load under emulation, and guards nothing here: the kernel
/// does not insist on signatures (no Secure Boot), and nothing verifies the
/// initramfs the modules come in. The kernel taints itself (`E`) once.
pub fn without_signature(ko: &[u8]) -> &[u8] {
    let Some(body) = ko.strip_suffix(SIGNATURE_MAGIC) else {
        return ko;
    };
    let Some(descriptor) = body.len().checked_sub(12).and_then(|at| body.get(at..)) else {
        return ko;
    };
    let len = descriptor
        .get(8..12)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(usize::MAX, |b| u32::from_be_bytes(b) as usize);
    match (body.len() - 12).checked_sub(len) {
        Some(end) => &ko[..end],
        None => ko,
    }
}

/// The names a module answers to besides its own (`alias=`): device patterns
/// (`pci:v00008086d0000100Esv*sd*bc*sc*i*`) and what the kernel requests
/// (`rtnl-link-vlan`, `fs-efivarfs`).
pub fn aliases(info: &[(String, String)]) -> Vec<String> {
    info.iter()
        .filter(|(k, v)| k == "alias" && !v.is_empty() && !v.contains(char::is_whitespace))
        .map(|(_, v)| v.clone())
        .collect()
}

/// The kernel's name for a module: file name without `.ko[.xz|.zst|.gz]`, `-` as `_`.
pub fn module_name(path: &str) -> Option<String> {
    let base = path.rsplit('/').next()?;
    let stem = ["ko", "ko.xz", "ko.zst", "ko.gz"]
        .iter()
        .find_map(|ext| base.strip_suffix(&format!(".{ext}")))?;
    Some(normalize(stem))
}

pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

#[derive(Debug, PartialEq, Eq)]
pub enum OrderError {
    /// `module` is neither shipped nor built in; `needed_by` names who wanted it.
    Missing {
        module: String,
        needed_by: Option<String>,
    },
    Cycle(Vec<String>),
}

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderError::Missing {
                module,
                needed_by: Some(by),
            } => {
                write!(
                    f,
                    "module {module} (needed by {by}) is neither in the kernel package nor built in"
                )
            }
            OrderError::Missing {
                module,
                needed_by: None,
            } => {
                write!(f, "module {module} is neither in the kernel package nor built in")
            }
            OrderError::Cycle(c) => write!(f, "module dependency cycle: {}", c.join(" -> ")),
        }
    }
}

impl std::error::Error for OrderError {}

/// Orders `wanted` and everything they depend on, dependencies first.
/// `available` maps each shipped module to its dependencies; names in `builtin` are
/// skipped. A soft dependency that is missing is ignored; a hard one is an error —
/// the caller passes soft ones in `optional`.
pub fn load_order(
    wanted: &[&str],
    available: &BTreeMap<String, Vec<String>>,
    builtin: &BTreeSet<String>,
    optional: &BTreeSet<(String, String)>,
) -> Result<Vec<String>, OrderError> {
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    let mut stack = Vec::new();
    for w in wanted {
        visit(
            &normalize(w),
            None,
            available,
            builtin,
            optional,
            &mut done,
            &mut stack,
            &mut order,
        )?;
    }
    Ok(order)
}

#[allow(clippy::too_many_arguments)]
fn visit(
    name: &str,
    parent: Option<&str>,
    available: &BTreeMap<String, Vec<String>>,
    builtin: &BTreeSet<String>,
    optional: &BTreeSet<(String, String)>,
    done: &mut BTreeSet<String>,
    stack: &mut Vec<String>,
    order: &mut Vec<String>,
) -> Result<(), OrderError> {
    if done.contains(name) || builtin.contains(name) {
        return Ok(());
    }
    if let Some(pos) = stack.iter().position(|s| s == name) {
        let mut cycle = stack[pos..].to_vec();
        cycle.push(name.to_string());
        return Err(OrderError::Cycle(cycle));
    }
    let Some(deps) = available.get(name) else {
        if let Some(p) = parent {
            if optional.contains(&(p.to_string(), name.to_string())) {
                return Ok(());
            }
        }
        return Err(OrderError::Missing {
            module: name.to_string(),
            needed_by: parent.map(str::to_string),
        });
    };
    stack.push(name.to_string());
    for d in deps {
        visit(d, Some(name), available, builtin, optional, done, stack, order)?;
    }
    stack.pop();
    done.insert(name.to_string());
    order.push(name.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn parses_modinfo_and_depends() {
        let raw = b"license=GPL\0depends=nf_conntrack,nf_tables,nf-nat\0softdep=pre: crc32c post: foo\0\0name=x\0alias=rtnl-link-vlan\0alias=pci:v*d*sv*sd*bc01sc06i01*\0";
        let info = parse_modinfo(raw);
        assert_eq!(aliases(&info), ["rtnl-link-vlan", "pci:v*d*sv*sd*bc01sc06i01*"]);
        assert!(info.contains(&("license".into(), "GPL".into())));
        let d = dependencies(&info);
        assert_eq!(d.hard, ["nf_conntrack", "nf_tables", "nf_nat"]);
        assert_eq!(d.soft, ["crc32c"]);
        assert_eq!(dependencies(&parse_modinfo(b"depends=\0")), Deps::default());
    }

    #[test]
    fn the_appended_signature_is_cut_off() {
        let mut ko = b"\x7fELF module body".to_vec();
        let signed_len = ko.len();
        ko.extend_from_slice(b"SIGNATURE");
        ko.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        ko.extend_from_slice(SIGNATURE_MAGIC);
        assert_eq!(without_signature(&ko), &ko[..signed_len]);
        let unsigned = b"\x7fELF no signature".to_vec();
        assert_eq!(without_signature(&unsigned), &unsigned[..]);
        // A length longer than the file: left as it is.
        let mut bad = b"x".to_vec();
        bad.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        bad.extend_from_slice(SIGNATURE_MAGIC);
        assert_eq!(without_signature(&bad), &bad[..]);
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(
            module_name("kernel/fs/nls/nls_iso8859-1.ko").as_deref(),
            Some("nls_iso8859_1")
        );
        assert_eq!(module_name("kernel/net/x/nf_nat.ko.xz").as_deref(), Some("nf_nat"));
        assert_eq!(module_name("kernel/modules.order"), None);
    }

    #[test]
    fn dependencies_come_first_and_once() {
        let avail = map(&[
            ("nft_nat", &["nf_nat", "nf_tables"]),
            ("nf_nat", &["nf_conntrack", "libcrc32c"]),
            ("nf_conntrack", &["nf_defrag_ipv4", "libcrc32c"]),
            ("nf_defrag_ipv4", &[]),
            ("libcrc32c", &[]),
            ("nf_tables", &["nfnetlink", "libcrc32c"]),
            ("nfnetlink", &[]),
        ]);
        let order = load_order(&["nft_nat", "nf_tables"], &avail, &BTreeSet::new(), &BTreeSet::new());
        let order = order.unwrap_or_default();
        assert_eq!(order.len(), 7);
        let pos = |n: &str| order.iter().position(|m| m == n).unwrap_or(usize::MAX);
        for (m, deps) in &avail {
            for d in deps {
                assert!(pos(d) < pos(m), "{d} before {m}: {order:?}");
            }
        }
    }

    #[test]
    fn builtin_modules_are_skipped() {
        let avail = map(&[("vfat", &["fat"]), ("fat", &[])]);
        let builtin: BTreeSet<String> = ["fat".to_string(), "virtio_pci".to_string()].into();
        let order = load_order(&["virtio_pci", "vfat"], &avail, &builtin, &BTreeSet::new());
        assert_eq!(order, Ok(vec!["vfat".to_string()]));
    }

    #[test]
    fn missing_and_cycles_are_errors() {
        let avail = map(&[("a", &["b"]), ("b", &["a"]), ("c", &["zz"])]);
        let none: BTreeSet<String> = BTreeSet::new();
        let noopt: BTreeSet<(String, String)> = BTreeSet::new();
        assert!(matches!(
            load_order(&["a"], &avail, &none, &noopt),
            Err(OrderError::Cycle(_))
        ));
        assert_eq!(
            load_order(&["c"], &avail, &none, &noopt),
            Err(OrderError::Missing {
                module: "zz".into(),
                needed_by: Some("c".into())
            })
        );
        let opt: BTreeSet<(String, String)> = [("c".to_string(), "zz".to_string())].into();
        assert_eq!(load_order(&["c"], &avail, &none, &opt), Ok(vec!["c".to_string()]));
        let e = load_order(&["nope"], &avail, &none, &noopt);
        assert_eq!(
            e,
            Err(OrderError::Missing {
                module: "nope".into(),
                needed_by: None
            })
        );
    }
}
