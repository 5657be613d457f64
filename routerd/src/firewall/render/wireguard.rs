//! The WireGuard rules (only with `[wireguard]`): the listen port open on its public
//! address from the WAN, and per peer what it may open through the tunnel. WireGuard
//! itself drops what a peer sends from outside its allowed IPs, so the source address
//! names the peer. Nothing opens into the tunnel: replies pass as established.

use super::*;

use config::wireguard::{Peer, WireGuard, IFNAME};

fn peer_sources(peers: &[&Peer]) -> Expression<'static> {
    let nets: Vec<Ipv4Net> = peers.iter().flat_map(|p| p.allowed_ips.iter().copied()).collect();
    lan_prefixes(&nets)
}

fn from_tunnel() -> Statement<'static> {
    m(meta(MetaKey::Iifname), Operator::EQ, s(IFNAME))
}

/// Matches that keep the tunnel's flows out of the flowtable.
pub(super) fn not_offloaded() -> [Statement<'static>; 2] {
    [
        m(meta(MetaKey::Iifname), Operator::NEQ, s(IFNAME)),
        m(meta(MetaKey::Oifname), Operator::NEQ, s(IFNAME)),
    ]
}

/// input: the port from the WAN; DNS, the status page and ping from the peers.
pub(super) fn input(config: &Config, wg: &WireGuard, wan: &str) -> Vec<Rule<'static>> {
    let mut rules = vec![rule(
        "input",
        vec![
            m(meta(MetaKey::Iifname), Operator::EQ, s(wan)),
            m(payload("ip", "daddr"), Operator::EQ, s(&wg.public.to_string())),
            m(payload("udp", "dport"), Operator::EQ, num(u32::from(wg.listen_port))),
            accept(),
        ],
        Some("WireGuard from the internet"),
    )];
    let peers: Vec<&Peer> = wg.peers.iter().collect();
    if peers.is_empty() {
        return rules;
    }
    rules.push(rule(
        "input",
        vec![
            from_tunnel(),
            m(payload("ip", "saddr"), Operator::EQ, peer_sources(&peers)),
            m(meta(MetaKey::L4proto), Operator::EQ, s("icmp")),
            m(payload("icmp", "type"), Operator::EQ, s("echo-request")),
            accept(),
        ],
        Some("ping from the WireGuard peers"),
    ));
    // The resolver answers the peers on the router's tunnel address (see dns::Setup).
    if config.dns.is_some() {
        for transport in ["udp", "tcp"] {
            rules.push(rule(
                "input",
                vec![
                    from_tunnel(),
                    m(payload("ip", "saddr"), Operator::EQ, peer_sources(&peers)),
                    m(payload("ip", "daddr"), Operator::EQ, s(&wg.address.addr().to_string())),
                    m(payload(transport, "dport"), Operator::EQ, num(53)),
                    accept(),
                ],
                Some("DNS from the WireGuard peers"),
            ));
        }
    }
    if let Some(status) = &config.status {
        let served: Vec<Ipv4Addr> = config
            .lans
            .iter()
            .filter(|l| status.serves(&l.name))
            .map(|l| l.address.addr())
            .collect();
        if !served.is_empty() {
            rules.push(rule(
                "input",
                vec![
                    from_tunnel(),
                    m(payload("ip", "saddr"), Operator::EQ, peer_sources(&peers)),
                    m(payload("ip", "daddr"), Operator::EQ, one_or_set(&served)),
                    m(payload("tcp", "dport"), Operator::EQ, num(u32::from(status.port))),
                    accept(),
                ],
                Some("status page and metrics from the WireGuard peers"),
            ));
        }
    }
    rules
}

/// forward: each peer to the LANs of its `reach`, and to the internet with `internet`.
pub(super) fn forward(wg: &WireGuard, lans: &[LanRules], wan: &str) -> Vec<Rule<'static>> {
    let mut rules = Vec::new();
    for peer in &wg.peers {
        let reach: Vec<&str> = lans
            .iter()
            .filter(|l| peer.reach.contains(&l.lan.name))
            .map(|l| l.ifname)
            .collect();
        if !reach.is_empty() {
            rules.push(rule(
                "forward",
                vec![
                    from_tunnel(),
                    m(payload("ip", "saddr"), Operator::EQ, peer_sources(&[peer])),
                    m(meta(MetaKey::Oifname), Operator::EQ, one_or_set(&reach)),
                    accept(),
                ],
                Some(&format!(
                    "WireGuard peer {} may reach {}",
                    peer.name,
                    peer.reach.join(", ")
                )),
            ));
        }
        if peer.internet {
            rules.push(rule(
                "forward",
                vec![
                    from_tunnel(),
                    m(payload("ip", "saddr"), Operator::EQ, peer_sources(&[peer])),
                    m(meta(MetaKey::Oifname), Operator::EQ, s(wan)),
                    accept(),
                ],
                Some(&format!("WireGuard peer {} to the internet", peer.name)),
            ));
        }
    }
    rules
}

/// postrouting: the peers with `internet` leave with the main WAN address, like a LAN.
pub(super) fn postrouting(config: &Config, wg: &WireGuard, wan: &str) -> Vec<Rule<'static>> {
    let out: Vec<&Peer> = wg.peers.iter().filter(|p| p.internet).collect();
    if out.is_empty() {
        return Vec::new();
    }
    vec![rule(
        "postrouting",
        vec![
            m(meta(MetaKey::Oifname), Operator::EQ, s(wan)),
            m(payload("ip", "saddr"), Operator::EQ, peer_sources(&out)),
            snat(config.wan.address.addr()),
        ],
        Some("WireGuard peers to the internet as the failover IP"),
    )]
}
