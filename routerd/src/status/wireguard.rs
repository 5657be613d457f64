//! WireGuard on the status page and in the metrics: the router's public key, the
//! endpoint, and each peer's last handshake and bytes (read over generic netlink).

use std::fmt::Write;
use std::time::Duration;

use config::wireguard::Key;
use config::Config;

use super::page::{duration, esc};
use super::Snapshot;

/// How long a collection waits for the kernel's peer list.
const DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WireguardStats {
    /// The router's public key; empty until the first apply made or read it.
    pub public_key: String,
    /// `public:port`, what peers send to.
    pub endpoint: String,
    pub peers: Vec<crate::wireguard::PeerStats>,
    /// Why the peers could not be read (no WireGuard in the kernel, say).
    pub error: Option<String>,
}

/// The tunnel's figures, when `[wireguard]` is configured.
pub async fn collect(config: &Config, public_key: Option<Key>) -> Option<WireguardStats> {
    let wg = config.wireguard.as_ref()?;
    let mut stats = WireguardStats {
        public_key: public_key.map(|k| k.to_string()).unwrap_or_default(),
        endpoint: format!("{}:{}", wg.public, wg.listen_port),
        ..WireguardStats::default()
    };
    match tokio::time::timeout(DEADLINE, crate::wireguard::peer_stats(wg)).await {
        Ok(Ok(peers)) => stats.peers = peers,
        Ok(Err(e)) => stats.error = Some(format!("{e:#}")),
        Err(_) => stats.error = Some("the kernel did not answer in time".into()),
    }
    Some(stats)
}

/// The Prometheus families of the tunnel (none without `[wireguard]`).
pub fn metrics(s: &Snapshot) -> String {
    let mut o = String::new();
    let Some(wg) = &s.wireguard else { return o };
    type Field = fn(&crate::wireguard::PeerStats) -> u64;
    let families: [(&str, &str, &str, Field); 3] = [
        (
            "router_wireguard_peer_last_handshake_seconds",
            "gauge",
            "Unix time of the peer's last handshake; 0: none yet.",
            |p| p.last_handshake.unwrap_or(0),
        ),
        (
            "router_wireguard_peer_rx_bytes_total",
            "counter",
            "Bytes received from the peer.",
            |p| p.rx_bytes,
        ),
        (
            "router_wireguard_peer_tx_bytes_total",
            "counter",
            "Bytes sent to the peer.",
            |p| p.tx_bytes,
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        // Peer names are plain (a-z, 0-9, '-', '_'): nothing to escape.
        for p in &wg.peers {
            let _ = writeln!(o, "{name}{{peer=\"{}\"}} {}", p.name, value(p));
        }
    }
    o
}

/// The page's WireGuard section.
pub fn page(h: &mut String, s: &Snapshot) {
    let Some(wg) = &s.wireguard else { return };
    h.push_str("<h2>WireGuard</h2>");
    let _ = write!(
        h,
        "<p>Endpoint <code>{}</code>, public key <code>{}</code> \
         <span class=\"muted\">(<code>routerd wireguard peer-config NAME</code> prints a peer's config)</span></p>",
        esc(&wg.endpoint),
        if wg.public_key.is_empty() {
            "not made yet".to_string()
        } else {
            esc(&wg.public_key)
        }
    );
    if let Some(e) = &wg.error {
        let _ = write!(h, "<p class=\"bad\">{}</p>", esc(e));
        return;
    }
    h.push_str("<table><tr><th>peer</th><th>last handshake</th><th>received</th><th>sent</th></tr>");
    for p in &wg.peers {
        let handshake = match p.last_handshake {
            Some(at) => format!("{} ago", duration(s.now.saturating_sub(at))),
            None => "never".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{handshake}</td><td>{} B</td><td>{} B</td></tr>",
            esc(&p.name),
            p.rx_bytes,
            p.tx_bytes
        );
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wireguard::PeerStats;

    fn snapshot() -> Snapshot {
        Snapshot {
            now: 1_700_000_100,
            wireguard: Some(WireguardStats {
                public_key: "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=".into(),
                endpoint: "203.0.113.10:51820".into(),
                peers: vec![
                    PeerStats {
                        name: "laptop".into(),
                        last_handshake: Some(1_700_000_000),
                        rx_bytes: 1234,
                        tx_bytes: 5678,
                    },
                    PeerStats {
                        name: "phone".into(),
                        last_handshake: None,
                        rx_bytes: 0,
                        tx_bytes: 0,
                    },
                ],
                error: None,
            }),
            ..Snapshot::default()
        }
    }

    #[test]
    fn metrics_and_page_show_each_peer() {
        let s = snapshot();
        let text = super::super::metrics::render(&s);
        for line in [
            "router_wireguard_peer_last_handshake_seconds{peer=\"laptop\"} 1700000000",
            "router_wireguard_peer_last_handshake_seconds{peer=\"phone\"} 0",
            "router_wireguard_peer_rx_bytes_total{peer=\"laptop\"} 1234",
            "router_wireguard_peer_tx_bytes_total{peer=\"laptop\"} 5678",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\nin\n{text}");
        }
        let page = super::super::page::render(&s);
        assert!(
            page.contains("<code>hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=</code>"),
            "{page}"
        );
        assert!(
            page.contains("<tr><td>laptop</td><td>1m 40s ago</td><td>1234 B</td><td>5678 B</td></tr>"),
            "{page}"
        );
        assert!(page.contains("<tr><td>phone</td><td>never</td>"), "{page}");
        let json: serde_json::Value = serde_json::from_str(&super::super::api::render(&s)).expect("JSON");
        assert_eq!(json["wireguard"]["peers"][0]["name"], "laptop");
        assert_eq!(json["wireguard"]["peers"][0]["last_handshake"], 1_700_000_000);
        assert_eq!(json["wireguard"]["endpoint"], "203.0.113.10:51820");
        let none = Snapshot::default();
        assert!(!super::super::metrics::render(&none).contains("wireguard"));
    }
}
