//! IPv6 over netlink: the v6 sysctls, the global addresses of the WAN and LAN links,
//! the WAN's v6 routes, and the NDP proxy entries on the WAN. Each step compares with
//! what is there first, like the IPv4 ones.

use std::net::{IpAddr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::Ipv6Net;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressScope};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourState};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};

use super::links::Nic;
use super::NetError;
use crate::plan6::{Plan6, Route6};

/// Makes the v6 side match `plan`: sysctls, addresses, routes; with IPv6 off, turns
/// forwarding off and removes routerd's v6 addresses, routes and proxy entries. A
/// kernel without IPv6 is fine while IPv6 is off.
pub async fn apply(handle: &Handle, plan: &Plan6, wan: &Nic, lans: &[Nic]) -> Result<(), NetError> {
    if !plan.enabled && !std::path::Path::new("/proc/sys/net/ipv6").exists() {
        return Ok(());
    }
    let lan_names: Vec<&str> = lans.iter().map(|l| l.name.as_str()).collect();
    for s in &plan.sysctls {
        for path in s.paths(&wan.name, &lan_names) {
            super::sysctl::write_if_different(&path, s.value)?;
        }
    }
    ensure_addresses(handle, wan, &plan.wan_addresses).await?;
    for (i, lan) in lans.iter().enumerate() {
        let want: Vec<Ipv6Net> = plan.lan_addresses.get(i).copied().flatten().into_iter().collect();
        ensure_addresses(handle, lan, &want).await?;
    }
    ensure_routes(handle, wan.index, &plan.routes).await?;
    if !plan.ndp_proxy {
        for ip in proxies(handle, wan.index).await? {
            del_proxy(handle, wan.index, ip).await?;
        }
    }
    Ok(())
}

/// Removes the global v6 addresses of `nic` not in `want`, adds the missing ones
/// (without duplicate address detection: they are the router's by the config).
/// Link-local addresses are the kernel's and stay.
async fn ensure_addresses(handle: &Handle, nic: &Nic, want: &[Ipv6Net]) -> Result<(), NetError> {
    let mut present = Vec::new();
    let mut stream = handle.address().get().set_link_index_filter(nic.index).execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| NetError::netlink("listing IPv6 addresses", e))?
    {
        if msg.header.family != AddressFamily::Inet6
            || msg.header.index != nic.index
            || msg.header.scope != AddressScope::Universe
        {
            continue;
        }
        let ip = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V6(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(net) = ip.and_then(|ip| Ipv6Net::new(ip, msg.header.prefix_len).ok()) {
            present.push((net, msg));
        }
    }
    let already: Vec<Ipv6Net> = present.iter().map(|(n, _)| *n).collect();
    for (net, msg) in present.into_iter().filter(|(n, _)| !want.contains(n)) {
        handle
            .address()
            .del(msg)
            .execute()
            .await
            .map_err(|e| NetError::netlink(&format!("removing stale {net} from {}", nic.name), e))?;
        tracing::info!(nic = %nic.name, address = %net, "stale IPv6 address removed");
    }
    for &net in want.iter().filter(|w| !already.contains(w)) {
        let mut req = handle
            .address()
            .add(nic.index, IpAddr::V6(net.addr()), net.prefix_len())
            .replace();
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        req.execute()
            .await
            .map_err(|e| NetError::netlink(&format!("adding {net} to {}", nic.name), e))?;
        tracing::info!(nic = %nic.name, address = %net, "IPv6 address added");
    }
    Ok(())
}

fn route_message(r: &Route6, oif: u32) -> RouteMessage {
    let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
        .destination_prefix(r.dst.network(), r.dst.prefix_len())
        .output_interface(oif)
        .table_id(u32::from(RouteHeader::RT_TABLE_MAIN))
        .protocol(RouteProtocol::Static);
    if let Some(gw) = r.gateway {
        b = b.gateway(gw);
    }
    b.build()
}

fn route_of(msg: &RouteMessage, oif: u32) -> Option<Route6> {
    let h = &msg.header;
    if h.address_family != AddressFamily::Inet6
        || h.protocol != RouteProtocol::Static
        || h.table != RouteHeader::RT_TABLE_MAIN
    {
        return None;
    }
    let mut dst = Ipv6Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut on = false;
    for a in &msg.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => dst = *ip,
            RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => gateway = Some(*ip),
            RouteAttribute::Oif(i) => on = *i == oif,
            _ => {}
        }
    }
    Some(Route6 {
        dst: Ipv6Net::new(dst, h.destination_prefix_length).ok()?,
        gateway,
    })
    .filter(|_| on)
}

