//! routerd in the namespace lab: what a hoster's customer would see.
//! Needs root (network namespaces) and `nft`; run through `tests/run`.

use testkit::lab::{Lab, Options, CONFIG, FAILOVER_IP, GUEST_IP, INET_IP, ROUTER_LAN_IP, VIRTUAL_MAC};
use testkit::traffic::{tcp_connect, tcp_echo, tcp_exchange, udp_echo, EchoServer};

fn lab_with_routerd() -> Lab {
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.start_routerd(CONFIG);
    lab
}

#[test]
fn lan_guest_reaches_the_internet_with_the_failover_ip_as_source() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab_with_routerd();
    let server = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    let echo = tcp_echo(&lab.guest, "198.51.100.1:7000", "hello internet").expect("guest -> internet over NAT");
    assert_eq!(echo, "hello internet");
    assert_eq!(
        server.last_peer_ip().as_deref(),
        Some(FAILOVER_IP),
        "the internet host must see the failover IP"
    );

    let udp = EchoServer::udp(&lab.inet, "198.51.100.1:7001");
    assert_eq!(
        udp_echo(&lab.guest, "198.51.100.1:7001", "dns-ish").expect("udp over NAT"),
        "dns-ish"
    );
    assert_eq!(udp.last_peer_ip().as_deref(), Some(FAILOVER_IP));
}

#[test]
fn hoster_mac_filter_passes_the_router_because_it_uses_the_virtual_mac() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    // Control: before routerd sets the virtual MAC, the hoster drops the router's frames.
    lab.router.ip(&["addr", "add", "203.0.113.10/32", "dev", "wan"]);
    lab.router.ip(&["route", "add", "203.0.113.254/32", "dev", "wan"]);
    let _ = tcp_echo(&lab.router, "203.0.113.254:9", "x");
    let (_, dropped_before) = lab.hoster_filter_counts();
    assert!(
        dropped_before > 0,
        "the lab's MAC filter must drop frames from a wrong MAC"
    );
    lab.router.ip(&["addr", "flush", "dev", "wan"]);

    lab.start_routerd(CONFIG);
    let mac = lab.router.sh("cat /sys/class/net/wan/address");
    assert_eq!(mac.trim(), VIRTUAL_MAC);
    // Frames sent with the old MAC (IPv6 router solicitations, ARP retries) may still
    // have been counted up to here; from now on every frame carries the virtual MAC.
    let (passed_at_ready, dropped_at_ready) = lab.hoster_filter_counts();
    let server = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    assert_eq!(
        tcp_echo(&lab.guest, "198.51.100.1:7000", "via vmbr0").expect("NAT through the filter"),
        "via vmbr0"
    );
    assert_eq!(server.peers().len(), 1);
    let (passed, dropped) = lab.hoster_filter_counts();
    assert!(
        passed > passed_at_ready,
        "frames with the virtual MAC reached the hoster"
    );
    assert_eq!(
        dropped, dropped_at_ready,
        "no frame with a wrong MAC after routerd configured the WAN"
    );
}

#[test]
fn wan_nic_selected_by_mac_when_no_interface_is_named() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options {
        wan_mac: Some(VIRTUAL_MAC),
    });
    let config = CONFIG
        .replace("interface = \"wan\"\n", "")
        .replace("interface = \"lan\"\n", "");
    lab.start_routerd(&config);
    assert!(
        lab.log().contains("wan wan 203.0.113.10/32 via 203.0.113.254, lan lan"),
        "{}",
        lab.log()
    );
    let _server = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    assert_eq!(
        tcp_echo(&lab.guest, "198.51.100.1:7000", "by mac").expect("NAT"),
        "by mac"
    );
    // The off-prefix gateway is reached through an on-link route.
    let routes = lab.router.sh("ip route show");
    assert!(
        routes.contains("default via 203.0.113.254 dev wan proto static onlink"),
        "{routes}"
    );
    assert!(
        routes.contains("203.0.113.254 dev wan proto static scope link"),
        "{routes}"
    );
}

#[test]
fn tcp_and_udp_forwards_work_from_the_internet_with_port_translation() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab_with_routerd();
    let web = EchoServer::tcp(&lab.web, "0.0.0.0:8080");
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.10:80", "GET /").expect("tcp forward 80 -> 8080"),
        "GET /"
    );
    assert_eq!(
        web.last_peer_ip().as_deref(),
        Some(INET_IP),
        "the guest sees the real client address"
    );

    let dns = EchoServer::udp(&lab.web, "0.0.0.0:5353");
    assert_eq!(
        udp_echo(&lab.inet, "203.0.113.10:5353", "query").expect("udp forward 5353"),
        "query"
    );
    assert_eq!(dns.last_peer_ip().as_deref(), Some(INET_IP));
}

