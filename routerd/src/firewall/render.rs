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
use nftables::stmt::{Counter, Flow, Mangle, Match, NATFamily, Operator, SetOp, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use config::{Config, Forward, OneToOne, Open};

use crate::plan::{wan_mark, Role, PROXY_MARK};

mod v6;
mod wireguard;

pub const TABLE: &str = "routerd";
pub const FLOWTABLE: &str = "fastpath";
const FAMILY: NfFamily = NfFamily::INet;
const LOOPBACK: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 0, 0, 0), 8);

/// What the ruleset needs to know besides the config: the links' names.
#[derive(Debug, Clone)]
pub struct Interfaces {
    pub wan: String,
    /// The NICs of `wan.extra`, in order.
    pub extra_wans: Vec<String>,
    /// Each LAN's link, in the order of `config.lans`.
    pub lans: Vec<String>,
}

impl Interfaces {
    /// Names for a ruleset shown without a system (`routerd render`, golden files): the
    /// WAN is `wan`, the `wan.extra` NICs `wan1`, `wan2`..., the single-LAN form's LAN
    /// `lan`, the others their LAN's name.
    pub fn placeholders(config: &Config, wan: &str, lan: &str) -> Interfaces {
        Interfaces {
            wan: wan.to_string(),
            extra_wans: (1..=config.wan.extra.len()).map(|i| format!("wan{i}")).collect(),
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

    /// The WAN NIC that carries the public address `ip`.
    fn nic_of(&self, config: &Config, ip: Ipv4Addr) -> String {
        config
            .wan
            .extra_index_of(ip)
            .and_then(|i| self.extra_wans.get(i))
            .unwrap_or(&self.wan)
            .clone()
    }

    /// Every WAN NIC, the main one first.
    fn wans(&self) -> Vec<String> {
        std::iter::once(self.wan.clone())
            .chain(self.extra_wans.iter().cloned())
            .collect()
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
    let wans = ifs.wans();
    let publics = config.wan.public_addresses();
    let several_nics = !ifs.extra_wans.is_empty();
    if features.flowtable {
        batch.add(NfListObject::FlowTable(FlowTable {
            family: FAMILY,
            table: TABLE.into(),
            name: FLOWTABLE.into(),
            handle: None,
            hook: Some(NfHook::Ingress),
            prio: Some(0),
            dev: Some(Cow::Owned(
                wans.iter().chain(&ifs.lans).map(|d| Cow::Owned(d.clone())).collect(),
            )),
        }));
    }
    let by_name = !config.named_ports().is_empty();
    if by_name {
        // Before routing: marks the LAN hosts' replies to the proxy's connections from
        // clients' addresses (see `plan::PROXY_MARK`).
        batch.add(NfListObject::Chain(Chain {
            family: FAMILY,
            table: TABLE.into(),
            name: "proxy".into(),
            _type: Some(NfChainType::Filter),
            hook: Some(NfHook::Prerouting),
            prio: Some(-150),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }));
        batch.add(NfListObject::Chain(Chain {
            family: FAMILY,
            table: TABLE.into(),
            name: "proxy_out".into(),
            _type: Some(NfChainType::Filter),
            hook: Some(NfHook::Output),
            prio: Some(-150),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }));
    }
    if several_nics {
        // Before NAT (-100): marks steer policy routing (see `plan::wan_mark`).
        batch.add(NfListObject::Chain(Chain {
            family: FAMILY,
            table: TABLE.into(),
            name: "mark".into(),
            _type: Some(NfChainType::Filter),
            hook: Some(NfHook::Prerouting),
            prio: Some(-150),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
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

    // mark: with extra WAN NICs, what belongs to one leaves by it (its MAC).
    if several_nics {
        rules.extend(mark_rules(config, ifs, &lans, lan_ifs()));
    }
    // proxy: the connections routerd opens from a client's address (IP_TRANSPARENT)
    // are the router's own, whatever their replies' destination says. Marked when
    // they open, by their socket: a lookup by address for every packet would be
    // slower, and would take a DNAT forward's replies to the same service for the
    // proxy's when a closed proxy connection (TIME_WAIT) has the same addresses.
    if by_name {
        rules.push(rule(
            "proxy_out",
            vec![
                m(meta(MetaKey::L4proto), Operator::EQ, s("tcp")),
                ct_state(&["new"]),
                m(
                    Expression::Named(NamedExpression::Socket(nftables::expr::Socket {
                        key: Cow::Owned(nftables::expr::SocketAttr::Transparent),
                    })),
                    Operator::EQ,
                    num(1),
                ),
                mangle(ct("mark"), num(PROXY_MARK)),
            ],
            Some("routerd's connections from a client's address"),
        ));
        rules.push(rule(
            "proxy",
            vec![
                m(ct("mark"), Operator::EQ, num(PROXY_MARK)),
                mangle(meta(MetaKey::Mark), num(PROXY_MARK)),
            ],
            Some("replies to routerd's connections from a client's address"),
        ));
    }

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
        rules.push(forward_dnat(&fc));
    }
    // 1:1 NAT: what `open` lets in on the public address goes to the private host
    // (from anywhere, so LAN guests reach it through the public address too).
    for mapping in &config.one_to_one {
        for open in &mapping.open {
            rules.push(one_to_one_dnat(mapping, *open));
        }
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
            spoofed_from_wan(&wans, &lan_nets, &publics),
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
        // The WAN sees only the public addresses: the LAN address does not answer there.
        rule(
            "input",
            vec![
                m(meta(MetaKey::Iifname), Operator::EQ, one_or_set(&wans)),
                m(payload("ip", "daddr"), Operator::EQ, one_or_set(&publics)),
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
    if config.dns.is_some() {
        // The resolver, like the page, answers each LAN on its own address; never the WAN.
        rules.extend(lans.iter().flat_map(|l| {
            ["udp", "tcp"].map(|transport| {
                rule(
                    "input",
                    vec![
                        m(meta(MetaKey::Iifname), Operator::EQ, s(l.ifname)),
                        m(
                            payload("ip", "daddr"),
                            Operator::EQ,
                            s(&l.lan.address.addr().to_string()),
                        ),
                        m(payload(transport, "dport"), Operator::EQ, num(53)),
                        accept(),
                    ],
                    Some("DNS from the LAN only"),
                )
            })
        }));
    }
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
    // Forwards by name: routerd's proxy listens on these (from the WAN, and from the
    // LANs through the public address).
    for (public, port) in config.named_ports() {
        rules.push(rule(
            "input",
            vec![
                m(payload("ip", "daddr"), Operator::EQ, s(&public.to_string())),
                m(payload("tcp", "dport"), Operator::EQ, num(u32::from(port))),
                accept(),
            ],
            Some("forwards by name (TLS SNI, HTTP Host): routerd relays them"),
        ));
    }
    if config.ipv6() {
        rules.extend(v6::input(config, &wans, &lans));
    }
    if let Some(wg) = &config.wireguard {
        rules.extend(wireguard::input(config, wg, &wan));
    }

    // forward: LAN to the internet, established flows, and the port forwards.
    if features.flowtable {
        let mut offload = vec![m(meta(MetaKey::L4proto), Operator::EQ, set([s("tcp"), s("udp")]))];
        if config.wireguard.is_some() {
            // The tunnel's link is not in the flowtable: its flows take the normal path.
            offload.extend(wireguard::not_offloaded());
        }
        offload.push(Statement::Flow(Flow {
            op: SetOp::Add,
            flowtable: format!("@{FLOWTABLE}").into(),
        }));
        rules.push(rule("forward", offload, None));
    }
    rules.extend([
        rule("forward", vec![ct_state(&["established", "related"]), accept()], None),
        rule("forward", vec![ct_state(&["invalid"]), drop()], None),
        rule(
            "forward",
            spoofed_from_wan(&wans, &lan_nets, &publics),
            Some("spoofed source on the WAN"),
        ),
    ]);
    rules.extend(lans.iter().map(|l| spoofed_from_lan("forward", l)));
    if config.ipv6() {
        rules.extend(v6::forward_drops(config, &wans, &lans));
        rules.extend(v6::forward_opens(config, &wans));
    }
    rules.push(rule(
        "forward",
        vec![
            m(meta(MetaKey::Iifname), Operator::EQ, lan_ifs()),
            m(meta(MetaKey::Oifname), Operator::EQ, one_or_set(&wans)),
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
    if let Some(wg) = &config.wireguard {
        rules.extend(wireguard::forward(wg, &lans, &wan));
    }
    rules.extend([rule(
        "forward",
        vec![m(ct("status"), Operator::IN, s("dnat")), accept()],
        Some("port forwards"),
    )]);

    // postrouting: a 1:1 host leaves with its public address, the rest of the LANs
    // with the failover IP, and hairpinned forwards leave with the router's LAN address
    // so the reply comes back through the router.
    for mapping in &config.one_to_one {
        rules.push(rule(
            "postrouting",
            vec![
                m(meta(MetaKey::Oifname), Operator::EQ, one_or_set(&wans)),
                m(payload("ip", "saddr"), Operator::EQ, s(&mapping.private.to_string())),
                snat(mapping.public),
            ],
            Some(&format!("1:1 NAT: {} leaves as {}", mapping.private, mapping.public)),
        ));
    }
    // A LAN with its own `snat` address leaves with it, by that address's NIC (the
    // `mark` chain routes it there); the other LANs with the failover IP.
    let mut default_snat_nets = Vec::new();
    for l in &lans {
        match l.lan.snat.filter(|a| *a != wan_ip) {
            Some(public) => rules.push(rule(
                "postrouting",
                vec![
                    m(meta(MetaKey::Oifname), Operator::EQ, s(&ifs.nic_of(config, public))),
                    m(payload("ip", "saddr"), Operator::EQ, prefix(net(l.lan.address.trunc()))),
                    snat(public),
                ],
                Some(&format!("LAN {} to the internet as {public}", l.lan.name)),
            )),
            None => default_snat_nets.push(l.lan.address.trunc()),
        }
    }
    if !default_snat_nets.is_empty() {
        rules.push(rule(
            "postrouting",
            vec![
                m(meta(MetaKey::Oifname), Operator::EQ, s(&wan)),
                m(payload("ip", "saddr"), Operator::EQ, lan_prefixes(&default_snat_nets)),
                snat(wan_ip),
            ],
            Some("LAN to the internet as the failover IP"),
        ));
    }
    if let Some(wg) = &config.wireguard {
        rules.extend(wireguard::postrouting(config, wg, &wan));
    }
    // Whatever else of the LANs leaves by an extra NIC (a destination the main table
    // routes there: the extra's own prefix) leaves with that NIC's address, never with
    // a private source.
    for extra in &config.wan.extra {
        let public = extra.address.addr();
        rules.push(rule(
            "postrouting",
            vec![
                m(meta(MetaKey::Oifname), Operator::EQ, s(&ifs.nic_of(config, public))),
                m(payload("ip", "saddr"), Operator::EQ, lan_prefixes(&lan_nets)),
                snat(public),
            ],
            Some(&format!("LAN out by the extra NIC of {public}")),
        ));
    }
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

/// The forwards' counters, in rule order: the one owner of their names. The TCP side
/// of a forward that routerd's proxy relays (see [`Config::proxied`]) has none.
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
                .filter(move |t| !(**t == "tcp" && config.proxied(forward)))
                .map(move |transport| ForwardCounter {
                    name: format!("fwd_{i}_{transport}"),
                    transport,
                    forward,
                })
        })
        .collect()
}

/// The `mark` chain: a connection that comes in on a WAN NIC remembers it (conntrack
/// mark), one that a LAN with an extra NIC's `snat` address or a 1:1 host opens
/// remembers its public address's NIC, and every packet of a marked connection carries
/// that mark: policy routing then sends it out the NIC it belongs to (routing runs
/// before SNAT, so it cannot go by the public source address). Packets from the WAN
/// carry it too: the flowtable routes a flow's other direction with the mark of the
/// packet that offloads it.
fn mark_rules(
    config: &Config,
    ifs: &Interfaces,
    lans: &[LanRules],
    lan_ifs: Expression<'static>,
) -> Vec<Rule<'static>> {
    let mut rules = Vec::new();
    let nics = std::iter::once((Role::Wan, ifs.wan.clone())).chain(
        ifs.extra_wans
            .iter()
            .enumerate()
            .map(|(i, n)| (Role::ExtraWan(i), n.clone())),
    );
    for (role, nic) in nics {
        rules.push(rule(
            "mark",
            vec![
                m(meta(MetaKey::Iifname), Operator::EQ, s(&nic)),
                ct_state(&["new"]),
                mangle(ct("mark"), num(wan_mark(role))),
            ],
            Some(&format!("connections that come in on {nic} leave by it")),
        ));
    }
    // The NIC of a public address, as a role; the main WAN's needs no mark (the main
    // table) unless it overrides a LAN's.
    let role_of = |ip| config.wan.extra_index_of(ip).map_or(Role::Wan, Role::ExtraWan);
    let extra_snat_lans: Vec<&LanRules> = lans
        .iter()
        .filter(|l| l.lan.snat.is_some_and(|a| role_of(a) != Role::Wan))
        .collect();
    for l in &extra_snat_lans {
        let public = l.lan.snat.unwrap_or(config.wan.address.addr());
        rules.push(rule(
            "mark",
            vec![
                m(meta(MetaKey::Iifname), Operator::EQ, s(l.ifname)),
                ct_state(&["new"]),
                mangle(ct("mark"), num(wan_mark(role_of(public)))),
            ],
            Some(&format!("LAN {} leaves by the NIC of {public}", l.lan.name)),
        ));
    }
    // After the LANs' marks: a 1:1 host leaves by its own address's NIC (1:1 wins).
    for mapping in &config.one_to_one {
        let role = role_of(mapping.public);
        let in_extra_snat_lan = extra_snat_lans.iter().any(|l| l.lan.contains(mapping.private));
        if role == Role::Wan && !in_extra_snat_lan {
            continue;
        }
        rules.push(rule(
            "mark",
            vec![
                m(meta(MetaKey::Iifname), Operator::EQ, lan_ifs.clone()),
                m(payload("ip", "saddr"), Operator::EQ, s(&mapping.private.to_string())),
                ct_state(&["new"]),
                mangle(ct("mark"), num(wan_mark(role))),
            ],
            Some(&format!(
                "1:1 host {} leaves by the NIC of {}",
                mapping.private, mapping.public
            )),
        ));
    }
    rules.push(rule(
        "mark",
        vec![
            m(ct("mark"), Operator::NEQ, num(0)),
            mangle(meta(MetaKey::Mark), ct("mark")),
        ],
        Some("a connection's packets leave by its NIC"),
    ));
    rules
}

/// The DNAT of one `open` item of a 1:1 mapping; ports stay as they are.
fn one_to_one_dnat(mapping: &OneToOne, open: Open) -> Rule<'static> {
    let mut expr = vec![m(payload("ip", "daddr"), Operator::EQ, s(&mapping.public.to_string()))];
    match open {
        Open::All => {}
        Open::Ports { transport, ports: None } => expr.push(m(meta(MetaKey::L4proto), Operator::EQ, s(transport))),
        Open::Ports {
            transport,
            ports: Some(p),
        } => expr.push(m(payload(transport, "dport"), Operator::EQ, self::ports(p))),
    }
    expr.push(Statement::DNAT(Some(NAT {
        addr: Some(s(&mapping.private.to_string())),
        family: Some(NATFamily::IP),
        port: None,
        flags: None,
    })));
    let comment = format!("1:1 NAT: {open} of {} to {}", mapping.public, mapping.private);
    rule("prerouting", expr, Some(&comment))
}

fn forward_dnat(fc: &ForwardCounter) -> Rule<'static> {
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
            m(payload("ip", "daddr"), Operator::EQ, s(&f.public.to_string())),
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

fn spoofed_from_wan(wans: &[String], lan_nets: &[Ipv4Net], publics: &[Ipv4Addr]) -> Vec<Statement<'static>> {
    let sources = lan_nets
        .iter()
        .map(|n| prefix(net(*n)))
        .chain([prefix(LOOPBACK)])
        .chain(publics.iter().map(|p| s(&p.to_string())));
    vec![
        m(meta(MetaKey::Iifname), Operator::EQ, one_or_set(wans)),
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

/// One value as itself, several as an anonymous set (the ruleset of a router with one
/// WAN NIC and address reads as it always did).
fn one_or_set<T: ToString>(values: &[T]) -> Expression<'static> {
    match values {
        [one] => s(&one.to_string()),
        _ => set(values.iter().map(|v| s(&v.to_string()))),
    }
}

fn mangle(key: Expression<'static>, value: Expression<'static>) -> Statement<'static> {
    Statement::Mangle(Mangle { key, value })
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
