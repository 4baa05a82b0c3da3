//! Safe extraction of a tar stream into an empty staging directory: the restore side of
//! [`super::tar`].
//!
//! [`unpack`] reads the archive with the `tar` crate's entry iterator (GNU long names and
//! links, PAX records, GNU sparse files) but does all file system work itself, because the
//! archive comes from outside and must not be able to touch anything outside `dest`:
//!
//! - Names are taken byte for byte. Absolute names, `..` components, NUL bytes and empty names
//!   are refused; `.` components and repeated slashes are dropped. `./` (or `.`) is the root
//!   entry: its mode, owner and mtime are applied to `dest` itself at the end.
//! - Nothing is ever written through a symlink: each parent of an entry must be a real
//!   directory (missing ones are created with mode 0700), files are created with
//!   `O_CREAT | O_EXCL | O_NOFOLLOW`, and an entry whose path already exists is refused as a
//!   duplicate (only a directory entry over an existing directory is accepted; its metadata
//!   wins). Hard-link targets must be earlier non-directory entries reached through real
//!   directories only.
//! - Symlink targets must stay inside the archive root (unless
//!   [`UntarOptions::allow_external_symlinks`]): no absolute target, no `..` climbing above the
//!   root from the link's directory, and `..` after a name only when that name is already a
//!   real directory (so a chain of symlinks cannot climb out either). A hard link to a symlink
//!   is checked again from the new link's directory.
//! - Devices and FIFOs only with [`UntarOptions::allow_devices`]; unknown entry types are
//!   refused. PAX global headers are ignored.
//! - Directory metadata is applied after all entries, deepest first, so that creating entries
//!   does not change a directory's mtime afterwards and a read-only directory does not block
//!   its children.
//! - The stream must end with the end-of-archive marker (at least one zero block); a stream
//!   that stops early, even exactly between two entries, is [`UntarError::Truncated`]. After
//!   the marker the rest of the reader is read and thrown away, so that whoever feeds the
//!   reader (decompressor, hash) sees the whole stream.
//!
//! On error the function returns at once; what was written into `dest` so far is left there for
//! the caller to remove.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::{self, FileTimes, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::tar::EntryType;

/// Size of the buffer through which file contents go from the archive to the disk.
const BUF_SIZE: usize = 1 << 20;

/// What [`unpack`] may create besides plain files, directories and internal links.
#[derive(Debug, Clone, Default)]
pub struct UntarOptions {
    /// Create block/char devices and FIFOs (otherwise such an entry is refused). Devices need root.
    pub allow_devices: bool,
    /// Accept symlinks whose target is absolute or climbs out of the archive root with `..`.
    pub allow_external_symlinks: bool,
    /// Restore numeric uid/gid (lchown). The caller sets it when running as root (euid 0).
    /// Without it, the setuid, setgid and sticky bits are dropped too.
    pub restore_owner: bool,
}

/// What was unpacked (counted like [`super::tar::TarStats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UntarReport {
    /// Regular files created with their contents.
    pub files: u64,
    /// Directory entries, the root entry (`./`) included; implicitly created parents are not
    /// counted.
    pub dirs: u64,
    pub symlinks: u64,
    /// Hard-link entries.
    pub hardlinks: u64,
    /// FIFOs and character/block devices.
    pub other: u64,
    /// File content bytes written.
    pub file_bytes: u64,
}

/// Why an archive could not be unpacked. Entry names are shown lossily as UTF-8; the
/// underlying `io::Error`, when there is one, is the error's `source()` (print the chain, e.g.
/// with `{:#}` on an `anyhow::Error`, to see it).
#[derive(Debug, thiserror::Error)]
pub enum UntarError {
    /// `dest` is missing, not a directory, a symlink, not empty, or cannot be listed.
    #[error("cannot unpack into `{}`", path.display())]
    Dest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The reader failed between entries or after the end-of-archive marker (the decompressor's
    /// or the download's own error). `entry` is the last entry read in full.
    #[error("cannot read the tar stream {}", after_entry(entry))]
    Read {
        entry: Option<String>,
        #[source]
        source: io::Error,
    },
    /// The `tar` crate rejects what follows `entry` (bad header checksum or size, a long-name or
    /// PAX record without a member).
    #[error("invalid tar stream {}", after_entry(entry))]
    Invalid {
        entry: Option<String>,
        #[source]
        source: io::Error,
    },
    /// The reader failed while the contents of the entry `path` were being read.
    #[error("cannot read the contents of `{path}` from the tar stream")]
    ReadData {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The stream ended before the end-of-archive marker: inside a header, inside an entry's
    /// contents, or cleanly between two entries. `entry` is the last entry seen.
    #[error("truncated tar stream: {detail}")]
    Truncated { entry: Option<String>, detail: String },
    /// A header field of the entry cannot be used (bad octal number, uid or mtime out of range,
    /// device without device numbers).
    #[error("bad tar header for `{path}`: {reason}")]
    Corrupt { path: String, reason: String },
    /// The entry is refused for safety: a bad name (absolute, `..`, NUL, empty), writing through
    /// a symlink or a non-directory, a duplicate, a bad hard-link target, a symlink pointing
    /// outside the root, or a device/FIFO without permission to create one.
    #[error("refused tar entry `{path}`: {reason}")]
    Hostile { path: String, reason: String },
    /// The entry has a type this unpacker does not create (GNU volume labels, multi-volume
    /// continuations, unknown letters).
    #[error("unsupported tar entry `{path}`: {kind}")]
    Unsupported { path: String, kind: String },
    /// A file system operation in `dest` failed (`action` says which, `path` is the full path).
    /// A full disk ends up here: see [`UntarError::is_disk_full`].
    #[error("cannot {action} `{}`", path.display())]
    Write {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl UntarError {
    /// True when the file system of `dest` ran out of space or quota (`ENOSPC`, `EDQUOT`).
    pub fn is_disk_full(&self) -> bool {
        match self {
            UntarError::Write { source, .. } | UntarError::Dest { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
                    || source.kind() == io::ErrorKind::StorageFull
            }
            _ => false,
        }
    }

    /// True when the archive itself is at fault (truncated, corrupt, hostile or unsupported
    /// entries), as opposed to the reader or the local file system.
    pub fn is_bad_archive(&self) -> bool {
        matches!(
            self,
            UntarError::Truncated { .. }
                | UntarError::Invalid { .. }
                | UntarError::Corrupt { .. }
                | UntarError::Hostile { .. }
                | UntarError::Unsupported { .. }
        )
    }
}

/// True when unpacking failed because the file system of `dest` is full.
pub fn is_disk_full(err: &UntarError) -> bool {
    err.is_disk_full()
}

fn after_entry(entry: &Option<String>) -> String {
    match entry {
        Some(entry) => format!("after entry `{entry}`"),
        None => "before its first entry".to_owned(),
    }
}

/// Unpacks the tar stream `reader` into `dest`, which must be an existing, empty directory (not
/// a symlink). Reads `reader` to its end. See the module documentation for what is refused.
///
/// Call it on a blocking thread. On error, `dest` holds a partial tree that the caller removes.
pub fn unpack<R: Read>(reader: R, dest: &Path, opts: &UntarOptions) -> Result<UntarReport, UntarError> {
    check_dest(dest)?;
    let state = Rc::new(ReadState::default());
    let mut archive = ::tar::Archive::new(Tracked { inner: reader, state: Rc::clone(&state) });
    let mut unpacker = Unpacker {
        dest,
        opts,
        report: UntarReport::default(),
        known_dirs: HashSet::new(),
        dirs: HashMap::new(),
        buf: vec![0; BUF_SIZE],
        writeback: Writeback::start(dest),
        unsynced: 0,
    };
    let mut last: Option<String> = None;
    {
        let entries = archive.entries().map_err(|source| UntarError::Read { entry: None, source })?;
        for entry in entries {
            let mut entry = match entry {
                Ok(entry) => entry,
                Err(source) if state.eof.get() => {
                    let detail = format!("the stream ends {} ({source})", after_entry(&last));
                    return Err(UntarError::Truncated { entry: last, detail });
                }
                Err(source) if state.failed.get() => return Err(UntarError::Read { entry: last, source }),
                Err(source) => return Err(UntarError::Invalid { entry: last, source }),
            };
            let name = entry.path_bytes().into_owned();
            unpacker.entry(&mut entry, &name)?;
            last = Some(lossy(&name));
        }
    }
    // The iterator also stops at a clean end of the stream between two entries: only a zero
    // block read in full is the end-of-archive marker, and reading it does not reach EOF.
    if state.eof.get() {
        let detail = format!("the stream ends {} without the end-of-archive marker", after_entry(&last));
        return Err(UntarError::Truncated { entry: last, detail });
    }
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|source| UntarError::Read { entry: last, source })?;
    unpacker.finish()?;
    tracing::debug!(dest = %dest.display(), report = ?unpacker.report, "tar stream unpacked");
    Ok(unpacker.report)
}

fn check_dest(dest: &Path) -> Result<(), UntarError> {
    let err = |source| UntarError::Dest { path: dest.to_path_buf(), source };
    let meta = fs::symlink_metadata(dest).map_err(err)?;
    if meta.file_type().is_symlink() {
        return Err(err(io::Error::new(io::ErrorKind::InvalidInput, "is a symlink, not a directory")));
    }
    if !meta.is_dir() {
        return Err(err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory")));
    }
    match fs::read_dir(dest).map_err(err)?.next() {
        None => Ok(()),
        Some(Ok(_)) => Err(err(io::Error::new(io::ErrorKind::DirectoryNotEmpty, "directory is not empty"))),
        Some(Err(e)) => Err(err(e)),
    }
}

/// What happened to the archive's reader, to tell truncation and reader errors from bad data.
#[derive(Debug, Default)]
struct ReadState {
    /// The reader reached the end of its input.
    eof: Cell<bool>,
    /// The reader returned an error.
    failed: Cell<bool>,
}

/// The archive's reader, recording its end and its errors in a [`ReadState`].
struct Tracked<R> {
    inner: R,
    state: Rc<ReadState>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Ok(0) if !buf.is_empty() => {
                    self.state.eof.set(true);
                    return Ok(0);
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.state.failed.set(true);
                    return Err(e);
                }
            }
        }
    }
}

/// Metadata applied to a created entry.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// Permission bits, already masked.
    mode: u32,
    uid: u32,
    gid: u32,
    secs: i64,
    nanos: u32,
    time: SystemTime,
}

