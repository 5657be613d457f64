//! The names the resolver answers itself: the local domains (A and AAAA from leases,
//! reservations and `[[dns.host]]`), PTR for those addresses, and NXDOMAIN for the rest
//! of the local domains and of the private reverse zones (RFC 6303), which must never
//! reach the internet's resolvers.
//!
//! A guest's IPv6 name is its SLAAC (EUI-64) address in its LAN's /64: the router
//! knows its MAC from its lease or reservation.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::dhcp::pool::{Lease, Secs};
use config::Config;

/// Local answers may change at any ACK or release: resolvers below us must not keep them.
pub const LOCAL_TTL: u32 = 0;

/// What the zone says about a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// Names of ours: the records (empty: the name exists, not with that type).
    Answer(Vec<Record>),
    /// Ours, and no such name.
    NxDomain,
    /// Not ours: ask upstream.
    NotLocal,
}

/// One address of a name of the local domains.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    addr: IpAddr,
    /// When a lease's name goes; `None`: fixed (config).
    expires: Option<Secs>,
}

/// What the zone is built from that does not change between reloads of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statics {
    /// Each LAN: its prefixes, its domain, and the MAC → name of its reservations.
    pub lans: Vec<LanNames>,
    /// Fully qualified name → address, from the config: reservations (even offline,
    /// with their SLAAC address when the LAN has IPv6), `[[dns.host]]`, the router's
    /// own name on each LAN.
    pub fixed: Vec<(String, IpAddr)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanNames {
    pub name: String,
    pub net: Ipv4Net,
    pub net6: Option<Ipv6Net>,
    pub domain: String,
    pub reserved: Vec<(config::MacAddr, String)>,
}

impl Statics {
    pub fn from_config(config: &Config) -> Statics {
        let mut fixed = Vec::new();
        let mut lans = Vec::new();
        let first_domain = config
            .lans
            .first()
            .map_or(config::dns::DEFAULT_DOMAIN, |l| config.lan_domain(l));
        for lan in &config.lans {
            let domain = config.lan_domain(lan).to_ascii_lowercase();
            let net6 = lan.address6.map(|a| a.trunc());
            let host = config.system_hostname().split('.').next().unwrap_or_default();
            let router = format!("{}.{domain}", host.to_ascii_lowercase());
            fixed.push((router.clone(), IpAddr::V4(lan.address.addr())));
            fixed.extend(lan.address6.map(|a| (router, IpAddr::V6(a.addr()))));
            let mut reserved = Vec::new();
            for h in lan.dhcp.iter().flat_map(|d| &d.hosts) {
                if let Some(name) = h.hostname.as_deref().and_then(label) {
                    let fqdn = format!("{name}.{domain}");
                    fixed.push((fqdn.clone(), IpAddr::V4(h.address)));
                    fixed.extend(net6.map(|n| (fqdn, IpAddr::V6(config::eui64(n, h.mac)))));
                    reserved.push((h.mac, name));
                }
            }
            lans.push(LanNames {
                name: lan.name.clone(),
                net: lan.address.trunc(),
                net6,
                domain,
                reserved,
            });
        }
        for h in config.dns.iter().flat_map(|d| &d.hosts) {
            // One label: a name of the domain of the LAN that holds the address (the
            // first LAN's for an address outside them); a dotted name stands as given.
            let name = if h.name.contains('.') {
                h.name.clone()
            } else {
                let lan = h.address.and_then(|a| config.lan_of(a)).or_else(|| {
                    let a6 = h.address6?;
                    config.lans.iter().find(|l| l.address6.is_some_and(|n| n.contains(&a6)))
                });
                let domain = lan.map_or(first_domain, |l| config.lan_domain(l));
                format!("{}.{}", h.name, domain.to_ascii_lowercase())
            };
            fixed.extend(h.address.map(|a| (name.clone(), IpAddr::V4(a))));
            fixed.extend(h.address6.map(|a| (name.clone(), IpAddr::V6(a))));
        }
        Statics { lans, fixed }
    }
}

/// The first label of a name a client gave, lowercased, when it can be a DNS label.
pub fn label(name: &str) -> Option<String> {
    let first = name.split('.').next()?.to_ascii_lowercase();
    let ok = !first.is_empty()
        && first.len() <= 63
        && !first.starts_with('-')
        && !first.ends_with('-')
        && first.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then_some(first)
}

fn fqdn(name: &str) -> Option<Name> {
    let mut n = Name::from_ascii(name).ok()?.to_lowercase();
    n.set_fqdn(true);
    Some(n)
}

