//! The LAN resolver over IPv6, with the real routerd on the Hetzner-like lab of
//! tests/tests/ipv6.rs (the /64 routed to the router's link-local address): guests
//! learn the router as their resolver from its router advertisements (RDNSS, read with
//! `rdisc6`), find each other's SLAAC addresses by name with `dig -6`, and the WAN side
//! gets nothing. Needs root, `rdisc6` (ndisc6), `dig` and dnsmasq; run through `tests/run`.

use std::time::Duration;

use testkit::dhcp_client::{Client, Kind};
use testkit::dns::{dig, Dig, Dnsmasq};
use testkit::lab::{Lab, Options, CONFIG};
use testkit::netns::Netns;

const UPSTREAM: &str = "198.51.100.53";
const PREFIX: &str = "2001:db8:2::/64";
const ROUTER6: &str = "2001:db8:2::1";
const INET6: &str = "2001:db8:ffff::1";
/// The DHCP guest `web`: its MAC, and so its SLAAC (EUI-64) address in [`PREFIX`].
const WEB_MAC: &str = "52:54:00:00:00:61";
const WEB6: &str = "2001:db8:2:0:5054:ff:fe00:61";
/// Long enough for SLAAC on a busy machine; each wait returns once its condition holds.
const DEADLINE: Duration = Duration::from_secs(120);

/// [`Lab::wait_for`] within [`DEADLINE`], showing the router's IPv6 state on failure.
fn wait_for<T>(what: &str, lab: &Lab, check: impl FnMut() -> Option<T>) -> T {
    lab.wait_for(what, DEADLINE, "ip -6 addr; ss -lnup; nft list ruleset", check)
}

fn has_address(ns: &Netns, addr: &str) -> bool {
    ns.sh("ip -6 -o addr show dev eth0 scope global")
        .contains(&format!("{addr}/64"))
}

