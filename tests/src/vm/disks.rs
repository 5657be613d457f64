//! Disks for the VM and reading them back: config disks (`image config`), ISO 9660
//! images such as a Proxmox cloud-init drive, and files on the state partition.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::repo;
use crate::netns::run;

/// The image builder binary: `$IMAGE_BIN`, else the workspace's release or debug build.
pub fn image_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("IMAGE_BIN") {
        return PathBuf::from(p);
    }
    for profile in ["release", "debug"] {
        let p = repo().join("target").join(profile).join("image");
        if p.exists() {
            return p;
        }
    }
    panic!("the image builder is missing: run qemu/build (or cargo build -p image) or set IMAGE_BIN");
}

/// Writes a config disk holding `text` with `image config`; `checked: false` writes
/// it even when invalid (to see what the appliance does with a bad config).
pub fn config_disk(dir: &Path, name: &str, text: &str, checked: bool) -> PathBuf {
    let toml = dir.join(format!("{name}.toml"));
    std::fs::write(&toml, text).unwrap_or_else(|e| panic!("{}: {e}", toml.display()));
    let img = dir.join(format!("{name}.img"));
    let mut cmd = Command::new(image_bin());
    cmd.arg("config").arg(&toml).arg("-o").arg(&img);
    if !checked {
        cmd.arg("--unchecked");
    }
    run(&mut cmd);
    img
}

/// A cloud-init drive as Proxmox makes one: the files in an iso9660 volume from
/// `genisoimage -quiet -iso-level 3 -J -R -V cidata`, padded to 4 MiB.
pub fn cidata_iso(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    iso_image(dir, name, "cidata", files)
}

/// An ISO 9660 image (Joliet + Rock Ridge names, as `genisoimage -J -R` makes for
/// Proxmox) labelled `label`, holding `files`, padded to 4 MiB.
pub fn iso_image(dir: &Path, name: &str, label: &str, files: &[(&str, &str)]) -> PathBuf {
    let tree = dir.join(format!("{name}-files"));
    std::fs::create_dir_all(&tree).unwrap_or_else(|e| panic!("{}: {e}", tree.display()));
    for (file, text) in files {
        std::fs::write(tree.join(file), text).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let iso = dir.join(format!("{name}.iso"));
    run(Command::new("genisoimage")
        .args(["-quiet", "-iso-level", "3", "-J", "-R", "-V", label, "-o"])
        .arg(&iso)
        .arg(&tree));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&iso)
        .unwrap_or_else(|e| panic!("{e}"));
    f.set_len(4 << 20).unwrap_or_else(|e| panic!("{e}"));
    iso
}

/// Reads `/<name>` from the VM's state partition (GPT name `routerstate`, ext4)
/// from the host side while QEMU is not running, with no kernel help (no loop
/// device, no nbd): `qemu-img convert` copies the partition out of the qcow2 overlay,
/// `e2fsck -fy` replays the journal on that copy (a killed VM leaves one to
/// replay, as the kernel would at the next mount), `debugfs` dumps the file.
/// None when the partition has no filesystem yet or the file does not exist.
/// `disk` is the VM's qcow2 overlay over `image`; copies go to `work_dir`.
pub fn read_state_file(image: &Path, disk: &Path, work_dir: &Path, name: &str) -> Option<Vec<u8>> {
    let (start, size) = state_partition(image);
    let part = work_dir.join("state-part.img");
    let _ = std::fs::remove_file(&part);
    // The raw driver's offset/size window over the qcow2 overlay (`qemu-img dd
    // skip=` refuses the offset on QEMU 7.2 and still exits 0).
    run(Command::new("qemu-img")
        .arg("convert")
        .arg("--image-opts")
        .arg(format!(
            "driver=raw,offset={start},size={size},file.driver=qcow2,file.file.driver=file,file.file.filename={}",
            disk.display()
        ))
        .args(["-O", "raw"])
        .arg(&part));
    let fsck = Command::new("e2fsck")
        .arg("-fy")
        .arg(&part)
        .output()
        .unwrap_or_else(|e| panic!("e2fsck: {e}"));
    // 0: clean, 1: fixed (a journal replay counts), 8: no ext4 here (never booted).
    let code = fsck.status.code().unwrap_or(-1);
    let fsck_text = format!(
        "{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    if code >= 8 {
        eprintln!("vm: no ext4 filesystem on the state partition (e2fsck exit {code}):\n{fsck_text}");
        return None;
    }
    assert!(
        code < 4,
        "e2fsck found uncorrected errors on the state partition (exit {code}):\n{fsck_text}"
    );
    if code != 0 {
        eprintln!("vm: e2fsck on a copy of the state partition (exit {code}):\n{fsck_text}");
    }
    let out = work_dir.join(format!("state-{}", name.replace('/', "_")));
    let _ = std::fs::remove_file(&out);
    let dump = run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump /{name} {}", out.display()))
        .arg(&part));
    let bytes = std::fs::read(&out).ok();
    if bytes.is_none() {
        let ls = run(Command::new("debugfs").args(["-R", "ls -l /"]).arg(&part));
        eprintln!(
            "vm: debugfs found no /{name}: {}\nthe state partition holds:\n{}",
            String::from_utf8_lossy(&dump.stderr),
            String::from_utf8_lossy(&ls.stdout)
        );
    }
    let _ = std::fs::remove_file(&part);
    bytes
}

/// The state partition's byte offset and length in the image, from its GPT (read
/// with `sfdisk -J`, which reads the file and needs no device).
pub fn state_partition(image: &Path) -> (u64, u64) {
    let out = run(Command::new("sfdisk").arg("-J").arg(image));
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("sfdisk -J {}: {e}", image.display()));
    let table = &json["partitiontable"];
    let sector = table["sectorsize"].as_u64().unwrap_or(512);
    let parts = table["partitions"].as_array().cloned().unwrap_or_default();
    let p = parts
        .iter()
        .find(|p| p["name"].as_str() == Some("routerstate"))
        .unwrap_or_else(|| panic!("no partition named routerstate in {}: {json}", image.display()));
    let start = p["start"].as_u64().unwrap_or_else(|| panic!("partition start: {p}"));
    let size = p["size"].as_u64().unwrap_or_else(|| panic!("partition size: {p}"));
    (start * sector, size * sector)
}
