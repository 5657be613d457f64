//! Validation of `[wireguard]` and `[[wireguard.peer]]`.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Deserialize;

use super::{quote, Validator, S};
use crate::wireguard::{Key, Peer, WireGuard, DEFAULT_KEY_FILE};
use crate::{Forward, Lan, OneToOne, PortRange, Wan};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWireGuard {
    listen_port: Option<S<i64>>,
    address: Option<S<String>>,
    public: Option<S<String>>,
    private_key_file: Option<S<String>>,
    #[serde(default)]
    peer: Vec<S<RawPeer>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: Option<S<String>>,
    public_key: Option<S<String>>,
    allowed_ips: Option<S<Vec<S<String>>>>,
    reach: Option<Vec<S<String>>>,
    internet: Option<bool>,
}

/// What `[wireguard]` is checked against: the rest of the config.
pub(super) struct Context<'c> {
    pub lans: &'c [Lan],
    pub wan: Option<&'c Wan>,
    pub forwards: &'c [Forward],
    pub one_to_one: &'c [OneToOne],
    pub dns: bool,
}

impl Validator<'_> {
    pub(super) fn wireguard(&mut self, table: &S<RawWireGuard>, cx: &Context) -> Option<WireGuard> {
        let raw = table.get_ref();
        let address = self
            .required(
                &raw.address,
                table,
                "address",
                "the router's address in the tunnel with its subnet, like \"10.99.0.1/24\"",
            )
            .and_then(|a| self.tunnel_address(a, cx.lans));
        let public = match &raw.public {
            None => Some(cx.wan.map_or(Ipv4Addr::UNSPECIFIED, |w| w.address.addr())),
            Some(p) => self.wireguard_public(p, cx.wan),
        };
        let listen_port = self
            .required(
                &raw.listen_port,
                table,
                "listen_port",
                "the UDP port peers send to, like 51820",
            )
            .and_then(|p| self.listen_port(p, public, cx));
        let private_key_file = match &raw.private_key_file {
            None => Some(DEFAULT_KEY_FILE.to_string()),
            Some(f) if f.get_ref().trim().is_empty() || f.get_ref().contains('\0') => {
                self.error(
                    f.span(),
                    "wireguard.private_key_file: expected a file name or path".into(),
                );
                None
            }
            Some(f) => Some(f.get_ref().clone()),
        };
        let mut peers: Vec<Peer> = Vec::new();
        for p in &raw.peer {
            if let Some(peer) = self.wireguard_peer(p, address, &peers, cx.lans) {
                peers.push(peer);
            }
        }
        Some(WireGuard {
            listen_port: listen_port?,
            address: address?,
            public: public?,
            private_key_file: private_key_file?,
            peers,
        })
    }

    fn tunnel_address(&mut self, s: &S<String>, lans: &[Lan]) -> Option<Ipv4Net> {
        let address = self.cidr("wireguard.address", s)?;
        let subnet = address.trunc();
        if address.prefix_len() > 30 {
            self.error(
                s.span(),
                format!(
                    "wireguard.address: a /{} leaves no address for a peer; give a subnet like \"10.99.0.1/24\"",
                    address.prefix_len()
                ),
            );
            return None;
        }
        if address.addr() == subnet.network() || address.addr() == subnet.broadcast() {
            self.error(
                s.span(),
                format!("wireguard.address: {} is the network or broadcast address of {subnet}; give the router a host address, like \"{}/{}\"", address.addr(), subnet.hosts().next().unwrap_or(subnet.network()), subnet.prefix_len()),
            );
            return None;
        }
        if let Some(lan) = lans.iter().find(|l| overlap(l.address.trunc(), subnet)) {
            self.error(
                s.span(),
                format!(
                    "wireguard.address: the tunnel subnet {subnet} overlaps the LAN {} ({})",
                    quote(&lan.name),
                    lan.address.trunc()
                ),
            );
            return None;
        }
        Some(address)
    }

    /// The WireGuard socket listens on every address, but routerd opens the port and
    /// tells peers only this one: an address of the main WAN NIC (replies leave by the
    /// main table's route, so an extra NIC's address would answer from the wrong NIC).
    fn wireguard_public(&mut self, s: &S<String>, wan: Option<&Wan>) -> Option<Ipv4Addr> {
        let ip = self.ip("wireguard.public", s)?;
        let Some(wan) = wan else { return Some(ip) };
        let main: Vec<Ipv4Addr> = std::iter::once(wan.address.addr())
            .chain(wan.more_addresses.iter().map(|a| a.addr()))
            .collect();
        if main.contains(&ip) {
            return Some(ip);
        }
        let list = main.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
        let why = if wan.extra_index_of(ip).is_some() {
            "is on an extra WAN NIC; WireGuard answers by the main WAN NIC only, so give"
        } else {
            "is not one of the router's public addresses; give"
        };
        self.error(
            s.span(),
            format!("wireguard.public: {ip} {why} one of the main WAN NIC's ({list}: wan.address, wan.more_addresses)"),
        );
        None
    }

    fn listen_port(&mut self, p: &S<i64>, public: Option<Ipv4Addr>, cx: &Context) -> Option<u16> {
        let Some(port) = u16::try_from(*p.get_ref()).ok().filter(|p| *p != 0) else {
            self.error(
                p.span(),
                format!("wireguard.listen_port: expected a port 1-65535, found {}", p.get_ref()),
            );
            return None;
        };
        let single = PortRange {
            first: port,
            last: port,
        };
        // The socket listens on every address, so the router's own UDP services clash
        // wherever they listen.
        let own = match port {
            53 if cx.dns => Some("the resolver's"),
            67 if cx.lans.iter().any(|l| l.dhcp.is_some()) => Some("the DHCP server's"),
            _ => None,
        };
        if let Some(service) = own {
            self.error(
                p.span(),
                format!("wireguard.listen_port: UDP port {port} is {service} port; pick another, like 51820"),
            );
            return None;
        }
        let public = public?;
        let forward = cx
            .forwards
            .iter()
            .find(|f| f.public == public && f.protocol.transports().contains(&"udp") && f.ports.overlaps(single));
        if let Some(f) = forward {
            self.error(
                p.span(),
                format!("wireguard.listen_port: UDP port {port} of {public} is already forwarded (port {} to {}); WireGuard and a forward cannot share a port", f.ports, f.to),
            );
            return None;
        }
        let mapped = cx
            .one_to_one
            .iter()
            .find(|m| m.public == public && m.open.iter().any(|o| o.opens("udp", single)));
        if let Some(m) = mapped {
            self.error(
                p.span(),
                format!("wireguard.listen_port: UDP port {port} of {public} is open to {} by its one_to_one; give WireGuard another port or `public` address", m.private),
            );
            return None;
        }
        Some(port)
    }

    fn wireguard_peer(
        &mut self,
        table: &S<RawPeer>,
        address: Option<Ipv4Net>,
        earlier: &[Peer],
        lans: &[Lan],
    ) -> Option<Peer> {
        let raw = table.get_ref();
        let name = self
            .required(&raw.name, table, "name", "the peer's name, like \"laptop\"")
            .and_then(|n| self.peer_name(n, earlier));
        let public_key = self
            .required(
                &raw.public_key,
                table,
                "public_key",
                "the peer's public key, as `wg pubkey` prints it",
            )
            .and_then(|k| self.peer_key(k, earlier));
        let allowed_ips = self
            .required(
                &raw.allowed_ips,
                table,
                "allowed_ips",
                "the peer's addresses in the tunnel, like [\"10.99.0.2/32\"]",
            )
            .and_then(|list| {
                if list.get_ref().is_empty() {
                    self.error(
                        list.span(),
                        "wireguard.peer.allowed_ips: give the peer's address in the tunnel, like [\"10.99.0.2/32\"]"
                            .into(),
                    );
                    return None;
                }
                let mut nets = Vec::new();
                let mut ok = true;
                for a in list.get_ref() {
                    match self.allowed_ip(a, address, earlier, &nets, lans) {
                        Some(net) => nets.push(net),
                        None => ok = false,
                    }
                }
                ok.then_some(nets)
            });
        let reach = match &raw.reach {
            None => Some(lans.iter().map(|l| l.name.clone()).collect()),
            Some(list) => {
                let mut names = Vec::new();
                let mut ok = true;
                for r in list {
                    if lans.iter().any(|l| l.name == *r.get_ref()) {
                        names.push(r.get_ref().clone());
                    } else {
                        let known: Vec<String> = lans.iter().map(|l| quote(&l.name)).collect();
                        self.error(
                            r.span(),
                            format!(
                                "wireguard.peer.reach: no LAN is named {} (LANs: {})",
                                quote(r.get_ref()),
                                known.join(", ")
                            ),
                        );
                        ok = false;
                    }
                }
                ok.then_some(names)
            }
        };
        Some(Peer {
            name: name?,
            public_key: public_key?,
            allowed_ips: allowed_ips?,
            reach: reach?,
            internet: raw.internet.unwrap_or(false),
        })
    }

    fn peer_name(&mut self, s: &S<String>, earlier: &[Peer]) -> Option<String> {
        let name = s.get_ref();
        // Metric labels, log lines and `routerd wireguard peer-config NAME`: keep it plain.
        let valid = (1..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid {
            self.error(
                s.span(),
                format!(
                    "wireguard.peer.name: {} is not a valid peer name (1 to 32 of a-z, 0-9, '-', '_', starting with a letter)",
                    quote(name)
                ),
            );
            return None;
        }
        if earlier.iter().any(|p| p.name == *name) {
            self.error(
                s.span(),
                format!(
                    "wireguard.peer.name: {} is already the name of another peer",
                    quote(name)
                ),
            );
            return None;
        }
        Some(name.clone())
    }

    fn peer_key(&mut self, s: &S<String>, earlier: &[Peer]) -> Option<Key> {
        let Ok(key) = s.get_ref().parse::<Key>() else {
            self.error(
                s.span(),
                format!(
                    "wireguard.peer.public_key: expected a WireGuard key (32 bytes in base64, 44 characters, as `wg pubkey` prints it), found {}",
                    quote(s.get_ref())
                ),
            );
            return None;
        };
        if let Some(other) = earlier.iter().find(|p| p.public_key == key) {
            self.error(
                s.span(),
                format!(
                    "wireguard.peer.public_key: already the key of the peer {}",
                    quote(&other.name)
                ),
            );
            return None;
        }
        Some(key)
    }

    fn allowed_ip(
        &mut self,
        s: &S<String>,
        address: Option<Ipv4Net>,
        earlier: &[Peer],
        this: &[Ipv4Net],
        lans: &[Lan],
    ) -> Option<Ipv4Net> {
        const KEY: &str = "wireguard.peer.allowed_ips";
        let text = s.get_ref();
        let net = if text.contains('/') {
            self.parsed(KEY, s, "an IPv4 prefix like \"10.99.0.2/32\"")?
        } else {
            Ipv4Net::from(self.parsed::<Ipv4Addr>(KEY, s, "an IPv4 prefix like \"10.99.0.2/32\"")?)
        };
        if net != net.trunc() {
            self.error(
                s.span(),
                format!(
                    "{KEY}: {net} has host bits set; did you mean \"{}\" (the prefix) or \"{}/32\"?",
                    net.trunc(),
                    net.addr()
                ),
            );
            return None;
        }
        if let Some(address) = address {
            let subnet = address.trunc();
            if !subnet.contains(&net) {
                self.error(
                    s.span(),
                    format!("{KEY}: {net} is outside the tunnel subnet {subnet}; give the peer addresses in it"),
                );
                return None;
            }
            if net.contains(&address.addr()) {
                self.error(
                    s.span(),
                    format!("{KEY}: {net} holds the router's own tunnel address {}", address.addr()),
                );
                return None;
            }
        }
        if let Some(lan) = lans.iter().find(|l| overlap(l.address.trunc(), net)) {
            self.error(
                s.span(),
                format!(
                    "{KEY}: {net} overlaps the LAN {} ({})",
                    quote(&lan.name),
                    lan.address.trunc()
                ),
            );
            return None;
        }
        if let Some(other) = earlier.iter().find(|p| p.allowed_ips.iter().any(|o| overlap(*o, net))) {
            self.error(
                s.span(),
                format!(
                    "{KEY}: {net} overlaps the allowed IPs of the peer {}; each tunnel address belongs to one peer",
                    quote(&other.name)
                ),
            );
            return None;
        }
        if this.iter().any(|o| overlap(*o, net)) {
            self.error(
                s.span(),
                format!("{KEY}: {net} overlaps another of this peer's allowed IPs"),
            );
            return None;
        }
        Some(net)
    }
}

