//! Streaming tar writer for a directory tree, and a tree comparison used to check a restore.
//!
//! This module owns turning a directory (the SeaTable data directory, the compose directory)
//! into a tar byte stream: walking it deterministically without following symlinks, encoding
//! each entry as GNU tar headers, streaming file contents through one fixed buffer, and coping
//! with files that change or vanish while we read them. It is synchronous: run it on a blocking
//! thread and hand it the write half of a bounded pipe.
//!
//! # The archive
//!
//! - The first member is `./`, the root directory itself, so that its mode, owner and mtime
//!   survive a restore. Every other member name is the path relative to the root made of normal
//!   components only (`conf/seafile.conf`); directory names end in `/`. Nothing is absolute and
//!   nothing contains `..`.
//! - Order: depth first, a directory before its contents, siblings sorted by name bytes, so the
//!   same tree always gives the same bytes.
//! - GNU format. Names and link targets of 100 bytes or more are written in full as GNU
//!   `././@LongLink` records (`L` and `K`); names and symlink targets are stored byte for byte
//!   (non-UTF-8, `//`, `./` and all). Values too large for octal fields (sizes of 8 GiB and
//!   more) use GNU base-256, as `tar::Header` does.
//! - Mode (all 12 permission bits), numeric uid/gid and mtime in whole seconds. No user or
//!   group names: restore by number (`tar --numeric-owner`). No PAX records: sub-second mtimes
//!   would cost an extra 1 KiB per member, and neither GNU tar's default format nor the `tar`
//!   crate's unpacker use them.
//! - A regular file with more than one link is stored once; later names of the same inode are
//!   hard-link members pointing at the first name. FIFOs and character/block devices are stored
//!   as such (with device numbers); sockets are skipped with a warning.
//!
//! Symlinks are not followed below the root, except those named in [`TarOptions::follow_symlinks`]:
//! each of those is archived as what it points to (a directory with its whole tree, or a file)
//! under the link's own name; symlinks inside a followed directory are archived as symlinks.
//! The root itself may be a symlink to a directory. Crossing into other file systems is allowed
//! (as GNU tar does).
//!
//! A symlink whose target lies outside the root (absolute and not below the root, or relative
//! and climbing out of it with `..`, resolved lexically from the link's directory) is archived
//! as a link, and what it points to is not in the archive: [`TarStats`] lists such links so
//! that the backup can say so.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use tar::{EntryType, Header};

/// Size of the one buffer through which headers and file contents go to the output.
const BUF_SIZE: usize = 1024 * 1024;
/// Drain the buffer before a file read that would get less room than this.
const MIN_READ: usize = 64 * 1024;
/// Tar block size.
const BLOCK: u64 = 512;
/// Size of the name and linkname fields of a tar header; longer values need a GNU long record.
const NAME_FIELD: usize = 100;
/// Symlinks pointing outside the root listed by name; the rest are only counted.
pub const MAX_EXTERNAL_LISTED: usize = 100;

/// A symlink of an archived directory whose target lies outside it (absolute, or climbing out
/// with `..`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq, Default)]
pub struct ExternalSymlink {
    /// Relative to the archived directory.
    pub path: String,
    /// The target as stored in the link.
    pub target: String,
}

/// What to leave out of the archive.
#[derive(Debug, Default, Clone)]
pub struct TarOptions {
    /// Paths relative to the root to leave out (whole subtrees), e.g. `logs`, `db-data`,
    /// `seafile-data/tmp`. Compared component by component, so `./logs` and `logs/` mean `logs`.
    /// An absolute path below the root is accepted too. Anything else (`..`, outside the root)
    /// is ignored with a warning.
    pub excludes: Vec<PathBuf>,
    /// Symlinks (paths relative to the root, normalized like `excludes`) archived as what they
    /// point to, under their own name.
    pub follow_symlinks: Vec<PathBuf>,
}

/// What went into the archive.
#[derive(Debug, Default, Clone)]
pub struct TarStats {
    /// Regular files stored with their contents.
    pub files: u64,
    /// Directories, the root (`./`) included.
    pub dirs: u64,
    pub symlinks: u64,
    /// Hard-link members (second and later names of an inode).
    pub hardlinks: u64,
    /// FIFOs and character/block devices.
    pub other: u64,
    /// File content bytes (as declared in the headers).
    pub bytes: u64,
    /// Things that did not stop the archive but that an operator should see: files that
    /// changed, shrank, grew or vanished while being archived, skipped sockets, ignored
    /// excludes. Each message starts with the path in backticks.
    pub warnings: Vec<String>,
    /// Excluded paths (relative to the root) that were actually present, in walk order.
    pub skipped: Vec<String>,
    /// Symlinks whose target lies outside the root, in walk order: the first
    /// [`MAX_EXTERNAL_LISTED`].
    pub external_symlinks: Vec<ExternalSymlink>,
    /// How many such symlinks there were in all.
    pub external_symlinks_total: u64,
    /// Symlinks archived as what they point to (relative to the root), in walk order.
    pub followed: Vec<String>,
}

/// Why an archive could not be written. The stream written so far is then incomplete and must
/// be thrown away.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// The root is missing, not a directory, or cannot be listed.
    #[error("cannot archive `{}`", path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading an entry below the root failed (other than it vanishing).
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing to the output failed (for example the upload stopped reading).
    #[error("cannot write the tar stream")]
    Write(#[source] io::Error),
}

impl crate::error::Classify for TarError {
    fn class(&self) -> crate::error::Class {
        crate::error::Class::Source
    }
}

