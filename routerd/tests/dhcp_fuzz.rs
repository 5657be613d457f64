//! Malformed DHCP input never panics the server: such packets are dropped and counted
//! (README, "DHCP server").
//!
//! Property tests of the decode-and-handle path the socket loop runs for every packet:
//! `Message::from_bytes` then `handler::handle` on one shared pool, with arbitrary
//! bytes, arbitrary options after a valid header, and mutations of valid requests.
//! Every reply must encode. Bounded: a fixed number of cases, a few seconds in debug.
//!
//! The seed is printed; rerun one with `DHCP_FUZZ_SEED=<seed> cargo test -p routerd --test dhcp_fuzz`,
//! and search longer with `DHCP_FUZZ_CASES=1000000`.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use config::Config;
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Encodable};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngSeed, TestCaseError, TestRunner};
use routerd::dhcp::handler::{self, Outcome, Scope};
use routerd::dhcp::pool::{Pool, Secs};

/// A small range (so the pool runs dry, reuses expired addresses and quarantines),
/// a reservation, and a domain: every branch of the handler is reachable.
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
range = "172.16.10.100-172.16.10.115"
lease_time = "2m"
domain = "lan"

[[dhcp.host]]
mac = "52:54:00:00:00:99"
address = "172.16.10.105"
hostname = "web"
"#;

/// Cases per property (`DHCP_FUZZ_CASES` overrides).
const CASES: u32 = 20_000;
/// Where the options start in an encoded message (fixed header + magic cookie).
const OPTIONS_AT: usize = 240;

/// The server's state, shared by every case of a run, as in the real socket loop.
struct Shared {
    pool: Pool,
    scope: Scope,
    now: Secs,
    handled: u64,
    replies: u64,
}

impl Shared {
    fn new() -> Shared {
        let config = Config::parse(CONFIG, "fuzz").unwrap_or_else(|e| panic!("fuzz config: {e}"));
        let (scope, pool) = Scope::from_config(&config).expect("[dhcp] section");
        Shared {
            pool,
            scope,
            now: 1_700_000_000,
            handled: 0,
            replies: 0,
        }
    }

    /// What the socket loop does with one datagram; fails the case when a reply does
    /// not encode. A panic anywhere in here fails the case too (proptest catches it).
    fn datagram(&mut self, bytes: &[u8]) -> Result<(), TestCaseError> {
        // The clock moves on, so offers time out and leases expire during a run.
        self.now += 7;
        let Ok(msg) = handler::decode(bytes) else { return Ok(()) };
        self.handled += 1;
        let mut outcome = handler::handle(&mut self.pool, &self.scope, &msg, self.now);
        if let Outcome::Probe(addr) = outcome {
            // As when nobody answers the ARP probe: handle again.
            self.pool.mark_probed_free(addr);
            outcome = handler::handle(&mut self.pool, &self.scope, &msg, self.now);
        }
        if let Outcome::Reply(reply) = outcome {
            self.replies += 1;
            let encoded = reply
                .message
                .to_vec()
                .map_err(|e| TestCaseError::fail(format!("reply does not encode: {e}")))?;
            prop_assert!(encoded.len() <= 1500, "reply of {} bytes", encoded.len());
            let back = Message::from_bytes(&encoded)
                .map_err(|e| TestCaseError::fail(format!("reply does not decode: {e}")))?;
            prop_assert_eq!(back.xid(), msg.xid());
            prop_assert_eq!(back.opts().msg_type(), Some(reply.kind));
            let _ = reply.dest.socket_addr();
        }
        Ok(())
    }
}

fn seed() -> u64 {
    std::env::var("DHCP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0x5eed, |d| d.as_secs() ^ u64::from(d.subsec_nanos()))
        })
}

fn runner(name: &str, cases: u32) -> TestRunner {
    let seed = seed();
    eprintln!("{name}: {cases} cases, DHCP_FUZZ_SEED={seed}");
    TestRunner::new(RunnerConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..RunnerConfig::default()
    })
}

