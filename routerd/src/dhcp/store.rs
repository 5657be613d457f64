//! Durable leases: an append-only log, one checksummed line per lease change, written
//! and fsynced once per batch of replies (group commit), and compacted into a fresh
//! file by temp + fsync + rename when it has grown well past the live table.
//!
//! A torn last line (power cut mid-append) is ignored. Any other bad line means the
//! file is corrupt: it is moved aside with a log line, the good records are kept, and
//! the server starts.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::pool::{ClientKey, Lease, LeaseState};
use crate::state::write_atomic;
use config::image::LEASES_FILE_NAME;
use config::MacAddr;

pub struct LeaseStore {
    path: PathBuf,
    file: File,
    lines: usize,
}

fn encode(l: &Lease) -> String {
    let state = match l.state {
        LeaseState::Bound => "B",
        LeaseState::Released | LeaseState::Offered => "R",
    };
    let host = l.hostname.as_deref().filter(|h| !h.is_empty()).unwrap_or("-");
    let record = format!(
        "{} {} {} {} {} {}",
        l.addr,
        l.mac,
        l.client.hex(),
        l.expires,
        state,
        host
    );
    format!("{:08x} {record}\n", crc32fast::hash(record.as_bytes()))
}

fn decode(line: &str) -> Option<Lease> {
    let (crc, record) = line.split_once(' ')?;
    if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(record.as_bytes()) {
        return None;
    }
    let mut f = record.split(' ');
    let addr = f.next()?.parse::<Ipv4Addr>().ok()?;
    let mac = f.next()?.parse::<MacAddr>().ok()?;
    let client = ClientKey::from_hex(f.next()?)?;
    let expires = f.next()?.parse().ok()?;
    let state = match f.next()? {
        "B" => LeaseState::Bound,
        "R" => LeaseState::Released,
        _ => return None,
    };
    let hostname = Some(f.next()?).filter(|h| *h != "-").map(str::to_string);
    f.next().is_none().then_some(Lease {
        addr,
        client,
        mac,
        hostname,
        expires,
        state,
    })
}

/// What reading the file found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub leases: Vec<Lease>,
    pub torn_tail: bool,
    /// Where a corrupt file was moved.
    pub moved_aside: Option<PathBuf>,
}

fn read(path: &Path) -> io::Result<(Loaded, bool)> {
    let text = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Loaded::default(), false)),
        Err(e) => return Err(e),
    };
    let mut loaded = Loaded::default();
    let mut corrupt = false;
    let complete = text.ends_with(b"\n");
    let mut chunks: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    if complete || text.is_empty() {
        chunks.pop(); // the empty piece after the final newline
    }
    let count = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        match std::str::from_utf8(chunk).ok().and_then(decode) {
            Some(l) => loaded.leases.push(l),
            None if i + 1 == count && !complete => loaded.torn_tail = true,
            None => corrupt = true,
        }
    }
    Ok((loaded, corrupt))
}

impl LeaseStore {
    /// Opens (or creates) the lease log in `dir` and returns the leases it holds,
    /// oldest record first (later records win).
    pub fn open(dir: &Path) -> io::Result<(LeaseStore, Loaded)> {
        let path = dir.join(LEASES_FILE_NAME);
        let (mut loaded, corrupt) = read(&path)?;
        if corrupt {
            let aside = dir.join(format!("{LEASES_FILE_NAME}.corrupt-{}", std::process::id()));
            fs::rename(&path, &aside)?;
            loaded.moved_aside = Some(aside);
        }
        if corrupt || loaded.torn_tail {
            // Start from a clean file holding the good records.
            let text: String = loaded.leases.iter().map(encode).collect();
            write_atomic(&path, text.as_bytes())?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let lines = loaded.leases.len();
        Ok((LeaseStore { path, file, lines }, loaded))
    }

    /// Appends lease changes and makes them durable with one fsync.
    pub fn append<'a>(&mut self, leases: impl IntoIterator<Item = &'a Lease>) -> io::Result<usize> {
        let text: String = leases.into_iter().map(encode).collect();
        if text.is_empty() {
            return Ok(0);
        }
        let n = text.matches('\n').count();
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()?;
        self.lines += n;
        Ok(n)
    }

