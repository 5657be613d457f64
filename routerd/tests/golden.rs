//! Golden tests: every `tests/golden/NAME.toml` renders to the network plan in
//! `NAME.plan` and the nftables batch in `NAME.nft.json`, byte for byte.
//!
//! After an intended change to the output, regenerate and review the diff:
//!
//!     UPDATE_GOLDEN=1 cargo test -p routerd --test golden
//!
//! The semantic tests at the bottom guard against regenerating a wrong output.

use std::fs;
use std::path::{Path, PathBuf};

use config::Config;
use routerd::firewall::{self, Features, Interfaces};
use routerd::plan;
use serde_json::Value;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

fn load(path: &Path) -> Config {
    Config::load(path).unwrap_or_else(|e| panic!("golden input does not validate:\n{e}"))
}

/// The plan as `routerd render` prints it.
fn render_plan(config: &Config) -> String {
    plan::plan(config).to_string()
}

/// The nftables batch for NICs named `wan` and `lan`, with a flowtable.
fn render_ruleset(config: &Config) -> String {
    let batch = firewall::ruleset(
        config,
        &Interfaces::placeholders(config, "wan", "lan"),
        Features { flowtable: true },
    );
    let json = serde_json::to_string_pretty(&batch).expect("the ruleset serializes");
    json + "\n"
}

/// The golden inputs, sorted so the output is stable.
fn inputs() -> Vec<PathBuf> {
    let mut tomls: Vec<PathBuf> = fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    tomls.sort();
    tomls
}

/// Compares `actual` with the file at `path` (or writes it when updating); returns a
/// description of the mismatch.
fn compare(path: &Path, actual: &str) -> Option<String> {
    if updating() {
        fs::write(path, actual).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return None;
    }
    let expected = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return Some(format!("{}: cannot read ({e})", path.display())),
    };
    if expected == actual {
        return None;
    }
    Some(format!(
        "{}: differs from the rendered output\n{}",
        path.display(),
        first_difference(&expected, actual)
    ))
}

/// The first line where the two texts differ, with a little context.
fn first_difference(expected: &str, actual: &str) -> String {
    let (exp, act): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let line = exp
        .iter()
        .zip(&act)
        .position(|(e, a)| e != a)
        .unwrap_or(exp.len().min(act.len()));
    let show = |lines: &[&str]| {
        lines
            .get(line)
            .map_or("<end of file>".to_string(), |l| format!("{l:?}"))
    };
    let mut hint = format!(
        "  first difference at line {}:\n    golden:   {}\n    rendered: {}\n  ({} lines golden, {} lines rendered)",
        line + 1,
        show(&exp),
        show(&act),
        exp.len(),
        act.len()
    );
    if exp.len() == act.len() && line == exp.len() {
        hint.push_str("\n  (the texts differ only in the final newline)");
    }
    hint
}

