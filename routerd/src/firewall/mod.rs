//! The firewall and NAT: a pure renderer and the `nft` call that applies its output.

mod render;

pub use render::{flowtable_probe, ruleset, Features, Interfaces, FLOWTABLE, TABLE};

use nftables::helper::{self, NftablesError};
use nftables::schema::Nftables;

/// The `nft` binary: `$ROUTERD_NFT` or `nft` on the PATH.
fn program() -> String {
    std::env::var("ROUTERD_NFT").unwrap_or_else(|_| "nft".to_string())
}

/// Applies a batch in one `nft` transaction: all of it or nothing.
pub fn apply(batch: &Nftables) -> Result<(), NftablesError> {
    helper::apply_ruleset_with_args(batch, Some(program().as_str()), helper::DEFAULT_ARGS)
}

/// Whether the kernel offers flowtables (the image's kernel does; some hosts do not).
pub fn flowtable_supported(dev: &str) -> bool {
    let (add, delete) = flowtable_probe(dev);
    let supported = apply(&add).is_ok();
    // The probe table is removed whether or not the flowtable could be added.
    if let Err(e) = apply(&delete) {
        tracing::warn!(error = %e, "could not remove the flowtable probe table");
    }
    supported
}
