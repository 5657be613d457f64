//! The nftables ruleset as a pure function of the config and the resolved NIC names.
//!
//! One table, `inet routerd`, holds everything routerd owns. The batch first deletes
//! and re-creates that table, so `nft` applies the whole ruleset in one transaction:
//! either all of it is in place or none of it changed. Connection tracking (and with
//! it every NAT binding of established connections) lives outside the table and
//! survives the replacement.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use nftables::batch::Batch;
use nftables::expr::{Expression, Map, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, SetItem, CT};
use nftables::schema::{self, Chain, FlowTable, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Counter, Flow, Match, NATFamily, Operator, SetOp, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use config::{Config, Forward};

pub const TABLE: &str = "routerd";
pub const FLOWTABLE: &str = "fastpath";
const FAMILY: NfFamily = NfFamily::INet;
const LOOPBACK: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 0, 0, 0), 8);

/// What the ruleset needs to know besides the config: the links' names.
#[derive(Debug, Clone)]
pub struct Interfaces {
    pub wan: String,
    /// Each LAN's link, in the order of `config.lans`.
    pub lans: Vec<String>,
}

impl Interfaces {
    /// Names for a ruleset shown without a system (`routerd render`, golden files): the
    /// WAN is `wan`, the single-LAN form's LAN `lan`, the others their LAN's name.
    pub fn placeholders(config: &Config, wan: &str, lan: &str) -> Interfaces {
        Interfaces {
            wan: wan.to_string(),
            lans: config
                .lans
                .iter()
                .map(|l| {
                    if l.name == config::DEFAULT_LAN_NAME {
                        lan.to_string()
                    } else {
                        l.name.clone()
                    }
                })
                .collect(),
        }
    }
}

/// A LAN with its link's name, as the rules need it.
struct LanRules<'a> {
    lan: &'a config::Lan,
    ifname: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Offload established flows to a flowtable (needs kernel support).
    pub flowtable: bool,
}

