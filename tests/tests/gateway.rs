//! The gateway check at boot, in the namespace lab: the hoster's bridge drops every
//! frame whose source MAC is not the virtual MAC, so with the wrong MAC on the WAN
//! the gateway never answers ARP, and routerd must say so plainly, name the likely
//! causes and keep checking. Needs root (network namespaces) and `nft`.

use std::net::Ipv4Addr;
use std::time::Duration;

use testkit::http::{get, metric};
use testkit::lab::{Lab, Options, CONFIG, FAILOVER_IP, ROUTER_LAN_IP, VIRTUAL_MAC};
use testkit::netns::Netns;
use testkit::traffic::{tcp_echo, EchoServer};

const NO_ANSWER: &str = "the gateway 203.0.113.254 does not answer ARP on wan";
const ANSWERS: &str = "the gateway 203.0.113.254 answers ARP on wan";

/// The lab config with the WAN chosen by a MAC and nothing set on it: what a
/// cloud-init drive gives when net0 kept Proxmox's random MAC.
fn config_with_wan_mac(mac: &str) -> String {
    CONFIG
        .replace("interface = \"wan\"\n", "")
        .replace("mac = \"02:00:00:00:00:10\"", &format!("mac = \"{mac}\""))
}

#[test]
fn wrong_mac_on_the_wan_the_console_says_the_gateway_does_not_answer_and_why() {
    if !testkit::require_root() {
        return;
    }
    let wrong = "bc:24:11:2a:3b:4c";
    let mut lab = Lab::new(Options { wan_mac: Some(wrong) });
    lab.start_routerd(&config_with_wan_mac(wrong));
    lab.wait_log(NO_ANSWER, 1);
    let log = lab.log();
    eprintln!("routerd's log:\n{log}");
    let line = log.lines().find(|l| l.contains(NO_ANSWER)).unwrap_or_default();
    assert!(line.contains(&format!("this router sends from MAC {wrong}")), "{line}");
    assert!(line.contains("virtual MAC is not set on this VM's WAN NIC"), "{line}");
    assert!(
        line.contains("qm set ID --net0 virtio=VIRTUAL-MAC,bridge=vmbr0"),
        "{line}"
    );
    assert!(line.contains("the gateway is wrong"), "{line}");
    assert!(!log.contains(ANSWERS), "{log}");
    let (_, dropped) = lab.hoster_filter_counts();
    assert!(dropped > 0, "the hoster's MAC filter dropped the router's ARP requests");

    // routerd keeps checking: once the hoster accepts the router's MAC (here the
    // filter goes away), it says that the gateway answers.
    lab.hoster.sh("nft delete table bridge hoster");
    lab.wait_log(ANSWERS, 1);
}

#[test]
fn virtual_mac_on_the_wan_the_log_says_the_gateway_answers() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.start_routerd(CONFIG);
    lab.wait_log(ANSWERS, 1);
    assert!(!lab.log().contains(NO_ANSWER), "{}", lab.log());
}

// --- The gateway's MAC: a forged ARP reply from the WAN segment ----------------------

/// The hoster gateway's MAC in these tests: set on its bridge, so that adding ports
/// (the attacker's) cannot change it.
const GATEWAY_MAC: &str = "02:00:00:00:fe:01";
const ATTACKER_MAC: &str = "02:00:00:00:66:06";
const GATEWAY_IP: &str = "203.0.113.254";

/// A lab whose gateway has [`GATEWAY_MAC`] and with an attacker host on the WAN segment.
fn lab_with_attacker() -> (Lab, Netns) {
    let lab = Lab::new(Options { wan_mac: None });
    lab.hoster.ip(&["link", "set", "vmbr0", "address", GATEWAY_MAC]);
    let attacker = lab.add_wan_neighbour("attacker");
    attacker.ip(&["link", "set", "eth0", "address", ATTACKER_MAC]);
    (lab, attacker)
}

/// The router's neighbour entry for the gateway, as `ip neigh` shows it.
fn gateway_entry(lab: &Lab) -> String {
    lab.router
        .sh(&format!("ip neigh show {GATEWAY_IP} dev wan"))
        .trim()
        .to_string()
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    let mut b = [0u8; 6];
    for (byte, part) in b.iter_mut().zip(mac.split(':')) {
        *byte = u8::from_str_radix(part, 16).unwrap_or_else(|e| panic!("{mac}: {e}"));
    }
    b
}

