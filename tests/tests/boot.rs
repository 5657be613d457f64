//! The appliance image booted in QEMU (TCG) inside the namespace lab: what an
//! operator sees on the console and what the hoster, the internet and the LAN see.
//! Needs root, QEMU, OVMF and the built image (qemu/build); run through `tests/run`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use routerd::dhcp::pool::{Lease as StoredLease, LeaseState};
use routerd::dhcp::store::{LeaseStore, Loaded};
use testkit::dhcp_client::{Client, Kind, Lease};
use testkit::lab::{Lab, CONFIG, FAILOVER_IP, INET_IP, ROUTER_LAN_IP, VIRTUAL_MAC};
use testkit::netns::Netns;
use testkit::traffic::{tcp_connect, tcp_echo, tcp_exchange, EchoServer};
use testkit::vm::{
    add_vm_lan2, add_vm_wan2, config_disk, iso_image, vm_lab, Vm, VmOptions, VmTuning, BOOT_TIMEOUT, LAN2_MAC, LAN_MAC,
    POWEROFF_TIMEOUT,
};

/// The lab's config with the NICs chosen the Proxmox way: WAN by the virtual MAC,
/// LAN is the other NIC.
fn vm_config() -> String {
    CONFIG
        .replace("interface = \"wan\"\n", "")
        .replace("interface = \"lan\"\n", "")
}

/// [`vm_config`] with the DHCP server on.
fn dhcp_config() -> String {
    vm_config() + "\n[dhcp]\nrange = \"172.16.10.100-172.16.10.250\"\nlease_time = \"12h\"\n"
}

const RANGE: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(172, 16, 10, 100), Ipv4Addr::new(172, 16, 10, 250));

/// A LAN guest with `mac` running busybox udhcpc (records under `dir`).
fn dhcp_guest(lab: &Lab, name: &str, mac: &str, dir: &std::path::Path) -> (Netns, Client) {
    let guest = lab.add_lan_guest(name, mac);
    let mut client = Client::new(Kind::Udhcpc, &guest, dir);
    client.start();
    (guest, client)
}

fn addr(lease: &Lease) -> Ipv4Addr {
    lease
        .address
        .parse()
        .unwrap_or_else(|e| panic!("lease address {:?}: {e}", lease.address))
}

/// A new guest gets a lease with the router and DNS options, and reaches the internet
/// host through NAT with the failover IP as source.
fn dhcp_guest_gets_a_lease_and_reaches_the_internet(lab: &Lab, name: &str, mac: &str) -> Lease {
    let (guest, client) = dhcp_guest(lab, name, mac, &lab.dir);
    let lease = client.wait_bound();
    let a = addr(&lease);
    assert!(a >= RANGE.0 && a <= RANGE.1, "{a} is outside the range: {lease:?}");
    assert_eq!(lease.netmask, "255.255.0.0", "{lease:?}");
    assert_eq!(lease.routers, ROUTER_LAN_IP, "router option: {lease:?}");
    assert_eq!(
        lease.dns.trim(),
        ROUTER_LAN_IP,
        "DNS option (default with [dhcp]: the router's resolver): {lease:?}"
    );
    // The resolver in the image knows the guest by the name it leased with.
    let named = eventually("the guest's name from the VM's resolver", || {
        let d = testkit::dns::dig(&guest, ROUTER_LAN_IP, &["udhcpc-guest.lan"]);
        if d.answers.is_empty() {
            Err(std::io::Error::other(format!("{d:?}")))
        } else {
            Ok(d.answers)
        }
    });
    assert_eq!(named, std::slice::from_ref(&lease.address), "{lease:?}");
    let server = EchoServer::tcp(&lab.inet, "198.51.100.1:7001");
    let echo = eventually("DHCP guest -> internet through the VM", || {
        tcp_echo(&guest, "198.51.100.1:7001", "dhcp guest")
    });
    assert_eq!(echo, "dhcp guest");
    assert_eq!(
        server.last_peer_ip().as_deref(),
        Some(FAILOVER_IP),
        "the internet host sees the failover IP"
    );
    lease
}

/// Presses the ACPI power button and waits (bounded) for QEMU to exit.
fn power_off(vm: &mut Vm) {
    let reply = vm.qmp("system_powerdown");
    assert!(reply.get("return").is_some(), "system_powerdown: {reply}");
    let status = vm.wait_exit(POWEROFF_TIMEOUT);
    assert!(
        status.is_some(),
        "QEMU still runs {POWEROFF_TIMEOUT:?} after the ACPI power button:\n{}",
        vm.console_text()
    );
    assert!(
        vm.console_text().contains("init: powering off"),
        "{}",
        vm.console_text()
    );
}

