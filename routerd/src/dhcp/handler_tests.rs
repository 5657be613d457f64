//! Tests of the pure handler: requests built with dhcproto, the pool and scope from a
//! real config, and the clock passed in (`Env::now`, moved by hand).

use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Encodable};

use super::{destination, handle, Destination, Ignored, Outcome, Reply, Scope};
use crate::dhcp::pool::{ClientKey, Lease, LeaseState, Pool, Secs, OFFER_HOLD, QUARANTINE};
use config::{Config, MacAddr};

/// Four dynamic addresses (.100, .101, .103, .104: .102 is reserved inside the range),
/// and one more reservation outside the range.
const CONFIG: &str = r#"
[wan]
interface = "wan"
address = "203.0.113.10/32"
gateway = "203.0.113.254"
dns = ["198.51.100.53"]

[lan]
interface = "lan"
address = "172.16.0.1/16"

[dhcp]
range = "172.16.10.100-172.16.10.104"
lease_time = "1h"
dns = ["172.16.0.1", "198.51.100.53"]
domain = "lan"

[[dhcp.host]]
mac = "52:54:00:00:00:99"
address = "172.16.10.102"
hostname = "web"

[[dhcp.host]]
mac = "52:54:00:00:00:98"
address = "172.16.20.7"
"#;

const NOW: Secs = 1_700_000_000;
const LEASE: Secs = 3600;
const SERVER: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
const OTHER_SERVER: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
const RELAY: Ipv4Addr = Ipv4Addr::new(172, 16, 10, 50);
const RESERVED_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x99]);
const RESERVED: Ipv4Addr = Ipv4Addr::new(172, 16, 10, 102);
/// The dynamic addresses in the order the pool hands them out.
const DYNAMIC: [Ipv4Addr; 4] = [ip(100), ip(101), ip(103), ip(104)];

const fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(172, 16, 10, last)
}

fn mac(n: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, n])
}

fn key(n: u8) -> ClientKey {
    ClientKey::from_mac(mac(n))
}

/// The handler's world: pool, scope and an injected clock.
struct Env {
    pool: Pool,
    scope: Scope,
    now: Secs,
}

impl Env {
    fn new() -> Env {
        let config = Config::parse(CONFIG, "test").unwrap_or_else(|e| panic!("test config: {e}"));
        let (scope, pool) = Scope::from_config(&config).expect("the config has a [dhcp] section");
        Env { pool, scope, now: NOW }
    }

    fn advance(&mut self, secs: Secs) {
        self.now += secs;
    }

    fn handle(&mut self, msg: &Message) -> Outcome {
        handle(&mut self.pool, &self.scope, msg, self.now)
    }

