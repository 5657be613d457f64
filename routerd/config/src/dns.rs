//! `[dns]`: the caching resolver routerd runs on the LAN addresses.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The local domain when a LAN's `dhcp.domain` is not set.
pub const DEFAULT_DOMAIN: &str = "lan";
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;
/// Queries a second one client may send before the excess is dropped.
pub const DEFAULT_RATE_LIMIT: u32 = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// Where names outside the local domains are asked: `dns.upstream`, else `wan.dns`.
    pub upstream: Vec<Ipv4Addr>,
    /// The most answers kept in the cache; 0: no cache.
    pub cache_entries: usize,
    /// Queries a second per client address (bursts of twice that); 0: no limit.
    pub rate_limit: u32,
    pub hosts: Vec<DnsHost>,
}

/// A name the resolver answers with a fixed address (`[[dns.host]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsHost {
    /// As written: one label is a name in the local domain (`nas` is `nas.lan`);
    /// a dotted name is taken whole (`nas.example.net`).
    pub name: String,
    /// At least one of the two.
    pub address: Option<Ipv4Addr>,
    pub address6: Option<Ipv6Addr>,
}
