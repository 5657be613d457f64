//! Applies a [`NetPlan`] to the kernel over netlink: links, addresses, pinned
//! neighbours, routes, policy rules, sysctls.
//! Every step compares with what is there first, so applying twice changes nothing.

mod addrs;
pub mod arp;
pub mod lan_arp;
mod links;
pub mod neighbours;
mod routes;
mod rules;
mod sysctl;

use std::net::Ipv4Addr;

use rtnetlink::Handle;

pub use links::Nic;

use crate::plan::{NetPlan, Role, RoutePlan};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("no single {role} NIC: looked for {wanted}, found {matches} matching; NICs present: {present}")]
    NicNotFound {
        role: Role,
        wanted: String,
        matches: usize,
        present: String,
    },
    // The causes are `source`s, printed by `{e:#}`, not repeated in the message.
    #[error("netlink: {what}")]
    Netlink { what: String, source: rtnetlink::Error },
    #[error("sysctl {path}")]
    Sysctl { path: String, source: std::io::Error },
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

/// The NICs a plan was applied to.
#[derive(Debug, Clone)]
pub struct Applied {
    pub wan: Nic,
    /// The NICs of `wan.extra`, in order.
    pub extra_wans: Vec<Nic>,
    pub lan: Nic,
}

impl Applied {
    /// The name of the NIC that has `role`.
    pub fn name_of(&self, role: Role) -> &str {
        match role {
            Role::Wan => &self.wan.name,
            Role::ExtraWan(i) => self.extra_wans.get(i).map_or("", |n| &n.name),
            Role::Lan => &self.lan.name,
        }
    }
}

/// Opens a netlink connection served by the current tokio runtime.
pub fn connect() -> Result<Handle, NetError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(NetError::Connect)?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Applies `plan`. `previous`: what the last apply configured, so that the NIC of an
/// extra WAN address that is gone loses its addresses.
pub async fn apply(handle: &Handle, plan: &NetPlan, previous: Option<&Applied>) -> Result<Applied, NetError> {
    let nics = links::list(handle).await?;
    let wan = links::select(&nics, &plan.wan, &[])?.clone();
    let mut taken = vec![wan.index];
    let mut extra_wans = Vec::new();
    for link in &plan.extra_wans {
        let nic = links::select(&nics, link, &taken)?.clone();
        taken.push(nic.index);
        extra_wans.push(nic);
    }
    let lan = links::select(&nics, &plan.lan, &taken)
        .map_err(|e| match e {
            NetError::NicNotFound {
                role,
                wanted,
                matches,
                present,
            } => NetError::NicNotFound {
                role,
                wanted: format!("{wanted} (other than the WAN NICs)"),
                matches,
                present,
            },
            other => other,
        })?
        .clone();
    let applied = Applied { wan, extra_wans, lan };
    sysctl::ensure(&plan.sysctls, |role| applied.name_of(role).to_string())?;
    let (wan, lan) = (&applied.wan, &applied.lan);
    let links = std::iter::once((wan, &plan.wan))
        .chain(applied.extra_wans.iter().zip(&plan.extra_wans))
        .chain([(lan, &plan.lan)]);
    for (nic, link) in links.clone() {
        links::configure(handle, nic, link).await?;
        addrs::ensure(handle, nic, &link.addresses).await?;
    }
    // An extra WAN NIC that is no longer one keeps no public address.
    for gone in previous
        .iter()
        .flat_map(|p| &p.extra_wans)
        .filter(|p| !links.clone().any(|(nic, _)| nic.index == p.index))
    {
        addrs::ensure(handle, gone, &[]).await?;
    }

    let index = |role| match role {
        Role::Wan => wan.index,
        Role::ExtraWan(i) => applied.extra_wans[i].index,
        Role::Lan => lan.index,
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
    let all: Vec<u32> = links.clone().map(|(nic, _)| nic.index).collect();
    neighbours::ensure(handle, &pinned, &all).await?;
    routes::ensure(handle, &want, &all).await?;
    rules::ensure(handle, &plan.rules).await?;
    // What the NICs are now, for those who need their facts (the status page).
    let configured = |nic: &Nic, link: &crate::plan::LinkPlan| Nic {
        mac: link.mac.or(nic.mac),
        up: true,
        ..nic.clone()
    };
    Ok(Applied {
        wan: configured(wan, &plan.wan),
        extra_wans: applied
            .extra_wans
            .iter()
            .zip(&plan.extra_wans)
            .map(|(nic, link)| configured(nic, link))
            .collect(),
        lan: configured(lan, &plan.lan),
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
