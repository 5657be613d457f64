//! The socket loop around the pure handler: receive a batch of requests, handle them,
//! make the batch's new leases durable with one fsync, then send the replies.
//! Addresses with no history are ARP-probed first; the requests that wait for a probe
//! are parked while other clients are served.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dhcproto::v4::{Message, MessageType};
use dhcproto::Encodable;
use netlink_packet_route::neighbour::NeighbourState;
use rtnetlink::Handle;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::arp::Prober;
use super::backlog::{self, Backlog};
use super::handler::{self, Destination, Ignored, Outcome, Reply, Scope, SERVER_PORT};
use super::pool::{Lease, Pool, Secs};
use super::store::LeaseStore;
use crate::dns::LeaseBook;
use crate::net::Nic;

/// How long an ARP probe waits for an answer before the address counts as free.
pub const PROBE_WAIT: Duration = Duration::from_millis(300);
/// Probes per request before giving up on it (the client will retry).
const PROBE_ATTEMPTS: u8 = 3;
/// Requests handled per batch (and per fsync).
const BATCH: usize = 256;
/// ARP probes pending at most: a flood of new clients (or of forged MACs) must not
/// grow them without bound. Far above a busy LAN's needs: 4096 in the 300 ms a probe
/// takes is over 13,000 new clients a second.
const MAX_PROBES: usize = 4096;
/// Requests waiting for one probe at most (a client's retransmissions, say).
const MAX_WAITING_PER_PROBE: usize = 8;
/// The DHCP socket's receive buffer: bursts of thousands of requests a second must
/// wait there, not be dropped, while a batch is fsynced.
pub const RECEIVE_BUFFER: usize = 4 << 20;
/// How often a lease file that cannot be written is tried again (a whole rewrite).
const LEASE_FILE_RETRY: Duration = Duration::from_secs(10);
/// How long after a failed compaction the next one is tried.
const COMPACTION_RETRY: Duration = Duration::from_secs(60);
/// A problem that repeats is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What the server did, for logs and metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub offers: AtomicU64,
    pub acks: AtomicU64,
    pub naks: AtomicU64,
    pub releases: AtomicU64,
    pub malformed: AtomicU64,
    pub ignored: AtomicU64,
    pub pool_exhausted: AtomicU64,
    pub probes: AtomicU64,
    /// ARP answers to our probes: each quarantined the address (a conflict) or was
    /// ignored, over the quarantine bounds.
    pub probe_answers: AtomicU64,
    pub probe_conflicts: AtomicU64,
    pub probe_answers_ignored: AtomicU64,
    /// Writes of the lease file that failed (appends, rewrites, compactions).
    pub lease_write_failures: AtomicU64,
    /// Requests dropped unanswered under overload: over the backlog's bounds (see
    /// `backlog`), or over the bound of pending ARP probes.
    pub dropped_overload: AtomicU64,
    pub dropped_probe_limit: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// At most one log line per `LOG_EVERY` for a problem that repeats, with a count of
/// the lines left out.
#[derive(Debug, Default)]
struct Quiet {
    last: Option<Instant>,
    suppressed: u64,
}

