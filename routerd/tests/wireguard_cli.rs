//! `routerd wireguard peer-config` away from the router, as an admin runs it on a
//! workstation with router.toml: the router's key lives on the appliance, so the
//! command takes the public key its console shows (`--router-key`) and never invents
//! one (a made-up key gives a config that cannot connect).

use std::path::PathBuf;
use std::process::{Command, Output};

const ROUTER_KEY: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";

const CONFIG: &str = r#"[wan]
mac = "02:00:00:00:00:10"
address = "203.0.113.10/32"
gateway = "203.0.113.254"

[lan]
address = "172.16.0.1/16"

[wireguard]
listen_port = 51820
address = "10.99.0.1/24"

[[wireguard.peer]]
name = "laptop"
public_key = "2+uY04cKfGvq3Q8/E1jZRa5g5NpEe0yMrkbpwAz0Eic="
allowed_ips = ["10.99.0.2/32"]
"#;

struct Workstation {
    dir: PathBuf,
}

impl Workstation {
    fn new(name: &str) -> Workstation {
        let dir = std::env::temp_dir().join(format!("routerd-wg-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        std::fs::write(dir.join("router.toml"), CONFIG).unwrap_or_else(|e| panic!("{e}"));
        Workstation { dir }
    }

    fn peer_config(&self, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_routerd"))
            .args(["wireguard", "peer-config", "laptop", "--config"])
            .arg(self.dir.join("router.toml"))
            .arg("--state")
            .arg(self.dir.join("state"))
            .args(extra)
            .output()
            .unwrap_or_else(|e| panic!("routerd: {e}"))
    }

    fn key_file_made(&self) -> bool {
        self.dir.join("state/wireguard.key").exists()
    }
}

impl Drop for Workstation {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn without_the_router_key_it_says_how_to_give_it_and_makes_none() {
    let w = Workstation::new("nokey");
    let out = w.peer_config(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("--router-key"), "{stderr}");
    assert!(!w.key_file_made(), "peer-config made a router key of its own");
}

#[test]
fn with_the_router_key_it_prints_a_config_for_that_router() {
    let w = Workstation::new("key");
    let out = w.peer_config(&["--router-key", ROUTER_KEY]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "Address = 10.99.0.2/32",
        &format!("PublicKey = {ROUTER_KEY}"),
        "Endpoint = 203.0.113.10:51820",
        "AllowedIPs = 10.99.0.0/24, 172.16.0.0/16",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line:?} in\n{stdout}");
    }
    assert!(!w.key_file_made());

    let bad = w.peer_config(&["--router-key", "base64..."]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a WireGuard public key"));
}