/// Writes a tar archive of the tree at `root` to `out`, finishes it and flushes `out`.
///
/// See the module documentation for what the archive contains. On error the output holds an
/// incomplete archive.
pub fn write_tar<W: Write>(root: &Path, opts: &TarOptions, out: W) -> Result<TarStats, TarError> {
    let root_err = |source| TarError::Root { path: root.to_path_buf(), source };
    let meta = fs::metadata(root).map_err(root_err)?;
    if !meta.is_dir() {
        return Err(root_err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory")));
    }
    let names = list_dir(root).map_err(root_err)?;

    let mut walker = Walker::new(root, opts, out);
    let mut header = walker.header(&meta, EntryType::Directory);
    put_header(&mut walker.out, &mut header, b"./", None).map_err(TarError::Write)?;
    walker.stats.dirs += 1;

    // One list of not yet visited names per open directory, sorted so that pop() gives the
    // smallest; the walker's path always names the entry being visited.
    let mut stack = vec![names];
    while let Some(top) = stack.last_mut() {
        let Some(name) = top.pop() else {
            stack.pop();
            if !stack.is_empty() {
                walker.leave();
            }
            continue;
        };
        walker.enter(&name);
        match walker.entry()? {
            Some(children) => stack.push(children),
            None => walker.leave(),
        }
    }

    walker.out.put_zeros(2 * BLOCK).map_err(TarError::Write)?;
    walker.out.finish().map_err(TarError::Write)?;
    Ok(walker.stats)
}

/// The walk's state: output, statistics and the path of the entry being visited.
struct Walker<W: Write> {
    out: Out<W>,
    stats: TarStats,
    excludes: HashSet<PathBuf>,
    follow: HashSet<PathBuf>,
    /// The root as given (when absolute) and canonical: absolute link targets below it are
    /// inside the archive.
    roots: Vec<PathBuf>,
    /// First member name of each multiply-linked regular file, by (device, inode).
    links: HashMap<(u64, u64), Box<[u8]>>,
    /// The entry being visited: `abs` is `root` joined with `rel`.
    abs: PathBuf,
    rel: PathBuf,
    /// Scratch space for member names that are not just `rel` (directories).
    name: Vec<u8>,
}

impl<W: Write> Walker<W> {
    fn new(root: &Path, opts: &TarOptions, out: W) -> Self {
        let mut stats = TarStats::default();
        let excludes = normalize_paths(root, &opts.excludes, "exclude", &mut stats.warnings);
        let follow = normalize_paths(root, &opts.follow_symlinks, "symlink to follow", &mut stats.warnings);
        Walker {
            out: Out::new(out),
            stats,
            excludes,
            follow,
            roots: roots_of(root),
            links: HashMap::new(),
            abs: root.to_path_buf(),
            rel: PathBuf::new(),
            name: Vec::new(),
        }
    }

    fn enter(&mut self, name: &OsString) {
        self.abs.push(name);
        self.rel.push(name);
    }

    fn leave(&mut self) {
        self.abs.pop();
        self.rel.pop();
    }

    /// Archives the current entry. Returns the sorted names of its children when it is a
    /// directory to descend into.
    fn entry(&mut self) -> Result<Option<Vec<OsString>>, TarError> {
        let tools_own = self.rel.components().count() == 1
            && self.rel.to_string_lossy().starts_with(crate::seatable::defaults::TOOL_ENTRY_PREFIX);
        if tools_own || (!self.excludes.is_empty() && self.excludes.contains(&self.rel)) {
            tracing::debug!(path = %self.abs.display(), "excluded");
            self.stats.skipped.push(self.rel.to_string_lossy().into_owned());
            return Ok(None);
        }
        let meta = match fs::symlink_metadata(&self.abs) {
            Ok(meta) => meta,
            Err(e) if is_vanished(&e) => {
                self.warn("vanished before it could be archived; skipped");
                return Ok(None);
            }
            Err(e) => return Err(self.read_err(e)),
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            self.dir(&meta)
        } else if ft.is_file() {
            self.file(&meta, false).map(|()| None)
        } else if ft.is_symlink() && !self.follow.is_empty() && self.follow.contains(&self.rel) {
            self.followed(&meta)
        } else if ft.is_symlink() {
            self.symlink(&meta).map(|()| None)
        } else if ft.is_fifo() {
            self.special(&meta, EntryType::Fifo).map(|()| None)
        } else if ft.is_char_device() {
            self.special(&meta, EntryType::Char).map(|()| None)
        } else if ft.is_block_device() {
            self.special(&meta, EntryType::Block).map(|()| None)
        } else if ft.is_socket() {
            self.warn("socket skipped (sockets cannot be archived)");
            Ok(None)
        } else {
            self.warn("unknown file type; skipped");
            Ok(None)
        }
    }

    fn dir(&mut self, meta: &Metadata) -> Result<Option<Vec<OsString>>, TarError> {
        // List before writing the header, so a directory that vanishes leaves no trace.
        let names = match list_dir(&self.abs) {
            Ok(names) => names,
            Err(e) if is_vanished(&e) => {
                self.warn("vanished before it could be archived; skipped");
                return Ok(None);
            }
            Err(e) => return Err(self.read_err(e)),
        };
        let mut header = self.header(meta, EntryType::Directory);
        self.name.clear();
        self.name.extend_from_slice(self.rel.as_os_str().as_bytes());
        self.name.push(b'/');
        put_header(&mut self.out, &mut header, &self.name, None).map_err(TarError::Write)?;
        self.stats.dirs += 1;
        Ok(Some(names))
    }

    /// A symlink to follow: archived as the directory or file it points to. Should that be gone
    /// or of another kind by now (it was checked before the run), the link is archived as such.
    fn followed(&mut self, link: &Metadata) -> Result<Option<Vec<OsString>>, TarError> {
        let meta = match fs::metadata(&self.abs) {
            Ok(meta) => meta,
            Err(e) if is_vanished(&e) || e.raw_os_error() == Some(libc::ELOOP) => {
                self.warn(&format!(
                    "a symlink to follow, but what it points to cannot be reached ({e}); archived as a symlink"
                ));
                return self.symlink(link).map(|()| None);
            }
            Err(e) => return Err(self.read_err(e)),
        };
        if meta.is_dir() {
            self.stats.followed.push(self.rel.to_string_lossy().into_owned());
            self.dir(&meta)
        } else if meta.is_file() {
            self.stats.followed.push(self.rel.to_string_lossy().into_owned());
            self.file(&meta, true).map(|()| None)
        } else {
            self.warn("a symlink to follow, but it points to neither a directory nor a file; archived as a symlink");
            self.symlink(link).map(|()| None)
        }
    }

    /// A regular file; `follow`: the name is a symlink to follow to it.
    fn file(&mut self, meta: &Metadata, follow: bool) -> Result<(), TarError> {
        let inode = (meta.dev(), meta.ino());
        if meta.nlink() > 1 && self.links.contains_key(&inode) {
            let mut header = self.header(meta, EntryType::Link);
            if let Some(first) = self.links.get(&inode) {
                let name = self.rel.as_os_str().as_bytes();
                put_header(&mut self.out, &mut header, name, Some(first)).map_err(TarError::Write)?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
        }

        // O_NOFOLLOW: if the file was replaced by a symlink since we listed it, do not read
        // through it (unless it is a link to follow). O_NONBLOCK: if it was replaced by a FIFO,
        // do not hang in open().
        let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
        let opened = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nofollow | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&self.abs);
        let mut file = match opened {
            Ok(file) => file,
            Err(e) if is_vanished(&e) => {
                self.warn("vanished before it could be archived; skipped");
                return Ok(());
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) => {
                self.warn("changed type while being archived; skipped");
                return Ok(());
            }
            Err(e) => return Err(self.read_err(e)),
        };
        // The header describes the file we opened, not the name we listed.
        let before = file.metadata().map_err(|e| self.read_err(e))?;
        if !before.is_file() {
            self.warn("changed type while being archived; skipped");
            return Ok(());
        }
        let size = before.len();
        let mut header = self.header(&before, EntryType::Regular);
        header.set_size(size);
        let name = self.rel.as_os_str().as_bytes();
        put_header(&mut self.out, &mut header, name, None).map_err(TarError::Write)?;
        let got = match copy_padded(&mut file, &mut self.out, size) {
            Ok(got) => got,
            Err(CopyError::Read(e)) => return Err(self.read_err(e)),
            Err(CopyError::Write(e)) => return Err(TarError::Write(e)),
        };
        self.stats.files += 1;
        self.stats.bytes += size;
        if before.nlink() > 1 {
            let first: Box<[u8]> = self.rel.as_os_str().as_bytes().into();
            self.links.insert((before.dev(), before.ino()), first);
        }

        if got < size {
            self.warn(&format!("file shrank while being read ({got} of {size} bytes); archived padded"));
            return Ok(());
        }
        let after = file.metadata().map_err(|e| self.read_err(e))?;
        if after.len() > size {
            self.warn(&format!(
                "file grew while being read ({} bytes, {size} archived); archived truncated",
                after.len()
            ));
        } else if (after.mtime(), after.mtime_nsec()) != (before.mtime(), before.mtime_nsec()) {
            self.warn("changed while being read");
        }
        Ok(())
    }

    fn symlink(&mut self, meta: &Metadata) -> Result<(), TarError> {
        let target = match fs::read_link(&self.abs) {
            Ok(target) => target,
            Err(e) if is_vanished(&e) => {
                self.warn("vanished before it could be archived; skipped");
                return Ok(());
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.warn("changed type while being archived; skipped");
                return Ok(());
            }
            Err(e) => return Err(self.read_err(e)),
        };
        let mut header = self.header(meta, EntryType::Symlink);
        let name = self.rel.as_os_str().as_bytes();
        put_header(&mut self.out, &mut header, name, Some(target.as_os_str().as_bytes())).map_err(TarError::Write)?;
        self.stats.symlinks += 1;
        if is_external(&self.rel, &target, &self.roots) {
            self.stats.external_symlinks_total += 1;
            if self.stats.external_symlinks.len() < MAX_EXTERNAL_LISTED {
                self.stats.external_symlinks.push(ExternalSymlink {
                    path: self.rel.to_string_lossy().into_owned(),
                    target: target.to_string_lossy().into_owned(),
                });
            }
        }
        Ok(())
    }

    fn special(&mut self, meta: &Metadata, kind: EntryType) -> Result<(), TarError> {
        let mut header = self.header(meta, kind);
        if kind != EntryType::Fifo {
            let rdev = meta.rdev();
            let set =
                header.set_device_major(libc::major(rdev)).and_then(|()| header.set_device_minor(libc::minor(rdev)));
            // Cannot fail for a GNU header; if it ever did, it is about this entry.
            set.map_err(|e| self.read_err(e))?;
        }
        let name = self.rel.as_os_str().as_bytes();
        put_header(&mut self.out, &mut header, name, None).map_err(TarError::Write)?;
        self.stats.other += 1;
        Ok(())
    }

    /// A GNU header with the metadata every member carries; size 0, no name yet.
    fn header(&mut self, meta: &Metadata, kind: EntryType) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(meta.uid().into());
        header.set_gid(meta.gid().into());
        let mtime = match u64::try_from(meta.mtime()) {
            Ok(mtime) => mtime,
            Err(_) => {
                self.warn("mtime before 1970; stored as 1970-01-01");
                0
            }
        };
        header.set_mtime(mtime);
        header.set_size(0);
        header
    }

    fn warn(&mut self, what: &str) {
        tracing::warn!(path = %self.abs.display(), "{what}");
        self.stats.warnings.push(format!("`{}`: {what}", self.abs.display()));
    }

    fn read_err(&self, source: io::Error) -> TarError {
        TarError::Read { path: self.abs.clone(), source }
    }
}

