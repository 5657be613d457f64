//! A writer for the cpio "newc" format the kernel unpacks as initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst).

use std::io::{self, Write};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

pub struct Writer<W: Write> {
    out: W,
    ino: u32,
    offset: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Writer<W> {
        Writer { out, ino: 1, offset: 0 }
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.entry(path, S_IFDIR | perm, 2, (0, 0), &[])
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | perm, 1, (0, 0), data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(path, S_IFCHR | perm, 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        Ok(self.out)
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let name = path.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad cpio path {path:?}"),
            ));
        }
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{path}: too large for cpio")))?;
        let ino = self.ino;
        if ino != 0 {
            self.ino += 1;
        }
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    fn write(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.offset += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = ((4 - self.offset % 4) % 4) as usize;
        self.write(&[0u8; 3][..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(h: &[u8], i: usize) -> u32 {
        let s = std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).unwrap_or("");
        u32::from_str_radix(s, 16).unwrap_or(u32::MAX)
    }

    #[test]
    fn one_file_is_laid_out_as_newc() -> io::Result<()> {
        let mut w = Writer::new(Vec::new());
        w.file("/init", 0o755, b"hello")?;
        let out = w.finish()?;
        assert_eq!(&out[..6], b"070701");
        assert_eq!(field(&out, 1), S_IFREG | 0o755);
        assert_eq!(field(&out, 6), 5, "filesize");
        assert_eq!(field(&out, 11), 5, "namesize counts the NUL");
        // 110 header + "init\0" = 115 -> padded to 116, then data.
        assert_eq!(&out[110..115], b"init\0");
        assert_eq!(&out[116..121], b"hello");
        // data padded to 124, trailer follows
        assert_eq!(&out[124..130], b"070701");
        assert_eq!(&out[124 + 110..124 + 110 + 10], b"TRAILER!!!");
        assert_eq!(out.len() % 4, 0);
        Ok(())
    }

    #[test]
    fn devices_and_symlinks() -> io::Result<()> {
        let mut w = Writer::new(Vec::new());
        w.char_dev("dev/console", 0o600, 5, 1)?;
        let out = w.finish()?;
        assert_eq!(field(&out, 1), S_IFCHR | 0o600);
        assert_eq!((field(&out, 9), field(&out, 10)), (5, 1));

        let mut w = Writer::new(Vec::new());
        w.symlink("lib64/ld.so", "../lib/ld.so")?;
        let out = w.finish()?;
        assert_eq!(field(&out, 1), S_IFLNK | 0o777);
        assert_eq!(field(&out, 6), 12);
        Ok(())
    }

    #[test]
    fn inodes_are_unique() -> io::Result<()> {
        let mut w = Writer::new(Vec::new());
        w.dir("a", 0o755)?;
        w.dir("b", 0o755)?;
        let out = w.finish()?;
        assert_ne!(field(&out, 0), field(&out[112..], 0));
        Ok(())
    }

    #[test]
    fn rejects_empty_names() {
        let mut w = Writer::new(Vec::new());
        assert!(w.file("/", 0o644, b"").is_err());
    }
}
