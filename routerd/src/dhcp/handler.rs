//! The DHCPv4 server logic, packet in → outcome out (RFC 2131), with the lease table
//! and the clock passed in. The socket loop in `server.rs` is a thin shell around it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use ipnet::Ipv4Net;

use super::pool::{ClientKey, Lease, Pool, Secs};
use config::{Config, Lan, MacAddr};

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

/// What the server hands out, from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub server_id: Ipv4Addr,
    pub net: Ipv4Net,
    pub dns: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_time: u32,
    pub hostnames: Vec<(MacAddr, String)>,
}

impl Scope {
    /// The scope of the first LAN with DHCP (the single-LAN form's `[dhcp]`).
    pub fn from_config(config: &Config) -> Option<(Scope, Pool)> {
        config.lans.iter().find_map(|lan| Scope::from_lan(config, lan))
    }

    /// The scope and a fresh pool of `lan`, when it has DHCP.
    pub fn from_lan(config: &Config, lan: &Lan) -> Option<(Scope, Pool)> {
        let dhcp = lan.dhcp.as_ref()?;
        let scope = Scope {
            server_id: lan.address.addr(),
            net: lan.address.trunc(),
            dns: config.dhcp_dns(lan),
            domain: dhcp.domain.clone(),
            lease_time: u32::try_from(dhcp.lease_time.as_secs()).unwrap_or(u32::MAX),
            hostnames: dhcp
                .hosts
                .iter()
                .filter_map(|h| Some((h.mac, h.hostname.clone()?)))
                .collect(),
        };
        let reservations: Vec<_> = dhcp.hosts.iter().map(|h| (h.mac, h.address)).collect();
        Some((scope, Pool::new(dhcp.range_start, dhcp.range_end, &reservations)))
    }

    pub fn lease_duration(&self) -> Duration {
        Duration::from_secs(u64::from(self.lease_time))
    }
}

/// Why a packet got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not a well-formed client request: dropped and counted.
    Malformed(&'static str),
    /// A valid message that needs no reply (RELEASE, DECLINE, another server chosen, ...).
    NoReply(&'static str),
    /// No free address.
    PoolExhausted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Reply(Reply),
    /// Check that nobody uses `addr` (ARP) before offering it; then handle again.
    Probe(Ipv4Addr),
    /// No reply, but a lease change to write down (a RELEASE).
    Record(Lease),
    Ignored(Ignored),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub message: Message,
    pub kind: MessageType,
    pub dest: Destination,
    /// A lease that must be on disk before the reply goes out.
    pub persist: Option<Lease>,
}

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To a relay agent, server port.
    Relay(SocketAddrV4),
    /// To a client that has an address (ciaddr).
    Unicast(SocketAddrV4),
    /// To a client with no address yet: IP `yiaddr`, delivered to hardware address `mac`.
    UnicastHw(SocketAddrV4, MacAddr),
    Broadcast,
}

impl Destination {
    pub fn socket_addr(self) -> SocketAddrV4 {
        match self {
            Destination::Relay(a) | Destination::Unicast(a) | Destination::UnicastHw(a, _) => a,
            Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
        }
    }
}

/// RFC 2131 §4.1: relay first; NAKs broadcast; a configured client (ciaddr) by
/// unicast; the broadcast flag asks for broadcast; else unicast to the new address
/// and the client's hardware address.
pub fn destination(req: &Message, kind: MessageType, yiaddr: Ipv4Addr, mac: MacAddr) -> Destination {
    if !req.giaddr().is_unspecified() {
        return Destination::Relay(SocketAddrV4::new(req.giaddr(), SERVER_PORT));
    }
    if kind == MessageType::Nak {
        return Destination::Broadcast;
    }
    if !req.ciaddr().is_unspecified() {
        return Destination::Unicast(SocketAddrV4::new(req.ciaddr(), CLIENT_PORT));
    }
    if req.flags().broadcast() || yiaddr.is_unspecified() {
        return Destination::Broadcast;
    }
    Destination::UnicastHw(SocketAddrV4::new(yiaddr, CLIENT_PORT), mac)
}

