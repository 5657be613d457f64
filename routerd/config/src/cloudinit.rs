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

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::Ipv4Net;
use serde_yaml::Value;

use super::{ConfigError, Diagnostic, MacAddr};

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
            return Err(ConfigError {
                origin: from.clone(),
                diagnostics: vec![Diagnostic {
                    line: found.line,
                    column: found.column,
                    message: format!("{}: {problem}", found.key),
                }],
                unreadable: None,
            });
        }
    }
    let roles = net.roles(&origin(NETWORK_CONFIG))?;
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
    notes.extend(net.notes.iter().map(|n| format!("{}: {n}", origin(NETWORK_CONFIG))));
    let toml = render(dir, hostname.as_ref().map(|(h, _)| h.value.as_str()), &roles, &net.dns);
    let origin = format!(
        "router.toml made from {} (`routerd cloud-init {}` shows it)",
        dir.display(),
        dir.display()
    );
    Ok(Generated { toml, origin, notes })
}

fn read_optional(dir: &Path, file: &str) -> Result<Option<String>, ConfigError> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::unreadable(path.display().to_string(), &e)),
    }
}

/// An error about a whole file or a value without a position.
fn message(origin: String, message: String) -> ConfigError {
    ConfigError {
        origin,
        diagnostics: vec![Diagnostic {
            line: 0,
            column: 0,
            message,
        }],
        unreadable: None,
    }
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

/// One `type: physical` entry of network-config.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interface {
    /// `eth0` in Proxmox's output; `config[i]` if unnamed.
    name: String,
    mac: Option<MacAddr>,
    /// The first static IPv4 subnet: address with prefix, and its gateway.
    static_v4: Option<(Ipv4Net, Option<Ipv4Addr>)>,
    dhcp4: bool,
}

#[derive(Debug, Default)]
struct NetworkConfig {
    interfaces: Vec<Interface>,
    dns: Vec<Ipv4Addr>,
    notes: Vec<String>,
}

struct Roles {
    wan: Interface,
    /// `None`: no ipconfig for the LAN NIC; [`DEFAULT_LAN`] on the other NIC.
    lan: Option<Interface>,
}

/// The LAN when network-config has none (only `--ipconfig0` was set).
pub const DEFAULT_LAN: &str = "172.16.0.1/16";

/// Collects the problems of one network-config, each with its place in the file.
struct Walk<'a> {
    origin: &'a str,
    errors: Vec<String>,
}

impl Walk<'_> {
    fn error(&mut self, at: &str, message: impl std::fmt::Display) {
        self.errors.push(format!("{at}: {message}"));
    }

    fn str<'v>(&mut self, map: &'v Value, key: &str, at: &str) -> Option<&'v str> {
        match map.get(key)? {
            Value::String(s) => Some(s.as_str()),
            other => {
                self.error(
                    &format!("{at}.{key}"),
                    format!("expected a string, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// A string or a list of strings (cloud-init accepts both for addresses).
    fn strings<'v>(&mut self, map: &'v Value, key: &str, at: &str) -> Vec<(String, &'v str)> {
        match map.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split_whitespace().map(|w| (format!("{at}.{key}"), w)).collect(),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Value::String(s) => Some((format!("{at}.{key}[{i}]"), s.as_str())),
                    other => {
                        self.error(
                            &format!("{at}.{key}[{i}]"),
                            format!("expected an address, found {}", describe(other)),
                        );
                        None
                    }
                })
                .collect(),
            Some(other) => {
                self.error(
                    &format!("{at}.{key}"),
                    format!("expected an address or a list of them, found {}", describe(other)),
                );
                Vec::new()
            }
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// `255.255.255.0` → 24; `None` unless the ones are contiguous.
pub fn netmask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0)
        .then(|| u8::try_from(ones).ok())
        .flatten()
}

