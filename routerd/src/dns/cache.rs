//! The answers from upstream, kept for their TTL (RFC 2308 for negative answers), in
//! a table of bounded size: when full, the oldest entry goes first.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// No answer is kept longer than this, whatever its TTL.
const MAX_TTL: u32 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub name: Name,
    pub qtype: RecordType,
    pub class: DNSClass,
}

impl Key {
    /// Names compare case-insensitively: the key is the lowercased name.
    pub fn new(name: &Name, qtype: RecordType, class: DNSClass) -> Key {
        Key {
            name: name.to_lowercase(),
            qtype,
            class,
        }
    }
}

/// A kept answer: the sections of the upstream's response, with their TTLs as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
}

struct Entry {
    answer: Answer,
    stored: Instant,
    expires: Instant,
    /// Which insertion this is, so that a stale place in `order` is skipped.
    generation: u64,
}

pub struct Cache {
    capacity: usize,
    entries: HashMap<Key, Entry>,
    /// Keys in insertion order (with their generation): eviction order.
    order: VecDeque<(Key, u64)>,
    next_generation: u64,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache {
            capacity,
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

    /// The answer for `key` at `now`, its TTLs lowered by the time it was kept.
    pub fn get(&mut self, key: &Key, now: Instant) -> Option<Answer> {
        let entry = self.entries.get(key)?;
        if entry.expires <= now {
            self.entries.remove(key);
            return None;
        }
        let age = u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        let mut answer = entry.answer.clone();
        for r in answer.answers.iter_mut().chain(answer.authorities.iter_mut()) {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(answer)
    }

    /// Keeps `response` (a complete upstream answer to `key`) for as long as it may be
    /// kept; one that may not (an error, no TTL) is not.
    pub fn insert(&mut self, key: Key, response: &Message, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let Some(ttl) = cacheable_ttl(response) else { return };
        let generation = self.next_generation;
        self.next_generation += 1;
        let answer = Answer {
            rcode: response.metadata.response_code,
            answers: response.answers.clone(),
            authorities: response.authorities.clone(),
        };
        let entry = Entry {
            answer,
            stored: now,
            expires: now + Duration::from_secs(u64::from(ttl)),
            generation,
        };
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
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, SOA};

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

    fn key(n: &str) -> Key {
        Key::new(&name(n), RecordType::A, DNSClass::IN)
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
        cache.insert(key("X.example."), &r, t0);
        let got = cache
            .get(&key("x.EXAMPLE."), t0 + Duration::from_secs(10))
            .expect("kept");
        assert_eq!(got.answers.iter().map(|r| r.ttl).collect::<Vec<_>>(), [50, 20]);
        assert!(cache.get(&key("x.example."), t0 + Duration::from_secs(30)).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn negative_answers_are_kept_by_the_soa_and_not_without_one_nor_errors() {
        let mut cache = Cache::new(10);
        let t0 = Instant::now();
        cache.insert(
            key("a.example."),
            &response(ResponseCode::NXDomain, vec![], vec![soa(300, 60)]),
            t0,
        );
        let got = cache
            .get(&key("a.example."), t0 + Duration::from_secs(59))
            .expect("kept");
        assert_eq!(got.rcode, ResponseCode::NXDomain);
        assert!(cache.get(&key("a.example."), t0 + Duration::from_secs(60)).is_none());
        cache.insert(key("b.example."), &response(ResponseCode::NXDomain, vec![], vec![]), t0);
        cache.insert(key("c.example."), &response(ResponseCode::ServFail, vec![], vec![]), t0);
        cache.insert(
            key("d.example."),
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
            cache.insert(key(&n), &response(ResponseCode::NoError, vec![a(&n, 300)], vec![]), t0);
            assert!(cache.len() <= 3);
            assert!(cache.order.len() <= 2 * 3 + 16 + 1);
        }
        // The last three inserted were n2, n3, n4 (i = 97, 98, 99).
        assert!(cache.get(&key("n4.example."), t0).is_some());
        assert!(cache.get(&key("n2.example."), t0).is_some());
        assert!(cache.get(&key("n1.example."), t0).is_none());
        let mut off = Cache::new(0);
        off.insert(
            key("x."),
            &response(ResponseCode::NoError, vec![a("x.", 300)], vec![]),
            t0,
        );
        assert_eq!(off.len(), 0);
    }
}
