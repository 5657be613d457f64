//! The firewall and NAT: a pure renderer and the `nft` call that applies its output.

mod render;

pub use render::{flowtable_probe, forward_counters, ruleset, Features, ForwardCounter, Interfaces, FLOWTABLE, TABLE};

use std::io::Write;
use std::process::{Command, Stdio};

use nftables::schema::Nftables;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    // The causes are `source`s, printed by `{e:#}`, not repeated in the message.
    #[error("cannot run {program}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} rejected the ruleset: {stderr}")]
    Rejected { program: String, stderr: String },
    #[error("cannot serialize the ruleset")]
    Json(#[from] serde_json::Error),
}

/// The `nft` binary: `$ROUTERD_NFT` or `nft` on the PATH.
pub fn program() -> String {
    std::env::var("ROUTERD_NFT").unwrap_or_else(|_| "nft".to_string())
}

/// Applies a batch in one `nft -j -f -` transaction: all of it or nothing.
/// (nftables' own helper lets nft's stderr through; here it becomes the error.)
pub fn apply(batch: &Nftables) -> Result<(), NftError> {
    let json = serde_json::to_vec(batch)?;
    let program = program();
    let spawn_err = |source| NftError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = Command::new(&program)
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&json).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().replace('\n', " ");
        Err(NftError::Rejected { program, stderr })
    }
}

/// Whether the kernel offers flowtables (the image's kernel does; some hosts do not).
pub fn flowtable_supported(dev: &str) -> bool {
    let (add, delete) = flowtable_probe(dev);
    let supported = apply(&add).is_ok();
    // The probe table is removed whether or not the flowtable could be added.
    if let Err(e) = apply(&delete) {
        tracing::warn!("could not remove the flowtable probe table: {e}");
    }
    supported
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_print_once() {
        let err = NftError::Spawn {
            program: "nft".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(
            format!("{:#}", anyhow::Error::from(err)),
            "cannot run nft: entity not found"
        );
    }
}
