//! Router advertisements on each LAN with `address6`: guests take an address in its
//! /64 by SLAAC and the router (its link-local address) as their default router.
//! Unsolicited ones a few seconds apart at first, then every few minutes; a router
//! solicitation is answered at once (at most one advertisement per
//! [`MIN_DELAY_BETWEEN_RAS`]). On stop, a last one with router lifetime 0 tells the
//! guests to stop using the router.

pub mod packet;

use std::io;
use std::io::Read;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv6Net;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use config::MacAddr;
use packet::Advert;

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// RFC 4861 10: the first few unsolicited advertisements come quicker.
const INITIAL_ADVERTS: u32 = 3;
const INITIAL_INTERVAL: Duration = Duration::from_secs(4);
const INTERVAL: Duration = Duration::from_secs(200);
const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
/// When sending fails (the link-local address still tentative, the link down).
const RETRY: Duration = Duration::from_secs(1);
const ROUTER_LIFETIME: u16 = 1800;
const VALID_LIFETIME: u32 = 86400;
const PREFERRED_LIFETIME: u32 = 14400;

/// What one LAN's advertisements say; a change restarts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub index: u32,
    pub ifname: String,
    pub mac: Option<MacAddr>,
    pub prefix: Ipv6Net,
    pub dns: Vec<Ipv6Addr>,
}

impl Params {
    fn advert(&self, router_lifetime: u16) -> Advert {
        let mtu = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", self.ifname))
            .ok()
            .and_then(|m| m.trim().parse().ok());
        Advert {
            mac: self.mac,
            mtu,
            prefix: self.prefix,
            router_lifetime,
            valid_lifetime: VALID_LIFETIME,
            preferred_lifetime: PREFERRED_LIFETIME,
            dns: self.dns.clone(),
            // RFC 8106: at least 3 times the longest interval between advertisements.
            dns_lifetime: 3 * u32::try_from(INTERVAL.as_secs()).unwrap_or(u32::MAX),
        }
    }
}

/// The advertisements running on one LAN.
pub struct Watch {
    pub params: Params,
    /// Advertisements sent so far.
    pub sent: Arc<AtomicU64>,
    socket: Arc<AsyncFd<Socket>>,
    task: JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
        // Guests drop the router as default router at once rather than in 30 minutes.
        let _ = send(&self.socket, &self.params, 0);
    }
}

fn open(params: &Params) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV6, Type::RAW.nonblocking(), Some(Protocol::ICMPV6))?;
    socket.bind_device(Some(params.ifname.as_bytes()))?;
    // RFC 4861: hosts ignore neighbour discovery with a hop limit other than 255.
    socket.set_multicast_hops_v6(255)?;
    socket.set_unicast_hops_v6(255)?;
    socket.set_multicast_if_v6(params.index)?;
    socket.set_multicast_loop_v6(false)?;
    socket.join_multicast_v6(&ALL_ROUTERS, params.index)?;
    Ok(socket)
}

fn send(socket: &AsyncFd<Socket>, params: &Params, router_lifetime: u16) -> io::Result<()> {
    let to = SockAddr::from(SocketAddrV6::new(ALL_NODES, 0, 0, params.index));
    socket
        .get_ref()
        .send_to(&params.advert(router_lifetime).encode(), &to)?;
    Ok(())
}

/// Keeps `current` when it advertises the same, else starts anew; `None` when the
/// socket cannot be opened (logged).
pub fn ensure(current: Option<Watch>, params: Params) -> Option<Watch> {
    if let Some(w) = current.filter(|w| w.params == params) {
        return Some(w);
    }
    // SAFETY: the socket is owned by the AsyncFd and stays open until it is dropped.
    #[allow(unsafe_code)]
    let socket = match open(&params).and_then(|s| unsafe { AsyncFd::register(s) }.map_err(io::Error::from)) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!("cannot send router advertisements on {}: {e}", params.ifname);
            return None;
        }
    };
    let sent = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(advertise(socket.clone(), params.clone(), sent.clone()));
    tracing::info!(lan = %params.ifname, prefix = %params.prefix, "router advertisements started");
    Some(Watch {
        params,
        sent,
        socket,
        task,
    })
}

async fn advertise(socket: Arc<AsyncFd<Socket>>, params: Params, sent: Arc<AtomicU64>) {
    let mut initial = INITIAL_ADVERTS;
    let mut next = Instant::now();
    let mut last: Option<Instant> = None;
    let mut buf = [0u8; 1500];
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            readable = socket.readable() => {
                let Ok(mut guard) = readable else {
                    tokio::time::sleep(RETRY).await;
                    continue;
                };
                // A raw ICMPv6 socket reads the ICMPv6 message, without the IPv6 header.
                let Ok(Ok(n)) = guard.try_io(|s| s.get_ref().read(&mut buf)) else {
                    continue;
                };
                if !packet::is_solicitation(&buf[..n]) {
                    continue;
                }
                // Answered at once unless one went out just now (then a little later).
                let soon = last.map_or(Instant::now(), |l| l + MIN_DELAY_BETWEEN_RAS);
                next = next.min(soon.max(Instant::now()));
                continue;
            }
        }
        match send(&socket, &params, ROUTER_LIFETIME) {
            Ok(()) => {
                sent.fetch_add(1, Ordering::Relaxed);
                last = Some(Instant::now());
                next = Instant::now()
                    + if initial > 0 {
                        initial -= 1;
                        INITIAL_INTERVAL
                    } else {
                        jittered(INTERVAL)
                    };
            }
            Err(e) => {
                tracing::debug!("router advertisement on {} not sent yet: {e}", params.ifname);
                next = Instant::now() + RETRY;
            }
        }
    }
}

/// Between 3/4 of `interval` and `interval`, so that routers do not synchronise.
fn jittered(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    interval.mul_f64(0.75 + 0.25 * f64::from(nanos % 1000) / 1000.0)
}
