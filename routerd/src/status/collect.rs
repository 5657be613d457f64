//! Gathers a [`Snapshot`] from the kernel (sysfs, procfs, netlink, nft) and from what
//! the daemon shares.

use std::process::Command;

use rtnetlink::Handle;

use super::{DhcpStats, ForwardStats, InterfaceStats, LeaseRow, Shared, Snapshot};
use crate::dhcp::server::unix_now;
use crate::firewall::TABLE;
use crate::net::neighbours::{gateway_state, nic_mac};

const NIC_COUNTERS: [&str; 8] = [
    "rx_bytes",
    "rx_packets",
    "rx_errors",
    "rx_dropped",
    "tx_bytes",
    "tx_packets",
    "tx_errors",
    "tx_dropped",
];

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn interface(role: &'static str, name: &str, address: String) -> InterfaceStats {
    let counters = NIC_COUNTERS
        .iter()
        .filter_map(|c| Some((*c, read_u64(&format!("/sys/class/net/{name}/statistics/{c}"))?)))
        .collect();
    let mac = nic_mac(name);
    InterfaceStats {
        role,
        name: name.to_string(),
        mac,
        address,
        counters,
    }
}

/// Per-forward counters from the nft ruleset: the prerouting rules routerd commented.
pub fn forward_counters() -> Vec<ForwardStats> {
    let Ok(out) = Command::new(crate::firewall::program())
        .args(["-j", "list", "chain", "inet", TABLE, "prerouting"])
        .output()
    else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return Vec::new();
    };
    let rules = json["nftables"].as_array().cloned().unwrap_or_default();
    rules
        .iter()
        .filter_map(|item| {
            let rule = item.get("rule")?;
            // "forward tcp 80 to 172.16.10.205:8080"
            let comment = rule["comment"].as_str()?.strip_prefix("forward ")?;
            let mut words = comment.split(' ');
            let (protocol, port, _, to) = (words.next()?, words.next()?, words.next()?, words.next()?);
            let counter = rule["expr"].as_array()?.iter().find_map(|e| e.get("counter"))?;
            Some(ForwardStats {
                protocol: protocol.to_string(),
                port: port.to_string(),
                to: to.to_string(),
                packets: counter["packets"].as_u64().unwrap_or(0),
                bytes: counter["bytes"].as_u64().unwrap_or(0),
            })
        })
        .collect()
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

pub async fn snapshot(shared: &Shared, netlink: &Handle) -> Snapshot {
    let state = shared.get();
    let now = unix_now();
    let mut s = Snapshot {
        now,
        generation: state.generation,
        last_reload: state.last_reload,
        errors: state.errors.iter().cloned().collect(),
        rss_bytes: rss_bytes(),
        gateway_mac_changes: state.gateway_mac_changes,
        ..Snapshot::default()
    };
    if let Some(config) = &state.config {
        s.hostname = config.hostname.clone().unwrap_or_else(|| "router".to_string());
        if let (Some(wan), Some(lan)) = (&state.wan, &state.lan) {
            s.interfaces = vec![
                interface("wan", wan, config.wan.address.to_string()),
                interface("lan", lan, config.lan.address.to_string()),
            ];
            // A pinned entry is permanent whatever the gateway does: the check's verdict counts.
            let (answers, st) = match state.gateway_pinned_answers {
                Some(true) => (true, "pinned".to_string()),
                Some(false) => (false, "pinned, wrong MAC or no answer".to_string()),
                None => gateway_state(netlink, wan, config.wan.gateway).await,
            };
            s.gateway = Some((config.wan.gateway, answers, st));
        }
    }
    let count = read_u64("/proc/sys/net/netfilter/nf_conntrack_count");
    let max = read_u64("/proc/sys/net/netfilter/nf_conntrack_max");
    s.conntrack = count.zip(max);
    // nft is a process to wait for: not on the runtime that also serves DHCP.
    s.forwards = tokio::task::spawn_blocking(forward_counters).await.unwrap_or_default();
    if let Some(view) = &state.dhcp {
        let c = &view.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let counters = vec![
            ("offers", load(&c.offers)),
            ("acks", load(&c.acks)),
            ("naks", load(&c.naks)),
            ("releases", load(&c.releases)),
            ("drops", load(&c.malformed)),
            ("ignored", load(&c.ignored)),
            ("pool_exhausted", load(&c.pool_exhausted)),
            ("probes", load(&c.probes)),
            ("probe_conflicts", load(&c.probe_conflicts)),
        ];
        let report = view.leases().await.unwrap_or_default();
        let mut leases: Vec<LeaseRow> = report
            .active
            .iter()
            .map(|l| LeaseRow {
                address: l.addr,
                mac: l.mac.to_string(),
                hostname: l.hostname.clone().unwrap_or_default(),
                expires_in: l.expires.saturating_sub(now),
            })
            .collect();
        leases.sort_by_key(|l| l.address);
        s.dhcp = Some(DhcpStats {
            pool_size: u64::from(report.pool_size),
            leases,
            counters,
        });
    }
    s
}
