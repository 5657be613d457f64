//! routerd configured from a Proxmox cloud-init drive, in the namespace lab: the
//! drive's files are the ones qemu-server writes for `--ipconfig0
//! ip=203.0.113.10/32,gw=203.0.113.254 --ipconfig1 ip=172.16.0.1/16` (fixture
//! `routerd/tests/cloudinit/wan-lan`), with the lab's NIC MACs. init mounts the drive
//! and runs `routerd run --config DIR`; this test does the same with a directory.
//! Needs root (network namespaces) and `nft`.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use testkit::lab::{routerd_bin, Lab, Options, FAILOVER_IP, VIRTUAL_MAC};
use testkit::traffic::{tcp_echo, EchoServer};

/// The fixture's net1 MAC, replaced by the lab's LAN veth MAC.
const FIXTURE_LAN_MAC: &str = "bc:24:11:2a:3b:4c";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../routerd/tests/cloudinit")
        .join(name)
}

/// routerd started on a directory; killed on drop.
struct Routerd(Child);

impl Drop for Routerd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_on_drive(lab: &Lab, drive: &Path) -> Routerd {
    let log = std::fs::File::create(lab.log_path()).unwrap_or_else(|e| panic!("log: {e}"));
    std::fs::create_dir_all(lab.state_dir()).unwrap_or_else(|e| panic!("state: {e}"));
    let child = lab
        .router
        .command(routerd_bin().to_str().unwrap_or("routerd"))
        .args(["run", "--config"])
        .arg(drive)
        .arg("--state")
        .arg(lab.state_dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap_or_else(|e| panic!("{e}")))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start routerd: {e}"));
    Routerd(child)
}

#[test]
fn a_proxmox_cloud_init_drive_configures_the_router() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options {
        wan_mac: Some(VIRTUAL_MAC),
    });
    let lan_mac = lab.router.sh("cat /sys/class/net/lan/address").trim().to_string();
    let drive = lab.dir.join("cidata");
    std::fs::create_dir_all(&drive).unwrap_or_else(|e| panic!("{e}"));
    for file in ["user-data", "meta-data", "network-config", "vendor-data"] {
        let text = std::fs::read_to_string(fixture("wan-lan").join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        std::fs::write(drive.join(file), text.replace(FIXTURE_LAN_MAC, &lan_mac)).unwrap_or_else(|e| panic!("{e}"));
    }
    let _routerd = start_on_drive(&lab, &drive);
    lab.wait_log(
        "routerd ready: wan wan 203.0.113.10/32 via 203.0.113.254, lan lan 172.16.0.1/16",
        1,
    );
    let log = lab.log();
    assert!(
        log.contains("cloud-init: ") && log.contains("network-config: WAN from eth0, LAN from eth1"),
        "{log}"
    );
    lab.wait_log("the gateway 203.0.113.254 answers ARP on wan", 1);

    let server = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    assert_eq!(
        tcp_echo(&lab.guest, "198.51.100.1:7000", "from cidata").expect("NAT"),
        "from cidata"
    );
    assert_eq!(server.last_peer_ip().as_deref(), Some(FAILOVER_IP));

    // The router.toml made from the drive is what is kept as the last good config.
    let saved = std::fs::read_to_string(lab.state_dir().join("last-good.toml")).unwrap_or_default();
    assert!(
        saved
            .contains("[wan]\nmac = \"02:00:00:00:00:10\"\naddress = \"203.0.113.10/32\"\ngateway = \"203.0.113.254\""),
        "{saved}"
    );
    assert!(
        saved.contains(&format!("[lan]\nmac = \"{lan_mac}\"\naddress = \"172.16.0.1/16\"")),
        "{saved}"
    );
}
