//! Forwards by host name: routerd listens on each public address and port that has
//! forwards with a `host`, reads only as far as the TLS ClientHello's server name or
//! the first HTTP request's Host header, connects to the chosen LAN host and relays the
//! bytes both ways untouched (TLS stays with the services).
//!
//! The LAN host sees the client's own address: the connection to it is made from that
//! address (`IP_TRANSPARENT`); the firewall marks the replies that belong to such a
//! socket and policy routing delivers them locally (see `plan::PROXY_TABLE`). A client
//! in a LAN (hairpin) is connected from the router's LAN address instead, as a DNAT
//! forward's hairpin is: a reply to a LAN address would not come back through the
//! router. With `proxy_protocol`, a PROXY protocol v2 header carries the address.
//!
//! Every connection is a task of its own, bounded in number (in all and per client
//! address) and in the time it may take to name its host; a reload changes what the
//! listeners route to and leaves relayed connections alone.

pub mod sniff;
pub mod splice;
pub mod stats;

pub use stats::{HostCounters, Reason, Stats};

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv4Net;
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use config::byname::HostPattern;
use config::Config;

use sniff::{Sniff, MAX_BUFFERED};
use splice::Pipes;

/// The relay's pipes, shared by every connection.
static PIPES: Pipes = Pipes::new(splice::PIPE_SIZE);

/// How long a client has to name its host (send its ClientHello or request headers)
/// from the moment it is accepted: one that sends nothing, or a byte a second, is cut.
pub const NAME_DEADLINE: Duration = Duration::from_secs(5);
/// How long connecting to the LAN host may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Relayed connections at once, in all and per client address.
pub const MAX_CONNECTIONS: usize = 4096;
pub const MAX_PER_CLIENT: usize = 256;
/// Two sockets per connection, and two pipes (of two ends) while it moves bytes both
/// ways; and the daemon's own.
const OPEN_FILES: u64 = 6 * MAX_CONNECTIONS as u64 + 1024;

/// Where one forward of a named port goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The forward's `host`, or `default`: the label of its counters.
    pub label: String,
    pub to: SocketAddrV4,
    pub proxy_protocol: bool,
}

/// The forwards of one public address and port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortRoutes {
    exact: HashMap<String, Target>,
    /// Longest suffix first: the most specific wildcard wins.
    wildcards: Vec<(HostPattern, Target)>,
    default: Option<Target>,
    /// Clients in these prefixes are connected from the router's LAN address.
    lans: Vec<Ipv4Net>,
}

impl PortRoutes {
    /// The forward for `name`: an exact name, else the most specific wildcard, else the
    /// port's default.
    pub fn pick(&self, name: Option<&str>) -> Option<&Target> {
        let by_name = name.and_then(|n| {
            self.exact
                .get(n)
                .or_else(|| self.wildcards.iter().find(|(p, _)| p.matches(n)).map(|(_, t)| t))
        });
        by_name.or(self.default.as_ref())
    }

    fn in_lan(&self, ip: Ipv4Addr) -> bool {
        self.lans.iter().any(|n| n.contains(&ip))
    }
}

/// What the proxy serves for `config`: each named port with its forwards.
pub fn routes(config: &Config) -> Vec<(SocketAddrV4, PortRoutes)> {
    config
        .named_ports()
        .into_iter()
        .map(|(public, port)| {
            let mut routes = PortRoutes {
                lans: config.lans.iter().map(|l| l.address.trunc()).collect(),
                ..PortRoutes::default()
            };
            let here = config
                .forwards
                .iter()
                .filter(|f| f.public == public && f.ports.first == port && config.proxied(f));
            for f in here {
                let target = Target {
                    label: f.host.as_ref().map_or_else(|| "default".to_string(), |h| h.to_string()),
                    to: SocketAddrV4::new(f.to, f.to_ports.first),
                    proxy_protocol: f.proxy_protocol,
                };
                match &f.host {
                    Some(HostPattern::Exact(name)) => {
                        routes.exact.insert(name.clone(), target);
                    }
                    Some(pattern) => routes.wildcards.push((pattern.clone(), target)),
                    None => routes.default = Some(target),
                }
            }
            routes
                .wildcards
                .sort_by_key(|(p, _)| std::cmp::Reverse(p.to_string().len()));
            (SocketAddrV4::new(public, port), routes)
        })
        .collect()
}

