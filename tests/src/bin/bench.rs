//! Benchmarks for routerd in the namespace lab, each against a baseline measured in the
//! same run (this machine is shared and noisy: ratios, medians). Run via `tests/bench`.
//!
//! 1. NAT throughput: iperf3 from a LAN guest to the internet host through the
//!    routerd-configured router, against plain forwarding (no NAT, no firewall).
//! 2. Apply time with 1, 100 and 1,000 forwards (`routerd apply`: process start to
//!    rules in place), against `nft -j -f` loading the same ruleset by itself.
//! 3. routerd's resident memory as a daemon with 1 and 1,000 forwards.
//! 4. `pubip`: apply time with 16 public addresses, 16 1:1 mappings and 1,000
//!    forwards against `nft -j -f` of the same ruleset, and iperf3 from a 1:1 host
//!    against plain forwarding, in the same run.
//! 5. `history`: routerd's resident memory with a full day of graph history (every
//!    ring full, as many series as it keeps) against none, 1,000 forwards both times.
//! 6. `dns`: queries/s of the LAN resolver (dnsperf from a guest) for cached and local
//!    names, against dnsmasq serving the same names on the same LAN in the same run,
//!    and routerd's resident memory with 10,000 cached names.
//! 7. `byname`: forwards by host name: one relayed TLS-ish stream's throughput (raw
//!    bytes, no encryption: the relay's worst case), one real TLS stream's (rustls,
//!    AES-GCM), the raw stream again with the internet host's link shaped to a 1 Gbit/s
//!    uplink, new connections per second and memory per idle relayed connection,
//!    through routerd's proxy against HAProxy (TCP mode, SNI routing, in the router
//!    namespace) and against a plain DNAT forward, in the same lab and run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use config::Config;
use routerd::firewall::{self, Features, Interfaces};
use routerd::status::history::{self, History, Kind, Sample, SeriesKey};
use testkit::lab::{routerd_bin, Lab, Options, CONFIG, VIRTUAL_MAC};
use testkit::netns::run;
use testkit::proc::rss_kib;

const ROUNDS: usize = 3;
const ROUTER_LAN: &str = testkit::lab::ROUTER_LAN_IP;
const IPERF_SECONDS: &str = "4";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Gbit/s received by the internet host from a guest, over one iperf3 run.
fn iperf(lab: &Lab) -> f64 {
    let mut server = lab
        .inet
        .command("iperf3")
        .args(["-s", "-1", "-B", "198.51.100.1"])
        .stdout(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(300));
    let out = run(lab
        .guest
        .command("iperf3")
        .args(["-c", "198.51.100.1", "-t", IPERF_SECONDS, "-J"]));
    let _ = server.wait();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 json");
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("bits_per_second")
        / 1e9
}

/// The baseline router: same lab, addresses and routes by hand, forwarding only.
fn plain_forwarding_lab() -> Lab {
    let lab = Lab::new(Options {
        wan_mac: Some(VIRTUAL_MAC),
    });
    let r = &lab.router;
    r.ip(&["addr", "add", "203.0.113.10/32", "dev", "wan"]);
    r.ip(&["addr", "add", "172.16.0.1/16", "dev", "lan"]);
    r.ip(&["route", "add", "203.0.113.254/32", "dev", "wan", "scope", "link"]);
    r.ip(&[
        "route",
        "add",
        "default",
        "via",
        "203.0.113.254",
        "dev",
        "wan",
        "onlink",
    ]);
    r.sysctl("net.ipv4.ip_forward", "1");
    // Without NAT the internet side needs a route back to the LAN.
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
    lab
}

fn nat_throughput() {
    let mut plain = Vec::new();
    let mut nat = Vec::new();
    for _ in 0..ROUNDS {
        plain.push(iperf(&plain_forwarding_lab()));
        let mut lab = Lab::new(Options { wan_mac: None });
        lab.start_routerd(CONFIG);
        nat.push(iperf(&lab));
    }
    let (p, n) = (median(plain.clone()), median(nat.clone()));
    println!("## NAT throughput (iperf3 guest -> internet host, {IPERF_SECONDS} s, median of {ROUNDS})\n");
    println!("| path | Gbit/s | ratio |\n|---|---|---|");
    println!("| plain forwarding, no NAT, no firewall (baseline) | {p:.2} | 1.00 |");
    println!(
        "| routerd: SNAT + forwards + default-deny firewall | {n:.2} | {:.2} |\n",
        n / p
    );
    eprintln!("samples plain={plain:?} nat={nat:?}");
}

