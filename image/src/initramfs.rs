//! The initramfs of CONTRACT.md: init, routerd, nft, mke2fs, e2fsck, their libraries,
//! kernel modules in load order, and a few files under /etc.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::tree::Tree;
use crate::util::read;
use crate::{elf, libs, modules};

/// Modules the image carries (CONTRACT.md); dependencies are added automatically.
pub const MODULES: &[&str] = &[
    // virtio (the other NICs Proxmox offers are in ON_REQUEST)
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "virtio_scsi",
    "sd_mod",
    "virtio_console",
    // nftables with NAT, conntrack, flowtable
    "nf_tables",
    "nft_chain_nat",
    "nf_nat",
    "nf_conntrack",
    "nft_ct",
    "nft_nat",
    "nf_flow_table",
    "nf_flow_table_inet",
    "nft_flow_offload",
    "nft_fib_inet",
    "nft_reject_inet",
    "nft_masq",
    "nft_objref", // rules that count into named counters (one per forward)
    // forwards by name: `socket transparent` marks the replies to the proxy's
    // connections from clients' addresses
    "nft_socket",
    "nf_socket_ipv4",
    // IPv6 in the same inet table: conntrack's defragmentation and ICMPv6 rejects
    "nf_defrag_ipv6",
    "nf_reject_ipv6",
    // config disk (FAT or ISO 9660 on a CD-ROM) and the state partition
    "vfat",
    "fat",
    "nls_cp437",
    "nls_ascii",
    "nls_iso8859_1",
    "isofs",
    "sr_mod",
    "ext4",
    "jbd2",
    "mbcache",
    "crc16",
    "crc32c_generic",
    // ACPI power button
    "button",
    "evdev",
];

/// Modules loaded only when something asks for them (init, /etc/router/modules.alias):
/// at boot, loading all of them one by one under emulation cost as much as the rest of
/// init. A PCI driver loads when the machine has a device it drives; the others when
/// the kernel requests them (`/sbin/modprobe` is init's modprobe mode).
pub const ON_REQUEST: &[&str] = &[
    // the NICs Proxmox offers besides virtio
    "e1000",
    "e1000e",
    "vmxnet3",
    "8139too",
    // IDE and SATA controllers (Proxmox attaches cloud-init drives and ISOs as CD-ROMs)
    "ata_piix",
    "ahci",
    // 802.1Q VLAN interfaces for VLAN LANs (`rtnl-link-vlan`; garp, mrp, stp, llc
    // come as dependencies)
    "8021q",
    // WireGuard (`[wireguard]`: `rtnl-link-wireguard`); its crypto (libcurve25519,
    // libchacha20poly1305...) and udp_tunnel/ip6_udp_tunnel come as dependencies
    "wireguard",
    // the one-shot EFI variable of an upgrade's trial boot (UEFI: `fs-efivarfs`)
    "efivarfs",
];

/// Soft dependencies name crypto algorithms, not modules: the module that provides
/// each (Debian's kernel has no modules.alias to look them up).
pub const SOFTDEP_PROVIDERS: &[(&str, &str)] = &[("crc32c", "crc32c_generic")];

pub const LIB_DIR: &str = "lib/x86_64-linux-gnu";
pub const INTERP: &str = "/lib64/ld-linux-x86-64.so.2";

pub struct Inputs<'a> {
    /// Where the Debian packages were extracted.
    pub root: &'a Path,
    pub kver: &'a str,
    pub init: &'a Path,
    pub routerd: &'a Path,
    pub versions: &'a str,
    pub os_release: &'a str,
}

/// What went in, for the build's summary.
pub struct Summary {
    pub libraries: Vec<String>,
    pub modules: Vec<String>,
    pub builtin_skipped: Vec<String>,
}

