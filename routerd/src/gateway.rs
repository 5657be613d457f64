//! Does the hoster's gateway answer? Checked once the WAN is configured, and again
//! and again: the usual reason a freshly deployed router cannot reach anything is
//! that the hoster's virtual MAC is not on the VM's WAN NIC (the hoster then drops
//! every frame, ARP included), or that the gateway address is wrong. Both look the
//! same from inside: the gateway never answers ARP. The console says so plainly.
//!
//! A check sends one UDP datagram to the gateway's discard port, which makes the
//! kernel resolve the gateway's MAC, then watches the kernel's neighbour entry for
//! the gateway (reachable: it answered; incomplete or failed: it did not).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use rtnetlink::Handle;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::net::neighbours::{gateway_state, nic_mac};

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

pub fn answers_message(gateway: Ipv4Addr, wan: &str) -> String {
    format!("the gateway {gateway} answers ARP on {wan}")
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

/// The running check for one WAN NIC and gateway.
pub struct Watch {
    pub wan: String,
    pub gateway: Ipv4Addr,
    task: JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps `current` if it already checks `gateway` on `wan`, else starts a new check.
pub fn ensure(current: Option<Watch>, handle: &Handle, wan: &str, gateway: Ipv4Addr) -> Watch {
    match current {
        Some(w) if w.wan == wan && w.gateway == gateway => w,
        _ => {
            let task = tokio::spawn(run(handle.clone(), wan.to_string(), gateway));
            Watch {
                wan: wan.to_string(),
                gateway,
                task,
            }
        }
    }
}

async fn run(handle: Handle, wan: String, gateway: Ipv4Addr) {
    let mut reporter = Reporter::default();
    loop {
        let answers = check(&handle, &wan, gateway).await;
        match reporter.after_check(answers, Instant::now()) {
            Report::Answers => tracing::info!("{}", answers_message(gateway, &wan)),
            Report::NoAnswer => {
                tracing::warn!("{}", no_answer_message(gateway, &wan, &nic_mac(&wan)));
            }
            Report::Nothing => {}
        }
        tokio::time::sleep(if answers { RECHECK_EVERY } else { RETRY_EVERY }).await;
    }
}

/// One check: makes the kernel ARP for the gateway and waits (bounded) for an answer.
async fn check(handle: &Handle, wan: &str, gateway: Ipv4Addr) -> bool {
    if let Err(e) = poke(wan, gateway) {
        tracing::debug!("gateway check: cannot send to {gateway} on {wan}: {e}");
    }
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        let (answers, state) = gateway_state(handle, wan, gateway).await;
        if answers {
            return true;
        }
        if Instant::now() >= deadline {
            tracing::debug!("gateway check: {gateway} on {wan} is {state}");
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One datagram to the gateway's discard port (9) out of `wan`: the kernel must know
/// the gateway's MAC to send it, so it asks with ARP.
fn poke(wan: &str, gateway: Ipv4Addr) -> std::io::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    socket.bind_device(Some(wan.as_bytes()))?;
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
