//! Applies a [`NetPlan`] to the kernel over netlink: links, addresses, pinned
//! neighbours, routes, sysctls.
//! Every step compares with what is there first, so applying twice changes nothing.

mod addrs;
pub mod arp;
pub mod lan_arp;
mod links;
pub mod neighbours;
mod routes;
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
    pub lan: Nic,
}

/// Opens a netlink connection served by the current tokio runtime.
pub fn connect() -> Result<Handle, NetError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(NetError::Connect)?;
    tokio::spawn(connection);
    Ok(handle)
}

pub async fn apply(handle: &Handle, plan: &NetPlan) -> Result<Applied, NetError> {
    let nics = links::list(handle).await?;
    let wan = links::select(&nics, &plan.wan, None)?.clone();
    let lan = links::select(&nics, &plan.lan, Some(&wan))?.clone();
    if wan.index == lan.index {
        return Err(NetError::NicNotFound {
            role: Role::Lan,
            wanted: format!("{} (other than the WAN {})", plan.lan.select, wan.name),
            matches: 0,
            present: wan.name.clone(),
        });
    }
    sysctl::ensure(&plan.sysctls, &wan.name, &lan.name)?;
    links::configure(handle, &wan, &plan.wan).await?;
    links::configure(handle, &lan, &plan.lan).await?;
    addrs::ensure(handle, &wan, plan.wan.address).await?;
    addrs::ensure(handle, &lan, plan.lan.address).await?;

    let index = |role| match role {
        Role::Wan => wan.index,
        Role::Lan => lan.index,
    };
    let want: Vec<routes::Route> = plan
        .routes
        .iter()
        .map(|r| match *r {
            RoutePlan::OnLinkHost { role, dst } => routes::Route {
                dst,
                prefix_len: 32,
                gateway: None,
                oif: index(role),
                on_link: false,
                scope_link: true,
            },
            RoutePlan::Default { role, gateway, on_link } => routes::Route {
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
    neighbours::ensure(handle, &pinned, &[wan.index, lan.index]).await?;
    routes::ensure(handle, &want, &[wan.index, lan.index]).await?;
    // What the NICs are now, for those who need their facts (the status page).
    let configured = |nic: Nic, link: &crate::plan::LinkPlan| Nic {
        mac: link.mac.or(nic.mac),
        up: true,
        ..nic
    };
    Ok(Applied {
        wan: configured(wan, &plan.wan),
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
