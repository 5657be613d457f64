//! The hostname: router.toml's top-level `hostname` key if it is there and
//! valid, else "router". Only that key is read; validating the rest of the
//! file is routerd's job.

use crate::console::say;
use std::path::Path;

pub const DEFAULT: &str = "router";

/// The `hostname` key of a router.toml text: `Ok(None)` when it is absent,
/// `Err` when the text is not TOML or the key is not a valid hostname.
pub fn from_config(text: &str) -> Result<Option<String>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
    match table.get("hostname") {
        None => Ok(None),
        Some(toml::Value::String(name)) if is_valid(name) => Ok(Some(name.clone())),
        Some(toml::Value::String(name)) => Err(format!("`hostname` {name:?} is not a valid host name")),
        Some(other) => Err(format!("`hostname` is a {}, expected a string", other.type_str())),
    }
}

/// RFC 1123 host name: dot-separated labels of 1-63 letters, digits and
/// hyphens, not starting or ending with a hyphen; 64 bytes at most (the
/// kernel's limit).
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The hostname a cloud-init drive asks for: a router.toml given as user-data
/// is read like any router.toml; otherwise #cloud-config's `hostname:`
/// (Proxmox writes the VM name there), else meta-data's `local-hostname:`.
/// Only these lines are read; routerd reads the rest of the drive.
pub fn from_cloud_init(user_data: Option<&str>, meta_data: Option<&str>) -> Result<Option<String>, String> {
    if let Some(text) = user_data {
        let first = text.lines().next().unwrap_or("");
        if !first.starts_with("#cloud-config") && !first.starts_with("#!") && !first.starts_with("#include") {
            return from_config(text);
        }
        if let Some(name) = top_level_scalar(text, "hostname") {
            return checked(name);
        }
    }
    match meta_data.and_then(|t| top_level_scalar(t, "local-hostname")) {
        Some(name) => checked(name),
        None => Ok(None),
    }
}

fn checked(name: String) -> Result<Option<String>, String> {
    if is_valid(&name) {
        Ok(Some(name))
    } else {
        Err(format!("{name:?} is not a valid host name"))
    }
}

/// The value of a top-level `key: value` YAML line, quotes removed.
fn top_level_scalar(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?.trim();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
            .unwrap_or(value);
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// The hostname to use for the config file at `path` (or the cloud-init
/// drive mounted there): its `hostname`, or [`DEFAULT`] (a problem is
/// printed; routerd reports the file's errors).
pub fn for_config_file(path: &Path) -> String {
    if path.is_dir() {
        let read = |f: &str| std::fs::read_to_string(path.join(f)).ok();
        return match from_cloud_init(read("user-data").as_deref(), read("meta-data").as_deref()) {
            Ok(Some(name)) => name,
            Ok(None) => DEFAULT.to_string(),
            Err(e) => {
                say(&format!(
                    "init: hostname: cloud-init drive {}: {e}; using \"{DEFAULT}\"",
                    path.display()
                ));
                DEFAULT.to_string()
            }
        };
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            say(&format!("init: hostname: cannot read {}: {e}", path.display()));
            return DEFAULT.to_string();
        }
    };
    match from_config(&text) {
        Ok(Some(name)) => name,
        Ok(None) => DEFAULT.to_string(),
        Err(e) => {
            say(&format!("init: hostname: {}: {e}; using \"{DEFAULT}\"", path.display()));
            DEFAULT.to_string()
        }
    }
}

/// Sets the kernel's hostname.
pub fn set(name: &str) {
    if let Err(e) = nix::unistd::sethostname(name) {
        say(&format!("init: sethostname {name}: {}", e.desc()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
hostname = "edge-1"

[wan]
mac = "02:00:00:00:00:10"
address = "203.0.113.10/32"
gateway = "203.0.113.254"
dns = ["198.51.100.53"]

[lan]
address = "172.16.0.1/16"
hostname = "not-this-one"
"#;

    #[test]
    fn reads_only_the_top_level_key() {
        assert_eq!(from_config(CONFIG), Ok(Some("edge-1".to_string())));
    }

    #[test]
    fn absent_key() {
        assert_eq!(from_config("[lan]\naddress = \"172.16.0.1/16\"\n"), Ok(None));
        assert_eq!(from_config(""), Ok(None));
    }

    #[test]
    fn unknown_keys_are_not_init_s_business() {
        assert_eq!(
            from_config("hostname = \"gw\"\nfuture_key = 3\n"),
            Ok(Some("gw".to_string()))
        );
    }

    #[test]
    fn bad_values() {
        assert!(from_config("hostname = 3\n").is_err());
        assert!(from_config("hostname = \"-bad\"\n").is_err());
        assert!(from_config("hostname = \"has space\"\n").is_err());
        assert!(from_config("hostname = \"\"\n").is_err());
        assert!(from_config("hostname = \n").is_err());
    }

    #[test]
    fn cloud_init_hostname() {
        let proxmox = "#cloud-config\nhostname: edge\nmanage_etc_hosts: true\nfqdn: edge.example.net\n";
        assert_eq!(
            from_cloud_init(Some(proxmox), Some("instance-id: 1\n")),
            Ok(Some("edge".into()))
        );
        assert_eq!(
            from_cloud_init(None, Some("local-hostname: 'r1'\n")),
            Ok(Some("r1".into()))
        );
        assert_eq!(from_cloud_init(Some("#cloud-config\n"), None), Ok(None));
        // A router.toml given as user-data.
        assert_eq!(
            from_cloud_init(Some("hostname = \"gw\"\n[wan]\n"), None),
            Ok(Some("gw".into()))
        );
        assert!(from_cloud_init(Some("#cloud-config\nhostname: bad_name\n"), None).is_err());
    }

    #[test]
    fn validity() {
        assert!(is_valid("router"));
        assert!(is_valid("r1.example.net"));
        assert!(is_valid("a-b"));
        assert!(!is_valid("a..b"));
        assert!(!is_valid("a_b"));
        assert!(!is_valid("b-"));
        assert!(!is_valid(&"a".repeat(65)));
        assert!(!is_valid("ünicode"));
    }
}