/// The lease log on the (stopped) VM's state partition, read from the host and parsed
/// by routerd's own reader (on a copy, in a directory of its own), and the table it
/// yields (later records win).
fn leases_on_disk(vm: &mut Vm, lab: &Lab, tag: &str) -> (Loaded, HashMap<Ipv4Addr, StoredLease>) {
    let bytes = vm
        .read_state_file("dhcp-leases")
        .unwrap_or_else(|| panic!("no /dhcp-leases on the state partition"));
    let dir = lab.dir.join(format!("leases-{tag}"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    std::fs::write(dir.join(config::image::LEASES_FILE_NAME), &bytes).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "/state/dhcp-leases ({} bytes):\n{}",
        bytes.len(),
        String::from_utf8_lossy(&bytes)
    );
    let (_store, loaded) = LeaseStore::open(&dir).unwrap_or_else(|e| panic!("reading the lease log: {e}"));
    let table = loaded.leases.iter().map(|l| (l.addr, l.clone())).collect();
    (loaded, table)
}

fn assert_bound_on_disk(table: &HashMap<Ipv4Addr, StoredLease>, address: Ipv4Addr, mac: &str) {
    let l = table
        .get(&address)
        .unwrap_or_else(|| panic!("no record for {address} in the lease log: {table:?}"));
    assert_eq!(l.state, LeaseState::Bound, "{l:?}");
    assert_eq!(l.mac.to_string(), mac, "{l:?}");
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

/// Guest RAM of the boot tests: a small VM boots with either firmware (issue 14).
const SMALL_VM_MIB: u32 = 128;

/// Boots with a good config and checks NAT, a port forward and the hoster's filter.
fn boots_and_routes(uefi: bool) {
    let lab = vm_lab();
    let config = config_disk(&lab.dir, "config", &dhcp_config(), true);
    record_source_macs(&lab);
    let (_, dropped_before) = lab.hoster_filter_counts();
    let mut vm = Vm::start_tuned(
        &lab,
        VmOptions {
            uefi,
            config: Some(config),
        },
        VmTuning {
            memory_mib: Some(SMALL_VM_MIB),
            ..VmTuning::default()
        },
    );
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    check_boot_timeline(&vm.console_text());
    // Of the on-request drivers, only the disk controller this machine has loads at
    // boot (i440fx: PIIX IDE; q35: AHCI), not the NIC drivers for NICs it lacks.
    let controller = if uefi { "ahci" } else { "ata_piix" };
    let console = vm.console_text();
    assert!(
        console.contains(&format!("drivers for this machine's devices: {controller};")),
        "the modules line names {controller} alone:\n{console}"
    );
    check_nat_and_forward(&lab);
    // A new guest (busybox udhcpc, a real client) gets its address from the appliance.
    dhcp_guest_gets_a_lease_and_reaches_the_internet(&lab, "dhcp1", "52:54:00:00:10:01");
    let (passed, dropped_after) = lab.hoster_filter_counts();
    assert!(passed > 0, "the router's frames reached the hoster");
    assert_eq!(
        dropped_after,
        dropped_before,
        "the hoster's MAC filter dropped frames from the router; source MACs seen on its port:\n{}",
        lab.hoster.sh("nft list set bridge seen macs")
    );
}

/// The console's boot timeline: init's steps in order, each with the seconds since the
/// kernel started, and routerd's lines up to ready on the same clock, later than init's.
fn check_boot_timeline(console: &str) {
    let steps: Vec<(f64, &str)> = console
        .lines()
        .filter_map(|l| {
            let rest = l.trim_end_matches('\r').split_once("init: timeline ")?.1;
            let (secs, step) = rest.split_once(" s ")?;
            Some((secs.parse().ok()?, step))
        })
        .collect();
    let timeline: Vec<String> = steps.iter().map(|(t, s)| format!("{t:8.3} s  {s}")).collect();
    eprintln!("boot timeline:\n{}", timeline.join("\n"));
    if let Some(modules) = console.lines().find(|l| l.contains("init: modules:")) {
        eprintln!("{}", modules.trim_end());
    }
    for l in console.lines().filter(|l| l.contains(" boot+")) {
        eprintln!("{}", l.trim_end());
    }
    let names: Vec<&str> = steps.iter().map(|(_, s)| *s).collect();
    let mut expected = vec![
        "init started",
        "modules loaded",
        "state partition found",
        "state filesystem made (mke2fs)",
        "state partition mounted",
        "config disk mounted",
        "routerd started",
    ];
    // The order of the two disks depends on which the kernel finds first.
    if names.iter().position(|s| *s == "config disk mounted") < names.iter().position(|s| s.starts_with("state ")) {
        expected = vec![
            "init started",
            "modules loaded",
            "config disk mounted",
            "state partition found",
            "state filesystem made (mke2fs)",
            "state partition mounted",
            "routerd started",
        ];
    }
    assert_eq!(names, expected, "the boot timeline on the console:\n{console}");
    assert!(
        steps.windows(2).all(|w| w[0].0 <= w[1].0) && steps[0].0 > 0.0,
        "timeline times go forward from the kernel's start: {timeline:?}"
    );
    let ready = console
        .lines()
        .find(|l| l.contains("routerd ready"))
        .expect("the ready line");
    let at: f64 = ready
        .split_once(" boot+")
        .and_then(|(_, r)| r.split_once('s'))
        .and_then(|(secs, _)| secs.parse().ok())
        .unwrap_or_else(|| panic!("routerd's ready line carries the boot clock: {ready:?}"));
    let started = steps.last().map(|(t, _)| *t).unwrap_or_default();
    assert!(at >= started, "ready at {at} s, before routerd started at {started} s");
    eprintln!("{at:8.3} s  routerd ready");
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
    assert_eq!(
        server.last_peer_ip().as_deref(),
        Some(FAILOVER_IP),
        "the internet host sees the failover IP"
    );

    let web = EchoServer::tcp(&lab.web, "0.0.0.0:8080");
    let echo = eventually("internet -> port forward 80 -> web:8080", || {
        tcp_echo(&lab.inet, "203.0.113.10:80", "GET /")
    });
    assert_eq!(echo, "GET /");
    assert_eq!(
        web.last_peer_ip().as_deref(),
        Some(INET_IP),
        "the guest sees the real client address"
    );
}

#[test]
fn boots_with_seabios_and_routes_the_lan() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    boots_and_routes(false);
}

#[test]
fn boots_with_ovmf_and_routes_the_lan() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    boots_and_routes(true);
}