pub fn assemble(i: &Inputs) -> Result<(Tree, Summary)> {
    let mut t = Tree::new();
    for d in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "state",
        "config",
        "root",
        "usr/bin",
        "etc/router",
    ] {
        t.dir(d);
    }
    t.symlink("bin", "usr/bin");
    t.symlink("sbin", "usr/sbin");
    t.char_dev("dev/console", 0o600, 5, 1);
    t.char_dev("dev/null", 0o666, 1, 3);

    let nft = find_binary(i.root, "nft")?;
    let mke2fs = find_binary(i.root, "mke2fs")?;
    let e2fsck = find_binary(i.root, "e2fsck")?;
    let binaries: Vec<(&str, PathBuf)> = vec![
        ("init", i.init.to_path_buf()),
        (config::image::ROUTERD.trim_start_matches('/'), i.routerd.to_path_buf()),
        ("usr/sbin/nft", nft),
        ("usr/sbin/mke2fs", mke2fs),
        ("usr/sbin/e2fsck", e2fsck),
    ];
    let libraries = add_binaries(&mut t, i.root, &binaries)?;
    if let Some(conf) = libs::resolve_in_root(i.root, "etc/mke2fs.conf") {
        t.file("etc/mke2fs.conf", 0o644, read(&conf)?);
    }

    // Kernel modules in load order.
    let added = add_modules(&mut t, i.root, i.kver, MODULES, ON_REQUEST)?;
    let (list, builtin_skipped) = (added.boot, added.builtin_skipped);
    t.file(
        "etc/router/modules",
        0o644,
        list.iter().map(|m| format!("{m}\n")).collect::<String>().into_bytes(),
    );
    t.file("etc/router/modules.alias", 0o644, added.aliases.into_bytes());
    t.file("etc/router/modules.dep", 0o644, added.deps.into_bytes());
    // init's modprobe mode, which init makes the kernel's modprobe once booted.
    t.dir("usr/lib/router");
    t.symlink("usr/lib/router/modprobe", "/init");
    t.file("etc/router/versions", 0o644, i.versions.as_bytes().to_vec());
    t.file("etc/os-release", 0o644, i.os_release.as_bytes().to_vec());
    t.symlink("usr/lib/os-release", "../../etc/os-release");

    Ok((
        t,
        Summary {
            libraries,
            modules: list,
            builtin_skipped,
        },
    ))
}

/// Puts `binaries` (destination in the tree, ELF file) into `t` with the shared
/// libraries they need (the DT_NEEDED closure, from the packages extracted in `root`
/// only) and the dynamic loader; returns the libraries' names.
pub fn add_binaries(t: &mut Tree, root: &Path, binaries: &[(&str, PathBuf)]) -> Result<Vec<String>> {
    let mut needs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (dest, src) in binaries {
        let data = read(src)?;
        let n = elf::needs(&data).with_context(|| format!("{}: cannot read its ELF headers", src.display()))?;
        if let Some(interp) = &n.interp {
            if interp != INTERP {
                bail!(
                    "{} wants the interpreter {interp}, the image has {INTERP}",
                    src.display()
                );
            }
        }
        needs.insert(dest.to_string(), n.needed);
        t.file(dest, 0o755, data);
    }

    // Shared libraries: the DT_NEEDED closure, from the packages only.
    let starts: Vec<String> = needs.keys().cloned().collect();
    let mut lib_needs = |name: &str| -> Result<Vec<String>> {
        if let Some(n) = needs.get(name) {
            return Ok(n.clone());
        }
        let path = libs::find_lib(root, name).with_context(|| format!("{name} vanished"))?;
        Ok(elf::needs(&read(&path)?)
            .with_context(|| format!("{}", path.display()))?
            .needed)
    };
    let found = libs::closure(&starts, |l| libs::find_lib(root, l).is_some(), &mut lib_needs)?;
    for lib in &found {
        let path = libs::find_lib(root, lib).with_context(|| format!("{lib} vanished"))?;
        t.file(&format!("{LIB_DIR}/{lib}"), 0o755, read(&path)?);
    }
    let interp_name = INTERP.rsplit('/').next().unwrap_or_default();
    let ld = libs::resolve_in_root(root, INTERP)
        .with_context(|| format!("{INTERP} is not in the extracted libc6 package"))?;
    t.file(&format!("{LIB_DIR}/{interp_name}"), 0o755, read(&ld)?);
    t.symlink(INTERP.trim_start_matches('/'), &format!("/{LIB_DIR}/{interp_name}"));

    let mut libraries: Vec<String> = found.into_iter().collect();
    if !libraries.iter().any(|l| l == interp_name) {
        libraries.push(interp_name.to_string());
    }
    Ok(libraries)
}

