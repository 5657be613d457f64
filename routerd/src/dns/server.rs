//! The sockets of the resolver and the handling of one query: rate limit, local
//! names, cache, then upstream.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::batch::{Inbox, Outbox};
use super::cache::Cache;
use super::ratelimit::RateLimit;
use super::upstream::{self, UDP_PAYLOAD};
use super::wire::{self, PLAIN_UDP};
use super::zone::{wire_key, Local, Zone};
use super::{bump, Counters, LeaseBook, Setup};
use crate::dhcp::server::unix_now;

/// Questions waiting for upstream at once, over all LANs; past that, SERVFAIL at once.
const MAX_FORWARDING: usize = 512;
/// TCP clients at once, over all LANs.
const MAX_TCP: usize = 64;
/// How long a TCP client may stay silent before it is hung up on.
const TCP_IDLE: Duration = Duration::from_secs(10);

struct Resolver {
    setup: Setup,
    zone: RwLock<Arc<Zone>>,
    cache: Mutex<Cache>,
    limit: Mutex<RateLimit>,
    forwarding: Arc<Semaphore>,
    tcp: Arc<Semaphore>,
}

/// A running resolver; `stop` closes its sockets.
pub struct Running {
    pub setup: Setup,
    tasks: Vec<JoinHandle<()>>,
    pub view: View,
}

/// The resolver's counters (one per LAN, in the order of the config) and sizes.
#[derive(Clone)]
pub struct View {
    pub lans: Vec<(String, Arc<Counters>)>,
    resolver: Arc<Resolver>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("lans", &self.lans).finish_non_exhaustive()
    }
}

impl View {
    pub fn cached(&self) -> usize {
        lock(&self.resolver.cache).len()
    }