/// The complete batch that replaces routerd's table.
pub fn ruleset(config: &Config, ifs: &Interfaces, features: Features) -> Nftables<'static> {
    let mut batch = Batch::new();
    let table = Table {
        family: FAMILY,
        name: TABLE.into(),
        handle: None,
    };
    // "add" succeeds whether or not the table exists, so the "delete" after it never
    // fails; the fresh table is then built in the same transaction.
    batch.add(NfListObject::Table(table.clone()));
    batch.delete(NfListObject::Table(table.clone()));
    batch.add(NfListObject::Table(table));

    let wan = ifs.wan.clone();
    let lans: Vec<LanRules> = config
        .lans
        .iter()
        .zip(&ifs.lans)
        .map(|(lan, ifname)| LanRules { lan, ifname })
        .collect();
    // Any LAN's link: one name, or a set of them.
    let lan_ifs = || match lans.as_slice() {
        [one] => s(one.ifname),
        _ => set(lans.iter().map(|l| s(l.ifname))),
    };
    let lan_nets: Vec<Ipv4Net> = config.lans.iter().map(|l| l.address.trunc()).collect();
    if features.flowtable {
        batch.add(NfListObject::FlowTable(FlowTable {
            family: FAMILY,
            table: TABLE.into(),
            name: FLOWTABLE.into(),
            handle: None,
            hook: Some(NfHook::Ingress),
            prio: Some(0),
            dev: Some(Cow::Owned(
                std::iter::once(wan.clone())
                    .chain(ifs.lans.iter().cloned())
                    .map(Into::into)
                    .collect(),
            )),
        }));
    }
    for (name, kind, hook, prio, policy) in [
        (
            "prerouting",
            NfChainType::NAT,
            NfHook::Prerouting,
            -100,
            NfChainPolicy::Accept,
        ),
        ("input", NfChainType::Filter, NfHook::Input, 0, NfChainPolicy::Drop),
        ("forward", NfChainType::Filter, NfHook::Forward, 0, NfChainPolicy::Drop),
        (
            "postrouting",
            NfChainType::NAT,
            NfHook::Postrouting,
            100,
            NfChainPolicy::Accept,
        ),
    ] {
        batch.add(NfListObject::Chain(Chain {
            family: FAMILY,
            table: TABLE.into(),
            name: name.into(),
            _type: Some(kind),
            hook: Some(hook),
            prio: Some(prio),
            policy: Some(policy),
            ..Chain::default()
        }));
    }

    let wan_ip = config.wan.address.addr();
    let mut rules = Vec::new();

    // prerouting: port forwards, from anywhere to the public address (so LAN guests
    // reach them through the public address too: hairpin). Each counts into its own
    // named counter, which the status page reads back by the same name.
    for fc in forward_counters(config) {
        batch.add(NfListObject::Counter(schema::Counter {
            family: FAMILY,
            table: TABLE.into(),
            name: fc.name.clone().into(),
            handle: None,
            // Starting values; the crate would otherwise write `"bytes": null`.
            packets: Some(0),
            bytes: Some(0),
        }));
        rules.push(forward_dnat(&fc, wan_ip));
    }

    // input: default deny, the router offers nothing to the WAN.
    rules.extend([
        rule("input", vec![ct_state(&["established", "related"]), accept()], None),
        rule("input", vec![ct_state(&["invalid"]), drop()], None),
        rule(
            "input",
            vec![m(meta(MetaKey::Iifname), Operator::EQ, s("lo")), accept()],
            None,
        ),
        rule(
            "input",
            spoofed_from_wan(&wan, &lan_nets, wan_ip),
            Some("spoofed source on the WAN"),
        ),
    ]);
    rules.extend(lans.iter().map(|l| spoofed_from_lan("input", l)));
    rules.extend([
        rule(
            "input",
            vec![
                m(meta(MetaKey::L4proto), Operator::EQ, s("icmp")),
                m(
                    payload("icmp", "type"),
                    Operator::EQ,
                    set(["destination-unreachable", "time-exceeded", "parameter-problem"].map(s)),
                ),
                accept(),
            ],
            None,
        ),
        rule(
            "input",
            vec![
                m(meta(MetaKey::Iifname), Operator::EQ, lan_ifs()),
                m(meta(MetaKey::L4proto), Operator::EQ, s("icmp")),
                m(payload("icmp", "type"), Operator::EQ, s("echo-request")),
                accept(),
            ],
            Some("ping from the LAN"),
        ),
        // The WAN sees only the public address: the LAN address does not answer there.
        rule(
            "input",
            vec![
                m(meta(MetaKey::Iifname), Operator::EQ, s(&wan)),
                m(payload("ip", "daddr"), Operator::EQ, s(&wan_ip.to_string())),
                m(meta(MetaKey::L4proto), Operator::EQ, s("icmp")),
                m(payload("icmp", "type"), Operator::EQ, s("echo-request")),
                accept(),
            ],
            Some("ping of the WAN address from the WAN"),
        ),
        rule(
            "input",
            vec![
                m(meta(MetaKey::Iifname), Operator::EQ, lan_ifs()),
                // DHCPv4 only: nothing of routerd's listens on IPv6 UDP/67.
                m(meta(MetaKey::Nfproto), Operator::EQ, s("ipv4")),
                m(payload("udp", "dport"), Operator::EQ, num(67)),
                accept(),
            ],
            Some("DHCP from the LAN"),
        ),
    ]);
    if let Some(status) = &config.status {
        // Each LAN reaches the page on its own router address only: another LAN's
        // address is no way into that LAN.
        rules.extend(lans.iter().filter(|l| status.serves(&l.lan.name)).map(|l| {
            rule(
                "input",
                vec![
                    m(meta(MetaKey::Iifname), Operator::EQ, s(l.ifname)),
                    m(
                        payload("ip", "daddr"),
                        Operator::EQ,
                        s(&l.lan.address.addr().to_string()),
                    ),
                    m(payload("tcp", "dport"), Operator::EQ, num(u32::from(status.port))),
                    accept(),
                ],
                Some("status page and metrics, from the LAN only"),
            )
        }));
    }

    // forward: LAN to the internet, established flows, and the port forwards.
    if features.flowtable {
        rules.push(rule(
            "forward",
            vec![
                m(meta(MetaKey::L4proto), Operator::EQ, set([s("tcp"), s("udp")])),
                Statement::Flow(Flow {
                    op: SetOp::Add,
                    flowtable: format!("@{FLOWTABLE}").into(),
                }),
            ],
            None,
        ));
    }
    rules.extend([
        rule("forward", vec![ct_state(&["established", "related"]), accept()], None),
        rule("forward", vec![ct_state(&["invalid"]), drop()], None),
        rule(
            "forward",
            spoofed_from_wan(&wan, &lan_nets, wan_ip),
            Some("spoofed source on the WAN"),
        ),
    ]);
    rules.extend(lans.iter().map(|l| spoofed_from_lan("forward", l)));
    rules.push(rule(
        "forward",
        vec![
            m(meta(MetaKey::Iifname), Operator::EQ, lan_ifs()),
            m(meta(MetaKey::Oifname), Operator::EQ, s(&wan)),
            accept(),
        ],
        Some("LAN to the internet"),
    ));
    // Between LANs only what `reach` allows opens a connection (replies pass above as
    // established); everything else from one LAN to another hits the drop policy.
    for l in &lans {
        for target in lans.iter().filter(|t| l.lan.reach.contains(&t.lan.name)) {
            rules.push(rule(
                "forward",
                vec![
                    m(meta(MetaKey::Iifname), Operator::EQ, s(l.ifname)),
                    m(meta(MetaKey::Oifname), Operator::EQ, s(target.ifname)),
                    accept(),
                ],
                Some(&format!("LAN {} may reach LAN {}", l.lan.name, target.lan.name)),
            ));
        }
    }
    rules.extend([rule(
        "forward",
        vec![m(ct("status"), Operator::IN, s("dnat")), accept()],
        Some("port forwards"),
    )]);

    // postrouting: the LAN leaves with the failover IP, and hairpinned forwards leave
    // with the router's LAN address so the reply comes back through the router.
    rules.push(rule(
        "postrouting",
        vec![
            m(meta(MetaKey::Oifname), Operator::EQ, s(&wan)),
            m(payload("ip", "saddr"), Operator::EQ, lan_prefixes(&lan_nets)),
            snat(wan_ip),
        ],
        Some("LAN to the internet as the failover IP"),
    ));
    // A forward reached from any LAN leaves towards its target with the router's
    // address on the target's LAN, so the reply comes back through the router.
    rules.extend(lans.iter().map(|l| {
        rule(
            "postrouting",
            vec![
                m(meta(MetaKey::Oifname), Operator::EQ, s(l.ifname)),
                m(payload("ip", "saddr"), Operator::EQ, lan_prefixes(&lan_nets)),
                m(ct("status"), Operator::IN, s("dnat")),
                snat(l.lan.address.addr()),
            ],
            Some("hairpin: LAN to a forward through the public address"),
        )
    }));

    for r in rules {
        batch.add(NfListObject::Rule(r));
    }
    batch.to_nftables()
}

