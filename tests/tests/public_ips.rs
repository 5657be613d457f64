//! Several public IPs on one router, in the namespace lab with the real routerd:
//! Hetzner's shape (an extra IP with a virtual MAC of its own, on a NIC of its own,
//! behind a switch that admits each IP only with its own MAC) and OVH's (several IPs
//! on the one virtual MAC). Needs root.

use std::collections::BTreeMap;

use testkit::http::get;
use testkit::lab::{Lab, Options, FAILOVER_IP, GUEST_IP, INET_IP, ROUTER_LAN_IP, VIRTUAL_MAC};
use testkit::netns::Netns;
use testkit::traffic::{tcp_connect, tcp_echo, tcp_exchange, udp_echo, EchoServer};

const EXTRA_MAC: &str = "02:00:00:00:00:11";
const EXTRA_IP: &str = "203.0.113.20";

/// Hetzner: `wan2` carries 203.0.113.20 with its own MAC; `web` is 1:1 behind it; a
/// forward on the main address reaches `web` too, one on the extra address `guest`.
const HETZNER: &str = r#"
[wan]
interface = "wan"
mac = "02:00:00:00:00:10"
address = "203.0.113.10/32"
gateway = "203.0.113.254"

[[wan.extra]]
interface = "wan2"
mac = "02:00:00:00:00:11"
address = "203.0.113.20/32"

[lan]
interface = "lan"
address = "172.16.0.1/16"

[[one_to_one]]
public = "203.0.113.20"
private = "172.16.10.205"
open = ["tcp/22", "tcp/8000-8100", "udp/all"]

[[forward]]
port = 2022
to = "172.16.10.205"
to_port = 22

[[forward]]
public = "203.0.113.20"
port = 9000
to = "172.16.10.50"
to_port = 7000
"#;

fn hetzner_lab() -> Lab {
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.add_router_wan_port("wan2", None);
    lab.route_failover_ip(EXTRA_IP);
    lab.hoster_ip_mac_filter(
        &["p-router", "p-wan2"],
        &[(FAILOVER_IP, VIRTUAL_MAC), (EXTRA_IP, EXTRA_MAC)],
    );
    lab.start_routerd(HETZNER);
    lab
}