    pub fn local_names(&self) -> usize {
        self.resolver.zone.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Running {
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        // Awaited, so that the sockets are closed before a new resolver binds them.
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Binds UDP and TCP port 53 on each LAN address and serves. A LAN whose sockets
/// cannot be bound is logged and left out; the others are served.
pub fn start(setup: Setup, book: Arc<LeaseBook>) -> Running {
    let zone = Zone::build(&setup.statics, &book.snapshot());
    let resolver = Arc::new(Resolver {
        zone: RwLock::new(Arc::new(zone)),
        cache: Mutex::new(Cache::new(setup.cache_entries)),
        limit: Mutex::new(RateLimit::new(setup.rate_limit)),
        forwarding: Arc::new(Semaphore::new(MAX_FORWARDING)),
        tcp: Arc::new(Semaphore::new(MAX_TCP)),
        setup: setup.clone(),
    });
    let mut tasks = Vec::new();
    let mut lans = Vec::new();
    // Names follow the leases: rebuild the zone whenever a DHCP server publishes.
    let mut changed = book.subscribe();
    let r = resolver.clone();
    tasks.push(tokio::spawn(async move {
        while changed.changed().await.is_ok() {
            let zone = Zone::build(&r.setup.statics, &book.snapshot());
            *r.zone.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(zone);
        }
    }));
    for listen in &setup.listen {
        let counters = Arc::new(Counters::default());
        lans.push((listen.lan.clone(), counters.clone()));
        let v6 = listen.address6.map(|a| SocketAddr::from((a, 53)));
        for addr in std::iter::once(SocketAddr::from((listen.address, 53))).chain(v6) {
            match (udp_socket(addr, &listen.ifname), tcp_listener(addr, &listen.ifname)) {
                (Ok(udp), Ok(tcp)) => {
                    let udp = Arc::new(udp);
                    tasks.push(tokio::spawn(serve_udp(resolver.clone(), udp, counters.clone())));
                    tasks.push(tokio::spawn(serve_tcp(resolver.clone(), tcp, counters.clone())));
                    tracing::info!(lan = %listen.lan, %addr, "DNS resolver listening");
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(lan = %listen.lan, "the DNS resolver cannot listen on {addr}: {e}");
                }
            }
        }
    }
    Running {
        setup,
        tasks,
        view: View { lans, resolver },
    }
}

/// A socket for `addr` on the link `ifname`. An IPv6 one binds before the address is
/// usable (duplicate address detection takes a second or more after it is added).
fn socket(addr: SocketAddr, ifname: &str, kind: Type, protocol: Protocol) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
        s.set_freebind_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind_device(Some(ifname.as_bytes()))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn udp_socket(addr: SocketAddr, ifname: &str) -> std::io::Result<AsyncFd<std::net::UdpSocket>> {
    let s = socket(addr, ifname, Type::DGRAM, Protocol::UDP)?;
    // Room for a burst while the task is busy; past it the kernel drops, not us.
    let _ = s.set_recv_buffer_size(1 << 20);
    s.bind(&addr.into())?;
    let s: std::net::UdpSocket = s.into();
    // SAFETY: the socket is owned by the AsyncFd and stays open until it is dropped.
    #[allow(unsafe_code)]
    unsafe { AsyncFd::register(s) }.map_err(std::io::Error::from)
}

fn tcp_listener(addr: SocketAddr, ifname: &str) -> std::io::Result<TcpListener> {
    let s = socket(addr, ifname, Type::STREAM, Protocol::TCP)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    TcpListener::from_std(s.into())
}

async fn serve_udp(r: Arc<Resolver>, socket: Arc<AsyncFd<std::net::UdpSocket>>, counters: Arc<Counters>) {
    let mut inbox = Inbox::default();
    let mut outbox = Outbox::default();
    loop {
        let Ok(mut ready) = socket.readable().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let n = match ready.try_io(|s| inbox.recv(s.get_ref().as_raw_fd())) {
            Ok(Ok(n)) => n,
            // Would block (the readiness was stale) or a transient error.
            _ => continue,
        };
        drop(ready);
        for i in 0..n {
            let Some((bytes, from)) = inbox.get(i) else { continue };
            let out = outbox.next(from);
            match r.handle(bytes, from.ip(), &counters, false, out) {
                Handled::Wire => {}
                Handled::Drop => outbox.drop_last(),
                Handled::Reply(m) => match encode(&m, udp_limit(&m)) {
                    Some(bytes) => *out = bytes,
                    None => outbox.drop_last(),
                },
                Handled::Forward(req) => {
                    outbox.drop_last();
                    let Ok(permit) = r.forwarding.clone().try_acquire_owned() else {
                        bump(&counters.overloaded);
                        let m = error(&req, ResponseCode::ServFail);
                        if let Some(bytes) = encode(&m, udp_limit(&m)) {
                            *outbox.next(from) = bytes;
                        }
                        continue;
                    };
                    let (r, socket, counters) = (r.clone(), socket.clone(), counters.clone());
                    tokio::spawn(async move {
                        let m = r.forward(&req, &counters).await;
                        drop(permit);
                        if let Some(bytes) = encode(&m, udp_limit(&m)) {
                            // Non-blocking: a full socket buffer drops it, as for any reply.
                            let _ = socket.get_ref().send_to(&bytes, from);
                        }
                    });
                }
            }
        }
        outbox.flush(socket.get_ref().as_raw_fd());
    }
}

async fn serve_tcp(r: Arc<Resolver>, listener: TcpListener, counters: Arc<Counters>) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            continue;
        };
        // Over the limit, the connection is closed at once: the client retries.
        let Ok(permit) = r.tcp.clone().try_acquire_owned() else {
            continue;
        };
        let (r, counters) = (r.clone(), counters.clone());
        tokio::spawn(async move {
            let _ = serve_tcp_client(&r, stream, from.ip(), &counters).await;
            drop(permit);
        });
    }
}

async fn serve_tcp_client(
    r: &Resolver,
    mut stream: TcpStream,
    from: IpAddr,
    counters: &Counters,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf))
            .await
            .is_err()
        {
            return Ok(());
        }
        let reply = match r.handle(&buf, from, counters, true, &mut out) {
            Handled::Drop => return Ok(()),
            Handled::Wire => None,
            Handled::Reply(m) => Some(m),
            Handled::Forward(req) => Some(r.forward(&req, counters).await),
        };
        let bytes = match reply {
            None => std::mem::take(&mut out),
            Some(m) => match encode(&m, usize::from(u16::MAX)) {
                Some(bytes) => bytes,
                None => return Ok(()),
            },
        };
        let mut framed = u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await?;
    }
}

