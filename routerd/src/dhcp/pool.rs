//! The lease table: which address each client has, had, or was offered, and which
//! address to give next. Pure: time comes in as `now` (unix seconds).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use config::MacAddr;

pub type Secs = u64;

/// How long an offered address stays held for the client it was offered to.
pub const OFFER_HOLD: Secs = 60;
/// How long a declined or conflicting address is kept out of the pool.
pub const QUARANTINE: Secs = 600;
/// The same, on the word of a MAC that holds a lease: a known guest, more likely
/// misconfigured (or answering for addresses it does not use) than squatting.
pub const QUARANTINE_KNOWN_GUEST: Secs = 60;
/// Addresses quarantined on one MAC's word at a time: one guest answering every ARP
/// probe (or declining every offer) must not empty the pool.
pub const QUARANTINE_PER_MAC: usize = 4;
/// At most 1/QUARANTINE_POOL_SHARE of the pool is quarantined at a time, whoever asks.
pub const QUARANTINE_POOL_SHARE: u32 = 4;

/// Why an address was not quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineRefused {
    /// This MAC already has `QUARANTINE_PER_MAC` addresses quarantined.
    MacLimit,
    /// A `1/QUARANTINE_POOL_SHARE` share of the pool is quarantined already.
    PoolShare,
}

impl std::fmt::Display for QuarantineRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuarantineRefused::MacLimit => write!(f, "this MAC has {QUARANTINE_PER_MAC} addresses quarantined already"),
            QuarantineRefused::PoolShare => write!(f, "1/{QUARANTINE_POOL_SHARE} of the pool is quarantined already"),
        }
    }
}

/// An address kept out of the pool until `until`, on the word of `by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quarantined {
    until: Secs,
    by: MacAddr,
}

/// Who a lease belongs to: the client identifier (option 61) when the client sends
/// one, else its hardware address (as type 1 + MAC, the usual client-id form).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(pub Vec<u8>);

/// The longest client identifier a lease is keyed by. Real ones are short (type 1 +
/// MAC: 7 bytes; RFC 4361's IAID + DUID: about 20), while option 61 may run to
/// kilobytes (RFC 3396 concatenation), all of it in every lease record.
pub const MAX_CLIENT_ID: usize = 64;

/// The longest host name a lease keeps: one DNS label, what a guest may send. A
/// reserved host's longer name from router.toml is given again from the config at
/// its next REQUEST.
pub const MAX_HOSTNAME: usize = 63;

impl ClientKey {
    /// The key of a client that sent identifier `id` from hardware address `mac`: the
    /// identifier, or for one longer than `MAX_CLIENT_ID` the hardware address. That
    /// key is as stable as the identifier across the client's requests (it comes from
    /// the same NIC), bounded in size, and cannot collide with another long identifier
    /// that shares a prefix, as a truncated one could.
    pub fn for_client(id: &[u8], mac: MacAddr) -> ClientKey {
        if id.len() > MAX_CLIENT_ID {
            ClientKey::from_mac(mac)
        } else {
            ClientKey(id.to_vec())
        }
    }

