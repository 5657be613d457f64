//! Real DHCP clients from Debian packages (ISC dhclient, busybox udhcpc) in a lab
//! guest. Each runs with a hook script of ours that configures the address with `ip`
//! and records what the server handed out, so nothing outside the namespace changes
//! (no /etc/resolv.conf, no shared lease files).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{run, Netns};

/// What a client was given, as its hook saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    pub event: String,
    pub address: String,
    pub netmask: String,
    pub routers: String,
    pub dns: String,
    pub domain: String,
    pub lease_secs: String,
}

/// The hook both clients call: it normalises their variables into one `key=value`
/// line per event appended to the events file (dhclient clears the environment, so
/// its path is written into the script), and (un)configures the address.
const HOOK: &str = r#"#!/bin/sh
# dhclient passes $reason and new_* variables; udhcpc passes $1 and short names.
if [ -n "$reason" ]; then
  event=$reason; ip=$new_ip_address; mask=$new_subnet_mask; routers=$new_routers
  dns=$new_domain_name_servers; domain=$new_domain_name; lease=$new_dhcp_lease_time
else
  event=$1; mask=$subnet; routers=$router
fi
case "$event" in
  BOUND|RENEW|REBIND|REBOOT|bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    ip route replace default via "${routers%% *}" dev "$interface" ;;
  RELEASE|EXPIRE|STOP|deconfig)
    ip addr flush dev "$interface" ;;
esac
echo "event=$event address=$ip netmask=$mask routers=$routers dns=$dns domain=$domain lease=$lease" >> "@EVENTS@"
exit 0
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dhclient,
    Udhcpc,
}

pub struct Client {
    pub kind: Kind,
    dir: PathBuf,
    ns_name: String,
    daemon: Option<Child>,
    /// The host name option udhcpc sends.
    hostname: String,
}

impl Client {
    pub fn new(kind: Kind, ns: &Netns, dir: &Path) -> Client {
        let dir = dir.join(format!("{}-{kind:?}", ns.name));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let hook = dir.join("hook");
        let script = HOOK.replace("@EVENTS@", &dir.join("events").display().to_string());
        std::fs::write(&hook, script).unwrap_or_else(|e| panic!("hook: {e}"));
        run(Command::new("chmod").arg("+x").arg(&hook));
        Client {
            kind,
            dir,
            ns_name: ns.name.clone(),
            daemon: None,
            hostname: "udhcpc-guest".to_string(),
        }
    }

    /// The host name udhcpc asks with (its `-x hostname:` option).
    pub fn with_hostname(mut self, name: &str) -> Client {
        self.hostname = name.to_string();
        self
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns_name, program]);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn dhclient(&self, extra: &[&str]) -> Command {
        let mut cmd = self.command("dhclient");
        cmd.arg("-d")
            .arg("-v")
            .arg("-lf")
            .arg(self.dir.join("leases"))
            .arg("-pf")
            .arg(self.dir.join("pid"));
        cmd.arg("-sf").arg(self.dir.join("hook")).args(extra).arg("eth0");
        cmd
    }

    /// Starts the client; it keeps running (and renewing) until stopped.
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("client.log")).unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = match self.kind {
            Kind::Dhclient => self.dhclient(&[]),
            Kind::Udhcpc => {
                let mut c = self.command("busybox");
                c.args(["udhcpc", "-f", "-i", "eth0", "-t", "5", "-T", "1", "-s"])
                    .arg(self.dir.join("hook"));
                c.arg("-x").arg(format!("hostname:{}", self.hostname));
                c
            }
        };
        let child = cmd
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("{e}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.kind));
        self.daemon = Some(child);
    }

    /// Asks the running client to renew (udhcpc: SIGUSR1 sends a unicast REQUEST).
    pub fn renew(&self) {
        let pid = self
            .daemon
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("client not running"));
        run(Command::new("kill").args(["-USR1", &pid.to_string()]));
    }

    /// Releases the lease and stops the client.
    pub fn release(&mut self) {
        match self.kind {
            Kind::Dhclient => {
                self.stop();
                let out = self
                    .dhclient(&["-r"])
                    .output()
                    .unwrap_or_else(|e| panic!("dhclient -r: {e}"));
                assert!(
                    out.status.success(),
                    "dhclient -r: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Kind::Udhcpc => {
                let pid = self
                    .daemon
                    .as_ref()
                    .map(Child::id)
                    .unwrap_or_else(|| panic!("client not running"));
                run(Command::new("kill").args(["-USR2", &pid.to_string()]));
                self.wait_event("deconfig", 1);
                self.stop();
            }
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Forgets everything the client remembered (its lease file), as a new VM would.
    pub fn forget(&self) {
        let _ = std::fs::remove_file(self.dir.join("leases"));
    }

    /// The client's lease file (dhclient: what it remembers across restarts).
    pub fn lease_file(&self) -> PathBuf {
        self.dir.join("leases")
    }

    pub fn events(&self) -> Vec<Lease> {
        let text = std::fs::read_to_string(self.dir.join("events")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let kv: HashMap<&str, &str> = line.split(' ').filter_map(|f| f.split_once('=')).collect();
                let get = |k: &str| kv.get(k).copied().unwrap_or_default().to_string();
                Lease {
                    event: get("event"),
                    address: get("address"),
                    netmask: get("netmask"),
                    routers: get("routers"),
                    dns: get("dns"),
                    domain: get("domain"),
                    lease_secs: get("lease"),
                }
            })
            .collect()
    }

    /// Waits (bounded) until the hook saw `event` (case-insensitive) `count` times,
    /// and returns the last such event.
    pub fn wait_event(&self, event: &str, count: usize) -> Lease {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let matching: Vec<Lease> = self
                .events()
                .into_iter()
                .filter(|e| e.event.eq_ignore_ascii_case(event))
                .collect();
            if matching.len() >= count {
                return matching.last().cloned().unwrap_or_default();
            }
            if Instant::now() > deadline {
                panic!(
                    "{:?} did not report {event} {count} time(s) within 40 s; events: {:?}\nclient log:\n{}",
                    self.kind,
                    self.events(),
                    std::fs::read_to_string(self.dir.join("client.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the first lease of a fresh start: dhclient says BOUND, udhcpc bound.
    pub fn wait_bound(&self) -> Lease {
        self.wait_event("bound", 1)
    }

    pub fn client_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("client.log")).unwrap_or_default()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}