    fn reply(&mut self, msg: &Message) -> Reply {
        match self.handle(msg) {
            Outcome::Reply(r) => r,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// DISCOVER → OFFER, doing the ARP probe (as answered by nobody) when asked to.
    fn offer(&mut self, msg: &Message) -> Reply {
        if let Outcome::Probe(addr) = self.handle(msg) {
            self.pool.mark_probed_free(addr);
        }
        let r = self.reply(msg);
        assert_eq!(r.kind, MessageType::Offer);
        r
    }

    /// A whole DORA for the client with hardware address `mac(n)`: returns its address.
    fn lease(&mut self, n: u8) -> Ipv4Addr {
        let offered = self.offer(&discover(mac(n))).message.yiaddr();
        let ack = self.reply(&select(mac(n), offered, SERVER));
        assert_eq!(ack.kind, MessageType::Ack);
        assert_eq!(ack.message.yiaddr(), offered);
        offered
    }
}

fn msg(kind: MessageType, mac: MacAddr) -> Message {
    let mut m = Message::new_with_id(
        0x1234_5678,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m
}

fn discover(mac: MacAddr) -> Message {
    msg(MessageType::Discover, mac)
}

/// REQUEST in SELECTING: server id + requested address, no ciaddr.
fn select(mac: MacAddr, addr: Ipv4Addr, server: Ipv4Addr) -> Message {
    let mut m = msg(MessageType::Request, mac);
    m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
    m
}

/// REQUEST in INIT-REBOOT: requested address, no server id, no ciaddr.
fn init_reboot(mac: MacAddr, addr: Ipv4Addr) -> Message {
    let mut m = msg(MessageType::Request, mac);
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
    m
}

/// REQUEST in RENEWING (unicast) or REBINDING (broadcast): ciaddr only.
fn renew(mac: MacAddr, ciaddr: Ipv4Addr) -> Message {
    let mut m = msg(MessageType::Request, mac);
    m.set_ciaddr(ciaddr);
    m
}

fn decline(mac: MacAddr, addr: Ipv4Addr, server: Ipv4Addr) -> Message {
    let mut m = msg(MessageType::Decline, mac);
    m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
    m
}

fn release(mac: MacAddr, addr: Ipv4Addr) -> Message {
    let mut m = msg(MessageType::Release, mac);
    m.set_ciaddr(addr);
    m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
    m
}

fn with_client_id(mut m: Message, id: &[u8]) -> Message {
    m.opts_mut().insert(DhcpOption::ClientIdentifier(id.to_vec()));
    m
}

fn with_prl(mut m: Message, codes: &[OptionCode]) -> Message {
    m.opts_mut().insert(DhcpOption::ParameterRequestList(codes.to_vec()));
    m
}

fn broadcast_flag(mut m: Message) -> Message {
    m.set_flags(Flags::default().set_broadcast());
    m
}

fn relayed(mut m: Message, giaddr: Ipv4Addr) -> Message {
    m.set_giaddr(giaddr);
    m
}

fn opt(r: &Reply, code: OptionCode) -> Option<&DhcpOption> {
    r.message.opts().get(code)
}

fn codes(r: &Reply) -> Vec<OptionCode> {
    let mut c: Vec<OptionCode> = r.message.opts().iter().map(|(c, _)| *c).collect();
    c.sort_by_key(|c| u8::from(*c));
    c
}

fn sorted(mut c: Vec<OptionCode>) -> Vec<OptionCode> {
    c.sort_by_key(|c| u8::from(*c));
    c
}

/// Every reply must go on the wire: it encodes, and decodes back to itself.
fn assert_encodes(r: &Reply) {
    let bytes = r.message.to_vec().expect("the reply encodes");
    let back = Message::from_bytes(&bytes).expect("the encoded reply decodes");
    assert_eq!(back, r.message);
}

fn assert_nak(r: &Reply) {
    assert_eq!(r.kind, MessageType::Nak);
    assert_eq!(
        opt(r, OptionCode::MessageType),
        Some(&DhcpOption::MessageType(MessageType::Nak))
    );
    assert_eq!(
        opt(r, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert!(
        matches!(opt(r, OptionCode::Message), Some(DhcpOption::Message(m)) if !m.is_empty()),
        "a NAK says why"
    );
    assert_eq!(r.message.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(r.message.ciaddr(), Ipv4Addr::UNSPECIFIED);
    for code in [
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
        OptionCode::SubnetMask,
        OptionCode::Router,
    ] {
        assert!(opt(r, code).is_none(), "a NAK carries no {code:?}");
    }
    assert_eq!(r.persist, None);
    assert_encodes(r);
}

// ---------------------------------------------------------------- DISCOVER → OFFER

#[test]
fn discover_of_a_fresh_address_asks_for_a_probe_first_then_offers_it() {
    let mut env = Env::new();
    assert_eq!(env.handle(&discover(mac(1))), Outcome::Probe(DYNAMIC[0]));
    assert!(env.pool.lease(DYNAMIC[0]).is_none(), "a probe holds nothing yet");
    assert_eq!(
        env.handle(&discover(mac(1))),
        Outcome::Probe(DYNAMIC[0]),
        "still unprobed"
    );

    env.pool.mark_probed_free(DYNAMIC[0]);
    let r = env.reply(&discover(mac(1)));
    assert_eq!(r.kind, MessageType::Offer);
    assert_eq!(r.message.yiaddr(), DYNAMIC[0]);
    assert_eq!(r.persist, None, "offers are not written to disk");
    let held = env.pool.lease(DYNAMIC[0]).expect("the offer holds the address");
    assert_eq!(
        (held.state, &held.client, held.expires),
        (LeaseState::Offered, &key(1), NOW + OFFER_HOLD)
    );
    // A retransmitted DISCOVER gets the same offer without a second probe.
    assert_eq!(env.reply(&discover(mac(1))).message.yiaddr(), DYNAMIC[0]);
}

/// What the server does with a Probe outcome: start the probe, which holds the address.
fn start_probe(env: &mut Env, msg: &Message) -> Ipv4Addr {
    match env.handle(msg) {
        Outcome::Probe(addr) => {
            env.pool.probe_started(addr);
            addr
        }
        other => panic!("expected a probe, got {other:?}"),
    }
}

#[test]
fn clients_arriving_together_get_different_addresses_probed_at_the_same_time() {
    let mut env = Env::new();
    let probes: Vec<Ipv4Addr> = (1..=3).map(|n| start_probe(&mut env, &discover(mac(n)))).collect();
    assert_eq!(
        probes,
        DYNAMIC[..3].to_vec(),
        "one probe per client, not all on the first address"
    );
    // Probes end in any order; a waiting client then gets an address already probed
    // free, with no second probe.
    env.pool.mark_probed_free(probes[2]);
    assert_eq!(env.reply(&discover(mac(3))).message.yiaddr(), probes[2]);
    env.pool.mark_probed_free(probes[0]);
    env.pool.mark_probed_free(probes[1]);
    assert_eq!(env.reply(&discover(mac(1))).message.yiaddr(), probes[0]);
    assert_eq!(env.reply(&discover(mac(2))).message.yiaddr(), probes[1]);
    // The next new client gets the next fresh address, probed.
    assert_eq!(env.handle(&discover(mac(4))), Outcome::Probe(DYNAMIC[3]));
}

#[test]
fn an_address_whose_probe_is_answered_is_quarantined_and_the_next_one_probed() {
    let mut env = Env::new();
    let first = start_probe(&mut env, &discover(mac(1)));
    let squatter = mac(77);
    assert!(env.pool.quarantine(first, squatter, env.now).is_ok()); // somebody answered the ARP probe
    let second = start_probe(&mut env, &discover(mac(1)));
    assert_ne!(second, first);
    env.pool.mark_probed_free(second);
    assert_eq!(env.reply(&discover(mac(1))).message.yiaddr(), second);
    assert_ne!(
        env.offer(&discover(mac(2))).message.yiaddr(),
        first,
        "still quarantined"
    );
}

#[test]
fn offer_without_a_parameter_request_list_carries_every_option() {
    let mut env = Env::new();
    let r = env.offer(&discover(mac(1)));
    let m = &r.message;
    assert_eq!(m.opcode(), Opcode::BootReply);
    assert_eq!(m.htype(), HType::Eth);
    assert_eq!(m.xid(), 0x1234_5678, "xid echoed");
    assert_eq!(m.chaddr(), &mac(1).0);
    assert_eq!(m.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(m.yiaddr(), DYNAMIC[0]);
    assert_eq!(m.giaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        opt(&r, OptionCode::MessageType),
        Some(&DhcpOption::MessageType(MessageType::Offer))
    );
    assert_eq!(
        opt(&r, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(
        opt(&r, OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 0, 0)))
    );
    assert_eq!(opt(&r, OptionCode::Router), Some(&DhcpOption::Router(vec![SERVER])));
    assert_eq!(
        opt(&r, OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![
            Ipv4Addr::new(172, 16, 0, 1),
            Ipv4Addr::new(198, 51, 100, 53)
        ]))
    );
    assert_eq!(
        opt(&r, OptionCode::DomainName),
        Some(&DhcpOption::DomainName("lan".into()))
    );
    assert_eq!(
        opt(&r, OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(
        opt(&r, OptionCode::Renewal),
        Some(&DhcpOption::Renewal(1800)),
        "T1 = 0.5 lease"
    );
    assert_eq!(
        opt(&r, OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(3150)),
        "T2 = 0.875 lease"
    );
    assert!(opt(&r, OptionCode::ClientIdentifier).is_none(), "no client id to echo");
    assert!(opt(&r, OptionCode::Hostname).is_none(), "not a reserved host");
    assert_encodes(&r);
}

#[test]
fn parameter_request_list_limits_the_options_to_those_asked_for_and_the_mandatory_ones() {
    let mandatory = [
        OptionCode::MessageType,
        OptionCode::ServerIdentifier,
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ];
    let mut env = Env::new();
    let r = env.offer(&with_prl(discover(mac(1)), &[OptionCode::SubnetMask]));
    assert_eq!(codes(&r), sorted([&mandatory[..], &[OptionCode::SubnetMask]].concat()));

    let r = env.offer(&with_prl(
        discover(mac(1)),
        &[OptionCode::Router, OptionCode::DomainName],
    ));
    assert_eq!(
        codes(&r),
        sorted([&mandatory[..], &[OptionCode::Router, OptionCode::DomainName]].concat())
    );

    let r = env.offer(&with_prl(
        discover(mac(1)),
        &[OptionCode::DomainNameServer, OptionCode::NtpServers],
    ));
    assert_eq!(
        codes(&r),
        sorted([&mandatory[..], &[OptionCode::DomainNameServer]].concat()),
        "unknown wishes are skipped"
    );

    let r = env.offer(&with_prl(discover(mac(1)), &[]));
    assert_eq!(
        codes(&r),
        sorted(mandatory.to_vec()),
        "an empty list asks for nothing optional"
    );

    // The ACK follows the same rule.
    let ack = env.reply(&with_prl(select(mac(1), DYNAMIC[0], SERVER), &[OptionCode::SubnetMask]));
    assert_eq!(ack.kind, MessageType::Ack);
    assert_eq!(
        codes(&ack),
        sorted([&mandatory[..], &[OptionCode::SubnetMask]].concat())
    );

    // A reserved host's configured hostname is sent when asked for, and only then.
    let r = env.offer(&with_prl(
        discover(RESERVED_MAC),
        &[OptionCode::SubnetMask, OptionCode::Hostname],
    ));
    assert_eq!(opt(&r, OptionCode::Hostname), Some(&DhcpOption::Hostname("web".into())));
    let r = env.offer(&discover(RESERVED_MAC));
    assert!(opt(&r, OptionCode::Hostname).is_none());
}

#[test]
fn client_identifier_is_echoed_in_offer_ack_and_nak() {
    let mut env = Env::new();
    let id = [0xff, 1, 2, 3, 4];
    let r = env.offer(&with_client_id(discover(mac(1)), &id));
    assert_eq!(
        opt(&r, OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(id.to_vec()))
    );
    let ack = env.reply(&with_client_id(select(mac(1), r.message.yiaddr(), SERVER), &id));
    assert_eq!(ack.kind, MessageType::Ack);
    assert_eq!(
        opt(&ack, OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(id.to_vec()))
    );
    let nak = env.reply(&with_client_id(init_reboot(mac(1), Ipv4Addr::new(10, 0, 0, 5)), &id));
    assert_nak(&nak);
    assert_eq!(
        opt(&nak, OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(id.to_vec()))
    );
}

#[test]
fn discover_asking_for_a_free_address_gets_it() {
    let mut env = Env::new();
    let mut m = discover(mac(1));
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(DYNAMIC[2]));
    assert_eq!(env.offer(&m).message.yiaddr(), DYNAMIC[2]);
    // ... but not one outside the range: a fresh one instead.
    let mut m = discover(mac(2));
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip(200)));
    assert_eq!(env.offer(&m).message.yiaddr(), DYNAMIC[0]);
}

// ---------------------------------------------------------------- REQUEST

#[test]
fn request_selecting_our_offer_is_acked_with_a_lease_to_persist() {
    let mut env = Env::new();
    let offered = env.offer(&discover(mac(1))).message.yiaddr();
    env.advance(5);
    let mut req = select(mac(1), offered, SERVER);
    req.opts_mut().insert(DhcpOption::Hostname("guest one!".into()));
    let ack = env.reply(&req);
    assert_eq!(ack.kind, MessageType::Ack);
    assert_eq!(ack.message.yiaddr(), offered);
    assert_eq!(
        opt(&ack, OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(opt(&ack, OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
    assert_eq!(opt(&ack, OptionCode::Rebinding), Some(&DhcpOption::Rebinding(3150)));
    assert_eq!(
        opt(&ack, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    let lease = Lease {
        addr: offered,
        client: key(1),
        mac: mac(1),
        hostname: Some("guestone".into()), // sanitised
        expires: NOW + 5 + LEASE,
        state: LeaseState::Bound,
    };
    assert_eq!(
        ack.persist,
        Some(lease.clone()),
        "the lease must reach the disk before the ACK leaves"
    );
    assert_eq!(env.pool.lease(offered), Some(&lease));
    assert_eq!(env.pool.active(env.now), 1);
    assert_encodes(&ack);
}

#[test]
fn request_selecting_another_server_gets_no_reply_and_frees_our_offer() {
    let mut env = Env::new();
    let offered = env.offer(&discover(mac(1))).message.yiaddr();
    assert_eq!(
        env.handle(&select(mac(1), ip(77), OTHER_SERVER)),
        Outcome::Ignored(Ignored::NoReply("client chose another server"))
    );
    let l = env.pool.lease(offered).expect("kept as history");
    assert_eq!(l.state, LeaseState::Released);
    assert!(!l.is_live(env.now));
    assert!(
        env.pool.available_to(offered, &key(2), mac(2), env.now),
        "the offer no longer holds the address"
    );
    assert_eq!(env.pool.active(env.now), 0);
    // A bound client that answers another server's offer keeps its binding.
    let bound = env.lease(3);
    assert!(
        env.handle(&select(mac(3), ip(77), OTHER_SERVER))
            == Outcome::Ignored(Ignored::NoReply("client chose another server"))
    );
    assert_eq!(env.pool.lease(bound).map(|l| l.state), Some(LeaseState::Bound));
}

#[test]
fn request_selecting_an_address_we_never_offered_is_naked() {
    let mut env = Env::new();
    assert_nak(&env.reply(&select(mac(1), DYNAMIC[1], SERVER)));
    // Nor one offered to somebody else.
    let offered = env.offer(&discover(mac(2))).message.yiaddr();
    assert_nak(&env.reply(&select(mac(1), offered, SERVER)));
    assert_eq!(env.pool.lease(offered).map(|l| &l.client), Some(&key(2)));
}

#[test]
fn request_with_server_id_but_no_address_is_malformed() {
    let mut env = Env::new();
    let mut m = msg(MessageType::Request, mac(1));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
    assert!(matches!(env.handle(&m), Outcome::Ignored(Ignored::Malformed(_))));
    assert!(matches!(
        env.handle(&msg(MessageType::Request, mac(1))),
        Outcome::Ignored(Ignored::Malformed(_))
    ));
}

#[test]
fn init_reboot_of_the_own_address_is_acked() {
    let mut env = Env::new();
    let addr = env.lease(1);
    env.advance(100);
    let ack = env.reply(&init_reboot(mac(1), addr));
    assert_eq!(ack.kind, MessageType::Ack);
    assert_eq!(ack.message.yiaddr(), addr);
    assert_eq!(
        ack.persist.as_ref().map(|l| (l.addr, l.expires)),
        Some((addr, NOW + 100 + LEASE))
    );
    // Also after the lease expired, while nobody else took the address.
    env.advance(10 * LEASE);
    assert_eq!(env.reply(&init_reboot(mac(1), addr)).kind, MessageType::Ack);
}

#[test]
fn init_reboot_of_another_live_clients_address_is_naked() {
    let mut env = Env::new();
    let addr = env.lease(1);
    env.lease(2); // client 2 has a record of its own: its notion is just wrong
    let r = env.reply(&init_reboot(mac(2), addr));
    assert_nak(&r);
    assert_eq!(r.dest, Destination::Broadcast);
    assert_eq!(
        env.pool.lease(addr).map(|l| (&l.client, l.state)),
        Some((&key(1), LeaseState::Bound)),
        "untouched"
    );
}

#[test]
fn init_reboot_on_the_wrong_subnet_is_naked() {
    let mut env = Env::new();
    let addr = env.lease(1);
    for wrong in [
        Ipv4Addr::new(192, 168, 1, 20),
        Ipv4Addr::new(172, 17, 10, 100),
        Ipv4Addr::new(10, 0, 0, 1),
    ] {
        let r = env.reply(&init_reboot(mac(1), wrong));
        assert_nak(&r);
        assert_eq!(r.dest, Destination::Broadcast);
    }
    // A NAK changes nothing in the pool.
    assert_eq!(env.pool.lease(addr).map(|l| l.state), Some(LeaseState::Bound));
}

#[test]
fn renewing_extends_the_lease_and_answers_by_unicast_to_ciaddr() {
    let mut env = Env::new();
    let addr = env.lease(1);
    let before = env.pool.lease(addr).map(|l| l.expires);
    assert_eq!(before, Some(NOW + LEASE));
    env.advance(LEASE / 2); // T1
    let ack = env.reply(&renew(mac(1), addr));
    assert_eq!(ack.kind, MessageType::Ack);
    assert_eq!(ack.message.yiaddr(), addr);
    assert_eq!(ack.message.ciaddr(), addr, "ciaddr echoed");
    assert_eq!(ack.dest, Destination::Unicast(SocketAddrV4::new(addr, 68)));
    let expires = NOW + LEASE / 2 + LEASE;
    assert_eq!(
        ack.persist.as_ref().map(|l| (l.addr, l.expires, l.state)),
        Some((addr, expires, LeaseState::Bound))
    );
    assert_eq!(env.pool.lease(addr).map(|l| l.expires), Some(expires));
    assert_encodes(&ack);
}

#[test]
fn rebinding_extends_the_lease_too() {
    let mut env = Env::new();
    let addr = env.lease(1);
    env.advance(LEASE / 8 * 7 + 1); // past T2: broadcast REQUEST with ciaddr
    let ack = env.reply(&broadcast_flag(renew(mac(1), addr)));
    assert_eq!(ack.kind, MessageType::Ack);
    assert_eq!(
        ack.dest,
        Destination::Unicast(SocketAddrV4::new(addr, 68)),
        "ciaddr wins over the broadcast flag (§4.1)"
    );
    let expires = NOW + LEASE / 8 * 7 + 1 + LEASE;
    assert_eq!(env.pool.lease(addr).map(|l| l.expires), Some(expires));
    assert!(env.pool.lease(addr).is_some_and(|l| l.is_live(NOW + LEASE + 10)));
}

#[test]
fn renewing_an_address_that_went_to_someone_else_is_naked() {
    let mut env = Env::new();
    let addr = env.lease(1);
    env.advance(LEASE + 1);
    // Fill the pool so the expired address is reused.
    let mut others = Vec::new();
    for n in 2..=5 {
        others.push(env.lease(n));
    }
    assert!(others.contains(&addr));
    assert_nak(&env.reply(&renew(mac(1), addr)));
}

// ---------------------------------------------------------------- DECLINE, RELEASE, INFORM

#[test]
fn declined_address_is_quarantined_and_not_offered_again() {
    let mut env = Env::new();
    let addr = env.lease(1);
    assert_eq!(
        env.handle(&decline(mac(1), addr, SERVER)),
        Outcome::Ignored(Ignored::NoReply("declined: address quarantined"))
    );
    assert!(env.pool.lease(addr).is_none());
    assert!(env.pool.binding(&key(1)).is_none());
    // Neither the client that declined it nor anyone else gets it while quarantined,
    // not even when asking for it, and not when the pool runs dry.
    let mut again = discover(mac(1));
    again.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
    assert_ne!(env.offer(&again).message.yiaddr(), addr);
    for n in 2..=3 {
        assert_ne!(env.lease(n), addr);
    }
    assert_eq!(env.handle(&discover(mac(4))), Outcome::Ignored(Ignored::PoolExhausted));
    assert_nak(&env.reply(&init_reboot(mac(4), addr)));
    // After the quarantine it comes back.
    env.advance(QUARANTINE + 1);
    assert_eq!(env.offer(&discover(mac(4))).message.yiaddr(), addr);
}

#[test]
fn declines_beyond_the_quarantine_bounds_are_probed_again_instead() {
    let mut env = Env::new();
    // Five addresses in the range: one of them may be quarantined at a time.
    let first = env.lease(1);
    env.handle(&decline(mac(1), first, SERVER));
    assert_eq!(env.pool.quarantined(env.now), 1);
    let second = env.lease(2);
    assert_eq!(
        env.handle(&decline(mac(2), second, SERVER)),
        Outcome::Ignored(Ignored::NoReply("declined: quarantine limit reached"))
    );
    assert_eq!(env.pool.quarantined(env.now), 1);
    assert!(env.pool.binding(&key(2)).is_none(), "not held for the client");
    // Whoever gets it next, gets it only after an ARP probe.
    let mut ask = discover(mac(3));
    ask.opts_mut().insert(DhcpOption::RequestedIpAddress(second));
    assert_eq!(env.handle(&ask), Outcome::Probe(second));
}

#[test]
fn decline_that_is_not_for_us_changes_nothing() {
    let mut env = Env::new();
    let addr = env.lease(1);
    for m in [decline(mac(1), addr, OTHER_SERVER), decline(mac(2), addr, SERVER)] {
        assert!(matches!(env.handle(&m), Outcome::Ignored(Ignored::NoReply(_))));
        assert_eq!(
            env.pool.lease(addr).map(|l| (&l.client, l.state)),
            Some((&key(1), LeaseState::Bound))
        );
    }
}

#[test]
fn released_address_goes_back_to_the_same_client() {
    let mut env = Env::new();
    let addr = env.lease(1);
    env.advance(60);
    let released = Lease {
        addr,
        client: key(1),
        mac: mac(1),
        hostname: None,
        expires: NOW + 60,
        state: LeaseState::Released,
    };
    assert_eq!(
        env.handle(&release(mac(1), addr)),
        Outcome::Record(released.clone()),
        "no reply, but the release is written down"
    );
    assert_eq!(env.pool.lease(addr), Some(&released), "kept as history");
    assert_eq!(env.pool.active(env.now), 0);
    // Another client gets a fresh address, not the released one.
    assert_ne!(env.lease(2), addr);
    // The client that released it gets it back, with no probe.
    let r = env.reply(&discover(mac(1)));
    assert_eq!((r.kind, r.message.yiaddr()), (MessageType::Offer, addr));
    // A RELEASE by anybody else is ignored.
    env.reply(&select(mac(1), addr, SERVER));
    assert!(matches!(
        env.handle(&release(mac(2), addr)),
        Outcome::Ignored(Ignored::NoReply(_))
    ));
    assert_eq!(env.pool.lease(addr).map(|l| l.state), Some(LeaseState::Bound));
}

#[test]
fn inform_is_acked_without_a_lease_by_unicast_to_ciaddr() {
    let mut env = Env::new();
    let configured = Ipv4Addr::new(172, 16, 10, 50);
    let mut m = msg(MessageType::Inform, mac(1));
    m.set_ciaddr(configured);
    let r = env.reply(&m);
    assert_eq!(r.kind, MessageType::Ack);
    assert_eq!(r.message.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(r.message.ciaddr(), configured);
    assert_eq!(r.dest, Destination::Unicast(SocketAddrV4::new(configured, 68)));
    for code in [OptionCode::AddressLeaseTime, OptionCode::Renewal, OptionCode::Rebinding] {
        assert!(opt(&r, code).is_none(), "an INFORM ACK carries no {code:?}");
    }
    assert_eq!(
        opt(&r, OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 0, 0)))
    );
    assert_eq!(opt(&r, OptionCode::Router), Some(&DhcpOption::Router(vec![SERVER])));
    assert_eq!(
        opt(&r, OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(r.persist, None);
    assert_eq!(env.pool.leases().count(), 0, "no lease made");
    assert_encodes(&r);
    // An INFORM without ciaddr is malformed.
    assert!(matches!(
        env.handle(&msg(MessageType::Inform, mac(1))),
        Outcome::Ignored(Ignored::Malformed(_))
    ));
}

// ---------------------------------------------------------------- expiry, reservations, exhaustion

#[test]
fn expired_address_goes_to_another_client_only_when_no_fresh_address_is_left() {
    let mut env = Env::new();
    let first = env.lease(1);
    assert_eq!(first, DYNAMIC[0]);
    env.advance(LEASE + 1);
    assert!(!env.pool.lease(first).is_some_and(|l| l.is_live(env.now)));
    assert_eq!(env.pool.active(env.now), 0);
    // Three fresh addresses left: they go first.
    for (n, want) in [(2, DYNAMIC[1]), (3, DYNAMIC[2]), (4, DYNAMIC[3])] {
        assert_eq!(env.lease(n), want);
    }
    // Now the expired one is reused (known address: no probe).
    let r = env.reply(&discover(mac(5)));
    assert_eq!((r.kind, r.message.yiaddr()), (MessageType::Offer, first));
    env.reply(&select(mac(5), first, SERVER));
    assert!(env.pool.binding(&key(1)).is_none(), "the old client lost it");
    assert_nak(&env.reply(&init_reboot(mac(1), first)));
}

#[test]
fn the_oldest_expired_address_is_reused_first() {
    let mut env = Env::new();
    for n in 1..=4 {
        env.lease(n);
        env.advance(10);
    }
    env.advance(LEASE);
    // All four expired, client 1's first.
    let got = env.reply(&discover(mac(9))).message.yiaddr();
    assert_eq!(got, DYNAMIC[0]);
}

#[test]
fn reservation_always_wins_and_is_never_handed_to_anyone_else() {
    let mut env = Env::new();
    // The reserved host gets its address with no probe, whatever it asks for.
    let mut m = discover(RESERVED_MAC);
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(DYNAMIC[1]));
    let r = env.reply(&m);
    assert_eq!((r.kind, r.message.yiaddr()), (MessageType::Offer, RESERVED));
    assert_nak(&env.reply(&init_reboot(RESERVED_MAC, DYNAMIC[1])));
    assert_eq!(
        env.reply(&select(RESERVED_MAC, RESERVED, SERVER)).kind,
        MessageType::Ack
    );
    assert_eq!(env.reply(&init_reboot(RESERVED_MAC, RESERVED)).kind, MessageType::Ack);

    // Nobody else gets it: not when asking in DISCOVER, INIT-REBOOT, RENEWING, nor
    // when the pool runs dry, nor after the reserved host's lease expired.
    env.advance(LEASE * 2);
    let mut m = discover(mac(1));
    m.opts_mut().insert(DhcpOption::RequestedIpAddress(RESERVED));
    assert_ne!(env.offer(&m).message.yiaddr(), RESERVED);
    assert_nak(&env.reply(&init_reboot(mac(2), RESERVED)));
    assert_nak(&env.reply(&renew(mac(2), RESERVED)));
    for n in 1..=4 {
        assert_ne!(env.lease(n), RESERVED);
    }
    assert_eq!(env.handle(&discover(mac(5))), Outcome::Ignored(Ignored::PoolExhausted));

    // A reservation outside the dynamic range works the same.
    let r = env.reply(&discover(MacAddr([0x52, 0x54, 0, 0, 0, 0x98])));
    assert_eq!(r.message.yiaddr(), Ipv4Addr::new(172, 16, 20, 7));
}

#[test]
fn reservation_wins_over_a_lease_from_before_it_was_configured() {
    let mut env = Env::new();
    env.pool.restore(Lease {
        addr: RESERVED,
        client: key(1),
        mac: mac(1),
        hostname: None,
        expires: NOW + LEASE,
        state: LeaseState::Bound,
    });
    let r = env.reply(&discover(RESERVED_MAC));
    assert_eq!(r.message.yiaddr(), RESERVED);
    // ... and the old holder cannot renew it.
    assert_nak(&env.reply(&renew(mac(1), RESERVED)));
}

#[test]
fn pool_exhaustion_is_reported() {
    let mut env = Env::new();
    for n in 1..=3 {
        env.lease(n);
    }
    // An outstanding offer holds the last address too.
    env.offer(&discover(mac(4)));
    assert_eq!(env.handle(&discover(mac(5))), Outcome::Ignored(Ignored::PoolExhausted));
    // Clients that have an address still get it.
    assert_eq!(env.reply(&discover(mac(1))).message.yiaddr(), DYNAMIC[0]);
    // Once the offer times out, its address is free again.
    env.advance(OFFER_HOLD + 1);
    assert_eq!(env.reply(&discover(mac(5))).message.yiaddr(), DYNAMIC[3]);
}

// ---------------------------------------------------------------- client identity

#[test]
fn client_identifier_is_preferred_over_chaddr() {
    let mut env = Env::new();
    let a = env
        .offer(&with_client_id(discover(mac(1)), b"\x00vm-a"))
        .message
        .yiaddr();
    env.reply(&with_client_id(select(mac(1), a, SERVER), b"\x00vm-a"));
    let b = env
        .offer(&with_client_id(discover(mac(1)), b"\x00vm-b"))
        .message
        .yiaddr();
    env.reply(&with_client_id(select(mac(1), b, SERVER), b"\x00vm-b"));
    let plain = env.lease(1);
    assert_eq!(
        vec![a, b, plain],
        DYNAMIC[..3].to_vec(),
        "same chaddr, three clients, three leases"
    );
    assert_eq!(env.pool.active(env.now), 3);
    assert_eq!(
        env.pool.binding(&ClientKey(b"\x00vm-a".to_vec())).map(|l| l.addr),
        Some(a)
    );
    assert_eq!(
        env.pool.binding(&ClientKey(b"\x00vm-b".to_vec())).map(|l| l.addr),
        Some(b)
    );
    assert_eq!(env.pool.binding(&key(1)).map(|l| l.addr), Some(plain));
    // One client id cannot take the other's address.
    assert_nak(&env.reply(&with_client_id(init_reboot(mac(1), a), b"\x00vm-b")));
    // The same client id on another NIC (new MAC) is the same client.
    let r = env.reply(&with_client_id(discover(mac(7)), b"\x00vm-a"));
    assert_eq!(r.message.yiaddr(), a);
}

#[test]
fn a_very_long_client_identifier_makes_a_short_record_and_keeps_its_address() {
    let mut env = Env::new();
    let id = vec![0xab; 1200];
    let long_name = "n".repeat(200);
    let with_id_and_name = |m: Message| {
        let mut m = with_client_id(m, &id);
        m.opts_mut().insert(DhcpOption::Hostname(long_name.clone()));
        m
    };
    let offered = env.offer(&with_id_and_name(discover(mac(1)))).message.yiaddr();
    let ack = env.reply(&with_id_and_name(select(mac(1), offered, SERVER)));
    assert_eq!(ack.kind, MessageType::Ack);
    let lease = ack.persist.expect("a lease to persist");
    let record = crate::dhcp::store::encode(&lease);
    assert!(record.len() < 300, "{} bytes: {record}", record.len());

    // After a restart (the record read back) and the lease's expiry, the same client
    // is offered its address again, even with another client asking first.
    let restored = crate::dhcp::store::decode(record.trim_end()).expect("the record decodes");
    let mut env = Env::new();
    env.pool.restore(restored);
    env.advance(LEASE + 60);
    let other = env.offer(&discover(mac(2))).message.yiaddr();
    assert_ne!(other, offered);
    assert_eq!(env.offer(&with_id_and_name(discover(mac(1)))).message.yiaddr(), offered);
}

#[test]
fn empty_client_identifier_is_malformed() {
    let mut env = Env::new();
    assert!(matches!(
        env.handle(&with_client_id(discover(mac(1)), b"")),
        Outcome::Ignored(Ignored::Malformed(_))
    ));
}

// ---------------------------------------------------------------- §4.1 destination

#[test]
fn destination_table_of_rfc2131_section_4_1() {
    let yiaddr = ip(100);
    let plain = discover(mac(1));
    let relay = relayed(discover(mac(1)), RELAY);
    let mut configured = discover(mac(1));
    configured.set_ciaddr(ip(101));
    let bcast = broadcast_flag(discover(mac(1)));
    let mut relayed_configured_bcast = broadcast_flag(relayed(discover(mac(1)), RELAY));
    relayed_configured_bcast.set_ciaddr(ip(101));

    let relay_dest = Destination::Relay(SocketAddrV4::new(RELAY, 67));
    // giaddr first, whatever else is set, NAKs included.
    for kind in [MessageType::Offer, MessageType::Ack, MessageType::Nak] {
        assert_eq!(destination(&relay, kind, yiaddr, mac(1)), relay_dest);
        assert_eq!(destination(&relayed_configured_bcast, kind, yiaddr, mac(1)), relay_dest);
    }
    // NAKs (not relayed) are broadcast, even to a configured client.
    for m in [&plain, &configured, &bcast] {
        assert_eq!(
            destination(m, MessageType::Nak, Ipv4Addr::UNSPECIFIED, mac(1)),
            Destination::Broadcast
        );
    }
    // ciaddr: unicast there, even with the broadcast flag.
    let mut configured_bcast = broadcast_flag(discover(mac(1)));
    configured_bcast.set_ciaddr(ip(101));
    for m in [&configured, &configured_bcast] {
        assert_eq!(
            destination(m, MessageType::Ack, yiaddr, mac(1)),
            Destination::Unicast(SocketAddrV4::new(ip(101), 68))
        );
    }
    // The broadcast flag asks for broadcast.
    assert_eq!(
        destination(&bcast, MessageType::Offer, yiaddr, mac(1)),
        Destination::Broadcast
    );
    // Else: unicast to yiaddr at the client's MAC.
    assert_eq!(
        destination(&plain, MessageType::Offer, yiaddr, mac(1)),
        Destination::UnicastHw(SocketAddrV4::new(yiaddr, 68), mac(1))
    );
    // No address to unicast to: broadcast.
    assert_eq!(
        destination(&plain, MessageType::Ack, Ipv4Addr::UNSPECIFIED, mac(1)),
        Destination::Broadcast
    );
    assert_eq!(
        Destination::Broadcast.socket_addr(),
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 68)
    );
}

#[test]
fn replies_carry_the_destination_of_section_4_1() {
    let mut env = Env::new();
    // Plain client: OFFER to yiaddr at its MAC.
    let r = env.offer(&discover(mac(1)));
    assert_eq!(
        r.dest,
        Destination::UnicastHw(SocketAddrV4::new(DYNAMIC[0], 68), mac(1))
    );
    assert!(!r.message.flags().broadcast());
    // Broadcast flag: broadcast, flag kept in the reply.
    let r = env.reply(&broadcast_flag(select(mac(1), DYNAMIC[0], SERVER)));
    assert_eq!((r.kind, r.dest), (MessageType::Ack, Destination::Broadcast));
    assert!(r.message.flags().broadcast());
    // Through a relay on the LAN: to the relay's server port, giaddr kept.
    let r = env.offer(&relayed(discover(mac(2)), RELAY));
    assert_eq!(r.dest, Destination::Relay(SocketAddrV4::new(RELAY, 67)));
    assert_eq!(r.message.giaddr(), RELAY);
    assert!(!r.message.flags().broadcast());
    let r = env.reply(&relayed(select(mac(2), r.message.yiaddr(), SERVER), RELAY));
    assert_eq!(
        (r.kind, r.dest),
        (MessageType::Ack, Destination::Relay(SocketAddrV4::new(RELAY, 67)))
    );
    // A NAK is broadcast; through a relay it goes to the relay with the broadcast flag
    // set, so the relay broadcasts it on (§4.3.2).
    let r = env.reply(&init_reboot(mac(3), Ipv4Addr::new(10, 1, 2, 3)));
    assert_nak(&r);
    assert_eq!(r.dest, Destination::Broadcast);
    let r = env.reply(&relayed(init_reboot(mac(3), Ipv4Addr::new(10, 1, 2, 3)), RELAY));
    assert_nak(&r);
    assert_eq!(r.dest, Destination::Relay(SocketAddrV4::new(RELAY, 67)));
    assert!(r.message.flags().broadcast(), "relayed NAKs have the broadcast bit");
    // A configured client (renewing): unicast to ciaddr.
    let addr = env.lease(4);
    let r = env.reply(&renew(mac(4), addr));
    assert_eq!(r.dest, Destination::Unicast(SocketAddrV4::new(addr, 68)));
}

#[test]
fn relayed_requests_from_another_subnet_are_ignored() {
    let mut env = Env::new();
    for giaddr in [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(172, 17, 0, 1)] {
        assert_eq!(
            env.handle(&relayed(discover(mac(1)), giaddr)),
            Outcome::Ignored(Ignored::NoReply("relayed from another subnet"))
        );
    }
    assert_eq!(env.pool.leases().count(), 0);
}

// ---------------------------------------------------------------- malformed

#[test]
fn requests_that_are_not_ethernet_client_messages_are_malformed() {
    let mut env = Env::new();
    let malformed = |env: &mut Env, m: &Message| {
        assert!(
            matches!(env.handle(m), Outcome::Ignored(Ignored::Malformed(_))),
            "{m:?}"
        )
    };

    let mut reply_op = discover(mac(1));
    reply_op.set_opcode(Opcode::BootReply);
    malformed(&mut env, &reply_op);

    let mut not_eth = discover(mac(1));
    not_eth.set_htype(HType::from(6u8));
    malformed(&mut env, &not_eth);

    let mut long_chaddr = discover(mac(1));
    long_chaddr.set_chaddr(&[1; 16]);
    malformed(&mut env, &long_chaddr);

    let mut no_type = discover(mac(1));
    no_type.opts_mut().remove(OptionCode::MessageType);
    malformed(&mut env, &no_type);

    for server_kind in [MessageType::Offer, MessageType::Ack, MessageType::Nak] {
        malformed(&mut env, &msg(server_kind, mac(1)));
    }
    assert_eq!(env.pool.leases().count(), 0);
}

#[test]
fn hlen_past_chaddr_is_rejected_before_chaddr_is_read() {
    // dhcproto's Message::chaddr() slices by hlen and panics past 16 bytes.
    let mut env = Env::new();
    let mut bytes = discover(mac(1)).to_vec().expect("encodes");
    for hlen in [0u8, 5, 7, 16, 17, 200, 255] {
        bytes[2] = hlen;
        let m = Message::from_bytes(&bytes).expect("decodes");
        assert!(
            matches!(env.handle(&m), Outcome::Ignored(Ignored::Malformed(_))),
            "hlen {hlen}"
        );
    }
}

/// A DISCOVER with `extra` option bytes (code, len, payload...) put before END.
fn discover_with_raw_options(extra: &[u8]) -> Vec<u8> {
    let mut bytes = discover(mac(1)).to_vec().expect("encodes");
    let end = bytes.iter().rposition(|b| *b == 255).expect("END option");
    bytes.splice(end..end, extra.iter().copied());
    bytes
}

#[test]
fn decode_refuses_the_option_lengths_dhcproto_trips_over() {
    use super::decode;
    let bad: [&[u8]; 8] = [
        &[80, 1, 0],                       // Rapid Commit carries nothing
        &[94, 2, 1, 2],                    // Client Network Interface is 3 bytes
        &[94, 3, 1, 2, 3, 94, 3, 1, 2, 3], // ... also when split in two (RFC 3396)
        &[81, 2, 0, 0],                    // Client FQDN has 3 bytes of flags first
        &[151, 0],                         // status code needs its code byte
        &[152, 3, 0, 0, 0],                // times are 4 bytes
        &[154, 5, 0, 0, 0, 0, 0],
        &[155, 0],
    ];
    for extra in bad {
        assert_eq!(
            decode(&discover_with_raw_options(extra)).err(),
            Some(Ignored::Malformed("bad option length")),
            "{extra:?}"
        );
    }
    let good: [&[u8]; 5] = [
        &[],
        &[80, 0],
        &[94, 3, 1, 2, 3],
        &[81, 3, 0, 0, 0],
        &[152, 4, 0, 0, 0, 1],
    ];
    for extra in good {
        let m = decode(&discover_with_raw_options(extra)).unwrap_or_else(|e| panic!("{extra:?}: {e:?}"));
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
    }
    // A bad length past a truncated option is never reached by dhcproto either.
    assert!(
        decode(&discover(mac(1)).to_vec().expect("encodes")[..100]).is_err(),
        "too short for a message"
    );
}

// ---------------------------------------------------------------- authoritative: the lease table lost the client

/// The lease a client without a record is given after an INIT-REBOOT for `addr`.
fn bound_lease(n: u8, addr: Ipv4Addr, expires: Secs) -> Lease {
    Lease {
        addr,
        client: key(n),
        mac: mac(n),
        hostname: None,
        expires,
        state: LeaseState::Bound,
    }
}

#[test]
fn init_reboot_from_a_client_without_a_record_keeps_a_free_address_after_a_probe() {
    // The lease file is gone: the guest asks for the address it holds.
    let mut env = Env::new();
    let addr = DYNAMIC[2];
    assert_eq!(env.handle(&init_reboot(mac(7), addr)), Outcome::Probe(addr));
    env.pool.probe_started(addr);
    env.pool.mark_probed_free(addr); // nobody else answered
    let ack = env.reply(&init_reboot(mac(7), addr));
    assert_eq!((ack.kind, ack.message.yiaddr()), (MessageType::Ack, addr));
    let lease = bound_lease(7, addr, NOW + LEASE);
    assert_eq!(ack.persist, Some(lease.clone()), "written down like any other lease");
    assert_eq!(env.pool.binding(&key(7)), Some(&lease));
    assert_encodes(&ack);
    // From then on it is an ordinary lease: nobody else gets the address.
    assert_nak(&env.reply(&init_reboot(mac(8), addr)));
    assert!((1..=3).all(|n| env.lease(n) != addr));
}

#[test]
fn init_reboot_for_an_address_another_host_answers_for_is_naked() {
    let mut env = Env::new();
    let addr = DYNAMIC[0];
    assert_eq!(env.handle(&init_reboot(mac(7), addr)), Outcome::Probe(addr));
    env.pool.probe_started(addr);
    assert!(env.pool.quarantine(addr, mac(77), env.now).is_ok()); // a squatter answered
    assert_nak(&env.reply(&init_reboot(mac(7), addr)));
    assert!(env.pool.binding(&key(7)).is_none());
    // The client then DISCOVERs, and gets another address.
    assert_ne!(env.lease(7), addr);
}

#[test]
fn init_reboot_from_a_client_without_a_record_for_an_address_it_cannot_have_is_naked() {
    let mut env = Env::new();
    let held = env.lease(1);
    let cases = [
        (held, "leased to another client"),
        (RESERVED, "reserved for another host"),
        (
            Ipv4Addr::new(172, 16, 20, 7),
            "reserved for another host, outside the range",
        ),
        (Ipv4Addr::new(172, 16, 5, 5), "on the LAN but outside the range"),
        (Ipv4Addr::new(10, 0, 0, 5), "not on the LAN"),
    ];
    for (addr, what) in cases {
        let r = match env.handle(&init_reboot(mac(7), addr)) {
            Outcome::Reply(r) => r,
            other => panic!("{addr} ({what}): expected a NAK, got {other:?}"),
        };
        assert_nak(&r);
        assert_eq!(r.dest, Destination::Broadcast, "{what}");
    }
    assert!(env.pool.binding(&key(7)).is_none());
    assert_eq!(
        env.pool.lease(held).map(|l| (&l.client, l.state)),
        Some((&key(1), LeaseState::Bound)),
        "untouched"
    );
}

#[test]
fn a_reserved_host_without_a_record_gets_its_reservation_at_once() {
    let mut env = Env::new();
    let ack = env.reply(&init_reboot(RESERVED_MAC, RESERVED));
    assert_eq!((ack.kind, ack.message.yiaddr()), (MessageType::Ack, RESERVED));
    assert!(ack.persist.is_some());
}

#[test]
fn a_client_with_a_record_asking_for_a_never_used_address_is_probed_first() {
    let mut env = Env::new();
    let own = env.lease(1);
    let other = DYNAMIC[3];
    assert_ne!(own, other);
    assert_eq!(env.handle(&init_reboot(mac(1), other)), Outcome::Probe(other));
    env.pool.mark_probed_free(other);
    assert_eq!(env.reply(&init_reboot(mac(1), other)).message.yiaddr(), other);
    assert_eq!(env.pool.binding(&key(1)).map(|l| l.addr), Some(other));
}

#[test]
fn renewing_or_rebinding_without_a_record_is_acked_without_a_probe_and_recorded() {
    // The client sends from the address and answers ARP for it itself: a probe could
    // not tell it from another holder, so a free address in range is simply confirmed.
    let mut env = Env::new();
    for (n, addr, m) in [
        (7, DYNAMIC[1], renew(mac(7), DYNAMIC[1])),
        (8, DYNAMIC[2], broadcast_flag(renew(mac(8), DYNAMIC[2]))),
    ] {
        let ack = env.reply(&m);
        assert_eq!((ack.kind, ack.message.yiaddr()), (MessageType::Ack, addr));
        assert_eq!(ack.persist, Some(bound_lease(n, addr, NOW + LEASE)));
    }
    // Not one that is held by another client or outside the range.
    let held = env.lease(1);
    assert_nak(&env.reply(&renew(mac(9), held)));
    assert_nak(&env.reply(&renew(mac(9), Ipv4Addr::new(172, 16, 5, 5))));
}