/// A minimal batch that only checks whether the kernel accepts a flowtable on `dev`.
pub fn flowtable_probe(dev: &str) -> (Nftables<'static>, Nftables<'static>) {
    let table = Table {
        family: FAMILY,
        name: "routerd_probe".into(),
        handle: None,
    };
    let mut add = Batch::new();
    add.add(NfListObject::Table(table.clone()));
    add.add(NfListObject::FlowTable(FlowTable {
        family: FAMILY,
        table: "routerd_probe".into(),
        name: "probe".into(),
        handle: None,
        hook: Some(NfHook::Ingress),
        prio: Some(0),
        dev: Some(Cow::Owned(vec![dev.to_string().into()])),
    }));
    let mut delete = Batch::new();
    delete.add(NfListObject::Table(table.clone()));
    delete.delete(NfListObject::Table(table));
    (add.to_nftables(), delete.to_nftables())
}

/// The named nft counter of one port forward and transport (a `both` forward has two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardCounter<'a> {
    /// `fwd_<index in config.forwards>_<transport>`: made here only, for the ruleset and
    /// for whoever reads the counters back.
    pub name: String,
    pub transport: &'static str,
    pub forward: &'a Forward,
}

/// The forwards' counters, in rule order: the one owner of their names.
pub fn forward_counters(config: &Config) -> Vec<ForwardCounter<'_>> {
    config
        .forwards
        .iter()
        .enumerate()
        .flat_map(|(i, forward)| {
            forward
                .protocol
                .transports()
                .iter()
                .map(move |transport| ForwardCounter {
                    name: format!("fwd_{i}_{transport}"),
                    transport,
                    forward,
                })
        })
        .collect()
}

fn forward_dnat(fc: &ForwardCounter, wan_ip: Ipv4Addr) -> Rule<'static> {
    let (f, transport) = (fc.forward, fc.transport);
    let dport = payload(transport, "dport");
    let port = if f.to_ports == f.ports {
        None // the destination port stays as it is
    } else if f.ports.is_single() {
        Some(num(u32::from(f.to_ports.first)))
    } else {
        // A shifted range maps one to one: dport map { 8000 : 9000, 8001 : 9001, ... }
        let items = (0..f.ports.len())
            .map(|i| {
                let from = u32::from(f.ports.first) + i;
                let to = u32::from(f.to_ports.first) + i;
                SetItem::Mapping(num(from), num(to))
            })
            .collect();
        Some(Expression::Named(NamedExpression::Map(Box::new(Map {
            key: dport.clone(),
            data: Expression::Named(NamedExpression::Set(items)),
        }))))
    };
    // For people reading `nft list ruleset`; nothing parses it.
    let comment = format!("forward {transport} {} to {}:{}", f.ports, f.to, f.to_ports);
    rule(
        "prerouting",
        vec![
            m(payload("ip", "daddr"), Operator::EQ, s(&wan_ip.to_string())),
            m(dport, Operator::EQ, ports(f.ports)),
            Statement::Counter(Counter::Named(fc.name.clone().into())),
            Statement::DNAT(Some(NAT {
                addr: Some(s(&f.to.to_string())),
                family: Some(NATFamily::IP),
                port,
                flags: None,
            })),
        ],
        Some(&comment),
    )
}

