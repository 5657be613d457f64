//! DHCPv4 server benchmark in the namespace lab (run via `tests/bench-dhcp`, as root).
//!
//! `perfdhcp` in the `guest` namespace plays a relay agent (giaddr = the guest's
//! address, unicast to the router's LAN address) and runs full DORA exchanges of new
//! clients against three servers, each in the `router` namespace, on the same range,
//! under the same nftables ruleset (routerd's), with leases kept on disk:
//!
//! - routerd (the real daemon, `--state`: leases fsynced per batch before the replies);
//! - Kea `kea-dhcp4` (the baseline: memfile, persist = true);
//! - dnsmasq (lease file rewritten on change).
//!
//! For each server it finds the highest rate with < 1 % of the exchanges lost
//! (doubling, then bisection; bounded in trials and time; a fresh server and lease file
//! per trial; the servers take turns, so the load of this shared machine falls on all
//! alike) and reports exchanges/s and the ratio to Kea; then each server's resident
//! memory with 10,000 active leases. Prints markdown tables; the trials go to stderr
//! as they run, with server CPU time and where datagrams were dropped.
//!
//! `direct`: routerd alone under new clients on the LAN itself (broadcast, no relay:
//! `testkit::dhcp_load`): the highest rate with < 1 % lost (5 s trials), then
//! `DIRECT_PERIOD` at that rate and at twice it, where the server is overloaded: the
//! completed exchanges per second of both, which should stay close.
//! Usage: bench_dhcp [throughput] [memory] [direct [PEAK]] [kea] [routerd] [dnsmasq]   (default: all)

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::dhcp_load;
use testkit::lab::{Lab, Options, CONFIG, GUEST_IP, ROUTER_LAN_IP};
use testkit::proc::rss_kib;

/// The dynamic range every server hands out (61,438 addresses, inside the lab's LAN
/// 172.16.0.0/16, clear of the router's and the guests' fixed addresses). A trial must
/// never run the pool dry: that would measure exhaustion, not throughput.
const RANGE_FIRST: &str = "172.16.16.1";
const RANGE_LAST: &str = "172.16.255.254";
const RANGE_SIZE: u32 = 240 * 256 - 2;
const LEASE_SECS: u32 = 43_200;
/// Seconds of traffic per trial.
const PERIOD: u32 = 5;
/// A trial passes when fewer than this share of the DORA exchanges failed.
const MAX_LOSS: f64 = 0.01;
const START_RATE: u32 = 500;
const MAX_RATE: u32 = 11_000;
const _: () = assert!(MAX_RATE * PERIOD < RANGE_SIZE);
/// Trials per server at most (doubling, bisection, and one retry of each failure).
const MAX_TRIALS: usize = 12;
/// The whole benchmark stays under 10 minutes: the searches stop early past this, and
/// the memory part takes about 2 minutes.
const BUDGET: Duration = Duration::from_secs(390);
const MEMORY_LEASES: u32 = 10_000;
/// The overload runs of `direct` last this long: the last requests' 300 ms ARP probe
/// and 1 s wait for a reply are then a few percent of a run at most, not a third.
const DIRECT_PERIOD: Duration = Duration::from_secs(30);
/// The direct runs serve a /12 LAN: at thousands of new clients a second for 30 s, a
/// /16 would run dry (which would measure exhaustion, not overload).
const DIRECT_RANGE: (&str, &str) = ("172.17.0.1", "172.31.255.254");
/// The rate the leases for the memory figure are handed out at: this, or half the
/// server's best rate if lower (dnsmasq slows down as its lease file grows).
const MEMORY_RATE: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Routerd,
    Kea,
    Dnsmasq,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Routerd => "routerd",
            Server::Kea => "Kea kea-dhcp4 2.2 (memfile, persist)",
            Server::Dnsmasq => "dnsmasq 2.90 (--no-ping)",
        }
    }

    fn durability(self) -> &'static str {
        match self {
            Server::Routerd => "append + fsync per batch, before the ACK",
            Server::Kea => "CSV append, no fsync",
            Server::Dnsmasq => "file rewritten, no fsync",
        }
    }
}

fn routerd_config() -> String {
    format!("{CONFIG}\n[dhcp]\nrange = \"{RANGE_FIRST}-{RANGE_LAST}\"\nlease_time = \"{LEASE_SECS}\"\n")
}

