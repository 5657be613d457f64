//! `router.toml`: the validated configuration and how to load it. routerd, init and
//! the image builder all stand on this crate; it does no I/O beyond reading the file
//! (or cloud-init drive) it is given.
//!
//! Parsing happens in two passes (see `parse.rs`): serde reads a spanned raw form
//! (syntax, unknown keys, types), then validation checks meaning and collects every
//! error with its line and column, so one `routerd check` shows all of them.

pub mod byname;
pub mod cloudinit;
mod diagnostic;
pub mod dns;
pub mod file;
pub mod hostname;
pub mod image;
mod parse;
pub mod release;
#[cfg(test)]
mod testdir;
pub mod wireguard;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

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
    /// The resolver on the LAN addresses; `None` when off.
    pub dns: Option<dns::Dns>,
    /// `[[open]]`: what the internet may open on which LAN host over IPv6 (no NAT).
    pub open: Vec<Open6>,
    /// `[wireguard]`: the tunnel and its peers; `None` when not configured.
    pub wireguard: Option<wireguard::WireGuard>,
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
    /// IPv6 on the main WAN NIC (`address6`, `gateway6`...); `None`: IPv6 is dropped.
    pub v6: Option<Wan6>,
}

/// The WAN's IPv6 side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wan6 {
    /// The router's own global address on the WAN; `None`: link-local only (a prefix
    /// routed to the router's link-local address, as Hetzner does).
    pub address: Option<Ipv6Net>,
    /// Link-local (`fe80::1`), or a global address reached on-link.
    pub gateway: Ipv6Addr,
    /// Answer the hoster's neighbour solicitations for the LAN hosts' addresses.
    pub ndp_proxy: bool,
    /// IPv6 resolvers announced to the LANs (RDNSS); none: no RDNSS option.
    pub dns: Vec<Ipv6Addr>,
}

impl Wan6 {
    pub fn gateway_link_local(&self) -> bool {
        is_link_local(self.gateway)
    }
}

