//! Safe extraction of a tar stream into an empty staging directory (the restore side of
//! [`crate::source::tar`]), and [`check`], which applies the very same rules to a stream without
//! writing anything (what `verify` runs, so that a passing `verify` means `restore` accepts
//! the archive).
//!
//! Both read the archive through [`Guard`] (metadata records are bounded before the `tar`
//! crate buffers them) with the `tar` crate's entry iterator (GNU long names and links, PAX
//! records, GNU sparse files), and decide about every entry in one place, `Rules::admit`, on a
//! small model of what the archive has created so far (`Model`). [`unpack`] then does the file
//! system work itself, because the archive comes from outside and must not be able to touch
//! anything outside `dest`:
//!
//! - Names are taken byte for byte. Absolute names, `..` components, NUL bytes and empty names
//!   are refused; `.` components and repeated slashes are dropped. `./` (or `.`) is the root
//!   entry: its mode, owner and mtime are applied to `dest` itself at the end.
//! - Symlinks are restored as they were archived, whatever they point at: absolute targets,
//!   targets outside the root and dangling ones included (a link into `/etc`, to another disk).
//!   A symlink is only a name; what is refused is writing THROUGH one: every parent of an entry
//!   must be a directory of the archive (missing ones are created with mode 0700), never a
//!   symlink or a file. An entry whose path already exists is refused as a duplicate (only a
//!   directory entry over an existing directory is accepted; its metadata wins). Hard-link
//!   targets must be earlier non-directory entries reached through directories only; a hard
//!   link to a symlink is one more symlink with the same target.
//! - Unpacking does not rest on the model alone: files are created with
//!   `O_CREAT | O_EXCL | O_NOFOLLOW` and directories with `mkdir`, which fail on whatever is
//!   already there, and `dest` must start empty.
//! - Block and character devices only with [`UntarOptions::allow_devices`]; FIFOs are created
//!   like files. Unknown entry types are refused. PAX global headers are ignored. Owners and
//!   the setuid, setgid and sticky bits only with [`UntarOptions::restore_owner`] (otherwise
//!   dropped); modes, uids, gids and mtimes are checked either way, so the options change what
//!   is accepted only for devices.
//! - Directory metadata is applied after all entries, deepest first, so that creating entries
//!   does not change a directory's mtime afterwards and a read-only directory does not block
//!   its children.
//! - The stream must end with the end-of-archive marker (at least one zero block); a stream
//!   that stops early, even exactly between two entries, is [`UntarError::Truncated`]. After
//!   the marker the rest of the reader is read and thrown away, so that whoever feeds the
//!   reader (decompressor, hash) sees the whole stream.
//! - Every name in an error or a log line goes through [`show_name`]: control characters and
//!   non-UTF-8 bytes escaped, long names shortened.
//!
//! On error the functions return at once; what [`unpack`] wrote into `dest` so far is left
//! there for the caller to remove.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fmt::Write as _;
use std::fs::{self, FileTimes, OpenOptions};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::tar::EntryType;

use super::targuard::Guard;

/// Size of the buffer through which file contents go from the archive to the disk.
const BUF_SIZE: usize = 1 << 20;

/// What [`unpack`] may create besides plain files, directories, symlinks, hard links and
/// FIFOs. [`check`] takes the same options and accepts exactly what [`unpack`] would.
#[derive(Debug, Clone, Default)]
pub struct UntarOptions {
    /// Create block and character devices (otherwise such an entry is refused). Needs root.
    pub allow_devices: bool,
    /// Restore numeric uid/gid (lchown). The caller sets it when running as root (euid 0).
    /// Without it, the setuid, setgid and sticky bits are dropped too.
    pub restore_owner: bool,
}

/// What was unpacked, or would be (counted like [`crate::source::tar::TarStats`]).
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

impl UntarReport {
    /// All entries counted.
    pub fn entries(&self) -> u64 {
        self.files + self.dirs + self.symlinks + self.hardlinks + self.other
    }
}

/// Why an archive could not be unpacked (or checked). Entry names are shown with
/// [`show_name`]; the underlying `io::Error`, when there is one, is the error's `source()`
/// (print the chain, e.g. with `{:#}` on an `anyhow::Error`, to see it).
#[derive(Debug, thiserror::Error)]
pub enum UntarError {
    /// `dest` is missing, not a directory, a symlink, not empty, or cannot be listed.
    #[error("cannot unpack into `{}`", show_path(.path))]
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
    /// The stream is not a valid tar archive after `entry`: a bad header checksum or size, a
    /// long-name or PAX record without a member, or a metadata record above
    /// [`super::targuard::MAX_RECORD`] bytes.
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
    /// a symlink or a non-directory, a duplicate, a hard link to anything but an earlier entry,
    /// or a device without [`UntarOptions::allow_devices`].
    #[error("refused tar entry `{path}`: {reason}")]
    Hostile { path: String, reason: String },
    /// The entry has a type this unpacker does not create (GNU volume labels, multi-volume
    /// continuations, unknown letters).
    #[error("unsupported tar entry `{path}`: {kind}")]
    Unsupported { path: String, kind: String },
    /// A file system operation in `dest` failed (`action` says which, `path` is the full path).
    /// A full disk ends up here: see [`UntarError::is_disk_full`].
    #[error("cannot {action} `{}`", show_path(.path))]
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
    let mut unpacker = Unpacker { dest, opts, dirs: HashMap::new(), writeback: Writeback::start(dest), unsynced: 0 };
    let report = walk(reader, opts, &mut unpacker)?;
    tracing::debug!(dest = %show_path(dest), report = ?report, "tar stream unpacked");
    Ok(report)
}