fn config_with_forwards(n: u16) -> String {
    let mut c = CONFIG.split("[[forward]]").next().unwrap_or(CONFIG).to_string();
    for i in 0..n {
        let proto = ["tcp", "udp", "both"][usize::from(i % 3)];
        c += &format!(
            "[[forward]]\nprotocol = \"{proto}\"\nport = {}\nto = \"172.16.10.{}\"\nto_port = {}\n\n",
            10000 + i,
            2 + i % 250,
            20000 + i
        );
    }
    c
}

fn time_it(cmd: &mut Command) -> f64 {
    let start = Instant::now();
    run(cmd);
    start.elapsed().as_secs_f64() * 1000.0
}

/// Medians of 5 (ms): `routerd apply` of `text` from process start to rules in place,
/// and `nft -j -f` loading the same ruleset alone.
fn apply_times(lab: &Lab, text: &str) -> (f64, f64) {
    lab.write_config(text);
    let config = Config::parse(text, "bench").expect("bench config is valid");
    let json = serde_json::to_string(&firewall::ruleset(
        &config,
        &Interfaces::placeholders(&config, "wan", "lan"),
        Features { flowtable: false },
    ))
    .expect("json");
    let json_path = lab.dir.join("ruleset.json");
    std::fs::write(&json_path, json).expect("write ruleset");
    let mut routerd = Vec::new();
    let mut nft = Vec::new();
    for _ in 0..5 {
        routerd.push(time_it(
            lab.router
                .command(routerd_bin().to_str().unwrap_or("routerd"))
                .args(["apply", "--config"])
                .arg(lab.config_path())
                .stderr(Stdio::null()),
        ));
        nft.push(time_it(lab.router.command("nft").args(["-j", "-f"]).arg(&json_path)));
    }
    (median(routerd), median(nft))
}

fn apply_time() {
    println!("## Time to apply a config (ms, median of 5; baseline: `nft -j -f` of the same ruleset alone)\n");
    println!("| forwards | routerd apply | nft alone | ratio |\n|---|---|---|---|");
    let lab = Lab::new(Options { wan_mac: None });
    for n in [1u16, 100, 1000] {
        let (r, b) = apply_times(&lab, &config_with_forwards(n));
        println!("| {n} | {r:.1} | {b:.1} | {:.2} |", r / b);
    }
    println!();
}

fn memory() {
    println!("## routerd resident memory as a daemon (VmRSS after ready)\n");
    println!("| forwards | RSS KiB | ratio to 1 forward |\n|---|---|---|");
    let mut base = 0.0;
    for n in [1u16, 1000] {
        let mut lab = Lab::new(Options { wan_mac: None });
        lab.start_routerd(&config_with_forwards(n));
        let rss = rss_kib(lab.routerd_pid().expect("routerd runs"));
        if n == 1 {
            base = rss as f64;
        }
        println!("| {n} | {rss} | {:.2} |", rss as f64 / base);
    }
    println!();
}

/// A day of history as full as routerd keeps it: a point every 10 s up to now, on
/// more series than the rings take.
fn full_history() -> History {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let key = |kind, label: String| SeriesKey { kind, label };
    let mut h = History::default();
    let steps = 86_400 / history::FINE_STEP + 1;
    for i in 0..steps {
        let n = i * 1_000_003;
        let mut values = vec![
            (key(Kind::RxBytes, "wan".into()), n),
            (key(Kind::TxBytes, "wan".into()), n),
            (key(Kind::RxBytes, "lan".into()), n),
            (key(Kind::TxBytes, "lan".into()), n),
            (key(Kind::Conntrack, String::new()), i % 5000),
            (key(Kind::DhcpLeased, "lan".into()), i % 50),
        ];
        for port in 0..100u64 {
            let label = format!("203.0.113.10 tcp {} 172.16.10.205:{}", 10000 + port, 10000 + port);
            values.push((key(Kind::ForwardPackets, label.clone()), n / 1000));
            values.push((key(Kind::ForwardBytes, label), n));
        }
        h.record(&Sample {
            at: now - (steps - i) * history::FINE_STEP,
            values,
            gateway: Some((now, i % 700 != 0)),
        });
    }
    h
}