fn ping6(from: &Netns, to: &str) -> bool {
    from.command("ping")
        .args(["-6", "-c", "1", "-W", "2", to])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ask6(ns: &Netns, args: &[&str]) -> Dig {
    let mut all = vec!["-6"];
    all.extend_from_slice(args);
    dig(ns, ROUTER6, &all)
}

#[test]
fn guests_learn_the_router_as_resolver_by_ra_and_find_each_other_over_ipv6() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    // The internet host (v6 and the upstream resolver) and the hoster's v6 side.
    lab.inet.ip(&["addr", "add", &format!("{UPSTREAM}/24"), "dev", "eth0"]);
    lab.inet
        .ip(&["addr", "add", &format!("{INET6}/64"), "dev", "eth0", "nodad"]);
    lab.inet
        .ip(&["-6", "route", "add", "default", "via", "2001:db8:ffff::fe"]);
    lab.hoster
        .ip(&["addr", "add", "2001:db8:ffff::fe/64", "dev", "up0", "nodad"]);
    lab.hoster.ip(&["addr", "add", "fe80::1/64", "dev", "vmbr0", "nodad"]);
    lab.hoster.sysctl("net.ipv6.conf.all.forwarding", "1");
    let upstream = Dnsmasq::start(
        &lab.inet,
        &lab.dir,
        UPSTREAM,
        &[("www.example.test", "198.51.100.80")],
        &["--log-queries"],
    );
    lab.guest.sysctl("net.ipv6.conf.eth0.accept_ra", "2");
    let config = CONFIG
        .replace(
            "dns = [\"198.51.100.53\"]\n",
            // wan.dns6: what RDNSS carried before the resolver; it must not now.
            "dns = [\"198.51.100.53\"]\ngateway6 = \"fe80::1\"\ndns6 = [\"2001:db8:ffff::53\"]\n",
        )
        .replace(
            "address = \"172.16.0.1/16\"\n",
            &format!("address = \"172.16.0.1/16\"\naddress6 = \"{ROUTER6}/64\"\n"),
        )
        + "\n[dhcp]\nrange = \"172.16.10.100-172.16.10.150\"\n\n[[dns.host]]\nname = \"nas\"\naddress = \"172.16.10.5\"\naddress6 = \"2001:db8:2::5\"\n";
    lab.start_routerd(&config);
    lab.wait_log(&format!("[{ROUTER6}]:53"), 1);
    let router_ll = lab
        .router
        .sh("ip -6 -o addr show dev wan scope link | awk '{print $4}' | cut -d/ -f1");
    lab.hoster
        .ip(&["-6", "route", "add", PREFIX, "via", router_ll.trim(), "dev", "vmbr0"]);

    // The router advertises itself (its LAN address6) as the resolver.
    let ra = wait_for("an RA with RDNSS", &lab, || {
        let out = lab.guest.sh("rdisc6 -1 -n -w 2000 eth0 2>&1 || true");
        out.contains("Recursive DNS server").then_some(out)
    });
    // rdisc6 prints "Recursive DNS server     : <address>": the router only, not wan.dns6.
    let rdnss: Vec<&str> = ra.lines().filter(|l| l.contains("Recursive DNS server")).collect();
    assert_eq!(rdnss.len(), 1, "{ra}");
    assert!(rdnss[0].trim_end().ends_with(&format!(": {ROUTER6}")), "{ra}");

    // A guest that leased as `web` over DHCPv4, with its SLAAC address.
    let web = lab.add_lan_guest("web6", WEB_MAC);
    web.sysctl("net.ipv6.conf.eth0.accept_ra", "2");
    let mut client = Client::new(Kind::Udhcpc, &web, &lab.dir).with_hostname("web");
    client.start();
    client.wait_bound();
    wait_for("the web guest's SLAAC address", &lab, || {
        has_address(&web, WEB6).then_some(())
    });

    // Another guest finds its AAAA over IPv6, reaches it there, and its PTR resolves.
    let aaaa = ask6(&lab.guest, &["web.lan", "AAAA"]);
    assert_eq!(
        (aaaa.status.as_str(), aaaa.answers.clone()),
        ("NOERROR", vec![WEB6.to_string()]),
        "{aaaa:?}"
    );
    assert!(aaaa.flags.split(' ').any(|f| f == "aa"), "authoritative: {aaaa:?}");
    wait_for("a ping from the other guest to the AAAA", &lab, || {
        ping6(&lab.guest, WEB6).then_some(())
    });
    assert_eq!(ask6(&lab.guest, &["-x", WEB6]).answers, ["web.lan."]);
    assert_eq!(
        ask6(&lab.guest, &["+tcp", "nas.lan", "AAAA"]).answers,
        ["2001:db8:2::5"]
    );
    assert_eq!(ask6(&lab.guest, &["-x", "2001:db8:2::5"]).answers, ["nas.lan."]);
    assert_eq!(ask6(&lab.guest, &["router.lan", "AAAA"]).answers, [ROUTER6]);
    assert_eq!(ask6(&lab.guest, &["www.example.test"]).answers, ["198.51.100.80"]);

    // Reverse names in the LAN /64, link-local and ULA space: NXDOMAIN here, never
    // upstream; a public one goes upstream (and shows the log is complete).
    for ip in ["2001:db8:2::99", "fe80::99", "fd00::1"] {
        assert_eq!(ask6(&lab.guest, &["-x", ip]).status, "NXDOMAIN", "{ip}");
    }
    let _ = ask6(&lab.guest, &["-x", INET6]);
    assert_eq!(upstream.wait_queries("ip6.arpa", 1), 1, "{}", upstream.log_text());

    // The WAN side gets nothing over IPv6, UDP or TCP, though it routes to the address.
    wait_for("a ping from the internet host to the LAN /64", &lab, || {
        ping6(&lab.inet, WEB6).then_some(())
    });
    for transport in ["+notcp", "+tcp"] {
        let d = dig(&lab.inet, ROUTER6, &["-6", transport, "nas.lan", "AAAA"]);
        assert_eq!(d.status, "NOANSWER", "from the internet {transport}: {d:?}");
    }
    let rules = lab.router.sh("nft list ruleset");
    assert!(rules.contains("DNS over IPv6 from the LAN only"), "{rules}");
}
