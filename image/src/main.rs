//! The image builder: `image build` makes the bootable disk, `image config` makes
//! config disks. See CONTRACT.md for what goes where.

mod build;
mod bzimage;
mod config_disk;
mod cpio;
mod debs;
mod disk;
mod elf;
mod gpt;
mod initramfs;
mod libs;
mod modules;
mod pe;
mod peer_vm;
mod tree;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage:
  image build [--out DIR] [--init FILE] [--routerd FILE] [--efiboot FILE]
              [--compress none|gzip|zstd|lz4] [--build-id ID] [--cache DIR]
      downloads the Debian kernel, nftables, e2fsprogs and libraries (cached in DIR/cache,
      or --cache DIR), writes DIR/router.img, DIR/router.qcow2, DIR/vmlinuz, DIR/initrd.img,
      DIR/versions.txt and DIR/release (the version: crate version + build id, default
      from git; and checksums)
      (defaults: --out out, --init target/release/init, --routerd target/release/routerd,
      --efiboot target/release/efiboot: the UEFI loader's ELF, built by qemu/build)
  image config ROUTER.TOML -o CONFIG.IMG [--unchecked]
      validates ROUTER.TOML like `routerd check` and writes a FAT disk labelled ROUTERCFG
      holding it (--unchecked: write it even when invalid, to test the appliance's errors)
  image peer-vm [--out DIR] [--cache DIR]
      a test artefact, not the appliance: the kernel and initramfs of the WireGuard peer VM
      the boot tests start (busybox, wg, the wireguard module) in DIR (default out/peer-vm;
      packages cached in out/cache)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("build") => match parse_build(&args[1..]) {
            Ok(opts) => report(build::build(&opts)),
            Err(e) => usage_error(&e),
        },
        Some("config") => match parse_config(&args[1..]) {
            Ok((input, out, check)) => match config_disk::write(&input, &out, check) {
                Ok(true) => {
                    println!("wrote {}", out.display());
                    ExitCode::SUCCESS
                }
                Ok(false) => ExitCode::FAILURE,
                Err(e) => report(Err(e)),
            },
            Err(e) => usage_error(&e),
        },
        Some("peer-vm") => match parse_peer_vm(&args[1..]) {
            Ok(opts) => report(peer_vm::build(&opts)),
            Err(e) => usage_error(&e),
        },
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => usage_error("missing command"),
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("image: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("image: {msg}\n{USAGE}");
    ExitCode::from(2)
}

fn parse_build(args: &[String]) -> Result<build::Options, String> {
    let mut o = build::Options {
        out: PathBuf::from("out"),
        init: PathBuf::from("target/release/init"),
        routerd: PathBuf::from("target/release/routerd"),
        efiboot: PathBuf::from("target/release/efiboot"),
        compress: build::DEFAULT_COMPRESSION,
        build_id: None,
        cache: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--out" => o.out = PathBuf::from(value()?),
            "--init" => o.init = PathBuf::from(value()?),
            "--routerd" => o.routerd = PathBuf::from(value()?),
            "--efiboot" => o.efiboot = PathBuf::from(value()?),
            "--build-id" => {
                let id = value()?;
                build::check_build_id(&id)?;
                o.build_id = Some(id);
            }
            "--cache" => o.cache = Some(PathBuf::from(value()?)),
            "--compress" => o.compress = initramfs::Compression::parse(&value()?).map_err(|e| e.to_string())?,
            _ => return Err(format!("unknown option {a}")),
        }
    }
    Ok(o)
}

fn parse_peer_vm(args: &[String]) -> Result<peer_vm::Options, String> {
    let mut o = peer_vm::Options {
        out: PathBuf::from("out/peer-vm"),
        cache: PathBuf::from("out/cache"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--out" => o.out = PathBuf::from(value()?),
            "--cache" => o.cache = PathBuf::from(value()?),
            _ => return Err(format!("unknown option {a}")),
        }
    }
    Ok(o)
}

fn parse_config(args: &[String]) -> Result<(PathBuf, PathBuf, bool), String> {
    let (mut input, mut out, mut check) = (None, None, true);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" | "--out" => out = Some(PathBuf::from(it.next().ok_or("-o needs a file name")?)),
            "--unchecked" => check = false,
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if input.is_none() => input = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    Ok((
        input.ok_or("which router.toml?")?,
        out.ok_or("missing -o CONFIG.IMG")?,
        check,
    ))
}
