//! `routerd check FILE` as a user sees it: the real binary, a real file, and the exact
//! output. A good config prints `ok` and exits 0; a bad one exits 1 and prints one
//! `FILE:LINE:COL: message` per problem on stderr, saying what was expected.

use std::path::PathBuf;
use std::process::Command;

/// A complete, valid config. Line numbers matter: the tests below edit it.
const VALID: &str = r#"hostname = "router"

[wan]
mac = "02:00:00:00:00:10"
address = "203.0.113.10/32"
gateway = "203.0.113.254"
dns = ["198.51.100.53"]

[lan]
address = "172.16.0.1/16"

[dhcp]
range = "172.16.10.100-172.16.10.250"
lease_time = "12h"

[[dhcp.host]]
mac = "52:54:00:12:34:56"
address = "172.16.10.205"
hostname = "web"

[[forward]]
protocol = "tcp"
port = 80
to = "172.16.10.205"
to_port = 8080
"#;

/// A config file in its own temporary directory, removed again on drop.
struct ConfigFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ConfigFile {
    /// `name` must be unique among the tests, which run in parallel.
    fn new(name: &str, text: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!("routerd-check-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the temp dir");
        let path = dir.join("router.toml");
        std::fs::write(&path, text).expect("write the config");
        ConfigFile { dir, path }
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What `routerd check` printed.
#[derive(Debug)]
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_check(file: &ConfigFile) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_routerd"))
        .arg("check")
        .arg(&file.path)
        .output()
        .expect("run routerd");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Checks `text`, which must be rejected, and returns the diagnostics as
/// `LINE:COL: message`, after asserting that each one names the file.
fn errors(name: &str, text: &str) -> Vec<String> {
    let file = ConfigFile::new(name, text);
    let out = run_check(&file);
    assert_eq!(out.code, Some(1), "a bad config exits 1: {out:?}\n--- config:\n{text}");
    assert_eq!(out.stdout, "", "a bad config prints nothing on stdout: {out:?}");
    let prefix = format!("{}:", file.path.display());
    out.stderr
        .lines()
        .map(|line| {
            line.strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("every error starts with {prefix:?}: {line:?}"))
                .to_string()
        })
        .collect()
}

/// `text` with `old` (which must occur exactly once) replaced by `new`.
fn edit(text: &str, old: &str, new: &str) -> String {
    assert_eq!(text.matches(old).count(), 1, "{old:?} must occur exactly once");
    text.replacen(old, new, 1)
}

/// `VALID` plus more TOML at the end.
fn with(extra: &str) -> String {
    format!("{VALID}\n{extra}")
}

/// `LINE:COL` of the first `needle` in `text`, counting from 1.
fn at(text: &str, needle: &str) -> String {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the config"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    format!("{line}:{column}")
}

// --- A good config ---------------------------------------------------------------------

#[test]
fn a_valid_config_prints_ok_and_exits_0() {
    let file = ConfigFile::new("valid", VALID);
    let out = run_check(&file);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "ok\n");
    assert_eq!(out.stderr, "");
}

#[test]
fn the_same_port_on_tcp_and_on_udp_is_no_overlap() {
    let text = with("[[forward]]\nprotocol = \"udp\"\nport = 80\nto = \"172.16.10.206\"\n");
    let file = ConfigFile::new("tcp_and_udp", &text);
    let out = run_check(&file);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "ok\n", "")
    );
}

// --- Errors from reading the TOML ----------------------------------------------------------

#[test]
fn an_unknown_key_is_named_with_the_keys_that_are_allowed() {
    let text = edit(VALID, "gateway = ", "gatway = ");
    assert_eq!(
        errors("unknown_key", &text),
        ["6:1: unknown field `gatway`, expected one of `mac`, `interface`, `address`, `gateway`, `gateway_mac`, `dns`, `more_addresses`, `extra`, `address6`, `gateway6`, `ndp_proxy`, `dns6`"]
    );
}

#[test]
fn a_toml_syntax_error_points_at_the_spot() {
    let text = edit(VALID, "[lan]", "[lan");
    let errors = errors("syntax", &text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("9:5: "), "{errors:?}");
    assert!(errors[0].contains("expected `]`"), "{errors:?}");
}

