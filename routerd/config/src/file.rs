//! Reading a config file: a regular file (or a link to one) of at most
//! [`MAX_FILE_SIZE`] bytes of UTF-8. Anything else is refused before it is read: a FIFO
//! would block the reader forever, `/dev/zero` would never end, and a huge file
//! would be kept whole in the error list.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::ConfigError;

/// The largest config file (router.toml, or each file of a cloud-init drive).
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Reads the config file at `path`; errors name it as `path` shows.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    read_unless_missing(path)?.map_err(|e| ConfigError::unreadable(path.display().to_string(), &e))
}

/// Like [`read`], with `None` when there is no such file.
pub fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    Ok(read_unless_missing(path)?.ok())
}

/// The text, or the "not found" error when there is no such file.
fn read_unless_missing(path: &Path) -> Result<Result<String, io::Error>, ConfigError> {
    let origin = || path.display().to_string();
    let refuse = |message: String| ConfigError::whole_file(origin(), &message);
    // Checked before opening too: opening some devices does things.
    match std::fs::metadata(path) {
        Ok(meta) => check(&meta).map_err(refuse)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err(e)),
        Err(e) => return Err(ConfigError::unreadable(origin(), &e)),
    }
    // Non-blocking, so that a FIFO put there after the check cannot hang the open.
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err(e)),
        Err(e) => return Err(ConfigError::unreadable(origin(), &e)),
    };
    let meta = file.metadata().map_err(|e| ConfigError::unreadable(origin(), &e))?;
    check(&meta).map_err(refuse)?;
    let bytes = read_bounded(&mut file).map_err(|e| ConfigError::unreadable(origin(), &e))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(refuse(too_large(bytes.len() as u64)));
    }
    String::from_utf8(bytes)
        .map(Ok)
        .map_err(|e| refuse(format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))
}

/// At most one byte past the limit, so that growth after the size check shows.
fn read_bounded(file: &mut File) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Why a file with this metadata is not read, if it is not.
fn check(meta: &Metadata) -> Result<(), String> {
    let kind = meta.file_type();
    let what = if kind.is_file() {
        if meta.len() > MAX_FILE_SIZE {
            return Err(too_large(meta.len()));
        }
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(format!("{what}; a config must be a regular file"))
}

fn too_large(bytes: u64) -> String {
    format!("{bytes} bytes, larger than the 1 MiB limit")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TestDir;
    use crate::Config;

    fn load_error(dir: &TestDir, path: &Path) -> String {
        match Config::load(path) {
            Ok(_) => panic!("{} loaded", path.display()),
            Err(e) => dir.anonymize(&e.to_string()),
        }
    }

    #[test]
    fn a_file_over_one_mib_is_refused_unread() {
        let dir = TestDir::new();
        let big = dir.write("router.toml", &format!("# {}\n", "x".repeat(2 << 20)));
        assert_eq!(
            load_error(&dir, &big),
            "DIR/router.toml: 2097155 bytes, larger than the 1 MiB limit"
        );
        // Exactly the limit is read (and then parsed).
        let at_limit = dir.write("limit.toml", &"#".repeat(1 << 20));
        assert!(read(&at_limit).is_ok_and(|t| t.len() == 1 << 20));
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = TestDir::new();
        let fifo = dir.path().join("router.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        // No writer ever opens it: a blocking read would hang this test.
        assert_eq!(
            load_error(&dir, &fifo),
            "DIR/router.toml: a FIFO; a config must be a regular file"
        );
    }

    #[test]
    fn symlinks_are_followed_to_regular_files_only() {
        let dir = TestDir::new();
        let zero = dir.path().join("router.toml");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        assert_eq!(
            load_error(&dir, &zero),
            "DIR/router.toml: a character device; a config must be a regular file"
        );
        let target = dir.write("real.toml", "hostname = \"x\"\n");
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert_eq!(read(&link).ok().as_deref(), Some("hostname = \"x\"\n"));
    }

    #[test]
    fn missing_and_non_utf8_files_say_so() {
        let dir = TestDir::new();
        assert_eq!(read_optional(&dir.path().join("none")).ok(), Some(None));
        assert_eq!(
            load_error(&dir, &dir.path().join("none")),
            "DIR/none: cannot read: No such file or directory (os error 2)"
        );
        let latin1 = dir.path().join("latin1.toml");
        std::fs::write(&latin1, b"hostname = \"caf\xe9\"\n").expect("write");
        assert_eq!(load_error(&dir, &latin1), "DIR/latin1.toml: not UTF-8 text (byte 15)");
    }

    #[test]
    fn each_cloud_init_file_has_the_same_limits() {
        let dir = TestDir::new();
        dir.write("user-data", "#cloud-config\n");
        dir.write("network-config", &format!("# {}\n", "x".repeat(2 << 20)));
        assert_eq!(
            load_error(&dir, dir.path()),
            "DIR/network-config: 2097155 bytes, larger than the 1 MiB limit"
        );
        std::fs::remove_file(dir.path().join("user-data")).expect("rm");
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("user-data")).expect("symlink");
        assert_eq!(
            load_error(&dir, dir.path()),
            "DIR/user-data: a character device; a config must be a regular file"
        );
    }
}