/// True when an entry disappeared (or a parent was replaced) between listing and use.
fn is_vanished(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

/// The names in a directory, sorted by bytes in DESCENDING order (the walk pops from the end).
fn list_dir(path: &Path) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(path)? {
        names.push(entry?.file_name());
    }
    names.sort_unstable_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    Ok(names)
}

/// Turns configured paths (excludes, symlinks to follow) into clean relative paths; warns
/// about unusable ones.
fn normalize_paths(root: &Path, paths: &[PathBuf], what: &str, warnings: &mut Vec<String>) -> HashSet<PathBuf> {
    let mut set = HashSet::new();
    for exclude in paths {
        let rel = if exclude.is_absolute() { exclude.strip_prefix(root).ok() } else { Some(exclude.as_path()) };
        let mut clean = PathBuf::new();
        let mut usable = rel.is_some();
        for component in rel.into_iter().flat_map(Path::components) {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                _ => usable = false,
            }
        }
        if !usable || clean.as_os_str().is_empty() {
            let what = format!("{what} is not a path below `{}`; ignored", root.display());
            tracing::warn!(path = %exclude.display(), "{what}");
            warnings.push(format!("`{}`: {what}", exclude.display()));
            continue;
        }
        set.insert(clean);
    }
    set
}

/// The root as given (made lexically clean, when absolute) and canonical.
fn roots_of(root: &Path) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if root.is_absolute() {
        roots.push(lexical(root));
    }
    if let Ok(canonical) = fs::canonicalize(root) {
        if !roots.contains(&canonical) {
            roots.push(canonical);
        }
    }
    roots
}

/// An absolute path with `.` and `..` resolved by name (`/a/./b/../c` -> `/a/c`).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether symlink `link` (relative to the root) with `target` points outside the root:
/// absolute and not below any of `roots`, or relative and climbing above the root with `..`
/// (resolved by name from the link's directory, as far as the archive can tell).
pub fn is_external(link: &Path, target: &Path, roots: &[PathBuf]) -> bool {
    if target.is_absolute() {
        let target = lexical(target);
        return !roots.iter().any(|r| target.starts_with(r));
    }
    let mut depth = link.components().count().saturating_sub(1);
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir if depth == 0 => return true,
            Component::ParentDir => depth -= 1,
            _ => {}
        }
    }
    false
}