fn run<S: Strategy>(name: &str, strategy: S, to_bytes: impl Fn(S::Value) -> Vec<u8>)
where
    S::Value: std::fmt::Debug,
{
    let shared = RefCell::new(Shared::new());
    let start = Instant::now();
    let cases = std::env::var("DHCP_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CASES);
    let result = runner(name, cases).run(&strategy, |value| shared.borrow_mut().datagram(&to_bytes(value)));
    let s = shared.borrow();
    eprintln!(
        "{name}: {} decoded and handled, {} replies, {:.1?}",
        s.handled,
        s.replies,
        start.elapsed()
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

// ---------------------------------------------------------------- valid seeds

fn mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0, 0, n]
}

/// Valid client messages of every type and state, each with a different option mix.
fn seeds() -> Vec<Vec<u8>> {
    let server = Ipv4Addr::new(172, 16, 0, 1);
    let base = |kind: MessageType, n: u8| {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(0xdead_0000 | u32::from(n), z, z, z, z, &mac(n));
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m
    };
    let mut out = Vec::new();

    let mut m = base(MessageType::Discover, 1);
    m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::DomainName,
        OptionCode::Hostname,
    ]));
    m.opts_mut().insert(DhcpOption::Hostname("guest-1".into()));
    m.opts_mut()
        .insert(DhcpOption::ClientIdentifier(vec![1, 0x52, 0x54, 0, 0, 0, 1]));
    m.opts_mut().insert(DhcpOption::MaxMessageSize(1500));
    out.push(m);

    let mut m = base(MessageType::Discover, 2);
    m.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(172, 16, 10, 103)));
    m.set_flags(Flags::default().set_broadcast());
    out.push(m);

    // Relayed DISCOVER from a relay on the LAN.
    let mut m = base(MessageType::Discover, 3);
    m.set_giaddr(Ipv4Addr::new(172, 16, 10, 50)).set_hops(1);
    out.push(m);

    // The reserved host.
    out.push(base(MessageType::Discover, 0x99));

    // REQUEST, SELECTING.
    let mut m = base(MessageType::Request, 1);
    m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    m.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(172, 16, 10, 100)));
    m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
    ]));
    m.opts_mut()
        .insert(DhcpOption::ClientIdentifier(vec![1, 0x52, 0x54, 0, 0, 0, 1]));
    out.push(m);

    // REQUEST, INIT-REBOOT.
    let mut m = base(MessageType::Request, 2);
    m.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(172, 16, 10, 101)));
    m.opts_mut().insert(DhcpOption::Hostname("two".into()));
    out.push(m);

    // REQUEST, RENEWING (relayed variant too).
    let mut m = base(MessageType::Request, 3);
    m.set_ciaddr(Ipv4Addr::new(172, 16, 10, 102));
    out.push(m.clone());
    m.set_giaddr(Ipv4Addr::new(172, 16, 10, 50));
    out.push(m);

    let mut m = base(MessageType::Decline, 1);
    m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    m.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(172, 16, 10, 100)));
    out.push(m);

    let mut m = base(MessageType::Release, 2);
    m.set_ciaddr(Ipv4Addr::new(172, 16, 10, 101));
    m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    out.push(m);

    let mut m = base(MessageType::Inform, 4);
    m.set_ciaddr(Ipv4Addr::new(172, 16, 10, 60));
    m.opts_mut()
        .insert(DhcpOption::ParameterRequestList(vec![OptionCode::DomainNameServer]));
    out.push(m);

    out.into_iter().map(|m| m.to_vec().expect("seed encodes")).collect()
}

// ---------------------------------------------------------------- mutations

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        value: u8,
    },
    Truncate {
        to: usize,
    },
    SetHlen(u8),
    SetHtype(u8),
    SetOp(u8),
    /// Set the length byte of the `nth` option (modulo their count).
    OptionLength {
        nth: usize,
        len: u8,
    },
    /// Put an option with an arbitrary code and payload (and a length that may lie).
    InsertOption {
        code: u8,
        len: u8,
        payload: Vec<u8>,
        at_end: bool,
    },
    /// Remove the END option and anything after it.
    DropEnd,
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        2 => (0usize..400).prop_map(|to| Mutation::Truncate { to }),
        3 => prop_oneof![Just(6u8), 0u8..=16, 17u8..=255].prop_map(Mutation::SetHlen),
        1 => any::<u8>().prop_map(Mutation::SetHtype),
        1 => (0u8..4).prop_map(Mutation::SetOp),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(nth, len)| Mutation::OptionLength { nth, len }),
        3 => (any::<u8>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40), any::<bool>())
            .prop_map(|(code, len, payload, at_end)| Mutation::InsertOption { code, len, payload, at_end }),
        1 => Just(Mutation::DropEnd),
        1 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Append),
    ]
}

