//! Proxmox's cloud-init drive as a config source.
//!
//! Proxmox (qemu-server `Cloudinit.pm`, `citype` nocloud) writes an iso9660 volume
//! labelled `cidata` holding `user-data`, `meta-data`, `network-config` and
//! `vendor-data`. init mounts it and hands routerd the directory; this module turns
//! the directory into `router.toml` text:
//!
//! - `user-data` that is not a `#cloud-config` (Proxmox `--cicustom user=...`) is a
//!   full `router.toml` and is used as it is; `network-config` is then not used.
//! - otherwise the router is built from `network-config` (version 1, as Proxmox
//!   writes it from `--ipconfigN`): the interface with a gateway is the WAN (its
//!   `mac_address` selects the NIC: the hoster's virtual MAC on net0), the one other
//!   interface with a static address is the LAN, `nameserver` entries are the WAN's
//!   resolvers, and the LAN gets a DHCP server ([`default_dhcp_range`]). A `/32` with
//!   a gateway outside it is the hoster's failover setup: routerd reaches that
//!   gateway on-link. The host name comes from user-data's `hostname`, else from
//!   meta-data's `local-hostname`.

mod network;
mod render;

use std::path::Path;

use super::diagnostic::{clip, MAX_MESSAGE};
use super::{ConfigError, Diagnostic};
use network::NetworkConfig;
pub use network::{netmask_prefix, DEFAULT_LAN};
pub use render::default_dhcp_range;
use render::render;

pub const USER_DATA: &str = "user-data";
pub const META_DATA: &str = "meta-data";
pub const NETWORK_CONFIG: &str = "network-config";

/// A router.toml made from a cloud-init drive, with what the user should know about
/// how it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub toml: String,
    /// What errors in `toml` are reported against: user-data itself when it is the
    /// router.toml, else the made-up file.
    pub origin: String,
    /// Which file the config came from and what was left out, one line each.
    pub notes: Vec<String>,
}

/// Reads the drive mounted at `dir` and makes its router.toml text.
pub fn generate(dir: &Path) -> Result<Generated, ConfigError> {
    let user_data = read_optional(dir, USER_DATA)?;
    let origin = |file: &str| dir.join(file).display().to_string();
    if let Some(text) = &user_data {
        match UserData::classify(text) {
            UserData::RouterToml => {
                let mut notes = vec![format!("{}: a router.toml, used as it is", origin(USER_DATA))];
                if dir.join(NETWORK_CONFIG).is_file() {
                    notes.push(format!(
                        "{}: not used (user-data is a full router.toml)",
                        origin(NETWORK_CONFIG)
                    ));
                }
                return Ok(Generated {
                    toml: text.clone(),
                    origin: origin(USER_DATA),
                    notes,
                });
            }
            UserData::Unsupported(kind) => {
                return Err(message(
                    origin(USER_DATA),
                    format!("{kind} is not supported: give a router.toml (`--cicustom user=...`) or leave Proxmox's #cloud-config"),
                ));
            }
            UserData::CloudConfig => {}
        }
    }
    let Some(network) = read_optional(dir, NETWORK_CONFIG)? else {
        return Err(message(
            origin(NETWORK_CONFIG),
            "missing: the cloud-init drive has neither a network-config nor a router.toml as user-data; \
             set the WAN with `qm set ID --ipconfig0 ip=203.0.113.10/32,gw=203.0.113.254`"
                .to_string(),
        ));
    };
    let net = NetworkConfig::parse(&network, &origin(NETWORK_CONFIG))?;
    // The name is checked here, by the rule router.toml's `hostname` follows, so that
    // the error points into the file the user wrote; the made-up router.toml then goes
    // through `Config::parse` like any other.
    let hostname = match user_data.as_deref().and_then(|t| top_level_scalar(t, "hostname")) {
        Some(found) => Some((found, origin(USER_DATA))),
        None => read_optional(dir, META_DATA)?
            .and_then(|t| top_level_scalar(&t, "local-hostname"))
            .map(|found| (found, origin(META_DATA))),
    };
    if let Some((found, from)) = &hostname {
        if let Some(problem) = super::hostname::system_name_error(&found.value) {
            return Err(ConfigError::new(
                from.clone(),
                vec![Diagnostic::new(
                    found.line,
                    found.column,
                    &format!("{}: {problem}", found.key),
                )],
            ));
        }
    }
    let mut roles = net.roles(&origin(NETWORK_CONFIG))?;
    let mut notes = vec![match &roles.lan {
        Some(lan) => format!(
            "{}: WAN from {}, LAN from {}",
            origin(NETWORK_CONFIG),
            roles.wan.name,
            lan.name
        ),
        None => format!(
            "{}: WAN from {}; no address for a second NIC, so the LAN is {DEFAULT_LAN} on the NIC that is not the WAN \
             (set another with `qm set ID --ipconfig1 ip=ADDRESS/PREFIX`)",
            origin(NETWORK_CONFIG),
            roles.wan.name
        ),
    }];
    for extra in &roles.extra_wans {
        notes.push(format!(
            "{}: {} has a public address and no gateway: an extra WAN address with its own MAC ([[wan.extra]], via the WAN's gateway)",
            origin(NETWORK_CONFIG),
            extra.name
        ));
    }
    notes.extend(net.notes.iter().map(|n| format!("{}: {n}", origin(NETWORK_CONFIG))));
    if net.unshown_notes > 0 {
        notes.push(format!(
            "{}: {} more notes not shown",
            origin(NETWORK_CONFIG),
            net.unshown_notes
        ));
    }
    // IPv6 is on only with the WAN's gw6=; without it the LAN's ip6= and the IPv6
    // resolvers would be keys the router cannot apply.
    let mut dns6 = net.dns6.clone();
    if roles.wan.static_v6.is_none_or(|(_, gw6)| gw6.is_none()) {
        if roles.wan.static_v6.is_some() {
            notes.push(format!(
                "{}: {}'s IPv6 address left out: it has no gw6=",
                origin(NETWORK_CONFIG),
                roles.wan.name
            ));
        }
        if let Some(lan) = roles.lan.as_mut().filter(|l| l.static_v6.is_some()) {
            lan.static_v6 = None;
            notes.push(format!(
                "{}: {}'s IPv6 address left out: IPv6 needs the WAN's gateway (`--ipconfig0 ...,ip6=ADDRESS/PREFIX,gw6=GATEWAY`)",
                origin(NETWORK_CONFIG),
                lan.name
            ));
        }
        for ip in dns6.drain(..) {
            notes.push(format!(
                "{}: IPv6 resolver {ip} left out (no IPv6 gateway on the WAN)",
                origin(NETWORK_CONFIG)
            ));
        }
    }
    let toml = render(
        dir,
        hostname.as_ref().map(|(h, _)| h.value.as_str()),
        &roles,
        &net.dns,
        &dns6,
    );
    let origin = format!(
        "router.toml made from {} (`routerd cloud-init {}` shows it)",
        dir.display(),
        dir.display()
    );
    // Names in notes come from the drive: each note is logged, so each is bounded.
    let notes = notes.iter().map(|n| clip(n, MAX_MESSAGE)).collect();
    Ok(Generated { toml, origin, notes })
}

