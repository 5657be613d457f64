//! Policy routing rules (`ip rule`) for the extra WAN NICs and the proxy's replies.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{Handle, IpVersion};

use super::NetError;
use crate::plan::{RulePlan, RuleSelector, RULE_PRIORITY_PROXY, RULE_PRIORITY_TO_LAN};

/// The rule a kernel message describes, when it is one of routerd's (by its priority).
fn from_message(msg: &RuleMessage) -> Option<RulePlan> {
    let mut priority = None;
    let mut table = u32::from(msg.header.table);
    let (mut from, mut to, mut mark) = (None, None, None);
    for a in &msg.attributes {
        match a {
            RuleAttribute::Priority(p) => priority = Some(*p),
            RuleAttribute::Table(t) => table = *t,
            RuleAttribute::Source(IpAddr::V4(ip)) => from = Some(*ip),
            RuleAttribute::Destination(IpAddr::V4(ip)) => to = Some(*ip),
            RuleAttribute::FwMark(m) => mark = Some(*m),
            _ => {}
        }
    }
    let priority = priority.filter(|p| (RULE_PRIORITY_TO_LAN..=RULE_PRIORITY_PROXY).contains(p))?;
    let selector = match (from, to, mark) {
        (Some(ip), None, None) if msg.header.src_len == 32 => RuleSelector::From(ip),
        (None, Some(ip), None) => RuleSelector::To(ipnet::Ipv4Net::new(ip, msg.header.dst_len).ok()?),
        (None, None, Some(mark)) => RuleSelector::FwMark(mark),
        // Some other shape at routerd's priorities: stale, to be removed.
        _ => RuleSelector::FwMark(0),
    };
    Some(RulePlan {
        priority,
        selector,
        table,
    })
}

/// Makes routerd's IPv4 rules (those at its priorities) exactly `want`.
pub async fn ensure(handle: &Handle, want: &[RulePlan]) -> Result<(), NetError> {
    let mut present = Vec::new();
    let mut stream = handle.rule().get(IpVersion::V4).execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| NetError::netlink("listing rules", e))?
    {
        if let Some(rule) = from_message(&msg) {
            present.push((rule, msg));
        }
    }
    for (rule, msg) in &present {
        if !want.contains(rule) {
            handle
                .rule()
                .del(msg.clone())
                .execute()
                .await
                .map_err(|e| NetError::netlink(&format!("removing stale rule {rule:?}"), e))?;
            tracing::info!(?rule, "stale rule removed");
        }
    }
    for rule in want {
        if present.iter().any(|(p, _)| p == rule) {
            continue;
        }
        let add = handle
            .rule()
            .add()
            .v4()
            .priority(rule.priority)
            .table_id(rule.table)
            .action(RuleAction::ToTable);
        let add = match rule.selector {
            RuleSelector::From(ip) => add.source_prefix(ip, 32),
            RuleSelector::To(net) => add.destination_prefix(net.network(), net.prefix_len()),
            RuleSelector::FwMark(mark) => add.fw_mark(mark),
        };
        add.execute()
            .await
            .map_err(|e| NetError::netlink(&format!("adding rule {rule:?}"), e))?;
        tracing::info!(?rule, "rule set");
    }
    Ok(())
}
