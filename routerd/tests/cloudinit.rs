//! Proxmox's cloud-init drive as a config source, as a user sees it.
//!
//! Each directory under `tests/cloudinit/` holds the files of one drive exactly as
//! Proxmox's qemu-server writes them (see `tests/cloudinit/README.md`); next to it,
//! `NAME.out` is what `routerd cloud-init tests/cloudinit/NAME` prints (stdout, then
//! stderr, then the exit code). After an intended change, regenerate and review:
//!
//!     UPDATE_GOLDEN=1 cargo test -p routerd --test cloudinit

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use config::{Config, MacAddr, NicSelector};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the routerd binary from the crate directory (so paths in its output are
/// the same everywhere) and returns stdout, stderr and the exit code as one text.
fn routerd(args: &[&str]) -> (String, String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_routerd"))
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .expect("run routerd");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

fn drives() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(manifest_dir().join("tests/cloudinit"))
        .expect("tests/cloudinit")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_proxmox_drive_gives_the_expected_output() {
    let names = drives();
    assert!(names.len() >= 6, "fixtures missing: {names:?}");
    let mut failures = Vec::new();
    for name in names {
        let dir = format!("tests/cloudinit/{name}");
        let (stdout, stderr, code) = routerd(&["cloud-init", &dir]);
        let got = format!("{stdout}--- stderr\n{stderr}--- exit {code}\n");
        let expected_path = manifest_dir().join(format!("tests/cloudinit/{name}.out"));
        if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
            fs::write(&expected_path, &got).expect("write golden");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{name}: got\n{got}\nexpected ({})\n{expected}",
                expected_path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ipconfig0_with_a_32_and_an_off_prefix_gateway_is_an_on_link_wan_selected_by_the_virtual_mac() {
    let config = Config::load(&manifest_dir().join("tests/cloudinit/wan-lan")).expect("valid");
    assert_eq!(config.hostname.as_deref(), Some("router"));
    let mac: MacAddr = "02:00:00:00:00:10".parse().expect("mac");
    assert_eq!(config.wan.nic, NicSelector::Mac(mac));
    assert_eq!(config.wan.address.to_string(), "203.0.113.10/32");
    assert_eq!(config.wan.gateway.to_string(), "203.0.113.254");
    assert!(
        config.wan.gateway_on_link(),
        "a /32 with the gateway outside it is reached on-link"
    );
    assert_eq!(config.wan.dns.len(), 2);
    let lan_mac: MacAddr = "bc:24:11:2a:3b:4c".parse().expect("mac");
    assert_eq!(config.lans[0].nic, NicSelector::Mac(lan_mac));
    assert_eq!(config.lans[0].address.to_string(), "172.16.0.1/16");
    let dhcp = config.lans[0].dhcp.clone().expect("a DHCP server for the guests");
    assert_eq!(
        (dhcp.range_start.to_string(), dhcp.range_end.to_string()),
        ("172.16.0.100".into(), "172.16.0.249".into())
    );
}

#[test]
fn only_ipconfig0_still_makes_a_router_with_the_default_lan() {
    let config = Config::load(&manifest_dir().join("tests/cloudinit/wan-only")).expect("valid");
    assert_eq!(config.lans[0].nic, NicSelector::NotWan);
    assert_eq!(config.lans[0].address.to_string(), "172.16.0.1/16");
    assert_eq!(
        config.hostname.as_deref(),
        Some("VM102"),
        "Proxmox's default name VM<id>"
    );
}

#[test]
fn a_router_toml_as_user_data_is_used_as_it_is() {
    let dir = manifest_dir().join("tests/cloudinit/cicustom-user");
    let config::Loaded { config, text, .. } = Config::load_with_text(&dir).expect("valid");
    assert_eq!(text, fs::read_to_string(dir.join("user-data")).expect("user-data"));
    assert_eq!(config.forwards.len(), 1);
    assert_eq!(config.hostname.as_deref(), Some("edge"));
}

#[test]
fn check_accepts_a_drive_directory() {
    assert_eq!(
        routerd(&["check", "tests/cloudinit/wan-lan"]),
        ("ok\n".into(), String::new(), 0)
    );
    let (_, stderr, code) = routerd(&["check", "tests/cloudinit/dhcp-wan"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("ip=dhcp") && stderr.contains("--ipconfig0 ip=203.0.113.10/32,gw=203.0.113.254"),
        "{stderr}"
    );
}

/// A drive in a temp dir: a Proxmox user-data plus the given network-config.
struct Drive(PathBuf);

impl Drive {
    fn new(name: &str, network_config: &str) -> Drive {
        let dir = std::env::temp_dir().join(format!("routerd-cidata-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        fs::write(
            dir.join("user-data"),
            "#cloud-config\nhostname: router\nmanage_etc_hosts: true\nfqdn: router\n",
        )
        .expect("user-data");
        fs::write(dir.join("network-config"), network_config).expect("network-config");
        Drive(dir)
    }

    fn error(&self) -> String {
        match config::cloudinit::generate(&self.0) {
            Ok(g) => panic!("expected an error, got\n{}", g.toml),
            Err(e) => e.to_string().replace(&self.0.display().to_string(), "DRIVE"),
        }
    }
}

impl Drop for Drive {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const WAN: &str = "version: 1\nconfig:\n    - type: physical\n      name: eth0\n      mac_address: '02:00:00:00:00:10'\n      subnets:\n      - type: static\n        address: '203.0.113.10'\n        netmask: 'NETMASK'\n        gateway: 'GATEWAY'\n";

#[test]
fn errors_name_the_file_and_the_value() {
    let bad_mask = Drive::new(
        "mask",
        &WAN.replace("NETMASK", "255.0.255.0")
            .replace("GATEWAY", "203.0.113.254"),
    );
    assert_eq!(
        bad_mask.error(),
        "DRIVE/network-config: config[0] (eth0).subnets[0].netmask: expected a dotted netmask like 255.255.255.255, found \"255.0.255.0\""
    );
    let bad_gw = Drive::new(
        "gw",
        &WAN.replace("NETMASK", "255.255.255.255")
            .replace("GATEWAY", "203.0.113.2544"),
    );
    assert_eq!(
        bad_gw.error(),
        "DRIVE/network-config: config[0] (eth0).subnets[0].gateway: expected an IPv4 address, found \"203.0.113.2544\""
    );
    let no_gw = Drive::new(
        "nogw",
        &WAN.replace("NETMASK", "255.255.255.255")
            .replace("        gateway: 'GATEWAY'\n", ""),
    );
    assert!(
        no_gw
            .error()
            .contains("no interface has a static address with a gateway, so there is no WAN"),
        "{}",
        no_gw.error()
    );
}

#[test]
fn yaml_syntax_errors_have_line_and_column() {
    let drive = Drive::new(
        "syntax",
        "version: 1\nconfig:\n    - type: physical\n      name: [eth0\n",
    );
    let err = drive.error();
    assert!(
        err.starts_with("DRIVE/network-config:") && err.contains("not YAML"),
        "{err}"
    );
    let position = err
        .trim_start_matches("DRIVE/network-config:")
        .split(':')
        .take(2)
        .collect::<Vec<_>>();
    assert!(
        position.iter().all(|p| p.parse::<u32>().is_ok_and(|n| n > 0)),
        "no line:column in {err}"
    );
}

#[test]
fn version_2_is_refused_with_the_reason() {
    let drive = Drive::new(
        "v2",
        "version: 2\nethernets:\n    net0:\n        match:\n            macaddress: \"02:00:00:00:00:10\"\n",
    );
    assert_eq!(drive.error(), "DRIVE/network-config: version 2 is not supported: routerd reads version 1, which Proxmox writes for citype nocloud");
}

#[test]
fn a_script_as_user_data_is_refused() {
    let drive = Drive::new("script", WAN);
    fs::write(drive.0.join("user-data"), "#!/bin/sh\necho hi\n").expect("write");
    assert!(
        drive
            .error()
            .starts_with("DRIVE/user-data: a script as user-data is not supported"),
        "{}",
        drive.error()
    );
}

#[test]
fn an_invalid_router_toml_as_user_data_reports_its_own_line_and_column() {
    let drive = Drive::new("badtoml", WAN);
    let toml = "[wan]\nmac = \"02:00:00:00:00:1g\"\naddress = \"203.0.113.10/32\"\ngateway = \"203.0.113.254\"\n\n[lan]\naddress = \"172.16.0.1/16\"\n";
    fs::write(drive.0.join("user-data"), toml).expect("write");
    let err = Config::load(&drive.0)
        .expect_err("invalid")
        .to_string()
        .replace(&drive.0.display().to_string(), "DRIVE");
    assert!(
        err.contains("DRIVE/user-data:2:7: wan.mac: expected a MAC address"),
        "{err}"
    );
}

/// Hetzner with an extra IP on its own MAC: net2 (`qm set ID --net2
/// virtio=02:00:00:00:00:11,bridge=vmbr0 --ipconfig2 ip=203.0.113.20/32`), laid out as
/// qemu-server writes network-config.
const THREE_NICS: &str = "version: 1
config:
    - type: physical
      name: eth0
      mac_address: '02:00:00:00:00:10'
      subnets:
      - type: static
        address: '203.0.113.10'
        netmask: '255.255.255.255'
        gateway: '203.0.113.254'
    - type: physical
      name: eth1
      mac_address: 'bc:24:11:00:00:01'
      subnets:
      - type: static
        address: '172.16.0.1'
        netmask: '255.255.0.0'
    - type: physical
      name: eth2
      mac_address: '02:00:00:00:00:11'
      subnets:
      - type: static
        address: '203.0.113.20'
        netmask: '255.255.255.255'
";

#[test]
fn a_third_nic_with_a_public_address_and_no_gateway_is_an_extra_wan() {
    let drive = Drive::new("extra_wan", THREE_NICS);
    let generated = config::cloudinit::generate(&drive.0).expect("a router from three NICs");
    let config = Config::parse(&generated.toml, "generated").expect("valid");
    assert_eq!(config.wan.extra.len(), 1, "{}", generated.toml);
    let extra = &config.wan.extra[0];
    assert_eq!(extra.nic, NicSelector::Mac(MacAddr([2, 0, 0, 0, 0, 0x11])));
    assert_eq!(extra.address.to_string(), "203.0.113.20/32");
    assert_eq!(extra.gateway, config.wan.gateway);
    assert_eq!(config.lans[0].address.to_string(), "172.16.0.1/16");
    assert!(
        generated
            .notes
            .iter()
            .any(|n| n.contains("eth2 has a public address and no gateway")),
        "{:?}",
        generated.notes
    );
    // net1 without an ipconfig (the default LAN) and net2's public /32: still an extra
    // WAN, not a LAN (no LAN fits in a /32).
    let no_lan_ipconfig = THREE_NICS.replace(
        "      subnets:\n      - type: static\n        address: '172.16.0.1'\n        netmask: '255.255.0.0'\n",
        "",
    );
    assert_ne!(no_lan_ipconfig, THREE_NICS);
    let drive = Drive::new("extra_wan_default_lan", &no_lan_ipconfig);
    let generated = config::cloudinit::generate(&drive.0).expect("a router from three NICs");
    let config = Config::parse(&generated.toml, "generated").expect("valid");
    assert_eq!(config.wan.extra.len(), 1, "{}", generated.toml);
    assert_eq!(
        config.lans[0].address.to_string(),
        config::cloudinit::DEFAULT_LAN,
        "{}",
        generated.toml
    );
    // Two private LANs are still refused (the router has one LAN).
    let two_lans = Drive::new("two_lans", &THREE_NICS.replace("'203.0.113.20'", "'10.0.0.1'"));
    assert!(
        two_lans
            .error()
            .contains("have static addresses but the router has one LAN"),
        "{}",
        two_lans.error()
    );
}