/// An ARP frame (Ethernet, IPv4): `op` 1 is a request, 2 a reply.
fn arp_frame(op: u8, eth_dst: &str, sender: (&str, &str), target: (&str, &str)) -> [u8; 42] {
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap_or_else(|e| panic!("{s}: {e}")).octets();
    let mut frame = [0u8; 42];
    frame[0..6].copy_from_slice(&mac_bytes(eth_dst));
    frame[6..12].copy_from_slice(&mac_bytes(sender.0));
    frame[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    frame[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, op]); // Ethernet, IPv4
    frame[22..28].copy_from_slice(&mac_bytes(sender.0));
    frame[28..32].copy_from_slice(&ip(sender.1));
    frame[32..38].copy_from_slice(&mac_bytes(target.0));
    frame[38..42].copy_from_slice(&ip(target.1));
    frame
}

/// One forged ARP reply, from `ns`'s eth0: "GATEWAY_IP is at ATTACKER_MAC", sent
/// straight to the router's WAN MAC.
fn forge_gateway_reply(ns: &Netns) {
    let frame = arp_frame(2, VIRTUAL_MAC, (ATTACKER_MAC, GATEWAY_IP), (VIRTUAL_MAC, FAILOVER_IP));
    ns.enter(move || raw::send_frame("eth0", &frame))
        .unwrap_or_else(|e| panic!("sending the forged ARP reply: {e}"));
}

/// The one raw AF_PACKET send the tests need; std cannot address a NIC by index.
#[allow(unsafe_code)]
mod raw {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    pub fn send_frame(dev: &str, frame: &[u8]) -> io::Result<()> {
        let name = std::ffi::CString::new(dev).map_err(io::Error::other)?;
        // SAFETY: a NUL-terminated name; the result is checked.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: 0x0806u16.to_be(),
            sll_ifindex: i32::try_from(index).map_err(io::Error::other)?,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 6,
            sll_addr: [0; 8],
        };
        // SAFETY: sendto(2) of a slice with its exact length to a fully initialised sockaddr_ll.
        let rc = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[test]
fn a_forged_arp_reply_for_the_gateway_is_logged_and_counted() {
    if !testkit::require_root() {
        return;
    }
    let (mut lab, attacker) = lab_with_attacker();
    lab.start_routerd(CONFIG);
    lab.wait_log(ANSWERS, 1);
    assert!(gateway_entry(&lab).contains(GATEWAY_MAC), "{}", gateway_entry(&lab));

    // The kernel keeps a fresh answer for a second (locktime) before an unsolicited
    // reply may override it: forge until it does, as an attacker would.
    let mut tries = 0;
    while !gateway_entry(&lab).contains(ATTACKER_MAC) {
        tries += 1;
        assert!(tries <= 50, "the forged reply never took: {}", gateway_entry(&lab));
        forge_gateway_reply(&attacker);
        std::thread::sleep(Duration::from_millis(200));
    }
    lab.wait_log(
        &format!("the gateway {GATEWAY_IP}'s MAC on wan changed from {GATEWAY_MAC} to {ATTACKER_MAC}"),
        1,
    );
    let line = lab
        .log()
        .lines()
        .find(|l| l.contains("changed from"))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("ARP spoofing"), "{line}");
    assert!(
        line.contains(&format!("gateway_mac = \"{GATEWAY_MAC}\"")),
        "names the MAC to pin: {line}"
    );

    let (_, metrics) = get(&lab.guest, "172.16.0.1:80", "/metrics").expect("metrics from the LAN");
    let changes = metric(&metrics, "router_gateway_mac_changes_total", &[]).unwrap_or(0.0);
    assert!(changes >= 1.0, "{metrics}");
    eprintln!("routerd's log:\n{}", lab.log());
    let (_, page) = get(&lab.guest, "172.16.0.1:80", "/").expect("status page");
    assert!(
        page.contains(&format!("last from {GATEWAY_MAC} to {ATTACKER_MAC}")),
        "{page}"
    );
}

