//! Finding the WAN and LAN NICs, setting the virtual MAC, bringing links up.

use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use rtnetlink::{Handle, LinkUnspec};

use super::NetError;
use crate::plan::LinkPlan;
use config::{MacAddr, NicSelector};

/// A NIC as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub perm_mac: Option<MacAddr>,
    pub up: bool,
}

fn mac_of(bytes: &[u8]) -> Option<MacAddr> {
    <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
}

impl Nic {
    fn from_message(msg: &LinkMessage) -> Option<Nic> {
        if msg.header.link_layer_type != LinkLayerType::Ether {
            return None; // loopback, tunnels: never a WAN or LAN
        }
        let mut nic = Nic {
            index: msg.header.index,
            name: String::new(),
            mac: None,
            perm_mac: None,
            up: msg.header.flags.contains(LinkFlags::Up),
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => nic.name = n.clone(),
                LinkAttribute::Address(a) => nic.mac = mac_of(a),
                LinkAttribute::PermAddress(a) => nic.perm_mac = mac_of(a),
                _ => {}
            }
        }
        Some(nic)
    }

    fn has_mac(&self, mac: MacAddr) -> bool {
        self.mac == Some(mac) || self.perm_mac == Some(mac)
    }
}

pub async fn list(handle: &Handle) -> Result<Vec<Nic>, NetError> {
    let mut nics = Vec::new();
    let mut stream = handle.link().get().execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| NetError::netlink("listing links", e))?
    {
        nics.extend(Nic::from_message(&msg));
    }
    Ok(nics)
}

/// Picks the NIC `plan` selects among those not `taken` already (by the WAN NICs:
/// the LAN's "the one NIC that is not the WAN" is the one NIC left).
pub fn select<'n>(nics: &'n [Nic], plan: &LinkPlan, taken: &[u32]) -> Result<&'n Nic, NetError> {
    let free = nics.iter().filter(|n| !taken.contains(&n.index));
    let found: Vec<&Nic> = match &plan.select {
        NicSelector::Mac(mac) => free.filter(|n| n.has_mac(*mac)).collect(),
        NicSelector::Name(name) => free.filter(|n| &n.name == name).collect(),
        NicSelector::NotWan => free.collect(),
    };
    match found.as_slice() {
        [one] => Ok(one),
        _ => Err(NetError::NicNotFound {
            role: plan.role,
            wanted: plan.select.to_string(),
            matches: found.len(),
            present: nics
                .iter()
                .map(|n| format!("{} ({})", n.name, n.mac.map(|m| m.to_string()).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Sets the planned MAC (when it differs) and brings the link up.
pub async fn configure(handle: &Handle, nic: &Nic, plan: &LinkPlan) -> Result<(), NetError> {
    let what = |action: &str| format!("{action} on {} ({})", nic.name, plan.role);
    if let Some(mac) = plan.mac.filter(|m| nic.mac != Some(*m)) {
        // Many drivers refuse a new MAC while the link is up.
        if nic.up {
            handle
                .link()
                .set(LinkUnspec::new_with_index(nic.index).down().build())
                .execute()
                .await
                .map_err(|e| NetError::netlink(&what("setting link down"), e))?;
        }
        handle
            .link()
            .set(LinkUnspec::new_with_index(nic.index).address(mac.0.to_vec()).build())
            .execute()
            .await
            .map_err(|e| NetError::netlink(&what(&format!("setting MAC {mac}")), e))?;
        tracing::info!(nic = %nic.name, role = %plan.role, %mac, "MAC set");
    }
    if !nic.up || plan.mac.is_some_and(|m| nic.mac != Some(m)) {
        handle
            .link()
            .set(LinkUnspec::new_with_index(nic.index).up().build())
            .execute()
            .await
            .map_err(|e| NetError::netlink(&what("setting link up"), e))?;
    }
    Ok(())
}
