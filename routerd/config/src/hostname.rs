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

/// Why `name` cannot be the router's own name (said after `hostname: `), or `None`
/// when it can. The one check for router.toml and cloud-init alike.
pub fn system_name_error(name: &str) -> Option<String> {
    if name.len() > SYSTEM_MAX_LEN {
        return Some(format!(
            "{} characters, the kernel takes {SYSTEM_MAX_LEN} at most",
            name.len()
        ));
    }
    (!valid_dns_name(name)).then(|| {
        format!(
            "{} is not a valid host name (letters, digits and '-', dot-separated)",
            crate::diagnostic::quote(name)
        )
    })
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

    // The name the router takes, from each place a config can come from: all go
    // through `Config::load`, so routerd applies exactly what `routerd check` accepts.

    use crate::testdir::TestDir;
    use crate::Config;

    const BODY: &str = "[wan]\ninterface = \"wan\"\naddress = \"203.0.113.10/32\"\ngateway = \"203.0.113.254\"\n\n[lan]\ninterface = \"lan\"\naddress = \"172.16.0.1/16\"\n";
    const NETWORK_CONFIG: &str = "version: 1\nconfig:\n    - type: physical\n      name: eth0\n      mac_address: '02:00:00:00:00:10'\n      subnets:\n      - type: static\n        address: '203.0.113.10'\n        netmask: '255.255.255.255'\n        gateway: '203.0.113.254'\n";

    /// The name from `dir`, or its error with the directory shown as `DIR`.
    fn name_from(dir: &TestDir, path: &std::path::Path) -> Result<String, String> {
        Config::load(path)
            .map(|c| c.system_hostname().to_string())
            .map_err(|e| dir.anonymize(&e.to_string()))
    }

    /// A cloud-init drive with this user-data and meta-data (None: no such file).
    fn drive(user_data: Option<&str>, meta_data: Option<&str>) -> TestDir {
        let dir = TestDir::new();
        dir.write("network-config", NETWORK_CONFIG);
        if let Some(text) = user_data {
            dir.write("user-data", text);
        }
        if let Some(text) = meta_data {
            dir.write("meta-data", text);
        }
        dir
    }

    #[test]
    fn router_toml_gives_the_name_or_the_default() {
        let dir = TestDir::new();
        let named = dir.write("named.toml", &format!("hostname = \"edge-1\"\n{BODY}"));
        assert_eq!(name_from(&dir, &named).as_deref(), Ok("edge-1"));
        let unnamed = dir.write("unnamed.toml", BODY);
        assert_eq!(name_from(&dir, &unnamed).as_deref(), Ok(DEFAULT));
    }

    #[test]
    fn a_router_toml_as_user_data_gives_its_name() {
        let dir = drive(
            Some(&format!("# from a snippet\nhostname = \"gw\"\n{BODY}")),
            Some("local-hostname: not-this-one\n"),
        );
        assert_eq!(name_from(&dir, dir.path()).as_deref(), Ok("gw"));
    }

    #[test]
    fn cloud_config_hostname_with_a_comment_is_the_name() {
        let dir = drive(
            Some("#cloud-config\nhostname: edge # the VM name\nmanage_etc_hosts: true\n"),
            Some("local-hostname: not-this-one\n"),
        );
        assert_eq!(name_from(&dir, dir.path()).as_deref(), Ok("edge"));
    }

    #[test]
    fn meta_data_local_hostname_is_the_name_when_user_data_has_none() {
        let dir = drive(
            Some("#cloud-config\nmanage_etc_hosts: true\n"),
            Some("instance-id: 1\nlocal-hostname: 'r1'\n"),
        );
        assert_eq!(name_from(&dir, dir.path()).as_deref(), Ok("r1"));
        let nameless = drive(None, Some("instance-id: 1\n"));
        assert_eq!(name_from(&nameless, nameless.path()).as_deref(), Ok(DEFAULT));
    }

    #[test]
    fn a_name_longer_than_the_kernel_takes_is_refused_with_its_place() {
        let long = "a".repeat(SYSTEM_MAX_LEN + 1);
        let dir = TestDir::new();
        let file = dir.write("router.toml", &format!("hostname = \"{long}\"\n{BODY}"));
        assert_eq!(
            name_from(&dir, &file),
            Err("DIR/router.toml:1:12: hostname: 65 characters, the kernel takes 64 at most".to_string())
        );
        let cloud = drive(Some(&format!("#cloud-config\nhostname: {long}\n")), None);
        assert_eq!(
            name_from(&cloud, cloud.path()),
            Err("DIR/user-data:2:11: hostname: 65 characters, the kernel takes 64 at most".to_string())
        );
        let meta = drive(None, Some(&format!("local-hostname: {long}\n")));
        assert_eq!(
            name_from(&meta, meta.path()),
            Err("DIR/meta-data:1:17: local-hostname: 65 characters, the kernel takes 64 at most".to_string())
        );
        let at_limit = drive(Some(&format!("#cloud-config\nhostname: a.{}\n", "b".repeat(62))), None);
        assert_eq!(name_from(&at_limit, at_limit.path()).map(|n| n.len()), Ok(64));
    }

    #[test]
    fn boothook_and_mime_user_data_are_refused() {
        for (user_data, kind) in [
            ("#cloud-boothook\nhostname: x\n", "a cloud-boothook"),
            (
                "Content-Type: multipart/mixed; boundary=x\n",
                "MIME multi-part user-data",
            ),
        ] {
            let dir = drive(Some(user_data), None);
            let err = name_from(&dir, dir.path()).expect_err(kind);
            assert!(
                err.starts_with(&format!("DIR/user-data: {kind} is not supported")),
                "{err}"
            );
        }
    }
}