/// Decodes a datagram into a message. dhcproto 0.15 panics on a few option lengths
/// (debug assertions, and `len - 1` / `len - 3` underflows in debug builds) and
/// misreads them in release builds: those packets are refused here, before it sees
/// them. Everything else is up to `Message::from_bytes`.
pub fn decode(bytes: &[u8]) -> Result<Message, Ignored> {
    use dhcproto::Decodable;
    // Options start after the fixed header and the magic cookie. Consecutive options
    // with the same code are one option (RFC 3396): dhcproto checks their total length.
    let mut i = 240;
    let mut group: Option<(u8, usize)> = None;
    let check = |group: Option<(u8, usize)>| match group {
        Some((code, len)) if !option_length_is_safe(code, len) => Err(Ignored::Malformed("bad option length")),
        _ => Ok(()),
    };
    while let Some(&code) = bytes.get(i) {
        if code == 0 || code == 255 {
            check(group.take())?;
            if code == 255 {
                break;
            }
            i += 1;
            continue;
        }
        let Some(&len) = bytes.get(i + 1) else { break };
        if i + 2 + usize::from(len) > bytes.len() {
            break; // truncated: dhcproto stops there
        }
        group = match group {
            Some((c, total)) if c == code => Some((c, total + usize::from(len))),
            other => {
                check(other)?;
                Some((code, usize::from(len)))
            }
        };
        i += 2 + usize::from(len);
    }
    check(group)?;
    Message::from_bytes(bytes).map_err(|_| Ignored::Malformed("not a DHCP message"))
}

/// Whether dhcproto decodes option `code` with a payload of `len` bytes without
/// tripping over it.
fn option_length_is_safe(code: u8, len: usize) -> bool {
    match OptionCode::from(code) {
        OptionCode::RapidCommit => len == 0,
        OptionCode::ClientNetworkInterface => len == 3,
        OptionCode::ClientFQDN => len >= 3,
        OptionCode::BulkLeaseQueryStatusCode => len >= 1,
        OptionCode::BulkLeaseQueryBaseTime
        | OptionCode::BulkLeasQueryStartTimeOfState
        | OptionCode::BulkLeaseQueryQueryStartTime
        | OptionCode::BulkLeaseQueryQueryEndTime => len == 4,
        _ => true,
    }
}

/// The facts of a request the handler works with, checked once.
struct Request<'m> {
    msg: &'m Message,
    kind: MessageType,
    mac: MacAddr,
    client: ClientKey,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    hostname: Option<String>,
}

fn parse(msg: &Message) -> Result<Request<'_>, Ignored> {
    if msg.opcode() != Opcode::BootRequest {
        return Err(Ignored::Malformed("not a BOOTREQUEST"));
    }
    // Check hlen before reading chaddr: dhcproto slices chaddr by hlen.
    if msg.htype() != HType::Eth || msg.hlen() != 6 {
        return Err(Ignored::Malformed("not an Ethernet hardware address"));
    }
    let mac = <[u8; 6]>::try_from(msg.chaddr())
        .map(MacAddr)
        .map_err(|_| Ignored::Malformed("bad chaddr"))?;
    let kind = msg.opts().msg_type().ok_or(Ignored::Malformed("no message type"))?;
    let client = match msg.opts().get(OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() => ClientKey::for_client(id, mac),
        Some(DhcpOption::ClientIdentifier(_)) => return Err(Ignored::Malformed("empty client identifier")),
        _ => ClientKey::from_mac(mac),
    };
    let requested = match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let server_id = match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    };
    let hostname = match msg.opts().get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) => Some(
            h.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .take(super::pool::MAX_HOSTNAME)
                .collect(),
        ),
        _ => None,
    };
    Ok(Request {
        msg,
        kind,
        mac,
        client,
        requested,
        server_id,
        hostname,
    })
}

