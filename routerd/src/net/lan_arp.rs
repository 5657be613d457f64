//! Watches the LAN for ARP frames from another host that claim the router's own LAN
//! address (a gratuitous ARP, or a reply, with it as the sender address). Guests that
//! believe it send their traffic to that host instead of the router: a misconfigured
//! guest, or one taking over the LAN's gateway. The kernel ignores such frames without
//! a word, so routerd listens itself and logs them (rate-limited per MAC).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::arp::{Arp, ArpSocket};
use config::MacAddr;

/// The same MAC is warned about at most this often.
const REPEAT_WARNING: Duration = Duration::from_secs(60);
/// And all MACs together at most this many times per [`REPEAT_WARNING`]: a host
/// inventing a new MAC for every frame cannot flood the log.
const WARNINGS_PER_PERIOD: usize = 16;

/// The MAC of a host claiming `our_ip` in `arp`: its sender address is `our_ip`, its
/// sender MAC is not `our_mac` (and it is not our own frame going out).
pub fn claimer(arp: &Arp, our_ip: Ipv4Addr, our_mac: MacAddr) -> Option<MacAddr> {
    (arp.sender_ip == our_ip && arp.sender_mac != our_mac && arp.from != our_mac).then_some(arp.sender_mac)
}

/// Decides which claims to warn about: each MAC at most once per [`REPEAT_WARNING`],
/// and [`WARNINGS_PER_PERIOD`] in all.
#[derive(Debug, Default)]
pub struct Limiter {
    last: HashMap<MacAddr, Instant>,
}

impl Limiter {
    pub fn due(&mut self, mac: MacAddr, now: Instant) -> bool {
        self.last.retain(|_, t| now.duration_since(*t) < REPEAT_WARNING);
        if self.last.contains_key(&mac) || self.last.len() >= WARNINGS_PER_PERIOD {
            return false;
        }
        self.last.insert(mac, now);
        true
    }
}

pub fn claim_message(our_ip: Ipv4Addr, lan: &str, claimer: MacAddr) -> String {
    format!(
        "the host with MAC {claimer} on {lan} claims this router's LAN address {our_ip} (ARP): guests that \
         believe it send their traffic there instead of through the router; that host's address is misconfigured, \
         or it is taking over the LAN's gateway"
    )
}

/// The running watch on one LAN NIC.
pub struct Watch {
    /// NIC index, router's LAN address, NIC MAC: a change of any restarts the watch.
    key: (u32, Ipv4Addr, MacAddr),
    task: JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watch {
    /// Whether this watch is the one for `lan` and `our_ip` (its MAC included).
    pub fn watches(&self, lan: &super::Nic, our_ip: Ipv4Addr) -> bool {
        lan.mac.is_some_and(|mac| self.key == (lan.index, our_ip, mac))
    }
}

/// Keeps `current` if it watches the same NIC for the same address, else starts anew.
/// Without a MAC on the NIC, or when the socket cannot be opened, nothing is watched.
pub fn ensure(current: Option<Watch>, lan: &super::Nic, our_ip: Ipv4Addr) -> Option<Watch> {
    let our_mac = lan.mac?;
    let key = (lan.index, our_ip, our_mac);
    if let Some(w) = current.filter(|w| w.key == key) {
        return Some(w);
    }
    let socket = match ArpSocket::open(lan.index) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot watch {} for hosts claiming {our_ip}: {e}", lan.name);
            return None;
        }
    };
    let name = lan.name.clone();
    let task = tokio::spawn(async move {
        let mut limiter = Limiter::default();
        loop {
            let arp = match socket.recv().await {
                Ok(arp) => arp,
                Err(e) => {
                    tracing::warn!("watching {name} for hosts claiming {our_ip} stopped: {e}");
                    return;
                }
            };
            if let Some(mac) = claimer(&arp, our_ip, our_mac) {
                if limiter.due(mac, Instant::now()) {
                    tracing::warn!("{}", claim_message(our_ip, &name, mac));
                }
            }
        }
    });
    Some(Watch { key, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTER: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);
    const OURS: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x20]);
    const GUEST: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 9]);

    /// A gratuitous ARP (request, sender = target = `ip`) from `mac`.
    fn garp(mac: MacAddr, ip: Ipv4Addr) -> Arp {
        Arp {
            from: mac,
            op: super::super::arp::REQUEST,
            sender_mac: mac,
            sender_ip: ip,
            target_ip: ip,
        }
    }

    #[test]
    fn another_host_claiming_the_router_address_is_found() {
        assert_eq!(claimer(&garp(GUEST, ROUTER), ROUTER, OURS), Some(GUEST));
    }

    #[test]
    fn our_own_frames_and_other_addresses_are_not_claims() {
        assert_eq!(claimer(&garp(OURS, ROUTER), ROUTER, OURS), None);
        assert_eq!(
            claimer(&garp(GUEST, Ipv4Addr::new(172, 16, 10, 50)), ROUTER, OURS),
            None
        );
        // A probe (sender 0.0.0.0) asking who has the router's address is no claim.
        let probe = Arp {
            sender_ip: Ipv4Addr::UNSPECIFIED,
            ..garp(GUEST, ROUTER)
        };
        assert_eq!(claimer(&probe, ROUTER, OURS), None);
    }

    #[test]
    fn each_mac_is_warned_about_once_a_minute() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        assert!(l.due(GUEST, t0));
        assert!(!l.due(GUEST, t0 + Duration::from_secs(1)));
        assert!(
            l.due(OURS, t0 + Duration::from_secs(1)),
            "another MAC has its own limit"
        );
        assert!(l.due(GUEST, t0 + REPEAT_WARNING));
        // A new MAC for every frame: a few warnings, then silence until the period ends.
        let later = t0 + REPEAT_WARNING * 3;
        let warned = (0..1000u16)
            .filter(|i| l.due(MacAddr([2, 0, 0, 0, (i >> 8) as u8, *i as u8]), later))
            .count();
        assert_eq!(warned, WARNINGS_PER_PERIOD);
    }
}
