//! The status page and Prometheus metrics, served on the LAN address only.
//!
//! `collect` gathers a [`Snapshot`] from the kernel and the daemon's shared state at
//! each request; `metrics` and `page` render it (pure); `http` is the small server.

pub mod api;
pub mod collect;
pub mod graph;
pub mod history;
pub mod http;
pub mod metrics;
pub mod page;
pub mod sampler;
pub mod wireguard;

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use crate::dhcp;
use crate::net::Nic;
use config::{Config, MacAddr};

/// How many recent errors the status page keeps.
const ERRORS_KEPT: usize = 20;

/// What the daemon tells the status server about itself.
#[derive(Default)]
pub struct Shared {
    inner: Mutex<SharedState>,
    /// The graphs' rings, filled by the sampler (not in `SharedState`: not cloned per request).
    pub history: Mutex<history::History>,
    /// Held while the ruleset is replaced and while its counters are read, so that a
    /// reading always goes with the carried totals of its own ruleset.
    pub ruleset: tokio::sync::Mutex<()>,
}

#[derive(Default, Clone)]
pub struct SharedState {
    pub generation: u64,
    /// Unix time and outcome of the last config load (start or SIGHUP).
    pub last_reload: Option<(u64, bool)>,
    pub errors: VecDeque<(u64, String)>,
    pub config: Option<Arc<Config>>,
    /// The links as the last apply left them (name, index, MAC); `lans` in the order
    /// of `config.lans`.
    pub wan: Option<Nic>,
    /// The NICs of `wan.extra`, in order.
    pub extra_wans: Vec<Nic>,
    pub lans: Vec<Nic>,
    /// Each running DHCP server, by its LAN's name.
    pub dhcp: Vec<(String, dhcp::server::View)>,
    /// The LAN resolver, when on.
    pub dns: Option<crate::dns::View>,
    pub gateway_mac_changes: GatewayMacChanges,
    /// With a pinned gateway MAC: whether the gateway answered the last check with it.
    pub gateway_pinned_answers: Option<bool>,
    /// The main gateway check's last verdict: Unix time, the gateway answered.
    pub gateway_check: Option<(u64, bool)>,
    /// Unix time routerd started.
    pub started: u64,
    /// Unix time the running config was applied.
    pub applied_at: Option<u64>,
    /// The forwards' counts from before the ruleset was last replaced.
    pub forward_totals: ForwardTotals,
    /// The counters of the forwards by name.
    pub proxy: Option<Arc<crate::proxy::Stats>>,
    /// The router's WireGuard public key, once an apply made or read the private key.
    pub wireguard_public_key: Option<config::wireguard::Key>,
}

/// What the forwards' nft counters had counted when their ruleset was replaced (a new
/// ruleset's counters start at zero): added to what the new ones count, so that totals
/// and graphs carry on across reloads.
#[derive(Default, Clone, Debug)]
pub struct ForwardTotals {
    /// The config the live ruleset was made from (its counter names).
    pub config: Option<Arc<Config>>,
    /// Packets and bytes by [`ForwardStats::key`].
    pub carried: HashMap<String, (u64, u64)>,
}

/// Changes of the gateway's MAC the gateway check saw (a forged ARP reply is one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayMacChanges {
    pub count: u64,
    /// The last one: Unix time, old MAC, new MAC.
    pub last: Option<(u64, MacAddr, MacAddr)>,
}