#[test]
fn every_golden_config_renders_to_its_golden_files() {
    let tomls = inputs();
    assert!(
        tomls.len() >= 5,
        "expected the golden configs in {}, found {tomls:?}",
        golden_dir().display()
    );
    let mut failures = Vec::new();
    for toml in &tomls {
        let config = load(toml);
        failures.extend(compare(&toml.with_extension("plan"), &render_plan(&config)));
        failures.extend(compare(&toml.with_extension("nft.json"), &render_ruleset(&config)));
    }
    assert!(
        failures.is_empty(),
        "{} golden file(s) out of date:\n\n{}\n\nIf the change is intended, rerun with UPDATE_GOLDEN=1 \
         (UPDATE_GOLDEN=1 cargo test -p routerd --test golden) and review the diff of tests/golden.",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_golden_output_has_its_config() {
    // A golden file whose .toml was renamed or deleted would otherwise rot unnoticed.
    for entry in fs::read_dir(golden_dir()).expect("tests/golden exists") {
        let path = entry.expect("readable directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let Some(stem) = name.strip_suffix(".plan").or_else(|| name.strip_suffix(".nft.json")) else {
            continue;
        };
        assert!(
            golden_dir().join(format!("{stem}.toml")).exists(),
            "{name} has no {stem}.toml next to it"
        );
    }
}

// --- What the golden files must say, whatever they look like -------------------------

fn golden_config(name: &str) -> Config {
    load(&golden_dir().join(format!("{name}.toml")))
}

fn ruleset_json(config: &Config) -> Value {
    serde_json::from_str(&render_ruleset(config)).expect("the ruleset is JSON")
}

/// Every rule of the batch: the `rule` objects of the `add` commands.
fn rules(batch: &Value) -> Vec<&Value> {
    batch["nftables"]
        .as_array()
        .expect("a batch is {\"nftables\": [...]}")
        .iter()
        .filter_map(|cmd| cmd.get("add")?.get("rule"))
        .collect()
}

/// The statements of every rule in `chain` that contain a statement named `kind`.
fn statements<'v>(batch: &'v Value, chain: &str, kind: &str) -> Vec<&'v Value> {
    rules(batch)
        .into_iter()
        .filter(|r| r["chain"] == chain)
        .flat_map(|r| r["expr"].as_array().expect("a rule has an expr list"))
        .filter_map(|stmt| stmt.get(kind))
        .collect()
}

#[test]
fn failover_reaches_its_off_prefix_gateway_on_link_and_masquerades_as_the_failover_ip() {
    let config = golden_config("failover");
    let plan = render_plan(&config);
    // 203.0.113.254 is outside 203.0.113.10/32: a host route first, then the default.
    let on_link = plan.find("route 203.0.113.254/32 dev wan scope link\n");
    let default = plan.find("route default via 203.0.113.254 dev wan onlink\n");
    assert!(
        on_link.is_some() && default.is_some() && on_link < default,
        "plan:\n{plan}"
    );
    assert!(
        plan.contains(
            "link wan: the NIC with MAC 02:00:00:00:00:10, MAC set to 02:00:00:00:00:10, address 203.0.113.10/32, up\n"
        ),
        "plan:\n{plan}"
    );
    assert!(plan.contains("sysctl net.ipv4.ip_forward = 1\n"), "plan:\n{plan}");

    let batch = ruleset_json(&config);
    let snats: Vec<&Value> = statements(&batch, "postrouting", "snat");
    assert!(
        snats.iter().any(|s| s["addr"] == "203.0.113.10"),
        "the LAN must leave as the failover IP 203.0.113.10; snat statements: {snats:?}"
    );
    let dnats: Vec<&Value> = statements(&batch, "prerouting", "dnat");
    // tcp 80, udp 5353, and tcp + udp for 8000-8003: four rules, all to the web guest.
    assert_eq!(dnats.len(), 4, "dnat statements: {dnats:?}");
    assert!(
        dnats.iter().all(|d| d["addr"] == "172.16.10.205"),
        "dnat statements: {dnats:?}"
    );
}

#[test]
fn a_gateway_inside_the_wan_prefix_gets_no_on_link_route() {
    let plan = render_plan(&golden_config("in_prefix"));
    assert!(
        plan.contains("route default via 198.51.100.1 dev wan\n"),
        "plan:\n{plan}"
    );
    assert!(
        !plan.contains("onlink") && !plan.contains("scope link"),
        "plan:\n{plan}"
    );
}

#[test]
fn nics_chosen_by_name_keep_the_virtual_mac_on_the_wan_only() {
    let plan = render_plan(&golden_config("by_interface"));
    assert!(
        plan.contains("link wan: the NIC named ens18, MAC set to 02:00:00:00:00:10, address 203.0.113.10/32, up\n"),
        "plan:\n{plan}"
    );
    assert!(
        plan.contains("link lan: the NIC named ens19, address 192.168.50.1/24, up\n"),
        "plan:\n{plan}"
    );
    let batch = ruleset_json(&golden_config("by_interface"));
    assert!(
        statements(&batch, "prerouting", "dnat").is_empty(),
        "no forwards, so no dnat rules"
    );
}