/// The open TCP ports of each of `targets` as `nmap` (SYN scan) sees them from `ns`.
fn nmap_open(ns: &Netns, targets: &str, ports: &str) -> BTreeMap<String, Vec<u16>> {
    let out = ns.sh(&format!(
        "nmap -n -Pn -sS -T4 --max-retries 2 --host-timeout 120s -p {ports} -oG - {targets}"
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
    for host in targets_of(targets) {
        open.entry(host).or_default();
    }
    open
}

/// `203.0.113.10-13` or a space-separated list, one address each.
fn targets_of(targets: &str) -> Vec<String> {
    targets
        .split_whitespace()
        .flat_map(|t| {
            match t
                .rsplit_once('.')
                .and_then(|(net, last)| Some((net, last.split_once('-')?)))
            {
                Some((net, (a, b))) => {
                    let (a, b): (u8, u8) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
                    (a..=b).map(|i| format!("{net}.{i}")).collect::<Vec<_>>()
                }
                None => vec![t.to_string()],
            }
        })
        .collect()
}

fn dropped(lab: &Lab) -> u64 {
    lab.hoster_filter_counts().1
}

#[test]
fn hetzner_1to1_host_is_reached_on_its_open_ports_and_leaves_with_its_own_ip_and_mac() {
    if !testkit::require_root() {
        return;
    }
    let lab = hetzner_lab();
    assert_eq!(lab.router.sh("cat /sys/class/net/wan2/address").trim(), EXTRA_MAC);
    let dropped_at_ready = dropped(&lab);
    let wan2_before = lab.hoster_port_passed("p-wan2");

    // From the internet: the open ports reach the 1:1 host, which sees the real client.
    let ssh = EchoServer::tcp(&lab.web, "0.0.0.0:22");
    let ranged = EchoServer::tcp(&lab.web, "0.0.0.0:8050");
    let udp = EchoServer::udp(&lab.web, "0.0.0.0:5000");
    let _closed = EchoServer::tcp(&lab.web, "0.0.0.0:80");
    let _past_range = EchoServer::tcp(&lab.web, "0.0.0.0:8101");
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.20:22", "ssh").expect("tcp/22 is open"),
        "ssh"
    );
    assert_eq!(ssh.last_peer_ip().as_deref(), Some(INET_IP));
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.20:8050", "range").expect("tcp/8000-8100 is open"),
        "range"
    );
    assert_eq!(ranged.last_peer_ip().as_deref(), Some(INET_IP));
    assert_eq!(
        udp_echo(&lab.inet, "203.0.113.20:5000", "udp").expect("udp/all is open"),
        "udp"
    );
    assert_eq!(udp.last_peer_ip().as_deref(), Some(INET_IP));
    // A plain-connect scan of a few other ports: closed (the router drops them).
    for port in [80, 8101, 7999, 443] {
        assert!(
            tcp_connect(&lab.inet, &format!("203.0.113.20:{port}")).is_err(),
            "tcp/{port} of 203.0.113.20 must be closed"
        );
    }
    // A forward on the main address to the 1:1 host answers from the main NIC, one on
    // the extra address to another guest from the extra NIC (the filter checks both).
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.10:2022", "main").expect("forward on the main address"),
        "main"
    );
    assert_eq!(ssh.last_peer_ip().as_deref(), Some(INET_IP));
    let guest_svc = EchoServer::tcp(&lab.guest, "0.0.0.0:7000");
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.20:9000", "extra").expect("forward on the extra address"),
        "extra"
    );
    assert_eq!(guest_svc.last_peer_ip().as_deref(), Some(INET_IP));
    // The extra address answers ping, from its own NIC (the filter passes it).
    lab.inet.sh("ping -c 1 -W 3 203.0.113.20 >/dev/null");

    // What the 1:1 host sends out leaves with its public address...
    let internet = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    let internet_udp = EchoServer::udp(&lab.inet, "198.51.100.1:7001");
    assert_eq!(
        tcp_echo(&lab.web, "198.51.100.1:7000", "out").expect("1:1 host -> internet"),
        "out"
    );
    assert_eq!(internet.last_peer_ip().as_deref(), Some(EXTRA_IP));
    assert_eq!(udp_echo(&lab.web, "198.51.100.1:7001", "out").expect("udp out"), "out");
    assert_eq!(internet_udp.last_peer_ip().as_deref(), Some(EXTRA_IP));
    // ...and the other guests with the main address.
    assert_eq!(
        tcp_echo(&lab.guest, "198.51.100.1:7000", "main").expect("guest -> internet"),
        "main"
    );
    assert_eq!(internet.last_peer_ip().as_deref(), Some(FAILOVER_IP));

    // A scan of both addresses shows exactly their forwards and open ports that have a
    // listener (the rest of tcp/8000-8100 answers "closed" from the 1:1 host itself).
    let open = nmap_open(&lab.inet, "203.0.113.10 203.0.113.20", "1-1024,2022,7999-8101,9000");
    let expected: BTreeMap<String, Vec<u16>> = [
        ("203.0.113.10".to_string(), vec![2022]),
        ("203.0.113.20".to_string(), vec![22, 8050, 9000]),
    ]
    .into();
    assert_eq!(open, expected);

    // Through the right NIC with the right MAC: the extra address's frames crossed
    // the wan2 port, and the hoster dropped no frame with a wrong IP/MAC pair.
    assert!(
        lab.hoster_port_passed("p-wan2") > wan2_before,
        "the 1:1 host's traffic leaves by wan2"
    );
    assert_eq!(
        dropped(&lab),
        dropped_at_ready,
        "no IPv4 or ARP frame with an address on another address's MAC:\n{}",
        lab.hoster.sh("nft list table bridge hoster")
    );

    // Hairpin: a guest reaches the 1:1 host through its public address.
    assert_eq!(
        tcp_echo(&lab.guest, "203.0.113.20:22", "hairpin").expect("guest -> 203.0.113.20 -> web"),
        "hairpin"
    );
    assert_eq!(ssh.last_peer_ip().as_deref(), Some(ROUTER_LAN_IP));
}