/// The ACPI power button powers the VM off within POWEROFF_TIMEOUT, and the lease a
/// guest was given is on the state partition afterwards (read from the host side).
#[test]
fn qmp_system_powerdown_powers_the_vm_off() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    let config = config_disk(&lab.dir, "config", &dhcp_config(), true);
    let mut vm = Vm::start(
        &lab,
        VmOptions {
            uefi: false,
            config: Some(config),
        },
    );
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    let mac = "52:54:00:00:20:01";
    let (_guest, client) = dhcp_guest(&lab, "pd1", mac, &lab.dir);
    let lease = client.wait_bound();
    let t = Instant::now();
    power_off(&mut vm);
    eprintln!("powered off {:.1} s after system_powerdown", t.elapsed().as_secs_f64());
    let (loaded, table) = leases_on_disk(&mut vm, &lab, "after-powerdown");
    assert!(
        loaded.moved_aside.is_none() && !loaded.torn_tail,
        "the lease log is not clean: {loaded:?}"
    );
    assert_bound_on_disk(&table, addr(&lease), mac);
}

/// Leases live on the state partition: after a clean power-off and a boot from the
/// same disk, a guest with the same MAC and no memory of its lease gets the same
/// address, although another guest asked first (a lost table would have handed that
/// guest the first address of the range, which was A's).
#[test]
fn a_guest_keeps_its_address_across_a_reboot() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    let config = config_disk(&lab.dir, "config", &dhcp_config(), true);
    let mut vm = Vm::start(
        &lab,
        VmOptions {
            uefi: false,
            config: Some(config.clone()),
        },
    );
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    let mac_a = "52:54:00:00:30:0a";
    let (guest_a, mut client_a) = dhcp_guest(&lab, "ga", mac_a, &lab.dir);
    let lease_a = client_a.wait_bound();
    assert_eq!(
        addr(&lease_a),
        RANGE.0,
        "the first guest gets the first address of the range"
    );
    // A forgets everything and gives the address up on its side (no ARP answer for it
    // either), without releasing it to the server.
    client_a.stop();
    guest_a.ip(&["addr", "flush", "dev", "eth0"]);
    power_off(&mut vm);

    vm.restart(VmOptions {
        uefi: false,
        config: Some(config),
    });
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    let (_guest_b, client_b) = dhcp_guest(&lab, "gb", "52:54:00:00:30:0b", &lab.dir);
    let lease_b = client_b.wait_bound();
    assert_ne!(
        lease_b.address, lease_a.address,
        "B, asking first after the reboot, got A's address: the table was lost"
    );
    let fresh = lab.dir.join("after-reboot");
    let mut client_a2 = Client::new(Kind::Udhcpc, &guest_a, &fresh);
    client_a2.forget();
    client_a2.start();
    let lease_a2 = client_a2.wait_bound();
    assert_eq!(lease_a2.address, lease_a.address, "A's address after the reboot");
}