#[test]
fn a_shifted_port_range_maps_one_to_one() {
    let batch = ruleset_json(&golden_config("forwards"));
    let dnats = statements(&batch, "prerouting", "dnat");
    // tcp 22, tcp 2222, udp 51820, udp 22, both 5353 (2), tcp 8000-8003, udp 10000-10002, both 6000-6001 (2).
    assert_eq!(dnats.len(), 10, "dnat statements: {dnats:?}");
    let to_guest = |ip: &str| {
        dnats
            .iter()
            .filter(move |d| d["addr"] == ip)
            .copied()
            .collect::<Vec<_>>()
    };
    // udp 10000-10002 with to_port = 20000: a dport map 10000 -> 20000, 10001 -> 20001, ...
    let shifted = to_guest("172.16.10.8");
    assert_eq!(shifted.len(), 1);
    let map = &shifted[0]["port"]["map"]["data"]["set"];
    assert_eq!(
        map,
        &serde_json::json!([[10000, 20000], [10001, 20001], [10002, 20002]]),
        "{}",
        shifted[0]
    );
    // tcp 2222 -> 22: a plain port.
    assert_eq!(to_guest("172.16.10.3")[0]["port"], 22);
    // tcp 8000-8003 without to_port: the port is left alone.
    assert!(
        to_guest("172.16.10.7")[0].get("port").is_none(),
        "{}",
        to_guest("172.16.10.7")[0]
    );
}

#[test]
fn every_forward_counts_into_its_own_named_counter_created_before_its_rule() {
    let batch = ruleset_json(&golden_config("forwards"));
    let commands = batch["nftables"].as_array().expect("a batch is {\"nftables\": [...]}");
    let position = |wanted: &dyn Fn(&Value) -> bool| commands.iter().position(wanted);
    let counters = statements(&batch, "prerouting", "counter");
    assert_eq!(counters.len(), 10, "one per forward rule: {counters:?}");
    let mut names: Vec<&str> = Vec::new();
    for counter in &counters {
        let name = counter
            .as_str()
            .unwrap_or_else(|| panic!("a named counter, not {counter}"));
        let created = position(&|c| c["add"]["counter"]["name"] == name);
        let used = position(&|c| {
            c["add"]["rule"]["expr"]
                .as_array()
                .is_some_and(|e| e.iter().any(|s| s["counter"] == name))
        });
        assert!(
            created.is_some() && created < used,
            "{name}: created at {created:?}, used at {used:?}"
        );
        names.push(name);
    }
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        names.len(),
        counters.len(),
        "no two forwards share a counter: {names:?}"
    );
}

#[test]
fn a_pinned_gateway_mac_becomes_a_permanent_neighbour_entry_on_the_wan() {
    let plan = render_plan(&golden_config("pinned_gateway"));
    assert!(
        plan.contains("neighbour 203.0.113.254 lladdr 00:00:5e:00:01:01 dev wan permanent\n"),
        "plan:\n{plan}"
    );
    let unpinned = render_plan(&golden_config("failover"));
    assert!(!unpinned.contains("neighbour"), "plan:\n{unpinned}");
}