impl Quiet {
    /// `Some(lines left out since the last one)` when a line may be logged now.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

pub fn unix_now() -> Secs {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A running DHCP server; dropping the handle (or `stop`) ends it.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    pub view: View,
}

/// The leases as the status page shows them.
#[derive(Debug, Clone, Default)]
pub struct LeaseReport {
    pub pool_size: u32,
    /// Bound, unexpired leases.
    pub active: Vec<Lease>,
    /// Why lease changes cannot be written now (they are kept in memory meanwhile).
    pub lease_file_error: Option<String>,
    /// Addresses kept out of the pool now (declined, or answered ARP probes).
    pub quarantined: usize,
    /// Requests the kernel dropped for a full receive buffer, since the socket opened.
    pub socket_drops: u64,
}

/// A read-only window on a running server: its counters and, on request, its leases.
#[derive(Debug, Clone)]
pub struct View {
    pub counters: Arc<Counters>,
    requests: mpsc::Sender<oneshot::Sender<LeaseReport>>,
}

impl View {
    /// The current leases, asked of the server task (None when it has stopped).
    pub async fn leases(&self) -> Option<LeaseReport> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(tx).await.ok()?;
        rx.await.ok()
    }
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Opens the sockets and the lease store, then serves in a task.
/// `lan`: the LAN's name, which names its lease log in `state_dir`. The bound leases
/// are published in `book` (for the resolver) whenever they change.
pub fn start(
    lan_name: &str,
    scope: Scope,
    mut pool: Pool,
    lan: &Nic,
    state_dir: Option<PathBuf>,
    netlink: Handle,
    book: Arc<LeaseBook>,
) -> anyhow::Result<Running> {
    let socket = udp_socket(&lan.name)?;
    let socket_inode = socket_inode(&socket);
    let mac = lan
        .mac
        .ok_or_else(|| anyhow::anyhow!("{} has no MAC address", lan.name))?;
    let arp = Prober::open(lan.index, mac)?;
    let file_name = config::image::leases_file_name(lan_name);
    // A LAN without a lease log of its own yet (new, renamed, or the single-LAN form
    // rewritten as [[lan]]) takes over the leases of its prefix from the other logs.
    let taken = match &state_dir {
        Some(dir) if !dir.join(&file_name).exists() => super::store::TakeOver::read(dir, &file_name, scope.net),
        _ => super::store::TakeOver::default(),
    };
    let opened = state_dir
        .as_ref()
        .map(|dir| (dir, LeaseStore::open_named(dir, &file_name)));
    let counters = Arc::new(Counters::default());
    let mut lease_file_error = None;
    let store = match opened {
        // Leases that cannot be kept are no reason to leave the guests without addresses.
        // A file that cannot be read is not written over either: it may hold them.
        Some((dir, Err(e))) => {
            tracing::error!(
                "cannot read the lease file in {}: {e}; serving with leases in memory only",
                dir.display()
            );
            None
        }
        Some((dir, Ok((store, loaded)))) => {
            if let Some(aside) = &loaded.moved_aside {
                tracing::error!(
                    "the lease file was corrupt: moved it to {}; kept {} good records",
                    aside.display(),
                    loaded.leases.len()
                );
            }
            if loaded.torn_tail {
                tracing::warn!("the lease file ended in a partly written record (power cut?): dropped it");
            }
            let mut restored = 0;
            let taken_over = taken.leases.len();
            for lease in taken.leases.iter().cloned().chain(loaded.leases) {
                if scope.net.contains(&lease.addr) {
                    pool.restore(lease);
                    restored += 1;
                }
            }
            let mut store = store;
            if taken_over > 0 && loaded.write_error.is_none() {
                match store.compact(pool.leases()) {
                    Ok(()) => {
                        if let Err(e) = taken.retire(&file_name) {
                            tracing::warn!("cannot set aside the lease logs taken over into {file_name}: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("cannot write the leases taken over into {file_name}: {e}"),
                }
            }
            tracing::info!(lan = lan_name, restored, taken_over, file = %dir.join(&file_name).display(), "DHCP leases loaded");
            if let Some(e) = &loaded.write_error {
                tracing::error!(
                    "cannot write the lease file: {e}; keeping lease changes in memory and trying again every {} s",
                    LEASE_FILE_RETRY.as_secs()
                );
                bump(&counters.lease_write_failures);
                lease_file_error = Some(e.to_string());
            }
            Some(store)
        }
        None => None,
    };
    let failing = lease_file_error.is_some();
    let (stop_tx, stop_rx) = oneshot::channel();
    let (view_tx, view_rx) = mpsc::channel(4);
    let server = Server {
        lan_name: lan_name.to_string(),
        book,
        scope,
        pool,
        socket,
        arp,
        store,
        netlink,
        ifindex: lan.index,
        socket_inode,
        counters: counters.clone(),
        backlog: Backlog::new(backlog::CAPACITY),
        probing: HashMap::new(),
        probe_deadlines: VecDeque::new(),
        views: view_rx,
        records: Vec::new(),
        exhausted_log: Quiet::default(),
        quarantine_log: Quiet::default(),
        lease_file: LeaseFileHealth {
            retry_at: failing.then(|| Instant::now() + LEASE_FILE_RETRY),
            error: lease_file_error,
            compaction_after: None,
            // The line above counts as this minute's report.
            log: Quiet {
                last: failing.then(Instant::now),
                suppressed: 0,
            },
        },
    };
    tracing::info!(nic = %lan.name, "DHCP server listening");
    let task = tokio::spawn(server.run(stop_rx));
    Ok(Running {
        stop: Some(stop_tx),
        task,
        view: View {
            counters,
            requests: view_tx,
        },
    })
}

fn udp_socket(device: &str) -> anyhow::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    // Serve the LAN only: never answer on the WAN.
    s.bind_device(Some(device.as_bytes()))?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, SERVER_PORT)).into())?;
    match set_receive_buffer(&s, RECEIVE_BUFFER) {
        // The kernel reports twice the size asked for (its bookkeeping share).
        Ok((got, _)) if got >= 2 * RECEIVE_BUFFER => {
            tracing::info!(bytes = got, "DHCP socket receive buffer");
        }
        Ok((got, forced)) => tracing::warn!(
            bytes = got,
            wanted = 2 * RECEIVE_BUFFER,
            forced,
            "the DHCP socket got a smaller receive buffer than asked for: bursts of requests may be dropped"
        ),
        Err(e) => tracing::warn!("cannot size the DHCP socket's receive buffer: {e}"),
    }
    Ok(UdpSocket::from_std(s.into())?)
}

