//! What the two boot loaders read, as pure functions: the default slot in
//! syslinux.cfg (`DEFAULT a`) and loader.conf (`default a.conf`), rewritten to the
//! same length so that init can write the file in place (one sector: a power cut
//! leaves the old or the new line); syslinux's boot-once in its ADV (auxiliary data
//! vector, two 512-byte copies inside ldlinux.sys); systemd-boot's one-shot EFI
//! variable; the slot on the kernel command line.

use config::release::{SLOTS, SLOT_CMDLINE_KEY};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loader {
    /// syslinux.cfg, SeaBIOS.
    Syslinux,
    /// systemd-boot's loader.conf, UEFI.
    SystemdBoot,
}

impl Loader {
    fn keyword(self) -> &'static str {
        match self {
            Loader::Syslinux => "DEFAULT",
            Loader::SystemdBoot => "default",
        }
    }

    fn word(self, slot: &str) -> String {
        match self {
            Loader::Syslinux => slot.to_string(),
            Loader::SystemdBoot => format!("{slot}.conf"),
        }
    }
}

fn is_slot(s: &str) -> bool {
    SLOTS.contains(&s)
}

/// The slot the config boots by default.
pub fn default_slot(loader: Loader, text: &str) -> Option<String> {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next().is_some_and(|k| k.eq_ignore_ascii_case(loader.keyword())) {
            let word = words.next()?;
            let slot = match loader {
                Loader::Syslinux => word,
                Loader::SystemdBoot => word.strip_suffix(".conf")?,
            };
            return is_slot(slot).then(|| slot.to_string());
        }
    }
    None
}

/// The config with `slot` as the default, the same length as `text` (slot names are
/// all one letter); None when the config has no default line to change.
pub fn with_default(loader: Loader, text: &str, slot: &str) -> Option<String> {
    let current = default_slot(loader, text)?;
    let old_line = text.lines().find(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case(loader.keyword()))
    })?;
    let new_line = old_line.replacen(&loader.word(&current), &loader.word(slot), 1);
    let out = text.replacen(old_line, &new_line, 1);
    (out.len() == text.len() && is_slot(slot)).then_some(out)
}

/// The slot on the kernel command line (`router.slot=b`).
pub fn booted_slot(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(SLOT_CMDLINE_KEY)?.strip_prefix('='))
        .filter(|s| is_slot(s))
        .map(str::to_string)
}

/// The other slot.
pub fn other_slot(slot: &str) -> &'static str {
    if slot == SLOTS[0] {
        SLOTS[1]
    } else {
        SLOTS[0]
    }
}

// syslinux's libinstaller/advconst.h.
const ADV_SIZE: usize = 512;
const ADV_MAGIC1: u32 = 0x5a2d_2fa5;
const ADV_MAGIC2: u32 = 0xa304_1767;
const ADV_MAGIC3: u32 = 0xdd28_bf64;
const ADV_BOOTONCE: u8 = 1;

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Where the ADV (two copies, 1024 bytes) starts in ldlinux.sys: the first place
/// holding both copies' head and tail signatures.
pub fn find_adv(ldlinux: &[u8]) -> Option<usize> {
    (0..=ldlinux.len().checked_sub(2 * ADV_SIZE)?).step_by(4).find(|&at| {
        [at, at + ADV_SIZE]
            .iter()
            .all(|&c| le32(ldlinux, c) == Some(ADV_MAGIC1) && le32(ldlinux, c + ADV_SIZE - 4) == Some(ADV_MAGIC3))
    })
}

/// Both ADV copies holding only a boot-once command line `command` (ldlinux runs it
/// at the next boot and clears it before it does).
pub fn adv_with_boot_once(command: &str) -> Option<Vec<u8>> {
    let len = u8::try_from(command.len()).ok()?;
    let mut adv = vec![0u8; ADV_SIZE];
    if len > 0 {
        adv.get_mut(8)?.clone_from(&ADV_BOOTONCE);
        adv.get_mut(9)?.clone_from(&len);
        adv.get_mut(10..10 + command.len())?.copy_from_slice(command.as_bytes());
    }
    adv.get_mut(0..4)?.copy_from_slice(&ADV_MAGIC1.to_le_bytes());
    let mut csum = ADV_MAGIC2;
    for at in (8..ADV_SIZE - 4).step_by(4) {
        csum = csum.wrapping_sub(le32(&adv, at)?);
    }
    adv.get_mut(4..8)?.copy_from_slice(&csum.to_le_bytes());
    adv.get_mut(ADV_SIZE - 4..)?.copy_from_slice(&ADV_MAGIC3.to_le_bytes());
    let mut both = adv.clone();
    both.extend_from_slice(&adv);
    Some(both)
}

