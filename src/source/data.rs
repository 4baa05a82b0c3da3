//! The data directory as a tar stream: the sync tar writer runs on a blocking thread and feeds
//! a bounded in-memory pipe that the async pipeline reads.

use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;

use super::tar::{write_tar, TarOptions, TarStats, MAX_EXTERNAL_LISTED};
use super::Produced;
use crate::codec::tapped;
use crate::config::DataConfig;
use crate::error::{Class, Failure};
use crate::seatable::defaults::{ALWAYS_EXCLUDED, DEFAULT_DATA_DIRS};
use crate::source::tar::ExternalSymlink;

/// Chunks (of about 1 MiB) buffered between the tar thread and the compressor.
const PIPE_CHUNKS: usize = 4;

/// What a finished tar produced.
#[derive(Debug, Clone)]
pub struct DataReport {
    pub raw_size: u64,
    pub stats: TarStats,
}

/// The data directory to archive: the configured one, or the first existing default.
pub fn resolve_dir(cfg: &DataConfig) -> anyhow::Result<PathBuf> {
    let dir = match &cfg.dir {
        Some(d) => d.clone(),
        None => crate::seatable::defaults::default_data_dir().ok_or_else(|| {
            Failure::new(
                Class::Source,
                format!(
                    "no SeaTable data directory found (looked for {})",
                    DEFAULT_DATA_DIRS.map(|d| format!("`{d}`")).join(", ")
                ),
            )
            .with_hint("set `data.dir`")
        })?,
    };
    check_dir(&dir)?;
    Ok(dir)
}

/// The directory must exist, be a directory, and be listable.
pub fn check_dir(dir: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| Failure::new(Class::Source, format!("data directory `{}`: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(
            Failure::new(Class::Source, format!("data directory `{}` is not a directory", dir.display())).into()
        );
    }
    std::fs::read_dir(dir)
        .map_err(|e| Failure::new(Class::Source, format!("data directory `{}` is not readable: {e}", dir.display())))?;
    Ok(())
}

/// Every excluded path: SeaTable's always-skipped directories and the configured ones.
pub fn excludes(cfg: &DataConfig) -> Vec<PathBuf> {
    ALWAYS_EXCLUDED.iter().map(PathBuf::from).chain(cfg.exclude.iter().cloned()).collect()
}

/// Hands each write of the tar thread to the async pipeline as an owned chunk, over a bounded
/// channel (the backpressure: the tar thread blocks while the pipeline is behind).
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped reading"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts archiving `dir`; `finish` fails if the tar failed (read errors name the path).
pub fn tar_stream(dir: PathBuf, opts: TarOptions) -> Produced<DataReport> {
    // `write_tar` writes 1 MiB at a time: at most PIPE_CHUNKS MiB wait in the channel.
    let (tx, rx) = tokio::sync::mpsc::channel(PIPE_CHUNKS);
    let shown = dir.display().to_string();
    let task = tokio::task::spawn_blocking(move || write_tar(&dir, &opts, ChunkWriter { tx }));
    let chunks = super::receiver_stream(rx);
    let (reader, state) = tapped(chunks);
    let finish = async move {
        let stats = task
            .await
            .context("the tar thread panicked")?
            .with_context(|| format!("archiving data directory `{shown}`"))?;
        Ok(DataReport { raw_size: state.count(), stats })
    };
    Produced { reader, finish: Box::pin(finish) }
}