/// Sets the receive buffer of `s` to `bytes` with SO_RCVBUFFORCE, which may pass
/// net.core.rmem_max (SO_RCVBUF is silently capped by it) but needs CAP_NET_ADMIN;
/// without it, falls back to SO_RCVBUF with a log line. Returns the size the kernel
/// reports now and whether the forced size was taken.
#[allow(unsafe_code)]
pub fn set_receive_buffer(s: &Socket, bytes: usize) -> std::io::Result<(usize, bool)> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt(2) on an open socket with a pointer to a c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            std::ptr::from_ref(&value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let forced = rc == 0;
    if !forced {
        let e = std::io::Error::last_os_error();
        tracing::info!("cannot force the DHCP receive buffer past net.core.rmem_max ({e}): asking within it");
        s.set_recv_buffer_size(bytes)?;
    }
    Ok((s.recv_buffer_size()?, forced))
}

/// The inode of socket `fd`, as /proc/net/udp lists it.
fn socket_inode(fd: &impl std::os::fd::AsRawFd) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let link = link.to_str()?;
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Datagrams the kernel dropped at the UDP socket with inode `inode` (the "drops"
/// column of /proc/net/udp: a full receive buffer, mostly).
fn udp_drops(inode: u64) -> u64 {
    let table = std::fs::read_to_string("/proc/self/net/udp").unwrap_or_default();
    parse_udp_drops(&table, inode).unwrap_or(0)
}

fn parse_udp_drops(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(9)?.parse::<u64>().ok()? == inode).then(|| f.last()?.parse().ok())?
    })
}

struct Probe {
    deadline: Instant,
    waiting: Vec<(Message, u8)>,
}

struct Server {
    lan_name: String,
    book: Arc<LeaseBook>,
    scope: Scope,
    pool: Pool,
    socket: UdpSocket,
    arp: Prober,
    store: Option<LeaseStore>,
    netlink: Handle,
    ifindex: u32,
    /// The DHCP socket in /proc/net/udp, for its drop count.
    socket_inode: Option<u64>,
    counters: Arc<Counters>,
    /// Requests read and not handled yet.
    backlog: Backlog,
    probing: HashMap<Ipv4Addr, Probe>,
    /// When each probe ends, in the order they started (they all last `PROBE_WAIT`).
    probe_deadlines: VecDeque<(Instant, Ipv4Addr)>,
    views: mpsc::Receiver<oneshot::Sender<LeaseReport>>,
    /// Lease changes with no reply (releases), written with the next batch.
    records: Vec<Lease>,
    exhausted_log: Quiet,
    quarantine_log: Quiet,
    lease_file: LeaseFileHealth,
}

/// How writing the lease file goes.
#[derive(Debug, Default)]
struct LeaseFileHealth {
    /// Why the last write failed, while the store is behind memory.
    error: Option<String>,
    /// When to try a whole rewrite of a store that is behind.
    retry_at: Option<Instant>,
    /// No compaction before this (one failed).
    compaction_after: Option<Instant>,
    log: Quiet,
}