/// Handles one request. `now` is unix seconds.
pub fn handle(pool: &mut Pool, scope: &Scope, msg: &Message, now: Secs) -> Outcome {
    let req = match parse(msg) {
        Ok(r) => r,
        Err(why) => return Outcome::Ignored(why),
    };
    // Relayed requests must come from a relay on our LAN: we serve that one subnet.
    if !msg.giaddr().is_unspecified() && !scope.net.contains(&msg.giaddr()) {
        return Outcome::Ignored(Ignored::NoReply("relayed from another subnet"));
    }
    match req.kind {
        MessageType::Discover => discover(pool, scope, &req, now),
        MessageType::Request => request(pool, scope, &req, now),
        MessageType::Decline => {
            if req.server_id == Some(scope.server_id) {
                if let Some(addr) = req.requested {
                    if pool.lease(addr).is_some_and(|l| l.client == req.client) {
                        if pool.quarantine(addr, req.mac, now).is_ok() {
                            return Outcome::Ignored(Ignored::NoReply("declined: address quarantined"));
                        }
                        // Over the quarantine bounds: the address is not held for the
                        // client, and is probed by ARP before it is offered again.
                        pool.forget(addr);
                        return Outcome::Ignored(Ignored::NoReply("declined: quarantine limit reached"));
                    }
                }
            }
            Outcome::Ignored(Ignored::NoReply("decline for an address not ours"))
        }
        MessageType::Release => match pool.release(&req.client, msg.ciaddr(), now) {
            Some(lease) => Outcome::Record(lease),
            None => Outcome::Ignored(Ignored::NoReply("release of an address the client does not hold")),
        },
        MessageType::Inform => {
            if msg.ciaddr().is_unspecified() {
                return Outcome::Ignored(Ignored::Malformed("INFORM without ciaddr"));
            }
            Outcome::Reply(reply(scope, &req, MessageType::Ack, Ipv4Addr::UNSPECIFIED, None))
        }
        _ => Outcome::Ignored(Ignored::Malformed("not a client message type")),
    }
}

fn discover(pool: &mut Pool, scope: &Scope, req: &Request, now: Secs) -> Outcome {
    let Some(choice) = pool.choose(&req.client, req.mac, req.requested, now) else {
        return Outcome::Ignored(Ignored::PoolExhausted);
    };
    if choice.probe {
        return Outcome::Probe(choice.addr);
    }
    pool.offer(req.client.clone(), req.mac, choice.addr, now);
    Outcome::Reply(reply(scope, req, MessageType::Offer, choice.addr, None))
}

fn request(pool: &mut Pool, scope: &Scope, req: &Request, now: Secs) -> Outcome {
    let ciaddr = req.msg.ciaddr();
    let (addr, selecting) = match (req.server_id, req.requested) {
        // SELECTING: the answer to an offer, ours or another server's.
        (Some(sid), Some(addr)) if ciaddr.is_unspecified() => {
            if sid != scope.server_id {
                // The client took another server's offer: free ours now.
                if let Some(l) = pool
                    .binding(&req.client)
                    .filter(|l| l.state == super::pool::LeaseState::Offered)
                {
                    let addr = l.addr;
                    pool.release(&req.client, addr, now);
                }
                return Outcome::Ignored(Ignored::NoReply("client chose another server"));
            }
            (addr, true)
        }
        (Some(_), _) => return Outcome::Ignored(Ignored::Malformed("REQUEST with server id but no requested address")),
        // INIT-REBOOT: a client that remembers its address.
        (None, Some(addr)) if ciaddr.is_unspecified() => (addr, false),
        // RENEWING / REBINDING: a configured client extends its lease.
        (None, _) if !ciaddr.is_unspecified() => (ciaddr, false),
        (None, _) => return Outcome::Ignored(Ignored::Malformed("REQUEST without an address")),
    };
    if !scope.net.contains(&addr) {
        return nak(scope, req, "requested address is not on this network");
    }
    // The router is the only DHCP server on its LANs, so it is authoritative (unlike
    // RFC 2131 §4.3.2's silence towards clients without a record): a client whose
    // lease the table lost (lease file gone or moved aside) keeps its address when it
    // is free, and is told at once (NAK) when it cannot have it.
    if !pool.available_to(addr, &req.client, req.mac, now) {
        return nak(scope, req, "address not available to this client");
    }
    if selecting && pool.lease(addr).is_none_or(|l| l.client != req.client) {
        // A REQUEST for an offer we never made (or that went to someone else).
        return nak(scope, req, "no offer of this address to this client");
    }
    // INIT-REBOOT for an address with no history here: ARP-probe it first, as before
    // an offer (an answer from the client itself does not count: see the server). A
    // RENEWING/REBINDING client (ciaddr) is not probed: it sends from that address and
    // answers for it itself, so the probe could not tell it from another holder.
    let init_reboot = !selecting && ciaddr.is_unspecified();
    if init_reboot && pool.reservation(req.mac) != Some(addr) && !pool.is_known(addr) {
        return Outcome::Probe(addr);
    }
    // The name the operator gave the reservation, else the one the client sent.
    let reserved_name = scope
        .hostnames
        .iter()
        .find(|(m, _)| *m == req.mac)
        .map(|(_, n)| n.clone());
    let hostname = reserved_name
        .or_else(|| req.hostname.clone())
        .or_else(|| pool.binding(&req.client).and_then(|l| l.hostname.clone()));
    let lease = pool.bind(
        req.client.clone(),
        req.mac,
        addr,
        hostname,
        now + u64::from(scope.lease_time),
    );
    Outcome::Reply(reply(scope, req, MessageType::Ack, addr, Some(lease)))
}

