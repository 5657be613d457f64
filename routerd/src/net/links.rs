//! Finding the WAN and LAN NICs, setting the virtual MAC, bringing links up, and the
//! 802.1Q VLAN interfaces of VLAN LANs.

use futures::TryStreamExt;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVlan, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage,
};
use rtnetlink::{Handle, LinkUnspec, LinkVlan};

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
    /// For an 802.1Q VLAN interface: its NIC's index and the VLAN id.
    pub vlan: Option<(u32, u16)>,
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
            vlan: None,
        };
        let (mut parent, mut vlan_id, mut is_vlan) = (None, None, false);
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => nic.name = n.clone(),
                LinkAttribute::Address(a) => nic.mac = mac_of(a),
                LinkAttribute::PermAddress(a) => nic.perm_mac = mac_of(a),
                LinkAttribute::Link(index) => parent = Some(*index),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(InfoKind::Vlan) => is_vlan = true,
                            LinkInfo::Data(InfoData::Vlan(data)) => {
                                vlan_id = data.iter().find_map(|d| match d {
                                    InfoVlan::Id(id) => Some(*id),
                                    _ => None,
                                });
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if is_vlan {
            nic.vlan = Some((parent.unwrap_or(0), vlan_id.unwrap_or(0)));
        }
        Some(nic)
    }

    /// The name routerd gives the interface of VLAN `id` on this NIC.
    pub fn vlan_name(&self, id: u16) -> String {
        format!("{}.{id}", self.name)
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

/// Picks the NIC `plan` selects among `nics` (VLAN interfaces are never selected).
/// `taken`: the NICs already chosen (the WAN, LANs that name theirs), for a LAN's
/// "the one NIC left".
pub fn select<'n>(nics: &'n [Nic], plan: &LinkPlan, taken: &[u32]) -> Result<&'n Nic, NetError> {
    let nics_only = nics.iter().filter(|n| n.vlan.is_none());
    let found: Vec<&Nic> = match &plan.select {
        NicSelector::Mac(mac) => nics_only.filter(|n| n.has_mac(*mac)).collect(),
        NicSelector::Name(name) => nics_only.filter(|n| &n.name == name).collect(),
        NicSelector::NotWan => nics_only.filter(|n| !taken.contains(&n.index)).collect(),
    };
    match found.as_slice() {
        [one] => Ok(one),
        _ => Err(NetError::NicNotFound {
            what: plan.what(),
            wanted: plan.select.to_string(),
            matches: found.len(),
            present: nics
                .iter()
                .filter(|n| n.vlan.is_none())
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

/// Makes the interface of VLAN `id` on `nic` exist (named `<nic>.<id>`), up; a link of
/// that name that is something else is replaced. Returns it as it is now.
pub async fn ensure_vlan(handle: &Handle, links: &[Nic], nic: &Nic, id: u16) -> Result<Nic, NetError> {
    let name = nic.vlan_name(id);
    let existing = links.iter().find(|l| l.name == name);
    if let Some(l) = existing.filter(|l| l.vlan == Some((nic.index, id))) {
        if !l.up {
            set_up(handle, l).await?;
        }
        return Ok(Nic { up: true, ..l.clone() });
    }
    if let Some(other) = existing {
        remove(handle, other).await?;
    }
    if name.len() > 15 {
        return Err(NetError::VlanName { name });
    }
    handle
        .link()
        .add(LinkVlan::new(&name, nic.index, id).up().build())
        .execute()
        .await
        .map_err(|e| {
            NetError::netlink(
                &format!("creating the VLAN interface {name} (VLAN {id} on {})", nic.name),
                e,
            )
        })?;
    tracing::info!(interface = %name, vlan = id, nic = %nic.name, "VLAN interface created");
    list(handle)
        .await?
        .into_iter()
        .find(|l| l.name == name)
        .ok_or(NetError::VlanName { name })
}

/// Removes the VLAN interfaces named like routerd's (`<nic>.<id>`, on that NIC) that
/// are not in `keep`: those of LANs no longer configured.
pub async fn remove_stale_vlans(handle: &Handle, links: &[Nic], keep: &[u32]) -> Result<(), NetError> {
    for l in links {
        let Some((parent, id)) = l.vlan else { continue };
        let ours = links.iter().any(|p| p.index == parent && p.vlan_name(id) == l.name);
        if ours && !keep.contains(&l.index) {
            remove(handle, l).await?;
        }
    }
    Ok(())
}

async fn remove(handle: &Handle, link: &Nic) -> Result<(), NetError> {
    handle
        .link()
        .del(link.index)
        .execute()
        .await
        .map_err(|e| NetError::netlink(&format!("removing the interface {}", link.name), e))?;
    tracing::info!(interface = %link.name, "VLAN interface removed");
    Ok(())
}

async fn set_up(handle: &Handle, nic: &Nic) -> Result<(), NetError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(nic.index).up().build())
        .execute()
        .await
        .map_err(|e| NetError::netlink(&format!("setting link up on {}", nic.name), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Role;
    use netlink_packet_route::link::LinkHeader;

    fn nic(index: u32, name: &str, vlan: Option<(u32, u16)>) -> Nic {
        Nic {
            index,
            name: name.into(),
            mac: Some(MacAddr([2, 0, 0, 0, 0, index as u8])),
            perm_mac: None,
            up: true,
            vlan,
        }
    }

    fn lan(select: NicSelector) -> LinkPlan {
        LinkPlan {
            role: Role::Lan,
            name: "dev".into(),
            select,
            vlan: None,
            mac: None,
            addresses: vec!["10.20.0.1/24".parse().expect("net")],
        }
    }

    #[test]
    fn the_one_nic_left_skips_the_taken_nics_and_vlan_interfaces() {
        let links = [
            nic(2, "eth0", None),
            nic(3, "eth1", None),
            nic(4, "eth2", None),
            nic(5, "eth1.20", Some((3, 20))),
        ];
        let found = select(&links, &lan(NicSelector::NotWan), &[2, 3]).expect("one left");
        assert_eq!(found.name, "eth2");
        let err = select(&links, &lan(NicSelector::NotWan), &[2]).expect_err("two left");
        assert_eq!(
            err.to_string(),
            "no single lan \"dev\" NIC: looked for the one NIC that is not the WAN, found 2 matching; NICs present: eth0 (02:00:00:00:00:02), eth1 (02:00:00:00:00:03), eth2 (02:00:00:00:00:04)"
        );
        assert!(select(&links, &lan(NicSelector::Name("eth1.20".into())), &[]).is_err());
    }

    #[test]
    fn a_vlan_interface_is_known_by_its_nic_and_id() {
        let mut msg = LinkMessage::default();
        msg.header = LinkHeader {
            index: 7,
            link_layer_type: LinkLayerType::Ether,
            ..LinkHeader::default()
        };
        msg.attributes = vec![
            LinkAttribute::IfName("eth1.20".into()),
            LinkAttribute::Link(3),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vlan),
                LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(20)])),
            ]),
        ];
        let link = Nic::from_message(&msg).expect("an Ethernet link");
        assert_eq!(link.vlan, Some((3, 20)));
        assert_eq!(nic(3, "eth1", None).vlan_name(20), "eth1.20");
    }
}
