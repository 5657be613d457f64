//! `[wireguard]`: the `wg0` link over rtnetlink, its key, listen port and peers over
//! the WireGuard generic netlink family; the client config a peer needs.
//!
//! Applied apart from the rest of the router: a kernel without WireGuard (or any other
//! failure here) is reported, and the WAN, the LANs and the firewall stay as applied.

pub mod genl;
pub mod key;
pub mod peer_config;

use futures::TryStreamExt;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkUnspec, LinkWireguard};

use config::wireguard::{Key, WireGuard, IFNAME};

use crate::net::{self, NetError};
use crate::state::StateDir;

const EOPNOTSUPP: i32 = libc::EOPNOTSUPP;
const ENODEV: i32 = libc::ENODEV;

#[derive(Debug, thiserror::Error)]
pub enum WgError {
    #[error(
        "this kernel has no WireGuard (no wireguard module): [wireguard] is not applied, the rest of the router is"
    )]
    NoKernelSupport,
    #[error(transparent)]
    Key(#[from] key::KeyError),
    #[error("netlink: {what}")]
    Netlink { what: String, source: rtnetlink::Error },
    #[error("the tunnel address on {IFNAME}")]
    Address(#[source] NetError),
    #[error("configuring {IFNAME}")]
    Genl(#[source] genl::GenlError),
}

impl WgError {
    fn netlink(what: &str, source: rtnetlink::Error) -> WgError {
        if code_of(&source) == Some(-EOPNOTSUPP) {
            return WgError::NoKernelSupport;
        }
        WgError::Netlink {
            what: what.to_string(),
            source,
        }
    }
}

fn code_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code()),
        _ => None,
    }
}

impl From<genl::GenlError> for WgError {
    fn from(e: genl::GenlError) -> WgError {
        match e {
            genl::GenlError::NoFamily => WgError::NoKernelSupport,
            other => WgError::Genl(other),
        }
    }
}

/// What an apply of `[wireguard]` left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub index: u32,
    pub public_key: Key,
}

/// The `wg0` link: its index, whether it is up and whether it is a WireGuard link.
struct Link {
    index: u32,
    up: bool,
    wireguard: bool,
}

async fn find_link(handle: &Handle) -> Result<Option<Link>, WgError> {
    let mut stream = handle.link().get().match_name(IFNAME.to_string()).execute();
    match stream.try_next().await {
        Ok(Some(msg)) => Ok(Some(link_of(&msg))),
        Ok(None) => Ok(None),
        Err(e) if code_of(&e) == Some(-ENODEV) => Ok(None),
        Err(e) => Err(WgError::netlink(&format!("looking for {IFNAME}"), e)),
    }
}

fn link_of(msg: &LinkMessage) -> Link {
    let wireguard = msg.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Wireguard))),
        _ => false,
    });
    Link {
        index: msg.header.index,
        up: msg.header.flags.contains(LinkFlags::Up),
        wireguard,
    }
}

/// The router's private key for `wg` (made on first use) and its public key.
pub fn keys(wg: &WireGuard, state: Option<&StateDir>) -> Result<(Key, Key), key::KeyError> {
    let path = key::path(&wg.private_key_file, state)?;
    let private = key::load_or_create(&path)?;
    let public = key::public(&private);
    Ok((private, public))
}