struct Unpacker<'a> {
    dest: &'a Path,
    opts: &'a UntarOptions,
    report: UntarReport,
    /// Relative paths of the real directories created in `dest` (which started empty).
    known_dirs: HashSet<PathBuf>,
    /// Directory entries whose metadata is applied at the end; the empty path is `dest`.
    dirs: HashMap<PathBuf, Meta>,
    buf: Vec<u8>,
    writeback: Writeback,
    /// Bytes of small files written since the last early flush was asked for.
    unsynced: u64,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut ::tar::Entry<'_, R>, name: &[u8]) -> Result<(), UntarError> {
        let shown = lossy(name);
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            tracing::debug!(entry = %shown, "PAX global header ignored");
            return Ok(());
        }
        let comps = clean_path(name).map_err(|reason| hostile(&shown, reason))?;
        let Some((_, parent)) = comps.split_last() else {
            if kind != EntryType::Directory {
                return Err(hostile(&shown, format!("the archive root must be a directory, not {}", describe(kind))));
            }
            let meta = self.meta(entry, &shown)?;
            self.dirs.insert(PathBuf::new(), meta);
            self.report.dirs += 1;
            return Ok(());
        };
        let rel = join(&comps);
        let full = self.dest.join(&rel);
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let meta = self.meta(entry, &shown)?;
                self.make_parents(parent, &shown)?;
                // No lstat first: O_CREAT|O_EXCL|O_NOFOLLOW refuses whatever exists there.
                self.file(entry, &full, &shown, &meta)
            }
            EntryType::Directory => {
                let meta = self.meta(entry, &shown)?;
                self.make_parents(parent, &shown)?;
                match fs::symlink_metadata(&full) {
                    Ok(m) if m.is_dir() => {}
                    Ok(m) => return Err(duplicate(&shown, &m)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        fs::DirBuilder::new().mode(0o700).create(&full).map_err(write_err("create", &full))?;
                    }
                    Err(e) => return Err(write_err("inspect", &full)(e)),
                }
                self.known_dirs.insert(rel.clone());
                self.dirs.insert(rel, meta);
                self.report.dirs += 1;
                Ok(())
            }
            EntryType::Symlink => {
                let target = link_name(entry);
                if target.is_empty() || target.contains(&0) {
                    return Err(hostile(&shown, "empty symlink target or a NUL byte in it"));
                }
                self.check_symlink_target(parent, &target)
                    .map_err(|reason| hostile(&shown, format!("symlink target `{}` {reason}", lossy(&target))))?;
                let meta = self.meta(entry, &shown)?;
                self.make_parents(parent, &shown)?;
                self.must_not_exist(&full, &shown)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &full)
                    .map_err(write_err("create the symlink", &full))?;
                if self.opts.restore_owner {
                    std::os::unix::fs::lchown(&full, Some(meta.uid), Some(meta.gid))
                        .map_err(write_err("set the owner of", &full))?;
                }
                set_mtime_nofollow(&full, &meta).map_err(write_err("set the mtime of", &full))?;
                self.report.symlinks += 1;
                Ok(())
            }
            EntryType::Link => {
                let target = link_name(entry);
                let source = self.hard_link_source(parent, &target, &shown)?;
                self.make_parents(parent, &shown)?;
                self.must_not_exist(&full, &shown)?;
                fs::hard_link(&source, &full).map_err(write_err("create the hard link", &full))?;
                self.report.hardlinks += 1;
                Ok(())
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if !self.opts.allow_devices {
                    return Err(hostile(&shown, format!("{} entries are not allowed", describe(kind))));
                }
                let meta = self.meta(entry, &shown)?;
                let dev = if kind == EntryType::Fifo {
                    0
                } else {
                    let header = entry.header();
                    let corrupt = |e: io::Error| corrupt(&shown, format!("bad device number: {e}"));
                    match (header.device_major().map_err(corrupt)?, header.device_minor().map_err(corrupt)?) {
                        (Some(major), Some(minor)) => libc::makedev(major, minor),
                        _ => return Err(corrupt(io::Error::other("no device numbers in the header"))),
                    }
                };
                self.make_parents(parent, &shown)?;
                self.must_not_exist(&full, &shown)?;
                self.special(kind, &full, dev, &meta)?;
                self.report.other += 1;
                Ok(())
            }
            other => Err(UntarError::Unsupported { path: shown, kind: describe(other) }),
        }
    }

    /// Creates a regular file and copies the entry's contents into it.
    fn file<R: Read>(
        &mut self,
        entry: &mut ::tar::Entry<'_, R>,
        full: &Path,
        shown: &str,
        meta: &Meta,
    ) -> Result<(), UntarError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(full)
            .map_err(|e| match fs::symlink_metadata(full) {
                Ok(existing) if e.kind() == io::ErrorKind::AlreadyExists => duplicate(shown, &existing),
                _ => write_err("create", full)(e),
            })?;
        let file = std::sync::Arc::new(file);
        let size = entry.size();
        let (mut got, mut queued) = (0u64, 0u64);
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(UntarError::ReadData { path: shown.to_owned(), source }),
            };
            (&*file).write_all(&self.buf[..n]).map_err(write_err("write", full))?;
            got += n as u64;
            if got - queued >= WRITEBACK_STRIDE {
                self.writeback.queue(&file, queued, got - queued);
                queued = got;
            }
        }
        if got >= WRITEBACK_MIN && got > queued {
            self.writeback.queue(&file, queued, got - queued);
        } else if got < WRITEBACK_MIN {
            self.unsynced += got + 4096;
            if self.unsynced >= FLUSH_EVERY {
                self.writeback.flush();
                self.unsynced = 0;
            }
        }
        if got != size {
            let detail = format!("the stream ends inside the contents of `{shown}` ({got} of {size} bytes)");
            return Err(UntarError::Truncated { entry: Some(shown.to_owned()), detail });
        }
        // Owner before mode: chown clears the setuid and setgid bits.
        if self.opts.restore_owner {
            std::os::unix::fs::fchown(&*file, Some(meta.uid), Some(meta.gid))
                .map_err(write_err("set the owner of", full))?;
        }
        file.set_permissions(fs::Permissions::from_mode(meta.mode)).map_err(write_err("set the mode of", full))?;
        file.set_times(FileTimes::new().set_modified(meta.time)).map_err(write_err("set the mtime of", full))?;
        self.report.files += 1;
        self.report.file_bytes += got;
        Ok(())
    }

    /// Creates a FIFO or a device node.
    fn special(&self, kind: EntryType, full: &Path, dev: libc::dev_t, meta: &Meta) -> Result<(), UntarError> {
        let path = c_path(full).map_err(write_err("create", full))?;
        let rc = if kind == EntryType::Fifo {
            // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
            unsafe { libc::mkfifo(path.as_ptr(), 0o600) }
        } else {
            let file_type = if kind == EntryType::Char { libc::S_IFCHR } else { libc::S_IFBLK };
            // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
            unsafe { libc::mknod(path.as_ptr(), file_type | 0o600, dev) }
        };
        if rc != 0 {
            return Err(write_err("create", full)(io::Error::last_os_error()));
        }
        if self.opts.restore_owner {
            std::os::unix::fs::lchown(full, Some(meta.uid), Some(meta.gid))
                .map_err(write_err("set the owner of", full))?;
        }
        // The node was just created by us under a real directory: chmod does not follow a link.
        fs::set_permissions(full, fs::Permissions::from_mode(meta.mode)).map_err(write_err("set the mode of", full))?;
        set_mtime_nofollow(full, meta).map_err(write_err("set the mtime of", full))
    }

    /// Checks a hard link's target and returns its full path.
    fn hard_link_source(&self, parent: &[&[u8]], target: &[u8], shown: &str) -> Result<PathBuf, UntarError> {
        let refuse = |reason: String| hostile(shown, format!("hard link target `{}` {reason}", lossy(target)));
        let comps = clean_path(target).map_err(|r| refuse(format!("refused: {r}")))?;
        let Some((_, target_parent)) = comps.split_last() else {
            return Err(refuse("is the archive root".to_owned()));
        };
        if let Err(reason) = self.real_dir_chain(target_parent) {
            return Err(refuse(reason));
        }
        let full = self.dest.join(join(&comps));
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => Err(refuse("is a directory".to_owned())),
            Ok(m) if m.file_type().is_symlink() => {
                // The new name is another symlink with the same target, seen from its own directory.
                let link = fs::read_link(&full).map_err(write_err("read the symlink", &full))?;
                self.check_symlink_target(parent, link.as_os_str().as_bytes())
                    .map_err(|reason| refuse(format!("is a symlink whose target `{}` {reason}", link.display())))?;
                Ok(full)
            }
            Ok(_) => Ok(full),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(refuse("does not exist (it must be an earlier entry of the archive)".to_owned()))
            }
            Err(e) => Err(write_err("inspect", &full)(e)),
        }
    }

    /// Checks that a symlink in the directory `parent` (components below the root) pointing at
    /// `target` stays inside the root. Returns why not.
    fn check_symlink_target(&self, parent: &[&[u8]], target: &[u8]) -> Result<(), String> {
        if self.opts.allow_external_symlinks {
            return Ok(());
        }
        if target.first() == Some(&b'/') {
            return Err("is absolute".to_owned());
        }
        let mut stack: Vec<&[u8]> = parent.to_vec();
        // The first `verified` components of `stack` are known to be real directories.
        let mut verified = stack.len();
        for comp in target.split(|b| *b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    if stack.is_empty() {
                        return Err("climbs out of the archive root".to_owned());
                    }
                    if stack.len() > verified {
                        // `name/..` is the directory holding `name` only if `name` is a real
                        // directory; through a symlink it could be anywhere.
                        self.real_dir_chain(&stack)
                            .map_err(|reason| format!("uses `..` after a path that {reason}"))?;
                    }
                    stack.pop();
                    verified = stack.len();
                }
                name => stack.push(name),
            }
        }
        Ok(())
    }

    /// Checks that every prefix of `comps` is a real directory in `dest` (without creating any).
    fn real_dir_chain(&self, comps: &[&[u8]]) -> Result<(), String> {
        let mut rel = PathBuf::new();
        for comp in comps {
            rel.push(OsStr::from_bytes(comp));
            if self.known_dirs.contains(&rel) {
                continue;
            }
            let shown = rel.display();
            match fs::symlink_metadata(self.dest.join(&rel)) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => return Err(format!("goes through the symlink `{shown}`")),
                Ok(_) => return Err(format!("goes through `{shown}`, which is not a directory")),
                Err(_) => return Err(format!("goes through `{shown}`, which does not exist (yet)")),
            }
        }
        Ok(())
    }

    /// Makes sure every parent of an entry is a real directory, creating missing ones (0700).
    fn make_parents(&mut self, parent: &[&[u8]], shown: &str) -> Result<(), UntarError> {
        let mut rel = PathBuf::new();
        for comp in parent {
            rel.push(OsStr::from_bytes(comp));
            if self.known_dirs.contains(&rel) {
                continue;
            }
            let full = self.dest.join(&rel);
            match fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    let reason = format!("its parent `{}` is a symlink; refusing to write through it", rel.display());
                    return Err(hostile(shown, reason));
                }
                Ok(_) => return Err(hostile(shown, format!("its parent `{}` is not a directory", rel.display()))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::DirBuilder::new().mode(0o700).create(&full).map_err(write_err("create", &full))?;
                }
                Err(e) => return Err(write_err("inspect", &full)(e)),
            }
            self.known_dirs.insert(rel.clone());
        }
        Ok(())
    }

    /// Refuses an entry whose path already exists (never replaces or follows what is there).
    fn must_not_exist(&self, full: &Path, shown: &str) -> Result<(), UntarError> {
        match fs::symlink_metadata(full) {
            Ok(m) => Err(duplicate(shown, &m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(write_err("inspect", full)(e)),
        }
    }

    /// The mode, owner and mtime of an entry, as they will be applied.
    fn meta<R: Read>(&self, entry: &mut ::tar::Entry<'_, R>, shown: &str) -> Result<Meta, UntarError> {
        let bad = |what: &str, e: io::Error| corrupt(shown, format!("bad {what}: {e}"));
        let header = entry.header();
        let mask = if self.opts.restore_owner { 0o7777 } else { 0o777 };
        let mode = header.mode().map_err(|e| bad("mode", e))? & mask;
        let (uid, gid) = if self.opts.restore_owner {
            let uid = header.uid().map_err(|e| bad("uid", e))?;
            let gid = header.gid().map_err(|e| bad("gid", e))?;
            let uid = u32::try_from(uid).map_err(|_| corrupt(shown, format!("uid {uid} out of range")))?;
            let gid = u32::try_from(gid).map_err(|_| corrupt(shown, format!("gid {gid} out of range")))?;
            (uid, gid)
        } else {
            (0, 0)
        };
        let header_secs = header.mtime().map_err(|e| bad("mtime", e))?;
        let (secs, nanos) = pax_mtime(entry).unwrap_or((header_secs, 0));
        let out_of_range = || corrupt(shown, format!("mtime {secs} out of range"));
        let secs_signed = i64::try_from(secs).map_err(|_| out_of_range())?;
        let time = UNIX_EPOCH.checked_add(Duration::new(secs, nanos)).ok_or_else(out_of_range)?;
        Ok(Meta { mode, uid, gid, secs: secs_signed, nanos, time })
    }

    /// Applies the directories' metadata, deepest first, the root (`dest`) last.
    fn finish(&mut self) -> Result<(), UntarError> {
        let mut dirs: Vec<(PathBuf, Meta)> = self.dirs.drain().collect();
        dirs.sort_by_cached_key(|(rel, _)| Reverse(rel.components().count()));
        for (rel, meta) in dirs {
            let full = if rel.as_os_str().is_empty() { self.dest.to_path_buf() } else { self.dest.join(&rel) };
            let dir = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
                .open(&full)
                .map_err(write_err("open the directory", &full))?;
            if self.opts.restore_owner {
                std::os::unix::fs::fchown(&dir, Some(meta.uid), Some(meta.gid))
                    .map_err(write_err("set the owner of", &full))?;
            }
            dir.set_permissions(fs::Permissions::from_mode(meta.mode)).map_err(write_err("set the mode of", &full))?;
            dir.set_times(FileTimes::new().set_modified(meta.time)).map_err(write_err("set the mtime of", &full))?;
        }
        Ok(())
    }
}

/// Splits a member name into its normal components (`.` and empty ones dropped); refuses
/// absolute names, `..`, NUL bytes and empty names. No components means the root.
fn clean_path(name: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.contains(&0) {
        return Err("the name contains a NUL byte");
    }
    if name[0] == b'/' {
        return Err("absolute path");
    }
    let mut comps = Vec::new();
    for comp in name.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("the name contains a `..` component"),
            comp => comps.push(comp),
        }
    }
    Ok(comps)
}

