//! Test infrastructure for routerd: network namespaces, the hoster lab of design.md,
//! and real sockets to drive traffic through it. Tests live in `tests/tests/`.

pub mod dhcp_client;
pub mod http;
pub mod lab;
pub mod netns;
pub mod proc;
pub mod traffic;
pub mod vm;