pub fn find_binary(root: &Path, name: &str) -> Result<PathBuf> {
    ["usr/sbin", "sbin", "usr/bin", "bin"]
        .iter()
        .find_map(|d| libs::resolve_in_root(root, &format!("{d}/{name}")))
        .with_context(|| format!("{name} is not in the extracted Debian packages"))
}

/// The modules [`add_modules`] put into the tree.
pub struct AddedModules {
    /// The `wanted` modules and their dependencies, in load order (paths relative to
    /// lib/modules/<kver>/).
    pub boot: Vec<String>,
    /// Wanted modules that are built into the kernel.
    pub builtin_skipped: Vec<String>,
    /// modules.alias: `<alias pattern> <module>` lines for the on-request modules (each
    /// also under its own name).
    pub aliases: String,
    /// modules.dep: `<module> <path>...` lines, each on-request module with its
    /// dependencies in load order, the module itself last.
    pub deps: String,
}

/// Adds the `wanted` and `on_request` modules and their dependencies (uncompressed)
/// under lib/modules/<kver>/; `boot` is the load order of `wanted`.
pub fn add_modules(
    t: &mut Tree,
    root: &Path,
    kver: &str,
    wanted: &[&str],
    on_request: &[&str],
) -> Result<AddedModules> {
    let moddir = root.join("lib/modules").join(kver);
    if !moddir.is_dir() {
        bail!("{} is missing: the kernel package has no modules", moddir.display());
    }
    // name -> path relative to moddir
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    walk(&moddir, &moddir, &mut |rel| {
        if let Some(name) = modules::module_name(rel) {
            paths.insert(name, rel.to_string());
        }
    })?;
    let builtin = builtin_modules(&moddir, &root.join(format!("boot/config-{kver}")))?;

    // Read .modinfo of every module reachable from the wanted and on-request ones.
    let mut available: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut optional: BTreeSet<(String, String)> = BTreeSet::new();
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut todo: Vec<String> = wanted.iter().chain(on_request).map(|m| modules::normalize(m)).collect();
    while let Some(name) = todo.pop() {
        if available.contains_key(&name) || builtin.contains(&name) {
            continue;
        }
        let Some(rel) = paths.get(&name) else { continue };
        let ko = decompress(&moddir.join(rel))?;
        let info = modules::modinfo_of_ko(&ko).with_context(|| format!("module {rel}"))?;
        let deps = modules::dependencies(&info);
        aliases.insert(name.clone(), modules::aliases(&info));
        let soft: Vec<String> = deps
            .soft
            .iter()
            .map(|s| {
                let provider = SOFTDEP_PROVIDERS
                    .iter()
                    .find(|(alias, _)| alias == s)
                    .map(|(_, m)| m.to_string());
                provider.unwrap_or_else(|| s.clone())
            })
            .collect();
        for s in &soft {
            optional.insert((name.clone(), s.clone()));
        }
        let mut all = deps.hard;
        all.extend(soft);
        todo.extend(all.iter().cloned());
        available.insert(name.clone(), all);
        data.insert(name, modules::without_signature(&ko).to_vec());
    }
    let relative_ko = |name: &str| strip_compression(&paths[name]);
    let mut added: BTreeSet<String> = BTreeSet::new();
    let mut add = |t: &mut Tree, name: &str| {
        if added.insert(name.to_string()) {
            let ko = data.remove(name).unwrap_or_default();
            t.file(&format!("lib/modules/{kver}/{}", relative_ko(name)), 0o644, ko);
        }
    };
    let order = modules::load_order(wanted, &available, &builtin, &optional)?;
    let skipped: Vec<String> = wanted
        .iter()
        .map(|m| modules::normalize(m))
        .filter(|m| builtin.contains(m))
        .collect();
    let mut boot = Vec::new();
    for name in order {
        add(t, &name);
        boot.push(relative_ko(&name));
    }
    let (mut alias_lines, mut dep_lines) = (String::new(), String::new());
    for m in on_request {
        let name = modules::normalize(m);
        if builtin.contains(&name) {
            continue;
        }
        let order = modules::load_order(&[m], &available, &builtin, &optional)?;
        let mut line = name.clone();
        for dep in &order {
            add(t, dep);
            line.push(' ');
            line.push_str(&relative_ko(dep));
        }
        dep_lines.push_str(&line);
        dep_lines.push('\n');
        alias_lines.push_str(&format!("{name} {name}\n"));
        for alias in aliases.get(&name).into_iter().flatten() {
            alias_lines.push_str(&format!("{alias} {name}\n"));
        }
    }
    Ok(AddedModules {
        boot,
        builtin_skipped: skipped,
        aliases: alias_lines,
        deps: dep_lines,
    })
}

