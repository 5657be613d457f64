//! network-config version 1, as Proxmox writes it from `--ipconfigN` and
//! `--nameserver`: which NIC is the WAN, which the LAN, and the resolvers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use saphyr::{LoadableYamlNode, Scalar, Yaml};
use saphyr_parser::{Event, Marker, Parser, ScanError};

use super::message;
use crate::diagnostic::{clip, quote, MAX_DIAGNOSTICS, MAX_MESSAGE, MAX_QUOTED};
use crate::{ConfigError, Diagnostic, MacAddr};

/// One `type: physical` entry of network-config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Interface {
    /// `eth0` in Proxmox's output; `config[i]` if unnamed.
    pub name: String,
    pub mac: Option<MacAddr>,
    /// The first static IPv4 subnet: address with prefix, and its gateway.
    pub static_v4: Option<(Ipv4Net, Option<Ipv4Addr>)>,
    pub dhcp4: bool,
    /// The first static IPv6 subnet (`ip6=`, `gw6=`): address with prefix, gateway.
    pub static_v6: Option<(Ipv6Net, Option<Ipv6Addr>)>,
}

#[derive(Debug, Default)]
pub(super) struct NetworkConfig {
    interfaces: Vec<Interface>,
    /// The IPv4 resolvers, each once, in the file's order.
    pub dns: Vec<Ipv4Addr>,
    /// The IPv6 resolvers, likewise (`wan.dns6` when the WAN has IPv6).
    pub dns6: Vec<Ipv6Addr>,
    /// What was left out (IPv6), one line each (the first [`MAX_DIAGNOSTICS`]).
    pub notes: Vec<String>,
    pub unshown_notes: usize,
}

pub(super) struct Roles {
    pub wan: Interface,
    /// NICs with a public address and no gateway (Hetzner's net2...): extra WAN
    /// addresses with a MAC of their own (`[[wan.extra]]`, gateway: the WAN's).
    pub extra_wans: Vec<Interface>,
    /// `None`: no ipconfig for the LAN NIC; [`DEFAULT_LAN`] on the other NIC.
    pub lan: Option<Interface>,
}

/// The LAN when network-config has none (only `--ipconfig0` was set).
pub const DEFAULT_LAN: &str = "172.16.0.1/16";

/// Collects the problems of one network-config, each with its place in the file
/// (the first [`MAX_DIAGNOSTICS`] of them).
struct Walk<'a> {
    origin: &'a str,
    errors: Vec<Diagnostic>,
    unshown: usize,
}

