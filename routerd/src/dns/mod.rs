//! The LAN's resolver (`[dns]`): UDP and TCP port 53 on each LAN's router address.
//!
//! - `zone`: the names answered here (leases, reservations, `[[dns.host]]`, reverse
//!   names, and NXDOMAIN for private reverse zones), pure;
//! - `cache`: upstream answers for their TTL, bounded;
//! - `ratelimit`: a token bucket per client;
//! - `upstream`: forwarding, with a deadline;
//! - `server`: the sockets and the handling of one query.
//!
//! The DNS wire format is hickory-proto's. The DHCP servers publish their live leases
//! in a [`LeaseBook`] after each batch that changed them; the resolver rebuilds its
//! zone from it, so names follow the leases at once (and expire with them).

pub mod cache;
pub mod ratelimit;
pub mod server;
pub mod upstream;
pub mod zone;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::watch;

use crate::dhcp::pool::Lease;
use config::Config;

pub use server::{start, Running, View};

/// The live leases of each LAN (by LAN name), as its DHCP server last published them.
/// Lives as long as the daemon, across restarts of the DHCP servers and the resolver.
pub struct LeaseBook {
    leases: Mutex<HashMap<String, Vec<Lease>>>,
    changed: watch::Sender<u64>,
}

impl Default for LeaseBook {
    fn default() -> LeaseBook {
        LeaseBook {
            leases: Mutex::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl LeaseBook {
    /// Replaces the leases of `lan` with `leases` (its bound ones) and tells the resolver.
    pub fn publish(&self, lan: &str, leases: Vec<Lease>) {
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(lan.to_string(), leases);
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn snapshot(&self) -> HashMap<String, Vec<Lease>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The `lan` of the resolver's listener in the WireGuard tunnel (metrics, logs).
pub const TUNNEL_LABEL: &str = "wireguard";

/// Where one LAN's resolver listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub lan: String,
    pub address: Ipv4Addr,
    /// The LAN's link: the sockets are bound to it, so nothing from another
    /// interface (the WAN) reaches them, whatever the firewall says.
    pub ifname: String,
}

/// Everything the resolver is started for; a change restarts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub listen: Vec<Listen>,
    pub upstream: Vec<Ipv4Addr>,
    pub cache_entries: usize,
    pub rate_limit: u32,
    pub statics: zone::Statics,
}

impl Setup {
    /// The resolver `config` asks for on the LANs' links `ifnames` (in config order);
    /// `None` when it is off.
    pub fn from_config(config: &Config, ifnames: &[String]) -> Option<Setup> {
        let dns = config.dns.as_ref()?;
        Some(Setup {
            listen: config
                .lans
                .iter()
                .zip(ifnames)
                .map(|(lan, ifname)| Listen {
                    lan: lan.name.clone(),
                    address: lan.address.addr(),
                    ifname: ifname.clone(),
                })
                // The WireGuard peers ask on the router's tunnel address (a socket bound
                // to a LAN's link never sees what comes in on the tunnel).
                .chain(config.wireguard.as_ref().map(|wg| Listen {
                    lan: TUNNEL_LABEL.to_string(),
                    address: wg.address.addr(),
                    ifname: config::wireguard::IFNAME.to_string(),
                }))
                .collect(),
            upstream: dns.upstream.clone(),
            cache_entries: dns.cache_entries,
            rate_limit: dns.rate_limit,
            statics: zone::Statics::from_config(config),
        })
    }
}

/// What the resolver of one LAN did, for /metrics and the status page.
#[derive(Debug, Default)]
pub struct Counters {
    /// Queries received (rate-limited ones too).
    pub queries: AtomicU64,
    /// Answered from the local names.
    pub local: AtomicU64,
    pub cache_hits: AtomicU64,
    /// Asked upstream, and of those, how many failed (SERVFAIL to the client).
    pub forwarded: AtomicU64,
    pub upstream_failures: AtomicU64,
    /// Time spent waiting for upstream answers, in microseconds.
    pub upstream_micros: AtomicU64,
    /// Dropped by the per-client rate limit.
    pub rate_limited: AtomicU64,
    /// Not a DNS query (dropped) or one we cannot serve (answered with an error).
    pub malformed: AtomicU64,
    /// Forwarded queries turned away because too many were waiting already.
    pub overloaded: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Every counter by its name in /metrics (`router_dns_<name>_total`).
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("queries", get(&self.queries)),
            ("local_answers", get(&self.local)),
            ("cache_hits", get(&self.cache_hits)),
            ("upstream_queries", get(&self.forwarded)),
            ("upstream_failures", get(&self.upstream_failures)),
            ("rate_limited", get(&self.rate_limited)),
            ("malformed", get(&self.malformed)),
            ("overloaded", get(&self.overloaded)),
        ]
    }
}
