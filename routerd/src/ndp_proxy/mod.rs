//! The NDP proxy (OVH's case): the hoster's router treats the whole /64 as on its
//! segment and delivers to an address only once something there answers its neighbour
//! solicitation for it. The router answers for its LAN hosts: a proxy entry on the WAN
//! (`ip -6 neigh add proxy X dev wan`) per LAN host address; the LAN's /64 route then
//! carries the packets to it.
//!
//! The addresses are learned, not configured: from duplicate address detection on the
//! LAN (see [`dad`]) and from the LAN's neighbour table. Each proxied address is probed
//! now and then, so that the kernel's neighbour unreachability detection notices a
//! host that left (its entry turns FAILED); its proxy entry then goes.

mod dad;

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv6Net;
use rtnetlink::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::net::v6;

/// How often the neighbour tables and proxy entries are compared.
const TICK: Duration = Duration::from_secs(1);
/// A DAD-learned address is proxied this long before the neighbour table must show it.
const GRACE: Duration = Duration::from_secs(10);
/// How often each proxied address is probed (so that a host that left is noticed).
const PROBE_EVERY: Duration = Duration::from_secs(10);
/// The discard port: a probe needs only the kernel to resolve the address.
const PROBE_PORT: u16 = 9;

/// One LAN whose hosts are proxied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lan6 {
    pub index: u32,
    pub ifname: String,
    pub prefix: Ipv6Net,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub wan_index: u32,
    pub wan_name: String,
    pub lans: Vec<Lan6>,
    /// The router's own v6 addresses (never proxied: the kernel answers for them).
    pub own: Vec<Ipv6Addr>,
}

/// The running proxy.
pub struct Watch {
    pub params: Params,
    /// The addresses answered for on the WAN now (for the status page).
    pub proxied: Arc<Mutex<BTreeSet<Ipv6Addr>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Keeps `current` when it proxies the same, else starts anew. Proxy entries left by
/// an earlier run are taken over (kept while their hosts are there).
pub fn ensure(current: Option<Watch>, handle: &Handle, params: Params) -> Watch {
    if let Some(w) = current.filter(|w| w.params == params) {
        return w;
    }
    let (tx, rx) = mpsc::channel(64);
    let mut tasks = Vec::new();
    for lan in &params.lans {
        match dad::DadSocket::open(lan.index) {
            Ok(socket) => {
                let tx = tx.clone();
                let (ifname, prefix) = (lan.ifname.clone(), lan.prefix);
                tasks.push(tokio::spawn(async move {
                    loop {
                        match socket.recv().await {
                            Ok(ip) if prefix.contains(&ip) => {
                                if tx.send(ip).await.is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("hearing address detection on {ifname} stopped: {e}");
                                return;
                            }
                        }
                    }
                }));
            }
            // The neighbour table still teaches the addresses, only later.
            Err(e) => tracing::warn!("cannot hear address detection on {}: {e}", lan.ifname),
        }
    }
    let proxied = Arc::new(Mutex::new(BTreeSet::new()));
    tasks.push(tokio::spawn(run(handle.clone(), params.clone(), rx, proxied.clone())));
    tracing::info!(wan = %params.wan_name, "NDP proxy started");
    Watch { params, proxied, tasks }
}

async fn run(
    handle: Handle,
    params: Params,
    mut learned_rx: mpsc::Receiver<Ipv6Addr>,
    proxied: Arc<Mutex<BTreeSet<Ipv6Addr>>>,
) {
    let probe = UdpSocket::bind("[::]:0")
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .map_err(|e| tracing::warn!("the NDP proxy cannot probe its hosts: {e}"))
        .ok();
    // Address -> when DAD last showed it.
    let mut learned: HashMap<Ipv6Addr, Instant> = HashMap::new();
    // Address -> when it was last probed.
    let mut probed: HashMap<Ipv6Addr, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(ip) = learned_rx.recv() => {
                tracing::debug!(%ip, "address detection heard on the LAN");
                learned.insert(ip, Instant::now());
                // Probe it once its DAD is over (about a second) rather than a tick late.
                probed.insert(ip, Instant::now() - PROBE_EVERY + Duration::from_secs(2));
            }
        }
        let now = Instant::now();
        let mut present = BTreeSet::new();
        let mut known = BTreeSet::new();
        for lan in &params.lans {
            match v6::lan_hosts(&handle, lan.index, lan.prefix).await {
                Ok(hosts) => {
                    for h in hosts {
                        known.insert(h.ip);
                        if h.present {
                            present.insert(h.ip);
                        }
                    }
                }
                Err(e) => tracing::warn!("the NDP proxy cannot read the neighbours of {}: {e:#}", lan.ifname),
            }
        }
        learned.retain(|_, at| now.duration_since(*at) < GRACE);
        let mut want: BTreeSet<Ipv6Addr> = present
            .iter()
            .chain(learned.keys().filter(|ip| !known.contains(ip) || present.contains(ip)))
            .copied()
            .collect();
        want.retain(|ip| !params.own.contains(ip));
        probed.retain(|ip, _| want.contains(ip));
        if let Some(socket) = &probe {
            for ip in &want {
                let due = probed.get(ip).is_none_or(|at| now.duration_since(*at) >= PROBE_EVERY);
                if due {
                    let _ = socket.send_to(b"", SocketAddrV6::new(*ip, PROBE_PORT, 0, 0));
                    probed.insert(*ip, now);
                }
            }
        }
        let have: BTreeSet<Ipv6Addr> = match v6::proxies(&handle, params.wan_index).await {
            Ok(p) => p.into_iter().collect(),
            Err(e) => {
                tracing::warn!("the NDP proxy cannot read its entries: {e:#}");
                continue;
            }
        };
        for ip in want.difference(&have) {
            match v6::add_proxy(&handle, params.wan_index, *ip).await {
                Ok(()) => tracing::info!(%ip, wan = %params.wan_name, "NDP proxy: answering for a LAN host"),
                Err(e) => tracing::warn!("NDP proxy: {e:#}"),
            }
        }
        for ip in have.difference(&want) {
            match v6::del_proxy(&handle, params.wan_index, *ip).await {
                Ok(()) => tracing::info!(%ip, wan = %params.wan_name, "NDP proxy: the LAN host is gone"),
                Err(e) => tracing::warn!("NDP proxy: {e:#}"),
            }
        }
        *proxied.lock().unwrap_or_else(|e| e.into_inner()) = want;
    }
}