    /// Whether the log has grown enough past `live` records to be rewritten.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.lines > 2 * live + 1024
    }

    /// Rewrites the log as exactly `leases`, atomically.
    pub fn compact<'a>(&mut self, leases: impl IntoIterator<Item = &'a Lease>) -> io::Result<()> {
        let text: String = leases
            .into_iter()
            .filter(|l| l.state != LeaseState::Offered)
            .map(encode)
            .collect();
        write_atomic(&self.path, text.as_bytes())?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.lines = text.matches('\n').count();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(n: u8, state: LeaseState) -> Lease {
        let mac = MacAddr([0x52, 0x54, 0, 0, 0, n]);
        Lease {
            addr: Ipv4Addr::new(172, 16, 10, n),
            client: ClientKey::from_mac(mac),
            mac,
            hostname: n.is_multiple_of(2).then(|| format!("host{n}")),
            expires: 1_000_000 + u64::from(n),
            state,
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("routerd-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap_or_default();
        d
    }

    #[test]
    fn records_round_trip_and_reject_tampering() {
        for l in [lease(1, LeaseState::Bound), lease(2, LeaseState::Released)] {
            let line = encode(&l);
            assert_eq!(decode(line.trim_end()), Some(l));
            let tampered = line.replacen("172.16.10", "172.16.11", 1);
            assert_eq!(decode(tampered.trim_end()), None);
        }
        assert_eq!(decode("garbage"), None);
        assert_eq!(decode(""), None);
    }

    #[test]
    fn append_then_reopen_gives_every_record_back() {
        let dir = tempdir("reopen");
        let (mut store, loaded) = LeaseStore::open(&dir).expect("open");
        assert!(loaded.leases.is_empty());
        let batch = [lease(1, LeaseState::Bound), lease(2, LeaseState::Bound)];
        assert_eq!(store.append(&batch).expect("append"), 2);
        store.append(&[lease(1, LeaseState::Released)]).expect("append");
        drop(store);
        let (_, loaded) = LeaseStore::open(&dir).expect("reopen");
        assert_eq!(
            loaded.leases,
            vec![
                lease(1, LeaseState::Bound),
                lease(2, LeaseState::Bound),
                lease(1, LeaseState::Released)
            ]
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn torn_last_line_is_dropped_quietly() {
        let dir = tempdir("torn");
        let good = encode(&lease(1, LeaseState::Bound));
        let torn = &encode(&lease(2, LeaseState::Bound))[..20];
        fs::write(dir.join(LEASES_FILE_NAME), format!("{good}{torn}")).expect("write");
        let (_, loaded) = LeaseStore::open(&dir).expect("open");
        assert!(loaded.torn_tail);
        assert!(loaded.moved_aside.is_none());
        assert_eq!(loaded.leases, vec![lease(1, LeaseState::Bound)]);
        assert_eq!(
            fs::read_to_string(dir.join(LEASES_FILE_NAME)).unwrap_or_default(),
            good,
            "the torn tail is cut off"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_file_is_moved_aside_and_good_records_kept() {
        let dir = tempdir("corrupt");
        let a = encode(&lease(1, LeaseState::Bound));
        let b = encode(&lease(3, LeaseState::Bound));
        fs::write(dir.join(LEASES_FILE_NAME), format!("{a}\u{0}\u{1}binary junk\n{b}")).expect("write");
        let (mut store, loaded) = LeaseStore::open(&dir).expect("open");
        let aside = loaded.moved_aside.clone().expect("moved aside");
        assert!(aside.exists());
        assert_eq!(
            loaded.leases,
            vec![lease(1, LeaseState::Bound), lease(3, LeaseState::Bound)]
        );
        store
            .append(&[lease(5, LeaseState::Bound)])
            .expect("append after recovery");
        let (_, again) = LeaseStore::open(&dir).expect("reopen");
        assert_eq!(again.leases.len(), 3);
        assert!(again.moved_aside.is_none());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn compaction_keeps_the_given_leases_only() {
        let dir = tempdir("compact");
        let (mut store, _) = LeaseStore::open(&dir).expect("open");
        for _ in 0..3 {
            store
                .append(&[lease(1, LeaseState::Bound), lease(2, LeaseState::Bound)])
                .expect("append");
        }
        store.compact(&[lease(2, LeaseState::Bound)]).expect("compact");
        store.append(&[lease(4, LeaseState::Bound)]).expect("append");
        let (_, loaded) = LeaseStore::open(&dir).expect("reopen");
        assert_eq!(
            loaded.leases,
            vec![lease(2, LeaseState::Bound), lease(4, LeaseState::Bound)]
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