#[test]
fn port_range_forward_maps_one_to_one_for_tcp_and_udp() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab_with_routerd();
    let t9002 = EchoServer::tcp(&lab.web, "0.0.0.0:9002");
    let t9000 = EchoServer::tcp(&lab.web, "0.0.0.0:9000");
    let u9003 = EchoServer::udp(&lab.web, "0.0.0.0:9003");
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.10:8002", "p8002").expect("8002 -> 9002"),
        "p8002"
    );
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.10:8000", "p8000").expect("8000 -> 9000"),
        "p8000"
    );
    assert_eq!(
        udp_echo(&lab.inet, "203.0.113.10:8003", "u8003").expect("udp 8003 -> 9003"),
        "u8003"
    );
    assert_eq!(
        (t9002.peers().len(), t9000.peers().len(), u9003.peers().len()),
        (1, 1, 1)
    );
    // Outside the range nothing is forwarded.
    let _t9004 = EchoServer::tcp(&lab.web, "0.0.0.0:9004");
    assert!(
        tcp_connect(&lab.inet, "203.0.113.10:8004").is_err(),
        "port 8004 is not forwarded"
    );
}

#[test]
fn lan_guest_reaches_a_forward_through_the_public_address() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab_with_routerd();
    let web = EchoServer::tcp(&lab.web, "0.0.0.0:8080");
    let echo = tcp_echo(&lab.guest, "203.0.113.10:80", "hairpin").expect("guest -> public address -> web");
    assert_eq!(echo, "hairpin");
    // Hairpin NAT: the reply must come back through the router, so web sees the router.
    assert_eq!(web.last_peer_ip().as_deref(), Some(ROUTER_LAN_IP));
}

#[test]
fn unsolicited_connections_from_the_internet_fail() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab_with_routerd();
    // Services that must stay unreachable: one on the router, one on a guest.
    let _router_ssh = EchoServer::tcp(&lab.router, "0.0.0.0:22");
    let _guest_svc = EchoServer::tcp(&lab.guest, "0.0.0.0:7000");
    let _guest_udp = EchoServer::udp(&lab.guest, "0.0.0.0:7001");
    // The hoster network routes the LAN prefix to the router, as an attacker next door could.
    lab.hoster.ip(&[
        "route",
        "add",
        "172.16.0.0/16",
        "via",
        FAILOVER_IP,
        "dev",
        "vmbr0",
        "onlink",
    ]);

    assert!(
        tcp_connect(&lab.inet, "203.0.113.10:22").is_err(),
        "router's port 22 reached from the internet"
    );
    assert!(
        tcp_connect(&lab.inet, &format!("{GUEST_IP}:7000")).is_err(),
        "LAN guest reached from the internet"
    );
    assert!(
        udp_echo(&lab.inet, &format!("{GUEST_IP}:7001"), "x").is_err(),
        "LAN guest reached over UDP"
    );
    // A packet from the WAN with a spoofed LAN source does not reach the guest. With
    // reverse-path filtering off, only the firewall's own spoofing rule stands in the way.
    for key in [
        "net.ipv4.conf.all.rp_filter",
        "net.ipv4.conf.wan.rp_filter",
        "net.ipv4.conf.default.rp_filter",
    ] {
        lab.router.sysctl(key, "0");
    }
    let dns = EchoServer::udp(&lab.web, "0.0.0.0:5353");
    lab.inet.ip(&["addr", "add", "172.16.99.99/32", "dev", "eth0"]);
    lab.inet
        .enter(|| std::net::UdpSocket::bind("172.16.99.99:0").and_then(|s| s.send_to(b"spoof", "203.0.113.10:5353")))
        .expect("send spoofed datagram");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        dns.peers().is_empty(),
        "a spoofed LAN source got through: {:?}",
        dns.peers()
    );
    let forward = lab.router.sh("nft list chain inet routerd forward");
    let dropped: u64 = forward
        .lines()
        .find(|l| l.contains("spoofed source on the WAN"))
        .and_then(|l| {
            l.split_whitespace()
                .skip_while(|w| *w != "packets")
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    assert!(dropped > 0, "the firewall's spoofing rule dropped it:\n{forward}");
    // Control: the same path works for what is meant to be reachable.
    let _web = EchoServer::tcp(&lab.web, "0.0.0.0:8080");
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.10:80", "allowed").expect("forward still works"),
        "allowed"
    );
    // Ping of the router is allowed.
    let ping = lab
        .inet
        .command("ping")
        .args(["-c", "1", "-W", "2", FAILOVER_IP])
        .output()
        .expect("ping");
    assert!(
        ping.status.success(),
        "the router answers ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
}

#[test]
fn applying_twice_changes_nothing() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab_with_routerd();
    let before = lab.router_state();
    let out = lab
        .router
        .command(testkit::lab::routerd_bin().to_str().unwrap_or("routerd"))
        .args(["apply", "--config"])
        .arg(lab.config_path())
        .output()
        .expect("routerd apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for change in ["address added", "route set", "MAC set", "stale"] {
        assert!(
            !stderr.contains(change),
            "second apply changed something ({change}):\n{stderr}"
        );
    }
    assert_eq!(before, lab.router_state());
}

