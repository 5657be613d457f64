//! The lab: how the tests stand in for a hoster, in network namespaces.
//!
//! ```text
//!  inet 198.51.100.1 ── hoster 198.51.100.254 / vmbr0 203.0.113.254 (MAC filter on the router's port)
//!                                          │
//!                                  router: wan ─ routerd ─ lan
//!                                                           │
//!                                      lanbr: vmbr1 ── guest 172.16.10.50, web 172.16.10.205
//! ```
//!
//! The hosts, each a namespace named `<prefix>-<role>` with a prefix unique to the lab:
//! - `inet`: an "internet" host, 198.51.100.1/24 (echo and HTTP servers), routed via the hoster.
//! - `hoster`: the hoster's gateway: 198.51.100.254 towards `inet`, and the bridge `vmbr0`
//!   (the WAN segment, Proxmox's vmbr0) holding 203.0.113.254 and the route to the failover
//!   IP 203.0.113.10/32. A bridge filter drops every frame from the router's port whose
//!   source MAC is not the virtual MAC [`VIRTUAL_MAC`], as hosters do.
//! - `router`: routerd with its NICs `wan` and `lan` (veths; in [`crate::vm::vm_lab`] the
//!   namespace is only two bridges and the VM's virtio NICs sit on them through taps).
//! - `lanbr`: the LAN bridge `vmbr1` (Proxmox's vmbr1) with the guests `guest` and `web`
//!   (the forwards' target), and any guest a test adds (DHCP clients).
//!
//! Safety rules, for every test and bench built on this crate:
//! - Namespaces only: nothing changes the machine's root network namespace (no addresses,
//!   links, routes, sysctls or nft rules there). Each test makes its own uniquely named
//!   namespaces and removes them on drop, also when it fails.
//! - QEMU only through `qemu/run`: `-nodefaults`, only the NICs the test attaches (taps
//!   inside the test's own namespace), never user-mode networking; TCG unless asked.
//! - "Public" addresses only from the documentation ranges 198.51.100.0/24 and
//!   203.0.113.0/24, private ones only inside namespaces. Never 192.0.2.0/24: the
//!   machines' own uplink is there, so a command that escaped its namespace would reach a
//!   real gateway. Traffic never leaves the machine.
//! - Load and soak loops are bounded in count and time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{run, veth, Netns};

pub const VIRTUAL_MAC: &str = "02:00:00:00:00:10";
pub const FAILOVER_IP: &str = "203.0.113.10";
pub const INET_IP: &str = "198.51.100.1";
pub const GUEST_IP: &str = "172.16.10.50";
pub const WEB_IP: &str = "172.16.10.205";
pub const ROUTER_LAN_IP: &str = "172.16.0.1";

/// The lab's config: failover /32 with an on-link gateway, NIC chosen by name so that
/// routerd has to set the virtual MAC, and forwards of each kind to `web`.
pub const CONFIG: &str = r#"hostname = "router"

[wan]
interface = "wan"
mac = "02:00:00:00:00:10"
address = "203.0.113.10/32"
gateway = "203.0.113.254"
dns = ["198.51.100.53"]

[lan]
interface = "lan"
address = "172.16.0.1/16"

[[forward]]
protocol = "tcp"
port = 80
to = "172.16.10.205"
to_port = 8080

[[forward]]
protocol = "udp"
port = 5353
to = "172.16.10.205"

[[forward]]
protocol = "both"
port = "8000-8003"
to = "172.16.10.205"
to_port = 9000
"#;

/// Where the routerd binary is: `$ROUTERD_BIN`, else the workspace's debug build
/// (`tests/run` builds it first).
pub fn routerd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ROUTERD_BIN") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/routerd");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p routerd` (tests/run does) or set ROUTERD_BIN",
        p.display()
    );
    p
}

pub struct Options {
    /// The MAC the router's WAN veth starts with (None: a random one).
    pub wan_mac: Option<&'static str>,
}

pub struct Lab {
    routerd: Option<Child>,
    /// Run routerd with `--set-hostname`, in a UTS namespace of its own (`unshare
    /// --uts`): the lab shares the machine's, whose name a test must never change.
    pub set_hostname: bool,
    /// Every namespace of this lab is named `<prefix>-<role>`.
    prefix: String,
    pub dir: PathBuf,
    pub inet: Netns,
    pub hoster: Netns,
    pub router: Netns,
    pub lanbr: Netns,
    pub guest: Netns,
    pub web: Netns,
}