/// Walks the tar stream `reader` with exactly the rules of [`unpack`] (same options, same
/// errors, contents read and counted) but writes nothing. Reads `reader` to its end.
///
/// Memory: the model of what the archive created, about 20 to 41 bytes per path (entries and
/// their parent directories, see `Model`), plus one buffer of 1 MiB and the metadata records
/// of one entry (at most 64 KiB each). Call it on a blocking thread.
pub fn check<R: Read>(reader: R, opts: &UntarOptions) -> Result<UntarReport, UntarError> {
    walk(reader, opts, &mut Checker)
}

/// The one loop of [`unpack`] and [`check`]: reads the entries, has [`Rules::admit`] decide,
/// hands the admitted ones to `sink`, and checks the end of the stream.
fn walk<R: Read, S: Sink>(reader: R, opts: &UntarOptions, sink: &mut S) -> Result<UntarReport, UntarError> {
    let state = Rc::new(ReadState::default());
    let mut archive = ::tar::Archive::new(Guard::new(Tracked { inner: reader, state: Rc::clone(&state) }));
    let mut rules = Rules::new(opts);
    let mut buf = vec![0; BUF_SIZE];
    let mut last: Option<String> = None;
    {
        let entries = archive.entries().map_err(|source| UntarError::Read { entry: None, source })?;
        for entry in entries {
            let mut entry = match entry {
                Ok(entry) => entry,
                Err(source) if state.eof.get() => {
                    let why = escape_text(&source.to_string());
                    let detail = format!("the stream ends {} ({why})", after_entry(&last));
                    return Err(UntarError::Truncated { entry: last, detail });
                }
                Err(source) if state.failed.get() => return Err(UntarError::Read { entry: last, source }),
                Err(source) => return Err(UntarError::Invalid { entry: last, source: clean_io(source) }),
            };
            let name = entry.path_bytes().into_owned();
            let shown = show_name(&name);
            let action = rules.admit(&mut entry, &name, &shown)?;
            let tally = Tally::of(&action);
            let bytes = sink.apply(&mut entry, action, &shown, &mut buf)?;
            rules.count(tally, bytes);
            last = Some(shown);
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
    sink.finish()?;
    Ok(rules.report)
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

/// What the archive has created so far, as far as the rules need to know: for every path (an
/// entry or a parent directory created for one), whether it is a directory, a symlink or
/// anything else. Paths are kept as 128-bit keyed hashes of their cleaned bytes (components
/// joined with `/`): 16 bytes and a 1-byte kind per path in a hash table of at most 7/8 load
/// and one control byte per slot, so about 20 to 41 bytes per path whatever the names' length
/// (a million entries: 20 to 41 MB).
///
/// The keys are random per process, so no archive can be made to collide on purpose, and an
/// accidental collision (odds about n²/2¹²⁹) can only make an entry look like a duplicate: a
/// path is added only when its hash is not there yet, so a symlink never passes for a
/// directory.
struct Model {
    keys: [RandomState; 2],
    nodes: HashMap<[u8; 16], Node, BuildHasherDefault<KeyHasher>>,
    /// The parent (cleaned) of the last entry whose parents were all directories: the next
    /// entry usually has the same one, and a directory of the model stays one.
    last_parent: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    Symlink,
    /// A file, FIFO or device.
    Other,
}

impl Model {
    fn new() -> Self {
        Model { keys: [RandomState::new(), RandomState::new()], nodes: HashMap::default(), last_parent: None }
    }

    fn key(&self, path: &[u8]) -> [u8; 16] {
        let mut key = [0; 16];
        key[..8].copy_from_slice(&self.keys[0].hash_one(path).to_le_bytes());
        key[8..].copy_from_slice(&self.keys[1].hash_one(path).to_le_bytes());
        key
    }

    fn get(&self, path: &[u8]) -> Option<Node> {
        self.nodes.get(&self.key(path)).copied()
    }

    fn insert(&mut self, path: &[u8], node: Node) {
        self.nodes.insert(self.key(path), node);
    }
}

/// The hasher of [`Model`]'s table: its keys are random already, so it folds their bytes.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    /// The length prefix of the array key: always 16.
    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What an admitted entry asks of the sink. Paths are relative to the root.
enum Action {
    /// Nothing to do (a PAX global header).
    Ignore,
    /// The root entry `./`: its metadata goes to `dest` itself.
    Root(Meta),
    Entry {
        /// Missing parent directories to create first, outermost first.
        parents: Vec<PathBuf>,
        rel: PathBuf,
        what: What,
    },
}

enum What {
    /// A directory entry; `create` is false when the directory exists already.
    Dir {
        create: bool,
        meta: Meta,
    },
    File(Meta),
    Symlink {
        target: Vec<u8>,
        meta: Meta,
    },
    /// A hard link to the earlier entry `source`.
    HardLink {
        source: PathBuf,
    },
    /// A FIFO or device node (`dev` 0 for a FIFO).
    Special {
        kind: EntryType,
        dev: libc::dev_t,
        meta: Meta,
    },
}

/// Which count of [`UntarReport`] an action adds to.
#[derive(Clone, Copy)]
enum Tally {
    None,
    Dir,
    File,
    Symlink,
    HardLink,
    Other,
}

impl Tally {
    fn of(action: &Action) -> Tally {
        match action {
            Action::Ignore => Tally::None,
            Action::Root(_) | Action::Entry { what: What::Dir { .. }, .. } => Tally::Dir,
            Action::Entry { what: What::File(_), .. } => Tally::File,
            Action::Entry { what: What::Symlink { .. }, .. } => Tally::Symlink,
            Action::Entry { what: What::HardLink { .. }, .. } => Tally::HardLink,
            Action::Entry { what: What::Special { .. }, .. } => Tally::Other,
        }
    }
}

/// The rules every entry must pass, for [`unpack`] and [`check`] alike.
struct Rules<'a> {
    opts: &'a UntarOptions,
    model: Model,
    report: UntarReport,
}

impl<'a> Rules<'a> {
    fn new(opts: &'a UntarOptions) -> Self {
        Rules { opts, model: Model::new(), report: UntarReport::default() }
    }

    fn count(&mut self, tally: Tally, bytes: u64) {
        let r = &mut self.report;
        match tally {
            Tally::None => {}
            Tally::Dir => r.dirs += 1,
            Tally::File => {
                r.files += 1;
                r.file_bytes += bytes;
            }
            Tally::Symlink => r.symlinks += 1,
            Tally::HardLink => r.hardlinks += 1,
            Tally::Other => r.other += 1,
        }
    }

    /// Decides about one entry named `name` (shown as `shown`) and records in the model what
    /// it creates. Every refusal of an archive's content comes from here.
    fn admit<R: Read>(
        &mut self,
        entry: &mut ::tar::Entry<'_, R>,
        name: &[u8],
        shown: &str,
    ) -> Result<Action, UntarError> {
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            tracing::debug!(entry = %shown, "PAX global header ignored");
            return Ok(Action::Ignore);
        }
        let comps = clean_path(name).map_err(|reason| hostile(shown, reason))?;
        let Some((_, parent)) = comps.split_last() else {
            if kind != EntryType::Directory {
                return Err(hostile(shown, format!("the archive root must be a directory, not {}", describe(kind))));
            }
            return Ok(Action::Root(self.meta(entry, shown)?));
        };
        let path = comps.join(&b'/');
        let (what, node) = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                (What::File(self.meta(entry, shown)?), Node::Other)
            }
            EntryType::Directory => (What::Dir { create: true, meta: self.meta(entry, shown)? }, Node::Dir),
            EntryType::Symlink => {
                let target = link_name(entry);
                if target.is_empty() || target.contains(&0) {
                    return Err(hostile(shown, "empty symlink target or a NUL byte in it"));
                }
                (What::Symlink { target, meta: self.meta(entry, shown)? }, Node::Symlink)
            }
            EntryType::Link => {
                let (source, node) = self.hard_link_source(&link_name(entry), shown)?;
                (What::HardLink { source }, node)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if kind != EntryType::Fifo && !self.opts.allow_devices {
                    let reason = format!("{} entries are not allowed (they need `--allow-devices`)", describe(kind));
                    return Err(hostile(shown, reason));
                }
                let meta = self.meta(entry, shown)?;
                (What::Special { kind, dev: device(entry, kind, shown)?, meta }, Node::Other)
            }
            other => return Err(UntarError::Unsupported { path: shown.to_owned(), kind: describe(other) }),
        };
        let parents = self.parents(parent, shown)?;
        let what = match (self.model.get(&path), what) {
            (Some(Node::Dir), What::Dir { meta, .. }) => What::Dir { create: false, meta },
            (Some(existing), _) => return Err(duplicate(shown, existing)),
            (None, what) => {
                self.model.insert(&path, node);
                what
            }
        };
        Ok(Action::Entry { parents, rel: PathBuf::from(OsStr::from_bytes(&path)), what })
    }

    /// Checks that every parent of an entry is a directory of the archive or missing (then
    /// recorded as one); returns the missing ones.
    fn parents(&mut self, parent: &[&[u8]], shown: &str) -> Result<Vec<PathBuf>, UntarError> {
        let whole = parent.join(&b'/');
        if self.model.last_parent.as_deref() == Some(&whole[..]) {
            return Ok(Vec::new());
        }
        let mut missing = Vec::new();
        let mut prefix = Vec::with_capacity(whole.len());
        for comp in parent {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(comp);
            match self.model.get(&prefix) {
                Some(Node::Dir) => {}
                Some(Node::Symlink) => {
                    let reason =
                        format!("its parent `{}` is a symlink; refusing to write through it", show_name(&prefix));
                    return Err(hostile(shown, reason));
                }
                Some(Node::Other) => {
                    return Err(hostile(shown, format!("its parent `{}` is not a directory", show_name(&prefix))));
                }
                None => {
                    self.model.insert(&prefix, Node::Dir);
                    missing.push(PathBuf::from(OsStr::from_bytes(&prefix)));
                }
            }
        }
        self.model.last_parent = Some(whole);
        Ok(missing)
    }

    /// Checks a hard link's target: an earlier entry, not a directory, reached through
    /// directories of the archive only. Returns its path and what it is.
    fn hard_link_source(&self, target: &[u8], shown: &str) -> Result<(PathBuf, Node), UntarError> {
        let refuse = |reason: String| hostile(shown, format!("hard link target `{}` {reason}", show_name(target)));
        let comps = clean_path(target).map_err(|r| refuse(format!("refused: {r}")))?;
        let Some((_, target_parent)) = comps.split_last() else {
            return Err(refuse("is the archive root".to_owned()));
        };
        let mut prefix = Vec::new();
        for comp in target_parent {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(comp);
            let at = show_name(&prefix);
            match self.model.get(&prefix) {
                Some(Node::Dir) => {}
                Some(Node::Symlink) => return Err(refuse(format!("goes through the symlink `{at}`"))),
                Some(Node::Other) => return Err(refuse(format!("goes through `{at}`, which is not a directory"))),
                None => return Err(refuse(format!("goes through `{at}`, which does not exist (yet)"))),
            }
        }
        let path = comps.join(&b'/');
        match self.model.get(&path) {
            Some(Node::Dir) => Err(refuse("is a directory".to_owned())),
            Some(node) => Ok((PathBuf::from(OsStr::from_bytes(&path)), node)),
            None => Err(refuse("does not exist (it must be an earlier entry of the archive)".to_owned())),
        }
    }

    /// The mode, owner and mtime of an entry, as they will be applied. All fields are checked
    /// whatever the options, so that [`check`] refuses what [`unpack`] as root would.
    fn meta<R: Read>(&self, entry: &mut ::tar::Entry<'_, R>, shown: &str) -> Result<Meta, UntarError> {
        let bad = |what: &str, e: io::Error| corrupt(shown, format!("bad {what}: {}", escape_text(&e.to_string())));
        let header = entry.header();
        let mask = if self.opts.restore_owner { 0o7777 } else { 0o777 };
        let mode = header.mode().map_err(|e| bad("mode", e))? & mask;
        let uid = header.uid().map_err(|e| bad("uid", e))?;
        let gid = header.gid().map_err(|e| bad("gid", e))?;
        let uid = u32::try_from(uid).map_err(|_| corrupt(shown, format!("uid {uid} out of range")))?;
        let gid = u32::try_from(gid).map_err(|_| corrupt(shown, format!("gid {gid} out of range")))?;
        let header_secs = header.mtime().map_err(|e| bad("mtime", e))?;
        let (secs, nanos) = pax_mtime(entry).unwrap_or((header_secs, 0));
        let out_of_range = || corrupt(shown, format!("mtime {secs} out of range"));
        let secs_signed = i64::try_from(secs).map_err(|_| out_of_range())?;
        let time = UNIX_EPOCH.checked_add(Duration::new(secs, nanos)).ok_or_else(out_of_range)?;
        Ok(Meta { mode, uid, gid, secs: secs_signed, nanos, time })
    }
}