/// What to do with one datagram or TCP message.
enum Handled {
    Drop,
    /// The reply is in the output buffer.
    Wire,
    Reply(Message),
    /// Not ours, not cached: ask upstream (the request).
    Forward(Message),
}

impl Resolver {
    /// What to do with the query `bytes` from `from`; the reply in `out` when it says
    /// [`Handled::Wire`]. `tcp`: no UDP size limit.
    fn handle(&self, bytes: &[u8], from: IpAddr, counters: &Counters, tcp: bool, out: &mut Vec<u8>) -> Handled {
        bump(&counters.queries);
        let now = Instant::now();
        if !lock(&self.limit).allow(from, now) {
            bump(&counters.rate_limited);
            return Handled::Drop;
        }
        let zone = self.zone.read().unwrap_or_else(|e| e.into_inner()).clone();
        // The hot path: local names and cache hits of plain queries, on the wire. (A
        // name in the cache is never local: only names outside the local domains and
        // the private reverse zones go upstream, and those do not change while the
        // resolver runs.)
        if let Some(q) = wire::parse(bytes) {
            let limit = if tcp { usize::from(u16::MAX) } else { q.udp_limit() };
            if let Some(addrs) = zone.addresses(q.key.name(), unix_now()) {
                bump(&counters.local);
                q.local_reply(out, addrs, limit);
                return Handled::Wire;
            }
            if self.cached_reply(&q, now, limit, out, counters) {
                return Handled::Wire;
            }
        }
        let Ok(req) = Message::from_vec(bytes) else {
            bump(&counters.malformed);
            return Handled::Drop;
        };
        // Never answer an answer: that is how two resolvers loop.
        if req.metadata.message_type != MessageType::Query {
            bump(&counters.malformed);
            return Handled::Drop;
        }
        if req.metadata.op_code != OpCode::Query {
            bump(&counters.malformed);
            return Handled::Reply(error(&req, ResponseCode::NotImp));
        }
        let [query] = req.queries.as_slice() else {
            bump(&counters.malformed);
            return Handled::Reply(error(&req, ResponseCode::FormErr));
        };
        match zone.lookup(query.name(), query.query_type(), query.query_class(), unix_now()) {
            Local::Answer(records) => {
                bump(&counters.local);
                let mut m = response(&req);
                m.metadata.authoritative = true;
                m.answers = records;
                return Handled::Reply(m);
            }
            Local::NxDomain => {
                bump(&counters.local);
                let mut m = response(&req);
                m.metadata.authoritative = true;
                m.metadata.response_code = ResponseCode::NXDomain;
                return Handled::Reply(m);
            }
            Local::NotLocal => {}
        }
        // A query the hot path did not take (more records, say) may still be cached:
        // asked again as a plain one.
        let mut plain = Message::query();
        plain.metadata.id = req.metadata.id;
        plain.metadata.recursion_desired = req.metadata.recursion_desired;
        plain.metadata.checking_disabled = req.metadata.checking_disabled;
        plain.add_query(query.clone());
        if let Some(theirs) = &req.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(theirs.max_payload());
            plain.set_edns(edns);
        }
        let plain = plain.to_vec().unwrap_or_default();
        if let Some(q) = wire::parse(&plain) {
            let limit = if tcp { usize::from(u16::MAX) } else { q.udp_limit() };
            if self.cached_reply(&q, now, limit, out, counters) {
                return Handled::Wire;
            }
        }
        Handled::Forward(req)
    }

    /// Whether the cache holds the answer to `q`: then the reply is in `out`.
    fn cached_reply(
        &self,
        q: &wire::Question,
        now: Instant,
        limit: usize,
        out: &mut Vec<u8>,
        counters: &Counters,
    ) -> bool {
        q.start_reply(out, false, 0);
        let Some(hit) = lock(&self.cache).answer(q.key.as_bytes(), now, out) else {
            return false;
        };
        bump(&counters.cache_hits);
        out[3] |= hit.rcode;
        q.finish_reply(out, hit.answers, hit.authorities, limit);
        true
    }

    /// The answer to `req` from upstream (kept in the cache), or SERVFAIL.
    async fn forward(&self, req: &Message, counters: &Counters) -> Message {
        let Some(query) = req.queries.first() else {
            return error(req, ResponseCode::FormErr);
        };
        bump(&counters.forwarded);
        let started = Instant::now();
        let result = upstream::resolve(&self.setup.upstream, query).await;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        counters.upstream_micros.fetch_add(micros, Ordering::Relaxed);
        match result {
            Ok(answer) => {
                let mut key = wire_key(query.name());
                key.extend_from_slice(&u16::from(query.query_type()).to_be_bytes());
                key.extend_from_slice(&u16::from(query.query_class()).to_be_bytes());
                lock(&self.cache).insert(&key, query, &answer, Instant::now());
                let mut m = response(req);
                m.metadata.response_code = answer.metadata.response_code;
                m.metadata.authentic_data = false;
                m.answers = answer.answers;
                m.authorities = answer.authorities;
                m
            }
            Err(e) => {
                bump(&counters.upstream_failures);
                tracing::debug!(name = %query.name(), "upstream: {e:#}");
                error(req, ResponseCode::ServFail)
            }
        }
    }
}

