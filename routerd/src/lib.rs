//! routerd: `router.toml` in, a configured router out.
//!
//! The `config` crate parses and validates; `plan` and `firewall::ruleset` turn a config into
//! the desired state as pure functions; `net` and `firewall::apply` make the kernel
//! match it; `dhcp` serves the LAN; `daemon` runs the whole and follows reloads.

pub mod daemon;
pub mod dhcp;
pub mod dns;
pub mod firewall;
pub mod gateway;
pub mod hostname;
pub mod logging;
pub mod ndp_proxy;
pub mod net;
pub mod plan;
pub mod plan6;
pub mod proxy;
pub mod ra;
pub mod state;
pub mod status;
pub mod wireguard;
