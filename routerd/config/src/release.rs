//! The release a build makes, as the image builder writes it and init and routerd
//! read it: `/etc/router/release` in the initramfs (the running version), and
//! `<slot>/release` on the boot partition (what a slot holds, with the checksum of
//! each file, so that an upgrade can check what it copies). See image/CONTRACT.md.
//!
//! The format is `key=value` lines: `version=` (the crate version and the build id,
//! `0.1.0+g5689a45`), `payload=` (sha256 of the release payload: the kernel and the
//! initramfs without this file), and in a slot's file one `file=NAME SIZE SHA256` per
//! file of the slot.

use std::sync::OnceLock;

/// In the initramfs: the release of the running system.
pub const RELEASE_FILE: &str = "/etc/router/release";
/// In each slot directory on the boot partition.
pub const SLOT_RELEASE_FILE_NAME: &str = "release";
/// In each slot directory: the UEFI loader systemd-boot's entries start (image/efiboot/),
/// which loads the slot's `vmlinuz` and `initrd.img`.
pub const SLOT_UEFI_LOADER: &str = "linux.efi";
/// The two system slots: directories of that name on the boot partition.
pub const SLOTS: [&str; 2] = ["a", "b"];
/// The FAT label of the boot partition (the EFI system partition).
pub const BOOT_LABEL: &str = "ROUTERBOOT";
/// On the kernel command line: which slot the boot loader booted (`router.slot=a`).
pub const SLOT_CMDLINE_KEY: &str = "router.slot";
/// On the boot partition: syslinux's config (SeaBIOS), whose `DEFAULT` names the slot.
pub const SYSLINUX_CFG: &str = "syslinux.cfg";
/// On the boot partition: systemd-boot's config (UEFI), whose `default` names the
/// slot's entry (`a.conf`).
pub const LOADER_CONF: &str = "loader/loader.conf";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Release {
    pub version: String,
    /// sha256 of the payload, lower-case hex.
    pub payload: String,
    /// A slot's files: (name, size, sha256 hex).
    pub files: Vec<(String, u64, String)>,
}

impl Release {
    /// Parses the file; `None` when `version=` or `payload=` is missing or a
    /// `file=` line is malformed.
    pub fn parse(text: &str) -> Option<Release> {
        let mut r = Release::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key {
                "version" => r.version = value.trim().to_string(),
                "payload" => r.payload = value.trim().to_string(),
                "file" => {
                    let mut words = value.split_whitespace();
                    let (name, size, sum) = (words.next()?, words.next()?, words.next()?);
                    if name.contains('/') || !is_sha256(sum) {
                        return None;
                    }
                    r.files.push((name.to_string(), size.parse().ok()?, sum.to_string()));
                }
                _ => {}
            }
        }
        (!r.version.is_empty() && is_sha256(&r.payload)).then_some(r)
    }

    pub fn render(&self) -> String {
        let mut s = format!("version={}\npayload={}\n", self.version, self.payload);
        for (name, size, sum) in &self.files {
            s.push_str(&format!("file={name} {size} {sum}\n"));
        }
        s
    }

    /// One line for people: `0.1.0+g5689a45 (payload 3f2a9c01d4e5)`.
    pub fn display(&self) -> String {
        format!(
            "{} (payload {})",
            self.version,
            self.payload.get(..12).unwrap_or(&self.payload)
        )
    }

    /// Whether two releases are the same build (version and payload).
    pub fn same_build(&self, other: &Release) -> bool {
        self.version == other.version && self.payload == other.payload
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The running release ([`RELEASE_FILE`]), read once; outside an image build (a
/// development binary) the crate version with the build id `dev`.
pub fn running() -> &'static Release {
    static RUNNING: OnceLock<Release> = OnceLock::new();
    RUNNING.get_or_init(|| {
        std::fs::read_to_string(RELEASE_FILE)
            .ok()
            .and_then(|t| Release::parse(&t))
            .unwrap_or_else(|| Release {
                version: format!("{}+dev", env!("CARGO_PKG_VERSION")),
                payload: "0".repeat(64),
                files: Vec::new(),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_display() {
        let r = Release {
            version: "0.1.0+next".into(),
            payload: "ab".repeat(32),
            files: vec![("vmlinuz".into(), 42, "cd".repeat(32))],
        };
        assert_eq!(Release::parse(&r.render()), Some(r.clone()));
        assert_eq!(r.display(), "0.1.0+next (payload abababababab)");
        assert!(r.same_build(&Release {
            files: vec![],
            ..r.clone()
        }));
    }

    #[test]
    fn incomplete_or_malformed_files_are_refused() {
        assert_eq!(Release::parse(""), None);
        assert_eq!(Release::parse("version=1\npayload=xyz\n"), None);
        let ok = format!("version=1\npayload={}\n", "0".repeat(64));
        assert!(Release::parse(&ok).is_some());
        assert_eq!(Release::parse(&format!("{ok}file=../x 1 {}\n", "0".repeat(64))), None);
        assert_eq!(Release::parse(&format!("{ok}file=x big {}\n", "0".repeat(64))), None);
        assert_eq!(Release::parse(&format!("{ok}file=x 1\n")), None);
    }
}