/// An empty response to `req`: same ID, question and flags, recursion available.
fn response(req: &Message) -> Message {
    let mut m = Message::response(req.metadata.id, req.metadata.op_code);
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = req.metadata.checking_disabled;
    m.queries = req.queries.clone();
    if let Some(theirs) = &req.edns {
        // What both ends can take: `udp_limit` reads it back.
        let mut edns = Edns::new();
        edns.set_max_payload(theirs.max_payload().clamp(PLAIN_UDP as u16, UDP_PAYLOAD));
        m.set_edns(edns);
    }
    m
}

fn error(req: &Message, rcode: ResponseCode) -> Message {
    let mut m = response(req);
    m.metadata.response_code = rcode;
    m
}

/// The UDP size the client can take: what its EDNS says (within ours), else 512.
/// `m` is the response, which carries EDNS exactly when the request did.
fn udp_limit(m: &Message) -> usize {
    m.edns.as_ref().map_or(PLAIN_UDP, |e| usize::from(e.max_payload()))
}

/// `m` in wire format; over `limit` bytes, the truncated form (the client asks
/// again over TCP).
fn encode(m: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = m.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    m.truncate().to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};
    use std::net::Ipv4Addr;

    fn resolver(rate_limit: u32) -> Resolver {
        let config = config::Config::parse(
            "[wan]\ninterface = \"wan\"\naddress = \"203.0.113.10/32\"\ngateway = \"203.0.113.254\"\n[lan]\ninterface = \"lan\"\naddress = \"172.16.0.1/16\"\n[dns]\n[[dns.host]]\nname = \"nas\"\naddress = \"172.16.10.5\"\n",
            "router.toml",
        )
        .expect("valid");
        let mut setup = Setup::from_config(&config, &["lan".to_string()]).expect("on");
        setup.rate_limit = rate_limit;
        let zone = Zone::build(&setup.statics, &Default::default());
        Resolver {
            zone: RwLock::new(Arc::new(zone)),
            cache: Mutex::new(Cache::new(10)),
            limit: Mutex::new(RateLimit::new(setup.rate_limit)),
            forwarding: Arc::new(Semaphore::new(1)),
            tcp: Arc::new(Semaphore::new(1)),
            setup,
        }
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        m.to_vec().expect("encode")
    }

    /// `handle` over UDP, and the reply as the client decodes it.
    fn ask(r: &Resolver, bytes: &[u8], from: IpAddr, c: &Counters) -> Option<Message> {
        let mut out = Vec::new();
        match r.handle(bytes, from, c, false, &mut out) {
            Handled::Wire => Some(Message::from_vec(&out).expect("a valid reply")),
            Handled::Reply(m) => Some(m),
            Handled::Drop | Handled::Forward(_) => None,
        }
    }

    fn client() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(172, 16, 10, 50))
    }

    #[test]
    fn local_names_are_answered_authoritatively_and_others_go_upstream() {
        let r = resolver(0);
        let c = Counters::default();
        let m = ask(&r, &query("nas.lan.", RecordType::A), client(), &c).expect("answered here");
        assert!(m.metadata.authoritative && m.metadata.recursion_available);
        assert_eq!(m.answers[0].data.to_string(), "172.16.10.5");
        let m = ask(&r, &query("other.lan.", RecordType::A), client(), &c).expect("answered here");
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let mut out = Vec::new();
        assert!(matches!(
            r.handle(&query("example.net.", RecordType::A), client(), &c, false, &mut out),
            Handled::Forward(_)
        ));
        assert!(matches!(
            r.handle(b"junk", client(), &c, false, &mut out),
            Handled::Drop
        ));
        assert_eq!(c.local.load(Ordering::Relaxed), 2);
        assert_eq!(c.malformed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_flooding_client_is_dropped_past_its_rate() {
        let r = resolver(5);
        let c = Counters::default();
        let answered = (0..50)
            .filter(|_| ask(&r, &query("nas.lan.", RecordType::A), client(), &c).is_some())
            .count();
        assert_eq!(answered, 10);
        assert_eq!(c.rate_limited.load(Ordering::Relaxed), 40);
        let other = IpAddr::V4(Ipv4Addr::new(172, 16, 10, 51));
        assert!(ask(&r, &query("nas.lan.", RecordType::A), other, &c).is_some());
    }

    #[tokio::test]
    async fn no_upstream_is_a_quick_servfail() {
        let r = resolver(0);
        let c = Counters::default();
        let Handled::Forward(req) = r.handle(
            &query("example.net.", RecordType::A),
            client(),
            &c,
            false,
            &mut Vec::new(),
        ) else {
            panic!("forwarded");
        };
        let m = r.forward(&req, &c).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(c.upstream_failures.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_cache_hit_is_served_on_the_hot_path_and_to_a_query_it_does_not_take() {
        let r = resolver(0);
        let c = Counters::default();
        let name = Name::from_ascii("www.example.net.").expect("name");
        let q = Query::query(name.clone(), RecordType::A);
        let mut upstream = Message::response(1, OpCode::Query);
        upstream.answers.push(hickory_proto::rr::Record::from_rdata(
            name.clone(),
            300,
            hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(198, 51, 100, 80)),
        ));
        let mut key = wire_key(&name);
        key.extend_from_slice(&[0, 1, 0, 1]);
        lock(&r.cache).insert(&key, &q, &upstream, Instant::now());
        let m = ask(&r, &query("WWW.example.net.", RecordType::A), client(), &c).expect("from the cache");
        assert_eq!(m.answers[0].data.to_string(), "198.51.100.80");
        assert!(!m.metadata.authoritative && m.metadata.recursion_available);
        // Two records in the additional section: not a plain query; still a hit.
        let mut odd = Message::query();
        odd.metadata.id = 9;
        odd.add_query(q.clone());
        for _ in 0..2 {
            odd.additionals.push(hickory_proto::rr::Record::from_rdata(
                name.clone(),
                0,
                hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(10, 0, 0, 1)),
            ));
        }
        let odd = odd.to_vec().expect("encode");
        assert!(wire::parse(&odd).is_none());
        let m = ask(&r, &odd, client(), &c).expect("from the cache");
        assert_eq!((m.metadata.id, m.answers.len()), (9, 1));
        assert_eq!(c.cache_hits.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_big_answer_is_truncated_for_plain_udp() {
        let r = resolver(0);
        let req = Message::from_vec(&query("nas.lan.", RecordType::A)).expect("decode");
        let mut m = response(&req);
        for i in 0..60u8 {
            m.answers.push(hickory_proto::rr::Record::from_rdata(
                Name::from_ascii("nas.lan.").expect("name"),
                0,
                hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A::new(172, 16, 10, i)),
            ));
        }
        let _ = r;
        let bytes = encode(&m, udp_limit(&m)).expect("encode");
        assert!(bytes.len() <= PLAIN_UDP);
        assert!(Message::from_vec(&bytes).expect("decode").metadata.truncation);
    }
}