/// The device number of a device entry (0 for a FIFO).
fn device<R: Read>(entry: &::tar::Entry<'_, R>, kind: EntryType, shown: &str) -> Result<libc::dev_t, UntarError> {
    if kind == EntryType::Fifo {
        return Ok(0);
    }
    let header = entry.header();
    let corrupt = |e: io::Error| corrupt(shown, format!("bad device number: {}", escape_text(&e.to_string())));
    match (header.device_major().map_err(corrupt)?, header.device_minor().map_err(corrupt)?) {
        (Some(major), Some(minor)) => Ok(libc::makedev(major, minor)),
        _ => Err(corrupt(io::Error::other("no device numbers in the header"))),
    }
}

/// Reads the contents of a file entry in full, handing each piece and the count so far to
/// `sink`; the stream ending early is [`UntarError::Truncated`]. Returns the size.
fn copy_contents<R: Read>(
    entry: &mut ::tar::Entry<'_, R>,
    buf: &mut [u8],
    shown: &str,
    mut sink: impl FnMut(&[u8], u64) -> Result<(), UntarError>,
) -> Result<u64, UntarError> {
    let size = entry.size();
    let mut got = 0u64;
    loop {
        let n = match entry.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(UntarError::ReadData { path: shown.to_owned(), source }),
        };
        got += n as u64;
        sink(&buf[..n], got)?;
    }
    if got != size {
        let detail = format!("the stream ends inside the contents of `{shown}` ({got} of {size} bytes)");
        return Err(UntarError::Truncated { entry: Some(shown.to_owned()), detail });
    }
    Ok(got)
}

