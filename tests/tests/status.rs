//! The status page and Prometheus metrics: served on the LAN address only, counters
//! that move with real traffic and a real DHCP exchange, and the page as a browser
//! renders it. Needs root; run through `tests/run`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use testkit::dhcp_client::{Client, Kind};
use testkit::http::{get, metric};
use testkit::lab::{Lab, Options, CONFIG};
use testkit::netns::Netns;
use testkit::proc::{children, peak_rss_kib, rss_kib};
use testkit::traffic::{tcp_connect, tcp_echo, EchoServer, TIMEOUT};

const STATUS: &str = "172.16.0.1:80";

fn config(status: &str) -> String {
    CONFIG.to_string()
        + "\n[dhcp]\nrange = \"172.16.10.100-172.16.10.150\"\nlease_time = \"1h\"\n\n[[dhcp.host]]\nmac = \"52:54:00:00:00:41\"\naddress = \"172.16.10.211\"\nhostname = \"webhost\"\n"
        + status
}

fn lab(status: &str) -> Lab {
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.start_routerd(&config(status));
    lab.wait_log("status page and metrics listening", 1);
    lab
}

/// Where tests keep files for people to look at (screenshots).
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

#[test]
fn metrics_count_traffic_forwards_and_dhcp() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = lab("");
    let before = get(&lab.guest, "172.16.0.1:80", "/metrics")
        .expect("metrics from the LAN")
        .1;
    assert_eq!(
        metric(
            &before,
            "router_forward_packets_total",
            &[("protocol", "tcp"), ("port", "80")]
        ),
        Some(0.0)
    );
    assert_eq!(metric(&before, "router_config_generation", &[]), Some(1.0));

    // Traffic: a forward from the internet, NAT from a guest, and a DHCP exchange.
    let _web = EchoServer::tcp(&lab.web, "0.0.0.0:8080");
    let _inet = EchoServer::tcp(&lab.inet, "198.51.100.1:7000");
    for _ in 0..3 {
        tcp_echo(&lab.inet, "203.0.113.10:80", "in").expect("forward");
    }
    tcp_echo(&lab.guest, "198.51.100.1:7000", "out").expect("NAT");
    let vm = lab.add_lan_guest("vm", "52:54:00:00:00:41");
    let mut client = Client::new(Kind::Udhcpc, &vm, &lab.dir);
    client.start();
    assert_eq!(client.wait_bound().address, "172.16.10.211");

    let (code, text) = get(&lab.guest, "172.16.0.1:80", "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert_eq!(
        metric(
            &text,
            "router_forward_packets_total",
            &[("protocol", "tcp"), ("port", "80")]
        ),
        Some(3.0),
        "{text}"
    );
    assert!(metric(
        &text,
        "router_forward_bytes_total",
        &[("protocol", "tcp"), ("port", "80")]
    )
    .is_some_and(|b| b > 0.0));
    let wan_rx = metric(&text, "router_interface_rx_bytes_total", &[("role", "wan")]).unwrap_or(0.0);
    let wan_rx_before = metric(&before, "router_interface_rx_bytes_total", &[("role", "wan")]).unwrap_or(0.0);
    assert!(wan_rx > wan_rx_before, "WAN bytes moved: {wan_rx_before} -> {wan_rx}");
    assert!(
        metric(&text, "router_dhcp_acks_total", &[]).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(metric(&text, "router_dhcp_offers_total", &[]).is_some_and(|n| n >= 1.0));
    assert_eq!(metric(&text, "router_dhcp_leases_active", &[]), Some(1.0));
    assert_eq!(metric(&text, "router_dhcp_pool_size", &[]), Some(51.0));
    assert_eq!(
        metric(&text, "router_gateway_reachable", &[("gateway", "203.0.113.254")]),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(&text, "router_conntrack_entries", &[]).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(metric(&text, "process_resident_memory_bytes", &[]).is_some_and(|n| n > 1e6));
    assert_eq!(metric(&text, "router_config_last_reload_success", &[]), Some(1.0));

    // A broken reload shows on the page and in the metrics.
    lab.reload(&config("").replace("lease_time = \"1h\"", "lease_time = \"soon\""));
    lab.wait_log("config rejected", 1);
    let text = get(&lab.guest, "172.16.0.1:80", "/metrics").expect("metrics").1;
    assert_eq!(metric(&text, "router_config_last_reload_success", &[]), Some(0.0));
    let page = get(&lab.guest, "172.16.0.1:80", "/").expect("page").1;
    assert!(page.contains("dhcp.lease_time: expected a duration"), "{page}");
    assert!(
        page.contains("<td>172.16.10.211</td><td>webhost</td>"),
        "the lease with its host name: {page}"
    );
    assert!(
        page.contains("203.0.113.10/32") && page.contains("02:00:00:00:00:10"),
        "WAN address and MAC"
    );
}

#[test]
fn the_status_page_is_never_reachable_from_the_wan() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab("\n[status]\nport = 8081\n");
    assert_eq!(get(&lab.guest, "172.16.0.1:8081", "/").expect("from the LAN").0, 200);
    // From the internet host, through the public address and straight at the LAN address.
    lab.hoster.ip(&[
        "route",
        "add",
        "172.16.0.0/16",
        "via",
        "203.0.113.10",
        "dev",
        "vmbr0",
        "onlink",
    ]);
    assert!(
        tcp_connect(&lab.inet, "203.0.113.10:8081").is_err(),
        "status page reached on the public address"
    );
    assert!(
        tcp_connect(&lab.inet, "172.16.0.1:8081").is_err(),
        "status page reached from the internet"
    );
    // And from a host on the hoster's segment, next to the router.
    let neighbour = lab.add_wan_neighbour("nb");
    neighbour.ip(&["addr", "add", "203.0.113.77/24", "dev", "eth0"]);
    neighbour.ip(&[
        "route",
        "add",
        "172.16.0.0/16",
        "via",
        "203.0.113.10",
        "dev",
        "eth0",
        "onlink",
    ]);
    assert!(
        tcp_connect(&neighbour, "172.16.0.1:8081").is_err(),
        "status page reached from the WAN segment"
    );
    let input = lab.router.sh("nft list chain inet routerd input");
    assert!(input.contains("policy drop"), "{input}");
}

