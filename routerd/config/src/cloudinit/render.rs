//! The router.toml made from a cloud-init drive.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::Ipv4Net;

use super::network::{Roles, DEFAULT_LAN};

/// The DHCP pool for a LAN made from cloud-init: `.100`–`.249` of the router's /24
/// (`.10`–`.99` if the router's address is in there) for a /24 or larger LAN; for a
/// smaller LAN the upper half of its hosts (the lower half if the router is there).
pub fn default_dhcp_range(lan: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    let router = u32::from(lan.addr());
    let (first, last) = if lan.prefix_len() <= 24 {
        let base = router & 0xffff_ff00;
        let (a, b) = (base + 100, base + 249);
        if (a..=b).contains(&router) {
            (base + 10, base + 99)
        } else {
            (a, b)
        }
    } else {
        let network = u32::from(lan.network());
        let broadcast = u32::from(lan.broadcast());
        let middle = network + (broadcast - network).div_ceil(2);
        if (middle..broadcast).contains(&router) {
            (network + 1, middle - 1)
        } else {
            (middle, broadcast - 1)
        }
    };
    (Ipv4Addr::from(first), Ipv4Addr::from(last))
}

pub(super) fn render(dir: &Path, hostname: Option<&str>, roles: &Roles, dns: &[Ipv4Addr], dns6: &[Ipv6Addr]) -> String {
    let quoted = |items: &[String]| items.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Made by routerd from the cloud-init drive at {} (its network-config).",
        dir.display()
    );
    if let Some(h) = hostname {
        let _ = writeln!(t, "hostname = {h:?}");
    }
    let (wan_net, wan_gw) = roles.wan.static_v4.unwrap_or((Ipv4Net::default(), None));
    t.push_str("\n[wan]\n");
    if let Some(mac) = roles.wan.mac {
        let _ = writeln!(t, "mac = \"{mac}\"");
    }
    let _ = writeln!(t, "address = \"{wan_net}\"");
    if let Some(gw) = wan_gw {
        let _ = writeln!(t, "gateway = \"{gw}\"");
    }
    let dns: Vec<String> = dns.iter().map(ToString::to_string).collect();
    let _ = writeln!(t, "dns = [{}]", quoted(&dns));
    // ipconfig0's ip6= and gw6=: the WAN's IPv6 (a link-local ip6 is the kernel's own).
    if let Some((net, Some(gw6))) = roles.wan.static_v6 {
        if !crate::is_link_local(net.addr()) {
            let _ = writeln!(t, "address6 = \"{net}\"");
        }
        {
            let _ = writeln!(t, "gateway6 = \"{gw6}\"");
            if !dns6.is_empty() {
                let dns6: Vec<String> = dns6.iter().map(ToString::to_string).collect();
                let _ = writeln!(t, "dns6 = [{}]", quoted(&dns6));
            }
        }
    }
    for extra in &roles.extra_wans {
        t.push_str("\n[[wan.extra]]\n");
        if let Some(mac) = extra.mac {
            let _ = writeln!(t, "mac = \"{mac}\"");
        }
        if let Some((net, _)) = extra.static_v4 {
            let _ = writeln!(t, "address = \"{net}\"");
        }
    }
    let default_lan: Ipv4Net = DEFAULT_LAN.parse().unwrap_or_default();
    let lan_net = roles
        .lan
        .as_ref()
        .and_then(|l| l.static_v4)
        .map_or(default_lan, |(net, _)| net);
    t.push_str("\n[lan]\n");
    if let Some(mac) = roles.lan.as_ref().and_then(|l| l.mac) {
        let _ = writeln!(t, "mac = \"{mac}\"");
    }
    let _ = writeln!(t, "address = \"{lan_net}\"");
    // ipconfig1's ip6=: the LAN's /64, advertised to the guests.
    if let Some((net6, _)) = roles.lan.as_ref().and_then(|l| l.static_v6) {
        let _ = writeln!(t, "address6 = \"{net6}\"");
    }
    let (first, last) = default_dhcp_range(lan_net);
    t.push_str("\n[dhcp]\n");
    let _ = writeln!(t, "range = \"{first}-{last}\"");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcp_ranges() {
        let r = |s: &str| {
            let (a, b) = default_dhcp_range(s.parse().unwrap_or_default());
            format!("{a}-{b}")
        };
        assert_eq!(r("172.16.0.1/16"), "172.16.0.100-172.16.0.249");
        assert_eq!(r("10.0.5.1/24"), "10.0.5.100-10.0.5.249");
        assert_eq!(r("10.0.5.150/24"), "10.0.5.10-10.0.5.99");
        assert_eq!(r("10.0.5.1/26"), "10.0.5.32-10.0.5.62");
        assert_eq!(r("10.0.5.40/26"), "10.0.5.1-10.0.5.31");
        assert_eq!(r("10.0.5.1/30"), "10.0.5.2-10.0.5.2");
    }
}
