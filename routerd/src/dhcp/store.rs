//! Durable leases: an append-only log, one checksummed line per lease change, written
//! and fsynced once per batch of replies (group commit), and compacted into a fresh
//! file by temp + fsync + rename when it has grown well past the live table.
//!
//! A torn last line (power cut mid-append) is cut off. Any other bad line means the
//! file is corrupt: it is kept aside with a log line, the good records are kept, and
//! the server starts.
//!
//! A full (or failing) disk never costs the records already on it: reading needs no
//! free space and is done apart from opening for append; a failed append is cut back
//! off the file (truncating needs no space either), after which the store is *behind*
//! memory until `compact` rewrites it whole from the table.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::pool::{ClientKey, Lease, LeaseState, MAX_HOSTNAME};
use crate::state::write_atomic;
use config::image::LEASES_FILE_NAME;
use config::MacAddr;

pub struct LeaseStore {
    path: PathBuf,
    /// Open for append while the file holds every change made in memory; `None` once a
    /// write failed, until a whole rewrite (`compact`) succeeds.
    file: Option<File>,
    /// Bytes of whole records in the file: where a failed append is cut back to.
    len: u64,
    lines: usize,
}

pub(crate) fn encode(l: &Lease) -> String {
    let state = match l.state {
        LeaseState::Bound => "B",
        LeaseState::Released | LeaseState::Offered => "R",
    };
    let host = l.hostname.as_deref().filter(|h| !h.is_empty()).unwrap_or("-");
    let cut = (0..=host.len().min(MAX_HOSTNAME))
        .rev()
        .find(|i| host.is_char_boundary(*i))
        .unwrap_or(0);
    let host = &host[..cut];
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

pub(crate) fn decode(line: &str) -> Option<Lease> {
    let (crc, record) = line.split_once(' ')?;
    if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(record.as_bytes()) {
        return None;
    }
    let mut f = record.split(' ');
    let addr = f.next()?.parse::<Ipv4Addr>().ok()?;
    let mac = f.next()?.parse::<MacAddr>().ok()?;
    let client = ClientKey::from_hex(f.next()?)?;
    // Records of older versions kept identifiers of any length: key those by MAC,
    // as requests from the same client are now.
    let client = ClientKey::for_client(&client.0, mac);
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
    /// Where a copy of a corrupt file was kept.
    pub moved_aside: Option<PathBuf>,
    /// Why the file cannot be written now (the leases were read all the same); the
    /// store is behind until a `compact` succeeds.
    pub write_error: Option<io::Error>,
}

/// What a LAN whose own log does not exist yet (new, renamed, or the single-LAN form
/// rewritten as [[lan]]) takes over from the other lease logs in its state directory:
/// the leases of its prefix, and the logs that held nothing else.
#[derive(Debug, Default)]
pub struct TakeOver {
    pub leases: Vec<Lease>,
    /// Logs all of whose records were taken over: once the new log holds them, they
    /// are retired, so that a later config naming them again cannot bring back leases
    /// that have changed since.
    whole: Vec<PathBuf>,
}

impl TakeOver {
    /// Reads the other logs (those of other LANs, or of this LAN under an earlier name
    /// or in the single-LAN form) for the leases in `net`. The same address or client
    /// in two logs: the lease that expires last wins.
    pub fn read(dir: &Path, own: &str, net: ipnet::Ipv4Net) -> TakeOver {
        let Ok(entries) = fs::read_dir(dir) else {
            return TakeOver::default();
        };
        let mut found = TakeOver::default();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let is_log = name == LEASES_FILE_NAME
                || name
                    .strip_prefix(LEASES_FILE_NAME)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|lan| !lan.contains('.'));
            if !is_log || name == own {
                continue;
            }
            let Ok((loaded, _, _)) = read(&entry.path()) else {
                continue;
            };
            let (ours, others): (Vec<Lease>, Vec<Lease>) =
                loaded.leases.into_iter().partition(|l| net.contains(&l.addr));
            if others.is_empty() && !ours.is_empty() {
                found.whole.push(entry.path());
            }
            found.leases.extend(ours);
        }
        found.leases.sort_by_key(|l| std::cmp::Reverse(l.expires));
        let mut addrs = std::collections::HashSet::new();
        let mut clients = std::collections::HashSet::new();
        found
            .leases
            .retain(|l| addrs.insert(l.addr) & clients.insert(l.client.clone()));
        found
    }

    /// Renames the logs taken over whole to `<name>.taken-by-<own>`: kept for a person
    /// to look at, no longer read as a lease log.
    pub fn retire(&self, own: &str) -> io::Result<()> {
        for path in &self.whole {
            let mut aside = path.clone().into_os_string();
            aside.push(format!(".taken-by-{own}"));
            fs::rename(path, aside)?;
        }
        if let Some(dir) = self.whole.first().and_then(|p| p.parent()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Reads the log: the leases, whether any line other than the last was bad, and the
/// length of the file up to the end of its last whole line.
fn read(path: &Path) -> io::Result<(Loaded, bool, u64)> {
    let text = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Loaded::default(), false, 0)),
        Err(e) => return Err(e),
    };
    let mut loaded = Loaded::default();
    let mut corrupt = false;
    let complete = text.ends_with(b"\n");
    let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
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
    Ok((loaded, corrupt, whole as u64))
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LeaseStore {
    /// Reads the lease log in `dir` and gets it ready for appending. Returns the
    /// leases it holds, oldest record first (later records win). Fails only when the
    /// file cannot be read; when it cannot be written, the leases come back all the
    /// same with `Loaded::write_error` set.
    pub fn open(dir: &Path) -> io::Result<(LeaseStore, Loaded)> {
        LeaseStore::open_named(dir, LEASES_FILE_NAME)
    }

    /// Like [`LeaseStore::open`], for the lease log `name` in `dir` (one per LAN).
    pub fn open_named(dir: &Path, name: &str) -> io::Result<(LeaseStore, Loaded)> {
        let path = dir.join(name);
        let (mut loaded, corrupt, whole) = read(&path)?;
        let mut store = LeaseStore {
            path,
            file: None,
            len: 0,
            lines: loaded.leases.len(),
        };
        if corrupt {
            // Keep the corrupt file for a post-mortem as a second name of the same
            // inode (no space needed), then replace it with the good records. If that
            // fails, the corrupt file stays where it is and is read the same way again.
            let aside = dir.join(format!("{name}.corrupt-{}", std::process::id()));
            let linked = fs::hard_link(&store.path, &aside).is_ok();
            let text: String = loaded.leases.iter().map(encode).collect();
            match write_atomic(&store.path, text.as_bytes()) {
                Ok(()) => loaded.moved_aside = linked.then_some(aside),
                Err(e) => {
                    if linked {
                        let _ = fs::remove_file(&aside);
                    }
                    loaded.write_error = Some(e);
                    return Ok((store, loaded));
                }
            }
        }
        let opened = open_append(&store.path).and_then(|f| {
            if loaded.torn_tail && !corrupt {
                // Cutting the torn record off needs no free space, unlike a rewrite.
                f.set_len(whole)?;
            }
            Ok(f)
        });
        match opened.and_then(|f| Ok((f.metadata()?.len(), f))) {
            Ok((len, f)) => {
                store.len = len;
                store.file = Some(f);
            }
            Err(e) => loaded.write_error = Some(e),
        }
        Ok((store, loaded))
    }

    /// Whether the file holds every change handed to the store so far; when not, only
    /// a `compact` brings it up to date.
    pub fn is_current(&self) -> bool {
        self.file.is_some()
    }

    /// Appends lease changes and makes them durable with one fsync. After an error the
    /// store is behind (see `is_current`).
    pub fn append<'a>(&mut self, leases: impl IntoIterator<Item = &'a Lease>) -> io::Result<usize> {
        let text: String = leases.into_iter().map(encode).collect();
        if text.is_empty() {
            return Ok(0);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("the lease file is behind: it must be rewritten whole"));
        };
        let n = text.matches('\n').count();
        match file.write_all(text.as_bytes()).and_then(|()| file.sync_data()) {
            Ok(()) => {
                self.len += text.len() as u64;
                self.lines += n;
                Ok(n)
            }
            Err(e) => {
                // Cut off what made it in (half a record, say) so that the file stays a
                // clean log of whole records; the changes are now in memory only.
                let _ = file.set_len(self.len);
                self.file = None;
                Err(e)
            }
        }
    }

    /// Whether the log has grown enough past `live` records to be rewritten.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.lines > 2 * live + 1024
    }

    /// Rewrites the log as exactly `leases`, atomically. On failure the file on disk is
    /// left as it was (and the store as current as it was).
    pub fn compact<'a>(&mut self, leases: impl IntoIterator<Item = &'a Lease>) -> io::Result<()> {
        let text: String = leases
            .into_iter()
            .filter(|l| l.state != LeaseState::Offered)
            .map(encode)
            .collect();
        let written = write_atomic(&self.path, text.as_bytes()).and_then(|()| open_append(&self.path));
        match written {
            Ok(file) => {
                self.file = Some(file);
                self.len = text.len() as u64;
                self.lines = text.matches('\n').count();
                Ok(())
            }
            Err(e) => {
                // The rename may have happened before the error (a failed directory
                // fsync): then the handle points at the replaced file, useless now.
                if !self.file.as_ref().is_some_and(|f| same_file(f, &self.path)) {
                    self.file = None;
                }
                Err(e)
            }
        }
    }
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
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
    fn the_other_lease_logs_are_read_but_not_this_lans_nor_temp_or_corrupt_copies() {
        let dir = tempdir("others");
        let (a, b, c) = (
            lease(1, LeaseState::Bound),
            lease(2, LeaseState::Bound),
            lease(3, LeaseState::Bound),
        );
        fs::write(dir.join(LEASES_FILE_NAME), encode(&a)).expect("write");
        fs::write(dir.join(format!("{LEASES_FILE_NAME}-dev")), encode(&b)).expect("write");
        fs::write(dir.join(format!("{LEASES_FILE_NAME}-prod")), encode(&c)).expect("write");
        fs::write(dir.join(format!("{LEASES_FILE_NAME}.tmp")), encode(&c)).expect("write");
        fs::write(dir.join(format!("{LEASES_FILE_NAME}.corrupt-1")), encode(&c)).expect("write");
        let net = "172.16.0.0/16".parse().expect("net");
        let mut found = TakeOver::read(&dir, &format!("{LEASES_FILE_NAME}-prod"), net).leases;
        found.sort_by_key(|l| l.addr);
        assert_eq!(found, [a, b]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_log_taken_over_whole_is_retired_and_the_latest_lease_wins() {
        let dir = tempdir("takeover");
        let old = lease(1, LeaseState::Bound);
        let newer = Lease {
            expires: old.expires + 100,
            ..old.clone()
        };
        let elsewhere = Lease {
            addr: Ipv4Addr::new(10, 20, 0, 5),
            ..lease(2, LeaseState::Bound)
        };
        fs::write(dir.join(LEASES_FILE_NAME), encode(&old)).expect("write");
        fs::write(dir.join(format!("{LEASES_FILE_NAME}-prod")), encode(&newer)).expect("write");
        fs::write(dir.join(format!("{LEASES_FILE_NAME}-dmz")), encode(&elsewhere)).expect("write");
        let net = "172.16.0.0/16".parse().expect("net");
        let own = format!("{LEASES_FILE_NAME}-production");
        let taken = TakeOver::read(&dir, &own, net);
        assert_eq!(
            taken.leases,
            [newer],
            "one lease per address: the one that expires last"
        );
        taken.retire(&own).expect("retire");
        assert!(!dir.join(LEASES_FILE_NAME).exists() && !dir.join(format!("{LEASES_FILE_NAME}-prod")).exists());
        assert!(dir.join(format!("{LEASES_FILE_NAME}.taken-by-{own}")).exists());
        assert!(
            dir.join(format!("{LEASES_FILE_NAME}-dmz")).exists(),
            "another LAN's log stays"
        );
        assert!(
            TakeOver::read(&dir, &own, net).leases.is_empty(),
            "a retired log is not read again"
        );
        let _ = fs::remove_dir_all(&dir);
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
    fn an_old_record_with_a_long_client_identifier_is_keyed_by_mac() {
        let mut old = lease(1, LeaseState::Bound);
        old.client = ClientKey(vec![0xab; 1200]); // as older versions wrote them
        let back = decode(encode(&old).trim_end()).expect("decodes");
        assert_eq!(back.client, ClientKey::from_mac(old.mac));
        let mut named = lease(2, LeaseState::Bound);
        named.hostname = Some("h".repeat(300));
        let back = decode(encode(&named).trim_end()).expect("decodes");
        assert_eq!(back.hostname.map(|h| h.len()), Some(MAX_HOSTNAME));
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

    /// Makes writing `dir`'s temp file fail the way a full disk does: the temp name
    /// is a link to /dev/full, whose writes fail with ENOSPC.
    fn temp_file_hits_a_full_disk(dir: &Path) -> PathBuf {
        let tmp = dir.join(format!("{LEASES_FILE_NAME}.tmp"));
        std::os::unix::fs::symlink("/dev/full", &tmp).expect("symlink");
        tmp
    }

    #[test]
    fn a_torn_tail_on_a_full_disk_loses_no_record_and_appending_goes_on() {
        let dir = tempdir("torn-full");
        let good = encode(&lease(1, LeaseState::Bound)) + &encode(&lease(2, LeaseState::Bound));
        let torn = &encode(&lease(3, LeaseState::Bound))[..20];
        fs::write(dir.join(LEASES_FILE_NAME), format!("{good}{torn}")).expect("write");
        let tmp = temp_file_hits_a_full_disk(&dir);
        let (mut store, loaded) = LeaseStore::open(&dir).expect("a full disk still reads");
        assert_eq!(
            loaded.leases,
            vec![lease(1, LeaseState::Bound), lease(2, LeaseState::Bound)]
        );
        assert!(loaded.torn_tail);
        assert!(loaded.write_error.is_none(), "{:?}", loaded.write_error);
        let _ = fs::remove_file(&tmp);
        store.append(&[lease(4, LeaseState::Bound)]).expect("append");
        let (_, again) = LeaseStore::open(&dir).expect("reopen");
        assert!(!again.torn_tail);
        assert_eq!(again.leases.len(), 3);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_are_read_back_when_the_file_cannot_be_opened_for_append() {
        let dir = tempdir("no-append");
        let path = dir.join(LEASES_FILE_NAME);
        let good = encode(&lease(1, LeaseState::Bound)) + &encode(&lease(2, LeaseState::Bound));
        fs::write(&path, &good).expect("write");
        // An immutable file cannot be opened for writing, not even by root.
        let immutable = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !immutable {
            eprintln!("skipped: chattr +i is not possible here (not root, or the file system has no such flag)");
            let _ = fs::remove_dir_all(&dir);
            return;
        }
        let opened = LeaseStore::open(&dir);
        let _ = std::process::Command::new("chattr").arg("-i").arg(&path).status();
        let (mut store, loaded) = opened.expect("reading needs no write access");
        assert_eq!(
            loaded.leases,
            vec![lease(1, LeaseState::Bound), lease(2, LeaseState::Bound)]
        );
        assert!(loaded.write_error.is_some());
        assert!(!store.is_current());
        assert!(
            store.append(&[lease(3, LeaseState::Bound)]).is_err(),
            "behind: no append"
        );
        // Writing comes back with a whole rewrite from memory.
        let table = [
            lease(1, LeaseState::Bound),
            lease(2, LeaseState::Bound),
            lease(3, LeaseState::Bound),
        ];
        store.compact(&table).expect("rewrite");
        assert!(store.is_current());
        store.append(&[lease(4, LeaseState::Bound)]).expect("append");
        let (_, again) = LeaseStore::open(&dir).expect("reopen");
        assert_eq!(again.leases.len(), 4);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_compaction_leaves_the_file_intact_and_no_temp_file() {
        let dir = tempdir("compact-full");
        let (mut store, _) = LeaseStore::open(&dir).expect("open");
        store
            .append(&[lease(1, LeaseState::Bound), lease(2, LeaseState::Bound)])
            .expect("append");
        let before = fs::read(dir.join(LEASES_FILE_NAME)).unwrap_or_default();
        let tmp = temp_file_hits_a_full_disk(&dir);
        let err = store
            .compact(&[lease(2, LeaseState::Bound)])
            .expect_err("the disk is full");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(
            !tmp.exists() && tmp.symlink_metadata().is_err(),
            "the temp file is cleaned up"
        );
        assert_eq!(fs::read(dir.join(LEASES_FILE_NAME)).unwrap_or_default(), before);
        // The log is still current: appends go on and every record reads back.
        assert!(store.is_current());
        store.append(&[lease(3, LeaseState::Bound)]).expect("append");
        let (_, loaded) = LeaseStore::open(&dir).expect("reopen");
        assert_eq!(loaded.leases.len(), 3);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_file_that_cannot_be_rewritten_stays_in_place_and_is_read() {
        let dir = tempdir("corrupt-full");
        let path = dir.join(LEASES_FILE_NAME);
        let text = format!(
            "{}junk\n{}",
            encode(&lease(1, LeaseState::Bound)),
            encode(&lease(3, LeaseState::Bound))
        );
        fs::write(&path, &text).expect("write");
        let tmp = temp_file_hits_a_full_disk(&dir);
        let (store, loaded) = LeaseStore::open(&dir).expect("open");
        assert_eq!(loaded.leases.len(), 2);
        assert!(loaded.write_error.is_some() && loaded.moved_aside.is_none());
        assert!(!store.is_current());
        assert_eq!(fs::read_to_string(&path).unwrap_or_default(), text);
        assert!(tmp.symlink_metadata().is_err());
        let names: Vec<_> = fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(names, vec![std::ffi::OsString::from(LEASES_FILE_NAME)]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_append_puts_the_store_behind_until_a_rewrite() {
        let dir = tempdir("append-full");
        let (mut store, _) = LeaseStore::open(&dir).expect("open");
        store.append(&[lease(1, LeaseState::Bound)]).expect("append");
        // Swap the handle for one whose writes fail like a full disk's.
        store.file = OpenOptions::new().write(true).open("/dev/full").ok();
        assert!(store.append(&[lease(2, LeaseState::Bound)]).is_err());
        assert!(!store.is_current());
        store
            .compact(&[lease(1, LeaseState::Bound), lease(2, LeaseState::Bound)])
            .expect("rewrite");
        store.append(&[lease(3, LeaseState::Bound)]).expect("append");
        let (_, loaded) = LeaseStore::open(&dir).expect("reopen");
        assert_eq!(loaded.leases.len(), 3);
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