/// One listening public address and port.
struct Listener {
    addr: SocketAddrV4,
    routes: watch::Sender<Arc<PortRoutes>>,
    accepting: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Stops accepting; the connections it handed off are tasks of their own.
        self.accepting.abort();
    }
}

/// The proxy's listeners and what they share.
pub struct Proxy {
    listeners: Vec<Listener>,
    pub stats: Arc<Stats>,
    limits: Arc<Limits>,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy {
            listeners: Vec::new(),
            stats: Arc::default(),
            limits: Arc::new(Limits {
                total: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
                per_client: Mutex::default(),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for the forwards by name")]
pub struct ListenError {
    addr: SocketAddrV4,
    source: io::Error,
}

impl Proxy {
    /// Listens on exactly the named ports of `config`, routing by its forwards: a port
    /// that stays keeps its socket (and its connections), with the new routes.
    pub fn ensure(&mut self, config: &Config) -> Vec<ListenError> {
        let wanted = routes(config);
        self.listeners.retain(|l| wanted.iter().any(|(a, _)| *a == l.addr));
        if !wanted.is_empty() {
            raise_open_files_limit();
        }
        let mut errors = Vec::new();
        for (addr, routes) in wanted {
            let routes = Arc::new(routes);
            if let Some(l) = self.listeners.iter().find(|l| l.addr == addr) {
                l.routes.send_replace(routes);
                continue;
            }
            match listen(addr) {
                Ok(listener) => {
                    let (tx, rx) = watch::channel(routes);
                    let accepting =
                        tokio::spawn(accept_loop(listener, addr, rx, self.stats.clone(), self.limits.clone()));
                    tracing::info!("forwards by name: listening on {addr}");
                    self.listeners.push(Listener {
                        addr,
                        routes: tx,
                        accepting,
                    });
                }
                Err(source) => errors.push(ListenError { addr, source }),
            }
        }
        errors
    }
}

/// Each relayed connection holds two sockets: make room for [`MAX_CONNECTIONS`].
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < OPEN_FILES {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, OPEN_FILES, hard.max(OPEN_FILES)) {
                tracing::warn!("cannot raise the open files limit to {OPEN_FILES}: {e}");
            }
        }
    }
}

fn listen(addr: SocketAddrV4) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    // A restarted routerd binds again while old connections linger in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V4(addr).into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// The bounds on connections at once.
struct Limits {
    total: Arc<Semaphore>,
    per_client: Mutex<HashMap<Ipv4Addr, usize>>,
}

/// A connection's place within the limits, given back on drop.
struct Admitted {
    limits: Arc<Limits>,
    client: Ipv4Addr,
    _total: OwnedSemaphorePermit,
}

impl Limits {
    fn admit(self: &Arc<Self>, client: Ipv4Addr) -> Option<Admitted> {
        let total = self.total.clone().try_acquire_owned().ok()?;
        let mut per_client = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_client.entry(client).or_insert(0);
        if *count >= MAX_PER_CLIENT {
            return None;
        }
        *count += 1;
        Some(Admitted {
            limits: self.clone(),
            client,
            _total: total,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_client = self.limits.per_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    public: SocketAddrV4,
    routes: watch::Receiver<Arc<PortRoutes>>,
    stats: Arc<Stats>,
    limits: Arc<Limits>,
) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: the backlog waits meanwhile.
                tracing::warn!("forwards by name on {public}: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let SocketAddr::V4(peer) = peer else { continue };
        let Some(admitted) = limits.admit(*peer.ip()) else {
            stats.reject(Reason::Limit);
            continue; // dropping the stream closes it
        };
        let routes = routes.borrow().clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            relay(client, peer, public, &routes, &stats).await;
            drop(admitted);
        });
    }
}

/// Reads until the first bytes name a host (or cannot), at most [`MAX_BUFFERED`].
async fn read_name(client: &mut TcpStream) -> io::Result<(Vec<u8>, Option<String>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let room = MAX_BUFFERED - buf.len();
        let n = client.read(&mut chunk[..room.min(4096)]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match sniff::sniff(&buf) {
            Sniff::Done(name) => return Ok((buf, name)),
            Sniff::NeedMore if buf.len() >= MAX_BUFFERED => return Ok((buf, None)),
            Sniff::NeedMore => {}
        }
    }
}

async fn relay(mut client: TcpStream, peer: SocketAddrV4, public: SocketAddrV4, routes: &PortRoutes, stats: &Stats) {
    // Boxed: its read buffer is not kept in this future's state for the whole relay.
    let reading = Box::pin(read_name(&mut client));
    let (first, name) = match tokio::time::timeout(NAME_DEADLINE, reading).await {
        Ok(Ok(read)) => read,
        Ok(Err(_)) => return, // the client left or broke the connection first
        Err(_) => {
            stats.reject(Reason::Timeout);
            return;
        }
    };
    let Some(target) = routes.pick(name.as_deref()) else {
        stats.reject(if name.is_some() {
            Reason::UnknownName
        } else {
            Reason::NoName
        });
        tracing::debug!(%peer, ?name, "forwards by name on {public}: no forward for this name");
        return;
    };
    // A LAN client's replies would not come back through the router from its own
    // address; with a PROXY header the service learns the address from that.
    let transparent = !target.proxy_protocol && !routes.in_lan(*peer.ip());
    let connecting = connect(target.to, transparent.then_some(*peer.ip()));
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            stats.reject(Reason::Unreachable);
            tracing::warn!(
                "forwards by name: cannot connect to {} for {}: {e}",
                target.to,
                target.label
            );
            return;
        }
        Err(_) => {
            stats.reject(Reason::Unreachable);
            tracing::warn!(
                "forwards by name: {} did not answer for {} within {CONNECT_TIMEOUT:?}",
                target.to,
                target.label
            );
            return;
        }
    };
    let counters = stats.host(&target.label);
    counters.connections.fetch_add(1, Ordering::Relaxed);
    counters.active.fetch_add(1, Ordering::Relaxed);
    let mut sent = Ok(());
    if target.proxy_protocol {
        sent = upstream.write_all(&proxy_v2_header(peer, public)).await;
    }
    if sent.is_ok() {
        sent = upstream.write_all(&first).await;
    }
    if sent.is_ok() {
        counters
            .bytes_from_clients
            .fetch_add(first.len() as u64, Ordering::Relaxed);
    }
    // Its buffers go before the relay: an idle connection holds none.
    drop(first);
    if sent.is_ok() {
        // TLS handshakes and interactive protocols wait on each small write.
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        // Ends when both sides have closed (or one fails).
        let _ = splice::relay(
            &client,
            &upstream,
            &PIPES,
            &counters.bytes_from_clients,
            &counters.bytes_to_clients,
        )
        .await;
    }
    counters.active.fetch_sub(1, Ordering::Relaxed);
}

