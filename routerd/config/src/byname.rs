//! Forwards by host name: the `host` of a `[[forward]]` (matched against the TLS SNI or
//! the HTTP Host header) and which forwards go through routerd's proxy.

use std::fmt;
use std::net::Ipv4Addr;

use crate::{Config, Forward};

/// A forward's `host`: an exact name, or `*.suffix` for one or more labels before
/// `suffix`. Kept in lowercase (names compare without case).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    Exact(String),
    /// The part after `*.`, like `blog.example.com`.
    Wildcard(String),
}

impl HostPattern {
    /// `name` as a pattern, or why it is not one (said after `forward.host: `).
    pub fn parse(name: &str) -> Result<HostPattern, String> {
        let lower = name.to_ascii_lowercase();
        let (pattern, rest) = match lower.strip_prefix("*.") {
            Some(suffix) => (HostPattern::Wildcard(suffix.to_string()), suffix),
            None => (HostPattern::Exact(lower.clone()), lower.as_str()),
        };
        if rest.contains('*') {
            return Err(format!(
                "{} is not a valid wildcard: only a whole first label may be `*`, like \"*.blog.example.com\"",
                crate::diagnostic::quote(name)
            ));
        }
        if !crate::hostname::valid_dns_name(rest) {
            return Err(format!(
                "{} is not a valid host name (letters, digits and '-', dot-separated, or \"*.\" and such a name)",
                crate::diagnostic::quote(name)
            ));
        }
        Ok(pattern)
    }

    /// Whether `name` (lowercase, no trailing dot) is matched.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(n) => n == name,
            HostPattern::Wildcard(suffix) => name
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|head| !head.is_empty()),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(n) => f.write_str(n),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

impl Config {
    /// The public addresses and TCP ports that routerd's proxy serves: those with at
    /// least one forward by host name. In the order of the forwards, each once.
    pub fn named_ports(&self) -> Vec<(Ipv4Addr, u16)> {
        let mut ports = Vec::new();
        for f in self.forwards.iter().filter(|f| f.host.is_some()) {
            if !ports.contains(&(f.public, f.ports.first)) {
                ports.push((f.public, f.ports.first));
            }
        }
        ports
    }

    /// Whether the TCP side of `forward` goes through the proxy (a forward by name, or
    /// the default of a port that has some) rather than a DNAT rule.
    pub fn proxied(&self, forward: &Forward) -> bool {
        forward.ports.is_single()
            && forward.protocol.transports().contains(&"tcp")
            && self
                .forwards
                .iter()
                .any(|f| f.host.is_some() && f.public == forward.public && f.ports.first == forward.ports.first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_and_wildcards_match_as_documented() {
        let exact = HostPattern::parse("Shop.Example.com").expect("valid");
        assert_eq!(exact, HostPattern::Exact("shop.example.com".into()));
        assert!(exact.matches("shop.example.com"));
        assert!(!exact.matches("www.shop.example.com"));
        let wild = HostPattern::parse("*.blog.example.com").expect("valid");
        assert_eq!(wild.to_string(), "*.blog.example.com");
        assert!(wild.matches("a.blog.example.com"));
        assert!(wild.matches("a.b.blog.example.com"));
        assert!(!wild.matches("blog.example.com"));
        assert!(!wild.matches("xblog.example.com"));
        assert!(!wild.matches(".blog.example.com"));
    }

    #[test]
    fn bad_names_and_wildcards_are_refused() {
        for bad in [
            "",
            "*",
            "*.",
            "a.*.com",
            "*x.example.com",
            "**.example.com",
            "a..b",
            "-a.com",
            "a b.com",
            "shop.example.com.",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
