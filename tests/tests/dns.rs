//! The LAN resolver with the real routerd, real DHCP clients (udhcpc), glibc's
//! resolver (`getent`), `dig`, and dnsmasq as the upstream in the internet namespace.
//! Needs root; run through `tests/run`.

use std::time::{Duration, Instant};

use testkit::dhcp_client::{Client, Kind};
use testkit::dns::{blast, dig, Dig, Dnsmasq, ResolvConf};
use testkit::http::{get, metric};
use testkit::lab::{Lab, Options, CONFIG, ROUTER_LAN_IP};
use testkit::netns::Netns;

/// wan.dns: the upstream, served by dnsmasq in the internet namespace.
const UPSTREAM: &str = "198.51.100.53";

fn config() -> String {
    CONFIG.to_string()
        + r#"
[dhcp]
range = "172.16.10.100-172.16.10.150"
lease_time = "1m"

[[dhcp.host]]
mac = "52:54:00:12:34:56"
address = "172.16.10.210"
hostname = "printer"

[[dns.host]]
name = "nas"
address = "172.16.10.5"
"#
}

fn lab() -> Lab {
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.inet.ip(&["addr", "add", &format!("{UPSTREAM}/24"), "dev", "eth0"]);
    lab.start_routerd(&config());
    lab.wait_log("DNS resolver listening", 1);
    lab
}

fn ask(ns: &Netns, args: &[&str]) -> Dig {
    dig(ns, ROUTER_LAN_IP, args)
}