/// Connects to the LAN host, from `from` (the client's address) when given.
async fn connect(to: SocketAddrV4, from: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = from {
        let raw = socket2::SockRef::from(&socket);
        raw.set_ip_transparent_v4(true)?;
        // A port at bind(2), not connect(2) (IP_BIND_ADDRESS_NO_PORT): Linux gives
        // bind odd ports first and connect even ones, so the proxy's connections
        // from a client's address stay off the ports that client (if Linux) uses
        // itself, say through a DNAT forward to the same service.
        socket.bind(SocketAddr::V4(SocketAddrV4::new(ip, 0)))?;
    }
    socket.connect(SocketAddr::V4(to)).await
}

/// The PROXY protocol v2 header of a TCP over IPv4 connection from `client` to `server`.
pub fn proxy_v2_header(client: SocketAddrV4, server: SocketAddrV4) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY
    h.push(0x11); // AF_INET, STREAM
    h.extend(12u16.to_be_bytes());
    h.extend(client.ip().octets());
    h.extend(server.ip().octets());
    h.extend(client.port().to_be_bytes());
    h.extend(server.port().to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(forwards: &str) -> Config {
        let text = format!("[wan]\ninterface = \"wan\"\naddress = \"203.0.113.10/32\"\ngateway = \"203.0.113.254\"\n[lan]\naddress = \"172.16.0.1/16\"\n{forwards}");
        Config::parse(&text, "router.toml").expect("valid")
    }

    const BY_NAME: &str = "[[forward]]\nport = 443\nhost = \"shop.example.com\"\nto = \"172.16.10.21\"\n\
        [[forward]]\nport = 443\nhost = \"*.blog.example.com\"\nto = \"172.16.10.22\"\nto_port = 8443\n\
        [[forward]]\nport = 443\nhost = \"*.a.blog.example.com\"\nto = \"172.16.10.24\"\n\
        [[forward]]\nprotocol = \"both\"\nport = 443\nto = \"172.16.10.23\"\n\
        [[forward]]\nport = 80\nhost = \"shop.example.com\"\nto = \"172.16.10.21\"\nproxy_protocol = true\n\
        [[forward]]\nport = 22\nto = \"172.16.10.21\"\n";

    #[test]
    fn exact_names_win_over_wildcards_the_most_specific_wildcard_over_others_then_the_default() {
        let all = routes(&config(BY_NAME));
        let ports: Vec<String> = all.iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(ports, ["203.0.113.10:443", "203.0.113.10:80"]);
        let r443 = &all[0].1;
        let to = |name: Option<&str>| r443.pick(name).map(|t| t.to.to_string());
        assert_eq!(to(Some("shop.example.com")).as_deref(), Some("172.16.10.21:443"));
        assert_eq!(to(Some("x.blog.example.com")).as_deref(), Some("172.16.10.22:8443"));
        assert_eq!(to(Some("x.a.blog.example.com")).as_deref(), Some("172.16.10.24:443"));
        assert_eq!(to(Some("blog.example.com")).as_deref(), Some("172.16.10.23:443"));
        assert_eq!(to(None).as_deref(), Some("172.16.10.23:443"));
        let r80 = &all[1].1;
        assert!(r80.pick(Some("other.example.com")).is_none());
        assert!(r80.pick(Some("shop.example.com")).is_some_and(|t| t.proxy_protocol));
        assert!(r443.in_lan(Ipv4Addr::new(172, 16, 10, 50)) && !r443.in_lan(Ipv4Addr::new(198, 51, 100, 1)));
    }

    #[test]
    fn each_public_address_has_its_own_names() {
        let text = format!(
            "[wan]\ninterface = \"wan\"\naddress = \"203.0.113.10/32\"\ngateway = \"203.0.113.254\"\nmore_addresses = [\"203.0.113.11/32\"]\n[lan]\naddress = \"172.16.0.1/16\"\n{}",
            "[[forward]]\nport = 443\nhost = \"a.example.com\"\nto = \"172.16.10.21\"\n\
             [[forward]]\npublic = \"203.0.113.11\"\nport = 443\nhost = \"a.example.com\"\nto = \"172.16.10.22\"\n\
             [[forward]]\npublic = \"203.0.113.11\"\nport = 443\nto = \"172.16.10.23\"\n"
        );
        let all = routes(&Config::parse(&text, "router.toml").expect("valid"));
        let to = |i: usize, name| all[i].1.pick(Some(name)).map(|t| t.to.ip().to_string());
        assert_eq!(all[0].0.to_string(), "203.0.113.10:443");
        assert_eq!(to(0, "a.example.com").as_deref(), Some("172.16.10.21"));
        assert_eq!(to(0, "b.example.com"), None);
        assert_eq!(all[1].0.to_string(), "203.0.113.11:443");
        assert_eq!(to(1, "a.example.com").as_deref(), Some("172.16.10.22"));
        assert_eq!(to(1, "b.example.com").as_deref(), Some("172.16.10.23"));
    }

    #[test]
    fn a_config_without_names_has_nothing_for_the_proxy() {
        assert!(routes(&config("[[forward]]\nport = 443\nto = \"172.16.10.21\"\n")).is_empty());
    }

    #[test]
    fn the_proxy_v2_header_is_the_specs_bytes() {
        let h = proxy_v2_header(
            "198.51.100.1:40000".parse().expect("ok"),
            "203.0.113.10:443".parse().expect("ok"),
        );
        assert_eq!(
            h,
            [
                0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c, 198,
                51, 100, 1, 203, 0, 113, 10, 0x9c, 0x40, 0x01, 0xbb
            ]
        );
    }

    #[test]
    fn limits_hold_per_client_and_give_back_on_drop() {
        let limits = Arc::new(Limits {
            total: Arc::new(Semaphore::new(MAX_PER_CLIENT + 1)),
            per_client: Mutex::default(),
        });
        let a = Ipv4Addr::new(198, 51, 100, 1);
        let held: Vec<Admitted> = (0..MAX_PER_CLIENT).map_while(|_| limits.admit(a)).collect();
        assert_eq!(held.len(), MAX_PER_CLIENT);
        assert!(limits.admit(a).is_none(), "per client");
        let b = limits.admit(Ipv4Addr::new(198, 51, 100, 2)).expect("another client");
        assert!(limits.admit(Ipv4Addr::new(198, 51, 100, 3)).is_none(), "in all");
        drop(b);
        drop(held);
        assert!(limits.admit(a).is_some());
        assert!(limits.per_client.lock().expect("lock").len() <= 1);
    }
}