#[test]
fn sighup_with_a_changed_forward_keeps_open_connections() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = lab_with_routerd();
    let _web = EchoServer::tcp(&lab.web, "0.0.0.0:8080");
    let _internet = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    let mut inbound = tcp_connect(&lab.inet, "203.0.113.10:80").expect("forward");
    let mut outbound = tcp_connect(&lab.guest, "198.51.100.1:7000").expect("NAT");
    assert_eq!(tcp_exchange(&mut inbound, "before").expect("inbound before"), "before");
    assert_eq!(
        tcp_exchange(&mut outbound, "before").expect("outbound before"),
        "before"
    );

    // Move the UDP forward and add a new TCP one; the port 80 forward stays.
    let changed = CONFIG.replace("port = 5353", "port = 5354")
        + "\n[[forward]]\nprotocol = \"tcp\"\nport = 2222\nto = \"172.16.10.50\"\nto_port = 22\n";
    lab.reload(&changed);
    lab.wait_log("config applied", 1);

    assert_eq!(
        tcp_exchange(&mut inbound, "after").expect("the open forwarded connection survived"),
        "after"
    );
    assert_eq!(
        tcp_exchange(&mut outbound, "after").expect("the open NAT connection survived"),
        "after"
    );
    let _ssh = EchoServer::tcp(&lab.guest, "0.0.0.0:22");
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.10:2222", "new").expect("the new forward works"),
        "new"
    );
    let _dns = EchoServer::udp(&lab.web, "0.0.0.0:5354");
    assert_eq!(
        udp_echo(&lab.inet, "203.0.113.10:5354", "moved").expect("moved udp forward"),
        "moved"
    );
    let rules = lab.router.sh("nft list table inet routerd");
    assert!(!rules.contains("dport 5353"), "the old forward is gone:\n{rules}");
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_rules() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = lab_with_routerd();
    let before = lab.router_state();
    let broken = CONFIG
        .replace("to_port = 8080", "to_port = 80800")
        .replace("gateway = ", "gatway = ");
    lab.reload(&broken);
    lab.wait_log("config rejected", 1);
    let log = lab.log();
    assert!(
        log.contains("router.toml:7:1: unknown field `gatway`"),
        "the error names line and column:\n{log}"
    );
    assert!(lab.routerd_alive(), "routerd keeps running");
    assert_eq!(before, lab.router_state(), "nothing changed");
    let _web = EchoServer::tcp(&lab.web, "0.0.0.0:8080");
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.10:80", "still").expect("old forward"),
        "still"
    );
}

#[test]
fn an_invalid_config_at_start_falls_back_to_the_last_good_one() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = lab_with_routerd();
    let saved =
        std::fs::read_to_string(lab.state_dir().join("last-good.toml")).expect("routerd saved the applied config");
    assert_eq!(saved, CONFIG);
    assert!(lab.stop_routerd().success(), "routerd exits cleanly on SIGTERM");

    lab.write_config(&CONFIG.replace("02:00:00:00:00:10", "02:00:00:00:00:1"));
    lab.spawn_routerd();
    lab.wait_log("routerd ready", 1);
    let log = lab.log();
    assert!(
        log.contains("router.toml:5:7: wan.mac: expected a MAC address"),
        "the error is shown:\n{log}"
    );
    assert!(log.contains("running the last good config"), "{log}");
    let _web = EchoServer::tcp(&lab.web, "0.0.0.0:8080");
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.10:80", "still routing").expect("forward"),
        "still routing"
    );
    // The broken file never replaces the last good one.
    assert_eq!(
        std::fs::read_to_string(lab.state_dir().join("last-good.toml")).unwrap_or_default(),
        CONFIG
    );
}

