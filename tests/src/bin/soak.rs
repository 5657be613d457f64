//! The soak (issue "hardening"): routerd under everything at once for a while, its
//! memory sampled from start to end. Run via `tests/soak [SECONDS]` (default 600).
//!
//! In the namespace lab, for the whole run, each loop bounded by the deadline and
//! paced so it cannot become a flood:
//! - DHCP churn: 120 clients (raw DHCP from a guest) each DISCOVER, REQUEST, RELEASE;
//! - scrapes: 4 scrapers of `/metrics` and `/`;
//! - reloads: SIGHUP every 5 s, alternating between two forward sets;
//! - traffic: TCP connections from a guest to the internet host through NAT, and from
//!   the internet host to a guest through a forward.
//!
//! routerd's RSS is the figure: sampled every 5 s, the first sample after warm-up is
//! the baseline of the same run; flat is the goal. Prints a markdown table.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use testkit::http;
use testkit::lab::{Lab, Options, CONFIG, INET_IP, ROUTER_LAN_IP, WEB_IP};
use testkit::proc::rss_kib;
use testkit::traffic::{tcp_echo, EchoServer};

const CLIENTS: u8 = 120;
const WARM_UP: Duration = Duration::from_secs(15);
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Counts {
    acks: AtomicU64,
    dhcp_timeouts: AtomicU64,
    scrapes: AtomicU64,
    scrape_errors: AtomicU64,
    reloads: AtomicU64,
    flows: AtomicU64,
    flow_errors: AtomicU64,
}

fn config(variant: u32) -> String {
    let mut c = CONFIG.to_string();
    c += "\n[dhcp]\nrange = \"172.16.10.100-172.16.10.249\"\nlease_time = \"2m\"\n";
    // Two forward sets, so every reload changes the ruleset; port 10000 is in both.
    let shift = if variant.is_multiple_of(2) { 0 } else { 100 };
    for i in 0..50u16 {
        let port = if i == 0 { 10_000 } else { 10_000 + i + shift };
        c += &format!("\n[[forward]]\nprotocol = \"tcp\"\nport = {port}\nto = \"{WEB_IP}\"\n");
    }
    c
}

/// Sends `msg` and waits (bounded) for a reply of `want` with the same xid.
fn exchange(sock: &UdpSocket, msg: &Message, want: MessageType) -> Option<Message> {
    let bytes = msg.to_vec().ok()?;
    sock.send_to(&bytes, "255.255.255.255:67").ok()?;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        let Ok((n, _)) = sock.recv_from(&mut buf) else { continue };
        let Ok(reply) = Message::decode(&mut Decoder::new(&buf[..n])) else {
            continue;
        };
        if reply.xid() == msg.xid() && reply.opts().msg_type() == Some(want) {
            return Some(reply);
        }
    }
    None
}

fn request(kind: MessageType, xid: u32, mac: &[u8; 6]) -> Message {
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(xid, z, z, z, z, mac);
    m.set_flags(Flags::default().set_broadcast());
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m
}

/// One client's whole cycle: DISCOVER, REQUEST, RELEASE. True when it got an ACK.
fn dhcp_cycle(sock: &UdpSocket, xid: u32, mac: &[u8; 6]) -> bool {
    let Some(offer) = exchange(sock, &request(MessageType::Discover, xid, mac), MessageType::Offer) else {
        return false;
    };
    let Some(DhcpOption::ServerIdentifier(server)) = offer.opts().get(OptionCode::ServerIdentifier).cloned() else {
        return false;
    };
    let mut req = request(MessageType::Request, xid.wrapping_add(1), mac);
    req.opts_mut().insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    req.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    let Some(ack) = exchange(sock, &req, MessageType::Ack) else {
        return false;
    };
    let z = Ipv4Addr::UNSPECIFIED;
    let mut release = Message::new_with_id(xid.wrapping_add(2), ack.yiaddr(), z, z, z, mac);
    release.opts_mut().insert(DhcpOption::MessageType(MessageType::Release));
    release.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    if let Ok(bytes) = release.to_vec() {
        let _ = sock.send_to(&bytes, SocketAddr::from((server, 67)));
    }
    true
}

fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(600);
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.start_routerd(&config(0));
    let pid = lab.routerd_pid().expect("routerd runs");
    let _web = EchoServer::tcp(&lab.web, &format!("{WEB_IP}:10000"));
    let _inet = EchoServer::tcp(&lab.inet, &format!("{INET_IP}:7"));
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let deadline = started + WARM_UP + Duration::from_secs(seconds);

    // DHCP churn from the guest (it keeps its static address; the socket is raw DHCP).
    let c = counts.clone();
    let churn = lab.guest.spawn(move || {
        let sock = UdpSocket::bind("0.0.0.0:68").expect("bind :68 in the guest");
        sock.set_broadcast(true).expect("SO_BROADCAST");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut xid = 1u32;
        while Instant::now() < deadline {
            let n = (xid / 3 % u32::from(CLIENTS)) as u8;
            let mac = [0x52, 0x54, 0x00, 0x50, 0x00, n];
            if dhcp_cycle(&sock, xid, &mac) {
                c.acks.fetch_add(1, Ordering::Relaxed);
            } else {
                c.dhcp_timeouts.fetch_add(1, Ordering::Relaxed);
            }
            xid = xid.wrapping_add(3);
            std::thread::sleep(Duration::from_millis(20));
        }
    });

    let mut samples: Vec<(u64, u64)> = Vec::new();
    std::thread::scope(|scope| {
        for i in 0..4 {
            let (c, guest) = (&counts, &lab.guest);
            scope.spawn(move || {
                let path = if i % 2 == 0 { "/metrics" } else { "/" };
                while Instant::now() < deadline {
                    match http::get(guest, &format!("{ROUTER_LAN_IP}:80"), path) {
                        Ok((200, _)) => c.scrapes.fetch_add(1, Ordering::Relaxed),
                        _ => c.scrape_errors.fetch_add(1, Ordering::Relaxed),
                    };
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        let (c, guest, inet) = (&counts, &lab.guest, &lab.inet);
        scope.spawn(move || {
            let mut i = 0u64;
            while Instant::now() < deadline {
                let echoed = if i.is_multiple_of(2) {
                    tcp_echo(guest, &format!("{INET_IP}:7"), "out")
                } else {
                    tcp_echo(inet, "203.0.113.10:10000", "in")
                };
                match echoed {
                    Ok(_) => c.flows.fetch_add(1, Ordering::Relaxed),
                    Err(_) => c.flow_errors.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        });

        // Reloads and samples on this thread.
        let mut variant = 0;
        let mut next_sample = started + WARM_UP;
        let mut next_reload = started + Duration::from_secs(5);
        while Instant::now() < deadline {
            let now = Instant::now();
            if now >= next_reload {
                variant += 1;
                lab.write_config(&config(variant));
                let _ = Command::new("kill").args(["-HUP", &pid.to_string()]).status();
                counts.reloads.fetch_add(1, Ordering::Relaxed);
                next_reload += Duration::from_secs(5);
            }
            if now >= next_sample {
                samples.push((now.duration_since(started).as_secs(), rss_kib(pid)));
                next_sample += SAMPLE_EVERY;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let _ = churn.join();
    assert!(lab.routerd_alive(), "routerd died during the soak:\n{}", lab.log());
    samples.push((started.elapsed().as_secs(), rss_kib(pid)));

    let first = samples.first().map_or(0, |s| s.1);
    let last = samples.last().map_or(0, |s| s.1);
    let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let ratio = |v: u64| v as f64 / first.max(1) as f64;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!("## Soak: {seconds} s of DHCP churn, scrapes, reloads and traffic\n");
    println!("| routerd RSS | KiB | ratio to the start |\n|---|---|---|");
    println!(
        "| at the start (after {} s warm-up, baseline) | {first} | 1.00 |",
        WARM_UP.as_secs()
    );
    println!("| at the end | {last} | {:.2} |", ratio(last));
    println!("| highest sample | {max} | {:.2} |\n", ratio(max));
    println!(
        "DHCP: {} full exchanges ({} timed out); scrapes: {} ({} failed); reloads: {}; \
         TCP flows through NAT and forwards: {} ({} failed).",
        n(&counts.acks),
        n(&counts.dhcp_timeouts),
        n(&counts.scrapes),
        n(&counts.scrape_errors),
        n(&counts.reloads),
        n(&counts.flows),
        n(&counts.flow_errors)
    );
    eprintln!("samples (s, KiB): {samples:?}");
}
