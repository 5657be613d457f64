//! Test infrastructure for routerd: network namespaces, the hoster lab (its layout and
//! safety rules: [`lab`]), the appliance under QEMU in it, and real sockets to drive
//! traffic through it. The lab and QEMU tests live in `tests/tests/`.
//! Each of those tests starts with [`require_root`] (and the QEMU ones [`require_image`]),
//! so that `cargo test` as a normal user skips them, saying why, instead of failing.

pub mod dhcp_client;
pub mod dhcp_load;
pub mod dns;
pub mod http;
pub mod lab;
pub mod netns;
pub mod proc;
mod require;
pub mod traffic;
pub mod vlan_tag;
pub mod vm;

pub use require::{require_image, require_root, NO_SKIP_ENV};
