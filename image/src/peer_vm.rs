//! `image peer-vm`: a test artefact, not part of the appliance. A small VM that plays a
//! WireGuard peer (a laptop) for the boot tests: the appliance's Debian kernel, an
//! initramfs with busybox, wireguard-tools' `wg` and `wg-quick` (with bash and
//! iproute2's `ip`, as a laptop has them) and their libraries, and the wireguard
//! module with its dependencies. Its /init runs shell scripts sent on the second serial
//! port (see [`INIT`]); testkit's `vm::peer` drives it.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::debs;
use crate::initramfs::{self, find_binary};
use crate::tree::Tree;
use crate::util::{copy, read, write};

/// Modules the peer loads (dependencies come automatically): its NIC and WireGuard.
pub const MODULES: &[&str] = &["virtio_pci", "virtio_net", "wireguard"];

/// The peer's PID 1. Each line on ttyS1 is a base64-encoded shell script; its output
/// (stdout and stderr) goes back on ttyS1, then `@@peer-rc=<exit code>@@` (no newline).
/// base64 so that a script may hold any byte, newlines and quotes included.
pub const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
ln -s /proc/self/fd /dev/fd  # bash's <(...) in wg-quick
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
kver="$(uname -r)"
while read -r m; do
  insmod "/lib/modules/$kver/$m" || echo "peer: insmod $m failed"
done < /etc/peer/modules
ip link set lo up
# raw: no echo, no CR/LF translation, no line editing on the command channel
stty -F /dev/ttyS1 raw -echo
exec 3<>/dev/ttyS1
echo "peer: ready"
while IFS= read -r line <&3; do
  echo "$line" | base64 -d > /tmp/cmd
  sh /tmp/cmd > /tmp/out 2>&1 < /dev/null
  rc=$?
  cat /tmp/out >&3
  # no newline after the mark: the host reads up to its end
  printf "@@peer-rc=%s@@" "$rc" >&3
done
echo "peer: command channel closed"
poweroff -f
"#;

pub struct Options {
    pub out: PathBuf,
    pub cache: PathBuf,
}

/// Writes OUT/vmlinuz, OUT/initrd.img and OUT/versions.txt.
pub fn build(o: &Options) -> Result<()> {
    std::fs::create_dir_all(&o.cache).with_context(|| format!("cannot create {}", o.cache.display()))?;
    std::fs::create_dir_all(&o.out).with_context(|| format!("cannot create {}", o.out.display()))?;
    let root = o.out.join("root");
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("cannot clean {}", root.display()))?;
    }
    std::fs::create_dir_all(&root)?;

    let kernel = debs::kernel(&o.cache)?;
    let pkgs = debs::fetch_with_libraries(
        &o.cache,
        // bash and iproute2 for wg-quick, as on a laptop (zlib1g: libelf's, not a lib* name)
        &[
            &kernel.package,
            "busybox-static",
            "wireguard-tools",
            "bash",
            "iproute2",
            "zlib1g",
            "libc6",
        ],
    )?;
    let mut versions = format!("kernel {}\n", kernel.version);
    for (name, deb) in &pkgs {
        eprintln!("image: extracting {}", deb.display());
        debs::extract(deb, &root)?;
        writeln!(versions, "{name} {}", debs::field(deb, "Version")?)?;
    }
    let vmlinuz = root.join(format!("boot/vmlinuz-{}", kernel.version));
    if !vmlinuz.is_file() {
        bail!("{} is not in package {}", vmlinuz.display(), kernel.package);
    }

    let mut t = Tree::new();
    for d in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "root",
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc/peer",
        "etc/wireguard",
        "usr/local/sbin",
    ] {
        t.dir(d);
    }
    t.char_dev("dev/console", 0o600, 5, 1);
    t.char_dev("dev/null", 0o666, 1, 3);
    let busybox = find_binary(&root, "busybox")?;
    t.file("bin/busybox", 0o755, read(&busybox)?);
    let libraries = initramfs::add_binaries(
        &mut t,
        &root,
        &[
            ("usr/bin/wg", find_binary(&root, "wg")?),
            ("bin/bash", find_binary(&root, "bash")?),
            // iproute2's ip ahead of busybox's in PATH: wg-quick wants the real one
            ("usr/local/sbin/ip", find_binary(&root, "ip")?),
        ],
    )?;
    let wg_quick = find_binary(&root, "wg-quick")?;
    t.file("usr/bin/wg-quick", 0o755, read(&wg_quick)?);
    let modules = initramfs::add_modules(&mut t, &root, &kernel.version, MODULES, &[])?.boot;
    t.file(
        "etc/peer/modules",
        0o644,
        modules
            .iter()
            .map(|m| format!("{m}\n"))
            .collect::<String>()
            .into_bytes(),
    );
    t.file("init", 0o755, INIT.as_bytes().to_vec());

    let initrd = o.out.join("initrd.img");
    let tmp = o.out.join("initrd.img.tmp");
    let f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    let mut f = t.write_cpio(std::io::BufWriter::new(f))?;
    std::io::Write::flush(&mut f)?;
    drop(f);
    std::fs::rename(&tmp, &initrd)?;
    copy(&vmlinuz, &o.out.join("vmlinuz"))?;
    write(&o.out.join("versions.txt"), versions.as_bytes())?;
    std::fs::remove_dir_all(&root).with_context(|| format!("cannot clean {}", root.display()))?;
    eprintln!(
        "image: peer VM in {}: kernel {}; modules {}; libraries {}",
        o.out.display(),
        kernel.version,
        modules.join(" "),
        libraries.join(" ")
    );
    Ok(())
}
