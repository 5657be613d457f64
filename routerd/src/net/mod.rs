//! Applies a [`NetPlan`] to the kernel over netlink: links, addresses, pinned
//! neighbours, routes, sysctls.
//! Every step compares with what is there first, so applying twice changes nothing.

mod addrs;
pub mod arp;
pub mod lan_arp;
mod links;
pub mod neighbours;
pub mod packet;
mod routes;
mod rules;
mod sysctl;
pub mod v6;

use std::net::Ipv4Addr;

use rtnetlink::Handle;

pub use links::Nic;

const LOOPBACK_INDEX: u32 = 1;

use crate::plan::{NetPlan, Role, RoutePlan};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("no single {what} NIC: looked for {wanted}, found {matches} matching; NICs present: {present}")]
    NicNotFound {
        /// `wan`, `lan`, or `lan "prod"`.
        what: String,
        wanted: String,
        matches: usize,
        present: String,
    },
    // The causes are `source`s, printed by `{e:#}`, not repeated in the message.
    #[error("netlink: {what}")]
    Netlink { what: String, source: rtnetlink::Error },
    #[error("sysctl {path}")]
    Sysctl { path: String, source: std::io::Error },
    #[error("the LANs {first} and {second} both found the NIC {nic}; LANs sharing a NIC need a `vlan` each (one may stay untagged)")]
    SharedNic { first: String, second: String, nic: String },
    #[error("the LAN {lan} found the WAN NIC {nic}")]
    LanOnWan { lan: String, nic: String },
    #[error("the VLAN interface {name} cannot be made (a name of at most 15 characters)")]
    VlanName { name: String },
    #[error("cannot open a netlink socket")]
    Connect(#[source] std::io::Error),
}

impl NetError {
    fn netlink(what: &str, source: rtnetlink::Error) -> NetError {
        NetError::Netlink {
            what: what.to_string(),
            source,
        }
    }
}

/// The links a plan was applied to.
#[derive(Debug, Clone)]
pub struct Applied {
    pub wan: Nic,
    /// The NICs of `wan.extra`, in order.
    pub extra_wans: Vec<Nic>,
    /// Each LAN's link (its NIC, or its VLAN interface), in the order of `plan.lans`.
    pub lans: Vec<Nic>,
}

/// Removes every IPv4 address of `nic`: a NIC that was a LAN's and is no more (its
/// prefix must not stay routed there).
pub async fn release(handle: &Handle, nic: &Nic) -> Result<(), NetError> {
    addrs::ensure(handle, nic, &[]).await
}

/// Makes `want` the IPv4 addresses of `nic` (a link outside the plan: the WireGuard
/// tunnel's), like the apply does for its links.
pub async fn set_addresses(handle: &Handle, nic: &Nic, want: &[ipnet::Ipv4Net]) -> Result<(), NetError> {
    addrs::ensure(handle, nic, want).await
}

/// Opens a netlink connection served by the current tokio runtime.
pub fn connect() -> Result<Handle, NetError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(NetError::Connect)?;
    tokio::spawn(connection);
    Ok(handle)
}