fn nak(scope: &Scope, req: &Request, why: &'static str) -> Outcome {
    let mut r = reply(scope, req, MessageType::Nak, Ipv4Addr::UNSPECIFIED, None);
    r.message.opts_mut().insert(DhcpOption::Message(why.to_string()));
    Outcome::Reply(r)
}

/// Builds a reply from the request (xid, flags, giaddr, chaddr) with the options the
/// client asked for.
fn reply(scope: &Scope, req: &Request, kind: MessageType, yiaddr: Ipv4Addr, persist: Option<Lease>) -> Reply {
    let msg = req.msg;
    let ciaddr = if kind == MessageType::Nak {
        Ipv4Addr::UNSPECIFIED
    } else {
        msg.ciaddr()
    };
    let mut m = Message::new_with_id(
        msg.xid(),
        ciaddr,
        yiaddr,
        Ipv4Addr::UNSPECIFIED,
        msg.giaddr(),
        &req.mac.0,
    );
    m.set_opcode(Opcode::BootReply).set_htype(HType::Eth);
    let mut flags = msg.flags();
    if kind == MessageType::Nak && !msg.giaddr().is_unspecified() {
        flags = Flags::default().set_broadcast(); // §4.3.2: NAKs through a relay are broadcast
    }
    m.set_flags(flags);
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(scope.server_id));
    if let Some(DhcpOption::ClientIdentifier(id)) = msg.opts().get(OptionCode::ClientIdentifier) {
        opts.insert(DhcpOption::ClientIdentifier(id.clone())); // RFC 6842
    }
    if kind == MessageType::Nak {
        return Reply {
            message: m,
            kind,
            dest: destination(msg, kind, yiaddr, req.mac),
            persist,
        };
    }
    if kind == MessageType::Offer || yiaddr != Ipv4Addr::UNSPECIFIED {
        opts.insert(DhcpOption::AddressLeaseTime(scope.lease_time));
        opts.insert(DhcpOption::Renewal(scope.lease_time / 2));
        opts.insert(DhcpOption::Rebinding(scope.lease_time / 8 * 7));
    }
    let requested: Option<&Vec<OptionCode>> = match msg.opts().get(OptionCode::ParameterRequestList) {
        Some(DhcpOption::ParameterRequestList(list)) => Some(list),
        _ => None,
    };
    let wants = |code: OptionCode| requested.is_none_or(|l| l.contains(&code));
    if wants(OptionCode::SubnetMask) {
        opts.insert(DhcpOption::SubnetMask(scope.net.netmask()));
    }
    if wants(OptionCode::Router) {
        opts.insert(DhcpOption::Router(vec![scope.server_id]));
    }
    if wants(OptionCode::DomainNameServer) && !scope.dns.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(scope.dns.clone()));
    }
    if let Some(domain) = scope.domain.as_ref().filter(|_| wants(OptionCode::DomainName)) {
        opts.insert(DhcpOption::DomainName(domain.clone()));
    }
    if let Some((_, name)) = scope.hostnames.iter().find(|(m, _)| *m == req.mac) {
        if requested.is_some_and(|l| l.contains(&OptionCode::Hostname)) {
            opts.insert(DhcpOption::Hostname(name.clone()));
        }
    }
    Reply {
        message: m,
        kind,
        dest: destination(msg, kind, yiaddr, req.mac),
        persist,
    }
}

#[cfg(test)]
#[path = "handler_tests.rs"]
mod tests;
