//! The WireGuard peer VM alone (no router): proves the harness the WireGuard boot test
//! (wireguard_vm.rs) stands on. The peer boots the image's Debian kernel, loads the
//! wireguard module, brings up wg0 with `wg` and another interface with `wg-quick`, and
//! reaches the hoster on the internet side. Needs root and QEMU; `image peer-vm`
//! downloads its packages the first time.

use testkit::lab::Lab;
use testkit::traffic::EchoServer;
use testkit::vm::peer::{PeerVm, PEER_GATEWAY, PEER_IP};
use testkit::vm::vm_lab;

#[test]
fn peer_vm_brings_up_wg0_and_reaches_the_hoster() {
    // The image: where the QEMU tests' builds are (the peer VM comes from the same
    // image builder and package cache).
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab: Lab = vm_lab();
    let mut peer = PeerVm::start(&lab);
    // Keys from the peer's own wireguard-tools.
    let public = peer.ok("umask 077; wg genkey > /root/wg.key && wg pubkey < /root/wg.key");
    let public = public.trim();
    assert_eq!(public.len(), 44, "a base64 public key: {public:?}");
    let other = peer.ok("wg genkey | wg pubkey");
    let other = other.trim();
    peer.ok(&format!(
        "ip link add wg0 type wireguard && \
         wg set wg0 private-key /root/wg.key listen-port 51820 \
            peer {other} allowed-ips 10.99.0.1/32 endpoint 203.0.113.10:51820 && \
         ip addr add 10.99.0.2/24 dev wg0 && ip link set wg0 up"
    ));
    let show = peer.ok("wg show wg0");
    assert!(show.contains(&format!("public key: {public}")), "{show}");
    assert!(show.contains("listening port: 51820"), "{show}");
    assert!(show.contains(&format!("peer: {other}")), "{show}");
    assert!(show.contains("allowed ips: 10.99.0.1/32"), "{show}");
    let link = peer.ok("ip -o link show wg0; ip -o addr show wg0");
    assert!(link.contains("UP"), "{link}");
    assert!(link.contains("10.99.0.2/24"), "{link}");
    // wg-quick, as a laptop runs it: a config file brings up an interface with its
    // address and a route per AllowedIPs, and takes it down again.
    peer.ok("wg genkey > /root/q.key");
    let q_key = peer.ok("cat /root/q.key");
    peer.write_file(
        "/etc/wireguard/wgq.conf",
        &format!(
            "[Interface]\nAddress = 10.98.0.2/32\nPrivateKey = {}\n\n[Peer]\nPublicKey = {other}\n\
             Endpoint = 203.0.113.10:51821\nAllowedIPs = 10.98.0.0/24, 172.31.0.0/16\n",
            q_key.trim()
        ),
    );
    peer.ok("chmod 600 /etc/wireguard/wgq.conf && wg-quick up wgq");
    let routes = peer.ok("ip route show dev wgq");
    assert!(
        routes.contains("10.98.0.0/24") && routes.contains("172.31.0.0/16"),
        "{routes}"
    );
    assert!(peer.ok("wg show wgq endpoints").contains("203.0.113.10:51821"));
    peer.ok("wg-quick down wgq");
    assert_ne!(peer.sh("ip link show wgq").0, 0, "wg-quick down left wgq");

    // The internet side: the hoster answers the peer (its NIC and routes work), also
    // on a TCP port (the exchange the WireGuard test makes through the tunnel).
    let ping = peer.ok(&format!("ping -c 1 -W 5 {PEER_GATEWAY}"));
    assert!(ping.contains("1 packets received"), "{ping}");
    let server = EchoServer::tcp(&lab.hoster, &format!("{PEER_GATEWAY}:7100"));
    assert_eq!(peer.tcp_echo(PEER_GATEWAY, 7100, "hello").as_deref(), Some("hello"));
    assert_eq!(server.last_peer_ip().as_deref(), Some(PEER_IP));
    // Nothing listens on 7101: no answer, and the helper says so.
    assert_eq!(peer.tcp_echo(PEER_GATEWAY, 7101, "nobody"), None);
}
