//! The IPv6 rules of the one `inet` table (only when IPv6 is on): no NAT, a firewall.
//! What IPv6 needs of ICMPv6 passes (neighbour discovery, MLD, the errors, echo);
//! spoofed sources are dropped on both sides; from the internet only `[[open]]`.

use super::*;

use ipnet::Ipv6Net;

const IPPROTO_ICMPV6: u32 = 58;

/// The ICMPv6 types the router itself must accept (RFC 4890's "must not drop").
const ICMPV6_INPUT: [&str; 12] = [
    "destination-unreachable",
    "packet-too-big",
    "time-exceeded",
    "parameter-problem",
    "echo-request",
    "nd-router-solicit",
    "nd-router-advert",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "mld-listener-query",
    "mld-listener-report",
    "mld2-listener-report",
];

/// The ICMPv6 the internet may send to LAN hosts unasked (the errors arrive as
/// `related` anyway; these are what path MTU discovery and ping need).
const ICMPV6_FORWARD: [&str; 5] = [
    "destination-unreachable",
    "packet-too-big",
    "time-exceeded",
    "parameter-problem",
    "echo-request",
];

fn prefix6(n: Ipv6Net) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(&n.network().to_string())),
        len: u32::from(n.prefix_len()),
    }))
}

fn lan_prefixes6(config: &Config) -> Vec<Ipv6Net> {
    config
        .lans
        .iter()
        .filter_map(|l| l.address6.map(|a| a.trunc()))
        .collect()
}

/// Sources that never come from the internet: the LANs' prefixes, loopback.
fn spoofed_from_wan6(chain: &str, config: &Config, wans: &[String]) -> Rule<'static> {
    let sources = lan_prefixes6(config).into_iter().map(prefix6).chain([s("::1")]);
    rule(
        chain,
        vec![
            m(meta(MetaKey::Iifname), Operator::EQ, one_or_set(wans)),
            m(payload("ip6", "saddr"), Operator::EQ, set(sources)),
            Statement::Counter(Counter::Anonymous(None)),
            drop(),
        ],
        Some("spoofed IPv6 source on the WAN"),
    )
}

/// A LAN's v6 sources: its prefix, link-local, and :: (duplicate address detection).
/// A LAN without `address6` sends link-local only.
fn spoofed_from_lan6(chain: &str, l: &LanRules) -> Rule<'static> {
    let mut allowed = vec![s("::"), prefix6("fe80::/10".parse().unwrap_or_default())];
    allowed.extend(l.lan.address6.map(|a| prefix6(a.trunc())));
    rule(
        chain,
        vec![
            m(meta(MetaKey::Iifname), Operator::EQ, s(l.ifname)),
            m(payload("ip6", "saddr"), Operator::NEQ, set(allowed)),
            Statement::Counter(Counter::Anonymous(None)),
            drop(),
        ],
        Some(&format!("spoofed IPv6 source on the LAN {}", l.lan.name)),
    )
}

fn icmpv6(types: &[&str]) -> Vec<Statement<'static>> {
    vec![
        // By number: a name would need /etc/protocols, which the image has not.
        m(meta(MetaKey::L4proto), Operator::EQ, num(IPPROTO_ICMPV6)),
        m(payload("icmpv6", "type"), Operator::EQ, set(types.iter().map(|t| s(t)))),
    ]
}

/// The input chain's v6 rules, after the IPv4 ones (none of which accepts IPv6).
pub(super) fn input(config: &Config, wans: &[String], lans: &[LanRules]) -> Vec<Rule<'static>> {
    let mut rules = vec![spoofed_from_wan6("input", config, wans)];
    rules.extend(lans.iter().map(|l| spoofed_from_lan6("input", l)));
    let mut accept_icmp = icmpv6(&ICMPV6_INPUT);
    accept_icmp.push(accept());
    rules.push(rule("input", accept_icmp, Some("ICMPv6 that IPv6 needs")));
    if config.dns.is_some() {
        // The resolver on each LAN's address6, from that LAN only (never the WAN).
        rules.extend(
            lans.iter()
                .filter_map(|l| Some((l, l.lan.address6?.addr())))
                .flat_map(|(l, a6)| {
                    ["udp", "tcp"].map(|transport| {
                        rule(
                            "input",
                            vec![
                                m(meta(MetaKey::Iifname), Operator::EQ, s(l.ifname)),
                                m(payload("ip6", "daddr"), Operator::EQ, s(&a6.to_string())),
                                m(payload(transport, "dport"), Operator::EQ, num(53)),
                                accept(),
                            ],
                            Some("DNS over IPv6 from the LAN only"),
                        )
                    })
                }),
        );
    }
    rules
}

/// The forward chain's v6 drops: before the LAN-to-internet accept.
pub(super) fn forward_drops(config: &Config, wans: &[String], lans: &[LanRules]) -> Vec<Rule<'static>> {
    let mut rules = vec![spoofed_from_wan6("forward", config, wans)];
    rules.extend(lans.iter().map(|l| spoofed_from_lan6("forward", l)));
    rules
}

/// The forward chain's v6 accepts from the internet: ICMPv6 and `[[open]]`.
pub(super) fn forward_opens(config: &Config, wans: &[String]) -> Vec<Rule<'static>> {
    let from_wan = || m(meta(MetaKey::Iifname), Operator::EQ, one_or_set(wans));
    let mut expr = vec![from_wan()];
    expr.extend(icmpv6(&ICMPV6_FORWARD));
    expr.push(accept());
    let mut rules = vec![rule("forward", expr, Some("ICMPv6 errors and ping to the LAN hosts"))];
    for open in &config.open {
        for transport in open.protocol.transports() {
            for addr in &open.addresses {
                rules.push(rule(
                    "forward",
                    vec![
                        from_wan(),
                        m(payload("ip6", "daddr"), Operator::EQ, s(&addr.to_string())),
                        m(payload(transport, "dport"), Operator::EQ, ports(open.ports)),
                        accept(),
                    ],
                    Some(&format!("open {transport} {} on {addr}", open.ports)),
                ));
            }
        }
    }
    rules
}
