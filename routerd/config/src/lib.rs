//! `router.toml`: the validated configuration and how to load it. routerd, init and
//! the image builder all stand on this crate; it does no I/O beyond reading the file
//! (or cloud-init drive) it is given.
//!
//! Parsing happens in two passes (see `parse.rs`): serde reads a spanned raw form
//! (syntax, unknown keys, types), then validation checks meaning and collects every
//! error with its line and column, so one `routerd check` shows all of them.

pub mod cloudinit;
mod diagnostic;
pub mod file;
pub mod hostname;
pub mod image;
mod parse;
pub mod release;
#[cfg(test)]
mod testdir;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use ipnet::Ipv4Net;

pub use diagnostic::{ConfigError, Diagnostic};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub hostname: Option<String>,
    pub wan: Wan,
    /// One or more LANs, in the order of the file; their prefixes never overlap. The
    /// single `[lan]` (+ `[dhcp]`) form is one LAN named [`DEFAULT_LAN_NAME`].
    pub lans: Vec<Lan>,
    pub forwards: Vec<Forward>,
    /// 1:1 NAT: a LAN host that leaves from, and is reached on, a public address of its own.
    pub one_to_one: Vec<OneToOne>,
    /// The status page and metrics on the LAN address; `None` when disabled.
    pub status: Option<Status>,
}

/// A config as loaded from a file or a cloud-init drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub config: Config,
    /// The router.toml text the config was parsed from.
    pub text: String,
    /// How a cloud-init drive was turned into that text, one line each (for the log).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub port: u16,
    /// The LANs (by name) whose router address serves the page; `None`: every LAN.
    pub lans: Option<Vec<String>>,
}

impl Status {
    /// Whether the page is served on the LAN named `lan`.
    pub fn serves(&self, lan: &str) -> bool {
        self.lans.as_ref().is_none_or(|l| l.iter().any(|n| n == lan))
    }
}

/// How a NIC is found among the links of the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicSelector {
    /// The NIC whose (permanent or current) MAC address is this one.
    Mac(MacAddr),
    /// The NIC with this interface name.
    Name(String),
    /// The one NIC that is neither loopback nor the WAN.
    NotWan,
}

impl fmt::Display for NicSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NicSelector::Mac(mac) => write!(f, "the NIC with MAC {mac}"),
            NicSelector::Name(name) => write!(f, "the NIC named {name}"),
            NicSelector::NotWan => f.write_str("the one NIC that is not the WAN"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wan {
    pub nic: NicSelector,
    /// The MAC the WAN must carry (the hoster's virtual MAC), if any.
    pub mac: Option<MacAddr>,
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The gateway's MAC, pinned in the neighbour table so that no ARP reply (a forged
    /// one from the WAN segment, say) can change it.
    pub gateway_mac: Option<MacAddr>,
    pub dns: Vec<Ipv4Addr>,
    /// More failover IPs on the same NIC and virtual MAC (OVH, Scaleway).
    pub more_addresses: Vec<Ipv4Net>,
    /// Failover IPs with a virtual MAC of their own, each on its own NIC (Hetzner).
    pub extra: Vec<ExtraWan>,
}

impl Wan {
    /// True when the gateway lies outside the WAN prefix and must be reached on-link
    /// (the usual failover `/32` case).
    pub fn gateway_on_link(&self) -> bool {
        !self.address.contains(&self.gateway)
    }

    /// Every public address of the router: the main one, `more_addresses`, then the
    /// extra NICs' addresses, in that order.
    pub fn public_addresses(&self) -> Vec<Ipv4Addr> {
        std::iter::once(self.address.addr())
            .chain(self.more_addresses.iter().map(|a| a.addr()))
            .chain(self.extra.iter().map(|e| e.address.addr()))
            .collect()
    }

    /// The extra WAN NIC that carries `ip`, by its place in `extra`; `None` for the
    /// main WAN NIC (or an address the router does not have).
    pub fn extra_index_of(&self, ip: Ipv4Addr) -> Option<usize> {
        self.extra.iter().position(|e| e.address.addr() == ip)
    }
}

/// A failover IP with its own virtual MAC, and so its own NIC (`[[wan.extra]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraWan {
    pub nic: NicSelector,
    /// The MAC the NIC must carry (the hoster's virtual MAC for this IP), if any.
    pub mac: Option<MacAddr>,
    pub address: Ipv4Net,
    /// Default: `wan.gateway`.
    pub gateway: Ipv4Addr,
}

impl ExtraWan {
    pub fn gateway_on_link(&self) -> bool {
        !self.address.contains(&self.gateway)
    }
}

