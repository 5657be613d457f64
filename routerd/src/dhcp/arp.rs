//! ARP probes (RFC 5227 style: sender address 0.0.0.0) on the LAN, to learn whether
//! a host already uses an address before the server offers it. The frames and the
//! packet socket are the network code's (`net::arp`).

use std::io;
use std::net::Ipv4Addr;

use config::MacAddr;

use crate::net::arp::{self, Arp, ArpSocket};

pub struct Prober {
    socket: ArpSocket,
    mac: MacAddr,
}

impl Prober {
    pub fn open(ifindex: u32, mac: MacAddr) -> io::Result<Prober> {
        Ok(Prober {
            socket: ArpSocket::open(ifindex)?,
            mac,
        })
    }

    /// A broadcast "who has `target`?" from our MAC with sender IP 0.0.0.0.
    pub fn send_probe(&self, target: Ipv4Addr) -> io::Result<()> {
        self.socket.send(&arp::request(self.mac, Ipv4Addr::UNSPECIFIED, target))
    }

    /// Waits for the next ARP frame from another host and returns its sender IP and MAC.
    pub async fn recv_sender(&self) -> io::Result<(Ipv4Addr, MacAddr)> {
        loop {
            if let Some(found) = answer(&self.socket.recv().await?, self.mac) {
                return Ok(found);
            }
        }
    }
}

/// The sender of an ARP frame (request or reply) that is not ours and says who it is.
fn answer(frame: &Arp, our_mac: MacAddr) -> Option<(Ipv4Addr, MacAddr)> {
    (frame.from != our_mac && !frame.sender_ip.is_unspecified()).then_some((frame.sender_ip, frame.sender_mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_asks_with_sender_ip_zero_and_only_others_answer() {
        let mac = MacAddr([2, 0, 0, 0, 0, 0x20]);
        let target = Ipv4Addr::new(172, 16, 10, 7);
        let probe = Arp::parse(&arp::request(mac, Ipv4Addr::UNSPECIFIED, target)).expect("an ARP frame");
        assert_eq!(
            (probe.op, probe.sender_ip, probe.target_ip),
            (arp::REQUEST, Ipv4Addr::UNSPECIFIED, target)
        );
        assert_eq!(answer(&probe, mac), None, "our own probe is not an answer");
        let guest = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
        let reply = Arp {
            from: guest,
            op: arp::REPLY,
            sender_mac: guest,
            sender_ip: target,
            target_ip: target,
        };
        assert_eq!(answer(&reply, mac), Some((target, guest)));
        let other_probe = Arp {
            sender_ip: Ipv4Addr::UNSPECIFIED,
            ..reply
        };
        assert_eq!(answer(&other_probe, mac), None, "another host's probe claims nothing");
    }
}
