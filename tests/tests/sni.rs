//! Forwards by host name (TLS SNI, HTTP Host) in the namespace lab with the real
//! routerd: three LAN guests serve TLS with their own self-signed certificates on one
//! public address, and the internet host reaches each by name. Needs root, `openssl`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use testkit::http::{get, metric};
use testkit::lab::{Lab, Options, FAILOVER_IP, INET_IP, ROUTER_LAN_IP, VIRTUAL_MAC};
use testkit::netns::Netns;
use testkit::traffic::{tcp_connect, tcp_exchange, EchoServer};

const SHOP_IP: &str = "172.16.10.21";
const BLOG_IP: &str = "172.16.10.22";
const DEFAULT_IP: &str = "172.16.10.23";

/// The README's recipe: three web servers on one IP by name, HTTP by Host on port 80,
/// a forward with a PROXY protocol v2 header, and a plain forward next to them.
const CONFIG: &str = r#"
[wan]
interface = "wan"
mac = "02:00:00:00:00:10"
address = "203.0.113.10/32"
gateway = "203.0.113.254"

[lan]
interface = "lan"
address = "172.16.0.1/16"

[[forward]]
protocol = "tcp"
port = 443
host = "shop.example.com"
to = "172.16.10.21"

[[forward]]
protocol = "tcp"
port = 443
host = "*.blog.example.com"
to = "172.16.10.22"
to_port = 8443

[[forward]]
protocol = "tcp"
port = 443
to = "172.16.10.23"

[[forward]]
protocol = "tcp"
port = 80
host = "shop.example.com"
to = "172.16.10.21"

[[forward]]
protocol = "tcp"
port = 80
host = "*.blog.example.com"
to = "172.16.10.22"

[[forward]]
protocol = "tcp"
port = 8080
host = "shop.example.com"
to = "172.16.10.21"
to_port = 8081
proxy_protocol = true

[[forward]]
protocol = "tcp"
port = 22
to = "172.16.10.205"
"#;

/// A process in a lab namespace, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A LAN guest at `ip` (its default route via the router).
fn guest(lab: &Lab, name: &str, mac: &str, ip: &str) -> Netns {
    let ns = lab.add_lan_guest(name, mac);
    ns.ip(&["addr", "add", &format!("{ip}/16"), "dev", "eth0"]);
    ns.ip(&["route", "add", "default", "via", ROUTER_LAN_IP]);
    ns
}

/// `openssl s_server` in `ns` on `port` with a fresh self-signed certificate for `cn`.
fn tls_server(lab: &Lab, ns: &Netns, cn: &str, port: u16) -> Running {
    let (cert, key) = (lab.dir.join(format!("{cn}.crt")), lab.dir.join(format!("{cn}.key")));
    testkit::netns::sh(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN={cn} -keyout {} -out {} 2>/dev/null",
        key.display(),
        cert.display()
    ));
    let child = ns
        .command("openssl")
        .args(["s_server", "-quiet", "-www", "-accept", &port.to_string(), "-cert"])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("openssl s_server: {e}"));
    let running = Running(child);
    wait_listening(ns, port);
    running
}

