//! The WireGuard generic netlink family: the messages routerd sends (built here, pure,
//! unit-tested) and a small client that resolves the family and sends them.

use std::net::IpAddr;

use futures::StreamExt;
use ipnet::Ipv4Net;
use netlink_packet_core::{
    NetlinkDeserializable, NetlinkMessage, NetlinkPayload, NetlinkSerializable, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlMessage};
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute, WireguardCmd,
    WireguardMessage, WireguardPeer, WireguardPeerAttribute, WireguardPeerFlags,
};

use config::wireguard::Key;

const AF_INET: u16 = libc::AF_INET as u16;
const ENOENT: i32 = libc::ENOENT;

#[derive(Debug, thiserror::Error)]
pub enum GenlError {
    #[error("this kernel has no WireGuard (the generic netlink family \"wireguard\" is missing: no wireguard module)")]
    NoFamily,
    #[error("cannot open a generic netlink socket")]
    Connect(#[source] std::io::Error),
    #[error("generic netlink: {what}")]
    Kernel { what: String, source: std::io::Error },
    #[error("generic netlink: {what}: no answer")]
    NoAnswer { what: String },
}

/// A peer as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub public_key: Key,
    pub allowed_ips: Vec<Ipv4Net>,
    /// Unix time of the last handshake; `None`: never.
    pub last_handshake: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The device as the kernel reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceState {
    pub private_key: Option<Key>,
    pub listen_port: u16,
    pub peers: Vec<PeerState>,
}

/// What a peer should be in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedPeer {
    pub public_key: Key,
    pub allowed_ips: Vec<Ipv4Net>,
}

/// `GET_DEVICE` of the interface `ifname` (a dump: the kernel may split a long peer list).
pub fn get_device(ifname: &str) -> WireguardMessage {
    WireguardMessage {
        cmd: WireguardCmd::GetDevice,
        attributes: vec![WireguardAttribute::IfName(ifname.to_string())],
    }
}

/// The `SET_DEVICE` messages that make the device `have` into what is wanted, touching
/// nothing that is already right: peers are added, updated and removed one by one,
/// never by replacing the whole list (which would end every peer's session). Empty
/// when nothing differs.
pub fn set_device(
    ifname: &str,
    have: &DeviceState,
    private_key: &Key,
    listen_port: u16,
    peers: &[WantedPeer],
) -> Vec<WireguardMessage> {
    let mut attributes = vec![WireguardAttribute::IfName(ifname.to_string())];
    if have.private_key.as_ref() != Some(private_key) {
        attributes.push(WireguardAttribute::PrivateKey(private_key.0));
    }
    if have.listen_port != listen_port {
        attributes.push(WireguardAttribute::ListenPort(listen_port));
    }
    let mut changes = Vec::new();
    for gone in have
        .peers
        .iter()
        .filter(|p| !peers.iter().any(|w| w.public_key == p.public_key))
    {
        changes.push(WireguardPeer(vec![
            WireguardPeerAttribute::PublicKey(gone.public_key.0),
            WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe),
        ]));
    }
    for want in peers {
        let current = have.peers.iter().find(|p| p.public_key == want.public_key);
        if current.is_some_and(|c| same_set(&c.allowed_ips, &want.allowed_ips)) {
            continue;
        }
        changes.push(WireguardPeer(vec![
            WireguardPeerAttribute::PublicKey(want.public_key.0),
            // Replaces this peer's allowed IPs only; its session stays.
            WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
            WireguardPeerAttribute::AllowedIps(want.allowed_ips.iter().map(|n| allowed_ip(*n)).collect()),
        ]));
    }
    if attributes.len() == 1 && changes.is_empty() {
        return Vec::new();
    }
    if !changes.is_empty() {
        attributes.push(WireguardAttribute::Peers(changes));
    }
    vec![WireguardMessage {
        cmd: WireguardCmd::SetDevice,
        attributes,
    }]
}

