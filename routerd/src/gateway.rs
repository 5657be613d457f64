//! Does the hoster's gateway answer? Checked once the WAN is configured, and again
//! and again: the usual reason a freshly deployed router cannot reach anything is
//! that the hoster's virtual MAC is not on the VM's WAN NIC (the hoster then drops
//! every frame, ARP included), or that the gateway address is wrong. Both look the
//! same from inside: the gateway never answers ARP. The console says so plainly.
//!
//! A check sends one UDP datagram to the gateway's discard port, which makes the
//! kernel resolve the gateway's MAC, then watches the kernel's neighbour entry for
//! the gateway (reachable: it answered; incomplete or failed: it did not).
//!
//! Between checks the task follows the kernel's neighbour table (netlink events): when
//! the gateway's entry shows another MAC than before, something else answered ARP for
//! the gateway. A forged ARP reply from the WAN segment looks exactly like that and
//! sends the LAN's internet traffic to the forger, so the change is logged and counted
//! (`wan.gateway_mac` pins the MAC instead).
//!
//! With a pinned MAC the kernel never asks the gateway again, so the check asks it
//! itself (an ARP request from a packet socket) and says whether the gateway answers
//! with the pinned MAC: a wrong pin would otherwise cut the LAN off silently.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, MulticastGroup};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::net::arp::{self, ArpSocket};
use crate::net::neighbours::{self, nic_mac, Neighbour};
use crate::status::Shared;
use config::MacAddr;

/// How long one check waits for the gateway to answer (the kernel gives up after
/// three ARP requests a second apart).
const ANSWER_WAIT: Duration = Duration::from_secs(4);
const POLL: Duration = Duration::from_millis(250);
/// While the gateway does not answer: checked this often...
pub const RETRY_EVERY: Duration = Duration::from_secs(10);
/// ...and the warning repeated this often, so a console opened later still shows it.
const REPEAT_WARNING: Duration = Duration::from_secs(60);
/// Once it answers, checked this often (to notice when it stops).
const RECHECK_EVERY: Duration = Duration::from_secs(60);

/// What the console says when the gateway does not answer.
pub fn no_answer_message(gateway: Ipv4Addr, wan: &str, our_mac: &str) -> String {
    format!(
        "the gateway {gateway} does not answer ARP on {wan} (this router sends from MAC {our_mac}). \
         Most likely the hoster's virtual MAC is not set on this VM's WAN NIC: hosters drop frames from \
         any other MAC (on Proxmox, net0 must carry it: `qm set ID --net0 virtio=VIRTUAL-MAC,bridge=vmbr0`). \
         Otherwise the gateway is wrong (OVH: the server's main IP with the last octet .254; \
         Scaleway/online.net: 62.210.0.1; Hetzner: the gateway shown for the IP in Robot). \
         Checking again every {} s.",
        RETRY_EVERY.as_secs()
    )
}

/// The same for the NIC of an extra address (`wan.extra`), which has a MAC of its own.
pub fn extra_no_answer_message(gateway: Ipv4Addr, nic: &str, address: Ipv4Addr, our_mac: &str) -> String {
    format!(
        "the gateway {gateway} does not answer ARP on {nic}, the NIC of the extra address {address} \
         (this router sends from MAC {our_mac}). Most likely the virtual MAC the hoster issued for {address} \
         is not on this NIC: hosters drop frames from any other MAC (on Proxmox, one NIC per extra MAC: \
         `qm set ID --net2 virtio=VIRTUAL-MAC,bridge=vmbr0` for the first, net3 for the next...), \
         or the extra's gateway is wrong. Checking again every {} s.",
        RETRY_EVERY.as_secs()
    )
}

pub fn answers_message(gateway: Ipv4Addr, wan: &str, pinned: Option<MacAddr>) -> String {
    match pinned {
        Some(mac) => format!("the gateway {gateway} answers ARP on {wan} with its pinned MAC {mac}"),
        None => format!("the gateway {gateway} answers ARP on {wan}"),
    }
}

/// What the console says when the gateway answers with another MAC than the pinned one.
pub fn wrong_pin_message(gateway: Ipv4Addr, wan: &str, pinned: MacAddr, answered: MacAddr) -> String {
    format!(
        "the gateway {gateway} answers ARP on {wan} with MAC {answered}, but wan.gateway_mac pins {pinned}: \
         this router sends everything for the internet to {pinned}. If the gateway's MAC is {answered}, \
         correct gateway_mac (or remove it); if not, another host on the WAN segment answers for the gateway. \
         Checking again every {} s.",
        RETRY_EVERY.as_secs()
    )
}