/// `getent hosts KEY` in `ns` (glibc, through the namespace's resolv.conf).
fn getent(ns: &Netns, key: &str) -> String {
    let out = ns
        .command("getent")
        .args(["hosts", key])
        .output()
        .unwrap_or_else(|e| panic!("getent: {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Asks until `done` holds for the answer (bounded): what a lease change does to the
/// names reaches the resolver after the server has handled the client's message.
fn ask_until(ns: &Netns, args: &[&str], done: impl Fn(&Dig) -> bool) -> Dig {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = ask(ns, args);
        if done(&d) || Instant::now() > deadline {
            return d;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn guests_find_each_other_by_name_and_a_name_goes_with_its_lease() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab();
    let _resolv = ResolvConf::new(&lab.guest, &format!("nameserver {ROUTER_LAN_IP}\nsearch lan\n"));
    let web = lab.add_lan_guest("webdhcp", "52:54:00:00:00:31");
    let mut client = Client::new(Kind::Udhcpc, &web, &lab.dir).with_hostname("web");
    client.start();
    let lease = client.wait_bound();
    assert_eq!(lease.dns, ROUTER_LAN_IP, "DHCP hands out the router as DNS: {lease:?}");
    let addr = lease.address.clone();

    // Another guest finds it, through glibc and with dig.
    let hosts = getent(&lab.guest, "web.lan");
    assert!(
        hosts.starts_with(&format!("{addr} ")),
        "getent hosts web.lan: {hosts:?}"
    );
    let short = getent(&lab.guest, "web");
    assert!(short.starts_with(&format!("{addr} ")), "the search domain: {short:?}");
    let a = ask(&lab.guest, &["web.lan", "A"]);
    assert_eq!(
        (a.status.as_str(), a.answers.clone()),
        ("NOERROR", vec![addr.clone()]),
        "{a:?}"
    );
    assert!(a.flags.split(' ').any(|f| f == "aa"), "authoritative: {a:?}");
    let aaaa = ask(&lab.guest, &["web.lan", "AAAA"]);
    assert_eq!((aaaa.status.as_str(), aaaa.answers.len()), ("NOERROR", 0), "{aaaa:?}");

    // Its address resolves back to its name.
    let ptr = ask(&lab.guest, &["-x", &addr]);
    assert_eq!(ptr.answers, ["web.lan."], "{ptr:?}");
    let back = getent(&lab.guest, &addr);
    assert!(back.ends_with("web.lan"), "getent hosts {addr}: {back:?}");

    // Names from the config: [[dns.host]], and a reservation whose guest is offline.
    assert_eq!(ask(&lab.guest, &["nas.lan"]).answers, ["172.16.10.5"]);
    assert_eq!(ask(&lab.guest, &["-x", "172.16.10.5"]).answers, ["nas.lan."]);
    assert_eq!(ask(&lab.guest, &["printer.lan"]).answers, ["172.16.10.210"]);
    assert_eq!(ask(&lab.guest, &["router.lan"]).answers, [ROUTER_LAN_IP]);
    assert_eq!(ask(&lab.guest, &["nobody.lan"]).status, "NXDOMAIN");

    // TCP too.
    let tcp = ask(&lab.guest, &["+tcp", "web.lan"]);
    assert_eq!(tcp.answers, std::slice::from_ref(&addr), "{tcp:?}");

    // Released: the name goes, and so does the reverse name. (The ping makes sure the
    // guest knows the router's MAC before udhcpc sends the RELEASE.)
    web.sh("ping -c 1 -W 2 172.16.0.1 >/dev/null");
    client.release();
    let mut gone = ask_until(&lab.guest, &["web.lan"], |d| d.status != "NOERROR");
    let (_, metrics) = get(&lab.guest, "172.16.0.1:80", "/metrics").expect("metrics");
    let releases = metric(&metrics, "router_dhcp_releases_total", &[("lan", "lan")]);
    if gone.status == "NOERROR" && releases == Some(0.0) {
        // udhcpc's RELEASE sometimes never reaches the server on a loaded machine (it
        // flushes its address right after sending it): then the lease ends by expiry
        // (lease_time 1m), and the name must go then.
        eprintln!("the RELEASE did not reach the server: waiting for the lease to expire");
        let deadline = Instant::now() + Duration::from_secs(90);
        while gone.status == "NOERROR" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            gone = ask(&lab.guest, &["web.lan"]);
        }
    }
    assert_eq!(gone.status, "NXDOMAIN", "{gone:?}, DHCP releases seen: {releases:?}");
    assert_eq!(ask(&lab.guest, &["-x", &addr]).status, "NXDOMAIN");
    assert_eq!(getent(&lab.guest, "web.lan"), "");

    let (code, body) = get(&lab.guest, "172.16.0.1:80", "/metrics").expect("metrics");
    assert_eq!(code, 200);
    let local = metric(&body, "router_dns_local_answers_total", &[("lan", "lan")]).unwrap_or(0.0);
    assert!(local >= 10.0, "local answers: {local}\n{body}");
}

#[test]
fn other_names_go_upstream_are_cached_and_private_reverse_names_stay_home() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab();
    let mut upstream = Dnsmasq::start(
        &lab.inet,
        &lab.dir,
        UPSTREAM,
        &[
            ("www.example.test", "198.51.100.80"),
            ("mail.example.test", "198.51.100.81"),
        ],
        &["--log-queries"],
    );

    // (dnsmasq was asked once already, when it was checked to be up.)
    let before = upstream.wait_queries("www.example.test", 1);
    let www = ask(&lab.guest, &["www.example.test"]);
    assert_eq!(
        (www.status.as_str(), www.answers.clone()),
        ("NOERROR", vec!["198.51.100.80".to_string()]),
        "{www:?}"
    );
    assert!(!www.flags.split(' ').any(|f| f == "aa"), "not ours: {www:?}");
    assert_eq!(
        upstream.wait_queries("www.example.test", before + 1),
        before + 1,
        "{}",
        upstream.log_text()
    );
    assert_eq!(ask(&lab.guest, &["www.example.test"]).answers, ["198.51.100.80"]);

    // Reverse names of private ranges are answered here and never asked upstream;
    // public ones are.
    for ip in ["10.1.2.3", "192.168.7.7", "172.16.10.99", "172.20.0.1"] {
        assert_eq!(ask(&lab.guest, &["-x", ip]).status, "NXDOMAIN", "{ip}");
    }
    let _ = ask(&lab.guest, &["-x", "198.51.100.80"]);
    // The log is in order: once the last question is in it, so is everything before.
    assert_eq!(upstream.wait_queries("100.51.198.in-addr.arpa", 1), 1);
    assert_eq!(
        upstream.queries("in-addr.arpa"),
        1,
        "only the public reverse name went upstream"
    );
    assert_eq!(
        upstream.queries("www.example.test"),
        before + 1,
        "the second answer came from the cache"
    );

    // The upstream stops: what is cached is still answered, the rest fails quickly.
    upstream.stop();
    assert_eq!(ask(&lab.guest, &["www.example.test"]).answers, ["198.51.100.80"]);
    let failed = ask(&lab.guest, &["mail.example.test"]);
    assert_eq!(failed.status, "SERVFAIL", "{failed:?}");

    let (_, body) = get(&lab.guest, "172.16.0.1:80", "/metrics").expect("metrics");
    let value = |name: &str| metric(&body, name, &[("lan", "lan")]).unwrap_or(-1.0);
    assert!(value("router_dns_cache_hits_total") >= 2.0, "{body}");
    assert!(value("router_dns_upstream_queries_total") >= 3.0, "{body}");
    assert!(value("router_dns_upstream_failures_total") >= 1.0, "{body}");
    assert!(value("router_dns_upstream_seconds_total") > 0.0, "{body}");
}

#[test]
fn nothing_on_the_wan_side_gets_an_answer() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab();
    // The LAN side answers (the check below is not a dead resolver)...
    assert_eq!(ask(&lab.guest, &["nas.lan"]).answers, ["172.16.10.5"]);
    // ... the WAN side gets nothing: not on the public address, not on the LAN address
    // routed through the WAN (as a neighbour on the hoster's segment could), from the
    // internet or from the hoster's segment, over UDP or TCP.
    lab.hoster
        .ip(&["route", "add", "172.16.0.0/16", "via", "203.0.113.10", "dev", "vmbr0"]);
    for (ns, server) in [
        (&lab.inet, "203.0.113.10"),
        (&lab.hoster, "203.0.113.10"),
        (&lab.hoster, ROUTER_LAN_IP),
    ] {
        for transport in ["+notcp", "+tcp"] {
            let d = dig(ns, server, &[transport, "nas.lan"]);
            assert_eq!(d.status, "NOANSWER", "{} asking {server} {transport}: {d:?}", ns.name);
        }
    }
    let wan_rules = lab.router.sh("nft list ruleset");
    assert!(wan_rules.contains("DNS from the LAN only"), "{wan_rules}");
}

#[test]
fn a_query_flood_from_one_guest_is_cut_and_the_others_are_served() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.start_routerd(&(config() + "\n[dns]\nrate_limit = 20\n"));
    lab.wait_log("DNS resolver listening", 1);
    // 200 queries at once from one guest: the bucket holds 40.
    let answered = blast(&lab.guest, ROUTER_LAN_IP, "nas.lan.", 200);
    assert!((20..100).contains(&answered), "answered {answered} of 200");
    // Another guest is served all the while.
    assert_eq!(dig(&lab.web, ROUTER_LAN_IP, &["nas.lan"]).answers, ["172.16.10.5"]);
    let (_, body) = get(&lab.web, "172.16.0.1:80", "/metrics").expect("metrics");
    let dropped = metric(&body, "router_dns_rate_limited_total", &[("lan", "lan")]).unwrap_or(0.0);
    assert!(dropped >= 1.0, "{body}");
}