impl Lab {
    pub fn new(opts: Options) -> Lab {
        let p = crate::netns::unique_prefix();
        let dir = std::env::temp_dir().join(format!("{p}-lab"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let ns = |role: &str| Netns::new(&format!("{p}-{role}"));
        let lab = Lab {
            routerd: None,
            set_hostname: false,
            prefix: p.clone(),
            dir,
            inet: ns("inet"),
            hoster: ns("hoster"),
            router: ns("router"),
            lanbr: ns("lanbr"),
            guest: ns("guest"),
            web: ns("web"),
        };

        // internet host <-> hoster
        veth(&lab.inet, "eth0", &lab.hoster, "up0", None);
        lab.inet.ip(&["addr", "add", "198.51.100.1/24", "dev", "eth0"]);
        lab.inet.ip(&["route", "add", "default", "via", "198.51.100.254"]);
        lab.hoster.ip(&["addr", "add", "198.51.100.254/24", "dev", "up0"]);
        lab.hoster.sysctl("net.ipv4.ip_forward", "1");

        // hoster's bridge (vmbr0) with the router's WAN port and the failover route
        lab.hoster.ip(&["link", "add", "vmbr0", "type", "bridge"]);
        lab.hoster.ip(&["link", "set", "vmbr0", "up"]);
        veth(&lab.router, "wan", &lab.hoster, "p-router", opts.wan_mac);
        lab.hoster.ip(&["link", "set", "p-router", "master", "vmbr0"]);
        lab.hoster.ip(&["addr", "add", "203.0.113.254/32", "dev", "vmbr0"]);
        lab.hoster.ip(&["route", "add", "203.0.113.10/32", "dev", "vmbr0"]);
        // Hosters drop every frame from a server port whose source MAC is not the
        // virtual MAC they issued for the failover IP.
        lab.hoster.sh(&format!(
            "nft -f - <<'EOF'
table bridge hoster {{
  chain input {{
    type filter hook input priority 0;
    iifname \"p-router\" ether saddr != {VIRTUAL_MAC} counter drop
    iifname \"p-router\" counter accept
  }}
  chain forward {{
    type filter hook forward priority 0;
    iifname \"p-router\" ether saddr != {VIRTUAL_MAC} counter drop
    iifname \"p-router\" counter accept
  }}
}}
EOF"
        ));

        // LAN bridge (vmbr1) with the router and two guests
        lab.lanbr.ip(&["link", "add", "vmbr1", "type", "bridge"]);
        lab.lanbr.ip(&["link", "set", "vmbr1", "up"]);
        veth(&lab.router, "lan", &lab.lanbr, "p-router", None);
        lab.lanbr.ip(&["link", "set", "p-router", "master", "vmbr1"]);
        for (guest, port, ip) in [(&lab.guest, "p-guest", GUEST_IP), (&lab.web, "p-web", WEB_IP)] {
            veth(guest, "eth0", &lab.lanbr, port, None);
            lab.lanbr.ip(&["link", "set", port, "master", "vmbr1"]);
            guest.ip(&["addr", "add", &format!("{ip}/16"), "dev", "eth0"]);
            guest.ip(&["route", "add", "default", "via", ROUTER_LAN_IP]);
        }
        lab
    }

    /// A new guest on the LAN bridge with no address (for DHCP clients).
    pub fn add_lan_guest(&self, name: &str, mac: &str) -> Netns {
        self.add_guest_on(&self.lanbr, name, mac)
    }

    /// Another LAN segment, as a Proxmox bridge per LAN: a namespace `<prefix>-<nic>br`
    /// holding the bridge `vmbr1`, linked to a new router NIC named `nic`. Guests join
    /// it with [`Lab::add_guest_on`].
    pub fn add_lan_bridge(&self, nic: &str) -> Netns {
        let bridge = Netns::new(&format!("{}-{nic}br", self.prefix));
        bridge.ip(&["link", "add", "vmbr1", "type", "bridge"]);
        bridge.ip(&["link", "set", "vmbr1", "up"]);
        veth(&self.router, nic, &bridge, "p-router", None);
        bridge.ip(&["link", "set", "p-router", "master", "vmbr1"]);
        bridge
    }

    /// A new guest with no address whose frames reach the bridge `vmbr1` of `bridge`
    /// tagged with VLAN `vid` (and only those of that VLAN come back, untagged): a
    /// guest on a Proxmox VLAN-aware bridge with `tag=vid`. The tagging stops when the
    /// returned port is dropped.
    pub fn add_tagged_guest_on(
        &self,
        bridge: &Netns,
        name: &str,
        mac: &str,
        vid: u16,
    ) -> (Netns, crate::vlan_tag::AccessPort) {
        let ns = Netns::new(&format!("{}-{name}", self.prefix));
        let access = format!("a-{name}");
        let (trunk, port) = (format!("t-{name}"), format!("p-{name}"));
        veth(&ns, "eth0", bridge, &access, Some(mac));
        bridge.ip(&["link", "add", &trunk, "type", "veth", "peer", "name", &port]);
        for l in [&trunk, &port] {
            bridge.ip(&["link", "set", l, "up"]);
        }
        bridge.ip(&["link", "set", &port, "master", "vmbr1"]);
        let tagging = crate::vlan_tag::start(bridge, &access, &trunk, vid);
        (ns, tagging)
    }

    /// A new guest with no address on the bridge `vmbr1` of the namespace `bridge`.
    pub fn add_guest_on(&self, bridge: &Netns, name: &str, mac: &str) -> Netns {
        let ns = Netns::new(&format!("{}-{name}", self.prefix));
        let port = format!("p-{name}");
        veth(&ns, "eth0", bridge, &port, Some(mac));
        bridge.ip(&["link", "set", &port, "master", "vmbr1"]);
        ns
    }

    /// A second WAN port of the router (Proxmox's net2 on vmbr0): the router's NIC
    /// `name`, the hoster's bridge port `p-<name>`.
    pub fn add_router_wan_port(&self, name: &str, mac: Option<&str>) {
        let port = format!("p-{name}");
        veth(&self.router, name, &self.hoster, &port, mac);
        self.hoster.ip(&["link", "set", &port, "master", "vmbr0"]);
    }

    /// The hoster routes another failover IP to its bridge, as it does the first.
    pub fn route_failover_ip(&self, ip: &str) {
        self.hoster.ip(&["route", "add", &format!("{ip}/32"), "dev", "vmbr0"]);
    }

    /// Replaces the hoster's MAC filter with Hetzner's: IPv4 and ARP frames from the
    /// router's `ports` pass only when their source address comes with its own MAC,
    /// one of `pairs` (IP, MAC); others are dropped (counted). Each port counts what
    /// it passed (see [`Lab::hoster_port_passed`]).
    pub fn hoster_ip_mac_filter(&self, ports: &[&str], pairs: &[(&str, &str)]) {
        let elements = pairs
            .iter()
            .map(|(ip, mac)| format!("{ip} . {mac}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut chains = String::new();
        for hook in ["input", "forward"] {
            chains.push_str(&format!("  chain {hook} {{\n    type filter hook {hook} priority 0;\n"));
            for port in ports {
                chains.push_str(&format!(
                    "    iifname \"{port}\" ether type ip ip saddr . ether saddr @allowed counter accept comment \"{port}\"\n    \
                     iifname \"{port}\" ether type arp arp saddr ip . ether saddr @allowed counter accept comment \"{port}\"\n"
                ));
            }
            let all = ports.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
            chains.push_str(&format!(
                "    iifname {{ {all} }} ether type {{ ip, arp }} counter drop\n  }}\n"
            ));
        }
        self.hoster.sh(&format!(
            "nft -f - <<'EOF'
delete table bridge hoster
table bridge hoster {{
  set allowed {{ type ipv4_addr . ether_addr; elements = {{ {elements} }} }}
{chains}}}
EOF"
        ));
    }

    /// IPv4 and ARP packets the Hetzner filter passed from the router's `port`.
    pub fn hoster_port_passed(&self, port: &str) -> u64 {
        let listing = self.hoster.sh("nft list table bridge hoster");
        listing
            .lines()
            .filter(|l| l.contains(&format!("comment \"{port}\"")))
            .filter_map(|l| {
                l.split_whitespace()
                    .skip_while(|w| *w != "packets")
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum()
    }

    /// A host on the hoster's WAN segment (vmbr0), next to the router.
    pub fn add_wan_neighbour(&self, name: &str) -> Netns {
        let ns = Netns::new(&format!("{}-{name}", self.prefix));
        let port = format!("p-{name}");
        veth(&ns, "eth0", &self.hoster, &port, None);
        self.hoster.ip(&["link", "set", &port, "master", "vmbr0"]);
        ns
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("router.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("routerd.log")
    }

    /// Writes the config the way an operator's tooling should: temp file + rename.
    pub fn write_config(&self, text: &str) {
        let tmp = self.dir.join("router.toml.tmp");
        std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
        std::fs::rename(&tmp, self.config_path()).unwrap_or_else(|e| panic!("rename: {e}"));
    }

    /// The directory routerd keeps its state in (the appliance's state partition).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Starts `routerd run` with `config` in the router namespace, waits until ready.
    pub fn start_routerd(&mut self, config: &str) {
        self.write_config(config);
        self.spawn_routerd();
        self.wait_log("routerd ready", 1);
    }

    /// Starts `routerd run` on the config file as it is (a fresh log each time).
    pub fn spawn_routerd(&mut self) {
        std::fs::create_dir_all(self.state_dir()).unwrap_or_else(|e| panic!("state dir: {e}"));
        let log = std::fs::File::create(self.log_path()).unwrap_or_else(|e| panic!("log: {e}"));
        let routerd = routerd_bin();
        let routerd = routerd.to_str().unwrap_or("routerd");
        // `unshare` execs routerd, so the child's pid stays routerd's.
        let mut command = if self.set_hostname {
            let mut c = self.router.command("unshare");
            c.args(["--uts", routerd]);
            c
        } else {
            self.router.command(routerd)
        };
        command
            .args(["run", "--config"])
            .arg(self.config_path())
            .arg("--state")
            .arg(self.state_dir());
        if self.set_hostname {
            command.arg("--set-hostname");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("{e}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start routerd: {e}"));
        self.routerd = Some(child);
    }

    /// Stops routerd the way init does (SIGTERM) and waits for it to exit.
    pub fn stop_routerd(&mut self) -> std::process::ExitStatus {
        let mut child = self.routerd.take().unwrap_or_else(|| panic!("routerd is not running"));
        run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
        child.wait().unwrap_or_else(|e| panic!("wait routerd: {e}"))
    }

    /// Kills routerd with SIGKILL (a crash or a power cut, as far as its files go).
    pub fn kill_routerd(&mut self) {
        let mut child = self.routerd.take().unwrap_or_else(|| panic!("routerd is not running"));
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Polls `check` until it gives a value or `within` passes; then fails with `what`
    /// and the output of `diagnose` (a shell command) in the router's namespace.
    pub fn wait_for<T>(&self, what: &str, within: Duration, diagnose: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}\n{}",
                self.router.sh(diagnose)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits (bounded) until `needle` appears `count` times in routerd's log.
    pub fn wait_log(&mut self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.log().matches(needle).count() >= count {
                return;
            }
            if let Some(status) = self.routerd.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("routerd exited ({status}) before logging {needle:?}:\n{}", self.log());
            }
            if Instant::now() > deadline {
                panic!(
                    "routerd did not log {needle:?} {count} time(s) within 30s:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ip netns exec` execs routerd, so the child's pid is routerd's.
    pub fn routerd_pid(&self) -> Option<u32> {
        self.routerd.as_ref().map(Child::id)
    }

    /// The host name routerd sees (its UTS namespace's).
    pub fn routerd_hostname(&self) -> String {
        let pid = self.routerd_pid().unwrap_or_else(|| panic!("routerd is not running"));
        let out = run(Command::new("nsenter").args(["-t", &pid.to_string(), "-u", "hostname"]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn routerd_alive(&mut self) -> bool {
        self.routerd
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Replaces the config file and sends SIGHUP to routerd.
    pub fn reload(&mut self, config: &str) {
        self.write_config(config);
        self.hup();
    }

    /// Sends SIGHUP to routerd: it reloads the config path, whatever is there now.
    pub fn hup(&self) {
        let pid = self.routerd_pid().unwrap_or_else(|| panic!("routerd is not running"));
        run(Command::new("kill").args(["-HUP", &pid.to_string()]));
    }

    /// Everything a user could see of the router's network state.
    pub fn router_state(&self) -> String {
        self.router.sh(
            "ip -d link show; ip addr show; ip route show table all; ip rule show; nft list ruleset; \
             for k in ip_forward conf/all/rp_filter conf/all/send_redirects conf/wan/send_redirects conf/lan/send_redirects; do \
               echo $k=$(cat /proc/sys/net/ipv4/$k); done",
        )
    }

    /// Packets the hoster's MAC filter passed and dropped from the router's port.
    pub fn hoster_filter_counts(&self) -> (u64, u64) {
        let listing = self.hoster.sh("nft list table bridge hoster");
        let (mut passed, mut dropped) = (0, 0);
        for line in listing.lines() {
            let packets = line
                .split_whitespace()
                .skip_while(|w| *w != "packets")
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            if line.contains(" drop") {
                dropped += packets;
            } else if line.contains(" accept") {
                passed += packets;
            }
        }
        (passed, dropped)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.routerd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- routerd log ---\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // The namespaces are removed by their own Drop.
    }
}