/// The LAN prefixes as one match: a single prefix, or a set of them.
fn lan_prefixes(nets: &[Ipv4Net]) -> Expression<'static> {
    match nets {
        [one] => prefix(net(*one)),
        _ => set(nets.iter().map(|n| prefix(net(*n)))),
    }
}

fn spoofed_from_wan(wan: &str, lan_nets: &[Ipv4Net], wan_ip: Ipv4Addr) -> Vec<Statement<'static>> {
    let sources = lan_nets
        .iter()
        .map(|n| prefix(net(*n)))
        .chain([prefix(LOOPBACK), s(&wan_ip.to_string())]);
    vec![
        m(meta(MetaKey::Iifname), Operator::EQ, s(wan)),
        m(payload("ip", "saddr"), Operator::EQ, set(sources)),
        Statement::Counter(Counter::Anonymous(None)),
        drop(),
    ]
}

/// Drops what comes in on a LAN's link from outside that LAN's own prefix.
fn spoofed_from_lan(chain: &str, l: &LanRules) -> Rule<'static> {
    let comment = if l.lan.name == config::DEFAULT_LAN_NAME {
        "spoofed source on the LAN".to_string()
    } else {
        format!("spoofed source on the LAN {}", l.lan.name)
    };
    rule(
        chain,
        vec![
            m(meta(MetaKey::Iifname), Operator::EQ, s(l.ifname)),
            m(meta(MetaKey::Nfproto), Operator::EQ, s("ipv4")),
            // 0.0.0.0 is a DHCP client that has no address yet.
            m(
                payload("ip", "saddr"),
                Operator::NEQ,
                set([s("0.0.0.0"), prefix(net(l.lan.address.trunc()))]),
            ),
            Statement::Counter(Counter::Anonymous(None)),
            drop(),
        ],
        Some(&comment),
    )
}

fn rule(chain: &str, expr: Vec<Statement<'static>>, comment: Option<&str>) -> Rule<'static> {
    Rule {
        family: FAMILY,
        table: TABLE.into(),
        chain: chain.to_string().into(),
        expr: expr.into(),
        handle: None,
        index: None,
        comment: comment.map(|c| c.to_string().into()),
    }
}

fn m(left: Expression<'static>, op: Operator, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn s(v: &str) -> Expression<'static> {
    Expression::String(v.to_string().into())
}

fn num(v: u32) -> Expression<'static> {
    Expression::Number(v)
}

fn set<I: IntoIterator<Item = Expression<'static>>>(items: I) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(items.into_iter().map(SetItem::Element).collect()))
}

fn ports(r: config::PortRange) -> Expression<'static> {
    if r.is_single() {
        num(u32::from(r.first))
    } else {
        Expression::Range(Box::new(nftables::expr::Range {
            range: [num(u32::from(r.first)), num(u32::from(r.last))],
        }))
    }
}

fn net(n: Ipv4Net) -> (Ipv4Addr, u8) {
    (n.network(), n.prefix_len())
}

fn prefix((addr, len): (Ipv4Addr, u8)) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(&addr.to_string())),
        len: u32::from(len),
    }))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &str, field: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField {
        protocol: protocol.to_string().into(),
        field: field.to_string().into(),
    })))
}

fn ct(key: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.to_string().into(),
        family: None,
        dir: None,
    }))
}

fn ct_state(states: &[&str]) -> Statement<'static> {
    m(
        ct("state"),
        Operator::IN,
        Expression::List(states.iter().map(|st| s(st)).collect()),
    )
}

fn snat(to: Ipv4Addr) -> Statement<'static> {
    Statement::SNAT(Some(NAT {
        addr: Some(s(&to.to_string())),
        family: Some(NATFamily::IP),
        port: None,
        flags: None,
    }))
}

fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

fn drop() -> Statement<'static> {
    Statement::Drop(None)
}
