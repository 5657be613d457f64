//! DNS in the lab: `dig` from a namespace, a guest's resolv.conf, and dnsmasq as the
//! upstream resolver (in the internet namespace) or as the reference in benchmarks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{run, Netns};

/// What `dig` got: the status of the answer (`NOERROR`, `NXDOMAIN`, ...; `NOANSWER`
/// when no answer came at all) and the data of the answer records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dig {
    pub status: String,
    pub answers: Vec<String>,
    pub flags: String,
}

/// `dig @server ARGS` in `ns`: one try, two seconds.
pub fn dig(ns: &Netns, server: &str, args: &[&str]) -> Dig {
    let out = ns
        .command("dig")
        .arg(format!("@{server}"))
        .args(["+time=2", "+tries=1", "+noall", "+comments", "+answer"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("dig: {e}"));
    parse_dig(&String::from_utf8_lossy(&out.stdout))
}

fn parse_dig(text: &str) -> Dig {
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("NOANSWER")
        .to_string();
    let flags = text
        .lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_default()
        .to_string();
    let answers = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    Dig { status, answers, flags }
}

/// `/etc/netns/<ns>/resolv.conf`, which `ip netns exec` puts in place of
/// /etc/resolv.conf for the programs it runs in `ns`; removed on drop.
pub struct ResolvConf {
    dir: PathBuf,
}

impl ResolvConf {
    pub fn new(ns: &Netns, text: &str) -> ResolvConf {
        let dir = Path::new("/etc/netns").join(&ns.name);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        std::fs::write(dir.join("resolv.conf"), text).unwrap_or_else(|e| panic!("resolv.conf: {e}"));
        ResolvConf { dir }
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// dnsmasq serving fixed names on one address of a namespace (with `--log-queries`
/// in `extra`, it logs every query for [`Dnsmasq::queries`]).
pub struct Dnsmasq {
    child: Option<Child>,
    pub log: PathBuf,
    pub address: String,
}

impl Dnsmasq {
    /// Serves `records` (name, IPv4) with a TTL of 300 s on `address`:53 in `ns`, and
    /// nothing else (no upstream, no /etc/hosts). `extra`: more dnsmasq options.
    pub fn start(ns: &Netns, dir: &Path, address: &str, records: &[(&str, &str)], extra: &[&str]) -> Dnsmasq {
        let log = dir.join(format!("dnsmasq-{address}.log"));
        let mut cmd = ns.command("dnsmasq");
        cmd.args([
            "-k",
            "-C",
            "/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
            "--pid-file=",
            "--local-ttl=300",
        ])
        .arg(format!("--listen-address={address}"))
        .arg(format!("--log-facility={}", log.display()));
        for (name, ip) in records {
            cmd.arg(format!("--host-record={name},{ip}"));
        }
        cmd.args(extra);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dnsmasq: {e}"));
        let d = Dnsmasq {
            child: Some(child),
            log,
            address: address.to_string(),
        };
        let name = records.first().map_or("localhost", |r| r.0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while dig(ns, address, &[name]).status != "NOERROR" {
            assert!(Instant::now() < deadline, "dnsmasq on {address} does not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    /// The queries dnsmasq received whose line contains `needle` (like `[PTR]`).
    pub fn queries(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(": query[") && l.contains(needle))
            .count()
    }

    /// [`Dnsmasq::queries`] once at least `at_least` are logged (dnsmasq writes its
    /// log a little after answering), or after 10 s.
    pub fn wait_queries(&self, needle: &str, at_least: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n = self.queries(needle);
            if n >= at_least || Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// dnsmasq's log, for assertion messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("{}: {e}", self.log.display()))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            run(Command::new("kill").args(["-TERM", &c.id().to_string()]));
            let _ = c.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends `count` A queries for `name` to `server`:53 from `ns` as fast as it can, then
/// counts the answers that come back within a second of the last one sent.
pub fn blast(ns: &Netns, server: &str, name: &str, count: u16) -> usize {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RecordType};
    let server: std::net::SocketAddr = format!("{server}:53").parse().unwrap_or_else(|e| panic!("{e}"));
    let name = Name::from_ascii(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    ns.enter(move || {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap_or_else(|e| panic!("bind: {e}"));
        for id in 0..count {
            let mut m = Message::query();
            m.metadata.id = id;
            m.metadata.recursion_desired = true;
            m.add_query(Query::query(name.clone(), RecordType::A));
            let bytes = m.to_vec().unwrap_or_else(|e| panic!("encode: {e}"));
            let _ = socket.send_to(&bytes, server);
        }
        socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 1500];
        let mut answered = 0;
        while socket.recv(&mut buf).is_ok() {
            answered += 1;
        }
        answered
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dig_output_is_read() {
        let text = ";; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n;; flags: qr aa rd ra; QUERY: 1, ANSWER: 1\n\nweb.lan.\t\t0\tIN\tA\t172.16.10.100\n";
        let d = parse_dig(text);
        assert_eq!(d.status, "NOERROR");
        assert_eq!(d.answers, ["172.16.10.100"]);
        assert_eq!(d.flags, "qr aa rd ra");
        assert_eq!(parse_dig(";; communications error\n").status, "NOANSWER");
    }
}