impl NetworkConfig {
    fn parse(text: &str, origin: &str) -> Result<NetworkConfig, ConfigError> {
        let doc: Value = serde_yaml::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            ConfigError {
                origin: origin.to_string(),
                diagnostics: vec![Diagnostic {
                    line,
                    column,
                    message: format!("not YAML: {e}"),
                }],
                unreadable: None,
            }
        })?;
        // cloud-init also accepts the whole document under a `network:` key.
        let doc = match doc.get("network") {
            Some(inner) if doc.get("version").is_none() => inner,
            _ => &doc,
        };
        let mut walk = Walk {
            origin,
            errors: Vec::new(),
        };
        let mut net = NetworkConfig::default();
        match doc.get("version") {
            Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
            Some(Value::Number(n)) if n.as_u64() == Some(2) => {
                return Err(message(
                    origin.to_string(),
                    "version 2 is not supported: routerd reads version 1, which Proxmox writes for citype nocloud"
                        .into(),
                ));
            }
            Some(other) => walk.error("version", format!("expected 1, found {}", describe(other))),
            None => walk.error("version", "missing (Proxmox writes `version: 1`)"),
        }
        match doc.get("config") {
            Some(Value::Sequence(entries)) => {
                for (i, entry) in entries.iter().enumerate() {
                    net.entry(&mut walk, entry, &format!("config[{i}]"));
                }
            }
            Some(Value::Null) | None => {}
            Some(other) => walk.error(
                "config",
                format!("expected a list of interfaces, found {}", describe(other)),
            ),
        }
        if walk.errors.is_empty() {
            Ok(net)
        } else {
            let diagnostics = walk
                .errors
                .into_iter()
                .map(|message| Diagnostic {
                    line: 0,
                    column: 0,
                    message,
                })
                .collect();
            Err(ConfigError {
                origin: walk.origin.to_string(),
                diagnostics,
                unreadable: None,
            })
        }
    }

    fn entry(&mut self, walk: &mut Walk<'_>, entry: &Value, at: &str) {
        if !entry.is_mapping() {
            walk.error(at, format!("expected a mapping with `type`, found {}", describe(entry)));
            return;
        }
        match walk.str(entry, "type", at) {
            Some("physical") => self.physical(walk, entry, at),
            Some("nameserver") => {
                for (place, addr) in walk.strings(entry, "address", at) {
                    self.nameserver(walk, &place, addr);
                }
            }
            Some(other @ ("bond" | "bridge" | "vlan" | "route")) => {
                walk.error(
                    &format!("{at}.type"),
                    format!("{other:?} is not supported: the router uses two plain NICs (net0 WAN, net1 LAN)"),
                );
            }
            Some(other) => walk.error(
                &format!("{at}.type"),
                format!("unknown type {other:?} (expected \"physical\" or \"nameserver\")"),
            ),
            None => walk.error(at, "missing `type`"),
        }
    }

    fn nameserver(&mut self, walk: &mut Walk<'_>, at: &str, addr: &str) {
        match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) if !self.dns.contains(&ip) => self.dns.push(ip),
            Ok(IpAddr::V4(_)) => {}
            Ok(IpAddr::V6(ip)) => self
                .notes
                .push(format!("{at}: IPv6 resolver {ip} left out (routerd is IPv4 only)")),
            Err(_) => walk.error(at, format!("expected an IP address, found {addr:?}")),
        }
    }

    fn physical(&mut self, walk: &mut Walk<'_>, entry: &Value, at: &str) {
        let name = walk
            .str(entry, "name", at)
            .map_or_else(|| at.to_string(), str::to_string);
        let at = format!("{at} ({name})");
        let mac = walk
            .str(entry, "mac_address", &at)
            .and_then(|m| match m.parse::<MacAddr>() {
                Ok(mac) => Some(mac),
                Err(()) => {
                    walk.error(
                        &format!("{at}.mac_address"),
                        format!("expected a MAC like 02:00:00:00:00:10, found {m:?}"),
                    );
                    None
                }
            });
        let mut iface = Interface {
            name,
            mac,
            static_v4: None,
            dhcp4: false,
        };
        let subnets = match entry.get("subnets") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Sequence(s)) => s.as_slice(),
            Some(other) => {
                walk.error(
                    &format!("{at}.subnets"),
                    format!("expected a list, found {}", describe(other)),
                );
                &[][..]
            }
        };
        for (j, subnet) in subnets.iter().enumerate() {
            let sat = format!("{at}.subnets[{j}]");
            match walk.str(subnet, "type", &sat) {
                Some("static") => self.static_subnet(walk, subnet, &sat, &mut iface),
                Some("dhcp" | "dhcp4") => iface.dhcp4 = true,
                Some(v6 @ ("static6" | "dhcp6" | "ipv6_slaac" | "ipv6_dhcpv6-stateless" | "ipv6_dhcpv6-stateful")) => {
                    self.notes.push(format!("{sat}: {v6} left out (routerd is IPv4 only)"));
                }
                Some(other) => walk.error(&format!("{sat}.type"), format!("unknown subnet type {other:?}")),
                None => walk.error(&sat, "missing `type`"),
            }
        }
        self.interfaces.push(iface);
    }

    fn static_subnet(&mut self, walk: &mut Walk<'_>, subnet: &Value, at: &str, iface: &mut Interface) {
        for (place, addr) in walk.strings(subnet, "dns_nameservers", at) {
            self.nameserver(walk, &place, addr);
        }
        let Some(address) = walk.str(subnet, "address", at) else {
            walk.error(at, "a static subnet needs `address`");
            return;
        };
        // `address: 203.0.113.10` with `netmask`, or `address: 203.0.113.10/32`.
        let (addr, prefix) = match address.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (address, None),
        };
        let ip = match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => ip,
            Ok(IpAddr::V6(_)) => {
                self.notes
                    .push(format!("{at}: IPv6 address {address} left out (routerd is IPv4 only)"));
                return;
            }
            Err(_) => {
                walk.error(
                    &format!("{at}.address"),
                    format!("expected an IPv4 address, found {address:?}"),
                );
                return;
            }
        };
        let from_prefix = match prefix.map(|p| p.parse::<u8>().ok().filter(|p| *p <= 32)) {
            None => None,
            Some(Some(p)) => Some(p),
            Some(None) => {
                walk.error(&format!("{at}.address"), format!("bad prefix length in {address:?}"));
                return;
            }
        };
        let from_mask = match walk.str(subnet, "netmask", at) {
            None => None,
            Some(mask) => match mask.parse::<Ipv4Addr>().ok().and_then(netmask_prefix) {
                Some(p) => Some(p),
                None => {
                    walk.error(
                        &format!("{at}.netmask"),
                        format!("expected a dotted netmask like 255.255.255.255, found {mask:?}"),
                    );
                    return;
                }
            },
        };
        let prefix_len = match (from_prefix, from_mask) {
            (Some(a), Some(b)) if a != b => {
                walk.error(
                    &format!("{at}.netmask"),
                    format!("/{b} contradicts the /{a} in address {address:?}"),
                );
                return;
            }
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => {
                walk.error(
                    at,
                    format!("address {address:?} has no prefix length and there is no `netmask`"),
                );
                return;
            }
        };
        let Ok(net) = Ipv4Net::new(ip, prefix_len) else { return };
        let gateway = match walk.str(subnet, "gateway", at) {
            None => None,
            Some(g) => match g.parse::<Ipv4Addr>() {
                Ok(gw) => Some(gw),
                Err(_) => {
                    walk.error(
                        &format!("{at}.gateway"),
                        format!("expected an IPv4 address, found {g:?}"),
                    );
                    return;
                }
            },
        };
        if iface.static_v4.is_some() {
            walk.error(
                at,
                format!(
                    "a second IPv4 address on {}: the router takes one address per NIC",
                    iface.name
                ),
            );
            return;
        }
        iface.static_v4 = Some((net, gateway));
    }

    /// The WAN is the interface with a gateway, the LAN the other one with an address.
    fn roles(&self, origin: &str) -> Result<Roles, ConfigError> {
        let fail = |m: String| Err(message(origin.to_string(), m));
        let with_gateway: Vec<&Interface> = self
            .interfaces
            .iter()
            .filter(|i| matches!(i.static_v4, Some((_, Some(_)))))
            .collect();
        let wan = match with_gateway.as_slice() {
            [wan] => (*wan).clone(),
            [] => {
                if let Some(dhcp) = self.interfaces.iter().find(|i| i.dhcp4) {
                    return fail(format!(
                        "{} asks for DHCP (ip=dhcp): the WAN needs the static failover address and gateway, \
                         like `qm set ID --ipconfig0 ip=203.0.113.10/32,gw=203.0.113.254`",
                        dhcp.name
                    ));
                }
                return fail(
                    "no interface has a static address with a gateway, so there is no WAN: \
                     `qm set ID --ipconfig0 ip=203.0.113.10/32,gw=203.0.113.254`"
                        .to_string(),
                );
            }
            several => {
                let names: Vec<&str> = several.iter().map(|i| i.name.as_str()).collect();
                return fail(format!(
                    "{} all have a gateway: only the WAN (net0) may have one; remove `gw=` from the LAN's ipconfig",
                    names.join(", ")
                ));
            }
        };
        if wan.mac.is_none() {
            return fail(format!(
                "{}: no mac_address: the WAN NIC is chosen by its MAC (the hoster's virtual MAC on net0)",
                wan.name
            ));
        }
        let others: Vec<&Interface> = self
            .interfaces
            .iter()
            .filter(|i| i.name != wan.name && i.static_v4.is_some())
            .collect();
        let lan = match others.as_slice() {
            [lan] => Some((*lan).clone()),
            [] => None,
            several => {
                let names: Vec<&str> = several.iter().map(|i| i.name.as_str()).collect();
                return fail(format!(
                    "{} have static addresses but the router has one LAN: keep ipconfig on net0 and net1 only",
                    names.join(", ")
                ));
            }
        };
        Ok(Roles { wan, lan })
    }
}