/// `name` in wire format, lowercased: the key of the names (and of the cache), which a
/// query's question gives without building a [`Name`].
pub fn wire_key(name: &Name) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        key.push(u8::try_from(label.len()).unwrap_or(63));
        key.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    key.push(0);
    key
}

#[derive(Debug, Default)]
pub struct Zone {
    domains: Vec<Name>,
    /// By [`wire_key`].
    names: HashMap<Box<[u8]>, Vec<Entry>>,
    reverse: HashMap<IpAddr, (Name, Option<Secs>)>,
    lan_nets: Vec<Ipv4Net>,
    lan_nets6: Vec<Ipv6Net>,
}

impl Zone {
    /// The zone from the config and the live leases of each LAN (by LAN name). A name
    /// from the config is never taken over by a lease; two leases with one name: the
    /// one that lasts longer.
    pub fn build(statics: &Statics, leases: &HashMap<String, Vec<Lease>>) -> Zone {
        let mut zone = Zone {
            domains: statics.lans.iter().filter_map(|l| fqdn(&l.domain)).collect(),
            lan_nets: statics.lans.iter().map(|l| l.net).collect(),
            lan_nets6: statics.lans.iter().filter_map(|l| l.net6).collect(),
            ..Zone::default()
        };
        zone.domains.dedup();
        for (name, addr) in &statics.fixed {
            let Some(n) = fqdn(name) else { continue };
            zone.reverse.entry(*addr).or_insert((n.clone(), None));
            let entries = zone.names.entry(wire_key(&n).into()).or_default();
            if !entries.iter().any(|e| e.addr == *addr) {
                entries.push(Entry {
                    addr: *addr,
                    expires: None,
                });
            }
        }
        // Each name of a lease goes to the lease that lasts longest.
        let mut winners: HashMap<Name, (&Lease, &LanNames)> = HashMap::new();
        for lan in &statics.lans {
            for lease in leases.get(&lan.name).into_iter().flatten() {
                let reserved = lan
                    .reserved
                    .iter()
                    .find(|(m, _)| *m == lease.mac)
                    .map(|(_, n)| n.clone());
                let Some(host) = reserved.or_else(|| lease.hostname.as_deref().and_then(label)) else {
                    continue;
                };
                let Some(n) = fqdn(&format!("{host}.{}", lan.domain)) else {
                    continue;
                };
                if zone.names.contains_key(wire_key(&n).as_slice()) {
                    continue;
                }
                match winners.get(&n) {
                    Some((other, _)) if other.expires >= lease.expires => {}
                    _ => {
                        winners.insert(n, (lease, lan));
                    }
                }
            }
        }
        for (n, (lease, lan)) in winners {
            let expires = Some(lease.expires);
            let mut addrs = vec![IpAddr::V4(lease.addr)];
            addrs.extend(lan.net6.map(|net| IpAddr::V6(config::eui64(net, lease.mac))));
            for addr in &addrs {
                zone.reverse.entry(*addr).or_insert((n.clone(), expires));
            }
            let entries = addrs.into_iter().map(|addr| Entry { addr, expires }).collect();
            zone.names.insert(wire_key(&n).into(), entries);
        }
        zone
    }

