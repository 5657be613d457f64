//! The gateway check at boot, in the namespace lab: the hoster's bridge drops every
//! frame whose source MAC is not the virtual MAC, so with the wrong MAC on the WAN
//! the gateway never answers ARP, and routerd must say so plainly, name the likely
//! causes and keep checking. Needs root (network namespaces) and `nft`.

use testkit::lab::{Lab, Options, CONFIG};

const NO_ANSWER: &str = "the gateway 203.0.113.254 does not answer ARP on wan";
const ANSWERS: &str = "the gateway 203.0.113.254 answers ARP on wan";

/// The lab config with the WAN chosen by a MAC and nothing set on it: what a
/// cloud-init drive gives when net0 kept Proxmox's random MAC.
fn config_with_wan_mac(mac: &str) -> String {
    CONFIG
        .replace("interface = \"wan\"\n", "")
        .replace("mac = \"02:00:00:00:00:10\"", &format!("mac = \"{mac}\""))
}

#[test]
fn wrong_mac_on_the_wan_the_console_says_the_gateway_does_not_answer_and_why() {
    if !testkit::require_root() {
        return;
    }
    let wrong = "bc:24:11:2a:3b:4c";
    let mut lab = Lab::new(Options { wan_mac: Some(wrong) });
    lab.start_routerd(&config_with_wan_mac(wrong));
    lab.wait_log(NO_ANSWER, 1);
    let log = lab.log();
    eprintln!("routerd's log:\n{log}");
    let line = log.lines().find(|l| l.contains(NO_ANSWER)).unwrap_or_default();
    assert!(line.contains(&format!("this router sends from MAC {wrong}")), "{line}");
    assert!(line.contains("virtual MAC is not set on this VM's WAN NIC"), "{line}");
    assert!(
        line.contains("qm set ID --net0 virtio=VIRTUAL-MAC,bridge=vmbr0"),
        "{line}"
    );
    assert!(line.contains("the gateway is wrong"), "{line}");
    assert!(!log.contains(ANSWERS), "{log}");
    let (_, dropped) = lab.hoster_filter_counts();
    assert!(dropped > 0, "the hoster's MAC filter dropped the router's ARP requests");

    // routerd keeps checking: once the hoster accepts the router's MAC (here the
    // filter goes away), it says that the gateway answers.
    lab.hoster.sh("nft delete table bridge hoster");
    lab.wait_log(ANSWERS, 1);
}

#[test]
fn virtual_mac_on_the_wan_the_log_says_the_gateway_answers() {
    if !testkit::require_root() {
        return;
    }
    let mut lab = Lab::new(Options { wan_mac: None });
    lab.start_routerd(CONFIG);
    lab.wait_log(ANSWERS, 1);
    assert!(!lab.log().contains(NO_ANSWER), "{}", lab.log());
}
