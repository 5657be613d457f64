//! Kernel switches under /proc/sys (per network namespace for net.*).

use super::NetError;
use crate::plan::Sysctl;

/// Writes each value unless it is already set.
pub fn ensure(sysctls: &[Sysctl], wan: &str, extra_wans: &[&str], lans: &[&str]) -> Result<(), NetError> {
    for path in sysctls
        .iter()
        .flat_map(|s| s.paths(wan, extra_wans, lans).into_iter().map(move |p| (s, p)))
    {
        let (s, path) = path;
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

/// Writes `value` to the sysctl at `path` unless it is already set.
pub fn write_if_different(path: &str, value: &str) -> Result<(), NetError> {
    let error = |e| NetError::Sysctl {
        path: path.to_string(),
        source: e,
    };
    if std::fs::read_to_string(path).map_err(error)?.trim() != value {
        std::fs::write(path, value).map_err(error)?;
    }
    Ok(())
}
