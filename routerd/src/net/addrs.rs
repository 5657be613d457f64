//! IPv4 addresses: each NIC ends up with exactly its planned address.

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::AddressFamily;
use rtnetlink::Handle;

use super::links::Nic;
use super::NetError;

fn ipv4_of(msg: &AddressMessage) -> Option<Ipv4Net> {
    if msg.header.family != AddressFamily::Inet {
        return None;
    }
    msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => {
            Ipv4Net::new(*ip, msg.header.prefix_len).ok()
        }
        _ => None,
    })
}

/// Removes every IPv4 address of `nic` not in `want` (left from an earlier config), then
/// adds those of `want` that are missing, in order (the first becomes the primary), so
/// applying twice changes nothing. Empty: the NIC keeps no address (a trunk under VLAN
/// interfaces, a NIC no longer used).
pub async fn ensure(handle: &Handle, nic: &Nic, want: &[Ipv4Net]) -> Result<(), NetError> {
    let mut present = Vec::new();
    let mut stream = handle.address().get().set_link_index_filter(nic.index).execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| NetError::netlink("listing addresses", e))?
    {
        if msg.header.index == nic.index {
            if let Some(net) = ipv4_of(&msg) {
                present.push((net, msg));
            }
        }
    }
    // Stale addresses go first: deleting a primary address also deletes the
    // secondaries of its subnet, which the new one would be if added before.
    let already: Vec<Ipv4Net> = present.iter().map(|(net, _)| *net).collect();
    for (net, msg) in present.into_iter().filter(|(net, _)| !want.contains(net)) {
        handle
            .address()
            .del(msg)
            .execute()
            .await
            .map_err(|e| NetError::netlink(&format!("removing stale {net} from {}", nic.name), e))?;
        tracing::info!(nic = %nic.name, address = %net, "stale address removed");
    }
    for &want in want.iter().filter(|w| !already.contains(w)) {
        handle
            .address()
            .add(nic.index, IpAddr::V4(want.addr()), want.prefix_len())
            .replace()
            .execute()
            .await
            .map_err(|e| NetError::netlink(&format!("adding {want} to {}", nic.name), e))?;
        tracing::info!(nic = %nic.name, address = %want, "address added");
    }
    Ok(())
}