    pub fn from_mac(mac: MacAddr) -> ClientKey {
        let mut key = vec![1];
        key.extend_from_slice(&mac.0);
        ClientKey(key)
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<ClientKey> {
        if !s.len().is_multiple_of(2) {
            return None;
        }
        (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .map(ClientKey)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Offered, not yet requested: held until `expires`.
    Offered,
    /// Acknowledged: the client owns the address until `expires`.
    Bound,
    /// Released or expired: kept only as history, so the client gets it back.
    Released,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub addr: Ipv4Addr,
    pub client: ClientKey,
    pub mac: MacAddr,
    pub hostname: Option<String>,
    pub expires: Secs,
    pub state: LeaseState,
}

impl Lease {
    pub fn is_live(&self, now: Secs) -> bool {
        self.state != LeaseState::Released && self.expires > now
    }
}

/// The address chosen for a client, and whether it must be probed first because
/// nothing is known about it (no lease history, no earlier probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub addr: Ipv4Addr,
    pub probe: bool,
}

#[derive(Debug, Clone)]
pub struct Pool {
    first: u32,
    last: u32,
    reserved_by_mac: HashMap<MacAddr, Ipv4Addr>,
    reserved_addrs: HashMap<Ipv4Addr, MacAddr>,
    by_addr: HashMap<Ipv4Addr, Lease>,
    by_client: HashMap<ClientKey, Ipv4Addr>,
    quarantine: HashMap<Ipv4Addr, Quarantined>,
    probed_free: HashSet<Ipv4Addr>,
    /// Addresses being ARP-probed now: offered to nobody else meanwhile, so that
    /// clients arriving together get different addresses probed at the same time.
    probing: HashSet<Ipv4Addr>,
    /// Never-used addresses whose probe found them free: offered first (no new probe).
    ready: BTreeSet<Ipv4Addr>,
    /// Next never-used address to try; addresses below it were all used (or probed) once.
    cursor: u32,
}

impl Pool {
    pub fn new(first: Ipv4Addr, last: Ipv4Addr, reservations: &[(MacAddr, Ipv4Addr)]) -> Pool {
        Pool {
            first: u32::from(first),
            last: u32::from(last),
            reserved_by_mac: reservations.iter().copied().collect(),
            reserved_addrs: reservations.iter().map(|(m, a)| (*a, *m)).collect(),
            by_addr: HashMap::new(),
            by_client: HashMap::new(),
            quarantine: HashMap::new(),
            probed_free: HashSet::new(),
            probing: HashSet::new(),
            ready: BTreeSet::new(),
            cursor: u32::from(first),
        }
    }

    /// Addresses in the dynamic range.
    pub fn size(&self) -> u32 {
        self.last - self.first + 1
    }

    pub fn in_range(&self, addr: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(addr))
    }

    pub fn reservation(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.reserved_by_mac.get(&mac).copied()
    }

    pub fn lease(&self, addr: Ipv4Addr) -> Option<&Lease> {
        self.by_addr.get(&addr)
    }

    /// The address this client holds or last held.
    pub fn binding(&self, client: &ClientKey) -> Option<&Lease> {
        self.by_client
            .get(client)
            .and_then(|a| self.by_addr.get(a))
            .filter(|l| &l.client == client)
    }

    pub fn leases(&self) -> impl ExactSizeIterator<Item = &Lease> {
        self.by_addr.values()
    }

    /// Bound, unexpired leases.
    pub fn active_leases(&self, now: Secs) -> impl Iterator<Item = &Lease> {
        self.by_addr
            .values()
            .filter(move |l| l.state == LeaseState::Bound && l.expires > now)
    }

    pub fn active(&self, now: Secs) -> usize {
        self.active_leases(now).count()
    }

    fn is_quarantined(&self, addr: Ipv4Addr, now: Secs) -> bool {
        self.quarantine.get(&addr).is_some_and(|q| q.until > now)
    }

    /// Addresses quarantined now.
    pub fn quarantined(&self, now: Secs) -> usize {
        self.quarantine.values().filter(|q| q.until > now).count()
    }

    /// May `client` (with hardware address `mac`) have `addr` now?
    pub fn available_to(&self, addr: Ipv4Addr, client: &ClientKey, mac: MacAddr, now: Secs) -> bool {
        if let Some(owner) = self.reserved_addrs.get(&addr) {
            return *owner == mac;
        }
        if self.reservation(mac).is_some() {
            return false; // a reserved host gets its reservation only
        }
        if !self.in_range(addr) || self.is_quarantined(addr, now) {
            return false;
        }
        match self.by_addr.get(&addr) {
            None => true,
            Some(l) => &l.client == client || !l.is_live(now),
        }
    }

    /// Whether the table knows anything of `addr`: a lease record (of any state), or
    /// an ARP probe that found it free. Addresses it does not know are probed first.
    pub fn is_known(&self, addr: Ipv4Addr) -> bool {
        self.by_addr.contains_key(&addr) || self.probed_free.contains(&addr)
    }

    /// Picks the address to offer: the reservation; else the client's previous
    /// address if free; else the requested one if it has no other owner; else a
    /// never-used address (one already probed free first, none being probed); else
    /// the one that expired longest ago.
    pub fn choose(&self, client: &ClientKey, mac: MacAddr, requested: Option<Ipv4Addr>, now: Secs) -> Option<Choice> {
        if let Some(addr) = self.reservation(mac) {
            return Some(Choice { addr, probe: false });
        }
        let known = |addr: Ipv4Addr| self.is_known(addr);
        if let Some(prev) = self.binding(client) {
            if self.available_to(prev.addr, client, mac, now) {
                return Some(Choice {
                    addr: prev.addr,
                    probe: false,
                });
            }
        }
        if let Some(req) = requested {
            let unowned = self.by_addr.get(&req).is_none_or(|l| &l.client == client);
            if unowned && self.available_to(req, client, mac, now) {
                return Some(Choice {
                    addr: req,
                    probe: !known(req),
                });
            }
        }
        if let Some(addr) = self
            .ready
            .iter()
            .copied()
            .find(|a| self.available_to(*a, client, mac, now))
        {
            return Some(Choice { addr, probe: false });
        }
        let fresh = (self.cursor..=self.last)
            .chain(self.first..self.cursor)
            .map(Ipv4Addr::from)
            .find(|a| {
                !self.by_addr.contains_key(a)
                    && !self.reserved_addrs.contains_key(a)
                    && !self.is_quarantined(*a, now)
                    && !self.probing.contains(a)
            });
        if let Some(addr) = fresh {
            return Some(Choice {
                addr,
                probe: !known(addr),
            });
        }
        self.by_addr
            .values()
            .filter(|l| {
                // Records can lie outside a range that was narrowed since they were written.
                self.in_range(l.addr)
                    && !l.is_live(now)
                    && !self.reserved_addrs.contains_key(&l.addr)
                    && !self.is_quarantined(l.addr, now)
            })
            .min_by_key(|l| (l.expires, l.addr))
            .map(|l| Choice {
                addr: l.addr,
                probe: false,
            })
    }

    /// Moves the cursor past `addr` and the used or probing addresses after it.
    fn advance_cursor(&mut self, addr: Ipv4Addr) {
        if u32::from(addr) == self.cursor && self.cursor < self.last {
            self.cursor += 1;
            while self.cursor < self.last && {
                let next = Ipv4Addr::from(self.cursor);
                self.by_addr.contains_key(&next) || self.probing.contains(&next)
            } {
                self.cursor += 1;
            }
        }
    }

    fn put(&mut self, lease: Lease) {
        let addr = lease.addr;
        self.ready.remove(&addr);
        self.advance_cursor(addr);
        if let Some(old) = self.by_addr.get(&addr) {
            if old.client != lease.client && self.by_client.get(&old.client) == Some(&addr) {
                self.by_client.remove(&old.client);
            }
        }
        self.by_client.insert(lease.client.clone(), addr);
        self.by_addr.insert(addr, lease);
    }

    pub fn offer(&mut self, client: ClientKey, mac: MacAddr, addr: Ipv4Addr, now: Secs) {
        // An offer never shortens a live binding of the same client.
        if let Some(l) = self.by_addr.get(&addr) {
            if l.client == client && l.state == LeaseState::Bound && l.is_live(now) {
                return;
            }
        }
        self.put(Lease {
            addr,
            client,
            mac,
            hostname: None,
            expires: now + OFFER_HOLD,
            state: LeaseState::Offered,
        });
    }

    /// Binds `addr` to the client; returns the lease to persist.
    pub fn bind(
        &mut self,
        client: ClientKey,
        mac: MacAddr,
        addr: Ipv4Addr,
        hostname: Option<String>,
        expires: Secs,
    ) -> Lease {
        // One address per client: binding a new one gives the previous one back.
        if let Some(previous) = self.by_client.get(&client).copied().filter(|a| *a != addr) {
            if let Some(old) = self.by_addr.get_mut(&previous).filter(|l| l.client == client) {
                old.state = LeaseState::Released;
            }
        }
        let lease = Lease {
            addr,
            client,
            mac,
            hostname,
            expires,
            state: LeaseState::Bound,
        };
        self.put(lease.clone());
        lease
    }

    /// Puts a lease read from disk back (newest record wins).
    pub fn restore(&mut self, lease: Lease) {
        self.put(lease);
    }

    /// The client gave the address back; it stays its "previous address".
    pub fn release(&mut self, client: &ClientKey, addr: Ipv4Addr, now: Secs) -> Option<Lease> {
        let lease = self.by_addr.get_mut(&addr).filter(|l| &l.client == client)?;
        lease.state = LeaseState::Released;
        lease.expires = now;
        Some(lease.clone())
    }

    /// Someone else uses `addr`, says the host with MAC `by` (a DECLINE, or an answer
    /// to an ARP probe): keep the address out of the pool, within bounds (see
    /// `QUARANTINE_PER_MAC`, `QUARANTINE_POOL_SHARE`). Returns until when.
    pub fn quarantine(&mut self, addr: Ipv4Addr, by: MacAddr, now: Secs) -> Result<Secs, QuarantineRefused> {
        self.quarantine.retain(|_, q| q.until > now);
        if self.quarantine.values().filter(|q| q.by == by).count() >= QUARANTINE_PER_MAC {
            return Err(QuarantineRefused::MacLimit);
        }
        let share = (self.size() / QUARANTINE_POOL_SHARE).max(1);
        if self.quarantine.len() >= usize::try_from(share).unwrap_or(usize::MAX) {
            return Err(QuarantineRefused::PoolShare);
        }
        self.forget(addr);
        let known_guest = self.active_leases(now).any(|l| l.mac == by);
        let until = now
            + if known_guest {
                QUARANTINE_KNOWN_GUEST
            } else {
                QUARANTINE
            };
        self.quarantine.insert(addr, Quarantined { until, by });
        Ok(until)
    }

    /// Drops all that is known of `addr` (lease, probe): it is probed again before it is
    /// offered.
    pub fn forget(&mut self, addr: Ipv4Addr) {
        if let Some(l) = self.by_addr.remove(&addr) {
            if self.by_client.get(&l.client) == Some(&addr) {
                self.by_client.remove(&l.client);
            }
        }
        self.probed_free.remove(&addr);
        self.probing.remove(&addr);
        self.ready.remove(&addr);
    }

    /// An ARP probe of `addr` started: hold it until `mark_probed_free` or `quarantine`.
    pub fn probe_started(&mut self, addr: Ipv4Addr) {
        self.probing.insert(addr);
        self.advance_cursor(addr);
    }

    pub fn mark_probed_free(&mut self, addr: Ipv4Addr) {
        self.probing.remove(&addr);
        self.probed_free.insert(addr);
        if !self.by_addr.contains_key(&addr) {
            self.ready.insert(addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Secs = 1_000_000;
    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(172, 16, 10, last)
    }
    fn mac(n: u8) -> MacAddr {
        MacAddr([0x52, 0x54, 0, 0, 0, n])
    }
    fn key(n: u8) -> ClientKey {
        ClientKey::from_mac(mac(n))
    }
    fn pool() -> Pool {
        Pool::new(ip(100), ip(103), &[(mac(9), ip(101))])
    }

    #[test]
    fn fresh_addresses_in_order_skipping_reservations_and_need_a_probe() {
        let mut p = pool();
        assert_eq!(
            p.choose(&key(1), mac(1), None, NOW),
            Some(Choice {
                addr: ip(100),
                probe: true
            })
        );
        p.offer(key(1), mac(1), ip(100), NOW);
        assert_eq!(
            p.choose(&key(2), mac(2), None, NOW),
            Some(Choice {
                addr: ip(102),
                probe: true
            })
        );
    }

    #[test]
    fn reservation_always_wins_and_is_never_given_to_others() {
        let mut p = pool();
        assert_eq!(
            p.choose(&key(9), mac(9), Some(ip(103)), NOW),
            Some(Choice {
                addr: ip(101),
                probe: false
            })
        );
        assert!(!p.available_to(ip(101), &key(1), mac(1), NOW));
        assert!(
            !p.available_to(ip(103), &key(9), mac(9), NOW),
            "a reserved host gets only its reservation"
        );
        for n in 1..=3 {
            let c = p.choose(&key(n), mac(n), Some(ip(101)), NOW).map(|c| c.addr);
            assert_ne!(c, Some(ip(101)));
            if let Some(a) = c {
                p.bind(key(n), mac(n), a, None, NOW + 100);
            }
        }
    }

    #[test]
    fn returning_client_gets_its_address_back_after_release_and_expiry() {
        let mut p = pool();
        p.bind(key(1), mac(1), ip(102), None, NOW + 10);
        p.bind(key(2), mac(2), ip(100), None, NOW + 10);
        // expired
        assert_eq!(
            p.choose(&key(1), mac(1), None, NOW + 1000).map(|c| c.addr),
            Some(ip(102))
        );
        // released
        p.release(&key(2), ip(100), NOW);
        assert_eq!(p.choose(&key(2), mac(2), None, NOW + 1).map(|c| c.addr), Some(ip(100)));
    }

    #[test]
    fn a_live_lease_is_never_offered_to_another_client() {
        let mut p = pool();
        p.bind(key(1), mac(1), ip(100), None, NOW + 100);
        assert!(!p.available_to(ip(100), &key(2), mac(2), NOW));
        let c = p.choose(&key(2), mac(2), Some(ip(100)), NOW).map(|c| c.addr);
        assert_eq!(c, Some(ip(102)));
        // an outstanding offer holds the address too
        p.offer(key(2), mac(2), ip(102), NOW);
        assert!(!p.available_to(ip(102), &key(3), mac(3), NOW));
        assert!(
            p.available_to(ip(102), &key(3), mac(3), NOW + OFFER_HOLD + 1),
            "offers time out"
        );
    }

    #[test]
    fn exhausted_pool_offers_nothing_then_reuses_the_oldest_expired() {
        let mut p = pool();
        p.bind(key(1), mac(1), ip(100), None, NOW + 50);
        p.bind(key(2), mac(2), ip(102), None, NOW + 10);
        p.bind(key(3), mac(3), ip(103), None, NOW + 100);
        assert_eq!(p.choose(&key(4), mac(4), None, NOW), None, "all taken, .101 reserved");
        assert_eq!(
            p.choose(&key(4), mac(4), None, NOW + 60).map(|c| c.addr),
            Some(ip(102)),
            "oldest expired first"
        );
    }

    #[test]
    fn declined_address_is_quarantined() {
        let mut p = pool();
        p.bind(key(1), mac(1), ip(100), None, NOW + 100);
        assert_eq!(p.quarantine(ip(100), mac(1), NOW), Ok(NOW + QUARANTINE));
        assert!(p.binding(&key(1)).is_none());
        assert_eq!(
            p.choose(&key(1), mac(1), Some(ip(100)), NOW).map(|c| c.addr),
            Some(ip(102))
        );
        assert!(!p.available_to(ip(100), &key(5), mac(5), NOW + QUARANTINE - 1));
        assert!(p.available_to(ip(100), &key(5), mac(5), NOW + QUARANTINE + 1));
    }

    #[test]
    fn one_mac_answering_every_probe_quarantines_a_few_addresses_only() {
        let mut p = Pool::new(ip(1), ip(200), &[]);
        let attacker = mac(66);
        let quarantined = (1..=200)
            .filter(|n| p.quarantine(ip(*n), attacker, NOW).is_ok())
            .count();
        assert_eq!(quarantined, QUARANTINE_PER_MAC);
        assert_eq!(p.quarantined(NOW), QUARANTINE_PER_MAC);
        assert_eq!(p.quarantine(ip(100), attacker, NOW), Err(QuarantineRefused::MacLimit));
        // Everyone else still gets addresses, the next free one first.
        let c = p.choose(&key(1), mac(1), None, NOW).map(|c| c.addr);
        assert_eq!(c, Some(ip(5)));
        // Once the first ones expire, the same MAC may have others quarantined.
        assert!(p.quarantine(ip(100), attacker, NOW + QUARANTINE + 1).is_ok());
    }

    #[test]
    fn at_most_a_share_of_the_pool_is_quarantined() {
        let mut p = Pool::new(ip(1), ip(40), &[]); // 40 addresses: at most 10 quarantined
        let limit = usize::try_from(40 / QUARANTINE_POOL_SHARE).unwrap_or(0);
        let results: Vec<_> = (1..=40).map(|n| p.quarantine(ip(n), mac(n), NOW)).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), limit);
        assert_eq!(results.last(), Some(&Err(QuarantineRefused::PoolShare)));
        assert_eq!(p.quarantined(NOW), limit);
        assert_eq!(p.quarantined(NOW + QUARANTINE), 0, "and they all expire");
        // A tiny pool may still quarantine one address.
        let mut tiny = Pool::new(ip(1), ip(2), &[]);
        assert!(tiny.quarantine(ip(1), mac(1), NOW).is_ok());
        assert_eq!(tiny.quarantine(ip(2), mac(2), NOW), Err(QuarantineRefused::PoolShare));
    }

    #[test]
    fn an_address_answered_by_a_guest_with_a_lease_comes_back_sooner() {
        let mut p = Pool::new(ip(100), ip(140), &[]);
        p.bind(key(1), mac(1), ip(100), None, NOW + 3600);
        // The guest at .100 also answers for .102 (two addresses configured, say).
        assert_eq!(p.quarantine(ip(102), mac(1), NOW), Ok(NOW + QUARANTINE_KNOWN_GUEST));
        assert!(!p.available_to(ip(102), &key(2), mac(2), NOW + QUARANTINE_KNOWN_GUEST - 1));
        assert!(p.available_to(ip(102), &key(2), mac(2), NOW + QUARANTINE_KNOWN_GUEST));
        // An unknown host's answer keeps the address out for the full time.
        assert_eq!(p.quarantine(ip(103), mac(7), NOW), Ok(NOW + QUARANTINE));
        assert!(!p.available_to(ip(103), &key(2), mac(2), NOW + QUARANTINE - 1));
    }

    #[test]
    fn probed_address_needs_no_second_probe() {
        let mut p = pool();
        p.mark_probed_free(ip(100));
        assert_eq!(
            p.choose(&key(1), mac(1), None, NOW),
            Some(Choice {
                addr: ip(100),
                probe: false
            })
        );
    }

    #[test]
    fn binding_a_new_address_gives_the_previous_one_back() {
        let mut p = pool();
        p.bind(key(1), mac(1), ip(100), None, NOW + 100);
        p.bind(key(1), mac(1), ip(103), None, NOW + 100);
        assert_eq!(p.active(NOW), 1, "one client, one address");
        assert!(p.available_to(ip(100), &key(2), mac(2), NOW));
    }

    #[test]
    fn expired_records_outside_a_narrowed_range_are_never_offered() {
        let mut wide = Pool::new(ip(100), ip(110), &[]);
        wide.bind(key(1), mac(1), ip(110), None, NOW + 10);
        let mut narrow = Pool::new(ip(100), ip(100), &[]);
        for lease in wide.leases().cloned().collect::<Vec<_>>() {
            narrow.restore(lease);
        }
        narrow.bind(key(2), mac(2), ip(100), None, NOW + 1000);
        assert_eq!(
            narrow.choose(&key(3), mac(3), None, NOW + 100),
            None,
            "exhausted, not .110"
        );
    }

    #[test]
    fn client_key_hex_round_trips() {
        let k = ClientKey(vec![1, 0xab, 0, 0xff]);
        assert_eq!(ClientKey::from_hex(&k.hex()), Some(k));
        assert_eq!(ClientKey::from_hex("abc"), None);
        assert_eq!(ClientKey::from_hex("zz"), None);
    }
}