/// The DHCP pool for a LAN made from cloud-init: `.100`–`.249` of the router's /24
/// (`.10`–`.99` if the router's address is in there) for a /24 or larger LAN; for a
/// smaller LAN the upper half of its hosts (the lower half if the router is there).
pub fn default_dhcp_range(lan: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    let router = u32::from(lan.addr());
    let (first, last) = if lan.prefix_len() <= 24 {
        let base = router & 0xffff_ff00;
        let (a, b) = (base + 100, base + 249);
        if (a..=b).contains(&router) {
            (base + 10, base + 99)
        } else {
            (a, b)
        }
    } else {
        let network = u32::from(lan.network());
        let broadcast = u32::from(lan.broadcast());
        let middle = network + (broadcast - network).div_ceil(2);
        if (middle..broadcast).contains(&router) {
            (network + 1, middle - 1)
        } else {
            (middle, broadcast - 1)
        }
    };
    (Ipv4Addr::from(first), Ipv4Addr::from(last))
}

fn render(dir: &Path, hostname: Option<&str>, roles: &Roles, dns: &[Ipv4Addr]) -> String {
    let quoted = |items: &[String]| items.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Made by routerd from the cloud-init drive at {} (its network-config).",
        dir.display()
    );
    if let Some(h) = hostname {
        let _ = writeln!(t, "hostname = {h:?}");
    }
    let (wan_net, wan_gw) = roles.wan.static_v4.unwrap_or((Ipv4Net::default(), None));
    t.push_str("\n[wan]\n");
    if let Some(mac) = roles.wan.mac {
        let _ = writeln!(t, "mac = \"{mac}\"");
    }
    let _ = writeln!(t, "address = \"{wan_net}\"");
    if let Some(gw) = wan_gw {
        let _ = writeln!(t, "gateway = \"{gw}\"");
    }
    let dns: Vec<String> = dns.iter().map(ToString::to_string).collect();
    let _ = writeln!(t, "dns = [{}]", quoted(&dns));
    let default_lan: Ipv4Net = DEFAULT_LAN.parse().unwrap_or_default();
    let lan_net = roles
        .lan
        .as_ref()
        .and_then(|l| l.static_v4)
        .map_or(default_lan, |(net, _)| net);
    t.push_str("\n[lan]\n");
    if let Some(mac) = roles.lan.as_ref().and_then(|l| l.mac) {
        let _ = writeln!(t, "mac = \"{mac}\"");
    }
    let _ = writeln!(t, "address = \"{lan_net}\"");
    let (first, last) = default_dhcp_range(lan_net);
    t.push_str("\n[dhcp]\n");
    let _ = writeln!(t, "range = \"{first}-{last}\"");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks() {
        let p = |m: &str| m.parse::<Ipv4Addr>().ok().and_then(netmask_prefix);
        assert_eq!(p("255.255.255.255"), Some(32));
        assert_eq!(p("255.255.0.0"), Some(16));
        assert_eq!(p("0.0.0.0"), Some(0));
        assert_eq!(p("255.255.255.254"), Some(31));
        assert_eq!(p("255.0.255.0"), None);
        assert_eq!(p("0.255.255.255"), None);
    }

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

    #[test]
    fn dhcp_ranges() {
        let r = |s: &str| {
            let (a, b) = default_dhcp_range(s.parse().unwrap_or_default());
            format!("{a}-{b}")
        };
        assert_eq!(r("172.16.0.1/16"), "172.16.0.100-172.16.0.249");
        assert_eq!(r("10.0.5.1/24"), "10.0.5.100-10.0.5.249");
        assert_eq!(r("10.0.5.150/24"), "10.0.5.10-10.0.5.99");
        assert_eq!(r("10.0.5.1/26"), "10.0.5.32-10.0.5.62");
        assert_eq!(r("10.0.5.40/26"), "10.0.5.1-10.0.5.31");
        assert_eq!(r("10.0.5.1/30"), "10.0.5.2-10.0.5.2");
    }
}