fn history_memory() {
    println!("## routerd resident memory with a day of graph history (VmRSS 15 s after ready, 1,000 forwards)\n");
    println!("| history | RSS KiB | difference KiB |\n|---|---|---|");
    let mut base = 0;
    for full in [false, true] {
        let mut lab = Lab::new(Options { wan_mac: None });
        if full {
            std::fs::create_dir_all(lab.state_dir()).unwrap_or_else(|e| panic!("state dir: {e}"));
            full_history()
                .save(&lab.state_dir().join(history::FILE_NAME))
                .unwrap_or_else(|e| panic!("history file: {e}"));
        }
        lab.start_routerd(&config_with_forwards(1000));
        std::thread::sleep(Duration::from_secs(15));
        let rss = rss_kib(lab.routerd_pid().expect("routerd runs"));
        if !full {
            base = rss;
        }
        let name = if full {
            "a full day (every ring full)"
        } else {
            "none (baseline)"
        };
        println!("| {name} | {rss} | {} |", rss as i64 - base as i64);
    }
    println!();
}

/// 16 public addresses on the WAN NIC, a 1:1 mapping on each (tcp/22 open), and
/// `forwards` forwards spread over them.
fn config_with_public_ips(forwards: u16) -> String {
    let mut c = CONFIG.split("[[forward]]").next().unwrap_or(CONFIG).to_string();
    let more: Vec<String> = (11..=25).map(|i| format!("\"203.0.113.{i}/32\"")).collect();
    c = c.replace("dns = [", &format!("more_addresses = [{}]\ndns = [", more.join(", ")));
    for i in 0..16u16 {
        let public = if i == 0 { 10 } else { 10 + i };
        c += &format!(
            "[[one_to_one]]\npublic = \"203.0.113.{public}\"\nprivate = \"172.16.20.{}\"\nopen = [\"tcp/22\"]\n\n",
            i + 1
        );
    }
    for i in 0..forwards {
        let public = 10 + i % 16;
        c += &format!(
            "[[forward]]\npublic = \"203.0.113.{public}\"\nport = {}\nto = \"172.16.10.{}\"\n\n",
            10000 + i,
            2 + i % 250
        );
    }
    c
}

fn public_ips() {
    println!("## Several public IPs: 16 addresses, 16 1:1 mappings, 1,000 forwards\n");
    let lab = Lab::new(Options { wan_mac: None });
    let (r, b) = apply_times(&lab, &config_with_public_ips(1000));
    println!("| apply (ms, median of 5) | routerd apply | nft alone | ratio |\n|---|---|---|---|");
    println!(
        "| 16 addresses, 16 1:1, 1,000 forwards | {r:.1} | {b:.1} | {:.2} |\n",
        r / b
    );
    drop(lab);

    // The guest is the 1:1 host of 203.0.113.11 here.
    let one_to_one = CONFIG.replace("dns = [", "more_addresses = [\"203.0.113.11/32\"]\ndns = [")
        + "\n[[one_to_one]]\npublic = \"203.0.113.11\"\nprivate = \"172.16.10.50\"\nopen = [\"tcp/22\"]\n";
    let mut plain = Vec::new();
    let mut nat = Vec::new();
    for _ in 0..ROUNDS {
        plain.push(iperf(&plain_forwarding_lab()));
        let mut lab = Lab::new(Options { wan_mac: None });
        lab.route_failover_ip("203.0.113.11");
        lab.start_routerd(&one_to_one);
        nat.push(iperf(&lab));
    }
    let (p, n) = (median(plain.clone()), median(nat.clone()));
    println!("| iperf3 guest -> internet, {IPERF_SECONDS} s, median of {ROUNDS} | Gbit/s | ratio |\n|---|---|---|");
    println!("| plain forwarding, no NAT, no firewall (baseline) | {p:.2} | 1.00 |");
    println!(
        "| routerd: the guest 1:1 behind 203.0.113.11 | {n:.2} | {:.2} |\n",
        n / p
    );
    eprintln!("samples plain={plain:?} one_to_one={nat:?}");
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let want = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if want("nat") {
        nat_throughput();
    }
    if want("apply") {
        apply_time();
    }
    if want("memory") {
        memory();
    }
    if want("pubip") {
        public_ips();
    }
    if want("history") {
        history_memory();
    }
    if want("dns") {
        dns();
    }
    if want("byname") {
        by_name::run();
    }
}

/// Queries/s dnsperf reached from `ns` against `server` with the names of `file`
/// (`-l` seconds, 100 outstanding queries).
fn dnsperf(ns: &testkit::netns::Netns, server: &str, file: &std::path::Path, seconds: &str) -> f64 {
    let out = run(ns
        .command("dnsperf")
        .args(["-s", server, "-l", seconds, "-q", "100", "-d"])
        .arg(file));
    let text = String::from_utf8_lossy(&out.stdout);
    let lost = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries lost:"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let qps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries per second:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no qps in dnsperf's output:\n{text}"));
    eprintln!("dnsperf {server} {}: {qps} q/s, lost {lost}", file.display());
    qps
}

