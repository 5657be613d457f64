//! Gathers a [`Snapshot`] from the kernel (sysfs, procfs, netlink, nft) and from what
//! the daemon shares.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtnetlink::Handle;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

use super::history::HistoryView;
use super::{DhcpStats, ForwardStats, ForwardTotals, InterfaceStats, LeaseRow, Shared, Snapshot};
use crate::dhcp::server::unix_now;
use crate::firewall::{self, TABLE};
use crate::net::Nic;
use config::Config;

/// The longest one `nft` listing may take before it is killed.
const NFT_DEADLINE: Duration = Duration::from_secs(5);
/// The most of nft's output read: a counter takes about 110 bytes, so room for
/// over 100,000 of them.
const NFT_OUTPUT_MAX: u64 = 16 << 20;
/// The longest the DHCP server may take to list its leases.
const LEASES_DEADLINE: Duration = Duration::from_secs(2);

/// The last snapshot and when its collection started.
type Last = Option<(Instant, Arc<Snapshot>)>;

/// Collects snapshots one at a time, each shared by all the requests that were waiting
/// when it started: however many scrapers there are, one collection runs at a time,
/// and every answer still shows the state after its request came in.
pub struct Collector {
    shared: Arc<Shared>,
    netlink: Handle,
    last: Arc<Mutex<Last>>,
    /// The copy of the history the answers being written now share, with the count of
    /// samples it has (not kept once they are sent).
    view: std::sync::Mutex<Option<(u64, std::sync::Weak<HistoryView>)>>,
}

impl Collector {
    pub fn new(shared: Arc<Shared>, netlink: Handle) -> Arc<Collector> {
        Arc::new(Collector {
            shared,
            netlink,
            last: Arc::default(),
            view: std::sync::Mutex::default(),
        })
    }

    pub async fn snapshot(self: &Arc<Self>) -> Arc<Snapshot> {
        let asked = Instant::now();
        let mut last = self.last.clone().lock_owned().await;
        if let Some((started, snapshot)) = last.as_ref() {
            if *started >= asked {
                return snapshot.clone();
            }
        }
        // The collection runs in a task of its own that holds the lock: a request that
        // gives up (timed out, hung up) leaves it to finish, and none starts another
        // meanwhile, so there is never more than one nft process.
        let this = self.clone();
        let collection = tokio::spawn(async move {
            let started = Instant::now();
            let snapshot = Arc::new(snapshot(&this.shared, &this.netlink).await);
            *last = Some((started, snapshot.clone()));
            snapshot
        });
        collection.await.unwrap_or_default()
    }

