//! Prometheus text exposition format (version 0.0.4) of a [`Snapshot`].

use std::fmt::Write;

use super::Snapshot;

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.0, "{name}");
        if !labels.is_empty() {
            let body: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = write!(self.0, "{{{}}}", body.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// The forwards by host name: per name (the forward's `host`, or `default`).
fn by_name(o: &mut Out, s: &Snapshot) {
    type Field = fn(&crate::proxy::stats::HostRow) -> u64;
    let per_host: [(&str, &str, &str, Field); 4] = [
        (
            "router_by_name_connections_total",
            "counter",
            "Connections relayed by host name.",
            |h| h.connections,
        ),
        (
            "router_by_name_connections",
            "gauge",
            "Connections relayed now, by host name.",
            |h| h.active,
        ),
        (
            "router_by_name_client_bytes_total",
            "counter",
            "Bytes from clients relayed, by host name.",
            |h| h.bytes_from_clients,
        ),
        (
            "router_by_name_service_bytes_total",
            "counter",
            "Bytes to clients relayed, by host name.",
            |h| h.bytes_to_clients,
        ),
    ];
    for (name, kind, help, value) in per_host {
        o.family(name, kind, help);
        for h in &s.by_name {
            o.sample(name, &[("host", &h.host)], value(h));
        }
    }
    let name = "router_by_name_rejected_total";
    o.family(
        name,
        "counter",
        "Connections to forwards by name closed unrelayed, by reason.",
    );
    for (reason, n) in &s.by_name_rejected {
        o.sample(name, &[("reason", reason)], n);
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub fn render(s: &Snapshot) -> String {
    let mut o = Out(String::new());
    let release = config::release::running();
    o.family(
        "router_build_info",
        "gauge",
        "The running release: version and payload sha256.",
    );
    o.sample(
        "router_build_info",
        &[("version", &release.version), ("payload", &release.payload)],
        1,
    );
    for (counter, help) in [
        ("rx_bytes", "Bytes received."),
        ("rx_packets", "Packets received."),
        ("rx_errors", "Receive errors."),
        ("rx_dropped", "Received packets dropped."),
        ("tx_bytes", "Bytes sent."),
        ("tx_packets", "Packets sent."),
        ("tx_errors", "Send errors."),
        ("tx_dropped", "Packets dropped on send."),
    ] {
        let name = format!("router_interface_{counter}_total");
        o.family(&name, "counter", help);
        for i in &s.interfaces {
            if let Some((_, v)) = i.counters.iter().find(|(k, _)| *k == counter) {
                let mut labels = vec![("interface", i.name.as_str()), ("role", i.role)];
                if !i.lan.is_empty() {
                    labels.push(("lan", &i.lan));
                }
                o.sample(&name, &labels, v);
            }
        }
    }
    if let Some((count, limit)) = s.conntrack {
        o.family("router_conntrack_entries", "gauge", "Connections tracked now.");
        o.sample("router_conntrack_entries", &[], count);
        o.family("router_conntrack_limit", "gauge", "Most connections the kernel tracks.");
        o.sample("router_conntrack_limit", &[], limit);
    }
    o.family(
        "router_forward_packets_total",
        "counter",
        "Packets that took a port forward.",
    );
    for f in &s.forwards {
        o.sample(
            "router_forward_packets_total",
            &[
                ("public", &f.public),
                ("protocol", &f.protocol),
                ("port", &f.port),
                ("to", &f.to),
            ],
            f.packets,
        );
    }
    o.family(
        "router_forward_bytes_total",
        "counter",
        "Bytes that took a port forward (first packets of each connection).",
    );
    for f in &s.forwards {
        o.sample(
            "router_forward_bytes_total",
            &[
                ("public", &f.public),
                ("protocol", &f.protocol),
                ("port", &f.port),
                ("to", &f.to),
            ],
            f.bytes,
        );
    }
    if !s.by_name.is_empty() || s.by_name_rejected.iter().any(|(_, n)| *n > 0) {
        by_name(&mut o, s);
    }
    o.0.push_str(&super::wireguard::metrics(s));
    // One sample per LAN with a DHCP server, labelled with its name.
    if let Some(first) = s.dhcp.first() {
        let each = |o: &mut Out, name: &str, value: &dyn Fn(&super::DhcpStats) -> u64| {
            for d in &s.dhcp {
                o.sample(name, &[("lan", &d.lan)], value(d));
            }
        };
        o.family(
            "router_dhcp_leases_active",
            "gauge",
            "DHCP leases bound and not expired.",
        );
        each(&mut o, "router_dhcp_leases_active", &|d| d.leases.len() as u64);
        o.family("router_dhcp_pool_size", "gauge", "Addresses in the DHCP range.");
        each(&mut o, "router_dhcp_pool_size", &|d| d.pool_size);
        o.family(
            "router_dhcp_lease_file_failing",
            "gauge",
            "1 while lease changes cannot be written (disk full or failing) and are kept in memory.",
        );
        each(&mut o, "router_dhcp_lease_file_failing", &|d| {
            u64::from(d.lease_file_error.is_some())
        });
        o.family(
            "router_dhcp_quarantined",
            "gauge",
            "Addresses kept out of the DHCP pool now (declined, or a host answered the ARP probe).",
        );
        each(&mut o, "router_dhcp_quarantined", &|d| d.quarantined);
        for (i, (name, _)) in first.counters.iter().enumerate() {
            let metric = format!("router_dhcp_{name}_total");
            o.family(&metric, "counter", &format!("DHCP {}.", name.replace('_', " ")));
            each(&mut o, &metric, &|d| d.counters.get(i).map_or(0, |(_, v)| *v));
        }
    }
    if let Some(first) = s.dns.first() {
        for (i, (name, _)) in first.counters.iter().enumerate() {
            let metric = format!("router_dns_{name}_total");
            o.family(&metric, "counter", &format!("DNS {}.", name.replace('_', " ")));
            for d in &s.dns {
                o.sample(&metric, &[("lan", &d.lan)], d.counters.get(i).map_or(0, |(_, v)| *v));
            }
        }
        o.family(
            "router_dns_upstream_seconds_total",
            "counter",
            "Time spent waiting for upstream DNS answers (divide by router_dns_upstream_queries_total for the mean).",
        );
        for d in &s.dns {
            o.sample(
                "router_dns_upstream_seconds_total",
                &[("lan", &d.lan)],
                d.upstream_micros as f64 / 1e6,
            );
        }
        o.family("router_dns_cache_entries", "gauge", "Answers in the DNS cache.");
        o.sample("router_dns_cache_entries", &[], s.dns_cached);
        o.family("router_dns_local_names", "gauge", "Names the resolver answers itself.");
        o.sample("router_dns_local_names", &[], s.dns_local_names);
    }
    if let Some((gw, reachable, state)) = &s.gateway {
        o.family(
            "router_gateway_reachable",
            "gauge",
            "1 when the WAN gateway answers ARP.",
        );
        o.sample(
            "router_gateway_reachable",
            &[("gateway", &gw.to_string()), ("state", state)],
            u8::from(*reachable),
        );
    }
    if !s.extra_gateways.is_empty() {
        o.family(
            "router_extra_gateway_reachable",
            "gauge",
            "1 when the gateway of an extra WAN NIC (wan.extra) answers ARP on it.",
        );
        for g in &s.extra_gateways {
            o.sample(
                "router_extra_gateway_reachable",
                &[
                    ("interface", &g.interface),
                    ("address", &g.address.to_string()),
                    ("gateway", &g.gateway.to_string()),
                    ("state", &g.state),
                ],
                u8::from(g.reachable),
            );
        }
    }
    if !s.public_addresses.is_empty() {
        o.family(
            "router_public_address_info",
            "gauge",
            "Each public address of the router, with the NIC and MAC it is on.",
        );
        for p in &s.public_addresses {
            o.sample(
                "router_public_address_info",
                &[
                    ("address", &p.address.to_string()),
                    ("interface", &p.interface),
                    ("mac", &p.mac),
                ],
                1,
            );
        }
    }
    o.family(
        "router_gateway_mac_changes_total",
        "counter",
        "Times the WAN gateway's neighbour entry changed its MAC (ARP spoofing shows here).",
    );
    o.sample("router_gateway_mac_changes_total", &[], s.gateway_mac_changes.count);
    o.family(
        "router_config_generation",
        "gauge",
        "Configs applied since routerd started.",
    );
    o.sample("router_config_generation", &[], s.generation);
    if let Some((at, ok)) = s.last_reload {
        o.family(
            "router_config_last_reload_success",
            "gauge",
            "1 when the last config load applied.",
        );
        o.sample("router_config_last_reload_success", &[], u8::from(ok));
        o.family(
            "router_config_last_reload_timestamp_seconds",
            "gauge",
            "Unix time of the last config load.",
        );
        o.sample("router_config_last_reload_timestamp_seconds", &[], at);
    }
    o.family("process_resident_memory_bytes", "gauge", "routerd's resident memory.");
    o.sample("process_resident_memory_bytes", &[], s.rss_bytes);
    o.0
}

#[cfg(test)]
mod tests {
    use super::super::{DhcpStats, ForwardStats, InterfaceStats, LeaseRow};
    use super::*;

    #[test]
    fn renders_families_and_labelled_samples() {
        let s = Snapshot {
            interfaces: vec![InterfaceStats {
                role: "wan",
                name: "eth0".into(),
                counters: vec![("rx_bytes", 1234), ("tx_packets", 7)],
                ..Default::default()
            }],
            forwards: vec![ForwardStats {
                public: "203.0.113.10".into(),
                protocol: "tcp".into(),
                port: "80".into(),
                to: "172.16.10.5:8080".into(),
                packets: 3,
                bytes: 180,
            }],
            dhcp: vec![DhcpStats {
                lan: "lan".into(),
                pool_size: 151,
                leases: vec![LeaseRow {
                    address: std::net::Ipv4Addr::new(172, 16, 10, 9),
                    mac: String::new(),
                    hostname: String::new(),
                    expires_in: 1,
                }],
                counters: vec![("acks", 2)],
                lease_file_error: Some("No space left on device".into()),
                quarantined: 3,
            }],
            gateway: Some((
                "203.0.113.254".parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                true,
                "reachable".into(),
            )),
            extra_gateways: vec![super::super::ExtraGateway {
                interface: "eth2".into(),
                address: std::net::Ipv4Addr::new(203, 0, 113, 20),
                gateway: std::net::Ipv4Addr::new(203, 0, 113, 254),
                reachable: false,
                state: "failed".into(),
            }],
            public_addresses: vec![super::super::PublicAddress {
                address: std::net::Ipv4Addr::new(203, 0, 113, 20),
                interface: "eth2".into(),
                mac: "02:00:00:00:00:11".into(),
            }],
            generation: 2,
            last_reload: Some((100, false)),
            rss_bytes: 4096,
            ..Default::default()
        };
        let text = render(&s);
        for line in [
            "# TYPE router_interface_rx_bytes_total counter",
            "router_interface_rx_bytes_total{interface=\"eth0\",role=\"wan\"} 1234",
            "router_interface_tx_packets_total{interface=\"eth0\",role=\"wan\"} 7",
            "router_forward_packets_total{public=\"203.0.113.10\",protocol=\"tcp\",port=\"80\",to=\"172.16.10.5:8080\"} 3",
            "router_dhcp_leases_active{lan=\"lan\"} 1",
            "router_dhcp_pool_size{lan=\"lan\"} 151",
            "router_dhcp_acks_total{lan=\"lan\"} 2",
            "router_dhcp_lease_file_failing{lan=\"lan\"} 1",
            "router_dhcp_quarantined{lan=\"lan\"} 3",
            "router_gateway_reachable{gateway=\"203.0.113.254\",state=\"reachable\"} 1",
            "router_extra_gateway_reachable{interface=\"eth2\",address=\"203.0.113.20\",gateway=\"203.0.113.254\",state=\"failed\"} 0",
            "router_public_address_info{address=\"203.0.113.20\",interface=\"eth2\",mac=\"02:00:00:00:00:11\"} 1",
            "router_config_generation 2",
            "router_config_last_reload_success 0",
            "process_resident_memory_bytes 4096",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

#[cfg(test)]
mod by_name_tests {
    use super::*;
    use crate::proxy::stats::HostRow;

    #[test]
    fn forwards_by_name_show_per_host_and_rejections_by_reason_only_when_used() {
        assert!(!render(&Snapshot::default()).contains("router_by_name"));
        let s = Snapshot {
            by_name: vec![HostRow {
                host: "*.blog.example.com".into(),
                connections: 3,
                active: 1,
                bytes_from_clients: 500,
                bytes_to_clients: 9000,
            }],
            by_name_rejected: vec![("no_name", 0), ("timeout", 2)],
            ..Snapshot::default()
        };
        let text = render(&s);
        for line in [
            "router_by_name_connections_total{host=\"*.blog.example.com\"} 3",
            "router_by_name_connections{host=\"*.blog.example.com\"} 1",
            "router_by_name_client_bytes_total{host=\"*.blog.example.com\"} 500",
            "router_by_name_service_bytes_total{host=\"*.blog.example.com\"} 9000",
            "router_by_name_rejected_total{reason=\"timeout\"} 2",
            "router_by_name_rejected_total{reason=\"no_name\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        let page = super::super::page::render(&s);
        assert!(page.contains("Forwards by name") && page.contains("*.blog.example.com") && page.contains("timeout 2"));
    }
}