fn join(comps: &[&[u8]]) -> PathBuf {
    comps.iter().map(|c| OsStr::from_bytes(c)).collect()
}

fn link_name<R: Read>(entry: &::tar::Entry<'_, R>) -> Vec<u8> {
    entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default()
}

/// Seconds and nanoseconds of a PAX `mtime` record of the entry, if it has a usable one.
fn pax_mtime<R: Read>(entry: &mut ::tar::Entry<'_, R>) -> Option<(u64, u32)> {
    let extensions = entry.pax_extensions().ok()??;
    for extension in extensions {
        let extension = extension.ok()?;
        if extension.key_bytes() == b"mtime" {
            return parse_pax_time(extension.value_bytes());
        }
    }
    None
}

/// Parses `123` or `123.456` (non-negative, decimal seconds).
fn parse_pax_time(value: &[u8]) -> Option<(u64, u32)> {
    let (secs, frac) = match value.iter().position(|b| *b == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b""[..]),
    };
    if secs.is_empty() || !secs.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let secs = std::str::from_utf8(secs).ok()?.parse::<u64>().ok()?;
    let mut nanos = 0u32;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    Some((secs, nanos))
}

/// Sets the mtime of `path` itself, not of what it points to (symlinks, device nodes); the
/// access time is left alone.
/// Files of at least this size have their write-back started early, in strides of this size.
const WRITEBACK_MIN: u64 = 1 << 20;
const WRITEBACK_STRIDE: u64 = 8 << 20;
/// Smaller files (counted with 4 KiB each for their inode and directory entry) are flushed
/// together: the write-back thread flushes the whole file system each time this much of them
/// has been written, instead of one call per file. The flush before the swap then has almost
/// nothing left (0.6 s -> 0.0-0.1 s on the benchmark tree of 60,000 files).
const FLUSH_EVERY: u64 = 128 << 20;

