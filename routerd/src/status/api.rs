//! `/api/status`: the snapshot and the graphs' history as JSON, for scripts. The shape
//! is documented in README.md ("Status page and metrics"); fields are only ever added.

use serde::Serialize;

use super::history::HistoryView;
use super::Snapshot;

/// Bumped only if a field changes meaning or goes away (never so far).
pub const SCHEMA: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Status<'a> {
    pub schema: u32,
    pub hostname: &'a str,
    /// Unix time of this answer.
    pub now: u64,
    /// The running release (`routerd --version`, `router_build_info`).
    pub version: &'static str,
    /// sha256 of the release's kernel and initramfs.
    pub payload: &'static str,
    pub routerd: Routerd,
    /// Seconds since the system booted.
    pub system_uptime: Option<u64>,
    pub config: ConfigState,
    pub interfaces: Vec<Interface<'a>>,
    pub gateway: Option<Gateway>,
    pub conntrack: Option<Conntrack>,
    pub forwards: Vec<Forward<'a>>,
    pub dhcp: Vec<Dhcp<'a>>,
    pub errors: Vec<Error<'a>>,
    pub history: Option<&'a HistoryView>,
    /// With `[wireguard]`: the router's public key, the endpoint and each peer's figures.
    pub wireguard: Option<&'a super::wireguard::WireguardStats>,
}

#[derive(Debug, Serialize)]
pub struct Routerd {
    /// Unix time routerd started, and seconds since.
    pub started: u64,
    pub uptime: u64,
    pub rss_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct ConfigState {
    pub generation: u64,
    /// Unix time the running config was applied.
    pub applied_at: Option<u64>,
    /// The last load (start or SIGHUP): Unix time and whether it was applied.
    pub last_load_at: Option<u64>,
    pub last_load_ok: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct Interface<'a> {
    pub role: &'a str,
    pub lan: &'a str,
    pub name: &'a str,
    pub mac: &'a str,
    pub address: &'a str,
    pub rx_bytes: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub rx_packets: Option<u64>,
    pub tx_packets: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Gateway {
    pub address: String,
    pub reachable: bool,
    pub state: String,
    /// The last gateway check: Unix time and whether the gateway answered ARP.
    pub checked_at: Option<u64>,
    pub answered: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct Conntrack {
    pub entries: u64,
    pub limit: u64,
}

#[derive(Debug, Serialize)]
pub struct Forward<'a> {
    /// The key the forward's history series carry as `label`.
    pub key: String,
    pub public: &'a str,
    pub protocol: &'a str,
    pub port: &'a str,
    pub to: &'a str,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Dhcp<'a> {
    pub lan: &'a str,
    pub pool_size: u64,
    pub leased: u64,
    pub quarantined: u64,
    pub lease_file_error: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct Error<'a> {
    pub at: u64,
    pub message: &'a str,
}

pub fn status(s: &Snapshot) -> Status<'_> {
    Status {
        schema: SCHEMA,
        hostname: &s.hostname,
        now: s.now,
        version: &config::release::running().version,
        payload: &config::release::running().payload,
        routerd: Routerd {
            started: s.started,
            uptime: s.now.saturating_sub(s.started),
            rss_bytes: s.rss_bytes,
        },
        system_uptime: s.system_uptime,
        config: ConfigState {
            generation: s.generation,
            applied_at: s.applied_at,
            last_load_at: s.last_reload.map(|(at, _)| at),
            last_load_ok: s.last_reload.map(|(_, ok)| ok),
        },
        interfaces: s
            .interfaces
            .iter()
            .map(|i| {
                let get = |k: &str| i.counters.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
                Interface {
                    role: i.role,
                    lan: &i.lan,
                    name: &i.name,
                    mac: &i.mac,
                    address: &i.address,
                    rx_bytes: get("rx_bytes"),
                    tx_bytes: get("tx_bytes"),
                    rx_packets: get("rx_packets"),
                    tx_packets: get("tx_packets"),
                }
            })
            .collect(),
        gateway: s.gateway.as_ref().map(|(address, reachable, state)| Gateway {
            address: address.to_string(),
            reachable: *reachable,
            state: state.clone(),
            checked_at: s.gateway_check.map(|(at, _)| at),
            answered: s.gateway_check.map(|(_, ok)| ok),
        }),
        conntrack: s.conntrack.map(|(entries, limit)| Conntrack { entries, limit }),
        forwards: s
            .forwards
            .iter()
            .map(|f| Forward {
                key: f.key(),
                public: &f.public,
                protocol: &f.protocol,
                port: &f.port,
                to: &f.to,
                packets: f.packets,
                bytes: f.bytes,
            })
            .collect(),
        dhcp: s
            .dhcp
            .iter()
            .map(|d| Dhcp {
                lan: &d.lan,
                pool_size: d.pool_size,
                leased: d.leases.len() as u64,
                quarantined: d.quarantined,
                lease_file_error: d.lease_file_error.as_deref(),
            })
            .collect(),
        errors: s
            .errors
            .iter()
            .map(|(at, message)| Error { at: *at, message })
            .collect(),
        history: s.history.as_deref(),
        wireguard: s.wireguard.as_ref(),
    }
}

pub fn render(s: &Snapshot) -> String {
    let mut json = serde_json::to_string(&status(s)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    use super::super::history::{History, Kind, Sample, SeriesKey};
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_documented_fields_are_there() {
        let mut h = History::default();
        for i in 0..3u64 {
            h.record(&Sample {
                at: 1000 + i * 10,
                values: vec![(
                    SeriesKey {
                        kind: Kind::RxBytes,
                        label: "wan".into(),
                    },
                    i * 4096,
                )],
                gateway: Some((1000, true)),
            });
        }
        let s = Snapshot {
            hostname: "router".into(),
            now: 2000,
            started: 1500,
            generation: 3,
            errors: vec![(1990, "bad".into())],
            history: Some(Arc::new(h.view())),
            ..Snapshot::default()
        };
        let v: serde_json::Value = serde_json::from_str(&render(&s)).unwrap_or_default();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["routerd"]["uptime"], 500);
        assert_eq!(v["config"]["generation"], 3);
        assert_eq!(v["errors"][0]["message"], "bad");
        assert_eq!(v["history"]["hour"]["step"], 10);
        assert_eq!(v["history"]["hour"]["times"][2], 1020);
        let series = &v["history"]["hour"]["series"];
        let rx = series
            .as_array()
            .and_then(|a| a.iter().find(|s| s["kind"] == "rx_bytes"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(rx["label"], "wan");
        assert_eq!(rx["values"], serde_json::json!([null, 4096, 4096]));
        assert_eq!(v["history"]["day"]["step"], 300);
    }
}