/// 1:1 NAT between a public address of the router and a LAN host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneToOne {
    pub public: Ipv4Addr,
    pub private: Ipv4Addr,
    /// What the internet may open on `public` (it reaches `private`, same ports).
    pub open: Vec<Open>,
}

/// One item of `one_to_one.open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// `"all"`: every protocol and port.
    All,
    /// `"tcp/22"`, `"udp/8000-8100"`, `"tcp/all"` (`ports: None`).
    Ports {
        transport: &'static str,
        ports: Option<PortRange>,
    },
}

impl Open {
    /// Whether this item opens `port` (of `ports`) on `transport`.
    pub fn opens(self, transport: &str, ports: PortRange) -> bool {
        match self {
            Open::All => true,
            Open::Ports { transport: t, ports: p } => t == transport && p.is_none_or(|p| p.overlaps(ports)),
        }
    }
}

impl fmt::Display for Open {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Open::All => f.write_str("all"),
            Open::Ports { transport, ports: None } => write!(f, "{transport}/all"),
            Open::Ports {
                transport,
                ports: Some(p),
            } => write!(f, "{transport}/{p}"),
        }
    }
}

/// The name of the LAN of the single `[lan]` form.
pub const DEFAULT_LAN_NAME: &str = "lan";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lan {
    /// Unique among the LANs: logs, metrics labels, the status page, `reach`.
    pub name: String,
    /// The NIC itself, or with `vlan` the trunk NIC carrying the VLAN.
    pub nic: NicSelector,
    /// An 802.1Q VLAN id: the LAN is the sub-interface `<nic>.<vlan>` of the NIC.
    pub vlan: Option<u16>,
    pub address: Ipv4Net,
    /// The other LANs (by name) this one may open connections to.
    pub reach: Vec<String>,
    /// The public address this LAN's traffic leaves with; `None`: `wan.address`.
    /// A 1:1 host in the LAN leaves with its own 1:1 address all the same.
    pub snat: Option<Ipv4Addr>,
    /// The DHCPv4 server of this LAN; `None`: off.
    pub dhcp: Option<Dhcp>,
}

impl Lan {
    /// Whether `ip` is a host address of this LAN's prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.address.trunc().contains(&ip)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp {
    pub range_start: Ipv4Addr,
    pub range_end: Ipv4Addr,
    pub lease_time: Duration,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub hosts: Vec<DhcpHost>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpHost {
    pub mac: MacAddr,
    pub address: Ipv4Addr,
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Both,
}

impl Protocol {
    /// The transport protocols this selects, as nft names them.
    pub fn transports(self) -> &'static [&'static str] {
        match self {
            Protocol::Tcp => &["tcp"],
            Protocol::Udp => &["udp"],
            Protocol::Both => &["tcp", "udp"],
        }
    }
}