#[test]
fn ovh_more_addresses_sit_on_the_one_wan_nic_with_a_forward_and_1to1_on_their_own_address() {
    let config = golden_config("ovh_more_addresses");
    let plan = render_plan(&config);
    assert!(
        plan.contains("addresses 203.0.113.10/32 203.0.113.11/32 203.0.113.12/32, up\n"),
        "plan:\n{plan}"
    );
    assert!(!plan.contains("rule "), "one NIC needs no policy routing:\n{plan}");
    let batch = ruleset_json(&config);
    // The 1:1 host leaves as its own address before the LAN's SNAT to the main one.
    let snats: Vec<&str> = statements(&batch, "postrouting", "snat")
        .iter()
        .filter_map(|s| s["addr"].as_str())
        .collect();
    assert_eq!(snats, ["203.0.113.12", "203.0.113.10", "172.16.0.1"], "{snats:?}");
    // Each forward on its own address, the 1:1 `open` items to the private host.
    let daddrs: Vec<(String, String)> = rules(&batch)
        .into_iter()
        .filter(|r| r["chain"] == "prerouting")
        .map(|r| {
            let expr = r["expr"].as_array().expect("expr");
            let daddr = expr
                .iter()
                .find(|s| s["match"]["left"]["payload"]["field"] == "daddr")
                .map(|s| s["match"]["right"].to_string())
                .unwrap_or_default();
            let to = expr
                .iter()
                .find_map(|s| s.get("dnat"))
                .map(|d| d["addr"].to_string())
                .unwrap_or_default();
            (daddr, to)
        })
        .collect();
    let q = |s: &str| format!("\"{s}\"");
    assert_eq!(
        daddrs,
        [
            (q("203.0.113.11"), q("172.16.10.30")),
            (q("203.0.113.10"), q("172.16.10.31")),
            (q("203.0.113.12"), q("172.16.10.20")),
            (q("203.0.113.12"), q("172.16.10.20")),
            (q("203.0.113.12"), q("172.16.10.20")),
        ]
    );
}

#[test]
fn hetzner_extra_nics_get_a_table_rules_and_marks_of_their_own() {
    let config = golden_config("hetzner_extra_nic");
    let plan = render_plan(&config);
    for line in [
        "route default via 203.0.113.254 dev wan.extra[0] onlink table 1001\n",
        "route 203.0.113.1/32 dev wan.extra[1] scope link table 1002\n",
        "rule 1000: to 172.16.0.0/16 lookup main\n",
        "rule 1001: from 203.0.113.20 lookup 1001\n",
        "rule 1002: fwmark 1001 lookup 1001\n",
        "sysctl net.ipv4.conf.<wan.extra[0]>.rp_filter = 2\n",
        "sysctl net.ipv4.conf.<wan>.arp_ignore = 1\n",
        "sysctl net.ipv4.conf.<wan.extra[1]>.arp_announce = 2\n",
    ] {
        assert!(plan.contains(line), "{line:?} not in the plan:\n{plan}");
    }
    let batch = ruleset_json(&config);
    // The 1:1 host's connections carry the mark of 203.0.113.20's NIC (1001), which
    // the plan's fwmark rule sends to that NIC's table.
    let marks: Vec<String> = statements(&batch, "mark", "mangle")
        .iter()
        .map(|m| m["value"].to_string())
        .collect();
    assert_eq!(
        marks,
        ["1000", "1001", "1002", "1001", "{\"ct\":{\"key\":\"mark\"}}"],
        "{marks:?}"
    );
}

#[test]
fn a_lan_snat_address_is_its_source_and_an_extra_nics_also_its_way_out() {
    let config = golden_config("lan_snat");
    let batch = ruleset_json(&config);
    // Each postrouting SNAT as (out NIC, source, public address): the 1:1 host first
    // (1:1 wins over its LAN's snat), then each LAN by its `snat` address's NIC, then
    // the catch-all of the extra NIC.
    let snats: Vec<(String, String, String)> = rules(&batch)
        .into_iter()
        .filter(|r| r["chain"] == "postrouting")
        .filter_map(|r| {
            let expr = r["expr"].as_array()?;
            let to = expr.iter().find_map(|s| s.get("snat"))?["addr"].to_string();
            let oif = expr[0]["match"]["right"].to_string();
            let saddr = expr[1]["match"]["right"].to_string();
            Some((oif, saddr, to))
        })
        .filter(|(_, _, to)| to.contains("203.0.113."))
        .collect();
    let q = |s: &str| format!("{s:?}");
    let prefix = |a: &str, l: u8| format!("{{\"prefix\":{{\"addr\":\"{a}\",\"len\":{l}}}}}");
    assert_eq!(
        snats,
        [
            (
                "{\"set\":[\"wan\",\"wan1\"]}".to_string(),
                q("10.30.0.40"),
                q("203.0.113.12")
            ),
            (q("wan"), prefix("172.16.0.0", 16), q("203.0.113.11")),
            (q("wan1"), prefix("10.30.0.0", 24), q("203.0.113.20")),
            (q("wan"), prefix("10.20.0.0", 24), q("203.0.113.10")),
            // Last, whatever of any LAN still leaves by the extra NIC: its address.
            (
                q("wan1"),
                format!(
                    "{{\"set\":[{},{},{}]}}",
                    prefix("172.16.0.0", 16),
                    prefix("10.30.0.0", 24),
                    prefix("10.20.0.0", 24)
                ),
                q("203.0.113.20")
            ),
        ]
    );
    // The LAN on the extra NIC's address carries that NIC's mark (1001); the 1:1 host
    // in it, whose address is on the main NIC, the main WAN's (1000), set after it.
    let marks: Vec<String> = statements(&batch, "mark", "mangle")
        .iter()
        .map(|m| m["value"].to_string())
        .collect();
    assert_eq!(
        marks,
        ["1000", "1001", "1001", "1000", "{\"ct\":{\"key\":\"mark\"}}"],
        "{marks:?}"
    );
    assert!(render_plan(&config).contains("rule 1002: fwmark 1001 lookup 1001\n"));
}