fn overlap(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use crate::wireguard::Key;
    use crate::Config;
    use std::net::Ipv4Addr;

    const BASE: &str = "[wan]\ninterface = \"eth0\"\naddress = \"203.0.113.10/32\"\ngateway = \"203.0.113.254\"\nmore_addresses = [\"203.0.113.11/32\"]\n[[lan]]\nname = \"prod\"\ninterface = \"eth1\"\naddress = \"172.16.0.1/16\"\n[[lan]]\nname = \"dev\"\ninterface = \"eth2\"\naddress = \"172.17.0.1/16\"\n[[forward]]\nprotocol = \"udp\"\nport = 5000\nto = \"172.16.10.5\"\n";
    const KEY1: &str = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=";
    const KEY2: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=";

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, "router.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn the_contract_example_parses_with_its_defaults() {
        let config = parse(&format!(
            "{BASE}[wireguard]\nlisten_port = 51820\naddress = \"10.99.0.1/24\"\n[[wireguard.peer]]\nname = \"laptop\"\npublic_key = \"{KEY1}\"\nallowed_ips = [\"10.99.0.2/32\"]\n[[wireguard.peer]]\nname = \"ops\"\npublic_key = \"{KEY2}\"\nallowed_ips = [\"10.99.0.3\"]\nreach = [\"dev\"]\ninternet = true\n"
        ))
        .expect("valid");
        let wg = config.wireguard.expect("configured");
        assert_eq!(wg.listen_port, 51820);
        assert_eq!(wg.public, Ipv4Addr::new(203, 0, 113, 10), "default: wan.address");
        assert_eq!(wg.subnet().to_string(), "10.99.0.0/24");
        assert_eq!(wg.private_key_file, "wireguard.key");
        let laptop = wg.peer_named("laptop").expect("laptop");
        assert_eq!(laptop.public_key, KEY1.parse::<Key>().expect("key"));
        assert_eq!(laptop.reach, ["prod", "dev"], "default: every LAN");
        assert!(!laptop.internet);
        let ops = wg.peer_named("ops").expect("ops");
        assert_eq!(ops.allowed_ips[0].to_string(), "10.99.0.3/32");
        assert_eq!((ops.reach.as_slice(), ops.internet), (&["dev".to_string()][..], true));
        assert!(parse(BASE).expect("valid").wireguard.is_none());
    }

    #[test]
    fn every_mistake_is_refused_with_its_position() {
        let err = parse(&format!(
            "{BASE}[wireguard]\nlisten_port = 5000\naddress = \"172.16.99.1/24\"\npublic = \"198.51.100.1\"\n[[wireguard.peer]]\nname = \"laptop\"\npublic_key = \"base64...\"\nallowed_ips = [\"10.99.0.2/32\"]\nreach = [\"qa\"]\n"
        ))
        .expect_err("bad");
        for expected in [
            "router.toml:20:11: wireguard.address: the tunnel subnet 172.16.99.0/24 overlaps the LAN \"prod\" (172.16.0.0/16)",
            "router.toml:21:10: wireguard.public: 198.51.100.1 is not one of the router's public addresses",
            "router.toml:24:14: wireguard.peer.public_key: expected a WireGuard key (32 bytes in base64",
            "router.toml:26:10: wireguard.peer.reach: no LAN is named \"qa\" (LANs: \"prod\", \"dev\")",
        ] {
            assert!(err.contains(expected), "{expected}\nin\n{err}");
        }
        let err = parse(&format!(
            "{BASE}[wireguard]\nlisten_port = 5000\naddress = \"10.99.0.1/24\"\n[[wireguard.peer]]\nname = \"a\"\npublic_key = \"{KEY1}\"\nallowed_ips = [\"10.99.0.2/32\"]\n[[wireguard.peer]]\nname = \"a\"\npublic_key = \"{KEY2}\"\nallowed_ips = [\"10.99.0.2/32\", \"10.98.0.1/32\", \"10.99.0.7/29\", \"10.99.0.1/32\"]\n"
        ))
        .expect_err("bad");
        for expected in [
            "router.toml:19:15: wireguard.listen_port: UDP port 5000 of 203.0.113.10 is already forwarded (port 5000 to 172.16.10.5)",
            "router.toml:26:8: wireguard.peer.name: \"a\" is already the name of another peer",
            "router.toml:28:16: wireguard.peer.allowed_ips: 10.99.0.2/32 overlaps the allowed IPs of the peer \"a\"",
            "router.toml:28:32: wireguard.peer.allowed_ips: 10.98.0.1/32 is outside the tunnel subnet 10.99.0.0/24",
            "wireguard.peer.allowed_ips: 10.99.0.7/29 has host bits set; did you mean \"10.99.0.0/29\" (the prefix) or \"10.99.0.7/32\"?",
            "wireguard.peer.allowed_ips: 10.99.0.1/32 holds the router's own tunnel address 10.99.0.1",
        ] {
            assert!(err.contains(expected), "{expected}\nin\n{err}");
        }
        let err = parse(&format!(
            "{BASE}[wireguard]\nlisten_port = 51820\naddress = \"10.99.0.1/24\"\n[[wireguard.peer]]\nname = \"a\"\npublic_key = \"{KEY1}\"\nallowed_ips = [\"10.99.0.2/32\"]\n[[wireguard.peer]]\nname = \"b\"\npublic_key = \"{KEY1}\"\nallowed_ips = [\"10.99.0.3/32\"]\n[[wireguard.peer]]\nname = \"c\"\npublic_key = \"{KEY2}\"\nallowed_ips = [\"10.99.0.0/24\"]\n"
        ))
        .expect_err("bad");
        for expected in [
            "router.toml:27:14: wireguard.peer.public_key: already the key of the peer \"a\"",
            "router.toml:32:16: wireguard.peer.allowed_ips: 10.99.0.0/24 holds the router's own tunnel address",
        ] {
            assert!(err.contains(expected), "{expected}\nin\n{err}");
        }
        let err = parse(&format!(
            "{BASE}[wireguard]\naddress = \"10.99.0.0/24\"\nlisten_port = 0\n"
        ))
        .expect_err("bad");
        for expected in [
            "router.toml:19:11: wireguard.address: 10.99.0.0 is the network or broadcast address of 10.99.0.0/24; give the router a host address, like \"10.99.0.1/24\"",
            "router.toml:20:15: wireguard.listen_port: expected a port 1-65535, found 0",
        ] {
            assert!(err.contains(expected), "{expected}\nin\n{err}");
        }
        let err = parse(&format!(
            "{BASE}[wireguard]\nlisten_port = 51820\n[[wireguard.peer]]\nname = \"x\"\n"
        ))
        .expect_err("bad");
        for expected in [
            "missing key `address`",
            "missing key `public_key`",
            "missing key `allowed_ips`",
        ] {
            assert!(err.contains(expected), "{expected}\nin\n{err}");
        }
    }

    #[test]
    fn the_port_may_not_clash_with_a_one_to_one_or_routerds_own_services() {
        let one_to_one = "[[one_to_one]]\npublic = \"203.0.113.11\"\nprivate = \"172.16.10.9\"\nopen = [\"udp/all\"]\n";
        let err = parse(&format!(
            "{BASE}{one_to_one}[wireguard]\nlisten_port = 51820\naddress = \"10.99.0.1/24\"\npublic = \"203.0.113.11\"\n"
        ))
        .expect_err("bad");
        assert!(
            err.contains(
                "wireguard.listen_port: UDP port 51820 of 203.0.113.11 is open to 172.16.10.9 by its one_to_one"
            ),
            "{err}"
        );
        let ok = parse(&format!(
            "{BASE}{one_to_one}[wireguard]\nlisten_port = 51820\naddress = \"10.99.0.1/24\"\n"
        ))
        .expect("another address: no clash");
        assert_eq!(ok.wireguard.map(|w| w.peers.len()), Some(0));
        let err = parse(&format!(
            "{BASE}[dns]\n[wireguard]\nlisten_port = 53\naddress = \"10.99.0.1/24\"\n"
        ))
        .expect_err("bad");
        assert!(
            err.contains("wireguard.listen_port: UDP port 53 is the resolver's port"),
            "{err}"
        );
    }
}