/// What to log after a check: decides from the last result and the last warning.
#[derive(Debug, Default)]
pub struct Reporter {
    answered: Option<bool>,
    last_warning: Option<Instant>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    Answers,
    NoAnswer,
    Nothing,
}

impl Reporter {
    pub fn after_check(&mut self, answers: bool, now: Instant) -> Report {
        let previous = self.answered.replace(answers);
        if answers {
            self.last_warning = None;
            return if previous == Some(true) {
                Report::Nothing
            } else {
                Report::Answers
            };
        }
        let due = self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= REPEAT_WARNING);
        if due {
            self.last_warning = Some(now);
            Report::NoAnswer
        } else {
            Report::Nothing
        }
    }
}

/// Remembers the MAC the gateway answers with, to notice when another one takes over.
#[derive(Debug, Default)]
pub struct MacWatch {
    first: Option<MacAddr>,
    last: Option<MacAddr>,
}

/// The gateway's neighbour entry showed `new` where it showed `old` before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacChange {
    pub old: MacAddr,
    pub new: MacAddr,
    /// The MAC the gateway first answered with.
    pub first: MacAddr,
}

impl MacWatch {
    /// Takes the MAC the gateway's entry shows now; says when it differs from the last one.
    pub fn seen(&mut self, mac: MacAddr) -> Option<MacChange> {
        let first = *self.first.get_or_insert(mac);
        let old = self.last.replace(mac)?;
        (old != mac).then_some(MacChange { old, new: mac, first })
    }
}

/// What the console says when the gateway's MAC changes.
pub fn mac_change_message(gateway: Ipv4Addr, wan: &str, c: &MacChange) -> String {
    let head = format!(
        "the gateway {gateway}'s MAC on {wan} changed from {} to {}",
        c.old, c.new
    );
    if c.new == c.first {
        format!("{head}, the MAC it first answered with")
    } else {
        format!(
            "{head} (it first answered with {}). Unless the gateway was replaced, another host on the WAN \
             segment answers ARP for it (ARP spoofing) and the LAN's internet traffic goes there; \
             `gateway_mac = \"{}\"` in [wan] pins the gateway's MAC",
            c.first, c.first
        )
    }
}

/// What one check watches: the gateway on the WAN NIC, from the WAN address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub wan: String,
    /// The router's WAN address (the sender of its own ARP requests).
    pub address: Ipv4Addr,
    pub gateway: Ipv4Addr,
    /// The MAC pinned for the gateway (a change restarts the check and what it remembers).
    pub pinned: Option<MacAddr>,
    /// The NIC of an extra address (`wan.extra`): only logged, the status page and
    /// metrics follow the main WAN NIC's check.
    pub extra: bool,
}