#[test]
fn a_valid_config_that_cannot_apply_falls_back_to_the_last_good_one() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = lab_with_routerd();
    assert!(lab.stop_routerd().success());
    // Valid, but names a NIC this router does not have: nothing can be applied.
    lab.write_config(&CONFIG.replace("interface = \"wan\"", "interface = \"wan0\""));
    lab.spawn_routerd();
    lab.wait_log("routerd ready", 1);
    let log = lab.log();
    assert!(
        log.contains("no single wan NIC: looked for the NIC named wan0"),
        "the reason is shown:\n{log}"
    );
    assert!(log.contains("running the last good config instead"), "{log}");
    let _web = EchoServer::tcp(&lab.web, "0.0.0.0:8080");
    assert_eq!(
        tcp_echo(&lab.inet, "203.0.113.10:80", "still routing").expect("forward"),
        "still routing"
    );
}

#[test]
fn a_reload_moving_the_lan_address_within_its_prefix_leaves_exactly_the_new_one() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = lab_with_routerd();
    lab.reload(&CONFIG.replace("address = \"172.16.0.1/16\"", "address = \"172.16.0.254/16\""));
    lab.wait_log("config applied", 1);
    let addrs = lab.router.sh("ip -4 -o addr show dev lan");
    assert!(addrs.contains("inet 172.16.0.254/16"), "{addrs}");
    assert!(!addrs.contains("172.16.0.1/"), "the old address is gone: {addrs}");
}

#[test]
fn with_set_hostname_the_host_name_follows_the_config_and_its_reloads() {
    if !testkit::require_root() {
        return;
    }
    let machine = testkit::netns::sh("hostname").stdout;
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.set_hostname = true;
    lab.start_routerd(&CONFIG.replace("hostname = \"router\"", "hostname = \"edge-1.example.net\""));
    assert_eq!(lab.routerd_hostname(), "edge-1.example.net");
    assert!(
        lab.log().contains("host name set to edge-1.example.net"),
        "{}",
        lab.log()
    );

    lab.reload(&CONFIG.replace("hostname = \"router\"", "hostname = \"edge-2\""));
    lab.wait_log("config applied", 1);
    assert_eq!(lab.routerd_hostname(), "edge-2");

    // No `hostname` key: the default name.
    lab.reload(&CONFIG.replace("hostname = \"router\"\n", ""));
    lab.wait_log("config applied", 2);
    assert_eq!(lab.routerd_hostname(), config::hostname::DEFAULT);
    assert_eq!(
        testkit::netns::sh("hostname").stdout,
        machine,
        "the machine's own name is untouched"
    );
}

#[test]
fn sighup_with_a_fifo_as_the_config_is_refused_and_dhcp_and_the_status_page_keep_answering() {
    if !testkit::require_root() {
        return;
    }
    use testkit::dhcp_client::{Client, Kind};
    use testkit::http::get;

    let mut lab = Lab::new(Options { wan_mac: None });
    let config = CONFIG.to_string() + "\n[dhcp]\nrange = \"172.16.10.100-172.16.10.150\"\n";
    lab.start_routerd(&config);
    lab.wait_log("status page and metrics listening", 1);

    // Nothing ever writes to the FIFO: a daemon that opened and read it would hang.
    std::fs::remove_file(lab.config_path()).expect("remove the config");
    nix::unistd::mkfifo(&lab.config_path(), nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    lab.hup();
    lab.wait_log("config rejected", 1);
    assert!(
        lab.log()
            .contains("router.toml: a FIFO; a config must be a regular file"),
        "{}",
        lab.log()
    );

    let (code, page) = get(&lab.guest, "172.16.0.1:80", "/").expect("the status page answers");
    assert_eq!(code, 200);
    assert!(
        page.contains("a FIFO; a config must be a regular file"),
        "the page shows why"
    );
    let vm = lab.add_lan_guest("vm", "52:54:00:00:00:42");
    let mut client = Client::new(Kind::Udhcpc, &vm, &lab.dir);
    client.start();
    assert!(client.wait_bound().address.starts_with("172.16.10."));
}

#[test]
fn rejected_huge_configs_leave_short_log_lines() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = lab_with_routerd();
    let too_big = CONFIG.replace(
        "hostname = \"router\"",
        &format!("hostname = \"{}\"", "a".repeat(2 << 20)),
    );
    lab.reload(&too_big);
    lab.wait_log("config rejected", 1);
    assert!(
        lab.log().contains(&format!(
            "router.toml: {} bytes, larger than the 1 MiB limit",
            too_big.len()
        )),
        "{:.2000}",
        lab.log()
    );
    // Within the limit, a huge value is quoted short.
    lab.reload(&CONFIG.replace("203.0.113.254", &"x".repeat(1_000_000)));
    lab.wait_log("config rejected", 2);
    let log = lab.log();
    assert!(
        log.contains("wan.gateway: expected an IPv4 address like 203.0.113.254, found \"xxxx"),
        "{log:.2000}"
    );
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 1000, "a log line of {longest} bytes");
}

