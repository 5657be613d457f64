//! The demo lab: routerd configures a namespace "router VM" between a hoster with a
//! MAC filter and a LAN of guests; then shows NAT, a port forward and hairpin NAT.
//! Run through `tests/demo` (as root).

use std::process::ExitCode;

use tests::dhcp_client::{Client, Kind};
use tests::lab::{Lab, Options, CONFIG, FAILOVER_IP, GUEST_IP, INET_IP, WEB_IP};
use tests::traffic::{tcp_echo, udp_echo, EchoServer};

fn step(what: &str, result: std::io::Result<String>, seen_by: Option<&EchoServer>) -> bool {
    match result {
        Ok(_) => {
            let source = seen_by.and_then(EchoServer::last_peer_ip).unwrap_or_default();
            println!("  ok    {what}{}", if source.is_empty() { String::new() } else { format!(" (server saw source {source})") });
            true
        }
        Err(e) => {
            println!("  FAIL  {what}: {e}");
            false
        }
    }
}

/// The lab's config plus a DHCP server for the guests.
fn demo_config() -> String {
    CONFIG.to_string()
        + "\n[dhcp]\nrange = \"172.16.10.100-172.16.10.250\"\nlease_time = \"12h\"\ndomain = \"lan\"\n"
}

fn main() -> ExitCode {
    println!("Building the lab: internet host {INET_IP}, hoster gateway 203.0.113.254 with a MAC filter,");
    println!("router namespace running routerd, LAN guests {GUEST_IP} and {WEB_IP}.\n");
    let mut lab = Lab::new(Options { wan_mac: None });
    let config = demo_config();
    println!("router.toml:\n{}", config.lines().map(|l| format!("    {l}\n")).collect::<String>());
    lab.start_routerd(&config);
    for line in lab.log().lines().filter(|l| l.contains("ready") || l.contains("flowtable")) {
        println!("routerd: {line}");
    }
    println!("\nrouter state:\n{}", lab.router.sh("ip -br addr show dev wan; ip -br link show dev wan; ip route show"));

    let internet = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    let web = EchoServer::tcp(&lab.web, "0.0.0.0:8080");
    let dns = EchoServer::udp(&lab.web, "0.0.0.0:5353");
    let mut ok = true;
    println!("What a user sees:");
    let vm = lab.add_lan_guest("vm", "52:54:00:de:e0:01");
    let mut dhcp = Client::new(Kind::Udhcpc, &vm, &lab.dir);
    dhcp.start();
    let lease = dhcp.wait_bound();
    println!(
        "  ok    a new guest (busybox udhcpc) got a lease: {}/{} router {} dns {} for {} s",
        lease.address, lease.netmask, lease.routers, lease.dns, lease.lease_secs
    );
    ok &= step("the leased guest -> internet host through NAT", tcp_echo(&vm, "198.51.100.1:7000", "hi"), Some(&internet));
    ok &= step("guest -> internet host 198.51.100.1:7000 through NAT", tcp_echo(&lab.guest, "198.51.100.1:7000", "hi"), Some(&internet));
    ok &= step(&format!("internet host -> {FAILOVER_IP}:80 -> web:8080 (tcp forward)"), tcp_echo(&lab.inet, "203.0.113.10:80", "GET /"), Some(&web));
    ok &= step(&format!("internet host -> {FAILOVER_IP}:5353 -> web:5353 (udp forward)"), udp_echo(&lab.inet, "203.0.113.10:5353", "q"), Some(&dns));
    ok &= step(&format!("guest -> {FAILOVER_IP}:80 -> web:8080 (hairpin NAT)"), tcp_echo(&lab.guest, "203.0.113.10:80", "GET /"), Some(&web));
    let blocked = tcp_echo(&lab.inet, "203.0.113.10:22", "x").is_err();
    println!("  {}  internet host -> {FAILOVER_IP}:22 is refused by the default-deny firewall", if blocked { "ok  " } else { "FAIL" });
    ok &= blocked;
    let (passed, dropped) = lab.hoster_filter_counts();
    println!("  hoster MAC filter: {passed} frames passed with the virtual MAC; {dropped} dropped (sent before routerd set it)");
    println!("\nTearing the lab down.");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
