//! The human status page: one self-contained HTML document, no scripts; the graphs are
//! inline SVG (see `graph`).

use std::fmt::Write;

use super::graph::{self, Line};
use super::history::{Kind, TierView};
use super::Snapshot;

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) fn duration(secs: u64) -> String {
    match secs {
        s if s >= 86400 => format!("{}d {}h", s / 86400, s % 86400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:60em}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse}td,th{padding:.25em .8em;text-align:left;border-bottom:1px solid #eee}\
.ok{color:#080;font-weight:bold}.bad{color:#b00;font-weight:bold}.muted{color:#777}\
figure{margin:.6em 0}figcaption{font-size:.9em;color:#555}svg text{font-size:10px;fill:#666}\
svg .area{fill:#f7f7f7}svg .grid{stroke:#e4e4e4}svg path{fill:none;stroke-width:1.5}\
svg .rx{stroke:#1565c0}svg .tx{stroke:#e65100}svg .gauge{stroke:#2e7d32}svg .up{fill:#9ccc9c}svg .down{fill:#d9534f}\
.key-rx{color:#1565c0}.key-tx{color:#e65100}";

/// The hour and the day before `now`, as (tier, span, caption) for the charts.
fn windows(s: &Snapshot) -> Vec<(&TierView, (u64, u64), &'static str)> {
    let Some(h) = &s.history else {
        return Vec::new();
    };
    vec![
        (&h.hour, (s.now.saturating_sub(3600), s.now), "last hour"),
        (&h.day, (s.now.saturating_sub(86400), s.now), "last 24 hours"),
    ]
}

/// Throughput charts of each interface: received and sent, in bits per second.
fn traffic(h: &mut String, s: &Snapshot) {
    if s.history.is_none() {
        return;
    }
    h.push_str(
        "<h2>Traffic</h2><p class=\"muted\"><span class=\"key-rx\">&#9632; received</span> \
         <span class=\"key-tx\">&#9632; sent</span>, bits per second</p>",
    );
    for i in &s.interfaces {
        for (tier, span, caption) in windows(s) {
            let factor = 8.0 / tier.step as f64;
            let line = |kind: Kind, class| {
                tier.get(kind, &i.name).map(|series| Line {
                    values: &series.values,
                    factor,
                    class,
                    series: format!("{} {}", kind.name(), i.name),
                })
            };
            let lines: Vec<Line> = [line(Kind::RxBytes, "rx"), line(Kind::TxBytes, "tx")]
                .into_iter()
                .flatten()
                .collect();
            let _ = write!(
                h,
                "<figure data-interface=\"{}\" data-step=\"{}\"><figcaption>{} {}: {caption}</figcaption>{}</figure>",
                esc(&i.name),
                tier.step,
                i.role.to_uppercase(),
                esc(&i.name),
                graph::chart(tier, span, &lines, 1000.0, graph::rate)
            );
        }
    }
}

/// The gateway checks' timeline and the outages they saw.
fn gateway_history(h: &mut String, s: &Snapshot) {
    let Some(history) = &s.history else {
        return;
    };
    for (tier, span, caption) in windows(s) {
        let _ = write!(
            h,
            "<figure><figcaption>Gateway answers ARP ({caption}; red: a check found no answer)</figcaption>{}</figure>",
            graph::gateway_timeline(tier, span)
        );
    }
    if history.outages.is_empty() {
        h.push_str("<p class=\"muted\">No gateway outage seen.</p>");
        return;
    }
    h.push_str("<table class=\"outages\"><tr><th>gateway outage began</th><th>lasted</th></tr>");
    for o in history.outages.iter().rev() {
        let lasted = match o.end {
            Some(end) => duration(end.saturating_sub(o.start)),
            None => format!("ongoing, {} so far", duration(s.now.saturating_sub(o.start))),
        };
        let _ = write!(
            h,
            "<tr><td>{} ago</td><td>{lasted}</td></tr>",
            duration(s.now.saturating_sub(o.start))
        );
    }
    h.push_str("</table>");
}

/// A chart of one gauge (conntrack entries, DHCP leases) over the hour and the day.
fn gauge(h: &mut String, s: &Snapshot, kind: Kind, label: &str, what: &str, floor: f64) {
    for (tier, span, caption) in windows(s) {
        let Some(series) = tier.get(kind, label) else {
            continue;
        };
        let line = Line {
            values: &series.values,
            factor: 1.0,
            class: "gauge",
            series: format!("{} {label}", kind.name()),
        };
        let _ = write!(
            h,
            "<figure><figcaption>{what}: {caption}</figcaption>{}</figure>",
            graph::chart(tier, span, &[line], floor, |v| format!("{v:.0}"))
        );
    }
}

/// A forward's bytes over the last hour (read once a minute).
fn forward_sparkline(s: &Snapshot, key: &str) -> String {
    let Some(history) = &s.history else {
        return String::new();
    };
    match history.hour.get(Kind::ForwardBytes, key) {
        Some(series) => graph::sparkline(
            &history.hour,
            (s.now.saturating_sub(3600), s.now),
            &series.values,
            &format!("forward_bytes {key}"),
        ),
        None => String::new(),
    }
}

pub fn render(s: &Snapshot) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0} status</title>\
         <meta http-equiv=\"refresh\" content=\"30\"><style>{STYLE}</style></head><body><h1>{0}</h1>\
         <p class=\"muted\">version {1}</p>",
        esc(&s.hostname),
        esc(&config::release::running().display())
    );
    let _ = write!(
        h,
        "<p class=\"muted\">routerd up {}",
        duration(s.now.saturating_sub(s.started))
    );
    if let Some(up) = s.system_uptime {
        let _ = write!(h, "; system up {}", duration(up));
    }
    h.push_str("</p>");

    h.push_str("<h2>Network</h2><table><tr><th>role</th><th>interface</th><th>address</th><th>MAC</th><th>received</th><th>sent</th><th>errors</th></tr>");
    for i in &s.interfaces {
        let get = |k: &str| i.counters.iter().find(|(n, _)| *n == k).map_or(0, |(_, v)| *v);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i.role.to_uppercase(),
            esc(&i.name),
            esc(&i.address),
            esc(&i.mac),
            bytes(get("rx_bytes")),
            bytes(get("tx_bytes")),
            get("rx_errors") + get("tx_errors")
        );
    }
    h.push_str("</table>");
    traffic(&mut h, s);
    h.push_str("<h2>Gateway</h2>");
    if let Some((gw, reachable, state)) = &s.gateway {
        let (class, word) = if *reachable {
            ("ok", "reachable")
        } else {
            ("bad", "not answering ARP")
        };
        let _ = write!(
            h,
            "<p>Gateway {gw}: <span class=\"{class}\">{word}</span> <span class=\"muted\">({})</span></p>",
            esc(state)
        );
        if !reachable {
            h.push_str("<p class=\"bad\">Check that the WAN NIC carries the hoster's virtual MAC and that the gateway address is right.</p>");
        }
    }
    for g in &s.extra_gateways {
        let (class, word) = if g.reachable {
            ("ok", "reachable")
        } else {
            ("bad", "not answering ARP")
        };
        let _ = write!(
            h,
            "<p>Gateway {} on {} (for {}): <span class=\"{class}\">{word}</span> <span class=\"muted\">({})</span></p>",
            g.gateway,
            esc(&g.interface),
            g.address,
            esc(&g.state)
        );
        if !g.reachable {
            let _ = write!(
                h,
                "<p class=\"bad\">Check that {} carries the virtual MAC the hoster issued for {}.</p>",
                esc(&g.interface),
                g.address
            );
        }
    }
    if let Some((at, old, new)) = s.gateway_mac_changes.last {
        let _ = write!(
            h,
            "<p class=\"bad\">Gateway MAC changed {} time(s), last from {old} to {new} {} ago: \
             unless the gateway was replaced, another host on the WAN answers ARP for it \
             (<code>gateway_mac</code> in [wan] pins it).</p>",
            s.gateway_mac_changes.count,
            duration(s.now.saturating_sub(at))
        );
    }
    gateway_history(&mut h, s);
    if let Some((count, limit)) = s.conntrack {
        let _ = write!(h, "<p>Connections tracked: {count} of {limit}</p>");
    }
    gauge(&mut h, s, Kind::Conntrack, "", "Connections tracked", 10.0);

    super::wireguard::page(&mut h, s);
    h.push_str("<h2>Port forwards</h2>");
    if s.forwards.is_empty() {
        h.push_str("<p class=\"muted\">none</p>");
    } else {
        h.push_str("<table><tr><th>public address</th><th>protocol</th><th>port</th><th>to</th><th>packets</th><th>bytes</th><th>last hour</th></tr>");
        for f in &s.forwards {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.public),
                esc(&f.protocol),
                esc(&f.port),
                esc(&f.to),
                f.packets,
                bytes(f.bytes),
                forward_sparkline(s, &f.key())
            );
        }
        h.push_str("</table>");
    }

    if !s.dns.is_empty() {
        let total = |name: &str| -> u64 {
            s.dns
                .iter()
                .flat_map(|d| &d.counters)
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| v)
                .sum()
        };
        let _ = write!(
            h,
            "<h2>DNS</h2><p>{} queries: {} local, {} from the cache ({} entries), {} upstream ({} failed), {} rate-limited; {} local names</p>",
            total("queries"),
            total("local_answers"),
            total("cache_hits"),
            s.dns_cached,
            total("upstream_queries"),
            total("upstream_failures"),
            total("rate_limited"),
            s.dns_local_names
        );
    }
    if !s.by_name.is_empty() || s.by_name_rejected.iter().any(|(_, n)| *n > 0) {
        h.push_str("<h2>Forwards by name</h2><table><tr><th>host</th><th>connections</th><th>now</th><th>from clients</th><th>to clients</th></tr>");
        for n in &s.by_name {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&n.host),
                n.connections,
                n.active,
                bytes(n.bytes_from_clients),
                bytes(n.bytes_to_clients)
            );
        }
        h.push_str("</table><p>closed unrelayed:");
        for (reason, count) in &s.by_name_rejected {
            let _ = write!(h, " {} {count};", esc(reason));
        }
        h.push_str("</p>");
    }

    if s.dhcp.is_empty() {
        h.push_str("<h2>DHCP leases</h2><p class=\"muted\">DHCP server off</p>");
    }
    for d in &s.dhcp {
        {
            if d.lan == config::DEFAULT_LAN_NAME {
                h.push_str("<h2>DHCP leases</h2>");
            } else {
                let _ = write!(h, "<h2>DHCP leases: LAN {}</h2>", esc(&d.lan));
            }
            let _ = write!(h, "<p>{} of {} addresses leased", d.leases.len(), d.pool_size);
            if d.quarantined > 0 {
                let _ = write!(
                    h,
                    "; {} kept out (declined, or another host answered for them)",
                    d.quarantined
                );
            }
            h.push_str("</p>");
            gauge(
                &mut h,
                s,
                Kind::DhcpLeased,
                &d.lan,
                "Addresses leased",
                d.pool_size as f64,
            );
            if let Some(e) = &d.lease_file_error {
                let _ = write!(h, "<p class=\"bad\">Lease disk full or failing: cannot write the lease file ({}). Lease changes are kept in memory and written as soon as the disk takes them again.</p>", esc(e));
            }
            if !d.leases.is_empty() {
                h.push_str("<table><tr><th>address</th><th>host name</th><th>MAC</th><th>expires in</th></tr>");
                for l in &d.leases {
                    let _ = write!(
                        h,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        l.address,
                        esc(&l.hostname),
                        esc(&l.mac),
                        duration(l.expires_in)
                    );
                }
                h.push_str("</table>");
            }
        }
    }

    h.push_str("<h2>Config</h2>");
    let _ = write!(h, "<p>Generation {}", s.generation);
    if let Some((at, ok)) = s.last_reload {
        let (class, word) = if ok { ("ok", "applied") } else { ("bad", "rejected") };
        let _ = write!(
            h,
            "; last load {} ago: <span class=\"{class}\">{word}</span>",
            duration(s.now.saturating_sub(at))
        );
    }
    if let Some(at) = s.applied_at {
        let _ = write!(h, "; running config applied {} ago", duration(s.now.saturating_sub(at)));
    }
    let _ = write!(h, ". routerd uses {} of memory.</p>", bytes(s.rss_bytes));

    h.push_str("<h2>Last errors</h2>");
    if s.errors.is_empty() {
        h.push_str("<p class=\"muted\">none</p>");
    } else {
        h.push_str("<table>");
        for (at, e) in s.errors.iter().rev() {
            let _ = write!(
                h,
                "<tr><td class=\"muted\">{} ago</td><td>{}</td></tr>",
                duration(s.now.saturating_sub(*at)),
                esc(e)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<p class=\"muted\"><a href=\"/metrics\">metrics</a></p></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::super::{DhcpStats, LeaseRow};
    use super::*;

    #[test]
    fn shows_leases_errors_and_escapes_text() {
        let s = Snapshot {
            hostname: "router<1>".into(),
            now: 1000,
            dhcp: vec![DhcpStats {
                lan: "lan".into(),
                pool_size: 10,
                leases: vec![LeaseRow {
                    address: std::net::Ipv4Addr::new(172, 16, 10, 100),
                    mac: "52:54:00:00:00:01".into(),
                    hostname: "web".into(),
                    expires_in: 3700,
                }],
                counters: vec![],
                lease_file_error: Some("No space left on device".into()),
                quarantined: 2,
            }],
            errors: vec![(990, "router.toml:3:7: bad <mac>".into())],
            ..Default::default()
        };
        let page = render(&s);
        assert!(page.contains("<h1>router&lt;1&gt;</h1>"));
        assert!(page.contains("<td>172.16.10.100</td><td>web</td><td>52:54:00:00:00:01</td><td>1h 1m</td>"));
        assert!(page.contains("1 of 10 addresses leased; 2 kept out"));
        assert!(page.contains("Lease disk full or failing: cannot write the lease file (No space left on device)"));
        assert!(page.contains("10s ago</td><td>router.toml:3:7: bad &lt;mac&gt;</td>"));
    }

    #[test]
    fn graphs_show_the_history() {
        use super::super::history::{History, Sample, SeriesKey};
        use super::super::InterfaceStats;
        const T: u64 = 1_800_000_000;
        let mut history = History::default();
        for i in 0..10u64 {
            history.record(&Sample {
                at: T + i * 10,
                values: vec![(
                    SeriesKey {
                        kind: Kind::RxBytes,
                        label: "wan".into(),
                    },
                    i * i * 1000,
                )],
                gateway: Some((T + i * 10, i != 4)),
            });
        }
        let s = Snapshot {
            now: T + 100,
            started: T,
            interfaces: vec![InterfaceStats {
                role: "wan",
                name: "wan".into(),
                ..Default::default()
            }],
            history: Some(std::sync::Arc::new(history.view())),
            ..Default::default()
        };
        let page = render(&s);
        assert!(
            page.contains("<figcaption>WAN wan: last hour</figcaption><svg"),
            "{page}"
        );
        assert!(
            page.contains("<path class=\"rx\" data-series=\"rx_bytes wan\" d=\"M"),
            "{page}"
        );
        assert!(page.contains("class=\"down\""), "the failed check shows: {page}");
        assert!(
            page.contains("<td>1m 0s ago</td><td>10s</td>"),
            "the outage with its length: {page}"
        );
        assert!(page.contains("up 1m 40s"), "{page}");
        assert!(page.contains(">-1d 0h</text>"), "the day's chart spans a day: {page}");
    }

    #[test]
    fn sizes_and_durations_read_naturally() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(90000), "1d 1h");
    }
}
