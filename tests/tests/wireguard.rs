//! `[wireguard]` in the namespace lab. The test machines' kernel has no wireguard
//! module, so what is proven here is the router side around it: the key is made once
//! in the state directory (0600) and shown, the missing kernel support is reported
//! clearly on the console and the status page, and the rest of the router applies and
//! forwards all the same. (The tunnel itself is proven in QEMU with the image's kernel.)
//! Needs root; run through `tests/run`.

use std::os::unix::fs::PermissionsExt;

use testkit::http::get;
use testkit::lab::{routerd_bin, Lab, Options, CONFIG};
use testkit::traffic::{tcp_echo, EchoServer};

const PEER_KEY: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";

fn config() -> String {
    format!(
        "{CONFIG}\n[status]\n\n[dns]\n\n[wireguard]\nlisten_port = 51820\naddress = \"10.99.0.1/24\"\n\n[[wireguard.peer]]\nname = \"laptop\"\npublic_key = \"{PEER_KEY}\"\nallowed_ips = [\"10.99.0.2/32\"]\ninternet = true\n"
    )
}

/// Whether this kernel makes WireGuard links (probed in the router's namespace).
fn kernel_has_wireguard(lab: &Lab) -> bool {
    let made = lab
        .router
        .command("ip")
        .args(["link", "add", "wgprobe", "type", "wireguard"])
        .output()
        .is_ok_and(|o| o.status.success());
    if made {
        let _ = lab.router.command("ip").args(["link", "del", "wgprobe"]).output();
    }
    made
}

#[test]
fn without_kernel_wireguard_the_router_says_so_and_runs_on() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    if kernel_has_wireguard(&lab) {
        eprintln!("this kernel has WireGuard: the missing-module path cannot be shown here");
        return;
    }
    lab.start_routerd(&config());
    lab.wait_log("status page and metrics listening", 1);
    let log = lab.log();
    assert!(
        log.contains(
            "this kernel has no WireGuard (no wireguard module): [wireguard] is not applied, the rest of the router is"
        ),
        "{log}"
    );

    // The key: made once in the state directory, 0600, never in the log.
    let key_file = lab.state_dir().join("wireguard.key");
    let private = std::fs::read_to_string(&key_file).expect("the key file is made");
    let mode = std::fs::metadata(&key_file).expect("key file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!log.contains(private.trim()), "the private key is in the log:\n{log}");
    let out = std::process::Command::new(routerd_bin())
        .args(["wireguard", "pubkey", "--config"])
        .arg(lab.config_path())
        .arg("--state")
        .arg(lab.state_dir())
        .output()
        .expect("routerd wireguard pubkey");
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success() && public.len() == 44, "{out:?}");
    assert!(
        log.contains(&format!("WireGuard public key of this router: {public}")),
        "the console shows the public key:\n{log}"
    );

    // The rest of the router works: a port forward and NAT.
    let _web = EchoServer::tcp(&lab.web, "0.0.0.0:8080");
    let _inet = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    assert_eq!(tcp_echo(&lab.inet, "203.0.113.10:80", "in").expect("the forward"), "in");
    assert_eq!(tcp_echo(&lab.guest, "198.51.100.1:7000", "out").expect("NAT"), "out");

    // The status page shows the key and why the tunnel is down.
    let (code, page) = get(&lab.guest, "172.16.0.1:80", "/").expect("status page");
    assert_eq!(code, 200);
    assert!(page.contains(&format!("<code>{public}</code>")), "{page}");
    let (_, metrics) = get(&lab.guest, "172.16.0.1:80", "/metrics").expect("metrics");
    assert!(
        metrics.contains("# TYPE router_wireguard_peer_rx_bytes_total counter"),
        "{metrics}"
    );
    // In the WireGuard section (read from the kernel at each request, over generic
    // netlink: the family is not there), not only among the last errors.
    let section = page
        .split("<h2>WireGuard</h2>")
        .nth(1)
        .and_then(|rest| rest.split("<h2>").next())
        .unwrap_or_default();
    assert!(section.contains("this kernel has no WireGuard"), "{page}");
    // The whole ruleset, tunnel rules included, is in place: nft matches links by name,
    // so rules for the missing wg0 load all the same.
    let ruleset = lab.router.sh("nft list table inet routerd");
    for rule in [
        "iifname \"wan\" ip daddr 203.0.113.10 udp dport 51820 accept",
        "iifname \"wg0\" ip saddr 10.99.0.2 ip daddr 10.99.0.1 udp dport 53 accept",
        "iifname \"wg0\" ip saddr 10.99.0.2 oifname \"lan\" accept",
        "oifname \"wan\" ip saddr 10.99.0.2 snat ip to 203.0.113.10",
    ] {
        assert!(ruleset.contains(rule), "{rule}\nin\n{ruleset}");
    }

    // A reload keeps the same key and still runs.
    lab.reload(&config().replace("51820", "51821"));
    lab.wait_log("config applied", 1);
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("key"),
        private,
        "the key is made once"
    );
    assert!(lab.routerd_alive());
}
