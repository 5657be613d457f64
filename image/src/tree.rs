//! The initramfs as a tree in memory, written out as cpio with parents first.

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::cpio;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir(u32),
    File { mode: u32, data: Vec<u8> },
    Symlink(String),
    CharDev { mode: u32, major: u32, minor: u32 },
}

#[derive(Debug, Default)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    pub fn dir(&mut self, path: &str) {
        let p = clean(path);
        self.parents(&p);
        self.nodes.entry(p).or_insert(Node::Dir(0o755));
    }

    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        self.put(path, Node::File { mode, data });
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.put(path, Node::Symlink(target.to_string()));
    }

    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.put(path, Node::CharDev { mode, major, minor });
    }

    #[cfg(test)]
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(&clean(path))
    }

    fn put(&mut self, path: &str, node: Node) {
        let p = clean(path);
        self.parents(&p);
        self.nodes.insert(p, node);
    }

    fn parents(&mut self, p: &str) {
        let mut acc = String::new();
        let parts: Vec<&str> = p.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            self.nodes.entry(acc.clone()).or_insert(Node::Dir(0o755));
        }
    }

    /// Writes every node, each directory before what it holds.
    pub fn write_cpio<W: Write>(&self, out: W) -> io::Result<W> {
        let mut w = cpio::Writer::new(out);
        // A component-wise order puts "a" before "a/b" before "a-b".
        let mut paths: Vec<&String> = self.nodes.keys().collect();
        paths.sort_by(|a, b| a.split('/').cmp(b.split('/')));
        for p in paths {
            match &self.nodes[p] {
                Node::Dir(mode) => w.dir(p, *mode)?,
                Node::File { mode, data } => w.file(p, *mode, data)?,
                Node::Symlink(t) => w.symlink(p, t)?,
                Node::CharDev { mode, major, minor } => w.char_dev(p, *mode, *major, *minor)?,
            }
        }
        w.finish()
    }
}

fn clean(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_created_and_written_first() -> io::Result<()> {
        let mut t = Tree::new();
        t.file("/lib/x86_64-linux-gnu/libc.so.6", 0o755, b"elf".to_vec());
        t.file("/lib-extra/x", 0o644, vec![]);
        t.symlink(
            "/lib64/ld-linux-x86-64.so.2",
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        );
        assert_eq!(t.get("lib"), Some(&Node::Dir(0o755)));
        let out = t.write_cpio(Vec::new())?;
        let text = String::from_utf8_lossy(&out);
        let pos = |s: &str| text.find(&format!("{s}\0")).unwrap_or(usize::MAX);
        assert!(pos("lib") < pos("lib/x86_64-linux-gnu"));
        assert!(pos("lib/x86_64-linux-gnu") < pos("lib/x86_64-linux-gnu/libc.so.6"));
        assert!(pos("lib-extra") < pos("lib-extra/x"));
        assert!(pos("lib64/ld-linux-x86-64.so.2") < usize::MAX);
        Ok(())
    }
}
