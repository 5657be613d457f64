//! The router's WireGuard private key: made once, kept in a file (0600), never logged.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use config::wireguard::Key;

use crate::state::StateDir;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("[wireguard]: the private key file {file} is relative to the state directory, and routerd runs without one (--state); give an absolute private_key_file")]
    NoStateDir { file: String },
    #[error("reading the WireGuard private key {}", path.display())]
    Read { path: PathBuf, source: io::Error },
    // The file's content is never shown: it is a secret.
    #[error("{} holds no WireGuard private key (expected one line of 44 base64 characters, as `wg genkey` prints); remove it to have routerd make a new one", path.display())]
    Malformed { path: PathBuf },
    #[error("writing a new WireGuard private key to {}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// Where `private_key_file` is: a relative name is in the state directory.
pub fn path(file: &str, state: Option<&StateDir>) -> Result<PathBuf, KeyError> {
    let given = Path::new(file);
    if given.is_absolute() {
        return Ok(given.to_path_buf());
    }
    state
        .map(|s| s.0.join(given))
        .ok_or_else(|| KeyError::NoStateDir { file: file.to_string() })
}

/// The private key in `path`, made there first when there is none.
pub fn load_or_create(path: &Path) -> Result<Key, KeyError> {
    match read(path) {
        Err(KeyError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let key = generate().map_err(|source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    match create(path, &key) {
        Ok(()) => {
            tracing::info!(file = %path.display(), "WireGuard private key made");
            Ok(key)
        }
        // Made by someone else (`routerd wireguard pubkey` as the daemon starts): theirs holds.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(path),
        Err(source) => Err(KeyError::Write {
            path: path.to_path_buf(),
            source,
        }),
    }
}

pub fn read(path: &Path) -> Result<Key, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.trim().parse::<Key>().map_err(|()| KeyError::Malformed {
        path: path.to_path_buf(),
    })
}

/// The public key of `private` (Curve25519, as `wg pubkey`).
pub fn public(private: &Key) -> Key {
    let secret = x25519_dalek::StaticSecret::from(private.0);
    Key(*x25519_dalek::PublicKey::from(&secret).as_bytes())
}

/// 32 random bytes from the kernel's generator, clamped as `wg genkey` does.
fn generate() -> io::Result<Key> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    bytes[0] &= 248;
    bytes[31] = (bytes[31] & 127) | 64;
    Ok(Key(bytes))
}

/// Writes `key` to `path` only if there is no file there: a temp file (0600) linked
/// into place, so no reader ever sees a partial key and no key is ever replaced.
fn create(path: &Path, key: &Key) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(format!("{key}\n").as_bytes()).and_then(|()| f.sync_all()))
        .and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    written?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_public_key_is_the_one_wg_pubkey_prints() {
        // RFC 7748 section 6.1: Alice's private and public key.
        let private = Key(hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
        assert_eq!(
            public(&private).0,
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
    }

    fn hex(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or_default();
        }
        out
    }

    #[test]
    fn the_key_is_made_once_0600_and_then_kept() {
        let dir = std::env::temp_dir().join(format!("routerd-wgkey-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let state = StateDir(dir.clone());
        let file = path("wireguard.key", Some(&state)).expect("in the state dir");
        assert_eq!(file, dir.join("wireguard.key"));
        let first = load_or_create(&file).expect("made");
        assert_eq!(first.0[0] & 7, 0, "clamped like wg genkey");
        let mode = fs::metadata(&file).expect("there").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&file).expect("read"), first, "made once, then kept");
        assert_eq!(fs::read_dir(&dir).expect("dir").count(), 1, "no temp file left");
        fs::write(&file, "not a key\n").expect("spoil it");
        let err = load_or_create(&file).expect_err("malformed").to_string();
        assert!(
            err.contains("holds no WireGuard private key") && !err.contains("not a key"),
            "{err}"
        );
        assert_eq!(
            fs::read_to_string(&file).expect("kept"),
            "not a key\n",
            "a bad file is never replaced"
        );
        assert!(matches!(path("wg.key", None), Err(KeyError::NoStateDir { .. })));
        assert_eq!(path("/etc/wg.key", None).expect("absolute"), Path::new("/etc/wg.key"));
        let _ = fs::remove_dir_all(&dir);
    }
}