impl Walk<'_> {
    fn error(&mut self, at: &str, message: impl std::fmt::Display) {
        if self.errors.len() < MAX_DIAGNOSTICS {
            self.errors.push(Diagnostic::new(0, 0, &format!("{at}: {message}")));
        } else {
            self.unshown += 1;
        }
    }

    fn str<'v>(&mut self, map: &'v Yaml<'_>, key: &str, at: &str) -> Option<&'v str> {
        match get(map, key)? {
            Yaml::Value(Scalar::String(s)) => Some(s.as_ref()),
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
    fn strings<'v>(&mut self, map: &'v Yaml<'_>, key: &str, at: &str) -> Vec<(String, &'v str)> {
        match get(map, key) {
            None | Some(Yaml::Value(Scalar::Null)) => Vec::new(),
            Some(Yaml::Value(Scalar::String(s))) => s.split_whitespace().map(|w| (format!("{at}.{key}"), w)).collect(),
            Some(Yaml::Sequence(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| match v {
                    Yaml::Value(Scalar::String(s)) => Some((format!("{at}.{key}[{i}]"), s.as_ref())),
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

/// Proxmox's network-config nests five deep; anything much deeper is refused before
/// a tree is built: the tree's code recurses, and a file of `- - - …` would overflow
/// the stack. Aliases are refused too: Proxmox writes none, and each one copies its
/// anchor's value, so 1 MiB of `*a` could ask for gigabytes.
const MAX_DEPTH: usize = 32;

/// The YAML documents of `text`, or where and why it is not YAML.
fn load_yaml(text: &str) -> Result<Vec<Yaml<'_>>, Diagnostic> {
    let at = |mark: Marker, message: String| Diagnostic::new(mark.line(), mark.col() + 1, &message);
    let not_yaml = |e: ScanError| at(*e.marker(), format!("not YAML: {}", e.info()));
    let mut depth = 0usize;
    for event in Parser::new_from_str(text) {
        match event.map_err(not_yaml)? {
            (Event::SequenceStart(..) | Event::MappingStart(..), span) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(at(
                        span.start,
                        format!("nested more than {MAX_DEPTH} deep (network-config needs 6)"),
                    ));
                }
            }
            (Event::SequenceEnd | Event::MappingEnd, _) => depth = depth.saturating_sub(1),
            (Event::Alias(_), span) => {
                return Err(at(
                    span.start,
                    "YAML aliases (*name) are not supported here".to_string(),
                ));
            }
            _ => {}
        }
    }
    Yaml::load_from_str(text).map_err(not_yaml)
}

/// `map[key]`, when `map` is a mapping that has `key`.
fn get<'v, 'i>(map: &'v Yaml<'i>, key: &str) -> Option<&'v Yaml<'i>> {
    map.as_mapping_get(key)
}

fn describe(v: &Yaml<'_>) -> String {
    match v {
        Yaml::Value(Scalar::Null) => "nothing".into(),
        Yaml::Value(Scalar::Boolean(b)) => format!("{b}"),
        Yaml::Value(Scalar::Integer(n)) => format!("the number {n}"),
        Yaml::Value(Scalar::FloatingPoint(n)) => format!("the number {n}"),
        Yaml::Value(Scalar::String(s)) => quote(s),
        Yaml::Sequence(_) => "a list".into(),
        Yaml::Mapping(_) => "a mapping".into(),
        Yaml::Tagged(tag, _) => format!("a value tagged {tag}"),
        Yaml::Representation(..) | Yaml::Alias(_) | Yaml::BadValue => "an unreadable value".into(),
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
    pub fn parse(text: &str, origin: &str) -> Result<NetworkConfig, ConfigError> {
        let docs = load_yaml(text).map_err(|d| ConfigError::new(origin.to_string(), vec![d]))?;
        let doc = match docs.as_slice() {
            [] => &Yaml::Value(Scalar::Null),
            [doc] => doc,
            [..] => {
                return Err(message(
                    origin.to_string(),
                    "more than one YAML document (`---`): network-config is one".into(),
                ))
            }
        };
        // cloud-init also accepts the whole document under a `network:` key.
        let doc = match get(doc, "network") {
            Some(inner) if get(doc, "version").is_none() => inner,
            _ => doc,
        };
        let mut walk = Walk {
            origin,
            errors: Vec::new(),
            unshown: 0,
        };
        let mut net = NetworkConfig::default();
        match get(doc, "version") {
            Some(Yaml::Value(Scalar::Integer(1))) => {}
            Some(Yaml::Value(Scalar::Integer(2))) => {
                return Err(message(
                    origin.to_string(),
                    "version 2 is not supported: routerd reads version 1, which Proxmox writes for citype nocloud"
                        .into(),
                ));
            }
            Some(other) => walk.error("version", format!("expected 1, found {}", describe(other))),
            None => walk.error("version", "missing (Proxmox writes `version: 1`)"),
        }
        match get(doc, "config") {
            Some(Yaml::Sequence(entries)) => {
                for (i, entry) in entries.iter().enumerate() {
                    net.entry(&mut walk, entry, &format!("config[{i}]"));
                }
            }
            Some(Yaml::Value(Scalar::Null)) | None => {}
            Some(other) => walk.error(
                "config",
                format!("expected a list of interfaces, found {}", describe(other)),
            ),
        }
        if walk.errors.is_empty() {
            Ok(net)
        } else {
            Err(ConfigError::with_unshown(
                walk.origin.to_string(),
                walk.errors,
                walk.unshown,
            ))
        }
    }

    fn entry(&mut self, walk: &mut Walk<'_>, entry: &Yaml<'_>, at: &str) {
        if !matches!(entry, Yaml::Mapping(_)) {
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
                    format!(
                        "{} is not supported: the router uses two plain NICs (net0 WAN, net1 LAN)",
                        quote(other)
                    ),
                );
            }
            Some(other) => walk.error(
                &format!("{at}.type"),
                format!(
                    "unknown type {} (expected \"physical\" or \"nameserver\")",
                    quote(other)
                ),
            ),
            None => walk.error(at, "missing `type`"),
        }
    }

    fn note(&mut self, note: String) {
        if self.notes.len() < MAX_DIAGNOSTICS {
            self.notes.push(clip(&note, MAX_MESSAGE));
        } else {
            self.unshown_notes += 1;
        }
    }

    fn nameserver(&mut self, walk: &mut Walk<'_>, at: &str, addr: &str) {
        match addr.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) if !self.dns.contains(&ip) => self.dns.push(ip),
            Ok(IpAddr::V4(_)) => {}
            Ok(IpAddr::V6(ip)) if !self.dns6.contains(&ip) => self.dns6.push(ip),
            Ok(IpAddr::V6(_)) => {}
            Err(_) => walk.error(at, format!("expected an IP address, found {}", quote(addr))),
        }
    }

    fn physical(&mut self, walk: &mut Walk<'_>, entry: &Yaml<'_>, at: &str) {
        let name = walk
            .str(entry, "name", at)
            .map_or_else(|| at.to_string(), str::to_string);
        let at = format!("{at} ({})", clip(&name, MAX_QUOTED));
        let mac = walk
            .str(entry, "mac_address", &at)
            .and_then(|m| match m.parse::<MacAddr>() {
                Ok(mac) => Some(mac),
                Err(()) => {
                    walk.error(
                        &format!("{at}.mac_address"),
                        format!("expected a MAC like 02:00:00:00:00:10, found {}", quote(m)),
                    );
                    None
                }
            });
        let mut iface = Interface {
            name,
            mac,
            static_v4: None,
            dhcp4: false,
            static_v6: None,
        };
        let subnets = match get(entry, "subnets") {
            None | Some(Yaml::Value(Scalar::Null)) => &[][..],
            Some(Yaml::Sequence(s)) => s.as_slice(),
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
                Some("static6") => self.static6_subnet(walk, subnet, &sat, &mut iface),
                Some(v6 @ ("dhcp6" | "ipv6_slaac" | "ipv6_dhcpv6-stateless" | "ipv6_dhcpv6-stateful")) => {
                    self.note(format!("{sat}: {v6} left out (routerd takes static IPv6 only)"));
                }
                Some(other) => walk.error(&format!("{sat}.type"), format!("unknown subnet type {}", quote(other))),
                None => walk.error(&sat, "missing `type`"),
            }
        }
        self.interfaces.push(iface);
    }

    fn static_subnet(&mut self, walk: &mut Walk<'_>, subnet: &Yaml<'_>, at: &str, iface: &mut Interface) {
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
                self.static6_subnet(walk, subnet, at, iface);
                return;
            }
            Err(_) => {
                walk.error(
                    &format!("{at}.address"),
                    format!("expected an IPv4 address, found {}", quote(address)),
                );
                return;
            }
        };
        let from_prefix = match prefix.map(|p| p.parse::<u8>().ok().filter(|p| *p <= 32)) {
            None => None,
            Some(Some(p)) => Some(p),
            Some(None) => {
                walk.error(
                    &format!("{at}.address"),
                    format!("bad prefix length in {}", quote(address)),
                );
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
                        format!("expected a dotted netmask like 255.255.255.255, found {}", quote(mask)),
                    );
                    return;
                }
            },
        };
        let prefix_len = match (from_prefix, from_mask) {
            (Some(a), Some(b)) if a != b => {
                walk.error(
                    &format!("{at}.netmask"),
                    format!("/{b} contradicts the /{a} in address {}", quote(address)),
                );
                return;
            }
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => {
                walk.error(
                    at,
                    format!(
                        "address {} has no prefix length and there is no `netmask`",
                        quote(address)
                    ),
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
                        format!("expected an IPv4 address, found {}", quote(g)),
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

    /// `ip6=2001:db8::10/64,gw6=fe80::1`: the first one of the NIC (later ones noted).
    fn static6_subnet(&mut self, walk: &mut Walk<'_>, subnet: &Yaml<'_>, at: &str, iface: &mut Interface) {
        for (place, addr) in walk.strings(subnet, "dns_nameservers", at) {
            self.nameserver(walk, &place, addr);
        }
        let Some(address) = walk.str(subnet, "address", at) else {
            walk.error(at, "a static6 subnet needs `address`");
            return;
        };
        let Ok(net) = address.parse::<Ipv6Net>() else {
            walk.error(
                &format!("{at}.address"),
                format!("expected an IPv6 address with prefix length, found {}", quote(address)),
            );
            return;
        };
        let gateway = match walk.str(subnet, "gateway", at) {
            None => None,
            Some(g) => match g.parse::<Ipv6Addr>() {
                Ok(gw) => Some(gw),
                Err(_) => {
                    walk.error(
                        &format!("{at}.gateway"),
                        format!("expected an IPv6 address, found {}", quote(g)),
                    );
                    return;
                }
            },
        };
        if iface.static_v6.is_some() {
            self.note(format!("{at}: a second IPv6 address on {} left out", iface.name));
            return;
        }
        iface.static_v6 = Some((net, gateway));
    }

    /// The WAN is the interface with a gateway, the LAN the other one with an address;
    /// with more NICs, those with a public address are extra WANs.
    pub fn roles(&self, origin: &str) -> Result<Roles, ConfigError> {
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
        // One more NIC with an address is the LAN, whatever its address (as always),
        // unless it is a public /32 (no LAN fits in one: a failover IP of its own);
        // beyond that, those with a public address are extra WANs.
        let several = others.len() > 1;
        let (extra_wans, others): (Vec<&Interface>, Vec<&Interface>) = others.into_iter().partition(|i| {
            i.static_v4
                .is_some_and(|(net, _)| is_public(net.addr()) && (several || net.prefix_len() == 32))
        });
        if let Some(no_mac) = extra_wans.iter().find(|i| i.mac.is_none()) {
            return fail(format!(
                "{}: no mac_address: a NIC with a public address is an extra WAN, chosen by its MAC (the virtual MAC the hoster issued for that address)",
                no_mac.name
            ));
        }
        let extra_wans: Vec<Interface> = extra_wans.into_iter().cloned().collect();
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
        Ok(Roles { wan, extra_wans, lan })
    }
}

/// Whether `ip` is an address the internet routes (the documentation ranges count, as
/// they stand for public addresses): not private, shared (CGNAT), link-local or loopback.
fn is_public(ip: Ipv4Addr) -> bool {
    let shared = Ipv4Net::new(Ipv4Addr::new(100, 64, 0, 0), 10).is_ok_and(|n| n.contains(&ip));
    !(ip.is_private() || ip.is_loopback() || ip.is_link_local() || ip.is_unspecified() || shared)
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
    fn hand_written_yaml_styles_read_like_proxmox_output() {
        // Unquoted values, a flow list, and the document under `network:`.
        let text = "network:\n  version: 1\n  config:\n  - {type: physical, name: wan0, mac_address: 02:00:00:00:00:10,\n     subnets: [{type: static, address: 203.0.113.10/32, gateway: 203.0.113.254}]}\n  - type: nameserver\n    address: [198.51.100.53, 198.51.100.54]  # two\n";
        let net = NetworkConfig::parse(text, "nc").expect("valid");
        let roles = net.roles("nc").expect("a WAN");
        assert_eq!(roles.wan.name, "wan0");
        assert_eq!(
            roles.wan.mac.map(|m| m.to_string()).as_deref(),
            Some("02:00:00:00:00:10")
        );
        assert_eq!(
            roles
                .wan
                .static_v4
                .map(|(a, g)| (a.to_string(), g.map(|g| g.to_string()))),
            Some(("203.0.113.10/32".into(), Some("203.0.113.254".into())))
        );
        assert_eq!(net.dns.len(), 2);
        assert_eq!(
            error("version: \"1\"\nconfig: []\n"),
            "0:0: version: expected 1, found \"1\""
        );
        assert_eq!(
            error("version: 1\n---\nversion: 1\n"),
            "0:0: more than one YAML document (`---`): network-config is one"
        );
    }

    /// The first error of `text`, as `line:column: message`.
    fn error(text: &str) -> String {
        match NetworkConfig::parse(text, "nc") {
            Ok(_) => panic!("accepted"),
            Err(e) => e
                .diagnostics
                .first()
                .map_or(String::new(), |d| format!("{}:{}: {}", d.line, d.column, d.message)),
        }
    }

    #[test]
    fn hostile_yaml_is_refused_without_exhausting_the_stack_or_memory() {
        let deep_block = format!("version: 1\nconfig:\n{}x\n", "- ".repeat(400_000));
        assert_eq!(
            error(&deep_block),
            "3:63: nested more than 32 deep (network-config needs 6)"
        );
        let deep_flow = format!("version: 1\nconfig: {}\n", "[".repeat(400_000));
        assert!(error(&deep_flow).starts_with("2:"), "{}", error(&deep_flow));
        // A billion laughs: ten aliases of ten aliases of ... of ten scalars.
        let mut laughs = String::from("version: 1\nl0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = format!("*l{}", i - 1);
            laughs.push_str(&format!("l{i}: &l{i} [{}]\n", [p.as_str(); 10].join(", ")));
        }
        assert_eq!(error(&laughs), "3:10: YAML aliases (*name) are not supported here");
        // One big anchored scalar copied by each alias: within the size limit, gigabytes
        // once expanded.
        let copies = format!(
            "version: 1\na: &a \"{}\"\nb: [{}]\n",
            "x".repeat(500_000),
            ["*a"; 1000].join(", ")
        );
        assert_eq!(error(&copies), "3:5: YAML aliases (*name) are not supported here");
    }
}