impl Server {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut buf = vec![0u8; 1500];
        self.publish_leases();
        loop {
            let next_deadline = self.probe_deadlines.front().map(|(t, _)| *t);
            let busy = !self.backlog.is_empty();
            let mut replies = Vec::new();
            tokio::select! {
                _ = &mut stop => break,
                Some(reply) = self.views.recv() => {
                    let now = unix_now();
                    let active = self.pool.active_leases(now).cloned().collect();
                    let _ = reply.send(LeaseReport {
                        pool_size: self.pool.size(),
                        active,
                        lease_file_error: self.lease_file.error.clone(),
                        quarantined: self.pool.quarantined(now),
                        socket_drops: self.socket_inode.map_or(0, udp_drops),
                    });
                }
                ready = self.socket.readable() => {
                    if ready.is_err() {
                        continue;
                    }
                    self.read_socket(&mut buf);
                }
                // Requests still queued: handle the next batch without waiting.
                () = std::future::ready(()), if busy => {}
                answered = self.arp.recv_sender() => {
                    if let Ok((ip, mac)) = answered {
                        self.probe_answered(ip, mac, &mut replies);
                    }
                }
                _ = sleep_until(self.lease_file.retry_at) => self.rewrite_lease_file(),
                _ = sleep_until(next_deadline) => {
                    let now = Instant::now();
                    while let Some((deadline, addr)) = self.probe_deadlines.front().copied() {
                        if deadline > now {
                            break;
                        }
                        self.probe_deadlines.pop_front();
                        // Not a probe that ended early (answered) and started again.
                        if self.probing.get(&addr).is_some_and(|p| p.deadline == deadline) {
                            if let Some(probe) = self.probing.remove(&addr) {
                                self.pool.mark_probed_free(addr);
                                for (msg, attempts) in probe.waiting {
                                    self.process(msg, attempts, &mut replies);
                                }
                            }
                        }
                    }
                }
            }
            self.handle_backlog(&mut replies);
            if !replies.is_empty() || !self.records.is_empty() {
                let changed = !self.records.is_empty() || replies.iter().any(|r| r.kind == MessageType::Ack);
                self.commit(&replies);
                // Before the ACKs go out: a client that looks its name up at once finds it.
                if changed {
                    self.publish_leases();
                }
                self.send(replies).await;
            }
        }
        if self.store.as_ref().is_some_and(|s| !s.is_current()) {
            self.rewrite_lease_file(); // a last chance for the changes held in memory
        }
        tracing::info!("DHCP server stopped");
    }

    /// Tells the resolver the bound leases now (their names follow them).
    fn publish_leases(&self) {
        let active = self.pool.active_leases(unix_now()).cloned().collect();
        self.book.publish(&self.lan_name, active);
    }

    /// Reads every datagram waiting at the socket (up to the backlog's capacity) into
    /// the backlog, which drops the excess.
    fn read_socket(&mut self, buf: &mut [u8]) {
        let now = Instant::now();
        for _ in 0..backlog::CAPACITY {
            let Ok((n, _from)) = self.socket.try_recv_from(buf) else {
                break;
            };
            match handler::decode(&buf[..n]) {
                Ok(msg) => {
                    if self.backlog.push(msg, now) {
                        bump(&self.counters.dropped_overload);
                    }
                }
                Err(_) => bump(&self.counters.malformed),
            }
        }
    }

    /// Handles the next batch of queued requests.
    fn handle_backlog(&mut self, replies: &mut Vec<Reply>) {
        let now = Instant::now();
        for _ in 0..BATCH {
            let (msg, stale) = self.backlog.pop(now);
            if stale > 0 {
                self.counters
                    .dropped_overload
                    .fetch_add(stale as u64, Ordering::Relaxed);
            }
            match msg {
                Some(msg) => self.process(msg, 0, replies),
                None => break,
            }
        }
    }

    /// Someone (`mac`) says it has `ip`: if that is an address being probed, keep it
    /// out of the pool, within the quarantine bounds; over them, the answer is ignored
    /// and the probe ends as if unanswered.
    fn probe_answered(&mut self, ip: Ipv4Addr, mac: config::MacAddr, replies: &mut Vec<Reply>) {
        let Some(probe) = self.probing.get_mut(&ip) else {
            return;
        };
        // A client waiting for this very address answered: it has it configured
        // already (a guest asking again for the address it kept, e.g. after the
        // router lost its leases). That is no conflict; its requests go first, so
        // that the others waiting for the address get another one.
        if probe.waiting.iter().any(|(m, _)| m.chaddr() == mac.0) {
            probe.waiting.sort_by_key(|(m, _)| m.chaddr() != mac.0);
            tracing::debug!(address = %ip, %mac, "the client asking for the address answered its probe");
            return;
        }
        bump(&self.counters.probe_answers);
        let now = unix_now();
        match self.pool.quarantine(ip, mac, now) {
            Ok(until) => {
                bump(&self.counters.probe_conflicts);
                tracing::warn!(address = %ip, %mac, quarantined_for_s = until - now, "a host already uses this address: not offering it");
                if let Some(probe) = self.probing.remove(&ip) {
                    for (msg, attempts) in probe.waiting {
                        self.process(msg, attempts, replies);
                    }
                }
            }
            Err(why) => {
                bump(&self.counters.probe_answers_ignored);
                if let Some(suppressed) = self.quarantine_log.ready() {
                    tracing::warn!(address = %ip, %mac, suppressed, "ignored an ARP answer to a probe: {why}");
                }
            }
        }
    }

    /// Handles one request; replies go to `replies`, probes are started.
    fn process(&mut self, msg: Message, attempts: u8, replies: &mut Vec<Reply>) {
        match handler::handle(&mut self.pool, &self.scope, &msg, unix_now()) {
            Outcome::Reply(reply) => {
                match reply.kind {
                    MessageType::Offer => bump(&self.counters.offers),
                    MessageType::Ack => bump(&self.counters.acks),
                    MessageType::Nak => bump(&self.counters.naks),
                    _ => {}
                }
                replies.push(reply);
            }
            Outcome::Probe(addr) if attempts < PROBE_ATTEMPTS => {
                if let Some(p) = self.probing.get_mut(&addr) {
                    if p.waiting.len() >= MAX_WAITING_PER_PROBE {
                        bump(&self.counters.dropped_probe_limit);
                    } else {
                        p.waiting.push((msg, attempts + 1));
                    }
                    return;
                }
                if self.probing.len() >= MAX_PROBES {
                    // The client retries; meanwhile the probes under way finish.
                    bump(&self.counters.dropped_probe_limit);
                    return;
                }
                bump(&self.counters.probes);
                if let Err(e) = self.arp.send_probe(addr) {
                    tracing::warn!(address = %addr, "ARP probe failed to send: {e}");
                }
                self.pool.probe_started(addr);
                let deadline = Instant::now() + PROBE_WAIT;
                self.probe_deadlines.push_back((deadline, addr));
                self.probing.insert(
                    addr,
                    Probe {
                        deadline,
                        waiting: vec![(msg, attempts + 1)],
                    },
                );
            }
            Outcome::Probe(_) => bump(&self.counters.ignored),
            Outcome::Record(lease) => {
                bump(&self.counters.releases);
                self.records.push(lease);
            }
            Outcome::Ignored(Ignored::Malformed(why)) => {
                bump(&self.counters.malformed);
                tracing::debug!("dropped a malformed DHCP packet: {why}");
            }
            Outcome::Ignored(Ignored::NoReply(why)) => {
                bump(&self.counters.ignored);
                tracing::debug!("no reply: {why}");
            }
            Outcome::Ignored(Ignored::PoolExhausted) => {
                bump(&self.counters.pool_exhausted);
                if self.exhausted_log.ready().is_some() {
                    tracing::warn!(
                        "DHCP pool exhausted: all {} addresses are leased or held; no offer made",
                        self.pool.size()
                    );
                }
            }
        }
    }

    /// Group commit: every lease acknowledged in this batch reaches the disk with one
    /// fsync before any reply is sent.
    fn commit(&mut self, replies: &[Reply]) {
        let records = std::mem::take(&mut self.records);
        let Some(store) = self.store.as_mut() else { return };
        // Behind after a failed write: the changes stay in memory until the retry
        // timer rewrites the whole table.
        if !store.is_current() {
            return;
        }
        let leases: Vec<&Lease> = replies
            .iter()
            .filter_map(|r| r.persist.as_ref())
            .chain(&records)
            .collect();
        if leases.is_empty() {
            return;
        }
        // The replies go out even when the disk fails: a router that stops handing out
        // addresses is worse than one that may forget some after a power cut.
        if let Err(e) = store.append(leases) {
            self.lease_file_failed("cannot write the lease file", &e);
            return;
        }
        let compaction_due = self.lease_file.compaction_after.is_none_or(|t| Instant::now() >= t);
        if compaction_due && store.wants_compaction(self.pool.leases().len()) {
            match store.compact(self.pool.leases()) {
                Ok(()) => self.lease_file.compaction_after = None,
                Err(e) => {
                    self.lease_file.compaction_after = Some(Instant::now() + COMPACTION_RETRY);
                    self.lease_file_failed("cannot compact the lease file", &e);
                }
            }
        }
    }

    /// Counts and logs (at most once a minute) a failed write; when it left the store
    /// behind, schedules a whole rewrite.
    fn lease_file_failed(&mut self, what: &str, e: &std::io::Error) {
        bump(&self.counters.lease_write_failures);
        let behind = self.store.as_ref().is_some_and(|s| !s.is_current());
        if behind {
            self.lease_file.error = Some(e.to_string());
            self.lease_file.retry_at = Some(Instant::now() + LEASE_FILE_RETRY);
        }
        if let Some(suppressed) = self.lease_file.log.ready() {
            let keeping = if behind {
                format!(
                    "; keeping lease changes in memory and trying again every {} s",
                    LEASE_FILE_RETRY.as_secs()
                )
            } else {
                String::new()
            };
            let since = if suppressed > 0 {
                format!(" ({suppressed} more such errors since the last report)")
            } else {
                String::new()
            };
            tracing::error!("{what}: {e}{keeping}{since}");
        }
    }

    /// Brings a store that is behind up to date by rewriting it from memory.
    fn rewrite_lease_file(&mut self) {
        self.lease_file.retry_at = None;
        let Some(store) = self.store.as_mut() else { return };
        match store.compact(self.pool.leases()) {
            Ok(()) => {
                self.lease_file.error = None;
                tracing::info!(leases = self.pool.leases().count(), "the lease file is written again");
            }
            Err(e) => self.lease_file_failed("cannot rewrite the lease file", &e),
        }
    }

    async fn send(&self, replies: Vec<Reply>) {
        for reply in replies {
            if let Destination::UnicastHw(to, mac) = reply.dest {
                // The client has no address yet: tell the kernel its MAC so the unicast
                // reply needs no ARP it could not answer.
                let add = self
                    .netlink
                    .neighbours()
                    .add(self.ifindex, IpAddr::V4(*to.ip()))
                    .link_layer_address(&mac.0)
                    .state(NeighbourState::Reachable)
                    .replace()
                    .execute()
                    .await;
                if let Err(e) = add {
                    tracing::debug!("neighbour entry for {}: {e}", to.ip());
                }
            }
            let bytes = match reply.message.to_vec() {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("cannot encode a DHCP reply: {e}");
                    continue;
                }
            };
            let to: SocketAddrV4 = reply.dest.socket_addr();
            if let Err(e) = self.socket.send_to(&bytes, to).await {
                tracing::debug!("sending a DHCP reply to {to}: {e}");
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_read_from_the_sockets_line_of_proc_net_udp() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  573: 00000000:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 48261 2 0000000000000000 13571
  574: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 48262 2 0000000000000000 0
";
        assert_eq!(parse_udp_drops(table, 48261), Some(13571));
        assert_eq!(parse_udp_drops(table, 48262), Some(0));
        assert_eq!(parse_udp_drops(table, 1), None);
    }

    #[test]
    fn the_receive_buffer_is_forced_past_rmem_max() {
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(212_992);
        let want = rmem_max + (1 << 20);
        let s = Socket::new(Domain::IPV4, Type::DGRAM, None).expect("socket");
        let (got, forced) = set_receive_buffer(&s, want).expect("set");
        // CAP_NET_ADMIN (bit 12) in the effective set: SO_RCVBUFFORCE must be taken.
        let net_admin = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|c| u64::from_str_radix(c.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << 12) != 0);
        if net_admin {
            assert!(forced);
        }
        if forced {
            assert!(got >= 2 * want, "asked for {want}, rmem_max {rmem_max}: got {got}");
        } else {
            assert!(got >= 2 * want.min(rmem_max), "got {got}");
        }
        let inode = socket_inode(&s).expect("a socket inode");
        assert!(inode > 0);
    }
}