/// An inclusive port range; a single port is `first == last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    #[allow(clippy::len_without_is_empty)] // a range holds one port at least
    pub fn len(self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    pub fn is_single(self) -> bool {
        self.first == self.last
    }

    pub fn overlaps(self, other: PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// A port forward (PAT) from a public address to a LAN host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Which of the router's public addresses (default: `wan.address`).
    pub public: Ipv4Addr,
    pub protocol: Protocol,
    pub ports: PortRange,
    pub to: Ipv4Addr,
    /// Same length as `ports`: port `ports.first + i` maps to `to_ports.first + i`.
    pub to_ports: PortRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let mut bytes = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in bytes.iter_mut() {
            let part = parts.next().ok_or(())?;
            if part.len() != 2 {
                return Err(());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(MacAddr(bytes))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl MacAddr {
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl Config {
    /// Parses and validates `text`; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        parse::parse(text, origin)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_text(path).map(|loaded| loaded.config)
    }

    /// Like [`Config::load`], also returning the text it was read from (to keep a copy
    /// of it). A directory is read as a cloud-init drive (see [`cloudinit`]); the text
    /// is then the router.toml made from it, and the notes say how it was made. Files
    /// are read by the rules of [`file::read`] (regular, at most 1 MiB).
    pub fn load_with_text(path: &Path) -> Result<Loaded, ConfigError> {
        if path.is_dir() {
            let generated = cloudinit::generate(path)?;
            let config = Config::parse(&generated.toml, &generated.origin)?;
            return Ok(Loaded {
                config,
                text: generated.toml,
                notes: generated.notes,
            });
        }
        let text = file::read(path)?;
        Config::parse(&text, &path.display().to_string()).map(|config| Loaded {
            config,
            text,
            notes: Vec::new(),
        })
    }

    /// The name the router takes: `hostname`, else [`hostname::DEFAULT`].
    pub fn system_hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or(hostname::DEFAULT)
    }

    /// The resolvers handed to DHCP clients of `lan`: its `dhcp.dns`, else `wan.dns`.
    pub fn dhcp_dns<'a>(&'a self, lan: &'a Lan) -> &'a [Ipv4Addr] {
        match &lan.dhcp {
            Some(d) if !d.dns.is_empty() => &d.dns,
            _ => &self.wan.dns,
        }
    }

    /// The LAN named `name`.
    pub fn lan_named(&self, name: &str) -> Option<&Lan> {
        self.lans.iter().find(|l| l.name == name)
    }

    /// The LAN whose prefix holds `ip`.
    pub fn lan_of(&self, ip: Ipv4Addr) -> Option<&Lan> {
        self.lans.iter().find(|l| l.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_both_separators_and_rejects_junk() {
        assert_eq!(
            "02:00:00:00:00:1a".parse::<MacAddr>(),
            Ok(MacAddr([2, 0, 0, 0, 0, 0x1a]))
        );
        assert_eq!(
            "02-00-00-00-00-1A".parse::<MacAddr>(),
            Ok(MacAddr([2, 0, 0, 0, 0, 0x1a]))
        );
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
            "2:0:0:0:0:0",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    const WAN: &str = "[wan]\ninterface = \"eth0\"\naddress = \"203.0.113.10/32\"\ngateway = \"203.0.113.254\"\ndns = [\"198.51.100.53\"]\n";

    #[test]
    fn the_single_lan_form_is_one_lan_named_lan_with_the_dhcp_section() {
        let text =
            format!("{WAN}[lan]\naddress = \"172.16.0.1/16\"\n[dhcp]\nrange = \"172.16.10.100-172.16.10.110\"\n");
        let config = Config::parse(&text, "router.toml").expect("valid");
        assert_eq!(config.lans.len(), 1);
        let lan = &config.lans[0];
        assert_eq!(
            (lan.name.as_str(), &lan.nic, lan.vlan),
            (DEFAULT_LAN_NAME, &NicSelector::NotWan, None)
        );
        assert_eq!(
            lan.dhcp.as_ref().map(|d| d.range_end),
            Some(Ipv4Addr::new(172, 16, 10, 110))
        );
        assert_eq!(config.dhcp_dns(lan), [Ipv4Addr::new(198, 51, 100, 53)]);
        assert_eq!(
            config.lan_of(Ipv4Addr::new(172, 16, 99, 1)).map(|l| l.name.as_str()),
            Some("lan")
        );
        assert!(config.lan_of(Ipv4Addr::new(10, 0, 0, 1)).is_none());
    }

    #[test]
    fn a_lan_with_both_dhcp_sections_is_refused_at_its_own() {
        let text = format!(
            "{WAN}[lan]\naddress = \"172.16.0.1/16\"\n[lan.dhcp]\nrange = \"172.16.10.100-172.16.10.110\"\n[dhcp]\nrange = \"172.16.10.100-172.16.10.110\"\n"
        );
        let err = Config::parse(&text, "router.toml")
            .expect_err("two DHCP sections")
            .to_string();
        assert!(
            err.contains("[lan.dhcp]: this LAN already has the [dhcp] section; give one of them"),
            "{err}"
        );
    }

    #[test]
    fn a_vlan_id_out_of_range_and_a_bad_lan_name_are_refused() {
        let text =
            format!("{WAN}[[lan]]\nname = \"Prod!\"\ninterface = \"eth1\"\nvlan = 4095\naddress = \"172.16.0.1/16\"\n");
        let err = Config::parse(&text, "router.toml").expect_err("bad").to_string();
        assert!(err.contains("lan.name: \"Prod!\" is not a valid LAN name"), "{err}");
        assert!(err.contains("lan.vlan: expected a VLAN id 1-4094, found 4095"), "{err}");
    }

    #[test]
    fn port_ranges_overlap_only_when_they_share_a_port() {
        let r = |first, last| PortRange { first, last };
        assert!(r(80, 80).overlaps(r(80, 80)));
        assert!(r(8000, 8010).overlaps(r(8010, 8020)));
        assert!(!r(8000, 8010).overlaps(r(8011, 8020)));
        assert_eq!(r(8000, 8010).len(), 11);
        assert_eq!(r(8000, 8010).to_string(), "8000-8010");
        assert_eq!(r(80, 80).to_string(), "80");
    }
}
