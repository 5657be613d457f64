//! The answers from upstream, kept for their TTL (RFC 2308 for negative answers), in
//! a table of bounded size: when full, the oldest entry goes first.
//!
//! An answer is kept as its records in wire format (as they follow the question in a
//! reply), with where their TTLs are: a hit is copied into the reply with the TTLs
//! lowered, no hickory structures built; and an entry takes a few hundred bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::RData;

use super::wire::record_ttls;

/// No answer is kept longer than this, whatever its TTL.
const MAX_TTL: u32 = 86_400;

struct Entry {
    rcode: u8,
    answers: u16,
    authorities: u16,
    /// One allocation: the number of records (a byte), where each one's TTL is (a u16
    /// each, from the start of the records), then the answer and authority records,
    /// their names compressed against a question at the start of the message: the
    /// reply's question is the same name, so the pointers hold.
    wire: Box<[u8]>,
    /// Seconds since the cache began.
    stored: u32,
    expires: u32,
    /// Which insertion this is, so that a stale place in `order` is skipped.
    generation: u64,
}

/// What [`Cache::answer`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub rcode: u8,
    pub answers: u16,
    pub authorities: u16,
}

pub struct Cache {
    capacity: usize,
    began: Instant,
    /// By the question's [`super::wire::Key`].
    entries: HashMap<Arc<[u8]>, Entry>,
    /// Keys in insertion order (with their generation): eviction order.
    order: VecDeque<(Arc<[u8]>, u64)>,
    next_generation: u64,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            capacity,
            began: Instant::now(),
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn secs(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.began).as_secs()).unwrap_or(u32::MAX)
    }

    /// Appends the records kept for `key` to `out`, their TTLs lowered by the time they
    /// were kept; `None` (nothing written) when there is no live entry.
    pub fn answer(&mut self, key: &[u8], now: Instant, out: &mut Vec<u8>) -> Option<Hit> {
        let now = self.secs(now);
        let entry = self.entries.get(key)?;
        if entry.expires <= now {
            self.entries.remove(key);
            return None;
        }
        let age = now - entry.stored;
        let (ttls, records) = entry.wire.split_at(1 + 2 * usize::from(entry.wire[0]));
        let start = out.len();
        out.extend_from_slice(records);
        for at in ttls[1..].chunks_exact(2) {
            let at = start + usize::from(u16::from_be_bytes([at[0], at[1]]));
            let ttl = u32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
            out[at..at + 4].copy_from_slice(&ttl.saturating_sub(age).to_be_bytes());
        }
        Some(Hit {
            rcode: entry.rcode,
            answers: entry.answers,
            authorities: entry.authorities,
        })
    }

    /// Keeps `response` (a complete upstream answer to `query`, whose key is `key`) for
    /// as long as it may be kept; one that may not (an error, no TTL) is not.
    pub fn insert(&mut self, key: &[u8], query: &Query, response: &Message, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let Some(ttl) = cacheable_ttl(response) else { return };
        let Some(entry) = encode(query, response) else { return };
        let generation = self.next_generation;
        self.next_generation += 1;
        let stored = self.secs(now);
        let entry = Entry {
            stored,
            expires: stored.saturating_add(ttl),
            generation,
            ..entry
        };
        let key: Arc<[u8]> = key.into();
        self.entries.insert(key.clone(), entry);
        self.order.push_back((key, generation));
        while self.entries.len() > self.capacity {
            let Some((old, g)) = self.order.pop_front() else { break };
            if self.entries.get(&old).is_some_and(|e| e.generation == g) {
                self.entries.remove(&old);
            }
        }
        // Re-inserted keys leave stale places behind: drop them before they pile up.
        if self.order.len() > 2 * self.capacity + 16 {
            let entries = &self.entries;
            self.order
                .retain(|(k, g)| entries.get(k).is_some_and(|e| e.generation == *g));
        }
    }
}

/// The records of `response` in wire format after `query` (lowercased, as every
/// reply from the cache carries the same name), and where their TTLs are.
fn encode(query: &Query, response: &Message) -> Option<Entry> {
    let mut m = Message::new(
        0,
        hickory_proto::op::MessageType::Response,
        hickory_proto::op::OpCode::Query,
    );
    let mut q = query.clone();
    q.set_name(query.name().to_lowercase());
    m.add_query(q);
    m.answers = response.answers.clone();
    m.authorities = response.authorities.clone();
    let bytes = m.to_vec().ok()?;
    let (start, ttls) = record_ttls(&bytes, m.answers.len() + m.authorities.len())?;
    // More records than a byte counts: not kept (no real answer has that many).
    let mut wire = vec![u8::try_from(ttls.len()).ok()?];
    for t in ttls {
        wire.extend_from_slice(&u16::try_from(t - start).ok()?.to_be_bytes());
    }
    wire.extend_from_slice(&bytes[start..]);
    Some(Entry {
        rcode: response.metadata.response_code.low(),
        answers: u16::try_from(m.answers.len()).ok()?,
        authorities: u16::try_from(m.authorities.len()).ok()?,
        wire: wire.into(),
        stored: 0,
        expires: 0,
        generation: 0,
    })
}

