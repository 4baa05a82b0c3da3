//! A store in a local directory (`file:///path`): for trying the tool out and for NAS mounts.
//!
//! Same guarantees as S3: an object appears under its key only when complete. An upload writes
//! `.<name>.partial-<id>` beside the final file (parts land at their offsets), and completion
//! is fsync + rename + fsync of the directory. Listings never show partial files.
//!
//! Nothing here is retried: its errors are never transient (see [`StoreError::is_transient`]).
//! A directory is no bucket, so it has no [`BucketAdmin`](super::BucketAdmin).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{check_key, ByteReader, MultipartUpload, ObjectInfo, OpenUpload, PartReceipt, Store, StoreError};

const PARTIAL: &str = ".partial-";

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: PathBuf) -> Self {
        LocalStore { root }
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io { op, path: path.display().to_string(), source: Arc::new(source) }
}

/// `dir/.name.partial-<pid>-<n>`, unique within this process and across processes.
fn partial_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}{PARTIAL}{}-{n}", std::process::id()))
}

fn is_partial(name: &str) -> bool {
    name.starts_with('.') && name.contains(PARTIAL)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io_err("run", Path::new(""), std::io::Error::other(e.to_string()))))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err("sync", dir, e))
}

fn finish(tmp: &Path, path: &Path) -> Result<(), StoreError> {
    std::fs::File::open(tmp).and_then(|f| f.sync_all()).map_err(|e| io_err("sync", tmp, e))?;
    std::fs::rename(tmp, path).map_err(|e| io_err("rename", path, e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Walks `dir` (recursively) and collects `(key, path)` pairs of files, partial ones separately.
fn walk(
    root: &Path,
    dir: &Path,
    files: &mut Vec<(String, PathBuf)>,
    partials: &mut Vec<(String, PathBuf)>,
) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        let path = entry.path();
        let ft = entry.file_type().map_err(|e| io_err("stat", &path, e))?;
        if ft.is_dir() {
            walk(root, &path, files, partials)?;
        } else if ft.is_file() {
            let Ok(rel) = path.strip_prefix(root) else { continue };
            let Some(key) = rel.to_str() else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_partial(&name) {
                partials.push((key.to_string(), path));
            } else {
                files.push((key.to_string(), path));
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Store for LocalStore {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn preflight(&self) -> Result<(), StoreError> {
        // Writes nothing: the root (or, while it does not exist yet, its nearest existing
        // ancestor, where it would be created) must be a writable directory.
        let root = self.root.clone();
        blocking(move || {
            let mut dir = root.as_path();
            loop {
                match std::fs::metadata(dir) {
                    Ok(meta) if meta.is_dir() => break,
                    Ok(_) => return Err(io_err("use", dir, std::io::Error::other("not a directory"))),
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
                        match dir.parent() {
                            Some(p) => dir = p,
                            None => return Err(io_err("find", &root, e)),
                        }
                    }
                    Err(e) => return Err(io_err("stat", dir, e)),
                }
            }
            let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()))
                .map_err(|_| io_err("use", dir, std::io::Error::other("path holds a NUL byte")))?;
            // SAFETY: a valid NUL-terminated path; access(2) only reads it.
            if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
                return Err(io_err("write to", dir, std::io::Error::last_os_error()));
            }
            Ok(())
        })
        .await
    }

    async fn put_object(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, e))?;
            }
            let tmp = partial_path(&path);
            if let Err(e) = std::fs::write(&tmp, &body) {
                let _ = std::fs::remove_file(&tmp);
                return Err(io_err("write", &tmp, e));
            }
            finish(&tmp, &path).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
        })
        .await
    }

    async fn create_upload(&self, key: &str) -> Result<Arc<dyn MultipartUpload>, StoreError> {
        let path = self.path_of(key)?;
        let key = key.to_string();
        blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io_err("create directory", dir, e))?;
            }
            let tmp = partial_path(&path);
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| io_err("create", &tmp, e))?;
            Ok(Arc::new(LocalUpload { key, path, tmp, file: Arc::new(file) }) as Arc<dyn MultipartUpload>)
        })
        .await
    }

    async fn get_object(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path_of(key)?;
        let key = key.to_string();
        blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(Bytes::from(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound { key }),
            Err(e) => Err(io_err("read", &path, e)),
        })
        .await
    }

    async fn get_stream(&self, key: &str) -> Result<ByteReader, StoreError> {
        let path = self.path_of(key)?;
        match tokio::fs::File::open(&path).await {
            Ok(f) => Ok(Box::pin(tokio::io::BufReader::with_capacity(1 << 20, f))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound { key: key.to_string() }),
            Err(e) => Err(io_err("open", &path, e)),
        }
    }

    async fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<Bytes>, StoreError> {
        use std::os::unix::fs::FileExt;
        let path = self.path_of(key)?;
        let key = key.to_string();
        blocking(move || {
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotFound { key }),
                Err(e) => return Err(io_err("open", &path, e)),
            };
            let mut buf = vec![0u8; len as usize];
            let mut got = 0usize;
            while got < buf.len() {
                match file.read_at(&mut buf[got..], start + got as u64) {
                    Ok(0) => return Err(StoreError::Short { key, start, end: start + len, got: got as u64 }),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_err("read", &path, e)),
                }
            }
            Ok(vec![Bytes::from(buf)])
        })
        .await
    }

    async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), StoreError> {
        let path = self.path_of(&upload.key)?;
        if upload.upload_id.contains('/') || upload.upload_id.contains("..") {
            return Err(StoreError::InvalidKey { key: upload.key.clone(), reason: "bad upload id" });
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let partial = path.with_file_name(format!(".{name}{PARTIAL}{}", upload.upload_id));
        match tokio::fs::remove_file(&partial).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &partial, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            // Walk from the deepest directory the prefix names, then filter by the full prefix.
            let dir_part = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let start = if dir_part.is_empty() { root.clone() } else { root.join(dir_part) };
            let (mut files, mut partials) = (Vec::new(), Vec::new());
            walk(&root, &start, &mut files, &mut partials)?;
            let mut out = Vec::new();
            for (key, path) in files {
                if !key.starts_with(&prefix) {
                    continue;
                }
                let meta = match std::fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err("stat", &path, e)),
                };
                let last_modified = meta.modified().ok().map(DateTime::<Utc>::from);
                out.push(ObjectInfo { key, size: meta.len(), last_modified, etag: None });
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path, e)),
        })
        .await
    }

    async fn list_open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            let (mut files, mut partials) = (Vec::new(), Vec::new());
            walk(&root, &root, &mut files, &mut partials)?;
            let mut out = Vec::new();
            for (key, path) in partials {
                // `dir/.name.partial-<id>` stands for key `dir/name`.
                let (dir, file) = key.rsplit_once('/').unwrap_or(("", &key));
                let Some((name, id)) = file.strip_prefix('.').and_then(|f| f.split_once(PARTIAL)) else { continue };
                let final_key = if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") };
                if final_key.starts_with(&prefix) {
                    let initiated = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .map(chrono::DateTime::<chrono::Utc>::from);
                    out.push(OpenUpload { key: final_key, upload_id: id.to_string(), initiated });
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }
}

