//! WireGuard in the appliance image, against a real peer: the peer VM (testkit's
//! `vm::peer`: the image's Debian kernel, wireguard-tools' `wg`; the host kernel has no
//! wireguard module) on the internet side handshakes with the router VM, reaches LAN
//! guests' TCP ports through the tunnel where `reach` allows and nowhere else; a key the
//! router does not know gets nothing; a peer removed from the config can no longer
//! handshake after a reload without it (the config disk swapped while the router runs,
//! as on Proxmox), while the others' peers stay as they were. Then the laptop connects with what
//! `routerd wireguard peer-config` prints, through wg-quick. Needs root, QEMU and the
//! built image (qemu/build).

use std::time::{Duration, Instant};

use testkit::http::{get, metric};
use testkit::lab::{routerd_bin, Lab, FAILOVER_IP, GUEST_IP, ROUTER_LAN_IP};
use testkit::netns::Netns;
use testkit::traffic::EchoServer;
use testkit::vm::peer::PeerVm;
use testkit::vm::{add_vm_lan2, config_disk, vm_lab, Vm, VmOptions, VmTuning, BOOT_TIMEOUT, LAN2_MAC, LAN_MAC};

const DMZ_GUEST_IP: &str = "10.20.0.50";
const ROUTER_TUNNEL_IP: &str = "10.99.0.1";
const LAPTOP_IP: &str = "10.99.0.2";
const PHONE_IP: &str = "10.99.0.3";
const STRANGER_IP: &str = "10.99.0.9";
const ECHO_PORT: u16 = 7100;

/// Two LANs (prod on the second NIC, dmz on the third) and the tunnel with the peers
/// `laptop` (reach: all LANs, the default) and, when `phone` is set, `phone` (reach:
/// dmz only).
fn config(laptop: &str, phone: Option<&str>) -> String {
    let mut text = format!(
        r#"hostname = "router"

[wan]
mac = "02:00:00:00:00:10"
address = "{FAILOVER_IP}/32"
gateway = "203.0.113.254"
dns = ["198.51.100.53"]

[[lan]]
name = "prod"
mac = "{LAN_MAC}"
address = "{ROUTER_LAN_IP}/16"

[[lan]]
name = "dmz"
mac = "{LAN2_MAC}"
address = "10.20.0.1/24"

[wireguard]
listen_port = 51820
address = "{ROUTER_TUNNEL_IP}/24"

[[wireguard.peer]]
name = "laptop"
public_key = "{laptop}"
allowed_ips = ["{LAPTOP_IP}/32"]
"#
    );
    if let Some(phone) = phone {
        text += &format!(
            r#"
[[wireguard.peer]]
name = "phone"
public_key = "{phone}"
allowed_ips = ["{PHONE_IP}/32"]
reach = ["dmz"]
"#
        );
    }
    text
}

