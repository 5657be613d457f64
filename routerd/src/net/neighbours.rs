//! The kernel's neighbour (ARP) table and the NICs' own MACs: what the gateway check
//! and the status page ask about the WAN.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState};
use netlink_packet_route::route::RouteProtocol;
use netlink_packet_route::AddressFamily;
use rtnetlink::Handle;

use super::NetError;
use config::MacAddr;

/// The MAC address `nic` sends from now, as sysfs shows it ("" if unknown).
pub fn nic_mac(nic: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{nic}/address"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The interface index of `nic`, as sysfs shows it.
pub fn nic_index(nic: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{nic}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What the kernel knows about one IPv4 address on one NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub state: NeighbourState,
    /// The MAC the address answered with (none while unresolved).
    pub mac: Option<MacAddr>,
}

impl Neighbour {
    /// True when the address answered ARP (or is pinned): its MAC is usable.
    pub fn answers(&self) -> bool {
        matches!(
            self.state,
            NeighbourState::Reachable
                | NeighbourState::Stale
                | NeighbourState::Delay
                | NeighbourState::Probe
                | NeighbourState::Permanent
        )
    }

    /// A static entry (a pinned MAC): the address never answered for it.
    pub fn is_permanent(&self) -> bool {
        self.state == NeighbourState::Permanent
    }

    /// The state as `ip neigh` names it, in lower case ("reachable", "failed").
    pub fn state_name(&self) -> String {
        format!("{:?}", self.state).to_lowercase()
    }

    /// The entry for `ip` on the NIC with `index`, if `msg` is it.
    pub fn from_message(msg: &NeighbourMessage, index: u32, ip: Ipv4Addr) -> Option<Neighbour> {
        let is_it = msg.header.family == AddressFamily::Inet
            && msg.header.ifindex == index
            && msg
                .attributes
                .iter()
                .any(|a| matches!(a, NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) if *d == ip));
        if !is_it {
            return None;
        }
        let mac = msg.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::LinkLayerAddress(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr),
            _ => None,
        });
        Some(Neighbour {
            state: msg.header.state,
            mac,
        })
    }
}

/// The kernel's neighbour entry for `ip` on `nic`, if it has one.
pub async fn lookup(handle: &Handle, nic: &str, ip: Ipv4Addr) -> Option<Neighbour> {
    let index = nic_index(nic)?;
    let mut stream = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute();
    while let Ok(Some(msg)) = stream.try_next().await {
        if let Some(n) = Neighbour::from_message(&msg, index, ip) {
            return Some(n);
        }
    }
    None
}

/// The kernel's ARP state for `gateway` on `nic`: (answers, state name).
pub async fn gateway_state(handle: &Handle, nic: &str, gateway: Ipv4Addr) -> (bool, String) {
    match lookup(handle, nic, gateway).await {
        Some(n) => (n.answers(), n.state_name()),
        None => (false, "none".to_string()),
    }
}

/// A permanent entry as routerd owns it: marked with protocol `static` so that
/// entries of others (`ip neigh add` by hand) are left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    pub index: u32,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

impl Pinned {
    /// routerd's permanent entry, if `msg` is one.
    fn from_message(msg: &NeighbourMessage) -> Option<Pinned> {
        let ours = msg
            .attributes
            .iter()
            .any(|a| matches!(a, NeighbourAttribute::Protocol(RouteProtocol::Static)));
        if msg.header.family != AddressFamily::Inet || msg.header.state != NeighbourState::Permanent || !ours {
            return None;
        }
        let ip = msg.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
            _ => None,
        })?;
        let n = Neighbour::from_message(msg, msg.header.ifindex, ip)?;
        Some(Pinned {
            index: msg.header.ifindex,
            ip,
            mac: n.mac?,
        })
    }
}

/// Makes routerd's permanent entries on `nics` exactly `want`: a missing or different
/// one is set (replacing what the kernel learned by ARP), stale ones from an earlier
/// config removed, so applying twice changes nothing.
pub async fn ensure(handle: &Handle, want: &[Pinned], nics: &[u32]) -> Result<(), NetError> {
    let mut present = Vec::new();
    let mut stream = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| NetError::netlink("listing neighbours", e))?
    {
        if let Some(pinned) = Pinned::from_message(&msg) {
            if nics.contains(&pinned.index) {
                present.push((pinned, msg));
            }
        }
    }
    for (pinned, msg) in &present {
        // One with the wanted address but another MAC is replaced below instead.
        let replaced = want.iter().any(|w| w.index == pinned.index && w.ip == pinned.ip);
        if !want.contains(pinned) && !replaced {
            handle
                .neighbours()
                .del(msg.clone())
                .execute()
                .await
                .map_err(|e| NetError::netlink(&format!("removing the pinned neighbour {}", pinned.ip), e))?;
            tracing::info!(ip = %pinned.ip, mac = %pinned.mac, "pinned neighbour removed");
        }
    }
    for w in want {
        if present.iter().any(|(p, _)| p == w) {
            continue;
        }
        let mut request = handle
            .neighbours()
            .add(w.index, IpAddr::V4(w.ip))
            .state(NeighbourState::Permanent)
            .link_layer_address(&w.mac.0)
            .replace();
        request
            .message_mut()
            .attributes
            .push(NeighbourAttribute::Protocol(RouteProtocol::Static));
        request
            .execute()
            .await
            .map_err(|e| NetError::netlink(&format!("pinning {} to {}", w.ip, w.mac), e))?;
        tracing::info!(ip = %w.ip, mac = %w.mac, "neighbour pinned");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u32, ip: Ipv4Addr, state: NeighbourState, mac: Option<[u8; 6]>) -> NeighbourMessage {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = index;
        msg.header.state = state;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        if let Some(mac) = mac {
            msg.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        }
        msg
    }

    #[test]
    fn finds_the_address_on_its_nic_with_its_mac() {
        let gw = Ipv4Addr::new(203, 0, 113, 254);
        let mac = [0x02, 0, 0, 0, 0xfe, 1];
        let n = Neighbour::from_message(&entry(3, gw, NeighbourState::Reachable, Some(mac)), 3, gw);
        assert_eq!(
            n,
            Some(Neighbour {
                state: NeighbourState::Reachable,
                mac: Some(MacAddr(mac))
            })
        );
        assert!(n.is_some_and(|n| n.answers() && n.state_name() == "reachable"));
        // Another NIC or another address is not it.
        assert_eq!(
            Neighbour::from_message(&entry(4, gw, NeighbourState::Reachable, Some(mac)), 3, gw),
            None
        );
        let other = Ipv4Addr::new(203, 0, 113, 1);
        assert_eq!(
            Neighbour::from_message(&entry(3, other, NeighbourState::Reachable, None), 3, gw),
            None
        );
    }

    #[test]
    fn an_unresolved_entry_does_not_answer() {
        let gw = Ipv4Addr::new(203, 0, 113, 254);
        for state in [NeighbourState::Incomplete, NeighbourState::Failed] {
            let n = Neighbour::from_message(&entry(3, gw, state, None), 3, gw);
            assert!(n.is_some_and(|n| !n.answers() && n.mac.is_none()), "{state:?}");
        }
    }
}
