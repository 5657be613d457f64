//! The hot path of the resolver on the wire format itself: a plain query (one
//! question, at most an EDNS OPT record) is read without building a hickory
//! `Message`, and the answers to local names and cache hits are written straight into
//! the reply. Anything else takes the hickory path in `server`.

use std::net::IpAddr;

use super::upstream::UDP_PAYLOAD;

/// The UDP size every client may receive (RFC 1035).
pub const PLAIN_UDP: usize = 512;
const HEADER: usize = 12;
/// The longest name in wire format (RFC 1035 3.1).
const MAX_NAME: usize = 255;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;
/// A pointer to the question's name, which is always at the end of the header.
const NAME_OF_QUESTION: [u8; 2] = [0xc0, HEADER as u8];

/// The cache's and the zone's key for a question: the name in wire format lowercased,
/// then the type and the class.
#[derive(Clone, Copy)]
pub struct Key {
    bytes: [u8; MAX_NAME + 4],
    len: usize,
}

impl Key {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The name part (what the zone is keyed by).
    pub fn name(&self) -> &[u8] {
        &self.bytes[..self.len - 4]
    }
}

/// A plain query, as read from its wire format.
pub struct Question<'a> {
    pub id: u16,
    recursion_desired: bool,
    checking_disabled: bool,
    /// The question section as the client sent it (its case kept, as it expects).
    pub section: &'a [u8],
    pub key: Key,
    pub qtype: u16,
    pub qclass: u16,
    /// The client's EDNS UDP size, when it sent an OPT record.
    pub edns: Option<u16>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// `bytes` as a plain query; `None` for anything else (an answer, another opcode, not
/// one question, other records, compression in the question, junk after it), which
/// the hickory path reads and answers as it should.
pub fn parse(bytes: &[u8]) -> Option<Question<'_>> {
    let id = u16_at(bytes, 0)?;
    let (flags1, flags2) = (*bytes.get(2)?, *bytes.get(3)?);
    // QR = 0, opcode QUERY, not truncated.
    if flags1 & 0xfa != 0 {
        return None;
    }
    let counts = [
        u16_at(bytes, 4)?,
        u16_at(bytes, 6)?,
        u16_at(bytes, 8)?,
        u16_at(bytes, 10)?,
    ];
    if counts[0] != 1 || counts[1] != 0 || counts[2] != 0 || counts[3] > 1 {
        return None;
    }
    let mut key = Key {
        bytes: [0; MAX_NAME + 4],
        len: 0,
    };
    let mut at = HEADER;
    loop {
        let len = usize::from(*bytes.get(at)?);
        // 0xc0 and 0x40: a pointer or an obsolete label type.
        if len > 63 || key.len + len + 1 > MAX_NAME {
            return None;
        }
        let label = bytes.get(at + 1..at + 1 + len)?;
        key.bytes[key.len] = len as u8;
        for (k, b) in key.bytes[key.len + 1..key.len + 1 + len].iter_mut().zip(label) {
            *k = b.to_ascii_lowercase();
        }
        key.len += len + 1;
        at += len + 1;
        if len == 0 {
            break;
        }
    }
    let qtype = u16_at(bytes, at)?;
    let qclass = u16_at(bytes, at + 2)?;
    key.bytes[key.len..key.len + 2].copy_from_slice(&qtype.to_be_bytes());
    key.bytes[key.len + 2..key.len + 4].copy_from_slice(&qclass.to_be_bytes());
    key.len += 4;
    let section = &bytes[HEADER..at + 4];
    at += 4;
    let mut edns = None;
    if counts[3] == 1 {
        // The OPT record: the root name, version 0; its options are not used.
        let opt = bytes.get(at..at + 11)?;
        if opt[0] != 0 || u16_at(opt, 1)? != TYPE_OPT || opt[6] != 0 {
            return None;
        }
        edns = Some(u16_at(opt, 3)?);
        at += 11 + usize::from(u16_at(opt, 9)?);
    }
    if at != bytes.len() {
        return None;
    }
    Some(Question {
        id,
        recursion_desired: flags1 & 1 != 0,
        checking_disabled: flags2 & 0x10 != 0,
        section,
        key,
        qtype,
        qclass,
        edns,
    })
}

