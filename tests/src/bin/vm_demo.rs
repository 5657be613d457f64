//! The main demo (`qemu/demo`): the real appliance image booted under QEMU as the
//! router VM of a hoster lab in network namespaces. Shows the console up to "routerd
//! ready", then a guest getting a lease, reaching the internet host through NAT and
//! being reached through a port forward.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use testkit::dhcp_client::{Client, Kind};
use testkit::lab::{CONFIG, FAILOVER_IP, INET_IP};
use testkit::traffic::{tcp_echo, EchoServer};
use testkit::vm::{config_disk, vm_lab, Vm, VmOptions, BOOT_TIMEOUT};

/// The lab's config with the NICs found the Proxmox way (WAN by the virtual MAC) and
/// a DHCP server whose reservation gives the demo guest the forward's target address.
fn demo_config() -> String {
    CONFIG
        .replace("interface = \"wan\"\n", "")
        .replace("interface = \"lan\"\n", "")
        + r#"
[dhcp]
range = "172.16.10.100-172.16.10.250"
lease_time = "12h"
domain = "lan"

[[dhcp.host]]
mac = "52:54:00:de:e0:05"
address = "172.16.10.205"
hostname = "web"
"#
}

/// Prints the console as it grows, until `needle` shows (bounded).
fn follow_console(vm: &mut Vm, needle: &str) -> bool {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let mut shown = 0;
    loop {
        let text = vm.console_text();
        for line in text.lines().skip(shown) {
            println!("  console | {line}");
            shown += 1;
        }
        if text.contains(needle) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Retries for a while: the first packets after boot may wait for ARP.
fn eventually(mut f: impl FnMut() -> std::io::Result<String>) -> std::io::Result<String> {
    let mut last = Err(std::io::Error::other("not tried"));
    for _ in 0..20 {
        last = f();
        if last.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    last
}

fn main() -> ExitCode {
    println!("The hoster lab: internet host {INET_IP}, hoster gateway 203.0.113.254 with a MAC filter,");
    println!("the router VM (this image, under QEMU) with net0 = virtual MAC 02:00:00:00:00:10, and a LAN.\n");
    let lab = vm_lab();
    let config = demo_config();
    println!("router.toml on the config disk (label ROUTERCFG):");
    for line in config.lines() {
        println!("    {line}");
    }
    let disk = config_disk(&lab.dir, "config", &config, true);
    let mut vm = Vm::start(
        &lab,
        VmOptions {
            uefi: false,
            config: Some(disk),
        },
    );
    println!("\nBooting out/router.img (SeaBIOS, TCG):");
    if !follow_console(&mut vm, "routerd ready") {
        println!("FAIL: no \"routerd ready\" within {} s", BOOT_TIMEOUT.as_secs());
        return ExitCode::FAILURE;
    }

    println!("\nWhat a user sees:");
    let mut ok = true;
    let guest = lab.add_lan_guest("vm1", "52:54:00:de:e0:05");
    let mut client = Client::new(Kind::Udhcpc, &guest, &lab.dir);
    client.start();
    let lease = client.wait_bound();
    println!(
        "  ok    guest VM (busybox udhcpc) got a lease: {}/{} router {} dns {} for {} s",
        lease.address, lease.netmask, lease.routers, lease.dns, lease.lease_secs
    );

    let internet = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    match eventually(|| tcp_echo(&guest, "198.51.100.1:7000", "hello")) {
        Ok(_) => println!(
            "  ok    guest -> internet host through NAT; the internet host saw source {}",
            internet.last_peer_ip().unwrap_or_default()
        ),
        Err(e) => {
            ok = false;
            println!("  FAIL  guest -> internet host: {e}");
        }
    }
    let web = EchoServer::tcp(&guest, "0.0.0.0:8080");
    match eventually(|| tcp_echo(&lab.inet, "203.0.113.10:80", "GET /")) {
        Ok(_) => println!(
            "  ok    internet host -> {FAILOVER_IP}:80 -> guest {}:8080 (port forward); the guest saw source {}",
            lease.address,
            web.last_peer_ip().unwrap_or_default()
        ),
        Err(e) => {
            ok = false;
            println!("  FAIL  internet host -> port forward: {e}");
        }
    }
    let (passed, dropped) = lab.hoster_filter_counts();
    println!("  hoster MAC filter: {passed} frames passed from the router's port, {dropped} dropped");
    println!("\nPowering the VM off and tearing the lab down.");
    let _ = vm.qmp("system_powerdown");
    let _ = vm.wait_exit(Duration::from_secs(30));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
