//! The appliance image booted in QEMU (TCG) inside the namespace lab: what an
//! operator sees on the console and what the hoster, the internet and the LAN see.
//! Needs root, QEMU, OVMF and the built image (qemu/build); run through `tests/run`.

use std::time::{Duration, Instant};

use tests::lab::{Lab, CONFIG, FAILOVER_IP, INET_IP};
use tests::traffic::{tcp_echo, EchoServer};
use tests::vm::{config_disk, vm_lab, Vm, VmOptions, BOOT_TIMEOUT, POWEROFF_TIMEOUT};

/// The lab's config with the NICs chosen the Proxmox way: WAN by the virtual MAC,
/// LAN is the other NIC.
fn vm_config() -> String {
    CONFIG.replace("interface = \"wan\"\n", "").replace("interface = \"lan\"\n", "")
}

/// Retries `f` (bounded): right after "routerd ready" the first packets may still
/// wait for ARP on the slow emulated NICs.
fn eventually<T>(what: &str, mut f: impl FnMut() -> std::io::Result<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Boots with a good config and checks NAT, a port forward and the hoster's filter.
fn boots_and_routes(uefi: bool) {
    let lab = vm_lab();
    let config = config_disk(&lab.dir, "config", &vm_config(), true);
    record_source_macs(&lab);
    let (_, dropped_before) = lab.hoster_filter_counts();
    let mut vm = Vm::start(&lab, VmOptions { uefi, config: Some(config) });
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    check_nat_and_forward(&lab);
    let (passed, dropped_after) = lab.hoster_filter_counts();
    assert!(passed > 0, "the router's frames reached the hoster");
    assert_eq!(
        dropped_after,
        dropped_before,
        "the hoster's MAC filter dropped frames from the router; source MACs seen on its port:\n{}",
        lab.hoster.sh("nft list set bridge seen macs")
    );
}

/// Remembers every source MAC arriving on the hoster's port for the router, to show
/// what the hoster's filter dropped.
fn record_source_macs(lab: &Lab) {
    lab.hoster.sh("nft -f - <<'EOF'
table bridge seen {
  set macs { type ether_addr; flags dynamic; size 64; }
  chain prerouting {
    type filter hook prerouting priority -200;
    iifname \"p-router\" update @macs { ether saddr }
  }
}
EOF");
}

fn check_nat_and_forward(lab: &Lab) {
    let server = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    let echo = eventually("LAN guest -> internet through the VM", || {
        tcp_echo(&lab.guest, "198.51.100.1:7000", "hello from the LAN")
    });
    assert_eq!(echo, "hello from the LAN");
    assert_eq!(server.last_peer_ip().as_deref(), Some(FAILOVER_IP), "the internet host sees the failover IP");

    let web = EchoServer::tcp(&lab.web, "0.0.0.0:8080");
    let echo =
        eventually("internet -> port forward 80 -> web:8080", || tcp_echo(&lab.inet, "203.0.113.10:80", "GET /"));
    assert_eq!(echo, "GET /");
    assert_eq!(web.last_peer_ip().as_deref(), Some(INET_IP), "the guest sees the real client address");
}

#[test]
fn boots_with_seabios_and_routes_the_lan() {
    boots_and_routes(false);
}

#[test]
fn boots_with_ovmf_and_routes_the_lan() {
    boots_and_routes(true);
}

#[test]
fn qmp_system_powerdown_powers_the_vm_off() {
    let lab = vm_lab();
    let config = config_disk(&lab.dir, "config", &vm_config(), true);
    let mut vm = Vm::start(&lab, VmOptions { uefi: false, config: Some(config) });
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    let reply = vm.qmp("system_powerdown");
    assert!(reply.get("return").is_some(), "system_powerdown: {reply}");
    let status = vm.wait_exit(POWEROFF_TIMEOUT);
    assert!(
        status.is_some(),
        "QEMU still runs {POWEROFF_TIMEOUT:?} after the ACPI power button:\n{}",
        vm.console_text()
    );
    assert!(vm.console_text().contains("init: powering off"), "{}", vm.console_text());
}

#[test]
fn without_a_config_disk_the_console_says_what_to_attach() {
    let lab = vm_lab();
    let mut vm = Vm::start(&lab, VmOptions { uefi: false, config: None });
    vm.wait_console("init: no config disk", BOOT_TIMEOUT);
    let console = vm.console_text();
    let line = console.lines().find(|l| l.contains("init: no config disk")).unwrap_or_default();
    assert!(line.contains("ROUTERCFG") && line.contains("router.toml"), "{line}");
}

#[test]
fn invalid_config_shows_the_errors_with_line_and_column() {
    let lab = vm_lab();
    let bad_mac = vm_config().replace("mac = \"02:00:00:00:00:10\"", "mac = \"02:00:00:00:00:1g\"");
    let unknown_key = vm_config().replace("hostname = \"router\"", "hostname = \"router\"\ncolour = \"blue\"");
    let mut vm: Option<Vm> = None;
    for (name, bad) in [("bad-mac", bad_mac), ("unknown-key", unknown_key)] {
        // The appliance must print what `routerd check` prints for the same file.
        let err = match routerd::config::Config::parse(&bad, "/config/router.toml") {
            Err(e) => e.to_string(),
            Ok(_) => panic!("the {name} config should be invalid"),
        };
        let config = Some(config_disk(&lab.dir, name, &bad, false));
        let vm = match vm.as_mut() {
            Some(vm) => {
                vm.restart(VmOptions { uefi: false, config });
                vm
            }
            None => vm.insert(Vm::start(&lab, VmOptions { uefi: false, config })),
        };
        for line in err.lines() {
            assert!(line.starts_with("/config/router.toml:"), "{line}");
            vm.wait_console(line, BOOT_TIMEOUT);
        }
    }
}

#[test]
fn state_survives_a_power_cycle_and_the_last_good_config_runs_without_a_config_disk() {
    let lab = vm_lab();
    let config = config_disk(&lab.dir, "config", &vm_config(), true);
    let mut vm = Vm::start(&lab, VmOptions { uefi: false, config: Some(config) });
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    let reply = vm.qmp("system_powerdown");
    assert!(reply.get("return").is_some(), "system_powerdown: {reply}");
    assert!(vm.wait_exit(POWEROFF_TIMEOUT).is_some(), "no power-off:\n{}", vm.console_text());

    // Same disk, config disk removed: the saved config runs, and the console says
    // what to attach.
    vm.restart(VmOptions { uefi: false, config: None });
    vm.wait_console("init: no config disk", BOOT_TIMEOUT);
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    check_nat_and_forward(&lab);
}
