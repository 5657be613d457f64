//! `image build`: packages -> initramfs -> release (slot a) -> disk -> qcow2.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use config::release::Release;
use sha2::{Digest, Sha256};

use crate::initramfs::{self, Compression};
use crate::util::{copy, run, write};
use crate::{debs, disk};

/// LZ4: 19.3 MB of cpio become 8.1 MB (gzip and zstd -19: 6.9 and 5.6 MB), and the
/// kernel unpacks it almost as fast as the plain archive. Measured under TCG with
/// `-icount` (guest time counts instructions, so the host's load does not blur it), from
/// the kernel's start to `Run /init`: 12.1 s plain, 12.6 s lz4, 14.5 s zstd, 14.6 s
/// gzip (an earlier wall-clock run: 2-4 s more to init with gzip or zstd than plain).
/// The boot loader then reads 11 MB less.
pub const DEFAULT_COMPRESSION: Compression = Compression::Lz4;

pub struct Options {
    pub out: PathBuf,
    pub init: PathBuf,
    pub routerd: PathBuf,
    /// The UEFI loader as the ELF image/efiboot/ links (converted to PE32+ here).
    pub efiboot: PathBuf,
    pub compress: Compression,
    /// The build id in the version (`0.1.0+ID`); None: from git, else `local`.
    pub build_id: Option<String>,
    /// Where downloaded packages are kept; None: `out/cache`.
    pub cache: Option<PathBuf>,
}

pub fn os_release(build_id: &str) -> String {
    let v = env!("CARGO_PKG_VERSION");
    format!(
        "NAME=\"Router appliance\"\nID=router-appliance\nVERSION_ID={v}\nBUILD_ID={build_id}\n\
         PRETTY_NAME=\"Router appliance {v}+{build_id}\"\nHOME_URL=\"https://github.com/\"\n"
    )
}

/// A build id is a semver build-metadata word: letters, digits, dots and dashes.
pub fn check_build_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 40 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
        return Err(format!("build id {id:?}: 1 to 40 letters, digits, dots or dashes"));
    }
    Ok(())
}

/// `g<short commit>` (with `.dirty` when the tree has changes), `local` outside git.
fn build_id_from_git() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=9", "HEAD"]) {
        Some(commit) if !commit.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            format!("g{commit}{}", if dirty { ".dirty" } else { "" })
        }
        _ => "local".into(),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(p: &Path) -> Result<(u64, String)> {
    let data = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
    Ok((data.len() as u64, sha256_hex(&data)))
}