#[test]
fn a_pinned_gateway_mac_survives_a_forged_arp_reply_and_a_reload_without_it_unpins() {
    if !testkit::require_root() {
        return;
    }
    let (mut lab, attacker) = lab_with_attacker();
    let pinned = CONFIG.replace(
        &format!("gateway = \"{GATEWAY_IP}\"\n"),
        &format!("gateway = \"{GATEWAY_IP}\"\ngateway_mac = \"{GATEWAY_MAC}\"\n"),
    );
    lab.start_routerd(&pinned);
    // The kernel no longer asks the gateway; routerd does, and it answers with the pin.
    lab.wait_log(&format!("{ANSWERS} with its pinned MAC {GATEWAY_MAC}"), 1);
    let entry = gateway_entry(&lab);
    assert!(entry.contains(&format!("lladdr {GATEWAY_MAC} PERMANENT")), "{entry}");
    let (_, metrics) = get(&lab.guest, "172.16.0.1:80", "/metrics").expect("metrics from the LAN");
    assert_eq!(
        metric(&metrics, "router_gateway_reachable", &[("state", "pinned")]),
        Some(1.0),
        "{metrics}"
    );

    // The same forging that takes over an unpinned entry (the test above), for longer
    // than the kernel's one-second lock.
    for _ in 0..10 {
        forge_gateway_reply(&attacker);
        std::thread::sleep(Duration::from_millis(200));
    }
    let entry = gateway_entry(&lab);
    assert!(
        entry.contains(&format!("lladdr {GATEWAY_MAC} PERMANENT")),
        "the forged reply changed the pinned entry: {entry}"
    );
    let _inet = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    assert_eq!(
        tcp_echo(&lab.guest, "198.51.100.1:7000", "still out").expect("the guest reaches the internet"),
        "still out"
    );
    assert!(!lab.log().contains("changed from"), "{}", lab.log());

    // Applying the same config again changes nothing.
    let out = lab
        .router
        .command(testkit::lab::routerd_bin().to_str().unwrap_or("routerd"))
        .args(["apply", "--config"])
        .arg(lab.config_path())
        .output()
        .expect("routerd apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("neighbour"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without the key, the pin goes: ARP decides again.
    lab.reload(CONFIG);
    lab.wait_log("config applied", 1);
    let entry = gateway_entry(&lab);
    assert!(!entry.contains("PERMANENT"), "the pinned entry stayed: {entry}");
    assert!(lab.log().contains("pinned neighbour removed"), "{}", lab.log());
}

#[test]
fn a_lan_guest_claiming_the_router_lan_address_is_logged() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.start_routerd(CONFIG);
    let guest_mac = lab.guest.sh("cat /sys/class/net/eth0/address").trim().to_string();
    let web_mac = lab.web.sh("cat /sys/class/net/eth0/address").trim().to_string();
    let claim = |mac: &str| format!("the host with MAC {mac} on lan claims this router's LAN address {ROUTER_LAN_IP}");
    // A gratuitous ARP: "172.16.0.1 is at MAC", to every host on the LAN.
    let garp = |ns: &Netns, mac: &str| {
        let frame = arp_frame(
            1,
            "ff:ff:ff:ff:ff:ff",
            (mac, ROUTER_LAN_IP),
            ("00:00:00:00:00:00", ROUTER_LAN_IP),
        );
        ns.enter(move || raw::send_frame("eth0", &frame))
            .unwrap_or_else(|e| panic!("sending the gratuitous ARP: {e}"));
    };
    // routerd starts listening just after it says it is ready: repeat until it hears.
    let mut tries = 0;
    while !lab.log().contains(&claim(&guest_mac)) {
        tries += 1;
        assert!(
            tries <= 50,
            "routerd did not log {:?}:\n{}",
            claim(&guest_mac),
            lab.log()
        );
        garp(&lab.guest, &guest_mac);
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = lab.log();
    let line = log.lines().find(|l| l.contains(&claim(&guest_mac))).unwrap_or_default();
    assert!(line.contains("WARN"), "{line}");

    // Rate-limited per MAC: more of the same are not logged again, another host is.
    for _ in 0..3 {
        garp(&lab.guest, &guest_mac);
    }
    garp(&lab.web, &web_mac);
    lab.wait_log(&claim(&web_mac), 1);
    // The web host's frame came after the guest's: those were heard, and not logged.
    assert_eq!(lab.log().matches(&claim(&guest_mac)).count(), 1, "{}", lab.log());
}

#[test]
fn a_wrong_pinned_gateway_mac_is_named_with_the_mac_the_gateway_answers_with() {
    if !testkit::require_root() {
        return;
    }
    let (mut lab, _attacker) = lab_with_attacker();
    let wrong = "02:00:00:00:fe:99";
    lab.start_routerd(&CONFIG.replace(
        &format!("gateway = \"{GATEWAY_IP}\"\n"),
        &format!("gateway = \"{GATEWAY_IP}\"\ngateway_mac = \"{wrong}\"\n"),
    ));
    let warning =
        format!("the gateway {GATEWAY_IP} answers ARP on wan with MAC {GATEWAY_MAC}, but wan.gateway_mac pins {wrong}");
    lab.wait_log(&warning, 1);
    let log = lab.log();
    let line = log.lines().find(|l| l.contains(&warning)).unwrap_or_default();
    assert!(line.contains("WARN"), "{line}");
    assert!(!log.contains("with its pinned MAC"), "{log}");
    // The kernel's entry is permanent either way: the page goes by what the gateway said.
    let (_, metrics) = get(&lab.guest, "172.16.0.1:80", "/metrics").expect("metrics from the LAN");
    assert_eq!(
        metric(&metrics, "router_gateway_reachable", &[]),
        Some(0.0),
        "{metrics}"
    );
    let (_, page) = get(&lab.guest, "172.16.0.1:80", "/").expect("status page");
    assert!(page.contains("not answering ARP"), "{page}");
}