/// SIGKILL to QEMU while leases are being granted (a power cut), then a boot: the
/// lease log parses, and every lease a client was given before the kill is in it.
#[test]
fn leases_granted_before_qemu_is_killed_survive_intact() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    const ACKED_FIRST: usize = 8;
    const BURST: usize = 12;
    let lab = vm_lab();
    let config = config_disk(&lab.dir, "config", &dhcp_config(), true);
    let mut vm = Vm::start(
        &lab,
        VmOptions {
            uefi: false,
            config: Some(config.clone()),
        },
    );
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    let mut guests: Vec<(String, Netns, Client)> = Vec::new();
    // One after another: each acknowledged before the next starts.
    for i in 0..ACKED_FIRST {
        let mac = format!("52:54:00:00:40:{i:02x}");
        let (ns, client) = dhcp_guest(&lab, &format!("k{i}"), &mac, &lab.dir);
        client.wait_bound();
        guests.push((mac, ns, client));
    }
    // Then a burst at once, and the plug pulled as soon as two of them are bound: the
    // others are mid-exchange (DISCOVER, probe, OFFER, REQUEST) when QEMU dies.
    for i in ACKED_FIRST..ACKED_FIRST + BURST {
        let mac = format!("52:54:00:00:40:{i:02x}");
        let (ns, client) = dhcp_guest(&lab, &format!("k{i}"), &mac, &lab.dir);
        guests.push((mac, ns, client));
    }
    let bound_count = |g: &[(String, Netns, Client)]| {
        g.iter()
            .filter(|(_, _, c)| c.events().iter().any(|e| e.event.eq_ignore_ascii_case("bound")))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while bound_count(&guests) < ACKED_FIRST + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    vm.hard_kill();
    for (_, _, c) in guests.iter_mut() {
        c.stop();
    }
    let acked: Vec<(String, Ipv4Addr)> = guests
        .iter()
        .filter_map(|(mac, _, c)| {
            c.events()
                .iter()
                .find(|e| e.event.eq_ignore_ascii_case("bound"))
                .map(|l| (mac.clone(), addr(l)))
        })
        .collect();
    eprintln!(
        "{} of {} clients were bound when QEMU was killed",
        acked.len(),
        guests.len()
    );
    assert!(
        acked.len() >= ACKED_FIRST + 2,
        "only {} clients bound before the kill",
        acked.len()
    );

    // From the host, as the disk was left (journal replayed on a copy).
    let (loaded, table) = leases_on_disk(&mut vm, &lab, "after-kill");
    assert!(loaded.moved_aside.is_none(), "the lease log was corrupt after the kill");
    if loaded.torn_tail {
        eprintln!("the lease log ended in a torn record (dropped by the reader, as designed)");
    }
    for (mac, a) in &acked {
        assert_bound_on_disk(&table, *a, mac);
    }

    // And as the appliance sees it at the next boot.
    vm.restart(VmOptions {
        uefi: false,
        config: Some(config),
    });
    vm.wait_console("DHCP leases loaded", BOOT_TIMEOUT);
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    let console = vm.console_text();
    assert!(!console.contains("corrupt"), "{console}");
    // init checked the state filesystem (e2fsck -p names it by its label) before mounting it.
    assert!(
        console.contains("ROUTERSTATE: "),
        "no e2fsck report for the state partition:\n{console}"
    );
    assert!(!console.contains("errors left uncorrected"), "{console}");
    let line = console
        .lines()
        .find(|l| l.contains("DHCP leases loaded"))
        .unwrap_or_default();
    let restored: usize = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("restored="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no restored=N in {line:?}"));
    assert!(
        restored >= acked.len(),
        "restored {restored} leases, {} were acknowledged: {line}",
        acked.len()
    );
    // One of the acknowledged guests, with a fresh client, gets its address back.
    let (mac, first) = acked[0].clone();
    let ns = &guests
        .iter()
        .find(|(m, _, _)| *m == mac)
        .unwrap_or_else(|| panic!("guest {mac}"))
        .1;
    ns.ip(&["addr", "flush", "dev", "eth0"]);
    let mut again = Client::new(Kind::Udhcpc, ns, &lab.dir.join("after-kill"));
    again.start();
    assert_eq!(
        addr(&again.wait_bound()),
        first,
        "{mac}'s address after the kill and the boot"
    );
}

/// A bad config with a last good one on the state partition: the console shows the
/// error with line and column and says it runs the last good config, which routes.
#[test]
fn an_invalid_config_runs_the_last_good_one() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    let good = config_disk(&lab.dir, "good", &vm_config(), true);
    let mut vm = Vm::start(
        &lab,
        VmOptions {
            uefi: false,
            config: Some(good),
        },
    );
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    power_off(&mut vm);

    let bad = vm_config().replace("hostname = \"router\"", "hostname = \"router\"\ncolour = \"blue\"");
    let err = match config::Config::parse(&bad, "/config/router.toml") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("the config with an unknown key should be invalid"),
    };
    vm.restart(VmOptions {
        uefi: false,
        config: Some(config_disk(&lab.dir, "bad", &bad, false)),
    });
    for line in err.lines() {
        // file:line:column: message
        let mut parts = line.splitn(4, ':');
        let (file, l, c) = (parts.next(), parts.next(), parts.next());
        assert_eq!(file, Some("/config/router.toml"), "{line}");
        assert!(
            l.and_then(|l| l.parse::<u32>().ok()).is_some() && c.and_then(|c| c.parse::<u32>().ok()).is_some(),
            "{line}"
        );
        vm.wait_console(line, BOOT_TIMEOUT);
    }
    vm.wait_console("running the last good config", BOOT_TIMEOUT);
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    check_nat_and_forward(&lab);
}

