//! The name a connection asks for, from its first bytes: the server name (SNI) of a TLS
//! ClientHello, or the Host header of a plain HTTP request. Pure and bounded: the
//! caller buffers at most [`MAX_BUFFERED`] bytes and calls [`sniff`] after each read.

/// The most a connection's first bytes are buffered before giving up on a name. A
/// ClientHello of 16 KiB (post-quantum key shares, many extensions) fits, in records of
/// any size down to hostile one-byte records of a short hello.
pub const MAX_BUFFERED: usize = 20 * 1024;
/// The largest ClientHello accepted (its handshake length).
const MAX_HELLO: usize = 16 * 1024;
/// TLS's largest plaintext record.
const MAX_RECORD: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff {
    /// Not enough bytes yet to tell.
    NeedMore,
    /// The name asked for (lowercase, no trailing dot), or `None`: a complete TLS
    /// ClientHello without SNI, an HTTP request without Host, something else than TLS
    /// or HTTP, or malformed input.
    Done(Option<String>),
}

/// Looks at the bytes a connection sent so far. Once `buf` holds [`MAX_BUFFERED`]
/// bytes and this still says `NeedMore`, the caller treats it as `Done(None)`.
pub fn sniff(buf: &[u8]) -> Sniff {
    match buf.first() {
        None => Sniff::NeedMore,
        Some(0x16) => tls(buf),
        // An HTTP method: GET, POST, HEAD, PUT, OPTIONS...
        Some(b) if b.is_ascii_uppercase() => http(buf),
        Some(_) => Sniff::Done(None),
    }
}

/// The ClientHello's handshake message, reassembled from as many records as it spans.
fn tls(buf: &[u8]) -> Sniff {
    let mut handshake: Vec<u8> = Vec::new();
    let mut rest = buf;
    loop {
        if handshake.len() >= 4 {
            // msg_type 1 (client_hello), then a 24-bit length.
            if handshake[0] != 1 {
                return Sniff::Done(None);
            }
            let len = usize::from(handshake[1]) << 16 | usize::from(handshake[2]) << 8 | usize::from(handshake[3]);
            if len > MAX_HELLO {
                return Sniff::Done(None);
            }
            if let Some(body) = handshake.get(4..4 + len) {
                return Sniff::Done(client_hello_server_name(body));
            }
        }
        let Some(header) = rest.get(..5) else {
            return Sniff::NeedMore;
        };
        // Handshake records of TLS 1.0-1.3 (the record version of a first hello is
        // 3.1 or, from some clients, 3.0).
        let record_len = usize::from(header[3]) << 8 | usize::from(header[4]);
        if header[0] != 0x16 || header[1] != 3 || record_len == 0 || record_len > MAX_RECORD {
            return Sniff::Done(None);
        }
        let Some(fragment) = rest.get(5..5 + record_len) else {
            return Sniff::NeedMore;
        };
        handshake.extend_from_slice(fragment);
        rest = &rest[5 + record_len..];
    }
}

/// A cursor that never reads past its slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// The host_name of the server_name extension (RFC 6066) of a ClientHello body.
fn client_hello_server_name(body: &[u8]) -> Option<String> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    let mut extensions = Reader(r.vec16()?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader(Reader(data).vec16()?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type == 0 {
                return std::str::from_utf8(name).ok().and_then(normalized);
            }
        }
        return None;
    }
    None
}

/// The Host header of an HTTP/1 request, decided as soon as that header line (or the
/// end of the headers) is complete.
fn http(buf: &[u8]) -> Sniff {
    let mut lines = buf.split(|b| *b == b'\n');
    let mut complete = buf.iter().filter(|b| **b == b'\n').count();
    // The request line.
    if complete == 0 {
        return Sniff::NeedMore;
    }
    lines.next();
    complete -= 1;
    for line in lines.take(complete) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Sniff::Done(None);
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"host") {
            let value = std::str::from_utf8(&line[colon + 1..]).ok().map(str::trim);
            return Sniff::Done(value.and_then(host_without_port).and_then(normalized));
        }
    }
    Sniff::NeedMore
}

/// `shop.example.com:8080` → `shop.example.com`; an IPv6 literal is no name.
fn host_without_port(host: &str) -> Option<&str> {
    if host.starts_with('[') {
        return None;
    }
    Some(host.rsplit_once(':').map_or(host, |(name, _port)| name))
}