/// What `plan` shows of the symlinks pointing outside the root: the first `limit`, found by a
/// walk that reads directories only (no file is opened or stat'ed) and stops there; `more` when there
/// are others. Excluded paths are skipped; symlinks to follow are walked into. Directories that
/// cannot be read are passed over (the backup reports them).
pub fn find_external_symlinks(root: &Path, opts: &TarOptions, limit: usize) -> (Vec<ExternalSymlink>, bool) {
    let mut ignored = Vec::new();
    let excludes = normalize_paths(root, &opts.excludes, "exclude", &mut ignored);
    let follow = normalize_paths(root, &opts.follow_symlinks, "symlink to follow", &mut ignored);
    let roots = roots_of(root);
    let mut found = Vec::new();
    // Depth first, in name order, as the archive: one list of names per open directory,
    // sorted so that pop() gives the smallest.
    let mut stack = vec![(PathBuf::new(), dir_types(root))];
    while let Some((dir, names)) = stack.last_mut() {
        let Some((name, ft)) = names.pop() else {
            stack.pop();
            continue;
        };
        let rel = dir.join(&name);
        if excludes.contains(&rel) {
            continue;
        }
        let abs = root.join(&rel);
        let descend = if ft.is_dir() {
            true
        } else if ft.is_symlink() && follow.contains(&rel) {
            fs::metadata(&abs).is_ok_and(|m| m.is_dir())
        } else if ft.is_symlink() {
            let Ok(target) = fs::read_link(&abs) else { continue };
            if is_external(&rel, &target, &roots) {
                if found.len() == limit {
                    return (found, true);
                }
                found.push(ExternalSymlink {
                    path: rel.to_string_lossy().into_owned(),
                    target: target.to_string_lossy().into_owned(),
                });
            }
            false
        } else {
            false
        };
        if descend {
            let names = dir_types(&abs);
            stack.push((rel, names));
        }
    }
    (found, false)
}

/// A directory's names with their types from the directory itself (d_type: no stat for most
/// entries), sorted by bytes in DESCENDING order; empty when it cannot be read.
fn dir_types(path: &Path) -> Vec<(OsString, fs::FileType)> {
    let Ok(entries) = fs::read_dir(path) else { return Vec::new() };
    let mut names: Vec<(OsString, fs::FileType)> =
        entries.filter_map(Result::ok).filter_map(|e| e.file_type().ok().map(|t| (e.file_name(), t))).collect();
    names.sort_unstable_by(|a, b| b.0.as_bytes().cmp(a.0.as_bytes()));
    names
}

/// Writes `header` for member `name` (and link target `link`), preceded by GNU long-name and
/// long-link records when they do not fit. Both are stored byte for byte.
fn put_header<W: Write>(out: &mut Out<W>, header: &mut Header, name: &[u8], link: Option<&[u8]>) -> io::Result<()> {
    if name.len() >= NAME_FIELD {
        put_long_record(out, EntryType::GNULongName, name)?;
    }
    fill_field(&mut header.as_old_mut().name, name);
    if let Some(link) = link {
        if link.len() >= NAME_FIELD {
            put_long_record(out, EntryType::GNULongLink, link)?;
        }
        fill_field(&mut header.as_old_mut().linkname, link);
    }
    header.set_cksum();
    out.put(header.as_bytes())
}

/// Copies the start of `value` into a header field (readers use the long record for the rest).
fn fill_field(field: &mut [u8; NAME_FIELD], value: &[u8]) {
    let n = value.len().min(NAME_FIELD);
    field.fill(0);
    field[..n].copy_from_slice(&value[..n]);
}

/// A GNU `././@LongLink` record holding `value`, NUL-terminated, as GNU tar writes it.
fn put_long_record<W: Write>(out: &mut Out<W>, kind: EntryType, value: &[u8]) -> io::Result<()> {
    let mut header = Header::new_gnu();
    fill_field(&mut header.as_old_mut().name, b"././@LongLink");
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    let len = value.len() as u64 + 1;
    header.set_size(len);
    header.set_entry_type(kind);
    header.set_cksum();
    out.put(header.as_bytes())?;
    out.put(value)?;
    out.put_zeros(1 + block_padding(len))
}

/// Zero bytes needed after `len` bytes of data to reach a block boundary.
fn block_padding(len: u64) -> u64 {
    (BLOCK - len % BLOCK) % BLOCK
}

#[derive(Debug)]
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies exactly `size` bytes of `src` into the archive, then pads to a block boundary.
///
/// If `src` ends early the rest is filled with zeros so the archive stays well formed; if it
/// has more, the rest is not read. Returns how many bytes came from `src`.
fn copy_padded<R: Read, W: Write>(src: &mut R, out: &mut Out<W>, size: u64) -> Result<u64, CopyError> {
    let mut remaining = size;
    while remaining > 0 {
        let want = usize::try_from(remaining).unwrap_or(usize::MAX);
        let spare = out.spare(want.min(MIN_READ)).map_err(CopyError::Write)?;
        let len = spare.len().min(want);
        match src.read(&mut spare[..len]) {
            Ok(0) => break,
            Ok(n) => {
                out.commit(n);
                remaining -= n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CopyError::Read(e)),
        }
    }
    let got = size - remaining;
    out.put_zeros(remaining + block_padding(size)).map_err(CopyError::Write)?;
    Ok(got)
}

/// The output with one fixed buffer in front of it. File contents are read straight into the
/// buffer, so each byte is copied once, and the output sees large writes.
struct Out<W: Write> {
    inner: W,
    buf: Box<[u8]>,
    len: usize,
}

impl<W: Write> Out<W> {
    fn new(inner: W) -> Self {
        Self::with_capacity(inner, BUF_SIZE)
    }

    fn with_capacity(inner: W, capacity: usize) -> Self {
        Out { inner, buf: vec![0; capacity.max(BLOCK as usize)].into_boxed_slice(), len: 0 }
    }

    fn put(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let spare = self.spare(1)?;
            let n = spare.len().min(data.len());
            spare[..n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
        }
        Ok(())
    }

