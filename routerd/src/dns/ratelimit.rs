//! Per-client token buckets: one guest's query flood is dropped at the door, before
//! it costs parsing, cache or upstream work (or the other guests' share of them).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Clients tracked at once; past that, the idle ones are forgotten first, and a new
/// client is refused while every tracked one is busy (a spoofed-source flood).
pub const MAX_CLIENTS: usize = 4096;

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct RateLimit {
    /// Queries a second per client; 0: no limit.
    rate: f64,
    burst: f64,
    clients: HashMap<IpAddr, Bucket>,
}

impl RateLimit {
    /// `rate` queries a second per client, in bursts of up to twice that.
    pub fn new(rate: u32) -> RateLimit {
        RateLimit {
            rate: f64::from(rate),
            burst: 2.0 * f64::from(rate),
            clients: HashMap::new(),
        }
    }

    /// Whether a query from `client` at `now` may be answered.
    pub fn allow(&mut self, client: IpAddr, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if !self.clients.contains_key(&client) && self.clients.len() >= MAX_CLIENTS {
            let (rate, burst) = (self.rate, self.burst);
            // A bucket that has filled up again holds nothing worth keeping.
            self.clients
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
            if self.clients.len() >= MAX_CLIENTS {
                return false;
            }
        }
        let bucket = self.clients.entry(client).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let refill = now.saturating_duration_since(bucket.last).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn tracked(&self) -> usize {
        self.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_client_gets_its_burst_then_its_rate_and_others_are_not_affected() {
        let mut rl = RateLimit::new(10);
        let t0 = Instant::now();
        let flood: IpAddr = "172.16.10.9".parse().expect("ip");
        let other: IpAddr = "172.16.10.10".parse().expect("ip");
        let allowed = (0..100).filter(|_| rl.allow(flood, t0)).count();
        assert_eq!(allowed, 20, "the burst is twice the rate");
        assert!(rl.allow(other, t0));
        let later = t0 + Duration::from_millis(500);
        let allowed = (0..100).filter(|_| rl.allow(flood, later)).count();
        assert_eq!(allowed, 5, "half a second at 10/s");
        assert!((0..1000).all(|_| RateLimit::new(0).allow(flood, t0)), "0: no limit");
    }

    #[test]
    fn the_table_is_bounded_and_idle_clients_make_room() {
        let mut rl = RateLimit::new(1);
        let t0 = Instant::now();
        for i in 0..MAX_CLIENTS as u32 {
            assert!(rl.allow(IpAddr::from(i.to_be_bytes()), t0));
        }
        let newcomer: IpAddr = "172.16.99.99".parse().expect("ip");
        assert!(!rl.allow(newcomer, t0), "every tracked client is busy");
        assert_eq!(rl.tracked(), MAX_CLIENTS);
        assert!(
            rl.allow(newcomer, t0 + Duration::from_secs(2)),
            "the idle ones were forgotten"
        );
        assert_eq!(rl.tracked(), 1);
    }
}
