//! The network plan: what the links, addresses, routes and sysctls must look like, as a
//! pure function of the config. `net::apply` makes the kernel match it.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use config::{Config, MacAddr, NicSelector};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Wan,
    /// The NIC of `wan.extra[i]` (a failover IP with a virtual MAC of its own).
    ExtraWan(usize),
    Lan,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Wan => f.write_str("wan"),
            Role::ExtraWan(i) => write!(f, "wan.extra[{i}]"),
            Role::Lan => f.write_str("lan"),
        }
    }
}

/// The kernel's main routing table.
pub const MAIN_TABLE: u32 = 254;

/// The routing table of `wan.extra[i]`: its gateway and default route. routerd owns
/// the tables from 1001 up to [`LAST_OWNED_TABLE`] (stale ones are emptied).
pub fn extra_table(i: usize) -> u32 {
    1001 + u32::try_from(i).unwrap_or(998).min(998)
}
pub const LAST_OWNED_TABLE: u32 = 1999;

/// The packet mark of a WAN NIC: connections that came in on it carry it as their
/// conntrack mark, and their replies (and a 1:1 host's packets) as their packet mark,
/// so that policy routing sends them back out the same NIC. The main WAN's mark has
/// no rule (it uses the main table); an extra's selects its table.
pub fn wan_mark(role: Role) -> u32 {
    match role {
        Role::ExtraWan(i) => extra_table(i),
        _ => 1000,
    }
}

/// routerd's `ip rule` priorities (every rule at these belongs to routerd): LAN
/// destinations first (the main table), then by source address, then by mark.
pub const RULE_PRIORITY_TO_LAN: u32 = 1000;
pub const RULE_PRIORITY_FROM: u32 = 1001;
pub const RULE_PRIORITY_MARK: u32 = 1002;
/// Replies of LAN hosts to the proxy's connections from a client's address (see
/// `proxy`): the firewall marks them with [`PROXY_MARK`], and this rule sends them to
/// [`PROXY_TABLE`], which delivers everything to the router itself.
pub const RULE_PRIORITY_PROXY: u32 = 1003;
pub const PROXY_TABLE: u32 = LAST_OWNED_TABLE;
pub const PROXY_MARK: u32 = PROXY_TABLE;

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
    /// The only IPv4 addresses the NIC keeps, the primary first.
    pub addresses: Vec<Ipv4Net>,
}