#[test]
fn hetzner_applying_twice_changes_nothing_and_a_removed_extra_is_cleaned_up() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = hetzner_lab();
    let before = lab.router_state();
    let wan2_sysctls = lab
        .router
        .sh("cat /proc/sys/net/ipv4/conf/wan2/rp_filter /proc/sys/net/ipv4/conf/wan2/arp_ignore /proc/sys/net/ipv4/conf/wan/arp_announce");
    assert_eq!(wan2_sysctls.split_whitespace().collect::<Vec<_>>(), ["2", "1", "2"]);
    let rules = lab.router.sh("ip rule show");
    assert!(rules.contains("from 203.0.113.20 lookup 1001"), "{rules}");
    assert!(rules.contains("fwmark 0x3e9 lookup 1001"), "{rules}");
    let table = lab.router.sh("ip route show table 1001");
    assert!(
        table.contains("default via 203.0.113.254 dev wan2 proto static onlink"),
        "{table}"
    );
    lab.hup();
    lab.wait_log("config applied", 1);
    assert_eq!(before, lab.router_state(), "a second apply changed something");
    for change in ["address added", "route set", "rule set", "MAC set", "stale"] {
        let after_reload = lab.log();
        let after_reload = after_reload.split("SIGHUP").nth(1).unwrap_or_default();
        assert!(!after_reload.contains(change), "{change}:\n{after_reload}");
    }

    // Without the extra address, its NIC, table and rules hold nothing of it.
    let single = HETZNER.split("[[wan.extra]]").next().unwrap_or_default().to_string()
        + "[lan]\ninterface = \"lan\"\naddress = \"172.16.0.1/16\"\n";
    lab.reload(&single);
    lab.wait_log("config applied", 2);
    assert!(!lab.router.sh("ip addr show dev wan2").contains("203.0.113.20"));
    assert!(!lab.router.sh("ip rule show").contains("lookup 1001"));
    assert_eq!(lab.router.sh("ip route show table 1001").trim(), "");
    assert!(!lab.router.sh("nft list table inet routerd").contains("203.0.113.20"));
    // The LAN still leaves with the main address.
    let internet = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    assert_eq!(tcp_echo(&lab.web, "198.51.100.1:7000", "x").expect("NAT"), "x");
    assert_eq!(internet.last_peer_ip().as_deref(), Some(FAILOVER_IP));
}

/// OVH: four addresses on the one virtual MAC; a forward on the second, `guest`
/// (172.16.10.50) 1:1 behind the third, the forward's target is `web` (172.16.10.205).
const OVH: &str = r#"
[wan]
interface = "wan"
mac = "02:00:00:00:00:10"
address = "203.0.113.10/32"
gateway = "203.0.113.254"
more_addresses = ["203.0.113.11/32", "203.0.113.12/32", "203.0.113.13/32"]

[lan]
interface = "lan"
address = "172.16.0.1/16"

[[forward]]
public = "203.0.113.11"
port = 443
to = "172.16.10.205"
to_port = 8443

[[one_to_one]]
public = "203.0.113.12"
private = "172.16.10.50"
open = ["tcp/2222"]
"#;

