//! The real [`Host`]: what the guest agent reads from and does to this system.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Map, Value};

use super::freeze;
use super::protocol::{Host, ShutdownMode};

/// A freeze the host never lifts is lifted after this long: a router whose lease
/// writes wait for ever is worse than a backup with a lease log caught mid-write
/// (which routerd reads back anyway).
pub const FREEZE_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct System {
    frozen: Vec<String>,
    since: Option<Instant>,
}

/// `/etc/os-release` as `KEY=value` pairs, quotes removed.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches('"').trim_matches('\'').to_string(),
            )
        })
        .collect()
}

/// `guest-get-osinfo` from os-release and uname.
pub fn os_info(os_release: &BTreeMap<String, String>, uname: Option<(String, String, String)>) -> Value {
    let mut info = Map::new();
    for (key, field) in [
        ("ID", "id"),
        ("NAME", "name"),
        ("PRETTY_NAME", "pretty-name"),
        ("VERSION", "version"),
        ("VERSION_ID", "version-id"),
        ("VARIANT", "variant"),
        ("VARIANT_ID", "variant-id"),
    ] {
        if let Some(v) = os_release.get(key) {
            info.insert(field.into(), json!(v));
        }
    }
    if let Some((release, version, machine)) = uname {
        info.insert("kernel-release".into(), json!(release));
        info.insert("kernel-version".into(), json!(version));
        info.insert("machine".into(), json!(machine));
    }
    Value::Object(info)
}

fn prefix_of(mask: &[u8]) -> u32 {
    mask.iter().map(|b| b.count_ones()).sum()
}

const STATISTICS: [(&str, &str); 8] = [
    ("rx-bytes", "rx_bytes"),
    ("rx-packets", "rx_packets"),
    ("rx-errs", "rx_errors"),
    ("rx-dropped", "rx_dropped"),
    ("tx-bytes", "tx_bytes"),
    ("tx-packets", "tx_packets"),
    ("tx-errs", "tx_errors"),
    ("tx-dropped", "tx_dropped"),
];

fn statistics(name: &str) -> Value {
    let mut stats = Map::new();
    for (field, file) in STATISTICS {
        let path = format!("/sys/class/net/{name}/statistics/{file}");
        let n = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        stats.insert(field.into(), json!(n));
    }
    Value::Object(stats)
}

/// `guest-network-get-interfaces`: every interface with its MAC, addresses and
/// counters, in the kernel's order.
fn interfaces() -> Value {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return json!([]);
    };
    let mut order: Vec<String> = Vec::new();
    let mut by_name: BTreeMap<String, (Option<String>, Vec<Value>)> = BTreeMap::new();
    for a in addrs {
        let name = a.interface_name.clone();
        if !by_name.contains_key(&name) {
            order.push(name.clone());
        }
        let entry = by_name.entry(name).or_default();
        let Some(address) = a.address else { continue };
        if let Some(link) = address.as_link_addr() {
            if let Some(mac) = link.addr() {
                entry.0 = Some(mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"));
            }
        } else if let Some(v4) = address.as_sockaddr_in() {
            let prefix = a
                .netmask
                .and_then(|m| m.as_sockaddr_in().map(|m| prefix_of(&m.ip().octets())))
                .unwrap_or(32);
            entry
                .1
                .push(json!({ "ip-address-type": "ipv4", "ip-address": v4.ip().to_string(), "prefix": prefix }));
        } else if let Some(v6) = address.as_sockaddr_in6() {
            let prefix = a
                .netmask
                .and_then(|m| m.as_sockaddr_in6().map(|m| prefix_of(&m.ip().octets())))
                .unwrap_or(128);
            entry
                .1
                .push(json!({ "ip-address-type": "ipv6", "ip-address": v6.ip().to_string(), "prefix": prefix }));
        }
    }
    let list: Vec<Value> = order
        .iter()
        .filter_map(|name| {
            let (mac, ips) = by_name.get(name)?;
            let mut iface = Map::new();
            iface.insert("name".into(), json!(name));
            if let Some(mac) = mac {
                iface.insert("hardware-address".into(), json!(mac));
            }
            iface.insert("ip-addresses".into(), json!(ips));
            iface.insert("statistics".into(), statistics(name));
            Some(Value::Object(iface))
        })
        .collect();
    Value::Array(list)
}