fn read_optional(dir: &Path, file: &str) -> Result<Option<String>, ConfigError> {
    crate::file::read_optional(&dir.join(file))
}

/// An error about a whole file or a value without a position.
pub(super) fn message(origin: String, message: String) -> ConfigError {
    ConfigError::whole_file(origin, &message)
}

#[derive(Debug, PartialEq, Eq)]
enum UserData {
    CloudConfig,
    RouterToml,
    Unsupported(&'static str),
}

impl UserData {
    /// cloud-init tells user-data formats apart by their first line.
    fn classify(text: &str) -> UserData {
        let first = text.lines().next().unwrap_or("").trim_end();
        if first.starts_with("#cloud-config") {
            UserData::CloudConfig
        } else if first.starts_with("#!") {
            UserData::Unsupported("a script as user-data")
        } else if first.starts_with("#include") {
            UserData::Unsupported("#include user-data")
        } else if first.starts_with("#cloud-boothook") {
            UserData::Unsupported("a cloud-boothook")
        } else if first.to_ascii_lowercase().starts_with("content-type:") {
            UserData::Unsupported("MIME multi-part user-data")
        } else {
            UserData::RouterToml
        }
    }
}

/// A top-level `key: value` of a YAML file, with where the value starts (1-based).
#[derive(Debug, PartialEq, Eq)]
struct Scalar {
    key: &'static str,
    value: String,
    line: usize,
    column: usize,
}

/// The value of a top-level `key: value` line (quotes and a trailing ` # comment`
/// removed). Read line by line so that the rest of a #cloud-config (users, keys,
/// passwords) never stops the router.
fn top_level_scalar(text: &str, key: &'static str) -> Option<Scalar> {
    text.lines().enumerate().find_map(|(i, line)| {
        let after_key = line.strip_prefix(key)?.strip_prefix(':')?;
        // YAML: a comment starts at a '#' that follows whitespace.
        let end = after_key
            .char_indices()
            .find(|&(j, c)| c == '#' && after_key[..j].ends_with([' ', '\t']))
            .map_or(after_key.len(), |(j, _)| j);
        let raw = &after_key[..end];
        let value = raw.trim();
        let unquoted = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
            .unwrap_or(value);
        if unquoted.is_empty() {
            return None;
        }
        let quote = usize::from(unquoted.len() != value.len());
        let start = (line.len() - after_key.len()) + (raw.len() - raw.trim_start().len()) + quote;
        Some(Scalar {
            key,
            value: unquoted.to_string(),
            line: i + 1,
            column: line[..start].chars().count() + 1,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_kinds() {
        assert_eq!(
            UserData::classify("#cloud-config\nhostname: x\n"),
            UserData::CloudConfig
        );
        assert_eq!(UserData::classify("hostname = \"r\"\n[wan]\n"), UserData::RouterToml);
        assert_eq!(UserData::classify("# my router\n[wan]\n"), UserData::RouterToml);
        assert!(matches!(
            UserData::classify("#!/bin/sh\necho\n"),
            UserData::Unsupported(_)
        ));
        assert!(matches!(
            UserData::classify("Content-Type: multipart/mixed\n"),
            UserData::Unsupported(_)
        ));
    }

    #[test]
    fn hostname_lines() {
        let value = |text: &str, key| top_level_scalar(text, key).map(|s| s.value);
        let ud = "#cloud-config\nhostname: edge\nmanage_etc_hosts: true\nfqdn: edge.example.net\n";
        assert_eq!(value(ud, "hostname").as_deref(), Some("edge"));
        assert_eq!(value("local-hostname: 'r1'\n", "local-hostname").as_deref(), Some("r1"));
        assert_eq!(value("  hostname: nested\n", "hostname"), None);
        assert_eq!(value("hostnames: x\n", "hostname"), None);
        assert_eq!(
            value("hostname: edge\t# the VM name\n", "hostname").as_deref(),
            Some("edge")
        );
        assert_eq!(value("hostname: a#b\n", "hostname").as_deref(), Some("a#b"));
        let found = top_level_scalar("#cloud-config\nhostname:   \"gw\" # x\n", "hostname");
        assert_eq!(
            found.map(|s| (s.value, s.line, s.column)),
            Some(("gw".to_string(), 2, 14))
        );
    }
}