/// A DNS name in lowercase without its trailing dot, or `None` for anything else.
fn normalized(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    config::hostname::valid_dns_name(&name).then_some(name)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello body with these extensions (type, data).
    fn hello_body(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend([7u8; 32]); // random
        b.extend([32]);
        b.extend([1u8; 32]); // session id
        b.extend([0, 4, 0x13, 0x01, 0x13, 0x02]); // cipher suites
        b.extend([1, 0]); // compression: null
        let mut ext = Vec::new();
        for (kind, data) in extensions {
            ext.extend(kind.to_be_bytes());
            ext.extend(u16::try_from(data.len()).expect("short").to_be_bytes());
            ext.extend(data);
        }
        b.extend(u16::try_from(ext.len()).expect("short").to_be_bytes());
        b.extend(ext);
        b
    }

    fn sni_extension(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![0];
        entry.extend(u16::try_from(name.len()).expect("short").to_be_bytes());
        entry.extend(name.as_bytes());
        let mut data = u16::try_from(entry.len()).expect("short").to_be_bytes().to_vec();
        data.extend(entry);
        (0, data)
    }

    /// The handshake message of a ClientHello with these extensions.
    fn handshake(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let body = hello_body(extensions);
        let len = u32::try_from(body.len()).expect("short").to_be_bytes();
        let mut m = vec![1, len[1], len[2], len[3]];
        m.extend(body);
        m
    }

    /// `message` in TLS handshake records of at most `record` bytes each.
    fn records(message: &[u8], record: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in message.chunks(record) {
            out.extend([0x16, 3, 1]);
            out.extend(u16::try_from(chunk.len()).expect("short").to_be_bytes());
            out.extend(chunk);
        }
        out
    }

    /// A ClientHello for `name` in one record, as a client sends it.
    pub(crate) fn client_hello(name: &str) -> Vec<u8> {
        records(&handshake(&[(10, vec![0, 2, 0, 29]), sni_extension(name)]), MAX_RECORD)
    }

    #[test]
    fn the_server_name_of_a_client_hello_in_one_record() {
        assert_eq!(
            sniff(&client_hello("Shop.Example.COM.")),
            Sniff::Done(Some("shop.example.com".into()))
        );
    }

    #[test]
    fn a_hello_over_several_records_and_reads_is_reassembled() {
        let padding = (21, vec![0; 3000]);
        let message = handshake(&[padding, sni_extension("a.blog.example.com")]);
        let wire = records(&message, 700);
        // Every prefix is "need more"; the whole is the name (as if read byte by byte).
        for end in 0..wire.len() {
            assert_eq!(sniff(&wire[..end]), Sniff::NeedMore, "at {end}");
        }
        assert_eq!(sniff(&wire), Sniff::Done(Some("a.blog.example.com".into())));
        // One-byte records too.
        let tiny = records(&handshake(&[sni_extension("x.example.com")]), 1);
        assert!(tiny.len() < MAX_BUFFERED);
        assert_eq!(sniff(&tiny), Sniff::Done(Some("x.example.com".into())));
    }

    #[test]
    fn a_hello_without_sni_or_with_a_bad_name_has_no_name() {
        assert_eq!(sniff(&records(&handshake(&[(10, vec![0, 0])]), 512)), Sniff::Done(None));
        assert_eq!(sniff(&client_hello("bad_name!")), Sniff::Done(None));
        assert_eq!(sniff(&records(&handshake(&[]), 512)), Sniff::Done(None));
    }

    #[test]
    fn malformed_tls_ends_without_a_name_and_never_panics() {
        // Not a handshake record; a record too long; a handshake that is no ClientHello.
        assert_eq!(sniff(&[0x16, 3, 1, 0, 0]), Sniff::Done(None));
        assert_eq!(sniff(&[0x16, 3, 1, 0x50, 0]), Sniff::Done(None));
        assert_eq!(sniff(&[0x16, 2, 0, 0, 1, 1]), Sniff::Done(None));
        assert_eq!(sniff(&records(&[2, 0, 0, 1, 0], 64)), Sniff::Done(None));
        // A ClientHello that claims more than it may be.
        assert_eq!(sniff(&records(&[1, 0x01, 0, 0], 64)), Sniff::Done(None));
        // Lengths inside the hello that run past its end, at every cut.
        let good = handshake(&[sni_extension("shop.example.com")]);
        for cut in 4..good.len() {
            let mut broken = good[..cut].to_vec();
            let len = u32::try_from(cut - 4).expect("short").to_be_bytes();
            broken[1..4].copy_from_slice(&len[1..]);
            let outcome = sniff(&records(&broken, 100));
            assert!(matches!(outcome, Sniff::Done(_)), "cut {cut}: {outcome:?}");
        }
        // Every single-byte change of a valid hello still ends (and never panics).
        let wire = client_hello("shop.example.com");
        for i in 0..wire.len() {
            let mut changed = wire.clone();
            changed[i] ^= 0xff;
            let _ = sniff(&changed);
        }
    }

    #[test]
    fn the_host_header_of_an_http_request() {
        let request = b"GET / HTTP/1.1\r\nUser-Agent: x\r\nHOST: Shop.example.com:80\r\nAccept: */*\r\n\r\n";
        assert_eq!(sniff(request), Sniff::Done(Some("shop.example.com".into())));
        let host_at = request.windows(5).position(|w| w == b"HOST:").expect("there");
        let line_end = host_at + request[host_at..].iter().position(|b| *b == b'\n').expect("there");
        for end in 0..=line_end {
            assert_eq!(sniff(&request[..end]), Sniff::NeedMore, "at {end}");
        }
        assert_eq!(sniff(b"GET / HTTP/1.0\r\n\r\n"), Sniff::Done(None));
        assert_eq!(
            sniff(b"GET / HTTP/1.1\nhost: a.example.com\n\n"),
            Sniff::Done(Some("a.example.com".into()))
        );
        assert_eq!(
            sniff(b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n"),
            Sniff::Done(None)
        );
        assert_eq!(sniff(b"\x00\x01binary"), Sniff::Done(None));
    }
}
