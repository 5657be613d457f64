//! `routerd wireguard peer-config NAME`: the wg-quick config of one peer.

use std::fmt::Write;

use config::wireguard::{Key, Peer, WireGuard};
use config::Config;

/// How often the peer says it is there, so that a NAT in front of it keeps the way in open.
const KEEPALIVE_SECS: u16 = 25;

/// The peer's wg-quick config (`/etc/wireguard/wg0.conf`): its address, a line for its
/// own private key (which the router never has), and the router as its one peer,
/// routing the tunnel subnet and the LANs it may reach.
pub fn render(config: &Config, wg: &WireGuard, peer: &Peer, router_key: &Key) -> String {
    let mut o = String::new();
    let addresses: Vec<String> = peer.allowed_ips.iter().map(|n| n.to_string()).collect();
    let mut routed = vec![wg.subnet().to_string()];
    routed.extend(
        config
            .lans
            .iter()
            .filter(|l| peer.reach.contains(&l.name))
            .map(|l| l.address.trunc().to_string()),
    );
    let _ = writeln!(
        o,
        "# WireGuard peer \"{}\" of {}: save as /etc/wireguard/wg0.conf, then `wg-quick up wg0`.",
        peer.name,
        config.system_hostname()
    );
    let _ = writeln!(o, "[Interface]");
    let _ = writeln!(o, "Address = {}", addresses.join(", "));
    let _ = writeln!(
        o,
        "# This peer's own private key goes here (`wg genkey`): the one whose `wg pubkey` is"
    );
    let _ = writeln!(o, "# {} (public_key in router.toml).", peer.public_key);
    let _ = writeln!(o, "PrivateKey = <this peer's private key>");
    if config.dns.is_some() {
        let _ = writeln!(
            o,
            "# The router's resolver answers in the tunnel (wg-quick needs resolvconf for this line):"
        );
        let _ = writeln!(o, "# DNS = {}", wg.address.addr());
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "[Peer]");
    let _ = writeln!(o, "PublicKey = {router_key}");
    let _ = writeln!(o, "Endpoint = {}:{}", wg.public, wg.listen_port);
    let _ = writeln!(o, "AllowedIPs = {}", routed.join(", "));
    if peer.internet {
        let _ = writeln!(
            o,
            "# The router lets this peer out to the internet: AllowedIPs = 0.0.0.0/0 sends everything through it."
        );
    }
    let _ = writeln!(o, "PersistentKeepalive = {KEEPALIVE_SECS}");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_routes_the_tunnel_and_the_reachable_lans_to_the_router() {
        let text = "[wan]\ninterface = \"eth0\"\naddress = \"203.0.113.10/32\"\ngateway = \"203.0.113.254\"\n[[lan]]\nname = \"prod\"\ninterface = \"eth1\"\naddress = \"172.16.0.1/16\"\n[lan.dhcp]\nrange = \"172.16.10.100-172.16.10.110\"\n[[lan]]\nname = \"dev\"\ninterface = \"eth2\"\naddress = \"172.17.0.1/16\"\n[wireguard]\nlisten_port = 51820\naddress = \"10.99.0.1/24\"\n[[wireguard.peer]]\nname = \"laptop\"\npublic_key = \"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=\"\nallowed_ips = [\"10.99.0.2/32\"]\nreach = [\"prod\"]\n";
        let config = Config::parse(text, "router.toml").expect("valid");
        let wg = config.wireguard.as_ref().expect("wireguard");
        let router = Key([9; 32]);
        let out = render(&config, wg, &wg.peers[0], &router);
        let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "[Interface]",
                "Address = 10.99.0.2/32",
                "PrivateKey = <this peer's private key>",
                "",
                "[Peer]",
                &format!("PublicKey = {router}"),
                "Endpoint = 203.0.113.10:51820",
                "AllowedIPs = 10.99.0.0/24, 172.16.0.0/16",
                "PersistentKeepalive = 25",
            ]
        );
        assert!(out.contains("# DNS = 10.99.0.1\n"), "{out}");
        assert!(
            out.contains("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo= (public_key in router.toml)"),
            "{out}"
        );
    }
}