fn dns() {
    use testkit::dns::{dig, Dnsmasq};
    const NAMES: usize = 1000;
    const CACHED: usize = 10_000;
    let mut lab = Lab::new(Options { wan_mac: None });
    // The upstream: any name under example.test, TTL 300 s.
    lab.inet.ip(&["addr", "add", "198.51.100.53/24", "dev", "eth0"]);
    let _upstream = Dnsmasq::start(
        &lab.inet,
        &lab.dir,
        "198.51.100.53",
        &[("ready.example.test", "198.51.100.80")],
        &["--address=/example.test/198.51.100.80", "--cache-size=0"],
    );
    let mut config = CONFIG.to_string() + "\n[dns]\nrate_limit = 0\ncache_entries = 20000\n";
    let mut records = Vec::new();
    for i in 0..NAMES {
        let ip = format!("172.16.{}.{}", 20 + i / 250, 1 + i % 250);
        config += &format!("\n[[dns.host]]\nname = \"host{i}\"\naddress = \"{ip}\"\n");
        records.push((format!("host{i}.lan"), ip));
    }
    lab.start_routerd(&config);
    lab.wait_log("DNS resolver listening", 1);
    let pid = lab.routerd_pid().expect("routerd runs");
    let rss_start = rss_kib(pid);
    // The reference: dnsmasq on the `web` guest, with the same local names and the
    // same upstream (through routerd's NAT), caching like routerd.
    let host_records: Vec<(&str, &str)> = records.iter().map(|(n, ip)| (n.as_str(), ip.as_str())).collect();
    let mut reference = Dnsmasq::start(
        &lab.web,
        &lab.dir,
        testkit::lab::WEB_IP,
        &host_records,
        &["--server=198.51.100.53", "--cache-size=20000"],
    );
    let write = |name: &str, lines: Vec<String>| {
        let path = lab.dir.join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap_or_else(|e| panic!("{e}"));
        path
    };
    let local = write("local.txt", (0..NAMES).map(|i| format!("host{i}.lan A")).collect());
    let cached = write(
        "cached.txt",
        (0..NAMES).map(|i| format!("c{i}.example.test A")).collect(),
    );
    let fill = write(
        "fill.txt",
        (0..CACHED).map(|i| format!("m{i}.example.test A")).collect(),
    );
    // Warm both caches with the names asked below.
    for server in [ROUTER_LAN, testkit::lab::WEB_IP] {
        run(lab
            .guest
            .command("dnsperf")
            .args(["-s", server, "-n", "1", "-q", "20", "-d"])
            .arg(&cached));
    }
    assert_eq!(
        dig(&lab.guest, ROUTER_LAN, &["c1.example.test"]).answers,
        ["198.51.100.80"]
    );
    assert_eq!(dig(&lab.guest, ROUTER_LAN, &["host7.lan"]).answers, ["172.16.20.8"]);
    assert_eq!(
        dig(&lab.guest, testkit::lab::WEB_IP, &["host7.lan"]).answers,
        ["172.16.20.8"]
    );

    // More rounds than the other benches: 2 s runs on a shared machine swing widely.
    const DNS_ROUNDS: usize = 5;
    println!("## LAN resolver: queries/s with dnsperf from a LAN guest, median of {DNS_ROUNDS} runs of 2 s\n");
    println!("| names | routerd q/s | dnsmasq q/s | ratio |\n|---|---|---|---|");
    for (what, file) in [
        ("1,000 cached (upstream answers)", &cached),
        ("1,000 local ([[dns.host]])", &local),
    ] {
        let (mut r, mut d) = (Vec::new(), Vec::new());
        for _ in 0..DNS_ROUNDS {
            r.push(dnsperf(&lab.guest, ROUTER_LAN, file, "2"));
            d.push(dnsperf(&lab.guest, testkit::lab::WEB_IP, file, "2"));
        }
        let (r, d) = (median(r), median(d));
        println!("| {what} | {r:.0} | {d:.0} | {:.2} |", r / d);
    }
    println!();

    // 10,000 more names through each cache, then their memory.
    for server in [ROUTER_LAN, testkit::lab::WEB_IP] {
        run(lab
            .guest
            .command("dnsperf")
            .args(["-s", server, "-n", "1", "-q", "50", "-d"])
            .arg(&fill));
    }
    let (_, metrics) = testkit::http::get(&lab.guest, "172.16.0.1:80", "/metrics").expect("metrics");
    let entries = testkit::http::metric(&metrics, "router_dns_cache_entries", &[]).unwrap_or(0.0);
    let rss_full = rss_kib(pid);
    let dnsmasq_rss = rss_kib(reference.pid().expect("dnsmasq runs"));
    println!("| resident memory | KiB |\n|---|---|");
    println!("| routerd, {NAMES} local names, cache empty | {rss_start} |");
    println!("| routerd, {entries:.0} answers cached | {rss_full} |");
    println!("| dnsmasq (the reference), same names and cache | {dnsmasq_rss} |\n");
    reference.stop();
    lab.stop_routerd();
}