impl Question<'_> {
    /// The most the reply may take over UDP: what the client's EDNS says (within
    /// ours), else 512.
    pub fn udp_limit(&self) -> usize {
        self.edns
            .map_or(PLAIN_UDP, |p| usize::from(p.clamp(PLAIN_UDP as u16, UDP_PAYLOAD)))
    }

    /// Starts the reply in `out`: the header (counts zero) and the question.
    pub fn start_reply(&self, out: &mut Vec<u8>, authoritative: bool, rcode: u8) {
        out.clear();
        out.extend_from_slice(&self.id.to_be_bytes());
        // QR, AA, RD as asked; RA, CD as asked, the rcode.
        out.push(0x80 | (u8::from(authoritative) << 2) | u8::from(self.recursion_desired));
        out.push(0x80 | (u8::from(self.checking_disabled) << 4) | (rcode & 0x0f));
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(self.section);
    }

    /// Ends the reply: the counts of its answer and authority records, the OPT record
    /// when the query had one, and at most `limit` bytes (else the truncated form,
    /// without records: the client asks again over TCP).
    pub fn finish_reply(&self, out: &mut Vec<u8>, answers: u16, authorities: u16, limit: usize) {
        out[6..8].copy_from_slice(&answers.to_be_bytes());
        out[8..10].copy_from_slice(&authorities.to_be_bytes());
        let opt_len = if self.edns.is_some() { 11 } else { 0 };
        if out.len() + opt_len > limit {
            out.truncate(HEADER + self.section.len());
            out[2] |= 0x02;
            out[6..10].fill(0);
        }
        if self.edns.is_some() {
            out[10..12].copy_from_slice(&1u16.to_be_bytes());
            let payload = u16::try_from(self.udp_limit()).unwrap_or(UDP_PAYLOAD);
            out.push(0);
            out.extend_from_slice(&TYPE_OPT.to_be_bytes());
            out.extend_from_slice(&payload.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
    }

    /// The authoritative reply with the addresses of a local name that fit the
    /// question's type (none: the name exists, not with that type); TTL 0.
    pub fn local_reply(&self, out: &mut Vec<u8>, addrs: impl Iterator<Item = IpAddr>, limit: usize) {
        self.start_reply(out, true, 0);
        let mut count = 0u16;
        if self.qclass == CLASS_IN {
            for addr in addrs {
                let (rtype, data): (u16, &[u8]) = match &addr {
                    IpAddr::V4(a) if matches!(self.qtype, TYPE_A | TYPE_ANY) => (TYPE_A, &a.octets()[..]),
                    IpAddr::V6(a) if matches!(self.qtype, TYPE_AAAA | TYPE_ANY) => (TYPE_AAAA, &a.octets()[..]),
                    _ => continue,
                };
                out.extend_from_slice(&NAME_OF_QUESTION);
                out.extend_from_slice(&rtype.to_be_bytes());
                out.extend_from_slice(&CLASS_IN.to_be_bytes());
                out.extend_from_slice(&super::zone::LOCAL_TTL.to_be_bytes());
                out.extend_from_slice(&(data.len() as u16).to_be_bytes());
                out.extend_from_slice(data);
                count += 1;
            }
        }
        self.finish_reply(out, count, 0, limit);
    }
}

/// Skips the name at `at` in `msg` (labels, ending in the root or a pointer): where
/// what follows it starts.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l if l <= 63 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// In an encoded message whose question is the first thing after the header: where
/// the records start, and where the TTL of each of the next `records` records is.
pub fn record_ttls(msg: &[u8], records: usize) -> Option<(usize, Vec<usize>)> {
    let start = skip_name(msg, HEADER)? + 4;
    let mut at = start;
    let mut ttls = Vec::with_capacity(records);
    for _ in 0..records {
        at = skip_name(msg, at)? + 4;
        ttls.push(at);
        let rdlen = usize::from(u16_at(msg, at + 4)?);
        at += 6 + rdlen;
    }
    (at <= msg.len()).then_some((start, ttls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::{Name, RecordType};

    fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        if let Some(p) = edns {
            let mut e = Edns::new();
            e.set_max_payload(p);
            m.set_edns(e);
        }
        m.to_vec().expect("encode")
    }

    #[test]
    fn a_plain_query_is_read_and_the_reply_decodes_with_its_case_and_edns() {
        let bytes = query("Web.LAN.", RecordType::AAAA, Some(4096));
        let q = parse(&bytes).expect("plain");
        assert_eq!(q.key.name(), b"\x03web\x03lan\x00");
        assert_eq!((q.qtype, q.qclass, q.edns, q.udp_limit()), (28, 1, Some(4096), 1232));
        let mut out = Vec::new();
        let addrs = ["172.16.10.100", "2001:db8:2::ff:fe00:1"].map(|a| a.parse::<IpAddr>().expect("ip"));
        q.local_reply(&mut out, addrs.into_iter(), q.udp_limit());
        let m = Message::from_vec(&out).expect("a valid reply");
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.authoritative && m.metadata.recursion_available && m.metadata.recursion_desired);
        assert_eq!(m.queries[0].name().to_string(), "Web.LAN.");
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].name.to_string(), "Web.LAN.");
        assert_eq!(m.answers[0].data.to_string(), "2001:db8:2::ff:fe00:1");
        assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(1232));
    }

    #[test]
    fn what_is_not_a_plain_query_is_left_to_hickory() {
        let plain = query("web.lan.", RecordType::A, None);
        assert!(parse(&plain).is_some());
        let mut answer = plain.clone();
        answer[2] |= 0x80;
        assert!(parse(&answer).is_none(), "an answer");
        let mut two = plain.clone();
        two[5] = 2;
        assert!(parse(&two).is_none(), "two questions");
        let mut junk = plain.clone();
        junk.push(0);
        assert!(parse(&junk).is_none(), "junk after the question");
        assert!(parse(&plain[..plain.len() - 1]).is_none(), "cut short");
        assert!(parse(b"junk").is_none());
    }

    #[test]
    fn a_reply_over_the_limit_is_truncated_and_empty() {
        let bytes = query("nas.lan.", RecordType::A, None);
        let q = parse(&bytes).expect("plain");
        let mut out = Vec::new();
        let addrs = (0..60u8).map(|i| IpAddr::from([172, 16, 10, i]));
        q.local_reply(&mut out, addrs, PLAIN_UDP);
        assert!(out.len() <= PLAIN_UDP);
        let m = Message::from_vec(&out).expect("decode");
        assert!(m.metadata.truncation && m.answers.is_empty());
    }
}