fn routerd_direct_config() -> String {
    let wide = CONFIG.replace("address = \"172.16.0.1/16\"", "address = \"172.16.0.1/12\"");
    assert_ne!(
        wide, CONFIG,
        "the lab's LAN address moved: update routerd_direct_config"
    );
    let (first, last) = DIRECT_RANGE;
    format!("{wide}\n[dhcp]\nrange = \"{first}-{last}\"\nlease_time = \"{LEASE_SECS}\"\n")
}

fn kea_config(dir: &Path) -> String {
    format!(
        r#"{{"Dhcp4": {{
  "interfaces-config": {{ "interfaces": ["lan"], "dhcp-socket-type": "udp" }},
  "lease-database": {{ "type": "memfile", "persist": true, "name": "{leases}", "lfc-interval": 0 }},
  "valid-lifetime": {LEASE_SECS},
  "renew-timer": {t1},
  "rebind-timer": {t2},
  "subnet4": [{{
    "id": 1,
    "subnet": "172.16.0.0/16",
    "pools": [{{ "pool": "{RANGE_FIRST} - {RANGE_LAST}" }}],
    "option-data": [
      {{ "name": "routers", "data": "{ROUTER_LAN_IP}" }},
      {{ "name": "domain-name-servers", "data": "198.51.100.53" }}
    ]
  }}],
  "loggers": [{{ "name": "kea-dhcp4", "severity": "WARN", "output_options": [{{ "output": "{log}" }}] }}]
}}}}"#,
        leases = dir.join("kea-leases4.csv").display(),
        t1 = LEASE_SECS / 2,
        t2 = LEASE_SECS / 8 * 7,
        log = dir.join("kea.log").display(),
    )
}

/// One server instance with its own fresh state directory.
struct Instance {
    server: Server,
    /// Kea and dnsmasq (routerd's child belongs to the lab).
    child: Option<Child>,
    pid: u32,
    dir: PathBuf,
}