/// Proxmox's way to change the config of a running VM: detach the config disk and
/// attach a new one (`qm set --delete scsi1`, `qm set --scsi1 ...`, hot-plugged). init
/// notices both, and routerd reloads the new config without a restart: a forward added
/// by the new disk answers, and an open connection through NAT lives on.
#[test]
fn a_config_disk_swapped_while_running_is_reloaded_without_a_restart() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    let first = config_disk(&lab.dir, "first", &vm_config(), true);
    let with_ssh =
        vm_config() + "\n[[forward]]\nprotocol = \"tcp\"\nport = 2222\nto = \"172.16.10.205\"\nto_port = 8080\n";
    let second = config_disk(&lab.dir, "second", &with_ssh, true);
    let mut vm = Vm::start(
        &lab,
        VmOptions {
            uefi: false,
            config: Some(first),
        },
    );
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    check_nat_and_forward(&lab);
    let _web = EchoServer::tcp(&lab.web, "0.0.0.0:8080");
    assert!(
        tcp_echo(&lab.inet, "203.0.113.10:2222", "before").is_err(),
        "port 2222 is not forwarded by the first config"
    );
    let _server = EchoServer::tcp(&lab.inet, "198.51.100.1:7001");
    let mut held = tcp_connect(&lab.guest, "198.51.100.1:7001").expect("LAN guest -> internet");
    assert_eq!(tcp_exchange(&mut held, "opened").expect("echo"), "opened");

    vm.swap_config_disk(&second);
    vm.wait_console("SIGHUP: reloading the config", BOOT_TIMEOUT);
    let echo = eventually("internet -> the new forward 2222 -> web:8080", || {
        tcp_echo(&lab.inet, "203.0.113.10:2222", "after")
    });
    assert_eq!(echo, "after");
    assert_eq!(
        tcp_exchange(&mut held, "still there").expect("the connection opened before the swap"),
        "still there"
    );
    let console = vm.console_text();
    assert_eq!(
        console.matches("routerd ready").count(),
        1,
        "routerd was not restarted:\n{console}"
    );
    assert!(!console.contains("init: restarting routerd"), "{console}");
}

#[test]
fn without_a_config_disk_the_console_says_what_to_attach() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    let mut vm = Vm::start(
        &lab,
        VmOptions {
            uefi: false,
            config: None,
        },
    );
    vm.wait_console("init: no config disk", BOOT_TIMEOUT);
    let console = vm.console_text();
    let line = console
        .lines()
        .find(|l| l.contains("init: no config disk"))
        .unwrap_or_default();
    assert!(line.contains("ROUTERCFG") && line.contains("router.toml"), "{line}");
}

