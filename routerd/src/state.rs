//! Files routerd keeps across restarts (the appliance's state partition): the last
//! config that applied cleanly, and the DHCP leases. Every write is atomic: a power
//! cut leaves either the old file or the new one, never a torn one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temp file: write, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let written = File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        // A full disk leaves a partial (often empty) temp file: take it away with the
        // space it holds, so nothing mistakes it for a state file.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

/// The state directory, when routerd was given one.
#[derive(Debug, Clone)]
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn last_good(&self) -> PathBuf {
        self.0.join(config::image::LAST_GOOD_FILE_NAME)
    }

    pub fn save_last_good(&self, text: &str) -> io::Result<()> {
        let path = self.last_good();
        if fs::read_to_string(&path).is_ok_and(|old| old == text) {
            return Ok(());
        }
        write_atomic(&path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_the_whole_file_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("routerd-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join("f");
        write_atomic(&path, b"first version, longer").unwrap_or_default();
        write_atomic(&path, b"second").unwrap_or_default();
        assert_eq!(fs::read(&path).unwrap_or_default(), b"second");
        assert!(!dir.join("f.tmp").exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
