//! The image contract's names: what init, routerd and the image builder must spell the
//! same way (see `image/CONTRACT.md`).

/// The filesystem label of the config disk (vfat or iso9660) holding [`CONFIG_FILE_NAME`].
pub const CONFIG_LABEL: &str = "ROUTERCFG";
/// The filesystem label of a cloud-init NoCloud drive (Proxmox: `genisoimage -V cidata`).
pub const CIDATA_LABEL: &str = "cidata";
/// The GPT partition name of the state partition.
pub const STATE_PARTITION: &str = "routerstate";

/// Where the image carries routerd, and init starts it from.
pub const ROUTERD: &str = "/usr/sbin/routerd";

/// Where init mounts the config disk, read-only.
pub const CONFIG_MOUNT: &str = "/config";
/// The config file on the config disk.
pub const CONFIG_FILE_NAME: &str = "router.toml";
/// `CONFIG_MOUNT/CONFIG_FILE_NAME`: what init hands routerd when the disk is there.
pub const CONFIG_FILE: &str = "/config/router.toml";
/// Where init mounts a cloud-init drive, read-only.
pub const CIDATA_MOUNT: &str = "/cidata";
/// Where init mounts the state partition (routerd's `--state`).
pub const STATE_MOUNT: &str = "/state";

/// In the state directory: the last config that applied cleanly.
pub const LAST_GOOD_FILE_NAME: &str = "last-good.toml";
/// In the state directory: the DHCP lease log (of the LAN named
/// [`crate::DEFAULT_LAN_NAME`]; see [`leases_file_name`]).
pub const LEASES_FILE_NAME: &str = "dhcp-leases";

/// The lease log of the LAN named `lan`: [`LEASES_FILE_NAME`] for the single-LAN
/// form's LAN, `dhcp-leases-<lan>` for the others.
pub fn leases_file_name(lan: &str) -> String {
    if lan == crate::DEFAULT_LAN_NAME {
        LEASES_FILE_NAME.to_string()
    } else {
        format!("{LEASES_FILE_NAME}-{lan}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_is_on_the_config_mount() {
        assert_eq!(CONFIG_FILE, format!("{CONFIG_MOUNT}/{CONFIG_FILE_NAME}"));
    }
}