fn strip_compression(rel: &str) -> String {
    for ext in [".xz", ".zst", ".gz"] {
        if let Some(s) = rel.strip_suffix(ext) {
            return s.to_string();
        }
    }
    rel.to_string()
}

/// `.ko` as is; `.ko.xz`/`.ko.zst`/`.ko.gz` decompressed with the host's tool.
fn decompress(path: &Path) -> Result<Vec<u8>> {
    let tool = match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => return read(path),
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {tool} to decompress {}", path.display()))?;
    if !out.status.success() {
        bail!("{tool} -dc {} failed", path.display());
    }
    Ok(out.stdout)
}

/// Modules built into the kernel: the kernel's own modules.builtin list
/// (it names every object configured `=y` that could have been a module).
fn builtin_modules(moddir: &Path, config: &Path) -> Result<BTreeSet<String>> {
    if !config.is_file() {
        bail!("{} is missing from the kernel package", config.display());
    }
    let list = moddir.join("modules.builtin");
    let text = std::fs::read_to_string(&list).with_context(|| format!("cannot read {}", list.display()))?;
    Ok(text.lines().filter_map(modules::module_name).collect())
}

fn walk(base: &Path, dir: &Path, f: &mut dyn FnMut(&str)) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            walk(base, &p, f)?;
        } else if let Ok(rel) = p.strip_prefix(base) {
            f(&rel.to_string_lossy());
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// LZ4's legacy frame (the one the kernel's initramfs unpacker reads).
    Lz4,
}

impl Compression {
    pub fn parse(s: &str) -> Result<Compression> {
        Ok(match s {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "zstd" => Compression::Zstd,
            "lz4" => Compression::Lz4,
            _ => bail!("unknown compression {s:?}: none, gzip, zstd or lz4"),
        })
    }
}

/// Compresses the cpio archive with the host's gzip/zstd/lz4 (the kernel reads all three).
pub fn compress(cpio: &Path, how: Compression, out: &Path) -> Result<()> {
    let (tool, args): (&str, &[&str]) = match how {
        Compression::None => {
            std::fs::copy(cpio, out).with_context(|| format!("cannot write {}", out.display()))?;
            return Ok(());
        }
        Compression::Gzip => ("gzip", &["-9", "-n", "-c"]),
        // The kernel's zstd decoder wants a bounded window: no --ultra/--long.
        Compression::Zstd => ("zstd", &["-19", "-q", "-c"]),
        // -l: the legacy format, the only one the kernel unpacks.
        Compression::Lz4 => ("lz4", &["-l", "-12", "-q", "-c"]),
    };
    let file = std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?;
    let status = Command::new(tool)
        .args(args)
        .arg(cpio)
        .stdout(file)
        .status()
        .with_context(|| format!("cannot run {tool}"))?;
    if !status.success() {
        bail!("{tool} failed on {}", cpio.display());
    }
    Ok(())
}