#[test]
fn invalid_config_shows_the_errors_with_line_and_column() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    let bad_mac = vm_config().replace("mac = \"02:00:00:00:00:10\"", "mac = \"02:00:00:00:00:1g\"");
    let unknown_key = vm_config().replace("hostname = \"router\"", "hostname = \"router\"\ncolour = \"blue\"");
    let mut vm: Option<Vm> = None;
    for (name, bad) in [("bad-mac", bad_mac), ("unknown-key", unknown_key)] {
        // The appliance must print what `routerd check` prints for the same file.
        let err = match config::Config::parse(&bad, "/config/router.toml") {
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
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    let config = config_disk(&lab.dir, "config", &vm_config(), true);
    let mut vm = Vm::start(
        &lab,
        VmOptions {
            uefi: false,
            config: Some(config),
        },
    );
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    let reply = vm.qmp("system_powerdown");
    assert!(reply.get("return").is_some(), "system_powerdown: {reply}");
    assert!(
        vm.wait_exit(POWEROFF_TIMEOUT).is_some(),
        "no power-off:\n{}",
        vm.console_text()
    );

    // Same disk, config disk removed: the saved config runs, and the console says
    // what to attach.
    vm.restart(VmOptions {
        uefi: false,
        config: None,
    });
    vm.wait_console("init: no config disk", BOOT_TIMEOUT);
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    check_nat_and_forward(&lab);
}

#[test]
fn boots_with_the_config_on_an_iso_cdrom() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    // An ISO labelled ROUTERCFG on an IDE CD-ROM, as a Proxmox user attaches one.
    let lab = vm_lab();
    let config = vm_config();
    let iso = iso_image(&lab.dir, "config", "ROUTERCFG", &[("router.toml", config.as_str())]);
    let mut vm = Vm::start_tuned(
        &lab,
        VmOptions {
            uefi: false,
            config: None,
        },
        VmTuning {
            cidata: Some(iso),
            ..VmTuning::default()
        },
    );
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    let console = vm.console_text();
    assert!(console.contains("(iso9660) mounted read-only at /config"), "{console}");
    check_nat_and_forward(&lab);
}

/// Proxmox's VLAN-aware layout: the VM's third NIC is a trunk and the LAN `dmz` is its
/// VLAN 20 (the image's kernel carries 8021q); a guest whose frames are tagged 20, as
/// on a tap with `tag=20`, gets a lease from dmz's range and reaches the internet host,
/// while the untagged LAN on the second NIC keeps working.
#[test]
fn a_vlan_lan_on_a_third_nic_leases_and_routes() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    let trunk = add_vm_lan2(&lab);
    let text = format!(
        r#"[wan]
mac = "02:00:00:00:00:10"
address = "203.0.113.10/32"
gateway = "203.0.113.254"
dns = ["198.51.100.53"]

[[lan]]
name = "prod"
mac = "{LAN_MAC}"
address = "172.16.0.1/16"

[lan.dhcp]
range = "172.16.10.100-172.16.10.250"

[[lan]]
name = "dmz"
mac = "{LAN2_MAC}"
vlan = 20
address = "10.20.0.1/24"

[lan.dhcp]
range = "10.20.0.100-10.20.0.150"
"#
    );
    let config = config_disk(&lab.dir, "config", &text, true);
    let mut vm = Vm::start_tuned(
        &lab,
        VmOptions {
            uefi: false,
            config: Some(config),
        },
        VmTuning {
            lan2: true,
            ..VmTuning::default()
        },
    );
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    let console = vm.console_text();
    assert!(console.contains("lan dmz eth2.20 10.20.0.1/24"), "{console}");
    // 8021q is not loaded at boot: the kernel asked for it when routerd made eth2.20.
    assert!(
        console.contains("init: modprobe rtnl-link-vlan: 8021q loaded"),
        "{console}"
    );

    let (tagged, _port) = lab.add_tagged_guest_on(&trunk, "tagged", "52:54:00:00:20:01", 20);
    leases_in_range_and_reaches_the_internet(&lab, &tagged, [10, 20, 0, 100], [10, 20, 0, 150], "10.20.0.1");
    dhcp_guest_gets_a_lease_and_reaches_the_internet(&lab, "dhcp1", "52:54:00:00:10:01");
}