/// Makes `wg0` match `wg`: the link (made when missing), the tunnel address, up, then
/// key, port and peers (added and removed one by one: the others keep their sessions).
/// `None`: no `[wireguard]`, so a `wg0` link left from an earlier config goes.
pub async fn ensure(
    handle: &Handle,
    wg: Option<&WireGuard>,
    state: Option<&StateDir>,
) -> Result<Option<Applied>, WgError> {
    let link = find_link(handle).await?;
    let Some(wg) = wg else {
        if let Some(old) = link.filter(|l| l.wireguard) {
            handle
                .link()
                .del(old.index)
                .execute()
                .await
                .map_err(|e| WgError::netlink(&format!("removing {IFNAME}"), e))?;
            tracing::info!(interface = IFNAME, "WireGuard interface removed ([wireguard] is gone)");
        }
        return Ok(None);
    };
    let (private, public) = keys(wg, state)?;
    let link = match link {
        Some(l) if l.wireguard => l,
        other => {
            if let Some(not_ours) = other {
                // The name is routerd's (config::wireguard::IFNAME): something else there goes.
                handle
                    .link()
                    .del(not_ours.index)
                    .execute()
                    .await
                    .map_err(|e| WgError::netlink(&format!("removing the non-WireGuard link {IFNAME}"), e))?;
            }
            handle
                .link()
                .add(LinkWireguard::new(IFNAME).up().build())
                .execute()
                .await
                .map_err(|e| WgError::netlink(&format!("creating {IFNAME}"), e))?;
            tracing::info!(interface = IFNAME, "WireGuard interface created");
            find_link(handle).await?.ok_or_else(|| {
                WgError::Genl(genl::GenlError::NoAnswer {
                    what: format!("{IFNAME} after creating it"),
                })
            })?
        }
    };
    let nic = net::Nic {
        index: link.index,
        name: IFNAME.to_string(),
        mac: None,
        perm_mac: None,
        up: link.up,
        vlan: None,
    };
    net::set_addresses(handle, &nic, &[wg.address])
        .await
        .map_err(WgError::Address)?;
    if !link.up {
        handle
            .link()
            .set(LinkUnspec::new_with_index(link.index).up().build())
            .execute()
            .await
            .map_err(|e| WgError::netlink(&format!("setting {IFNAME} up"), e))?;
    }
    let peers: Vec<genl::WantedPeer> = wg
        .peers
        .iter()
        .map(|p| genl::WantedPeer {
            public_key: p.public_key,
            allowed_ips: p.allowed_ips.clone(),
        })
        .collect();
    let changed = genl::configure(IFNAME, &private, wg.listen_port, &peers).await?;
    if changed.any {
        tracing::info!(
            interface = IFNAME,
            port = wg.listen_port,
            peers = peers.len(),
            added = changed.added,
            removed = changed.removed,
            "WireGuard configured"
        );
    }
    Ok(Some(Applied {
        index: link.index,
        public_key: public,
    }))
}

/// One peer's counters for the status page and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerStats {
    pub name: String,
    pub last_handshake: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The configured peers' counters, read from the kernel (in the order of the config).
pub async fn peer_stats(wg: &WireGuard) -> Result<Vec<PeerStats>, WgError> {
    let device = genl::read_device(IFNAME).await?;
    Ok(stats_of(wg, &device))
}

pub fn stats_of(wg: &WireGuard, device: &genl::DeviceState) -> Vec<PeerStats> {
    wg.peers
        .iter()
        .map(|p| {
            let state = device.peers.iter().find(|s| s.public_key == p.public_key);
            PeerStats {
                name: p.name.clone(),
                last_handshake: state.and_then(|s| s.last_handshake),
                rx_bytes: state.map_or(0, |s| s.rx_bytes),
                tx_bytes: state.map_or(0, |s| s.tx_bytes),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resolver_also_listens_on_the_tunnel_address_bound_to_the_tunnel() {
        let text = "[wan]\ninterface = \"wan\"\naddress = \"203.0.113.10/32\"\ngateway = \"203.0.113.254\"\n[lan]\ninterface = \"lan\"\naddress = \"172.16.0.1/16\"\n[dns]\n[wireguard]\nlisten_port = 51820\naddress = \"10.99.0.1/24\"\n";
        let config = config::Config::parse(text, "router.toml").expect("valid");
        let setup = crate::dns::Setup::from_config(&config, &["lan".to_string()]).expect("on");
        let listen: Vec<(&str, String, &str)> = setup
            .listen
            .iter()
            .map(|l| (l.lan.as_str(), l.address.to_string(), l.ifname.as_str()))
            .collect();
        assert_eq!(
            listen,
            [
                ("lan", "172.16.0.1".to_string(), "lan"),
                ("wireguard", "10.99.0.1".to_string(), IFNAME)
            ]
        );
    }
}