impl Shared {
    pub fn update(&self, f: impl FnOnce(&mut SharedState)) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }

    pub fn get(&self) -> SharedState {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counts a change of the gateway's MAC (the caller logs it).
    pub fn gateway_mac_changed(&self, old: MacAddr, new: MacAddr) {
        self.update(|s| {
            s.gateway_mac_changes.count += 1;
            s.gateway_mac_changes.last = Some((dhcp::server::unix_now(), old, new));
        });
    }

    /// Records an error for the status page (the caller logs it).
    pub fn error(&self, message: String) {
        self.update(|s| {
            s.errors.push_back((dhcp::server::unix_now(), message));
            while s.errors.len() > ERRORS_KEPT {
                s.errors.pop_front();
            }
        });
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    pub role: &'static str,
    /// The LAN's name; empty for the WAN.
    pub lan: String,
    pub name: String,
    pub mac: String,
    pub address: String,
    /// rx_bytes, rx_packets, rx_errors, rx_dropped, tx_bytes, tx_packets, tx_errors, tx_dropped
    pub counters: Vec<(&'static str, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraGateway {
    pub interface: String,
    pub address: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub reachable: bool,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicAddress {
    pub address: Ipv4Addr,
    pub interface: String,
    pub mac: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardStats {
    /// The public address the forward is on.
    pub public: String,
    pub protocol: String,
    pub port: String,
    pub to: String,
    pub packets: u64,
    pub bytes: u64,
}

impl ForwardStats {
    /// What names the forward across reloads (its place in the config may change).
    pub fn key(&self) -> String {
        format!("{} {} {} {}", self.public, self.protocol, self.port, self.to)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub address: Ipv4Addr,
    pub mac: String,
    pub hostname: String,
    pub expires_in: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpStats {
    /// The LAN's name.
    pub lan: String,
    pub pool_size: u64,
    pub leases: Vec<LeaseRow>,
    /// Every counter the server keeps, by its name in /metrics (`router_dhcp_<name>_total`).
    pub counters: Vec<(&'static str, u64)>,
    /// Why lease changes cannot be written now (disk full, say): kept in memory meanwhile.
    pub lease_file_error: Option<String>,
    /// Addresses kept out of the pool now (declined, or answered ARP probes).
    pub quarantined: u64,
}

/// The LAN resolver, one per LAN it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsStats {
    pub lan: String,
    /// Every counter, by its name in /metrics (`router_dns_<name>_total`).
    pub counters: Vec<(&'static str, u64)>,
    /// Time spent waiting for upstream answers, in microseconds.
    pub upstream_micros: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub hostname: String,
    pub now: u64,
    pub interfaces: Vec<InterfaceStats>,
    pub gateway: Option<(Ipv4Addr, bool, String)>,
    /// The gateway of each extra WAN NIC as its neighbour entry shows it.
    pub extra_gateways: Vec<ExtraGateway>,
    /// Every public address with the NIC and MAC it leaves by.
    pub public_addresses: Vec<PublicAddress>,
    pub gateway_mac_changes: GatewayMacChanges,
    pub conntrack: Option<(u64, u64)>,
    pub forwards: Vec<ForwardStats>,
    /// One per LAN with a DHCP server, in the order of the config.
    pub dhcp: Vec<DhcpStats>,
    /// One per LAN the resolver serves (none when it is off).
    pub dns: Vec<DnsStats>,
    /// Answers in the resolver's cache and names it answers itself.
    pub dns_cached: u64,
    pub dns_local_names: u64,
    pub generation: u64,
    pub last_reload: Option<(u64, bool)>,
    pub rss_bytes: u64,
    pub errors: Vec<(u64, String)>,
    /// The main gateway check's last verdict: Unix time, the gateway answered.
    pub gateway_check: Option<(u64, bool)>,
    /// Unix time routerd started, and seconds the system has been up.
    pub started: u64,
    pub system_uptime: Option<u64>,
    /// Unix time the running config was applied.
    pub applied_at: Option<u64>,
    /// The graphs (in the snapshots the page and the API answer with).
    pub history: Option<Arc<history::HistoryView>>,
    /// Forwards by name: each host name's connections and bytes.
    pub by_name: Vec<crate::proxy::stats::HostRow>,
    /// Forwards by name: connections closed unrelayed, by reason.
    pub by_name_rejected: Vec<(&'static str, u64)>,
    /// With `[wireguard]`: the key, the endpoint and the peers.
    pub wireguard: Option<wireguard::WireguardStats>,
}