#[test]
fn the_status_page_renders_in_a_real_browser() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab("");
    let vm = lab.add_lan_guest("vm", "52:54:00:00:00:41");
    let mut client = Client::new(Kind::Udhcpc, &vm, &lab.dir);
    client.start();
    client.wait_bound();

    let shot = artifacts().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let profile = lab.dir.join("chromium-profile");
    let chromium = |extra: &[&str]| {
        let mut cmd = lab.guest.command("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,900",
        ]);
        cmd.arg(format!("--user-data-dir={}", profile.display()));
        cmd.args(extra).arg("http://172.16.0.1/");
        cmd
    };
    let dom = chromium(&["--dump-dom"])
        .output()
        .expect("run chromium (Debian package chromium)");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("webhost") && dom.contains("172.16.10.211"),
        "the browser sees the lease: {dom}"
    );
    assert!(dom.contains("reachable"), "gateway state shown");
    let out = chromium(&[&format!("--screenshot={}", shot.display())])
        .output()
        .expect("chromium screenshot");
    let png =
        std::fs::read(&shot).unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real picture of the page ({} bytes)",
        png.len()
    );
}

/// Scrapes `/metrics` from `ns`, from the address `source`, over and over until `until`;
/// how many scrapes got a 200.
fn scrape_until(ns: &Netns, source: &str, until: Instant) -> JoinHandle<u32> {
    let source: SocketAddr = format!("{source}:0").parse().unwrap_or_else(|e| panic!("{e}"));
    ns.spawn(move || {
        let addr: SocketAddr = STATUS.parse().unwrap_or_else(|e| panic!("{e}"));
        let connect = || -> std::io::Result<TcpStream> {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            socket.bind(&source.into())?;
            socket.connect_timeout(&addr.into(), TIMEOUT)?;
            Ok(socket.into())
        };
        let mut served = 0;
        while Instant::now() < until {
            let Ok(mut stream) = connect() else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            let _ = stream.set_read_timeout(Some(TIMEOUT));
            let mut response = Vec::new();
            if stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: router\r\n\r\n")
                .is_ok()
            {
                let _ = stream.read_to_end(&mut response);
            }
            if response.starts_with(b"HTTP/1.1 200") {
                served += 1;
            }
        }
        served
    })
}