mod by_name {
    //! Forwards by host name against HAProxy and a DNAT forward, in one lab.

    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use testkit::lab::{Lab, Options, CONFIG, FAILOVER_IP};
    use testkit::proc::rss_kib;

    const NAME: &str = "bench.example.com";
    /// The name of the real TLS service (its own port on the web guest).
    const TLS_NAME: &str = "tls.bench.example.com";
    const STREAM_SECONDS: f64 = 3.0;
    const CONNECT_SECONDS: f64 = 2.0;
    const CONNECT_THREADS: usize = 4;
    const IDLE_CONNECTIONS: usize = 500;
    /// The paths: routerd's proxy, HAProxy, the DNAT forward; each a public port.
    const PATHS: [(&str, u16); 3] = [
        ("routerd, forward by name (SNI)", 443),
        ("HAProxy 2.6, TCP mode, SNI routing", 7443),
        ("plain DNAT forward (no name)", 8443),
    ];
    /// The uplink speed of the shaped rows: a dedicated server's usual port.
    const UPLINK_MBIT: u32 = 1000;
    /// The same three paths to the real TLS service.
    const TLS_PATHS: [(&str, u16); 3] = [
        ("routerd, forward by name (SNI)", 443),
        ("HAProxy 2.6, TCP mode, SNI routing", 7443),
        ("plain DNAT forward (no name)", 8444),
    ];
    /// The TLS service's port on the web guest.
    const TLS_PORT: u16 = 9444;

