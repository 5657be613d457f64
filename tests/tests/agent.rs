//! The appliance as Proxmox deploys it, booted in QEMU (TCG) inside the namespace
//! lab: configured from a cloud-init drive made the way qemu-server makes one, and
//! talked to over the QEMU guest agent's virtio-serial channel the way Proxmox's
//! QMPClient talks. Needs root, QEMU, genisoimage and the built image (qemu/build);
//! run through `tests/run`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use testkit::lab::FAILOVER_IP;
use testkit::traffic::{tcp_echo, EchoServer};
use testkit::vm::{
    cidata_iso, config_disk, vm_lab, Vm, VmOptions, VmTuning, BOOT_TIMEOUT, LAN_MAC, POWEROFF_TIMEOUT, WAN_MAC,
};

/// The drive qemu-server writes for `--ipconfig0 ip=203.0.113.10/32,gw=203.0.113.254
/// --ipconfig1 ip=172.16.0.1/16` (routerd/tests/cloudinit/wan-lan), with the VM's MACs.
fn proxmox_cidata(dir: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../routerd/tests/cloudinit/wan-lan");
    let read = |f: &str| {
        std::fs::read_to_string(fixture.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .replace("02:00:00:00:00:10", &WAN_MAC.to_lowercase())
            .replace("bc:24:11:2a:3b:4c", &LAN_MAC.to_lowercase())
    };
    let files = ["user-data", "meta-data", "network-config", "vendor-data"].map(|f| (f, read(f)));
    let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
    cidata_iso(dir, "cidata", &files)
}

fn start(lab: &testkit::lab::Lab, config: Option<PathBuf>, cidata: Option<PathBuf>) -> Vm {
    Vm::start_tuned(
        lab,
        VmOptions { uefi: false, config },
        VmTuning {
            cidata,
            agent: true,
            ..VmTuning::default()
        },
    )
}

/// The interface with `mac` in a guest-network-get-interfaces reply, and its IPv4
/// addresses as "address/prefix".
fn ipv4_of(interfaces: &Value, mac: &str) -> Vec<String> {
    let list = interfaces["return"].as_array().cloned().unwrap_or_default();
    let iface = list
        .iter()
        .find(|i| {
            i["hardware-address"]
                .as_str()
                .is_some_and(|m| m.eq_ignore_ascii_case(mac))
        })
        .unwrap_or_else(|| panic!("no interface with MAC {mac} in {interfaces}"));
    iface["ip-addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|a| a["ip-address-type"] == "ipv4")
        .map(|a| format!("{}/{}", a["ip-address"].as_str().unwrap_or(""), a["prefix"]))
        .collect()
}

#[test]
fn a_proxmox_cloud_init_drive_configures_the_vm() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    let cidata = proxmox_cidata(&lab.dir);
    let mut vm = start(&lab, None, Some(cidata));
    vm.wait_console(
        "init: cloud-init drive /dev/sr0 (iso9660) mounted read-only at /cidata",
        BOOT_TIMEOUT,
    );
    vm.wait_console(
        "routerd ready: wan eth0 203.0.113.10/32 via 203.0.113.254, lan eth1 172.16.0.1/16",
        BOOT_TIMEOUT,
    );
    vm.wait_console("the gateway 203.0.113.254 answers ARP on eth0", BOOT_TIMEOUT);
    let server = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    let mut echo = Err(std::io::Error::other("not tried"));
    for _ in 0..60 {
        echo = tcp_echo(&lab.guest, "198.51.100.1:7000", "from a cloud-init VM");
        if echo.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(
        echo.expect("LAN guest -> internet through the VM"),
        "from a cloud-init VM"
    );
    assert_eq!(server.last_peer_ip().as_deref(), Some(FAILOVER_IP));
}

#[test]
fn a_config_disk_takes_precedence_over_the_cloud_init_drive() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    let cidata = proxmox_cidata(&lab.dir);
    let toml = "hostname = \"from-disk\"\n\n[wan]\nmac = \"02:00:00:00:00:10\"\naddress = \"203.0.113.10/32\"\ngateway = \"203.0.113.254\"\n\n[lan]\naddress = \"172.16.0.1/24\"\n";
    let config = config_disk(&lab.dir, "config", toml, true);
    let mut vm = start(&lab, Some(config), Some(cidata));
    vm.wait_console(
        "init: the ROUTERCFG config disk takes precedence over the cloud-init drive",
        BOOT_TIMEOUT,
    );
    vm.wait_console(
        "routerd ready: wan eth0 203.0.113.10/32 via 203.0.113.254, lan eth1 172.16.0.1/24",
        BOOT_TIMEOUT,
    );
    assert!(!vm.console_text().contains("--config /cidata"), "{}", vm.console_text());
    let name = vm.agent("guest-get-host-name", json!({})).unwrap_or_default();
    assert_eq!(name["return"]["host-name"], "from-disk");
}

#[test]
fn the_guest_agent_answers_proxmox_over_virtio_serial() {
    if !testkit::require_root() || !testkit::require_image() {
        return;
    }
    let lab = vm_lab();
    let cidata = proxmox_cidata(&lab.dir);
    let mut vm = start(&lab, None, Some(cidata));
    vm.wait_console("init: QEMU guest agent on /dev/vport", BOOT_TIMEOUT);
    vm.wait_console("routerd ready", BOOT_TIMEOUT);

    assert_eq!(vm.agent("guest-ping", json!({})), Some(json!({ "return": {} })));
    let info = vm.agent("guest-info", json!({})).unwrap_or_default();
    let commands: Vec<&str> = info["return"]["supported_commands"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    for c in [
        "guest-ping",
        "guest-info",
        "guest-get-osinfo",
        "guest-get-host-name",
        "guest-network-get-interfaces",
        "guest-shutdown",
        "guest-fsfreeze-freeze",
        "guest-fsfreeze-thaw",
        "guest-fsfreeze-status",
    ] {
        assert!(commands.contains(&c), "{c} missing from guest-info: {info}");
    }
    let os = vm.agent("guest-get-osinfo", json!({})).unwrap_or_default();
    assert_eq!(os["return"]["machine"], "x86_64", "{os}");
    assert!(
        os["return"]["pretty-name"].as_str().is_some_and(|n| !n.is_empty()),
        "{os}"
    );
    // The cloud-init drive's hostname (the Proxmox VM name).
    assert_eq!(
        vm.agent("guest-get-host-name", json!({})),
        Some(json!({ "return": { "host-name": "router" } }))
    );

    // What the Proxmox summary shows.
    let interfaces = vm.agent("guest-network-get-interfaces", json!({})).unwrap_or_default();
    assert_eq!(ipv4_of(&interfaces, WAN_MAC), vec!["203.0.113.10/32".to_string()]);
    assert_eq!(ipv4_of(&interfaces, LAN_MAC), vec!["172.16.0.1/16".to_string()]);

    // A backup: freeze (the state partition is the one writable disk filesystem),
    // then thaw. While frozen, only the harmless commands run.
    assert_eq!(
        vm.agent("guest-fsfreeze-status", json!({})),
        Some(json!({ "return": "thawed" }))
    );
    assert_eq!(
        vm.agent("guest-fsfreeze-freeze", json!({})),
        Some(json!({ "return": 1 }))
    );
    assert_eq!(
        vm.agent("guest-fsfreeze-status", json!({})),
        Some(json!({ "return": "frozen" }))
    );
    let refused = vm.agent("guest-get-host-name", json!({})).unwrap_or_default();
    assert!(
        refused["error"]["desc"].as_str().is_some_and(|d| d.contains("frozen")),
        "{refused}"
    );
    assert_eq!(vm.agent("guest-fsfreeze-thaw", json!({})), Some(json!({ "return": 1 })));
    assert_eq!(
        vm.agent("guest-fsfreeze-status", json!({})),
        Some(json!({ "return": "thawed" }))
    );

    // Proxmox's Shutdown with the agent on.
    assert_eq!(vm.agent("guest-shutdown", json!({})), None);
    assert!(
        vm.wait_exit(POWEROFF_TIMEOUT).is_some(),
        "no power-off after guest-shutdown:\n{}",
        vm.console_text()
    );
    assert!(
        vm.console_text().contains("init: powering off"),
        "{}",
        vm.console_text()
    );
}