#[test]
fn ovh_forward_on_a_second_address_1to1_on_a_third_hairpin_and_a_reload_that_moves_the_1to1() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    for ip in ["203.0.113.11", "203.0.113.12", "203.0.113.13"] {
        lab.route_failover_ip(ip);
    }
    lab.start_routerd(OVH);
    let (_, dropped_at_ready) = lab.hoster_filter_counts();

    // The forward is on the second address only.
    let web = EchoServer::tcp(&lab.web, "0.0.0.0:8443");
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.11:443", "tls").expect("forward on .11"),
        "tls"
    );
    assert_eq!(web.last_peer_ip().as_deref(), Some(INET_IP));
    assert!(
        tcp_connect(&lab.inet, "203.0.113.10:443").is_err(),
        "no forward on the main address"
    );
    // The 1:1 host on the third.
    let guest_svc = EchoServer::tcp(&lab.guest, "0.0.0.0:2222");
    let _guest_closed = EchoServer::tcp(&lab.guest, "0.0.0.0:2223");
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.12:2222", "in").expect("1:1 on .12"),
        "in"
    );
    assert_eq!(guest_svc.last_peer_ip().as_deref(), Some(INET_IP));
    assert!(
        tcp_connect(&lab.inet, "203.0.113.12:2223").is_err(),
        "tcp/2223 is not open"
    );
    // Each public address answers ping; the fourth has nothing else.
    lab.inet
        .sh("for ip in 10 11 12 13; do ping -c 1 -W 3 203.0.113.$ip >/dev/null; done");
    assert!(tcp_connect(&lab.inet, "203.0.113.13:2222").is_err());

    // Leaving: the 1:1 host with its address, the others with the main one.
    let internet = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    assert_eq!(tcp_echo(&lab.guest, "198.51.100.1:7000", "a").expect("guest out"), "a");
    assert_eq!(internet.last_peer_ip().as_deref(), Some("203.0.113.12"));
    assert_eq!(tcp_echo(&lab.web, "198.51.100.1:7000", "b").expect("web out"), "b");
    assert_eq!(internet.last_peer_ip().as_deref(), Some(FAILOVER_IP));

    // Hairpin to each public address that has something behind it.
    assert_eq!(
        tcp_echo(&lab.guest, "203.0.113.11:443", "h1").expect("hairpin .11"),
        "h1"
    );
    assert_eq!(web.last_peer_ip().as_deref(), Some(ROUTER_LAN_IP));
    assert_eq!(
        tcp_echo(&lab.web, "203.0.113.12:2222", "h2").expect("hairpin .12"),
        "h2"
    );
    assert_eq!(guest_svc.last_peer_ip().as_deref(), Some(ROUTER_LAN_IP));

    // A scan of each public address shows exactly its forward or open port.
    let open = nmap_open(&lab.inet, "203.0.113.10-13", "1-1024,2222,2223,8443");
    let expected: BTreeMap<String, Vec<u16>> = [
        ("203.0.113.10".to_string(), vec![]),
        ("203.0.113.11".to_string(), vec![443]),
        ("203.0.113.12".to_string(), vec![2222]),
        ("203.0.113.13".to_string(), vec![]),
    ]
    .into();
    assert_eq!(open, expected);

    // A reload that moves the 1:1 mapping to .13 keeps an unrelated open connection.
    let mut open = tcp_connect(&lab.inet, "203.0.113.11:443").expect("connect to the forward");
    assert_eq!(tcp_exchange(&mut open, "before").expect("before"), "before");
    lab.reload(&OVH.replace("public = \"203.0.113.12\"", "public = \"203.0.113.13\""));
    lab.wait_log("config applied", 1);
    assert_eq!(
        tcp_exchange(&mut open, "after").expect("the open connection survives the reload"),
        "after"
    );
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.13:2222", "moved").expect("1:1 now on .13"),
        "moved"
    );
    assert!(
        tcp_connect(&lab.inet, "203.0.113.12:2222").is_err(),
        ".12 maps nothing now"
    );
    assert_eq!(tcp_echo(&lab.guest, "198.51.100.1:7000", "c").expect("guest out"), "c");
    assert_eq!(internet.last_peer_ip().as_deref(), Some("203.0.113.13"));

    let (_, dropped) = lab.hoster_filter_counts();
    assert_eq!(dropped, dropped_at_ready, "every address left with the one virtual MAC");
}

#[test]
fn hetzner_an_extra_nic_without_its_virtual_mac_is_named_by_the_gateway_check() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.add_router_wan_port("wan2", None);
    lab.route_failover_ip(EXTRA_IP);
    // The hoster issued another MAC for the extra address than the one configured.
    lab.hoster_ip_mac_filter(
        &["p-router", "p-wan2"],
        &[(FAILOVER_IP, VIRTUAL_MAC), (EXTRA_IP, "02:00:00:00:00:99")],
    );
    lab.start_routerd(HETZNER);
    lab.wait_log(
        "the gateway 203.0.113.254 does not answer ARP on wan2, the NIC of the extra address 203.0.113.20 \
         (this router sends from MAC 02:00:00:00:00:11). Most likely the virtual MAC the hoster issued for \
         203.0.113.20 is not on this NIC",
        1,
    );
    lab.wait_log("the gateway 203.0.113.254 answers ARP on wan", 1);
    assert!(
        !lab.log().contains("does not answer ARP on wan "),
        "the main WAN NIC has its MAC:\n{}",
        lab.log()
    );
    assert!(!lab.log().contains("answers ARP on wan2"), "{}", lab.log());
}