/// The boot-once command line in an ADV (first copy), if any (for the tests: init
/// only writes the ADV).
#[cfg(test)]
pub fn adv_boot_once(adv: &[u8]) -> Option<String> {
    let data = adv.get(8..ADV_SIZE - 4)?;
    let mut at = 0;
    while let (Some(&tag), Some(&len)) = (data.get(at), data.get(at + 1)) {
        if tag == 0 {
            return None;
        }
        let value = data.get(at + 2..at + 2 + usize::from(len))?;
        if tag == ADV_BOOTONCE {
            return (!value.is_empty()).then(|| String::from_utf8_lossy(value).into_owned());
        }
        at += 2 + usize::from(len);
    }
    None
}

/// systemd-boot's vendor GUID for its variables.
pub const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// The efivarfs file content of `LoaderEntryOneShot` naming slot `slot`'s entry:
/// attributes (non-volatile, boot and runtime access) then UTF-16LE with a NUL.
pub fn one_shot_variable(slot: &str) -> Vec<u8> {
    let mut v = 7u32.to_le_bytes().to_vec();
    for u in format!("{slot}.conf").encode_utf16().chain(std::iter::once(0)) {
        v.extend_from_slice(&u.to_le_bytes());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSLINUX: &str = "SERIAL 0 115200\nDEFAULT a\nPROMPT 0\nTIMEOUT 0\n\nLABEL a\n  LINUX /a/vmlinuz\n";
    const LOADER: &str = "default a.conf\ntimeout 0\neditor no\n";

    #[test]
    fn default_is_read_and_rewritten_in_place() {
        assert_eq!(default_slot(Loader::Syslinux, SYSLINUX).as_deref(), Some("a"));
        assert_eq!(default_slot(Loader::SystemdBoot, LOADER).as_deref(), Some("a"));
        let b = with_default(Loader::Syslinux, SYSLINUX, "b").unwrap_or_default();
        assert_eq!(b.len(), SYSLINUX.len());
        assert!(
            b.contains("\nDEFAULT b\n") && b.contains("LABEL a\n  LINUX /a/vmlinuz"),
            "{b}"
        );
        assert_eq!(default_slot(Loader::Syslinux, &b).as_deref(), Some("b"));
        let b = with_default(Loader::SystemdBoot, LOADER, "b").unwrap_or_default();
        assert_eq!(b, "default b.conf\ntimeout 0\neditor no\n");
        assert_eq!(with_default(Loader::SystemdBoot, "timeout 0\n", "b"), None);
        assert_eq!(with_default(Loader::Syslinux, SYSLINUX, "c"), None);
        assert_eq!(default_slot(Loader::Syslinux, "DEFAULT rescue\n"), None);
    }

    #[test]
    fn slot_from_the_kernel_command_line() {
        assert_eq!(
            booted_slot("console=ttyS0 panic=5 router.slot=b\n").as_deref(),
            Some("b")
        );
        assert_eq!(booted_slot("console=ttyS0"), None);
        assert_eq!(booted_slot("router.slot=z"), None);
        assert_eq!(other_slot("a"), "b");
        assert_eq!(other_slot("b"), "a");
    }

    /// The ADV as syslinux's installer writes it (libinstaller/setadv.c) is found, and
    /// one with a boot-once reads back; the checksum makes the data words sum to MAGIC2.
    #[test]
    fn adv_boot_once_round_trip() {
        let empty = adv_with_boot_once("").unwrap_or_default();
        let mut file = vec![0xAAu8; 3000];
        file.extend_from_slice(&empty);
        assert_eq!(find_adv(&file), Some(3000));
        assert_eq!(adv_boot_once(&file[3000..]), None);
        let once = adv_with_boot_once("b").unwrap_or_default();
        assert_eq!(once.len(), 1024);
        assert_eq!(adv_boot_once(&once).as_deref(), Some("b"));
        let sum = (4..ADV_SIZE - 4)
            .step_by(4)
            .fold(0u32, |s, at| s.wrapping_add(le32(&once, at).unwrap_or(0)));
        assert_eq!(sum, ADV_MAGIC2);
        assert_eq!(find_adv(&[0u8; 100]), None);
    }

    #[test]
    fn one_shot_variable_bytes() {
        let v = one_shot_variable("b");
        assert_eq!(&v[..4], &[7, 0, 0, 0]);
        assert_eq!(&v[4..], b"b\0.\0c\0o\0n\0f\0\0\0");
    }
}