fn same_set(a: &[Ipv4Net], b: &[Ipv4Net]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

fn allowed_ip(net: Ipv4Net) -> WireguardAllowedIp {
    WireguardAllowedIp(vec![
        WireguardAllowedIpAttr::Family(WireguardAddressFamily::Ipv4),
        WireguardAllowedIpAttr::IpAddr(IpAddr::V4(net.network())),
        WireguardAllowedIpAttr::Cidr(net.prefix_len()),
    ])
}

/// The device from the answers to [`get_device`]. A long peer list comes in several
/// messages, and a peer with many allowed IPs continues in the next one under the same
/// public key.
pub fn parse_device(answers: &[WireguardMessage]) -> DeviceState {
    let mut device = DeviceState::default();
    for message in answers {
        for attribute in &message.attributes {
            match attribute {
                WireguardAttribute::PrivateKey(k) => device.private_key = Some(Key(*k)),
                WireguardAttribute::ListenPort(p) => device.listen_port = *p,
                WireguardAttribute::Peers(peers) => {
                    for peer in peers {
                        let parsed = parse_peer(peer);
                        match device.peers.last_mut() {
                            Some(last) if last.public_key == parsed.public_key => {
                                last.allowed_ips.extend(parsed.allowed_ips)
                            }
                            _ => device.peers.push(parsed),
                        }
                    }
                }
                _ => {}
            }
        }
    }
    device
}

fn parse_peer(peer: &WireguardPeer) -> PeerState {
    let mut state = PeerState {
        public_key: Key([0; 32]),
        allowed_ips: Vec::new(),
        last_handshake: None,
        rx_bytes: 0,
        tx_bytes: 0,
    };
    for attribute in &peer.0 {
        match attribute {
            WireguardPeerAttribute::PublicKey(k) => state.public_key = Key(*k),
            WireguardPeerAttribute::LastHandshake(t) => {
                state.last_handshake = u64::try_from(t.seconds).ok().filter(|s| *s > 0)
            }
            WireguardPeerAttribute::RxBytes(n) => state.rx_bytes = *n,
            WireguardPeerAttribute::TxBytes(n) => state.tx_bytes = *n,
            WireguardPeerAttribute::AllowedIps(ips) => state.allowed_ips.extend(ips.iter().filter_map(|ip| {
                let (mut addr, mut cidr, mut family) = (None, None, None);
                for a in &ip.0 {
                    match a {
                        WireguardAllowedIpAttr::IpAddr(IpAddr::V4(v4)) => addr = Some(*v4),
                        WireguardAllowedIpAttr::Cidr(c) => cidr = Some(*c),
                        WireguardAllowedIpAttr::Family(f) => family = Some(u16::from(*f)),
                        _ => {}
                    }
                }
                if family.is_some_and(|f| f != AF_INET) {
                    return None;
                }
                Ipv4Net::new(addr?, cidr?).ok()
            })),
            _ => {}
        }
    }
    state
}

/// Sends `payload` on a fresh generic netlink socket and collects the answers; `dump`
/// for a GET. The family id is resolved first (`nlctrl`).
async fn request<F>(what: &str, payload: F, family: u16, dump: bool) -> Result<Vec<F>, GenlError>
where
    F: GenlFamily + Clone + std::fmt::Debug + Unpin + Send + 'static,
    GenlMessage<F>: NetlinkSerializable + NetlinkDeserializable,
{
    let (connection, handle, _) =
        netlink_proto::new_connection::<GenlMessage<F>>(netlink_proto::sys::protocols::NETLINK_GENERIC)
            .map_err(GenlError::Connect)?;
    let task = tokio::spawn(connection);
    let mut genl = GenlMessage::from_payload(payload);
    genl.set_resolved_family_id(family);
    let mut message = NetlinkMessage::from(genl);
    message.header.flags = NLM_F_REQUEST | NLM_F_ACK | if dump { NLM_F_DUMP } else { 0 };
    message.finalize();
    let result = async {
        let mut answers = Vec::new();
        let mut stream = handle
            .request(message, netlink_proto::sys::SocketAddr::new(0, 0))
            .map_err(|_| GenlError::NoAnswer { what: what.to_string() })?;
        while let Some(answer) = stream.next().await {
            match answer.payload {
                NetlinkPayload::InnerMessage(m) => answers.push(m.payload),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(if e.raw_code() == -ENOENT && F::family_name() == "nlctrl" {
                        GenlError::NoFamily
                    } else {
                        GenlError::Kernel {
                            what: what.to_string(),
                            source: e.to_io(),
                        }
                    });
                }
                _ => {}
            }
        }
        Ok(answers)
    }
    .await;
    task.abort();
    result
}

/// The id the kernel gave the generic netlink family `name`; [`GenlError::NoFamily`]
/// without it.
async fn family_id(name: &str) -> Result<u16, GenlError> {
    let ask = GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(name.to_string())],
    };
    // nlctrl's own id is fixed (GENL_ID_CTRL).
    let answers = request(
        &format!("resolving the family {name}"),
        ask,
        libc::GENL_ID_CTRL as u16,
        false,
    )
    .await?;
    answers
        .iter()
        .flat_map(|a| &a.nlas)
        .find_map(|n| match n {
            GenlCtrlAttrs::FamilyId(id) => Some(*id),
            _ => None,
        })
        .ok_or(GenlError::NoFamily)
}