/// How long `response` may be kept: the least TTL of its answers; for NXDOMAIN or no
/// data, the SOA's TTL capped by its minimum (RFC 2308 §5), and not at all without one.
fn cacheable_ttl(response: &Message) -> Option<u32> {
    if response.metadata.truncation {
        return None;
    }
    let ttl = match response.metadata.response_code {
        ResponseCode::NoError if !response.answers.is_empty() => response.answers.iter().map(|r| r.ttl).min(),
        ResponseCode::NoError | ResponseCode::NXDomain => response.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        }),
        _ => None,
    }?;
    (ttl > 0).then_some(ttl.min(MAX_TTL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, Record, RecordType};
    use std::time::Duration;

    fn name(n: &str) -> Name {
        Name::from_ascii(n).expect("name")
    }

    fn response(rcode: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        m.answers = answers;
        m.authorities = authorities;
        m
    }

    fn a(n: &str, ttl: u32) -> Record {
        Record::from_rdata(name(n), ttl, RData::A(A::new(198, 51, 100, 9)))
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let data = SOA::new(
            name("example."),
            name("hostmaster.example."),
            1,
            3600,
            600,
            86400,
            minimum,
        );
        Record::from_rdata(name("example."), ttl, RData::SOA(data))
    }

    /// A client's query for `n` (type A) in wire format.
    fn query_bytes(n: &str) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 77;
        m.add_query(Query::query(name(n), RecordType::A));
        m.to_vec().expect("encode")
    }

    fn insert(cache: &mut Cache, n: &str, response: &Message, now: Instant) {
        let bytes = query_bytes(n);
        let q = wire::parse(&bytes).expect("plain");
        cache.insert(q.key.as_bytes(), &Query::query(name(n), RecordType::A), response, now);
    }

    /// The reply from the cache to a query for `n` at `now`, as the client decodes it.
    fn get(cache: &mut Cache, n: &str, now: Instant) -> Option<Message> {
        let bytes = query_bytes(n);
        let q = wire::parse(&bytes).expect("plain");
        let mut out = Vec::new();
        q.start_reply(&mut out, false, 0);
        let hit = cache.answer(q.key.as_bytes(), now, &mut out)?;
        out[3] |= hit.rcode;
        q.finish_reply(&mut out, hit.answers, hit.authorities, usize::from(u16::MAX));
        Some(Message::from_vec(&out).expect("a valid reply"))
    }

    #[test]
    fn answers_are_kept_for_their_least_ttl_and_come_back_with_the_ttl_lowered() {
        let mut cache = Cache::new(10);
        let t0 = Instant::now();
        let r = response(
            ResponseCode::NoError,
            vec![a("x.example.", 60), a("x.example.", 30)],
            vec![],
        );
        insert(&mut cache, "X.example.", &r, t0);
        let got = get(&mut cache, "x.EXAMPLE.", t0 + Duration::from_secs(10)).expect("kept");
        assert_eq!(got.metadata.id, 77);
        assert_eq!(got.answers.iter().map(|r| r.ttl).collect::<Vec<_>>(), [50, 20]);
        assert_eq!(got.answers[0].name.to_string(), "x.EXAMPLE.", "the client's case");
        assert_eq!(got.answers[0].data.to_string(), "198.51.100.9");
        assert!(get(&mut cache, "x.example.", t0 + Duration::from_secs(30)).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn negative_answers_are_kept_by_the_soa_and_not_without_one_nor_errors() {
        let mut cache = Cache::new(10);
        let t0 = Instant::now();
        insert(
            &mut cache,
            "a.example.",
            &response(ResponseCode::NXDomain, vec![], vec![soa(300, 60)]),
            t0,
        );
        let got = get(&mut cache, "a.example.", t0 + Duration::from_secs(59)).expect("kept");
        assert_eq!(got.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(got.authorities.len(), 1);
        assert_eq!(got.authorities[0].ttl, 241);
        assert!(get(&mut cache, "a.example.", t0 + Duration::from_secs(60)).is_none());
        insert(
            &mut cache,
            "b.example.",
            &response(ResponseCode::NXDomain, vec![], vec![]),
            t0,
        );
        insert(
            &mut cache,
            "c.example.",
            &response(ResponseCode::ServFail, vec![], vec![]),
            t0,
        );
        insert(
            &mut cache,
            "d.example.",
            &response(ResponseCode::NoError, vec![a("d.example.", 0)], vec![]),
            t0,
        );
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_size_is_bounded_and_the_oldest_goes_first() {
        let mut cache = Cache::new(3);
        let t0 = Instant::now();
        for i in 0..100 {
            let n = format!("n{}.example.", i % 5);
            insert(
                &mut cache,
                &n,
                &response(ResponseCode::NoError, vec![a(&n, 300)], vec![]),
                t0,
            );
            assert!(cache.len() <= 3);
            assert!(cache.order.len() <= 2 * 3 + 16 + 1);
        }
        // The last three inserted were n2, n3, n4 (i = 97, 98, 99).
        assert!(get(&mut cache, "n4.example.", t0).is_some());
        assert!(get(&mut cache, "n2.example.", t0).is_some());
        assert!(get(&mut cache, "n1.example.", t0).is_none());
        let mut off = Cache::new(0);
        insert(
            &mut off,
            "x.",
            &response(ResponseCode::NoError, vec![a("x.", 300)], vec![]),
            t0,
        );
        assert_eq!(off.len(), 0);
    }
}
