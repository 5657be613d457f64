//! routerd's DHCP server against real clients from Debian packages (ISC dhclient and
//! busybox udhcpc) in the namespace lab. Needs root; run through `tests/run`.

use testkit::dhcp_client::{Client, Kind};
use testkit::lab::{Lab, Options, CONFIG};
use testkit::netns::Netns;
use testkit::traffic::{tcp_echo, EchoServer};

fn dhcp_config() -> String {
    CONFIG.to_string()
        + r#"
[dhcp]
range = "172.16.10.100-172.16.10.150"
lease_time = "1h"
domain = "lan"

[[dhcp.host]]
mac = "52:54:00:12:34:56"
address = "172.16.10.210"
hostname = "reserved"
"#
}

fn lab() -> Lab {
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.start_routerd(&dhcp_config());
    lab.wait_log("DHCP server listening", 1);
    lab
}

fn in_range(addr: &str) -> bool {
    addr.strip_prefix("172.16.10.")
        .and_then(|n| n.parse::<u8>().ok())
        .is_some_and(|n| (100..=150).contains(&n))
}

/// The last record the server wrote for `addr` in its lease file.
fn lease_record(lab: &Lab, addr: &str) -> Option<String> {
    let text = std::fs::read_to_string(lab.state_dir().join(config::image::LEASES_FILE_NAME)).unwrap_or_default();
    text.lines()
        .rfind(|l| l.split(' ').nth(1) == Some(addr))
        .map(str::to_string)
}

fn reaches_internet(lab: &Lab, guest: &Netns) {
    let server = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    assert_eq!(
        tcp_echo(guest, "198.51.100.1:7000", "leased").expect("a leased guest reaches the internet"),
        "leased"
    );
    assert_eq!(server.last_peer_ip().as_deref(), Some("203.0.113.10"));
}

#[test]
fn dhclient_gets_a_lease_with_the_options_comes_back_after_reboot_and_releases() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab();
    let guest = lab.add_lan_guest("dhc", "52:54:00:00:00:01");
    let mut client = Client::new(Kind::Dhclient, &guest, &lab.dir);
    client.start();
    let lease = client.wait_bound();
    assert!(in_range(&lease.address), "{lease:?}");
    assert_eq!(lease.netmask, "255.255.0.0");
    assert_eq!(lease.routers, "172.16.0.1");
    assert_eq!(lease.dns, "198.51.100.53", "DNS defaults to wan.dns");
    assert_eq!(lease.domain, "lan");
    assert_eq!(lease.lease_secs, "3600");
    reaches_internet(&lab, &guest);
    let record = lease_record(&lab, &lease.address).expect("the lease is on disk");
    assert!(record.contains(" B "), "{record}");

    // A restarted client remembers its address and asks for it (INIT-REBOOT).
    client.stop();
    client.start();
    let again = client.wait_event("REBOOT", 1);
    assert_eq!(again.address, lease.address);

    client.release();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !lease_record(&lab, &lease.address).is_some_and(|r| r.contains(" R ")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the release was not recorded: {:?}",
            lease_record(&lab, &lease.address)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = lab.log();
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn udhcpc_gets_a_lease_renews_and_releases() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab();
    let guest = lab.add_lan_guest("udh", "52:54:00:00:00:02");
    let mut client = Client::new(Kind::Udhcpc, &guest, &lab.dir);
    client.start();
    let lease = client.wait_bound();
    assert!(in_range(&lease.address), "{lease:?}");
    assert_eq!(
        (lease.netmask.as_str(), lease.routers.as_str(), lease.dns.as_str()),
        ("255.255.0.0", "172.16.0.1", "198.51.100.53")
    );
    reaches_internet(&lab, &guest);

    client.renew();
    let renewed = client.wait_event("renew", 1);
    assert_eq!(renewed.address, lease.address, "renewal keeps the address");

    client.release();
    let mut next = Client::new(Kind::Udhcpc, &guest, &lab.dir.join("second"));
    next.start();
    assert_eq!(
        next.wait_bound().address,
        lease.address,
        "the releasing client gets its address back"
    );
}

#[test]
fn a_reserved_mac_gets_its_fixed_address() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab();
    let guest = lab.add_lan_guest("res", "52:54:00:12:34:56");
    let mut client = Client::new(Kind::Udhcpc, &guest, &lab.dir);
    client.start();
    assert_eq!(client.wait_bound().address, "172.16.10.210");
}

#[test]
fn a_returning_client_keeps_its_address_after_routerd_restarts() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = lab();
    let first = lab.add_lan_guest("one", "52:54:00:00:00:11");
    let second = lab.add_lan_guest("two", "52:54:00:00:00:12");
    let mut a = Client::new(Kind::Dhclient, &first, &lab.dir);
    a.start();
    let a_addr = a.wait_bound().address;
    let mut b = Client::new(Kind::Dhclient, &second, &lab.dir);
    b.start();
    let b_addr = b.wait_bound().address;
    assert_ne!(a_addr, b_addr);
    a.stop();
    b.stop();

    assert!(lab.stop_routerd().success());
    lab.spawn_routerd();
    lab.wait_log("routerd ready", 1);
    assert!(lab.log().contains("restored=2"), "{}", lab.log());

    // The second client comes back as a new VM would, remembering nothing.
    b.forget();
    let mut b2 = Client::new(Kind::Dhclient, &second, &lab.dir.join("again"));
    b2.start();
    assert_eq!(b2.wait_bound().address, b_addr);
}

#[test]
fn an_address_in_use_by_a_host_without_a_lease_is_not_offered() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab();
    // A squatter with a static address, the first one of the range.
    lab.guest.ip(&["addr", "add", "172.16.10.100/16", "dev", "eth0"]);
    let guest = lab.add_lan_guest("prb", "52:54:00:00:00:21");
    let mut client = Client::new(Kind::Udhcpc, &guest, &lab.dir);
    client.start();
    let lease = client.wait_bound();
    assert!(in_range(&lease.address));
    assert_ne!(lease.address, "172.16.10.100");
    assert!(lab.log().contains("a host already uses this address"), "{}", lab.log());
}

#[test]
fn a_client_on_the_wan_side_gets_no_answer() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab();
    let outsider = lab.add_wan_neighbour("wanc");
    let out = outsider
        .command("busybox")
        .args([
            "udhcpc",
            "-n",
            "-q",
            "-f",
            "-i",
            "eth0",
            "-t",
            "3",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ])
        .output()
        .expect("udhcpc");
    assert!(
        !out.status.success(),
        "a WAN client got an answer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Control: the server is up and answers on the LAN.
    let guest = lab.add_lan_guest("ctl", "52:54:00:00:00:31");
    let mut client = Client::new(Kind::Udhcpc, &guest, &lab.dir);
    client.start();
    assert!(in_range(&client.wait_bound().address));
}

#[test]
fn dhclient_renews_its_lease_at_t1() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    // The shortest lease routerd accepts: T1 comes after 30 s.
    lab.start_routerd(&dhcp_config().replace("lease_time = \"1h\"", "lease_time = \"1m\""));
    lab.wait_log("DHCP server listening", 1);
    let guest = lab.add_lan_guest("ren", "52:54:00:00:00:51");
    let mut client = Client::new(Kind::Dhclient, &guest, &lab.dir);
    client.start();
    let lease = client.wait_bound();
    assert_eq!(lease.lease_secs, "60");
    let renewed = client.wait_event("RENEW", 1);
    assert_eq!(
        renewed.address, lease.address,
        "the renewal (a unicast REQUEST) keeps the address"
    );
    reaches_internet(&lab, &guest);
}