#[test]
fn hetzner_status_page_and_metrics_show_every_public_address_with_its_nic_and_mac() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.add_router_wan_port("wan2", None);
    lab.route_failover_ip(EXTRA_IP);
    lab.start_routerd(&HETZNER.replace(
        "gateway = \"203.0.113.254\"\n",
        "gateway = \"203.0.113.254\"\nmore_addresses = [\"203.0.113.11/32\"]\n",
    ));
    lab.wait_log("the gateway 203.0.113.254 answers ARP on wan2", 1);
    let (code, metrics) = get(&lab.guest, "172.16.0.1:80", "/metrics").expect("metrics from the LAN");
    assert_eq!(code, 200);
    for line in [
        "router_public_address_info{address=\"203.0.113.10\",interface=\"wan\",mac=\"02:00:00:00:00:10\"} 1",
        "router_public_address_info{address=\"203.0.113.11\",interface=\"wan\",mac=\"02:00:00:00:00:10\"} 1",
        "router_public_address_info{address=\"203.0.113.20\",interface=\"wan2\",mac=\"02:00:00:00:00:11\"} 1",
        "router_extra_gateway_reachable{interface=\"wan2\",address=\"203.0.113.20\",gateway=\"203.0.113.254\",state=\"reachable\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    assert!(
        metrics.contains("router_interface_rx_bytes_total{interface=\"wan2\",role=\"wan\"}"),
        "{metrics}"
    );
    let (_, page) = get(&lab.guest, "172.16.0.1:80", "/").expect("the page");
    assert!(page.contains("203.0.113.10/32 203.0.113.11/32"), "{page}");
    assert!(
        page.contains("Gateway 203.0.113.254 on wan2 (for 203.0.113.20)"),
        "{page}"
    );
}

/// Two LANs for `[[lan]]`'s `snat`: prod on the lab's LAN bridge (`guest`, and `web`
/// 1:1 behind 203.0.113.12), leaving with `prod_snat`; dev on a second bridge (`web2`,
/// 10.20.0.5) with the default, the main address. `wan` is the `[wan]` table and any
/// `[[wan.extra]]`.
fn snat_lans(wan: &str, prod_snat: &str) -> String {
    format!(
        r#"{wan}
[[lan]]
name = "prod"
interface = "lan"
address = "172.16.0.1/16"
reach = ["dev"]
snat = "{prod_snat}"

[[lan]]
name = "dev"
interface = "lan2"
address = "10.20.0.1/24"

[[one_to_one]]
public = "203.0.113.12"
private = "172.16.10.205"
open = ["tcp/22"]
"#
    )
}

/// The second LAN bridge (NIC `lan2`) and `web2` (10.20.0.5) on it; both namespaces
/// go when dropped.
fn add_dev_lan(lab: &Lab) -> (Netns, Netns) {
    let bridge2 = lab.add_lan_bridge("lan2");
    let web2 = lab.add_guest_on(&bridge2, "web2", "52:54:00:00:20:05");
    web2.ip(&["addr", "add", "10.20.0.5/24", "dev", "eth0"]);
    web2.ip(&["route", "add", "default", "via", "10.20.0.1"]);
    (bridge2, web2)
}

/// From which address the internet host sees `ns` arrive (TCP and UDP agree).
fn seen_from(lab: &Lab, ns: &Netns, tcp: &EchoServer, udp: &EchoServer) -> String {
    assert_eq!(tcp_echo(ns, "198.51.100.1:7000", "t").expect("tcp out"), "t");
    let via_tcp = tcp.last_peer_ip().unwrap_or_default();
    assert_eq!(udp_echo(ns, "198.51.100.1:7001", "u").expect("udp out"), "u");
    assert_eq!(udp.last_peer_ip().unwrap_or_default(), via_tcp, "{}", lab.log());
    via_tcp
}

#[test]
fn ovh_a_lan_with_snat_leaves_with_its_address_the_other_with_the_main_one() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    for ip in ["203.0.113.11", "203.0.113.12"] {
        lab.route_failover_ip(ip);
    }
    let (_bridge2, web2) = add_dev_lan(&lab);
    let wan = r#"[wan]
