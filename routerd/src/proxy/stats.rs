//! The proxy's counters: per host name (the forward's `host`, or `default`), and the
//! connections it turned away, by reason.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection was closed before it was relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No name (no SNI, no Host header, not TLS or HTTP) and no default.
    NoName,
    /// A name no forward has, and no default.
    UnknownName,
    /// The client did not name its host within the deadline.
    Timeout,
    /// Too many connections, from this client or in all.
    Limit,
    /// The LAN host did not accept the connection.
    Unreachable,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::NoName,
        Reason::UnknownName,
        Reason::Timeout,
        Reason::Limit,
        Reason::Unreachable,
    ];

    /// Its label in /metrics and on the status page.
    pub fn label(self) -> &'static str {
        match self {
            Reason::NoName => "no_name",
            Reason::UnknownName => "unknown_name",
            Reason::Timeout => "timeout",
            Reason::Limit => "limit",
            Reason::Unreachable => "unreachable",
        }
    }
}

#[derive(Debug, Default)]
pub struct HostCounters {
    /// Connections relayed (opened to the LAN host).
    pub connections: AtomicU64,
    /// Relayed now.
    pub active: AtomicU64,
    pub bytes_from_clients: AtomicU64,
    pub bytes_to_clients: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Stats {
    hosts: Mutex<BTreeMap<String, Arc<HostCounters>>>,
    rejected: [AtomicU64; Reason::ALL.len()],
}

/// One host name's counters as read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostRow {
    pub host: String,
    pub connections: u64,
    pub active: u64,
    pub bytes_from_clients: u64,
    pub bytes_to_clients: u64,
}

impl Stats {
    pub fn host(&self, label: &str) -> Arc<HostCounters> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts.entry(label.to_string()).or_default().clone()
    }

    pub fn reject(&self, reason: Reason) {
        let i = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Every host name that had a connection, by name.
    pub fn hosts(&self) -> Vec<HostRow> {
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts
            .iter()
            .map(|(host, c)| HostRow {
                host: host.clone(),
                connections: c.connections.load(Ordering::Relaxed),
                active: c.active.load(Ordering::Relaxed),
                bytes_from_clients: c.bytes_from_clients.load(Ordering::Relaxed),
                bytes_to_clients: c.bytes_to_clients.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Each reason with its count.
    pub fn rejected(&self) -> Vec<(&'static str, u64)> {
        Reason::ALL
            .iter()
            .zip(&self.rejected)
            .map(|(r, n)| (r.label(), n.load(Ordering::Relaxed)))
            .collect()
    }
}
