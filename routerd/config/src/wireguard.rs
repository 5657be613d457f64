//! `[wireguard]`: a WireGuard tunnel into the LANs, one `[[wireguard.peer]]` a client.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use base64::Engine;
use ipnet::Ipv4Net;

/// The tunnel's interface: routerd makes it and the firewall names it.
pub const IFNAME: &str = "wg0";
/// The router's private key in the state directory when `private_key_file` is not set.
pub const DEFAULT_KEY_FILE: &str = "wireguard.key";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireGuard {
    pub listen_port: u16,
    /// The router's address in the tunnel; its prefix is the tunnel's subnet.
    pub address: Ipv4Net,
    /// The public address peers send to (on the main WAN NIC): `public`, else `wan.address`.
    pub public: Ipv4Addr,
    /// As written: a relative path is in the state directory.
    pub private_key_file: String,
    pub peers: Vec<Peer>,
}

impl WireGuard {
    /// The tunnel's subnet.
    pub fn subnet(&self) -> Ipv4Net {
        self.address.trunc()
    }

    pub fn peer_named(&self, name: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub public_key: Key,
    /// The peer's addresses in the tunnel (WireGuard drops other sources from it).
    pub allowed_ips: Vec<Ipv4Net>,
    /// The LANs (by name) this peer may open connections to; default: every LAN.
    pub reach: Vec<String>,
    /// Whether the peer may reach the internet through the router (SNAT like a LAN).
    pub internet: bool,
}

/// A Curve25519 key as WireGuard writes it: 32 bytes, standard base64 (44 characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl FromStr for Key {
    type Err = ();

    fn from_str(s: &str) -> Result<Key, ()> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| ())?;
        Ok(Key(bytes.try_into().map_err(|_| ())?))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

/// Keys do not show in debug output: a private key must never reach a log.
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_32_bytes_of_standard_base64() {
        let text = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=";
        let key: Key = text.parse().expect("a key");
        assert_eq!(&key.0, b"abcdefghijklmnopqrstuvwxyz123456");
        assert_eq!(key.to_string(), text);
        assert_eq!(format!("{key:?}"), "Key(..)");
        for bad in [
            "",
            "base64...",
            "YWJj",
            "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY3Nzg=",
        ] {
            assert!(bad.parse::<Key>().is_err(), "{bad}");
        }
    }
}