/// What is done with admitted entries: written into a directory ([`Unpacker`]) or only read
/// ([`Checker`]).
trait Sink {
    /// Carries out `action` for `entry`; returns the file content bytes written.
    fn apply<R: Read>(
        &mut self,
        entry: &mut ::tar::Entry<'_, R>,
        action: Action,
        shown: &str,
        buf: &mut [u8],
    ) -> Result<u64, UntarError>;

    /// Called once after the end-of-archive marker.
    fn finish(&mut self) -> Result<(), UntarError>;
}

/// [`check`]'s sink: reads file contents (to see the stream whole) and writes nothing.
struct Checker;

impl Sink for Checker {
    fn apply<R: Read>(
        &mut self,
        entry: &mut ::tar::Entry<'_, R>,
        action: Action,
        shown: &str,
        buf: &mut [u8],
    ) -> Result<u64, UntarError> {
        match action {
            Action::Entry { what: What::File(_), .. } => copy_contents(entry, buf, shown, |_, _| Ok(())),
            _ => Ok(0),
        }
    }

    fn finish(&mut self) -> Result<(), UntarError> {
        Ok(())
    }
}

/// [`unpack`]'s sink.
struct Unpacker<'a> {
    dest: &'a Path,
    opts: &'a UntarOptions,
    /// Directory entries whose metadata is applied at the end; the empty path is `dest`.
    dirs: HashMap<PathBuf, Meta>,
    writeback: Writeback,
    /// Bytes of small files written since the last early flush was asked for.
    unsynced: u64,
}