/// The router's public key from its console (routerd shows it on every start): the
/// 44-character base64 word on the line "WireGuard public key of this router: ...".
fn router_public_key(vm: &mut Vm) -> String {
    vm.wait_console("WireGuard public key", Duration::from_secs(60));
    let console = vm.console_text();
    console
        .lines()
        .filter(|l| l.contains("WireGuard public key"))
        .flat_map(|l| l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=')))
        .find(|w| w.len() == 44 && w.ends_with('='))
        .unwrap_or_else(|| panic!("no WireGuard public key on the router's console:\n{console}"))
        .to_string()
}

/// (Re)creates the peer VM's wg0 as one peer: its key file, its tunnel address, the
/// router as its one peer with both LANs routed into the tunnel. A new wg0 starts
/// with no session.
fn peer_as(peer: &mut PeerVm, key_file: &str, address: &str, router_key: &str) {
    peer.ok(&format!(
        "ip link del wg0 2>/dev/null; \
         ip link add wg0 type wireguard && \
         wg set wg0 private-key {key_file} listen-port 51820 \
            peer {router_key} endpoint {FAILOVER_IP}:51820 \
            allowed-ips 10.99.0.0/24,172.16.0.0/16,10.20.0.0/24 && \
         ip addr add {address}/24 dev wg0 && ip link set wg0 up && \
         ip route add 172.16.0.0/16 dev wg0 && ip route add 10.20.0.0/24 dev wg0"
    ));
}

/// Sends packets into the tunnel until wg0 shows a handshake (WireGuard retries every
/// 5 s) or about 40 s pass; the seconds-since-epoch of the latest handshake, 0 for none.
fn handshake(peer: &mut PeerVm) -> u64 {
    let out = peer.ok(&format!(
        "i=0; while [ $i -lt 20 ]; do \
           ping -c 1 -W 2 {ROUTER_TUNNEL_IP} >/dev/null 2>&1; \
           [ \"$(wg show wg0 latest-handshakes | cut -f2)\" != 0 ] && break; \
           i=$((i+1)); \
         done; wg show wg0 latest-handshakes | cut -f2"
    ));
    out.trim()
        .parse()
        .unwrap_or_else(|e| panic!("latest-handshakes {out:?}: {e}"))
}

/// `routerd wireguard peer-config NAME` as an admin runs it away from the appliance
/// (which has no shell): the host's routerd on the router's config file, with the
/// router's public key from its console.
fn peer_config(lab: &Lab, config_file: &str, name: &str, router_key: &str) -> String {
    let out = std::process::Command::new(routerd_bin())
        .args(["wireguard", "peer-config", name, "--config"])
        .arg(lab.dir.join(config_file))
        .args(["--router-key", router_key])
        .output()
        .unwrap_or_else(|e| panic!("routerd wireguard peer-config: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "routerd wireguard peer-config {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("routerd wireguard peer-config {name}:\n{text}");
    text
}

fn saw(server: &EchoServer, ip: &str) -> bool {
    server.peers().iter().any(|p| p.ip().to_string() == ip)
}

/// A guest on the dmz LAN (the VM's third NIC); returns the LAN's bridge namespace
/// (kept for the test's length) and the guest.
fn dmz_guest(lab: &Lab) -> (Netns, Netns) {
    let dmz = add_vm_lan2(lab);
    let g = lab.add_guest_on(&dmz, "dmzguest", "52:54:00:00:20:50");
    g.ip(&["addr", "add", &format!("{DMZ_GUEST_IP}/24"), "dev", "eth0"]);
    g.ip(&["route", "add", "default", "via", "10.20.0.1"]);
    (dmz, g)
}

#[test]
fn a_wireguard_peer_reaches_the_lans_it_may_and_nothing_else() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    let (_dmz_lan, dmz) = dmz_guest(&lab);
    let prod_echo = EchoServer::tcp(&lab.guest, &format!("{GUEST_IP}:{ECHO_PORT}"));
    let dmz_echo = EchoServer::tcp(&dmz, &format!("{DMZ_GUEST_IP}:{ECHO_PORT}"));

    // The peer VM first: its keys go into the router's config.
    let mut peer = PeerVm::start(&lab);
    let mut key = |name: &str| -> String {
        peer.ok(&format!(
            "umask 077; wg genkey > /root/{name}.key && wg pubkey < /root/{name}.key"
        ))
        .trim()
        .to_string()
    };
    let (laptop, phone, _stranger) = (key("laptop"), key("phone"), key("stranger"));

    let disk = config_disk(&lab.dir, "config", &config(&laptop, Some(&phone)), true);
    let tuning = VmTuning {
        lan2: true,
        ..VmTuning::default()
    };
    let mut vm = Vm::start_tuned(
        &lab,
        VmOptions {
            uefi: false,
            config: Some(disk),
        },
        tuning,
    );
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    let router_key = router_public_key(&mut vm);

    // laptop: reach = all LANs.
    peer_as(&mut peer, "/root/laptop.key", LAPTOP_IP, &router_key);
    assert_ne!(handshake(&mut peer), 0, "laptop: no handshake with the router");
    assert_eq!(
        peer.tcp_echo(GUEST_IP, ECHO_PORT, "laptop-prod").as_deref(),
        Some("laptop-prod")
    );
    assert_eq!(
        peer.tcp_echo(DMZ_GUEST_IP, ECHO_PORT, "laptop-dmz").as_deref(),
        Some("laptop-dmz")
    );
    assert!(saw(&prod_echo, LAPTOP_IP), "prod's guest sees the tunnel address");
    assert!(saw(&dmz_echo, LAPTOP_IP), "dmz's guest sees the tunnel address");
    // The status page's metrics show the laptop's handshake and its bytes.
    let metrics = metrics_when(&lab, "the laptop's handshake", |m| {
        metric(m, "router_wireguard_peer_last_handshake_seconds", &[("peer", "laptop")]).is_some_and(|v| v > 0.0)
    });
    assert!(
        metric(&metrics, "router_wireguard_peer_rx_bytes_total", &[("peer", "laptop")]).is_some_and(|v| v > 0.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "router_wireguard_peer_last_handshake_seconds",
            &[("peer", "phone")]
        ),
        Some(0.0),
        "{metrics}"
    );

    // Nothing from a LAN opens a connection into the tunnel: a prod guest's connect to
    // a port the laptop listens on does not arrive (the local connect after it shows
    // the listener was there all along).
    peer.ok("nc -l -p 7200 < /dev/null > /tmp/from-lan 2>&1 &");
    let from_lan = testkit::traffic::tcp_connect(&lab.guest, &format!("{LAPTOP_IP}:7200"))
        .and_then(|mut s| std::io::Write::write_all(&mut s, b"from-lan\n"));
    let got = peer.ok("echo local | nc -w 2 127.0.0.1 7200; sleep 1; cat /tmp/from-lan");
    assert_eq!(
        got.trim(),
        "local",
        "a LAN guest opened a connection into the tunnel ({from_lan:?})"
    );

    // phone: reach = ["dmz"]: dmz answers, prod is refused.
    peer_as(&mut peer, "/root/phone.key", PHONE_IP, &router_key);
    assert_ne!(handshake(&mut peer), 0, "phone: no handshake with the router");
    assert_eq!(
        peer.tcp_echo(DMZ_GUEST_IP, ECHO_PORT, "phone-dmz").as_deref(),
        Some("phone-dmz")
    );
    assert_eq!(
        peer.tcp_echo(GUEST_IP, ECHO_PORT, "phone-prod"),
        None,
        "phone reached prod"
    );
    assert!(!saw(&prod_echo, PHONE_IP), "a connection from the phone reached prod");

    // A key the router does not know: no handshake, nothing reaches a LAN.
    peer_as(&mut peer, "/root/stranger.key", STRANGER_IP, &router_key);
    assert_eq!(handshake(&mut peer), 0, "the router shook hands with an unknown key");
    assert_eq!(peer.tcp_echo(DMZ_GUEST_IP, ECHO_PORT, "stranger"), None);
    assert!(!saw(&prod_echo, STRANGER_IP) && !saw(&dmz_echo, STRANGER_IP));

    // The phone has a session; a reload without it (the config disk swapped while
    // the router runs) ends it for good, and the laptop's peer stays as it was: its
    // received bytes keep counting from where they were (a peer removed and added
    // again would start from 0).
    peer_as(&mut peer, "/root/phone.key", PHONE_IP, &router_key);
    assert_ne!(handshake(&mut peer), 0, "phone: no handshake before the removal");
    let laptop_rx = |m: &str| metric(m, "router_wireguard_peer_rx_bytes_total", &[("peer", "laptop")]);
    let before = metrics_when(&lab, "the laptop's bytes", |m| laptop_rx(m).is_some_and(|v| v > 0.0));
    let rx_before = laptop_rx(&before).unwrap_or(0.0);
    let disk = config_disk(&lab.dir, "config-no-phone", &config(&laptop, None), true);
    vm.swap_config_disk(&disk);
    let after = metrics_when(&lab, "the reload without the phone", |m| !m.contains("peer=\"phone\""));
    assert!(
        laptop_rx(&after).is_some_and(|v| v >= rx_before),
        "the laptop's peer was reset by the reload: rx {rx_before} before, {:?} after\n{after}",
        laptop_rx(&after)
    );
    assert_eq!(
        vm.console_text().matches("routerd ready").count(),
        1,
        "the reload restarted routerd"
    );
    peer_as(&mut peer, "/root/phone.key", PHONE_IP, &router_key);
    assert_eq!(handshake(&mut peer), 0, "the removed phone still shakes hands");
    assert_eq!(peer.tcp_echo(DMZ_GUEST_IP, ECHO_PORT, "removed"), None);
    // The laptop, still in the config, still gets in, now as the README says: the
    // config `routerd wireguard peer-config laptop` prints, its private key filled in,
    // brought up with wg-quick.
    let laptop_conf = peer_config(&lab, "config-no-phone.toml", "laptop", &router_key);
    peer.ok("ip link del wg0");
    peer.write_file("/etc/wireguard/wg0.conf", &laptop_conf);
    peer.ok(
        "sed -i \"s|^PrivateKey = .*|PrivateKey = $(cat /root/laptop.key)|\" /etc/wireguard/wg0.conf && \
         chmod 600 /etc/wireguard/wg0.conf && wg-quick up wg0",
    );
    assert_ne!(handshake(&mut peer), 0, "laptop: no handshake after the reload");
    assert_eq!(peer.tcp_echo(GUEST_IP, ECHO_PORT, "again").as_deref(), Some("again"));
    assert_eq!(
        peer.tcp_echo(DMZ_GUEST_IP, ECHO_PORT, "again-dmz").as_deref(),
        Some("again-dmz")
    );
}

/// The router's `/metrics` (from the prod LAN) once `ready` holds for it (bounded).
fn metrics_when(lab: &Lab, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = get(&lab.guest, &format!("{ROUTER_LAN_IP}:80"), "/metrics");
        match got {
            Ok((200, body)) if ready(&body) => return body,
            other if Instant::now() > deadline => panic!("/metrics never showed {what}: {other:?}"),
            _ => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}