#[test]
fn many_scrapers_of_many_forwards_cost_no_more_than_one() {
    if !testkit::require_root() {
        return;
    }
    let forwards: String = (0..1000)
        .map(|i| {
            format!(
                "\n[[forward]]\nprotocol = \"tcp\"\nport = {}\nto = \"172.16.10.205\"\n",
                10000 + i
            )
        })
        .collect();
    let lab = lab(&forwards);
    let pid = lab.routerd_pid().expect("routerd runs");
    let first = get(&lab.guest, STATUS, "/metrics").expect("metrics").1;
    assert_eq!(
        metric(&first, "router_forward_packets_total", &[("port", "10999")]),
        Some(0.0),
        "every forward has its counter"
    );
    let idle_kib = rss_kib(pid);
    // Only the peak from here on counts (5: reset VmHWM to the current RSS).
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");

    // 16 scrapers from four addresses: within the per-client limit, all of them at once.
    let sources = ["172.16.10.50", "172.16.10.51", "172.16.10.52", "172.16.10.53"];
    for extra in &sources[1..] {
        lab.guest.ip(&["addr", "add", &format!("{extra}/16"), "dev", "eth0"]);
    }
    let until = Instant::now() + Duration::from_secs(10);
    let scrapers: Vec<JoinHandle<u32>> = (0..16)
        .map(|i| scrape_until(&lab.guest, sources[i % 4], until))
        .collect();
    let mut most_nft = 0;
    let mut samples = 0;
    while Instant::now() < until {
        most_nft = most_nft.max(children(pid).iter().filter(|c| *c == "nft").count());
        samples += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let served: u32 = scrapers.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let peak_kib = peak_rss_kib(pid);
    eprintln!(
        "16 scrapers: {served} scrapes served; routerd idle {idle_kib} KiB, peak {peak_kib} KiB; \
         at most {most_nft} nft children in {samples} samples"
    );
    assert!(served > 0, "no scrape was served");
    assert!(
        peak_kib <= 2 * idle_kib + 16 * 1024,
        "routerd grew from {idle_kib} KiB to a peak of {peak_kib} KiB under 16 scrapers"
    );
    assert!(most_nft <= 1, "{most_nft} nft processes at once");
}

/// A connection to the status page from `ns` that sends half a request head and stalls.
fn stalled(ns: &Netns) -> TcpStream {
    let mut stream = tcp_connect(ns, STATUS).expect("connect to the status page");
    // The server may have closed it already; what it does is asserted by the caller.
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: rou");
    stream
}

/// Whether the server closed `stream` (end of stream or reset), waiting up to 30 s.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    match stream.read(&mut [0u8; 64]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// Whether `stream` is still open with nothing to read (the server holds it).
fn held_open(stream: &TcpStream) -> bool {
    let _ = stream.set_nonblocking(true);
    let mut byte = [0u8; 1];
    matches!((&*stream).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[test]
fn slow_clients_cannot_lock_others_out_of_the_status_page() {
    if !testkit::require_root() {
        return;
    }
    let lab = lab("");
    // Slowloris from one guest: 16 connections that never finish their request.
    let mut from_guest: Vec<TcpStream> = (0..16).map(|_| stalled(&lab.guest)).collect();
    let mut seventeenth = stalled(&lab.guest);
    assert!(
        closed_by_server(&mut seventeenth),
        "the guest's 17th connection is closed"
    );
    let still_held = from_guest.iter().filter(|s| held_open(s)).count();
    assert!(
        still_held >= 1,
        "the 17th was closed for being one too many, not by a timeout"
    );
    // Three more hosts fill the remaining slots with stalled connections too.
    let slow_hosts: Vec<Netns> = (1..=3u8)
        .map(|i| {
            let ns = lab.add_lan_guest(&format!("slow{i}"), &format!("52:54:00:00:01:0{i}"));
            ns.ip(&["addr", "add", &format!("172.16.10.{}/16", 60 + i), "dev", "eth0"]);
            ns
        })
        .collect();
    let mut from_others: Vec<TcpStream> = slow_hosts
        .iter()
        .flat_map(|ns| (0..4).map(|_| stalled(ns)).collect::<Vec<_>>())
        .collect();

    // Another LAN host still gets every scrape.
    let served = (0..25)
        .filter(|_| get(&lab.web, STATUS, "/metrics").is_ok_and(|(code, _)| code == 200))
        .count();
    assert_eq!(served, 25, "scrapes answered while slow clients hold connections");

    // And the slow ones do not hold on forever: the request head has a deadline.
    for stream in from_guest.iter_mut().chain(from_others.iter_mut()) {
        assert!(closed_by_server(stream), "a stalled connection is closed in the end");
    }
}
