//! IPv6 for the guests, the way two hosters deliver it, with the real routerd:
//! - OVH-like: the server's /64 is on-link on the hoster's segment; the hoster's router
//!   has no route to the LAN and resolves every destination by neighbour solicitation,
//!   so only the router's NDP proxy makes the guests reachable. Gateway outside the /64.
//! - Hetzner-like: the /64 is routed to the router's link-local address, gateway fe80::1.
//!
//! Both keep the lab's MAC filter on the router's port (for IPv6 frames too). Guests take
//! their address by the kernel's SLAAC from routerd's router advertisements.
//! Needs root (network namespaces), `nft`, `ping` and `nmap`; run through `tests/run`.

use std::collections::BTreeMap;
use std::time::Duration;

use testkit::lab::{Lab, Options, CONFIG};
use testkit::netns::Netns;
use testkit::traffic::{tcp_connect, tcp_echo, EchoServer};

const INET6: &str = "2001:db8:ffff::1";
const OVH_GATEWAY6: &str = "2001:db8:1:ff:ff:ff:ff:ff";
const OVH_WAN6: &str = "2001:db8:1:2::1";
const OVH_PREFIX: &str = "2001:db8:1:2::/64";
const HETZNER_PREFIX: &str = "2001:db8:2::/64";
/// Long enough for SLAAC, the NDP proxy and neighbour unreachability on a busy
/// machine; each wait returns as soon as its condition holds.
const DEADLINE: Duration = Duration::from_secs(120);

/// [`Lab::wait_for`] within [`DEADLINE`], showing the router's IPv6 state on failure.
fn wait_for<T>(what: &str, lab: &Lab, check: impl FnMut() -> Option<T>) -> T {
    lab.wait_for(
        what,
        DEADLINE,
        "ip -6 addr; ip -6 route; ip -6 neigh; ip -6 neigh show proxy",
        check,
    )
}

/// The internet host and the hoster's v6 side common to both hosters.
fn inet6(lab: &Lab) {
    lab.inet
        .ip(&["addr", "add", &format!("{INET6}/64"), "dev", "eth0", "nodad"]);
    lab.inet
        .ip(&["-6", "route", "add", "default", "via", "2001:db8:ffff::fe"]);
    lab.hoster
        .ip(&["addr", "add", "2001:db8:ffff::fe/64", "dev", "up0", "nodad"]);
    lab.hoster.sysctl("net.ipv6.conf.all.forwarding", "1");
}

/// A guest's SLAAC (EUI-64) address in `prefix` (a /64 like "2001:db8:1:2::/64").
fn eui64(guest: &Netns, prefix: &str) -> String {
    let mac: config::MacAddr = guest
        .sh("cat /sys/class/net/eth0/address")
        .trim()
        .parse()
        .unwrap_or_else(|()| panic!("the guest's MAC"));
    config::eui64(prefix.parse().unwrap_or_else(|e| panic!("{prefix}: {e}")), mac).to_string()
}

/// The guest's global address and default route, once SLAAC gave them.
fn slaac(lab: &Lab, guest: &Netns, want: &str) -> String {
    let router_ll = lab
        .router
        .sh("ip -6 -o addr show dev lan scope link | awk '{print $4}' | cut -d/ -f1");
    let router_ll = router_ll.trim().to_string();
    wait_for("the guest's SLAAC address", lab, || {
        let addrs = guest.sh("ip -6 -o addr show dev eth0 scope global");
        addrs.contains(&format!("{want}/64")).then_some(())
    });
    wait_for("the guest's default route via the router", lab, || {
        let routes = guest.sh("ip -6 route show default");
        routes
            .contains(&format!("default via {router_ll} dev eth0"))
            .then_some(routes)
    })
}