    /// The number of names (for the status page).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The live addresses of the name `key` (a [`wire_key`]) at `now`; `None` when it
    /// has none (then [`Zone::lookup`] says what it is).
    pub fn addresses(&self, key: &[u8], now: Secs) -> Option<impl Iterator<Item = IpAddr> + '_> {
        let entries = self.names.get(key)?;
        let live = move |e: &&Entry| e.expires.is_none_or(|t| t > now);
        entries
            .iter()
            .any(|e| live(&e))
            .then(|| entries.iter().filter(live).map(|e| e.addr))
    }

    /// The answer to `name`/`qtype` at `now`, when the name is ours.
    pub fn lookup(&self, name: &Name, qtype: RecordType, class: DNSClass, now: Secs) -> Local {
        let name = name.to_lowercase();
        if let Some(net) = reverse_net(&name) {
            if !self.is_private_reverse(net) {
                return Local::NotLocal;
            }
            if net.prefix_len() != net.max_prefix_len() {
                return Local::NxDomain;
            }
            let live = |e: Option<Secs>| e.is_none_or(|t| t > now);
            return match self.reverse.get(&net.addr()).filter(|(_, e)| live(*e)) {
                Some((target, _)) if class == DNSClass::IN => {
                    let records = if matches!(qtype, RecordType::PTR | RecordType::ANY) {
                        vec![Record::from_rdata(name, LOCAL_TTL, RData::PTR(PTR(target.clone())))]
                    } else {
                        Vec::new()
                    };
                    Local::Answer(records)
                }
                _ => Local::NxDomain,
            };
        }
        if let Some(addrs) = self.addresses(&wire_key(&name), now) {
            let records = addrs
                .filter(|_| class == DNSClass::IN)
                .filter_map(|a| match (a, qtype) {
                    (IpAddr::V4(a), RecordType::A | RecordType::ANY) => Some(RData::A(A(a))),
                    (IpAddr::V6(a), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(a))),
                    _ => None,
                })
                .map(|data| Record::from_rdata(name.clone(), LOCAL_TTL, data))
                .collect();
            return Local::Answer(records);
        }
        if self.domains.iter().any(|d| d.zone_of(&name)) {
            // The domain itself exists (its names do); anything else under it does not.
            return if self.domains.contains(&name) {
                Local::Answer(Vec::new())
            } else {
                Local::NxDomain
            };
        }
        Local::NotLocal
    }

    /// Whether a reverse name lies wholly in a private or special-use range (RFC 6303)
    /// or a LAN: a partial name (`172.in-addr.arpa.`) covers public space too.
    fn is_private_reverse(&self, net: IpNet) -> bool {
        match net {
            IpNet::V4(net) => {
                let special: [Ipv4Net; 7] = [
                    "10.0.0.0/8",
                    "172.16.0.0/12",
                    "192.168.0.0/16",
                    "169.254.0.0/16",
                    "127.0.0.0/8",
                    "0.0.0.0/8",
                    "100.64.0.0/10",
                ]
                .map(|n| n.parse().unwrap_or_default());
                let within = |outer: &Ipv4Net| outer.contains(&net);
                special.iter().any(within) || self.lan_nets.iter().any(within)
            }
            IpNet::V6(net) => {
                // Link-local, unique local (fc00::/7), loopback and unspecified.
                let special: [Ipv6Net; 4] =
                    ["fe80::/10", "fc00::/7", "::1/128", "::/128"].map(|n| n.parse().unwrap_or_default());
                let within = |outer: &Ipv6Net| outer.contains(&net);
                special.iter().any(within) || self.lan_nets6.iter().any(within)
            }
        }
    }
}

