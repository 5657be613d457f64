//! Kernel switches under /proc/sys (per network namespace for net.*).

use super::NetError;
use crate::plan::{Role, Sysctl};

/// Writes each value unless it is already set.
pub fn ensure(sysctls: &[Sysctl], name_of: impl Fn(Role) -> String) -> Result<(), NetError> {
    for s in sysctls {
        let path = s.path(&name_of);
        let current = std::fs::read_to_string(&path).map_err(|e| NetError::Sysctl {
            path: path.clone(),
            source: e,
        })?;
        if current.trim() != s.value {
            std::fs::write(&path, s.value).map_err(|e| NetError::Sysctl {
                path: path.clone(),
                source: e,
            })?;
        }
    }
    Ok(())
}