impl Instance {
    fn start(lab: &mut Lab, server: Server, trial: usize) -> Instance {
        let dir = lab.dir.join(format!(
            "{}-{trial}",
            server.name().split(' ').next().unwrap_or("server")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let (child, pid) = match server {
            Server::Routerd => {
                let _ = std::fs::remove_dir_all(lab.state_dir());
                lab.start_routerd(&routerd_config());
                lab.wait_log("DHCP server listening", 1);
                (None, lab.routerd_pid().expect("routerd runs"))
            }
            Server::Kea => {
                // Kea and dnsmasq run beside routerd without a [dhcp] section: same
                // addresses, same firewall, nobody else on port 67.
                lab.start_routerd(CONFIG);
                let conf = dir.join("kea-dhcp4.conf");
                std::fs::write(&conf, kea_config(&dir)).unwrap_or_else(|e| panic!("{}: {e}", conf.display()));
                // The binary itself, never the system service.
                let child = lab
                    .router
                    .command("kea-dhcp4")
                    .arg("-c")
                    .arg(&conf)
                    .env("KEA_PIDFILE_DIR", &dir)
                    .env("KEA_LOCKFILE_DIR", &dir)
                    .stdin(Stdio::null())
                    .stdout(log_file(&dir, "kea.out"))
                    .stderr(log_file(&dir, "kea.out"))
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start kea-dhcp4: {e}"));
                let pid = child.id();
                (Some(child), pid)
            }
            Server::Dnsmasq => {
                lab.start_routerd(CONFIG);
                let child = lab
                    .router
                    .command("dnsmasq")
                    .args([
                        "--no-daemon",
                        "--conf-file=/dev/null",
                        "--user=root",
                        "--port=0",
                        "--interface=lan",
                        "--bind-interfaces",
                        &format!("--dhcp-range={RANGE_FIRST},{RANGE_LAST},255.255.0.0,{LEASE_SECS}"),
                        &format!("--dhcp-option=option:router,{ROUTER_LAN_IP}"),
                        "--dhcp-option=option:dns-server,198.51.100.53",
                        "--dhcp-lease-max=200000",
                        "--dhcp-authoritative",
                        // Its default ICMP check before each offer waits ~3 s per new
                        // address, one at a time: new clients get almost nothing.
                        "--no-ping",
                        "--quiet-dhcp",
                    ])
                    .arg(format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()))
                    .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
                    .arg(format!("--log-facility={}", dir.join("dnsmasq.log").display()))
                    .stdin(Stdio::null())
                    .stdout(log_file(&dir, "dnsmasq.out"))
                    .stderr(log_file(&dir, "dnsmasq.out"))
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start dnsmasq: {e}"));
                let pid = child.id();
                (Some(child), pid)
            }
        };
        let instance = Instance {
            server,
            child,
            pid,
            dir,
        };
        instance.wait_listening(lab);
        instance
    }

    /// Waits (bounded) until a socket on UDP port 67 belongs to the server's pid.
    fn wait_listening(&self, lab: &Lab) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let needle = format!("pid={},", self.pid);
        loop {
            let out = lab
                .router
                .command("ss")
                .args(["-Hulpn", "sport = :67"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            if out.as_deref().is_ok_and(|s| s.contains(&needle)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} does not listen on :67 after 20 s; see {}",
                self.server.name(),
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(mut self, lab: &mut Lab) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
        lab.stop_routerd();
    }
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// What perfdhcp counted in one run.
#[derive(Debug, Clone, Copy, Default)]
struct Perf {
    discovers: u64,
    offers: u64,
    requests: u64,
    acks: u64,
    /// Completed DORA exchanges per second of traffic.
    rate: f64,
    /// Mean DISCOVER→OFFER and REQUEST→ACK delays, ms.
    do_ms: f64,
    ra_ms: f64,
    /// CPU seconds (user + system) the server used during the run.
    cpu: f64,
    /// UDP datagrams dropped for a full receive buffer: at the server, at perfdhcp.
    server_drops: u64,
    client_drops: u64,
}

impl Perf {
    fn loss(&self) -> f64 {
        if self.discovers == 0 {
            return 1.0;
        }
        1.0 - self.acks as f64 / self.discovers as f64
    }
}

fn number_after(section: &str, key: &str) -> Option<f64> {
    section
        .lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn parse_perfdhcp(out: &str) -> Perf {
    let section = |name: &str| {
        out.split(&format!("***Statistics for: {name}***"))
            .nth(1)
            .and_then(|s| s.split("***").next())
            .unwrap_or("")
    };
    let (d, r) = (section("DISCOVER-OFFER"), section("REQUEST-ACK"));
    let count = |s: &str, key: &str| number_after(s, key).map_or(0, |n| n as u64);
    Perf {
        discovers: count(d, "sent packets:"),
        offers: count(d, "received packets:"),
        requests: count(r, "sent packets:"),
        acks: count(r, "received packets:"),
        rate: 0.0,
        do_ms: number_after(d, "avg delay:").unwrap_or(0.0),
        ra_ms: number_after(r, "avg delay:").unwrap_or(0.0),
        cpu: 0.0,
        server_drops: 0,
        client_drops: 0,
    }
}

/// Runs perfdhcp from the guest as a relay: `rate` exchanges/s for `PERIOD` seconds,
/// or `requests` exchanges; every exchange a new client (random MAC among 2^24).
fn perfdhcp(lab: &Lab, rate: u32, requests: Option<u32>) -> (Perf, String) {
    let mut cmd = lab.guest.command("perfdhcp");
    cmd.args([
        "-4",
        "-l",
        GUEST_IP,
        "-r",
        &rate.to_string(),
        "-R",
        "16000000",
        "-W",
        "1500000",
    ]);
    match requests {
        Some(n) => cmd.args(["-n", &n.to_string()]),
        None => cmd.args(["-p", &PERIOD.to_string()]),
    };
    cmd.arg(ROUTER_LAN_IP);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run perfdhcp: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut perf = parse_perfdhcp(&text);
    // perfdhcp's own "Rate:" also counts the wait at the end: use ACKs per second of traffic.
    let seconds = f64::from(requests.map_or(PERIOD, |n| n.div_ceil(rate)));
    perf.rate = perf.acks as f64 / seconds;
    (perf, text)
}

struct Trial {
    rate: u32,
    perf: Perf,
}

/// The search for one server's highest passing rate: double from START_RATE until a
/// trial fails (or MAX_RATE), then bisect between the last pass and the first failure.
/// This machine is shared and noisy: a failed rate is tried once more before it counts.
struct Search {
    server: Server,
    trials: Vec<Trial>,
    pass: Option<u32>,
    fail: Option<u32>,
    retried: bool,
    /// The next rate to try; None when done.
    next: Option<u32>,
}

impl Search {
    fn new(server: Server) -> Search {
        Search {
            server,
            trials: Vec::new(),
            pass: None,
            fail: None,
            retried: false,
            next: Some(START_RATE),
        }
    }

    fn record(&mut self, rate: u32, perf: Perf) {
        let ok = perf.loss() < MAX_LOSS;
        self.trials.push(Trial { rate, perf });
        if ok {
            self.pass = Some(rate);
        } else if !self.retried {
            self.retried = true;
            return; // same rate once more
        } else {
            self.fail = Some(rate);
        }
        self.retried = false;
        self.next = match (self.pass, self.fail) {
            (Some(p), None) if p >= MAX_RATE => None,
            (Some(p), None) => Some((p * 2).min(MAX_RATE)),
            (None, Some(f)) if f <= 10 => None,
            (None, Some(f)) => Some(f / 2),
            (Some(p), Some(f)) if f - p <= p / 8 => None,
            (Some(p), Some(f)) => Some((p + f) / 2),
            (None, None) => None,
        };
    }

    fn best(&self) -> Option<&Trial> {
        self.trials
            .iter()
            .filter(|t| t.perf.loss() < MAX_LOSS)
            .max_by_key(|t| t.rate)
    }
}

/// One trial: a fresh server and lease file, perfdhcp at `rate` for PERIOD seconds.
fn trial(lab: &mut Lab, server: Server, rate: u32, n: usize) -> Perf {
    let instance = Instance::start(lab, server, n);
    let cpu_before = cpu_secs(instance.pid);
    let drops_before = (udp_rcvbuf_errors(&lab.router), udp_rcvbuf_errors(&lab.guest));
    let (mut perf, text) = perfdhcp(lab, rate, None);
    perf.cpu = cpu_secs(instance.pid) - cpu_before;
    perf.server_drops = udp_rcvbuf_errors(&lab.router) - drops_before.0;
    perf.client_drops = udp_rcvbuf_errors(&lab.guest) - drops_before.1;
    instance.stop(lab);
    if perf.discovers == 0 {
        eprintln!("perfdhcp sent nothing:\n{text}");
    }
    eprintln!(
        "{:>8} rate {rate:>5}: discovers {} offers {} requests {} acks {} loss {:.2}% completed {:.0}/s delays {:.1}/{:.1} ms, server CPU {:.2} s, rcvbuf drops server {} perfdhcp {}",
        server.name().split(' ').next().unwrap_or(""),
        perf.discovers,
        perf.offers,
        perf.requests,
        perf.acks,
        perf.loss() * 100.0,
        perf.rate,
        perf.do_ms,
        perf.ra_ms,
        perf.cpu,
        perf.server_drops,
        perf.client_drops,
    );
    perf
}

/// The namespace's UDP RcvbufErrors counter (datagrams dropped for a full socket buffer).
fn udp_rcvbuf_errors(ns: &testkit::netns::Netns) -> u64 {
    let snmp = ns.sh("cat /proc/net/snmp");
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of a process so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" that ends the command name: utime and stime are 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// Distinct addresses bound in routerd's lease log (the last record of each wins).
fn routerd_bound_leases(state: &Path) -> usize {
    let text = std::fs::read_to_string(state.join("dhcp-leases")).unwrap_or_default();
    let mut last = std::collections::HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if let (Some(addr), Some(state)) = (f.get(1).and_then(|a| a.parse::<Ipv4Addr>().ok()), f.get(5)) {
            last.insert(addr, *state == "B");
        }
    }
    last.values().filter(|b| **b).count()
}

/// Returns each server's best passing rate.
fn throughput(lab: &mut Lab, servers: &[Server], started: Instant) -> Vec<(Server, u32)> {
    // The searches take turns, one trial each, so that the load of this shared machine
    // falls on all servers alike.
    let mut searches: Vec<Search> = servers.iter().map(|s| Search::new(*s)).collect();
    let mut n = 0;
    while searches.iter().any(|s| s.next.is_some()) {
        for search in searches.iter_mut() {
            if search.trials.len() >= MAX_TRIALS || started.elapsed() >= BUDGET {
                search.next = None;
            }
            if let Some(rate) = search.next {
                let perf = trial(lab, search.server, rate, n);
                n += 1;
                search.record(rate, perf);
            }
        }
    }
    let rows: Vec<(Server, Option<&Trial>)> = searches.iter().map(|s| (s.server, s.best())).collect();
    let all: Vec<(Server, &Vec<Trial>)> = searches.iter().map(|s| (s.server, &s.trials)).collect();
    let kea = rows
        .iter()
        .find(|(s, _)| *s == Server::Kea)
        .and_then(|(_, b)| b.as_ref())
        .map(|t| t.perf.rate);
    let best = rows.iter().filter_map(|(s, b)| Some((*s, b.as_ref()?.rate))).collect();
    println!("## DHCPv4 DORA throughput (perfdhcp relay from a guest, new clients, {PERIOD} s per trial, highest rate with < 1 % of exchanges lost)\n");
    println!("| server | leases on disk | offered rate | completed exchanges/s | ratio to Kea | mean D→O / R→A delay ms |\n|---|---|---|---|---|---|");
    for (server, best) in &rows {
        match best {
            Some(t) => {
                let ratio = kea.map_or("-".to_string(), |k| format!("{:.2}", t.perf.rate / k));
                println!(
                    "| {} | {} | {} | {:.0} | {ratio} | {:.1} / {:.1} |",
                    server.name(),
                    server.durability(),
                    t.rate,
                    t.perf.rate,
                    t.perf.do_ms,
                    t.perf.ra_ms
                );
            }
            None => println!(
                "| {} | {} | none passed (down to 10/s) | - | - | - |",
                server.name(),
                server.durability()
            ),
        }
    }
    println!("\n### Trials (in each server's order; the servers took turns)\n");
    println!("Drops: UDP datagrams lost to a full receive buffer at the server's socket and at perfdhcp's.\n");
    println!("| server | offered rate | DISCOVER sent | ACK received | lost % | server CPU s | drops at server | drops at perfdhcp |\n|---|---|---|---|---|---|---|---|");
    for (server, trials) in &all {
        for t in trials.iter() {
            let p = &t.perf;
            println!(
                "| {} | {} | {} | {} | {:.2} | {:.2} | {} | {} |",
                server.name().split(' ').next().unwrap_or(""),
                t.rate,
                p.discovers,
                p.acks,
                p.loss() * 100.0,
                p.cpu,
                p.server_drops,
                p.client_drops
            );
        }
    }
    println!();
    best
}

fn memory(lab: &mut Lab, servers: &[Server], best: &[(Server, u32)]) {
    println!(
        "## Resident memory with {MEMORY_LEASES} active leases (VmRSS after perfdhcp -n {MEMORY_LEASES} new clients)\n"
    );
    println!("| server | rate /s | RSS KiB idle | RSS KiB with the leases | leases acknowledged | ratio to Kea |\n|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for &server in servers {
        let instance = Instance::start(lab, server, 100);
        std::thread::sleep(Duration::from_millis(500));
        let idle = rss_kib(instance.pid);
        let rate = best
            .iter()
            .find(|(s, _)| *s == server)
            .map_or(MEMORY_RATE, |(_, r)| MEMORY_RATE.min(r / 2));
        let (perf, _) = perfdhcp(lab, rate, Some(MEMORY_LEASES));
        let after = rss_kib(instance.pid);
        let acked = match server {
            Server::Routerd => routerd_bound_leases(&lab.state_dir()) as u64,
            _ => perf.acks,
        };
        instance.stop(lab);
        rows.push((server, rate, idle, after, acked));
    }
    let kea = rows.iter().find(|r| r.0 == Server::Kea).map_or(0, |r| r.3) as f64;
    for (server, rate, idle, after, acked) in rows {
        println!(
            "| {} | {rate} | {idle} | {after} | {acked} | {:.2} |",
            server.name(),
            after as f64 / kea
        );
    }
    println!();
}

/// One direct run against a fresh routerd: the load's counts and routerd's counters
/// of requests dropped under overload (early, in its queue; at the socket).
fn direct_run(lab: &mut Lab, rate: u32, period: Duration) -> (dhcp_load::Counts, f64, f64) {
    let _ = std::fs::remove_dir_all(lab.state_dir());
    lab.start_routerd(&routerd_direct_config());
    lab.wait_log("DHCP server listening", 1);
    let c = dhcp_load::run(&lab.guest, rate, period);
    let metrics = testkit::http::get(&lab.guest, &format!("{ROUTER_LAN_IP}:80"), "/metrics")
        .map(|r| r.1)
        .unwrap_or_default();
    let get = |name: &str| testkit::http::metric(&metrics, name, &[]).unwrap_or(0.0);
    let dropped = get("router_dhcp_dropped_overload_total") + get("router_dhcp_dropped_probe_limit_total");
    let socket = get("router_dhcp_socket_drops_total");
    lab.stop_routerd();
    let loss = 1.0 - c.acks as f64 / c.discovers.max(1) as f64;
    eprintln!(
        "  direct rate {rate:>5} for {} s: discovers {} offers {} requests {} acks {} late {} loss {:.2}% completed {:.0}/s delays {:.1}/{:.1} ms, dropped early {dropped} at the socket {socket}",
        period.as_secs(),
        c.discovers,
        c.offers,
        c.requests,
        c.acks,
        c.late,
        loss * 100.0,
        c.acks as f64 / period.as_secs_f64(),
        c.do_ms,
        c.ra_ms
    );
    (c, dropped, socket)
}

/// routerd under new clients broadcasting on the LAN: its peak (searched for, or
/// `known_peak`), then overload at twice it.
fn direct(lab: &mut Lab, known_peak: Option<u32>) {
    if let Some(peak) = known_peak {
        return direct_report(lab, peak);
    }
    let trial = Duration::from_secs(u64::from(PERIOD));
    let passes = |c: &dhcp_load::Counts| c.discovers > 0 && (c.acks as f64) >= (1.0 - MAX_LOSS) * c.discovers as f64;
    // Doubling from START_RATE, then three bisection steps.
    let (mut pass, mut fail) = (None, None);
    let mut rate = START_RATE;
    while fail.is_none() && rate <= MAX_RATE {
        if passes(&direct_run(lab, rate, trial).0) {
            pass = Some(rate);
            rate *= 2;
        } else {
            fail = Some(rate);
        }
    }
    for _ in 0..3 {
        let (Some(p), Some(f)) = (pass, fail) else { break };
        let mid = (p + f) / 2;
        if passes(&direct_run(lab, mid, trial).0) {
            pass = Some(mid);
        } else {
            fail = Some(mid);
        }
    }
    match pass {
        Some(peak) => direct_report(lab, peak),
        None => println!("## DHCPv4 direct clients: no rate down to {START_RATE}/s passed\n"),
    }
}

fn direct_report(lab: &mut Lab, peak: u32) {
    let runs: Vec<(u32, (dhcp_load::Counts, f64, f64))> = [peak, 2 * peak]
        .into_iter()
        .map(|r| (r, direct_run(lab, r, DIRECT_PERIOD)))
        .collect();
    println!(
        "## DHCPv4 direct clients (new clients broadcasting on the LAN, no relay, broadcast flag; routerd; {} s per run)\n",
        DIRECT_PERIOD.as_secs()
    );
    println!("| offered new clients/s | DISCOVER sent | ACK in time (1 s) | completed exchanges/s | share of the peak run | dropped early by routerd | dropped at its socket | mean D→O / R→A delay ms |\n|---|---|---|---|---|---|---|---|");
    let base = runs[0].1 .0.acks.max(1) as f64;
    for (rate, (c, dropped, socket)) in &runs {
        println!(
            "| {rate} | {} | {} | {:.0} | {:.2} | {dropped} | {socket} | {:.1} / {:.1} |",
            c.discovers,
            c.acks,
            c.acks as f64 / DIRECT_PERIOD.as_secs_f64(),
            c.acks as f64 / base,
            c.do_ms,
            c.ra_ms
        );
    }
    println!();
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let sections = ["throughput", "memory", "direct"];
    let any_section = which.iter().any(|w| sections.contains(&w.as_str()));
    let want = |name: &str| !any_section || which.iter().any(|w| w == name);
    let named: Vec<Server> = [Server::Kea, Server::Routerd, Server::Dnsmasq]
        .into_iter()
        .filter(|s| which.iter().any(|w| s.name().to_lowercase().starts_with(w.as_str())))
        .collect();
    let servers = if named.is_empty() {
        vec![Server::Kea, Server::Routerd, Server::Dnsmasq]
    } else {
        named
    };
    let started = Instant::now();
    let mut lab = Lab::new(Options { wan_mac: None });
    let best = if want("throughput") {
        throughput(&mut lab, &servers, started)
    } else {
        Vec::new()
    };
    if want("memory") {
        memory(&mut lab, &servers, &best);
    }
    if want("direct") && servers.contains(&Server::Routerd) {
        // A number given: the peak rate, known from an earlier run (no search).
        let peak = which.iter().find_map(|w| w.parse().ok());
        direct(&mut lab, peak);
    }
    eprintln!("bench-dhcp took {:.0} s", started.elapsed().as_secs_f64());
}