/// Offsets of the length bytes of the options (code, len, payload...), as far as they
/// can be walked.
fn option_length_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = OPTIONS_AT;
    while i < bytes.len() {
        match bytes[i] {
            0 => i += 1,
            255 => break,
            _ => {
                if i + 1 >= bytes.len() {
                    break;
                }
                out.push(i + 1);
                i += 2 + usize::from(bytes[i + 1]);
            }
        }
    }
    out
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::FlipBit { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
        Mutation::SetByte { at, value } if len > 0 => bytes[at % len] = *value,
        Mutation::Truncate { to } => bytes.truncate(*to),
        Mutation::SetHlen(v) if len > 2 => bytes[2] = *v,
        Mutation::SetHtype(v) if len > 1 => bytes[1] = *v,
        Mutation::SetOp(v) if len > 0 => bytes[0] = *v,
        Mutation::OptionLength { nth, len: l } => {
            let offsets = option_length_offsets(bytes);
            if !offsets.is_empty() {
                bytes[offsets[nth % offsets.len()]] = *l;
            }
        }
        Mutation::InsertOption {
            code,
            len: l,
            payload,
            at_end,
        } => {
            let mut opt = vec![*code, *l];
            opt.extend_from_slice(payload);
            let at = if *at_end {
                bytes.iter().rposition(|b| *b == 255).unwrap_or(len)
            } else {
                OPTIONS_AT.min(len)
            };
            bytes.splice(at..at, opt);
        }
        Mutation::DropEnd => {
            if let Some(end) = bytes.iter().rposition(|b| *b == 255) {
                bytes.truncate(end.max(OPTIONS_AT.min(len)));
            }
        }
        Mutation::Append(tail) => bytes.extend_from_slice(tail),
        _ => {}
    }
}

// ---------------------------------------------------------------- the properties

#[test]
fn random_bytes_never_panic() {
    run(
        "random bytes",
        proptest::collection::vec(any::<u8>(), 0..600),
        |bytes| bytes,
    );
}

#[test]
fn random_options_after_a_valid_header_never_panic() {
    // Random bytes rarely get past the header and the magic cookie: this puts random
    // option bytes behind a valid BOOTREQUEST header (random hlen, giaddr, ciaddr).
    let header = seeds().swap_remove(0);
    let strategy = (
        proptest::collection::vec(any::<u8>(), 0..360),
        prop_oneof![Just(6u8), any::<u8>()],
        any::<bool>(),
        any::<[u8; 4]>(),
    );
    run("random options", strategy, move |(options, hlen, relayed, ciaddr)| {
        let mut bytes = header[..OPTIONS_AT].to_vec();
        bytes[2] = hlen;
        if relayed {
            bytes[24..28].copy_from_slice(&[172, 16, 10, 50]);
        }
        bytes[12..16].copy_from_slice(&ciaddr);
        // Mostly a valid message type first, so the handler gets to the options.
        if options.first().is_some_and(|b| b % 4 != 0) {
            bytes.extend_from_slice(&[53, 1, 1 + options[0] % 8]);
        }
        bytes.extend_from_slice(&options);
        bytes
    });
}

#[test]
fn mutated_valid_requests_never_panic() {
    let seeds = seeds();
    let strategy = (0..seeds.len(), proptest::collection::vec(mutation(), 1..6));
    run("mutations", strategy, move |(seed, mutations)| {
        let mut bytes = seeds[seed].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        bytes
    });
}

/// The handler must check hlen before reading chaddr: dhcproto decodes any hlen, and
/// its `Message::chaddr()` panics past 16 bytes. This proves the fuzz input above
/// (hlen 17..=255 on a valid request) reaches that panic if the check ever goes.
#[test]
fn hlen_past_16_reaches_dhcproto_panic_and_the_handler_rejects_it() {
    let mut shared = Shared::new();
    let mut bytes = seeds().swap_remove(0);
    bytes[2] = 17;
    let msg = Message::from_bytes(&bytes).expect("decodes whatever hlen says");
    eprintln!("(the panic message below is expected: it is dhcproto's chaddr() on hlen 17)");
    assert!(
        std::panic::catch_unwind(|| msg.chaddr().len()).is_err(),
        "dhcproto no longer panics on hlen > 16"
    );
    for mut bytes in seeds() {
        for hlen in 17..=255u8 {
            bytes[2] = hlen;
            let msg = Message::from_bytes(&bytes).expect("decodes whatever hlen says");
            let outcome = handler::handle(&mut shared.pool, &shared.scope, &msg, shared.now);
            assert!(
                matches!(outcome, Outcome::Ignored(handler::Ignored::Malformed(_))),
                "hlen {hlen}: {outcome:?}"
            );
        }
    }
}