/// Waits (bounded) until something listens on TCP `port` in `ns`.
fn wait_listening(ns: &Netns, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ns.sh("ss -Hltn").contains(&format!(":{port} ")) {
        assert!(Instant::now() < deadline, "nothing listens on {port} in {}", ns.name);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The subject of the certificate `from` sees at the public address for `name` (no
/// SNI when `None`), or what went wrong.
fn certificate_subject(from: &Netns, name: Option<&str>) -> String {
    let sni = name.map_or("-noservername".to_string(), |n| format!("-servername {n}"));
    from.sh(&format!(
        "echo | timeout 10 openssl s_client -connect {FAILOVER_IP}:443 {sni} 2>/dev/null | openssl x509 -noout -subject 2>&1 || true"
    ))
}

/// A request for `host` on the public port 80 over a raw connection: the echo server
/// behind answers with the request itself; `None` when the router closed unanswered.
fn http_by_host(from: &Netns, host: &str) -> Option<String> {
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut stream = tcp_connect(from, &format!("{FAILOVER_IP}:80")).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut buf = vec![0u8; request.len()];
    stream.read_exact(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn metrics(lab: &Lab) -> String {
    let (code, body) = get(&lab.guest, &format!("{ROUTER_LAN_IP}:80"), "/metrics").expect("metrics");
    assert_eq!(code, 200);
    body
}

fn new_lab() -> Lab {
    Lab::new(Options {
        wan_mac: Some(VIRTUAL_MAC),
    })
}

#[test]
fn each_name_reaches_its_guest_with_the_clients_address_and_unknown_names_are_refused() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = new_lab();
    let shop = guest(&lab, "shop", "02:00:00:00:01:21", SHOP_IP);
    let blog = guest(&lab, "blog", "02:00:00:00:01:22", BLOG_IP);
    let default = guest(&lab, "dflt", "02:00:00:00:01:23", DEFAULT_IP);
    let _tls = [
        tls_server(&lab, &shop, "shop.example.com", 443),
        tls_server(&lab, &blog, "blog.example.com", 8443),
        tls_server(&lab, &default, "default.example.com", 443),
    ];
    let shop_http = EchoServer::tcp(&shop, &format!("{SHOP_IP}:80"));
    let blog_http = EchoServer::tcp(&blog, &format!("{BLOG_IP}:80"));
    let shop_proxied = EchoServer::tcp(&shop, &format!("{SHOP_IP}:8081"));
    let ssh = EchoServer::tcp(&lab.web, "172.16.10.205:22");
    lab.start_routerd(CONFIG);

    // TLS by name: each guest's own certificate, a wildcard, the default.
    let subject = |name| certificate_subject(&lab.inet, name);
    assert!(subject(Some("shop.example.com")).contains("CN = shop.example.com"));
    assert!(subject(Some("SHOP.example.com")).contains("CN = shop.example.com"));
    assert!(subject(Some("a.blog.example.com")).contains("CN = blog.example.com"));
    assert!(subject(Some("x.y.blog.example.com")).contains("CN = blog.example.com"));
    assert!(subject(Some("blog.example.com")).contains("CN = default.example.com"));
    assert!(subject(Some("unknown.example.net")).contains("CN = default.example.com"));
    assert!(subject(None).contains("CN = default.example.com"));
    // curl as a user would: by name, to the public address.
    let curl = lab.inet.sh(&format!(
        "curl -sk -o /dev/null -w '%{{http_code}}' --max-time 10 --resolve shop.example.com:443:{FAILOVER_IP} https://shop.example.com/"
    ));
    assert_eq!(curl, "200");

    // HTTP by Host, and the guest sees the internet host as the client.
    let echoed = http_by_host(&lab.inet, "shop.example.com").expect("shop answers on 80");
    assert!(echoed.contains("Host: shop.example.com"));
    assert_eq!(shop_http.last_peer_ip().as_deref(), Some(INET_IP));
    assert!(http_by_host(&lab.inet, "www.blog.example.com").is_some());
    assert_eq!(blog_http.last_peer_ip().as_deref(), Some(INET_IP));
    // Port 80 has no default: an unknown name is closed unanswered.
    assert_eq!(http_by_host(&lab.inet, "unknown.example.net"), None);
    assert_eq!(
        shop_http.peers().len() + blog_http.peers().len(),
        2,
        "nothing reached a guest"
    );

    // PROXY protocol v2: the header with the client's address comes first.
    let mut stream = tcp_connect(&lab.inet, &format!("{FAILOVER_IP}:8080")).expect("connect 8080");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n")
        .expect("send");
    let mut header = [0u8; 28];
    stream.read_exact(&mut header).expect("the header first");
    assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(&header[16..20], &[198, 51, 100, 1], "the client's address");
    assert_eq!(&header[20..24], &[203, 0, 113, 10], "the public address");
    assert_eq!(&header[26..28], &8080u16.to_be_bytes());
    assert!(shop_proxied.peers().len() == 1);

    // A plain DNAT forward beside them works as before.
    let mut ssh_stream = tcp_connect(&lab.inet, &format!("{FAILOVER_IP}:22")).expect("connect 22");
    assert_eq!(tcp_exchange(&mut ssh_stream, "ssh").expect("echo"), "ssh");
    assert_eq!(ssh.last_peer_ip().as_deref(), Some(INET_IP));

    // Hairpin: a LAN guest reaches the services through the public address.
    assert!(certificate_subject(&lab.guest, Some("shop.example.com")).contains("CN = shop.example.com"));
    assert!(http_by_host(&lab.guest, "shop.example.com").is_some());
    assert_eq!(shop_http.last_peer_ip().as_deref(), Some(ROUTER_LAN_IP));

    let m = metrics(&lab);
    let value = |name: &str, labels: &[(&str, &str)]| metric(&m, name, labels).unwrap_or(0.0);
    assert!(
        value("router_by_name_connections_total", &[("host", "shop.example.com")]) >= 5.0,
        "{m}"
    );
    assert!(
        value("router_by_name_connections_total", &[("host", "default")]) >= 3.0,
        "{m}"
    );
    assert!(
        value("router_by_name_client_bytes_total", &[("host", "shop.example.com")]) > 0.0,
        "{m}"
    );
    assert!(
        value("router_by_name_service_bytes_total", &[("host", "*.blog.example.com")]) > 0.0,
        "{m}"
    );
    assert_eq!(
        value("router_by_name_rejected_total", &[("reason", "unknown_name")]),
        1.0,
        "{m}"
    );
}

#[test]
fn slow_clients_are_cut_while_others_are_served_and_a_reload_keeps_relayed_connections() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = new_lab();
    let shop = guest(&lab, "shop", "02:00:00:00:01:21", SHOP_IP);
    let blog = guest(&lab, "blog", "02:00:00:00:01:22", BLOG_IP);
    let default = guest(&lab, "dflt", "02:00:00:00:01:23", DEFAULT_IP);
    let _tls = [
        tls_server(&lab, &shop, "shop.example.com", 443),
        tls_server(&lab, &blog, "blog.example.com", 8443),
        tls_server(&lab, &default, "default.example.com", 443),
    ];
    let _shop_http = EchoServer::tcp(&shop, &format!("{SHOP_IP}:80"));
    lab.start_routerd(CONFIG);

    // One client sends a ClientHello a byte a second, another nothing at all.
    let hello_start = [0x16u8, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3];
    let dribbler = lab.inet.spawn(move || {
        let mut s = TcpStream::connect((FAILOVER_IP, 443)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
        let mut buf = [0u8; 64];
        for byte in hello_start.iter().cycle().take(60) {
            if s.write_all(&[*byte]).is_err() {
                return true;
            }
            match s.read(&mut buf) {
                Ok(0) => return true,
                Err(e) if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return true
                }
                _ => {}
            }
        }
        false
    });
    let silent = lab.inet.spawn(|| {
        let mut s = TcpStream::connect((FAILOVER_IP, 443)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(0) | Err(_))
    });
    // Meanwhile the others are served.
    for _ in 0..3 {
        assert!(certificate_subject(&lab.inet, Some("shop.example.com")).contains("CN = shop.example.com"));
    }
    assert!(
        dribbler.join().expect("dribbler"),
        "the byte-a-second client was never cut"
    );
    assert!(silent.join().expect("silent"), "the silent client was never cut");
    let m = metrics(&lab);
    assert_eq!(
        metric(&m, "router_by_name_rejected_total", &[("reason", "timeout")]),
        Some(2.0),
        "{m}"
    );

    // A relayed connection lives through a reload that changes the routes.
    let mut held = tcp_connect(&lab.inet, &format!("{FAILOVER_IP}:80")).expect("connect 80");
    let request = "GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n";
    assert_eq!(tcp_exchange(&mut held, request).expect("first"), request);
    let without_blog = CONFIG.replace(
        "[[forward]]\nprotocol = \"tcp\"\nport = 443\nhost = \"*.blog.example.com\"\nto = \"172.16.10.22\"\nto_port = 8443\n",
        "",
    );
    assert_ne!(without_blog, CONFIG);
    lab.reload(&without_blog);
    lab.wait_log("config applied", 1);
    assert_eq!(
        tcp_exchange(&mut held, "still there").expect("after the reload"),
        "still there"
    );
    // The listener follows the new config: the wildcard's names go to the default now.
    assert!(certificate_subject(&lab.inet, Some("a.blog.example.com")).contains("CN = default.example.com"));
}