#[test]
fn an_unterminated_string_is_a_syntax_error() {
    let text = edit(VALID, r#""203.0.113.254""#, r#""203.0.113.254"#);
    let errors = errors("unterminated", &text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("6:"), "on the gateway line: {errors:?}");
    assert!(errors[0].contains("expected `\"`"), "{errors:?}");
}

// --- Errors in values ------------------------------------------------------------------------

#[test]
fn a_bad_mac_shows_the_expected_form() {
    let text = edit(VALID, r#"mac = "02:00:00:00:00:10""#, r#"mac = "02:00:00:00:10""#);
    assert_eq!(
        errors("bad_mac", &text),
        [r#"4:7: wan.mac: expected a MAC address like 02:00:00:00:00:10, found "02:00:00:00:10""#]
    );
}

#[test]
fn a_multicast_mac_is_refused() {
    let text = edit(VALID, r#""02:00:00:00:00:10""#, r#""03:00:00:00:00:10""#);
    assert_eq!(
        errors("multicast_mac", &text),
        ["4:7: wan.mac: 03:00:00:00:00:10 is a multicast MAC; a NIC needs a unicast MAC (first byte even), like 02:00:00:00:00:10"]
    );
}

#[test]
fn a_pinned_gateway_mac_is_accepted() {
    let text = edit(VALID, "dns = [", "gateway_mac = \"00:00:5e:00:01:01\"\ndns = [");
    let file = ConfigFile::new("gateway_mac", &text);
    let out = run_check(&file);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "ok\n", "")
    );
}

#[test]
fn a_bad_or_multicast_gateway_mac_is_refused_at_its_value() {
    let text = edit(VALID, "dns = [", "gateway_mac = \"00:00:5e:00:01\"\ndns = [");
    assert_eq!(
        errors("bad_gateway_mac", &text),
        [r#"7:15: wan.gateway_mac: expected a MAC address like 02:00:00:00:00:10, found "00:00:5e:00:01""#]
    );
    let text = edit(VALID, "dns = [", "gateway_mac = \"01:00:5e:00:00:01\"\ndns = [");
    assert_eq!(
        errors("multicast_gateway_mac", &text),
        ["7:15: wan.gateway_mac: 01:00:5e:00:00:01 is a multicast MAC; a NIC needs a unicast MAC (first byte even), like 02:00:00:00:00:10"]
    );
    let text = edit(VALID, "dns = [", "gateway_mac = \"00:00:00:00:00:00\"\ndns = [");
    assert_eq!(
        errors("zero_gateway_mac", &text),
        ["7:15: wan.gateway_mac: 00:00:00:00:00:00 is no MAC a NIC can have"]
    );
}

#[test]
fn a_bad_cidr_shows_the_expected_form() {
    let text = edit(VALID, r#""172.16.0.1/16""#, r#""172.16.0.1/33""#);
    assert_eq!(
        errors("bad_cidr", &text),
        [
            r#"10:11: lan.address: expected an IPv4 address with prefix length like 203.0.113.10/32, found "172.16.0.1/33""#
        ]
    );
}

#[test]
fn a_wan_address_without_prefix_length_is_refused() {
    let text = edit(VALID, r#""203.0.113.10/32""#, r#""203.0.113.10""#);
    assert_eq!(
        errors("no_prefix", &text),
        [
            r#"5:11: wan.address: expected an IPv4 address with prefix length like 203.0.113.10/32, found "203.0.113.10""#
        ]
    );
}

#[test]
fn a_missing_gateway_is_reported_at_the_wan_table() {
    let text = edit(VALID, "gateway = \"203.0.113.254\"\n", "");
    assert_eq!(
        errors("missing_gateway", &text),
        [r#"3:1: missing key `gateway` (the hoster's gateway, like "203.0.113.254")"#]
    );
}

#[test]
fn a_dhcp_range_outside_the_lan_is_refused() {
    let text = edit(VALID, "172.16.10.100-172.16.10.250", "172.16.10.100-172.17.0.5");
    assert_eq!(
        errors("dhcp_outside", &text),
        [format!(
            "{}: dhcp.range: 172.17.0.5 is outside the usable addresses of the LAN 172.16.0.0/16",
            at(&text, "\"172.16.10.100-")
        )]
    );
}

#[test]
fn a_forward_to_a_host_outside_the_lan_is_refused() {
    let text = edit(VALID, r#"to = "172.16.10.205""#, r#"to = "10.0.0.5""#);
    assert_eq!(
        errors("forward_outside", &text),
        ["24:6: forward.to: 10.0.0.5 is outside the LAN 172.16.0.0/16"]
    );
}

#[test]
fn the_same_tcp_port_forwarded_twice_is_refused_at_the_second_forward() {
    let text = with("[[forward]]\nprotocol = \"tcp\"\nport = 80\nto = \"172.16.10.206\"\n");
    assert_eq!(
        errors("tcp_twice", &text),
        ["27:1: forward: tcp port 80 overlaps tcp port 80, already forwarded to 172.16.10.205; each public port can be forwarded only once per protocol"]
    );
}

#[test]
fn a_tcp_range_overlapping_a_forward_of_both_protocols_is_refused() {
    let text = with(
        "[[forward]]\nprotocol = \"both\"\nport = 53\nto = \"172.16.10.53\"\n\n\
         [[forward]]\nprotocol = \"tcp\"\nport = \"50-60\"\nto = \"172.16.10.54\"\n",
    );
    assert_eq!(
        errors("range_over_both", &text),
        [format!(
            "{}: forward: tcp port 50-60 overlaps tcp port 53, already forwarded to 172.16.10.53; each public port can be forwarded only once per protocol",
            at(&text, "[[forward]]\nprotocol = \"tcp\"\nport = \"50-60\"")
        )]
    );
}

#[test]
fn a_to_port_range_of_another_length_is_refused() {
    let text = edit(VALID, "port = 80\n", "port = \"8000-8010\"\n");
    let text = edit(&text, "to_port = 8080", r#"to_port = "9000-9005""#);
    assert_eq!(
        errors("to_port_length", &text),
        ["25:11: forward.to_port: 9000-9005 has 6 ports but port 8000-8010 has 11; ranges map one to one"]
    );
}

#[test]
fn a_shifted_range_running_past_65535_is_refused() {
    let text = edit(VALID, "port = 80\n", "port = \"8000-8010\"\n");
    let text = edit(&text, "to_port = 8080", "to_port = 65530");
    assert_eq!(
        errors("past_65535", &text),
        ["25:11: forward.to_port: 65530 + 11 ports runs past 65535"]
    );
}

#[test]
fn an_unknown_protocol_lists_the_allowed_ones() {
    let text = edit(VALID, r#"protocol = "tcp""#, r#"protocol = "sctp""#);
    assert_eq!(
        errors("bad_protocol", &text),
        [r#"22:12: forward.protocol: expected "tcp", "udp" or "both", found "sctp""#]
    );
}

#[test]
fn port_0_and_port_70000_are_refused() {
    for (name, port) in [("port_0", "0"), ("port_70000", "70000"), ("range_70000", "\"1-70000\"")] {
        let text = edit(VALID, "port = 80\n", &format!("port = {port}\n"));
        assert_eq!(
            errors(name, &text),
            [format!(
                r#"23:8: forward.port: expected a port 1-65535 or a range like "8000-8010", found {port}"#
            )]
        );
    }
}

#[test]
fn a_reversed_port_range_is_refused() {
    let text = edit(VALID, "port = 80\n", "port = \"90-80\"\n");
    assert_eq!(
        errors("reversed", &text),
        ["23:8: forward.port: range 90-80 is reversed"]
    );
}

#[test]
fn the_lan_on_the_wan_interface_is_reported_at_lan_interface() {
    let text = edit(VALID, r#"mac = "02:00:00:00:00:10""#, "interface = \"eth0\"");
    let text = edit(&text, "[lan]\n", "[lan]\ninterface = \"eth0\"\n");
    assert_eq!(
        errors("same_interface", &text),
        [format!(
            "{}: lan.interface: eth0 is also the WAN interface",
            at(&text, "\"eth0\"\naddress = \"172")
        )]
    );
}

#[test]
fn the_lan_with_the_wan_mac_is_reported_at_lan_mac() {
    let text = edit(VALID, "[lan]\n", "[lan]\nmac = \"02:00:00:00:00:10\"\n");
    assert_eq!(
        errors("same_mac", &text),
        ["10:7: lan.mac: 02:00:00:00:00:10 is also the WAN MAC"]
    );
}

#[test]
fn an_unreadable_file_says_so() {
    let missing = std::env::temp_dir().join(format!("routerd-check-{}-missing/router.toml", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_routerd"))
        .arg("check")
        .arg(&missing)
        .output()
        .expect("run routerd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{stderr}"
    );
}

// --- Several errors at once ------------------------------------------------------------------

#[test]
fn three_independent_errors_are_all_reported_one_per_line() {
    // A bad WAN MAC used to hide every error in the forwards.
    let text = edit(VALID, r#""02:00:00:00:00:10""#, r#""02:00:00:00:00:1""#);
    let text = edit(&text, "lease_time = \"12h\"", "lease_time = \"12 hours\"");
    let text = edit(&text, r#"to = "172.16.10.205""#, r#"to = "172.16.10.2055""#);
    assert_eq!(
        errors("three_errors", &text),
        [
            r#"4:7: wan.mac: expected a MAC address like 02:00:00:00:00:10, found "02:00:00:00:00:1""#,
            r#"14:14: dhcp.lease_time: expected a duration like "12h", "30m", "1d" or a number of seconds"#,
            r#"24:6: forward.to: expected an IPv4 address like 203.0.113.254, found "172.16.10.2055""#,
        ]
    );
}

#[test]
fn errors_in_every_section_are_reported_together() {
    let text = edit(VALID, "dns = [\"198.51.100.53\"]", "dns = [\"198.51.100.x\"]");
    let text = edit(&text, "172.16.10.100-172.16.10.250", "172.16.10.100");
    let text = edit(&text, "hostname = \"web\"", "hostname = \"-web\"");
    let text = edit(&text, "port = 80\n", "port = 0\n");
    let errors = errors("every_section", &text);
    let positions: Vec<&str> = errors
        .iter()
        .map(|e| e.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(positions, ["7:8", "13:9", "19:12", "23:8"], "{errors:#?}");
}

#[test]
fn the_position_helper_counts_like_an_editor() {
    // The helper the tests above rely on: 1-based line and column.
    assert_eq!(at("a = 1\n[wan]\n", "a"), "1:1");
    assert_eq!(at("a = 1\n[wan]\n", "[wan]"), "2:1");
    assert_eq!(at("a = 1\n[wan]\n", "wan"), "2:2");
    assert_eq!(at(VALID, "gateway"), "6:1");
    assert_eq!(at(VALID, "[[forward]]"), "21:1");
}

// --- Files that are not read ---------------------------------------------------------

#[test]
fn a_file_over_one_mib_is_refused_with_its_size() {
    // A valid config padded with a comment: only its size is wrong.
    let text = format!("{VALID}# {}\n", "x".repeat(2 << 20));
    let file = ConfigFile::new("two_mib", &text);
    let out = run_check(&file);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stderr,
        format!(
            "{}: {} bytes, larger than the 1 MiB limit\n",
            file.path.display(),
            text.len()
        )
    );
}

#[test]
fn a_link_to_a_device_is_refused() {
    let file = ConfigFile::new("dev_zero", "");
    std::fs::remove_file(&file.path).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &file.path).expect("symlink");
    let out = run_check(&file);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stderr,
        format!(
            "{}: a character device; a config must be a regular file\n",
            file.path.display()
        )
    );
}

// --- Several LANs ([[lan]]) -------------------------------------------------------------

/// Two LANs in the `[[lan]]` form: untagged on eth1, VLAN 20 on the same NIC.
const TWO_LANS: &str = r#"[wan]
mac = "02:00:00:00:00:10"
address = "203.0.113.10/32"
gateway = "203.0.113.254"

[[lan]]
name = "prod"
interface = "eth1"
address = "172.16.0.1/16"
reach = ["dmz"]

[lan.dhcp]
range = "172.16.10.100-172.16.10.250"

[[lan.dhcp.host]]
mac = "52:54:00:12:34:56"
address = "172.16.10.205"

[[lan]]
name = "dmz"
interface = "eth1"
vlan = 20
address = "10.20.0.1/24"

[lan.dhcp]
range = "10.20.0.100-10.20.0.200"

[[forward]]
port = 80
to = "10.20.0.5"
"#;

#[test]
fn two_lans_with_a_vlan_on_one_nic_are_valid() {
    let file = ConfigFile::new("two_lans", TWO_LANS);
    let out = run_check(&file);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "ok\n", "")
    );
}

#[test]
fn every_mistake_between_lans_is_reported_at_its_place() {
    let text = edit(TWO_LANS, "name = \"dmz\"", "name = \"prod\"");
    let text = edit(&text, "vlan = 20\n", "");
    let text = edit(&text, "10.20.0.1/24", "172.16.200.1/24");
    let text = edit(&text, "reach = [\"dmz\"]", "reach = [\"web\"]");
    let text = edit(&text, "10.20.0.100-10.20.0.200", "10.30.0.100-10.30.0.200");
    let text = edit(&text, "to = \"10.20.0.5\"", "to = \"10.99.0.5\"");
    let second_name = text.rfind("name = \"prod\"").expect("second name") + "name = ".len();
    let second_interface = text.rfind("interface = \"eth1\"").expect("second interface") + "interface = ".len();
    let pos = |offset: usize| {
        let before = &text[..offset];
        format!(
            "{}:{}",
            before.matches('\n').count() + 1,
            before.rsplit('\n').next().unwrap_or_default().chars().count() + 1
        )
    };
    assert_eq!(
        errors("lans_mistakes", &text),
        [
            format!(
                "{}: lan.dhcp.range: 10.30.0.100 is outside the usable addresses of the LAN 172.16.200.0/24",
                at(&text, "\"10.30.0.100-")
            ),
            format!(
                "{}: lan.reach: no LAN is named \"web\" (LANs: \"prod\", \"prod\")",
                at(&text, "\"web\"")
            ),
            format!("{}: lan.name: \"prod\" is already the name of another LAN", pos(second_name)),
            format!(
                "{}: lan.address: 172.16.200.0/24 overlaps the LAN \"prod\" (172.16.0.0/16)",
                at(&text, "\"172.16.200.1/24\"")
            ),
            format!(
                "{}: lan.interface: the NIC named eth1 is also the NIC of the LAN \"prod\"; LANs sharing a NIC need a `vlan` each (one may stay untagged)",
                pos(second_interface)
            ),
            format!(
                "{}: forward.to: 10.99.0.5 is in none of the LANs (prod 172.16.0.0/16, prod 172.16.200.0/24)",
                at(&text, "\"10.99.0.5\"")
            ),
        ]
    );
}

#[test]
fn a_forward_to_no_lan_and_a_duplicate_vlan_are_refused() {
    let text = edit(TWO_LANS, "to = \"10.20.0.5\"", "to = \"10.99.0.5\"");
    let text = edit(
        &text,
        "interface = \"eth1\"\naddress = \"172.16.0.1/16\"",
        "interface = \"eth1\"\nvlan = 20\naddress = \"172.16.0.1/16\"",
    );
    let second_vlan = text.rfind("vlan = 20").expect("vlan") + "vlan = ".len();
    let before = &text[..second_vlan];
    let vlan_at = format!(
        "{}:{}",
        before.matches('\n').count() + 1,
        before.rsplit('\n').next().unwrap_or_default().chars().count() + 1
    );
    assert_eq!(
        errors("lans_vlan_forward", &text),
        [
            format!("{vlan_at}: lan.vlan: VLAN 20 on the NIC named eth1 is already the LAN \"prod\""),
            format!(
                "{}: forward.to: 10.99.0.5 is in none of the LANs (prod 172.16.0.0/16, dmz 10.20.0.0/24)",
                at(&text, "\"10.99.0.5\"")
            ),
        ]
    );
}

#[test]
fn dhcp_beside_lan_array_and_a_nameless_lan_are_refused() {
    let text = edit(TWO_LANS, "name = \"dmz\"\n", "");
    let text = format!("{text}\n[dhcp]\nrange = \"10.20.0.100-10.20.0.200\"\n");
    let errs = errors("lans_dhcp_top", &text);
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].ends_with("[dhcp] goes with the single [lan]; with [[lan]], give each LAN its own [lan.dhcp]"),
        "{errs:?}"
    );
    assert!(errs[1].contains("missing key `name`"), "{errs:?}");
    // The nameless LAN was "dmz": `reach` now names no LAN.
    assert!(errs[2].contains("lan.reach: no LAN is named \"dmz\""), "{errs:?}");
}

#[test]
fn a_status_lan_that_does_not_exist_is_refused() {
    let text = format!("{TWO_LANS}\n[status]\nlans = [\"prod\", \"web\"]\n");
    assert_eq!(
        errors("status_lans", &text),
        [format!(
            "{}: status.lans: no LAN is named \"web\" (LANs: \"prod\", \"dmz\")",
            at(&text, "\"web\"")
        )]
    );
}

// --- Several public addresses ---------------------------------------------------------

/// `VALID` with a second address on the WAN's MAC, an extra NIC with its own MAC and
/// address, a 1:1 NAT on it and a forward on the second address.
fn several_public() -> String {
    let text = edit(
        VALID,
        "dns = [\"198.51.100.53\"]\n",
        "dns = [\"198.51.100.53\"]\nmore_addresses = [\"203.0.113.11/32\"]\n",
    );
    format!(
        "{text}
[[wan.extra]]
mac = \"02:00:00:00:00:11\"
address = \"203.0.113.20/32\"

[[one_to_one]]
public = \"203.0.113.20\"
private = \"172.16.10.20\"
open = [\"tcp/22\", \"tcp/8000-8100\", \"udp/all\"]

[[forward]]
public = \"203.0.113.11\"
port = 443
to = \"172.16.10.30\"
"
    )
}

#[test]
fn several_public_addresses_with_1to1_nat_and_a_forward_per_address_are_ok() {
    let text = several_public();
    let file = ConfigFile::new("several_public", &text);
    let out = run_check(&file);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "ok\n");
    // The same port on another public address is no clash.
    let text = format!("{text}\n[[forward]]\nport = 443\nto = \"172.16.10.31\"\n");
    let file = ConfigFile::new("same_port_other_public", &text);
    assert_eq!(run_check(&file).code, Some(0));
}

#[test]
fn a_public_address_given_twice_is_refused_at_the_second() {
    let text = edit(&several_public(), "\"203.0.113.20/32\"", "\"203.0.113.11/32\"");
    assert_eq!(
        errors("public_twice", &text),
        [format!(
            "{}: wan.extra.address: 203.0.113.11 is already one of the router's public addresses; each can be given once",
            at(&text, "\"203.0.113.11/32\"\n\n")
        )]
    );
    let text = edit(
        &several_public(),
        "[\"203.0.113.11/32\"]",
        "[\"203.0.113.11/32\", \"203.0.113.10/32\"]",
    );
    assert_eq!(
        errors("main_twice", &text),
        [format!(
            "{}: wan.more_addresses: 203.0.113.10 is already one of the router's public addresses; each can be given once",
            at(&text, "\"203.0.113.10/32\"]")
        )]
    );
}

#[test]
fn a_1to1_or_forward_public_address_the_router_does_not_have_is_refused() {
    let text = edit(
        &several_public(),
        "public = \"203.0.113.20\"",
        "public = \"203.0.113.99\"",
    );
    assert_eq!(
        errors("one_to_one_public", &text),
        [format!(
            "{}: one_to_one.public: 203.0.113.99 is not one of the router's public addresses (203.0.113.10, 203.0.113.11, 203.0.113.20: wan.address, wan.more_addresses, wan.extra)",
            at(&text, "\"203.0.113.99\"")
        )]
    );
    let text = edit(
        &several_public(),
        "public = \"203.0.113.11\"",
        "public = \"203.0.113.12\"",
    );
    let errs = errors("forward_public", &text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(&format!(
            "{}: forward.public: 203.0.113.12 is not one of the router's public addresses",
            at(&text, "\"203.0.113.12\"")
        )),
        "{errs:?}"
    );
}

#[test]
fn a_lan_snat_must_be_one_of_the_router_public_addresses() {
    // TWO_LANS with a second address on the WAN's MAC and an extra NIC: each LAN may
    // leave with one of them.
    let text = edit(
        TWO_LANS,
        "gateway = \"203.0.113.254\"\n",
        "gateway = \"203.0.113.254\"\nmore_addresses = [\"203.0.113.11/32\"]\n\n[[wan.extra]]\nmac = \"02:00:00:00:00:11\"\naddress = \"203.0.113.20/32\"\n",
    );
    let text = edit(
        &text,
        "reach = [\"dmz\"]\n",
        "reach = [\"dmz\"]\nsnat = \"203.0.113.11\"\n",
    );
    let text = edit(&text, "vlan = 20\n", "vlan = 20\nsnat = \"203.0.113.20\"\n");
    let file = ConfigFile::new("lan_snat", &text);
    let out = run_check(&file);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "ok\n", "")
    );

    let text = edit(&text, "snat = \"203.0.113.20\"", "snat = \"203.0.113.99\"");
    assert_eq!(
        errors("lan_snat_foreign", &text),
        [format!(
            "{}: lan.snat: 203.0.113.99 is not one of the router's public addresses (203.0.113.10, 203.0.113.11, 203.0.113.20: wan.address, wan.more_addresses, wan.extra)",
            at(&text, "\"203.0.113.99\"")
        )]
    );
    let text = edit(&text, "snat = \"203.0.113.11\"", "snat = \"203.0.113.x\"");
    let errs = errors("lan_snat_bad", &text);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with(&format!("{}: lan.snat: ", at(&text, "\"203.0.113.x\""))),
        "{errs:?}"
    );
}

#[test]
fn a_lan_host_in_two_1to1_mappings_is_refused() {
    let text = edit(
        &several_public(),
        "[[wan.extra]]\n",
        "[[one_to_one]]\npublic = \"203.0.113.11\"\nprivate = \"172.16.10.20\"\n\n[[wan.extra]]\n",
    );
    // The first mapping in the file wins; the second is named.
    assert_eq!(
        errors("private_twice", &text),
        [format!(
            "{}: one_to_one.private: 172.16.10.20 is already mapped 1:1 to 203.0.113.11; a LAN host can leave from one address only",
            at(&text, "\"172.16.10.20\"\nopen")
        )]
    );
}

#[test]
fn a_forward_on_a_port_a_1to1_mapping_opens_is_refused() {
    let text = format!(
        "{}\n[[forward]]\npublic = \"203.0.113.20\"\nport = \"8080-8081\"\nto = \"172.16.10.31\"\n",
        several_public()
    );
    let forward = text.rfind("[[forward]]").expect("the forward");
    let line = text[..forward].matches('\n').count() + 1;
    assert_eq!(
        errors("forward_on_open", &text),
        [format!(
            "{line}:1: forward: tcp port 8080-8081 of 203.0.113.20 is already open to 172.16.10.20 by its one_to_one (\"tcp/8000-8100\"); forward another port or another address"
        )]
    );
    // udp/all opens every udp port; tcp 22 on another address is free.
    let text = format!(
        "{}\n[[forward]]\npublic = \"203.0.113.20\"\nprotocol = \"udp\"\nport = 22\nto = \"172.16.10.31\"\n",
        several_public()
    );
    assert_eq!(errors("forward_on_udp_all", &text).len(), 1);
}

#[test]
fn a_bad_open_item_is_refused_at_its_place() {
    for (bad, name) in [
        ("icmp/8", "icmp"),
        ("tcp/0", "port_0"),
        ("tcp", "no_port"),
        ("tcp/90-80", "reversed"),
    ] {
        let text = edit(&several_public(), "\"tcp/22\"", &format!("\"{bad}\""));
        let errs = errors(&format!("open_{name}"), &text);
        assert_eq!(errs.len(), 1, "{bad}: {errs:?}");
        assert!(
            errs[0].starts_with(&format!(
                "{}: one_to_one.open: ",
                at(&text, &format!("\"{bad}\", \"tcp/8000"))
            )),
            "{bad}: {errs:?}"
        );
    }
}

#[test]
fn an_extra_wan_on_the_main_wan_mac_is_refused() {
    let text = edit(
        &several_public(),
        "mac = \"02:00:00:00:00:11\"",
        "mac = \"02:00:00:00:00:10\"",
    );
    let errs = errors("extra_same_mac", &text);
    assert_eq!(
        errs,
        [format!(
            "{}: wan.extra: the NIC with MAC 02:00:00:00:00:10 is already a WAN NIC; an extra address with a MAC of its own needs a NIC of its own (addresses that share the WAN's MAC go in wan.more_addresses)",
            at(&text, "[[wan.extra]]")
        )]
    );
}

// --- Forwards by host name ---------------------------------------------------------------

/// Three web servers on tcp 443 by name (one by a wildcard), a default, and port 80 by
/// name only: the README's recipe.
fn by_name() -> String {
    with(
        "[[forward]]\nport = 443\nhost = \"shop.example.com\"\nto = \"172.16.10.21\"\n\n\
         [[forward]]\nport = 443\nhost = \"*.blog.example.com\"\nto = \"172.16.10.22\"\nto_port = 8443\nproxy_protocol = true\n\n\
         [[forward]]\nport = 443\nto = \"172.16.10.23\"\n\n\
         [[forward]]\nport = 8080\nhost = \"shop.example.com\"\nto = \"172.16.10.21\"\n",
    )
}

#[test]
fn forwards_by_name_on_one_port_with_one_default_are_valid() {
    let file = ConfigFile::new("by_name", &by_name());
    let out = run_check(&file);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(0), "ok\n", "")
    );
}

#[test]
fn the_same_name_twice_on_a_port_is_refused_at_its_host() {
    let text = format!(
        "{}\n[[forward]]\nport = 443\nhost = \"SHOP.example.com\"\nto = \"172.16.10.24\"\n",
        by_name()
    );
    assert_eq!(
        errors("same_name", &text),
        [format!(
            "{}: forward.host: shop.example.com is already forwarded on tcp port 443 of 203.0.113.10 (to 172.16.10.21); each name once per port",
            at(&text, "\"SHOP")
        )]
    );
}

#[test]
fn a_second_default_on_a_port_by_name_is_refused() {
    let text = format!("{}\n[[forward]]\nport = 443\nto = \"172.16.10.24\"\n", by_name());
    assert_eq!(
        errors("two_defaults", &text),
        [format!(
            "{}: forward: a second default (no `host`) for tcp port 443 of 203.0.113.10, already forwarded to 172.16.10.23; a port routed by name takes one forward without `host`",
            at(&text, "[[forward]]\nport = 443\nto = \"172.16.10.24\"")
        )]
    );
}

#[test]
fn a_name_on_udp_or_both_or_on_a_range_and_bad_wildcards_are_refused_at_their_place() {
    let text = with(
        "[[forward]]\nprotocol = \"udp\"\nport = 443\nhost = \"a.example.com\"\nto = \"172.16.10.21\"\n\n\
         [[forward]]\nprotocol = \"both\"\nport = 444\nhost = \"b.example.com\"\nto = \"172.16.10.21\"\n\n\
         [[forward]]\nport = \"500-510\"\nhost = \"c.example.com\"\nto = \"172.16.10.21\"\n\n\
         [[forward]]\nport = 443\nhost = \"a.*.example.com\"\nto = \"172.16.10.21\"\n\n\
         [[forward]]\nport = 443\nhost = \"bad_name.com\"\nto = \"172.16.10.21\"\n",
    );
    assert_eq!(
        errors("name_misplaced", &text),
        [
            format!("{}: forward.host: names come from TLS or HTTP, over TCP; this forward is udp: give it protocol = \"tcp\" (and a.example.com a forward of its own)", at(&text, "\"a.example")),
            format!("{}: forward.host: names come from TLS or HTTP, over TCP; this forward is tcp and udp: give it protocol = \"tcp\" (and b.example.com a forward of its own)", at(&text, "\"b.example")),
            format!("{}: forward.host: a forward by name takes one port, not the range 500-510", at(&text, "\"c.example")),
            format!("{}: forward.host: \"a.*.example.com\" is not a valid wildcard: only a whole first label may be `*`, like \"*.blog.example.com\"", at(&text, "\"a.*")),
            format!("{}: forward.host: \"bad_name.com\" is not a valid host name (letters, digits and '-', dot-separated, or \"*.\" and such a name)", at(&text, "\"bad_name")),
        ]
    );
}

#[test]
fn a_named_port_inside_a_range_and_proxy_protocol_on_a_plain_forward_are_refused() {
    let text = with(
        "[[forward]]\nport = \"440-450\"\nto = \"172.16.10.21\"\n\n\
         [[forward]]\nport = 443\nhost = \"shop.example.com\"\nto = \"172.16.10.22\"\n\n\
         [[forward]]\nport = 9000\nto = \"172.16.10.23\"\nproxy_protocol = true\n",
    );
    assert_eq!(
        errors("name_in_range", &text),
        [
            format!("{}: forward: tcp port 443 (by name, shop.example.com) lies in the range 440-450 already forwarded to 172.16.10.21; a port routed by name cannot be in a range", at(&text, "[[forward]]\nport = 443")),
            format!("{}: forward.proxy_protocol: only forwards that routerd relays (by `host`) carry the header; tcp port 9000 of 203.0.113.10 has no forward by name", at(&text, "true\n")),
        ]
    );
}

// --- WireGuard -------------------------------------------------------------------------

#[test]
fn wireguard_mistakes_each_get_their_position() {
    let text = with(
        r#"[wireguard]
listen_port = 51820
address = "172.16.99.1/24"

[[wireguard.peer]]
name = "laptop"
public_key = "base64..."
allowed_ips = ["10.99.0.2/32"]

[[wireguard.peer]]
name = "phone"
public_key = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
allowed_ips = ["10.99.0.2/32"]
"#,
    );
    let got = errors("wireguard", &text);
    let expected = [
        format!(
            "{}: wireguard.address: the tunnel subnet 172.16.99.0/24 overlaps the LAN \"lan\" (172.16.0.0/16)",
            at(&text, "\"172.16.99.1/24\"")
        ),
        format!(
            "{}: wireguard.peer.public_key: expected a WireGuard key (32 bytes in base64, 44 characters, as `wg pubkey` prints it), found \"base64...\"",
            at(&text, "\"base64...\"")
        ),
    ];
    assert_eq!(got, expected, "{text}");
    let port_clash = with(
        "[wireguard]\nlisten_port = 5000\naddress = \"10.99.0.1/24\"\n\n[[forward]]\nprotocol = \"udp\"\nport = 5000\nto = \"172.16.10.205\"\n",
    );
    assert_eq!(
        errors("wireguard-port", &port_clash),
        [format!(
            "{}: wireguard.listen_port: UDP port 5000 of 203.0.113.10 is already forwarded (port 5000 to 172.16.10.205); WireGuard and a forward cannot share a port",
            at(&port_clash, "5000")
        )]
    );
    let ok = ConfigFile::new(
        "wireguard-ok",
        &with("[wireguard]\nlisten_port = 51820\naddress = \"10.99.0.1/24\"\n\n[[wireguard.peer]]\nname = \"laptop\"\npublic_key = \"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=\"\nallowed_ips = [\"10.99.0.2/32\"]\n"),
    );
    assert_eq!(run_check(&ok).stdout, "ok\n");
}
