//! The requests read from the DHCP socket and not handled yet: a bounded queue that
//! drops the excess early, so that under overload (a flood of new clients) the server
//! keeps completing exchanges at its peak rate instead of answering every request
//! too late for its client.
//!
//! The server reads the socket empty at every turn and queues here, so the kernel's
//! buffer holds only what arrives during one batch; the age of what is answered is
//! bounded by this queue, not by a 4 MiB buffer at the socket.
//!
//! Policy:
//! - Requests that finish an exchange (REQUEST, and DECLINE, RELEASE, INFORM) come
//!   before DISCOVERs: the server already spent an offer (and maybe an ARP probe) on
//!   them, and dropping them would waste that work, while a dropped DISCOVER costs
//!   nothing but a retry.
//! - Over capacity, the oldest DISCOVER is dropped (head drop): its client has waited
//!   longest and is the likeliest to have retried (a retransmission is the newer copy)
//!   or given up, while the newest have the most patience left. A DISCOVER older than
//!   `MAX_DISCOVER_WAIT` is dropped rather than answered. Only when the queue holds no
//!   DISCOVER at all is the request just read dropped (tail drop among equals).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dhcproto::v4::{Message, MessageType};

/// Requests queued at most: at a few thousand handled a second, well under a second
/// of work, and under a megabyte of memory.
pub const CAPACITY: usize = 1024;
/// A DISCOVER that waited this long is dropped: with the ARP probe (300 ms) and the
/// REQUEST still to come, its OFFER would come when clients retransmit (2-4 s) or
/// benchmarks count the exchange lost (perfdhcp: 1 s).
pub const MAX_DISCOVER_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct Backlog {
    /// Requests that finish an exchange, in arrival order.
    finishing: VecDeque<Message>,
    /// DISCOVERs with the time they were read, oldest first.
    discovers: VecDeque<(Instant, Message)>,
    capacity: usize,
}

impl Backlog {
    pub fn new(capacity: usize) -> Backlog {
        Backlog {
            finishing: VecDeque::new(),
            discovers: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.finishing.len() + self.discovers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `msg`, read at `now`. Returns whether a request was dropped to stay
    /// within capacity (`msg` itself or an older DISCOVER).
    #[must_use]
    pub fn push(&mut self, msg: Message, now: Instant) -> bool {
        let full = self.len() >= self.capacity;
        if msg.opts().msg_type() == Some(MessageType::Discover) {
            self.discovers.push_back((now, msg));
        } else if full && self.discovers.is_empty() {
            return true; // nothing cheaper to drop than this one
        } else {
            self.finishing.push_back(msg);
        }
        if full {
            self.discovers.pop_front();
        }
        full
    }

    /// The next request to handle at `now`, and how many stale DISCOVERs were dropped
    /// on the way to it.
    pub fn pop(&mut self, now: Instant) -> (Option<Message>, usize) {
        if let Some(msg) = self.finishing.pop_front() {
            return (Some(msg), 0);
        }
        let mut stale = 0;
        while let Some((read, msg)) = self.discovers.pop_front() {
            if now.saturating_duration_since(read) <= MAX_DISCOVER_WAIT {
                return (Some(msg), stale);
            }
            stale += 1;
        }
        (None, stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::DhcpOption;
    use std::net::Ipv4Addr;

    fn msg(kind: MessageType, xid: u32) -> Message {
        let mut m = Message::new_with_id(
            xid,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &[2, 0, 0, 0, 0, 1],
        );
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m
    }

    fn drain(b: &mut Backlog, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| b.pop(now).0).map(|m| m.xid()).collect()
    }

    #[test]
    fn requests_that_finish_an_exchange_are_handled_before_new_discovers() {
        let t = Instant::now();
        let mut b = Backlog::new(8);
        for (kind, xid) in [
            (MessageType::Discover, 1),
            (MessageType::Request, 2),
            (MessageType::Discover, 3),
            (MessageType::Release, 4),
        ] {
            assert!(!b.push(msg(kind, xid), t));
        }
        assert_eq!(drain(&mut b, t), [2, 4, 1, 3]);
        assert!(b.is_empty());
    }

    #[test]
    fn over_capacity_the_oldest_discover_goes_first_and_requests_stay() {
        let t = Instant::now();
        let mut b = Backlog::new(3);
        assert!(!b.push(msg(MessageType::Discover, 1), t));
        assert!(!b.push(msg(MessageType::Discover, 2), t));
        assert!(!b.push(msg(MessageType::Request, 3), t));
        assert!(b.push(msg(MessageType::Discover, 4), t), "full: one dropped");
        assert!(b.push(msg(MessageType::Request, 5), t), "full: one dropped");
        assert_eq!(b.len(), 3);
        assert_eq!(drain(&mut b, t), [3, 5, 4]);
    }

    #[test]
    fn a_queue_full_of_requests_drops_the_newest_arrival() {
        let t = Instant::now();
        let mut b = Backlog::new(2);
        assert!(!b.push(msg(MessageType::Request, 1), t));
        assert!(!b.push(msg(MessageType::Request, 2), t));
        assert!(b.push(msg(MessageType::Request, 3), t));
        assert!(b.push(msg(MessageType::Discover, 4), t), "the DISCOVER itself goes");
        assert_eq!(drain(&mut b, t), [1, 2]);
    }

    #[test]
    fn discovers_that_waited_too_long_are_dropped_not_answered() {
        let t = Instant::now();
        let mut b = Backlog::new(8);
        assert!(!b.push(msg(MessageType::Discover, 1), t));
        assert!(!b.push(msg(MessageType::Discover, 2), t));
        let later = t + MAX_DISCOVER_WAIT / 2;
        assert!(!b.push(msg(MessageType::Discover, 3), later));
        assert!(!b.push(msg(MessageType::Request, 4), t));
        let now = t + MAX_DISCOVER_WAIT + Duration::from_millis(1);
        assert_eq!(
            b.pop(now),
            (Some(msg(MessageType::Request, 4)), 0),
            "requests do not age out"
        );
        assert_eq!(b.pop(now), (Some(msg(MessageType::Discover, 3)), 2));
        assert_eq!(b.pop(now), (None, 0));
    }
}