    fn put_zeros(&mut self, mut count: u64) -> io::Result<()> {
        while count > 0 {
            let spare = self.spare(1)?;
            let n = usize::try_from(count).unwrap_or(usize::MAX).min(spare.len());
            spare[..n].fill(0);
            self.len += n;
            count -= n as u64;
        }
        Ok(())
    }

    /// Free space at the end of the buffer, at least `min` bytes (up to the capacity): drains
    /// the buffer to the output first if there is less.
    fn spare(&mut self, min: usize) -> io::Result<&mut [u8]> {
        if self.buf.len() - self.len < min.clamp(1, self.buf.len()) {
            self.drain()?;
        }
        Ok(&mut self.buf[self.len..])
    }

    /// Marks `n` bytes written into [`Out::spare`] as data.
    fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
    }

    fn drain(&mut self) -> io::Result<()> {
        if self.len > 0 {
            self.inner.write_all(&self.buf[..self.len])?;
            self.len = 0;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        self.drain()?;
        self.inner.flush()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testkit::compare_trees;
    use std::ffi::{CString, OsStr};
    use std::fs::File;
    use std::fs::FileTimes;
    use std::os::unix::fs::{chown, lchown, symlink, PermissionsExt};
    use std::process::{Command, Stdio};
    use std::time::{Duration, UNIX_EPOCH};

    const EXCLUDES: [&str; 4] = ["logs", "db-data", "seafile-data/tmp", "not-there"];
    const IGNORE: [&str; 4] = ["logs", "db-data", "seafile-data/tmp", "run/seafile.sock"];

    pub(crate) fn write(path: &Path, data: &[u8]) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, data).unwrap();
    }

    pub(crate) fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    pub(crate) fn set_mtime(path: &Path, secs: u64) {
        let times = FileTimes::new().set_modified(UNIX_EPOCH + Duration::from_secs(secs));
        File::open(path).unwrap().set_times(times).unwrap();
    }

    pub(crate) fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            out.extend_from_slice(&seed.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn c_path(path: &Path) -> CString {
        CString::new(path.as_os_str().as_bytes()).unwrap()
    }

    fn os(bytes: &[u8]) -> &OsStr {
        OsStr::from_bytes(bytes)
    }

    fn long_file() -> String {
        format!("long/{}/{}", "d".repeat(90), "f".repeat(60))
    }

    /// Builds a tree with every edge case we handle. Returns whether a character device could
    /// be created (needs CAP_MKNOD).
    fn build_tree(root: &Path) -> bool {
        write(&root.join("conf/seafile.conf"), b"[fileserver]\nport=8082\n");
        write(&root.join("conf/empty.txt"), b"");
        write(&root.join("conf/block512"), &random_bytes(512, 1));
        write(&root.join("nested/a/b/c/deep.txt"), b"deep\n");
        fs::create_dir_all(root.join("empty")).unwrap();
        write(&root.join("a/x"), b"x");
        write(&root.join("a.b"), b"a.b");

        fs::create_dir_all(root.join("links")).unwrap();
        symlink("../conf/seafile.conf", root.join("links/rel")).unwrap();
        symlink("does/not/exist", root.join("links/dangling")).unwrap();
        symlink("/etc/hostname", root.join("links/abs")).unwrap();
        symlink("./x//y/", root.join("links/odd")).unwrap();
        symlink("t/".repeat(60), root.join("links/long")).unwrap();
        symlink(os(b"\xfe\xfd"), root.join("links/nonutf8")).unwrap();

        write(&root.join("hard/one"), b"shared inode\n");
        fs::hard_link(root.join("hard/one"), root.join("hard/two")).unwrap();
        fs::hard_link(root.join("hard/one"), root.join("nested/three")).unwrap();
        write(&root.join(long_file()), b"long first name\n");
        fs::hard_link(root.join(long_file()), root.join("z-short")).unwrap();

        write(&root.join("perms/private"), b"secret\n");
        chmod(&root.join("perms/private"), 0o600);
        write(&root.join("perms/setuid"), b"#!/bin/sh\n");
        chmod(&root.join("perms/setuid"), 0o4755);
        fs::create_dir_all(root.join("perms/sticky")).unwrap();
        chmod(&root.join("perms/sticky"), 0o1777);
        fs::create_dir_all(root.join("perms/setgid")).unwrap();
        chmod(&root.join("perms/setgid"), 0o2750);

        write(&root.join("owned/file"), b"owned by 1000\n");
        symlink("file", root.join("owned/link")).unwrap();
        chown(root.join("owned/file"), Some(1000), Some(1000)).unwrap();
        chmod(&root.join("owned/file"), 0o640);
        lchown(root.join("owned/link"), Some(1000), Some(1001)).unwrap();
        chown(root.join("owned"), Some(1000), Some(1000)).unwrap();

        let long_path = format!("nested/a/b/c/{}/{}.txt", "p".repeat(50), "q".repeat(60));
        write(&root.join(long_path), b"long path\n");
        write(&root.join(format!("names/{}", "n".repeat(150))), b"long name\n");
        write(&root.join(format!("names/{}", "e".repeat(94))), b"100 bytes\n");
        write(&root.join(format!("names/{}", "g".repeat(93))), b"99 bytes\n");
        write(&root.join("names").join(os(b"caf\xe9.txt")), b"latin-1\n");
        let mut odd_dir = b"\xff".to_vec();
        odd_dir.extend_from_slice("a".repeat(120).as_bytes());
        write(&root.join(os(&odd_dir)).join("inner"), b"non-UTF-8 long path\n");

        fs::create_dir_all(root.join("special")).unwrap();
        let fifo = c_path(&root.join("special/fifo"));
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
        let null = c_path(&root.join("special/null"));
        // SAFETY: a valid NUL-terminated path.
        let has_dev = unsafe { libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) } == 0;

        write(&root.join("data/big.bin"), &random_bytes(3 * 1024 * 1024 + 123, 7));
        write(&root.join("data/exact.bin"), &random_bytes(BUF_SIZE, 9));

        write(&root.join("logs/seatable.log"), b"log\n");
        write(&root.join("db-data/ibdata1"), b"db\n");
        write(&root.join("seafile-data/tmp/upload"), b"tmp\n");
        write(&root.join("seafile-data/storage/blocks/abc"), b"block\n");
        fs::create_dir_all(root.join("run")).unwrap();
        std::os::unix::net::UnixListener::bind(root.join("run/seafile.sock")).unwrap();

        // Times last: creating entries touches their directories.
        set_mtime(&root.join("conf/seafile.conf"), 1_000_000_000);
        set_mtime(&root.join("empty"), 1_100_000_000);
        set_mtime(&root.join("nested"), 1_200_000_000);
        chmod(root, 0o751);
        has_dev
    }

    fn excludes() -> TarOptions {
        TarOptions { excludes: EXCLUDES.iter().map(PathBuf::from).collect(), ..Default::default() }
    }

    fn gnu_untar(archive: &[u8], dest: &Path) {
        let mut child = Command::new("tar")
            .args(["-xpf", "-", "--numeric-owner", "-C"])
            .arg(dest)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("GNU tar must be installed");
        let mut stdin = child.stdin.take().unwrap();
        let data = archive.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&data));
        let output = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "tar -x failed: {stderr}");
        assert!(stderr.is_empty(), "tar -x complained: {stderr}");
    }

    #[test]
    fn gnu_tar_extracts_an_identical_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        let has_dev = build_tree(&src);

        let mut archive = Vec::new();
        let stats = write_tar(&src, &excludes(), &mut archive).unwrap();

        assert_eq!(stats.skipped, ["db-data", "logs", "seafile-data/tmp"]);
        assert_eq!(stats.warnings.len(), 1, "{:?}", stats.warnings);
        assert!(stats.warnings[0].contains("run/seafile.sock`: socket skipped"));
        assert_eq!(stats.hardlinks, 3);
        assert_eq!(stats.symlinks, 7);
        assert_eq!(stats.other, if has_dev { 2 } else { 1 });
        assert!(stats.bytes > 4 * 1024 * 1024);
        assert_eq!(archive.len() % 512, 0);

        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        gnu_untar(&archive, &dest);

        if let Err(diff) = compare_trees(&src, &dest, &IGNORE) {
            panic!("{diff}");
        }
        for gone in ["logs", "db-data", "seafile-data/tmp"] {
            assert!(!dest.join(gone).exists(), "{gone} was excluded");
        }
        assert!(dest.join("seafile-data/storage/blocks/abc").exists());
        let ino = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap().ino();
        assert_eq!(ino("hard/one"), ino("hard/two"));
        assert_eq!(ino("hard/one"), ino("nested/three"));
        assert_eq!(ino(&long_file()), ino("z-short"));
        let root_meta = fs::metadata(&dest).unwrap();
        assert_eq!(root_meta.mode() & 0o7777, 0o751);
        assert_eq!(fs::read_link(dest.join("links/odd")).unwrap().as_os_str(), "./x//y/");
    }

    #[test]
    fn members_are_literal_ordered_and_deterministic() {
        let tmp = tempfile::tempdir().unwrap();
        build_tree(tmp.path());
        let mut archive = Vec::new();
        write_tar(tmp.path(), &excludes(), &mut archive).unwrap();

        let mut members = Vec::new();
        let mut reader = tar::Archive::new(&archive[..]);
        for entry in reader.entries().unwrap() {
            let entry = entry.unwrap();
            let link = entry.link_name_bytes().map(|l| l.into_owned());
            members.push((entry.path_bytes().into_owned(), entry.header().entry_type(), link));
        }
        let find = |name: &[u8]| {
            members
                .iter()
                .position(|(n, _, _)| n == name)
                .unwrap_or_else(|| panic!("no member {:?}", String::from_utf8_lossy(name)))
        };
        assert_eq!(members[0].0, b"./");
        assert_eq!(members[0].1, EntryType::Directory);
        assert!(find(b"a/") < find(b"a/x"));
        assert!(find(b"a/x") < find(b"a.b"));
        assert_eq!(members[find(b"empty/")].1, EntryType::Directory);
        assert_eq!(members[find(b"links/odd")].2.as_deref(), Some(&b"./x//y/"[..]));
        let long_target = "t/".repeat(60);
        assert_eq!(members[find(b"links/long")].2.as_deref(), Some(long_target.as_bytes()));
        assert_eq!(members[find(b"links/nonutf8")].2.as_deref(), Some(&b"\xfe\xfd"[..]));
        let z = &members[find(b"z-short")];
        assert_eq!(z.1, EntryType::Link);
        assert_eq!(z.2.as_deref(), Some(long_file().as_bytes()));
        find(b"names/caf\xe9.txt");
        find(format!("names/{}", "n".repeat(150)).as_bytes());
        let mut odd = b"\xff".to_vec();
        odd.extend_from_slice("a".repeat(120).as_bytes());
        odd.extend_from_slice(b"/inner");
        find(&odd);
        assert_eq!(members[find(b"special/fifo")].1, EntryType::Fifo);
        assert!(!members.iter().any(|(n, _, _)| n.starts_with(b"logs")));
        assert!(!members.iter().any(|(n, _, _)| n.starts_with(b"seafile-data/tmp")));
        assert!(!members.iter().any(|(n, _, _)| n.ends_with(b".sock")));

        let mut again = Vec::new();
        write_tar(tmp.path(), &excludes(), &mut again).unwrap();
        assert!(archive == again, "two runs over the same tree differ");
    }

    #[test]
    fn copy_pads_a_short_file_and_cuts_a_long_one() {
        let mut out = Out::with_capacity(Vec::new(), 1000);
        let got = copy_padded(&mut &b"0123456789"[..], &mut out, 100).unwrap();
        assert_eq!(got, 10);
        out.finish().unwrap();

        let mut out = Out::with_capacity(Vec::new(), 1000);
        let data = random_bytes(10_000, 3);
        let got = copy_padded(&mut &data[..], &mut out, 9_000).unwrap();
        assert_eq!(got, 9_000);
        let mut rest = &data[..];
        let n = copy_padded(&mut rest, &mut out, 0).unwrap();
        assert_eq!(n, 0);
        let Out { inner, buf, len } = out;
        let mut bytes = inner;
        bytes.extend_from_slice(&buf[..len]);
        assert_eq!(bytes.len(), 9_216);
        assert_eq!(&bytes[..9_000], &data[..9_000]);
        assert!(bytes[9_000..].iter().all(|b| *b == 0));
    }

    #[test]
    fn short_copy_output_is_zero_padded() {
        let mut sink = Vec::new();
        let mut out = Out::with_capacity(&mut sink, 600);
        let got = copy_padded(&mut &b"abc"[..], &mut out, 1000).unwrap();
        assert_eq!(got, 3);
        out.finish().unwrap();
        assert_eq!(sink.len(), 1024);
        assert_eq!(&sink[..3], b"abc");
        assert!(sink[3..].iter().all(|b| *b == 0));
    }

    #[test]
    fn missing_or_non_directory_root_is_a_root_error() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        let err = write_tar(&missing, &TarOptions::default(), Vec::new()).unwrap_err();
        assert!(matches!(&err, TarError::Root { path, .. } if *path == missing), "{err:?}");

        let file = tmp.path().join("file");
        write(&file, b"x");
        let err = write_tar(&file, &TarOptions::default(), Vec::new()).unwrap_err();
        assert!(matches!(&err, TarError::Root { path, .. } if *path == file), "{err:?}");
        assert_eq!(err.to_string(), format!("cannot archive `{}`", file.display()));
    }

    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
    }

    #[test]
    fn a_closed_output_is_a_write_error() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("small"), b"x");
        let err = write_tar(tmp.path(), &TarOptions::default(), ClosedPipe).unwrap_err();
        assert!(matches!(err, TarError::Write(_)), "{err:?}");

        // A real pipe whose reader is gone, with more data than one buffer.
        write(&tmp.path().join("big"), &random_bytes(3 * BUF_SIZE, 5));
        let (reader, writer) = io::pipe().unwrap();
        drop(reader);
        let err = write_tar(tmp.path(), &TarOptions::default(), writer).unwrap_err();
        match err {
            TarError::Write(e) => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
            other => panic!("expected a write error, got {other:?}"),
        }
    }

    #[test]
    fn an_entry_that_vanished_is_a_warning() {
        let tmp = tempfile::tempdir().unwrap();
        let mut walker = Walker::new(tmp.path(), &TarOptions::default(), Vec::new());
        walker.enter(&OsString::from("gone"));
        assert!(walker.entry().unwrap().is_none());
        assert_eq!(walker.stats.warnings.len(), 1);
        assert!(walker.stats.warnings[0].contains("gone`: vanished"));
        assert_eq!(walker.out.len, 0, "nothing written for a vanished entry");
    }

    /// sysfs files claim 4096 bytes and hold fewer: a file that "shrank" without racing.
    #[test]
    fn a_file_shorter_than_its_size_is_padded_with_a_warning() {
        let dir = Path::new("/sys/kernel/mm/transparent_hugepage");
        let declared = fs::metadata(dir.join("enabled")).map(|m| m.len()).unwrap_or(0);
        let actual = fs::read(dir.join("enabled")).map(|d| d.len() as u64).unwrap_or(0);
        if declared <= actual || actual == 0 {
            eprintln!("skipped: no sysfs file that is shorter than its size");
            return;
        }
        let mut walker = Walker::new(dir, &TarOptions::default(), Vec::new());
        walker.enter(&OsString::from("enabled"));
        assert!(walker.entry().unwrap().is_none());
        let expected = format!(
            "`{}`: file shrank while being read ({actual} of {declared} bytes); archived padded",
            dir.join("enabled").display()
        );
        assert_eq!(walker.stats.warnings, [expected]);
        assert_eq!(walker.stats.bytes, declared);
        let written = &walker.out.buf[..walker.out.len];
        assert_eq!(written.len() as u64, 512 + declared);
        assert!(written[512 + actual as usize..].iter().all(|b| *b == 0));
    }

    /// A data directory `root` next to `outside`, with symlinks into both.
    fn linked_tree(tmp: &Path) -> (PathBuf, PathBuf) {
        let (root, outside) = (tmp.join("root"), tmp.join("outside"));
        write(&root.join("conf/seafile.conf"), b"conf\n");
        write(&outside.join("seafile-data/storage/blocks/b1"), b"block one\n");
        write(&outside.join("single.txt"), b"a file elsewhere\n");
        symlink("/etc/hostname", outside.join("seafile-data/abs-inside-followed")).unwrap();
        symlink("../storage", outside.join("seafile-data/storage-again")).unwrap();
        symlink("/etc", root.join("etc-link")).unwrap();
        // Deeper than later top-level links, earlier in the archive.
        symlink("/opt", root.join("conf/zz-out")).unwrap();
        symlink(outside.join("seafile-data"), root.join("seafile-data")).unwrap();
        symlink("../outside/single.txt", root.join("single")).unwrap();
        fs::create_dir_all(root.join("sub")).unwrap();
        symlink("../../outside", root.join("sub/climb")).unwrap();
        symlink("../conf/seafile.conf", root.join("sub/inner")).unwrap();
        symlink("a/../../../x", root.join("sub/down-and-up")).unwrap();
        symlink(root.join("conf/seafile.conf"), root.join("abs-inside")).unwrap();
        (root, outside)
    }

    fn members(archive: &[u8]) -> Vec<(String, EntryType, Option<String>, Vec<u8>)> {
        let mut out = Vec::new();
        for entry in tar::Archive::new(archive).entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let link = entry.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned());
            let kind = entry.header().entry_type();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.push((name, kind, link, data));
        }
        out
    }

    fn external(stats: &TarStats) -> Vec<(String, String)> {
        stats.external_symlinks.iter().map(|l| (l.path.clone(), l.target.clone())).collect()
    }

    #[test]
    fn symlinks_out_of_the_root_are_listed_and_archived_as_links() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, outside) = linked_tree(tmp.path());
        let mut archive = Vec::new();
        let stats = write_tar(&root, &TarOptions::default(), &mut archive).unwrap();
        let seafile = outside.join("seafile-data").display().to_string();
        let expected = [
            ("conf/zz-out", "/opt"),
            ("etc-link", "/etc"),
            ("seafile-data", seafile.as_str()),
            ("single", "../outside/single.txt"),
            ("sub/climb", "../../outside"),
            ("sub/down-and-up", "a/../../../x"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(external(&stats), expected);
        assert_eq!(stats.external_symlinks_total, 6);
        assert!(stats.followed.is_empty());
        let m = members(&archive);
        let find = |n: &str| m.iter().find(|x| x.0 == n).unwrap_or_else(|| panic!("no member {n}: {m:?}"));
        assert_eq!(find("seafile-data").1, EntryType::Symlink);
        assert_eq!(find("seafile-data").2.as_deref(), Some(seafile.as_str()));
        assert_eq!(find("single").1, EntryType::Symlink);
        assert_eq!(find("sub/inner").1, EntryType::Symlink);
        assert!(!m.iter().any(|x| x.0.contains("blocks")), "content behind a link was archived");

        // plan's walk finds the same, and stops at its limit.
        assert_eq!(
            find_external_symlinks(&root, &TarOptions::default(), 100),
            (stats.external_symlinks.clone(), false)
        );
        let (two, more) = find_external_symlinks(&root, &TarOptions::default(), 2);
        assert_eq!((two.as_slice(), more), (&stats.external_symlinks[..2], true));
        let (none, more) =
            find_external_symlinks(&root, &TarOptions { excludes: vec!["sub".into()], ..Default::default() }, 100);
        assert_eq!(none.len(), 4, "{none:?}");
        assert!(!more);
    }

    #[test]
    fn the_listing_of_external_symlinks_is_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        for n in 0..MAX_EXTERNAL_LISTED + 20 {
            symlink("/nowhere", tmp.path().join(format!("l{n:04}"))).unwrap();
        }
        let stats = write_tar(tmp.path(), &TarOptions::default(), io::sink()).unwrap();
        assert_eq!(stats.external_symlinks.len(), MAX_EXTERNAL_LISTED);
        assert_eq!(stats.external_symlinks_total, MAX_EXTERNAL_LISTED as u64 + 20);
        assert_eq!(stats.external_symlinks[0].path, "l0000");
    }

    #[test]
    fn followed_symlinks_are_archived_as_what_they_point_to() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, outside) = linked_tree(tmp.path());
        let opts = TarOptions { follow_symlinks: vec!["seafile-data".into(), "./single".into()], ..Default::default() };
        let mut archive = Vec::new();
        let stats = write_tar(&root, &opts, &mut archive).unwrap();
        assert_eq!(stats.followed, ["seafile-data", "single"]);
        // The links inside the followed directory stay links; the one pointing out is listed.
        let expected = [
            ("conf/zz-out", "/opt"),
            ("etc-link", "/etc"),
            ("seafile-data/abs-inside-followed", "/etc/hostname"),
            ("sub/climb", "../../outside"),
            ("sub/down-and-up", "a/../../../x"),
        ];
        let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(external(&stats), expected);
        assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
        assert_eq!(find_external_symlinks(&root, &opts, 100), (stats.external_symlinks.clone(), false));

        let m = members(&archive);
        let find = |n: &str| m.iter().find(|x| x.0 == n).unwrap_or_else(|| panic!("no member {n}: {m:?}"));
        assert_eq!(find("seafile-data/").1, EntryType::Directory);
        let block = find("seafile-data/storage/blocks/b1");
        assert_eq!((block.1, block.3.as_slice()), (EntryType::Regular, &b"block one\n"[..]));
        let again = find("seafile-data/storage-again");
        assert_eq!((again.1, again.2.as_deref()), (EntryType::Symlink, Some("../storage")));
        let single = find("single");
        assert_eq!((single.1, single.3.as_slice()), (EntryType::Regular, &b"a file elsewhere\n"[..]));
        assert_eq!(find("etc-link").1, EntryType::Symlink);

        // Unpacked, the links are a real directory and a real file, equal to their targets.
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        gnu_untar(&archive, &dest);
        assert!(fs::symlink_metadata(dest.join("seafile-data")).unwrap().is_dir());
        assert!(fs::symlink_metadata(dest.join("single")).unwrap().is_file());
        if let Err(diff) = compare_trees(&outside.join("seafile-data"), &dest.join("seafile-data"), &[]) {
            panic!("{diff}");
        }
        assert_eq!(fs::read(dest.join("single")).unwrap(), b"a file elsewhere\n");
    }

    #[test]
    fn a_followed_symlink_whose_target_went_is_archived_as_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        symlink("/no/such/place", tmp.path().join("gone")).unwrap();
        let opts = TarOptions { follow_symlinks: vec!["gone".into()], ..Default::default() };
        let mut archive = Vec::new();
        let stats = write_tar(tmp.path(), &opts, &mut archive).unwrap();
        assert!(stats.followed.is_empty());
        assert_eq!(stats.warnings.len(), 1, "{:?}", stats.warnings);
        assert!(stats.warnings[0].contains("archived as a symlink"), "{:?}", stats.warnings);
        assert_eq!(stats.external_symlinks_total, 1);
        let m = members(&archive);
        assert!(m.iter().any(|x| x.0 == "gone" && x.1 == EntryType::Symlink), "{m:?}");
    }

    #[test]
    fn external_targets_are_judged_by_name() {
        let roots = [PathBuf::from("/srv/data")];
        let ext = |link: &str, target: &str| is_external(Path::new(link), Path::new(target), &roots);
        assert!(ext("a", "/etc/passwd"));
        assert!(ext("a", "/srv/data-other/x"));
        assert!(ext("a", "/srv/data/../x"));
        assert!(!ext("a", "/srv/data/conf/x"));
        assert!(!ext("a", "/srv/data"));
        assert!(!ext("a/b/c", "/srv/./data//x"));
        assert!(ext("a", "../x"));
        assert!(ext("a", "./../x"));
        assert!(!ext("d/a", "../x"));
        assert!(ext("d/a", "../../x"));
        assert!(ext("d/a", "x/../../../y"));
        assert!(!ext("d/e/a", "../../x/./y"));
        assert!(!ext("a", "x/../y"));
        assert!(!ext("a", "."));
    }

    #[test]
    fn excludes_are_normalized() {
        let root = Path::new("/srv/seatable");
        let given: Vec<PathBuf> = ["./logs", "db-data/", "/srv/seatable/seafile-data/tmp", "../x", "/etc", "."]
            .iter()
            .map(PathBuf::from)
            .collect();
        let mut warnings = Vec::new();
        let set = normalize_paths(root, &given, "exclude", &mut warnings);
        let expected: HashSet<PathBuf> = ["logs", "db-data", "seafile-data/tmp"].iter().map(PathBuf::from).collect();
        assert_eq!(set, expected);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
    }

    #[test]
    fn compare_trees_reports_differences() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        for root in [&a, &b] {
            write(&root.join("same"), b"same");
            write(&root.join("data"), b"abcdef");
            set_mtime(&root.join("data"), 1_000);
        }
        write(&a.join("only-a"), b"");
        write(&b.join("data"), b"abcXef");
        set_mtime(&b.join("data"), 1_000);
        chmod(&b.join("same"), 0o600);
        let err = compare_trees(&a, &b, &["."]).unwrap_err();
        assert!(err.contains("\"data\": contents differ at byte 3"), "{err}");
        assert!(err.contains("\"same\": mode"), "{err}");
        assert!(err.contains("\"only-a\": only in"), "{err}");
        assert!(compare_trees(&a, &b, &[".", "only-a", "data", "same"]).is_ok());
    }
}