struct LocalUpload {
    key: String,
    path: PathBuf,
    tmp: PathBuf,
    file: Arc<std::fs::File>,
}

#[async_trait]
impl MultipartUpload for LocalUpload {
    fn key(&self) -> &str {
        &self.key
    }

    async fn put_part(&self, number: u32, offset: u64, body: Bytes) -> Result<PartReceipt, StoreError> {
        let file = self.file.clone();
        let tmp = self.tmp.clone();
        blocking(move || {
            file.write_all_at(&body, offset).map_err(|e| io_err("write", &tmp, e))?;
            Ok(PartReceipt { number, etag: format!("{offset}+{}", body.len()) })
        })
        .await
    }

    async fn complete(&self, parts: Vec<PartReceipt>) -> Result<(), StoreError> {
        // The parts were written in place; their total is the file's length.
        let end: u64 = parts
            .iter()
            .filter_map(|p| {
                p.etag.split_once('+').and_then(|(o, l)| Some(o.parse::<u64>().ok()? + l.parse::<u64>().ok()?))
            })
            .max()
            .unwrap_or(0);
        let (file, tmp, path) = (self.file.clone(), self.tmp.clone(), self.path.clone());
        blocking(move || {
            file.set_len(end).map_err(|e| io_err("truncate", &tmp, e))?;
            file.sync_all().map_err(|e| io_err("sync", &tmp, e))?;
            finish(&tmp, &path)
        })
        .await
    }

    async fn abort(&self) -> Result<(), StoreError> {
        let tmp = self.tmp.clone();
        blocking(move || match std::fs::remove_file(&tmp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &tmp, e)),
        })
        .await
    }
}