/// A LAN on an Intel E1000 NIC, as Proxmox offers: its driver is loaded because the
/// VM has the device (not at every boot), and under SeaBIOS the kernel runs with
/// `acpi=noirq` (syslinux.cfg, image/src/disk.rs), so the NIC's legacy PCI interrupt
/// (e1000 has no MSI) is routed by SeaBIOS's MP table: a guest behind it gets a lease
/// and reaches the internet host.
#[test]
fn a_lan_on_an_e1000_nic_leases_and_routes() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    let bridge = add_vm_lan2(&lab);
    let text = format!(
        r#"[wan]
mac = "02:00:00:00:00:10"
address = "203.0.113.10/32"
gateway = "203.0.113.254"

[[lan]]
name = "prod"
mac = "{LAN_MAC}"
address = "172.16.0.1/16"

[[lan]]
name = "office"
mac = "{LAN2_MAC}"
address = "10.30.0.1/24"

[lan.dhcp]
range = "10.30.0.100-10.30.0.150"
"#
    );
    let config = config_disk(&lab.dir, "config", &text, true);
    let mut vm = Vm::start_tuned(
        &lab,
        VmOptions {
            uefi: false,
            config: Some(config),
        },
        VmTuning {
            lan2: true,
            lan2_model: Some("e1000"),
            ..VmTuning::default()
        },
    );
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    let console = vm.console_text();
    let drivers = console
        .lines()
        .find_map(|l| l.split("drivers for this machine's devices: ").nth(1))
        .unwrap_or_else(|| panic!("no driver line: {console}"));
    assert!(drivers.contains("e1000"), "{drivers}");

    let guest = lab.add_guest_on(&bridge, "office1", "52:54:00:00:30:01");
    leases_in_range_and_reaches_the_internet(&lab, &guest, [10, 30, 0, 100], [10, 30, 0, 150], "10.30.0.1");
}

/// A real DHCP client on `guest` gets an address in [first, last] with `router` as its
/// gateway, and a TCP connection of the guest reaches the internet host from the
/// failover IP.
fn leases_in_range_and_reaches_the_internet(lab: &Lab, guest: &Netns, first: [u8; 4], last: [u8; 4], router: &str) {
    let mut client = Client::new(Kind::Udhcpc, guest, &lab.dir);
    client.start();
    let lease = client.wait_bound();
    let a = addr(&lease);
    assert!(a >= Ipv4Addr::from(first) && a <= Ipv4Addr::from(last), "{lease:?}");
    assert_eq!(lease.routers, router, "{lease:?}");
    let server = EchoServer::tcp(&lab.inet, "198.51.100.1:7002");
    let echo = eventually("the guest -> internet through the VM", || {
        tcp_echo(guest, "198.51.100.1:7002", "lan guest")
    });
    assert_eq!(echo, "lan guest");
    assert_eq!(server.last_peer_ip().as_deref(), Some(FAILOVER_IP));
}

/// Hetzner's shape in the VM: net2 carries an extra IP with its own virtual MAC, the
/// hoster's switch admits each IP only with its own MAC, `web` is 1:1 behind the extra IP.
const TWO_WAN_NICS: &str = r#"
[wan]
mac = "02:00:00:00:00:10"
address = "203.0.113.10/32"
gateway = "203.0.113.254"

[[wan.extra]]
mac = "02:00:00:00:00:11"
address = "203.0.113.20/32"

[lan]
address = "172.16.0.1/16"

[[one_to_one]]
public = "203.0.113.20"
private = "172.16.10.205"
open = ["tcp/22"]
"#;

#[test]
fn a_second_wan_nic_as_proxmox_net2_carries_its_extra_ip_with_its_own_mac() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    add_vm_wan2(&lab);
    lab.route_failover_ip("203.0.113.20");
    lab.hoster_ip_mac_filter(
        &["p-router", "p-wan2"],
        &[(FAILOVER_IP, VIRTUAL_MAC), ("203.0.113.20", "02:00:00:00:00:11")],
    );
    let config = config_disk(&lab.dir, "config", TWO_WAN_NICS, true);
    let mut vm = Vm::start_tuned(
        &lab,
        VmOptions {
            uefi: false,
            config: Some(config),
        },
        VmTuning {
            wan2_mac: Some("02:00:00:00:00:11".into()),
            ..VmTuning::default()
        },
    );
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    let (_, dropped_at_ready) = lab.hoster_filter_counts();

    let ssh = EchoServer::tcp(&lab.web, "0.0.0.0:22");
    let echo = eventually("internet -> 203.0.113.20:22 -> the 1:1 host", || {
        tcp_echo(&lab.inet, "203.0.113.20:22", "ssh")
    });
    assert_eq!(echo, "ssh");
    assert_eq!(ssh.last_peer_ip().as_deref(), Some(INET_IP));
    let internet = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    assert_eq!(
        eventually("the 1:1 host -> internet", || tcp_echo(
            &lab.web,
            "198.51.100.1:7000",
            "out"
        )),
        "out"
    );
    assert_eq!(internet.last_peer_ip().as_deref(), Some("203.0.113.20"));
    assert_eq!(
        eventually("a guest -> internet", || tcp_echo(
            &lab.guest,
            "198.51.100.1:7000",
            "main"
        )),
        "main"
    );
    assert_eq!(internet.last_peer_ip().as_deref(), Some(FAILOVER_IP));
    assert!(lab.hoster_port_passed("p-wan2") > 0, "net2's frames reached the hoster");
    let (_, dropped) = lab.hoster_filter_counts();
    assert_eq!(
        dropped,
        dropped_at_ready,
        "the hoster dropped a frame whose IP came with another IP's MAC:\n{}",
        lab.hoster.sh("nft list table bridge hoster")
    );
}