/// The network a name under in-addr.arpa or ip6.arpa stands for (a /32 or /128 for a
/// whole address); for a malformed name (`x.10.in-addr.arpa.`), that of its longest
/// valid suffix, which is never a whole address.
fn reverse_net(name: &Name) -> Option<IpNet> {
    let v4 = Name::from_ascii("in-addr.arpa.").ok()?;
    let v6 = Name::from_ascii("ip6.arpa.").ok()?;
    if !(v4.zone_of(name) || v6.zone_of(name)) || *name == v4 || *name == v6 {
        return None;
    }
    let labels = name.num_labels();
    (2..=labels).rev().find_map(|n| {
        let suffix = name.trim_to(usize::from(n));
        let net = suffix.parse_arpa_name().ok()?;
        if n == labels {
            return Some(net);
        }
        // Only the valid part: whatever the name is, it is no address's.
        let whole = match net {
            IpNet::V4(_) => 24,
            IpNet::V6(_) => 124,
        };
        let shorter = net.prefix_len().min(whole);
        IpNet::new(net.addr(), shorter).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::pool::{ClientKey, LeaseState};
    use config::MacAddr;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const CONFIG: &str = r#"
hostname = "gw"
[wan]
interface = "wan"
address = "203.0.113.10/32"
gateway = "203.0.113.254"
dns = ["198.51.100.53"]
[lan]
interface = "lan"
address = "172.16.0.1/16"
[dhcp]
range = "172.16.10.100-172.16.10.150"
[[dhcp.host]]
mac = "52:54:00:12:34:56"
address = "172.16.10.210"
hostname = "printer"
[[dns.host]]
name = "nas"
address = "172.16.10.5"
[[dns.host]]
name = "files.example.net"
address = "198.51.100.7"
"#;

    fn lease(addr: [u8; 4], mac: u8, name: &str, expires: Secs) -> Lease {
        let mac = MacAddr([2, 0, 0, 0, 0, mac]);
        Lease {
            addr: Ipv4Addr::from(addr),
            client: ClientKey::from_mac(mac),
            mac,
            hostname: Some(name.to_string()),
            expires,
            state: LeaseState::Bound,
        }
    }

    fn zone(leases: Vec<Lease>) -> Zone {
        let config = Config::parse(CONFIG, "router.toml").expect("valid");
        let mut by_lan = HashMap::new();
        by_lan.insert("lan".to_string(), leases);
        Zone::build(&Statics::from_config(&config), &by_lan)
    }

    fn a(zone: &Zone, name: &str, now: Secs) -> Local {
        zone.lookup(&Name::from_ascii(name).expect("name"), RecordType::A, DNSClass::IN, now)
    }

    fn addrs(local: &Local) -> Vec<String> {
        match local {
            Local::Answer(rs) => rs.iter().map(|r| r.data.to_string()).collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn leases_config_names_and_the_router_resolve_and_a_lease_name_goes_when_it_ends() {
        let z = zone(vec![lease([172, 16, 10, 100], 1, "Web.example.com", 1000)]);
        assert_eq!(addrs(&a(&z, "web.lan.", 10)), ["172.16.10.100"]);
        assert_eq!(addrs(&a(&z, "WEB.LAN.", 10)), ["172.16.10.100"]);
        assert_eq!(a(&z, "web.lan.", 1000), Local::NxDomain, "expired");
        assert_eq!(
            addrs(&a(&z, "printer.lan.", 10)),
            ["172.16.10.210"],
            "a reservation, offline"
        );
        assert_eq!(addrs(&a(&z, "nas.lan.", 10)), ["172.16.10.5"]);
        assert_eq!(addrs(&a(&z, "files.example.net.", 10)), ["198.51.100.7"]);
        assert_eq!(addrs(&a(&z, "gw.lan.", 10)), ["172.16.0.1"]);
        assert_eq!(a(&z, "nobody.lan.", 10), Local::NxDomain);
        assert_eq!(a(&z, "example.com.", 10), Local::NotLocal);
        let aaaa = z.lookup(
            &Name::from_ascii("web.lan.").expect("name"),
            RecordType::AAAA,
            DNSClass::IN,
            10,
        );
        assert_eq!(
            aaaa,
            Local::Answer(Vec::new()),
            "the name exists: no data, not NXDOMAIN"
        );
    }

    #[test]
    fn a_lease_cannot_take_a_config_name_and_the_longer_lease_keeps_a_shared_name() {
        let z = zone(vec![
            lease([172, 16, 10, 101], 2, "nas", 1000),
            lease([172, 16, 10, 102], 3, "twin", 500),
            lease([172, 16, 10, 103], 4, "twin", 900),
        ]);
        assert_eq!(addrs(&a(&z, "nas.lan.", 10)), ["172.16.10.5"]);
        assert_eq!(addrs(&a(&z, "twin.lan.", 10)), ["172.16.10.103"]);
    }

    #[test]
    fn reverse_names_of_ours_resolve_and_other_private_ones_are_nxdomain_here() {
        let z = zone(vec![lease([172, 16, 10, 100], 1, "web", 1000)]);
        let ptr = |ip: &str| {
            let name = Name::from(ip.parse::<Ipv4Addr>().expect("ip"));
            z.lookup(&name, RecordType::PTR, DNSClass::IN, 10)
        };
        assert_eq!(addrs(&ptr("172.16.10.100")), ["web.lan."]);
        assert_eq!(addrs(&ptr("172.16.10.5")), ["nas.lan."]);
        assert_eq!(ptr("172.16.10.99"), Local::NxDomain);
        assert_eq!(ptr("10.1.2.3"), Local::NxDomain);
        assert_eq!(ptr("192.168.1.1"), Local::NxDomain);
        assert_eq!(ptr("172.31.0.1"), Local::NxDomain);
        assert_eq!(ptr("172.32.0.1"), Local::NotLocal, "public space");
        assert_eq!(ptr("198.51.100.1"), Local::NotLocal);
        let partial = Name::from_ascii("16.172.in-addr.arpa.").expect("name");
        assert_eq!(z.lookup(&partial, RecordType::SOA, DNSClass::IN, 10), Local::NxDomain);
        let junk = Name::from_ascii("x.1.10.in-addr.arpa.").expect("name");
        assert_eq!(z.lookup(&junk, RecordType::PTR, DNSClass::IN, 10), Local::NxDomain);
        let public_partial = Name::from_ascii("172.in-addr.arpa.").expect("name");
        assert_eq!(
            z.lookup(&public_partial, RecordType::NS, DNSClass::IN, 10),
            Local::NotLocal
        );
    }

    const CONFIG6: &str = r#"
hostname = "gw"
[wan]
interface = "wan"
address = "203.0.113.10/32"
gateway = "203.0.113.254"
gateway6 = "fe80::1"
[lan]
interface = "lan"
address = "172.16.0.1/16"
address6 = "2001:db8:2::1/64"
[dhcp]
range = "172.16.10.100-172.16.10.150"
[[dhcp.host]]
mac = "52:54:00:12:34:56"
address = "172.16.10.210"
hostname = "printer"
[[dns.host]]
name = "nas"
address = "172.16.10.5"
address6 = "2001:db8:2::5"
[[dns.host]]
name = "v6only"
address = "fd00::7"
"#;

    fn zone6(leases: Vec<Lease>) -> Zone {
        let config = Config::parse(CONFIG6, "router.toml").expect("valid");
        let mut by_lan = HashMap::new();
        by_lan.insert("lan".to_string(), leases);
        Zone::build(&Statics::from_config(&config), &by_lan)
    }

    fn ask(zone: &Zone, name: &str, qtype: RecordType, now: Secs) -> Local {
        zone.lookup(&Name::from_ascii(name).expect("name"), qtype, DNSClass::IN, now)
    }

    #[test]
    fn guests_have_their_slaac_address_as_aaaa_and_it_goes_with_the_lease() {
        let z = zone6(vec![lease([172, 16, 10, 100], 1, "web", 1000)]);
        // MAC 02:00:00:00:00:01 -> interface ID 0000:00ff:fe00:0001.
        assert_eq!(
            addrs(&ask(&z, "web.lan.", RecordType::AAAA, 10)),
            ["2001:db8:2::ff:fe00:1"]
        );
        assert_eq!(addrs(&ask(&z, "web.lan.", RecordType::A, 10)), ["172.16.10.100"]);
        assert_eq!(
            addrs(&ask(&z, "web.lan.", RecordType::ANY, 10)),
            ["172.16.10.100", "2001:db8:2::ff:fe00:1"]
        );
        assert_eq!(ask(&z, "web.lan.", RecordType::AAAA, 1000), Local::NxDomain, "expired");
        assert_eq!(
            addrs(&ask(&z, "printer.lan.", RecordType::AAAA, 10)),
            ["2001:db8:2:0:5054:ff:fe12:3456"],
            "a reservation, offline"
        );
        assert_eq!(addrs(&ask(&z, "nas.lan.", RecordType::AAAA, 10)), ["2001:db8:2::5"]);
        assert_eq!(addrs(&ask(&z, "nas.lan.", RecordType::A, 10)), ["172.16.10.5"]);
        assert_eq!(addrs(&ask(&z, "v6only.lan.", RecordType::AAAA, 10)), ["fd00::7"]);
        assert_eq!(ask(&z, "v6only.lan.", RecordType::A, 10), Local::Answer(Vec::new()));
        assert_eq!(addrs(&ask(&z, "gw.lan.", RecordType::AAAA, 10)), ["2001:db8:2::1"]);
    }

    #[test]
    fn ipv6_reverse_names_of_ours_resolve_and_private_ones_stay_home() {
        let z = zone6(vec![lease([172, 16, 10, 100], 1, "web", 1000)]);
        let ptr = |ip: &str, now: Secs| {
            let name = Name::from(ip.parse::<Ipv6Addr>().expect("ip"));
            z.lookup(&name, RecordType::PTR, DNSClass::IN, now)
        };
        assert_eq!(addrs(&ptr("2001:db8:2::ff:fe00:1", 10)), ["web.lan."]);
        assert_eq!(ptr("2001:db8:2::ff:fe00:1", 1000), Local::NxDomain, "expired");
        assert_eq!(addrs(&ptr("2001:db8:2::5", 10)), ["nas.lan."]);
        assert_eq!(addrs(&ptr("fd00::7", 10)), ["v6only.lan."]);
        assert_eq!(addrs(&ptr("2001:db8:2::1", 10)), ["gw.lan."]);
        assert_eq!(ptr("2001:db8:2::99", 10), Local::NxDomain, "the LAN /64");
        assert_eq!(ptr("fe80::1234", 10), Local::NxDomain);
        assert_eq!(ptr("fd12:3456::1", 10), Local::NxDomain);
        assert_eq!(ptr("2001:db8:3::1", 10), Local::NotLocal, "public space");
        let partial = Name::from_ascii("d.f.ip6.arpa.").expect("name");
        assert_eq!(z.lookup(&partial, RecordType::SOA, DNSClass::IN, 10), Local::NxDomain);
        let public_partial = Name::from_ascii("2.ip6.arpa.").expect("name");
        assert_eq!(
            z.lookup(&public_partial, RecordType::NS, DNSClass::IN, 10),
            Local::NotLocal
        );
        let v4 = Name::from(Ipv4Addr::new(172, 16, 10, 100));
        assert_eq!(addrs(&z.lookup(&v4, RecordType::PTR, DNSClass::IN, 10)), ["web.lan."]);
    }
}