fn ping(from: &Netns, to: &str) -> bool {
    from.command("ping")
        .args(["-6", "-c", "1", "-W", "2", to])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The open TCP ports of each target as `nmap -6` (SYN scan) sees them from `ns`.
fn nmap6_open(ns: &Netns, targets: &str, ports: &str) -> BTreeMap<String, Vec<u16>> {
    let out = ns.sh(&format!(
        "nmap -6 -n -Pn -sS -T4 --max-retries 2 --host-timeout 120s -p {ports} -oG - {targets}"
    ));
    let mut open = BTreeMap::new();
    for line in out.lines().filter(|l| l.starts_with("Host: ") && l.contains("Ports: ")) {
        let host = line.split_whitespace().nth(1).unwrap_or_default().to_string();
        let ports = line.split("Ports: ").nth(1).unwrap_or_default();
        let list: Vec<u16> = ports
            .split(", ")
            .filter_map(|p| {
                let mut f = p.split('/');
                let port = f.next()?.trim().parse().ok()?;
                (f.next()? == "open").then_some(port)
            })
            .collect();
        open.insert(host, list);
    }
    open
}

fn proxies(lab: &Lab) -> String {
    lab.router.sh("ip -6 neigh show proxy dev wan")
}

/// The OVH-like hoster: the /64 on its segment, no route to the LAN, its gateway
/// outside the /64; the router with the NDP proxy by default.
fn ovh_lab() -> (Lab, String) {
    let mut lab = Lab::new(Options { wan_mac: None });
    inet6(&lab);
    lab.hoster
        .ip(&["addr", "add", &format!("{OVH_GATEWAY6}/128"), "dev", "vmbr0", "nodad"]);
    // On-link: the hoster asks for every address of the /64 by neighbour solicitation.
    lab.hoster.ip(&["-6", "route", "add", OVH_PREFIX, "dev", "vmbr0"]);
    lab.guest.sysctl("net.ipv6.conf.eth0.accept_ra", "2");
    let guest6 = eui64(&lab.guest, OVH_PREFIX);
    let guest_mac = lab.guest.sh("cat /sys/class/net/eth0/address");
    let config = CONFIG
        .replace(
            "dns = [\"198.51.100.53\"]\n",
            &format!("dns = [\"198.51.100.53\"]\naddress6 = \"{OVH_WAN6}/128\"\ngateway6 = \"{OVH_GATEWAY6}\"\n"),
        )
        .replace(
            "address = \"172.16.0.1/16\"\n",
            "address = \"172.16.0.1/16\"\naddress6 = \"2001:db8:1:2::2/64\"\n",
        )
        + &format!("\n[[open]]\nto = \"{}\"\nport = 8443\n", guest_mac.trim());
    lab.start_routerd(&config);
    (lab, guest6)
}

#[test]
fn ovh_guest_gets_a_slaac_address_reaches_the_internet_and_only_its_open_port_is_reachable() {
    if !testkit::require_root() {
        return;
    }
    let (lab, guest6) = ovh_lab();
    assert!(lab.log().contains("with NDP proxy"), "{}", lab.log());
    slaac(&lab, &lab.guest, &guest6);
    // The hoster reaches the guest only once the router answers for it on the WAN.
    wait_for("the guest's proxy entry on the WAN", &lab, || {
        proxies(&lab).contains(&guest6).then_some(())
    });
    wait_for("a ping from the guest to the internet host", &lab, || {
        ping(&lab.guest, INET6).then_some(())
    });

    let server = EchoServer::tcp(&lab.inet, &format!("[{INET6}]:7000"));
    assert_eq!(
        tcp_echo(&lab.guest, &format!("[{INET6}]:7000"), "hello v6").expect("guest -> internet over IPv6"),
        "hello v6"
    );
    assert_eq!(
        server.last_peer_ip().as_deref(),
        Some(guest6.as_str()),
        "no NAT: the internet host sees the guest's own address"
    );

    // [[open]] by MAC opens 8443 on the guest's EUI-64 address; 8444 stays closed.
    let open = EchoServer::tcp(&lab.guest, "[::]:8443");
    let _closed = EchoServer::tcp(&lab.guest, "[::]:8444");
    let _router_ssh = EchoServer::tcp(&lab.router, "[::]:22");
    assert_eq!(
        tcp_echo(&lab.inet, &format!("[{guest6}]:8443"), "in").expect("the open port from the internet"),
        "in"
    );
    assert_eq!(open.last_peer_ip().as_deref(), Some(INET6));
    assert!(
        tcp_connect(&lab.inet, &format!("[{guest6}]:8444")).is_err(),
        "a port no [[open]] names is not reachable"
    );
    assert!(
        tcp_connect(&lab.inet, &format!("[{OVH_WAN6}]:22")).is_err(),
        "the router offers nothing to the internet over IPv6"
    );
    let scan = nmap6_open(&lab.inet, &format!("{guest6} {OVH_WAN6}"), "1-100,443,8443,8444");
    assert_eq!(scan.get(&guest6), Some(&vec![8443]), "{scan:?}");
    assert_eq!(scan.get(OVH_WAN6), Some(&vec![]), "{scan:?}");

    // The hoster's MAC filter passed the router's IPv6 frames: they carry the virtual MAC.
    let (_, dropped_before) = lab.hoster_filter_counts();
    assert!(ping(&lab.guest, INET6));
    assert_eq!(lab.hoster_filter_counts().1, dropped_before);
}

#[test]
fn ovh_proxy_entries_come_for_a_new_guest_and_go_when_it_leaves() {
    if !testkit::require_root() {
        return;
    }
    let (lab, _) = ovh_lab();
    let newcomer = lab.add_lan_guest("g6", "52:54:00:00:06:01");
    newcomer.sysctl("net.ipv6.conf.eth0.accept_ra", "2");
    let addr = eui64(&newcomer, OVH_PREFIX);
    assert_eq!(addr, "2001:db8:1:2:5054:ff:fe00:601");
    wait_for("the newcomer's proxy entry", &lab, || {
        proxies(&lab).contains(&addr).then_some(())
    });
    // Reachable from the internet host through the proxy (ping is open).
    wait_for("a ping from the internet host to the newcomer", &lab, || {
        ping(&lab.inet, &addr).then_some(())
    });
    drop(newcomer);
    wait_for("the proxy entry to go with the guest", &lab, || {
        (!proxies(&lab).contains(&addr)).then_some(())
    });
    assert!(lab.log().contains("NDP proxy: the LAN host is gone"), "{}", lab.log());
}

#[test]
fn hetzner_routed_prefix_reaches_the_guest_without_a_proxy() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    inet6(&lab);
    lab.hoster.ip(&["addr", "add", "fe80::1/64", "dev", "vmbr0", "nodad"]);
    lab.guest.sysctl("net.ipv6.conf.eth0.accept_ra", "2");
    let guest6 = eui64(&lab.guest, HETZNER_PREFIX);
    let config = CONFIG
        .replace(
            "dns = [\"198.51.100.53\"]\n",
            "dns = [\"198.51.100.53\"]\ngateway6 = \"fe80::1\"\ndns6 = [\"2001:db8:ffff::53\"]\n",
        )
        .replace(
            "address = \"172.16.0.1/16\"\n",
            "address = \"172.16.0.1/16\"\naddress6 = \"2001:db8:2::1/64\"\n",
        )
        + &format!("\n[[open]]\nto = \"{guest6}\"\nprotocol = \"tcp\"\nport = 8443\n");
    lab.start_routerd(&config);
    // The hoster routes the /64 to the router's link-local address (with its virtual MAC).
    let router_ll = lab
        .router
        .sh("ip -6 -o addr show dev wan scope link | awk '{print $4}' | cut -d/ -f1");
    lab.hoster.ip(&[
        "-6",
        "route",
        "add",
        HETZNER_PREFIX,
        "via",
        router_ll.trim(),
        "dev",
        "vmbr0",
    ]);
    slaac(&lab, &lab.guest, &guest6);
    let routes = lab.guest.sh("ip -6 route show default");
    assert!(routes.contains("proto ra"), "the default route came by RA: {routes}");
    wait_for("a ping from the guest to the internet host", &lab, || {
        ping(&lab.guest, INET6).then_some(())
    });
    let _server = EchoServer::tcp(&lab.inet, &format!("[{INET6}]:7000"));
    assert_eq!(
        tcp_echo(&lab.guest, &format!("[{INET6}]:7000"), "routed").expect("guest -> internet"),
        "routed"
    );
    let _open = EchoServer::tcp(&lab.guest, "[::]:8443");
    let _closed = EchoServer::tcp(&lab.guest, "[::]:8444");
    assert_eq!(
        tcp_echo(&lab.inet, &format!("[{guest6}]:8443"), "in").expect("the open port"),
        "in"
    );
    assert!(tcp_connect(&lab.inet, &format!("[{guest6}]:8444")).is_err());
    assert_eq!(proxies(&lab).trim(), "", "no NDP proxy on a routed prefix");
    // A guest forging a source outside the /64 is dropped by the router (counted).
    let spoof_drops = |lab: &Lab| -> u64 {
        lab.router
            .sh("nft list chain inet routerd forward")
            .lines()
            .filter(|l| l.contains("spoofed IPv6 source on the LAN lan"))
            .filter_map(|l| {
                l.split_whitespace()
                    .skip_while(|w| *w != "packets")
                    .nth(1)?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    let before = spoof_drops(&lab);
    lab.guest
        .ip(&["addr", "add", "2001:db8:9::5/128", "dev", "eth0", "nodad"]);
    assert!(!lab
        .guest
        .command("ping")
        .args(["-6", "-c", "1", "-W", "2", "-I", "2001:db8:9::5", INET6])
        .output()
        .is_ok_and(|o| o.status.success()));
    assert!(
        spoof_drops(&lab) > before,
        "the spoofed source was dropped at the router"
    );
}

#[test]
fn without_ipv6_keys_ipv6_stays_dropped() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    inet6(&lab);
    lab.start_routerd(CONFIG);
    assert_eq!(lab.router.sh("cat /proc/sys/net/ipv6/conf/all/forwarding").trim(), "0");
    assert_eq!(lab.router.sh("ip -6 -o addr show scope global").trim(), "");
    assert!(!lab.log().contains("router advertisements started"));
}

#[test]
fn a_reload_without_ipv6_keys_takes_everything_v6_away() {
    if !testkit::require_root() {
        return;
    }
    let (mut lab, guest6) = ovh_lab();
    slaac(&lab, &lab.guest, &guest6);
    wait_for("the guest's proxy entry", &lab, || {
        proxies(&lab).contains(&guest6).then_some(())
    });
    lab.reload(CONFIG);
    lab.wait_log("config applied", 1);
    assert_eq!(lab.router.sh("cat /proc/sys/net/ipv6/conf/all/forwarding").trim(), "0");
    assert_eq!(lab.router.sh("ip -6 -o addr show scope global").trim(), "");
    assert_eq!(lab.router.sh("ip -6 route show proto static").trim(), "");
    assert!(!lab.router.sh("nft list ruleset").contains("ip6"));
    wait_for("the proxy entries to go", &lab, || {
        proxies(&lab).trim().is_empty().then_some(())
    });
    // The last advertisement (router lifetime 0) takes the router off as default router.
    wait_for("the guest to drop the router as default router", &lab, || {
        lab.guest.sh("ip -6 route show default").trim().is_empty().then_some(())
    });
}