/// routerd's v6 routes on the WAN NIC (protocol static, main table): exactly `want`.
async fn ensure_routes(handle: &Handle, oif: u32, want: &[Route6]) -> Result<(), NetError> {
    let mut present = Vec::new();
    let mut stream = handle
        .route()
        .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
        .execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| NetError::netlink("listing IPv6 routes", e))?
    {
        if let Some(r) = route_of(&msg, oif) {
            present.push((r, msg));
        }
    }
    for (r, msg) in &present {
        if !want.contains(r) {
            handle
                .route()
                .del(msg.clone())
                .execute()
                .await
                .map_err(|e| NetError::netlink(&format!("removing stale IPv6 route to {}", r.dst), e))?;
            tracing::info!(dst = %r.dst, "stale IPv6 route removed");
        }
    }
    // In order: an on-link host route to the gateway before the default via it.
    for r in want {
        if !present.iter().any(|(p, _)| p == r) {
            handle
                .route()
                .add(route_message(r, oif))
                .replace()
                .execute()
                .await
                .map_err(|e| NetError::netlink(&format!("adding IPv6 route to {} via {:?}", r.dst, r.gateway), e))?;
            tracing::info!(dst = %r.dst, gateway = ?r.gateway, "IPv6 route set");
        }
    }
    Ok(())
}

/// The proxy neighbour entries (`ip -6 neigh show proxy dev <nic>`) of the NIC.
pub async fn proxies(handle: &Handle, index: u32) -> Result<Vec<Ipv6Addr>, NetError> {
    let mut found = Vec::new();
    let mut stream = handle
        .neighbours()
        .get()
        .proxies()
        .set_address_family(AddressFamily::Inet6)
        .execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| NetError::netlink("listing proxy neighbours", e))?
    {
        if msg.header.ifindex != index || !msg.header.flags.contains(NeighbourFlags::Proxy) {
            continue;
        }
        found.extend(msg.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some(*ip),
            _ => None,
        }));
    }
    Ok(found)
}

/// `ip -6 neigh add proxy <ip> dev <nic>`: the kernel answers solicitations for `ip`.
pub async fn add_proxy(handle: &Handle, index: u32, ip: Ipv6Addr) -> Result<(), NetError> {
    handle
        .neighbours()
        .add(index, IpAddr::V6(ip))
        .flags(NeighbourFlags::Proxy)
        .replace()
        .execute()
        .await
        .map_err(|e| NetError::netlink(&format!("adding the proxy entry for {ip}"), e))
}

pub async fn del_proxy(handle: &Handle, index: u32, ip: Ipv6Addr) -> Result<(), NetError> {
    let mut msg = netlink_packet_route::neighbour::NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet6;
    msg.header.ifindex = index;
    msg.header.flags = NeighbourFlags::Proxy;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)));
    handle
        .neighbours()
        .del(msg)
        .execute()
        .await
        .map_err(|e| NetError::netlink(&format!("removing the proxy entry for {ip}"), e))
}

/// A LAN host's global address as the LAN's neighbour table has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanHost {
    pub ip: Ipv6Addr,
    /// Whether it answers (or answered and is not known to be gone).
    pub present: bool,
}

/// The IPv6 neighbours of the NIC `index` inside `prefix`.
pub async fn lan_hosts(handle: &Handle, index: u32, prefix: Ipv6Net) -> Result<Vec<LanHost>, NetError> {
    let mut hosts = Vec::new();
    let mut stream = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet6)
        .execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| NetError::netlink("listing IPv6 neighbours", e))?
    {
        if msg.header.ifindex != index {
            continue;
        }
        let Some(ip) = msg.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some(*ip),
            _ => None,
        }) else {
            continue;
        };
        if !prefix.contains(&ip) {
            continue;
        }
        let present = matches!(
            msg.header.state,
            NeighbourState::Reachable
                | NeighbourState::Stale
                | NeighbourState::Delay
                | NeighbourState::Probe
                | NeighbourState::Permanent
                | NeighbourState::Incomplete
        );
        hosts.push(LanHost { ip, present });
    }
    Ok(hosts)
}