/// The running check for one [`Target`].
pub struct Watch {
    pub target: Target,
    task: JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps `current` if it already checks `target`, else starts a new check. MAC changes
/// are counted in `shared`.
pub fn ensure(current: Option<Watch>, handle: &Handle, target: Target, shared: &Arc<Shared>) -> Watch {
    match current {
        Some(w) if w.target == target => w,
        _ => {
            let task = tokio::spawn(run(handle.clone(), target.clone(), shared.clone()));
            Watch { target, task }
        }
    }
}

/// Aborts a spawned task when dropped (with the check that owns it).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type Events = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, rtnetlink::sys::SocketAddr)>;

/// A netlink connection that hears every change of the neighbour table.
fn neighbour_events() -> std::io::Result<(Events, AbortOnDrop)> {
    let (connection, _, events) = rtnetlink::new_multicast_connection(&[MulticastGroup::Neigh])?;
    Ok((events, AbortOnDrop(tokio::spawn(connection))))
}

/// The next neighbour-table event; `None` once the connection is gone, never without one.
async fn next_event(events: &mut Option<Events>) -> Option<NetlinkMessage<RouteNetlinkMessage>> {
    match events {
        Some(rx) => rx.next().await.map(|(msg, _)| msg),
        None => std::future::pending().await,
    }
}

/// What one check found.
enum Outcome {
    Answers,
    NoAnswer,
    /// Only other MACs than the pinned one answered (the first of them).
    OtherMac(MacAddr),
}

async fn run(handle: Handle, target: Target, shared: Arc<Shared>) {
    let Target {
        wan,
        gateway,
        pinned,
        extra,
        address,
    } = target.clone();
    let mut reporter = Reporter::default();
    let mut macs = MacWatch::default();
    if !extra {
        shared.update(|s| s.gateway_pinned_answers = None);
    }
    // A permanent entry is a pin (routerd's own, put there by a reload while this watch
    // still runs), not the gateway answering: it is no change of the gateway's MAC.
    let note = |macs: &mut MacWatch, entry: &Neighbour| {
        let Some(mac) = entry.mac.filter(|_| entry.answers() && !entry.is_permanent()) else {
            return;
        };
        if let Some(change) = macs.seen(mac) {
            tracing::warn!("{}", mac_change_message(gateway, &wan, &change));
            if !extra {
                shared.gateway_mac_changed(change.old, change.new);
            }
        }
    };
    let (mut events, _connection) = match neighbour_events() {
        Ok((events, connection)) => (Some(events), Some(connection)),
        Err(e) => {
            tracing::warn!(
                "cannot follow the neighbour table ({e}): a change of the gateway's MAC shows at the next check only"
            );
            (None, None)
        }
    };
    loop {
        let outcome = match pinned {
            Some(pin) => ask_pinned(&target, pin).await,
            None => {
                let entry = check(&handle, &wan, address, gateway).await;
                if let Some(entry) = &entry {
                    note(&mut macs, entry);
                }
                if entry.as_ref().is_some_and(Neighbour::answers) {
                    Outcome::Answers
                } else {
                    Outcome::NoAnswer
                }
            }
        };
        let answers = matches!(outcome, Outcome::Answers);
        if pinned.is_some() && !extra {
            shared.update(|s| s.gateway_pinned_answers = Some(answers));
        }
        if !extra {
            shared.update(|s| s.gateway_check = Some((crate::dhcp::server::unix_now(), answers)));
        }
        match (reporter.after_check(answers, Instant::now()), outcome) {
            (Report::Answers, _) => tracing::info!("{}", answers_message(gateway, &wan, pinned)),
            (Report::NoAnswer, Outcome::OtherMac(mac)) => {
                let pin = pinned.unwrap_or(mac);
                tracing::warn!("{}", wrong_pin_message(gateway, &wan, pin, mac));
            }
            (Report::NoAnswer, _) if extra => {
                tracing::warn!("{}", extra_no_answer_message(gateway, &wan, address, &nic_mac(&wan)))
            }
            (Report::NoAnswer, _) => tracing::warn!("{}", no_answer_message(gateway, &wan, &nic_mac(&wan))),
            (Report::Nothing, _) => {}
        }
        let index = neighbours::nic_index(&wan);
        let next_check = tokio::time::sleep(if answers { RECHECK_EVERY } else { RETRY_EVERY });
        tokio::pin!(next_check);
        loop {
            tokio::select! {
                () = &mut next_check => break,
                event = next_event(&mut events) => match event {
                    Some(NetlinkMessage {
                        payload: NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(msg)),
                        ..
                    }) => {
                        if let Some(entry) = index.and_then(|i| Neighbour::from_message(&msg, i, gateway)) {
                            note(&mut macs, &entry);
                        }
                    }
                    Some(_) => {}
                    None => {
                        tracing::warn!("the neighbour table events stopped: a change of the gateway's MAC shows at the next check only");
                        events = None;
                    }
                },
            }
        }
    }
}

/// The check with a pinned MAC: asks the gateway by ARP itself, like the kernel
/// would (three requests a second apart), until it answers with the pinned MAC.
async fn ask_pinned(target: &Target, pin: MacAddr) -> Outcome {
    let asked = async {
        let our_mac: MacAddr = nic_mac(&target.wan)
            .parse()
            .map_err(|()| std::io::Error::other(format!("{} has no MAC", target.wan)))?;
        let index = neighbours::nic_index(&target.wan)
            .ok_or_else(|| std::io::Error::other(format!("{} has no interface index", target.wan)))?;
        let socket = ArpSocket::open(index)?;
        let request = arp::request(our_mac, target.address, target.gateway);
        let mut other = None;
        let deadline = Instant::now() + ANSWER_WAIT;
        let mut resend = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return Ok::<_, std::io::Error>(other.map_or(Outcome::NoAnswer, Outcome::OtherMac)),
                _ = resend.tick() => socket.send(&request)?,
                heard = socket.recv() => {
                    let arp = heard?;
                    if arp.op == arp::REPLY && arp.sender_ip == target.gateway && arp.from != our_mac {
                        if arp.sender_mac == pin {
                            return Ok(Outcome::Answers);
                        }
                        other.get_or_insert(arp.sender_mac);
                    }
                }
            }
        }
    };
    match asked.await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::debug!("gateway check: cannot ask {} on {}: {e}", target.gateway, target.wan);
            Outcome::NoAnswer
        }
    }
}

