//! The host-name rules, in one place: what a name may look like, and which name the
//! router takes from its config.

/// The router's name when its config gives none.
pub const DEFAULT: &str = "router";

/// The kernel's limit for the system host name (`HOST_NAME_MAX`).
pub const SYSTEM_MAX_LEN: usize = 64;

/// A DNS name: dot-separated labels of letters, digits and '-' (not at either end),
/// 1 to 63 characters each, 253 in all. Guests' names and the DHCP domain.
pub fn valid_dns_name(name: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

/// The router's own name: a DNS name the kernel can carry ([`SYSTEM_MAX_LEN`]).
pub fn valid_system_name(name: &str) -> bool {
    name.len() <= SYSTEM_MAX_LEN && valid_dns_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["router", "r1.example.net", "a-b", "x"] {
            assert!(valid_system_name(good), "{good}");
        }
        for bad in ["", "a..b", "a_b", "b-", "-b", "ünicode", "has space"] {
            assert!(!valid_dns_name(bad), "{bad}");
        }
        assert!(valid_system_name(&"a".repeat(63)));
        let long = format!("{}.{}", "a".repeat(40), "b".repeat(30));
        assert!(valid_dns_name(&long) && !valid_system_name(&long));
    }
}