interface = "wan"
mac = "02:00:00:00:00:10"
address = "203.0.113.10/32"
gateway = "203.0.113.254"
more_addresses = ["203.0.113.11/32", "203.0.113.12/32"]
"#;
    lab.start_routerd(&snat_lans(wan, "203.0.113.11"));
    let (_, dropped_at_ready) = lab.hoster_filter_counts();

    let tcp = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    let udp = EchoServer::udp(&lab.inet, "198.51.100.1:7001");
    assert_eq!(seen_from(&lab, &lab.guest, &tcp, &udp), "203.0.113.11", "prod's snat");
    assert_eq!(seen_from(&lab, &web2, &tcp, &udp), FAILOVER_IP, "dev: the main address");
    assert_eq!(
        seen_from(&lab, &lab.web, &tcp, &udp),
        "203.0.113.12",
        "1:1 wins over snat"
    );
    // prod still reaches dev directly, unNATed.
    let dev_svc = EchoServer::tcp(&web2, "0.0.0.0:8080");
    assert_eq!(tcp_echo(&lab.guest, "10.20.0.5:8080", "r").expect("reach"), "r");
    assert_eq!(dev_svc.last_peer_ip().as_deref(), Some(GUEST_IP));

    // A reload that drops the snat: prod leaves with the main address again.
    lab.reload(&snat_lans(wan, "203.0.113.11").replace("snat = \"203.0.113.11\"\n", ""));
    lab.wait_log("config applied", 1);
    assert_eq!(seen_from(&lab, &lab.guest, &tcp, &udp), FAILOVER_IP);

    let (_, dropped) = lab.hoster_filter_counts();
    assert_eq!(dropped, dropped_at_ready, "every address left with the one virtual MAC");
}

#[test]
fn hetzner_a_lan_with_snat_on_an_extra_nic_leaves_by_that_nic_with_its_mac() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.add_router_wan_port("wan2", None);
    for ip in [EXTRA_IP, "203.0.113.12"] {
        lab.route_failover_ip(ip);
    }
    lab.hoster_ip_mac_filter(
        &["p-router", "p-wan2"],
        &[
            (FAILOVER_IP, VIRTUAL_MAC),
            ("203.0.113.12", VIRTUAL_MAC),
            (EXTRA_IP, EXTRA_MAC),
        ],
    );
    let (_bridge2, web2) = add_dev_lan(&lab);
    // 203.0.113.12 (the 1:1 host's, inside prod) is on the main NIC's MAC.
    let wan = r#"[wan]
interface = "wan"
mac = "02:00:00:00:00:10"
address = "203.0.113.10/32"
gateway = "203.0.113.254"
more_addresses = ["203.0.113.12/32"]

[[wan.extra]]
interface = "wan2"
mac = "02:00:00:00:00:11"
address = "203.0.113.20/32"
"#;
    lab.start_routerd(&snat_lans(wan, EXTRA_IP));
    lab.wait_log("the gateway 203.0.113.254 answers ARP on wan2", 1);
    let dropped_at_ready = dropped(&lab);
    let wan2_before = lab.hoster_port_passed("p-wan2");

    let tcp = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    let udp = EchoServer::udp(&lab.inet, "198.51.100.1:7001");
    assert_eq!(seen_from(&lab, &lab.guest, &tcp, &udp), EXTRA_IP, "prod's snat");
    let wan2_after_prod = lab.hoster_port_passed("p-wan2");
    assert!(wan2_after_prod > wan2_before, "prod's traffic leaves by wan2");
    assert_eq!(seen_from(&lab, &web2, &tcp, &udp), FAILOVER_IP, "dev: the main address");
    // The 1:1 host inside prod leaves with its own address, by the main NIC.
    assert_eq!(
        seen_from(&lab, &lab.web, &tcp, &udp),
        "203.0.113.12",
        "1:1 wins over snat"
    );
    assert_eq!(
        lab.hoster_port_passed("p-wan2"),
        wan2_after_prod,
        "dev and the 1:1 host do not leave by wan2"
    );
    // prod's mark does not send its connections to another LAN out of wan2.
    let dev_svc = EchoServer::tcp(&web2, "0.0.0.0:8080");
    assert_eq!(tcp_echo(&lab.guest, "10.20.0.5:8080", "r").expect("reach"), "r");
    assert_eq!(dev_svc.last_peer_ip().as_deref(), Some(GUEST_IP));
    // The router still answers prod's ping.
    lab.guest.sh("ping -c 1 -W 3 172.16.0.1 >/dev/null");

    assert_eq!(
        dropped(&lab),
        dropped_at_ready,
        "no IPv4 or ARP frame with an address on another address's MAC:\n{}",
        lab.hoster.sh("nft list table bridge hoster")
    );
}