    /// A snapshot for the history sampler: with the forwards' counters (an nft listing,
    /// shared with the requests like any other), or without them (sysfs and netlink only).
    pub async fn sample(self: &Arc<Self>, forwards: bool) -> Arc<Snapshot> {
        if forwards {
            self.snapshot().await
        } else {
            Arc::new(snapshot_with(&self.shared, &self.netlink, false).await)
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A snapshot with the graphs' history (for the page and the API; the copy of the
    /// history lives only as long as the answer, the snapshot kept for others has none).
    /// Answers being written at the same time share one copy.
    pub async fn snapshot_with_history(self: &Arc<Self>) -> Snapshot {
        let mut snapshot = (*self.snapshot().await).clone();
        let history = self.shared.history.lock().unwrap_or_else(|e| e.into_inner());
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        let shared_copy = view
            .as_ref()
            .filter(|(recorded, _)| *recorded == history.recorded)
            .and_then(|(_, copy)| copy.upgrade());
        let copy = shared_copy.unwrap_or_else(|| {
            let copy = Arc::new(history.view());
            *view = Some((history.recorded, Arc::downgrade(&copy)));
            copy
        });
        snapshot.history = Some(copy);
        snapshot
    }
}
use crate::net::neighbours::gateway_state;

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

/// A NIC's row: its name and MAC as the apply step left them, its counters from sysfs.
fn interface(role: &'static str, nic: &Nic, address: String) -> InterfaceStats {
    let name = &nic.name;
    let counters = NIC_COUNTERS
        .iter()
        .filter_map(|c| Some((*c, read_u64(&format!("/sys/class/net/{name}/statistics/{c}"))?)))
        .collect();
    InterfaceStats {
        role,
        lan: String::new(),
        name: name.clone(),
        mac: nic.mac.map(|m| m.to_string()).unwrap_or_default(),
        address,
        counters,
    }
}

/// What `nft -j list counters table inet routerd` prints, as far as the collector reads
/// it: each named counter's values (the metainfo and the other fields are skipped).
#[derive(Debug, Deserialize)]
struct CounterListing {
    nftables: Vec<ListingItem>,
}

#[derive(Debug, Deserialize)]
struct ListingItem {
    #[serde(default)]
    counter: Option<CounterValues>,
}

#[derive(Debug, Deserialize)]
struct CounterValues {
    name: String,
    packets: u64,
    bytes: u64,
}

/// Each forward's counters in `listing`, found by the names the firewall gave them.
/// A forward whose counter is not listed (a ruleset older than the config) is left out.
pub fn forward_stats(config: &Config, listing: &[u8]) -> Vec<ForwardStats> {
    let Ok(listing) = serde_json::from_slice::<CounterListing>(listing) else {
        return Vec::new();
    };
    let values: HashMap<String, (u64, u64)> = listing
        .nftables
        .into_iter()
        .filter_map(|item| item.counter)
        .map(|c| (c.name, (c.packets, c.bytes)))
        .collect();
    firewall::forward_counters(config)
        .into_iter()
        .filter_map(|fc| {
            let (packets, bytes) = *values.get(&fc.name)?;
            Some(row(&fc, packets, bytes))
        })
        .collect()
}

/// Per-forward counters, from routerd's named nft counters.
pub async fn read_forward_stats(config: &Config) -> Vec<ForwardStats> {
    if config.forwards.is_empty() {
        return Vec::new();
    }
    match list_counters().await {
        Some(listing) => forward_stats(config, &listing),
        None => Vec::new(),
    }
}

/// Each forward's total: what its counter in the live ruleset counts plus what was
/// carried over from the rulesets before. None when the counters cannot be listed.
/// The caller holds [`Shared::ruleset`].
pub async fn forward_totals(totals: &ForwardTotals) -> Option<Vec<ForwardStats>> {
    let Some(config) = &totals.config else {
        return Some(Vec::new());
    };
    if config.forwards.is_empty() {
        return Some(Vec::new());
    }
    let listing = list_counters().await?;
    Some(with_carried(forward_stats(config, &listing), totals))
}

/// `live` with what `totals` carried over added.
pub fn with_carried(mut live: Vec<ForwardStats>, totals: &ForwardTotals) -> Vec<ForwardStats> {
    for f in &mut live {
        if let Some((packets, bytes)) = totals.carried.get(&f.key()) {
            f.packets = f.packets.saturating_add(*packets);
            f.bytes = f.bytes.saturating_add(*bytes);
        }
    }
    live
}

/// The totals to carry into a ruleset made from `config`, from the totals read just
/// before it replaced the old one (`before`: None when they could not be read, then
/// what was carried before is kept). Forwards no longer in the config are forgotten.
pub fn carry(config: &Arc<Config>, before: Option<Vec<ForwardStats>>, old: &ForwardTotals) -> ForwardTotals {
    let mut carried: HashMap<String, (u64, u64)> = match before {
        Some(rows) => rows.into_iter().map(|f| (f.key(), (f.packets, f.bytes))).collect(),
        None => old.carried.clone(),
    };
    let keys: std::collections::HashSet<String> =
        forward_stats_template(config).iter().map(ForwardStats::key).collect();
    carried.retain(|k, _| keys.contains(k));
    ForwardTotals {
        config: Some(config.clone()),
        carried,
    }
}

/// Each forward's row with zero counts.
fn forward_stats_template(config: &Config) -> Vec<ForwardStats> {
    firewall::forward_counters(config)
        .into_iter()
        .map(|fc| row(&fc, 0, 0))
        .collect()
}

fn row(fc: &firewall::ForwardCounter, packets: u64, bytes: u64) -> ForwardStats {
    ForwardStats {
        public: fc.forward.public.to_string(),
        protocol: fc.transport.to_string(),
        port: fc.forward.ports.to_string(),
        to: format!("{}:{}", fc.forward.to, fc.forward.to_ports),
        packets,
        bytes,
    }
}

/// `nft -j list counters table inet routerd`: at most [`NFT_OUTPUT_MAX`] bytes of it,
/// and the process killed and reaped when it takes longer than [`NFT_DEADLINE`].
async fn list_counters() -> Option<Vec<u8>> {
    let mut child = tokio::process::Command::new(firewall::program())
        .args(["-j", "list", "counters", "table", "inet", TABLE])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let mut out = Vec::new();
    let finished = tokio::time::timeout(NFT_DEADLINE, async {
        stdout.take(NFT_OUTPUT_MAX).read_to_end(&mut out).await?;
        child.wait().await
    })
    .await;
    match finished {
        Ok(Ok(status)) if status.success() => Some(out),
        Ok(Ok(_)) | Ok(Err(_)) => None,
        Err(_) => {
            tracing::warn!("nft took longer than {}s to list the counters", NFT_DEADLINE.as_secs());
            let _ = child.kill().await;
            None
        }
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Seconds since the system booted (`/proc/uptime`).
fn system_uptime() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(secs as u64)
}

pub async fn snapshot(shared: &Shared, netlink: &Handle) -> Snapshot {
    snapshot_with(shared, netlink, true).await
}

/// A snapshot; `forwards`: with the forwards' counters (an nft listing).
pub async fn snapshot_with(shared: &Shared, netlink: &Handle, forwards: bool) -> Snapshot {
    let state = shared.get();
    let now = unix_now();
    let mut s = Snapshot {
        now,
        generation: state.generation,
        last_reload: state.last_reload,
        errors: state.errors.iter().cloned().collect(),
        rss_bytes: rss_bytes(),
        gateway_mac_changes: state.gateway_mac_changes,
        gateway_check: state.gateway_check,
        started: state.started,
        system_uptime: system_uptime(),
        applied_at: state.applied_at,
        by_name: state.proxy.as_ref().map(|p| p.hosts()).unwrap_or_default(),
        by_name_rejected: state.proxy.as_ref().map(|p| p.rejected()).unwrap_or_default(),
        ..Snapshot::default()
    };
    if let Some(config) = &state.config {
        s.hostname = config.system_hostname().to_string();
        if let Some(wan) = &state.wan {
            let wan_addresses = std::iter::once(&config.wan.address)
                .chain(&config.wan.more_addresses)
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            s.interfaces = vec![interface("wan", wan, wan_addresses)];
            let mac_of = |nic: &Nic| nic.mac.map(|m| m.to_string()).unwrap_or_default();
            for a in std::iter::once(&config.wan.address).chain(&config.wan.more_addresses) {
                s.public_addresses.push(super::PublicAddress {
                    address: a.addr(),
                    interface: wan.name.clone(),
                    mac: mac_of(wan),
                });
            }
            for (nic, e) in state.extra_wans.iter().zip(&config.wan.extra) {
                s.interfaces.push(interface("wan", nic, e.address.to_string()));
                s.public_addresses.push(super::PublicAddress {
                    address: e.address.addr(),
                    interface: nic.name.clone(),
                    mac: mac_of(nic),
                });
                let (reachable, state) = gateway_state(netlink, &nic.name, e.gateway).await;
                s.extra_gateways.push(super::ExtraGateway {
                    interface: nic.name.clone(),
                    address: e.address.addr(),
                    gateway: e.gateway,
                    reachable,
                    state,
                });
            }
            for (lan, link) in config.lans.iter().zip(&state.lans) {
                let mut i = interface("lan", link, lan.address.to_string());
                i.lan = lan.name.clone();
                s.interfaces.push(i);
            }
            // A pinned entry is permanent whatever the gateway does: the check's verdict counts.
            let (answers, st) = match state.gateway_pinned_answers {
                Some(true) => (true, "pinned".to_string()),
                Some(false) => (false, "pinned, wrong MAC or no answer".to_string()),
                None => gateway_state(netlink, &wan.name, config.wan.gateway).await,
            };
            s.gateway = Some((config.wan.gateway, answers, st));
        }
    }
    let count = read_u64("/proc/sys/net/netfilter/nf_conntrack_count");
    let max = read_u64("/proc/sys/net/netfilter/nf_conntrack_max");
    s.conntrack = count.zip(max);
    if forwards {
        // With the carried totals of the ruleset the counters are read from.
        let _ruleset = shared.ruleset.lock().await;
        let totals = shared.get().forward_totals;
        s.forwards = forward_totals(&totals).await.unwrap_or_default();
    }
    for (lan, view) in &state.dhcp {
        let c = &view.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let mut counters = vec![
            ("offers", load(&c.offers)),
            ("acks", load(&c.acks)),
            ("naks", load(&c.naks)),
            ("releases", load(&c.releases)),
            ("drops", load(&c.malformed)),
            ("ignored", load(&c.ignored)),
            ("pool_exhausted", load(&c.pool_exhausted)),
            ("probes", load(&c.probes)),
            ("probe_answers", load(&c.probe_answers)),
            ("probe_conflicts", load(&c.probe_conflicts)),
            ("probe_answers_ignored", load(&c.probe_answers_ignored)),
            ("lease_write_failures", load(&c.lease_write_failures)),
            ("dropped_overload", load(&c.dropped_overload)),
            ("dropped_probe_limit", load(&c.dropped_probe_limit)),
        ];
        let report = tokio::time::timeout(LEASES_DEADLINE, view.leases())
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        counters.push(("socket_drops", report.socket_drops));
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
        s.dhcp.push(DhcpStats {
            lan: lan.clone(),
            pool_size: u64::from(report.pool_size),
            leases,
            counters,
            lease_file_error: report.lease_file_error.clone(),
            quarantined: report.quarantined as u64,
        });
    }
    if let Some(view) = &state.dns {
        for (lan, c) in &view.lans {
            s.dns.push(super::DnsStats {
                lan: lan.clone(),
                counters: c.named(),
                upstream_micros: c.upstream_micros.load(std::sync::atomic::Ordering::Relaxed),
            });
        }
        s.dns_cached = view.cached() as u64;
        s.dns_local_names = view.local_names() as u64;
    }
    if let Some(config) = &state.config {
        s.wireguard = super::wireguard::collect(config, state.wireguard_public_key).await;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{Features, Interfaces};
    use nftables::schema::{NfCmd, NfListObject, NfObject};

    const CONFIG: &str = r#"
[wan]
interface = "wan"
address = "203.0.113.10/32"
gateway = "203.0.113.254"

[lan]
interface = "lan"
address = "172.16.0.1/16"

[[forward]]
protocol = "tcp"
port = 80
to = "172.16.10.205"
to_port = 8080

[[forward]]
protocol = "both"
port = "8000-8003"
to = "172.16.10.206"
to_port = 9000

[[forward]]
protocol = "udp"
port = 5353
to = "172.16.10.207"
"#;

    /// The counters the ruleset creates, listed the way `nft -j list counters` prints
    /// them but in reverse order, each counting its position in the ruleset as packets.
    fn listing_of_ruleset(config: &Config) -> Vec<u8> {
        let batch = firewall::ruleset(
            config,
            &Interfaces::placeholders(config, "wan", "lan"),
            Features { flowtable: false },
        );
        let names: Vec<String> = batch
            .objects
            .iter()
            .filter_map(|object| match object {
                NfObject::CmdObject(NfCmd::Add(NfListObject::Counter(c))) => Some(c.name.to_string()),
                _ => None,
            })
            .collect();
        let mut items = vec![serde_json::json!({"metainfo": {"version": "1.0.6", "json_schema_version": 1}})];
        for (position, name) in names.iter().enumerate().rev() {
            items.push(serde_json::json!({"counter": {
                "family": "inet", "name": name, "table": TABLE, "handle": 100 + position,
                "packets": position, "bytes": 5_000_000_000u64 + position as u64,
            }}));
        }
        serde_json::to_vec(&serde_json::json!({ "nftables": items })).unwrap_or_default()
    }

    #[test]
    fn each_forward_is_found_by_the_firewalls_counter_name() {
        let config = Config::parse(CONFIG, "router.toml").expect("valid config");
        let stats = forward_stats(&config, &listing_of_ruleset(&config));
        let rows: Vec<(&str, &str, &str, u64)> = stats
            .iter()
            .map(|f| (f.protocol.as_str(), f.port.as_str(), f.to.as_str(), f.packets))
            .collect();
        assert_eq!(
            rows,
            [
                ("tcp", "80", "172.16.10.205:8080", 0),
                ("tcp", "8000-8003", "172.16.10.206:9000-9003", 1),
                ("udp", "8000-8003", "172.16.10.206:9000-9003", 2),
                ("udp", "5353", "172.16.10.207:5353", 3),
            ]
        );
        // Byte counts beyond 32 bits come through.
        assert!(stats.iter().all(|f| f.bytes == 5_000_000_000 + f.packets), "{stats:?}");
    }

    #[test]
    fn a_counter_missing_from_the_listing_leaves_its_forward_out() {
        let config = Config::parse(CONFIG, "router.toml").expect("valid config");
        let listing = br#"{"nftables": [{"metainfo": {}}, {"counter": {"family": "inet", "name": "fwd_2_udp", "table": "routerd", "handle": 9, "packets": 7, "bytes": 700}}]}"#;
        let stats = forward_stats(&config, listing);
        assert_eq!(stats.len(), 1);
        assert_eq!((stats[0].port.as_str(), stats[0].packets), ("5353", 7));
        assert!(forward_stats(&config, b"not json").is_empty());
    }

    #[test]
    fn totals_carry_over_a_reload_that_moves_and_removes_forwards() {
        let config = Arc::new(Config::parse(CONFIG, "router.toml").expect("valid config"));
        // Before the reload: each counter counted its position (see `listing_of_ruleset`).
        let before = with_carried(
            forward_stats(&config, &listing_of_ruleset(&config)),
            &ForwardTotals::default(),
        );
        // The reload drops the first forward: the others move up and get new counter names.
        let text = CONFIG.replacen(
            "[[forward]]\nprotocol = \"tcp\"\nport = 80\nto = \"172.16.10.205\"\nto_port = 8080\n",
            "",
            1,
        );
        let reloaded = Arc::new(Config::parse(&text, "router.toml").expect("valid config"));
        assert_eq!(reloaded.forwards.len(), 2);
        let totals = carry(&reloaded, Some(before), &ForwardTotals::default());
        assert_eq!(
            totals.carried.len(),
            3,
            "the removed forward is forgotten: {:?}",
            totals.carried
        );
        // The new ruleset's counters start at zero and count 1 packet each.
        let listing = br#"{"nftables": [
            {"counter": {"family": "inet", "name": "fwd_0_tcp", "table": "routerd", "handle": 1, "packets": 1, "bytes": 10}},
            {"counter": {"family": "inet", "name": "fwd_0_udp", "table": "routerd", "handle": 2, "packets": 1, "bytes": 10}},
            {"counter": {"family": "inet", "name": "fwd_1_udp", "table": "routerd", "handle": 3, "packets": 1, "bytes": 10}}]}"#;
        let after = with_carried(forward_stats(&reloaded, listing), &totals);
        let rows: Vec<(&str, &str, u64, u64)> = after
            .iter()
            .map(|f| (f.protocol.as_str(), f.port.as_str(), f.packets, f.bytes))
            .collect();
        assert_eq!(
            rows,
            [
                ("tcp", "8000-8003", 2, 5_000_000_011),
                ("udp", "8000-8003", 3, 5_000_000_012),
                ("udp", "5353", 4, 5_000_000_013),
            ]
        );
        // Counters that could not be read before the reload: what was carried stays.
        let again = carry(&reloaded, None, &totals);
        assert_eq!(again.carried, totals.carried);
    }

    #[tokio::test]
    async fn nic_facts_come_from_the_apply_step() {
        let mut config = Config::parse(CONFIG, "router.toml").expect("valid config");
        config.forwards.clear(); // no nft listing in a unit test
        let nic = |index, name: &str, last| Nic {
            index,
            name: name.to_string(),
            mac: Some(config::MacAddr([0x02, 0, 0, 0, 0, last])),
            perm_mac: None,
            up: true,
            vlan: None,
        };
        let shared = Shared::default();
        shared.update(|s| {
            s.config = Some(Arc::new(config.clone()));
            // Names no NIC here has: sysfs knows nothing about them.
            s.wan = Some(nic(1001, "routerd-nowan", 0x10));
            s.lans = vec![nic(1002, "routerd-nolan", 0x20)];
        });
        let (connection, netlink, _) = rtnetlink::new_connection().expect("a netlink socket");
        tokio::spawn(connection);
        let s = snapshot(&shared, &netlink).await;
        let rows: Vec<(&str, &str, &str)> = s
            .interfaces
            .iter()
            .map(|i| (i.role, i.name.as_str(), i.mac.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("wan", "routerd-nowan", "02:00:00:00:00:10"),
                ("lan", "routerd-nolan", "02:00:00:00:00:20")
            ]
        );
    }
}
