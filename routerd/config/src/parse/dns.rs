//! Validation of `[dns]` and `[[dns.host]]`.

use std::net::{IpAddr, Ipv6Addr};

use serde::Deserialize;

use super::{quote, Validator, S};
use crate::dns::{Dns, DnsHost, DEFAULT_CACHE_ENTRIES, DEFAULT_RATE_LIMIT};
use crate::{hostname, Lan, Wan};

/// The largest cache a config may ask for (about 1 KiB of memory an entry at most).
const MAX_CACHE_ENTRIES: i64 = 1_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    enabled: Option<bool>,
    upstream: Option<Vec<S<String>>>,
    cache_entries: Option<S<i64>>,
    rate_limit: Option<S<i64>>,
    #[serde(default)]
    host: Vec<S<RawDnsHost>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDnsHost {
    name: Option<S<String>>,
    /// IPv4 or IPv6.
    address: Option<S<String>>,
    /// IPv6 only: a name with both kinds of address.
    address6: Option<S<String>>,
}

impl Validator<'_> {
    /// The resolver: on when `[dns]` is given or any LAN has DHCP, unless
    /// `enabled = false`. `None`: off.
    pub(super) fn dns(&mut self, table: Option<&S<RawDns>>, lans: &[Lan], wan: Option<&Wan>) -> Option<Dns> {
        let raw = table.map(S::get_ref);
        let wanted = match raw.and_then(|r| r.enabled) {
            Some(enabled) => enabled,
            None => raw.is_some() || lans.iter().any(|l| l.dhcp.is_some()),
        };
        let upstream = match raw.and_then(|r| r.upstream.as_ref()) {
            Some(list) => list
                .iter()
                .filter_map(|u| {
                    let ip = self.ip("dns.upstream", u)?;
                    if lans.iter().any(|l| l.address.addr() == ip) || ip.is_unspecified() || ip.is_loopback() {
                        self.error(
                            u.span(),
                            format!("dns.upstream: {ip} is this router itself; give the resolvers it should ask"),
                        );
                        return None;
                    }
                    Some(ip)
                })
                .collect(),
            None => wan.map(|w| w.dns.clone()).unwrap_or_default(),
        };
        let cache_entries = match raw.and_then(|r| r.cache_entries.as_ref()) {
            None => DEFAULT_CACHE_ENTRIES,
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(v) if *n.get_ref() <= MAX_CACHE_ENTRIES => v,
                _ => {
                    self.error(
                        n.span(),
                        format!(
                            "dns.cache_entries: expected 0 to {MAX_CACHE_ENTRIES}, found {}",
                            n.get_ref()
                        ),
                    );
                    DEFAULT_CACHE_ENTRIES
                }
            },
        };
        let rate_limit = match raw.and_then(|r| r.rate_limit.as_ref()) {
            None => DEFAULT_RATE_LIMIT,
            Some(n) => u32::try_from(*n.get_ref()).unwrap_or_else(|_| {
                self.error(
                    n.span(),
                    format!(
                        "dns.rate_limit: expected queries a second per client, 0 (no limit) or more, found {}",
                        n.get_ref()
                    ),
                );
                DEFAULT_RATE_LIMIT
            }),
        };
        let mut hosts: Vec<DnsHost> = Vec::new();
        for h in raw.map(|r| r.host.as_slice()).unwrap_or_default() {
            let rh = h.get_ref();
            let name = self
                .required(&rh.name, h, "name", "a host name like \"nas\" (nas.lan)")
                .and_then(|n| self.dns_host_name(n));
            let address = self
                .required(
                    &rh.address,
                    h,
                    "address",
                    "its address, like \"172.16.10.5\" or \"2001:db8::5\"",
                )
                .and_then(|a| self.dns_host_address(a));
            let address6 = rh.address6.as_ref().and_then(|a| self.dns_host_address6(a));
            let (Some(name), Some(address)) = (name, address) else {
                continue;
            };
            let (address, address6) = match (address, &rh.address6) {
                (IpAddr::V4(v4), _) => (Some(v4), address6),
                (IpAddr::V6(v6), None) => (None, Some(v6)),
                (IpAddr::V6(_), Some(a6)) => {
                    self.error(
                        a6.span(),
                        "dns.host.address6: address is IPv6 already; give the IPv4 address in address".to_string(),
                    );
                    continue;
                }
            };
            if let Some(other) = hosts.iter().find(|o| o.name.eq_ignore_ascii_case(&name)) {
                let was = other
                    .address
                    .map_or_else(|| other.address6.map(IpAddr::V6), |a| Some(IpAddr::V4(a)));
                self.error(
                    h.span(),
                    format!(
                        "dns.host: {} is already {}",
                        quote(&name),
                        was.map(|a| a.to_string()).unwrap_or_default()
                    ),
                );
                continue;
            }
            hosts.push(DnsHost {
                name,
                address,
                address6,
            });
        }
        wanted.then_some(Dns {
            upstream,
            cache_entries,
            rate_limit,
            hosts,
        })
    }

    fn dns_host_name(&mut self, s: &S<String>) -> Option<String> {
        let name = s.get_ref().strip_suffix('.').unwrap_or(s.get_ref());
        if hostname::valid_dns_name(name) && !name.is_empty() {
            Some(name.to_ascii_lowercase())
        } else {
            self.error(
                s.span(),
                format!(
                    "dns.host.name: {} is not a valid host name (letters, digits and '-', dot-separated)",
                    quote(s.get_ref())
                ),
            );
            None
        }
    }

    fn dns_host_address(&mut self, s: &S<String>) -> Option<IpAddr> {
        match s.get_ref().parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => {
                if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
                    self.error(s.span(), format!("dns.host.address: {ip} is no host's address"));
                    return None;
                }
                Some(IpAddr::V4(ip))
            }
            Ok(IpAddr::V6(_)) => self.dns_host_address6(s).map(IpAddr::V6),
            Err(_) => {
                self.error(
                    s.span(),
                    format!(
                        "dns.host.address: expected an IPv4 or IPv6 address like 172.16.10.5 or 2001:db8::5, found {}",
                        quote(s.get_ref())
                    ),
                );
                None
            }
        }
    }

    fn dns_host_address6(&mut self, s: &S<String>) -> Option<Ipv6Addr> {
        let ip: Ipv6Addr = self.parsed("dns.host.address6", s, "an IPv6 address like \"2001:db8::5\"")?;
        if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
            self.error(s.span(), format!("dns.host.address: {ip} is no host's address"));
            return None;
        }
        Some(ip)
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::net::Ipv4Addr;

    const WAN: &str = "[wan]\ninterface = \"eth0\"\naddress = \"203.0.113.10/32\"\ngateway = \"203.0.113.254\"\ndns = [\"198.51.100.53\"]\n[lan]\naddress = \"172.16.0.1/16\"\n";
    const DHCP: &str = "[dhcp]\nrange = \"172.16.10.100-172.16.10.110\"\n";

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, "router.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn the_resolver_is_on_with_dhcp_and_dhcp_hands_out_the_router() {
        let config = parse(&format!("{WAN}{DHCP}")).expect("valid");
        let dns = config.dns.as_ref().expect("on by default with DHCP");
        assert_eq!(
            dns.upstream,
            [Ipv4Addr::new(198, 51, 100, 53)],
            "upstream defaults to wan.dns"
        );
        assert_eq!(dns.cache_entries, 10_000);
        assert_eq!(config.dhcp_dns(&config.lans[0]), [Ipv4Addr::new(172, 16, 0, 1)]);
        assert_eq!(config.lan_domain(&config.lans[0]), "lan");
    }

    #[test]
    fn off_dhcp_hands_out_wan_dns_and_an_explicit_dhcp_dns_always_wins() {
        let off = parse(&format!("{WAN}{DHCP}[dns]\nenabled = false\n")).expect("valid");
        assert!(off.dns.is_none());
        assert_eq!(off.dhcp_dns(&off.lans[0]), [Ipv4Addr::new(198, 51, 100, 53)]);
        let own = parse(&format!("{WAN}{DHCP}dns = [\"9.9.9.9\"]\n")).expect("valid");
        assert!(own.dns.is_some());
        assert_eq!(own.dhcp_dns(&own.lans[0]), [Ipv4Addr::new(9, 9, 9, 9)]);
        // No DHCP and no [dns]: nothing to hand the router's address to.
        assert!(parse(WAN).expect("valid").dns.is_none());
    }

    #[test]
    fn hosts_upstream_and_cache_are_read() {
        let config = parse(&format!(
            "{WAN}[dns]\nupstream = [\"198.51.100.1\"]\ncache_entries = 50\nrate_limit = 0\n[[dns.host]]\nname = \"NAS\"\naddress = \"172.16.10.5\"\n[[dns.host]]\nname = \"files.example.net.\"\naddress = \"198.51.100.7\"\n"
        ))
        .expect("valid");
        let dns = config.dns.expect("on: [dns] is given");
        assert_eq!(dns.upstream, [Ipv4Addr::new(198, 51, 100, 1)]);
        assert_eq!((dns.cache_entries, dns.rate_limit), (50, 0));
        let hosts: Vec<(&str, Option<Ipv4Addr>)> = dns.hosts.iter().map(|h| (h.name.as_str(), h.address)).collect();
        assert_eq!(
            hosts,
            [
                ("nas", Some(Ipv4Addr::new(172, 16, 10, 5))),
                ("files.example.net", Some(Ipv4Addr::new(198, 51, 100, 7)))
            ]
        );
    }

    #[test]
    fn bad_values_are_refused_with_their_position() {
        let err = parse(&format!(
            "{WAN}[dns]\nupstream = [\"172.16.0.1\", \"nope\"]\ncache_entries = -1\nrate_limit = -5\n[[dns.host]]\nname = \"bad_name\"\naddress = \"224.0.0.1\"\n[[dns.host]]\nname = \"nas\"\n[[dns.host]]\nname = \"a\"\naddress = \"172.16.10.5\"\n[[dns.host]]\nname = \"A\"\naddress = \"172.16.10.6\"\n"
        ))
        .expect_err("bad");
        for expected in [
            "router.toml:9:13: dns.upstream: 172.16.0.1 is this router itself",
            "router.toml:9:27: dns.upstream: expected an IPv4 address like 203.0.113.254, found \"nope\"",
            "router.toml:10:17: dns.cache_entries: expected 0 to 1000000, found -1",
            "router.toml:11:14: dns.rate_limit: expected queries a second per client",
            "router.toml:13:8: dns.host.name: \"bad_name\" is not a valid host name",
            "router.toml:14:11: dns.host.address: 224.0.0.1 is no host's address",
            "missing key `address`",
            "dns.host: \"a\" is already 172.16.10.5",
        ] {
            assert!(err.contains(expected), "{expected}\nin\n{err}");
        }
    }

    #[test]
    fn router_advertisements_announce_the_router_with_the_resolver_on_and_wan_dns6_off() {
        let v6 = WAN
            .replace(
                "dns = [\"198.51.100.53\"]\n",
                "dns = [\"198.51.100.53\"]\ngateway6 = \"fe80::1\"\ndns6 = [\"2001:db8:ffff::53\"]\n",
            )
            .replace(
                "address = \"172.16.0.1/16\"\n",
                "address = \"172.16.0.1/16\"\naddress6 = \"2001:db8:2::1/64\"\n",
            );
        let on = parse(&format!("{v6}{DHCP}")).expect("valid");
        assert_eq!(
            on.ra_dns(&on.lans[0]),
            ["2001:db8:2::1".parse::<std::net::Ipv6Addr>().expect("ip")]
        );
        let off = parse(&format!("{v6}{DHCP}[dns]\nenabled = false\n")).expect("valid");
        assert_eq!(
            off.ra_dns(&off.lans[0]),
            ["2001:db8:ffff::53".parse::<std::net::Ipv6Addr>().expect("ip")]
        );
    }

    #[test]
    fn a_host_may_have_an_ipv6_address_or_both() {
        let config = parse(&format!(
            "{WAN}[[dns.host]]\nname = \"v6only\"\naddress = \"2001:db8:2::5\"\n[[dns.host]]\nname = \"both\"\naddress = \"172.16.10.6\"\naddress6 = \"2001:db8:2::6\"\n"
        ))
        .expect("valid");
        let hosts: Vec<String> = config
            .dns
            .expect("on")
            .hosts
            .iter()
            .map(|h| format!("{} {:?} {:?}", h.name, h.address, h.address6))
            .collect();
        assert_eq!(
            hosts,
            [
                "v6only None Some(2001:db8:2::5)",
                "both Some(172.16.10.6) Some(2001:db8:2::6)"
            ]
        );
        let err = parse(&format!(
            "{WAN}[[dns.host]]\nname = \"a\"\naddress = \"2001:db8::1\"\naddress6 = \"2001:db8::2\"\n[[dns.host]]\nname = \"b\"\naddress = \"ff02::1\"\n[[dns.host]]\nname = \"c\"\naddress = \"172.16.10.7\"\naddress6 = \"172.16.10.8\"\n"
        ))
        .expect_err("bad");
        for expected in [
            "router.toml:11:12: dns.host.address6: address is IPv6 already",
            "router.toml:14:11: dns.host.address: ff02::1 is no host's address",
            "router.toml:18:12: dns.host.address6: expected an IPv6 address like \"2001:db8::5\", found \"172.16.10.8\"",
        ] {
            assert!(err.contains(expected), "{expected}\nin\n{err}");
        }
    }
}
