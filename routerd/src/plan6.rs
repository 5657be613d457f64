//! The IPv6 part of the network plan: addresses, the WAN's routes and the v6 sysctls,
//! as a pure function of the config. With IPv6 off (no `wan.gateway6`) it only turns
//! forwarding and the NDP proxy off and removes the global addresses routerd gave.

use std::fmt;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use config::Config;

/// Which links a v6 sysctl is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `net.ipv6.conf.all.*`
    All,
    Wan,
    /// Every LAN's link.
    Lans,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl6 {
    pub side: Side,
    pub key: &'static str,
    pub value: &'static str,
}

impl Sysctl6 {
    /// The paths under /proc/sys for the resolved link names.
    pub fn paths(&self, wan: &str, lans: &[&str]) -> Vec<String> {
        let nics: Vec<&str> = match self.side {
            Side::All => vec!["all"],
            Side::Wan => vec![wan],
            Side::Lans => lans.to_vec(),
        };
        nics.iter()
            .map(|nic| format!("/proc/sys/net/ipv6/conf/{nic}/{}", self.key))
            .collect()
    }
}

/// A route on the main WAN NIC (protocol static, main table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route6 {
    pub dst: Ipv6Net,
    pub gateway: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan6 {
    pub enabled: bool,
    /// The main WAN NIC's global addresses (none: link-local only).
    pub wan_addresses: Vec<Ipv6Net>,
    /// Per LAN, in the order of `config.lans`: its global address, if any.
    pub lan_addresses: Vec<Option<Ipv6Net>>,
    pub routes: Vec<Route6>,
    pub sysctls: Vec<Sysctl6>,
    /// Proxy neighbour entries for the LAN hosts on the WAN (see `ndp_proxy`).
    pub ndp_proxy: bool,
}

pub fn plan(config: &Config) -> Plan6 {
    let sysctl = |side, key, value| Sysctl6 { side, key, value };
    let Some(v6) = &config.wan.v6 else {
        return Plan6 {
            enabled: false,
            wan_addresses: Vec::new(),
            lan_addresses: vec![None; config.lans.len()],
            routes: Vec::new(),
            sysctls: vec![
                sysctl(Side::All, "forwarding", "0"),
                sysctl(Side::All, "proxy_ndp", "0"),
                sysctl(Side::Wan, "proxy_ndp", "0"),
            ],
            ndp_proxy: false,
        };
    };
    let mut routes = Vec::new();
    if !v6.gateway_link_local() {
        // An off-prefix gateway is on the WAN segment all the same (OVH's
        // ...:ff:ff:ff:ff:ff): a host route makes it resolvable by NDP.
        routes.push(Route6 {
            dst: Ipv6Net::new(v6.gateway, 128).unwrap_or_default(),
            gateway: None,
        });
    }
    routes.push(Route6 {
        dst: Ipv6Net::default(),
        gateway: Some(v6.gateway),
    });
    let proxy = if v6.ndp_proxy { "1" } else { "0" };
    let sysctls = vec![
        sysctl(Side::All, "forwarding", "1"),
        // A router takes no RAs and makes no SLAAC addresses: the WAN's gateway and
        // address are configured; on the LAN it is the one advertising. (A hoster that
        // gives the gateway only by RA, Scaleway's, would need accept_ra = 2 on the WAN.)
        sysctl(Side::Wan, "accept_ra", "0"),
        sysctl(Side::Wan, "autoconf", "0"),
        sysctl(Side::Wan, "accept_redirects", "0"),
        sysctl(Side::Wan, "proxy_ndp", proxy),
        // "all" too: only then does forwarding hand the hoster's unicast solicitations
        // (its reachability checks) for a proxied address to neighbour discovery,
        // rather than pass them on to the LAN, where no host answers them.
        sysctl(Side::All, "proxy_ndp", proxy),
        sysctl(Side::Lans, "accept_ra", "0"),
        sysctl(Side::Lans, "autoconf", "0"),
    ];
    Plan6 {
        enabled: true,
        wan_addresses: v6.address.into_iter().collect(),
        lan_addresses: config.lans.iter().map(|l| l.address6).collect(),
        routes,
        sysctls,
        ndp_proxy: v6.ndp_proxy,
    }
}

impl fmt::Display for Plan6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.enabled {
            // IPv6 off reads as the plan always did.
            return Ok(());
        }
        for a in &self.wan_addresses {
            writeln!(f, "ipv6 address {a} dev wan nodad")?;
        }
        for (i, a) in self.lan_addresses.iter().enumerate() {
            if let Some(a) = a {
                writeln!(
                    f,
                    "ipv6 address {a} dev lan[{i}], router advertisements of {}",
                    a.trunc()
                )?;
            }
        }
        for r in &self.routes {
            match r.gateway {
                Some(gw) => writeln!(f, "ipv6 route {} via {gw} dev wan", r.dst)?,
                None => writeln!(f, "ipv6 route {} dev wan", r.dst)?,
            }
        }
        for s in &self.sysctls {
            let nic = match s.side {
                Side::All => "all",
                Side::Wan => "<wan>",
                Side::Lans => "<lan>",
            };
            writeln!(f, "sysctl net.ipv6.conf.{nic}.{} = {}", s.key, s.value)?;
        }
        if self.ndp_proxy {
            writeln!(f, "ndp proxy: the LAN hosts' addresses answered on the WAN")?;
        }
        Ok(())
    }
}