/// Checks `data.follow_symlinks` against the data directory before anything is written: each
/// path must be a symlink (below real directories, or below other symlinks to follow) that
/// points to a directory or a file. A usage error names the path otherwise.
pub fn check_follow(dir: &Path, follow: &[PathBuf]) -> anyhow::Result<()> {
    let usage = |p: &Path, why: String| -> anyhow::Error {
        Failure::new(
            Class::Usage,
            format!("`data.follow_symlinks`: `{}` in data directory `{}` {why}", p.display(), dir.display()),
        )
        .with_hint("list only symlinks of the data directory there, relative to it (`seafile-data`)")
        .into()
    };
    let io = |p: &Path, e: std::io::Error| -> anyhow::Error {
        Failure::new(Class::Source, format!("`data.follow_symlinks`: `{}`: {e}", dir.join(p).display())).into()
    };
    for p in follow {
        // Each parent must be walked into by the archive: a real directory, or followed itself.
        let mut parent = PathBuf::new();
        for c in p.parent().into_iter().flat_map(Path::components) {
            parent.push(c);
            match std::fs::symlink_metadata(dir.join(&parent)) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() && follow.contains(&parent) => {}
                Ok(_) => {
                    return Err(usage(
                        p,
                        format!("lies below `{}`, which the archive does not walk into", parent.display()),
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(usage(p, "does not exist".into())),
                Err(e) => return Err(io(&parent, e)),
            }
        }
        let link = dir.join(p);
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => {}
            Ok(m) => {
                let kind = if m.is_dir() {
                    "a directory"
                } else if m.is_file() {
                    "a file"
                } else {
                    "a special file"
                };
                return Err(usage(p, format!("is {kind}, not a symlink: it is archived anyway")));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(usage(p, "does not exist".into())),
            Err(e) => return Err(io(p, e)),
        }
        let target = std::fs::read_link(&link).map_err(|e| io(p, e))?;
        match std::fs::metadata(&link) {
            Ok(m) if m.is_dir() || m.is_file() => {}
            Ok(_) => {
                return Err(usage(p, format!("-> `{}` points to neither a directory nor a file", target.display())))
            }
            Err(e) => {
                return Err(usage(p, format!("-> `{}`: what it points to cannot be reached ({e})", target.display())))
            }
        }
    }
    Ok(())
}

/// A name for a message: control characters escaped, so that a file name cannot rewrite the
/// terminal or the log line.
pub fn shown(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// The line `plan` and `backup` give for a symlink pointing outside the data directory.
pub fn external_symlink_line(link: &ExternalSymlink) -> String {
    format!(
        "`{}` -> `{}`: a symlink; the content it points to is NOT in the backup (add it to data.follow_symlinks to archive it)",
        shown(&link.path),
        shown(&link.target)
    )
}

/// Logs a WARN for each listed symlink of the data directory pointing outside it, and returns
/// the one line for the manifest's warnings (`None` when there are none).
pub fn report_external_symlinks(stats: &TarStats) -> Option<String> {
    let first = stats.external_symlinks.first()?;
    for link in &stats.external_symlinks {
        tracing::warn!("{}", external_symlink_line(link));
    }
    let total = stats.external_symlinks_total;
    if total > stats.external_symlinks.len() as u64 {
        tracing::warn!(
            "{} more symlink(s) point outside the data directory (the manifest lists the first {MAX_EXTERNAL_LISTED})",
            total - stats.external_symlinks.len() as u64
        );
    }
    Some(format!(
        "{total} symlink(s) in the data directory point outside it, e.g. `{}` -> `{}`: what they point to is NOT in this backup (add them to `data.follow_symlinks` to archive it; the first {MAX_EXTERNAL_LISTED} are listed in the data archive's `tar.external_symlinks`)",
        shown(&first.path),
        shown(&first.target)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn check(dir: &Path, follow: &[&str]) -> Result<(), (Class, String)> {
        let follow: Vec<PathBuf> = follow.iter().map(PathBuf::from).collect();
        check_follow(dir, &follow).map_err(|e| (crate::exit::class_of(&e), format!("{e:#}")))
    }

    #[test]
    fn symlinks_to_follow_are_checked_before_the_run() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, outside) = (tmp.path().join("root"), tmp.path().join("outside"));
        std::fs::create_dir_all(root.join("real/dir")).unwrap();
        std::fs::create_dir_all(outside.join("inner")).unwrap();
        std::fs::write(outside.join("file"), b"x").unwrap();
        symlink(&outside, root.join("moved")).unwrap();
        symlink(outside.join("file"), root.join("real/file-link")).unwrap();
        symlink("/no/such/place", root.join("dangling")).unwrap();
        symlink("/dev/null", root.join("device")).unwrap();

        assert_eq!(check(&root, &[]), Ok(()));
        assert_eq!(check(&root, &["moved", "real/file-link"]), Ok(()));
        // Below another symlink to follow the archive walks in: there it is a directory.
        let (_, msg) = check(&root, &["moved", "moved/inner"]).unwrap_err();
        assert!(msg.contains("`moved/inner`") && msg.contains("is a directory, not a symlink"), "{msg}");
        for (path, why) in [
            ("real", "is a directory, not a symlink"),
            ("missing", "does not exist"),
            ("real/missing/deeper", "does not exist"),
            ("dangling", "-> `/no/such/place`: what it points to cannot be reached"),
            ("device", "points to neither a directory nor a file"),
            ("moved/inner", "lies below `moved`, which the archive does not walk into"),
        ] {
            let (class, msg) = check(&root, &[path]).unwrap_err();
            assert_eq!(class, Class::Usage, "{msg}");
            assert!(msg.contains(&format!("`{path}`")) && msg.contains(why), "{path}: {msg}");
            assert!(msg.contains("data.follow_symlinks"), "{msg}");
        }
    }

    #[test]
    fn names_in_messages_cannot_steer_the_terminal() {
        let link = ExternalSymlink { path: "a\u{1b}[2Jb".into(), target: "/x\ny".into() };
        let line = external_symlink_line(&link);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(
            line.starts_with("`a\\u{1b}[2Jb` -> `/x\\ny`: a symlink; the content it points to is NOT in the backup")
        );
    }
}
