//! The DHCPv4 server for the LAN guests (RFC 2131), on `dhcproto`.
//!
//! - `pool`: the lease table and address choice (pure, clock passed in);
//! - `handler`: request → reply/probe/ignore, and the §4.1 reply destination (pure);
//! - `store`: the durable lease log (append + fsync per batch, atomic compaction);
//! - `backlog`: the bounded queue between the socket and the handler;
//! - `arp`: ARP probes of addresses that have no history;
//! - `server`: the socket loop that ties them together.

pub mod arp;
pub mod backlog;
pub mod handler;
pub mod pool;
pub mod server;
pub mod store;

pub use handler::Scope;
pub use server::{Counters, Running};
