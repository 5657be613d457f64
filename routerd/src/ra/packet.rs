//! Router advertisements (RFC 4861 section 4.2) with the options a SLAAC guest needs:
//! source link-layer address, MTU, prefix information (RFC 4861 4.6.2) and RDNSS
//! (RFC 8106). The kernel fills in the ICMPv6 checksum of a raw ICMPv6 socket.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use config::MacAddr;

pub const ROUTER_SOLICITATION: u8 = 133;
pub const ROUTER_ADVERTISEMENT: u8 = 134;

const OPT_SOURCE_LINK_ADDRESS: u8 = 1;
const OPT_PREFIX_INFORMATION: u8 = 3;
const OPT_MTU: u8 = 5;
const OPT_RDNSS: u8 = 25;
/// Prefix information flags: on-link (L) and autonomous address configuration (A).
const FLAG_ON_LINK: u8 = 0x80;
const FLAG_AUTONOMOUS: u8 = 0x40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// The LAN link's MAC (the source link-layer address option); `None`: left out.
    pub mac: Option<MacAddr>,
    /// The LAN link's MTU; `None`: no MTU option.
    pub mtu: Option<u32>,
    pub prefix: Ipv6Net,
    /// Seconds guests keep the router as their default router (0: not a default router).
    pub router_lifetime: u16,
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    /// Resolvers for the RDNSS option; empty: no option.
    pub dns: Vec<Ipv6Addr>,
    pub dns_lifetime: u32,
}

impl Advert {
    /// The ICMPv6 message (checksum zero: the kernel computes it).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![ROUTER_ADVERTISEMENT, 0, 0, 0];
        // Current hop limit 64; no M/O flags (addresses by SLAAC, nothing by DHCPv6).
        b.extend([64, 0]);
        b.extend(self.router_lifetime.to_be_bytes());
        b.extend(0u32.to_be_bytes()); // reachable time: unspecified
        b.extend(0u32.to_be_bytes()); // retransmission timer: unspecified
        if let Some(mac) = self.mac {
            b.extend([OPT_SOURCE_LINK_ADDRESS, 1]);
            b.extend(mac.0);
        }
        if let Some(mtu) = self.mtu {
            b.extend([OPT_MTU, 1, 0, 0]);
            b.extend(mtu.to_be_bytes());
        }
        b.extend([
            OPT_PREFIX_INFORMATION,
            4,
            self.prefix.prefix_len(),
            FLAG_ON_LINK | FLAG_AUTONOMOUS,
        ]);
        b.extend(self.valid_lifetime.to_be_bytes());
        b.extend(self.preferred_lifetime.to_be_bytes());
        b.extend(0u32.to_be_bytes());
        b.extend(self.prefix.trunc().network().octets());
        if !self.dns.is_empty() {
            // Length in units of 8 octets: the 8-octet header and 16 per address.
            let len = u8::try_from(1 + 2 * self.dns.len()).unwrap_or(u8::MAX);
            b.extend([OPT_RDNSS, len, 0, 0]);
            b.extend(self.dns_lifetime.to_be_bytes());
            for d in self.dns.iter().take(usize::from((u8::MAX - 1) / 2)) {
                b.extend(d.octets());
            }
        }
        b
    }
}

/// Whether `msg` (an ICMPv6 message as a raw socket reads it) is a router solicitation.
pub fn is_solicitation(msg: &[u8]) -> bool {
    // Code 0, at least the 8-octet header (RFC 4861 6.1.1).
    msg.len() >= 8 && msg[0] == ROUTER_SOLICITATION && msg[1] == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert() -> Advert {
        Advert {
            mac: Some(MacAddr([2, 0, 0, 0, 0, 0x20])),
            mtu: Some(1500),
            prefix: "2001:db8:1:2::2/64".parse().expect("net"),
            router_lifetime: 1800,
            valid_lifetime: 86400,
            preferred_lifetime: 14400,
            dns: vec!["2001:db8::53".parse().expect("ip")],
            dns_lifetime: 1200,
        }
    }

    #[test]
    fn the_header_and_every_option_sit_where_rfc_4861_puts_them() {
        let b = advert().encode();
        assert_eq!(b.len(), 16 + 8 + 8 + 32 + 24);
        assert_eq!(
            &b[..8],
            &[134, 0, 0, 0, 64, 0, 0x07, 0x08],
            "type, code, checksum, hop limit, flags, 1800 s"
        );
        assert_eq!(&b[8..16], &[0; 8]);
        assert_eq!(&b[16..24], &[1, 1, 2, 0, 0, 0, 0, 0x20], "source link-layer address");
        assert_eq!(&b[24..32], &[5, 1, 0, 0, 0, 0, 0x05, 0xdc], "MTU 1500");
        let p = &b[32..64];
        assert_eq!(&p[..4], &[3, 4, 64, 0xc0], "prefix information, /64, L and A");
        assert_eq!(&p[4..8], &86400u32.to_be_bytes());
        assert_eq!(&p[8..12], &14400u32.to_be_bytes());
        assert_eq!(
            &p[16..],
            &"2001:db8:1:2::".parse::<Ipv6Addr>().expect("ip").octets(),
            "the prefix, host bits cleared"
        );
        let r = &b[64..];
        assert_eq!(&r[..8], &[25, 3, 0, 0, 0, 0, 0x04, 0xb0], "RDNSS, one address, 1200 s");
        assert_eq!(&r[8..], &"2001:db8::53".parse::<Ipv6Addr>().expect("ip").octets());
        // Every option's length is its size in units of 8 octets.
        let mut at = 16;
        while at < b.len() {
            at += usize::from(b[at + 1]) * 8;
        }
        assert_eq!(at, b.len());
    }

    #[test]
    fn options_without_a_value_are_left_out() {
        let b = Advert {
            mac: None,
            mtu: None,
            dns: vec![],
            ..advert()
        }
        .encode();
        assert_eq!(b.len(), 16 + 32);
        assert_eq!(b[16], 3);
    }

    #[test]
    fn solicitations_are_told_apart() {
        assert!(is_solicitation(&[133, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!is_solicitation(&[133, 0, 0, 0]), "short");
        assert!(!is_solicitation(&[134, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!is_solicitation(&[133, 1, 0, 0, 0, 0, 0, 0]), "code 1");
    }
}