/// `ping -c 1` from `ns` to `ip`: did an answer come back?
fn ping(ns: &testkit::netns::Netns, ip: &str) -> bool {
    ns.command("ping")
        .args(["-c", "1", "-W", "2", ip])
        .output()
        .expect("ping")
        .status
        .success()
}

#[test]
fn from_the_wan_only_the_wan_address_answers_ping() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab_with_routerd();
    // The hoster routes the LAN prefix to the router, as a neighbour on its network could.
    lab.hoster.ip(&[
        "route",
        "add",
        "172.16.0.0/16",
        "via",
        FAILOVER_IP,
        "dev",
        "vmbr0",
        "onlink",
    ]);
    assert!(
        ping(&lab.inet, FAILOVER_IP),
        "the WAN address answers ping from the internet"
    );
    assert!(
        !ping(&lab.inet, ROUTER_LAN_IP),
        "the router's LAN address answered a ping from the internet"
    );
    // From the LAN, the LAN address still answers.
    assert!(
        ping(&lab.guest, ROUTER_LAN_IP),
        "the LAN address answers ping from the LAN"
    );
}

#[test]
fn the_dhcp_port_is_open_to_the_lan_over_ipv4_only() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab_with_routerd(); // no [dhcp]: port 67 is free for a stand-in listener
    let router_mac = lab.router.sh("cat /sys/class/net/lan/address").trim().to_string();
    lab.router.ip(&["addr", "add", "fd00:10::1/64", "dev", "lan", "nodad"]);
    lab.guest.ip(&["addr", "add", "fd00:10::50/64", "dev", "eth0", "nodad"]);
    // The router's input chain does not answer neighbour solicitations from the LAN.
    lab.guest.ip(&[
        "neigh",
        "add",
        "fd00:10::1",
        "lladdr",
        &router_mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    // Dual-stack: one socket for IPv4 and IPv6 UDP/67.
    let listener = EchoServer::udp(&lab.router, "[::]:67");
    lab.guest
        .enter(|| {
            let socket = std::net::UdpSocket::bind("[fd00:10::50]:0")?;
            for _ in 0..3 {
                socket.send_to(b"ipv6 to 67", "[fd00:10::1]:67")?;
            }
            std::io::Result::Ok(())
        })
        .expect("send IPv6 datagrams");
    // IPv4 still gets through; sent after the IPv6 datagrams, its echo also shows that
    // they had their chance to arrive.
    assert_eq!(
        udp_echo(&lab.guest, &format!("{ROUTER_LAN_IP}:67"), "ipv4 to 67").expect("IPv4 UDP/67 from the LAN"),
        "ipv4 to 67"
    );
    // IPv4 peers of a dual-stack socket show as ::ffff:a.b.c.d.
    let v6: Vec<_> = listener
        .peers()
        .into_iter()
        .filter(|p| p.ip().to_canonical().is_ipv6())
        .collect();
    assert!(v6.is_empty(), "IPv6 UDP/67 from the LAN reached the router: {v6:?}");
}

#[test]
fn what_a_killed_test_process_left_is_removed_by_the_next() {
    if !testkit::require_root() {
        return;
    }
    // A pid that no longer runs, as a killed test process's would be.
    let mut gone = std::process::Command::new("true").spawn().expect("spawn true");
    let _ = gone.wait();
    let prefix = format!("rt{}x0", gone.id());
    let left = testkit::netns::Netns::new(&format!("{prefix}-probe"));
    let mut sleeper = left
        .command("sleep")
        .arg("600")
        .spawn()
        .expect("sleep in the namespace");
    std::mem::forget(left); // as if the process had been killed before its Drop
    let dir = std::env::temp_dir().join(format!("{prefix}-lab"));
    std::fs::create_dir_all(dir.join("state")).expect("lab dir");
    testkit::netns::run(
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "probe"])
            .arg(dir.join("state")),
    );

    testkit::netns::sweep_orphans();
    assert!(!std::path::Path::new(&format!("/run/netns/{prefix}-probe")).exists());
    assert!(!dir.exists());
    assert!(
        sleeper.wait().is_ok_and(|s| !s.success()),
        "what ran in the namespace is stopped"
    );
}