pub async fn apply(handle: &Handle, plan: &NetPlan) -> Result<Applied, NetError> {
    let links = links::list(handle).await?;
    let wan = links::select(&links, &plan.wan, &[])?.clone();
    let mut taken = vec![wan.index];
    let mut extra_wans: Vec<Nic> = Vec::new();
    for link in &plan.extra_wans {
        let nic = links::select(&links, link, &taken)?.clone();
        if taken.contains(&nic.index) {
            return Err(NetError::NicNotFound {
                what: link.what(),
                wanted: format!("{} (other than the WAN NICs)", link.select),
                matches: 0,
                present: nic.name,
            });
        }
        taken.push(nic.index);
        extra_wans.push(nic);
    }
    // LANs naming their NIC first: "the one NIC left" is what they leave (one NIC,
    // shared by every LAN that names none: an untagged LAN and VLANs on it).
    let mut nics: Vec<Option<Nic>> = vec![None; plan.lans.len()];
    let mut one_left: Option<Nic> = None;
    for pass_named in [true, false] {
        for (i, lan) in plan.lans.iter().enumerate() {
            if (lan.select != config::NicSelector::NotWan) != pass_named {
                continue;
            }
            let nic = match &one_left {
                Some(nic) if !pass_named => nic.clone(),
                _ => links::select(&links, lan, &taken)?.clone(),
            };
            if nic.index == wan.index || extra_wans.iter().any(|e| e.index == nic.index) {
                return Err(NetError::LanOnWan {
                    lan: lan.name.clone(),
                    nic: nic.name,
                });
            }
            if pass_named {
                taken.push(nic.index);
            } else {
                one_left = Some(nic.clone());
            }
            nics[i] = Some(nic);
        }
    }
    let nics: Vec<Nic> = nics.into_iter().flatten().collect();
    for (j, b) in plan.lans.iter().enumerate() {
        for (i, a) in plan.lans[..j].iter().enumerate() {
            if nics[i].index == nics[j].index && (a.vlan == b.vlan) {
                return Err(NetError::SharedNic {
                    first: a.name.clone(),
                    second: b.name.clone(),
                    nic: nics[j].name.clone(),
                });
            }
        }
    }
    links::configure(handle, &wan, &plan.wan).await?;
    for (nic, link) in extra_wans.iter().zip(&plan.extra_wans) {
        links::configure(handle, nic, link).await?;
    }
    // Each LAN's link: its NIC, or the VLAN interface on it (the NIC up, as a trunk).
    let mut lan_links = Vec::new();
    for (lan, nic) in plan.lans.iter().zip(&nics) {
        links::configure(handle, nic, lan).await?;
        lan_links.push(match lan.vlan {
            Some(id) => links::ensure_vlan(handle, &links, nic, id).await?,
            None => nic.clone(),
        });
    }
    let keep: Vec<u32> = lan_links.iter().map(|l| l.index).collect();
    links::remove_stale_vlans(handle, &links, &keep).await?;
    let lan_names: Vec<&str> = lan_links.iter().map(|l| l.name.as_str()).collect();
    let extra_names: Vec<&str> = extra_wans.iter().map(|n| n.name.as_str()).collect();
    sysctl::ensure(&plan.sysctls, &wan.name, &extra_names, &lan_names)?;
    addrs::ensure(handle, &wan, &plan.wan.addresses).await?;
    for (nic, link) in extra_wans.iter().zip(&plan.extra_wans) {
        addrs::ensure(handle, nic, &link.addresses).await?;
    }
    for (lan, link) in plan.lans.iter().zip(&lan_links) {
        addrs::ensure(handle, link, &lan.addresses).await?;
    }
    v6::apply(handle, &plan.v6, &wan, &lan_links).await?;
    // A NIC that now only carries VLANs keeps no address of an earlier untagged LAN.
    for nic in &nics {
        if !keep.contains(&nic.index) {
            addrs::ensure(handle, nic, &[]).await?;
        }
    }

    // Routes and pinned neighbours are the WAN NICs' only (a LAN's prefix route is the
    // kernel's, from its address).
    let index = |role: Role| match role {
        Role::ExtraWan(i) => extra_wans[i].index,
        _ => wan.index,
    };
    let want: Vec<routes::Route> = plan
        .routes
        .iter()
        .map(|r| match *r {
            RoutePlan::OnLinkHost { role, dst, table } => routes::Route {
                table,
                dst,
                prefix_len: 32,
                gateway: None,
                oif: index(role),
                on_link: false,
                scope_link: true,
                local: false,
            },
            RoutePlan::Default {
                role,
                gateway,
                on_link,
                table,
            } => routes::Route {
                table,
                dst: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                gateway: Some(gateway),
                oif: index(role),
                on_link,
                scope_link: false,
                local: false,
            },
            RoutePlan::LocalDefault { table } => routes::Route {
                table,
                dst: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                gateway: None,
                // The loopback device is index 1 in every network namespace.
                oif: LOOPBACK_INDEX,
                on_link: false,
                scope_link: false,
                local: true,
            },
        })
        .collect();
    let pinned: Vec<neighbours::Pinned> = plan
        .neighbours
        .iter()
        .map(|n| neighbours::Pinned {
            index: index(n.role),
            ip: n.ip,
            mac: n.mac,
        })
        .collect();
    let mut owned = vec![wan.index];
    owned.extend(extra_wans.iter().map(|l| l.index));
    owned.extend(lan_links.iter().map(|l| l.index));
    neighbours::ensure(handle, &pinned, &owned).await?;
    routes::ensure(handle, &want, &owned).await?;
    rules::ensure(handle, &plan.rules).await?;
    // What the NICs are now, for those who need their facts (the status page).
    let configured = |nic: Nic, link: &crate::plan::LinkPlan| Nic {
        mac: link.mac.or(nic.mac),
        up: true,
        ..nic
    };
    Ok(Applied {
        extra_wans: extra_wans
            .into_iter()
            .zip(&plan.extra_wans)
            .map(|(nic, link)| configured(nic, link))
            .collect(),
        wan: configured(wan, &plan.wan),
        lans: lan_links
            .into_iter()
            .zip(&plan.lans)
            .map(|(nic, lan)| configured(nic, lan))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_print_once() {
        let err = NetError::Sysctl {
            path: "/proc/sys/net/ipv4/ip_forward".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(
            format!("{:#}", anyhow::Error::from(err)),
            "sysctl /proc/sys/net/ipv4/ip_forward: permission denied"
        );
        let err = NetError::Connect(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(
            format!("{:#}", anyhow::Error::from(err)),
            "cannot open a netlink socket: permission denied"
        );
    }
}