/// Starts the write-back of what was just written, on a thread of its own, so that the disk
/// works while the next files are unpacked and the flush before the swap has little left to
/// do. Starting it on the unpacking thread was slower: `sync_file_range` blocks while the
/// device's queue is full, and the unpacking thread is the restore's bottleneck. Best effort:
/// when the thread lags, requests are dropped (the final flush writes what they covered).
struct Writeback {
    tx: Option<std::sync::mpsc::SyncSender<Flush>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A request to the write-back thread.
enum Flush {
    /// `sync_file_range(WRITE)` of a range of one large file.
    Range(std::sync::Arc<fs::File>, u64, u64),
    /// `syncfs` of the destination's file system (for the small files written so far).
    All,
}

impl Writeback {
    fn start(dest: &Path) -> Self {
        let root = fs::File::open(dest).ok();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Flush>(64);
        let thread = std::thread::Builder::new().name("writeback".into()).spawn(move || {
            use std::os::fd::AsRawFd;
            for job in rx {
                match job {
                    Flush::Range(file, offset, len) => {
                        let (Ok(offset), Ok(len)) = (libc::off64_t::try_from(offset), libc::off64_t::try_from(len))
                        else {
                            continue;
                        };
                        // SAFETY: sync_file_range takes an open descriptor (kept open by the Arc) and
                        // touches no memory of ours.
                        unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
                    }
                    Flush::All => {
                        if let Some(root) = &root {
                            // SAFETY: syncfs takes an open descriptor and touches no memory of ours.
                            unsafe { libc::syncfs(root.as_raw_fd()) };
                        }
                    }
                }
            }
        });
        match thread {
            Ok(thread) => Writeback { tx: Some(tx), thread: Some(thread) },
            // No thread, no early write-back: the final flush does all of it.
            Err(_) => Writeback { tx: None, thread: None },
        }
    }

    fn queue(&self, file: &std::sync::Arc<fs::File>, offset: u64, len: u64) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Flush::Range(std::sync::Arc::clone(file), offset, len));
        }
    }

    fn flush(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Flush::All);
        }
    }
}

impl Drop for Writeback {
    /// Waits for the thread, so that no file of the tree is still open when unpacking returns.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn set_mtime_nofollow(path: &Path, meta: &Meta) -> io::Result<()> {
    let path = c_path(path)?;
    let range = |_| io::Error::new(io::ErrorKind::InvalidInput, "mtime out of range");
    let times = [
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        libc::timespec {
            tv_sec: libc::time_t::try_from(meta.secs).map_err(range)?,
            // Below 10^9, so it fits a c_long everywhere.
            tv_nsec: meta.nanos as libc::c_long,
        },
    ];
    // SAFETY: `path` is a valid NUL-terminated string and `times` an array of two timespecs,
    // both outliving the call; utimensat only reads them.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(kind: EntryType) -> String {
    let letter = char::from(kind.as_byte()).escape_default();
    let name = match kind {
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "FIFO",
        EntryType::Regular | EntryType::Continuous => "regular file",
        EntryType::GNUSparse => "sparse file",
        EntryType::Directory => "directory",
        EntryType::Symlink => "symlink",
        EntryType::Link => "hard link",
        EntryType::GNULongName => "GNU long name record without a member",
        EntryType::GNULongLink => "GNU long link record without a member",
        EntryType::XHeader => "PAX record without a member",
        _ if kind.as_byte() == b'V' => "GNU volume label",
        _ if kind.as_byte() == b'M' => "GNU multi-volume continuation",
        _ => "unknown entry type",
    };
    format!("{name} (type '{letter}')")
}

