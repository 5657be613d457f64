//! From TOML text to a validated [`Config`], collecting every error with its position.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;
use toml::Spanned;

use super::byname::HostPattern;
use super::diagnostic::{clip, quote, MAX_DIAGNOSTICS, MAX_MESSAGE, MAX_QUOTED};
use super::{
    eui64, hostname, is_link_local, Config, ConfigError, Dhcp, DhcpHost, Diagnostic, ExtraWan, Forward, Lan, MacAddr,
    NicSelector, OneToOne, Open, Open6, OpenTarget, PortRange, Protocol, Status, Wan, Wan6, DEFAULT_LAN_NAME,
};

type S<T> = Spanned<T>;

mod dns;
mod wireguard;

/// `L`: one `[lan]` table (`S<RawLan>`) or the `[[lan]]` array (`Vec<S<RawLan>>`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig<L> {
    hostname: Option<S<String>>,
    wan: S<RawWan>,
    lan: L,
    dhcp: Option<S<RawDhcp>>,
    #[serde(default)]
    forward: Vec<S<RawForward>>,
    #[serde(default)]
    one_to_one: Vec<S<RawOneToOne>>,
    status: Option<S<RawStatus>>,
    dns: Option<S<dns::RawDns>>,
    #[serde(default)]
    open: Vec<S<RawOpen6>>,
    wireguard: Option<S<wireguard::RawWireGuard>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpen6 {
    to: Option<S<String>>,
    protocol: Option<S<String>>,
    port: Option<S<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOneToOne {
    public: Option<S<String>>,
    private: Option<S<String>>,
    #[serde(default)]
    open: Vec<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtraWan {
    mac: Option<S<String>>,
    interface: Option<S<String>>,
    address: Option<S<String>>,
    gateway: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatus {
    enabled: Option<bool>,
    port: Option<S<i64>>,
    lans: Option<S<Vec<S<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWan {
    mac: Option<S<String>>,
    interface: Option<S<String>>,
    address: Option<S<String>>,
    gateway: Option<S<String>>,
    gateway_mac: Option<S<String>>,
    #[serde(default)]
    dns: Vec<S<String>>,
    #[serde(default)]
    more_addresses: Vec<S<String>>,
    #[serde(default)]
    extra: Vec<S<RawExtraWan>>,
    address6: Option<S<String>>,
    gateway6: Option<S<String>>,
    ndp_proxy: Option<S<bool>>,
    #[serde(default)]
    dns6: Vec<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLan {
    name: Option<S<String>>,
    mac: Option<S<String>>,
    interface: Option<S<String>>,
    vlan: Option<S<i64>>,
    address: Option<S<String>>,
    reach: Option<S<Vec<S<String>>>>,
    snat: Option<S<String>>,
    dhcp: Option<S<RawDhcp>>,
    address6: Option<S<String>>,
}

/// Only whether `lan` is an array of tables (`[[lan]]`) or one table (`[lan]`).
#[derive(Deserialize)]
struct LanForm {
    lan: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDhcp {
    range: Option<S<String>>,
    lease_time: Option<S<toml::Value>>,
    #[serde(default)]
    dns: Vec<S<String>>,
    domain: Option<S<String>>,
    #[serde(default)]
    host: Vec<S<RawHost>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    mac: Option<S<String>>,
    address: Option<S<String>>,
    hostname: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForward {
    public: Option<S<String>>,
    protocol: Option<S<String>>,
    port: Option<S<toml::Value>>,
    to: Option<S<String>>,
    to_port: Option<S<toml::Value>>,
    host: Option<S<String>>,
    proxy_protocol: Option<S<bool>>,
}

/// A TOML value as a message shows it: as written (strings quoted), cut short.
fn shown(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => quote(s),
        other => clip(&other.to_string(), MAX_QUOTED),
    }
}

const DEFAULT_STATUS_PORT: u16 = 80;
const DEFAULT_LEASE_TIME: Duration = Duration::from_secs(12 * 3600);

fn syntax_error(text: &str, origin: &str, e: &toml::de::Error) -> ConfigError {
    let span = e.span().unwrap_or(0..0);
    let message = clip(e.message().trim_end(), MAX_MESSAGE).replace('\n', " ");
    ConfigError::new(origin.to_string(), vec![Diagnostic::at(text, span, &message)])
}

pub(super) fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let mut v = Validator {
        text,
        diagnostics: Vec::new(),
        unshown: 0,
    };
    // A syntax error shows the same either way: the typed pass below reports it.
    let array = toml::from_str::<LanForm>(text).is_ok_and(|f| matches!(f.lan, Some(toml::Value::Array(_))));
    let config = if array {
        let raw: RawConfig<Vec<S<RawLan>>> = toml::from_str(text).map_err(|e| syntax_error(text, origin, &e))?;
        let lans: Vec<&S<RawLan>> = raw.lan.iter().collect();
        v.config(&raw, &lans, true)
    } else {
        let raw: RawConfig<S<RawLan>> = toml::from_str(text).map_err(|e| syntax_error(text, origin, &e))?;
        v.config(&raw, &[&raw.lan], false)
    };
    match config {
        Some(config) if v.diagnostics.is_empty() => Ok(config),
        _ => Err(ConfigError::with_unshown(origin.to_string(), v.diagnostics, v.unshown)),
    }
}

/// Walks the raw config; every check that fails records a diagnostic and the walk goes
/// on, so the user sees all errors at once. Returns `None` where a value is unusable.
struct Validator<'t> {
    text: &'t str,
    diagnostics: Vec<Diagnostic>,
    /// Errors found beyond the [`MAX_DIAGNOSTICS`] kept.
    unshown: usize,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, message: String) {
        if self.diagnostics.len() < MAX_DIAGNOSTICS {
            self.diagnostics.push(Diagnostic::at(self.text, span, &message));
        } else {
            self.unshown += 1;
        }
    }

    /// `hint` says what the value is, like `the hoster's gateway, like "203.0.113.254"`.
    fn required<'v, T>(
        &mut self,
        value: &'v Option<S<T>>,
        table: &S<impl Sized>,
        key: &str,
        hint: &str,
    ) -> Option<&'v S<T>> {
        if value.is_none() {
            self.error(table.span(), format!("missing key `{key}` ({hint})"));
        }
        value.as_ref()
    }

    fn mac(&mut self, key: &str, s: &S<String>) -> Option<MacAddr> {
        match s.get_ref().parse::<MacAddr>() {
            Ok(mac) if mac.is_multicast() => {
                self.error(s.span(), format!("{key}: {mac} is a multicast MAC; a NIC needs a unicast MAC (first byte even), like 02:00:00:00:00:10"));
                None
            }
            Ok(mac) if mac.0 == [0; 6] => {
                self.error(s.span(), format!("{key}: 00:00:00:00:00:00 is no MAC a NIC can have"));
                None
            }
            Ok(mac) => Some(mac),
            Err(()) => {
                self.error(
                    s.span(),
                    format!(
                        "{key}: expected a MAC address like 02:00:00:00:00:10, found {}",
                        quote(s.get_ref())
                    ),
                );
                None
            }
        }
    }

    fn ip(&mut self, key: &str, s: &S<String>) -> Option<Ipv4Addr> {
        self.parsed(key, s, "an IPv4 address like 203.0.113.254")
    }

    fn cidr(&mut self, key: &str, s: &S<String>) -> Option<Ipv4Net> {
        self.parsed(key, s, "an IPv4 address with prefix length like 203.0.113.10/32")
    }

    /// `s` as a `T`, or an error saying what was `expected` and what was found.
    fn parsed<T: std::str::FromStr>(&mut self, key: &str, s: &S<String>, expected: &str) -> Option<T> {
        let value = s.get_ref().parse().ok();
        if value.is_none() {
            self.error(
                s.span(),
                format!("{key}: expected {expected}, found {}", quote(s.get_ref())),
            );
        }
        value
    }

    fn interface(&mut self, key: &str, s: &S<String>) -> Option<String> {
        let name = s.get_ref();
        // The kernel's rules: 1 to 15 bytes, no '/', ':' or whitespace.
        let valid =
            !name.is_empty() && name.len() <= 15 && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
        if valid {
            Some(name.clone())
        } else {
            self.error(
                s.span(),
                format!(
                    "{key}: {} is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)",
                    quote(name)
                ),
            );
            None
        }
    }

    fn hostname(&mut self, key: &str, s: &S<String>) -> Option<String> {
        let name = s.get_ref();
        if hostname::valid_dns_name(name) {
            Some(name.clone())
        } else {
            self.error(
                s.span(),
                format!(
                    "{key}: {} is not a valid host name (letters, digits and '-', dot-separated)",
                    quote(name)
                ),
            );
            None
        }
    }

    /// The router's own name: the rule of [`hostname::system_name_error`].
    fn system_hostname(&mut self, s: &S<String>) -> Option<String> {
        match hostname::system_name_error(s.get_ref()) {
            None => Some(s.get_ref().clone()),
            Some(problem) => {
                self.error(s.span(), format!("hostname: {problem}"));
                None
            }
        }
    }

    fn config<L>(&mut self, raw: &RawConfig<L>, raw_lans: &[&S<RawLan>], array: bool) -> Option<Config> {
        let hostname = raw.hostname.as_ref().and_then(|h| self.system_hostname(h));
        let wan = self.wan(&raw.wan);
        let top_dhcp = raw.dhcp.as_ref();
        if array {
            if let Some(d) = top_dhcp {
                self.error(
                    d.span(),
                    "[dhcp] goes with the single [lan]; with [[lan]], give each LAN its own [lan.dhcp]".into(),
                );
            }
            if raw_lans.is_empty() {
                self.error(0..0, "no LAN: give one [lan] table or [[lan]] tables".into());
            }
        }
        let lans: Vec<Option<Lan>> = raw_lans
            .iter()
            .map(|table| self.lan(table, array, wan.as_ref(), if array { None } else { top_dhcp }))
            .collect();
        self.across_lans(raw_lans, &lans);
        let lans: Option<Vec<Lan>> = lans.into_iter().collect();
        let (one_to_one, forwards) = match &lans {
            Some(lans) => {
                let one_to_one = self.one_to_ones(&raw.one_to_one, lans, wan.as_ref());
                let forwards = self.forwards(&raw.forward, lans, wan.as_ref(), &one_to_one);
                (one_to_one, forwards)
            }
            None => (Vec::new(), Vec::new()),
        };
        let status = self.status(raw.status.as_ref(), lans.as_deref().unwrap_or_default());
        let dns = self.dns(raw.dns.as_ref(), lans.as_deref().unwrap_or_default(), wan.as_ref());
        let wireguard = match (&lans, &raw.wireguard) {
            (Some(lans), Some(table)) => self.wireguard(
                table,
                &wireguard::Context {
                    lans,
                    wan: wan.as_ref(),
                    forwards: &forwards,
                    one_to_one: &one_to_one,
                    dns: dns.is_some(),
                },
            ),
            _ => None,
        };
        let mut wan = wan;
        let open = match &lans {
            Some(lans) => {
                if let Some(v6) = wan.as_mut().and_then(|w| w.v6.as_mut()) {
                    self.v6_across(&raw.wan, v6, raw_lans, lans);
                }
                self.opens(&raw.open, lans, wan.as_ref())
            }
            None => Vec::new(),
        };
        Some(Config {
            hostname,
            wan: wan?,
            lans: lans.filter(|l| !l.is_empty())?,
            forwards,
            one_to_one,
            status,
            dns,
            open,
            wireguard,
        })
    }

    /// The checks between LANs: names, prefixes, NICs and VLANs, `reach`.
    fn across_lans(&mut self, raws: &[&S<RawLan>], lans: &[Option<Lan>]) {
        for (j, later) in lans.iter().enumerate() {
            let Some(later) = later else { continue };
            let raw = raws[j].get_ref();
            for earlier in lans[..j].iter().flatten() {
                if let Some(n) = raw.name.as_ref().filter(|_| earlier.name == later.name) {
                    self.error(
                        n.span(),
                        format!("lan.name: {} is already the name of another LAN", quote(&later.name)),
                    );
                }
                let (a, b) = (earlier.address.trunc(), later.address.trunc());
                if let Some(addr) = raw
                    .address
                    .as_ref()
                    .filter(|_| a.contains(&b.network()) || b.contains(&a.network()))
                {
                    self.error(
                        addr.span(),
                        format!("lan.address: {b} overlaps the LAN {} ({a})", quote(&earlier.name)),
                    );
                }
                if earlier.nic != later.nic {
                    continue;
                }
                match (earlier.vlan, later.vlan, &raw.vlan) {
                    (None, None, _) => {
                        let (key, span) = match (&raw.interface, &raw.mac) {
                            (Some(i), _) => ("lan.interface", i.span()),
                            (None, Some(m)) => ("lan.mac", m.span()),
                            (None, None) => ("lan", raws[j].span()),
                        };
                        self.error(
                            span,
                            format!(
                                "{key}: {} is also the NIC of the LAN {}; LANs sharing a NIC need a `vlan` each (one may stay untagged)",
                                later.nic,
                                quote(&earlier.name)
                            ),
                        );
                    }
                    (Some(x), Some(y), Some(v)) if x == y => self.error(
                        v.span(),
                        format!(
                            "lan.vlan: VLAN {y} on {} is already the LAN {}",
                            later.nic,
                            quote(&earlier.name)
                        ),
                    ),
                    _ => {}
                }
            }
            for r in raw.reach.iter().flat_map(|r| r.get_ref()) {
                let name = r.get_ref();
                if *name == later.name {
                    self.error(r.span(), format!("lan.reach: {} is this LAN itself", quote(name)));
                } else if !lans.iter().flatten().any(|l| l.name == *name)
                    && raws
                        .iter()
                        .all(|t| t.get_ref().name.as_ref().map(|n| n.get_ref()) != Some(name))
                {
                    let known: Vec<String> = lans.iter().flatten().map(|l| quote(&l.name)).collect();
                    self.error(
                        r.span(),
                        format!(
                            "lan.reach: no LAN is named {} (LANs: {})",
                            quote(name),
                            known.join(", ")
                        ),
                    );
                }
            }
        }
    }

    fn status(&mut self, table: Option<&S<RawStatus>>, lans: &[Lan]) -> Option<Status> {
        let Some(raw) = table.map(S::get_ref) else {
            return Some(Status {
                port: DEFAULT_STATUS_PORT,
                lans: None,
            });
        };
        if raw.enabled == Some(false) {
            return None;
        }
        let port = match &raw.port {
            None => DEFAULT_STATUS_PORT,
            Some(p) => match u16::try_from(*p.get_ref()) {
                Ok(port) if port != 0 => port,
                _ => {
                    self.error(
                        p.span(),
                        format!("status.port: expected a port 1-65535, found {}", p.get_ref()),
                    );
                    DEFAULT_STATUS_PORT
                }
            },
        };
        let served = raw.lans.as_ref().map(|names| {
            for n in names.get_ref() {
                if !lans.is_empty() && !lans.iter().any(|l| l.name == *n.get_ref()) {
                    let known: Vec<String> = lans.iter().map(|l| quote(&l.name)).collect();
                    self.error(
                        n.span(),
                        format!(
                            "status.lans: no LAN is named {} (LANs: {})",
                            quote(n.get_ref()),
                            known.join(", ")
                        ),
                    );
                }
            }
            names.get_ref().iter().map(|n| n.get_ref().clone()).collect()
        });
        Some(Status { port, lans: served })
    }

    fn wan(&mut self, table: &S<RawWan>) -> Option<Wan> {
        let raw = table.get_ref();
        let mac = raw.mac.as_ref().and_then(|m| self.mac("wan.mac", m));
        let interface = raw.interface.as_ref().and_then(|i| self.interface("wan.interface", i));
        // A bad selector is reported but the other keys are still checked.
        let nic = match (&raw.interface, &raw.mac) {
            (Some(_), _) => interface.map(NicSelector::Name),
            (None, Some(_)) => mac.map(NicSelector::Mac),
            (None, None) => {
                self.error(
                    table.span(),
                    "[wan] needs `mac` (the hoster's virtual MAC, which selects the NIC) or `interface`".into(),
                );
                None
            }
        };
        let address = self
            .required(
                &raw.address,
                table,
                "address",
                "the failover IP with its prefix, like \"203.0.113.10/32\"",
            )
            .and_then(|a| self.cidr("wan.address", a));
        let gateway = self
            .required(
                &raw.gateway,
                table,
                "gateway",
                "the hoster's gateway, like \"203.0.113.254\"",
            )
            .and_then(|g| self.ip("wan.gateway", g));
        if let (Some(address), Some(gateway), Some(g)) = (address, gateway, &raw.gateway) {
            if address.addr() == gateway {
                self.error(g.span(), format!("wan.gateway: {gateway} is the WAN address itself"));
            }
            if gateway.is_unspecified() || gateway.is_broadcast() || gateway.is_multicast() {
                self.error(g.span(), format!("wan.gateway: {gateway} cannot be a gateway"));
            }
        }
        let gateway_mac = raw.gateway_mac.as_ref().and_then(|m| self.mac("wan.gateway_mac", m));
        let dns = raw.dns.iter().filter_map(|d| self.ip("wan.dns", d)).collect::<Vec<_>>();
        let more_addresses = raw
            .more_addresses
            .iter()
            .filter_map(|a| self.cidr("wan.more_addresses", a))
            .collect::<Vec<_>>();
        // Each extra WAN is a NIC of its own: not the main WAN's, not another extra's.
        let mut nics: Vec<(NicSelector, Option<MacAddr>)> = nic.iter().map(|n| (n.clone(), mac)).collect();
        let mut extra = Vec::new();
        let errors_before = self.diagnostics.len() + self.unshown;
        for table in &raw.extra {
            let Some(e) = self.extra_wan(table, gateway) else {
                continue;
            };
            let same_nic = |(n, m): &(NicSelector, Option<MacAddr>)| {
                *n == e.nic || (e.mac.is_some() && *m == e.mac) || e.mac.is_some_and(|em| *n == NicSelector::Mac(em))
            };
            if nics.iter().any(same_nic) {
                self.error(
                    table.span(),
                    format!("wan.extra: {} is already a WAN NIC; an extra address with a MAC of its own needs a NIC of its own (addresses that share the WAN's MAC go in wan.more_addresses)", e.nic),
                );
            }
            nics.push((e.nic.clone(), e.mac));
            extra.push(e);
        }
        // Each public address once, over the main one, `more_addresses` and the extras.
        let mut seen: Vec<Ipv4Addr> = address.iter().map(|a| a.addr()).collect();
        let given = raw.more_addresses.iter().map(|a| (a, "wan.more_addresses")).chain(
            raw.extra
                .iter()
                .filter_map(|e| Some((e.get_ref().address.as_ref()?, "wan.extra.address"))),
        );
        for (a, key) in given.collect::<Vec<_>>() {
            let Ok(ip) = a.get_ref().parse::<Ipv4Net>().map(|n| n.addr()) else {
                continue;
            };
            if seen.contains(&ip) {
                self.error(
                    a.span(),
                    format!("{key}: {ip} is already one of the router's public addresses; each can be given once"),
                );
            } else if Some(ip) == gateway {
                self.error(a.span(), format!("{key}: {ip} is the gateway"));
            }
            seen.push(ip);
        }
        let v6 = self.wan6(table);
        if dns.len() != raw.dns.len()
            || (raw.gateway_mac.is_some() && gateway_mac.is_none())
            || self.diagnostics.len() + self.unshown != errors_before
            || more_addresses.len() != raw.more_addresses.len()
            || extra.len() != raw.extra.len()
        {
            return None;
        }
        Some(Wan {
            nic: nic?,
            mac,
            address: address?,
            gateway: gateway?,
            gateway_mac,
            dns,
            more_addresses,
            extra,
            v6: v6?,
        })
    }

    /// The WAN's IPv6 keys: `None` when one is wrong, `Some(None)` when IPv6 is off.
    /// `ndp_proxy`'s default needs the LANs: see [`Validator::v6_across`].
    fn wan6(&mut self, table: &S<RawWan>) -> Option<Option<Wan6>> {
        let raw = table.get_ref();
        let errors_before = self.diagnostics.len() + self.unshown;
        let address = raw.address6.as_ref().and_then(|a| {
            let net: Ipv6Net = self.parsed(
                "wan.address6",
                a,
                "an IPv6 address with prefix length like \"2001:db8:1:2::1/128\"",
            )?;
            let ip = net.addr();
            if is_link_local(ip) || ip.is_multicast() || ip.is_unspecified() || ip.is_loopback() {
                self.error(
                    a.span(),
                    format!("wan.address6: {ip} is not a global address (the link-local one is the kernel's)"),
                );
                return None;
            }
            Some(net)
        });
        let dns = raw
            .dns6
            .iter()
            .filter_map(|d| self.parsed::<Ipv6Addr>("wan.dns6", d, "an IPv6 address like \"2001:db8::53\""))
            .collect::<Vec<_>>();
        let Some(g) = &raw.gateway6 else {
            // IPv6 is off: any other v6 key would be accepted and not applied.
            let others = [
                raw.address6.as_ref().map(|a| ("wan.address6", a.span())),
                raw.ndp_proxy.as_ref().map(|n| ("wan.ndp_proxy", n.span())),
                raw.dns6.first().map(|d| ("wan.dns6", d.span())),
            ];
            for (key, span) in others.into_iter().flatten() {
                self.error(
                    span,
                    format!("{key}: IPv6 needs wan.gateway6 (the hoster's IPv6 gateway, like \"fe80::1\")"),
                );
            }
            return (self.diagnostics.len() + self.unshown == errors_before).then_some(None);
        };
        let gateway = self.parsed::<Ipv6Addr>("wan.gateway6", g, "an IPv6 address like \"fe80::1\"");
        if let Some(gw) = gateway {
            if gw.is_multicast() || gw.is_unspecified() || gw.is_loopback() {
                self.error(g.span(), format!("wan.gateway6: {gw} cannot be a gateway"));
            } else if Some(gw) == address.map(|a| a.addr()) {
                self.error(g.span(), format!("wan.gateway6: {gw} is wan.address6 itself"));
            } else if !is_link_local(gw) && raw.address6.is_none() {
                self.error(
                    g.span(),
                    format!("wan.gateway6: {gw} is neither link-local (like \"fe80::1\") nor reachable: a global gateway is reached on-link from wan.address6, which is missing"),
                );
            }
        }
        if self.diagnostics.len() + self.unshown != errors_before || dns.len() != raw.dns6.len() {
            return None;
        }
        Some(Some(Wan6 {
            address,
            gateway: gateway?,
            ndp_proxy: raw.ndp_proxy.as_ref().is_some_and(|n| *n.get_ref()),
            dns,
        }))
    }

    /// The IPv6 checks that need the LANs: each LAN prefix once, the gateway outside
    /// them, and `ndp_proxy`'s default (on when a LAN's /64 holds wan.address6: the
    /// hoster treats the whole /64 as on its segment, OVH's way).
    fn v6_across(&mut self, raw: &S<RawWan>, v6: &mut Wan6, raw_lans: &[&S<RawLan>], lans: &[Lan]) {
        let raw = raw.get_ref();
        for (j, lan) in lans.iter().enumerate() {
            let (Some(net), Some(a)) = (
                lan.address6,
                raw_lans.get(j).and_then(|r| r.get_ref().address6.as_ref()),
            ) else {
                continue;
            };
            if let Some(other) = lans[..j]
                .iter()
                .find(|o| o.address6.is_some_and(|o6| o6.trunc() == net.trunc()))
            {
                self.error(
                    a.span(),
                    format!(
                        "lan.address6: {} is already the prefix of the LAN {}",
                        net.trunc(),
                        quote(&other.name)
                    ),
                );
            }
            if net.trunc().contains(&v6.gateway) {
                if let Some(g) = &raw.gateway6 {
                    self.error(
                        g.span(),
                        format!(
                            "wan.gateway6: {} is inside the prefix {} of the LAN {}, not on the WAN",
                            v6.gateway,
                            net.trunc(),
                            quote(&lan.name)
                        ),
                    );
                }
            }
            if v6.address.is_some_and(|w| w.addr() == net.addr()) {
                self.error(a.span(), format!("lan.address6: {} is also wan.address6", net.addr()));
            }
        }
        if raw.ndp_proxy.is_none() {
            v6.ndp_proxy = v6.address.is_some_and(|w| {
                lans.iter()
                    .filter_map(|l| l.address6)
                    .any(|l| l.trunc().contains(&w.addr()))
            });
        }
    }

    /// `[[open]]`: each target in a LAN prefix with IPv6.
    fn opens(&mut self, raws: &[S<RawOpen6>], lans: &[Lan], wan: Option<&Wan>) -> Vec<Open6> {
        let mut opens = Vec::new();
        let v6_lans: Vec<&Lan> = lans.iter().filter(|l| l.address6.is_some()).collect();
        for table in raws {
            let raw = table.get_ref();
            if wan.is_some_and(|w| w.v6.is_none()) || v6_lans.is_empty() {
                self.error(
                    table.span(),
                    "[[open]] opens IPv6 ports: it needs wan.gateway6 and a LAN with address6".into(),
                );
                continue;
            }
            let protocol = self.protocol("open.protocol", raw.protocol.as_ref());
            let ports = self
                .required(
                    &raw.port,
                    table,
                    "port",
                    "the port like 443, or a range like \"8000-8010\"",
                )
                .and_then(|p| self.port_range("open.port", p));
            let target = self
                .required(
                    &raw.to,
                    table,
                    "to",
                    "the LAN host: its IPv6 address, its MAC, or a DHCP reservation's hostname",
                )
                .and_then(|t| self.open_target(t, lans, &v6_lans));
            let (Some(protocol), Some(ports), Some((to, addresses))) = (protocol, ports, target) else {
                continue;
            };
            opens.push(Open6 {
                to,
                addresses,
                protocol,
                ports,
            });
        }
        opens
    }

    fn open_target(&mut self, s: &S<String>, lans: &[Lan], v6_lans: &[&Lan]) -> Option<(OpenTarget, Vec<Ipv6Addr>)> {
        let text = s.get_ref().trim();
        let prefixes = || {
            v6_lans
                .iter()
                .filter_map(|l| Some(format!("{} {}", l.name, l.address6?.trunc())))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Ok(ip) = text.parse::<Ipv6Addr>() {
            let Some(lan) = v6_lans
                .iter()
                .find(|l| l.address6.is_some_and(|a| a.trunc().contains(&ip)))
            else {
                self.error(
                    s.span(),
                    format!("open.to: {ip} is outside every LAN prefix ({})", prefixes()),
                );
                return None;
            };
            let net = lan.address6?;
            if ip == net.addr() || ip == net.trunc().network() {
                self.error(
                    s.span(),
                    format!("open.to: {ip} is the router's own LAN address or the prefix itself"),
                );
                return None;
            }
            return Some((OpenTarget::Address(ip), vec![ip]));
        }
        // A MAC: its EUI-64 address in every LAN prefix; a reservation's hostname: in
        // its own LAN's.
        let (mac, in_lans): (MacAddr, Vec<&Lan>) = if let Ok(mac) = text.parse::<MacAddr>() {
            (mac, v6_lans.to_vec())
        } else {
            let reserved = lans.iter().find_map(|l| {
                let host = l
                    .dhcp
                    .as_ref()?
                    .hosts
                    .iter()
                    .find(|h| h.hostname.as_deref() == Some(text))?;
                Some((host.mac, l))
            });
            match reserved {
                Some((mac, lan)) if lan.address6.is_some() => (mac, vec![lan]),
                Some((_, lan)) => {
                    self.error(
                        s.span(),
                        format!(
                            "open.to: {} is in the LAN {}, which has no address6",
                            quote(text),
                            quote(&lan.name)
                        ),
                    );
                    return None;
                }
                None => {
                    self.error(
                        s.span(),
                        format!(
                            "open.to: expected an IPv6 address in a LAN prefix ({}), a MAC like 52:54:00:12:34:56 or a DHCP reservation's hostname, found {}",
                            prefixes(),
                            quote(text)
                        ),
                    );
                    return None;
                }
            }
        };
        let addresses = in_lans.iter().filter_map(|l| Some(eui64(l.address6?, mac))).collect();
        Some((OpenTarget::Mac(mac), addresses))
    }

    /// One `[[wan.extra]]`: its NIC (by `mac`, or `interface` with `mac` set on it),
    /// its address, its gateway (default `wan.gateway`).
    fn extra_wan(&mut self, table: &S<RawExtraWan>, wan_gateway: Option<Ipv4Addr>) -> Option<ExtraWan> {
        let raw = table.get_ref();
        let mac = raw.mac.as_ref().and_then(|m| self.mac("wan.extra.mac", m));
        let interface = raw
            .interface
            .as_ref()
            .and_then(|i| self.interface("wan.extra.interface", i));
        let nic = match (&raw.interface, &raw.mac) {
            (Some(_), _) => interface.map(NicSelector::Name),
            (None, Some(_)) => mac.map(NicSelector::Mac),
            (None, None) => {
                self.error(
                    table.span(),
                    "[[wan.extra]] needs `mac` (the virtual MAC of this address, which selects its NIC) or `interface`"
                        .into(),
                );
                None
            }
        };
        let address = self
            .required(
                &raw.address,
                table,
                "address",
                "the extra failover IP with its prefix, like \"203.0.113.20/32\"",
            )
            .and_then(|a| self.cidr("wan.extra.address", a));
        let gateway = match &raw.gateway {
            Some(g) => self.ip("wan.extra.gateway", g),
            None => wan_gateway,
        };
        if let (Some(address), Some(gateway), Some(g)) = (address, gateway, &raw.gateway) {
            if address.addr() == gateway {
                self.error(
                    g.span(),
                    format!("wan.extra.gateway: {gateway} is the extra address itself"),
                );
            }
            if gateway.is_unspecified() || gateway.is_broadcast() || gateway.is_multicast() {
                self.error(g.span(), format!("wan.extra.gateway: {gateway} cannot be a gateway"));
            }
        }
        Some(ExtraWan {
            nic: nic?,
            mac,
            address: address?,
            gateway: gateway?,
        })
    }

    /// A public address given by `key`: one of the router's own.
    /// (With no valid `[wan]` only the form is checked.)
    fn public_address(&mut self, key: &str, s: &S<String>, wan: Option<&Wan>) -> Option<Ipv4Addr> {
        let ip = self.ip(key, s)?;
        let Some(wan) = wan else { return Some(ip) };
        let publics = wan.public_addresses();
        if publics.contains(&ip) {
            Some(ip)
        } else {
            let list = publics.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
            self.error(
                s.span(),
                format!("{key}: {ip} is not one of the router's public addresses ({list}: wan.address, wan.more_addresses, wan.extra)"),
            );
            None
        }
    }

    /// `"all"`, or `PROTOCOL/PORTS` with tcp or udp and a port, a range or `all`.
    fn open_item(&mut self, s: &S<String>) -> Option<Open> {
        let text = s.get_ref().trim();
        if text == "all" {
            return Some(Open::All);
        }
        let bad = |v: &mut Self| {
            v.error(
                s.span(),
                format!(
                    "one_to_one.open: expected \"tcp/PORT\", \"udp/PORT\" (a port, a range like \"8000-8100\", or \"all\") or \"all\", found {}",
                    quote(s.get_ref())
                ),
            );
            None
        };
        let Some((proto, ports)) = text.split_once('/') else {
            return bad(self);
        };
        let transport = match proto {
            "tcp" => "tcp",
            "udp" => "udp",
            _ => return bad(self),
        };
        if ports == "all" {
            return Some(Open::Ports { transport, ports: None });
        }
        let value = S::new(s.span(), toml::Value::String(ports.to_string()));
        let ports = self.port_range("one_to_one.open", &value)?;
        Some(Open::Ports {
            transport,
            ports: Some(ports),
        })
    }

    fn one_to_ones(&mut self, raws: &[S<RawOneToOne>], lans: &[Lan], wan: Option<&Wan>) -> Vec<OneToOne> {
        let mut mappings: Vec<OneToOne> = Vec::new();
        for table in raws {
            let raw = table.get_ref();
            let public = self
                .required(
                    &raw.public,
                    table,
                    "public",
                    "one of the router's public addresses, like \"203.0.113.20\"",
                )
                .and_then(|p| self.public_address("one_to_one.public", p, wan));
            let private = self
                .required(&raw.private, table, "private", "the LAN host, like \"172.16.10.20\"")
                .and_then(|p| self.lan_host("one_to_one.private", p, lans));
            let open = raw.open.iter().filter_map(|o| self.open_item(o)).collect::<Vec<_>>();
            let (Some(public), Some(private)) = (public, private) else {
                continue;
            };
            if open.len() != raw.open.len() {
                continue;
            }
            if let Some(other) = mappings.iter().find(|m| m.public == public) {
                let span = raw.public.as_ref().map_or(table.span(), |p| p.span());
                self.error(
                    span,
                    format!("one_to_one.public: {public} is already mapped 1:1 to {}; a public address can be mapped to one host only", other.private),
                );
                continue;
            }
            if let Some(other) = mappings.iter().find(|m| m.private == private) {
                let span = raw.private.as_ref().map_or(table.span(), |p| p.span());
                self.error(
                    span,
                    format!("one_to_one.private: {private} is already mapped 1:1 to {}; a LAN host can leave from one address only", other.public),
                );
                continue;
            }
            mappings.push(OneToOne { public, private, open });
        }
        mappings
    }

    fn lan(&mut self, table: &S<RawLan>, array: bool, wan: Option<&Wan>, top_dhcp: Option<&S<RawDhcp>>) -> Option<Lan> {
        let raw = table.get_ref();
        let name = match (&raw.name, array) {
            (Some(n), _) => self.lan_name(n),
            (None, false) => Some(DEFAULT_LAN_NAME.to_string()),
            (None, true) => {
                self.error(
                    table.span(),
                    "missing key `name` (each [[lan]] is named, like \"prod\": logs, metrics and `reach` use it)"
                        .into(),
                );
                None
            }
        };
        let vlan = raw.vlan.as_ref().and_then(|v| match u16::try_from(*v.get_ref()) {
            Ok(id) if (1..=4094).contains(&id) => Some(id),
            _ => {
                self.error(
                    v.span(),
                    format!("lan.vlan: expected a VLAN id 1-4094, found {}", v.get_ref()),
                );
                None
            }
        });
        if let (Some(id), Some(i)) = (vlan, &raw.interface) {
            // The kernel's 15-byte limit, for the sub-interface `<nic>.<vlan>`.
            if format!("{}.{id}", i.get_ref()).len() > 15 {
                self.error(
                    i.span(),
                    format!(
                        "lan.interface: {}.{id}, the VLAN interface, would be longer than 15 characters",
                        i.get_ref()
                    ),
                );
            }
        }
        let reach: Vec<String> = raw
            .reach
            .iter()
            .flat_map(|r| r.get_ref())
            .map(|r| r.get_ref().clone())
            .collect();
        // A wrong address is reported (so the config is refused) and the LAN still
        // serves to check the forwards and 1:1 mappings.
        let snat = raw.snat.as_ref().and_then(|s| self.public_address("lan.snat", s, wan));
        let mac = raw.mac.as_ref().and_then(|m| self.mac("lan.mac", m));
        let interface = raw.interface.as_ref().and_then(|i| self.interface("lan.interface", i));
        let nic = match (&raw.interface, &raw.mac) {
            (Some(_), _) => interface.map(NicSelector::Name),
            (None, Some(_)) => mac.map(NicSelector::Mac),
            (None, None) => Some(NicSelector::NotWan),
        };
        let a = self.required(
            &raw.address,
            table,
            "address",
            "the router's LAN address with prefix, like \"172.16.0.1/16\"",
        )?;
        let address = self.cidr("lan.address", a)?;
        if address.prefix_len() > 30 {
            self.error(
                a.span(),
                format!(
                    "lan.address: /{} leaves no room for guests; use a prefix of /30 or shorter",
                    address.prefix_len()
                ),
            );
        } else if address.addr() == address.network() || address.addr() == address.broadcast() {
            self.error(
                a.span(),
                format!(
                    "lan.address: {} is the network or broadcast address of {}",
                    address.addr(),
                    address.trunc()
                ),
            );
        }
        if let Some(wan) = wan {
            let wan_prefixes = std::iter::once(wan.address)
                .chain(wan.more_addresses.iter().copied())
                .chain(wan.extra.iter().map(|e| e.address));
            if let Some(w) = wan_prefixes
                .map(|w| w.trunc())
                .find(|w| w.contains(&address.network()) || address.trunc().contains(&w.network()))
            {
                self.error(
                    a.span(),
                    format!("lan.address: {} overlaps the WAN prefix {w}", address.trunc()),
                );
            }
            let wan_nics = std::iter::once((&wan.nic, wan.mac)).chain(wan.extra.iter().map(|e| (&e.nic, e.mac)));
            for (wan_nic, wan_mac) in wan_nics {
                if let (Some(NicSelector::Name(l)), NicSelector::Name(w), Some(i)) = (&nic, wan_nic, &raw.interface) {
                    if l == w {
                        self.error(i.span(), format!("lan.interface: {l} is also the WAN interface"));
                    }
                }
                if let (Some(NicSelector::Mac(l)), Some(w), Some(m)) = (&nic, wan_mac, &raw.mac) {
                    if *l == w {
                        self.error(m.span(), format!("lan.mac: {l} is also the WAN MAC"));
                    }
                }
            }
        }
        let address6 = raw.address6.as_ref().and_then(|a| self.lan_address6(a, wan));
        let mut lan = Lan {
            name: name?,
            nic: nic?,
            vlan,
            address,
            reach,
            snat,
            dhcp: None,
            address6,
        };
        if raw.address6.is_some() && lan.address6.is_none() {
            return None;
        }
        if raw.vlan.is_some() && vlan.is_none() {
            return None;
        }
        lan.dhcp = match (&raw.dhcp, top_dhcp) {
            (Some(own), Some(top)) => {
                self.error(
                    own.span(),
                    "[lan.dhcp]: this LAN already has the [dhcp] section; give one of them".into(),
                );
                self.dhcp(top, "dhcp", &lan)
            }
            (Some(own), None) => self.dhcp(own, "lan.dhcp", &lan),
            (None, Some(top)) => self.dhcp(top, "dhcp", &lan),
            (None, None) => None,
        };
        // A broken DHCP section was reported: the config is refused all the same, and
        // the LAN still serves to check the forwards.
        Some(lan)
    }

    /// `lan.address6`: a /64 (SLAAC needs it), a global address, IPv6 on.
    fn lan_address6(&mut self, a: &S<String>, wan: Option<&Wan>) -> Option<Ipv6Net> {
        let net: Ipv6Net = self.parsed(
            "lan.address6",
            a,
            "an IPv6 address with its /64 like \"2001:db8:1:2::1/64\"",
        )?;
        let ip = net.addr();
        if net.prefix_len() != 64 {
            self.error(
                a.span(),
                format!(
                    "lan.address6: the LAN prefix must be a /64 (SLAAC needs it), found /{}",
                    net.prefix_len()
                ),
            );
            None
        } else if is_link_local(ip) || ip.is_multicast() || ip.is_unspecified() || ip.is_loopback() {
            self.error(a.span(), format!("lan.address6: {ip} is not a global address"));
            None
        } else if ip == net.network() {
            self.error(
                a.span(),
                format!(
                    "lan.address6: {ip} is the prefix itself; give the router an address in it, like {}1/64",
                    net.network()
                ),
            );
            None
        } else if wan.is_some_and(|w| w.v6.is_none()) {
            self.error(
                a.span(),
                "lan.address6: IPv6 needs wan.gateway6 (the hoster's IPv6 gateway, like \"fe80::1\")".into(),
            );
            None
        } else {
            Some(net)
        }
    }

    fn lan_name(&mut self, s: &S<String>) -> Option<String> {
        let name = s.get_ref();
        // It goes into metric labels, log lines and nft comments: keep it plain.
        let valid = (1..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if valid {
            Some(name.clone())
        } else {
            self.error(
                s.span(),
                format!(
                    "lan.name: {} is not a valid LAN name (1 to 32 of a-z, 0-9, '-', '_', starting with a letter)",
                    quote(name)
                ),
            );
            None
        }
    }

    /// A LAN host address: inside one LAN's prefix, not its network/broadcast address,
    /// not the router itself.
    fn lan_host(&mut self, key: &str, s: &S<String>, lans: &[Lan]) -> Option<Ipv4Addr> {
        let ip = self.ip(key, s)?;
        let Some(lan) = lans.iter().find(|l| l.contains(ip)) else {
            let message = match lans {
                [one] => format!("{key}: {ip} is outside the LAN {}", one.address.trunc()),
                _ => {
                    let all: Vec<String> = lans
                        .iter()
                        .map(|l| format!("{} {}", l.name, l.address.trunc()))
                        .collect();
                    format!("{key}: {ip} is in none of the LANs ({})", all.join(", "))
                }
            };
            self.error(s.span(), message);
            return None;
        };
        let net = lan.address.trunc();
        if ip == net.network() || ip == net.broadcast() {
            self.error(
                s.span(),
                format!("{key}: {ip} is the network or broadcast address of the LAN {net}"),
            );
            None
        } else if ip == lan.address.addr() {
            self.error(s.span(), format!("{key}: {ip} is the router's own LAN address"));
            None
        } else {
            Some(ip)
        }
    }

    /// `key`: how the section is named in messages (`dhcp` or `lan.dhcp`).
    fn dhcp(&mut self, table: &S<RawDhcp>, key: &str, lan: &Lan) -> Option<Dhcp> {
        let raw = table.get_ref();
        let range = self
            .required(
                &raw.range,
                table,
                "range",
                "the addresses to lease, like \"172.16.10.100-172.16.10.250\"",
            )
            .and_then(|r| self.dhcp_range(r, key, lan));
        let lease_time = match &raw.lease_time {
            None => Some(DEFAULT_LEASE_TIME),
            Some(v) => self.duration(&format!("{key}.lease_time"), v),
        };
        let dns = raw
            .dns
            .iter()
            .filter_map(|d| self.ip(&format!("{key}.dns"), d))
            .collect::<Vec<_>>();
        let domain = raw
            .domain
            .as_ref()
            .and_then(|d| self.hostname(&format!("{key}.domain"), d));
        let mut hosts: Vec<DhcpHost> = Vec::new();
        for h in &raw.host {
            let rh = h.get_ref();
            let mac = self
                .required(&rh.mac, h, "mac", "the guest's MAC, like \"52:54:00:12:34:56\"")
                .and_then(|m| self.mac(&format!("{key}.host.mac"), m));
            let address = self
                .required(
                    &rh.address,
                    h,
                    "address",
                    "the guest's fixed address, like \"172.16.10.205\"",
                )
                .and_then(|a| self.lan_host(&format!("{key}.host.address"), a, std::slice::from_ref(lan)));
            let hostname = rh
                .hostname
                .as_ref()
                .and_then(|n| self.hostname(&format!("{key}.host.hostname"), n));
            let (Some(mac), Some(address)) = (mac, address) else {
                continue;
            };
            if let Some(other) = hosts.iter().find(|o| o.mac == mac) {
                self.error(
                    h.span(),
                    format!("{key}.host: MAC {mac} already has a reservation ({})", other.address),
                );
            } else if let Some(other) = hosts.iter().find(|o| o.address == address) {
                self.error(
                    h.span(),
                    format!("{key}.host: {address} is already reserved for {}", other.mac),
                );
            } else {
                hosts.push(DhcpHost { mac, address, hostname });
            }
        }
        let (range_start, range_end) = range?;
        Some(Dhcp {
            range_start,
            range_end,
            lease_time: lease_time?,
            dns,
            domain,
            hosts,
        })
    }

    fn dhcp_range(&mut self, s: &S<String>, key: &str, lan: &Lan) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let Some((a, b)) = s.get_ref().split_once('-') else {
            self.error(
                s.span(),
                format!(
                    "{key}.range: expected \"first-last\" like \"172.16.10.100-172.16.10.250\", found {}",
                    quote(s.get_ref())
                ),
            );
            return None;
        };
        let (Ok(first), Ok(last)) = (a.trim().parse::<Ipv4Addr>(), b.trim().parse::<Ipv4Addr>()) else {
            self.error(
                s.span(),
                format!(
                    "{key}.range: expected two IPv4 addresses like \"172.16.10.100-172.16.10.250\", found {}",
                    quote(s.get_ref())
                ),
            );
            return None;
        };
        let net = lan.address.trunc();
        if first > last {
            self.error(s.span(), format!("{key}.range: {first} comes after {last}"));
            return None;
        }
        for ip in [first, last] {
            if !net.contains(&ip) || ip == net.network() || ip == net.broadcast() {
                self.error(
                    s.span(),
                    format!("{key}.range: {ip} is outside the usable addresses of the LAN {net}"),
                );
                return None;
            }
        }
        let router = lan.address.addr();
        if first <= router && router <= last {
            self.error(
                s.span(),
                format!("{key}.range: contains the router's own address {router}"),
            );
            return None;
        }
        Some((first, last))
    }

    /// `"12h"`, `"30m"`, `"90s"`, `"1d"`, or an integer number of seconds.
    fn duration(&mut self, key: &str, v: &S<toml::Value>) -> Option<Duration> {
        let secs = match v.get_ref() {
            toml::Value::Integer(n) => u64::try_from(*n).ok(),
            toml::Value::String(s) => {
                let s = s.trim();
                let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
                let factor = match unit {
                    "" | "s" => Some(1),
                    "m" => Some(60),
                    "h" => Some(3600),
                    "d" => Some(86400),
                    _ => None,
                };
                number
                    .parse::<u64>()
                    .ok()
                    .zip(factor)
                    .and_then(|(n, f)| n.checked_mul(f))
            }
            _ => None,
        };
        match secs {
            Some(secs) if (60..=u64::from(u32::MAX)).contains(&secs) => Some(Duration::from_secs(secs)),
            Some(_) => {
                self.error(v.span(), format!("{key}: must be between 1 minute and 136 years"));
                None
            }
            None => {
                self.error(
                    v.span(),
                    format!("{key}: expected a duration like \"12h\", \"30m\", \"1d\" or a number of seconds"),
                );
                None
            }
        }
    }

    /// `tcp` (also when absent), `udp` or `both`.
    fn protocol(&mut self, key: &str, v: Option<&S<String>>) -> Option<Protocol> {
        match v.map(|p| (p, p.get_ref().as_str())) {
            None | Some((_, "tcp")) => Some(Protocol::Tcp),
            Some((_, "udp")) => Some(Protocol::Udp),
            Some((_, "both")) => Some(Protocol::Both),
            Some((p, other)) => {
                self.error(
                    p.span(),
                    format!("{key}: expected \"tcp\", \"udp\" or \"both\", found {}", quote(other)),
                );
                None
            }
        }
    }

    fn port_range(&mut self, key: &str, v: &S<toml::Value>) -> Option<PortRange> {
        let port = |n: i64| u16::try_from(n).ok().filter(|p| *p != 0);
        let parsed = match v.get_ref() {
            toml::Value::Integer(n) => port(*n).map(|p| PortRange { first: p, last: p }),
            toml::Value::String(s) => match s.split_once('-') {
                Some((a, b)) => a
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .and_then(port)
                    .zip(b.trim().parse::<i64>().ok().and_then(port))
                    .map(|(first, last)| PortRange { first, last }),
                None => s
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .and_then(port)
                    .map(|p| PortRange { first: p, last: p }),
            },
            _ => None,
        };
        match parsed {
            Some(r) if r.first <= r.last => Some(r),
            Some(r) => {
                self.error(v.span(), format!("{key}: range {}-{} is reversed", r.first, r.last));
                None
            }
            None => {
                self.error(
                    v.span(),
                    format!(
                        "{key}: expected a port 1-65535 or a range like \"8000-8010\", found {}",
                        shown(v.get_ref())
                    ),
                );
                None
            }
        }
    }

    fn forwards(
        &mut self,
        raws: &[S<RawForward>],
        lans: &[Lan],
        wan: Option<&Wan>,
        one_to_one: &[OneToOne],
    ) -> Vec<Forward> {
        let mut forwards: Vec<Forward> = Vec::new();
        // Where each accepted forward's `proxy_protocol = true` is, checked at the end.
        let mut proxy_protocol_spans: Vec<(usize, Range<usize>)> = Vec::new();
        for table in raws {
            let raw = table.get_ref();
            let host = match &raw.host {
                None => Some(None),
                Some(h) => match HostPattern::parse(h.get_ref()) {
                    Ok(pattern) => Some(Some(pattern)),
                    Err(problem) => {
                        self.error(h.span(), format!("forward.host: {problem}"));
                        None
                    }
                },
            };
            let public = match &raw.public {
                // Without a valid [wan] the config is refused anyway; the forward's
                // other keys are still checked.
                None => Some(wan.map_or(Ipv4Addr::UNSPECIFIED, |w| w.address.addr())),
                Some(p) => self.public_address("forward.public", p, wan),
            };
            let protocol = self.protocol("forward.protocol", raw.protocol.as_ref());
            let ports = self
                .required(
                    &raw.port,
                    table,
                    "port",
                    "the public port like 80, or a range like \"8000-8010\"",
                )
                .and_then(|p| self.port_range("forward.port", p));
            let to = self
                .required(&raw.to, table, "to", "the LAN host, like \"172.16.10.205\"")
                .and_then(|t| self.lan_host("forward.to", t, lans));
            let to_ports = match (&raw.to_port, ports) {
                (None, ports) => ports,
                (Some(tp), Some(ports)) => {
                    let to_ports = self.port_range("forward.to_port", tp);
                    match to_ports {
                        Some(t) if t.is_single() && !ports.is_single() => {
                            // "to_port = 9000" for "8000-8010": a shifted range of the same length.
                            let last = u32::from(t.first) + ports.len() - 1;
                            match u16::try_from(last) {
                                Ok(last) => Some(PortRange { first: t.first, last }),
                                Err(_) => {
                                    self.error(
                                        tp.span(),
                                        format!("forward.to_port: {} + {} ports runs past 65535", t.first, ports.len()),
                                    );
                                    None
                                }
                            }
                        }
                        Some(t) if t.len() != ports.len() => {
                            self.error(
                                tp.span(),
                                format!(
                                    "forward.to_port: {t} has {} ports but port {ports} has {}; ranges map one to one",
                                    t.len(),
                                    ports.len()
                                ),
                            );
                            None
                        }
                        other => other,
                    }
                }
                (Some(tp), None) => {
                    // Still worth checking on its own, so both mistakes show at once.
                    self.port_range("forward.to_port", tp);
                    None
                }
            };
            let (Some(public), Some(protocol), Some(ports), Some(to), Some(to_ports), Some(host)) =
                (public, protocol, ports, to, to_ports, host)
            else {
                continue;
            };
            if let (Some(h), Some(span)) = (&host, raw.host.as_ref().map(|h| h.span())) {
                if protocol != Protocol::Tcp {
                    let p = protocol.transports().join(" and ");
                    self.error(span, format!("forward.host: names come from TLS or HTTP, over TCP; this forward is {p}: give it protocol = \"tcp\" (and {h} a forward of its own)"));
                    continue;
                }
                if !ports.is_single() {
                    self.error(
                        span,
                        format!("forward.host: a forward by name takes one port, not the range {ports}"),
                    );
                    continue;
                }
            }
            let opened = one_to_one.iter().filter(|m| m.public == public).find_map(|m| {
                let transport = protocol
                    .transports()
                    .iter()
                    .find(|t| m.open.iter().any(|o| o.opens(t, ports)))?;
                let item = m.open.iter().find(|o| o.opens(transport, ports))?;
                Some((m, transport, item))
            });
            if let Some((m, transport, item)) = opened {
                self.error(table.span(), format!("forward: {transport} port {ports} of {public} is already open to {} by its one_to_one ({:?}); forward another port or another address", m.private, item.to_string()));
                continue;
            }
            let clash = forwards
                .iter()
                .filter(|f| f.public == public && f.ports.overlaps(ports))
                .find_map(|f| {
                    let shared = f
                        .protocol
                        .transports()
                        .iter()
                        .find(|t| protocol.transports().contains(t))?;
                    // Forwards by name share their port with each other and one default.
                    let by_name = f.host.is_some() || host.is_some();
                    let same_port = f.ports.is_single() && ports.is_single();
                    (!by_name || !same_port || f.host == host).then_some((f, shared))
                });
            if let Some((f, transport)) = clash {
                let message = match (&f.host, &host) {
                    (Some(a), Some(b)) if a == b => format!("forward.host: {b} is already forwarded on {transport} port {ports} of {public} (to {}); each name once per port", f.to),
                    (Some(h), _) => format!("forward: {transport} port {ports} holds the port {} that is forwarded by name ({h} to {}); a port routed by name cannot be in a range", f.ports, f.to),
                    (_, Some(h)) => format!("forward: {transport} port {ports} (by name, {h}) lies in the range {} already forwarded to {}; a port routed by name cannot be in a range", f.ports, f.to),
                    (None, None) if forwards.iter().any(|g| g.host.is_some() && g.public == public && g.ports == ports) => format!("forward: a second default (no `host`) for {transport} port {ports} of {public}, already forwarded to {}; a port routed by name takes one forward without `host`", f.to),
                    (None, None) => format!("forward: {transport} port {ports} overlaps {transport} port {}, already forwarded to {}; each public port can be forwarded only once per protocol", f.ports, f.to),
                };
                let span = match (&raw.host, f.host == host) {
                    (Some(h), true) => h.span(),
                    _ => table.span(),
                };
                self.error(span, message);
                continue;
            }
            if let Some(pp) = raw.proxy_protocol.as_ref().filter(|pp| *pp.get_ref()) {
                proxy_protocol_spans.push((forwards.len(), pp.span()));
            }
            forwards.push(Forward {
                public,
                protocol,
                ports,
                to,
                to_ports,
                proxy_protocol: raw.proxy_protocol.as_ref().is_some_and(|pp| *pp.get_ref()),
                host,
            });
        }
        // Only what the proxy relays can carry the header: a forward by name, or the
        // default of a port that has some.
        let named: Vec<(Ipv4Addr, u16)> = forwards
            .iter()
            .filter(|f| f.host.is_some())
            .map(|f| (f.public, f.ports.first))
            .collect();
        for (i, span) in proxy_protocol_spans {
            let f = &forwards[i];
            let relayed =
                f.ports.is_single() && f.protocol != Protocol::Udp && named.contains(&(f.public, f.ports.first));
            if !relayed {
                self.error(span, format!("forward.proxy_protocol: only forwards that routerd relays (by `host`) carry the header; {} port {} of {} has no forward by name", f.protocol.transports().join(" and "), f.ports, f.public));
            }
        }
        forwards
    }
}