impl LinkPlan {
    /// How messages name the link: `wan`, `lan` (the single-LAN form), `lan "prod"`.
    pub fn what(&self) -> String {
        if self.role != Role::Lan || self.name == config::DEFAULT_LAN_NAME {
            self.role.to_string()
        } else {
            format!("{} {:?}", self.role, self.name)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePlan {
    /// A link-scope host route, so an off-prefix gateway is reachable by ARP.
    OnLinkHost { role: Role, dst: Ipv4Addr, table: u32 },
    Default {
        role: Role,
        gateway: Ipv4Addr,
        on_link: bool,
        table: u32,
    },
    /// `local default dev lo`: every destination is the router's own.
    LocalDefault { table: u32 },
}

/// An `ip rule`: packets it selects look up `table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RulePlan {
    pub priority: u32,
    pub selector: RuleSelector,
    pub table: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSelector {
    To(Ipv4Net),
    From(Ipv4Addr),
    FwMark(u32),
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
    pub fn paths(&self, wan: &str, extra_wans: &[&str], lans: &[&str]) -> Vec<String> {
        let nics = match self.nic {
            Some(Role::Wan) => std::slice::from_ref(&wan),
            Some(Role::ExtraWan(i)) => extra_wans.get(i..=i).unwrap_or_default(),
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
    /// One per `wan.extra`, in order (role `ExtraWan(i)`).
    pub extra_wans: Vec<LinkPlan>,
    /// In the order of `config.lans`.
    pub lans: Vec<LinkPlan>,
    pub routes: Vec<RoutePlan>,
    /// Policy routing for the extra WAN NICs (none without extras).
    pub rules: Vec<RulePlan>,
    /// routerd's permanent neighbour entries (none: any left from an earlier config go).
    pub neighbours: Vec<NeighbourPlan>,
    pub sysctls: Vec<Sysctl>,
    /// IPv6: addresses, the WAN's v6 routes and sysctls (off: v6 is dropped).
    pub v6: crate::plan6::Plan6,
}

pub fn plan(config: &Config) -> NetPlan {
    let wan = LinkPlan {
        role: Role::Wan,
        name: "wan".into(),
        select: config.wan.nic.clone(),
        vlan: None,
        mac: config.wan.mac,
        addresses: std::iter::once(config.wan.address)
            .chain(config.wan.more_addresses.iter().copied())
            .collect(),
    };
    let extra_wans: Vec<LinkPlan> = config
        .wan
        .extra
        .iter()
        .enumerate()
        .map(|(i, e)| LinkPlan {
            role: Role::ExtraWan(i),
            name: format!("wan.extra[{i}]"),
            select: e.nic.clone(),
            vlan: None,
            mac: e.mac,
            addresses: vec![e.address],
        })
        .collect();
    let lans = config
        .lans
        .iter()
        .map(|lan| LinkPlan {
            role: Role::Lan,
            name: lan.name.clone(),
            select: lan.nic.clone(),
            vlan: lan.vlan,
            mac: None,
            addresses: vec![lan.address],
        })
        .collect();
    let mut routes = Vec::new();
    let mut gateway_routes = |role, gateway, on_link, table| {
        if on_link {
            routes.push(RoutePlan::OnLinkHost {
                role,
                dst: gateway,
                table,
            });
        }
        routes.push(RoutePlan::Default {
            role,
            gateway,
            on_link,
            table,
        });
    };
    let gateway = config.wan.gateway;
    gateway_routes(Role::Wan, gateway, config.wan.gateway_on_link(), MAIN_TABLE);
    // Each extra NIC has a table of its own with its gateway: what leaves by it (see
    // `rules`) goes to the hoster with that NIC's MAC, as the hoster's switch demands.
    for (i, e) in config.wan.extra.iter().enumerate() {
        gateway_routes(Role::ExtraWan(i), e.gateway, e.gateway_on_link(), extra_table(i));
    }
    let mut rules = Vec::new();
    if !config.wan.extra.is_empty() {
        // LAN destinations always by the main table: replies to a hairpinned
        // connection carry an extra NIC's mark too.
        for lan in &config.lans {
            rules.push(RulePlan {
                priority: RULE_PRIORITY_TO_LAN,
                selector: RuleSelector::To(lan.address.trunc()),
                table: MAIN_TABLE,
            });
        }
        for (i, e) in config.wan.extra.iter().enumerate() {
            // The router's own packets from the extra address (its ping replies).
            rules.push(RulePlan {
                priority: RULE_PRIORITY_FROM,
                selector: RuleSelector::From(e.address.addr()),
                table: extra_table(i),
            });
            // Forwarded packets: routing sees them before SNAT gives them the extra
            // address, so the firewall marks them (1:1 hosts, replies of connections
            // that came in on the NIC).
            rules.push(RulePlan {
                priority: RULE_PRIORITY_MARK,
                selector: RuleSelector::FwMark(wan_mark(Role::ExtraWan(i))),
                table: extra_table(i),
            });
        }
    }
    if !config.named_ports().is_empty() {
        routes.push(RoutePlan::LocalDefault { table: PROXY_TABLE });
        rules.push(RulePlan {
            priority: RULE_PRIORITY_PROXY,
            selector: RuleSelector::FwMark(PROXY_MARK),
            table: PROXY_TABLE,
        });
    }
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
    let mut sysctls = vec![
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
    if !config.named_ports().is_empty() {
        // TCP early demux would attach a forwarded reply to the proxy's socket of the
        // same addresses (one in TIME_WAIT, say), and the kernel drops a forwarded
        // packet that has a socket: a DNAT forward to a service the proxy also
        // reaches, from the same client and port, would hang. Routing workloads
        // gain from it off anyway (a socket lookup less per forwarded packet).
        sysctls.push(global("net.ipv4.tcp_early_demux", "0"));
    }
    for link in std::iter::once(&wan).chain(&extra_wans) {
        if let Role::ExtraWan(_) = link.role {
            sysctls.extend([
                per_nic(link.role, "send_redirects", "0"),
                per_nic(link.role, "accept_redirects", "0"),
                // Loose reverse-path filtering: the main table's default route points
                // at the main WAN NIC, so a strict check would drop every connection
                // that comes in on an extra NIC (the kernel takes the larger of "all"
                // and the NIC's value). Spoofed LAN sources are still dropped by the
                // firewall.
                per_nic(link.role, "rp_filter", "2"),
            ]);
        }
        // Each address is answered by ARP only on its own NIC, and ARP requests name
        // the NIC's own address: hosters check that an address comes with its MAC.
        sysctls.extend([
            per_nic(link.role, "arp_ignore", "1"),
            per_nic(link.role, "arp_announce", "2"),
        ]);
    }
    NetPlan {
        wan,
        extra_wans,
        lans,
        routes,
        rules,
        neighbours,
        sysctls,
        v6: crate::plan6::plan(config),
    }
}

impl fmt::Display for NetPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for link in std::iter::once(&self.wan).chain(&self.extra_wans).chain(&self.lans) {
            write!(f, "link {}: ", link.what())?;
            match link.vlan {
                Some(id) => write!(f, "VLAN {id} (interface <nic>.{id}) on {}", link.select)?,
                None => write!(f, "{}", link.select)?,
            }
            if let Some(mac) = link.mac {
                write!(f, ", MAC set to {mac}")?;
            }
            let addresses = link.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>();
            let noun = if addresses.len() == 1 { "address" } else { "addresses" };
            writeln!(f, ", {noun} {}, up", addresses.join(" "))?;
        }
        let in_table = |table: u32| {
            if table == MAIN_TABLE {
                String::new()
            } else {
                format!(" table {table}")
            }
        };
        for route in &self.routes {
            match route {
                RoutePlan::OnLinkHost { role, dst, table } => {
                    writeln!(f, "route {dst}/32 dev {role} scope link{}", in_table(*table))?
                }
                RoutePlan::Default {
                    role,
                    gateway,
                    on_link,
                    table,
                } => writeln!(
                    f,
                    "route default via {gateway} dev {role}{}{}",
                    if *on_link { " onlink" } else { "" },
                    in_table(*table)
                )?,
                RoutePlan::LocalDefault { table } => writeln!(f, "route local default dev lo{}", in_table(*table))?,
            }
        }
        for r in &self.rules {
            let selector = match r.selector {
                RuleSelector::To(net) => format!("to {net}"),
                RuleSelector::From(ip) => format!("from {ip}"),
                RuleSelector::FwMark(mark) => format!("fwmark {mark}"),
            };
            let table = if r.table == MAIN_TABLE {
                "main".to_string()
            } else {
                r.table.to_string()
            };
            writeln!(f, "rule {}: {selector} lookup {table}", r.priority)?;
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
        write!(f, "{}", self.v6)
    }
}