#[test]
fn ipv6_guests_get_slaac_addresses_and_only_open_ports_are_reachable() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    // OVH-like: the /64 on-link on the hoster's segment, the gateway outside it.
    lab.inet
        .ip(&["addr", "add", "2001:db8:ffff::1/64", "dev", "eth0", "nodad"]);
    lab.inet
        .ip(&["-6", "route", "add", "default", "via", "2001:db8:ffff::fe"]);
    lab.hoster
        .ip(&["addr", "add", "2001:db8:ffff::fe/64", "dev", "up0", "nodad"]);
    lab.hoster.sysctl("net.ipv6.conf.all.forwarding", "1");
    lab.hoster
        .ip(&["addr", "add", "2001:db8:1:ff:ff:ff:ff:ff/128", "dev", "vmbr0", "nodad"]);
    lab.hoster
        .ip(&["-6", "route", "add", "2001:db8:1:2::/64", "dev", "vmbr0"]);
    lab.guest.sysctl("net.ipv6.conf.eth0.accept_ra", "2");
    let mac: config::MacAddr = lab
        .guest
        .sh("cat /sys/class/net/eth0/address")
        .trim()
        .parse()
        .unwrap_or_else(|()| panic!("the guest's MAC"));
    let guest6 = config::eui64("2001:db8:1:2::/64".parse().expect("prefix"), mac).to_string();
    let text = vm_config()
        .replace(
            "dns = [\"198.51.100.53\"]\n",
            "dns = [\"198.51.100.53\"]\naddress6 = \"2001:db8:1:2::1/128\"\ngateway6 = \"2001:db8:1:ff:ff:ff:ff:ff\"\n",
        )
        .replace(
            "address = \"172.16.0.1/16\"\n",
            "address = \"172.16.0.1/16\"\naddress6 = \"2001:db8:1:2::2/64\"\n",
        )
        + &format!("\n[[open]]\nto = \"{guest6}\"\nport = 8443\n");
    let config = config_disk(&lab.dir, "config", &text, true);
    let mut vm = Vm::start(
        &lab,
        VmOptions {
            uefi: false,
            config: Some(config),
        },
    );
    vm.wait_console("routerd ready", BOOT_TIMEOUT);
    let ping = |from: &Netns, to: &str| -> std::io::Result<()> {
        let ok = from
            .command("ping")
            .args(["-6", "-c", "1", "-W", "2", to])
            .output()?
            .status
            .success();
        ok.then_some(())
            .ok_or_else(|| std::io::Error::other(format!("no answer from {to}")))
    };
    // The WAN address is on the VM's WAN NIC and its firewall lets ping in.
    eventually("the hoster pings the router's WAN v6 address", || {
        ping(&lab.hoster, "2001:db8:1:2::1")
    });
    eventually("the guest's SLAAC address", || {
        let addrs = lab.guest.sh("ip -6 -o addr show dev eth0 scope global");
        addrs
            .contains(&format!("{guest6}/64"))
            .then_some(())
            .ok_or_else(|| std::io::Error::other(addrs))
    });
    eventually("the guest pings the internet host over IPv6", || {
        ping(&lab.guest, "2001:db8:ffff::1")
    });
    // The nft rules are loaded: the open port passes, another one does not.
    let _open = EchoServer::tcp(&lab.guest, "[::]:8443");
    let _closed = EchoServer::tcp(&lab.guest, "[::]:8444");
    assert_eq!(
        eventually("internet -> the guest's open port", || tcp_echo(
            &lab.inet,
            &format!("[{guest6}]:8443"),
            "v6 in"
        )),
        "v6 in"
    );
    assert!(testkit::traffic::tcp_connect(&lab.inet, &format!("[{guest6}]:8444")).is_err());
}
