//! `image build`: packages -> initramfs -> UKI -> disk -> qcow2.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::initramfs::{self, Compression};
use crate::util::{copy, run, write};
use crate::{debs, disk, uki};

/// Chosen by measuring boot time under TCG: the kernel decompressing the initramfs
/// costs more than loading the bigger file (SeaBIOS: 6.1-8.9 s to init uncompressed,
/// 10.5-12.6 s gzip or zstd; OVMF: 15.0-15.4 s uncompressed, 17.3-17.8 s gzip, 15.2-16.3 s zstd).
pub const DEFAULT_COMPRESSION: Compression = Compression::None;

pub struct Options {
    pub out: PathBuf,
    pub init: PathBuf,
    pub routerd: PathBuf,
    pub compress: Compression,
}

pub fn os_release() -> String {
    let v = env!("CARGO_PKG_VERSION");
    format!(
        "NAME=\"Router appliance\"\nID=router-appliance\nVERSION_ID={v}\n\
         PRETTY_NAME=\"Router appliance {v}\"\nHOME_URL=\"https://github.com/\"\n"
    )
}

pub fn build(o: &Options) -> Result<()> {
    let started = Instant::now();
    for (what, p) in [("init", &o.init), ("routerd", &o.routerd)] {
        if !p.is_file() {
            bail!(
                "{what} binary {} is missing: run `cargo build --release -p init -p routerd` (qemu/build does)",
                p.display()
            );
        }
    }
    let cache = o.out.join("cache");
    let work = o.out.join("work");
    std::fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("cannot clean {}", work.display()))?;
    }
    let root = work.join("root");
    std::fs::create_dir_all(&root)?;

    // Packages.
    let meta = debs::fetch(&cache, "linux-image-amd64")?;
    let kpkg = debs::parse_depends(&debs::field(&meta, "Depends")?)
        .into_iter()
        .find(|d| d.starts_with("linux-image-"))
        .context("linux-image-amd64 names no linux-image-<kver> package in its Depends")?;
    let kver = kpkg.trim_start_matches("linux-image-").to_string();
    let pkgs = debs::fetch_with_libraries(&cache, &[&kpkg, "nftables", "e2fsprogs", "libc6", "libgcc-s1"])?;
    let mut versions = format!("kernel {kver}\n");
    writeln!(versions, "linux-image-amd64 {}", debs::field(&meta, "Version")?)?;
    for (name, deb) in &pkgs {
        eprintln!("image: extracting {}", deb.display());
        debs::extract(deb, &root)?;
        writeln!(versions, "{name} {}", debs::field(deb, "Version")?)?;
    }
    writeln!(versions, "routerd {}", env!("CARGO_PKG_VERSION"))?;
    let vmlinuz_src = root.join(format!("boot/vmlinuz-{kver}"));
    if !vmlinuz_src.is_file() {
        bail!("{} is not in package {kpkg}", vmlinuz_src.display());
    }

    // Initramfs.
    let osrel = os_release();
    let (tree, summary) = initramfs::assemble(&initramfs::Inputs {
        root: &root,
        kver: &kver,
        init: &o.init,
        routerd: &o.routerd,
        versions: &versions,
        os_release: &osrel,
    })?;
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

    // UKI and disk.
    let osrel_path = work.join("os-release");
    write(&osrel_path, osrel.as_bytes())?;
    let cmdline_path = work.join("cmdline");
    write(&cmdline_path, disk::CMDLINE.as_bytes())?;
    let uki_path = work.join("BOOTX64.EFI");
    uki::build(
        Path::new(uki::STUB),
        &osrel_path,
        &cmdline_path,
        &initrd,
        &vmlinuz,
        &uki_path,
    )
    .context("systemd-boot-efi's stub (Debian package systemd-boot-efi)")?;
    let img = o.out.join("router.img");
    let tmp_img = o.out.join("router.img.tmp");
    let layout = disk::write(
        &tmp_img,
        &disk::Files {
            vmlinuz: &vmlinuz,
            initrd: &initrd,
            uki: &uki_path,
            versions: &versions_path,
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
        "image: initrd.img {} bytes ({:?}; cpio {} bytes), vmlinuz {} bytes, UKI {} bytes",
        size(&initrd),
        o.compress,
        size(&cpio_path),
        size(&vmlinuz),
        size(&uki_path)
    );
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
