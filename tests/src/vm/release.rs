//! Other releases of the image for upgrade tests: `image build` again with another
//! build id (and, for a broken release, another routerd), sharing the package cache of
//! the image under test.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{disks::image_bin, image_path};
use crate::netns::run;

/// Builds a release with build id `build_id` into `dir` and returns its qcow2 (what a
/// Proxmox user imports). `routerd`: the binary to carry (None: the workspace's, as
/// the image under test). The init and routerd binaries come from the image builder's
/// own target directory, and so does the UEFI loader (qemu/build makes all four).
pub fn build(dir: &Path, build_id: &str, routerd: Option<&Path>) -> PathBuf {
    let bin = image_bin();
    let bin_dir = bin.parent().unwrap_or(Path::new("."));
    let image = image_path();
    let cache = image.parent().unwrap_or(Path::new(".")).join("cache");
    let out = dir.join(format!("release-{build_id}"));
    let mut cmd = Command::new(&bin);
    cmd.arg("build")
        .arg("--out")
        .arg(&out)
        .arg("--cache")
        .arg(&cache)
        .args(["--build-id", build_id])
        .arg("--init")
        .arg(bin_dir.join("init"))
        .arg("--routerd")
        .arg(routerd.map_or_else(|| bin_dir.join("routerd"), Path::to_path_buf))
        .arg("--efiboot")
        .arg(bin_dir.join("efiboot"));
    run(&mut cmd);
    out.join("router.qcow2")
}

/// The version line `image build` wrote for a release (`version=` of DIR/release).
pub fn version_of(qcow2: &Path) -> String {
    let text = std::fs::read_to_string(qcow2.with_file_name("release"))
        .unwrap_or_else(|e| panic!("{}: {e}", qcow2.with_file_name("release").display()));
    text.lines()
        .find_map(|l| l.strip_prefix("version="))
        .unwrap_or_else(|| panic!("no version= in {text}"))
        .to_string()
}