/// One check: makes the kernel ARP for the gateway and waits (bounded) for an answer.
/// Returns the gateway's neighbour entry as it was last seen.
async fn check(handle: &Handle, wan: &str, address: Ipv4Addr, gateway: Ipv4Addr) -> Option<Neighbour> {
    if let Err(e) = poke(wan, address, gateway) {
        tracing::debug!("gateway check: cannot send to {gateway} on {wan}: {e}");
    }
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let entry = neighbours::lookup(handle, wan, gateway).await;
        if entry.as_ref().is_some_and(Neighbour::answers) {
            return entry;
        }
        if Instant::now() >= deadline {
            let state = entry.as_ref().map_or("none".to_string(), Neighbour::state_name);
            tracing::debug!("gateway check: {gateway} on {wan} is {state}");
            return entry;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One datagram to the gateway's discard port (9) out of `wan`, from `address` (an
/// extra NIC's address selects its routing table): the kernel must know the gateway's
/// MAC to send it, so it asks with ARP.
fn poke(wan: &str, address: Ipv4Addr, gateway: Ipv4Addr) -> std::io::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    socket.bind_device(Some(wan.as_bytes()))?;
    socket.bind(&SocketAddrV4::new(address, 0).into())?;
    let socket: UdpSocket = socket.into();
    socket.send_to(b"routerd gateway check", SocketAddrV4::new(gateway, 9))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_at_once_then_once_a_minute_and_says_when_it_answers() {
        let mut r = Reporter::default();
        let t0 = Instant::now();
        assert_eq!(r.after_check(false, t0), Report::NoAnswer);
        assert_eq!(r.after_check(false, t0 + RETRY_EVERY), Report::Nothing);
        assert_eq!(r.after_check(false, t0 + REPEAT_WARNING), Report::NoAnswer);
        assert_eq!(r.after_check(true, t0 + REPEAT_WARNING + RETRY_EVERY), Report::Answers);
        assert_eq!(r.after_check(true, t0 + REPEAT_WARNING * 2), Report::Nothing);
        // Stops answering: warned again at once.
        assert_eq!(r.after_check(false, t0 + REPEAT_WARNING * 3), Report::NoAnswer);
    }

    #[test]
    fn first_check_that_answers_is_reported() {
        let mut r = Reporter::default();
        assert_eq!(r.after_check(true, Instant::now()), Report::Answers);
    }

    #[test]
    fn a_new_gateway_mac_is_a_change_and_so_is_the_way_back() {
        let (real, forged) = (MacAddr([0, 0, 0x5e, 0, 1, 1]), MacAddr([2, 0, 0, 0, 0x66, 6]));
        let mut w = MacWatch::default();
        assert_eq!(w.seen(real), None, "the first answer is no change");
        assert_eq!(w.seen(real), None);
        let spoofed = w.seen(forged);
        assert_eq!(
            spoofed,
            Some(MacChange {
                old: real,
                new: forged,
                first: real
            })
        );
        assert_eq!(w.seen(forged), None, "reported once");
        assert_eq!(
            w.seen(real),
            Some(MacChange {
                old: forged,
                new: real,
                first: real
            })
        );
        let gw = Ipv4Addr::new(203, 0, 113, 254);
        let m = mac_change_message(
            gw,
            "eth0",
            &spoofed.unwrap_or(MacChange {
                old: real,
                new: real,
                first: real,
            }),
        );
        assert!(m.starts_with(
            "the gateway 203.0.113.254's MAC on eth0 changed from 00:00:5e:00:01:01 to 02:00:00:00:66:06 (it first answered with 00:00:5e:00:01:01)"
        ), "{m}");
        assert!(m.contains("ARP spoofing"), "{m}");
        assert!(m.contains("`gateway_mac = \"00:00:5e:00:01:01\"` in [wan]"), "{m}");
    }

    #[test]
    fn a_wrong_pin_names_both_macs_and_what_to_do() {
        let m = wrong_pin_message(
            Ipv4Addr::new(203, 0, 113, 254),
            "eth0",
            MacAddr([0, 0, 0x5e, 0, 1, 1]),
            MacAddr([0, 0, 0x5e, 0, 1, 2]),
        );
        assert!(m.starts_with(
            "the gateway 203.0.113.254 answers ARP on eth0 with MAC 00:00:5e:00:01:02, but wan.gateway_mac pins 00:00:5e:00:01:01"
        ), "{m}");
        assert!(m.contains("correct gateway_mac"), "{m}");
    }

    #[test]
    fn the_message_names_the_likely_causes() {
        let m = no_answer_message(Ipv4Addr::new(203, 0, 113, 254), "eth0", "bc:24:11:2a:3b:4c");
        assert!(m.starts_with(
            "the gateway 203.0.113.254 does not answer ARP on eth0 (this router sends from MAC bc:24:11:2a:3b:4c)"
        ));
        assert!(m.contains("virtual MAC is not set on this VM's WAN NIC"));
        assert!(m.contains("the gateway is wrong"));
        assert!(m.contains("Checking again every 10 s"));
    }
}