impl Host for System {
    /// Thaws when a freeze has lasted longer than [`FREEZE_LIMIT`]; says so.
    fn thaw_if_overdue(&mut self, now: Instant) {
        if self
            .since
            .is_some_and(|t| now.saturating_duration_since(t) >= FREEZE_LIMIT)
        {
            let what = self.frozen.join(", ");
            let _ = self.thaw();
            crate::console::say(&format!(
                "init agent: {what} frozen for {} s without guest-fsfreeze-thaw: thawed",
                FREEZE_LIMIT.as_secs()
            ));
        }
    }

    fn hostname(&self) -> String {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
    }

    fn os_info(&self) -> Value {
        let release = parse_os_release(&std::fs::read_to_string("/etc/os-release").unwrap_or_default());
        let uname = nix::sys::utsname::uname().ok().map(|u| {
            let s = |o: &std::ffi::OsStr| o.to_string_lossy().into_owned();
            (s(u.release()), s(u.version()), s(u.machine()))
        });
        os_info(&release, uname)
    }

    fn interfaces(&self) -> Value {
        interfaces()
    }

    fn time_ns(&self) -> i64 {
        let since = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
    }

    fn shutdown(&mut self, mode: ShutdownMode) -> Result<(), String> {
        // init's own signals: SIGUSR2 powers off, SIGINT reboots (after stopping
        // routerd and unmounting the disks).
        let signal = match mode {
            ShutdownMode::Powerdown | ShutdownMode::Halt => Signal::SIGUSR2,
            ShutdownMode::Reboot => Signal::SIGINT,
        };
        kill(Pid::from_raw(1), signal).map_err(|e| format!("signalling init: {}", e.desc()))
    }

    fn freeze(&mut self, only: Option<&[String]>) -> Result<usize, String> {
        // guest-fsfreeze-freeze-list: the freezable ones among those named.
        let targets: Vec<String> = freeze::current_freezable()
            .into_iter()
            .filter(|t| only.is_none_or(|list| list.contains(t)))
            .collect();
        for target in &targets {
            if let Err(e) = freeze::freeze(target) {
                // All or nothing, as qemu-ga: what was frozen is thawed again.
                let _ = self.thaw();
                return Err(e);
            }
            self.frozen.push(target.clone());
        }
        self.since = Some(Instant::now());
        Ok(targets.len())
    }

    fn thaw(&mut self) -> Result<usize, String> {
        let mut thawed = 0;
        let mut first_error = None;
        for target in std::mem::take(&mut self.frozen) {
            match freeze::thaw(&target) {
                Ok(true) => thawed += 1,
                Ok(false) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.since = None;
        match first_error {
            Some(e) => Err(e),
            None => Ok(thawed),
        }
    }

    fn frozen(&self) -> bool {
        self.since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osinfo_from_os_release_and_uname() {
        let release = parse_os_release(
            "PRETTY_NAME=\"Router appliance 0.1.0\"\nNAME=\"Router appliance\"\nID=router\nVERSION_ID=\"0.1.0\"\n",
        );
        let info = os_info(
            &release,
            Some(("6.1.0-28-amd64".into(), "#1 SMP Debian".into(), "x86_64".into())),
        );
        assert_eq!(info["id"], "router");
        assert_eq!(info["pretty-name"], "Router appliance 0.1.0");
        assert_eq!(info["version-id"], "0.1.0");
        assert_eq!(info["kernel-release"], "6.1.0-28-amd64");
        assert_eq!(info["machine"], "x86_64");
        assert!(info.get("variant").is_none());
    }

    #[test]
    fn netmask_prefixes() {
        assert_eq!(prefix_of(&[255, 255, 255, 255]), 32);
        assert_eq!(prefix_of(&[255, 255, 0, 0]), 16);
    }
}