    /// A TLS 1.2/1.3-shaped ClientHello naming [`NAME`] (not a real handshake: the
    /// server behind only counts bytes).
    fn client_hello() -> Vec<u8> {
        let mut sni = vec![0u8];
        sni.extend((NAME.len() as u16).to_be_bytes());
        sni.extend(NAME.as_bytes());
        let mut ext = vec![0u8, 0];
        ext.extend((sni.len() as u16 + 2).to_be_bytes());
        ext.extend((sni.len() as u16).to_be_bytes());
        ext.extend(sni);
        let mut body = vec![3u8, 3];
        body.extend([7u8; 32]);
        body.push(0);
        body.extend([0, 2, 0x13, 0x01, 1, 0]);
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let len = (body.len() as u32).to_be_bytes();
        let mut hs = vec![1u8, len[1], len[2], len[3]];
        hs.extend(body);
        let mut rec = vec![0x16u8, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    /// The service in `web`: a connection is a stream whose bytes it counts and
    /// reports (8 bytes) when the client has sent all, or, after a first read, a
    /// one-byte answer for the connection-rate test ("c" as the first payload byte
    /// after the hello).
    fn serve(lab: &Lab) {
        let listener = lab
            .web
            .enter(|| TcpListener::bind("172.16.10.205:9443"))
            .expect("bind 9443");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || handle(stream));
            }
        });
    }

    fn handle(mut s: TcpStream) {
        let hello = client_hello().len();
        let mut buf = vec![0u8; 256 * 1024];
        let mut first = vec![0u8; hello + 1];
        if s.read_exact(&mut first).is_err() {
            return;
        }
        if first[hello] == b'c' {
            let _ = s.write_all(b"k");
            return;
        }
        let mut total = first.len() as u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n as u64,
            }
        }
        let _ = s.write_all(&total.to_be_bytes());
    }

    /// A self-signed certificate for [`TLS_NAME`] made now with openssl (ECDSA P-256),
    /// as (certificate, key) PEM files in the lab's directory.
    fn certificate(lab: &Lab) -> (PathBuf, PathBuf) {
        let (cert, key) = (lab.dir.join("tls-cert.pem"), lab.dir.join("tls-key.pem"));
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", &format!("/CN={TLS_NAME}")])
            .args(["-addext", &format!("subjectAltName=DNS:{TLS_NAME}")])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("openssl (apt-get install openssl)");
        assert!(made.success(), "openssl req failed");
        (cert, key)
    }

    /// The real TLS service in `web` on [`TLS_PORT`]: per connection it reads the
    /// plaintext to the client's close_notify, then answers the count (8 bytes).
    fn serve_tls(lab: &Lab, cert: &Path, key: &Path) {
        let chain = CertificateDer::pem_file_iter(cert)
            .expect("certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate");
        let key = PrivateKeyDer::from_pem_file(key).expect("key");
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server config"),
        );
        let listener = lab
            .web
            .enter(|| TcpListener::bind(("172.16.10.205", TLS_PORT)))
            .expect("bind the TLS port");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let config = config.clone();
                std::thread::spawn(move || {
                    let connection = rustls::ServerConnection::new(config).expect("server connection");
                    let mut tls = rustls::StreamOwned::new(connection, stream);
                    let mut buf = vec![0u8; 256 * 1024];
                    let mut total = 0u64;
                    loop {
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => total += n as u64,
                        }
                    }
                    let _ = tls.write_all(&total.to_be_bytes());
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
    }

    /// The client's side: it trusts only the service's own certificate.
    fn tls_client_config(cert: &Path) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(cert).expect("certificate") {
            roots.add(c.expect("certificate")).expect("a trust anchor");
        }
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// Gbit/s of one TLS stream (plaintext bytes, 256 KiB writes) through `port` for
    /// [`STREAM_SECONDS`] after the handshake, and the bytes; the cipher suite used.
    fn tls_stream(lab: &Lab, port: u16, config: Arc<rustls::ClientConfig>) -> (f64, f64, String) {
        lab.inet.enter(move || {
            let name = rustls::pki_types::ServerName::try_from(TLS_NAME).expect("name");
            let mut connection = rustls::ClientConnection::new(config, name).expect("client connection");
            let mut socket = TcpStream::connect((FAILOVER_IP, port)).expect("connect");
            while connection.is_handshaking() {
                connection.complete_io(&mut socket).expect("TLS handshake");
            }
            let suite = connection
                .negotiated_cipher_suite()
                .map_or("?".to_string(), |s| format!("{:?}", s.suite()));
            let mut tls = rustls::StreamOwned::new(connection, socket);
            let chunk = vec![0x5au8; 256 * 1024];
            let start = Instant::now();
            while start.elapsed().as_secs_f64() < STREAM_SECONDS {
                tls.write_all(&chunk).expect("stream");
            }
            tls.conn.send_close_notify();
            tls.flush().expect("close_notify");
            let mut count = [0u8; 8];
            tls.read_exact(&mut count).expect("the count");
            let bytes = u64::from_be_bytes(count) as f64;
            (bytes * 8.0 / start.elapsed().as_secs_f64() / 1e9, bytes, suite)
        })
    }

    /// CPU seconds (user and system) `pid` has used so far; 0 for no process.
    fn cpu_seconds(pid: u32) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The fields after the command name (which may hold spaces), from the state on.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, f)| f)
            .split_whitespace()
            .collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i).and_then(|t| t.parse::<f64>().ok()))
            .sum();
        // SAFETY: sysconf(3) has no preconditions.
        #[allow(unsafe_code)]
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks / per_second.max(1.0)
    }

    /// Gbit/s of one stream through `port` for [`STREAM_SECONDS`], and the bytes.
    fn stream(lab: &Lab, port: u16) -> (f64, f64) {
        lab.inet.enter(move || {
            let mut s = TcpStream::connect((FAILOVER_IP, port)).expect("connect");
            let mut hello = client_hello();
            hello.push(b's');
            s.write_all(&hello).expect("hello");
            let chunk = vec![0x17u8; 256 * 1024];
            let start = Instant::now();
            while start.elapsed().as_secs_f64() < STREAM_SECONDS {
                s.write_all(&chunk).expect("stream");
            }
            s.shutdown(Shutdown::Write).expect("shutdown");
            let mut count = [0u8; 8];
            s.read_exact(&mut count).expect("the count");
            let bytes = u64::from_be_bytes(count) as f64;
            (bytes * 8.0 / start.elapsed().as_secs_f64() / 1e9, bytes)
        })
    }

    /// New connections per second through `port`: connect, hello, one byte back.
    fn connection_rate(lab: &Lab, port: u16) -> f64 {
        let threads: Vec<_> = (0..CONNECT_THREADS)
            .map(|_| {
                lab.inet.spawn(move || {
                    let mut hello = client_hello();
                    hello.push(b'c');
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed().as_secs_f64() < CONNECT_SECONDS {
                        let mut s = TcpStream::connect((FAILOVER_IP, port)).expect("connect");
                        s.write_all(&hello).expect("hello");
                        let mut k = [0u8; 1];
                        s.read_exact(&mut k).expect("answer");
                        n += 1;
                    }
                    n as f64 / start.elapsed().as_secs_f64()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("client")).sum()
    }

    /// KiB of `pid`'s resident memory per idle relayed connection through `port`.
    fn idle_memory(lab: &Lab, port: u16, pid: u32) -> f64 {
        let before = rss_kib(pid);
        let held: Vec<TcpStream> = lab.inet.enter(move || {
            let hello = client_hello();
            (0..IDLE_CONNECTIONS)
                .map(|_| {
                    let mut s = TcpStream::connect((FAILOVER_IP, port)).expect("connect");
                    s.write_all(&hello).expect("hello");
                    s
                })
                .collect()
        });
        std::thread::sleep(Duration::from_millis(500));
        let after = rss_kib(pid);
        drop(held);
        (after.saturating_sub(before)) as f64 / IDLE_CONNECTIONS as f64
    }

    fn haproxy_pid(lab: &Lab) -> u32 {
        let pids = lab.router.sh("pgrep -n -x haproxy || true");
        pids.trim().parse().unwrap_or(0)
    }

    pub fn run() {
        let mut lab = Lab::new(Options { wan_mac: None });
        let config = CONFIG.split("[[forward]]").next().unwrap_or(CONFIG).to_string()
            + &format!(
                "[[forward]]\nport = 443\nhost = \"{NAME}\"\nto = \"172.16.10.205\"\nto_port = 9443\n\n\
                 [[forward]]\nport = 8443\nto = \"172.16.10.205\"\nto_port = 9443\n\n\
                 [[forward]]\nport = 443\nhost = \"{TLS_NAME}\"\nto = \"172.16.10.205\"\nto_port = {TLS_PORT}\n\n\
                 [[forward]]\nport = 8444\nto = \"172.16.10.205\"\nto_port = {TLS_PORT}\n"
            );
        lab.start_routerd(&config);
        serve(&lab);
        let (cert, key) = certificate(&lab);
        serve_tls(&lab, &cert, &key);
        let tls_client = tls_client_config(&cert);
        let cfg = lab.dir.join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
                 frontend sni\n  bind {FAILOVER_IP}:7443\n  tcp-request inspect-delay 5s\n  tcp-request content accept if {{ req_ssl_hello_type 1 }}\n\
                 \x20 use_backend web if {{ req_ssl_sni -i {NAME} }}\n\
                 \x20 use_backend tls if {{ req_ssl_sni -i {TLS_NAME} }}\n\
                 backend web\n  server web 172.16.10.205:9443\n\
                 backend tls\n  server tls 172.16.10.205:{TLS_PORT}\n"
            ),
        )
        .expect("haproxy.cfg");
        let mut haproxy = lab
            .router
            .command("haproxy")
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .expect("haproxy (apt-get install haproxy)");
        // routerd's input chain drops what it does not know: let HAProxy's port in.
        lab.router
            .sh("nft insert rule inet routerd input tcp dport 7443 accept");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !lab.router.sh("ss -Hltn").contains(":7443 ") {
            assert!(Instant::now() < deadline, "HAProxy does not listen on 7443");
            std::thread::sleep(Duration::from_millis(100));
        }

        let routerd_pid = lab.routerd_pid().expect("routerd runs");
        // The relay's own CPU time per GiB it moved (the DNAT forward's is the kernel's,
        // in softirqs: not counted).
        let relay_pids = [routerd_pid, haproxy_pid(&lab), 0];
        // Streams: each round takes the three paths one after the other, so a change
        // in the machine's load (it is shared) hits all three alike; the ratios are
        // the median of each round's.
        let mut raw: [Vec<f64>; 3] = Default::default();
        let mut tls: [Vec<f64>; 3] = Default::default();
        let (mut cpu_seconds_used, mut gib) = ([0.0f64; 3], [0.0f64; 3]);
        let mut suite = String::new();
        for _ in 0..super::ROUNDS {
            for (i, (_, port)) in PATHS.into_iter().enumerate() {
                let before = cpu_seconds(relay_pids[i]);
                let (gbps, bytes) = stream(&lab, port);
                cpu_seconds_used[i] += cpu_seconds(relay_pids[i]) - before;
                gib[i] += bytes / f64::from(1u32 << 30);
                raw[i].push(gbps);
            }
            for (i, (_, port)) in TLS_PATHS.into_iter().enumerate() {
                let (gbps, _, negotiated) = tls_stream(&lab, port, tls_client.clone());
                suite = negotiated;
                tls[i].push(gbps);
            }
        }
        eprintln!("samples raw (routerd, HAProxy, DNAT) = {raw:?}\nsamples TLS = {tls:?}");
        let to_dnat =
            |runs: &[Vec<f64>; 3], i: usize| super::median(runs[i].iter().zip(&runs[2]).map(|(r, d)| r / d).collect());
        let mut rows = Vec::new();
        let mut cpu = Vec::new();
        for (i, (what, port)) in PATHS.into_iter().enumerate() {
            if relay_pids[i] != 0 {
                cpu.push((what, cpu_seconds_used[i] / gib[i]));
            }
            let gbps = super::median(raw[i].clone());
            let rate = super::median((0..super::ROUNDS).map(|_| connection_rate(&lab, port)).collect());
            let memory = match port {
                443 => Some(idle_memory(&lab, port, routerd_pid)),
                7443 => Some(idle_memory(&lab, port, haproxy_pid(&lab))),
                _ => None,
            };
            rows.push((what, gbps, to_dnat(&raw, i), rate, memory));
        }
        // The same raw stream with the internet host's link shaped to an uplink speed a
        // hoster sells: whether the relay keeps up with the line, as DNAT does, when the
        // CPU is not what limits the stream.
        lab.inet.sh(&format!(
            "tc qdisc add dev eth0 root tbf rate {UPLINK_MBIT}mbit burst 1mb latency 50ms"
        ));
        let mut shaped: [Vec<f64>; 3] = Default::default();
        for _ in 0..super::ROUNDS {
            for (i, (_, port)) in PATHS.into_iter().enumerate() {
                shaped[i].push(stream(&lab, port).0);
            }
        }
        lab.inet.sh("tc qdisc del dev eth0 root");
        eprintln!("samples raw at {UPLINK_MBIT} Mbit/s = {shaped:?}");
        let tls_rows: Vec<(&str, f64, f64)> = TLS_PATHS
            .into_iter()
            .enumerate()
            .map(|(i, (what, _))| (what, super::median(tls[i].clone()), to_dnat(&tls, i)))
            .collect();
        let _ = haproxy.kill();
        let _ = haproxy.wait();

        let base_rate = rows[2].3;
        println!(
            "## Forwards by name: one stream of raw bytes ({STREAM_SECONDS} s, ratio: median of each round's), new connections/s ({CONNECT_THREADS} clients, {CONNECT_SECONDS} s), median of {}; memory per idle connection ({IDLE_CONNECTIONS})\n",
            super::ROUNDS
        );
        println!("| path | Gbit/s | ratio to DNAT | connections/s | ratio to DNAT | KiB per idle connection |\n|---|---|---|---|---|---|");
        for (what, gbps, ratio, rate, memory) in &rows {
            println!(
                "| {what} | {gbps:.2} | {ratio:.2} | {rate:.0} | {:.2} | {} |",
                rate / base_rate,
                memory.map_or("-".to_string(), |m| format!("{m:.1}"))
            );
        }
        println!(
            "\nrouterd / HAProxy: throughput {:.2}, connections/s {:.2}\n",
            rows[0].1 / rows[1].1,
            rows[0].3 / rows[1].3
        );
        println!(
            "### One real TLS stream (rustls, {suite}, 256 KiB writes, {STREAM_SECONDS} s), median of {}, ratio: median of each round's\n",
            super::ROUNDS
        );
        println!("| path | Gbit/s | ratio to DNAT |\n|---|---|---|");
        for (what, gbps, ratio) in &tls_rows {
            println!("| {what} | {gbps:.2} | {ratio:.2} |");
        }
        println!(
            "\nrouterd / HAProxy, TLS stream: throughput {:.2}\n",
            tls_rows[0].1 / tls_rows[1].1
        );
        println!(
            "### The raw stream with the internet host's link shaped to {UPLINK_MBIT} Mbit/s (tbf), median of {}, ratio: median of each round's\n",
            super::ROUNDS
        );
        println!("| path | Gbit/s | ratio to DNAT |\n|---|---|---|");
        for (i, (what, _)) in PATHS.into_iter().enumerate() {
            println!(
                "| {what} | {:.3} | {:.2} |",
                super::median(shaped[i].clone()),
                to_dnat(&shaped, i)
            );
        }
        println!();
        for (what, seconds) in cpu {
            println!(
                "CPU of the relay process while streaming, {what}: {:.0} ms per GiB",
                seconds * 1000.0
            );
        }
        println!();
    }
}