/// The device `ifname` as the kernel has it.
pub async fn read_device(ifname: &str) -> Result<DeviceState, GenlError> {
    let family = family_id(WireguardMessage::family_name()).await?;
    let answers = request(&format!("reading {ifname}"), get_device(ifname), family, true).await?;
    Ok(parse_device(&answers))
}

/// Makes `ifname` hold `private_key`, `listen_port` and exactly `peers`, changing only
/// what differs.
pub async fn configure(
    ifname: &str,
    private_key: &Key,
    listen_port: u16,
    peers: &[WantedPeer],
) -> Result<Changed, GenlError> {
    let family = family_id(WireguardMessage::family_name()).await?;
    let answers = request(&format!("reading {ifname}"), get_device(ifname), family, true).await?;
    let have = parse_device(&answers);
    let messages = set_device(ifname, &have, private_key, listen_port, peers);
    let changed = Changed {
        added: peers
            .iter()
            .filter(|w| !have.peers.iter().any(|p| p.public_key == w.public_key))
            .count(),
        removed: have
            .peers
            .iter()
            .filter(|p| !peers.iter().any(|w| w.public_key == p.public_key))
            .count(),
        any: !messages.is_empty(),
    };
    for message in messages {
        request(&format!("configuring {ifname}"), message, family, false).await?;
    }
    Ok(changed)
}