/// Whether `ip` is in fe80::/10.
pub fn is_link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// The SLAAC (modified EUI-64) address of `mac` in the /64 `prefix`.
pub fn eui64(prefix: Ipv6Net, mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    let mut o = prefix.trunc().network().octets();
    o[8..16].copy_from_slice(&[m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
    Ipv6Addr::from(o)
}

/// What `[[open]]` names as its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenTarget {
    Address(Ipv6Addr),
    /// A MAC (given, or a DHCP reservation's): its SLAAC (EUI-64) address in each
    /// LAN prefix it may be in.
    Mac(MacAddr),
}

/// One `[[open]]`: the internet may open `ports` of `protocol` on the host's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open6 {
    pub to: OpenTarget,
    /// The v6 addresses the rule opens (a MAC's EUI-64 address in each LAN prefix).
    pub addresses: Vec<Ipv6Addr>,
    pub protocol: Protocol,
    pub ports: PortRange,
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
    /// The router's IPv6 address on this LAN; its /64 is advertised for SLAAC.
    pub address6: Option<Ipv6Net>,
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
    /// Chosen by the TLS SNI or HTTP Host header (routerd's proxy, see [`byname`]);
    /// `None`: the port's default when other forwards of the port have a host, else a
    /// plain DNAT forward.
    pub host: Option<byname::HostPattern>,
    /// The proxy sends a PROXY protocol v2 header with the client's address first.
    pub proxy_protocol: bool,
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

    /// The resolvers handed to DHCP clients of `lan`: its `dhcp.dns`, else the router
    /// itself when it runs the resolver, else `wan.dns`.
    pub fn dhcp_dns(&self, lan: &Lan) -> Vec<Ipv4Addr> {
        match &lan.dhcp {
            Some(d) if !d.dns.is_empty() => d.dns.clone(),
            _ if self.dns.is_some() => vec![lan.address.addr()],
            _ => self.wan.dns.clone(),
        }
    }

    /// The local domain of `lan`: its `dhcp.domain`, else [`dns::DEFAULT_DOMAIN`].
    pub fn lan_domain<'a>(&'a self, lan: &'a Lan) -> &'a str {
        lan.dhcp
            .as_ref()
            .and_then(|d| d.domain.as_deref())
            .unwrap_or(dns::DEFAULT_DOMAIN)
    }

    /// Whether IPv6 is on (`wan.gateway6` given): otherwise it is dropped.
    pub fn ipv6(&self) -> bool {
        self.wan.v6.is_some()
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
        assert_eq!(
            config.dhcp_dns(lan),
            [Ipv4Addr::new(172, 16, 0, 1)],
            "the router resolves for its LAN"
        );
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

    const OVH6: &str = "[wan]\ninterface = \"eth0\"\naddress = \"203.0.113.10/32\"\ngateway = \"203.0.113.254\"\naddress6 = \"2001:db8:1:2::1/128\"\ngateway6 = \"2001:db8:1:ff:ff:ff:ff:ff\"\n[lan]\naddress = \"172.16.0.1/16\"\naddress6 = \"2001:db8:1:2::2/64\"\n[dhcp]\nrange = \"172.16.10.100-172.16.10.110\"\n[[dhcp.host]]\nmac = \"52:54:00:12:34:56\"\naddress = \"172.16.10.200\"\nhostname = \"web\"\n";

    #[test]
    fn ipv6_ovh_form_defaults_to_the_ndp_proxy_and_resolves_open_targets() {
        let text = format!(
            "{OVH6}[[open]]\nto = \"2001:db8:1:2::50\"\nport = 443\n[[open]]\nto = \"web\"\nprotocol = \"both\"\nport = \"8000-8010\"\n"
        );
        let config = Config::parse(&text, "router.toml").expect("valid");
        let v6 = config.wan.v6.as_ref().expect("v6 on");
        assert!(v6.ndp_proxy, "the LAN /64 holds wan.address6: OVH");
        assert!(!v6.gateway_link_local());
        assert_eq!(config.open.len(), 2);
        assert_eq!(
            config.open[0].addresses,
            ["2001:db8:1:2::50".parse::<Ipv6Addr>().expect("address")]
        );
        assert_eq!(
            config.open[1].addresses,
            ["2001:db8:1:2:5054:ff:fe12:3456".parse::<Ipv6Addr>().expect("address")],
            "a reservation's hostname opens its MAC's EUI-64 address"
        );
        assert_eq!(config.open[1].protocol, Protocol::Both);
    }

    #[test]
    fn ipv6_hetzner_form_has_no_proxy_and_v4_only_configs_have_no_v6() {
        let text = format!(
            "{WAN}gateway6 = \"fe80::1\"\n[lan]\naddress = \"172.16.0.1/16\"\naddress6 = \"2001:db8:2::1/64\"\n"
        );
        let config = Config::parse(&text, "router.toml").expect("valid");
        let v6 = config.wan.v6.as_ref().expect("v6 on");
        assert!(!v6.ndp_proxy && v6.gateway_link_local() && v6.address.is_none());
        let v4 = Config::parse(&format!("{WAN}[lan]\naddress = \"172.16.0.1/16\"\n"), "router.toml").expect("valid");
        assert!(!v4.ipv6() && v4.lans[0].address6.is_none() && v4.open.is_empty());
    }

    #[test]
    fn ipv6_mistakes_are_refused_with_their_position() {
        let cases = [
            (
                format!("{WAN}gateway6 = \"fe80::1\"\n[lan]\naddress = \"172.16.0.1/16\"\naddress6 = \"2001:db8:2::1/56\"\n"),
                "router.toml:9:12: lan.address6: the LAN prefix must be a /64 (SLAAC needs it), found /56",
            ),
            (
                format!("{WAN}gateway6 = \"2001:db8:9::1\"\n[lan]\naddress = \"172.16.0.1/16\"\n"),
                "wan.gateway6: 2001:db8:9::1 is neither link-local (like \"fe80::1\") nor reachable",
            ),
            (
                format!("{WAN}[lan]\naddress = \"172.16.0.1/16\"\naddress6 = \"2001:db8:2::1/64\"\n"),
                "lan.address6: IPv6 needs wan.gateway6",
            ),
            (
                format!("{WAN}address6 = \"2001:db8:2::1/128\"\n[lan]\naddress = \"172.16.0.1/16\"\n"),
                "wan.address6: IPv6 needs wan.gateway6",
            ),
            (
                format!("{OVH6}[[open]]\nto = \"2001:db8:7::5\"\nport = 22\n"),
                "open.to: 2001:db8:7::5 is outside every LAN prefix (lan 2001:db8:1:2::/64)",
            ),
            (
                format!("{OVH6}[[open]]\nto = \"2001:db8:1:2::5\"\nprotocol = \"sctp\"\nport = 0\n"),
                "open.protocol: expected \"tcp\", \"udp\" or \"both\", found \"sctp\"",
            ),
            (
                format!("{WAN}[lan]\naddress = \"172.16.0.1/16\"\n[[open]]\nto = \"2001:db8:1:2::5\"\nport = 22\n"),
                "[[open]] opens IPv6 ports: it needs wan.gateway6 and a LAN with address6",
            ),
            (
                "[wan]\ninterface = \"eth0\"\ngateway = \"203.0.113.254\"\ngateway6 = \"fe80::1\"\n[lan]\naddress = \"172.16.0.1/16\"\n".to_string(),
                "missing key `address`",
            ),
        ];
        for (text, wanted) in cases {
            let err = Config::parse(&text, "router.toml").expect_err(wanted).to_string();
            assert!(err.contains(wanted), "{wanted}\n{err}");
        }
    }
}