#[test]
fn wireguard_opens_its_port_on_the_wan_address_and_each_peer_only_where_it_may_go() {
    let batch = ruleset_json(&golden_config("wireguard"));
    let rules = rules(&batch);
    let text = |r: &Value| r["expr"].to_string();
    let with_port: Vec<&&Value> = rules.iter().filter(|r| text(r).contains("51820")).collect();
    assert_eq!(with_port.len(), 1, "the listen port, once: {with_port:?}");
    let port_rule = text(with_port[0]);
    assert_eq!(with_port[0]["chain"], "input");
    assert!(
        port_rule.contains("\"right\":\"wan\"") && port_rule.contains("203.0.113.10"),
        "on the WAN NIC and address only: {port_rule}"
    );
    // Nothing opens a connection into the tunnel: no rule matches wg0 as the way out.
    let into_tunnel = statements(&batch, "forward", "match")
        .into_iter()
        .filter(|m| m["left"]["meta"]["key"] == "oifname" && m["op"] == "==" && m["right"].to_string().contains("wg0"))
        .count();
    assert_eq!(into_tunnel, 0);
    let forward: Vec<String> = rules
        .iter()
        .filter(|r| r["chain"] == "forward" && text(r).contains("\"wg0\""))
        .filter_map(|r| Some(r["comment"].as_str()?.to_string()))
        .collect();
    let offload = rules
        .iter()
        .find(|r| text(r).contains("\"flow\""))
        .map(|r| text(r))
        .unwrap_or_default();
    assert!(
        offload.contains("\"op\":\"!=\",\"right\":\"wg0\""),
        "the tunnel stays out of the flowtable: {offload}"
    );
    assert_eq!(
        forward,
        [
            "WireGuard peer laptop may reach prod, dmz",
            "WireGuard peer ops may reach dmz",
            "WireGuard peer ops to the internet"
        ]
    );
    let snats: Vec<&Value> = statements(&batch, "postrouting", "snat");
    let peers_out = rules
        .iter()
        .find(|r| r["comment"] == "WireGuard peers to the internet as the failover IP")
        .map(|r| text(r))
        .unwrap_or_default();
    assert!(
        peers_out.contains("10.99.0.16") && !peers_out.contains("10.99.0.2\""),
        "only ops: {peers_out}"
    );
    assert!(snats.iter().any(|s| s["addr"] == "203.0.113.10"));
    let services: Vec<String> = rules
        .iter()
        .filter(|r| r["chain"] == "input" && text(r).contains("\"wg0\""))
        .map(|r| r["comment"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        services,
        [
            "ping from the WireGuard peers",
            "DNS from the WireGuard peers",
            "DNS from the WireGuard peers",
            "status page and metrics from the WireGuard peers"
        ]
    );
}