pub fn build(o: &Options) -> Result<()> {
    let started = Instant::now();
    for (what, p) in [("init", &o.init), ("routerd", &o.routerd), ("efiboot", &o.efiboot)] {
        if !p.is_file() {
            bail!(
                "{what} binary {} is missing: run qemu/build, which builds init, routerd and image/efiboot",
                p.display()
            );
        }
    }
    let cache = o.cache.clone().unwrap_or_else(|| o.out.join("cache"));
    let build_id = o.build_id.clone().unwrap_or_else(build_id_from_git);
    let version = format!("{}+{build_id}", env!("CARGO_PKG_VERSION"));
    let work = o.out.join("work");
    std::fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("cannot clean {}", work.display()))?;
    }
    let root = work.join("root");
    std::fs::create_dir_all(&root)?;

    // Packages.
    let debs::Kernel {
        meta,
        package: kpkg,
        version: kver,
    } = debs::kernel(&cache)?;
    let pkgs = debs::fetch_with_libraries(&cache, &[&kpkg, "nftables", "e2fsprogs", "libc6", "libgcc-s1"])?;
    let mut versions = format!("kernel {kver}\n");
    writeln!(versions, "linux-image-amd64 {}", debs::field(&meta, "Version")?)?;
    for (name, deb) in &pkgs {
        eprintln!("image: extracting {}", deb.display());
        debs::extract(deb, &root)?;
        writeln!(versions, "{name} {}", debs::field(deb, "Version")?)?;
    }
    writeln!(versions, "routerd {version}")?;
    let vmlinuz_src = root.join(format!("boot/vmlinuz-{kver}"));
    if !vmlinuz_src.is_file() {
        bail!("{} is not in package {kpkg}", vmlinuz_src.display());
    }

    // Initramfs.
    let osrel = os_release(&build_id);
    let (mut tree, summary) = initramfs::assemble(&initramfs::Inputs {
        root: &root,
        kver: &kver,
        init: &o.init,
        routerd: &o.routerd,
        versions: &versions,
        os_release: &osrel,
    })?;
    // The payload checksum: the kernel and the initramfs without the release file
    // (which carries the checksum).
    let (_, kernel_sum) = sha256_file(&vmlinuz_src)?;
    let cpio_sum = sha256_hex(&tree.write_cpio(Vec::new())?);
    let mut release = Release {
        version: version.clone(),
        payload: sha256_hex(format!("{kernel_sum}\n{cpio_sum}\n").as_bytes()),
        files: Vec::new(),
    };
    tree.file(
        config::release::RELEASE_FILE.trim_start_matches('/'),
        0o644,
        release.render().into_bytes(),
    );
    let cpio_path = work.join("initrd.cpio");
    let f = std::fs::File::create(&cpio_path)?;
    let mut f = tree.write_cpio(std::io::BufWriter::new(f))?;
    std::io::Write::flush(&mut f)?;
    drop(f);
    let initrd = o.out.join("initrd.img");
    initramfs::compress(&cpio_path, o.compress, &initrd)?;
    let vmlinuz = o.out.join("vmlinuz");
    copy(&vmlinuz_src, &vmlinuz)?;
    let versions_path = o.out.join("versions.txt");
    write(&versions_path, versions.as_bytes())?;
    let efi = crate::pe::from_elf(
        &std::fs::read(&o.efiboot).with_context(|| format!("cannot read {}", o.efiboot.display()))?,
    )
    .with_context(|| format!("{}: cannot make a UEFI application of it", o.efiboot.display()))?;
    let efi_path = o.out.join(disk::SLOT_LOADER);
    write(&efi_path, &efi)?;

    // Slot a: what an upgrade copies, each file with its checksum in the release file.
    for (name, path) in [
        ("vmlinuz", &vmlinuz),
        ("initrd.img", &initrd),
        ("versions.txt", &versions_path),
        (disk::SLOT_LOADER, &efi_path),
    ] {
        let (size, sum) = sha256_file(path)?;
        release.files.push((name.to_string(), size, sum));
    }
    let release_path = o.out.join("release");
    write(&release_path, release.render().as_bytes())?;
    let img = o.out.join("router.img");
    let tmp_img = o.out.join("router.img.tmp");
    let layout = disk::write(
        &tmp_img,
        &disk::Files {
            slot: vec![
                ("vmlinuz", vmlinuz.as_path()),
                ("initrd.img", initrd.as_path()),
                ("versions.txt", versions_path.as_path()),
                (disk::SLOT_LOADER, efi_path.as_path()),
                (config::release::SLOT_RELEASE_FILE_NAME, release_path.as_path()),
            ],
        },
        &work,
    )?;
    std::fs::rename(&tmp_img, &img)?;
    let qcow = o.out.join("router.qcow2");
    let tmp_qcow = o.out.join("router.qcow2.tmp");
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&img)
        .arg(&tmp_qcow))
    .context("qemu-img (Debian package qemu-utils)")?;
    std::fs::rename(&tmp_qcow, &qcow)?;

    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let qcow_used = run(Command::new("du").arg("-k").arg(&qcow)).unwrap_or_default();
    eprintln!(
        "image: kernel {kver}; {} modules (built in, skipped: {})",
        summary.modules.len(),
        if summary.builtin_skipped.is_empty() {
            "none".into()
        } else {
            summary.builtin_skipped.join(" ")
        }
    );
    eprintln!("image: libraries: {}", summary.libraries.join(" "));
    eprintln!(
        "image: initrd.img {} bytes ({:?}; cpio {} bytes), vmlinuz {} bytes",
        size(&initrd),
        o.compress,
        size(&cpio_path),
        size(&vmlinuz),
    );
    // A printout only: a kernel without the header still boots with SeaBIOS.
    match std::fs::read(&vmlinuz).map_err(anyhow::Error::from).and_then(|k| crate::bzimage::header(&k)) {
        Ok(h) => eprintln!(
            "image: the kernel unpacks itself in one {} MiB block from 16 MiB up (with OVMF, {} places it once the firmware is gone; README \"Figures\")",
            crate::bzimage::block_mib(&h),
            disk::SLOT_LOADER
        ),
        Err(e) => eprintln!("image: cannot read the kernel's boot header: {e:#}"),
    }
    eprintln!("image: release {}", release.display());
    eprintln!(
        "image: {} {} bytes (ESP {} MiB, {} {} MiB), {} {} KiB on disk",
        img.display(),
        layout.disk_size,
        layout.partitions[0].size() >> 20,
        config::image::STATE_PARTITION,
        layout.partitions[1].size() >> 20,
        qcow.display(),
        qcow_used.split_whitespace().next().unwrap_or("?")
    );
    // The extracted packages (hundreds of MB of modules) are not needed any more.
    std::fs::remove_dir_all(&root).with_context(|| format!("cannot clean {}", root.display()))?;
    eprintln!("image: built in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
