//! The network plan: what the links, addresses, routes and sysctls must look like, as a
//! pure function of the config. `net::apply` makes the kernel match it.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use config::{Config, MacAddr, NicSelector};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Wan,
    Lan,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Wan => "wan",
            Role::Lan => "lan",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPlan {
    pub role: Role,
    /// `wan`, or the LAN's name.
    pub name: String,
    /// The NIC; with `vlan`, the trunk NIC under the VLAN interface.
    pub select: NicSelector,
    /// An 802.1Q VLAN on the NIC: the link is then `<nic>.<vlan>`, made by routerd.
    pub vlan: Option<u16>,
    /// The MAC to set on the NIC when it differs (the hoster's virtual MAC).
    pub mac: Option<MacAddr>,
    /// The only IPv4 address the NIC keeps.
    pub address: Ipv4Net,
}

impl LinkPlan {
    /// How messages name the link: `wan`, `lan` (the single-LAN form), `lan "prod"`.
    pub fn what(&self) -> String {
        if self.role == Role::Wan || self.name == config::DEFAULT_LAN_NAME {
            self.role.to_string()
        } else {
            format!("{} {:?}", self.role, self.name)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePlan {
    /// A link-scope host route, so an off-prefix gateway is reachable by ARP.
    OnLinkHost { role: Role, dst: Ipv4Addr },
    Default {
        role: Role,
        gateway: Ipv4Addr,
        on_link: bool,
    },
}

/// A permanent neighbour entry: the MAC of `ip` on the NIC, which no ARP reply changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourPlan {
    pub role: Role,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// `None`: a global key; `Some(role)`: the key of that NIC (`net.ipv4.conf.<nic>.*`).
    pub nic: Option<Role>,
    pub key: &'static str,
    pub value: &'static str,
}

impl Sysctl {
    /// The paths under `/proc/sys`: the global key, or the key of each link of the
    /// role (`Role::Lan`: every LAN's link), by their resolved names.
    pub fn paths(&self, wan: &str, lans: &[&str]) -> Vec<String> {
        let nics = match self.nic {
            Some(Role::Wan) => std::slice::from_ref(&wan),
            Some(Role::Lan) => lans,
            None => return vec![format!("/proc/sys/{}", self.key.replace('.', "/"))],
        };
        nics.iter()
            .map(|nic| format!("/proc/sys/net/ipv4/conf/{nic}/{}", self.key))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPlan {
    pub wan: LinkPlan,
    /// In the order of `config.lans`.
    pub lans: Vec<LinkPlan>,
    pub routes: Vec<RoutePlan>,
    /// routerd's permanent neighbour entries (none: any left from an earlier config go).
    pub neighbours: Vec<NeighbourPlan>,
    pub sysctls: Vec<Sysctl>,
}

pub fn plan(config: &Config) -> NetPlan {
    let wan = LinkPlan {
        role: Role::Wan,
        name: "wan".into(),
        select: config.wan.nic.clone(),
        vlan: None,
        mac: config.wan.mac,
        address: config.wan.address,
    };
    let lans = config
        .lans
        .iter()
        .map(|lan| LinkPlan {
            role: Role::Lan,
            name: lan.name.clone(),
            select: lan.nic.clone(),
            vlan: lan.vlan,
            mac: None,
            address: lan.address,
        })
        .collect();
    let gateway = config.wan.gateway;
    let on_link = config.wan.gateway_on_link();
    let mut routes = Vec::new();
    if on_link {
        routes.push(RoutePlan::OnLinkHost {
            role: Role::Wan,
            dst: gateway,
        });
    }
    routes.push(RoutePlan::Default {
        role: Role::Wan,
        gateway,
        on_link,
    });
    let neighbours = config
        .wan
        .gateway_mac
        .map(|mac| NeighbourPlan {
            role: Role::Wan,
            ip: gateway,
            mac,
        })
        .into_iter()
        .collect();

    let global = |key, value| Sysctl { nic: None, key, value };
    let per_nic = |nic, key, value| Sysctl {
        nic: Some(nic),
        key,
        value,
    };
    let sysctls = vec![
        global("net.ipv4.ip_forward", "1"),
        // Strict reverse-path filtering: "all" raises every NIC to at least this.
        global("net.ipv4.conf.all.rp_filter", "1"),
        global("net.ipv4.conf.default.rp_filter", "1"),
        // Hairpinned forwards go out the NIC they came in on: that is no reason to
        // tell guests to bypass the router. Redirects are on if "all" or the NIC says so.
        global("net.ipv4.conf.all.send_redirects", "0"),
        per_nic(Role::Wan, "send_redirects", "0"),
        per_nic(Role::Lan, "send_redirects", "0"),
        global("net.ipv4.conf.all.accept_redirects", "0"),
        per_nic(Role::Wan, "accept_redirects", "0"),
        // Removing a stale primary address keeps the secondaries of its subnet.
        global("net.ipv4.conf.all.promote_secondaries", "1"),
    ];
    NetPlan {
        wan,
        lans,
        routes,
        neighbours,
        sysctls,
    }
}

impl fmt::Display for NetPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for link in std::iter::once(&self.wan).chain(&self.lans) {
            write!(f, "link {}: ", link.what())?;
            match link.vlan {
                Some(id) => write!(f, "VLAN {id} (interface <nic>.{id}) on {}", link.select)?,
                None => write!(f, "{}", link.select)?,
            }
            if let Some(mac) = link.mac {
                write!(f, ", MAC set to {mac}")?;
            }
            writeln!(f, ", address {}, up", link.address)?;
        }
        for route in &self.routes {
            match route {
                RoutePlan::OnLinkHost { role, dst } => writeln!(f, "route {dst}/32 dev {role} scope link")?,
                RoutePlan::Default { role, gateway, on_link } => writeln!(
                    f,
                    "route default via {gateway} dev {role}{}",
                    if *on_link { " onlink" } else { "" }
                )?,
            }
        }
        for n in &self.neighbours {
            writeln!(f, "neighbour {} lladdr {} dev {} permanent", n.ip, n.mac, n.role)?;
        }
        for s in &self.sysctls {
            match s.nic {
                Some(role) => writeln!(f, "sysctl net.ipv4.conf.<{role}>.{} = {}", s.key, s.value)?,
                None => writeln!(f, "sysctl {} = {}", s.key, s.value)?,
            }
        }
        Ok(())
    }
}