impl Sink for Unpacker<'_> {
    fn apply<R: Read>(
        &mut self,
        entry: &mut ::tar::Entry<'_, R>,
        action: Action,
        shown: &str,
        buf: &mut [u8],
    ) -> Result<u64, UntarError> {
        let (parents, rel, what) = match action {
            Action::Ignore => return Ok(0),
            Action::Root(meta) => {
                self.dirs.insert(PathBuf::new(), meta);
                return Ok(0);
            }
            Action::Entry { parents, rel, what } => (parents, rel, what),
        };
        for dir in &parents {
            let full = self.dest.join(dir);
            fs::DirBuilder::new().mode(0o700).create(&full).map_err(write_err("create", &full))?;
        }
        let full = self.dest.join(&rel);
        match what {
            What::Dir { create, meta } => {
                if create {
                    fs::DirBuilder::new().mode(0o700).create(&full).map_err(write_err("create", &full))?;
                }
                self.dirs.insert(rel, meta);
                Ok(0)
            }
            What::File(meta) => self.file(entry, &full, shown, &meta, buf),
            What::Symlink { target, meta } => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &full)
                    .map_err(write_err("create the symlink", &full))?;
                if self.opts.restore_owner {
                    std::os::unix::fs::lchown(&full, Some(meta.uid), Some(meta.gid))
                        .map_err(write_err("set the owner of", &full))?;
                }
                set_mtime_nofollow(&full, &meta).map_err(write_err("set the mtime of", &full))?;
                Ok(0)
            }
            What::HardLink { source } => {
                fs::hard_link(self.dest.join(source), &full).map_err(write_err("create the hard link", &full))?;
                Ok(0)
            }
            What::Special { kind, dev, meta } => {
                self.special(kind, &full, dev, &meta)?;
                Ok(0)
            }
        }
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

impl Unpacker<'_> {
    /// Creates a regular file and copies the entry's contents into it.
    fn file<R: Read>(
        &mut self,
        entry: &mut ::tar::Entry<'_, R>,
        full: &Path,
        shown: &str,
        meta: &Meta,
        buf: &mut [u8],
    ) -> Result<u64, UntarError> {
        // O_CREAT|O_EXCL|O_NOFOLLOW refuses whatever exists there.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(full)
            .map_err(write_err("create", full))?;
        let file = Arc::new(file);
        let mut queued = 0u64;
        let writeback = &self.writeback;
        let got = copy_contents(entry, buf, shown, |piece, got| {
            (&*file).write_all(piece).map_err(write_err("write", full))?;
            if got - queued >= WRITEBACK_STRIDE {
                writeback.queue(&file, queued, got - queued);
                queued = got;
            }
            Ok(())
        })?;
        if got >= WRITEBACK_MIN && got > queued {
            self.writeback.queue(&file, queued, got - queued);
        } else if got < WRITEBACK_MIN {
            self.unsynced += got + 4096;
            if self.unsynced >= FLUSH_EVERY {
                self.writeback.flush();
                self.unsynced = 0;
            }
        }
        // Owner before mode: chown clears the setuid and setgid bits.
        if self.opts.restore_owner {
            std::os::unix::fs::fchown(&*file, Some(meta.uid), Some(meta.gid))
                .map_err(write_err("set the owner of", full))?;
        }
        file.set_permissions(fs::Permissions::from_mode(meta.mode)).map_err(write_err("set the mode of", full))?;
        file.set_times(FileTimes::new().set_modified(meta.time)).map_err(write_err("set the mtime of", full))?;
        Ok(got)
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

/// Sets the mtime of `path` itself, not of what it points to (symlinks, device nodes); the
/// access time is left alone.
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

/// Characters of a long name kept before and after the `…` in [`show_name`].
const SHOWN_HEAD: usize = 80;
const SHOWN_TAIL: usize = 40;

/// How a name, link target or path taken from an archive is shown in messages and logs:
/// control characters escaped (`\n`, `\t`, `\r`, ESC as `\x1b`, C1 and bidirectional controls
/// as `\u{..}`), bytes that are not UTF-8 as `\xNN`, a backslash doubled (so the escapes are
/// unambiguous), and a name of more than 121 characters shortened to its first 80, `…` and its
/// last 40. A terminal or a log reader never sees a raw byte of the archive.
pub fn show_name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().min(4 * (SHOWN_HEAD + SHOWN_TAIL)));
    // Where each shown character (or escape) starts in `out`.
    let mut starts = Vec::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            starts.push(out.len());
            push_escaped(&mut out, c);
        }
        for b in chunk.invalid() {
            starts.push(out.len());
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    if starts.len() > SHOWN_HEAD + SHOWN_TAIL + 1 {
        let head = &out[..starts[SHOWN_HEAD]];
        let tail = &out[starts[starts.len() - SHOWN_TAIL]..];
        return format!("{head}…{tail}");
    }
    out
}

/// [`show_name`] of a path.
pub fn show_path(path: &Path) -> String {
    show_name(path.as_os_str().as_bytes())
}

