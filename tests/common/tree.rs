//! Tree comparison for tests: two directory trees hold the same entries with the same type,
//! mode, owner, mtime, size, contents, symlink targets, device numbers and hard-link groups.
//!
//! Test-only code, kept out of the program: the integration tests use it as
//! `common::tree::compare_trees`, and the crate's unit tests include this same file as
//! `crate::testkit::tree` (see `src/lib.rs`).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Compares two trees: the same entries with the same type, mode, uid/gid, mtime (seconds),
/// size and contents, symlink targets (bytes), device numbers, and the same hard-link groups.
///
/// `ignore_top` names paths relative to the roots to leave out on both sides (usually top-level
/// names such as `logs`; deeper paths like `seafile-data/tmp` work too). Pass `"."` to skip the
/// roots' own metadata. Symlinks' own mode and mtime are not compared.
///
/// Returns a readable description of the first differences.
pub fn compare_trees(a: &Path, b: &Path, ignore_top: &[&str]) -> Result<(), String> {
    const MAX_DIFFS: usize = 30;
    let ignore: HashSet<PathBuf> = ignore_top.iter().filter(|p| **p != ".").map(PathBuf::from).collect();
    let check_root = !ignore_top.contains(&".");
    let left = scan_tree(a, &ignore)?;
    let right = scan_tree(b, &ignore)?;

    let mut diffs = Vec::new();
    for (rel, l) in &left {
        if rel.as_os_str().is_empty() && !check_root {
            continue;
        }
        let shown = if rel.as_os_str().is_empty() { Path::new(".") } else { rel.as_path() };
        let Some(r) = right.get(rel) else {
            diffs.push(format!("{shown:?}: only in `{}`", a.display()));
            continue;
        };
        node_diffs(shown, l, r, &mut diffs);
        if l.kind == Kind::File && r.kind == Kind::File && l.size == r.size {
            if let Some(d) = content_diff(&a.join(rel), &b.join(rel)) {
                diffs.push(format!("{shown:?}: {d}"));
            }
        }
    }
    for rel in right.keys().filter(|rel| !left.contains_key(*rel)) {
        diffs.push(format!("{rel:?}: only in `{}`", b.display()));
    }
    let (lg, rg) = (link_groups(&left), link_groups(&right));
    for group in lg.difference(&rg) {
        diffs.push(format!("hard links {group:?} in `{}` only", a.display()));
    }
    for group in rg.difference(&lg) {
        diffs.push(format!("hard links {group:?} in `{}` only", b.display()));
    }

    if diffs.is_empty() {
        return Ok(());
    }
    let total = diffs.len();
    let mut text = format!("{total} difference(s) between `{}` and `{}`:", a.display(), b.display());
    for d in diffs.iter().take(MAX_DIFFS) {
        text.push_str("\n  ");
        text.push_str(d);
    }
    if total > MAX_DIFFS {
        text.push_str(&format!("\n  ... and {} more", total - MAX_DIFFS));
    }
    Err(text)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Char,
    Block,
    Socket,
    Unknown,
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    size: u64,
    rdev: u64,
    target: Option<Vec<u8>>,
    inode: (u64, u64),
}

fn scan_tree(root: &Path, ignore: &HashSet<PathBuf>) -> Result<BTreeMap<PathBuf, Node>, String> {
    let mut nodes = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let abs = root.join(&rel);
        let meta = fs::symlink_metadata(&abs).map_err(|e| format!("`{}`: {e}", abs.display()))?;
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() {
            Kind::Char
        } else if ft.is_block_device() {
            Kind::Block
        } else if ft.is_socket() {
            Kind::Socket
        } else {
            Kind::Unknown
        };
        let target = if kind == Kind::Symlink {
            let t = fs::read_link(&abs).map_err(|e| format!("`{}`: {e}", abs.display()))?;
            Some(t.into_os_string().into_vec())
        } else {
            None
        };
        if kind == Kind::Dir {
            let entries = fs::read_dir(&abs).map_err(|e| format!("`{}`: {e}", abs.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("`{}`: {e}", abs.display()))?;
                let child = rel.join(entry.file_name());
                if !ignore.contains(&child) {
                    todo.push(child);
                }
            }
        }
        nodes.insert(
            rel,
            Node {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: meta.mtime(),
                size: meta.len(),
                rdev: meta.rdev(),
                target,
                inode: (meta.dev(), meta.ino()),
            },
        );
    }
    Ok(nodes)
}

fn node_diffs(rel: &Path, l: &Node, r: &Node, diffs: &mut Vec<String>) {
    if l.kind != r.kind {
        diffs.push(format!("{rel:?}: type {:?} != {:?}", l.kind, r.kind));
        return;
    }
    let symlink = l.kind == Kind::Symlink;
    if !symlink && l.mode != r.mode {
        diffs.push(format!("{rel:?}: mode {:o} != {:o}", l.mode, r.mode));
    }
    if (l.uid, l.gid) != (r.uid, r.gid) {
        diffs.push(format!("{rel:?}: owner {}:{} != {}:{}", l.uid, l.gid, r.uid, r.gid));
    }
    if !symlink && l.mtime != r.mtime {
        diffs.push(format!("{rel:?}: mtime {} != {}", l.mtime, r.mtime));
    }
    if l.kind == Kind::File && l.size != r.size {
        diffs.push(format!("{rel:?}: size {} != {}", l.size, r.size));
    }
    if matches!(l.kind, Kind::Char | Kind::Block) && l.rdev != r.rdev {
        diffs.push(format!("{rel:?}: device {:#x} != {:#x}", l.rdev, r.rdev));
    }
    if l.target != r.target {
        let show = |t: &Option<Vec<u8>>| String::from_utf8_lossy(t.as_deref().unwrap_or_default()).into_owned();
        diffs.push(format!("{rel:?}: symlink target {:?} != {:?}", show(&l.target), show(&r.target)));
    }
}

/// Compares two files' contents in chunks; describes the first difference.
fn content_diff(a: &Path, b: &Path) -> Option<String> {
    fn fill(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
    let open = |p: &Path| File::open(p).map_err(|e| format!("`{}`: {e}", p.display()));
    let (mut fa, mut fb) = match (open(a), open(b)) {
        (Ok(fa), Ok(fb)) => (fa, fb),
        (Err(e), _) | (_, Err(e)) => return Some(e),
    };
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    loop {
        let na = match fill(&mut fa, &mut ba) {
            Ok(n) => n,
            Err(e) => return Some(format!("`{}`: {e}", a.display())),
        };
        let nb = match fill(&mut fb, &mut bb) {
            Ok(n) => n,
            Err(e) => return Some(format!("`{}`: {e}", b.display())),
        };
        if let Some(i) = ba[..na.min(nb)].iter().zip(&bb[..na.min(nb)]).position(|(x, y)| x != y) {
            return Some(format!("contents differ at byte {}", offset + i as u64));
        }
        if na != nb {
            return Some(format!("contents differ in length after byte {}", offset + na.min(nb) as u64));
        }
        if na == 0 {
            return None;
        }
        offset += na as u64;
    }
}

/// Sets of paths that share an inode (regular files only).
fn link_groups(nodes: &BTreeMap<PathBuf, Node>) -> BTreeSet<Vec<PathBuf>> {
    let mut by_inode: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
    for (rel, node) in nodes {
        if node.kind == Kind::File {
            by_inode.entry(node.inode).or_default().push(rel.clone());
        }
    }
    by_inode
        .into_values()
        .filter(|paths| paths.len() > 1)
        .map(|mut paths| {
            paths.sort();
            paths
        })
        .collect()
}
