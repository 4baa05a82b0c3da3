//! One run at a time: a backup, restore, prune or `retention apply` holds an exclusive `flock`
//! on the lock file for as long as it runs. The kernel drops the lock when the process ends,
//! however it ends, so a crashed or killed run never blocks the next one: a stale file is
//! simply locked again. The file names its holder (pid, command, start) for the message a
//! second run prints.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Class, Failure};

/// Held for the run; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

/// Takes the lock for `command`, or fails at once (exit 75) naming the run that holds it.
pub fn acquire(path: &Path, command: &str) -> anyhow::Result<RunLock> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|e| {
                Failure::new(Class::Usage, format!("cannot create the lock file's directory `{}`: {e}", dir.display()))
            })?;
        }
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            Failure::new(Class::Usage, format!("cannot open lock file `{}`: {e}", path.display()))
                .with_hint("set `lock_file` (SEATABLE_BACKUP_LOCK_FILE) to a path this user may write")
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Failure::new(
                Class::Busy,
                format!(
                    "another seatable-backup run holds the lock `{}`{}; not starting `{command}`",
                    path.display(),
                    if holder.is_empty() { String::new() } else { format!(" ({holder})") }
                ),
            )
            .with_hint(
                "runs never overlap: wait for the other one to finish (a crashed run's lock is released by the kernel)",
            )
            .into());
        }
        Err(std::fs::TryLockError::Error(err)) => {
            return Err(Failure::new(Class::Usage, format!("cannot lock `{}`: {err}", path.display())).into());
        }
    }
    let previous = {
        let mut s = String::new();
        let _ = file.read_to_string(&mut s);
        s
    };
    if !previous.trim().is_empty() {
        tracing::debug!(lock = %path.display(), previous = previous.trim(), "took over the lock file of a run that ended");
    }
    let me = format!(
        "pid {}, `{command}`, since {}",
        std::process::id(),
        crate::clock::now().format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = file.write_all(me.as_bytes());
    let _ = file.flush();
    Ok(RunLock { _file: file, path: path.to_path_buf() })
}

/// Who holds the lock at `path` right now (`None`: nobody), looked at without writing: the file
/// is opened read-only and locked shared for an instant.
pub fn holder(path: &Path) -> std::io::Result<Option<String>> {
    let file = File::open(path)?;
    match file.try_lock_shared() {
        Ok(()) => {
            file.unlock()?;
            Ok(None)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            Ok(Some(std::fs::read_to_string(path).unwrap_or_default().trim().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_the_lock_is_free_again_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.lock");
        let first = acquire(&p, "backup").unwrap();
        // flock locks belong to the open file description: a second open in this process
        // conflicts like another process would.
        let err = acquire(&p, "prune").unwrap_err();
        assert_eq!(crate::exit::class_of(&err), Class::Busy);
        let msg = format!("{err:#}");
        assert!(msg.contains("`backup`") && msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        drop(first);
        let again = acquire(&p, "prune").unwrap();
        assert!(std::fs::read_to_string(&again.path).unwrap().contains("`prune`"));
    }
}