/// Escapes control characters in a message that may quote archive bytes (the `tar` crate's
/// errors do), without shortening it.
fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_ascii_control() => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        // C1 controls (U+0080..U+009F, CSI among them), and the invisible characters that
        // reorder or hide text: zero-width ones, line and paragraph separators, bidi controls.
        c if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}') =>
        {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// An error of the `tar` crate with its message escaped (it may quote a name).
fn clean_io(e: io::Error) -> io::Error {
    let text = e.to_string();
    let clean = escape_text(&text);
    if clean == text {
        e
    } else {
        io::Error::new(e.kind(), clean)
    }
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

fn duplicate(shown: &str, existing: Node) -> UntarError {
    let what = match existing {
        Node::Symlink => "a symlink",
        Node::Dir => "a directory",
        Node::Other => "an entry",
    };
    hostile(shown, format!("the path already exists as {what} (duplicate entry); refusing to replace it"))
}

fn write_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> UntarError + 'a {
    move |source| UntarError::Write { action, path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tar::{write_tar, TarOptions};
    use crate::testkit::compare_trees;
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
        let opts = UntarOptions { allow_devices: true, restore_owner: as_root };
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
    fn defaults_restore_every_symlink_and_refuse_only_devices() {
        let tmp = tempfile::tempdir().unwrap();
        let src = fresh_dest(tmp.path(), "src");
        let has_dev = build_tree(&src, false);
        let mut archive = Vec::new();
        write_tar(&src, &TarOptions::default(), &mut archive).unwrap();
        if has_dev {
            let dest = fresh_dest(tmp.path(), "dest1");
            let err = unpack(&archive[..], &dest, &UntarOptions::default()).unwrap_err();
            assert!(matches!(&err, UntarError::Hostile { path, .. } if path == "special/null"), "{err}");
            assert!(err.to_string().contains("character device (type '3') entries are not allowed"), "{err}");
            let again = check(&archive[..], &UntarOptions::default()).unwrap_err();
            assert_eq!(again.to_string(), err.to_string());
            fs::remove_file(src.join("special/null")).unwrap();
            archive.clear();
            write_tar(&src, &TarOptions::default(), &mut archive).unwrap();
        }
        // Absolute, climbing, dangling and non-UTF-8 targets, a FIFO: all restored by default.
        let dest = fresh_dest(tmp.path(), "dest2");
        let report = unpack(&archive[..], &dest, &UntarOptions::default()).unwrap();
        if let Err(diff) = compare_trees(&src, &dest, &[]) {
            panic!("{diff}");
        }
        assert_eq!(fs::read_link(dest.join("links/abs")).unwrap().as_os_str(), "/etc/hostname");
        assert_eq!(fs::read_link(dest.join("links/nonutf8")).unwrap().as_os_str(), os(b"\xfe\xfd"));
        assert_eq!(report.other, 1);
        assert_eq!(check(&archive[..], &UntarOptions::default()).unwrap(), report);
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
        hostile_at(&err, "a\\x00/x");
    }

    #[test]
    fn writing_through_symlinks_is_refused() {
        let all = UntarOptions { allow_devices: true, restore_owner: false };
        let none = UntarOptions::default();
        for opts in [&all, &none] {
            let err = refused(|_| vec![symlink_to("l", "../outside"), file("l/x", b"x")], opts, "is a symlink");
            hostile_at(&err, "l/x");
            let err = refused(|_| vec![symlink_to("l", ".."), dir("l/sub/")], opts, "`l` is a symlink");
            hostile_at(&err, "l/sub/");
            let members =
                |tmp: &Path| vec![symlink_to("abs", tmp.join("outside").to_str().unwrap()), file("abs/x", b"x")];
            let err = refused(members, opts, "its parent `abs` is a symlink; refusing to write through it");
            hostile_at(&err, "abs/x");
        }

        let members = |_: &Path| vec![dir("sub/"), symlink_to("l2", "sub"), file("l2/x", b"x")];
        let err = refused(members, &none, "its parent `l2` is a symlink; refusing to write through it");
        hostile_at(&err, "l2/x");
        // Deeper, and through a directory entry of the same name after the symlink.
        let members = |_: &Path| vec![symlink_to("a/l", "/"), dir("a/l/"), file("a/l/etc/x", b"x")];
        let err = refused(members, &none, "already exists as a symlink");
        hostile_at(&err, "a/l/");
        let members = |_: &Path| vec![symlink_to("a/l", "/"), file("a/l/etc/x", b"x")];
        let err = refused(members, &none, "its parent `a/l` is a symlink");
        hostile_at(&err, "a/l/etc/x");
        // A hard link to a symlink is a symlink too.
        let members = |_: &Path| vec![symlink_to("s", "/tmp"), hard_link_to("h", "s"), file("h/x", b"x")];
        let err = refused(members, &none, "its parent `h` is a symlink");
        hostile_at(&err, "h/x");

        let err = refused(|_| vec![file("f", b"f"), file("f/x", b"x")], &none, "`f` is not a directory");
        hostile_at(&err, "f/x");
    }

    #[test]
    fn symlinks_pointing_anywhere_are_restored_as_they_are() {
        let none = UntarOptions::default();
        let err = refused(|_| vec![symlink_to("l", "")], &none, "empty symlink target");
        hostile_at(&err, "l");

        let tmp = tempfile::tempdir().unwrap();
        let outside = fresh_dest(tmp.path(), "outside");
        let dest = fresh_dest(tmp.path(), "dest");
        let abs_outside = outside.to_str().unwrap().to_owned();
        let targets = [
            ("up", ".."),
            ("root", "/"),
            ("etc", "/etc/hostname"),
            ("outside", abs_outside.as_str()),
            ("a/b/climb", "../../../x"),
            ("a/s", ".."),
            ("b/t", "../a/s/.."),
            ("later", "later/../x"),
            ("a/b/l", "../../a/./up//"),
            ("dangling", "nowhere/at/all"),
        ];
        let mut members: Vec<_> = targets.iter().map(|(name, target)| symlink_to(name, target)).collect();
        members.push(hard_link_to("a/b/again", "outside"));
        members.push(file("a/b/f", b"inside"));
        let archive = build(&members);
        let report = unpack(&archive[..], &dest, &none).unwrap();
        assert_eq!((report.symlinks, report.hardlinks, report.files), (targets.len() as u64, 1, 1));
        for (name, target) in targets {
            assert_eq!(fs::read_link(dest.join(name)).unwrap().as_os_str(), target, "{name}");
        }
        assert_eq!(fs::read_link(dest.join("a/b/again")).unwrap().as_os_str(), abs_outside.as_str());
        assert!(entries_of(&outside).is_empty());
        assert_eq!(check(&archive[..], &none).unwrap(), report);
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
        // A hard link to a later entry.
        let err = refused(|_| vec![hard_link_to("h", "f"), file("f", b"f")], &none, "must be an earlier entry");
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
        let err = refused(|_| vec![raw(b"d/b", EntryType::Block, b"", b"")], &none, "need `--allow-devices`");
        hostile_at(&err, "d/b");

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
    fn fifos_are_created_by_default() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = fresh_dest(tmp.path(), "dest");
        let opts = UntarOptions::default();
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

    // ---- bounded metadata, shown names, check ----

    /// Counts what is read through it.
    struct Counted<R> {
        inner: R,
        n: u64,
    }

    impl<R: Read> Read for Counted<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.n += n as u64;
            Ok(n)
        }
    }

    /// A GNU long-name header announcing 1 GiB, followed lazily by that much of `a`.
    fn huge_long_name() -> Counted<impl Read> {
        let mut header = Header::new_gnu();
        fill(&mut header.as_old_mut().name, b"././@LongLink");
        header.set_mode(0o644);
        header.set_size(1 << 30);
        header.set_entry_type(EntryType::GNULongName);
        header.set_cksum();
        let stream = io::Cursor::new(header.as_bytes().to_vec()).chain(io::repeat(b'a').take(1 << 30));
        Counted { inner: stream, n: 0 }
    }

    #[test]
    fn a_huge_long_name_is_a_bad_archive_before_it_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let mut source = huge_long_name();
        let err = unpack(&mut source, &fresh_dest(tmp.path(), "d"), &UntarOptions::default()).unwrap_err();
        assert!(matches!(err, UntarError::Invalid { entry: None, .. }), "{err:?}");
        assert!(err.is_bad_archive());
        assert!(source.n < 1 << 20, "read {} bytes", source.n);
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert!(chain.contains("a GNU long-name record (type 'L') announces 1073741824 bytes"), "{chain}");

        let mut source = huge_long_name();
        let err = check(&mut source, &UntarOptions::default()).unwrap_err();
        assert!(matches!(err, UntarError::Invalid { entry: None, .. }), "{err:?}");
        assert!(source.n < 1 << 20, "read {} bytes", source.n);
    }

    /// An archive of regular files with names of any length (GNU long-name records).
    fn build_named(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = Builder::new(Vec::new());
        for (name, data) in files {
            builder.append_data(&mut file("x", data).0, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn long_names_below_the_limit_work() {
        // 60 KiB: more than any file system takes, so only `check` (which writes nothing).
        let long = format!("{}/end", vec!["c".repeat(200); 300].join("/"));
        let target = "t/".repeat(30_000);
        let mut builder = Builder::new(Vec::new());
        builder.append_data(&mut file("x", b"data").0, &long, &b"data"[..]).unwrap();
        builder.append_link(&mut symlink_to("x", "y").0, "link", &target).unwrap();
        let archive = builder.into_inner().unwrap();
        let report = check(&archive[..], &UntarOptions::default()).unwrap();
        assert_eq!((report.files, report.symlinks, report.file_bytes), (1, 1, 4));

        // 3 KiB is unpacked.
        let long = format!("{}/end", vec!["c".repeat(200); 15].join("/"));
        let tmp = tempfile::tempdir().unwrap();
        let dest = fresh_dest(tmp.path(), "dest");
        unpack(&build_named(&[(&long, b"data")])[..], &dest, &UntarOptions::default()).unwrap();
        assert_eq!(fs::read(dest.join(&long)).unwrap(), b"data");
    }

    #[test]
    fn gnu_sparse_files_with_extension_blocks_unpack() {
        // Six 512-byte pieces at 4 KiB strides: four in the header, two in an extension block.
        let (mut header, _) = raw(b"sparse", EntryType::GNUSparse, b"", b"");
        header.set_size(6 * 512);
        let mut ext = ::tar::GnuExtSparseHeader::new();
        {
            let gnu = header.as_gnu_mut().unwrap();
            for (i, piece) in gnu.sparse.iter_mut().enumerate() {
                piece.set_offset(i as u64 * 4096);
                piece.set_length(512);
            }
            gnu.set_real_size(5 * 4096 + 512);
            gnu.set_is_extended(true);
            for (i, piece) in ext.sparse.iter_mut().take(2).enumerate() {
                piece.set_offset((4 + i as u64) * 4096);
                piece.set_length(512);
            }
        }
        header.set_cksum();
        let data = random_bytes(6 * 512, 21);
        let mut archive = header.as_bytes().to_vec();
        archive.extend(ext.as_bytes());
        archive.extend(&data);
        archive.extend(build_named(&[(&format!("after-{}", "n".repeat(120)), b"after")]));

        let tmp = tempfile::tempdir().unwrap();
        let dest = fresh_dest(tmp.path(), "dest");
        let report = unpack(&archive[..], &dest, &UntarOptions::default()).unwrap();
        assert_eq!(report.files, 2);
        let mut expected = vec![0u8; 5 * 4096 + 512];
        for i in 0..6 {
            expected[i * 4096..i * 4096 + 512].copy_from_slice(&data[i * 512..(i + 1) * 512]);
        }
        assert!(fs::read(dest.join("sparse")).unwrap() == expected);
        assert_eq!(fs::read(dest.join(format!("after-{}", "n".repeat(120)))).unwrap(), b"after");
        assert_eq!(check(&archive[..], &UntarOptions::default()).unwrap(), report);
    }

    #[test]
    fn names_are_escaped_and_shortened() {
        assert_eq!(show_name(b"plain/name.txt"), "plain/name.txt");
        assert_eq!(show_name(b"a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(show_name(b"\x1b[31mred\x07"), "\\x1b[31mred\\x07");
        assert_eq!(show_name(b"caf\xe9 \xff\xfe"), "caf\\xe9 \\xff\\xfe");
        assert_eq!(show_name(b"back\\slash"), "back\\\\slash");
        assert_eq!(show_name("\u{202e}txt.exe \u{9b}".as_bytes()), "\\u{202e}txt.exe \\u{9b}");
        assert_eq!(show_name("ünïcödé".as_bytes()), "ünïcödé");
        let exact = "e".repeat(121);
        assert_eq!(show_name(exact.as_bytes()), exact);
        let long = format!("{}{}", "x".repeat(100), "y".repeat(100));
        assert_eq!(show_name(long.as_bytes()), format!("{}…{}", "x".repeat(80), "y".repeat(40)));
        // An escape is one shown character: never cut in half.
        let escapes = "\n".repeat(200);
        assert_eq!(show_name(escapes.as_bytes()), format!("{}…{}", "\\n".repeat(80), "\\n".repeat(40)));
    }

    #[test]
    fn messages_show_names_escaped() {
        let evil = "l\x1b]0;pwned\x07\nfake line";
        let members = |_: &Path| vec![symlink_to(evil, "/"), file(&format!("{evil}/x"), b"x")];
        let err = refused(members, &UntarOptions::default(), "is a symlink");
        let text = format!("{:#}", anyhow::Error::from(err));
        assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
        assert!(text.contains("`l\\x1b]0;pwned\\x07\\nfake line/x`"), "{text}");

        let long = format!("dir/{}", "n".repeat(3000));
        let tmp = tempfile::tempdir().unwrap();
        let archive = build_named(&[(&long, b"1"), (&long, b"2")]);
        let err = check(&archive[..], &UntarOptions::default()).unwrap_err();
        assert!(err.to_string().contains("duplicate") && err.to_string().len() < 400, "{err}");
        let err = unpack(&archive[..], &fresh_dest(tmp.path(), "d"), &UntarOptions::default()).unwrap_err();
        assert!(err.to_string().len() < 400, "{err}");
    }

    /// The kind of an error with what it names, for comparing `check` and `unpack`.
    fn verdict(err: &UntarError) -> (std::mem::Discriminant<UntarError>, String) {
        (std::mem::discriminant(err), err.to_string())
    }

    #[test]
    fn check_and_unpack_agree() {
        type Members = Vec<(Header, Vec<u8>)>;
        let forged: Vec<(&str, Members)> = vec![
            ("dot-dot", vec![file("../x", b"x")]),
            ("absolute", vec![file("/tmp/abs", b"x")]),
            ("through a symlink", vec![dir("d/"), symlink_to("d/l", "/etc"), file("d/l/passwd", b"x")]),
            ("through a linked symlink", vec![symlink_to("s", "/"), hard_link_to("h", "s"), dir("h/etc/")]),
            ("hard link to a later entry", vec![hard_link_to("h", "f"), file("f", b"f")]),
            ("hard link to a directory", vec![dir("d/"), hard_link_to("h", "d")]),
            (
                "hard link through a symlink",
                vec![dir("d/"), file("d/f", b"f"), symlink_to("l", "d"), hard_link_to("h", "l/f")],
            ),
            ("device", vec![raw(b"dev/null", EntryType::Char, b"", b"")]),
            ("duplicate", vec![file("f", b"1"), symlink_to("f", "/")]),
            ("unsupported", vec![raw(b"v", EntryType::new(b'V'), b"", b"")]),
        ];
        let tmp = tempfile::tempdir().unwrap();
        for (i, (what, members)) in forged.into_iter().enumerate() {
            let archive = build(&members);
            let by_unpack = unpack(&archive[..], &fresh_dest(tmp.path(), &format!("f{i}")), &UntarOptions::default())
                .expect_err(what);
            let by_check = check(&archive[..], &UntarOptions::default()).expect_err(what);
            assert!(by_unpack.is_bad_archive(), "{what}: {by_unpack}");
            assert_eq!(verdict(&by_unpack), verdict(&by_check), "{what}");
        }
        let by_unpack =
            unpack(huge_long_name(), &fresh_dest(tmp.path(), "huge"), &UntarOptions::default()).unwrap_err();
        let by_check = check(huge_long_name(), &UntarOptions::default()).unwrap_err();
        assert_eq!(verdict(&by_unpack), verdict(&by_check));
        let (archive, end) = small_archive();
        let by_unpack =
            unpack(&archive[..end - 100], &fresh_dest(tmp.path(), "cut"), &UntarOptions::default()).unwrap_err();
        let by_check = check(&archive[..end - 100], &UntarOptions::default()).unwrap_err();
        assert_eq!(verdict(&by_unpack), verdict(&by_check));

        // A real tree with absolute and climbing symlinks, hard links, long and odd names.
        let src = fresh_dest(tmp.path(), "src");
        let has_dev = build_tree(&src, false);
        if has_dev {
            fs::remove_file(src.join("special/null")).unwrap();
        }
        let mut archive = Vec::new();
        write_tar(&src, &TarOptions::default(), &mut archive).unwrap();
        let mut counted = Counted { inner: &archive[..], n: 0 };
        let checked = check(&mut counted, &UntarOptions::default()).unwrap();
        assert_eq!(counted.n, archive.len() as u64);
        let unpacked = unpack(&archive[..], &fresh_dest(tmp.path(), "tree"), &UntarOptions::default()).unwrap();
        assert_eq!(checked, unpacked);
    }
}