fn hostile(shown: &str, reason: impl Into<String>) -> UntarError {
    UntarError::Hostile { path: shown.to_owned(), reason: reason.into() }
}

fn corrupt(shown: &str, reason: String) -> UntarError {
    UntarError::Corrupt { path: shown.to_owned(), reason }
}

fn duplicate(shown: &str, existing: &fs::Metadata) -> UntarError {
    let what = if existing.file_type().is_symlink() {
        "a symlink"
    } else if existing.is_dir() {
        "a directory"
    } else {
        "an entry"
    };
    hostile(shown, format!("the path already exists as {what} (duplicate entry); refusing to replace it"))
}

fn write_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> UntarError + 'a {
    move |source| UntarError::Write { action, path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tar::{compare_trees, write_tar, TarOptions};
    use ::tar::{Builder, Header};
    use std::os::unix::fs::{lchown, symlink, MetadataExt};

    use crate::source::tar::tests::{chmod, random_bytes, set_mtime, write};

    fn os(bytes: &[u8]) -> &OsStr {
        OsStr::from_bytes(bytes)
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    fn long_file() -> String {
        format!("long/{}/{}", "d".repeat(90), "f".repeat(60))
    }

    fn entries_of(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    /// A tree with the edge cases of a data directory. Ownership and the setuid/setgid/sticky
    /// bits only as root. Returns whether a character device could be created.
    fn build_tree(root: &Path, as_root: bool) -> bool {
        write(&root.join("conf/seafile.conf"), b"[fileserver]\nport=8082\n");
        write(&root.join("conf/empty.txt"), b"");
        write(&root.join("conf/block512"), &random_bytes(512, 1));
        write(&root.join("nested/a/b/c/deep.txt"), b"deep\n");
        fs::create_dir_all(root.join("empty")).unwrap();

        fs::create_dir_all(root.join("links")).unwrap();
        symlink("../conf/seafile.conf", root.join("links/rel")).unwrap();
        symlink("../conf/../conf/seafile.conf", root.join("links/via-real-dir")).unwrap();
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
        write(&root.join("perms/script"), b"#!/bin/sh\n");
        chmod(&root.join("perms/script"), 0o755);
        write(&root.join("perms/readonly/inside"), b"in a read-only dir\n");
        chmod(&root.join("perms/readonly/inside"), 0o444);
        set_mtime(&root.join("perms/readonly"), 1_300_000_000);
        chmod(&root.join("perms/readonly"), 0o555);
        if as_root {
            write(&root.join("perms/setuid"), b"#!/bin/sh\n");
            chmod(&root.join("perms/setuid"), 0o4755);
            fs::create_dir_all(root.join("perms/sticky")).unwrap();
            chmod(&root.join("perms/sticky"), 0o1777);
            fs::create_dir_all(root.join("perms/setgid")).unwrap();
            chmod(&root.join("perms/setgid"), 0o2750);

            write(&root.join("owned/file"), b"owned by 1000\n");
            symlink("file", root.join("owned/link")).unwrap();
            std::os::unix::fs::chown(root.join("owned/file"), Some(1000), Some(1000)).unwrap();
            chmod(&root.join("owned/file"), 0o640);
            lchown(root.join("owned/link"), Some(1000), Some(1001)).unwrap();
            std::os::unix::fs::chown(root.join("owned"), Some(1000), Some(1000)).unwrap();
        }

        let long_path = format!("nested/a/b/c/{}/{}.txt", "p".repeat(50), "q".repeat(60));
        write(&root.join(long_path), b"long path\n");
        write(&root.join(format!("names/{}", "n".repeat(150))), b"long name\n");
        write(&root.join(format!("names/{}", "e".repeat(94))), b"100 bytes\n");
        write(&root.join("names").join(os(b"caf\xe9.txt")), b"latin-1\n");
        let mut odd_dir = b"\xff".to_vec();
        odd_dir.extend_from_slice("a".repeat(120).as_bytes());
        write(&root.join(os(&odd_dir)).join("inner"), b"non-UTF-8 long path\n");

        fs::create_dir_all(root.join("special")).unwrap();
        let fifo = c_path(&root.join("special/fifo")).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
        let null = c_path(&root.join("special/null")).unwrap();
        // SAFETY: a valid NUL-terminated path.
        let has_dev = unsafe { libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) } == 0;

        write(&root.join("data/big.bin"), &random_bytes(3 * BUF_SIZE + 123, 7));
        write(&root.join("data/exact.bin"), &random_bytes(BUF_SIZE, 9));

        // Times last: creating entries touches their directories.
        set_mtime(&root.join("conf/seafile.conf"), 1_000_000_000);
        set_mtime(&root.join("data/big.bin"), 1_000_000_001);
        set_mtime(&root.join("empty"), 1_100_000_000);
        set_mtime(&root.join("nested"), 1_200_000_000);
        set_mtime(&root.join("links"), 1_250_000_000);
        chmod(root, 0o751);
        has_dev
    }

    fn fresh_dest(tmp: &Path, name: &str) -> PathBuf {
        let dest = tmp.join(name);
        fs::create_dir(&dest).unwrap();
        dest
    }

    #[test]
    fn round_trip_gives_an_identical_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let src = fresh_dest(tmp.path(), "src");
        let as_root = is_root();
        let has_dev = build_tree(&src, as_root);
        let mut archive = Vec::new();
        let stats = write_tar(&src, &TarOptions::default(), &mut archive).unwrap();
        assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);

        let dest = fresh_dest(tmp.path(), "dest");
        let opts = UntarOptions { allow_devices: true, allow_external_symlinks: true, restore_owner: as_root };
        let report = unpack(&archive[..], &dest, &opts).unwrap();
        if let Err(diff) = compare_trees(&src, &dest, &[]) {
            panic!("{diff}");
        }
        let expected = UntarReport {
            files: stats.files,
            dirs: stats.dirs,
            symlinks: stats.symlinks,
            hardlinks: stats.hardlinks,
            other: stats.other,
            file_bytes: stats.bytes,
        };
        assert_eq!(report, expected);
        assert_eq!(report.hardlinks, 3);
        assert_eq!(report.symlinks, if as_root { 8 } else { 7 });
        assert_eq!(report.other, if has_dev { 2 } else { 1 });
        assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o7777, 0o751);
        assert_eq!(fs::read_link(dest.join("links/long")).unwrap().as_os_str(), "t/".repeat(60).as_str());
        let ino = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap().ino();
        assert_eq!(ino("hard/one"), ino("nested/three"));
        assert_eq!(ino(&long_file()), ino("z-short"));
    }

    #[test]
    fn options_refuse_external_symlinks_and_devices_by_default() {
        let tmp = tempfile::tempdir().unwrap();
        let src = fresh_dest(tmp.path(), "src");
        build_tree(&src, false);
        let mut archive = Vec::new();
        write_tar(&src, &TarOptions::default(), &mut archive).unwrap();

        let dest = fresh_dest(tmp.path(), "dest1");
        let err = unpack(&archive[..], &dest, &UntarOptions::default()).unwrap_err();
        assert!(matches!(&err, UntarError::Hostile { path, .. } if path == "links/abs"), "{err}");
        assert!(err.to_string().contains("is absolute"), "{err}");

        let dest = fresh_dest(tmp.path(), "dest2");
        let opts = UntarOptions { allow_external_symlinks: true, ..UntarOptions::default() };
        let err = unpack(&archive[..], &dest, &opts).unwrap_err();
        assert!(matches!(&err, UntarError::Hostile { path, .. } if path == "special/fifo"), "{err}");
        assert!(err.to_string().contains("FIFO (type '6') entries are not allowed"), "{err}");
    }

    // ---- hand-made archives ----

    fn fill(field: &mut [u8; 100], value: &[u8]) {
        assert!(value.len() <= 100, "use a long-name record");
        field.fill(0);
        field[..value.len()].copy_from_slice(value);
    }

    /// One member: a raw GNU header (names written byte for byte) and its data.
    fn raw(name: &[u8], kind: EntryType, link: &[u8], data: &[u8]) -> (Header, Vec<u8>) {
        let mut header = Header::new_gnu();
        fill(&mut header.as_old_mut().name, name);
        fill(&mut header.as_old_mut().linkname, link);
        header.set_mode(if kind == EntryType::Directory { 0o755 } else { 0o644 });
        header.set_uid(1234);
        header.set_gid(5678);
        header.set_mtime(1_000_000_000);
        header.set_size(data.len() as u64);
        header.set_entry_type(kind);
        header.set_cksum();
        (header, data.to_vec())
    }

    fn file(name: &str, data: &[u8]) -> (Header, Vec<u8>) {
        raw(name.as_bytes(), EntryType::Regular, b"", data)
    }

    fn dir(name: &str) -> (Header, Vec<u8>) {
        raw(name.as_bytes(), EntryType::Directory, b"", b"")
    }

    fn symlink_to(name: &str, target: &str) -> (Header, Vec<u8>) {
        raw(name.as_bytes(), EntryType::Symlink, target.as_bytes(), b"")
    }

    fn hard_link_to(name: &str, target: &str) -> (Header, Vec<u8>) {
        raw(name.as_bytes(), EntryType::Link, target.as_bytes(), b"")
    }

    fn build(members: &[(Header, Vec<u8>)]) -> Vec<u8> {
        let mut builder = Builder::new(Vec::new());
        for (header, data) in members {
            builder.append(header, &data[..]).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// Unpacks the members (made knowing the temp dir) into `<tmp>/dest` and expects an error
    /// whose message contains `needle`; checks that nothing appeared outside `dest`.
    fn refused(members: impl FnOnce(&Path) -> Vec<(Header, Vec<u8>)>, opts: &UntarOptions, needle: &str) -> UntarError {
        let tmp = tempfile::tempdir().unwrap();
        let dest = fresh_dest(tmp.path(), "dest");
        let outside = fresh_dest(tmp.path(), "outside");
        let archive = build(&members(tmp.path()));
        let err = unpack(&archive[..], &dest, opts).unwrap_err();
        assert!(err.to_string().contains(needle), "expected `{needle}` in: {err}");
        assert_eq!(entries_of(tmp.path()), ["dest", "outside"]);
        assert!(entries_of(&outside).is_empty());
        err
    }

    fn hostile_at(err: &UntarError, entry: &str) {
        assert!(matches!(err, UntarError::Hostile { path, .. } if path == entry), "{err:?}");
        assert!(err.is_bad_archive());
    }

    #[test]
    fn hostile_names_are_refused() {
        let none = UntarOptions::default();
        let err = refused(|_| vec![file("../x", b"x")], &none, "`..` component");
        hostile_at(&err, "../x");
        let err = refused(|_| vec![dir("a/"), file("a/../../x", b"x")], &none, "`..` component");
        hostile_at(&err, "a/../../x");

        let abs = |tmp: &Path| tmp.join("outside/abs").into_os_string().into_string().unwrap();
        let err = refused(|tmp| vec![file(&abs(tmp), b"x")], &none, "absolute path");
        assert!(err.to_string().contains("/outside/abs"), "{err}");

        let err = refused(|_| vec![file("", b"x")], &none, "empty name");
        hostile_at(&err, "");
        let err = refused(|_| vec![file("./", b"x")], &none, "the archive root must be a directory");
        hostile_at(&err, "./");

        // A NUL inside a GNU long name.
        let nul =
            |_: &Path| vec![raw(b"././@LongLink", EntryType::GNULongName, b"", b"a\0/x\0"), file("placeholder", b"x")];
        let err = refused(nul, &none, "NUL byte");
        hostile_at(&err, "a\u{0}/x");
    }

    #[test]
    fn writing_through_symlinks_is_refused() {
        let all = UntarOptions { allow_devices: true, allow_external_symlinks: true, restore_owner: false };
        let err = refused(|_| vec![symlink_to("l", "../outside"), file("l/x", b"x")], &all, "is a symlink");
        hostile_at(&err, "l/x");
        let err = refused(|_| vec![symlink_to("l", ".."), dir("l/sub/")], &all, "`l` is a symlink");
        hostile_at(&err, "l/sub/");

        let none = UntarOptions::default();
        let members = |_: &Path| vec![dir("sub/"), symlink_to("l2", "sub"), file("l2/x", b"x")];
        let err = refused(members, &none, "its parent `l2` is a symlink; refusing to write through it");
        hostile_at(&err, "l2/x");

        let err = refused(|_| vec![file("f", b"f"), file("f/x", b"x")], &none, "`f` is not a directory");
        hostile_at(&err, "f/x");
    }

    #[test]
    fn escaping_symlinks_are_refused() {
        let none = UntarOptions::default();
        let err = refused(|_| vec![symlink_to("l", "..")], &none, "climbs out of the archive root");
        hostile_at(&err, "l");
        let err = refused(|_| vec![symlink_to("l", "/")], &none, "is absolute");
        hostile_at(&err, "l");
        let err = refused(|_| vec![symlink_to("a/b/l", "../../../x")], &none, "climbs out");
        hostile_at(&err, "a/b/l");
        let err = refused(|_| vec![symlink_to("l", "")], &none, "empty symlink target");
        hostile_at(&err, "l");

        // `a/s` points at the root; `b/t -> ../a/s/..` is lexically inside but really the root's parent.
        let chain = |_: &Path| vec![dir("a/"), symlink_to("a/s", ".."), dir("b/"), symlink_to("b/t", "../a/s/..")];
        let err = refused(chain, &none, "uses `..` after a path that goes through the symlink `a/s`");
        hostile_at(&err, "b/t");
        // `..` after a name that does not exist yet (it could become a symlink later).
        let err = refused(|_| vec![symlink_to("t", "later/../x")], &none, "does not exist (yet)");
        hostile_at(&err, "t");

        // Inside is fine, including `..` after a real directory.
        let tmp = tempfile::tempdir().unwrap();
        let dest = fresh_dest(tmp.path(), "dest");
        let members = [
            dir("a/"),
            symlink_to("a/up", ".."),
            symlink_to("a/b/l", "../../a/./up//"),
            symlink_to("real", "a/b/../up"),
            symlink_to("dangling", "nowhere/at/all"),
        ];
        let report = unpack(&build(&members)[..], &dest, &none).unwrap();
        assert_eq!(report.symlinks, 4);
        assert_eq!(fs::read_link(dest.join("a/b/l")).unwrap().as_os_str(), "../../a/./up//");
    }

    #[test]
    fn bad_hard_links_are_refused() {
        let none = UntarOptions::default();
        let err = refused(|_| vec![hard_link_to("h", "../outside")], &none, "`..` component");
        hostile_at(&err, "h");
        let err = refused(|_| vec![hard_link_to("h", "nope")], &none, "does not exist");
        hostile_at(&err, "h");
        let err = refused(|_| vec![dir("sub/"), hard_link_to("h", "sub")], &none, "is a directory");
        hostile_at(&err, "h");
        let err = refused(|_| vec![dir("sub/"), hard_link_to("h", "./")], &none, "is the archive root");
        hostile_at(&err, "h");
        let members =
            |_: &Path| vec![dir("sub/"), file("sub/f", b"f"), symlink_to("l2", "sub"), hard_link_to("h", "l2/f")];
        let err = refused(members, &none, "goes through the symlink `l2`");
        hostile_at(&err, "h");
        // A hard link to a symlink is a symlink with the same target in another directory.
        let relocated = |_: &Path| vec![dir("a/"), symlink_to("a/s", ".."), hard_link_to("h", "a/s")];
        let err = refused(relocated, &none, "is a symlink whose target `..` climbs out");
        hostile_at(&err, "h");

        // A good one.
        let tmp = tempfile::tempdir().unwrap();
        let dest = fresh_dest(tmp.path(), "dest");
        let members = [file("f", b"data"), hard_link_to("d/h", "./f"), symlink_to("s", "f"), hard_link_to("s2", "s")];
        let report = unpack(&build(&members)[..], &dest, &none).unwrap();
        assert_eq!(report.hardlinks, 2);
        let meta = fs::metadata(dest.join("d/h")).unwrap();
        assert_eq!(meta.ino(), fs::metadata(dest.join("f")).unwrap().ino());
        assert_eq!(meta.nlink(), 2);
        assert_eq!(fs::read_link(dest.join("s2")).unwrap().as_os_str(), "f");
    }

    #[test]
    fn devices_duplicates_and_unknown_types_are_refused() {
        let none = UntarOptions::default();
        let err = refused(|_| vec![raw(b"null", EntryType::Char, b"", b"")], &none, "character device (type '3')");
        hostile_at(&err, "null");
        let err = refused(|_| vec![raw(b"p", EntryType::Fifo, b"", b"")], &none, "not allowed");
        hostile_at(&err, "p");

        let err = refused(|_| vec![file("f", b"1"), file("f", b"2")], &none, "already exists as an entry");
        hostile_at(&err, "f");
        let members = |_: &Path| vec![dir("sub/"), symlink_to("l2", "sub"), file("l2", b"x")];
        let err = refused(members, &none, "already exists as a symlink");
        hostile_at(&err, "l2");
        let members = |_: &Path| vec![dir("sub/"), symlink_to("l2", "sub"), dir("l2/")];
        let err = refused(members, &none, "already exists as a symlink");
        hostile_at(&err, "l2/");
        let err = refused(|_| vec![dir("d/"), file("d", b"x")], &none, "already exists as a directory");
        hostile_at(&err, "d");

        let err = refused(|_| vec![raw(b"label", EntryType::new(b'V'), b"", b"")], &none, "GNU volume label");
        assert!(matches!(&err, UntarError::Unsupported { path, .. } if path == "label"), "{err:?}");
    }

    #[test]
    fn fifos_are_created_when_allowed() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = fresh_dest(tmp.path(), "dest");
        let opts = UntarOptions { allow_devices: true, ..UntarOptions::default() };
        let report = unpack(&build(&[raw(b"d/p", EntryType::Fifo, b"", b"")])[..], &dest, &opts).unwrap();
        assert_eq!(report.other, 1);
        let meta = fs::symlink_metadata(dest.join("d/p")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));
        assert_eq!(meta.mode() & 0o7777, 0o644);
        assert_eq!(meta.mtime(), 1_000_000_000);
    }

    #[test]
    fn directories_merge_and_missing_parents_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = fresh_dest(tmp.path(), "dest");
        let mut again = dir("a/");
        again.0.set_mode(0o750);
        again.0.set_mtime(1_500_000_000);
        again.0.set_cksum();
        let members = [dir("a/"), file("a/x", b"x"), again, file("p/q/f", b"f"), dir("./")];
        let report = unpack(&build(&members)[..], &dest, &UntarOptions::default()).unwrap();
        assert_eq!(report, UntarReport { files: 2, dirs: 3, file_bytes: 2, ..UntarReport::default() });
        let meta = fs::metadata(dest.join("a")).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.mtime()), (0o750, 1_500_000_000));
        assert_eq!(fs::metadata(dest.join("p")).unwrap().mode() & 0o7777, 0o700);
        assert_eq!(fs::metadata(dest.join("p/q")).unwrap().mode() & 0o7777, 0o700);
        let root = fs::metadata(&dest).unwrap();
        assert_eq!((root.mode() & 0o7777, root.mtime()), (0o755, 1_000_000_000));
    }

    #[test]
    fn special_bits_and_owners_need_restore_owner() {
        let mut setuid = file("s", b"#!/bin/sh\n");
        setuid.0.set_mode(0o4755);
        setuid.0.set_cksum();
        let archive = build(&[setuid]);

        let tmp = tempfile::tempdir().unwrap();
        let dest = fresh_dest(tmp.path(), "plain");
        unpack(&archive[..], &dest, &UntarOptions::default()).unwrap();
        let meta = fs::metadata(dest.join("s")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755);
        assert_eq!(meta.uid(), fs::metadata(tmp.path()).unwrap().uid());

        if is_root() {
            let dest = fresh_dest(tmp.path(), "owned");
            let opts = UntarOptions { restore_owner: true, ..UntarOptions::default() };
            unpack(&archive[..], &dest, &opts).unwrap();
            let meta = fs::metadata(dest.join("s")).unwrap();
            assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o4755, 1234, 5678));
        }
    }

    /// A PAX record `key=value` with its length prefix.
    fn pax_record(key: &str, value: &str) -> Vec<u8> {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}").into_bytes()
    }

    #[test]
    fn pax_mtime_keeps_nanoseconds() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = fresh_dest(tmp.path(), "dest");
        let mut records = pax_record("mtime", "1234567890.5");
        records.extend(pax_record("path", "pax/long-name"));
        let members = [
            raw(b"PaxHeaders/x", EntryType::XHeader, b"", &records),
            file("short", b"data"),
            raw(b"PaxHeaders/l", EntryType::XHeader, b"", &pax_record("mtime", "1000000000.000000001")),
            symlink_to("link", "pax/long-name"),
        ];
        unpack(&build(&members)[..], &dest, &UntarOptions::default()).unwrap();
        let meta = fs::metadata(dest.join("pax/long-name")).unwrap();
        assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_234_567_890, 500_000_000));
        let meta = fs::symlink_metadata(dest.join("link")).unwrap();
        assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_000_000_000, 1));
        assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
        assert_eq!(parse_pax_time(b"12.1234567891"), Some((12, 123_456_789)));
        assert_eq!(parse_pax_time(b"-12.5"), None);
        assert_eq!(parse_pax_time(b""), None);
    }

    // ---- streams ----

    fn small_archive() -> (Vec<u8>, usize) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path();
        write(&src.join("a-empty"), b"");
        write(&src.join("b-ten"), b"0123456789");
        write(&src.join("c-sub/thousand"), &random_bytes(1000, 3));
        write(&src.join(format!("d-{}", "n".repeat(150))), &random_bytes(700, 4));
        symlink("b-ten", src.join("e-link")).unwrap();
        fs::hard_link(src.join("b-ten"), src.join("f-hard")).unwrap();
        let mut archive = Vec::new();
        write_tar(src, &TarOptions::default(), &mut archive).unwrap();
        // write_tar ends with exactly two zero blocks.
        let end = archive.len() - 1024;
        assert!(archive[end..].iter().all(|b| *b == 0));
        assert!(archive[end - 512..end].iter().any(|b| *b != 0));
        (archive, end)
    }

    #[test]
    fn truncated_streams_are_errors() {
        let (archive, end) = small_archive();
        let mut cuts: Vec<usize> = (0..end + 512).step_by(512).collect();
        cuts.extend((1..end + 512).step_by(61));
        cuts.extend([end - 1, end + 1, end + 511]);
        let tmp = tempfile::tempdir().unwrap();
        for (i, cut) in cuts.into_iter().enumerate() {
            let dest = fresh_dest(tmp.path(), &format!("d{i}"));
            match unpack(&archive[..cut], &dest, &UntarOptions::default()) {
                Err(UntarError::Truncated { detail, .. }) => assert!(detail.contains("the stream ends"), "{detail}"),
                other => panic!("cut at {cut} of {}: expected a truncation error, got {other:?}", archive.len()),
            }
        }
        let err = unpack(&archive[..end], &fresh_dest(tmp.path(), "x"), &UntarOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "truncated tar stream: the stream ends after entry `f-hard` without the end-of-archive marker"
        );
        let err = unpack(&b""[..], &fresh_dest(tmp.path(), "y"), &UntarOptions::default()).unwrap_err();
        assert!(matches!(err, UntarError::Truncated { entry: None, .. }), "{err:?}");

        // One zero block is enough (GNU tar accepts a lone zero block too).
        for cut in [end + 512, end + 1000, archive.len()] {
            let dest = fresh_dest(tmp.path(), &format!("ok{cut}"));
            let report = unpack(&archive[..cut], &dest, &UntarOptions::default()).unwrap();
            assert_eq!((report.files, report.dirs, report.symlinks, report.hardlinks), (4, 2, 1, 1));
        }
    }

    /// Hands out `data` in odd-sized pieces, fails at `fail_at`, counts what was read.
    struct Source {
        data: Vec<u8>,
        pos: usize,
        fail_at: usize,
    }

    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos >= self.fail_at {
                return Err(io::Error::other("network gone"));
            }
            let n = buf.len().min(self.data.len() - self.pos).min(self.fail_at - self.pos).min(7777);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[test]
    fn large_files_written_back_early_are_complete() {
        // Sizes around the write-back thresholds: below the minimum, at it, one stride and a
        // bit, and several strides with a tail; each file's ranges go to the write-back thread.
        let sizes = [
            WRITEBACK_MIN as usize - 1,
            WRITEBACK_MIN as usize,
            WRITEBACK_STRIDE as usize + 5,
            3 * WRITEBACK_STRIDE as usize + BUF_SIZE / 3,
        ];
        let members: Vec<_> =
            sizes.iter().enumerate().map(|(i, &n)| file(&format!("f{i}"), &random_bytes(n, i as u64 + 11))).collect();
        let tmp = tempfile::tempdir().unwrap();
        let dest = fresh_dest(tmp.path(), "dest");
        let report = unpack(&build(&members)[..], &dest, &UntarOptions::default()).unwrap();
        assert_eq!(report.files, sizes.len() as u64);
        for (i, &n) in sizes.iter().enumerate() {
            let got = fs::read(dest.join(format!("f{i}"))).unwrap();
            assert!(got == random_bytes(n, i as u64 + 11), "f{i} ({n} bytes) differs");
        }
    }

    #[test]
    fn reader_errors_name_the_entry() {
        let members = [file("a-small", b"0123456789"), file("b-big", &random_bytes(3 * BUF_SIZE, 5))];
        let archive = build(&members);
        let tmp = tempfile::tempdir().unwrap();

        let source = Source { data: archive.clone(), pos: 0, fail_at: 512 * 3 + BUF_SIZE };
        let err = unpack(source, &fresh_dest(tmp.path(), "a"), &UntarOptions::default()).unwrap_err();
        assert!(matches!(&err, UntarError::ReadData { path, .. } if path == "b-big"), "{err:?}");
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(chain, "cannot read the contents of `b-big` from the tar stream: network gone");

        let source = Source { data: archive.clone(), pos: 0, fail_at: 512 * 2 + 100 };
        let err = unpack(source, &fresh_dest(tmp.path(), "b"), &UntarOptions::default()).unwrap_err();
        assert!(matches!(&err, UntarError::Read { entry: Some(e), .. } if e == "a-small"), "{err:?}");
        assert_eq!(err.to_string(), "cannot read the tar stream after entry `a-small`");
        assert!(!err.is_bad_archive() && !err.is_disk_full());
    }

    #[test]
    fn a_bad_header_is_invalid() {
        let mut archive = build(&[file("a", b"x"), file("b", b"y")]);
        archive[1024 + 10] ^= 1; // in the name of `b`, so the checksum no longer matches
        let tmp = tempfile::tempdir().unwrap();
        let err = unpack(&archive[..], &fresh_dest(tmp.path(), "d"), &UntarOptions::default()).unwrap_err();
        assert!(matches!(&err, UntarError::Invalid { entry: Some(e), .. } if e == "a"), "{err:?}");
        assert!(err.is_bad_archive());
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(chain, "invalid tar stream after entry `a`: archive header checksum mismatch");
    }

    #[test]
    fn the_reader_is_drained_to_its_end() {
        let mut data = build(&[file("f", b"x")]);
        data.extend(random_bytes(100_000, 11));
        let len = data.len();
        let mut source = Source { data, pos: 0, fail_at: usize::MAX };
        let tmp = tempfile::tempdir().unwrap();
        unpack(&mut source, &fresh_dest(tmp.path(), "d"), &UntarOptions::default()).unwrap();
        assert_eq!(source.pos, len);

        // An error while draining still counts.
        let mut data = build(&[file("f", b"x")]);
        data.extend([0; 4096]);
        let fail_at = data.len() - 10;
        let source = Source { data, pos: 0, fail_at };
        let err = unpack(source, &fresh_dest(tmp.path(), "e"), &UntarOptions::default()).unwrap_err();
        assert!(matches!(&err, UntarError::Read { entry: Some(e), .. } if e == "f"), "{err:?}");
    }

    #[test]
    fn dest_must_be_an_empty_real_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let archive = build(&[file("f", b"x")]);
        let check = |dest: &Path, reason: &str| {
            let err = unpack(&archive[..], dest, &UntarOptions::default()).unwrap_err();
            assert!(matches!(&err, UntarError::Dest { path, .. } if path == dest), "{err:?}");
            let chain = format!("{:#}", anyhow::Error::from(err));
            assert!(chain.contains(reason), "{chain}");
        };
        let full = fresh_dest(tmp.path(), "full");
        write(&full.join("old"), b"old");
        check(&full, "directory is not empty");
        check(&tmp.path().join("missing"), "No such file");
        check(&full.join("old"), "not a directory");
        let empty = fresh_dest(tmp.path(), "empty");
        symlink(&empty, tmp.path().join("link")).unwrap();
        check(&tmp.path().join("link"), "is a symlink");
        assert!(entries_of(&empty).is_empty());
        assert_eq!(fs::read(full.join("old")).unwrap(), b"old");
    }

    #[test]
    fn disk_full_is_recognisable() {
        let err = UntarError::Write {
            action: "write",
            path: PathBuf::from("/staging/big.bin"),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert!(is_disk_full(&err));
        assert!(!err.is_bad_archive());
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert!(chain.starts_with("cannot write `/staging/big.bin`: No space left on device"), "{chain}");
        let other = UntarError::Write {
            action: "write",
            path: PathBuf::from("x"),
            source: io::Error::from_raw_os_error(libc::EIO),
        };
        assert!(!is_disk_full(&other));
    }
}