/// What [`configure`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    pub added: usize,
    pub removed: usize,
    pub any: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, ParseableParametrized};
    use netlink_packet_generic::GenlHeader;

    fn key(b: u8) -> Key {
        Key([b; 32])
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap_or_else(|_| Ipv4Net::default())
    }

    fn wanted(b: u8, ips: &[&str]) -> WantedPeer {
        WantedPeer {
            public_key: key(b),
            allowed_ips: ips.iter().map(|s| net(s)).collect(),
        }
    }

    fn state(b: u8, ips: &[&str]) -> PeerState {
        PeerState {
            public_key: key(b),
            allowed_ips: ips.iter().map(|s| net(s)).collect(),
            last_handshake: Some(1_700_000_000),
            rx_bytes: 10,
            tx_bytes: 20,
        }
    }

    /// The message as the kernel receives it (generic netlink header and attributes),
    /// parsed back: what the kernel will read.
    fn on_the_wire(m: &WireguardMessage) -> (Vec<u8>, WireguardMessage) {
        let header = GenlHeader {
            cmd: m.cmd.into(),
            version: 1,
        };
        let mut bytes = vec![0; header.buffer_len() + m.buffer_len()];
        header.emit(&mut bytes);
        m.emit(&mut bytes[4..]);
        let parsed = WireguardMessage::parse_with_param(&bytes[4..], GenlHeader::parse(&bytes[..]).expect("header"))
            .expect("parses");
        (bytes, parsed)
    }

    #[test]
    fn a_new_device_gets_key_port_and_every_peer_without_replacing_the_list() {
        let private = key(7);
        let messages = set_device(
            "wg0",
            &DeviceState::default(),
            &private,
            51820,
            &[wanted(1, &["10.99.0.2/32"])],
        );
        assert_eq!(messages.len(), 1);
        let (bytes, parsed) = on_the_wire(&messages[0]);
        assert_eq!(bytes[0], 1, "WG_CMD_SET_DEVICE");
        assert_eq!(parsed, messages[0]);
        assert_eq!(
            parsed.attributes,
            vec![
                WireguardAttribute::IfName("wg0".into()),
                WireguardAttribute::PrivateKey([7; 32]),
                WireguardAttribute::ListenPort(51820),
                WireguardAttribute::Peers(vec![WireguardPeer(vec![
                    WireguardPeerAttribute::PublicKey([1; 32]),
                    WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
                    WireguardPeerAttribute::AllowedIps(vec![WireguardAllowedIp(vec![
                        WireguardAllowedIpAttr::Family(WireguardAddressFamily::Ipv4),
                        WireguardAllowedIpAttr::IpAddr(IpAddr::V4("10.99.0.2".parse().expect("ip"))),
                        WireguardAllowedIpAttr::Cidr(32),
                    ])]),
                ])]),
            ],
            "no WGDEVICE_A_FLAGS: REPLACE_PEERS would end every session"
        );
    }

    #[test]
    fn a_reload_removes_and_adds_single_peers_and_leaves_the_others_alone() {
        let have = DeviceState {
            private_key: Some(key(7)),
            listen_port: 51820,
            peers: vec![state(1, &["10.99.0.2/32"]), state(2, &["10.99.0.3/32"])],
        };
        let peers = [wanted(1, &["10.99.0.2/32"]), wanted(3, &["10.99.0.4/32"])];
        let messages = set_device("wg0", &have, &key(7), 51820, &peers);
        assert_eq!(messages.len(), 1);
        let (_, parsed) = on_the_wire(&messages[0]);
        assert_eq!(
            parsed.attributes,
            vec![
                WireguardAttribute::IfName("wg0".into()),
                WireguardAttribute::Peers(vec![
                    WireguardPeer(vec![
                        WireguardPeerAttribute::PublicKey([2; 32]),
                        WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe),
                    ]),
                    WireguardPeer(vec![
                        WireguardPeerAttribute::PublicKey([3; 32]),
                        WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
                        WireguardPeerAttribute::AllowedIps(vec![allowed_ip(net("10.99.0.4/32"))]),
                    ]),
                ]),
            ],
            "peer 1 is not in the message: its session is untouched"
        );
        let same = [wanted(1, &["10.99.0.2/32"]), wanted(2, &["10.99.0.3/32"])];
        assert!(
            set_device("wg0", &have, &key(7), 51820, &same).is_empty(),
            "nothing differs, nothing sent"
        );
        let moved = set_device("wg0", &have, &key(7), 51821, &same);
        assert_eq!(
            moved[0].attributes,
            vec![
                WireguardAttribute::IfName("wg0".into()),
                WireguardAttribute::ListenPort(51821)
            ]
        );
    }

    #[test]
    fn a_dump_split_across_messages_is_one_device() {
        let peer = |b: u8, ips: &[&str], rx: u64| {
            let mut attrs = vec![WireguardPeerAttribute::PublicKey([b; 32])];
            attrs.push(WireguardPeerAttribute::AllowedIps(
                ips.iter().map(|s| allowed_ip(net(s))).collect(),
            ));
            attrs.push(WireguardPeerAttribute::RxBytes(rx));
            attrs.push(WireguardPeerAttribute::TxBytes(2 * rx));
            WireguardPeer(attrs)
        };
        let answers = [
            WireguardMessage {
                cmd: WireguardCmd::GetDevice,
                attributes: vec![
                    WireguardAttribute::PrivateKey([7; 32]),
                    WireguardAttribute::ListenPort(51820),
                    WireguardAttribute::Peers(vec![peer(1, &["10.99.0.2/32"], 5), peer(2, &["10.99.0.3/32"], 6)]),
                ],
            },
            WireguardMessage {
                cmd: WireguardCmd::GetDevice,
                attributes: vec![WireguardAttribute::Peers(vec![peer(2, &["10.99.0.64/26"], 6)])],
            },
        ];
        let device = parse_device(&answers);
        assert_eq!(device.private_key, Some(key(7)));
        assert_eq!(device.listen_port, 51820);
        assert_eq!(device.peers.len(), 2);
        assert_eq!(device.peers[1].allowed_ips, [net("10.99.0.3/32"), net("10.99.0.64/26")]);
        assert_eq!((device.peers[0].rx_bytes, device.peers[0].tx_bytes), (5, 10));
        assert_eq!(device.peers[0].last_handshake, None, "never");
    }

    /// Against this machine's kernel: the family lookup works, and a missing family
    /// (wireguard, on a kernel without it) is told apart from other failures.
    #[tokio::test]
    async fn families_are_resolved_by_the_kernel_and_a_missing_one_is_named() {
        assert_eq!(family_id("nlctrl").await.ok(), Some(libc::GENL_ID_CTRL as u16));
        assert!(matches!(family_id("no-such-family").await, Err(GenlError::NoFamily)));
        // A dump (as GET_DEVICE is) comes back whole: every family, nlctrl among them.
        let all = GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: Vec::new(),
        };
        let families = request("listing families", all, libc::GENL_ID_CTRL as u16, true)
            .await
            .unwrap_or_default();
        assert!(
            families
                .iter()
                .any(|f| f.nlas.contains(&GenlCtrlAttrs::FamilyName("nlctrl".into()))),
            "{families:?}"
        );
    }

    #[test]
    fn the_get_request_names_the_interface() {
        let (bytes, _) = on_the_wire(&get_device("wg0"));
        assert_eq!(
            bytes,
            [0, 1, 0, 0, 8, 0, 2, 0, b'w', b'g', b'0', 0],
            "WG_CMD_GET_DEVICE, WGDEVICE_A_IFNAME"
        );
    }
}
